// AVX-512 compressed-scan kernels (compiled with -mavx512f -mavx512bw -mavx512vl -mf16c -mfma;
// used only when the CPU and OS support AVX-512). Same code as the AVX2 file over 16 lanes:
// int8 codes widen with vpmovsxbd + vcvtdq2ps, float16 codes with vcvtph2ps (zmm).
#include <immintrin.h>

#include <atomic>
#include <cstdint>
#include <cstring>

#include "quant_kernels.h"
#include "recfast/heap.h"

namespace recfast {
namespace qisa_avx512 {

struct V {
  static constexpr int W = 16;
  using R = __m512;
  static R zero() { return _mm512_setzero_ps(); }
  static R set1(float f) { return _mm512_set1_ps(f); }
  static R load(const float* p) { return _mm512_load_ps(p); }
  static R loadu(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, R a) { _mm512_store_ps(p, a); }
  static void storeu(float* p, R a) { _mm512_storeu_ps(p, a); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  static R add(R a, R b) { return _mm512_add_ps(a, b); }
  static unsigned ge_mask(R a, R b) {
    return static_cast<unsigned>(_mm512_cmp_ps_mask(a, b, _CMP_GE_OQ));
  }
  static float hsum(R a) { return _mm512_reduce_add_ps(a); }
  static R cvt_i8(const int8_t* p) {
    __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b));
  }
  static R cvt_f16(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
};

#include "quant_scan_impl.h"

// 2 query vectors (32 queries) x 12 items: 24 accumulators + 2 query vectors + 1 broadcast.
constexpr int kQV = 2, kNI = 12, kQB = 256;

const QuantKernelSet kSet = {"avx512", kQV * V::W, kQB, &q_scratch_floats<kQV, kNI, kQB>,
                             &q_scan_direct<kQV, kNI>, &q_scan_packed<kQV, kNI>};

}  // namespace qisa_avx512

const QuantKernelSet* quant_kernels_avx512() { return &qisa_avx512::kSet; }

}  // namespace recfast
