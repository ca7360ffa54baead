// retikd/ops/cpu/shape.hpp — the CPU back end of the element-picking shape ops (ops/shape.hpp): index_select
// and gather forward (row copies, a strided walk) and their scatter-add gradients.
//
// The front end validates the index (dtype, dimensions, range for index_select) and allocates the output; these
// loops only move values. gather checks each index as it reads it (one pass over the index instead of two).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>

#include "retikd/core/error.hpp"
#include "retikd/core/parallel.hpp"
#include "retikd/core/tensor.hpp"

namespace retikd {
namespace cpu {

// out (x's shape with dimension d of size idx.numel()) = x's rows idx[j] along d; idx contiguous int64, in range.
inline Tensor index_select(const Tensor& x, int64_t d, const Tensor& idx, Tensor out) {
  const int64_t* pi = idx.data<int64_t>();
  const int64_t m = idx.numel(), n = x.size(d);
  const Tensor xc = x.contiguous();
  int64_t outer = 1, inner = 1;
  for (int64_t k = 0; k < d; ++k) outer *= x.size(k);
  for (int64_t k = d + 1; k < x.dim(); ++k) inner *= x.size(k);
  const std::size_t row_bytes = static_cast<std::size_t>(inner) * x.element_size();
  const char* src = static_cast<const char*>(xc.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < m; ++j)
      std::memcpy(dst + (o * m + j) * row_bytes, src + (o * n + pi[j]) * row_bytes, row_bytes);
  return out;
}

// gx (zeros of the input's shape) += g's rows at their indices idx[j] along d (repeats add up).
inline Tensor index_select_backward(const Tensor& g, int64_t d, const Tensor& idx, Tensor gx) {
  const Shape& in_shape = gx.shape();
  const int64_t* pi = idx.data<int64_t>();
  const int64_t m = idx.numel(), n = in_shape[d];
  const Tensor gc = g.contiguous();
  int64_t outer = 1, inner = 1;
  for (int64_t k = 0; k < d; ++k) outer *= in_shape[k];
  for (int64_t k = d + 1; k < static_cast<int64_t>(in_shape.size()); ++k) inner *= in_shape[k];
  dispatch_floating(g.dtype(), "index_select backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pg = gc.data<T>();
    T* px = gx.data<T>();
    parallel_for(0, outer, std::max<int64_t>(1, (int64_t(1) << 14) / std::max<int64_t>(1, m * inner)),
                 [&](int64_t lo, int64_t hi) {
                   for (int64_t o = lo; o < hi; ++o)
                     for (int64_t j = 0; j < m; ++j) {
                       const T* src = pg + (o * m + j) * inner;
                       T* dst = px + (o * n + pi[j]) * inner;
                       for (int64_t i = 0; i < inner; ++i) dst[i] += src[i];
                     }
                 });
  });
  return gx;
}

// out (idx's shape) = x at idx along d, x read through its strides; each index is checked as it is read.
inline Tensor gather(const Tensor& x, int64_t d, const Tensor& idx, Tensor out) {
  const int64_t n = x.size(d), xs_d = x.stride(d);
  Shape x_strides = x.strides();
  x_strides[d] = 0;  // the index supplies the position along dim
  const Shape out_strides = out.strides();
  const int64_t* pi = idx.data<int64_t>();
  dispatch_all(x.dtype(), "gather", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = static_cast<const T*>(x.storage()->data());
    T* po = out.data<T>();
    const std::array<const int64_t*, 3> st{out_strides.data(), idx.strides().data(), x_strides.data()};
    strided_loop<3>(idx.shape(), st, {0, 0, x.offset()}, [&](int64_t oo, int64_t oi, int64_t ox) {
      const int64_t v = pi[oi];
      RETIKD_CHECK(v >= 0 && v < n, "gather: index ", v, " at flat position ", oi,
                   " out of range for dimension ", d, " of size ", n, " (input ", x.describe(), ")");
      po[oo] = px[ox + v * xs_d];
    });
  });
  return out;
}

// gx (zeros of in_shape) += g scattered along d at idx (PyTorch's scatter_add); indices checked as read.
inline Tensor gather_backward(const Tensor& g, const Shape& in_shape, int64_t d, const Tensor& idx, Tensor gx) {
  Shape gx_strides = gx.strides();
  const int64_t gxs_d = gx_strides[d], n = in_shape[d];
  gx_strides[d] = 0;
  const int64_t* pi = idx.data<int64_t>();
  dispatch_floating(g.dtype(), "gather backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pg = static_cast<const T*>(g.storage()->data());
    T* px = gx.data<T>();
    const std::array<const int64_t*, 3> st{g.strides().data(), idx.strides().data(), gx_strides.data()};
    strided_loop<3>(idx.shape(), st, {g.offset(), 0, 0}, [&](int64_t og, int64_t oi, int64_t ox) {
      const int64_t v = pi[oi];
      RETIKD_CHECK(v >= 0 && v < n, "gather backward: index ", v, " out of range for dimension ", d,
                   " of size ", n);
      px[ox + v * gxs_d] += pg[og];
    });
  });
  return gx;
}

}  // namespace cpu
}  // namespace retikd
