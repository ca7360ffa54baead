// tests/test_optim.cpp — SGD (momentum, dampening, Nesterov, weight decay) and AdamW steps against the update
// rules computed by hand, parameter groups, the warm-up + cosine schedule, gradient clipping, state round trip.
#include <doctest/doctest.h>

#include <cmath>

#include "retikd/ops/elementwise.hpp"
#include "retikd/ops/reduce.hpp"
#include "retikd/optim/optim.hpp"

using namespace retikd;

namespace {
Var param(std::vector<double> v) { return Var(Tensor::from_vector(v, {int64_t(v.size())}), true); }
void set_grad(Var& p, std::vector<double> g) { p.mutable_grad() = Tensor::from_vector(g, {int64_t(g.size())}); }
std::vector<double> vals(const Var& p) { return p.value().to_vector<double>(); }
}  // namespace

TEST_CASE("SGD with momentum, dampening and weight decay follows PyTorch's rule") {
  Var p = param({1.0, -2.0});
  optim::SGD sgd({p}, {/*lr*/ 0.1, /*momentum*/ 0.9, /*dampening*/ 0.5, /*wd*/ 0.01, false});
  set_grad(p, {0.5, 1.0});
  sgd.step();
  // g = grad + wd·p = (0.51, 0.98); first step: b = g; p -= 0.1·b
  CHECK(vals(p)[0] == doctest::Approx(1.0 - 0.1 * 0.51));
  CHECK(vals(p)[1] == doctest::Approx(-2.0 - 0.1 * 0.98));
  const double p0 = vals(p)[0];
  set_grad(p, {0.5, 1.0});
  sgd.step();
  // g = 0.5 + 0.01·p0; b = 0.9·0.51 + 0.5·g
  const double g = 0.5 + 0.01 * p0, b = 0.9 * 0.51 + 0.5 * g;
  CHECK(vals(p)[0] == doctest::Approx(p0 - 0.1 * b));
  CHECK(sgd.state().count("0.momentum_buffer") == 1);
}

TEST_CASE("SGD Nesterov and plain") {
  Var p = param({1.0});
  optim::SGD sgd({p}, {0.1, 0.9, 0.0, 0.0, true});
  set_grad(p, {1.0});
  sgd.step();  // b = 1; g = 1 + 0.9 = 1.9
  CHECK(vals(p)[0] == doctest::Approx(1.0 - 0.19));
  set_grad(p, {1.0});
  sgd.step();  // b = 0.9 + 1 = 1.9; g = 1 + 0.9·1.9 = 2.71
  CHECK(vals(p)[0] == doctest::Approx(0.81 - 0.271));
  Var q = param({3.0});
  optim::SGD plain({q}, {0.5});
  set_grad(q, {2.0});
  plain.step();
  CHECK(vals(q)[0] == doctest::Approx(2.0));
  CHECK_THROWS_AS(optim::SGD({q}, {0.1, 0.0, 0.0, 0.0, true}), Error);
  CHECK_THROWS_AS(optim::SGD({Var(Tensor::zeros({1}), false)}, {0.1}), Error);
}

TEST_CASE("AdamW: bias-corrected first steps and decoupled decay") {
  Var p = param({1.0, 2.0});
  optim::AdamW adam({p}, {/*lr*/ 0.01, 0.9, 0.999, 1e-8, /*wd*/ 0.1});
  set_grad(p, {0.3, -4.0});
  adam.step();
  // m̂ = g, v̂ = g² → step = lr·sign(g) (up to ε); decay first: p·(1 − lr·wd)
  CHECK(vals(p)[0] == doctest::Approx(1.0 * (1 - 0.001) - 0.01).epsilon(1e-9));
  CHECK(vals(p)[1] == doctest::Approx(2.0 * (1 - 0.001) + 0.01).epsilon(1e-9));
  const double q0 = vals(p)[0];
  set_grad(p, {0.1, -4.0});
  adam.step();
  const double m = 0.9 * 0.03 + 0.1 * 0.1, v = 0.999 * 0.001 * 0.09 + 0.001 * 0.01;
  const double mhat = m / (1 - 0.81), vhat = v / (1 - 0.999 * 0.999);
  CHECK(vals(p)[0] == doctest::Approx(q0 * (1 - 0.001) - 0.01 * mhat / (std::sqrt(vhat) + 1e-8)).epsilon(1e-9));
  CHECK(adam.step_count() == 2);
}

TEST_CASE("parameter groups keep their own lr and weight decay; parameters without gradients are skipped") {
  Var a = param({1.0}), b = param({1.0}), c = param({1.0});
  optim::SGD sgd(std::vector<optim::ParamGroup>{{{a}, 0.1, 0.0, "head"}, {{b, c}, 0.01, 0.0, "backbone"}}, {});
  set_grad(a, {1.0});
  set_grad(b, {1.0});
  sgd.step();
  CHECK(vals(a)[0] == doctest::Approx(0.9));
  CHECK(vals(b)[0] == doctest::Approx(0.99));
  CHECK(vals(c)[0] == 1.0);
  sgd.zero_grad();
  CHECK(!a.grad().defined());
}

TEST_CASE("AdamW minimises a quadratic; the state round-trips") {
  Var x = param({3.0, -5.0, 0.5});
  optim::AdamW adam({x}, {0.1, 0.9, 0.999, 1e-8, 0.0});
  for (int i = 0; i < 500; ++i) {
    adam.zero_grad();
    Var loss = ops::sum(ops::square(x - 1.0));
    loss.backward();
    adam.step();
  }
  for (double v : vals(x)) CHECK(v == doctest::Approx(1.0).epsilon(1e-2));
  // Restoring the state into a fresh optimizer reproduces the next step exactly.
  Var y = param(vals(x));
  optim::AdamW other({y}, {0.1, 0.9, 0.999, 1e-8, 0.0});
  other.load_state(adam.state());
  set_grad(x, {0.2, 0.2, 0.2});
  set_grad(y, {0.2, 0.2, 0.2});
  adam.step();
  other.step();
  CHECK(vals(x) == vals(y));
}

TEST_CASE("warm-up + cosine schedule") {
  Var p = param({0.0});
  optim::SGD sgd({p}, {1.0});
  optim::WarmupCosineSchedule sched(sgd, 4, 14, 0.1);
  CHECK(sgd.groups()[0].lr == doctest::Approx(0.25));  // step 0 of 4 warm-up steps
  for (int i = 0; i < 3; ++i) sched.step();
  CHECK(sgd.groups()[0].lr == doctest::Approx(1.0));   // end of warm-up
  sched.step();
  CHECK(sgd.groups()[0].lr == doctest::Approx(1.0));   // cosine starts at the top
  sched.set_step(9);                                   // half-way through the 10 cosine steps
  CHECK(sgd.groups()[0].lr == doctest::Approx(0.1 + 0.9 * 0.5));
  sched.set_step(14);
  CHECK(sgd.groups()[0].lr == doctest::Approx(0.1));
  CHECK_THROWS_AS(optim::WarmupCosineSchedule(sgd, 5, 3), Error);
}

TEST_CASE("gradient clipping by global norm") {
  Var a = param({3.0}), b = param({4.0});
  set_grad(a, {3.0});
  set_grad(b, {4.0});
  CHECK(optim::clip_grad_norm({a, b}, 1.0) == doctest::Approx(5.0));
  CHECK(a.grad().item<double>() == doctest::Approx(0.6).epsilon(1e-5));
  CHECK(b.grad().item<double>() == doctest::Approx(0.8).epsilon(1e-5));
  CHECK(optim::clip_grad_norm({a, b}, 10.0) == doctest::Approx(1.0).epsilon(1e-5));
  CHECK(a.grad().item<double>() == doctest::Approx(0.6).epsilon(1e-5));  // unchanged under the limit
}
