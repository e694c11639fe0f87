// Test hooks: entry points that exist only so that tests can reach error paths no real input
// triggers. Bound as recfast._core._raise_in_worker (tests/test_topk_validation.py).
#pragma once

#include <cstdint>

namespace recfast {

// Runs n_tasks no-op tasks on the thread pool with num_threads workers; task failing_task (none
// when out of range) throws std::runtime_error("task N failed") on its worker, which the pool
// must rethrow here after every worker has left the job.
void raise_in_worker(int64_t n_tasks, int64_t failing_task, int num_threads);

}  // namespace recfast
