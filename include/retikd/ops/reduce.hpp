// retikd/ops/reduce.hpp — reductions over dimensions: sum, mean, max (values, with backward), argmax.
//
// The family's front end (docs/architecture.md): make_reduce_plan validates the dimensions once, then the
// reduced dimensions are moved last and each row is reduced. float32 / float16 tensors on a GPU (sum, mean,
// amax) go to ops/cuda/reduce.hpp (retikd/cuda/nn_ops.hpp's row kernel, float32 accumulation); the rest to
// ops/cpu/reduce.hpp (a double accumulator, threaded over rows). sum / mean backward need only expand +
// contiguous + mul_scalar, which run on either device. max's backward sends the gradient to the first maximal
// element of each row, as PyTorch's max(dim) does: on the CPU through argmax's indices, on a GPU through a 0/1
// mask composed from ops (max_composite, first_max_onehot). argmax stays CPU-only.
#pragma once

#include <algorithm>
#include <limits>
#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/ops/common.hpp"
#include "retikd/ops/cpu/reduce.hpp"
#include "retikd/ops/cuda/reduce.hpp"
#include "retikd/ops/elementwise.hpp"

namespace retikd {
namespace ops {
namespace impl {

// The plan (which dims are reduced, the kept and output shapes, the rows × row_len layout) and its rows view
// are shared with the CPU back end, which defines them.
using cpu::ReducePlan;
using cpu::rows_view;

inline ReducePlan make_reduce_plan(const Tensor& x, std::vector<int64_t> dims, bool keepdim, const char* op) {
  ReducePlan p;
  const int64_t nd = x.dim();
  p.reduced.assign(static_cast<std::size_t>(nd), dims.empty());
  for (int64_t d : dims) {
    const int64_t w = wrap_dim(d, nd, op);
    RETIKD_CHECK(!p.reduced[w] || dims.empty(), op, ": dimension ", d, " listed twice");
    p.reduced[w] = true;
  }
  for (int64_t d = 0; d < nd; ++d) {
    if (p.reduced[d]) {
      p.row_len *= x.size(d);
      p.keep_shape.push_back(1);
      if (keepdim) p.out_shape.push_back(1);
    } else {
      p.rows *= x.size(d);
      p.keep_shape.push_back(x.size(d));
      p.out_shape.push_back(x.size(d));
      p.perm.push_back(d);
    }
  }
  for (int64_t d = 0; d < nd; ++d)
    if (p.reduced[d]) p.perm.push_back(d);
  return p;
}

// The GPU form of cpu::reduce_rows for sum / mean (scale 1/row_len) / max on float32 / float16 tensors
// (op: cuda_backend::kRowSum or kRowMax). Every tensor on a GPU comes here, so other dtypes fail naming the
// missing CUDA path; a CPU-only build never holds one (it cannot allocate GPU storage).
inline Tensor cuda_reduce_rows(const Tensor& x, const ReducePlan& p, int op, double scale) {
  RETIKD_CHECK(x.dtype() == DType::float32 || x.dtype() == DType::float16, "reduce: no CUDA path for ",
               x.describe());
  Tensor out = Tensor::empty(p.out_shape, x.dtype(), x.device());
  const Tensor r = rows_view(x, p);
  return cuda_backend::reduce_rows(r, out, p.rows, p.row_len, op, scale);
}

inline Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false) {
  ReducePlan p = make_reduce_plan(x, dims, keepdim, "sum");
  if (x.is_cuda()) return cuda_reduce_rows(x, p, cuda_backend::kRowSum, 1.0);
  return cpu::sum(x, p);
}
inline Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false) {
  ReducePlan p = make_reduce_plan(x, dims, keepdim, "mean");
  RETIKD_CHECK(p.row_len > 0, "mean: reducing over an empty dimension of ", x.describe());
  if (x.is_cuda()) return cuda_reduce_rows(x, p, cuda_backend::kRowSum, 1.0 / static_cast<double>(p.row_len));
  return cpu::mean(x, p);
}
// Index of the first maximum along one dimension (int64). NaN counts as the maximum, as in PyTorch.
inline Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false) {
  ReducePlan p = make_reduce_plan(x, {dim}, keepdim, "argmax");
  RETIKD_CHECK(p.row_len > 0, "argmax: empty dimension in ", x.describe());
  return cpu::argmax(x, p);
}
inline Tensor amax(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false) {
  ReducePlan p = make_reduce_plan(x, dims, keepdim, "max");
  RETIKD_CHECK(p.row_len > 0, "max: empty reduction over ", x.describe());
  if (x.is_cuda()) return cuda_reduce_rows(x, p, cuda_backend::kRowMax, 1.0);
  return cpu::amax(x, p);
}

// Broadcasts a reduced gradient (shape out_shape) back over the input's shape as a contiguous tensor.
inline Tensor expand_reduced_grad(const Tensor& g, const ReducePlan& p, const Shape& in_shape) {
  return g.reshape(p.keep_shape).expand(in_shape).contiguous();
}

}  // namespace impl

inline Var sum(const Var& x, const std::vector<int64_t>& dims = {}, bool keepdim = false) {
  impl::ReducePlan p = impl::make_reduce_plan(x.value(), dims, keepdim, "sum");
  const Shape in_shape = x.shape();
  return make_result(impl::sum(x.value(), dims, keepdim), "sum", {x},
                     [p, in_shape](const Tensor& g) -> std::vector<Tensor> {
                       return {impl::expand_reduced_grad(g, p, in_shape)};
                     });
}
inline Var mean(const Var& x, const std::vector<int64_t>& dims = {}, bool keepdim = false) {
  impl::ReducePlan p = impl::make_reduce_plan(x.value(), dims, keepdim, "mean");
  const Shape in_shape = x.shape();
  const double scale = 1.0 / static_cast<double>(p.row_len);
  return make_result(impl::mean(x.value(), dims, keepdim), "mean", {x},
                     [p, in_shape, scale](const Tensor& g) -> std::vector<Tensor> {
                       return {impl::mul_scalar(impl::expand_reduced_grad(g, p, in_shape), scale)};
                     });
}
// Maximum along one dimension (or over everything when dim is omitted); the gradient goes to the first
// maximal element.
namespace impl {
// A 0/1 tensor of x's shape with one 1 per row along dim d: the first maximal element (row-major order), the
// element max's gradient goes to. From ops that run on every device: the rows' max, the elements equal to it,
// and of those the one with the largest rank L − i (distinct per position), so no index tensor is needed.
// A row holding NaN is not handled as the CPU's argmax does (the first NaN): the GPU route is for finite rows.
inline Tensor first_max_onehot(const Tensor& x, int64_t d) {
  const int64_t L = x.size(d);
  RETIKD_CHECK(x.dtype() != DType::float16 || L <= 2048, "max: the GPU gradient of a float16 max over ", L,
               " > 2048 elements (the ranks would round) — use float32");
  std::vector<double> ranks(static_cast<std::size_t>(L));
  for (int64_t i = 0; i < L; ++i) ranks[static_cast<std::size_t>(i)] = static_cast<double>(L - i);
  Shape rank_shape(static_cast<std::size_t>(x.dim()), 1);
  rank_shape[static_cast<std::size_t>(d)] = L;
  const Tensor rank = Tensor::from_vector(ranks, rank_shape).to(x.dtype()).to(x.device());
  const Tensor score = mul(eq(x, amax(x, {d}, true)), rank);
  return eq(score, amax(score, {d}, true));
}

// max over dim and over everything from ops that run on every device (the GPU route; the tests run it on CPU
// tensors against the CPU path): the values from the row-max kernel, the gradient routed by first_max_onehot.
inline Var max_composite(const Var& x, int64_t dim, bool keepdim) {
  const Tensor xv = x.value();
  const int64_t d = wrap_dim(dim, x.dim(), "max");
  return make_result(amax(xv, {d}, keepdim), "max", {x}, [xv, d, keepdim](const Tensor& g) -> std::vector<Tensor> {
    return {mul(first_max_onehot(xv, d), keepdim ? g : g.unsqueeze(d))};
  });
}
inline Var max_composite(const Var& x) {
  const Tensor xv = x.value().contiguous();
  RETIKD_CHECK(xv.numel() > 0, "max: empty tensor ", xv.describe());
  const Tensor flat = xv.reshape({xv.numel()});
  return make_result(amax(xv), "max", {x}, [flat, xv](const Tensor& g) -> std::vector<Tensor> {
    return {mul(first_max_onehot(flat, 0), g.reshape({1})).reshape(xv.shape())};
  });
}
}  // namespace impl

inline Var max(const Var& x, int64_t dim, bool keepdim = false) {
  if (gpu_float(x.value())) return impl::max_composite(x, dim, keepdim);
  Tensor xv = x.value();
  Tensor values = impl::amax(xv, {dim}, keepdim);
  Tensor index = impl::argmax(xv, dim, true);  // keepdim: one index per row
  const int64_t d = wrap_dim(dim, x.dim(), "max");
  return make_result(values, "max", {x}, [xv, index, d, keepdim](const Tensor& g) -> std::vector<Tensor> {
    Tensor gk = keepdim ? g : g.unsqueeze(d);
    return {cpu::max_backward(gk, index, xv.shape(), xv.dtype(), d)};
  });
}
// Maximum over every element (a scalar); the gradient goes to the first maximal element in row-major order.
inline Var max(const Var& x) {
  if (gpu_float(x.value())) return impl::max_composite(x);
  Tensor xv = x.value().contiguous();
  RETIKD_CHECK(xv.numel() > 0, "max: empty tensor ", xv.describe());
  Tensor flat_index = impl::argmax(xv.reshape({xv.numel()}), 0, false);
  const int64_t at = flat_index.item<int64_t>();
  return make_result(impl::amax(xv), "max", {x}, [xv, at](const Tensor& g) -> std::vector<Tensor> {
    Tensor out = Tensor::zeros(xv.shape(), xv.dtype());
    Tensor flat = out.reshape({out.numel()});
    flat.narrow(0, at, 1).copy_(g.reshape({1}));
    return {out};
  });
}
inline Tensor argmax(const Var& x, int64_t dim, bool keepdim = false) {
  return impl::argmax(x.value(), dim, keepdim);
}

}  // namespace ops
}  // namespace retikd
