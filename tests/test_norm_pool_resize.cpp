// tests/test_norm_pool_resize.cpp — max / avg / adaptive-avg pooling, batch norm (train and eval, running
// statistics), layer norm, bilinear and bicubic resize: forward values computed by hand, by direct loops written
// here or by PyTorch (bicubic: tests/golden/dinov2_golden.safetensors), gradients where a rule matters (max
// pool's shared maxima, batch norm's statistics), non-contiguous inputs, and the shape errors. The gradient
// checks of every op are the op registry's (tests/test_ops.cpp).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include <retikd/autograd/gradcheck.hpp>
#include <retikd/core/random.hpp>
#include <retikd/ops/norm.hpp>
#include <retikd/ops/pool.hpp>
#include <retikd/ops/resize.hpp>

#include "golden_util.hpp"
#include "test_util.hpp"

using namespace retikd;
using namespace retikd::test;

namespace {


Tensor arange_image(int64_t h, int64_t w, DType dtype = DType::float32) {
  return Tensor::arange(0.0, static_cast<double>(h * w), 1.0, dtype).view({1, 1, h, w});
}

std::vector<double> values(const Var& v) { return v.value().to_vector<double>(); }

// Direct-loop pooling reference over explicit windows (padding = −∞ for max; divisor rule of PyTorch).
Tensor reference_pool(const Tensor& x, int64_t k, int64_t s, int64_t p, bool ceil_mode, bool is_max,
                      bool count_include_pad) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  auto out_size = [&](int64_t in) {
    double o = static_cast<double>(in + 2 * p - k) / static_cast<double>(s);
    int64_t out = static_cast<int64_t>(ceil_mode ? std::ceil(o) : std::floor(o)) + 1;
    if (ceil_mode && (out - 1) * s >= in + p) --out;
    return out;
  };
  const int64_t OH = out_size(H), OW = out_size(W);
  std::vector<double> y;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          double best = -std::numeric_limits<double>::infinity(), sum = 0.0;
          int64_t inside = 0, padded = 0;
          for (int64_t i = 0; i < k; ++i)
            for (int64_t j = 0; j < k; ++j) {
              const int64_t h = oh * s - p + i, w = ow * s - p + j;
              if (h < H + p && w < W + p) ++padded;  // inside the padded image
              if (h < 0 || h >= H || w < 0 || w >= W) continue;
              const double v = x.at({n, c, h, w});
              best = std::max(best, v);
              sum += v;
              ++inside;
            }
          y.push_back(is_max ? best : sum / static_cast<double>(count_include_pad ? padded : inside));
        }
  return Tensor::from_vector(y, {N, C, OH, OW});
}

}  // namespace

// ---- max pool ---------------------------------------------------------------------------------------------

TEST_CASE("max_pool2d: hand-computed values, indices and ceil_mode") {
  // x = 0..24 in a 5×5 image.
  const Var x(arange_image(5, 5));
  Var y = ops::max_pool2d(x, 2, 2);
  CHECK(y.shape() == Shape{1, 1, 2, 2});
  check_close(values(y), {6, 8, 16, 18}, 1e-6, 1e-6);
  Var yc = ops::max_pool2d(x, 2, 2, 0, /*ceil_mode=*/true);
  CHECK(yc.shape() == Shape{1, 1, 3, 3});
  check_close(values(yc), {6, 8, 9, 16, 18, 19, 21, 23, 24}, 1e-6, 1e-6);
  // Overlapping 3×3 windows, stride 1, padding 1: the max of each neighbourhood.
  const Var z(Tensor::from_vector<float>({3, 1, 2, 0, 9, 1, 4, 1, 5}, {1, 1, 3, 3}));
  check_close(values(ops::max_pool2d(z, 3, 1, 1)), {9, 9, 9, 9, 9, 9, 9, 9, 9}, 1e-6, 1e-6);
  check_close(values(ops::max_pool2d(z, 2, 1)), {9, 9, 9, 9}, 1e-6, 1e-6);
  auto r = ops::impl::max_pool2d(z.value(), 2, 1, 0, false);
  CHECK(r.second.to_vector<int64_t>() == std::vector<int64_t>{4, 4, 4, 4});
  // Non-square kernel and stride.
  check_close(values(ops::max_pool2d(x, {2, 3}, {3, 2})), {7, 9, 22, 24}, 1e-6, 1e-6);
  // Negative inputs and padding: padding never wins.
  const Var neg(Tensor::full({1, 1, 2, 2}, -5.0));
  check_close(values(ops::max_pool2d(neg, 2, 1, 1)), std::vector<double>(9, -5.0), 1e-6, 1e-6);
}

TEST_CASE("max_pool2d: matches a direct-loop reference, and NaN propagates") {
  uint64_t seed = 1;
  for (int64_t k : {2, 3}) {
    for (int64_t s : {1, 2, 3}) {
      for (int64_t p = 0; p <= k / 2; ++p) {
        for (bool ceil_mode : {false, true}) {
          const Tensor x = random_tensor({2, 3, 7, 6}, ++seed);
          CAPTURE(k);
          CAPTURE(s);
          CAPTURE(p);
          CAPTURE(ceil_mode);
          CHECK(max_abs_diff(ops::max_pool2d(Var(x), k, s, p, ceil_mode).value(),
                             reference_pool(x, k, s, p, ceil_mode, true, true)) == 0.0);
          CHECK(max_abs_diff(ops::avg_pool2d(Var(x), k, s, p, ceil_mode, true).value(),
                             reference_pool(x, k, s, p, ceil_mode, false, true)) < 1e-12);
          CHECK(max_abs_diff(ops::avg_pool2d(Var(x), k, s, p, ceil_mode, false).value(),
                             reference_pool(x, k, s, p, ceil_mode, false, false)) < 1e-12);
        }
      }
    }
  }
  Tensor x = Tensor::from_vector<float>({1, std::nanf(""), 3, 4}, {1, 1, 2, 2});
  CHECK(std::isnan(ops::max_pool2d(Var(x), 2).item<float>()));
}

TEST_CASE("max_pool2d: overlapping windows that share a maximum add their gradients there") {
  Var z(Tensor::from_vector<double>({3, 1, 2, 0, 9, 1, 4, 1, 5}, {1, 1, 3, 3}), true);
  ops::max_pool2d(z, 2, 1).backward(Tensor::ones({1, 1, 2, 2}, DType::float64));
  CHECK(z.grad().to_vector<double>() == std::vector<double>{0, 0, 0, 0, 4, 0, 0, 0, 0});
}

// ---- average pools ----------------------------------------------------------------------------------------

TEST_CASE("avg_pool2d: hand-computed values and the count_include_pad divisor") {
  const Var x(arange_image(3, 3));  // 0..8
  check_close(values(ops::avg_pool2d(x, 2, 1)), {2, 3, 5, 6}, 1e-6, 1e-6);
  // 3×3 windows, padding 1: the corner window holds 0+1+3+4 = 8 over 9 slots (4 of them real).
  Var with_pad = ops::avg_pool2d(x, 3, 1, 1, false, true);
  Var without = ops::avg_pool2d(x, 3, 1, 1, false, false);
  CHECK(values(with_pad)[0] == doctest::Approx(8.0 / 9.0));
  CHECK(values(without)[0] == doctest::Approx(2.0));
  CHECK(values(with_pad)[4] == doctest::Approx(4.0));  // centre: 36 / 9
  CHECK(values(without)[1] == doctest::Approx(15.0 / 6.0));  // top edge: 0+1+2+3+4+5 over 6
  // ceil_mode: the last window hangs past the edge; PyTorch divides by the part inside the padded input.
  const Var x5(arange_image(5, 5));
  Var yc = ops::avg_pool2d(x5, 2, 2, 0, true, true);
  CHECK(yc.shape() == Shape{1, 1, 3, 3});
  check_close(values(yc), {3, 5, 6.5, 13, 15, 16.5, 20.5, 22.5, 24}, 1e-6, 1e-6);
}

TEST_CASE("adaptive_avg_pool2d: PyTorch's bins, hand-computed") {
  // H = 5 → 3 bins: [0,2), [1,4), [3,5); W = 1 → 1 bin.
  const Var col(Tensor::from_vector<float>({0, 1, 2, 3, 4}, {1, 1, 5, 1}));
  check_close(values(ops::adaptive_avg_pool2d(col, 3, 1)), {0.5, 2.0, 3.5}, 1e-6, 1e-6);
  // Upsampling bins (2 → 3): [0,1), [0,2), [1,2).
  const Var two(Tensor::from_vector<float>({2, 6}, {1, 1, 1, 2}));
  check_close(values(ops::adaptive_avg_pool2d(two, 1, 3)), {2, 4, 6}, 1e-6, 1e-6);
  // (1, 1) is the global average; equal sizes are the identity.
  const Var x(arange_image(4, 6));
  check_close(values(ops::adaptive_avg_pool2d(x, 1, 1)), {11.5}, 1e-6, 1e-6);
  CHECK(max_abs_diff(ops::adaptive_avg_pool2d(x, 4, 6).value(), x.value()) == 0.0);
  // Divisible sizes equal avg_pool2d with kernel = stride = in / out.
  CHECK(max_abs_diff(ops::adaptive_avg_pool2d(x, 2, 3).value(), ops::avg_pool2d(x, 2, 2).value()) < 1e-6);
}

TEST_CASE("pools: non-contiguous inputs") {
  const Tensor base = random_tensor({2, 7, 6, 3}, 50);
  const Tensor x = base.permute({0, 3, 1, 2});  // (2, 3, 7, 6), channels-last storage
  REQUIRE(!x.is_contiguous());
  const Tensor xc = x.contiguous();
  CHECK(max_abs_diff(ops::max_pool2d(Var(x), 3, 2, 1).value(), ops::max_pool2d(Var(xc), 3, 2, 1).value()) == 0.0);
  CHECK(max_abs_diff(ops::avg_pool2d(Var(x), 3, 2, 1).value(), ops::avg_pool2d(Var(xc), 3, 2, 1).value()) == 0.0);
  CHECK(max_abs_diff(ops::adaptive_avg_pool2d(Var(x), 3, 4).value(),
                     ops::adaptive_avg_pool2d(Var(xc), 3, 4).value()) == 0.0);
  CHECK(max_abs_diff(ops::max_pool2d(Var(x), 3, 2, 1).value(), reference_pool(x, 3, 2, 1, false, true, true)) == 0.0);
  // Non-contiguous output gradient.
  Var v1(x, true), v2(xc, true);
  Var y1 = ops::avg_pool2d(v1, 2), y2 = ops::avg_pool2d(v2, 2);
  const Tensor g = random_tensor({2, 3, 3, 3}, 51).transpose(2, 3);
  y1.backward(g);
  y2.backward(g.contiguous());
  CHECK(max_abs_diff(v1.grad(), v2.grad()) == 0.0);
}

TEST_CASE("pools: bad shapes and arguments throw") {
  const Var x(Tensor::zeros({1, 2, 4, 4}));
  CHECK_THROWS_AS(ops::max_pool2d(Var(Tensor::zeros({2, 4, 4})), 2), retikd::Error);
  CHECK_THROWS_AS(ops::max_pool2d(x, 5), retikd::Error);          // kernel larger than the input
  CHECK_THROWS_AS(ops::max_pool2d(x, 2, 1, 2), retikd::Error);    // padding above half the kernel
  CHECK_THROWS_AS(ops::max_pool2d(x, 0), retikd::Error);
  CHECK_THROWS_AS(ops::max_pool2d(x, 2, -1), retikd::Error);
  CHECK_THROWS_AS(ops::avg_pool2d(x, {2, 5}), retikd::Error);
  CHECK_THROWS_AS(ops::avg_pool2d(x, 3, 1, -1), retikd::Error);
  CHECK_THROWS_AS(ops::adaptive_avg_pool2d(x, 0, 2), retikd::Error);
  CHECK_THROWS_AS(ops::adaptive_avg_pool2d(Var(Tensor::zeros({4, 4})), 2, 2), retikd::Error);
  CHECK_THROWS_AS(ops::max_pool2d(Var(Tensor::zeros({1, 2, 4, 4}, DType::int64)), 2), retikd::Error);
  try {
    ops::max_pool2d(x, 5);
    FAIL("no exception");
  } catch (const retikd::Error& e) {
    CHECK(std::string(e.what()).find("max_pool2d") != std::string::npos);
    CHECK(std::string(e.what()).find("(1, 2, 4, 4)") != std::string::npos);
  }
}

// ---- batch norm -------------------------------------------------------------------------------------------

TEST_CASE("batch_norm: training normalises with batch statistics and updates the running ones") {
  // (N, C) = (4, 1): mean 2.5, biased variance 1.25, unbiased 5/3.
  const Var x(Tensor::from_vector<double>({1, 2, 3, 4}, {4, 1}));
  Tensor rm = Tensor::zeros({1}), rv = Tensor::ones({1});
  Var y = ops::batch_norm(x, Var(), Var(), rm, rv, /*training=*/true);
  const double is = 1.0 / std::sqrt(1.25 + 1e-5);
  check_close(values(y), {-1.5 * is, -0.5 * is, 0.5 * is, 1.5 * is}, 1e-12, 1e-12);
  CHECK(rm.item<float>() == doctest::Approx(0.25));               // 0.9·0 + 0.1·2.5
  CHECK(rv.item<float>() == doctest::Approx(0.9 + 0.1 * 5.0 / 3.0));  // unbiased variance
  // A second step with momentum 0.5 moves halfway from there.
  ops::batch_norm(x, Var(), Var(), rm, rv, true, 0.5);
  CHECK(rm.item<float>() == doctest::Approx(0.5 * 0.25 + 0.5 * 2.5));
  CHECK(rv.item<float>() == doctest::Approx(0.5 * (0.9 + 0.1 * 5.0 / 3.0) + 0.5 * 5.0 / 3.0));

  // (N, C, H, W) with affine parameters against statistics computed here per channel.
  const Tensor x4 = random_tensor({3, 2, 4, 5}, 60);
  const Tensor w = Tensor::from_vector<double>({1.5, -0.5}, {2}), b = Tensor::from_vector<double>({0.25, 2.0}, {2});
  Tensor rm4 = Tensor::zeros({2}, DType::float64), rv4 = Tensor::ones({2}, DType::float64);
  const Tensor y4 = ops::batch_norm(Var(x4), Var(w), Var(b), rm4, rv4, true, 0.1, 1e-3).value();
  for (int64_t c = 0; c < 2; ++c) {
    double s = 0, q = 0;
    const int64_t M = 3 * 4 * 5;
    for (int64_t n = 0; n < 3; ++n)
      for (int64_t h = 0; h < 4; ++h)
        for (int64_t ww = 0; ww < 5; ++ww) s += x4.at({n, c, h, ww});
    const double mean = s / M;
    for (int64_t n = 0; n < 3; ++n)
      for (int64_t h = 0; h < 4; ++h)
        for (int64_t ww = 0; ww < 5; ++ww) q += (x4.at({n, c, h, ww}) - mean) * (x4.at({n, c, h, ww}) - mean);
    const double var = q / M;
    CHECK(rm4.at({c}) == doctest::Approx(0.1 * mean).epsilon(1e-12));
    CHECK(rv4.at({c}) == doctest::Approx(0.9 + 0.1 * var * M / (M - 1)).epsilon(1e-12));
    for (int64_t n = 0; n < 3; ++n)
      for (int64_t h = 0; h < 4; ++h)
        for (int64_t ww = 0; ww < 5; ++ww) {
          const double want = (x4.at({n, c, h, ww}) - mean) / std::sqrt(var + 1e-3) * w.at({c}) + b.at({c});
          CHECK(y4.at({n, c, h, ww}) == doctest::Approx(want).epsilon(1e-12));
        }
  }
}

TEST_CASE("batch_norm: evaluation uses the running statistics and leaves them unchanged") {
  const Tensor x = random_tensor({2, 3, 2, 2}, 61);
  Tensor rm = Tensor::from_vector<float>({0.5f, -1.0f, 2.0f}, {3});
  Tensor rv = Tensor::from_vector<float>({4.0f, 0.25f, 1.0f}, {3});
  const Tensor w = Tensor::from_vector<double>({2, 1, -1}, {3}), b = Tensor::from_vector<double>({0, 1, 3}, {3});
  const Tensor y = ops::batch_norm(Var(x), Var(w), Var(b), rm, rv, /*training=*/false).value();
  const double m[3] = {0.5, -1.0, 2.0}, v[3] = {4.0, 0.25, 1.0};
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t i = 0; i < 2; ++i)
        for (int64_t j = 0; j < 2; ++j)
          CHECK(y.at({n, c, i, j}) ==
                doctest::Approx((x.at({n, c, i, j}) - m[c]) / std::sqrt(v[c] + 1e-5) * w.at({c}) + b.at({c})));
  CHECK(rm.to_vector<float>() == std::vector<float>{0.5f, -1.0f, 2.0f});
  CHECK(rv.to_vector<float>() == std::vector<float>{4.0f, 0.25f, 1.0f});
}

TEST_CASE("batch_norm: the training gradient differs from the evaluation one (statistics are differentiated)") {
  // With statistics differentiated, Σ_x dL/dx = 0 per channel for any output gradient (the mean is
  // subtracted); the evaluation-mode gradient has no such constraint.
  const Tensor x = random_tensor({4, 2, 3, 3}, 80), g = random_tensor({4, 2, 3, 3}, 81);
  Var vx(x, true);
  Tensor rm = Tensor::zeros({2}, DType::float64), rv = Tensor::ones({2}, DType::float64);
  ops::batch_norm(vx, Var(), Var(), rm, rv, true).backward(g);
  for (int64_t c = 0; c < 2; ++c) {
    double s = 0;
    for (int64_t n = 0; n < 4; ++n)
      for (int64_t i = 0; i < 3; ++i)
        for (int64_t j = 0; j < 3; ++j) s += vx.grad().at({n, c, i, j});
    CHECK(std::fabs(s) < 1e-10);
  }
}

TEST_CASE("batch_norm: float32 with non-contiguous input matches float64") {
  const Tensor base = random_tensor({3, 4, 5, 2}, 90);
  const Tensor x = base.permute({0, 3, 1, 2});  // (3, 2, 4, 5)
  REQUIRE(!x.is_contiguous());
  Tensor rm32 = Tensor::zeros({2}), rv32 = Tensor::ones({2});
  Tensor rm64 = Tensor::zeros({2}, DType::float64), rv64 = Tensor::ones({2}, DType::float64);
  Var v32(x.to(DType::float32), true), v64(x.contiguous(), true);
  Var y32 = ops::batch_norm(v32, Var(), Var(), rm32, rv32, true);
  Var y64 = ops::batch_norm(v64, Var(), Var(), rm64, rv64, true);
  CHECK(max_abs_diff(y32.value(), y64.value()) < 1e-5);
  CHECK(max_abs_diff(rv32, rv64) < 1e-6);
  const Tensor g = random_tensor({3, 2, 4, 5}, 91);
  y32.backward(g.to(DType::float32));
  y64.backward(g);
  CHECK(max_abs_diff(v32.grad(), v64.grad()) < 1e-4);
}

TEST_CASE("batch_norm: bad shapes throw") {
  Tensor rm = Tensor::zeros({3}), rv = Tensor::ones({3}), none;
  const Var x(Tensor::zeros({2, 3, 4, 4}));
  CHECK_THROWS_AS(ops::batch_norm(Var(Tensor::zeros({6})), Var(), Var(), rm, rv, true), retikd::Error);
  CHECK_THROWS_AS(ops::batch_norm(x, Var(Tensor::ones({4})), Var(), rm, rv, true), retikd::Error);
  CHECK_THROWS_AS(ops::batch_norm(x, Var(), Var(Tensor::ones({3, 1})), rm, rv, true), retikd::Error);
  Tensor rm_bad = Tensor::zeros({2});
  CHECK_THROWS_AS(ops::batch_norm(x, Var(), Var(), rm_bad, rv, true), retikd::Error);
  CHECK_THROWS_AS(ops::batch_norm(x, Var(), Var(), none, none, false), retikd::Error);  // eval needs stats
  Tensor none2;
  CHECK_THROWS_AS(ops::batch_norm(x, Var(), Var(), rm, none2, true), retikd::Error);
  // One value per channel cannot give a batch variance.
  CHECK_THROWS_AS(ops::batch_norm(Var(Tensor::zeros({1, 3})), Var(), Var(), rm, rv, true), retikd::Error);
  CHECK_NOTHROW(ops::batch_norm(Var(Tensor::zeros({1, 3})), Var(), Var(), rm, rv, false));
  CHECK_THROWS_AS(ops::batch_norm(x, Var(Tensor::ones({3}, DType::float64)), Var(), rm, rv, true), retikd::Error);
}

// ---- layer norm -------------------------------------------------------------------------------------------

TEST_CASE("layer_norm: hand-computed rows, affine parameters and multi-dimensional normalized_shape") {
  const Var x(Tensor::from_vector<double>({1, 2, 3, 4, 10, 10, 10, 14}, {2, 4}));
  const Var w(Tensor::from_vector<double>({1, 2, 1, 1}, {4})), b(Tensor::from_vector<double>({0, 0, 0, 1}, {4}));
  const double i1 = 1.0 / std::sqrt(1.25 + 1e-5);  // row 1: mean 2.5, var 1.25
  const double i2 = 1.0 / std::sqrt(3.0 + 1e-5);   // row 2: mean 11, var (1+1+1+9)/4 = 3
  check_close(values(ops::layer_norm(x, {4}, w, b)),
              {-1.5 * i1, -1.0 * i1, 0.5 * i1, 1.5 * i1 + 1, -1 * i2, -2 * i2, -1 * i2, 3 * i2 + 1}, 1e-12, 1e-12);
  // normalized_shape (2, 2) on a (2, 2, 2) input equals (4,) on its (2, 4) view.
  const Tensor x3 = x.value().view({2, 2, 2});
  CHECK(max_abs_diff(ops::layer_norm(Var(x3), {2, 2}).value().view({2, 4}), ops::layer_norm(x, {4}).value()) < 1e-15);
}

TEST_CASE("layer_norm: non-contiguous input and float32") {
  const Tensor base = random_tensor({6, 4, 3}, 110);
  const Tensor x = base.transpose(0, 2);  // (3, 4, 6)
  REQUIRE(!x.is_contiguous());
  const Tensor w = random_tensor({6}, 111), b = random_tensor({6}, 112);
  Var v1(x, true), v2(x.contiguous(), true), w1(w, true), w2(w, true);
  Var y1 = ops::layer_norm(v1, {6}, w1, Var(b)), y2 = ops::layer_norm(v2, {6}, w2, Var(b));
  CHECK(max_abs_diff(y1.value(), y2.value()) == 0.0);
  const Tensor g = random_tensor({3, 4, 6}, 113);
  y1.backward(g);
  y2.backward(g);
  CHECK(max_abs_diff(v1.grad(), v2.grad()) == 0.0);
  CHECK(max_abs_diff(w1.grad(), w2.grad()) == 0.0);
  Var y32 = ops::layer_norm(Var(x.to(DType::float32)), {6}, Var(w.to(DType::float32)), Var(b.to(DType::float32)));
  CHECK(y32.dtype() == DType::float32);
  CHECK(max_abs_diff(y32.value(), y1.value()) < 1e-5);
}

TEST_CASE("layer_norm: bad shapes throw") {
  const Var x(Tensor::zeros({2, 3, 4}));
  CHECK_THROWS_AS(ops::layer_norm(x, {3}), retikd::Error);        // not the last dimension
  CHECK_THROWS_AS(ops::layer_norm(x, {2, 3, 4, 1}), retikd::Error);  // more dims than the input
  CHECK_THROWS_AS(ops::layer_norm(x, {}), retikd::Error);
  CHECK_THROWS_AS(ops::layer_norm(x, {4}, Var(Tensor::ones({3}))), retikd::Error);
  CHECK_THROWS_AS(ops::layer_norm(x, {3, 4}, Var(Tensor::ones({12}))), retikd::Error);
  CHECK_THROWS_AS(ops::layer_norm(x, {4}, Var(), Var(Tensor::ones({5}))), retikd::Error);
  CHECK_NOTHROW(ops::layer_norm(x, {3, 4}, Var(Tensor::ones({3, 4}))));
}

// ---- bilinear resize --------------------------------------------------------------------------------------

TEST_CASE("interpolate_bilinear: values PyTorch's align_corners=False gives, derived by hand") {
  // 2×2 → 3×3: scale 2/3; output 0 reads source −1/6 → clamped to 0, output 1 reads 0.5, output 2 reads
  // 7/6 → pixel 1 (its upper neighbour is past the edge).
  const Var x(Tensor::from_vector<float>({1, 2, 3, 4}, {1, 1, 2, 2}));
  check_close(values(ops::interpolate_bilinear(x, 3, 3)), {1, 1.5, 2, 2, 2.5, 3, 3, 3.5, 4}, 1e-6, 1e-6);
  // 1×2 → 1×4: sources 0 (clamped), 0.25, 0.75, 1.25 → [1, 1.25, 1.75, 2] (PyTorch's well-known output).
  const Var row(Tensor::from_vector<float>({1, 2}, {1, 1, 1, 2}));
  check_close(values(ops::interpolate_bilinear(row, 1, 4)), {1, 1.25, 1.75, 2}, 1e-6, 1e-6);
  // 4×4 → 2×2: sources 0.5 and 2.5, so each output is the mean of a 2×2 block.
  const Var x16(arange_image(4, 4));
  check_close(values(ops::interpolate_bilinear(x16, 2, 2)), {2.5, 4.5, 10.5, 12.5}, 1e-6, 1e-6);
  // 4 → 3 along the width: scale 4/3; sources 1/6, 1.5, 17/6.
  const Var r4(Tensor::from_vector<double>({0, 10, 20, 40}, {1, 1, 1, 4}));
  check_close(values(ops::interpolate_bilinear(r4, 1, 3)), {10.0 / 6.0, 15.0, 20.0 + 20.0 * 5.0 / 6.0}, 1e-12, 1e-12);
  // Same size is the identity; a 1×1 input is a constant.
  const Tensor rnd = random_tensor({2, 3, 5, 4}, 120);
  CHECK(max_abs_diff(ops::interpolate_bilinear(Var(rnd), 5, 4).value(), rnd) < 1e-15);
  check_close(values(ops::interpolate_bilinear(Var(Tensor::full({1, 1, 1, 1}, 7.0)), 2, 3)), {7, 7, 7, 7, 7, 7}, 1e-6,
              1e-6);
  // align_corners=True: the corners line up, 2 → 3 gives the midpoint.
  check_close(values(ops::interpolate_bilinear(row, 1, 3, true)), {1, 1.5, 2}, 1e-6, 1e-6);
}

TEST_CASE("interpolate_bilinear: non-contiguous input, float32, and bad shapes") {
  const Tensor base = random_tensor({2, 5, 6, 3}, 140);
  const Tensor x = base.permute({0, 3, 1, 2});  // (2, 3, 5, 6)
  REQUIRE(!x.is_contiguous());
  CHECK(max_abs_diff(ops::interpolate_bilinear(Var(x), 8, 9).value(),
                     ops::interpolate_bilinear(Var(x.contiguous()), 8, 9).value()) == 0.0);
  CHECK(max_abs_diff(ops::interpolate_bilinear(Var(x.to(DType::float32)), 8, 9).value(),
                     ops::interpolate_bilinear(Var(x), 8, 9).value()) < 1e-5);
  CHECK_THROWS_AS(ops::interpolate_bilinear(Var(Tensor::zeros({3, 4, 4})), 2, 2), retikd::Error);
  CHECK_THROWS_AS(ops::interpolate_bilinear(Var(Tensor::zeros({1, 3, 4, 4})), 0, 2), retikd::Error);
  CHECK_THROWS_AS(ops::interpolate_bilinear(Var(Tensor::zeros({1, 3, 0, 4})), 2, 2), retikd::Error);
}

TEST_CASE("interpolate_bicubic: PyTorch's bicubic values, interpolation weights, identity and gradcheck") {
  // PyTorch's F.interpolate(mode="bicubic", align_corners=False) of a generated (1, 2, 5, 7) tensor
  const golden::Golden g("dinov2_golden");
  const Tensor x = g["bicubic.in"];
  for (const auto& size : {std::pair<int64_t, int64_t>{3, 9}, {8, 4}, {5, 16}}) {
    CAPTURE(size.first);
    CAPTURE(size.second);
    const Tensor ref = g["bicubic.out_" + std::to_string(size.first) + "x" + std::to_string(size.second)];
    const Tensor y = ops::interpolate_bicubic(Var(x.to(DType::float64)), size.first, size.second).value();
    CHECK(max_abs_diff(y, ref.to(DType::float64)) < 2e-6);  // the reference is stored in float32
  }
  // each row of the weight matrix sums to 1 (Keys' kernel reproduces constants), edge taps clamp
  const Tensor w = ops::impl::bicubic_matrix(37, 16, DType::float64);
  const std::vector<double> wv = w.to_vector<double>();
  for (int64_t i = 0; i < 16; ++i) {
    double row = 0.0;
    for (int64_t j = 0; j < 37; ++j) row += wv[static_cast<std::size_t>(i * 37 + j)];
    CHECK(row == doctest::Approx(1.0));
  }
  std::vector<double> eye(36, 0.0);
  for (int i = 0; i < 6; ++i) eye[static_cast<std::size_t>(i * 7)] = 1.0;
  CHECK(max_abs_diff(ops::impl::bicubic_matrix(6, 6, DType::float64), Tensor::from_vector(eye, {6, 6})) < 1e-15);
  const Tensor rnd = random_tensor({1, 2, 4, 5}, 41);
  CHECK(max_abs_diff(ops::interpolate_bicubic(Var(rnd), 4, 5).value(), rnd) == 0.0);
  for (const auto& size : {std::pair<int64_t, int64_t>{7, 3}, {2, 8}}) {
    auto r = gradcheck([&](const std::vector<Var>& v) { return ops::interpolate_bicubic(v[0], size.first, size.second); },
                       {rnd});
    CHECK_MESSAGE(r.ok, r.message);
  }
  CHECK_THROWS_AS(ops::interpolate_bicubic(Var(Tensor::zeros({3, 4, 4})), 2, 2), retikd::Error);
  CHECK_THROWS_AS(ops::interpolate_bicubic(Var(Tensor::zeros({1, 3, 4, 4})), 0, 2), retikd::Error);
}
