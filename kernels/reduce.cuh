// kernels/reduce.cuh — the warp and block reductions the kernel families share: warp sum, max and NaN-propagating
// max, and the block-wide float sum of the channel, row and tap reductions (kernels/conv.cu and the nn families:
// warp shuffles, then one partial per warp through 32 floats of shared memory).
// Fixed order for a fixed block size, so repeated runs give bitwise-identical results (no atomics).
#pragma once

#include <cuda_runtime.h>

namespace retikd {
namespace cuda {
namespace detail {

__device__ inline float warp_sum_f(float v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

__device__ inline float warp_max_f(float v) {
  for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}
// NaN-propagating max (the CPU's `v > best || v != v`): fmaxf would drop NaN.
__device__ inline float nan_max(float a, float b) { return (b > a || b != b) ? b : a; }
__device__ inline float warp_nan_max(float v) {
  for (int off = 16; off > 0; off >>= 1) v = nan_max(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}

// Sum of v over the block (blockDim.x a multiple of 32, at most 1024); the result is valid in every thread.
// Contains barriers: every thread of the block must call it.
__device__ inline float block_sum_f(float v) {
  __shared__ float partial[32];
  __shared__ float total;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_sum_f(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float s = lane < warps ? partial[lane] : 0.f;
    s = warp_sum_f(s);
    if (lane == 0) total = s;
  }
  __syncthreads();
  const float r = total;
  __syncthreads();  // partial / total may be reused by the next call
  return r;
}

}  // namespace detail
}  // namespace cuda
}  // namespace retikd
