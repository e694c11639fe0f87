// The scan kernels, written once over a vector type V and included by each kernel_<isa>.cpp
// inside its own namespace (so every function here is compiled with that file's flags).
//
// V (vec_<isa>.h) provides: W (lanes), R (register type), zero, set1, load (aligned), loadu,
// store, storeu, add, fma, mul, ge_mask (bit per lane of a >= b, false for NaN), hsum, and
// transpose_pack(rows, stride, dim, n_valid, out, out_stride), which writes W rows as W-float
// columns of a panel (see pack_panel).
//
// Requires <cstdint>, <cstring>, <cmath>, <atomic>, "recfast/heap.h" and "vec/scalar_helpers.h"
// to be included first.

constexpr float kInf = __builtin_inff();

// Offer a candidate to query q's heap (only called for scores >= the heap's current root).
static inline void offer(const ScanTask& t, int64_t q, float s, int64_t id) {
  float* hs = t.heap_scores + (q - t.q0) * t.heap_k;
  int64_t* hi = t.heap_ids + (q - t.q0) * t.heap_k;
  if (!better(s, id, hs[0], hi[0])) return;
  if (is_excluded(t.exclude, q, id)) return;
  heap_replace_top(hs, hi, t.heap_k, s, id);
}

static inline float root_score(const ScanTask& t, int64_t q) {
  return t.heap_scores[(q - t.q0) * t.heap_k];
}

// Offer the lanes of `mask` from the score vector s (item ids base, base + 1, ...).
static inline void offer_lanes(const ScanTask& t, int64_t q, typename V::R s, unsigned mask,
                               int64_t base) {
  alignas(64) float tmp[V::W];
  V::store(tmp, s);
  while (mask) {
    int lane = __builtin_ctz(mask);
    mask &= mask - 1;
    offer(t, q, tmp[lane], base + lane);
  }
}

static inline bool row_finite(const float* x, int64_t dim) {
  for (int64_t p = 0; p < dim; ++p)
    if (!std::isfinite(x[p])) return false;
  return true;
}

// Cosine is defined on normalized rows, x * inv_norm(x): a row whose inverse norm is 0 (a zero
// row, or one whose squared norm overflows) normalizes to 0 when finite and to NaN otherwise.
// The kernels compute (q * inv_q) . x * inv_x, which would turn an overflowing dot product
// into inf * 0 = NaN; rows with inv_x == 0 are therefore scored as this definition says.

static inline float row_sumsq(const float* x, int64_t dim) {
  typename V::R acc = V::zero();
  int64_t p = 0;
  for (; p + V::W <= dim; p += V::W) {
    typename V::R v = V::loadu(x + p);
    acc = V::fma(v, v, acc);
  }
  float s = V::hsum(acc);
  for (; p < dim; ++p) s += x[p] * x[p];
  return s;
}

// 1/|x| of an item row (scalar_helpers.h: the double fallback for extreme magnitudes).
static inline float row_inv_norm(const float* x, int64_t dim) {
  return inv_norm_checked(row_sumsq(x, dim), x, dim);
}

// ---------------------------------------------------------------------------------------------
// Packed path. Queries are packed in groups of MR as qp[p * MR + r]; an item tile is packed in
// panels of NR = NV * W items as xp[p * NR + c]. The micro-kernel holds an MR x NR block of
// scores in registers and compares it against each query's running threshold right there.

template <int MR, int NV>
struct Packed {
  static constexpr int NR = NV * V::W;

  static int64_t tile_items(int64_t dim) {
    // Keep a packed tile around 256 KiB so it stays in L2 while every query group reads it.
    int64_t n = (256 * 1024 / 4) / (dim > 0 ? dim : 1);
    n = n / NR * NR;
    if (n < NR) n = NR;
    if (n > 64 * NR) n = 64 * NR;
    return n;
  }

  static int64_t scratch_floats(int64_t dim, int64_t qblock) {
    int64_t nt = tile_items(dim);
    return dim * nt + nt + dim * qblock + 64;
  }

  static void pack_queries(const ScanTask& t, float* qp) {
    int64_t nq = t.q1 - t.q0;
    int64_t groups = (nq + MR - 1) / MR;
    for (int64_t g = 0; g < groups; ++g) {
      float* dst = qp + g * t.dim * MR;
      for (int r = 0; r < MR; ++r) {
        int64_t q = t.q0 + g * MR + r;
        if (q >= t.q1) {
          for (int64_t p = 0; p < t.dim; ++p) dst[p * MR + r] = 0.0f;
          continue;
        }
        const float* src = t.queries + q * t.query_stride;
        float scale = t.inv_qnorm ? t.inv_qnorm[q] : 1.0f;
        for (int64_t p = 0; p < t.dim; ++p) dst[p * MR + r] = src[p] * scale;
      }
    }
  }

  // Pack items [j, j + n) (n <= NR) into one panel; write inverse norms when invn != nullptr.
  static void pack_panel(const float* x, int64_t stride, int64_t n, int64_t dim, float* xp,
                         float* invn) {
    for (int c0 = 0; c0 < NR; c0 += V::W) {
      int64_t valid = n - c0;
      if (valid <= 0) {
        for (int64_t p = 0; p < dim; ++p)
          for (int c = 0; c < V::W; ++c) xp[p * NR + c0 + c] = 0.0f;
        continue;
      }
      V::transpose_pack(x + c0 * stride, stride, dim, valid < V::W ? valid : V::W, xp + c0, NR);
    }
    if (invn) {
      for (int c = 0; c < NR; ++c) {
        invn[c] = c < n ? row_inv_norm(x + c * stride, dim) : 0.0f;
        // A finite row that normalizes to 0 scores 0: zero its packed column (see above).
        if (invn[c] == 0.0f && c < n && row_finite(x + c * stride, dim))
          for (int64_t p = 0; p < dim; ++p) xp[p * NR + c] = 0.0f;
      }
    }
  }

  template <int ROWS>
  static inline void kernel(const ScanTask& t, const float* qp, const float* xp, const float* invn,
                            int64_t qbase, int64_t idbase, int ncols) {
    typename V::R acc[ROWS][NV];
    for (int r = 0; r < ROWS; ++r)
      for (int v = 0; v < NV; ++v) acc[r][v] = V::zero();
    const int64_t dim = t.dim;
#pragma GCC unroll 4
    for (int64_t p = 0; p < dim; ++p) {
      typename V::R x[NV];
      for (int v = 0; v < NV; ++v) x[v] = V::load(xp + p * NR + v * V::W);
      for (int r = 0; r < ROWS; ++r) {
        typename V::R qv = V::set1(qp[p * MR + r]);
        for (int v = 0; v < NV; ++v) acc[r][v] = V::fma(qv, x[v], acc[r][v]);
      }
    }
    if (t.out) {  // write mode: out = (out or bias) + scores
      const float* bias = t.out_bias ? t.out_bias + idbase : nullptr;
      for (int r = 0; r < ROWS; ++r) {
        float* o = t.out + (qbase + r) * t.out_stride + idbase;
        const float* base = bias ? bias : o;
        for (int v = 0; v < NV; ++v) {
          const int valid = ncols - v * V::W;
          if (valid <= 0) break;
          typename V::R s = invn ? V::mul(acc[r][v], V::load(invn + v * V::W)) : acc[r][v];
          if (valid >= V::W) {
            V::storeu(o + v * V::W, V::add(V::loadu(base + v * V::W), s));
          } else {
            alignas(64) float lanes[V::W];
            V::store(lanes, s);
            for (int c = 0; c < valid; ++c) o[v * V::W + c] = base[v * V::W + c] + lanes[c];
          }
        }
      }
      return;
    }
    for (int r = 0; r < ROWS; ++r) {
      const int64_t q = qbase + r;
      typename V::R thr = V::set1(root_score(t, q));
      for (int v = 0; v < NV; ++v) {
        int valid = ncols - v * V::W;
        if (valid <= 0) break;
        typename V::R s = invn ? V::mul(acc[r][v], V::load(invn + v * V::W)) : acc[r][v];
        unsigned mask = V::ge_mask(s, thr);
        if (valid < V::W) mask &= (1u << valid) - 1u;
        if (mask) {
          offer_lanes(t, q, s, mask, idbase + v * V::W);
          thr = V::set1(root_score(t, q));
        }
      }
    }
  }

  template <int ROWS>
  static void kernel_rows_dispatch(int rows, const ScanTask& t, const float* qp, const float* xp,
                                   const float* invn, int64_t qbase, int64_t idbase, int ncols) {
    if constexpr (ROWS >= 1) {
      if (rows == ROWS)
        kernel<ROWS>(t, qp, xp, invn, qbase, idbase, ncols);
      else
        kernel_rows_dispatch<ROWS - 1>(rows, t, qp, xp, invn, qbase, idbase, ncols);
    }
  }

  // Prefetches the lines of the item rows [j0, j0 + nt) of a task (those it has) into L2,
  // spread evenly over `calls` calls of fetch_some.
  struct NextTile {
    const char* base = nullptr;  // set only when the task has such rows: no address past them
    int64_t row_bytes, line_bytes, rows, row = 0, off = 0, per_call;
    NextTile(const ScanTask& t, int64_t j0, int64_t nt, int64_t calls)
        : row_bytes(t.item_stride * 4),
          line_bytes(t.dim * 4),
          rows(j0 < t.j1 ? (t.j1 - j0 < nt ? t.j1 - j0 : nt) : 0) {
      if (rows > 0) base = reinterpret_cast<const char*>(t.items + j0 * t.item_stride);
      const int64_t lines = rows * ((line_bytes + 63) / 64);
      per_call = calls > 0 ? (lines + calls - 1) / calls : lines;
    }
    void fetch_some() {
      for (int64_t i = 0; i < per_call && row < rows; ++i) {
        __builtin_prefetch(base + row * row_bytes + off, 0, 2);
        off += 64;
        if (off >= line_bytes) off = 0, ++row;
      }
    }
  };

  static void scan(const ScanTask& t) {
    const int64_t dim = t.dim, nq = t.q1 - t.q0;
    if (nq <= 0 || t.j1 <= t.j0) return;
    const int64_t nt = tile_items(dim);
    const bool cosine = t.inv_qnorm != nullptr;
    float* xp = t.scratch;        // dim x nt
    float* invn = xp + dim * nt;  // nt
    float* qp = invn + nt;        // dim x (groups * MR)
    pack_queries(t, qp);
    const int64_t groups = (nq + MR - 1) / MR;
    for (int64_t t0 = t.j0; t0 < t.j1; t0 += nt) {
      if (t.cancel && t.cancel->load(std::memory_order_relaxed)) return;
      const int64_t n = (t.j1 - t0 < nt) ? t.j1 - t0 : nt;
      const int64_t panels = (n + NR - 1) / NR;
      for (int64_t pnl = 0; pnl < panels; ++pnl) {
        int64_t j = t0 + pnl * NR;
        int64_t cnt = n - pnl * NR < NR ? n - pnl * NR : NR;
        pack_panel(t.items + j * t.item_stride, t.item_stride, cnt, dim, xp + pnl * dim * NR,
                   cosine ? invn + pnl * NR : nullptr);
      }
      // The next tile's rows are fetched into L2 while this one is scored, a few lines before
      // each micro-kernel call, so that reading the items overlaps the FMAs instead of
      // preceding them (packing reads them once per tile, with nothing to compute meanwhile).
      NextTile next(t, t0 + nt, nt, groups * panels);
      for (int64_t g = 0; g < groups; ++g) {
        const float* qg = qp + g * dim * MR;
        int rows = static_cast<int>(nq - g * MR < MR ? nq - g * MR : MR);
        for (int64_t pnl = 0; pnl < panels; ++pnl) {
          next.fetch_some();
          int ncols = static_cast<int>(n - pnl * NR < NR ? n - pnl * NR : NR);
          kernel_rows_dispatch<MR>(rows, t, qg, xp + pnl * dim * NR,
                                   cosine ? invn + pnl * NR : nullptr, t.q0 + g * MR, t0 + pnl * NR,
                                   ncols);
        }
      }
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Direct path for one query (kTopkDirectMaxQueries): each item row is read once, straight from
// memory (prefetched ahead), and its dot product with the query is taken along d with four
// accumulators, so that the FMA chain is a quarter of d long (one chain made d = 813 run at
// 10.7 GB/s per thread, half the read rate). Its scores are its own: the broadcast and packed
// paths sum each product in order along d.

struct Direct {
  static_assert(kTopkDirectMaxQueries == 1, "the direct path scores one query");
  // How far ahead rows are prefetched: the scan streams the items from memory once.
  static constexpr int64_t kPrefetchRows = 8, kPrefetchBytes = 4096;

  // q . x: four accumulators over steps of 4 W floats, then one over steps of W, summed as
  // (a0 + a1) + (a2 + a3) across lanes, then the tail in order. Each 64-byte line of x is
  // prefetched at `ahead` floats further on as it is read (a steady stream of requests: a
  // burst of a long row's every line at once was largely dropped).
  static inline float dot(const float* q, const float* x, int64_t dim, int64_t ahead) {
    typename V::R a0 = V::zero(), a1 = V::zero(), a2 = V::zero(), a3 = V::zero();
    constexpr int kLine = 16;  // floats per cache line
    int64_t p = 0;
    for (; p + 4 * V::W <= dim; p += 4 * V::W) {
      for (int l = 0; l < 4 * V::W; l += kLine) __builtin_prefetch(x + ahead + p + l, 0, 3);
      a0 = V::fma(V::loadu(q + p), V::loadu(x + p), a0);
      a1 = V::fma(V::loadu(q + p + V::W), V::loadu(x + p + V::W), a1);
      a2 = V::fma(V::loadu(q + p + 2 * V::W), V::loadu(x + p + 2 * V::W), a2);
      a3 = V::fma(V::loadu(q + p + 3 * V::W), V::loadu(x + p + 3 * V::W), a3);
    }
    for (; p + V::W <= dim; p += V::W) {
      __builtin_prefetch(x + ahead + p, 0, 3);
      a0 = V::fma(V::loadu(q + p), V::loadu(x + p), a0);
    }
    if (dim > 0) __builtin_prefetch(x + ahead + dim - 1, 0, 3);  // the row's last line
    float s = V::hsum(V::add(V::add(a0, a1), V::add(a2, a3)));
    for (; p < dim; ++p) s += q[p] * x[p];
    return s;
  }

  static void scan(const ScanTask& t) {
    if (t.q1 <= t.q0 || t.j1 <= t.j0) return;
    const int64_t q = t.q0, dim = t.dim;
    float thr = root_score(t, q);  // the heap's root, kept at hand
    const bool cosine = t.inv_qnorm != nullptr;
    const float* qr = t.queries + q * t.query_stride;
    bool q_finite = true;
    if (cosine) {  // the normalized query, in scratch
      float* qn = t.scratch;
      for (int64_t p = 0; p < dim; ++p) qn[p] = qr[p] * t.inv_qnorm[q];
      q_finite = row_finite(qr, dim);
      qr = qn;
    }
    // The row about kPrefetchBytes ahead is fetched as this one is read (at most kPrefetchRows
    // rows, at least the next); the last rows of the task fetch nothing further (no address
    // past its rows is formed). Timed alike: 1 to 5 rows ahead at d = 813, 4 to 32 at d = 128
    // (64 was slower).
    int64_t rows_ahead = kPrefetchBytes / (4 * (t.item_stride > 0 ? t.item_stride : 1));
    rows_ahead = rows_ahead < 1 ? 1 : rows_ahead > kPrefetchRows ? kPrefetchRows : rows_ahead;
    const int64_t ahead = rows_ahead * t.item_stride;
    for (int64_t j = t.j0; j < t.j1; ++j) {
      if ((j & 4095) == 0 && t.cancel && t.cancel->load(std::memory_order_relaxed)) return;
      const float* xr = t.items + j * t.item_stride;
      float s;
      if (cosine) {
        const float inv_xnorm = row_inv_norm(xr, dim);
        if (inv_xnorm == 0.0f) {  // normalizes to 0 (or NaN): see row_finite
          if (!q_finite || !row_finite(xr, dim)) continue;
          s = 0.0f;
        } else {
          s = dot(qr, xr, dim, j + rows_ahead < t.j1 ? ahead : 0) * inv_xnorm;
        }
      } else {
        s = dot(qr, xr, dim, j + rows_ahead < t.j1 ? ahead : 0);
      }
      if (s >= thr) {
        offer(t, q, s, j);
        thr = root_score(t, q);
      }
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Broadcast path for up to kTopkBroadcastMaxQueries queries: the queries are packed transposed
// in groups of QW = NQV * W lanes (qt[(g * dim + p) * QW + b], zero-padded), item rows are read
// straight from memory (prefetched ahead, no packing) and each item value is broadcast against
// a group's queries. An NI x QW block of scores lands in registers as vectors over queries and
// is compared with the vector of the queries' thresholds. A block of NI items is read from
// memory by the first group and from L1 by the others, so the items stream from memory once
// whatever the batch. Each score is the same sequence of float operations as on the packed path
// (q * inv_q, FMAs in p order, times inv_x from row_sumsq), so a (query, item) pair scores bit
// for bit the same on either path, whatever the batch.

template <int NQV, int NI>
struct Broadcast {
  static constexpr int QW = NQV * V::W;
  // The block this many blocks ahead is fetched into L2, the next one into L1.
  static constexpr int64_t kPrefetchBlocks = 4;

  // Items [j, j + NR) against the group of queries whose lanes start at `lane0` (qt, thr: that
  // group's). The first group also offers the zero scores of rows that normalize to 0. With
  // `prefetch`, the rows kPrefetchBlocks blocks ahead (to L2) and the next block's (to L1) are
  // fetched a line per row every 16 steps along d, as fast as this block's lines are used: the
  // block's rows are read in parallel, 4 bytes a step each, which the hardware prefetchers do
  // not follow, and a burst of every line of a block at once was largely dropped (measured: half
  // the FMA rate either way).
  template <int NR>
  static inline void block(const ScanTask& t, const float* qt, float* thr, int lane0, int64_t j,
                           bool prefetch) {
    typename V::R acc[NR][NQV];
    const float* xr[NR];
#pragma GCC unroll 32
    for (int r = 0; r < NR; ++r) {
      xr[r] = t.items + (j + r) * t.item_stride;
#pragma GCC unroll 8
      for (int v = 0; v < NQV; ++v) acc[r][v] = V::zero();
    }
    const int64_t dim = t.dim;
    const int64_t far = kPrefetchBlocks * NR * t.item_stride, near = NR * t.item_stride;
    for (int64_t p0 = 0; p0 < dim; p0 += 16) {
      if (prefetch) {
#pragma GCC unroll 32
        for (int r = 0; r < NR; ++r) {
          __builtin_prefetch(xr[r] + far + p0, 0, 2);
          __builtin_prefetch(xr[r] + near + p0, 0, 3);
        }
      }
      const int64_t p1 = p0 + 16 < dim ? p0 + 16 : dim;
      // Every loop over the block's registers is unrolled in full, so the accumulators stay in
      // registers (GCC otherwise keeps them on the stack: a load and a store around each FMA).
      for (int64_t p = p0; p < p1; ++p) {
        typename V::R qv[NQV];
#pragma GCC unroll 8
        for (int v = 0; v < NQV; ++v) qv[v] = V::load(qt + p * QW + v * V::W);
#pragma GCC unroll 32
        for (int r = 0; r < NR; ++r) {
          typename V::R xb = V::set1(xr[r][p]);
#pragma GCC unroll 8
          for (int v = 0; v < NQV; ++v) acc[r][v] = V::fma(qv[v], xb, acc[r][v]);
        }
      }
    }
    const bool cosine = t.inv_qnorm != nullptr;
    for (int r = 0; r < NR; ++r) {
      float inv_x = 1.0f;
      if (cosine) {
        inv_x = row_inv_norm(xr[r], dim);
        if (inv_x == 0.0f) {  // normalizes to 0 (finite row) or NaN: see row_finite
          if (lane0 == 0 && row_finite(xr[r], dim)) zero_row(t, thr, j + r);
          continue;
        }
      }
      for (int v = 0; v < NQV; ++v) {
        typename V::R s = cosine ? V::mul(acc[r][v], V::set1(inv_x)) : acc[r][v];
        unsigned mask = V::ge_mask(s, V::load(thr + v * V::W));
        if (mask) offer_queries(t, thr, s, mask, lane0, v * V::W, j + r);
      }
    }
  }

  // Offer item `id` to the queries of `mask` (the group's lanes from `lane`), refreshing their
  // thresholds.
  static inline void offer_queries(const ScanTask& t, float* thr, typename V::R s, unsigned mask,
                                   int lane0, int lane, int64_t id) {
    alignas(64) float tmp[V::W];
    V::store(tmp, s);
    while (mask) {
      int b = __builtin_ctz(mask);
      mask &= mask - 1;
      const int64_t q = t.q0 + lane0 + lane + b;
      offer(t, q, tmp[b], id);
      thr[lane + b] = root_score(t, q);
    }
  }

  // A finite item row that normalizes to 0: it scores 0 against every finite query (thr: the
  // first group's thresholds, the groups' lying one after another).
  static inline void zero_row(const ScanTask& t, float* thr, int64_t id) {
    for (int64_t q = t.q0; q < t.q1; ++q)
      if (0.0f >= thr[q - t.q0] && row_finite(t.queries + q * t.query_stride, t.dim)) {
        offer(t, q, 0.0f, id);
        thr[q - t.q0] = root_score(t, q);
      }
  }

  static void scan(const ScanTask& t) {
    const int64_t nq = t.q1 - t.q0;
    if (nq <= 0 || t.j1 <= t.j0) return;
    const int groups = static_cast<int>((nq + QW - 1) / QW);
    // Scratch: the transposed query groups, then the thresholds (padding lanes +inf: never
    // offered).
    float* qt = t.scratch;
    float* thr = qt + groups * t.dim * QW;
    for (int b = 0; b < groups * QW; ++b) {
      const int64_t q = t.q0 + b;
      const float* src = q < t.q1 ? t.queries + q * t.query_stride : nullptr;
      const float scale = (src && t.inv_qnorm) ? t.inv_qnorm[q] : 1.0f;
      float* dst = qt + (b / QW) * t.dim * QW + b % QW;
      for (int64_t p = 0; p < t.dim; ++p) dst[p * QW] = src ? src[p] * scale : 0.0f;
      thr[b] = src ? root_score(t, q) : kInf;
    }
    int64_t j = t.j0;
    for (; j + NI <= t.j1; j += NI) {
      if ((j & 4095) < NI && t.cancel && t.cancel->load(std::memory_order_relaxed)) return;
      const bool prefetch = j + (kPrefetchBlocks + 1) * NI <= t.j1;  // only rows of this task
      for (int g = 0; g < groups; ++g)
        block<NI>(t, qt + g * t.dim * QW, thr + g * QW, g * QW, j, prefetch && g == 0);
    }
    for (; j < t.j1; ++j)
      for (int g = 0; g < groups; ++g)
        block<1>(t, qt + g * t.dim * QW, thr + g * QW, g * QW, j, false);
  }

  static int64_t scratch_floats(int64_t dim, int64_t queries) {
    const int64_t lanes = (queries + QW - 1) / QW * QW;
    return dim * lanes + lanes + 64;
  }
};

// The broadcast path of a set: one query vector per group (NI1 items per block) up to W queries,
// else two (NI2 items): as many lanes filled as the batch allows, the registers full.
template <int NI1, int NI2>
static void broadcast_by_batch(const ScanTask& t) {
  if (t.q1 - t.q0 <= V::W) return Broadcast<1, NI1>::scan(t);
  Broadcast<2, NI2>::scan(t);
}

// Scratch of a task of `queries` queries: the packed path's, or the broadcast path's at most
// (its lanes rounded up to groups of 4 vectors, the widest query group of any set).
template <int MR, int NV>
static int64_t scratch_floats_impl(int64_t dim, int64_t queries) {
  const int64_t packed = Packed<MR, NV>::scratch_floats(dim, (queries + MR - 1) / MR * MR);
  const int64_t broadcast = Broadcast<4, 1>::scratch_floats(dim, kTopkBroadcastMaxQueries);
  return packed > broadcast ? packed : broadcast;
}
