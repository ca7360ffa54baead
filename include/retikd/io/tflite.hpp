// retikd/io/tflite.hpp — a TFLite model reader: our own parser of the .tflite flatbuffer (schema version 3) and
// dequantization of its weights to float. The interpreter that runs the graph with retikd's ops is
// deploy/tflite_interpreter.hpp (deploy::tflite::FloatNetwork); this header needs no op.
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
