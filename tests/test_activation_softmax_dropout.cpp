// tests/test_activation_softmax_dropout.cpp — activations, softmax / log-softmax and dropout / drop_path:
// forward values against hand-computed numbers, gradients at the kinks (PyTorch's convention), error paths,
// and the statistics and reproducibility of the dropout masks. The gradient checks of every op are the op
// registry's (tests/test_ops.cpp).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "retikd/autograd/gradcheck.hpp"
#include "retikd/core/random.hpp"
#include "retikd/ops/activation.hpp"
#include "retikd/ops/cpu/vec_math.hpp"
#include "retikd/ops/dropout.hpp"
#include "retikd/ops/shape.hpp"
#include "retikd/ops/softmax.hpp"
#include "test_util.hpp"

using namespace retikd;
using namespace retikd::test;


// ---- activations ------------------------------------------------------------------------------------------
TEST_CASE("relu, relu6 and leaky_relu forward match hand values, in float32 and float64") {
  for (DType dt : {DType::float32, DType::float64}) {
    Tensor x = f64({-2.0, -0.5, 0.0, 0.5, 3.0, 6.5}, {2, 3}).to(dt);
    check_close(ops::relu(Var(x)).value(), {0, 0, 0, 0.5, 3.0, 6.5}, 0, 1e-7);
    check_close(ops::relu6(Var(x)).value(), {0, 0, 0, 0.5, 3.0, 6.0}, 0, 1e-7);
    check_close(ops::leaky_relu(Var(x), 0.2).value(), {-0.4, -0.1, 0, 0.5, 3.0, 6.5}, 0, 1e-7);
    CHECK(ops::relu(Var(x)).dtype() == dt);
  }
  // default slope is PyTorch's 0.01
  check_close(ops::leaky_relu(Var(f64({-3.0}, {1}))).value(), {-0.03}, 0, 1e-15);
}

TEST_CASE("gelu (erf and tanh approximation), silu, sigmoid and tanh forward values") {
  Tensor one = f64({1.0, -1.0, 0.0}, {3});
  check_close(ops::gelu(Var(one)).value(), {0.8413447460685429, -0.15865525393145707, 0.0}, 0, 1e-15);
  check_close(ops::gelu(Var(one), ops::GeluApprox::tanh).value(),
               {0.8411919906082768, -0.15880800939172324, 0.0}, 0, 1e-15);
  check_close(ops::silu(Var(one)).value(), {0.7310585786300049, -0.2689414213699951, 0.0}, 0, 1e-15);
  check_close(ops::sigmoid(Var(one)).value(), {0.7310585786300049, 0.2689414213699951, 0.5}, 0, 1e-15);
  check_close(ops::tanh(Var(f64({0.5, -2.0}, {2}))).value(), {0.46211715726000974, -0.9640275800758169}, 0,
               1e-15);
  // float32 agrees with float64
  Tensor x = randn64({4, 5}, 3);
  check_close(ops::gelu(Var(x.to(DType::float32))).value(), ops::gelu(Var(x)).value().to_vector<double>(), 0,
               1e-6);
  check_close(ops::gelu(Var(x.to(DType::float32)), ops::GeluApprox::tanh).value(),
               ops::gelu(Var(x), ops::GeluApprox::tanh).value().to_vector<double>(), 0, 1e-6);
}

TEST_CASE("SIMD float exp and erf (cpu/vec_math.hpp) agree with libm, specials included") {
  // A dense grid over exp's whole normal range and erf's transition; lengths that are not a multiple of the
  // vector width exercise the padded tail.
  const int64_t n = 200003;
  std::vector<float> x(static_cast<std::size_t>(n)), y(x.size());
  for (int64_t i = 0; i < n; ++i) x[i] = -87.0f + 167.0f * static_cast<float>(i) / static_cast<float>(n);
  std::vector<float> g(x.size(), 1.0f);
  double worst_exp = 0.0;
  {
    std::vector<float> shifted(x.size());
    const float total = cpu::vec::exp_shifted_sum(x.data(), 0.0f, shifted.data(), n);
    double ref_total = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const double e = std::exp(static_cast<double>(x[i]));
      ref_total += e;
      if (e < 3.0e38) worst_exp = std::max(worst_exp, std::fabs(shifted[i] - e) / e);
    }
    CHECK(std::fabs(total - ref_total) <= 1e-6 * ref_total);
  }
  CHECK(worst_exp < 2.5e-7);  // ~2 float ulp
  double worst_erf = 0.0, worst_gelu = 0.0, worst_dgelu = 0.0;
  for (int64_t i = 0; i < n; ++i) x[i] = -6.0f + 12.0f * static_cast<float>(i) / static_cast<float>(n);
  cpu::vec::gelu_erf(x.data(), y.data(), n);
  std::vector<float> dy(x.size());
  cpu::vec::gelu_erf_backward(g.data(), x.data(), dy.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i], cdf = 0.5 * (1.0 + std::erf(v / std::sqrt(2.0)));
    worst_gelu = std::max(worst_gelu, std::fabs(y[i] - v * cdf) / std::max(1.0, std::fabs(v)));
    worst_dgelu = std::max(worst_dgelu, std::fabs(dy[i] - (cdf + v * std::exp(-0.5 * v * v) * 0.3989422804014327)));
  }
  CHECK(worst_gelu < 2e-7);
  CHECK(worst_dgelu < 3e-7);
#if defined(RETIKD_VEC_MATH)
  const float specials[] = {-INFINITY, INFINITY, NAN, 0.0f, -0.0f, 1e-30f, -1.0f, 0.999f, 3.99f, 4.5f, -88.0f, 88.7f,
                            89.0f, -87.3f, 20.0f, -3.0f};
  float erf_out[16], exp_out[16];
  for (int i = 0; i < 16; i += cpu::vec::kLanes) {
    cpu::vec::store(erf_out + i, cpu::vec::erf(cpu::vec::load(specials + i)));
    cpu::vec::store(exp_out + i, cpu::vec::exp(cpu::vec::load(specials + i)));
  }
  for (int i = 0; i < 16; ++i) {
    CAPTURE(specials[i]);
    const double e = std::exp(static_cast<double>(specials[i])), r = std::erf(static_cast<double>(specials[i]));
    if (std::isnan(specials[i])) {
      CHECK(std::isnan(erf_out[i]));
      CHECK(std::isnan(exp_out[i]));
      continue;
    }
    CHECK(std::fabs(erf_out[i] - r) <= 1.5e-7 * std::max(1e-30, std::fabs(r)) + 1e-37);
    if (e > 3.4028234663852886e38) {
      CHECK(std::isinf(exp_out[i]));
    } else if (e < 1.1754943508222875e-38) {
      CHECK(exp_out[i] == 0.0f);  // flushed below FLT_MIN
    } else {
      CHECK(std::fabs(exp_out[i] - e) <= 2.5e-7 * e);
    }
  }
  cpu::vec::map1(x.data(), y.data(), n, [](cpu::vec::VF v) { return cpu::vec::erf(v); });
  for (int64_t i = 0; i < n; ++i)
    worst_erf = std::max(worst_erf, std::fabs(y[i] - std::erf(static_cast<double>(x[i]))));
  CHECK(worst_erf < 1.5e-7);  // glibc's erff: 5e-8 on the same grid
#endif
}

TEST_CASE("sigmoid and silu are numerically stable at extreme inputs") {
  for (DType dt : {DType::float32, DType::float64}) {
    Tensor x = f64({-800.0, -100.0, 100.0, 800.0}, {4}).to(dt);
    std::vector<double> s = ops::sigmoid(Var(x)).value().to_vector<double>();
    for (double v : s) CHECK(std::isfinite(v));
    CHECK(s[0] == 0.0);
    CHECK(s[1] >= 0.0);
    CHECK(s[1] < 1e-40);
    CHECK(s[3] == 1.0);
    std::vector<double> si = ops::silu(Var(x)).value().to_vector<double>();
    for (double v : si) CHECK(std::isfinite(v));
    CHECK(si[3] == doctest::Approx(800.0));
    // the backward at saturation is 0, not NaN
    Var v(x, true);
    ops::sigmoid(v).backward(Tensor::ones({4}, dt));
    for (double gv : v.grad().to_vector<double>()) CHECK(std::isfinite(gv));
  }
}

TEST_CASE("activation gradients at the kinks follow PyTorch") {
  Tensor x = f64({0.0, 6.0, -1.0, 2.0}, {4});
  auto grad_of = [&](auto fn) {
    Var v(x, true);
    fn(v).backward(Tensor::ones({4}, DType::float64));
    return v.grad().to_vector<double>();
  };
  CHECK(grad_of([](const Var& v) { return ops::relu(v); }) == std::vector<double>{0, 1, 0, 1});
  CHECK(grad_of([](const Var& v) { return ops::relu6(v); }) == std::vector<double>{0, 0, 0, 1});
  CHECK(grad_of([](const Var& v) { return ops::leaky_relu(v, 0.2); }) == std::vector<double>{0.2, 1, 0.2, 1});
}

TEST_CASE("activations reject integer tensors and mismatched gradients") {
  Tensor ints = Tensor::arange(4);  // int64
  CHECK_THROWS_AS(ops::relu(Var(ints)), Error);
  CHECK_THROWS_AS(ops::gelu(Var(ints)), Error);
  CHECK_THROWS_AS(ops::sigmoid(Var(ints)), Error);
  Tensor x = randn64({2, 3}, 1);
  CHECK_THROWS_AS(ops::impl::relu_backward(Tensor::ones({3, 2}, DType::float64), x), Error);
  CHECK_THROWS_AS(ops::impl::tanh_backward(Tensor::ones({2, 3}, DType::float32), x), Error);
}

// ---- softmax ----------------------------------------------------------------------------------------------
TEST_CASE("softmax and log_softmax of [1, 2, 3]") {
  const std::vector<double> sm = {0.09003057317038046, 0.24472847105479767, 0.6652409557748219};
  const std::vector<double> lsm = {-2.40760596444438, -1.40760596444438, -0.40760596444438};
  for (DType dt : {DType::float32, DType::float64}) {
    const double tol = dt == DType::float32 ? 1e-6 : 1e-14;
    Tensor x = f64({1, 2, 3}, {3}).to(dt);
    check_close(ops::softmax(Var(x), 0).value(), sm, 0, tol);
    check_close(ops::log_softmax(Var(x), -1).value(), lsm, 0, tol);
    // max-subtracted: huge logits give the same answer, no overflow
    Tensor big = f64({1001, 1002, 1003}, {3}).to(dt);
    check_close(ops::softmax(Var(big), 0).value(), sm, 0, tol);
    check_close(ops::log_softmax(Var(big), 0).value(), lsm, 0, 1e-4);
  }
}

namespace {
// Independent reference: softmax of a contiguous float64 tensor along d by explicit index arithmetic.
std::vector<double> softmax_ref(const Tensor& x, int64_t d, bool log) {
  const Tensor c = x.contiguous();
  const std::vector<double> v = c.to_vector<double>();
  const Shape s = c.shape();
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < d; ++i) outer *= s[i];
  for (int64_t i = d + 1; i < static_cast<int64_t>(s.size()); ++i) inner *= s[i];
  const int64_t n = s[d];
  std::vector<double> out(v.size());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < inner; ++j) {
      double m = -1e300, z = 0;
      for (int64_t k = 0; k < n; ++k) m = std::max(m, v[(o * n + k) * inner + j]);
      for (int64_t k = 0; k < n; ++k) z += std::exp(v[(o * n + k) * inner + j] - m);
      for (int64_t k = 0; k < n; ++k) {
        const double e = v[(o * n + k) * inner + j] - m;
        out[(o * n + k) * inner + j] = log ? e - std::log(z) : std::exp(e) / z;
      }
    }
  return out;
}
}  // namespace

TEST_CASE("softmax over dim 0, a middle dim, the last dim, and of a transposed view") {
  Tensor x = randn64({3, 5, 70}, 7);  // 70 inner lanes: more than one lane block
  for (int64_t d : {0, 1, 2}) {
    CAPTURE(d);
    check_close(ops::softmax(Var(x), d).value(), softmax_ref(x, d, false), 0, 1e-14);
    check_close(ops::log_softmax(Var(x), d).value(), softmax_ref(x, d, true), 0, 1e-12);
  }
  // big enough to be split across threads, along the last and the first dim
  Tensor wide = randn64({64, 512}, 10);
  for (int64_t d : {0, 1}) {
    CAPTURE(d);
    check_close(ops::softmax(Var(wide), d).value(), softmax_ref(wide, d, false), 0, 1e-14);
    check_close(ops::log_softmax(Var(wide), d).value(), softmax_ref(wide, d, true), 0, 1e-12);
  }
  // rows sum to one along the reduced dim
  Tensor s1 = ops::softmax(Var(x), 1).value();
  for (int64_t j = 0; j < 70; j += 13) {
    double sum = 0;
    for (int64_t k = 0; k < 5; ++k) sum += s1.at({2, k, j});
    CHECK(sum == doctest::Approx(1.0).epsilon(1e-12));
  }
  // a transposed view: softmax(xᵀ, 1) == softmax(x, 0)ᵀ
  Tensor m = randn64({4, 6}, 8);
  Tensor mt = m.transpose(0, 1);
  REQUIRE_FALSE(mt.is_contiguous());
  Tensor a = ops::softmax(Var(mt), 1).value();
  Tensor b = ops::softmax(Var(m), 0).value().transpose(0, 1).contiguous();
  check_close(a, b.to_vector<double>(), 0, 1e-15);
  // 1x1 and 0-d
  check_close(ops::softmax(Var(f64({5.0}, {1, 1})), 1).value(), {1.0}, 0, 0);
  check_close(ops::log_softmax(Var(f64({5.0}, {1, 1})), 0).value(), {0.0}, 0, 0);
  check_close(ops::softmax(Var(Tensor::scalar(2.0, DType::float64)), 0).value(), {1.0}, 0, 0);
}

TEST_CASE("float32 softmax rows (SIMD path) agree with float64, masked and huge logits included") {
  for (int64_t n : {int64_t(1), int64_t(5), int64_t(16), int64_t(197)}) {  // shorter than, equal to, and
    CAPTURE(n);                                                            // not a multiple of the vector width
    Tensor x = ops::mul(Var(randn64({6, n}, 30 + static_cast<uint64_t>(n))), 4.0).value();
    Tensor g = randn64({6, n}, 40 + static_cast<uint64_t>(n));
    Var x32(x.to(DType::float32), true), x64(x, true);
    Var y32 = ops::softmax(x32, 1), y64 = ops::softmax(x64, 1);
    check_close(y32.value(), y64.value().to_vector<double>(), 0, 1e-6);
    y32.backward(g.to(DType::float32));
    y64.backward(g);
    check_close(x32.grad(), x64.grad().to_vector<double>(), 0, 1e-5);
  }
  // -inf (masked) logits give exact zeros; 1e30 and its neighbours do not overflow.
  Tensor m = f64({0.0, -INFINITY, 1.0, -INFINITY, 2.0, -INFINITY, 1e30, 1e30, -1e30, 0.0, 0.0, 0.0}, {2, 6})
                 .to(DType::float32);
  const std::vector<double> p = ops::softmax(Var(m), 1).value().to_vector<double>();
  const double z = 1.0 + std::exp(1.0) + std::exp(2.0);
  check_close(ops::softmax(Var(m), 1).value(),
               {1.0 / z, 0.0, std::exp(1.0) / z, 0.0, std::exp(2.0) / z, 0.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0}, 0, 1e-7);
  CHECK(p[1] == 0.0);
  CHECK(p[3] == 0.0);
}

TEST_CASE("softmax errors name the op") {
  Tensor x = randn64({2, 3}, 1);
  CHECK_THROWS_AS(ops::softmax(Var(x), 2), Error);
  CHECK_THROWS_AS(ops::log_softmax(Var(x), -3), Error);
  CHECK_THROWS_AS(ops::softmax(Var(Tensor::arange(3)), 0), Error);  // int64
  CHECK_THROWS_AS(ops::impl::softmax_backward(Tensor::ones({3, 2}, DType::float64), x, 1), Error);
  try {
    ops::softmax(Var(x), 5);
    FAIL("no throw");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("softmax") != std::string::npos);
  }
}

// ---- dropout ----------------------------------------------------------------------------------------------
TEST_CASE("dropout keeps about 1-p of the elements, scales them by 1/(1-p), reproducibly per seed") {
  const double p = 0.3;
  const int64_t n = 200000;
  Tensor ones = Tensor::ones({n / 100, 100});
  Generator g1(42), g2(42), g3(43);
  Tensor a = ops::dropout(Var(ones), p, true, g1).value();
  Tensor b = ops::dropout(Var(ones), p, true, g2).value();
  Tensor c = ops::dropout(Var(ones), p, true, g3).value();
  std::vector<float> va = a.to_vector<float>(), vb = b.to_vector<float>(), vc = c.to_vector<float>();
  CHECK(va == vb);
  CHECK(va != vc);
  int64_t kept = 0;
  double sum = 0;
  bool values_ok = true;
  for (float v : va) {
    if (v != 0.0f) {
      ++kept;
      values_ok = values_ok && std::fabs(v - 1.0 / (1.0 - p)) < 1e-6;
    }
    sum += v;
  }
  CHECK(values_ok);
  const double frac = static_cast<double>(kept) / n;
  CHECK(frac == doctest::Approx(1.0 - p).epsilon(0.015));  // σ ≈ 0.001, so this is > 5σ
  CHECK(sum / n == doctest::Approx(1.0).epsilon(0.02));    // inverted dropout keeps the expectation
  // the next call of the same generator draws a different mask
  Tensor a2 = ops::dropout(Var(ones), p, true, g1).value();
  CHECK(a2.to_vector<float>() != va);
}

TEST_CASE("dropout backward uses the forward mask") {
  Generator g(7);
  Tensor x = randn64({50, 40}, 5);
  Var v(x, true);
  Var y = ops::dropout(v, 0.5, true, g);
  Tensor w = randn64({50, 40}, 6);
  y.backward(w);
  // grad = w ⊙ mask, and mask = y / x elementwise (x has no zeros)
  std::vector<double> gx = v.grad().to_vector<double>(), yv = y.value().to_vector<double>(),
                      xv = x.to_vector<double>(), wv = w.to_vector<double>();
  int dropped = 0;
  bool ok = true;
  for (std::size_t i = 0; i < gx.size(); ++i) {
    const double mask = yv[i] / xv[i];
    ok = ok && (mask == 0.0 || std::fabs(mask - 2.0) < 1e-12);
    ok = ok && std::fabs(gx[i] - wv[i] * mask) < 1e-12;
    dropped += mask == 0.0;
  }
  CHECK(ok);
  CHECK(dropped > 900);
  CHECK(dropped < 1100);
  // gradient checker with a mask fixed by a fresh generator per call
  check_grad(
      [](const std::vector<Var>& in) {
        Generator fixed(99);
        return ops::dropout(in[0], 0.4, true, fixed);
      },
      {randn64({3, 7}, 2)});
}

TEST_CASE("dropout is the identity in eval or with p = 0, and zero with p = 1") {
  Generator g(1);
  Var x(randn64({4, 5}, 1), true);
  CHECK(same_var(ops::dropout(x, 0.5, false, g), x));
  CHECK(same_var(ops::dropout(x, 0.0, true, g), x));
  Var z = ops::dropout(x, 1.0, true, g);
  for (double v : z.value().to_vector<double>()) CHECK(v == 0.0);
  z.backward(Tensor::ones({4, 5}, DType::float64));
  for (double v : x.grad().to_vector<double>()) CHECK(v == 0.0);
  CHECK_THROWS_AS(ops::dropout(x, -0.1, true, g), Error);
  CHECK_THROWS_AS(ops::dropout(x, 1.5, true, g), Error);
  CHECK_THROWS_AS(ops::dropout(Var(Tensor::arange(3)), 0.5, true, g), Error);
}

TEST_CASE("drop_path drops whole samples with probability p and scales the others") {
  const double p = 0.25;
  Generator g(3);
  Tensor x = Tensor::ones({4000, 3, 2});
  Tensor y = ops::drop_path(Var(x), p, true, g).value();
  int64_t kept = 0;
  bool per_sample = true;
  for (int64_t b = 0; b < 4000; ++b) {
    const double first = y.at({b, 0, 0});
    per_sample = per_sample && (first == 0.0 || std::fabs(first - 1.0 / (1.0 - p)) < 1e-6);
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t j = 0; j < 2; ++j) per_sample = per_sample && y.at({b, i, j}) == first;
    kept += first != 0.0;
  }
  CHECK(per_sample);
  CHECK(static_cast<double>(kept) / 4000 == doctest::Approx(1.0 - p).epsilon(0.04));
  // reproducible, and unscaled when scale_by_keep is false
  Generator ga(5), gb(5);
  Tensor y1 = ops::drop_path(Var(x), p, true, ga).value();
  Tensor y2 = ops::drop_path(Var(x), p, true, gb, false).value();
  std::vector<double> v1 = y1.to_vector<double>(), v2 = y2.to_vector<double>();
  bool same_mask = true;
  for (std::size_t i = 0; i < v1.size(); ++i) same_mask = same_mask && (v1[i] == 0.0) == (v2[i] == 0.0);
  CHECK(same_mask);
  bool unscaled = true;
  for (double v : v2) unscaled = unscaled && (v == 0.0 || v == 1.0);
  CHECK(unscaled);
  // identity in eval, zeros at p = 1, and a backward through the same mask
  Var xv(randn64({6, 2, 3}, 4), true);
  CHECK(same_var(ops::drop_path(xv, 0.5, false, g), xv));
  for (double v : ops::drop_path(xv, 1.0, true, g).value().to_vector<double>()) CHECK(v == 0.0);
  check_grad(
      [](const std::vector<Var>& in) {
        Generator fixed(12);
        return ops::drop_path(in[0], 0.5, true, fixed);
      },
      {randn64({6, 2, 3}, 4)});
  CHECK_THROWS_AS(ops::drop_path(Var(Tensor::scalar(1.0)), 0.5, true, g), Error);
  CHECK_THROWS_AS(ops::drop_path(xv, 2.0, true, g), Error);
}
