// Dense score blocks out += queries x items^T with the top-k scan's packed kernels (the
// declaration and contract are in recfast/score_rows.h).
#include <algorithm>
#include <atomic>
#include <vector>

#include "aligned_buffer.h"
#include "kernels.h"
#include "recfast/score_rows.h"
#include "thread_pool.h"

namespace recfast {
namespace {

// Below this many multiply-adds a call runs on the calling thread: waking workers costs more.
constexpr double kInlineMaxWork = 2e6;
// A task's query block: at most this many floats (1 MiB), so the packed block stays in L2.
constexpr int64_t kQueryPackFloats = 256 * 1024;
constexpr int64_t kTasksPerThread = 4;
// Item chunks of at least this many items keep packing the query block a small cost.
constexpr int64_t kMinChunkItems = 256;

}  // namespace

void dense_scores(const float* queries, int64_t n_queries, int64_t query_stride,
                  const float* items, int64_t n_items, int64_t item_stride, int64_t dim,
                  const float* bias, float* out, int64_t out_stride, int num_threads,
                  const std::function<bool()>& should_stop) {
  if (n_queries <= 0 || n_items <= 0) return;
  const KernelSet& ks = kernels_for(active_level());
  const int threads = std::max(1, num_threads);
  const int64_t g = ks.packed_query_group;
  const double work = static_cast<double>(n_queries) * n_items * std::max<int64_t>(dim, 1);
  const int64_t qblock =
      std::min(n_queries, std::max<int64_t>(g, kQueryPackFloats / std::max<int64_t>(dim, 1) / g * g));
  const int64_t n_qblocks = (n_queries + qblock - 1) / qblock;
  const int64_t want_chunks = (threads * kTasksPerThread + n_qblocks - 1) / n_qblocks;
  const int64_t n_chunks =
      std::max<int64_t>(1, std::min(want_chunks, n_items / kMinChunkItems));
  const int64_t chunk_items = ((n_items + n_chunks - 1) / n_chunks + 63) / 64 * 64;
  const int64_t n_item_chunks = (n_items + chunk_items - 1) / chunk_items;
  const int64_t n_tasks = n_qblocks * n_item_chunks;
  const bool inline_call = work < kInlineMaxWork;
  const int workers = inline_call ? 1 : static_cast<int>(std::min<int64_t>(threads, n_tasks));
  std::vector<AlignedBuffer> scratch;
  for (int w = 0; w < workers; ++w) scratch.push_back(aligned_floats(ks.scratch_floats(dim, qblock)));
  std::atomic<bool> cancel{false};

  auto run_task = [&](int64_t task, int slot) {
    const int64_t b = task / n_item_chunks, c = task % n_item_chunks;
    ScanTask t{};
    t.queries = queries;
    t.query_stride = query_stride;
    t.inv_qnorm = nullptr;
    t.items = items;
    t.item_stride = item_stride;
    t.dim = dim;
    t.q0 = b * qblock;
    t.q1 = std::min(n_queries, t.q0 + qblock);
    t.j0 = c * chunk_items;
    t.j1 = std::min(n_items, t.j0 + chunk_items);
    t.scratch = scratch[static_cast<size_t>(slot)].get();
    t.cancel = &cancel;
    t.out = out;
    t.out_stride = out_stride;
    t.out_bias = bias;
    ks.scan_packed(t);
  };
  if (inline_call) {
    for (int64_t t = 0; t < n_tasks; ++t) run_task(t, 0);
    return;
  }
  parallel_for(n_tasks, workers, run_task, stop_and_cancel(should_stop, cancel));
}

}  // namespace recfast
