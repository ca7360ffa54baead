// retikd/nn/models/model.hpp — what every model offers the distillation (DESIGN.md §3, feature taps):
//
//   Var logits = model.forward(x);                                  // (B, classes)
//   Var f = model.forward_features(x);                              // CNN (B, C, h, w); ViT tokens (B, T, D)
//   ModelOutput o = model.forward_with_taps(x, {"stage4", "features"});
//   o.logits, o.tap("stage4")                                       // Vars on the tape
//   std::vector<TapInfo> t = model.tap_names(224, 224);             // every tap: name + shape, no forward
//   ShapeTrace s = model.trace(224, 224);                           // MACs of one forward
//
// Only the taps asked for are kept; with need_logits = false the forward also stops after the last one
// (a teacher read at block 6 does not run blocks 7–11 or the head). An unknown tap name throws, listing the
// names the model has. ConvNet is the shared base of the three CNNs: a chain of named stages, a global
// average pool and a classifier, with "stage{k}" aliases for the last stage at output stride 2^k.
#pragma once

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "retikd/nn/layers.hpp"
#include "retikd/ops/reduce.hpp"

namespace retikd {
namespace nn {

struct TapInfo {
  std::string name;
  Shape shape;
  std::string description;
};

struct ModelOutput {
  Var logits;                         // (B, classes); undefined when need_logits was false
  std::map<std::string, Var> taps;    // exactly the names asked for

  const Var& tap(const std::string& name) const {
    auto it = taps.find(name);
    if (it == taps.end()) {
      std::string have;
      for (const auto& kv : taps) have += (have.empty() ? "" : ", ") + kv.first;
      fail("ModelOutput: no tap '", name, "' (asked for: ", have.empty() ? "none" : have, ")");
    }
    return it->second;
  }
};

// The taps a forward was asked for: collects them as the forward passes by.
class TapCollector {
 public:
  explicit TapCollector(const std::vector<std::string>& names) : wanted_(names.begin(), names.end()) {}
  bool wants(const std::string& name) const { return wanted_.count(name) != 0; }
  bool wants_any() const { return !wanted_.empty(); }
  void offer(const std::string& name, const Var& v) {
    if (wants(name)) got_[name] = v;
  }
  bool complete() const { return got_.size() == wanted_.size(); }
  std::map<std::string, Var> take() { return std::move(got_); }

 private:
  std::set<std::string> wanted_;
  std::map<std::string, Var> got_;
};

class Model : public Layer {
 public:
  // Logits (B, classes).
  Var forward(const Var& x) override { return forward_with_taps(x, {}).logits; }
  // The final features before pooling: CNNs (B, C, h, w); ViT the normed tokens (B, T, D).
  virtual Var forward_features(const Var& x) = 0;
  // Pooling and classifier applied to forward_features' output.
  virtual Var forward_head(const Var& features) = 0;
  // Logits plus the named intermediate outputs; with need_logits = false the forward stops after the last
  // tap asked for and logits stay undefined.
  virtual ModelOutput forward_with_taps(const Var& x, const std::vector<std::string>& taps,
                                        bool need_logits = true) = 0;
  // Every tap with its shape for a batch of `batch` images of img_h × img_w, by shape inference.
  virtual std::vector<TapInfo> tap_names(int64_t img_h, int64_t img_w, int64_t batch = 1) const = 0;
  std::vector<TapInfo> tap_names(int64_t img_size) const { return tap_names(img_size, img_size, 1); }
  // Multiply-accumulates of one forward of a batch (nn/trace.hpp for the convention).
  virtual ShapeTrace trace(int64_t img_h, int64_t img_w, int64_t batch = 1) const = 0;
  virtual std::string arch() const = 0;
  virtual int64_t num_classes() const = 0;
  virtual int64_t in_chans() const { return 3; }
  // The image size the model was configured for (tap names are listed at this size in errors).
  virtual int64_t default_img_size() const { return 224; }

  bool has_tap(const std::string& name) const {
    for (const auto& t : tap_names(default_img_size())) if (t.name == name) return true;
    return false;
  }
  // Reseeds the stream dropout and stochastic depth draw from.
  void set_noise_seed(uint64_t seed) { noise_->reseed(seed); }
  const NoiseSource& noise() const { return noise_; }

 protected:
  void check_taps(const std::vector<std::string>& taps) const {
    if (taps.empty()) return;
    const auto all = tap_names(default_img_size());
    for (const auto& name : taps) {
      bool found = false;
      for (const auto& t : all) found = found || t.name == name;
      if (found) continue;
      std::string have;
      for (const auto& t : all) have += (have.empty() ? "" : ", ") + t.name;
      fail(arch(), ": unknown feature tap '", name, "'; the taps are: ", have);
    }
  }
  NoiseSource noise_ = make_noise();
};

// ---- the CNN base -----------------------------------------------------------------------------------------
class ConvNet : public Model {
 public:
  Var forward_features(const Var& x) override {
    Var y = x;
    for (auto& s : stages_)
      for (auto& l : s.layers) y = l->forward(y);
    return y;
  }
  Var forward_head(const Var& features) override { return head_->forward(pool(features)); }

  ModelOutput forward_with_taps(const Var& x, const std::vector<std::string>& taps, bool need_logits = true) override {
    check_input(x.shape());
    check_taps(taps);
    TapCollector c(taps);
    ModelOutput out;
    Var y = x;
    for (std::size_t i = 0; i < stages_.size(); ++i) {
      for (auto& l : stages_[i].layers) y = l->forward(y);
      c.offer(stages_[i].tap, y);
      for (const auto& a : aliases_)
        if (a.second == stages_[i].tap) c.offer(a.first, y);
      if (i + 1 == stages_.size()) c.offer("features", y);
      if (!need_logits && c.complete()) {
        out.taps = c.take();
        return out;
      }
    }
    Var pooled = pool(y);
    c.offer("pre_logits", pooled);
    if (need_logits || !c.complete()) out.logits = head_->forward(pooled);
    out.taps = c.take();
    return out;
  }

  std::vector<TapInfo> tap_names(int64_t img_h, int64_t img_w, int64_t batch = 1) const override {
    std::vector<TapInfo> taps;
    walk({batch, in_chans_, img_h, img_w}, nullptr, &taps);
    return taps;
  }
  ShapeTrace trace(int64_t img_h, int64_t img_w, int64_t batch = 1) const override {
    ShapeTrace t;
    walk({batch, in_chans_, img_h, img_w}, &t, nullptr);
    return t;
  }
  int64_t num_classes() const override { return num_classes_; }
  int64_t in_chans() const override { return in_chans_; }
  // The stage taps (torchvision module names) in forward order, and the stride aliases.
  std::vector<std::string> stage_names() const {
    std::vector<std::string> v;
    for (const auto& s : stages_) v.push_back(s.tap);
    return v;
  }
  const std::vector<std::pair<std::string, std::string>>& stage_aliases() const { return aliases_; }

 protected:
  struct Stage {
    std::string tap;  // the torchvision module name of the stage's last layer ("features.13", "layer3")
    std::vector<std::shared_ptr<Layer>> layers;
  };

  // Derived constructors fill stages_ and head_, then call this: it names "stage{k}" the last stage whose
  // output stride is 2^k, found by shape inference at 512 px (any multiple of 32 gives the same answer).
  void finish_stages(int64_t in_chans, int64_t num_classes) {
    in_chans_ = in_chans;
    num_classes_ = num_classes;
    Shape s{1, in_chans, 512, 512};
    std::map<int64_t, std::string> last_at_stride;
    stage_strides_.clear();
    for (const auto& st : stages_) {
      for (const auto& l : st.layers) s = infer_shape(*l, s, nullptr);
      const int64_t stride = 512 / s[2];
      stage_strides_.push_back(stride);
      int64_t k = 0;
      while ((int64_t(1) << k) < stride) ++k;
      if ((int64_t(1) << k) == stride) last_at_stride[k] = st.tap;
    }
    aliases_.clear();
    for (const auto& kv : last_at_stride) aliases_.emplace_back("stage" + std::to_string(kv.first), kv.second);
  }

  std::vector<Stage> stages_;
  std::vector<std::pair<std::string, std::string>> aliases_;  // ("stage4", "features.13"), …
  std::shared_ptr<Layer> head_;                              // applied to the pooled (B, C) features

 private:
  static Var pool(const Var& f) { return ops::flatten(ops::adaptive_avg_pool2d(f, 1, 1), 1); }

  void check_input(const Shape& s) const {
    RETIKD_CHECK(s.size() == 4 && s[1] == in_chans_, arch(), ": input ", shape_str(s), " must be (B, ", in_chans_,
                 ", H, W)");
  }

  void walk(const Shape& input, ShapeTrace* t, std::vector<TapInfo>* taps) const {
    check_input(input);
    Shape s = input;
    std::vector<TapInfo> aliases;
    for (std::size_t i = 0; i < stages_.size(); ++i) {
      for (const auto& l : stages_[i].layers) s = infer_shape(*l, s, t);
      if (!taps) continue;
      taps->push_back({stages_[i].tap, s, "output stride " + std::to_string(stage_strides_[i])});
      for (const auto& a : aliases_)
        if (a.second == stages_[i].tap)
          aliases.push_back({a.first, s, "= " + a.second + " (last output at stride " +
                                             std::to_string(int64_t(1) << std::stoi(a.first.substr(5))) + ")"});
    }
    const Shape pooled{s[0], s[1]};
    infer_shape(*head_, pooled, t);
    if (!taps) return;
    taps->insert(taps->end(), aliases.begin(), aliases.end());
    taps->push_back({"features", s, "= forward_features (final feature map)"});
    taps->push_back({"pre_logits", pooled, "global average pool of features"});
  }

  int64_t in_chans_ = 3;
  int64_t num_classes_ = 0;
  std::vector<int64_t> stage_strides_;  // nominal output stride of each stage
};

}  // namespace nn
}  // namespace retikd
