// retikd/ops/common.hpp — helpers every op family shares: argument checks with messages that name the op
// and the shapes, and the reduction of a broadcast gradient back to an input's shape (sum_to, on either back
// end).
//
// Conventions of ops/ (docs/architecture.md): `ops::impl::` functions take and return Tensors (no tape) and
// choose the back end (ops/dispatch.hpp); `ops::` functions take and return Vars and record the op's
// backward, which is itself written with impl:: functions. The CPU elementwise loops every family uses are
// cpu::map / cpu::zip (ops/cpu/elementwise.hpp).
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
#include "retikd/ops/cpu/elementwise.hpp"
#include "retikd/ops/cuda/elementwise.hpp"
#include "retikd/ops/dispatch.hpp"

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

namespace impl {

// Sums a gradient of the broadcast shape back down to `shape` (the inverse of broadcasting).
inline Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  const int64_t lead = g.dim() - static_cast<int64_t>(shape.size());
  RETIKD_CHECK(lead >= 0, "sum_to: cannot reduce ", g.describe(), " to ", shape_str(shape));
  for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d)
    RETIKD_CHECK(shape[d] == g.size(d + lead) || shape[d] == 1, "sum_to: cannot reduce ", g.describe(), " to ",
                 shape_str(shape));
  return gpu_float(g) ? cuda_backend::sum_to(g, shape) : cpu::sum_to(g, shape);
}

}  // namespace impl
}  // namespace ops
}  // namespace retikd
