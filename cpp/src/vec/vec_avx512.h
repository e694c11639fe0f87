// The AVX-512 vector type of the scan kernels. Included inside a namespace by kernel_avx512.cpp
// and quant_kernel_avx512.cpp (compiled with the AVX-512 flags); requires <immintrin.h> and
// "vec/scalar_helpers.h".

struct V {
  static constexpr int W = 16;
  using R = __m512;
  static R zero() { return _mm512_setzero_ps(); }
  static R set1(float f) { return _mm512_set1_ps(f); }
  static R load(const float* p) { return _mm512_load_ps(p); }
  static R loadu(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, R a) { _mm512_store_ps(p, a); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static void storeu(float* p, R a) { _mm512_storeu_ps(p, a); }
  static R add(R a, R b) { return _mm512_add_ps(a, b); }
  static R cvt_i8(const int8_t* p) {
    __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b));
  }
  static R cvt_f16(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  // p[l % M] in lane l, M in {1, 2, 4} (reads p[0..M) only).
  template <int M>
  static R bcast_lanes(const float* p) {
    static_assert(M == 1 || M == 2 || M == 4, "M divides a 128-bit block");
    if constexpr (M == 1) {
      return set1(p[0]);
    } else if constexpr (M == 2) {
      double w;
      std::memcpy(&w, p, 8);
      return _mm512_castpd_ps(_mm512_set1_pd(w));
    } else {
      return _mm512_broadcast_f32x4(_mm_loadu_ps(p));
    }
  }
  // Lane l: the sum of the 2 (4) lanes of l's aligned group.
  static R sum_pairs(R a) {
    return add(a, _mm512_permutexvar_ps(
                      _mm512_set_epi32(14, 15, 12, 13, 10, 11, 8, 9, 6, 7, 4, 5, 2, 3, 0, 1), a));
  }
  static R sum_quads(R a) {
    a = sum_pairs(a);
    return add(a, _mm512_permutexvar_ps(
                      _mm512_set_epi32(13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2), a));
  }
  static unsigned ge_mask(R a, R b) {
    return static_cast<unsigned>(_mm512_cmp_ps_mask(a, b, _CMP_GE_OQ));
  }
  // Halves first, then the AVX2 order: the same per-lane order as hsum8 (see kernel_avx2.cpp).
  static float hsum(R a) {
    __m256 y = half_sum(a);
    __m128 h = _mm_hadd_ps(_mm256_castps256_ps128(y), _mm256_extractf128_ps(y, 1));
    h = _mm_hadd_ps(h, h);
    return _mm_cvtss_f32(h) + _mm_cvtss_f32(_mm_movehdup_ps(h));
  }
  static __m256 half_sum(R a) {
    return _mm256_add_ps(_mm512_castps512_ps256(a),
                         _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
  }
#include "vec/transpose8_avx.h"
  static void hsum8(const R* a, float* out) {
    __m256 h[8];
    for (int i = 0; i < 8; ++i) h[i] = half_sum(a[i]);
    _mm256_storeu_ps(out, hsum8_ymm(h));
  }
  // A 16-item block is packed as two 8-item halves with the 8 x 8 AVX transpose.
  static void transpose_pack(const float* rows, int64_t stride, int64_t dim, int64_t valid,
                             float* out, int64_t out_stride) {
    pack8(rows, stride, dim, valid < 8 ? valid : 8, out, out_stride);
    pack8(rows + 8 * stride, stride, dim, valid > 8 ? valid - 8 : 0, out + 8, out_stride);
  }
};
