// retikd/kd/losses.hpp — the distillation loss terms and their weighting (DESIGN.md §5, "Total"):
//
//   L = α·CE(y, z_S) + r(e)·[ (1−α)·τ²·KL(softmax(z_T/τ) ‖ softmax(z_S/τ))   (logit KD, optional)
//                             + λ_pca·L_pca + λ_gl·L_gl + λ_adv·L_adv ]
//
// with r(e) the KD warm-up ramp: 0 before `ramp_start_epoch`, rising linearly to `ramp_max` (1) over
// `ramp_epochs` (r = ramp_max from the start epoch on when ramp_epochs = 0). CE is never ramped. Each function below computes one
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
//                                With row_mean the sum is divided by B·H·N instead: the mean KL of one row,
//                                a scale that does not grow with the grid (N = 64 rows weigh 64× in batchmean).
//
// Sample weights. Every KD term can weigh its samples (B), e.g. by the class weight of each sample's label so
// the KD terms are balanced like the class-weighted CE: the term is then Σ_b w_b·ℓ_b / Σ_b w_b, ℓ_b the sample's
// own loss (its KL summed over classes, its attention rows' KL, its mean squared feature error).
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
#include "retikd/ops/reduce.hpp"
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
  double lambda_logit = -1.0;       // >= 0: weight of the logit KD instead of (1 − α) (balanced weights)
  bool kd_class_weighted = false;   // KD terms weigh each sample by its label's class weight (class_weights)
  std::vector<double> class_weights;  // per-class CE weights (empty: unweighted)
  double label_smoothing = 0.0;
  double ramp_start_epoch = 0.0;    // KD terms are off before this (fractional) epoch …
  double ramp_epochs = 0.0;         // … then ramp linearly from 0 to ramp_max over this many epochs
  double ramp_max = 1.0;            // the ramp's ceiling (CAKD's official code: 0.2)

  // r(e) ∈ [0, ramp_max].
  double ramp(double epoch) const {
    if (epoch < ramp_start_epoch) return 0.0;
    if (ramp_epochs <= 0.0) return ramp_max;
    return ramp_max * std::min(1.0, (epoch - ramp_start_epoch) / ramp_epochs);
  }
  void validate() const {
    RETIKD_CHECK(alpha >= 0.0 && alpha <= 1.0, "KDLossWeights: alpha ", alpha, " must be in [0, 1]");
    RETIKD_CHECK(temperature > 0.0, "KDLossWeights: temperature ", temperature, " must be positive");
    RETIKD_CHECK(lambda_pca >= 0 && lambda_gl >= 0 && lambda_adv >= 0, "KDLossWeights: the lambdas must be >= 0");
    RETIKD_CHECK(ramp_epochs >= 0.0 && ramp_max >= 0.0, "KDLossWeights: ramp_epochs and ramp_max must be >= 0");
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

// Σ_b w_b·ℓ_b / Σ_b w_b of per-sample losses ℓ (B); the plain mean when w is undefined.
inline Var weighted_sample_mean(const Var& per_sample, const Tensor& weights) {
  RETIKD_CHECK(per_sample.dim() == 1, "weighted_sample_mean: per-sample losses ", shape_str(per_sample.shape()),
               " must be (B)");
  if (!weights.defined()) return ops::mean(per_sample);
  RETIKD_CHECK(weights.dim() == 1 && weights.size(0) == per_sample.size(0), "weighted_sample_mean: ",
               shape_str(weights.shape()), " weights for ", per_sample.size(0), " samples");
  const Tensor w = weights.to(per_sample.dtype()).to(per_sample.device());
  double total = 0.0;
  for (double v : weights.to(Device::cpu()).to_vector<double>()) total += v;
  RETIKD_CHECK(total > 0, "weighted_sample_mean: the sample weights sum to ", total);
  return ops::mul(ops::sum(ops::mul(per_sample, Var(w, false))), 1.0 / total);
}

// The class weight of each label (B) from per-class weights; undefined when `class_weights` is empty.
inline Tensor sample_weights_from_labels(const Tensor& labels, const std::vector<double>& class_weights) {
  if (class_weights.empty()) return Tensor();
  const auto y = labels.to(Device::cpu()).to_vector<int64_t>();
  std::vector<float> w(y.size());
  for (std::size_t i = 0; i < y.size(); ++i) {
    RETIKD_CHECK(y[i] >= 0 && y[i] < static_cast<int64_t>(class_weights.size()), "sample_weights_from_labels: label ",
                 y[i], " has no class weight");
    w[i] = static_cast<float>(class_weights[static_cast<std::size_t>(y[i])]);
  }
  return Tensor::from_vector(w, {static_cast<int64_t>(w.size())});
}

// Hinton's logit KD: τ²·KL(softmax(z_T/τ) ‖ softmax(z_S/τ)), batchmean (or sample-weighted). Logits (B, classes).
inline Var logit_kd_loss(const Var& student_logits, const Var& teacher_logits, double tau,
                         const Tensor& sample_weights = Tensor()) {
  if (!sample_weights.defined())
    return ops::mul(ops::kl_div(student_logits, teacher_logits.detach(), tau, ops::Reduction::batchmean), tau * tau);
  const Var rows = ops::sum(ops::kl_div(student_logits, teacher_logits.detach(), tau, ops::Reduction::none), {1});
  return ops::mul(weighted_sample_mean(rows, sample_weights), tau * tau);
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
// H student heads) — or, with row_mean, divided by B·H·N (the mean KL per row); sample weights as above.
// student (B, H, N, N); teacher (B, N, N) — one map for every head — or (B, H, N, N).
inline Var attention_kl_loss(const Var& student_logits, const Var& teacher_logits, double tau = 1.0,
                             bool row_mean = false, const Tensor& sample_weights = Tensor()) {
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
  const double rows = row_mean ? static_cast<double>(H * N) : static_cast<double>(H);
  if (!sample_weights.defined())
    return ops::mul(ops::kl_div(student_logits, t, tau, ops::Reduction::sum), 1.0 / (static_cast<double>(B) * rows));
  const Var per_sample = ops::sum(ops::kl_div(student_logits, t, tau, ops::Reduction::none), {1, 2, 3});  // (B)
  return ops::mul(weighted_sample_mean(per_sample, sample_weights), 1.0 / rows);
}

// Mean entropy (nats) of the rows of softmax(logits/τ) over the last dimension — how peaked a target is
// (log N: uniform; 0: one-hot). logits (..., N); computed on the host in float64.
inline double mean_row_entropy(const Tensor& logits, double tau) {
  const Tensor l = logits.to(Device::cpu()).to(DType::float64).contiguous();
  const int64_t N = l.size(-1), rows = l.numel() / N;
  const double* p = l.data<double>();
  double total = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    const double* x = p + r * N;
    double mx = x[0];
    for (int64_t j = 1; j < N; ++j) mx = std::max(mx, x[j]);
    double z = 0.0, s = 0.0;
    for (int64_t j = 0; j < N; ++j) {
      const double e = std::exp((x[j] - mx) / tau);
      z += e;
      s += e * (x[j] - mx) / tau;
    }
    total += std::log(z) - s / z;  // H = log Z − E[x/τ − max/τ]
  }
  return rows > 0 ? total / static_cast<double>(rows) : 0.0;
}

// The temperature τ at which the rows of softmax(logits/τ) have mean entropy `fraction`·log N (bisection on
// log τ over [1e-3, 1e3]; entropy grows with τ). fraction in (0, 1).
inline double temperature_for_entropy(const Tensor& logits, double fraction) {
  RETIKD_CHECK(fraction > 0.0 && fraction < 1.0, "temperature_for_entropy: fraction ", fraction, " must be in (0, 1)");
  const double want = fraction * std::log(static_cast<double>(logits.size(-1)));
  double lo = std::log(1e-3), hi = std::log(1e3);
  for (int it = 0; it < 60; ++it) {
    const double mid = 0.5 * (lo + hi);
    (mean_row_entropy(logits, std::exp(mid)) < want ? lo : hi) = mid;
  }
  return std::exp(0.5 * (lo + hi));
}

// Mean squared error over every element (the `cakd` attention-logit and V·Vᵀ terms, the GL term); with sample
// weights, the weighted mean over samples of each sample's mean squared error.
inline Var feature_mse_loss(const Var& student, const Var& teacher, const Tensor& sample_weights = Tensor()) {
  RETIKD_CHECK(student.shape() == teacher.shape(), "feature_mse_loss: student ", shape_str(student.shape()),
               " and teacher ", shape_str(teacher.shape()), " differ");
  if (!sample_weights.defined()) return ops::mse_loss(student, teacher.detach(), ops::Reduction::mean);
  std::vector<int64_t> rest;
  for (int64_t d = 1; d < student.dim(); ++d) rest.push_back(d);
  const Var per_sample = ops::mean(ops::mse_loss(student, teacher.detach(), ops::Reduction::none), rest);  // (B)
  return weighted_sample_mean(per_sample, sample_weights);
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

// The weighted total (see the file comment). Every defined term is logged unweighted in `log` and as "w_<term>",
// its contribution to the total (with "kd_ramp" and "total"); a term whose effective weight is 0 is logged but
// left out of the total, so its backward is never run.
inline Var combine_losses(const KDTerms& t, const KDLossWeights& w, double epoch, LossBreakdown* log = nullptr) {
  w.validate();
  const double r = w.ramp(epoch);
  if (log) log->set("total", 0.0);  // first in the listing; filled at the end
  Var total;
  auto add = [&](const Var& term, double weight, const char* name) {
    if (!term.defined()) return;
    if (log) {
      const double v = term.item<double>();
      log->set(name, v);
      log->set(std::string("w_") + name, weight * v);  // what entered the total (report panels)
    }
    if (weight == 0.0) return;
    Var scaled = ops::mul(term, weight);
    total = total.defined() ? ops::add(total, scaled) : scaled;
  };
  add(t.ce, w.alpha, "ce");
  add(t.logit_kd, w.logit_kd ? r * (w.lambda_logit >= 0.0 ? w.lambda_logit : 1.0 - w.alpha) : 0.0, "logit_kd");
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
