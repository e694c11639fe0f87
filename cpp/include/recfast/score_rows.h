// recfast on score rows: top-k selection over precomputed rows with the rules of topk_cpu, and
// the two products that models with an item-item part add up into their score rows (sparse x
// dense, and dense queries x items). Free of Python.
#pragma once

#include <cstdint>
#include <functional>

#include "recfast/topk.h"

namespace recfast {

struct SelectParams {
  int64_t k = 10;
  int num_threads = 1;
  Exclusion exclude;  // CSR over rows of column ids never returned (rows sorted ascending)
  std::function<bool()> should_stop;  // as in TopkParams
};

// The k best columns of each row of `scores` (n_rows x n_cols, row r at scores + r * stride),
// with topk_cpu's output contract: sorted by score descending, equal scores lower column
// first, NaN never returned, rows padded with -1 / -inf. out_*: n_rows * k each.
void select_topk_rows(const float* scores, int64_t n_rows, int64_t n_cols, int64_t stride,
                      const SelectParams& params, float* out_scores, int64_t* out_ids);

// out[r, :] += sum over the stored entries (c, v) of row r of the CSR matrix of v * dense[c, :]
// for r in [0, n_rows); dense: rows of n_cols floats at dense + c * dense_stride; out row r at
// out + r * out_stride. Each output element adds its terms in CSR order, one rounded multiply and
// one rounded add each (no FMA), so results do not depend on threads or instruction set.
// Column indices must index rows of dense (the caller validates).
void csr_dense_accumulate(const int64_t* indptr, const int64_t* indices, const float* values,
                          int64_t n_rows, const float* dense, int64_t dense_stride, int64_t n_cols,
                          float* out, int64_t out_stride, int num_threads,
                          const std::function<bool()>& should_stop);

// out[q, j] += the inner product of query q and item j, for every pair, or, when bias is not
// null, out[q, j] = bias[j] + that product (out's old values are then not read). Queries and
// items as in topk_cpu; out row q at out + q * out_stride (n_items floats). Each product is
// computed as the top-k scan's packed path computes a Dot score, so it does not depend on
// threads, batch or chunking, and is added with one rounding.
void dense_scores(const float* queries, int64_t n_queries, int64_t query_stride, const float* items,
                  int64_t n_items, int64_t item_stride, int64_t dim, const float* bias, float* out,
                  int64_t out_stride, int num_threads, const std::function<bool()>& should_stop);

}  // namespace recfast
