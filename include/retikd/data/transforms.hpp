// retikd/data/transforms.hpp — image transforms with torchvision's definitions, seeded per sample.
//
// Every transform works on a float planar Image (values in [0, 1] until Normalize) and draws its randomness
// from the Generator it is handed. The loader hands each sample Generator::derive(seed, epoch, index), so an
// augmented sample depends only on (seed, epoch, index) — never on which thread made it or in what order.
//
// Definitions follow torchvision's tensor path (torchvision.transforms.v1 on float tensors):
//  - Resize(size): the shorter side becomes `size`, the longer int(size·long/short); Resize(h, w) is exact.
//    Resampling is PIL's / torchvision's antialiased bilinear (a triangle filter widened by the scale factor
//    when shrinking; plain bilinear with half-pixel centres and edge clamping when enlarging).
//  - CenterCrop: top = round((H − h)/2) with Python's round-half-to-even; zero padding when the crop is larger.
//  - RandomResizedCrop(size, scale = (0.08, 1), ratio = (3/4, 4/3)): torchvision's 10 attempts, then its
//    fallback to the whole image clamped to the ratio range, then resized_crop.
//  - RandomRotation(degrees): angle uniform in [−d, d], counter-clockwise, about the image centre, same output
//    size, bilinear, zero fill outside (grid_sample with zeros padding).
//  - ColorJitter(b, c, s, h): factors uniform in [max(0, 1−b), 1+b] (likewise c, s) and hue shift uniform in
//    [−h, h]; the four adjustments in a random order. brightness: clamp(f·x); contrast: blend with the mean
//    of the greyscale image (0.2989 R + 0.587 G + 0.114 B); saturation: blend with the greyscale image; hue:
//    rotate H in HSV. Results are clamped to [0, 1] as torchvision clamps float images.
//  - Normalize(mean, std): (x − mean)/std per channel; ImageNet constants by default.
// Random draws come from retikd's Generator, not torch's, so the same seed does not give the same crops as
// PyTorch — the distributions are the same.
//
// retikd additions: RandomPatchMask (a fixed fraction of grid patches set to a fill value, the multi-view
// generator's masking) and FundusCrop (a deterministic crop of the black border around the circular field of
// view, optionally padded back to a square so the disc stays round). RandomApply(t, p) wraps anything.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "retikd/core/error.hpp"
#include "retikd/core/random.hpp"
#include "retikd/data/image.hpp"
#include "retikd/data/problems.hpp"

namespace retikd {
namespace data {

// ---------------------------------------------------------------------------------------------------------
// Functional forms (deterministic). Tests check these against hand-computed pixels.

namespace detail {

// Resampling taps of one output coordinate: in[start .. start+count) with weights w[offset .. offset+count).
struct Taps {
  std::vector<int> start, count, offset;
  std::vector<float> weights;
};

// PIL's ImagingResample coefficients for the bilinear (triangle) filter over the input window [0, in).
inline Taps resample_taps(int in, int out, bool antialias) {
  Taps t;
  t.start.resize(out);
  t.count.resize(out);
  t.offset.resize(out);
  const double scale = static_cast<double>(in) / out;
  const double filter_scale = antialias ? std::max(scale, 1.0) : 1.0;
  const double support = filter_scale;  // the triangle's support is 1
  std::vector<double> w;
  w.reserve(static_cast<std::size_t>(2 * support + 3));
  for (int x = 0; x < out; ++x) {
    const double center = (x + 0.5) * scale;
    int lo = static_cast<int>(std::floor(center - support + 0.5));
    int hi = static_cast<int>(std::floor(center + support + 0.5));
    lo = std::max(lo, 0);
    hi = std::min(hi, in);
    t.offset[x] = static_cast<int>(t.weights.size());
    double total = 0.0;
    w.clear();
    for (int i = lo; i < hi; ++i) {
      const double d = std::fabs((i - center + 0.5) / filter_scale);
      const double v = d < 1.0 ? 1.0 - d : 0.0;
      w.push_back(v);
      total += v;
    }
    // Drop zero-weight taps at both ends (exact integer alignments).
    std::size_t a = 0, b = w.size();
    while (a < b && w[a] == 0.0) ++a;
    while (b > a && w[b - 1] == 0.0) --b;
    if (a == b) {  // cannot happen for in >= 1, but keep a valid tap
      a = 0;
      b = 1;
      w.assign(1, 1.0);
      total = 1.0;
      lo = std::min(std::max(static_cast<int>(center), 0), in - 1);
    }
    t.start[x] = lo + static_cast<int>(a);
    t.count[x] = static_cast<int>(b - a);
    for (std::size_t k = a; k < b; ++k) t.weights.push_back(static_cast<float>(w[k] / total));
  }
  return t;
}

inline double round_half_even(double v) { return std::nearbyint(v); }

// A sum in double with eight independent accumulators, which vectorises without -ffast-math.
inline double sum_floats(const float* p, std::size_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += p[i + k];
  for (; i < n; ++i) acc[0] += p[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

}  // namespace detail

namespace detail {

// out(y, x) = Σ_k w_k · in(y, start_x + k) over rows [0, rows) of a (rows, in_stride) plane window.
inline void resample_rows(const float* in, int in_stride, int rows, const Taps& tx, int out_w, float* out) {
  for (int y = 0; y < rows; ++y) {
    const float* row = in + static_cast<std::size_t>(y) * in_stride;
    float* o = out + static_cast<std::size_t>(y) * out_w;
    for (int x = 0; x < out_w; ++x) {
      const float* wts = tx.weights.data() + tx.offset[x];
      const float* p = row + tx.start[x];
      float acc = 0.0f;
      for (int k = 0; k < tx.count[x]; ++k) acc += wts[k] * p[k];
      o[x] = acc;
    }
  }
}

// out(y, x) = Σ_k w_k · in(start_y + k, x), a whole row at a time (vectorises along x).
inline void resample_columns(const float* in, int in_stride, int width, const Taps& ty, int out_h, float* out) {
  for (int y = 0; y < out_h; ++y) {
    float* o = out + static_cast<std::size_t>(y) * width;
    const float* wts = ty.weights.data() + ty.offset[y];
    const float* first = in + static_cast<std::size_t>(ty.start[y]) * in_stride;
    for (int x = 0; x < width; ++x) o[x] = 0.0f;
    for (int k = 0; k < ty.count[y]; ++k) {
      const float wk = wts[k];
      const float* r = first + static_cast<std::size_t>(k) * in_stride;
      for (int x = 0; x < width; ++x) o[x] += wk * r[x];
    }
  }
}

}  // namespace detail

// Resamples the window (top, left, h, w) of `src` — which must lie inside the image — to out_h × out_w.
// Separable: the vertical pass goes first when it shrinks the image (the horizontal pass, which does not
// vectorise, then has fewer rows to do).
inline Image resized_crop(const Image& src, int top, int left, int h, int w, int out_h, int out_w,
                          bool antialias = true) {
  RETIKD_CHECK(h > 0 && w > 0 && out_h > 0 && out_w > 0, "resized_crop: empty window ", h, "x", w, " or output ",
               out_h, "x", out_w);
  RETIKD_CHECK(top >= 0 && left >= 0 && top + h <= src.height && left + w <= src.width, "resized_crop: window (",
               top, ", ", left, ", ", h, ", ", w, ") outside the ", src.height, "x", src.width, " image");
  const detail::Taps tx = detail::resample_taps(w, out_w, antialias);
  const detail::Taps ty = detail::resample_taps(h, out_h, antialias);
  Image out(src.channels, out_h, out_w);
  for (int c = 0; c < src.channels; ++c) {
    const float* window = src.plane(c) + static_cast<std::size_t>(top) * src.width + left;
    if (out_h < h) {
      std::vector<float> tmp(static_cast<std::size_t>(out_h) * w);  // (out_h, w)
      detail::resample_columns(window, src.width, w, ty, out_h, tmp.data());
      detail::resample_rows(tmp.data(), w, out_h, tx, out_w, out.plane(c));
    } else {
      std::vector<float> tmp(static_cast<std::size_t>(h) * out_w);  // (h, out_w)
      detail::resample_rows(window, src.width, h, tx, out_w, tmp.data());
      detail::resample_columns(tmp.data(), out_w, out_w, ty, out_h, out.plane(c));
    }
  }
  return out;
}

inline Image resize(const Image& src, int out_h, int out_w, bool antialias = true) {
  return resized_crop(src, 0, 0, src.height, src.width, out_h, out_w, antialias);
}

// torchvision's output size for Resize(size) with an int: the shorter side becomes `size`.
inline std::pair<int, int> shorter_side_size(int h, int w, int size) {
  RETIKD_CHECK(size > 0 && h > 0 && w > 0, "Resize: invalid sizes ", h, "x", w, " -> ", size);
  if (h <= w) return {size, static_cast<int>(static_cast<int64_t>(size) * w / h)};
  return {static_cast<int>(static_cast<int64_t>(size) * h / w), size};
}

// The window (top, left, h, w), which may extend past the image: pixels outside get `fill`.
inline Image crop(const Image& src, int top, int left, int h, int w, float fill = 0.0f) {
  RETIKD_CHECK(h >= 0 && w >= 0, "crop: negative size ", h, "x", w);
  Image out(src.channels, h, w, fill);
  const int y0 = std::max(0, -top), y1 = std::min(h, src.height - top);
  const int x0 = std::max(0, -left), x1 = std::min(w, src.width - left);
  if (y0 >= y1 || x0 >= x1) return out;
  for (int c = 0; c < src.channels; ++c)
    for (int y = y0; y < y1; ++y)
      std::copy_n(src.plane(c) + static_cast<std::size_t>(top + y) * src.width + left + x0, x1 - x0,
                  out.plane(c) + static_cast<std::size_t>(y) * w + x0);
  return out;
}

// torchvision's center_crop, padding with zeros (symmetrically, odd pixel last) when the crop is larger.
inline Image center_crop(const Image& src, int h, int w) {
  const int pad_top = h > src.height ? (h - src.height) / 2 : 0;
  const int pad_left = w > src.width ? (w - src.width) / 2 : 0;
  const int ph = std::max(src.height, h), pw = std::max(src.width, w);
  const int top = static_cast<int>(detail::round_half_even((ph - h) / 2.0)) - pad_top;
  const int left = static_cast<int>(detail::round_half_even((pw - w) / 2.0)) - pad_left;
  return crop(src, top, left, h, w);
}

inline Image hflip(const Image& src) {
  Image out(src.channels, src.height, src.width);
  for (int c = 0; c < src.channels; ++c)
    for (int y = 0; y < src.height; ++y) {
      const float* r = src.plane(c) + static_cast<std::size_t>(y) * src.width;
      float* o = out.plane(c) + static_cast<std::size_t>(y) * src.width;
      for (int x = 0; x < src.width; ++x) o[x] = r[src.width - 1 - x];
    }
  return out;
}

inline Image vflip(const Image& src) {
  Image out(src.channels, src.height, src.width);
  for (int c = 0; c < src.channels; ++c)
    for (int y = 0; y < src.height; ++y)
      std::copy_n(src.plane(c) + static_cast<std::size_t>(src.height - 1 - y) * src.width, src.width,
                  out.plane(c) + static_cast<std::size_t>(y) * src.width);
  return out;
}

// Counter-clockwise by `degrees` about the centre ((W−1)/2, (H−1)/2), bilinear, `fill` outside; multiples of
// 90° use exact sines so they permute pixels exactly.
inline Image rotate(const Image& src, double degrees, float fill = 0.0f) {
  double cs, sn;
  const double turns = degrees / 90.0;
  if (turns == std::floor(turns)) {
    const int q = static_cast<int>(((static_cast<int64_t>(turns) % 4) + 4) % 4);
    const int cos_q[4] = {1, 0, -1, 0}, sin_q[4] = {0, 1, 0, -1};
    cs = cos_q[q];
    sn = sin_q[q];
  } else {
    const double rad = degrees * 3.14159265358979323846 / 180.0;
    cs = std::cos(rad);
    sn = std::sin(rad);
  }
  const int H = src.height, W = src.width, C = src.channels;
  const double cx = (W - 1) * 0.5, cy = (H - 1) * 0.5;
  Image out(C, H, W);
  const std::size_t plane = src.plane_size();
  for (int y = 0; y < H; ++y) {
    const double dy = y - cy;
    for (int x = 0; x < W; ++x) {
      const double dx = x - cx;
      // The input point that lands on (x, y): the inverse rotation.
      const double sx = cx + dx * cs - dy * sn;
      const double sy = cy + dx * sn + dy * cs;
      const double fx0 = std::floor(sx), fy0 = std::floor(sy);
      const int x0 = static_cast<int>(fx0), y0 = static_cast<int>(fy0);
      const float ax = static_cast<float>(sx - fx0), ay = static_cast<float>(sy - fy0);
      const float w00 = (1 - ax) * (1 - ay), w01 = ax * (1 - ay), w10 = (1 - ax) * ay, w11 = ax * ay;
      const std::size_t o = static_cast<std::size_t>(y) * W + x;
      if (x0 >= 0 && x0 + 1 < W && y0 >= 0 && y0 + 1 < H) {  // all four neighbours inside
        const std::size_t i = static_cast<std::size_t>(y0) * W + x0;
        for (int c = 0; c < C; ++c) {
          const float* p = src.data.data() + c * plane + i;
          out.data[c * plane + o] = w00 * p[0] + w01 * p[1] + w10 * p[W] + w11 * p[W + 1];
        }
        continue;
      }
      if (x0 < -1 || x0 >= W || y0 < -1 || y0 >= H) {  // all outside
        for (int c = 0; c < C; ++c) out.data[c * plane + o] = fill;
        continue;
      }
      const bool in_x0 = x0 >= 0 && x0 < W, in_x1 = x0 + 1 >= 0 && x0 + 1 < W;
      const bool in_y0 = y0 >= 0 && y0 < H, in_y1 = y0 + 1 >= 0 && y0 + 1 < H;
      for (int c = 0; c < C; ++c) {
        const float* p = src.plane(c);
        const float v00 = in_y0 && in_x0 ? p[static_cast<std::size_t>(y0) * W + x0] : fill;
        const float v01 = in_y0 && in_x1 ? p[static_cast<std::size_t>(y0) * W + x0 + 1] : fill;
        const float v10 = in_y1 && in_x0 ? p[static_cast<std::size_t>(y0 + 1) * W + x0] : fill;
        const float v11 = in_y1 && in_x1 ? p[static_cast<std::size_t>(y0 + 1) * W + x0 + 1] : fill;
        out.data[c * plane + o] = w00 * v00 + w01 * v01 + w10 * v10 + w11 * v11;
      }
    }
  }
  return out;
}

inline float clamp01(float v) { return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }

inline void require_rgb(const Image& img, const char* op) {
  RETIKD_CHECK(img.channels == 3, op, ": expects a 3-channel RGB image, got ", img.channels, " channels");
}

// torchvision's rgb_to_grayscale weights.
inline float grayscale(float r, float g, float b) { return 0.2989f * r + 0.587f * g + 0.114f * b; }

inline void adjust_brightness(Image& img, double factor) {
  RETIKD_CHECK(factor >= 0, "adjust_brightness: factor ", factor, " must be non-negative");
  const float f = static_cast<float>(factor);
  for (float& v : img.data) v = clamp01(v * f);
}

inline void adjust_contrast(Image& img, double factor) {
  require_rgb(img, "adjust_contrast");
  RETIKD_CHECK(factor >= 0, "adjust_contrast: factor ", factor, " must be non-negative");
  const std::size_t n = img.plane_size();
  // The mean of the grey image, as the weighted sum of the channel sums.
  const double sum = 0.2989 * detail::sum_floats(img.plane(0), n) + 0.587 * detail::sum_floats(img.plane(1), n) +
                     0.114 * detail::sum_floats(img.plane(2), n);
  const float mean = n ? static_cast<float>(sum / static_cast<double>(n)) : 0.0f;
  const float f = static_cast<float>(factor), add = (1.0f - f) * mean;
  for (float& v : img.data) v = clamp01(f * v + add);
}

inline void adjust_saturation(Image& img, double factor) {
  require_rgb(img, "adjust_saturation");
  RETIKD_CHECK(factor >= 0, "adjust_saturation: factor ", factor, " must be non-negative");
  const std::size_t n = img.plane_size();
  float *r = img.plane(0), *g = img.plane(1), *b = img.plane(2);
  const float f = static_cast<float>(factor);
  for (std::size_t i = 0; i < n; ++i) {
    const float l = (1.0f - f) * grayscale(r[i], g[i], b[i]);
    r[i] = clamp01(f * r[i] + l);
    g[i] = clamp01(f * g[i] + l);
    b[i] = clamp01(f * b[i] + l);
  }
}

// Shifts hue by `shift` turns (in [−0.5, 0.5]), through torchvision's _rgb2hsv / _hsv2rgb. Written without
// branches (selects, and the closed form of hsv→rgb: c = v − v·s·clamp(min(k, 4 − k), 0, 1) with
// k = (n + 6h) mod 6 for n = 5, 3, 1, which gives torchvision's sectors), and with floor() of the positive
// values as an integer truncation, so the loop vectorises (floorf blocks that under strict FP semantics).
inline void adjust_hue(Image& img, double shift) {
  require_rgb(img, "adjust_hue");
  RETIKD_CHECK(shift >= -0.5 && shift <= 0.5, "adjust_hue: shift ", shift, " must lie in [-0.5, 0.5]");
  const std::size_t n = img.plane_size();
  float* __restrict R = img.plane(0);
  float* __restrict G = img.plane(1);
  float* __restrict B = img.plane(2);
  const float shift_plus_one = static_cast<float>(shift) + 1.0f;  // keeps the sum positive
  auto frac = [](float x) { return x - static_cast<float>(static_cast<int>(x)); };  // x >= 0
  for (std::size_t i = 0; i < n; ++i) {
    const float r = R[i], g = G[i], b = B[i];
    const float maxc = std::max(r, std::max(g, b)), minc = std::min(r, std::min(g, b));
    const bool eqc = maxc == minc;
    const float cr = maxc - minc;
    const float s = cr / (eqc ? 1.0f : maxc);
    const float inv = 1.0f / (eqc ? 1.0f : cr);
    const float rc = (maxc - r) * inv, gc = (maxc - g) * inv, bc = (maxc - b) * inv;
    const float hr = bc - gc, hg = 2.0f + rc - bc, hb = 4.0f + gc - rc;  // hr in [-1, 1]
    const float h6 = maxc == r ? hr : (maxc == g ? hg : hb);
    const float h = frac(frac(h6 * (1.0f / 6.0f) + 1.0f) + shift_plus_one);  // torchvision's h, shifted, mod 1
    const float vs = maxc * s;
    auto channel = [&](float nk) {
      const float k = nk + 6.0f * h;  // in [1, 11)
      const float km = k - 6.0f * static_cast<float>(static_cast<int>(k * (1.0f / 6.0f)));
      const float m = std::min(std::max(std::min(km, 4.0f - km), 0.0f), 1.0f);
      return clamp01(maxc - vs * m);
    };
    R[i] = channel(5.0f);
    G[i] = channel(3.0f);
    B[i] = channel(1.0f);
  }
}

constexpr std::array<float, 3> kImageNetMean = {0.485f, 0.456f, 0.406f};
constexpr std::array<float, 3> kImageNetStd = {0.229f, 0.224f, 0.225f};

inline void normalize(Image& img, const std::array<float, 3>& mean, const std::array<float, 3>& std_dev) {
  require_rgb(img, "normalize");
  for (int c = 0; c < 3; ++c) {
    RETIKD_CHECK(std_dev[c] != 0.0f, "normalize: std of channel ", c, " is zero");
    const float m = mean[c], inv = 1.0f / std_dev[c];
    float* p = img.plane(c);
    for (std::size_t i = 0; i < img.plane_size(); ++i) p[i] = (p[i] - m) * inv;
  }
}

// The bounding box of the field of view: rows and columns where at least `min_fraction` of the pixels are
// brighter than `threshold` (max over channels). Returns false when nothing is bright.
struct Box {
  int top = 0, left = 0, height = 0, width = 0;
};
inline bool fundus_box(const Image& img, Box& box, float threshold = 0.06f, double min_fraction = 0.01) {
  require_rgb(img, "fundus_box");
  const int H = img.height, W = img.width;
  std::vector<int> rows(H, 0), cols(W, 0);
  const float *r = img.plane(0), *g = img.plane(1), *b = img.plane(2);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const std::size_t i = static_cast<std::size_t>(y) * W + x;
      if (std::max(r[i], std::max(g[i], b[i])) > threshold) {
        ++rows[y];
        ++cols[x];
      }
    }
  const int row_min = std::max(1, static_cast<int>(min_fraction * W)), col_min = std::max(1, static_cast<int>(min_fraction * H));
  int y0 = 0, y1 = H - 1, x0 = 0, x1 = W - 1;
  while (y0 < H && rows[y0] < row_min) ++y0;
  while (y1 >= y0 && rows[y1] < row_min) --y1;
  while (x0 < W && cols[x0] < col_min) ++x0;
  while (x1 >= x0 && cols[x1] < col_min) --x1;
  if (y0 > y1 || x0 > x1) return false;
  box = {y0, x0, y1 - y0 + 1, x1 - x0 + 1};
  return true;
}

// ---------------------------------------------------------------------------------------------------------
// Transform objects.

class Transform {
 public:
  virtual ~Transform() = default;
  // Transforms `img` in place (it may be replaced by an image of another size), drawing from `rng`.
  virtual void apply(Image& img, Generator& rng) const = 0;
  // A precise description: it is part of the cache key of deterministic pre-processing.
  virtual std::string describe() const = 0;
  // False for transforms that ignore the generator (those may be cached).
  virtual bool is_random() const { return true; }

  Image operator()(Image img, Generator& rng) const {
    apply(img, rng);
    return img;
  }
};
using TransformPtr = std::shared_ptr<const Transform>;

namespace detail {
template <class... Parts>
std::string fmt(const Parts&... parts) {
  std::ostringstream os;
  os.precision(10);
  (os << ... << parts);
  return os.str();
}
}  // namespace detail

class Resize : public Transform {
 public:
  explicit Resize(int shorter_side, bool antialias = true) : size_(shorter_side), antialias_(antialias) {
    RETIKD_CHECK(shorter_side > 0, "Resize: size ", shorter_side, " must be positive");
  }
  Resize(int height, int width, bool antialias) : h_(height), w_(width), antialias_(antialias) {
    RETIKD_CHECK(height > 0 && width > 0, "Resize: size ", height, "x", width, " must be positive");
  }
  void apply(Image& img, Generator&) const override {
    int h = h_, w = w_;
    if (size_ > 0) {
      // A thin image (32768 x 16) resized to a shorter side of 224 would be 458752 x 224: bounded like decoding.
      const int64_t longer = static_cast<int64_t>(size_) * std::max(img.height, img.width) /
                             std::max(1, std::min(img.height, img.width));
      if (longer > kMaxImageSide || longer * size_ > max_image_pixels())
        throw_problem("", ProblemKind::too_large,
                      detail::fmt("Resize(", size_, ") of a ", img.width, "x", img.height, " image would make it ",
                                  longer, " px long, above the image limits (", kMaxImageSide, " px a side, ",
                                  max_image_pixels(), " pixels)"));
      std::tie(h, w) = shorter_side_size(img.height, img.width, size_);
    }
    if (h == img.height && w == img.width) return;
    img = resize(img, h, w, antialias_);
  }
  std::string describe() const override {
    return size_ > 0 ? detail::fmt("Resize(", size_, antialias_ ? "" : ", no-antialias", ")")
                     : detail::fmt("Resize(", h_, "x", w_, antialias_ ? "" : ", no-antialias", ")");
  }
  bool is_random() const override { return false; }

 private:
  int size_ = 0, h_ = 0, w_ = 0;
  bool antialias_;
};

class CenterCrop : public Transform {
 public:
  explicit CenterCrop(int size) : CenterCrop(size, size) {}
  CenterCrop(int h, int w) : h_(h), w_(w) { RETIKD_CHECK(h > 0 && w > 0, "CenterCrop: size must be positive"); }
  void apply(Image& img, Generator&) const override { img = center_crop(img, h_, w_); }
  std::string describe() const override { return detail::fmt("CenterCrop(", h_, "x", w_, ")"); }
  bool is_random() const override { return false; }

 private:
  int h_, w_;
};

// torchvision's RandomCrop without padding; pad_if_needed pads an image smaller than the crop with zeros
// (symmetrically) instead of failing.
class RandomCrop : public Transform {
 public:
  explicit RandomCrop(int size, bool pad_if_needed = false) : RandomCrop(size, size, pad_if_needed) {}
  RandomCrop(int h, int w, bool pad_if_needed) : h_(h), w_(w), pad_(pad_if_needed) {
    RETIKD_CHECK(h > 0 && w > 0, "RandomCrop: size must be positive");
  }
  void apply(Image& img, Generator& rng) const override {
    if (img.height < h_ || img.width < w_) {
      RETIKD_CHECK(pad_, "RandomCrop: crop ", h_, "x", w_, " is larger than the ", img.height, "x", img.width,
                   " image (use pad_if_needed)");
      img = center_crop(img, std::max(h_, img.height), std::max(w_, img.width));
    }
    const int top = static_cast<int>(rng.below(static_cast<uint64_t>(img.height - h_ + 1)));
    const int left = static_cast<int>(rng.below(static_cast<uint64_t>(img.width - w_ + 1)));
    img = crop(img, top, left, h_, w_);
  }
  std::string describe() const override { return detail::fmt("RandomCrop(", h_, "x", w_, pad_ ? ", pad" : "", ")"); }

 private:
  int h_, w_;
  bool pad_;
};

class RandomResizedCrop : public Transform {
 public:
  explicit RandomResizedCrop(int size, std::pair<double, double> scale = {0.08, 1.0},
                             std::pair<double, double> ratio = {3.0 / 4.0, 4.0 / 3.0}, bool antialias = true)
      : h_(size), w_(size), scale_(scale), ratio_(ratio), antialias_(antialias) {
    RETIKD_CHECK(size > 0, "RandomResizedCrop: size must be positive");
    RETIKD_CHECK(scale.first > 0 && scale.first <= scale.second && scale.second <= 1.0,
                 "RandomResizedCrop: scale (", scale.first, ", ", scale.second, ") must satisfy 0 < lo <= hi <= 1");
    RETIKD_CHECK(ratio.first > 0 && ratio.first <= ratio.second, "RandomResizedCrop: ratio (", ratio.first, ", ",
                 ratio.second, ") must satisfy 0 < lo <= hi");
  }
  // torchvision's get_params: (top, left, h, w).
  Box sample_box(int H, int W, Generator& rng) const {
    const double area = static_cast<double>(H) * W;
    const double log_lo = std::log(ratio_.first), log_hi = std::log(ratio_.second);
    for (int attempt = 0; attempt < 10; ++attempt) {
      const double target = area * rng.uniform(scale_.first, scale_.second);
      const double aspect = std::exp(rng.uniform(log_lo, log_hi));
      const int w = static_cast<int>(detail::round_half_even(std::sqrt(target * aspect)));
      const int h = static_cast<int>(detail::round_half_even(std::sqrt(target / aspect)));
      if (w > 0 && w <= W && h > 0 && h <= H) {
        const int top = static_cast<int>(rng.below(static_cast<uint64_t>(H - h + 1)));
        const int left = static_cast<int>(rng.below(static_cast<uint64_t>(W - w + 1)));
        return {top, left, h, w};
      }
    }
    const double in_ratio = static_cast<double>(W) / H;
    int w = W, h = H;
    if (in_ratio < ratio_.first) {
      h = static_cast<int>(detail::round_half_even(w / ratio_.first));
    } else if (in_ratio > ratio_.second) {
      w = static_cast<int>(detail::round_half_even(h * ratio_.second));
    }
    h = std::min(std::max(h, 1), H);
    w = std::min(std::max(w, 1), W);
    return {(H - h) / 2, (W - w) / 2, h, w};
  }
  void apply(Image& img, Generator& rng) const override {
    const Box b = sample_box(img.height, img.width, rng);
    img = resized_crop(img, b.top, b.left, b.height, b.width, h_, w_, antialias_);
  }
  std::string describe() const override {
    return detail::fmt("RandomResizedCrop(", h_, ", scale=(", scale_.first, ", ", scale_.second, "), ratio=(",
                       ratio_.first, ", ", ratio_.second, "))");
  }

 private:
  int h_, w_;
  std::pair<double, double> scale_, ratio_;
  bool antialias_;
};

class RandomHorizontalFlip : public Transform {
 public:
  explicit RandomHorizontalFlip(double p = 0.5) : p_(p) {}
  void apply(Image& img, Generator& rng) const override {
    if (rng.uniform() < p_) img = hflip(img);
  }
  std::string describe() const override { return detail::fmt("RandomHorizontalFlip(", p_, ")"); }

 private:
  double p_;
};

class RandomVerticalFlip : public Transform {
 public:
  explicit RandomVerticalFlip(double p = 0.5) : p_(p) {}
  void apply(Image& img, Generator& rng) const override {
    if (rng.uniform() < p_) img = vflip(img);
  }
  std::string describe() const override { return detail::fmt("RandomVerticalFlip(", p_, ")"); }

 private:
  double p_;
};

class RandomRotation : public Transform {
 public:
  explicit RandomRotation(double degrees, float fill = 0.0f) : lo_(-degrees), hi_(degrees), fill_(fill) {
    RETIKD_CHECK(degrees >= 0, "RandomRotation: degrees ", degrees, " must be non-negative");
  }
  RandomRotation(double lo, double hi, float fill) : lo_(lo), hi_(hi), fill_(fill) {
    RETIKD_CHECK(lo <= hi, "RandomRotation: range (", lo, ", ", hi, ") is empty");
  }
  void apply(Image& img, Generator& rng) const override { img = rotate(img, rng.uniform(lo_, hi_), fill_); }
  std::string describe() const override { return detail::fmt("RandomRotation(", lo_, ", ", hi_, ")"); }

 private:
  double lo_, hi_;
  float fill_;
};

class ColorJitter : public Transform {
 public:
  ColorJitter(double brightness, double contrast, double saturation, double hue)
      : b_(brightness), c_(contrast), s_(saturation), h_(hue) {
    RETIKD_CHECK(brightness >= 0 && contrast >= 0 && saturation >= 0, "ColorJitter: brightness, contrast and "
                 "saturation must be non-negative");
    RETIKD_CHECK(hue >= 0 && hue <= 0.5, "ColorJitter: hue ", hue, " must lie in [0, 0.5]");
  }
  void apply(Image& img, Generator& rng) const override {
    int order[4] = {0, 1, 2, 3};  // torch.randperm(4)
    for (int i = 3; i > 0; --i) std::swap(order[i], order[rng.below(static_cast<uint64_t>(i + 1))]);
    // Factors are drawn in torchvision's order (brightness, contrast, saturation, hue), then applied in `order`.
    const double fb = b_ > 0 ? rng.uniform(std::max(0.0, 1 - b_), 1 + b_) : 1.0;
    const double fc = c_ > 0 ? rng.uniform(std::max(0.0, 1 - c_), 1 + c_) : 1.0;
    const double fs = s_ > 0 ? rng.uniform(std::max(0.0, 1 - s_), 1 + s_) : 1.0;
    const double fh = h_ > 0 ? rng.uniform(-h_, h_) : 0.0;
    for (int k : order) {
      if (k == 0 && b_ > 0) adjust_brightness(img, fb);
      if (k == 1 && c_ > 0) adjust_contrast(img, fc);
      if (k == 2 && s_ > 0) adjust_saturation(img, fs);
      if (k == 3 && h_ > 0) adjust_hue(img, fh);
    }
  }
  std::string describe() const override { return detail::fmt("ColorJitter(", b_, ", ", c_, ", ", s_, ", ", h_, ")"); }

 private:
  double b_, c_, s_, h_;
};

class Normalize : public Transform {
 public:
  Normalize(std::array<float, 3> mean = kImageNetMean, std::array<float, 3> std_dev = kImageNetStd)
      : mean_(mean), std_(std_dev) {}
  void apply(Image& img, Generator&) const override { normalize(img, mean_, std_); }
  std::string describe() const override {
    return detail::fmt("Normalize(", mean_[0], ", ", mean_[1], ", ", mean_[2], "; ", std_[0], ", ", std_[1], ", ",
                       std_[2], ")");
  }
  bool is_random() const override { return false; }

 private:
  std::array<float, 3> mean_, std_;
};

// Splits the image into patch × patch cells (the last row / column may be partial) and sets round(ratio·cells)
// of them, chosen uniformly without replacement, to `fill` in every channel.
class RandomPatchMask : public Transform {
 public:
  RandomPatchMask(int patch, double ratio, float fill = 0.0f) : patch_(patch), ratio_(ratio), fill_(fill) {
    RETIKD_CHECK(patch > 0, "RandomPatchMask: patch size must be positive");
    RETIKD_CHECK(ratio >= 0 && ratio <= 1, "RandomPatchMask: ratio ", ratio, " must lie in [0, 1]");
  }
  void apply(Image& img, Generator& rng) const override {
    const int gy = (img.height + patch_ - 1) / patch_, gx = (img.width + patch_ - 1) / patch_;
    const int cells = gy * gx;
    const int masked = static_cast<int>(std::llround(ratio_ * cells));
    std::vector<int> idx(cells);
    for (int i = 0; i < cells; ++i) idx[i] = i;
    for (int i = 0; i < masked; ++i) std::swap(idx[i], idx[i + static_cast<int>(rng.below(cells - i))]);
    for (int k = 0; k < masked; ++k) {
      const int cy = idx[k] / gx, cx = idx[k] % gx;
      const int y0 = cy * patch_, x0 = cx * patch_;
      const int y1 = std::min(img.height, y0 + patch_), x1 = std::min(img.width, x0 + patch_);
      for (int c = 0; c < img.channels; ++c)
        for (int y = y0; y < y1; ++y) std::fill(&img.at(c, y, x0), &img.at(c, y, x0) + (x1 - x0), fill_);
    }
  }
  std::string describe() const override { return detail::fmt("RandomPatchMask(", patch_, ", ", ratio_, ", ", fill_, ")"); }

 private:
  int patch_;
  double ratio_;
  float fill_;
};

// Crops the black border around the circular field of view (see fundus_box), adds `margin` (a fraction of the
// box's longer side) on each side, and with `square` pads the shorter side with black to a centred square,
// so a later exact Resize keeps the disc round. An image with no bright pixel is left as it is.
class FundusCrop : public Transform {
 public:
  explicit FundusCrop(bool square = true, double margin = 0.0, float threshold = 0.06f)
      : square_(square), margin_(margin), threshold_(threshold) {}
  void apply(Image& img, Generator&) const override {
    Box b;
    if (!fundus_box(img, b, threshold_)) return;
    const int m = static_cast<int>(std::lround(margin_ * std::max(b.height, b.width)));
    b = {b.top - m, b.left - m, b.height + 2 * m, b.width + 2 * m};
    if (square_) {
      const int side = std::max(b.height, b.width);
      b = {b.top - (side - b.height) / 2, b.left - (side - b.width) / 2, side, side};
    }
    img = crop(img, b.top, b.left, b.height, b.width);
  }
  std::string describe() const override {
    return detail::fmt("FundusCrop(", square_ ? "square" : "tight", ", margin=", margin_, ", threshold=", threshold_, ")");
  }
  bool is_random() const override { return false; }

 private:
  bool square_;
  double margin_;
  float threshold_;
};

class RandomApply : public Transform {
 public:
  RandomApply(TransformPtr t, double p) : t_(std::move(t)), p_(p) {
    RETIKD_CHECK(t_ != nullptr, "RandomApply: null transform");
  }
  void apply(Image& img, Generator& rng) const override {
    if (rng.uniform() < p_) t_->apply(img, rng);
  }
  std::string describe() const override { return detail::fmt("RandomApply(", t_->describe(), ", ", p_, ")"); }

 private:
  TransformPtr t_;
  double p_;
};

class Compose : public Transform {
 public:
  Compose() = default;
  explicit Compose(std::vector<TransformPtr> ts) : ts_(std::move(ts)) {
    for (const auto& t : ts_) RETIKD_CHECK(t != nullptr, "Compose: null transform");
  }
  Compose& then(TransformPtr t) {
    RETIKD_CHECK(t != nullptr, "Compose: null transform");
    ts_.push_back(std::move(t));
    return *this;
  }
  void apply(Image& img, Generator& rng) const override {
    for (const auto& t : ts_) t->apply(img, rng);
  }
  std::string describe() const override {
    std::string s = "Compose(";
    for (std::size_t i = 0; i < ts_.size(); ++i) s += (i ? ", " : "") + ts_[i]->describe();
    return s + ")";
  }
  bool is_random() const override {
    for (const auto& t : ts_)
      if (t->is_random()) return true;
    return false;
  }
  const std::vector<TransformPtr>& transforms() const { return ts_; }

 private:
  std::vector<TransformPtr> ts_;
};

// Shorthand: compose({make<Resize>(256), make<CenterCrop>(224), make<Normalize>()}).
template <class T, class... Args>
TransformPtr make(Args&&... args) {
  return std::make_shared<const T>(std::forward<Args>(args)...);
}
inline TransformPtr compose(std::vector<TransformPtr> ts) { return std::make_shared<const Compose>(std::move(ts)); }

// The two standard pipelines at `size`: evaluation (resize the shorter side to size, centre crop, normalise)
// and the paper's training augmentation (RandomResizedCrop, both flips, rotation 12°, ColorJitter
// 0.1/0.1/0.1/0.05, normalise).
inline TransformPtr eval_transform(int size) {
  return compose({make<Resize>(size), make<CenterCrop>(size), make<Normalize>()});
}
inline TransformPtr train_transform(int size) {
  return compose({make<RandomResizedCrop>(size), make<RandomHorizontalFlip>(), make<RandomVerticalFlip>(),
                  make<RandomRotation>(12.0), make<ColorJitter>(0.1, 0.1, 0.1, 0.05), make<Normalize>()});
}

}  // namespace data
}  // namespace retikd
