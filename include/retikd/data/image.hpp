// retikd/data/image.hpp — the two image types of the data pipeline and the conversions between them.
//
// ImageU8 is what decoding produces and what the cache stores: 8-bit RGB, interleaved (H, W, 3), exactly the
// bytes a PIL `convert("RGB")` would hold. Image is what transforms work on: float32, planar (C, H, W),
// values nominally in [0, 1] until Normalize — torchvision's `ToTensor()` layout, so the transforms can follow
// torchvision's tensor definitions line by line. ByteBatch carries uint8 NCHW batches: the core has no uint8
// dtype, and an int32 tensor of 0..255 would cost four times the memory the uint8 path exists to save.
//
// max_image_pixels() is the largest image (width x height) the pipeline makes: decoding refuses larger
// files before it allocates (data/decode.hpp), and Resize refuses to blow a thin image up beyond it.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <vector>

#include "retikd/core/cli_args.hpp"
#include "retikd/core/error.hpp"
#include "retikd/core/shape.hpp"

namespace retikd {
namespace data {

constexpr int64_t kDefaultMaxImagePixels = 50000000;  // 50 MP: any fundus camera's full resolution fits
constexpr int kMaxImageSide = 1 << 15;                   // stb_image's own limit (STBI_MAX_DIMENSIONS)

namespace detail {
inline std::atomic<int64_t>& max_pixels_setting() {
  // The environment is read once, on first use; a malformed value is an error, not a silent default.
  static std::atomic<int64_t> v{cli::env_int("RETIKD_MAX_IMAGE_PIXELS", kDefaultMaxImagePixels, 1,
                                             int64_t(kMaxImageSide) * kMaxImageSide)};
  return v;
}
}  // namespace detail

// The pixel limit for every thread (default 50,000,000; RETIKD_MAX_IMAGE_PIXELS sets the starting value).
inline int64_t max_image_pixels() { return detail::max_pixels_setting().load(); }
inline void set_max_image_pixels(int64_t pixels) {
  RETIKD_CHECK(pixels >= 1 && pixels <= int64_t(kMaxImageSide) * kMaxImageSide, "set_max_image_pixels: ", pixels,
               " is not in [1, ", int64_t(kMaxImageSide) * kMaxImageSide, "]");
  detail::max_pixels_setting().store(pixels);
}

// 8-bit RGB, row-major, interleaved: pixel (y, x) channel c at pixels[(y * width + x) * 3 + c].
struct ImageU8 {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;

  ImageU8() = default;
  ImageU8(int w, int h) : width(w), height(h), pixels(static_cast<std::size_t>(w) * h * 3, 0) {
    RETIKD_CHECK(w >= 0 && h >= 0, "ImageU8: negative size ", w, "x", h);
  }
  bool empty() const { return width == 0 || height == 0; }
  uint8_t* at(int y, int x) { return &pixels[(static_cast<std::size_t>(y) * width + x) * 3]; }
  const uint8_t* at(int y, int x) const { return &pixels[(static_cast<std::size_t>(y) * width + x) * 3]; }
};

// float32, planar: element (c, y, x) at data[(c * height + y) * width + x].
struct Image {
  int channels = 0;
  int height = 0;
  int width = 0;
  std::vector<float> data;

  Image() = default;
  Image(int c, int h, int w, float fill = 0.0f)
      : channels(c), height(h), width(w), data(static_cast<std::size_t>(c) * h * w, fill) {
    RETIKD_CHECK(c >= 0 && h >= 0 && w >= 0, "Image: negative size ", c, "x", h, "x", w);
  }
  bool empty() const { return channels == 0 || height == 0 || width == 0; }
  std::size_t plane_size() const { return static_cast<std::size_t>(height) * width; }
  float* plane(int c) { return data.data() + c * plane_size(); }
  const float* plane(int c) const { return data.data() + c * plane_size(); }
  float& at(int c, int y, int x) { return data[(c * static_cast<std::size_t>(height) + y) * width + x]; }
  float at(int c, int y, int x) const { return data[(c * static_cast<std::size_t>(height) + y) * width + x]; }
  Shape shape() const { return {channels, height, width}; }
};

// uint8 images as a batch, (N, C, H, W) row-major.
struct ByteBatch {
  Shape shape;
  std::vector<uint8_t> data;
  bool defined() const { return !shape.empty(); }
};

// uint8 → float in [0, 1] (divides by 255, as ToTensor does).
inline Image to_float(const ImageU8& src) {
  Image out(3, src.height, src.width);
  const std::size_t n = out.plane_size();
  const uint8_t* p = src.pixels.data();
  float* r = out.plane(0);
  float* g = out.plane(1);
  float* b = out.plane(2);
  constexpr float k = 1.0f / 255.0f;
  for (std::size_t i = 0; i < n; ++i) {
    r[i] = p[3 * i] * k;
    g[i] = p[3 * i + 1] * k;
    b[i] = p[3 * i + 2] * k;
  }
  return out;
}

// One float in [0, 1] to the nearest byte (values outside are clamped, NaN becomes 0).
inline uint8_t to_byte(float v) {
  if (!(v > 0.0f)) return 0;
  if (v >= 1.0f) return 255;
  return static_cast<uint8_t>(v * 255.0f + 0.5f);
}

// float (3, H, W) in [0, 1] → uint8 RGB, rounding to nearest.
inline ImageU8 to_u8(const Image& src) {
  RETIKD_CHECK(src.channels == 3, "to_u8: expected 3 channels, got ", src.channels);
  ImageU8 out(src.width, src.height);
  const std::size_t n = src.plane_size();
  const float* r = src.plane(0);
  const float* g = src.plane(1);
  const float* b = src.plane(2);
  uint8_t* p = out.pixels.data();
  for (std::size_t i = 0; i < n; ++i) {
    p[3 * i] = to_byte(r[i]);
    p[3 * i + 1] = to_byte(g[i]);
    p[3 * i + 2] = to_byte(b[i]);
  }
  return out;
}

}  // namespace data
}  // namespace retikd
