// retikd/nn/layers.hpp — the building blocks of the four models: Linear, Conv2d, BatchNorm2d, LayerNorm,
// Dropout, DropPath, the activation modules, pooling, Flatten, and torchvision's SqueezeExcitation and
// Conv2dNormActivation. Parameter and buffer names are PyTorch's (`weight`, `bias`, `running_mean`,
// `running_var`, `num_batches_tracked`, `fc1`, `fc2`), so a model built from these lines up with a
// torchvision / timm state dict name for name.
//
// Initialisation is PyTorch's default for each layer (Linear and Conv2d: kaiming_uniform_(a=√5), i.e.
// U(±1/√fan_in), bias U(±1/√fan_in); norms: ones and zeros), drawn from the Generator passed to the
// constructor. Models re-initialise afterwards where torchvision / timm do (kaiming_normal_ fan_out, …).
//
// Randomness at forward time (dropout, stochastic depth) comes from a shared NoiseSource the model owns, so
// one seed reproduces a run and a layer built on its own still works.
//
// Every layer is also Traceable (nn/trace.hpp): output shape and multiply-accumulates without a forward.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/core/random.hpp"
#include "retikd/nn/module.hpp"
#include "retikd/nn/trace.hpp"
#include "retikd/ops/activation.hpp"
#include "retikd/ops/conv.hpp"
#include "retikd/ops/dropout.hpp"
#include "retikd/ops/elementwise.hpp"
#include "retikd/ops/matmul.hpp"
#include "retikd/ops/norm.hpp"
#include "retikd/ops/pool.hpp"
#include "retikd/ops/shape.hpp"

namespace retikd {
namespace nn {

// The random stream dropout and drop-path layers draw their masks from (shared by a whole model).
using NoiseSource = std::shared_ptr<Generator>;
inline NoiseSource make_noise(uint64_t seed = 0) { return std::make_shared<Generator>(seed); }

// Visits m and every descendant, depth first in registration order.
inline void for_each_module(Module& m, const std::function<void(Module&)>& fn) {
  fn(m);
  for (auto& c : m.named_children()) for_each_module(*c.second, fn);
}

// torchvision's _make_divisible: the nearest multiple of `divisor` (at least `divisor`, and never more
// than 10% below v) — how width multipliers round channel counts.
inline int64_t make_divisible(double v, int64_t divisor = 8) {
  int64_t new_v = std::max<int64_t>(divisor, static_cast<int64_t>(v + divisor / 2.0) / divisor * divisor);
  if (static_cast<double>(new_v) < 0.9 * v) new_v += divisor;
  return new_v;
}

// While one is alive (on this thread), Linear and Conv2d constructors leave their weights at zero instead of
// drawing PyTorch's default initialisation: for a model that re-initialises every weight itself right after
// construction (ViT-B/16 would otherwise draw 86 M numbers twice).
class DeferInit {
 public:
  DeferInit() : previous_(active()) { active() = true; }
  ~DeferInit() { active() = previous_; }
  DeferInit(const DeferInit&) = delete;
  DeferInit& operator=(const DeferInit&) = delete;
  static bool& active() {
    static thread_local bool on = false;
    return on;
  }

 private:
  bool previous_;
};

namespace detail {
inline Shape shape_with_last(Shape s, int64_t last) {
  s.back() = last;
  return s;
}
// PyTorch's default for Linear / Conv weights and biases: U(±1/√fan_in) for both.
inline void pytorch_default_init(Var& weight, Var* bias, Generator& gen) {
  kaiming_uniform_(weight.mutable_value(), gen, std::sqrt(5.0));
  if (bias && bias->defined()) {
    const int64_t fan_in = fan_in_out(weight.value()).first;
    const double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
    uniform_(bias->mutable_value(), -bound, bound, gen);
  }
}
}  // namespace detail

// ---- activations -------------------------------------------------------------------------------------------
enum class Activation { identity, relu, relu6, gelu, gelu_tanh, silu, sigmoid, tanh };

inline const char* activation_name(Activation a) {
  switch (a) {
    case Activation::identity: return "identity";
    case Activation::relu: return "relu";
    case Activation::relu6: return "relu6";
    case Activation::gelu: return "gelu";
    case Activation::gelu_tanh: return "gelu_tanh";
    case Activation::silu: return "silu";
    case Activation::sigmoid: return "sigmoid";
    case Activation::tanh: return "tanh";
  }
  return "?";
}

inline Var activate(const Var& x, Activation a) {
  switch (a) {
    case Activation::identity: return x;
    case Activation::relu: return ops::relu(x);
    case Activation::relu6: return ops::relu6(x);
    case Activation::gelu: return ops::gelu(x);
    case Activation::gelu_tanh: return ops::gelu(x, ops::GeluApprox::tanh);
    case Activation::silu: return ops::silu(x);
    case Activation::sigmoid: return ops::sigmoid(x);
    case Activation::tanh: return ops::tanh(x);
  }
  fail("activate: unknown activation");
}

// A parameter-free elementwise activation (torch.nn.ReLU, ReLU6, GELU, SiLU, Sigmoid, Tanh, Identity).
class ActivationLayer : public Layer, public Traceable {
 public:
  explicit ActivationLayer(Activation kind) : kind_(kind) {}
  Var forward(const Var& x) override { return activate(x, kind_); }
  Shape infer_shape(const Shape& in, ShapeTrace*) const override { return in; }
  Activation kind() const { return kind_; }

 private:
  Activation kind_;
};
struct Identity : ActivationLayer {
  Identity() : ActivationLayer(Activation::identity) {}
};
struct ReLU : ActivationLayer {
  ReLU() : ActivationLayer(Activation::relu) {}
};
struct ReLU6 : ActivationLayer {
  ReLU6() : ActivationLayer(Activation::relu6) {}
};
struct GELU : ActivationLayer {
  explicit GELU(bool tanh_approximation = false)
      : ActivationLayer(tanh_approximation ? Activation::gelu_tanh : Activation::gelu) {}
};
struct SiLU : ActivationLayer {
  SiLU() : ActivationLayer(Activation::silu) {}
};
struct Sigmoid : ActivationLayer {
  Sigmoid() : ActivationLayer(Activation::sigmoid) {}
};
// A module for an activation chosen at run time (Identity for Activation::identity).
inline std::shared_ptr<Layer> make_activation(Activation a) { return std::make_shared<ActivationLayer>(a); }

// ---- Linear ----------------------------------------------------------------------------------------------
// y = x · Wᵀ + b over the last dimension: weight (out, in), bias (out).
class Linear : public Layer, public Traceable {
 public:
  Var weight, bias;

  Linear(int64_t in_features, int64_t out_features, Generator& gen, bool with_bias = true)
      : in_(in_features), out_(out_features) {
    RETIKD_CHECK(in_features > 0 && out_features > 0, "Linear: features must be positive, got in=", in_features,
                 " out=", out_features);
    weight = register_parameter("weight", Tensor::zeros({out_features, in_features}));
    if (with_bias) bias = register_parameter("bias", Tensor::zeros({out_features}));
    if (!DeferInit::active()) reset_parameters(gen);
  }
  void reset_parameters(Generator& gen) { detail::pytorch_default_init(weight, &bias, gen); }

  Var forward(const Var& x) override { return ops::linear(x, weight, bias); }
  Shape infer_shape(const Shape& in, ShapeTrace* t) const override {
    RETIKD_CHECK(!in.empty() && in.back() == in_, "Linear(", in_, " → ", out_, "): input ", shape_str(in),
                 " does not end in ", in_, " features");
    Shape out = detail::shape_with_last(in, out_);
    if (t) t->add("linear", static_cast<double>(shape_numel(out)) * static_cast<double>(in_));
    return out;
  }
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }

 private:
  int64_t in_, out_;
};

// ---- Conv2d ----------------------------------------------------------------------------------------------
// weight (out, in/groups, kh, kw), bias (out). Padding may be asymmetric (ops::Conv2dOptions), or computed
// per input as TensorFlow "SAME" (use_tf_same_padding) for imported TFLite graphs.
class Conv2d : public Layer, public Traceable {
 public:
  Var weight, bias;

  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, Generator& gen,
         const ops::Conv2dOptions& opt = {}, bool with_bias = true)
      : Conv2d(in_channels, out_channels, kernel, kernel, gen, opt, with_bias) {}
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_h, int64_t kernel_w, Generator& gen,
         const ops::Conv2dOptions& opt, bool with_bias)
      : in_(in_channels), out_(out_channels), opt_(opt) {
    RETIKD_CHECK(in_channels > 0 && out_channels > 0 && kernel_h > 0 && kernel_w > 0,
                 "Conv2d: channels and kernel must be positive, got in=", in_channels, " out=", out_channels,
                 " kernel=", kernel_h, "x", kernel_w);
    RETIKD_CHECK(opt.groups >= 1 && in_channels % opt.groups == 0 && out_channels % opt.groups == 0,
                 "Conv2d: groups ", opt.groups, " must divide in_channels ", in_channels, " and out_channels ",
                 out_channels);
    weight = register_parameter("weight",
                                Tensor::zeros({out_channels, in_channels / opt.groups, kernel_h, kernel_w}));
    if (with_bias) bias = register_parameter("bias", Tensor::zeros({out_channels}));
    if (!DeferInit::active()) reset_parameters(gen);
  }
  void reset_parameters(Generator& gen) { detail::pytorch_default_init(weight, &bias, gen); }

  // TensorFlow "SAME": pads each input so the output has ceil(in / stride) positions, the odd pixel at the
  // bottom / right (the fixed padding of the options is then ignored).
  Conv2d& use_tf_same_padding(bool on = true) {
    tf_same_ = on;
    return *this;
  }
  bool tf_same_padding() const { return tf_same_; }
  const ops::Conv2dOptions& options() const { return opt_; }
  int64_t in_channels() const { return in_; }
  int64_t out_channels() const { return out_; }

  // The options used for an input of this shape (differs from options() only with TF "SAME" padding).
  ops::Conv2dOptions options_for(const Shape& in) const {
    if (!tf_same_) return opt_;
    RETIKD_CHECK(in.size() == 4, "Conv2d: input ", shape_str(in), " must be 4-D (N, C, H, W)");
    ops::Conv2dOptions o = opt_;
    return o.with_same_padding(in[2], in[3], weight.size(2), weight.size(3));
  }

  Var forward(const Var& x) override { return ops::conv2d(x, weight, bias, options_for(x.shape())); }
  Shape infer_shape(const Shape& in, ShapeTrace* t) const override {
    const auto g = ops::impl::conv2d_geometry(in, weight.shape(), options_for(in));
    Shape out{g.N, g.O, g.OH, g.OW};
    if (t) t->add("conv", static_cast<double>(shape_numel(out)) * static_cast<double>(g.K));
    return out;
  }

 private:
  int64_t in_, out_;
  ops::Conv2dOptions opt_;
  bool tf_same_ = false;
};

// ---- normalisation ---------------------------------------------------------------------------------------
// torch.nn.BatchNorm2d over (N, C, H, W): weight / bias (C), buffers running_mean (C), running_var (C) and
// num_batches_tracked (0-D int64). Training normalises with the batch statistics and updates the running
// ones — running ← (1 − m)·running + m·batch, the variance unbiased — with m = momentum, or 1/num_batches
// (a cumulative average) when momentum < 0 (PyTorch's momentum=None). Evaluation uses the running ones.
// Replaces training-mode batch norm (batch statistics) when installed: dist/sync_batchnorm.hpp computes the
// statistics over every rank's batch. forward() must update running_mean / running_var (when defined) as
// ops::batch_norm does; num_batches_tracked is already counted.
struct BatchNormTrainingHook {
  virtual ~BatchNormTrainingHook() = default;
  virtual Var forward(const Var& x, const Var& weight, const Var& bias, Tensor& running_mean, Tensor& running_var,
                      double momentum, double eps) = 0;
};
inline BatchNormTrainingHook*& batch_norm_training_hook() {
  static BatchNormTrainingHook* hook = nullptr;
  return hook;
}

class BatchNorm2d : public Layer, public Traceable {
 public:
  Var weight, bias;

  explicit BatchNorm2d(int64_t num_features, double eps = 1e-5, double momentum = 0.1, bool affine = true,
                       bool track_running_stats = true)
      : C_(num_features), eps_(eps), momentum_(momentum) {
    RETIKD_CHECK(num_features > 0, "BatchNorm2d: num_features must be positive, got ", num_features);
    RETIKD_CHECK(eps > 0, "BatchNorm2d: eps must be positive, got ", eps);
    if (affine) {
      weight = register_parameter("weight", Tensor::ones({num_features}));
      bias = register_parameter("bias", Tensor::zeros({num_features}));
    }
    if (track_running_stats) {
      running_mean_ = &register_buffer("running_mean", Tensor::zeros({num_features}));
      running_var_ = &register_buffer("running_var", Tensor::ones({num_features}));
      num_batches_ = &register_buffer("num_batches_tracked", Tensor::zeros({}, DType::int64));
    }
  }

  Var forward(const Var& x) override {
    RETIKD_CHECK(x.dim() == 4 && x.size(1) == C_, "BatchNorm2d(", C_, "): input ", shape_str(x.shape()),
                 " must be (N, ", C_, ", H, W)");
    const bool tracking = running_mean_ != nullptr;
    const bool use_batch_stats = is_training() || !tracking;
    double factor = momentum_;
    if (is_training() && tracking) {
      const int64_t n = num_batches_->item<int64_t>() + 1;
      num_batches_->fill_(static_cast<double>(n));
      if (momentum_ < 0) factor = 1.0 / static_cast<double>(n);
    }
    if (stats_ != nullptr) record(x.value());
    Tensor none_mean, none_var;
    Tensor& rm = tracking ? *running_mean_ : none_mean;
    Tensor& rv = tracking ? *running_var_ : none_var;
    if (use_batch_stats && is_training())
      if (BatchNormTrainingHook* hook = batch_norm_training_hook())
        return hook->forward(x, weight, bias, rm, rv, factor, eps_);
    return ops::batch_norm(x, weight, bias, rm, rv, use_batch_stats, factor, eps_);
  }
  Shape infer_shape(const Shape& in, ShapeTrace*) const override {
    RETIKD_CHECK(in.size() == 4 && in[1] == C_, "BatchNorm2d(", C_, "): input ", shape_str(in), " must be (N, ",
                 C_, ", H, W)");
    return in;
  }

  int64_t num_features() const { return C_; }
  double eps() const { return eps_; }
  double momentum() const { return momentum_; }
  bool tracks_running_stats() const { return running_mean_ != nullptr; }
  Tensor& running_mean() { return checked(running_mean_, "running_mean"); }
  Tensor& running_var() { return checked(running_var_, "running_var"); }
  Tensor& num_batches_tracked() { return checked(num_batches_, "num_batches_tracked"); }

  // Per-channel sums of the inputs of every forward while recording (nn/batchnorm_recalibration.hpp): what a
  // BatchNorm's input distribution is on given data, without changing what forward computes.
  struct InputStats {
    std::vector<double> sum, sum_sq;
    int64_t count = 0;  // values per channel
  };
  void record_input_stats(InputStats* stats) { stats_ = stats; }

 private:
  void record(const Tensor& x) {
    const Tensor v = x.to(Device::cpu()).to(DType::float64).contiguous();
    const int64_t n = v.size(0), hw = v.size(2) * v.size(3);
    if (stats_->sum.empty()) stats_->sum.assign(C_, 0.0), stats_->sum_sq.assign(C_, 0.0);
    const double* p = v.data<double>();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < C_; ++c) {
        const double* q = p + (i * C_ + c) * hw;
        double s = 0, s2 = 0;
        for (int64_t k = 0; k < hw; ++k) s += q[k], s2 += q[k] * q[k];
        stats_->sum[c] += s;
        stats_->sum_sq[c] += s2;
      }
    stats_->count += n * hw;
  }
  InputStats* stats_ = nullptr;
  Tensor& checked(Tensor* t, const char* what) {
    RETIKD_CHECK(t != nullptr, "BatchNorm2d: ", what, " is not tracked (track_running_stats = false)");
    return *t;
  }
  int64_t C_;
  double eps_, momentum_;
  // Point into the Module's buffer deque, whose elements never move (dtype / device moves reassign them).
  Tensor* running_mean_ = nullptr;
  Tensor* running_var_ = nullptr;
  Tensor* num_batches_ = nullptr;
};

// torch.nn.LayerNorm over the trailing dims `normalized_shape` (timm's ViT uses eps = 1e-6).
class LayerNorm : public Layer, public Traceable {
 public:
  Var weight, bias;

  explicit LayerNorm(int64_t features, double eps = 1e-5, bool affine = true, bool with_bias = true)
      : LayerNorm(Shape{features}, eps, affine, with_bias) {}
  LayerNorm(Shape normalized_shape, double eps, bool affine, bool with_bias)
      : shape_(std::move(normalized_shape)), eps_(eps) {
    RETIKD_CHECK(!shape_.empty() && shape_numel(shape_) > 0, "LayerNorm: invalid normalized_shape ",
                 shape_str(shape_));
    if (affine) {
      weight = register_parameter("weight", Tensor::ones(shape_));
      if (with_bias) bias = register_parameter("bias", Tensor::zeros(shape_));
    }
  }
  Var forward(const Var& x) override { return ops::layer_norm(x, shape_, weight, bias, eps_); }
  Shape infer_shape(const Shape& in, ShapeTrace*) const override {
    bool ok = in.size() >= shape_.size();
    for (std::size_t i = 0; ok && i < shape_.size(); ++i) ok = in[in.size() - shape_.size() + i] == shape_[i];
    RETIKD_CHECK(ok, "LayerNorm", shape_str(shape_), ": input ", shape_str(in), " does not end in ",
                 shape_str(shape_));
    return in;
  }
  const Shape& normalized_shape() const { return shape_; }
  double eps() const { return eps_; }

 private:
  Shape shape_;
  double eps_;
};

// ---- stochastic regularisers -------------------------------------------------------------------------------
// Inverted dropout (identity in eval mode or with p = 0).
class Dropout : public Layer, public Traceable {
 public:
  explicit Dropout(double p = 0.5, NoiseSource noise = nullptr) : p_(p), noise_(noise ? noise : make_noise()) {
    RETIKD_CHECK(p >= 0.0 && p <= 1.0, "Dropout: p must be in [0, 1], got ", p);
  }
  Var forward(const Var& x) override { return ops::dropout(x, p_, is_training(), *noise_); }
  Shape infer_shape(const Shape& in, ShapeTrace*) const override { return in; }
  double p() const { return p_; }
  void set_noise(NoiseSource noise) { noise_ = std::move(noise); }

 private:
  double p_;
  NoiseSource noise_;
};

// Stochastic depth on a residual branch (timm's DropPath, torchvision's StochasticDepth(mode="row")): each
// sample is dropped with probability p, survivors scaled by 1/(1−p).
class DropPath : public Layer, public Traceable {
 public:
  explicit DropPath(double p = 0.0, NoiseSource noise = nullptr) : p_(p), noise_(noise ? noise : make_noise()) {
    RETIKD_CHECK(p >= 0.0 && p <= 1.0, "DropPath: p must be in [0, 1], got ", p);
  }
  Var forward(const Var& x) override { return ops::drop_path(x, p_, is_training(), *noise_); }
  Shape infer_shape(const Shape& in, ShapeTrace*) const override { return in; }
  double p() const { return p_; }
  void set_noise(NoiseSource noise) { noise_ = std::move(noise); }

 private:
  double p_;
  NoiseSource noise_;
};

// ---- pooling and reshaping ---------------------------------------------------------------------------------
class MaxPool2d : public Layer, public Traceable {
 public:
  MaxPool2d(int64_t kernel, int64_t stride, int64_t padding = 0, bool ceil_mode = false)
      : k_(kernel), s_(stride), p_(padding), ceil_(ceil_mode) {}
  Var forward(const Var& x) override { return ops::max_pool2d(x, k_, s_, p_, ceil_); }
  Shape infer_shape(const Shape& in, ShapeTrace*) const override {
    const auto g = ops::impl::pool2d_geometry("MaxPool2d", in, k_, s_, p_, ceil_);
    return {g.N, g.C, g.OH, g.OW};
  }
  int64_t kernel() const { return k_; }
  int64_t stride() const { return s_; }
  int64_t padding() const { return p_; }
  bool ceil_mode() const { return ceil_; }

 private:
  int64_t k_, s_, p_;
  bool ceil_;
};

class AdaptiveAvgPool2d : public Layer, public Traceable {
 public:
  explicit AdaptiveAvgPool2d(int64_t out_h = 1, int64_t out_w = 1) : oh_(out_h), ow_(out_w) {}
  Var forward(const Var& x) override { return ops::adaptive_avg_pool2d(x, oh_, ow_); }
  Shape infer_shape(const Shape& in, ShapeTrace*) const override {
    RETIKD_CHECK(in.size() == 4, "AdaptiveAvgPool2d: input ", shape_str(in), " must be 4-D (N, C, H, W)");
    return {in[0], in[1], oh_, ow_};
  }
  int64_t output_h() const { return oh_; }
  int64_t output_w() const { return ow_; }

 private:
  int64_t oh_, ow_;
};

// torch.flatten(x, start, end) as a module (torch.nn.Flatten defaults: dims 1..−1).
class Flatten : public Layer, public Traceable {
 public:
  explicit Flatten(int64_t start = 1, int64_t end = -1) : start_(start), end_(end) {}
  Var forward(const Var& x) override { return ops::flatten(x, start_, end_); }
  Shape infer_shape(const Shape& in, ShapeTrace*) const override {
    const int64_t n = static_cast<int64_t>(in.size());
    const int64_t s = wrap_dim(start_, n, "Flatten"), e = wrap_dim(end_, n, "Flatten");
    Shape out(in.begin(), in.begin() + s);
    int64_t m = 1;
    for (int64_t d = s; d <= e; ++d) m *= in[d];
    out.push_back(m);
    out.insert(out.end(), in.begin() + e + 1, in.end());
    return out;
  }
  int64_t start_dim() const { return start_; }
  int64_t end_dim() const { return end_; }

 private:
  int64_t start_, end_;
};

// ---- composite blocks --------------------------------------------------------------------------------------
// torchvision.ops.SqueezeExcitation: s = σ(fc2(act(fc1(avgpool(x))))), y = x · s per channel, where fc1 / fc2
// are 1×1 convolutions with bias (input → squeeze → input channels).
class SqueezeExcitation : public Layer, public Traceable {
 public:
  std::shared_ptr<Conv2d> fc1, fc2;

  SqueezeExcitation(int64_t input_channels, int64_t squeeze_channels, Generator& gen,
                    Activation activation = Activation::relu, Activation scale_activation = Activation::sigmoid)
      : act_(activation), scale_act_(scale_activation) {
    fc1 = register_module("fc1", std::make_shared<Conv2d>(input_channels, squeeze_channels, 1, gen));
    fc2 = register_module("fc2", std::make_shared<Conv2d>(squeeze_channels, input_channels, 1, gen));
  }
  Var scale(const Var& x) {  // (N, C, 1, 1)
    Var s = ops::adaptive_avg_pool2d(x, 1, 1);
    s = activate(fc1->forward(s), act_);
    return activate(fc2->forward(s), scale_act_);
  }
  Var forward(const Var& x) override { return ops::mul(x, scale(x)); }
  Shape infer_shape(const Shape& in, ShapeTrace* t) const override {
    RETIKD_CHECK(in.size() == 4, "SqueezeExcitation: input ", shape_str(in), " must be 4-D (N, C, H, W)");
    Shape s{in[0], in[1], 1, 1};
    fc2->infer_shape(fc1->infer_shape(s, t), t);
    return in;
  }
  Activation activation() const { return act_; }
  Activation scale_activation() const { return scale_act_; }

 private:
  Activation act_, scale_act_;
};

// Batch-norm settings shared by a model's BatchNorm2d layers.
struct BatchNormOptions {
  double eps = 1e-5;
  double momentum = 0.1;
};

// torchvision's Conv2dNormActivation: Sequential(Conv2d(bias=False, padding=(k−1)/2), BatchNorm2d[,
// activation]) — children "0", "1"[, "2"], so its parameters read "<name>.0.weight", "<name>.1.running_mean".
inline std::shared_ptr<Sequential> conv_norm_act(int64_t in_channels, int64_t out_channels, int64_t kernel,
                                                 int64_t stride, int64_t groups, Activation activation,
                                                 Generator& gen, const BatchNormOptions& bn = {}) {
  auto seq = std::make_shared<Sequential>();
  const int64_t pad = (kernel - 1) / 2;
  seq->push_back(std::make_shared<Conv2d>(in_channels, out_channels, kernel, gen,
                                          ops::Conv2dOptions().with_stride(stride).with_padding(pad).with_groups(groups),
                                          /*with_bias=*/false));
  seq->push_back(std::make_shared<BatchNorm2d>(out_channels, bn.eps, bn.momentum));
  if (activation != Activation::identity) seq->push_back(make_activation(activation));
  return seq;
}

}  // namespace nn
}  // namespace retikd
