// retikd/ops/cpu/conv.hpp — the CPU back end of 2-D convolution (ops/conv.hpp): the im2col + GEMM loops of
// dense convolution (any groups) and the direct loops of depthwise convolution, forward and backward, and the
// bias gradient. ops/conv.hpp's top comment describes both paths (tiling, the padded stride-phase planes, why
// depthwise needs no im2col).
//
// The front end validates devices, dtypes and shapes and allocates the outputs; the entry points at the bottom
// make the operands contiguous and run the loops. The loops themselves sit in cpu::conv_detail.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "retikd/core/parallel.hpp"
#include "retikd/core/tensor.hpp"
#include "retikd/ops/conv_geometry.hpp"
#include "retikd/ops/cpu/gemm.hpp"

namespace retikd {
namespace cpu {
namespace conv_detail {

using ops::Conv2dOptions;
using ops::impl::Conv2dGeometry;

// Output positions o in [lo, hi) whose input position o·stride + off lies inside [0, in).
inline void valid_output_range(int64_t off, int64_t stride, int64_t in, int64_t out, int64_t& lo, int64_t& hi) {
  lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
  hi = in - off <= 0 ? 0 : (in - 1 - off) / stride + 1;
  lo = std::min(lo, out);
  hi = std::min(std::max(hi, lo), out);
}

// y[i·stride] += a · x[i] (the transposed access, for the input gradient).
template <class T>
inline void axpy_scatter(int64_t n, T a, const T* __restrict x, T* __restrict y, int64_t stride) {
  if (stride == 1) {
    for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
  } else {
    for (int64_t i = 0; i < n; ++i) y[i * stride] += a * x[i];
  }
}
// Σ x[i] · y[i], with eight independent partial sums: without -ffast-math the compiler may not reorder a
// single floating-point chain, but it does vectorise this explicit form.
template <class T>
inline double dot_contiguous(int64_t n, const T* __restrict x, const T* __restrict y) {
  T acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += x[i + j] * y[i + j];
  double s = 0.0;
  for (; i < n; ++i) s += static_cast<double>(x[i]) * static_cast<double>(y[i]);
  for (int j = 0; j < 8; ++j) s += static_cast<double>(acc[j]);
  return s;
}

// Σ x[i] with eight partial sums (vectorised, see dot_contiguous).
template <class T>
inline double sum_contiguous(int64_t n, const T* __restrict x) {
  T acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += x[i + j];
  double s = 0.0;
  for (; i < n; ++i) s += static_cast<double>(x[i]);
  for (int j = 0; j < 8; ++j) s += static_cast<double>(acc[j]);
  return s;
}

// col (Cg·kh·kw, (oh1 − oh0)·OW): the im2col matrix of output rows [oh0, oh1) of one sample-group plane
// x (Cg, H, W). Row r = (c, ki, kj) holds, for each of those outputs, the input pixel tap (ki, kj) reads (0 in
// the padding).
template <class T>
void im2col_tile(const Conv2dGeometry& g, const T* x, T* col, int64_t oh0, int64_t oh1) {
  const Conv2dOptions& o = g.opt;
  const int64_t ld = (oh1 - oh0) * g.OW;
  for (int64_t r = 0; r < g.K; ++r) {
    const int64_t c = r / (g.kh * g.kw), ki = (r / g.kw) % g.kh, kj = r % g.kw;
    const T* xc = x + c * g.H * g.W;
    T* dst = col + r * ld - oh0 * g.OW;
    const int64_t off_w = kj * o.dilation_w - o.pad_left;
    int64_t lo, hi;
    valid_output_range(off_w, o.stride_w, g.W, g.OW, lo, hi);
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      T* d = dst + oh * g.OW;
      const int64_t ih = oh * o.stride_h - o.pad_top + ki * o.dilation_h;
      if (ih < 0 || ih >= g.H) {
        std::fill(d, d + g.OW, T(0));
        continue;
      }
      std::fill(d, d + lo, T(0));
      const T* src = xc + ih * g.W + lo * o.stride_w + off_w;
      if (o.stride_w == 1) {
        std::memcpy(d + lo, src, static_cast<std::size_t>(hi - lo) * sizeof(T));
      } else {
        for (int64_t ow = lo; ow < hi; ++ow) d[ow] = src[(ow - lo) * o.stride_w];
      }
      std::fill(d + hi, d + g.OW, T(0));
    }
  }
}

// Output rows per im2col tile. The tile (K × rows·OW) is kept near 512 KiB so it is written and read back
// from L2 rather than through memory (a whole-image column matrix is K·OH·OW elements: 14 MB for a
// 32-channel 3×3 layer at 112×112), but at least ~256 columns wide so the GEMM's N stays efficient.
// (Measured here, 1 thread: 32→32 3×3 at 112² went from 89 to 150 GFLOP/s; 256 KiB tiles were slower on
// 64→64 at 56².)
template <class T>
int64_t im2col_tile_rows(const Conv2dGeometry& g) {
  const int64_t target = static_cast<int64_t>(524288 / sizeof(T));
  int64_t rows = target / std::max<int64_t>(1, g.K * g.OW);
  rows = std::max(rows, (256 + g.OW - 1) / g.OW);
  return std::min(std::max<int64_t>(rows, 1), g.OH);
}

// x (Cg, H, W) += col2im(col) for a column tile covering output rows [oh0, oh1) (the transpose of
// im2col_tile); channels [c0, c1) only, so callers can split channels across threads without sharing a plane.
template <class T>
void col2im_tile(const Conv2dGeometry& g, const T* col, T* x, int64_t oh0, int64_t oh1, int64_t c0, int64_t c1) {
  const Conv2dOptions& o = g.opt;
  const int64_t ld = (oh1 - oh0) * g.OW;
  for (int64_t c = c0; c < c1; ++c) {
    T* xc = x + c * g.H * g.W;
    for (int64_t ki = 0; ki < g.kh; ++ki) {
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        const T* src = col + ((c * g.kh + ki) * g.kw + kj) * ld - oh0 * g.OW;
        const int64_t off_w = kj * o.dilation_w - o.pad_left;
        int64_t lo, hi;
        valid_output_range(off_w, o.stride_w, g.W, g.OW, lo, hi);
        if (lo >= hi) continue;
        for (int64_t oh = oh0; oh < oh1; ++oh) {
          const int64_t ih = oh * o.stride_h - o.pad_top + ki * o.dilation_h;
          if (ih < 0 || ih >= g.H) continue;
          axpy_scatter<T>(hi - lo, T(1), src + oh * g.OW + lo, xc + ih * g.W + lo * o.stride_w + off_w,
                          o.stride_w);
        }
      }
    }
  }
}

// Splits [0, n) into `chunks` near-equal ranges and runs fn(chunk, lo, hi) on the pool (one task each).
template <class Fn>
void for_each_chunk(int64_t n, int64_t chunks, Fn&& fn) {
  parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) fn(c, c * n / chunks, (c + 1) * n / chunks);
  });
}
// How many chunks to split N independent tasks into: one per thread when there are several, else 1 (then
// the work threads inside the single task instead).
inline int64_t batch_chunks(int64_t N) {
  const int64_t threads = thread_pool().num_threads();
  return N > 1 && threads > 1 ? std::min<int64_t>(N, threads) : 1;
}

// Dense forward. Pointwise layers: one GEMM per (sample, group) straight on the input. Otherwise the work is
// split into (sample, group, tile of output rows) tasks over the pool; each builds its im2col tile in a
// per-chunk buffer and multiplies it into the matching columns of the output.
template <class T>
void conv2d_dense_forward(const Conv2dGeometry& g, const T* x, const T* w, const T* bias, T* y) {
  auto add_bias = [&](int64_t n, int64_t gr, int64_t l0, int64_t l1) {
    if (!bias) return;
    for (int64_t oc = gr * g.Og; oc < (gr + 1) * g.Og; ++oc) {
      T* yo = y + (n * g.O + oc) * g.L;
      const T bv = bias[oc];
      for (int64_t i = l0; i < l1; ++i) yo[i] += bv;
    }
  };
  if (g.pointwise()) {
    const int64_t chunks = batch_chunks(g.N * g.groups);
    auto run = [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t n = t / g.groups, gr = t % g.groups;
        // (Og, L) = (Og, Cg) · (Cg, L)
        cpu::gemm<T>(false, false, g.Og, g.L, g.K, T(1), w + gr * g.Og * g.K, g.K,
                     x + (n * g.C + gr * g.Cg) * g.H * g.W, g.L, T(0), y + (n * g.O + gr * g.Og) * g.L, g.L);
        add_bias(n, gr, 0, g.L);
      }
    };
    if (chunks == 1) {
      run(0, g.N * g.groups);  // a single GEMM threads itself
    } else {
      for_each_chunk(g.N * g.groups, chunks, [&](int64_t, int64_t lo, int64_t hi) { run(lo, hi); });
    }
    return;
  }
  const int64_t rows = im2col_tile_rows<T>(g);
  const int64_t tiles = (g.OH + rows - 1) / rows;
  parallel_for(0, g.N * g.groups * tiles, 1, [&](int64_t t0, int64_t t1) {
    std::vector<T> col(static_cast<std::size_t>(g.K * rows * g.OW));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n = t / (g.groups * tiles), gr = (t / tiles) % g.groups, tile = t % tiles;
      const int64_t oh0 = tile * rows, oh1 = std::min(g.OH, oh0 + rows);
      const int64_t l0 = oh0 * g.OW, lt = (oh1 - oh0) * g.OW;
      im2col_tile<T>(g, x + (n * g.C + gr * g.Cg) * g.H * g.W, col.data(), oh0, oh1);
      // (Og, lt) = (Og, K) · (K, lt), into columns [l0, l0 + lt) of the output plane.
      cpu::gemm<T>(false, false, g.Og, lt, g.K, T(1), w + gr * g.Og * g.K, g.K, col.data(), lt, T(0),
                   y + (n * g.O + gr * g.Og) * g.L + l0, g.L);
      add_bias(n, gr, l0, l0 + lt);
    }
  });
}

// Vector width for the depthwise row kernel: the ISA compiled for (GCC/Clang vector extensions).
#if defined(__AVX512F__)
constexpr int kDepthwiseVectorBytes = 64;
#elif defined(__AVX__)
constexpr int kDepthwiseVectorBytes = 32;
#else
constexpr int kDepthwiseVectorBytes = 16;
#endif

// How many elements a depthwise row may read past its last output (the buffer keeps that much slack).
template <class T>
constexpr int64_t depthwise_overrun() {
  return kDepthwiseVectorBytes / static_cast<int64_t>(sizeof(T));
}

// y[j] = bias + Σ_t wt[t] · src[t][j] for j in [0, n): one output row of a depthwise convolution with all
// kh·kw taps fused, so each output is stored once (not once per tap), from unit-stride tap rows. Whole
// vectors are computed even for the last partial one: each src[t] may be read up to depthwise_overrun<T>()
// elements past src[t][n − 1] (the caller's buffer has that slack); only n outputs are stored.
// NT is the tap count when known at compile time (9 for 3×3: fully unrolled), else 0 and `taps` is used.
template <class T, int NT>
inline void depthwise_row(int64_t n, int64_t taps, const T* const* src, const T* wt, T bias, T* y) {
  const int64_t ntaps = NT > 0 ? NT : taps;
#if defined(__GNUC__) || defined(__clang__)
  typedef T V __attribute__((vector_size(kDepthwiseVectorBytes)));
  constexpr int64_t L = depthwise_overrun<T>();
  int64_t j0 = 0;
  for (; j0 + 2 * L <= n; j0 += 2 * L) {  // two accumulators in flight
    V a0 = V{} + bias, a1 = V{} + bias;
    for (int64_t t = 0; t < ntaps; ++t) {
      const T* p = src[t] + j0;
      V x0, x1;
      std::memcpy(&x0, p, sizeof(V));
      std::memcpy(&x1, p + L, sizeof(V));
      const V wv = V{} + wt[t];
      a0 += wv * x0;
      a1 += wv * x1;
    }
    std::memcpy(y + j0, &a0, sizeof(V));
    std::memcpy(y + j0 + L, &a1, sizeof(V));
  }
  for (; j0 < n; j0 += L) {
    V a0 = V{} + bias;
    for (int64_t t = 0; t < ntaps; ++t) {
      V x0;
      std::memcpy(&x0, src[t] + j0, sizeof(V));
      a0 += (V{} + wt[t]) * x0;
    }
    std::memcpy(y + j0, &a0, static_cast<std::size_t>(std::min(L, n - j0)) * sizeof(T));
  }
#else
  for (int64_t j = 0; j < n; ++j) {
    T a = bias;
    for (int64_t t = 0; t < ntaps; ++t) a += wt[t] * src[t][j];
    y[j] = a;
  }
#endif
}

// The zero-padded, stride-split copy of one input plane that the depthwise forward reads. Padded row r is
// stored as `stride` segments of SW elements; segment q holds padded columns q, q + s, q + 2s, … So the tap
// (ki, kj) of output (oh, ow) — padded column ow·s + kj·dw — is element ow + (kj·dw)/s of segment
// (kj·dw) mod s: every tap row is unit-stride, whatever the stride. Padding and slack are zeroed once; each
// plane only overwrites the data positions.
template <class T>
struct DepthwisePlane {
  int64_t s, PH, PW, SW, RW;
  int64_t pt, pl, H, W;
  std::vector<T> buf;

  explicit DepthwisePlane(const Conv2dGeometry& g)
      : s(g.opt.stride_w),
        PH(g.H + g.opt.pad_top + g.opt.pad_bottom),
        PW(g.W + g.opt.pad_left + g.opt.pad_right),
        SW((PW + s - 1) / s + depthwise_overrun<T>()),
        RW(s * SW),
        pt(g.opt.pad_top),
        pl(g.opt.pad_left),
        H(g.H),
        W(g.W),
        buf(static_cast<std::size_t>(PH * RW + depthwise_overrun<T>()), T(0)) {
    plan_phases();
  }

  // Per phase q: the first input column landing in segment q, where it lands, and how many do.
  struct Phase {
    int64_t w0, dst, count;
  };
  std::vector<Phase> phases;

  void plan_phases() {
    for (int64_t q = 0; q < s; ++q) {
      const int64_t w0 = ((q - pl) % s + s) % s;  // padded column w0 + pl ≡ q (mod s)
      if (w0 < W) phases.push_back({w0, q * SW + (w0 + pl) / s, (W - w0 + s - 1) / s});
    }
  }

  void load(const T* x) {
    for (int64_t h = 0; h < H; ++h) {
      const T* xr = x + h * W;
      T* row = buf.data() + (h + pt) * RW;
      if (s == 1) {
        std::memcpy(row + pl, xr, static_cast<std::size_t>(W) * sizeof(T));
        continue;
      }
      for (const Phase& ph : phases) {
        T* seg = row + ph.dst;
        const T* src = xr + ph.w0;
        if (s == 2) {  // a constant stride the compiler vectorises with shuffles
          for (int64_t i = 0; i < ph.count; ++i) seg[i] = src[2 * i];
        } else {
          for (int64_t i = 0; i < ph.count; ++i) seg[i] = src[i * s];
        }
      }
    }
  }
  // The inverse of load: writes the data positions of the buffer back to a plane (the input gradient).
  void store(T* x) const {
    for (int64_t h = 0; h < H; ++h) {
      T* xr = x + h * W;
      const T* row = buf.data() + (h + pt) * RW;
      if (s == 1) {
        std::memcpy(xr, row + pl, static_cast<std::size_t>(W) * sizeof(T));
        continue;
      }
      for (const Phase& ph : phases) {
        const T* seg = row + ph.dst;
        T* dst = xr + ph.w0;
        for (int64_t i = 0; i < ph.count; ++i) dst[i * s] = seg[i];
      }
    }
  }
  void clear() { std::fill(buf.begin(), buf.end(), T(0)); }
  // Offset, within a padded row, of the unit-stride run that padded column offset c (= kj·dw) reads.
  int64_t column_offset(int64_t c) const { return (c % s) * SW + c / s; }
  // Tap t = (ki, kj) of output row oh is the run starting at buf + oh·stride_h·RW + offsets[t].
  std::vector<int64_t> tap_offsets(const Conv2dGeometry& g) const {
    std::vector<int64_t> off(static_cast<std::size_t>(g.kh * g.kw));
    for (int64_t ki = 0; ki < g.kh; ++ki)
      for (int64_t kj = 0; kj < g.kw; ++kj)
        off[ki * g.kw + kj] = ki * g.opt.dilation_h * RW + column_offset(kj * g.opt.dilation_w);
    return off;
  }
};

// Depthwise forward: one task per input plane (n, c), which feeds output channels c·mult … c·mult + mult − 1.
template <class T>
void conv2d_depthwise_forward(const Conv2dGeometry& g, const T* x, const T* w, const T* bias, T* y) {
  const Conv2dOptions& o = g.opt;
  const int64_t mult = g.O / g.C;
  const int64_t taps = g.kh * g.kw;
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, g.L * taps * mult));
  parallel_for(0, g.N * g.C, grain, [&](int64_t p0, int64_t p1) {
    DepthwisePlane<T> plane(g);
    const std::vector<int64_t> tap_offset = plane.tap_offsets(g);
    std::vector<const T*> src(static_cast<std::size_t>(taps));
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n = p / g.C, c = p % g.C;
      plane.load(x + p * g.H * g.W);
      for (int64_t oc = c * mult; oc < (c + 1) * mult; ++oc) {
        const T* wp = w + oc * taps;
        T* yp = y + (n * g.O + oc) * g.L;
        const T bv = bias ? bias[oc] : T(0);
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          const T* base = plane.buf.data() + oh * o.stride_h * plane.RW;
          for (int64_t t = 0; t < taps; ++t) src[t] = base + tap_offset[t];
          if (taps == 9) {
            depthwise_row<T, 9>(g.OW, taps, src.data(), wp, bv, yp + oh * g.OW);
          } else {
            depthwise_row<T, 0>(g.OW, taps, src.data(), wp, bv, yp + oh * g.OW);
          }
        }
      }
    }
  });
}

// Dense input gradient: per (sample, group), tile by tile, col = W_gᵀ · gy_g[:, tile] then col2im onto the
// zeroed input plane. Tiles of one plane overlap in input rows, so they run in order within a task; tasks
// (sample, group) are spread over the pool, or, with a single one, the GEMM and col2im thread inside it.
template <class T>
void conv2d_dense_backward_input(const Conv2dGeometry& g, const T* gy, const T* w, T* gx) {
  const bool pointwise = g.pointwise();
  const int64_t rows = pointwise ? g.OH : im2col_tile_rows<T>(g);
  const int64_t tasks = g.N * g.groups;
  const int64_t chunks = batch_chunks(tasks);
  auto run = [&](int64_t t0, int64_t t1, bool inner_threads) {
    std::vector<T> col(pointwise ? 0 : static_cast<std::size_t>(g.K * rows * g.OW));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n = t / g.groups, gr = t % g.groups;
      const T* gyg = gy + (n * g.O + gr * g.Og) * g.L;  // (Og, L)
      T* gxg = gx + (n * g.C + gr * g.Cg) * g.H * g.W;  // (Cg, H, W)
      const T* wg = w + gr * g.Og * g.K;                // (Og, K)
      if (pointwise) {
        // (Cg, L) = (Og, Cg)ᵀ · (Og, L)
        cpu::gemm<T>(true, false, g.K, g.L, g.Og, T(1), wg, g.K, gyg, g.L, T(0), gxg, g.L);
        continue;
      }
      std::fill(gxg, gxg + g.Cg * g.H * g.W, T(0));
      for (int64_t oh0 = 0; oh0 < g.OH; oh0 += rows) {
        const int64_t oh1 = std::min(g.OH, oh0 + rows), lt = (oh1 - oh0) * g.OW;
        // (K, lt) = (Og, K)ᵀ · (Og, lt)
        cpu::gemm<T>(true, false, g.K, lt, g.Og, T(1), wg, g.K, gyg + oh0 * g.OW, g.L, T(0), col.data(), lt);
        if (inner_threads) {
          parallel_for(0, g.Cg, 1, [&](int64_t c0, int64_t c1) { col2im_tile<T>(g, col.data(), gxg, oh0, oh1, c0, c1); });
        } else {
          col2im_tile<T>(g, col.data(), gxg, oh0, oh1, 0, g.Cg);
        }
      }
    }
  };
  if (chunks == 1) {
    run(0, tasks, true);
  } else {
    for_each_chunk(tasks, chunks, [&](int64_t, int64_t lo, int64_t hi) { run(lo, hi, false); });
  }
}

// Dense weight gradient: gw_g (Og, K) = Σ over samples and tiles of gy_g[:, tile] (Og, lt) · col_tileᵀ.
// Tasks as in the forward; each chunk of tasks sums into its own partial gradient (chunk 0 into gw itself),
// added up at the end, so no two threads write the same accumulator.
template <class T>
void conv2d_dense_backward_weight(const Conv2dGeometry& g, const T* gy, const T* x, T* gw) {
  const bool pointwise = g.pointwise();
  const int64_t rows = pointwise ? g.OH : im2col_tile_rows<T>(g);
  const int64_t tiles = (g.OH + rows - 1) / rows;
  const int64_t tasks = g.N * g.groups * tiles;
  const int64_t chunks = std::min<int64_t>(tasks, thread_pool().num_threads());
  const int64_t wsize = g.O * g.K;
  std::vector<T> partial(static_cast<std::size_t>(std::max<int64_t>(0, chunks - 1) * wsize));
  for_each_chunk(tasks, chunks, [&](int64_t chunk, int64_t t0, int64_t t1) {
    T* acc = chunk == 0 ? gw : partial.data() + (chunk - 1) * wsize;
    std::fill(acc, acc + wsize, T(0));
    std::vector<T> col(pointwise ? 0 : static_cast<std::size_t>(g.K * rows * g.OW));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n = t / (g.groups * tiles), gr = (t / tiles) % g.groups, tile = t % tiles;
      const int64_t oh0 = tile * rows, oh1 = std::min(g.OH, oh0 + rows);
      const int64_t l0 = oh0 * g.OW, lt = (oh1 - oh0) * g.OW;
      const T* xg = x + (n * g.C + gr * g.Cg) * g.H * g.W;
      const T* b = xg + l0;  // pointwise: the input plane is the column matrix (ld = L)
      int64_t ldb = g.L;
      if (!pointwise) {
        im2col_tile<T>(g, xg, col.data(), oh0, oh1);
        b = col.data();
        ldb = lt;
      }
      // (Og, K) += (Og, lt) · (K, lt)ᵀ
      cpu::gemm<T>(false, true, g.Og, g.K, lt, T(1), gy + (n * g.O + gr * g.Og) * g.L + l0, g.L, b, ldb, T(1),
                   acc + gr * g.Og * g.K, g.K);
    }
  });
  for (int64_t c = 1; c < chunks; ++c) {
    const T* p = partial.data() + (c - 1) * wsize;
    for (int64_t i = 0; i < wsize; ++i) gw[i] += p[i];
  }
}

// Accumulates acc[t] += Σ_j g[j] · src[t][j] over the rows of a depthwise weight gradient: the counterpart
// of depthwise_row. With NT taps known at compile time, NT vector accumulators live across all rows (one load
// of g per block serves every tap) and are reduced once, in finish(); each row's tail (< one vector) is
// summed exactly without reading past the row. Other tap counts use dot_contiguous per tap.
template <class T, int NT>
struct DepthwiseRowDot {
  static constexpr int kTaps = NT > 0 ? NT : 1;
#if defined(__GNUC__) || defined(__clang__)
  typedef T V __attribute__((vector_size(kDepthwiseVectorBytes)));
  V a[kTaps] = {};
#endif
  T tail[kTaps] = {};

  void row(int64_t n, int64_t taps, const T* const* src, const T* g, double* acc) {
#if defined(__GNUC__) || defined(__clang__)
    if (NT > 0) {
      constexpr int64_t L = depthwise_overrun<T>();
      int64_t j = 0;
      for (; j + L <= n; j += L) {
        V gv;
        std::memcpy(&gv, g + j, sizeof(V));
        for (int t = 0; t < kTaps; ++t) {
          V xv;
          std::memcpy(&xv, src[t] + j, sizeof(V));
          a[t] += gv * xv;
        }
      }
      for (int t = 0; t < kTaps; ++t)
        for (int64_t k = j; k < n; ++k) tail[t] += g[k] * src[t][k];
      return;
    }
#endif
    for (int64_t t = 0; t < taps; ++t) acc[t] += dot_contiguous<T>(n, g, src[t]);
  }
  void finish(double* acc) {
    if (NT == 0) return;
    for (int t = 0; t < kTaps; ++t) {
      double sum = static_cast<double>(tail[t]);
#if defined(__GNUC__) || defined(__clang__)
      for (int64_t l = 0; l < depthwise_overrun<T>(); ++l) sum += static_cast<double>(a[t][l]);
#endif
      acc[t] += sum;
    }
  }
};

// Depthwise input gradient, the transpose of the forward on the same padded, stride-split buffer: each
// output-gradient row is added onto the kh·kw unit-stride tap runs it came from (no bounds checks: padding
// positions collect gradient that is then dropped), and the data positions are written out. One task per
// input plane (n, c), gathering from the `mult` output channels that read it. (A gather formulation that
// writes each element once measured slower here: building its per-row tap lists costs more than the
// extra read-modify-write passes, which stay in L1/L2.)
template <class T>
void conv2d_depthwise_backward_input(const Conv2dGeometry& g, const T* gy, const T* w, T* gx) {
  const Conv2dOptions& o = g.opt;
  const int64_t mult = g.O / g.C;
  const int64_t taps = g.kh * g.kw;
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, g.L * taps * mult));
  parallel_for(0, g.N * g.C, grain, [&](int64_t p0, int64_t p1) {
    DepthwisePlane<T> plane(g);
    const std::vector<int64_t> tap_offset = plane.tap_offsets(g);
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n = p / g.C, c = p % g.C;
      plane.clear();
      for (int64_t oc = c * mult; oc < (c + 1) * mult; ++oc) {
        const T* gyp = gy + (n * g.O + oc) * g.L;
        const T* wp = w + oc * taps;
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          T* base = plane.buf.data() + oh * o.stride_h * plane.RW;
          for (int64_t t = 0; t < taps; ++t) axpy_scatter<T>(g.OW, wp[t], gyp + oh * g.OW, base + tap_offset[t], 1);
        }
      }
      plane.store(gx + p * g.H * g.W);
    }
  });
}

// Depthwise weight gradient: gw[oc, t] = Σ_n Σ_oh Σ_ow gy[n, oc, oh, ow] · (tap t of that output), read from
// the padded buffer of x (as in the forward). One task per output channel, summing over the batch, so each
// weight has a single writer.
template <class T>
void conv2d_depthwise_backward_weight(const Conv2dGeometry& g, const T* gy, const T* x, T* gw) {
  const Conv2dOptions& o = g.opt;
  const int64_t mult = g.O / g.C;
  const int64_t taps = g.kh * g.kw;
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, g.N * g.L * taps));
  parallel_for(0, g.O, grain, [&](int64_t o0, int64_t o1) {
    DepthwisePlane<T> plane(g);
    const std::vector<int64_t> tap_offset = plane.tap_offsets(g);
    std::vector<const T*> src(static_cast<std::size_t>(taps));
    std::vector<double> acc(static_cast<std::size_t>(taps));
    for (int64_t oc = o0; oc < o1; ++oc) {
      std::fill(acc.begin(), acc.end(), 0.0);
      const int64_t c = oc / mult;
      auto sum_rows = [&](auto dot) {
        for (int64_t n = 0; n < g.N; ++n) {
          plane.load(x + (n * g.C + c) * g.H * g.W);
          const T* gyp = gy + (n * g.O + oc) * g.L;
          for (int64_t oh = 0; oh < g.OH; ++oh) {
            const T* base = plane.buf.data() + oh * o.stride_h * plane.RW;
            for (int64_t t = 0; t < taps; ++t) src[t] = base + tap_offset[t];
            dot.row(g.OW, taps, src.data(), gyp + oh * g.OW, acc.data());
          }
        }
        dot.finish(acc.data());
      };
      if (taps == 9) {
        sum_rows(DepthwiseRowDot<T, 9>());
      } else {
        sum_rows(DepthwiseRowDot<T, 0>());
      }
      for (int64_t t = 0; t < taps; ++t) gw[oc * taps + t] = static_cast<T>(acc[t]);
    }
  });
}

}  // namespace conv_detail

// y (N, O, OH, OW) = conv2d(x, w) + bias (bias may be undefined) into the allocated y.
inline Tensor conv2d_forward(const ops::impl::Conv2dGeometry& g, const Tensor& x, const Tensor& w,
                             const Tensor& bias, Tensor y) {
  const Tensor xc = x.contiguous(), wc = w.contiguous();
  const Tensor bc = bias.defined() ? bias.contiguous() : Tensor();
  dispatch_floating(x.dtype(), "conv2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pb = bc.defined() ? bc.data<T>() : nullptr;
    if (g.depthwise()) {
      conv_detail::conv2d_depthwise_forward<T>(g, xc.data<T>(), wc.data<T>(), pb, y.data<T>());
    } else {
      conv_detail::conv2d_dense_forward<T>(g, xc.data<T>(), wc.data<T>(), pb, y.data<T>());
    }
  });
  return y;
}

// The input gradient into the allocated gx (every element is written).
inline Tensor conv2d_backward_input(const ops::impl::Conv2dGeometry& g, const Tensor& grad_out, const Tensor& w,
                                    Tensor gx) {
  const Tensor gyc = grad_out.contiguous(), wc = w.contiguous();
  dispatch_floating(w.dtype(), "conv2d backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (g.depthwise()) {
      conv_detail::conv2d_depthwise_backward_input<T>(g, gyc.data<T>(), wc.data<T>(), gx.data<T>());
    } else {
      conv_detail::conv2d_dense_backward_input<T>(g, gyc.data<T>(), wc.data<T>(), gx.data<T>());
    }
  });
  return gx;
}

// The weight gradient into the allocated gw (every element is written).
inline Tensor conv2d_backward_weight(const ops::impl::Conv2dGeometry& g, const Tensor& grad_out, const Tensor& x,
                                     Tensor gw) {
  const Tensor gyc = grad_out.contiguous(), xc = x.contiguous();
  dispatch_floating(x.dtype(), "conv2d backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (g.depthwise()) {
      conv_detail::conv2d_depthwise_backward_weight<T>(g, gyc.data<T>(), xc.data<T>(), gw.data<T>());
    } else {
      conv_detail::conv2d_dense_backward_weight<T>(g, gyc.data<T>(), xc.data<T>(), gw.data<T>());
    }
  });
  return gw;
}

// The bias gradient: grad_out (N, O, L = OH·OW) summed over N and L per channel, in double.
inline Tensor conv2d_backward_bias(const Tensor& grad_out, int64_t N, int64_t O, int64_t L) {
  Tensor gb = Tensor::zeros({O}, grad_out.dtype());
  const Tensor gyc = grad_out.contiguous();
  dispatch_floating(grad_out.dtype(), "conv2d backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* gy = gyc.data<T>();
    T* pb = gb.data<T>();
    parallel_for(0, O, std::max<int64_t>(1, 65536 / std::max<int64_t>(1, N * L)), [&](int64_t o0, int64_t o1) {
      for (int64_t oc = o0; oc < o1; ++oc) {
        double s = 0.0;
        for (int64_t n = 0; n < N; ++n) s += conv_detail::sum_contiguous<T>(L, gy + (n * O + oc) * L);
        pb[oc] = static_cast<T>(s);
      }
    });
  });
  return gb;
}

}  // namespace cpu
}  // namespace retikd
