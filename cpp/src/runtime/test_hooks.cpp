// recfast/test_hooks.h.
#include "recfast/test_hooks.h"

#include <stdexcept>
#include <string>

#include "runtime/thread_pool.h"

namespace recfast {

void raise_in_worker(int64_t n_tasks, int64_t failing_task, int num_threads) {
  parallel_for(
      n_tasks, num_threads,
      [failing_task](int64_t task, int) {
        if (task == failing_task)
          throw std::runtime_error("task " + std::to_string(task) + " failed");
      },
      nullptr);
}

}  // namespace recfast
