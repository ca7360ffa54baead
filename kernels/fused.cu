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

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "cuda_check.cuh"
#include "launch.cuh"
#include "scratch.cuh"
#include "retikd/core/half.hpp"
#include "retikd/cuda/blas.hpp"
#include "retikd/cuda/elementwise.hpp"
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

using detail::Scratch;  // RAII scratch from the caching allocator (kernels/scratch.cuh)

void check_dtype(const char* op, int dtype) { detail::check_float_dtype(op, dtype); }  // launch.cuh

unsigned grid_blocks(const char* op, int64_t blocks) {
  if (blocks < 1 || blocks > 2147483647LL)
    throw std::invalid_argument(std::string(op) + ": " + std::to_string(blocks) + " blocks is outside 1 .. 2^31-1");
  return static_cast<unsigned>(blocks);
}

// ---- the GEMM route (float32; see FusedStrategy in retikd/cuda/fused.hpp) --------------------------------------

constexpr int kRowWarps = 8;  // rows per 256-thread block in the row kernels: one warp per score row

// The used (possibly cross-replaced) copy of Q or K, as float.
struct UsedOperand {
  const float* student;
  const float* source;
  uint64_t key, threshold;
  float* out;
  __device__ void operator()(int64_t x) const { out[x] = attn_load(student, source, key, threshold, x); }
};

// The teacher's scaled logit z_ij of score row `row` = (bh, i): from the GEMM output Z (already scaled) or
// from a.zt (B, zt_heads, N, N) times scale_t — what attn_scores computes in the tiled route.
__device__ __forceinline__ float gemm_route_z(const AttnArgs& a, const float* Z, int64_t row, int j) {
  if (Z) return Z[row * a.N + j];
  const int64_t bh = row / a.N, i = row % a.N, b = bh / a.H, h = a.zt_heads == 1 ? 0 : bh % a.H;
  return static_cast<const float*>(a.zt)[((b * a.zt_heads + h) * a.N + i) * a.N + j] * a.scale_t;
}

// One warp per score row: the online softmax states of fused_tiles.hpp over the row's columns (lane-strided),
// merged across the warp, then the row's loss and log-sum-exps.
__global__ void __launch_bounds__(kRowWarps * 32) attn_rows_forward_kernel(AttnArgs a, const float* S, const float* Z,
                                                                        int64_t rows) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;  // uniform per warp
  AttnRowState st;
  attn_state_init(st);
  const float* srow = S + row * a.N;
  for (int j = lane; j < a.N; j += 32) attn_state_push(st, a.loss, srow[j], gemm_route_z(a, Z, row, j));
  for (int off = 16; off > 0; off >>= 1) {
    AttnRowState o;
    o.m_s = __shfl_xor_sync(0xffffffffu, st.m_s, off);
    o.l_s = __shfl_xor_sync(0xffffffffu, st.l_s, off);
    o.m_t = __shfl_xor_sync(0xffffffffu, st.m_t, off);
    o.l_t = __shfl_xor_sync(0xffffffffu, st.l_t, off);
    o.acc = __shfl_xor_sync(0xffffffffu, st.acc, off);
    st = attn_state_merge(st, o, a.loss);
  }
  if (lane == 0) {
    float ls = 0.f, lt = 0.f;
    a.row_loss[row] = attn_state_finish(st, a.loss, &ls, &lt);
    if (a.loss == kAttnKL) {
      a.lse_s[row] = ls;
      a.lse_t[row] = lt;
    }
  }
}

// The score buffer turned, in place, into factor · ∂row/∂s (the left operand of dQ = W·K and dK = Wᵀ·Q).
__global__ void __launch_bounds__(kRowWarps * 32) attn_rows_backward_kernel(AttnArgs a, float* S, const float* Z,
                                                                         int64_t rows) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const float factor = attn_grad_factor(a);
  const float ls = a.loss == kAttnKL ? a.lse_s[row] : 0.f, lt = a.loss == kAttnKL ? a.lse_t[row] : 0.f;
  float* srow = S + row * a.N;
  for (int j = lane; j < a.N; j += 32)
    srow[j] = factor * attn_grad_elem(a.loss, srow[j], gemm_route_z(a, Z, row, j), ls, lt);
}

// The fp32 scratch buffers of one GEMM-route call: the used Q / K (only when elements are replaced), the
// scores and, with a per-head teacher Q/K, the teacher logits.
struct AttnGemmBuffers {
  Scratch q_used, k_used, scores, teacher;
  const float* q = nullptr;
  const float* k = nullptr;
  AttnGemmBuffers(const AttnArgs& a, int device)
      : q_used(a.threshold && a.qx ? operand_bytes(a) : 0, device),
        k_used(a.threshold && a.kx ? operand_bytes(a) : 0, device),
        scores(score_bytes(a), device),
        teacher(a.teacher == kTeacherQK ? score_bytes(a) : 0, device) {
    const int64_t n = static_cast<int64_t>(a.B) * a.H * a.N * a.d;
    q = static_cast<const float*>(a.q);
    k = static_cast<const float*>(a.k);
    if (q_used.p) {
      detail::launch_grid_stride<int64_t>(n, UsedOperand{q, static_cast<const float*>(a.qx), a.key_q, a.threshold, q_used.f()});
      q = q_used.f();
    }
    if (k_used.p) {
      detail::launch_grid_stride<int64_t>(n, UsedOperand{k, static_cast<const float*>(a.kx), a.key_k, a.threshold, k_used.f()});
      k = k_used.f();
    }
    const int64_t BH = static_cast<int64_t>(a.B) * a.H, N = a.N, NN = N * N;
    // S[bh] = scale_s · Q[bh] · K[bh]ᵀ (N × N), and the teacher's Z[bh] = scale_t · Qt[bh] · Kt[bh]ᵀ.
    gemm(false, true, N, N, a.d, a.scale_s, q, a.d, N * a.d, k, a.d, N * a.d, 0.f, scores.p, N, NN, BH, kFloat32,
         device);
    if (teacher.p)
      gemm(false, true, N, N, a.dt, a.scale_t, a.qt, a.dt, N * a.dt, a.kt, a.dt, N * a.dt, 0.f, teacher.p, N, NN, BH,
           kFloat32, device);
  }
  static std::size_t operand_bytes(const AttnArgs& a) {
    return static_cast<std::size_t>(a.B) * a.H * a.N * a.d * sizeof(float);
  }
  static std::size_t score_bytes(const AttnArgs& a) {
    return static_cast<std::size_t>(a.B) * a.H * a.N * a.N * sizeof(float);
  }
};

unsigned row_blocks(int64_t rows) { return grid_blocks("fused attention rows", (rows + kRowWarps - 1) / kRowWarps); }

void attn_forward_gemm(const AttnArgs& a, float* loss_out, int device) {
  AttnGemmBuffers buf(a, device);
  const int64_t rows = static_cast<int64_t>(a.B) * a.H * a.N;
  attn_rows_forward_kernel<<<row_blocks(rows), kRowWarps * 32, 0, detail::current_stream()>>>(
      a, buf.scores.f(), buf.teacher.p ? buf.teacher.f() : nullptr, rows);
  RETIKD_CUDA_CHECK_LAUNCH();
  reduce_sum_kernel<<<1, kReduceThreads, 0, detail::current_stream()>>>(a.row_loss, rows, a.loss_scale, loss_out);
  RETIKD_CUDA_CHECK_LAUNCH();
}

void attn_backward_gemm(AttnArgs a, void* dq_out, void* dk_out, int device) {
  AttnGemmBuffers buf(a, device);
  const int64_t BH = static_cast<int64_t>(a.B) * a.H, N = a.N, NN = N * N, rows = BH * N, n = rows * a.d;
  attn_rows_backward_kernel<<<row_blocks(rows), kRowWarps * 32, 0, detail::current_stream()>>>(
      a, buf.scores.f(), buf.teacher.p ? buf.teacher.f() : nullptr, rows);
  RETIKD_CUDA_CHECK_LAUNCH();
  const bool same = dq_out == dk_out;
  const std::size_t bytes = static_cast<std::size_t>(n) * sizeof(float);
  Scratch dq(bytes, device), dk(same ? 0 : bytes, device);
  float* W = buf.scores.f();
  // dQ[bh] = W[bh] · K[bh];  dK[bh] = W[bh]ᵀ · Q[bh] (added onto dQ when Q and K are one tensor).
  gemm(false, false, N, a.d, N, 1.f, W, N, NN, buf.k, a.d, N * a.d, 0.f, dq.p, a.d, N * a.d, BH, kFloat32, device);
  gemm(true, false, N, a.d, N, 1.f, W, N, NN, buf.q, a.d, N * a.d, same ? 1.f : 0.f, same ? dq.p : dk.p, a.d, N * a.d,
       BH, kFloat32, device);
  detail::launch_grid_stride<int64_t>(
      n, FinishGrad<float>{dq.f(), static_cast<float*>(dq_out), a.qx != nullptr, a.key_q, a.threshold});
  if (!same)
    detail::launch_grid_stride<int64_t>(
        n, FinishGrad<float>{dk.f(), static_cast<float*>(dk_out), a.kx != nullptr, a.key_k, a.threshold});
}

// GL, channel grouping: the residual R = Y + bias − T in place over the GEMM's Y, and per-block partial Σ R²
// (a fixed grid, so the sum is deterministic).
constexpr int kEpilogueBlocks = 1024;
__global__ void __launch_bounds__(kReduceThreads) gl_epilogue_kernel(float* resid, const float* bias, const float* t,
                                                                     int64_t n, int D, float* block_loss) {
  __shared__ double red[kReduceThreads];
  double s = 0.0;
  for (int64_t x = static_cast<int64_t>(blockIdx.x) * kReduceThreads + threadIdx.x; x < n;
       x += static_cast<int64_t>(gridDim.x) * kReduceThreads) {
    const float r = resid[x] + (bias ? bias[x % D] : 0.f) - t[x];
    resid[x] = r;
    s += static_cast<double>(r) * r;
  }
  red[threadIdx.x] = s;
  __syncthreads();
  for (int stride = kReduceThreads / 2; stride > 0; stride /= 2) {
    if (static_cast<int>(threadIdx.x) < stride) red[threadIdx.x] += red[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) block_loss[blockIdx.x] = static_cast<float>(red[0]);
}

// R' = (2 · loss_scale · g) · R, g read on the device.
struct ScaleResidual {
  GlArgs a;
  float* out;
  __device__ void operator()(int64_t x) const { out[x] = gl_grad_factor(a) * a.resid[x]; }
};

// (B, C, N) ↔ (B, N, C) float32 transposes through the strided-copy kernel.
void transpose_bcn_to_bnc(const void* src, void* dst, int64_t B, int64_t C, int64_t N, int device) {
  const int64_t sizes[3] = {B, N, C}, strides[3] = {C * N, 1, N};
  strided_copy(src, kFloat32, 3, sizes, strides, 0, dst, device);
}
void transpose_bnc_to_bcn(const void* src, void* dst, int64_t B, int64_t C, int64_t N, int device) {
  const int64_t sizes[3] = {B, C, N}, strides[3] = {N * C, 1, C};
  strided_copy(src, kFloat32, 3, sizes, strides, 0, dst, device);
}

void gl_forward_gemm(GlArgs a, float* loss_out, int device) {
  const int64_t N = static_cast<int64_t>(a.gh) * a.gw, BN = a.B * N, G = a.groups, Cg = a.C / G, Dg = a.D / G;
  Scratch st(static_cast<std::size_t>(BN) * a.C * sizeof(float), device);
  transpose_bcn_to_bnc(a.s, st.p, a.B, a.C, N, device);
  // Y_g (B·N × D/G) = S_g (B·N × C/G) · W_gᵀ, written where the residual goes.
  gemm(false, true, BN, Dg, Cg, 1.f, st.p, a.C, Cg, a.w, Cg, Dg * Cg, 0.f, a.resid, a.D, Dg, G, kFloat32, device);
  Scratch partial(kEpilogueBlocks * sizeof(float), device);
  gl_epilogue_kernel<<<kEpilogueBlocks, kReduceThreads, 0, detail::current_stream()>>>(
      a.resid, static_cast<const float*>(a.bias), static_cast<const float*>(a.t), BN * a.D, a.D, partial.f());
  RETIKD_CUDA_CHECK_LAUNCH();
  reduce_sum_kernel<<<1, kReduceThreads, 0, detail::current_stream()>>>(partial.f(), kEpilogueBlocks, a.loss_scale,
                                                                        loss_out);
  RETIKD_CUDA_CHECK_LAUNCH();
}

void gl_backward_gemm(GlArgs a, int device) {
  const int64_t N = static_cast<int64_t>(a.gh) * a.gw, BN = a.B * N, G = a.groups, Cg = a.C / G, Dg = a.D / G;
  Scratch st(static_cast<std::size_t>(BN) * a.C * sizeof(float), device);
  transpose_bcn_to_bnc(a.s, st.p, a.B, a.C, N, device);
  Scratch rp(static_cast<std::size_t>(BN) * a.D * sizeof(float), device);
  detail::launch_grid_stride<int64_t>(BN * a.D, ScaleResidual{a, rp.f()});
  // dS_g (B·N × C/G) = R'_g · W_g, transposed back to (B, C, N); dW_g = R'_gᵀ · S_g; db = 1ᵀ · R'.
  Scratch dst(static_cast<std::size_t>(BN) * a.C * sizeof(float), device);
  gemm(false, false, BN, Cg, Dg, 1.f, rp.p, a.D, Dg, a.w, Cg, Dg * Cg, 0.f, dst.p, a.C, Cg, G, kFloat32, device);
  transpose_bnc_to_bcn(dst.p, a.ds, a.B, a.C, N, device);
  gemm(true, false, Dg, Cg, BN, 1.f, rp.p, a.D, Dg, st.p, a.C, Cg, 0.f, a.dw, Cg, Dg * Cg, G, kFloat32, device);
  if (a.bias) {
    Scratch ones(static_cast<std::size_t>(BN) * sizeof(float), device);
    fill(ones.p, kFloat32, BN, 1.0, device);
    gemm(false, false, 1, a.D, BN, 1.f, ones.p, BN, 0, rp.p, a.D, 0, 0.f, a.db, a.D, 0, 1, kFloat32, device);
  }
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

namespace {
int initial_strategy() {
  const char* e = std::getenv("RETIKD_FUSED_STRATEGY");
  if (!e || !*e || std::strcmp(e, "auto") == 0) return kFusedAuto;
  if (std::strcmp(e, "tiled") == 0) return kFusedTiled;
  if (std::strcmp(e, "gemm") == 0) return kFusedGemm;
  throw std::invalid_argument(std::string("RETIKD_FUSED_STRATEGY='") + e + "' (auto, tiled, gemm)");
}
std::atomic<int>& strategy_slot() {
  static std::atomic<int> s(initial_strategy());
  return s;
}
// Compute capability per device, read once (the driver query is cheap but not free on every launch).
int cached_capability(int device) {
  static std::atomic<int> cc[64];
  if (device < 0 || device >= 64) return compute_capability(device);
  int v = cc[device].load();
  if (v == 0) {
    v = compute_capability(device);
    cc[device].store(v);
  }
  return v;
}
constexpr double kGemmRouteWorkspace = 1024.0 * 1024.0 * 1024.0;
}  // namespace

void set_fused_strategy(int strategy) {
  if (strategy != kFusedAuto && strategy != kFusedTiled && strategy != kFusedGemm)
    throw std::invalid_argument("set_fused_strategy: unknown strategy " + std::to_string(strategy));
  strategy_slot().store(strategy);
}
int fused_strategy() { return strategy_slot().load(); }

int fused_attn_route(const fused::AttnArgs& a, int dtype, int device) {
  const int s = fused_strategy();
  if (dtype != kFloat32 || s == kFusedTiled) return kFusedTiled;
  if (s == kFusedGemm) return kFusedGemm;
  const double ws = 4.0 * a.B * a.H * a.N * a.N * (a.teacher == fused::kTeacherQK ? 2 : 1);
  return cached_capability(device) >= 70 && ws <= kGemmRouteWorkspace ? kFusedGemm : kFusedTiled;
}

int fused_gl_route(const fused::GlArgs& a, int dtype, int device) {
  const int s = fused_strategy();
  if (dtype != kFloat32 || a.grouping != fused::kGlChannel || s == kFusedTiled) return kFusedTiled;
  if (s == kFusedGemm) return kFusedGemm;
  return cached_capability(device) >= 70 ? kFusedGemm : kFusedTiled;
}

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
  if (fused_attn_route(a, dtype, device) == kFusedGemm)
    fused::attn_forward_gemm(a, loss_out, device);
  else if (dtype == kFloat32)
    fused::attn_forward_typed<float>(a, loss_out);
  else
    fused::attn_forward_typed<Half>(a, loss_out);
}

void fused_attn_backward(const fused::AttnArgs& a, int dtype, void* dq_out, void* dk_out, int device) {
  fused::check_dtype("fused_attn_backward", dtype);
  if (a.grad_out == nullptr) throw std::invalid_argument("fused_attn_backward: grad_out is null");
  detail::DeviceGuard guard(device);
  if (fused_attn_route(a, dtype, device) == kFusedGemm)
    fused::attn_backward_gemm(a, dq_out, dk_out, device);
  else if (dtype == kFloat32)
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
  if (fused_gl_route(a, dtype, device) == kFusedGemm)
    fused::gl_forward_gemm(a, loss_out, device);
  else if (dtype == kFloat32)
    fused::gl_forward_typed<float>(a, loss_out, device);
  else
    fused::gl_forward_typed<Half>(a, loss_out, device);
}

void fused_gl_backward(const fused::GlArgs& a, int dtype, int device) {
  fused::check_dtype("fused_gl_backward", dtype);
  if (a.grad_out == nullptr) throw std::invalid_argument("fused_gl_backward: grad_out is null");
  detail::DeviceGuard guard(device);
  if (fused_gl_route(a, dtype, device) == kFusedGemm)
    fused::gl_backward_gemm(a, device);
  else if (dtype == kFloat32)
    fused::gl_backward_typed<float>(a);
  else
    fused::gl_backward_typed<Half>(a);
}

}  // namespace cuda
}  // namespace retikd
