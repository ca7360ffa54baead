// retikd/ops/norm.hpp — batch normalisation (training with running statistics, evaluation) and layer
// normalisation, forward and backward, with PyTorch's semantics.
//
// batch_norm normalises x (N, C, *) per channel C. Training uses the batch mean and biased variance and
// updates the running statistics in place — running_var with the unbiased variance (·M/(M−1)), as PyTorch
// does — and its backward goes through the batch statistics. Evaluation uses the running statistics and its
// backward is the per-channel affine map. layer_norm normalises over the last k dims (normalized_shape).
// This front end checks the shapes both back ends share and picks one: the CPU loops (statistics and gradient
// sums accumulate in double whatever the tensor's dtype) are in ops/cpu/norm.hpp, the CUDA paths (float32 /
// float16 x on a GPU) in ops/cuda/norm.hpp: float32 statistics, so the saved mean / invstd are then float32
// device tensors and running statistics must be float32 on the same device.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>
#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/ops/common.hpp"
#include "retikd/ops/cpu/norm.hpp"
#include "retikd/ops/cuda/norm.hpp"
#include "retikd/ops/dispatch.hpp"

namespace retikd {
namespace ops {
namespace impl {

// The CPU helpers under their old names: dist/sync_batchnorm.hpp reads and writes running statistics and
// converts its weight with them.
inline double read_1d(const Tensor& t, int64_t i) { return cpu::read_1d(t, i); }
inline void write_1d(Tensor& t, int64_t i, double v) { cpu::write_1d(t, i, v); }
inline std::vector<double> param_values(const char* op, const char* what, const Tensor& p, const Shape& shape,
                                        const Tensor& x, double fill) {
  return cpu::param_values(op, what, p, shape, x, fill);
}

struct BatchNormResult {
  Tensor output;
  Tensor mean;    // (C,) float64: the batch mean (training) or the running mean (evaluation)
  Tensor invstd;  // (C,) float64: 1/sqrt(var + eps) of the same
};

// x (N, C, *). running_mean / running_var (C,) may be undefined in training (nothing is tracked).
inline BatchNormResult batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& running_mean,
                                  Tensor& running_var, bool training, double momentum, double eps) {
  RETIKD_CHECK(x.dim() >= 2, "batch_norm: input ", shape_str(x.shape()), " must be (N, C) or (N, C, ...)");
  const int64_t N = x.size(0), C = x.size(1), S = x.numel() / std::max<int64_t>(1, N * C);
  // Every GPU x goes to the CUDA back end, which names the dtypes it has no kernel for.
  if (x.is_cuda()) {
    cuda_backend::NormResult r =
        cuda_backend::batch_norm(x, weight, bias, running_mean, running_var, training, momentum, eps, N, C, S);
    return {std::move(r.output), std::move(r.mean), std::move(r.invstd)};
  }
  cpu::NormForward r = cpu::batch_norm(x, weight, bias, running_mean, running_var, training, momentum, eps, N, C, S);
  return {std::move(r.output), std::move(r.mean), std::move(r.invstd)};
}

// Gradients {x, weight, bias} of batch_norm (undefined where not asked for). In training the input gradient
// goes through the batch statistics:
//   dx = w·invstd · (g − mean(g) − x̂ · mean(g·x̂)),  x̂ = (x − mean)·invstd;
// in evaluation the statistics are constants: dx = w·invstd · g. Always dw = Σ g·x̂, db = Σ g.
inline std::array<Tensor, 3> batch_norm_backward(const Tensor& grad_out, const Tensor& x, const Tensor& weight,
                                                 const Tensor& save_mean, const Tensor& save_invstd, bool training,
                                                 bool need_x, bool need_w, bool need_b) {
  RETIKD_CHECK(grad_out.shape() == x.shape(), "batch_norm backward: output gradient ",
               shape_str(grad_out.shape()), " does not match input ", shape_str(x.shape()));
  check_same_dtype("batch_norm backward", grad_out, x);
  const int64_t N = x.size(0), C = x.size(1), S = x.numel() / std::max<int64_t>(1, N * C);
  if (grad_out.is_cuda())
    return cuda_backend::batch_norm_backward(grad_out, x, weight, save_mean, save_invstd, training, need_x, need_w,
                                             need_b, N, C, S);
  return cpu::batch_norm_backward(grad_out, x, weight, save_mean, save_invstd, training, need_x, need_w, need_b, N, C,
                                  S);
}

struct LayerNormResult {
  Tensor output;
  Tensor mean;    // (rows,) float64
  Tensor invstd;  // (rows,) float64
};

inline int64_t layer_norm_features(const Tensor& x, const Shape& normalized_shape) {
  const int64_t k = static_cast<int64_t>(normalized_shape.size());
  RETIKD_CHECK(k >= 1 && x.dim() >= k, "layer_norm: normalized_shape ", shape_str(normalized_shape),
               " does not fit input ", shape_str(x.shape()));
  for (int64_t i = 0; i < k; ++i)
    RETIKD_CHECK(x.size(x.dim() - k + i) == normalized_shape[i], "layer_norm: normalized_shape ",
                 shape_str(normalized_shape), " does not match the last dimensions of input ", shape_str(x.shape()));
  return shape_numel(normalized_shape);
}

inline LayerNormResult layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight,
                                  const Tensor& bias, double eps) {
  const int64_t D = layer_norm_features(x, normalized_shape);
  const int64_t R = D > 0 ? x.numel() / D : 0;
  if (x.is_cuda()) {
    cuda_backend::NormResult r = cuda_backend::layer_norm(x, normalized_shape, weight, bias, eps, R, D);
    return {std::move(r.output), std::move(r.mean), std::move(r.invstd)};
  }
  cpu::NormForward r = cpu::layer_norm(x, normalized_shape, weight, bias, eps, R, D);
  return {std::move(r.output), std::move(r.mean), std::move(r.invstd)};
}

// Gradients {x, weight, bias} of layer_norm: with x̂ = (x − mean)·invstd and ĝ = g·w per row,
//   dx = invstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ·x̂)),  dw = Σ_rows g·x̂,  db = Σ_rows g.
inline std::array<Tensor, 3> layer_norm_backward(const Tensor& grad_out, const Tensor& x,
                                                 const Shape& normalized_shape, const Tensor& weight,
                                                 const Tensor& save_mean, const Tensor& save_invstd, bool need_x,
                                                 bool need_w, bool need_b) {
  RETIKD_CHECK(grad_out.shape() == x.shape(), "layer_norm backward: output gradient ",
               shape_str(grad_out.shape()), " does not match input ", shape_str(x.shape()));
  check_same_dtype("layer_norm backward", grad_out, x);
  const int64_t D = layer_norm_features(x, normalized_shape);
  const int64_t R = D > 0 ? x.numel() / D : 0;
  if (grad_out.is_cuda())
    return cuda_backend::layer_norm_backward(grad_out, x, normalized_shape, weight, save_mean, save_invstd, need_x,
                                             need_w, need_b, R, D);
  return cpu::layer_norm_backward(grad_out, x, normalized_shape, weight, save_mean, save_invstd, need_x, need_w,
                                  need_b, R, D);
}

}  // namespace impl

// Batch normalisation over channel dim 1 of x (N, C) or (N, C, ...). weight / bias (C,) may be Var() (no
// affine). Training: batch statistics, running_mean/running_var (C,) updated in place when defined
// (running ← (1 − momentum)·running + momentum·batch, unbiased variance). Evaluation: running statistics.
inline Var batch_norm(const Var& x, const Var& weight, const Var& bias, Tensor& running_mean, Tensor& running_var,
                      bool training, double momentum = 0.1, double eps = 1e-5) {
  const Tensor wv = weight.defined() ? weight.value() : Tensor();
  const Tensor bv = bias.defined() ? bias.value() : Tensor();
  impl::BatchNormResult r =
      impl::batch_norm(x.value(), wv, bv, running_mean, running_var, training, momentum, eps);
  const Tensor xv = x.value(), mean = r.mean, invstd = r.invstd;
  const bool gx = x.requires_grad(), gw = weight.defined() && weight.requires_grad(),
             gb = bias.defined() && bias.requires_grad();
  return make_result(r.output, "batch_norm", {x, weight, bias},
                     [xv, wv, mean, invstd, training, gx, gw, gb](const Tensor& g) -> std::vector<Tensor> {
                       auto grads = impl::batch_norm_backward(g, xv, wv, mean, invstd, training, gx, gw, gb);
                       return {grads[0], grads[1], grads[2]};
                     });
}

// Layer normalisation over the trailing dims `normalized_shape` of x; weight / bias of that shape or Var().
inline Var layer_norm(const Var& x, const Shape& normalized_shape, const Var& weight = Var(),
                      const Var& bias = Var(), double eps = 1e-5) {
  const Tensor wv = weight.defined() ? weight.value() : Tensor();
  const Tensor bv = bias.defined() ? bias.value() : Tensor();
  impl::LayerNormResult r = impl::layer_norm(x.value(), normalized_shape, wv, bv, eps);
  const Tensor xv = x.value(), mean = r.mean, invstd = r.invstd;
  const bool gx = x.requires_grad(), gw = weight.defined() && weight.requires_grad(),
             gb = bias.defined() && bias.requires_grad();
  return make_result(r.output, "layer_norm", {x, weight, bias},
                     [xv, normalized_shape, wv, mean, invstd, gx, gw, gb](const Tensor& g) -> std::vector<Tensor> {
                       auto grads = impl::layer_norm_backward(g, xv, normalized_shape, wv, mean, invstd, gx, gw, gb);
                       return {grads[0], grads[1], grads[2]};
                     });
}

}  // namespace ops
}  // namespace retikd
