// retikd/optim/optim.hpp — optimizers and schedules with PyTorch's exact update rules: SGD (momentum,
// dampening, Nesterov, coupled weight decay), AdamW (decoupled weight decay, bias correction), parameter
// groups with their own learning rate and weight decay, a linear warm-up + cosine schedule, and global
// gradient-norm clipping.
//
// Matching PyTorch's formulas (not merely "an SGD") matters: recipes from the papers (lr 1e-4, wd 1e-5, cosine
// over 50 epochs) only transfer when the update is the same. The state (momentum buffers, Adam moments, step
// counts) is exposed by name so checkpoints can save and restore it bit for bit.
//
// float32 parameters on a GPU (RETIKD_WITH_CUDA) are updated by retikd/cuda/optim.hpp's fused kernel: one launch
// per step over all of them, the same formulas in float; their state tensors live on the parameter's device.
#pragma once

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/core/error.hpp"
#include "retikd/core/parallel.hpp"
#include "retikd/core/tensor.hpp"
#ifdef RETIKD_WITH_CUDA
#include "retikd/cuda/optim.hpp"
#endif

namespace retikd {
namespace optim {

struct ParamGroup {
  std::vector<Var> params;
  double lr = 1e-3;
  double weight_decay = 0.0;
  std::string name;  // for logs ("backbone", "head", "discriminator")
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // Applies one update to every parameter that has a gradient (parameters without one are skipped, as in
  // PyTorch).
  virtual void step() = 0;
  void zero_grad() {
    for (auto& g : groups_)
      for (auto& p : g.params) p.zero_grad();
  }
  std::vector<ParamGroup>& groups() { return groups_; }
  const std::vector<ParamGroup>& groups() const { return groups_; }
  // Named state tensors ("3.exp_avg"), for checkpoints; load_state restores them (shapes checked).
  std::map<std::string, Tensor> state() const {
    std::map<std::string, Tensor> out;
    for (const auto& kv : state_) out[kv.first] = kv.second;
    out["step"] = Tensor::scalar(static_cast<double>(step_count_), DType::float64);
    return out;
  }
  void load_state(const std::map<std::string, Tensor>& s) {
    state_.clear();
    for (const auto& kv : s) {
      if (kv.first == "step") {
        const double step = kv.second.item<double>();
        RETIKD_CHECK(valid_step_count(step), "optimizer: step count ", step, " is not a whole number from 0 to 2^53");
        step_count_ = static_cast<int64_t>(step);
        continue;
      }
      state_[kv.first] = kv.second.clone();
    }
  }
  int64_t step_count() const { return step_count_; }
  // What load_state accepts as a step count (stored as float64: whole numbers up to 2^53 are exact).
  static bool valid_step_count(double step) {
    return std::isfinite(step) && step >= 0 && step <= 9007199254740992.0 && step == std::floor(step);
  }

 protected:
  explicit Optimizer(std::vector<ParamGroup> groups) : groups_(std::move(groups)) {
    for (const auto& g : groups_)
      for (const auto& p : g.params) {
        RETIKD_CHECK(p.defined() && p.requires_grad(), "optimizer: group '", g.name,
                     "' holds a parameter that does not require a gradient");
#ifdef RETIKD_WITH_CUDA
        RETIKD_CHECK(p.device().is_cpu() || p.value().dtype() == DType::float32, "optimizer: the fused CUDA "
                     "update takes float32 parameters, got ", p.value().describe());
#else
        RETIKD_CHECK(p.device().is_cpu(), "optimizer: the CPU update got a parameter on ", p.device().to_string(),
                     " (this build has no CUDA)");
#endif
      }
  }
  // The state tensor `name` of parameter `index`, created as zeros shaped like the parameter on first use.
  Tensor& slot(std::size_t index, const char* name, const Tensor& like, bool* created = nullptr) {
    const std::string key = std::to_string(index) + "." + name;
    auto it = state_.find(key);
    if (it == state_.end()) {
      if (created) *created = true;
      it = state_.emplace(key, Tensor::zeros(like.shape(), like.dtype(), like.device())).first;
    } else if (created) {
      *created = false;
    }
    RETIKD_CHECK(it->second.shape() == like.shape(), "optimizer: state '", key, "' has shape ",
                 shape_str(it->second.shape()), " but the parameter is ", shape_str(like.shape()));
    return it->second;
  }
  // Calls fn(group, param_index, value, grad) on contiguous float32/float64 data: host parameters (on_gpu
  // false) or GPU parameters (on_gpu true).
  template <class Fn>
  void for_each_param(Fn&& fn, bool on_gpu = false) {
    std::size_t index = 0;
    for (auto& g : groups_) {
      for (auto& p : g.params) {
        const std::size_t i = index++;
        if (!p.grad().defined() || p.value().is_cuda() != on_gpu) continue;
        Tensor& value = p.mutable_value();
        RETIKD_CHECK(value.is_contiguous(), "optimizer: parameter ", i, " is not contiguous");
        Tensor grad = p.grad().contiguous();
        RETIKD_CHECK(grad.dtype() == value.dtype(), "optimizer: gradient ", grad.describe(),
                     " does not match parameter ", value.describe());
        fn(g, i, value, grad);
      }
    }
  }

  std::vector<ParamGroup> groups_;
  std::map<std::string, Tensor> state_;
  int64_t step_count_ = 0;
};

struct SGDOptions {
  double lr = 0.01;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

// PyTorch's SGD: g ← ∇ + wd·p; b ← μ·b + (1−τ)·g (b = g on the first step); g ← g + μ·b (Nesterov) or b;
// p ← p − lr·g.
class SGD : public Optimizer {
 public:
  SGD(std::vector<Var> params, SGDOptions opt) : SGD(std::vector<ParamGroup>{{params, opt.lr, opt.weight_decay, ""}}, opt) {}
  SGD(std::vector<ParamGroup> groups, SGDOptions opt) : Optimizer(std::move(groups)), opt_(opt) {
    RETIKD_CHECK(!opt.nesterov || (opt.momentum > 0 && opt.dampening == 0), "SGD: Nesterov momentum needs "
                 "momentum > 0 and zero dampening");
  }
  void step() override {
    ++step_count_;
    for_each_param([&](ParamGroup& g, std::size_t i, Tensor& value, const Tensor& grad) {
      bool fresh = false;
      Tensor* buf = opt_.momentum != 0 ? &slot(i, "momentum_buffer", value, &fresh) : nullptr;
      dispatch_floating(value.dtype(), "SGD", [&](auto tag) {
        using T = typename decltype(tag)::type;
        T* p = value.data<T>();
        const T* d = grad.data<T>();
        T* b = buf ? buf->data<T>() : nullptr;
        const T lr = T(g.lr), wd = T(g.weight_decay), mu = T(opt_.momentum), damp = T(opt_.dampening);
        const bool nesterov = opt_.nesterov;
        parallel_for(0, value.numel(), 1 << 14, [&](int64_t lo, int64_t hi) {
          for (int64_t k = lo; k < hi; ++k) {
            T gk = d[k] + wd * p[k];
            if (b) {
              b[k] = fresh ? gk : mu * b[k] + (T(1) - damp) * gk;
              gk = nesterov ? gk + mu * b[k] : b[k];
            }
            p[k] -= lr * gk;
          }
        });
      });
    });
#ifdef RETIKD_WITH_CUDA
    std::vector<cuda::SGDTensor> table;
    std::vector<Tensor> keep;  // contiguous gradient copies alive until the launch
    int device = -1;
    for_each_param(
        [&](ParamGroup& g, std::size_t i, Tensor& value, const Tensor& grad) {
          bool fresh = false;
          Tensor* buf = opt_.momentum != 0 ? &slot(i, "momentum_buffer", value, &fresh) : nullptr;
          const cuda::prog::SGDScalars s{static_cast<float>(g.lr), static_cast<float>(g.weight_decay),
                           static_cast<float>(opt_.momentum), static_cast<float>(opt_.dampening),
                           opt_.nesterov ? 1 : 0, fresh ? 1 : 0};
          table.push_back({static_cast<float*>(value.raw_data()), static_cast<const float*>(grad.raw_data()),
                           buf ? static_cast<float*>(buf->raw_data()) : nullptr, value.numel(), s});
          keep.push_back(grad);
          RETIKD_CHECK(device < 0 || device == value.device().index, "SGD: the fused CUDA update needs every GPU "
                       "parameter on one device");
          device = value.device().index;
        },
        true);
    if (!table.empty()) cuda::sgd_multi(table.data(), static_cast<int>(table.size()), device);
#endif
  }
  const SGDOptions& options() const { return opt_; }

 private:
  SGDOptions opt_;
};

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
};

// PyTorch's AdamW: p ← p·(1 − lr·wd); m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²;
// p ← p − lr · (m / (1−β1ᵗ)) / (√(v / (1−β2ᵗ)) + ε).
class AdamW : public Optimizer {
 public:
  AdamW(std::vector<Var> params, AdamWOptions opt)
      : AdamW(std::vector<ParamGroup>{{params, opt.lr, opt.weight_decay, ""}}, opt) {}
  AdamW(std::vector<ParamGroup> groups, AdamWOptions opt) : Optimizer(std::move(groups)), opt_(opt) {
    RETIKD_CHECK(opt.beta1 >= 0 && opt.beta1 < 1 && opt.beta2 >= 0 && opt.beta2 < 1, "AdamW: betas must be in "
                 "[0, 1), got ", opt.beta1, ", ", opt.beta2);
  }
  void step() override {
    ++step_count_;
    const double t = static_cast<double>(step_count_);
    const double bc1 = 1.0 - std::pow(opt_.beta1, t), bc2 = 1.0 - std::pow(opt_.beta2, t);
    for_each_param([&](ParamGroup& g, std::size_t i, Tensor& value, const Tensor& grad) {
      Tensor& m = slot(i, "exp_avg", value);
      Tensor& v = slot(i, "exp_avg_sq", value);
      dispatch_floating(value.dtype(), "AdamW", [&](auto tag) {
        using T = typename decltype(tag)::type;
        T* p = value.data<T>();
        const T* d = grad.data<T>();
        T* pm = m.data<T>();
        T* pv = v.data<T>();
        const T decay = T(1.0 - g.lr * g.weight_decay), b1 = T(opt_.beta1), b2 = T(opt_.beta2);
        const T step_size = T(g.lr / bc1), inv_sqrt_bc2 = T(1.0 / std::sqrt(bc2)), eps = T(opt_.eps);
        parallel_for(0, value.numel(), 1 << 14, [&](int64_t lo, int64_t hi) {
          for (int64_t k = lo; k < hi; ++k) {
            p[k] *= decay;
            pm[k] = b1 * pm[k] + (T(1) - b1) * d[k];
            pv[k] = b2 * pv[k] + (T(1) - b2) * d[k] * d[k];
            p[k] -= step_size * pm[k] / (std::sqrt(pv[k]) * inv_sqrt_bc2 + eps);
          }
        });
      });
    });
#ifdef RETIKD_WITH_CUDA
    std::vector<cuda::AdamWTensor> table;
    std::vector<Tensor> keep;  // contiguous gradient copies alive until the launch
    int device = -1;
    for_each_param(
        [&](ParamGroup& g, std::size_t i, Tensor& value, const Tensor& grad) {
          Tensor& m = slot(i, "exp_avg", value);
          Tensor& v = slot(i, "exp_avg_sq", value);
          // The CPU's constants, computed in double and rounded once, as there.
          const cuda::prog::AdamWScalars s{static_cast<float>(1.0 - g.lr * g.weight_decay),
                                           static_cast<float>(opt_.beta1),
                                           static_cast<float>(opt_.beta2),
                                           static_cast<float>(g.lr / bc1),
                                           static_cast<float>(1.0 / std::sqrt(bc2)),
                                           static_cast<float>(opt_.eps)};
          table.push_back({static_cast<float*>(value.raw_data()), static_cast<const float*>(grad.raw_data()),
                           static_cast<float*>(m.raw_data()), static_cast<float*>(v.raw_data()), value.numel(), s});
          keep.push_back(grad);
          RETIKD_CHECK(device < 0 || device == value.device().index, "AdamW: the fused CUDA update needs every GPU "
                       "parameter on one device");
          device = value.device().index;
        },
        true);
    if (!table.empty()) cuda::adamw_multi(table.data(), static_cast<int>(table.size()), device);
#endif
  }
  const AdamWOptions& options() const { return opt_; }

 private:
  AdamWOptions opt_;
};

// Linear warm-up from 0 to each group's base lr over `warmup_steps`, then cosine decay to
// base·min_ratio at `total_steps` (timm's / the papers' schedule, stepped per iteration).
class WarmupCosineSchedule {
 public:
  WarmupCosineSchedule(Optimizer& opt, int64_t warmup_steps, int64_t total_steps, double min_ratio = 0.0)
      : opt_(opt), warmup_(warmup_steps), total_(total_steps), min_ratio_(min_ratio) {
    RETIKD_CHECK(total_steps > 0 && warmup_steps >= 0 && warmup_steps <= total_steps, "WarmupCosineSchedule: "
                 "need 0 <= warmup (", warmup_steps, ") <= total (", total_steps, ") and total > 0");
    for (const auto& g : opt.groups()) base_lrs_.push_back(g.lr);
    apply();
  }
  // The multiplier of the base lr at step s.
  double factor(int64_t s) const {
    if (warmup_ > 0 && s < warmup_) return static_cast<double>(s + 1) / static_cast<double>(warmup_);
    if (s >= total_) return min_ratio_;
    const double progress = static_cast<double>(s - warmup_) / static_cast<double>(std::max<int64_t>(1, total_ - warmup_));
    return min_ratio_ + (1.0 - min_ratio_) * 0.5 * (1.0 + std::cos(kPi * progress));
  }
  // Advances one step and sets every group's lr.
  void step() {
    ++step_;
    apply();
  }
  int64_t current_step() const { return step_; }
  void set_step(int64_t s) {
    step_ = s;
    apply();
  }

 private:
  static constexpr double kPi = 3.14159265358979323846;
  void apply() {
    const double f = factor(step_);
    for (std::size_t i = 0; i < base_lrs_.size(); ++i) opt_.groups()[i].lr = base_lrs_[i] * f;
  }
  Optimizer& opt_;
  int64_t warmup_, total_;
  double min_ratio_;
  std::vector<double> base_lrs_;
  int64_t step_ = 0;
};

// Scales all gradients so their global L2 norm is at most max_norm; returns the norm before clipping.
inline double clip_grad_norm(const std::vector<Var>& params, double max_norm) {
  double total = 0.0;
  for (const Var& p : params) {
    if (!p.grad().defined()) continue;
    for (double v : p.grad().to_vector<double>()) total += v * v;
  }
  total = std::sqrt(total);
  if (total > max_norm && total > 0) {
    const double scale = max_norm / (total + 1e-6);
    for (Var p : params) {
      if (!p.grad().defined()) continue;
      Tensor g = p.grad().contiguous().clone();
      dispatch_floating(g.dtype(), "clip_grad_norm", [&](auto tag) {
        using T = typename decltype(tag)::type;
        T* d = g.data<T>();
        for (int64_t k = 0; k < g.numel(); ++k) d[k] = static_cast<T>(d[k] * scale);
      });
      p.mutable_grad() = g;
    }
  }
  return total;
}

}  // namespace optim
}  // namespace retikd
