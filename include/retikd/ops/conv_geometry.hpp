// retikd/ops/conv_geometry.hpp — the sizes of one 2-D convolution, shared by the conv family's front end
// (ops/conv.hpp, which owns the op and its CPU paths) and its CUDA back end (ops/cuda/conv.hpp): padding
// helpers (TensorFlow "SAME"), Conv2dOptions, and impl::Conv2dGeometry, validated once by conv2d_geometry.
// It lives apart from ops/conv.hpp so the back end can take a geometry without including its front end.
#pragma once

#include <algorithm>
#include <cstdint>

#include "retikd/core/error.hpp"
#include "retikd/core/shape.hpp"

namespace retikd {
namespace ops {

// Padding before and after one spatial dimension.
struct PadPair {
  int64_t before = 0;
  int64_t after = 0;
};

// TensorFlow "SAME": the output has ceil(in / stride) positions; the total padding that needs is split with
// the odd pixel at the end (bottom / right), which PyTorch's symmetric `padding` cannot express.
inline PadPair same_padding(int64_t in, int64_t kernel, int64_t stride, int64_t dilation = 1) {
  RETIKD_CHECK(in >= 0 && kernel >= 1 && stride >= 1 && dilation >= 1, "same_padding: invalid arguments in=",
               in, " kernel=", kernel, " stride=", stride, " dilation=", dilation);
  const int64_t out = (in + stride - 1) / stride;
  const int64_t effective = dilation * (kernel - 1) + 1;
  const int64_t total = std::max<int64_t>((out - 1) * stride + effective - in, 0);
  return {total / 2, total - total / 2};
}

struct Conv2dOptions {
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;

  // Chainable setters: Conv2dOptions().with_stride(2).with_padding(1).with_groups(32).
  Conv2dOptions& with_stride(int64_t s) { return with_stride(s, s); }
  Conv2dOptions& with_stride(int64_t sh, int64_t sw) {
    stride_h = sh;
    stride_w = sw;
    return *this;
  }
  Conv2dOptions& with_padding(int64_t p) { return with_padding(p, p, p, p); }
  Conv2dOptions& with_padding(int64_t top, int64_t bottom, int64_t left, int64_t right) {
    pad_top = top;
    pad_bottom = bottom;
    pad_left = left;
    pad_right = right;
    return *this;
  }
  Conv2dOptions& with_dilation(int64_t d) { return with_dilation(d, d); }
  Conv2dOptions& with_dilation(int64_t dh, int64_t dw) {
    dilation_h = dh;
    dilation_w = dw;
    return *this;
  }
  Conv2dOptions& with_groups(int64_t g) {
    groups = g;
    return *this;
  }
  // TensorFlow "SAME" padding for an in_h × in_w input and a kernel_h × kernel_w kernel at the current
  // stride and dilation (set those first).
  Conv2dOptions& with_same_padding(int64_t in_h, int64_t in_w, int64_t kernel_h, int64_t kernel_w) {
    const PadPair ph = same_padding(in_h, kernel_h, stride_h, dilation_h);
    const PadPair pw = same_padding(in_w, kernel_w, stride_w, dilation_w);
    return with_padding(ph.before, ph.after, pw.before, pw.after);
  }
};

namespace impl {

// Every size of one convolution, validated once.
struct Conv2dGeometry {
  int64_t N, C, H, W;         // input
  int64_t O, kh, kw;          // weight (O, C/groups, kh, kw)
  int64_t OH, OW;             // output
  int64_t groups, Cg, Og;     // channels per group (input, output)
  int64_t K;                  // GEMM depth: Cg·kh·kw
  int64_t L;                  // output positions: OH·OW
  Conv2dOptions opt;

  bool depthwise() const { return groups == C && groups > 1; }
  // 1×1, stride 1, no padding: the input plane is the im2col matrix itself.
  bool pointwise() const {
    return kh == 1 && kw == 1 && opt.stride_h == 1 && opt.stride_w == 1 && opt.pad_top == 0 &&
           opt.pad_bottom == 0 && opt.pad_left == 0 && opt.pad_right == 0;
  }
};

inline Conv2dGeometry conv2d_geometry(const Shape& x, const Shape& w, const Conv2dOptions& o) {
  RETIKD_CHECK(x.size() == 4, "conv2d: input ", shape_str(x), " must be 4-D (N, C, H, W)");
  RETIKD_CHECK(w.size() == 4, "conv2d: weight ", shape_str(w), " must be 4-D (O, C/groups, kh, kw)");
  RETIKD_CHECK(o.stride_h >= 1 && o.stride_w >= 1, "conv2d: stride (", o.stride_h, ", ", o.stride_w,
               ") must be positive");
  RETIKD_CHECK(o.dilation_h >= 1 && o.dilation_w >= 1, "conv2d: dilation (", o.dilation_h, ", ", o.dilation_w,
               ") must be positive");
  RETIKD_CHECK(o.pad_top >= 0 && o.pad_bottom >= 0 && o.pad_left >= 0 && o.pad_right >= 0,
               "conv2d: padding (top ", o.pad_top, ", bottom ", o.pad_bottom, ", left ", o.pad_left, ", right ",
               o.pad_right, ") must be non-negative");
  RETIKD_CHECK(o.groups >= 1, "conv2d: groups ", o.groups, " must be positive");
  Conv2dGeometry g;
  g.opt = o;
  g.N = x[0];
  g.C = x[1];
  g.H = x[2];
  g.W = x[3];
  g.O = w[0];
  g.kh = w[2];
  g.kw = w[3];
  g.groups = o.groups;
  RETIKD_CHECK(g.C % g.groups == 0, "conv2d: input ", shape_str(x), " has ", g.C,
               " channels, not divisible by groups ", g.groups);
  RETIKD_CHECK(g.O % g.groups == 0 && g.O > 0, "conv2d: weight ", shape_str(w), " has ", g.O,
               " output channels, not a positive multiple of groups ", g.groups);
  g.Cg = g.C / g.groups;
  g.Og = g.O / g.groups;
  RETIKD_CHECK(w[1] == g.Cg, "conv2d: weight ", shape_str(w), " must have C/groups = ", g.Cg,
               " input channels for input ", shape_str(x), " and groups ", g.groups);
  RETIKD_CHECK(g.kh >= 1 && g.kw >= 1, "conv2d: weight ", shape_str(w), " has an empty kernel");
  const int64_t eff_h = o.dilation_h * (g.kh - 1) + 1, eff_w = o.dilation_w * (g.kw - 1) + 1;
  const int64_t padded_h = g.H + o.pad_top + o.pad_bottom, padded_w = g.W + o.pad_left + o.pad_right;
  RETIKD_CHECK(padded_h >= eff_h && padded_w >= eff_w, "conv2d: kernel ", g.kh, "x", g.kw, " (dilated ", eff_h,
               "x", eff_w, ") is larger than the padded input ", padded_h, "x", padded_w, " of input ",
               shape_str(x));
  g.OH = (padded_h - eff_h) / o.stride_h + 1;
  g.OW = (padded_w - eff_w) / o.stride_w + 1;
  g.K = g.Cg * g.kh * g.kw;
  g.L = g.OH * g.OW;
  return g;
}

}  // namespace impl
}  // namespace ops
}  // namespace retikd
