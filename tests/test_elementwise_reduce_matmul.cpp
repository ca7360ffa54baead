// tests/test_elementwise_reduce_matmul.cpp — broadcasting arithmetic, unary math, comparisons, reductions,
// matmul (all operand ranks, broadcast batches, transposed views) and linear: forward values against
// hand-computed or independently computed ones, and the backward cases a registry entry cannot state (the
// fused-bias CPU path of linear, sum_to). The gradient checks of every op are the op registry's
// (tests/test_ops.cpp).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "retikd/autograd/gradcheck.hpp"
#include "retikd/core/random.hpp"
#include "retikd/ops/elementwise.hpp"
#include "retikd/ops/matmul.hpp"
#include "retikd/ops/reduce.hpp"
#include "test_util.hpp"

using namespace retikd;
using namespace retikd::test;

namespace {
Tensor dvec(std::vector<double> v, Shape s) { return Tensor::from_vector(v, s); }
std::vector<double> vals(const Var& v) { return v.value().to_vector<double>(); }
Tensor rnd(const Shape& s, uint64_t seed, double lo = -1, double hi = 1) {
  Generator g(seed);
  Tensor t = Tensor::empty(s, DType::float64);
  return uniform_(t, lo, hi, g);
}
// C = A·B by the definition, in double.
Tensor naive_matmul(const Tensor& a, const Tensor& b) {
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  Tensor c = Tensor::zeros({M, N}, DType::float64);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += a.at({i, k}) * b.at({k, j});
      c.data<double>()[i * N + j] = s;
    }
  return c;
}
}  // namespace

TEST_CASE("broadcasting arithmetic forward") {
  Var a(dvec({1, 2, 3, 4, 5, 6}, {2, 3})), b(dvec({10, 20, 30}, {3})), c(dvec({100, 200}, {2, 1}));
  CHECK(vals(a + b) == std::vector<double>{11, 22, 33, 14, 25, 36});
  CHECK(vals(a - c) == std::vector<double>{-99, -98, -97, -196, -195, -194});
  CHECK(vals(a * b) == std::vector<double>{10, 40, 90, 40, 100, 180});
  CHECK(vals(b / a) == std::vector<double>{10, 10, 10, 2.5, 4, 5});
  CHECK((b + c).shape() == Shape{2, 3});
  CHECK(vals(ops::maximum(a, Var(dvec({3}, {1})))) == std::vector<double>{3, 3, 3, 4, 5, 6});
  CHECK(vals(ops::minimum(a, Var(dvec({3}, {1})))) == std::vector<double>{1, 2, 3, 3, 3, 3});
  CHECK(vals(a * 2.0 + 1.0) == std::vector<double>{3, 5, 7, 9, 11, 13});
  CHECK(vals(-a) == std::vector<double>{-1, -2, -3, -4, -5, -6});
  CHECK_THROWS_AS(a + Var(dvec({1, 2}, {2})), Error);
  CHECK_THROWS_AS(a + Var(Tensor::ones({3})), Error);  // float32 + float64: explicit conversion required
}

TEST_CASE("unary math forward values") {
  Var x(dvec({0.25, 1.0, 4.0}, {3}));
  auto e = vals(ops::exp(x));
  CHECK(e[1] == doctest::Approx(std::exp(1.0)));
  CHECK(vals(ops::log(x))[2] == doctest::Approx(std::log(4.0)));
  CHECK(vals(ops::sqrt(x)) == std::vector<double>{0.5, 1.0, 2.0});
  CHECK(vals(ops::square(x)) == std::vector<double>{0.0625, 1.0, 16.0});
  CHECK(vals(ops::pow(x, 1.5))[2] == doctest::Approx(8.0));
  CHECK(vals(ops::abs(Var(dvec({-2, 0, 3}, {3})))) == std::vector<double>{2, 0, 3});
  CHECK(vals(ops::clamp(Var(dvec({-2, 0.5, 3}, {3})), 0, 1)) == std::vector<double>{0, 0.5, 1});
  CHECK_THROWS_AS(ops::clamp(x, 1, 0), Error);
}

TEST_CASE("comparisons give 0/1 masks without gradients") {
  Var a(dvec({1, 2, 3}, {3}), true), b(dvec({2}, {1}));
  CHECK(vals(ops::lt(a, b)) == std::vector<double>{1, 0, 0});
  CHECK(vals(ops::le(a, b)) == std::vector<double>{1, 1, 0});
  CHECK(vals(ops::gt(a, b)) == std::vector<double>{0, 0, 1});
  CHECK(vals(ops::ge(a, b)) == std::vector<double>{0, 1, 1});
  CHECK(vals(ops::eq(a, b)) == std::vector<double>{0, 1, 0});
  CHECK(vals(ops::ne(a, b)) == std::vector<double>{1, 0, 1});
  CHECK(!ops::lt(a, b).requires_grad());
}

TEST_CASE("reductions forward") {
  Var t(Tensor::arange(0.0, 24.0, 1.0, DType::float64).reshape({2, 3, 4}));
  CHECK(ops::sum(t).item<double>() == 276);
  CHECK(vals(ops::sum(t, {1})) == std::vector<double>{12, 15, 18, 21, 48, 51, 54, 57});
  CHECK(ops::sum(t, {1}, true).shape() == Shape{2, 1, 4});
  CHECK(vals(ops::sum(t, {0, 2})) == std::vector<double>{60, 92, 124});
  CHECK(vals(ops::sum(t, {-1})) == std::vector<double>{6, 22, 38, 54, 70, 86});
  CHECK(vals(ops::mean(t, {2})) == std::vector<double>{1.5, 5.5, 9.5, 13.5, 17.5, 21.5});
  CHECK(ops::mean(t).item<double>() == 11.5);
  Var m(dvec({1, 7, 7, -2, 0, 3}, {2, 3}));
  CHECK(vals(ops::max(m, 1)) == std::vector<double>{7, 3});
  CHECK(vals(ops::max(m, 0)) == std::vector<double>{1, 7, 7});
  CHECK(ops::argmax(m, 1).to_vector<int64_t>() == std::vector<int64_t>{1, 2});  // first of the tie
  CHECK(ops::argmax(m, 0, true).shape() == Shape{1, 3});
  CHECK(ops::max(m).item<double>() == 7);
  // A permuted view reduces like its contiguous copy.
  Var p(t.value().permute({2, 0, 1}));
  CHECK(vals(ops::sum(p, {0})) == vals(ops::sum(Var(p.value().contiguous()), {0})));
  CHECK_THROWS_AS(ops::sum(t, {3}), Error);
  CHECK_THROWS_AS(ops::sum(t, {1, 1}), Error);
}

TEST_CASE("matmul forward against the definition, every rank and layout") {
  Tensor a = rnd({5, 7}, 11), b = rnd({7, 3}, 12);
  check_close(ops::impl::matmul(a, b), naive_matmul(a, b), 1e-12, 1e-12);
  // Transposed views reach the GEMM as flags.
  Tensor at = rnd({7, 5}, 13), bt = rnd({3, 7}, 14);
  check_close(ops::impl::matmul(at.transpose(0, 1), bt.transpose(0, 1)),
              naive_matmul(at.transpose(0, 1).contiguous(), bt.transpose(0, 1).contiguous()), 1e-12, 1e-12);
  // A strided (sliced) operand.
  Tensor wide = rnd({5, 14}, 15);
  Tensor sl = wide.slice(1, 0, 14, 2);
  check_close(ops::impl::matmul(sl, b), naive_matmul(sl.contiguous(), b), 1e-12, 1e-12);
  // Vectors.
  Tensor v = rnd({7}, 16);
  check_close(ops::impl::matmul(a, v), naive_matmul(a, v.reshape({7, 1})).reshape({5}), 1e-12, 1e-12);
  check_close(ops::impl::matmul(v, b), naive_matmul(v.reshape({1, 7}), b).reshape({3}), 1e-12, 1e-12);
  CHECK(ops::impl::matmul(v, v).item<double>() ==
        doctest::Approx(naive_matmul(v.reshape({1, 7}), v.reshape({7, 1})).item<double>()));
  // Broadcast batches: (2, 1, 5, 7) · (3, 7, 3) → (2, 3, 5, 3).
  Tensor ba = rnd({2, 1, 5, 7}, 17), bb = rnd({3, 7, 3}, 18);
  Tensor out = ops::impl::matmul(ba, bb);
  REQUIRE(out.shape() == Shape{2, 3, 5, 3});
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 3; ++j)
      check_close(out.narrow(0, i, 1).narrow(1, j, 1).reshape({5, 3}),
                  naive_matmul(ba.narrow(0, i, 1).reshape({5, 7}), bb.narrow(0, j, 1).reshape({7, 3})), 1e-12, 1e-12);
  // A batch against one matrix (stride-0 operand), in float32.
  Tensor fa = rnd({4, 6, 9}, 19).to(DType::float32), fb = rnd({9, 2}, 20).to(DType::float32);
  Tensor fo = ops::impl::matmul(fa, fb);
  for (int64_t i = 0; i < 4; ++i)
    check_close(fo.narrow(0, i, 1).reshape({6, 2}).to(DType::float64),
                naive_matmul(fa.narrow(0, i, 1).reshape({6, 9}).to(DType::float64), fb.to(DType::float64)), 1e-5, 1e-5);
  CHECK_THROWS_AS(ops::impl::matmul(a, a), Error);
  CHECK_THROWS_AS(ops::impl::matmul(rnd({2, 5, 7}, 1), rnd({3, 7, 2}, 2)), Error);
  CHECK_THROWS_AS(ops::impl::matmul(Tensor::scalar(1.0, DType::float64), a), Error);
}

TEST_CASE("linear equals matmul + bias, rejects bad shapes, and fuses the bias on the CPU") {
  Tensor x = rnd({3, 5}, 40), w = rnd({4, 5}, 41), b = rnd({4}, 42);
  Var y = ops::linear(Var(x), Var(w), Var(b));
  check_close(y.value(), ops::impl::add(naive_matmul(x, w.transpose(0, 1).contiguous()), b), 1e-12, 1e-12);
  CHECK_THROWS_AS(ops::linear(Var(x), Var(rnd({4, 6}, 1))), Error);
  CHECK_THROWS_AS(ops::linear(Var(x), Var(w), Var(rnd({3}, 1))), Error);
  // The CPU path adds the bias inside the GEMM: a transposed (non-contiguous) input, a transposed weight and a
  // sliced bias, float32, large enough to be threaded, against matmul + broadcast add.
  Tensor xt = rnd({40, 3, 70}, 43).to(DType::float32).transpose(0, 2);  // (70, 3, 40)
  Tensor wt = rnd({40, 90}, 44).to(DType::float32).transpose(0, 1);     // (90, 40)
  Tensor bs = rnd({180}, 45).to(DType::float32).slice(0, 0, 180, 2);   // (90,), stride 2
  Tensor yl = ops::linear(Var(xt), Var(wt), Var(bs)).value();
  Tensor yr = ops::impl::add(ops::impl::matmul(xt, wt.transpose(0, 1)), bs.contiguous());
  REQUIRE(yl.shape() == Shape{70, 3, 90});
  check_close(yl.to(DType::float64), yr.to(DType::float64), 1e-5, 1e-5);
  CHECK_THROWS_AS(ops::linear(Var(xt), Var(wt), Var(bs.to(DType::float64))), Error);
}

TEST_CASE("sum_to over leading dimensions (bias gradients) equals the general strided reduction bit for bit") {
  for (DType dt : {DType::float32, DType::float64}) {
    Tensor g = rnd({37, 9, 300}, 46).to(dt);                          // contiguous: the column-sum path
    Tensor strided = g.transpose(0, 2).contiguous().transpose(0, 2);  // same values, general path
    REQUIRE_FALSE(strided.is_contiguous());
    const std::vector<double> fast = ops::impl::sum_to(g, {300}).to_vector<double>();
    CHECK(fast == ops::impl::sum_to(strided, {300}).to_vector<double>());
    CHECK(ops::impl::sum_to(g, {9, 300}).to_vector<double>() == ops::impl::sum_to(strided, {9, 300}).to_vector<double>());
    double worst = 0.0;
    for (int64_t j = 0; j < 300; j += 7) {
      double ref = 0.0;
      for (int64_t a = 0; a < 37; ++a)
        for (int64_t b = 0; b < 9; ++b) ref += g.at({a, b, j});
      worst = std::max(worst, std::fabs(fast[static_cast<std::size_t>(j)] - ref));
    }
    CHECK(worst < (dt == DType::float32 ? 1e-4 : 1e-12));
  }
}
