// retikd/io/tflite_mobilenet_v2.hpp — ImageNet initialisation of the MobileNetV2 student from the TFLite
// files in ../shared/weights/coral-mobilenet-v2/: maps the graph's convolutions onto a torchvision-named
// state dict (`features.0.0.weight`, `features.1.conv.0.0.weight`, …, `classifier.1.weight`) that
// nn::MobileNetV2::load_state_dict takes.
//
// The order relied on. A TFLite subgraph lists its operators in execution order, and both files run
// MobileNetV2 front to back, so the convolution-like operators (CONV_2D, DEPTHWISE_CONV_2D,
// FULLY_CONNECTED; ADD, pooling, reshape, softmax and (de)quantize skipped) come in torchvision's order:
//   features.0            3×3 conv, stride 2, ReLU6                    (TF: Conv / Conv2d_0_0)
//   features.1            3×3 depthwise, ReLU6; 1×1 projection         (TF: expanded_conv, no expansion)
//   features.2 … 17       1×1 expansion, ReLU6; 3×3 depthwise (stride of the block), ReLU6; 1×1 projection
//   features.18           1×1 conv to 1280, ReLU6                      (TF: Conv_1 / Conv2d_18_1)
//   classifier.1          1×1 conv (or fully connected) 1280 → 1001    (TF: Logits / top)
// — 52 convolutions and the head. Nothing is trusted blindly: every operator is checked against this table
// (operator type, kernel size, stride, input and output channels, fused activation: ReLU6 everywhere except
// the linear projections and the logits), and the number of residual ADDs must be torchvision's 10; the
// first mismatch is an error naming the operator and the layer it should have been.
//
// Batch norm. TFLite folded each BatchNorm into its convolution (weight and bias), and torchvision's convs
// have no bias, so each BatchNorm2d becomes the identity carrying the folded bias: weight 1, bias = folded
// bias, running_mean 0, running_var = 1 − eps, num_batches_tracked 0. In eval mode BatchNorm computes
// (x − 0) / sqrt((1 − eps) + eps) · 1 + bias = x + bias, exact up to rounding 1 − eps to float (relative error
// below 1e-7). In training mode BatchNorm normalises with batch statistics, which would rescale every channel
// of the pretrained network: fine-tune after nn::recalibrate_batchnorm (nn/batchnorm_recalibration.hpp), which
// gives each BatchNorm its input's statistics on training data while keeping the eval function.
//
// Padding. The TFLite graph pads "SAME" (odd pixel bottom / right) while torchvision pads (k − 1)/2 on every
// side; the two differ at the five stride-2 3×3 layers (features.0 and the depthwise convs of features.2,
// 4, 7 and 14). The weights are the same either way: nn::Conv2d::use_tf_same_padding() on every conv
// reproduces the TFLite graph exactly, and the symmetric student still classifies well (docs/io.md).
//
// Input convention. The TFLite models take inputs in [−1, 1] (the input tensor's quantization maps byte p to
// scale · (p − zero_point)); a student fed ImageNet-normalised images ((p/255 − mean) / std) would see
// different values. With input_mean / input_std set, the affine map between the two is folded into
// features.0: per input channel c, x_tf = a_c · x_norm + b_c with a_c = 255 · scale · std_c and
// b_c = scale · (255 · mean_c − zero_point), so W'[:, c] = a_c · W[:, c] and
// bias'[o] = bias[o] + Σ_c b_c Σ_{kh,kw} W[o, c, kh, kw]. Exact everywhere except the zero padding of the
// border pixels (a zero there stands for x_norm = 0, i.e. x_tf = b_c, between −0.19 and −0.03 for
// ImageNet's means).
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "retikd/core/random.hpp"
#include "retikd/core/tensor.hpp"
#include "retikd/io/tflite.hpp"

namespace retikd {
namespace io {
namespace tflite {

struct MobileNetV2ImportOptions {
  // 1001: the TFLite head as is (index 0 = background, 1… = ImageNet classes); 1000: the head without the
  // background row (torchvision's ImageNet indexing); any other N: a new N-way head (see new_head).
  int64_t num_classes = 1001;
  // For a new head: true = classifier.1.{weight, bias} initialised as torchvision does (N(0, 0.01), zero
  // bias) from `seed`; false = left out of the state dict, so load_state_dict(…, strict = false) keeps the
  // model's own initialisation.
  bool new_head = true;
  uint64_t seed = 0;
  double bn_eps = 1e-5;              // the BatchNorm2d eps of the target model (torchvision: 1e-5)
  bool num_batches_tracked = true;   // emit BatchNorm's num_batches_tracked (torchvision state dicts have it)
  // ImageNet-style normalisation the student's inputs will have (3 values each), folded into features.0;
  // empty = the student is fed the TFLite convention (the input tensor's quantization, [−1, 1]).
  std::vector<double> input_mean, input_std;
};

// One convolution of MobileNetV2 (width 1.0) in execution order: torchvision names and geometry.
struct MobileNetV2ConvSpec {
  std::string conv;  // weight name prefix, e.g. "features.2.conv.1.0"
  std::string bn;    // its BatchNorm2d, e.g. "features.2.conv.1.1"
  int64_t in = 0, out = 0, kernel = 1, stride = 1;
  bool depthwise = false;
  bool relu6 = true;  // false for the linear projections
};

// The 52 convolutions of torchvision's MobileNetV2 at width 1.0 (the head is not included).
inline std::vector<MobileNetV2ConvSpec> mobilenet_v2_conv_specs() {
  std::vector<MobileNetV2ConvSpec> s;
  s.push_back({"features.0.0", "features.0.1", 3, 32, 3, 2, false, true});
  const int64_t setting[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2}, {6, 64, 4, 2},
                                 {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
  int64_t in = 32, block = 1;
  for (const auto& row : setting) {
    for (int64_t r = 0; r < row[2]; ++r, ++block) {
      const std::string p = "features." + std::to_string(block) + ".conv.";
      const int64_t t = row[0], out = row[1], stride = r == 0 ? row[3] : 1, hidden = in * t;
      int k = 0;
      if (t != 1) {
        s.push_back({p + "0.0", p + "0.1", in, hidden, 1, 1, false, true});
        k = 1;
      }
      s.push_back({p + std::to_string(k) + ".0", p + std::to_string(k) + ".1", hidden, hidden, 3, stride, true, true});
      s.push_back({p + std::to_string(k + 1), p + std::to_string(k + 2), hidden, out, 1, 1, false, false});
      in = out;
    }
  }
  s.push_back({"features.18.0", "features.18.1", 320, 1280, 1, 1, false, true});
  return s;
}

// The conv-like operators of `model`, in execution order: (operator index) for CONV_2D,
// DEPTHWISE_CONV_2D and FULLY_CONNECTED.
inline std::vector<std::size_t> conv_like_operators(const Model& model) {
  std::vector<std::size_t> out;
  const auto& ops = model.operators();
  for (std::size_t i = 0; i < ops.size(); ++i)
    if (ops[i].opcode == op::CONV_2D || ops[i].opcode == op::DEPTHWISE_CONV_2D || ops[i].opcode == op::FULLY_CONNECTED)
      out.push_back(i);
  return out;
}

// Folds x_tf = a_c · x_norm + b_c into the first convolution (see the top of this file); w (O, 3, kh, kw)
// and b (O,) are updated in place.
inline void fold_input_normalization(const Model& model, const MobileNetV2ImportOptions& opt,
                                     const std::string& where, Tensor& w, Tensor& b) {
  const int64_t C = w.size(1);
  RETIKD_CHECK(static_cast<int64_t>(opt.input_mean.size()) == C && static_cast<int64_t>(opt.input_std.size()) == C,
               where, ": input_mean and input_std need ", C, " values each, got ", opt.input_mean.size(), " and ",
               opt.input_std.size());
  RETIKD_CHECK(model.inputs().size() == 1, where, ": the model has ", model.inputs().size(), " inputs");
  const TensorInfo& in = model.tensor(model.inputs()[0]);
  RETIKD_CHECK((in.type == TensorType::uint8 || in.type == TensorType::int8) && in.quant.present() &&
                   !in.quant.per_channel(),
               where, ": folding an input normalisation needs an 8-bit input with per-tensor quantization, the "
               "input is ", tensor_type_name(in.type));
  const double scale = in.quant.scale[0];
  const double zp = (in.quant.zero_point.empty() ? 0.0 : static_cast<double>(in.quant.zero_point[0])) +
                    (in.type == TensorType::int8 ? 128.0 : 0.0);  // the byte that maps to real 0
  Tensor wn = w.contiguous().clone();
  Tensor bn = b.contiguous().clone();
  float* pw = wn.data<float>();
  float* pb = bn.data<float>();
  const int64_t O = w.size(0), K = w.size(2) * w.size(3);
  for (int64_t c = 0; c < C; ++c)
    RETIKD_CHECK(opt.input_std[static_cast<std::size_t>(c)] > 0, where, ": input_std must be positive");
  for (int64_t o = 0; o < O; ++o) {
    double shift = 0.0;
    for (int64_t c = 0; c < C; ++c) {
      const double a = 255.0 * scale * opt.input_std[static_cast<std::size_t>(c)];
      const double bc = scale * (255.0 * opt.input_mean[static_cast<std::size_t>(c)] - zp);
      float* wk = pw + (o * C + c) * K;
      double sum = 0.0;
      for (int64_t k = 0; k < K; ++k) {
        sum += wk[k];
        wk[k] = static_cast<float>(wk[k] * a);
      }
      shift += bc * sum;
    }
    pb[o] = static_cast<float>(pb[o] + shift);
  }
  w = wn;
  b = bn;
}

// The torchvision-named state dict of MobileNetV2 (width 1.0) initialised from a TFLite MobileNetV2.
inline std::map<std::string, Tensor> mobilenet_v2_state_dict(const Model& model,
                                                             const MobileNetV2ImportOptions& opt = {}) {
  const std::string where = "mobilenet_v2_state_dict: " + model.source();
  RETIKD_CHECK(opt.num_classes > 0, where, ": num_classes must be positive, got ", opt.num_classes);
  RETIKD_CHECK(opt.bn_eps > 0 && opt.bn_eps < 1, where, ": bn_eps ", opt.bn_eps, " must be in (0, 1)");
  const std::vector<MobileNetV2ConvSpec> specs = mobilenet_v2_conv_specs();
  const std::vector<std::size_t> convs = conv_like_operators(model);
  RETIKD_CHECK(convs.size() == specs.size() + 1, where, ": the graph has ", convs.size(),
               " convolution / fully connected operators, MobileNetV2 (width 1.0) has ", specs.size() + 1,
               " (52 convolutions and the classifier)");
  int64_t adds = 0;
  for (const auto& o : model.operators()) adds += o.opcode == op::ADD;
  RETIKD_CHECK(adds == 10, where, ": the graph has ", adds, " ADD operators, MobileNetV2 has 10 residual additions");

  const auto& ops = model.operators();
  // Weight (retikd layout) and folded bias of operator i; checks it against `spec`.
  auto conv_weights = [&](std::size_t i, const MobileNetV2ConvSpec& spec, Tensor& w, Tensor& b) {
    const OperatorInfo& o = ops[i];
    auto mismatch = [&](const std::string& what) {
      fail(where, ": operator ", i, " ", o.name(), " should be ", spec.conv, " (", spec.depthwise ? "depthwise " : "",
           spec.kernel, "x", spec.kernel, ", stride ", spec.stride, ", ", spec.in, " -> ", spec.out, " channels",
           spec.relu6 ? ", ReLU6" : ", linear", ") but ", what);
    };
    const int32_t want_op = spec.depthwise ? op::DEPTHWISE_CONV_2D : op::CONV_2D;
    if (o.opcode != want_op) mismatch("it is " + o.name());
    if (o.inputs.size() < 2 || o.inputs[1] < 0 || !model.is_constant(o.inputs[1])) mismatch("its filter is not constant");
    const Tensor f = model.dequantize(o.inputs[1]);  // conv (O, kh, kw, I); depthwise (1, kh, kw, C)
    const int64_t fo = spec.depthwise ? f.size(3) : f.size(0), fi = spec.depthwise ? 1 : f.size(3);
    if (f.dim() != 4 || f.size(1) != spec.kernel || f.size(2) != spec.kernel || fo != spec.out ||
        fi != (spec.depthwise ? 1 : spec.in) || (spec.depthwise && f.size(0) != 1))
      mismatch("its filter is " + shape_str(f.shape()));
    if (o.stride_h != spec.stride || o.stride_w != spec.stride)
      mismatch("its stride is " + std::to_string(o.stride_h) + "x" + std::to_string(o.stride_w));
    if (o.dilation_h != 1 || o.dilation_w != 1) mismatch("it is dilated");
    if (spec.kernel > 1 && o.padding != Padding::same) mismatch("its padding is VALID");
    const Activation want_act = spec.relu6 ? Activation::relu6 : Activation::none;
    if (o.activation != want_act) mismatch(std::string("its fused activation is ") + activation_name(o.activation));
    w = spec.depthwise ? f.permute({3, 0, 1, 2}).contiguous() : f.permute({0, 3, 1, 2}).contiguous();
    if (o.inputs.size() >= 3 && o.inputs[2] >= 0) {
      b = model.dequantize(o.inputs[2]);
      if (b.dim() != 1 || b.size(0) != spec.out) mismatch("its bias is " + shape_str(b.shape()));
    } else {
      b = Tensor::zeros({spec.out});
    }
  };

  std::map<std::string, Tensor> sd;
  auto put_bn = [&](const std::string& bn, const Tensor& bias) {
    const int64_t c = bias.size(0);
    sd[bn + ".weight"] = Tensor::ones({c});
    sd[bn + ".bias"] = bias.contiguous();
    sd[bn + ".running_mean"] = Tensor::zeros({c});
    sd[bn + ".running_var"] = Tensor::full({c}, 1.0 - opt.bn_eps);
    if (opt.num_batches_tracked) sd[bn + ".num_batches_tracked"] = Tensor::zeros({}, DType::int64);
  };

  for (std::size_t k = 0; k < specs.size(); ++k) {
    Tensor w, b;
    conv_weights(convs[k], specs[k], w, b);
    if (k == 0 && (!opt.input_mean.empty() || !opt.input_std.empty())) fold_input_normalization(model, opt, where, w, b);
    sd[specs[k].conv + ".weight"] = w;
    put_bn(specs[k].bn, b);
  }

  // The head: a 1×1 CONV_2D (1001, 1, 1, 1280) or a FULLY_CONNECTED (1001, 1280), with bias.
  const std::size_t hi = convs.back();
  const OperatorInfo& ho = ops[hi];
  RETIKD_CHECK((ho.opcode == op::CONV_2D || ho.opcode == op::FULLY_CONNECTED) && ho.inputs.size() >= 3 &&
                   ho.inputs[1] >= 0 && ho.inputs[2] >= 0 && model.is_constant(ho.inputs[1]) &&
                   model.is_constant(ho.inputs[2]) && ho.activation == Activation::none,
               where, ": operator ", hi, " ", ho.name(), " should be the classifier (1x1 conv or fully connected "
               "1280 -> 1001 with bias, no activation)");
  Tensor hw = model.dequantize(ho.inputs[1]);
  Tensor hb = model.dequantize(ho.inputs[2]);
  RETIKD_CHECK(hw.numel() == 1001 * 1280 && hw.size(0) == 1001 && hw.size(-1) == 1280 && hb.numel() == 1001, where,
               ": the classifier's weights ", shape_str(hw.shape()), " / bias ", shape_str(hb.shape()),
               " are not 1280 -> 1001");
  hw = hw.reshape({1001, 1280});
  if (opt.num_classes == 1001) {
    sd["classifier.1.weight"] = hw.contiguous();
    sd["classifier.1.bias"] = hb.contiguous();
  } else if (opt.num_classes == 1000) {
    sd["classifier.1.weight"] = hw.slice(0, 1, 1001).contiguous();
    sd["classifier.1.bias"] = hb.slice(0, 1, 1001).contiguous();
  } else if (opt.new_head) {
    Generator gen(opt.seed);
    Tensor w = Tensor::empty({opt.num_classes, 1280});
    normal_(w, 0.0, 0.01, gen);
    sd["classifier.1.weight"] = w;
    sd["classifier.1.bias"] = Tensor::zeros({opt.num_classes});
  }
  return sd;
}

}  // namespace tflite
}  // namespace io
}  // namespace retikd
