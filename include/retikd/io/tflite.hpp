// retikd/io/tflite.hpp — a TFLite model importer: our own parser of the .tflite flatbuffer (schema version
// 3), dequantization of its weights to float, and a float network that runs the graph with retikd's ops.
//
// What it is for: the quantized ImageNet MobileNetV2 files in ../shared/weights/coral-mobilenet-v2/ (uint8
// per-tensor and int8 per-channel) are the golden end-to-end check of conv / depthwise conv / ReLU6 /
// residual add / pooling / softmax (DESIGN.md §7), and the ImageNet initialisation of the MobileNetV2
// student (io/tflite_mobilenet_v2.hpp maps them onto torchvision names).
//
// Parsing (tflite::Model): every table, vector and string is read through io/flatbuffer.hpp, which checks
// bounds; on top of that the model is validated as a whole (tensor and buffer indices in range, shapes
// non-negative, constant data sizes equal shape × type size, quantization vectors consistent), so a corrupt
// file gives a retikd::Error naming the file and the problem, never a crash. Only the first subgraph (the
// main model) is read.
//
// The schema facts used (tensorflow/lite/schema/schema.fbs; field ids in order):
//   Model { version, operator_codes, subgraphs, description, buffers, metadata_buffer, metadata, … }
//   OperatorCode { deprecated_builtin_code: byte, custom_code, version, builtin_code: int }
//     — the op is max(deprecated_builtin_code, builtin_code) (old files only set the byte)
//   SubGraph { tensors, inputs, outputs, operators (in execution order), name }
//   Tensor { shape, type, buffer, name, quantization, is_variable, … }
//   QuantizationParameters { min, max, scale, zero_point: [long], details (union: 2 ids), quantized_dimension }
//     — real = scale · (q − zero_point), one (scale, zero_point) per index of quantized_dimension
//   Buffer { data: [ubyte], offset: ulong, size: ulong } — offset/size (> 1) point outside the flatbuffer
//   Operator { opcode_index, inputs, outputs, builtin_options (union: type id 3, table id 4), … }
//   Conv2DOptions { padding, stride_w, stride_h, fused_activation_function, dilation_w, dilation_h }
//   DepthwiseConv2DOptions { padding, stride_w, stride_h, depth_multiplier, fused_activation, dilation_w, _h }
//   Pool2DOptions { padding, stride_w, stride_h, filter_width, filter_height, fused_activation_function }
//   FullyConnectedOptions { fused_activation_function, weights_format, keep_num_dims, … }
//   SoftmaxOptions { beta }  AddOptions { fused_activation_function }  ReshapeOptions { new_shape }
//   ReducerOptions { keep_dims }  SqueezeOptions { squeeze_dims }
//
// Float inference (tflite::FloatNetwork): constant tensors are dequantized once — (q − zero_point) · scale,
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
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <utility>
#include <vector>

#include "retikd/core/error.hpp"
#include "retikd/core/tensor.hpp"
#include "retikd/io/flatbuffer.hpp"
#include "retikd/ops/activation.hpp"
#include "retikd/ops/conv.hpp"
#include "retikd/ops/elementwise.hpp"
#include "retikd/ops/matmul.hpp"
#include "retikd/ops/softmax.hpp"

namespace retikd {
namespace io {
namespace tflite {

// ---- schema enums ----------------------------------------------------------------------------------------

enum class TensorType : int8_t {
  float32 = 0, float16 = 1, int32 = 2, uint8 = 3, int64 = 4, string = 5, boolean = 6, int16 = 7,
  complex64 = 8, int8 = 9, float64 = 10
};

inline const char* tensor_type_name(TensorType t) {
  switch (t) {
    case TensorType::float32: return "FLOAT32";
    case TensorType::float16: return "FLOAT16";
    case TensorType::int32: return "INT32";
    case TensorType::uint8: return "UINT8";
    case TensorType::int64: return "INT64";
    case TensorType::string: return "STRING";
    case TensorType::boolean: return "BOOL";
    case TensorType::int16: return "INT16";
    case TensorType::complex64: return "COMPLEX64";
    case TensorType::int8: return "INT8";
    case TensorType::float64: return "FLOAT64";
  }
  return "UNKNOWN";
}

// Bytes per element of the types whose data the importer can read; 0 for the others.
inline std::size_t tensor_type_size(TensorType t) {
  switch (t) {
    case TensorType::float32: return 4;
    case TensorType::float16: return 2;
    case TensorType::int32: return 4;
    case TensorType::uint8: return 1;
    case TensorType::int64: return 8;
    case TensorType::int16: return 2;
    case TensorType::int8: return 1;
    case TensorType::float64: return 8;
    default: return 0;
  }
}

// BuiltinOperator codes the importer names or runs (the full enum has ~200 entries).
namespace op {
constexpr int32_t ADD = 0, AVERAGE_POOL_2D = 1, CONCATENATION = 2, CONV_2D = 3, DEPTHWISE_CONV_2D = 4,
                  DEQUANTIZE = 6, FULLY_CONNECTED = 9, LOGISTIC = 14, MAX_POOL_2D = 17, MUL = 18, RELU = 19,
                  RELU6 = 21, RESHAPE = 22, SOFTMAX = 25, PAD = 34, MEAN = 40, SQUEEZE = 43, QUANTIZE = 114;
}  // namespace op

inline std::string builtin_name(int32_t code) {
  switch (code) {
    case op::ADD: return "ADD";
    case op::AVERAGE_POOL_2D: return "AVERAGE_POOL_2D";
    case op::CONCATENATION: return "CONCATENATION";
    case op::CONV_2D: return "CONV_2D";
    case op::DEPTHWISE_CONV_2D: return "DEPTHWISE_CONV_2D";
    case op::DEQUANTIZE: return "DEQUANTIZE";
    case op::FULLY_CONNECTED: return "FULLY_CONNECTED";
    case op::LOGISTIC: return "LOGISTIC";
    case op::MAX_POOL_2D: return "MAX_POOL_2D";
    case op::MUL: return "MUL";
    case op::RELU: return "RELU";
    case op::RELU6: return "RELU6";
    case op::RESHAPE: return "RESHAPE";
    case op::SOFTMAX: return "SOFTMAX";
    case op::PAD: return "PAD";
    case op::MEAN: return "MEAN";
    case op::SQUEEZE: return "SQUEEZE";
    case op::QUANTIZE: return "QUANTIZE";
    case 32: return "CUSTOM";
    default: return "BUILTIN_" + std::to_string(code);
  }
}

// BuiltinOptions union tags (the union's member order in the schema, NONE = 0).
namespace options_type {
constexpr uint8_t NONE = 0, Conv2D = 1, DepthwiseConv2D = 2, Pool2D = 5, FullyConnected = 8, Softmax = 9,
                  Concatenation = 10, Add = 11, Reshape = 17, Mul = 21, Pad = 22, Reducer = 27, Squeeze = 30;
}  // namespace options_type

enum class Padding : int8_t { same = 0, valid = 1 };
enum class Activation : int8_t { none = 0, relu = 1, relu_n1_to_1 = 2, relu6 = 3, tanh = 4, sign_bit = 5 };

inline const char* padding_name(Padding p) { return p == Padding::same ? "SAME" : "VALID"; }
inline const char* activation_name(Activation a) {
  switch (a) {
    case Activation::none: return "NONE";
    case Activation::relu: return "RELU";
    case Activation::relu_n1_to_1: return "RELU_N1_TO_1";
    case Activation::relu6: return "RELU6";
    case Activation::tanh: return "TANH";
    case Activation::sign_bit: return "SIGN_BIT";
  }
  return "UNKNOWN";
}

// ---- parsed model ----------------------------------------------------------------------------------------

struct Quantization {
  std::vector<float> min, max, scale;
  std::vector<int64_t> zero_point;
  int32_t quantized_dimension = 0;

  bool present() const { return !scale.empty(); }
  bool per_channel() const { return scale.size() > 1; }
};

struct TensorInfo {
  std::string name;
  Shape shape;
  TensorType type = TensorType::float32;
  uint32_t buffer = 0;
  Quantization quant;
  bool is_variable = false;
};

struct OperatorInfo {
  int32_t opcode = 0;        // resolved BuiltinOperator
  std::string custom_code;   // for CUSTOM ops
  int32_t version = 1;
  std::vector<int32_t> inputs, outputs;  // tensor indices; −1 = optional input left out
  uint8_t options_type = options_type::NONE;

  // Decoded builtin options (those of the ops above; defaults where the file leaves a field out).
  Padding padding = Padding::same;
  int32_t stride_w = 1, stride_h = 1, dilation_w = 1, dilation_h = 1;
  int32_t depth_multiplier = 1;
  int32_t filter_w = 0, filter_h = 0;
  Activation activation = Activation::none;
  float softmax_beta = 1.0f;
  std::vector<int32_t> new_shape;     // RESHAPE
  std::vector<int32_t> squeeze_dims;  // SQUEEZE
  bool keep_dims = false;             // MEAN, FULLY_CONNECTED (keep_num_dims)
  int32_t axis = 0;                   // CONCATENATION

  std::string name() const { return opcode == 32 ? "CUSTOM(" + custom_code + ")" : builtin_name(opcode); }
};

inline std::string shape_list(const Shape& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

class Model {
 public:
  static Model from_file(const std::string& path) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) fail("tflite: ", path, ": cannot open: ", std::strerror(errno));
    RETIKD_CHECK(S_ISREG(st.st_mode), "tflite: ", path, ": not a regular file");
    std::ifstream in(path, std::ios::binary);
    RETIKD_CHECK(in.good(), "tflite: ", path, ": cannot open");
    std::vector<uint8_t> bytes(static_cast<std::size_t>(st.st_size));
    if (!bytes.empty()) in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    RETIKD_CHECK(in.good() || (in.eof() && bytes.empty()), "tflite: ", path, ": read failed");
    return from_bytes(std::move(bytes), path);
  }

  // Parses `bytes` (kept by the model: weights are read from them); `source` names the model in errors.
  static Model from_bytes(std::vector<uint8_t> bytes, const std::string& source = "<memory>") {
    Model m;
    m.bytes_ = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
    m.source_ = source;
    m.parse();
    return m;
  }

  const std::string& source() const { return source_; }
  uint32_t version() const { return version_; }
  const std::string& description() const { return description_; }
  const std::string& subgraph_name() const { return subgraph_name_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const std::vector<OperatorInfo>& operators() const { return operators_; }
  const std::vector<int32_t>& inputs() const { return inputs_; }
  const std::vector<int32_t>& outputs() const { return outputs_; }
  std::size_t num_buffers() const { return buffers_.size(); }

  const TensorInfo& tensor(int32_t index) const {
    RETIKD_CHECK(index >= 0 && static_cast<std::size_t>(index) < tensors_.size(), "tflite: ", source_,
                 ": tensor index ", index, " out of range (", tensors_.size(), " tensors)");
    return tensors_[static_cast<std::size_t>(index)];
  }

  // True when the tensor has constant data (weights, biases, shapes).
  bool is_constant(int32_t index) const { return buffer_size(tensor(index).buffer) > 0; }

  // The raw bytes of a tensor's constant data (nullptr, 0 for activations).
  std::pair<const uint8_t*, std::size_t> data(int32_t index) const {
    const uint32_t bi = tensor(index).buffer;
    if (bi >= buffers_.size() || buffers_[bi].size == 0) return {nullptr, 0};
    const BufferRef& b = buffers_[bi];
    return {bytes_->data() + b.offset, static_cast<std::size_t>(b.size)};
  }

  // Where a tensor's constant data starts in the file (0 for activations).
  uint64_t data_offset(int32_t index) const {
    const uint32_t bi = tensor(index).buffer;
    return bi < buffers_.size() && buffers_[bi].size > 0 ? buffers_[bi].offset : 0;
  }

  // A constant tensor as float32 in TFLite's own shape and layout: quantized types become
  // (q − zero_point) · scale (per channel along quantized_dimension), float types are converted.
  Tensor dequantize(int32_t index) const {
    const TensorInfo& t = tensor(index);
    const auto d = data(index);
    RETIKD_CHECK(d.first != nullptr, "tflite: ", source_, ": tensor ", index, " '", t.name,
                 "' has no constant data to dequantize");
    const int64_t n = shape_numel(t.shape);
    Tensor out = Tensor::empty(t.shape, DType::float32);
    float* o = out.data<float>();
    const uint8_t* p = d.first;
    auto load = [&](auto tag, int64_t i) {
      using T = typename decltype(tag)::type;
      T v;
      std::memcpy(&v, p + static_cast<std::size_t>(i) * sizeof(T), sizeof(T));
      return v;
    };
    const Quantization& q = t.quant;
    // Channel of element i along quantized_dimension (0 for per-tensor parameters).
    int64_t inner = 1, channels = 1;
    if (q.per_channel()) {
      const int32_t qd = q.quantized_dimension;
      channels = t.shape[static_cast<std::size_t>(qd)];
      for (std::size_t k = static_cast<std::size_t>(qd) + 1; k < t.shape.size(); ++k) inner *= t.shape[k];
    }
    auto dq = [&](int64_t i, double v) -> float {
      if (!q.present()) return static_cast<float>(v);
      const std::size_t c = q.per_channel() ? static_cast<std::size_t>((i / inner) % channels) : 0;
      const double zp = q.zero_point.empty() ? 0.0 : static_cast<double>(q.zero_point[c]);
      return static_cast<float>((v - zp) * static_cast<double>(q.scale[c]));
    };
    switch (t.type) {
      case TensorType::uint8:
        for (int64_t i = 0; i < n; ++i) o[i] = dq(i, p[i]);
        break;
      case TensorType::int8:
        for (int64_t i = 0; i < n; ++i) o[i] = dq(i, static_cast<int8_t>(p[i]));
        break;
      case TensorType::int16:
        for (int64_t i = 0; i < n; ++i) o[i] = dq(i, load(type_tag<int16_t>{}, i));
        break;
      case TensorType::int32:
        for (int64_t i = 0; i < n; ++i) o[i] = dq(i, load(type_tag<int32_t>{}, i));
        break;
      case TensorType::int64:
        for (int64_t i = 0; i < n; ++i) o[i] = dq(i, static_cast<double>(load(type_tag<int64_t>{}, i)));
        break;
      case TensorType::float32:
        for (int64_t i = 0; i < n; ++i) o[i] = dq(i, load(type_tag<float>{}, i));
        break;
      case TensorType::float16:
        for (int64_t i = 0; i < n; ++i) o[i] = dq(i, static_cast<float>(Half::from_bits(load(type_tag<uint16_t>{}, i))));
        break;
      case TensorType::float64:
        for (int64_t i = 0; i < n; ++i) o[i] = dq(i, load(type_tag<double>{}, i));
        break;
      default:
        fail("tflite: ", source_, ": tensor ", index, " '", t.name, "' has type ", tensor_type_name(t.type),
             ", which cannot be dequantized");
    }
    return out;
  }

  // Integer values of a constant int32 / int64 tensor (shapes, axes).
  std::vector<int64_t> integers(int32_t index) const {
    const TensorInfo& t = tensor(index);
    const auto d = data(index);
    RETIKD_CHECK(d.first && (t.type == TensorType::int32 || t.type == TensorType::int64), "tflite: ", source_,
                 ": tensor ", index, " '", t.name, "' is not a constant integer tensor");
    const std::size_t es = t.type == TensorType::int32 ? 4 : 8;
    std::vector<int64_t> out(d.second / es);
    for (std::size_t i = 0; i < out.size(); ++i) {
      if (es == 4) {
        int32_t v;
        std::memcpy(&v, d.first + i * 4, 4);
        out[i] = v;
      } else {
        std::memcpy(&out[i], d.first + i * 8, 8);
      }
    }
    return out;
  }

  // One line per tensor and per operator: what the parser understood.
  std::string summary() const {
    std::ostringstream os;
    os << source_ << ": schema version " << version_ << ", " << tensors_.size() << " tensors, "
       << operators_.size() << " operators, " << buffers_.size() << " buffers\n";
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      const TensorInfo& t = tensors_[i];
      os << "  tensor " << i << " '" << t.name << "' " << tensor_type_name(t.type) << ' ' << shape_list(t.shape)
         << " buffer " << t.buffer << (is_constant(static_cast<int32_t>(i)) ? " (const)" : "");
      if (t.quant.present()) {
        os << " scale " << t.quant.scale[0] << " zp " << (t.quant.zero_point.empty() ? 0 : t.quant.zero_point[0]);
        if (t.quant.per_channel())
          os << " (" << t.quant.scale.size() << " channels along dim " << t.quant.quantized_dimension << ")";
      }
      os << '\n';
    }
    for (std::size_t i = 0; i < operators_.size(); ++i) {
      const OperatorInfo& o = operators_[i];
      os << "  op " << i << ' ' << o.name() << " in";
      for (int32_t x : o.inputs) os << ' ' << x;
      os << " out";
      for (int32_t x : o.outputs) os << ' ' << x;
      if (o.opcode == op::CONV_2D || o.opcode == op::DEPTHWISE_CONV_2D || o.opcode == op::AVERAGE_POOL_2D ||
          o.opcode == op::MAX_POOL_2D)
        os << ' ' << padding_name(o.padding) << " stride " << o.stride_h << 'x' << o.stride_w;
      if (o.opcode == op::DEPTHWISE_CONV_2D) os << " depth_multiplier " << o.depth_multiplier;
      if (o.opcode == op::AVERAGE_POOL_2D || o.opcode == op::MAX_POOL_2D)
        os << " filter " << o.filter_h << 'x' << o.filter_w;
      if (o.activation != Activation::none) os << ' ' << activation_name(o.activation);
      os << '\n';
    }
    return os.str();
  }

 private:
  struct BufferRef {
    uint64_t offset = 0, size = 0;  // into bytes_
  };

  template <class... Parts>
  [[noreturn]] void error(const Parts&... parts) const {
    fail("tflite: ", source_, ": ", parts...);
  }

  uint64_t buffer_size(uint32_t b) const { return b < buffers_.size() ? buffers_[b].size : 0; }

  void parse() {
    namespace fb = flatbuffer;
    const fb::Buffer buf(bytes_->data(), bytes_->size(), "tflite: " + source_);
    const fb::Table model = buf.root("TFL3");
    version_ = model.scalar<uint32_t>(0, 0);
    if (version_ != 3) error("schema version ", version_, " is not supported (expected 3)");
    description_ = model.string(3, "Model.description");

    // Buffers.
    const fb::VectorRef bufs = model.vector(4, 4, "Model.buffers");
    buffers_.resize(bufs.count);
    for (uint32_t i = 0; i < bufs.count; ++i) {
      const fb::Table b = model.table_at(bufs, i, "Buffer");
      const fb::VectorRef data = b.vector(0, 1, "Buffer.data");
      const uint64_t off = b.scalar<uint64_t>(1, 0), size = b.scalar<uint64_t>(2, 0);
      if (data.present && data.count > 0) {
        buffers_[i] = {data.pos, data.count};
      } else if (off > 1) {
        // Data stored after the flatbuffer (models over 2 GB); offset is from the start of the file.
        if (off > bytes_->size() || size > bytes_->size() - off)
          error("buffer ", i, " [", off, ", +", size, ") lies outside the ", bytes_->size(), "-byte file");
        buffers_[i] = {off, size};
      }
    }

    // Operator codes.
    const fb::VectorRef codes = model.vector(1, 4, "Model.operator_codes");
    std::vector<std::pair<int32_t, std::string>> opcodes;
    std::vector<int32_t> opversions;
    for (uint32_t i = 0; i < codes.count; ++i) {
      const fb::Table c = model.table_at(codes, i, "OperatorCode");
      const int32_t deprecated = c.scalar<int8_t>(0, 0);
      const int32_t builtin = c.scalar<int32_t>(3, 0);
      opcodes.emplace_back(std::max(deprecated, builtin), c.string(1, "OperatorCode.custom_code"));
      opversions.push_back(c.scalar<int32_t>(2, 1));
    }

    // The main subgraph.
    const fb::VectorRef subgraphs = model.vector(2, 4, "Model.subgraphs");
    if (subgraphs.count == 0) error("the model has no subgraph");
    const fb::Table sg = model.table_at(subgraphs, 0, "SubGraph");
    subgraph_name_ = sg.string(4, "SubGraph.name");
    const fb::VectorRef tens = sg.vector(0, 4, "SubGraph.tensors");
    tensors_.resize(tens.count);
    for (uint32_t i = 0; i < tens.count; ++i) {
      const fb::Table t = sg.table_at(tens, i, "Tensor");
      TensorInfo& ti = tensors_[i];
      for (int32_t d : t.scalars<int32_t>(0, "Tensor.shape")) {
        if (d < 0) error("tensor ", i, " has a negative dimension ", d, " (dynamic shapes are not supported)");
        ti.shape.push_back(d);
      }
      const int8_t type = t.scalar<int8_t>(1, 0);
      if (type < 0 || type > 10) error("tensor ", i, " has unknown type ", static_cast<int>(type));
      ti.type = static_cast<TensorType>(type);
      ti.buffer = t.scalar<uint32_t>(2, 0);
      if (ti.buffer >= buffers_.size() && !(ti.buffer == 0 && buffers_.empty()))
        error("tensor ", i, " refers to buffer ", ti.buffer, " of ", buffers_.size());
      ti.name = t.string(3, "Tensor.name");
      ti.is_variable = t.scalar<uint8_t>(5, 0) != 0;
      const fb::Table q = t.table(4, "QuantizationParameters");
      if (q.valid()) {
        ti.quant.min = q.scalars<float>(0, "QuantizationParameters.min");
        ti.quant.max = q.scalars<float>(1, "QuantizationParameters.max");
        ti.quant.scale = q.scalars<float>(2, "QuantizationParameters.scale");
        ti.quant.zero_point = q.scalars<int64_t>(3, "QuantizationParameters.zero_point");
        ti.quant.quantized_dimension = q.scalar<int32_t>(6, 0);
      }
      validate_tensor(i);
    }
    inputs_ = sg.scalars<int32_t>(1, "SubGraph.inputs");
    outputs_ = sg.scalars<int32_t>(2, "SubGraph.outputs");
    for (int32_t x : inputs_) check_tensor_index(x, "subgraph input", false);
    for (int32_t x : outputs_) check_tensor_index(x, "subgraph output", false);

    const fb::VectorRef ops = sg.vector(3, 4, "SubGraph.operators");
    operators_.resize(ops.count);
    for (uint32_t i = 0; i < ops.count; ++i) {
      const fb::Table o = sg.table_at(ops, i, "Operator");
      OperatorInfo& oi = operators_[i];
      const uint32_t idx = o.scalar<uint32_t>(0, 0);
      if (idx >= opcodes.size()) error("operator ", i, " has opcode index ", idx, " of ", opcodes.size());
      oi.opcode = opcodes[idx].first;
      oi.custom_code = opcodes[idx].second;
      oi.version = opversions[idx];
      oi.inputs = o.scalars<int32_t>(1, "Operator.inputs");
      oi.outputs = o.scalars<int32_t>(2, "Operator.outputs");
      for (int32_t x : oi.inputs) check_tensor_index(x, "operator input", true);
      for (int32_t x : oi.outputs) check_tensor_index(x, "operator output", false);
      oi.options_type = o.scalar<uint8_t>(3, 0);
      const fb::Table opt = o.table(4, "builtin_options");
      if (opt.valid()) decode_options(i, oi, opt);
    }
  }

  void check_tensor_index(int32_t x, const char* what, bool optional) const {
    if (optional && x == -1) return;
    if (x < 0 || static_cast<std::size_t>(x) >= tensors_.size())
      error(what, " refers to tensor ", x, " of ", tensors_.size());
  }

  void validate_tensor(uint32_t i) const {
    const TensorInfo& t = tensors_[i];
    uint64_t n = 1;
    for (int64_t d : t.shape) {
      if (d != 0 && n > (uint64_t(1) << 40) / static_cast<uint64_t>(d))
        error("tensor ", i, " '", t.name, "' has an absurd shape ", shape_list(t.shape));
      n *= static_cast<uint64_t>(d);
    }
    const uint64_t have = buffer_size(t.buffer);
    if (have > 0) {
      const std::size_t es = tensor_type_size(t.type);
      if (es == 0) error("tensor ", i, " '", t.name, "' has constant data of unsupported type ", tensor_type_name(t.type));
      if (have != n * es)
        error("tensor ", i, " '", t.name, "' ", tensor_type_name(t.type), ' ', shape_list(t.shape), " needs ", n * es,
              " bytes of data but its buffer ", t.buffer, " has ", have);
    }
    const Quantization& q = t.quant;
    if (!q.zero_point.empty() && q.zero_point.size() != q.scale.size())
      error("tensor ", i, " '", t.name, "' has ", q.scale.size(), " quantization scales but ", q.zero_point.size(),
            " zero points");
    for (float s : q.scale)
      if (!(std::isfinite(s) && s >= 0.0f)) error("tensor ", i, " '", t.name, "' has an invalid quantization scale ", s);
    if (q.per_channel()) {
      if (q.quantized_dimension < 0 || static_cast<std::size_t>(q.quantized_dimension) >= t.shape.size())
        error("tensor ", i, " '", t.name, "' has quantized_dimension ", q.quantized_dimension, " for shape ",
              shape_list(t.shape));
      if (static_cast<uint64_t>(t.shape[static_cast<std::size_t>(q.quantized_dimension)]) != q.scale.size())
        error("tensor ", i, " '", t.name, "' has ", q.scale.size(), " scales for dimension ", q.quantized_dimension,
              " of size ", t.shape[static_cast<std::size_t>(q.quantized_dimension)]);
    }
  }

  void decode_options(uint32_t i, OperatorInfo& o, const flatbuffer::Table& t) {
    namespace ot = options_type;
    auto act = [&](int id) {
      const int8_t a = t.scalar<int8_t>(id, 0);
      if (a < 0 || a > 5) error("operator ", i, " has unknown fused activation ", static_cast<int>(a));
      return static_cast<Activation>(a);
    };
    auto pad = [&](int id) {
      const int8_t p = t.scalar<int8_t>(id, 0);
      if (p != 0 && p != 1) error("operator ", i, " has unknown padding ", static_cast<int>(p));
      return static_cast<Padding>(p);
    };
    switch (o.options_type) {
      case ot::Conv2D:
        o.padding = pad(0);
        o.stride_w = t.scalar<int32_t>(1, 0);
        o.stride_h = t.scalar<int32_t>(2, 0);
        o.activation = act(3);
        o.dilation_w = t.scalar<int32_t>(4, 1);
        o.dilation_h = t.scalar<int32_t>(5, 1);
        break;
      case ot::DepthwiseConv2D:
        o.padding = pad(0);
        o.stride_w = t.scalar<int32_t>(1, 0);
        o.stride_h = t.scalar<int32_t>(2, 0);
        o.depth_multiplier = t.scalar<int32_t>(3, 0);
        o.activation = act(4);
        o.dilation_w = t.scalar<int32_t>(5, 1);
        o.dilation_h = t.scalar<int32_t>(6, 1);
        break;
      case ot::Pool2D:
        o.padding = pad(0);
        o.stride_w = t.scalar<int32_t>(1, 0);
        o.stride_h = t.scalar<int32_t>(2, 0);
        o.filter_w = t.scalar<int32_t>(3, 0);
        o.filter_h = t.scalar<int32_t>(4, 0);
        o.activation = act(5);
        break;
      case ot::FullyConnected:
        o.activation = act(0);
        o.keep_dims = t.scalar<uint8_t>(2, 0) != 0;
        if (t.scalar<int8_t>(1, 0) != 0) error("operator ", i, ": FULLY_CONNECTED with shuffled weights is not supported");
        break;
      case ot::Softmax: o.softmax_beta = t.scalar<float>(0, 0.0f); break;
      case ot::Concatenation:
        o.axis = t.scalar<int32_t>(0, 0);
        o.activation = act(1);
        break;
      case ot::Add:
      case ot::Mul: o.activation = act(0); break;
      case ot::Reshape: o.new_shape = t.scalars<int32_t>(0, "ReshapeOptions.new_shape"); break;
      case ot::Reducer: o.keep_dims = t.scalar<uint8_t>(0, 0) != 0; break;
      case ot::Squeeze: o.squeeze_dims = t.scalars<int32_t>(0, "SqueezeOptions.squeeze_dims"); break;
      default: break;  // options of ops the importer does not run are not decoded
    }
    // Geometry a real graph never has would still size the float network's buffers: a depthwise stride of
    // 67,108,865 asked the CPU op for a plane of gigabytes (found by tests/fuzz/fuzz_tflite.cpp).
    auto bounded = [&](const char* what, int32_t v) {
      if (v < 1 || v > kMaxWindow)
        error("operator ", i, " (", o.name(), ") has ", what, " ", v, " (expected 1 to ", kMaxWindow, ")");
    };
    if (o.options_type == ot::Conv2D || o.options_type == ot::DepthwiseConv2D || o.options_type == ot::Pool2D) {
      bounded("stride", o.stride_w);
      bounded("stride", o.stride_h);
    }
    if (o.options_type == ot::Conv2D || o.options_type == ot::DepthwiseConv2D) {
      bounded("dilation", o.dilation_w);
      bounded("dilation", o.dilation_h);
    }
    if (o.options_type == ot::DepthwiseConv2D && (o.depth_multiplier < 0 || o.depth_multiplier > kMaxWindow))
      error("operator ", i, " (", o.name(), ") has depth multiplier ", o.depth_multiplier, " (expected 0 to ",
            kMaxWindow, ")");  // 0: the schema's default, the multiplier then follows from the shapes
    if (o.options_type == ot::Pool2D) {
      bounded("filter size", o.filter_w);
      bounded("filter size", o.filter_h);
    }
  }

  // The largest stride, dilation, depth multiplier or pooling window accepted (real models use 1 to 7).
  static constexpr int32_t kMaxWindow = 256;

  std::shared_ptr<std::vector<uint8_t>> bytes_;
  std::string source_;
  uint32_t version_ = 0;
  std::string description_, subgraph_name_;
  std::vector<BufferRef> buffers_;
  std::vector<TensorInfo> tensors_;
  std::vector<OperatorInfo> operators_;
  std::vector<int32_t> inputs_, outputs_;
};

// ---- float inference -------------------------------------------------------------------------------------

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
        return ops::impl::cpu_map(x, "relu_n1_to_1", [](auto v) {
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

// Reads a raw 8-bit image file (e.g. bird.rgb: 224 × 224 × 3 bytes, HWC RGB) and checks its size.
inline std::vector<uint8_t> read_raw_image(const std::string& path, std::size_t expected_bytes) {
  std::ifstream in(path, std::ios::binary);
  RETIKD_CHECK(in.good(), "read_raw_image: ", path, ": cannot open");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  RETIKD_CHECK(bytes.size() == expected_bytes, "read_raw_image: ", path, " has ", bytes.size(), " bytes, expected ",
               expected_bytes);
  return bytes;
}

}  // namespace tflite
}  // namespace io
}  // namespace retikd
