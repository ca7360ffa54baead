// retikd/deploy/tflite_interpreter.hpp — runs a parsed TFLite graph (io/tflite.hpp's tflite::Model) in float32
// with retikd's CPU ops: deploy::tflite::FloatNetwork. It is the golden end-to-end check of the ImageNet
// MobileNetV2 files in ../shared/weights/coral-mobilenet-v2/ (tests/test_io.cpp) and `classify --tflite`.
// The parser stays in io/ and needs no op; this interpreter is the only TFLite code that runs ops.
//
// Float inference (FloatNetwork): constant tensors are dequantized once — (q − zero_point) · scale,
// per channel along quantized_dimension; int32 biases likewise — and converted to retikd layouts: TFLite
// activations are NHWC, conv weights OHWI, depthwise weights 1HW(C·M); retikd is NCHW with OIHW weights
// (depthwise: (C·M, 1, kh, kw), groups = C). 4-D activations are kept in NCHW between ops and converted
// only where an op works on the logical (NHWC) layout (reshape, squeeze, mixed-layout add). "SAME" padding
// is TensorFlow's: ceil(in / stride) outputs, the odd pixel of padding at the bottom / right.
// QUANTIZE / DEQUANTIZE are the identity in float; fused activations are applied after the op. Every op's
// result is checked against the shape the file declares for its output tensor (the batch size may differ).
// Dequantized float inference is not bit-identical to TFLite's integer kernels (those round every
// activation to 8 bits), so probabilities differ slightly from the quantized runtime's.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "retikd/core/error.hpp"
#include "retikd/core/tensor.hpp"
#include "retikd/io/tflite.hpp"
#include "retikd/ops/activation.hpp"
#include "retikd/ops/conv.hpp"
#include "retikd/ops/elementwise.hpp"
#include "retikd/ops/matmul.hpp"
#include "retikd/ops/softmax.hpp"

namespace retikd {
namespace deploy {
namespace tflite {

// The parsed model's types (Model, TensorInfo, OperatorInfo, the op codes and options) as this interpreter reads them.
using namespace ::retikd::io::tflite;

struct FloatNetworkOptions {
  // Pad "SAME" convolutions PyTorch's way — (k − 1)/2 · dilation on every side — instead of TensorFlow's
  // (odd pixel at the bottom / right). This is what a torchvision-style model computes with the imported
  // weights; it differs from the TFLite graph at the stride-2 layers.
  bool symmetric_padding = false;
};

// Runs a TFLite graph in float32 with retikd's CPU ops (see the top of this file).
class FloatNetwork {
 public:
  explicit FloatNetwork(Model model, FloatNetworkOptions options = {})
      : model_(std::move(model)), options_(options) {
    RETIKD_CHECK(model_.inputs().size() == 1, "tflite: ", model_.source(), ": FloatNetwork needs exactly one input, the model has ",
                 model_.inputs().size());
    RETIKD_CHECK(!model_.outputs().empty(), "tflite: ", model_.source(), ": the model has no output");
    const auto& tensors = model_.tensors();
    constants_.resize(tensors.size());
    for (std::size_t i = 0; i < tensors.size(); ++i)
      if (model_.is_constant(static_cast<int32_t>(i))) constants_[i] = model_.dequantize(static_cast<int32_t>(i));
    const auto& ops = model_.operators();
    layers_.resize(ops.size());
    for (std::size_t i = 0; i < ops.size(); ++i) prepare(i);
  }

  const Model& model() const { return model_; }
  const FloatNetworkOptions& options() const { return options_; }

  // Runs the graph. `input` holds real values in TFLite's layout and the input tensor's shape (the batch
  // size may differ), e.g. (N, 224, 224, 3) float32; returns the first graph output in TFLite's layout,
  // e.g. (N, 1001) probabilities.
  Tensor forward(const Tensor& input) const {
    const TensorInfo& in = model_.tensor(model_.inputs()[0]);
    RETIKD_CHECK(input.dim() == static_cast<int64_t>(in.shape.size()) && same_but_batch(input.shape(), in.shape),
                 "tflite: ", model_.source(), ": input ", shape_str(input.shape()), " does not match the model's ",
                 shape_list(in.shape));
    std::vector<Value> values(model_.tensors().size());
    Tensor x = input.to(DType::float32);
    values[static_cast<std::size_t>(model_.inputs()[0])] = x.dim() == 4 ? Value{to_nchw(x), true} : Value{x.contiguous(), false};
    for (std::size_t i = 0; i < layers_.size(); ++i) run(i, values);
    const Value& out = values[static_cast<std::size_t>(model_.outputs()[0])];
    RETIKD_CHECK(out.t.defined(), "tflite: ", model_.source(), ": no operator produced the output tensor");
    return logical(out).contiguous();
  }

  // Maps raw 8-bit pixels (row-major in the input's layout, e.g. HWC RGB; a multiple of one image) to the
  // input's real values through the input tensor's quantization: real = scale · (q − zero_point), where q
  // is the byte for a UINT8 input and byte − 128 for an INT8 one.
  Tensor input_from_uint8(const uint8_t* pixels, std::size_t count) const {
    const TensorInfo& in = model_.tensor(model_.inputs()[0]);
    RETIKD_CHECK(!in.shape.empty(), "tflite: ", model_.source(), ": the input has no shape");
    const int64_t per_image = shape_numel(in.shape) / std::max<int64_t>(in.shape[0], 1);
    RETIKD_CHECK(per_image > 0 && count > 0 && count % static_cast<std::size_t>(per_image) == 0, "tflite: ",
                 model_.source(), ": ", count, " bytes are not a whole number of ", shape_list(in.shape), " inputs");
    RETIKD_CHECK((in.type == TensorType::uint8 || in.type == TensorType::int8) && in.quant.present() &&
                     !in.quant.per_channel(),
                 "tflite: ", model_.source(), ": input '", in.name, "' is ", tensor_type_name(in.type),
                 " without per-tensor quantization: pass real values to forward() instead");
    const double scale = in.quant.scale[0];
    const double zp = in.quant.zero_point.empty() ? 0.0 : static_cast<double>(in.quant.zero_point[0]);
    const double shift = in.type == TensorType::int8 ? 128.0 : 0.0;
    Shape shape = in.shape;
    shape[0] = static_cast<int64_t>(count) / per_image;
    Tensor out = Tensor::empty(shape, DType::float32);
    float* o = out.data<float>();
    for (std::size_t i = 0; i < count; ++i) o[i] = static_cast<float>(scale * (pixels[i] - shift - zp));
    return out;
  }
  Tensor input_from_uint8(const std::vector<uint8_t>& pixels) const {
    return input_from_uint8(pixels.data(), pixels.size());
  }

 private:
  // An activation: 4-D values live in NCHW (nchw = true), everything else in TFLite's logical layout.
  struct Value {
    Tensor t;
    bool nchw = false;
  };
  struct Layer {
    Tensor weight, bias;  // retikd layouts (conv: OIHW; depthwise: (C·M, 1, kh, kw); FC: (out, in))
    int64_t groups = 1;
  };

  template <class... Parts>
  [[noreturn]] void op_error(std::size_t i, const Parts&... parts) const {
    fail("tflite: ", model_.source(), ": operator ", i, " ", model_.operators()[i].name(), ": ", parts...);
  }

  static bool same_but_batch(const Shape& a, const Shape& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t d = 1; d < a.size(); ++d)
      if (a[d] != b[d]) return false;
    return true;
  }
  static Tensor to_nchw(const Tensor& nhwc) { return nhwc.permute({0, 3, 1, 2}).contiguous(); }
  static Tensor logical(const Value& v) { return v.nchw ? v.t.permute({0, 2, 3, 1}) : v.t; }

  const Tensor& constant(std::size_t i, int32_t index, const char* what) const {
    if (index < 0 || !constants_[static_cast<std::size_t>(index)].defined())
      op_error(i, what, " (tensor ", index, ") must be a constant in the file");
    return constants_[static_cast<std::size_t>(index)];
  }

  // Validates operator i and converts its weights to retikd layouts.
  void prepare(std::size_t i) {
    const OperatorInfo& o = model_.operators()[i];
    Layer& L = layers_[i];
    auto need_io = [&](std::size_t min_in, std::size_t max_in) {
      if (o.inputs.size() < min_in || o.inputs.size() > max_in || o.outputs.size() != 1)
        op_error(i, "has ", o.inputs.size(), " inputs and ", o.outputs.size(), " outputs");
      if (o.inputs[0] < 0) op_error(i, "first input is missing");
    };
    auto check_activation = [&]() {
      if (o.activation == Activation::sign_bit) op_error(i, "fused activation SIGN_BIT is not supported");
    };
    auto bias_of = [&](int64_t out_channels) {
      if (o.inputs.size() < 3 || o.inputs[2] < 0) return Tensor();
      const Tensor& b = constant(i, o.inputs[2], "bias");
      if (b.dim() != 1 || b.size(0) != out_channels) op_error(i, "bias ", shape_str(b.shape()), " for ", out_channels, " outputs");
      return b;
    };
    switch (o.opcode) {
      case op::CONV_2D: {
        need_io(2, 3);
        check_activation();
        const Tensor& w = constant(i, o.inputs[1], "filter");  // (O, kh, kw, I)
        if (w.dim() != 4) op_error(i, "filter ", shape_str(w.shape()), " must be 4-D (O, kh, kw, I)");
        check_conv_options(i, o);
        L.weight = w.permute({0, 3, 1, 2}).contiguous();  // (O, I, kh, kw)
        L.bias = bias_of(w.size(0));
        break;
      }
      case op::DEPTHWISE_CONV_2D: {
        need_io(2, 3);
        check_activation();
        const Tensor& w = constant(i, o.inputs[1], "filter");  // (1, kh, kw, C·M)
        if (w.dim() != 4 || w.size(0) != 1) op_error(i, "filter ", shape_str(w.shape()), " must be (1, kh, kw, C·M)");
        check_conv_options(i, o);
        const TensorInfo& in = model_.tensor(o.inputs[0]);
        if (in.shape.size() != 4 || in.shape[3] <= 0 || w.size(3) % in.shape[3] != 0)
          op_error(i, "input ", shape_list(in.shape), " does not divide the filter's ", w.size(3), " channels");
        L.groups = in.shape[3];
        L.weight = w.permute({3, 0, 1, 2}).contiguous();  // (C·M, 1, kh, kw)
        L.bias = bias_of(w.size(3));
        break;
      }
      case op::FULLY_CONNECTED: {
        need_io(2, 3);
        check_activation();
        const Tensor& w = constant(i, o.inputs[1], "weights");  // (out, in)
        if (w.dim() != 2) op_error(i, "weights ", shape_str(w.shape()), " must be 2-D (out, in)");
        L.weight = w;
        L.bias = bias_of(w.size(0));
        break;
      }
      case op::ADD:
      case op::MUL:
        need_io(2, 2);
        check_activation();
        break;
      case op::AVERAGE_POOL_2D:
      case op::MAX_POOL_2D:
        need_io(1, 1);
        check_activation();
        if (o.options_type != options_type::Pool2D || o.stride_h < 1 || o.stride_w < 1 || o.filter_h < 1 || o.filter_w < 1)
          op_error(i, "needs Pool2DOptions with positive strides and filter size");
        break;
      case op::MEAN: {
        need_io(2, 2);
        std::vector<int64_t> axes = model_.integers(o.inputs[1]);
        for (int64_t& a : axes)
          if (a < 0) a += 4;
        std::sort(axes.begin(), axes.end());
        if (model_.tensor(o.inputs[0]).shape.size() != 4 || axes != std::vector<int64_t>{1, 2})
          op_error(i, "only the spatial mean of a 4-D NHWC tensor (axes 1, 2) is supported");
        break;
      }
      case op::RESHAPE:
      case op::SQUEEZE:
        need_io(1, 2);
        break;
      case op::SOFTMAX:
      case op::QUANTIZE:
      case op::DEQUANTIZE:
      case op::RELU:
      case op::RELU6:
      case op::LOGISTIC:
        need_io(1, 1);
        break;
      default:
        op_error(i, "is not supported by the float importer");
    }
  }

  void check_conv_options(std::size_t i, const OperatorInfo& o) const {
    const uint8_t want = o.opcode == op::CONV_2D ? options_type::Conv2D : options_type::DepthwiseConv2D;
    if (o.options_type != want) op_error(i, "lacks its convolution options");
    if (o.stride_h < 1 || o.stride_w < 1 || o.dilation_h < 1 || o.dilation_w < 1)
      op_error(i, "stride ", o.stride_h, "x", o.stride_w, " / dilation ", o.dilation_h, "x", o.dilation_w, " must be positive");
  }

  Tensor activate(std::size_t i, const Tensor& x, Activation a) const {
    switch (a) {
      case Activation::none: return x;
      case Activation::relu: return ops::impl::relu(x);
      case Activation::relu6: return ops::impl::relu6(x);
      case Activation::tanh: return ops::impl::tanh(x);
      case Activation::relu_n1_to_1:
        return cpu::map(x, "relu_n1_to_1", [](auto v) {
          using T = decltype(v);
          return v < T(-1) ? T(-1) : (v > T(1) ? T(1) : v);
        });
      default: op_error(i, "unsupported fused activation ", activation_name(a));
    }
  }

  const Value& input_value(std::size_t i, std::vector<Value>& values, int32_t index) const {
    if (index < 0) op_error(i, "a required input is left out (-1)");
    Value& v = values[static_cast<std::size_t>(index)];
    if (!v.t.defined()) {
      const Tensor& c = constants_[static_cast<std::size_t>(index)];
      if (!c.defined()) op_error(i, "input tensor ", index, " has not been computed (operators out of order?)");
      v = Value{c, false};
    }
    return v;
  }

  ops::Conv2dOptions conv_options(const OperatorInfo& o, int64_t H, int64_t W, int64_t kh, int64_t kw) const {
    ops::Conv2dOptions c;
    c.with_stride(o.stride_h, o.stride_w).with_dilation(o.dilation_h, o.dilation_w);
    if (o.padding == Padding::same) {
      if (options_.symmetric_padding) {
        const int64_t ph = (kh - 1) / 2 * o.dilation_h, pw = (kw - 1) / 2 * o.dilation_w;
        c.with_padding(ph, ph, pw, pw);
      } else {
        c.with_same_padding(H, W, kh, kw);
      }
    }
    return c;
  }

  // TensorFlow pooling on NCHW: SAME pads with the odd pixel at the end, and the average divides by the
  // number of input pixels in the window (padding not counted).
  Tensor pool(const OperatorInfo& o, const Tensor& x, bool average) const {
    const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    const int64_t kh = o.filter_h, kw = o.filter_w, sh = o.stride_h, sw = o.stride_w;
    int64_t OH, OW, pt = 0, pl = 0;
    if (o.padding == Padding::same) {
      OH = (H + sh - 1) / sh;
      OW = (W + sw - 1) / sw;
      pt = ops::same_padding(H, kh, sh).before;
      pl = ops::same_padding(W, kw, sw).before;
    } else {
      OH = H >= kh ? (H - kh) / sh + 1 : 0;
      OW = W >= kw ? (W - kw) / sw + 1 : 0;
    }
    Tensor y = Tensor::empty({N, C, OH, OW}, DType::float32);
    const Tensor xc = x.contiguous();
    const float* px = xc.data<float>();
    float* py = y.data<float>();
    for (int64_t p = 0; p < N * C; ++p) {
      const float* xp = px + p * H * W;
      for (int64_t oh = 0; oh < OH; ++oh) {
        const int64_t h0 = std::max<int64_t>(oh * sh - pt, 0), h1 = std::min(oh * sh - pt + kh, H);
        for (int64_t ow = 0; ow < OW; ++ow) {
          const int64_t w0 = std::max<int64_t>(ow * sw - pl, 0), w1 = std::min(ow * sw - pl + kw, W);
          double acc = average ? 0.0 : -std::numeric_limits<double>::infinity();
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t w = w0; w < w1; ++w) acc = average ? acc + xp[h * W + w] : std::max<double>(acc, xp[h * W + w]);
          const int64_t count = (h1 - h0) * (w1 - w0);
          py[(p * OH + oh) * OW + ow] = static_cast<float>(average ? (count > 0 ? acc / count : 0.0) : acc);
        }
      }
    }
    return y;
  }

  // The declared output shape of operator i with the batch size of the current run.
  Shape declared(const OperatorInfo& o, int64_t numel) const {
    Shape s = model_.tensor(o.outputs[0]).shape;
    if (!s.empty() && shape_numel(s) != numel && s[0] > 0) {
      const int64_t rest = shape_numel(s) / s[0];
      if (rest > 0 && numel % rest == 0) s[0] = numel / rest;
    }
    return s;
  }

  void run(std::size_t i, std::vector<Value>& values) const {
    const OperatorInfo& o = model_.operators()[i];
    const Layer& L = layers_[i];
    const Value& a = input_value(i, values, o.inputs[0]);
    Value out;
    switch (o.opcode) {
      case op::CONV_2D:
      case op::DEPTHWISE_CONV_2D: {
        if (!a.nchw) op_error(i, "input must be 4-D NHWC");
        const int64_t C = a.t.size(1), groups = o.opcode == op::CONV_2D ? 1 : L.groups;
        if (L.weight.size(1) * groups != C)
          op_error(i, "input has ", C, " channels, the filter ", shape_str(L.weight.shape()), " expects ",
                   L.weight.size(1) * groups);
        ops::Conv2dOptions c = conv_options(o, a.t.size(2), a.t.size(3), L.weight.size(2), L.weight.size(3));
        c.with_groups(groups);
        out = Value{activate(i, ops::impl::conv2d(a.t, L.weight, L.bias, c), o.activation), true};
        break;
      }
      case op::FULLY_CONNECTED: {
        Tensor x = logical(a);
        const int64_t in = L.weight.size(1);
        if (x.numel() % in != 0) op_error(i, "input ", shape_str(x.shape()), " is not a multiple of ", in, " features");
        Tensor x2 = x.reshape({-1, in});
        Tensor y = ops::impl::matmul(x2, L.weight.transpose(0, 1));
        if (L.bias.defined()) y = ops::impl::add(y, L.bias);
        y = activate(i, y, o.activation);
        if (o.keep_dims) {
          Shape s = x.shape();
          s.back() = L.weight.size(0);
          y = y.reshape(s);
        }
        out = Value{y.dim() == 4 ? to_nchw(y) : y, y.dim() == 4};
        break;
      }
      case op::ADD:
      case op::MUL: {
        const Value& b = input_value(i, values, o.inputs[1]);
        Tensor y;
        bool nchw = false;
        if (a.nchw && b.nchw && a.t.shape() == b.t.shape()) {
          y = o.opcode == op::ADD ? ops::impl::add(a.t, b.t) : ops::impl::mul(a.t, b.t);
          nchw = true;
        } else {
          const Tensor la = logical(a), lb = logical(b);
          y = o.opcode == op::ADD ? ops::impl::add(la, lb) : ops::impl::mul(la, lb);
          if (y.dim() == 4) y = to_nchw(y), nchw = true;
        }
        out = Value{activate(i, y, o.activation), nchw};
        break;
      }
      case op::AVERAGE_POOL_2D:
      case op::MAX_POOL_2D:
        if (!a.nchw) op_error(i, "input must be 4-D NHWC");
        out = Value{activate(i, pool(o, a.t, o.opcode == op::AVERAGE_POOL_2D), o.activation), true};
        break;
      case op::MEAN: {
        if (!a.nchw) op_error(i, "input must be 4-D NHWC");
        const int64_t N = a.t.size(0), C = a.t.size(1), HW = a.t.size(2) * a.t.size(3);
        const Tensor xc = a.t.contiguous();
        Tensor y = Tensor::empty({N, C}, DType::float32);
        const float* px = xc.data<float>();
        float* py = y.data<float>();
        for (int64_t p = 0; p < N * C; ++p) {
          double s = 0.0;
          for (int64_t k = 0; k < HW; ++k) s += px[p * HW + k];
          py[p] = static_cast<float>(HW > 0 ? s / static_cast<double>(HW) : 0.0);
        }
        out = o.keep_dims ? Value{y.reshape({N, C, 1, 1}), true} : Value{y, false};
        break;
      }
      case op::RESHAPE:
      case op::SQUEEZE: {
        Tensor x = logical(a).contiguous();
        const Shape s = declared(o, x.numel());
        if (shape_numel(s) != x.numel())
          op_error(i, "cannot reshape ", shape_str(x.shape()), " to the declared ", shape_list(s));
        Tensor y = x.reshape(s);
        out = y.dim() == 4 ? Value{to_nchw(y), true} : Value{y, false};
        break;
      }
      case op::SOFTMAX: {
        Tensor x = a.t;
        if (o.softmax_beta != 1.0f) x = ops::impl::mul_scalar(x, o.softmax_beta);
        out = Value{ops::impl::softmax(x, a.nchw ? 1 : -1), a.nchw};
        break;
      }
      case op::QUANTIZE:
      case op::DEQUANTIZE: out = a; break;
      case op::RELU: out = Value{ops::impl::relu(a.t), a.nchw}; break;
      case op::RELU6: out = Value{ops::impl::relu6(a.t), a.nchw}; break;
      case op::LOGISTIC: out = Value{ops::impl::sigmoid(a.t), a.nchw}; break;
      default: op_error(i, "is not supported by the float importer");
    }
    // The result must have the shape the file declares (batch aside): catches layout and padding mistakes.
    const Shape got = logical(out).shape();
    const Shape& want = model_.tensor(o.outputs[0]).shape;
    if (!want.empty() && !same_but_batch(got, want))
      op_error(i, "produced ", shape_str(got), " but the file declares ", shape_list(want), " for tensor ", o.outputs[0]);
    values[static_cast<std::size_t>(o.outputs[0])] = std::move(out);
  }

  Model model_;
  FloatNetworkOptions options_;
  std::vector<Tensor> constants_;  // dequantized constants in TFLite layout (undefined for activations)
  std::vector<Layer> layers_;
};

}  // namespace tflite
}  // namespace deploy
}  // namespace retikd
