// tests/fuzz/fuzz_onnx.cpp — fuzzes the ONNX reader (io/onnx.hpp: ONNX's own protobuf parser in the retikd::onnx
// component) and the two importers behind it, as the teacher stage and classify --onnx use them:
//  - io::onnx::parse_model, with a 1 MiB size limit (the seeds are under 256 KB);
//  - a model that parses is mapped onto a micro DINOv2-shaped ViT (width 8, one block: the configuration of the
//    seed corpus/onnx/dinov2_micro.onnx) by io::onnx::load_dinov2;
//  - a model that carries retikd's export metadata is read back as a student by deploy::load_onnx_student.
// Promises checked: every accepted initializer has the dtype its ONNX type promises (float32, int64 or no data),
// and every consumer it lists on a named node names a node of the graph that really reads it at that slot (node
// names are unique); a failed DINOv2 import leaves the model's weights exactly as they were (the mapping is all or
// nothing); a student that loads passes the bundle field checks and has one output per class name.
#include "fuzz_target.hpp"

#include <retikd/deploy/bundle.hpp>
#include <retikd/deploy/onnx_export.hpp>
#include <retikd/io/onnx.hpp>
#include <retikd/io/onnx_import.hpp>
#include <retikd/nn/models/vit.hpp>

namespace fuzz_onnx {

// The DINOv2 shape of the seed corpus/onnx/dinov2_micro.onnx (tools/golden/make_onnx_golden.py --fuzz-seed):
// width 8, one block, 2 heads, MLP 32 (Dinov2Config derives it from mlp_ratio 4), position embedding for a
// 2 x 2 grid (28 px).
inline retikd::nn::ViTConfig micro_dinov2_config() {
  retikd::nn::ViTConfig c = retikd::nn::ViTConfig::dinov2_small(0, 28);
  c.embed_dim = 8;
  c.depth = 1;
  c.num_heads = 2;
  c.mlp_ratio = 4.0;
  c.pos_embed_grid = 2;
  return c;
}

inline std::vector<std::vector<float>> weights(const retikd::nn::Module& m) {
  std::vector<std::vector<float>> out;
  for (const auto& kv : m.state_dict()) out.push_back(kv.second.contiguous().to_vector<float>());
  return out;
}

}  // namespace fuzz_onnx

RETIKD_FUZZ_TARGET(onnx)(const uint8_t* data, std::size_t size) {
  using namespace retikd;
  static fuzz::InputFile file;
  static Generator gen(3);
  static nn::VisionTransformer vit(fuzz_onnx::micro_dinov2_config(), gen);
  static const std::vector<std::vector<float>> initial = fuzz_onnx::weights(vit);
  static const std::vector<std::pair<std::string, Tensor>> initial_state = [] {
    std::vector<std::pair<std::string, Tensor>> copy;
    for (const auto& kv : vit.state_dict()) copy.emplace_back(kv.first, kv.second.clone());
    return copy;
  }();
  io::onnx::ReadOptions options;
  options.max_bytes = int64_t(1) << 20;
  io::onnx::Model m;
  try {
    m = io::onnx::parse_model(data, size, "fuzz", options);
  } catch (const Error&) {
    return 0;
  }
  for (const auto& w : m.initializers) {
    // floating types become float32, integer types int64, others are kept by name without data (io/onnx.hpp)
    const std::string& t = w.onnx_type;
    const bool floating = t == "FLOAT" || t == "FLOAT16" || t == "BFLOAT16" || t == "DOUBLE";
    const bool integer = t == "INT64" || t == "INT32" || t == "INT16" || t == "UINT16" || t == "INT8" ||
                         t == "UINT8" || t == "BOOL";
    if (floating) FUZZ_REQUIRE(w.value.defined() && w.value.dtype() == DType::float32);
    if (integer) FUZZ_REQUIRE(w.value.defined() && w.value.dtype() == DType::int64);
    if (!floating && !integer) FUZZ_REQUIRE(!w.value.defined());
    for (const auto& c : w.consumers) {
      if (c.node.empty()) continue;  // unnamed nodes are not found by name
      const io::onnx::Node* n = m.node(c.node);
      FUZZ_REQUIRE(n != nullptr && c.slot >= 0 && static_cast<std::size_t>(c.slot) < n->inputs.size());
      FUZZ_REQUIRE(n->inputs[static_cast<std::size_t>(c.slot)] == w.name);
    }
  }
  try {
    io::onnx::load_dinov2(vit, m);
    vit.load_state_dict(initial_state);  // loaded: put the initial weights back for the next input
  } catch (const Error&) {
    FUZZ_REQUIRE(fuzz_onnx::weights(vit) == initial);  // nothing was modified
  }
  if (m.metadata.count("retikd.onnx_export")) {
    const std::string& path = file.write(data, size);
    try {
      const deploy::OnnxStudent s = deploy::load_onnx_student(path);
      FUZZ_REQUIRE(deploy::check_bundle_fields(s.info.arch, s.info.options, s.info.classes, s.info.preprocess).empty());
      FUZZ_REQUIRE(s.model && s.model->num_classes() == static_cast<int64_t>(s.info.classes.size()));
    } catch (const Error&) {
    }
  }
  return 0;
}
