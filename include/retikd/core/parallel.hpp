// retikd/core/parallel.hpp — the small thread pool every threaded CPU op shares.
//
// One process-wide pool (created on first use, sized by RETIKD_NUM_THREADS or the hardware) runs
// `parallel_for(begin, end, grain, fn)`, where fn(lo, hi) handles a half-open chunk. Ops call it with a
// grain that keeps each chunk worth a thread wake-up; small work runs inline on the caller. Nested calls
// (an op inside a worker) run inline too, so ops may call each other freely without deadlock.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "retikd/core/cli_args.hpp"

namespace retikd {

class ThreadPool {
 public:
  explicit ThreadPool(int num_threads) : num_threads_(std::max(1, num_threads)) {
    for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this] { worker_loop(); });
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Runs task(t) for t in [0, num_tasks) across the pool; the caller takes part. Rethrows the first
  // exception a task threw, after every task has finished.
  void run(int64_t num_tasks, const std::function<void(int64_t)>& task) {
    if (num_tasks <= 0) return;
    if (num_tasks == 1 || num_threads_ == 1 || inside_worker()) {
      for (int64_t t = 0; t < num_tasks; ++t) task(t);
      return;
    }
    std::unique_lock<std::mutex> job_lock(job_mutex_);  // one parallel region at a time
    // Each region gets its own Job: a worker that wakes late holds the Job it saw, whose counter is
    // exhausted, so it can never take (or double-count) a task of a later region.
    auto job = std::make_shared<Job>();
    job->task = &task;
    job->num_tasks = num_tasks;
    job->pending = num_tasks;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      current_ = job;
      ++generation_;
    }
    wake_.notify_all();
    inside_worker() = true;
    drain(*job);
    inside_worker() = false;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [&] { return job->pending == 0; });
      current_.reset();
    }
    if (job->error) std::rethrow_exception(job->error);
  }

 private:
  struct Job {
    const std::function<void(int64_t)>* task = nullptr;
    int64_t num_tasks = 0;
    std::atomic<int64_t> next{0};
    int64_t pending = 0;  // guarded by the pool's mutex_
    std::exception_ptr error;
  };

  static bool& inside_worker() {
    static thread_local bool flag = false;
    return flag;
  }

  void drain(Job& job) {
    for (;;) {
      const int64_t t = job.next.fetch_add(1);
      if (t >= job.num_tasks) return;
      std::exception_ptr error;
      try {
        (*job.task)(t);
      } catch (...) {
        error = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(mutex_);
      if (error && !job.error) job.error = error;
      if (--job.pending == 0) done_.notify_all();
    }
  }

  void worker_loop() {
    inside_worker() = true;
    uint64_t seen = 0;
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || (generation_ != seen && current_ != nullptr); });
        if (stopping_) return;
        seen = generation_;
        job = current_;
      }
      drain(*job);
    }
  }

  int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex job_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::shared_ptr<Job> current_;
  uint64_t generation_ = 0;
  bool stopping_ = false;
};

// RETIKD_NUM_THREADS (1 to 1024, strictly parsed: "abc" or "100000" is an error, not a silent default),
// else every core.
inline int default_num_threads() {
  const unsigned hw = std::thread::hardware_concurrency();
  return static_cast<int>(cli::env_int("RETIKD_NUM_THREADS", hw == 0 ? 1 : static_cast<int64_t>(hw), 1, 1024));
}

inline ThreadPool& thread_pool() {
  static ThreadPool pool(default_num_threads());
  return pool;
}

// fn(lo, hi) over [begin, end) in chunks of at least `grain` iterations.
template <class Fn>
void parallel_for(int64_t begin, int64_t end, int64_t grain, Fn&& fn) {
  const int64_t n = end - begin;
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  ThreadPool& pool = thread_pool();
  int64_t chunks = std::min<int64_t>((n + grain - 1) / grain, pool.num_threads() * 4);
  if (chunks <= 1) {
    fn(begin, end);
    return;
  }
  const int64_t step = (n + chunks - 1) / chunks;
  chunks = (n + step - 1) / step;
  pool.run(chunks, [&](int64_t c) {
    int64_t lo = begin + c * step;
    int64_t hi = std::min(end, lo + step);
    if (lo < hi) fn(lo, hi);
  });
}

}  // namespace retikd
