// retikd/ops/cpu/activation.hpp — the CPU back end of the activation family (ops/activation.hpp): each
// activation's forward and its backward grad_in = grad_out · f'(saved), in float32 and float64, with the
// SIMD exact GELU of cpu/vec_math.hpp on contiguous float32.
//
// The reference for the CUDA functors of kernels/elementwise.cuh. Gradients at the kinks follow PyTorch:
// relu'(0) = 0, relu6'(0) = relu6'(6) = 0, leaky_relu'(0) = slope; NaN propagates through relu / relu6.
#pragma once

#include <cmath>

#include "retikd/core/parallel.hpp"
#include "retikd/core/tensor.hpp"
#include "retikd/ops/cpu/elementwise.hpp"
#include "retikd/ops/cpu/vec_math.hpp"

namespace retikd {
namespace cpu {

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

// ---- forward ---------------------------------------------------------------------------------------------
inline Tensor relu(const Tensor& x) {
  return map(x, "relu", [](auto v) { return v < decltype(v)(0) ? decltype(v)(0) : v; });
}
inline Tensor relu6(const Tensor& x) {
  return map(x, "relu6", [](auto v) {
    using T = decltype(v);
    return v < T(0) ? T(0) : (v > T(6) ? T(6) : v);
  });
}
inline Tensor leaky_relu(const Tensor& x, double slope) {
  return map(x, "leaky_relu", [slope](auto v) {
    using T = decltype(v);
    return v > T(0) ? v : v * T(slope);
  });
}
inline Tensor gelu_tanh(const Tensor& x) {
  return map(x, "gelu", [](auto v) {
    using T = decltype(v);
    const T inner = T(kGeluSqrt2OverPi) * (v + T(kGeluTanhCoeff) * v * v * v);
    return T(0.5) * v * (T(1) + std::tanh(inner));
  });
}
inline Tensor gelu_erf(const Tensor& x) {
  if (x.is_cpu() && x.dtype() == DType::float32 && x.is_contiguous()) {  // whole SIMD vectors (cpu/vec_math.hpp)
    Tensor out = Tensor::empty(x.shape(), x.dtype());
    const float* px = x.data<float>();
    float* py = out.data<float>();
    parallel_for(0, x.numel(), 1 << 14, [&](int64_t lo, int64_t hi) { vec::gelu_erf(px + lo, py + lo, hi - lo); });
    return out;
  }
  return map(x, "gelu", [](auto v) {
    using T = decltype(v);
    return T(0.5) * v * (T(1) + std::erf(v * T(kGeluInvSqrt2)));
  });
}
inline Tensor sigmoid(const Tensor& x) { return map(x, "sigmoid", [](auto v) { return stable_sigmoid(v); }); }
inline Tensor silu(const Tensor& x) { return map(x, "silu", [](auto v) { return v * stable_sigmoid(v); }); }
inline Tensor tanh(const Tensor& x) { return map(x, "tanh", [](auto v) { return std::tanh(v); }); }

// ---- backward: grad_in = grad_out · f'(·) -----------------------------------------------------------------
inline Tensor relu_backward(const Tensor& g, const Tensor& x) {
  return zip(g, x, "relu backward", [](auto gv, auto v) { return v > decltype(v)(0) ? gv : decltype(v)(0); });
}
inline Tensor relu6_backward(const Tensor& g, const Tensor& x) {
  return zip(g, x, "relu6 backward", [](auto gv, auto v) {
    using T = decltype(v);
    return (v > T(0) && v < T(6)) ? gv : T(0);
  });
}
inline Tensor leaky_relu_backward(const Tensor& g, const Tensor& x, double slope) {
  return zip(g, x, "leaky_relu backward", [slope](auto gv, auto v) {
    using T = decltype(v);
    return v > T(0) ? gv : gv * T(slope);
  });
}
// d/dx ½x(1+tanh u) = ½(1+tanh u) + ½x(1−tanh²u)·u',  u = √(2/π)(x + 0.044715x³)
inline Tensor gelu_tanh_backward(const Tensor& g, const Tensor& x) {
  return zip(g, x, "gelu backward", [](auto gv, auto v) {
    using T = decltype(v);
    const T u = T(kGeluSqrt2OverPi) * (v + T(kGeluTanhCoeff) * v * v * v);
    const T t = std::tanh(u);
    const T du = T(kGeluSqrt2OverPi) * (T(1) + T(3 * kGeluTanhCoeff) * v * v);
    return gv * (T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * du);
  });
}
// d/dx xΦ(x) = Φ(x) + xφ(x)
inline Tensor gelu_erf_backward(const Tensor& g, const Tensor& x) {
  if (x.is_cpu() && g.is_cpu() && x.dtype() == DType::float32 && x.is_contiguous() && g.is_contiguous()) {
    Tensor out = Tensor::empty(x.shape(), x.dtype());
    const float* pg = g.data<float>();
    const float* px = x.data<float>();
    float* po = out.data<float>();
    parallel_for(0, x.numel(), 1 << 14,
                 [&](int64_t lo, int64_t hi) { vec::gelu_erf_backward(pg + lo, px + lo, po + lo, hi - lo); });
    return out;
  }
  return zip(g, x, "gelu backward", [](auto gv, auto v) {
    using T = decltype(v);
    const T cdf = T(0.5) * (T(1) + std::erf(v * T(kGeluInvSqrt2)));
    const T pdf = T(kGeluInvSqrt2Pi) * std::exp(T(-0.5) * v * v);
    return gv * (cdf + v * pdf);
  });
}
// From the saved output y = σ(x): σ' = y(1−y).
inline Tensor sigmoid_backward(const Tensor& g, const Tensor& y) {
  return zip(g, y, "sigmoid backward", [](auto gv, auto s) { return gv * s * (decltype(s)(1) - s); });
}
// From the input: (xσ(x))' = σ(x)(1 + x(1−σ(x))).
inline Tensor silu_backward(const Tensor& g, const Tensor& x) {
  return zip(g, x, "silu backward", [](auto gv, auto v) {
    using T = decltype(v);
    const T s = stable_sigmoid(v);
    return gv * s * (T(1) + v * (T(1) - s));
  });
}
// From the saved output y = tanh(x): tanh' = 1 − y².
inline Tensor tanh_backward(const Tensor& g, const Tensor& y) {
  return zip(g, y, "tanh backward", [](auto gv, auto t) { return gv * (decltype(t)(1) - t * t); });
}

}  // namespace cpu
}  // namespace retikd
