// retikd/ops/cuda/conv.hpp — the CUDA back end of the convolution family (ops/conv.hpp): Tensor-level wrappers
// around the launchers of kernels/conv.cu (retikd/cuda/conv.hpp). Depthwise layers run retikd's own kernel
// (optionally with the bias + ReLU6 fused into its store), dense ones cuDNN or im2col + cuBLAS (the launcher
// chooses), and the bias gradient is a per-channel reduction.
//
// The front end validates: it computes the Conv2dGeometry (ops/conv_geometry.hpp, shared so this header need
// not include ops/conv.hpp), calls conv2d_check on the GPU operands and checks the shapes; the functions below
// then allocate on the operands' GPU, make the operands contiguous and launch. Bodies that name a launcher sit
// in `if constexpr (kCudaBuilt)` (ops/dispatch.hpp says why): a CPU-only build compiles this header and links
// no launcher.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "retikd/core/tensor.hpp"
#include "retikd/cuda/conv.hpp"
#include "retikd/ops/common.hpp"
#include "retikd/ops/conv_geometry.hpp"
#include "retikd/ops/dispatch.hpp"

namespace retikd {
namespace ops {
namespace cuda_backend {

// The launchers take int sizes; a size past int32 fails here, naming the CUDA path, rather than wrapping.
inline cuda::Conv2dDims conv_dims(const impl::Conv2dGeometry& g) {
  auto i32 = [](int64_t v) {
    RETIKD_CHECK(v >= 0 && v < (int64_t(1) << 31), "conv2d: size ", v, " too large for the CUDA path");
    return static_cast<int>(v);
  };
  const Conv2dOptions& o = g.opt;
  return cuda::Conv2dDims{i32(g.N), i32(g.C), i32(g.H), i32(g.W), i32(g.O), i32(g.kh), i32(g.kw), i32(g.OH),
                          i32(g.OW), i32(o.stride_h), i32(o.stride_w), i32(o.pad_top), i32(o.pad_bottom),
                          i32(o.pad_left), i32(o.pad_right), i32(o.dilation_h), i32(o.dilation_w), i32(g.groups)};
}
// Every operand on the first one's GPU with its dtype, float32 or float16 (undefined operands are skipped).
// The front end calls it for any GPU operand, so a float64 one is named here instead of reaching a kernel.
inline void conv2d_check(const Tensor& first, std::initializer_list<const Tensor*> rest) {
  RETIKD_CHECK(first.dtype() == DType::float32 || first.dtype() == DType::float16, "conv2d: no CUDA path for ",
               first.describe(), " (float32 / float16 only)");
  for (const Tensor* t : rest) {
    if (!t->defined()) continue;
    check_same_device("conv2d", first, *t);
    check_same_dtype("conv2d", first, *t);
  }
}

// y (N, O, OH, OW) = conv2d(x, w) + bias (bias may be undefined): the depthwise kernel with its bias store, or
// the dense launcher followed by a per-channel bias add.
inline Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const impl::Conv2dGeometry& g) {
  if constexpr (kCudaBuilt) {
    Tensor y = Tensor::empty({g.N, g.O, g.OH, g.OW}, x.dtype(), x.device());
    if (y.numel() == 0) return y;
    const Tensor xc = x.contiguous(), wc = w.contiguous();
    const Tensor bc = bias.defined() ? bias.contiguous() : Tensor();
    const int dt = static_cast<int>(x.dtype()), dev = x.device().index;
    if (g.depthwise()) {
      cuda::depthwise_forward(conv_dims(g), xc.raw_data(), wc.raw_data(), bc.defined() ? bc.raw_data() : nullptr,
                              y.raw_data(), cuda::kActNone, dt, dev);
    } else {
      cuda::conv2d_forward(conv_dims(g), xc.raw_data(), wc.raw_data(), y.raw_data(), dt, dev);
      if (bc.defined()) cuda::channel_bias_add(y.raw_data(), bc.raw_data(), g.N, g.O, g.L, dt, dev);
    }
    return y;
  }
  cuda_not_built("conv2d");
}

// Inference only: relu6(depthwise conv2d(x, w) + bias) in one kernel pass (the fused bias + ReLU6 store of
// cuda::depthwise_forward), for a depthwise geometry g whose operands conv2d_check accepted.
inline Tensor conv2d_depthwise_relu6(const Tensor& x, const Tensor& w, const Tensor& bias,
                                     const impl::Conv2dGeometry& g) {
  if constexpr (kCudaBuilt) {
    Tensor y = Tensor::empty({g.N, g.O, g.OH, g.OW}, x.dtype(), x.device());
    if (y.numel() == 0) return y;
    const Tensor xc = x.contiguous(), wc = w.contiguous();
    const Tensor bc = bias.defined() ? bias.contiguous() : Tensor();
    cuda::depthwise_forward(conv_dims(g), xc.raw_data(), wc.raw_data(), bc.defined() ? bc.raw_data() : nullptr,
                            y.raw_data(), cuda::kActRelu6, static_cast<int>(x.dtype()), x.device().index);
    return y;
  }
  cuda_not_built("conv2d_depthwise_relu6");
}

// Gradient with respect to the input (x_shape), on w's GPU and in its dtype; zeros when either side is empty.
inline Tensor conv2d_backward_input(const Tensor& grad_out, const Tensor& w, const Shape& x_shape,
                                    const impl::Conv2dGeometry& g) {
  if constexpr (kCudaBuilt) {
    if (shape_numel(x_shape) == 0 || grad_out.numel() == 0) return Tensor::zeros(x_shape, w.dtype(), w.device());
    Tensor gx = Tensor::empty(x_shape, w.dtype(), w.device());
    const Tensor gyc = grad_out.contiguous(), wc = w.contiguous();
    const int dt = static_cast<int>(w.dtype()), dev = w.device().index;
    if (g.depthwise())
      cuda::depthwise_backward_input(conv_dims(g), gyc.raw_data(), wc.raw_data(), gx.raw_data(), dt, dev);
    else
      cuda::conv2d_backward_input(conv_dims(g), gyc.raw_data(), wc.raw_data(), gx.raw_data(), dt, dev);
    return gx;
  }
  cuda_not_built("conv2d backward (input)");
}

// Gradient with respect to the weight (w_shape), on x's GPU and in its dtype; zeros when either side is empty.
inline Tensor conv2d_backward_weight(const Tensor& grad_out, const Tensor& x, const Shape& w_shape,
                                     const impl::Conv2dGeometry& g) {
  if constexpr (kCudaBuilt) {
    if (shape_numel(w_shape) == 0 || grad_out.numel() == 0) return Tensor::zeros(w_shape, x.dtype(), x.device());
    Tensor gw = Tensor::empty(w_shape, x.dtype(), x.device());
    const Tensor gyc = grad_out.contiguous(), xc = x.contiguous();
    const int dt = static_cast<int>(x.dtype()), dev = x.device().index;
    if (g.depthwise())
      cuda::depthwise_backward_weight(conv_dims(g), gyc.raw_data(), xc.raw_data(), gw.raw_data(), dt, dev);
    else
      cuda::conv2d_backward_weight(conv_dims(g), gyc.raw_data(), xc.raw_data(), gw.raw_data(), dt, dev);
    return gw;
  }
  cuda_not_built("conv2d backward (weight)");
}

// Gradient with respect to the bias: grad_out (N, O, L) summed over N and L per channel (float accumulation).
inline Tensor conv2d_backward_bias(const Tensor& grad_out, int64_t N, int64_t O, int64_t L) {
  if constexpr (kCudaBuilt) {
    Tensor gb = Tensor::empty({O}, grad_out.dtype(), grad_out.device());
    const Tensor gyc = grad_out.contiguous();
    cuda::channel_sum(gyc.raw_data(), gb.raw_data(), N, O, L, static_cast<int>(gyc.dtype()), gyc.device().index);
    return gb;
  }
  cuda_not_built("conv2d backward (bias)");
}

}  // namespace cuda_backend
}  // namespace ops
}  // namespace retikd
