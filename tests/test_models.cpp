// tests/test_models.cpp — the four models: exact parameter counts (torchvision's / timm's), state-dict names
// spot-checked against theirs, every tap's shape at 224 px by shape inference (and ViT at 128 px with a
// resized position embedding), forward shapes agreeing with the inference, taps consistent with each other
// and with the logits, early stopping, gradients flowing through a student's taps, MACs against the
// published torchvision figures, state-dict round trips, and a short training run that lowers the loss.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <retikd/core/random.hpp>
#include <retikd/nn/models.hpp>
#include <retikd/ops/loss.hpp>
#include <retikd/optim/optim.hpp>
#include "test_util.hpp"

using namespace retikd;
using namespace retikd::test;

namespace {

std::map<std::string, Shape> state_shapes(const nn::Module& m) {
  std::map<std::string, Shape> out;
  for (const auto& kv : m.state_dict()) out[kv.first] = kv.second.shape();
  return out;
}

std::map<std::string, Shape> tap_shapes(const nn::Model& m, int64_t h, int64_t w, int64_t batch = 1) {
  std::map<std::string, Shape> out;
  for (const auto& t : m.tap_names(h, w, batch)) out[t.name] = t.shape;
  return out;
}

std::vector<std::string> names_of(const std::vector<nn::TapInfo>& taps) {
  std::vector<std::string> v;
  for (const auto& t : taps) v.push_back(t.name);
  return v;
}

Tensor param(const nn::Module& m, const std::string& name) {
  for (const auto& p : m.named_parameters())
    if (p.first == name) return p.second.value();
  FAIL("no parameter " << name);
  return Tensor();
}

std::shared_ptr<nn::Model> build(const std::string& name, int64_t classes = 4, uint64_t seed = 1) {
  Generator g(seed);
  nn::ModelOptions o;
  o.num_classes = classes;
  return nn::create_model(name, o, g);
}

// ViT-B/16 allocates 343 MB and takes about two seconds to initialise: build it once.
nn::VisionTransformer& vit_base() {
  static std::shared_ptr<nn::Model> m = build("vit_base");
  return dynamic_cast<nn::VisionTransformer&>(*m);
}

// A CPU-sized ViT: 32 px, patch 8 (4 × 4 grid, 17 tokens), width 32, 3 blocks of 4 heads.
nn::ViTConfig small_vit_config() {
  nn::ViTConfig c;
  c.img_size = 32;
  c.patch_size = 8;
  c.embed_dim = 32;
  c.depth = 3;
  c.num_heads = 4;
  c.num_classes = 4;
  return c;
}

// Every tap a model lists, run through forward_with_taps: each Var has the shape tap_names predicted.
void check_forward_matches_inference(nn::Model& m, int64_t h, int64_t w, int64_t batch) {
  const auto info = m.tap_names(h, w, batch);
  NoGradGuard no_grad;
  nn::ModelOutput o = m.forward_with_taps(Var(randn32({batch, m.in_chans(), h, w}, 5)), names_of(info));
  for (const auto& t : info) CHECK_MESSAGE(o.tap(t.name).shape() == t.shape, m.arch() << " tap " << t.name);
  CHECK(o.logits.shape() == Shape{batch, m.num_classes()});
}

}  // namespace

TEST_CASE("parameter counts are exactly torchvision's and timm's") {
  // 4 classes (the retinal task) and 1000 classes (the ImageNet models' published counts).
  CHECK(build("mobilenet_v2")->num_parameters() == 2228996);
  CHECK(build("mobilenet_v2", 1000)->num_parameters() == 3504872);
  CHECK(build("resnet18")->num_parameters() == 11178564);
  CHECK(build("resnet18", 1000)->num_parameters() == 11689512);
  CHECK(build("resnet34", 1000)->num_parameters() == 21797672);
  CHECK(build("efficientnet_b0")->num_parameters() == 4012672);
  CHECK(build("efficientnet_b0", 1000)->num_parameters() == 5288548);
  CHECK(vit_base().num_parameters() == 85801732);
  CHECK(build("vit_tiny")->num_parameters() == 5525188);
  CHECK(build("vit_tiny", 1000)->num_parameters() == 5717416);
  CHECK(build("vit_small")->num_parameters() == 21667204);
  // The 1000-class ViT-B/16 (86,567,656) differs only by the head: 996 more rows of 768 weights + 1 bias.
  CHECK(vit_base().num_parameters() + 996 * 769 == 86567656);

  Generator g(2);
  nn::MobileNetV2Config half;
  half.width_mult = 0.5;
  half.num_classes = 1000;
  CHECK(nn::MobileNetV2(half, g).num_parameters() == 1968680);
}

TEST_CASE("initialisation follows torchvision / timm and leaves no weight undrawn") {
  auto stats = [](const Tensor& t, double& mean, double& sd, double& maxabs) {
    const auto v = t.to_vector<double>();
    mean = sd = maxabs = 0;
    for (double e : v) mean += e / double(v.size());
    for (double e : v) {
      sd += (e - mean) * (e - mean) / double(v.size());
      maxabs = std::max(maxabs, std::fabs(e));
    }
    sd = std::sqrt(sd);
  };
  for (const std::string name : {"mobilenet_v2", "resnet18", "efficientnet_b0", "vit_tiny"}) {
    auto m = build(name);
    for (const auto& p : m->named_parameters()) {
      if (p.second.dim() < 2) continue;  // norm weights are ones, biases zeros
      double mean, sd, mx;
      stats(p.second.value(), mean, sd, mx);
      CHECK_MESSAGE(mx > 0, name << " " << p.first << " was never initialised");
    }
  }
  double mean, sd, mx;
  // MobileNetV2 / EfficientNet / ResNet convolutions: kaiming_normal_(fan_out): sd = √(2 / (out·kh·kw)).
  auto mnv2 = build("mobilenet_v2");
  stats(param(*mnv2, "features.18.0.weight"), mean, sd, mx);
  CHECK(sd == doctest::Approx(std::sqrt(2.0 / 1280)).epsilon(0.02));
  stats(param(*mnv2, "classifier.1.weight"), mean, sd, mx);  // N(0, 0.01)
  CHECK(sd == doctest::Approx(0.01).epsilon(0.1));
  auto r18 = build("resnet18");
  stats(param(*r18, "layer3.0.conv1.weight"), mean, sd, mx);
  CHECK(sd == doctest::Approx(std::sqrt(2.0 / (256 * 9))).epsilon(0.02));
  stats(param(*r18, "fc.weight"), mean, sd, mx);  // nn.Linear default: U(±1/√512)
  CHECK(mx <= 1 / std::sqrt(512.0));
  CHECK(mx > 0.9 / std::sqrt(512.0));
  auto eff = build("efficientnet_b0");
  stats(param(*eff, "classifier.1.weight"), mean, sd, mx);  // U(±1/√classes)
  CHECK(mx <= 0.5);
  CHECK(sd == doctest::Approx(0.5 / std::sqrt(3.0)).epsilon(0.1));
  CHECK(param(*eff, "features.1.0.block.1.fc1.bias").to_vector<double>() == std::vector<double>(8, 0.0));
  auto vit = build("vit_tiny");
  stats(param(*vit, "blocks.3.mlp.fc1.weight"), mean, sd, mx);  // trunc_normal(0.02)
  CHECK(sd == doctest::Approx(0.02).epsilon(0.02));
  stats(param(*vit, "pos_embed"), mean, sd, mx);
  CHECK(sd == doctest::Approx(0.02).epsilon(0.05));
  stats(param(*vit, "cls_token"), mean, sd, mx);  // N(0, 1e-6)
  CHECK(mx < 1e-5);
  CHECK(mx > 0);
  stats(param(*vit, "patch_embed.proj.weight"), mean, sd, mx);  // nn.Conv2d default: U(±1/√768)
  CHECK(mx <= 1 / std::sqrt(768.0));
  CHECK(param(*vit, "blocks.0.attn.qkv.bias").to_vector<double>() == std::vector<double>(576, 0.0));
}

TEST_CASE("state-dict names and shapes line up with torchvision and timm") {
  SUBCASE("MobileNetV2") {
    auto m = build("mobilenet_v2");
    const auto s = state_shapes(*m);
    const std::map<std::string, Shape> expect{
        {"features.0.0.weight", {32, 3, 3, 3}},          {"features.0.1.running_var", {32}},
        {"features.0.1.num_batches_tracked", {}},        {"features.1.conv.0.0.weight", {32, 1, 3, 3}},
        {"features.1.conv.1.weight", {16, 32, 1, 1}},    {"features.1.conv.2.running_mean", {16}},
        {"features.2.conv.0.0.weight", {96, 16, 1, 1}},  {"features.2.conv.1.0.weight", {96, 1, 3, 3}},
        {"features.2.conv.2.weight", {24, 96, 1, 1}},    {"features.2.conv.3.bias", {24}},
        {"features.13.conv.1.0.weight", {576, 1, 3, 3}}, {"features.17.conv.2.weight", {320, 960, 1, 1}},
        {"features.18.0.weight", {1280, 320, 1, 1}},     {"features.18.1.weight", {1280}},
        {"classifier.1.weight", {4, 1280}},              {"classifier.1.bias", {4}}};
    for (const auto& kv : expect) {
      REQUIRE_MESSAGE(s.count(kv.first), kv.first);
      CHECK_MESSAGE(s.at(kv.first) == kv.second, kv.first);
    }
    CHECK(m->state_dict().size() == 314);  // 52 convs, 52 batch norms × 5 entries, the classifier's 2
    CHECK(m->state_dict().front().first == "features.0.0.weight");
    CHECK(m->state_dict().back().first == "classifier.1.bias");
    CHECK(s.count("features.1.conv.3.weight") == 0);  // t = 1 blocks have no expansion layer
  }
  SUBCASE("ResNet18") {
    auto m = build("resnet18");
    const auto s = state_shapes(*m);
    CHECK(m->state_dict().size() == 122);  // 62 parameters + 20 batch norms × 3 buffers
    CHECK(m->parameters().size() == 62);
    const std::map<std::string, Shape> expect{
        {"conv1.weight", {64, 3, 7, 7}},           {"bn1.running_mean", {64}},
        {"layer1.0.conv1.weight", {64, 64, 3, 3}}, {"layer1.1.bn2.bias", {64}},
        {"layer2.0.conv1.weight", {128, 64, 3, 3}}, {"layer2.0.downsample.0.weight", {128, 64, 1, 1}},
        {"layer2.0.downsample.1.num_batches_tracked", {}}, {"layer4.1.conv2.weight", {512, 512, 3, 3}},
        {"fc.weight", {4, 512}},                   {"fc.bias", {4}}};
    for (const auto& kv : expect) {
      REQUIRE_MESSAGE(s.count(kv.first), kv.first);
      CHECK_MESSAGE(s.at(kv.first) == kv.second, kv.first);
    }
    CHECK(s.count("layer1.0.downsample.0.weight") == 0);
  }
  SUBCASE("EfficientNet-B0") {
    auto m = build("efficientnet_b0");
    const auto s = state_shapes(*m);
    const std::map<std::string, Shape> expect{
        {"features.0.0.weight", {32, 3, 3, 3}},
        {"features.1.0.block.0.0.weight", {32, 1, 3, 3}},
        {"features.1.0.block.1.fc1.weight", {8, 32, 1, 1}},
        {"features.1.0.block.1.fc2.bias", {32}},
        {"features.1.0.block.2.0.weight", {16, 32, 1, 1}},
        {"features.1.0.block.2.1.running_var", {16}},
        {"features.2.0.block.0.0.weight", {96, 16, 1, 1}},
        {"features.2.0.block.1.0.weight", {96, 1, 3, 3}},
        {"features.2.0.block.2.fc1.weight", {4, 96, 1, 1}},
        {"features.2.1.block.2.fc1.weight", {6, 144, 1, 1}},
        {"features.3.0.block.1.0.weight", {144, 1, 5, 5}},
        {"features.6.3.block.3.0.weight", {192, 1152, 1, 1}},
        {"features.7.0.block.3.0.weight", {320, 1152, 1, 1}},
        {"features.8.0.weight", {1280, 320, 1, 1}},
        {"classifier.1.weight", {4, 1280}}};
    for (const auto& kv : expect) {
      REQUIRE_MESSAGE(s.count(kv.first), kv.first);
      CHECK_MESSAGE(s.at(kv.first) == kv.second, kv.first);
    }
    CHECK(s.count("features.7.1.block.0.0.weight") == 0);  // one block in the last stage
  }
  SUBCASE("ViT (timm)") {
    auto m = build("vit_tiny");
    const auto s = state_shapes(*m);
    CHECK(m->state_dict().size() == 152);
    const std::map<std::string, Shape> expect{
        {"cls_token", {1, 1, 192}},          {"pos_embed", {1, 197, 192}},
        {"patch_embed.proj.weight", {192, 3, 16, 16}}, {"patch_embed.proj.bias", {192}},
        {"blocks.0.norm1.weight", {192}},    {"blocks.0.attn.qkv.weight", {576, 192}},
        {"blocks.0.attn.qkv.bias", {576}},   {"blocks.0.attn.proj.weight", {192, 192}},
        {"blocks.5.norm2.bias", {192}},      {"blocks.11.mlp.fc1.weight", {768, 192}},
        {"blocks.11.mlp.fc2.bias", {192}},   {"norm.weight", {192}},
        {"head.weight", {4, 192}},           {"head.bias", {4}}};
    for (const auto& kv : expect) {
      REQUIRE_MESSAGE(s.count(kv.first), kv.first);
      CHECK_MESSAGE(s.at(kv.first) == kv.second, kv.first);
    }
    CHECK(m->state_dict().front().first == "cls_token");
  }
}

TEST_CASE("tap shapes at 224 px by shape inference") {
  SUBCASE("MobileNetV2: the 14×14 stage and the 7×7 features") {
    auto m = build("mobilenet_v2");
    const auto t = tap_shapes(*m, 224, 224);
    CHECK(t.at("features.0") == Shape{1, 32, 112, 112});
    CHECK(t.at("features.1") == Shape{1, 16, 112, 112});
    CHECK(t.at("features.3") == Shape{1, 24, 56, 56});
    CHECK(t.at("features.6") == Shape{1, 32, 28, 28});
    CHECK(t.at("features.10") == Shape{1, 64, 14, 14});
    CHECK(t.at("features.13") == Shape{1, 96, 14, 14});
    CHECK(t.at("features.17") == Shape{1, 320, 7, 7});
    CHECK(t.at("features.18") == Shape{1, 1280, 7, 7});
    CHECK(t.at("stage1") == Shape{1, 16, 112, 112});
    CHECK(t.at("stage2") == Shape{1, 24, 56, 56});
    CHECK(t.at("stage3") == Shape{1, 32, 28, 28});
    CHECK(t.at("stage4") == Shape{1, 96, 14, 14});
    CHECK(t.at("stage5") == Shape{1, 1280, 7, 7});
    CHECK(t.at("features") == Shape{1, 1280, 7, 7});
    CHECK(t.at("pre_logits") == Shape{1, 1280});
    const auto& al = dynamic_cast<nn::ConvNet&>(*m).stage_aliases();
    CHECK(al == std::vector<std::pair<std::string, std::string>>{{"stage1", "features.1"}, {"stage2", "features.3"},
                                                                {"stage3", "features.6"}, {"stage4", "features.13"},
                                                                {"stage5", "features.18"}});
    CHECK(tap_shapes(*m, 224, 224, 8).at("stage4") == Shape{8, 96, 14, 14});
  }
  SUBCASE("ResNet18") {
    auto m = build("resnet18");
    const auto t = tap_shapes(*m, 224, 224);
    CHECK(t.at("stem") == Shape{1, 64, 112, 112});
    CHECK(t.at("maxpool") == Shape{1, 64, 56, 56});
    CHECK(t.at("layer1") == Shape{1, 64, 56, 56});
    CHECK(t.at("layer2") == Shape{1, 128, 28, 28});
    CHECK(t.at("layer3") == Shape{1, 256, 14, 14});
    CHECK(t.at("layer4") == Shape{1, 512, 7, 7});
    CHECK(t.at("stage1") == Shape{1, 64, 112, 112});
    CHECK(t.at("stage2") == Shape{1, 64, 56, 56});
    CHECK(t.at("stage4") == Shape{1, 256, 14, 14});
    CHECK(t.at("features") == Shape{1, 512, 7, 7});
    CHECK(t.at("pre_logits") == Shape{1, 512});
  }
  SUBCASE("EfficientNet-B0") {
    auto m = build("efficientnet_b0");
    const auto t = tap_shapes(*m, 224, 224);
    CHECK(t.at("features.0") == Shape{1, 32, 112, 112});
    CHECK(t.at("features.1") == Shape{1, 16, 112, 112});
    CHECK(t.at("features.2") == Shape{1, 24, 56, 56});
    CHECK(t.at("features.3") == Shape{1, 40, 28, 28});
    CHECK(t.at("features.4") == Shape{1, 80, 14, 14});
    CHECK(t.at("features.5") == Shape{1, 112, 14, 14});
    CHECK(t.at("features.6") == Shape{1, 192, 7, 7});
    CHECK(t.at("features.7") == Shape{1, 320, 7, 7});
    CHECK(t.at("features.8") == Shape{1, 1280, 7, 7});
    CHECK(t.at("stage4") == Shape{1, 112, 14, 14});
    CHECK(t.at("stage5") == Shape{1, 1280, 7, 7});
    CHECK(t.at("pre_logits") == Shape{1, 1280});
  }
  SUBCASE("ViT-B/16 at 224 px and at 128 px (resized position embedding)") {
    auto& m = vit_base();
    auto t = tap_shapes(m, 224, 224);
    CHECK(t.size() == 2 + 12 * 7 + 1);
    CHECK(t.at("blocks.4.norm") == Shape{1, 197, 768});
    CHECK(t.at("patch_embed") == Shape{1, 196, 768});
    CHECK(t.at("blocks.0") == Shape{1, 197, 768});
    CHECK(t.at("blocks.11") == Shape{1, 197, 768});
    CHECK(t.at("blocks.11.attn.logits") == Shape{1, 12, 197, 197});
    CHECK(t.at("blocks.11.attn.probs") == Shape{1, 12, 197, 197});
    CHECK(t.at("blocks.6.attn.q") == Shape{1, 12, 197, 64});
    CHECK(t.at("blocks.6.attn.v") == Shape{1, 12, 197, 64});
    CHECK(t.at("norm") == Shape{1, 197, 768});
    CHECK(t.at("pre_logits") == Shape{1, 768});
    t = tap_shapes(m, 128, 128, 2);
    CHECK(t.at("patch_embed") == Shape{2, 64, 768});
    CHECK(t.at("blocks.11") == Shape{2, 65, 768});
    CHECK(t.at("blocks.3.attn.logits") == Shape{2, 12, 65, 65});
    CHECK(t.at("blocks.3.attn.k") == Shape{2, 12, 65, 64});
    CHECK(t.at("norm") == Shape{2, 65, 768});
    CHECK(m.grid(128, 128) == std::make_pair<int64_t, int64_t>(8, 8));
  }
}

TEST_CASE("MobileNetV2 at 224 px: taps have the predicted shapes and agree with forward / forward_features") {
  auto m = build("mobilenet_v2");
  m->eval();
  NoGradGuard no_grad;
  const Var x(randn32({1, 3, 224, 224}, 3));
  nn::ModelOutput o = m->forward_with_taps(x, {"stage4", "features.13", "features", "pre_logits"});
  const auto t = tap_shapes(*m, 224, 224);
  CHECK(o.tap("stage4").shape() == t.at("stage4"));
  CHECK(o.tap("features").shape() == Shape{1, 1280, 7, 7});
  CHECK(o.taps.size() == 4);
  CHECK(max_abs_diff(o.tap("stage4").value(), o.tap("features.13").value()) == 0.0);
  const Var f = m->forward_features(x);
  CHECK(max_abs_diff(f.value(), o.tap("features").value()) == 0.0);
  CHECK(max_abs_diff(m->forward_head(f).value(), o.logits.value()) == 0.0);
  CHECK(max_abs_diff(m->forward(x).value(), o.logits.value()) == 0.0);
  // pre_logits is the global average of the features.
  double mean = 0;
  for (int64_t i = 0; i < 7; ++i)
    for (int64_t j = 0; j < 7; ++j) mean += f.value().at({0, 5, i, j}) / 49;
  CHECK(o.tap("pre_logits").value().at({0, 5}) == doctest::Approx(mean).epsilon(1e-5));
}

TEST_CASE("every model's forward agrees with its shape inference, odd sizes and batches included") {
  Generator g(4);
  nn::MobileNetV2Config mc;
  mc.width_mult = 0.35;
  nn::MobileNetV2 mnv2(mc, g);
  mnv2.eval();
  check_forward_matches_inference(mnv2, 37, 45, 2);
  auto r18 = build("resnet18");
  r18->eval();
  check_forward_matches_inference(*r18, 37, 33, 1);
  auto eff = build("efficientnet_b0");
  eff->eval();
  check_forward_matches_inference(*eff, 35, 40, 1);
  nn::VisionTransformer vit(small_vit_config(), g);
  vit.eval();
  check_forward_matches_inference(vit, 32, 32, 2);
  check_forward_matches_inference(vit, 48, 40, 1);  // 6 × 5 grid: position embedding resized
  // Shape inference rejects what forward would.
  CHECK_THROWS_AS(r18->forward(Var(randn32({1, 1, 32, 32}, 6))), Error);
  CHECK_THROWS_AS(vit.tap_names(4, 4), Error);
}

TEST_CASE("ViT taps are consistent with each other, with the blocks and with the logits") {
  Generator g(7);
  nn::VisionTransformer vit(small_vit_config(), g);
  vit.eval();
  NoGradGuard no_grad;
  const Var x(randn32({2, 3, 32, 32}, 8));
  std::vector<std::string> want{"patch_embed", "blocks.0", "blocks.1", "blocks.2", "blocks.1.norm", "blocks.2.norm",
                                "norm", "pre_logits"};
  for (const char* part : {"q", "k", "v", "logits", "probs"}) want.push_back(std::string("blocks.1.attn.") + part);
  nn::ModelOutput o = vit.forward_with_taps(x, want);
  CHECK(o.taps.size() == want.size());
  const Var& logits = o.tap("blocks.1.attn.logits");
  const Var& probs = o.tap("blocks.1.attn.probs");
  CHECK(logits.shape() == Shape{2, 4, 17, 17});
  // softmax(logits) == probs; rows sum to one; logits == q·kᵀ·d^−½.
  CHECK(max_abs_diff(ops::softmax(logits, -1).value(), probs.value()) < 1e-6);
  const Tensor row_sums = ops::sum(probs, {-1}).value();
  for (double v : row_sums.to_vector<double>()) CHECK(v == doctest::Approx(1.0).epsilon(1e-5));
  const auto& q = o.tap("blocks.1.attn.q");
  const auto& k = o.tap("blocks.1.attn.k");
  CHECK(max_abs_diff(ops::mul(ops::matmul(q, ops::transpose(k, -2, -1)), 1.0 / std::sqrt(8.0)).value(), logits.value()) <
        1e-5);
  // Q, K, V are the qkv projection of norm1(block 0's output), split per head.
  auto& b1 = *vit.blocks[1];
  const Tensor qkv = b1.attn->qkv->forward(b1.norm1->forward(o.tap("blocks.0"))).value();  // (2, 17, 96)
  for (int64_t h = 0; h < 4; ++h)
    for (int64_t c = 0; c < 8; ++c) {
      CHECK(o.tap("blocks.1.attn.q").value().at({1, h, 3, c}) == doctest::Approx(qkv.at({1, 3, h * 8 + c})));
      CHECK(o.tap("blocks.1.attn.v").value().at({0, h, 16, c}) == doctest::Approx(qkv.at({0, 16, 64 + h * 8 + c})));
    }
  // Block i's tap fed to block i+1 gives block i+1's tap; the final norm of the last block is "norm"; the
  // CLS token of "norm" is "pre_logits"; the head of that is the logits.
  CHECK(max_abs_diff(vit.blocks[2]->forward(o.tap("blocks.1")).value(), o.tap("blocks.2").value()) < 1e-6);
  CHECK(max_abs_diff(vit.norm->forward(o.tap("blocks.2")).value(), o.tap("norm").value()) < 1e-6);
  CHECK(max_abs_diff(o.tap("blocks.2.norm").value(), o.tap("norm").value()) == 0);
  CHECK(max_abs_diff(vit.norm->forward(o.tap("blocks.1")).value(), o.tap("blocks.1.norm").value()) == 0);
  // Patch tokens as a (B, D, gh, gw) map: token 1 + i·gw + j is pixel (i, j).
  const Var map = vit.tokens_to_map(o.tap("blocks.1"), 4, 4);
  CHECK(map.shape() == Shape{2, 32, 4, 4});
  CHECK(map.value().at({1, 7, 2, 3}) == o.tap("blocks.1").value().at({1, 1 + 2 * 4 + 3, 7}));
  CHECK(map.value().at({0, 31, 0, 1}) == o.tap("blocks.1").value().at({0, 2, 31}));
  CHECK_THROWS_AS(vit.tokens_to_map(o.tap("blocks.1"), 3, 5), Error);
  CHECK(max_abs_diff(ops::squeeze(ops::narrow(o.tap("norm"), 1, 0, 1), 1).value(), o.tap("pre_logits").value()) == 0);
  CHECK(max_abs_diff(vit.head->forward(o.tap("pre_logits")).value(), o.logits.value()) < 1e-6);
  CHECK(max_abs_diff(vit.forward(x).value(), o.logits.value()) == 0);
  CHECK(max_abs_diff(vit.forward_features(x).value(), o.tap("norm").value()) == 0);

  SUBCASE("a taps-only forward stops after the last tap asked for") {
    nn::ModelOutput early = vit.forward_with_taps(x, {"blocks.0.attn.probs", "blocks.0"}, /*need_logits=*/false);
    CHECK(!early.logits.defined());
    CHECK(max_abs_diff(early.tap("blocks.0").value(), o.tap("blocks.0").value()) == 0);
    nn::ModelOutput pre = vit.forward_with_taps(x, {"pre_logits"}, false);
    CHECK(!pre.logits.defined());
    CHECK(max_abs_diff(pre.tap("pre_logits").value(), o.tap("pre_logits").value()) == 0);
  }
  SUBCASE("unknown taps throw, listing the model's taps") {
    try {
      vit.forward_with_taps(x, {"blocks.3"});
      FAIL("expected an error");
    } catch (const Error& e) {
      const std::string msg = e.what();
      CHECK(msg.find("unknown feature tap 'blocks.3'") != std::string::npos);
      CHECK(msg.find("blocks.2.attn.probs") != std::string::npos);
    }
    CHECK_THROWS_AS(build("mobilenet_v2")->forward_with_taps(x, {"layer4"}), Error);
  }
}

TEST_CASE("ViT position embedding: stored grid unchanged, other grids resized bilinearly") {
  Generator g(9);
  nn::VisionTransformer vit(small_vit_config(), g);
  CHECK(same_var(vit.position_embedding(4, 4), vit.pos_embed));
  // A grid part that is constant per channel resizes to the same constant; the CLS entry is kept.
  Tensor& pe = vit.pos_embed.mutable_value();
  for (int64_t t = 0; t < 17; ++t)
    for (int64_t c = 0; c < 32; ++c) pe.data<float>()[t * 32 + c] = t == 0 ? -5.0f : static_cast<float>(c);
  const Tensor r = vit.position_embedding(6, 3).value();
  CHECK(r.shape() == Shape{1, 19, 32});
  for (int64_t t = 0; t < 19; ++t)
    for (int64_t c = 0; c < 32; c += 7) CHECK(r.at({0, t, c}) == doctest::Approx(t == 0 ? -5.0 : double(c)));
  // A grid part linear in the column index stays linear in the column index after resizing.
  for (int64_t t = 1; t < 17; ++t) pe.data<float>()[t * 32] = static_cast<float>((t - 1) % 4);
  const Tensor r2 = vit.position_embedding(4, 8).value();  // columns 0..3 → 0..7: half-pixel-centred
  CHECK(r2.at({0, 1 + 2, 0}) == doctest::Approx(0.75));       // bilinear at x = 2 → source 0.75
  CHECK(r2.at({0, 1 + 8 + 5, 0}) == doctest::Approx(2.25));   // row 1, column 5 → source 2.25
}

TEST_CASE("gradients reach a student's parameters through its taps, and only up to the tap") {
  Generator g(10);
  nn::MobileNetV2Config mc;
  mc.width_mult = 0.25;
  nn::MobileNetV2 m(mc, g);
  nn::ModelOutput o = m.forward_with_taps(Var(randn32({2, 3, 32, 32}, 11)), {"stage4"}, /*need_logits=*/false);
  CHECK(!o.logits.defined());
  Var loss = ops::mean(ops::mul(o.tap("stage4"), o.tap("stage4")));
  loss.backward();
  const auto params = m.named_parameters();
  auto grad_of = [&](const std::string& name) {
    for (const auto& p : params)
      if (p.first == name) return p.second.grad();
    FAIL("no parameter " << name);
    return Tensor();
  };
  const Tensor g0 = grad_of("features.0.0.weight");
  REQUIRE(g0.defined());
  double norm = 0;
  for (double v : g0.to_vector<double>()) norm += v * v;
  CHECK(norm > 0);
  CHECK(grad_of("features.13.conv.2.weight").defined());
  CHECK(!grad_of("features.14.conv.0.0.weight").defined());  // after the tap: never ran
  CHECK(!grad_of("classifier.1.weight").defined());

  Generator gv(12);
  nn::VisionTransformer vit(small_vit_config(), gv);
  nn::ModelOutput ov = vit.forward_with_taps(Var(randn32({1, 3, 32, 32}, 13)), {"blocks.1.attn.logits"}, false);
  ops::sum(ops::mul(ov.tap("blocks.1.attn.logits"), ov.tap("blocks.1.attn.logits"))).backward();
  CHECK(vit.blocks[1]->attn->qkv->weight.grad().defined());
  CHECK(!vit.blocks[1]->attn->proj->weight.grad().defined());  // after the logits
  CHECK(vit.patch_embed->proj->weight.grad().defined());
  CHECK(!vit.blocks[2]->attn->qkv->weight.grad().defined());
}

TEST_CASE("forward MACs match torchvision's published figures (1000 classes, 224 px)") {
  // torchvision's weight metadata lists GFLOPS that are multiply-accumulates: 0.301, 1.814, 0.386, 17.564.
  auto gmacs = [](const nn::Model& m) { return m.trace(224, 224).macs / 1e9; };
  CHECK(gmacs(*build("mobilenet_v2", 1000)) == doctest::Approx(0.301).epsilon(0.005));
  CHECK(gmacs(*build("resnet18", 1000)) == doctest::Approx(1.814).epsilon(0.005));
  CHECK(gmacs(*build("efficientnet_b0", 1000)) == doctest::Approx(0.386).epsilon(0.005));
  // ViT-B/16, 4 classes, by hand: patch embedding 196·768·768; per block 12·N·D² (qkv, proj, mlp) and
  // 2·N²·D (q·kᵀ and p·v) with N = 197; head 768·4.
  const double N = 197, D = 768;
  const double expect = 196 * D * D + 12 * (12 * N * D * D + 2 * N * N * D) + D * 4;
  const nn::ShapeTrace t = vit_base().trace(224, 224);
  CHECK(t.macs == expect);
  CHECK(t.macs_by_kind.at("attention") == 12 * 2 * N * N * D);
  CHECK((t.macs + 996 * D) / 1e9 == doctest::Approx(17.564).epsilon(0.001));
  CHECK(t.flops() == 2 * t.macs);
  CHECK(vit_base().trace(224, 224, 4).macs == 4 * expect);
}

TEST_CASE("train/eval, running statistics and state-dict round trips") {
  Generator g(14);
  nn::MobileNetV2Config mc;
  mc.width_mult = 0.25;
  nn::MobileNetV2 a(mc, g);
  const Var x(randn32({4, 3, 32, 32}, 15));
  auto bn0 = a.features->child("0")->child("1");
  const Tensor rm0 = bn0->buffer("running_mean").clone();
  {
    NoGradGuard no_grad;
    a.train();
    const Tensor y1 = a.forward(x).value();
    CHECK(bn0->buffer("num_batches_tracked").item<int64_t>() == 1);
    CHECK(max_abs_diff(bn0->buffer("running_mean"), rm0) > 0);
    const Tensor y2 = a.forward(x).value();  // classifier dropout draws a new mask
    CHECK(max_abs_diff(y1, y2) > 0);
    a.eval();
    const Tensor rm1 = bn0->buffer("running_mean").clone();
    const Tensor e1 = a.forward(x).value(), e2 = a.forward(x).value();
    CHECK(max_abs_diff(e1, e2) == 0);
    CHECK(max_abs_diff(bn0->buffer("running_mean"), rm1) == 0);
    CHECK(bn0->buffer("num_batches_tracked").item<int64_t>() == 2);

    Generator other(99);
    nn::MobileNetV2 b(mc, other);
    b.eval();
    CHECK(max_abs_diff(b.forward(x).value(), e1) > 0);
    b.load_state_dict(a.state_dict());
    CHECK(max_abs_diff(b.forward(x).value(), e1) == 0);
    CHECK_THROWS_AS(b.load_state_dict(build("resnet18")->state_dict()), Error);
  }
  Generator gv(16), gw(17);
  nn::VisionTransformer v1(small_vit_config(), gv), v2(small_vit_config(), gw);
  v1.eval();
  v2.eval();
  NoGradGuard no_grad;
  const Var xi(randn32({1, 3, 32, 32}, 18));
  v2.load_state_dict(v1.state_dict());
  CHECK(max_abs_diff(v1.forward(xi).value(), v2.forward(xi).value()) == 0);
}

TEST_CASE("a few optimizer steps on tiny models lower the training loss") {
  const Tensor targets = Tensor::from_vector(std::vector<int64_t>{0, 1, 2, 3, 0, 1, 2, 3}, {8});
  const Var x(randn32({8, 3, 32, 32}, 19));
  auto run = [&](nn::Model& m, double lr) {
    m.train();
    m.set_noise_seed(5);
    optim::AdamWOptions ao;
    ao.lr = lr;
    ao.weight_decay = 0.0;
    optim::AdamW opt(m.trainable_parameters(), ao);
    std::vector<double> losses;
    for (int step = 0; step < 8; ++step) {
      opt.zero_grad();
      Var loss = ops::cross_entropy(m.forward(x), targets);
      losses.push_back(loss.item<double>());
      loss.backward();
      opt.step();
    }
    CHECK_MESSAGE(losses.back() < 0.75 * losses.front(), m.arch() << ": " << losses.front() << " → " << losses.back());
  };
  Generator g(20);
  nn::MobileNetV2Config mc;
  mc.width_mult = 0.25;
  mc.dropout = 0.0;
  nn::MobileNetV2 mnv2(mc, g);
  run(mnv2, 3e-3);
  nn::VisionTransformer vit(small_vit_config(), g);
  run(vit, 3e-3);
}
