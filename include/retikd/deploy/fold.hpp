// retikd/deploy/fold.hpp — batch norm folded into the convolutions: the inference form of a CNN student.
//
// In eval mode a BatchNorm2d after a convolution is an affine map per output channel o, so it folds into the
// convolution exactly (up to rounding):
//     s_o = γ_o / √(running_var_o + ε)
//     W'[o, …] = W[o, …] · s_o
//     b'_o     = β_o + (b_o − running_mean_o) · s_o          (b_o = 0 for a convolution without bias)
// fold_batch_norm(model) builds a FoldedConvNet: the same stages, the same feature taps ("stage4",
// "features.13", "layer3", …) and the same state-dict names for what remains — each folded convolution keeps
// its torchvision name and gains a bias ("features.2.conv.1.0.weight" / ".bias"), the BN entries disappear,
// dropout and stochastic depth (identities in eval mode) are dropped, and the activation that followed a
// Conv-BN pair runs inside the same ConvAct layer. The arithmetic is done in double and rounded once to
// float32. The source model is read, never modified (its BN running statistics are used whatever its
// train/eval flag). MobileNetV2, ResNet18/34 and EfficientNet-B0 (torchvision's structures) are supported;
// anything else fails naming the module it could not fold.
//
// A FoldedConvNet is an nn::Model: forward, forward_with_taps, tap_names and trace behave as the source's
// eval-mode forward does, so Grad-CAM and the classifier take either. It is what a student bundle
// (deploy/bundle.hpp) stores and what load_bundle rebuilds: folded_skeleton(arch, options) gives the folded
// structure of a freshly built model, into which the bundle's tensors load by name.
//
// On a GPU without a tape (inference), a depthwise ConvAct with ReLU6 runs as one fused kernel pass
// (ops::impl::conv2d_depthwise_relu6_cuda); everything else, and every CPU path, is unchanged.
//
// layer_costs() lists every layer of a folded model with its MACs, weights and activation sizes at a given
// input: the per-layer roofline of bench_jetson and docs/jetson.md.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

#include "retikd/nn/models.hpp"

namespace retikd {
namespace deploy {

// ---- folded layers ---------------------------------------------------------------------------------------

// A convolution with bias followed by an activation (identity for a projection): Conv-BN-act after folding.
class ConvAct : public nn::Conv2d {
 public:
  // Use make_conv_act (it suppresses the random initialisation the weights would get here).
  ConvAct(int64_t in, int64_t out, int64_t kh, int64_t kw, Generator& gen, const ops::Conv2dOptions& opt,
          nn::Activation act)
      : nn::Conv2d(in, out, kh, kw, gen, opt, /*with_bias=*/true), act_(act) {}
  Var forward(const Var& x) override {
#ifdef RETIKD_WITH_CUDA
    // GPU inference: depthwise + bias + ReLU6 in one pass (no tape is recorded, so nothing needs the pre-activation).
    if (act_ == nn::Activation::relu6 && !grad_mode_enabled() && x.value().is_cuda()) {
      Tensor y = ops::impl::conv2d_depthwise_relu6_cuda(x.value(), weight.value(),
                                                        bias.defined() ? bias.value() : Tensor(), options_for(x.shape()));
      if (y.defined()) return Var(y, false);
    }
#endif
    return nn::activate(nn::Conv2d::forward(x), act_);
  }
  nn::Activation activation() const { return act_; }

 private:
  nn::Activation act_;
};

// Children under explicit names (a torchvision Sequential with the folded-away indices left out), applied in
// order.
class Chain : public nn::Layer, public nn::Traceable {
 public:
  template <class M>
  std::shared_ptr<M> add(const std::string& name, std::shared_ptr<M> layer) {
    register_module(name, layer);
    layers_.emplace_back(name, layer);
    return layer;
  }
  Var forward(const Var& x) override {
    Var y = x;
    for (auto& l : layers_) y = l.second->forward(y);
    return y;
  }
  Shape infer_shape(const Shape& in, nn::ShapeTrace* t) const override {
    Shape s = in;
    for (const auto& l : layers_) s = nn::infer_shape(*l.second, s, t);
    return s;
  }
  const std::vector<std::pair<std::string, std::shared_ptr<nn::Layer>>>& layers() const { return layers_; }

 private:
  std::vector<std::pair<std::string, std::shared_ptr<nn::Layer>>> layers_;
};

// MobileNetV2's InvertedResidual and EfficientNet's MBConv after folding: body(x) [+ x]. `body_name` is the
// child's name ("conv" / "block") so the parameter names stay torchvision's.
class FoldedResidual : public nn::Layer, public nn::Traceable {
 public:
  FoldedResidual(const std::string& body_name, std::shared_ptr<Chain> body, bool residual)
      : body_(register_module(body_name, std::move(body))), residual_(residual) {}
  Var forward(const Var& x) override {
    Var y = body_->forward(x);
    return residual_ ? ops::add(x, y) : y;
  }
  Shape infer_shape(const Shape& in, nn::ShapeTrace* t) const override { return body_->infer_shape(in, t); }
  const Chain& body() const { return *body_; }
  bool residual() const { return residual_; }

 private:
  std::shared_ptr<Chain> body_;
  bool residual_;
};

// ResNet's BasicBlock after folding: relu(conv2(conv1(x)) + downsample(x) or x).
class FoldedBasicBlock : public nn::Layer, public nn::Traceable {
 public:
  std::shared_ptr<ConvAct> conv1, conv2;
  std::shared_ptr<Chain> downsample;  // null for the identity

  FoldedBasicBlock(std::shared_ptr<ConvAct> c1, std::shared_ptr<ConvAct> c2, std::shared_ptr<Chain> down) {
    conv1 = register_module("conv1", std::move(c1));
    conv2 = register_module("conv2", std::move(c2));
    if (down) downsample = register_module("downsample", std::move(down));
  }
  Var forward(const Var& x) override {
    Var y = conv2->forward(conv1->forward(x));
    return ops::relu(ops::add(y, downsample ? downsample->forward(x) : x));
  }
  Shape infer_shape(const Shape& in, nn::ShapeTrace* t) const override {
    Shape y = conv2->infer_shape(conv1->infer_shape(in, t), t);
    if (downsample) downsample->infer_shape(in, t);
    return y;
  }
};

// ---- folding ---------------------------------------------------------------------------------------------

namespace detail {

inline Generator& unused_generator() {
  static thread_local Generator g(0);
  return g;
}

// Conv (+ BN) (+ activation) → ConvAct with the BN folded in, in double, rounded once to float32.
inline std::shared_ptr<ConvAct> fold_conv(nn::Conv2d& conv, nn::BatchNorm2d* bn, nn::Activation act,
                                          const std::string& where) {
  const Tensor& w = conv.weight.value();
  const int64_t O = w.size(0);
  std::shared_ptr<ConvAct> out;
  {
    nn::DeferInit defer;
    out = std::make_shared<ConvAct>(conv.in_channels(), O, w.size(2), w.size(3), unused_generator(), conv.options(),
                                    act);
  }
  out->use_tf_same_padding(conv.tf_same_padding());
  std::vector<double> wv = w.to_vector<double>();
  std::vector<double> bv(static_cast<std::size_t>(O), 0.0);
  if (conv.bias.defined()) bv = conv.bias.value().to_vector<double>();
  if (bn) {
    RETIKD_CHECK(bn->num_features() == O, "fold_batch_norm: ", where, ": BatchNorm2d(", bn->num_features(),
                 ") does not match the ", O, " output channels of the convolution before it");
    RETIKD_CHECK(bn->tracks_running_stats(), "fold_batch_norm: ", where,
                 ": BatchNorm2d without running statistics normalises with batch statistics and cannot be folded");
    const std::vector<double> mean = bn->running_mean().to_vector<double>();
    const std::vector<double> var = bn->running_var().to_vector<double>();
    std::vector<double> gamma(static_cast<std::size_t>(O), 1.0), beta(static_cast<std::size_t>(O), 0.0);
    if (bn->weight.defined()) gamma = bn->weight.value().to_vector<double>();
    if (bn->bias.defined()) beta = bn->bias.value().to_vector<double>();
    const std::size_t per = wv.size() / static_cast<std::size_t>(O);
    for (std::size_t o = 0; o < static_cast<std::size_t>(O); ++o) {
      RETIKD_CHECK(var[o] + bn->eps() > 0, "fold_batch_norm: ", where, ": running_var[", o, "] = ", var[o],
                   " makes var + eps non-positive");
      const double s = gamma[o] / std::sqrt(var[o] + bn->eps());
      for (std::size_t k = 0; k < per; ++k) wv[o * per + k] *= s;
      bv[o] = beta[o] + (bv[o] - mean[o]) * s;
    }
  }
  out->weight.mutable_value().copy_(Tensor::from_vector(std::vector<float>(wv.begin(), wv.end()), w.shape()));
  out->bias.mutable_value().copy_(Tensor::from_vector(std::vector<float>(bv.begin(), bv.end()), {O}));
  return out;
}

inline std::shared_ptr<nn::Linear> clone_linear(const nn::Linear& l) {
  std::shared_ptr<nn::Linear> out;
  {
    nn::DeferInit defer;
    out = std::make_shared<nn::Linear>(l.in_features(), l.out_features(), unused_generator(), l.bias.defined());
  }
  out->weight.mutable_value().copy_(l.weight.value());
  if (l.bias.defined()) out->bias.mutable_value().copy_(l.bias.value());
  return out;
}

// torchvision's MBConv builds its SqueezeExcitation with SiLU and Sigmoid; that is the only place the
// supported models use one (the activations are not readable from the module itself).
inline std::shared_ptr<nn::SqueezeExcitation> clone_squeeze_excitation(const nn::SqueezeExcitation& se) {
  std::shared_ptr<nn::SqueezeExcitation> out;
  {
    nn::DeferInit defer;
    out = std::make_shared<nn::SqueezeExcitation>(se.fc1->in_channels(), se.fc1->out_channels(), unused_generator(),
                                                  nn::Activation::silu, nn::Activation::sigmoid);
  }
  out->fc1->weight.mutable_value().copy_(se.fc1->weight.value());
  out->fc1->bias.mutable_value().copy_(se.fc1->bias.value());
  out->fc2->weight.mutable_value().copy_(se.fc2->weight.value());
  out->fc2->bias.mutable_value().copy_(se.fc2->bias.value());
  return out;
}

inline std::shared_ptr<nn::Layer> fold_module(const std::shared_ptr<nn::Module>& m, const std::string& where,
                                              bool inside_mbconv);

// A Sequential: each Conv2d takes the BatchNorm2d and the activation that follow it.
inline std::shared_ptr<Chain> fold_sequential(nn::Module& seq, const std::string& where, bool inside_mbconv = false) {
  auto out = std::make_shared<Chain>();
  const auto& kids = seq.named_children();
  for (std::size_t i = 0; i < kids.size(); ++i) {
    const std::string& name = kids[i].first;
    const std::string path = where.empty() ? name : where + "." + name;
    if (auto* conv = dynamic_cast<nn::Conv2d*>(kids[i].second.get())) {
      std::size_t next = i + 1;
      nn::BatchNorm2d* bn = nullptr;
      if (next < kids.size() && (bn = dynamic_cast<nn::BatchNorm2d*>(kids[next].second.get()))) ++next;
      nn::Activation act = nn::Activation::identity;
      if (next < kids.size())
        if (auto* a = dynamic_cast<nn::ActivationLayer*>(kids[next].second.get())) {
          act = a->kind();
          ++next;
        }
      out->add(name, fold_conv(*conv, bn, act, path));
      i = next - 1;
      continue;
    }
    RETIKD_CHECK(dynamic_cast<nn::BatchNorm2d*>(kids[i].second.get()) == nullptr, "fold_batch_norm: ", path,
                 ": a BatchNorm2d that does not follow a convolution cannot be folded");
    std::shared_ptr<nn::Layer> l = fold_module(kids[i].second, path, inside_mbconv);
    if (l) out->add(name, l);
  }
  return out;
}

// One module of a supported model → its folded form (nullptr for what is an identity in eval mode).
inline std::shared_ptr<nn::Layer> fold_module(const std::shared_ptr<nn::Module>& m, const std::string& where,
                                              bool inside_mbconv) {
  nn::Module* p = m.get();
  if (dynamic_cast<nn::Dropout*>(p) || dynamic_cast<nn::DropPath*>(p)) return nullptr;
  if (auto* ir = dynamic_cast<nn::InvertedResidual*>(p))
    return std::make_shared<FoldedResidual>("conv", fold_sequential(*ir->conv, where + ".conv"), ir->use_res_connect());
  if (auto* mb = dynamic_cast<nn::MBConv*>(p))
    return std::make_shared<FoldedResidual>("block", fold_sequential(*mb->block, where + ".block", true),
                                            mb->use_res_connect());
  if (auto* bb = dynamic_cast<nn::BasicBlock*>(p)) {
    auto c1 = fold_conv(*bb->conv1, bb->bn1.get(), nn::Activation::relu, where + ".conv1");
    auto c2 = fold_conv(*bb->conv2, bb->bn2.get(), nn::Activation::identity, where + ".conv2");
    std::shared_ptr<Chain> down;
    if (bb->downsample) down = fold_sequential(*bb->downsample, where + ".downsample");
    return std::make_shared<FoldedBasicBlock>(c1, c2, down);
  }
  if (dynamic_cast<nn::Sequential*>(p)) return fold_sequential(*p, where, inside_mbconv);
  if (auto* conv = dynamic_cast<nn::Conv2d*>(p)) return fold_conv(*conv, nullptr, nn::Activation::identity, where);
  if (auto* l = dynamic_cast<nn::Linear*>(p)) return clone_linear(*l);
  if (auto* se = dynamic_cast<nn::SqueezeExcitation*>(p)) {
    RETIKD_CHECK(inside_mbconv, "fold_batch_norm: ", where,
                 ": a SqueezeExcitation outside torchvision's MBConv (its activations are unknown)");
    return clone_squeeze_excitation(*se);
  }
  // Parameter-free layers are shared with the source.
  if (dynamic_cast<nn::ActivationLayer*>(p) || dynamic_cast<nn::MaxPool2d*>(p) ||
      dynamic_cast<nn::AdaptiveAvgPool2d*>(p) || dynamic_cast<nn::Flatten*>(p)) {
    RETIKD_CHECK(m->state_dict().empty(), "fold_batch_norm: ", where, ": expected a parameter-free layer");
    return std::dynamic_pointer_cast<nn::Layer>(m);
  }
  fail("fold_batch_norm: ", where, ": cannot fold a module of type ", typeid(*p).name(),
       " (supported: torchvision's MobileNetV2, ResNet and EfficientNet building blocks)");
}

}  // namespace detail

// What create_model needs to rebuild `model`'s architecture: (name, options). Fails for configurations
// create_model cannot express (another round_nearest, an EfficientNet depth multiplier, a ResNet width…).
inline std::pair<std::string, nn::ModelOptions> rebuild_recipe(const nn::Model& model) {
  nn::ModelOptions o;
  o.num_classes = model.num_classes();
  o.in_chans = model.in_chans();
  if (const auto* m = dynamic_cast<const nn::MobileNetV2*>(&model)) {
    RETIKD_CHECK(m->config().round_nearest == 8, "rebuild_recipe: mobilenet_v2 with round_nearest ",
                 m->config().round_nearest, " cannot be rebuilt by create_model (it uses 8)");
    o.width_mult = m->config().width_mult;
    return {"mobilenet_v2", o};
  }
  if (const auto* e = dynamic_cast<const nn::EfficientNet*>(&model)) {
    RETIKD_CHECK(e->config().depth_mult == 1.0, "rebuild_recipe: efficientnet with depth multiplier ",
                 e->config().depth_mult, " cannot be rebuilt by create_model (B0 depth only)");
    o.width_mult = e->config().width_mult;
    return {"efficientnet_b0", o};
  }
  if (dynamic_cast<const nn::ResNet*>(&model)) {
    const std::string a = model.arch();
    RETIKD_CHECK(a == "resnet18" || a == "resnet34", "rebuild_recipe: a ResNet other than resnet18 / resnet34 (",
                 a, ") cannot be rebuilt by create_model");
    return {a, o};
  }
  fail("rebuild_recipe: ", model.arch(), " is not a supported CNN student (mobilenet_v2, resnet18, resnet34, "
       "efficientnet_b0)");
}

// The folded inference form of a CNN student (see the top of this file).
class FoldedConvNet : public nn::ConvNet {
 public:
  // Folds `source` (read only; see fold_batch_norm).
  explicit FoldedConvNet(nn::Model& source) : arch_(source.arch()), img_(source.default_img_size()) {
    if (auto* m = dynamic_cast<nn::MobileNetV2*>(&source)) {
      fold_features_and_classifier(*m->features, *m->classifier, false);
    } else if (auto* e = dynamic_cast<nn::EfficientNet*>(&source)) {
      fold_features_and_classifier(*e->features, *e->classifier, true);
    } else if (auto* r = dynamic_cast<nn::ResNet*>(&source)) {
      auto stem = register_module("conv1", detail::fold_conv(*r->conv1, r->bn1.get(), nn::Activation::relu, "conv1"));
      stages_.push_back({"stem", {stem}});
      auto maxpool = std::dynamic_pointer_cast<nn::Layer>(r->child("maxpool"));
      RETIKD_CHECK(maxpool != nullptr, "fold_batch_norm: resnet: maxpool is not a layer");
      stages_.push_back({"maxpool", {register_module("maxpool", maxpool)}});
      for (std::size_t s = 0; s < r->layer.size(); ++s) {
        const std::string name = "layer" + std::to_string(s + 1);
        stages_.push_back({name, {register_module(name, detail::fold_sequential(*r->layer[s], name))}});
      }
      head_ = register_module("fc", detail::clone_linear(*r->fc));
    } else {
      fail("fold_batch_norm: ", source.arch(), " is not a supported CNN student (mobilenet_v2, resnet18, resnet34, "
           "efficientnet_b0)");
    }
    finish_stages(source.in_chans(), source.num_classes());
    eval();
    try {
      recipe_ = rebuild_recipe(source);
      has_recipe_ = true;
    } catch (const Error&) {
      has_recipe_ = false;  // still a valid model; only export_bundle needs the recipe
    }
  }

  std::string arch() const override { return arch_; }
  int64_t default_img_size() const override { return img_; }
  // How create_model rebuilds the source architecture (what a bundle records), when it can.
  bool has_recipe() const { return has_recipe_; }
  const std::pair<std::string, nn::ModelOptions>& recipe() const {
    RETIKD_CHECK(has_recipe_, "FoldedConvNet: ", arch_, " has no create_model recipe");
    return recipe_;
  }

 private:
  void fold_features_and_classifier(nn::Sequential& features, nn::Sequential& classifier, bool mbconv) {
    auto f = register_module("features", detail::fold_sequential(features, "features", mbconv));
    for (const auto& l : f->layers()) stages_.push_back({"features." + l.first, {l.second}});
    head_ = register_module("classifier", detail::fold_sequential(classifier, "classifier"));
  }

  std::string arch_;
  int64_t img_;
  std::pair<std::string, nn::ModelOptions> recipe_;
  bool has_recipe_ = false;
};

// The folded form of `model`, in eval mode (see the top of this file).
inline std::shared_ptr<FoldedConvNet> fold_batch_norm(nn::Model& model) {
  return std::make_shared<FoldedConvNet>(model);
}

// The folded structure of a fresh create_model(arch, options) — the shape a bundle's tensors load into.
inline std::shared_ptr<FoldedConvNet> folded_skeleton(const std::string& arch, const nn::ModelOptions& options) {
  Generator gen(0);
  std::shared_ptr<nn::Model> m = nn::create_model(arch, options, gen);
  return fold_batch_norm(*m);
}

// ---- per-layer cost ----------------------------------------------------------------------------------------

// One layer of a folded model at a given input: multiply-accumulates (the nn/trace.hpp convention), weight
// elements (bias included) and activation elements read and written — what a fused implementation (BN folded,
// activation in the convolution's epilogue) must move.
struct LayerCost {
  std::string name;  // "features.2.conv.1.0"
  std::string kind;  // conv, pointwise, depthwise, linear, add, se, maxpool, avgpool
  Shape in, out;
  double macs = 0;
  int64_t weights = 0;
  int64_t read = 0;     // activation elements read
  int64_t written = 0;  // activation elements written
  double bytes(double bytes_per_element) const {
    return bytes_per_element * static_cast<double>(weights + read + written);
  }
};

namespace detail {

inline Shape cost_walk(const nn::Module& m, const std::string& name, const Shape& in, std::vector<LayerCost>& out) {
  auto push = [&](const std::string& kind, const Shape& o, double macs, int64_t weights, int64_t read) {
    LayerCost c;
    c.name = name;
    c.kind = kind;
    c.in = in;
    c.out = o;
    c.macs = macs;
    c.weights = weights;
    c.read = read;
    c.written = shape_numel(o);
    out.push_back(c);
  };
  auto child_name = [&](const std::string& n) { return name.empty() ? n : name + "." + n; };
  if (const auto* c = dynamic_cast<const nn::Conv2d*>(&m)) {
    nn::ShapeTrace t;
    const Shape o = c->infer_shape(in, &t);
    const auto g = ops::impl::conv2d_geometry(in, c->weight.shape(), c->options_for(in));
    const int64_t w = c->weight.numel() + (c->bias.defined() ? c->bias.numel() : 0);
    push(g.depthwise() ? "depthwise" : (g.kh == 1 && g.kw == 1 ? "pointwise" : "conv"), o, t.macs, w,
         shape_numel(in));
    return o;
  }
  if (const auto* l = dynamic_cast<const nn::Linear*>(&m)) {
    nn::ShapeTrace t;
    const Shape o = l->infer_shape(in, &t);
    push("linear", o, t.macs, l->weight.numel() + (l->bias.defined() ? l->bias.numel() : 0), shape_numel(in));
    return o;
  }
  if (const auto* ch = dynamic_cast<const Chain*>(&m)) {
    Shape s = in;
    for (const auto& l : ch->layers()) s = cost_walk(*l.second, child_name(l.first), s, out);
    return s;
  }
  if (const auto* r = dynamic_cast<const FoldedResidual*>(&m)) {
    const Shape o = cost_walk(r->body(), child_name(r->named_children()[0].first), in, out);
    if (r->residual()) {
      LayerCost c;
      c.name = name + " (+)";
      c.kind = "add";
      c.in = c.out = o;
      c.read = 2 * shape_numel(o);
      c.written = shape_numel(o);
      out.push_back(c);
    }
    return o;
  }
  if (const auto* b = dynamic_cast<const FoldedBasicBlock*>(&m)) {
    Shape o = cost_walk(*b->conv1, child_name("conv1"), in, out);
    o = cost_walk(*b->conv2, child_name("conv2"), o, out);
    if (b->downsample) cost_walk(*b->downsample, child_name("downsample"), in, out);
    LayerCost c;
    c.name = name + " (+, relu)";
    c.kind = "add";
    c.in = c.out = o;
    c.read = 2 * shape_numel(o);
    c.written = shape_numel(o);
    out.push_back(c);
    return o;
  }
  if (const auto* se = dynamic_cast<const nn::SqueezeExcitation*>(&m)) {
    nn::ShapeTrace t;
    const Shape o = se->infer_shape(in, &t);
    const int64_t w = se->fc1->weight.numel() + se->fc1->bias.numel() + se->fc2->weight.numel() + se->fc2->bias.numel();
    push("se", o, t.macs, w, 2 * shape_numel(in));  // pooled once, scaled once
    return o;
  }
  const Shape o = nn::infer_shape(m, in, nullptr);
  if (dynamic_cast<const nn::MaxPool2d*>(&m)) {
    push("maxpool", o, 0, 0, shape_numel(in));
  } else if (dynamic_cast<const nn::AdaptiveAvgPool2d*>(&m)) {
    push("avgpool", o, 0, 0, shape_numel(in));
  } else if (const auto* a = dynamic_cast<const nn::ActivationLayer*>(&m)) {
    push(nn::activation_name(a->kind()), o, 0, 0, shape_numel(in));
  }
  return o;
}

}  // namespace detail

// Every layer of `model` for a batch of `batch` images of h × w, in forward order, ending with the global
// average pool and the classifier.
inline std::vector<LayerCost> layer_costs(const FoldedConvNet& model, int64_t h, int64_t w, int64_t batch = 1) {
  std::vector<LayerCost> out;
  Shape s{batch, model.in_chans(), h, w};
  for (const auto& c : model.named_children()) {
    if (c.first == "classifier" || c.first == "fc") continue;
    s = detail::cost_walk(*c.second, c.first, s, out);
  }
  LayerCost pool;
  pool.name = "global_avg_pool";
  pool.kind = "avgpool";
  pool.in = s;
  pool.out = {s[0], s[1]};
  pool.read = shape_numel(s);
  pool.written = s[0] * s[1];
  out.push_back(pool);
  for (const auto& c : model.named_children())
    if (c.first == "classifier" || c.first == "fc") detail::cost_walk(*c.second, c.first, pool.out, out);
  return out;
}

}  // namespace deploy
}  // namespace retikd
