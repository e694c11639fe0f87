// 64-byte aligned float scratch owned by a unique_ptr (the kernels use aligned vector loads).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

namespace recfast {

struct AlignedFree {
  void operator()(float* p) const { std::free(p); }
};
using AlignedBuffer = std::unique_ptr<float, AlignedFree>;

inline AlignedBuffer aligned_floats(int64_t n) {
  size_t bytes = (static_cast<size_t>(n) * sizeof(float) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, bytes ? bytes : 64);
  if (p == nullptr) throw std::bad_alloc();
  return AlignedBuffer(static_cast<float*>(p));
}

}  // namespace recfast
