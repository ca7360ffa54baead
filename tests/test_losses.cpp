// tests/test_losses.cpp — cross-entropy (class weights, label smoothing, ignore_index), BCE with logits
// (pos_weight), MSE and the distillation KL divergence (temperature, every reduction), plus the PyTorch-style
// kl_div on log-probabilities. Forward values are derived by hand in each test with std::exp / std::log;
// gradients go through the float64 gradient checker for every differentiable input.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "retikd/autograd/gradcheck.hpp"
#include "retikd/core/random.hpp"
#include "retikd/ops/elementwise.hpp"
#include "retikd/ops/loss.hpp"
#include "retikd/ops/shape.hpp"
#include "retikd/ops/softmax.hpp"
#include "test_util.hpp"

using namespace retikd;
using namespace retikd::test;
using ops::Reduction;

namespace {


Tensor uniform64(const Shape& s, uint64_t seed, double lo, double hi) {
  Generator g(seed);
  Tensor t = Tensor::empty(s, DType::float64);
  return uniform_(t, lo, hi, g);
}



double lse3(double a, double b, double c) { return std::log(std::exp(a) + std::exp(b) + std::exp(c)); }

}  // namespace

// ---- cross-entropy ----------------------------------------------------------------------------------------
TEST_CASE("cross_entropy of a 2x3 example by hand: mean, sum, none") {
  // logits [[1, 2, 3], [1, 0, -1]], targets [2, 0]
  const Tensor z = f64({1, 2, 3, 1, 0, -1}, {2, 3});
  const Tensor t = i64({2, 0}, {2});
  const double nll0 = lse3(1, 2, 3) - 3, nll1 = lse3(1, 0, -1) - 1;
  ops::CrossEntropyOptions o;
  check_scalar(ops::cross_entropy(Var(z), t, o), (nll0 + nll1) / 2, 1e-14);
  o.reduction = Reduction::sum;
  check_scalar(ops::cross_entropy(Var(z), t, o), nll0 + nll1, 1e-14);
  o.reduction = Reduction::none;
  Var none = ops::cross_entropy(Var(z), t, o);
  CHECK(none.shape() == Shape{2});
  check_close(none.value(), {nll0, nll1}, 0, 1e-14);
  // float32 agrees
  check_scalar(ops::cross_entropy(Var(z.to(DType::float32)), t), (nll0 + nll1) / 2, 1e-6);
  // gradient of the mean, by hand: (softmax − onehot) / N
  Var v(z, true);
  ops::cross_entropy(v, t).backward();
  const double s0 = std::exp(lse3(1, 2, 3)), s1 = std::exp(lse3(1, 0, -1));
  check_close(v.grad(),
               {std::exp(1) / s0 / 2, std::exp(2) / s0 / 2, (std::exp(3) / s0 - 1) / 2,
                (std::exp(1) / s1 - 1) / 2, 1 / s1 / 2, std::exp(-1) / s1 / 2}, 0,
               1e-15);
}

TEST_CASE("cross_entropy with class weights divides the weighted sum by the targets' weights") {
  const Tensor z = f64({1, 2, 3, 1, 0, -1}, {2, 3});
  const Tensor t = i64({2, 0}, {2});
  const double nll0 = lse3(1, 2, 3) - 3, nll1 = lse3(1, 0, -1) - 1;
  ops::CrossEntropyOptions o;
  o.weight = f64({0.2, 0.3, 0.5}, {3});
  check_scalar(ops::cross_entropy(Var(z), t, o), (0.5 * nll0 + 0.2 * nll1) / (0.5 + 0.2), 1e-14);
  o.reduction = Reduction::sum;
  check_scalar(ops::cross_entropy(Var(z), t, o), 0.5 * nll0 + 0.2 * nll1, 1e-14);
  o.reduction = Reduction::none;
  check_close(ops::cross_entropy(Var(z), t, o).value(), {0.5 * nll0, 0.2 * nll1}, 0, 1e-14);
  // float32 weights with float64 logits are converted
  o.reduction = Reduction::mean;
  o.weight = f64({0.2, 0.3, 0.5}, {3}).to(DType::float32);
  check_scalar(ops::cross_entropy(Var(z), t, o), (0.5 * nll0 + 0.2 * nll1) / 0.7, 1e-7);
}

TEST_CASE("cross_entropy with label smoothing, with and without weights (PyTorch's formula)") {
  const Tensor z = f64({1, 2, 3, 1, 0, -1}, {2, 3});
  const Tensor t = i64({2, 0}, {2});
  const double eps = 0.1, C = 3;
  const double lse0 = lse3(1, 2, 3), lse1 = lse3(1, 0, -1);
  // −log p for every class of both rows
  const double nlp[2][3] = {{lse0 - 1, lse0 - 2, lse0 - 3}, {lse1 - 1, lse1 - 0, lse1 + 1}};
  // without weights it is the cross-entropy against the smoothed target (1−ε)·onehot + ε/C
  double soft = 0;
  for (int i = 0; i < 2; ++i)
    for (int c = 0; c < 3; ++c) {
      const bool is_t = (i == 0 && c == 2) || (i == 1 && c == 0);
      soft += ((is_t ? 1 - eps : 0) + eps / C) * nlp[i][c];
    }
  ops::CrossEntropyOptions o;
  o.label_smoothing = eps;
  check_scalar(ops::cross_entropy(Var(z), t, o), soft / 2, 1e-14);
  // with weights w: (1−ε)·Σ w_t·nll / Σ w_t + (ε/C)·Σ_i Σ_c w_c·(−log p_ic) / Σ w_t
  const double w[3] = {0.2, 0.3, 0.5};
  const double wt_sum = w[2] + w[0];
  const double nll_mean = (w[2] * nlp[0][2] + w[0] * nlp[1][0]) / wt_sum;
  double smooth = 0;
  for (int i = 0; i < 2; ++i)
    for (int c = 0; c < 3; ++c) smooth += w[c] * nlp[i][c];
  o.weight = f64({w[0], w[1], w[2]}, {3});
  check_scalar(ops::cross_entropy(Var(z), t, o), (1 - eps) * nll_mean + eps / C * smooth / wt_sum, 1e-14);
  o.reduction = Reduction::sum;
  check_scalar(ops::cross_entropy(Var(z), t, o),
               (1 - eps) * (w[2] * nlp[0][2] + w[0] * nlp[1][0]) + eps / C * smooth, 1e-14);
  o.reduction = Reduction::none;
  check_close(
      ops::cross_entropy(Var(z), t, o).value(),
      {(1 - eps) * w[2] * nlp[0][2] + eps / C * (w[0] * nlp[0][0] + w[1] * nlp[0][1] + w[2] * nlp[0][2]),
       (1 - eps) * w[0] * nlp[1][0] + eps / C * (w[0] * nlp[1][0] + w[1] * nlp[1][1] + w[2] * nlp[1][2])}, 0,
      1e-14);
}

TEST_CASE("cross_entropy ignores ignore_index targets") {
  const Tensor z = f64({1, 2, 3, 1, 0, -1, 0.5, 0.5, 2}, {3, 3});
  const Tensor t = i64({2, -100, 1}, {3});
  const double nll0 = lse3(1, 2, 3) - 3, nll2 = lse3(0.5, 0.5, 2) - 0.5;
  check_scalar(ops::cross_entropy(Var(z), t), (nll0 + nll2) / 2, 1e-14);
  ops::CrossEntropyOptions o;
  o.weight = f64({0.2, 0.3, 0.5}, {3});
  check_scalar(ops::cross_entropy(Var(z), t, o), (0.5 * nll0 + 0.3 * nll2) / 0.8, 1e-14);
  o.reduction = Reduction::none;
  o.label_smoothing = 0.2;
  CHECK(ops::cross_entropy(Var(z), t, o).value().at({1}) == 0.0);
  Var v(z, true);
  ops::cross_entropy(v, t).backward();
  for (int64_t c = 0; c < 3; ++c) CHECK(v.grad().at({1, c}) == 0.0);
  o.ignore_index = 1;  // a class index can be the ignored one
  o.reduction = Reduction::sum;
  o.label_smoothing = 0;
  o.weight = Tensor();
  check_scalar(ops::cross_entropy(Var(z), i64({2, 0, 1}, {3}), o), nll0 + (lse3(1, 0, -1) - 1), 1e-14);
}

TEST_CASE("cross_entropy is stable for huge logits and matches a naive reference on a wide batch") {
  const Tensor big = f64({1000, 2000, 3000, -5000, 0, 5000}, {2, 3});
  Var l = ops::cross_entropy(Var(big), i64({1, 0}, {2}), {});
  CHECK(std::isfinite(l.item<double>()));
  check_scalar(l, (1000.0 + 10000.0) / 2, 1e-9);
  // a batch wide enough to take the threaded path
  const int64_t N = 48, C = 1000;
  Tensor z = randn64({N, C}, 17, 3.0);
  std::vector<int64_t> tv(N);
  for (int64_t i = 0; i < N; ++i) tv[i] = (i * 37) % C;
  Tensor t = i64(tv, {N});
  Var v(z, true);
  Var loss = ops::cross_entropy(v, t);
  loss.backward();
  double ref = 0;
  bool grad_ok = true;
  for (int64_t i = 0; i < N; ++i) {
    double m = -1e300, s = 0;
    for (int64_t c = 0; c < C; ++c) m = std::max(m, z.at({i, c}));
    for (int64_t c = 0; c < C; ++c) s += std::exp(z.at({i, c}) - m);
    ref += m + std::log(s) - z.at({i, tv[i]});
    for (int64_t c = 0; c < C; ++c) {
      const double expected = (std::exp(z.at({i, c}) - m) / s - (c == tv[i] ? 1.0 : 0.0)) / N;
      grad_ok = grad_ok && std::fabs(v.grad().at({i, c}) - expected) < 1e-15;
    }
  }
  check_scalar(loss, ref / N, 1e-12);
  CHECK(grad_ok);
}

TEST_CASE("cross_entropy backward passes the gradient checker for every option") {
  const Tensor w = f64({0.7, 1.3, 0.4, 2.0}, {4});
  for (Reduction r : {Reduction::mean, Reduction::sum, Reduction::none})
    for (double eps : {0.0, 0.15})
      for (bool weighted : {false, true}) {
        CAPTURE(ops::reduction_name(r));
        CAPTURE(eps);
        CAPTURE(weighted);
        ops::CrossEntropyOptions o;
        o.reduction = r;
        o.label_smoothing = eps;
        if (weighted) o.weight = w;
        const Tensor t = i64({3, 0, 2, -100, 1}, {5});
        check_grad([o, t](const std::vector<Var>& v) { return ops::cross_entropy(v[0], t, o); },
                   {randn64({5, 4}, 1, 2.0)});
        // batch 1, non-contiguous logits (a transposed (C, N) tensor)
        check_grad([o](const std::vector<Var>& v) { return ops::cross_entropy(v[0], i64({2}, {1}), o); },
                   {randn64({1, 4}, 2)});
        check_grad(
            [o](const std::vector<Var>& v) {
              return ops::cross_entropy(ops::transpose(v[0], 0, 1), i64({1, 3, 0}, {3}), o);
            },
            {randn64({4, 3}, 3)});
      }
  // 1x1: one class, loss and gradient 0 (still checked)
  check_grad([](const std::vector<Var>& v) { return ops::cross_entropy(v[0], i64({0}, {1})); },
             {randn64({1, 1}, 4)});
  check_scalar(ops::cross_entropy(Var(f64({3.0}, {1, 1})), i64({0}, {1})), 0.0, 0);
}

TEST_CASE("cross_entropy rejects bad targets, shapes, dtypes and options") {
  const Var z(randn64({2, 3}, 1));
  const std::string msg = error_of([&] { ops::cross_entropy(z, i64({0, 3}, {2})); });
  CHECK(contains(msg, "cross_entropy"));
  CHECK(contains(msg, "target 3"));
  CHECK(contains(msg, "index 1"));
  CHECK(contains(msg, "3 classes"));
  CHECK_THROWS_AS(ops::cross_entropy(z, i64({-1, 0}, {2})), Error);
  CHECK_THROWS_AS(ops::cross_entropy(z, f64({0, 1}, {2})), Error);                      // float targets
  CHECK_THROWS_AS(ops::cross_entropy(z, i64({0, 1}, {2}).to(DType::int32)), Error);     // int32 targets
  CHECK_THROWS_AS(ops::cross_entropy(z, i64({0, 1, 2}, {3})), Error);                   // wrong N
  CHECK_THROWS_AS(ops::cross_entropy(z, i64({0, 1}, {2, 1})), Error);                   // 2-D targets
  CHECK_THROWS_AS(ops::cross_entropy(Var(randn64({3}, 2)), i64({0}, {1})), Error);      // 1-D logits
  CHECK_THROWS_AS(ops::cross_entropy(Var(i64({0, 1}, {1, 2})), i64({0}, {1})), Error);  // int logits
  ops::CrossEntropyOptions o;
  o.weight = f64({1, 1}, {2});
  CHECK_THROWS_AS(ops::cross_entropy(z, i64({0, 1}, {2}), o), Error);
  o = {};
  o.label_smoothing = 1.5;
  CHECK_THROWS_AS(ops::cross_entropy(z, i64({0, 1}, {2}), o), Error);
  o = {};
  o.reduction = Reduction::batchmean;
  CHECK_THROWS_AS(ops::cross_entropy(z, i64({0, 1}, {2}), o), Error);
}

// ---- BCE with logits --------------------------------------------------------------------------------------
TEST_CASE("binary_cross_entropy_with_logits by hand, with pos_weight, and at extreme logits") {
  const std::vector<double> xs = {0.5, -1, 2, 0}, ys = {1, 0, 0, 0.5};
  const Tensor x = f64(xs, {2, 2}), y = f64(ys, {2, 2});
  auto sig = [](double v) { return 1 / (1 + std::exp(-v)); };
  std::vector<double> e(4), ew(4);
  const double pw[2] = {2.0, 0.5};
  double sum = 0, sum_w = 0;
  for (int i = 0; i < 4; ++i) {
    e[i] = -(ys[i] * std::log(sig(xs[i])) + (1 - ys[i]) * std::log(1 - sig(xs[i])));
    ew[i] = -(pw[i % 2] * ys[i] * std::log(sig(xs[i])) + (1 - ys[i]) * std::log(1 - sig(xs[i])));
    sum += e[i];
    sum_w += ew[i];
  }
  check_scalar(ops::binary_cross_entropy_with_logits(Var(x), Var(y)), sum / 4, 1e-14);
  check_scalar(ops::binary_cross_entropy_with_logits(Var(x), Var(y), Tensor(), Reduction::sum), sum, 1e-14);
  check_close(ops::binary_cross_entropy_with_logits(Var(x), Var(y), Tensor(), Reduction::none).value(), e, 0,
               1e-14);
  const Tensor pos = f64({2.0, 0.5}, {2});
  check_scalar(ops::binary_cross_entropy_with_logits(Var(x), Var(y), pos), sum_w / 4, 1e-14);
  check_close(ops::binary_cross_entropy_with_logits(Var(x), Var(y), pos, Reduction::none).value(), ew, 0,
               1e-14);
  // stable at ±200 where log σ would underflow naively
  for (DType dt : {DType::float32, DType::float64}) {
    Var l = ops::binary_cross_entropy_with_logits(Var(f64({200, -200}, {2}).to(dt)),
                                                  Var(f64({0, 1}, {2}).to(dt)), Tensor(), Reduction::none);
    check_close(l.value(), {200, 200}, 0, 1e-4);
  }
}

TEST_CASE("binary_cross_entropy_with_logits backward for logits and targets") {
  const Tensor pos = f64({2.0, 0.5, 1.5}, {3});
  for (Reduction r : {Reduction::mean, Reduction::sum, Reduction::none})
    for (bool use_pos : {false, true}) {
      CAPTURE(ops::reduction_name(r));
      CAPTURE(use_pos);
      const Tensor pw = use_pos ? pos : Tensor();
      check_grad(
          [pw, r](const std::vector<Var>& v) {
            return ops::binary_cross_entropy_with_logits(v[0], v[1], pw, r);
          },
          {randn64({4, 3}, 1, 3.0), uniform64({4, 3}, 2, 0.0, 1.0)});
      check_grad(
          [pw, r](const std::vector<Var>& v) {
            return ops::binary_cross_entropy_with_logits(ops::transpose(v[0], 0, 1), v[1], pw, r);
          },
          {randn64({3, 2}, 3), uniform64({2, 3}, 4, 0.0, 1.0)});
    }
  // targets fixed (the usual case): only the logits are checked
  check_grad([](const std::vector<Var>& v) { return ops::binary_cross_entropy_with_logits(v[0], v[1]); },
             {randn64({1, 1}, 5), f64({1.0}, {1, 1})}, {1});
}

TEST_CASE("binary_cross_entropy_with_logits errors") {
  const Var x(randn64({2, 3}, 1));
  CHECK_THROWS_AS(ops::binary_cross_entropy_with_logits(x, Var(randn64({3, 2}, 2))), Error);
  CHECK_THROWS_AS(ops::binary_cross_entropy_with_logits(x, Var(randn64({2, 3}, 2).to(DType::float32))),
                  Error);
  CHECK_THROWS_AS(ops::binary_cross_entropy_with_logits(x, Var(randn64({2, 3}, 2)), f64({1, 1}, {2})), Error);
  CHECK_THROWS_AS(
      ops::binary_cross_entropy_with_logits(x, Var(randn64({2, 3}, 2)), Tensor(), Reduction::batchmean),
      Error);
}

// ---- MSE --------------------------------------------------------------------------------------------------
TEST_CASE("mse_loss values, gradients and errors") {
  const Tensor a = f64({1, 2, 3}, {3}), b = f64({0, 4, 3.5}, {3});
  check_scalar(ops::mse_loss(Var(a), Var(b)), (1 + 4 + 0.25) / 3, 1e-15);
  check_scalar(ops::mse_loss(Var(a), Var(b), Reduction::sum), 5.25, 1e-15);
  check_close(ops::mse_loss(Var(a), Var(b), Reduction::none).value(), {1, 4, 0.25}, 0, 1e-15);
  for (Reduction r : {Reduction::mean, Reduction::sum, Reduction::none}) {
    CAPTURE(ops::reduction_name(r));
    check_grad([r](const std::vector<Var>& v) { return ops::mse_loss(v[0], v[1], r); },
               {randn64({3, 4}, 1), randn64({3, 4}, 2)});
    check_grad([r](const std::vector<Var>& v) { return ops::mse_loss(ops::transpose(v[0], 0, 1), v[1], r); },
               {randn64({4, 3}, 3), randn64({3, 4}, 4)});
  }
  check_grad([](const std::vector<Var>& v) { return ops::mse_loss(v[0], v[1]); },
             {randn64({1, 1}, 5), randn64({1, 1}, 6)}, {1});
  CHECK_THROWS_AS(ops::mse_loss(Var(a), Var(f64({1, 2}, {2}))), Error);
  CHECK_THROWS_AS(ops::mse_loss(Var(a), Var(b.to(DType::float32))), Error);
  CHECK_THROWS_AS(ops::mse_loss(Var(a), Var(b), Reduction::batchmean), Error);
}

// ---- KL divergence ----------------------------------------------------------------------------------------
TEST_CASE("kl_div with temperature on a 2-row example by hand: batchmean, sum, mean, none") {
  const std::vector<double> s = {1, 2, 3, 0, 0, 1}, t = {3, 2, 1, 1, 1, 1};
  const double tau = 2.0;
  std::vector<double> terms(6);
  double total = 0;
  for (int r = 0; r < 2; ++r) {
    double zs = 0, zt = 0;
    for (int c = 0; c < 3; ++c) {
      zs += std::exp(s[r * 3 + c] / tau);
      zt += std::exp(t[r * 3 + c] / tau);
    }
    for (int c = 0; c < 3; ++c) {
      const double p = std::exp(t[r * 3 + c] / tau) / zt, q = std::exp(s[r * 3 + c] / tau) / zs;
      terms[r * 3 + c] = p * std::log(p / q);
      total += terms[r * 3 + c];
    }
  }
  const Var vs(f64(s, {2, 3})), vt(f64(t, {2, 3}));
  check_scalar(ops::kl_div(vs, vt, tau), total / 2, 1e-15);  // batchmean is the default
  check_scalar(ops::kl_div(vs, vt, tau, Reduction::sum), total, 1e-15);
  check_scalar(ops::kl_div(vs, vt, tau, Reduction::mean), total / 6, 1e-15);
  check_close(ops::kl_div(vs, vt, tau, Reduction::none).value(), terms, 0, 1e-15);
  // float32 agrees; identical logits give 0
  check_scalar(
      ops::kl_div(Var(f64(s, {2, 3}).to(DType::float32)), Var(f64(t, {2, 3}).to(DType::float32)), tau),
      total / 2, 1e-6);
  check_scalar(ops::kl_div(vs, vs, 3.0), 0.0, 1e-15);
}

TEST_CASE("kl_div equals PyTorch's kl_div(log_softmax(s/τ), softmax(t/τ)) and batchmean divides by dim 0") {
  const Tensor s = randn64({2, 3, 4}, 1, 2.0),
               t = randn64({2, 3, 4}, 2, 2.0);  // attention-map-like (B, N, N)
  const double tau = 1.5;
  const Var log_q = ops::log_softmax(ops::div(Var(s), tau), -1);
  const Var p = ops::softmax(ops::div(Var(t), tau), -1);
  const Var log_p = ops::log_softmax(ops::div(Var(t), tau), -1);
  for (Reduction r : {Reduction::batchmean, Reduction::sum, Reduction::mean, Reduction::none}) {
    CAPTURE(ops::reduction_name(r));
    const std::vector<double> fused = ops::kl_div(Var(s), Var(t), tau, r).value().to_vector<double>();
    check_close(ops::kl_div_log_input(log_q, p, false, r).value(), fused, 0, 1e-14);
    check_close(ops::kl_div_log_input(log_q, log_p, true, r).value(), fused, 0, 1e-14);
  }
  const double sum = ops::kl_div(Var(s), Var(t), tau, Reduction::sum).item<double>();
  check_scalar(ops::kl_div(Var(s), Var(t), tau, Reduction::batchmean), sum / 2, 1e-15);
  check_scalar(ops::kl_div(Var(s), Var(t), tau, Reduction::mean), sum / 24, 1e-15);
}

TEST_CASE("kl_div backward for student and teacher logits passes the gradient checker") {
  for (Reduction r : {Reduction::batchmean, Reduction::sum, Reduction::mean, Reduction::none})
    for (double tau : {1.0, 2.5}) {
      CAPTURE(ops::reduction_name(r));
      CAPTURE(tau);
      check_grad([tau, r](const std::vector<Var>& v) { return ops::kl_div(v[0], v[1], tau, r); },
                 {randn64({3, 5}, 1, 2.0), randn64({3, 5}, 2, 2.0)});
      check_grad([tau, r](const std::vector<Var>& v) { return ops::kl_div(v[0], v[1], tau, r); },
                 {randn64({2, 3, 4}, 3), randn64({2, 3, 4}, 4)});
      check_grad(
          [tau, r](const std::vector<Var>& v) {
            return ops::kl_div(ops::transpose(v[0], 0, 1), v[1], tau, r);
          },
          {randn64({4, 2}, 5), randn64({2, 4}, 6)});
      check_grad([tau, r](const std::vector<Var>& v) { return ops::kl_div(v[0], v[1], tau, r); },
                 {randn64({1, 1}, 7), randn64({1, 1}, 8)});
    }
  // the usual case: a detached teacher
  check_grad([](const std::vector<Var>& v) { return ops::kl_div(v[0], v[1], 4.0); },
             {randn64({2, 6}, 9), randn64({2, 6}, 10)}, {1});
  // gradient by hand for batchmean: (q − p) / (τ·B)
  const Tensor s = f64({1, 2, 3}, {1, 3}), t = f64({3, 2, 1}, {1, 3});
  Var vs(s, true);
  ops::kl_div(vs, Var(t), 2.0).backward();
  const double zs = std::exp(0.5) + std::exp(1.0) + std::exp(1.5), zt = zs;
  check_close(
      vs.grad(),
      {(std::exp(0.5) / zs - std::exp(1.5) / zt) / 2, 0.0, (std::exp(1.5) / zs - std::exp(0.5) / zt) / 2}, 0,
      1e-15);
}

TEST_CASE("kl_div with a masked (-inf) teacher logit stays finite") {
  const double inf = std::numeric_limits<double>::infinity();
  Var s(f64({0.3, -0.2, 1.0}, {1, 3}), true);
  Var t(f64({0.0, -inf, 1.0}, {1, 3}), true);
  Var l = ops::kl_div(s, t, 1.0, Reduction::sum);
  const double p0 = 1 / (1 + std::exp(1.0)), p2 = 1 - p0;
  const double lz = std::log(std::exp(0.3) + std::exp(-0.2) + std::exp(1.0));
  check_scalar(l, p0 * (std::log(p0) - (0.3 - lz)) + p2 * (std::log(p2) - (1.0 - lz)), 1e-14);
  l.backward();
  for (double g : s.grad().to_vector<double>()) CHECK(std::isfinite(g));
  for (double g : t.grad().to_vector<double>()) CHECK(std::isfinite(g));
  CHECK(t.grad().at({0, 1}) == 0.0);
}

TEST_CASE("kl_div_log_input backward for input and target, both target forms") {
  for (bool log_target : {false, true})
    for (Reduction r : {Reduction::batchmean, Reduction::sum, Reduction::mean, Reduction::none}) {
      CAPTURE(log_target);
      CAPTURE(ops::reduction_name(r));
      const Tensor target = log_target ? randn64({3, 4}, 2) : uniform64({3, 4}, 2, 0.05, 1.0);
      check_grad([log_target,
                  r](const std::vector<Var>& v) { return ops::kl_div_log_input(v[0], v[1], log_target, r); },
                 {randn64({3, 4}, 1), target});
    }
  // PyTorch's xlogy convention: a zero target contributes nothing
  check_close(
      ops::kl_div_log_input(Var(f64({-1.0, -2.0}, {2})), Var(f64({0.0, 0.5}, {2})), false, Reduction::none)
          .value(),
      {0.0, 0.5 * (std::log(0.5) + 2.0)}, 0, 1e-15);
}

TEST_CASE("kl_div errors") {
  const Var a(randn64({2, 3}, 1));
  CHECK_THROWS_AS(ops::kl_div(a, Var(randn64({3, 2}, 2))), Error);
  CHECK_THROWS_AS(ops::kl_div(a, Var(randn64({2, 3}, 2)), 0.0), Error);
  CHECK_THROWS_AS(ops::kl_div(a, Var(randn64({2, 3}, 2)), -1.0), Error);
  CHECK_THROWS_AS(ops::kl_div(a, Var(randn64({2, 3}, 2).to(DType::float32))), Error);
  CHECK_THROWS_AS(
      ops::kl_div(Var(Tensor::scalar(1.0, DType::float64)), Var(Tensor::scalar(1.0, DType::float64))), Error);
  CHECK_THROWS_AS(ops::kl_div_log_input(a, Var(randn64({2, 2}, 3))), Error);
  const std::string msg = error_of([&] { ops::kl_div(a, Var(randn64({2, 4}, 2))); });
  CHECK(contains(msg, "kl_div"));
  CHECK(contains(msg, "(2, 4)"));
}
