// retikd/cuda/blas.hpp — the cuBLAS GEMM every GPU matrix product goes through (kernels/blas.cu): row-major,
// strided-batched, fp32 (exact fp32, or TF32 tensor cores where the card has them and the user allows it) and
// fp16 storage with fp32 accumulation. ops/matmul.hpp calls it for tensors on a GPU.
//
// C++14, no CUDA types. One cuBLAS handle per device, created on first use, bound to the default stream.
#pragma once

#include <cstdint>

#include "retikd/cuda/dtype_code.hpp"

namespace retikd {
namespace cuda {

// TF32 tensor-core math for float32 products on sm_80+, off by default: results then match the CPU within fp32
// rounding. set_allow_tf32 sets it for cuBLAS GEMMs and cuDNN convolutions together; set_allow_tf32_conv for
// convolutions alone — PyTorch's defaults are TF32 convolutions (torch.backends.cudnn.allow_tf32 = True) with
// strict fp32 matmuls (torch.backends.cuda.matmul.allow_tf32 = False), i.e. set_allow_tf32_conv(true).
void set_allow_tf32(bool allow);
bool allow_tf32();  // GEMMs
void set_allow_tf32_conv(bool allow);
bool allow_tf32_conv();

// Row-major C[b] = alpha · op(A[b]) · op(B[b]) + beta · C[b] for b < batch, with op(X) = Xᵀ when trans_x;
// op(A) is M×K, op(B) K×N, C M×N with leading dimension ldc; lda / ldb are the row strides of A and B as
// stored; stride_* are batch strides in elements (0: shared by the batch). dtype kFloat32 or kFloat16 (fp32
// accumulation, alpha / beta in fp32). M, N, K, batch and the leading dimensions must fit in int.
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const void* A, int64_t lda,
          int64_t stride_a, const void* B, int64_t ldb, int64_t stride_b, float beta, void* C, int64_t ldc,
          int64_t stride_c, int64_t batch, int dtype, int device);

}  // namespace cuda
}  // namespace retikd
