// retikd/ops/cuda/softmax.hpp — the CUDA back end of the softmax family (ops/softmax.hpp): Tensor-level
// wrappers around retikd/cuda/softmax.hpp's warp-per-row kernels (kernels/softmax.cu).
//
// The kernels reduce over the last dimension of contiguous rows only, so the front end decides when this path
// applies (float32 / float16 on a GPU, reduced over the last dimension or a 0-D tensor; the backward also wants
// a gradient of the output's shape, dtype and device) and its CPU checks name what is missing otherwise. Inputs
// are made contiguous here; outputs are new contiguous tensors on the input's GPU in its dtype (float32 math).
// Bodies sit in `if constexpr (kCudaBuilt)` (ops/dispatch.hpp says why): a CPU-only build compiles this
// header and links no launcher.
#pragma once

#include <cstdint>

#include "retikd/core/tensor.hpp"
#include "retikd/cuda/softmax.hpp"
#include "retikd/ops/dispatch.hpp"

namespace retikd {
namespace ops {
namespace cuda_backend {

// softmax (log: log_softmax) of x over its last dimension; a 0-D tensor is one row of one element.
inline Tensor softmax_rows(const Tensor& x, bool log) {
  if constexpr (kCudaBuilt) {
    const Tensor in = x.contiguous();
    Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
    const int64_t n = x.dim() == 0 ? 1 : x.size(-1);
    cuda::softmax_rows(in.raw_data(), out.raw_data(), n == 0 ? 0 : x.numel() / n, n, log,
                       static_cast<int>(x.dtype()), x.device().index);
    return out;
  }
  cuda_not_built("softmax");
}

// The gradient of softmax_rows from its output y and the output's gradient g (same shape, dtype and device).
inline Tensor softmax_rows_backward(const Tensor& g, const Tensor& y, bool log) {
  if constexpr (kCudaBuilt) {
    const Tensor gc = g.contiguous(), yc = y.contiguous();
    Tensor gx = Tensor::empty(y.shape(), y.dtype(), y.device());
    const int64_t n = y.dim() == 0 ? 1 : y.size(-1);
    cuda::softmax_rows_backward(gc.raw_data(), yc.raw_data(), gx.raw_data(), n == 0 ? 0 : y.numel() / n, n, log,
                                static_cast<int>(y.dtype()), y.device().index);
    return gx;
  }
  cuda_not_built("softmax backward");
}

}  // namespace cuda_backend
}  // namespace ops
}  // namespace retikd
