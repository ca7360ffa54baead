// retikd/ops/resize.hpp — bilinear resize of (N, C, H, W) images, matching PyTorch's
// F.interpolate(mode='bilinear', align_corners=False) (and align_corners=True on request), forward and
// backward (each output gradient scattered back onto its four source pixels with the same weights).
// GPU (float32 / float16; the CUDA paths are in ops/cuda/resize.hpp): the same tap formula evaluated in float32
// per output (retikd/cuda/op_programs.hpp); the backward scatters with float atomics.
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
#include "retikd/core/parallel.hpp"
#include "retikd/ops/common.hpp"
#include "retikd/ops/cuda/resize.hpp"
#include "retikd/ops/matmul.hpp"

namespace retikd {
namespace ops {
namespace impl {

// For one axis: output position i reads in[i0[i]]·l0[i] + in[i1[i]]·l1[i].
template <class T>
struct LinearTaps {
  std::vector<int64_t> i0, i1;
  std::vector<T> l0, l1;
};

template <class T>
LinearTaps<T> linear_taps(int64_t in, int64_t out, bool align_corners) {
  LinearTaps<T> t;
  t.i0.resize(static_cast<std::size_t>(out));
  t.i1.resize(static_cast<std::size_t>(out));
  t.l0.resize(static_cast<std::size_t>(out));
  t.l1.resize(static_cast<std::size_t>(out));
  const T scale = align_corners ? (out > 1 ? static_cast<T>(in - 1) / static_cast<T>(out - 1) : T(0))
                                : static_cast<T>(in) / static_cast<T>(out);
  for (int64_t i = 0; i < out; ++i) {
    T src = align_corners ? scale * static_cast<T>(i) : scale * (static_cast<T>(i) + T(0.5)) - T(0.5);
    if (src < T(0)) src = T(0);
    const int64_t lo = std::min(static_cast<int64_t>(std::floor(src)), in - 1);
    const T lambda = std::min(std::max(src - static_cast<T>(lo), T(0)), T(1));
    t.i0[i] = lo;
    t.i1[i] = lo < in - 1 ? lo + 1 : lo;
    t.l0[i] = T(1) - lambda;
    t.l1[i] = lambda;
  }
  return t;
}

inline void bilinear_check(const Shape& x, int64_t out_h, int64_t out_w) {
  RETIKD_CHECK(x.size() == 4, "interpolate_bilinear: input ", shape_str(x), " must be 4-D (N, C, H, W)");
  RETIKD_CHECK(x[2] >= 1 && x[3] >= 1, "interpolate_bilinear: input ", shape_str(x), " has an empty plane");
  RETIKD_CHECK(out_h >= 1 && out_w >= 1, "interpolate_bilinear: output size (", out_h, ", ", out_w,
               ") must be positive");
}

inline Tensor interpolate_bilinear(const Tensor& x, int64_t out_h, int64_t out_w, bool align_corners) {
  bilinear_check(x.shape(), out_h, out_w);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  // Every GPU x goes to the CUDA back end, which names the dtypes it has no kernel for.
  if (x.is_cuda()) return cuda_backend::interpolate_bilinear(x, out_h, out_w, align_corners);
  check_cpu("interpolate_bilinear", x);
  Tensor y = Tensor::empty({N, C, out_h, out_w}, x.dtype());
  const Tensor xc = x.contiguous();
  dispatch_floating(x.dtype(), "interpolate_bilinear", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const LinearTaps<T> th = linear_taps<T>(H, out_h, align_corners), tw = linear_taps<T>(W, out_w, align_corners);
    const T* px = xc.data<T>();
    T* py = y.data<T>();
    const int64_t plane_work = out_h * out_w * 4;
    parallel_for(0, N * C, std::max<int64_t>(1, 32768 / plane_work), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const T* xp = px + p * H * W;
        T* yp = py + p * out_h * out_w;
        for (int64_t i = 0; i < out_h; ++i) {
          const T* r0 = xp + th.i0[i] * W;
          const T* r1 = xp + th.i1[i] * W;
          const T a0 = th.l0[i], a1 = th.l1[i];
          T* yr = yp + i * out_w;
          for (int64_t j = 0; j < out_w; ++j) {
            const int64_t c0 = tw.i0[j], c1 = tw.i1[j];
            yr[j] = a0 * (tw.l0[j] * r0[c0] + tw.l1[j] * r0[c1]) + a1 * (tw.l0[j] * r1[c0] + tw.l1[j] * r1[c1]);
          }
        }
      }
    });
  });
  return y;
}

inline Tensor interpolate_bilinear_backward(const Tensor& grad_out, const Shape& x_shape, bool align_corners) {
  RETIKD_CHECK(grad_out.dim() == 4 && x_shape.size() == 4 && grad_out.size(0) == x_shape[0] &&
                   grad_out.size(1) == x_shape[1],
               "interpolate_bilinear backward: output gradient ", shape_str(grad_out.shape()),
               " does not match input ", shape_str(x_shape));
  const int64_t out_h = grad_out.size(2), out_w = grad_out.size(3);
  bilinear_check(x_shape, out_h, out_w);
  const int64_t N = x_shape[0], C = x_shape[1], H = x_shape[2], W = x_shape[3];
  if (grad_out.is_cuda()) return cuda_backend::interpolate_bilinear_backward(grad_out, x_shape, align_corners);
  check_cpu("interpolate_bilinear backward", grad_out);
  Tensor gx = Tensor::zeros(x_shape, grad_out.dtype());
  const Tensor gc = grad_out.contiguous();
  dispatch_floating(grad_out.dtype(), "interpolate_bilinear backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const LinearTaps<T> th = linear_taps<T>(H, out_h, align_corners), tw = linear_taps<T>(W, out_w, align_corners);
    const T* pg = gc.data<T>();
    T* px = gx.data<T>();
    const int64_t plane_work = out_h * out_w * 4;
    // One task per plane: the scatter never crosses planes, so there are no shared writes.
    parallel_for(0, N * C, std::max<int64_t>(1, 32768 / plane_work), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        T* xp = px + p * H * W;
        const T* gp = pg + p * out_h * out_w;
        for (int64_t i = 0; i < out_h; ++i) {
          T* r0 = xp + th.i0[i] * W;
          T* r1 = xp + th.i1[i] * W;
          const T a0 = th.l0[i], a1 = th.l1[i];
          const T* gr = gp + i * out_w;
          for (int64_t j = 0; j < out_w; ++j) {
            const int64_t c0 = tw.i0[j], c1 = tw.i1[j];
            const T g = gr[j];
            r0[c0] += a0 * tw.l0[j] * g;
            r0[c1] += a0 * tw.l1[j] * g;
            r1[c0] += a1 * tw.l0[j] * g;
            r1[c1] += a1 * tw.l1[j] * g;
          }
        }
      }
    });
  });
  return gx;
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
