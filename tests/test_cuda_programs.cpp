// tests/test_cuda_programs.cpp — the CPU proof of the per-element programs in retikd/cuda/op_programs.hpp that
// kernels/conv.cu, the nn op families (kernels/norm.cu, pool_resize.cu, ...) and kernels/optim.cu run on the GPU: each
// program is executed serially over every index (and, for the block-reduced depthwise weight gradient, over 256
// emulated threads) and compared with ops/'s CPU path in float64 on the same rounded inputs — depthwise forward / input
// / weight gradients (stride 1 and 2, asymmetric padding, dilation, channel multiplier), the im2col + GEMM and col2im
// fallback of dense convolution (groups), max pool (with a NaN), bilinear resize (both align_corners), and the AdamW /
// SGD element updates against optim/optim.hpp over several steps (bit-exact in float32). Runs without a GPU and without
// CUDA: this is the only evidence for those kernels' index math here.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "retikd/core/random.hpp"
#include "retikd/cuda/op_programs.hpp"
#include "retikd/ops/conv.hpp"
#include "retikd/ops/pool.hpp"
#include "retikd/ops/resize.hpp"
#include "retikd/optim/optim.hpp"
#include "test_util.hpp"

using namespace retikd;
using retikd::test::check_close;
namespace prog = retikd::cuda::prog;

namespace {

std::vector<double> random_values(Generator& gen, int64_t n) {
  Tensor t = Tensor::empty({n}, DType::float64);
  normal_(t, 0.0, 1.0, gen);
  return t.to_vector<double>();
}

cuda::Conv2dDims dims_of(const ops::impl::Conv2dGeometry& g) {
  const ops::Conv2dOptions& o = g.opt;
  auto i = [](int64_t v) { return static_cast<int>(v); };
  return cuda::Conv2dDims{i(g.N),        i(g.C),          i(g.H),          i(g.W),           i(g.O),
                          i(g.kh),       i(g.kw),         i(g.OH),         i(g.OW),          i(o.stride_h),
                          i(o.stride_w), i(o.pad_top),    i(o.pad_bottom), i(o.pad_left),    i(o.pad_right),
                          i(o.dilation_h), i(o.dilation_w), i(g.groups)};
}

struct ConvCase {
  int64_t N, C, H, W, O, k;
  ops::Conv2dOptions opt;
};

template <class T>
void depthwise_case(Generator& gen, const ConvCase& c, double rtol, double atol) {
  const Shape xs{c.N, c.C, c.H, c.W}, ws{c.O, 1, c.k, c.k};
  const auto g = ops::impl::conv2d_geometry(xs, ws, c.opt);
  const cuda::Conv2dDims d = dims_of(g);
  const auto x = test::to_storage<T>(random_values(gen, shape_numel(xs)));
  const auto w = test::to_storage<T>(random_values(gen, shape_numel(ws)));
  const auto gy = test::to_storage<T>(random_values(gen, g.N * g.O * g.L));
  const Tensor xt = Tensor::from_vector(test::stored_values(x), xs), wt = Tensor::from_vector(test::stored_values(w), ws);
  const Tensor gyt = Tensor::from_vector(test::stored_values(gy), {g.N, g.O, g.OH, g.OW});

  std::vector<double> y(static_cast<std::size_t>(g.N * g.O * g.L));
  for (std::size_t i = 0; i < y.size(); ++i) y[i] = prog::depthwise_output<T, uint32_t>(d, x.data(), w.data(), static_cast<uint32_t>(i));
  check_close("depthwise forward", y, ops::impl::conv2d(xt, wt, Tensor(), c.opt), rtol, atol);

  std::vector<double> gx(x.size());
  for (std::size_t i = 0; i < gx.size(); ++i)
    gx[i] = prog::depthwise_grad_input<T, uint32_t>(d, gy.data(), w.data(), static_cast<uint32_t>(i));
  check_close("depthwise grad input", gx, ops::impl::conv2d_backward_input(gyt, wt, xs, c.opt), rtol, atol);

  // The kernel: one block per (o, tap), 256 threads striding, then a block sum.
  std::vector<double> gw(w.size());
  for (int o = 0; o < d.O; ++o)
    for (int tap = 0; tap < d.kh * d.kw; ++tap) {
      double s = 0.0;
      for (int t = 0; t < 256; ++t)
        s += prog::depthwise_grad_weight_part<T>(d, gy.data(), x.data(), o, tap / d.kw, tap % d.kw, t, 256);
      gw[static_cast<std::size_t>(o * d.kh * d.kw + tap)] = s;
    }
  check_close("depthwise grad weight", gw, ops::impl::conv2d_backward_weight(gyt, xt, ws, c.opt), rtol, atol * 10);
}

}  // namespace

TEST_CASE("cuda programs: depthwise convolution forward and gradients match the CPU op (fp32, fp16 storage)") {
  Generator gen(20260611);
  const ConvCase cases[] = {
      {2, 5, 9, 11, 5, 3, ops::Conv2dOptions().with_padding(1)},
      {2, 4, 12, 10, 4, 3, ops::Conv2dOptions().with_stride(2).with_padding(0, 1, 0, 1)},  // TF "SAME", stride 2
      {1, 3, 13, 9, 6, 3, ops::Conv2dOptions().with_stride(2).with_padding(1)},            // multiplier 2
      {2, 3, 11, 11, 3, 3, ops::Conv2dOptions().with_dilation(2).with_padding(2, 1, 0, 2)},
      {1, 2, 7, 8, 2, 5, ops::Conv2dOptions().with_padding(2)}};
  for (const ConvCase& c : cases) {
    CAPTURE(c.H);
    CAPTURE(c.opt.stride_h);
    const_cast<ops::Conv2dOptions&>(c.opt).groups = c.C;
    depthwise_case<float>(gen, c, 1e-5, 1e-5);
    depthwise_case<Half>(gen, c, 1e-5, 1e-4);  // same rounded inputs; only fp32 accumulation differs
  }
}

TEST_CASE("cuda programs: im2col + GEMM and col2im (the dense fallback) match the CPU convolution") {
  Generator gen(77);
  for (int64_t groups : {int64_t(1), int64_t(2)}) {
    const ops::Conv2dOptions opt = ops::Conv2dOptions().with_stride(2, 1).with_padding(1, 0, 2, 1).with_groups(groups);
    const Shape xs{2, 4, 9, 7}, ws{6, 4 / groups, 3, 2};
    const auto g = ops::impl::conv2d_geometry(xs, ws, opt);
    const cuda::Conv2dDims d = dims_of(g);
    const auto x = test::to_storage<float>(random_values(gen, shape_numel(xs)));
    const auto w = random_values(gen, shape_numel(ws));
    const auto gy = test::to_storage<float>(random_values(gen, g.N * g.O * g.L));
    const int64_t L = g.L, K = g.K, Og = g.Og;
    std::vector<double> y(static_cast<std::size_t>(g.N * g.O * L)), gx(x.size());
    std::vector<float> col(static_cast<std::size_t>(g.C * g.kh * g.kw * L));
    for (int64_t n = 0; n < g.N; ++n) {
      const float* xn = x.data() + n * g.C * g.H * g.W;
      for (std::size_t i = 0; i < col.size(); ++i) col[i] = prog::im2col_value<float, uint32_t>(d, xn, static_cast<uint32_t>(i));
      for (int64_t gr = 0; gr < groups; ++gr)  // y[n]_g = W_g · col_g, as the batched GEMM does
        for (int64_t o = 0; o < Og; ++o)
          for (int64_t l = 0; l < L; ++l) {
            double s = 0.0;
            for (int64_t k = 0; k < K; ++k) s += w[static_cast<std::size_t>((gr * Og + o) * K + k)] * col[static_cast<std::size_t>((gr * K + k) * L + l)];
            y[static_cast<std::size_t>((n * g.O + gr * Og + o) * L + l)] = s;
          }
      // col_g = W_gᵀ · gy[n]_g, then col2im.
      for (int64_t gr = 0; gr < groups; ++gr)
        for (int64_t k = 0; k < K; ++k)
          for (int64_t l = 0; l < L; ++l) {
            double s = 0.0;
            for (int64_t o = 0; o < Og; ++o) s += w[static_cast<std::size_t>((gr * Og + o) * K + k)] * gy[static_cast<std::size_t>((n * g.O + gr * Og + o) * L + l)];
            col[static_cast<std::size_t>((gr * K + k) * L + l)] = static_cast<float>(s);
          }
      for (int64_t i = 0; i < g.C * g.H * g.W; ++i)
        gx[static_cast<std::size_t>(n * g.C * g.H * g.W + i)] = prog::col2im_value<float, uint32_t>(d, col.data(), static_cast<uint32_t>(i));
    }
    const Tensor xt = Tensor::from_vector(test::stored_values(x), xs), wt = Tensor::from_vector(w, ws);
    check_close("im2col forward", y, ops::impl::conv2d(xt, wt, Tensor(), opt), 1e-5, 1e-5);
    check_close("col2im input gradient", gx,
                ops::impl::conv2d_backward_input(Tensor::from_vector(test::stored_values(gy), {g.N, g.O, g.OH, g.OW}), wt, xs, opt),
                1e-5, 1e-5);
  }
}

TEST_CASE("cuda programs: max pool values and arg-max indices match the CPU op (NaN wins)") {
  Generator gen(5);
  struct PoolCase { int64_t H, W, k, s, p; bool ceil; };
  for (const PoolCase& pc : {PoolCase{9, 10, 3, 2, 1, false}, PoolCase{8, 7, 2, 2, 0, true}, PoolCase{5, 5, 3, 1, 1, false}}) {
    const Shape xs{2, 3, pc.H, pc.W};
    std::vector<double> xv = random_values(gen, shape_numel(xs));
    xv[7] = std::nan("");
    const Tensor xt = Tensor::from_vector(test::stored_values(test::to_storage<float>(xv)), xs).to(DType::float32);
    const auto ref = ops::impl::max_pool2d(xt, pc.k, pc.s, pc.p, pc.ceil);
    const int64_t OH = ref.first.size(2), OW = ref.first.size(3);
    const cuda::Pool2dDims d{6, static_cast<int>(pc.H), static_cast<int>(pc.W), static_cast<int>(OH), static_cast<int>(OW),
                             static_cast<int>(pc.k), static_cast<int>(pc.k), static_cast<int>(pc.s), static_cast<int>(pc.s),
                             static_cast<int>(pc.p), static_cast<int>(pc.p)};
    const std::vector<float> x = test::to_storage<float>(xt.to(DType::float64).to_vector<double>());
    const std::vector<float> ry = ref.first.to_vector<float>();
    const std::vector<int64_t> ri = ref.second.to_vector<int64_t>();
    int bad = 0;
    for (int64_t i = 0; i < 6 * OH * OW; ++i) {
      int64_t arg = -1;
      const float v = prog::maxpool_output<float, uint32_t>(d, x.data(), static_cast<uint32_t>(i), &arg);
      const float r = ry[static_cast<std::size_t>(i)];
      const bool same = (std::isnan(v) && std::isnan(r)) || v == r;
      if (!same || arg != ri[static_cast<std::size_t>(i)]) ++bad;
    }
    CHECK(bad == 0);
  }
}

TEST_CASE("cuda programs: bilinear resize matches the CPU op (align_corners false and true, up and down)") {
  Generator gen(9);
  for (bool align : {false, true}) {
    for (const auto& hw : {std::vector<int64_t>{7, 7, 14, 14}, std::vector<int64_t>{10, 13, 4, 6},
                           std::vector<int64_t>{5, 3, 5, 11}, std::vector<int64_t>{1, 4, 3, 1}}) {
      const int64_t H = hw[0], W = hw[1], OH = hw[2], OW = hw[3];
      const Shape xs{2, 3, H, W};
      const std::vector<float> x = test::to_storage<float>(random_values(gen, shape_numel(xs)));
      const Tensor ref = ops::impl::interpolate_bilinear(Tensor::from_vector(test::stored_values(x), xs).to(DType::float32), OH, OW, align);
      std::vector<double> y(static_cast<std::size_t>(6 * OH * OW));
      for (std::size_t i = 0; i < y.size(); ++i)
        y[i] = prog::bilinear_output<float, uint32_t>(static_cast<int>(H), static_cast<int>(W), static_cast<int>(OH),
                                                      static_cast<int>(OW), align, x.data(), static_cast<uint32_t>(i));
      CAPTURE(align);
      CAPTURE(H);
      check_close("bilinear forward", y, ref, 1e-6, 1e-6);
    }
  }
}

TEST_CASE("cuda programs: AdamW and SGD element updates equal optim/optim.hpp's CPU update bit for bit") {
  Generator gen(3);
  const int64_t n = 1000;
  const std::vector<float> p0 = test::to_storage<float>(random_values(gen, n));
  std::vector<std::vector<float>> grads;
  for (int s = 0; s < 4; ++s) grads.push_back(test::to_storage<float>(random_values(gen, n)));
  auto var_of = [&](const std::vector<float>& v) {
    return Var(Tensor::from_vector(test::stored_values(v), {n}).to(DType::float32), true);
  };
  SUBCASE("AdamW") {
    Var p = var_of(p0);
    optim::AdamW opt({p}, optim::AdamWOptions{1e-2, 0.9, 0.999, 1e-8, 0.05});
    std::vector<float> q = p0, m(n, 0.f), v(n, 0.f);
    for (int step = 1; step <= 4; ++step) {
      p.mutable_grad() = (Tensor::from_vector(test::stored_values(grads[static_cast<std::size_t>(step - 1)]), {n}).to(DType::float32));
      opt.step();
      const double bc1 = 1.0 - std::pow(0.9, step), bc2 = 1.0 - std::pow(0.999, step);
      const prog::AdamWScalars s{static_cast<float>(1.0 - 1e-2 * 0.05), 0.9f, 0.999f, static_cast<float>(1e-2 / bc1),
                                 static_cast<float>(1.0 / std::sqrt(bc2)), 1e-8f};
      for (int64_t k = 0; k < n; ++k)
        prog::adamw_element(s, q.data(), grads[static_cast<std::size_t>(step - 1)].data(), m.data(), v.data(), k);
    }
    CHECK(p.value().to_vector<float>() == q);
  }
  SUBCASE("SGD with Nesterov momentum and weight decay") {
    Var p = var_of(p0);
    optim::SGD opt({p}, optim::SGDOptions{0.1, 0.9, 0.0, 1e-3, true});
    std::vector<float> q = p0, b(n, 0.f);
    for (int step = 1; step <= 4; ++step) {
      p.mutable_grad() = (Tensor::from_vector(test::stored_values(grads[static_cast<std::size_t>(step - 1)]), {n}).to(DType::float32));
      opt.step();
      const prog::SGDScalars s{0.1f, 1e-3f, 0.9f, 0.f, 1, step == 1 ? 1 : 0};
      for (int64_t k = 0; k < n; ++k) prog::sgd_element(s, q.data(), grads[static_cast<std::size_t>(step - 1)].data(), b.data(), k);
    }
    CHECK(p.value().to_vector<float>() == q);
  }
}
