// retikd/data/augment.hpp — a training recipe's loader augmentation as plain data (LoaderAugment: flips, rotation,
// colour jitter, ImageNet normalisation), the transform chain it stands for, the one-line description that
// logs, reports and checkpoints record, and its inverse (parse_augment: what `distill_retina --student-augment`
// reads, so a user writes an augmentation the way the log prints it). It lives in data/ because the loader
// applies it; the distillation presets (kd/distiller.hpp) and the pipeline (pipeline/presets.hpp) only carry it.
#pragma once

#include <string>
#include <vector>

#include "retikd/core/cli_args.hpp"
#include "retikd/core/error.hpp"
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

// The inverse of augment_text: "none", or items separated by commas from "hflip", "vflip", "rotation DEG"
// (0 < DEG <= 180) and "jitter B/C/S/H" (brightness, contrast, saturation in [0, 1], hue in [0, 0.5]); each item at
// most once. Normalisation is not part of the text: it is `imagenet_normalize` as given. Anything else is an
// error that quotes the text, never a silently ignored item.
inline LoaderAugment parse_augment(const std::string& text, bool imagenet_normalize = true) {
  LoaderAugment a;
  a.imagenet_normalize = imagenet_normalize;
  auto trim = [](const std::string& t) {
    const std::size_t b = t.find_first_not_of(' '), e = t.find_last_not_of(' ');
    return b == std::string::npos ? std::string() : t.substr(b, e - b + 1);
  };
  auto bad = [&text](const std::string& why) {
    fail("augmentation '", text, "': ", why, " (expected none, or a comma-separated list of hflip, vflip, ",
         "rotation DEG, jitter B/C/S/H; e.g. \"hflip, vflip, rotation 12, jitter 0.1/0.1/0.1/0.05\")");
  };
  auto real = [&bad](const std::string& t, double lo, double hi, const char* what) {
    double v = 0;
    if (!cli::parse_double(t, v) || v < lo || v > hi)
      bad(std::string(what) + " '" + t + "' is not a number in [" + io::format_double(lo) + ", " +
          io::format_double(hi) + "]");
    return v;
  };
  if (trim(text) == "none") return a;
  bool seen_rotation = false, seen_jitter = false;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = text.find(',', start);
    const std::string item = trim(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    start = comma == std::string::npos ? text.size() + 1 : comma + 1;
    if (item.empty()) bad("an empty item");
    const std::size_t space = item.find(' ');
    const std::string word = item.substr(0, space), arg = space == std::string::npos ? "" : trim(item.substr(space));
    if (word == "hflip" || word == "vflip") {
      bool& flag = word == "hflip" ? a.hflip : a.vflip;
      if (!arg.empty() || flag) bad("'" + item + "': " + word + (flag ? " twice" : " takes no value"));
      flag = true;
    } else if (word == "rotation") {
      if (seen_rotation) bad("rotation twice");
      seen_rotation = true;
      a.rotation_degrees = real(arg, 1e-9, 180.0, "rotation");
    } else if (word == "jitter") {
      if (seen_jitter) bad("jitter twice");
      seen_jitter = true;
      std::vector<std::string> parts;
      std::size_t from = 0;
      for (std::size_t slash; (slash = arg.find('/', from)) != std::string::npos; from = slash + 1)
        parts.push_back(arg.substr(from, slash - from));
      parts.push_back(arg.substr(from));
      if (parts.size() != 4) bad("jitter takes four values B/C/S/H, got '" + arg + "'");
      a.brightness = real(parts[0], 0.0, 1.0, "jitter brightness");
      a.contrast = real(parts[1], 0.0, 1.0, "jitter contrast");
      a.saturation = real(parts[2], 0.0, 1.0, "jitter saturation");
      a.hue = real(parts[3], 0.0, 0.5, "jitter hue");
    } else {
      bad("unknown item '" + item + "'");
    }
  }
  return a;
}

}  // namespace data
}  // namespace retikd
