// The scan driver: splits the work into tasks (query blocks x item chunks), gives each task its
// heaps and scratch, runs the tasks on the pool, merges the per-chunk heaps and sorts the rows.
#include "recfast/topk.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <new>
#include <vector>

#include "kernels.h"
#include "recfast/heap.h"
#include "recfast/simd.h"
#include "scalar_helpers.h"
#include "task_grid.h"

namespace recfast {
namespace {

static_assert(kTopkDirectMaxQueries <= 32, "the direct path keeps at most 32 thresholds");
static_assert(kTopkDirectMaxQueries < kTopkBroadcastMaxQueries, "paths in order");
// Below this many multiply-adds a call runs on the calling thread: waking workers costs more.
constexpr double kInlineMaxWork = 2e6;
// Tasks should carry at least this many multiply-adds, so scheduling stays negligible.
constexpr double kMinTaskWork = 4e6;
// A packed task's query block: at most this many floats (1 MiB), so it stays in L2...
constexpr int64_t kQueryPackFloats = 256 * 1024;
// ...and, when the batch is split into several blocks, at least this many queries.
constexpr int64_t kMinPackedBlock = 256;
// Heaps of all item chunks together stay under this many bytes.
constexpr double kChunkHeapBytes = 64.0 * 1024 * 1024;

float query_inv_norm(const float* q, int64_t dim) {
  float s = 0.0f;
  for (int64_t p = 0; p < dim; ++p) s += q[p] * q[p];
  return inv_norm_checked(s, q, dim);
}

}  // namespace

const KernelSet& kernels_for(SimdLevel level) {
  const KernelSet* k = nullptr;
  if (level == SimdLevel::AVX512) k = kernels_avx512();
#ifdef RECFAST_SIMDE_TEST_KERNEL
  if (level == SimdLevel::AVX512Emulated) k = kernels_avx512_emulated();
#endif
  if (k == nullptr && level != SimdLevel::Generic) k = kernels_avx2();
  if (k == nullptr) k = kernels_generic();
  return *k;
}

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
  const float neg_inf = -std::numeric_limits<float>::infinity();
  if (n_queries == 0) return;
  if (n_items == 0) {
    std::fill(out_scores, out_scores + n_queries * k, neg_inf);
    std::fill(out_ids, out_ids + n_queries * k, int64_t{-1});
    return;
  }
  const KernelSet& ks = kernels_for(active_level());
  const int64_t hk = std::min(k, n_items);  // heap size: never more than there are items
  const int threads = std::max(1, params.num_threads);

  std::vector<float> inv_qnorm;
  if (params.metric == Metric::Cosine) {
    inv_qnorm.resize(static_cast<size_t>(n_queries));
    for (int64_t q = 0; q < n_queries; ++q)
      inv_qnorm[q] = query_inv_norm(queries + q * query_stride, dim);
  }

  // Work split into tasks = query blocks x item chunks, scheduled dynamically.
  //  * A packed task packs its query block once and each item tile once for the whole block,
  //    so blocks are as large as kQueryPackFloats allows: packing is then amortized over many
  //    queries (with 1024 x 128 queries, over all of them).
  //  * Items are split into chunks, each with its own heaps (merged at the end), so every
  //    thread has work even for one query, each item is read from memory about once, and a
  //    slow thread does not hold up the rest. Chunk heaps are capped by kChunkHeapBytes.
  enum class Path { Direct, Broadcast, Packed };
  const int64_t batch = params.batch_size > 0 ? params.batch_size : n_queries;
  if (batch <= kTopkDirectMaxQueries && n_queries > kTopkDirectMaxQueries)
    throw std::invalid_argument("batch_size is smaller than the call's number of queries");
  const Path path = batch <= kTopkDirectMaxQueries          ? Path::Direct
                    : n_queries <= kTopkBroadcastMaxQueries ? Path::Broadcast
                                                            : Path::Packed;
  const bool direct = path != Path::Packed;  // one query block, split over the items only
  const int64_t g = direct ? 1 : ks.packed_query_group;
  const double work = static_cast<double>(n_queries) * n_items * std::max<int64_t>(dim, 1);
  const bool inline_call = work < kInlineMaxWork;
  const int64_t pack_rows =
      std::max<int64_t>(g, kQueryPackFloats / std::max<int64_t>(dim, 1) / g * g);
  const int64_t want_tasks = static_cast<int64_t>(threads) * kTasksPerThread;
  int64_t qblock = n_queries;
  if (!direct && !inline_call) {
    // Enough query blocks for the threads, each large enough to amortize packing the items:
    // every extra item chunk means one more heap per query to fill (costly for large k).
    const int64_t even = ((n_queries + want_tasks - 1) / want_tasks + g - 1) / g * g;
    qblock = std::min({n_queries, pack_rows, std::max(even, kMinPackedBlock)});
  }
  const double heap_bytes =
      static_cast<double>(n_queries) * hk * (sizeof(float) + sizeof(int64_t));
  int64_t n_chunks = 1;
  if (!inline_call) {
    const int64_t n_qblocks = (n_queries + qblock - 1) / qblock;
    n_chunks = (want_tasks + n_qblocks - 1) / n_qblocks;
    n_chunks = std::min<int64_t>(n_chunks, static_cast<int64_t>(work / n_qblocks / kMinTaskWork));
    n_chunks = std::min<int64_t>(n_chunks, static_cast<int64_t>(kChunkHeapBytes / heap_bytes));
    n_chunks = std::min<int64_t>(n_chunks, (n_items + 1023) / 1024);
    n_chunks = std::max<int64_t>(1, n_chunks);
    if (n_chunks * n_qblocks < threads && !direct) {
      // Too few chunks (huge B x k): split the queries instead.
      qblock = std::max<int64_t>(g, (n_queries + threads - 1) / threads / g * g);
    }
  }
  const TaskGrid grid(n_queries, qblock, n_items, n_chunks, 64);
  // Heaps: chunk c keeps hk slots per query. With one chunk, build them in the output directly
  // when it has room (hk == k); otherwise in a side buffer.
  const bool heaps_in_output = grid.n_chunks == 1 && hk == k;
  std::vector<float> side_scores;
  std::vector<int64_t> side_ids;
  float* heap_scores = out_scores;
  int64_t* heap_ids = out_ids;
  if (!heaps_in_output) {
    side_scores.resize(static_cast<size_t>(grid.n_chunks * n_queries * hk));
    side_ids.resize(side_scores.size());
    heap_scores = side_scores.data();
    heap_ids = side_ids.data();
  }
  for (int64_t c = 0; c < grid.n_chunks; ++c)
    for (int64_t q = 0; q < n_queries; ++q)
      heap_init(heap_scores + (c * n_queries + q) * hk, heap_ids + (c * n_queries + q) * hk, hk);

  TaskRunner runner(grid.size(), threads, inline_call, ks.scratch_floats(dim, grid.qblock));
  runner.run(
      [&](int64_t task, float* scratch) {
        const TaskCell cell = grid.cell(task);
        ScanTask t = scan_task(cell, queries, query_stride, items, item_stride, dim, scratch,
                               runner.cancel());
        t.inv_qnorm = inv_qnorm.empty() ? nullptr : inv_qnorm.data();
        t.heap_k = hk;
        t.heap_scores = heap_scores + (cell.chunk * n_queries + cell.q0) * hk;
        t.heap_ids = heap_ids + (cell.chunk * n_queries + cell.q0) * hk;
        t.exclude = params.exclude;
        if (path == Path::Direct)
          ks.scan_direct(t);
        else if (path == Path::Broadcast)
          ks.scan_broadcast(t);
        else
          ks.scan_packed(t);
      },
      params.should_stop);

  // Merge chunk heaps into chunk 0's, sort each row, pad to k.
  for (int64_t q = 0; q < n_queries; ++q) {
    float* hs = heap_scores + q * hk;
    int64_t* hi = heap_ids + q * hk;
    for (int64_t c = 1; c < grid.n_chunks; ++c) {
      const float* os = heap_scores + (c * n_queries + q) * hk;
      const int64_t* oi = heap_ids + (c * n_queries + q) * hk;
      for (int64_t i = 0; i < hk; ++i)
        if (oi[i] != kEmptyId) heap_push(hs, hi, hk, os[i], oi[i]);
    }
    heap_sort_output(hs, hi, hk);
    if (!heaps_in_output) {
      std::copy(hs, hs + hk, out_scores + q * k);
      std::copy(hi, hi + hk, out_ids + q * k);
      std::fill(out_scores + q * k + hk, out_scores + (q + 1) * k, neg_inf);
      std::fill(out_ids + q * k + hk, out_ids + (q + 1) * k, int64_t{-1});
    }
  }
}

}  // namespace recfast
