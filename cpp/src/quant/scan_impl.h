// The quantized scan, written once over a vector type V and included by each
// quant/kernels_<isa>.cpp inside its own namespace (every function here gets that file's flags).
//
// V provides: W (lanes), R, zero, set1, load (aligned), loadu, store (aligned), storeu, fma(a, b,
// c) = a * b + c, mul, add, ge_mask (bit per lane of a >= b, false for NaN), hsum, and the
// decoders cvt_i8(const int8_t*) / cvt_f16(const uint16_t*) of W codes to W floats.
//
// Requires <cstdint>, <cstring>, <atomic>, "recfast/heap.h", "vec/scalar_helpers.h" and
// "quant/kernels.h" first.
// QV query vectors x NI items form the packed path's register tile.
//
// int8 storage with quantized queries (t.qcodes set) is scanned with integer dot products
// qi . c_j, exact in int32, by the kernel classes each file passes to q_scan_direct /
// q_scan_packed (QI8Scalar here; the AVX2 file has its own); both score
// T = (qscale * scale_j) * float(qi . c_j) with the radius of quant.h, and give the items that
// pass a second look in float32 (q_offer_refined). Without qcodes (float16,
// or int8 beyond kQuantI8MaxDim) the float32 QDirect / QPacked below decode the codes and score
// T = scale_j * (q' . c_j) with the float radius.

static inline float q_decode1(int8_t c) { return static_cast<float>(c); }
static inline float q_decode1(uint16_t c) { return half_to_float(c); }
static inline typename V::R q_decodew(const int8_t* p) { return V::cvt_i8(p); }
static inline typename V::R q_decodew(const uint16_t* p) { return V::cvt_f16(p); }

// Drop the candidates whose upper bound fell below the threshold.
static inline void q_compact(QueryState& st, float tau) {
  int64_t w = 0;
  for (int64_t i = 0; i < st.n_cands; ++i)
    if (st.cands[i].ub >= tau) st.cands[w++] = st.cands[i];
  st.n_cands = w;
}

// Offer item `pos` with quantized score T and certified radius r to query q.
static inline void q_offer(const QuantTask& t, int64_t q, int64_t pos, float T, float r) {
  const int64_t li = q - t.q0;
  const float ub = T + r;
  if (!(ub >= t.tau[li])) return;
  if (t.allow && !t.allow[pos]) return;
  if (is_excluded(t.exclude, q, pos)) return;
  QueryState& st = t.states[li];
  const float lb = T - r;
  if (better(lb, pos, st.lb_scores[0], st.lb_ids[0])) {
    heap_replace_top(st.lb_scores, st.lb_ids, t.heap_k, lb, pos);
    t.tau[li] = st.lb_scores[0];
  }
  if (st.n_cands == st.cap) {
    q_compact(st, t.tau[li]);
    if (st.n_cands * 2 > st.cap) st.grow(&st);
  }
  st.cands[st.n_cands++] = Cand{pos, ub, T};
}

static inline float q_radius_item(const QuantTask& t, int64_t j) {
  const float e = t.items->err[j];
  return e + t.rel_slack * (t.items->norm[j] + e);
}

// int8 second look. An item whose integer bound reaches the threshold (T + r >= tau) is scored
// again as the float32 scan would: T' = scale_j * (q' . c_j) in float32, with the float radius
// |q'| (err + c (norm + err)) + abs_slack (quant.h), and offered with that pair. The integer
// radius carries the query's quantization error eq (norm + err), a few times the item's own err,
// and offering it would leave a few times more survivors to re-score, each a float32 row read;
// both pairs are certified, so the integer one only decides which items get the second look.
// qc = q' . c_j in float32 (any summation order).
static inline void q_offer_refined(const QuantTask& t, int64_t q, int64_t j, float qc) {
  const float T = qc * t.items->scale[j];
  const float r = t.qnorm[q] * q_radius_item(t, j) + kQuantAbsSlack;
  if (T + r >= t.tau[q - t.q0]) q_offer(t, q, j, T, r);
}

// The integer int8 score and radius of query q and item j from the exact dot = qi . c_j (the
// scalar form of what the vector kernels compute; see quant.h for the bound), then the second
// look.
static inline void q_offer_i8(const QuantTask& t, int64_t q, int64_t j, int32_t dot) {
  const float T = (t.qscale[q] * t.items->scale[j]) * static_cast<float>(dot);
  const float e = t.items->err[j];
  const float r = t.qnorm[q] * e + t.qcoef[q] * (t.items->norm[j] + e) + kQuantAbsSlack;
  if (!(T + r >= t.tau[q - t.q0])) return;
  const float* qr = t.queries + q * t.dim;
  const int8_t* x = static_cast<const int8_t*>(t.items->codes) + j * t.dim;
  float s = 0.0f;
  for (int64_t p = 0; p < t.dim; ++p) s += qr[p] * static_cast<float>(x[p]);
  q_offer_refined(t, q, j, s);
}

// Portable integer int8 scan (any number of queries): int32 sums of int8 products, exact.
struct QI8Scalar {
  static int64_t scratch_floats(int64_t, int64_t) { return 0; }

  static void scan(const QuantTask& t) {
    if (t.q1 <= t.q0 || t.j1 <= t.j0) return;
    const int64_t dim = t.dim;
    const int8_t* codes = static_cast<const int8_t*>(t.items->codes);
    constexpr int64_t kTile = 1024;  // items between cancellation checks, re-read per query
    for (int64_t t0 = t.j0; t0 < t.j1; t0 += kTile) {
      if (t.cancel && t.cancel->load(std::memory_order_relaxed)) return;
      const int64_t t1 = t.j1 - t0 < kTile ? t.j1 : t0 + kTile;
      for (int64_t q = t.q0; q < t.q1; ++q) {
        const int8_t* qr = t.qcodes + q * t.qstride;
        for (int64_t j = t0; j < t1; ++j) {
          const int8_t* x = codes + j * dim;
          int32_t s = 0;
          for (int64_t p = 0; p < dim; ++p)
            s += static_cast<int32_t>(qr[p]) * static_cast<int32_t>(x[p]);
          q_offer_i8(t, q, j, s);
        }
      }
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Direct path: NQ queries x NI items (NQ * NI = 8 in the main loop) of dot products along d
// from the code rows, reduced together with hsum8. Each item is decoded in registers once per
// step and read once per query group; eight independent accumulators keep both FMA ports busy
// (with two, a 128-dim float16 row took ~100 cycles of FMA latency).
template <class C>
struct QDirect {
  template <int NQ, int NI>
  static inline void block(const QuantTask& t, int64_t q, int64_t j) {
    constexpr int NA = NQ * NI;
    typename V::R acc[8];
    for (int a = 0; a < 8; ++a) acc[a] = V::zero();
    const int64_t dim = t.dim;
    const C* codes = static_cast<const C*>(t.items->codes);
    const float* qr[NQ];
    const C* xr[NI];
    for (int a = 0; a < NQ; ++a) qr[a] = t.queries + (q + a) * dim;
    for (int b = 0; b < NI; ++b) xr[b] = codes + (j + b) * dim;
    const int64_t pend = dim / V::W * V::W;
    // The block's rows are contiguous; ask for those a few blocks ahead (as the int8 integer
    // scan does): without it an AMD Zen 5 class CPU read one query's float16 rows at 10-15 ms
    // for 1M items of d = 128, with it at 5.6-6.6 ms (its read floor: 5.6 ms).
    const int64_t bytes = NI * dim * static_cast<int64_t>(sizeof(C));
    const int64_t ahead = bytes < 1024 ? 4096 : 4 * bytes;
    const char* pf = reinterpret_cast<const char*>(xr[0]) + ahead;
    for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(pf + o, 0, 3);
    if constexpr (NQ == 1) {
      // One query: row by row, each item row read front to back before the next, so the
      // block's bytes arrive as one sequential stream (the rows' accumulation chains are
      // independent, so out-of-order execution still overlaps them). The side-by-side order
      // below ran at half the read rate here on an AMD Zen 4 class CPU (float16, d = 128, 1M
      // items: 28-42 -> 13-15 ms on one thread). Unrolled in full so that acc stays in
      // registers.
#pragma GCC unroll 8
      for (int b = 0; b < NI; ++b)
        for (int64_t p = 0; p < pend; p += V::W)
          acc[b] = V::fma(V::loadu(qr[0] + p), q_decodew(xr[b] + p), acc[b]);
    } else {
      // Several queries: the NI rows side by side, each decoded once per step for the NQ
      // queries (for these blocks the row-by-row order above was slower: B = 4, 18-22 -> 25-27
      // ms).
      for (int64_t p = 0; p < pend; p += V::W) {
        typename V::R qv[NQ];
        for (int a = 0; a < NQ; ++a) qv[a] = V::loadu(qr[a] + p);
        for (int b = 0; b < NI; ++b) {
          const typename V::R x = q_decodew(xr[b] + p);
          for (int a = 0; a < NQ; ++a) acc[a * NI + b] = V::fma(qv[a], x, acc[a * NI + b]);
        }
      }
    }
    const int64_t p = pend;
    alignas(64) float sums[8];
    if (NA == 8) {
      V::hsum8(acc, sums);
    } else {
      for (int a = 0; a < NA; ++a) sums[a] = V::hsum(acc[a]);
    }
    for (int b = 0; b < NI; ++b) {
      const float rad = q_radius_item(t, j + b), sc = t.items->scale[j + b];
      for (int a = 0; a < NQ; ++a) {
        float s = sums[a * NI + b];
        for (int64_t pp = p; pp < dim; ++pp) s += qr[a][pp] * q_decode1(xr[b][pp]);
        const float T = s * sc;
        const float r = t.qnorm[q + a] * rad + kQuantAbsSlack;
        if (T + r >= t.tau[q + a - t.q0]) q_offer(t, q + a, j + b, T, r);
      }
    }
  }

  template <int NQ>
  static void run_group(const QuantTask& t, int64_t q, int64_t j0, int64_t j1) {
    constexpr int NI = 8 / NQ;
    int64_t j = j0;
    for (; j + NI <= j1; j += NI) block<NQ, NI>(t, q, j);
    for (; j < j1; ++j) block<NQ, 1>(t, q, j);
  }

  static void scan(const QuantTask& t) {
    if (t.q1 <= t.q0 || t.j1 <= t.j0) return;
    constexpr int64_t kTile = 4096;  // items between cancellation checks
    for (int64_t t0 = t.j0; t0 < t.j1; t0 += kTile) {
      if (t.cancel && t.cancel->load(std::memory_order_relaxed)) return;
      const int64_t t1 = t.j1 - t0 < kTile ? t.j1 : t0 + kTile;
      int64_t q = t.q0;
      for (; q + 4 <= t.q1; q += 4) run_group<4>(t, q, t0, t1);
      for (; q + 2 <= t.q1; q += 2) run_group<2>(t, q, t0, t1);
      for (; q < t.q1; ++q) run_group<1>(t, q, t0, t1);
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Packed path: queries transposed into panels of G = QV * W lanes (qp[p * G + lane]); an item
// tile is decoded to float rows once and shared by every query group of the task. The
// micro-kernel broadcasts one item value against QV query vectors.
template <class C, int QV, int NI>
struct QPacked {
  static constexpr int G = QV * V::W;

  static int64_t tile_items(int64_t dim) {
    int64_t n = (96 * 1024 / 4) / (dim > 0 ? dim : 1);
    n = n / NI * NI;
    if (n < NI) n = NI;
    if (n > 256 * NI) n = 256 * NI;
    return n;
  }

  static int64_t scratch_floats(int64_t dim, int64_t qblock) {
    const int64_t nt = tile_items(dim);
    return qblock * dim + qblock + nt * dim + 2 * nt + 4 * G + 64;
  }

  template <int NIB>
  static inline void micro(const QuantTask& t, const float* qg, const float* qn, const float* xf,
                           const float* rad, const float* sc, int64_t qbase, int64_t pos) {
    const int64_t dim = t.dim;
    // Every loop over the registers is unrolled in full, so the accumulators stay in registers.
    typename V::R acc[NIB][QV];
#pragma GCC unroll 32
    for (int i = 0; i < NIB; ++i)
#pragma GCC unroll 8
      for (int v = 0; v < QV; ++v) acc[i][v] = V::zero();
    for (int64_t p = 0; p < dim; ++p) {
      typename V::R qv[QV];
#pragma GCC unroll 8
      for (int v = 0; v < QV; ++v) qv[v] = V::load(qg + p * G + v * V::W);
#pragma GCC unroll 32
      for (int i = 0; i < NIB; ++i) {
        typename V::R xb = V::set1(xf[i * dim + p]);
#pragma GCC unroll 8
        for (int v = 0; v < QV; ++v) acc[i][v] = V::fma(xb, qv[v], acc[i][v]);
      }
    }
    float* taug = t.tau + (qbase - t.q0);
    const typename V::R abs_slack = V::set1(kQuantAbsSlack);
    for (int i = 0; i < NIB; ++i) {
      const typename V::R s = V::set1(sc[i]), rd = V::set1(rad[i]);
      for (int v = 0; v < QV; ++v) {
        typename V::R T = V::mul(acc[i][v], s);
        typename V::R r = V::fma(V::load(qn + v * V::W), rd, abs_slack);
        unsigned mask = V::ge_mask(V::add(T, r), V::loadu(taug + v * V::W));
        if (!mask) continue;
        alignas(64) float tt[V::W], rr[V::W];
        V::store(tt, T);
        V::store(rr, r);
        while (mask) {
          const int lane = __builtin_ctz(mask);
          mask &= mask - 1;
          const int64_t q = qbase + v * V::W + lane;
          if (q < t.q1) q_offer(t, q, pos + i, tt[lane], rr[lane]);
        }
      }
    }
  }

  static void scan(const QuantTask& t) {
    const int64_t dim = t.dim, nq = t.q1 - t.q0;
    if (nq <= 0 || t.j1 <= t.j0) return;
    const int64_t nt = tile_items(dim);
    const int64_t groups = (nq + G - 1) / G;
    float* qp = t.scratch;              // groups * dim * G
    float* qn = qp + groups * dim * G;  // groups * G
    float* xf = qn + groups * G;        // nt * dim
    float* rad = xf + nt * dim;         // nt
    float* sc = rad + nt;               // nt
    for (int64_t g = 0; g < groups; ++g)
      for (int l = 0; l < G; ++l) {
        const int64_t q = t.q0 + g * G + l;
        float* dst = qp + g * dim * G + l;
        if (q < t.q1) {
          const float* src = t.queries + q * dim;
          for (int64_t p = 0; p < dim; ++p) dst[p * G] = src[p];
          qn[g * G + l] = t.qnorm[q];
        } else {
          for (int64_t p = 0; p < dim; ++p) dst[p * G] = 0.0f;
          qn[g * G + l] = 0.0f;
        }
      }
    const C* codes = static_cast<const C*>(t.items->codes);
    for (int64_t t0 = t.j0; t0 < t.j1; t0 += nt) {
      if (t.cancel && t.cancel->load(std::memory_order_relaxed)) return;
      const int64_t n = t.j1 - t0 < nt ? t.j1 - t0 : nt;
      for (int64_t i = 0; i < n; ++i) {
        const C* row = codes + (t0 + i) * dim;
        float* out = xf + i * dim;
        int64_t p = 0;
        for (; p + V::W <= dim; p += V::W) V::storeu(out + p, q_decodew(row + p));
        for (; p < dim; ++p) out[p] = q_decode1(row[p]);
        rad[i] = q_radius_item(t, t0 + i);
        sc[i] = t.items->scale[t0 + i];
      }
      for (int64_t g = 0; g < groups; ++g) {
        const float* qg = qp + g * dim * G;
        const float* qng = qn + g * G;
        const int64_t qbase = t.q0 + g * G;
        int64_t i = 0;
        for (; i + NI <= n; i += NI)
          micro<NI>(t, qg, qng, xf + i * dim, rad + i, sc + i, qbase, t0 + i);
        for (; i < n; ++i) micro<1>(t, qg, qng, xf + i * dim, rad + i, sc + i, qbase, t0 + i);
      }
    }
  }
};

// The kernel set's entries. I8D / I8P: the integer int8 scans of this file (direct and packed);
// a file without them passes QDirect<int8_t> / QPacked<int8_t, QV, NI>, which ignore qcodes.
// A float16 packed task of at most G queries of the narrow kernel (one query vector, twice the
// items per micro-kernel call) takes it: the set's QV query vectors would be half padding there,
// and the FMAs are what bound this path.
template <int NI>
using QPackedF16Narrow = QPacked<uint16_t, 1, 2 * NI>;

// S: kernels for tasks of a few queries, tried first on either path: S::scan(t, direct) scans
// the task and returns true when it takes it (QNoSmall: none; QSmallEither: the first of two
// that takes it).
struct QNoSmall {
  static int64_t scratch_floats(int64_t) { return 0; }
  static bool scan(const QuantTask&, bool) { return false; }
};

// A task on the broadcast kernel K<R> of the most lanes per query R in {4, 2, 1} whose K<R>::kSlots
// queries hold it (the horizontal sums are over R lanes, a row costs dim / R vector products).
template <template <int> class K>
static inline void q_scan_by_slots(const QuantTask& t) {
  const int64_t nq = t.q1 - t.q0;
  if (nq <= K<4>::kSlots)
    K<4>::scan(t);
  else if (nq <= K<2>::kSlots)
    K<2>::scan(t);
  else
    K<1>::scan(t);
}

template <class A, class B>
struct QSmallEither {
  static int64_t scratch_floats(int64_t dim) {
    const int64_t a = A::scratch_floats(dim), b = B::scratch_floats(dim);
    return a > b ? a : b;
  }
  static bool scan(const QuantTask& t, bool direct) {
    return A::scan(t, direct) || B::scan(t, direct);
  }
};

template <class I8P, int QV, int NI, int QB, class S = QNoSmall>
static int64_t q_scratch_floats(int64_t dim) {
  const int64_t s[] = {QPacked<uint16_t, QV, NI>::scratch_floats(dim, QB),
                       QPackedF16Narrow<NI>::scratch_floats(dim, QB), I8P::scratch_floats(dim, QB),
                       S::scratch_floats(dim)};
  int64_t m = 0;
  for (const int64_t v : s) m = v > m ? v : m;
  return m;
}

template <class I8D, int QV, int NI, class S = QNoSmall>
static void q_scan_direct(const QuantTask& t) {
  if (S::scan(t, true)) return;
  if (t.items->type == QuantType::Int8) {
    if (t.qcodes)
      I8D::scan(t);
    else
      QDirect<int8_t>::scan(t);
  } else {
    QDirect<uint16_t>::scan(t);
  }
}

template <class I8P, int QV, int NI, class S = QNoSmall>
static void q_scan_packed(const QuantTask& t) {
  if (S::scan(t, false)) return;
  const int64_t nq = t.q1 - t.q0;
  if (t.items->type == QuantType::Int8) {
    if (t.qcodes)
      I8P::scan(t);
    else
      QPacked<int8_t, QV, NI>::scan(t);
  } else if (nq <= QPackedF16Narrow<NI>::G) {
    QPackedF16Narrow<NI>::scan(t);
  } else {
    QPacked<uint16_t, QV, NI>::scan(t);
  }
}
