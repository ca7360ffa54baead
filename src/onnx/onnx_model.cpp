// src/onnx/onnx_model.cpp — the protobuf side of retikd/io/onnx.hpp: ModelProto parsing with ONNX's generated
// classes, validation of every initializer before conversion, and the protobuf-free Model the header declares.
// Compiled into the optional retikd::onnx library so that protobuf's headers never reach the header-only part.
#include "retikd/io/onnx.hpp"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <onnx/checker.h>
#include <onnx/onnx_pb.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <sys/stat.h>

#include "retikd/core/error.hpp"
#include "retikd/core/half.hpp"

namespace retikd {
namespace io {
namespace onnx {

namespace {

namespace pb = ::onnx;

// The names of TensorProto::DataType values, for messages and Initializer::onnx_type.
std::string type_name(int t) {
  switch (t) {
    case pb::TensorProto::FLOAT: return "FLOAT";
    case pb::TensorProto::UINT8: return "UINT8";
    case pb::TensorProto::INT8: return "INT8";
    case pb::TensorProto::UINT16: return "UINT16";
    case pb::TensorProto::INT16: return "INT16";
    case pb::TensorProto::INT32: return "INT32";
    case pb::TensorProto::INT64: return "INT64";
    case pb::TensorProto::STRING: return "STRING";
    case pb::TensorProto::BOOL: return "BOOL";
    case pb::TensorProto::FLOAT16: return "FLOAT16";
    case pb::TensorProto::DOUBLE: return "DOUBLE";
    case pb::TensorProto::UINT32: return "UINT32";
    case pb::TensorProto::UINT64: return "UINT64";
    case pb::TensorProto::COMPLEX64: return "COMPLEX64";
    case pb::TensorProto::COMPLEX128: return "COMPLEX128";
    case pb::TensorProto::BFLOAT16: return "BFLOAT16";
    default: return "type " + std::to_string(t);
  }
}

// Bytes per element of the types retikd converts (0: not converted).
std::size_t element_bytes(int t) {
  switch (t) {
    case pb::TensorProto::FLOAT: return 4;
    case pb::TensorProto::DOUBLE: return 8;
    case pb::TensorProto::FLOAT16:
    case pb::TensorProto::BFLOAT16:
    case pb::TensorProto::INT16:
    case pb::TensorProto::UINT16: return 2;
    case pb::TensorProto::INT64: return 8;
    case pb::TensorProto::INT32: return 4;
    case pb::TensorProto::INT8:
    case pb::TensorProto::UINT8:
    case pb::TensorProto::BOOL: return 1;
    default: return 0;
  }
}

bool is_floating(int t) {
  return t == pb::TensorProto::FLOAT || t == pb::TensorProto::DOUBLE || t == pb::TensorProto::FLOAT16 ||
         t == pb::TensorProto::BFLOAT16;
}

float bf16_bits_to_float(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

template <class T>
T read_le(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);  // x86-64 / aarch64 are little-endian, as ONNX's raw_data is
  return v;
}

// Element count of `dims`, overflow-checked against a bound no real tensor reaches (2^40 elements). The bound
// applies to the product of the non-zero sizes too: (6, 0, 63, 1056672, ...) holds no elements, but its strides
// overflow int64 (found by fuzz_onnx), and no real tensor has an empty dimension beside huge ones.
int64_t checked_numel(const google::protobuf::RepeatedField<int64_t>& dims, const std::string& what) {
  const int64_t limit = int64_t(1) << 40;
  int64_t extent = 1;  // the product of the sizes, an empty dimension counted as 1
  bool empty = false;
  for (int64_t d : dims) {
    RETIKD_CHECK(d >= 0, what, " has a negative dimension ", d);
    empty = empty || d == 0;
    const int64_t counted = d == 0 ? 1 : d;
    RETIKD_CHECK(extent <= limit / counted, what, " has dimensions whose product exceeds 2^40 (corrupt shape)");
    extent *= counted;
  }
  return empty ? 0 : extent;
}

// The initializer's data converted to float32 or int64, after checking its size against its shape.
Tensor convert(const pb::TensorProto& t, const std::string& where) {
  const std::string what = where + ": initializer '" + t.name() + "'";
  RETIKD_CHECK(t.data_location() != pb::TensorProto::EXTERNAL && t.external_data_size() == 0, what,
               " keeps its data in an external file, which retikd does not read (a file beside the model could "
               "be anything); save the model with every tensor inside it (onnx.save_model(model, path, "
               "save_as_external_data=False))");
  RETIKD_CHECK(!t.has_segment(), what, " is a segment of a larger tensor (not supported)");
  const int dt = t.data_type();
  const int64_t n = checked_numel(t.dims(), what);
  Shape shape(t.dims().begin(), t.dims().end());
  const std::size_t es = element_bytes(dt);
  if (es == 0) return Tensor();  // strings, complex, unsigned 32/64-bit: kept by name, not converted
  const bool raw = !t.raw_data().empty();
  if (raw) {
    RETIKD_CHECK(t.raw_data().size() == static_cast<std::size_t>(n) * es, what, " (", type_name(dt), " ",
                 shape_str(shape), ") holds ", t.raw_data().size(), " bytes of raw_data; its shape needs ",
                 static_cast<std::size_t>(n) * es);
  } else {
    int64_t have = 0;
    std::string field;
    switch (dt) {
      case pb::TensorProto::FLOAT: have = t.float_data_size(), field = "float_data"; break;
      case pb::TensorProto::DOUBLE: have = t.double_data_size(), field = "double_data"; break;
      case pb::TensorProto::INT64: have = t.int64_data_size(), field = "int64_data"; break;
      default: have = t.int32_data_size(), field = "int32_data"; break;  // the 16/8-bit types and INT32
    }
    RETIKD_CHECK(have == n, what, " (", type_name(dt), " ", shape_str(shape), ") holds ", have, " values in ", field,
                 "; its shape needs ", n);
  }
  const std::size_t count = static_cast<std::size_t>(n);
  const char* bytes = t.raw_data().data();
  if (is_floating(dt)) {
    Tensor out = Tensor::empty(shape, DType::float32);
    float* o = out.data<float>();
    for (std::size_t i = 0; i < count; ++i) {
      switch (dt) {
        case pb::TensorProto::FLOAT:
          o[i] = raw ? read_le<float>(bytes + 4 * i) : t.float_data(static_cast<int>(i));
          break;
        case pb::TensorProto::DOUBLE:
          o[i] = static_cast<float>(raw ? read_le<double>(bytes + 8 * i) : t.double_data(static_cast<int>(i)));
          break;
        case pb::TensorProto::FLOAT16:
          o[i] = half_bits_to_float(raw ? read_le<uint16_t>(bytes + 2 * i)
                                        : static_cast<uint16_t>(t.int32_data(static_cast<int>(i))));
          break;
        default:  // BFLOAT16
          o[i] = bf16_bits_to_float(raw ? read_le<uint16_t>(bytes + 2 * i)
                                        : static_cast<uint16_t>(t.int32_data(static_cast<int>(i))));
          break;
      }
    }
    return out;
  }
  Tensor out = Tensor::empty(shape, DType::int64);
  int64_t* o = out.data<int64_t>();
  for (std::size_t i = 0; i < count; ++i) {
    const int k = static_cast<int>(i);
    switch (dt) {
      case pb::TensorProto::INT64: o[i] = raw ? read_le<int64_t>(bytes + 8 * i) : t.int64_data(k); break;
      case pb::TensorProto::INT32: o[i] = raw ? read_le<int32_t>(bytes + 4 * i) : t.int32_data(k); break;
      case pb::TensorProto::INT16: o[i] = raw ? read_le<int16_t>(bytes + 2 * i) : static_cast<int16_t>(t.int32_data(k)); break;
      case pb::TensorProto::UINT16: o[i] = raw ? read_le<uint16_t>(bytes + 2 * i) : static_cast<uint16_t>(t.int32_data(k)); break;
      case pb::TensorProto::INT8: o[i] = raw ? read_le<int8_t>(bytes + i) : static_cast<int8_t>(t.int32_data(k)); break;
      default: o[i] = raw ? read_le<uint8_t>(bytes + i) : static_cast<uint8_t>(t.int32_data(k)); break;  // UINT8, BOOL
    }
  }
  return out;
}

ValueInfo convert_value_info(const pb::ValueInfoProto& v) {
  ValueInfo out;
  out.name = v.name();
  if (v.type().has_tensor_type()) {
    const auto& tt = v.type().tensor_type();
    out.elem_type = type_name(tt.elem_type());
    for (const auto& d : tt.shape().dim()) {
      out.dims.push_back(d.has_dim_value() ? d.dim_value() : -1);
      out.dim_params.push_back(d.has_dim_param() ? d.dim_param() : "");
    }
  }
  return out;
}

std::string attribute_type(int t) {
  switch (t) {
    case pb::AttributeProto::FLOAT: return "FLOAT";
    case pb::AttributeProto::INT: return "INT";
    case pb::AttributeProto::STRING: return "STRING";
    case pb::AttributeProto::TENSOR: return "TENSOR";
    case pb::AttributeProto::GRAPH: return "GRAPH";
    case pb::AttributeProto::FLOATS: return "FLOATS";
    case pb::AttributeProto::INTS: return "INTS";
    case pb::AttributeProto::STRINGS: return "STRINGS";
    case pb::AttributeProto::TENSORS: return "TENSORS";
    case pb::AttributeProto::GRAPHS: return "GRAPHS";
    default: return "type " + std::to_string(t);
  }
}

Model convert_model(const pb::ModelProto& mp, const std::string& where) {
  Model m;
  m.ir_version = mp.ir_version();
  m.producer_name = mp.producer_name();
  m.producer_version = mp.producer_version();
  for (const auto& o : mp.opset_import()) m.opsets.emplace_back(o.domain() == "ai.onnx" ? "" : o.domain(), o.version());
  for (const auto& p : mp.metadata_props()) m.metadata[p.key()] = p.value();
  RETIKD_CHECK(mp.has_graph(), where, ": the model has no graph (truncated or not an ONNX model)");
  RETIKD_CHECK(!m.opsets.empty(), where, ": the model declares no opset (truncated or not an ONNX model)");
  const pb::GraphProto& g = mp.graph();
  m.graph_name = g.name();
  RETIKD_CHECK(g.sparse_initializer_size() == 0, where, ": sparse initializers are not supported");

  std::set<std::string> names;  // everything a node input may refer to
  std::map<std::string, std::size_t> init_index;
  for (const auto& t : g.initializer()) {
    RETIKD_CHECK(!t.name().empty(), where, ": an initializer has no name");
    RETIKD_CHECK(init_index.count(t.name()) == 0, where, ": initializer '", t.name(), "' appears twice");
    Initializer w;
    w.name = t.name();
    w.onnx_type = type_name(t.data_type());
    w.value = convert(t, where);
    init_index[w.name] = m.initializers.size();
    m.initializers.push_back(std::move(w));
    names.insert(t.name());
  }
  for (const auto& v : g.input()) {
    names.insert(v.name());
    if (init_index.count(v.name()) == 0) m.inputs.push_back(convert_value_info(v));
  }
  for (const auto& v : g.output()) m.outputs.push_back(convert_value_info(v));
  for (const auto& n : g.node())
    for (const auto& o : n.output()) names.insert(o);

  std::vector<std::string> dangling;
  std::set<std::string> node_names;
  for (const auto& n : g.node()) {
    // ONNX's IR makes node names a namespace of unique names; the importers find anonymous weights by the name
    // of the node that reads them ("@<node>:<slot>"), so a repeated name could hand them the wrong tensor of the
    // right shape (found by fuzz_onnx). Unnamed nodes are allowed and never found by name.
    RETIKD_CHECK(n.name().empty() || node_names.insert(n.name()).second, where, ": node name '", n.name(),
                 "' appears twice (node names must be unique in a graph)");
    Node node;
    node.name = n.name();
    node.op_type = n.op_type();
    node.domain = n.domain();
    for (int slot = 0; slot < n.input_size(); ++slot) {
      const std::string& in = n.input(slot);
      node.inputs.push_back(in);
      if (in.empty()) continue;
      if (names.count(in) == 0 && dangling.size() < 8) dangling.push_back("'" + in + "' (input " + std::to_string(slot) +
                                                                          " of node '" + n.name() + "')");
      auto it = init_index.find(in);
      if (it != init_index.end()) m.initializers[it->second].consumers.push_back({n.name(), n.op_type(), slot});
    }
    for (const auto& o : n.output()) node.outputs.push_back(o);
    for (const auto& a : n.attribute()) {
      Attribute at;
      at.name = a.name();
      at.type = attribute_type(a.type());
      at.f = a.f();
      at.i = a.i();
      at.s = a.s();
      at.floats.assign(a.floats().begin(), a.floats().end());
      at.ints.assign(a.ints().begin(), a.ints().end());
      at.strings.assign(a.strings().begin(), a.strings().end());
      node.attributes.push_back(std::move(at));
    }
    m.nodes.push_back(std::move(node));
  }
  if (!dangling.empty()) {
    std::string list;
    for (const auto& d : dangling) list += "\n  " + d;
    fail(where, ": node inputs that nothing in the graph produces (corrupt or truncated model):", list);
  }
  return m;
}

}  // namespace

const Initializer* Model::find(const std::string& name) const {
  for (const auto& w : initializers)
    if (w.name == name) return &w;
  return nullptr;
}

const Initializer* Model::by_consumer(const std::string& node_name, int slot) const {
  if (node_name.empty()) return nullptr;  // unnamed nodes are not unique
  for (const auto& w : initializers)
    for (const auto& c : w.consumers)
      if (c.node == node_name && c.slot == slot) return &w;
  return nullptr;
}

const Node* Model::node(const std::string& name) const {
  if (name.empty()) return nullptr;  // unnamed nodes are not unique
  for (const auto& n : nodes)
    if (n.name == name) return &n;
  return nullptr;
}

int64_t Model::opset() const {
  for (const auto& o : opsets)
    if (o.first.empty()) return o.second;
  return 0;
}

Model parse_model(const void* data, std::size_t size, const std::string& name, const ReadOptions& options) {
  const std::string where = "onnx: " + name;
  RETIKD_CHECK(options.max_bytes > 0 && static_cast<int64_t>(size) <= options.max_bytes, where, ": ", size,
               " bytes is over the limit of ", options.max_bytes, " bytes (ReadOptions::max_bytes)");
  RETIKD_CHECK(size > 0, where, ": empty file");
  RETIKD_CHECK(size <= static_cast<std::size_t>(std::numeric_limits<int>::max()), where,
               ": protobuf cannot parse a message of 2 GiB or more");
  pb::ModelProto mp;
  google::protobuf::io::ArrayInputStream raw(data, static_cast<int>(size));
  google::protobuf::io::CodedInputStream coded(&raw);
  coded.SetTotalBytesLimit(static_cast<int>(size));
  coded.SetRecursionLimit(64);  // nested graphs (If / Loop bodies) deeper than this are not a real model
  const bool ok = mp.ParseFromCodedStream(&coded) && coded.ConsumedEntireMessage();
  RETIKD_CHECK(ok, where, ": not a valid ONNX model (protobuf could not parse it: truncated or corrupt file)");
  if (options.run_checker) {
    try {
      ::onnx::checker::check_model(mp);
    } catch (const std::exception& e) {
      fail(where, ": ONNX's checker refuses the model: ", e.what());
    }
  }
  Model m = convert_model(mp, where);
  return m;
}

Model read_model(const std::string& path, const ReadOptions& options) {
  struct stat st;
  RETIKD_CHECK(::stat(path.c_str(), &st) == 0, "onnx: ", path, ": ", std::strerror(errno));
  RETIKD_CHECK(S_ISREG(st.st_mode), "onnx: ", path, ": not a regular file");
  RETIKD_CHECK(st.st_size <= options.max_bytes, "onnx: ", path, ": ", static_cast<int64_t>(st.st_size),
               " bytes is over the limit of ", options.max_bytes, " bytes (ReadOptions::max_bytes)");
  std::ifstream f(path, std::ios::binary);
  RETIKD_CHECK(f.good(), "onnx: ", path, ": cannot open: ", std::strerror(errno));
  std::string bytes(static_cast<std::size_t>(st.st_size), '\0');
  f.read(&bytes[0], static_cast<std::streamsize>(bytes.size()));
  RETIKD_CHECK(f.gcount() == static_cast<std::streamsize>(bytes.size()), "onnx: ", path, ": short read");
  Model m = parse_model(bytes.data(), bytes.size(), path, options);
  m.path = path;
  return m;
}

std::string library_version() {
#ifdef RETIKD_ONNX_VERSION
  return RETIKD_ONNX_VERSION;  // CMake's ONNX_VERSION of the package found at configure time
#else
  return "unknown";
#endif
}

}  // namespace onnx
}  // namespace io
}  // namespace retikd
