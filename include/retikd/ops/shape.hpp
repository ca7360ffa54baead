// retikd/ops/shape.hpp — differentiable shape ops on Var: the views (reshape, view, flatten, permute,
// transpose, slice, narrow, squeeze, unsqueeze, expand, contiguous) and the copying ops (concat, split,
// chunk, index_select, gather, constant pad).
//
// Views share storage with their input, like Tensor's; their backward is the inverse view of the gradient
// (a view too, when possible: gradients may be non-contiguous). Ops that pick elements (slice, narrow,
// index_select, gather) scatter their gradient into zeros of the input's shape, adding where an element was
// picked twice; expand sums the gradient back over the broadcast dimensions. Ops built on Tensor::copy_
// (concat, slice/narrow backward, pad) work on any device; index_select and gather are CPU-only for now.
// Indices are int64 (int32 accepted and widened); out-of-range indices throw naming the index and position.
// The CUDA path (concat's device copies) is in ops/cuda/shape.hpp, the CPU loops of index_select and gather in
// ops/cpu/shape.hpp.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/ops/common.hpp"
#include "retikd/ops/cpu/shape.hpp"
#include "retikd/ops/cuda/shape.hpp"

namespace retikd {
namespace ops {
namespace impl {

// An index tensor as contiguous int64 on the host, after checking its dtype.
inline Tensor index_as_int64(const Tensor& index, const char* op) {
  RETIKD_CHECK(index.defined(), op, ": index is undefined");
  RETIKD_CHECK(index.dtype() == DType::int64 || index.dtype() == DType::int32, op,
               ": index must be int64 (or int32), got ", index.describe());
  check_cpu(op, index);
  return index.to(DType::int64).contiguous();
}

// Concatenation along dim: every input has the output's shape outside dim, one dtype, one device.
inline Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
  RETIKD_CHECK(!xs.empty(), "concat: no inputs");
  const Tensor& first = xs[0];
  RETIKD_CHECK(first.defined(), "concat: input 0 is undefined");
  RETIKD_CHECK(first.dim() > 0, "concat: cannot concatenate 0-D tensors (input 0 is ", first.describe(), ")");
  const int64_t d = wrap_dim(dim, first.dim(), "concat");
  Shape out_shape = first.shape();
  out_shape[d] = 0;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    RETIKD_CHECK(x.defined(), "concat: input ", i, " is undefined");
    RETIKD_CHECK(x.dtype() == first.dtype() && x.device() == first.device(), "concat: input ", i, " ",
                 x.describe(), " differs in dtype or device from input 0 ", first.describe());
    bool ok = x.dim() == first.dim();
    for (int64_t k = 0; ok && k < x.dim(); ++k) ok = k == d || x.size(k) == first.size(k);
    RETIKD_CHECK(ok, "concat: input ", i, " of shape ", shape_str(x.shape()),
                 " does not match input 0 of shape ", shape_str(first.shape()), " outside dimension ", d);
    out_shape[d] += x.size(d);
  }
  Tensor out = Tensor::empty(out_shape, first.dtype(), first.device());
  // GPU: one 2-D device copy per input (a strided copy_ into a narrowed view would go through the host).
  if (out.is_cuda()) return cuda_backend::concat(xs, d, out);
  int64_t offset = 0;
  for (const Tensor& x : xs) {
    if (x.size(d) > 0) out.narrow(d, offset, x.size(d)).copy_(x);
    offset += x.size(d);
  }
  return out;
}

// Gradient of a slice: zeros of the input's shape with g written into the sliced window.
inline Tensor slice_backward(const Tensor& g, const Shape& in_shape, int64_t d, int64_t start, int64_t end,
                             int64_t step) {
  Tensor gx = Tensor::zeros(in_shape, g.dtype(), g.device());
  Tensor window = gx.slice(d, start, end, step);
  if (window.numel() > 0) window.copy_(g);
  return gx;
}

// out = x with dimension d replaced by x[..., index[j], ...] for j over the (0-D or 1-D) index.
inline Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  check_cpu("index_select", x);
  RETIKD_CHECK(x.dim() > 0, "index_select: input ", x.describe(), " is 0-D");
  RETIKD_CHECK(index.defined() && index.dim() <= 1, "index_select: index must be 0-D or 1-D, got ",
               index.defined() ? index.describe() : std::string("undefined"));
  const int64_t d = wrap_dim(dim, x.dim(), "index_select");
  const Tensor idx = index_as_int64(index, "index_select");
  const int64_t* pi = idx.data<int64_t>();
  const int64_t m = idx.numel(), n = x.size(d);
  for (int64_t j = 0; j < m; ++j)
    RETIKD_CHECK(pi[j] >= 0 && pi[j] < n, "index_select: index ", pi[j], " at position ", j,
                 " out of range for dimension ", d, " of size ", n, " (input ", x.describe(), ")");
  Shape out_shape = x.shape();
  out_shape[d] = m;
  Tensor out = Tensor::empty(out_shape, x.dtype());
  if (out.numel() == 0) return out;
  return cpu::index_select(x, d, idx, out);
}

// Gradient of index_select: zeros of in_shape with g's rows added at their indices (repeats add up).
inline Tensor index_select_backward(const Tensor& g, const Shape& in_shape, int64_t dim,
                                    const Tensor& index) {
  check_cpu("index_select backward", g);
  const int64_t d = wrap_dim(dim, static_cast<int64_t>(in_shape.size()), "index_select backward");
  const Tensor idx = index_as_int64(index, "index_select backward");
  Tensor gx = Tensor::zeros(in_shape, g.dtype());
  if (g.numel() == 0) return gx;
  return cpu::index_select_backward(g, d, idx, gx);
}

// PyTorch's gather: out[i][j][k] = x[i][index[i][j][k]][k] for dim = 1. index has x's number of dimensions
// and index.size(k) <= x.size(k) for every k != dim; the output has index's shape.
inline void check_gather_shapes(const char* op, const Shape& x_shape, int64_t d, const Tensor& index) {
  RETIKD_CHECK(index.dim() == static_cast<int64_t>(x_shape.size()), op, ": index ", shape_str(index.shape()),
               " must have as many dimensions as the input ", shape_str(x_shape));
  for (int64_t k = 0; k < index.dim(); ++k)
    RETIKD_CHECK(k == d || index.size(k) <= x_shape[k], op, ": index ", shape_str(index.shape()),
                 " is larger than the input ", shape_str(x_shape), " in dimension ", k);
}

inline Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  check_cpu("gather", x);
  RETIKD_CHECK(x.dim() > 0, "gather: input ", x.describe(), " is 0-D");
  const int64_t d = wrap_dim(dim, x.dim(), "gather");
  const Tensor idx = index_as_int64(index, "gather");
  check_gather_shapes("gather", x.shape(), d, idx);
  Tensor out = Tensor::empty(idx.shape(), x.dtype());
  if (out.numel() == 0) return out;
  return cpu::gather(x, d, idx, out);
}

// Gradient of gather: PyTorch's scatter_add of g into zeros of in_shape.
inline Tensor gather_backward(const Tensor& g, const Shape& in_shape, int64_t dim, const Tensor& index) {
  check_cpu("gather backward", g);
  const int64_t d = wrap_dim(dim, static_cast<int64_t>(in_shape.size()), "gather backward");
  const Tensor idx = index_as_int64(index, "gather backward");
  check_gather_shapes("gather backward", in_shape, d, idx);
  RETIKD_CHECK(g.shape() == idx.shape(), "gather backward: gradient ", g.describe(), " does not match index ",
               shape_str(idx.shape()));
  Tensor gx = Tensor::zeros(in_shape, g.dtype());
  if (g.numel() == 0) return gx;
  return cpu::gather_backward(g, in_shape, d, idx, gx);
}

// The per-dimension copy window of a constant pad. pads = {left, right, top, bottom, front, back, ...}: the
// first pair pads the last dimension, the next pair the one before, as torch.nn.functional.pad. Negative
// amounts crop.
struct PadWindow {
  Shape out_shape;
  std::vector<int64_t> src_start, dst_start, length;  // per dimension
  bool empty = false;                                 // nothing of the input survives
  bool crops = false;                                 // some amount is negative
};
inline PadWindow pad_window(const Shape& in_shape, const std::vector<int64_t>& pads, const char* op) {
  const int64_t nd = static_cast<int64_t>(in_shape.size());
  RETIKD_CHECK(pads.size() % 2 == 0, op, ": pads must come in (before, after) pairs, got ", pads.size(),
               " values");
  RETIKD_CHECK(static_cast<int64_t>(pads.size()) <= 2 * nd, op, ": ", pads.size(), " pad values for input ",
               shape_str(in_shape), " (at most 2 per dimension)");
  PadWindow w;
  w.out_shape = in_shape;
  w.src_start.assign(nd, 0);
  w.dst_start.assign(nd, 0);
  w.length = in_shape;
  for (std::size_t p = 0; p < pads.size() / 2; ++p) {
    const int64_t d = nd - 1 - static_cast<int64_t>(p);
    const int64_t before = pads[2 * p], after = pads[2 * p + 1];
    w.out_shape[d] = in_shape[d] + before + after;
    RETIKD_CHECK(w.out_shape[d] >= 0, op, ": pads (", before, ", ", after, ") on dimension ", d, " of ",
                 shape_str(in_shape), " give a negative size");
    w.crops = w.crops || before < 0 || after < 0;
    w.src_start[d] = before < 0 ? -before : 0;
    w.dst_start[d] = before > 0 ? before : 0;
    w.length[d] = in_shape[d] - w.src_start[d] - (after < 0 ? -after : 0);
    if (w.length[d] <= 0) {
      w.length[d] = 0;
      w.empty = true;
    }
  }
  return w;
}
inline Tensor window_of(const Tensor& t, const std::vector<int64_t>& start,
                        const std::vector<int64_t>& length) {
  Tensor v = t;
  for (int64_t d = 0; d < t.dim(); ++d) v = v.narrow(d, start[d], length[d]);
  return v;
}

inline Tensor constant_pad(const Tensor& x, const std::vector<int64_t>& pads, double value) {
  RETIKD_CHECK(x.defined(), "pad: input is undefined");
  const PadWindow w = pad_window(x.shape(), pads, "pad");
  Tensor out = Tensor::full(w.out_shape, value, x.dtype(), x.device());
  if (!w.empty && x.numel() > 0)
    window_of(out, w.dst_start, w.length).copy_(window_of(x, w.src_start, w.length));
  return out;
}

// Gradient of constant_pad: the window of g that holds the input (a view), zero where the pad cropped.
inline Tensor constant_pad_backward(const Tensor& g, const Shape& in_shape,
                                    const std::vector<int64_t>& pads) {
  const PadWindow w = pad_window(in_shape, pads, "pad backward");
  RETIKD_CHECK(g.shape() == w.out_shape, "pad backward: gradient ", g.describe(), " does not match output ",
               shape_str(w.out_shape));
  if (!w.crops) return window_of(g, w.dst_start, w.length);
  Tensor gx = Tensor::zeros(in_shape, g.dtype(), g.device());
  if (!w.empty && gx.numel() > 0)
    window_of(gx, w.src_start, w.length).copy_(window_of(g, w.dst_start, w.length));
  return gx;
}

}  // namespace impl

// ---- views ---------------------------------------------------------------------------------------------
// A view when the strides allow it, else a copy; one size may be -1.
inline Var reshape(const Var& x, const Shape& shape) {
  const Shape in_shape = x.shape();
  return make_result(x.value().reshape(shape), "reshape", {x},
                     [in_shape](const Tensor& g) -> std::vector<Tensor> { return {g.reshape(in_shape)}; });
}
// Like reshape but never copies: throws when the strides do not allow a view.
inline Var view(const Var& x, const Shape& shape) {
  const Shape in_shape = x.shape();
  return make_result(x.value().view(shape), "view", {x},
                     [in_shape](const Tensor& g) -> std::vector<Tensor> { return {g.reshape(in_shape)}; });
}
inline Var flatten(const Var& x, int64_t start = 0, int64_t end = -1) {
  const Shape in_shape = x.shape();
  return make_result(x.value().flatten(start, end), "flatten", {x},
                     [in_shape](const Tensor& g) -> std::vector<Tensor> { return {g.reshape(in_shape)}; });
}
inline Var permute(const Var& x, const std::vector<int64_t>& dims) {
  Tensor out = x.value().permute(dims);  // validates dims
  std::vector<int64_t> inverse(dims.size());
  for (std::size_t i = 0; i < dims.size(); ++i)
    inverse[static_cast<std::size_t>(wrap_dim(dims[i], x.dim(), "permute"))] = static_cast<int64_t>(i);
  return make_result(out, "permute", {x},
                     [inverse](const Tensor& g) -> std::vector<Tensor> { return {g.permute(inverse)}; });
}
inline Var transpose(const Var& x, int64_t d0, int64_t d1) {
  return make_result(x.value().transpose(d0, d1), "transpose", {x},
                     [d0, d1](const Tensor& g) -> std::vector<Tensor> { return {g.transpose(d0, d1)}; });
}
// Python slicing start:end:step along d (negative start/end count from the end; clamped to the size).
inline Var slice(const Var& x, int64_t d, int64_t start, int64_t end, int64_t step = 1) {
  const Shape in_shape = x.shape();
  return make_result(x.value().slice(d, start, end, step), "slice", {x},
                     [in_shape, d, start, end, step](const Tensor& g) -> std::vector<Tensor> {
                       return {impl::slice_backward(g, in_shape, d, start, end, step)};
                     });
}
// Elements [start, start + length) along d; throws when the range does not fit.
inline Var narrow(const Var& x, int64_t d, int64_t start, int64_t length) {
  const Shape in_shape = x.shape();
  return make_result(x.value().narrow(d, start, length), "narrow", {x},
                     [in_shape, d, start, length](const Tensor& g) -> std::vector<Tensor> {
                       return {impl::slice_backward(g, in_shape, d, start, start + length, 1)};
                     });
}
inline Var squeeze(const Var& x, int64_t d) {
  const Shape in_shape = x.shape();
  return make_result(x.value().squeeze(d), "squeeze", {x},
                     [in_shape](const Tensor& g) -> std::vector<Tensor> { return {g.reshape(in_shape)}; });
}
inline Var squeeze(const Var& x) {
  const Shape in_shape = x.shape();
  return make_result(x.value().squeeze(), "squeeze", {x},
                     [in_shape](const Tensor& g) -> std::vector<Tensor> { return {g.reshape(in_shape)}; });
}
inline Var unsqueeze(const Var& x, int64_t d) {
  const Shape in_shape = x.shape();
  return make_result(x.value().unsqueeze(d), "unsqueeze", {x},
                     [in_shape](const Tensor& g) -> std::vector<Tensor> { return {g.reshape(in_shape)}; });
}
// Broadcasts size-1 dimensions and prepends new ones (-1 keeps a size); the gradient is summed back.
inline Var expand(const Var& x, const Shape& shape) {
  const Shape in_shape = x.shape();
  return make_result(
      x.value().expand(shape), "expand", {x},
      [in_shape](const Tensor& g) -> std::vector<Tensor> { return {impl::sum_to(g, in_shape)}; });
}
inline Var contiguous(const Var& x) {
  return make_result(x.value().contiguous(), "contiguous", {x},
                     [](const Tensor& g) -> std::vector<Tensor> { return {g}; });
}

// ---- copies -----------------------------------------------------------------------------------------------
inline Var concat(const std::vector<Var>& xs, int64_t dim) {
  std::vector<Tensor> values;
  values.reserve(xs.size());
  for (std::size_t i = 0; i < xs.size(); ++i) {
    RETIKD_CHECK(xs[i].defined(), "concat: input ", i, " is undefined");
    values.push_back(xs[i].value());
  }
  Tensor out = impl::concat(values, dim);
  const int64_t d = wrap_dim(dim, out.dim(), "concat");
  std::vector<int64_t> sizes;
  for (const Tensor& v : values) sizes.push_back(v.size(d));
  return make_result(out, "concat", xs, [d, sizes](const Tensor& g) -> std::vector<Tensor> {
    std::vector<Tensor> grads;
    int64_t offset = 0;
    for (int64_t s : sizes) {
      grads.push_back(g.narrow(d, offset, s));
      offset += s;
    }
    return grads;
  });
}

// Pieces of the given sizes along dim (they must add up to its size); each piece is a narrow view.
inline std::vector<Var> split(const Var& x, const std::vector<int64_t>& sizes, int64_t dim) {
  RETIKD_CHECK(x.dim() > 0, "split: input ", x.value().describe(), " is 0-D");
  const int64_t d = wrap_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    RETIKD_CHECK(s >= 0, "split: negative size ", s);
    total += s;
  }
  RETIKD_CHECK(total == x.size(d), "split: sizes add up to ", total, " but dimension ", d, " of ",
               x.value().describe(), " has size ", x.size(d));
  std::vector<Var> pieces;
  int64_t offset = 0;
  for (int64_t s : sizes) {
    pieces.push_back(narrow(x, d, offset, s));
    offset += s;
  }
  return pieces;
}

// torch.chunk: pieces of ceil(size / n) along dim, the last one smaller; fewer than n pieces when the size
// does not allow n (7 in 4 chunks → 2, 2, 2, 1; 5 in 4 → 2, 2, 1). A size-0 dimension gives n empty pieces.
inline std::vector<Var> chunk(const Var& x, int64_t n, int64_t dim) {
  RETIKD_CHECK(n > 0, "chunk: number of chunks must be positive, got ", n);
  RETIKD_CHECK(x.dim() > 0, "chunk: input ", x.value().describe(), " is 0-D");
  const int64_t d = wrap_dim(dim, x.dim(), "chunk");
  const int64_t size = x.size(d);
  if (size == 0) return split(x, std::vector<int64_t>(static_cast<std::size_t>(n), 0), d);
  const int64_t piece = (size + n - 1) / n;
  std::vector<int64_t> sizes;
  for (int64_t offset = 0; offset < size; offset += piece) sizes.push_back(std::min(piece, size - offset));
  return split(x, sizes, d);
}

// x with dimension dim replaced by the rows index (0-D or 1-D, int64) picks; repeats are allowed and their
// gradients add up.
inline Var index_select(const Var& x, int64_t dim, const Tensor& index) {
  Tensor out = impl::index_select(x.value(), dim, index);
  const Shape in_shape = x.shape();
  const Tensor idx = index.to(DType::int64).contiguous();  // fixed now: later edits of `index` change nothing
  const Tensor saved = idx.shares_storage_with(index) ? idx.clone() : idx;
  return make_result(out, "index_select", {x},
                     [in_shape, dim, saved](const Tensor& g) -> std::vector<Tensor> {
                       return {impl::index_select_backward(g, in_shape, dim, saved)};
                     });
}

// PyTorch's gather along dim (see impl::gather); the gradient scatter-adds into the input's shape.
inline Var gather(const Var& x, int64_t dim, const Tensor& index) {
  Tensor out = impl::gather(x.value(), dim, index);
  const Shape in_shape = x.shape();
  const Tensor idx = index.to(DType::int64).contiguous();
  const Tensor saved = idx.shares_storage_with(index) ? idx.clone() : idx;
  return make_result(out, "gather", {x}, [in_shape, dim, saved](const Tensor& g) -> std::vector<Tensor> {
    return {impl::gather_backward(g, in_shape, dim, saved)};
  });
}

// Constant padding of the last dimensions: pads = {left, right} pads the last dimension, {left, right, top,
// bottom} the last two, and so on (torch.nn.functional.pad, mode "constant"); negative amounts crop.
inline Var pad(const Var& x, const std::vector<int64_t>& pads, double value = 0.0) {
  Tensor out = impl::constant_pad(x.value(), pads, value);
  const Shape in_shape = x.shape();
  return make_result(out, "pad", {x}, [in_shape, pads](const Tensor& g) -> std::vector<Tensor> {
    return {impl::constant_pad_backward(g, in_shape, pads)};
  });
}

}  // namespace ops
}  // namespace retikd
