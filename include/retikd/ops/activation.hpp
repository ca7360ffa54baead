// retikd/ops/activation.hpp — pointwise activations: relu, relu6, leaky_relu, gelu (exact erf and the tanh
// approximation), silu, sigmoid, tanh; each with its backward.
//
// Forward on the CPU through impl::cpu_map (exact GELU on contiguous float32: the SIMD exp / erf of
// cpu/vec_math.hpp, within ~2 ulp of libm's); contiguous float32/float16 tensors on a GPU go to the CUDA unary
// launcher where one exists (relu, relu6, sigmoid, tanh, exact gelu, silu). Backward formulas are
// impl::*_backward(grad, saved) functions, so layers and fused paths can reuse them. Gradients at the kinks
// follow PyTorch: relu'(0) = 0, relu6'(0) = relu6'(6) = 0, leaky_relu'(0) = slope.
// NaN propagates through relu / relu6 as in PyTorch (and as the CUDA kernels do).
#pragma once

#include <cmath>
#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/ops/common.hpp"
#include "retikd/ops/cpu/vec_math.hpp"
#ifdef RETIKD_WITH_CUDA
#include "retikd/cuda/elementwise.hpp"
#include "retikd/cuda/nn_ops.hpp"
#endif

namespace retikd {
namespace ops {

// PyTorch's `approximate` argument of gelu.
enum class GeluApprox { none, tanh };

namespace impl {

// Runs the CUDA unary launcher when `x` is a float32/float16 GPU tensor; false means "use the CPU path".
inline bool cuda_activation(int code, const Tensor& x, Tensor& out) {
#ifdef RETIKD_WITH_CUDA
  if (!x.is_cuda() || (x.dtype() != DType::float32 && x.dtype() != DType::float16)) return false;
  Tensor cx = x.contiguous();
  out = Tensor::empty(x.shape(), x.dtype(), x.device());
  cuda::unary(code, cx.raw_data(), out.raw_data(), static_cast<int>(x.dtype()), x.numel(), x.device().index);
  return true;
#else
  (void)code;
  (void)x;
  (void)out;
  return false;
#endif
}

// Runs the CUDA gradient launcher out = g · f'(saved) (cuda::BinaryOp's k…Grad codes) for float32/float16 GPU
// tensors; false means "use the CPU path".
inline bool cuda_activation_grad(int code, const Tensor& g, const Tensor& saved, Tensor& out) {
#ifdef RETIKD_WITH_CUDA
  if (!g.is_cuda() || (g.dtype() != DType::float32 && g.dtype() != DType::float16)) return false;
  RETIKD_CHECK(saved.device() == g.device(), "activation backward: gradient ", g.describe(), " and saved tensor ",
               saved.describe(), " are on different devices");
  Tensor cg = g.contiguous(), cs = saved.contiguous();
  out = Tensor::empty(g.shape(), g.dtype(), g.device());
  cuda::binary(code, cg.raw_data(), cs.raw_data(), out.raw_data(), static_cast<int>(g.dtype()), g.numel(),
               g.device().index);
  return true;
#else
  (void)code;
  (void)g;
  (void)saved;
  (void)out;
  return false;
#endif
}

#ifdef RETIKD_WITH_CUDA
#define RETIKD_ACTIVATION_GRAD_CUDA(code, g, saved)                                \
  do {                                                                            \
    Tensor cuda_out_;                                                             \
    if (cuda_activation_grad(cuda::code, g, saved, cuda_out_)) return cuda_out_; \
  } while (0)
#define RETIKD_ACTIVATION_CUDA(code, x)                              \
  do {                                                               \
    Tensor cuda_out_;                                                \
    if (cuda_activation(cuda::code, x, cuda_out_)) return cuda_out_; \
  } while (0)
#else
#define RETIKD_ACTIVATION_CUDA(code, x) \
  do {                                  \
  } while (0)
#define RETIKD_ACTIVATION_GRAD_CUDA(code, g, saved) \
  do {                                              \
  } while (0)
#endif

// Numerically stable logistic function: never evaluates exp of a large positive number.
template <class T>
inline T stable_sigmoid(T x) {
  if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
  const T e = std::exp(x);
  return e / (T(1) + e);
}

constexpr double kGeluInvSqrt2 = 0.70710678118654752440;
constexpr double kGeluInvSqrt2Pi = 0.39894228040143267794;   // 1/√(2π)
constexpr double kGeluSqrt2OverPi = 0.79788456080286535588;  // √(2/π)
constexpr double kGeluTanhCoeff = 0.044715;

// The backward helpers check that the gradient matches the saved tensor's shape and dtype, so a misuse
// reads as "relu backward: ..." instead of broadcasting silently.
inline void check_activation_grad(const char* op, const Tensor& g, const Tensor& saved) {
  RETIKD_CHECK(g.shape() == saved.shape() && g.dtype() == saved.dtype(), op, ": gradient ", g.describe(),
               " does not match ", saved.describe());
}

// ---- forward ---------------------------------------------------------------------------------------------
inline Tensor relu(const Tensor& x) {
  RETIKD_ACTIVATION_CUDA(kRelu, x);
  return cpu_map(x, "relu", [](auto v) { return v < decltype(v)(0) ? decltype(v)(0) : v; });
}
inline Tensor relu6(const Tensor& x) {
  RETIKD_ACTIVATION_CUDA(kRelu6, x);
  return cpu_map(x, "relu6", [](auto v) {
    using T = decltype(v);
    return v < T(0) ? T(0) : (v > T(6) ? T(6) : v);
  });
}
inline Tensor leaky_relu(const Tensor& x, double slope) {
#ifdef RETIKD_WITH_CUDA
  // GPU: relu(x) − slope·relu(−x), from the unary and scalar kernels (x > 0: x; else slope·x).
  Tensor pos, neg, negx;
  if (cuda_activation(cuda::kRelu, x, pos)) {
    cuda_activation(cuda::kNeg, x, negx);
    cuda_activation(cuda::kRelu, negx, neg);
    Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
    Tensor scaled = Tensor::empty(x.shape(), x.dtype(), x.device());
    cuda::affine(neg.raw_data(), scaled.raw_data(), x.numel(), static_cast<float>(-slope), 0.f,
                 static_cast<int>(x.dtype()), x.device().index);
    cuda::binary(cuda::kAdd, pos.raw_data(), scaled.raw_data(), out.raw_data(), static_cast<int>(x.dtype()),
                 x.numel(), x.device().index);
    return out;
  }
#endif
  return cpu_map(x, "leaky_relu", [slope](auto v) {
    using T = decltype(v);
    return v > T(0) ? v : v * T(slope);
  });
}
inline Tensor gelu(const Tensor& x, GeluApprox approx = GeluApprox::none) {
  if (approx == GeluApprox::tanh) {
    return cpu_map(x, "gelu", [](auto v) {
      using T = decltype(v);
      const T inner = T(kGeluSqrt2OverPi) * (v + T(kGeluTanhCoeff) * v * v * v);
      return T(0.5) * v * (T(1) + std::tanh(inner));
    });
  }
  RETIKD_ACTIVATION_CUDA(kGeluErf, x);
  if (x.is_cpu() && x.dtype() == DType::float32 && x.is_contiguous()) {  // whole SIMD vectors (cpu/vec_math.hpp)
    Tensor out = Tensor::empty(x.shape(), x.dtype());
    const float* px = x.data<float>();
    float* py = out.data<float>();
    parallel_for(0, x.numel(), 1 << 14, [&](int64_t lo, int64_t hi) { cpu::vec::gelu_erf(px + lo, py + lo, hi - lo); });
    return out;
  }
  return cpu_map(x, "gelu", [](auto v) {
    using T = decltype(v);
    return T(0.5) * v * (T(1) + std::erf(v * T(kGeluInvSqrt2)));
  });
}
inline Tensor sigmoid(const Tensor& x) {
  RETIKD_ACTIVATION_CUDA(kSigmoid, x);
  return cpu_map(x, "sigmoid", [](auto v) { return stable_sigmoid(v); });
}
inline Tensor silu(const Tensor& x) {
  RETIKD_ACTIVATION_CUDA(kSilu, x);
  return cpu_map(x, "silu", [](auto v) { return v * stable_sigmoid(v); });
}
inline Tensor tanh(const Tensor& x) {
  RETIKD_ACTIVATION_CUDA(kTanh, x);
  return cpu_map(x, "tanh", [](auto v) { return std::tanh(v); });
}

// ---- backward (CPU): grad_in = grad_out * f'(·) -----------------------------------------------------------
inline Tensor relu_backward(const Tensor& g, const Tensor& x) {
  check_activation_grad("relu backward", g, x);
  RETIKD_ACTIVATION_GRAD_CUDA(kReluGrad, g, x);
  return cpu_zip(g, x, "relu backward",
                 [](auto gv, auto v) { return v > decltype(v)(0) ? gv : decltype(v)(0); });
}
inline Tensor relu6_backward(const Tensor& g, const Tensor& x) {
  check_activation_grad("relu6 backward", g, x);
  RETIKD_ACTIVATION_GRAD_CUDA(kRelu6Grad, g, x);
  return cpu_zip(g, x, "relu6 backward", [](auto gv, auto v) {
    using T = decltype(v);
    return (v > T(0) && v < T(6)) ? gv : T(0);
  });
}
inline Tensor leaky_relu_backward(const Tensor& g, const Tensor& x, double slope) {
  check_activation_grad("leaky_relu backward", g, x);
#ifdef RETIKD_WITH_CUDA
  // GPU: g·(x > 0) + slope·(g − g·(x > 0)) = (1 − slope)·relu_grad + slope·g.
  Tensor pass;
  if (cuda_activation_grad(cuda::kReluGrad, g, x, pass)) {
    Tensor gc = g.contiguous(), a = Tensor::empty(g.shape(), g.dtype(), g.device()),
           b = Tensor::empty(g.shape(), g.dtype(), g.device()), out = Tensor::empty(g.shape(), g.dtype(), g.device());
    const int dt = static_cast<int>(g.dtype()), dev = g.device().index;
    cuda::affine(pass.raw_data(), a.raw_data(), g.numel(), static_cast<float>(1.0 - slope), 0.f, dt, dev);
    cuda::affine(gc.raw_data(), b.raw_data(), g.numel(), static_cast<float>(slope), 0.f, dt, dev);
    cuda::binary(cuda::kAdd, a.raw_data(), b.raw_data(), out.raw_data(), dt, g.numel(), dev);
    return out;
  }
#endif
  return cpu_zip(g, x, "leaky_relu backward", [slope](auto gv, auto v) {
    using T = decltype(v);
    return v > T(0) ? gv : gv * T(slope);
  });
}
inline Tensor gelu_backward(const Tensor& g, const Tensor& x, GeluApprox approx = GeluApprox::none) {
  check_activation_grad("gelu backward", g, x);
  if (approx == GeluApprox::tanh) {
    // d/dx ½x(1+tanh u) = ½(1+tanh u) + ½x(1−tanh²u)·u',  u = √(2/π)(x + 0.044715x³)
    return cpu_zip(g, x, "gelu backward", [](auto gv, auto v) {
      using T = decltype(v);
      const T u = T(kGeluSqrt2OverPi) * (v + T(kGeluTanhCoeff) * v * v * v);
      const T t = std::tanh(u);
      const T du = T(kGeluSqrt2OverPi) * (T(1) + T(3 * kGeluTanhCoeff) * v * v);
      return gv * (T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * du);
    });
  }
  // d/dx xΦ(x) = Φ(x) + xφ(x)
  RETIKD_ACTIVATION_GRAD_CUDA(kGeluErfGrad, g, x);
  if (x.is_cpu() && g.is_cpu() && x.dtype() == DType::float32 && x.is_contiguous() && g.is_contiguous()) {
    Tensor out = Tensor::empty(x.shape(), x.dtype());
    const float* pg = g.data<float>();
    const float* px = x.data<float>();
    float* po = out.data<float>();
    parallel_for(0, x.numel(), 1 << 14, [&](int64_t lo, int64_t hi) {
      cpu::vec::gelu_erf_backward(pg + lo, px + lo, po + lo, hi - lo);
    });
    return out;
  }
  return cpu_zip(g, x, "gelu backward", [](auto gv, auto v) {
    using T = decltype(v);
    const T cdf = T(0.5) * (T(1) + std::erf(v * T(kGeluInvSqrt2)));
    const T pdf = T(kGeluInvSqrt2Pi) * std::exp(T(-0.5) * v * v);
    return gv * (cdf + v * pdf);
  });
}
// From the saved output y = σ(x): σ' = y(1−y).
inline Tensor sigmoid_backward(const Tensor& g, const Tensor& y) {
  check_activation_grad("sigmoid backward", g, y);
  RETIKD_ACTIVATION_GRAD_CUDA(kSigmoidGrad, g, y);
  return cpu_zip(g, y, "sigmoid backward", [](auto gv, auto s) { return gv * s * (decltype(s)(1) - s); });
}
// From the input: (xσ(x))' = σ(x)(1 + x(1−σ(x))).
inline Tensor silu_backward(const Tensor& g, const Tensor& x) {
  check_activation_grad("silu backward", g, x);
  RETIKD_ACTIVATION_GRAD_CUDA(kSiluGrad, g, x);
  return cpu_zip(g, x, "silu backward", [](auto gv, auto v) {
    using T = decltype(v);
    const T s = stable_sigmoid(v);
    return gv * s * (T(1) + v * (T(1) - s));
  });
}
// From the saved output y = tanh(x): tanh' = 1 − y².
inline Tensor tanh_backward(const Tensor& g, const Tensor& y) {
  check_activation_grad("tanh backward", g, y);
  RETIKD_ACTIVATION_GRAD_CUDA(kTanhGrad, g, y);
  return cpu_zip(g, y, "tanh backward", [](auto gv, auto t) { return gv * (decltype(t)(1) - t * t); });
}

#undef RETIKD_ACTIVATION_CUDA

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
