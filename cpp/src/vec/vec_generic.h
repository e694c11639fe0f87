// The portable 4-float vector type of the scan kernels. Included inside a namespace by
// kernel_generic.cpp and quant_kernel_generic.cpp (baseline flags);
// requires "vec/scalar_helpers.h".

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
  static void storeu(float* p, R a) { store(p, a); }
  static R add(R a, R b) {
    R r;
    for (int i = 0; i < 4; ++i) r.v[i] = a.v[i] + b.v[i];
    return r;
  }
  static R cvt_i8(const int8_t* p) {
    return R{{static_cast<float>(p[0]), static_cast<float>(p[1]), static_cast<float>(p[2]),
              static_cast<float>(p[3])}};
  }
  static R cvt_f16(const uint16_t* p) {
    return R{{half_to_float(p[0]), half_to_float(p[1]), half_to_float(p[2]), half_to_float(p[3])}};
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
                             float* out, int64_t out_stride) {
    for (int64_t p = 0; p < dim; ++p)
      for (int c = 0; c < 4; ++c) out[p * out_stride + c] = c < valid ? rows[c * stride + p] : 0.0f;
  }
};
