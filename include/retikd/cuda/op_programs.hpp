// retikd/cuda/op_programs.hpp — the per-element programs of the convolution, pooling, resize and optimizer
// kernels (kernels/conv.cu, the nn op families, kernels/optim.cu), written once as C++14 RETIKD_HOST_DEVICE
// functions of (shape, pointers, element index).
//
// Why a shared header: no GPU is available where this code is written, so the only evidence that the GPU
// kernels compute the right thing is to run the very same index math and arithmetic serially on the CPU
// (tests/test_cuda_programs.cpp runs every program over every index and compares with ops/'s CPU path). The
// kernels are thin grid-stride loops or block reductions around these functions. No CUDA types: host code
// includes this without nvcc. Sizes are int (the launchers check that every extent fits), element indices
// int64_t. Accumulation is always in float, whatever the storage type (float or retikd::Half).
#pragma once

#include <cmath>
#include <cstdint>

#include "retikd/core/half.hpp"
#include "retikd/core/host_device.hpp"

namespace retikd {
namespace cuda {

// Every size of one 2-D convolution (PyTorch's cross-correlation, asymmetric padding): x (N, C, H, W),
// w (O, C/groups, kh, kw), y (N, O, OH, OW).
struct Conv2dDims {
  int N, C, H, W;
  int O, kh, kw;
  int OH, OW;
  int stride_h, stride_w;
  int pad_top, pad_bottom, pad_left, pad_right;
  int dil_h, dil_w;
  int groups;
};

// Max pooling on (planes = N·C, H, W) → (planes, OH, OW): kernel, stride, padding per axis.
struct Pool2dDims {
  int planes, H, W, OH, OW, kh, kw, sh, sw, ph, pw;
};

namespace prog {

RETIKD_HOST_DEVICE inline float to_f(float v) { return v; }
RETIKD_HOST_DEVICE inline float to_f(Half v) { return static_cast<float>(v); }
template <class T>
RETIKD_HOST_DEVICE inline T from_f(float v) {
  return T(v);
}

// Output positions o in [lo, hi) whose input coordinate o·stride − pad + tap lies in [0, in): the inverse of
// the forward's access, used by every gather-style backward (no atomics, deterministic).
RETIKD_HOST_DEVICE inline void tap_range(int in_pos, int pad, int tap, int stride, int out, int& lo, int& hi) {
  // o·stride = in_pos + pad − tap must hold exactly.
  const int t = in_pos + pad - tap;
  if (t < 0 || t % stride != 0) {
    lo = 0;
    hi = 0;
    return;
  }
  lo = t / stride;
  hi = lo < out ? lo + 1 : lo;
}

// ---- depthwise convolution (groups == C, O = multiplier·C) -----------------------------------------------

// Σ over the kernel taps of output element i (row-major over (N, O, OH, OW)), without bias.
template <class T, class Idx>
RETIKD_HOST_DEVICE inline float depthwise_output(const Conv2dDims& d, const T* x, const T* w, Idx i) {
  const int ow = static_cast<int>(i % d.OW);
  Idx t = i / d.OW;
  const int oh = static_cast<int>(t % d.OH);
  t /= d.OH;
  const int o = static_cast<int>(t % d.O);
  const int64_t n = t / d.O;
  const int c = o / (d.O / d.C);
  const T* xp = x + (n * d.C + c) * static_cast<int64_t>(d.H) * d.W;
  const T* wp = w + static_cast<int64_t>(o) * d.kh * d.kw;
  float acc = 0.f;
  for (int ki = 0; ki < d.kh; ++ki) {
    const int ih = oh * d.stride_h - d.pad_top + ki * d.dil_h;
    if (ih < 0 || ih >= d.H) continue;
    for (int kj = 0; kj < d.kw; ++kj) {
      const int iw = ow * d.stride_w - d.pad_left + kj * d.dil_w;
      if (iw < 0 || iw >= d.W) continue;
      acc += to_f(xp[ih * d.W + iw]) * to_f(wp[ki * d.kw + kj]);
    }
  }
  return acc;
}

// Input gradient of element i of x (row-major over (N, C, H, W)): a gather over the outputs that read it.
template <class T, class Idx>
RETIKD_HOST_DEVICE inline float depthwise_grad_input(const Conv2dDims& d, const T* gy, const T* w, Idx i) {
  const int iw = static_cast<int>(i % d.W);
  Idx t = i / d.W;
  const int ih = static_cast<int>(t % d.H);
  t /= d.H;
  const int c = static_cast<int>(t % d.C);
  const int64_t n = t / d.C;
  const int m = d.O / d.C;
  float acc = 0.f;
  for (int k = 0; k < m; ++k) {
    const int o = c * m + k;
    const T* gp = gy + (n * d.O + o) * static_cast<int64_t>(d.OH) * d.OW;
    const T* wp = w + static_cast<int64_t>(o) * d.kh * d.kw;
    for (int ki = 0; ki < d.kh; ++ki) {
      int h0, h1;
      tap_range(ih, d.pad_top, ki * d.dil_h, d.stride_h, d.OH, h0, h1);
      for (int oh = h0; oh < h1; ++oh)
        for (int kj = 0; kj < d.kw; ++kj) {
          int w0, w1;
          tap_range(iw, d.pad_left, kj * d.dil_w, d.stride_w, d.OW, w0, w1);
          for (int ow = w0; ow < w1; ++ow) acc += to_f(gp[oh * d.OW + ow]) * to_f(wp[ki * d.kw + kj]);
        }
    }
  }
  return acc;
}

// Part of the weight gradient of tap (o, ki, kj): Σ gy[n, o, oh, ow]·x[n, c, ih, iw] over the flattened
// (n, oh, ow) positions j = first, first + step, … (one thread's share of a block reduction).
template <class T>
RETIKD_HOST_DEVICE inline float depthwise_grad_weight_part(const Conv2dDims& d, const T* gy, const T* x, int o,
                                                           int ki, int kj, int64_t first, int64_t step) {
  const int c = o / (d.O / d.C);
  const int64_t L = static_cast<int64_t>(d.OH) * d.OW, total = static_cast<int64_t>(d.N) * L;
  float acc = 0.f;
  for (int64_t j = first; j < total; j += step) {
    const int64_t n = j / L;
    const int l = static_cast<int>(j % L);
    const int oh = l / d.OW, ow = l % d.OW;
    const int ih = oh * d.stride_h - d.pad_top + ki * d.dil_h, iw = ow * d.stride_w - d.pad_left + kj * d.dil_w;
    if (ih < 0 || ih >= d.H || iw < 0 || iw >= d.W) continue;
    acc += to_f(gy[(n * d.O + o) * L + l]) * to_f(x[((n * d.C + c) * static_cast<int64_t>(d.H) + ih) * d.W + iw]);
  }
  return acc;
}

// ---- im2col / col2im for the dense fallback (one sample; all groups stacked) -----------------------------

// Element i of the column matrix (C·kh·kw, OH·OW) of one sample x (C, H, W): row (c, ki, kj), column (oh, ow).
template <class T, class Idx>
RETIKD_HOST_DEVICE inline T im2col_value(const Conv2dDims& d, const T* x, Idx i) {
  const Idx L = static_cast<Idx>(d.OH) * static_cast<Idx>(d.OW);
  const int l = static_cast<int>(i % L);
  int r = static_cast<int>(i / L);
  const int kj = r % d.kw;
  r /= d.kw;
  const int ki = r % d.kh;
  const int c = r / d.kh;
  const int oh = l / d.OW, ow = l % d.OW;
  const int ih = oh * d.stride_h - d.pad_top + ki * d.dil_h, iw = ow * d.stride_w - d.pad_left + kj * d.dil_w;
  if (ih < 0 || ih >= d.H || iw < 0 || iw >= d.W) return from_f<T>(0.f);
  return x[(static_cast<int64_t>(c) * d.H + ih) * d.W + iw];
}

// Element i of the input gradient of one sample (C, H, W) from the column gradient (C·kh·kw, OH·OW): the
// transpose of im2col as a gather.
template <class T, class Idx>
RETIKD_HOST_DEVICE inline float col2im_value(const Conv2dDims& d, const T* col, Idx i) {
  const int iw = static_cast<int>(i % d.W);
  const Idx t = i / d.W;
  const int ih = static_cast<int>(t % d.H);
  const int c = static_cast<int>(t / d.H);
  const int64_t L = static_cast<int64_t>(d.OH) * d.OW;
  float acc = 0.f;
  for (int ki = 0; ki < d.kh; ++ki) {
    int h0, h1;
    tap_range(ih, d.pad_top, ki * d.dil_h, d.stride_h, d.OH, h0, h1);
    for (int oh = h0; oh < h1; ++oh)
      for (int kj = 0; kj < d.kw; ++kj) {
        int w0, w1;
        tap_range(iw, d.pad_left, kj * d.dil_w, d.stride_w, d.OW, w0, w1);
        for (int ow = w0; ow < w1; ++ow)
          acc += to_f(col[((static_cast<int64_t>(c) * d.kh + ki) * d.kw + kj) * L + oh * d.OW + ow]);
      }
  }
  return acc;
}

// ---- pooling and resize on (N·C planes, H, W) ---------------------------------------------------------------

// Max over the window of output i (row-major over (planes, OH, OW)); *arg gets the flat h·W + w of the
// arg-max within the plane. Same rule as the CPU op: `v > best || isnan(v)` (the last NaN wins), an empty
// window reports −∞ at its clipped corner.
template <class T, class Idx>
RETIKD_HOST_DEVICE inline float maxpool_output(const Pool2dDims& d, const T* x, Idx i, int64_t* arg) {
  const int ow = static_cast<int>(i % d.OW);
  const Idx t = i / d.OW;
  const int oh = static_cast<int>(t % d.OH);
  const int64_t p = t / d.OH;
  const T* xp = x + p * d.H * d.W;
  int h0 = oh * d.sh - d.ph, h1 = h0 + d.kh, w0 = ow * d.sw - d.pw, w1 = w0 + d.kw;
  if (h0 < 0) h0 = 0;
  if (w0 < 0) w0 = 0;
  if (h1 > d.H) h1 = d.H;
  if (w1 > d.W) w1 = d.W;
  float best = -INFINITY;
  int64_t a = static_cast<int64_t>(h0) * d.W + w0;
  for (int h = h0; h < h1; ++h)
    for (int w = w0; w < w1; ++w) {
      const float v = to_f(xp[h * d.W + w]);
      if (v > best || v != v) {
        best = v;
        a = static_cast<int64_t>(h) * d.W + w;
      }
    }
  *arg = a;
  return best;
}

// One axis of bilinear resize, the CPU op's formula in float: output position i reads in[i0]·l0 + in[i1]·l1.
struct LinearTap {
  int i0, i1;
  float l0, l1;
};
RETIKD_HOST_DEVICE inline LinearTap linear_tap(int in, int out, bool align_corners, int i) {
  const float scale = align_corners ? (out > 1 ? static_cast<float>(in - 1) / static_cast<float>(out - 1) : 0.f)
                                    : static_cast<float>(in) / static_cast<float>(out);
  float src = align_corners ? scale * static_cast<float>(i) : scale * (static_cast<float>(i) + 0.5f) - 0.5f;
  if (src < 0.f) src = 0.f;
  int lo = static_cast<int>(src);  // src ≥ 0: truncation is floor
  if (lo > in - 1) lo = in - 1;
  float lambda = src - static_cast<float>(lo);
  if (lambda < 0.f) lambda = 0.f;
  if (lambda > 1.f) lambda = 1.f;
  LinearTap t;
  t.i0 = lo;
  t.i1 = lo < in - 1 ? lo + 1 : lo;
  t.l0 = 1.f - lambda;
  t.l1 = lambda;
  return t;
}

// Output element i of the resize of x (planes, H, W) to (planes, OH, OW).
template <class T, class Idx>
RETIKD_HOST_DEVICE inline float bilinear_output(int H, int W, int OH, int OW, bool align_corners, const T* x,
                                                Idx i) {
  const int ow = static_cast<int>(i % OW);
  const Idx t = i / OW;
  const int oh = static_cast<int>(t % OH);
  const int64_t p = t / OH;
  const LinearTap th = linear_tap(H, OH, align_corners, oh), tw = linear_tap(W, OW, align_corners, ow);
  const T* xp = x + p * H * W;
  return th.l0 * (tw.l0 * to_f(xp[th.i0 * W + tw.i0]) + tw.l1 * to_f(xp[th.i0 * W + tw.i1])) +
         th.l1 * (tw.l0 * to_f(xp[th.i1 * W + tw.i0]) + tw.l1 * to_f(xp[th.i1 * W + tw.i1]));
}

// ---- optimizer updates (optim/optim.hpp's formulas, in float) --------------------------------------------

struct AdamWScalars {
  float decay;         // 1 − lr·wd
  float beta1, beta2;  // β1, β2
  float step_size;     // lr / (1 − β1ᵗ)
  float inv_sqrt_bc2;  // 1 / √(1 − β2ᵗ)
  float eps;
};

RETIKD_HOST_DEVICE inline void adamw_element(const AdamWScalars& s, float* p, const float* g, float* m, float* v,
                                             int64_t k) {
  const float d = g[k];
  float pk = p[k] * s.decay;
  const float mk = s.beta1 * m[k] + (1.f - s.beta1) * d;
  const float vk = s.beta2 * v[k] + (1.f - s.beta2) * d * d;
  pk -= s.step_size * mk / (sqrtf(vk) * s.inv_sqrt_bc2 + s.eps);
  m[k] = mk;
  v[k] = vk;
  p[k] = pk;
}

struct SGDScalars {
  float lr, weight_decay, momentum, dampening;
  int nesterov;  // 0 / 1
  int fresh;     // 1 on the step that creates the momentum buffer (b = g)
};

// b may be null (no momentum).
RETIKD_HOST_DEVICE inline void sgd_element(const SGDScalars& s, float* p, const float* g, float* b, int64_t k) {
  float gk = g[k] + s.weight_decay * p[k];
  if (b) {
    const float bk = s.fresh ? gk : s.momentum * b[k] + (1.f - s.dampening) * gk;
    b[k] = bk;
    gk = s.nesterov ? gk + s.momentum * bk : bk;
  }
  p[k] -= s.lr * gk;
}

}  // namespace prog
}  // namespace cuda
}  // namespace retikd
