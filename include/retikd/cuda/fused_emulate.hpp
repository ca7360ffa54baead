// retikd/cuda/fused_emulate.hpp — runs the block programs of retikd/cuda/fused_tiles.hpp serially on the CPU:
// every block of the launch grid, every thread of a block phase by phase, barriers as phase boundaries, the
// warp-shuffle row merge as the same butterfly over per-thread slots. Host pointers throughout.
//
// Why: this is how the fused kernels' algorithm is proven where no GPU exists (tests/test_fused_reference.cpp
// compares these results with the unfused kd/ ops); kernels/fused.cu launches the identical programs.
// Deliberately slow (one core, 256 emulated threads per block): a test and debugging tool, not a CPU path.
// C++14, host only.
#pragma once

#include <cstdint>
#include <vector>

#include "retikd/cuda/fused_tiles.hpp"

namespace retikd {
namespace cuda {
namespace fused {

static_assert(kAttnThreads == kGemmThreads, "the CPU executor serves both block programs");

// The CPU executor: one slot per thread; a phase runs every thread in tid order.
struct CpuExec {
  static constexpr int kSlots = kAttnThreads;
  int loss = kAttnKL;
  template <class F>
  void each(F f) {
    for (int t = 0; t < kSlots; ++t) f(t, t);
  }
  // The GPU merges with __shfl_xor_sync at offsets 1, 2, 4; lane t computes merge(own, lane t ^ off).
  void row_merge(AttnRowState* st) const {
    std::vector<AttnRowState> tmp(kSlots);
    for (int off = 1; off < kAttnLanes; off <<= 1) {
      for (int t = 0; t < kSlots; ++t) tmp[static_cast<std::size_t>(t)] = st[t];
      for (int t = 0; t < kSlots; ++t)
        st[t] = attn_state_merge(tmp[static_cast<std::size_t>(t)], tmp[static_cast<std::size_t>(t ^ off)], loss);
    }
  }
};

inline int attn_tiles(const AttnArgs& a) { return (a.N + kAttnTile - 1) / kAttnTile; }

// Forward: fills a.row_loss (and a.lse_s / a.lse_t for KL) and returns L = loss_scale · Σ rows.
template <class T>
double emulate_attn_forward(const AttnArgs& a) {
  CpuExec ex;
  ex.loss = a.loss;
  AttnShared sh;
  const int tiles = attn_tiles(a);
  for (int64_t bh = 0; bh < static_cast<int64_t>(a.B) * a.H; ++bh)
    for (int it = 0; it < tiles; ++it) attn_forward_block<T>(ex, sh, a, bh, it);
  double sum = 0.0;
  for (int64_t r = 0; r < static_cast<int64_t>(a.B) * a.H * a.N; ++r) sum += a.row_loss[r];
  return sum * a.loss_scale;
}

// Backward: a.dq / a.dk must be zeroed fp32 buffers (the same buffer when Q and K are one tensor); the
// student gradients land in dq_out / dk_out (dtype T), masked where the cross replacement took the teacher's.
template <class T>
void emulate_attn_backward(const AttnArgs& a, T* dq_out, T* dk_out) {
  CpuExec ex;
  ex.loss = a.loss;
  AttnShared sh;
  const int tiles = attn_tiles(a);
  const int64_t heads = static_cast<int64_t>(a.B) * a.H, n = heads * a.N * a.d;
  for (int64_t bh = 0; bh < heads; ++bh)
    for (int it = 0; it < tiles; ++it) attn_dq_block<T>(ex, sh, a, bh, it);
  for (int64_t bh = 0; bh < heads; ++bh)
    for (int jt = 0; jt < tiles; ++jt) attn_dk_block<T>(ex, sh, a, bh, jt);
  for (int64_t x = 0; x < n; ++x) dq_out[x] = attn_finish_grad<T>(a.dq, a.qx != nullptr, a.key_q, a.threshold, x);
  if (dk_out != dq_out)
    for (int64_t x = 0; x < n; ++x) dk_out[x] = attn_finish_grad<T>(a.dk, a.kx != nullptr, a.key_k, a.threshold, x);
}

// Runs gemm_block over the whole launch grid of problem p; returns Σ of the block losses (forward).
template <class P>
double emulate_gemm(const P& p, const GlArgs& a) {
  CpuExec ex;
  GemmShared sh;
  int max_rows = 0, max_cols = 0;
  gl_extent(p, a, &max_rows, &max_cols);
  const int rts = (max_rows + kGemmTile - 1) / kGemmTile, cts = (max_cols + kGemmTile - 1) / kGemmTile;
  double sum = 0.0;
  for (int g = 0; g < a.groups; ++g)
    for (int rt = 0; rt < rts; ++rt)
      for (int ct = 0; ct < cts; ++ct) {
        float part = 0.f;
        gemm_block(ex, sh, p, a, g, rt, ct, &part);
        sum += part;
      }
  return sum;
}

// Forward: fills a.resid and returns L = loss_scale · Σ R².
template <class T>
double emulate_gl_forward(const GlArgs& a) {
  GlForward<T> p{a};
  return emulate_gemm(p, a) * a.loss_scale;
}

// Backward: writes a.ds, a.dw and a.db (when a.bias is set).
template <class T>
void emulate_gl_backward(const GlArgs& a) {
  GlBackwardInput<T> pi{a};
  emulate_gemm(pi, a);
  GlBackwardWeight<T> pw{a};
  emulate_gemm(pw, a);
}

}  // namespace fused
}  // namespace cuda
}  // namespace retikd
