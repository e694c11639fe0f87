// Portable compressed-scan kernels: plain C++ over 4-float blocks that the compiler vectorizes for
// the baseline instruction set. Used without AVX2 + FMA + F16C, off x86, or when forced.
#include <atomic>
#include <cstdint>
#include <cstring>

#include "quant_kernels.h"
#include "recfast/heap.h"

namespace recfast {
namespace qisa_generic {

static inline float half_bits_to_float(uint16_t h);

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
  static void storeu(float* p, R a) { store(p, a); }
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
  static R add(R a, R b) {
    R r;
    for (int i = 0; i < 4; ++i) r.v[i] = a.v[i] + b.v[i];
    return r;
  }
  static unsigned ge_mask(R a, R b) {
    unsigned m = 0;
    for (int i = 0; i < 4; ++i) m |= (a.v[i] >= b.v[i] ? 1u : 0u) << i;
    return m;
  }
  static float hsum(R a) { return (a.v[0] + a.v[2]) + (a.v[1] + a.v[3]); }
  static R cvt_i8(const int8_t* p) {
    return R{{static_cast<float>(p[0]), static_cast<float>(p[1]), static_cast<float>(p[2]),
              static_cast<float>(p[3])}};
  }
  static R cvt_f16(const uint16_t* p) {
    return R{{half_bits_to_float(p[0]), half_bits_to_float(p[1]), half_bits_to_float(p[2]),
              half_bits_to_float(p[3])}};
  }
};

#include "quant_scan_impl.h"

static inline float half_bits_to_float(uint16_t h) { return q_half_to_float(h); }

// 2 query vectors (8 queries) x 4 items.
constexpr int kQV = 2, kNI = 4, kQB = 64;

const QuantKernelSet kSet = {"generic", kQV * V::W, kQB, &q_scratch_floats<kQV, kNI, kQB>,
                             &q_scan_direct<kQV, kNI>, &q_scan_packed<kQV, kNI>};

}  // namespace qisa_generic

const QuantKernelSet* quant_kernels_generic() { return &qisa_generic::kSet; }

}  // namespace recfast

#ifdef RECFAST_NO_X86_KERNELS
namespace recfast {
const QuantKernelSet* quant_kernels_avx2() { return nullptr; }
const QuantKernelSet* quant_kernels_avx512() { return nullptr; }
}  // namespace recfast
#endif
