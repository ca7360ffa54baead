// retikd/ops/cuda/resize.hpp — the CUDA back end of the resize family (ops/resize.hpp): bilinear resize
// forward and backward (kernels/pool_resize.cu), the CPU path's tap formula evaluated in float32 per output
// (cuda/op_programs.hpp); the backward scatters with float atomics. Bicubic resize needs no back end of its
// own: it is two matmuls, which have theirs.
//
// The front end has checked the shapes; it sends every GPU tensor here, so these functions name the dtypes
// they lack. The kernels take int sizes, hence the size check of the forward before the conversion.
// Bodies sit in `if constexpr (kCudaBuilt)` (ops/dispatch.hpp says why): a CPU-only build compiles this header
// and links no launcher.
#pragma once

#include <cstdint>

#include "retikd/core/error.hpp"
#include "retikd/core/tensor.hpp"
#include "retikd/cuda/nn_ops.hpp"
#include "retikd/ops/dispatch.hpp"

namespace retikd {
namespace ops {
namespace cuda_backend {

// x (N, C, H, W) resized to (N, C, out_h, out_w).
inline Tensor interpolate_bilinear(const Tensor& x, int64_t out_h, int64_t out_w, bool align_corners) {
  if constexpr (kCudaBuilt) {
    const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    RETIKD_CHECK(x.dtype() == DType::float32 || x.dtype() == DType::float16,
                 "interpolate_bilinear: no CUDA path for ", x.describe());
    RETIKD_CHECK(H < (1 << 30) && W < (1 << 30) && out_h < (1 << 30) && out_w < (1 << 30),
                 "interpolate_bilinear: sizes too large for the CUDA path");
    Tensor y = Tensor::empty({N, C, out_h, out_w}, x.dtype(), x.device());
    const Tensor xc = x.contiguous();
    cuda::bilinear_forward(xc.raw_data(), y.raw_data(), N * C, static_cast<int>(H), static_cast<int>(W),
                           static_cast<int>(out_h), static_cast<int>(out_w), align_corners, static_cast<int>(x.dtype()),
                           x.device().index);
    return y;
  }
  cuda_not_built("interpolate_bilinear");
}

// Input gradient (x_shape (N, C, H, W)) of the resize from grad_out (N, C, out_h, out_w).
inline Tensor interpolate_bilinear_backward(const Tensor& grad_out, const Shape& x_shape, bool align_corners) {
  if constexpr (kCudaBuilt) {
    const int64_t out_h = grad_out.size(2), out_w = grad_out.size(3);
    const int64_t N = x_shape[0], C = x_shape[1], H = x_shape[2], W = x_shape[3];
    RETIKD_CHECK(grad_out.dtype() == DType::float32 || grad_out.dtype() == DType::float16,
                 "interpolate_bilinear backward: no CUDA path for ", grad_out.describe());
    Tensor gx = Tensor::empty(x_shape, grad_out.dtype(), grad_out.device());
    const Tensor gc = grad_out.contiguous();
    cuda::bilinear_backward(gc.raw_data(), gx.raw_data(), N * C, static_cast<int>(H), static_cast<int>(W),
                            static_cast<int>(out_h), static_cast<int>(out_w), align_corners,
                            static_cast<int>(gc.dtype()), gc.device().index);
    return gx;
  }
  cuda_not_built("interpolate_bilinear backward");
}

}  // namespace cuda_backend
}  // namespace ops
}  // namespace retikd
