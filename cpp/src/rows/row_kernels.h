// The score rows' two hot loops, built twice (portable and AVX2) in score_rows.cpp and picked by
// runtime/dispatch.h like every other kernel family. Results do not depend on the choice.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace recfast {

// A (score, column) candidate of a row's selection.
struct RowEntry {
  float score;
  int64_t id;
};

struct RowKernelSet {
  const char* name;
  // The selection scan of one row (score_rows.cpp: scan_row_body); returns the candidates kept.
  size_t (*scan_row)(const float* row, int64_t n, int64_t k, const int64_t* excl,
                     const int64_t* excl_end, float floor, std::vector<RowEntry>& buf);
  // o[0, w) += the terms of one CSR row (score_rows.cpp: accumulate_row_body).
  void (*accumulate_row)(float* o, int64_t w, const int64_t* idx, const float* val, int64_t n_terms,
                         const float* dense, int64_t dense_stride);
};

const RowKernelSet* row_kernels_generic();
const RowKernelSet* row_kernels_avx2();  // nullptr when not compiled in

}  // namespace recfast
