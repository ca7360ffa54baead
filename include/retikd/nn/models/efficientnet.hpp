// retikd/nn/models/efficientnet.hpp — torchvision's EfficientNet (B0 by default; width / depth multipliers
// for B1–B4), name for name: `features.0.0.weight`, `features.1.0.block.0.0.weight` (depthwise),
// `features.1.0.block.1.fc1.weight` (squeeze-excitation), `features.2.0.block.0.0.weight` (expand),
// `features.8.0.weight`, `classifier.1.weight`.
//
// features.0       Conv2dNormActivation(3 → 32, 3×3, stride 2, SiLU)
// features.1..7    stages of MBConv blocks (expand 1×1 → depthwise k×k → SE → project 1×1 + BN; identity
//                  with stochastic depth when stride 1 and channels kept; drop prob 0.2·block/16)
// features.8       Conv2dNormActivation(320 → 1280, 1×1, SiLU)
// classifier       Sequential(Dropout(0.2), Linear(1280, classes))
// Taps: every "features.{i}" (a whole stage), stage1..stage5 (features.1, .2, .3, .5, .8), "features",
// "pre_logits". Init as torchvision: conv kaiming_normal_(fan_out), BN ones/zeros, Linear U(±1/√classes).
// BatchNorm eps 1e-5, momentum 0.1 (torchvision's B0–B4; B5+ use 1e-3 / 0.01 — set cfg.bn).
#pragma once

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "retikd/nn/models/model.hpp"

namespace retikd {
namespace nn {

struct MBConvConfig {
  int64_t expand_ratio, kernel, stride, input_channels, out_channels, num_layers;
};

// torchvision's MBConv; children: block (Sequential), stochastic_depth.
class MBConv : public Layer, public Traceable {
 public:
  std::shared_ptr<Sequential> block;

  MBConv(const MBConvConfig& c, double stochastic_depth_prob, Generator& gen, NoiseSource noise,
         const BatchNormOptions& bn = {})
      : use_res_connect_(c.stride == 1 && c.input_channels == c.out_channels) {
    RETIKD_CHECK(c.stride == 1 || c.stride == 2, "MBConv: stride must be 1 or 2, got ", c.stride);
    const int64_t expanded = make_divisible(static_cast<double>(c.input_channels * c.expand_ratio), 8);
    block = register_module("block", std::make_shared<Sequential>());
    if (expanded != c.input_channels)
      block->push_back(conv_norm_act(c.input_channels, expanded, 1, 1, 1, Activation::silu, gen, bn));
    block->push_back(conv_norm_act(expanded, expanded, c.kernel, c.stride, expanded, Activation::silu, gen, bn));
    const int64_t squeeze = std::max<int64_t>(1, c.input_channels / 4);
    block->push_back(std::make_shared<SqueezeExcitation>(expanded, squeeze, gen, Activation::silu));
    block->push_back(conv_norm_act(expanded, c.out_channels, 1, 1, 1, Activation::identity, gen, bn));
    stochastic_depth_ = register_module("stochastic_depth", std::make_shared<DropPath>(stochastic_depth_prob, noise));
  }
  Var forward(const Var& x) override {
    Var y = block->forward(x);
    if (!use_res_connect_) return y;
    return ops::add(stochastic_depth_->forward(y), x);
  }
  Shape infer_shape(const Shape& in, ShapeTrace* t) const override { return nn::infer_shape(*block, in, t); }
  bool use_res_connect() const { return use_res_connect_; }

 private:
  bool use_res_connect_;
  std::shared_ptr<DropPath> stochastic_depth_;
};

struct EfficientNetConfig {
  int64_t num_classes = 4;
  double width_mult = 1.0;
  double depth_mult = 1.0;
  double dropout = 0.2;
  double stochastic_depth_prob = 0.2;
  int64_t in_chans = 3;
  BatchNormOptions bn;

  static EfficientNetConfig b0(int64_t classes = 4) {
    EfficientNetConfig c;
    c.num_classes = classes;
    return c;
  }
};

class EfficientNet : public ConvNet {
 public:
  std::shared_ptr<Sequential> features, classifier;

  EfficientNet(const EfficientNetConfig& cfg, Generator& gen) : cfg_(cfg) {
    RETIKD_CHECK(cfg.num_classes > 0, "EfficientNet: num_classes must be positive, got ", cfg.num_classes);
    RETIKD_CHECK(cfg.width_mult > 0 && cfg.depth_mult > 0, "EfficientNet: width and depth multipliers must be "
                 "positive");
    // (expand, kernel, stride, in, out, layers) at width / depth 1.0 — B0.
    const int64_t base[7][6] = {{1, 3, 1, 32, 16, 1},  {6, 3, 2, 16, 24, 2},  {6, 5, 2, 24, 40, 2},
                                {6, 3, 2, 40, 80, 3},  {6, 5, 1, 80, 112, 3}, {6, 5, 2, 112, 192, 4},
                                {6, 3, 1, 192, 320, 1}};
    DeferInit defer;  // every weight is drawn below
    std::vector<MBConvConfig> setting;
    for (const auto& r : base)
      setting.push_back({r[0], r[1], r[2], width(r[3]), width(r[4]),
                         static_cast<int64_t>(std::ceil(static_cast<double>(r[5]) * cfg.depth_mult))});

    features = register_module("features", std::make_shared<Sequential>());
    features->push_back(conv_norm_act(cfg.in_chans, setting[0].input_channels, 3, 2, 1, Activation::silu, gen, cfg.bn));
    int64_t total = 0;
    for (const auto& s : setting) total += s.num_layers;
    int64_t block_id = 0;
    for (const auto& s : setting) {
      auto stage = std::make_shared<Sequential>();
      for (int64_t i = 0; i < s.num_layers; ++i) {
        MBConvConfig b = s;
        if (i > 0) {
          b.input_channels = b.out_channels;
          b.stride = 1;
        }
        const double sd = cfg.stochastic_depth_prob * static_cast<double>(block_id) / static_cast<double>(total);
        stage->push_back(std::make_shared<MBConv>(b, sd, gen, noise_, cfg.bn));
        ++block_id;
      }
      features->push_back(stage);
    }
    last_channel_ = 4 * setting.back().out_channels;
    features->push_back(conv_norm_act(setting.back().out_channels, last_channel_, 1, 1, 1, Activation::silu, gen,
                                      cfg.bn));
    register_module("avgpool", std::make_shared<AdaptiveAvgPool2d>(1, 1));
    classifier = register_module("classifier", std::make_shared<Sequential>());
    classifier->push_back(std::make_shared<Dropout>(cfg.dropout, noise_));
    classifier->push_back(std::make_shared<Linear>(last_channel_, cfg.num_classes, gen));

    for_each_module(*this, [&](Module& m) {
      if (auto* c = dynamic_cast<Conv2d*>(&m)) {
        kaiming_normal_(c->weight.mutable_value(), gen, 0.0, /*fan_out=*/true);
        if (c->bias.defined()) c->bias.mutable_value().fill_(0.0);
      } else if (auto* l = dynamic_cast<Linear*>(&m)) {
        const double r = 1.0 / std::sqrt(static_cast<double>(l->out_features()));
        uniform_(l->weight.mutable_value(), -r, r, gen);
        if (l->bias.defined()) l->bias.mutable_value().fill_(0.0);
      }
    });

    for (std::size_t i = 0; i < features->size(); ++i)
      stages_.push_back({"features." + std::to_string(i), {(*features)[i]}});
    head_ = classifier;
    finish_stages(cfg.in_chans, cfg.num_classes);
  }

  std::string arch() const override {
    return cfg_.width_mult == 1.0 && cfg_.depth_mult == 1.0 ? "efficientnet_b0" : "efficientnet";
  }
  int64_t last_channel() const { return last_channel_; }
  const EfficientNetConfig& config() const { return cfg_; }

 private:
  int64_t width(int64_t channels) const {
    return make_divisible(static_cast<double>(channels) * cfg_.width_mult, 8);
  }
  EfficientNetConfig cfg_;
  int64_t last_channel_ = 0;
};

}  // namespace nn
}  // namespace retikd
