// kernels/cuda_check.cuh — private error checking for kernels/: every CUDA runtime and cuBLAS call goes
// through RETIKD_CUDA_CHECK / RETIKD_CUBLAS_CHECK, which throw std::runtime_error naming the call,
// file:line and the error string; RETIKD_CUDA_CHECK_LAUNCH() follows every kernel launch (in debug builds
// it reports a bad launch configuration at the launch site instead of at some later call).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace retikd {
namespace cuda {
namespace detail {

inline void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line) {
  throw std::runtime_error(std::string("CUDA error: ") + call + " failed at " + file + ":" +
                           std::to_string(line) + ": " + cudaGetErrorString(err) + " (" +
                           cudaGetErrorName(err) + ")");
}

// cublasGetStatusString only exists from CUDA 11.4; the Jetson has 10.2.
inline const char* cublas_status_name(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "unknown cuBLAS status";
  }
}

inline void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  throw std::runtime_error(std::string("cuBLAS error: ") + call + " failed at " + file + ":" +
                           std::to_string(line) + ": " + cublas_status_name(status) + " (" +
                           std::to_string(static_cast<int>(status)) + ")");
}

}  // namespace detail
}  // namespace cuda
}  // namespace retikd

#define RETIKD_CUDA_CHECK(call)                                                         \
  do {                                                                                  \
    const cudaError_t retikd_err_ = (call);                                             \
    if (retikd_err_ != cudaSuccess)                                                     \
      ::retikd::cuda::detail::throw_cuda_error(retikd_err_, #call, __FILE__, __LINE__); \
  } while (0)

#define RETIKD_CUBLAS_CHECK(call)                                                            \
  do {                                                                                       \
    const cublasStatus_t retikd_status_ = (call);                                            \
    if (retikd_status_ != CUBLAS_STATUS_SUCCESS)                                             \
      ::retikd::cuda::detail::throw_cublas_error(retikd_status_, #call, __FILE__, __LINE__); \
  } while (0)

#if defined(NDEBUG)
#define RETIKD_CUDA_CHECK_LAUNCH() \
  do {                             \
  } while (0)
#else
#define RETIKD_CUDA_CHECK_LAUNCH() RETIKD_CUDA_CHECK(cudaGetLastError())
#endif
