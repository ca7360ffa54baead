// kernels/scratch.cuh — RAII scratch memory from the caching allocator (retikd/cuda/runtime.hpp), shared by
// the kernel files: freed back to the cache on scope exit, which stream order keeps safe for reuse.
#pragma once

#include <cstddef>

#include "retikd/cuda/runtime.hpp"

namespace retikd {
namespace cuda {
namespace detail {

struct Scratch {
  void* p = nullptr;
  int device = 0;
  Scratch(std::size_t bytes, int dev) : p(device_malloc(bytes, dev)), device(dev) {}
  ~Scratch() {
    try {
      device_free(p, device);
    } catch (...) {  // a destructor must not throw; device_free only fails on a foreign pointer
    }
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  float* f() const { return static_cast<float*>(p); }
};

}  // namespace detail
}  // namespace cuda
}  // namespace retikd
