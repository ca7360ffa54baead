// retikd/pipeline/pretrained_teacher.hpp — fine-tuning a pretrained ViT teacher (DINOv2 ViT-S/14) on the labelled
// split, the way a large pretrained backbone is adapted to two thousand images on a CPU budget:
//
//   1. frozen prefix: blocks [0, k) keep their pretrained weights and their output is computed once per image and
//      once for its mirror image, stored in float16 (PrefixCache: ~0.4 MB per image and view at 224 px); every
//      epoch then trains blocks [k, depth), the final norm and the head on those tokens, a random view per image.
//      k = 0 trains everything from the images (the GPU route; the loader's augmentation applies).
//   2. head chosen on validation: a logistic-regression probe on the pretrained features (ssl/linear_probe.hpp)
//      for each pooling — CLS token, mean patch token, both — the pooling with the best validation macro-F1 wins;
//      the head starts at zero (uniform logits; probe_init loads the probe instead — see TeacherFinetuneConfig).
//   3. fine-tune with AdamW, layer-wise lr decay (block i gets lr · decay^(depth − 1 − i); the head head_lr),
//      linear warm-up then cosine, drop-path on the trained blocks, class-weighted cross-entropy with label
//      smoothing; the epoch with the best validation macro-F1 is kept.
//   4. horizontal-flip test-time augmentation: validation and test logits are the mean of the image's and its
//      mirror's logits (flip_tta).
//
// Every epoch is a train::TrainerLoop epoch (checkpoints, log.jsonl, resume); the prefix cache is rebuilt on resume
// (deterministic). docs/pipeline.md gives the recipe's numbers and why.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "retikd/core/error.hpp"
#include "retikd/core/random.hpp"
#include "retikd/data/fs.hpp"
#include "retikd/data/loader.hpp"
#include "retikd/data/progress.hpp"
#include "retikd/io/atomic_file.hpp"
#include "retikd/kd/distiller.hpp"
#include "retikd/kd/multi_view.hpp"
#include "retikd/metrics/classification.hpp"
#include "retikd/nn/models/vit.hpp"
#include "retikd/ops/loss.hpp"
#include "retikd/ops/reduce.hpp"
#include "retikd/ops/shape.hpp"
#include "retikd/optim/optim.hpp"
#include "retikd/ssl/linear_probe.hpp"
#include "retikd/train/trainer_loop.hpp"
#ifdef RETIKD_WITH_ONNX
#include "retikd/io/onnx_import.hpp"
#endif
#include "retikd/io/safetensors.hpp"

namespace retikd {
namespace pipeline {

inline bool ends_with_ci(const std::string& s, const std::string& suffix) {
  if (s.size() < suffix.size()) return false;
  for (std::size_t i = 0; i < suffix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[s.size() - suffix.size() + i])) != suffix[i]) return false;
  return true;
}

// Loads pretrained DINOv2 weights (ONNX export or timm-named safetensors) into `vit`; the head keeps its init.
inline std::string load_dinov2_weights(nn::VisionTransformer& vit, const std::string& path) {
  if (ends_with_ci(path, ".onnx")) {
#ifdef RETIKD_WITH_ONNX
    return io::onnx::load_dinov2(vit, path).summary();
#else
    fail("the DINOv2 teacher's weights ", path, " are ONNX, and this build has no ONNX import (install libonnx-dev "
         "libprotobuf-dev and rebuild, or pass a safetensors file with timm names)");
#endif
  }
  const auto before = vit.state_dict();
  io::SafetensorsContents c = io::read_safetensors(path);
  std::map<std::string, Tensor> file = c.to_map();
  std::map<std::string, Tensor> keep;
  std::vector<std::string> wrong;
  for (const auto& kv : before) {
    auto it = file.find(kv.first);
    if (it == file.end()) continue;
    if (it->second.shape() != kv.second.shape()) {
      if (kv.first.compare(0, 5, "head.") != 0)
        wrong.push_back(kv.first + " " + shape_str(it->second.shape()) + " vs " + shape_str(kv.second.shape()));
      continue;
    }
    keep[kv.first] = it->second;
  }
  RETIKD_CHECK(wrong.empty() && keep.size() + 2 >= before.size(), "--teacher-weights ", path, ": ", keep.size(),
               " of the teacher's ", before.size(), " tensors found with the right shape (a vit_small_patch14_dinov2 ",
               "state dict with timm names is expected)", wrong.empty() ? "" : "; wrong shapes: " + wrong[0]);
  vit.load_state_dict(keep, /*strict=*/false);
  return std::to_string(keep.size()) + " tensors from " + path;
}


struct TeacherFinetuneConfig {
  int64_t freeze_blocks = 8;       // k: blocks [0, k) frozen and cached; 0: full fine-tune from images
  double lr = 5e-5;                // the top block's lr (layer-wise decay below it)
  double layer_decay = 0.9;        // block i: lr · layer_decay^(depth − 1 − i); norm: lr
  double head_lr = 1e-3;
  double weight_decay = 0.05;
  double drop_path = 0.0;          // on the trained blocks, linear in depth as timm (the GPU route: 0.1)
  double label_smoothing = 0.1;
  int64_t epochs = 8;
  int64_t warmup_epochs = 1;
  int64_t batch_size = 32;
  std::string head = "auto";       // cls | avg | cls_avg | auto (chosen by a probe on validation)
  // Initialise the head from that probe. Off by default: the probe is fitted on standardised features, and
  // folding the standardisation in gives channels of tiny variance huge raw weights, so the small feature changes
  // of fine-tuning swing the logits (measured: validation macro-F1 0.77 -> 0.41 after one epoch). A zero head
  // starts at uniform logits and learns at head_lr.
  bool probe_init = false;
  bool flip_tta = true;            // val / test logits: mean over the image and its mirror
  bool class_weighted = true;
};

// Horizontal mirror of images (B, C, H, W), float32, CPU (the multi-view generator's mirror).
inline Tensor flip_width(const Tensor& x) { return kd::hflip_batch(x); }

// The tokens after the frozen blocks [0, k) for every image of a split (dataset order) and its mirror image.
class PrefixCache {
 public:
  int64_t blocks = 0;
  std::vector<int64_t> labels;
  // view 0: the image, view 1: its mirror; each (T, D) float16
  std::vector<Tensor> tokens[2];

  int64_t size() const { return static_cast<int64_t>(labels.size()); }
  std::size_t bytes() const {
    std::size_t n = 0;
    for (const auto& v : tokens)
      for (const auto& t : v) n += static_cast<std::size_t>(t.numel()) * t.element_size();
    return n;
  }
  // (B, T, D) float32 of samples `idx`, view[i] for sample i.
  Tensor batch(const std::vector<int64_t>& idx, const std::vector<int>& view) const {
    std::vector<Tensor> parts;
    parts.reserve(idx.size());
    for (std::size_t i = 0; i < idx.size(); ++i)
      parts.push_back(tokens[view[i]][static_cast<std::size_t>(idx[i])].unsqueeze(0));
    return ops::impl::concat(parts, 0).to(DType::float32);
  }
  Tensor labels_of(const std::vector<int64_t>& idx) const {
    std::vector<int64_t> y;
    for (int64_t i : idx) y.push_back(labels[static_cast<std::size_t>(i)]);
    return Tensor::from_vector(y, {static_cast<int64_t>(y.size())});
  }

  // A file holding the cache, so runs that share the pretrained weights, images and k (seed repeats, a resumed
  // run) compute it once: "RKDPFX1\n", then int64 n, k, T, D, the n labels (int64), and per view and sample the
  // (T, D) float16 tokens, little-endian. Written atomically.
  void save(const std::string& path) const {
    RETIKD_CHECK(size() > 0 && !tokens[0].empty(), "PrefixCache::save: empty cache");
    const int64_t T = tokens[0][0].size(0), D = tokens[0][0].size(1), n = size();
    io::write_file_atomically(
        path,
        [&](const io::ByteSink& sink) {
          sink("RKDPFX1\n", 8);
          const int64_t head[4] = {n, blocks, T, D};
          sink(head, sizeof head);
          sink(labels.data(), labels.size() * sizeof(int64_t));
          for (const auto& v : tokens)
            for (const auto& t : v) {
              RETIKD_CHECK(t.dtype() == DType::float16 && t.is_contiguous() && t.size(0) == T && t.size(1) == D,
                           "PrefixCache::save: a sample's tokens are ", t.describe());
              sink(t.raw_data(), static_cast<std::size_t>(T * D) * 2);
            }
        },
        "teacher prefix cache");
  }

  // Loads `path` when it holds n samples after k blocks with tokens (T, D); false when it does not exist or does
  // not match (then the caller rebuilds it).
  static bool load(const std::string& path, int64_t n, int64_t k, int64_t T, int64_t D, PrefixCache& out) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return false;
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> closer(f, &std::fclose);
    char magic[8];
    int64_t head[4];
    if (std::fread(magic, 1, 8, f) != 8 || std::memcmp(magic, "RKDPFX1\n", 8) != 0) return false;
    if (std::fread(head, sizeof head, 1, f) != 1 || head[0] != n || head[1] != k || head[2] != T || head[3] != D)
      return false;
    PrefixCache c;
    c.blocks = k;
    c.labels.resize(static_cast<std::size_t>(n));
    if (std::fread(c.labels.data(), sizeof(int64_t), c.labels.size(), f) != c.labels.size()) return false;
    for (int64_t y : c.labels)
      if (y < 0) return false;
    for (auto& v : c.tokens) {
      v.resize(static_cast<std::size_t>(n));
      for (auto& t : v) {
        t = Tensor::empty({T, D}, DType::float16);
        if (std::fread(t.raw_data(), 2, static_cast<std::size_t>(T * D), f) != static_cast<std::size_t>(T * D))
          return false;
      }
    }
    if (std::fgetc(f) != EOF) return false;  // trailing bytes: not what this code wrote
    out = std::move(c);
    return true;
  }

  // Runs `vit`'s embedding and blocks [0, k) over every image of `loader` (which must not shuffle or augment).
  static PrefixCache build(nn::VisionTransformer& vit, data::Loader& loader, int64_t k, const std::string& what,
                           std::FILE* bar_out) {
    RETIKD_CHECK(k >= 1 && k <= vit.config().depth, "PrefixCache: ", k, " frozen blocks of a depth-",
                 vit.config().depth, " ViT");
    PrefixCache c;
    c.blocks = k;
    const int64_t n = loader.size();
    c.labels.assign(static_cast<std::size_t>(n), -1);
    for (auto& v : c.tokens) v.assign(static_cast<std::size_t>(n), Tensor());
    const bool was_training = vit.is_training();
    vit.eval();
    NoGradGuard no_grad;
    data::ProgressBar bar(what, n, "img", bar_out);
    loader.start_epoch(0);
    data::Batch b;
    while (loader.next(b)) {
      const Tensor images[2] = {b.images, flip_width(b.images)};
      const auto y = b.labels.to_vector<int64_t>();
      for (int v = 0; v < 2; ++v) {
        const Tensor t = vit.run_blocks(vit.embed_tokens(Var(images[v])), 0, k).value().to(DType::float16);
        for (int64_t i = 0; i < b.size(); ++i) {
          const std::size_t at = static_cast<std::size_t>(b.indices[static_cast<std::size_t>(i)]);
          RETIKD_CHECK(at < c.labels.size(), "PrefixCache: sample index ", at, " outside the split of ", n);
          c.tokens[v][at] = t.narrow(0, i, 1).squeeze(0).contiguous().clone();
          c.labels[at] = y[static_cast<std::size_t>(i)];
        }
      }
      bar.add(b.size());
    }
    bar.finish();
    for (int64_t i = 0; i < n; ++i)
      RETIKD_CHECK(c.labels[static_cast<std::size_t>(i)] >= 0, "PrefixCache: sample ", i, " was never loaded");
    vit.train(was_training);
    return c;
  }
};

// The ViT's pooled features (after the final norm) for every sample of a prefix cache, one view, for each
// pooling at once ("cls", "avg", "cls_avg"): the top blocks run once per sample.
inline std::map<std::string, ssl::FeatureSet> pooled_features(nn::VisionTransformer& vit, const PrefixCache& c,
                                                              int view, int64_t batch) {
  NoGradGuard no_grad;
  const bool was_training = vit.is_training();
  vit.eval();
  std::map<std::string, ssl::FeatureSet> f;
  const int64_t D = vit.config().embed_dim;
  f["cls"].dim = f["avg"].dim = D;
  f["cls_avg"].dim = 2 * D;
  for (int64_t s = 0; s < c.size(); s += batch) {
    std::vector<int64_t> idx;
    for (int64_t i = s; i < std::min(c.size(), s + batch); ++i) idx.push_back(i);
    const Var t = vit.norm->forward(vit.run_blocks(Var(c.batch(idx, std::vector<int>(idx.size(), view))),
                                                   c.blocks, vit.config().depth));  // (B, T, D)
    const int64_t T = t.size(1);
    const Tensor cls = t.value().narrow(1, 0, 1).squeeze(1);                              // (B, D)
    const Tensor avg = ops::impl::mean(t.value().narrow(1, 1, T - 1), {1}, false);      // (B, D)
    const std::pair<const char*, Tensor> parts[] = {{"cls", cls}, {"avg", avg},
                                                    {"cls_avg", ops::impl::concat({cls, avg}, 1)}};
    for (const auto& p : parts) {
      const auto v = p.second.contiguous().to_vector<double>();
      ssl::FeatureSet& fs = f[p.first];
      fs.x.insert(fs.x.end(), v.begin(), v.end());
      for (int64_t i : idx) fs.y.push_back(c.labels[static_cast<std::size_t>(i)]);
    }
  }
  vit.train(was_training);
  return f;
}

// What the head choice found: validation macro-F1 of a probe per pooling.
struct HeadChoice {
  std::string pooling;
  std::map<std::string, double> val_macro_f1;
  ssl::LogisticRegression probe;
};

// Fits a probe per pooling on the training split (the image view) and keeps the best on validation.
inline HeadChoice choose_head(nn::VisionTransformer& vit, const PrefixCache& train, const PrefixCache& val,
                              const std::vector<std::string>& candidates, int64_t classes, int64_t batch) {
  HeadChoice best;
  double best_f1 = -1;
  const auto train_features = pooled_features(vit, train, 0, batch);
  const auto val_features = pooled_features(vit, val, 0, batch);
  for (const auto& pooling : candidates) {
    const ssl::FeatureSet& tr = train_features.at(pooling);
    const ssl::FeatureSet& va = val_features.at(pooling);
    ssl::LogisticRegressionOptions o;
    o.iterations = 4000;  // l2 1e-2 on standardised features is well conditioned: ~1,000–2,000 steps converge
    o.tolerance = 1e-4;
    o.l2 = 1e-2;
    const ssl::LogisticRegression m = ssl::fit_logistic_regression(tr, classes, o);
    const auto r = metrics::evaluate_classification(va.y, m.logits(va), classes, metrics::ScoreKind::logits);
    best.val_macro_f1[pooling] = r.macro_f1;
    if (r.macro_f1 > best_f1) {
      best_f1 = r.macro_f1;
      best.pooling = pooling;
      best.probe = m;
    }
  }
  return best;
}

// Sets the ViT's pooling for `pooling` (cls | avg | cls_avg) by rebuilding nothing: the config flags only steer
// pool(); the head's input width must already match (VisionTransformer::pooled_dim()).
inline nn::ViTConfig with_pooling(nn::ViTConfig c, const std::string& pooling) {
  RETIKD_CHECK(pooling == "cls" || pooling == "avg" || pooling == "cls_avg", "teacher head pooling must be cls, avg "
               "or cls_avg, got '", pooling, "'");
  c.global_pool_avg = pooling == "avg";
  c.pool_token_and_avg = pooling == "cls_avg";
  return c;
}

// The probe as the head's Linear: W' = W·diag(inv_std), b' = b − W'·mean (the standardisation folded in).
inline void load_probe_into_head(nn::Linear& head, const ssl::LogisticRegression& p) {
  RETIKD_CHECK(head.weight.size(0) == p.classes && head.weight.size(1) == p.dim, "teacher head ",
               shape_str(head.weight.shape()), " does not fit a probe of ", p.classes, " x ", p.dim);
  std::vector<float> w(static_cast<std::size_t>(p.classes * p.dim)), b(static_cast<std::size_t>(p.classes));
  for (int64_t c = 0; c < p.classes; ++c) {
    double bias = p.b[static_cast<std::size_t>(c)];
    for (int64_t d = 0; d < p.dim; ++d) {
      const double wd = p.w[static_cast<std::size_t>(c * p.dim + d)] * p.inv_std[static_cast<std::size_t>(d)];
      w[static_cast<std::size_t>(c * p.dim + d)] = static_cast<float>(wd);
      bias -= wd * p.mean[static_cast<std::size_t>(d)];
    }
    b[static_cast<std::size_t>(c)] = static_cast<float>(bias);
  }
  head.weight.mutable_value().copy_(Tensor::from_vector(w, {p.classes, p.dim}));
  head.bias.mutable_value().copy_(Tensor::from_vector(b, {p.classes}));
}

// A zero classifier: uniform logits at the start, every class learnt from the same point.
inline void zero_head(nn::Linear& head) {
  head.weight.mutable_value().fill_(0.0);
  if (head.bias.defined()) head.bias.mutable_value().fill_(0.0);
}

// Parameter groups with layer-wise lr decay: blocks [k, depth) (lr · decay^(depth − 1 − i)), the final norm (lr),
// the head (head_lr). Frozen blocks and the embedding get no group (they are not trained).
inline std::vector<optim::ParamGroup> layerwise_groups(nn::VisionTransformer& vit, const TeacherFinetuneConfig& c) {
  std::vector<optim::ParamGroup> g;
  const int64_t depth = vit.config().depth;
  if (c.freeze_blocks == 0) {
    std::vector<Var> embed{vit.pos_embed};
    if (vit.cls_token.defined()) embed.push_back(vit.cls_token);
    for (auto& p : vit.patch_embed->parameters()) embed.push_back(p);
    g.push_back({embed, c.lr * std::pow(c.layer_decay, static_cast<double>(depth)), c.weight_decay, "embed"});
  }
  for (int64_t i = c.freeze_blocks; i < depth; ++i)
    g.push_back({vit.blocks[static_cast<std::size_t>(i)]->parameters(),
                 c.lr * std::pow(c.layer_decay, static_cast<double>(depth - 1 - i)), c.weight_decay,
                 "block" + std::to_string(i)});
  g.push_back({vit.norm->parameters(), c.lr, c.weight_decay, "norm"});
  g.push_back({vit.head->parameters(), c.head_lr, c.weight_decay, "head"});
  return g;
}

// Test-split metrics of a ViT over a plain loader at its image size, flip-averaged logits when `flip_tta`.
inline metrics::ClassificationResult evaluate_with_flip_tta(nn::VisionTransformer& vit, data::Loader& loader,
                                                            bool flip_tta) {
  NoGradGuard no_grad;
  const bool was_training = vit.is_training();
  vit.eval();
  std::vector<double> logits;
  std::vector<int64_t> labels;
  loader.start_epoch(0);
  data::Batch b;
  while (loader.next(b)) {
    Tensor l = vit.forward(Var(b.images)).value();
    if (flip_tta) l = ops::impl::mul_scalar(ops::impl::add(l, vit.forward(Var(flip_width(b.images))).value()), 0.5);
    const auto v = l.to_vector<double>();
    logits.insert(logits.end(), v.begin(), v.end());
    const auto y = b.labels.to_vector<int64_t>();
    labels.insert(labels.end(), y.begin(), y.end());
  }
  vit.train(was_training);
  return metrics::evaluate_classification(labels, logits, vit.num_classes(), metrics::ScoreKind::logits);
}

// Metrics of a ViT over a split from its frozen-block cache (eval mode, no tape; flip-averaged logits when
// `flip_tta`): the top blocks only.
inline metrics::ClassificationResult evaluate_from_prefix(nn::VisionTransformer& vit, const PrefixCache& pc, bool flip_tta,
                                                          int64_t batch) {
  NoGradGuard no_grad;
  const bool was_training = vit.is_training();
  vit.eval();
  const int64_t depth = vit.config().depth;
  std::vector<double> logits;
  std::vector<int64_t> labels;
  for (int64_t s = 0; s < pc.size(); s += batch) {
    std::vector<int64_t> idx;
    for (int64_t i = s; i < std::min(pc.size(), s + batch); ++i) idx.push_back(i);
    auto run = [&](int view) {
      return vit.forward_head(vit.norm->forward(
                                  vit.run_blocks(Var(pc.batch(idx, std::vector<int>(idx.size(), view))), pc.blocks, depth)))
          .value();
    };
    Tensor l = run(0);
    if (flip_tta) l = ops::impl::mul_scalar(ops::impl::add(l, run(1)), 0.5);
    const auto v = l.to_vector<double>();
    logits.insert(logits.end(), v.begin(), v.end());
    for (int64_t i : idx) labels.push_back(pc.labels[static_cast<std::size_t>(i)]);
  }
  vit.train(was_training);
  return metrics::evaluate_classification(labels, logits, vit.num_classes(), metrics::ScoreKind::logits);
}

// What the teacher stage needs from the pipeline around it.
struct TeacherStageContext {
  std::string run_dir;                            // OUT/teacher
  std::FILE* log = nullptr;                       // stage messages
  std::FILE* bar_out = nullptr;                   // progress bars
  std::shared_ptr<data::Loader> train_plain;      // teacher image size, no shuffle, no augmentation
  std::shared_ptr<data::Loader> train_augmented;  // for freeze_blocks = 0: shuffled, augmented
  std::shared_ptr<data::Loader> val, test;        // teacher image size, plain
  std::vector<double> class_weights;              // balanced, from the training split
  uint64_t seed = 0;
  std::function<void(int64_t)> before_epoch;      // e.g. the pipeline's --stop-after-epochs budget
  // Prefix caches are kept in cache_dir/teacher-prefix-<cache_key>-<split>.bin ("" cache_dir: memory only); the
  // key must name everything they depend on: the pretrained weights, the images, the image size and k.
  std::string cache_dir, cache_key;
  std::map<std::string, std::string> config;      // recorded in the checkpoints (resume must match)
};

struct TeacherStageResult {
  std::shared_ptr<nn::VisionTransformer> model;  // the best epoch's weights, eval mode
  train::LoopResult loop;
  metrics::ClassificationResult test;            // with flip TTA when configured
  std::string pooling;
  std::map<std::string, double> probe_val_macro_f1;
  double seconds = 0;
};

namespace detail {

inline void say_line(std::FILE* out, const std::string& s) {
  if (!out) return;
  std::fprintf(out, "%s\n", s.c_str());
  std::fflush(out);
}

inline std::string fmt(double v, int digits = 4) {
  char b[32];
  std::snprintf(b, sizeof b, "%.*f", digits, v);
  return b;
}

// Reads OUT/teacher/head.txt ("pooling f1_cls f1_avg f1_cls_avg"), written when the head was chosen, so a resumed
// or finished stage does not fit the probes again.
inline bool read_head_choice(const std::string& path, HeadChoice& c) {
  std::FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return false;
  char pooling[32] = {0};
  const bool ok = std::fscanf(f, "%31s", pooling) == 1;
  char name[32];
  double v;
  while (ok && std::fscanf(f, "%31s %lf", name, &v) == 2) c.val_macro_f1[name] = v;
  std::fclose(f);
  c.pooling = pooling;
  return ok && (c.pooling == "cls" || c.pooling == "avg" || c.pooling == "cls_avg");
}

inline void write_head_choice(const std::string& path, const HeadChoice& c) {
  std::string s = c.pooling + "\n";
  for (const auto& kv : c.val_macro_f1) s += kv.first + " " + fmt(kv.second, 6) + "\n";
  io::write_file_atomically(path, [&](const io::ByteSink& sink) { sink(s.data(), s.size()); }, "teacher head");
}

}  // namespace detail

// The teacher stage: `make_vit(config)` builds a model of that configuration with the pretrained weights loaded
// (the head is then chosen, initialised and trained here). Runs under OUT/teacher as a resumable TrainerLoop.
inline TeacherStageResult finetune_pretrained_teacher(
    const nn::ViTConfig& base, const std::function<void(nn::VisionTransformer&)>& load_pretrained,
    const TeacherFinetuneConfig& c, const TeacherStageContext& ctx) {
  const auto t0 = std::chrono::steady_clock::now();
  TeacherStageResult res;
  const int64_t depth = base.depth, k = c.freeze_blocks, classes = base.num_classes;
  RETIKD_CHECK(k >= 0 && k < depth, "teacher: --teacher-freeze ", k, " must leave at least one of the ", depth,
               " blocks to train");
  RETIKD_CHECK(classes >= 2, "teacher: the fine-tuned teacher needs a classifier head");
  data::fs::make_dirs(ctx.run_dir);
  auto build = [&](const std::string& pooling) {
    nn::ViTConfig cfg = with_pooling(base, pooling);
    cfg.drop_path_rate = c.drop_path;
    Generator gen(ctx.seed + 21);
    auto vit = std::make_shared<nn::VisionTransformer>(cfg, gen);
    vit->set_noise_seed(ctx.seed + 11);
    load_pretrained(*vit);
    return vit;
  };

  // Prefix caches, built (or read from ctx.cache_dir) when first needed: a finished stage needs none. The frozen
  // blocks never change, so the test split's cache made from the pretrained weights serves the final evaluation.
  std::unique_ptr<PrefixCache> train_cache, val_cache, test_cache;
  auto cache_for = [&](nn::VisionTransformer& vit, data::Loader& loader, const std::string& split) {
    const int64_t T = 1 + vit.grid(vit.config().img_size, vit.config().img_size).first *
                              vit.grid(vit.config().img_size, vit.config().img_size).second;
    const std::string file = ctx.cache_dir.empty() ? std::string()
                                                   : ctx.cache_dir + "/teacher-prefix-" + ctx.cache_key + "-" + split + ".bin";
    std::unique_ptr<PrefixCache> c(new PrefixCache());
    if (!file.empty() && PrefixCache::load(file, loader.size(), k, T, vit.config().embed_dim, *c)) {
      detail::say_line(ctx.log, "teacher: frozen-block outputs (" + split + ") read from " + file);
      return c;
    }
    const auto s0 = std::chrono::steady_clock::now();
    *c = PrefixCache::build(vit, loader, k, "teacher: blocks 0-" + std::to_string(k - 1) + " (" + split + ")",
                            ctx.bar_out);
    detail::say_line(ctx.log, "teacher: blocks 0-" + std::to_string(k - 1) + " run once on " + std::to_string(c->size()) +
                                  " " + split + " images x 2 views (" + std::to_string(c->bytes() >> 20) + " MiB fp16, " +
                                  detail::fmt(std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count(), 1) +
                                  " s)");
    if (!file.empty()) {
      try {
        c->save(file);
      } catch (const Error& e) {
        detail::say_line(ctx.log, std::string("teacher: could not keep the cache on disk (") + e.what() + ")");
      }
    }
    return c;
  };
  auto need_caches = [&](nn::VisionTransformer& vit) {
    if (k == 0 || train_cache) return;
    train_cache = cache_for(vit, *ctx.train_plain, "train");
    val_cache = cache_for(vit, *ctx.val, "val");
  };

  // 1. the head
  HeadChoice choice;
  const std::string choice_path = ctx.run_dir + "/head.txt";
  std::shared_ptr<nn::VisionTransformer> vit;
  const std::vector<std::string> candidates =
      c.head == "auto" ? std::vector<std::string>{"cls", "avg", "cls_avg"} : std::vector<std::string>{c.head};
  if (detail::read_head_choice(choice_path, choice)) {
    vit = build(choice.pooling);
    zero_head(*vit->head);  // a checkpoint, when there is one, replaces it
    detail::say_line(ctx.log, "teacher: head on " + choice.pooling + " (chosen earlier, " + choice_path + ")");
  } else if (k > 0 && (candidates.size() > 1 || c.probe_init)) {
    auto probe_model = build("cls");
    need_caches(*probe_model);
    choice = choose_head(*probe_model, *train_cache, *val_cache, candidates, classes, c.batch_size);
    std::string scores;
    for (const auto& kv : choice.val_macro_f1) scores += (scores.empty() ? "" : ", ") + kv.first + " " + detail::fmt(kv.second);
    detail::say_line(ctx.log, "teacher: linear probes on the pretrained features, validation macro-F1: " + scores +
                                  " -> head on " + choice.pooling + (c.probe_init ? " (initialised from its probe)" : ""));
    vit = choice.pooling == "cls" ? probe_model : build(choice.pooling);
    if (c.probe_init) load_probe_into_head(*vit->head, choice.probe);
    else zero_head(*vit->head);
    detail::write_head_choice(choice_path, choice);
  } else {
    choice.pooling = c.head == "auto" ? "cls" : c.head;
    vit = build(choice.pooling);
    zero_head(*vit->head);
    detail::write_head_choice(choice_path, choice);
  }
  res.pooling = choice.pooling;
  res.probe_val_macro_f1 = choice.val_macro_f1;

  // 2. the optimiser and the loop
  vit->freeze();
  for (int64_t i = k; i < depth; ++i) vit->blocks[static_cast<std::size_t>(i)]->unfreeze();
  vit->norm->unfreeze();
  vit->head->unfreeze();
  if (k == 0) vit->unfreeze();
  const int64_t n_train = k > 0 ? ctx.train_plain->size() : ctx.train_augmented->size();
  const int64_t steps = k > 0 ? (n_train + c.batch_size - 1) / c.batch_size : ctx.train_augmented->num_batches();
  optim::AdamWOptions ao;
  ao.lr = c.lr;
  ao.weight_decay = c.weight_decay;
  optim::AdamW opt(layerwise_groups(*vit, c), ao);
  optim::WarmupCosineSchedule sched(opt, std::min(c.warmup_epochs, std::max<int64_t>(0, c.epochs - 1)) * steps,
                                    std::max<int64_t>(1, c.epochs * steps));
  train::TrainState state;
  state.add_module("model", *vit);
  state.add_optimizer("opt", opt);
  state.add_schedule("lr", sched);
  state.add_generator("noise", *vit->noise());
  train::LoopOptions lo;
  lo.config = ctx.config;
  lo.config["pooling"] = choice.pooling;
  lo.stage = "teacher";
  lo.run_dir = ctx.run_dir;
  lo.epochs = c.epochs;
  lo.select_metric = "macro_f1";
  lo.existing = train::ExistingRun::resume;
  lo.out = ctx.log;
  lo.steps_per_epoch = ctx.bar_out ? steps : 0;
  train::TrainerLoop loop(lo, state);
  ops::CrossEntropyOptions ce;
  ce.label_smoothing = c.label_smoothing;
  if (c.class_weighted && !ctx.class_weights.empty()) {
    std::vector<float> w(ctx.class_weights.begin(), ctx.class_weights.end());
    ce.weight = Tensor::from_vector(w, {static_cast<int64_t>(w.size())});
  }

  // Logits of a prefix-cache batch (training: the tape runs through blocks [k, depth), norm, head).
  auto logits_from_cache = [&](const PrefixCache& pc, const std::vector<int64_t>& idx, const std::vector<int>& view) {
    return vit->forward_head(vit->norm->forward(vit->run_blocks(Var(pc.batch(idx, view)), k, depth)));
  };
  // Validation / test predictions (eval mode, no tape), flip-averaged when flip_tta.
  auto predict_cache = [&](const PrefixCache& pc, std::vector<double>& logits, std::vector<int64_t>& labels) {
    NoGradGuard no_grad;
    vit->eval();
    for (int64_t s = 0; s < pc.size(); s += c.batch_size) {
      std::vector<int64_t> idx;
      for (int64_t i = s; i < std::min(pc.size(), s + c.batch_size); ++i) idx.push_back(i);
      Tensor l = logits_from_cache(pc, idx, std::vector<int>(idx.size(), 0)).value();
      if (c.flip_tta)
        l = ops::impl::mul_scalar(ops::impl::add(l, logits_from_cache(pc, idx, std::vector<int>(idx.size(), 1)).value()), 0.5);
      const auto v = l.to_vector<double>();
      logits.insert(logits.end(), v.begin(), v.end());
      for (int64_t i : idx) labels.push_back(pc.labels[static_cast<std::size_t>(i)]);
    }
  };
  auto predict_images = [&](data::Loader& loader, std::vector<double>& logits, std::vector<int64_t>& labels) {
    NoGradGuard no_grad;
    vit->eval();
    loader.start_epoch(0);
    data::Batch b;
    while (loader.next(b)) {
      Tensor l = vit->forward(Var(b.images)).value();
      if (c.flip_tta) l = ops::impl::mul_scalar(ops::impl::add(l, vit->forward(Var(flip_width(b.images))).value()), 0.5);
      const auto v = l.to_vector<double>();
      logits.insert(logits.end(), v.begin(), v.end());
      const auto y = b.labels.to_vector<int64_t>();
      labels.insert(labels.end(), y.begin(), y.end());
    }
  };
  auto evaluate_split = [&](const PrefixCache* pc, data::Loader& loader, double* loss) {
    std::vector<double> logits;
    std::vector<int64_t> labels;
    if (pc) predict_cache(*pc, logits, labels);
    else predict_images(loader, logits, labels);
    if (loss) {
      const int64_t n = static_cast<int64_t>(labels.size());
      std::vector<float> lf(logits.begin(), logits.end());
      NoGradGuard no_grad;
      *loss = ops::cross_entropy(Var(Tensor::from_vector(lf, {n, classes})), Tensor::from_vector(labels, {n}))
                  .item<double>();
    }
    return metrics::evaluate_classification(labels, logits, classes, metrics::ScoreKind::logits);
  };

  const train::LoopResult lres = loop.run(
      [&](int64_t epoch) {
        if (ctx.before_epoch) ctx.before_epoch(epoch);
        vit->train();
        double loss_sum = 0;
        int64_t seen = 0, correct = 0;
        auto step = [&](const Var& logits, const Tensor& labels) {
          opt.zero_grad();
          Var loss = ops::cross_entropy(logits, labels, ce);
          const double l = loss.item<double>();
          loop.step_done(l);
          loss.backward();
          opt.step();
          sched.step();
          const auto p = ops::argmax(logits.value(), 1).to_vector<int64_t>();
          const auto y = labels.to_vector<int64_t>();
          for (std::size_t i = 0; i < p.size(); ++i) correct += p[i] == y[i];
          loss_sum += l * static_cast<double>(y.size());
          seen += static_cast<int64_t>(y.size());
        };
        if (k > 0) {
          need_caches(*vit);
          vit->train();
          // the epoch's order and views from (seed, epoch): resumable and identical across runs
          Generator g = Generator::derive(ctx.seed + 31, static_cast<uint64_t>(epoch));
          std::vector<int64_t> order(static_cast<std::size_t>(n_train));
          for (int64_t i = 0; i < n_train; ++i) order[static_cast<std::size_t>(i)] = i;
          for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[g.below(i)]);
          for (int64_t s = 0; s < n_train; s += c.batch_size) {
            std::vector<int64_t> idx(order.begin() + s, order.begin() + std::min(n_train, s + c.batch_size));
            std::vector<int> view(idx.size());
            for (auto& v : view) v = static_cast<int>(g.below(2));
            step(logits_from_cache(*train_cache, idx, view), train_cache->labels_of(idx));
          }
        } else {
          ctx.train_augmented->start_epoch(epoch);
          data::Batch b;
          while (ctx.train_augmented->next(b)) step(vit->forward(Var(b.images)), b.labels);
        }
        train::EpochStats es;
        es.loss = loss_sum / static_cast<double>(std::max<int64_t>(seen, 1));
        es.accuracy = static_cast<double>(correct) / static_cast<double>(std::max<int64_t>(seen, 1));
        es.samples = seen;
        return es;
      },
      [&](int64_t) {
        if (k > 0) need_caches(*vit);
        double loss = 0;
        const metrics::ClassificationResult r = evaluate_split(val_cache.get(), *ctx.val, &loss);
        return train::EvalMetrics{{"loss", loss}, {"accuracy", r.accuracy}, {"macro_f1", r.macro_f1}};
      });
  res.loop = lres;
  loop.checkpoints().load_best(state);
  vit->eval();
  // 3. the test split, once, with the best epoch's weights
  train_cache.reset();
  val_cache.reset();
  if (k > 0) test_cache = cache_for(*vit, *ctx.test, "test");
  res.test = evaluate_split(test_cache.get(), *ctx.test, nullptr);
  res.model = vit;
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

// The distiller's teacher targets for every training sample and both views of the mirror scheme (view 0 the
// image, view 1 its mirror; kd::MultiViewConfig::mirror), made from the frozen-block cache: the teacher runs only
// its trained top blocks, on its own image size, once per sample and view, and the KD epochs then never run it.
// Each record holds the logits (flip-averaged with `flip_tta`, so both views share them) and the tokens of the
// distiller's token tap ("blocks.{i}" or "blocks.{i}.norm" for i >= k, or "norm"; none when the distiller taps
// nothing, i.e. logit KD alone), keyed by the sample id with
// the fingerprint of the student's view as the distiller will present it (`student_plain`: the student's
// training images, unshuffled, unaugmented). Returns the number of records; 0 (nothing done) when the distiller
// needs the teacher's per-head Q/K/V, which only a full teacher forward provides.
inline int64_t fill_teacher_cache_from_prefix(kd::CrossArchitectureDistiller& distiller, nn::VisionTransformer& vit,
                                              const PrefixCache& pc, data::Loader& student_plain, bool flip_tta,
                                              int64_t batch, std::FILE* bar_out) {
  const std::vector<std::string>& taps = distiller.teacher_taps();
  if (taps.size() > 1) return 0;
  const int64_t depth = vit.config().depth, k = pc.blocks;
  // which blocks run and whether the final norm applies, from the tap's name
  int64_t last = depth;
  bool with_norm = false;
  const std::string tap = taps.empty() ? std::string() : taps[0];
  if (tap.empty() || tap == "norm") {
    with_norm = true;
  } else if (tap.compare(0, 7, "blocks.") == 0) {
    std::size_t used = 0;
    last = std::stoll(tap.substr(7), &used) + 1;
    const std::string rest = tap.substr(7 + used);
    RETIKD_CHECK(rest.empty() || rest == ".norm", "fill_teacher_cache_from_prefix: unsupported tap '", tap, "'");
    with_norm = rest == ".norm";
  } else {
    fail("fill_teacher_cache_from_prefix: unsupported tap '", tap, "'");
  }
  if (last <= k) return 0;  // the tap lies inside the frozen prefix: the cache does not hold it
  NoGradGuard no_grad;
  const bool was_training = vit.is_training();
  vit.eval();
  // the student's views' fingerprints, per sample
  std::vector<double> prints[2];
  for (auto& p : prints) p.assign(static_cast<std::size_t>(pc.size()), std::numeric_limits<double>::quiet_NaN());
  student_plain.start_epoch(0);
  data::Batch b;
  while (student_plain.next(b)) {
    const Tensor mirrored = kd::hflip_batch(b.images);
    for (int64_t i = 0; i < b.size(); ++i) {
      const std::size_t at = static_cast<std::size_t>(b.indices[static_cast<std::size_t>(i)]);
      RETIKD_CHECK(at < prints[0].size(), "fill_teacher_cache_from_prefix: sample ", at, " outside the cache of ",
                   pc.size());
      prints[0][at] = kd::TeacherCache::fingerprint(b.images.narrow(0, i, 1));
      prints[1][at] = kd::TeacherCache::fingerprint(mirrored.narrow(0, i, 1));
    }
  }
  data::ProgressBar bar("student_kd: teacher targets (top blocks, both views)", pc.size(), "img", bar_out);
  int64_t records = 0;
  for (int64_t s = 0; s < pc.size(); s += batch) {
    std::vector<int64_t> idx;
    for (int64_t i = s; i < std::min(pc.size(), s + batch); ++i) idx.push_back(i);
    Tensor tokens[2], logits[2];
    for (int v = 0; v < 2; ++v) {
      Var t = vit.run_blocks(Var(pc.batch(idx, std::vector<int>(idx.size(), v))), k, last);  // (B, T, D)
      Var full = last == depth ? t : vit.run_blocks(t, last, depth);
      const Var normed = vit.norm->forward(full);
      tokens[v] = (with_norm ? (last == depth ? normed : vit.norm->forward(t)) : t).value();
      logits[v] = vit.forward_head(normed).value();
    }
    const Tensor shared = flip_tta ? ops::impl::mul_scalar(ops::impl::add(logits[0], logits[1]), 0.5) : Tensor();
    for (std::size_t j = 0; j < idx.size(); ++j) {
      const int64_t jj = static_cast<int64_t>(j);
      for (int v = 0; v < 2; ++v) {
        kd::TeacherRecord rec;
        rec.fingerprint = prints[v][static_cast<std::size_t>(idx[j])];
        RETIKD_CHECK(!std::isnan(rec.fingerprint), "fill_teacher_cache_from_prefix: sample ", idx[j],
                     " was not in the student's loader");
        rec.logits = (flip_tta ? shared : logits[v]).narrow(0, jj, 1).squeeze(0).contiguous().clone();
        if (!tap.empty()) rec.taps[tap] = tokens[v].narrow(0, jj, 1).squeeze(0).contiguous().clone();
        distiller.cache().insert(idx[j], v, std::move(rec));
        ++records;
      }
    }
    bar.add(static_cast<int64_t>(idx.size()));
  }
  bar.finish();
  vit.train(was_training);
  return records;
}

}  // namespace pipeline
}  // namespace retikd
