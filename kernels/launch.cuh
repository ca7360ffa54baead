// kernels/launch.cuh — what every kernel family shares on the host side of a launch: a guard that makes a
// device current for the duration of a launcher, the float32 / float16 dtype check and dispatch, and the one
// grid-stride launch helper that all elementwise-shaped kernels go through (tiny-cuda-nn style: the kernel is generic, the work is a small
// functor struct passed by value, so each family only writes `operator()(index)`).
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda_check.cuh"
#include "retikd/core/half.hpp"
#include "retikd/cuda/dtype_code.hpp"

namespace retikd {
namespace cuda {
namespace detail {

// Makes `device` current and restores the previous device on scope exit, so launchers never leak a
// cudaSetDevice into the caller's thread state.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    // The device count cannot change while the process runs: asked once (this guard runs on every launch).
    static const int count = [] {
      int n = 0;
      RETIKD_CUDA_CHECK(cudaGetDeviceCount(&n));
      return n;
    }();
    if (device < 0 || device >= count)
      throw std::runtime_error("retikd::cuda: device " + std::to_string(device) + " does not exist (" +
                               std::to_string(count) + " CUDA device(s) present)");
    RETIKD_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) {
      RETIKD_CUDA_CHECK(cudaSetDevice(device));
      changed_ = true;
    }
  }
  ~DeviceGuard() {
    if (changed_) cudaSetDevice(previous_);  // cannot throw from a destructor; the next call reports errors
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
  bool changed_ = false;
};

// The stream every launcher, cudaMemsetAsync and library handle of kernels/ uses on this thread: the legacy
// default stream (0) unless a graph capture (kernels/graph.cu) has made its private stream current. One
// function-local thread_local shared by every translation unit of the library (inline function).
inline cudaStream_t& current_stream_slot() {
  static thread_local cudaStream_t stream = nullptr;
  return stream;
}
inline cudaStream_t current_stream() { return current_stream_slot(); }

// Multiprocessor count of the current device, cached (the attribute query costs a driver call).
inline int current_sm_count() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cache[kMaxDevices];  // zero-initialised: 0 = not queried yet
  int device = 0;
  RETIKD_CUDA_CHECK(cudaGetDevice(&device));
  if (device >= 0 && device < kMaxDevices) {
    const int cached = cache[device].load(std::memory_order_relaxed);
    if (cached > 0) return cached;
  }
  int sms = 0;
  RETIKD_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  if (sms < 1) sms = 1;
  if (device >= 0 && device < kMaxDevices) cache[device].store(sms, std::memory_order_relaxed);
  return sms;
}

constexpr int kGridStrideThreads = 256;

// The generic kernel: every thread walks the index space with the grid's stride. Index is int32_t or
// uint32_t for the common case (64-bit integer division and multiplication are emulated on the GPU) and
// int64_t where a launcher needs it; launchers keep n + stride within Index's range.
template <typename Index, typename Work>
__global__ void __launch_bounds__(kGridStrideThreads) grid_stride_kernel(Index n, Work work) {
  const Index stride = static_cast<Index>(blockDim.x) * static_cast<Index>(gridDim.x);
  for (Index i = static_cast<Index>(blockIdx.x) * static_cast<Index>(blockDim.x) + static_cast<Index>(threadIdx.x);
       i < n; i += stride)
    work(i);
}

// Launches work(i) for i in [0, n) on the current device's current stream (see current_stream). The grid is capped at what the
// device keeps resident (8 blocks of 256 threads per SM: 2048 threads, the limit from sm_53 to sm_90), so
// large n reuse threads instead of queueing millions of blocks.
template <typename Index, typename Work>
void launch_grid_stride(Index n, const Work& work) {
  if (n <= 0) return;
  const long long wanted = (static_cast<long long>(n) + kGridStrideThreads - 1) / kGridStrideThreads;
  const long long cap = static_cast<long long>(current_sm_count()) * (2048 / kGridStrideThreads);
  const unsigned blocks = static_cast<unsigned>(wanted < cap ? wanted : cap);
  grid_stride_kernel<Index, Work><<<blocks, kGridStrideThreads, 0, current_stream()>>>(n, work);
  RETIKD_CUDA_CHECK_LAUNCH();
}

// The float32 / float16 check of the launchers whose kernels exist for those two dtypes only.
inline void check_float_dtype(const char* op, int dtype) {
  if (dtype != kFloat32 && dtype != kFloat16)
    throw std::invalid_argument(std::string(op) + ": dtype " + std::to_string(dtype) + " is not float32 or float16");
}

// launch_grid_stride with a 32-bit index, for element counts below 2^31 (every launcher of conv and the nn ops
// families; larger tensors are refused with a clear error rather than wrapped).
template <class Work>
void launch32(int64_t n, const Work& work) {
  if (n >= (1LL << 31)) throw std::invalid_argument("retikd::cuda: launch of 2^31 or more elements");
  launch_grid_stride<uint32_t>(static_cast<uint32_t>(n), work);
}

}  // namespace detail
}  // namespace cuda
}  // namespace retikd

// Runs the statement with T = float for float32 and T = Half for float16 (after check_float_dtype): the one
// dtype dispatch of the float-only kernel families.
#define RETIKD_FLOAT_DISPATCH(dtype, T, ...)               \
  do {                                                     \
    if ((dtype) == ::retikd::cuda::kFloat32) {             \
      using T = float;                                     \
      __VA_ARGS__;                                         \
    } else {                                               \
      using T = ::retikd::Half;                            \
      __VA_ARGS__;                                         \
    }                                                      \
  } while (0)
