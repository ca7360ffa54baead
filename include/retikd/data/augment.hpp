// retikd/data/augment.hpp — a training recipe's loader augmentation as plain data (LoaderAugment: flips, rotation,
// colour jitter, ImageNet normalisation), the transform chain it stands for, and the one-line description that
// logs, reports and checkpoints record. It lives in data/ because the loader applies it; the distillation presets
// (kd/distiller.hpp) and the pipeline (pipeline/presets.hpp) only carry it.
#pragma once

#include <string>
#include <vector>

#include "retikd/data/transforms.hpp"
#include "retikd/io/json.hpp"

namespace retikd {
namespace data {

struct LoaderAugment {
  bool hflip = false, vflip = false;
  double rotation_degrees = 0.0;
  double brightness = 0.0, contrast = 0.0, saturation = 0.0, hue = 0.0;  // ColorJitter
  bool imagenet_normalize = true;
};

// The transforms in the order the loader applies them: flips, rotation, jitter, normalisation.
inline TransformPtr augment_transform(const LoaderAugment& a) {
  std::vector<TransformPtr> ts;
  if (a.hflip) ts.push_back(make<RandomHorizontalFlip>());
  if (a.vflip) ts.push_back(make<RandomVerticalFlip>());
  if (a.rotation_degrees > 0) ts.push_back(make<RandomRotation>(a.rotation_degrees));
  if (a.brightness > 0 || a.contrast > 0 || a.saturation > 0 || a.hue > 0)
    ts.push_back(make<ColorJitter>(a.brightness, a.contrast, a.saturation, a.hue));
  if (a.imagenet_normalize) ts.push_back(make<Normalize>());
  return compose(ts);
}

// "hflip, vflip, rotation 12, jitter 0.1/0.1/0.1/0.05" or "none" (normalisation is not listed). Checkpoints store
// it as part of a stage's configuration, so its wording is part of the resume contract: do not change it.
inline std::string augment_text(const LoaderAugment& a) {
  std::string s;
  auto add = [&](const std::string& t) { s += (s.empty() ? "" : ", ") + t; };
  auto num = [](double v) { return io::format_double(v); };
  if (a.hflip) add("hflip");
  if (a.vflip) add("vflip");
  if (a.rotation_degrees > 0) add("rotation " + num(a.rotation_degrees));
  if (a.brightness > 0 || a.contrast > 0 || a.saturation > 0 || a.hue > 0)
    add("jitter " + num(a.brightness) + "/" + num(a.contrast) + "/" + num(a.saturation) + "/" + num(a.hue));
  return s.empty() ? "none" : s;
}

}  // namespace data
}  // namespace retikd
