// retikd/cuda/runtime.hpp — the device runtime the tensors use: device discovery, a caching device
// allocator, copies and synchronisation. Implemented in kernels/runtime.cu (retikd::cuda).
//
// C++14 and free of CUDA types: host C++17 code includes this without nvcc or the CUDA headers. Every
// function takes the device index explicitly and leaves the calling thread's current device as it was.
// Errors throw std::runtime_error naming the CUDA call, file:line and the CUDA error string.
#pragma once

#include <cstddef>
#include <string>

namespace retikd {
namespace cuda {

// Number of usable CUDA devices; 0 when there is no driver, no GPU or any other error. Never throws.
int device_count() noexcept;

// Caching allocator: blocks are rounded up to size buckets and kept in per-device free lists after
// device_free, so steady-state training allocates nothing from the driver. cudaMalloc runs only on a miss;
// when it runs out of memory the device's cache is released and the allocation retried once, then
// std::runtime_error names the size and the device. device_malloc(0, d) returns nullptr.
void* device_malloc(std::size_t bytes, int device);
// Returns p (from device_malloc on the same device) to the cache; nullptr is ignored. Throws
// std::runtime_error for a pointer this allocator does not own.
void device_free(void* p, int device);
// Releases every cached (free) block on every device to the driver; blocks in use are untouched.
void empty_cache();
// Bytes held in the free lists of `device` (for tests and memory reports).
std::size_t cached_bytes(int device);
// Bytes handed out by device_malloc and not yet freed on `device` (bucket-rounded sizes).
std::size_t allocated_bytes(int device);

// Host ↔ device: synchronous copies (cudaMemcpy) on `device`. Device → device: queued on the current stream
// (cudaMemcpyAsync), ordered with the kernels and capturable into a CUDA graph. bytes == 0 does nothing.
void copy_host_to_device(void* dst, const void* src, std::size_t bytes, int device);
void copy_device_to_host(void* dst, const void* src, std::size_t bytes, int device);
void copy_device_to_device(void* dst, const void* src, std::size_t bytes, int device);

// height rows of width bytes from src (row pitch spitch) to dst (row pitch dpitch), both on `device`,
// asynchronously on the current stream (cudaMemcpy2DAsync): concatenation along an inner dimension.
void copy_2d_device_to_device(void* dst, std::size_t dpitch, const void* src, std::size_t spitch, std::size_t width,
                              std::size_t height, int device);

// CUDA events on the current stream of `device`, for timing host-driven sequences of launches
// (retikd/autograd/gpu_op_profiler.hpp). event_elapsed_ms waits for `end`.
void* event_create(int device);
void event_record(void* event, int device);
float event_elapsed_ms(void* start, void* end);
void event_destroy(void* event) noexcept;

// Waits for all work on `device`, then reports any asynchronous error a kernel left behind.
void synchronize(int device);

// Device name as the driver reports it, e.g. "NVIDIA Tegra X1" or "NVIDIA H100 80GB HBM3".
std::string device_name(int device);
// 10 * major + minor, e.g. 53 (Jetson Nano), 90 (H100).
int compute_capability(int device);

}  // namespace cuda
}  // namespace retikd
