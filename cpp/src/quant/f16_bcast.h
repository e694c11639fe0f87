// Broadcast kernels for float16 tasks of a few queries (up to V::W), on either path. Included
// inside a kernel file's namespace after quant/scan_impl.h, by the AVX2 and AVX-512 files (V
// provides bcast_lanes and sum_pairs / sum_quads on top of scan_impl.h's list).
//
// A block of NI item rows is decoded W codes at a time into a small buffer (L1), from which R
// consecutive values of an item are broadcast to every R-lane group of one vector whose lanes
// hold query slots (R lanes a slot, one lane per dim of the step) from a panel [steps][W lanes].
// So a row costs dim / R FMAs, one broadcast load each, and the horizontal sums are over R lanes
// only: fewer queries take a larger R (4 for up to W / 4 queries, 2 for up to W / 2, else 1).
// The direct path instead reduced a full vector per (query, item) pair, and the packed one
// decoded a tile for query vectors that were mostly padding here. Each score is a float32 dot
// product in some order, as on the other paths (the float radius covers any order).

template <int R>
struct QF16Bcast {
  static_assert(R == 1 || R == 2 || R == 4, "R lanes a slot");
  static constexpr int W = V::W;
  static constexpr int kSlots = W / R;  // queries
  // Items per block: NI accumulators + a query vector + a broadcast + the epilogue's constants.
  static constexpr int NI = W == 16 ? 16 : 8;
  static constexpr int64_t kPrefetchBlocks = 4;  // as the float32 broadcast path

  static int64_t steps(int64_t dim) { return (dim + R - 1) / R; }
  // The panel, the decoded block, the expanded thresholds and |q'| per lane.
  static int64_t scratch_floats(int64_t dim) { return steps(dim) * W + NI * W + 2 * W + 64; }

  static inline typename V::R slot_sum(typename V::R a) {
    if constexpr (R == 1)
      return a;
    else if constexpr (R == 2)
      return V::sum_pairs(a);
    else
      return V::sum_quads(a);
  }

  struct Scratch {
    const float* panel;
    float* buf;  // NI * W decoded codes
    float* tl;   // lane l: tau of slot l / R
    float* qn;   // lane l: |q'| of slot l / R (0: padding)
  };

  // Items [j, j + NB) (rows xr); prefetch: the rows a few blocks ahead (to L2) and the next
  // block's (to L1), a line per row as this block's lines are used (the rows are read side by
  // side, which the hardware prefetchers do not follow).
  template <int NB>
  static inline void block(const QuantTask& t, const Scratch& S, const uint16_t* const* xr,
                           int64_t j, bool prefetch) {
    const int64_t dim = t.dim, ns = steps(dim);
    const int64_t far = kPrefetchBlocks * NB * dim, near = NB * dim;
    typename V::R acc[NB];
#pragma GCC unroll 16
    for (int i = 0; i < NB; ++i) acc[i] = V::zero();
    for (int64_t p0 = 0; p0 < dim; p0 += W) {
      if (prefetch && (p0 * 2) % 64 == 0) {
#pragma GCC unroll 16
        for (int i = 0; i < NB; ++i) {
          __builtin_prefetch(xr[i] + far + p0, 0, 2);
          __builtin_prefetch(xr[i] + near + p0, 0, 3);
        }
      }
      if (p0 + W <= dim) {
#pragma GCC unroll 16
        for (int i = 0; i < NB; ++i) V::store(S.buf + i * W, V::cvt_f16(xr[i] + p0));
      } else {  // the row's last codes, zeros after (they meet zero query lanes)
        for (int i = 0; i < NB; ++i)
          for (int p = 0; p < W; ++p)
            S.buf[i * W + p] = p0 + p < dim ? half_to_float(xr[i][p0 + p]) : 0.0f;
      }
      const int64_t s0 = p0 / R, s1 = s0 + W / R < ns ? s0 + W / R : ns;
      for (int64_t s = s0; s < s1; ++s) {
        const typename V::R qv = V::load(S.panel + s * W);
        const float* b = S.buf + (s - s0) * R;
#pragma GCC unroll 16
        for (int i = 0; i < NB; ++i) acc[i] = V::fma(qv, V::bcast_lanes<R>(b + i * W), acc[i]);
      }
    }
    // One lane per slot is looked at (after slot_sum its R lanes are equal).
    constexpr unsigned kLook = R == 1 ? ~0u : R == 2 ? 0x55555555u : 0x11111111u;
    const typename V::R qn = V::load(S.qn), abs_slack = V::set1(kQuantAbsSlack);
    for (int i = 0; i < NB; ++i) {
      const typename V::R T = V::mul(slot_sum(acc[i]), V::set1(t.items->scale[j + i]));
      const typename V::R r = V::fma(qn, V::set1(q_radius_item(t, j + i)), abs_slack);
      unsigned mask = kLook & V::ge_mask(V::add(T, r), V::load(S.tl));
      if (!mask) continue;
      alignas(64) float tt[W], rr[W];
      V::store(tt, T);
      V::store(rr, r);
      while (mask) {
        const int lane = __builtin_ctz(mask);
        mask &= mask - 1;
        const int slot = lane / R;
        if (t.q0 + slot >= t.q1) continue;
        q_offer(t, t.q0 + slot, j + i, tt[lane], rr[lane]);
        for (int l = 0; l < R; ++l) S.tl[slot * R + l] = t.tau[slot];
      }
    }
  }

  static void scan(const QuantTask& t) {
    const int64_t nq = t.q1 - t.q0, dim = t.dim;
    if (nq <= 0 || t.j1 <= t.j0) return;
    const int64_t ns = steps(dim);
    float* panel = t.scratch;  // 64-byte aligned, as each part after it
    Scratch S{panel, panel + ns * W, panel + ns * W + NI * W, panel + ns * W + NI * W + W};
    // Lane l: slot l / R, dim s R + l % R of step s (zero past dim and for padding slots).
    for (int64_t s = 0; s < ns; ++s)
      for (int l = 0; l < W; ++l) {
        const int64_t slot = l / R, p = s * R + l % R;
        panel[s * W + l] = slot < nq && p < dim ? t.queries[(t.q0 + slot) * dim + p] : 0.0f;
      }
    for (int l = 0; l < W; ++l) {
      // tau is padded with +inf past the last query (the driver): padding slots never pass.
      S.tl[l] = t.tau[l / R];
      S.qn[l] = l / R < nq ? t.qnorm[t.q0 + l / R] : 0.0f;
    }
    const uint16_t* codes = static_cast<const uint16_t*>(t.items->codes);
    int64_t j = t.j0;
    for (; j + NI <= t.j1; j += NI) {
      if ((j & 4095) < NI && t.cancel && t.cancel->load(std::memory_order_relaxed)) return;
      const uint16_t* xr[NI];
      for (int i = 0; i < NI; ++i) xr[i] = codes + (j + i) * dim;
      block<NI>(t, S, xr, j, j + (kPrefetchBlocks + 1) * NI <= t.j1);
    }
    for (; j < t.j1; ++j) {
      const uint16_t* xr[1] = {codes + j * dim};
      block<1>(t, S, xr, j, false);
    }
  }
};

// The float16 broadcast kernels by batch (the small-batch interface of scan_impl.h): tasks of 3
// to W queries on the direct path, 1 to W on the packed one. ItemIndex, N = 1M, d = 128, 2
// threads, an AMD Zen 5 class CPU on a busy host, median ms alternated with the kernels they
// replace: AVX-512 B = 3 17.9-18.3 -> 12.2-13.1, B = 8 33.8-36.7 -> 19.4-20.4, B = 16 32.3-38.6 ->
// 16.4-25.6; AVX2 B = 4 17.1 -> 13.4, B = 8 36.0 -> 19.3. Two queries keep the direct path
// (11.6-12.1 vs 12.3-16.0 ms).
struct QF16BcastSet {
  static int64_t scratch_floats(int64_t dim) { return QF16Bcast<1>::scratch_floats(dim); }
  static bool scan(const QuantTask& t, bool direct) {
    const int64_t nq = t.q1 - t.q0;
    if (t.items->type != QuantType::Float16 || nq < (direct ? 3 : 1) || nq > V::W) return false;
    q_scan_by_slots<QF16Bcast>(t);
    return true;
  }
};
