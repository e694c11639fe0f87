// The AVX2 + FMA + F16C vector type of the scan kernels. Included inside a namespace by
// kernel_avx2.cpp and quant_kernel_avx2.cpp (compiled with -mavx2 -mfma -mf16c); requires
// <immintrin.h> and "vec/scalar_helpers.h".

struct V {
  static constexpr int W = 8;
  using R = __m256;
  static R zero() { return _mm256_setzero_ps(); }
  static R set1(float f) { return _mm256_set1_ps(f); }
  static R load(const float* p) { return _mm256_load_ps(p); }
  static R loadu(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, R a) { _mm256_store_ps(p, a); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static void storeu(float* p, R a) { _mm256_storeu_ps(p, a); }
  static R add(R a, R b) { return _mm256_add_ps(a, b); }
  static R cvt_i8(const int8_t* p) {
    __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
  }
  static R cvt_f16(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static R mul(R a, R b) { return _mm256_mul_ps(a, b); }
  // p[l % M] in lane l, M in {1, 2, 4} (reads p[0..M) only).
  template <int M>
  static R bcast_lanes(const float* p) {
    static_assert(M == 1 || M == 2 || M == 4, "M divides a 128-bit block");
    if constexpr (M == 1) {
      return set1(p[0]);
    } else if constexpr (M == 2) {
      double w;
      std::memcpy(&w, p, 8);
      return _mm256_castpd_ps(_mm256_set1_pd(w));
    } else {
      return _mm256_broadcast_ps(reinterpret_cast<const __m128*>(p));
    }
  }
  // Lane l: the sum of the 2 (4) lanes of l's aligned group.
  static R sum_pairs(R a) { return add(a, _mm256_permute_ps(a, 0xb1)); }
  static R sum_quads(R a) {
    a = sum_pairs(a);
    return add(a, _mm256_permute_ps(a, 0x4e));
  }
  static unsigned ge_mask(R a, R b) {
    return static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_GE_OQ)));
  }
  // Summation order ((a0+a1)+(a2+a3))+((a4+a5)+(a6+a7)), the same as hsum8's per lane, so a
  // query's score does not depend on the group it is scored in.
  static float hsum(R a) {
    __m128 h = _mm_hadd_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    h = _mm_hadd_ps(h, h);
    return _mm_cvtss_f32(h) + _mm_cvtss_f32(_mm_movehdup_ps(h));
  }
  static void hsum8(const R* a, float* out) { _mm256_storeu_ps(out, hsum8_ymm(a)); }
#include "vec/transpose8_avx.h"
  static void transpose_pack(const float* rows, int64_t stride, int64_t dim, int64_t valid,
                             float* out, int64_t out_stride) {
    pack8(rows, stride, dim, valid, out, out_stride);
  }
};
