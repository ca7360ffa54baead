// retikd/ops/cpu/softmax.hpp — the CPU back end of the softmax family (ops/softmax.hpp): softmax and
// log-softmax over one dimension, forward and backward, in float32 and float64.
//
// The input (any layout) is made contiguous and seen as (outer, n, inner) around the reduced dimension d.
// The last dimension (inner = 1) runs row by row; otherwise the loops walk blocks of up to kSoftmaxLanes
// adjacent inner positions together, so a reduction over a middle or leading dimension still reads memory in
// unit-stride runs and vectorises. Every row is max-subtracted (log-sum-exp), so large logits never overflow.
// Outputs are contiguous in the input's dtype. float32 softmax rows use the SIMD exp and lane-wise sums of
// cpu/vec_math.hpp (the scalar loops sum in order; both agree to float rounding).
//
// This is the reference the CUDA warp-per-row kernels (kernels/softmax.cu) are checked against. The front end
// validates the dimension (wrapping it to d, a 0-D tensor counting as one element along dimension 0) and the
// gradient's shape and dtype before calling here.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "retikd/core/parallel.hpp"
#include "retikd/core/tensor.hpp"
#include "retikd/ops/cpu/vec_math.hpp"
#include "retikd/ops/dispatch.hpp"

namespace retikd {
namespace cpu {

// (outer, n, inner) around dimension d of shape s.
struct SoftmaxLayout {
  int64_t outer = 1, n = 1, inner = 1;
};
inline SoftmaxLayout softmax_layout(const Shape& s, int64_t d) {
  SoftmaxLayout l;
  for (int64_t i = 0; i < d; ++i) l.outer *= s[i];
  l.n = s[d];
  for (int64_t i = d + 1; i < static_cast<int64_t>(s.size()); ++i) l.inner *= s[i];
  return l;
}

constexpr int64_t kSoftmaxLanes = 64;

// Calls fn(base, lanes) for every block of up to kSoftmaxLanes inner positions of every outer index, in
// parallel: element k of lane j of the block lives at base + k·inner + j.
template <class Fn>
void softmax_lane_blocks(const SoftmaxLayout& l, Fn&& fn) {
  const int64_t blocks_per_outer = (l.inner + kSoftmaxLanes - 1) / kSoftmaxLanes;
  const int64_t tasks = l.outer * blocks_per_outer;
  const int64_t work_per_task = std::max<int64_t>(1, l.n * std::min(l.inner, kSoftmaxLanes));
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 14) / work_per_task);
  parallel_for(0, tasks, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      const int64_t o = t / blocks_per_outer, b = t % blocks_per_outer;
      const int64_t j0 = b * kSoftmaxLanes;
      fn(o * l.n * l.inner + j0, std::min(kSoftmaxLanes, l.inner - j0));
    }
  });
}

// Rows per parallel chunk for rows of n elements: about 16K elements of work per chunk.
inline int64_t softmax_row_grain(int64_t n) {
  return std::max<int64_t>(1, (int64_t(1) << 14) / std::max<int64_t>(1, n));
}

// softmax (log: log_softmax) of x over its dimension d (already wrapped; 0 for a 0-D tensor).
inline Tensor softmax_forward(const Tensor& x, int64_t d, bool log, const char* op) {
  ops::check_cpu(op, x);  // the front end checked this first; kept for direct callers
  const Shape shape = x.dim() == 0 ? Shape{1} : x.shape();
  const Tensor in = x.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  const SoftmaxLayout l = softmax_layout(shape, d);
  if (out.numel() == 0) return out;
  dispatch_floating(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = in.data<T>();
    T* py = out.data<T>();
    if (l.inner == 1) {  // unit-stride rows: the common case (the last dimension)
      parallel_for(0, l.outer, softmax_row_grain(l.n), [&](int64_t lo, int64_t hi) {
        for (int64_t r = lo; r < hi; ++r) {
          const T* row = px + r * l.n;
          T* out_row = py + r * l.n;
          if constexpr (std::is_same<T, float>::value) {
            if (!log) {  // SIMD exp (cpu/vec_math.hpp): attention's (B, H, T, T) rows
              cpu::vec::softmax_row(row, out_row, l.n);
              continue;
            }
          }
          T m = -std::numeric_limits<T>::infinity();
          for (int64_t k = 0; k < l.n; ++k) m = std::max(m, row[k]);
          T s = T(0);
          for (int64_t k = 0; k < l.n; ++k) {
            const T e = std::exp(row[k] - m);
            if (!log) out_row[k] = e;
            s += e;
          }
          if (log) {
            const T lse = m + std::log(s);
            for (int64_t k = 0; k < l.n; ++k) out_row[k] = row[k] - lse;
          } else {
            const T inv = T(1) / s;
            for (int64_t k = 0; k < l.n; ++k) out_row[k] *= inv;
          }
        }
      });
      return;
    }
    softmax_lane_blocks(l, [&](int64_t base, int64_t lanes) {
      T m[kSoftmaxLanes], s[kSoftmaxLanes];
      for (int64_t j = 0; j < lanes; ++j) {
        m[j] = -std::numeric_limits<T>::infinity();
        s[j] = T(0);
      }
      for (int64_t k = 0; k < l.n; ++k) {
        const T* row = px + base + k * l.inner;
        for (int64_t j = 0; j < lanes; ++j) m[j] = std::max(m[j], row[j]);
      }
      for (int64_t k = 0; k < l.n; ++k) {
        const T* row = px + base + k * l.inner;
        T* out_row = py + base + k * l.inner;
        for (int64_t j = 0; j < lanes; ++j) {
          const T e = std::exp(row[j] - m[j]);
          if (!log) out_row[j] = e;
          s[j] += e;
        }
      }
      if (log) {
        for (int64_t j = 0; j < lanes; ++j) s[j] = m[j] + std::log(s[j]);  // log-sum-exp
        for (int64_t k = 0; k < l.n; ++k) {
          const T* row = px + base + k * l.inner;
          T* out_row = py + base + k * l.inner;
          for (int64_t j = 0; j < lanes; ++j) out_row[j] = row[j] - s[j];
        }
      } else {
        for (int64_t j = 0; j < lanes; ++j) s[j] = T(1) / s[j];
        for (int64_t k = 0; k < l.n; ++k) {
          T* out_row = py + base + k * l.inner;
          for (int64_t j = 0; j < lanes; ++j) out_row[j] *= s[j];
        }
      }
    });
  });
  return out;
}

// Shared backward: softmax (log = false, y = softmax output) or log_softmax (log = true, y = its output), over
// dimension d; g has y's shape and dtype (the front end checks it).
inline Tensor softmax_backward(const Tensor& g, const Tensor& y, int64_t d, bool log, const char* op) {
  ops::check_cpu(op, g);  // the front end checked these first; kept for direct callers
  ops::check_cpu(op, y);
  const Shape shape = y.dim() == 0 ? Shape{1} : y.shape();
  const Tensor gc = g.contiguous(), yc = y.contiguous();
  Tensor gx = Tensor::empty(y.shape(), y.dtype());
  const SoftmaxLayout l = softmax_layout(shape, d);
  if (gx.numel() == 0) return gx;
  dispatch_floating(y.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pg = gc.data<T>();
    const T* py = yc.data<T>();
    T* pgx = gx.data<T>();
    if (l.inner == 1) {
      parallel_for(0, l.outer, softmax_row_grain(l.n), [&](int64_t lo, int64_t hi) {
        for (int64_t r = lo; r < hi; ++r) {
          const T* g_row = pg + r * l.n;
          const T* y_row = py + r * l.n;
          T* gx_row = pgx + r * l.n;
          T s = T(0);
          if constexpr (std::is_same<T, float>::value) {
            if (!log) {
              s = cpu::vec::dot(g_row, y_row, l.n);
              for (int64_t k = 0; k < l.n; ++k) gx_row[k] = y_row[k] * (g_row[k] - s);
              continue;
            }
          }
          if (log) {
            for (int64_t k = 0; k < l.n; ++k) s += g_row[k];
            for (int64_t k = 0; k < l.n; ++k) gx_row[k] = g_row[k] - std::exp(y_row[k]) * s;
          } else {
            for (int64_t k = 0; k < l.n; ++k) s += g_row[k] * y_row[k];
            for (int64_t k = 0; k < l.n; ++k) gx_row[k] = y_row[k] * (g_row[k] - s);
          }
        }
      });
      return;
    }
    softmax_lane_blocks(l, [&](int64_t base, int64_t lanes) {
      T s[kSoftmaxLanes];
      for (int64_t j = 0; j < lanes; ++j) s[j] = T(0);
      for (int64_t k = 0; k < l.n; ++k) {
        const int64_t o = base + k * l.inner;
        if (log) {
          for (int64_t j = 0; j < lanes; ++j) s[j] += pg[o + j];
        } else {
          for (int64_t j = 0; j < lanes; ++j) s[j] += pg[o + j] * py[o + j];
        }
      }
      for (int64_t k = 0; k < l.n; ++k) {
        const int64_t o = base + k * l.inner;
        if (log) {
          for (int64_t j = 0; j < lanes; ++j) pgx[o + j] = pg[o + j] - std::exp(py[o + j]) * s[j];
        } else {
          for (int64_t j = 0; j < lanes; ++j) pgx[o + j] = py[o + j] * (pg[o + j] - s[j]);
        }
      }
    });
  });
  return gx;
}

}  // namespace cpu
}  // namespace retikd
