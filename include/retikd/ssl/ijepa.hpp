// retikd/ssl/ijepa.hpp — I-JEPA (Assran et al., CVPR 2023): self-supervised pretraining of the ViT teacher
// by predicting, in latent space, the features of masked image blocks from a context block.
//
//   context encoder  our nn::VisionTransformer, run on the context patches only: patch embedding and position
//                    embedding of the whole grid, then the context tokens are gathered (the CLS token, when
//                    the ViT has one, is kept in front), then the blocks and the final norm. Target patches
//                    never enter it, so nothing of them can leak into the prediction.
//   target encoder   the same architecture, an exponential moving average of the context encoder
//                    (θ̄ ← m·θ̄ + (1 − m)·θ, m from 0.996 to 1.0 linearly over training), run on the whole
//                    image without a tape; its patch tokens, layer-normalised once more without affine
//                    parameters (as the reference does), are the regression targets.
//   predictor        a narrow ViT: context tokens projected to the predictor width plus their position
//                    embedding, one mask token per target patch plus that patch's position embedding,
//                    transformer blocks, a norm, and a projection back to the encoder width; it is run once
//                    per target block (the blocks are stacked along the batch).
//   loss             smooth-L1 (the reference's) or L2 between prediction and target, averaged over every
//                    target patch and feature.
// Schedules (IJepaSchedule): EMA momentum linear 0.996 → 1.0, weight decay cosine 0.04 → 0.4; the learning
// rate uses optim::WarmupCosineSchedule (linear warm-up, cosine decay).
//
// The encoder's position embedding is, by default, set to the fixed 2-D sin-cos embedding and frozen (as in
// the reference); the encoder is saved with timm names, so examples/distill_retina --teacher-init loads it.
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/core/error.hpp"
#include "retikd/core/random.hpp"
#include "retikd/core/tensor.hpp"
#include "retikd/nn/layers.hpp"
#include "retikd/nn/models/vit.hpp"
#include "retikd/nn/transformer.hpp"
#include "retikd/ops/elementwise.hpp"
#include "retikd/ops/norm.hpp"
#include "retikd/ops/reduce.hpp"
#include "retikd/ops/shape.hpp"
#include "retikd/optim/optim.hpp"
#include "retikd/ssl/masking.hpp"

namespace retikd {
namespace ssl {

// ---- position embedding -------------------------------------------------------------------------------------

// Fixed 2-D sin-cos position embedding (gh·gw, dim), row-major over the grid: the first half of the features
// encodes the row, the second half the column, each as dim/4 sines and dim/4 cosines of the coordinate at
// frequencies 10000^(−k/(dim/4)). dim must be a multiple of 4.
inline Tensor sincos_pos_embed_2d(int64_t gh, int64_t gw, int64_t dim) {
  RETIKD_CHECK(gh > 0 && gw > 0 && dim > 0 && dim % 4 == 0, "sincos_pos_embed_2d: grid ", gh, "x", gw,
               " and dim ", dim, " (a positive multiple of 4) required");
  const int64_t q = dim / 4;
  Tensor out = Tensor::empty({gh * gw, dim}, DType::float32);
  float* p = out.data<float>();
  for (int64_t r = 0; r < gh; ++r)
    for (int64_t c = 0; c < gw; ++c) {
      float* row = p + (r * gw + c) * dim;
      for (int64_t k = 0; k < q; ++k) {
        const double freq = 1.0 / std::pow(10000.0, static_cast<double>(k) / static_cast<double>(q));
        row[k] = static_cast<float>(std::sin(static_cast<double>(r) * freq));
        row[q + k] = static_cast<float>(std::cos(static_cast<double>(r) * freq));
        row[2 * q + k] = static_cast<float>(std::sin(static_cast<double>(c) * freq));
        row[3 * q + k] = static_cast<float>(std::cos(static_cast<double>(c) * freq));
      }
    }
  return out;
}

// Writes the sin-cos embedding into a ViT's pos_embed (patch part; the CLS part is zeroed) and, with
// `freeze`, stops its gradient (the reference keeps it fixed).
inline void use_sincos_position_embedding(nn::VisionTransformer& vit, bool freeze) {
  const nn::ViTConfig& c = vit.config();
  const int64_t g = c.img_size / c.patch_size, P = vit.num_prefix_tokens(), D = c.embed_dim;
  Tensor& pe = vit.pos_embed.mutable_value();  // (1, P + g·g, D)
  RETIKD_CHECK(pe.dtype() == DType::float32 || pe.dtype() == DType::float64,
               "use_sincos_position_embedding: pos_embed is ", pe.describe());
  const std::vector<float> s = sincos_pos_embed_2d(g, g, D).to_vector<float>();
  std::vector<double> v(static_cast<std::size_t>(P * D), 0.0);
  v.insert(v.end(), s.begin(), s.end());
  pe.copy_(Tensor::from_vector<double>(v, pe.shape()).to(pe.dtype()));
  if (freeze) vit.pos_embed.set_requires_grad(false);
}

// The ViT's state dict (timm names) for use at `img_size` px: pos_embed resampled (bilinear, as the ViT
// itself does for another input size) to that image's patch grid, everything else unchanged — what a teacher
// configured for `img_size` loads (examples/pretrain_ijepa --export-img).
inline std::vector<std::pair<std::string, Tensor>> encoder_state_dict_at(nn::VisionTransformer& vit, int64_t img_size) {
  const int64_t p = vit.config().patch_size;
  RETIKD_CHECK(img_size >= p && img_size % p == 0, "encoder_state_dict_at: image size ", img_size,
               " must be a positive multiple of the patch size ", p);
  const int64_t g = img_size / p;
  Tensor pe;
  {
    NoGradGuard no_grad;
    pe = vit.position_embedding(g, g).value().contiguous().clone();
  }
  std::vector<std::pair<std::string, Tensor>> sd = vit.state_dict();
  for (auto& kv : sd)
    if (kv.first == "pos_embed") kv.second = pe;
  return sd;
}

// ---- token gathering ----------------------------------------------------------------------------------------

// tokens (B, N, D) and index (R, K) with R a multiple of B, row r naming patches of image r mod B →
// (R, K, D). Differentiable (index_select; repeated rows add their gradients up).
inline Var gather_patches(const Var& tokens, const Tensor& index) {
  RETIKD_CHECK(tokens.dim() == 3, "gather_patches: tokens ", shape_str(tokens.shape()), " must be (B, N, D)");
  RETIKD_CHECK(index.dim() == 2 && index.dtype() == DType::int64, "gather_patches: index ", index.describe(),
               " must be (R, K) int64");
  const int64_t B = tokens.size(0), N = tokens.size(1), D = tokens.size(2);
  const int64_t R = index.size(0), K = index.size(1);
  RETIKD_CHECK(R % B == 0, "gather_patches: ", R, " index rows are not a multiple of the batch ", B);
  const Tensor idx = index.contiguous();
  const int64_t* pi = idx.data<int64_t>();
  std::vector<int64_t> flat(static_cast<std::size_t>(R * K));
  for (int64_t r = 0; r < R; ++r)
    for (int64_t k = 0; k < K; ++k) {
      const int64_t n = pi[r * K + k];
      RETIKD_CHECK(n >= 0 && n < N, "gather_patches: patch index ", n, " (row ", r, ") out of range for ", N,
                   " patches");
      flat[static_cast<std::size_t>(r * K + k)] = (r % B) * N + n;
    }
  Var rows = ops::index_select(ops::reshape(tokens, {B * N, D}), 0,
                               Tensor::from_vector<int64_t>(flat, {R * K}));  // (R·K, D)
  return ops::reshape(rows, {R, K, D});                                        // (R, K, D)
}

// ---- encoders -----------------------------------------------------------------------------------------------

// The ViT on a subset of patches: tokens (B, K, D) of the patches `keep` (B, K) after the blocks and the
// final norm (prefix tokens removed). Patch and position embedding are those of the full grid, so a kept
// patch's token does not depend on any pixel outside that patch before the blocks.
inline Var encode_patches(nn::VisionTransformer& vit, const Var& images, const Tensor& keep) {
  const nn::ViTConfig& c = vit.config();
  RETIKD_CHECK(c.drop_rate == 0.0, "encode_patches: the ViT's drop_rate (position dropout) must be 0 for I-JEPA, got ",
               c.drop_rate);
  RETIKD_CHECK(images.dim() == 4 && images.size(1) == c.in_chans, "encode_patches: images ",
               shape_str(images.shape()), " must be (B, ", c.in_chans, ", H, W)");
  const int64_t B = images.size(0), D = c.embed_dim, P = vit.num_prefix_tokens();
  RETIKD_CHECK(keep.dim() == 2 && keep.size(0) == B && keep.size(1) >= 1, "encode_patches: keep ", keep.describe(),
               " must be (", B, ", K >= 1)");
  const auto g = vit.grid(images.size(2), images.size(3));
  const int64_t N = g.first * g.second;
  RETIKD_CHECK(N > 0, "encode_patches: images ", shape_str(images.shape()), " are smaller than a patch");
  Var pos = vit.position_embedding(g.first, g.second);                               // (1, P + N, D)
  Var x = ops::add(vit.patch_embed->forward(images), ops::narrow(pos, 1, P, N));     // (B, N, D)
  Var t = gather_patches(x, keep);                                                    // (B, K, D)
  if (P > 0) {
    Var cls = ops::add(vit.cls_token, ops::narrow(pos, 1, 0, P));                    // (1, P, D)
    t = ops::concat({ops::expand(cls, {B, P, D}), t}, 1);                            // (B, P + K, D)
  }
  for (auto& blk : vit.blocks) t = blk->forward(t);
  t = vit.norm->forward(t);
  return P > 0 ? ops::narrow(t, 1, P, t.size(1) - P) : t;                           // (B, K, D)
}

// The regression targets: the ViT's patch tokens of the whole image after its final norm, layer-normalised
// again without affine parameters, (B, N, D), computed without a tape.
inline Var target_features(nn::VisionTransformer& vit, const Var& images) {
  NoGradGuard no_grad;
  Var t = vit.forward_features(images);  // (B, P + N, D)
  const int64_t P = vit.num_prefix_tokens();
  Var patches = ops::narrow(t, 1, P, t.size(1) - P);
  return Var(ops::layer_norm(patches, {patches.size(2)}, Var(), Var(), 1e-5).value().contiguous());  // F.layer_norm's eps
}

// ---- predictor ----------------------------------------------------------------------------------------------

struct PredictorConfig {
  int64_t encoder_dim = 192;   // D of the encoder
  int64_t dim = 96;            // the predictor's width
  int64_t depth = 4;
  int64_t num_heads = 3;
  double mlp_ratio = 4.0;
  int64_t grid_h = 14, grid_w = 14;
  double norm_eps = 1e-6;
};

// Names follow the reference (predictor_embed, mask_token, predictor_pos_embed, predictor_blocks.{i},
// predictor_norm, predictor_proj).
class IJepaPredictor : public nn::Module {
 public:
  std::shared_ptr<nn::Linear> predictor_embed, predictor_proj;
  Var mask_token;  // (1, 1, dim)
  std::vector<std::shared_ptr<nn::Block>> blocks;
  std::shared_ptr<nn::LayerNorm> predictor_norm;

  IJepaPredictor(const PredictorConfig& c, Generator& gen) : c_(c) {
    RETIKD_CHECK(c.encoder_dim > 0 && c.dim > 0 && c.depth >= 1 && c.num_heads >= 1 && c.dim % c.num_heads == 0,
                 "IJepaPredictor: dim ", c.dim, " must be a positive multiple of num_heads ", c.num_heads,
                 ", depth ", c.depth, " >= 1, encoder_dim ", c.encoder_dim, " > 0");
    RETIKD_CHECK(c.dim % 4 == 0, "IJepaPredictor: dim ", c.dim, " must be a multiple of 4 (sin-cos position embedding)");
    RETIKD_CHECK(c.grid_h > 0 && c.grid_w > 0, "IJepaPredictor: grid ", c.grid_h, "x", c.grid_w, " must be positive");
    nn::DeferInit defer;
    predictor_embed = register_module("predictor_embed", std::make_shared<nn::Linear>(c.encoder_dim, c.dim, gen));
    mask_token = register_parameter("mask_token", Tensor::zeros({1, 1, c.dim}));
    pos_ = &register_buffer("predictor_pos_embed", sincos_pos_embed_2d(c.grid_h, c.grid_w, c.dim));
    auto seq = register_module("predictor_blocks", std::make_shared<nn::Sequential>());
    nn::BlockOptions o;
    o.mlp_ratio = c.mlp_ratio;
    o.norm_eps = c.norm_eps;
    for (int64_t i = 0; i < c.depth; ++i) blocks.push_back(seq->push_back(std::make_shared<nn::Block>(c.dim, c.num_heads, gen, nullptr, o)));
    predictor_norm = register_module("predictor_norm", std::make_shared<nn::LayerNorm>(c.dim, c.norm_eps));
    predictor_proj = register_module("predictor_proj", std::make_shared<nn::Linear>(c.dim, c.encoder_dim, gen));
    trunc_normal_(mask_token.mutable_value(), 0.0, 0.02, -2.0, 2.0, gen);
    nn::for_each_module(*this, [&](nn::Module& m) {
      if (auto* l = dynamic_cast<nn::Linear*>(&m)) {
        trunc_normal_(l->weight.mutable_value(), 0.0, 0.02, -2.0, 2.0, gen);
        if (l->bias.defined()) l->bias.mutable_value().fill_(0.0);
      }
    });
    // The reference scales each block's residual output projections by 1/√(2·layer) for a stable start.
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      const double s = 1.0 / std::sqrt(2.0 * static_cast<double>(i + 1));
      for (Var* w : {&blocks[i]->attn->proj->weight, &blocks[i]->mlp->fc2->weight})
        w->mutable_value().copy_(ops::mul(*w, s).value());
    }
  }

  const PredictorConfig& config() const { return c_; }

  // ctx (B, K, D) context tokens at patches ctx_index (B, K); target_index (M·B, T): target block m of image b
  // at row m·B + b. Returns the predicted target tokens (M·B, T, D).
  Var forward(const Var& ctx, const Tensor& ctx_index, const Tensor& target_index) {
    RETIKD_CHECK(ctx.dim() == 3 && ctx.size(2) == c_.encoder_dim, "IJepaPredictor: context ", shape_str(ctx.shape()),
                 " must be (B, K, ", c_.encoder_dim, ")");
    const int64_t B = ctx.size(0), K = ctx.size(1), Dp = c_.dim;
    RETIKD_CHECK(ctx_index.dim() == 2 && ctx_index.size(0) == B && ctx_index.size(1) == K,
                 "IJepaPredictor: context index ", ctx_index.describe(), " must be (", B, ", ", K, ")");
    RETIKD_CHECK(target_index.dim() == 2 && target_index.size(0) % B == 0 && target_index.size(0) > 0,
                 "IJepaPredictor: target index ", target_index.describe(), " must be (M·", B, ", T)");
    const int64_t R = target_index.size(0), M = R / B, T = target_index.size(1);
    // One row of position embeddings serves every image: gather_patches with a batch of 1.
    const Var pos(pos_->reshape({1, pos_->size(0), Dp}));                                            // (1, N, Dp)
    Var x = ops::add(predictor_embed->forward(ctx), gather_patches(pos, ctx_index));                // (B, K, Dp)
    if (M > 1) x = ops::concat(std::vector<Var>(static_cast<std::size_t>(M), x), 0);                // (R, K, Dp)
    Var masks = ops::add(ops::expand(mask_token, {R, T, Dp}), gather_patches(pos, target_index));   // (R, T, Dp)
    Var t = ops::concat({x, masks}, 1);  // (R, K + T, Dp)
    for (auto& blk : blocks) t = blk->forward(t);
    t = predictor_norm->forward(t);
    return predictor_proj->forward(ops::narrow(t, 1, K, T));  // (R, T, D)
  }

 private:
  PredictorConfig c_;
  Tensor* pos_ = nullptr;  // (N, Dp)
};

// ---- loss ---------------------------------------------------------------------------------------------------

enum class LatentLoss { smooth_l1, l2 };

inline LatentLoss parse_latent_loss(const std::string& s) {
  if (s == "smooth_l1") return LatentLoss::smooth_l1;
  if (s == "l2") return LatentLoss::l2;
  fail("unknown I-JEPA loss '", s, "' (smooth_l1, l2)");
}
inline const char* latent_loss_name(LatentLoss l) { return l == LatentLoss::l2 ? "l2" : "smooth_l1"; }

// Mean over every element of the element-wise loss between prediction and target (same shapes):
// l2: (p − t)²; smooth_l1 (β): 0.5·d²/β where |d| < β, else |d| − 0.5·β — written as q·(|d| − q/2)/β with
// q = min(|d|, β), which is both branches at once and has the right gradient on each side.
inline Var latent_loss(const Var& pred, const Var& target, LatentLoss kind, double beta = 1.0) {
  RETIKD_CHECK(pred.shape() == target.shape(), "latent_loss: prediction ", shape_str(pred.shape()),
               " and target ", shape_str(target.shape()), " differ");
  Var d = ops::sub(pred, target);
  if (kind == LatentLoss::l2) return ops::mean(ops::square(d));
  RETIKD_CHECK(beta > 0, "latent_loss: smooth-L1 beta must be positive, got ", beta);
  Var a = ops::abs(d);
  Var q = ops::clamp(a, 0.0, beta);
  return ops::mean(ops::div(ops::mul(q, ops::sub(a, ops::mul(q, 0.5))), beta));
}

// ---- EMA and schedules --------------------------------------------------------------------------------------

// target ← m·target + (1 − m)·source for every parameter (same names, same shapes); buffers are copied.
inline void ema_update(nn::Module& target, nn::Module& source, double m) {
  RETIKD_CHECK(m >= 0.0 && m <= 1.0, "ema_update: momentum ", m, " must be in [0, 1]");
  auto tp = target.named_parameters();
  auto sp = source.named_parameters();
  RETIKD_CHECK(tp.size() == sp.size(), "ema_update: ", tp.size(), " target parameters vs ", sp.size(), " source");
  for (std::size_t i = 0; i < tp.size(); ++i) {
    RETIKD_CHECK(tp[i].first == sp[i].first && tp[i].second.shape() == sp[i].second.shape(), "ema_update: parameter ",
                 i, " is ", tp[i].first, " ", shape_str(tp[i].second.shape()), " in the target but ", sp[i].first, " ",
                 shape_str(sp[i].second.shape()), " in the source");
    Tensor& t = tp[i].second.mutable_value();
    RETIKD_CHECK(t.is_contiguous(), "ema_update: target parameter ", tp[i].first, " is not contiguous");
    const Tensor s = sp[i].second.value().to(t.dtype()).contiguous();
    dispatch_floating(t.dtype(), "ema_update", [&](auto tag) {
      using T = typename decltype(tag)::type;
      T* pt = t.data<T>();
      const T* ps = s.data<T>();
      const T a = static_cast<T>(m), b = static_cast<T>(1.0 - m);
      for (int64_t k = 0; k < t.numel(); ++k) pt[k] = a * pt[k] + b * ps[k];
    });
  }
  std::map<std::string, Tensor> buffers;
  for (auto& b : source.named_buffers()) buffers[b.first] = *b.second;
  for (auto& b : target.named_buffers()) {
    auto it = buffers.find(b.first);
    RETIKD_CHECK(it != buffers.end(), "ema_update: buffer ", b.first, " missing in the source");
    b.second->copy_(it->second);
  }
}

// Per-step values of the I-JEPA schedules over `total_steps` optimizer steps (step 0 = the first).
struct IJepaSchedule {
  int64_t total_steps = 1;
  double ema_start = 0.996, ema_end = 1.0;
  double wd_start = 0.04, wd_end = 0.4;

  // Linear from ema_start (step 0) to ema_end (step total_steps).
  double momentum(int64_t step) const {
    const double p = std::min(1.0, std::max(0.0, static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, total_steps))));
    return ema_start + (ema_end - ema_start) * p;
  }
  // Cosine from wd_start (step 0) to wd_end (step total_steps).
  double weight_decay(int64_t step) const {
    const double p = std::min(1.0, std::max(0.0, static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, total_steps))));
    return wd_end + (wd_start - wd_end) * 0.5 * (1.0 + std::cos(3.14159265358979323846 * p));
  }
};

// ---- the model ----------------------------------------------------------------------------------------------

struct IJepaConfig {
  nn::ViTConfig encoder = nn::ViTConfig::tiny(0, 112, 8);  // 14×14 grid, no head
  int64_t predictor_dim = 96, predictor_depth = 4, predictor_heads = 3;
  MaskConfig masks;                 // grid filled in from the encoder
  LatentLoss loss = LatentLoss::smooth_l1;
  double smooth_l1_beta = 1.0;
  bool sincos_position = true;      // fixed 2-D sin-cos encoder position embedding (frozen)
};

class IJepa {
 public:
  std::shared_ptr<nn::VisionTransformer> context_encoder, target_encoder;
  std::shared_ptr<IJepaPredictor> predictor;

  IJepa(IJepaConfig cfg, Generator& gen) : cfg_(std::move(cfg)) {
    nn::ViTConfig& e = cfg_.encoder;
    RETIKD_CHECK(e.img_size % e.patch_size == 0, "IJepa: image size ", e.img_size, " is not a multiple of the patch ",
                 e.patch_size);
    cfg_.masks.grid_h = cfg_.masks.grid_w = e.img_size / e.patch_size;
    masker_ = std::make_shared<MultiBlockMasker>(cfg_.masks);  // checks the grid is large enough
    context_encoder = std::make_shared<nn::VisionTransformer>(e, gen);
    if (cfg_.sincos_position) use_sincos_position_embedding(*context_encoder, true);
    Generator unused(0);  // every target weight is overwritten by the copy below
    target_encoder = std::make_shared<nn::VisionTransformer>(e, unused);
    target_encoder->load_state_dict(context_encoder->state_dict());
    target_encoder->set_requires_grad(false);
    PredictorConfig p;
    p.encoder_dim = e.embed_dim;
    p.dim = cfg_.predictor_dim;
    p.depth = cfg_.predictor_depth;
    p.num_heads = cfg_.predictor_heads;
    p.grid_h = p.grid_w = cfg_.masks.grid_h;
    p.norm_eps = e.norm_eps;
    predictor = std::make_shared<IJepaPredictor>(p, gen);
  }

  const IJepaConfig& config() const { return cfg_; }
  const MultiBlockMasker& masker() const { return *masker_; }

  struct StepOutput {
    Var loss;        // scalar, on the tape through the context encoder and the predictor
    Var prediction;  // (M·B, T, D)
    Var target;      // (M·B, T, D), no tape
  };

  // One I-JEPA forward for a batch of images and its masks.
  StepOutput forward(const Var& images, const BatchMasks& masks) {
    RETIKD_CHECK(masks.batch() == images.size(0), "IJepa: ", masks.batch(), " masks for ", images.size(0), " images");
    const Tensor ctx_idx = masks.context_index(), tgt_idx = masks.target_index();
    StepOutput o;
    o.target = gather_patches(target_features(*target_encoder, images), tgt_idx);  // (M·B, T, D)
    Var z = encode_patches(*context_encoder, images, ctx_idx);                      // (B, K, D)
    o.prediction = predictor->forward(z, ctx_idx, tgt_idx);                         // (M·B, T, D)
    o.loss = latent_loss(o.prediction, o.target, cfg_.loss, cfg_.smooth_l1_beta);
    return o;
  }

  void update_target(double momentum) { ema_update(*target_encoder, *context_encoder, momentum); }

  // AdamW groups as in the reference: "decay" = weights of rank >= 2 that are not biases, "no_decay" = biases
  // and norm parameters. Frozen parameters (the sin-cos position embedding) are left out.
  std::vector<optim::ParamGroup> param_groups(double lr, double weight_decay) const {
    optim::ParamGroup decay{{}, lr, weight_decay, "decay"}, no_decay{{}, lr, 0.0, "no_decay"};
    auto add = [&](const nn::Module& m) {
      for (const auto& kv : m.named_parameters()) {
        if (!kv.second.requires_grad()) continue;
        const bool is_bias = kv.first.size() >= 4 && kv.first.compare(kv.first.size() - 4, 4, "bias") == 0;
        (kv.second.dim() >= 2 && !is_bias ? decay : no_decay).params.push_back(kv.second);
      }
    };
    add(*context_encoder);
    add(*predictor);
    return {decay, no_decay};
  }

 private:
  IJepaConfig cfg_;
  std::shared_ptr<MultiBlockMasker> masker_;
};

}  // namespace ssl
}  // namespace retikd
