// A small persistent thread pool: workers sleep on a condition variable when idle (no spinning),
// several callers may submit at once, and the first exception of a job is rethrown to its caller.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

namespace recfast {

// The pool never grows beyond kWorkersPerCpu workers per CPU this process may run on (its
// affinity mask): more only adds threads that compete for the same cores. Workers idle for 2 s
// leave while the pool holds more than the latest call asked for. Python's
// recfast._inputs.MAX_THREADS_PER_CPU is the same number.
constexpr int kWorkersPerCpu = 4;

// kWorkersPerCpu x the CPUs in this process's affinity mask (read at each call), >= 1.
int max_pool_workers();

// Run fn(task, slot) for every task in [0, n_tasks) on up to `workers` pool threads (no more
// than n_tasks or max_pool_workers()); `slot` in [0, workers) identifies the worker within this
// call (for per-worker scratch). The caller blocks; every ~50 ms it calls should_stop (if set),
// and a true answer cancels the remaining tasks and throws Interrupted once running ones
// return. The first exception thrown by fn cancels the job and is rethrown here after all
// workers have left it.
void parallel_for(int64_t n_tasks, int workers, const std::function<void(int64_t, int)>& fn,
                  const std::function<bool()>& should_stop);

// A should_stop for parallel_for that, when `should_stop` says stop, also sets `cancel` (which
// tasks poll between their units of work, so running ones return early); empty when
// should_stop is.
std::function<bool()> stop_and_cancel(const std::function<bool()>& should_stop,
                                      std::atomic<bool>& cancel);

}  // namespace recfast
