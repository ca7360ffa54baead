// kernels/fused.cu — the fused projector kernels (include/retikd/cuda/fused.hpp): thin __global__ wrappers
// that run the block programs of include/retikd/cuda/fused_tiles.hpp with a GPU executor, plus the small
// deterministic reduction and gradient-finishing kernels, and the launchers with their can_implement checks.
//
// Why the programs are not written here: they are shared with the CPU emulation that
// tests/test_fused_reference.cpp checks against the unfused kd/ ops (this machine may have no GPU), so the
// GPU-specific part is only the executor (threadIdx, __syncthreads, warp shuffles) and the launch geometry.
// sm_53 rules: C++14, static shared memory ≤ 48 KB (AttnShared 12.7 KB, GemmShared 9.5 KB), 256-thread
// blocks capped at 128 registers (__launch_bounds__(256, 2): the 32K-register block limit), no half or
// double atomics (no atomics at all: every output element has one writer), launched on the default stream.
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda_check.cuh"
#include "launch.cuh"
#include "retikd/core/half.hpp"
#include "retikd/cuda/fused.hpp"
#include "retikd/cuda/fused_tiles.hpp"
#include "retikd/cuda/runtime.hpp"

namespace retikd {
namespace cuda {
namespace fused {
namespace {

static_assert(sizeof(AttnShared) <= 48 * 1024, "sm_53: 48 KB of shared memory per block");
static_assert(sizeof(GemmShared) <= 48 * 1024, "sm_53: 48 KB of shared memory per block");

// The GPU executor of fused_tiles.hpp: this thread is the only slot; a phase ends with __syncthreads().
// Members are __host__ __device__ only so the host-device block programs may call them; the host pass never
// runs them (the programs are instantiated from __global__ functions only).
struct GpuExec {
  static constexpr int kSlots = 1;
  int loss;
  template <class F>
  __host__ __device__ void each(F f) {
#if defined(__CUDA_ARCH__)
    f(0, static_cast<int>(threadIdx.x));
    __syncthreads();
#else
    (void)f;
#endif
  }
  // Butterfly over the 8 consecutive lanes that share a row (lane t merges with t ^ 1, ^ 2, ^ 4), the order
  // CpuExec::row_merge emulates.
  __host__ __device__ void row_merge(AttnRowState* st) const {
#if defined(__CUDA_ARCH__)
    for (int off = 1; off < kAttnLanes; off <<= 1) {
      AttnRowState o;
      o.m_s = __shfl_xor_sync(0xffffffffu, st[0].m_s, off);
      o.l_s = __shfl_xor_sync(0xffffffffu, st[0].l_s, off);
      o.m_t = __shfl_xor_sync(0xffffffffu, st[0].m_t, off);
      o.l_t = __shfl_xor_sync(0xffffffffu, st[0].l_t, off);
      o.acc = __shfl_xor_sync(0xffffffffu, st[0].acc, off);
      st[0] = attn_state_merge(st[0], o, loss);
    }
#else
    (void)st;
#endif
  }
};

template <class T>
__global__ void __launch_bounds__(kAttnThreads, 2) attn_forward_kernel(AttnArgs a, int tiles) {
  __shared__ AttnShared sh;
  GpuExec ex{a.loss};
  attn_forward_block<T>(ex, sh, a, static_cast<int64_t>(blockIdx.x / tiles), static_cast<int>(blockIdx.x % tiles));
}

template <class T>
__global__ void __launch_bounds__(kAttnThreads, 2) attn_dq_kernel(AttnArgs a, int tiles) {
  __shared__ AttnShared sh;
  GpuExec ex{a.loss};
  attn_dq_block<T>(ex, sh, a, static_cast<int64_t>(blockIdx.x / tiles), static_cast<int>(blockIdx.x % tiles));
}

template <class T>
__global__ void __launch_bounds__(kAttnThreads, 2) attn_dk_kernel(AttnArgs a, int tiles) {
  __shared__ AttnShared sh;
  GpuExec ex{a.loss};
  attn_dk_block<T>(ex, sh, a, static_cast<int64_t>(blockIdx.x / tiles), static_cast<int>(blockIdx.x % tiles));
}

template <class P>
__global__ void __launch_bounds__(kGemmThreads, 2) gemm_kernel(P p, int rts, int cts) {
  __shared__ GemmShared sh;
  GpuExec ex{0};
  const int block = static_cast<int>(blockIdx.x);
  const int ct = block % cts, rt = (block / cts) % rts, g = block / (cts * rts);
  gemm_block(ex, sh, p, p.a, g, rt, ct, p.a.block_loss ? p.a.block_loss + block : nullptr);
}

// out[0] = scale · Σ x[0..n): one block, per-thread double sums, fixed-order tree (deterministic).
constexpr int kReduceThreads = 256;
__global__ void __launch_bounds__(kReduceThreads) reduce_sum_kernel(const float* x, int64_t n, float scale,
                                                                    float* out) {
  __shared__ double red[kReduceThreads];
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += kReduceThreads) s += static_cast<double>(x[i]);
  red[threadIdx.x] = s;
  __syncthreads();
  for (int stride = kReduceThreads / 2; stride > 0; stride /= 2) {
    if (static_cast<int>(threadIdx.x) < stride) red[threadIdx.x] += red[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[0] = static_cast<float>(red[0] * static_cast<double>(scale));
}

// The student's gradient in its dtype from the fp32 accumulator, 0 where the element was replaced.
template <class T>
struct FinishGrad {
  const float* acc;
  T* out;
  bool has_source;
  uint64_t key, threshold;
  __device__ void operator()(int64_t x) const { out[x] = attn_finish_grad<T>(acc, has_source, key, threshold, x); }
};

// RAII fp32 scratch from the caching allocator (freed back to the cache; stream order keeps reuse safe on
// the default stream).
struct Scratch {
  void* p = nullptr;
  int device = 0;
  Scratch(std::size_t bytes, int dev) : p(device_malloc(bytes, dev)), device(dev) {}
  ~Scratch() {
    try {
      device_free(p, device);
    } catch (...) {
    }
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  float* f() const { return static_cast<float*>(p); }
};

void check_dtype(const char* op, int dtype) {
  if (dtype != kFloat32 && dtype != kFloat16)
    throw std::invalid_argument(std::string(op) + ": dtype code " + std::to_string(dtype) +
                                " is not float32 or float16");
}

unsigned grid_blocks(const char* op, int64_t blocks) {
  if (blocks < 1 || blocks > 2147483647LL)
    throw std::invalid_argument(std::string(op) + ": " + std::to_string(blocks) + " blocks is outside 1 .. 2^31-1");
  return static_cast<unsigned>(blocks);
}

template <class T>
void attn_forward_typed(const AttnArgs& a, float* loss_out) {
  const int tiles = (a.N + kAttnTile - 1) / kAttnTile;
  const int64_t heads = static_cast<int64_t>(a.B) * a.H;
  attn_forward_kernel<T><<<grid_blocks("fused_attn_forward", heads * tiles), kAttnThreads, 0, detail::current_stream()>>>(a, tiles);
  RETIKD_CUDA_CHECK_LAUNCH();
  reduce_sum_kernel<<<1, kReduceThreads, 0, detail::current_stream()>>>(a.row_loss, heads * a.N, a.loss_scale, loss_out);
  RETIKD_CUDA_CHECK_LAUNCH();
}

template <class T>
void attn_backward_typed(AttnArgs a, void* dq_out, void* dk_out, int device) {
  const int tiles = (a.N + kAttnTile - 1) / kAttnTile;
  const int64_t heads = static_cast<int64_t>(a.B) * a.H, n = heads * a.N * a.d;
  const bool same = dq_out == dk_out;
  const std::size_t bytes = static_cast<std::size_t>(n) * sizeof(float);
  Scratch dq(bytes, device), dk(same ? 0 : bytes, device);
  a.dq = dq.f();
  a.dk = same ? dq.f() : dk.f();
  RETIKD_CUDA_CHECK(cudaMemsetAsync(a.dq, 0, bytes, detail::current_stream()));
  if (!same) RETIKD_CUDA_CHECK(cudaMemsetAsync(a.dk, 0, bytes, detail::current_stream()));
  const unsigned blocks = grid_blocks("fused_attn_backward", heads * tiles);
  // Sequential on the default stream: with dq == dk the dK kernel adds onto the finished dQ.
  attn_dq_kernel<T><<<blocks, kAttnThreads, 0, detail::current_stream()>>>(a, tiles);
  RETIKD_CUDA_CHECK_LAUNCH();
  attn_dk_kernel<T><<<blocks, kAttnThreads, 0, detail::current_stream()>>>(a, tiles);
  RETIKD_CUDA_CHECK_LAUNCH();
  detail::launch_grid_stride<int64_t>(
      n, FinishGrad<T>{a.dq, static_cast<T*>(dq_out), a.qx != nullptr, a.key_q, a.threshold});
  if (!same)
    detail::launch_grid_stride<int64_t>(
        n, FinishGrad<T>{a.dk, static_cast<T*>(dk_out), a.kx != nullptr, a.key_k, a.threshold});
}

template <class P>
int64_t gemm_blocks(const P& p, int* rts, int* cts) {
  int max_rows = 0, max_cols = 0;
  gl_extent(p, p.a, &max_rows, &max_cols);
  *rts = (max_rows + kGemmTile - 1) / kGemmTile;
  *cts = (max_cols + kGemmTile - 1) / kGemmTile;
  return static_cast<int64_t>(p.a.groups) * *rts * *cts;
}

template <class P>
void gemm_launch(const P& p, const char* op) {
  int rts = 0, cts = 0;
  const unsigned blocks = grid_blocks(op, gemm_blocks(p, &rts, &cts));
  gemm_kernel<P><<<blocks, kGemmThreads, 0, detail::current_stream()>>>(p, rts, cts);
  RETIKD_CUDA_CHECK_LAUNCH();
}

template <class T>
void gl_forward_typed(GlArgs a, float* loss_out, int device) {
  int rts = 0, cts = 0;
  const int64_t blocks = gemm_blocks(GlForward<T>{a}, &rts, &cts);
  Scratch partial(static_cast<std::size_t>(blocks) * sizeof(float), device);
  a.block_loss = partial.f();
  gemm_launch(GlForward<T>{a}, "fused_gl_forward");
  reduce_sum_kernel<<<1, kReduceThreads, 0, detail::current_stream()>>>(a.block_loss, blocks, a.loss_scale, loss_out);
  RETIKD_CUDA_CHECK_LAUNCH();
}

template <class T>
void gl_backward_typed(GlArgs a) {
  a.block_loss = nullptr;
  // The factor 2·loss_scale·g is read from device memory by the epilogues (gl_grad_factor).
  gemm_launch(GlBackwardInput<T>{a}, "fused_gl_backward (input)");
  gemm_launch(GlBackwardWeight<T>{a}, "fused_gl_backward (weight)");
}

bool fail_why(std::string* why, const std::string& text) {
  if (why) *why = text;
  return false;
}

}  // namespace
}  // namespace fused

bool fused_attn_can_implement(const FusedAttnShape& s, std::string* why) {
  using fused::fail_why;
  if (s.dtype != kFloat32 && s.dtype != kFloat16) return fail_why(why, "dtype is not float32 or float16");
  if (s.B < 1 || s.H < 1 || s.N < 1 || s.d < 1) return fail_why(why, "an empty dimension");
  if (s.teacher == fused::kTeacherQK && s.dt < 1) return fail_why(why, "teacher head dim < 1");
  if (s.teacher == fused::kTeacherLogits && s.zt_heads != 1 && s.zt_heads != s.H)
    return fail_why(why, "teacher logits must have 1 or H heads");
  const int64_t lim = 2147483647LL;
  // int fields and 32-bit block indices; element indices are 64-bit.
  if (s.B > lim || s.H > lim || s.N > (1 << 20) || s.d > 4096 || s.dt > 4096)
    return fail_why(why, "N above 2^20 or a head dim above 4096");
  if (s.B * s.H * ((s.N + fused::kAttnTile - 1) / fused::kAttnTile) > lim)
    return fail_why(why, "more than 2^31-1 blocks");
  return true;
}

void fused_attn_forward(const fused::AttnArgs& a, int dtype, float* loss_out, int device) {
  fused::check_dtype("fused_attn_forward", dtype);
  detail::DeviceGuard guard(device);
  if (dtype == kFloat32)
    fused::attn_forward_typed<float>(a, loss_out);
  else
    fused::attn_forward_typed<Half>(a, loss_out);
}

void fused_attn_backward(const fused::AttnArgs& a, int dtype, void* dq_out, void* dk_out, int device) {
  fused::check_dtype("fused_attn_backward", dtype);
  if (a.grad_out == nullptr) throw std::invalid_argument("fused_attn_backward: grad_out is null");
  detail::DeviceGuard guard(device);
  if (dtype == kFloat32)
    fused::attn_backward_typed<float>(a, dq_out, dk_out, device);
  else
    fused::attn_backward_typed<Half>(a, dq_out, dk_out, device);
}

bool fused_gl_can_implement(const FusedGlShape& s, std::string* why) {
  using fused::fail_why;
  if (s.dtype != kFloat32 && s.dtype != kFloat16) return fail_why(why, "dtype is not float32 or float16");
  if (s.B < 1 || s.C < 1 || s.D < 1 || s.gh < 1 || s.gw < 1) return fail_why(why, "an empty dimension");
  if (s.grouping == fused::kGlChannel && (s.groups < 1 || s.C % s.groups || s.D % s.groups))
    return fail_why(why, "channel groups must divide C and D");
  if (s.grouping == fused::kGlSpatial && s.block < 1) return fail_why(why, "spatial block < 1");
  // Row and depth counts (B·tokens) and element offsets within a group are int.
  const int64_t lim = 2147483647LL;
  if (s.B * s.gh * s.gw > lim / 2 || s.C * s.D > lim / 2 || s.B * s.C * s.gh * s.gw > lim ||
      s.B * s.gh * s.gw * s.D > lim)
    return fail_why(why, "a tensor with 2^31 or more elements");
  return true;
}

void fused_gl_forward(const fused::GlArgs& a, int dtype, float* loss_out, int device) {
  fused::check_dtype("fused_gl_forward", dtype);
  detail::DeviceGuard guard(device);
  if (dtype == kFloat32)
    fused::gl_forward_typed<float>(a, loss_out, device);
  else
    fused::gl_forward_typed<Half>(a, loss_out, device);
}

void fused_gl_backward(const fused::GlArgs& a, int dtype, int device) {
  fused::check_dtype("fused_gl_backward", dtype);
  if (a.grad_out == nullptr) throw std::invalid_argument("fused_gl_backward: grad_out is null");
  detail::DeviceGuard guard(device);
  if (dtype == kFloat32)
    fused::gl_backward_typed<float>(a);
  else
    fused::gl_backward_typed<Half>(a);
}

}  // namespace cuda
}  // namespace retikd
