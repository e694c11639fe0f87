#include "thread_pool.h"

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "recfast/topk.h"

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
    while (static_cast<int>(threads_.size()) < job->max_workers) {
      threads_.emplace_back([this] { loop(); });
      threads_.back().detach();  // the pool lives as long as the process
    }
    queue_.push_back(job);
    cv_.notify_all();
  }

 private:
  void loop() {
    for (;;) {
      std::shared_ptr<Job> job;
      int slot;
      {
        std::unique_lock<std::mutex> lock(m_);
        cv_.wait(lock, [this] { return !queue_.empty(); });
        job = queue_.front();
        slot = job->joined++;
        if (job->joined >= job->max_workers) queue_.pop_front();
      }
      work(*job, slot);
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
  std::vector<std::thread> threads_;
};

// Leaked on purpose: detached workers may still sleep in it when the process exits. After a
// fork the child has none of the parent's threads, so it starts a fresh pool.
Pool* g_pool = nullptr;
std::once_flag g_atfork_once;

Pool& pool() {
  std::call_once(g_atfork_once, [] {
    pthread_atfork(nullptr, nullptr, [] { g_pool = new Pool(); });
  });
  static std::once_flag once;
  std::call_once(once, [] {
    if (g_pool == nullptr) g_pool = new Pool();
  });
  return *g_pool;
}

}  // namespace

void parallel_for(int64_t n_tasks, int workers, const std::function<void(int64_t, int)>& fn,
                  const std::function<bool()>& should_stop) {
  if (n_tasks <= 0) return;
  if (workers < 1) workers = 1;
  if (workers > n_tasks) workers = static_cast<int>(n_tasks);
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
