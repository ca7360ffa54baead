// retikd/core/parallel.hpp — the small thread pool every threaded CPU op shares.
//
// One process-wide pool (created on first use, sized by RETIKD_NUM_THREADS or the hardware) runs
// `parallel_for(begin, end, grain, fn)`, where fn(lo, hi) handles a half-open chunk. Ops call it with a
// grain that keeps each chunk worth a thread wake-up; small work runs inline on the caller. Nested calls
// (an op inside a worker) run inline too, so ops may call each other freely without deadlock.
//
// Opt-in spin-waiting (ThreadPool::SpinScope, used by deploy/cpu_engine.hpp around an inference): a
// condition-variable wake-up costs tens of µs on a VM, which a network of ~60 short parallel regions pays at
// every layer. With a spin budget set, a worker that finished a region polls for the next one for that long
// before it sleeps, and the caller polls for the region's last task instead of sleeping. Off (0) by default: a
// spinning thread burns its core, which only pays between back-to-back regions.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

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

  // Spin budget in microseconds (see the top of this file); 0 sleeps at once. Thread-safe.
  void set_spin_us(int us) { spin_us_.store(std::max(0, us), std::memory_order_relaxed); }
  int spin_us() const { return spin_us_.load(std::memory_order_relaxed); }
  // Sets a spin budget for its lifetime and restores the previous one.
  class SpinScope {
   public:
    SpinScope(ThreadPool& pool, int us) : pool_(pool), previous_(pool.spin_us()) { pool.set_spin_us(us); }
    ~SpinScope() { pool_.set_spin_us(previous_); }
    SpinScope(const SpinScope&) = delete;
    SpinScope& operator=(const SpinScope&) = delete;

   private:
    ThreadPool& pool_;
    int previous_;
  };

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
      published_.store(generation_, std::memory_order_release);
    }
    wake_.notify_all();
    inside_worker() = true;
    drain(*job);
    inside_worker() = false;
    if (spin_us() > 0) spin_until([&] {
        std::lock_guard<std::mutex> lock(mutex_);
        return job->pending == 0;
      });
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

  static void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }

  // Polls done() for up to the spin budget; true when it became true.
  template <class Done>
  bool spin_until(Done&& done) const {
    const int us = spin_us();
    if (us <= 0) return false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
    for (unsigned i = 1;; ++i) {
      if (done()) return true;
      cpu_relax();
      if ((i & 255) == 0 && std::chrono::steady_clock::now() > deadline) return false;
    }
  }

  void worker_loop() {
    inside_worker() = true;
    uint64_t seen = 0;
    for (;;) {
      spin_until([&] { return published_.load(std::memory_order_acquire) != seen; });
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
  std::atomic<uint64_t> published_{0};  // generation_, readable without the mutex (spinning workers poll it)
  std::atomic<int> spin_us_{0};
  bool stopping_ = false;
};

inline int default_num_threads() {
  if (const char* env = std::getenv("RETIKD_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
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
