// kernels/softmax.cu — row softmax / log-softmax (include/retikd/cuda/softmax.hpp): one warp per row, lanes
// striding over the row, warp-shuffle reductions (max, then Σ exp(x − max) in fp32), so any row length works
// without shared memory. Why a warp per row: the rows of this project (classes, attention rows of ≤ 196) are
// short, and a block per row would idle most of its threads.
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda_check.cuh"
#include "launch.cuh"
#include "reduce.cuh"
#include "retikd/core/half.hpp"
#include "retikd/cuda/softmax.hpp"

namespace retikd {
namespace cuda {
namespace {

constexpr int kRowsPerBlock = 8;  // 8 warps of 32 lanes

__device__ inline float load_f(const float* p, int64_t i) { return p[i]; }
__device__ inline float load_f(const Half* p, int64_t i) { return static_cast<float>(p[i]); }
__device__ inline void store_f(float* p, int64_t i, float v) { p[i] = v; }
__device__ inline void store_f(Half* p, int64_t i, float v) { p[i] = Half(v); }

// the shared warp reductions (reduce.cuh)
__device__ inline float warp_max(float v) { return detail::warp_max_f(v); }
__device__ inline float warp_sum(float v) { return detail::warp_sum_f(v); }

template <class T>
__global__ void __launch_bounds__(256) softmax_kernel(const T* x, T* y, int64_t rows, int64_t n, bool log) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;  // whole warp leaves together (r is uniform per warp)
  const int64_t base = r * n;
  float m = -3.0e38f;
  for (int64_t j = lane; j < n; j += 32) m = fmaxf(m, load_f(x, base + j));
  m = warp_max(m);
  float s = 0.f;
  for (int64_t j = lane; j < n; j += 32) s += expf(load_f(x, base + j) - m);
  s = warp_sum(s);
  const float lse = m + logf(s), inv = 1.f / s;
  for (int64_t j = lane; j < n; j += 32) {
    const float v = load_f(x, base + j);
    store_f(y, base + j, log ? v - lse : expf(v - m) * inv);
  }
}

template <class T>
__global__ void __launch_bounds__(256) softmax_backward_kernel(const T* g, const T* y, T* gx, int64_t rows, int64_t n,
                                                             bool log) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;
  const int64_t base = r * n;
  float s = 0.f;
  for (int64_t j = lane; j < n; j += 32) s += log ? load_f(g, base + j) : load_f(g, base + j) * load_f(y, base + j);
  s = warp_sum(s);
  for (int64_t j = lane; j < n; j += 32) {
    const float gv = load_f(g, base + j), yv = load_f(y, base + j);
    store_f(gx, base + j, log ? gv - expf(yv) * s : yv * (gv - s));
  }
}

unsigned row_blocks(int64_t rows) {
  const int64_t b = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  if (b > 2147483647LL) throw std::invalid_argument("retikd::cuda::softmax: too many rows");
  return static_cast<unsigned>(b);
}

void check_args(const char* op, int64_t rows, int64_t n, int dtype) {
  if (rows < 0 || n < 0) throw std::invalid_argument(std::string(op) + ": negative size");
  if (dtype != kFloat32 && dtype != kFloat16)
    throw std::invalid_argument(std::string(op) + ": dtype " + std::to_string(dtype) + " is not float32 or float16");
}

}  // namespace

void softmax_rows(const void* x, void* y, int64_t rows, int64_t n, bool log, int dtype, int device) {
  check_args("retikd::cuda::softmax_rows", rows, n, dtype);
  if (rows == 0 || n == 0) return;
  detail::DeviceGuard guard(device);
  if (dtype == kFloat32)
    softmax_kernel<float><<<row_blocks(rows), 256, 0, detail::current_stream()>>>(static_cast<const float*>(x), static_cast<float*>(y), rows, n, log);
  else
    softmax_kernel<Half><<<row_blocks(rows), 256, 0, detail::current_stream()>>>(static_cast<const Half*>(x), static_cast<Half*>(y), rows, n, log);
  RETIKD_CUDA_CHECK_LAUNCH();
}

void softmax_rows_backward(const void* g, const void* y, void* gx, int64_t rows, int64_t n, bool log, int dtype,
                           int device) {
  check_args("retikd::cuda::softmax_rows_backward", rows, n, dtype);
  if (rows == 0 || n == 0) return;
  detail::DeviceGuard guard(device);
  if (dtype == kFloat32)
    softmax_backward_kernel<float><<<row_blocks(rows), 256, 0, detail::current_stream()>>>(static_cast<const float*>(g), static_cast<const float*>(y),
                                                            static_cast<float*>(gx), rows, n, log);
  else
    softmax_backward_kernel<Half><<<row_blocks(rows), 256, 0, detail::current_stream()>>>(static_cast<const Half*>(g), static_cast<const Half*>(y),
                                                           static_cast<Half*>(gx), rows, n, log);
  RETIKD_CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace retikd
