// retikd/ops/cpu/resize.hpp — the CPU back end of the resize family (ops/resize.hpp): bilinear resize of
// (N, C, H, W) images, PyTorch's F.interpolate(mode='bilinear') with align_corners false or true, forward and
// backward (each output gradient scattered back onto its four source pixels with the same weights), in float32
// and float64, threaded over the N·C planes.
//
// The reference for the CUDA path of ops/cuda/resize.hpp, which evaluates the same tap formula in float32 per
// output. The taps (linear_taps) are computed once per axis in the tensor's dtype. The front end has checked
// the shapes and output size; the check here is the CPU path's own (the tensors are on the CPU). Bicubic resize
// has no loop of its own (ops/resize.hpp runs it as two matmuls).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "retikd/core/error.hpp"
#include "retikd/core/parallel.hpp"
#include "retikd/core/tensor.hpp"
#include "retikd/ops/dispatch.hpp"

namespace retikd {
namespace cpu {

// For one axis: output position i reads in[i0[i]]·l0[i] + in[i1[i]]·l1[i].
template <class T>
struct LinearTaps {
  std::vector<int64_t> i0, i1;
  std::vector<T> l0, l1;
};

// align_corners=False: scale = in/out, source (i + 0.5)·scale − 0.5 clamped below at 0; align_corners=True:
// scale = (in − 1)/(out − 1) (0 when out = 1), source i·scale. The upper neighbour is the lower one at the edge.
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

// x (N, C, H, W) with non-empty planes, out_h, out_w >= 1 (the front end checked them).
inline Tensor interpolate_bilinear(const Tensor& x, int64_t out_h, int64_t out_w, bool align_corners) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  ops::check_cpu("interpolate_bilinear", x);
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

// grad_out (N, C, out_h, out_w) against x_shape (N, C, H, W) (the front end checked them).
inline Tensor interpolate_bilinear_backward(const Tensor& grad_out, const Shape& x_shape, bool align_corners) {
  const int64_t out_h = grad_out.size(2), out_w = grad_out.size(3);
  const int64_t N = x_shape[0], C = x_shape[1], H = x_shape[2], W = x_shape[3];
  ops::check_cpu("interpolate_bilinear backward", grad_out);
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

}  // namespace cpu
}  // namespace retikd
