// retikd/ops/activation.hpp — pointwise activations: relu, relu6, leaky_relu, gelu (exact erf and the tanh
// approximation), silu, sigmoid, tanh; each with its backward.
//
// The family's front end (docs/architecture.md): impl:: functions pick the back end — float32 / float16
// tensors on a GPU go to ops/cuda/elementwise.hpp (the tanh-approximate GELU there is composed from
// elementwise ops: gelu_tanh_composite), the rest to ops/cpu/activation.hpp (exact GELU on contiguous float32 through the
// SIMD exp / erf of cpu/vec_math.hpp, within ~2 ulp of libm's). Backward formulas are
// impl::*_backward(grad, saved) functions, so layers and fused paths can reuse them. Gradients at the kinks
// follow PyTorch: relu'(0) = 0, relu6'(0) = relu6'(6) = 0, leaky_relu'(0) = slope.
// NaN propagates through relu / relu6 as in PyTorch (and as the CUDA kernels do).
#pragma once

#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/ops/common.hpp"
#include "retikd/ops/cpu/activation.hpp"
#include "retikd/ops/cuda/elementwise.hpp"
#include "retikd/ops/dispatch.hpp"
#include "retikd/ops/elementwise.hpp"

namespace retikd {
namespace ops {

// PyTorch's `approximate` argument of gelu.
enum class GeluApprox { none, tanh };

namespace impl {

// The backward helpers check that the gradient matches the saved tensor's shape and dtype, so a misuse
// reads as "relu backward: ..." instead of broadcasting silently.
inline void check_activation_grad(const char* op, const Tensor& g, const Tensor& saved) {
  RETIKD_CHECK(g.shape() == saved.shape() && g.dtype() == saved.dtype(), op, ": gradient ", g.describe(),
               " does not match ", saved.describe());
}

// ---- forward ---------------------------------------------------------------------------------------------
inline Tensor relu(const Tensor& x) { return gpu_float(x) ? cuda_backend::relu(x) : cpu::relu(x); }
inline Tensor relu6(const Tensor& x) { return gpu_float(x) ? cuda_backend::relu6(x) : cpu::relu6(x); }
inline Tensor leaky_relu(const Tensor& x, double slope) {
  return gpu_float(x) ? cuda_backend::leaky_relu(x, slope) : cpu::leaky_relu(x, slope);
}
// The tanh-approximate GELU and its gradient from ops that run on every device (the GPU route; the CPU has its
// one-pass loops, cpu::gelu_tanh): y = ½x(1 + t), t = tanh(u), u = √(2/π)(x + 0.044715x³), and
// dy/dx = ½(1 + t) + ½x(1 − t²)·√(2/π)(1 + 3·0.044715x²). The tests run this route on CPU tensors against them.
inline Tensor tanh(const Tensor& x);  // below, with the other activations
inline Tensor gelu_tanh_composite(const Tensor& x) {
  const Tensor x2 = square(x);
  const Tensor u = mul_scalar(mul(x, add_scalar(mul_scalar(x2, cpu::kGeluTanhCoeff), 1.0)), cpu::kGeluSqrt2OverPi);
  return mul(mul_scalar(x, 0.5), add_scalar(tanh(u), 1.0));
}
inline Tensor gelu_tanh_backward_composite(const Tensor& g, const Tensor& x) {
  const Tensor x2 = square(x);
  const Tensor u = mul_scalar(mul(x, add_scalar(mul_scalar(x2, cpu::kGeluTanhCoeff), 1.0)), cpu::kGeluSqrt2OverPi);
  const Tensor t = tanh(u);
  const Tensor du = mul_scalar(add_scalar(mul_scalar(x2, 3.0 * cpu::kGeluTanhCoeff), 1.0), cpu::kGeluSqrt2OverPi);
  const Tensor one_minus_t2 = add_scalar(neg(square(t)), 1.0);
  const Tensor d = add(mul_scalar(add_scalar(t, 1.0), 0.5), mul(mul_scalar(x, 0.5), mul(one_minus_t2, du)));
  return mul(g, d);
}

inline Tensor gelu(const Tensor& x, GeluApprox approx = GeluApprox::none) {
  if (approx == GeluApprox::tanh) return gpu_float(x) ? gelu_tanh_composite(x) : cpu::gelu_tanh(x);
  return gpu_float(x) ? cuda_backend::gelu_erf(x) : cpu::gelu_erf(x);
}
inline Tensor sigmoid(const Tensor& x) { return gpu_float(x) ? cuda_backend::sigmoid(x) : cpu::sigmoid(x); }
inline Tensor silu(const Tensor& x) { return gpu_float(x) ? cuda_backend::silu(x) : cpu::silu(x); }
inline Tensor tanh(const Tensor& x) { return gpu_float(x) ? cuda_backend::tanh(x) : cpu::tanh(x); }

// ---- backward: grad_in = grad_out * f'(·) -----------------------------------------------------------------
inline Tensor relu_backward(const Tensor& g, const Tensor& x) {
  check_activation_grad("relu backward", g, x);
  return gpu_float(g) ? cuda_backend::relu_backward(g, x) : cpu::relu_backward(g, x);
}
inline Tensor relu6_backward(const Tensor& g, const Tensor& x) {
  check_activation_grad("relu6 backward", g, x);
  return gpu_float(g) ? cuda_backend::relu6_backward(g, x) : cpu::relu6_backward(g, x);
}
inline Tensor leaky_relu_backward(const Tensor& g, const Tensor& x, double slope) {
  check_activation_grad("leaky_relu backward", g, x);
  return gpu_float(g) ? cuda_backend::leaky_relu_backward(g, x, slope) : cpu::leaky_relu_backward(g, x, slope);
}
inline Tensor gelu_backward(const Tensor& g, const Tensor& x, GeluApprox approx = GeluApprox::none) {
  check_activation_grad("gelu backward", g, x);
  if (approx == GeluApprox::tanh)
    return gpu_float(g) ? gelu_tanh_backward_composite(g, x) : cpu::gelu_tanh_backward(g, x);
  return gpu_float(g) ? cuda_backend::gelu_erf_backward(g, x) : cpu::gelu_erf_backward(g, x);
}
// From the saved output y = σ(x).
inline Tensor sigmoid_backward(const Tensor& g, const Tensor& y) {
  check_activation_grad("sigmoid backward", g, y);
  return gpu_float(g) ? cuda_backend::sigmoid_backward(g, y) : cpu::sigmoid_backward(g, y);
}
// From the input x.
inline Tensor silu_backward(const Tensor& g, const Tensor& x) {
  check_activation_grad("silu backward", g, x);
  return gpu_float(g) ? cuda_backend::silu_backward(g, x) : cpu::silu_backward(g, x);
}
// From the saved output y = tanh(x).
inline Tensor tanh_backward(const Tensor& g, const Tensor& y) {
  check_activation_grad("tanh backward", g, y);
  return gpu_float(g) ? cuda_backend::tanh_backward(g, y) : cpu::tanh_backward(g, y);
}

}  // namespace impl

// ---- differentiable activations --------------------------------------------------------------------------
inline Var relu(const Var& x) {
  Tensor vx = x.value();
  return make_result(impl::relu(vx), "relu", {x},
                     [vx](const Tensor& g) -> std::vector<Tensor> { return {impl::relu_backward(g, vx)}; });
}
inline Var relu6(const Var& x) {
  Tensor vx = x.value();
  return make_result(impl::relu6(vx), "relu6", {x},
                     [vx](const Tensor& g) -> std::vector<Tensor> { return {impl::relu6_backward(g, vx)}; });
}
// x for x > 0, slope·x otherwise (PyTorch's negative_slope; 0.01 by default there, 0.2 in the discriminator).
inline Var leaky_relu(const Var& x, double slope = 0.01) {
  Tensor vx = x.value();
  return make_result(impl::leaky_relu(vx, slope), "leaky_relu", {x},
                     [vx, slope](const Tensor& g) -> std::vector<Tensor> {
                       return {impl::leaky_relu_backward(g, vx, slope)};
                     });
}
// x·Φ(x) (approx none, PyTorch's default) or ½x(1 + tanh(√(2/π)(x + 0.044715x³))) (approx tanh, timm's
// "gelu_tanh").
inline Var gelu(const Var& x, GeluApprox approx = GeluApprox::none) {
  Tensor vx = x.value();
  return make_result(
      impl::gelu(vx, approx), "gelu", {x},
      [vx, approx](const Tensor& g) -> std::vector<Tensor> { return {impl::gelu_backward(g, vx, approx)}; });
}
inline Var sigmoid(const Var& x) {
  Tensor out = impl::sigmoid(x.value());
  return make_result(out, "sigmoid", {x}, [out](const Tensor& g) -> std::vector<Tensor> {
    return {impl::sigmoid_backward(g, out)};
  });
}
// x·σ(x) (also called swish).
inline Var silu(const Var& x) {
  Tensor vx = x.value();
  return make_result(impl::silu(vx), "silu", {x},
                     [vx](const Tensor& g) -> std::vector<Tensor> { return {impl::silu_backward(g, vx)}; });
}
inline Var tanh(const Var& x) {
  Tensor out = impl::tanh(x.value());
  return make_result(out, "tanh", {x},
                     [out](const Tensor& g) -> std::vector<Tensor> { return {impl::tanh_backward(g, out)}; });
}

}  // namespace ops
}  // namespace retikd
