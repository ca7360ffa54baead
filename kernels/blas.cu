// kernels/blas.cu — cuBLAS behind include/retikd/cuda/blas.hpp: a per-device handle, the row-major →
// column-major mapping (C = A·B in row-major is Cᵀ = Bᵀ·Aᵀ in column-major, so the operands swap), and the
// compute type: fp32, TF32 when allowed (cuBLAS 11+ only; the Jetson's CUDA 10.2 has no TF32 and no sm_80),
// fp16 inputs with fp32 accumulation. Every cuBLAS status goes through RETIKD_CUBLAS_CHECK.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <atomic>
#include <climits>
#include <mutex>
#include <stdexcept>
#include <string>

#include "cuda_check.cuh"
#include "launch.cuh"
#include "retikd/cuda/blas.hpp"

namespace retikd {
namespace cuda {
namespace {

std::atomic<bool> g_allow_tf32{false};
std::atomic<bool> g_allow_tf32_conv{false};

cublasHandle_t handle_for(int device) {
  constexpr int kMaxDevices = 64;
  static std::mutex m;
  static cublasHandle_t handles[kMaxDevices] = {};
  if (device < 0 || device >= kMaxDevices) throw std::invalid_argument("retikd::cuda::gemm: bad device index");
  std::lock_guard<std::mutex> lock(m);
  if (!handles[device]) RETIKD_CUBLAS_CHECK(cublasCreate(&handles[device]));
  return handles[device];
}

int as_int(const char* what, int64_t v) {
  if (v < 0 || v > INT_MAX) throw std::invalid_argument(std::string("retikd::cuda::gemm: ") + what + " " +
                                                        std::to_string(v) + " does not fit cuBLAS's int");
  return static_cast<int>(v);
}

}  // namespace

void set_allow_tf32(bool allow) {
  g_allow_tf32.store(allow);
  g_allow_tf32_conv.store(allow);
}
bool allow_tf32() { return g_allow_tf32.load(); }
void set_allow_tf32_conv(bool allow) { g_allow_tf32_conv.store(allow); }
bool allow_tf32_conv() { return g_allow_tf32_conv.load(); }

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const void* A, int64_t lda,
          int64_t stride_a, const void* B, int64_t ldb, int64_t stride_b, float beta, void* C, int64_t ldc,
          int64_t stride_c, int64_t batch, int dtype, int device) {
  if (dtype != kFloat32 && dtype != kFloat16)
    throw std::invalid_argument("retikd::cuda::gemm: dtype " + std::to_string(dtype) + " is not float32 or float16");
  if (M == 0 || N == 0 || batch == 0) return;
  detail::DeviceGuard guard(device);
  cublasHandle_t h = handle_for(device);
  RETIKD_CUBLAS_CHECK(cublasSetStream(h, detail::current_stream()));
  const cudaDataType_t type = dtype == kFloat32 ? CUDA_R_32F : CUDA_R_16F;
  // Column-major view: C' (N×M) = op(B)' (N×K) · op(A)' (K×M); a row-major matrix with row stride ld is the
  // column-major transpose with the same leading dimension.
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
#if defined(CUBLAS_VER_MAJOR) && CUBLAS_VER_MAJOR >= 11
  const cublasComputeType_t compute =
      (dtype == kFloat32 && g_allow_tf32.load()) ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
#else
  const cudaDataType_t compute = CUDA_R_32F;  // cuBLAS 10: fp32 accumulation, no TF32
#endif
  if (batch == 1) {  // the plain GEMM: cuBLAS's heuristics for it are the better tuned ones
    RETIKD_CUBLAS_CHECK(cublasGemmEx(h, op_b, op_a, as_int("N", N), as_int("M", M), as_int("K", K), &alpha, B, type,
                                     as_int("ldb", ldb), A, type, as_int("lda", lda), &beta, C, type,
                                     as_int("ldc", ldc), compute, CUBLAS_GEMM_DEFAULT));
    return;
  }
  RETIKD_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      h, op_b, op_a, as_int("N", N), as_int("M", M), as_int("K", K), &alpha, B, type, as_int("ldb", ldb),
      static_cast<long long>(stride_b), A, type, as_int("lda", lda), static_cast<long long>(stride_a), &beta, C,
      type, as_int("ldc", ldc), static_cast<long long>(stride_c), as_int("batch", batch), compute,
      CUBLAS_GEMM_DEFAULT));
}

}  // namespace cuda
}  // namespace retikd
