// retikd/io/onnx.hpp — reading ONNX models with ONNX's own C++ library (Debian's libonnx-dev, protobuf 3.21),
// for importing pretrained weights (the DINOv2 ViT-S/14 teacher: io/onnx_import.hpp maps them onto timm names).
//
// This header declares a protobuf-free view of a model; the parsing lives in src/onnx/onnx_model.cpp, compiled
// into the optional `retikd::onnx` library (CMake finds ONNX the way it finds cuDNN; the rest of retikd stays
// header-only and the Jetson build does not need it). Code that calls these functions links retikd::onnx, which
// also defines RETIKD_WITH_ONNX=1 for it.
//
//   io::onnx::Model m = io::onnx::read_model("vit_s_focus.onnx");
//   for (const auto& w : m.initializers) ...   // name, Tensor (float32 / int64), the nodes that consume it
//
// The file is treated as hostile: its size is checked against a limit before it is read, protobuf parses it
// (a truncated or corrupt message is refused as a whole), and then the model is validated before anything is
// converted — every initializer's data size equals its shape × element size (typed fields or raw_data), shapes
// are non-negative and overflow-checked, externally stored data (ONNX's external-data files) is refused with a
// message saying so, and node inputs name something that exists. Any failure throws retikd::Error
// "onnx: <file>: <problem>", never a crash.
//
// Initializers of every floating type (FLOAT, FLOAT16, BFLOAT16, DOUBLE) are converted to float32 exactly where
// the type allows (double is rounded); integer ones (INT64, INT32, INT8, UINT8, INT16, UINT16, BOOL) to int64.
// Anonymous weights — PyTorch's exporter names transposed MatMul weights "onnx::MatMul_1972" — are named by the
// node that consumes them: `consumers` lists every (node, input slot), and Model::by_consumer() finds one by the
// node's name and slot.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "retikd/core/tensor.hpp"

namespace retikd {
namespace io {
namespace onnx {

struct ReadOptions {
  // Largest file accepted. ONNX's own protobuf limit is 2 GiB; DINOv2 ViT-S/14 is 97 MB.
  int64_t max_bytes = int64_t(2) << 30;
  // Also run ONNX's checker (onnx::checker::check_model) and report its complaint as the error.
  bool run_checker = false;
};

// One use of a tensor as a node's input.
struct Consumer {
  std::string node;  // the node's name ("/backbone/encoder/layer.0/attention/attention/query/MatMul")
  std::string op;    // its op_type ("MatMul")
  int slot = 0;      // the input position
};

struct Initializer {
  std::string name;
  std::string onnx_type;  // "FLOAT", "FLOAT16", "INT64", ...
  Tensor value;           // float32 for floating types, int64 for integer types
  std::vector<Consumer> consumers;
  bool is_float() const { return value.defined() && value.dtype() == DType::float32; }
};

struct Attribute {
  std::string name;
  std::string type;  // "FLOAT", "INT", "STRING", "FLOATS", "INTS", "STRINGS", "TENSOR", "GRAPH", ...
  double f = 0;
  int64_t i = 0;
  std::string s;
  std::vector<double> floats;
  std::vector<int64_t> ints;
  std::vector<std::string> strings;
};

struct Node {
  std::string name, op_type, domain;
  std::vector<std::string> inputs, outputs;  // "" marks an omitted optional input
  std::vector<Attribute> attributes;
  const Attribute* attribute(const std::string& name) const {
    for (const auto& a : attributes)
      if (a.name == name) return &a;
    return nullptr;
  }
};

struct ValueInfo {
  std::string name;
  std::string elem_type;             // "FLOAT", ... or "" when not a tensor
  std::vector<int64_t> dims;         // -1 where the dimension is symbolic or unknown
  std::vector<std::string> dim_params;  // the symbolic names ("batch_size"), "" for fixed dims
};

struct Model {
  std::string path;  // the file read ("" when parsed from memory)
  int64_t ir_version = 0;
  std::vector<std::pair<std::string, int64_t>> opsets;  // (domain, version); "" is the default domain
  std::string producer_name, producer_version, graph_name;
  std::map<std::string, std::string> metadata;           // metadata_props
  std::vector<ValueInfo> inputs, outputs;                // graph inputs that are not initializers; outputs
  std::vector<Node> nodes;                               // in the file's (topological) order
  std::vector<Initializer> initializers;                 // in the file's order

  const Initializer* find(const std::string& name) const;
  // The initializer consumed by the node named `node` at input `slot`, or nullptr (node names are unique: the
  // reader refuses a repeated one; an unnamed node is never found).
  const Initializer* by_consumer(const std::string& node, int slot) const;
  const Node* node(const std::string& name) const;  // nullptr for "" or an unknown name
  int64_t opset() const;  // the default domain's opset version (0 when absent)
};

// Parses and validates a model file / a serialized ModelProto in memory (`where` names it in errors).
Model read_model(const std::string& path, const ReadOptions& options = {});
Model parse_model(const void* data, std::size_t size, const std::string& where = "<memory>",
                  const ReadOptions& options = {});

// The ONNX library's version string (e.g. "1.12.0"), for reports.
std::string library_version();

}  // namespace onnx
}  // namespace io
}  // namespace retikd
