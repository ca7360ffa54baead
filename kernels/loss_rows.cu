// kernels/loss_rows.cu — the KL-divergence and cross-entropy row kernels of the losses (one warp per row,
// float32), forward and backward (include/retikd/cuda/nn_ops.hpp).
#include "nn_common.cuh"

namespace retikd {
namespace cuda {
namespace {

using namespace nn_common;

// ---- KL and cross-entropy rows (one warp per row, float32) ---------------------------------------------------

__global__ void __launch_bounds__(kThreads) kl_forward_kernel(const float* s, const float* t, float* terms,
                                                              float* lse_s, float* lse_t, int64_t R, int64_t C,
                                                              float inv_tau) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= R) return;
  const float* sr = s + r * C;
  const float* tr = t + r * C;
  float ms = -INFINITY, mt = -INFINITY;
  for (int64_t c = lane; c < C; c += 32) {
    ms = fmaxf(ms, sr[c] * inv_tau);
    mt = fmaxf(mt, tr[c] * inv_tau);
  }
  ms = warp_max_f(ms);
  mt = warp_max_f(mt);
  float ss = 0.f, st = 0.f;
  for (int64_t c = lane; c < C; c += 32) {
    ss += expf(sr[c] * inv_tau - ms);
    st += expf(tr[c] * inv_tau - mt);
  }
  const float ls = ms + logf(detail::warp_sum_f(ss)), lt = mt + logf(detail::warp_sum_f(st));
  if (lane == 0) {
    lse_s[r] = ls;
    lse_t[r] = lt;
  }
  for (int64_t c = lane; c < C; c += 32) {
    const float log_p = tr[c] * inv_tau - lt, log_q = sr[c] * inv_tau - ls;
    const float p = expf(log_p);
    terms[r * C + c] = p == 0.f ? 0.f : p * (log_p - log_q);
  }
}

__global__ void __launch_bounds__(kThreads) kl_backward_kernel(const float* s, const float* t, const float* lse_s,
                                                               const float* lse_t, const float* G, float* gs,
                                                               float* gt, int64_t R, int64_t C, float inv_tau) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= R) return;
  const float* sr = s + r * C;
  const float* tr = t + r * C;
  const float* Gr = G + r * C;
  float sum_gp = 0.f, sum_gpl = 0.f;
  for (int64_t c = lane; c < C; c += 32) {
    const float log_p = tr[c] * inv_tau - lse_t[r];
    const float p = expf(log_p);
    if (p == 0.f) continue;
    sum_gp += Gr[c] * p;
    sum_gpl += Gr[c] * p * (log_p - (sr[c] * inv_tau - lse_s[r]) + 1.f);
  }
  sum_gp = detail::warp_sum_f(sum_gp);
  sum_gpl = detail::warp_sum_f(sum_gpl);
  for (int64_t c = lane; c < C; c += 32) {
    const float log_p = tr[c] * inv_tau - lse_t[r], log_q = sr[c] * inv_tau - lse_s[r];
    const float p = expf(log_p);
    if (gs) gs[r * C + c] = inv_tau * (expf(log_q) * sum_gp - Gr[c] * p);
    if (gt) gt[r * C + c] = p == 0.f ? 0.f : inv_tau * p * (Gr[c] * (log_p - log_q + 1.f) - sum_gpl);
  }
}

__global__ void __launch_bounds__(kThreads) ce_forward_kernel(const float* z, const int64_t* targets,
                                                              const float* weight, float* lse, float* per_row,
                                                              int64_t N, int64_t C, float eps, int64_t ignore) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (i >= N) return;
  const float* zr = z + i * C;
  float m = -INFINITY;
  for (int64_t c = lane; c < C; c += 32) m = fmaxf(m, zr[c]);
  m = warp_max_f(m);
  float s = 0.f;
  for (int64_t c = lane; c < C; c += 32) s += expf(zr[c] - m);
  const float l = m + logf(detail::warp_sum_f(s));
  const int64_t t = targets[i];
  float smooth = 0.f;
  if (eps != 0.f && t != ignore)
    for (int64_t c = lane; c < C; c += 32) smooth += (weight ? weight[c] : 1.f) * (l - zr[c]);
  smooth = detail::warp_sum_f(smooth);
  if (lane != 0) return;
  lse[i] = l;
  if (t == ignore) {
    per_row[i] = 0.f;
    return;
  }
  const float wt = weight ? weight[t] : 1.f;
  float loss = (1.f - eps) * wt * (l - zr[t]);
  if (eps != 0.f) loss += eps / static_cast<float>(C) * smooth;
  per_row[i] = loss;
}

__global__ void __launch_bounds__(kThreads) ce_backward_kernel(const float* g, bool per_row, float inv_den,
                                                               const float* z, const float* lse,
                                                               const int64_t* targets, const float* weight,
                                                               float weight_sum, float* gx, int64_t N, int64_t C,
                                                               float eps, int64_t ignore) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (i >= N) return;
  float* out = gx + i * C;
  const int64_t t = targets[i];
  if (t == ignore) {
    for (int64_t c = lane; c < C; c += 32) out[c] = 0.f;
    return;
  }
  const float k = per_row ? g[i] : g[0] * inv_den;
  const float* zr = z + i * C;
  const float wt = weight ? weight[t] : 1.f, eps_c = eps / static_cast<float>(C);
  const float p_coeff = (1.f - eps) * wt + eps_c * weight_sum;
  for (int64_t c = lane; c < C; c += 32) {
    const float p = expf(zr[c] - lse[i]);
    float v = k * (p * p_coeff - eps_c * (weight ? weight[c] : 1.f));
    if (c == t) v -= k * (1.f - eps) * wt;
    out[c] = v;
  }
}

}  // namespace

void kl_rows_forward(const float* s, const float* t, float* terms, float* lse_s, float* lse_t, int64_t R, int64_t C,
                     float inv_tau, int device) {
  check_sizes("retikd::cuda::kl_rows_forward", R >= 0 && C > 0);
  if (R == 0) return;
  detail::DeviceGuard guard(device);
  kl_forward_kernel<<<warp_row_blocks(R), kThreads, 0, detail::current_stream()>>>(s, t, terms, lse_s, lse_t, R, C, inv_tau);
  RETIKD_CUDA_CHECK_LAUNCH();
}

void kl_rows_backward(const float* s, const float* t, const float* lse_s, const float* lse_t, const float* G,
                      float* gs, float* gt, int64_t R, int64_t C, float inv_tau, int device) {
  check_sizes("retikd::cuda::kl_rows_backward", R >= 0 && C > 0);
  if (R == 0) return;
  detail::DeviceGuard guard(device);
  kl_backward_kernel<<<warp_row_blocks(R), kThreads, 0, detail::current_stream()>>>(s, t, lse_s, lse_t, G, gs, gt, R, C, inv_tau);
  RETIKD_CUDA_CHECK_LAUNCH();
}

void ce_rows_forward(const float* z, const int64_t* targets, const float* weight, float* lse, float* per_row,
                     int64_t N, int64_t C, float label_smoothing, int64_t ignore_index, int device) {
  check_sizes("retikd::cuda::ce_rows_forward", N >= 0 && C > 0);
  if (N == 0) return;
  detail::DeviceGuard guard(device);
  ce_forward_kernel<<<warp_row_blocks(N), kThreads, 0, detail::current_stream()>>>(z, targets, weight, lse, per_row, N, C, label_smoothing,
                                                      ignore_index);
  RETIKD_CUDA_CHECK_LAUNCH();
}

void ce_rows_backward(const float* g, bool per_row, float inv_denominator, const float* z, const float* lse,
                      const int64_t* targets, const float* weight, float weight_sum, float* gx, int64_t N, int64_t C,
                      float label_smoothing, int64_t ignore_index, int device) {
  check_sizes("retikd::cuda::ce_rows_backward", N >= 0 && C > 0);
  if (N == 0) return;
  detail::DeviceGuard guard(device);
  ce_backward_kernel<<<warp_row_blocks(N), kThreads, 0, detail::current_stream()>>>(g, per_row, inv_denominator, z, lse, targets, weight,
                                                       weight_sum, gx, N, C, label_smoothing, ignore_index);
  RETIKD_CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace retikd
