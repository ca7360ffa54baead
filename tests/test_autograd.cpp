// tests/test_autograd.cpp — the tape: gradients of composed ops, accumulation over several uses and several
// backward calls, detach, NoGradGuard, the error when backward reaches an op without a backward, and the
// gradient checker itself (it must flag a wrong backward); backward hooks (what data parallelism builds on).
#include <doctest/doctest.h>

#include <algorithm>

#include "retikd/autograd/backward_hook.hpp"
#include "retikd/autograd/gradcheck.hpp"
#include "retikd/autograd/var.hpp"
#include "retikd/ops/elementwise.hpp"
#include "retikd/ops/reduce.hpp"

using namespace retikd;

namespace {
Var leaf(std::vector<double> v, Shape s) { return Var(Tensor::from_vector(v, s), true); }
}  // namespace

TEST_CASE("backward of a composed expression matches hand derivatives") {
  // f(x, y) = sum(x * y + x) with x = [1, 2], y = [3, 4]: df/dx = y + 1, df/dy = x
  Var x = leaf({1, 2}, {2}), y = leaf({3, 4}, {2});
  Var f = ops::sum(x * y + x);
  CHECK(f.item<double>() == 1 * 3 + 2 * 4 + 1 + 2);
  f.backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{4, 5});
  CHECK(y.grad().to_vector<double>() == std::vector<double>{1, 2});
}

TEST_CASE("a Var used twice accumulates, and so do repeated backward calls") {
  Var x = leaf({3}, {1});
  Var f = ops::sum(x * x * x);  // 3x^2 = 27
  f.backward();
  CHECK(x.grad().item<double>() == doctest::Approx(27.0));
  Var g = ops::sum(x * 2.0);
  g.backward();
  CHECK(x.grad().item<double>() == doctest::Approx(29.0));
  x.zero_grad();
  CHECK(!x.grad().defined());
}

TEST_CASE("add returning one gradient twice does not alias into the accumulator") {
  Var x = leaf({1, 1}, {2});
  Var y = x + x;  // backward returns g for both inputs
  Var z = ops::sum(y * y);
  z.backward();
  // z = sum (2x)^2 -> dz/dx = 8x
  CHECK(x.grad().to_vector<double>() == std::vector<double>{8, 8});
}

TEST_CASE("detach and NoGradGuard cut the tape") {
  Var x = leaf({2}, {1});
  Var d = x.detach();
  CHECK(!d.requires_grad());
  Var f = ops::sum(x * d);  // d is a constant 2
  f.backward();
  CHECK(x.grad().item<double>() == 2.0);
  {
    NoGradGuard guard;
    Var g = x * x;
    CHECK(!g.requires_grad());
    CHECK(g.is_leaf());
    CHECK_THROWS_AS(g.backward(), Error);
  }
  CHECK((x * x).requires_grad());
  CHECK_THROWS_AS(Var(Tensor::arange(3), true), Error);  // int64 cannot require a gradient
}

TEST_CASE("backward from a non-scalar needs an explicit gradient of its shape") {
  Var x = leaf({1, 2, 3}, {3});
  Var y = x * 2.0;
  CHECK_THROWS_AS(y.backward(), Error);
  CHECK_THROWS_AS(y.backward(Tensor::ones({2}, DType::float64)), Error);
  y.backward(Tensor::from_vector(std::vector<double>{1, 0, -1}, {3}));
  CHECK(x.grad().to_vector<double>() == std::vector<double>{2, 0, -2});
}

TEST_CASE("an op without a backward fails when backward reaches it, naming it") {
  Var x = leaf({1, 2}, {2});
  Var y = make_result(x.value().clone(), "frobnicate", {x}, nullptr);
  Var z = ops::sum(y);
  try {
    z.backward();
    FAIL("backward should have thrown");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("frobnicate") != std::string::npos);
  }
  // ... but only when reached: a branch cut by detach never triggers it.
  Var w = ops::sum(x + y.detach());
  w.backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{1, 1});
}

TEST_CASE("deep chains do not overflow the stack") {
  Var x = leaf({1.0}, {1});
  Var y = x;
  for (int i = 0; i < 100000; ++i) y = y * 1.0;
  ops::sum(y).backward();
  CHECK(x.grad().item<double>() == 1.0);
}

TEST_CASE("gradcheck passes a right backward and flags a wrong one") {
  Generator g(5);
  Tensor a = randn({3, 2}, g, DType::float64);
  auto good = gradcheck([](const std::vector<Var>& v) { return v[0] * v[0]; }, {a});
  CHECK(good.ok);
  CHECK(good.checked == 6);
  // A deliberately wrong backward (derivative of x^2 given as x instead of 2x).
  auto wrong = gradcheck(
      [](const std::vector<Var>& v) {
        Tensor x = v[0].value();
        return make_result(ops::impl::mul(x, x), "square_wrong", {v[0]},
                           [x](const Tensor& gr) -> std::vector<Tensor> { return {ops::impl::mul(gr, x)}; });
      },
      {a});
  CHECK(!wrong.ok);
  CHECK(wrong.message.find("input 0") != std::string::npos);
  // A missing contribution (backward returns nothing for the second input).
  Tensor b = randn({3, 2}, g, DType::float64);
  auto missing = gradcheck(
      [](const std::vector<Var>& v) {
        Tensor x = v[0].value(), y = v[1].value();
        return make_result(ops::impl::mul(x, y), "mul_half", {v[0], v[1]},
                           [y](const Tensor& gr) -> std::vector<Tensor> { return {ops::impl::mul(gr, y), Tensor()}; });
      },
      {a, b});
  CHECK(!missing.ok);
  CHECK_THROWS_AS(gradcheck([](const std::vector<Var>& v) { return v[0] * v[0]; },
                            {Tensor::ones({2})}),  // float32 is rejected
                  Error);
}

namespace {
// Records what a BackwardHook sees; takes the gradients of `owned` and adds them doubled at the end.
struct RecordingHook : BackwardHook {
  std::vector<const VarImpl*> owned;
  std::vector<const VarImpl*> begun_with, finished;
  std::vector<std::pair<VarImpl*, Tensor>> taken;
  int ends = 0;
  void on_backward_begin(const std::vector<const VarImpl*>& leaves) override { begun_with = leaves; }
  bool on_leaf_gradient(VarImpl* leaf, const Tensor& grad) override {
    finished.push_back(leaf);
    if (std::find(owned.begin(), owned.end(), leaf) == owned.end()) return false;
    taken.emplace_back(leaf, grad);
    return true;
  }
  void on_backward_end() override {
    ++ends;
    for (auto& t : taken) accumulate_grad(t.first->grad, ops::impl::mul_scalar(t.second, 2.0), "test hook");
    taken.clear();
  }
};
}  // namespace

TEST_CASE("backward hooks see each leaf once, when its gradient is complete, and may take it") {
  Var a = leaf({1, 2}, {2}), b = leaf({3, 4}, {2}), c = leaf({5, 6}, {2});
  Var unused = leaf({7}, {1});
  RecordingHook hook;
  hook.owned = {b.impl()};
  add_backward_hook(&hook);
  // b feeds two ops: its gradient is complete only after both, so it must be finished once, with the sum.
  Var y = ops::sum(ops::add(ops::mul(a, b), ops::mul(b, c)));
  y.backward();
  remove_backward_hook(&hook);
  CHECK(hook.ends == 1);
  CHECK(hook.begun_with.size() == 3);  // a, b, c: the reachable leaves (not `unused`)
  CHECK(std::count(hook.finished.begin(), hook.finished.end(), b.impl()) == 1);
  CHECK(hook.finished.size() == 3);
  CHECK(a.grad().to_vector<double>() == std::vector<double>{3, 4});   // untouched by the hook: ∂/∂a = b
  CHECK(b.grad().to_vector<double>() == std::vector<double>{12, 16});  // taken, then added doubled: 2·(a + c)
  CHECK(!unused.grad().defined());
  // Removed: the next backward is the plain tape again.
  b.zero_grad();
  ops::sum(ops::mul(a, b)).backward();
  CHECK(b.grad().to_vector<double>() == std::vector<double>{1, 2});
}
