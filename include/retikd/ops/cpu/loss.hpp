// retikd/ops/cpu/loss.hpp — the CPU back end of the losses (ops/loss.hpp): the row loops of cross-entropy
// (log-sum-exp, label smoothing, class weights, ignore_index) forward and backward, BCE with logits elementwise
// and its gradients, and the distillation KL's per-row terms and gradients.
//
// The front end validates (shapes, dtypes, target ranges, options), fills the saved state's inputs and reduces
// the elementwise terms; these loops only compute. The CUDA back end (ops/cuda/loss.hpp) takes the same saved
// state (ops/loss_types.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "retikd/core/parallel.hpp"
#include "retikd/core/tensor.hpp"
#include "retikd/ops/loss_types.hpp"

namespace retikd {
namespace cpu {

// Cross-entropy rows of saved.logits (N, C) against saved.targets: fills saved.lse and saved.denominator and
// returns the per-row losses (Reduction::none) or their reduction as a 0-D tensor. See ops::cross_entropy.
inline Tensor cross_entropy_forward(ops::impl::CrossEntropySaved& saved, ops::Reduction reduction) {
  using ops::Reduction;
  const int64_t N = saved.logits.size(0), C = saved.logits.size(1);
  const int64_t* pt = saved.targets.data<int64_t>();
  saved.lse = Tensor::empty({N}, saved.logits.dtype());
  Tensor per_row = Tensor::empty({N}, saved.logits.dtype());
  return dispatch_floating(saved.logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pz = saved.logits.data<T>();
    const T* pw = saved.weight.defined() ? saved.weight.data<T>() : nullptr;
    T* plse = saved.lse.data<T>();
    T* pl = per_row.data<T>();
    const T eps = static_cast<T>(saved.label_smoothing);
    parallel_for(0, N, std::max<int64_t>(1, (int64_t(1) << 14) / C), [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        const T* z = pz + i * C;
        T m = z[0];
        for (int64_t c = 1; c < C; ++c) m = std::max(m, z[c]);
        T s = T(0);
        for (int64_t c = 0; c < C; ++c) s += std::exp(z[c] - m);
        const T lse = m + std::log(s);
        plse[i] = lse;
        const int64_t t = pt[i];
        if (t == saved.ignore_index) {
          pl[i] = T(0);
          continue;
        }
        const T wt = pw ? pw[t] : T(1);
        T loss = (T(1) - eps) * wt * (lse - z[t]);
        if (eps != T(0)) {
          // −Σ_c w_c log p_ic, the smoothing term of PyTorch's formula
          T smooth = T(0);
          for (int64_t c = 0; c < C; ++c) smooth += (pw ? pw[c] : T(1)) * (lse - z[c]);
          loss += eps / static_cast<T>(C) * smooth;
        }
        pl[i] = loss;
      }
    });
    double total = 0.0, denom = 0.0;
    for (int64_t i = 0; i < N; ++i) {
      if (pt[i] == saved.ignore_index) continue;
      total += static_cast<double>(pl[i]);
      denom += pw ? static_cast<double>(pw[pt[i]]) : 1.0;
    }
    saved.denominator = reduction == Reduction::mean ? denom : 1.0;
    if (reduction == Reduction::none) return per_row;
    return Tensor::scalar(total / saved.denominator, saved.logits.dtype());
  });
}

// Gradient of cross_entropy with respect to the logits; g is 0-D (mean, sum) or (N,) (none), on the CPU.
inline Tensor cross_entropy_backward(const Tensor& g, const ops::impl::CrossEntropySaved& s,
                                     ops::Reduction reduction) {
  using ops::Reduction;
  const int64_t N = s.logits.size(0), C = s.logits.size(1);
  Tensor gx = Tensor::empty(s.logits.shape(), s.logits.dtype());
  if (gx.numel() == 0) return gx;
  const Tensor gc = g.to(s.logits.dtype()).contiguous();
  dispatch_floating(s.logits.dtype(), "cross_entropy backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pz = s.logits.data<T>();
    const T* plse = s.lse.data<T>();
    const T* pw = s.weight.defined() ? s.weight.data<T>() : nullptr;
    const int64_t* pt = s.targets.data<int64_t>();
    const T* pg = gc.data<T>();
    T* pgx = gx.data<T>();
    const T eps = static_cast<T>(s.label_smoothing);
    const T eps_c = eps / static_cast<T>(C);
    T weight_sum = static_cast<T>(C);
    if (pw) {
      weight_sum = T(0);
      for (int64_t c = 0; c < C; ++c) weight_sum += pw[c];
    }
    const bool per_row = reduction == Reduction::none;
    const T scale = per_row ? T(1) : pg[0] / static_cast<T>(s.denominator);
    parallel_for(0, N, std::max<int64_t>(1, (int64_t(1) << 14) / C), [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        T* out = pgx + i * C;
        const int64_t t = pt[i];
        if (t == s.ignore_index) {
          for (int64_t c = 0; c < C; ++c) out[c] = T(0);
          continue;
        }
        const T k = per_row ? pg[i] : scale;
        const T* z = pz + i * C;
        const T wt = pw ? pw[t] : T(1);
        // ∂ℓ_i/∂z_ic = p_ic·((1−ε)w_t + (ε/C)Σw) − (1−ε)w_t·[c = t] − (ε/C)w_c
        const T p_coeff = (T(1) - eps) * wt + eps_c * weight_sum;
        for (int64_t c = 0; c < C; ++c) {
          const T p = std::exp(z[c] - plse[i]);
          out[c] = k * (p * p_coeff - eps_c * (pw ? pw[c] : T(1)));
        }
        out[t] -= k * (T(1) - eps) * wt;
      }
    });
  });
  return gx;
}

// Elementwise ℓ = (1 − y)·x + (1 + (pw − 1)·y)·softplus(−x), softplus(−x) = max(−x, 0) + log1p(exp(−|x|)).
// pw: pos_weight already expanded to x's shape and made contiguous (undefined: 1).
inline Tensor bce_with_logits_elementwise(const Tensor& x, const Tensor& y, const Tensor& pw) {
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  dispatch_floating(x.dtype(), "binary_cross_entropy_with_logits", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = x.data<T>();
    const T* py = y.data<T>();
    const T* ppw = pw.defined() ? pw.data<T>() : nullptr;
    T* po = out.data<T>();
    parallel_for(0, x.numel(), 1 << 14, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        const T v = px[i], t = py[i];
        const T sp = std::max(-v, T(0)) + std::log1p(std::exp(-std::abs(v)));
        const T c = ppw ? T(1) + (ppw[i] - T(1)) * t : T(1);
        po[i] = (T(1) - t) * v + c * sp;
      }
    });
  });
  return out;
}

// The BCE-with-logits gradients for logits and targets (undefined where not wanted) from ge, the gradient
// reaching each elementwise term:
//   ∂ℓ/∂x = (1 − y) − (1 + (pw − 1)·y)·σ(−x),   ∂ℓ/∂y = −x + (pw − 1)·softplus(−x)
inline std::vector<Tensor> bce_with_logits_backward(const Tensor& ge, const Tensor& x, const Tensor& y,
                                                    const Tensor& pw, bool want_x, bool want_y) {
  Tensor gx = want_x ? Tensor::empty(x.shape(), x.dtype()) : Tensor();
  Tensor gy = want_y ? Tensor::empty(x.shape(), x.dtype()) : Tensor();
  dispatch_floating(x.dtype(), "binary_cross_entropy_with_logits backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = x.data<T>();
    const T* py = y.data<T>();
    const T* ppw = pw.defined() ? pw.data<T>() : nullptr;
    const T* pg = ge.data<T>();
    T* pgx = want_x ? gx.data<T>() : nullptr;
    T* pgy = want_y ? gy.data<T>() : nullptr;
    parallel_for(0, x.numel(), 1 << 14, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        const T v = px[i], t = py[i], w = ppw ? ppw[i] : T(1);
        if (pgx) {
          const T e = std::exp(-std::abs(v));
          const T sig_neg = v >= T(0) ? e / (T(1) + e) : T(1) / (T(1) + e);  // σ(−x), stably
          pgx[i] = pg[i] * ((T(1) - t) - (T(1) + (w - T(1)) * t) * sig_neg);
        }
        if (pgy) {
          const T sp = std::max(-v, T(0)) + std::log1p(std::exp(-std::abs(v)));
          pgy[i] = pg[i] * (-v + (w - T(1)) * sp);
        }
      }
    });
  });
  return {gx, gy};
}

// The distillation KL's elementwise terms p(log p − log q) of saved.s / saved.t, R rows of C, p = softmax(t/τ),
// q = softmax(s/τ); fills saved.lse_s and saved.lse_t for the backward. See ops::kl_div.
inline Tensor kl_div_terms(ops::impl::KlDivSaved& saved, int64_t R, int64_t C) {
  const double tau = saved.tau;
  saved.lse_s = Tensor::empty({R}, saved.s.dtype());
  saved.lse_t = Tensor::empty({R}, saved.s.dtype());
  Tensor terms = Tensor::empty(saved.shape, saved.s.dtype());  // elementwise p(log p − log q)
  dispatch_floating(saved.s.dtype(), "kl_div", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* ps = saved.s.data<T>();
    const T* pt = saved.t.data<T>();
    T* pls = saved.lse_s.data<T>();
    T* plt = saved.lse_t.data<T>();
    T* pe = terms.data<T>();
    const T inv_tau = T(1) / static_cast<T>(tau);
    parallel_for(0, R, std::max<int64_t>(1, (int64_t(1) << 13) / std::max<int64_t>(C, 1)),
                 [&](int64_t lo, int64_t hi) {
                   for (int64_t r = lo; r < hi; ++r) {
                     const T* s = ps + r * C;
                     const T* t = pt + r * C;
                     T ms = s[0] * inv_tau, mt = t[0] * inv_tau;
                     for (int64_t c = 1; c < C; ++c) {
                       ms = std::max(ms, s[c] * inv_tau);
                       mt = std::max(mt, t[c] * inv_tau);
                     }
                     T ss = T(0), st = T(0);
                     for (int64_t c = 0; c < C; ++c) {
                       ss += std::exp(s[c] * inv_tau - ms);
                       st += std::exp(t[c] * inv_tau - mt);
                     }
                     const T lse_s = ms + std::log(ss), lse_t = mt + std::log(st);
                     pls[r] = lse_s;
                     plt[r] = lse_t;
                     for (int64_t c = 0; c < C; ++c) {
                       const T log_p = t[c] * inv_tau - lse_t, log_q = s[c] * inv_tau - lse_s;
                       const T p = std::exp(log_p);
                       pe[r * C + c] = p == T(0) ? T(0) : p * (log_p - log_q);
                     }
                   }
                 });
  });
  return terms;
}

// Gradients of kl_div from ge, the gradient reaching each term, into gs / gt (allocated by the caller where
// wanted). See ops::impl::kl_div_backward for the formulas.
inline std::vector<Tensor> kl_div_backward(const ops::impl::KlDivSaved& sv, const Tensor& ge, Tensor gs, Tensor gt,
                                           bool want_s, bool want_t, int64_t R, int64_t C) {
  dispatch_floating(sv.s.dtype(), "kl_div backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* ps = sv.s.data<T>();
    const T* pt = sv.t.data<T>();
    const T* pls = sv.lse_s.data<T>();
    const T* plt = sv.lse_t.data<T>();
    const T* pg = ge.data<T>();
    T* pgs = want_s ? gs.data<T>() : nullptr;
    T* pgt = want_t ? gt.data<T>() : nullptr;
    const T inv_tau = T(1) / static_cast<T>(sv.tau);
    parallel_for(0, R, std::max<int64_t>(1, (int64_t(1) << 13) / std::max<int64_t>(C, 1)),
                 [&](int64_t lo, int64_t hi) {
                   for (int64_t r = lo; r < hi; ++r) {
                     const T* s = ps + r * C;
                     const T* t = pt + r * C;
                     const T* G = pg + r * C;
                     T sum_gp = T(0), sum_gpl = T(0);
                     for (int64_t c = 0; c < C; ++c) {
                       const T log_p = t[c] * inv_tau - plt[r];
                       const T p = std::exp(log_p);
                       if (p == T(0)) continue;
                       sum_gp += G[c] * p;
                       sum_gpl += G[c] * p * (log_p - (s[c] * inv_tau - pls[r]) + T(1));
                     }
                     for (int64_t c = 0; c < C; ++c) {
                       const T log_p = t[c] * inv_tau - plt[r];
                       const T log_q = s[c] * inv_tau - pls[r];
                       const T p = std::exp(log_p);
                       if (pgs) pgs[r * C + c] = inv_tau * (std::exp(log_q) * sum_gp - G[c] * p);
                       if (pgt)
                         pgt[r * C + c] =
                             p == T(0) ? T(0) : inv_tau * p * (G[c] * (log_p - log_q + T(1)) - sum_gpl);
                     }
                   }
                 });
  });
  return {gs, gt};
}

}  // namespace cpu
}  // namespace retikd
