// retikd/deploy/gradcam.hpp — Grad-CAM and Grad-CAM++ maps for CNN students, on any stage tap, and PNG
// overlays on the image the model saw.
//
//   deploy::CamOptions o;  o.tap = "stage4";  o.method = deploy::CamMethod::grad_cam_pp;
//   deploy::CamResult r = deploy::class_activation_maps(model, batch, o);   // batch (B, 3, H, W), normalised
//   r.maps                                      // (B, h, w), each in [0, 1]; r.targets: the explained classes
//   data::ImageU8 png = deploy::cam_overlay(view, r.map(0));                 // view: the un-normalised input
//
// With A the tap's activations (B, K, h, w) and g = ∂S/∂A the gradient of the target class's score S — its
// logit y^c (pre-softmax, the papers' choice) or, with CamScore::log_probability, log p_c — with respect to
// them:
//  - Grad-CAM (Selvaraju et al. 2017): w_k = mean_ij g_kij;  L = ReLU(Σ_k w_k A_k).
//  - Grad-CAM++ (Chattopadhyay et al. 2018, eq. 19 with the exponential of the score, whose higher
//    derivatives reduce to powers of g): α_kij = g² / (2g² + (Σ_ab A_kab)·g³) (0 where g = 0 or the
//    denominator is 0); w_k = Σ_ij α_kij · ReLU(g_kij);  L = ReLU(Σ_k w_k A_k).
// Each map is then divided by its maximum (a map with no positive evidence stays all zero). The common factor
// exp(y^c) of the Grad-CAM++ derivation scales all w_k alike and vanishes in that normalisation.
//
// Geometry: a stride-s map's cell i is centred on input pixel s·i + origin. For convolutions and pools padded
// by (k − 1)/2 — torchvision's MobileNetV2, ResNet and EfficientNet, and any ConvNet built like them — every
// stride-2 layer maps output position o to input position 2·o exactly, so origin = 0 (the default). The common
// "align_corners = false" resize instead puts cell i at s·i + (s − 1)/2, which shifts a stage4 map of a
// 224-px MobileNetV2 by 7.5 pixels down and right (half a cell; measured here: with it a small CNN's glaucoma
// maps missed the disc in more than half of the images, without it they hit it in all of them). Upsampling and
// peak footprints below use the cell centres; TensorFlow "SAME" models (padding at the end) have origin s − 1.
//
// How the gradient at the tap is obtained: the forward runs with the input requiring a gradient and every
// parameter frozen (restored afterwards), so the tape records the path from the input to the logits without
// any weight gradients; the tap's tape node has its backward replaced for the duration of one backward pass
// by one that keeps the incoming gradient and stops there. Nothing below the tap is differentiated. The model
// runs in eval mode (restored afterwards) and grad mode is switched on for the call even inside NoGradGuard.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/core/error.hpp"
#include "retikd/data/image.hpp"
#include "retikd/nn/models/model.hpp"
#include "retikd/ops/reduce.hpp"
#include "retikd/ops/softmax.hpp"

namespace retikd {
namespace deploy {

enum class CamMethod { grad_cam, grad_cam_pp };

inline const char* cam_method_name(CamMethod m) { return m == CamMethod::grad_cam ? "gradcam" : "gradcam++"; }

// "gradcam" / "grad-cam" / "gradcam++" / "grad-cam++" / "gradcampp" (any case).
inline CamMethod parse_cam_method(const std::string& s) {
  std::string v;
  for (char c : s)
    if (c != '-' && c != '_') v += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (v == "gradcam") return CamMethod::grad_cam;
  if (v == "gradcam++" || v == "gradcampp") return CamMethod::grad_cam_pp;
  fail("unknown CAM method '", s, "' (gradcam or gradcam++)");
}

// What is explained: the class's logit y^c (the Grad-CAM paper), or its log-probability log p_c =
// y^c − log Σ exp(y) — contrastive: evidence that raises every class's logit alike (a bright fundus, texture)
// cancels, and what sets class c apart from the others remains.
enum class CamScore { logit, log_probability };

inline const char* cam_score_name(CamScore s) { return s == CamScore::logit ? "logit" : "logprob"; }

inline CamScore parse_cam_score(const std::string& s) {
  if (s == "logit") return CamScore::logit;
  if (s == "logprob" || s == "log_prob" || s == "log-probability" || s == "log_probability")
    return CamScore::log_probability;
  fail("unknown CAM score '", s, "' (logit or logprob)");
}

struct CamOptions {
  std::string tap = "stage4";    // any spatial feature tap of the model (model.tap_names())
  CamMethod method = CamMethod::grad_cam;
  CamScore score = CamScore::logit;
  std::vector<int64_t> targets;  // the class to explain per image; empty: each image's predicted class
  double origin = 0.0;           // input pixel of cell 0's centre (see Geometry above)
};

// The peak cell of a map and the input pixels it covers, [y0, y1) × [x0, x1).
struct CamPeak {
  int64_t row = 0, col = 0;
  float value = 0;
  int64_t y0 = 0, x0 = 0, y1 = 0, x1 = 0;
};

struct CamResult {
  Tensor logits;                  // (B, classes)
  std::vector<int64_t> targets;   // the class each map explains
  Tensor maps;                    // (B, h, w) float32 in [0, 1]
  Tensor raw;                     // (B, h, w) float32: ReLU(Σ_k w_k A_k) before normalisation
  int64_t input_h = 0, input_w = 0;
  double origin = 0.0;            // input pixel on which cell (0, 0) is centred
  std::string tap;
  CamMethod method = CamMethod::grad_cam;
  CamScore score = CamScore::logit;

  int64_t size() const { return maps.defined() ? maps.size(0) : 0; }
  // Image b's map, (h, w).
  Tensor map(int64_t b) const { return maps.narrow(0, b, 1).squeeze(0); }
  // The maximum of image b's map (the first in row-major order on ties) and its footprint: the input pixels
  // whose nearest cell centre it is.
  CamPeak peak(int64_t b) const;
};

// The cell whose centre is nearest to input pixel p, for n cells of `stride` pixels with cell 0 on `origin`.
inline int64_t nearest_cell(int64_t p, double stride, double origin, int64_t n) {
  const int64_t i = static_cast<int64_t>(std::floor((static_cast<double>(p) - origin) / stride + 0.5));
  return std::min(n - 1, std::max<int64_t>(0, i));
}

// The input pixels [lo, hi) of `size` whose nearest cell is i.
inline std::pair<int64_t, int64_t> cell_territory(int64_t i, int64_t n, int64_t size, double origin) {
  const double stride = static_cast<double>(size) / static_cast<double>(n);
  int64_t lo = size, hi = 0;
  for (int64_t p = 0; p < size; ++p)
    if (nearest_cell(p, stride, origin, n) == i) {
      lo = std::min(lo, p);
      hi = std::max(hi, p + 1);
    }
  return {lo, hi};
}

inline CamPeak CamResult::peak(int64_t b) const {
  const Tensor m = map(b).contiguous();
  const int64_t h = m.size(0), w = m.size(1);
  const float* p = m.data<float>();
  CamPeak pk;
  pk.value = p[0];
  for (int64_t i = 1; i < h * w; ++i)
    if (p[i] > pk.value) {
      pk.value = p[i];
      pk.row = i / w;
      pk.col = i % w;
    }
  std::tie(pk.y0, pk.y1) = cell_territory(pk.row, h, input_h, origin);
  std::tie(pk.x0, pk.x1) = cell_territory(pk.col, w, input_w, origin);
  return pk;
}

namespace detail {

// Puts the model in eval mode with frozen parameters and grad mode on; restores all three.
class CamScope {
 public:
  explicit CamScope(nn::Model& m) : model_(m), training_(m.is_training()), grad_mode_(grad_mode_enabled()) {
    for (auto& p : m.named_parameters()) {
      flags_.emplace_back(p.second, p.second.requires_grad());
      p.second.set_requires_grad(false);
    }
    m.eval();
    grad_mode_enabled() = true;
  }
  ~CamScope() {
    for (auto& f : flags_) f.first.set_requires_grad(f.second);
    model_.train(training_);
    grad_mode_enabled() = grad_mode_;
  }
  CamScope(const CamScope&) = delete;
  CamScope& operator=(const CamScope&) = delete;

 private:
  nn::Model& model_;
  bool training_, grad_mode_;
  std::vector<std::pair<Var, bool>> flags_;
};

// Swaps a tape node's backward for one that records the incoming gradient and propagates nothing further.
class GradientCatcher {
 public:
  explicit GradientCatcher(const std::shared_ptr<Node>& node) : node_(node), saved_(node->backward) {
    const std::size_t n = node->inputs.size();
    Tensor* out = &caught_;
    node_->backward = [out, n](const Tensor& g) {
      *out = g;
      return std::vector<Tensor>(n);
    };
  }
  ~GradientCatcher() { node_->backward = saved_; }
  GradientCatcher(const GradientCatcher&) = delete;
  GradientCatcher& operator=(const GradientCatcher&) = delete;
  const Tensor& gradient() const { return caught_; }

 private:
  std::shared_ptr<Node> node_;
  BackwardFn saved_;
  Tensor caught_;
};

}  // namespace detail

// Grad-CAM / Grad-CAM++ maps of `images` (B, C, H, W; already preprocessed, on the model's device) at
// opt.tap (see the top of this file).
inline CamResult class_activation_maps(nn::Model& model, const Tensor& images, const CamOptions& opt = {}) {
  RETIKD_CHECK(images.dim() == 4, "class_activation_maps: images ", images.describe(), " must be (B, C, H, W)");
  RETIKD_CHECK(images.size(0) > 0, "class_activation_maps: empty batch");
  RETIKD_CHECK(opt.targets.empty() || static_cast<int64_t>(opt.targets.size()) == images.size(0),
               "class_activation_maps: ", opt.targets.size(), " targets for ", images.size(0), " images");
  detail::CamScope scope(model);
  Var x(images.dtype() == DType::float32 ? images : images.to(DType::float32), /*requires_grad=*/true);
  nn::ModelOutput out = model.forward_with_taps(x, {opt.tap}, /*need_logits=*/true);
  const Var& A = out.tap(opt.tap);
  RETIKD_CHECK(A.dim() == 4, "class_activation_maps: tap '", opt.tap, "' of ", model.arch(), " is ",
               shape_str(A.shape()), "; Grad-CAM needs a spatial map (B, C, h, w): use a stage tap such as stage4");
  RETIKD_CHECK(A.grad_fn() != nullptr, "class_activation_maps: tap '", opt.tap,
               "' is not on the tape (is it the input itself?)");
  const int64_t B = images.size(0), K = out.logits.size(1);
  CamResult r;
  r.tap = opt.tap;
  r.method = opt.method;
  r.score = opt.score;
  r.origin = opt.origin;
  r.input_h = images.size(2);
  r.input_w = images.size(3);
  r.logits = out.logits.value().to(Device::cpu()).contiguous();
  r.targets = opt.targets;
  if (r.targets.empty()) r.targets = ops::impl::argmax(r.logits, 1).to_vector<int64_t>();
  // ∂score/∂logits: one-hot for the logit; one-hot − softmax for the log-probability.
  std::vector<float> onehot(static_cast<std::size_t>(B * K), 0.0f);
  if (opt.score == CamScore::log_probability) {
    const std::vector<float> p = ops::impl::softmax(r.logits, 1).to_vector<float>();
    for (std::size_t i = 0; i < p.size(); ++i) onehot[i] = -p[i];
  }
  for (int64_t b = 0; b < B; ++b) {
    RETIKD_CHECK(r.targets[b] >= 0 && r.targets[b] < K, "class_activation_maps: target ", r.targets[b],
                 " out of range for ", K, " classes");
    onehot[static_cast<std::size_t>(b * K + r.targets[b])] += 1.0f;
  }
  Tensor g;
  {
    detail::GradientCatcher catcher(A.grad_fn());
    out.logits.backward(Tensor::from_vector(onehot, {B, K}).to(out.logits.device()));
    g = catcher.gradient();
  }
  RETIKD_CHECK(g.defined(), "class_activation_maps: no gradient reached tap '", opt.tap,
               "' (the logits do not depend on it)");

  const Tensor a_host = A.value().to(Device::cpu()).to(DType::float32).contiguous();
  const Tensor g_host = g.to(Device::cpu()).to(DType::float32).contiguous();
  const int64_t C = a_host.size(1), h = a_host.size(2), w = a_host.size(3), hw = h * w;
  const float* pa = a_host.data<float>();
  const float* pg = g_host.data<float>();
  r.raw = Tensor::zeros({B, h, w});
  r.maps = Tensor::zeros({B, h, w});
  float* raw = r.raw.data<float>();
  float* maps = r.maps.data<float>();
  std::vector<double> cam(static_cast<std::size_t>(hw));
  for (int64_t b = 0; b < B; ++b) {
    std::fill(cam.begin(), cam.end(), 0.0);
    for (int64_t k = 0; k < C; ++k) {
      const float* ak = pa + (b * C + k) * hw;
      const float* gk = pg + (b * C + k) * hw;
      double wk = 0.0;
      if (opt.method == CamMethod::grad_cam) {
        for (int64_t i = 0; i < hw; ++i) wk += gk[i];
        wk /= static_cast<double>(hw);
      } else {
        double sum_a = 0.0;
        for (int64_t i = 0; i < hw; ++i) sum_a += ak[i];
        for (int64_t i = 0; i < hw; ++i) {
          const double gi = gk[i];
          if (gi <= 0.0) continue;  // ReLU(g) = 0: no contribution whatever α is
          const double g2 = gi * gi, denom = 2.0 * g2 + sum_a * g2 * gi;
          if (denom != 0.0) wk += (g2 / denom) * gi;
        }
      }
      if (wk == 0.0) continue;
      for (int64_t i = 0; i < hw; ++i) cam[static_cast<std::size_t>(i)] += wk * ak[i];
    }
    double peak = 0.0;
    for (int64_t i = 0; i < hw; ++i) {
      const double v = std::max(0.0, cam[static_cast<std::size_t>(i)]);
      raw[b * hw + i] = static_cast<float>(v);
      peak = std::max(peak, v);
    }
    if (peak > 0)
      for (int64_t i = 0; i < hw; ++i) maps[b * hw + i] = static_cast<float>(raw[b * hw + i] / peak);
  }
  return r;
}

// A (h, w) map interpolated bilinearly to H × W with cell i centred on input pixel (H/h)·i + origin (see
// Geometry above); beyond the outermost centres the edge values extend.
inline Tensor upsample_map(const Tensor& map, int64_t H, int64_t W, double origin = 0.0) {
  RETIKD_CHECK(map.dim() == 2 && H > 0 && W > 0, "upsample_map: map ", map.describe(), " must be (h, w), size ", H,
               "x", W, " positive");
  const Tensor m = map.to(Device::cpu()).to(DType::float32).contiguous();
  const int64_t h = m.size(0), w = m.size(1);
  const float* p = m.data<float>();
  auto taps = [origin](int64_t n_out, int64_t n_in) {
    std::vector<std::pair<int64_t, float>> t(static_cast<std::size_t>(n_out));
    const double stride = static_cast<double>(n_out) / static_cast<double>(n_in);
    for (int64_t o = 0; o < n_out; ++o) {
      double src = (static_cast<double>(o) - origin) / stride;
      src = std::min(static_cast<double>(n_in - 1), std::max(0.0, src));
      const int64_t i0 = std::min<int64_t>(n_in - 1, static_cast<int64_t>(std::floor(src)));
      t[static_cast<std::size_t>(o)] = {i0, static_cast<float>(src - static_cast<double>(i0))};
    }
    return t;
  };
  const auto ty = taps(H, h), tx = taps(W, w);
  Tensor out = Tensor::empty({H, W});
  float* q = out.data<float>();
  for (int64_t y = 0; y < H; ++y) {
    const int64_t y0 = ty[y].first, y1 = std::min(h - 1, y0 + 1);
    const float fy = ty[y].second;
    for (int64_t x = 0; x < W; ++x) {
      const int64_t x0 = tx[x].first, x1 = std::min(w - 1, x0 + 1);
      const float fx = tx[x].second;
      const float top = p[y0 * w + x0] * (1 - fx) + p[y0 * w + x1] * fx;
      const float bottom = p[y1 * w + x0] * (1 - fx) + p[y1 * w + x1] * fx;
      q[y * W + x] = top * (1 - fy) + bottom * fy;
    }
  }
  return out;
}

// The classic "jet" colour scale: dark blue (0) → cyan → yellow → dark red (1).
inline std::array<uint8_t, 3> heat_colour(float t) {
  t = std::min(1.0f, std::max(0.0f, t));
  auto ramp = [](float v) { return data::to_byte(std::min(1.0f, std::max(0.0f, v))); };
  return {ramp(1.5f - std::fabs(4.0f * t - 3.0f)), ramp(1.5f - std::fabs(4.0f * t - 2.0f)),
          ramp(1.5f - std::fabs(4.0f * t - 1.0f))};
}

// `map` (h, w, values in [0, 1]) as a colour image of H × W.
inline data::ImageU8 cam_heatmap(const Tensor& map, int H, int W, double origin = 0.0) {
  const Tensor up = upsample_map(map, H, W, origin);
  const float* p = up.data<float>();
  data::ImageU8 out(W, H);
  for (int64_t i = 0; i < static_cast<int64_t>(H) * W; ++i) {
    const auto c = heat_colour(p[i]);
    std::copy(c.begin(), c.end(), out.pixels.begin() + 3 * i);
  }
  return out;
}

// The heat map blended over `image` (which has the model input's geometry): (1 − alpha)·image + alpha·colour.
inline data::ImageU8 cam_overlay(const data::ImageU8& image, const Tensor& map, float alpha = 0.45f,
                                 double origin = 0.0) {
  RETIKD_CHECK(!image.empty(), "cam_overlay: empty image");
  RETIKD_CHECK(alpha >= 0 && alpha <= 1, "cam_overlay: alpha ", alpha, " must lie in [0, 1]");
  const data::ImageU8 heat = cam_heatmap(map, image.height, image.width, origin);
  data::ImageU8 out(image.width, image.height);
  for (std::size_t i = 0; i < out.pixels.size(); ++i)
    out.pixels[i] = static_cast<uint8_t>(std::lround((1.0f - alpha) * image.pixels[i] + alpha * heat.pixels[i]));
  return out;
}

}  // namespace deploy
}  // namespace retikd
