// retikd/ops/dispatch.hpp — how an op front end chooses its back end: the device / dtype tests every op
// family shares, and the loud error of an op that has no CUDA path.
//
// The layout of ops/ (docs/architecture.md): ops/<family>.hpp is the front end (validates once, records
// autograd) and calls either ops/cpu/<family>.hpp (the CPU reference and its fast paths) or
// ops/cuda/<family>.hpp (the only ops/ headers that call cuda/*.hpp launchers). This header holds the one
// `#ifdef RETIKD_WITH_CUDA` of that seam: in a build without the CUDA library no tensor can live on a GPU,
// gpu_float() is false, and the CUDA back ends' bodies sit in `if constexpr (kCudaBuilt)` so they name no
// launcher symbol there (C++17: a discarded statement odr-uses nothing).
#pragma once

#include "retikd/core/error.hpp"
#include "retikd/core/tensor.hpp"

namespace retikd {
namespace ops {

#ifdef RETIKD_WITH_CUDA
constexpr bool kCudaBuilt = true;
#else
constexpr bool kCudaBuilt = false;
#endif

// The CUDA kernels compute in float32 and store float32 or float16; float64 (gradcheck) stays on the CPU.
inline bool gpu_float(const Tensor& t) {
  return kCudaBuilt && t.is_cuda() && (t.dtype() == DType::float32 || t.dtype() == DType::float16);
}
// Both operands on the same GPU with the same float dtype (otherwise the CPU path's checks name the mismatch).
inline bool gpu_float(const Tensor& a, const Tensor& b) {
  return gpu_float(a) && a.device() == b.device() && a.dtype() == b.dtype();
}

// CPU-only ops (until their CUDA path lands) say so instead of reading device memory from the host.
inline void check_cpu(const char* op, const Tensor& t) {
  RETIKD_CHECK(t.is_cpu(), op, ": no CUDA implementation yet for ", t.describe(),
               " (move it to the CPU with .to(Device::cpu()))");
}

// Reached only when a CUDA back end is called in a build without CUDA, which gpu_float() rules out.
[[noreturn]] inline void cuda_not_built(const char* op) {
  throw Error(std::string(op) + ": this build of retikd has no CUDA support (configure with RETIKD_CUDA=ON)");
}

}  // namespace ops
}  // namespace retikd
