// Dense score blocks out += queries x items^T with the top-k scan's packed kernels (the
// declaration and contract are in recfast/score_rows.h).
#include <algorithm>

#include "recfast/score_rows.h"
#include "runtime/dispatch.h"
#include "runtime/task_grid.h"
#include "scan/kernels.h"

namespace recfast {
namespace {

// A task's query block: at most this many floats (1 MiB), so the packed block stays in L2.
constexpr int64_t kQueryPackFloats = 256 * 1024;
// Item chunks of at least this many items keep packing the query block a small cost.
constexpr int64_t kMinChunkItems = 256;

}  // namespace

void dense_scores(const float* queries, int64_t n_queries, int64_t query_stride, const float* items,
                  int64_t n_items, int64_t item_stride, int64_t dim, const float* bias, float* out,
                  int64_t out_stride, int num_threads, const std::function<bool()>& should_stop) {
  if (n_queries <= 0 || n_items <= 0) return;
  const KernelSet& ks = scan_kernels();
  const int threads = std::max(1, num_threads);
  const int64_t g = ks.packed_query_group;
  const double work = static_cast<double>(n_queries) * n_items * std::max<int64_t>(dim, 1);
  const int64_t qblock = std::min(
      n_queries, std::max<int64_t>(g, kQueryPackFloats / std::max<int64_t>(dim, 1) / g * g));
  const int64_t n_qblocks = (n_queries + qblock - 1) / qblock;
  const int64_t want_chunks = (threads * kTasksPerThread + n_qblocks - 1) / n_qblocks;
  const TaskGrid grid(n_queries, qblock, n_items, std::min(want_chunks, n_items / kMinChunkItems),
                      64);
  TaskRunner runner(grid.size(), threads, work < kInlineMaxWork, ks.scratch_floats(dim, qblock));
  runner.run(
      [&](int64_t task, float* scratch) {
        ScanTask t = scan_task(grid.cell(task), queries, query_stride, items, item_stride, dim,
                               scratch, runner.cancel());
        t.out = out;
        t.out_stride = out_stride;
        t.out_bias = bias;
        ks.scan_packed(t);
      },
      should_stop);
}

}  // namespace recfast
