// retikd/cuda/nn_ops.hpp — launchers of the reduction / normalisation / pooling / resize / loss kernels
// (kernels/row_ops.cu, norm.cu, pool_resize.cu, loss_rows.cu) that ops/reduce.hpp, norm.hpp, pool.hpp,
// resize.hpp, loss.hpp and elementwise.hpp's scalar forms call for tensors on a GPU.
//
// C++14, no CUDA types: contiguous device buffers, DTypeCode ints (float32 / float16 unless a launcher says
// float32 only), the default stream of `device`. Statistics and every sum accumulate in float32; saved
// statistics (batch / layer norm mean and 1/std, log-sum-exps) are float32 buffers whatever the storage dtype.
// Reductions use fixed-order block trees (no atomics) except the bilinear backward, which scatters with float
// atomicAdd (sm_53 has it for float) into a float32 buffer.
#pragma once

#include <cstdint>

#include "retikd/cuda/dtype_code.hpp"
#include "retikd/cuda/op_programs.hpp"

namespace retikd {
namespace cuda {

// out[i] = alpha·x[i] + beta (the scalar forms of ops/elementwise.hpp).
void affine(const void* x, void* out, int64_t n, float alpha, float beta, int dtype, int device);

enum RowReduceOp { kRowSum = 0, kRowMax = 1 };
// out[r] = scale·Σ_j x[r, j] (kRowSum) or max_j x[r, j] (kRowMax, NaN wins as on the CPU) for rows of n.
void reduce_rows(const void* x, void* out, int64_t rows, int64_t n, int op, float scale, int dtype, int device);
// gx[r, j] = scale·g[r] (sum / mean / global-average-pool backward; rows = 1 broadcasts a 0-d gradient).
void row_broadcast(const void* g, void* gx, int64_t rows, int64_t n, float scale, int dtype, int device);

// Batch norm over x (N, C, S). weight / bias may be null (1 / 0). Training: batch mean and biased variance into
// save_mean / save_invstd (float32, C), running_mean / running_var (float32, may be null) updated with the
// unbiased variance; evaluation: save_* computed from the running statistics.
void batch_norm_forward(const void* x, const void* weight, const void* bias, float* running_mean,
                        float* running_var, float* save_mean, float* save_invstd, void* y, int64_t N, int64_t C,
                        int64_t S, bool training, float momentum, float eps, int dtype, int device);
// Gradients; gx / gw / gb may be null when not wanted.
void batch_norm_backward(const void* g, const void* x, const void* weight, const float* save_mean,
                         const float* save_invstd, void* gx, void* gw, void* gb, int64_t N, int64_t C, int64_t S,
                         bool training, int dtype, int device);

// Layer norm over rows (R, D); weight / bias (D) may be null.
void layer_norm_forward(const void* x, const void* weight, const void* bias, float* save_mean, float* save_invstd,
                        void* y, int64_t R, int64_t D, float eps, int dtype, int device);
void layer_norm_backward(const void* g, const void* x, const void* weight, const float* save_mean,
                         const float* save_invstd, void* gx, void* gw, void* gb, int64_t R, int64_t D, int dtype,
                         int device);

// Max pool on (planes, H, W); indices int64 (flat h·W + w within the plane, PyTorch's convention).
void max_pool2d_forward(const Pool2dDims& d, const void* x, void* y, int64_t* indices, int dtype, int device);
// gx (planes, in_plane) = each output gradient (planes, out_plane) added at its recorded index (float atomics
// into a float32 buffer: the op's signature carries no window geometry for a gather).
void max_pool2d_backward(const void* gy, const int64_t* indices, void* gx, int64_t planes, int64_t in_plane,
                         int64_t out_plane, int dtype, int device);

// Bilinear resize (planes, H, W) → (planes, OH, OW), PyTorch's align_corners semantics.
void bilinear_forward(const void* x, void* y, int64_t planes, int H, int W, int OH, int OW, bool align_corners,
                      int dtype, int device);
void bilinear_backward(const void* gy, void* gx, int64_t planes, int H, int W, int OH, int OW, bool align_corners,
                       int dtype, int device);

// Distillation KL over rows (R, C) of float32 logits (ops::kl_div): terms (R, C) = p·(log p − log q) with
// p = softmax(t/τ), q = softmax(s/τ); lse_s / lse_t (R) float32.
void kl_rows_forward(const float* s, const float* t, float* terms, float* lse_s, float* lse_t, int64_t R, int64_t C,
                     float inv_tau, int device);
// G (R, C): the gradient reaching each term; gs / gt may be null.
void kl_rows_backward(const float* s, const float* t, const float* lse_s, const float* lse_t, const float* G,
                      float* gs, float* gt, int64_t R, int64_t C, float inv_tau, int device);

// Cross-entropy rows of float32 logits z (N, C) against int64 targets (device); weight (C) may be null.
// per_row[i] = ℓ_i (0 where ignored), lse[i] = log Σ exp z_i.
void ce_rows_forward(const float* z, const int64_t* targets, const float* weight, float* lse, float* per_row,
                     int64_t N, int64_t C, float label_smoothing, int64_t ignore_index, int device);
// gx (N, C); g is per-row (N) when per_row, else one element scaled by inv_denominator.
void ce_rows_backward(const float* g, bool per_row, float inv_denominator, const float* z, const float* lse,
                      const int64_t* targets, const float* weight, float weight_sum, float* gx, int64_t N, int64_t C,
                      float label_smoothing, int64_t ignore_index, int device);

}  // namespace cuda
}  // namespace retikd
