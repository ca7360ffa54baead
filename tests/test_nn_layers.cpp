// tests/test_nn_layers.cpp — the nn/ layers: each forward against an independent computation written here
// (direct loops in double), backward against central differences for the input and every parameter (float64),
// PyTorch's names and default-init bounds, BatchNorm2d's running statistics (PyTorch's formulas), the
// attention internals (probabilities, logits, per-head Q/K/V) and shape inference with MAC counts.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <retikd/autograd/gradcheck.hpp>
#include <retikd/core/random.hpp>
#include <retikd/nn/batchnorm_recalibration.hpp>
#include <retikd/nn/layers.hpp>
#include <retikd/nn/transformer.hpp>
#include <retikd/ops/reduce.hpp>
#include "test_util.hpp"

using namespace retikd;
using namespace retikd::test;

namespace {

std::vector<std::string> state_names(const nn::Module& m) {
  std::vector<std::string> v;
  for (const auto& kv : m.state_dict()) v.push_back(kv.first);
  return v;
}

// Compares the tape's gradient of ⟨w, f(x)⟩ (w fixed random) with respect to x and every parameter of m
// against central differences. m must hold float64 parameters. Up to `per_tensor` evenly spaced elements
// of each tensor are checked.
void check_module_gradients(nn::Module& m, const std::function<Var(const Var&)>& f, const Tensor& x0,
                            int64_t per_tensor = 40, double tol = 1e-6) {
  Var x(x0.to(DType::float64).contiguous().clone(), true);
  m.zero_grad();
  Var y = f(x);
  Generator g(99);
  Tensor w = Tensor::empty(y.shape(), DType::float64);
  uniform_(w, 0.5, 1.5, g);
  y.backward(w);
  const std::vector<double> wv = w.to_vector<double>();
  auto objective = [&]() {
    NoGradGuard no_grad;
    const std::vector<double> v = f(x).value().to_vector<double>();
    double s = 0.0;
    for (std::size_t i = 0; i < v.size(); ++i) s += v[i] * wv[i];
    return s;
  };
  std::vector<std::pair<std::string, Var>> targets{{"input", x}};
  for (auto& p : m.named_parameters()) targets.push_back(p);
  for (auto& t : targets) {
    Var& v = t.second;
    REQUIRE(v.dtype() == DType::float64);
    REQUIRE(v.value().is_contiguous());
    Tensor analytic = v.grad().defined() ? v.grad().contiguous() : Tensor::zeros(v.shape(), DType::float64);
    const std::vector<double> a = analytic.to_vector<double>();
    double* p = v.mutable_value().data<double>();
    const int64_t n = v.numel();
    const int64_t step = std::max<int64_t>(1, n / per_tensor);
    int failures = 0;
    for (int64_t k = 0; k < n; k += step) {
      const double saved = p[k];
      const double eps = 1e-6;
      p[k] = saved + eps;
      const double plus = objective();
      p[k] = saved - eps;
      const double minus = objective();
      p[k] = saved;
      const double numeric = (plus - minus) / (2 * eps);
      if (std::fabs(numeric - a[k]) > tol + 1e-5 * std::fabs(numeric) && failures++ < 3)
        FAIL_CHECK(t.first << "[" << k << "]: analytic " << a[k] << " vs numeric " << numeric);
    }
    CHECK_MESSAGE(failures == 0, t.first);
  }
}

// out[n, o, oh, ow] = b[o] + Σ w[o, c, i, j] · x[n, g·Cg + c, oh·s − pt + i·d, ow·s − pl + j·d]
Tensor naive_conv(const Tensor& x, const Tensor& w, const Tensor& b, const ops::Conv2dOptions& o) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t O = w.size(0), kh = w.size(2), kw = w.size(3), G = o.groups, Cg = C / G, Og = O / G;
  const int64_t OH = (H + o.pad_top + o.pad_bottom - o.dilation_h * (kh - 1) - 1) / o.stride_h + 1;
  const int64_t OW = (W + o.pad_left + o.pad_right - o.dilation_w * (kw - 1) - 1) / o.stride_w + 1;
  std::vector<double> out(static_cast<std::size_t>(N * O * OH * OW));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oc = 0; oc < O; ++oc)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          double s = b.defined() ? b.at({oc}) : 0.0;
          const int64_t grp = oc / Og;
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t i = 0; i < kh; ++i)
              for (int64_t j = 0; j < kw; ++j) {
                const int64_t ih = oh * o.stride_h - o.pad_top + i * o.dilation_h;
                const int64_t iw = ow * o.stride_w - o.pad_left + j * o.dilation_w;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                s += w.at({oc, c, i, j}) * x.at({n, grp * Cg + c, ih, iw});
              }
          out[static_cast<std::size_t>(((n * O + oc) * OH + oh) * OW + ow)] = s;
        }
  return Tensor::from_vector(out, {N, O, OH, OW});
}

// y[..., o] = b[o] + Σ_i x[..., i] · W[o, i] on a 2-D view of x.
Tensor naive_linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  const int64_t in = w.size(1), out = w.size(0), rows = x.numel() / in;
  const Tensor x2 = x.reshape({rows, in});
  std::vector<double> y(static_cast<std::size_t>(rows * out));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double s = b.defined() ? b.at({o}) : 0.0;
      for (int64_t i = 0; i < in; ++i) s += x2.at({r, i}) * w.at({o, i});
      y[static_cast<std::size_t>(r * out + o)] = s;
    }
  Shape s = x.shape();
  s.back() = out;
  return Tensor::from_vector(y, s);
}

}  // namespace

TEST_CASE("Linear: x·Wᵀ + b, PyTorch's names and default init, shape inference, gradients") {
  Generator g(1);
  nn::Linear l(5, 3, g);
  CHECK(state_names(l) == std::vector<std::string>{"weight", "bias"});
  CHECK(l.weight.shape() == Shape{3, 5});
  const double bound = 1.0 / std::sqrt(5.0);
  double wmax = 0.0;
  for (double v : l.weight.value().to_vector<double>()) wmax = std::max(wmax, std::fabs(v));
  for (double v : l.bias.value().to_vector<double>()) CHECK(std::fabs(v) <= bound);
  CHECK(wmax <= bound);
  CHECK(wmax > 0.5 * bound);  // drawn, not left at zero

  l.to(DType::float64);
  const Tensor x = randn64({2, 4, 5}, 2);
  Var y = l.forward(Var(x));
  CHECK(max_abs_diff(y.value(), naive_linear(x, l.weight.value(), l.bias.value())) < 1e-12);

  nn::ShapeTrace t;
  CHECK(l.infer_shape({2, 4, 5}, &t) == Shape{2, 4, 3});
  CHECK(t.macs == 2 * 4 * 3 * 5);
  CHECK_THROWS_AS(l.infer_shape({2, 4}, nullptr), Error);
  CHECK_THROWS_AS(l.forward(Var(randn64({2, 4}, 3))), Error);

  check_module_gradients(l, [&](const Var& v) { return l.forward(v); }, x);

  nn::Linear nb(4, 2, g, /*with_bias=*/false);
  CHECK(state_names(nb) == std::vector<std::string>{"weight"});
  CHECK(nb.num_parameters() == 8);
}

TEST_CASE("Conv2d: groups, stride, dilation, asymmetric and TF-SAME padding against direct loops") {
  Generator g(3);
  const auto opt = ops::Conv2dOptions().with_stride(2, 1).with_padding(1, 0, 2, 1).with_groups(2).with_dilation(1, 2);
  nn::Conv2d conv(4, 6, 3, 2, g, opt, true);
  CHECK(state_names(conv) == std::vector<std::string>{"weight", "bias"});
  CHECK(conv.weight.shape() == Shape{6, 2, 3, 2});
  const double bound = 1.0 / std::sqrt(2.0 * 3 * 2);  // fan_in = C/groups · kh · kw
  for (double v : conv.weight.value().to_vector<double>()) CHECK(std::fabs(v) <= bound);
  conv.to(DType::float64);

  const Tensor x = randn64({2, 4, 7, 6}, 4);
  Var y = conv.forward(Var(x));
  const Tensor ref = naive_conv(x, conv.weight.value(), conv.bias.value(), opt);
  CHECK(y.shape() == ref.shape());
  CHECK(max_abs_diff(y.value(), ref) < 1e-12);

  nn::ShapeTrace t;
  CHECK(conv.infer_shape(x.shape(), &t) == y.shape());
  CHECK(t.macs == static_cast<double>(y.numel() * 2 * 3 * 2));
  CHECK_THROWS_AS(conv.infer_shape({2, 3, 7, 6}, nullptr), Error);  // 3 channels, groups 2

  check_module_gradients(conv, [&](const Var& v) { return conv.forward(v); }, x);

  SUBCASE("TensorFlow SAME pads the odd pixel at the bottom / right") {
    Generator g2(5);
    nn::Conv2d same(3, 4, 3, g2, ops::Conv2dOptions().with_stride(2), false);
    same.use_tf_same_padding();
    same.to(DType::float64);
    const Tensor x8 = randn64({1, 3, 8, 8}, 6);  // out 4: total pad 1 → (0, 1)
    Var ys = same.forward(Var(x8));
    CHECK(ys.shape() == Shape{1, 4, 4, 4});
    CHECK(same.infer_shape(x8.shape(), nullptr) == Shape{1, 4, 4, 4});
    const Tensor r = naive_conv(x8, same.weight.value(), Tensor(), ops::Conv2dOptions().with_stride(2).with_padding(0, 1, 0, 1));
    CHECK(max_abs_diff(ys.value(), r) < 1e-12);
    const Tensor x7 = randn64({1, 3, 7, 7}, 7);  // out 4: total pad 2 → (1, 1)
    const Tensor r7 = naive_conv(x7, same.weight.value(), Tensor(), ops::Conv2dOptions().with_stride(2).with_padding(1));
    CHECK(max_abs_diff(same.forward(Var(x7)).value(), r7) < 1e-12);
  }
}

TEST_CASE("BatchNorm2d: training statistics, running-stat updates and evaluation as PyTorch") {
  nn::BatchNorm2d bn(3);
  CHECK(state_names(bn) ==
        std::vector<std::string>{"weight", "bias", "running_mean", "running_var", "num_batches_tracked"});
  CHECK(bn.num_batches_tracked().dtype() == DType::int64);
  CHECK(bn.num_batches_tracked().dim() == 0);
  CHECK(bn.num_parameters() == 6);
  bn.to(DType::float64);
  CHECK(bn.running_mean().dtype() == DType::float64);
  CHECK(bn.num_batches_tracked().dtype() == DType::int64);
  bn.weight.mutable_value().copy_(Tensor::from_vector(std::vector<double>{1.5, -0.5, 2.0}, {3}));
  bn.bias.mutable_value().copy_(Tensor::from_vector(std::vector<double>{0.1, 0.2, -0.3}, {3}));

  // Per-channel mean and biased variance over (N, H, W), computed here.
  auto stats = [](const Tensor& x, int64_t c, double& mean, double& var) {
    const int64_t N = x.size(0), H = x.size(2), W = x.size(3);
    double s = 0, s2 = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t w = 0; w < W; ++w) s += x.at({n, c, h, w});
    mean = s / double(N * H * W);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t w = 0; w < W; ++w) s2 += std::pow(x.at({n, c, h, w}) - mean, 2);
    var = s2 / double(N * H * W);
  };
  const double w[3] = {1.5, -0.5, 2.0}, b[3] = {0.1, 0.2, -0.3};
  const Tensor x1 = randn64({4, 3, 2, 3}, 8, 2.0, 1.0), x2 = randn64({4, 3, 2, 3}, 9, 0.5, -1.0);
  const double M = 4 * 2 * 3;

  Var y = bn.forward(Var(x1));
  double rm[3], rv[3];
  for (int64_t c = 0; c < 3; ++c) {
    double mean, var;
    stats(x1, c, mean, var);
    CHECK(y.value().at({1, c, 1, 2}) ==
          doctest::Approx((x1.at({1, c, 1, 2}) - mean) / std::sqrt(var + 1e-5) * w[c] + b[c]).epsilon(1e-10));
    rm[c] = 0.9 * 0.0 + 0.1 * mean;
    rv[c] = 0.9 * 1.0 + 0.1 * var * M / (M - 1);  // unbiased variance into the running estimate
    CHECK(bn.running_mean().at({c}) == doctest::Approx(rm[c]).epsilon(1e-12));
    CHECK(bn.running_var().at({c}) == doctest::Approx(rv[c]).epsilon(1e-12));
  }
  CHECK(bn.num_batches_tracked().item<int64_t>() == 1);
  bn.forward(Var(x2));
  CHECK(bn.num_batches_tracked().item<int64_t>() == 2);
  for (int64_t c = 0; c < 3; ++c) {
    double mean, var;
    stats(x2, c, mean, var);
    rm[c] = 0.9 * rm[c] + 0.1 * mean;
    rv[c] = 0.9 * rv[c] + 0.1 * var * M / (M - 1);
    CHECK(bn.running_mean().at({c}) == doctest::Approx(rm[c]).epsilon(1e-12));
    CHECK(bn.running_var().at({c}) == doctest::Approx(rv[c]).epsilon(1e-12));
  }

  bn.eval();
  Var ye = bn.forward(Var(x1));
  for (int64_t c = 0; c < 3; ++c)
    CHECK(ye.value().at({2, c, 0, 1}) ==
          doctest::Approx((x1.at({2, c, 0, 1}) - rm[c]) / std::sqrt(rv[c] + 1e-5) * w[c] + b[c]).epsilon(1e-10));
  CHECK(bn.num_batches_tracked().item<int64_t>() == 2);  // evaluation changes nothing
  CHECK(bn.running_mean().at({0}) == doctest::Approx(rm[0]).epsilon(1e-12));

  SUBCASE("momentum < 0 is PyTorch's momentum=None: a cumulative average") {
    nn::BatchNorm2d cum(3, 1e-5, -1.0);
    cum.to(DType::float64);
    cum.forward(Var(x1));
    cum.forward(Var(x2));
    for (int64_t c = 0; c < 3; ++c) {
      double m1, v1, m2, v2;
      stats(x1, c, m1, v1);
      stats(x2, c, m2, v2);
      CHECK(cum.running_mean().at({c}) == doctest::Approx((m1 + m2) / 2).epsilon(1e-12));
      CHECK(cum.running_var().at({c}) == doctest::Approx((v1 + v2) / 2 * M / (M - 1)).epsilon(1e-12));
    }
  }
  SUBCASE("without running statistics: batch statistics in eval too, no buffers") {
    nn::BatchNorm2d nt(3, 1e-5, 0.1, true, false);
    CHECK(state_names(nt) == std::vector<std::string>{"weight", "bias"});
    nt.eval();
    nt.to(DType::float64);
    Var yn = nt.forward(Var(x1));
    double mean, var;
    stats(x1, 0, mean, var);
    CHECK(yn.value().at({0, 0, 0, 0}) == doctest::Approx((x1.at({0, 0, 0, 0}) - mean) / std::sqrt(var + 1e-5)));
    CHECK_THROWS_AS(nt.running_mean(), Error);
  }
  SUBCASE("gradients in training and evaluation mode") {
    bn.train();
    check_module_gradients(bn, [&](const Var& v) { return bn.forward(v); }, x1);
    bn.eval();
    check_module_gradients(bn, [&](const Var& v) { return bn.forward(v); }, x1);
  }
  CHECK_THROWS_AS(bn.forward(Var(randn64({2, 4, 2, 2}, 1))), Error);
  CHECK_THROWS_AS(bn.forward(Var(randn64({2, 3, 4}, 1))), Error);
}

TEST_CASE("LayerNorm over the last dim: values, eps, gradients") {
  nn::LayerNorm ln(6, 1e-6);
  CHECK(state_names(ln) == std::vector<std::string>{"weight", "bias"});
  ln.to(DType::float64);
  Generator g(10);
  normal_(ln.weight.mutable_value(), 1.0, 0.3, g);
  normal_(ln.bias.mutable_value(), 0.0, 0.3, g);
  const Tensor x = randn64({2, 3, 6}, 12, 3.0, 2.0);
  Var y = ln.forward(Var(x));
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 3; ++j) {
      double m = 0, v = 0;
      for (int64_t k = 0; k < 6; ++k) m += x.at({i, j, k}) / 6;
      for (int64_t k = 0; k < 6; ++k) v += std::pow(x.at({i, j, k}) - m, 2) / 6;
      for (int64_t k = 0; k < 6; ++k)
        CHECK(y.value().at({i, j, k}) == doctest::Approx((x.at({i, j, k}) - m) / std::sqrt(v + 1e-6) *
                                                              ln.weight.value().at({k}) + ln.bias.value().at({k}))
                                             .epsilon(1e-10));
    }
  CHECK(ln.infer_shape({5, 6}, nullptr) == Shape{5, 6});
  CHECK_THROWS_AS(ln.infer_shape({5, 7}, nullptr), Error);
  check_module_gradients(ln, [&](const Var& v) { return ln.forward(v); }, x);
}

TEST_CASE("Dropout and DropPath: identity in eval, seeded masks scaled by 1/(1−p) in training") {
  auto noise = nn::make_noise(42);
  nn::Dropout d(0.25, noise);
  const Tensor x = Tensor::ones({100, 100}, DType::float64);
  d.eval();
  CHECK(max_abs_diff(d.forward(Var(x)).value(), x) == 0.0);
  d.train();
  const auto v = d.forward(Var(x)).value().to_vector<double>();
  int64_t zeros = 0;
  for (double e : v) {
    CHECK((e == 0.0 || std::fabs(e - 1.0 / 0.75) < 1e-12));
    zeros += e == 0.0;
  }
  CHECK(zeros > 2250);
  CHECK(zeros < 2750);
  noise->reseed(42);
  CHECK(d.forward(Var(x)).value().to_vector<double>() == v);  // reproducible from the seed

  nn::DropPath dp(0.5, noise);
  const Tensor xs = randn64({64, 3, 2}, 13);
  dp.eval();
  CHECK(max_abs_diff(dp.forward(Var(xs)).value(), xs) == 0.0);
  dp.train();
  const Tensor yd = dp.forward(Var(xs)).value();
  int64_t dropped = 0;
  for (int64_t n = 0; n < 64; ++n) {
    const double r = yd.at({n, 0, 0}) / xs.at({n, 0, 0});
    CHECK((r == 0.0 || std::fabs(r - 2.0) < 1e-12));
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t k = 0; k < 2; ++k) CHECK(yd.at({n, c, k}) == doctest::Approx(r * xs.at({n, c, k})));
    dropped += r == 0.0;
  }
  CHECK(dropped > 16);
  CHECK(dropped < 48);
  CHECK(dp.infer_shape({64, 3, 2}, nullptr) == Shape{64, 3, 2});
}

TEST_CASE("activation modules compute the named functions") {
  const std::vector<double> xs{-3.0, -0.7, 0.0, 0.4, 2.5, 7.0};
  const Tensor x = Tensor::from_vector(xs, {6});
  auto run = [&](nn::Layer& l) { return l.forward(Var(x)).value().to_vector<double>(); };
  nn::ReLU relu;
  nn::ReLU6 relu6;
  nn::GELU gelu;
  nn::GELU gelu_tanh(true);
  nn::SiLU silu;
  nn::Sigmoid sig;
  nn::Identity id;
  const auto r = run(relu), r6 = run(relu6), ge = run(gelu), gt = run(gelu_tanh), si = run(silu), sg = run(sig),
             i = run(id);
  for (std::size_t k = 0; k < xs.size(); ++k) {
    const double v = xs[k], s = 1.0 / (1.0 + std::exp(-v));
    CHECK(r[k] == std::max(v, 0.0));
    CHECK(r6[k] == std::min(std::max(v, 0.0), 6.0));
    CHECK(ge[k] == doctest::Approx(0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)))).epsilon(1e-12));
    CHECK(gt[k] == doctest::Approx(0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v))))
                       .epsilon(1e-12));
    CHECK(si[k] == doctest::Approx(v * s).epsilon(1e-12));
    CHECK(sg[k] == doctest::Approx(s).epsilon(1e-12));
    CHECK(i[k] == v);
  }
  CHECK(relu.num_parameters() == 0);
}

TEST_CASE("SqueezeExcitation: torchvision's fc1/fc2 names, x·σ(fc2(act(fc1(mean))))") {
  Generator g(14);
  nn::SqueezeExcitation se(6, 2, g, nn::Activation::silu);
  CHECK(state_names(se) == std::vector<std::string>{"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"});
  CHECK(se.fc1->weight.shape() == Shape{2, 6, 1, 1});
  CHECK(se.fc2->weight.shape() == Shape{6, 2, 1, 1});
  se.to(DType::float64);
  const Tensor x = randn64({2, 6, 3, 4}, 15);
  Var y = se.forward(Var(x));
  const Tensor w1 = se.fc1->weight.value(), b1 = se.fc1->bias.value(), w2 = se.fc2->weight.value(),
               b2 = se.fc2->bias.value();
  for (int64_t n = 0; n < 2; ++n) {
    double m[6], h[2];
    for (int64_t c = 0; c < 6; ++c) {
      m[c] = 0;
      for (int64_t i = 0; i < 3; ++i)
        for (int64_t j = 0; j < 4; ++j) m[c] += x.at({n, c, i, j}) / 12;
    }
    for (int64_t s = 0; s < 2; ++s) {
      double a = b1.at({s});
      for (int64_t c = 0; c < 6; ++c) a += w1.at({s, c, 0, 0}) * m[c];
      h[s] = a / (1 + std::exp(-a));
    }
    for (int64_t c = 0; c < 6; ++c) {
      double e = b2.at({c});
      for (int64_t s = 0; s < 2; ++s) e += w2.at({c, s, 0, 0}) * h[s];
      e = 1 / (1 + std::exp(-e));
      CHECK(y.value().at({n, c, 2, 1}) == doctest::Approx(x.at({n, c, 2, 1}) * e).epsilon(1e-12));
    }
  }
  nn::ShapeTrace t;
  CHECK(se.infer_shape(x.shape(), &t) == x.shape());
  CHECK(t.macs == 2 * (2 * 6 * 2));
  check_module_gradients(se, [&](const Var& v) { return se.forward(v); }, x);
}

TEST_CASE("conv_norm_act is torchvision's Conv2dNormActivation: names, padding, no conv bias") {
  Generator g(16);
  auto cna = nn::conv_norm_act(3, 8, 3, 2, 1, nn::Activation::relu6, g);
  CHECK(state_names(*cna) == std::vector<std::string>{"0.weight", "1.weight", "1.bias", "1.running_mean",
                                                      "1.running_var", "1.num_batches_tracked"});
  CHECK(cna->size() == 3);
  CHECK(nn::infer_shape(*cna, {2, 3, 9, 9}) == Shape{2, 8, 5, 5});
  auto linear = nn::conv_norm_act(8, 4, 1, 1, 1, nn::Activation::identity, g);
  CHECK(linear->size() == 2);
  auto dw = nn::conv_norm_act(8, 8, 5, 1, 8, nn::Activation::silu, g);
  CHECK(dw->child("0")->parameter("weight").shape() == Shape{8, 1, 5, 5});
}

TEST_CASE("pooling and flatten modules: shapes agree between forward and shape inference") {
  nn::MaxPool2d mp(3, 2, 1);
  nn::AdaptiveAvgPool2d ap(1, 1);
  nn::Flatten fl;
  const Tensor x = randn64({2, 3, 9, 8}, 17);
  CHECK(mp.forward(Var(x)).shape() == mp.infer_shape(x.shape(), nullptr));
  CHECK(mp.infer_shape(x.shape(), nullptr) == Shape{2, 3, 5, 4});
  CHECK(ap.infer_shape(x.shape(), nullptr) == Shape{2, 3, 1, 1});
  CHECK(fl.infer_shape({2, 3, 1, 1}, nullptr) == Shape{2, 3});
  CHECK(fl.forward(ap.forward(Var(x))).shape() == Shape{2, 3});
}

TEST_CASE("PatchEmbed: tokens are the patch projections in row-major grid order") {
  Generator g(18);
  nn::PatchEmbed pe(4, 3, 5, g);
  CHECK(state_names(pe) == std::vector<std::string>{"proj.weight", "proj.bias"});
  pe.to(DType::float64);
  const Tensor x = randn64({2, 3, 8, 13}, 19);  // grid 2 × 3 (one column of pixels dropped)
  Var t = pe.forward(Var(x));
  CHECK(t.shape() == Shape{2, 6, 5});
  CHECK(pe.infer_shape(x.shape(), nullptr) == Shape{2, 6, 5});
  const Tensor w = pe.proj->weight.value(), b = pe.proj->bias.value();
  for (int64_t gi = 0; gi < 2; ++gi)
    for (int64_t gj = 0; gj < 3; ++gj)
      for (int64_t d = 0; d < 5; ++d) {
        double s = b.at({d});
        for (int64_t c = 0; c < 3; ++c)
          for (int64_t i = 0; i < 4; ++i)
            for (int64_t j = 0; j < 4; ++j) s += w.at({d, c, i, j}) * x.at({1, c, gi * 4 + i, gj * 4 + j});
        CHECK(t.value().at({1, gi * 3 + gj, d}) == doctest::Approx(s).epsilon(1e-12));
      }
  check_module_gradients(pe, [&](const Var& v) { return pe.forward(v); }, x, 20);
}

TEST_CASE("Attention: against direct loops; probabilities, logits and per-head Q/K/V are consistent") {
  const int64_t B = 2, N = 5, D = 8, H = 2, d = 4;
  Generator g(20);
  nn::Attention attn(D, H, g);
  CHECK(state_names(attn) == std::vector<std::string>{"qkv.weight", "qkv.bias", "proj.weight", "proj.bias"});
  attn.to(DType::float64);
  attn.eval();
  const Tensor x = randn64({B, N, D}, 21);
  nn::AttentionTaps all;
  all.q = all.k = all.v = all.logits = all.probs = true;
  nn::AttentionOutput r = attn.forward_with(Var(x), all);
  CHECK(r.q.shape() == Shape{B, H, N, d});
  CHECK(r.logits.shape() == Shape{B, H, N, N});
  CHECK(r.probs.shape() == Shape{B, H, N, N});

  // Independent computation: qkv projection, per-head scaled dot products, row softmax, weighted values.
  const Tensor qkv = naive_linear(x, attn.qkv->weight.value(), attn.qkv->bias.value());  // (B, N, 3D)
  std::vector<double> o(static_cast<std::size_t>(B * N * D), 0.0);
  double worst_q = 0, worst_logit = 0, worst_prob = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < N; ++i) {
        std::vector<double> logit(N), p(N);
        double mx = -1e300;
        for (int64_t j = 0; j < N; ++j) {
          double s = 0;
          for (int64_t c = 0; c < d; ++c) s += qkv.at({b, i, h * d + c}) * qkv.at({b, j, D + h * d + c});
          logit[j] = s / std::sqrt(double(d));
          mx = std::max(mx, logit[j]);
        }
        double z = 0;
        for (int64_t j = 0; j < N; ++j) z += std::exp(logit[j] - mx);
        double row = 0;
        for (int64_t j = 0; j < N; ++j) {
          p[j] = std::exp(logit[j] - mx) / z;
          worst_logit = std::max(worst_logit, std::fabs(r.logits.value().at({b, h, i, j}) - logit[j]));
          worst_prob = std::max(worst_prob, std::fabs(r.probs.value().at({b, h, i, j}) - p[j]));
          row += r.probs.value().at({b, h, i, j});
        }
        CHECK(row == doctest::Approx(1.0).epsilon(1e-12));
        for (int64_t c = 0; c < d; ++c) {
          worst_q = std::max(worst_q, std::fabs(r.q.value().at({b, h, i, c}) - qkv.at({b, i, h * d + c})));
          worst_q = std::max(worst_q, std::fabs(r.k.value().at({b, h, i, c}) - qkv.at({b, i, D + h * d + c})));
          worst_q = std::max(worst_q, std::fabs(r.v.value().at({b, h, i, c}) - qkv.at({b, i, 2 * D + h * d + c})));
          double s = 0;
          for (int64_t j = 0; j < N; ++j) s += p[j] * qkv.at({b, j, 2 * D + h * d + c});
          o[static_cast<std::size_t>((b * N + i) * D + h * d + c)] = s;
        }
      }
  CHECK(worst_q < 1e-12);
  CHECK(worst_logit < 1e-12);
  CHECK(worst_prob < 1e-12);
  const Tensor out = naive_linear(Tensor::from_vector(o, {B, N, D}), attn.proj->weight.value(), attn.proj->bias.value());
  CHECK(max_abs_diff(r.out.value(), out) < 1e-12);
  CHECK(max_abs_diff(attn.forward(Var(x)).value(), out) < 1e-12);

  // The taps agree with each other through the library's own ops.
  CHECK(max_abs_diff(ops::softmax(r.logits, -1).value(), r.probs.value()) < 1e-14);
  CHECK(max_abs_diff(ops::mul(ops::matmul(r.q, ops::transpose(r.k, -2, -1)), attn.scale()).value(), r.logits.value()) <
        1e-12);
  // Untouched taps stay undefined.
  nn::AttentionOutput only = attn.forward_with(Var(x), nn::AttentionTaps{});
  CHECK(!only.probs.defined());
  CHECK(!only.q.defined());

  nn::ShapeTrace t;
  CHECK(attn.infer_shape({B, N, D}, &t) == Shape{B, N, D});
  CHECK(t.macs_by_kind["linear"] == B * N * D * 3 * D + B * N * D * D);
  CHECK(t.macs_by_kind["attention"] == 2 * B * H * N * N * d);

  SUBCASE("gradients through the output and through the probability and logit taps") {
    check_module_gradients(attn, [&](const Var& v) { return attn.forward(v); }, x);
    nn::AttentionTaps want;
    want.probs = want.logits = want.v = true;
    check_module_gradients(attn,
                           [&](const Var& v) {
                             nn::AttentionOutput a = attn.forward_with(v, want);
                             Var s = ops::add(ops::sum(ops::mul(a.probs, a.probs)), ops::sum(ops::mul(a.logits, a.logits)));
                             return ops::add(s, ops::sum(ops::mul(a.v, a.v)));
                           },
                           x);
  }
}

TEST_CASE("fused qkv_attention equals the tapped view path: values and gradients, float32 and float64") {
  // Attention::forward (no taps, CPU) runs ops::qkv_attention; forward_with(taps) runs views + matmul +
  // softmax. Odd sizes: 7 tokens, 3 heads of 5 (scale 1/sqrt(5) is not a power of two), batch 2.
  const int64_t B = 2, N = 7, D = 15, H = 3;
  Generator g(41);
  nn::Attention attn(D, H, g);
  for (DType dt : {DType::float64, DType::float32}) {
    CAPTURE(dtype_name(dt));
    attn.to(dt);
    const Tensor x = randn64({B, N, D}, 42).to(dt);
    const Tensor gy = randn64({B, N, D}, 43).to(dt);
    nn::AttentionTaps taps;
    taps.probs = true;
    Var xf(x, true), xt(x, true);
    attn.zero_grad();
    Var yf = attn.forward(xf);
    yf.backward(gy);
    const Tensor dw_fused = attn.qkv->weight.grad(), db_fused = attn.qkv->bias.grad();
    attn.zero_grad();
    nn::AttentionOutput t = attn.forward_with(xt, taps);
    REQUIRE(t.probs.defined());
    t.out.backward(gy);
    const double tol = 0.0;  // the fused op computes every product as the view path does: bit for bit
    CHECK(max_abs_diff(yf.value(), t.out.value()) <= tol);
    CHECK(max_abs_diff(xf.grad(), xt.grad()) <= tol);
    CHECK(max_abs_diff(dw_fused, attn.qkv->weight.grad()) <= tol);
    CHECK(max_abs_diff(db_fused, attn.qkv->bias.grad()) <= tol);
    // Without a tape (evaluation) the probabilities are not kept: same output.
    NoGradGuard no_grad;
    CHECK(max_abs_diff(attn.forward(Var(x)).value(), t.out.value()) <= tol);
  }
  // The op on its own through the float64 gradient checker, including a single token and a single head.
  for (const Shape& s : {Shape{2, 4, 18}, Shape{1, 1, 6}, Shape{3, 5, 3}}) {
    CAPTURE(shape_str(s));
    const int64_t heads = s[2] == 18 ? 2 : 1;
    GradcheckResult r = gradcheck([&](const std::vector<Var>& v) { return ops::qkv_attention(v[0], heads, 0.37); },
                                  {randn64(s, 44)});
    CHECK_MESSAGE(r.ok, r.message);
  }
  CHECK_THROWS_AS(ops::qkv_attention(Var(randn64({2, 3, 10}, 1)), 2, 1.0), Error);  // 10 is not 3·D with D % 2 = 0
}

TEST_CASE("Mlp and pre-norm Block: timm names, composition, drop path, gradients") {
  Generator g(22);
  nn::Mlp mlp(6, 12, 6, g);
  CHECK(state_names(mlp) == std::vector<std::string>{"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"});

  nn::BlockOptions bo;
  bo.drop_path = 0.5;
  nn::Block blk(8, 2, g, nn::make_noise(3), bo);
  CHECK(state_names(blk) == std::vector<std::string>{
                                "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
                                "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
                                "mlp.fc2.weight", "mlp.fc2.bias"});
  CHECK(blk.mlp->fc1->weight.shape() == Shape{32, 8});
  CHECK(blk.norm1->eps() == 1e-6);
  blk.to(DType::float64);
  blk.eval();
  const Tensor x = randn64({3, 4, 8}, 23);
  Var y = blk.forward(Var(x));
  // x1 = x + attn(norm1(x)); y = x1 + fc2(gelu(fc1(norm2(x1)))), with the sub-layers' own forward.
  Var x1 = ops::add(Var(x), blk.attn->forward(blk.norm1->forward(Var(x))));
  Var h = blk.mlp->fc1->forward(blk.norm2->forward(x1));
  Var ref = ops::add(x1, blk.mlp->fc2->forward(ops::gelu(h)));
  CHECK(max_abs_diff(y.value(), ref.value()) < 1e-12);
  CHECK(blk.infer_shape(x.shape(), nullptr) == x.shape());

  // In training each sample either gets a residual branch (scaled by 2) or not: with p = 0.5 over many
  // samples the outputs differ from evaluation for some samples.
  blk.train();
  Var yt = blk.forward(Var(x));
  CHECK(max_abs_diff(yt.value(), y.value()) > 1e-6);
  blk.eval();
  check_module_gradients(blk, [&](const Var& v) { return blk.forward(v); }, x, 24);
}

// ---- batch-norm re-centring (nn/batchnorm_recalibration.hpp) ----------------------------------------------
// A conv → BN (identity carrying a folded bias, as the TFLite import writes it) → ReLU6 → conv → BN (arbitrary
// affine and running statistics) network, recalibrated on random batches: the eval function must not change,
// the running statistics must become the data's, and training-mode output on the calibration data must now
// match the eval output — which it must not before (the control that makes this test able to fail).
TEST_CASE("recalibrate_batchnorm keeps the eval function and makes training-mode BN start at it") {
  Generator gen(41);
  auto net = std::make_shared<nn::Sequential>();
  auto conv1 = net->push_back(std::make_shared<nn::Conv2d>(3, 6, 3, gen, ops::Conv2dOptions().with_padding(1), false));
  auto bn1 = net->push_back(std::make_shared<nn::BatchNorm2d>(6));
  net->push_back(std::make_shared<nn::ReLU6>());
  auto conv2 = net->push_back(std::make_shared<nn::Conv2d>(6, 5, 1, gen, ops::Conv2dOptions{}, false));
  auto bn2 = net->push_back(std::make_shared<nn::BatchNorm2d>(5));
  // bn1: identity plus a folded bias; bn2: arbitrary statistics and affine parameters
  bn1->bias.mutable_value() = Tensor::from_vector<float>({0.5f, -0.2f, 0.1f, 1.0f, -0.7f, 0.3f}, {6});
  bn1->running_var().fill_(1.0 - 1e-5);
  bn2->weight.mutable_value() = Tensor::from_vector<float>({1.5f, 0.5f, -1.0f, 2.0f, 0.8f}, {5});
  bn2->bias.mutable_value() = Tensor::from_vector<float>({0.1f, 0.2f, -0.3f, 0.0f, 0.4f}, {5});
  bn2->running_mean() = Tensor::from_vector<float>({0.3f, -0.1f, 0.2f, 0.0f, 0.5f}, {5});
  bn2->running_var() = Tensor::from_vector<float>({0.5f, 2.0f, 1.0f, 0.25f, 3.0f}, {5});
  std::vector<Tensor> batches;
  for (int i = 0; i < 4; ++i) {
    Generator g(100 + i);
    Tensor t = Tensor::empty({8, 3, 9, 9});
    batches.push_back(normal_(t, 0.4, 1.7, g));
  }
  Tensor all = Tensor::empty({32, 3, 9, 9});
  for (int i = 0; i < 4; ++i) all.slice(0, i * 8, (i + 1) * 8).copy_(batches[i]);
  auto run = [&](bool training) {
    NoGradGuard ng;
    net->train(training);
    const Tensor rm1 = bn1->running_mean().clone(), rv1 = bn1->running_var().clone();
    const Tensor rm2 = bn2->running_mean().clone(), rv2 = bn2->running_var().clone();
    Tensor y = net->forward(Var(all)).value().to(DType::float64);
    bn1->running_mean() = rm1, bn1->running_var() = rv1, bn2->running_mean() = rm2, bn2->running_var() = rv2;
    return y;
  };
  auto rel_diff = [&](const Tensor& a, const Tensor& b) {
    const auto va = a.to_vector<double>(), vb = b.to_vector<double>();
    double num = 0, den = 0;
    for (std::size_t i = 0; i < va.size(); ++i) num += (va[i] - vb[i]) * (va[i] - vb[i]), den += vb[i] * vb[i];
    return std::sqrt(num / den);
  };
  const Tensor eval_before = run(false);
  const Tensor train_before = run(true);
  CHECK(rel_diff(train_before, eval_before) > 0.2);  // the problem being fixed
  net->train(true);
  const int64_t changed = nn::recalibrate_batchnorm(*net, batches);
  CHECK(changed == 2);
  CHECK(net->is_training());  // mode restored
  const Tensor eval_after = run(false);
  CHECK(max_abs_diff(eval_after, eval_before) < 1e-4);
  const Tensor train_after = run(true);
  // batch statistics of the whole calibration set = the recorded statistics (up to n/(n-1) in the variance)
  CHECK(rel_diff(train_after, eval_after) < 1e-2);
  // bn1's running mean is the mean of conv1's output over the data, per channel
  {
    NoGradGuard ng;
    const Tensor c1 = conv1->forward(Var(all)).value().to(DType::float64);
    const auto v = c1.to_vector<double>();
    const int64_t hw = 81;
    for (int64_t c = 0; c < 6; ++c) {
      double s = 0;
      for (int64_t n = 0; n < 32; ++n)
        for (int64_t k = 0; k < hw; ++k) s += v[(n * 6 + c) * hw + k];
      CHECK(bn1->running_mean().to(DType::float64).to_vector<double>()[c] == doctest::Approx(s / (32 * hw)).epsilon(1e-5));
    }
  }
}
