// retikd/kd/pca_projector.hpp — the partitioned (partially) cross-attention projector (DESIGN.md §5, PCA).
//
// Shapes: student map S (B, C, h, w); teacher block tokens (B, P + gh·gw, D) and per-head Q/K/V
// (B, Ht, P + gh·gw, dt). After grid alignment (kd/grid.hpp) both live on one hc×wc grid, N = hc·wc.
//
//   Y = Proj1(S_a)                       conv3x3 (pad 1) → (B, n·H·d, hc, wc), or linear on the tokens
//                                        (B, N, C) → (B, N, n·H·d); n = 3 (Q, K, V) for `cakd`, 2 (Q, K)
//                                        for `paper`, whose loss never reads V. Channel c = s·H·d + h·d + j
//                                        (s = Q, K, V; timm's qkv order), token n = y·wc + x.
//   Q_S, K_S, V_S                        (B, H, N, d) each
//   training, p > 0:  X_S ← partial_cross_replace(X_S, X_T, p) for X = Q, K (and V for cakd), each element
//                     swapped for the teacher's by the hash of (seed, step, stream, index) — needs
//                     H×d == Ht×dt (the teacher's Q/K/V resized to the common grid); other shapes throw.
//   A_S = Q_S·K_Sᵀ/√d                    (B, H, N, N) — the student's pre-softmax attention
//
// Targets:
//   paper  Z_T = T·Tᵀ/√D, T the teacher patch tokens on the common grid (B, N, D) → (B, N, N);
//          L_pca = attention_kl_loss(A_S, Z_T, τ) = Σ_{b,h,i,j} p log(p/q) / (B·H), p = softmax_j(Z_T/τ),
//          q = softmax_j(A_S/τ) — PyTorch's batchmean KL for H = 1 (the paper's recipe), averaged over heads.
//   cakd   A_T = Q_T·K_Tᵀ/√dt (B, Ht, N, N) — the teacher block's own pre-softmax attention with the CLS
//          row and column removed (equal to the `blocks.i.attn.logits` tap sliced [1:, 1:] when no resize
//          is involved; tested); R = V·Vᵀ/√d (B, H, N, N) on each side;
//          L_pca = attn_weight·MSE(A_S, A_T) + vv_weight·MSE(R_S, R_T)   (mean over every element),
//          needs H == Ht (d may differ when p = 0).
// In eval mode (is_training() false) nothing is replaced.
// GPU tensors: the loss terms run in the fused kernel of retikd/kd/fused.hpp (replacement, logits, softmax and
// loss in one pass, no (B, H, N, N) map; student_logits is then left undefined, teacher_logits holds Z_T for
// paper and is undefined for cakd); whatever that kernel cannot take falls back, logged, to the ops below.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>

#include "retikd/core/random.hpp"
#include "retikd/kd/fused.hpp"
#include "retikd/kd/grid.hpp"
#include "retikd/kd/losses.hpp"
#include "retikd/kd/partial_cross.hpp"
#include "retikd/nn/layers.hpp"
#include "retikd/nn/module.hpp"

namespace retikd {
namespace kd {

enum class PcaTarget { paper, cakd };
enum class QkvProjection { conv3x3, linear };

inline const char* pca_target_name(PcaTarget t) { return t == PcaTarget::paper ? "paper" : "cakd"; }
inline PcaTarget parse_pca_target(const std::string& s) {
  if (s == "paper") return PcaTarget::paper;
  if (s == "cakd") return PcaTarget::cakd;
  fail("unknown PCA target '", s, "' (paper, cakd)");
}

struct PcaConfig {
  PcaTarget target = PcaTarget::paper;
  QkvProjection projection = QkvProjection::conv3x3;
  int64_t in_channels = 0;   // C of the student tap (filled by the distiller from the tap's shape)
  int64_t heads = 1;         // H
  int64_t head_dim = 64;     // d
  double cross_prob = 0.0;   // p (CAKD: 0.5; 0 disables)
  uint64_t cross_seed = 0x5EEDC0DEULL;
  double temperature = 1.0;  // τ of the paper target
  // paper target, our default (DESIGN.md §5): the KL as the mean over rows instead of batchmean's sum over the
  // N rows, and τ chosen at the first step so the teacher target's mean row entropy is this fraction of log N
  // (0: keep `temperature`). softmax(T·Tᵀ/√D) at τ = 1 is nearly the identity (entropy ≈ 0).
  bool kl_row_mean = false;
  double target_entropy = 0.0;
  // cakd target: compare the maps averaged over heads (CAKD's official code) instead of head by head
  bool average_heads = false;
  double attn_weight = 1.0;  // cakd: weight of MSE(A_S, A_T) inside L_pca
  double vv_weight = 1.0;    // cakd: weight of MSE(V_S V_Sᵀ/√d, V_T V_Tᵀ/√d) inside L_pca
  GridAlign align = GridAlign::resize_teacher;
};

// Per-head projections, each (B, H, N, d); v undefined where the target does not use it.
struct Qkv {
  Var q, k, v;
};

struct PcaResult {
  Var loss;            // scalar L_pca
  Var attn;            // paper: the KL; cakd: MSE of the attention logits
  Var vv;              // cakd: MSE of V·Vᵀ/√d; undefined for paper
  Var student_logits;  // A_S (B, H, N, N)
  Var teacher_logits;  // paper: Z_T (B, N, N); cakd: A_T (B, Ht, N, N)
  int64_t grid_h = 0, grid_w = 0;
};

class PartialCrossAttentionProjector : public nn::Module {
 public:
  // Exactly one of these is set ("qkv" in the state dict either way).
  std::shared_ptr<nn::Conv2d> qkv_conv;
  std::shared_ptr<nn::Linear> qkv_linear;

  PartialCrossAttentionProjector(const PcaConfig& cfg, Generator& gen) : cfg_(cfg) {
    RETIKD_CHECK(cfg.in_channels > 0 && cfg.heads > 0 && cfg.head_dim > 0, "PartialCrossAttentionProjector: "
                 "in_channels (", cfg.in_channels, "), heads (", cfg.heads, ") and head_dim (", cfg.head_dim,
                 ") must be positive");
    RETIKD_CHECK(cfg.cross_prob >= 0.0 && cfg.cross_prob <= 1.0, "PartialCrossAttentionProjector: cross_prob ",
                 cfg.cross_prob, " must be in [0, 1]");
    RETIKD_CHECK(cfg.temperature > 0.0, "PartialCrossAttentionProjector: temperature must be positive");
    const int64_t out = projections() * cfg.heads * cfg.head_dim;
    if (cfg.projection == QkvProjection::conv3x3) {
      qkv_conv = register_module("qkv", std::make_shared<nn::Conv2d>(cfg.in_channels, out, 3, gen,
                                                                      ops::Conv2dOptions().with_padding(1)));
    } else {
      qkv_linear = register_module("qkv", std::make_shared<nn::Linear>(cfg.in_channels, out, gen));
    }
  }

  const PcaConfig& config() const { return cfg_; }
  // n: 3 projections (Q, K, V) for cakd, 2 (Q, K) for paper.
  int64_t projections() const { return cfg_.target == PcaTarget::cakd ? 3 : 2; }
  // Whether forward() reads the teacher's per-head Q/K/V (else only its tokens).
  bool needs_teacher_qkv() const { return cfg_.target == PcaTarget::cakd || cfg_.cross_prob > 0.0; }
  bool needs_teacher_v() const { return cfg_.target == PcaTarget::cakd; }

  // Configuration check against the teacher's attention shape, before any forward: p > 0 needs the student's
  // heads × head_dim to be the teacher's; the cakd target needs the teacher's head count.
  void check_teacher(int64_t teacher_heads, int64_t teacher_head_dim) const {
    if (cfg_.cross_prob > 0.0)
      RETIKD_CHECK(cfg_.heads == teacher_heads && cfg_.head_dim == teacher_head_dim,
                   "PartialCrossAttentionProjector: partial cross replacement (p = ", cfg_.cross_prob,
                   ") needs the student's Q/K/V in the teacher's shape, but the student projects to ", cfg_.heads,
                   " heads x ", cfg_.head_dim, " and the teacher has ", teacher_heads, " heads x ", teacher_head_dim,
                   "; set heads/head_dim to the teacher's or cross_prob = 0");
    if (cfg_.target == PcaTarget::cakd)
      RETIKD_CHECK(cfg_.heads == teacher_heads, "PartialCrossAttentionProjector: the cakd target matches the "
                   "teacher's attention head by head, but the student has ", cfg_.heads, " heads and the teacher ",
                   teacher_heads);
  }

  // Student map on the common grid (B, C, hc, wc) → Q, K (, V) (B, H, hc·wc, d), contiguous.
  Qkv project(const Var& student_map) const {
    RETIKD_CHECK(student_map.dim() == 4 && student_map.size(1) == cfg_.in_channels, "PartialCrossAttentionProjector: "
                 "student map ", shape_str(student_map.shape()), " must be (B, ", cfg_.in_channels, ", h, w)");
    const int64_t B = student_map.size(0), N = student_map.size(2) * student_map.size(3);
    const int64_t n = projections(), H = cfg_.heads, d = cfg_.head_dim;
    Var parts[3];
    if (qkv_conv) {
      Var y = ops::reshape(qkv_conv->forward(student_map), {B, n, H, d, N});  // (B, n, H, d, N)
      for (int64_t s = 0; s < n; ++s)
        parts[s] = ops::contiguous(
            ops::permute(ops::reshape(ops::narrow(y, 1, s, 1), {B, H, d, N}), {0, 1, 3, 2}));  // (B, H, N, d)
    } else {
      Var y = ops::reshape(qkv_linear->forward(map_to_tokens(student_map)), {B, N, n, H, d});  // (B, N, n, H, d)
      for (int64_t s = 0; s < n; ++s)
        parts[s] = ops::contiguous(
            ops::permute(ops::reshape(ops::narrow(y, 2, s, 1), {B, N, H, d}), {0, 2, 1, 3}));  // (B, H, N, d)
    }
    return Qkv{parts[0], parts[1], n == 3 ? parts[2] : Var()};
  }

  // Partial cross replacement of every projection the target uses (p from the config).
  Qkv cross(const Qkv& student, const Qkv& teacher, uint64_t step) const {
    if (cfg_.cross_prob <= 0.0) return student;
    auto spec = [&](uint32_t stream) { return CrossMaskSpec{cfg_.cross_prob, cfg_.cross_seed, step, stream}; };
    Qkv out;
    out.q = partial_cross_replace(student.q, teacher.q, spec(kCrossMaskQ));
    out.k = partial_cross_replace(student.k, teacher.k, spec(kCrossMaskK));
    if (student.v.defined()) out.v = partial_cross_replace(student.v, teacher.v, spec(kCrossMaskV));
    return out;
  }

  // τ in use for the paper target (set from target_entropy at the first forward when configured).
  double temperature() const { return cfg_.temperature; }
  void set_temperature(double tau) {
    RETIKD_CHECK(tau > 0.0, "PartialCrossAttentionProjector: temperature must be positive");
    cfg_.temperature = tau;
    temperature_chosen_ = true;
  }
  bool temperature_chosen() const { return temperature_chosen_; }
  // Mean row entropy of the last paper target at the temperature in use (nats; NaN before the first forward).
  double last_target_entropy() const { return last_entropy_; }

  // L_pca for a student map (B, C, h, w) against the teacher block; `step` seeds the replacement mask; sample
  // weights (B), when defined, weigh each sample's term (the unfused path then runs on a GPU too).
  PcaResult forward(const Var& student_map, const TeacherFeatures& t, uint64_t step,
                    const Tensor& sample_weights = Tensor()) {
    RETIKD_CHECK(student_map.dim() == 4, "PartialCrossAttentionProjector: student map ",
                 shape_str(student_map.shape()), " must be (B, C, h, w)");
    const auto g = common_grid(cfg_.align, student_map.size(2), student_map.size(3), t.grid_h, t.grid_w);
    PcaResult r;
    r.grid_h = g.first;
    r.grid_w = g.second;
    Var s_map = resize_map(student_map, g.first, g.second);  // (B, C, hc, wc)
    Qkv st = project(s_map);                                   // (B, H, N, d) each
    Qkv te;
    if (needs_teacher_qkv()) {
      te.q = teacher_heads(t.q, t, g.first, g.second, "q");     // (B, Ht, N, dt)
      te.k = teacher_heads(t.k, t, g.first, g.second, "k");
      if (needs_teacher_v()) te.v = teacher_heads(t.v, t, g.first, g.second, "v");
      check_teacher(te.q.size(1), te.q.size(3));
    }
    if (cfg_.target == PcaTarget::paper) {  // the target's row entropy: chooses τ once, and is logged
      const Tensor zt = token_affinity_logits(teacher_patch_tokens(t, g.first, g.second)).value();  // (B, N, N)
      if (cfg_.target_entropy > 0.0 && !temperature_chosen_) set_temperature(temperature_for_entropy(zt, cfg_.target_entropy));
      last_entropy_ = mean_row_entropy(zt, cfg_.temperature);
    }
    const bool plain = !sample_weights.defined() && !cfg_.kl_row_mean && !cfg_.average_heads;
    if (plain && st.q.value().is_cuda() && fused_forward(st, te, t, g, step, r)) return r;
    if (!plain && st.q.value().is_cuda()) log_fused_fallback("PCA projector (fused attention loss)",
                                                             "sample weights / row-mean KL are not fused");
    if (is_training()) st = cross(st, te, step);
    r.student_logits = attention_logits(st.q, st.k);  // (B, H, N, N)
    if (cfg_.target == PcaTarget::paper) {
      r.teacher_logits = token_affinity_logits(teacher_patch_tokens(t, g.first, g.second));  // (B, N, N)
      r.attn = attention_kl_loss(r.student_logits, r.teacher_logits, cfg_.temperature, cfg_.kl_row_mean,
                                 sample_weights);
      r.loss = r.attn;
    } else {
      r.teacher_logits = attention_logits(te.q, te.k);  // (B, Ht, N, N)
      Var rs = value_relation(st.v), rt = value_relation(te.v);
      if (cfg_.average_heads) {  // (B, N, N) each: the mean over heads on both sides
        r.attn = feature_mse_loss(ops::mean(r.student_logits, {1}), ops::mean(r.teacher_logits, {1}), sample_weights);
        r.vv = feature_mse_loss(ops::mean(rs, {1}), ops::mean(rt, {1}), sample_weights);
      } else {
        r.attn = feature_mse_loss(r.student_logits, r.teacher_logits, sample_weights);
        r.vv = feature_mse_loss(rs, rt, sample_weights);
      }
      r.loss = ops::add(ops::mul(r.attn, cfg_.attn_weight), ops::mul(r.vv, cfg_.vv_weight));
    }
    return r;
  }

 private:
  // The fused GPU path (same terms, same replacement hash); false (logged) when the kernel cannot take it.
  bool fused_forward(const Qkv& st, const Qkv& te, const TeacherFeatures& t, std::pair<int64_t, int64_t> g,
                     uint64_t step, PcaResult& r) const {
    const bool replace = is_training() && cfg_.cross_prob > 0.0;
    auto spec = [&](uint32_t stream) {
      return CrossMaskSpec{replace ? cfg_.cross_prob : 0.0, cfg_.cross_seed, step, stream};
    };
    const double B = static_cast<double>(st.q.size(0)), H = static_cast<double>(st.q.size(1));
    const double N = static_cast<double>(st.q.size(2));
    FusedAttnInputs a;
    a.q = st.q;
    a.k = st.k;
    if (replace) {
      a.qx = te.q;
      a.kx = te.k;
    }
    a.mq = spec(kCrossMaskQ);
    a.mk = spec(kCrossMaskK);
    if (cfg_.target == PcaTarget::paper) {
      a.zt = token_affinity_logits(teacher_patch_tokens(t, g.first, g.second)).detach();  // (B, N, N)
      a.kl = true;
      a.tau = cfg_.temperature;
      a.loss_scale = 1.0 / (B * H);
    } else {
      a.qt = te.q.detach();
      a.kt = te.k.detach();
      a.kl = false;
      a.loss_scale = 1.0 / (B * H * N * N);
    }
    std::string why;
    Var attn = fused_attention_loss(a, &why);
    if (!attn.defined()) {
      log_fused_fallback("PCA projector (fused attention loss)", why);
      return false;
    }
    r.attn = attn;
    r.loss = attn;
    if (cfg_.target == PcaTarget::paper) {
      r.teacher_logits = a.zt;
      return true;
    }
    FusedAttnInputs v;  // V·Vᵀ/√d of student and teacher: Q = K = V
    v.q = st.v;
    v.same_qk = true;
    if (replace) v.qx = te.v;
    v.mq = v.mk = spec(kCrossMaskV);
    v.qt = te.v.detach();
    v.kl = false;
    v.loss_scale = 1.0 / (B * H * N * N);
    r.vv = fused_attention_loss(v, &why);
    if (!r.vv.defined()) {
      log_fused_fallback("PCA projector (fused V relation loss)", why);
      return false;
    }
    r.loss = ops::add(ops::mul(r.attn, cfg_.attn_weight), ops::mul(r.vv, cfg_.vv_weight));
    return true;
  }

  PcaConfig cfg_;
  bool temperature_chosen_ = false;
  double last_entropy_ = std::numeric_limits<double>::quiet_NaN();
};

}  // namespace kd
}  // namespace retikd
