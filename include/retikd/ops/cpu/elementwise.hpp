// retikd/ops/cpu/elementwise.hpp — the CPU back end of the elementwise family (ops/elementwise.hpp): the
// strided map / zip loops every pointwise op runs on, the reduction of a broadcast gradient (sum_to), and
// the formulas of the arithmetic, unary math and comparison ops in float32 and float64.
//
// These are the reference the CUDA kernels (kernels/elementwise.cuh) are checked against: keep a formula
// here and its kernel functor the same, NaN handling included. Inputs are checked to be on the CPU, so a
// GPU tensor that reaches an op without a CUDA path gets a clear error instead of a host read of device
// memory.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "retikd/core/error.hpp"
#include "retikd/core/parallel.hpp"
#include "retikd/core/tensor.hpp"
#include "retikd/ops/dispatch.hpp"

namespace retikd {
namespace cpu {

// out[i] = f(in[i]) elementwise on the CPU into a new contiguous tensor of the input's dtype; f is a generic
// lambda called with the input's C++ type (float or double).
template <class F>
Tensor map(const Tensor& in, const char* op, F&& f) {
  ops::check_cpu(op, in);
  Tensor out = Tensor::empty(in.shape(), in.dtype());
  dispatch_floating(in.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* po = out.data<T>();
    const T* base = static_cast<const T*>(in.storage()->data());
    if (in.is_contiguous()) {
      const T* pi = base + in.offset();
      parallel_for(0, in.numel(), 1 << 15, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) po[i] = static_cast<T>(f(pi[i]));
      });
    } else {
      int64_t i = 0;
      const std::array<const int64_t*, 1> st{in.strides().data()};
      strided_loop<1>(in.shape(), st, {in.offset()}, [&](int64_t o) { po[i++] = static_cast<T>(f(base[o])); });
    }
  });
  return out;
}

// out[i] = f(a[i], b[i]) over the broadcast of a and b's shapes (same dtype, CPU).
template <class F>
Tensor zip(const Tensor& a, const Tensor& b, const char* op, F&& f) {
  ops::check_cpu(op, a);
  ops::check_cpu(op, b);
  RETIKD_CHECK(a.dtype() == b.dtype(), op, ": operands of different dtypes: ", a.describe(), " and ", b.describe(),
               " (convert one with .to(dtype))");
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  Tensor out = Tensor::empty(shape, a.dtype());
  dispatch_floating(a.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* po = out.data<T>();
    if (a.shape() == b.shape() && a.is_contiguous() && b.is_contiguous()) {
      const T* pa = a.data<T>();
      const T* pb = b.data<T>();
      parallel_for(0, out.numel(), 1 << 15, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) po[i] = static_cast<T>(f(pa[i], pb[i]));
      });
      return;
    }
    const Tensor ea = a.expand(shape), eb = b.expand(shape);
    const T* ba = static_cast<const T*>(a.storage()->data());
    const T* bb = static_cast<const T*>(b.storage()->data());
    int64_t i = 0;
    const std::array<const int64_t*, 2> st{ea.strides().data(), eb.strides().data()};
    strided_loop<2>(shape, st, {ea.offset(), eb.offset()},
                    [&](int64_t oa, int64_t ob) { po[i++] = static_cast<T>(f(ba[oa], bb[ob])); });
  });
  return out;
}

// Sums a gradient of the broadcast shape back down to `shape` (the inverse of broadcasting); the caller has
// checked that g's shape broadcasts from `shape` in its leading dimensions.
inline Tensor sum_to(const Tensor& g, const Shape& shape) {
  ops::check_cpu("sum_to", g);
  const int64_t lead = g.dim() - static_cast<int64_t>(shape.size());
  // Only leading dimensions summed (a bias gradient: (…, C) → (C)) of a contiguous float gradient: rows added
  // one after another into the output row, the same order as the strided loop below (bitwise the same sums),
  // vectorised over the columns and split across threads by column ranges.
  const Shape trailing(g.shape().end() - static_cast<std::ptrdiff_t>(shape.size()), g.shape().end());
  if (trailing == shape && g.is_contiguous() && (g.dtype() == DType::float32 || g.dtype() == DType::float64)) {
    Tensor out = Tensor::zeros(shape, g.dtype());
    const int64_t cols = shape_numel(shape), rows = cols > 0 ? g.numel() / cols : 0;
    dispatch_floating(g.dtype(), "sum_to", [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* pg = g.data<T>();
      T* po = out.data<T>();
      constexpr int64_t kBlock = 256;  // columns per task: a block of partial sums stays in L1
      parallel_for(0, (cols + kBlock - 1) / kBlock, std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(1, rows * kBlock)),
                   [&](int64_t c0, int64_t c1) {
                     const int64_t j0 = c0 * kBlock, j1 = std::min(cols, c1 * kBlock);
                     for (int64_t r = 0; r < rows; ++r) {
                       const T* row = pg + r * cols;
                       for (int64_t j = j0; j < j1; ++j) po[j] += row[j];
                     }
                   });
    });
    return out;
  }
  // View the output as the broadcast shape with stride 0 on reduced dims, and add every gradient element in.
  Tensor out = Tensor::zeros(shape, g.dtype());
  Shape out_strides(static_cast<std::size_t>(g.dim()), 0);
  const Shape cs = contiguous_strides(shape);
  for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) out_strides[d + lead] = shape[d] == 1 ? 0 : cs[d];
  dispatch_floating(g.dtype(), "sum_to", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* po = out.data<T>();
    const T* pg = static_cast<const T*>(g.storage()->data());
    const std::array<const int64_t*, 2> st{out_strides.data(), g.strides().data()};
    strided_loop<2>(g.shape(), st, {0, g.offset()}, [&](int64_t oo, int64_t og) { po[oo] += pg[og]; });
  });
  return out;
}

// ---- arithmetic ------------------------------------------------------------------------------------------
inline Tensor add(const Tensor& a, const Tensor& b) { return zip(a, b, "add", [](auto x, auto y) { return x + y; }); }
inline Tensor sub(const Tensor& a, const Tensor& b) { return zip(a, b, "sub", [](auto x, auto y) { return x - y; }); }
inline Tensor mul(const Tensor& a, const Tensor& b) { return zip(a, b, "mul", [](auto x, auto y) { return x * y; }); }
inline Tensor div(const Tensor& a, const Tensor& b) { return zip(a, b, "div", [](auto x, auto y) { return x / y; }); }
inline Tensor maximum(const Tensor& a, const Tensor& b) {
  return zip(a, b, "maximum", [](auto x, auto y) { return x >= y ? x : y; });
}
inline Tensor minimum(const Tensor& a, const Tensor& b) {
  return zip(a, b, "minimum", [](auto x, auto y) { return x <= y ? x : y; });
}
// The scalar forms.
inline Tensor mul_scalar(const Tensor& x, double s) {
  return map(x, "mul_scalar", [s](auto v) { return v * static_cast<decltype(v)>(s); });
}
inline Tensor add_scalar(const Tensor& x, double s) {
  return map(x, "add_scalar", [s](auto v) { return v + static_cast<decltype(v)>(s); });
}
inline Tensor neg(const Tensor& x) { return map(x, "neg", [](auto v) { return -v; }); }
inline Tensor pow(const Tensor& x, double p) {
  return map(x, "pow", [p](auto v) { return std::pow(v, static_cast<decltype(v)>(p)); });
}
// d/dx x^p = p·x^(p−1).
inline Tensor pow_derivative(const Tensor& x, double p) {
  return map(x, "pow", [p](auto v) {
    using T = decltype(v);
    return static_cast<T>(p) * std::pow(v, static_cast<T>(p - 1));
  });
}

// ---- unary math ------------------------------------------------------------------------------------------
inline Tensor exp(const Tensor& x) { return map(x, "exp", [](auto v) { return std::exp(v); }); }
inline Tensor log(const Tensor& x) { return map(x, "log", [](auto v) { return std::log(v); }); }
inline Tensor sqrt(const Tensor& x) { return map(x, "sqrt", [](auto v) { return std::sqrt(v); }); }
inline Tensor square(const Tensor& x) { return map(x, "square", [](auto v) { return v * v; }); }
inline Tensor abs(const Tensor& x) { return map(x, "abs", [](auto v) { return std::abs(v); }); }
// g·sign(x), 0 at x = 0 (and for a NaN x).
inline Tensor abs_backward(const Tensor& g, const Tensor& x) {
  return zip(g, x, "abs", [](auto gv, auto v) {
    using T = decltype(v);
    return v > T(0) ? gv : (v < T(0) ? -gv : T(0));
  });
}
inline Tensor clamp(const Tensor& x, double lo, double hi) {
  return map(x, "clamp", [lo, hi](auto v) {
    using T = decltype(v);
    return v < T(lo) ? T(lo) : (v > T(hi) ? T(hi) : v);
  });
}
// 1 inside [lo, hi], 0 outside: clamp's derivative.
inline Tensor clamp_mask(const Tensor& x, double lo, double hi) {
  return map(x, "clamp", [lo, hi](auto v) {
    using T = decltype(v);
    return (v >= T(lo) && v <= T(hi)) ? T(1) : T(0);
  });
}

// ---- comparisons: 1 where true, 0 elsewhere, in the operands' dtype --------------------------------------
#define RETIKD_CPU_COMPARISON(name, expr)                                                              \
  inline Tensor name(const Tensor& a, const Tensor& b) {                                               \
    return zip(a, b, #name, [](auto x, auto y) { return (expr) ? decltype(x)(1) : decltype(x)(0); }); \
  }
RETIKD_CPU_COMPARISON(eq, x == y)
RETIKD_CPU_COMPARISON(ne, x != y)
RETIKD_CPU_COMPARISON(lt, x < y)
RETIKD_CPU_COMPARISON(le, x <= y)
RETIKD_CPU_COMPARISON(gt, x > y)
RETIKD_CPU_COMPARISON(ge, x >= y)
#undef RETIKD_CPU_COMPARISON

}  // namespace cpu
}  // namespace retikd
