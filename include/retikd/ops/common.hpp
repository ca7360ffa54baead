// retikd/ops/common.hpp — helpers every op family shares: argument checks with messages that name the op
// and the shapes, the CPU elementwise map over (possibly strided) tensors, and the reduction of a broadcast
// gradient back to an input's shape.
//
// Conventions of ops/: `ops::impl::` functions take and return Tensors (no tape); `ops::` functions take and
// return Vars and record the op's backward, which is itself written with impl:: functions.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/core/error.hpp"
#include "retikd/core/parallel.hpp"
#include "retikd/core/tensor.hpp"
#ifdef RETIKD_WITH_CUDA
#include "retikd/cuda/nn_ops.hpp"
#endif

namespace retikd {
namespace ops {

inline void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  RETIKD_CHECK(a.device() == b.device(), op, ": operands on different devices: ", a.describe(), " and ",
               b.describe());
}
inline void check_same_dtype(const char* op, const Tensor& a, const Tensor& b) {
  RETIKD_CHECK(a.dtype() == b.dtype(), op, ": operands of different dtypes: ", a.describe(), " and ",
               b.describe(), " (convert one with .to(dtype))");
}
inline void check_dim(const char* op, const char* what, const Tensor& t, int64_t ndim, const char* layout) {
  RETIKD_CHECK(t.dim() == ndim, op, ": ", what, " ", shape_str(t.shape()), " must be ", ndim, "-D ", layout);
}
// CPU-only ops (until their CUDA path lands) say so instead of reading device memory from the host.
inline void check_cpu(const char* op, const Tensor& t) {
  RETIKD_CHECK(t.is_cpu(), op, ": no CUDA implementation yet for ", t.describe(),
               " (move it to the CPU with .to(Device::cpu()))");
}

namespace impl {

// out[i] = f(in[i]) elementwise on the CPU into a new contiguous tensor of the input's dtype; f is a generic
// lambda called with the input's C++ type (float or double).
template <class F>
Tensor cpu_map(const Tensor& in, const char* op, F&& f) {
  check_cpu(op, in);
  Tensor out = Tensor::empty(in.shape(), in.dtype());
  dispatch_floating(in.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* po = out.data<T>();
    const T* base = static_cast<const T*>(in.storage()->data());
    if (in.is_contiguous()) {
      const T* pi = base + in.offset();
      parallel_for(0, in.numel(), 1 << 15, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) po[i] = static_cast<T>(f(pi[i]));
      });
    } else {
      int64_t i = 0;
      const std::array<const int64_t*, 1> st{in.strides().data()};
      strided_loop<1>(in.shape(), st, {in.offset()}, [&](int64_t o) { po[i++] = static_cast<T>(f(base[o])); });
    }
  });
  return out;
}

// out[i] = f(a[i], b[i]) over the broadcast of a and b's shapes (same dtype, CPU).
template <class F>
Tensor cpu_zip(const Tensor& a, const Tensor& b, const char* op, F&& f) {
  check_cpu(op, a);
  check_cpu(op, b);
  check_same_dtype(op, a, b);
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  Tensor out = Tensor::empty(shape, a.dtype());
  dispatch_floating(a.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* po = out.data<T>();
    if (a.shape() == b.shape() && a.is_contiguous() && b.is_contiguous()) {
      const T* pa = a.data<T>();
      const T* pb = b.data<T>();
      parallel_for(0, out.numel(), 1 << 15, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) po[i] = static_cast<T>(f(pa[i], pb[i]));
      });
      return;
    }
    const Tensor ea = a.expand(shape), eb = b.expand(shape);
    const T* ba = static_cast<const T*>(a.storage()->data());
    const T* bb = static_cast<const T*>(b.storage()->data());
    int64_t i = 0;
    const std::array<const int64_t*, 2> st{ea.strides().data(), eb.strides().data()};
    strided_loop<2>(shape, st, {ea.offset(), eb.offset()},
                    [&](int64_t oa, int64_t ob) { po[i++] = static_cast<T>(f(ba[oa], bb[ob])); });
  });
  return out;
}

// Sums a gradient of the broadcast shape back down to `shape` (the inverse of broadcasting).
inline Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  const int64_t lead = g.dim() - static_cast<int64_t>(shape.size());
  RETIKD_CHECK(lead >= 0, "sum_to: cannot reduce ", g.describe(), " to ", shape_str(shape));
#ifdef RETIKD_WITH_CUDA
  if (g.is_cuda() && (g.dtype() == DType::float32 || g.dtype() == DType::float16)) {
    // GPU: permute the kept dimensions first and the summed ones (the leading extra dimensions and those
    // broadcast from 1) last, then one row sum per kept element (cuda::reduce_rows, float accumulation).
    std::vector<int64_t> kept, summed;
    int64_t kept_n = 1, summed_n = 1;
    for (int64_t gd = 0; gd < g.dim(); ++gd) {
      const int64_t d = gd - lead;
      RETIKD_CHECK(d < 0 || shape[d] == g.size(gd) || shape[d] == 1, "sum_to: cannot reduce ", g.describe(),
                   " to ", shape_str(shape));
      if (d < 0 || (shape[d] == 1 && g.size(gd) != 1)) {
        summed.push_back(gd);
        summed_n *= g.size(gd);
      } else {
        kept.push_back(gd);
        kept_n *= g.size(gd);
      }
    }
    std::vector<int64_t> perm = kept;
    perm.insert(perm.end(), summed.begin(), summed.end());
    const Tensor rows = g.permute(perm).contiguous();
    Tensor out = Tensor::empty(shape, g.dtype(), g.device());
    cuda::reduce_rows(rows.raw_data(), out.raw_data(), kept_n, summed_n, cuda::kRowSum, 1.f,
                      static_cast<int>(g.dtype()), g.device().index);
    return out;
  }
#endif
  check_cpu("sum_to", g);
  // Only leading dimensions summed (a bias gradient: (…, C) → (C)) of a contiguous float gradient: rows added
  // one after another into the output row, the same order as the strided loop below (bitwise the same sums),
  // vectorised over the columns and split across threads by column ranges.
  const Shape trailing(g.shape().end() - static_cast<std::ptrdiff_t>(shape.size()), g.shape().end());
  if (trailing == shape && g.is_contiguous() && (g.dtype() == DType::float32 || g.dtype() == DType::float64)) {
    Tensor out = Tensor::zeros(shape, g.dtype());
    const int64_t cols = shape_numel(shape), rows = cols > 0 ? g.numel() / cols : 0;
    dispatch_floating(g.dtype(), "sum_to", [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* pg = g.data<T>();
      T* po = out.data<T>();
      constexpr int64_t kBlock = 256;  // columns per task: a block of partial sums stays in L1
      parallel_for(0, (cols + kBlock - 1) / kBlock, std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(1, rows * kBlock)),
                   [&](int64_t c0, int64_t c1) {
                     const int64_t j0 = c0 * kBlock, j1 = std::min(cols, c1 * kBlock);
                     for (int64_t r = 0; r < rows; ++r) {
                       const T* row = pg + r * cols;
                       for (int64_t j = j0; j < j1; ++j) po[j] += row[j];
                     }
                   });
    });
    return out;
  }
  // View the output as the broadcast shape with stride 0 on reduced dims, and add every gradient element in.
  Tensor out = Tensor::zeros(shape, g.dtype());
  Shape out_strides(static_cast<std::size_t>(g.dim()), 0);
  const Shape cs = contiguous_strides(shape);
  for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) {
    const int64_t gd = d + lead;
    RETIKD_CHECK(shape[d] == g.size(gd) || shape[d] == 1, "sum_to: cannot reduce ", g.describe(), " to ",
                 shape_str(shape));
    out_strides[gd] = shape[d] == 1 ? 0 : cs[d];
  }
  dispatch_floating(g.dtype(), "sum_to", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* po = out.data<T>();
    const T* pg = static_cast<const T*>(g.storage()->data());
    const std::array<const int64_t*, 2> st{out_strides.data(), g.strides().data()};
    strided_loop<2>(g.shape(), st, {0, g.offset()}, [&](int64_t oo, int64_t og) { po[oo] += pg[og]; });
  });
  return out;
}

}  // namespace impl
}  // namespace ops
}  // namespace retikd
