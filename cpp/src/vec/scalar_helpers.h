// Scalar helpers of the scan kernels, included by every kernel file. `static inline` on
// purpose (see heap.h): each file compiles them with its own instruction-set flags.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "recfast/topk.h"

namespace recfast {

// Whether item `id` is in query q's sorted exclusion row (binary search).
static inline bool is_excluded(const Exclusion& ex, int64_t q, int64_t id) {
  if (ex.indptr == nullptr) return false;
  int64_t lo = ex.indptr[q], hi = ex.indptr[q + 1];
  while (lo < hi) {  // lower_bound over the sorted row
    int64_t mid = lo + (hi - lo) / 2;
    if (ex.indices[mid] < id)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < ex.indptr[q + 1] && ex.indices[lo] == id;
}

// Cosine norms. A float32 sum of squares is accurate when it lies in [kSafeSumsqMin, FLT_MAX]:
// below, squares of tiny components are float32 denormals (a row of 1e-20s would get a norm off
// by 1e-3); above, it overflowed. Such rows are summed again in double, which neither overflows
// nor loses precision for any float32 row. The inverse norm is 0 (the row scores as a zero row)
// only for a zero row, a non-finite row, or a norm below 1 / FLT_MAX (about 2.9e-39).
constexpr float kSafeSumsqMin = 0x1p-64f;

static inline float inv_norm_wide(const float* x, int64_t dim) {
  double ss = 0.0;
  for (int64_t p = 0; p < dim; ++p) ss += static_cast<double>(x[p]) * x[p];
  if (!(ss > 0.0) || !std::isfinite(ss)) return 0.0f;
  const double inv = 1.0 / std::sqrt(ss);
  return inv <= std::numeric_limits<float>::max() ? static_cast<float>(inv) : 0.0f;
}

// 1/|x| from the float32 sum of squares s of x (the fast path), or from inv_norm_wide.
static inline float inv_norm_checked(float s, const float* x, int64_t dim) {
  if (s >= kSafeSumsqMin && s <= std::numeric_limits<float>::max()) return 1.0f / std::sqrt(s);
  return inv_norm_wide(x, dim);
}

// Exact binary16 -> binary32 (every half value is a float value).
static inline float half_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu, bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      int e = -1;
      do {
        ++e;
        man <<= 1;
      } while ((man & 0x400u) == 0);
      bits = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((man & 0x3FFu) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7F800000u | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace recfast
