// retikd/nn/models.hpp — every model, and construction by name for the examples and the trainer:
//
//   Generator gen(seed);
//   nn::ModelOptions opt;  opt.num_classes = 4;  opt.img_size = 128;
//   std::shared_ptr<nn::Model> m = nn::create_model("vit_small", opt, gen);
//
// Names: mobilenet_v2, resnet18, resnet34, efficientnet_b0, vit_tiny, vit_small, vit_base (the ViT ones take
// img_size and patch_size from the options; the CNNs take any image size at forward time) and
// vit_small_patch14_dinov2 (DINOv2 ViT-S/14: patch 14 fixed, img_size the working size, a multiple of 14).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "retikd/nn/models/efficientnet.hpp"
#include "retikd/nn/models/mobilenet_v2.hpp"
#include "retikd/nn/models/model.hpp"
#include "retikd/nn/models/resnet.hpp"
#include "retikd/nn/models/vit.hpp"

namespace retikd {
namespace nn {

struct ModelOptions {
  int64_t num_classes = 4;
  int64_t in_chans = 3;
  int64_t img_size = 224;      // ViT: position-embedding grid (CNNs ignore it)
  int64_t patch_size = 16;     // ViT
  double width_mult = 1.0;     // MobileNetV2, EfficientNet
  double dropout = -1.0;       // classifier / ViT token dropout; < 0: the architecture's default
  double drop_path_rate = -1;  // ViT and EfficientNet stochastic depth; < 0: the default (0 / 0.2)
};

inline std::vector<std::string> model_names() {
  return {"mobilenet_v2", "resnet18", "resnet34", "efficientnet_b0", "vit_tiny", "vit_small", "vit_base",
          "vit_small_patch14_dinov2"};
}

inline std::shared_ptr<Model> create_model(const std::string& name, const ModelOptions& o, Generator& gen) {
  if (name == "mobilenet_v2") {
    MobileNetV2Config c;
    c.num_classes = o.num_classes;
    c.in_chans = o.in_chans;
    c.width_mult = o.width_mult;
    if (o.dropout >= 0) c.dropout = o.dropout;
    return std::make_shared<MobileNetV2>(c, gen);
  }
  if (name == "resnet18" || name == "resnet34") {
    ResNetConfig c = name == "resnet18" ? ResNetConfig::resnet18(o.num_classes) : ResNetConfig::resnet34(o.num_classes);
    c.in_chans = o.in_chans;
    return std::make_shared<ResNet>(c, gen);
  }
  if (name == "efficientnet_b0") {
    EfficientNetConfig c = EfficientNetConfig::b0(o.num_classes);
    c.in_chans = o.in_chans;
    c.width_mult = o.width_mult;
    if (o.dropout >= 0) c.dropout = o.dropout;
    if (o.drop_path_rate >= 0) c.stochastic_depth_prob = o.drop_path_rate;
    return std::make_shared<EfficientNet>(c, gen);
  }
  if (name == "vit_tiny" || name == "vit_small" || name == "vit_base") {
    ViTConfig c = name == "vit_tiny"    ? ViTConfig::tiny(o.num_classes, o.img_size, o.patch_size)
                  : name == "vit_small" ? ViTConfig::small(o.num_classes, o.img_size, o.patch_size)
                                        : ViTConfig::base(o.num_classes, o.img_size, o.patch_size);
    c.in_chans = o.in_chans;
    if (o.dropout >= 0) c.drop_rate = o.dropout;
    if (o.drop_path_rate >= 0) c.drop_path_rate = o.drop_path_rate;
    return std::make_shared<VisionTransformer>(c, gen);
  }
  if (name == "vit_small_patch14_dinov2") {
    RETIKD_CHECK(o.img_size >= 14 && o.img_size % 14 == 0, "create_model: vit_small_patch14_dinov2 needs an image "
                 "size that is a multiple of its 14-pixel patch, got ", o.img_size);
    ViTConfig c = ViTConfig::dinov2_small(o.num_classes, o.img_size);
    c.in_chans = o.in_chans;
    if (o.dropout >= 0) c.drop_rate = o.dropout;
    if (o.drop_path_rate >= 0) c.drop_path_rate = o.drop_path_rate;
    return std::make_shared<VisionTransformer>(c, gen);
  }
  std::string names;
  for (const auto& n : model_names()) names += (names.empty() ? "" : ", ") + n;
  fail("create_model: unknown model '", name, "' (known: ", names, ")");
}

}  // namespace nn
}  // namespace retikd
