// retikd/ops/cpu/pool.hpp — the CPU back end of the pool family (ops/pool.hpp): 2-D max pool (gradient routed
// to the arg-max), average pool (PyTorch's count_include_pad divisor rules) and adaptive average pool
// (PyTorch's bins), forward and backward, in float32 and float64, each threaded over the N·C planes.
//
// The reference for the CUDA paths of ops/cuda/pool.hpp (max pool, global average pool); avg_pool2d and the
// non-global adaptive sizes run only here. The front end validates the arguments both back ends share and
// computes the geometry (Pool2dGeometry, defined here because both sides use it); the checks here are the
// CPU path's own (the tensors are on the CPU).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>

#include "retikd/core/error.hpp"
#include "retikd/core/parallel.hpp"
#include "retikd/core/tensor.hpp"
#include "retikd/ops/dispatch.hpp"

namespace retikd {
namespace cpu {

// The checked sizes of a 2-D pool: input (N, C, H, W), output (OH, OW), kernel, stride and padding
// (ops/pool.hpp's pool2d_geometry fills it in; ops::impl::Pool2dGeometry is this type).
struct Pool2dGeometry {
  int64_t N, C, H, W, OH, OW;
  int64_t kh, kw, sh, sw, ph, pw;
  int64_t planes() const { return N * C; }
};

// Runs fn(plane) for every (n, c) plane on the pool; `work` is the cost of one plane in element visits.
template <class Fn>
void for_each_plane(int64_t planes, int64_t work, Fn&& fn) {
  parallel_for(0, planes, std::max<int64_t>(1, 32768 / std::max<int64_t>(1, work)), [&](int64_t lo, int64_t hi) {
    for (int64_t p = lo; p < hi; ++p) fn(p);
  });
}

// Returns (output, indices): indices (int64, same shape) hold the arg-max's flat position h·W + w within its
// input plane, PyTorch's convention. A NaN in the window wins, so NaNs propagate as in PyTorch.
inline std::pair<Tensor, Tensor> max_pool2d(const Tensor& x, const Pool2dGeometry& g) {
  ops::check_cpu("max_pool2d", x);
  Tensor y = Tensor::empty({g.N, g.C, g.OH, g.OW}, x.dtype());
  Tensor idx = Tensor::empty({g.N, g.C, g.OH, g.OW}, DType::int64);
  const Tensor xc = x.contiguous();
  dispatch_floating(x.dtype(), "max_pool2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = xc.data<T>();
    T* py = y.data<T>();
    int64_t* pi = idx.data<int64_t>();
    for_each_plane(g.planes(), g.OH * g.OW * g.kh * g.kw, [&](int64_t p) {
      const T* xp = px + p * g.H * g.W;
      T* yp = py + p * g.OH * g.OW;
      int64_t* ip = pi + p * g.OH * g.OW;
      for (int64_t oh = 0; oh < g.OH; ++oh) {
        const int64_t h0 = std::max<int64_t>(oh * g.sh - g.ph, 0), h1 = std::min(oh * g.sh - g.ph + g.kh, g.H);
        for (int64_t ow = 0; ow < g.OW; ++ow) {
          const int64_t w0 = std::max<int64_t>(ow * g.sw - g.pw, 0), w1 = std::min(ow * g.sw - g.pw + g.kw, g.W);
          T best = -std::numeric_limits<T>::infinity();
          int64_t arg = h0 * g.W + w0;
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t w = w0; w < w1; ++w) {
              const T v = xp[h * g.W + w];
              if (v > best || std::isnan(v)) {
                best = v;
                arg = h * g.W + w;
              }
            }
          yp[oh * g.OW + ow] = best;
          ip[oh * g.OW + ow] = arg;
        }
      }
    });
  });
  return {y, idx};
}

// Input gradient of max_pool2d: each output gradient is added at its arg-max.
inline Tensor max_pool2d_backward(const Tensor& grad_out, const Tensor& indices, const Shape& x_shape) {
  ops::check_cpu("max_pool2d backward", grad_out);
  Tensor gx = Tensor::zeros(x_shape, grad_out.dtype());
  const Tensor gc = grad_out.contiguous(), ic = indices.contiguous();
  const int64_t planes = x_shape[0] * x_shape[1], in_plane = x_shape[2] * x_shape[3];
  const int64_t out_plane = grad_out.size(2) * grad_out.size(3);
  dispatch_floating(grad_out.dtype(), "max_pool2d backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pg = gc.data<T>();
    const int64_t* pi = ic.data<int64_t>();
    T* px = gx.data<T>();
    for_each_plane(planes, out_plane, [&](int64_t p) {
      T* xp = px + p * in_plane;
      for (int64_t i = p * out_plane; i < (p + 1) * out_plane; ++i) xp[pi[i]] += pg[i];
    });
  });
  return gx;
}

// PyTorch's divisor: with count_include_pad the window clipped to the padded input (pool_size), else the
// window clipped to the input itself.
inline int64_t avg_pool_divisor(const Pool2dGeometry& g, int64_t oh, int64_t ow, bool count_include_pad) {
  int64_t hs = oh * g.sh - g.ph, ws = ow * g.sw - g.pw;
  int64_t he = std::min(hs + g.kh, g.H + g.ph), we = std::min(ws + g.kw, g.W + g.pw);
  if (count_include_pad) return (he - hs) * (we - ws);
  hs = std::max<int64_t>(hs, 0);
  ws = std::max<int64_t>(ws, 0);
  he = std::min(he, g.H);
  we = std::min(we, g.W);
  return (he - hs) * (we - ws);
}

inline Tensor avg_pool2d(const Tensor& x, const Pool2dGeometry& g, bool count_include_pad) {
  ops::check_cpu("avg_pool2d", x);
  Tensor y = Tensor::empty({g.N, g.C, g.OH, g.OW}, x.dtype());
  const Tensor xc = x.contiguous();
  dispatch_floating(x.dtype(), "avg_pool2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = xc.data<T>();
    T* py = y.data<T>();
    for_each_plane(g.planes(), g.OH * g.OW * g.kh * g.kw, [&](int64_t p) {
      const T* xp = px + p * g.H * g.W;
      T* yp = py + p * g.OH * g.OW;
      for (int64_t oh = 0; oh < g.OH; ++oh) {
        const int64_t h0 = std::max<int64_t>(oh * g.sh - g.ph, 0), h1 = std::min(oh * g.sh - g.ph + g.kh, g.H);
        for (int64_t ow = 0; ow < g.OW; ++ow) {
          const int64_t w0 = std::max<int64_t>(ow * g.sw - g.pw, 0), w1 = std::min(ow * g.sw - g.pw + g.kw, g.W);
          T s = T(0);
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t w = w0; w < w1; ++w) s += xp[h * g.W + w];
          const int64_t div = avg_pool_divisor(g, oh, ow, count_include_pad);
          yp[oh * g.OW + ow] = div > 0 ? s / static_cast<T>(div) : T(0);
        }
      }
    });
  });
  return y;
}

// grad_out is (N, C, OH, OW) of the geometry g (the front end checked it).
inline Tensor avg_pool2d_backward(const Tensor& grad_out, const Shape& x_shape, const Pool2dGeometry& g,
                                  bool count_include_pad) {
  ops::check_cpu("avg_pool2d backward", grad_out);
  Tensor gx = Tensor::zeros(x_shape, grad_out.dtype());
  const Tensor gc = grad_out.contiguous();
  dispatch_floating(grad_out.dtype(), "avg_pool2d backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pg = gc.data<T>();
    T* px = gx.data<T>();
    for_each_plane(g.planes(), g.OH * g.OW * g.kh * g.kw, [&](int64_t p) {
      T* xp = px + p * g.H * g.W;
      const T* gp = pg + p * g.OH * g.OW;
      for (int64_t oh = 0; oh < g.OH; ++oh) {
        const int64_t h0 = std::max<int64_t>(oh * g.sh - g.ph, 0), h1 = std::min(oh * g.sh - g.ph + g.kh, g.H);
        for (int64_t ow = 0; ow < g.OW; ++ow) {
          const int64_t w0 = std::max<int64_t>(ow * g.sw - g.pw, 0), w1 = std::min(ow * g.sw - g.pw + g.kw, g.W);
          const int64_t div = avg_pool_divisor(g, oh, ow, count_include_pad);
          if (div <= 0) continue;
          const T v = gp[oh * g.OW + ow] / static_cast<T>(div);
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t w = w0; w < w1; ++w) xp[h * g.W + w] += v;
        }
      }
    });
  });
  return gx;
}

// PyTorch's adaptive bins: output i covers [floor(i·in/out), ceil((i+1)·in/out)).
inline int64_t adaptive_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
inline int64_t adaptive_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }

// x (N, C, H, W) with non-empty planes and out_h, out_w >= 1 (the front end checked them).
inline Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  ops::check_cpu("adaptive_avg_pool2d", x);
  Tensor y = Tensor::empty({N, C, out_h, out_w}, x.dtype());
  const Tensor xc = x.contiguous();
  dispatch_floating(x.dtype(), "adaptive_avg_pool2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = xc.data<T>();
    T* py = y.data<T>();
    for_each_plane(N * C, H * W, [&](int64_t p) {
      const T* xp = px + p * H * W;
      T* yp = py + p * out_h * out_w;
      for (int64_t i = 0; i < out_h; ++i) {
        const int64_t h0 = adaptive_start(i, H, out_h), h1 = adaptive_end(i, H, out_h);
        for (int64_t j = 0; j < out_w; ++j) {
          const int64_t w0 = adaptive_start(j, W, out_w), w1 = adaptive_end(j, W, out_w);
          T s = T(0);
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t w = w0; w < w1; ++w) s += xp[h * W + w];
          yp[i * out_w + j] = s / static_cast<T>((h1 - h0) * (w1 - w0));
        }
      }
    });
  });
  return y;
}

// grad_out (N, C, out_h, out_w) against x_shape (N, C, H, W) (the front end checked them).
inline Tensor adaptive_avg_pool2d_backward(const Tensor& grad_out, const Shape& x_shape) {
  const int64_t out_h = grad_out.size(2), out_w = grad_out.size(3);
  const int64_t N = x_shape[0], C = x_shape[1], H = x_shape[2], W = x_shape[3];
  ops::check_cpu("adaptive_avg_pool2d backward", grad_out);
  Tensor gx = Tensor::zeros(x_shape, grad_out.dtype());
  const Tensor gc = grad_out.contiguous();
  dispatch_floating(grad_out.dtype(), "adaptive_avg_pool2d backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pg = gc.data<T>();
    T* px = gx.data<T>();
    for_each_plane(N * C, H * W, [&](int64_t p) {
      T* xp = px + p * H * W;
      const T* gp = pg + p * out_h * out_w;
      for (int64_t i = 0; i < out_h; ++i) {
        const int64_t h0 = adaptive_start(i, H, out_h), h1 = adaptive_end(i, H, out_h);
        for (int64_t j = 0; j < out_w; ++j) {
          const int64_t w0 = adaptive_start(j, W, out_w), w1 = adaptive_end(j, W, out_w);
          const T v = gp[i * out_w + j] / static_cast<T>((h1 - h0) * (w1 - w0));
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t w = w0; w < w1; ++w) xp[h * W + w] += v;
        }
      }
    });
  });
  return gx;
}

}  // namespace cpu
}  // namespace retikd
