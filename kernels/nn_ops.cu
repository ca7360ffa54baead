// kernels/nn_ops.cu — reductions, batch / layer norm, max pool, bilinear resize and the KL / cross-entropy
// row kernels (include/retikd/cuda/nn_ops.hpp). Shapes of work: elementwise-shaped passes go through the
// shared grid-stride helper (launch.cuh); per-channel statistics are a (chunks, channels) grid of 256-thread
// blocks folded per channel in a fixed order (reduce.cuh); per-row work over short rows (classes, LayerNorm
// features, pooled planes) is one warp per row, as in softmax.cu. Pool and resize index math comes from
// retikd/cuda/op_programs.hpp (run on the CPU by tests/test_cuda_programs.cpp).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda_check.cuh"
#include "launch.cuh"
#include "reduce.cuh"
#include "scratch.cuh"
#include "retikd/core/half.hpp"
#include "retikd/cuda/nn_ops.hpp"
#include "retikd/cuda/op_programs.hpp"
#include "retikd/cuda/runtime.hpp"

namespace retikd {
namespace cuda {
namespace {

using prog::from_f;
using prog::to_f;

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;

void check_dtype(const char* op, int dtype) {
  if (dtype != kFloat32 && dtype != kFloat16)
    throw std::invalid_argument(std::string(op) + ": dtype " + std::to_string(dtype) + " is not float32 or float16");
}
void check_sizes(const char* op, bool ok) {
  if (!ok) throw std::invalid_argument(std::string(op) + ": invalid or too large sizes");
}

template <class Work>
void launch32(int64_t n, const Work& work) {
  if (n >= (1LL << 31)) throw std::invalid_argument("retikd::cuda::nn_ops: launch of 2^31 or more elements");
  detail::launch_grid_stride<uint32_t>(static_cast<uint32_t>(n), work);
}

unsigned warp_row_blocks(int64_t rows) {
  const int64_t b = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (b > 2147483647LL) throw std::invalid_argument("retikd::cuda::nn_ops: too many rows");
  return static_cast<unsigned>(b);
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

// Calls DISPATCH<float> or DISPATCH<Half> on the dtype.
#define RETIKD_NN_DISPATCH(dtype, T, ...) \
  do {                                    \
    if ((dtype) == kFloat32) {            \
      using T = float;                    \
      __VA_ARGS__;                        \
    } else {                              \
      using T = Half;                     \
      __VA_ARGS__;                        \
    }                                     \
  } while (0)

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

// ---- batch norm ------------------------------------------------------------------------------------------------

// Channel statistics over (N, S) with a (chunks, C) grid: block (p, c) reduces elements [p·chunk, (p+1)·chunk)
// of channel c's N·S values into a float partial; one warp per channel then folds its partials in a fixed
// order. One block per channel (the first version) ran 32 blocks on 132 SMs at MobileNetV2's 112² layers and
// took 11 ms of a 40 ms training step on an H100. Element j of the channel is x[(n·C + c)·S + s], j = n·S + s
// (32-bit index math: the channel's N·S must be < 2³¹).
// Pass 1 (mean == nullptr): Σ x. Pass 2: Σ (x − mean)², the CPU op's two-pass variance (no cancellation).
template <class T>
__global__ void __launch_bounds__(kThreads) bn_partial_kernel(const T* x, uint32_t C, uint32_t S, uint32_t M,
                                                              uint32_t chunk, const float* mean, float* partials) {
  const uint32_t p = blockIdx.x, c = blockIdx.y, chunks = gridDim.x;
  const uint32_t j1 = min(M, (p + 1) * chunk);
  const float m = mean ? mean[c] : 0.f;
  float acc = 0.f;
  for (uint32_t j = p * chunk + threadIdx.x; j < j1; j += blockDim.x) {
    const uint32_t n = j / S, sp = j - n * S;
    const float v = to_f(x[(static_cast<int64_t>(n) * C + c) * S + sp]);
    acc += mean ? (v - m) * (v - m) : v;
  }
  acc = detail::block_sum_f(acc);
  if (threadIdx.x == 0) partials[static_cast<int64_t>(c) * chunks + p] = acc;
}

__device__ inline float fold_channel(const float* partials, uint32_t c, uint32_t chunks, int lane) {
  float acc = 0.f;
  for (uint32_t p = lane; p < chunks; p += 32) acc += partials[static_cast<int64_t>(c) * chunks + p];
  return detail::warp_sum_f(acc);
}

// One warp per channel. Pass 1 writes save_mean; pass 2 the inverse std and the running statistics.
__global__ void __launch_bounds__(kThreads) bn_fold_kernel(const float* partials, uint32_t C, uint32_t chunks,
                                                           uint32_t M, bool second, float* running_mean,
                                                           float* running_var, float* save_mean, float* save_invstd,
                                                           float momentum, float eps) {
  const uint32_t c = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (c >= C) return;
  const float total = fold_channel(partials, c, chunks, lane);
  if (lane != 0) return;
  if (!second) {
    save_mean[c] = total / static_cast<float>(M);
    return;
  }
  const float var = total / static_cast<float>(M);
  save_invstd[c] = 1.f / sqrtf(var + eps);
  if (running_mean) {
    const float unbiased = var * static_cast<float>(M) / static_cast<float>(M - 1);
    running_mean[c] = (1.f - momentum) * running_mean[c] + momentum * save_mean[c];
    running_var[c] = (1.f - momentum) * running_var[c] + momentum * unbiased;
  }
}

// Chunks per channel: enough blocks to fill the card (≈ 8 per SM on 132 SMs) without partials of a few
// elements; at most 1024.
inline uint32_t bn_chunks(int64_t C, int64_t M) {
  constexpr int64_t kMinChunk = 4 * kThreads;
  const int64_t want_blocks = 1024;
  int64_t chunks = (want_blocks + C - 1) / C;
  chunks = std::min<int64_t>(chunks, (M + kMinChunk - 1) / kMinChunk);
  return static_cast<uint32_t>(std::max<int64_t>(1, std::min<int64_t>(chunks, 1024)));
}

struct BnEvalStats {
  const float* running_mean;
  const float* running_var;
  float* save_mean;
  float* save_invstd;
  float eps;
  __device__ void operator()(uint32_t c) const {
    save_mean[c] = running_mean[c];
    save_invstd[c] = 1.f / sqrtf(running_var[c] + eps);
  }
};

template <class T>
struct BnApply {
  const T* x;
  const T* w;
  const T* b;
  const float* mean;
  const float* invstd;
  T* y;
  uint32_t C, S;
  __device__ void operator()(uint32_t i) const {
    const uint32_t c = (i / S) % C;
    const float wc = w ? to_f(w[c]) : 1.f, bc = b ? to_f(b[c]) : 0.f;
    const float scale = wc * invstd[c], shift = bc - mean[c] * scale;
    y[i] = from_f<T>(to_f(x[i]) * scale + shift);
  }
};

// Per channel: Σ g and Σ g·(x − mean), with the same (chunks, C) grid as the statistics: block partials into
// partials[2·(c·chunks + p) + {0, 1}], folded by bn_backward_fold into sums[2c], sums[2c + 1] (and gw / gb).
template <class T>
__global__ void __launch_bounds__(kThreads) bn_backward_partial(const T* g, const T* x, const float* mean, uint32_t C,
                                                                uint32_t S, uint32_t M, uint32_t chunk,
                                                                float* partials) {
  const uint32_t p = blockIdx.x, c = blockIdx.y, chunks = gridDim.x;
  const uint32_t j1 = min(M, (p + 1) * chunk);
  const float m = mean[c];
  float sg = 0.f, sgd = 0.f;
  for (uint32_t j = p * chunk + threadIdx.x; j < j1; j += blockDim.x) {
    const uint32_t n = j / S, sp = j - n * S;
    const int64_t k = (static_cast<int64_t>(n) * C + c) * S + sp;
    const float gv = to_f(g[k]);
    sg += gv;
    sgd += gv * (to_f(x[k]) - m);
  }
  sg = detail::block_sum_f(sg);
  sgd = detail::block_sum_f(sgd);
  if (threadIdx.x == 0) {
    const int64_t at = 2 * (static_cast<int64_t>(c) * chunks + p);
    partials[at] = sg;
    partials[at + 1] = sgd;
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads) bn_backward_fold(const float* partials, uint32_t C, uint32_t chunks,
                                                             const float* invstd, float* sums, T* gw, T* gb) {
  const uint32_t c = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (c >= C) return;
  float sg = 0.f, sgd = 0.f;
  for (uint32_t p = lane; p < chunks; p += 32) {
    const int64_t at = 2 * (static_cast<int64_t>(c) * chunks + p);
    sg += partials[at];
    sgd += partials[at + 1];
  }
  sg = detail::warp_sum_f(sg);
  sgd = detail::warp_sum_f(sgd);
  if (lane == 0) {
    sums[2 * c] = sg;
    sums[2 * c + 1] = sgd;
    if (gw) gw[c] = from_f<T>(sgd * invstd[c]);
    if (gb) gb[c] = from_f<T>(sg);
  }
}

template <class T>
struct BnBackwardInput {
  const T* g;
  const T* x;
  const T* w;
  const float* mean;
  const float* invstd;
  const float* sums;
  T* gx;
  uint32_t C, S;
  float inv_M;
  bool training;
  __device__ void operator()(uint32_t i) const {
    const uint32_t c = (i / S) % C;
    const float is = invstd[c], k = (w ? to_f(w[c]) : 1.f) * is;
    const float mean_g = training ? sums[2 * c] * inv_M : 0.f;
    const float proj = training ? is * is * sums[2 * c + 1] * inv_M : 0.f;
    gx[i] = from_f<T>(k * (to_f(g[i]) - mean_g - (to_f(x[i]) - mean[c]) * proj));
  }
};

// ---- layer norm (one warp per row) --------------------------------------------------------------------------

template <class T>
__global__ void __launch_bounds__(kThreads) ln_forward_kernel(const T* x, const T* w, const T* b, float* save_mean,
                                                              float* save_invstd, T* y, int64_t R, int64_t D,
                                                              float eps) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= R) return;
  const T* xr = x + r * D;
  float s = 0.f;
  for (int64_t j = lane; j < D; j += 32) s += to_f(xr[j]);
  const float mean = detail::warp_sum_f(s) / static_cast<float>(D);
  float q = 0.f;
  for (int64_t j = lane; j < D; j += 32) {
    const float d = to_f(xr[j]) - mean;
    q += d * d;
  }
  const float invstd = 1.f / sqrtf(detail::warp_sum_f(q) / static_cast<float>(D) + eps);
  if (lane == 0) {
    save_mean[r] = mean;
    save_invstd[r] = invstd;
  }
  T* yr = y + r * D;
  for (int64_t j = lane; j < D; j += 32)
    yr[j] = from_f<T>((to_f(xr[j]) - mean) * invstd * (w ? to_f(w[j]) : 1.f) + (b ? to_f(b[j]) : 0.f));
}

template <class T>
__global__ void __launch_bounds__(kThreads) ln_backward_input_kernel(const T* g, const T* x, const T* w,
                                                                     const float* mean, const float* invstd, T* gx,
                                                                     int64_t R, int64_t D) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= R) return;
  const T* xr = x + r * D;
  const T* gr = g + r * D;
  const float m = mean[r], is = invstd[r];
  float sg = 0.f, sgx = 0.f;  // Σ ĝ, Σ ĝ·x̂ with ĝ = g·w
  for (int64_t j = lane; j < D; j += 32) {
    const float gh = to_f(gr[j]) * (w ? to_f(w[j]) : 1.f);
    sg += gh;
    sgx += gh * (to_f(xr[j]) - m) * is;
  }
  const float mg = detail::warp_sum_f(sg) / static_cast<float>(D), mgx = detail::warp_sum_f(sgx) / static_cast<float>(D);
  T* out = gx + r * D;
  for (int64_t j = lane; j < D; j += 32) {
    const float gh = to_f(gr[j]) * (w ? to_f(w[j]) : 1.f);
    out[j] = from_f<T>(is * (gh - mg - (to_f(xr[j]) - m) * is * mgx));
  }
}

// gw[d] = Σ_r g·x̂, gb[d] = Σ_r g: one thread per feature, coalesced across features.
template <class T>
struct LnBackwardParams {
  const T* g;
  const T* x;
  const float* mean;
  const float* invstd;
  T* gw;
  T* gb;
  int64_t R, D;
  __device__ void operator()(uint32_t d) const {
    float sw = 0.f, sb = 0.f;
    for (int64_t r = 0; r < R; ++r) {
      const float gv = to_f(g[r * D + d]);
      sb += gv;
      sw += gv * (to_f(x[r * D + d]) - mean[r]) * invstd[r];
    }
    if (gw) gw[d] = from_f<T>(sw);
    if (gb) gb[d] = from_f<T>(sb);
  }
};

// ---- max pool, bilinear ---------------------------------------------------------------------------------------

template <class T>
struct MaxPoolForward {
  Pool2dDims d;
  const T* x;
  T* y;
  int64_t* idx;
  __device__ void operator()(uint32_t i) const {
    int64_t a = 0;
    y[i] = from_f<T>(prog::maxpool_output<T, uint32_t>(d, x, i, &a));
    idx[i] = a;
  }
};

template <class T>
struct MaxPoolScatter {
  const T* gy;
  const int64_t* idx;
  float* acc;
  uint32_t in_plane, out_plane;
  __device__ void operator()(uint32_t i) const {
    atomicAdd(acc + static_cast<uint64_t>(i / out_plane) * in_plane + idx[i], to_f(gy[i]));
  }
};

template <class T>
struct BilinearForward {
  const T* x;
  T* y;
  int H, W, OH, OW;
  bool align;
  __device__ void operator()(uint32_t i) const {
    y[i] = from_f<T>(prog::bilinear_output<T, uint32_t>(H, W, OH, OW, align, x, i));
  }
};

// Each output gradient scattered onto its four taps (float atomics into a float32 plane buffer).
template <class T>
struct BilinearScatter {
  const T* gy;
  float* acc;
  int H, W, OH, OW;
  bool align;
  __device__ void operator()(uint32_t i) const {
    const int ow = static_cast<int>(i % static_cast<uint32_t>(OW));
    const uint32_t t = i / static_cast<uint32_t>(OW);
    const int oh = static_cast<int>(t % static_cast<uint32_t>(OH));
    const uint32_t p = t / static_cast<uint32_t>(OH);
    const prog::LinearTap th = prog::linear_tap(H, OH, align, oh), tw = prog::linear_tap(W, OW, align, ow);
    const float g = to_f(gy[i]);
    float* a = acc + static_cast<uint64_t>(p) * H * W;
    atomicAdd(a + th.i0 * W + tw.i0, th.l0 * tw.l0 * g);
    atomicAdd(a + th.i0 * W + tw.i1, th.l0 * tw.l1 * g);
    atomicAdd(a + th.i1 * W + tw.i0, th.l1 * tw.l0 * g);
    atomicAdd(a + th.i1 * W + tw.i1, th.l1 * tw.l1 * g);
  }
};

struct FloatToHalf {
  const float* src;
  Half* dst;
  __device__ void operator()(uint32_t i) const { dst[i] = Half(src[i]); }
};

// ---- KL and cross-entropy rows (one warp per row, float32) ---------------------------------------------------

__global__ void __launch_bounds__(kThreads) kl_forward_kernel(const float* s, const float* t, float* terms,
                                                              float* lse_s, float* lse_t, int64_t R, int64_t C,
                                                              float inv_tau) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= R) return;
  const float* sr = s + r * C;
  const float* tr = t + r * C;
  float ms = -INFINITY, mt = -INFINITY;
  for (int64_t c = lane; c < C; c += 32) {
    ms = fmaxf(ms, sr[c] * inv_tau);
    mt = fmaxf(mt, tr[c] * inv_tau);
  }
  ms = warp_max_f(ms);
  mt = warp_max_f(mt);
  float ss = 0.f, st = 0.f;
  for (int64_t c = lane; c < C; c += 32) {
    ss += expf(sr[c] * inv_tau - ms);
    st += expf(tr[c] * inv_tau - mt);
  }
  const float ls = ms + logf(detail::warp_sum_f(ss)), lt = mt + logf(detail::warp_sum_f(st));
  if (lane == 0) {
    lse_s[r] = ls;
    lse_t[r] = lt;
  }
  for (int64_t c = lane; c < C; c += 32) {
    const float log_p = tr[c] * inv_tau - lt, log_q = sr[c] * inv_tau - ls;
    const float p = expf(log_p);
    terms[r * C + c] = p == 0.f ? 0.f : p * (log_p - log_q);
  }
}

__global__ void __launch_bounds__(kThreads) kl_backward_kernel(const float* s, const float* t, const float* lse_s,
                                                               const float* lse_t, const float* G, float* gs,
                                                               float* gt, int64_t R, int64_t C, float inv_tau) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= R) return;
  const float* sr = s + r * C;
  const float* tr = t + r * C;
  const float* Gr = G + r * C;
  float sum_gp = 0.f, sum_gpl = 0.f;
  for (int64_t c = lane; c < C; c += 32) {
    const float log_p = tr[c] * inv_tau - lse_t[r];
    const float p = expf(log_p);
    if (p == 0.f) continue;
    sum_gp += Gr[c] * p;
    sum_gpl += Gr[c] * p * (log_p - (sr[c] * inv_tau - lse_s[r]) + 1.f);
  }
  sum_gp = detail::warp_sum_f(sum_gp);
  sum_gpl = detail::warp_sum_f(sum_gpl);
  for (int64_t c = lane; c < C; c += 32) {
    const float log_p = tr[c] * inv_tau - lse_t[r], log_q = sr[c] * inv_tau - lse_s[r];
    const float p = expf(log_p);
    if (gs) gs[r * C + c] = inv_tau * (expf(log_q) * sum_gp - Gr[c] * p);
    if (gt) gt[r * C + c] = p == 0.f ? 0.f : inv_tau * p * (Gr[c] * (log_p - log_q + 1.f) - sum_gpl);
  }
}

__global__ void __launch_bounds__(kThreads) ce_forward_kernel(const float* z, const int64_t* targets,
                                                              const float* weight, float* lse, float* per_row,
                                                              int64_t N, int64_t C, float eps, int64_t ignore) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (i >= N) return;
  const float* zr = z + i * C;
  float m = -INFINITY;
  for (int64_t c = lane; c < C; c += 32) m = fmaxf(m, zr[c]);
  m = warp_max_f(m);
  float s = 0.f;
  for (int64_t c = lane; c < C; c += 32) s += expf(zr[c] - m);
  const float l = m + logf(detail::warp_sum_f(s));
  const int64_t t = targets[i];
  float smooth = 0.f;
  if (eps != 0.f && t != ignore)
    for (int64_t c = lane; c < C; c += 32) smooth += (weight ? weight[c] : 1.f) * (l - zr[c]);
  smooth = detail::warp_sum_f(smooth);
  if (lane != 0) return;
  lse[i] = l;
  if (t == ignore) {
    per_row[i] = 0.f;
    return;
  }
  const float wt = weight ? weight[t] : 1.f;
  float loss = (1.f - eps) * wt * (l - zr[t]);
  if (eps != 0.f) loss += eps / static_cast<float>(C) * smooth;
  per_row[i] = loss;
}

__global__ void __launch_bounds__(kThreads) ce_backward_kernel(const float* g, bool per_row, float inv_den,
                                                               const float* z, const float* lse,
                                                               const int64_t* targets, const float* weight,
                                                               float weight_sum, float* gx, int64_t N, int64_t C,
                                                               float eps, int64_t ignore) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (i >= N) return;
  float* out = gx + i * C;
  const int64_t t = targets[i];
  if (t == ignore) {
    for (int64_t c = lane; c < C; c += 32) out[c] = 0.f;
    return;
  }
  const float k = per_row ? g[i] : g[0] * inv_den;
  const float* zr = z + i * C;
  const float wt = weight ? weight[t] : 1.f, eps_c = eps / static_cast<float>(C);
  const float p_coeff = (1.f - eps) * wt + eps_c * weight_sum;
  for (int64_t c = lane; c < C; c += 32) {
    const float p = expf(zr[c] - lse[i]);
    float v = k * (p * p_coeff - eps_c * (weight ? weight[c] : 1.f));
    if (c == t) v -= k * (1.f - eps) * wt;
    out[c] = v;
  }
}

}  // namespace

void affine(const void* x, void* out, int64_t n, float alpha, float beta, int dtype, int device) {
  check_dtype("retikd::cuda::affine", dtype);
  check_sizes("retikd::cuda::affine", n >= 0);
  if (n == 0) return;
  detail::DeviceGuard guard(device);
  RETIKD_NN_DISPATCH(dtype, T, launch32(n, Affine<T>{static_cast<const T*>(x), static_cast<T*>(out), alpha, beta}));
}

void reduce_rows(const void* x, void* out, int64_t rows, int64_t n, int op, float scale, int dtype, int device) {
  check_dtype("retikd::cuda::reduce_rows", dtype);
  check_sizes("retikd::cuda::reduce_rows", rows >= 0 && n >= 0 && (op == kRowSum || op == kRowMax));
  if (rows == 0) return;
  detail::DeviceGuard guard(device);
  // Short rows: a warp each; long rows: a block each; a few very long rows (a sum over everything): chunked.
  constexpr int64_t kChunk = 16 * kThreads * 4;
  if (n > 4 * kChunk && rows <= 256) {
    const int64_t chunks = std::min<int64_t>((n + kChunk - 1) / kChunk, 1024);
    const int64_t chunk = (n + chunks - 1) / chunks;
    detail::Scratch partials(static_cast<std::size_t>(rows * chunks) * sizeof(float), device);
    RETIKD_NN_DISPATCH(dtype, T,
                       row_reduce_chunks<T><<<dim3(static_cast<unsigned>(chunks), static_cast<unsigned>(rows)),
                                              kThreads, 0, detail::current_stream()>>>(static_cast<const T*>(x),
                                                                                       partials.f(), n, chunk, op));
    RETIKD_CUDA_CHECK_LAUNCH();
    RETIKD_NN_DISPATCH(dtype, T,
                       row_fold_partials<T><<<warp_row_blocks(rows), kThreads, 0, detail::current_stream()>>>(
                           partials.f(), static_cast<T*>(out), rows, chunks, op, scale));
    RETIKD_CUDA_CHECK_LAUNCH();
    return;
  }
  if (n <= 2048 || rows > 65535) {
    RETIKD_NN_DISPATCH(dtype, T,
                       row_reduce_warp<T><<<warp_row_blocks(rows), kThreads, 0, detail::current_stream()>>>(static_cast<const T*>(x),
                                                                              static_cast<T*>(out), rows, n, op, scale));
  } else {
    RETIKD_NN_DISPATCH(dtype, T,
                       row_reduce_block<T><<<static_cast<unsigned>(rows), kThreads, 0, detail::current_stream()>>>(static_cast<const T*>(x),
                                                                                      static_cast<T*>(out), n, op,
                                                                                      scale));
  }
  RETIKD_CUDA_CHECK_LAUNCH();
}

void row_broadcast(const void* g, void* gx, int64_t rows, int64_t n, float scale, int dtype, int device) {
  check_dtype("retikd::cuda::row_broadcast", dtype);
  check_sizes("retikd::cuda::row_broadcast", rows >= 0 && n >= 0 && n < (1LL << 31));
  if (rows * n == 0) return;
  detail::DeviceGuard guard(device);
  RETIKD_NN_DISPATCH(dtype, T,
                     launch32(rows * n, RowBroadcast<T>{static_cast<const T*>(g), static_cast<T*>(gx),
                                                        static_cast<uint32_t>(n), scale}));
}

void batch_norm_forward(const void* x, const void* weight, const void* bias, float* running_mean,
                        float* running_var, float* save_mean, float* save_invstd, void* y, int64_t N, int64_t C,
                        int64_t S, bool training, float momentum, float eps, int dtype, int device) {
  check_dtype("retikd::cuda::batch_norm_forward", dtype);
  check_sizes("retikd::cuda::batch_norm_forward", N >= 0 && C > 0 && S >= 0 && C <= 65535 &&
                                                      N * S < (1LL << 31) && (!training || N * S > 1) &&
                                                      (training || running_mean));
  detail::DeviceGuard guard(device);
  if (training) {
    const int64_t M = N * S;
    const uint32_t chunks = bn_chunks(C, M);
    const uint32_t chunk = static_cast<uint32_t>((M + chunks - 1) / chunks);
    detail::Scratch partials(static_cast<std::size_t>(C * chunks) * sizeof(float), device);
    const dim3 grid(chunks, static_cast<unsigned>(C));
    const unsigned fold_blocks = warp_row_blocks(C);
    for (int pass = 0; pass < 2; ++pass) {
      RETIKD_NN_DISPATCH(dtype, T,
                         bn_partial_kernel<T><<<grid, kThreads, 0, detail::current_stream()>>>(
                             static_cast<const T*>(x), static_cast<uint32_t>(C), static_cast<uint32_t>(S),
                             static_cast<uint32_t>(M), chunk, pass == 0 ? nullptr : save_mean, partials.f()));
      RETIKD_CUDA_CHECK_LAUNCH();
      bn_fold_kernel<<<fold_blocks, kThreads, 0, detail::current_stream()>>>(
          partials.f(), static_cast<uint32_t>(C), chunks, static_cast<uint32_t>(M), pass == 1, running_mean,
          running_var, save_mean, save_invstd, momentum, eps);
      RETIKD_CUDA_CHECK_LAUNCH();
    }
  } else {
    launch32(C, BnEvalStats{running_mean, running_var, save_mean, save_invstd, eps});
  }
  RETIKD_NN_DISPATCH(dtype, T,
                     launch32(N * C * S, BnApply<T>{static_cast<const T*>(x), static_cast<const T*>(weight),
                                                    static_cast<const T*>(bias), save_mean, save_invstd,
                                                    static_cast<T*>(y), static_cast<uint32_t>(C),
                                                    static_cast<uint32_t>(S)}));
}

void batch_norm_backward(const void* g, const void* x, const void* weight, const float* save_mean,
                         const float* save_invstd, void* gx, void* gw, void* gb, int64_t N, int64_t C, int64_t S,
                         bool training, int dtype, int device) {
  check_dtype("retikd::cuda::batch_norm_backward", dtype);
  check_sizes("retikd::cuda::batch_norm_backward",
              N >= 0 && C > 0 && S >= 0 && C <= 65535 && N * S < (1LL << 31));
  detail::DeviceGuard guard(device);
  const int64_t M = N * S;
  const uint32_t chunks = bn_chunks(C, M);
  const uint32_t chunk = static_cast<uint32_t>(std::max<int64_t>(1, (M + chunks - 1) / chunks));
  // sums (2·C floats) then the block partials (2·C·chunks floats), one allocation
  detail::Scratch buffer(static_cast<std::size_t>(2 * C + 2 * C * static_cast<int64_t>(chunks)) * sizeof(float),
                         device);
  float* sums = buffer.f();
  float* partials = sums + 2 * C;
  RETIKD_NN_DISPATCH(dtype, T,
                     bn_backward_partial<T><<<dim3(chunks, static_cast<unsigned>(C)), kThreads, 0,
                                              detail::current_stream()>>>(
                         static_cast<const T*>(g), static_cast<const T*>(x), save_mean, static_cast<uint32_t>(C),
                         static_cast<uint32_t>(S), static_cast<uint32_t>(M), chunk, partials));
  RETIKD_CUDA_CHECK_LAUNCH();
  RETIKD_NN_DISPATCH(dtype, T,
                     bn_backward_fold<T><<<warp_row_blocks(C), kThreads, 0, detail::current_stream()>>>(
                         partials, static_cast<uint32_t>(C), chunks, save_invstd, sums, static_cast<T*>(gw),
                         static_cast<T*>(gb)));
  RETIKD_CUDA_CHECK_LAUNCH();
  if (gx) {
    const float inv_M = N * S > 0 ? 1.f / static_cast<float>(N * S) : 0.f;
    RETIKD_NN_DISPATCH(dtype, T,
                       launch32(N * C * S, BnBackwardInput<T>{static_cast<const T*>(g), static_cast<const T*>(x),
                                                              static_cast<const T*>(weight), save_mean, save_invstd,
                                                              sums, static_cast<T*>(gx), static_cast<uint32_t>(C),
                                                              static_cast<uint32_t>(S), inv_M, training}));
  }
}

void layer_norm_forward(const void* x, const void* weight, const void* bias, float* save_mean, float* save_invstd,
                        void* y, int64_t R, int64_t D, float eps, int dtype, int device) {
  check_dtype("retikd::cuda::layer_norm_forward", dtype);
  check_sizes("retikd::cuda::layer_norm_forward", R >= 0 && D > 0);
  if (R == 0) return;
  detail::DeviceGuard guard(device);
  RETIKD_NN_DISPATCH(dtype, T,
                     ln_forward_kernel<T><<<warp_row_blocks(R), kThreads, 0, detail::current_stream()>>>(
                         static_cast<const T*>(x), static_cast<const T*>(weight), static_cast<const T*>(bias),
                         save_mean, save_invstd, static_cast<T*>(y), R, D, eps));
  RETIKD_CUDA_CHECK_LAUNCH();
}

void layer_norm_backward(const void* g, const void* x, const void* weight, const float* save_mean,
                         const float* save_invstd, void* gx, void* gw, void* gb, int64_t R, int64_t D, int dtype,
                         int device) {
  check_dtype("retikd::cuda::layer_norm_backward", dtype);
  check_sizes("retikd::cuda::layer_norm_backward", R >= 0 && D > 0 && D < (1LL << 31));
  detail::DeviceGuard guard(device);
  if (gx && R > 0) {
    RETIKD_NN_DISPATCH(dtype, T,
                       ln_backward_input_kernel<T><<<warp_row_blocks(R), kThreads, 0, detail::current_stream()>>>(
                           static_cast<const T*>(g), static_cast<const T*>(x), static_cast<const T*>(weight),
                           save_mean, save_invstd, static_cast<T*>(gx), R, D));
    RETIKD_CUDA_CHECK_LAUNCH();
  }
  if (gw || gb)
    RETIKD_NN_DISPATCH(dtype, T,
                       launch32(D, LnBackwardParams<T>{static_cast<const T*>(g), static_cast<const T*>(x), save_mean,
                                                       save_invstd, static_cast<T*>(gw), static_cast<T*>(gb), R, D}));
}

void max_pool2d_forward(const Pool2dDims& d, const void* x, void* y, int64_t* indices, int dtype, int device) {
  check_dtype("retikd::cuda::max_pool2d_forward", dtype);
  check_sizes("retikd::cuda::max_pool2d_forward", d.planes >= 0 && d.OH >= 0 && d.OW >= 0 && d.sh > 0 && d.sw > 0);
  detail::DeviceGuard guard(device);
  RETIKD_NN_DISPATCH(dtype, T,
                     launch32(1LL * d.planes * d.OH * d.OW,
                              MaxPoolForward<T>{d, static_cast<const T*>(x), static_cast<T*>(y), indices}));
}

void max_pool2d_backward(const void* gy, const int64_t* indices, void* gx, int64_t planes, int64_t in_plane,
                         int64_t out_plane, int dtype, int device) {
  check_dtype("retikd::cuda::max_pool2d_backward", dtype);
  check_sizes("retikd::cuda::max_pool2d_backward", planes >= 0 && in_plane > 0 && out_plane >= 0);
  const int64_t n_in = planes * in_plane;
  if (n_in == 0) return;
  detail::DeviceGuard guard(device);
  float* acc = dtype == kFloat32 ? static_cast<float*>(gx)
                                 : static_cast<float*>(device_malloc(static_cast<std::size_t>(n_in) * 4, device));
  try {
    RETIKD_CUDA_CHECK(cudaMemsetAsync(acc, 0, static_cast<std::size_t>(n_in) * sizeof(float), detail::current_stream()));
    RETIKD_NN_DISPATCH(dtype, T,
                       launch32(planes * out_plane,
                                MaxPoolScatter<T>{static_cast<const T*>(gy), indices, acc,
                                                  static_cast<uint32_t>(in_plane), static_cast<uint32_t>(out_plane)}));
    if (dtype == kFloat16) launch32(n_in, FloatToHalf{acc, static_cast<Half*>(gx)});
  } catch (...) {
    if (dtype == kFloat16) device_free(acc, device);
    throw;
  }
  if (dtype == kFloat16) device_free(acc, device);
}

void bilinear_forward(const void* x, void* y, int64_t planes, int H, int W, int OH, int OW, bool align_corners,
                      int dtype, int device) {
  check_dtype("retikd::cuda::bilinear_forward", dtype);
  check_sizes("retikd::cuda::bilinear_forward", planes >= 0 && H > 0 && W > 0 && OH > 0 && OW > 0);
  detail::DeviceGuard guard(device);
  RETIKD_NN_DISPATCH(dtype, T,
                     launch32(planes * OH * OW, BilinearForward<T>{static_cast<const T*>(x), static_cast<T*>(y), H, W,
                                                                   OH, OW, align_corners}));
}

void bilinear_backward(const void* gy, void* gx, int64_t planes, int H, int W, int OH, int OW, bool align_corners,
                       int dtype, int device) {
  check_dtype("retikd::cuda::bilinear_backward", dtype);
  check_sizes("retikd::cuda::bilinear_backward", planes >= 0 && H > 0 && W > 0 && OH > 0 && OW > 0);
  const int64_t n_in = planes * H * W;
  if (n_in == 0) return;
  detail::DeviceGuard guard(device);
  float* acc = dtype == kFloat32 ? static_cast<float*>(gx)
                                 : static_cast<float*>(device_malloc(static_cast<std::size_t>(n_in) * 4, device));
  try {
    RETIKD_CUDA_CHECK(cudaMemsetAsync(acc, 0, static_cast<std::size_t>(n_in) * sizeof(float), detail::current_stream()));
    RETIKD_NN_DISPATCH(dtype, T,
                       launch32(planes * OH * OW,
                                BilinearScatter<T>{static_cast<const T*>(gy), acc, H, W, OH, OW, align_corners}));
    if (dtype == kFloat16) launch32(n_in, FloatToHalf{acc, static_cast<Half*>(gx)});
  } catch (...) {
    if (dtype == kFloat16) device_free(acc, device);
    throw;
  }
  if (dtype == kFloat16) device_free(acc, device);
}

void kl_rows_forward(const float* s, const float* t, float* terms, float* lse_s, float* lse_t, int64_t R, int64_t C,
                     float inv_tau, int device) {
  check_sizes("retikd::cuda::kl_rows_forward", R >= 0 && C > 0);
  if (R == 0) return;
  detail::DeviceGuard guard(device);
  kl_forward_kernel<<<warp_row_blocks(R), kThreads, 0, detail::current_stream()>>>(s, t, terms, lse_s, lse_t, R, C, inv_tau);
  RETIKD_CUDA_CHECK_LAUNCH();
}

void kl_rows_backward(const float* s, const float* t, const float* lse_s, const float* lse_t, const float* G,
                      float* gs, float* gt, int64_t R, int64_t C, float inv_tau, int device) {
  check_sizes("retikd::cuda::kl_rows_backward", R >= 0 && C > 0);
  if (R == 0) return;
  detail::DeviceGuard guard(device);
  kl_backward_kernel<<<warp_row_blocks(R), kThreads, 0, detail::current_stream()>>>(s, t, lse_s, lse_t, G, gs, gt, R, C, inv_tau);
  RETIKD_CUDA_CHECK_LAUNCH();
}

void ce_rows_forward(const float* z, const int64_t* targets, const float* weight, float* lse, float* per_row,
                     int64_t N, int64_t C, float label_smoothing, int64_t ignore_index, int device) {
  check_sizes("retikd::cuda::ce_rows_forward", N >= 0 && C > 0);
  if (N == 0) return;
  detail::DeviceGuard guard(device);
  ce_forward_kernel<<<warp_row_blocks(N), kThreads, 0, detail::current_stream()>>>(z, targets, weight, lse, per_row, N, C, label_smoothing,
                                                      ignore_index);
  RETIKD_CUDA_CHECK_LAUNCH();
}

void ce_rows_backward(const float* g, bool per_row, float inv_denominator, const float* z, const float* lse,
                      const int64_t* targets, const float* weight, float weight_sum, float* gx, int64_t N, int64_t C,
                      float label_smoothing, int64_t ignore_index, int device) {
  check_sizes("retikd::cuda::ce_rows_backward", N >= 0 && C > 0);
  if (N == 0) return;
  detail::DeviceGuard guard(device);
  ce_backward_kernel<<<warp_row_blocks(N), kThreads, 0, detail::current_stream()>>>(g, per_row, inv_denominator, z, lse, targets, weight,
                                                       weight_sum, gx, N, C, label_smoothing, ignore_index);
  RETIKD_CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace retikd
