// retikd/kd/fused.hpp — autograd entry points of the fused projector kernels (retikd/cuda/fused.hpp) and the
// fallback rule the projectors follow (DESIGN.md §4: every fused kernel has can_implement and a documented
// fallback to the unfused path).
//
// fused_attention_loss / fused_gl_loss return the loss as a Var whose backward runs the fused backward
// kernels — or an undefined Var, with the reason in *why, when the fused path does not apply: tensors not on a
// GPU (the CPU path is the unfused reference itself, not a fallback), a build without CUDA, a dtype other than
// float32 / float16, mixed devices or dtypes, or a shape can_implement rejects. The projectors then run the
// unfused kd/ composition; for a GPU tensor that fallback is logged once per distinct reason on stderr
// (log_fused_fallback) and counted (fused_fallback_count), so a silently slow configuration shows.
#pragma once

#include <atomic>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/kd/cross_mask.hpp"
#include "retikd/kd/partial_cross.hpp"
#ifdef RETIKD_WITH_CUDA
#include "retikd/cuda/fused.hpp"
#endif

namespace retikd {
namespace kd {

inline std::atomic<int64_t>& fused_fallback_counter() {
  static std::atomic<int64_t> n{0};
  return n;
}
// Number of times a GPU projector fell back to the unfused ops in this process.
inline int64_t fused_fallback_count() { return fused_fallback_counter().load(); }

// Logs "<kernel>: falling back to the unfused ops: <why>" once per distinct message and counts every call.
inline void log_fused_fallback(const char* kernel, const std::string& why) {
  static std::mutex m;
  static std::set<std::string> seen;
  ++fused_fallback_counter();
  const std::string msg = std::string(kernel) + ": falling back to the unfused ops: " + why;
  std::lock_guard<std::mutex> lock(m);
  if (seen.insert(msg).second) std::cerr << "[retikd] " << msg << "\n";
}

// The partitioned cross-attention loss between student Q·Kᵀ and a teacher, see retikd/cuda/fused_tiles.hpp.
struct FusedAttnInputs {
  Var q, k;           // (B, H, N, d) student; same_qk: k unused (Q·Qᵀ, the V·Vᵀ relation)
  bool same_qk = false;
  Var qx, kx;         // replacement sources (B, H, N, d) — the teacher's per-head tensors — or undefined
  CrossMaskSpec mq, mk;  // replacement of q and k (p = 0: none)
  Var zt;             // teacher logits (B, N, N) or (B, H, N, N) …
  Var qt, kt;         // … or teacher per-head (B, H, N, dt) whose q·kᵀ/√dt are the teacher logits
  bool kl = true;     // KL(softmax(z/τ) ‖ softmax(s/τ)) per row, else squared error of the logits
  double tau = 1.0;
  double loss_scale = 1.0;  // KL: 1/(B·H) (batchmean over heads); MSE: 1/(B·H·N·N)
};

#ifdef RETIKD_WITH_CUDA
namespace detail {
inline bool fused_tensor_ok(const Tensor& t, const Tensor& ref, std::string* why, const char* what) {
  if (!t.defined()) return true;
  if (!t.is_cuda() || t.device() != ref.device() || t.dtype() != ref.dtype()) {
    if (why) *why = std::string(what) + " is on another device or of another dtype than the student's Q";
    return false;
  }
  return true;
}
inline const void* dev_ptr(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }
}  // namespace detail
#endif

inline Var fused_attention_loss(const FusedAttnInputs& in, std::string* why) {
#ifndef RETIKD_WITH_CUDA
  (void)in;
  if (why) *why = "built without CUDA";
  return Var();
#else
  const Tensor& q0 = in.q.value();
  if (!q0.is_cuda()) {
    if (why) *why = "tensors are not on a GPU";
    return Var();
  }
  if (q0.dim() != 4) {
    if (why) *why = "student Q is not (B, H, N, d)";
    return Var();
  }
  const int64_t B = q0.size(0), H = q0.size(1), N = q0.size(2), d = q0.size(3);
  const bool teacher_qk = !in.zt.defined();
  const bool cross = in.mq.p > 0.0 || in.mk.p > 0.0;
  for (const auto& pr : std::vector<std::pair<const Var*, const char*>>{
           {&in.k, "student K"}, {&in.qx, "replacement Q"}, {&in.kx, "replacement K"}, {&in.zt, "teacher logits"},
           {&in.qt, "teacher Q"}, {&in.kt, "teacher K"}}) {
    if (pr.first == &in.k && in.same_qk) continue;
    if (!pr.first->defined()) continue;
    if (!detail::fused_tensor_ok(pr.first->value(), q0, why, pr.second)) return Var();
  }
  const Shape sq = q0.shape();
  if ((!in.same_qk && in.k.shape() != sq) || (cross && (!in.qx.defined() || in.qx.shape() != sq)) ||
      (cross && !in.same_qk && (!in.kx.defined() || in.kx.shape() != sq))) {
    if (why) *why = "student K or the replacement sources do not have Q's shape";
    return Var();
  }
  int64_t dt = 0, zt_heads = 1;
  if (teacher_qk) {
    const Tensor& qt = in.qt.value();
    if (!in.qt.defined() || qt.dim() != 4 || qt.size(0) != B || qt.size(1) != H || qt.size(2) != N ||
        (!in.same_qk && (!in.kt.defined() || in.kt.shape() != qt.shape()))) {
      if (why) *why = "teacher Q/K are not (B, H, N, dt) for the student's B, H, N";
      return Var();
    }
    dt = qt.size(3);
  } else {
    const Tensor& z = in.zt.value();
    const bool ok3 = z.dim() == 3 && z.size(0) == B && z.size(1) == N && z.size(2) == N;
    const bool ok4 = z.dim() == 4 && z.size(0) == B && (z.size(1) == H || z.size(1) == 1) && z.size(2) == N &&
                     z.size(3) == N;
    if (!ok3 && !ok4) {
      if (why) *why = "teacher logits are not (B, N, N) or (B, H|1, N, N)";
      return Var();
    }
    zt_heads = ok4 ? z.size(1) : 1;
  }
  cuda::FusedAttnShape shape;
  shape.B = B;
  shape.H = H;
  shape.N = N;
  shape.d = d;
  shape.dt = dt;
  shape.teacher = teacher_qk ? cuda::fused::kTeacherQK : cuda::fused::kTeacherLogits;
  shape.zt_heads = zt_heads;
  shape.dtype = static_cast<int>(q0.dtype());
  if (!cuda::fused_attn_can_implement(shape, why)) return Var();

  // Contiguous inputs (detached teacher sides), kept alive by the backward closure.
  struct Saved {
    Tensor q, k, qx, kx, zt, qt, kt, row_loss, lse_s, lse_t;
    cuda::fused::AttnArgs args;
    int dtype = 0, device = 0;
  };
  auto sv = std::make_shared<Saved>();
  auto cont = [](const Var& v) { return v.defined() ? v.value().contiguous() : Tensor(); };
  sv->q = cont(in.q);
  sv->k = in.same_qk ? sv->q : cont(in.k);
  if (cross) {
    sv->qx = cont(in.qx);
    sv->kx = in.same_qk ? sv->qx : cont(in.kx);
  }
  sv->zt = cont(in.zt);
  sv->qt = cont(in.qt);
  sv->kt = in.same_qk ? sv->qt : cont(in.kt);
  const Device dev = q0.device();
  sv->device = dev.index;
  sv->dtype = static_cast<int>(q0.dtype());
  sv->row_loss = Tensor::empty({B * H * N}, DType::float32, dev);
  sv->lse_s = Tensor::empty({B * H * N}, DType::float32, dev);
  sv->lse_t = Tensor::empty({B * H * N}, DType::float32, dev);
  cuda::fused::AttnArgs& a = sv->args;
  a.B = static_cast<int>(B);
  a.H = static_cast<int>(H);
  a.N = static_cast<int>(N);
  a.d = static_cast<int>(d);
  a.dt = static_cast<int>(dt);
  a.loss = in.kl ? cuda::fused::kAttnKL : cuda::fused::kAttnMSE;
  a.teacher = shape.teacher;
  a.zt_heads = static_cast<int>(zt_heads);
  const double tau = in.kl ? in.tau : 1.0;
  a.scale_s = static_cast<float>(1.0 / (std::sqrt(static_cast<double>(d)) * tau));
  a.scale_t = static_cast<float>(teacher_qk ? 1.0 / (std::sqrt(static_cast<double>(dt)) * tau) : 1.0 / tau);
  a.loss_scale = static_cast<float>(in.loss_scale);
  if (cross) {
    // One threshold for both operands: the projectors use one p for Q, K and V.
    a.key_q = cross_mask_key(in.mq.seed, in.mq.step, in.mq.stream);
    a.key_k = cross_mask_key(in.mk.seed, in.mk.step, in.mk.stream);
    a.threshold = cross_mask_threshold(in.mq.p);
  }
  a.q = detail::dev_ptr(sv->q);
  a.k = detail::dev_ptr(sv->k);
  a.qx = detail::dev_ptr(sv->qx);
  a.kx = detail::dev_ptr(sv->kx);
  a.zt = detail::dev_ptr(sv->zt);
  a.qt = detail::dev_ptr(sv->qt);
  a.kt = detail::dev_ptr(sv->kt);
  a.row_loss = static_cast<float*>(sv->row_loss.raw_data());
  a.lse_s = static_cast<float*>(sv->lse_s.raw_data());
  a.lse_t = static_cast<float*>(sv->lse_t.raw_data());
  Tensor loss = Tensor::empty(Shape{}, DType::float32, dev);
  cuda::fused_attn_forward(a, sv->dtype, static_cast<float*>(loss.raw_data()), sv->device);
  const bool same = in.same_qk;
  std::vector<Var> inputs = same ? std::vector<Var>{in.q} : std::vector<Var>{in.q, in.k};
  return make_result(loss, "fused_attention_loss", inputs, [sv, same](const Tensor& g) -> std::vector<Tensor> {
    const Tensor g32 = g.to(DType::float32).contiguous();
    cuda::fused::AttnArgs a = sv->args;
    a.grad_out = static_cast<const float*>(g32.raw_data());
    Tensor dq = Tensor::empty(sv->q.shape(), sv->q.dtype(), sv->q.device());
    Tensor dk = same ? dq : Tensor::empty(sv->k.shape(), sv->k.dtype(), sv->k.device());
    cuda::fused_attn_backward(a, sv->dtype, dq.raw_data(), dk.raw_data(), sv->device);
    return same ? std::vector<Tensor>{dq} : std::vector<Tensor>{dq, dk};
  });
#endif
}

// The group-wise linear projector's MSE, see retikd/cuda/fused_tiles.hpp.
struct FusedGlInputs {
  Var s;           // (B, C, gh, gw) aligned student map
  Var w, b;        // channel: (D, C/G, 1, 1) (or (D, C/G)), (D); spatial: (M, D, C), (M, D); b may be undefined
  Var t;           // (B, N, D) teacher tokens
  bool spatial = false;
  int64_t groups = 1, block = 4;
};

inline Var fused_gl_loss(const FusedGlInputs& in, std::string* why) {
#ifndef RETIKD_WITH_CUDA
  (void)in;
  if (why) *why = "built without CUDA";
  return Var();
#else
  const Tensor& s0 = in.s.value();
  if (!s0.is_cuda()) {
    if (why) *why = "tensors are not on a GPU";
    return Var();
  }
  for (const auto& pr : std::vector<std::pair<const Var*, const char*>>{
           {&in.w, "weight"}, {&in.b, "bias"}, {&in.t, "teacher tokens"}})
    if (pr.first->defined() && !detail::fused_tensor_ok(pr.first->value(), s0, why, pr.second)) return Var();
  if (s0.dim() != 4 || !in.w.defined() || !in.t.defined() || in.t.dim() != 3) {
    if (why) *why = "student map is not (B, C, h, w) or the weight / teacher tokens are missing";
    return Var();
  }
  const int64_t B = s0.size(0), C = s0.size(1), gh = s0.size(2), gw = s0.size(3), D = in.t.size(2);
  const int64_t groups = in.spatial ? ((gh + in.block - 1) / in.block) * ((gw + in.block - 1) / in.block) : in.groups;
  const int64_t w_numel = in.spatial ? groups * D * C : D * (C / std::max<int64_t>(groups, 1));
  if (in.t.size(0) != B || in.t.size(1) != gh * gw || in.w.value().numel() != w_numel ||
      (in.b.defined() && in.b.value().numel() != (in.spatial ? groups * D : D))) {
    if (why) *why = "weight, bias or teacher tokens do not match the student map";
    return Var();
  }
  cuda::FusedGlShape shape;
  shape.B = B;
  shape.C = C;
  shape.D = D;
  shape.gh = gh;
  shape.gw = gw;
  shape.grouping = in.spatial ? cuda::fused::kGlSpatial : cuda::fused::kGlChannel;
  shape.groups = groups;
  shape.block = in.block;
  shape.dtype = static_cast<int>(s0.dtype());
  if (!cuda::fused_gl_can_implement(shape, why)) return Var();

  struct Saved {
    Tensor s, w, b, t, resid;
    cuda::fused::GlArgs args;
    int dtype = 0, device = 0;
  };
  auto sv = std::make_shared<Saved>();
  sv->s = s0.contiguous();
  sv->w = in.w.value().contiguous();
  sv->b = in.b.defined() ? in.b.value().contiguous() : Tensor();
  sv->t = in.t.value().contiguous();
  const Device dev = s0.device();
  sv->device = dev.index;
  sv->dtype = static_cast<int>(s0.dtype());
  sv->resid = Tensor::empty({B, gh * gw, D}, DType::float32, dev);
  cuda::fused::GlArgs& a = sv->args;
  a.B = static_cast<int>(B);
  a.C = static_cast<int>(C);
  a.D = static_cast<int>(D);
  a.gh = static_cast<int>(gh);
  a.gw = static_cast<int>(gw);
  a.grouping = shape.grouping;
  a.groups = static_cast<int>(groups);
  a.block = static_cast<int>(in.block);
  a.s = sv->s.raw_data();
  a.w = sv->w.raw_data();
  a.bias = sv->b.defined() ? sv->b.raw_data() : nullptr;
  a.t = sv->t.raw_data();
  a.resid = static_cast<float*>(sv->resid.raw_data());
  a.loss_scale = static_cast<float>(1.0 / (static_cast<double>(B) * gh * gw * D));
  Tensor loss = Tensor::empty(Shape{}, DType::float32, dev);
  cuda::fused_gl_forward(a, sv->dtype, static_cast<float*>(loss.raw_data()), sv->device);
  const bool has_b = in.b.defined();
  std::vector<Var> inputs{in.s, in.w};
  if (has_b) inputs.push_back(in.b);
  const Shape w_shape = in.w.shape(), b_shape = has_b ? in.b.shape() : Shape{};
  return make_result(loss, "fused_gl_loss", inputs,
                     [sv, has_b, w_shape, b_shape](const Tensor& g) -> std::vector<Tensor> {
                       const Tensor g32 = g.to(DType::float32).contiguous();
                       cuda::fused::GlArgs a = sv->args;
                       a.grad_out = static_cast<const float*>(g32.raw_data());
                       Tensor ds = Tensor::empty(sv->s.shape(), sv->s.dtype(), sv->s.device());
                       Tensor dw = Tensor::empty(w_shape, sv->w.dtype(), sv->w.device());
                       Tensor db = has_b ? Tensor::empty(b_shape, sv->b.dtype(), sv->b.device()) : Tensor();
                       a.ds = ds.raw_data();
                       a.dw = dw.raw_data();
                       a.db = has_b ? db.raw_data() : nullptr;
                       cuda::fused_gl_backward(a, sv->dtype, sv->device);
                       std::vector<Tensor> out{ds, dw};
                       if (has_b) out.push_back(db);
                       return out;
                     });
#endif
}

}  // namespace kd
}  // namespace retikd
