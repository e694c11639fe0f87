// How the parallel drivers (topk_cpu, the quantized scan, dense_scores, score-row selection)
// cut a batch into tasks and run them. Each driver decides its own block and chunk sizes; this
// is the arithmetic of the cut and the choice between the calling thread and the pool.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "runtime/aligned_buffer.h"
#include "runtime/thread_pool.h"

namespace recfast {

// Tasks of the same size per thread when the work allows: dynamic scheduling then absorbs
// uneven threads.
constexpr int64_t kTasksPerThread = 4;

// Below this many multiply-adds a call runs on the calling thread: waking workers costs more.
constexpr double kInlineMaxWork = 2e6;
// Tasks should carry at least this many multiply-adds, so scheduling stays negligible.
constexpr double kMinTaskWork = 4e6;

// One task's query rows [q0, q1) and items [j0, j1).
struct TaskCell {
  int64_t block, chunk, q0, q1, j0, j1;
};

// Query blocks x item chunks; task = block * n_chunks + chunk.
struct TaskGrid {
  int64_t n_queries, qblock, n_qblocks;
  int64_t n_items, chunk_items, n_chunks;

  // Blocks of `qblock` queries; about `want_chunks` item chunks whose size is a multiple of
  // `align` items (rounding up can leave fewer chunks than wanted).
  TaskGrid(int64_t queries, int64_t block, int64_t items, int64_t want_chunks, int64_t align)
      : n_queries(queries), qblock(std::max<int64_t>(1, block)), n_items(items) {
    n_qblocks = (n_queries + qblock - 1) / qblock;
    const int64_t want = std::max<int64_t>(1, want_chunks);
    chunk_items = std::max<int64_t>(1, ((n_items + want - 1) / want + align - 1) / align * align);
    n_chunks = std::max<int64_t>(1, (n_items + chunk_items - 1) / chunk_items);
  }

  int64_t size() const { return n_qblocks * n_chunks; }

  TaskCell cell(int64_t task) const {
    TaskCell c;
    c.block = task / n_chunks;
    c.chunk = task % n_chunks;
    c.q0 = c.block * qblock;
    c.q1 = std::min(n_queries, c.q0 + qblock);
    c.j0 = c.chunk * chunk_items;
    c.j1 = std::min(n_items, c.j0 + chunk_items);
    return c;
  }
};

// Runs tasks [0, n_tasks) either on the calling thread (a small batch: waking workers would
// cost more) or on up to `threads` pool workers, each with its own 64-byte aligned scratch.
class TaskRunner {
 public:
  TaskRunner(int64_t n_tasks, int threads, bool on_caller, int64_t scratch_floats)
      : n_tasks_(n_tasks),
        on_caller_(on_caller),
        workers_(on_caller ? 1
                           : static_cast<int>(std::max<int64_t>(
                                 1, std::min<int64_t>(std::max(1, threads), n_tasks)))) {
    if (scratch_floats > 0)
      for (int w = 0; w < workers_; ++w) scratch_.push_back(aligned_floats(scratch_floats));
  }

  // Set when the caller's should_stop says stop; tasks poll it between their units of work.
  const std::atomic<bool>* cancel() const { return &cancel_; }

  // fn(task, scratch) for every task (scratch is nullptr when none was asked for). On the pool,
  // should_stop is polled as parallel_for describes and a stop raises Interrupted.
  void run(const std::function<void(int64_t, float*)>& fn,
           const std::function<bool()>& should_stop) {
    auto with_scratch = [&](int64_t task, int slot) {
      fn(task, scratch_.empty() ? nullptr : scratch_[static_cast<size_t>(slot)].get());
    };
    if (on_caller_) {
      for (int64_t t = 0; t < n_tasks_; ++t) with_scratch(t, 0);
      return;
    }
    parallel_for(n_tasks_, workers_, with_scratch, stop_and_cancel(should_stop, cancel_));
  }

 private:
  int64_t n_tasks_;
  bool on_caller_;
  int workers_;
  std::vector<AlignedBuffer> scratch_;
  std::atomic<bool> cancel_{false};
};

}  // namespace recfast
