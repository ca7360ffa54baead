// retikd/ssl/linear_probe.hpp — linear-probe evaluation of a frozen encoder: its pooled features (mean of
// the patch tokens after the final norm, or the CLS token) are extracted once, standardised with the training
// split's statistics, and a multinomial logistic-regression head is fitted on the training split; accuracy and
// macro-F1 on the test split measure how linearly separable the encoder made the classes. This is how the
// I-JEPA encoder is compared with a randomly initialised one.
//
// The head is fitted by full-batch Nesterov-accelerated gradient descent on the (class-weighted) mean
// cross-entropy plus an L2 penalty, until the gradient vanishes: a strongly convex problem, so the result does
// not depend on an initialisation or a batch order, and the step 1/L uses L = λmax(XᵀX/n)/2 + l2 (power
// iteration), which bounds the curvature of softmax regression.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/core/error.hpp"
#include "retikd/core/random.hpp"
#include "retikd/data/loader.hpp"
#include "retikd/metrics/classification.hpp"
#include "retikd/nn/models/vit.hpp"
#include "retikd/ops/reduce.hpp"
#include "retikd/ops/shape.hpp"

namespace retikd {
namespace ssl {

enum class ProbePooling { mean_patch, cls };

inline ProbePooling parse_probe_pooling(const std::string& s) {
  if (s == "mean") return ProbePooling::mean_patch;
  if (s == "cls") return ProbePooling::cls;
  fail("unknown probe pooling '", s, "' (mean, cls)");
}

// Features (n, dim) row-major and their labels.
struct FeatureSet {
  int64_t dim = 0;
  std::vector<double> x;
  std::vector<int64_t> y;
  int64_t size() const { return static_cast<int64_t>(y.size()); }
};

// Pooled features of every image of `loader` (one pass, eval mode, no tape).
inline FeatureSet extract_features(nn::VisionTransformer& vit, data::Loader& loader,
                                   ProbePooling pooling = ProbePooling::mean_patch) {
  const int64_t P = vit.num_prefix_tokens();
  RETIKD_CHECK(pooling != ProbePooling::cls || P > 0, "extract_features: the ViT has no CLS token; use mean pooling");
  const bool was_training = vit.is_training();
  vit.eval();
  NoGradGuard no_grad;
  FeatureSet f;
  f.dim = vit.config().embed_dim;
  loader.start_epoch(0);
  data::Batch b;
  while (loader.next(b)) {
    Var t = vit.forward_features(Var(b.images));  // (B, P + N, D)
    Var pooled = pooling == ProbePooling::cls ? ops::squeeze(ops::narrow(t, 1, 0, 1), 1)
                                              : ops::mean(ops::narrow(t, 1, P, t.size(1) - P), {1});  // (B, D)
    const auto v = pooled.value().to_vector<double>();
    f.x.insert(f.x.end(), v.begin(), v.end());
    const auto y = b.labels.to_vector<int64_t>();
    f.y.insert(f.y.end(), y.begin(), y.end());
  }
  vit.train(was_training);
  return f;
}

// The fit runs until the objective's gradient norm falls to `tolerance` (at most `iterations` steps): a probe
// has to be fitted to convergence, or it measures how fast gradient descent moves on each encoder's features
// (their conditioning) instead of how separable they are. Session 3's fixed 500 steps left 192-d ViT-Tiny
// features underfitted (training accuracy 0.60 / 0.68 against 0.65 / 0.72 at ‖∇‖ ≈ 4e-6 after 50,000 steps).
// With the L2 penalty λ the objective is λ-strongly convex, so ‖∇‖ ≤ 1e-5 puts the weights within 1e-5 / λ
// (0.01 at λ = 1e-3) of the optimum.
struct LogisticRegressionOptions {
  int64_t iterations = 50000;     // cap
  double tolerance = 1e-5;        // stop when ‖∇‖₂ of the mean objective is at or below this
  double l2 = 1e-3;               // penalty on the weights (not the bias), per the mean loss
  bool balanced = true;           // class weights n / (C · n_c): the classes count equally (macro-F1)
};

// A fitted head: logits = W · standardise(x) + b.
struct LogisticRegression {
  int64_t classes = 0, dim = 0;
  std::vector<double> mean, inv_std;  // standardisation (dim)
  std::vector<double> w, b;           // (classes, dim), (classes)
  double final_loss = 0;              // training objective at the end
  int64_t iterations = 0;             // steps taken
  double grad_norm = 0;               // ‖∇‖₂ at the last step's look-ahead point
  bool converged = false;             // grad_norm ≤ tolerance before the cap

  std::vector<double> logits(const FeatureSet& f) const {
    RETIKD_CHECK(f.dim == dim, "LogisticRegression: features of dim ", f.dim, ", fitted on ", dim);
    std::vector<double> out(static_cast<std::size_t>(f.size() * classes));
    std::vector<double> z(static_cast<std::size_t>(dim));
    for (int64_t i = 0; i < f.size(); ++i) {
      for (int64_t d = 0; d < dim; ++d)
        z[static_cast<std::size_t>(d)] = (f.x[static_cast<std::size_t>(i * dim + d)] - mean[static_cast<std::size_t>(d)]) *
                                         inv_std[static_cast<std::size_t>(d)];
      for (int64_t c = 0; c < classes; ++c) {
        double s = b[static_cast<std::size_t>(c)];
        const double* wc = w.data() + c * dim;
        for (int64_t d = 0; d < dim; ++d) s += wc[d] * z[static_cast<std::size_t>(d)];
        out[static_cast<std::size_t>(i * classes + c)] = s;
      }
    }
    return out;
  }
};

inline LogisticRegression fit_logistic_regression(const FeatureSet& train, int64_t classes,
                                                  const LogisticRegressionOptions& o = {}) {
  const int64_t n = train.size(), D = train.dim, C = classes;
  RETIKD_CHECK(n > 0 && D > 0 && C >= 2, "fit_logistic_regression: ", n, " samples of dim ", D, " and ", C,
               " classes (need samples, features and at least 2 classes)");
  RETIKD_CHECK(static_cast<int64_t>(train.x.size()) == n * D, "fit_logistic_regression: ", train.x.size(),
               " feature values for ", n, " x ", D);
  RETIKD_CHECK(o.iterations >= 1 && o.l2 >= 0 && o.tolerance >= 0, "fit_logistic_regression: iterations ",
               o.iterations, ", tolerance ", o.tolerance, " and l2 ", o.l2);
  for (int64_t y : train.y) RETIKD_CHECK(y >= 0 && y < C, "fit_logistic_regression: label ", y, " outside [0, ", C, ")");
  LogisticRegression m;
  m.classes = C;
  m.dim = D;
  m.mean.assign(static_cast<std::size_t>(D), 0.0);
  m.inv_std.assign(static_cast<std::size_t>(D), 1.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t d = 0; d < D; ++d) m.mean[static_cast<std::size_t>(d)] += train.x[static_cast<std::size_t>(i * D + d)];
  for (auto& v : m.mean) v /= static_cast<double>(n);
  std::vector<double> var(static_cast<std::size_t>(D), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t d = 0; d < D; ++d) {
      const double e = train.x[static_cast<std::size_t>(i * D + d)] - m.mean[static_cast<std::size_t>(d)];
      var[static_cast<std::size_t>(d)] += e * e;
    }
  for (int64_t d = 0; d < D; ++d) {
    const double sd = std::sqrt(var[static_cast<std::size_t>(d)] / static_cast<double>(n));
    m.inv_std[static_cast<std::size_t>(d)] = sd > 1e-12 ? 1.0 / sd : 0.0;  // a constant feature carries nothing
  }
  std::vector<double> z(static_cast<std::size_t>(n * D));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t d = 0; d < D; ++d)
      z[static_cast<std::size_t>(i * D + d)] =
          (train.x[static_cast<std::size_t>(i * D + d)] - m.mean[static_cast<std::size_t>(d)]) * m.inv_std[static_cast<std::size_t>(d)];

  std::vector<double> sw(static_cast<std::size_t>(n), 1.0);  // sample weights, mean 1
  if (o.balanced) {
    std::vector<int64_t> count(static_cast<std::size_t>(C), 0);
    for (int64_t y : train.y) ++count[static_cast<std::size_t>(y)];
    int64_t present = 0;
    for (auto c : count) present += c > 0 ? 1 : 0;
    for (int64_t i = 0; i < n; ++i)
      sw[static_cast<std::size_t>(i)] = static_cast<double>(n) /
                                        (static_cast<double>(present) * static_cast<double>(count[static_cast<std::size_t>(train.y[static_cast<std::size_t>(i)])]));
  }

  // λmax(ZᵀZ/n) by power iteration (a fixed start: deterministic).
  std::vector<double> v(static_cast<std::size_t>(D), 1.0 / std::sqrt(static_cast<double>(D))), u(static_cast<std::size_t>(D));
  double lambda = 1.0;
  for (int it = 0; it < 50; ++it) {
    std::fill(u.begin(), u.end(), 0.0);
    for (int64_t i = 0; i < n; ++i) {
      const double* zi = z.data() + i * D;
      double s = 0;
      for (int64_t d = 0; d < D; ++d) s += zi[d] * v[static_cast<std::size_t>(d)];
      for (int64_t d = 0; d < D; ++d) u[static_cast<std::size_t>(d)] += s * zi[d];
    }
    double norm = 0;
    for (auto& e : u) norm += e * e;
    norm = std::sqrt(norm);
    if (norm == 0) break;
    lambda = norm / static_cast<double>(n);
    for (int64_t d = 0; d < D; ++d) v[static_cast<std::size_t>(d)] = u[static_cast<std::size_t>(d)] / norm;
  }
  double max_w = 0;
  for (double e : sw) max_w = std::max(max_w, e);
  // The intercept adds a constant-1 feature: its curvature bound is at most λmax + 1.
  const double L = 0.5 * max_w * (lambda + 1.0) + o.l2;
  const double step = 1.0 / L;

  const std::size_t P = static_cast<std::size_t>(C * D + C);  // W then b
  std::vector<double> theta(P, 0.0), prev(P, 0.0), look(P), grad(P);
  std::vector<double> logit(static_cast<std::size_t>(C));
  auto objective_and_grad = [&](const std::vector<double>& th, std::vector<double>* g) {
    if (g) std::fill(g->begin(), g->end(), 0.0);
    double loss = 0;
    const double* W = th.data();
    const double* bb = th.data() + C * D;
    for (int64_t i = 0; i < n; ++i) {
      const double* zi = z.data() + i * D;
      double mx = -1e300;
      for (int64_t c = 0; c < C; ++c) {
        double s = bb[c];
        for (int64_t d = 0; d < D; ++d) s += W[c * D + d] * zi[d];
        logit[static_cast<std::size_t>(c)] = s;
        mx = std::max(mx, s);
      }
      double se = 0;
      for (int64_t c = 0; c < C; ++c) se += std::exp(logit[static_cast<std::size_t>(c)] - mx);
      const int64_t y = train.y[static_cast<std::size_t>(i)];
      const double wi = sw[static_cast<std::size_t>(i)] / static_cast<double>(n);
      loss += wi * (mx + std::log(se) - logit[static_cast<std::size_t>(y)]);
      if (!g) continue;
      for (int64_t c = 0; c < C; ++c) {
        const double p = std::exp(logit[static_cast<std::size_t>(c)] - mx) / se;
        const double r = wi * (p - (c == y ? 1.0 : 0.0));
        double* gw = g->data() + c * D;
        for (int64_t d = 0; d < D; ++d) gw[d] += r * zi[d];
        (*g)[static_cast<std::size_t>(C * D + c)] += r;
      }
    }
    for (int64_t k = 0; k < C * D; ++k) {
      loss += 0.5 * o.l2 * th[static_cast<std::size_t>(k)] * th[static_cast<std::size_t>(k)];
      if (g) (*g)[static_cast<std::size_t>(k)] += o.l2 * th[static_cast<std::size_t>(k)];
    }
    return loss;
  };
  for (int64_t it = 0; it < o.iterations; ++it) {
    const double beta = static_cast<double>(it) / static_cast<double>(it + 3);  // Nesterov's momentum
    for (std::size_t k = 0; k < P; ++k) look[k] = theta[k] + beta * (theta[k] - prev[k]);
    objective_and_grad(look, &grad);
    double g2 = 0;
    for (double e : grad) g2 += e * e;
    m.grad_norm = std::sqrt(g2);
    m.iterations = it + 1;
    if (m.grad_norm <= o.tolerance) {  // the look-ahead point is (numerically) the optimum: take it
      theta = look;
      m.converged = true;
      break;
    }
    prev = theta;
    for (std::size_t k = 0; k < P; ++k) theta[k] = look[k] - step * grad[k];
  }
  m.final_loss = objective_and_grad(theta, nullptr);
  m.w.assign(theta.begin(), theta.begin() + static_cast<std::ptrdiff_t>(C * D));
  m.b.assign(theta.begin() + static_cast<std::ptrdiff_t>(C * D), theta.end());
  return m;
}

struct LinearProbeResult {
  metrics::ClassificationResult train, test;
  double final_loss = 0;
  int64_t iterations = 0;
  double grad_norm = 0;
  bool converged = false;
};

// Fits the head on `train` features and evaluates it on both splits.
inline LinearProbeResult linear_probe(const FeatureSet& train, const FeatureSet& test, int64_t classes,
                                      const LogisticRegressionOptions& o = {},
                                      const std::vector<std::string>& class_names = {}) {
  const LogisticRegression m = fit_logistic_regression(train, classes, o);
  LinearProbeResult r;
  r.final_loss = m.final_loss;
  r.iterations = m.iterations;
  r.grad_norm = m.grad_norm;
  r.converged = m.converged;
  r.train = metrics::evaluate_classification(train.y, m.logits(train), classes, metrics::ScoreKind::logits, class_names);
  r.test = metrics::evaluate_classification(test.y, m.logits(test), classes, metrics::ScoreKind::logits, class_names);
  return r;
}

}  // namespace ssl
}  // namespace retikd
