// The quantized-scan driver: prepares the queries and their norm bounds, splits the work into
// tasks (query blocks x item chunks) run on the pool, merges the per-chunk thresholds and
// survivors, and re-scores the survivors with topk_cpu on the gathered float32 rows.
//
// Why the re-scored scores equal the float32 search bit for bit: topk_cpu computes a score from
// the query row and the item row alone, by the direct path or by the broadcast/packed one (which
// agree bit for bit), at the active instruction set; which of the two follows the size of the
// user's batch (QuantSearchParams::batch_size, passed on as TopkParams::batch_size), however the
// batch is split. The re-scoring calls topk_cpu with the caller's original query rows (not the
// prepared ones), the same metric and level; the rows it reads are byte copies of the stored
// float32 rows. Ties are broken by the gathered row's local index, which follows the position
// order, as the full search does. tests/test_index.py checks the equality for every batch size
// from 1 to 40, with zero, tiny and huge queries mixed in (routed to the float32 path in Python).
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "quant/kernels.h"
#include "recfast/heap.h"
#include "recfast/quant.h"
#include "recfast/simd.h"
#include "recfast/topk.h"
#include "runtime/dispatch.h"
#include "runtime/task_grid.h"

namespace recfast {
namespace {

constexpr int64_t kDirectMaxQueries = 8;  // this scan: few queries read the code rows directly
constexpr int64_t kRerankBlock = 16;  // queries per re-scoring call (batches past the direct path)

void grow_state(QueryState* st) {
  auto* buf = static_cast<std::vector<Cand>*>(st->owner);
  buf->resize(std::max<size_t>(16, buf->size() * 2));
  st->cands = buf->data();
  st->cap = static_cast<int64_t>(buf->size());
}

// The smallest float >= v (v >= 0, finite).
float round_up(double v) {
  float f = static_cast<float>(v);
  if (static_cast<double>(f) < v) f = std::nextafter(f, std::numeric_limits<float>::infinity());
  return f;
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

float quant_rel_slack(int64_t dim) {
  return static_cast<float>((4.0 * static_cast<double>(dim) + 64.0) * std::ldexp(1.0, -24));
}

uint64_t row_hash(const float* x, int64_t dim) {
  uint64_t h = 0;
  for (int64_t i = 0; i < dim; ++i) {
    uint32_t w;
    std::memcpy(&w, x + i, 4);
    h += static_cast<uint64_t>(w) * (splitmix64(static_cast<uint64_t>(i)) | 1ull);
  }
  return h;
}

void quant_search(const float* queries, int64_t n_queries, int64_t query_stride,
                  const QuantItems& items, const QuantSearchParams& params, float* out_scores,
                  int64_t* out_ids, QuantSearchStats* stats) {
  const int64_t k = params.k, n = items.n, dim = items.dim;
  if (k < 1) throw std::invalid_argument("k must be >= 1");
  if (n_queries < 0 || n < 0 || dim < 1) throw std::invalid_argument("bad sizes");
  if (params.exact && items.full == nullptr && items.full_fd < 0)
    throw std::invalid_argument("exact search needs the float32 rows");
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const float pos_inf = std::numeric_limits<float>::infinity();
  if (stats) stats->candidates = 0;
  if (n_queries == 0) return;
  if (n == 0) {
    std::fill(out_scores, out_scores + n_queries * k, neg_inf);
    std::fill(out_ids, out_ids + n_queries * k, int64_t{-1});
    return;
  }
  const QuantKernelSet& ks = quant_kernels();
  const int64_t hk = std::min(k, n);
  const int threads = std::max(1, params.num_threads);

  // Prepared queries (cosine: unit norm, as the float32 path scores them) and |q'| bounds.
  std::vector<float> qbuf(static_cast<size_t>(n_queries * dim));
  std::vector<float> qnorm(static_cast<size_t>(n_queries));
  for (int64_t q = 0; q < n_queries; ++q) {
    const float* src = queries + q * query_stride;
    float* dst = qbuf.data() + q * dim;
    double ss = 0.0;
    for (int64_t p = 0; p < dim; ++p) ss += static_cast<double>(src[p]) * src[p];
    if (!(ss > 0.0) || !std::isfinite(ss))
      throw std::invalid_argument("queries must be finite and non-zero");
    const double scale = params.metric == Metric::Cosine ? 1.0 / std::sqrt(ss) : 1.0;
    double ss2 = 0.0;
    for (int64_t p = 0; p < dim; ++p) {
      dst[p] = static_cast<float>(src[p] * scale);
      ss2 += static_cast<double>(dst[p]) * dst[p];
    }
    qnorm[q] = round_up(std::sqrt(ss2) * (1.0 + 1e-12));
  }
  const float rel = quant_rel_slack(dim);

  // int8: the quantized queries of the integer scan (quant.h): q~ = s_q * qi with
  // s_q = max|q'_i| / Q (a float) and qi = round(q'_i / s_q) in [-Q, Q], Q the kernel set's
  // bound for the path (63 on the direct path and 31 on the packed one for the AVX2 kernels,
  // what they can add in int16 without saturating; 127 for VNNI); eq >= |q' - q~| and
  // qcoef = eq + c (|q'| + eq), both rounded up: the radius follows the quantization made.
  const bool int_i8 = items.type == QuantType::Int8 && dim <= kQuantI8MaxDim;
  const bool direct = n_queries <= kDirectMaxQueries;
  const int qmax = direct ? ks.direct_qmax : ks.packed_qmax;
  const int64_t qstride = (dim + kQuantI8QueryPad - 1) / kQuantI8QueryPad * kQuantI8QueryPad;
  std::vector<int8_t> qcodes;
  std::vector<float> qscale, qcoef;
  std::vector<int32_t> qcorr;
  if (int_i8) {
    qcodes.assign(static_cast<size_t>(n_queries * qstride), 0);
    qscale.resize(static_cast<size_t>(n_queries));
    qcoef.resize(static_cast<size_t>(n_queries));
    qcorr.resize(static_cast<size_t>(n_queries));
    for (int64_t q = 0; q < n_queries; ++q) {
      const float* src = qbuf.data() + q * dim;
      int8_t* dst = qcodes.data() + q * qstride;
      float amax = 0.0f;
      for (int64_t p = 0; p < dim; ++p) amax = std::max(amax, std::fabs(src[p]));
      float sq = amax / static_cast<float>(qmax);
      if (!(sq > 0.0f)) sq = std::numeric_limits<float>::denorm_min();  // amax below Q 2^-150
      const double sqd = sq;
      double ss = 0.0;
      int32_t sum = 0;
      for (int64_t p = 0; p < dim; ++p) {
        const double v = std::nearbyint(static_cast<double>(src[p]) / sqd);
        const int32_t c = static_cast<int32_t>(std::max(-double(qmax), std::min(double(qmax), v)));
        dst[p] = static_cast<int8_t>(c);
        sum += c;
        // sqd * c is exact in double (24-bit times 8-bit at most); the difference and the squares
        // round by at most 2^-53 relative each, the sum by (dim - 1) 2^-53: covered below.
        const double diff = static_cast<double>(src[p]) - sqd * c;
        ss += diff * diff;
      }
      const double eq = std::sqrt(ss) * (1.0 + static_cast<double>(dim + 8) * std::ldexp(1.0, -52));
      const double qn = qnorm[q];
      const double coef = eq + static_cast<double>(rel) * (qn + eq);
      qscale[q] = sq;
      qcoef[q] = round_up(coef * (1.0 + std::ldexp(1.0, -50)));
      qcorr[q] = 128 * sum;
    }
  }

  // Work split, as topk_cpu: a few queries share the items in chunks; many go in blocks.
  const int64_t G = ks.query_group;
  int64_t qblock = n_queries;
  if (!direct) {
    int64_t blocks = (n_queries + ks.query_block - 1) / ks.query_block;
    blocks = (blocks + threads - 1) / threads * threads;
    qblock = ((n_queries + blocks - 1) / blocks + G - 1) / G * G;
    qblock = std::min(qblock, ks.query_block);
  }
  const int64_t n_qblocks = (n_queries + qblock - 1) / qblock;
  const double work = static_cast<double>(n_queries) * n * dim;
  int64_t want_chunks = 1;
  if (n_qblocks < threads) {
    want_chunks = static_cast<int64_t>(work / n_qblocks / kMinTaskWork);
    want_chunks = std::min<int64_t>({want_chunks, threads, (n + 1023) / 1024});
  }
  const TaskGrid grid(n_queries, qblock, n, want_chunks, 1);
  const int64_t n_chunks = grid.n_chunks;

  // Per (chunk, query): a lower-bound heap, a survivor buffer; per chunk a threshold row.
  const size_t n_states = static_cast<size_t>(n_chunks * n_queries);
  std::vector<float> lb_scores(n_states * hk);
  std::vector<int64_t> lb_ids(n_states * hk);
  std::vector<std::vector<Cand>> bufs(n_states);
  std::vector<QueryState> states(n_states);
  const int64_t tau_row = n_queries + G;
  std::vector<float> tau(static_cast<size_t>(n_chunks * tau_row));
  for (int64_t c = 0; c < n_chunks; ++c) {
    for (int64_t i = 0; i < tau_row; ++i) tau[c * tau_row + i] = i < n_queries ? neg_inf : pos_inf;
    for (int64_t q = 0; q < n_queries; ++q) {
      const size_t s = static_cast<size_t>(c * n_queries + q);
      heap_init(lb_scores.data() + s * hk, lb_ids.data() + s * hk, hk);
      bufs[s].resize(static_cast<size_t>(64 + 4 * hk));
      QueryState& st = states[s];
      st.lb_scores = lb_scores.data() + s * hk;
      st.lb_ids = lb_ids.data() + s * hk;
      st.cands = bufs[s].data();
      st.n_cands = 0;
      st.cap = static_cast<int64_t>(bufs[s].size());
      st.grow = &grow_state;
      st.owner = &bufs[s];
    }
  }

  TaskRunner runner(grid.size(), threads, work < kInlineMaxWork, ks.scratch_floats(dim));
  runner.run(
      [&](int64_t task, float* scratch) {
        const TaskCell cell = grid.cell(task);
        QuantTask t;
        t.queries = qbuf.data();
        t.qnorm = qnorm.data();
        t.qcodes = int_i8 ? qcodes.data() : nullptr;
        t.qstride = qstride;
        t.qscale = int_i8 ? qscale.data() : nullptr;
        t.qcoef = int_i8 ? qcoef.data() : nullptr;
        t.qcorr = int_i8 ? qcorr.data() : nullptr;
        t.items = &items;
        t.rel_slack = rel;
        t.dim = dim;
        t.heap_k = hk;
        t.q0 = cell.q0;
        t.q1 = cell.q1;
        t.j0 = cell.j0;
        t.j1 = cell.j1;
        t.states = states.data() + cell.chunk * n_queries + t.q0;
        t.tau = tau.data() + cell.chunk * tau_row + t.q0;
        t.exclude = params.exclude;
        t.allow = params.allow;
        t.scratch = scratch;
        t.cancel = runner.cancel();
        if (direct)
          ks.scan_direct(t);
        else
          ks.scan_packed(t);
      },
      params.should_stop);

  // Merge: the global threshold is the k-th best lower bound over the chunks; the survivors are
  // the candidates whose upper bound reaches it, by position.
  std::vector<int64_t> cand_indptr(static_cast<size_t>(n_queries + 1), 0);
  std::vector<int64_t> cand_pos;
  std::vector<float> ms(static_cast<size_t>(hk));
  std::vector<int64_t> mi(static_cast<size_t>(hk));
  for (int64_t q = 0; q < n_queries; ++q) {
    heap_init(ms.data(), mi.data(), hk);
    for (int64_t c = 0; c < n_chunks; ++c) {
      const size_t s = static_cast<size_t>(c * n_queries + q);
      for (int64_t i = 0; i < hk; ++i)
        if (lb_ids[s * hk + i] != kEmptyId)
          heap_push(ms.data(), mi.data(), hk, lb_scores[s * hk + i], lb_ids[s * hk + i]);
    }
    const float thr = ms[0];  // -inf while fewer than hk items are eligible
    if (!params.exact) heap_init(ms.data(), mi.data(), hk);
    const size_t start = cand_pos.size();
    for (int64_t c = 0; c < n_chunks; ++c) {
      const QueryState& st = states[static_cast<size_t>(c * n_queries + q)];
      for (int64_t i = 0; i < st.n_cands; ++i) {
        const Cand& cd = st.cands[i];
        if (!(cd.ub >= thr)) continue;
        if (params.exact)
          cand_pos.push_back(cd.pos);
        else
          heap_push(ms.data(), mi.data(), hk, cd.t, cd.pos);
        if (stats) ++stats->candidates;
      }
    }
    if (params.exact) {
      std::sort(cand_pos.begin() + static_cast<std::ptrdiff_t>(start), cand_pos.end());
    } else {
      heap_sort_output(ms.data(), mi.data(), hk);
      std::copy(ms.begin(), ms.end(), out_scores + q * k);
      std::copy(mi.begin(), mi.end(), out_ids + q * k);
      std::fill(out_scores + q * k + hk, out_scores + (q + 1) * k, neg_inf);
      std::fill(out_ids + q * k + hk, out_ids + (q + 1) * k, int64_t{-1});
    }
    cand_indptr[static_cast<size_t>(q + 1)] = static_cast<int64_t>(cand_pos.size());
  }
  bufs.clear();
  states.clear();
  if (!params.exact) return;

  // Re-score in query blocks, each against the union of its survivors gathered (in position
  // order) from the float32 rows. The whole batch's size picks topk_cpu's scoring path
  // (TopkParams::batch_size), so the scores do not depend on these blocks.
  const int64_t batch = std::max(params.batch_size, n_queries);
  const int64_t rb = batch > kTopkDirectMaxQueries ? kRerankBlock : 1;
  std::vector<int64_t> uni, ex_indptr, ex_indices;
  std::vector<float> rows;
  for (int64_t b0 = 0, b1 = 0; b0 < n_queries; b0 = b1) {
    b1 = std::min(n_queries, b0 + rb);
    uni.assign(cand_pos.begin() + cand_indptr[b0], cand_pos.begin() + cand_indptr[b1]);
    std::sort(uni.begin(), uni.end());
    uni.erase(std::unique(uni.begin(), uni.end()), uni.end());
    const int64_t nu = static_cast<int64_t>(uni.size());
    rows.resize(static_cast<size_t>(std::max<int64_t>(1, nu) * dim));
    if (items.full_fd >= 0) {
      // One pread per run of consecutive positions.
      for (int64_t u = 0; u < nu;) {
        int64_t v = u + 1;
        while (v < nu && uni[v] == uni[v - 1] + 1) ++v;
        char* dst = reinterpret_cast<char*>(rows.data() + u * dim);
        size_t left = static_cast<size_t>((v - u) * dim) * sizeof(float);
        int64_t off = items.full_offset + uni[u] * dim * static_cast<int64_t>(sizeof(float));
        while (left > 0) {
          ssize_t got = ::pread(items.full_fd, dst, left, static_cast<off_t>(off));
          if (got < 0 && errno == EINTR) continue;
          if (got <= 0)
            throw CorruptRow("section 'vectors': cannot read row " + std::to_string(uni[u]) +
                             " (the file is truncated or unreadable)");
          dst += got;
          off += got;
          left -= static_cast<size_t>(got);
        }
        u = v;
      }
    } else {
      for (int64_t u = 0; u < nu; ++u)
        std::memcpy(rows.data() + u * dim, items.full + uni[u] * items.full_stride,
                    static_cast<size_t>(dim) * sizeof(float));
    }
    if (items.row_hash)
      for (int64_t u = 0; u < nu; ++u)
        if (row_hash(rows.data() + u * dim, dim) != items.row_hash[uni[u]])
          throw CorruptRow("section 'vectors': row " + std::to_string(uni[u]) +
                           " does not match its checksum (the file is corrupted)");
    TopkParams tp;
    tp.k = k;
    tp.metric = params.metric;
    tp.num_threads = params.num_threads;
    tp.should_stop = params.should_stop;
    tp.batch_size = batch;
    if (!params.exclude.empty()) {
      ex_indptr.assign(1, 0);
      ex_indices.clear();
      for (int64_t q = b0; q < b1; ++q) {
        for (int64_t e = params.exclude.indptr[q]; e < params.exclude.indptr[q + 1]; ++e) {
          auto it = std::lower_bound(uni.begin(), uni.end(), params.exclude.indices[e]);
          if (it != uni.end() && *it == params.exclude.indices[e])
            ex_indices.push_back(it - uni.begin());
        }
        ex_indptr.push_back(static_cast<int64_t>(ex_indices.size()));
      }
      tp.exclude.indptr = ex_indptr.data();
      tp.exclude.indices = ex_indices.empty() ? ex_indptr.data() : ex_indices.data();
    }
    topk_cpu(queries + b0 * query_stride, b1 - b0, query_stride, rows.data(), nu, dim, dim, tp,
             out_scores + b0 * k, out_ids + b0 * k);
    for (int64_t i = b0 * k; i < b1 * k; ++i)
      if (out_ids[i] >= 0) out_ids[i] = uni[static_cast<size_t>(out_ids[i])];
  }
}

}  // namespace recfast
