// retikd/ops/pool.hpp — 2-D pooling on (N, C, H, W): max pool (gradient routed to the arg-max), average
// pool (PyTorch's count_include_pad divisor rules), adaptive average pool (PyTorch's bins), forward and
// backward. This front end checks the arguments and computes the geometry; the CPU loops (threaded over the
// N·C planes) are in ops/cpu/pool.hpp.
// GPU (float32 / float16; the CUDA paths are in ops/cuda/pool.hpp): max pool forward and backward, and the global
// case of the adaptive average pool (output 1×1: a row mean over each plane, backward a broadcast). Average
// pooling is separable — each output averages a window whose row range and column range, and divisor, factor
// — so avg_pool2d and the other adaptive sizes run on the GPU as two GEMMs with averaging matrices,
// y = A_h · x · A_wᵀ (like interpolate_bicubic), their backward through matmul's; the same route runs on CPU
// tensors in the tests (test_ops.cpp), which compare it with the CPU loops.
//
// Output size (max and avg): floor or ceil((H + 2·pad − kernel) / stride) + 1, and with ceil_mode the last
// window must start inside the input or the left padding (PyTorch's rule), so no window is pure padding.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/ops/common.hpp"
#include "retikd/ops/cpu/pool.hpp"
#include "retikd/ops/cuda/pool.hpp"
#include "retikd/ops/dispatch.hpp"
#include "retikd/ops/matmul.hpp"

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

// Defined in the CPU back end, which loops over it; pool2d_geometry below fills it in (nn/layers.hpp too).
using Pool2dGeometry = cpu::Pool2dGeometry;

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

// Returns (output, indices): indices (int64, same shape) hold the arg-max's flat position h·W + w within its
// input plane, PyTorch's convention. A NaN in the window wins, so NaNs propagate as in PyTorch.
inline std::pair<Tensor, Tensor> max_pool2d(const Tensor& x, Pair2d kernel, Pair2d stride, Pair2d pad,
                                            bool ceil_mode) {
  const Pool2dGeometry g = pool2d_geometry("max_pool2d", x.shape(), kernel, stride, pad, ceil_mode);
  // Every GPU x goes to the CUDA back end, which names the dtypes it has no kernel for.
  if (x.is_cuda()) return cuda_backend::max_pool2d(x, {g.OH, g.OW, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw});
  return cpu::max_pool2d(x, g);
}

// Input gradient of max_pool2d: each output gradient is added at its arg-max.
inline Tensor max_pool2d_backward(const Tensor& grad_out, const Tensor& indices, const Shape& x_shape) {
  RETIKD_CHECK(grad_out.shape() == indices.shape() && grad_out.dim() == 4 && x_shape.size() == 4 &&
                   grad_out.size(0) == x_shape[0] && grad_out.size(1) == x_shape[1],
               "max_pool2d backward: output gradient ", shape_str(grad_out.shape()), " does not match indices ",
               shape_str(indices.shape()), " and input ", shape_str(x_shape));
  if (grad_out.is_cuda()) return cuda_backend::max_pool2d_backward(grad_out, indices, x_shape);
  return cpu::max_pool2d_backward(grad_out, indices, x_shape);
}

inline Tensor avg_pool2d(const Tensor& x, Pair2d kernel, Pair2d stride, Pair2d pad, bool ceil_mode,
                         bool count_include_pad) {
  const Pool2dGeometry g = pool2d_geometry("avg_pool2d", x.shape(), kernel, stride, pad, ceil_mode);
  return cpu::avg_pool2d(x, g, count_include_pad);
}

inline Tensor avg_pool2d_backward(const Tensor& grad_out, const Shape& x_shape, Pair2d kernel, Pair2d stride,
                                  Pair2d pad, bool ceil_mode, bool count_include_pad) {
  const Pool2dGeometry g = pool2d_geometry("avg_pool2d", x_shape, kernel, stride, pad, ceil_mode);
  const Shape want{g.N, g.C, g.OH, g.OW};
  RETIKD_CHECK(grad_out.shape() == want, "avg_pool2d backward: output gradient ", shape_str(grad_out.shape()),
               " does not match the output ", shape_str(want));
  return cpu::avg_pool2d_backward(grad_out, x_shape, g, count_include_pad);
}

inline void adaptive_check(const Shape& x, int64_t out_h, int64_t out_w) {
  RETIKD_CHECK(x.size() == 4, "adaptive_avg_pool2d: input ", shape_str(x), " must be 4-D (N, C, H, W)");
  RETIKD_CHECK(out_h >= 1 && out_w >= 1, "adaptive_avg_pool2d: output size (", out_h, ", ", out_w,
               ") must be positive");
  RETIKD_CHECK(x[2] >= 1 && x[3] >= 1, "adaptive_avg_pool2d: input ", shape_str(x), " has an empty plane");
}

inline Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w) {
  adaptive_check(x.shape(), out_h, out_w);
  if (gpu_float(x) && out_h == 1 && out_w == 1) return cuda_backend::global_avg_pool2d(x);
  return cpu::adaptive_avg_pool2d(x, out_h, out_w);
}

inline Tensor adaptive_avg_pool2d_backward(const Tensor& grad_out, const Shape& x_shape) {
  RETIKD_CHECK(grad_out.dim() == 4, "adaptive_avg_pool2d backward: output gradient ",
               shape_str(grad_out.shape()), " must be 4-D");
  const int64_t out_h = grad_out.size(2), out_w = grad_out.size(3);
  adaptive_check(x_shape, out_h, out_w);
  RETIKD_CHECK(grad_out.size(0) == x_shape[0] && grad_out.size(1) == x_shape[1],
               "adaptive_avg_pool2d backward: output gradient ", shape_str(grad_out.shape()),
               " does not match input ", shape_str(x_shape));
  if (gpu_float(grad_out) && out_h == 1 && out_w == 1)
    return cuda_backend::global_avg_pool2d_backward(grad_out, x_shape);
  return cpu::adaptive_avg_pool2d_backward(grad_out, x_shape);
}

// The (out, in) averaging matrix of one axis of avg_pool2d: row i holds 1/d on the window's positions inside
// the input, d that axis's factor of PyTorch's divisor (cpu::avg_pool_divisor: the window clipped to the
// padded input with count_include_pad, else to the input), 0 where d is 0.
inline Tensor avg_pool_matrix(int64_t in, int64_t out, int64_t k, int64_t s, int64_t p, bool count_include_pad,
                              DType dtype) {
  std::vector<double> a(static_cast<std::size_t>(out * in), 0.0);
  for (int64_t i = 0; i < out; ++i) {
    const int64_t start = i * s - p, end = std::min(start + k, in + p);
    const int64_t lo = std::max<int64_t>(start, 0), hi = std::min(start + k, in);
    const int64_t d = count_include_pad ? end - start : std::min(end, in) - lo;
    if (d <= 0) continue;
    for (int64_t h = lo; h < hi; ++h) a[static_cast<std::size_t>(i * in + h)] = 1.0 / static_cast<double>(d);
  }
  return Tensor::from_vector<double>(a, {out, in}).to(dtype);
}

// The (out, in) averaging matrix of one axis of adaptive_avg_pool2d (PyTorch's bins, cpu::adaptive_start/end).
inline Tensor adaptive_pool_matrix(int64_t in, int64_t out, DType dtype) {
  std::vector<double> a(static_cast<std::size_t>(out * in), 0.0);
  for (int64_t i = 0; i < out; ++i) {
    const int64_t lo = cpu::adaptive_start(i, in, out), hi = cpu::adaptive_end(i, in, out);
    for (int64_t h = lo; h < hi; ++h) a[static_cast<std::size_t>(i * in + h)] = 1.0 / static_cast<double>(hi - lo);
  }
  return Tensor::from_vector<double>(a, {out, in}).to(dtype);
}

// A_h · x · A_wᵀ for x (N, C, H, W): the GEMM route of the average pools, on x's device, differentiable in x.
inline Var pool_by_matrices(const Var& x, const Tensor& a_h, const Tensor& a_w) {
  const Device dev = x.value().device();
  const Var ah(a_h.to(dev), false), aw_t(a_w.transpose(0, 1).contiguous().to(dev), false);
  return ops::matmul(ops::matmul(ah, x), aw_t);
}

// avg_pool2d as two GEMMs (the GPU route; any device).
inline Var avg_pool2d_by_matrices(const Var& x, Pair2d kernel, Pair2d stride, Pair2d pad, bool ceil_mode,
                                  bool count_include_pad) {
  const Pool2dGeometry g = pool2d_geometry("avg_pool2d", x.shape(), kernel, stride, pad, ceil_mode);
  const DType dt = x.value().dtype();
  return pool_by_matrices(x, avg_pool_matrix(g.H, g.OH, g.kh, g.sh, g.ph, count_include_pad, dt),
                          avg_pool_matrix(g.W, g.OW, g.kw, g.sw, g.pw, count_include_pad, dt));
}

// adaptive_avg_pool2d as two GEMMs (the GPU route for outputs other than 1×1; any device).
inline Var adaptive_avg_pool2d_by_matrices(const Var& x, int64_t out_h, int64_t out_w) {
  adaptive_check(x.shape(), out_h, out_w);
  const DType dt = x.value().dtype();
  return pool_by_matrices(x, adaptive_pool_matrix(x.size(2), out_h, dt), adaptive_pool_matrix(x.size(3), out_w, dt));
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
  if (gpu_float(x.value()))
    return impl::avg_pool2d_by_matrices(x, kernel, stride, padding, ceil_mode, count_include_pad);
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
  if (gpu_float(x.value()) && (out_h != 1 || out_w != 1)) return impl::adaptive_avg_pool2d_by_matrices(x, out_h, out_w);
  Tensor out = impl::adaptive_avg_pool2d(x.value(), out_h, out_w);
  const Shape xs = x.shape();
  return make_result(out, "adaptive_avg_pool2d", {x}, [xs](const Tensor& g) -> std::vector<Tensor> {
    return {impl::adaptive_avg_pool2d_backward(g, xs)};
  });
}

}  // namespace ops
}  // namespace retikd
