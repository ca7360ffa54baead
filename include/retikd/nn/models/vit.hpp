// retikd/nn/models/vit.hpp — timm's VisionTransformer (pre-norm, CLS token, learned position embedding),
// name for name: `cls_token`, `pos_embed`, `patch_embed.proj.weight`, `blocks.0.norm1.weight`,
// `blocks.0.attn.qkv.weight`, `blocks.0.mlp.fc1.weight`, `norm.weight`, `head.weight`.
// Presets: tiny (192 wide, 12 deep, 3 heads), small (384/12/6), base (768/12/12); any patch size, image
// size, depth, width and heads.
//
// Taps (T = tokens = 1 + gh·gw with the CLS token, N = gh·gw patches):
//   patch_embed            (B, N, D)       patch tokens before CLS / position embedding
//   blocks.{i}             (B, T, D)       output of block i (before the final norm)
//   blocks.{i}.norm        (B, T, D)       the same after the final norm (timm's intermediates with norm=True)
//   blocks.{i}.attn.q|k|v  (B, heads, T, d)
//   blocks.{i}.attn.logits (B, heads, T, T) pre-softmax q·kᵀ·d^−½
//   blocks.{i}.attn.probs  (B, heads, T, T) softmax of the logits (before attention dropout)
//   norm                   (B, T, D)       = forward_features (after the final LayerNorm)
//   pre_logits             (B, D)          CLS token after the norm (or the token mean, global_pool avg)
//
// An input whose patch grid differs from the stored one gets its position embedding resized on the tape, the
// CLS part unchanged: bilinearly (align_corners = false) by default, bicubically when pos_embed_bicubic is set
// (ops::interpolate_bicubic: PyTorch's bicubic with align_corners = false and no antialiasing, i.e. what the
// DINOv2 ONNX graph and Hugging Face's Dinov2Model do; timm's resample_abs_pos_embed antialiases when it
// shrinks, so timm's own output differs slightly from both below the stored grid).
//
// DINOv2 (ViTConfig::dinov2_small, model name vit_small_patch14_dinov2): patch 14, LayerScale
// (`blocks.{i}.ls1.gamma`, `blocks.{i}.ls2.gamma`), LayerNorm eps 1e-6, exact GELU, the position embedding stored
// for a 37×37 grid (518 px) and always resampled bicubically to the working grid (16×16 at 224 px; any image
// size divisible by 14). io/onnx_import.hpp loads Meta's weights from the ONNX export.
// Init as timm ('' mode): pos_embed trunc_normal(0.02), cls_token N(0, 1e-6), every Linear
// trunc_normal(0.02) with zero bias, LayerNorm ones/zeros, patch projection PyTorch's Conv2d default.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "retikd/nn/models/model.hpp"
#include "retikd/nn/transformer.hpp"
#include "retikd/ops/resize.hpp"

namespace retikd {
namespace nn {

struct ViTConfig {
  int64_t img_size = 224;
  int64_t patch_size = 16;
  int64_t in_chans = 3;
  int64_t num_classes = 4;  // 0: no head (forward returns pre_logits), e.g. an I-JEPA encoder
  int64_t embed_dim = 768;
  int64_t depth = 12;
  int64_t num_heads = 12;
  double mlp_ratio = 4.0;
  bool qkv_bias = true;
  bool class_token = true;
  bool global_pool_avg = false;  // false: the CLS token ("token"); true: mean of the patch tokens ("avg")
  double drop_rate = 0.0;        // after position embedding and before the head
  double proj_drop_rate = 0.0;
  double attn_drop_rate = 0.0;
  double drop_path_rate = 0.0;   // stochastic depth, linear from 0 to this over the blocks
  double norm_eps = 1e-6;
  double init_values = 0.0;      // > 0: LayerScale in every block (DINOv2: 1e-5)
  int64_t pos_embed_grid = 0;    // grid the position embedding is stored for; 0: img_size / patch_size
  bool pos_embed_bicubic = false;  // resample it bicubically (true) or bilinearly to another grid
  bool pool_token_and_avg = false;  // head on CLS ⊕ mean patch token (2·D features) instead of global_pool_avg's
  std::string variant;           // "dinov2" names the architecture vit_small_patch14_dinov2

  // DINOv2 ViT-S/14 (Meta's weights through io/onnx_import.hpp): D 384, 12 blocks, 6 heads, LayerScale, the
  // position embedding stored at 37×37 and resampled bicubically; `img` is the working size (multiple of 14).
  static ViTConfig dinov2_small(int64_t classes = 4, int64_t img = 224) {
    ViTConfig c = preset(384, 6, classes, img, 14);
    c.init_values = 1e-5;
    c.pos_embed_grid = 37;
    c.pos_embed_bicubic = true;
    c.variant = "dinov2";
    return c;
  }

  static ViTConfig tiny(int64_t classes = 4, int64_t img = 224, int64_t patch = 16) {
    return preset(192, 3, classes, img, patch);
  }
  static ViTConfig small(int64_t classes = 4, int64_t img = 224, int64_t patch = 16) {
    return preset(384, 6, classes, img, patch);
  }
  static ViTConfig base(int64_t classes = 4, int64_t img = 224, int64_t patch = 16) {
    return preset(768, 12, classes, img, patch);
  }

 private:
  static ViTConfig preset(int64_t dim, int64_t heads, int64_t classes, int64_t img, int64_t patch) {
    ViTConfig c;
    c.embed_dim = dim;
    c.num_heads = heads;
    c.num_classes = classes;
    c.img_size = img;
    c.patch_size = patch;
    return c;
  }
};

class VisionTransformer : public Model {
 public:
  Var cls_token;  // (1, 1, D); undefined without a class token
  Var pos_embed;  // (1, T, D)
  std::shared_ptr<PatchEmbed> patch_embed;
  std::vector<std::shared_ptr<Block>> blocks;
  std::shared_ptr<LayerNorm> norm;
  std::shared_ptr<Linear> head;  // null when num_classes == 0

  VisionTransformer(const ViTConfig& cfg, Generator& gen) : cfg_(cfg) {
    RETIKD_CHECK(cfg.patch_size > 0 && cfg.img_size >= cfg.patch_size, "VisionTransformer: image size ",
                 cfg.img_size, " must be at least the patch size ", cfg.patch_size);
    RETIKD_CHECK(cfg.depth > 0 && cfg.embed_dim > 0 && cfg.num_heads > 0 && cfg.embed_dim % cfg.num_heads == 0,
                 "VisionTransformer: embed_dim ", cfg.embed_dim, " must be a positive multiple of num_heads ",
                 cfg.num_heads, " and depth ", cfg.depth, " positive");
    RETIKD_CHECK(cfg.num_classes >= 0, "VisionTransformer: num_classes must be >= 0");
    RETIKD_CHECK(cfg.class_token || cfg.global_pool_avg, "VisionTransformer: without a class token the pooling "
                 "must be the token mean (global_pool_avg)");
    RETIKD_CHECK(!cfg.pool_token_and_avg || (cfg.class_token && !cfg.global_pool_avg),
                 "VisionTransformer: pool_token_and_avg needs a class token and excludes global_pool_avg");
    RETIKD_CHECK(cfg.pos_embed_grid >= 0 && cfg.init_values >= 0, "VisionTransformer: pos_embed_grid and "
                 "init_values must be >= 0");
    DeferInit defer;  // every weight is drawn below
    const int64_t D = cfg.embed_dim;
    grid_ = cfg.pos_embed_grid > 0 ? cfg.pos_embed_grid : cfg.img_size / cfg.patch_size;
    const int64_t prefix = cfg.class_token ? 1 : 0;
    if (cfg.class_token) cls_token = register_parameter("cls_token", Tensor::zeros({1, 1, D}));
    pos_embed = register_parameter("pos_embed", Tensor::zeros({1, prefix + grid_ * grid_, D}));
    patch_embed = register_module("patch_embed", std::make_shared<PatchEmbed>(cfg.patch_size, cfg.in_chans, D, gen));
    pos_drop_ = register_module("pos_drop", std::make_shared<Dropout>(cfg.drop_rate, noise_));
    auto seq = register_module("blocks", std::make_shared<Sequential>());
    for (int64_t i = 0; i < cfg.depth; ++i) {
      BlockOptions o;
      o.mlp_ratio = cfg.mlp_ratio;
      o.qkv_bias = cfg.qkv_bias;
      o.proj_drop = cfg.proj_drop_rate;
      o.attn_drop = cfg.attn_drop_rate;
      o.drop_path = cfg.depth > 1 ? cfg.drop_path_rate * static_cast<double>(i) / static_cast<double>(cfg.depth - 1)
                                  : cfg.drop_path_rate;
      o.norm_eps = cfg.norm_eps;
      o.init_values = cfg.init_values;
      blocks.push_back(seq->push_back(std::make_shared<Block>(D, cfg.num_heads, gen, noise_, o)));
    }
    norm = register_module("norm", std::make_shared<LayerNorm>(D, cfg.norm_eps));
    head_drop_ = register_module("head_drop", std::make_shared<Dropout>(cfg.drop_rate, noise_));
    if (cfg.num_classes > 0)
      head = register_module("head", std::make_shared<Linear>(pooled_dim(), cfg.num_classes, gen));

    patch_embed->proj->reset_parameters(gen);  // timm keeps nn.Conv2d's default for the patch projection
    trunc_normal_(pos_embed.mutable_value(), 0.0, 0.02, -2.0, 2.0, gen);
    if (cfg.class_token) normal_(cls_token.mutable_value(), 0.0, 1e-6, gen);
    for_each_module(*this, [&](Module& m) {
      if (auto* l = dynamic_cast<Linear*>(&m)) {
        trunc_normal_(l->weight.mutable_value(), 0.0, 0.02, -2.0, 2.0, gen);
        if (l->bias.defined()) l->bias.mutable_value().fill_(0.0);
      }
    });
  }

  std::string arch() const override {
    std::string size = cfg_.embed_dim == 192 && cfg_.num_heads == 3    ? "tiny"
                       : cfg_.embed_dim == 384 && cfg_.num_heads == 6  ? "small"
                       : cfg_.embed_dim == 768 && cfg_.num_heads == 12 ? "base"
                                                                        : "custom";
    if (cfg_.depth != 12) size = "custom";
    const std::string variant = cfg_.variant.empty() ? "" : "_" + cfg_.variant;
    return "vit_" + size + "_patch" + std::to_string(cfg_.patch_size) + variant + "_" + std::to_string(cfg_.img_size);
  }
  // Features the head reads: D, or 2·D for CLS ⊕ mean patch token.
  int64_t pooled_dim() const { return cfg_.pool_token_and_avg ? 2 * cfg_.embed_dim : cfg_.embed_dim; }
  // The grid the position embedding is stored for.
  int64_t pos_embed_grid() const { return grid_; }
  int64_t num_classes() const override { return cfg_.num_classes > 0 ? cfg_.num_classes : pooled_dim(); }
  int64_t in_chans() const override { return cfg_.in_chans; }
  int64_t default_img_size() const override { return cfg_.img_size; }
  const ViTConfig& config() const { return cfg_; }
  int64_t num_prefix_tokens() const { return cfg_.class_token ? 1 : 0; }
  // The patch grid (gh, gw) of an h × w image; tokens = num_prefix_tokens() + gh·gw.
  std::pair<int64_t, int64_t> grid(int64_t img_h, int64_t img_w) const { return patch_embed->grid(img_h, img_w); }

  Var forward_features(const Var& x) override {
    return forward_tokens(x, nullptr, static_cast<int64_t>(blocks.size()), true);
  }
  Var forward_head(const Var& tokens) override {
    Var pooled = pool(tokens);
    return head ? head->forward(head_drop_->forward(pooled)) : pooled;
  }

  ModelOutput forward_with_taps(const Var& x, const std::vector<std::string>& taps, bool need_logits = true) override {
    check_taps(taps);
    TapCollector c(taps);
    ModelOutput out;
    // The last block a tap needs, so a taps-only forward can stop there.
    int64_t last_block = static_cast<int64_t>(blocks.size());
    bool need_norm = need_logits;
    if (!need_logits) {
      last_block = 0;
      for (const auto& t : taps) {
        if (t == "norm" || t == "pre_logits") {
          need_norm = true;
          last_block = static_cast<int64_t>(blocks.size());
        } else if (t.compare(0, 7, "blocks.") == 0) {
          last_block = std::max<int64_t>(last_block, std::stoll(t.substr(7)) + 1);
        }
      }
    }
    Var tokens = forward_tokens(x, &c, last_block, need_norm);
    if (need_norm) {
      Var pooled = pool(tokens);
      c.offer("pre_logits", pooled);
      if (need_logits) out.logits = head ? head->forward(head_drop_->forward(pooled)) : pooled;
    }
    out.taps = c.take();
    return out;
  }

  std::vector<TapInfo> tap_names(int64_t img_h, int64_t img_w, int64_t batch = 1) const override {
    std::vector<TapInfo> taps;
    walk(img_h, img_w, batch, nullptr, &taps);
    return taps;
  }
  ShapeTrace trace(int64_t img_h, int64_t img_w, int64_t batch = 1) const override {
    ShapeTrace t;
    walk(img_h, img_w, batch, &t, nullptr);
    return t;
  }

  // The forward in pieces, for training the top of a partly frozen ViT from cached tokens:
  //   forward_features(x) == norm->forward(run_blocks(embed_tokens(x), 0, depth))
  // embed_tokens: patch embedding, CLS token, position embedding (resampled to the grid) and token dropout.
  Var embed_tokens(const Var& x) {
    RETIKD_CHECK(x.dim() == 4 && x.size(1) == cfg_.in_chans, arch(), ": input ", shape_str(x.shape()),
                 " must be (B, ", cfg_.in_chans, ", H, W)");
    const int64_t B = x.size(0);
    const auto g = grid(x.size(2), x.size(3));
    RETIKD_CHECK(g.first > 0 && g.second > 0, arch(), ": input ", shape_str(x.shape()), " is smaller than a ",
                 cfg_.patch_size, "-pixel patch");
    Var t = patch_embed->forward(x);  // (B, N, D)
    if (cfg_.class_token) t = ops::concat({ops::expand(cls_token, {B, 1, cfg_.embed_dim}), t}, 1);  // (B, T, D)
    return pos_drop_->forward(ops::add(t, position_embedding(g.first, g.second)));
  }
  // Blocks [from, to) applied to tokens (B, T, D).
  Var run_blocks(const Var& tokens, int64_t from, int64_t to) {
    RETIKD_CHECK(0 <= from && from <= to && to <= static_cast<int64_t>(blocks.size()), arch(), ": blocks [", from,
                 ", ", to, ") outside the ", blocks.size(), " blocks");
    Var t = tokens;
    for (int64_t i = from; i < to; ++i) t = blocks[static_cast<std::size_t>(i)]->forward(t);
    return t;
  }

  // Patch tokens (B, T, D) of a gh × gw grid as a feature map (B, D, gh, gw), prefix (CLS) tokens dropped —
  // the layout a CNN student's features have (e.g. to resize 14×14 teacher tokens to a 7×7 student grid).
  Var tokens_to_map(const Var& tokens, int64_t gh, int64_t gw) const {
    const int64_t P = num_prefix_tokens();
    RETIKD_CHECK(tokens.dim() == 3 && tokens.size(1) == P + gh * gw, arch(), ": tokens ", shape_str(tokens.shape()),
                 " do not hold ", P, " prefix + ", gh, "x", gw, " patch tokens");
    const int64_t B = tokens.size(0), D = tokens.size(2);
    Var patches = ops::narrow(tokens, 1, P, gh * gw);                              // (B, gh·gw, D)
    return ops::permute(ops::reshape(patches, {B, gh, gw, D}), {0, 3, 1, 2});       // (B, D, gh, gw)
  }

  // The position embedding for a gh × gw grid: as stored when the grid is the stored one, else its grid part
  // resized bilinearly or bicubically (ViTConfig::pos_embed_bicubic; differentiable).
  Var position_embedding(int64_t gh, int64_t gw) const {
    if (gh == grid_ && gw == grid_) return pos_embed;
    const int64_t D = cfg_.embed_dim, P = num_prefix_tokens();
    Var grid_part = ops::narrow(pos_embed, 1, P, grid_ * grid_);                                  // (1, g·g, D)
    Var img = ops::permute(ops::reshape(grid_part, {1, grid_, grid_, D}), {0, 3, 1, 2});         // (1, D, g, g)
    Var resized = cfg_.pos_embed_bicubic ? ops::interpolate_bicubic(img, gh, gw)                   // (1, D, gh, gw)
                                         : ops::interpolate_bilinear(img, gh, gw, false);
    Var back = ops::reshape(ops::permute(resized, {0, 2, 3, 1}), {1, gh * gw, D});                // (1, gh·gw, D)
    if (P == 0) return back;
    return ops::concat({ops::narrow(pos_embed, 1, 0, P), back}, 1);                                // (1, T, D)
  }

 private:
  // Tokens after `n_blocks` blocks, then the final norm when `final_norm`; offers taps on the way.
  Var forward_tokens(const Var& x, TapCollector* c, int64_t n_blocks, bool final_norm) {
    RETIKD_CHECK(x.dim() == 4 && x.size(1) == cfg_.in_chans, arch(), ": input ", shape_str(x.shape()),
                 " must be (B, ", cfg_.in_chans, ", H, W)");
    const int64_t B = x.size(0);
    const auto g = grid(x.size(2), x.size(3));
    RETIKD_CHECK(g.first > 0 && g.second > 0, arch(), ": input ", shape_str(x.shape()), " is smaller than a ",
                 cfg_.patch_size, "-pixel patch");
    Var t;
    if (c && c->wants("patch_embed")) {
      t = patch_embed->forward(x);  // (B, N, D)
      c->offer("patch_embed", t);
      if (cfg_.class_token) t = ops::concat({ops::expand(cls_token, {B, 1, cfg_.embed_dim}), t}, 1);  // (B, T, D)
      t = pos_drop_->forward(ops::add(t, position_embedding(g.first, g.second)));
    } else {
      t = embed_tokens(x);
    }
    for (int64_t i = 0; i < n_blocks; ++i) {
      const std::string name = "blocks." + std::to_string(i);
      AttentionTaps want;
      if (c) {
        want.q = c->wants(name + ".attn.q");
        want.k = c->wants(name + ".attn.k");
        want.v = c->wants(name + ".attn.v");
        want.logits = c->wants(name + ".attn.logits");
        want.probs = c->wants(name + ".attn.probs");
      }
      AttentionOutput a;
      t = blocks[static_cast<std::size_t>(i)]->forward_with(t, want, want.any() ? &a : nullptr);
      if (c) {
        c->offer(name, t);
        if (c->wants(name + ".norm")) c->offer(name + ".norm", norm->forward(t));
        if (want.q) c->offer(name + ".attn.q", a.q);
        if (want.k) c->offer(name + ".attn.k", a.k);
        if (want.v) c->offer(name + ".attn.v", a.v);
        if (want.logits) c->offer(name + ".attn.logits", a.logits);
        if (want.probs) c->offer(name + ".attn.probs", a.probs);
      }
    }
    if (!final_norm) return t;
    t = norm->forward(t);
    if (c) c->offer("norm", t);
    return t;
  }

  Var pool(const Var& tokens) const {
    const int64_t P = num_prefix_tokens();
    if (cfg_.pool_token_and_avg)                                                        // (B, 2D): CLS ⊕ mean
      return ops::concat({ops::squeeze(ops::narrow(tokens, 1, 0, 1), 1),
                          ops::mean(ops::narrow(tokens, 1, P, tokens.size(1) - P), {1})}, 1);
    if (!cfg_.global_pool_avg) return ops::squeeze(ops::narrow(tokens, 1, 0, 1), 1);  // (B, D): the CLS token
    return ops::mean(ops::narrow(tokens, 1, P, tokens.size(1) - P), {1});             // (B, D)
  }

  void walk(int64_t img_h, int64_t img_w, int64_t batch, ShapeTrace* t, std::vector<TapInfo>* taps) const {
    const Shape tokens_in = patch_embed->infer_shape({batch, cfg_.in_chans, img_h, img_w}, t);  // (B, N, D)
    RETIKD_CHECK(tokens_in[1] > 0, arch(), ": a ", img_h, "x", img_w, " image is smaller than a patch");
    const int64_t B = batch, D = cfg_.embed_dim, H = cfg_.num_heads, d = D / H;
    const int64_t T = tokens_in[1] + num_prefix_tokens();
    const Shape tok{B, T, D};
    if (taps) taps->push_back({"patch_embed", tokens_in, "patch tokens before the CLS token and position embedding"});
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      blocks[i]->infer_shape(tok, t);
      if (!taps) continue;
      const std::string n = "blocks." + std::to_string(i);
      taps->push_back({n, tok, "tokens after block " + std::to_string(i) + " (before the final norm)"});
      taps->push_back({n + ".norm", tok, "tokens after block " + std::to_string(i) + ", final norm applied"});
      taps->push_back({n + ".attn.q", {B, H, T, d}, "per-head queries"});
      taps->push_back({n + ".attn.k", {B, H, T, d}, "per-head keys"});
      taps->push_back({n + ".attn.v", {B, H, T, d}, "per-head values"});
      taps->push_back({n + ".attn.logits", {B, H, T, T}, "pre-softmax attention q·kᵀ/√d"});
      taps->push_back({n + ".attn.probs", {B, H, T, T}, "attention probabilities (rows sum to 1)"});
    }
    if (head) head->infer_shape({B, pooled_dim()}, t);
    if (!taps) return;
    taps->push_back({"norm", tok, "= forward_features (tokens after the final norm)"});
    taps->push_back({"pre_logits", {B, pooled_dim()}, cfg_.pool_token_and_avg ? "CLS token and mean patch token after the norm"
                                                      : cfg_.global_pool_avg ? "mean patch token after the norm"
                                                                             : "CLS token after the norm"});
  }

  ViTConfig cfg_;
  int64_t grid_ = 0;
  std::shared_ptr<Dropout> pos_drop_, head_drop_;
};

}  // namespace nn
}  // namespace retikd
