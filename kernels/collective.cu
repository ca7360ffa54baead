// kernels/collective.cu — sum_parts_in_order (include/retikd/cuda/collective.hpp): the rank-order sum of the
// chunks dist::NcclGroup has gathered, one grid-stride pass, every element's parts added left to right so the
// result matches MpiGroup's host loop bit for bit (float adds are exact IEEE operations on both sides; no
// multiply to contract into an FMA). C++14, sm_53-safe (no half arithmetic: half parts are summed in float).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda_check.cuh"
#include "launch.cuh"
#include "retikd/cuda/collective.hpp"

namespace retikd {
namespace cuda {
namespace {

template <typename T>
__global__ void sum_parts_kernel(const T* parts, T* out, long long n, int count) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    T s = parts[i];
    for (int r = 1; r < count; ++r) s += parts[static_cast<long long>(r) * n + i];
    out[i] = s;
  }
}

__global__ void sum_parts_half_kernel(const __half* parts, __half* out, long long n, int count) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    float s = __half2float(parts[i]);
    for (int r = 1; r < count; ++r) s += __half2float(parts[static_cast<long long>(r) * n + i]);
    out[i] = __float2half_rn(s);
  }
}

}  // namespace

void sum_parts_in_order(const void* parts, void* out, int64_t n, int count, int dtype, int device, void* stream) {
  if (n < 0 || count < 1)
    throw std::invalid_argument("sum_parts_in_order: n " + std::to_string(n) + " and count " +
                                std::to_string(count) + " must be >= 0 and >= 1");
  if (n == 0) return;
  detail::DeviceGuard guard(device);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int threads = 256;
  const long long wanted = (static_cast<long long>(n) + threads - 1) / threads;
  const long long cap = static_cast<long long>(detail::current_sm_count()) * 8;
  const unsigned blocks = static_cast<unsigned>(wanted < cap ? wanted : cap);
  switch (dtype) {
    case kFloat32:
      sum_parts_kernel<float><<<blocks, threads, 0, s>>>(static_cast<const float*>(parts), static_cast<float*>(out), n,
                                                         count);
      break;
    case kFloat64:
      sum_parts_kernel<double><<<blocks, threads, 0, s>>>(static_cast<const double*>(parts), static_cast<double*>(out),
                                                          n, count);
      break;
    case kInt64:
      sum_parts_kernel<long long><<<blocks, threads, 0, s>>>(static_cast<const long long*>(parts),
                                                             static_cast<long long*>(out), n, count);
      break;
    case kFloat16:
      sum_parts_half_kernel<<<blocks, threads, 0, s>>>(static_cast<const __half*>(parts), static_cast<__half*>(out), n,
                                                       count);
      break;
    default:
      throw std::invalid_argument("sum_parts_in_order: dtype code " + std::to_string(dtype) +
                                  " (float32, float64, int64, float16 only)");
  }
  RETIKD_CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace retikd
