#include "runtime/thread_pool.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>

#include "recfast/interrupted.h"

namespace recfast {
namespace {

struct Job {
  const std::function<void(int64_t, int)>* fn;
  int64_t n_tasks;
  int max_workers;
  int joined = 0;  // guarded by the pool mutex
  std::atomic<int64_t> next{0};
  std::atomic<bool> cancel{false};
  std::mutex m;
  std::condition_variable cv;
  int64_t done = 0;  // tasks finished or skipped, guarded by m
  std::exception_ptr error;
};

class Pool {
 public:
  void submit(const std::shared_ptr<Job>& job) {
    std::lock_guard<std::mutex> lock(m_);
    keep_ = job->max_workers;
    while (n_threads_ < job->max_workers) {
      try {
        std::thread([this] { loop(); }).detach();  // the pool lives as long as the process
      } catch (const std::system_error&) {
        if (n_threads_ == 0) throw;     // no thread at all: the caller gets the error
        job->max_workers = n_threads_;  // out of threads: run on those we have
        break;
      }
      ++n_threads_;
    }
    queue_.push_back(job);
    cv_.notify_all();
  }

 private:
  // A worker that finds no job for kIdleExit leaves while the pool holds more workers than the
  // latest job asked for, so a call with many threads followed by calls with few does not keep
  // the extra ones alive.
  static constexpr std::chrono::seconds kIdleExit{2};

  void loop() {
    std::unique_lock<std::mutex> lock(m_);
    for (;;) {
      if (queue_.empty()) {
        // Within keep_ a worker sleeps until the next submit (which notifies, and may lower
        // keep_); beyond it, it leaves after kIdleExit without a job.
        if (n_threads_ <= keep_) {
          cv_.wait(lock);
        } else if (!cv_.wait_for(lock, kIdleExit, [this] { return !queue_.empty(); }) &&
                   n_threads_ > keep_) {  // others may have left meanwhile
          --n_threads_;
          return;
        }
        continue;
      }
      std::shared_ptr<Job> job = queue_.front();
      int slot = job->joined++;
      if (job->joined >= job->max_workers) queue_.pop_front();
      lock.unlock();
      work(*job, slot);
      job.reset();
      lock.lock();
    }
  }

  static void work(Job& job, int slot) {
    int64_t finished = 0;
    for (;;) {
      int64_t t = job.next.fetch_add(1);
      if (t >= job.n_tasks) break;
      if (!job.cancel.load(std::memory_order_relaxed)) {
        try {
          (*job.fn)(t, slot);
        } catch (...) {
          std::lock_guard<std::mutex> lock(job.m);
          if (!job.error) job.error = std::current_exception();
          job.cancel = true;
        }
      }
      ++finished;
    }
    std::lock_guard<std::mutex> lock(job.m);
    job.done += finished;
    if (job.done == job.n_tasks) job.cv.notify_all();
  }

  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  int n_threads_ = 0;  // live workers (detached), guarded by m_
  int keep_ = 0;       // workers the latest job asked for: idle ones beyond it leave
};

// Leaked on purpose: detached workers may still sleep in it when the process exits. After a
// fork the child has none of the parent's threads, so it starts a fresh pool.
Pool* g_pool = nullptr;
std::once_flag g_atfork_once;

Pool& pool() {
  std::call_once(g_atfork_once,
                 [] { pthread_atfork(nullptr, nullptr, [] { g_pool = new Pool(); }); });
  static std::once_flag once;
  std::call_once(once, [] {
    if (g_pool == nullptr) g_pool = new Pool();
  });
  return *g_pool;
}

}  // namespace

int max_pool_workers() {
  int cpus = 0;
#ifdef __linux__
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) cpus = CPU_COUNT(&set);
#endif
  if (cpus < 1) cpus = static_cast<int>(std::thread::hardware_concurrency());
  return kWorkersPerCpu * std::max(1, cpus);
}

void parallel_for(int64_t n_tasks, int workers, const std::function<void(int64_t, int)>& fn,
                  const std::function<bool()>& should_stop) {
  if (n_tasks <= 0) return;
  if (workers < 1) workers = 1;
  if (workers > n_tasks) workers = static_cast<int>(n_tasks);
  workers = std::min(workers, max_pool_workers());
  auto job = std::make_shared<Job>();
  job->fn = &fn;
  job->n_tasks = n_tasks;
  job->max_workers = workers;
  pool().submit(job);
  bool interrupted = false;
  {
    std::unique_lock<std::mutex> lock(job->m);
    while (job->done < job->n_tasks) {
      job->cv.wait_for(lock, std::chrono::milliseconds(50));
      if (job->done >= job->n_tasks || interrupted || !should_stop) continue;
      lock.unlock();
      bool stop = should_stop();
      lock.lock();
      if (stop) {
        interrupted = true;
        job->cancel = true;
      }
    }
  }
  // No worker touches `job` (or fn) beyond this point except to drop its shared_ptr.
  if (job->error) std::rethrow_exception(job->error);
  if (interrupted) throw Interrupted();
}

std::function<bool()> stop_and_cancel(const std::function<bool()>& should_stop,
                                      std::atomic<bool>& cancel) {
  if (!should_stop) return {};
  return [should_stop, &cancel] {
    if (!should_stop()) return false;
    cancel = true;
    return true;
  };
}

}  // namespace recfast
