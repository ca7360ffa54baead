// retikd/ops/dropout.hpp — inverted dropout and per-sample stochastic depth (drop_path).
//
// The keep mask is drawn on the host from the caller's Generator, one uniform draw per element (dropout) or
// per sample (drop_path) in row-major order, so a seed gives the same mask whatever the thread count or the
// device; the mask is then moved to the input's device. It already holds the scale (0 or 1/(1−p)), is kept
// by the backward closure, and the gradient is grad ⊙ mask: exactly the elements that survived, scaled alike.
#pragma once

#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/core/random.hpp"
#include "retikd/ops/common.hpp"
#include "retikd/ops/elementwise.hpp"

namespace retikd {
namespace ops {
namespace impl {

// A host mask of `shape`: each element is 0 with probability p, else `keep_value`; converted to dtype and
// moved to device.
inline Tensor bernoulli_keep_mask(const Shape& shape, double p, double keep_value, DType dtype, Device device,
                                  Generator& gen) {
  Tensor mask = Tensor::empty(shape, DType::float64);
  double* pm = mask.data<double>();
  const int64_t n = mask.numel();
  for (int64_t i = 0; i < n; ++i) pm[i] = gen.uniform() < p ? 0.0 : keep_value;
  return mask.to(dtype).to(device);
}

inline void check_drop_probability(const char* op, double p) {
  RETIKD_CHECK(p >= 0.0 && p <= 1.0, op, ": drop probability must be in [0, 1], got ", p);
}

}  // namespace impl

// Inverted dropout: in training each element is zeroed with probability p and the survivors are scaled by
// 1/(1−p), so evaluation needs no rescaling. Identity (the same Var) when !training or p == 0; all zeros
// (gradient zero) when p == 1.
inline Var dropout(const Var& x, double p, bool training, Generator& gen) {
  impl::check_drop_probability("dropout", p);
  RETIKD_CHECK(is_floating(x.dtype()), "dropout: expected a floating tensor, got ", x.value().describe());
  if (!training || p == 0.0) return x;
  const double keep = p >= 1.0 ? 0.0 : 1.0 / (1.0 - p);
  Tensor mask = impl::bernoulli_keep_mask(x.shape(), p, keep, x.dtype(), x.device(), gen);
  return make_result(impl::mul(x.value(), mask), "dropout", {x},
                     [mask](const Tensor& g) -> std::vector<Tensor> { return {impl::mul(g, mask)}; });
}

// Stochastic depth (timm's drop_path): each sample (index along dimension 0) of a residual branch is zeroed
// with probability p, the others scaled by 1/(1−p) when scale_by_keep. Identity when !training or p == 0;
// all zeros when p == 1 (timm does not divide by a zero keep probability).
inline Var drop_path(const Var& x, double p, bool training, Generator& gen, bool scale_by_keep = true) {
  impl::check_drop_probability("drop_path", p);
  RETIKD_CHECK(x.dim() >= 1, "drop_path: input ", x.value().describe(), " needs a batch dimension");
  RETIKD_CHECK(is_floating(x.dtype()), "drop_path: expected a floating tensor, got ", x.value().describe());
  if (!training || p == 0.0) return x;
  const double keep_prob = 1.0 - p;
  const double keep = (keep_prob > 0.0 && scale_by_keep) ? 1.0 / keep_prob : (keep_prob > 0.0 ? 1.0 : 0.0);
  Shape mask_shape(static_cast<std::size_t>(x.dim()), 1);  // (B, 1, 1, ...)
  mask_shape[0] = x.size(0);
  // Expanded to the input's shape (a stride-0 view), so the product has the same shape on every device.
  Tensor mask = impl::bernoulli_keep_mask(mask_shape, p, keep, x.dtype(), x.device(), gen).expand(x.shape());
  return make_result(impl::mul(x.value(), mask), "drop_path", {x},
                     [mask](const Tensor& g) -> std::vector<Tensor> { return {impl::mul(g, mask)}; });
}

}  // namespace ops
}  // namespace retikd
