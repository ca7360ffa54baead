// retikd/nn/transformer.hpp — the Vision Transformer's parts with timm's names: PatchEmbed (`proj`),
// multi-head self-attention (`qkv`, `proj`), Mlp (`fc1`, `fc2`), LayerScale (`gamma`, DINOv2 / CaiT) and the
// pre-norm Block (`norm1`, `attn`, `ls1`, `norm2`, `mlp`, `ls2`; the ls* only with LayerScale).
//
// Attention can hand out what the distillation losses read (DESIGN.md §5): the per-head Q, K, V
// (B, heads, N, d), the pre-softmax logits Q·Kᵀ·d^−½ and the probabilities softmax(logits), both
// (B, heads, N, N), before attention dropout. They are Vars on the tape (views of the qkv projection for
// Q, K, V), so a loss on a student's attention backpropagates; a teacher runs under NoGradGuard. Without taps
// (and without attention dropout) a CPU forward takes the fused ops::qkv_attention instead: same values,
// a fraction of the time.
// Initialisation here is PyTorch's default; VisionTransformer applies timm's (trunc_normal std 0.02).
#pragma once

#include <cmath>
#include <memory>
#include <utility>

#include "retikd/nn/layers.hpp"
#include "retikd/ops/attention.hpp"
#include "retikd/ops/softmax.hpp"

namespace retikd {
namespace nn {

// Image → patch tokens: proj = Conv2d(in, D, kernel = stride = patch), then (B, D, gh, gw) → (B, gh·gw, D).
// Any image size works (a remainder smaller than a patch is dropped, as the convolution does).
class PatchEmbed : public Layer, public Traceable {
 public:
  std::shared_ptr<Conv2d> proj;

  PatchEmbed(int64_t patch_size, int64_t in_chans, int64_t embed_dim, Generator& gen) : patch_(patch_size) {
    RETIKD_CHECK(patch_size > 0, "PatchEmbed: patch size must be positive, got ", patch_size);
    proj = register_module("proj", std::make_shared<Conv2d>(in_chans, embed_dim, patch_size, gen,
                                                            ops::Conv2dOptions().with_stride(patch_size)));
  }
  Var forward(const Var& x) override {
    Var y = proj->forward(x);                       // (B, D, gh, gw)
    return ops::transpose(ops::flatten(y, 2), 1, 2);  // (B, gh·gw, D)
  }
  Shape infer_shape(const Shape& in, ShapeTrace* t) const override {
    const Shape y = proj->infer_shape(in, t);
    return {y[0], y[2] * y[3], y[1]};
  }
  int64_t patch_size() const { return patch_; }
  // The token grid (gh, gw) for an h × w image.
  std::pair<int64_t, int64_t> grid(int64_t h, int64_t w) const { return {h / patch_, w / patch_}; }

 private:
  int64_t patch_;
};

// Which internals of an attention layer to hand out.
struct AttentionTaps {
  bool q = false, k = false, v = false, logits = false, probs = false;
  bool any() const { return q || k || v || logits || probs; }
};

// The output (B, N, D) and, where asked, the internals (undefined otherwise).
struct AttentionOutput {
  Var out;
  Var q, k, v;     // (B, heads, N, d)
  Var logits;      // (B, heads, N, N): q · kᵀ · d^−½
  Var probs;       // (B, heads, N, N): softmax over the last dim, before attention dropout
};

// timm's Attention: qkv = Linear(D, 3D), heads of d = D / heads, softmax(q·kᵀ·d^−½)·v, proj = Linear(D, D).
class Attention : public Layer, public Traceable {
 public:
  std::shared_ptr<Linear> qkv, proj;

  Attention(int64_t dim, int64_t num_heads, Generator& gen, NoiseSource noise = nullptr, bool qkv_bias = true,
            double attn_drop = 0.0, double proj_drop = 0.0)
      : dim_(dim), heads_(num_heads) {
    RETIKD_CHECK(num_heads > 0 && dim > 0 && dim % num_heads == 0, "Attention: dim ", dim,
                 " must be a positive multiple of num_heads ", num_heads);
    if (!noise) noise = make_noise();
    head_dim_ = dim / num_heads;
    scale_ = 1.0 / std::sqrt(static_cast<double>(head_dim_));
    qkv = register_module("qkv", std::make_shared<Linear>(dim, 3 * dim, gen, qkv_bias));
    attn_drop_ = register_module("attn_drop", std::make_shared<Dropout>(attn_drop, noise));
    proj = register_module("proj", std::make_shared<Linear>(dim, dim, gen));
    proj_drop_ = register_module("proj_drop", std::make_shared<Dropout>(proj_drop, noise));
  }

  Var forward(const Var& x) override { return forward_with(x, AttentionTaps{}).out; }

  AttentionOutput forward_with(const Var& x, const AttentionTaps& want) {
    RETIKD_CHECK(x.dim() == 3 && x.size(2) == dim_, "Attention(", dim_, "): input ", shape_str(x.shape()),
                 " must be (B, N, ", dim_, ")");
    const int64_t B = x.size(0), N = x.size(1);
    const bool attn_dropout = attn_drop_->is_training() && attn_drop_->p() > 0.0;
    if (!want.any() && !attn_dropout && x.value().is_cpu()) {
      // No internals asked for: the fused CPU op (ops/attention.hpp) reads q, k, v out of the qkv rows and
      // writes (B, N, D) directly — same values, no view copies, one parallel region per direction.
      AttentionOutput r;
      r.out = proj_drop_->forward(proj->forward(ops::qkv_attention(qkv->forward(x), heads_, scale_)));
      return r;
    }
    Var qkv5 = ops::reshape(qkv->forward(x), {B, N, 3, heads_, head_dim_});  // (B, N, 3, H, d)
    Var parts = ops::permute(qkv5, {2, 0, 3, 1, 4});                         // (3, B, H, N, d)
    Var q = ops::squeeze(ops::narrow(parts, 0, 0, 1), 0);                   // (B, H, N, d)
    Var k = ops::squeeze(ops::narrow(parts, 0, 1, 1), 0);                   // (B, H, N, d)
    Var v = ops::squeeze(ops::narrow(parts, 0, 2, 1), 0);                   // (B, H, N, d)
    // Scaling q before the product (as timm does) costs N·d multiplies instead of N·N.
    Var logits = ops::matmul(ops::mul(q, scale_), ops::transpose(k, -2, -1));  // (B, H, N, N)
    Var probs = ops::softmax(logits, -1);                                       // (B, H, N, N)
    Var o = ops::matmul(attn_drop_->forward(probs), v);                         // (B, H, N, d)
    o = ops::reshape(ops::transpose(o, 1, 2), {B, N, dim_});                    // (B, N, D)
    AttentionOutput r;
    r.out = proj_drop_->forward(proj->forward(o));
    if (want.q) r.q = q;
    if (want.k) r.k = k;
    if (want.v) r.v = v;
    if (want.logits) r.logits = logits;
    if (want.probs) r.probs = probs;
    return r;
  }

  Shape infer_shape(const Shape& in, ShapeTrace* t) const override {
    RETIKD_CHECK(in.size() == 3 && in[2] == dim_, "Attention(", dim_, "): input ", shape_str(in),
                 " must be (B, N, ", dim_, ")");
    qkv->infer_shape(in, t);
    if (t) t->add("attention", 2.0 * static_cast<double>(in[0] * heads_) * static_cast<double>(in[1]) *
                                   static_cast<double>(in[1]) * static_cast<double>(head_dim_));
    return proj->infer_shape(in, t);
  }

  int64_t dim() const { return dim_; }
  int64_t num_heads() const { return heads_; }
  int64_t head_dim() const { return head_dim_; }
  double scale() const { return scale_; }

 private:
  int64_t dim_, heads_, head_dim_;
  double scale_;
  std::shared_ptr<Dropout> attn_drop_, proj_drop_;
};

// timm's Mlp: fc1 → act (GELU) → drop1 → fc2 → drop2.
class Mlp : public Layer, public Traceable {
 public:
  std::shared_ptr<Linear> fc1, fc2;

  Mlp(int64_t in_features, int64_t hidden_features, int64_t out_features, Generator& gen, NoiseSource noise = nullptr,
      Activation act = Activation::gelu, double drop = 0.0) {
    if (!noise) noise = make_noise();
    fc1 = register_module("fc1", std::make_shared<Linear>(in_features, hidden_features, gen));
    act_ = register_module("act", std::make_shared<ActivationLayer>(act));
    drop1_ = register_module("drop1", std::make_shared<Dropout>(drop, noise));
    fc2 = register_module("fc2", std::make_shared<Linear>(hidden_features, out_features, gen));
    drop2_ = register_module("drop2", std::make_shared<Dropout>(drop, noise));
  }
  Var forward(const Var& x) override {
    // fc1 + exact GELU as one op: on the CPU the GELU runs on each GEMM tile while it is in cache, saving a
    // pass over the (tokens × 4·D) hidden activations (ops::linear_gelu; the two ops' values up to rounding).
    const Var hidden = act_->kind() == Activation::gelu ? ops::linear_gelu(x, fc1->weight, fc1->bias)
                                                        : act_->forward(fc1->forward(x));
    return drop2_->forward(fc2->forward(drop1_->forward(hidden)));
  }
  Shape infer_shape(const Shape& in, ShapeTrace* t) const override {
    return fc2->infer_shape(fc1->infer_shape(in, t), t);
  }

 private:
  std::shared_ptr<ActivationLayer> act_;
  std::shared_ptr<Dropout> drop1_, drop2_;
};

// timm's LayerScale: x · γ per channel, γ (dim) initialised to init_values (DINOv2 trains with 1e-5). It lets a
// deep ViT start close to the identity; pretrained DINOv2 weights carry the learned γ of each block.
class LayerScale : public Layer, public Traceable {
 public:
  Var gamma;  // (dim)

  LayerScale(int64_t dim, double init_values) {
    RETIKD_CHECK(dim > 0, "LayerScale: dim must be positive, got ", dim);
    gamma = register_parameter("gamma", Tensor::full({dim}, init_values));
  }
  Var forward(const Var& x) override { return ops::mul(x, gamma); }  // (..., dim) · (dim)
  Shape infer_shape(const Shape& in, ShapeTrace*) const override {
    RETIKD_CHECK(!in.empty() && in.back() == gamma.size(0), "LayerScale(", gamma.size(0), "): input ", shape_str(in),
                 " must end in ", gamma.size(0));
    return in;
  }
};

struct BlockOptions {
  double mlp_ratio = 4.0;
  bool qkv_bias = true;
  double proj_drop = 0.0;  // dropout after attention proj and in the Mlp
  double attn_drop = 0.0;  // dropout on the attention probabilities
  double drop_path = 0.0;  // stochastic depth of both residual branches
  double norm_eps = 1e-6;  // timm's ViT LayerNorm
  double init_values = 0.0;  // > 0: LayerScale on both residual branches, γ initialised to this
};

// Pre-norm transformer block: x + drop_path(ls1(attn(norm1(x)))), then x + drop_path(ls2(mlp(norm2(x)))); ls1 and
// ls2 are LayerScale when BlockOptions::init_values > 0 and absent otherwise.
class Block : public Layer, public Traceable {
 public:
  std::shared_ptr<LayerNorm> norm1, norm2;
  std::shared_ptr<Attention> attn;
  std::shared_ptr<Mlp> mlp;
  std::shared_ptr<LayerScale> ls1, ls2;  // null without LayerScale

  Block(int64_t dim, int64_t num_heads, Generator& gen, NoiseSource noise = nullptr, const BlockOptions& o = {}) {
    if (!noise) noise = make_noise();
    RETIKD_CHECK(o.mlp_ratio > 0, "Block: mlp_ratio must be positive, got ", o.mlp_ratio);
    norm1 = register_module("norm1", std::make_shared<LayerNorm>(dim, o.norm_eps));
    attn = register_module("attn", std::make_shared<Attention>(dim, num_heads, gen, noise, o.qkv_bias, o.attn_drop,
                                                               o.proj_drop));
    RETIKD_CHECK(o.init_values >= 0, "Block: init_values must be >= 0, got ", o.init_values);
    if (o.init_values > 0) ls1 = register_module("ls1", std::make_shared<LayerScale>(dim, o.init_values));
    drop_path1_ = register_module("drop_path1", std::make_shared<DropPath>(o.drop_path, noise));
    norm2 = register_module("norm2", std::make_shared<LayerNorm>(dim, o.norm_eps));
    const int64_t hidden = static_cast<int64_t>(static_cast<double>(dim) * o.mlp_ratio);
    mlp = register_module("mlp", std::make_shared<Mlp>(dim, hidden, dim, gen, noise, Activation::gelu, o.proj_drop));
    if (o.init_values > 0) ls2 = register_module("ls2", std::make_shared<LayerScale>(dim, o.init_values));
    drop_path2_ = register_module("drop_path2", std::make_shared<DropPath>(o.drop_path, noise));
  }

  Var forward(const Var& x) override { return forward_with(x, AttentionTaps{}, nullptr); }

  // The block's output; the attention internals asked for in `want` land in *attn_out (when non-null).
  Var forward_with(const Var& x, const AttentionTaps& want, AttentionOutput* attn_out) {
    AttentionOutput a = attn->forward_with(norm1->forward(x), want);
    Var branch = ls1 ? ls1->forward(a.out) : a.out;
    Var y = ops::add(x, drop_path1_->forward(branch));
    branch = mlp->forward(norm2->forward(y));
    if (ls2) branch = ls2->forward(branch);
    y = ops::add(y, drop_path2_->forward(branch));
    if (attn_out) *attn_out = std::move(a);
    return y;
  }

  Shape infer_shape(const Shape& in, ShapeTrace* t) const override {
    norm1->infer_shape(in, t);
    return mlp->infer_shape(attn->infer_shape(in, t), t);
  }

 private:
  std::shared_ptr<DropPath> drop_path1_, drop_path2_;
};

}  // namespace nn
}  // namespace retikd
