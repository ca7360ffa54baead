// retikd/ops/softmax.hpp — softmax and log-softmax over any dimension, forward and backward.
//
// The family's front end (docs/architecture.md): impl:: functions validate the dimension (negative counts from
// the end; a 0-D tensor is one element along dimension 0) and pick the back end. float32 / float16 tensors on a
// GPU reduced over their last dimension (inner = 1) run in ops/cuda/softmax.hpp (retikd/cuda/softmax.hpp's
// warp-per-row kernels); other GPU layouts say there is no CUDA path yet. The rest runs in
// ops/cpu/softmax.hpp: max-subtracted rows (log-sum-exp, so large logits never overflow), in unit-stride
// blocks for any dimension, with the SIMD exp of cpu/vec_math.hpp on float32 softmax rows. Outputs are
// contiguous in the input's dtype.
//
// Backward:  softmax      gx = y ⊙ (g − Σ_dim g⊙y)
//            log_softmax  gx = g − exp(y) ⊙ Σ_dim g
#pragma once

#include <cstdint>
#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/ops/common.hpp"
#include "retikd/ops/cpu/softmax.hpp"
#include "retikd/ops/cuda/softmax.hpp"
#include "retikd/ops/dispatch.hpp"

namespace retikd {
namespace ops {
namespace impl {

inline int64_t softmax_dim(const Tensor& x, int64_t dim, const char* op) {
  RETIKD_CHECK(x.defined(), op, ": input is undefined");
  // A 0-d tensor is treated as one element along dimension 0 (or -1), as PyTorch does.
  if (x.dim() == 0) {
    RETIKD_CHECK(dim == 0 || dim == -1, op, ": dimension ", dim, " out of range for a 0-D tensor");
    return 0;
  }
  return wrap_dim(dim, x.dim(), op);
}

// The GPU path when it applies (false: the caller goes on to the CPU checks, which name what is missing).
inline bool cuda_softmax_ok(const Tensor& t, int64_t dim, const char* op) {
  if (!gpu_float(t)) return false;
  const int64_t d = softmax_dim(t, dim, op);
  return t.dim() == 0 || d == t.dim() - 1;
}

inline Tensor softmax_forward(const Tensor& x, int64_t dim, bool log, const char* op) {
  if (cuda_softmax_ok(x, dim, op)) return cuda_backend::softmax_rows(x, log);
  check_cpu(op, x);
  const int64_t d = softmax_dim(x, dim, op);
  return cpu::softmax_forward(x, d, log, op);
}

// Shared backward: softmax (log = false, y = softmax output) or log_softmax (log = true, y = its output).
inline Tensor softmax_backward_impl(const Tensor& g, const Tensor& y, int64_t dim, bool log, const char* op) {
  if (cuda_softmax_ok(y, dim, op) && g.device() == y.device() && g.shape() == y.shape() && g.dtype() == y.dtype())
    return cuda_backend::softmax_rows_backward(g, y, log);
  check_cpu(op, g);
  check_cpu(op, y);
  RETIKD_CHECK(g.shape() == y.shape() && g.dtype() == y.dtype(), op, ": gradient ", g.describe(),
               " does not match output ", y.describe());
  const int64_t d = softmax_dim(y, dim, op);
  return cpu::softmax_backward(g, y, d, log, op);
}

inline Tensor softmax(const Tensor& x, int64_t dim) { return softmax_forward(x, dim, false, "softmax"); }
inline Tensor log_softmax(const Tensor& x, int64_t dim) {
  return softmax_forward(x, dim, true, "log_softmax");
}
inline Tensor softmax_backward(const Tensor& g, const Tensor& y, int64_t dim) {
  return softmax_backward_impl(g, y, dim, false, "softmax backward");
}
inline Tensor log_softmax_backward(const Tensor& g, const Tensor& y, int64_t dim) {
  return softmax_backward_impl(g, y, dim, true, "log_softmax backward");
}

}  // namespace impl

// exp(x − max) / Σ exp(x − max) along `dim` (negative counts from the end).
inline Var softmax(const Var& x, int64_t dim) {
  Tensor y = impl::softmax(x.value(), dim);
  return make_result(y, "softmax", {x}, [y, dim](const Tensor& g) -> std::vector<Tensor> {
    return {impl::softmax_backward(g, y, dim)};
  });
}
// x − max − log Σ exp(x − max) along `dim`.
inline Var log_softmax(const Var& x, int64_t dim) {
  Tensor y = impl::log_softmax(x.value(), dim);
  return make_result(y, "log_softmax", {x}, [y, dim](const Tensor& g) -> std::vector<Tensor> {
    return {impl::log_softmax_backward(g, y, dim)};
  });
}

}  // namespace ops
}  // namespace retikd
