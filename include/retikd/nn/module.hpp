// retikd/nn/module.hpp — the Module base: named parameters, buffers and children, train/eval, freezing,
// device/dtype moves, and state dicts whose names follow torchvision / timm ("features.3.conv.0.weight",
// "blocks.11.attn.qkv.weight") so weights move across from PyTorch through safetensors unchanged.
//
// Registration order is kept (sequences, not maps), so state_dict() lists entries in the order PyTorch does.
// Parameters are Vars: the handles handed to an optimizer share storage with the module, so an update is
// seen by the next forward without copying.
#pragma once

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/core/error.hpp"
#include "retikd/core/tensor.hpp"

namespace retikd {
namespace nn {

class Module : public std::enable_shared_from_this<Module> {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // ---- registration --------------------------------------------------------------------------------------
  Var& register_parameter(const std::string& name, Tensor value, bool requires_grad = true) {
    check_new_name(name);
    params_.emplace_back(name, Var(std::move(value), requires_grad));
    return params_.back().second;
  }
  Tensor& register_buffer(const std::string& name, Tensor value) {
    check_new_name(name);
    buffers_.emplace_back(name, std::move(value));
    return buffers_.back().second;
  }
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    check_new_name(name);
    RETIKD_CHECK(module != nullptr, "register_module: '", name, "' is null");
    children_.emplace_back(name, module);
    return module;
  }

  // ---- access --------------------------------------------------------------------------------------------
  Var& parameter(const std::string& name) {
    for (auto& p : params_)
      if (p.first == name) return p.second;
    fail("Module: no parameter '", name, "' (has ", list_names(), ")");
  }
  Tensor& buffer(const std::string& name) {
    for (auto& b : buffers_)
      if (b.first == name) return b.second;
    fail("Module: no buffer '", name, "' (has ", list_names(), ")");
  }
  std::shared_ptr<Module> child(const std::string& name) const {
    for (const auto& c : children_)
      if (c.first == name) return c.second;
    fail("Module: no child '", name, "' (has ", list_names(), ")");
  }
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& named_children() const { return children_; }

  // Every parameter with its dotted name, depth first in registration order.
  std::vector<std::pair<std::string, Var>> named_parameters() const {
    std::vector<std::pair<std::string, Var>> out;
    visit("", [&](const std::string& prefix, const Module& m) {
      for (const auto& p : m.params_) out.emplace_back(prefix + p.first, p.second);
    });
    return out;
  }
  std::vector<Var> parameters() const {
    std::vector<Var> out;
    for (auto& p : named_parameters()) out.push_back(p.second);
    return out;
  }
  // Parameters that currently require a gradient (what an optimizer should get after freezing).
  std::vector<Var> trainable_parameters() const {
    std::vector<Var> out;
    for (auto& p : named_parameters())
      if (p.second.requires_grad()) out.push_back(p.second);
    return out;
  }
  std::vector<std::pair<std::string, Tensor*>> named_buffers() {
    std::vector<std::pair<std::string, Tensor*>> out;
    visit_mutable("", [&](const std::string& prefix, Module& m) {
      for (auto& b : m.buffers_) out.emplace_back(prefix + b.first, &b.second);
    });
    return out;
  }
  int64_t num_parameters(bool trainable_only = false) const {
    int64_t n = 0;
    for (auto& p : named_parameters())
      if (!trainable_only || p.second.requires_grad()) n += p.second.numel();
    return n;
  }

  // ---- modes ---------------------------------------------------------------------------------------------
  virtual void train(bool on = true) {
    training_ = on;
    for (auto& c : children_) c.second->train(on);
  }
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void freeze() { set_requires_grad(false); }
  void unfreeze() { set_requires_grad(true); }
  void set_requires_grad(bool flag) {
    visit_mutable("", [&](const std::string&, Module& m) {
      for (auto& p : m.params_) p.second.set_requires_grad(flag);
    });
  }
  void zero_grad() {
    visit_mutable("", [&](const std::string&, Module& m) {
      for (auto& p : m.params_) p.second.zero_grad();
    });
  }
  // Moves every parameter and buffer (in place: optimizers built before the move would hold stale state).
  void to(Device device) {
    visit_mutable("", [&](const std::string&, Module& m) {
      for (auto& p : m.params_) p.second.mutable_value() = p.second.value().to(device);
      for (auto& b : m.buffers_) b.second = b.second.to(device);
    });
  }
  // Converts floating parameters and buffers (integer buffers such as counters keep their dtype).
  void to(DType dtype) {
    RETIKD_CHECK(is_floating(dtype), "Module::to: target dtype ", dtype_name(dtype), " is not floating");
    visit_mutable("", [&](const std::string&, Module& m) {
      for (auto& p : m.params_) p.second.mutable_value() = p.second.value().to(dtype);
      for (auto& b : m.buffers_)
        if (is_floating(b.second.dtype())) b.second = b.second.to(dtype);
    });
  }

  // ---- state dicts ---------------------------------------------------------------------------------------
  // Parameters and buffers by dotted name, in registration order; the tensors are shared, not copied.
  std::vector<std::pair<std::string, Tensor>> state_dict() const {
    std::vector<std::pair<std::string, Tensor>> out;
    visit("", [&](const std::string& prefix, const Module& m) {
      for (const auto& p : m.params_) out.emplace_back(prefix + p.first, p.second.value());
      for (const auto& b : m.buffers_) out.emplace_back(prefix + b.first, b.second);
    });
    return out;
  }
  // Copies values in (converting dtype and device to the module's). Strict: any missing, unexpected or
  // mis-shaped name fails, and the error lists all of them; nothing is modified unless all checks pass.
  void load_state_dict(const std::map<std::string, Tensor>& state, bool strict = true) {
    std::vector<std::pair<std::string, Tensor*>> targets;
    visit_mutable("", [&](const std::string& prefix, Module& m) {
      for (auto& p : m.params_) targets.emplace_back(prefix + p.first, &p.second.mutable_value());
      for (auto& b : m.buffers_) targets.emplace_back(prefix + b.first, &b.second);
    });
    std::vector<std::string> missing, mismatched, unexpected;
    std::map<std::string, bool> known;
    for (auto& t : targets) {
      known[t.first] = true;
      auto it = state.find(t.first);
      if (it == state.end()) {
        missing.push_back(t.first);
      } else if (it->second.shape() != t.second->shape()) {
        mismatched.push_back(t.first + " " + shape_str(it->second.shape()) + " vs the module's " +
                             shape_str(t.second->shape()));
      }
    }
    for (const auto& kv : state)
      if (!known.count(kv.first)) unexpected.push_back(kv.first);
    if (!mismatched.empty() || (strict && (!missing.empty() || !unexpected.empty()))) {
      std::ostringstream msg;
      msg << "load_state_dict: state does not match the module";
      auto list = [&](const char* what, const std::vector<std::string>& v) {
        if (v.empty()) return;
        msg << "\n  " << what << " (" << v.size() << "):";
        // Every name of a real model (a few hundred), but not the 200,000 of a hostile file.
        const std::size_t shown = std::min<std::size_t>(v.size(), 500);
        for (std::size_t i = 0; i < shown; ++i) msg << "\n    " << v[i];
        if (shown < v.size()) msg << "\n    ... and " << v.size() - shown << " more";
      };
      list("missing", missing);
      list("unexpected", unexpected);
      list("shape mismatch", mismatched);
      throw Error(msg.str());
    }
    for (auto& t : targets) {
      auto it = state.find(t.first);
      if (it != state.end()) t.second->copy_(it->second);
    }
  }
  void load_state_dict(const std::vector<std::pair<std::string, Tensor>>& state, bool strict = true) {
    std::map<std::string, Tensor> m(state.begin(), state.end());
    load_state_dict(m, strict);
  }

 protected:
  bool training_ = true;

 private:
  void check_new_name(const std::string& name) const {
    RETIKD_CHECK(!name.empty() && name.find('.') == std::string::npos, "Module: invalid name '", name,
                 "' (non-empty, no dots: nesting comes from child modules)");
    for (const auto& p : params_) RETIKD_CHECK(p.first != name, "Module: name '", name, "' already registered");
    for (const auto& b : buffers_) RETIKD_CHECK(b.first != name, "Module: name '", name, "' already registered");
    for (const auto& c : children_) RETIKD_CHECK(c.first != name, "Module: name '", name, "' already registered");
  }
  std::string list_names() const {
    std::string s;
    auto add = [&](const std::string& n) { s += (s.empty() ? "" : ", ") + n; };
    for (const auto& p : params_) add(p.first);
    for (const auto& b : buffers_) add(b.first);
    for (const auto& c : children_) add(c.first);
    return s.empty() ? "nothing" : s;
  }
  void visit(const std::string& prefix, const std::function<void(const std::string&, const Module&)>& fn) const {
    fn(prefix, *this);
    for (const auto& c : children_) c.second->visit(prefix + c.first + ".", fn);
  }
  void visit_mutable(const std::string& prefix, const std::function<void(const std::string&, Module&)>& fn) {
    fn(prefix, *this);
    for (auto& c : children_) c.second->visit_mutable(prefix + c.first + ".", fn);
  }

  // deques: push_back keeps references valid, so a layer may keep the Tensor& / Var& that registration
  // returned (batch norm updates its running statistics through them).
  std::deque<std::pair<std::string, Var>> params_;
  std::deque<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

// A module with one input and one output: what Sequential chains.
class Layer : public Module {
 public:
  virtual Var forward(const Var& x) = 0;
  Var operator()(const Var& x) { return forward(x); }
};

// Children named "0", "1", … as torch.nn.Sequential, applied in order.
class Sequential : public Layer {
 public:
  Sequential() = default;
  template <class M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> layer) {
    register_module(std::to_string(layers_.size()), layer);
    layers_.push_back(layer);
    return layer;
  }
  Var forward(const Var& x) override {
    Var y = x;
    for (auto& l : layers_) y = l->forward(y);
    return y;
  }
  std::size_t size() const { return layers_.size(); }
  std::shared_ptr<Layer> operator[](std::size_t i) const { return layers_.at(i); }

 private:
  std::vector<std::shared_ptr<Layer>> layers_;
};

}  // namespace nn
}  // namespace retikd
