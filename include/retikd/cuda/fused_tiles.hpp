// retikd/cuda/fused_tiles.hpp — the per-block programs of the two fused projector kernels (DESIGN.md §4, §5):
// partitioned cross-attention (PCA) loss rows computed flash-style, and the group-wise linear (GL) GEMMs with
// the MSE to the teacher tokens fused into the epilogue.
//
// Why a header of RETIKD_HOST_DEVICE templates: no GPU is available where most of this code is written, so
// the algorithm must be provable on the CPU. Each block program below is written once against an "executor"
// that runs one phase (a lambda called per thread) followed by a block barrier. kernels/fused.cu instantiates
// the programs with a GPU executor (one thread = threadIdx.x, __syncthreads(), warp shuffles), and
// retikd/cuda/fused_emulate.hpp with a CPU executor that runs all threads of a block one after another per
// phase. tests/test_fused_reference.cpp then checks the emulation against the unfused kd/ ops, so the index
// math, the online softmax, the loss/gradient formulas, the hash-decided replacement and the tiling are the
// exact code the GPU runs; only the launch itself needs a GPU test.
//
// Executor concept (Exec):
//   static constexpr int kSlots;          per-thread state slots held by one executor (GPU 1, CPU kThreads)
//   template <class F> void each(F f);    f(slot, tid) for each thread of the block, then a block barrier
//   void row_merge(AttnRowState* st);     combines the kAttnLanes partial row states of each score row with
//                                         attn_state_merge in butterfly order (lane ^ 1, ^ 2, ^ 4)
//
// C++14, no CUDA types or intrinsics (nvcc 10.2 on the Jetson includes this file; the sm_53 gate compiles it
// alone with g++ -std=c++14 -Wpedantic too). Shared memory per block: AttnShared 12.7 KB, GemmShared 9.5 KB.
#pragma once

#include <cmath>
#include <cstdint>

#include "retikd/core/half.hpp"
#include "retikd/core/host_device.hpp"
#include "retikd/core/mask_hash.hpp"

namespace retikd {
namespace cuda {
namespace fused {

// ---- scalar helpers ----------------------------------------------------------------------------------------
RETIKD_HOST_DEVICE inline float to_f(float x) { return x; }
RETIKD_HOST_DEVICE inline float to_f(Half x) { return static_cast<float>(x); }
template <class T>
RETIKD_HOST_DEVICE inline T from_f(float x) {
  return T(x);
}
RETIKD_HOST_DEVICE inline float f_exp(float x) {
#if defined(__CUDA_ARCH__)
  return expf(x);
#else
  return std::exp(x);
#endif
}
RETIKD_HOST_DEVICE inline float f_log(float x) {
#if defined(__CUDA_ARCH__)
  return logf(x);
#else
  return std::log(x);
#endif
}
RETIKD_HOST_DEVICE inline float f_max(float a, float b) { return a > b ? a : b; }
// A finite "minus infinity": exp(kNegBig - x) is 0 and kNegBig - kNegBig is 0, never NaN.
constexpr float kNegBig = -3.0e38f;

// =============================================================================================================
// Partitioned cross-attention loss.
//
// Per (b, h) and student row i, with s_ij = scale_s·(q_i·k_j) and z_ij the teacher's logit times scale_t:
//   KL  (paper): scale_s = 1/(√d·τ), z = teacher logits/τ;  row loss Σ_j p_j (log p_j − log q_j)
//                = Σ_j p_j (z_j − s_j) − lse_z + lse_s,  p = softmax(z), q = softmax(s);
//                ∂row/∂s_ij = q_ij − p_ij.
//   MSE (cakd):  scale_s = 1/√d, z = teacher logits;  row loss Σ_j (s_ij − z_ij)²;  ∂row/∂s_ij = 2(s_ij − z_ij).
// L = loss_scale · Σ rows (KL: 1/(B·H); MSE: 1/(B·H·N²)).  ∂L/∂(q_i·k_j) = w_ij · loss_scale · g · scale_s,
// dQ_i = Σ_j that · K_j, dK_j = Σ_i that · Q_i. Q and K are the *used* tensors: element x of the student's Q
// is the teacher's (qx) when cross_mask_replaced(key_q, x, threshold), and the student's gradient is 0 there.
// The teacher side is either a logits tensor zt (B, zt_heads, N, N), zt_heads ∈ {1, H} (1: one map for every
// head — the paper's token affinity), or per-head qt, kt (B, H, N, dt) whose scores are computed on the fly.
// No (B, H, N, N) tensor is ever written.
// =============================================================================================================
enum AttnLoss { kAttnKL = 0, kAttnMSE = 1 };
enum AttnTeacher { kTeacherLogits = 0, kTeacherQK = 1 };

constexpr int kAttnTile = 32;                            // rows per block = columns per step
constexpr int kAttnThreads = 256;                        // 32 rows × 8 lanes
constexpr int kAttnLanes = kAttnThreads / kAttnTile;     // 8 lanes share one score row
constexpr int kAttnCols = kAttnTile / kAttnLanes;        // 4 scores per thread per step
constexpr int kAttnChunk = 32;                           // head-dim columns staged in shared memory at once
constexpr int kAttnPad = kAttnChunk + 1;                 // +1: no bank conflicts on column reads
constexpr int kAttnLoads = kAttnTile * kAttnChunk / kAttnThreads;  // 4 elements per thread per tile load

struct AttnShared {
  float a[kAttnTile][kAttnPad];   // row operand chunk (Q, or teacher Q)
  float b[kAttnTile][kAttnPad];   // column operand chunk (K, or teacher K)
  float w[kAttnTile][kAttnPad];   // backward: ∂row/∂s of the current (row tile, column tile)
};

// Everything a launch needs; plain data (device pointers on the GPU, host pointers in the emulation).
struct AttnArgs {
  int B = 0, H = 0, N = 0, d = 0, dt = 0;
  int loss = kAttnKL;
  int teacher = kTeacherLogits;
  int zt_heads = 1;
  float scale_s = 1.f, scale_t = 1.f, loss_scale = 1.f;
  uint64_t key_q = 0, key_k = 0, threshold = 0;  // threshold 0: nothing replaced (qx/kx unused)
  const void* q = nullptr;   // (B, H, N, d) student
  const void* k = nullptr;
  const void* qx = nullptr;  // (B, H, N, d) replacement sources (teacher per-head Q/K), may be null
  const void* kx = nullptr;
  const void* zt = nullptr;  // kTeacherLogits
  const void* qt = nullptr;  // kTeacherQK: (B, H, N, dt)
  const void* kt = nullptr;
  float* row_loss = nullptr;  // (B·H·N) forward output
  float* lse_s = nullptr;     // (B·H·N) KL: forward output, backward input
  float* lse_t = nullptr;
  const float* grad_out = nullptr;  // backward: ∂(outer)/∂L, one float
  float* dq = nullptr;  // (B, H, N, d) fp32, zeroed before the backward; read-modify-written
  float* dk = nullptr;  // may equal dq (Q and K the same tensor, e.g. V·Vᵀ): dK kernel runs after dQ's
};

struct AttnRowState {
  float m_s, l_s, m_t, l_t, acc;  // running max / sum of exp for s and z; KL: Σ e^{z−m_t}(z − s); MSE: Σ (s−z)²
};

RETIKD_HOST_DEVICE inline void attn_state_init(AttnRowState& st) {
  st.m_s = kNegBig;
  st.l_s = 0.f;
  st.m_t = kNegBig;
  st.l_t = 0.f;
  st.acc = 0.f;
}

// Folds one score pair into a running row state (the online softmax of both sides).
RETIKD_HOST_DEVICE inline void attn_state_push(AttnRowState& st, int loss, float s, float z) {
  if (loss == kAttnMSE) {
    const float e = s - z;
    st.acc += e * e;
    return;
  }
  const float ms = f_max(st.m_s, s);
  st.l_s = st.l_s * f_exp(st.m_s - ms) + f_exp(s - ms);
  st.m_s = ms;
  const float mt = f_max(st.m_t, z);
  const float f = f_exp(st.m_t - mt), e = f_exp(z - mt);
  st.l_t = st.l_t * f + e;
  st.acc = st.acc * f + e * (z - s);
  st.m_t = mt;
}

// Combines two partial states of one row (disjoint column sets).
RETIKD_HOST_DEVICE inline AttnRowState attn_state_merge(const AttnRowState& x, const AttnRowState& y, int loss) {
  AttnRowState r;
  if (loss == kAttnMSE) {
    r = x;
    r.acc = x.acc + y.acc;
    return r;
  }
  r.m_s = f_max(x.m_s, y.m_s);
  r.l_s = x.l_s * f_exp(x.m_s - r.m_s) + y.l_s * f_exp(y.m_s - r.m_s);
  r.m_t = f_max(x.m_t, y.m_t);
  const float fx = f_exp(x.m_t - r.m_t), fy = f_exp(y.m_t - r.m_t);
  r.l_t = x.l_t * fx + y.l_t * fy;
  r.acc = x.acc * fx + y.acc * fy;
  return r;
}

// The finished row: its loss term, and (KL) the log-sum-exps the backward needs.
RETIKD_HOST_DEVICE inline float attn_state_finish(const AttnRowState& st, int loss, float* lse_s, float* lse_t) {
  if (loss == kAttnMSE) return st.acc;
  *lse_s = st.m_s + f_log(st.l_s);
  *lse_t = st.m_t + f_log(st.l_t);
  return st.acc / st.l_t - *lse_t + *lse_s;
}

// ∂row/∂s_ij from the scores and the row's log-sum-exps.
RETIKD_HOST_DEVICE inline float attn_grad_elem(int loss, float s, float z, float lse_s, float lse_t) {
  if (loss == kAttnMSE) return 2.f * (s - z);
  return f_exp(s - lse_s) - f_exp(z - lse_t);
}

// Element x of a (possibly cross-replaced) operand, as float.
template <class T>
RETIKD_HOST_DEVICE inline float attn_load(const T* student, const T* source, uint64_t key, uint64_t threshold,
                                          int64_t x) {
  if (threshold != 0 && source != nullptr && cross_mask_replaced(key, static_cast<uint64_t>(x), threshold))
    return to_f(source[x]);
  return to_f(student[x]);
}

// Thread tid's share of staging rows [tile·32, +32) × head-dim columns [c0, c0+32) of a (B·H, N, dim) tensor
// into dst; out-of-range elements are 0.
template <class T>
RETIKD_HOST_DEVICE inline void attn_stage(float (*dst)[kAttnPad], const T* src, const T* source, uint64_t key,
                                          uint64_t threshold, int64_t bh, int N, int dim, int tile, int c0,
                                          int tid) {
  for (int v = 0; v < kAttnLoads; ++v) {
    const int e = tid + v * kAttnThreads, r = e / kAttnChunk, c = e % kAttnChunk;
    const int row = tile * kAttnTile + r, col = c0 + c;
    float val = 0.f;
    if (row < N && col < dim) val = attn_load(src, source, key, threshold, (bh * N + row) * dim + col);
    dst[r][c] = val;
  }
}

// Row and first column of thread tid inside a tile; its columns are col0 + kAttnLanes·u, u < kAttnCols.
RETIKD_HOST_DEVICE inline int attn_row_of(int tid) { return tid / kAttnLanes; }
RETIKD_HOST_DEVICE inline int attn_lane_of(int tid) { return tid % kAttnLanes; }

// s (scaled student scores) and z (scaled teacher logits) of row tile `it` × column tile `jt` for every
// thread: sc[slot][u], zc[slot][u]. Ends with the staged chunks no longer needed (callers may restage).
template <class T, class Exec>
RETIKD_HOST_DEVICE void attn_scores(Exec& ex, AttnShared& sh, const AttnArgs& a, int64_t bh, int it, int jt,
                                    float (*sc)[kAttnCols], float (*zc)[kAttnCols]) {
  ex.each([&](int s, int) {
    for (int u = 0; u < kAttnCols; ++u) sc[s][u] = zc[s][u] = 0.f;
  });
  const T* q = static_cast<const T*>(a.q);
  const T* k = static_cast<const T*>(a.k);
  const T* qx = static_cast<const T*>(a.qx);
  const T* kx = static_cast<const T*>(a.kx);
  for (int c0 = 0; c0 < a.d; c0 += kAttnChunk) {
    ex.each([&](int, int tid) {
      attn_stage(sh.a, q, qx, a.key_q, a.threshold, bh, a.N, a.d, it, c0, tid);
      attn_stage(sh.b, k, kx, a.key_k, a.threshold, bh, a.N, a.d, jt, c0, tid);
    });
    ex.each([&](int s, int tid) {
      const int r = attn_row_of(tid), l = attn_lane_of(tid);
      for (int c = 0; c < kAttnChunk; ++c) {
        const float qv = sh.a[r][c];
        for (int u = 0; u < kAttnCols; ++u) sc[s][u] += qv * sh.b[l + kAttnLanes * u][c];
      }
    });
  }
  if (a.teacher == kTeacherQK) {
    const T* qt = static_cast<const T*>(a.qt);
    const T* kt = static_cast<const T*>(a.kt);
    for (int c0 = 0; c0 < a.dt; c0 += kAttnChunk) {
      ex.each([&](int, int tid) {
        attn_stage(sh.a, qt, qt, 0, 0, bh, a.N, a.dt, it, c0, tid);
        attn_stage(sh.b, kt, kt, 0, 0, bh, a.N, a.dt, jt, c0, tid);
      });
      ex.each([&](int s, int tid) {
        const int r = attn_row_of(tid), l = attn_lane_of(tid);
        for (int c = 0; c < kAttnChunk; ++c) {
          const float qv = sh.a[r][c];
          for (int u = 0; u < kAttnCols; ++u) zc[s][u] += qv * sh.b[l + kAttnLanes * u][c];
        }
      });
    }
  }
  const T* zt = static_cast<const T*>(a.zt);
  ex.each([&](int s, int tid) {
    const int i = it * kAttnTile + attn_row_of(tid);
    for (int u = 0; u < kAttnCols; ++u) {
      const int j = jt * kAttnTile + attn_lane_of(tid) + kAttnLanes * u;
      sc[s][u] *= a.scale_s;
      if (a.teacher == kTeacherLogits) {
        const int64_t b = bh / a.H, h = a.zt_heads == 1 ? 0 : bh % a.H;
        zc[s][u] = (i < a.N && j < a.N) ? to_f(zt[((b * a.zt_heads + h) * a.N + i) * a.N + j]) : 0.f;
      }
      zc[s][u] *= a.scale_t;
    }
  });
}

// Forward of block (bh, it): the loss terms and log-sum-exps of rows it·32 … it·32+31 of head bh.
template <class T, class Exec>
RETIKD_HOST_DEVICE void attn_forward_block(Exec& ex, AttnShared& sh, const AttnArgs& a, int64_t bh, int it) {
  AttnRowState st[Exec::kSlots];
  float sc[Exec::kSlots][kAttnCols], zc[Exec::kSlots][kAttnCols];
  ex.each([&](int s, int) { attn_state_init(st[s]); });
  const int tiles = (a.N + kAttnTile - 1) / kAttnTile;
  for (int jt = 0; jt < tiles; ++jt) {
    attn_scores<T>(ex, sh, a, bh, it, jt, sc, zc);
    ex.each([&](int s, int tid) {
      for (int u = 0; u < kAttnCols; ++u) {
        const int j = jt * kAttnTile + attn_lane_of(tid) + kAttnLanes * u;
        if (j < a.N) attn_state_push(st[s], a.loss, sc[s][u], zc[s][u]);
      }
    });
  }
  ex.row_merge(st);
  ex.each([&](int s, int tid) {
    const int i = it * kAttnTile + attn_row_of(tid);
    if (attn_lane_of(tid) != 0 || i >= a.N) return;
    float ls = 0.f, lt = 0.f;
    const float row = attn_state_finish(st[s], a.loss, &ls, &lt);
    const int64_t r = bh * a.N + i;
    a.row_loss[r] = row;
    if (a.loss == kAttnKL) {
      a.lse_s[r] = ls;
      a.lse_t[r] = lt;
    }
  });
}

// ∂L/∂(q_i·k_j) / (∂row/∂s) — the constant factor of every gradient element.
RETIKD_HOST_DEVICE inline float attn_grad_factor(const AttnArgs& a) {
  return a.loss_scale * a.grad_out[0] * a.scale_s;
}

// Fills sh.w with ∂row/∂s for row tile it × column tile jt (0 outside the N×N range).
template <class T, class Exec>
RETIKD_HOST_DEVICE void attn_grad_tile(Exec& ex, AttnShared& sh, const AttnArgs& a, int64_t bh, int it, int jt,
                                       float (*sc)[kAttnCols], float (*zc)[kAttnCols]) {
  attn_scores<T>(ex, sh, a, bh, it, jt, sc, zc);
  ex.each([&](int s, int tid) {
    const int r = attn_row_of(tid), i = it * kAttnTile + r;
    float ls = 0.f, lt = 0.f;
    if (a.loss == kAttnKL && i < a.N) {
      ls = a.lse_s[bh * a.N + i];
      lt = a.lse_t[bh * a.N + i];
    }
    for (int u = 0; u < kAttnCols; ++u) {
      const int jl = attn_lane_of(tid) + kAttnLanes * u, j = jt * kAttnTile + jl;
      sh.w[r][jl] = (i < a.N && j < a.N) ? attn_grad_elem(a.loss, sc[s][u], zc[s][u], ls, lt) : 0.f;
    }
  });
}

// dQ of rows it·32 … +31 of head bh: dq[i] += factor · Σ_j w_ij K_j (this block owns those rows).
template <class T, class Exec>
RETIKD_HOST_DEVICE void attn_dq_block(Exec& ex, AttnShared& sh, const AttnArgs& a, int64_t bh, int it) {
  float sc[Exec::kSlots][kAttnCols], zc[Exec::kSlots][kAttnCols];
  const float factor = attn_grad_factor(a);
  const T* k = static_cast<const T*>(a.k);
  const T* kx = static_cast<const T*>(a.kx);
  const int tiles = (a.N + kAttnTile - 1) / kAttnTile;
  for (int jt = 0; jt < tiles; ++jt) {
    attn_grad_tile<T>(ex, sh, a, bh, it, jt, sc, zc);
    for (int c0 = 0; c0 < a.d; c0 += kAttnChunk) {
      ex.each([&](int, int tid) { attn_stage(sh.b, k, kx, a.key_k, a.threshold, bh, a.N, a.d, jt, c0, tid); });
      ex.each([&](int, int tid) {
        for (int v = 0; v < kAttnLoads; ++v) {
          const int e = tid + v * kAttnThreads, r = e / kAttnChunk, c = e % kAttnChunk;
          const int i = it * kAttnTile + r, col = c0 + c;
          if (i >= a.N || col >= a.d) continue;
          float acc = 0.f;
          for (int jl = 0; jl < kAttnTile; ++jl) acc += sh.w[r][jl] * sh.b[jl][c];
          a.dq[(bh * a.N + i) * a.d + col] += factor * acc;
        }
      });
    }
  }
}

// dK of columns jt·32 … +31 of head bh: dk[j] += factor · Σ_i w_ij Q_i (this block owns those rows of dk).
template <class T, class Exec>
RETIKD_HOST_DEVICE void attn_dk_block(Exec& ex, AttnShared& sh, const AttnArgs& a, int64_t bh, int jt) {
  float sc[Exec::kSlots][kAttnCols], zc[Exec::kSlots][kAttnCols];
  const float factor = attn_grad_factor(a);
  const T* q = static_cast<const T*>(a.q);
  const T* qx = static_cast<const T*>(a.qx);
  const int tiles = (a.N + kAttnTile - 1) / kAttnTile;
  for (int it = 0; it < tiles; ++it) {
    attn_grad_tile<T>(ex, sh, a, bh, it, jt, sc, zc);
    for (int c0 = 0; c0 < a.d; c0 += kAttnChunk) {
      ex.each([&](int, int tid) { attn_stage(sh.a, q, qx, a.key_q, a.threshold, bh, a.N, a.d, it, c0, tid); });
      ex.each([&](int, int tid) {
        for (int v = 0; v < kAttnLoads; ++v) {
          const int e = tid + v * kAttnThreads, jl = e / kAttnChunk, c = e % kAttnChunk;
          const int j = jt * kAttnTile + jl, col = c0 + c;
          if (j >= a.N || col >= a.d) continue;
          float acc = 0.f;
          for (int r = 0; r < kAttnTile; ++r) acc += sh.w[r][jl] * sh.a[r][c];
          a.dk[(bh * a.N + j) * a.d + col] += factor * acc;
        }
      });
    }
  }
}

// The student's gradient element x from the fp32 accumulator: 0 where the element was replaced (its value
// came from the detached teacher).
template <class T>
RETIKD_HOST_DEVICE inline T attn_finish_grad(const float* acc, bool has_source, uint64_t key, uint64_t threshold,
                                             int64_t x) {
  if (threshold != 0 && has_source && cross_mask_replaced(key, static_cast<uint64_t>(x), threshold))
    return from_f<T>(0.f);
  return from_f<T>(acc[x]);
}

// =============================================================================================================
// Group-wise linear projector: per group g, Y[b, n, o] = bias + Σ_c W_g[o, c] · S[b, c, n], the residual
// R = Y − T stored in fp32, L = loss_scale · Σ R² (loss_scale = 1/(B·N·D)); backward with
// factor = 2·loss_scale·g:  dS = factor · W_gᵀ R,  dW_g = factor · R Sᵀ,  db_g = factor · Σ R.
// Grouping channel (G groups): group g maps channels [g·C/G, +C/G) to outputs [g·D/G, +D/G) at every token;
// weight (D, C/G) — the grouped 1×1 convolution's layout. Grouping spatial (M maps, block×block token
// neighbourhoods of the hc×wc grid, group m = ⌊y/block⌋·⌈wc/block⌉ + ⌊x/block⌋): all C → all D; weight
// (M, D, C), bias (M, D). All three products are one tiled GEMM (64×64 tiles, 16-deep K steps, 4×4 per
// thread) with per-problem operand loaders and epilogues.
// =============================================================================================================
enum GlGroupingCode { kGlChannel = 0, kGlSpatial = 1 };

constexpr int kGemmTile = 64;
constexpr int kGemmK = 16;
constexpr int kGemmThreads = 256;
constexpr int kGemmMicro = 4;                          // 4×4 outputs per thread
constexpr int kGemmSide = kGemmTile / kGemmMicro;      // 16 threads per tile side
constexpr int kGemmLoads = kGemmTile * kGemmK / kGemmThreads;  // 4 elements per operand per thread per step

struct GemmShared {
  float a[kGemmK][kGemmTile + 4];  // A tile, k-major (a[k][row])
  float b[kGemmK][kGemmTile + 4];  // B tile, k-major (b[k][col])
  float red[kGemmThreads];         // block loss reduction
};

struct GlArgs {
  int B = 0, C = 0, D = 0, gh = 0, gw = 0;  // batch, channels, token dim, common grid
  int grouping = kGlChannel;
  int groups = 1;   // channel: G; spatial: M (computed from the grid and block)
  int block = 4;    // spatial neighbourhood side
  const void* s = nullptr;     // (B, C, gh, gw) student map
  const void* w = nullptr;     // channel (D, C/G); spatial (M, D, C)
  const void* bias = nullptr;  // channel (D); spatial (M, D); may be null (no bias)
  const void* t = nullptr;     // (B, N, D) teacher tokens
  float* resid = nullptr;      // (B, N, D) fp32, forward output, backward input
  float* block_loss = nullptr; // one partial Σ R² per forward block
  float loss_scale = 1.f;
  const float* grad_out = nullptr;
  void* ds = nullptr;  // (B, C, gh, gw), dtype of s; every element written once
  void* dw = nullptr;  // like w
  void* db = nullptr;  // like bias
};

// Geometry of group g: its input channels, outputs, weight / bias offsets and token set.
struct GlGroup {
  int in_ch, in_off, out_dim, out_off;
  int64_t w_off, b_off;
  int count;             // tokens in the group
  int y0, x0, wx;        // spatial: top-left corner and width of the neighbourhood
};

RETIKD_HOST_DEVICE inline int gl_spatial_cols(const GlArgs& a) { return (a.gw + a.block - 1) / a.block; }

RETIKD_HOST_DEVICE inline GlGroup gl_group(const GlArgs& a, int g) {
  GlGroup r;
  const int N = a.gh * a.gw;
  if (a.grouping == kGlChannel) {
    r.in_ch = a.C / a.groups;
    r.in_off = g * r.in_ch;
    r.out_dim = a.D / a.groups;
    r.out_off = g * r.out_dim;
    r.w_off = static_cast<int64_t>(g) * r.out_dim * r.in_ch;
    r.b_off = r.out_off;
    r.count = N;
    r.y0 = r.x0 = 0;
    r.wx = a.gw;
  } else {
    const int cols = gl_spatial_cols(a), my = g / cols, mx = g % cols;
    r.in_ch = a.C;
    r.in_off = 0;
    r.out_dim = a.D;
    r.out_off = 0;
    r.w_off = static_cast<int64_t>(g) * a.D * a.C;
    r.b_off = static_cast<int64_t>(g) * a.D;
    r.y0 = my * a.block;
    r.x0 = mx * a.block;
    const int hy = (r.y0 + a.block < a.gh ? r.y0 + a.block : a.gh) - r.y0;
    r.wx = (r.x0 + a.block < a.gw ? r.x0 + a.block : a.gw) - r.x0;
    r.count = hy * r.wx;
  }
  return r;
}

// Grid token of the group's local token index (row-major inside the neighbourhood).
RETIKD_HOST_DEVICE inline int gl_token(const GlArgs& a, const GlGroup& g, int local) {
  if (a.grouping == kGlChannel) return local;
  return (g.y0 + local / g.wx) * a.gw + g.x0 + local % g.wx;
}

// 2·loss_scale·g: ∂L/∂R per residual element (g read where it lives: device memory on the GPU, so no host
// synchronisation is needed between the forward and the backward).
RETIKD_HOST_DEVICE inline float gl_grad_factor(const GlArgs& a) { return 2.f * a.loss_scale * a.grad_out[0]; }

// Forward: rows (b, local token), cols = outputs of the group, depth = its input channels.
template <class T>
struct GlForward {
  static constexpr bool kAKFast = false;  // A(row, k) = S[b, c, n]: consecutive rows are consecutive tokens
  static constexpr bool kBKFast = true;   // B(k, col) = W[o, c]: consecutive k are contiguous
  static constexpr bool kHasLoss = true;
  GlArgs a;  // by value: the kernel receives the problem as its parameter
  RETIKD_HOST_DEVICE int rows(const GlGroup& g) const { return a.B * g.count; }
  RETIKD_HOST_DEVICE int cols(const GlGroup& g) const { return g.out_dim; }
  RETIKD_HOST_DEVICE int depth(const GlGroup& g) const { return g.in_ch; }
  RETIKD_HOST_DEVICE float load_a(const GlGroup& g, int row, int k) const {
    const int b = row / g.count, n = gl_token(a, g, row % g.count), N = a.gh * a.gw;
    return to_f(static_cast<const T*>(a.s)[(static_cast<int64_t>(b) * a.C + g.in_off + k) * N + n]);
  }
  RETIKD_HOST_DEVICE float load_b(const GlGroup& g, int k, int col) const {
    return to_f(static_cast<const T*>(a.w)[g.w_off + static_cast<int64_t>(col) * g.in_ch + k]);
  }
  RETIKD_HOST_DEVICE float store(const GlGroup& g, int row, int col, float acc) const {
    const int b = row / g.count, n = gl_token(a, g, row % g.count), N = a.gh * a.gw;
    const float y = acc + (a.bias ? to_f(static_cast<const T*>(a.bias)[g.b_off + col]) : 0.f);
    const int64_t x = (static_cast<int64_t>(b) * N + n) * a.D + g.out_off + col;
    const float r = y - to_f(static_cast<const T*>(a.t)[x]);
    a.resid[x] = r;
    return r * r;
  }
};

// Backward to the student map: rows (b, local token), cols = input channels, depth = outputs.
template <class T>
struct GlBackwardInput {
  static constexpr bool kAKFast = true;   // A(row, k) = R[b, n, o]: consecutive outputs contiguous
  static constexpr bool kBKFast = false;  // B(k, col) = W[o, c]: consecutive channels contiguous
  static constexpr bool kHasLoss = false;
  GlArgs a;  // by value: the kernel receives the problem as its parameter
  RETIKD_HOST_DEVICE int rows(const GlGroup& g) const { return a.B * g.count; }
  RETIKD_HOST_DEVICE int cols(const GlGroup& g) const { return g.in_ch; }
  RETIKD_HOST_DEVICE int depth(const GlGroup& g) const { return g.out_dim; }
  RETIKD_HOST_DEVICE float load_a(const GlGroup& g, int row, int k) const {
    const int b = row / g.count, n = gl_token(a, g, row % g.count), N = a.gh * a.gw;
    return a.resid[(static_cast<int64_t>(b) * N + n) * a.D + g.out_off + k];
  }
  RETIKD_HOST_DEVICE float load_b(const GlGroup& g, int k, int col) const {
    return to_f(static_cast<const T*>(a.w)[g.w_off + static_cast<int64_t>(k) * g.in_ch + col]);
  }
  RETIKD_HOST_DEVICE float store(const GlGroup& g, int row, int col, float acc) const {
    const int b = row / g.count, n = gl_token(a, g, row % g.count), N = a.gh * a.gw;
    static_cast<T*>(a.ds)[(static_cast<int64_t>(b) * a.C + g.in_off + col) * N + n] = from_f<T>(gl_grad_factor(a) * acc);
    return 0.f;
  }
};

// Backward to the weights: rows = outputs, cols = input channels plus one (the bias: input 1), depth =
// (b, local token) pairs of the group.
template <class T>
struct GlBackwardWeight {
  static constexpr bool kAKFast = false;  // A(row, k) = R[b, n, o]: consecutive rows (outputs) contiguous
  static constexpr bool kBKFast = true;   // B(k, col) = S[b, c, n]: consecutive k are consecutive tokens
  static constexpr bool kHasLoss = false;
  GlArgs a;  // by value: the kernel receives the problem as its parameter
  RETIKD_HOST_DEVICE int rows(const GlGroup& g) const { return g.out_dim; }
  RETIKD_HOST_DEVICE int cols(const GlGroup& g) const { return g.in_ch + (a.bias ? 1 : 0); }
  RETIKD_HOST_DEVICE int depth(const GlGroup& g) const { return a.B * g.count; }
  RETIKD_HOST_DEVICE float load_a(const GlGroup& g, int row, int k) const {
    const int b = k / g.count, n = gl_token(a, g, k % g.count), N = a.gh * a.gw;
    return a.resid[(static_cast<int64_t>(b) * N + n) * a.D + g.out_off + row];
  }
  RETIKD_HOST_DEVICE float load_b(const GlGroup& g, int k, int col) const {
    if (col == g.in_ch) return 1.f;
    const int b = k / g.count, n = gl_token(a, g, k % g.count), N = a.gh * a.gw;
    return to_f(static_cast<const T*>(a.s)[(static_cast<int64_t>(b) * a.C + g.in_off + col) * N + n]);
  }
  RETIKD_HOST_DEVICE float store(const GlGroup& g, int row, int col, float acc) const {
    if (col == g.in_ch)
      static_cast<T*>(a.db)[g.b_off + row] = from_f<T>(gl_grad_factor(a) * acc);
    else
      static_cast<T*>(a.dw)[g.w_off + static_cast<int64_t>(row) * g.in_ch + col] = from_f<T>(gl_grad_factor(a) * acc);
    return 0.f;
  }
};

// Largest row / column count of any group (the launch grid covers it; smaller groups skip empty tiles).
template <class P>
RETIKD_HOST_DEVICE inline void gl_extent(const P& p, const GlArgs& a, int* max_rows, int* max_cols) {
  *max_rows = 0;
  *max_cols = 0;
  for (int g = 0; g < a.groups; ++g) {
    const GlGroup gg = gl_group(a, g);
    if (p.rows(gg) > *max_rows) *max_rows = p.rows(gg);
    if (p.cols(gg) > *max_cols) *max_cols = p.cols(gg);
  }
}

// One 64×64 output tile (rt, ct) of group g's product; returns nothing, writes through p.store and, for the
// forward, the tile's Σ R² to *block_loss (0 for an empty tile).
template <class P, class Exec>
RETIKD_HOST_DEVICE void gemm_block(Exec& ex, GemmShared& sh, const P& p, const GlArgs& a, int g, int rt, int ct,
                                   float* block_loss) {
  const GlGroup gg = gl_group(a, g);
  const int M = p.rows(gg), Nc = p.cols(gg), K = p.depth(gg);
  const bool empty = rt * kGemmTile >= M || ct * kGemmTile >= Nc;  // uniform over the block
  float acc[Exec::kSlots][kGemmMicro][kGemmMicro];
  float part[Exec::kSlots];
  ex.each([&](int s, int) {
    part[s] = 0.f;
    for (int i = 0; i < kGemmMicro; ++i)
      for (int j = 0; j < kGemmMicro; ++j) acc[s][i][j] = 0.f;
  });
  if (!empty) {
    for (int k0 = 0; k0 < K; k0 += kGemmK) {
      ex.each([&](int, int tid) {
        for (int v = 0; v < kGemmLoads; ++v) {
          const int e = tid + v * kGemmThreads;
          // k-fast operands are read along k by consecutive threads, the others along rows / columns.
          const int ka = P::kAKFast ? e % kGemmK : e / kGemmTile, ra = P::kAKFast ? e / kGemmK : e % kGemmTile;
          const int kb = P::kBKFast ? e % kGemmK : e / kGemmTile, cb = P::kBKFast ? e / kGemmK : e % kGemmTile;
          const int row = rt * kGemmTile + ra, col = ct * kGemmTile + cb;
          sh.a[ka][ra] = (row < M && k0 + ka < K) ? p.load_a(gg, row, k0 + ka) : 0.f;
          sh.b[kb][cb] = (col < Nc && k0 + kb < K) ? p.load_b(gg, k0 + kb, col) : 0.f;
        }
      });
      ex.each([&](int s, int tid) {
        const int ty = tid / kGemmSide, tx = tid % kGemmSide;
        for (int kk = 0; kk < kGemmK; ++kk) {
          float av[kGemmMicro], bv[kGemmMicro];
          for (int i = 0; i < kGemmMicro; ++i) av[i] = sh.a[kk][ty + kGemmSide * i];
          for (int j = 0; j < kGemmMicro; ++j) bv[j] = sh.b[kk][tx + kGemmSide * j];
          for (int i = 0; i < kGemmMicro; ++i)
            for (int j = 0; j < kGemmMicro; ++j) acc[s][i][j] += av[i] * bv[j];
        }
      });
    }
    ex.each([&](int s, int tid) {
      const int ty = tid / kGemmSide, tx = tid % kGemmSide;
      for (int i = 0; i < kGemmMicro; ++i)
        for (int j = 0; j < kGemmMicro; ++j) {
          const int row = rt * kGemmTile + ty + kGemmSide * i, col = ct * kGemmTile + tx + kGemmSide * j;
          if (row < M && col < Nc) part[s] += p.store(gg, row, col, acc[s][i][j]);
        }
    });
  }
  if (!P::kHasLoss) return;
  // Deterministic tree over the block's threads (same order on the GPU and in the emulation).
  ex.each([&](int s, int tid) { sh.red[tid] = part[s]; });
  for (int stride = kGemmThreads / 2; stride > 0; stride /= 2)
    ex.each([&](int, int tid) {
      if (tid < stride) sh.red[tid] += sh.red[tid + stride];
    });
  ex.each([&](int, int tid) {
    if (tid == 0) *block_loss = sh.red[0];
  });
}

}  // namespace fused
}  // namespace cuda
}  // namespace retikd
