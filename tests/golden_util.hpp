// tests/golden_util.hpp — what the golden tests share with tools/golden/make_golden.py: its counter-based
// generator (FNV-1a of a tensor's name, splitmix64 per element; make_golden.py's generated() bit for bit), the
// golden-file reader, the directory the files live in and the tiny DINOv2 those files hold. test_golden.cpp,
// test_onnx.cpp, test_norm_pool_resize.cpp and test_pipeline.cpp use it.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <retikd/io/safetensors.hpp>
#include <retikd/nn/layers.hpp>
#include <retikd/nn/models/vit.hpp>
#include <retikd/nn/module.hpp>

namespace retikd {
namespace golden {

// ---- the generator of tools/golden/make_golden.py ----------------------------------------------------------
inline uint64_t fnv1a64(const std::string& s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001B3ull;
  }
  return h;
}

// Element i of the stream `h`, as a double in [-1, 1).
inline double gen_uniform(uint64_t h, uint64_t i) {
  uint64_t z = h + (i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1p-53 * 2.0 - 1.0;
}

inline bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// (center, scale) of a tensor's values: make_golden.py's init_rule.
inline std::pair<double, double> init_rule(const std::string& name, const Shape& shape) {
  if (ends_with(name, "running_mean")) return {0.0, 0.125};
  if (ends_with(name, "running_var")) return {1.0, 0.5};
  if (ends_with(name, "weight") && shape.size() == 1) return {1.0, 0.25};
  if (ends_with(name, "weight") && shape.size() >= 2) {
    const double fan_in = static_cast<double>(shape_numel(shape) / shape[0]);
    return {0.0, std::sqrt(6.0 / fan_in)};
  }
  if (name.compare(0, 5, "input") == 0) return {0.0, 1.0};
  return {0.0, 0.125};
}

inline Tensor generated(const std::string& name, const Shape& shape) {
  if (ends_with(name, "num_batches_tracked")) return Tensor::zeros(shape, DType::int64);
  const auto rule = init_rule(name, shape);
  const uint64_t h = fnv1a64(name);
  std::vector<float> v(static_cast<std::size_t>(shape_numel(shape)));
  for (std::size_t i = 0; i < v.size(); ++i)
    v[i] = static_cast<float>(rule.first + rule.second * gen_uniform(h, i));
  return Tensor::from_vector(v, shape);
}

inline std::vector<double> probe_vector(const std::string& name, int64_t n) {
  const uint64_t h = fnv1a64(name);
  std::vector<double> r(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < r.size(); ++i) r[i] = gen_uniform(h, i);
  return r;
}

// Every parameter and buffer of `m` from the generator, loaded strictly by name.
inline void fill_generated(nn::Module& m) {
  std::map<std::string, Tensor> sd;
  for (const auto& kv : m.state_dict()) sd[kv.first] = generated(kv.first, kv.second.shape());
  m.load_state_dict(sd, true);
}

// Dropout and stochastic depth to eval mode (their masks cannot match PyTorch's).
inline void noise_off(nn::Module& m) {
  nn::for_each_module(m, [](nn::Module& x) {
    if (dynamic_cast<nn::Dropout*>(&x) || dynamic_cast<nn::DropPath*>(&x)) x.train(false);
  });
}

// ---- golden files ------------------------------------------------------------------------------------------
inline std::string golden_dir() {
  if (const char* env = std::getenv("RETIKD_GOLDEN_DIR")) return env;
  std::string here = __FILE__;
  const auto slash = here.find_last_of('/');
  return (slash == std::string::npos ? std::string(".") : here.substr(0, slash)) + "/golden";
}

// The tiny DINOv2 of tools/golden/make_onnx_golden.py (width 32, 2 blocks of 2 heads, patch 14, a 4x4 stored
// position grid, 56 px) and its timm-named weights: the pretrained ViT of the importer and pipeline tests.
inline nn::ViTConfig tiny_dinov2_config(int64_t num_classes = 0) {
  nn::ViTConfig c = nn::ViTConfig::dinov2_small(num_classes, 56);
  c.embed_dim = 32;
  c.depth = 2;
  c.num_heads = 2;
  c.pos_embed_grid = 4;
  return c;
}

inline std::string tiny_dinov2_weights() { return golden_dir() + "/dinov2_tiny_timm.safetensors"; }

struct Golden {
  std::map<std::string, Tensor> t;
  std::map<std::string, std::string> meta;
  std::string file;

  explicit Golden(const std::string& name) : file(golden_dir() + "/" + name + ".safetensors") {
    t = io::load_safetensors(file, &meta);
  }
  const Tensor& operator[](const std::string& k) const {
    auto it = t.find(k);
    if (it == t.end()) fail("golden file ", file, " has no tensor '", k, "'");
    return it->second;
  }
  bool has(const std::string& k) const { return t.count(k) != 0; }
};

}  // namespace golden
}  // namespace retikd
