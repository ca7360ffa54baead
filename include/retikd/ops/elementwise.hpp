// retikd/ops/elementwise.hpp — broadcasting arithmetic (add, sub, mul, div, maximum, minimum, pow),
// scalar forms, unary math (neg, exp, log, sqrt, abs, square, clamp) and comparisons, each with its backward.
//
// Forward on the CPU through impl::cpu_zip / cpu_map; same-shape contiguous float32/float16 operands on a
// GPU go to the CUDA elementwise launcher. Broadcast gradients are summed back to each input's shape.
// Comparisons return 0/1 in the inputs' dtype and are not differentiable (like PyTorch's bool results).
#pragma once

#include <cmath>

#include "retikd/autograd/var.hpp"
#include "retikd/ops/common.hpp"
#ifdef RETIKD_WITH_CUDA
#include "retikd/cuda/elementwise.hpp"
#include "retikd/cuda/nn_ops.hpp"
#endif

namespace retikd {
namespace ops {
namespace impl {

#ifdef RETIKD_WITH_CUDA
// Broadcasting operands are expanded (stride 0) and gathered into contiguous buffers first — one extra pass
// over the smaller operand's broadcast, which the elementwise kernel then streams like equal shapes.
inline bool cuda_binary(int op, const Tensor& a, const Tensor& b, Tensor& out) {
  if (!a.is_cuda() || a.device() != b.device() || a.dtype() != b.dtype()) return false;
  if (a.dtype() != DType::float32 && a.dtype() != DType::float16) return false;
  const Shape s = a.shape() == b.shape() ? a.shape() : broadcast_shapes(a.shape(), b.shape(), "binary op");
  Tensor ca = a.shape() == s ? a.contiguous() : a.expand(s).contiguous();
  Tensor cb = b.shape() == s ? b.contiguous() : b.expand(s).contiguous();
  out = Tensor::empty(s, a.dtype(), a.device());
  cuda::binary(op, ca.raw_data(), cb.raw_data(), out.raw_data(), static_cast<int>(a.dtype()), out.numel(),
               a.device().index);
  return true;
}
// alpha·a + beta on the GPU (the scalar forms), computed in float32.
inline bool cuda_affine(const Tensor& a, double alpha, double beta, Tensor& out) {
  if (!a.is_cuda() || (a.dtype() != DType::float32 && a.dtype() != DType::float16)) return false;
  Tensor ca = a.contiguous();
  out = Tensor::empty(a.shape(), a.dtype(), a.device());
  cuda::affine(ca.raw_data(), out.raw_data(), a.numel(), static_cast<float>(alpha), static_cast<float>(beta),
               static_cast<int>(a.dtype()), a.device().index);
  return true;
}
#define RETIKD_TRY_CUDA_AFFINE(a, alpha, beta)                       \
  do {                                                               \
    Tensor cuda_out_;                                                \
    if (cuda_affine(a, alpha, beta, cuda_out_)) return cuda_out_;    \
  } while (0)
#define RETIKD_TRY_CUDA_BINARY(code, a, b)              \
  do {                                                  \
    Tensor cuda_out_;                                   \
    if (cuda_binary(code, a, b, cuda_out_)) return cuda_out_; \
  } while (0)
#else
#define RETIKD_TRY_CUDA_AFFINE(a, alpha, beta) \
  do {                                         \
  } while (0)
#define RETIKD_TRY_CUDA_BINARY(code, a, b) \
  do {                                     \
  } while (0)
#endif

inline Tensor add(const Tensor& a, const Tensor& b) {
  RETIKD_TRY_CUDA_BINARY(cuda::kAdd, a, b);
  return cpu_zip(a, b, "add", [](auto x, auto y) { return x + y; });
}
inline Tensor sub(const Tensor& a, const Tensor& b) {
  RETIKD_TRY_CUDA_BINARY(cuda::kSub, a, b);
  return cpu_zip(a, b, "sub", [](auto x, auto y) { return x - y; });
}
inline Tensor mul(const Tensor& a, const Tensor& b) {
  RETIKD_TRY_CUDA_BINARY(cuda::kMul, a, b);
  return cpu_zip(a, b, "mul", [](auto x, auto y) { return x * y; });
}
inline Tensor div(const Tensor& a, const Tensor& b) {
  RETIKD_TRY_CUDA_BINARY(cuda::kDiv, a, b);
  return cpu_zip(a, b, "div", [](auto x, auto y) { return x / y; });
}
inline Tensor maximum(const Tensor& a, const Tensor& b) {
  RETIKD_TRY_CUDA_BINARY(cuda::kMax, a, b);
  return cpu_zip(a, b, "maximum", [](auto x, auto y) { return x >= y ? x : y; });
}
inline Tensor minimum(const Tensor& a, const Tensor& b) {
  RETIKD_TRY_CUDA_BINARY(cuda::kMin, a, b);
  return cpu_zip(a, b, "minimum", [](auto x, auto y) { return x <= y ? x : y; });
}
inline Tensor mul_scalar(const Tensor& a, double s) {
  RETIKD_TRY_CUDA_AFFINE(a, s, 0.0);
  return cpu_map(a, "mul_scalar", [s](auto x) { return x * static_cast<decltype(x)>(s); });
}
inline Tensor add_scalar(const Tensor& a, double s) {
  RETIKD_TRY_CUDA_AFFINE(a, 1.0, s);
  return cpu_map(a, "add_scalar", [s](auto x) { return x + static_cast<decltype(x)>(s); });
}
inline Tensor neg(const Tensor& a) {
  RETIKD_TRY_CUDA_AFFINE(a, -1.0, 0.0);
  return cpu_map(a, "neg", [](auto x) { return -x; });
}

}  // namespace impl

// ---- differentiable binary ops ---------------------------------------------------------------------------
inline Var add(const Var& a, const Var& b) {
  Tensor out = impl::add(a.value(), b.value());
  const Shape sa = a.shape(), sb = b.shape();
  return make_result(out, "add", {a, b}, [sa, sb](const Tensor& g) -> std::vector<Tensor> {
    return {impl::sum_to(g, sa), impl::sum_to(g, sb)};
  });
}
inline Var sub(const Var& a, const Var& b) {
  Tensor out = impl::sub(a.value(), b.value());
  const Shape sa = a.shape(), sb = b.shape();
  return make_result(out, "sub", {a, b}, [sa, sb](const Tensor& g) -> std::vector<Tensor> {
    return {impl::sum_to(g, sa), impl::sum_to(impl::neg(g), sb)};
  });
}
inline Var mul(const Var& a, const Var& b) {
  Tensor out = impl::mul(a.value(), b.value());
  Tensor va = a.value(), vb = b.value();
  const bool ga = a.requires_grad(), gb = b.requires_grad();
  return make_result(out, "mul", {a, b}, [va, vb, ga, gb](const Tensor& g) -> std::vector<Tensor> {
    return {ga ? impl::sum_to(impl::mul(g, vb), va.shape()) : Tensor(),
            gb ? impl::sum_to(impl::mul(g, va), vb.shape()) : Tensor()};
  });
}
inline Var div(const Var& a, const Var& b) {
  Tensor out = impl::div(a.value(), b.value());
  Tensor va = a.value(), vb = b.value();
  const bool ga = a.requires_grad(), gb = b.requires_grad();
  return make_result(out, "div", {a, b}, [va, vb, out, ga, gb](const Tensor& g) -> std::vector<Tensor> {
    // d(a/b)/da = 1/b ; d(a/b)/db = -(a/b)/b
    return {ga ? impl::sum_to(impl::div(g, vb), va.shape()) : Tensor(),
            gb ? impl::sum_to(impl::neg(impl::div(impl::mul(g, out), vb)), vb.shape()) : Tensor()};
  });
}
// Gradient goes to the larger operand (to a on ties), like a max pool's.
inline Var maximum(const Var& a, const Var& b) {
  Tensor out = impl::maximum(a.value(), b.value());
  Tensor va = a.value(), vb = b.value();
  return make_result(out, "maximum", {a, b}, [va, vb](const Tensor& g) -> std::vector<Tensor> {
    Tensor mask_a = impl::cpu_zip(va, vb, "maximum", [](auto x, auto y) { return x >= y ? 1 : 0; });
    Tensor mask_b = impl::cpu_map(mask_a, "maximum", [](auto m) { return 1 - m; });
    return {impl::sum_to(impl::mul(g, mask_a), va.shape()), impl::sum_to(impl::mul(g, mask_b), vb.shape())};
  });
}
inline Var minimum(const Var& a, const Var& b) {
  Tensor out = impl::minimum(a.value(), b.value());
  Tensor va = a.value(), vb = b.value();
  return make_result(out, "minimum", {a, b}, [va, vb](const Tensor& g) -> std::vector<Tensor> {
    Tensor mask_a = impl::cpu_zip(va, vb, "minimum", [](auto x, auto y) { return x <= y ? 1 : 0; });
    Tensor mask_b = impl::cpu_map(mask_a, "minimum", [](auto m) { return 1 - m; });
    return {impl::sum_to(impl::mul(g, mask_a), va.shape()), impl::sum_to(impl::mul(g, mask_b), vb.shape())};
  });
}

// ---- scalar forms ----------------------------------------------------------------------------------------
inline Var add(const Var& a, double s) {
  return make_result(impl::add_scalar(a.value(), s), "add_scalar", {a},
                     [](const Tensor& g) -> std::vector<Tensor> { return {g}; });
}
inline Var mul(const Var& a, double s) {
  return make_result(impl::mul_scalar(a.value(), s), "mul_scalar", {a},
                     [s](const Tensor& g) -> std::vector<Tensor> { return {impl::mul_scalar(g, s)}; });
}
inline Var sub(const Var& a, double s) { return add(a, -s); }
inline Var div(const Var& a, double s) { return mul(a, 1.0 / s); }
inline Var neg(const Var& a) { return mul(a, -1.0); }
// x^p for a constant exponent.
inline Var pow(const Var& a, double p) {
  Tensor va = a.value();
  Tensor out = impl::cpu_map(va, "pow", [p](auto x) { return std::pow(x, static_cast<decltype(x)>(p)); });
  return make_result(out, "pow", {a}, [va, p](const Tensor& g) -> std::vector<Tensor> {
    Tensor d = impl::cpu_map(va, "pow", [p](auto x) { return static_cast<decltype(x)>(p) * std::pow(x, static_cast<decltype(x)>(p - 1)); });
    return {impl::mul(g, d)};
  });
}

// ---- unary math ------------------------------------------------------------------------------------------
inline Var exp(const Var& a) {
  Tensor out = impl::cpu_map(a.value(), "exp", [](auto x) { return std::exp(x); });
  return make_result(out, "exp", {a}, [out](const Tensor& g) -> std::vector<Tensor> { return {impl::mul(g, out)}; });
}
inline Var log(const Var& a) {
  Tensor va = a.value();
  Tensor out = impl::cpu_map(va, "log", [](auto x) { return std::log(x); });
  return make_result(out, "log", {a}, [va](const Tensor& g) -> std::vector<Tensor> { return {impl::div(g, va)}; });
}
inline Var sqrt(const Var& a) {
  Tensor out = impl::cpu_map(a.value(), "sqrt", [](auto x) { return std::sqrt(x); });
  return make_result(out, "sqrt", {a}, [out](const Tensor& g) -> std::vector<Tensor> {
    return {impl::div(impl::mul_scalar(g, 0.5), out)};
  });
}
inline Var square(const Var& a) {
  Tensor va = a.value();
  Tensor out = impl::cpu_map(va, "square", [](auto x) { return x * x; });
  return make_result(out, "square", {a}, [va](const Tensor& g) -> std::vector<Tensor> {
    return {impl::mul(g, impl::mul_scalar(va, 2.0))};
  });
}
// |x|; the subgradient at 0 is 0.
inline Var abs(const Var& a) {
  Tensor va = a.value();
  Tensor out = impl::cpu_map(va, "abs", [](auto x) { return std::abs(x); });
  return make_result(out, "abs", {a}, [va](const Tensor& g) -> std::vector<Tensor> {
    return {impl::mul(g, impl::cpu_map(va, "abs", [](auto x) { return x > 0 ? 1 : (x < 0 ? -1 : 0); }))};
  });
}
// min(max(x, lo), hi); gradient 1 inside [lo, hi], 0 outside.
inline Var clamp(const Var& a, double lo, double hi) {
  RETIKD_CHECK(lo <= hi, "clamp: lower bound ", lo, " above upper bound ", hi);
  Tensor va = a.value();
  Tensor out = impl::cpu_map(va, "clamp", [lo, hi](auto x) {
    using T = decltype(x);
    return x < T(lo) ? T(lo) : (x > T(hi) ? T(hi) : x);
  });
  return make_result(out, "clamp", {a}, [va, lo, hi](const Tensor& g) -> std::vector<Tensor> {
    return {impl::mul(g, impl::cpu_map(va, "clamp", [lo, hi](auto x) {
      using T = decltype(x);
      return (x >= T(lo) && x <= T(hi)) ? T(1) : T(0);
    }))};
  });
}

// ---- comparisons (not differentiable) -------------------------------------------------------------------
#define RETIKD_DEFINE_COMPARISON(name, expr)                                                  \
  inline Var name(const Var& a, const Var& b) {                                               \
    return Var(impl::cpu_zip(a.value(), b.value(), #name,                                     \
                             [](auto x, auto y) { return (expr) ? decltype(x)(1) : decltype(x)(0); })); \
  }
RETIKD_DEFINE_COMPARISON(eq, x == y)
RETIKD_DEFINE_COMPARISON(ne, x != y)
RETIKD_DEFINE_COMPARISON(lt, x < y)
RETIKD_DEFINE_COMPARISON(le, x <= y)
RETIKD_DEFINE_COMPARISON(gt, x > y)
RETIKD_DEFINE_COMPARISON(ge, x >= y)
#undef RETIKD_DEFINE_COMPARISON

}  // namespace ops

inline Var operator+(const Var& a, const Var& b) { return ops::add(a, b); }
inline Var operator-(const Var& a, const Var& b) { return ops::sub(a, b); }
inline Var operator*(const Var& a, const Var& b) { return ops::mul(a, b); }
inline Var operator/(const Var& a, const Var& b) { return ops::div(a, b); }
inline Var operator-(const Var& a) { return ops::neg(a); }
inline Var operator+(const Var& a, double s) { return ops::add(a, s); }
inline Var operator-(const Var& a, double s) { return ops::sub(a, s); }
inline Var operator*(const Var& a, double s) { return ops::mul(a, s); }
inline Var operator/(const Var& a, double s) { return ops::div(a, s); }
inline Var operator*(double s, const Var& a) { return ops::mul(a, s); }
inline Var operator+(double s, const Var& a) { return ops::add(a, s); }

}  // namespace retikd
