// AVX-512 VNNI integer scans of int8 storage: exact int32 dot products qi . c_j of the quantized
// query (|qi| <= kQuantI8VnniQMax = 127 on both paths) and the item codes (c_j in [-127, 127]).
// Included inside the namespace of a kernel file after vec_avx512.h and quant_scan_impl.h, by two
// files: quant_kernel_avx512_vnni.cpp (native, -mavx512vnni) and quant_kernel_vnni_simde.cpp
// (the same source over SIMDe's portable AVX-512, a test-only build), so use only intrinsics
// that both provide (that file lists the few it has to supply itself).
//
// Operands as in quant_i8_avx2.h: vpdpbusd multiplies unsigned bytes (the offset item codes
// u = c ^ 0x80 = c + 128 in [1, 255]) by signed bytes (qi) and adds each group of 4 products
// to an int32 lane. There is no int16 step, so nothing saturates and the queries keep 8 bits;
// the sums start at 0 and stay within 255 * 127 * dim < 2^31 (dim <= kQuantI8MaxDim), and
// qi . c = sum u qi - qcorr with qcorr = 128 sum(qi) from the driver, subtracted once at the
// end (starting from -qcorr, as the AVX2 packed kernel does, could pass 2^31 on the way).
//
// Score and radius (quant.h): T = (qscale * scale_j) * float(dot),
// r = |q'| err_j + qcoef (norm_j + err_j) + abs_slack; an item with T + r >= tau gets the second
// look in float32 (vn_refine, q_offer_refined in quant_scan_impl.h).

static inline __m512i vn_dot(__m512i acc, __m512i u8, __m512i s8) {
  return _mm512_dpbusd_epi32(acc, u8, s8);
}

// Lane i of the result = the sum of the 16 lanes of a[i].
static inline __m256i vn_half(__m512i a) {
  return _mm256_add_epi32(_mm512_castsi512_si256(a), _mm512_extracti64x4_epi64(a, 1));
}
static inline __m256i vn_hsum8(__m512i a0, __m512i a1, __m512i a2, __m512i a3, __m512i a4,
                               __m512i a5, __m512i a6, __m512i a7) {
  const __m256i h01 = _mm256_hadd_epi32(vn_half(a0), vn_half(a1));
  const __m256i h23 = _mm256_hadd_epi32(vn_half(a2), vn_half(a3));
  const __m256i h45 = _mm256_hadd_epi32(vn_half(a4), vn_half(a5));
  const __m256i h67 = _mm256_hadd_epi32(vn_half(a6), vn_half(a7));
  const __m256i x = _mm256_hadd_epi32(h01, h23), y = _mm256_hadd_epi32(h45, h67);
  return _mm256_add_epi32(_mm256_permute2x128_si256(x, y, 0x20),
                          _mm256_permute2x128_si256(x, y, 0x31));
}

// The first n (1..63) bytes at p, zeros after; nothing past p + n is read.
static inline __m512i vn_load_tail(const int8_t* p, int64_t n) {
  return _mm512_maskz_loadu_epi8(~0ull >> (64 - n), p);
}

// The second look at an item that passed the integer bound (q_offer_refined): q' . c_j in
// float32 FMAs over 16 lanes (any summation order: the float radius covers it).
static inline void vn_refine(const QuantTask& t, int64_t q, int64_t j) {
  const int64_t dim = t.dim;
  const float* qr = t.queries + q * dim;
  const int8_t* x = static_cast<const int8_t*>(t.items->codes) + j * dim;
  __m512 a0 = _mm512_setzero_ps(), a1 = a0;
  int64_t p = 0;
  for (; p + 32 <= dim; p += 32) {
    a0 = _mm512_fmadd_ps(_mm512_loadu_ps(qr + p), V::cvt_i8(x + p), a0);
    a1 = _mm512_fmadd_ps(_mm512_loadu_ps(qr + p + 16), V::cvt_i8(x + p + 16), a1);
  }
  for (; p + 16 <= dim; p += 16)
    a0 = _mm512_fmadd_ps(_mm512_loadu_ps(qr + p), V::cvt_i8(x + p), a0);
  float s = V::hsum(_mm512_add_ps(a0, a1));
  for (; p < dim; ++p) s += qr[p] * static_cast<float>(x[p]);
  q_offer_refined(t, q, j, s);
}

// ---------------------------------------------------------------------------------------------
// Direct path (a few queries): NQ queries x NI items (NQ * NI <= 8) of dot products along d, 64
// codes per step (a masked load for the tail), the NQ * NI accumulators reduced together by
// vn_hsum8 into one 8-lane vector whose lane a * NI + b is (query q + a, item j + b);
// QI8DirectDriver does the rest.
struct QI8DirectVnni : QI8DirectDriver<QI8DirectVnni> {
  // On an AMD Zen 5 class CPU (1M items, d = 128, one query) the rows below took 4.6 ms
  // without, 3.6 ms with prefetch (read floor 2.9 ms).
  static constexpr bool kPrefetchOneQuery = true;

  struct Acc {  // see acc_slot
    __m512i v0, v1, v2, v3, v4, v5, v6, v7;
  };

  // One step of 64 codes from p (n < 64: the last n codes, masked): item b meets query a into
  // accumulator a * NI + b, for K = b * NQ + a in order (one offset item live at a time).
  template <int NQ, int NI, int... K>
  static inline void step(Acc& A, const int8_t* const* qr, const int8_t* const* xr, int64_t p,
                          int64_t n, __m512i off, std::integer_sequence<int, K...>) {
    __m512i x = _mm512_setzero_si512();
    (upd<NQ, NI, K>(A, qr, xr, p, n, off, x), ...);
  }

  template <int NQ, int NI, int K>
  static inline void upd(Acc& A, const int8_t* const* qr, const int8_t* const* xr, int64_t p,
                         int64_t n, __m512i off, __m512i& x) {
    constexpr int b = K / NQ, a = K % NQ;
    // In the masked tail a missing item byte offsets to 128 and meets a zero query byte.
    if constexpr (a == 0)
      x = _mm512_xor_si512(n < 64 ? vn_load_tail(xr[b] + p, n) : _mm512_loadu_si512(xr[b] + p),
                           off);
    const __m512i qv = n < 64 ? vn_load_tail(qr[a] + p, n) : _mm512_loadu_si512(qr[a] + p);
    __m512i& acc = acc_slot<a * NI + b>(A);
    acc = vn_dot(acc, x, qv);
  }

  // One query, item b's whole row into accumulator b, for b = 0..NI-1 in turn.
  template <int NI, int... B>
  static inline void rows(Acc& A, const int8_t* qr, const int8_t* const* xr, int64_t dim,
                          __m512i off, std::integer_sequence<int, B...>) {
    (row<B>(A, qr, xr[B], dim, off), ...);
  }

  template <int B>
  static inline void row(Acc& A, const int8_t* qr, const int8_t* x, int64_t dim, __m512i off) {
    __m512i& acc = acc_slot<B>(A);
    int64_t p = 0;
    for (; p + 64 <= dim; p += 64)
      acc =
          vn_dot(acc, _mm512_xor_si512(_mm512_loadu_si512(x + p), off), _mm512_loadu_si512(qr + p));
    if (p < dim)  // a missing item byte offsets to 128 and meets a zero query byte
      acc = vn_dot(acc, _mm512_xor_si512(vn_load_tail(x + p, dim - p), off),
                   vn_load_tail(qr + p, dim - p));
  }

  // sum u qi of the block's NQ x NI pairs, in lanes a * NI + b (QI8DirectDriver::block).
  template <int NQ, int NI>
  static inline __m256i dots(const QuantTask& t, int64_t q, int64_t j) {
    const int64_t dim = t.dim;
    const int8_t* codes = static_cast<const int8_t*>(t.items->codes);
    const __m512i off = _mm512_set1_epi8(static_cast<char>(0x80));
    Acc A{};
    const int8_t* qr[NQ];
    const int8_t* xr[NI];
    for (int a = 0; a < NQ; ++a) qr[a] = t.qcodes + (q + a) * t.qstride;
    for (int b = 0; b < NI; ++b) xr[b] = codes + (j + b) * dim;
    if constexpr (NQ == 1) {
      // One query: each item row front to back, one after another (quant_scan_impl.h's
      // QDirect says why).
      rows<NI>(A, qr[0], xr, dim, off, std::make_integer_sequence<int, NI>{});
    } else {
      using Seq = std::make_integer_sequence<int, NQ * NI>;
      int64_t p = 0;
      for (; p + 64 <= dim; p += 64) step<NQ, NI>(A, qr, xr, p, 64, off, Seq{});
      if (p < dim) step<NQ, NI>(A, qr, xr, p, dim - p, off, Seq{});
    }
    return vn_hsum8(A.v0, A.v1, A.v2, A.v3, A.v4, A.v5, A.v6, A.v7);
  }

  static void refine(const QuantTask& t, int64_t q, int64_t j) { vn_refine(t, q, j); }
};

// ---------------------------------------------------------------------------------------------
// Packed path (many queries): the quantized queries of each group of G = QV * 16 transposed into
// a panel [dim4][G][4 bytes] (dim4 = ceil(dim / 4), zero-padded), an item tile copied once per
// task as offset codes u = c ^ 0x80 in rows of dim4 * 4 bytes (padding: any byte, it meets query
// zeros). The micro-kernel broadcasts 4 codes of an item (vpbroadcastd) against QV query
// vectors: one vpdpbusd per (item, query vector) per 4 dims into QV * NI int32 accumulators.
template <int QV, int NI>
struct QI8PackedVnni : QI8PackedDriver<QI8PackedVnni<QV, NI>, QV * 16, NI> {
  static constexpr int G = QV * 16;
  static constexpr int32_t kCorrSign = 1;  // see QI8PackedDriver

  static int64_t dim4(int64_t dim) { return (dim + 3) / 4; }

  // dots[(i * QV + v) * 16 + lane] = sum u qi of item i and query lane v * 16 + lane.
  template <int NIB>
  static inline void accumulate(const int8_t* panel, const uint8_t* tile, int64_t rowb,
                                int32_t* dots) {
    const int64_t d4 = rowb / 4;
    // Every loop over the registers is unrolled in full, so the accumulators stay in registers.
    __m512i acc[NIB][QV];
#pragma GCC unroll 32
    for (int i = 0; i < NIB; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < QV; ++v) acc[i][v] = _mm512_setzero_si512();
    for (int64_t p4 = 0; p4 < d4; ++p4) {
      __m512i qv[QV];
#pragma GCC unroll 4
      for (int v = 0; v < QV; ++v) qv[v] = _mm512_load_si512(panel + p4 * G * 4 + v * 64);
#pragma GCC unroll 32
      for (int i = 0; i < NIB; ++i) {
        int32_t w;
        std::memcpy(&w, tile + i * rowb + p4 * 4, 4);
        const __m512i xb = _mm512_set1_epi32(w);
#pragma GCC unroll 4
        for (int v = 0; v < QV; ++v) acc[i][v] = vn_dot(acc[i][v], xb, qv[v]);
      }
    }
#pragma GCC unroll 32
    for (int i = 0; i < NIB; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < QV; ++v) _mm512_store_si512(dots + (i * QV + v) * 16, acc[i][v]);
  }

  template <int NIB>
  static inline void micro(const QuantTask& t, const int8_t* panel, const int32_t* lcorr,
                           const float* lsq, const float* lqn, const float* lqc,
                           const uint8_t* tile, int64_t rowb, const float* sc, const float* e,
                           const float* m, int64_t qbase, int64_t pos) {
    // The sums leave the registers before the epilogue (see QI8PackedAvx2::micro).
    alignas(64) int32_t dots[NIB][QV][16];
    accumulate<NIB>(panel, tile, rowb, &dots[0][0][0]);
    float* taug = t.tau + (qbase - t.q0);
    const __m512 abs_slack = _mm512_set1_ps(kQuantAbsSlack);
    unsigned hit[NIB][QV];
    unsigned any = 0;
    for (int i = 0; i < NIB; ++i) {
      const __m512 s = _mm512_set1_ps(sc[i]), ei = _mm512_set1_ps(e[i]), mi = _mm512_set1_ps(m[i]);
      for (int v = 0; v < QV; ++v) {
        const __m512i dv =
            _mm512_sub_epi32(_mm512_load_si512(dots[i][v]), _mm512_load_si512(lcorr + v * 16));
        const __m512 T =
            _mm512_mul_ps(_mm512_mul_ps(_mm512_load_ps(lsq + v * 16), s), _mm512_cvtepi32_ps(dv));
        const __m512 rc = _mm512_fmadd_ps(_mm512_load_ps(lqc + v * 16), mi, abs_slack);
        const __m512 r = _mm512_fmadd_ps(_mm512_load_ps(lqn + v * 16), ei, rc);
        hit[i][v] = static_cast<unsigned>(
            _mm512_cmp_ps_mask(_mm512_add_ps(T, r), _mm512_loadu_ps(taug + v * 16), _CMP_GE_OQ));
        any |= hit[i][v];
      }
    }
    if (!any) return;
    for (int i = 0; i < NIB; ++i)
      for (int v = 0; v < QV; ++v) {
        unsigned mask = hit[i][v];
        while (mask) {
          const int lane = __builtin_ctz(mask);
          mask &= mask - 1;
          const int64_t q = qbase + v * 16 + lane;
          if (q < t.q1) vn_refine(t, q, pos + i);
        }
      }
  }

  // u = c ^ 0x80 for the row's first codes, 64 at a time (QI8PackedDriver does the rest).
  static int64_t offset_codes(const int8_t* row, uint8_t* out, int64_t dim) {
    const __m512i off = _mm512_set1_epi8(static_cast<char>(0x80));
    int64_t p = 0;
    for (; p + 64 <= dim; p += 64)
      _mm512_storeu_si512(out + p, _mm512_xor_si512(_mm512_loadu_si512(row + p), off));
    return p;
  }
};

// ---------------------------------------------------------------------------------------------
// Broadcast path (2 to 16 queries): the item rows are read straight from memory, 4 R codes at a
// time broadcast to every 4 R-byte group of a vector whose 16 lanes hold query slots (R lanes a
// slot, one lane per 4 dims of the step) from a panel [steps][16 lanes][4 bytes]. No tile is
// decoded and the horizontal sums are over R lanes only, so an item row costs dim / (4 R)
// vpdpbusd, one broadcast load each, plus a short epilogue per R items: fewer queries take a
// larger R (4 for up to 4 queries, 2 for up to 8, else 1).
//
// vpdpbusd's broadcast operand is its signed one, so here the items are the signed codes c and
// the queries the unsigned operand: qu = qi + 128 in [1, 255] (0 past dim, where a step reads
// into the next row). sum qu c = qi . c + 128 sum(c_j), and each item's sum(c_j) comes from its
// row: a vpdpbusd of a vector of ones per 64 codes, reduced across a block's 16 items by a
// transpose (that pass reads the rows first, bringing them into L1 for the scan). A slot whose
// query is all 128 (qi = 0) would give the sum too, at one slot's cost: no faster, measured.
// The sums stay within 255 * 127 * dim < 2^31 as on the other paths.
template <int R>
struct QI8BcastVnni {
  static_assert(R == 1 || R == 2 || R == 4, "4 R bytes broadcast");
  static constexpr int kSlots = 16 / R;          // queries
  static constexpr int kStepBytes = 4 * R;       // codes per row and step
  static constexpr int NI = 16;                  // items per block (16 accumulators)
  static constexpr int64_t kPrefetchBlocks = 4;  // as the float32 broadcast path

  static int64_t steps(int64_t dim) { return (dim + kStepBytes - 1) / kStepBytes; }
  // The panel, then a zero-padded copy of one row (scan).
  static int64_t scratch_floats(int64_t dim) { return steps(dim) * (16 + R) + 64; }

  static inline __m512i bcast(const void* p) {
    if constexpr (R == 1) {
      int32_t w;
      std::memcpy(&w, p, 4);
      return _mm512_set1_epi32(w);
    } else if constexpr (R == 2) {
      int64_t w;
      std::memcpy(&w, p, 8);
      return _mm512_set1_epi64(w);
    } else {
      return _mm512_broadcast_i32x4(_mm_loadu_si128(static_cast<const __m128i*>(p)));
    }
  }

  // Lane l of the result: the sum of the R lanes of l's slot.
  static inline __m512i slot_sum(__m512i a) {
    if constexpr (R >= 2)
      a = _mm512_add_epi32(
          a, _mm512_permutexvar_epi32(
                 _mm512_set_epi32(14, 15, 12, 13, 10, 11, 8, 9, 6, 7, 4, 5, 2, 3, 0, 1), a));
    if constexpr (R == 4)
      a = _mm512_add_epi32(
          a, _mm512_permutexvar_epi32(
                 _mm512_set_epi32(13, 12, 15, 14, 9, 8, 11, 10, 5, 4, 7, 6, 1, 0, 3, 2), a));
    return a;
  }

  // Lane 4 b + i of the result: the sum of the 4 lanes of 128-bit block b of a[i] (a 4 x 4
  // transpose within each block, and adds).
  static inline __m512i sum4_in_blocks(const __m512i* a) {
    const __m512i s01 =
        _mm512_add_epi32(_mm512_unpacklo_epi32(a[0], a[1]), _mm512_unpackhi_epi32(a[0], a[1]));
    const __m512i s23 =
        _mm512_add_epi32(_mm512_unpacklo_epi32(a[2], a[3]), _mm512_unpackhi_epi32(a[2], a[3]));
    return _mm512_add_epi32(_mm512_unpacklo_epi64(s01, s23), _mm512_unpackhi_epi64(s01, s23));
  }

  // Lane 2 s + i (R = 2) or 4 s + i (R = 4) of the result: the sum of slot s's R lanes of a[i].
  static inline __m512i interleave_sums(const __m512i* a) {
    if constexpr (R == 4) {
      return sum4_in_blocks(a);
    } else {
      const __m512i lo = _mm512_unpacklo_epi32(a[0], a[1]);
      const __m512i hi = _mm512_unpackhi_epi32(a[0], a[1]);
      return _mm512_add_epi32(_mm512_unpacklo_epi64(lo, hi), _mm512_unpackhi_epi64(lo, hi));
    }
  }

  // out[i] = sum of row i's dim codes, i < NB.
  template <int NB>
  static inline void row_sums(const int8_t* const* xr, int64_t dim, int32_t* out) {
    const __m512i ones = _mm512_set1_epi8(1);
    __m512i cs[NB];
#pragma GCC unroll 16
    for (int i = 0; i < NB; ++i) {
      __m512i a = _mm512_setzero_si512();
      int64_t p = 0;
      for (; p + 64 <= dim; p += 64) a = vn_dot(a, ones, _mm512_loadu_si512(xr[i] + p));
      if (p < dim) a = vn_dot(a, ones, vn_load_tail(xr[i] + p, dim - p));
      cs[i] = a;
    }
    if constexpr (NB == 16) {
      // Four 4 x 4 transposes within 128-bit blocks (w[g] lane 4 b + i: block b of item
      // 4 g + i), then one of the blocks themselves (lane 4 g + i: item 4 g + i in full).
      __m512i w[4];
      for (int g = 0; g < 4; ++g) w[g] = sum4_in_blocks(cs + 4 * g);
      const __m512i s01 = _mm512_add_epi32(_mm512_shuffle_i32x4(w[0], w[1], 0x44),
                                           _mm512_shuffle_i32x4(w[0], w[1], 0xee));
      const __m512i s23 = _mm512_add_epi32(_mm512_shuffle_i32x4(w[2], w[3], 0x44),
                                           _mm512_shuffle_i32x4(w[2], w[3], 0xee));
      _mm512_store_si512(out, _mm512_add_epi32(_mm512_shuffle_i32x4(s01, s23, 0x88),
                                               _mm512_shuffle_i32x4(s01, s23, 0xdd)));
    } else {
      for (int i = 0; i < NB; ++i) {  // the few rows past the last block
        alignas(64) int32_t v[16];
        _mm512_store_si512(v, cs[i]);
        out[i] = 0;
        for (int l = 0; l < 16; ++l) out[i] += v[l];
      }
    }
  }

  struct Lanes {  // per lane: its slot's scale, |q'|, qcoef (padding slots: 0), tau indices
    __m512 sq, qn, qc;
    __m512i tidx;
  };

  // Items [j, j + NB) (rows xr) against the panel; prefetch: the rows a few blocks ahead (to L2)
  // and the next block's (to L1), a line per row every line's worth of steps, as fast as this
  // block's lines are used (the rows are read side by side, a few bytes a step each, which the
  // hardware prefetchers do not follow).
  template <int NB>
  static inline void block(const QuantTask& t, const uint8_t* panel, const Lanes& L,
                           const int8_t* const* xr, int64_t j, bool prefetch) {
    const int64_t ns = steps(t.dim);
    constexpr int kLineSteps = 64 / kStepBytes;
    alignas(64) int32_t rs[16];
    row_sums<NB>(xr, t.dim, rs);
    __m512i acc[NB];
#pragma GCC unroll 16
    for (int i = 0; i < NB; ++i) acc[i] = _mm512_setzero_si512();
    const int64_t far = kPrefetchBlocks * NB * t.dim, near = NB * t.dim;
    for (int64_t s0 = 0; s0 < ns; s0 += kLineSteps) {
      if (prefetch) {
#pragma GCC unroll 16
        for (int i = 0; i < NB; ++i) {
          __builtin_prefetch(xr[i] + far + kStepBytes * s0, 0, 2);
          __builtin_prefetch(xr[i] + near + kStepBytes * s0, 0, 3);
        }
      }
      const int64_t s1 = s0 + kLineSteps < ns ? s0 + kLineSteps : ns;
      for (int64_t s = s0; s < s1; ++s) {
        const __m512i qv = _mm512_load_si512(panel + s * 64);
#pragma GCC unroll 16
        for (int i = 0; i < NB; ++i) acc[i] = vn_dot(acc[i], qv, bcast(xr[i] + kStepBytes * s));
      }
    }
    if constexpr (R > 1 && NB % R == 0) {
      // R items' slot sums in one vector (lane l: slot l / R, item l % R), one epilogue each.
      for (int i = 0; i < NB; i += R) epilogue<R>(t, L, interleave_sums(acc + i), rs + i, j + i);
    } else {
      for (int i = 0; i < NB; ++i) epilogue<1>(t, L, slot_sum(acc[i]), rs + i, j + i);
    }
  }

  // Score, radius and threshold test of sums (M = 1: one item j, its slot sums in every lane of
  // the slot; M = R: items j .. j + R - 1, lane l holding item l % R's sum of slot l / R), then
  // the second look for the lanes that pass. rs: the items' code sums.
  template <int M>
  static inline void epilogue(const QuantTask& t, const Lanes& L, __m512i sums, const int32_t* rs,
                              int64_t j) {
    // 128 sum(c) of lane l's item (M = R: the R sums, 4 R bytes, as a step's codes are read).
    const __m512i sums_c = M == 1 ? _mm512_set1_epi32(rs[0]) : bcast(rs);
    const __m512i corr = _mm512_slli_epi32(sums_c, 7);
    const __m512 sc = V::bcast_lanes<M>(t.items->scale + j),
                 e = V::bcast_lanes<M>(t.items->err + j);
    const __m512 m = _mm512_add_ps(V::bcast_lanes<M>(t.items->norm + j), e);
    const __m512 abs_slack = _mm512_set1_ps(kQuantAbsSlack);
    // One lane per slot is looked at when M = 1 (after slot_sum its R lanes are equal).
    constexpr unsigned kLook = M > 1 || R == 1 ? 0xffffu : R == 2 ? 0x5555u : 0x1111u;
    const __m512i dot = _mm512_sub_epi32(sums, corr);
    const __m512 T = _mm512_mul_ps(_mm512_mul_ps(L.sq, sc), _mm512_cvtepi32_ps(dot));
    const __m512 r = _mm512_fmadd_ps(L.qn, e, _mm512_fmadd_ps(L.qc, m, abs_slack));
    // tau is padded with +inf past the last query (the driver): padding slots never pass.
    const __m512 tau = _mm512_permutexvar_ps(L.tidx, _mm512_loadu_ps(t.tau));
    unsigned mask =
        kLook & static_cast<unsigned>(_mm512_cmp_ps_mask(_mm512_add_ps(T, r), tau, _CMP_GE_OQ));
    while (mask) {
      const int lane = __builtin_ctz(mask);
      mask &= mask - 1;
      const int64_t q = t.q0 + lane / R;
      if (q < t.q1) vn_refine(t, q, j + (M > 1 ? lane % R : 0));
    }
  }

  static void scan(const QuantTask& t) {
    const int64_t nq = t.q1 - t.q0, dim = t.dim;
    if (nq <= 0 || t.j1 <= t.j0) return;
    const int64_t ns = steps(dim);
    uint8_t* panel = reinterpret_cast<uint8_t*>(t.scratch);  // 64-byte aligned
    // Lane l: slot l / R, dims 4 (s R + l % R) .. + 4 of step s.
    for (int64_t s = 0; s < ns; ++s)
      for (int l = 0; l < 16; ++l) {
        const int64_t q = t.q0 + l / R;
        uint8_t* dst = panel + (s * 16 + l) * 4;
        for (int b = 0; b < 4; ++b) {
          const int64_t p = 4 * (s * R + l % R) + b;
          const int qi = p < dim && q < t.q1 ? t.qcodes[q * t.qstride + p] : 0;
          dst[b] = p < dim ? static_cast<uint8_t>(qi + 128) : 0;
        }
      }
    alignas(64) float f[3][16];
    alignas(64) int32_t ti[16];
    for (int l = 0; l < 16; ++l) {
      const int64_t q = t.q0 + l / R;
      f[0][l] = q < t.q1 ? t.qscale[q] : 0.0f;
      f[1][l] = q < t.q1 ? t.qnorm[q] : 0.0f;
      f[2][l] = q < t.q1 ? t.qcoef[q] : 0.0f;
      ti[l] = l / R;
    }
    Lanes L;
    L.sq = _mm512_load_ps(f[0]);
    L.qn = _mm512_load_ps(f[1]);
    L.qc = _mm512_load_ps(f[2]);
    L.tidx = _mm512_load_si512(ti);
    const int8_t* codes = static_cast<const int8_t*>(t.items->codes);
    // A row's last step reads ns * kStepBytes - dim bytes past it, into the rows after it (more
    // than one when dim < kStepBytes): the rows from jend on, whose steps would read past the
    // codes, are read from a zero-padded copy.
    const int64_t need_rows = (ns * kStepBytes + dim - 1) / dim;  // rows a row's steps span
    int64_t jend = t.items->n - need_rows + 1;
    jend = jend < t.j0 ? t.j0 : jend > t.j1 ? t.j1 : jend;
    int64_t j = t.j0;
    for (; j + NI <= jend; j += NI) {
      if ((j & 4095) < NI && t.cancel && t.cancel->load(std::memory_order_relaxed)) return;
      const int8_t* xr[NI];
      for (int i = 0; i < NI; ++i) xr[i] = codes + (j + i) * dim;
      block<NI>(t, panel, L, xr, j, j + (kPrefetchBlocks + 1) * NI <= t.j1);
    }
    for (; j < jend; ++j) {
      const int8_t* xr[1] = {codes + j * dim};
      block<1>(t, panel, L, xr, j, false);
    }
    int8_t* copy = reinterpret_cast<int8_t*>(panel + ns * 64);  // past the panel
    for (; j < t.j1; ++j) {
      std::memset(copy, 0, static_cast<size_t>(ns * kStepBytes));
      std::memcpy(copy, codes + j * dim, static_cast<size_t>(dim));
      const int8_t* xr[1] = {copy};
      block<1>(t, panel, L, xr, j, false);
    }
  }
};

// The broadcast kernels by batch (the small-batch interface of scan_impl.h): tasks of 2 to 16
// integer int8 queries on either path (and one query's on the packed one), each on the widest R
// that holds it. One query keeps the rows of the direct path (memory-bound there, with fewer
// instructions). ItemIndex, N = 1M, d = 128, 2 threads, an AMD Zen 5 class CPU (read floor 2.9-3.3
// ms), median ms, before -> after: B = 3 6.4-7.0 -> 4.0-4.6, B = 6 8.9 -> 3.1-4.4, B = 8 11.0-15.8
// -> 3.2-3.3, B = 12 8.8-10.1 -> 4.9-5.1, B = 16 8.7-10.5
// -> 5.3-5.5.
struct QI8BcastVnniSet {
  static int64_t scratch_floats(int64_t dim) {
    return QI8BcastVnni<1>::scratch_floats(dim);  // the most steps
  }
  static bool scan(const QuantTask& t, bool direct) {
    const int64_t nq = t.q1 - t.q0;
    if (t.items->type != QuantType::Int8 || !t.qcodes || nq < (direct ? 2 : 1) || nq > 16)
      return false;
    q_scan_by_slots<QI8BcastVnni>(t);
    return true;
  }
};
