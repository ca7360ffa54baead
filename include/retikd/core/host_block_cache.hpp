// retikd/core/host_block_cache.hpp — keeps large freed host blocks for reuse instead of returning them to the OS.
//
// Why: glibc serves blocks above its mmap threshold (at most 32 MiB) with mmap and unmaps them on free, so
// every forward pass that allocates activations of that size pays page faults and kernel zeroing of fresh
// pages again. Measured on the 2-core dev VM (docs/results.md, "bench_jetson on this CPU"): the folded
// MobileNetV2 at 224 px ran at 68.7 images/s at batch 8 and 50.0 at batch 32 — slower per image than batch 1
// (137.8) — with half the run in the kernel; with the blocks kept (the same effect as raising glibc's
// thresholds) batch 8 ran at 191 and batch 32 at 186 images/s. Training steps allocate the same sizes every
// step, so they reuse exactly.
//
// Policy: blocks of at least 1 MiB are rounded up to 256 KiB, and on release kept in a size-ordered free list
// while the cache holds at most RETIKD_HOST_CACHE_MB MiB (default 4096; 0 disables the cache); a request takes
// the smallest cached block of at least its size and at most 1.25× it. Smaller blocks go straight to
// aligned_alloc / free. empty_host_block_cache() returns every cached block to the system.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>

#include "retikd/core/cli_args.hpp"

namespace retikd {

class HostBlockCache {
 public:
  static constexpr std::size_t kMinCached = std::size_t(1) << 20;
  static constexpr std::size_t kGranule = std::size_t(256) << 10;

  // The process-wide cache. Never destroyed: storages freed during static destruction still find it.
  static HostBlockCache& instance() {
    static HostBlockCache* cache = new HostBlockCache();
    return *cache;
  }

  // The size actually allocated for a request of `bytes` (64-byte multiple).
  static std::size_t rounded(std::size_t bytes) {
    return bytes < kMinCached ? bytes : (bytes + kGranule - 1) / kGranule * kGranule;
  }

  // A 64-byte-aligned block of rounded(bytes) bytes.
  void* allocate(std::size_t bytes) {
    const std::size_t size = rounded(bytes);
    if (size >= kMinCached && limit_ > 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.lower_bound(size);
      if (it != free_.end() && it->first <= size + size / 4) {
        void* p = it->second;
        cached_ -= it->first;
        free_.erase(it);
        return p;
      }
    }
    void* p = std::aligned_alloc(64, size);
    if (p == nullptr) {
      empty();  // memory is short: give the cache back and try once more
      p = std::aligned_alloc(64, size);
      if (p == nullptr) throw std::bad_alloc();
    }
    return p;
  }

  // `bytes` must be the request that allocate() was given for `p`.
  void release(void* p, std::size_t bytes) {
    if (p == nullptr) return;
    const std::size_t size = rounded(bytes);
    if (size >= kMinCached && limit_ > 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_ + size <= limit_) {
        free_.emplace(size, p);
        cached_ += size;
        return;
      }
    }
    std::free(p);
  }

  void empty() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& kv : free_) std::free(kv.second);
    free_.clear();
    cached_ = 0;
  }

  std::size_t cached_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_;
  }

 private:
  HostBlockCache() {
    // Strict and bounded (core/cli_args.hpp): 0 disables the cache, 1 TiB is beyond any host here.
    limit_ = static_cast<std::size_t>(cli::env_int("RETIKD_HOST_CACHE_MB", 4096, 0, int64_t(1) << 20)) << 20;
  }
  std::mutex mutex_;
  std::multimap<std::size_t, void*> free_;
  std::size_t cached_ = 0;
  std::size_t limit_ = std::size_t(4096) << 20;
};

// Returns every cached host block to the system (e.g. after training, before a long inference-only phase).
inline void empty_host_block_cache() { HostBlockCache::instance().empty(); }

}  // namespace retikd
