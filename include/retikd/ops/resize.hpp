// retikd/ops/resize.hpp — bilinear resize of (N, C, H, W) images, matching PyTorch's
// F.interpolate(mode='bilinear', align_corners=False) (and align_corners=True on request), forward and
// backward (each output gradient scattered back onto its four source pixels with the same weights).
// The CPU loops are in ops/cpu/resize.hpp; GPU (float32 / float16; the CUDA paths are in ops/cuda/resize.hpp):
// the same tap formula evaluated in float32 per output (retikd/cuda/op_programs.hpp); the backward scatters
// with float atomics.
//
// align_corners=False: scale = in/out, source coordinate (dst + 0.5)·scale − 0.5 clamped below at 0; the
// lower neighbour is floor(src) (at most in − 1), the upper one is the next pixel unless that is past the
// edge. align_corners=True: scale = (in − 1)/(out − 1) (0 when out = 1), source = dst·scale.
//
// Bicubic resize (PyTorch's mode='bicubic', align_corners=False, antialias=False; ONNX Resize mode 'cubic' with
// cubic_coeff_a −0.75 and 'half_pixel' coordinates, which is what DINOv2's exported graph uses on its position
// embedding): source (dst + 0.5)·in/out − 0.5, not clamped; taps at floor(src) − 1 … + 2 with Keys' cubic
// convolution weights (a = −0.75), each tap index clamped to [0, in − 1] (the edge pixel repeats). Being linear
// and separable, it runs as two products with interpolation matrices, y = Wh · x · Wwᵀ, through ops::matmul —
// so it has a backward and a GPU path for free. Meant for small grids (position embeddings); an image-sized
// input costs O(H·W·(out_h + out_w)) per plane.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/ops/common.hpp"
#include "retikd/ops/cpu/resize.hpp"
#include "retikd/ops/cuda/resize.hpp"
#include "retikd/ops/dispatch.hpp"
#include "retikd/ops/matmul.hpp"

namespace retikd {
namespace ops {
namespace impl {

inline void bilinear_check(const Shape& x, int64_t out_h, int64_t out_w) {
  RETIKD_CHECK(x.size() == 4, "interpolate_bilinear: input ", shape_str(x), " must be 4-D (N, C, H, W)");
  RETIKD_CHECK(x[2] >= 1 && x[3] >= 1, "interpolate_bilinear: input ", shape_str(x), " has an empty plane");
  RETIKD_CHECK(out_h >= 1 && out_w >= 1, "interpolate_bilinear: output size (", out_h, ", ", out_w,
               ") must be positive");
}

inline Tensor interpolate_bilinear(const Tensor& x, int64_t out_h, int64_t out_w, bool align_corners) {
  bilinear_check(x.shape(), out_h, out_w);
  // Every GPU x goes to the CUDA back end, which names the dtypes it has no kernel for.
  if (x.is_cuda()) return cuda_backend::interpolate_bilinear(x, out_h, out_w, align_corners);
  return cpu::interpolate_bilinear(x, out_h, out_w, align_corners);
}

inline Tensor interpolate_bilinear_backward(const Tensor& grad_out, const Shape& x_shape, bool align_corners) {
  RETIKD_CHECK(grad_out.dim() == 4 && x_shape.size() == 4 && grad_out.size(0) == x_shape[0] &&
                   grad_out.size(1) == x_shape[1],
               "interpolate_bilinear backward: output gradient ", shape_str(grad_out.shape()),
               " does not match input ", shape_str(x_shape));
  const int64_t out_h = grad_out.size(2), out_w = grad_out.size(3);
  bilinear_check(x_shape, out_h, out_w);
  if (grad_out.is_cuda()) return cuda_backend::interpolate_bilinear_backward(grad_out, x_shape, align_corners);
  return cpu::interpolate_bilinear_backward(grad_out, x_shape, align_corners);
}

// The (out, in) matrix W of bicubic interpolation along one axis: y = W · x (see the top of this file).
inline Tensor bicubic_matrix(int64_t in, int64_t out, DType dtype = DType::float32) {
  RETIKD_CHECK(in >= 1 && out >= 1, "bicubic_matrix: sizes (", in, " -> ", out, ") must be positive");
  const double a = -0.75;
  // Keys' kernel on |t| <= 1 and 1 < |t| < 2.
  auto near = [a](double t) { return ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0; };
  auto far = [a](double t) { return ((a * t - 5.0 * a) * t + 8.0 * a) * t - 4.0 * a; };
  std::vector<double> w(static_cast<std::size_t>(out * in), 0.0);
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  for (int64_t i = 0; i < out; ++i) {
    const double src = (static_cast<double>(i) + 0.5) * scale - 0.5;
    const double f = std::floor(src);
    const double t = src - f;
    const double taps[4] = {far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)};
    for (int k = 0; k < 4; ++k) {
      const int64_t j = std::min(std::max(static_cast<int64_t>(f) - 1 + k, int64_t(0)), in - 1);
      w[static_cast<std::size_t>(i * in + j)] += taps[k];
    }
  }
  return Tensor::from_vector<double>(w, {out, in}).to(dtype);
}

}  // namespace impl

// Bicubic resize of x (N, C, H, W) to (N, C, out_h, out_w): PyTorch's F.interpolate(mode='bicubic',
// align_corners=False) and ONNX's Resize(cubic, a = −0.75, half_pixel). Differentiable with respect to x.
inline Var interpolate_bicubic(const Var& x, int64_t out_h, int64_t out_w) {
  RETIKD_CHECK(x.dim() == 4, "interpolate_bicubic: input ", shape_str(x.shape()), " must be 4-D (N, C, H, W)");
  RETIKD_CHECK(out_h >= 1 && out_w >= 1, "interpolate_bicubic: output size (", out_h, ", ", out_w,
               ") must be positive");
  const int64_t H = x.size(2), W = x.size(3);
  if (H == out_h && W == out_w) return x;
  const DType dt = x.value().dtype();
  const Var wh(impl::bicubic_matrix(H, out_h, dt).to(x.value().device()), false);                 // (out_h, H)
  const Var ww_t(impl::bicubic_matrix(W, out_w, dt).transpose(0, 1).contiguous().to(x.value().device()),
                 false);                                                                               // (W, out_w)
  return matmul(matmul(wh, x), ww_t);                                                                 // (N, C, oh, ow)
}

// Bilinear resize of x (N, C, H, W) to (N, C, out_h, out_w), PyTorch's F.interpolate(mode='bilinear').
inline Var interpolate_bilinear(const Var& x, int64_t out_h, int64_t out_w, bool align_corners = false) {
  Tensor out = impl::interpolate_bilinear(x.value(), out_h, out_w, align_corners);
  const Shape xs = x.shape();
  return make_result(out, "interpolate_bilinear", {x}, [xs, align_corners](const Tensor& g) -> std::vector<Tensor> {
    return {impl::interpolate_bilinear_backward(g, xs, align_corners)};
  });
}

}  // namespace ops
}  // namespace retikd
