// retikd/ops/conv.hpp — 2-D convolution (PyTorch's cross-correlation convention): stride, asymmetric
// padding (so TensorFlow "SAME" models import exactly), dilation and groups, forward and backward.
//
// Two CPU paths (their loops are in ops/cpu/conv.hpp; this front end validates and dispatches):
//  - dense (any groups): im2col + GEMM on retikd::cpu::gemm. The column matrix is built a tile of output rows
//    at a time (~512 KiB, so it stays in L2) and multiplied by the group's weight (O/groups, C/groups·kh·kw)
//    into the matching output columns; (sample, group, tile) tasks are spread over the thread pool. A 1×1,
//    stride-1, unpadded convolution (MobileNetV2's pointwise layers) skips im2col: the input plane already is
//    the column matrix. Backward: the weight gradient is the same tiling with per-thread partial sums; the
//    input gradient is GEMM then col2im, tile by tile.
//  - depthwise (groups == C, O = multiplier·C; MobileNetV2's hot 3×3 layer): direct loops. Each input plane
//    is copied once into a zero-padded buffer split by stride phase, so every tap of every output row is a
//    unit-stride, in-bounds run; all kh·kw taps are then fused into vector accumulators along the width and
//    each output is stored once. An im2col there would copy 9× the input to feed GEMMs with M = 1.
//
// Shapes: x (N, C, H, W), weight (O, C/groups, kh, kw), bias (O,) or undefined; output (N, O, OH, OW) with
// OH = (H + pad_top + pad_bottom − dilation_h·(kh−1) − 1) / stride_h + 1 (likewise OW).
//
// GPU (float32 / float16 tensors on a CUDA device): depthwise layers run retikd's own kernel, dense ones cuDNN (or
// im2col + cuBLAS without it); the bias gradient is a per-channel reduction. Those CUDA paths are in
// ops/cuda/conv.hpp; Conv2dOptions and the geometry both paths share are in ops/conv_geometry.hpp.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/ops/common.hpp"
#include "retikd/ops/conv_geometry.hpp"
#include "retikd/ops/cpu/conv.hpp"
#include "retikd/ops/cuda/conv.hpp"
#include "retikd/ops/dispatch.hpp"

namespace retikd {
namespace ops {

namespace impl {

// Whether an operand takes the CUDA path. Every GPU tensor does, whatever its dtype: cuda_backend::conv2d_check
// then names a float64 one, where the CPU path's checks would only say "no CUDA implementation yet".
inline bool conv2d_on_gpu(const Tensor& t) { return kCudaBuilt && t.is_cuda(); }

// Inference only: relu6(depthwise conv2d(x, w) + bias) in one kernel pass for float32 / float16 GPU tensors (the
// fused bias + ReLU6 store of cuda::depthwise_forward). Returns an undefined tensor when the layer is not a
// GPU depthwise one; the caller then runs conv2d and relu6 separately. (deploy/fold.hpp's ConvAct calls it.)
inline Tensor conv2d_depthwise_relu6_cuda(const Tensor& x, const Tensor& w, const Tensor& bias,
                                          const Conv2dOptions& opt) {
  if (!gpu_float(x)) return Tensor();
  const Conv2dGeometry g = conv2d_geometry(x.shape(), w.shape(), opt);
  if (!g.depthwise()) return Tensor();
  cuda_backend::conv2d_check(x, {&w, &bias});
  return cuda_backend::conv2d_depthwise_relu6(x, w, bias, g);
}

// The CPU path's operands: on the CPU, with x's dtype.
inline void conv2d_check_tensors(const Tensor& x, const Tensor& w, const Tensor& bias) {
  check_cpu("conv2d", x);
  check_cpu("conv2d", w);
  check_same_dtype("conv2d", x, w);
  if (bias.defined()) {
    check_cpu("conv2d", bias);
    check_same_dtype("conv2d", x, bias);
  }
}

// y (N, O, OH, OW) = conv2d(x, w) + bias; bias may be undefined.
inline Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dOptions& opt) {
  const Conv2dGeometry g = conv2d_geometry(x.shape(), w.shape(), opt);
  const bool gpu = conv2d_on_gpu(x);
  // Devices and dtypes first (each back end's rule), then the bias shape, which both share.
  if (gpu) {
    cuda_backend::conv2d_check(x, {&w, &bias});
  } else {
    conv2d_check_tensors(x, w, bias);
  }
  if (bias.defined())
    RETIKD_CHECK(bias.dim() == 1 && bias.size(0) == w.size(0), "conv2d: bias ", shape_str(bias.shape()),
                 " must be (", w.size(0), ",) for weight ", shape_str(w.shape()));
  if (gpu) return cuda_backend::conv2d(x, w, bias, g);
  Tensor y = Tensor::empty({g.N, g.O, g.OH, g.OW}, x.dtype());
  if (y.numel() == 0) return y;
  return cpu::conv2d_forward(g, x, w, bias, y);
}

inline void conv2d_check_grad(const Conv2dGeometry& g, const Tensor& gy, const char* what) {
  const Shape want{g.N, g.O, g.OH, g.OW};
  RETIKD_CHECK(gy.shape() == want, "conv2d ", what, ": output gradient ", shape_str(gy.shape()),
               " does not match the output ", shape_str(want));
  check_cpu("conv2d", gy);
}

// Gradient with respect to the input x of shape x_shape.
inline Tensor conv2d_backward_input(const Tensor& grad_out, const Tensor& w, const Shape& x_shape,
                                    const Conv2dOptions& opt) {
  const Conv2dGeometry g = conv2d_geometry(x_shape, w.shape(), opt);
  if (conv2d_on_gpu(grad_out)) {
    cuda_backend::conv2d_check(grad_out, {&w});
    RETIKD_CHECK(grad_out.shape() == Shape({g.N, g.O, g.OH, g.OW}), "conv2d backward (input): output gradient ",
                 shape_str(grad_out.shape()), " does not match the output");
    return cuda_backend::conv2d_backward_input(grad_out, w, x_shape, g);
  }
  conv2d_check_grad(g, grad_out, "backward (input)");
  check_same_dtype("conv2d backward", grad_out, w);
  if (shape_numel(x_shape) == 0 || grad_out.numel() == 0) return Tensor::zeros(x_shape, w.dtype());
  Tensor gx = Tensor::empty(x_shape, w.dtype());  // every element is written below
  return cpu::conv2d_backward_input(g, grad_out, w, gx);
}

// Gradient with respect to the weight of shape w_shape.
inline Tensor conv2d_backward_weight(const Tensor& grad_out, const Tensor& x, const Shape& w_shape,
                                     const Conv2dOptions& opt) {
  const Conv2dGeometry g = conv2d_geometry(x.shape(), w_shape, opt);
  if (conv2d_on_gpu(grad_out)) {
    cuda_backend::conv2d_check(grad_out, {&x});
    RETIKD_CHECK(grad_out.shape() == Shape({g.N, g.O, g.OH, g.OW}), "conv2d backward (weight): output gradient ",
                 shape_str(grad_out.shape()), " does not match the output");
    return cuda_backend::conv2d_backward_weight(grad_out, x, w_shape, g);
  }
  conv2d_check_grad(g, grad_out, "backward (weight)");
  check_same_dtype("conv2d backward", grad_out, x);
  if (shape_numel(w_shape) == 0 || grad_out.numel() == 0) return Tensor::zeros(w_shape, x.dtype());
  Tensor gw = Tensor::empty(w_shape, x.dtype());  // every element is written below
  return cpu::conv2d_backward_weight(g, grad_out, x, gw);
}

// Gradient with respect to the bias: grad_out (N, O, OH, OW) summed over N, OH, OW.
inline Tensor conv2d_backward_bias(const Tensor& grad_out) {
  RETIKD_CHECK(grad_out.dim() == 4, "conv2d backward (bias): output gradient ", shape_str(grad_out.shape()),
               " must be 4-D");
  const int64_t N = grad_out.size(0), O = grad_out.size(1), L = grad_out.size(2) * grad_out.size(3);
  if (conv2d_on_gpu(grad_out)) {
    cuda_backend::conv2d_check(grad_out, {});
    return cuda_backend::conv2d_backward_bias(grad_out, N, O, L);
  }
  check_cpu("conv2d", grad_out);
  return cpu::conv2d_backward_bias(grad_out, N, O, L);
}

}  // namespace impl

// conv2d(x (N, C, H, W), weight (O, C/groups, kh, kw), bias (O,) or Var()) → (N, O, OH, OW).
inline Var conv2d(const Var& x, const Var& weight, const Var& bias = Var(), const Conv2dOptions& opt = {}) {
  const Tensor bias_value = bias.defined() ? bias.value() : Tensor();
  Tensor out = impl::conv2d(x.value(), weight.value(), bias_value, opt);
  const Tensor xv = x.value(), wv = weight.value();
  const bool gx = x.requires_grad(), gw = weight.requires_grad(), gb = bias.defined() && bias.requires_grad();
  // Depthwise layers get their own name so a GPU op profile separates retikd's depthwise kernel from cuDNN.
  const bool depthwise = opt.groups > 1 && opt.groups == xv.size(1);
  return make_result(out, depthwise ? "conv2d_depthwise" : "conv2d", {x, weight, bias},
                     [xv, wv, opt, gx, gw, gb](const Tensor& g) -> std::vector<Tensor> {
                       return {gx ? impl::conv2d_backward_input(g, wv, xv.shape(), opt) : Tensor(),
                               gw ? impl::conv2d_backward_weight(g, xv, wv.shape(), opt) : Tensor(),
                               gb ? impl::conv2d_backward_bias(g) : Tensor()};
                     });
}

}  // namespace ops
}  // namespace retikd
