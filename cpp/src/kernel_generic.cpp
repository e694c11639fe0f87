// Portable kernels: plain C++ over 4-float blocks that the compiler vectorizes for the baseline
// instruction set. Used on CPUs without AVX2 + FMA, on non-x86 machines, or when forced.
#include <atomic>
#include <cmath>
#include <cstdint>

#include "kernels.h"
#include "recfast/heap.h"

namespace recfast {
namespace isa_generic {

struct V {
  static constexpr int W = 4;
  struct alignas(16) R {
    float v[4];
  };
  static R zero() { return R{{0.0f, 0.0f, 0.0f, 0.0f}}; }
  static R set1(float f) { return R{{f, f, f, f}}; }
  static R load(const float* p) { return R{{p[0], p[1], p[2], p[3]}}; }
  static R loadu(const float* p) { return load(p); }
  static void store(float* p, R a) {
    for (int i = 0; i < 4; ++i) p[i] = a.v[i];
  }
  static R fma(R a, R b, R c) {
    R r;
    for (int i = 0; i < 4; ++i) r.v[i] = a.v[i] * b.v[i] + c.v[i];
    return r;
  }
  static R mul(R a, R b) {
    R r;
    for (int i = 0; i < 4; ++i) r.v[i] = a.v[i] * b.v[i];
    return r;
  }
  static unsigned ge_mask(R a, R b) {
    unsigned m = 0;
    for (int i = 0; i < 4; ++i) m |= (a.v[i] >= b.v[i] ? 1u : 0u) << i;
    return m;
  }
  static float hsum(R a) { return (a.v[0] + a.v[2]) + (a.v[1] + a.v[3]); }
  static void hsum8(const R* a, float* out) {
    for (int i = 0; i < 8; ++i) out[i] = hsum(a[i]);
  }
  static void transpose_pack(const float* rows, int64_t stride, int64_t dim, int64_t valid,
                             float* out, int64_t out_stride, float* sumsq) {
    for (int64_t p = 0; p < dim; ++p)
      for (int c = 0; c < 4; ++c) {
        float v = c < valid ? rows[c * stride + p] : 0.0f;
        out[p * out_stride + c] = v;
        sumsq[c] += v * v;
      }
  }
};

#include "scan_impl.h"

// 4 x 8 register tile: 8 accumulators over 16 SSE registers.
constexpr int kMR = 4, kNV = 2;
using P = Packed<kMR, kNV>;

const KernelSet kSet = {"generic", kMR, &scratch_floats_impl<kMR, kNV>, &P::scan, &Direct::scan};

}  // namespace isa_generic

const KernelSet* kernels_generic() { return &isa_generic::kSet; }

}  // namespace recfast

#ifdef RECFAST_NO_X86_KERNELS
namespace recfast {
const KernelSet* kernels_avx2() { return nullptr; }
const KernelSet* kernels_avx512() { return nullptr; }
}  // namespace recfast
#endif
