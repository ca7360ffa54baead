// kernels/runtime.cu — device discovery, the caching device allocator, copies and synchronisation
// (declared in include/retikd/cuda/runtime.hpp).
//
// The allocator keeps freed blocks in per-device free lists keyed by a size bucket, so a training loop
// that allocates the same shapes every step stops calling cudaMalloc (which synchronises the device) after
// the first step. Buckets are 512-byte multiples below 4 KiB and then four per power of two (at most 25%
// slack), so a block of one bucket serves every request that rounds to it.
#include <cuda_runtime.h>

#include <cstddef>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "capture.cuh"
#include "cuda_check.cuh"
#include "launch.cuh"
#include "retikd/cuda/runtime.hpp"

namespace retikd {
namespace cuda {
namespace {

std::size_t bucket_size(std::size_t bytes) {
  const std::size_t kMin = 512;
  if (bytes <= 4096) return (bytes + kMin - 1) / kMin * kMin;
  std::size_t power = 4096;
  while (power * 2 < bytes) power *= 2;  // power < bytes <= 2 * power
  const std::size_t step = power / 4;
  return (bytes + step - 1) / step * step;
}

struct DeviceCache {
  std::map<std::size_t, std::vector<void*>> free_blocks;  // bucket -> blocks
  std::unordered_map<void*, std::size_t> live;            // block in use -> bucket
  std::size_t cached = 0;
  std::size_t allocated = 0;
};

class CachingAllocator {
 public:
  void* allocate(std::size_t bytes, int device) {
    if (bytes == 0) return nullptr;
    const std::size_t bucket = bucket_size(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    DeviceCache& cache = cache_for(device);
    auto it = cache.free_blocks.find(bucket);
    if (it != cache.free_blocks.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      cache.cached -= bucket;
      cache.live.emplace(p, bucket);
      cache.allocated += bucket;
      return p;
    }
    detail::DeviceGuard guard(device);
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, bucket);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // clear it, give the cache back to the driver and try once more
      release_locked(device);
      err = cudaMalloc(&p, bucket);
    }
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      throw std::runtime_error("retikd::cuda::device_malloc: out of memory allocating " + std::to_string(bytes) +
                               " bytes (bucket " + std::to_string(bucket) + ") on device " +
                               std::to_string(device) + " after releasing the cache (" +
                               std::to_string(cache.allocated) + " bytes in use by retikd)");
    }
    RETIKD_CUDA_CHECK(err);
    cache.live.emplace(p, bucket);
    cache.allocated += bucket;
    return p;
  }

  void deallocate(void* p, int device) {
    if (p == nullptr) return;
    std::lock_guard<std::mutex> lock(mutex_);
    DeviceCache& cache = cache_for(device);
    auto it = cache.live.find(p);
    if (it == cache.live.end())
      throw std::runtime_error("retikd::cuda::device_free: pointer was not allocated by device_malloc on device " +
                               std::to_string(device) + " (or was freed twice)");
    const std::size_t bucket = it->second;
    cache.live.erase(it);
    cache.allocated -= bucket;
    cache.free_blocks[bucket].push_back(p);
    cache.cached += bucket;
  }

  void release_all() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (std::size_t d = 0; d < caches_.size(); ++d) release_locked(static_cast<int>(d));
  }

  std::size_t cached(int device) {
    std::lock_guard<std::mutex> lock(mutex_);
    return device >= 0 && static_cast<std::size_t>(device) < caches_.size() ? caches_[device].cached : 0;
  }

  std::size_t allocated(int device) {
    std::lock_guard<std::mutex> lock(mutex_);
    return device >= 0 && static_cast<std::size_t>(device) < caches_.size() ? caches_[device].allocated : 0;
  }

 private:
  DeviceCache& cache_for(int device) {
    if (device < 0) throw std::runtime_error("retikd::cuda: negative device index " + std::to_string(device));
    if (static_cast<std::size_t>(device) >= caches_.size()) caches_.resize(static_cast<std::size_t>(device) + 1);
    return caches_[static_cast<std::size_t>(device)];
  }

  void release_locked(int device) {
    DeviceCache& cache = caches_[static_cast<std::size_t>(device)];
    if (cache.cached == 0) return;
    detail::DeviceGuard guard(device);
    for (auto& entry : cache.free_blocks)
      for (void* p : entry.second) RETIKD_CUDA_CHECK(cudaFree(p));
    cache.free_blocks.clear();
    cache.cached = 0;
  }

  std::mutex mutex_;
  std::vector<DeviceCache> caches_;
};

// Never destroyed: blocks still cached at exit belong to a context the driver tears down itself, and
// freeing them from a static destructor could run after the CUDA runtime has unloaded.
CachingAllocator& allocator() {
  static CachingAllocator* instance = new CachingAllocator();
  return *instance;
}

void copy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind, int device) {
  if (bytes == 0) return;
  if (dst == nullptr || src == nullptr) throw std::runtime_error("retikd::cuda: copy with a null pointer");
  detail::DeviceGuard guard(device);
  // Device to device: queued on the current stream like every kernel (cudaMemcpy does not wait for the host
  // there either), so it is ordered with them and can be captured into a CUDA graph; cudaMemcpy cannot.
  if (kind == cudaMemcpyDeviceToDevice)
    RETIKD_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, detail::current_stream()));
  else
    RETIKD_CUDA_CHECK(cudaMemcpy(dst, src, bytes, kind));
}

}  // namespace

int device_count() noexcept {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();  // no driver / no device: not an error for the caller, and must not stay pending
    return 0;
  }
  return count;
}

void* device_malloc(std::size_t bytes, int device) { return allocator().allocate(bytes, device); }
void device_free(void* p, int device) {
  detail::DeferredFrees* deferred = detail::deferred_frees_slot();
  if (deferred != nullptr && p != nullptr) {  // a graph capture on this thread may still reference the block
    deferred->emplace_back(p, device);
    return;
  }
  allocator().deallocate(p, device);
}
void empty_cache() { allocator().release_all(); }
std::size_t cached_bytes(int device) { return allocator().cached(device); }
std::size_t allocated_bytes(int device) { return allocator().allocated(device); }

void copy_host_to_device(void* dst, const void* src, std::size_t bytes, int device) {
  copy(dst, src, bytes, cudaMemcpyHostToDevice, device);
}
void copy_device_to_host(void* dst, const void* src, std::size_t bytes, int device) {
  copy(dst, src, bytes, cudaMemcpyDeviceToHost, device);
}
void copy_device_to_device(void* dst, const void* src, std::size_t bytes, int device) {
  copy(dst, src, bytes, cudaMemcpyDeviceToDevice, device);
}

void copy_2d_device_to_device(void* dst, std::size_t dpitch, const void* src, std::size_t spitch, std::size_t width,
                              std::size_t height, int device) {
  if (width == 0 || height == 0) return;
  if (dst == nullptr || src == nullptr) throw std::runtime_error("retikd::cuda: 2-D copy with a null pointer");
  detail::DeviceGuard guard(device);
  RETIKD_CUDA_CHECK(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, cudaMemcpyDeviceToDevice,
                                      detail::current_stream()));
}

void* event_create(int device) {
  detail::DeviceGuard guard(device);
  cudaEvent_t e = nullptr;
  RETIKD_CUDA_CHECK(cudaEventCreate(&e));
  return e;
}

void event_record(void* event, int device) {
  detail::DeviceGuard guard(device);
  RETIKD_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event), detail::current_stream()));
}

float event_elapsed_ms(void* start, void* end) {
  RETIKD_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(end)));
  float ms = 0.f;
  RETIKD_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(end)));
  return ms;
}

void event_destroy(void* event) noexcept {
  if (event) cudaEventDestroy(static_cast<cudaEvent_t>(event));
}

void synchronize(int device) {
  detail::DeviceGuard guard(device);
  RETIKD_CUDA_CHECK(cudaDeviceSynchronize());
  RETIKD_CUDA_CHECK(cudaGetLastError());
}

std::string device_name(int device) {
  detail::DeviceGuard guard(device);
  cudaDeviceProp prop;
  RETIKD_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return std::string(prop.name);
}

int compute_capability(int device) {
  detail::DeviceGuard guard(device);
  int major = 0;
  int minor = 0;
  RETIKD_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  RETIKD_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  return 10 * major + minor;
}

}  // namespace cuda
}  // namespace retikd
