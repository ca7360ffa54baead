// retikd/ssl/masking.hpp — I-JEPA's multi-block masking on a ViT patch grid (Assran et al., CVPR 2023):
// per image, `num_targets` target blocks (scale 0.15–0.2 of the grid, aspect ratio h/w 0.75–1.5) whose
// features the predictor must guess, and one large context block (scale 0.85–1.0, square) with every target
// patch removed — the only patches the context encoder sees.
//
// As in the reference collator, the block *sizes* are drawn once per batch (so every image has targets of
// the same size and the predictor's batch is rectangular) and the block *positions* per image. Context sets
// differ in length between images; they are cut to the shortest one of the batch by a seeded random subset
// (the reference keeps the first indices, which would favour the top rows of the grid).
//
// Block sizes: a scale s and an aspect ratio a are drawn (a log-uniformly, so h/w and w/h are equally likely),
// then the integer block (h, w) on the grid closest to (s, a) in log space *among the blocks whose realised
// scale h·w/N and aspect h/w lie inside the configured ranges* is taken; only when no block on the grid
// satisfies both ranges (tiny grids) is the closest block of any size used. So the ranges are guaranteed
// whenever the grid allows them, which the tests check.
//
// Too few context patches (targets covering most of the context block) happen rarely at 14×14. The reference
// then re-draws the context position and, after repeated failures, lets target patches back into the context;
// here the context position is re-drawn, then the targets' positions, and as a last resort the context block
// becomes the whole grid — target patches never enter the context. The constructor checks that the whole grid
// minus the largest possible targets still leaves `min_keep` patches, so that last resort always suffices.
//
// Patches are numbered row-major: n = row·grid_w + col (PatchEmbed's token order).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "retikd/core/error.hpp"
#include "retikd/core/random.hpp"
#include "retikd/core/tensor.hpp"

namespace retikd {
namespace ssl {

struct MaskConfig {
  int64_t grid_h = 14, grid_w = 14;
  int64_t num_targets = 4;
  double target_scale_min = 0.15, target_scale_max = 0.2;
  double target_aspect_min = 0.75, target_aspect_max = 1.5;  // h / w
  double context_scale_min = 0.85, context_scale_max = 1.0;
  double context_aspect_min = 1.0, context_aspect_max = 1.0;
  int64_t min_keep = 10;      // fewest context patches an image may have (the reference's value at 14×14)
  int64_t max_tries = 20;     // context placements tried before the targets are re-placed
  int64_t max_rounds = 10;    // target re-placements before the context becomes the whole grid
};

struct BlockSize {
  int64_t h = 0, w = 0;
  int64_t area() const { return h * w; }
};

// The masks of one image.
struct ImageMasks {
  std::vector<int64_t> context;               // sorted patch indices, disjoint from every target
  std::vector<std::vector<int64_t>> targets;  // num_targets blocks, each sorted (blocks may overlap)
};

// The masks of a batch, rectangular: every image has `context_len` context patches and every target block
// `target_size.area()` patches.
struct BatchMasks {
  BlockSize target_size, context_size;
  std::vector<ImageMasks> images;
  int64_t batch() const { return static_cast<int64_t>(images.size()); }
  int64_t context_len() const { return images.empty() ? 0 : static_cast<int64_t>(images[0].context.size()); }
  int64_t num_targets() const { return images.empty() ? 0 : static_cast<int64_t>(images[0].targets.size()); }
  int64_t target_len() const { return target_size.area(); }
  // (B, K) int64: the context indices of every image.
  Tensor context_index() const {
    const int64_t B = batch(), K = context_len();
    std::vector<int64_t> v;
    v.reserve(static_cast<std::size_t>(B * K));
    for (const auto& im : images) v.insert(v.end(), im.context.begin(), im.context.end());
    return Tensor::from_vector<int64_t>(v, {B, K});
  }
  // (M·B, T) int64: target block m of image b at row m·B + b (the predictor's batch order).
  Tensor target_index() const {
    const int64_t B = batch(), M = num_targets(), T = target_len();
    std::vector<int64_t> v;
    v.reserve(static_cast<std::size_t>(M * B * T));
    for (int64_t m = 0; m < M; ++m)
      for (const auto& im : images) v.insert(v.end(), im.targets[static_cast<std::size_t>(m)].begin(),
                                             im.targets[static_cast<std::size_t>(m)].end());
    return Tensor::from_vector<int64_t>(v, {M * B, T});
  }
};

class MultiBlockMasker {
 public:
  explicit MultiBlockMasker(const MaskConfig& c) : c_(c) {
    RETIKD_CHECK(c.grid_h > 0 && c.grid_w > 0, "MultiBlockMasker: grid ", c.grid_h, "x", c.grid_w, " must be positive");
    RETIKD_CHECK(c.num_targets >= 1, "MultiBlockMasker: num_targets must be at least 1, got ", c.num_targets);
    check_range("target scale", c.target_scale_min, c.target_scale_max, 1.0);
    check_range("context scale", c.context_scale_min, c.context_scale_max, 1.0);
    check_range("target aspect", c.target_aspect_min, c.target_aspect_max, std::numeric_limits<double>::infinity());
    check_range("context aspect", c.context_aspect_min, c.context_aspect_max, std::numeric_limits<double>::infinity());
    RETIKD_CHECK(c.min_keep >= 1 && c.max_tries >= 1 && c.max_rounds >= 0, "MultiBlockMasker: min_keep (",
                 c.min_keep, ") and max_tries (", c.max_tries, ") must be >= 1, max_rounds (", c.max_rounds, ") >= 0");
    // The largest target block any batch can draw bounds what the targets can cover.
    int64_t largest = 0;
    for (int64_t h = 1; h <= c.grid_h; ++h)
      for (int64_t w = 1; w <= c.grid_w; ++w)
        if (admissible(h, w, c.target_scale_min, c.target_scale_max, c.target_aspect_min, c.target_aspect_max))
          largest = std::max(largest, h * w);
    if (largest == 0) largest = max_fallback_area();
    const int64_t N = c.grid_h * c.grid_w;
    RETIKD_CHECK(N - c.num_targets * largest >= c.min_keep, "MultiBlockMasker: a ", c.grid_h, "x", c.grid_w,
                 " grid is too small: ", c.num_targets, " target blocks of up to ", largest,
                 " patches can leave fewer than min_keep = ", c.min_keep, " of its ", N,
                 " patches for the context (use a finer patch grid, fewer or smaller targets, or a lower min_keep)");
  }

  const MaskConfig& config() const { return c_; }
  int64_t num_patches() const { return c_.grid_h * c_.grid_w; }

  // The block (h, w) for a drawn scale and aspect ratio (see the file comment).
  BlockSize block_for(double scale, double aspect, double smin, double smax, double amin, double amax) const {
    const double N = static_cast<double>(num_patches());
    BlockSize best;
    double best_cost = std::numeric_limits<double>::infinity();
    bool best_ok = false;
    for (int64_t h = 1; h <= c_.grid_h; ++h)
      for (int64_t w = 1; w <= c_.grid_w; ++w) {
        const bool ok = admissible(h, w, smin, smax, amin, amax);
        if (best_ok && !ok) continue;
        const double ds = std::log(static_cast<double>(h * w) / N) - std::log(scale);
        const double da = std::log(static_cast<double>(h) / static_cast<double>(w)) - std::log(aspect);
        const double cost = ds * ds + da * da;
        if ((ok && !best_ok) || cost < best_cost) {
          best = {h, w};
          best_cost = cost;
          best_ok = ok;
        }
      }
    return best;
  }

  // Draws a block size from scale ∈ [smin, smax] (uniform) and aspect ∈ [amin, amax] (log-uniform).
  BlockSize sample_size(Generator& g, double smin, double smax, double amin, double amax) const {
    const double s = g.uniform(smin, smax);
    const double a = std::exp(g.uniform(std::log(amin), std::log(amax)));
    return block_for(s, a, smin, smax, amin, amax);
  }

  // The masks of a batch of `batch` images.
  BatchMasks sample(int64_t batch, Generator& g) const {
    RETIKD_CHECK(batch >= 1, "MultiBlockMasker::sample: batch must be at least 1, got ", batch);
    BatchMasks out;
    out.target_size = sample_size(g, c_.target_scale_min, c_.target_scale_max, c_.target_aspect_min, c_.target_aspect_max);
    out.context_size = sample_size(g, c_.context_scale_min, c_.context_scale_max, c_.context_aspect_min,
                                   c_.context_aspect_max);
    out.images.resize(static_cast<std::size_t>(batch));
    std::size_t shortest = std::numeric_limits<std::size_t>::max();
    for (auto& im : out.images) {
      im = sample_image(out.target_size, out.context_size, g);
      shortest = std::min(shortest, im.context.size());
    }
    for (auto& im : out.images) {
      if (im.context.size() == shortest) continue;
      // A seeded random subset of `shortest` indices (partial Fisher–Yates), kept sorted.
      std::vector<int64_t>& ctx = im.context;
      for (std::size_t i = 0; i < shortest; ++i) std::swap(ctx[i], ctx[i + g.below(ctx.size() - i)]);
      ctx.resize(shortest);
      std::sort(ctx.begin(), ctx.end());
    }
    return out;
  }

 private:
  static void check_range(const char* what, double lo, double hi, double max) {
    RETIKD_CHECK(lo > 0 && lo <= hi && hi <= max, "MultiBlockMasker: ", what, " range [", lo, ", ", hi,
                 "] must satisfy 0 < min <= max <= ", max);
  }
  bool admissible(int64_t h, int64_t w, double smin, double smax, double amin, double amax) const {
    const double s = static_cast<double>(h * w) / static_cast<double>(num_patches());
    const double a = static_cast<double>(h) / static_cast<double>(w);
    const double tol = 1e-12;  // 0.75 = 3/4 must count as inside [0.75, 1.5]
    return s >= smin - tol && s <= smax + tol && a >= amin - tol && a <= amax + tol;
  }
  int64_t max_fallback_area() const {
    // No admissible target block: the size block_for falls back to can be anything up to the closest
    // block to the largest scale; bound it by trying the range's corners.
    int64_t m = 0;
    for (double s : {c_.target_scale_min, c_.target_scale_max})
      for (double a : {c_.target_aspect_min, c_.target_aspect_max})
        m = std::max(m, block_for(s, a, c_.target_scale_min, c_.target_scale_max, c_.target_aspect_min,
                                  c_.target_aspect_max).area());
    return m;
  }

  // Row-major indices of the block of size `b` at a random position.
  std::vector<int64_t> place(const BlockSize& b, Generator& g) const {
    const int64_t top = static_cast<int64_t>(g.below(static_cast<uint64_t>(c_.grid_h - b.h + 1)));
    const int64_t left = static_cast<int64_t>(g.below(static_cast<uint64_t>(c_.grid_w - b.w + 1)));
    std::vector<int64_t> idx;
    idx.reserve(static_cast<std::size_t>(b.area()));
    for (int64_t r = top; r < top + b.h; ++r)
      for (int64_t col = left; col < left + b.w; ++col) idx.push_back(r * c_.grid_w + col);
    return idx;
  }

  ImageMasks sample_image(const BlockSize& tsize, const BlockSize& csize, Generator& g) const {
    const int64_t N = num_patches();
    ImageMasks im;
    std::vector<char> covered(static_cast<std::size_t>(N));
    for (int64_t round = 0; round <= c_.max_rounds; ++round) {
      im.targets.clear();
      std::fill(covered.begin(), covered.end(), 0);
      for (int64_t m = 0; m < c_.num_targets; ++m) {
        im.targets.push_back(place(tsize, g));
        for (int64_t i : im.targets.back()) covered[static_cast<std::size_t>(i)] = 1;
      }
      for (int64_t t = 0; t < c_.max_tries; ++t) {
        im.context.clear();
        for (int64_t i : place(csize, g))
          if (!covered[static_cast<std::size_t>(i)]) im.context.push_back(i);
        if (static_cast<int64_t>(im.context.size()) >= c_.min_keep) return im;
      }
    }
    // Last resort: everything the targets leave free (>= min_keep, checked in the constructor).
    im.context.clear();
    for (int64_t i = 0; i < N; ++i)
      if (!covered[static_cast<std::size_t>(i)]) im.context.push_back(i);
    return im;
  }

  MaskConfig c_;
};

}  // namespace ssl
}  // namespace retikd
