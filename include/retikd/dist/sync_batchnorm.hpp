// retikd/dist/sync_batchnorm.hpp — synchronised batch norm: while a SyncBatchNorm is alive, every training-mode
// nn::BatchNorm2d normalises with the mean and variance of the global batch (all ranks' samples) instead of its
// rank's own, and its backward goes through those global statistics.
//
// Why optional: per-rank statistics (the default) are what each rank's batch gives and cost nothing; with a
// small batch per rank (large models on GPUs, or many ranks) they get noisy, and synchronised statistics make
// P ranks compute exactly what one process does on the global batch (the equivalence test relies on it).
// Cost: two all-reduces of 2·C doubles per batch-norm layer in forward, one in backward — latency-bound.
//
// The math (M = Σ_r M_r values per channel over the ranks, sums in float64 and in rank order):
//   forward   mean = Σ x / M,  var = Σ (x − mean)² / M (two passes, no cancellation), y = x·w·invstd + shift,
//             running_var updated with the unbiased var·M/(M−1), as ops::batch_norm does;
//   backward  dx = w·invstd·(g − Σg/M − (x − mean)·invstd²·Σg(x − mean)/M) with Σ over all ranks' g;
//             dw = Σ_local g·x̂, db = Σ_local g — the gradient reducer then averages them over the ranks.
// Each rank's loss is a mean over its own samples, so the global sums Σg hold P times the global-mean loss's
// gradient, which the reducer's 1/P undoes: the result is the gradient of the global batch's mean loss.
//
// CPU tensors only in this version (the training pipeline's path); on a GPU tensor it throws, and per-rank
// statistics remain available there.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/core/error.hpp"
#include "retikd/core/parallel.hpp"
#include "retikd/dist/process_group.hpp"
#include "retikd/nn/layers.hpp"
#include "retikd/ops/norm.hpp"

namespace retikd {
namespace dist {

class SyncBatchNorm : public nn::BatchNormTrainingHook {
 public:
  // Installs itself for the lifetime of the object (one at a time). A group of one changes nothing.
  explicit SyncBatchNorm(ProcessGroup& group) : group_(group.size() > 1 ? group.duplicate() : nullptr) {
    RETIKD_CHECK(nn::batch_norm_training_hook() == nullptr, "SyncBatchNorm: another one is already installed");
    if (group_) nn::batch_norm_training_hook() = this;
  }
  ~SyncBatchNorm() override {
    if (nn::batch_norm_training_hook() == this) nn::batch_norm_training_hook() = nullptr;
  }
  SyncBatchNorm(const SyncBatchNorm&) = delete;
  SyncBatchNorm& operator=(const SyncBatchNorm&) = delete;

  Var forward(const Var& x, const Var& weight, const Var& bias, Tensor& running_mean, Tensor& running_var,
              double momentum, double eps) override {
    const Tensor xv = x.value().contiguous();
    RETIKD_CHECK(xv.is_cpu(), "SyncBatchNorm: no GPU path in this version (input ", xv.describe(),
                 "); use per-rank batch-norm statistics on the GPU");
    RETIKD_CHECK(xv.dim() >= 2, "SyncBatchNorm: input ", shape_str(xv.shape()), " must be (N, C, ...)");
    const int64_t N = xv.size(0), C = xv.size(1), S = xv.numel() / std::max<int64_t>(1, N * C);
    const double M_local = static_cast<double>(N * S);

    // Global mean (sums and counts over ranks), then the global biased variance around it.
    std::vector<double> sums(static_cast<std::size_t>(C + 1), 0.0);
    channel_sums(xv, N, C, S, [](double v, double) { return v; }, nullptr, sums);
    sums[static_cast<std::size_t>(C)] = M_local;
    sums = group_->all_reduce(std::move(sums), "synchronised batch norm (sums)");
    const double M = sums[static_cast<std::size_t>(C)];
    RETIKD_CHECK(M > 1, "SyncBatchNorm: expected more than 1 value per channel over all ranks, got ", M);
    Tensor mean = Tensor::empty({C}, DType::float64);
    double* pm = mean.data<double>();
    for (int64_t c = 0; c < C; ++c) pm[c] = sums[static_cast<std::size_t>(c)] / M;
    std::vector<double> sq(static_cast<std::size_t>(C), 0.0);
    channel_sums(xv, N, C, S, [](double v, double m) { return (v - m) * (v - m); }, pm, sq);
    sq = group_->all_reduce(std::move(sq), "synchronised batch norm (squares)");
    Tensor var = Tensor::empty({C}, DType::float64);
    Tensor invstd = Tensor::empty({C}, DType::float64);
    for (int64_t c = 0; c < C; ++c) {
      var.data<double>()[c] = sq[static_cast<std::size_t>(c)] / M;
      invstd.data<double>()[c] = 1.0 / std::sqrt(var.data<double>()[c] + eps);
    }
    if (running_mean.defined()) {
      using ops::impl::read_1d;
      using ops::impl::write_1d;
      for (int64_t c = 0; c < C; ++c) {
        const double unbiased = var.data<double>()[c] * M / (M - 1.0);
        write_1d(running_mean, c, (1.0 - momentum) * read_1d(running_mean, c) + momentum * pm[c]);
        write_1d(running_var, c, (1.0 - momentum) * read_1d(running_var, c) + momentum * unbiased);
      }
    }
    // y = x·scale + shift with the global statistics: ops::batch_norm's evaluation path computes exactly that.
    const Tensor wv = weight.defined() ? weight.value() : Tensor();
    const Tensor bv = bias.defined() ? bias.value() : Tensor();
    Tensor stat_mean = mean, stat_var = var;
    const ops::impl::BatchNormResult r = ops::impl::batch_norm(xv, wv, bv, stat_mean, stat_var, false, 0.0, eps);

    const bool gx = x.requires_grad(), gw = weight.defined() && weight.requires_grad(),
               gb = bias.defined() && bias.requires_grad();
    std::shared_ptr<ProcessGroup> group = group_;
    return make_result(
        r.output, "sync_batch_norm", {x, weight, bias},
        [group, xv, wv, mean, invstd, M, N, C, S, gx, gw, gb](const Tensor& g) -> std::vector<Tensor> {
          return backward(*group, g, xv, wv, mean, invstd, M, N, C, S, gx, gw, gb);
        });
  }

 private:
  // out[c] += Σ over (n, s) of f(x, mean[c]) in float64, channels spread over the thread pool.
  template <class F>
  static void channel_sums(const Tensor& x, int64_t N, int64_t C, int64_t S, F f, const double* mean,
                           std::vector<double>& out) {
    dispatch_floating(x.dtype(), "sync_batch_norm", [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* px = x.data<T>();
      parallel_for(0, C, std::max<int64_t>(1, 32768 / std::max<int64_t>(1, N * S)), [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
          const double m = mean ? mean[c] : 0.0;
          double s = 0.0;
          for (int64_t n = 0; n < N; ++n) {
            const T* p = px + (n * C + c) * S;
            for (int64_t i = 0; i < S; ++i) s += f(static_cast<double>(p[i]), m);
          }
          out[static_cast<std::size_t>(c)] += s;
        }
      });
    });
  }

  static std::vector<Tensor> backward(ProcessGroup& group, const Tensor& grad_out, const Tensor& x, const Tensor& w,
                                      const Tensor& mean_t, const Tensor& invstd_t, double M, int64_t N, int64_t C,
                                      int64_t S, bool need_x, bool need_w, bool need_b) {
    const Tensor g = grad_out.contiguous();
    const double* mean = mean_t.data<double>();
    const double* invstd = invstd_t.data<double>();
    // Local Σg and Σg·(x − mean) per channel; their global sums feed dx.
    std::vector<double> sums(static_cast<std::size_t>(2 * C), 0.0);
    dispatch_floating(x.dtype(), "sync_batch_norm backward", [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* px = x.data<T>();
      const T* pg = g.data<T>();
      parallel_for(0, C, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, N * S)), [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
          double sg = 0.0, sgd = 0.0;
          for (int64_t n = 0; n < N; ++n) {
            const T* xs = px + (n * C + c) * S;
            const T* gs = pg + (n * C + c) * S;
            for (int64_t i = 0; i < S; ++i) {
              const double gv = static_cast<double>(gs[i]);
              sg += gv;
              sgd += gv * (static_cast<double>(xs[i]) - mean[c]);
            }
          }
          sums[static_cast<std::size_t>(c)] = sg;
          sums[static_cast<std::size_t>(C + c)] = sgd;
        }
      });
    });
    std::vector<Tensor> out(3);
    if (need_w) out[1] = Tensor::empty({C}, x.dtype());
    if (need_b) out[2] = Tensor::empty({C}, x.dtype());
    for (int64_t c = 0; c < C; ++c) {
      if (need_w) ops::impl::write_1d(out[1], c, sums[static_cast<std::size_t>(C + c)] * invstd[c]);
      if (need_b) ops::impl::write_1d(out[2], c, sums[static_cast<std::size_t>(c)]);
    }
    if (!need_x) {
      // Every rank joins the all-reduce below in every pass, so the collectives stay matched.
      group.all_reduce(sums, "synchronised batch norm (gradient sums)");
      return out;
    }
    const std::vector<double> global = group.all_reduce(sums, "synchronised batch norm (gradient sums)");
    const std::vector<double> wd =
        ops::impl::param_values("sync_batch_norm", "weight", w, {C}, x, 1.0);
    out[0] = Tensor::empty(x.shape(), x.dtype());
    dispatch_floating(x.dtype(), "sync_batch_norm backward", [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* px = x.data<T>();
      const T* pg = g.data<T>();
      T* pdx = out[0].data<T>();
      parallel_for(0, C, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, N * S)), [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
          const double is = invstd[c], k = wd[static_cast<std::size_t>(c)] * is;
          const double mean_g = global[static_cast<std::size_t>(c)] / M;
          const double proj = is * is * global[static_cast<std::size_t>(C + c)] / M;
          for (int64_t n = 0; n < N; ++n) {
            const T* xs = px + (n * C + c) * S;
            const T* gs = pg + (n * C + c) * S;
            T* ds = pdx + (n * C + c) * S;
            for (int64_t i = 0; i < S; ++i) {
              const double centred = static_cast<double>(xs[i]) - mean[c];
              ds[i] = static_cast<T>(k * (static_cast<double>(gs[i]) - mean_g - centred * proj));
            }
          }
        }
      });
    });
    return out;
  }

  std::shared_ptr<ProcessGroup> group_;
};

}  // namespace dist
}  // namespace retikd
