// retikd/ops/elementwise.hpp — broadcasting arithmetic (add, sub, mul, div, maximum, minimum, pow),
// scalar forms, unary math (neg, exp, log, sqrt, abs, square, clamp) and comparisons, each with its backward.
//
// The family's front end (docs/architecture.md): impl:: functions pick the back end — float32 / float16
// operands on one GPU go to ops/cuda/elementwise.hpp, everything else to ops/cpu/elementwise.hpp, whose
// checks name what is wrong (a GPU tensor of an op without a CUDA path: pow). clamp on a GPU is composed from
// maximum / minimum and comparisons (clamp_composite). Broadcast
// gradients are summed back to each input's shape. Comparisons return 0/1 in the inputs' dtype and are not
// differentiable (like PyTorch's bool results).
#pragma once

#include "retikd/autograd/var.hpp"
#include "retikd/ops/common.hpp"
#include "retikd/ops/cpu/elementwise.hpp"
#include "retikd/ops/cuda/elementwise.hpp"
#include "retikd/ops/dispatch.hpp"

namespace retikd {
namespace ops {
namespace impl {

// One line per op: the GPU back end when gpu_float() holds, else the CPU one.
#define RETIKD_ELEMENTWISE_BINARY(name)                                                  \
  inline Tensor name(const Tensor& a, const Tensor& b) {                                 \
    return gpu_float(a, b) ? cuda_backend::name(a, b) : cpu::name(a, b);                 \
  }
RETIKD_ELEMENTWISE_BINARY(add)
RETIKD_ELEMENTWISE_BINARY(sub)
RETIKD_ELEMENTWISE_BINARY(mul)
RETIKD_ELEMENTWISE_BINARY(div)
RETIKD_ELEMENTWISE_BINARY(maximum)
RETIKD_ELEMENTWISE_BINARY(minimum)
RETIKD_ELEMENTWISE_BINARY(eq)
RETIKD_ELEMENTWISE_BINARY(ne)
RETIKD_ELEMENTWISE_BINARY(lt)
RETIKD_ELEMENTWISE_BINARY(le)
RETIKD_ELEMENTWISE_BINARY(gt)
RETIKD_ELEMENTWISE_BINARY(ge)
#undef RETIKD_ELEMENTWISE_BINARY

inline Tensor mul_scalar(const Tensor& a, double s) {
  return gpu_float(a) ? cuda_backend::mul_scalar(a, s) : cpu::mul_scalar(a, s);
}
inline Tensor add_scalar(const Tensor& a, double s) {
  return gpu_float(a) ? cuda_backend::add_scalar(a, s) : cpu::add_scalar(a, s);
}
inline Tensor neg(const Tensor& a) { return gpu_float(a) ? cuda_backend::neg(a) : cpu::neg(a); }
inline Tensor exp(const Tensor& a) { return gpu_float(a) ? cuda_backend::exp(a) : cpu::exp(a); }
inline Tensor abs(const Tensor& a) { return gpu_float(a) ? cuda_backend::abs(a) : cpu::abs(a); }
inline Tensor sqrt(const Tensor& a) { return gpu_float(a) ? cuda_backend::sqrt(a) : cpu::sqrt(a); }
inline Tensor log(const Tensor& a) { return gpu_float(a) ? cuda_backend::log(a) : cpu::log(a); }
inline Tensor abs_backward(const Tensor& g, const Tensor& a) {
  return gpu_float(g, a) ? cuda_backend::abs_backward(g, a) : cpu::abs_backward(g, a);
}
inline Tensor square(const Tensor& a) { return gpu_float(a) ? cuda_backend::square(a) : cpu::square(a); }

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
    const Tensor mask_a = impl::ge(va, vb), mask_b = impl::add_scalar(impl::neg(mask_a), 1.0);
    return {impl::sum_to(impl::mul(g, mask_a), va.shape()), impl::sum_to(impl::mul(g, mask_b), vb.shape())};
  });
}
inline Var minimum(const Var& a, const Var& b) {
  Tensor out = impl::minimum(a.value(), b.value());
  Tensor va = a.value(), vb = b.value();
  return make_result(out, "minimum", {a, b}, [va, vb](const Tensor& g) -> std::vector<Tensor> {
    const Tensor mask_a = impl::le(va, vb), mask_b = impl::add_scalar(impl::neg(mask_a), 1.0);
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
  Tensor out = cpu::pow(va, p);
  return make_result(out, "pow", {a}, [va, p](const Tensor& g) -> std::vector<Tensor> {
    return {impl::mul(g, cpu::pow_derivative(va, p))};
  });
}

// ---- unary math ------------------------------------------------------------------------------------------
inline Var exp(const Var& a) {
  Tensor out = impl::exp(a.value());
  return make_result(out, "exp", {a}, [out](const Tensor& g) -> std::vector<Tensor> { return {impl::mul(g, out)}; });
}
inline Var log(const Var& a) {
  Tensor va = a.value();
  Tensor out = impl::log(va);
  return make_result(out, "log", {a}, [va](const Tensor& g) -> std::vector<Tensor> { return {impl::div(g, va)}; });
}
inline Var sqrt(const Var& a) {
  Tensor out = impl::sqrt(a.value());
  return make_result(out, "sqrt", {a}, [out](const Tensor& g) -> std::vector<Tensor> {
    return {impl::div(impl::mul_scalar(g, 0.5), out)};
  });
}
inline Var square(const Var& a) {
  Tensor va = a.value();
  Tensor out = impl::square(va);
  return make_result(out, "square", {a}, [va](const Tensor& g) -> std::vector<Tensor> {
    return {impl::mul(g, impl::mul_scalar(va, 2.0))};
  });
}
// |x|; the subgradient at 0 is 0.
inline Var abs(const Var& a) {
  Tensor va = a.value();
  Tensor out = impl::abs(va);
  return make_result(out, "abs", {a}, [va](const Tensor& g) -> std::vector<Tensor> {
    return {impl::abs_backward(g, va)};
  });
}
namespace impl {
// clamp and its derivative mask from ops that run on every device — minimum(maximum(x, lo), hi) and
// (x >= lo)·(x <= hi) against 0-D bounds — the GPU route (the CPU has its one-pass loops, cpu::clamp); the
// tests run this route on CPU tensors against them. NaN stays NaN on the GPU, as in cpu::clamp.
inline Tensor clamp_composite(const Tensor& x, double lo, double hi) {
  const Tensor lo_t = Tensor::full({}, lo, x.dtype(), x.device()), hi_t = Tensor::full({}, hi, x.dtype(), x.device());
  return minimum(maximum(x, lo_t), hi_t);
}
inline Tensor clamp_mask_composite(const Tensor& x, double lo, double hi) {
  const Tensor lo_t = Tensor::full({}, lo, x.dtype(), x.device()), hi_t = Tensor::full({}, hi, x.dtype(), x.device());
  return mul(ge(x, lo_t), le(x, hi_t));
}
inline Tensor clamp(const Tensor& x, double lo, double hi) {
  return gpu_float(x) ? clamp_composite(x, lo, hi) : cpu::clamp(x, lo, hi);
}
inline Tensor clamp_mask(const Tensor& x, double lo, double hi) {
  return gpu_float(x) ? clamp_mask_composite(x, lo, hi) : cpu::clamp_mask(x, lo, hi);
}
}  // namespace impl

// min(max(x, lo), hi); gradient 1 inside [lo, hi], 0 outside.
inline Var clamp(const Var& a, double lo, double hi) {
  RETIKD_CHECK(lo <= hi, "clamp: lower bound ", lo, " above upper bound ", hi);
  Tensor va = a.value();
  Tensor out = impl::clamp(va, lo, hi);
  return make_result(out, "clamp", {a}, [va, lo, hi](const Tensor& g) -> std::vector<Tensor> {
    return {impl::mul(g, impl::clamp_mask(va, lo, hi))};
  });
}

// ---- comparisons (not differentiable) -------------------------------------------------------------------
#define RETIKD_DEFINE_COMPARISON(name) \
  inline Var name(const Var& a, const Var& b) { return Var(impl::name(a.value(), b.value())); }
RETIKD_DEFINE_COMPARISON(eq)
RETIKD_DEFINE_COMPARISON(ne)
RETIKD_DEFINE_COMPARISON(lt)
RETIKD_DEFINE_COMPARISON(le)
RETIKD_DEFINE_COMPARISON(gt)
RETIKD_DEFINE_COMPARISON(ge)
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
