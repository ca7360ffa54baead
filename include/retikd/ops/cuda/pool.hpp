// retikd/ops/cuda/pool.hpp — the CUDA back end of the pool family (ops/pool.hpp): max pool forward and
// backward (kernels/pool_resize.cu), and the global case of the adaptive average pool (output 1×1) as a row mean
// over each plane (kernels/row_ops.cu), its backward a broadcast. avg_pool2d and the other adaptive sizes have
// no CUDA path.
//
// The front end has checked the shapes and computed the output size; it sends every GPU tensor of max pool
// here (these functions name the dtypes they lack), and only float32 / float16 ones of the global average
// pool. The kernels take int sizes (cuda::Pool2dDims), hence the size check before the conversion.
// Bodies sit in `if constexpr (kCudaBuilt)` (ops/dispatch.hpp says why): a CPU-only build compiles this header
// and links no launcher.
#pragma once

#include <cstdint>
#include <utility>

#include "retikd/core/tensor.hpp"
#include "retikd/cuda/nn_ops.hpp"
#include "retikd/ops/common.hpp"
#include "retikd/ops/dispatch.hpp"

namespace retikd {
namespace ops {
namespace cuda_backend {

// The output size and window of a 2-D pool, as ops/pool.hpp's pool2d_geometry computed and checked them (in
// int64; N, C, H, W are the input's).
struct Pool2dWindow {
  int64_t OH, OW;
  int64_t kh, kw, sh, sw, ph, pw;
};

// (output, indices) of max pooling x (N, C, H, W); indices int64, flat h·W + w within the input plane.
inline std::pair<Tensor, Tensor> max_pool2d(const Tensor& x, const Pool2dWindow& g) {
  if constexpr (kCudaBuilt) {
    const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    RETIKD_CHECK(x.dtype() == DType::float32 || x.dtype() == DType::float16, "max_pool2d: no CUDA path for ",
                 x.describe());
    RETIKD_CHECK(x.numel() < (int64_t(1) << 31), "max_pool2d: input too large for the CUDA path");
    Tensor y = Tensor::empty({N, C, g.OH, g.OW}, x.dtype(), x.device());
    Tensor idx = Tensor::empty({N, C, g.OH, g.OW}, DType::int64, x.device());
    const Tensor xc = x.contiguous();
    auto i32 = [](int64_t v) { return static_cast<int>(v); };
    const cuda::Pool2dDims d{i32(N * C), i32(H),    i32(W),    i32(g.OH), i32(g.OW), i32(g.kh),
                             i32(g.kw),  i32(g.sh), i32(g.sw), i32(g.ph), i32(g.pw)};
    cuda::max_pool2d_forward(d, xc.raw_data(), y.raw_data(), static_cast<int64_t*>(idx.raw_data()),
                             static_cast<int>(x.dtype()), x.device().index);
    return {y, idx};
  }
  cuda_not_built("max_pool2d");
}

// Input gradient (x_shape) of max_pool2d: each output gradient added at its recorded index.
inline Tensor max_pool2d_backward(const Tensor& grad_out, const Tensor& indices, const Shape& x_shape) {
  if constexpr (kCudaBuilt) {
    RETIKD_CHECK(grad_out.dtype() == DType::float32 || grad_out.dtype() == DType::float16,
                 "max_pool2d backward: no CUDA path for ", grad_out.describe());
    check_same_device("max_pool2d backward", grad_out, indices);
    Tensor gx = Tensor::empty(x_shape, grad_out.dtype(), grad_out.device());
    const Tensor gc = grad_out.contiguous(), ic = indices.contiguous();
    cuda::max_pool2d_backward(gc.raw_data(), static_cast<const int64_t*>(ic.raw_data()), gx.raw_data(),
                              x_shape[0] * x_shape[1], x_shape[2] * x_shape[3], grad_out.size(2) * grad_out.size(3),
                              static_cast<int>(gc.dtype()), gc.device().index);
    return gx;
  }
  cuda_not_built("max_pool2d backward");
}

// adaptive_avg_pool2d to (1, 1): the mean of each (H, W) plane of x (N, C, H, W).
inline Tensor global_avg_pool2d(const Tensor& x) {
  if constexpr (kCudaBuilt) {
    const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    Tensor y = Tensor::empty({N, C, 1, 1}, x.dtype(), x.device());
    const Tensor xc = x.contiguous();
    cuda::reduce_rows(xc.raw_data(), y.raw_data(), N * C, H * W, cuda::kRowSum,
                      static_cast<float>(1.0 / static_cast<double>(H * W)), static_cast<int>(x.dtype()),
                      x.device().index);
    return y;
  }
  cuda_not_built("adaptive_avg_pool2d");
}

// Its input gradient: grad_out (N, C, 1, 1) / (H·W) broadcast over each plane of x_shape (N, C, H, W).
inline Tensor global_avg_pool2d_backward(const Tensor& grad_out, const Shape& x_shape) {
  if constexpr (kCudaBuilt) {
    const int64_t N = x_shape[0], C = x_shape[1], H = x_shape[2], W = x_shape[3];
    Tensor gx = Tensor::empty(x_shape, grad_out.dtype(), grad_out.device());
    const Tensor gc = grad_out.contiguous();
    cuda::row_broadcast(gc.raw_data(), gx.raw_data(), N * C, H * W,
                        static_cast<float>(1.0 / static_cast<double>(H * W)), static_cast<int>(gc.dtype()),
                        gc.device().index);
    return gx;
  }
  cuda_not_built("adaptive_avg_pool2d backward");
}

}  // namespace cuda_backend
}  // namespace ops
}  // namespace retikd
