// retikd/kd/distiller.hpp — CrossArchitectureDistiller: one training step of cross-architecture distillation
// over everything in kd/ (DESIGN.md §5), the teacher cache, and the configuration structs with the presets
// `paper`, `cakd`, `quick` and `smoke` (docs/distillation.md maps each number to §5).
//
// One step on a batch (B, 3, H, W) with labels (B) and sample ids (B):
//   1. views      MultiViewGenerator → V = 1 + K views, concatenated along the batch: X (V·B, 3, H, W),
//                 labels repeated V times. (Every loss below is a mean over the V·B rows, i.e. the mean over
//                 views of the per-view loss.)
//   2. teacher    under NoGradGuard, eval mode: block tokens (+ per-head Q/K/V, + logits) for X — or from the
//                 TeacherCache, keyed by (sample id, view), the views then generated at a fixed step so they
//                 are the same pre-generated set every epoch
//   3. student    forward_with_taps(X, {PCA tap, GL tap}) → logits (V·B, classes), feature maps
//   4. terms      CE, logit KD, L_pca (PartialCrossAttentionProjector), L_gl (GroupLinearProjector)
//   5. adversary  discriminator_update(real = teacher patch tokens on the GL grid, fake = GL output detached)
//   6. student    L_adv = generator_loss against the updated discriminator (its parameters held out);
//                 L = combine_losses(…) ; backward ; optional gradient clipping ; optimizer step over the
//                 student and both projectors
// A non-finite loss skips the corresponding update (nothing NaN is ever written into weights); the
// breakdown then carries "skipped" = 1 and the caller decides (the trainer stops the run).
//
// Which parts exist follows the weights: the PCA projector iff λ_pca > 0, the GL projector iff λ_gl > 0 or
// λ_adv > 0 (the adversary reads the GL projector's output), the discriminator iff λ_adv > 0, teacher logits
// iff logit KD is on, teacher Q/K/V iff the PCA projector needs them.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/core/error.hpp"
#include "retikd/core/random.hpp"
#include "retikd/data/augment.hpp"
#include "retikd/io/atomic_file.hpp"
#include "retikd/kd/discriminator.hpp"
#include "retikd/kd/gl_projector.hpp"
#include "retikd/kd/grid.hpp"
#include "retikd/kd/losses.hpp"
#include "retikd/kd/multi_view.hpp"
#include "retikd/kd/pca_projector.hpp"
#include "retikd/nn/models.hpp"
#include "retikd/optim/optim.hpp"

namespace retikd {
namespace kd {

// ---- configuration ------------------------------------------------------------------------------------------

// The loader's augmentation of the recipe (data/augment.hpp: applied by the data pipeline, not by the distiller).
using LoaderAugment = data::LoaderAugment;

struct DistillConfig {
  std::string preset = "custom";
  // models (make_teacher / make_student build them; the distiller accepts any ViT teacher and tapped student)
  nn::ViTConfig teacher = nn::ViTConfig::base(4, 224, 16);
  std::string student = "mobilenet_v2";
  nn::ModelOptions student_options;
  int64_t img_size = 224;
  int64_t teacher_img_size = 0;          // the teacher's input size; 0: img_size. Views are resized to it
                                         // (bilinear) before the teacher sees them, e.g. 128 px -> 224 px
  // what is distilled
  int64_t teacher_block = -1;            // tokens (and Q/K/V) of this block; -1: the last
  // The teacher tokens the PCA / GL targets are made of: "" = that block's output before any norm (the
  // published recipes); "norm" = after the final LayerNorm (our default: normalised, informative targets);
  // "blocks.{i}.norm" = block i's output through the final norm.
  std::string teacher_token_tap;
  std::string pca_student_tap = "features";
  std::string gl_student_tap = "features";
  PcaConfig pca;                         // in_channels filled from the student tap
  GlConfig gl;                           // in_channels, out_dim, grid filled from the taps
  DiscriminatorConfig disc;              // in_dim filled from the teacher
  MultiViewConfig views;
  KDLossWeights weights;
  bool cache_teacher = false;            // TeacherCache over a fixed set of views per sample
  // Our default where the published recipes fall short (DESIGN.md §5; docs/distillation.md):
  bool ce_clean_view_only = false;       // CE on view 0 only (augmented views can erase the optic disc)
  bool bn_clean_views = false;           // batch-norm batch statistics from view 0; other views use running stats
  double projector_warmup_epochs = 0.0;  // projectors learn on detached student features first; KD terms off
  double balance_rho = 0.0;              // > 0: each KD term weighted ρ·‖∇CE‖/‖∇L_k‖ at the student's shared
                                         // layers, measured right after the warm-up (replaces λ_k, 1 − α)
  int64_t balance_batches = 4;           // batches the gradient norms are averaged over
  double projector_lr_mult = 1.0;        // projectors' lr = student lr × this
  // optimisation
  std::string optimizer = "adamw";       // adamw | sgd (momentum 0.9)
  double lr = 1e-4;
  double weight_decay = 1e-5;
  double clip_grad_norm = 0.0;           // 0: off
  int64_t epochs = 50;
  int64_t batch_size = 32;
  int64_t warmup_epochs = 0;             // linear warm-up, then cosine to 0 (optim::WarmupCosineSchedule)
  LoaderAugment augment;
  uint64_t seed = 0;
};

inline std::vector<std::string> distill_preset_names() { return {"paper", "cakd", "cakd_paper", "quick", "smoke"}; }

// The presets of DESIGN.md §5 (docs/distillation.md lists every number with its source).
inline DistillConfig distill_preset(const std::string& name) {
  DistillConfig c;
  c.preset = name;
  c.student_options.num_classes = 4;
  if (name == "paper") {
    c.teacher = nn::ViTConfig::base(4, 224, 16);
    c.img_size = 224;
    c.pca_student_tap = c.gl_student_tap = "features";  // 7×7
    c.pca.target = PcaTarget::paper;
    c.pca.projection = QkvProjection::conv3x3;
    c.pca.heads = 1;
    c.pca.head_dim = 256;
    c.pca.align = GridAlign::resize_teacher;  // 14×14 → 7×7
    c.gl.grouping = GlGrouping::channel;
    c.gl.groups = 8;
    c.gl.align = GridAlign::resize_teacher;
    c.views.augmented_views = 1;  // 2 views: the original and one augmented
    c.weights.alpha = 0.3;
    c.weights.lambda_pca = 0.7;
    c.weights.lambda_gl = 0.07;
    c.weights.lambda_adv = 0.7;
    c.lr = 1e-4;
    c.weight_decay = 1e-5;
    c.epochs = 50;
    c.batch_size = 32;
    c.augment = {true, true, 12.0, 0.1, 0.1, 0.1, 0.05, true};
  } else if (name == "cakd" || name == "cakd_paper") {
    c.teacher = nn::ViTConfig::base(4, 224, 16);
    c.img_size = 224;
    c.pca_student_tap = c.gl_student_tap = "stage4";  // MobileNetV2 features.13, 14×14 = the teacher grid
    c.pca.target = PcaTarget::cakd;
    c.pca.projection = QkvProjection::conv3x3;
    c.pca.heads = 12;
    c.pca.head_dim = 64;
    c.pca.cross_prob = 0.5;
    c.pca.attn_weight = 0.2;
    c.pca.vv_weight = 0.05;
    c.pca.align = GridAlign::student_at_teacher_grid;
    c.gl.grouping = GlGrouping::spatial;
    c.gl.block = 4;  // 16 maps at 14×14
    c.gl.align = GridAlign::student_at_teacher_grid;
    c.views.augmented_views = 1;
    c.weights.alpha = 1.0;
    c.weights.lambda_pca = 1.0;
    c.weights.lambda_gl = 1.0;
    c.weights.lambda_adv = 0.1;
    c.weights.ramp_start_epoch = 0.0;
    c.weights.ramp_epochs = 25.0;
    if (name == "cakd") {
      // CAKD's official code (yufanLIU/CrossArch_KD, CAKD/dist_train_cakd.py and its vision_transformer.py), where
      // it differs from the paper's text (kept as cakd_paper): the KD weight min(max(epoch − 25, 0)/50, 0.2) —
      // off for 25 epochs, then +0.02 per epoch up to 0.2; the patch-token GL term at 0.05 (× that weight); the
      // discriminator at 0.01× the student's lr; GL targets after the teacher's final LayerNorm; attention and
      // V·Vᵀ maps averaged over heads.
      c.weights.ramp_start_epoch = 25.0;
      c.weights.ramp_epochs = 10.0;
      c.weights.ramp_max = 0.2;
      c.weights.lambda_gl = 0.05;
      c.disc.lr_ratio = 0.01;
      c.teacher_token_tap = "norm";
      c.pca.average_heads = true;
    }
    c.lr = 1e-4;
    c.weight_decay = 1e-5;
    c.epochs = 50;
    c.batch_size = 32;
    c.augment = {true, true, 12.0, 0.1, 0.1, 0.1, 0.05, true};
  } else if (name == "quick") {
    // 160 px: the CE student's best resolution on validation among 128 / 160 / 192 / 224 px (3 paired seeds;
    // 5 against 128 px; docs/results.md "The student's resolution"); the optic disc, the glaucoma signal, is ~19 px
    // across there.
    c.teacher = nn::ViTConfig::tiny(4, 160, 16);  // 10×10 grid, D = 192, 3 heads
    c.img_size = 160;
    c.pca_student_tap = c.gl_student_tap = "stage4";  // 10×10 at 160 px
    c.pca.target = PcaTarget::paper;
    c.pca.projection = QkvProjection::linear;
    c.pca.heads = 1;
    c.pca.head_dim = 64;
    c.pca.align = GridAlign::student_at_teacher_grid;
    c.gl.grouping = GlGrouping::channel;
    c.gl.groups = 8;
    c.gl.align = GridAlign::student_at_teacher_grid;
    c.disc.hidden = 128;
    c.views.augmented_views = 2;
    c.cache_teacher = true;
    // The KD stage's default is logit KD (Hinton; α = 0.5, τ = 4, class-weighted, CE and batch-norm statistics on
    // the clean view): the baseline every feature recipe must beat, and the only KD recipe measured not to cost
    // accuracy with the DINOv2 teacher (docs/results.md, 5 paired seeds). The paper-style PCA + GL + adversarial
    // recipe this preset had before cost 7 points of validation macro-F1 in the whole quick pipeline at 160 px
    // (0.819 against the CE student's 0.893); its projector settings stay here for `--lambda-pca / -gl / -adv`.
    c.weights.alpha = 0.5;
    c.weights.logit_kd = true;
    c.weights.temperature = 4.0;
    c.weights.kd_class_weighted = true;
    c.weights.lambda_pca = 0.0;
    c.weights.lambda_gl = 0.0;
    c.weights.lambda_adv = 0.0;
    c.ce_clean_view_only = true;
    c.bn_clean_views = true;
    c.lr = 5e-4;
    c.weight_decay = 1e-5;
    // 6 epochs: chosen on validation over 4 and 8 (CE student at 160 px, 3 paired seeds; over 5 seeds its gain over
    // 4 is +0.8 [−0.05, +1.6] points, and test shows none: docs/results.md "How long the student trains"); 8 would
    // take the whole pipeline past its 45 minutes on a 2-core CPU.
    c.epochs = 6;
    c.batch_size = 32;
    c.warmup_epochs = 1;
    c.augment = {false, false, 0.0, 0.0, 0.0, 0.0, 0.0, true};  // views come from the cached multi-view set
  } else if (name == "smoke") {
    nn::ViTConfig t;
    t.img_size = 64;
    t.patch_size = 16;  // 4×4 grid
    t.embed_dim = 32;
    t.depth = 2;
    t.num_heads = 2;
    t.mlp_ratio = 2.0;
    t.num_classes = 4;
    c.teacher = t;
    c.img_size = 64;
    c.student_options.width_mult = 0.25;
    c.pca_student_tap = c.gl_student_tap = "stage4";  // 4×4 at 64 px
    c.pca.target = PcaTarget::cakd;
    c.pca.projection = QkvProjection::conv3x3;
    c.pca.heads = 2;
    c.pca.head_dim = 16;
    c.pca.cross_prob = 0.5;
    c.pca.attn_weight = 0.2;
    c.pca.vv_weight = 0.05;
    c.pca.align = GridAlign::student_at_teacher_grid;
    c.gl.grouping = GlGrouping::spatial;
    c.gl.block = 2;  // 4 maps at 4×4
    c.gl.align = GridAlign::student_at_teacher_grid;
    c.disc.hidden = 32;
    c.views.augmented_views = 1;
    c.views.mask_patch = 16;
    c.weights.alpha = 0.5;
    c.weights.logit_kd = true;
    c.weights.temperature = 2.0;
    c.weights.lambda_pca = 1.0;
    c.weights.lambda_gl = 0.5;
    c.weights.lambda_adv = 0.1;
    c.lr = 1e-3;
    c.weight_decay = 0.0;
    c.epochs = 2;
    c.batch_size = 4;
  } else {
    std::string names;
    for (const auto& n : distill_preset_names()) names += (names.empty() ? "" : ", ") + n;
    fail("distill_preset: unknown preset '", name, "' (known: ", names, ")");
  }
  return c;
}

inline std::shared_ptr<nn::VisionTransformer> make_teacher(const DistillConfig& c, Generator& gen) {
  return std::make_shared<nn::VisionTransformer>(c.teacher, gen);
}
inline std::shared_ptr<nn::Model> make_student(const DistillConfig& c, Generator& gen) {
  return nn::create_model(c.student, c.student_options, gen);
}

// ---- teacher cache ------------------------------------------------------------------------------------------

// One sample's teacher outputs for one view: logits (classes) and the configured taps, batch dim removed,
// plus a fingerprint of the view image they were computed from.
struct TeacherRecord {
  Tensor logits;                       // (classes) or undefined
  std::map<std::string, Tensor> taps;  // e.g. "blocks.11" (T, D), "blocks.11.attn.q" (H, T, d)
  double fingerprint = 0.0;
};

// Teacher outputs keyed by (sample index, view index). A record whose fingerprint differs from the view
// presented is recomputed (the images for a sample changed: loader augmentation was on, or the data did).
class TeacherCache {
 public:
  const TeacherRecord* find(int64_t sample, int64_t view) const {
    auto it = records_.find({sample, view});
    return it == records_.end() ? nullptr : &it->second;
  }
  void insert(int64_t sample, int64_t view, TeacherRecord r) { records_[{sample, view}] = std::move(r); }
  std::size_t size() const { return records_.size(); }
  // Bytes held by the cached tensors.
  std::size_t bytes() const {
    std::size_t n = 0;
    for (const auto& kv : records_) {
      if (kv.second.logits.defined()) n += static_cast<std::size_t>(kv.second.logits.numel()) * kv.second.logits.element_size();
      for (const auto& t : kv.second.taps) n += static_cast<std::size_t>(t.second.numel()) * t.second.element_size();
    }
    return n;
  }
  void clear() { records_.clear(); }
  int64_t hits = 0, misses = 0, stale = 0;

  // The records in a file ("RKDTC1\n", then per record: sample, view, fingerprint, the logits and every tap as
  // float32 with their shapes), so runs that share a teacher and a training split (seed repeats, ablations)
  // compute the teacher's targets once. Written atomically; load() returns false on any mismatch or corruption
  // (the caller then recomputes) and only then touches nothing.
  void save(const std::string& path) const {
    io::write_file_atomically(
        path,
        [&](const io::ByteSink& sink) {
          sink("RKDTC1\n", 7);
          const int64_t n = static_cast<int64_t>(records_.size());
          sink(&n, sizeof n);
          auto tensor = [&](const Tensor& t) {
            const Tensor c = t.defined() ? t.to(DType::float32).contiguous() : Tensor();
            const int64_t nd = c.defined() ? c.dim() : -1;
            sink(&nd, sizeof nd);
            if (!c.defined()) return;
            for (int64_t d = 0; d < nd; ++d) {
              const int64_t sz = c.size(d);
              sink(&sz, sizeof sz);
            }
            sink(c.raw_data(), static_cast<std::size_t>(c.numel()) * 4);
          };
          for (const auto& kv : records_) {
            const int64_t key[2] = {kv.first.first, kv.first.second};
            sink(key, sizeof key);
            sink(&kv.second.fingerprint, sizeof(double));
            tensor(kv.second.logits);
            const int64_t ntaps = static_cast<int64_t>(kv.second.taps.size());
            sink(&ntaps, sizeof ntaps);
            for (const auto& t : kv.second.taps) {
              const int64_t len = static_cast<int64_t>(t.first.size());
              sink(&len, sizeof len);
              sink(t.first.data(), t.first.size());
              tensor(t.second);
            }
          }
        },
        "teacher cache");
  }
  bool load(const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return false;
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> closer(f, &std::fclose);
    auto read = [&](void* p, std::size_t n) { return std::fread(p, 1, n, f) == n; };
    char magic[7];
    int64_t n = 0;
    if (!read(magic, 7) || std::memcmp(magic, "RKDTC1\n", 7) != 0 || !read(&n, sizeof n) || n < 0 || n > (1 << 26))
      return false;
    auto tensor = [&](Tensor& out) {
      int64_t nd = 0;
      if (!read(&nd, sizeof nd) || nd < -1 || nd > 8) return false;
      if (nd == -1) return true;
      Shape shape;
      int64_t numel = 1;
      for (int64_t d = 0; d < nd; ++d) {
        int64_t sz = 0;
        if (!read(&sz, sizeof sz) || sz < 0 || sz > (1 << 20)) return false;
        shape.push_back(sz);
        numel *= sz;
        if (numel > (int64_t(1) << 28)) return false;
      }
      out = Tensor::empty(shape, DType::float32);
      return read(out.raw_data(), static_cast<std::size_t>(numel) * 4);
    };
    std::map<std::pair<int64_t, int64_t>, TeacherRecord> loaded;
    for (int64_t i = 0; i < n; ++i) {
      int64_t key[2];
      TeacherRecord r;
      int64_t ntaps = 0;
      if (!read(key, sizeof key) || !read(&r.fingerprint, sizeof(double)) || !tensor(r.logits) ||
          !read(&ntaps, sizeof ntaps) || ntaps < 0 || ntaps > 16)
        return false;
      for (int64_t t = 0; t < ntaps; ++t) {
        int64_t len = 0;
        if (!read(&len, sizeof len) || len < 0 || len > 256) return false;
        std::string name(static_cast<std::size_t>(len), '\0');
        if (!read(&name[0], name.size()) || !tensor(r.taps[name])) return false;
      }
      loaded[{key[0], key[1]}] = std::move(r);
    }
    if (std::fgetc(f) != EOF) return false;
    records_ = std::move(loaded);
    return true;
  }

  // A cheap, order-sensitive fingerprint of one image: Σ x_i·(1 + i mod 7).
  static double fingerprint(const Tensor& image) {
    const std::vector<double> v = image.to_vector<double>();
    double s = 0.0;
    for (std::size_t i = 0; i < v.size(); ++i) s += v[i] * static_cast<double>(1 + i % 7);
    return s;
  }

 private:
  std::map<std::pair<int64_t, int64_t>, TeacherRecord> records_;
};

// ---- the distiller ------------------------------------------------------------------------------------------

class CrossArchitectureDistiller {
 public:
  CrossArchitectureDistiller(std::shared_ptr<nn::VisionTransformer> teacher, std::shared_ptr<nn::Model> student,
                             DistillConfig cfg, Generator& gen)
      : teacher_(std::move(teacher)), student_(std::move(student)), cfg_(std::move(cfg)), views_(cfg_.views) {
    RETIKD_CHECK(teacher_ && student_, "CrossArchitectureDistiller: teacher and student must be set");
    cfg_.weights.validate();
    RETIKD_CHECK(cfg_.img_size > 0, "CrossArchitectureDistiller: img_size must be positive");
    const nn::ViTConfig& tc = teacher_->config();
    const int64_t depth = tc.depth;
    block_ = cfg_.teacher_block < 0 ? depth + cfg_.teacher_block : cfg_.teacher_block;
    RETIKD_CHECK(block_ >= 0 && block_ < depth, "CrossArchitectureDistiller: teacher_block ", cfg_.teacher_block,
                 " is outside the teacher's ", depth, " blocks");
    RETIKD_CHECK(teacher_->num_classes() == student_->num_classes() || !cfg_.weights.logit_kd,
                 "CrossArchitectureDistiller: logit KD needs the teacher's classes (", teacher_->num_classes(),
                 ") to be the student's (", student_->num_classes(), ")");
    const int64_t D = tc.embed_dim, Ht = tc.num_heads, dt = D / Ht;
    RETIKD_CHECK(cfg_.teacher_img_size >= 0, "CrossArchitectureDistiller: teacher_img_size must be >= 0");
    const auto tg = teacher_->grid(teacher_img(), teacher_img());
    teacher_grid_ = tg;
    const std::string bname = "blocks." + std::to_string(block_);
    heads_ = std::make_shared<nn::Module>();

    const auto student_taps = student_->tap_names(cfg_.img_size, cfg_.img_size, 1);
    auto tap_shape = [&](const std::string& name) -> Shape {
      for (const auto& t : student_taps)
        if (t.name == name) return t.shape;
      std::string have;
      for (const auto& t : student_taps) have += (have.empty() ? "" : ", ") + t.name;
      fail("CrossArchitectureDistiller: the student (", student_->arch(), ") has no tap '", name, "' (taps: ", have, ")");
    };
    auto check_map = [&](const Shape& s, const std::string& name) {
      RETIKD_CHECK(s.size() == 4, "CrossArchitectureDistiller: student tap '", name, "' is ", shape_str(s),
                   "; the projectors need a (B, C, h, w) feature map");
    };

    if (cfg_.weights.lambda_pca > 0.0) {
      const Shape s = tap_shape(cfg_.pca_student_tap);
      check_map(s, cfg_.pca_student_tap);
      cfg_.pca.in_channels = s[1];
      common_grid(cfg_.pca.align, s[2], s[3], tg.first, tg.second);  // throws on an impossible alignment
      pca_ = heads_->register_module("pca", std::make_shared<PartialCrossAttentionProjector>(cfg_.pca, gen));
      pca_->check_teacher(Ht, dt);
      student_tap_names_.insert(cfg_.pca_student_tap);
    }
    if (cfg_.weights.lambda_gl > 0.0 || cfg_.weights.lambda_adv > 0.0) {
      const Shape s = tap_shape(cfg_.gl_student_tap);
      check_map(s, cfg_.gl_student_tap);
      const auto g = common_grid(cfg_.gl.align, s[2], s[3], tg.first, tg.second);
      cfg_.gl.in_channels = s[1];
      cfg_.gl.out_dim = D;
      cfg_.gl.grid_h = g.first;
      cfg_.gl.grid_w = g.second;
      gl_ = heads_->register_module("gl", std::make_shared<GroupLinearProjector>(cfg_.gl, gen));
      student_tap_names_.insert(cfg_.gl_student_tap);
    }
    // What the run decides once and must keep across a resume: gradient-norm sums of the balancing and the
    // PCA temperature (float64 buffer in heads(), so the pipeline's checkpoint carries it).
    kd_state_ = &heads_->register_buffer("kd_state", Tensor::zeros({kStateSize}, DType::float64));
    if (cfg_.weights.lambda_adv > 0.0) {
      cfg_.disc.in_dim = D;
      disc_ = heads_->register_module("disc", std::make_shared<FeatureDiscriminator>(cfg_.disc, gen));
    }

    // The block's tokens only when a projector reads them (the discriminator reads the GL projector's target):
    // logit KD alone taps nothing, so its cache and target files hold the logits only.
    if (pca_ || gl_) teacher_tap_names_.push_back(cfg_.teacher_token_tap.empty() ? bname : cfg_.teacher_token_tap);
    if (pca_ && pca_->needs_teacher_qkv()) {
      teacher_tap_names_.push_back(bname + ".attn.q");
      teacher_tap_names_.push_back(bname + ".attn.k");
      if (pca_->needs_teacher_v()) teacher_tap_names_.push_back(bname + ".attn.v");
    }
    teacher_->eval();

    std::vector<Var> heads_params;
    if (pca_) for (auto& p : pca_->trainable_parameters()) heads_params.push_back(p);
    if (gl_) for (auto& p : gl_->trainable_parameters()) heads_params.push_back(p);
    std::vector<optim::ParamGroup> groups{{student_->trainable_parameters(), cfg_.lr, cfg_.weight_decay, "student"}};
    RETIKD_CHECK(cfg_.projector_lr_mult > 0.0 && cfg_.balance_rho >= 0.0 && cfg_.projector_warmup_epochs >= 0.0 &&
                     cfg_.balance_batches >= 1,
                 "CrossArchitectureDistiller: projector_lr_mult must be positive, balance_rho and "
                 "projector_warmup_epochs >= 0, balance_batches >= 1");
    if (!heads_params.empty())
      groups.push_back({heads_params, cfg_.lr * cfg_.projector_lr_mult, cfg_.weight_decay, "projectors"});
    if (cfg_.optimizer == "adamw") {
      optim::AdamWOptions o;
      o.lr = cfg_.lr;
      o.weight_decay = cfg_.weight_decay;
      student_opt_ = std::make_unique<optim::AdamW>(groups, o);
    } else if (cfg_.optimizer == "sgd") {
      optim::SGDOptions o;
      o.lr = cfg_.lr;
      o.momentum = 0.9;
      o.weight_decay = cfg_.weight_decay;
      student_opt_ = std::make_unique<optim::SGD>(groups, o);
    } else {
      fail("CrossArchitectureDistiller: unknown optimizer '", cfg_.optimizer, "' (adamw, sgd)");
    }
    if (disc_) {
      RETIKD_CHECK(cfg_.disc.lr_ratio > 0.0, "CrossArchitectureDistiller: discriminator lr_ratio must be positive");
      optim::AdamWOptions o;
      o.lr = cfg_.lr * cfg_.disc.lr_ratio;
      o.weight_decay = cfg_.weight_decay;
      disc_opt_ = std::make_unique<optim::AdamW>(
          std::vector<optim::ParamGroup>{{disc_->trainable_parameters(), o.lr, o.weight_decay, "discriminator"}}, o);
    }
    train(true);
  }

  // ---- one step ----
  // images (B, C, H, W) float32 CPU, labels (B) int64, sample_ids (B) — the dataset indices (multi-view seeds,
  // cache keys); epoch: fractional epoch for the KD ramp.
  LossBreakdown step(const Tensor& images, const Tensor& labels, const std::vector<int64_t>& sample_ids,
                     double epoch) {
    RETIKD_CHECK(images.dim() == 4 && labels.dim() == 1 && labels.size(0) == images.size(0) &&
                     static_cast<int64_t>(sample_ids.size()) == images.size(0),
                 "CrossArchitectureDistiller::step: images ", shape_str(images.shape()), ", labels ",
                 shape_str(labels.shape()), " and ", sample_ids.size(), " sample ids do not describe one batch");
    train(true);
    const uint64_t s = step_++;
    LossBreakdown log;
    log.set("total", 0.0);

    // 1. views (the cached set is generated at step 0 every time: the same views each epoch)
    const std::vector<Tensor> views = views_.generate(images, sample_ids, cfg_.cache_teacher ? 0 : s);
    const int64_t V = static_cast<int64_t>(views.size());
    const Tensor X = V == 1 ? images : ops::impl::concat(views, 0);  // (V·B, C, H, W)
    std::vector<Tensor> label_copies(static_cast<std::size_t>(V), labels);
    const Tensor Y = V == 1 ? labels : ops::impl::concat(label_copies, 0);  // (V·B)

    // 2. teacher, 3. student
    const TeacherFeatures tf = cfg_.cache_teacher ? teacher_from_cache(views, sample_ids) : teacher_forward(X);
    const nn::ModelOutput so = student_forward(X, images.size(0));
    restore_state();

    // 4. terms. During the projector warm-up the projectors read detached student features (they learn, the
    // student does not) and the KD terms are left out of the student's loss.
    const bool warming = epoch < cfg_.projector_warmup_epochs;
    auto tap = [&](const std::string& name) { return warming ? so.tap(name).detach() : so.tap(name); };
    const Tensor sw = cfg_.weights.kd_class_weighted ? sample_weights_from_labels(Y, cfg_.weights.class_weights)
                                                     : Tensor();
    KDTerms terms;
    const int64_t B0 = images.size(0);
    terms.ce = cfg_.ce_clean_view_only && V > 1
                   ? classification_loss(ops::narrow(so.logits, 0, 0, B0), labels, cfg_.weights)
                   : classification_loss(so.logits, Y, cfg_.weights);
    if (cfg_.weights.logit_kd) terms.logit_kd = logit_kd_loss(so.logits, tf.logits, cfg_.weights.temperature, sw);
    PcaResult r;
    if (pca_) {
      r = pca_->forward(tap(cfg_.pca_student_tap), tf, s, sw);
      terms.pca = r.loss;
      if (pca_->temperature_chosen()) state(kPcaTau) = pca_->temperature();
      if (std::isfinite(pca_->last_target_entropy())) log.set("pca_entropy", pca_->last_target_entropy());
    }
    GlResult g;
    if (gl_) {
      g = gl_->forward(tap(cfg_.gl_student_tap), tf, /*need_projected=*/disc_ != nullptr, sw);
      terms.gl = g.loss;
    }

    // 5. the discriminator's move (on detached features), unless something is already non-finite
    bool finite = std::isfinite(terms.ce.item<double>());
    for (const Var* t : {&terms.logit_kd, &terms.pca, &terms.gl})
      if (t->defined()) finite = finite && std::isfinite(t->item<double>());
    if (!agreed(finite)) return skipped(log, terms, epoch);
    DiscriminatorStats ds;
    if (disc_) ds = discriminator_update(*disc_, *disc_opt_, g.target, g.projected);

    // 6. the student's move: generator loss against the updated discriminator, held out of this backward
    std::unique_ptr<FrozenScope> frozen;
    if (disc_) {
      frozen = std::make_unique<FrozenScope>(*disc_);
      terms.adv = generator_loss(*disc_, g.projected);
    }
    if (!warming && cfg_.balance_rho > 0.0 && state(kBalanceCount) < static_cast<double>(cfg_.balance_batches))
      measure_gradient_norms(terms);
    Var total = combine_losses(terms, effective_weights(warming), epoch, &log);
    if (r.attn.defined()) log.set("pca_attn", r.attn.item<double>());
    if (r.vv.defined()) log.set("pca_vv", r.vv.item<double>());
    if (disc_) {
      log.set("disc", ds.loss);
      log.set("disc_acc", ds.accuracy);
    }
    if (!agreed(std::isfinite(total.item<double>()))) return skipped(log, terms, epoch);
    student_opt_->zero_grad();
    total.backward();
    frozen.reset();
    if (cfg_.clip_grad_norm > 0.0) log.set("grad_norm", optim::clip_grad_norm(student_parameters(), cfg_.clip_grad_norm));
    student_opt_->step();
    log.set("skipped", 0.0);
    return log;
  }

  // The KD weights in force: during the projector warm-up CE plus the projector terms at weight 1 (their inputs
  // are detached, so only the projectors learn); with balancing, ρ·‖∇CE‖/‖∇L_k‖ once measured (0 until then).
  KDLossWeights effective_weights(bool warming) const {
    KDLossWeights w = cfg_.weights;
    if (warming) {
      w.logit_kd = false;
      w.lambda_adv = 0.0;
      if (w.lambda_pca > 0.0) w.lambda_pca = 1.0;
      if (w.lambda_gl > 0.0) w.lambda_gl = 1.0;
      w.ramp_start_epoch = 0.0;
      w.ramp_epochs = 0.0;
      return w;
    }
    if (cfg_.balance_rho <= 0.0) return w;
    const double n = kd_state_->data<double>()[kBalanceCount];
    auto lambda = [&](int k) {
      const double* st = kd_state_->data<double>();
      return n >= static_cast<double>(cfg_.balance_batches) && st[kGradTerm + k] > 0.0
                 ? cfg_.balance_rho * st[kGradCe + k] / st[kGradTerm + k]
                 : 0.0;
    };
    if (w.logit_kd) w.lambda_logit = lambda(0);
    if (w.lambda_pca > 0.0) w.lambda_pca = lambda(1);
    if (w.lambda_gl > 0.0) w.lambda_gl = lambda(2);
    return w;
  }
  // The balanced weights once measured (logit, pca, gl; 0 for a term that is off or not yet measured).
  std::vector<double> balanced_weights() const {
    const KDLossWeights w = effective_weights(false);
    return {w.logit_kd ? w.lambda_logit : 0.0, w.lambda_pca, w.lambda_gl};
  }

  // ---- the teacher side ----
  // The teacher's input size (DistillConfig::teacher_img_size, else img_size).
  int64_t teacher_img() const { return cfg_.teacher_img_size > 0 ? cfg_.teacher_img_size : cfg_.img_size; }

  // Teacher outputs for a batch (B, C, H, W) of student views, no tape (resized to the teacher's size first).
  TeacherFeatures teacher_forward(const Tensor& images) const {
    NoGradGuard no_grad;
    const int64_t T = teacher_img();
    const Tensor x = images.size(2) == T && images.size(3) == T
                         ? images
                         : ops::impl::interpolate_bilinear(images, T, T, false);  // (B, C, T, T)
    nn::ModelOutput o = teacher_->forward_with_taps(Var(x), teacher_tap_names_, cfg_.weights.logit_kd);
    TeacherFeatures t;
    t.prefix = teacher_->num_prefix_tokens();
    const auto g = teacher_->grid(T, T);
    t.grid_h = g.first;
    t.grid_w = g.second;
    if (cfg_.weights.logit_kd) t.logits = o.logits;
    if (!teacher_tap_names_.empty()) t.tokens = o.tap(teacher_tap_names_[0]);
    if (teacher_tap_names_.size() > 1) {
      t.q = o.tap(teacher_tap_names_[1]);
      t.k = o.tap(teacher_tap_names_[2]);
      if (teacher_tap_names_.size() > 3) t.v = o.tap(teacher_tap_names_[3]);
    }
    return t;
  }

  // Teacher outputs for the views of a batch (each (B, C, H, W), view-major like step()'s X), from the cache
  // where a record for (sample id, view) exists with the same image fingerprint, else computed (one teacher
  // forward over all the missing images) and stored.
  TeacherFeatures teacher_from_cache(const std::vector<Tensor>& views, const std::vector<int64_t>& sample_ids) {
    const int64_t V = static_cast<int64_t>(views.size()), B = static_cast<int64_t>(sample_ids.size());
    std::vector<const TeacherRecord*> rows(static_cast<std::size_t>(V * B), nullptr);
    std::vector<double> prints(rows.size());
    std::vector<int64_t> missing;
    for (int64_t v = 0; v < V; ++v)
      for (int64_t b = 0; b < B; ++b) {
        const std::size_t i = static_cast<std::size_t>(v * B + b);
        prints[i] = TeacherCache::fingerprint(views[static_cast<std::size_t>(v)].narrow(0, b, 1));
        const TeacherRecord* r = cache_.find(sample_ids[static_cast<std::size_t>(b)], v);
        if (r && r->fingerprint == prints[i]) {
          rows[i] = r;
          ++cache_.hits;
        } else {
          (r ? cache_.stale : cache_.misses) += 1;
          missing.push_back(static_cast<int64_t>(i));
        }
      }
    if (!missing.empty()) {
      std::vector<Tensor> imgs;
      for (int64_t i : missing) imgs.push_back(views[static_cast<std::size_t>(i / B)].narrow(0, i % B, 1));
      const TeacherFeatures t = teacher_forward(ops::impl::concat(imgs, 0));
      for (std::size_t j = 0; j < missing.size(); ++j) {
        const int64_t i = missing[j], jj = static_cast<int64_t>(j);
        TeacherRecord rec;
        rec.fingerprint = prints[static_cast<std::size_t>(i)];
        auto row = [&](const Var& x) { return x.value().narrow(0, jj, 1).squeeze(0).contiguous().clone(); };
        if (t.logits.defined()) rec.logits = row(t.logits);
        if (t.tokens.defined()) rec.taps[teacher_tap_names_[0]] = row(t.tokens);
        if (t.q.defined()) rec.taps[teacher_tap_names_[1]] = row(t.q);
        if (t.k.defined()) rec.taps[teacher_tap_names_[2]] = row(t.k);
        if (t.v.defined()) rec.taps[teacher_tap_names_[3]] = row(t.v);
        cache_.insert(sample_ids[static_cast<std::size_t>(i % B)], i / B, std::move(rec));
      }
      for (int64_t i : missing)
        rows[static_cast<std::size_t>(i)] = cache_.find(sample_ids[static_cast<std::size_t>(i % B)], i / B);
    }
    TeacherFeatures out;
    out.prefix = teacher_->num_prefix_tokens();
    const auto g = teacher_->grid(teacher_img(), teacher_img());
    out.grid_h = g.first;
    out.grid_w = g.second;
    auto stack = [&](const std::string& tap) {
      std::vector<Tensor> parts;
      for (const TeacherRecord* r : rows) {
        const Tensor& x = tap.empty() ? r->logits : r->taps.at(tap);
        parts.push_back(x.unsqueeze(0));
      }
      return Var(ops::impl::concat(parts, 0));
    };
    if (cfg_.weights.logit_kd) out.logits = stack("");
    if (!teacher_tap_names_.empty()) out.tokens = stack(teacher_tap_names_[0]);
    if (teacher_tap_names_.size() > 1) {
      out.q = stack(teacher_tap_names_[1]);
      out.k = stack(teacher_tap_names_[2]);
      if (teacher_tap_names_.size() > 3) out.v = stack(teacher_tap_names_[3]);
    }
    return out;
  }

  // ---- access ----
  nn::VisionTransformer& teacher() { return *teacher_; }
  nn::Model& student() { return *student_; }
  const DistillConfig& config() const { return cfg_; }
  PartialCrossAttentionProjector* pca() { return pca_.get(); }
  GroupLinearProjector* gl() { return gl_.get(); }
  FeatureDiscriminator* discriminator() { return disc_.get(); }
  const MultiViewGenerator& views() const { return views_; }
  // The projectors and the discriminator as one module ("pca.*", "gl.*", "disc.*") — for checkpoints.
  nn::Module& heads() { return *heads_; }
  optim::Optimizer& student_optimizer() { return *student_opt_; }
  optim::Optimizer* discriminator_optimizer() { return disc_opt_.get(); }
  TeacherCache& cache() { return cache_; }
  const std::vector<std::string>& teacher_taps() const { return teacher_tap_names_; }
  std::vector<std::string> student_taps() const { return {student_tap_names_.begin(), student_tap_names_.end()}; }
  // The student's parameters and the projectors' (what the student optimizer updates).
  std::vector<Var> student_parameters() const {
    std::vector<Var> out;
    for (const auto& group : student_opt_->groups())
      for (const auto& p : group.params) out.push_back(p);
    return out;
  }
  // Steps taken (seeds the multi-view generator and the cross-replacement mask); restore it on resume.
  uint64_t step_count() const { return step_; }
  void set_step_count(uint64_t s) { step_ = s; }
  // Data-parallel runs: `agree(ok)` must return whether ok holds on every rank (dist::ProcessGroup::all_true),
  // so that all ranks skip a non-finite step together and their collectives stay matched.
  void set_agreement(std::function<bool(bool)> agree) { agree_ = std::move(agree); }
  // Student, projectors and discriminator to train / eval mode; the teacher always stays in eval mode.
  void train(bool on = true) {
    student_->train(on);
    heads_->train(on);
    teacher_->eval();
  }

 private:
  bool agreed(bool ok) const { return agree_ ? agree_(ok) : ok; }

  LossBreakdown skipped(LossBreakdown& log, const KDTerms& terms, double epoch) {
    for (const auto& t : std::vector<std::pair<const char*, const Var*>>{
             {"ce", &terms.ce}, {"logit_kd", &terms.logit_kd}, {"pca", &terms.pca}, {"gl", &terms.gl}})
      if (t.second->defined()) log.set(t.first, t.second->item<double>());
    log.set("kd_ramp", cfg_.weights.ramp(epoch));
    log.set("total", std::numeric_limits<double>::quiet_NaN());
    log.set("skipped", 1.0);
    return log;
  }

  // kd_state_ layout: [0] batches measured, [1..3] Σ‖∇CE‖ on each term's parameters (logit, pca, gl),
  // [4..6] Σ‖∇L_k‖, [7] the PCA temperature chosen (0: none yet).
  static constexpr int64_t kStateSize = 8;
  static constexpr int kBalanceCount = 0, kGradCe = 1, kGradTerm = 4, kPcaTau = 7;
  double& state(int i) { return kd_state_->data<double>()[i]; }
  // After a resume the buffer holds the PCA temperature chosen before: use it.
  void restore_state() {
    if (pca_ && !pca_->temperature_chosen() && state(kPcaTau) > 0.0) pca_->set_temperature(state(kPcaTau));
  }

  // The student's logits and taps for the views X (V·B, ...): one forward, or, with bn_clean_views, the clean
  // view in training mode and the other views with batch norm on its running statistics (so the statistics,
  // like the evaluation, see clean images only).
  nn::ModelOutput student_forward(const Tensor& X, int64_t B) {
    std::vector<std::string> taps(student_tap_names_.begin(), student_tap_names_.end());
    if (!cfg_.bn_clean_views || X.size(0) == B) return student_->forward_with_taps(Var(X), taps, true);
    nn::ModelOutput clean = student_->forward_with_taps(Var(X.narrow(0, 0, B)), taps, true);
    std::vector<nn::Module*> bns;
    nn::for_each_module(*student_, [&](nn::Module& m) {
      if (dynamic_cast<nn::BatchNorm2d*>(&m) && m.is_training()) bns.push_back(&m);
    });
    for (auto* m : bns) m->train(false);
    nn::ModelOutput rest;
    try {
      rest = student_->forward_with_taps(Var(X.narrow(0, B, X.size(0) - B)), taps, true);
    } catch (...) {
      for (auto* m : bns) m->train(true);
      throw;
    }
    for (auto* m : bns) m->train(true);
    nn::ModelOutput out;
    out.logits = ops::concat({clean.logits, rest.logits}, 0);
    for (const auto& kv : clean.taps) out.taps[kv.first] = ops::concat({kv.second, rest.tap(kv.first)}, 0);
    return out;
  }

  // One batch of the balance measurement: ‖∇L_k‖ and ‖∇CE‖ over the student parameters L_k reaches (its shared
  // layers with CE), each from its own backward pass over this step's graph; summed into kd_state_.
  void measure_gradient_norms(const KDTerms& t) {
    const std::vector<Var> params = student_->trainable_parameters();
    auto grads_of = [&](const Var& loss) {
      for (auto p : params) p.zero_grad();
      loss.backward();
      std::vector<Tensor> g;
      for (const auto& p : params) g.push_back(p.grad().defined() ? p.grad().to(Device::cpu()).clone() : Tensor());
      return g;
    };
    auto sq = [](const Tensor& x) {
      double s = 0.0;
      for (double v : x.to_vector<double>()) s += v * v;
      return s;
    };
    const std::vector<Tensor> ce = grads_of(t.ce);
    const Var* terms[3] = {&t.logit_kd, &t.pca, &t.gl};
    for (int k = 0; k < 3; ++k) {
      if (!terms[k]->defined() || !terms[k]->requires_grad()) continue;
      const std::vector<Tensor> gk = grads_of(*terms[k]);
      double nk = 0.0, nce = 0.0;
      for (std::size_t i = 0; i < params.size(); ++i) {
        if (!gk[i].defined()) continue;
        const double s = sq(gk[i]);
        if (s == 0.0) continue;
        nk += s;
        if (ce[i].defined()) nce += sq(ce[i]);
      }
      state(kGradCe + k) += std::sqrt(nce);
      state(kGradTerm + k) += std::sqrt(nk);
    }
    state(kBalanceCount) += 1.0;
    for (auto p : params) p.zero_grad();
  }

  std::shared_ptr<nn::VisionTransformer> teacher_;
  std::shared_ptr<nn::Model> student_;
  DistillConfig cfg_;
  Tensor* kd_state_ = nullptr;
  MultiViewGenerator views_;
  int64_t block_ = 0;
  std::pair<int64_t, int64_t> teacher_grid_{0, 0};
  std::shared_ptr<nn::Module> heads_;
  std::shared_ptr<PartialCrossAttentionProjector> pca_;
  std::shared_ptr<GroupLinearProjector> gl_;
  std::shared_ptr<FeatureDiscriminator> disc_;
  std::set<std::string> student_tap_names_;
  std::vector<std::string> teacher_tap_names_;
  std::unique_ptr<optim::Optimizer> student_opt_, disc_opt_;
  TeacherCache cache_;
  uint64_t step_ = 0;
  std::function<bool(bool)> agree_;
};

}  // namespace kd
}  // namespace retikd
