// retikd/core/parallel.hpp — the small thread pool every threaded CPU op shares.
//
// One process-wide pool (created on first use, sized by RETIKD_NUM_THREADS or the hardware) runs
// `parallel_for(begin, end, grain, fn)`, where fn(lo, hi) handles a half-open chunk. Ops call it with a
// grain that keeps each chunk worth a thread wake-up; small work runs inline on the caller. Nested calls
// (an op inside a worker) run inline too, so ops may call each other freely without deadlock. Idle threads
// poll for a short while before they sleep (ThreadPool::kDefaultSpinMicroseconds, RETIKD_SPIN_US).
// ThreadPool::SpinScope raises the poll budget to a fixed floor for its lifetime (deploy/cpu_engine.hpp
// around one inference: ~60 short regions back to back, where the adaptive budget must not shrink).
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

#include "retikd/core/cli_args.hpp"

namespace retikd {

class ThreadPool {
 public:
  // How long an idle thread keeps polling for the next region (workers) or for the region's last task (the
  // caller) before it sleeps on a condition variable, at most. Why: waking a sleeping thread costs tens of
  // microseconds on a VM (docs/results.md, "CPU GEMM"), and a ViT training step opens ~460 short parallel
  // regions back to back (two per GEMM, one per elementwise op) with a median of ~10 µs of serial work
  // between them (99 % under 200 µs). OpenMP runtimes spin the same way. RETIKD_SPIN_US overrides it (0:
  // always sleep).
  // The budget adapts per waiting thread: a poll that runs out halves it, a sleep that ends within the
  // maximum (a poll would have caught it) doubles it again. On a machine with more runnable threads than
  // cores the waits stretch and polls only take time from the threads doing the work (measured: ~10 %
  // slower at load 8 on 2 cores with a fixed 200 µs), so there the budget shrinks towards plain sleeping.
  static constexpr int64_t kDefaultSpinMicroseconds = 200;

  explicit ThreadPool(int num_threads, int64_t spin_us = spin_microseconds_from_env())
      : num_threads_(std::max(1, num_threads)),
        max_spin_(std::chrono::microseconds(std::max<int64_t>(0, spin_us))),
        caller_spin_(max_spin_) {
    for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this] { worker_loop(); });
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_.store(true, std::memory_order_release);
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // A poll budget floor in microseconds (0: none, the adaptive budget alone). Thread-safe.
  void set_spin_us(int us) { spin_floor_us_.store(std::max(0, us), std::memory_order_relaxed); }
  int spin_us() const { return spin_floor_us_.load(std::memory_order_relaxed); }
  // Sets a poll budget floor for its lifetime and restores the previous one.
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
    // Each region gets its own Job: a worker that arrives late holds the Job it saw, whose counter is
    // exhausted, so it can never take (or double-count) a task of a later region.
    auto job = std::make_shared<Job>();
    job->task = &task;
    job->num_tasks = num_tasks;
    job->pending.store(num_tasks, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      current_ = job;
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();  // no system call when every worker is still polling
    inside_worker() = true;
    drain(*job);
    inside_worker() = false;
    wait_adaptively(caller_spin_, [&] { return job->pending.load(std::memory_order_acquire) == 0; }, done_);
    if (job->error) std::rethrow_exception(job->error);
  }

 private:
  struct Job {
    const std::function<void(int64_t)>* task = nullptr;
    int64_t num_tasks = 0;
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> pending{0};
    std::exception_ptr error;  // guarded by the pool's mutex_
  };

  static int64_t spin_microseconds_from_env() {
    if (const char* env = std::getenv("RETIKD_SPIN_US")) {
      char* end = nullptr;
      const long long v = std::strtoll(env, &end, 10);
      if (end != env && v >= 0) return static_cast<int64_t>(v);
    }
    return kDefaultSpinMicroseconds;
  }

  static bool& inside_worker() {
    static thread_local bool flag = false;
    return flag;
  }

  static void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield" ::: "memory");
#endif
  }

  using Clock = std::chrono::steady_clock;

  // Polls done() for up to `budget`; true once it held.
  template <class Done>
  static bool spin_until(Done&& done, Clock::duration budget) {
    if (done()) return true;
    if (budget.count() <= 0) return false;
    const auto deadline = Clock::now() + budget;
    for (;;) {
      for (int i = 0; i < 64; ++i) {
        cpu_relax();
        if (done()) return true;
      }
      if (Clock::now() >= deadline) return done();
    }
  }

  // Waits until done() (checked under mutex_ before sleeping on `cv`): polls for `budget` first, and adapts
  // the budget to how the wait went (see kDefaultSpinMicroseconds).
  template <class Done>
  void wait_adaptively(Clock::duration& budget, Done&& done, std::condition_variable& cv) {
    const auto start = Clock::now();
    const Clock::duration floor = std::chrono::microseconds(spin_floor_us_.load(std::memory_order_relaxed));
    if (spin_until(done, std::max(budget, floor))) {
      budget = std::min(max_spin_, budget * 2);
      return;
    }
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv.wait(lock, done);
    }
    if (Clock::now() - start <= max_spin_)
      budget = std::min(max_spin_, std::max(budget * 2, max_spin_ / 8));  // a longer poll would have caught it
    else
      budget /= 2;
  }

  void drain(Job& job) {
    for (;;) {
      const int64_t t = job.next.fetch_add(1, std::memory_order_relaxed);
      if (t >= job.num_tasks) return;
      std::exception_ptr error;
      try {
        (*job.task)(t);
      } catch (...) {
        error = std::current_exception();
      }
      if (error) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!job.error) job.error = error;
      }
      if (job.pending.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        // The last task: the caller may already sleep on done_. Notifying under the mutex orders this after
        // its predicate check, so the wake-up cannot be lost.
        std::lock_guard<std::mutex> lock(mutex_);
        done_.notify_all();
      }
    }
  }

  void worker_loop() {
    inside_worker() = true;
    uint64_t seen = 0;
    Clock::duration budget = max_spin_;
    for (;;) {
      wait_adaptively(budget, [&] {
        return generation_.load(std::memory_order_acquire) != seen || stopping_.load(std::memory_order_acquire);
      }, wake_);
      std::shared_ptr<Job> job;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_.load(std::memory_order_relaxed)) return;
        seen = generation_.load(std::memory_order_relaxed);
        job = current_;  // its tasks may all be taken already: then drain returns at once
      }
      drain(*job);
    }
  }

  int num_threads_;
  Clock::duration max_spin_;
  Clock::duration caller_spin_;  // the caller's budget; only touched under job_mutex_
  std::vector<std::thread> workers_;
  std::mutex job_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::shared_ptr<Job> current_;            // written under mutex_
  std::atomic<uint64_t> generation_{0};     // bumped under mutex_, polled without it
  std::atomic<bool> stopping_{false};
  std::atomic<int> spin_floor_us_{0};  // SpinScope's floor
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
