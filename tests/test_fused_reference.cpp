// tests/test_fused_reference.cpp — proves the fused projector kernels' algorithm on the CPU: the block programs
// of retikd/cuda/fused_tiles.hpp (the code kernels/fused.cu launches) run through the serial emulation of
// retikd/cuda/fused_emulate.hpp and are compared with the unfused kd/ composition (partial_cross_replace,
// attention_logits / value_relation, attention_kl_loss / feature_mse_loss, GroupLinearProjector) computed in
// float64 with autograd — loss values and every gradient, at sizes that are not multiples of the tiles (N = 37
// spans two 32-row tiles; head dims 20 and 45 cover one and two 32-wide chunks), fp32 storage and fp16 storage
// with fp32 accumulation. Runs without a GPU; the GPU test (test_cuda_fused.cpp) then only has to prove the
// launch.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "retikd/core/random.hpp"
#include "retikd/cuda/fused_emulate.hpp"
#include "retikd/kd/gl_projector.hpp"
#include "retikd/kd/losses.hpp"
#include "retikd/kd/partial_cross.hpp"
#include "test_util.hpp"

using namespace retikd;
namespace fz = retikd::cuda::fused;
using retikd::test::check_close;
using retikd::test::scaled_atol;

namespace {

// Storage type of the fused side: float or Half. Inputs are drawn in double, rounded to the storage type
// (test::to_storage), and the rounded values (test::stored_values) feed the float64 reference, so the only
// differences left are the fused side's fp32 accumulation (and, for Half, the rounding of the gradients it
// stores).

std::vector<double> random_values(Generator& gen, int64_t n, double scale) {
  Tensor t = Tensor::empty({n}, DType::float64);
  normal_(t, 0.0, scale, gen);
  return t.to_vector<double>();
}

Var leaf(const std::vector<double>& v, const Shape& shape, bool grad) {
  return Var(Tensor::from_vector(v, shape), grad);
}

struct AttnCase {
  int B, H, N, d, dt;
  int loss;     // fz::kAttnKL or fz::kAttnMSE
  int teacher;  // fz::kTeacherLogits or fz::kTeacherQK
  int zt_heads;
  double p, tau;
  bool same_qk;  // Q and K are one tensor (V·Vᵀ)
};

// One PCA case: reference through kd/, fused through the emulation, loss and gradients compared.
template <class T>
void run_attn_case(const AttnCase& c, double rtol, double atol_rel, uint64_t seed) {
  CAPTURE(c.B);
  CAPTURE(c.H);
  CAPTURE(c.N);
  CAPTURE(c.d);
  CAPTURE(c.dt);
  CAPTURE(c.loss);
  CAPTURE(c.teacher);
  CAPTURE(c.p);
  CAPTURE(seed);
  Generator gen(seed);
  const int64_t nq = int64_t(c.B) * c.H * c.N * c.d, nt = int64_t(c.B) * c.H * c.N * c.dt;
  const Shape sq{c.B, c.H, c.N, c.d}, st{c.B, c.H, c.N, c.dt};
  // Inputs rounded to the storage type first.
  const auto q_s = test::to_storage<T>(random_values(gen, nq, 1.0));
  const auto k_s = test::to_storage<T>(random_values(gen, nq, 1.0));
  const auto qx_s = test::to_storage<T>(random_values(gen, nq, 1.0));
  const auto kx_s = test::to_storage<T>(random_values(gen, nq, 1.0));
  const auto qt_s = test::to_storage<T>(random_values(gen, nt, 1.0));
  const auto kt_s = test::to_storage<T>(random_values(gen, nt, 1.0));
  const int64_t nz = int64_t(c.B) * c.zt_heads * c.N * c.N;
  const auto zt_s = test::to_storage<T>(random_values(gen, nz, 2.0));

  // ---- reference (float64, autograd) ----
  const uint64_t step = 7, mseed = 0xC0FFEEULL;
  const uint32_t stream_q = c.same_qk ? kd::kCrossMaskV : kd::kCrossMaskQ;
  const uint32_t stream_k = c.same_qk ? kd::kCrossMaskV : kd::kCrossMaskK;
  Var q = leaf(test::stored_values(q_s), sq, true);
  Var k = c.same_qk ? q : leaf(test::stored_values(k_s), sq, true);
  Var qx = leaf(test::stored_values(qx_s), sq, false);
  Var kx = c.same_qk ? qx : leaf(test::stored_values(kx_s), sq, false);
  Var qu = kd::partial_cross_replace(q, qx, kd::CrossMaskSpec{c.p, mseed, step, stream_q});
  Var ku = c.same_qk ? qu : kd::partial_cross_replace(k, kx, kd::CrossMaskSpec{c.p, mseed, step, stream_k});
  Var student = c.same_qk ? kd::value_relation(qu) : kd::attention_logits(qu, ku);
  Var teacher;
  if (c.teacher == fz::kTeacherQK) {
    Var qt = leaf(test::stored_values(qt_s), st, false);
    Var kt = c.same_qk ? qt : leaf(test::stored_values(kt_s), st, false);
    teacher = c.same_qk ? kd::value_relation(qt) : kd::attention_logits(qt, kt);
  } else {
    teacher = c.zt_heads == 1 ? leaf(test::stored_values(zt_s), {c.B, c.N, c.N}, false)
                              : leaf(test::stored_values(zt_s), {c.B, c.H, c.N, c.N}, false);
    // The MSE target takes a per-head map: one shared map is broadcast over the heads.
    if (c.loss == fz::kAttnMSE && c.zt_heads == 1)
      teacher = ops::expand(ops::unsqueeze(teacher, 1), {c.B, c.H, c.N, c.N});
  }
  Var ref_loss = c.loss == fz::kAttnKL ? kd::attention_kl_loss(student, teacher, c.tau)
                                       : kd::feature_mse_loss(student, teacher);
  const double g_out = 1.75;  // upstream gradient ≠ 1, so a missing factor shows
  ops::mul(ref_loss, g_out).backward();
  const double ref_value = ref_loss.item<double>();
  const std::vector<double> ref_dq = q.grad().to_vector<double>();
  const std::vector<double> ref_dk = c.same_qk ? std::vector<double>() : k.grad().to_vector<double>();

  // ---- fused (emulated) ----
  const int64_t rows = int64_t(c.B) * c.H * c.N;
  std::vector<float> row_loss(rows, NAN), lse_s(rows, NAN), lse_t(rows, NAN);
  std::vector<float> dq_acc(nq, 0.f), dk_acc(nq, 0.f);
  const float grad_out = static_cast<float>(g_out);
  fz::AttnArgs a;
  a.B = c.B;
  a.H = c.H;
  a.N = c.N;
  a.d = c.d;
  a.dt = c.dt;
  a.loss = c.loss;
  a.teacher = c.teacher;
  a.zt_heads = c.zt_heads;
  const double tau = c.loss == fz::kAttnKL ? c.tau : 1.0;
  a.scale_s = static_cast<float>(1.0 / (std::sqrt(double(c.d)) * tau));
  a.scale_t = static_cast<float>(c.teacher == fz::kTeacherQK ? 1.0 / (std::sqrt(double(c.dt)) * tau) : 1.0 / tau);
  a.loss_scale = static_cast<float>(c.loss == fz::kAttnKL ? 1.0 / (double(c.B) * c.H)
                                                          : 1.0 / (double(c.B) * c.H * c.N * c.N));
  a.key_q = kd::cross_mask_key(mseed, step, stream_q);
  a.key_k = kd::cross_mask_key(mseed, step, stream_k);
  a.threshold = kd::cross_mask_threshold(c.p);
  a.q = q_s.data();
  a.k = c.same_qk ? q_s.data() : k_s.data();
  a.qx = qx_s.data();
  a.kx = c.same_qk ? qx_s.data() : kx_s.data();
  a.zt = zt_s.data();
  a.qt = qt_s.data();
  a.kt = c.same_qk ? qt_s.data() : kt_s.data();
  a.row_loss = row_loss.data();
  a.lse_s = lse_s.data();
  a.lse_t = lse_t.data();
  a.grad_out = &grad_out;
  a.dq = dq_acc.data();
  a.dk = c.same_qk ? dq_acc.data() : dk_acc.data();
  const double fused_value = fz::emulate_attn_forward<T>(a);
  std::vector<T> dq(nq, T(NAN)), dk(nq, T(NAN));  // poisoned: unwritten elements fail
  fz::emulate_attn_backward<T>(a, dq.data(), c.same_qk ? dq.data() : dk.data());

  CHECK(std::abs(fused_value - ref_value) <= atol_rel * std::abs(ref_value) + 1e-12);
  INFO("loss fused " << fused_value << " reference " << ref_value);
  check_close("dQ", dq, ref_dq, rtol, scaled_atol(ref_dq, atol_rel));
  if (!c.same_qk) check_close("dK", dk, ref_dk, rtol, scaled_atol(ref_dk, atol_rel));
}

struct GlCase {
  int B, C, D, gh, gw;
  kd::GlGrouping grouping;
  int groups, block;
};

template <class T>
void run_gl_case(const GlCase& c, double rtol, double atol_rel, uint64_t seed) {
  CAPTURE(c.B);
  CAPTURE(c.C);
  CAPTURE(c.D);
  CAPTURE(c.gh);
  CAPTURE(c.gw);
  CAPTURE(static_cast<int>(c.grouping));
  CAPTURE(seed);
  Generator gen(seed);
  kd::GlConfig cfg;
  cfg.grouping = c.grouping;
  cfg.in_channels = c.C;
  cfg.out_dim = c.D;
  cfg.groups = c.groups;
  cfg.block = c.block;
  cfg.grid_h = c.gh;
  cfg.grid_w = c.gw;
  kd::GroupLinearProjector proj(cfg, gen);
  Var w = c.grouping == kd::GlGrouping::channel ? proj.proj->weight : proj.weight;
  Var b = c.grouping == kd::GlGrouping::channel ? proj.proj->bias : proj.bias;
  REQUIRE(b.defined());
  // Parameters rounded to the storage type, then the module moved to float64 for the reference.
  const auto w_s = test::to_storage<T>(w.value().to_vector<double>());
  const auto b_s = test::to_storage<T>(b.value().to_vector<double>());
  proj.to(DType::float64);
  w = c.grouping == kd::GlGrouping::channel ? proj.proj->weight : proj.weight;
  b = c.grouping == kd::GlGrouping::channel ? proj.proj->bias : proj.bias;
  w.mutable_value().copy_(Tensor::from_vector(test::stored_values(w_s), w.shape()));
  b.mutable_value().copy_(Tensor::from_vector(test::stored_values(b_s), b.shape()));
  const int N = c.gh * c.gw;
  const auto s_s = test::to_storage<T>(random_values(gen, int64_t(c.B) * c.C * N, 1.0));
  const auto t_s = test::to_storage<T>(random_values(gen, int64_t(c.B) * N * c.D, 1.0));

  Var s = leaf(test::stored_values(s_s), {c.B, c.C, c.gh, c.gw}, true);
  Var t = leaf(test::stored_values(t_s), {c.B, N, c.D}, false);
  Var ref_loss = kd::feature_mse_loss(proj.project(s), t);
  const double g_out = 0.625;
  ops::mul(ref_loss, g_out).backward();

  fz::GlArgs a;
  a.B = c.B;
  a.C = c.C;
  a.D = c.D;
  a.gh = c.gh;
  a.gw = c.gw;
  a.grouping = c.grouping == kd::GlGrouping::channel ? fz::kGlChannel : fz::kGlSpatial;
  a.block = c.block;
  a.groups = c.grouping == kd::GlGrouping::channel ? c.groups : static_cast<int>(proj.num_maps());
  a.s = s_s.data();
  a.w = w_s.data();
  a.bias = b_s.data();
  a.t = t_s.data();
  std::vector<float> resid(int64_t(c.B) * N * c.D, NAN);
  a.resid = resid.data();
  a.loss_scale = static_cast<float>(1.0 / (double(c.B) * N * c.D));
  const float grad_out = static_cast<float>(g_out);
  a.grad_out = &grad_out;
  std::vector<T> ds(s_s.size(), T(NAN)), dw(w_s.size(), T(NAN)), db(b_s.size(), T(NAN));
  a.ds = ds.data();
  a.dw = dw.data();
  a.db = db.data();
  const double fused_value = fz::emulate_gl_forward<T>(a);
  fz::emulate_gl_backward<T>(a);

  INFO("loss fused " << fused_value << " reference " << ref_loss.item<double>());
  CHECK(std::abs(fused_value - ref_loss.item<double>()) <= atol_rel * ref_loss.item<double>());
  check_close("dS", ds, s.grad(), rtol, scaled_atol(s.grad(), atol_rel));
  check_close("dW", dw, w.grad(), rtol, scaled_atol(w.grad(), atol_rel));
  check_close("db", db, b.grad(), rtol, scaled_atol(b.grad(), atol_rel));
}

// fp32 accumulation against float64: relative 1e-5 of the largest term and 1e-4 of each element. fp16
// storage adds one rounding of each stored gradient (2^-11 relative): DESIGN.md §7's rtol 1e-2 for fp16.
constexpr double kRtol32 = 1e-4, kAtol32 = 1e-5;
constexpr double kRtol16 = 1e-2, kAtol16 = 1e-3;

}  // namespace

TEST_CASE("fused PCA reference: paper KL target (shared teacher map), partial cross, fp32") {
  run_attn_case<float>({2, 3, 37, 20, 0, fz::kAttnKL, fz::kTeacherLogits, 1, 0.5, 1.0, false}, kRtol32, kAtol32, 11);
  run_attn_case<float>({1, 2, 45, 45, 0, fz::kAttnKL, fz::kTeacherLogits, 1, 0.0, 2.0, false}, kRtol32, kAtol32, 12);
  run_attn_case<float>({2, 2, 9, 64, 0, fz::kAttnKL, fz::kTeacherLogits, 2, 0.3, 0.7, false}, kRtol32, kAtol32, 13);
}

TEST_CASE("fused PCA reference: cakd MSE targets (teacher Q/K on the fly, V·Vᵀ), fp32") {
  run_attn_case<float>({2, 3, 37, 20, 33, fz::kAttnMSE, fz::kTeacherQK, 1, 0.0, 1.0, false}, kRtol32, kAtol32, 21);
  run_attn_case<float>({1, 2, 33, 24, 24, fz::kAttnMSE, fz::kTeacherQK, 1, 0.5, 1.0, false}, kRtol32, kAtol32, 22);
  run_attn_case<float>({2, 2, 37, 20, 20, fz::kAttnMSE, fz::kTeacherQK, 1, 0.5, 1.0, true}, kRtol32, kAtol32, 23);
  run_attn_case<float>({1, 3, 5, 3, 3, fz::kAttnMSE, fz::kTeacherLogits, 1, 0.0, 1.0, false}, kRtol32, kAtol32, 24);
}

TEST_CASE("fused PCA reference: fp16 storage, fp32 accumulation") {
  run_attn_case<Half>({2, 3, 37, 20, 0, fz::kAttnKL, fz::kTeacherLogits, 1, 0.5, 1.0, false}, kRtol16, kAtol16, 31);
  run_attn_case<Half>({2, 2, 37, 45, 45, fz::kAttnMSE, fz::kTeacherQK, 1, 0.5, 1.0, false}, kRtol16, kAtol16, 32);
  run_attn_case<Half>({1, 2, 35, 20, 20, fz::kAttnMSE, fz::kTeacherQK, 1, 0.5, 1.0, true}, kRtol16, kAtol16, 33);
}

TEST_CASE("fused PCA reference: the replacement is hash-decided, not ignored") {
  // Same inputs, emulated without replacement (threshold 0) versus the reference with p = 0.5: the losses must
  // differ by far more than the tolerance, so the matching results above do depend on the mask.
  Generator gen(41);
  const int B = 1, H = 2, N = 17, d = 8;
  const int64_t n = int64_t(B) * H * N * d;
  const auto q = test::to_storage<float>(random_values(gen, n, 1.0)), k = test::to_storage<float>(random_values(gen, n, 1.0));
  const auto qx = test::to_storage<float>(random_values(gen, n, 1.0)), kx = test::to_storage<float>(random_values(gen, n, 1.0));
  const auto zt = test::to_storage<float>(random_values(gen, int64_t(B) * N * N, 2.0));
  std::vector<float> rl(B * H * N), ls(B * H * N), lt(B * H * N);
  fz::AttnArgs a;
  a.B = B;
  a.H = H;
  a.N = N;
  a.d = d;
  a.scale_s = static_cast<float>(1.0 / std::sqrt(double(d)));
  a.loss_scale = 1.f / (B * H);
  a.q = q.data();
  a.k = k.data();
  a.qx = qx.data();
  a.kx = kx.data();
  a.zt = zt.data();
  a.row_loss = rl.data();
  a.lse_s = ls.data();
  a.lse_t = lt.data();
  a.key_q = kd::cross_mask_key(1, 2, kd::kCrossMaskQ);
  a.key_k = kd::cross_mask_key(1, 2, kd::kCrossMaskK);
  a.threshold = kd::cross_mask_threshold(0.5);
  const double with = fz::emulate_attn_forward<float>(a);
  a.threshold = 0;
  const double without = fz::emulate_attn_forward<float>(a);
  CHECK(std::abs(with - without) > 1e-3 * std::abs(without));
}

TEST_CASE("fused GL reference: channel groups, fp32 and fp16") {
  run_gl_case<float>({3, 12, 10, 5, 7, kd::GlGrouping::channel, 2, 4}, kRtol32, kAtol32, 51);
  run_gl_case<float>({2, 40, 72, 9, 9, kd::GlGrouping::channel, 4, 4}, kRtol32, kAtol32, 52);
  run_gl_case<Half>({2, 40, 72, 9, 9, kd::GlGrouping::channel, 4, 4}, kRtol16, kAtol16, 53);
}

TEST_CASE("fused GL reference: spatial neighbourhoods, fp32 and fp16") {
  run_gl_case<float>({2, 9, 11, 7, 6, kd::GlGrouping::spatial, 1, 4}, kRtol32, kAtol32, 61);
  run_gl_case<float>({3, 70, 66, 14, 14, kd::GlGrouping::spatial, 1, 4}, kRtol32, kAtol32, 62);
  run_gl_case<Half>({2, 9, 11, 7, 6, kd::GlGrouping::spatial, 1, 4}, kRtol16, kAtol16, 63);
}
