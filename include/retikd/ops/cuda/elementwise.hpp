// retikd/ops/cuda/elementwise.hpp — the CUDA back end of the elementwise and activation families
// (ops/elementwise.hpp, ops/activation.hpp): Tensor-level wrappers around the launchers of
// kernels/elementwise.cu, and the GPU half of sum_to.
//
// Every function here expects what ops::gpu_float() promised (float32 / float16 tensors on one GPU) and
// returns a new contiguous tensor on that GPU; the front end checks the rest. Broadcasting operands are
// expanded (stride 0) and gathered into contiguous buffers first — one extra pass over the smaller
// operand's broadcast, which the kernel then streams like equal shapes. The kernels compute in float32.
// Bodies sit in `if constexpr (kCudaBuilt)` (ops/dispatch.hpp says why): a CPU-only build compiles this
// header and links no launcher.
#pragma once

#include <vector>

#include "retikd/core/tensor.hpp"
#include "retikd/cuda/elementwise.hpp"
#include "retikd/cuda/nn_ops.hpp"
#include "retikd/ops/dispatch.hpp"

namespace retikd {
namespace ops {
namespace cuda_backend {

// out = a op b over the broadcast of both shapes (op: cuda::BinaryOp).
inline Tensor binary(int op, const Tensor& a, const Tensor& b, const char* name) {
  if constexpr (kCudaBuilt) {
    const Shape s = a.shape() == b.shape() ? a.shape() : broadcast_shapes(a.shape(), b.shape(), name);
    const Tensor ca = a.shape() == s ? a.contiguous() : a.expand(s).contiguous();
    const Tensor cb = b.shape() == s ? b.contiguous() : b.expand(s).contiguous();
    Tensor out = Tensor::empty(s, a.dtype(), a.device());
    cuda::binary(op, ca.raw_data(), cb.raw_data(), out.raw_data(), static_cast<int>(a.dtype()), out.numel(),
                 a.device().index);
    return out;
  }
  cuda_not_built(name);
}
// out = op(x) (op: cuda::UnaryOp).
inline Tensor unary(int op, const Tensor& x) {
  if constexpr (kCudaBuilt) {
    const Tensor cx = x.contiguous();
    Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
    cuda::unary(op, cx.raw_data(), out.raw_data(), static_cast<int>(x.dtype()), x.numel(), x.device().index);
    return out;
  }
  cuda_not_built("unary op");
}
// alpha·x + beta, computed in float32 (the scalar forms).
inline Tensor affine(const Tensor& x, double alpha, double beta) {
  if constexpr (kCudaBuilt) {
    const Tensor cx = x.contiguous();
    Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
    cuda::affine(cx.raw_data(), out.raw_data(), x.numel(), static_cast<float>(alpha), static_cast<float>(beta),
                 static_cast<int>(x.dtype()), x.device().index);
    return out;
  }
  cuda_not_built("affine");
}
// g · f'(saved) for an activation's gradient code (cuda::BinaryOp's k…Grad); g and saved have one shape.
inline Tensor unary_grad(int op, const Tensor& g, const Tensor& saved, const char* name) {
  RETIKD_CHECK(saved.device() == g.device(), name, ": gradient ", g.describe(), " and saved tensor ",
               saved.describe(), " are on different devices");
  return binary(op, g, saved, name);
}

// ---- the elementwise family ------------------------------------------------------------------------------
inline Tensor add(const Tensor& a, const Tensor& b) { return binary(cuda::kAdd, a, b, "add"); }
inline Tensor sub(const Tensor& a, const Tensor& b) { return binary(cuda::kSub, a, b, "sub"); }
inline Tensor mul(const Tensor& a, const Tensor& b) { return binary(cuda::kMul, a, b, "mul"); }
inline Tensor div(const Tensor& a, const Tensor& b) { return binary(cuda::kDiv, a, b, "div"); }
inline Tensor maximum(const Tensor& a, const Tensor& b) { return binary(cuda::kMax, a, b, "maximum"); }
inline Tensor minimum(const Tensor& a, const Tensor& b) { return binary(cuda::kMin, a, b, "minimum"); }
inline Tensor mul_scalar(const Tensor& x, double s) { return affine(x, s, 0.0); }
inline Tensor add_scalar(const Tensor& x, double s) { return affine(x, 1.0, s); }
inline Tensor neg(const Tensor& x) { return affine(x, -1.0, 0.0); }
inline Tensor exp(const Tensor& x) { return unary(cuda::kExp, x); }
inline Tensor abs(const Tensor& x) { return unary(cuda::kAbs, x); }
inline Tensor sqrt(const Tensor& x) { return unary(cuda::kSqrt, x); }
inline Tensor log(const Tensor& x) { return unary(cuda::kLog, x); }
inline Tensor abs_backward(const Tensor& g, const Tensor& x) { return unary_grad(cuda::kAbsGrad, g, x, "abs backward"); }
inline Tensor square(const Tensor& x) { return binary(cuda::kMul, x, x, "square"); }
inline Tensor eq(const Tensor& a, const Tensor& b) { return binary(cuda::kEq, a, b, "eq"); }
inline Tensor ne(const Tensor& a, const Tensor& b) { return binary(cuda::kNe, a, b, "ne"); }
inline Tensor lt(const Tensor& a, const Tensor& b) { return binary(cuda::kLt, a, b, "lt"); }
inline Tensor le(const Tensor& a, const Tensor& b) { return binary(cuda::kLe, a, b, "le"); }
inline Tensor gt(const Tensor& a, const Tensor& b) { return binary(cuda::kGt, a, b, "gt"); }
inline Tensor ge(const Tensor& a, const Tensor& b) { return binary(cuda::kGe, a, b, "ge"); }
// Binary cross-entropy on logits x against targets y, per element (no pos_weight), and its ∂/∂x.
inline Tensor bce_with_logits(const Tensor& x, const Tensor& y) {
  return binary(cuda::kBceLogits, x, y, "binary_cross_entropy_with_logits");
}
inline Tensor bce_with_logits_grad_x(const Tensor& x, const Tensor& y) {
  return binary(cuda::kBceLogitsGradX, x, y, "binary_cross_entropy_with_logits backward");
}

// Sums g back to `shape` (checked by the caller): the kept dimensions are permuted first and the summed ones
// (the leading extra dimensions and those broadcast from 1) last, then one row sum per kept element
// (cuda::reduce_rows, float accumulation).
inline Tensor sum_to(const Tensor& g, const Shape& shape) {
  if constexpr (kCudaBuilt) {
    const int64_t lead = g.dim() - static_cast<int64_t>(shape.size());
    std::vector<int64_t> kept, summed;
    int64_t kept_n = 1, summed_n = 1;
    for (int64_t gd = 0; gd < g.dim(); ++gd) {
      const int64_t d = gd - lead;
      if (d < 0 || (shape[d] == 1 && g.size(gd) != 1)) {
        summed.push_back(gd);
        summed_n *= g.size(gd);
      } else {
        kept.push_back(gd);
        kept_n *= g.size(gd);
      }
    }
    std::vector<int64_t> perm = kept;
    perm.insert(perm.end(), summed.begin(), summed.end());
    const Tensor rows = g.permute(perm).contiguous();
    Tensor out = Tensor::empty(shape, g.dtype(), g.device());
    cuda::reduce_rows(rows.raw_data(), out.raw_data(), kept_n, summed_n, cuda::kRowSum, 1.f,
                      static_cast<int>(g.dtype()), g.device().index);
    return out;
  }
  cuda_not_built("sum_to");
}

// ---- the activation family -------------------------------------------------------------------------------
inline Tensor relu(const Tensor& x) { return unary(cuda::kRelu, x); }
inline Tensor relu6(const Tensor& x) { return unary(cuda::kRelu6, x); }
inline Tensor gelu_erf(const Tensor& x) { return unary(cuda::kGeluErf, x); }
inline Tensor sigmoid(const Tensor& x) { return unary(cuda::kSigmoid, x); }
inline Tensor silu(const Tensor& x) { return unary(cuda::kSilu, x); }
inline Tensor tanh(const Tensor& x) { return unary(cuda::kTanh, x); }
inline Tensor relu_backward(const Tensor& g, const Tensor& x) { return unary_grad(cuda::kReluGrad, g, x, "relu backward"); }
inline Tensor relu6_backward(const Tensor& g, const Tensor& x) {
  return unary_grad(cuda::kRelu6Grad, g, x, "relu6 backward");
}
inline Tensor gelu_erf_backward(const Tensor& g, const Tensor& x) {
  return unary_grad(cuda::kGeluErfGrad, g, x, "gelu backward");
}
inline Tensor sigmoid_backward(const Tensor& g, const Tensor& y) {
  return unary_grad(cuda::kSigmoidGrad, g, y, "sigmoid backward");
}
inline Tensor silu_backward(const Tensor& g, const Tensor& x) { return unary_grad(cuda::kSiluGrad, g, x, "silu backward"); }
inline Tensor tanh_backward(const Tensor& g, const Tensor& y) { return unary_grad(cuda::kTanhGrad, g, y, "tanh backward"); }
// relu(x) − slope·relu(−x) from the unary, scalar and binary kernels (x > 0: x; else slope·x).
inline Tensor leaky_relu(const Tensor& x, double slope) {
  return add(relu(x), affine(relu(unary(cuda::kNeg, x)), -slope, 0.0));
}
// g·(x > 0) + slope·(g − g·(x > 0)) = (1 − slope)·relu_grad + slope·g.
inline Tensor leaky_relu_backward(const Tensor& g, const Tensor& x, double slope) {
  return add(affine(relu_backward(g, x), 1.0 - slope, 0.0), affine(g, slope, 0.0));
}

}  // namespace cuda_backend
}  // namespace ops
}  // namespace retikd
