// scripts/gpu_bench_fused.cpp — CUDA-event timings of the fused projector kernels at torch_anchor.py's shapes,
// built by scripts/gpu_prepare.sh and run by scripts/gpu_check.sh (warm-up 5, 30 timed iterations, median).
//
// What is timed, and how it differs from torch_anchor.py's rows (so the ratio is read honestly):
//   pca: the bilinear 7×7 → 14×14 upsample of the student map (forward and backward, as torch's nn.Upsample),
//        the QK 1×1 projection as cuBLAS GEMMs (B·196 × 1280 → 2·768, forward + both backward GEMMs) and the
//        fused paper-target KL (12 heads × 64, 196 tokens, teacher affinity (B, 196, 196)) forward and backward.
//        torch projects Q, K and V (3·768) where the KL needs Q and K only, and its target is per head; the
//        teacher side is detached in both.
//   gl:  the same upsample, then the fused channel-grouped GL (8 groups, 1280 → 768, 196 positions) forward and
//        backward.
// Rows: *_fp32 strict fp32 everywhere; pca_tf32proj TF32 on the projection GEMMs only — what torch's defaults
// do (cuDNN convolutions may use TF32, matmuls may not); gl_tf32 TF32 in the GL GEMMs (torch's grouped 1×1
// convolution is a cuDNN convolution); *_kernel the fused loss alone; *_tiled the same through the tiled
// (sm_53) route instead of the automatic choice (cuda::FusedStrategy).
// Output lines: "retikd <key> <median ms>", parsed by gpu_check.sh.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <random>
#include <vector>

#include "retikd/cuda/blas.hpp"
#include "retikd/cuda/fused.hpp"
#include "retikd/cuda/nn_ops.hpp"
#include "retikd/cuda/runtime.hpp"
#include "retikd/kd/cross_mask.hpp"

namespace rc = retikd::cuda;
namespace fz = retikd::cuda::fused;

static float* dev_random(size_t n, unsigned seed) {
  std::vector<float> h(n);
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.f, 1.f);
  for (auto& v : h) v = d(g);
  auto* p = static_cast<float*>(rc::device_malloc(n * sizeof(float), 0));
  rc::copy_host_to_device(p, h.data(), n * sizeof(float), 0);
  return p;
}

static double median_ms(const std::function<void()>& step) {
  for (int i = 0; i < 5; ++i) step();
  rc::synchronize(0);
  std::vector<float> t;
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  for (int i = 0; i < 30; ++i) {
    cudaEventRecord(a);
    step();
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float ms = 0.f;
    cudaEventElapsedTime(&ms, a, b);
    t.push_back(ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

int main() {
  if (rc::device_count() == 0) {
    std::printf("no CUDA device\n");
    return 1;
  }
  std::printf("device %s (sm_%d)\n", rc::device_name(0).c_str(), rc::compute_capability(0));
  const int B = 32, H = 12, d = 64, N = 196, C = 1280, D = 768;
  // ---- PCA ----
  float* tok = dev_random(size_t(B) * N * C, 1);       // student tokens (B·N, C)
  float* wqkv = dev_random(size_t(2) * D * C, 2);      // (2·768, 1280)
  float* qk = dev_random(size_t(B) * N * 2 * D, 3);    // projection output (B·N, 2·768) (layout as heads below)
  float* gqk = dev_random(size_t(B) * N * 2 * D, 4);
  float* gtok = dev_random(size_t(B) * N * C, 5);
  float* gw = dev_random(size_t(2) * D * C, 6);
  float* zt = dev_random(size_t(B) * N * N, 7);
  float* row = dev_random(size_t(B) * H * N, 8);
  float* ls = dev_random(size_t(B) * H * N, 9);
  float* lt = dev_random(size_t(B) * H * N, 10);
  float* loss = dev_random(1, 11);
  float* gout = dev_random(1, 12);
  fz::AttnArgs a;
  a.B = B;
  a.H = H;
  a.N = N;
  a.d = d;
  a.zt_heads = 1;
  a.scale_s = 1.f / 8.f;
  a.loss_scale = 1.f / (B * H);
  a.q = qk;  // the (B, H, N, d) views of the projection (head-major layout assumed; the time is what counts)
  a.k = qk + size_t(B) * H * N * d;
  a.zt = zt;
  a.row_loss = row;
  a.lse_s = ls;
  a.lse_t = lt;
  a.grad_out = gout;
  void* dq = gqk;
  void* dk = gqk + size_t(B) * H * N * d;
  const long M = long(B) * N;
  // The student map (B, 1280, 7, 7) upsampled to the 14 × 14 grid, and its gradient back.
  float* map7 = dev_random(size_t(B) * C * 49, 13);
  float* gmap7 = dev_random(size_t(B) * C * 49, 14);
  auto upsample = [&](const float* x, float* y) {
    rc::bilinear_forward(x, y, long(B) * C, 7, 7, 14, 14, false, rc::kFloat32, 0);
  };
  auto upsample_back = [&](const float* gy, float* gx) {
    rc::bilinear_backward(gy, gx, long(B) * C, 7, 7, 14, 14, false, rc::kFloat32, 0);
  };
  bool tf32_projection = false;
  auto pca = [&] {
    upsample(map7, tok);
    rc::set_allow_tf32(tf32_projection);
    rc::gemm(false, true, M, 2 * D, C, 1.f, tok, C, 0, wqkv, C, 0, 0.f, qk, 2 * D, 0, 1, rc::kFloat32, 0);
    rc::set_allow_tf32(false);
    rc::fused_attn_forward(a, rc::kFloat32, loss, 0);
    rc::fused_attn_backward(a, rc::kFloat32, dq, dk, 0);
    rc::set_allow_tf32(tf32_projection);
    rc::gemm(false, false, M, C, 2 * D, 1.f, gqk, 2 * D, 0, wqkv, C, 0, 0.f, gtok, C, 0, 1, rc::kFloat32, 0);
    rc::gemm(true, false, 2 * D, C, M, 1.f, gqk, 2 * D, 0, tok, C, 0, 0.f, gw, C, 0, 1, rc::kFloat32, 0);
    rc::set_allow_tf32(false);
    upsample_back(gtok, gmap7);
  };
  std::printf("retikd pca_fp32 %.4f\n", median_ms(pca));
  tf32_projection = true;
  std::printf("retikd pca_tf32proj %.4f\n", median_ms(pca));
  tf32_projection = false;
  auto pca_kernel_only = [&] {
    rc::fused_attn_forward(a, rc::kFloat32, loss, 0);
    rc::fused_attn_backward(a, rc::kFloat32, dq, dk, 0);
  };
  std::printf("retikd pca_kernel %.4f (route %s)\n", median_ms(pca_kernel_only),
              rc::fused_attn_route(a, rc::kFloat32, 0) == rc::kFusedGemm ? "gemm" : "tiled");
  rc::set_fused_strategy(rc::kFusedTiled);
  std::printf("retikd pca_kernel_tiled %.4f\n", median_ms(pca_kernel_only));
  std::printf("retikd pca_fp32_tiled %.4f\n", median_ms(pca));
  rc::set_fused_strategy(rc::kFusedAuto);
  // ---- GL ----
  float* s = dev_random(size_t(B) * C * N, 20);
  float* w = dev_random(size_t(D) * (C / 8), 21);
  float* bias = dev_random(D, 22);
  float* t = dev_random(size_t(B) * N * D, 23);
  float* resid = dev_random(size_t(B) * N * D, 24);
  float* ds = dev_random(size_t(B) * C * N, 25);
  float* dw = dev_random(size_t(D) * (C / 8), 26);
  float* db = dev_random(D, 27);
  fz::GlArgs g;
  g.B = B;
  g.C = C;
  g.D = D;
  g.gh = g.gw = 14;
  g.grouping = fz::kGlChannel;
  g.groups = 8;
  g.s = s;
  g.w = w;
  g.bias = bias;
  g.t = t;
  g.resid = resid;
  g.loss_scale = 1.f / (float(B) * N * D);
  g.grad_out = gout;
  g.ds = ds;
  g.dw = dw;
  g.db = db;
  auto gl = [&] {
    upsample(map7, s);
    rc::fused_gl_forward(g, rc::kFloat32, loss, 0);
    rc::fused_gl_backward(g, rc::kFloat32, 0);
    upsample_back(ds, gmap7);
  };
  std::printf("retikd gl_fp32 %.4f (route %s)\n", median_ms(gl),
              rc::fused_gl_route(g, rc::kFloat32, 0) == rc::kFusedGemm ? "gemm" : "tiled");
  rc::set_allow_tf32(true);
  std::printf("retikd gl_tf32 %.4f\n", median_ms(gl));
  rc::set_allow_tf32(false);
  rc::set_fused_strategy(rc::kFusedTiled);
  std::printf("retikd gl_fp32_tiled %.4f\n", median_ms(gl));
  rc::set_fused_strategy(rc::kFusedAuto);
  rc::synchronize(0);
  return 0;
}
