// retikd/ops/cpu/norm.hpp — the CPU back end of the norm family (ops/norm.hpp): batch normalisation (training
// with running statistics, evaluation) and layer normalisation, forward and backward, in float32 and float64.
//
// The reference for the CUDA paths of ops/cuda/norm.hpp. Statistics and gradient sums accumulate in double
// whatever the tensor's dtype, so the saved mean / invstd are float64 (C,) or (rows,) tensors; layer_norm's
// row sums go through lane_sum, whose fixed order of partial sums keeps results independent of the thread
// count. The front end has checked the shapes both back ends share (x (N, C, *), normalized_shape against x)
// and passes the sizes it computed; the checks here are the CPU path's own (place, parameters, running
// statistics, eps), made in the order the front end used to make them.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "retikd/core/error.hpp"
#include "retikd/core/parallel.hpp"
#include "retikd/core/tensor.hpp"
#include "retikd/ops/dispatch.hpp"

namespace retikd {
namespace cpu {

// Reads element i of a 1-D float tensor (any stride) as double / writes it.
inline double read_1d(const Tensor& t, int64_t i) {
  return dispatch_floating(t.dtype(), "batch_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    return static_cast<double>(t.data<T>()[i * t.stride(0)]);
  });
}
inline void write_1d(Tensor& t, int64_t i, double v) {
  dispatch_floating(t.dtype(), "batch_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    t.data<T>()[i * t.stride(0)] = static_cast<T>(v);
  });
}

// An optional per-feature parameter (weight or bias) checked against `shape`, as double values (or `fill`).
inline std::vector<double> param_values(const char* op, const char* what, const Tensor& p, const Shape& shape,
                                        const Tensor& x, double fill) {
  const int64_t n = shape_numel(shape);
  if (!p.defined()) return std::vector<double>(static_cast<std::size_t>(n), fill);
  RETIKD_CHECK(p.shape() == shape, op, ": ", what, " ", shape_str(p.shape()), " must be ", shape_str(shape),
               " for input ", shape_str(x.shape()));
  ops::check_cpu(op, p);
  // ops::check_same_dtype's message (ops/common.hpp, which a CPU back end does not include).
  RETIKD_CHECK(x.dtype() == p.dtype(), op, ": operands of different dtypes: ", x.describe(), " and ", p.describe(),
               " (convert one with .to(dtype))");
  std::vector<double> v(static_cast<std::size_t>(n));
  const Tensor c = p.contiguous();
  dispatch_floating(c.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pp = c.data<T>();
    for (int64_t i = 0; i < n; ++i) v[i] = static_cast<double>(pp[i]);
  });
  return v;
}

// What a normalisation forward returns: the output and the float64 statistics its backward needs. The front
// end turns it into its public result struct (ops::impl::BatchNormResult / LayerNormResult).
struct NormForward {
  Tensor output;
  Tensor mean;    // (C,) or (rows,) float64
  Tensor invstd;  // (C,) or (rows,) float64: 1/sqrt(var + eps)
};

inline void batch_norm_check_running(const Tensor& r, const char* what, int64_t C, const Tensor& x) {
  if (!r.defined()) return;
  RETIKD_CHECK(r.dim() == 1 && r.size(0) == C, "batch_norm: ", what, " ", shape_str(r.shape()), " must be (",
               C, ",) for input ", shape_str(x.shape()));
  ops::check_cpu("batch_norm", r);
  RETIKD_CHECK(r.dtype() == DType::float32 || r.dtype() == DType::float64, "batch_norm: ", what, " is ",
               r.describe(), "; expected float32 or float64");
}

// x (N, C, S) with S the product of the trailing dims. Training: batch mean and biased variance (two passes,
// no cancellation), running statistics updated in place when defined (running_var with the unbiased
// variance). Evaluation: the running statistics.
inline NormForward batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& running_mean,
                              Tensor& running_var, bool training, double momentum, double eps, int64_t N, int64_t C,
                              int64_t S) {
  const int64_t M = N * S;
  ops::check_cpu("batch_norm", x);
  const std::vector<double> w = param_values("batch_norm", "weight", weight, {C}, x, 1.0);
  const std::vector<double> b = param_values("batch_norm", "bias", bias, {C}, x, 0.0);
  batch_norm_check_running(running_mean, "running_mean", C, x);
  batch_norm_check_running(running_var, "running_var", C, x);
  RETIKD_CHECK(running_mean.defined() == running_var.defined(), "batch_norm: running_mean and running_var must "
               "both be given or both be undefined");
  RETIKD_CHECK(eps >= 0.0, "batch_norm: eps ", eps, " must be non-negative");
  if (training) {
    RETIKD_CHECK(M > 1, "batch_norm: expected more than 1 value per channel when training, got input ",
                 shape_str(x.shape()));
  } else {
    RETIKD_CHECK(running_mean.defined(), "batch_norm: evaluation needs running_mean and running_var (input ",
                 shape_str(x.shape()), ")");
  }
  NormForward r;
  r.output = Tensor::empty(x.shape(), x.dtype());
  r.mean = Tensor::empty({C}, DType::float64);
  r.invstd = Tensor::empty({C}, DType::float64);
  double* mean = r.mean.data<double>();
  double* invstd = r.invstd.data<double>();
  const Tensor xc = x.contiguous();
  dispatch_floating(x.dtype(), "batch_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = xc.data<T>();
    T* py = r.output.data<T>();
    if (training) {
      std::vector<double> var(static_cast<std::size_t>(C));
      parallel_for(0, C, std::max<int64_t>(1, 32768 / std::max<int64_t>(1, M)), [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
          double s = 0.0;
          for (int64_t n = 0; n < N; ++n) {
            const T* p = px + (n * C + c) * S;
            for (int64_t i = 0; i < S; ++i) s += static_cast<double>(p[i]);
          }
          const double m = s / static_cast<double>(M);
          double q = 0.0;  // second pass: squared deviations, no cancellation
          for (int64_t n = 0; n < N; ++n) {
            const T* p = px + (n * C + c) * S;
            for (int64_t i = 0; i < S; ++i) {
              const double d = static_cast<double>(p[i]) - m;
              q += d * d;
            }
          }
          mean[c] = m;
          var[c] = q / static_cast<double>(M);
          invstd[c] = 1.0 / std::sqrt(var[c] + eps);
        }
      });
      if (running_mean.defined()) {
        for (int64_t c = 0; c < C; ++c) {
          const double unbiased = var[c] * static_cast<double>(M) / static_cast<double>(M - 1);
          write_1d(running_mean, c, (1.0 - momentum) * read_1d(running_mean, c) + momentum * mean[c]);
          write_1d(running_var, c, (1.0 - momentum) * read_1d(running_var, c) + momentum * unbiased);
        }
      }
    } else {
      for (int64_t c = 0; c < C; ++c) {
        mean[c] = read_1d(running_mean, c);
        const double v = read_1d(running_var, c);
        RETIKD_CHECK(v + eps > 0.0, "batch_norm: running_var[", c, "] = ", v, " with eps ", eps,
                     " is not positive");
        invstd[c] = 1.0 / std::sqrt(v + eps);
      }
    }
    // y = x·scale + shift per channel, scale = w·invstd, shift = b − mean·scale.
    parallel_for(0, N * C, std::max<int64_t>(1, 32768 / std::max<int64_t>(1, S)), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t c = p % C;
        const T scale = static_cast<T>(w[c] * invstd[c]);
        const T shift = static_cast<T>(b[c] - mean[c] * w[c] * invstd[c]);
        const T* xs = px + p * S;
        T* ys = py + p * S;
        for (int64_t i = 0; i < S; ++i) ys[i] = xs[i] * scale + shift;
      }
    });
  });
  return r;
}

// Gradients {x, weight, bias} of batch_norm (undefined where not asked for), from the saved float64
// statistics; training: dx = w·invstd · (g − mean(g) − x̂ · mean(g·x̂)), evaluation: dx = w·invstd · g.
inline std::array<Tensor, 3> batch_norm_backward(const Tensor& grad_out, const Tensor& x, const Tensor& weight,
                                                 const Tensor& save_mean, const Tensor& save_invstd, bool training,
                                                 bool need_x, bool need_w, bool need_b, int64_t N, int64_t C,
                                                 int64_t S) {
  const int64_t M = N * S;
  ops::check_cpu("batch_norm backward", grad_out);
  const std::vector<double> w = param_values("batch_norm", "weight", weight, {C}, x, 1.0);
  const double* mean = save_mean.data<double>();
  const double* invstd = save_invstd.data<double>();
  std::array<Tensor, 3> out;
  if (need_x) out[0] = Tensor::empty(x.shape(), x.dtype());
  if (need_w) out[1] = Tensor::empty({C}, x.dtype());
  if (need_b) out[2] = Tensor::empty({C}, x.dtype());
  const Tensor xc = x.contiguous(), gc = grad_out.contiguous();
  dispatch_floating(x.dtype(), "batch_norm backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = xc.data<T>();
    const T* pg = gc.data<T>();
    parallel_for(0, C, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, M)), [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const double m = mean[c], is = invstd[c];
        double sum_g = 0.0, sum_gd = 0.0;  // Σ g and Σ g·(x − mean)
        for (int64_t n = 0; n < N; ++n) {
          const T* xs = px + (n * C + c) * S;
          const T* gs = pg + (n * C + c) * S;
          for (int64_t i = 0; i < S; ++i) {
            const double gv = static_cast<double>(gs[i]);
            sum_g += gv;
            sum_gd += gv * (static_cast<double>(xs[i]) - m);
          }
        }
        if (need_w) out[1].data<T>()[c] = static_cast<T>(sum_gd * is);
        if (need_b) out[2].data<T>()[c] = static_cast<T>(sum_g);
        if (!need_x) continue;
        T* pdx = out[0].data<T>();
        const double k = w[c] * is;
        // training: dx = k·(g − Σg/M − (x − mean)·invstd²·Σg(x − mean)/M)
        const double mean_g = training ? sum_g / static_cast<double>(M) : 0.0;
        const double proj = training ? is * is * sum_gd / static_cast<double>(M) : 0.0;
        for (int64_t n = 0; n < N; ++n) {
          const T* xs = px + (n * C + c) * S;
          const T* gs = pg + (n * C + c) * S;
          T* ds = pdx + (n * C + c) * S;
          for (int64_t i = 0; i < S; ++i)
            ds[i] = static_cast<T>(k * (static_cast<double>(gs[i]) - mean_g - (static_cast<double>(xs[i]) - m) * proj));
        }
      }
    });
  });
  return out;
}

// Σ_{j<n} term(j) in double with kLaneSumWidth interleaved partial sums, so the compiler vectorises the row
// reductions of layer_norm (a single running sum is a serial dependency it may not reorder). The partial sums
// are added in a fixed order: the result does not depend on the thread count.
constexpr int kLaneSumWidth = 16;
template <class Term>
inline double lane_sum(int64_t n, Term&& term) {
  double part[kLaneSumWidth] = {};
  int64_t j = 0;
  for (; j + kLaneSumWidth <= n; j += kLaneSumWidth)
    for (int l = 0; l < kLaneSumWidth; ++l) part[l] += term(j + l);
  for (int l = 0; j < n; ++j, ++l) part[l] += term(j);
  double total = 0.0;
  for (int l = 0; l < kLaneSumWidth; ++l) total += part[l];
  return total;
}

// x viewed as R rows of D = numel(normalized_shape) features; each row normalised on its own.
inline NormForward layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight,
                              const Tensor& bias, double eps, int64_t R, int64_t D) {
  ops::check_cpu("layer_norm", x);
  const std::vector<double> w = param_values("layer_norm", "weight", weight, normalized_shape, x, 1.0);
  const std::vector<double> b = param_values("layer_norm", "bias", bias, normalized_shape, x, 0.0);
  RETIKD_CHECK(eps >= 0.0, "layer_norm: eps ", eps, " must be non-negative");
  NormForward r;
  r.output = Tensor::empty(x.shape(), x.dtype());
  r.mean = Tensor::empty({R}, DType::float64);
  r.invstd = Tensor::empty({R}, DType::float64);
  double* mean = r.mean.data<double>();
  double* invstd = r.invstd.data<double>();
  const Tensor xc = x.contiguous();
  dispatch_floating(x.dtype(), "layer_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = xc.data<T>();
    T* py = r.output.data<T>();
    parallel_for(0, R, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, D)), [&](int64_t r0, int64_t r1) {
      for (int64_t row = r0; row < r1; ++row) {
        const T* xs = px + row * D;
        T* ys = py + row * D;
        const double m = lane_sum(D, [&](int64_t j) { return static_cast<double>(xs[j]); }) / static_cast<double>(D);
        const double q = lane_sum(D, [&](int64_t j) {
          const double d = static_cast<double>(xs[j]) - m;
          return d * d;
        });
        const double is = 1.0 / std::sqrt(q / static_cast<double>(D) + eps);
        mean[row] = m;
        invstd[row] = is;
        for (int64_t j = 0; j < D; ++j) ys[j] = static_cast<T>((static_cast<double>(xs[j]) - m) * is * w[j] + b[j]);
      }
    });
  });
  return r;
}

// Gradients {x, weight, bias} of layer_norm: with x̂ = (x − mean)·invstd and ĝ = g·w per row,
//   dx = invstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ·x̂)),  dw = Σ_rows g·x̂,  db = Σ_rows g.
inline std::array<Tensor, 3> layer_norm_backward(const Tensor& grad_out, const Tensor& x,
                                                 const Shape& normalized_shape, const Tensor& weight,
                                                 const Tensor& save_mean, const Tensor& save_invstd, bool need_x,
                                                 bool need_w, bool need_b, int64_t R, int64_t D) {
  ops::check_cpu("layer_norm backward", grad_out);
  const std::vector<double> w = param_values("layer_norm", "weight", weight, normalized_shape, x, 1.0);
  const double* mean = save_mean.data<double>();
  const double* invstd = save_invstd.data<double>();
  std::array<Tensor, 3> out;
  const Tensor xc = x.contiguous(), gc = grad_out.contiguous();
  dispatch_floating(x.dtype(), "layer_norm backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = xc.data<T>();
    const T* pg = gc.data<T>();
    if (need_x) {
      out[0] = Tensor::empty(x.shape(), x.dtype());
      T* pdx = out[0].data<T>();
      parallel_for(0, R, std::max<int64_t>(1, 8192 / std::max<int64_t>(1, D)), [&](int64_t r0, int64_t r1) {
        for (int64_t row = r0; row < r1; ++row) {
          const T* xs = px + row * D;
          const T* gs = pg + row * D;
          T* ds = pdx + row * D;
          const double m = mean[row], is = invstd[row];
          // Σ ĝ and Σ ĝ·x̂, over the row
          const double a =
              lane_sum(D, [&](int64_t j) { return static_cast<double>(gs[j]) * w[j]; }) / static_cast<double>(D);
          const double c = lane_sum(D, [&](int64_t j) {
                             return static_cast<double>(gs[j]) * w[j] * ((static_cast<double>(xs[j]) - m) * is);
                           }) /
                           static_cast<double>(D);
          for (int64_t j = 0; j < D; ++j) {
            const double xh = (static_cast<double>(xs[j]) - m) * is;
            ds[j] = static_cast<T>(is * (static_cast<double>(gs[j]) * w[j] - a - xh * c));
          }
        }
      });
    }
    if (need_w || need_b) {
      if (need_w) out[1] = Tensor::empty(normalized_shape, x.dtype());
      if (need_b) out[2] = Tensor::empty(normalized_shape, x.dtype());
      // Each task owns a range of features and walks every row: no shared accumulators.
      parallel_for(0, D, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, R)), [&](int64_t j0, int64_t j1) {
        std::vector<double> sw(static_cast<std::size_t>(j1 - j0), 0.0), sb(static_cast<std::size_t>(j1 - j0), 0.0);
        for (int64_t row = 0; row < R; ++row) {
          const T* xs = px + row * D;
          const T* gs = pg + row * D;
          const double m = mean[row], is = invstd[row];
          for (int64_t j = j0; j < j1; ++j) {
            const double gv = static_cast<double>(gs[j]);
            sw[j - j0] += gv * (static_cast<double>(xs[j]) - m) * is;
            sb[j - j0] += gv;
          }
        }
        for (int64_t j = j0; j < j1; ++j) {
          if (need_w) out[1].data<T>()[j] = static_cast<T>(sw[j - j0]);
          if (need_b) out[2].data<T>()[j] = static_cast<T>(sb[j - j0]);
        }
      });
    }
  });
  return out;
}

}  // namespace cpu
}  // namespace retikd
