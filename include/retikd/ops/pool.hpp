// retikd/ops/pool.hpp — 2-D pooling on (N, C, H, W): max pool (gradient routed to the arg-max), average
// pool (PyTorch's count_include_pad divisor rules), adaptive average pool (PyTorch's bins), forward and
// backward, each threaded over the N·C planes.
// GPU (float32 / float16; the CUDA paths are in ops/cuda/pool.hpp): max pool forward and backward, and the global
// case of the adaptive average pool (output 1×1: a row mean over each plane, backward a broadcast); other
// adaptive sizes and avg_pool2d stay CPU-only.
//
// Output size (max and avg): floor or ceil((H + 2·pad − kernel) / stride) + 1, and with ceil_mode the last
// window must start inside the input or the left padding (PyTorch's rule), so no window is pure padding.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/core/parallel.hpp"
#include "retikd/ops/common.hpp"
#include "retikd/ops/cuda/pool.hpp"

namespace retikd {
namespace ops {

// A (height, width) pair that a single number converts to: max_pool2d(x, 3, 2, 1) or
// max_pool2d(x, {3, 2}, {2, 1}, {1, 0}).
struct Pair2d {
  int64_t h = 0, w = 0;
  Pair2d() = default;
  Pair2d(int64_t v) : h(v), w(v) {}  // NOLINT: implicit on purpose
  Pair2d(int64_t h_, int64_t w_) : h(h_), w(w_) {}
};

namespace impl {

struct Pool2dGeometry {
  int64_t N, C, H, W, OH, OW;
  int64_t kh, kw, sh, sw, ph, pw;
  int64_t planes() const { return N * C; }
};

inline int64_t pool_output_size(int64_t in, int64_t k, int64_t s, int64_t p, bool ceil_mode) {
  const int64_t span = in + 2 * p - k;
  int64_t out = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
  if (ceil_mode && (out - 1) * s >= in + p) --out;  // the last window would start in the right padding
  return out;
}

// stride 0 (the default) means stride = kernel, as PyTorch's stride=None.
inline Pool2dGeometry pool2d_geometry(const char* op, const Shape& x, Pair2d kernel, Pair2d stride, Pair2d pad,
                                      bool ceil_mode) {
  RETIKD_CHECK(x.size() == 4, op, ": input ", shape_str(x), " must be 4-D (N, C, H, W)");
  if (stride.h == 0) stride.h = kernel.h;
  if (stride.w == 0) stride.w = kernel.w;
  RETIKD_CHECK(kernel.h >= 1 && kernel.w >= 1, op, ": kernel (", kernel.h, ", ", kernel.w, ") must be positive");
  RETIKD_CHECK(stride.h >= 1 && stride.w >= 1, op, ": stride (", stride.h, ", ", stride.w, ") must be positive");
  RETIKD_CHECK(pad.h >= 0 && pad.w >= 0 && 2 * pad.h <= kernel.h && 2 * pad.w <= kernel.w, op, ": padding (",
               pad.h, ", ", pad.w, ") must be between 0 and half the kernel (", kernel.h, ", ", kernel.w, ")");
  Pool2dGeometry g;
  g.N = x[0];
  g.C = x[1];
  g.H = x[2];
  g.W = x[3];
  g.kh = kernel.h;
  g.kw = kernel.w;
  g.sh = stride.h;
  g.sw = stride.w;
  g.ph = pad.h;
  g.pw = pad.w;
  RETIKD_CHECK(g.H >= 1 && g.W >= 1, op, ": input ", shape_str(x), " has an empty plane");
  RETIKD_CHECK(g.H + 2 * g.ph >= g.kh && g.W + 2 * g.pw >= g.kw, op, ": kernel (", g.kh, ", ", g.kw,
               ") is larger than the padded input ", g.H + 2 * g.ph, "x", g.W + 2 * g.pw, " of input ",
               shape_str(x));
  g.OH = pool_output_size(g.H, g.kh, g.sh, g.ph, ceil_mode);
  g.OW = pool_output_size(g.W, g.kw, g.sw, g.pw, ceil_mode);
  return g;
}

// Runs fn(plane) for every (n, c) plane on the pool; `work` is the cost of one plane in element visits.
template <class Fn>
void for_each_plane(int64_t planes, int64_t work, Fn&& fn) {
  parallel_for(0, planes, std::max<int64_t>(1, 32768 / std::max<int64_t>(1, work)), [&](int64_t lo, int64_t hi) {
    for (int64_t p = lo; p < hi; ++p) fn(p);
  });
}

// Returns (output, indices): indices (int64, same shape) hold the arg-max's flat position h·W + w within its
// input plane, PyTorch's convention. A NaN in the window wins, so NaNs propagate as in PyTorch.
inline std::pair<Tensor, Tensor> max_pool2d(const Tensor& x, Pair2d kernel, Pair2d stride, Pair2d pad,
                                            bool ceil_mode) {
  const Pool2dGeometry g = pool2d_geometry("max_pool2d", x.shape(), kernel, stride, pad, ceil_mode);
  // Every GPU x goes to the CUDA back end, which names the dtypes it has no kernel for.
  if (x.is_cuda()) return cuda_backend::max_pool2d(x, {g.OH, g.OW, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw});
  check_cpu("max_pool2d", x);
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
  RETIKD_CHECK(grad_out.shape() == indices.shape() && grad_out.dim() == 4 && x_shape.size() == 4 &&
                   grad_out.size(0) == x_shape[0] && grad_out.size(1) == x_shape[1],
               "max_pool2d backward: output gradient ", shape_str(grad_out.shape()), " does not match indices ",
               shape_str(indices.shape()), " and input ", shape_str(x_shape));
  if (grad_out.is_cuda()) return cuda_backend::max_pool2d_backward(grad_out, indices, x_shape);
  check_cpu("max_pool2d backward", grad_out);
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

inline Tensor avg_pool2d(const Tensor& x, Pair2d kernel, Pair2d stride, Pair2d pad, bool ceil_mode,
                         bool count_include_pad) {
  const Pool2dGeometry g = pool2d_geometry("avg_pool2d", x.shape(), kernel, stride, pad, ceil_mode);
  check_cpu("avg_pool2d", x);
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

inline Tensor avg_pool2d_backward(const Tensor& grad_out, const Shape& x_shape, Pair2d kernel, Pair2d stride,
                                  Pair2d pad, bool ceil_mode, bool count_include_pad) {
  const Pool2dGeometry g = pool2d_geometry("avg_pool2d", x_shape, kernel, stride, pad, ceil_mode);
  const Shape want{g.N, g.C, g.OH, g.OW};
  RETIKD_CHECK(grad_out.shape() == want, "avg_pool2d backward: output gradient ", shape_str(grad_out.shape()),
               " does not match the output ", shape_str(want));
  check_cpu("avg_pool2d backward", grad_out);
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

inline void adaptive_check(const Shape& x, int64_t out_h, int64_t out_w) {
  RETIKD_CHECK(x.size() == 4, "adaptive_avg_pool2d: input ", shape_str(x), " must be 4-D (N, C, H, W)");
  RETIKD_CHECK(out_h >= 1 && out_w >= 1, "adaptive_avg_pool2d: output size (", out_h, ", ", out_w,
               ") must be positive");
  RETIKD_CHECK(x[2] >= 1 && x[3] >= 1, "adaptive_avg_pool2d: input ", shape_str(x), " has an empty plane");
}

inline Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w) {
  adaptive_check(x.shape(), out_h, out_w);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  if (gpu_float(x) && out_h == 1 && out_w == 1) return cuda_backend::global_avg_pool2d(x);
  check_cpu("adaptive_avg_pool2d", x);
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

inline Tensor adaptive_avg_pool2d_backward(const Tensor& grad_out, const Shape& x_shape) {
  RETIKD_CHECK(grad_out.dim() == 4, "adaptive_avg_pool2d backward: output gradient ",
               shape_str(grad_out.shape()), " must be 4-D");
  const int64_t out_h = grad_out.size(2), out_w = grad_out.size(3);
  adaptive_check(x_shape, out_h, out_w);
  RETIKD_CHECK(grad_out.size(0) == x_shape[0] && grad_out.size(1) == x_shape[1],
               "adaptive_avg_pool2d backward: output gradient ", shape_str(grad_out.shape()),
               " does not match input ", shape_str(x_shape));
  const int64_t N = x_shape[0], C = x_shape[1], H = x_shape[2], W = x_shape[3];
  if (gpu_float(grad_out) && out_h == 1 && out_w == 1)
    return cuda_backend::global_avg_pool2d_backward(grad_out, x_shape);
  check_cpu("adaptive_avg_pool2d backward", grad_out);
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

}  // namespace impl

// Max pool over kernel windows (stride 0 = kernel; padding counts as −∞; at most half the kernel).
inline Var max_pool2d(const Var& x, Pair2d kernel, Pair2d stride = 0, Pair2d padding = 0, bool ceil_mode = false) {
  auto result = impl::max_pool2d(x.value(), kernel, stride, padding, ceil_mode);
  const Tensor indices = result.second;
  const Shape xs = x.shape();
  return make_result(result.first, "max_pool2d", {x}, [indices, xs](const Tensor& g) -> std::vector<Tensor> {
    return {impl::max_pool2d_backward(g, indices, xs)};
  });
}

// Average pool (stride 0 = kernel). count_include_pad: padded positions count in the divisor.
inline Var avg_pool2d(const Var& x, Pair2d kernel, Pair2d stride = 0, Pair2d padding = 0, bool ceil_mode = false,
                      bool count_include_pad = true) {
  Tensor out = impl::avg_pool2d(x.value(), kernel, stride, padding, ceil_mode, count_include_pad);
  const Shape xs = x.shape();
  return make_result(out, "avg_pool2d", {x},
                     [xs, kernel, stride, padding, ceil_mode, count_include_pad](const Tensor& g) -> std::vector<Tensor> {
                       return {impl::avg_pool2d_backward(g, xs, kernel, stride, padding, ceil_mode,
                                                         count_include_pad)};
                     });
}

// Average over PyTorch's adaptive bins to an (out_h, out_w) output; (1, 1) is global average pooling.
inline Var adaptive_avg_pool2d(const Var& x, int64_t out_h, int64_t out_w) {
  Tensor out = impl::adaptive_avg_pool2d(x.value(), out_h, out_w);
  const Shape xs = x.shape();
  return make_result(out, "adaptive_avg_pool2d", {x}, [xs](const Tensor& g) -> std::vector<Tensor> {
    return {impl::adaptive_avg_pool2d_backward(g, xs)};
  });
}

}  // namespace ops
}  // namespace retikd
