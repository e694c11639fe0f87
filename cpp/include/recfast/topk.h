// recfast native top-k: the C++ API, free of Python.
//
// Contract (the Python layer validates and documents the same):
//  * queries: n_queries rows of `dim` floats, row r at queries + r * query_stride.
//  * items:   n_items rows of `dim` floats, row j at items + j * item_stride.
//  * metric Cosine scores q.x / (|q| |x|), a zero vector scoring 0; Dot scores q.x.
//  * out_scores / out_ids: caller-owned, n_queries * k each, row-major. Each row is sorted by
//    score descending, equal scores lower id first. NaN scores are never returned. Rows with
//    fewer than k eligible items are padded with id -1 and score -inf.
//  * exclusion (optional): CSR over queries; row r lists item ids never returned for query r,
//    sorted ascending, each in [0, n_items).
//  * Memory beyond inputs and outputs: O(threads x tile + n_queries x k); never
//    n_queries x n_items.
#pragma once

#include <cstdint>
#include <functional>
#include <stdexcept>

#include "recfast/interrupted.h"

namespace recfast {

enum class Metric { Cosine, Dot };

// Sorted per-query exclusion lists in CSR form (indptr has n_queries + 1 entries).
struct Exclusion {
  const int64_t* indptr = nullptr;
  const int64_t* indices = nullptr;
  bool empty() const { return indptr == nullptr; }
};

// The scan has three paths, chosen by the number of queries B of a call:
//   B <= kTopkDirectMaxQueries (one query): the direct path (a dot product along d in four
//     accumulators, reduced across lanes);
//   B <= kTopkBroadcastMaxQueries: the broadcast path (item values broadcast against queries);
//   larger B: the packed path (register-tiled micro-kernel over packed tiles).
// A score depends only on its query row, its item row, the metric, the kernel set (the level;
// on some CPUs also the batch's size class, see scan_kernel_name) and whether the direct path
// computed it (the broadcast and packed paths sum in order along d and agree bit for bit): never
// on N, k, the batch's other queries, chunking or thread count. Which path (and set) computes
// it follows TopkParams::batch_size, so a caller that splits one batch into several calls (the
// quantized search's re-scoring, rows routed elsewhere) still gets the scores of the batch.
constexpr int64_t kTopkDirectMaxQueries = 1;
constexpr int64_t kTopkBroadcastMaxQueries = 128;
// Batches of up to this many queries may run another kernel set than larger ones on some CPUs
// (scan_kernel_name below).
constexpr int64_t kTopkNarrowSetMaxQueries = 16;

// The kernel set the scan runs now: the active level's name, or "avx512+avx2" where the AVX512
// level runs batches of up to 16 queries with the AVX2 set (CPUs that split 512-bit operations,
// see runtime/dispatch.cpp); like the path, the set follows TopkParams::batch_size.
const char* scan_kernel_name();
// Test hook: false makes every level run only its own kernels (so that the tests reach the
// AVX-512 small-batch kernels on such CPUs too); true (the default) restores the choice.
void set_scan_mixing(bool allowed);

struct TopkParams {
  int64_t k = 10;
  Metric metric = Metric::Cosine;
  int num_threads = 1;  // >= 1
  Exclusion exclude;
  // The size of the batch this call belongs to; it picks the scoring path (direct for a batch of
  // kTopkDirectMaxQueries, else the broadcast/packed scores). 0: this call's n_queries. A value
  // <= kTopkDirectMaxQueries with more queries than that is an invalid_argument.
  int64_t batch_size = 0;
  // Polled from the calling thread about every 50 ms while workers compute; returning true
  // cancels the call, which then throws Interrupted (recfast/interrupted.h). May be empty.
  std::function<bool()> should_stop;
};

void topk_cpu(const float* queries, int64_t n_queries, int64_t query_stride, const float* items,
              int64_t n_items, int64_t item_stride, int64_t dim, const TopkParams& params,
              float* out_scores, int64_t* out_ids);

}  // namespace recfast
