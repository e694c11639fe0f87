// AVX2 integer scans of int8 storage: exact int32 dot products qi . c_j of the quantized query
// (|qi| <= 63 on the direct path, <= 31 on the packed one) and the item codes (c_j in
// [-127, 127]). Included inside the namespace of quant_kernel_avx2.cpp after quant_scan_impl.h
// (compiled with -mavx2 -mfma -mf16c).
//
// Operand choice. vpmaddubsw multiplies unsigned bytes (first operand) by signed bytes (second)
// and adds adjacent pairs into int16 with saturation. Both paths offset the ITEM codes:
// u = c ^ 0x80 = c + 128 in [1, 255] as u8, times qi as s8, so a pair sum is at most
// 2 * 255 * 63 = 32130 < 32767 and never saturates (the packed path, |qi| <= 31, adds two pair
// sums before widening: see QI8PackedAvx2::accumulate); vpmaddwd with int16 ones then widens the
// pairs to int32, and qi . c = sum u * qi - 128 * sum(qi), the correction (qcorr) being one
// number per query computed by the driver. The alternative (query offset qi + 64 as u8 times the
// signed codes, pair sum <= 2 * 127 * 127 = 32258) needs sum(c_j) per item: two more
// multiply-port ops per 32 codes per item on the direct path, or a per-item correction in the
// packed epilogue. The item offset costs one vpxor per 32 codes per item on the direct path
// (shared by the NQ queries of a block) and nothing in the packed inner loop (the item tile is
// offset once when copied and shared by every query group of the task).
//
// Score and radius (quant.h): T = (qscale * scale_j) * float(dot),
// r = |q'| err_j + qcoef (norm_j + err_j) + abs_slack; an item with T + r >= tau gets the second
// look in float32 (i8_refine, q_offer_refined in quant_scan_impl.h).

static inline __m256i i8_madd(__m256i acc, __m256i u8, __m256i s8, __m256i ones16) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u8, s8), ones16));
}

// Lane i of the result = the sum of the 8 lanes of a[i].
static inline __m256i i8_hsum8(__m256i a0, __m256i a1, __m256i a2, __m256i a3, __m256i a4,
                               __m256i a5, __m256i a6, __m256i a7) {
  const __m256i h01 = _mm256_hadd_epi32(a0, a1), h23 = _mm256_hadd_epi32(a2, a3);
  const __m256i h45 = _mm256_hadd_epi32(a4, a5), h67 = _mm256_hadd_epi32(a6, a7);
  const __m256i x = _mm256_hadd_epi32(h01, h23), y = _mm256_hadd_epi32(h45, h67);
  return _mm256_add_epi32(_mm256_permute2x128_si256(x, y, 0x20),
                          _mm256_permute2x128_si256(x, y, 0x31));
}

// The second look at an item that passed the integer bound (q_offer_refined): q' . c_j in
// float32 FMAs over 8 lanes.
static inline void i8_refine(const QuantTask& t, int64_t q, int64_t j) {
  const int64_t dim = t.dim;
  const float* qr = t.queries + q * dim;
  const int8_t* x = static_cast<const int8_t*>(t.items->codes) + j * dim;
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t p = 0;
  for (; p + 32 <= dim; p += 32) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qr + p), V::cvt_i8(x + p), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(qr + p + 8), V::cvt_i8(x + p + 8), a1);
    a2 = _mm256_fmadd_ps(_mm256_loadu_ps(qr + p + 16), V::cvt_i8(x + p + 16), a2);
    a3 = _mm256_fmadd_ps(_mm256_loadu_ps(qr + p + 24), V::cvt_i8(x + p + 24), a3);
  }
  for (; p + 8 <= dim; p += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qr + p), V::cvt_i8(x + p), a0);
  float s = V::hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  for (; p < dim; ++p) s += qr[p] * static_cast<float>(x[p]);
  q_offer_refined(t, q, j, s);
}

// ---------------------------------------------------------------------------------------------
// Direct path (a few queries): NQ queries x NI items (NQ * NI <= 8) of dot products along d,
// 32 codes per step, the NQ * NI accumulators reduced together by i8_hsum8 into one vector whose
// lane a * NI + b is (query q + a, item j + b); QI8DirectDriver does the rest.
struct QI8DirectAvx2 : QI8DirectDriver<QI8DirectAvx2> {
  // On an AMD Zen 5 class CPU (1M items, d = 128, one query) the rows below took 3.2 ms without
  // prefetch, 3.7 ms with it (read floor 2.9 ms).
  static constexpr bool kPrefetchOneQuery = false;

  struct Acc {  // see acc_slot
    __m256i v0, v1, v2, v3, v4, v5, v6, v7;
  };

  // One step of 32 codes: item b (read at xr[b] + p, or at xt[b] when given) meets query a
  // into accumulator a * NI + b, for K = b * NQ + a in order (one offset item live at a time).
  template <int NQ, int NI, int... K>
  static inline void step(Acc& A, const int8_t* const* qr, const int8_t* const* xr, int64_t p,
                          const int8_t* const* xt, __m256i ones, __m256i off,
                          std::integer_sequence<int, K...>) {
    __m256i x = _mm256_setzero_si256();
    (upd<NQ, NI, K>(A, qr, xr, p, xt, ones, off, x), ...);
  }

  template <int NQ, int NI, int K>
  static inline void upd(Acc& A, const int8_t* const* qr, const int8_t* const* xr, int64_t p,
                         const int8_t* const* xt, __m256i ones, __m256i off, __m256i& x) {
    constexpr int b = K / NQ, a = K % NQ;
    if constexpr (a == 0) {
      const int8_t* src = xt ? xt[b] : xr[b] + p;
      x = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src)), off);
    }
    const __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qr[a] + p));
    __m256i& acc = acc_slot<a * NI + b>(A);
    acc = i8_madd(acc, x, qv, ones);
  }

  // The 32 codes from p of row x (item `item`, p + 32 > dim): read in place while inside the code
  // array (the bytes past the row, the next row's, meet the query's zero padding), else copied
  // into buf, zero-padded.
  static inline const int8_t* tail_codes(const QuantTask& t, const int8_t* x, int64_t item,
                                         int64_t p, int8_t* buf) {
    const int64_t dim = t.dim;
    if (item * dim + p + 32 <= t.items->n * dim) return x + p;
    std::memset(buf, 0, 32);
    std::memcpy(buf, x + p, static_cast<size_t>(dim - p));
    return buf;
  }

  // One query, item b's whole row into accumulator b, for b = 0..NI-1 in turn.
  template <int NI, int... B>
  static inline void rows(Acc& A, const QuantTask& t, const int8_t* qr, const int8_t* const* xr,
                          int64_t j, __m256i ones, __m256i off, std::integer_sequence<int, B...>) {
    (row<B>(A, t, qr, xr[B], j + B, ones, off), ...);
  }

  template <int B>
  static inline void row(Acc& A, const QuantTask& t, const int8_t* qr, const int8_t* x,
                         int64_t item, __m256i ones, __m256i off) {
    const int64_t dim = t.dim;
    __m256i& acc = acc_slot<B>(A);
    int64_t p = 0;
    for (; p + 32 <= dim; p += 32) {
      const __m256i u =
          _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + p)), off);
      acc = i8_madd(acc, u, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qr + p)), ones);
    }
    if (p < dim) {
      alignas(32) int8_t buf[32];
      const int8_t* src = tail_codes(t, x, item, p, buf);
      const __m256i u =
          _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src)), off);
      acc = i8_madd(acc, u, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qr + p)), ones);
    }
  }

  // sum u qi of the block's NQ x NI pairs, in lanes a * NI + b (QI8DirectDriver::block).
  template <int NQ, int NI>
  static inline __m256i dots(const QuantTask& t, int64_t q, int64_t j) {
    const int64_t dim = t.dim;
    const int8_t* codes = static_cast<const int8_t*>(t.items->codes);
    const __m256i ones = _mm256_set1_epi16(1), off = _mm256_set1_epi8(static_cast<char>(0x80));
    Acc A{};
    const int8_t* qr[NQ];
    const int8_t* xr[NI];
    for (int a = 0; a < NQ; ++a) qr[a] = t.qcodes + (q + a) * t.qstride;
    for (int b = 0; b < NI; ++b) xr[b] = codes + (j + b) * dim;
    if constexpr (NQ == 1) {
      // One query: each item row front to back, one after another (quant_scan_impl.h's
      // QDirect says why).
      rows<NI>(A, t, qr[0], xr, j, ones, off, std::make_integer_sequence<int, NI>{});
      return i8_hsum8(A.v0, A.v1, A.v2, A.v3, A.v4, A.v5, A.v6, A.v7);
    }
    using Seq = std::make_integer_sequence<int, NQ * NI>;
    int64_t p = 0;
    for (; p + 32 <= dim; p += 32) step<NQ, NI>(A, qr, xr, p, nullptr, ones, off, Seq{});
    if (p < dim) {
      // Tail of fewer than 32 codes: the query rows are zero-padded to qstride >= p + 32, so
      // whatever bytes follow the item's row contribute 0 (tail_codes).
      alignas(32) int8_t buf[NI][32];
      const int8_t* xt[NI];
      for (int b = 0; b < NI; ++b) xt[b] = tail_codes(t, xr[b], j + b, p, buf[b]);
      step<NQ, NI>(A, qr, xt, p, xt, ones, off, Seq{});
    }
    return i8_hsum8(A.v0, A.v1, A.v2, A.v3, A.v4, A.v5, A.v6, A.v7);
  }

  static void refine(const QuantTask& t, int64_t q, int64_t j) { i8_refine(t, q, j); }
};

// ---------------------------------------------------------------------------------------------
// Packed path (many queries): the quantized queries of each group of G = QV * 8 transposed into a
// panel [dim4][G][4 bytes] (dim4 = 2 ceil(dim / 8), zero-padded), an item tile copied once per task
// as offset codes u = c ^ 0x80 in rows of dim4 * 4 bytes (padding: any byte, it meets query
// zeros). The micro-kernel broadcasts 4 codes of an item (vpbroadcastd) against QV query vectors:
// vpmaddubsw per (item, query vector) per 4 dims, two of them summed by vpaddw, then vpmaddwd +
// vpaddd per 8 dims; QV * NI accumulators started at -qcorr so they end at qi . c exactly.
template <int QV, int NI>
struct QI8PackedAvx2 : QI8PackedDriver<QI8PackedAvx2<QV, NI>, QV * 8, NI> {
  static constexpr int G = QV * 8;
  static constexpr int32_t kCorrSign = -1;  // see QI8PackedDriver

  // Groups of 4 codes per row, rounded up to an even count (the main tile takes two per step).
  static int64_t dim4(int64_t dim) { return (dim + 7) / 8 * 2; }

  // Item codes x[0..8) (two broadcast groups of 4) against query vectors q (codes 0..3 of each
  // lane) and r (codes 4..7) of the two query vectors, into accumulators a0, a1. Needs
  // |qi| <= 31 (see accumulate).
  static inline void i8_madd2(__m256i& a0, __m256i& a1, const uint8_t* x, __m256i q0, __m256i q1,
                              __m256i r0, __m256i r1, __m256i ones) {
    int32_t w0, w1;
    std::memcpy(&w0, x, 4);
    std::memcpy(&w1, x + 4, 4);
    const __m256i b0 = _mm256_set1_epi32(w0), b1 = _mm256_set1_epi32(w1);
    const __m256i s0 = _mm256_add_epi16(_mm256_maddubs_epi16(b0, q0), _mm256_maddubs_epi16(b1, r0));
    const __m256i s1 = _mm256_add_epi16(_mm256_maddubs_epi16(b0, q1), _mm256_maddubs_epi16(b1, r1));
    a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(s0, ones));
    a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(s1, ones));
  }

  // dots[(i * QV + v) * 8 + lane] = qi . c of item i and query lane v * 8 + lane of the group.
  template <int NIB>
  static inline void accumulate(const int8_t* panel, const int32_t* ncorr, const uint8_t* tile,
                                int64_t rowb, int32_t* dots) {
    const int64_t d4 = rowb / 4;
    const __m256i ones = _mm256_set1_epi16(1);
    if constexpr (QV == 2 && NIB == 4) {
      // The main tile, with named accumulators: GCC then updates them in place (with arrays
      // it adds a register move per accumulator and step, which costs issue slots here).
      const __m256i c0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(ncorr));
      const __m256i c1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(ncorr + 8));
      __m256i a00 = c0, a01 = c1, a10 = c0, a11 = c1, a20 = c0, a21 = c1, a30 = c0, a31 = c1;
      const uint8_t *x0 = tile, *x1 = tile + rowb, *x2 = tile + 2 * rowb, *x3 = tile + 3 * rowb;
      // Two groups of 4 codes per step: with |qi| <= kQuantI8PackedQMax = 31 a vpmaddubsw
      // pair sum is at most 2 * 255 * 31 = 15810, so two of them add in int16 (vpaddw, at most
      // 31620 < 32767) before one vpmaddwd: 3 multiply-port ops per 64 products instead of 4.
      for (int64_t p4 = 0; p4 < d4; p4 += 2) {
        const int8_t* pp = panel + p4 * 64;
        const __m256i q0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(pp));
        const __m256i q1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(pp + 32));
        const __m256i r0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(pp + 64));
        const __m256i r1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(pp + 96));
        i8_madd2(a00, a01, x0 + p4 * 4, q0, q1, r0, r1, ones);
        i8_madd2(a10, a11, x1 + p4 * 4, q0, q1, r0, r1, ones);
        i8_madd2(a20, a21, x2 + p4 * 4, q0, q1, r0, r1, ones);
        i8_madd2(a30, a31, x3 + p4 * 4, q0, q1, r0, r1, ones);
      }
      __m256i* o = reinterpret_cast<__m256i*>(dots);
      _mm256_store_si256(o + 0, a00);
      _mm256_store_si256(o + 1, a01);
      _mm256_store_si256(o + 2, a10);
      _mm256_store_si256(o + 3, a11);
      _mm256_store_si256(o + 4, a20);
      _mm256_store_si256(o + 5, a21);
      _mm256_store_si256(o + 6, a30);
      _mm256_store_si256(o + 7, a31);
    } else {
      __m256i acc[NIB][QV];
      for (int v = 0; v < QV; ++v) {
        const __m256i c0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(ncorr + v * 8));
        for (int i = 0; i < NIB; ++i) acc[i][v] = c0;
      }
      for (int64_t p4 = 0; p4 < d4; ++p4) {
        __m256i qv[QV];
        for (int v = 0; v < QV; ++v)
          qv[v] = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel + p4 * G * 4 + v * 32));
        for (int i = 0; i < NIB; ++i) {
          int32_t w;
          std::memcpy(&w, tile + i * rowb + p4 * 4, 4);
          const __m256i xb = _mm256_set1_epi32(w);
          for (int v = 0; v < QV; ++v) acc[i][v] = i8_madd(acc[i][v], xb, qv[v], ones);
        }
      }
      for (int i = 0; i < NIB; ++i)
        for (int v = 0; v < QV; ++v)
          _mm256_store_si256(reinterpret_cast<__m256i*>(dots + (i * QV + v) * 8), acc[i][v]);
    }
  }

  template <int NIB>
  static inline void micro(const QuantTask& t, const int8_t* panel, const int32_t* ncorr,
                           const float* lsq, const float* lqn, const float* lqc,
                           const uint8_t* tile, int64_t rowb, const float* sc, const float* e,
                           const float* m, int64_t qbase, int64_t pos) {
    // The sums leave the registers before the epilogue: q_offer below is a call, which would
    // otherwise make GCC keep the accumulators on the stack throughout the loop.
    alignas(32) int32_t dots[NIB][QV][8];
    accumulate<NIB>(panel, ncorr, tile, rowb, &dots[0][0][0]);
    // Threshold test of all NIB * QV vectors first, one branch for the whole tile: passes are
    // rare once the thresholds have risen.
    float* taug = t.tau + (qbase - t.q0);
    const __m256 abs_slack = _mm256_set1_ps(kQuantAbsSlack);
    __m256 hit[NIB][QV];
    __m256 any = _mm256_setzero_ps();
    for (int i = 0; i < NIB; ++i) {
      const __m256 s = _mm256_set1_ps(sc[i]), ei = _mm256_set1_ps(e[i]), mi = _mm256_set1_ps(m[i]);
      for (int v = 0; v < QV; ++v) {
        const __m256i dv = _mm256_load_si256(reinterpret_cast<const __m256i*>(dots[i][v]));
        const __m256 T =
            _mm256_mul_ps(_mm256_mul_ps(_mm256_load_ps(lsq + v * 8), s), _mm256_cvtepi32_ps(dv));
        const __m256 rc = _mm256_fmadd_ps(_mm256_load_ps(lqc + v * 8), mi, abs_slack);
        const __m256 r = _mm256_fmadd_ps(_mm256_load_ps(lqn + v * 8), ei, rc);
        hit[i][v] = _mm256_cmp_ps(_mm256_add_ps(T, r), _mm256_loadu_ps(taug + v * 8), _CMP_GE_OQ);
        any = _mm256_or_ps(any, hit[i][v]);
      }
    }
    if (!_mm256_movemask_ps(any)) return;
    for (int i = 0; i < NIB; ++i)
      for (int v = 0; v < QV; ++v) {
        unsigned mask = static_cast<unsigned>(_mm256_movemask_ps(hit[i][v]));
        while (mask) {
          const int lane = __builtin_ctz(mask);
          mask &= mask - 1;
          const int64_t q = qbase + v * 8 + lane;
          if (q < t.q1) i8_refine(t, q, pos + i);
        }
      }
  }

  // u = c ^ 0x80 for the row's first codes, 32 at a time (QI8PackedDriver does the rest).
  static int64_t offset_codes(const int8_t* row, uint8_t* out, int64_t dim) {
    const __m256i off = _mm256_set1_epi8(static_cast<char>(0x80));
    int64_t p = 0;
    for (; p + 32 <= dim; p += 32)
      _mm256_storeu_si256(
          reinterpret_cast<__m256i*>(out + p),
          _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + p)), off));
    return p;
  }
};
