// retikd/ops/loss.hpp — the training losses: cross-entropy (class weights, label smoothing, ignore_index),
// binary cross-entropy with logits (pos_weight), mean squared error, and the distillation KL divergence with
// temperature, plus PyTorch's lower-level kl_div on log-probabilities.
//
// Each loss is one fused, numerically stable CPU pass (log-sum-exp on every softmax row, softplus for the
// sigmoid), with its gradient computed directly from the saved inputs and per-row statistics — no
// intermediate probability tensors on the tape. Semantics follow PyTorch exactly, including what is summed
// and what it is divided by; each function's comment states both. Per-row work is threaded; totals are summed
// sequentially in double, so results do not depend on the thread count.
// GPU (float32 tensors on a CUDA device): cross_entropy (targets and class weights are copied to the host to
// validate them and compute the mean's denominator), mse_loss and kl_div, forward and backward, reductions in
// float32; BCE on the elementwise kernels (with a pos_weight composed from Var ops:
// bce_with_logits_pos_weight_composite); kl_div_log_input composed from Var ops (kl_div_log_input_composite).
// The CUDA paths are in ops/cuda/loss.hpp, the CPU loops in ops/cpu/loss.hpp; Reduction, CrossEntropyOptions
// and the saved statistics in ops/loss_types.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/ops/activation.hpp"
#include "retikd/ops/common.hpp"
#include "retikd/ops/cpu/loss.hpp"
#include "retikd/ops/cuda/loss.hpp"
#include "retikd/ops/dispatch.hpp"
#include "retikd/ops/elementwise.hpp"
#include "retikd/ops/loss_types.hpp"
#include "retikd/ops/reduce.hpp"

namespace retikd {
namespace ops {

namespace impl {

// Whether a loss takes its CUDA path (ops/cuda/loss.hpp): every GPU tensor does, not only gpu_float's float32 /
// float16, so that check_loss_input names a GPU tensor of another dtype as such ("on a GPU must be float32").
inline bool loss_on_gpu(const Tensor& t) { return kCudaBuilt && t.is_cuda(); }

inline void check_loss_input(const char* op, const char* what, const Tensor& t) {
  RETIKD_CHECK(t.defined(), op, ": ", what, " is undefined");
  if (loss_on_gpu(t)) {  // the GPU kernels are float32; the CPU-only losses reject GPU tensors in cpu::map / cpu::zip
    RETIKD_CHECK(t.dtype() == DType::float32, op, ": ", what, " on a GPU must be float32, got ", t.describe());
    return;
  }
  check_cpu(op, t);
  RETIKD_CHECK(t.dtype() == DType::float32 || t.dtype() == DType::float64, op, ": ", what,
               " must be float32 or float64, got ", t.describe());
}
inline void check_loss_pair(const char* op, const char* a_name, const Tensor& a, const char* b_name,
                            const Tensor& b) {
  RETIKD_CHECK(a.shape() == b.shape(), op, ": ", a_name, " ", shape_str(a.shape()), " and ", b_name, " ",
               shape_str(b.shape()), " must have the same shape");
  check_same_dtype(op, a, b);
}
inline void check_no_batchmean(const char* op, Reduction r) {
  RETIKD_CHECK(r != Reduction::batchmean, op,
               ": reduction batchmean is only defined for kl_div (use mean or sum)");
}

// What a reduced loss is divided by: 1 (none, sum), the element count (mean), the first dimension (batchmean;
// PyTorch divides a 0-D input by nothing).
inline double loss_divisor(Reduction r, const Shape& shape) {
  switch (r) {
    case Reduction::none:
    case Reduction::sum: return 1.0;
    case Reduction::mean: return static_cast<double>(shape_numel(shape));
    case Reduction::batchmean: return shape.empty() ? 1.0 : static_cast<double>(shape[0]);
  }
  return 1.0;
}

// Reduces a contiguous tensor of elementwise losses: itself (none) or a 0-D total divided by loss_divisor.
inline Tensor reduce_elementwise_loss(const Tensor& e, Reduction r) {
  if (r == Reduction::none) return e;
  const double div = loss_divisor(r, e.shape());
  if (loss_on_gpu(e)) return cuda_backend::reduce_loss(e, div);
  return dispatch_floating(e.dtype(), "loss", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* p = e.data<T>();
    double s = 0.0;
    for (int64_t i = 0; i < e.numel(); ++i) s += static_cast<double>(p[i]);
    return Tensor::scalar(s / div, e.dtype());
  });
}

// The gradient of the reduction with respect to each elementwise loss, as a contiguous tensor of `shape`:
// g itself (none) or g / divisor everywhere.
inline Tensor loss_grad_per_element(const Tensor& g, const Shape& shape, Reduction r) {
  if (r == Reduction::none) return g.contiguous();
  if (loss_on_gpu(g)) return cuda_backend::loss_grad_broadcast(g, shape, loss_divisor(r, shape));
  return Tensor::full(shape, g.item<double>() / loss_divisor(r, shape), g.dtype());
}

// ---- cross-entropy ----------------------------------------------------------------------------------------

// Forward of cross_entropy; fills `saved` for the backward. See ops::cross_entropy for the definition.
inline Tensor cross_entropy_forward(const Tensor& logits, const Tensor& targets,
                                    const CrossEntropyOptions& opt, CrossEntropySaved& saved) {
  const char* op = "cross_entropy";
  check_loss_input(op, "logits", logits);
  RETIKD_CHECK(logits.dim() == 2, op, ": logits ", shape_str(logits.shape()), " must be 2-D (N, C)");
  const int64_t N = logits.size(0), C = logits.size(1);
  RETIKD_CHECK(C > 0, op, ": logits ", shape_str(logits.shape()), " have no classes");
  RETIKD_CHECK(targets.defined(), op, ": targets are undefined");
  RETIKD_CHECK(targets.dtype() == DType::int64, op, ": targets must be int64 class indices, got ",
               targets.describe());
  const bool gpu = loss_on_gpu(logits);
  if (!gpu) check_cpu(op, targets);  // GPU logits take targets from either device (copied to the host there)
  RETIKD_CHECK(targets.dim() == 1 && targets.size(0) == N, op, ": targets ", shape_str(targets.shape()),
               " must be (N,) = (", N, ",) for logits ", shape_str(logits.shape()));
  RETIKD_CHECK(opt.label_smoothing >= 0.0 && opt.label_smoothing <= 1.0, op,
               ": label_smoothing must be in [0, 1], got ", opt.label_smoothing);
  check_no_batchmean(op, opt.reduction);
  if (gpu) return cuda_backend::cross_entropy_forward(logits, targets, opt, saved);
  saved.logits = logits.contiguous();
  saved.targets = targets.contiguous();
  if (saved.targets.shares_storage_with(targets))
    saved.targets = saved.targets.clone();  // freeze for backward
  const int64_t* pt = saved.targets.data<int64_t>();
  for (int64_t i = 0; i < N; ++i)
    RETIKD_CHECK(pt[i] == opt.ignore_index || (pt[i] >= 0 && pt[i] < C), op, ": target ", pt[i], " at index ",
                 i, " is out of range for ", C, " classes (logits ", shape_str(logits.shape()), ")");
  if (opt.weight.defined()) {
    RETIKD_CHECK(opt.weight.dim() == 1 && opt.weight.size(0) == C, op, ": class weights ",
                 shape_str(opt.weight.shape()), " must be (C,) = (", C, ",)");
    RETIKD_CHECK(is_floating(opt.weight.dtype()), op, ": class weights must be floating, got ",
                 opt.weight.describe());
    check_cpu(op, opt.weight);
    saved.weight = opt.weight.to(logits.dtype()).contiguous().clone();
  }
  saved.label_smoothing = opt.label_smoothing;
  saved.ignore_index = opt.ignore_index;
  return cpu::cross_entropy_forward(saved, opt.reduction);
}

// Gradient of cross_entropy with respect to the logits; g is 0-D (mean, sum) or (N,) (none).
inline Tensor cross_entropy_backward(const Tensor& g, const CrossEntropySaved& s, Reduction reduction) {
  const char* op = "cross_entropy backward";
  if (loss_on_gpu(s.logits)) return cuda_backend::cross_entropy_backward(g, s, reduction);
  check_cpu(op, g);
  return cpu::cross_entropy_backward(g, s, reduction);
}

// ---- binary cross-entropy with logits ---------------------------------------------------------------------
// Elementwise ℓ = (1 − y)·x + (1 + (pw − 1)·y)·softplus(−x) on the CPU (cpu::bce_with_logits_elementwise).
inline Tensor bce_with_logits_elementwise(const Tensor& x, const Tensor& y, const Tensor& pw) {
  return cpu::bce_with_logits_elementwise(x, y, pw);
}

// Gradients of the BCE-with-logits reduction for logits and targets (undefined where not wanted):
//   ∂ℓ/∂x = (1 − y) − (1 + (pw − 1)·y)·σ(−x),   ∂ℓ/∂y = −x + (pw − 1)·softplus(−x)
inline std::vector<Tensor> bce_with_logits_backward(const Tensor& g, const Tensor& x, const Tensor& y,
                                                    const Tensor& pw, Reduction reduction, bool want_x,
                                                    bool want_y) {
  const Tensor ge = loss_grad_per_element(g, x.shape(), reduction);
  return cpu::bce_with_logits_backward(ge, x, y, pw, want_x, want_y);
}

}  // namespace impl

// ---- differentiable losses --------------------------------------------------------------------------------

// Cross-entropy of logits (N, C) against int64 class indices (N,), PyTorch's F.cross_entropy exactly:
//   per sample  ℓ_i = (1−ε)·w[t_i]·(−log p_i,t_i) + (ε/C)·Σ_c w_c·(−log p_ic),   log p = log_softmax(z_i)
//   (w = 1 without class weights; ℓ_i = 0 where t_i == ignore_index)
//   none → (N,) of ℓ_i;  sum → Σ_i ℓ_i;  mean → Σ_i ℓ_i / Σ_{i counted} w[t_i]
// so the weighted mean divides by the targets' summed weights (the count of counted targets without
// weights), for the smoothing term too — PyTorch's formula. Mean over zero counted targets is NaN, as there.
// A target outside [0, C) (other than ignore_index) throws, naming the target and its position.
// Gradient with respect to the logits only (targets and weights are constants).
inline Var cross_entropy(const Var& logits, const Tensor& targets, const CrossEntropyOptions& opt = {}) {
  auto saved = std::make_shared<impl::CrossEntropySaved>();
  Tensor out = impl::cross_entropy_forward(logits.value(), targets, opt, *saved);
  const Reduction r = opt.reduction;
  return make_result(out, "cross_entropy", {logits}, [saved, r](const Tensor& g) -> std::vector<Tensor> {
    return {impl::cross_entropy_backward(g, *saved, r)};
  });
}

// Binary cross-entropy on logits x against targets y in [0, 1] (same shape), PyTorch's
// F.binary_cross_entropy_with_logits: elementwise
//   ℓ = −[pw·y·log σ(x) + (1 − y)·log(1 − σ(x))]
// computed stably as (1 − y)·x + (1 + (pw − 1)·y)·softplus(−x). pos_weight (optional) broadcasts against
// x — typically (C,) for x (N, C). none → elementwise; sum → Σ; mean → Σ / numel.
// Gradients: ∂ℓ/∂x = (1 − y) − (1 + (pw − 1)·y)·σ(−x);  ∂ℓ/∂y = −x + (pw − 1)·softplus(−x).
namespace impl {
// BCE with logits and pos_weight from Var ops that run on every device (the GPU route with a pos_weight; the
// tests run it on CPU tensors against the CPU loops): ℓ = (1 − y)·x + (1 + (pw − 1)·y)·softplus(−x), with
// softplus(−x) = relu(−x) + log(1 + exp(−|x|)); pw is pos_weight expanded to x's shape, on x's device.
inline Var bce_with_logits_pos_weight_composite(const Var& x, const Var& y, const Tensor& pw, Reduction reduction) {
  const Var softplus_neg_x =
      ops::add(ops::relu(ops::neg(x)), ops::log(ops::add(ops::exp(ops::neg(ops::abs(x))), 1.0)));
  const Var pw_minus_1(impl::add_scalar(pw, -1.0), false);
  const Var e = ops::add(ops::mul(ops::add(ops::neg(y), 1.0), x),
                         ops::mul(ops::add(ops::mul(pw_minus_1, y), 1.0), softplus_neg_x));
  if (reduction == Reduction::sum) return ops::sum(e);
  if (reduction == Reduction::mean) return ops::mean(e);
  return e;  // none (batchmean was refused by the caller)
}
}  // namespace impl

inline Var binary_cross_entropy_with_logits(const Var& logits, const Var& targets,
                                            const Tensor& pos_weight = Tensor(),
                                            Reduction reduction = Reduction::mean) {
  const char* op = "binary_cross_entropy_with_logits";
  impl::check_loss_input(op, "logits", logits.value());
  impl::check_loss_input(op, "targets", targets.value());
  impl::check_loss_pair(op, "logits", logits.value(), "targets", targets.value());
  impl::check_no_batchmean(op, reduction);
  const Tensor x = logits.value().contiguous(), y = targets.value().contiguous();
  Tensor pw;
  if (pos_weight.defined()) {
    RETIKD_CHECK(is_floating(pos_weight.dtype()), op, ": pos_weight must be floating, got ",
                 pos_weight.describe());
    if (!gpu_float(x, y)) check_cpu(op, pos_weight);  // GPU logits take pos_weight from either device
    const Shape b = broadcast_shapes(x.shape(), pos_weight.shape(), op);
    RETIKD_CHECK(b == x.shape(), op, ": pos_weight ", shape_str(pos_weight.shape()),
                 " does not broadcast to logits ", shape_str(x.shape()));
    pw = pos_weight.to(x.dtype()).to(x.device()).expand(x.shape()).contiguous();
    if (pw.shares_storage_with(pos_weight)) pw = pw.clone();
  }
  const bool gx_needed = logits.requires_grad(), gy_needed = targets.requires_grad();
  if (pw.defined() && gpu_float(x, y))
    return impl::bce_with_logits_pos_weight_composite(logits, targets, pw, reduction);
  if (!pw.defined() && gpu_float(x, y)) {
    // GPU (no pos_weight): the fused elementwise kernels; ∂ℓ/∂x = (1 − y) − σ(−x), ∂ℓ/∂y = −x.
    Tensor out = impl::reduce_elementwise_loss(cuda_backend::bce_with_logits(x, y), reduction);
    return make_result(out, op, {logits, targets},
                       [x, y, reduction, gx_needed, gy_needed](const Tensor& g) -> std::vector<Tensor> {
                         const Tensor ge = impl::loss_grad_per_element(g, x.shape(), reduction);
                         return {gx_needed ? impl::mul(ge, cuda_backend::bce_with_logits_grad_x(x, y)) : Tensor(),
                                 gy_needed ? impl::neg(impl::mul(ge, x)) : Tensor()};
                       });
  }
  Tensor out = impl::reduce_elementwise_loss(impl::bce_with_logits_elementwise(x, y, pw), reduction);
  return make_result(out, op, {logits, targets},
                     [x, y, pw, reduction, gx_needed, gy_needed](const Tensor& g) -> std::vector<Tensor> {
                       return impl::bce_with_logits_backward(g, x, y, pw, reduction, gx_needed, gy_needed);
                     });
}

// Mean squared error, elementwise (a − b)² over same-shaped a and b (no broadcasting: a shape mismatch is
// almost always a bug). none → elementwise; sum → Σ; mean → Σ / numel.
inline Var mse_loss(const Var& a, const Var& b, Reduction reduction = Reduction::mean) {
  const char* op = "mse_loss";
  impl::check_loss_input(op, "input", a.value());
  impl::check_loss_input(op, "target", b.value());
  impl::check_loss_pair(op, "input", a.value(), "target", b.value());
  impl::check_no_batchmean(op, reduction);
  if (impl::loss_on_gpu(a.value())) {  // the same composition from GPU ops: (a − b)², reduced; gradient ±2·g·(a − b)
    check_same_device(op, a.value(), b.value());
    const Tensor diff = impl::sub(a.value(), b.value());
    Tensor out = impl::reduce_elementwise_loss(impl::mul(diff, diff), reduction);
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    return make_result(out, op, {a, b}, [diff, reduction, ga, gb](const Tensor& g) -> std::vector<Tensor> {
      const Tensor gd = impl::mul_scalar(impl::mul(impl::loss_grad_per_element(g, diff.shape(), reduction), diff), 2.0);
      return {ga ? gd : Tensor(), gb ? impl::neg(gd) : Tensor()};
    });
  }
  // diff = a − b, contiguous; kept for the backward
  const Tensor diff = cpu::zip(a.value(), b.value(), op, [](auto u, auto v) { return u - v; });
  const Tensor sq = cpu::map(diff, op, [](auto d) { return d * d; });
  Tensor out = impl::reduce_elementwise_loss(sq, reduction);
  const bool ga = a.requires_grad(), gb = b.requires_grad();
  return make_result(out, op, {a, b}, [diff, reduction, ga, gb](const Tensor& g) -> std::vector<Tensor> {
    const Tensor ge = impl::loss_grad_per_element(g, diff.shape(), reduction);
    const Tensor gd =
        cpu::zip(ge, diff, "mse_loss backward", [](auto u, auto d) { return u * d * decltype(d)(2); });
    return {ga ? gd : Tensor(),
            gb ? cpu::map(gd, "mse_loss backward", [](auto v) { return -v; }) : Tensor()};
  });
}

// ---- KL divergence ----------------------------------------------------------------------------------------

// PyTorch's F.kl_div(input, target, reduction, log_target): input holds log-probabilities log q; target holds
// probabilities p (log_target = false) or log-probabilities log p (log_target = true). Elementwise
//   ℓ = p·(log p − log q)   (0 where p == 0, like PyTorch's xlogy)
// none → elementwise; sum → Σ; mean → Σ / numel (not the KL per row!); batchmean → Σ / input.size(0), the
// true KL per sample when rows are distributions. Differentiable in both inputs.
namespace impl {
// kl_div_log_input from Var ops that run on every device (the GPU route; the tests run it on CPU tensors against
// the CPU loops): exp(lp)·(lp − lq), or p·(log(p + [p = 0]) − lq) so that p = 0 contributes 0 as xlogy does,
// then the reduction; the gradients come from the ops' own. At p = 0 exactly the target's gradient is −lq
// here where the CPU loop gives log 0 + 1 − lq = −inf.
inline Var kl_div_log_input_composite(const Var& log_q, const Var& target, bool log_target, Reduction reduction) {
  Var e;
  if (log_target) {
    e = ops::mul(ops::exp(target), ops::sub(target, log_q));
  } else {
    const Var zero_mask = ops::eq(target, Var(Tensor::zeros({}, target.value().dtype(), target.value().device())));
    e = ops::mul(target, ops::sub(ops::log(ops::add(target, zero_mask)), log_q));
  }
  switch (reduction) {
    case Reduction::none: return e;
    case Reduction::sum: return ops::sum(e);
    case Reduction::mean: return ops::mean(e);
    case Reduction::batchmean:  // reduce_elementwise_loss's divisor: the first dimension
      return ops::div(ops::sum(e), e.dim() == 0 ? 1.0 : static_cast<double>(e.size(0)));
  }
  return e;
}
}  // namespace impl

inline Var kl_div_log_input(const Var& log_q, const Var& target, bool log_target = false,
                            Reduction reduction = Reduction::mean) {
  const char* op = "kl_div_log_input";
  impl::check_loss_input(op, "input", log_q.value());
  impl::check_loss_input(op, "target", target.value());
  impl::check_loss_pair(op, "input", log_q.value(), "target", target.value());
  if (gpu_float(log_q.value(), target.value()))
    return impl::kl_div_log_input_composite(log_q, target, log_target, reduction);
  const Tensor x = log_q.value().contiguous(), t = target.value().contiguous();
  Tensor e = log_target ? cpu::zip(x, t, op, [](auto lq, auto lp) { return std::exp(lp) * (lp - lq); })
                        : cpu::zip(x, t, op, [](auto lq, auto p) {
                            using T = decltype(p);
                            return p == T(0) ? T(0) * lq : p * (std::log(p) - lq);
                          });
  Tensor out = impl::reduce_elementwise_loss(e, reduction);
  const bool gq = log_q.requires_grad(), gt = target.requires_grad();
  return make_result(
      out, op, {log_q, target},
      [x, t, log_target, reduction, gq, gt](const Tensor& g) -> std::vector<Tensor> {
        const Tensor ge = impl::loss_grad_per_element(g, x.shape(), reduction);
        // p (or exp(log p)), needed by both gradients
        const Tensor p =
            log_target ? cpu::map(t, "kl_div_log_input backward", [](auto v) { return std::exp(v); })
                       : t;
        Tensor dq, dt;
        if (gq)
          dq = cpu::zip(ge, p, "kl_div_log_input backward", [](auto u, auto pv) { return -u * pv; });
        if (gt) {
          // ∂/∂p [p(log p − x)] = log p + 1 − x;  ∂/∂(log p) [e^{lp}(lp − x)] = e^{lp}(lp − x + 1)
          const Tensor inner =
              log_target
                  ? cpu::zip(t, x, "kl_div_log_input backward",
                                  [](auto lp, auto lq) { return std::exp(lp) * (lp - lq + decltype(lp)(1)); })
                  : cpu::zip(t, x, "kl_div_log_input backward",
                                  [](auto pv, auto lq) { return std::log(pv) + decltype(pv)(1) - lq; });
          dt = cpu::zip(ge, inner, "kl_div_log_input backward", [](auto u, auto v) { return u * v; });
        }
        return {dq, dt};
      });
}

namespace impl {

// Forward of the distillation KL; returns the elementwise terms' reduction. See ops::kl_div.
inline Tensor kl_div_forward(const Tensor& s_in, const Tensor& t_in, double tau, Reduction reduction,
                             KlDivSaved& saved) {
  const char* op = "kl_div";
  check_loss_input(op, "student logits", s_in);
  check_loss_input(op, "teacher logits", t_in);
  check_loss_pair(op, "student logits", s_in, "teacher logits", t_in);
  RETIKD_CHECK(s_in.dim() >= 1, op, ": logits must have a class dimension, got ", s_in.describe());
  RETIKD_CHECK(tau > 0.0 && std::isfinite(tau), op, ": temperature must be positive, got ", tau);
  saved.s = s_in.contiguous();
  saved.t = t_in.contiguous();
  saved.tau = tau;
  saved.shape = s_in.shape();
  const int64_t C = s_in.size(-1);
  const int64_t R = C == 0 ? 0 : s_in.numel() / C;
  if (loss_on_gpu(s_in)) return reduce_elementwise_loss(cuda_backend::kl_div_terms(s_in, t_in, R, C, saved), reduction);
  return reduce_elementwise_loss(cpu::kl_div_terms(saved, R, C), reduction);
}

// Gradients of kl_div: with G_c the gradient reaching term c of a row (g / divisor, or g's element for none),
// ℓ_c = log p_c − log q_c, q = softmax(s/τ), p = softmax(t/τ):
//   ∂/∂s_j = (1/τ)·(q_j·Σ_c G_c p_c − G_j p_j)
//   ∂/∂t_j = (1/τ)·p_j·(G_j(ℓ_j + 1) − Σ_c G_c p_c(ℓ_c + 1))
inline std::vector<Tensor> kl_div_backward(const Tensor& g, const KlDivSaved& sv, Reduction reduction,
                                           bool want_s, bool want_t) {
  const Tensor ge = loss_grad_per_element(g.to(sv.s.dtype()), sv.shape, reduction);
  Tensor gs = want_s ? Tensor::empty(sv.shape, sv.s.dtype(), sv.s.device()) : Tensor();
  Tensor gt = want_t ? Tensor::empty(sv.shape, sv.s.dtype(), sv.s.device()) : Tensor();
  const int64_t C = sv.shape.back();
  const int64_t R = C == 0 ? 0 : shape_numel(sv.shape) / C;
  if (loss_on_gpu(sv.s)) return cuda_backend::kl_div_backward(sv, ge, gs, gt, want_s, want_t, R, C);
  return cpu::kl_div_backward(sv, ge, gs, gt, want_s, want_t, R, C);
}

}  // namespace impl

// The distillation KL divergence between the temperature-softened teacher and student distributions over the
// last dimension (Hinton et al.), KL(softmax(t/τ) ‖ softmax(s/τ)). With p = softmax(t/τ), q = softmax(s/τ)
// per row, the elementwise terms are p_c·(log p_c − log q_c) (0 where p_c underflows to 0), and
//   none      → those terms, shape of the logits
//   sum       → Σ over every element (all rows)
//   batchmean → Σ over every element / logits.size(0)  — PyTorch's batchmean, the mean KL per sample for
//               (B, C) logits; for (B, N, N) attention maps it is the sum over the N rows / B (DESIGN §5)
//   mean      → Σ / numel (PyTorch's "mean": divides by C too)
// This equals F.kl_div(F.log_softmax(s/τ, -1), F.softmax(t/τ, -1), reduction). The τ² factor of Hinton's loss
// is NOT applied here: multiply by τ² where the recipe asks for it. Gradients flow to the student logits and,
// when they require one, to the teacher logits (teacher logits are usually detached).
inline Var kl_div(const Var& student_logits, const Var& teacher_logits, double temperature = 1.0,
                  Reduction reduction = Reduction::batchmean) {
  auto saved = std::make_shared<impl::KlDivSaved>();
  Tensor out =
      impl::kl_div_forward(student_logits.value(), teacher_logits.value(), temperature, reduction, *saved);
  const bool want_s = student_logits.requires_grad(), want_t = teacher_logits.requires_grad();
  return make_result(out, "kl_div", {student_logits, teacher_logits},
                     [saved, reduction, want_s, want_t](const Tensor& g) -> std::vector<Tensor> {
                       return impl::kl_div_backward(g, *saved, reduction, want_s, want_t);
                     });
}

}  // namespace ops
}  // namespace retikd
