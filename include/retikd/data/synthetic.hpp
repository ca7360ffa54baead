// retikd/data/synthetic.hpp — a seeded synthetic fundus set: the tests' data and the default when no real
// data is given.
//
// Each image is drawn from (seed, index) alone: a circular field of view on black, an orange-red fundus with
// vignetting and a smooth texture, a macula, an optic disc with its cup, and a vessel tree of four arcades
// that branch and thin out from the disc. The class (index mod 4, so every block of four is balanced) adds:
//  - DR (1): microaneurysms (tiny dark-red dots), haemorrhages (dark-red blots), hard exudates (small yellow
//    spots, clustered around the macula);
//  - Glaucoma (2): a cup-to-disc ratio of 0.7–0.9 (0.15–0.4 otherwise);
//  - Cataract (0): a veil of haze (strongest at the centre) and a blur of the whole fundus;
//  - Normal (3): nothing.
// Lesions are small on purpose, and with `decorrelate_colour` (the default) every image's fundus is
// finally mapped, channel by channel, to a mean and standard deviation drawn independently of the class —
// so the per-image mean and std of each channel carry no class information (tested: a classifier on those
// six numbers stays near chance) and a model has to find lesions, cups and blur, not tints. The real set has
// exactly that trap (README: each class comes mostly from one camera).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "retikd/core/random.hpp"
#include "retikd/data/classes.hpp"
#include "retikd/data/image.hpp"

namespace retikd {
namespace data {

struct SyntheticOptions {
  int size = 64;                  // square images, size × size
  bool decorrelate_colour = true; // class-independent per-channel mean / std of the fundus (see above)
  double noise = 0.01;            // sensor noise (std, in [0, 1] units)
};

// The label of synthetic sample `index`: index mod 4 (balanced in every run of four).
inline int synthetic_label(int64_t index) { return static_cast<int>(((index % kNumClasses) + kNumClasses) % kNumClasses); }

namespace detail {

struct Canvas {
  int S;
  std::array<std::vector<float>, 3> c;  // planar RGB
  explicit Canvas(int size) : S(size) {
    for (auto& p : c) p.assign(static_cast<std::size_t>(size) * size, 0.0f);
  }
  std::size_t idx(int y, int x) const { return static_cast<std::size_t>(y) * S + x; }
};

// Area coverage of a disc of radius r at distance d from a pixel centre (a one-pixel linear ramp).
inline float disc_coverage(double d, double r) {
  const double v = r - d + 0.5;
  return static_cast<float>(v <= 0 ? 0.0 : (v >= 1 ? 1.0 : v));
}

// Blends colour `col` into a soft disc (cx, cy, r) with opacity `alpha`.
inline void paint_disc(Canvas& cv, double cx, double cy, double r, const std::array<float, 3>& col, float alpha) {
  const int x0 = std::max(0, static_cast<int>(std::floor(cx - r - 1))), x1 = std::min(cv.S - 1, static_cast<int>(std::ceil(cx + r + 1)));
  const int y0 = std::max(0, static_cast<int>(std::floor(cy - r - 1))), y1 = std::min(cv.S - 1, static_cast<int>(std::ceil(cy + r + 1)));
  for (int y = y0; y <= y1; ++y)
    for (int x = x0; x <= x1; ++x) {
      const double d = std::hypot(x + 0.5 - cx, y + 0.5 - cy);
      const float a = alpha * disc_coverage(d, r);
      if (a <= 0) continue;
      const std::size_t i = cv.idx(y, x);
      for (int k = 0; k < 3; ++k) cv.c[k][i] += a * (col[k] - cv.c[k][i]);
    }
}

// Max-accumulates the coverage of a capsule (segment a→b, half-width hw) into `map`.
inline void stamp_segment(std::vector<float>& map, int S, double ax, double ay, double bx, double by, double hw) {
  const double pad = hw + 1.5;
  const int x0 = std::max(0, static_cast<int>(std::floor(std::min(ax, bx) - pad)));
  const int x1 = std::min(S - 1, static_cast<int>(std::ceil(std::max(ax, bx) + pad)));
  const int y0 = std::max(0, static_cast<int>(std::floor(std::min(ay, by) - pad)));
  const int y1 = std::min(S - 1, static_cast<int>(std::ceil(std::max(ay, by) + pad)));
  const double dx = bx - ax, dy = by - ay, len2 = dx * dx + dy * dy;
  // Lines thinner than a pixel keep their area (lower opacity) instead of vanishing.
  const float thin = static_cast<float>(std::min(1.0, 2.0 * hw));
  const double r = std::max(hw, 0.5);
  for (int y = y0; y <= y1; ++y)
    for (int x = x0; x <= x1; ++x) {
      const double px = x + 0.5 - ax, py = y + 0.5 - ay;
      double t = len2 > 0 ? (px * dx + py * dy) / len2 : 0.0;
      t = std::min(1.0, std::max(0.0, t));
      const double d = std::hypot(px - t * dx, py - t * dy);
      const float cov = thin * disc_coverage(d, r);
      float& m = map[static_cast<std::size_t>(y) * S + x];
      if (cov > m) m = cov;
    }
}

// One vessel from (x, y) heading `angle`; bends by `curve` per step, branches while depth allows.
inline void grow_vessel(std::vector<float>& map, int S, Generator& g, double x, double y, double angle, double width,
                        double curve, double step, double fcx, double fcy, double R, int depth) {
  for (int i = 0; i < 60; ++i) {
    const double nx = x + step * std::cos(angle), ny = y + step * std::sin(angle);
    stamp_segment(map, S, x, y, nx, ny, 0.5 * width);
    x = nx;
    y = ny;
    if (std::hypot(x - fcx, y - fcy) > 0.97 * R) return;
    angle += curve + g.uniform(-0.06, 0.06);
    width *= 0.985;
    if (depth > 0 && g.uniform() < 0.07) {
      const double side = g.uniform() < 0.5 ? -1.0 : 1.0;
      grow_vessel(map, S, g, x, y, angle + side * g.uniform(0.4, 0.8), width * 0.7, curve * 0.5 + side * 0.02, step,
                  fcx, fcy, R, depth - 1);
    }
  }
}

inline void gaussian_blur(std::vector<float>& p, int S, double sigma) {
  if (sigma <= 0.05) return;
  const int rad = std::max(1, static_cast<int>(std::ceil(3 * sigma)));
  std::vector<float> k(2 * rad + 1);
  double tot = 0;
  for (int i = -rad; i <= rad; ++i) tot += (k[i + rad] = static_cast<float>(std::exp(-0.5 * i * i / (sigma * sigma))));
  for (float& v : k) v = static_cast<float>(v / tot);
  std::vector<float> tmp(p.size());
  for (int y = 0; y < S; ++y)
    for (int x = 0; x < S; ++x) {
      float acc = 0;
      for (int i = -rad; i <= rad; ++i) acc += k[i + rad] * p[static_cast<std::size_t>(y) * S + std::min(S - 1, std::max(0, x + i))];
      tmp[static_cast<std::size_t>(y) * S + x] = acc;
    }
  for (int y = 0; y < S; ++y)
    for (int x = 0; x < S; ++x) {
      float acc = 0;
      for (int i = -rad; i <= rad; ++i) acc += k[i + rad] * tmp[static_cast<std::size_t>(std::min(S - 1, std::max(0, y + i))) * S + x];
      p[static_cast<std::size_t>(y) * S + x] = acc;
    }
}

}  // namespace detail

// The synthetic fundus for (seed, index) with class `label` (normally synthetic_label(index)).
inline ImageU8 synthetic_fundus(int label, uint64_t seed, int64_t index, const SyntheticOptions& opt = {}) {
  RETIKD_CHECK(label >= 0 && label < kNumClasses, "synthetic_fundus: label ", label, " out of range");
  RETIKD_CHECK(opt.size >= 16, "synthetic_fundus: size ", opt.size, " is too small (at least 16)");
  using detail::Canvas;
  const int S = opt.size;
  Generator g = Generator::derive(seed ^ 0x5f0d5ULL, static_cast<uint64_t>(index), 0x0f1e1dULL);
  Canvas cv(S);

  // Field of view.
  const double fcx = S * (0.5 + g.uniform(-0.02, 0.02)), fcy = S * (0.5 + g.uniform(-0.02, 0.02));
  const double R = S * g.uniform(0.40, 0.47);
  std::vector<float> field(static_cast<std::size_t>(S) * S);
  for (int y = 0; y < S; ++y)
    for (int x = 0; x < S; ++x) field[cv.idx(y, x)] = detail::disc_coverage(std::hypot(x + 0.5 - fcx, y + 0.5 - fcy), R);

  // Eye side: the disc sits nasally, left or right of the fovea.
  const double side = g.uniform() < 0.5 ? -1.0 : 1.0;
  const double fov_x = fcx + g.uniform(-0.05, 0.05) * R, fov_y = fcy + g.uniform(-0.05, 0.05) * R;
  const double disc_x = fcx + side * g.uniform(0.40, 0.50) * R, disc_y = fcy + g.uniform(-0.08, 0.08) * R;
  const double rd = R * g.uniform(0.15, 0.18);

  // Background: orange-red with a per-image tint, vignetting, macula and a smooth texture.
  const std::array<float, 3> base = {static_cast<float>(0.78 * g.uniform(0.88, 1.12)),
                                     static_cast<float>(0.36 * g.uniform(0.85, 1.15)),
                                     static_cast<float>(0.16 * g.uniform(0.8, 1.2))};
  double wave[3][4];
  for (auto& w : wave) {
    const double a = g.uniform(0, 6.2831853), f = g.uniform(1.5, 4.0) / S;
    w[0] = f * std::cos(a);
    w[1] = f * std::sin(a);
    w[2] = g.uniform(0, 6.2831853);
    w[3] = g.uniform(0.02, 0.05);
  }
  const double mac_r = 0.12 * R;
  for (int y = 0; y < S; ++y)
    for (int x = 0; x < S; ++x) {
      const std::size_t i = cv.idx(y, x);
      const double rr = std::hypot(x + 0.5 - fcx, y + 0.5 - fcy) / R;
      double shade = 1.0 - 0.35 * rr * rr;
      for (auto& w : wave) shade += w[3] * std::sin(6.2831853 * (w[0] * x + w[1] * y) + w[2]);
      const double dm = std::hypot(x + 0.5 - fov_x, y + 0.5 - fov_y);
      shade *= 1.0 - 0.3 * std::exp(-0.5 * dm * dm / (mac_r * mac_r));
      for (int k = 0; k < 3; ++k) cv.c[k][i] = static_cast<float>(base[k] * shade);
    }

  // Optic disc and cup.
  const double cdr = label == 2 ? g.uniform(0.70, 0.90) : g.uniform(0.15, 0.40);
  detail::paint_disc(cv, disc_x, disc_y, rd, {1.0f, 0.70f, 0.48f}, 0.9f);
  const double cup_x = disc_x - side * g.uniform(0.0, 0.1) * rd, cup_y = disc_y + g.uniform(-0.05, 0.05) * rd;
  detail::paint_disc(cv, cup_x, cup_y, cdr * rd, {1.0f, 1.0f, 0.92f}, 1.0f);

  // Vessels: four arcades from the disc rim, temporal ones arching around the macula.
  std::vector<float> vessels(static_cast<std::size_t>(S) * S, 0.0f);
  const double temporal = side > 0 ? 3.14159265358979 : 0.0;  // direction from the disc towards the fovea
  const double nasal = temporal + 3.14159265358979;
  const double step = std::max(0.6, 0.045 * R);
  for (int k = 0; k < 4; ++k) {
    const double up = k % 2 == 0 ? -1.0 : 1.0;  // y grows downwards
    const bool to_fovea = k < 2;
    const double axis = to_fovea ? temporal : nasal;
    // An angle measured from `axis` towards up (−y) or down (+y).
    const double off = (to_fovea ? g.uniform(0.6, 1.0) : g.uniform(0.5, 1.1));
    const double dir_x = std::cos(axis), bend_sign = (dir_x > 0 ? 1.0 : -1.0);
    const double angle = axis + up * off * bend_sign;
    const double curve = -up * bend_sign * (to_fovea ? g.uniform(0.035, 0.06) : g.uniform(0.0, 0.02));
    const double sx = disc_x + 1.05 * rd * std::cos(angle), sy = disc_y + 1.05 * rd * std::sin(angle);
    detail::grow_vessel(vessels, S, g, sx, sy, angle, std::max(0.5, 0.045 * R), curve, step, fcx, fcy, R, 2);
  }
  const float vessel_dark[3] = {0.45f, 0.35f, 0.55f};  // multiplicative: dark red
  for (std::size_t i = 0; i < vessels.size(); ++i)
    for (int k = 0; k < 3; ++k) cv.c[k][i] *= 1.0f - vessels[i] * (1.0f - vessel_dark[k]);

  // Diabetic retinopathy lesions, away from the disc.
  if (label == 1) {
    auto place = [&](double max_r, double cx, double cy, double& x, double& y) {
      for (int attempt = 0; attempt < 50; ++attempt) {
        const double a = g.uniform(0, 6.2831853), r = max_r * std::sqrt(g.uniform());
        x = cx + r * std::cos(a);
        y = cy + r * std::sin(a);
        if (std::hypot(x - disc_x, y - disc_y) > 1.6 * rd && std::hypot(x - fcx, y - fcy) < 0.88 * R) return;
      }
    };
    const double px = 1.0;  // one pixel: the floor of every lesion radius
    const int n_ma = static_cast<int>(g.uniform(5, 12));
    for (int i = 0; i < n_ma; ++i) {
      double x, y;
      place(0.85 * R, fcx, fcy, x, y);
      detail::paint_disc(cv, x, y, std::max(0.7 * px, 0.016 * R), {0.30f, 0.03f, 0.03f}, 0.95f);
    }
    const int n_h = static_cast<int>(g.uniform(2, 5));
    for (int i = 0; i < n_h; ++i) {
      double x, y;
      place(0.8 * R, fcx, fcy, x, y);
      const double r = std::max(1.1 * px, g.uniform(0.03, 0.05) * R);
      detail::paint_disc(cv, x, y, r, {0.32f, 0.04f, 0.03f}, 0.9f);
      detail::paint_disc(cv, x + g.uniform(-0.8, 0.8) * r, y + g.uniform(-0.8, 0.8) * r, 0.7 * r, {0.30f, 0.04f, 0.03f}, 0.9f);
    }
    const int n_ex = static_cast<int>(g.uniform(2, 5));
    for (int i = 0; i < n_ex; ++i) {
      double x, y;
      place(0.45 * R, fov_x, fov_y, x, y);
      const int spots = static_cast<int>(g.uniform(1, 4));
      for (int s = 0; s < spots; ++s)
        detail::paint_disc(cv, x + g.uniform(-0.06, 0.06) * R, y + g.uniform(-0.06, 0.06) * R,
                           std::max(0.75 * px, g.uniform(0.015, 0.03) * R), {0.98f, 0.90f, 0.35f}, 0.95f);
    }
  }

  // Cataract: blur (normalised inside the field, so the field's edge stays sharp) and a central veil.
  if (label == 0) {
    const double sigma = S * g.uniform(0.018, 0.03);
    std::vector<float> m = field;
    detail::gaussian_blur(m, S, sigma);
    for (int k = 0; k < 3; ++k) {
      std::vector<float>& p = cv.c[k];
      for (std::size_t i = 0; i < p.size(); ++i) p[i] *= field[i];
      detail::gaussian_blur(p, S, sigma);
      for (std::size_t i = 0; i < p.size(); ++i) p[i] = m[i] > 1e-3f ? p[i] / m[i] : 0.0f;
    }
    const double amount = g.uniform(0.25, 0.5);
    const std::array<float, 3> veil = {0.92f, 0.82f, 0.70f};
    for (int y = 0; y < S; ++y)
      for (int x = 0; x < S; ++x) {
        const double d = std::hypot(x + 0.5 - fcx, y + 0.5 - fcy) / R;
        const float a = static_cast<float>(amount * (0.55 + 0.45 * std::exp(-d * d / 0.3)));
        const std::size_t i = cv.idx(y, x);
        for (int k = 0; k < 3; ++k) cv.c[k][i] += a * (veil[k] - cv.c[k][i]);
      }
  }

  // Photometry: class-independent per-channel mean and std of the fundus, or just a random gain.
  for (int k = 0; k < 3; ++k) {
    std::vector<float>& p = cv.c[k];
    double sw = 0, s1 = 0, s2 = 0;
    for (std::size_t i = 0; i < p.size(); ++i) {
      if (field[i] < 0.5f) continue;
      sw += 1;
      s1 += p[i];
      s2 += static_cast<double>(p[i]) * p[i];
    }
    const double mean = s1 / sw, sd = std::sqrt(std::max(1e-12, s2 / sw - mean * mean));
    static const double lo[3] = {0.45, 0.20, 0.06}, hi[3] = {0.70, 0.38, 0.18};
    const double target_mean = g.uniform(lo[k], hi[k]);
    const double target_sd = target_mean * g.uniform(0.16, 0.28);
    const double gain = g.uniform(0.8, 1.2);
    for (std::size_t i = 0; i < p.size(); ++i) {
      const double v = opt.decorrelate_colour ? target_mean + (p[i] - mean) * (target_sd / sd) : p[i] * gain;
      p[i] = static_cast<float>(v) * field[i];
    }
  }

  ImageU8 out(S, S);
  for (int y = 0; y < S; ++y)
    for (int x = 0; x < S; ++x) {
      const std::size_t i = cv.idx(y, x);
      for (int k = 0; k < 3; ++k)
        out.at(y, x)[k] = to_byte(static_cast<float>(cv.c[k][i] + (opt.noise > 0 ? g.normal(0.0, opt.noise) : 0.0)));
    }
  return out;
}

inline ImageU8 synthetic_fundus(uint64_t seed, int64_t index, const SyntheticOptions& opt = {}) {
  return synthetic_fundus(synthetic_label(index), seed, index, opt);
}

}  // namespace data
}  // namespace retikd
