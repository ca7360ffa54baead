// retikd/cuda/fused.hpp — launchers of the two fused projector kernels (kernels/fused.cu): the partitioned
// cross-attention loss (flash-style rows, KL or MSE, hash-decided partial replacement, forward and backward)
// and the group-wise linear projector with its MSE fused into the GEMM epilogue. The block programs and the
// meaning of every AttnArgs / GlArgs field are in retikd/cuda/fused_tiles.hpp.
//
// Each kernel has a can_implement check; callers (retikd/kd/fused.hpp) fall back to the unfused kd/ ops, with a
// logged reason, whenever it says no. C++14, no CUDA types (host C++17 code includes this without nvcc).
// All launches run on `device`'s default stream; dtype is DTypeCode kFloat32 or kFloat16 for every tensor
// operand of one call (accumulation is always fp32).
#pragma once

#include <cstdint>
#include <string>

#include "retikd/cuda/dtype_code.hpp"
#include "retikd/cuda/fused_tiles.hpp"

namespace retikd {
namespace cuda {

// How the launchers below do the work; both routes compute the same loss and gradients (fp32 rounding apart):
//   kFusedTiled  the flash-style block programs of fused_tiles.hpp: no (B, H, N, N) score tensor and no GL
//                output Y in memory, fp32 or fp16 storage. The route for small-memory devices (the Jetson Nano)
//                and the only one for fp16.
//   kFusedGemm   float32 only: the products as cuBLAS strided-batched GEMMs (TF32 when cuda::allow_tf32()),
//                the softmax / KL / MSE and its gradient (PCA) or the residual and loss (GL) in one row /
//                epilogue kernel of ours, the PCA scores held in a workspace of B·H·N·N floats (twice that with
//                a per-head teacher Q/K). Where GEMM throughput is high this is several times faster: on an H100
//                the tiled PCA loss kernel took 1.69 ms at the torch_anchor.py shape (docs/results.md).
//   kFusedAuto   (default) kFusedGemm for float32 on compute capability ≥ 7.0 when the workspace is at most
//                1 GiB, else kFusedTiled.
// The environment variable RETIKD_FUSED_STRATEGY (auto, tiled, gemm) sets the initial value.
enum FusedStrategy { kFusedAuto = 0, kFusedTiled = 1, kFusedGemm = 2 };
void set_fused_strategy(int strategy);
int fused_strategy();
// The route (kFusedTiled or kFusedGemm) the launchers take for this problem on `device`.
int fused_attn_route(const fused::AttnArgs& a, int dtype, int device);
int fused_gl_route(const fused::GlArgs& a, int dtype, int device);

struct FusedAttnShape {
  int64_t B = 0, H = 0, N = 0, d = 0, dt = 0;
  int teacher = fused::kTeacherLogits;
  int64_t zt_heads = 1;
  int dtype = kFloat32;
};

// Whether fused_attn_* handle this shape; when not, *why (if given) names the limit that failed.
bool fused_attn_can_implement(const FusedAttnShape& s, std::string* why);

// Forward: writes a.row_loss (and a.lse_s / a.lse_t for KL; B·H·N floats each, device) and the scalar
// loss L = loss_scale · Σ rows to *loss_out (one device float).
void fused_attn_forward(const fused::AttnArgs& a, int dtype, float* loss_out, int device);

// Backward: needs the forward's a.lse_s / a.lse_t and a.grad_out (one device float). Writes the student
// gradients, in `dtype`, to dq_out and dk_out ((B, H, N, d) each; the same pointer when Q and K are one tensor:
// then the sum of both). a.dq / a.dk are ignored: fp32 accumulators are allocated here.
void fused_attn_backward(const fused::AttnArgs& a, int dtype, void* dq_out, void* dk_out, int device);

struct FusedGlShape {
  int64_t B = 0, C = 0, D = 0, gh = 0, gw = 0;
  int grouping = fused::kGlChannel;
  int64_t groups = 1, block = 4;
  int dtype = kFloat32;
};

bool fused_gl_can_implement(const FusedGlShape& s, std::string* why);

// Forward: writes the fp32 residual a.resid (B, N, D) and L = loss_scale · Σ R² to *loss_out.
void fused_gl_forward(const fused::GlArgs& a, int dtype, float* loss_out, int device);

// Backward: from a.resid and a.grad_out writes a.ds, a.dw and (when a.bias is set) a.db.
void fused_gl_backward(const fused::GlArgs& a, int dtype, int device);

}  // namespace cuda
}  // namespace retikd
