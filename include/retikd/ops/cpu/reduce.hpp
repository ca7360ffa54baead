// retikd/ops/cpu/reduce.hpp — the CPU back end of the reduction family (ops/reduce.hpp): sum, mean, max
// (values) and argmax over any set of dimensions, and the scatter of max's gradient, in float32 and float64.
//
// One simple kernel serves every set of dimensions: the reduced dimensions are moved last (a permuted view
// made contiguous, rows_view), then each row is reduced with a double accumulator, threaded over rows. NaN
// counts as the maximum, as in PyTorch (and in the CUDA row kernel of kernels/row_ops.cu, which reduces the
// same rows). The reduction plan is built and validated by the front end (make_reduce_plan): it lives here
// because this header and the front end's CUDA path both lay their rows out by it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "retikd/core/parallel.hpp"
#include "retikd/core/tensor.hpp"
#include "retikd/ops/dispatch.hpp"

namespace retikd {
namespace cpu {

// Normalised reduction plan: which dims are reduced, the kept shape and the output shape.
struct ReducePlan {
  std::vector<bool> reduced;
  Shape out_shape;      // with keepdim applied
  Shape keep_shape;     // reduced dims set to 1 (for broadcasting the gradient back)
  int64_t rows = 1;     // product of kept sizes
  int64_t row_len = 1;  // product of reduced sizes
  std::vector<int64_t> perm;  // kept dims first, reduced dims last
};

// rows × row_len view of x with the reduced dims last (contiguous).
inline Tensor rows_view(const Tensor& x, const ReducePlan& p) {
  if (x.dim() == 0) return x.reshape({1, 1});
  return x.permute(p.perm).contiguous().reshape({p.rows, p.row_len});
}

// fn(row_pointer, row_len) -> value, for every row; the output has the plan's out_shape.
template <class F>
Tensor reduce_rows(const Tensor& x, const ReducePlan& p, const char* op, DType out_dtype, F&& fn) {
  ops::check_cpu(op, x);
  Tensor out = Tensor::empty(p.out_shape, out_dtype);
  dispatch_floating(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    Tensor r = rows_view(x, p);
    const T* px = r.data<T>();
    dispatch_all(out_dtype, op, [&](auto out_tag) {
      using O = typename decltype(out_tag)::type;
      O* po = out.data<O>();
      const int64_t len = p.row_len;
      parallel_for(0, p.rows, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(len, 1)),
                   [&](int64_t lo, int64_t hi) {
                     for (int64_t i = lo; i < hi; ++i) po[i] = convert_scalar<O>(fn(px + i * len, len));
                   });
    });
  });
  return out;
}

inline Tensor sum(const Tensor& x, const ReducePlan& p) {
  return reduce_rows(x, p, "sum", x.dtype(), [](const auto* row, int64_t n) {
    double s = 0.0;
    for (int64_t k = 0; k < n; ++k) s += static_cast<double>(row[k]);
    return s;
  });
}
// The front end has checked p.row_len > 0.
inline Tensor mean(const Tensor& x, const ReducePlan& p) {
  return reduce_rows(x, p, "mean", x.dtype(), [](const auto* row, int64_t n) {
    double s = 0.0;
    for (int64_t k = 0; k < n; ++k) s += static_cast<double>(row[k]);
    return s / static_cast<double>(n);
  });
}
// Index of the first maximum of each row (int64). NaN counts as the maximum, as in PyTorch.
inline Tensor argmax(const Tensor& x, const ReducePlan& p) {
  return reduce_rows(x, p, "argmax", DType::int64, [](const auto* row, int64_t n) {
    int64_t best = 0;
    for (int64_t k = 1; k < n; ++k) {
      if (row[best] != row[best]) break;  // NaN already found
      if (row[k] > row[best] || row[k] != row[k]) best = k;
    }
    return best;
  });
}
// Maximum of each row (the op is named "max" in messages); the front end has checked p.row_len > 0.
inline Tensor amax(const Tensor& x, const ReducePlan& p) {
  return reduce_rows(x, p, "max", x.dtype(), [](const auto* row, int64_t n) {
    auto best = row[0];
    for (int64_t k = 1; k < n; ++k)
      if (row[k] > best || row[k] != row[k]) best = row[k];
    return static_cast<double>(best);
  });
}

// max(dim)'s backward: a zero tensor of the input's shape and dtype with each gradient element of gk (the
// output's gradient, keepdim form) added at its row's argmax along dimension d (index: int64, keepdim form).
inline Tensor max_backward(const Tensor& gk, const Tensor& index, const Shape& in_shape, DType dtype, int64_t d) {
  Tensor out = Tensor::zeros(in_shape, dtype);
  dispatch_floating(dtype, "max", [&](auto tag) {
    using T = typename decltype(tag)::type;
    // Walk the index tensor; scatter each row's gradient to its argmax along d.
    Tensor gc = gk.contiguous();
    const T* pg = gc.data<T>();
    const int64_t* pi = index.data<int64_t>();
    T* po = out.data<T>();
    const Shape& os = out.strides();
    const Shape& is = index.shape();
    const Shape ic = contiguous_strides(is);
    for (int64_t flat = 0; flat < index.numel(); ++flat) {
      int64_t off = 0, rem = flat;
      for (int64_t k = 0; k < static_cast<int64_t>(is.size()); ++k) {
        const int64_t c = rem / ic[k];
        rem -= c * ic[k];
        off += (k == d ? pi[flat] : c) * os[k];
      }
      po[off] += pg[flat];
    }
  });
  return out;
}

}  // namespace cpu
}  // namespace retikd
