// retikd/ops/cuda/matmul.hpp — the CUDA back end of the matrix products (ops/matmul.hpp): the cuBLAS GEMM of
// retikd/cuda/blas.hpp (fp32, TF32 if cuda::set_allow_tf32, or fp16 with fp32 accumulation).
//
// The front end checks the operands, broadcasts the batch and lays each operand out as the GEMM reads it
// (transpose flag, leading dimension, batch stride: its GemmOperand), exactly as for cpu::gemm; it hands those
// layouts over as GemmMatrix values (ops/gemm_matrix.hpp), so this header needs none of ops/matmul.hpp. linear's bias add and bias
// gradient are built by the front end from same-shape adds and GEMMs, so they need nothing here.
// Bodies sit in `if constexpr (kCudaBuilt)` (ops/dispatch.hpp says why): a CPU-only build compiles this
// header and links no launcher.
#pragma once

#include <cstdint>

#include "retikd/core/tensor.hpp"
#include "retikd/cuda/blas.hpp"
#include "retikd/ops/dispatch.hpp"
#include "retikd/ops/gemm_matrix.hpp"

namespace retikd {
namespace ops {
namespace cuda_backend {

// The operand layout both back ends take (ops/gemm_matrix.hpp).
using ops::GemmMatrix;

// out[b] = A[b] · B[b] (M×K · K×N) for b < B, or out[b] += A[b] · B[b] when `accumulate`. out is contiguous
// (B, M, N) in the operands' dtype on their GPU; the caller checked shapes, dtypes and devices.
inline Tensor matmul(const GemmMatrix& ga, const GemmMatrix& gb, int64_t M, int64_t N, int64_t K, int64_t B,
                     bool accumulate, Tensor out) {
  if constexpr (kCudaBuilt) {
    if (K == 0) {
      if (!accumulate) out.fill_(0.0);
      return out;
    }
    const float beta = accumulate ? 1.f : 0.f;
    if (B > 1 && gb.batch_stride == 0 && !ga.trans && ga.batch_stride == M * ga.ld) {
      // A right operand shared by the batch over evenly spaced left rows (a Linear over (B, tokens, in)):
      // one (B·M)×K · K×N GEMM. cuBLAS runs it far faster than B small strided-batched ones (M = 197 for a
      // ViT's tokens): it tiles over all B·M rows at once.
      cuda::gemm(false, gb.trans, B * M, N, K, 1.f, ga.data, ga.ld, 0, gb.data, gb.ld, 0, beta, out.raw_data(), N, 0,
                 1, static_cast<int>(out.dtype()), out.device().index);
      return out;
    }
    cuda::gemm(ga.trans, gb.trans, M, N, K, 1.f, ga.data, ga.ld, ga.batch_stride, gb.data, gb.ld, gb.batch_stride,
               beta, out.raw_data(), N, M * N, B, static_cast<int>(out.dtype()), out.device().index);
    return out;
  }
  cuda_not_built("matmul");
}

}  // namespace cuda_backend
}  // namespace ops
}  // namespace retikd
