// The drivers of the integer int8 scans, shared by quant_i8_avx2.h and quant_i8_vnni.h: all that
// is not the kernels' own arithmetic. Included inside a kernel file's namespace after
// quant_scan_impl.h, in files compiled with AVX2 at least (the epilogues use 8-lane AVX2 vectors).

// Accumulator K of a kernel's struct of eight named vectors v0..v7, picked at compile time (a
// local array of vectors was kept on the stack and zeroed with rep stos on every block).
template <int K, class Acc>
static inline auto& acc_slot(Acc& A) {
  static_assert(K >= 0 && K < 8, "slot");
  if constexpr (K == 0)
    return A.v0;
  else if constexpr (K == 1)
    return A.v1;
  else if constexpr (K == 2)
    return A.v2;
  else if constexpr (K == 3)
    return A.v3;
  else if constexpr (K == 4)
    return A.v4;
  else if constexpr (K == 5)
    return A.v5;
  else if constexpr (K == 6)
    return A.v6;
  else
    return A.v7;
}

// ---------------------------------------------------------------------------------------------
// Direct path (a few queries): blocks of NQ queries x NI items (NQ * NI <= 8). K supplies
//   dots<NQ, NI>(t, q, j)  the 8-lane int32 vector of sum u qi whose lane a * NI + b is (query
//                          q + a, item j + b) (lanes past NQ * NI: anything);
//   refine(t, q, j)        the float32 second look (q_offer_refined).
//   kPrefetchOneQuery      whether one query's blocks prefetch ahead too (as several queries'
//                          always do).
// The epilogue (score, radius, threshold) is vectorized over those 8 lanes.
template <class K>
struct QI8DirectDriver {
  // Query-side lane vectors of a group of NQ queries laid out for NI items per block; built once
  // per query group, so plain stores are fine here.
  struct QLanes {
    __m256 sq, qn, qc;
    __m256i corr, tidx;
  };

  template <int NQ, int NI>
  static QLanes qlanes(const QuantTask& t, int64_t q) {
    alignas(32) int32_t ia[8], ic[8];
    alignas(32) float fs[8], fn[8], fc[8];
    for (int l = 0; l < 8; ++l) {
      const int a = l / NI < NQ ? l / NI : 0;
      ia[l] = a;
      ic[l] = t.qcorr[q + a];
      fs[l] = t.qscale[q + a];
      fn[l] = t.qnorm[q + a];
      fc[l] = t.qcoef[q + a];
    }
    QLanes ql;
    ql.sq = _mm256_load_ps(fs);
    ql.qn = _mm256_load_ps(fn);
    ql.qc = _mm256_load_ps(fc);
    ql.corr = _mm256_load_si256(reinterpret_cast<const __m256i*>(ic));
    ql.tidx = _mm256_load_si256(reinterpret_cast<const __m256i*>(ia));
    return ql;
  }

  // p[lane % NI] in each lane (NI items of lane a * NI + b), reading only p[0..NI).
  template <int NI>
  static inline __m256 item_lanes(const float* p) {
    static_assert(NI == 1 || NI == 2 || NI == 4 || NI == 8, "NI divides 8");
    if (NI == 8) return _mm256_loadu_ps(p);
    if (NI == 4) return _mm256_broadcast_ps(reinterpret_cast<const __m128*>(p));
    if (NI == 2) {
      double w;
      std::memcpy(&w, p, 8);
      return _mm256_castpd_ps(_mm256_set1_pd(w));
    }
    return _mm256_broadcast_ss(p);
  }

  // Not inlined: the caller's loop would keep the QLanes vectors in registers and spill
  // accumulators instead.
  template <int NQ, int NI>
  __attribute__((noinline)) static void block(const QuantTask& t, const QLanes& ql, int64_t q,
                                              int64_t j) {
    constexpr int NA = NQ * NI;
    static_assert(NA <= 8, "at most 8 accumulators");
    if constexpr (NQ > 1 || K::kPrefetchOneQuery) {  // The rows of a block are contiguous; ask
      // for those a few blocks ahead (the hardware prefetcher alone leaves the scan waiting on
      // memory, even from L3). One query's kernels read the rows in turn, which the prefetchers
      // follow well enough for some kernels (K::kPrefetchOneQuery: measured per kernel).
      const int64_t bytes = NI * t.dim, ahead = bytes < 1024 ? 4096 : 4 * bytes;
      const char* pf = reinterpret_cast<const char*>(t.items->codes) + j * t.dim + ahead;
      for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(pf + o, 0, 3);
    }
    const __m256i raw = K::template dots<NQ, NI>(t, q, j);
    const __m256i dot = _mm256_sub_epi32(raw, ql.corr);
    const __m256 sc = item_lanes<NI>(t.items->scale + j);
    const __m256 e = item_lanes<NI>(t.items->err + j);
    const __m256 m = _mm256_add_ps(item_lanes<NI>(t.items->norm + j), e);
    const __m256 T = _mm256_mul_ps(_mm256_mul_ps(ql.sq, sc), _mm256_cvtepi32_ps(dot));
    const __m256 r =
        _mm256_fmadd_ps(ql.qn, e, _mm256_fmadd_ps(ql.qc, m, _mm256_set1_ps(kQuantAbsSlack)));
    // tau is padded past the last query (the driver), so 8 lanes can be read from q.
    const __m256 tau = _mm256_permutevar8x32_ps(_mm256_loadu_ps(t.tau + (q - t.q0)), ql.tidx);
    unsigned mask = static_cast<unsigned>(
        _mm256_movemask_ps(_mm256_cmp_ps(_mm256_add_ps(T, r), tau, _CMP_GE_OQ)));
    mask &= (1u << NA) - 1;
    while (mask) {
      const int lane = __builtin_ctz(mask);
      mask &= mask - 1;
      K::refine(t, q + lane / NI, j + lane % NI);
    }
  }

  template <int NQ>
  static void run_group(const QuantTask& t, int64_t q, int64_t j0, int64_t j1) {
    constexpr int NI = 8 / NQ;
    const QLanes ql = qlanes<NQ, NI>(t, q);
    int64_t j = j0;
    for (; j + NI <= j1; j += NI) block<NQ, NI>(t, ql, q, j);
    if (j < j1) {
      const QLanes q1 = qlanes<NQ, 1>(t, q);
      for (; j < j1; ++j) block<NQ, 1>(t, q1, q, j);
    }
  }

  static void scan(const QuantTask& t) {
    if (t.q1 <= t.q0 || t.j1 <= t.j0) return;
    // Items between cancellation checks; the tile (~256 KiB of codes) is re-read from cache by
    // each query group.
    int64_t tile = (256 * 1024) / t.dim;
    tile = tile < 64 ? 64 : (tile / 8 * 8);
    for (int64_t t0 = t.j0; t0 < t.j1; t0 += tile) {
      if (t.cancel && t.cancel->load(std::memory_order_relaxed)) return;
      const int64_t t1 = t.j1 - t0 < tile ? t.j1 : t0 + tile;
      int64_t q = t.q0;
      for (; q + 8 <= t.q1; q += 8) run_group<8>(t, q, t0, t1);
      for (; q + 4 <= t.q1; q += 4) run_group<4>(t, q, t0, t1);
      for (; q + 2 <= t.q1; q += 2) run_group<2>(t, q, t0, t1);
      for (; q < t.q1; ++q) run_group<1>(t, q, t0, t1);
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Packed path (many queries): scratch layout, query panels, the item tile of offset codes, and
// the loop over query groups and items. K (derived from QI8PackedDriver<K, G, NI>) supplies:
//   dim4(dim)                  groups of 4 codes per panel row and tile row (zero-padded);
//   kCorrSign                  the sign with which qcorr = 128 sum(qi) enters the per-lane
//                              correction its micro-kernel takes;
//   offset_codes(row, out, dim) writes u = c ^ 0x80 for a leading run of the row's codes and
//                              returns its length (the driver does the rest);
//   micro<NIB>(t, panel, corr, lsq, lqn, lqc, tile, rowb, sc, er, nm, qbase, j)
//                              scores NIB items of the tile against one query group.
// Panels are [dim4][G][4 bytes] per group of G queries; tile rows are dim4 * 4 bytes (the padding
// meets zero query codes).
template <class K, int G, int NI>
struct QI8PackedDriver {
  static int64_t tile_items(int64_t dim) {
    int64_t n = (32 * 1024) / (K::dim4(dim) * 4);
    n = n / NI * NI;
    if (n < NI) n = NI;
    if (n > 256 * NI) n = 256 * NI;
    return n;
  }

  // Scratch, in bytes from 64-byte aligned offsets: panels, per-lane correction (int32) and
  // qscale, |q'|, qcoef (float), the item tile and per-item scale, err, norm + err.
  static int64_t panel_bytes(int64_t dim) { return K::dim4(dim) * 4 * G; }
  static int64_t scratch_floats(int64_t dim, int64_t qblock) {
    const int64_t groups = (qblock + G - 1) / G, nt = tile_items(dim);
    const int64_t bytes =
        groups * panel_bytes(dim) + groups * G * 16 + nt * K::dim4(dim) * 4 + nt * 12 + 6 * 64;
    return bytes / 4 + 16;
  }

  static int64_t up64(int64_t b) { return (b + 63) / 64 * 64; }

  static void scan(const QuantTask& t) {
    const int64_t dim = t.dim, nq = t.q1 - t.q0;
    if (nq <= 0 || t.j1 <= t.j0) return;
    const int64_t d4 = K::dim4(dim), rowb = d4 * 4, nt = tile_items(dim);
    const int64_t groups = (nq + G - 1) / G, pb = panel_bytes(dim);
    char* base = reinterpret_cast<char*>(t.scratch);
    int8_t* panels = reinterpret_cast<int8_t*>(base);
    char* cur = base + up64(groups * pb);
    int32_t* corr = reinterpret_cast<int32_t*>(cur);
    float* lsq = reinterpret_cast<float*>(cur + groups * G * 4);
    float* lqn = lsq + groups * G;
    float* lqc = lqn + groups * G;
    cur += up64(groups * G * 16);
    uint8_t* tile = reinterpret_cast<uint8_t*>(cur);
    cur += up64(nt * rowb);
    float* sc = reinterpret_cast<float*>(cur);
    float* er = sc + nt;
    float* nm = er + nt;
    for (int64_t g = 0; g < groups; ++g)
      for (int l = 0; l < G; ++l) {
        const int64_t q = t.q0 + g * G + l, li = g * G + l;
        int8_t* dst = panels + g * pb + l * 4;
        if (q < t.q1) {
          const int8_t* src = t.qcodes + q * t.qstride;  // zero-padded to qstride >= rowb
          for (int64_t p4 = 0; p4 < d4; ++p4) std::memcpy(dst + p4 * G * 4, src + p4 * 4, 4);
          corr[li] = K::kCorrSign * t.qcorr[q];
          lsq[li] = t.qscale[q];
          lqn[li] = t.qnorm[q];
          lqc[li] = t.qcoef[q];
        } else {
          for (int64_t p4 = 0; p4 < d4; ++p4) std::memset(dst + p4 * G * 4, 0, 4);
          corr[li] = 0;
          lsq[li] = lqn[li] = lqc[li] = 0.0f;
        }
      }
    const int8_t* codes = static_cast<const int8_t*>(t.items->codes);
    for (int64_t t0 = t.j0; t0 < t.j1; t0 += nt) {
      if (t.cancel && t.cancel->load(std::memory_order_relaxed)) return;
      const int64_t n = t.j1 - t0 < nt ? t.j1 - t0 : nt;
      for (int64_t i = 0; i < n; ++i) {
        const int8_t* row = codes + (t0 + i) * dim;
        // The codes stream from memory once per task; ask ~4 KiB ahead.
        const char* ahead = reinterpret_cast<const char*>(row) + 4096;
        for (int64_t o = 0; o < dim; o += 64) __builtin_prefetch(ahead + o, 0, 3);
        uint8_t* out = tile + i * rowb;
        int64_t p = K::offset_codes(row, out, dim);
        for (; p < dim; ++p) out[p] = static_cast<uint8_t>(row[p]) ^ 0x80u;
        for (; p < rowb; ++p) out[p] = 0x80u;
        const float ev = t.items->err[t0 + i];
        sc[i] = t.items->scale[t0 + i];
        er[i] = ev;
        nm[i] = t.items->norm[t0 + i] + ev;
      }
      for (int64_t g = 0; g < groups; ++g) {
        const int8_t* pg = panels + g * pb;
        const int64_t o = g * G, qbase = t.q0 + g * G;
        int64_t i = 0;
        for (; i + NI <= n; i += NI)
          K::template micro<NI>(t, pg, corr + o, lsq + o, lqn + o, lqc + o, tile + i * rowb, rowb,
                                sc + i, er + i, nm + i, qbase, t0 + i);
        for (; i < n; ++i)
          K::template micro<1>(t, pg, corr + o, lsq + o, lqn + o, lqc + o, tile + i * rowb, rowb,
                               sc + i, er + i, nm + i, qbase, t0 + i);
      }
    }
  }
};
