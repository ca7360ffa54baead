// retikd/nn/models/mobilenet_v2.hpp — torchvision's MobileNetV2, layer for layer and name for name
// (`features.0.0.weight`, `features.1.conv.0.0.weight`, `features.18.1.running_var`, `classifier.1.weight`).
//
// features.0       Conv2dNormActivation(3 → 32·w, 3×3, stride 2, ReLU6)
// features.1..17   InvertedResidual blocks from the (t, c, n, s) table below
// features.18      Conv2dNormActivation(→ 1280·max(1, w), 1×1, ReLU6)
// classifier       Sequential(Dropout(0.2), Linear(1280, classes))
// At 224 px the stages are 112 (features.0–1), 56 (2–3), 28 (4–6), 14 (7–13) and 7 (14–18) pixels wide;
// taps: every "features.{i}", stage1..stage5 (features.1, .3, .6, .13, .18), "features", "pre_logits".
// Init as torchvision: conv kaiming_normal_(fan_out), BN ones/zeros, Linear N(0, 0.01), biases zero.
#pragma once

#include <cmath>
#include <memory>
#include <string>

#include "retikd/nn/models/model.hpp"

namespace retikd {
namespace nn {

// torchvision's InvertedResidual: [1×1 expand (t ≠ 1)] → 3×3 depthwise → 1×1 linear projection + BN, with
// the identity added when stride is 1 and the channel count is kept. Children: conv.0, conv.1, … .
class InvertedResidual : public Layer, public Traceable {
 public:
  std::shared_ptr<Sequential> conv;

  InvertedResidual(int64_t inp, int64_t oup, int64_t stride, int64_t expand_ratio, Generator& gen,
                   const BatchNormOptions& bn = {})
      : use_res_connect_(stride == 1 && inp == oup) {
    RETIKD_CHECK(stride == 1 || stride == 2, "InvertedResidual: stride must be 1 or 2, got ", stride);
    const int64_t hidden = static_cast<int64_t>(std::lround(static_cast<double>(inp * expand_ratio)));
    conv = register_module("conv", std::make_shared<Sequential>());
    if (expand_ratio != 1) conv->push_back(conv_norm_act(inp, hidden, 1, 1, 1, Activation::relu6, gen, bn));
    conv->push_back(conv_norm_act(hidden, hidden, 3, stride, hidden, Activation::relu6, gen, bn));
    conv->push_back(std::make_shared<Conv2d>(hidden, oup, 1, gen, ops::Conv2dOptions(), false));
    conv->push_back(std::make_shared<BatchNorm2d>(oup, bn.eps, bn.momentum));
  }
  Var forward(const Var& x) override {
    Var y = conv->forward(x);
    return use_res_connect_ ? ops::add(x, y) : y;
  }
  Shape infer_shape(const Shape& in, ShapeTrace* t) const override { return nn::infer_shape(*conv, in, t); }
  bool use_res_connect() const { return use_res_connect_; }

 private:
  bool use_res_connect_;
};

struct MobileNetV2Config {
  int64_t num_classes = 4;
  double width_mult = 1.0;
  int64_t round_nearest = 8;
  double dropout = 0.2;
  int64_t in_chans = 3;
  BatchNormOptions bn;
};

class MobileNetV2 : public ConvNet {
 public:
  std::shared_ptr<Sequential> features, classifier;

  explicit MobileNetV2(const MobileNetV2Config& cfg, Generator& gen) : cfg_(cfg) {
    RETIKD_CHECK(cfg.num_classes > 0, "MobileNetV2: num_classes must be positive, got ", cfg.num_classes);
    RETIKD_CHECK(cfg.width_mult > 0, "MobileNetV2: width_mult must be positive, got ", cfg.width_mult);
    // (expansion t, channels c, repeats n, first stride s) — the paper's Table 2.
    const int64_t setting[7][4] = {{1, 16, 1, 1},  {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                                   {6, 96, 3, 1},  {6, 160, 3, 2}, {6, 320, 1, 1}};
    DeferInit defer;  // initialise() below draws every weight
    const int64_t r = cfg.round_nearest;
    int64_t input_channel = make_divisible(32 * cfg.width_mult, r);
    last_channel_ = make_divisible(1280 * std::max(1.0, cfg.width_mult), r);

    features = register_module("features", std::make_shared<Sequential>());
    features->push_back(conv_norm_act(cfg.in_chans, input_channel, 3, 2, 1, Activation::relu6, gen, cfg.bn));
    for (const auto& row : setting) {
      const int64_t out = make_divisible(static_cast<double>(row[1]) * cfg.width_mult, r);
      for (int64_t i = 0; i < row[2]; ++i) {
        features->push_back(std::make_shared<InvertedResidual>(input_channel, out, i == 0 ? row[3] : 1, row[0], gen,
                                                               cfg.bn));
        input_channel = out;
      }
    }
    features->push_back(conv_norm_act(input_channel, last_channel_, 1, 1, 1, Activation::relu6, gen, cfg.bn));

    classifier = register_module("classifier", std::make_shared<Sequential>());
    classifier->push_back(std::make_shared<Dropout>(cfg.dropout, noise_));
    classifier->push_back(std::make_shared<Linear>(last_channel_, cfg.num_classes, gen));

    initialise(gen);
    for (std::size_t i = 0; i < features->size(); ++i)
      stages_.push_back({"features." + std::to_string(i), {(*features)[i]}});
    head_ = classifier;
    finish_stages(cfg.in_chans, cfg.num_classes);
  }

  std::string arch() const override { return "mobilenet_v2"; }
  int64_t last_channel() const { return last_channel_; }
  const MobileNetV2Config& config() const { return cfg_; }

 private:
  void initialise(Generator& gen) {
    for_each_module(*this, [&](Module& m) {
      if (auto* c = dynamic_cast<Conv2d*>(&m)) {
        kaiming_normal_(c->weight.mutable_value(), gen, 0.0, /*fan_out=*/true);
        if (c->bias.defined()) c->bias.mutable_value().fill_(0.0);
      } else if (auto* l = dynamic_cast<Linear*>(&m)) {
        normal_(l->weight.mutable_value(), 0.0, 0.01, gen);
        if (l->bias.defined()) l->bias.mutable_value().fill_(0.0);
      }
    });
  }

  MobileNetV2Config cfg_;
  int64_t last_channel_ = 0;
};

}  // namespace nn
}  // namespace retikd
