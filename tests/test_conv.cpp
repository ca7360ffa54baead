// tests/test_conv.cpp — conv2d (dense, grouped, depthwise, pointwise; stride, asymmetric padding, dilation)
// against a naive direct-loop reference written here, forward and backward, plus gradient checks in float64,
// TensorFlow "SAME" padding, non-contiguous inputs and the shape errors.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include <retikd/autograd/gradcheck.hpp>
#include <retikd/core/random.hpp>
#include <retikd/ops/conv.hpp>
#include "test_util.hpp"

using namespace retikd;
using namespace retikd::test;

namespace {


// The convolution by definition: y[n,o,oh,ow] = b[o] + Σ_{c in group, i, j} w[o,c,i,j] · x[n, g·Cg + c,
// oh·sh − pt + i·dh, ow·sw − pl + j·dw] (zero outside the input). Accumulates in double.
struct ConvCase {
  int64_t N, C, H, W, O, kh, kw;
  ops::Conv2dOptions opt;
};

Shape out_shape(const ConvCase& k) {
  const auto& o = k.opt;
  const int64_t oh = (k.H + o.pad_top + o.pad_bottom - o.dilation_h * (k.kh - 1) - 1) / o.stride_h + 1;
  const int64_t ow = (k.W + o.pad_left + o.pad_right - o.dilation_w * (k.kw - 1) - 1) / o.stride_w + 1;
  return {k.N, k.O, oh, ow};
}

// Visits every (output element, input element, weight element) triple the convolution multiplies.
template <class Fn>
void for_each_tap(const ConvCase& k, Fn&& fn) {
  const auto& o = k.opt;
  const Shape ys = out_shape(k);
  const int64_t Cg = k.C / o.groups, Og = k.O / o.groups;
  for (int64_t n = 0; n < k.N; ++n)
    for (int64_t oc = 0; oc < k.O; ++oc)
      for (int64_t oh = 0; oh < ys[2]; ++oh)
        for (int64_t ow = 0; ow < ys[3]; ++ow)
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t i = 0; i < k.kh; ++i)
              for (int64_t j = 0; j < k.kw; ++j) {
                const int64_t ih = oh * o.stride_h - o.pad_top + i * o.dilation_h;
                const int64_t iw = ow * o.stride_w - o.pad_left + j * o.dilation_w;
                if (ih < 0 || ih >= k.H || iw < 0 || iw >= k.W) continue;
                const int64_t ic = (oc / Og) * Cg + c;
                const int64_t yi = ((n * k.O + oc) * ys[2] + oh) * ys[3] + ow;
                const int64_t xi = ((n * k.C + ic) * k.H + ih) * k.W + iw;
                const int64_t wi = ((oc * Cg + c) * k.kh + i) * k.kw + j;
                fn(yi, xi, wi);
              }
}

Tensor reference_conv(const ConvCase& k, const Tensor& x, const Tensor& w, const Tensor& b) {
  const std::vector<double> vx = x.to_vector<double>(), vw = w.to_vector<double>();
  const Shape ys = out_shape(k);
  std::vector<double> y(static_cast<std::size_t>(shape_numel(ys)), 0.0);
  for_each_tap(k, [&](int64_t yi, int64_t xi, int64_t wi) { y[yi] += vx[xi] * vw[wi]; });
  if (b.defined()) {
    const std::vector<double> vb = b.to_vector<double>();
    const int64_t L = ys[2] * ys[3];
    for (std::size_t i = 0; i < y.size(); ++i) y[i] += vb[(static_cast<int64_t>(i) / L) % k.O];
  }
  return Tensor::from_vector(y, ys);
}

// Reference gradients for a given output gradient gy: gx = Σ gy·w, gw = Σ gy·x.
void reference_conv_backward(const ConvCase& k, const Tensor& x, const Tensor& w, const Tensor& gy, Tensor& gx,
                             Tensor& gw, Tensor& gb) {
  const std::vector<double> vx = x.to_vector<double>(), vw = w.to_vector<double>(), vg = gy.to_vector<double>();
  std::vector<double> dx(vx.size(), 0.0), dw(vw.size(), 0.0), db(static_cast<std::size_t>(k.O), 0.0);
  for_each_tap(k, [&](int64_t yi, int64_t xi, int64_t wi) {
    dx[xi] += vg[yi] * vw[wi];
    dw[wi] += vg[yi] * vx[xi];
  });
  const Shape ys = out_shape(k);
  const int64_t L = ys[2] * ys[3];
  for (std::size_t i = 0; i < vg.size(); ++i) db[(static_cast<int64_t>(i) / L) % k.O] += vg[i];
  gx = Tensor::from_vector(dx, x.shape());
  gw = Tensor::from_vector(dw, w.shape());
  gb = Tensor::from_vector(db, {k.O});
}

ops::Conv2dOptions opts(int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr, int64_t dh = 1,
                        int64_t dw = 1, int64_t groups = 1) {
  return ops::Conv2dOptions().with_stride(sh, sw).with_padding(pt, pb, pl, pr).with_dilation(dh, dw).with_groups(groups);
}

// Every combination the forward/backward comparisons run: dense, grouped, depthwise (multiplier 1 and 2),
// pointwise, strides, asymmetric padding, dilation, 1×1 images, non-square, batch 1 and batch > threads.
std::vector<ConvCase> conv_cases() {
  return {
      {2, 3, 7, 6, 4, 3, 3, opts(1, 1, 1, 1, 1, 1)},                 // dense 3×3 "same"
      {1, 3, 9, 8, 5, 3, 3, opts(2, 2, 0, 1, 0, 1)},                 // stride 2, TF-SAME-style padding
      {3, 2, 8, 9, 3, 3, 2, opts(1, 2, 2, 0, 1, 3, 2, 1)},           // non-square kernel, dilation 2 rows
      {2, 4, 6, 7, 6, 3, 3, opts(1, 1, 1, 1, 1, 1, 1, 1, 2)},        // groups 2
      {2, 6, 5, 5, 6, 1, 3, opts(1, 1, 0, 0, 1, 1, 1, 2, 3)},        // groups 3, dilation along width
      {2, 5, 9, 10, 5, 3, 3, opts(1, 1, 1, 1, 1, 1, 1, 1, 5)},       // depthwise stride 1
      {1, 5, 9, 11, 5, 3, 3, opts(2, 2, 1, 1, 1, 1, 1, 1, 5)},       // depthwise stride 2
      {1, 4, 10, 9, 4, 3, 3, opts(2, 2, 0, 1, 0, 1, 1, 1, 4)},       // depthwise stride 2, SAME (asymmetric)
      {2, 3, 7, 12, 6, 3, 3, opts(1, 1, 2, 2, 2, 2, 2, 2, 3)},       // depthwise multiplier 2, dilation 2
      {3, 4, 6, 5, 4, 5, 3, opts(1, 2, 2, 2, 1, 0, 1, 1, 4)},        // depthwise non-square kernel, asymmetric
      {2, 3, 11, 13, 3, 3, 3, opts(3, 3, 1, 1, 1, 1, 1, 1, 3)},      // depthwise stride 3
      {1, 4, 9, 37, 8, 3, 5, opts(2, 3, 0, 2, 2, 1, 1, 2, 4)},       // depthwise ×2, stride (2, 3), 15 taps
      {1, 2, 20, 40, 2, 3, 3, opts(1, 1, 1, 1, 1, 1, 1, 1, 2)},      // depthwise, rows of 2+ vectors and a tail
      {1, 2, 9, 70, 2, 3, 3, opts(2, 2, 0, 1, 0, 1, 1, 1, 2)},       // depthwise stride 2, long rows, SAME
      {2, 8, 5, 6, 12, 1, 1, opts(1, 1, 0, 0, 0, 0)},                // pointwise (no im2col)
      {2, 8, 6, 6, 4, 1, 1, opts(1, 1, 0, 0, 0, 0, 1, 1, 2)},        // grouped pointwise
      {1, 3, 7, 7, 4, 1, 1, opts(2, 2, 0, 0, 0, 0)},                 // 1×1 stride 2 (im2col path)
      {2, 3, 1, 1, 4, 3, 3, opts(1, 1, 1, 1, 1, 1)},                 // 1×1 image, padded 3×3 kernel
      {1, 3, 1, 1, 2, 1, 1, opts(1, 1, 0, 0, 0, 0)},                 // 1×1 image, 1×1 kernel
      {2, 4, 1, 1, 4, 3, 3, opts(1, 1, 1, 1, 1, 1, 1, 1, 4)},        // 1×1 image, depthwise
      {1, 1, 5, 4, 3, 2, 2, opts(1, 1, 0, 0, 0, 0)},                 // single input channel (dense, C = groups = 1)
      {1, 3, 4, 4, 2, 4, 4, opts(3, 3, 0, 0, 0, 0)},                 // kernel = image
      {1, 32, 16, 16, 32, 3, 3, opts(1, 1, 1, 1, 1, 1)},             // large enough for the threaded GEMM
      {3, 16, 12, 10, 24, 3, 3, opts(2, 1, 1, 1, 0, 2)},             // batch > threads, blocked GEMM sizes
      {2, 32, 9, 128, 3, 3, 3, opts(1, 1, 1, 1, 1, 1)},              // several im2col row tiles, ragged last
      {1, 64, 7, 100, 4, 3, 3, opts(1, 1, 1, 1, 1, 1, 1, 1, 2)},     // row tiles within groups
  };
}

}  // namespace

TEST_CASE("conv2d: the large-image cases above really split into several im2col row tiles") {
  for (const ConvCase& k : conv_cases()) {
    if (k.C < 32 || k.W < 100) continue;
    const auto g = ops::impl::conv2d_geometry({k.N, k.C, k.H, k.W}, {k.O, k.C / k.opt.groups, k.kh, k.kw}, k.opt);
    CHECK(cpu::conv_detail::im2col_tile_rows<float>(g) < g.OH);
    CHECK(cpu::conv_detail::im2col_tile_rows<double>(g) < g.OH);
    CHECK(g.OH % cpu::conv_detail::im2col_tile_rows<double>(g) != 0);
  }
}

TEST_CASE("conv2d: a hand-computed 3x3 box filter") {
  // x = 1..9 in a 3×3 image, all-ones 3×3 kernel, padding 1: each output sums its 3×3 neighbourhood.
  Tensor x = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3});
  Tensor w = Tensor::ones({1, 1, 3, 3});
  Tensor b = Tensor::from_vector<float>({0.5f}, {1});
  Var y = ops::conv2d(Var(x), Var(w), Var(b), ops::Conv2dOptions().with_padding(1));
  const std::vector<float> expect{12.5f, 21.5f, 16.5f, 27.5f, 45.5f, 33.5f, 24.5f, 39.5f, 28.5f};
  CHECK(y.shape() == Shape{1, 1, 3, 3});
  CHECK(y.value().to_vector<float>() == expect);
  // Stride 2 picks the corners; asymmetric padding (bottom and left only) shifts the windows.
  Var yc = ops::conv2d(Var(x), Var(w), Var(), ops::Conv2dOptions().with_padding(1).with_stride(2));
  CHECK(yc.value().to_vector<float>() == std::vector<float>{12, 16, 24, 28});
  Var ya = ops::conv2d(Var(x), Var(w), Var(), ops::Conv2dOptions().with_padding(0, 1, 1, 0));
  CHECK(ya.shape() == Shape{1, 1, 2, 2});
  CHECK(ya.value().to_vector<float>() == std::vector<float>{27, 45, 24, 39});
}

TEST_CASE("conv2d: forward matches the direct-loop reference on every configuration (float64 and float32)") {
  uint64_t seed = 10;
  for (const ConvCase& k : conv_cases()) {
    CAPTURE(k.N);
    CAPTURE(k.C);
    CAPTURE(k.H);
    CAPTURE(k.W);
    CAPTURE(k.O);
    CAPTURE(k.kh);
    CAPTURE(k.kw);
    CAPTURE(k.opt.stride_h);
    CAPTURE(k.opt.stride_w);
    CAPTURE(k.opt.groups);
    const Tensor x = random_tensor({k.N, k.C, k.H, k.W}, ++seed);
    const Tensor w = random_tensor({k.O, k.C / k.opt.groups, k.kh, k.kw}, ++seed);
    const Tensor b = random_tensor({k.O}, ++seed);
    const Tensor ref = reference_conv(k, x, w, b);
    const Tensor y = ops::conv2d(Var(x), Var(w), Var(b), k.opt).value();
    REQUIRE(y.shape() == out_shape(k));
    CHECK(max_abs_diff(y, ref) < 1e-11);
    const Tensor y_nobias = ops::conv2d(Var(x), Var(w), Var(), k.opt).value();
    CHECK(max_abs_diff(y_nobias, reference_conv(k, x, w, Tensor())) < 1e-11);
    const Tensor y32 =
        ops::conv2d(Var(x.to(DType::float32)), Var(w.to(DType::float32)), Var(b.to(DType::float32)), k.opt).value();
    CHECK(y32.dtype() == DType::float32);
    CHECK(max_abs_diff(y32, ref) < 1e-4 * (1.0 + max_abs(ref)));
  }
}

TEST_CASE("conv2d: backward matches the direct-loop reference on every configuration (float64 and float32)") {
  uint64_t seed = 500;
  for (const ConvCase& k : conv_cases()) {
    CAPTURE(k.N);
    CAPTURE(k.C);
    CAPTURE(k.O);
    CAPTURE(k.H);
    CAPTURE(k.W);
    CAPTURE(k.opt.groups);
    for (DType dt : {DType::float64, DType::float32}) {
      CAPTURE(dt);
      const Tensor x = random_tensor({k.N, k.C, k.H, k.W}, ++seed, dt);
      const Tensor w = random_tensor({k.O, k.C / k.opt.groups, k.kh, k.kw}, ++seed, dt);
      const Tensor b = random_tensor({k.O}, ++seed, dt);
      const Tensor gy = random_tensor(out_shape(k), ++seed, dt);
      Var vx(x, true), vw(w, true), vb(b, true);
      ops::conv2d(vx, vw, vb, k.opt).backward(gy);
      Tensor gx, gw, gb;
      reference_conv_backward(k, x, w, gy, gx, gw, gb);
      const double tol = dt == DType::float64 ? 1e-11 : 1e-4;
      CHECK(max_abs_diff(vx.grad(), gx) < tol * (1.0 + max_abs(gx)));
      CHECK(max_abs_diff(vw.grad(), gw) < tol * (1.0 + max_abs(gw)));
      CHECK(max_abs_diff(vb.grad(), gb) < tol * (1.0 + max_abs(gb)));
    }
  }
}

TEST_CASE("conv2d: gradcheck of input, weight and bias in float64") {
  struct Small {
    int64_t N, C, H, W, O, kh, kw;
    ops::Conv2dOptions opt;
  };
  const std::vector<Small> cases{
      {2, 2, 5, 4, 3, 3, 2, opts(2, 1, 1, 0, 0, 1, 1, 2)},       // dense: stride, asymmetric pad, dilation
      {1, 3, 4, 5, 2, 3, 3, opts(1, 1, 1, 1, 1, 1)},             // dense, batch 1 (threads inside the image)
      {2, 4, 4, 4, 2, 3, 3, opts(2, 2, 1, 1, 1, 1, 1, 1, 2)},    // groups 2
      {2, 3, 5, 11, 3, 3, 3, opts(1, 1, 1, 1, 1, 1, 1, 1, 3)},   // depthwise, wide enough for the vector loops
      {1, 2, 6, 9, 4, 3, 3, opts(2, 2, 0, 1, 0, 1, 1, 1, 2)},    // depthwise multiplier 2, stride 2, SAME
      {2, 2, 5, 5, 2, 3, 3, opts(1, 1, 2, 2, 2, 2, 2, 2, 2)},    // depthwise dilation 2
      {1, 2, 7, 8, 2, 2, 3, opts(3, 3, 1, 0, 2, 1)},             // dense stride 3, asymmetric
      {1, 2, 7, 8, 2, 2, 3, opts(3, 3, 1, 0, 2, 1, 1, 1, 2)},    // depthwise stride 3, asymmetric
      {2, 3, 3, 4, 2, 1, 1, opts(1, 1, 0, 0, 0, 0)},             // pointwise
      {2, 3, 1, 1, 2, 3, 3, opts(1, 1, 1, 1, 1, 1)},             // 1×1 image
  };
  uint64_t seed = 900;
  for (const Small& k : cases) {
    CAPTURE(k.C);
    CAPTURE(k.O);
    CAPTURE(k.opt.groups);
    const ops::Conv2dOptions opt = k.opt;
    std::vector<Tensor> inputs{random_tensor({k.N, k.C, k.H, k.W}, ++seed),
                               random_tensor({k.O, k.C / k.opt.groups, k.kh, k.kw}, ++seed),
                               random_tensor({k.O}, ++seed)};
    auto r = gradcheck([&](const std::vector<Var>& v) { return ops::conv2d(v[0], v[1], v[2], opt); }, inputs);
    CHECK_MESSAGE(r.ok, r.message);
    CHECK(r.checked == inputs[0].numel() + inputs[1].numel() + inputs[2].numel());
    // Without a bias, and with only some inputs requiring a gradient.
    std::vector<Tensor> two{inputs[0], inputs[1]};
    auto r2 = gradcheck([&](const std::vector<Var>& v) { return ops::conv2d(v[0], v[1], Var(), opt); }, two);
    CHECK_MESSAGE(r2.ok, r2.message);
    GradcheckOptions only_w;
    only_w.no_grad_inputs = {0};
    auto r3 = gradcheck([&](const std::vector<Var>& v) { return ops::conv2d(v[0], v[1], v[2], opt); }, inputs, only_w);
    CHECK_MESSAGE(r3.ok, r3.message);
  }
}

TEST_CASE("conv2d: TensorFlow SAME padding") {
  auto p = ops::same_padding(224, 3, 2);  // out 112: total 1, the odd pixel at the end
  CHECK(p.before == 0);
  CHECK(p.after == 1);
  p = ops::same_padding(7, 3, 1);
  CHECK((p.before == 1 && p.after == 1));
  p = ops::same_padding(6, 4, 1);  // total 3
  CHECK((p.before == 1 && p.after == 2));
  p = ops::same_padding(5, 1, 2);  // 1×1 never pads
  CHECK((p.before == 0 && p.after == 0));
  p = ops::same_padding(8, 3, 1, 2);  // dilated kernel spans 5: total 4
  CHECK((p.before == 2 && p.after == 2));
  p = ops::same_padding(2, 5, 3);  // kernel larger than the input: out 1, total 3
  CHECK((p.before == 1 && p.after == 2));

  // The output has ceil(in / stride) positions and equals the reference with those asymmetric pads.
  for (int64_t stride : {1, 2, 3}) {
    for (int64_t in : {5, 6, 7, 8}) {
      ops::Conv2dOptions o = ops::Conv2dOptions().with_stride(stride).with_same_padding(in, in + 1, 3, 3);
      CHECK(o.pad_top + o.pad_bottom >= 0);
      ConvCase k{1, 2, in, in + 1, 3, 3, 3, o};
      const Tensor x = random_tensor({1, 2, in, in + 1}, 40 + in);
      const Tensor w = random_tensor({3, 2, 3, 3}, 50 + in);
      const Tensor y = ops::conv2d(Var(x), Var(w), Var(), o).value();
      CHECK(y.size(2) == (in + stride - 1) / stride);
      CHECK(y.size(3) == (in + 1 + stride - 1) / stride);
      CHECK(max_abs_diff(y, reference_conv(k, x, w, Tensor())) < 1e-11);
    }
  }
}

TEST_CASE("conv2d: non-contiguous inputs give the same values and gradients") {
  for (int64_t groups : {1, 4}) {  // dense and depthwise paths
    CAPTURE(groups);
    // x built as (N, H, W, C) then permuted to (N, C, H, W); the weight as a transposed view.
    const Tensor x_nhwc = random_tensor({2, 6, 9, 4}, 71);
    const Tensor x_view = x_nhwc.permute({0, 3, 1, 2});
    REQUIRE(!x_view.is_contiguous());
    const int64_t cg = 4 / groups;
    const Tensor w_t = random_tensor({4, cg, 3, 3}, 72 + groups).transpose(2, 3).contiguous().transpose(2, 3);
    REQUIRE(!w_t.is_contiguous());
    const Tensor b_full = random_tensor({8}, 73);
    const Tensor b_view = b_full.slice(0, 0, 8, 2);  // stride-2 bias
    REQUIRE(!b_view.is_contiguous());
    const ops::Conv2dOptions o = opts(2, 1, 1, 1, 0, 2, 1, 1, groups);

    Var vx(x_view, true), vw(w_t, true), vb(b_view, true);
    Var y = ops::conv2d(vx, vw, vb, o);
    Var cx(x_view.contiguous(), true), cw(w_t.contiguous(), true), cb(b_view.contiguous(), true);
    Var yc = ops::conv2d(cx, cw, cb, o);
    CHECK(max_abs_diff(y.value(), yc.value()) == 0.0);
    ConvCase k{2, 4, 6, 9, 4, 3, 3, o};
    CHECK(max_abs_diff(y.value(), reference_conv(k, x_view, w_t, b_view)) < 1e-11);
    const Tensor gy = random_tensor(y.shape(), 74);
    y.backward(gy);
    yc.backward(gy);
    CHECK(max_abs_diff(vx.grad(), cx.grad()) == 0.0);
    CHECK(max_abs_diff(vw.grad(), cw.grad()) == 0.0);
    CHECK(max_abs_diff(vb.grad(), cb.grad()) == 0.0);
    CHECK(max_abs(vw.grad()) > 0.0);
    // A non-contiguous output gradient is read correctly too.
    Var vx2(x_view, true);
    const Tensor gy_t = gy.transpose(2, 3).contiguous().transpose(2, 3);
    REQUIRE(!gy_t.is_contiguous());
    ops::conv2d(vx2, Var(w_t), Var(b_view), o).backward(gy_t);
    CHECK(max_abs_diff(vx2.grad(), cx.grad()) == 0.0);
  }
}

TEST_CASE("conv2d: only the gradients that are needed are computed, and none under NoGradGuard") {
  const Tensor x = random_tensor({1, 2, 4, 4}, 81), w = random_tensor({3, 2, 3, 3}, 82);
  Var vx(x, false), vw(w, true);
  Var y = ops::conv2d(vx, vw);
  CHECK(y.requires_grad());
  y.backward(Tensor::ones(y.shape(), DType::float64));
  CHECK(!vx.grad().defined());
  CHECK(vw.grad().defined());
  {
    NoGradGuard ng;
    CHECK(!ops::conv2d(Var(x, true), vw).requires_grad());
  }
  // An empty batch gives an empty output and zero gradients of the right shapes.
  Var ex(Tensor::zeros({0, 2, 4, 4}, DType::float64), true), ew(w, true);
  Var ey = ops::conv2d(ex, ew);
  CHECK(ey.shape() == Shape{0, 3, 2, 2});
  ey.backward(Tensor::zeros(ey.shape(), DType::float64));
  CHECK(ex.grad().shape() == ex.shape());
  CHECK(max_abs(ew.grad()) == 0.0);
}

TEST_CASE("conv2d: bad shapes and arguments throw, naming conv2d and the shapes") {
  const Var x(Tensor::zeros({2, 4, 5, 5}));
  const Var w(Tensor::zeros({6, 4, 3, 3}));
  CHECK_THROWS_AS(ops::conv2d(Var(Tensor::zeros({4, 5, 5})), w), retikd::Error);  // 3-D input
  CHECK_THROWS_AS(ops::conv2d(x, Var(Tensor::zeros({6, 4, 3}))), retikd::Error);  // 3-D weight
  CHECK_THROWS_AS(ops::conv2d(x, Var(Tensor::zeros({6, 3, 3, 3}))), retikd::Error);  // weight channels ≠ C
  CHECK_THROWS_AS(ops::conv2d(x, Var(Tensor::zeros({6, 2, 3, 3})), Var(), ops::Conv2dOptions().with_groups(3)),
                  retikd::Error);  // C not divisible by groups
  CHECK_THROWS_AS(ops::conv2d(x, Var(Tensor::zeros({5, 2, 3, 3})), Var(), ops::Conv2dOptions().with_groups(2)),
                  retikd::Error);  // O not divisible by groups
  CHECK_THROWS_AS(ops::conv2d(x, Var(Tensor::zeros({6, 4, 7, 3}))), retikd::Error);  // kernel taller than input
  CHECK_THROWS_AS(ops::conv2d(x, Var(Tensor::zeros({6, 4, 3, 3})), Var(), ops::Conv2dOptions().with_dilation(3)),
                  retikd::Error);  // dilated kernel (7) larger than the input
  CHECK_NOTHROW(ops::conv2d(x, Var(Tensor::zeros({6, 4, 7, 3})), Var(), ops::Conv2dOptions().with_padding(1)));
  CHECK_THROWS_AS(ops::conv2d(x, w, Var(Tensor::zeros({5}))), retikd::Error);     // bias length
  CHECK_THROWS_AS(ops::conv2d(x, w, Var(Tensor::zeros({6, 1}))), retikd::Error);  // bias rank
  CHECK_THROWS_AS(ops::conv2d(x, w, Var(), ops::Conv2dOptions().with_stride(0)), retikd::Error);
  CHECK_THROWS_AS(ops::conv2d(x, w, Var(), ops::Conv2dOptions().with_padding(-1)), retikd::Error);
  CHECK_THROWS_AS(ops::conv2d(x, w, Var(), ops::Conv2dOptions().with_dilation(0)), retikd::Error);
  CHECK_THROWS_AS(ops::conv2d(x, w, Var(), ops::Conv2dOptions().with_groups(0)), retikd::Error);
  CHECK_THROWS_AS(ops::conv2d(x, Var(Tensor::zeros({6, 4, 3, 3}, DType::float64))), retikd::Error);  // dtypes
  CHECK_THROWS_AS(ops::conv2d(Var(Tensor::zeros({2, 4, 5, 5}, DType::int32)), Var(Tensor::zeros({6, 4, 3, 3}, DType::int32))),
                  retikd::Error);
  CHECK_THROWS_AS(ops::same_padding(5, 0, 1), retikd::Error);
  try {
    ops::conv2d(x, Var(Tensor::zeros({6, 3, 3, 3})));
    FAIL("no exception");
  } catch (const retikd::Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("conv2d") != std::string::npos);
    CHECK(msg.find("(6, 3, 3, 3)") != std::string::npos);
    CHECK(msg.find("(2, 4, 5, 5)") != std::string::npos);
  }
}
