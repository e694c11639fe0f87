// Scalar helpers of the scan kernels, included by every kernel file. `static inline` on
// purpose (see heap.h): each file compiles them with its own instruction-set flags.
#pragma once

#include <cstdint>
#include <cstring>

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
