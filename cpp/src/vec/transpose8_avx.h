// Helpers shared by the AVX2 and AVX-512 kernel files (included inside each file's
// namespace, compiled with its flags): transposes 8 item rows into 8-float columns of a panel.
// Requires <immintrin.h>.

static inline void transpose8(__m256 r[8]) {
  __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// The eight horizontal sums of a[0..7], as one vector: lane i = sum of a[i]'s lanes.
static inline __m256 hsum8_ymm(const __m256* a) {
  __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
  __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
  __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

// out[p * out_stride + c] = rows[c * stride + p] for c < 8 (rows >= valid give 0), p < dim.
// out must be 32-byte aligned, out_stride a multiple of 8.
static inline void pack8(const float* rows, int64_t stride, int64_t dim, int64_t valid, float* out,
                         int64_t out_stride) {
  if (valid < 8) {
    for (int64_t p = 0; p < dim; ++p)
      for (int c = 0; c < 8; ++c) out[p * out_stride + c] = c < valid ? rows[c * stride + p] : 0.0f;
    return;
  }
  int64_t p = 0;
  for (; p + 8 <= dim; p += 8) {
    __m256 r[8];
    for (int c = 0; c < 8; ++c) r[c] = _mm256_loadu_ps(rows + c * stride + p);
    transpose8(r);
    for (int i = 0; i < 8; ++i) _mm256_store_ps(out + (p + i) * out_stride, r[i]);
  }
  for (; p < dim; ++p)
    for (int c = 0; c < 8; ++c) out[p * out_stride + c] = rows[c * stride + p];
}
