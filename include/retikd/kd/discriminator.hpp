// retikd/kd/discriminator.hpp — the feature discriminator of multi-view robust training (DESIGN.md §5) and
// the two adversarial losses. A real game, unlike the paper code's cooperative "discriminator": the
// discriminator has its own optimizer and learns to tell teacher features (real) from projected student
// features (fake); the student minimises the non-saturating generator loss against it.
//
//   features: tokens (B, N, D) → pooled (B, D) = mean over the N tokens        (default)
//                              → per token (B·N, D)                            (per_token = true)
//   D(x) = fc3(LeakyReLU₀.₂(fc2(LeakyReLU₀.₂(fc1(x)))))   fc1: D → hidden, fc2: hidden → hidden, fc3: hidden → 1
//   L_D = BCE(D(real), 1) + BCE(D(fake.detach()), 0)      each a mean over rows (BCE with logits)
//   L_G = BCE(D(fake), 1)                                  non-saturating; gradient reaches the student
// Real features are the teacher's patch tokens on the GL projector's grid, fake ones that projector's
// output (kd/distiller.hpp). Alternation per step: discriminator_update() (one optimizer step on L_D with the
// fake features detached), then the student's step on a loss containing generator_loss() — evaluated
// against the just-updated discriminator, whose parameters are held out of that backward.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>

#include "retikd/core/random.hpp"
#include "retikd/nn/layers.hpp"
#include "retikd/nn/module.hpp"
#include "retikd/ops/activation.hpp"
#include "retikd/ops/elementwise.hpp"
#include "retikd/ops/loss.hpp"
#include "retikd/ops/reduce.hpp"
#include "retikd/ops/shape.hpp"
#include "retikd/optim/optim.hpp"

namespace retikd {
namespace kd {

struct DiscriminatorConfig {
  int64_t in_dim = 0;        // D (filled by the distiller: the teacher's token dimension)
  int64_t hidden = 256;
  bool per_token = false;    // false: one row per image (token mean); true: one row per token
  double leaky_slope = 0.2;
  double lr_ratio = 0.25;    // discriminator lr = lr_ratio × the student's
};

class FeatureDiscriminator : public nn::Module {
 public:
  std::shared_ptr<nn::Linear> fc1, fc2, fc3;

  FeatureDiscriminator(const DiscriminatorConfig& cfg, Generator& gen) : cfg_(cfg) {
    RETIKD_CHECK(cfg.in_dim > 0 && cfg.hidden > 0, "FeatureDiscriminator: in_dim (", cfg.in_dim, ") and hidden (",
                 cfg.hidden, ") must be positive");
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(cfg.in_dim, cfg.hidden, gen));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(cfg.hidden, cfg.hidden, gen));
    fc3 = register_module("fc3", std::make_shared<nn::Linear>(cfg.hidden, 1, gen));
  }
  const DiscriminatorConfig& config() const { return cfg_; }

  // Tokens (B, N, D) → the rows the discriminator scores: (B, D) token means, or (B·N, D). A 2-D input
  // (rows, D) is passed through.
  Var rows(const Var& tokens) const {
    if (tokens.dim() == 2) return tokens;
    RETIKD_CHECK(tokens.dim() == 3 && tokens.size(2) == cfg_.in_dim, "FeatureDiscriminator: features ",
                 shape_str(tokens.shape()), " must be (B, N, ", cfg_.in_dim, ") or (rows, ", cfg_.in_dim, ")");
    if (cfg_.per_token) return ops::reshape(tokens, {tokens.size(0) * tokens.size(1), tokens.size(2)});
    return ops::mean(tokens, {1});  // (B, D)
  }
  // Logits (rows, 1) for features (rows, D) or tokens (B, N, D).
  Var forward(const Var& features) const {
    Var x = rows(features);
    RETIKD_CHECK(x.size(1) == cfg_.in_dim, "FeatureDiscriminator: rows ", shape_str(x.shape()), " must have ",
                 cfg_.in_dim, " features");
    Var h = ops::leaky_relu(fc1->forward(x), cfg_.leaky_slope);
    h = ops::leaky_relu(fc2->forward(h), cfg_.leaky_slope);
    return fc3->forward(h);  // (rows, 1)
  }

 private:
  DiscriminatorConfig cfg_;
};

namespace detail {
inline Var bce_to(const Var& logits, double target) {
  return ops::binary_cross_entropy_with_logits(
      logits, Var(Tensor::full(logits.shape(), target, logits.dtype(), logits.value().device())));
}
}  // namespace detail

// L_D = BCE(D(real), 1) + BCE(D(fake.detach()), 0). Gradients reach only the discriminator.
inline Var discriminator_loss(const FeatureDiscriminator& d, const Var& real, const Var& fake) {
  return ops::add(detail::bce_to(d.forward(real.detach()), 1.0), detail::bce_to(d.forward(fake.detach()), 0.0));
}
// L_G = BCE(D(fake), 1), the non-saturating generator loss; the gradient flows into `fake`.
inline Var generator_loss(const FeatureDiscriminator& d, const Var& fake) {
  return detail::bce_to(d.forward(fake), 1.0);
}

struct DiscriminatorStats {
  double loss = 0.0;      // L_D before the update
  double accuracy = 0.0;  // fraction of real rows scored > 0 and fake rows scored < 0, before the update
  bool stepped = false;   // false when L_D was not finite (no update made)
};

// One discriminator step: zero its gradients, backward L_D, optimizer step. Returns L_D and the accuracy
// measured in the same forward. A non-finite L_D makes no update.
inline DiscriminatorStats discriminator_update(FeatureDiscriminator& d, optim::Optimizer& opt, const Var& real,
                                               const Var& fake) {
  Var lr = d.forward(real.detach()), lf = d.forward(fake.detach());  // (rows, 1)
  Var loss = ops::add(detail::bce_to(lr, 1.0), detail::bce_to(lf, 0.0));
  DiscriminatorStats s;
  s.loss = loss.item<double>();
  int64_t right = 0;
  for (double v : lr.value().to_vector<double>()) right += v > 0 ? 1 : 0;
  for (double v : lf.value().to_vector<double>()) right += v < 0 ? 1 : 0;
  s.accuracy = static_cast<double>(right) / static_cast<double>(lr.numel() + lf.numel());
  if (!std::isfinite(s.loss)) return s;
  opt.zero_grad();
  d.zero_grad();
  loss.backward();
  opt.step();
  s.stepped = true;
  return s;
}

// Holds a module's parameters out of the tape (the discriminator during the student's step), restoring
// requires_grad on scope exit. Keep it alive until after backward(): backward skips inputs by their
// requires_grad flag at backward time, so restoring it earlier would let gradients into the module.
class FrozenScope {
 public:
  explicit FrozenScope(nn::Module& m) : m_(m) { m_.set_requires_grad(false); }
  ~FrozenScope() { m_.set_requires_grad(true); }
  FrozenScope(const FrozenScope&) = delete;
  FrozenScope& operator=(const FrozenScope&) = delete;

 private:
  nn::Module& m_;
};

}  // namespace kd
}  // namespace retikd
