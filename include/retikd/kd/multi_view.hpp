// retikd/kd/multi_view.hpp — the multi-view generator of multi-view robust training (DESIGN.md §5): each batch
// yields the original view plus K augmented ones.
//
// It works on the batched tensor the student sees — (B, C, H, W), already normalised — rather than on
// decoded images, so it runs after the loader, needs no second decode, and is what a GPU path will do. Each
// transform is written in pixel space: x_pix = x·std + mean per channel (the normalisation the batch
// carries, ImageNet's by default; empty mean/std = identity), transformed, normalised back.
//
// View v ≥ 1 of the sample with id s at step t draws from Generator::derive(seed + v·φ, t, s) only, so a view
// depends on (seed, step, sample id, view) and nothing else (not on the batch composition or thread count).
// In this order, each applied with probability `apply_prob` (0.5):
//   crop     a crop of round(scale·H) × round(scale·W) pixels (scale 0.8 of each side), top-left uniform
//            over the valid positions, resized back to H×W bilinearly (align_corners = false, PyTorch's
//            F.interpolate)
//   rotate   θ uniform in [−r, r] degrees about the centre c = ((W−1)/2, (H−1)/2): output pixel p samples
//            the input bilinearly at R(θ)(p − c) + c, R(θ) = [[cos θ, −sin θ], [sin θ, cos θ]] in (x, y)
//            pixel coordinates; neighbours outside the image read black (pixel value 0)
//   jitter   brightness x ← clamp(f_b·x, 0, 1), f_b uniform in [1−b, 1+b]; then contrast
//            x ← clamp((x − m)·f_c + m, 0, 1), m the image's mean grey (0.2989 R + 0.587 G + 0.114 B; the mean
//            over channels when C ≠ 3), f_c uniform in [1−c, 1+c]
//   mask     the image is tiled by patch×patch squares (the last row / column may be smaller);
//            round(ratio·count) distinct tiles, uniform, are set to black (pixel value 0)
// View 0 is the input itself. With `mirror`, the one augmented view is the horizontal mirror of the input
// instead (no random transform): the CPU route, where the teacher's targets for an image and its mirror are
// computed once from cached features (pipeline/pretrained_teacher.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "retikd/core/error.hpp"
#include "retikd/core/random.hpp"
#include "retikd/core/tensor.hpp"
#include "retikd/ops/resize.hpp"
#include "retikd/ops/shape.hpp"

namespace retikd {
namespace kd {

struct MultiViewConfig {
  int64_t augmented_views = 1;   // K
  double apply_prob = 0.5;       // probability of each transform
  double crop_scale = 0.8;       // crop side as a fraction of the image side
  double rotation_degrees = 15.0;
  double brightness = 0.2;
  double contrast = 0.2;
  double mask_ratio = 0.25;      // fraction of tiles masked
  int64_t mask_patch = 16;       // tile side in pixels
  std::vector<double> mean{0.485, 0.456, 0.406};  // the normalisation of the batch (empty: none)
  std::vector<double> std{0.229, 0.224, 0.225};
  uint64_t seed = 0;
  bool mirror = false;           // the one augmented view (augmented_views = 1) is the horizontal mirror
};

// What one augmented view received (tests, logs).
struct ViewRecord {
  bool crop = false, rotate = false, jitter = false, mask = false;
  int64_t crop_top = 0, crop_left = 0, crop_h = 0, crop_w = 0;
  double angle = 0.0, brightness = 1.0, contrast = 1.0;
  int64_t masked_tiles = 0;
};

namespace mv {

// Crop (top, left, ch, cw) of a (C, H, W) image resized back to (C, H, W) bilinearly (align_corners = false).
inline Tensor crop_resize(const Tensor& img, int64_t top, int64_t left, int64_t ch, int64_t cw) {
  RETIKD_CHECK(img.dim() == 3, "crop_resize: image ", shape_str(img.shape()), " must be (C, H, W)");
  const int64_t H = img.size(1), W = img.size(2);
  RETIKD_CHECK(top >= 0 && left >= 0 && ch > 0 && cw > 0 && top + ch <= H && left + cw <= W, "crop_resize: crop (",
               top, ", ", left, ", ", ch, "x", cw, ") is outside a ", H, "x", W, " image");
  Tensor crop = img.narrow(1, top, ch).narrow(2, left, cw).unsqueeze(0).contiguous();  // (1, C, ch, cw)
  return ops::impl::interpolate_bilinear(crop, H, W, false).squeeze(0).contiguous();  // (C, H, W)
}

// Rotation by `degrees` about the centre (see the file comment); outside reads `fill`. (C, H, W) → same.
inline Tensor rotate(const Tensor& img, double degrees, double fill = 0.0) {
  RETIKD_CHECK(img.dim() == 3, "rotate: image ", shape_str(img.shape()), " must be (C, H, W)");
  const Tensor src = img.contiguous();
  const int64_t C = img.size(0), H = img.size(1), W = img.size(2);
  Tensor out = Tensor::empty(img.shape(), img.dtype());
  const double th = degrees * 3.14159265358979323846 / 180.0, cs = std::cos(th), sn = std::sin(th);
  const double cx = 0.5 * static_cast<double>(W - 1), cy = 0.5 * static_cast<double>(H - 1);
  dispatch_floating(img.dtype(), "rotate", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* ps = src.data<T>();
    T* po = out.data<T>();
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) {
        const double dx = static_cast<double>(x) - cx, dy = static_cast<double>(y) - cy;
        const double sx = cs * dx - sn * dy + cx, sy = sn * dx + cs * dy + cy;
        const double fx = std::floor(sx), fy = std::floor(sy);
        const int64_t x0 = static_cast<int64_t>(fx), y0 = static_cast<int64_t>(fy);
        const double wx = sx - fx, wy = sy - fy;
        for (int64_t c = 0; c < C; ++c) {
          const T* plane = ps + c * H * W;
          auto at = [&](int64_t yy, int64_t xx) -> double {
            return (yy < 0 || yy >= H || xx < 0 || xx >= W) ? fill : static_cast<double>(plane[yy * W + xx]);
          };
          const double v = (1 - wy) * ((1 - wx) * at(y0, x0) + wx * at(y0, x0 + 1)) +
                           wy * ((1 - wx) * at(y0 + 1, x0) + wx * at(y0 + 1, x0 + 1));
          po[c * H * W + y * W + x] = static_cast<T>(v);
        }
      }
  });
  return out;
}

// Brightness then contrast, in place on a contiguous (C, H, W) pixel-space image.
inline void jitter(Tensor& img, double brightness, double contrast) {
  const int64_t C = img.size(0), HW = img.size(1) * img.size(2);
  dispatch_floating(img.dtype(), "jitter", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = img.data<T>();
    auto clamp01 = [](double v) { return v < 0.0 ? 0.0 : (v > 1.0 ? 1.0 : v); };
    for (int64_t i = 0; i < C * HW; ++i) p[i] = static_cast<T>(clamp01(brightness * static_cast<double>(p[i])));
    double m = 0.0;
    if (C == 3) {
      for (int64_t i = 0; i < HW; ++i)
        m += 0.2989 * static_cast<double>(p[i]) + 0.587 * static_cast<double>(p[HW + i]) +
             0.114 * static_cast<double>(p[2 * HW + i]);
      m /= static_cast<double>(HW);
    } else {
      for (int64_t i = 0; i < C * HW; ++i) m += static_cast<double>(p[i]);
      m /= static_cast<double>(C * HW);
    }
    for (int64_t i = 0; i < C * HW; ++i) p[i] = static_cast<T>(clamp01((static_cast<double>(p[i]) - m) * contrast + m));
  });
}

// Sets the listed tiles (index ty·tiles_w + tx) of a contiguous (C, H, W) image to `fill`.
inline void mask_tiles(Tensor& img, int64_t patch, const std::vector<int64_t>& tiles, double fill = 0.0) {
  const int64_t C = img.size(0), H = img.size(1), W = img.size(2), tw = (W + patch - 1) / patch;
  dispatch_floating(img.dtype(), "mask_tiles", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = img.data<T>();
    for (int64_t t : tiles) {
      const int64_t y0 = (t / tw) * patch, x0 = (t % tw) * patch;
      for (int64_t c = 0; c < C; ++c)
        for (int64_t y = y0; y < std::min(H, y0 + patch); ++y)
          for (int64_t x = x0; x < std::min(W, x0 + patch); ++x) p[(c * H + y) * W + x] = static_cast<T>(fill);
    }
  });
}

}  // namespace mv

// Horizontal mirror of a batch (B, C, H, W), float32 or float64, CPU.
inline Tensor hflip_batch(const Tensor& x) {
  RETIKD_CHECK(x.dim() == 4 && x.is_cpu() && (x.dtype() == DType::float32 || x.dtype() == DType::float64),
               "hflip_batch: images ", x.describe(), " must be a (B, C, H, W) float CPU tensor");
  const Tensor c = x.contiguous();
  Tensor out = Tensor::empty(c.shape(), c.dtype());
  const int64_t rows = c.size(0) * c.size(1) * c.size(2), W = c.size(3);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    const T* src = c.data<T>();
    T* dst = out.data<T>();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < W; ++j) dst[r * W + j] = src[r * W + (W - 1 - j)];
  };
  if (c.dtype() == DType::float32) run(float());
  else run(double());
  return out;
}

class MultiViewGenerator {
 public:
  explicit MultiViewGenerator(MultiViewConfig cfg = {}) : cfg_(std::move(cfg)) {
    // Each view is a full copy of the batch through the student: more than a few dozen is a typo, not a recipe.
    RETIKD_CHECK(cfg_.augmented_views >= 0 && cfg_.augmented_views <= 64, "MultiViewGenerator: augmented_views ",
                 cfg_.augmented_views, " is not in [0, 64]");
    RETIKD_CHECK(cfg_.apply_prob >= 0.0 && cfg_.apply_prob <= 1.0, "MultiViewGenerator: apply_prob must be in [0, 1]");
    RETIKD_CHECK(cfg_.crop_scale > 0.0 && cfg_.crop_scale <= 1.0, "MultiViewGenerator: crop_scale must be in (0, 1]");
    RETIKD_CHECK(cfg_.mask_patch > 0 && cfg_.mask_ratio >= 0.0 && cfg_.mask_ratio <= 1.0,
                 "MultiViewGenerator: mask_patch must be positive and mask_ratio in [0, 1]");
    RETIKD_CHECK(cfg_.brightness >= 0.0 && cfg_.contrast >= 0.0 && cfg_.rotation_degrees >= 0.0,
                 "MultiViewGenerator: jitter strengths and rotation must be >= 0");
    RETIKD_CHECK(cfg_.mean.size() == cfg_.std.size(), "MultiViewGenerator: mean and std differ in length");
    RETIKD_CHECK(!cfg_.mirror || cfg_.augmented_views == 1, "MultiViewGenerator: mirror views need "
                 "augmented_views = 1, got ", cfg_.augmented_views);
  }
  const MultiViewConfig& config() const { return cfg_; }
  int64_t num_views() const { return 1 + cfg_.augmented_views; }

  // The generator view v of sample `sample` draws from at `step`.
  Generator sample_generator(uint64_t step, int64_t sample, int64_t view) const {
    return Generator::derive(cfg_.seed + static_cast<uint64_t>(view) * 0x9E3779B97F4A7C15ULL, step,
                             static_cast<uint64_t>(sample));
  }

  // Views 0..K of a batch (B, C, H, W) whose samples have ids `sample_ids` (size B).
  std::vector<Tensor> generate(const Tensor& images, const std::vector<int64_t>& sample_ids, uint64_t step) const {
    std::vector<Tensor> out;
    for (int64_t v = 0; v < num_views(); ++v) out.push_back(view(images, sample_ids, step, v));
    return out;
  }

  // View v (0: the images themselves); `records`, when given, receives what each sample got.
  Tensor view(const Tensor& images, const std::vector<int64_t>& sample_ids, uint64_t step, int64_t v,
              std::vector<ViewRecord>* records = nullptr) const {
    RETIKD_CHECK(images.dim() == 4 && is_floating(images.dtype()), "MultiViewGenerator: images ",
                 images.describe(), " must be a floating (B, C, H, W) tensor");
    RETIKD_CHECK(static_cast<int64_t>(sample_ids.size()) == images.size(0), "MultiViewGenerator: ",
                 sample_ids.size(), " sample ids for a batch of ", images.size(0));
    RETIKD_CHECK(v >= 0 && v < num_views(), "MultiViewGenerator: view ", v, " of ", num_views());
    RETIKD_CHECK(cfg_.mean.empty() || static_cast<int64_t>(cfg_.mean.size()) == images.size(1),
                 "MultiViewGenerator: normalisation for ", cfg_.mean.size(), " channels, images have ", images.size(1));
    if (records) records->assign(sample_ids.size(), ViewRecord{});
    if (v == 0) return images;
    if (cfg_.mirror) return images.is_cpu() ? hflip_batch(images) : hflip_batch(images.to(Device::cpu())).to(images.device());
    // The transforms run on the host: GPU images make the round trip (the same views either way).
    if (!images.is_cpu()) return view(images.to(Device::cpu()), sample_ids, step, v, records).to(images.device());
    Tensor out = Tensor::empty(images.shape(), images.dtype());
    for (int64_t b = 0; b < images.size(0); ++b) {
      Generator g = sample_generator(step, sample_ids[static_cast<std::size_t>(b)], v);
      ViewRecord rec;
      Tensor img = augment(images.narrow(0, b, 1).squeeze(0), g, rec);
      out.narrow(0, b, 1).copy_(img.unsqueeze(0));
      if (records) (*records)[static_cast<std::size_t>(b)] = rec;
    }
    return out;
  }

  // One normalised (C, H, W) image through the transforms (see the file comment).
  Tensor augment(const Tensor& image, Generator& g, ViewRecord& rec) const {
    const int64_t H = image.size(1), W = image.size(2);
    Tensor img = to_pixels(image);  // (C, H, W), contiguous copy
    const double p = cfg_.apply_prob;
    if (g.uniform() < p) {
      rec.crop = true;
      rec.crop_h = std::max<int64_t>(1, static_cast<int64_t>(std::lround(cfg_.crop_scale * static_cast<double>(H))));
      rec.crop_w = std::max<int64_t>(1, static_cast<int64_t>(std::lround(cfg_.crop_scale * static_cast<double>(W))));
      rec.crop_top = static_cast<int64_t>(g.below(static_cast<uint64_t>(H - rec.crop_h + 1)));
      rec.crop_left = static_cast<int64_t>(g.below(static_cast<uint64_t>(W - rec.crop_w + 1)));
      img = mv::crop_resize(img, rec.crop_top, rec.crop_left, rec.crop_h, rec.crop_w);
    }
    if (g.uniform() < p) {
      rec.rotate = true;
      rec.angle = g.uniform(-cfg_.rotation_degrees, cfg_.rotation_degrees);
      img = mv::rotate(img, rec.angle, 0.0);
    }
    if (g.uniform() < p) {
      rec.jitter = true;
      rec.brightness = g.uniform(1.0 - cfg_.brightness, 1.0 + cfg_.brightness);
      rec.contrast = g.uniform(1.0 - cfg_.contrast, 1.0 + cfg_.contrast);
      mv::jitter(img, rec.brightness, rec.contrast);
    }
    if (g.uniform() < p) {
      rec.mask = true;
      const int64_t tiles = ((H + cfg_.mask_patch - 1) / cfg_.mask_patch) * ((W + cfg_.mask_patch - 1) / cfg_.mask_patch);
      const int64_t k = static_cast<int64_t>(std::lround(cfg_.mask_ratio * static_cast<double>(tiles)));
      std::vector<int64_t> order(static_cast<std::size_t>(tiles));
      for (int64_t i = 0; i < tiles; ++i) order[static_cast<std::size_t>(i)] = i;
      for (int64_t i = 0; i < k; ++i)  // partial Fisher–Yates: the first k are a uniform k-subset
        std::swap(order[static_cast<std::size_t>(i)],
                  order[static_cast<std::size_t>(i + static_cast<int64_t>(g.below(static_cast<uint64_t>(tiles - i))))]);
      order.resize(static_cast<std::size_t>(k));
      rec.masked_tiles = k;
      mv::mask_tiles(img, cfg_.mask_patch, order, 0.0);
    }
    return from_pixels(img);
  }

  // Normalised (C, H, W) → pixel space (contiguous copy) and back.
  Tensor to_pixels(const Tensor& x) const { return affine(x, true); }
  Tensor from_pixels(const Tensor& x) const { return affine(x, false); }

 private:
  Tensor affine(const Tensor& x, bool to_pix) const {
    Tensor out = x.contiguous().clone();
    if (cfg_.mean.empty()) return out;
    const int64_t C = x.size(0), HW = x.size(1) * x.size(2);
    dispatch_floating(out.dtype(), "MultiViewGenerator", [&](auto tag) {
      using T = typename decltype(tag)::type;
      T* p = out.data<T>();
      for (int64_t c = 0; c < C; ++c) {
        const double m = cfg_.mean[static_cast<std::size_t>(c)], s = cfg_.std[static_cast<std::size_t>(c)];
        for (int64_t i = 0; i < HW; ++i) {
          const double v = static_cast<double>(p[c * HW + i]);
          p[c * HW + i] = static_cast<T>(to_pix ? v * s + m : (v - m) / s);
        }
      }
    });
    return out;
  }

  MultiViewConfig cfg_;
};

}  // namespace kd
}  // namespace retikd
