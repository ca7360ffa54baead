// src/onnx/onnx_export.cpp — the protobuf side of retikd/io/onnx_export.hpp: the protobuf-free Graph turned into
// an onnx::ModelProto, ONNX's checker and strict shape inference run on it, and the serialized bytes written.
// Compiled into the optional retikd::onnx library, beside the importer (onnx_model.cpp).
#include "retikd/io/onnx_export.hpp"

#include <onnx/checker.h>
#include <onnx/defs/schema.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include <cstring>
#include <limits>

#include "retikd/core/error.hpp"
#include "retikd/io/atomic_file.hpp"

namespace retikd {
namespace io {
namespace onnx {

namespace {

namespace pb = ::onnx;

int data_type(DType t) {
  switch (t) {
    case DType::float32: return pb::TensorProto::FLOAT;
    case DType::float16: return pb::TensorProto::FLOAT16;
    case DType::int64: return pb::TensorProto::INT64;
    case DType::int32: return pb::TensorProto::INT32;
    default: break;
  }
  fail("onnx export: no ONNX element type for ", dtype_name(t));
}

int elem_type(const std::string& name, const std::string& where) {
  if (name == "FLOAT") return pb::TensorProto::FLOAT;
  if (name == "FLOAT16") return pb::TensorProto::FLOAT16;
  if (name == "INT64") return pb::TensorProto::INT64;
  if (name == "INT32") return pb::TensorProto::INT32;
  fail("onnx export: ", where, ": element type '", name, "' is not written by retikd");
}

void fill_value_info(const ValueInfo& v, pb::ValueInfoProto* out) {
  out->set_name(v.name);
  auto* tt = out->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(elem_type(v.elem_type, v.name));
  auto* shape = tt->mutable_shape();
  for (std::size_t i = 0; i < v.dims.size(); ++i) {
    auto* d = shape->add_dim();
    const std::string param = i < v.dim_params.size() ? v.dim_params[i] : "";
    if (v.dims[i] >= 0) {
      d->set_dim_value(v.dims[i]);
    } else {
      d->set_dim_param(param);
    }
  }
}

void fill_attribute(const Attribute& a, pb::AttributeProto* out, const std::string& where) {
  out->set_name(a.name);
  if (a.type == "INT") {
    out->set_type(pb::AttributeProto::INT);
    out->set_i(a.i);
  } else if (a.type == "FLOAT") {
    out->set_type(pb::AttributeProto::FLOAT);
    out->set_f(static_cast<float>(a.f));
  } else if (a.type == "STRING") {
    out->set_type(pb::AttributeProto::STRING);
    out->set_s(a.s);
  } else if (a.type == "INTS") {
    out->set_type(pb::AttributeProto::INTS);
    for (int64_t v : a.ints) out->add_ints(v);
  } else if (a.type == "FLOATS") {
    out->set_type(pb::AttributeProto::FLOATS);
    for (double v : a.floats) out->add_floats(static_cast<float>(v));
  } else if (a.type == "STRINGS") {
    out->set_type(pb::AttributeProto::STRINGS);
    for (const auto& v : a.strings) out->add_strings(v);
  } else {
    fail("onnx export: ", where, ": attribute ", a.name, " of type '", a.type, "' is not written by retikd");
  }
}

// raw_data in little-endian order (x86-64 and aarch64 are little-endian, as ONNX's raw_data is).
void fill_tensor(const std::string& name, const Tensor& t, pb::TensorProto* out) {
  const Tensor c = t.to(Device::cpu()).contiguous();
  out->set_name(name);
  out->set_data_type(data_type(c.dtype()));
  for (int64_t d = 0; d < c.dim(); ++d) out->add_dims(c.size(d));
  out->set_raw_data(std::string(static_cast<const char*>(c.raw_data()),
                                static_cast<std::size_t>(c.numel()) * c.element_size()));
}

pb::ModelProto to_proto(const Graph& g) {
  pb::ModelProto m;
  m.set_ir_version(g.ir_version);
  m.set_producer_name(g.producer_name);
  m.set_producer_version(g.producer_version);
  auto* opset = m.add_opset_import();
  opset->set_domain("");
  opset->set_version(g.opset);
  for (const auto& kv : g.metadata) {
    auto* p = m.add_metadata_props();
    p->set_key(kv.first);
    p->set_value(kv.second);
  }
  pb::GraphProto* gp = m.mutable_graph();
  gp->set_name(g.name);
  if (!g.doc.empty()) gp->set_doc_string(g.doc);
  for (const auto& v : g.inputs) fill_value_info(v, gp->add_input());
  for (const auto& v : g.outputs) fill_value_info(v, gp->add_output());
  for (const auto& kv : g.initializers) fill_tensor(kv.first, kv.second, gp->add_initializer());
  for (const auto& n : g.nodes) {
    pb::NodeProto* np = gp->add_node();
    np->set_name(n.name);
    np->set_op_type(n.op_type);
    if (!n.domain.empty()) np->set_domain(n.domain);
    for (const auto& i : n.inputs) np->add_input(i);
    for (const auto& o : n.outputs) np->add_output(o);
    for (const auto& a : n.attributes) fill_attribute(a, np->add_attribute(), n.name);
  }
  return m;
}

void run_check(const pb::ModelProto& m, const std::string& where, CheckLevel level) {
  if (level == CheckLevel::none) return;
  try {
    pb::checker::check_model(m);
    if (level == CheckLevel::full) {
      // Python's full_check: shape inference with check_type = true and strict mode (error_mode 1), on a copy so
      // the written file carries no inferred value_info.
      pb::ModelProto copy = m;
      pb::ShapeInferenceOptions options(/*check_type_val=*/true, /*strict_mode_val=*/1, /*data_prop_val=*/false);
      pb::shape_inference::InferShapes(copy, pb::OpSchemaRegistry::Instance(), options);
    }
  } catch (const std::exception& e) {
    fail("onnx export: ", where, ": ONNX's checker refuses the model: ", e.what());
  }
}

}  // namespace

std::string serialize_model(const Graph& g, CheckLevel check) {
  const pb::ModelProto m = to_proto(g);
  run_check(m, g.name, check);
  std::string bytes;
  RETIKD_CHECK(m.SerializeToString(&bytes), "onnx export: ", g.name, ": protobuf could not serialize the model");
  RETIKD_CHECK(bytes.size() < static_cast<std::size_t>(std::numeric_limits<int>::max()), "onnx export: ", g.name,
               ": the model is 2 GiB or more, beyond protobuf's limit (external data is not written)");
  return bytes;
}

int64_t write_model(const std::string& path, const Graph& g, CheckLevel check) {
  const std::string bytes = serialize_model(g, check);
  write_file_atomically(path, [&](const ByteSink& sink) { sink(bytes.data(), bytes.size()); }, "onnx export");
  return static_cast<int64_t>(bytes.size());
}

void check_serialized_model(const std::string& bytes, const std::string& where, CheckLevel check) {
  pb::ModelProto m;
  RETIKD_CHECK(m.ParseFromString(bytes), "onnx: ", where, ": not a valid ONNX model (protobuf could not parse it)");
  run_check(m, where, check);
}

}  // namespace onnx
}  // namespace io
}  // namespace retikd
