// The packed-path driver of the integer int8 scans, shared by quant_i8_avx2.h and quant_i8_vnni.h:
// scratch layout, query panels, the item tile of offset codes, and the loop over query groups and
// items. Included inside a kernel file's namespace after quant_scan_impl.h.
//
// K (the kernel, derived from QI8PackedDriver<K, G, NI>) supplies:
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
    const int64_t bytes = groups * panel_bytes(dim) + groups * G * 16 + nt * K::dim4(dim) * 4 +
                          nt * 12 + 6 * 64;
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
