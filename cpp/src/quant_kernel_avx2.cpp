// AVX2 + FMA + F16C compressed-scan kernels (compiled with -mavx2 -mfma -mf16c; used only when
// the CPU has all three). int8 codes widen to int32 then float (vpmovsxbd + vcvtdq2ps), float16
// codes convert with vcvtph2ps; the dot products are float32 FMAs.
#include <immintrin.h>

#include <atomic>
#include <cstdint>
#include <cstring>

#include "quant_kernels.h"
#include "recfast/heap.h"

namespace recfast {
namespace qisa_avx2 {

struct V {
  static constexpr int W = 8;
  using R = __m256;
  static R zero() { return _mm256_setzero_ps(); }
  static R set1(float f) { return _mm256_set1_ps(f); }
  static R load(const float* p) { return _mm256_load_ps(p); }
  static R loadu(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, R a) { _mm256_store_ps(p, a); }
  static void storeu(float* p, R a) { _mm256_storeu_ps(p, a); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static R mul(R a, R b) { return _mm256_mul_ps(a, b); }
  static R add(R a, R b) { return _mm256_add_ps(a, b); }
  static unsigned ge_mask(R a, R b) {
    return static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_GE_OQ)));
  }
  static float hsum(R a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static R cvt_i8(const int8_t* p) {
    __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
  }
  static R cvt_f16(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
};

#include "quant_scan_impl.h"

// 2 query vectors (16 queries) x 6 items: 12 accumulators + 2 query vectors + 1 broadcast.
constexpr int kQV = 2, kNI = 6, kQB = 128;

const QuantKernelSet kSet = {"avx2", kQV * V::W, kQB, &q_scratch_floats<kQV, kNI, kQB>,
                             &q_scan_direct<kQV, kNI>, &q_scan_packed<kQV, kNI>};

}  // namespace qisa_avx2

const QuantKernelSet* quant_kernels_avx2() { return &qisa_avx2::kSet; }

}  // namespace recfast
