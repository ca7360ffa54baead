// tests/test_kd.cpp — the distillation components of kd/: the cross-replacement hash and op, the loss terms,
// both projectors (every target, grouping and grid alignment) against loops written here, gradient checks
// (float64 central differences) through both projectors and the discriminator, the adversarial game on a toy
// problem, the multi-view generator, the teacher cache and a few CrossArchitectureDistiller steps with the
// smoke preset.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "retikd/kd.hpp"
#include "test_util.hpp"

using namespace retikd;
using namespace retikd::kd;
using namespace retikd::test;

namespace {

Tensor rand32(const Shape& s, uint64_t seed) {
  Generator g(seed);
  Tensor t = Tensor::empty(s, DType::float32);
  return uniform_(t, 0.0, 1.0, g);
}

double softplus(double x) { return std::max(x, 0.0) + std::log1p(std::exp(-std::fabs(x))); }
// BCE with logits against a constant target, mean over rows.
double bce_mean(const std::vector<double>& z, double y) {
  double s = 0.0;
  for (double v : z) s += (1 - y) * v + softplus(-v);
  return s / static_cast<double>(z.size());
}
double lrelu(double x) { return x > 0 ? x : 0.2 * x; }

// Row-wise softmax of m[r][0..n).
std::vector<double> softmax_row(const std::vector<double>& row, double tau) {
  double mx = -1e300;
  for (double v : row) mx = std::max(mx, v / tau);
  double s = 0.0;
  std::vector<double> p(row.size());
  for (std::size_t i = 0; i < row.size(); ++i) s += (p[i] = std::exp(row[i] / tau - mx));
  for (double& v : p) v /= s;
  return p;
}

}  // namespace

// ---- cross mask -----------------------------------------------------------------------------------------------

TEST_CASE("cross mask hash: exact at p = 0 and 1, about p in between, deterministic, varies with step and stream") {
  CHECK(cross_mask_threshold(0.0) == 0u);
  CHECK(cross_mask_threshold(1.0) == 4294967296ULL);
  CHECK(cross_mask_threshold(0.5) == 2147483648ULL);
  const uint64_t key = cross_mask_key(7, 3, kCrossMaskQ);
  int64_t none = 0, all = 0, half = 0, same = 0, diff_step = 0, diff_stream = 0;
  const int64_t n = 200000;
  const uint64_t key_step = cross_mask_key(7, 4, kCrossMaskQ), key_stream = cross_mask_key(7, 3, kCrossMaskK);
  const uint64_t thr = cross_mask_threshold(0.5);
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t u = static_cast<uint64_t>(i);
    none += cross_mask_replaced(key, u, 0) ? 1 : 0;
    all += cross_mask_replaced(key, u, cross_mask_threshold(1.0)) ? 1 : 0;
    const bool r = cross_mask_replaced(key, u, thr);
    half += r ? 1 : 0;
    same += r == cross_mask_replaced(cross_mask_key(7, 3, kCrossMaskQ), u, thr) ? 1 : 0;
    diff_step += r != cross_mask_replaced(key_step, u, thr) ? 1 : 0;
    diff_stream += r != cross_mask_replaced(key_stream, u, thr) ? 1 : 0;
  }
  CHECK(none == 0);
  CHECK(all == n);
  CHECK(std::fabs(static_cast<double>(half) / n - 0.5) < 0.01);
  CHECK(same == n);
  // independent masks disagree on about half the elements
  CHECK(std::fabs(static_cast<double>(diff_step) / n - 0.5) < 0.01);
  CHECK(std::fabs(static_cast<double>(diff_stream) / n - 0.5) < 0.01);
  // p = 0.2 replaces about 20 %
  CHECK(std::fabs(static_cast<double>(cross_replaced_count(n, {0.2, 1, 0, kCrossMaskV})) / n - 0.2) < 0.01);
}

TEST_CASE("partial_cross_replace: p = 0 identity, p = 1 the teacher, p = 0.5 about half, per the hash") {
  const Shape s{4, 3, 50, 20};  // 12000 elements
  Var st(randn32(s, 1), true), te(randn32(s, 2));
  const auto sv = st.value().to_vector<float>(), tv = te.value().to_vector<float>();

  Var o0 = partial_cross_replace(st, te, {0.0, 9, 1, kCrossMaskQ});
  CHECK(o0.value().to_vector<float>() == sv);
  Var o1 = partial_cross_replace(st, te, {1.0, 9, 1, kCrossMaskQ});
  CHECK(o1.value().to_vector<float>() == tv);

  const CrossMaskSpec m{0.5, 9, 1, kCrossMaskK};
  Var oh = partial_cross_replace(st, te, m);
  const auto ov = oh.value().to_vector<float>();
  const uint64_t key = cross_mask_key(9, 1, kCrossMaskK), thr = cross_mask_threshold(0.5);
  int64_t replaced = 0, wrong = 0;
  for (std::size_t i = 0; i < ov.size(); ++i) {
    const bool r = cross_mask_replaced(key, i, thr);
    replaced += r ? 1 : 0;
    wrong += ov[i] != (r ? tv[i] : sv[i]) ? 1 : 0;
  }
  CHECK(wrong == 0);
  CHECK(std::fabs(static_cast<double>(replaced) / 12000.0 - 0.5) < 0.02);
  CHECK(replaced == cross_replaced_count(12000, m));

  // deterministic for a seed; another step (or seed) gives another mask
  CHECK(partial_cross_replace(st, te, m).value().to_vector<float>() == ov);
  CHECK(partial_cross_replace(st, te, {0.5, 9, 2, kCrossMaskK}).value().to_vector<float>() != ov);
  CHECK(partial_cross_replace(st, te, {0.5, 10, 1, kCrossMaskK}).value().to_vector<float>() != ov);
}

TEST_CASE("partial_cross_replace: no gradient reaches replaced student elements; the teacher gets the rest") {
  const Shape s{2, 2, 6, 5};
  Var st(randn64(s, 3), true), te(randn64(s, 4), true);
  const CrossMaskSpec m{0.5, 11, 5, kCrossMaskV};
  Var out = partial_cross_replace(st, te, m);
  Tensor w = randn64(s, 5);
  out.backward(w);
  const auto gs = st.grad().to_vector<double>(), gt = te.grad().to_vector<double>(), wv = w.to_vector<double>();
  const uint64_t key = cross_mask_key(11, 5, kCrossMaskV), thr = cross_mask_threshold(0.5);
  int64_t bad = 0, n_rep = 0;
  for (std::size_t i = 0; i < gs.size(); ++i) {
    const bool r = cross_mask_replaced(key, i, thr);
    n_rep += r;
    bad += (r ? (gs[i] != 0.0 || gt[i] != wv[i]) : (gs[i] != wv[i] || gt[i] != 0.0)) ? 1 : 0;
  }
  CHECK(bad == 0);
  CHECK(n_rep > 0);
  CHECK(n_rep < static_cast<int64_t>(gs.size()));
  check_grad([&](const std::vector<Var>& v) { return partial_cross_replace(v[0], v[1], m); },
             {randn64(s, 6), randn64(s, 7)});
}

TEST_CASE("partial_cross_replace: mismatched shapes with p > 0 throw") {
  Var a(randn32({1, 2, 4, 8}, 1)), b(randn32({1, 3, 4, 8}, 2));
  CHECK_THROWS_AS(partial_cross_replace(a, b, {0.5, 1, 0, kCrossMaskQ}), Error);
  CHECK_THROWS_AS(partial_cross_replace(a, b, {0.0, 1, 0, kCrossMaskQ}), Error);
}

// ---- loss terms -------------------------------------------------------------------------------------------------

TEST_CASE("attention helpers and attention_kl_loss against loops") {
  const int64_t B = 2, H = 3, N = 4, d = 5, D = 6;
  const double tau = 1.7;
  Tensor q = randn64({B, H, N, d}, 1), k = randn64({B, H, N, d}, 2), t = randn64({B, N, D}, 3);
  Var a = attention_logits(Var(q), Var(k));
  Var z = token_affinity_logits(Var(t));
  Var r = value_relation(Var(q));
  std::vector<double> ea, ez, er;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < N; ++i)
        for (int64_t j = 0; j < N; ++j) {
          double s = 0, s2 = 0;
          for (int64_t e = 0; e < d; ++e) {
            s += q.at({b, h, i, e}) * k.at({b, h, j, e});
            s2 += q.at({b, h, i, e}) * q.at({b, h, j, e});
          }
          ea.push_back(s / std::sqrt(double(d)));
          er.push_back(s2 / std::sqrt(double(d)));
        }
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < N; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double s = 0;
        for (int64_t e = 0; e < D; ++e) s += t.at({b, i, e}) * t.at({b, j, e});
        ez.push_back(s / std::sqrt(double(D)));
      }
  check_close(a.value(), ea, 1e-12, 1e-12);
  check_close(r.value(), er, 1e-12, 1e-12);
  check_close(z.value(), ez, 1e-12, 1e-12);

  // KL(teacher ‖ student), summed over N×N, divided by B (and by H: the mean over heads)
  double kl = 0.0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < N; ++i) {
        std::vector<double> srow, trow;
        for (int64_t j = 0; j < N; ++j) {
          srow.push_back(ea[static_cast<std::size_t>(((b * H + h) * N + i) * N + j)]);
          trow.push_back(ez[static_cast<std::size_t>((b * N + i) * N + j)]);
        }
        const auto p = softmax_row(trow, tau), qq = softmax_row(srow, tau);
        for (int64_t j = 0; j < N; ++j) kl += p[j] * (std::log(p[j]) - std::log(qq[j]));
      }
  check_scalar(attention_kl_loss(a, z, tau), kl / double(B * H), 1e-12, 1e-12);
  // one head: exactly PyTorch's batchmean (÷ B), not a per-row mean
  Var a1 = ops::narrow(a, 1, 0, 1);
  double kl1 = 0.0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < N; ++i) {
      std::vector<double> srow, trow;
      for (int64_t j = 0; j < N; ++j) {
        srow.push_back(ea[static_cast<std::size_t>(((b * H) * N + i) * N + j)]);
        trow.push_back(ez[static_cast<std::size_t>((b * N + i) * N + j)]);
      }
      const auto p = softmax_row(trow, tau), qq = softmax_row(srow, tau);
      for (int64_t j = 0; j < N; ++j) kl1 += p[j] * (std::log(p[j]) - std::log(qq[j]));
    }
  check_scalar(attention_kl_loss(a1, z, tau), kl1 / double(B), 1e-12, 1e-12);
  check_grad([&](const std::vector<Var>& v) { return attention_kl_loss(attention_logits(v[0], v[1]), z, tau); },
             {q, k});
}

TEST_CASE("classification_loss (class weights), logit_kd_loss (τ²) and feature_mse_loss against loops") {
  const int64_t B = 3, C = 4;
  Tensor zs = randn64({B, C}, 1), zt = randn64({B, C}, 2);
  Tensor y = Tensor::from_vector(std::vector<int64_t>{2, 0, 3}, {B});
  KDLossWeights w;
  w.class_weights = {1.0, 2.0, 0.5, 3.0};
  double num = 0, den = 0;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<double> row;
    for (int64_t c = 0; c < C; ++c) row.push_back(zs.at({b, c}));
    const auto p = softmax_row(row, 1.0);
    const int64_t t = y.to_vector<int64_t>()[static_cast<std::size_t>(b)];
    num += -w.class_weights[static_cast<std::size_t>(t)] * std::log(p[static_cast<std::size_t>(t)]);
    den += w.class_weights[static_cast<std::size_t>(t)];
  }
  check_scalar(classification_loss(Var(zs), y, w), num / den, 1e-12, 1e-12);

  const double tau = 3.0;
  double kl = 0.0;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<double> sr, tr;
    for (int64_t c = 0; c < C; ++c) {
      sr.push_back(zs.at({b, c}));
      tr.push_back(zt.at({b, c}));
    }
    const auto p = softmax_row(tr, tau), q = softmax_row(sr, tau);
    for (int64_t c = 0; c < C; ++c) kl += p[c] * std::log(p[c] / q[c]);
  }
  check_scalar(logit_kd_loss(Var(zs), Var(zt), tau), tau * tau * kl / B, 1e-12, 1e-12);

  Tensor a = randn64({2, 3, 4}, 3), b = randn64({2, 3, 4}, 4);
  double mse = 0;
  const auto av = a.to_vector<double>(), bv = b.to_vector<double>();
  for (std::size_t i = 0; i < av.size(); ++i) mse += (av[i] - bv[i]) * (av[i] - bv[i]);
  check_scalar(feature_mse_loss(Var(a), Var(b)), mse / double(av.size()), 1e-12, 1e-12);
}

TEST_CASE("KD ramp and combine_losses: weights, ramp, zero-weight terms left out of the backward") {
  KDLossWeights w;
  w.ramp_start_epoch = 2.0;
  w.ramp_epochs = 4.0;
  CHECK(w.ramp(0.0) == 0.0);
  CHECK(w.ramp(1.99) == 0.0);
  CHECK(w.ramp(2.0) == 0.0);
  CHECK(w.ramp(3.0) == doctest::Approx(0.25));
  CHECK(w.ramp(6.0) == 1.0);
  CHECK(w.ramp(60.0) == 1.0);
  KDLossWeights step;
  step.ramp_start_epoch = 5.0;
  CHECK(step.ramp(4.9) == 0.0);
  CHECK(step.ramp(5.0) == 1.0);

  w.alpha = 0.3;
  w.logit_kd = true;
  w.lambda_pca = 0.7;
  w.lambda_gl = 0.07;
  w.lambda_adv = 0.0;
  Var ce(Tensor::scalar(1.5, DType::float64), true), kd(Tensor::scalar(2.0, DType::float64), true),
      pca(Tensor::scalar(3.0, DType::float64), true), gl(Tensor::scalar(4.0, DType::float64), true),
      adv(Tensor::scalar(5.0, DType::float64), true);
  KDTerms t{ce, kd, pca, gl, adv};
  LossBreakdown log;
  Var total = combine_losses(t, w, 3.0, &log);  // r = 0.25
  const double r = 0.25;
  check_scalar(total, 0.3 * 1.5 + r * (0.7 * 2.0 + 0.7 * 3.0 + 0.07 * 4.0), 1e-12, 1e-12);
  CHECK(log.get("total") == doctest::Approx(total.item<double>()));
  CHECK(log.get("adv_g") == 5.0);
  CHECK(log.get("kd_ramp") == 0.25);
  CHECK(log.terms.front().first == "total");
  total.backward();
  CHECK(ce.grad().item<double>() == doctest::Approx(0.3));
  CHECK(pca.grad().item<double>() == doctest::Approx(r * 0.7));
  CHECK_FALSE(adv.grad().defined());  // weight 0: never reached
  Var before = combine_losses(t, w, 0.0);
  check_scalar(before, 0.3 * 1.5, 1e-12, 1e-12);  // CE is never ramped
}

// ---- PCA projector ------------------------------------------------------------------------------------------------

namespace {

// Conv 3×3 (pad 1) of S (B, C, h, w) with W (O, C, 3, 3), b (O): Y[b][o][y][x].
std::vector<double> conv3x3_loops(const Tensor& S, const Tensor& W, const Tensor& bias) {
  const int64_t B = S.size(0), C = S.size(1), h = S.size(2), w = S.size(3), O = W.size(0);
  std::vector<double> Y(static_cast<std::size_t>(B * O * h * w));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) {
          double s = bias.at({o});
          for (int64_t c = 0; c < C; ++c)
            for (int64_t ky = 0; ky < 3; ++ky)
              for (int64_t kx = 0; kx < 3; ++kx) {
                const int64_t yy = y + ky - 1, xx = x + kx - 1;
                if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
                s += W.at({o, c, ky, kx}) * S.at({b, c, yy, xx});
              }
          Y[static_cast<std::size_t>(((b * O + o) * h + y) * w + x)] = s;
        }
  return Y;
}

// A TeacherFeatures from raw tensors (float64), prefix 1.
TeacherFeatures teacher_from(const Tensor& tokens, int64_t gh, int64_t gw, const Tensor& q = Tensor(),
                             const Tensor& k = Tensor(), const Tensor& v = Tensor()) {
  TeacherFeatures t;
  t.tokens = Var(tokens);
  if (q.defined()) t.q = Var(q);
  if (k.defined()) t.k = Var(k);
  if (v.defined()) t.v = Var(v);
  t.prefix = 1;
  t.grid_h = gh;
  t.grid_w = gw;
  return t;
}

}  // namespace

TEST_CASE("PCA projector, paper target (conv 3×3): token-affinity KL against loops") {
  const int64_t B = 2, C = 3, h = 3, w = 3, N = 9, H = 2, d = 2, D = 4;
  const double tau = 1.5;
  Generator gen(5);
  PcaConfig cfg;
  cfg.target = PcaTarget::paper;
  cfg.projection = QkvProjection::conv3x3;
  cfg.in_channels = C;
  cfg.heads = H;
  cfg.head_dim = d;
  cfg.temperature = tau;
  cfg.align = GridAlign::student_at_teacher_grid;
  PartialCrossAttentionProjector proj(cfg, gen);
  proj.to(DType::float64);
  CHECK(proj.qkv_conv->weight.shape() == Shape{2 * H * d, C, 3, 3});
  CHECK_FALSE(proj.needs_teacher_qkv());
  Tensor S = randn64({B, C, h, w}, 1), T = randn64({B, 1 + N, D}, 2);
  PcaResult r = proj.forward(Var(S), teacher_from(T, h, w), 0);

  const auto Y = conv3x3_loops(S, proj.qkv_conv->weight.value(), proj.qkv_conv->bias.value());
  const int64_t O = 2 * H * d;
  auto q = [&](int64_t b, int64_t hh, int64_t n, int64_t j) { return Y[static_cast<std::size_t>((b * O + hh * d + j) * N + n)]; };
  auto k = [&](int64_t b, int64_t hh, int64_t n, int64_t j) { return Y[static_cast<std::size_t>((b * O + H * d + hh * d + j) * N + n)]; };
  double kl = 0.0;
  std::vector<double> es;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t hh = 0; hh < H; ++hh)
      for (int64_t i = 0; i < N; ++i) {
        std::vector<double> srow, trow;
        for (int64_t j = 0; j < N; ++j) {
          double s = 0, t = 0;
          for (int64_t e = 0; e < d; ++e) s += q(b, hh, i, e) * k(b, hh, j, e);
          for (int64_t e = 0; e < D; ++e) t += T.at({b, 1 + i, e}) * T.at({b, 1 + j, e});  // CLS (token 0) removed
          srow.push_back(s / std::sqrt(double(d)));
          trow.push_back(t / std::sqrt(double(D)));
          es.push_back(srow.back());
        }
        const auto p = softmax_row(trow, tau), qq = softmax_row(srow, tau);
        for (int64_t j = 0; j < N; ++j) kl += p[j] * std::log(p[j] / qq[j]);
      }
  check_close(r.student_logits.value(), es, 1e-10, 1e-10);
  check_scalar(r.loss, kl / double(B * H), 1e-10, 1e-10);
  CHECK_FALSE(r.vv.defined());

  // gradient through the projector: student features, conv weight and bias
  const TeacherFeatures tf = teacher_from(T, h, w);
  check_grad(
      [&](const std::vector<Var>& v) {
        proj.qkv_conv->weight = v[1];
        proj.qkv_conv->bias = v[2];
        return proj.forward(v[0], tf, 0).loss;
      },
      {S, randn64({O, C, 3, 3}, 7, 0.3), randn64({O}, 8, 0.3)});
}

TEST_CASE("PCA projector, cakd target (linear): attention-logit MSE and V·Vᵀ MSE against loops") {
  const int64_t B = 2, C = 3, h = 2, w = 3, N = 6, H = 2, d = 3;
  Generator gen(6);
  PcaConfig cfg;
  cfg.target = PcaTarget::cakd;
  cfg.projection = QkvProjection::linear;
  cfg.in_channels = C;
  cfg.heads = H;
  cfg.head_dim = d;
  cfg.attn_weight = 0.3;
  cfg.vv_weight = 0.7;
  cfg.align = GridAlign::student_at_teacher_grid;
  PartialCrossAttentionProjector proj(cfg, gen);
  proj.to(DType::float64);
  CHECK(proj.qkv_linear->weight.shape() == Shape{3 * H * d, C});
  Tensor S = randn64({B, C, h, w}, 1), T = randn64({B, 1 + N, 4}, 2);
  Tensor tq = randn64({B, H, 1 + N, d}, 3), tk = randn64({B, H, 1 + N, d}, 4), tv = randn64({B, H, 1 + N, d}, 5);
  PcaResult r = proj.forward(Var(S), teacher_from(T, h, w, tq, tk, tv), 0);

  const Tensor& W = proj.qkv_linear->weight.value();
  const Tensor& bias = proj.qkv_linear->bias.value();
  auto proj_el = [&](int64_t b, int64_t s, int64_t hh, int64_t n, int64_t j) {
    const int64_t o = s * H * d + hh * d + j;
    double v = bias.at({o});
    for (int64_t c = 0; c < C; ++c) v += W.at({o, c}) * S.at({b, c, n / w, n % w});
    return v;
  };
  double attn = 0, vv = 0;
  const double sd = std::sqrt(double(d));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t hh = 0; hh < H; ++hh)
      for (int64_t i = 0; i < N; ++i)
        for (int64_t j = 0; j < N; ++j) {
          double as = 0, at = 0, rs = 0, rt = 0;
          for (int64_t e = 0; e < d; ++e) {
            as += proj_el(b, 0, hh, i, e) * proj_el(b, 1, hh, j, e);
            rs += proj_el(b, 2, hh, i, e) * proj_el(b, 2, hh, j, e);
            at += tq.at({b, hh, 1 + i, e}) * tk.at({b, hh, 1 + j, e});
            rt += tv.at({b, hh, 1 + i, e}) * tv.at({b, hh, 1 + j, e});
          }
          attn += std::pow((as - at) / sd, 2);
          vv += std::pow((rs - rt) / sd, 2);
        }
  const double M = double(B * H * N * N);
  check_scalar(r.attn, attn / M, 1e-10, 1e-10);
  check_scalar(r.vv, vv / M, 1e-10, 1e-10);
  check_scalar(r.loss, 0.3 * attn / M + 0.7 * vv / M, 1e-10, 1e-10);

  const TeacherFeatures tf = teacher_from(T, h, w, tq, tk, tv);
  check_grad(
      [&](const std::vector<Var>& v) {
        proj.qkv_linear->weight = v[1];
        proj.qkv_linear->bias = v[2];
        return proj.forward(v[0], tf, 0).loss;
      },
      {S, randn64({3 * H * d, C}, 7, 0.4), randn64({3 * H * d}, 8, 0.4)});
}

TEST_CASE("PCA projector: partial cross replacement in the projector (p = 1 copies the teacher, gradcheck at p = 0.5)") {
  const int64_t B = 2, C = 4, h = 2, w = 2, N = 4, H = 2, d = 2;
  Generator gen(7);
  PcaConfig cfg;
  cfg.target = PcaTarget::cakd;
  cfg.projection = QkvProjection::conv3x3;
  cfg.in_channels = C;
  cfg.heads = H;
  cfg.head_dim = d;
  cfg.cross_prob = 1.0;
  cfg.align = GridAlign::student_at_teacher_grid;
  PartialCrossAttentionProjector proj(cfg, gen);
  proj.to(DType::float64);
  Tensor S = randn64({B, C, h, w}, 1), T = randn64({B, 1 + N, 4}, 2);
  Tensor tq = randn64({B, H, 1 + N, d}, 3), tk = randn64({B, H, 1 + N, d}, 4), tv = randn64({B, H, 1 + N, d}, 5);
  const TeacherFeatures tf = teacher_from(T, h, w, tq, tk, tv);
  proj.train(true);
  PcaResult all = proj.forward(Var(S), tf, 3);
  CHECK(all.loss.item<double>() == 0.0);  // every element of Q, K, V is the teacher's
  proj.eval();                            // no replacement in eval mode
  CHECK(proj.forward(Var(S), tf, 3).loss.item<double>() > 1e-3);

  // p = 0.5: the loss depends on the step's mask; the gradient (zero through replaced entries) checks out
  PcaConfig half = cfg;
  half.cross_prob = 0.5;
  PartialCrossAttentionProjector ph(half, gen);
  ph.to(DType::float64);
  const double l3 = ph.forward(Var(S), tf, 3).loss.item<double>();
  CHECK(ph.forward(Var(S), tf, 3).loss.item<double>() == l3);  // deterministic
  CHECK(ph.forward(Var(S), tf, 4).loss.item<double>() != l3);  // another step, another mask
  check_grad(
      [&](const std::vector<Var>& v) {
        ph.qkv_conv->weight = v[1];
        return ph.forward(v[0], tf, 3).loss;
      },
      {S, randn64({3 * H * d, C, 3, 3}, 9, 0.3)});
}

TEST_CASE("PCA projector: p > 0 with student and teacher Q/K/V of different shapes is rejected") {
  Generator gen(8);
  PcaConfig cfg;
  cfg.target = PcaTarget::paper;
  cfg.in_channels = 4;
  cfg.heads = 1;
  cfg.head_dim = 8;
  cfg.cross_prob = 0.5;
  PartialCrossAttentionProjector proj(cfg, gen);
  CHECK(proj.needs_teacher_qkv());
  CHECK_THROWS_AS(proj.check_teacher(2, 4), Error);
  CHECK_NOTHROW(proj.check_teacher(1, 8));
  Tensor T = randn32({1, 5, 8}, 1), tq = randn32({1, 2, 5, 4}, 2);
  CHECK_THROWS_AS(proj.forward(Var(randn32({1, 4, 2, 2}, 3)), teacher_from(T, 2, 2, tq, tq), 0), Error);
  cfg.cross_prob = 0.0;
  PartialCrossAttentionProjector ok(cfg, gen);
  CHECK_NOTHROW(ok.check_teacher(2, 4));
  // the cakd target needs the teacher's head count whatever p is
  cfg.target = PcaTarget::cakd;
  PartialCrossAttentionProjector ck(cfg, gen);
  CHECK_THROWS_AS(ck.check_teacher(2, 4), Error);
}

TEST_CASE("PCA projector: cakd teacher logits equal the ViT's attention-logits tap with the CLS row/column removed") {
  Generator gen(9);
  nn::ViTConfig vc;
  vc.img_size = 16;
  vc.patch_size = 4;  // 4×4 grid
  vc.embed_dim = 8;
  vc.depth = 1;
  vc.num_heads = 2;
  vc.num_classes = 4;
  nn::VisionTransformer vit(vc, gen);
  nn::ModelOutput o = vit.forward_with_taps(Var(randn32({2, 3, 16, 16}, 1)),
                                            {"blocks.0", "blocks.0.attn.q", "blocks.0.attn.k", "blocks.0.attn.v",
                                             "blocks.0.attn.logits"},
                                            false);
  TeacherFeatures t;
  t.tokens = o.tap("blocks.0");
  t.q = o.tap("blocks.0.attn.q");
  t.k = o.tap("blocks.0.attn.k");
  t.v = o.tap("blocks.0.attn.v");
  t.grid_h = t.grid_w = 4;
  PcaConfig cfg;
  cfg.target = PcaTarget::cakd;
  cfg.in_channels = 3;
  cfg.heads = 2;
  cfg.head_dim = 4;
  cfg.align = GridAlign::student_at_teacher_grid;
  PartialCrossAttentionProjector proj(cfg, gen);
  PcaResult r = proj.forward(Var(randn32({2, 3, 4, 4}, 2)), t, 0);
  Var expected = ops::narrow(ops::narrow(o.tap("blocks.0.attn.logits"), 2, 1, 16), 3, 1, 16);
  REQUIRE(r.teacher_logits.shape() == expected.shape());
  check_close(r.teacher_logits.value(), expected.value().to_vector<double>(), 1e-5, 1e-5);
}

TEST_CASE("grid alignment: resize_teacher averages 2×2 token blocks; upsample_student equals a pre-upsampled map") {
  const int64_t B = 1, D = 3;
  Tensor T = randn64({B, 1 + 16, D}, 1);  // 4×4 teacher grid
  TeacherFeatures t = teacher_from(T, 4, 4);
  Var r = teacher_patch_tokens(t, 2, 2);  // (1, 4, 3)
  std::vector<double> e;
  for (int64_t y = 0; y < 2; ++y)
    for (int64_t x = 0; x < 2; ++x)
      for (int64_t c = 0; c < D; ++c) {
        double s = 0;
        for (int64_t dy = 0; dy < 2; ++dy)
          for (int64_t dx = 0; dx < 2; ++dx) s += T.at({0, 1 + (2 * y + dy) * 4 + 2 * x + dx, c});
        e.push_back(s / 4);
      }
  check_close(r.value(), e, 1e-12, 1e-12);
  CHECK(teacher_patch_tokens(t, 4, 4).value().to_vector<double>() ==
        ops::narrow(Var(T), 1, 1, 16).value().contiguous().to_vector<double>());

  Generator gen(3);
  PcaConfig cfg;
  cfg.in_channels = 2;
  cfg.heads = 1;
  cfg.head_dim = 3;
  cfg.align = GridAlign::upsample_student;
  PartialCrossAttentionProjector up(cfg, gen);
  up.to(DType::float64);
  Tensor S = randn64({1, 2, 2, 2}, 2);
  PcaResult a = up.forward(Var(S), t, 0);
  CHECK(a.grid_h == 4);
  CHECK(a.student_logits.shape() == Shape{1, 1, 16, 16});
  PcaConfig at = cfg;
  at.align = GridAlign::student_at_teacher_grid;
  Generator gen2(3);
  PartialCrossAttentionProjector same(at, gen2);
  same.to(DType::float64);
  Var S4 = ops::interpolate_bilinear(Var(S), 4, 4);
  check_scalar(same.forward(S4, t, 0).loss, a.loss.item<double>(), 1e-12, 1e-12);
  CHECK_THROWS_AS(same.forward(Var(S), t, 0), Error);  // 2×2 student, 4×4 teacher, no resizing allowed

  cfg.align = GridAlign::resize_teacher;
  Generator gen3(3);
  PartialCrossAttentionProjector down(cfg, gen3);
  down.to(DType::float64);
  PcaResult b = down.forward(Var(S), t, 0);
  CHECK(b.teacher_logits.shape() == Shape{1, 4, 4});
  check_close(b.teacher_logits.value(), token_affinity_logits(r).value().to_vector<double>(), 1e-12, 1e-12);
}

// ---- GL projector -------------------------------------------------------------------------------------------------

TEST_CASE("GL projector, spatial: block×block neighbourhoods share a map — against loops, with gradcheck") {
  Generator gen(10);
  GlConfig cfg;
  cfg.grouping = GlGrouping::spatial;
  cfg.in_channels = 3;
  cfg.out_dim = 2;
  cfg.block = 2;
  cfg.grid_h = 5;
  cfg.grid_w = 6;
  cfg.align = GridAlign::student_at_teacher_grid;
  GroupLinearProjector gl(cfg, gen);
  gl.to(DType::float64);
  CHECK(gl.num_maps() == 9);  // ⌈5/2⌉·⌈6/2⌉
  CHECK(gl.group_of(0, 0) == 0);
  CHECK(gl.group_of(1, 1) == 0);
  CHECK(gl.group_of(0, 2) == 1);
  CHECK(gl.group_of(4, 5) == 8);
  CHECK(gl.weight.shape() == Shape{9, 2, 3});
  const int64_t B = 2, N = 30;
  Tensor S = randn64({B, 3, 5, 6}, 1), T = randn64({B, 1 + N, 2}, 2);
  GlResult r = gl.forward(Var(S), teacher_from(T, 5, 6));
  std::vector<double> ey;
  double mse = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t n = 0; n < N; ++n) {
      const int64_t y = n / 6, x = n % 6, m = (y / 2) * 3 + x / 2;
      for (int64_t o = 0; o < 2; ++o) {
        double v = gl.bias.value().at({m, o});
        for (int64_t c = 0; c < 3; ++c) v += gl.weight.value().at({m, o, c}) * S.at({b, c, y, x});
        ey.push_back(v);
        mse += std::pow(v - T.at({b, 1 + n, o}), 2);
      }
    }
  check_close(r.projected.value(), ey, 1e-12, 1e-12);
  check_scalar(r.loss, mse / double(B * N * 2), 1e-12, 1e-12);

  const TeacherFeatures tf = teacher_from(T, 5, 6);
  check_grad(
      [&](const std::vector<Var>& v) {
        gl.weight = v[1];
        gl.bias = v[2];
        return gl.forward(v[0], tf).loss;
      },
      {S, randn64({9, 2, 3}, 3), randn64({9, 2}, 4)});

  // 16 maps at 14×14 with block 4 (blocks of 4, 4, 4, 2); 4 maps at 7×7 and at 8×8
  GlConfig c14 = cfg;
  c14.block = 4;
  c14.grid_h = c14.grid_w = 14;
  GroupLinearProjector g14(c14, gen);
  CHECK(g14.num_maps() == 16);
  CHECK(g14.group_of(13, 13) == 15);
  CHECK(g14.group_of(12, 3) == 12);
  c14.grid_h = c14.grid_w = 7;
  CHECK(GroupLinearProjector(c14, gen).num_maps() == 4);
  c14.grid_h = c14.grid_w = 8;
  CHECK(GroupLinearProjector(c14, gen).num_maps() == 4);
  // another grid than the one the maps were laid over throws
  CHECK_THROWS_AS(gl.forward(Var(randn64({1, 3, 4, 6}, 5)), teacher_from(randn64({1, 25, 2}, 6), 4, 6)), Error);
}

TEST_CASE("GL projector, channel: G groups of 1×1 maps C/G channels to D/G dims — against loops, with gradcheck") {
  Generator gen(11);
  GlConfig cfg;
  cfg.grouping = GlGrouping::channel;
  cfg.in_channels = 8;
  cfg.out_dim = 6;
  cfg.groups = 2;
  cfg.align = GridAlign::resize_teacher;
  GroupLinearProjector gl(cfg, gen);
  gl.to(DType::float64);
  CHECK(gl.num_maps() == 2);
  CHECK(gl.proj->weight.shape() == Shape{6, 4, 1, 1});
  const int64_t B = 2, h = 2, w = 2, N = 4;
  Tensor S = randn64({B, 8, h, w}, 1), T = randn64({B, 1 + 16, 6}, 2);  // teacher 4×4 resized to 2×2
  TeacherFeatures tf = teacher_from(T, 4, 4);
  GlResult r = gl.forward(Var(S), tf);
  const auto target = teacher_patch_tokens(tf, 2, 2).value();
  std::vector<double> ey;
  double mse = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < 6; ++o) {
        const int64_t g = o / 3;  // output dims [3g, 3g+3) read channels [4g, 4g+4)
        double v = gl.proj->bias.value().at({o});
        for (int64_t c = 0; c < 4; ++c) v += gl.proj->weight.value().at({o, c, 0, 0}) * S.at({b, 4 * g + c, n / w, n % w});
        ey.push_back(v);
        mse += std::pow(v - target.at({b, n, o}), 2);
      }
  check_close(r.projected.value(), ey, 1e-12, 1e-12);
  check_scalar(r.loss, mse / double(B * N * 6), 1e-12, 1e-12);
  check_grad(
      [&](const std::vector<Var>& v) {
        gl.proj->weight = v[1];
        gl.proj->bias = v[2];
        return gl.forward(v[0], tf).loss;
      },
      {S, randn64({6, 4, 1, 1}, 3), randn64({6}, 4)});
  cfg.groups = 3;  // 8 channels do not split into 3 groups
  CHECK_THROWS_AS(GroupLinearProjector(cfg, gen), Error);
}

// ---- discriminator ------------------------------------------------------------------------------------------------

TEST_CASE("FeatureDiscriminator: 3-layer MLP with LeakyReLU 0.2 against loops; losses; gradcheck") {
  Generator gen(12);
  DiscriminatorConfig cfg;
  cfg.in_dim = 3;
  cfg.hidden = 4;
  FeatureDiscriminator d(cfg, gen);
  d.to(DType::float64);
  Tensor tokens = randn64({2, 5, 3}, 1);
  Var logits = d.forward(Var(tokens));
  REQUIRE(logits.shape() == Shape{2, 1});
  auto mlp = [&](const std::vector<double>& x) {
    auto layer = [&](const nn::Linear& l, const std::vector<double>& in, bool act) {
      std::vector<double> out;
      for (int64_t o = 0; o < l.out_features(); ++o) {
        double s = l.bias.value().at({o});
        for (int64_t i = 0; i < l.in_features(); ++i) s += l.weight.value().at({o, i}) * in[static_cast<std::size_t>(i)];
        out.push_back(act ? lrelu(s) : s);
      }
      return out;
    };
    return layer(*d.fc3, layer(*d.fc2, layer(*d.fc1, x, true), true), false)[0];
  };
  std::vector<double> expected;
  for (int64_t b = 0; b < 2; ++b) {
    std::vector<double> mean(3, 0.0);
    for (int64_t n = 0; n < 5; ++n)
      for (int64_t c = 0; c < 3; ++c) mean[static_cast<std::size_t>(c)] += tokens.at({b, n, c}) / 5.0;
    expected.push_back(mlp(mean));
  }
  check_close(logits.value(), expected, 1e-12, 1e-12);
  // per-token rows
  DiscriminatorConfig pt = cfg;
  pt.per_token = true;
  FeatureDiscriminator dt(pt, gen);
  CHECK(dt.forward(Var(randn32({2, 5, 3}, 2))).shape() == Shape{10, 1});

  // losses: L_D = BCE(D(real), 1) + BCE(D(fake), 0); L_G = BCE(D(fake), 1)
  Tensor real = randn64({4, 3}, 3), fake = randn64({4, 3}, 4);
  std::vector<double> zr, zf;
  for (int64_t i = 0; i < 4; ++i) {
    zr.push_back(mlp({real.at({i, 0}), real.at({i, 1}), real.at({i, 2})}));
    zf.push_back(mlp({fake.at({i, 0}), fake.at({i, 1}), fake.at({i, 2})}));
  }
  check_scalar(discriminator_loss(d, Var(real), Var(fake)), bce_mean(zr, 1) + bce_mean(zf, 0), 1e-12, 1e-12);
  check_scalar(generator_loss(d, Var(fake)), bce_mean(zf, 1), 1e-12, 1e-12);

  check_grad(
      [&](const std::vector<Var>& v) {
        d.fc1->weight = v[1];
        d.fc2->weight = v[2];
        d.fc3->bias = v[3];
        return generator_loss(d, v[0]);
      },
      {tokens, randn64({4, 3}, 5), randn64({4, 4}, 6), randn64({1}, 7)});
  check_grad(
      [&](const std::vector<Var>& v) {
        d.fc1->bias = v[2];
        d.fc3->weight = v[3];
        return discriminator_loss(d, v[0], v[1]);
      },
      {real, fake, randn64({4}, 8), randn64({1, 4}, 9)}, {0, 1});
}

TEST_CASE("adversarial game on a toy problem: each discriminator step lowers L_D and raises L_G, each student step the reverse") {
  Generator gen(13);
  DiscriminatorConfig cfg;
  cfg.in_dim = 4;
  cfg.hidden = 16;
  FeatureDiscriminator d(cfg, gen);
  // "teacher" features: N(1.5, 1); "student": a learnable affine map of fixed noise
  Tensor real = randn32({64, 4}, 1);
  {
    float* p = real.data<float>();
    for (int64_t i = 0; i < real.numel(); ++i) p[i] += 1.5f;
  }
  const Tensor noise = randn32({64, 4}, 2);
  nn::Linear student(4, 4, gen);
  optim::SGDOptions so;
  so.lr = 0.05;
  optim::SGD d_opt(d.trainable_parameters(), so), s_opt(student.trainable_parameters(), so);
  auto losses = [&]() {
    NoGradGuard ng;
    Var fake = student.forward(Var(noise));
    return std::make_pair(discriminator_loss(d, Var(real), fake).item<double>(), generator_loss(d, fake).item<double>());
  };
  // A few discriminator-only steps first: from its initialisation the discriminator's first moves mostly
  // shift its bias (which can raise its score of the fakes too); after that every move is against the student.
  for (int i = 0; i < 20; ++i) discriminator_update(d, d_opt, Var(real), student.forward(Var(noise)));
  int d_moves = 0, s_moves = 0;
  for (int round = 0; round < 6; ++round) {
    auto before = losses();
    discriminator_update(d, d_opt, Var(real), student.forward(Var(noise)));
    auto mid = losses();
    CHECK_MESSAGE(mid.first < before.first, "round ", round, ": L_D ", before.first, " -> ", mid.first);
    CHECK_MESSAGE(mid.second > before.second, "round ", round, ": L_G ", before.second, " -> ", mid.second);
    d_moves += mid.first < before.first && mid.second > before.second;
    d.zero_grad();
    {
      FrozenScope frozen(d);
      s_opt.zero_grad();
      Var lg = generator_loss(d, student.forward(Var(noise)));
      lg.backward();
      for (const auto& p : d.parameters()) CHECK_FALSE(p.grad().defined());  // held out of the student's backward
    }
    s_opt.step();
    auto after = losses();
    CHECK_MESSAGE(after.second < mid.second, "round ", round, ": L_G ", mid.second, " -> ", after.second);
    CHECK_MESSAGE(after.first > mid.first, "round ", round, ": L_D ", mid.first, " -> ", after.first);
    s_moves += after.second < mid.second && after.first > mid.first;
    d.zero_grad();
  }
  CHECK(d_moves == 6);
  CHECK(s_moves == 6);
}

// ---- multi-view generator -----------------------------------------------------------------------------------------

TEST_CASE("MultiViewGenerator: view 0 is the input; p = 0 changes nothing; seeded per (step, sample), not per batch slot") {
  Tensor x = randn32({3, 3, 16, 16}, 1);
  MultiViewConfig c;
  c.augmented_views = 2;
  c.mask_patch = 4;
  c.apply_prob = 0.0;
  MultiViewGenerator none(c);
  auto v0 = none.generate(x, {0, 1, 2}, 5);
  REQUIRE(v0.size() == 3);
  for (const auto& v : v0) check_close(v, x.to_vector<double>(), 1e-6, 1e-6);
  c.apply_prob = 1.0;
  MultiViewGenerator all(c);
  auto v = all.generate(x, {10, 11, 12}, 5);
  CHECK(v[0].to_vector<float>() == x.to_vector<float>());
  CHECK(v[1].to_vector<float>() != x.to_vector<float>());
  CHECK(v[1].to_vector<float>() != v[2].to_vector<float>());
  CHECK(all.generate(x, {10, 11, 12}, 5)[1].to_vector<float>() == v[1].to_vector<float>());  // deterministic
  CHECK(all.generate(x, {10, 11, 12}, 6)[1].to_vector<float>() != v[1].to_vector<float>());  // another step
  // the same image and id at another batch position gets the same view; another id another view
  Tensor swapped = ops::impl::concat({x.narrow(0, 2, 1), x.narrow(0, 0, 1)}, 0);
  Tensor sv = all.view(swapped, {12, 10}, 5, 1);
  CHECK(sv.narrow(0, 0, 1).contiguous().to_vector<float>() == v[1].narrow(0, 2, 1).contiguous().to_vector<float>());
  Tensor other = all.view(swapped, {13, 10}, 5, 1);
  CHECK(other.narrow(0, 0, 1).contiguous().to_vector<float>() != sv.narrow(0, 0, 1).contiguous().to_vector<float>());
}

TEST_CASE("MultiViewGenerator: each transform applied with probability 0.5, independently") {
  MultiViewConfig c;
  c.augmented_views = 1;
  c.mask_patch = 4;
  MultiViewGenerator g(c);
  const int64_t B = 400;
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < B; ++i) ids.push_back(i);
  std::vector<ViewRecord> rec;
  g.view(rand32({B, 3, 8, 8}, 1), ids, 0, 1, &rec);
  int64_t crop = 0, rot = 0, jit = 0, mask = 0, crop_and_rot = 0;
  for (const auto& r : rec) {
    crop += r.crop;
    rot += r.rotate;
    jit += r.jitter;
    mask += r.mask;
    crop_and_rot += r.crop && r.rotate;
  }
  for (int64_t n : {crop, rot, jit, mask}) CHECK(std::fabs(double(n) / B - 0.5) < 0.08);
  CHECK(std::fabs(double(crop_and_rot) / B - 0.25) < 0.07);
}

TEST_CASE("MultiViewGenerator transforms against loops: crop 0.8 resized back, rotation, jitter, patch mask") {
  const int64_t C = 3, H = 10, W = 10;
  MultiViewConfig c;
  c.apply_prob = 1.0;
  c.rotation_degrees = 0.0;  // θ = 0: identity
  c.brightness = c.contrast = 0.0;
  c.mask_ratio = 0.0;
  MultiViewGenerator crop_only(c);
  Tensor img = rand32({1, C, H, W}, 1);
  Tensor norm = crop_only.from_pixels(img.squeeze(0)).unsqueeze(0);  // a normalised batch of one
  std::vector<ViewRecord> rec;
  Tensor out = crop_only.view(norm, {7}, 0, 1, &rec);
  REQUIRE(rec[0].crop);
  CHECK(rec[0].crop_h == 8);
  CHECK(rec[0].crop_w == 8);
  // bilinear, align_corners = false, of the 8×8 crop back to 10×10, in pixel space
  Tensor pix = crop_only.to_pixels(out.squeeze(0));
  std::vector<double> e;
  const double scale = 8.0 / 10.0;
  auto src = [&](int64_t i, int64_t n) {
    double s = (i + 0.5) * scale - 0.5;
    if (s < 0) s = 0;
    int64_t i0 = std::min<int64_t>(static_cast<int64_t>(std::floor(s)), n - 1);
    int64_t i1 = std::min<int64_t>(i0 + 1, n - 1);
    return std::make_tuple(i0, i1, s - double(i0));
  };
  for (int64_t ch = 0; ch < C; ++ch)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) {
        auto [y0, y1, wy] = src(y, 8);
        auto [x0, x1, wx] = src(x, 8);
        auto p = [&](int64_t yy, int64_t xx) { return img.at({0, ch, rec[0].crop_top + yy, rec[0].crop_left + xx}); };
        e.push_back((1 - wy) * ((1 - wx) * p(y0, x0) + wx * p(y0, x1)) + wy * ((1 - wx) * p(y1, x0) + wx * p(y1, x1)));
      }
  check_close(pix, e, 1e-5, 1e-5);

  // rotation by 90°: output (x, y) reads the input at (cx − (y − cy), cy + (x − cx))
  Tensor sq = randn64({1, 5, 5}, 2);
  Tensor r90 = mv::rotate(sq, 90.0);
  std::vector<double> er;
  for (int64_t y = 0; y < 5; ++y)
    for (int64_t x = 0; x < 5; ++x) er.push_back(sq.at({0, 2 + (x - 2), 2 - (y - 2)}));
  check_close(r90, er, 1e-9, 1e-9);
  check_close(mv::rotate(sq, 0.0), sq.to_vector<double>(), 0.0, 0.0);
  // 45°: corners fall outside and read black
  CHECK(mv::rotate(Tensor::ones({1, 5, 5}, DType::float64), 45.0).at({0, 0, 0}) < 0.5);

  // jitter: brightness then contrast around the mean grey, clamped to [0, 1]
  Tensor jimg = rand32({3, 4, 4}, 3).to(DType::float64);
  Tensor j = jimg.clone();
  mv::jitter(j, 1.3, 0.6);
  std::vector<double> b(static_cast<std::size_t>(48)), ej;
  const auto jv = jimg.to_vector<double>();
  for (std::size_t i = 0; i < 48; ++i) b[i] = std::min(1.0, 1.3 * jv[i]);
  double m = 0;
  for (std::size_t i = 0; i < 16; ++i) m += (0.2989 * b[i] + 0.587 * b[16 + i] + 0.114 * b[32 + i]) / 16.0;
  for (std::size_t i = 0; i < 48; ++i) ej.push_back(std::clamp((b[i] - m) * 0.6 + m, 0.0, 1.0));
  check_close(j, ej, 1e-12, 1e-12);

  // mask: half of the 2×3 tiles of 4×4 px (last column 4 px of 12) set to black in pixel space
  MultiViewConfig mc = c;
  mc.crop_scale = 1.0;
  mc.mask_ratio = 0.5;
  mc.mask_patch = 4;
  MultiViewGenerator masker(mc);
  Tensor mimg = rand32({1, 3, 8, 12}, 4);
  for (float* p = mimg.data<float>(); p != mimg.data<float>() + mimg.numel(); ++p) *p = 0.25f + 0.5f * *p;  // not 0
  std::vector<ViewRecord> mrec;
  Tensor mout = masker.to_pixels(masker.view(masker.from_pixels(mimg.squeeze(0)).unsqueeze(0), {3}, 1, 1, &mrec).squeeze(0));
  CHECK(mrec[0].masked_tiles == 3);
  int64_t black_tiles = 0, untouched_tiles = 0;
  for (int64_t ty = 0; ty < 2; ++ty)
    for (int64_t tx = 0; tx < 3; ++tx) {
      bool black = true, same = true;
      for (int64_t ch = 0; ch < 3; ++ch)
        for (int64_t y = 4 * ty; y < 4 * ty + 4; ++y)
          for (int64_t x = 4 * tx; x < 4 * tx + 4; ++x) {
            black = black && std::fabs(mout.at({ch, y, x})) < 1e-5;
            same = same && std::fabs(mout.at({ch, y, x}) - mimg.at({0, ch, y, x})) < 1e-5;
          }
      black_tiles += black;
      untouched_tiles += same;
    }
  CHECK(black_tiles == 3);
  CHECK(untouched_tiles == 3);
}

// ---- the distiller ------------------------------------------------------------------------------------------------

namespace {
struct SmokeRun {
  DistillConfig cfg;
  std::shared_ptr<nn::VisionTransformer> teacher;
  std::shared_ptr<nn::Model> student;
  std::unique_ptr<CrossArchitectureDistiller> d;
  explicit SmokeRun(DistillConfig c, uint64_t seed = 1) : cfg(std::move(c)) {
    Generator gen(seed);
    teacher = make_teacher(cfg, gen);
    student = make_student(cfg, gen);
    d = std::make_unique<CrossArchitectureDistiller>(teacher, student, cfg, gen);
  }
};
Tensor labels_of(std::vector<int64_t> v) { return Tensor::from_vector(v, {static_cast<int64_t>(v.size())}); }
}  // namespace

TEST_CASE("presets: the numbers of DESIGN.md §5") {
  DistillConfig p = distill_preset("paper");
  CHECK(p.teacher.embed_dim == 768);
  CHECK(p.img_size == 224);
  CHECK(p.teacher_block == -1);
  CHECK(p.pca.target == PcaTarget::paper);
  CHECK(p.pca.align == GridAlign::resize_teacher);
  CHECK(p.pca.temperature == 1.0);
  CHECK(p.gl.grouping == GlGrouping::channel);
  CHECK(p.gl.groups == 8);
  CHECK(p.views.augmented_views + 1 == 2);
  CHECK(p.weights.alpha == 0.3);
  CHECK(p.weights.lambda_pca == doctest::Approx(0.7));
  CHECK(p.weights.lambda_gl == doctest::Approx(0.07));
  CHECK(p.weights.lambda_adv == doctest::Approx(0.7));
  CHECK(p.lr == 1e-4);
  CHECK(p.weight_decay == 1e-5);
  CHECK(p.epochs == 50);
  CHECK(p.batch_size == 32);
  CHECK(p.augment.rotation_degrees == 12.0);
  CHECK(p.augment.hue == 0.05);
  DistillConfig c = distill_preset("cakd");
  CHECK(c.pca.target == PcaTarget::cakd);
  CHECK(c.pca.cross_prob == 0.5);
  CHECK(c.pca.attn_weight == 0.2);
  CHECK(c.pca.vv_weight == 0.05);
  CHECK(c.pca.heads * c.pca.head_dim == 768);
  CHECK(c.gl.grouping == GlGrouping::spatial);
  CHECK(c.pca_student_tap == "stage4");
  // the official code's numbers (cakd) and the paper's text (cakd_paper)
  CHECK(c.weights.ramp(25.0) == 0.0);
  CHECK(c.weights.ramp(30.0) == doctest::Approx(0.1));  // (30 − 25) / 50
  CHECK(c.weights.ramp(60.0) == doctest::Approx(0.2));  // capped
  CHECK(c.weights.lambda_gl == doctest::Approx(0.05));
  CHECK(c.disc.lr_ratio == doctest::Approx(0.01));
  CHECK(c.teacher_token_tap == "norm");
  CHECK(c.pca.average_heads);
  DistillConfig cp = distill_preset("cakd_paper");
  CHECK(cp.weights.ramp_epochs == 25.0);
  CHECK(cp.weights.ramp(25.0) == 1.0);
  CHECK(cp.weights.lambda_gl == 1.0);
  CHECK(cp.disc.lr_ratio == doctest::Approx(0.25));
  CHECK(cp.teacher_token_tap.empty());
  CHECK_FALSE(cp.pca.average_heads);
  DistillConfig q = distill_preset("quick");
  CHECK(q.img_size == 160);
  CHECK(q.student == "mobilenet_v2");
  CHECK_THROWS_AS(distill_preset("nope"), Error);
}

TEST_CASE("distiller, quick preset: logit KD by default; its projectors build when switched on") {
  // The default: logit KD alone — no projector, no discriminator, the teacher's logits its only target.
  const DistillConfig base = distill_preset("quick");
  CHECK(base.weights.logit_kd);
  CHECK(base.weights.alpha == doctest::Approx(0.5));
  CHECK(base.weights.temperature == doctest::Approx(4.0));
  CHECK(base.weights.kd_class_weighted);
  CHECK(base.ce_clean_view_only);
  CHECK(base.bn_clean_views);
  {
    SmokeRun logit(base);
    CHECK(logit.d->pca() == nullptr);
    CHECK(logit.d->gl() == nullptr);
    CHECK(logit.d->discriminator() == nullptr);
    CHECK(logit.d->teacher_taps().empty());
  }
  // `--lambda-pca 0.7 --lambda-gl 0.07 --lambda-adv 0.7` (the former default): shape inference agrees with the taps
  DistillConfig c = base;
  c.weights.lambda_pca = 0.7;
  c.weights.lambda_gl = 0.07;
  c.weights.lambda_adv = 0.7;
  SmokeRun q(c);
  REQUIRE(q.d->pca() != nullptr);
  REQUIRE(q.d->discriminator() != nullptr);
  CHECK(q.d->pca()->config().in_channels == 96);  // MobileNetV2 stage4
  CHECK(q.d->gl()->config().grid_h == 10);
  CHECK(q.d->gl()->config().out_dim == 192);
  CHECK(q.d->teacher_taps() == std::vector<std::string>{"blocks.11"});
}

TEST_CASE("distiller, smoke preset: a few steps on tiny random images reduce the loss; teacher untouched; D trained") {
  SmokeRun run(distill_preset("smoke"));
  CrossArchitectureDistiller& d = *run.d;
  REQUIRE(d.pca() != nullptr);
  REQUIRE(d.gl() != nullptr);
  REQUIRE(d.discriminator() != nullptr);
  CHECK(d.teacher_taps().size() == 4);  // tokens + q, k, v (cakd target, p = 0.5)
  const Tensor x = randn32({4, 3, 64, 64}, 3);
  const Tensor y = labels_of({0, 1, 2, 3});
  const std::vector<double> teacher_before = d.teacher().parameters()[3].value().to_vector<double>();
  const std::vector<double> disc_before = d.discriminator()->fc1->weight.value().to_vector<double>();
  std::vector<double> totals;
  LossBreakdown first;
  for (int i = 0; i < 20; ++i) {
    LossBreakdown b = d.step(x, y, {0, 1, 2, 3}, 0.0);
    if (i == 0) first = b;
    REQUIRE(b.get("skipped") == 0.0);
    totals.push_back(b.get("total"));
  }
  for (const char* name : {"total", "ce", "logit_kd", "pca", "pca_attn", "pca_vv", "gl", "adv_g", "disc", "disc_acc", "kd_ramp"})
    CHECK_MESSAGE(first.has(name), name, " missing from ", first.str());
  const double last = (totals[17] + totals[18] + totals[19]) / 3.0;
  CHECK_MESSAGE(last < 0.8 * totals[0], "total ", totals[0], " -> ", last);
  CHECK(d.step_count() == 20);
  CHECK(d.teacher().parameters()[3].value().to_vector<double>() == teacher_before);
  for (const auto& p : d.teacher().parameters()) CHECK_FALSE(p.grad().defined());
  CHECK(d.discriminator()->fc1->weight.value().to_vector<double>() != disc_before);
  CHECK(d.heads().state_dict().size() > 0);
}

TEST_CASE("distiller: paper-style configuration (token-affinity KL, channel GL, resize_teacher) runs") {
  DistillConfig c = distill_preset("smoke");
  c.pca_student_tap = c.gl_student_tap = "features";  // 2×2 at 64 px; teacher 4×4 resized down
  c.pca.target = PcaTarget::paper;
  c.pca.cross_prob = 0.0;
  c.pca.heads = 1;
  c.pca.head_dim = 8;
  c.pca.align = GridAlign::resize_teacher;
  c.gl.grouping = GlGrouping::channel;
  c.gl.groups = 8;
  c.gl.align = GridAlign::resize_teacher;
  c.weights.logit_kd = false;
  SmokeRun run(c);
  CHECK(run.d->teacher_taps() == std::vector<std::string>{"blocks.1"});
  LossBreakdown b = run.d->step(randn32({2, 3, 64, 64}, 4), labels_of({1, 2}), {5, 6}, 0.0);
  CHECK(std::isfinite(b.get("total")));
  CHECK(b.get("pca") > 0.0);
  CHECK_FALSE(b.has("pca_vv"));
  CHECK_FALSE(b.has("logit_kd"));
}

TEST_CASE("distiller: configurations the shapes cannot support are rejected at construction") {
  DistillConfig c = distill_preset("smoke");
  c.pca.head_dim = 8;  // 2 heads × 8 ≠ the teacher's 2 × 16 with p = 0.5
  CHECK_THROWS_AS(SmokeRun{c}, Error);
  c = distill_preset("smoke");
  c.pca_student_tap = "features";  // 2×2 but student_at_teacher_grid with a 4×4 teacher
  CHECK_THROWS_AS(SmokeRun{c}, Error);
  c = distill_preset("smoke");
  c.pca_student_tap = "nope";
  CHECK_THROWS_AS(SmokeRun{c}, Error);
}

TEST_CASE("distiller: teacher cache — the same outputs as a direct forward, hits on later epochs, recomputed when the image changes") {
  DistillConfig c = distill_preset("smoke");
  c.cache_teacher = true;
  SmokeRun run(c);
  CrossArchitectureDistiller& d = *run.d;
  const Tensor x = randn32({2, 3, 64, 64}, 5);
  const std::vector<int64_t> ids{3, 9};
  const auto views = d.views().generate(x, ids, 0);
  TeacherFeatures cached = d.teacher_from_cache(views, ids);
  CHECK(d.cache().size() == 4);  // 2 samples × 2 views
  CHECK(d.cache().misses == 4);
  TeacherFeatures direct = d.teacher_forward(ops::impl::concat(views, 0));
  check_close(cached.tokens.value(), direct.tokens.value().to_vector<double>(), 1e-5, 1e-5);
  check_close(cached.v.value(), direct.v.value().to_vector<double>(), 1e-5, 1e-5);
  check_close(cached.logits.value(), direct.logits.value().to_vector<double>(), 1e-5, 1e-5);
  d.step(x, labels_of({0, 1}), ids, 0.0);
  d.step(x, labels_of({0, 1}), ids, 1.0);
  CHECK(d.cache().misses == 4);
  CHECK(d.cache().hits == 8);
  Tensor x2 = x.clone();
  x2.narrow(0, 0, 1).copy_(randn32({1, 3, 64, 64}, 6));  // sample 3's image changed
  d.step(x2, labels_of({0, 1}), ids, 2.0);
  CHECK(d.cache().stale == 2);  // both of its views recomputed
  CHECK(d.cache().bytes() > 0);
}

TEST_CASE("distiller: a non-finite loss skips the update and says so") {
  SmokeRun run(distill_preset("smoke"));
  CrossArchitectureDistiller& d = *run.d;
  Tensor x = randn32({2, 3, 64, 64}, 7);
  x.data<float>()[10] = std::numeric_limits<float>::quiet_NaN();
  const auto student_before = d.student().parameters()[0].value().to_vector<float>();
  const auto disc_before = d.discriminator()->fc1->weight.value().to_vector<float>();
  LossBreakdown b = d.step(x, labels_of({0, 1}), {0, 1}, 0.0);
  CHECK(b.get("skipped") == 1.0);
  CHECK(std::isnan(b.get("total")));
  CHECK(d.student().parameters()[0].value().to_vector<float>() == student_before);
  CHECK(d.discriminator()->fc1->weight.value().to_vector<float>() == disc_before);
  // a finite batch afterwards trains normally
  CHECK(d.step(randn32({2, 3, 64, 64}, 8), labels_of({0, 1}), {0, 1}, 0.0).get("skipped") == 0.0);
  CHECK(d.student().parameters()[0].value().to_vector<float>() != student_before);
}

TEST_CASE("sample-weighted KD terms, row-mean attention KL and the entropy-matched temperature against loops") {
  const int64_t B = 3, C = 4;
  const Tensor zs = randn64({B, C}, 11), zt = randn64({B, C}, 12);
  const Tensor w = Tensor::from_vector<double>({1.0, 3.0, 0.5}, {B});
  const double tau = 2.0;
  double num = 0, den = 0;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<double> sr, tr;
    for (int64_t c = 0; c < C; ++c) sr.push_back(zs.at({b, c})), tr.push_back(zt.at({b, c}));
    const auto p = softmax_row(tr, tau), q = softmax_row(sr, tau);
    double kl = 0;
    for (int64_t c = 0; c < C; ++c) kl += p[c] * std::log(p[c] / q[c]);
    num += w.at({b}) * kl;
    den += w.at({b});
  }
  check_scalar(logit_kd_loss(Var(zs), Var(zt), tau, w), tau * tau * num / den, 1e-12, 1e-12);
  // equal weights give the unweighted batchmean
  check_scalar(logit_kd_loss(Var(zs), Var(zt), tau, Tensor::ones({B}, DType::float64)),
               logit_kd_loss(Var(zs), Var(zt), tau).item<double>(), 1e-12, 1e-12);
  // feature MSE: weighted mean of per-sample means
  const Tensor a = randn64({B, 2, 5}, 13), t = randn64({B, 2, 5}, 14);
  num = den = 0;
  for (int64_t b = 0; b < B; ++b) {
    double m = 0;
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < 5; ++j) m += std::pow(a.at({b, i, j}) - t.at({b, i, j}), 2);
    num += w.at({b}) * m / 10.0;
    den += w.at({b});
  }
  check_scalar(feature_mse_loss(Var(a), Var(t), w), num / den, 1e-12, 1e-12);
  // attention KL: row_mean divides batchmean's sum over N rows by N
  const int64_t H = 2, N = 5;
  const Tensor s4 = randn64({B, H, N, N}, 15), t3 = randn64({B, N, N}, 16);
  const double batchmean = attention_kl_loss(Var(s4), Var(t3), 1.5).item<double>();
  check_scalar(attention_kl_loss(Var(s4), Var(t3), 1.5, /*row_mean=*/true), batchmean / N, 1e-12, 1e-12);
  check_scalar(attention_kl_loss(Var(s4), Var(t3), 1.5, false, Tensor::ones({B}, DType::float64)), batchmean, 1e-12, 1e-12);
  // entropy: uniform rows give log N at any τ; a temperature is found for a requested fraction
  CHECK(mean_row_entropy(Tensor::zeros({3, N}, DType::float64), 0.7) == doctest::Approx(std::log(double(N))));
  const Tensor peaked = randn64({6, 16}, 17, 8.0);
  for (double f : {0.2, 0.5, 0.8}) {
    const double tau_f = temperature_for_entropy(peaked, f);
    CHECK(mean_row_entropy(peaked, tau_f) == doctest::Approx(f * std::log(16.0)).epsilon(1e-6));
  }
  CHECK(temperature_for_entropy(peaked, 0.8) > temperature_for_entropy(peaked, 0.2));
}

TEST_CASE("MultiViewGenerator: mirror views are the horizontal mirror, exactly") {
  MultiViewConfig c;
  c.augmented_views = 1;
  c.mirror = true;
  const MultiViewGenerator g(c);
  const Tensor x = randn32({2, 3, 4, 5}, 21);
  const std::vector<Tensor> v = g.generate(x, {7, 9}, 3);
  REQUIRE(v.size() == 2);
  CHECK(v[0].to_vector<float>() == x.to_vector<float>());
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t ch = 0; ch < 3; ++ch)
      for (int64_t i = 0; i < 4; ++i)
        for (int64_t j = 0; j < 5; ++j) CHECK(v[1].at({b, ch, i, j}) == x.at({b, ch, i, 4 - j}));
  c.augmented_views = 2;
  CHECK_THROWS_AS(MultiViewGenerator{c}, retikd::Error);
}

TEST_CASE("distiller: projector warm-up leaves the student to CE, then balanced KD weights are measured and used") {
  DistillConfig cfg = distill_preset("smoke");
  cfg.weights.lambda_adv = 0.0;  // no discriminator: the terms balanced are logit KD, PCA and GL
  cfg.views.augmented_views = 1;
  cfg.views.mirror = true;
  cfg.ce_clean_view_only = true;
  cfg.bn_clean_views = true;
  cfg.projector_warmup_epochs = 0.5;
  cfg.balance_rho = 0.5;
  cfg.balance_batches = 2;
  cfg.weights.class_weights = {1.0, 2.0, 1.0, 0.5};
  cfg.weights.kd_class_weighted = true;
  cfg.pca.target = PcaTarget::paper;
  cfg.pca.cross_prob = 0.0;
  cfg.pca.kl_row_mean = true;
  cfg.pca.target_entropy = 0.5;
  SmokeRun run(cfg);
  CrossArchitectureDistiller& d = *run.d;
  const Tensor x = randn32({4, 3, 64, 64}, 23);
  const Tensor y = labels_of({0, 1, 2, 3});
  // warm-up: the KD terms do not reach the student (its update equals a CE-only update of the same start)
  LossBreakdown warm = d.step(x, y, {0, 1, 2, 3}, 0.1);
  CHECK(warm.get("skipped") == 0.0);
  CHECK(warm.get("w_logit_kd") == 0.0);
  CHECK(warm.get("w_pca") == doctest::Approx(warm.get("pca")));  // projectors learn at weight 1 meanwhile
  CHECK(d.balanced_weights() == std::vector<double>{0.0, 0.0, 0.0});
  CHECK(warm.has("pca_entropy"));
  CHECK(warm.get("pca_entropy") == doctest::Approx(0.5 * std::log(16.0)).epsilon(1e-3));  // 4x4 grid, τ chosen
  // after it: two batches of measurement, then ρ·|∇CE|/|∇L_k| for each term
  d.step(x, y, {0, 1, 2, 3}, 0.6);
  d.step(x, y, {0, 1, 2, 3}, 0.7);
  const std::vector<double> w = d.balanced_weights();
  REQUIRE(w.size() == 3);
  for (double v : w) CHECK((v > 0.0 && std::isfinite(v)));
  LossBreakdown later = d.step(x, y, {0, 1, 2, 3}, 0.8);
  CHECK(later.get("w_gl") == doctest::Approx(w[2] * later.get("gl") * later.get("kd_ramp")).epsilon(1e-9));
  // the measurement and τ survive a checkpoint through heads(): a fresh distiller loaded with them agrees
  SmokeRun again(cfg);
  again.d->heads().load_state_dict(d.heads().state_dict());
  again.d->step(x, y, {0, 1, 2, 3}, 0.9);
  CHECK(again.d->balanced_weights() == w);
  CHECK(again.d->pca()->temperature() == doctest::Approx(d.pca()->temperature()));
}
