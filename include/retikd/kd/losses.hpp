// retikd/kd/losses.hpp — the distillation loss terms and their weighting (DESIGN.md §5, "Total"):
//
//   L = α·CE(y, z_S) + r(e)·[ (1−α)·τ²·KL(softmax(z_T/τ) ‖ softmax(z_S/τ))   (logit KD, optional)
//                             + λ_pca·L_pca + λ_gl·L_gl + λ_adv·L_adv ]
//
// with r(e) the KD warm-up ramp: 0 before `ramp_start_epoch`, rising linearly to 1 over `ramp_epochs`
// (r = 1 from the start epoch on when ramp_epochs = 0). CE is never ramped. Each function below computes one
// term; combine_losses() weights them and fills a LossBreakdown (raw, unweighted term values, for logs).
//
// Attention-map helpers (shapes: B batch, H heads, N tokens, d head dim, D token dim):
//   attention_logits(q, k)       (B,H,N,d),(B,H,N,d) → (B,H,N,N)   q·kᵀ/√d
//   value_relation(v)            (B,H,N,d)           → (B,H,N,N)   v·vᵀ/√d
//   token_affinity_logits(t)     (B,N,D)             → (B,N,N)     t·tᵀ/√D
//   attention_kl_loss(s, t, τ)   s (B,H,N,N), t (B,N,N) or (B,H,N,N) →
//                                Σ_{b,h,i,j} p·(log p − log q) / (B·H),  p = softmax_j(t/τ), q = softmax_j(s/τ)
//                                — PyTorch's kl_div(log_softmax(s/τ), softmax(t/τ), 'batchmean') for H = 1
//                                (summed over the N×N entries, divided by the batch), averaged over heads.
//                                One softmax per side: the paper code's double softmax is not reproduced.
#pragma once

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/core/error.hpp"
#include "retikd/ops/elementwise.hpp"
#include "retikd/ops/loss.hpp"
#include "retikd/ops/matmul.hpp"
#include "retikd/ops/shape.hpp"

namespace retikd {
namespace kd {

// ---- named breakdown ---------------------------------------------------------------------------------------
// Ordered (name, value) pairs, e.g. total, ce, logit_kd, pca, pca_attn, pca_vv, gl, adv_g, disc, kd_ramp.
struct LossBreakdown {
  std::vector<std::pair<std::string, double>> terms;

  void set(const std::string& name, double value) {
    for (auto& t : terms)
      if (t.first == name) {
        t.second = value;
        return;
      }
    terms.emplace_back(name, value);
  }
  bool has(const std::string& name) const {
    for (const auto& t : terms)
      if (t.first == name) return true;
    return false;
  }
  double get(const std::string& name) const {
    for (const auto& t : terms)
      if (t.first == name) return t.second;
    fail("LossBreakdown: no term '", name, "' (have: ", str(), ")");
  }
  // "total=1.234 ce=0.98 …"
  std::string str() const {
    std::ostringstream s;
    for (std::size_t i = 0; i < terms.size(); ++i) s << (i ? " " : "") << terms[i].first << "=" << terms[i].second;
    return s.str();
  }
};

// ---- weights -----------------------------------------------------------------------------------------------
struct KDLossWeights {
  double alpha = 1.0;               // α: weight of the cross-entropy
  bool logit_kd = false;            // add (1−α)·τ²·KL(z_T/τ ‖ z_S/τ)
  double temperature = 4.0;         // τ of the logit KD
  double lambda_pca = 0.0;          // weight of L_pca
  double lambda_gl = 0.0;           // weight of L_gl
  double lambda_adv = 0.0;          // weight of the generator loss L_adv
  std::vector<double> class_weights;  // per-class CE weights (empty: unweighted)
  double label_smoothing = 0.0;
  double ramp_start_epoch = 0.0;    // KD terms are off before this (fractional) epoch …
  double ramp_epochs = 0.0;         // … then ramp linearly from 0 to 1 over this many epochs

  // r(e) ∈ [0, 1].
  double ramp(double epoch) const {
    if (epoch < ramp_start_epoch) return 0.0;
    if (ramp_epochs <= 0.0) return 1.0;
    return std::min(1.0, (epoch - ramp_start_epoch) / ramp_epochs);
  }
  void validate() const {
    RETIKD_CHECK(alpha >= 0.0 && alpha <= 1.0, "KDLossWeights: alpha ", alpha, " must be in [0, 1]");
    RETIKD_CHECK(temperature > 0.0, "KDLossWeights: temperature ", temperature, " must be positive");
    RETIKD_CHECK(lambda_pca >= 0 && lambda_gl >= 0 && lambda_adv >= 0, "KDLossWeights: the lambdas must be >= 0");
    RETIKD_CHECK(ramp_epochs >= 0.0, "KDLossWeights: ramp_epochs must be >= 0");
    RETIKD_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0, "KDLossWeights: label_smoothing must be in [0, 1]");
  }
};

// ---- the terms ---------------------------------------------------------------------------------------------
// Cross-entropy of logits (B, classes) against int64 labels (B), mean over the batch (weighted mean with
// class weights — PyTorch's F.cross_entropy(weight=…, label_smoothing=…)).
inline Var classification_loss(const Var& logits, const Tensor& labels, const KDLossWeights& w = {}) {
  ops::CrossEntropyOptions o;
  o.label_smoothing = w.label_smoothing;
  if (!w.class_weights.empty()) {
    RETIKD_CHECK(static_cast<int64_t>(w.class_weights.size()) == logits.size(-1), "classification_loss: ",
                 w.class_weights.size(), " class weights for ", logits.size(-1), " classes");
    o.weight = Tensor::from_vector(w.class_weights, {static_cast<int64_t>(w.class_weights.size())})
                   .to(logits.dtype());
  }
  return ops::cross_entropy(logits, labels, o);
}

// Hinton's logit KD: τ²·KL(softmax(z_T/τ) ‖ softmax(z_S/τ)), batchmean. Logits (B, classes).
inline Var logit_kd_loss(const Var& student_logits, const Var& teacher_logits, double tau) {
  return ops::mul(ops::kl_div(student_logits, teacher_logits.detach(), tau, ops::Reduction::batchmean), tau * tau);
}

// q·kᵀ/√d: (B, H, N, d) × (B, H, N, d) → (B, H, N, N).
inline Var attention_logits(const Var& q, const Var& k) {
  RETIKD_CHECK(q.dim() == 4 && q.shape() == k.shape(), "attention_logits: q ", shape_str(q.shape()), " and k ",
               shape_str(k.shape()), " must both be (B, H, N, d)");
  return ops::mul(ops::matmul(q, ops::transpose(k, 2, 3)), 1.0 / std::sqrt(static_cast<double>(q.size(3))));
}
// v·vᵀ/√d: (B, H, N, d) → (B, H, N, N).
inline Var value_relation(const Var& v) {
  RETIKD_CHECK(v.dim() == 4, "value_relation: v ", shape_str(v.shape()), " must be (B, H, N, d)");
  return ops::mul(ops::matmul(v, ops::transpose(v, 2, 3)), 1.0 / std::sqrt(static_cast<double>(v.size(3))));
}
// t·tᵀ/√D: (B, N, D) → (B, N, N), the teacher token-affinity logits of the `paper` target.
inline Var token_affinity_logits(const Var& tokens) {
  RETIKD_CHECK(tokens.dim() == 3, "token_affinity_logits: tokens ", shape_str(tokens.shape()), " must be (B, N, D)");
  return ops::mul(ops::matmul(tokens, ops::transpose(tokens, 1, 2)),
                  1.0 / std::sqrt(static_cast<double>(tokens.size(2))));
}

// KL(teacher ‖ student) over attention rows, summed over the N×N entries, divided by B (and averaged over the
// H student heads). student (B, H, N, N); teacher (B, N, N) — one map for every head — or (B, H, N, N).
inline Var attention_kl_loss(const Var& student_logits, const Var& teacher_logits, double tau = 1.0) {
  RETIKD_CHECK(student_logits.dim() == 4 && student_logits.size(2) == student_logits.size(3),
               "attention_kl_loss: student logits ", shape_str(student_logits.shape()), " must be (B, H, N, N)");
  const int64_t B = student_logits.size(0), H = student_logits.size(1), N = student_logits.size(2);
  Var t = teacher_logits.detach();
  if (t.dim() == 3) {
    RETIKD_CHECK(t.size(0) == B && t.size(1) == N && t.size(2) == N, "attention_kl_loss: teacher logits ",
                 shape_str(t.shape()), " must be (", B, ", ", N, ", ", N, ") for student ",
                 shape_str(student_logits.shape()));
    t = ops::expand(ops::unsqueeze(t, 1), {B, H, N, N});
  }
  RETIKD_CHECK(t.shape() == student_logits.shape(), "attention_kl_loss: teacher logits ", shape_str(t.shape()),
               " do not match the student's ", shape_str(student_logits.shape()));
  return ops::mul(ops::kl_div(student_logits, t, tau, ops::Reduction::sum), 1.0 / static_cast<double>(B * H));
}

// Mean squared error over every element (the `cakd` attention-logit and V·Vᵀ terms, the GL term).
inline Var feature_mse_loss(const Var& student, const Var& teacher) {
  RETIKD_CHECK(student.shape() == teacher.shape(), "feature_mse_loss: student ", shape_str(student.shape()),
               " and teacher ", shape_str(teacher.shape()), " differ");
  return ops::mse_loss(student, teacher.detach(), ops::Reduction::mean);
}

// ---- weighting -----------------------------------------------------------------------------------------------
// The raw terms of one step; undefined ones are absent from the configuration.
struct KDTerms {
  Var ce;        // classification_loss
  Var logit_kd;  // logit_kd_loss (already × τ²)
  Var pca;       // PartialCrossAttentionProjector loss
  Var gl;        // GroupLinearProjector loss
  Var adv;       // generator loss of the student against the discriminator
};

// The weighted total (see the file comment). Every defined term is logged unweighted in `log` (with
// "kd_ramp" and "total"); a term whose effective weight is 0 is logged but left out of the total, so its
// backward is never run.
inline Var combine_losses(const KDTerms& t, const KDLossWeights& w, double epoch, LossBreakdown* log = nullptr) {
  w.validate();
  const double r = w.ramp(epoch);
  if (log) log->set("total", 0.0);  // first in the listing; filled at the end
  Var total;
  auto add = [&](const Var& term, double weight, const char* name) {
    if (!term.defined()) return;
    if (log) log->set(name, term.item<double>());
    if (weight == 0.0) return;
    Var scaled = ops::mul(term, weight);
    total = total.defined() ? ops::add(total, scaled) : scaled;
  };
  add(t.ce, w.alpha, "ce");
  add(t.logit_kd, w.logit_kd ? r * (1.0 - w.alpha) : 0.0, "logit_kd");
  add(t.pca, r * w.lambda_pca, "pca");
  add(t.gl, r * w.lambda_gl, "gl");
  add(t.adv, r * w.lambda_adv, "adv_g");
  RETIKD_CHECK(total.defined(), "combine_losses: every term has weight 0 (alpha = ", w.alpha, ", ramp = ", r, ")");
  if (log) {
    log->set("kd_ramp", r);
    log->set("total", total.item<double>());
  }
  return total;
}

}  // namespace kd
}  // namespace retikd
