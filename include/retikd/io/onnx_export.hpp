// retikd/io/onnx_export.hpp — writing ONNX models: a protobuf-free graph (nodes, initializers, typed inputs and
// outputs, metadata_props), a small builder that names values uniquely, and the writer, which serializes the
// graph with ONNX's own C++ library and refuses to write what ONNX's checker refuses.
//
// The protobuf side lives in src/onnx/onnx_export.cpp, compiled into the optional `retikd::onnx` library (as the
// importer, io/onnx.hpp); this header only uses the protobuf-free types of io/onnx.hpp (Node, Attribute,
// ValueInfo), so it compiles everywhere, and code that calls serialize_model / write_model links retikd::onnx.
//
//   io::onnx::GraphBuilder b("mobilenet_v2");
//   std::string x = b.input("input", DType::float32, {-1, 3, 224, 224}, {"batch", "", "", ""});
//   std::string w = b.initializer("conv.weight", weight);               // a retikd Tensor (float32/float16/int64)
//   std::string y = b.node("Conv", {x, w}, {io::onnx::attr_ints("strides", {2, 2})}, "conv");
//   b.output(y, "logits", DType::float32, {-1, 4}, {"batch", ""});
//   b.graph().metadata["classes"] = "[...]";
//   io::onnx::write_model("student.onnx", b.graph());                   // checked, then written atomically
//
// The check (CheckLevel::full, the default) is what Python's onnx.checker.check_model(model, full_check=True)
// does, with ONNX 1.12's C++ API: onnx::checker::check_model (every node against its opset schema, names,
// initializers, the IR version), then strict shape inference (onnx::shape_inference::InferShapes with type
// checking and errors thrown), which also proves that the declared output shapes follow from the input.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "retikd/core/error.hpp"
#include "retikd/core/tensor.hpp"
#include "retikd/io/onnx.hpp"

namespace retikd {
namespace io {
namespace onnx {

// The opset the exporters target: TensorRT 8.2 (JetPack 4.6) parses ONNX up to opset 13, which has no
// LayerNormalization (opset 17) and no Gelu (opset 20); they are decomposed.
constexpr int64_t kExportOpset = 13;
// IR version 7 is the one ONNX 1.8 introduced with opset 13: the oldest that can carry it, so older parsers
// (TensorRT 8.2's onnx-tensorrt) accept the file.
constexpr int64_t kExportIrVersion = 7;

// A model to write: the graph, its typed inputs / outputs and the model's metadata_props.
struct Graph {
  std::string name = "retikd";
  std::string doc;                      // graph doc_string
  std::string producer_name = "retikd";
  std::string producer_version;
  int64_t opset = kExportOpset;
  int64_t ir_version = kExportIrVersion;
  std::vector<ValueInfo> inputs, outputs;  // elem_type "FLOAT", "FLOAT16", "INT64"; dims -1 with a dim_param name
  std::vector<Node> nodes;                 // in topological order
  std::vector<std::pair<std::string, Tensor>> initializers;  // float32 → FLOAT, float16 → FLOAT16, int64 → INT64
  std::map<std::string, std::string> metadata;               // metadata_props
};

// ---- attributes --------------------------------------------------------------------------------------------

inline Attribute attr_int(const std::string& name, int64_t v) {
  Attribute a;
  a.name = name;
  a.type = "INT";
  a.i = v;
  return a;
}
inline Attribute attr_float(const std::string& name, double v) {
  Attribute a;
  a.name = name;
  a.type = "FLOAT";
  a.f = v;
  return a;
}
inline Attribute attr_ints(const std::string& name, std::vector<int64_t> v) {
  Attribute a;
  a.name = name;
  a.type = "INTS";
  a.ints = std::move(v);
  return a;
}
inline Attribute attr_string(const std::string& name, const std::string& v) {
  Attribute a;
  a.name = name;
  a.type = "STRING";
  a.s = v;
  return a;
}

// The ONNX element type name of a retikd dtype ("FLOAT", "FLOAT16", "INT64", "INT32"); throws for others.
inline std::string elem_type_name(DType t) {
  switch (t) {
    case DType::float32: return "FLOAT";
    case DType::float16: return "FLOAT16";
    case DType::int64: return "INT64";
    case DType::int32: return "INT32";
    default: break;
  }
  fail("onnx export: no ONNX element type for ", dtype_name(t));
}
// TensorProto.DataType numbers (onnx.proto), for Cast's `to` attribute.
inline int64_t elem_type_code(DType t) {
  switch (t) {
    case DType::float32: return 1;
    case DType::float16: return 10;
    case DType::int64: return 7;
    case DType::int32: return 6;
    default: break;
  }
  fail("onnx export: no ONNX element type for ", dtype_name(t));
}

// ---- the builder -------------------------------------------------------------------------------------------

// Appends nodes and initializers to a Graph, giving every value a unique name: node outputs are
// "<node name>:<k>" style names derived from the hint, initializers keep their names (a clash is an error,
// since initializer names are how weights are found again).
class GraphBuilder {
 public:
  explicit GraphBuilder(const std::string& graph_name = "retikd") { g_.name = graph_name; }

  Graph& graph() { return g_; }
  const Graph& graph() const { return g_; }

  // A graph input; dims -1 are symbolic and take their name from dim_params (same length, "" for fixed dims).
  std::string input(const std::string& name, DType t, const std::vector<int64_t>& dims,
                    const std::vector<std::string>& dim_params = {}) {
    claim(name);
    g_.inputs.push_back(value_info(name, t, dims, dim_params));
    return name;
  }
  // Declares `value` a graph output named `name` (an Identity node renames it when the names differ).
  void output(const std::string& value, const std::string& name, DType t, const std::vector<int64_t>& dims,
              const std::vector<std::string>& dim_params = {}) {
    if (value != name) {
      claim(name);
      Node n;
      n.name = name + "/Identity";
      n.op_type = "Identity";
      n.inputs = {value};
      n.outputs = {name};
      g_.nodes.push_back(std::move(n));
    }
    g_.outputs.push_back(value_info(name, t, dims, dim_params));
  }
  // An initializer named exactly `name` (float32, float16 or int64 tensor; stored contiguous on the CPU).
  std::string initializer(const std::string& name, const Tensor& value) {
    RETIKD_CHECK(value.defined(), "onnx export: initializer ", name, " is undefined");
    claim(name);
    g_.initializers.emplace_back(name, value.to(Device::cpu()).contiguous());
    return name;
  }
  // A constant with a fresh name derived from `hint` (scalars, shapes, axes, Clip bounds, ...).
  std::string constant(const std::string& hint, const Tensor& value) { return initializer(fresh(hint), value); }
  // A scalar (0-d) constant of dtype `t`.
  std::string scalar(const std::string& hint, double v, DType t) {
    return constant(hint, Tensor::full({}, v).to(t));
  }
  // A 1-d int64 constant (shapes, axes, pads).
  std::string ints(const std::string& hint, const std::vector<int64_t>& v) {
    return constant(hint, Tensor::from_vector(v, {static_cast<int64_t>(v.size())}));
  }
  // One node with one output, named after `name` (made unique); returns the output's name.
  std::string node(const std::string& op_type, const std::vector<std::string>& inputs,
                   const std::vector<Attribute>& attributes = {}, const std::string& name = "") {
    return nodes(op_type, inputs, 1, attributes, name)[0];
  }
  // One node with `outputs` outputs.
  std::vector<std::string> nodes(const std::string& op_type, const std::vector<std::string>& inputs, int outputs,
                                 const std::vector<Attribute>& attributes = {}, const std::string& name = "") {
    Node n;
    n.name = fresh(name.empty() ? op_type : name + "/" + op_type);
    n.op_type = op_type;
    n.inputs = inputs;
    n.attributes = attributes;
    for (int k = 0; k < outputs; ++k) {
      const std::string out = outputs == 1 ? n.name : n.name + ":" + std::to_string(k);
      claim(out);
      n.outputs.push_back(out);
    }
    g_.nodes.push_back(n);
    return n.outputs;
  }

 private:
  static ValueInfo value_info(const std::string& name, DType t, const std::vector<int64_t>& dims,
                              const std::vector<std::string>& dim_params) {
    RETIKD_CHECK(dim_params.empty() || dim_params.size() == dims.size(), "onnx export: ", name, ": ",
                 dim_params.size(), " dim_params for ", dims.size(), " dims");
    ValueInfo v;
    v.name = name;
    v.elem_type = elem_type_name(t);
    v.dims = dims;
    v.dim_params = dim_params.empty() ? std::vector<std::string>(dims.size()) : dim_params;
    for (std::size_t i = 0; i < dims.size(); ++i)
      RETIKD_CHECK(dims[i] >= 0 || !v.dim_params[i].empty(), "onnx export: ", name, ": dimension ", i,
                   " is symbolic (-1) but has no name");
    return v;
  }
  void claim(const std::string& name) {
    RETIKD_CHECK(!name.empty(), "onnx export: empty value name");
    RETIKD_CHECK(used_.insert(name).second, "onnx export: the name '", name, "' is used twice");
  }
  std::string fresh(const std::string& hint) {
    if (!used_.count(hint)) return hint;
    for (int k = 1;; ++k) {
      const std::string s = hint + "_" + std::to_string(k);
      if (!used_.count(s)) return s;
    }
  }

  Graph g_;
  std::set<std::string> used_;
};

// ---- writing (retikd::onnx) ----------------------------------------------------------------------------------

enum class CheckLevel {
  none,   // serialize only (tests of the writer itself)
  basic,  // onnx::checker::check_model
  full    // check_model, then strict shape inference with type checks (full_check=True in Python)
};

// The serialized ModelProto of `g` after the check; a refused graph throws retikd::Error
// "onnx export: <graph name>: ONNX's checker refuses the model: <checker's message>".
std::string serialize_model(const Graph& g, CheckLevel check = CheckLevel::full);
// serialize_model, then an atomic write to `path`; returns the number of bytes written.
int64_t write_model(const std::string& path, const Graph& g, CheckLevel check = CheckLevel::full);
// Runs the check on a serialized model (e.g. a file written elsewhere); throws like serialize_model.
void check_serialized_model(const std::string& bytes, const std::string& where, CheckLevel check = CheckLevel::full);

}  // namespace onnx
}  // namespace io
}  // namespace retikd
