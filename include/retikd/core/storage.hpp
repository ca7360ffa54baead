// retikd/core/storage.hpp — a reference-counted block of bytes on the host or on a CUDA device.
//
// Tensors share a Storage through std::shared_ptr, which is what makes views (reshape, permute, slice) free.
// Host blocks are 64-byte aligned so the GEMM and vectorised loops can assume it, and large ones are reused
// (core/host_block_cache.hpp: fresh pages cost faults and zeroing on every step); device blocks come from
// the caching allocator in kernels/runtime.cu (no managed memory: every transfer is explicit).
#pragma once

#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include "retikd/core/device.hpp"
#include "retikd/core/error.hpp"
#include "retikd/core/host_block_cache.hpp"
#ifdef RETIKD_WITH_CUDA
#include "retikd/cuda/runtime.hpp"
#endif

namespace retikd {

inline bool cuda_available() {
#ifdef RETIKD_WITH_CUDA
  return cuda::device_count() > 0;
#else
  return false;
#endif
}

[[noreturn]] inline void fail_no_cuda(const char* op) {
  fail(op, ": this build of retikd has no CUDA support (link retikd::cuda, built when nvcc is found)");
}

class Storage {
 public:
  Storage(std::size_t bytes, Device device) : bytes_(bytes), device_(device) {
    const std::size_t alloc = bytes == 0 ? 64 : (bytes + 63) / 64 * 64;
    if (device.is_cpu()) {
      data_ = HostBlockCache::instance().allocate(alloc);  // large blocks are reused (host_block_cache.hpp)
      alloc_ = alloc;
    } else {
#ifdef RETIKD_WITH_CUDA
      data_ = cuda::device_malloc(alloc, device.index);
#else
      fail_no_cuda("Storage");
#endif
    }
  }
  ~Storage() {
    if (!data_) return;
    if (device_.is_cpu()) {
      HostBlockCache::instance().release(data_, alloc_);
    } else {
#ifdef RETIKD_WITH_CUDA
      cuda::device_free(data_, device_.index);
#endif
    }
  }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }
  const Device& device() const { return device_; }

 private:
  void* data_ = nullptr;
  std::size_t alloc_ = 0;  // the size asked of the host block cache
  std::size_t bytes_;
  Device device_;
};

// Copies `bytes` between two blocks on any pair of devices.
inline void copy_bytes(void* dst, const Device& dst_dev, const void* src, const Device& src_dev,
                       std::size_t bytes) {
  if (bytes == 0) return;
  if (dst_dev.is_cpu() && src_dev.is_cpu()) {
    std::memcpy(dst, src, bytes);
    return;
  }
#ifdef RETIKD_WITH_CUDA
  if (dst_dev.is_cuda() && src_dev.is_cpu()) {
    cuda::copy_host_to_device(dst, src, bytes, dst_dev.index);
  } else if (dst_dev.is_cpu() && src_dev.is_cuda()) {
    cuda::copy_device_to_host(dst, src, bytes, src_dev.index);
  } else {
    cuda::copy_device_to_device(dst, src, bytes, dst_dev.index);
  }
#else
  fail_no_cuda("copy");
#endif
}

}  // namespace retikd
