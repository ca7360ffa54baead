// retikd/nn/models/resnet.hpp — torchvision's ResNet with BasicBlocks (ResNet18: [2, 2, 2, 2], ResNet34:
// [3, 4, 6, 3]), name for name: `conv1.weight`, `bn1.*`, `layer1.0.conv1.weight`,
// `layer2.0.downsample.0.weight`, `layer2.0.downsample.1.running_mean`, `fc.weight`.
//
// Taps: "stem" (after conv1/bn1/relu, stride 2), "maxpool" (stride 4), "layer1".."layer4" (strides 4–32),
// stage1..stage5 (stem, layer1, layer2, layer3, layer4), "features" (= layer4), "pre_logits".
// Init as torchvision: conv kaiming_normal_(fan_out, relu), BN ones/zeros, fc PyTorch's Linear default;
// zero_init_residual zeroes each block's last BN weight.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "retikd/nn/models/model.hpp"

namespace retikd {
namespace nn {

// conv3×3(stride) → bn → relu → conv3×3 → bn, plus the identity (or a 1×1 strided conv + BN downsample).
class BasicBlock : public Layer, public Traceable {
 public:
  std::shared_ptr<Conv2d> conv1, conv2;
  std::shared_ptr<BatchNorm2d> bn1, bn2;
  std::shared_ptr<Sequential> downsample;  // null when the shapes already match

  BasicBlock(int64_t inplanes, int64_t planes, int64_t stride, Generator& gen, const BatchNormOptions& bn = {}) {
    const auto conv3 = ops::Conv2dOptions().with_stride(stride).with_padding(1);
    conv1 = register_module("conv1", std::make_shared<Conv2d>(inplanes, planes, 3, gen, conv3, false));
    bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(planes, bn.eps, bn.momentum));
    relu_ = register_module("relu", std::make_shared<ReLU>());
    conv2 = register_module("conv2", std::make_shared<Conv2d>(planes, planes, 3, gen,
                                                              ops::Conv2dOptions().with_padding(1), false));
    bn2 = register_module("bn2", std::make_shared<BatchNorm2d>(planes, bn.eps, bn.momentum));
    if (stride != 1 || inplanes != planes) {
      downsample = register_module("downsample", std::make_shared<Sequential>());
      downsample->push_back(std::make_shared<Conv2d>(inplanes, planes, 1, gen,
                                                     ops::Conv2dOptions().with_stride(stride), false));
      downsample->push_back(std::make_shared<BatchNorm2d>(planes, bn.eps, bn.momentum));
    }
  }
  Var forward(const Var& x) override {
    Var y = relu_->forward(bn1->forward(conv1->forward(x)));
    y = bn2->forward(conv2->forward(y));
    const Var identity = downsample ? downsample->forward(x) : x;
    return relu_->forward(ops::add(y, identity));
  }
  Shape infer_shape(const Shape& in, ShapeTrace* t) const override {
    Shape y = conv2->infer_shape(conv1->infer_shape(in, t), t);
    if (downsample) nn::infer_shape(*downsample, in, t);
    return y;
  }

 private:
  std::shared_ptr<ReLU> relu_;
};

struct ResNetConfig {
  std::vector<int64_t> layers{2, 2, 2, 2};  // blocks per stage: ResNet18
  int64_t num_classes = 4;
  int64_t in_chans = 3;
  int64_t width = 64;  // channels of conv1 and layer1 (doubling per stage)
  bool zero_init_residual = false;
  BatchNormOptions bn;

  static ResNetConfig resnet18(int64_t classes = 4) {
    ResNetConfig c;
    c.num_classes = classes;
    return c;
  }
  static ResNetConfig resnet34(int64_t classes = 4) {
    ResNetConfig c;
    c.layers = {3, 4, 6, 3};
    c.num_classes = classes;
    return c;
  }
};

class ResNet : public ConvNet {
 public:
  std::shared_ptr<Conv2d> conv1;
  std::shared_ptr<BatchNorm2d> bn1;
  std::vector<std::shared_ptr<Sequential>> layer;  // layer[0] is "layer1"
  std::shared_ptr<Linear> fc;

  ResNet(const ResNetConfig& cfg, Generator& gen) : cfg_(cfg) {
    RETIKD_CHECK(cfg.layers.size() == 4, "ResNet: expected 4 stage depths, got ", cfg.layers.size());
    RETIKD_CHECK(cfg.num_classes > 0 && cfg.width > 0, "ResNet: num_classes and width must be positive");
    DeferInit defer;  // every weight is drawn below
    conv1 = register_module("conv1", std::make_shared<Conv2d>(cfg.in_chans, cfg.width, 7, gen,
                                                               ops::Conv2dOptions().with_stride(2).with_padding(3),
                                                               false));
    bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(cfg.width, cfg.bn.eps, cfg.bn.momentum));
    auto relu = register_module("relu", std::make_shared<ReLU>());
    auto maxpool = register_module("maxpool", std::make_shared<MaxPool2d>(3, 2, 1));
    int64_t inplanes = cfg.width;
    for (int s = 0; s < 4; ++s) {
      const int64_t planes = cfg.width << s;
      auto seq = register_module("layer" + std::to_string(s + 1), std::make_shared<Sequential>());
      for (int64_t b = 0; b < cfg.layers[s]; ++b) {
        seq->push_back(std::make_shared<BasicBlock>(inplanes, planes, (b == 0 && s > 0) ? 2 : 1, gen, cfg.bn));
        inplanes = planes;
      }
      layer.push_back(seq);
    }
    register_module("avgpool", std::make_shared<AdaptiveAvgPool2d>(1, 1));
    fc = register_module("fc", std::make_shared<Linear>(inplanes, cfg.num_classes, gen));
    fc->reset_parameters(gen);  // torchvision keeps nn.Linear's default for fc

    for_each_module(*this, [&](Module& m) {
      if (auto* c = dynamic_cast<Conv2d*>(&m)) kaiming_normal_(c->weight.mutable_value(), gen, 0.0, true, "relu");
    });
    if (cfg.zero_init_residual)
      for (auto& seq : layer)
        for (std::size_t i = 0; i < seq->size(); ++i)
          std::dynamic_pointer_cast<BasicBlock>((*seq)[i])->bn2->weight.mutable_value().fill_(0.0);

    stages_.push_back({"stem", {conv1, bn1, relu}});
    stages_.push_back({"maxpool", {maxpool}});
    for (int s = 0; s < 4; ++s) stages_.push_back({"layer" + std::to_string(s + 1), {layer[s]}});
    head_ = fc;
    finish_stages(cfg.in_chans, cfg.num_classes);
  }

  std::string arch() const override {
    if (cfg_.width == 64 && cfg_.layers == std::vector<int64_t>{2, 2, 2, 2}) return "resnet18";
    if (cfg_.width == 64 && cfg_.layers == std::vector<int64_t>{3, 4, 6, 3}) return "resnet34";
    return "resnet";
  }
  const ResNetConfig& config() const { return cfg_; }

 private:
  ResNetConfig cfg_;
};

}  // namespace nn
}  // namespace retikd
