// The scan driver: plans how a call is cut into tasks (query blocks x item chunks), gives each
// task its heaps, runs the tasks on the pool with the path's kernel, merges the per-chunk heaps
// and sorts the rows. One function per step.
#include "recfast/topk.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <vector>

#include "recfast/heap.h"
#include "runtime/dispatch.h"
#include "runtime/task_grid.h"
#include "scan/kernels.h"
#include "vec/scalar_helpers.h"

namespace recfast {
namespace {

static_assert(kTopkDirectMaxQueries < kTopkBroadcastMaxQueries, "paths in order");
// A packed task's query block: at most this many floats (1 MiB), so it stays in L2...
constexpr int64_t kQueryPackFloats = 256 * 1024;
// ...and, when the batch is split into several blocks, at least this many queries.
constexpr int64_t kMinPackedBlock = 256;
// Heaps of all item chunks together stay under this many bytes.
constexpr double kChunkHeapBytes = 64.0 * 1024 * 1024;

enum class ScanPath { Direct, Broadcast, Packed };

// How one call is cut and run.
struct ScanPlan {
  ScanPath path;
  int64_t heap_k;            // heap size: min(k, n_items)
  bool inline_call;          // on the calling thread
  int64_t qblock, n_chunks;  // queries per task, item chunks wanted
};

// The path follows the user's batch size (topk.h), not this call's.
ScanPath choose_path(int64_t n_queries, int64_t batch_size) {
  const int64_t batch = batch_size > 0 ? batch_size : n_queries;
  if (batch <= kTopkDirectMaxQueries && n_queries > kTopkDirectMaxQueries)
    throw std::invalid_argument("batch_size is smaller than the call's number of queries");
  if (batch <= kTopkDirectMaxQueries) return ScanPath::Direct;
  return n_queries <= kTopkBroadcastMaxQueries ? ScanPath::Broadcast : ScanPath::Packed;
}

// Work split into tasks = query blocks x item chunks, scheduled dynamically.
//  * A packed task packs its query block once and each item tile once for the whole block, so
//    blocks are as large as kQueryPackFloats allows: packing is then amortized over many
//    queries (with 1024 x 128 queries, over all of them).
//  * Items are split into chunks, each with its own heaps (merged at the end), so every thread
//    has work even for one query, each item is read from memory about once, and a slow thread
//    does not hold up the rest. Chunk heaps are capped by kChunkHeapBytes.
ScanPlan plan_scan(int64_t n_queries, int64_t n_items, int64_t dim, const TopkParams& params,
                   const KernelSet& ks) {
  ScanPlan p{};
  p.path = choose_path(n_queries, params.batch_size);
  p.heap_k = std::min(params.k, n_items);
  const int threads = std::max(1, params.num_threads);
  const bool direct = p.path != ScanPath::Packed;  // one query block, split over the items only
  const int64_t g = direct ? 1 : ks.packed_query_group;
  const double work = static_cast<double>(n_queries) * n_items * std::max<int64_t>(dim, 1);
  p.inline_call = work < kInlineMaxWork;
  const int64_t pack_rows =
      std::max<int64_t>(g, kQueryPackFloats / std::max<int64_t>(dim, 1) / g * g);
  const int64_t want_tasks = static_cast<int64_t>(threads) * kTasksPerThread;
  p.qblock = n_queries;
  p.n_chunks = 1;
  if (p.inline_call) return p;
  if (!direct) {
    // Enough query blocks for the threads, each large enough to amortize packing the items:
    // every extra item chunk means one more heap per query to fill (costly for large k).
    const int64_t even = ((n_queries + want_tasks - 1) / want_tasks + g - 1) / g * g;
    p.qblock = std::min({n_queries, pack_rows, std::max(even, kMinPackedBlock)});
  }
  const double heap_bytes =
      static_cast<double>(n_queries) * p.heap_k * (sizeof(float) + sizeof(int64_t));
  const int64_t n_qblocks = (n_queries + p.qblock - 1) / p.qblock;
  int64_t n_chunks = (want_tasks + n_qblocks - 1) / n_qblocks;
  n_chunks = std::min<int64_t>(n_chunks, static_cast<int64_t>(work / n_qblocks / kMinTaskWork));
  n_chunks = std::min<int64_t>(n_chunks, static_cast<int64_t>(kChunkHeapBytes / heap_bytes));
  n_chunks = std::min<int64_t>(n_chunks, (n_items + 1023) / 1024);
  p.n_chunks = std::max<int64_t>(1, n_chunks);
  if (p.n_chunks * n_qblocks < threads && !direct) {
    // Too few chunks (huge B x k): split the queries instead.
    p.qblock = std::max<int64_t>(g, (n_queries + threads - 1) / threads / g * g);
  }
  return p;
}

// 1 / |q| per query (cosine); empty for Dot.
std::vector<float> query_inv_norms(const float* queries, int64_t n_queries, int64_t query_stride,
                                   int64_t dim, Metric metric) {
  std::vector<float> inv;
  if (metric != Metric::Cosine) return inv;
  inv.resize(static_cast<size_t>(n_queries));
  for (int64_t q = 0; q < n_queries; ++q) {
    const float* row = queries + q * query_stride;
    float s = 0.0f;
    for (int64_t p = 0; p < dim; ++p) s += row[p] * row[p];
    inv[q] = inv_norm_checked(s, row, dim);
  }
  return inv;
}

// The heaps of every (chunk, query), hk slots each: chunk c's heap of query q at
// scores + (c * n_queries + q) * hk. With one chunk they are built in the output directly when
// it has room (hk == k); otherwise in a side buffer.
struct ScanHeaps {
  std::vector<float> side_scores;
  std::vector<int64_t> side_ids;
  float* scores;
  int64_t* ids;
  bool in_output;
};

ScanHeaps make_heaps(int64_t n_queries, int64_t n_chunks, int64_t hk, int64_t k, float* out_scores,
                     int64_t* out_ids) {
  ScanHeaps h;
  h.in_output = n_chunks == 1 && hk == k;
  h.scores = out_scores;
  h.ids = out_ids;
  if (!h.in_output) {
    h.side_scores.resize(static_cast<size_t>(n_chunks * n_queries * hk));
    h.side_ids.resize(h.side_scores.size());
    h.scores = h.side_scores.data();
    h.ids = h.side_ids.data();
  }
  for (int64_t s = 0; s < n_chunks * n_queries; ++s)
    heap_init(h.scores + s * hk, h.ids + s * hk, hk);
  return h;
}

// Every task of the grid with the plan's kernel, each pushing into its chunk's heaps.
void run_scan(const float* queries, int64_t query_stride, const float* items, int64_t item_stride,
              int64_t dim, const TopkParams& params, const ScanPlan& plan, const TaskGrid& grid,
              const KernelSet& ks, const std::vector<float>& inv_qnorm, const ScanHeaps& heaps) {
  void (*scan)(const ScanTask&) = plan.path == ScanPath::Direct      ? ks.scan_direct
                                  : plan.path == ScanPath::Broadcast ? ks.scan_broadcast
                                                                     : ks.scan_packed;
  const int64_t n_queries = grid.n_queries, hk = plan.heap_k;
  TaskRunner runner(grid.size(), params.num_threads, plan.inline_call,
                    ks.scratch_floats(dim, grid.qblock));
  runner.run(
      [&](int64_t task, float* scratch) {
        const TaskCell cell = grid.cell(task);
        ScanTask t = scan_task(cell, queries, query_stride, items, item_stride, dim, scratch,
                               runner.cancel());
        t.inv_qnorm = inv_qnorm.empty() ? nullptr : inv_qnorm.data();
        t.heap_k = hk;
        t.heap_scores = heaps.scores + (cell.chunk * n_queries + cell.q0) * hk;
        t.heap_ids = heaps.ids + (cell.chunk * n_queries + cell.q0) * hk;
        t.exclude = params.exclude;
        scan(t);
      },
      params.should_stop);
}

// Merge the chunk heaps into chunk 0's, sort each row and write it, padded to k, to the output.
void merge_heaps(const ScanHeaps& heaps, int64_t n_queries, int64_t n_chunks, int64_t hk, int64_t k,
                 float* out_scores, int64_t* out_ids) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  for (int64_t q = 0; q < n_queries; ++q) {
    float* hs = heaps.scores + q * hk;
    int64_t* hi = heaps.ids + q * hk;
    for (int64_t c = 1; c < n_chunks; ++c) {
      const float* os = heaps.scores + (c * n_queries + q) * hk;
      const int64_t* oi = heaps.ids + (c * n_queries + q) * hk;
      for (int64_t i = 0; i < hk; ++i)
        if (oi[i] != kEmptyId) heap_push(hs, hi, hk, os[i], oi[i]);
    }
    heap_sort_output(hs, hi, hk);
    if (!heaps.in_output) {
      std::copy(hs, hs + hk, out_scores + q * k);
      std::copy(hi, hi + hk, out_ids + q * k);
      std::fill(out_scores + q * k + hk, out_scores + (q + 1) * k, neg_inf);
      std::fill(out_ids + q * k + hk, out_ids + (q + 1) * k, int64_t{-1});
    }
  }
}

}  // namespace

ScanTask scan_task(const TaskCell& cell, const float* queries, int64_t query_stride,
                   const float* items, int64_t item_stride, int64_t dim, float* scratch,
                   const std::atomic<bool>* cancel) {
  ScanTask t{};
  t.queries = queries;
  t.query_stride = query_stride;
  t.items = items;
  t.item_stride = item_stride;
  t.dim = dim;
  t.q0 = cell.q0;
  t.q1 = cell.q1;
  t.j0 = cell.j0;
  t.j1 = cell.j1;
  t.scratch = scratch;
  t.cancel = cancel;
  return t;
}

void topk_cpu(const float* queries, int64_t n_queries, int64_t query_stride, const float* items,
              int64_t n_items, int64_t item_stride, int64_t dim, const TopkParams& params,
              float* out_scores, int64_t* out_ids) {
  const int64_t k = params.k;
  if (k < 1) throw std::invalid_argument("k must be >= 1");
  if (n_queries < 0 || n_items < 0 || dim < 0) throw std::invalid_argument("negative size");
  if (n_queries == 0) return;
  if (n_items == 0) {
    std::fill(out_scores, out_scores + n_queries * k, -std::numeric_limits<float>::infinity());
    std::fill(out_ids, out_ids + n_queries * k, int64_t{-1});
    return;
  }
  // The user's batch picks the kernel set as it picks the path (topk.h).
  const KernelSet& ks =
      scan_kernels_for_batch(params.batch_size > 0 ? params.batch_size : n_queries);
  const ScanPlan plan = plan_scan(n_queries, n_items, dim, params, ks);
  const TaskGrid grid(n_queries, plan.qblock, n_items, plan.n_chunks, 64);
  const std::vector<float> inv_qnorm =
      query_inv_norms(queries, n_queries, query_stride, dim, params.metric);
  const ScanHeaps heaps = make_heaps(n_queries, grid.n_chunks, plan.heap_k, k, out_scores, out_ids);
  run_scan(queries, query_stride, items, item_stride, dim, params, plan, grid, ks, inv_qnorm,
           heaps);
  merge_heaps(heaps, n_queries, grid.n_chunks, plan.heap_k, k, out_scores, out_ids);
}

}  // namespace recfast
