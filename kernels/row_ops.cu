// kernels/row_ops.cu — affine maps, row reductions (sum / mean / NaN-propagating max) and their broadcast back
// (include/retikd/cuda/nn_ops.hpp). Short rows are one warp per row, long rows one block per row, few very long
// rows are cut into chunks of float partials folded per row in a fixed order (bitwise repeatable, no atomics).
#include "nn_common.cuh"

namespace retikd {
namespace cuda {
namespace {

using namespace nn_common;

// ---- affine, row reductions, broadcast -----------------------------------------------------------------------

template <class T>
struct Affine {
  const T* x;
  T* out;
  float alpha, beta;
  __device__ void operator()(uint32_t i) const { out[i] = from_f<T>(alpha * to_f(x[i]) + beta); }
};

template <class T>
__global__ void __launch_bounds__(kThreads) row_reduce_warp(const T* x, T* out, int64_t rows, int64_t n, int op,
                                                            float scale) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;
  const T* p = x + r * n;
  float acc = op == kRowMax ? -INFINITY : 0.f;
  for (int64_t j = lane; j < n; j += 32) acc = op == kRowMax ? nan_max(acc, to_f(p[j])) : acc + to_f(p[j]);
  acc = op == kRowMax ? warp_nan_max(acc) : detail::warp_sum_f(acc);
  if (lane == 0) out[r] = from_f<T>(op == kRowMax ? acc : acc * scale);
}

template <class T>
__global__ void __launch_bounds__(kThreads) row_reduce_block(const T* x, T* out, int64_t n, int op, float scale) {
  const T* p = x + static_cast<int64_t>(blockIdx.x) * n;
  float acc = op == kRowMax ? -INFINITY : 0.f;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) acc = op == kRowMax ? nan_max(acc, to_f(p[j])) : acc + to_f(p[j]);
  if (op == kRowMax) {
    __shared__ float best[kThreads];
    best[threadIdx.x] = acc;
    __syncthreads();
    for (int s = kThreads / 2; s > 0; s >>= 1) {
      if (static_cast<int>(threadIdx.x) < s) best[threadIdx.x] = nan_max(best[threadIdx.x], best[threadIdx.x + s]);
      __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = from_f<T>(best[0]);
  } else {
    const float s = detail::block_sum_f(acc);
    if (threadIdx.x == 0) out[blockIdx.x] = from_f<T>(s * scale);
  }
}

// Few long rows (a loss summed over everything: rows = 1, n = millions): one block per row would run on one
// SM. Each row is cut into `chunks` pieces of `chunk` elements, one block each, into float partials; then one
// warp per row folds its partials in a fixed order (bitwise repeatable, no atomics).
template <class T>
__global__ void __launch_bounds__(kThreads) row_reduce_chunks(const T* x, float* partials, int64_t n, int64_t chunk,
                                                              int op) {
  const int64_t r = blockIdx.y, p = blockIdx.x, chunks = gridDim.x;
  const T* row = x + r * n;
  const int64_t j1 = min(n, (p + 1) * chunk);
  float acc = op == kRowMax ? -INFINITY : 0.f;
  for (int64_t j = p * chunk + threadIdx.x; j < j1; j += blockDim.x)
    acc = op == kRowMax ? nan_max(acc, to_f(row[j])) : acc + to_f(row[j]);
  if (op == kRowMax) {
    __shared__ float best[32];
    acc = warp_nan_max(acc);
    if (threadIdx.x % 32 == 0) best[threadIdx.x / 32] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
      float m = best[0];
      for (int w = 1; w < kWarpsPerBlock; ++w) m = nan_max(m, best[w]);
      partials[r * chunks + p] = m;
    }
  } else {
    const float sum = detail::block_sum_f(acc);
    if (threadIdx.x == 0) partials[r * chunks + p] = sum;
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads) row_fold_partials(const float* partials, T* out, int64_t rows,
                                                              int64_t chunks, int op, float scale) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;
  float acc = op == kRowMax ? -INFINITY : 0.f;
  for (int64_t p = lane; p < chunks; p += 32) {
    const float v = partials[r * chunks + p];
    acc = op == kRowMax ? nan_max(acc, v) : acc + v;
  }
  acc = op == kRowMax ? warp_nan_max(acc) : detail::warp_sum_f(acc);
  if (lane == 0) out[r] = from_f<T>(op == kRowMax ? acc : acc * scale);
}

template <class T>
struct RowBroadcast {
  const T* g;
  T* gx;
  uint32_t n;
  float scale;
  __device__ void operator()(uint32_t i) const { gx[i] = from_f<T>(scale * to_f(g[i / n])); }
};

}  // namespace

void affine(const void* x, void* out, int64_t n, float alpha, float beta, int dtype, int device) {
  check_float_dtype("retikd::cuda::affine", dtype);
  check_sizes("retikd::cuda::affine", n >= 0);
  if (n == 0) return;
  detail::DeviceGuard guard(device);
  RETIKD_FLOAT_DISPATCH(dtype, T, launch32(n, Affine<T>{static_cast<const T*>(x), static_cast<T*>(out), alpha, beta}));
}

void reduce_rows(const void* x, void* out, int64_t rows, int64_t n, int op, float scale, int dtype, int device) {
  check_float_dtype("retikd::cuda::reduce_rows", dtype);
  check_sizes("retikd::cuda::reduce_rows", rows >= 0 && n >= 0 && (op == kRowSum || op == kRowMax));
  if (rows == 0) return;
  detail::DeviceGuard guard(device);
  // Short rows: a warp each; long rows: a block each; a few very long rows (a sum over everything): chunked.
  constexpr int64_t kChunk = 16 * kThreads * 4;
  if (n > 4 * kChunk && rows <= 256) {
    const int64_t chunks = std::min<int64_t>((n + kChunk - 1) / kChunk, 1024);
    const int64_t chunk = (n + chunks - 1) / chunks;
    detail::Scratch partials(static_cast<std::size_t>(rows * chunks) * sizeof(float), device);
    RETIKD_FLOAT_DISPATCH(dtype, T,
                       row_reduce_chunks<T><<<dim3(static_cast<unsigned>(chunks), static_cast<unsigned>(rows)),
                                              kThreads, 0, detail::current_stream()>>>(static_cast<const T*>(x),
                                                                                       partials.f(), n, chunk, op));
    RETIKD_CUDA_CHECK_LAUNCH();
    RETIKD_FLOAT_DISPATCH(dtype, T,
                       row_fold_partials<T><<<warp_row_blocks(rows), kThreads, 0, detail::current_stream()>>>(
                           partials.f(), static_cast<T*>(out), rows, chunks, op, scale));
    RETIKD_CUDA_CHECK_LAUNCH();
    return;
  }
  if (n <= 2048 || rows > 65535) {
    RETIKD_FLOAT_DISPATCH(dtype, T,
                       row_reduce_warp<T><<<warp_row_blocks(rows), kThreads, 0, detail::current_stream()>>>(static_cast<const T*>(x),
                                                                              static_cast<T*>(out), rows, n, op, scale));
  } else {
    RETIKD_FLOAT_DISPATCH(dtype, T,
                       row_reduce_block<T><<<static_cast<unsigned>(rows), kThreads, 0, detail::current_stream()>>>(static_cast<const T*>(x),
                                                                                      static_cast<T*>(out), n, op,
                                                                                      scale));
  }
  RETIKD_CUDA_CHECK_LAUNCH();
}

void row_broadcast(const void* g, void* gx, int64_t rows, int64_t n, float scale, int dtype, int device) {
  check_float_dtype("retikd::cuda::row_broadcast", dtype);
  check_sizes("retikd::cuda::row_broadcast", rows >= 0 && n >= 0 && n < (1LL << 31));
  if (rows * n == 0) return;
  detail::DeviceGuard guard(device);
  RETIKD_FLOAT_DISPATCH(dtype, T,
                     launch32(rows * n, RowBroadcast<T>{static_cast<const T*>(g), static_cast<T*>(gx),
                                                        static_cast<uint32_t>(n), scale}));
}

}  // namespace cuda
}  // namespace retikd
