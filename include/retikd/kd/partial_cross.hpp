// retikd/kd/partial_cross.hpp — partial cross replacement (CAKD): each element of the student's Q, K or V is
// swapped for the teacher's element with probability p, the decision taken by kd/cross_mask.hpp's hash of
// (seed, step, stream, element index) — no mask tensor is drawn or stored.
//
//   out[i] = teacher[i]  if cross_mask_replaced(key(seed, step, stream), i, threshold(p))
//            student[i]  otherwise                    (i = row-major index in the (B, H, N, d) tensor)
//   ∂out/∂student = 1 where kept, 0 where replaced;  ∂out/∂teacher the complement (teachers are normally
//   detached, so nothing flows there in training).
// Student and teacher must have the same shape: that is what makes the swap meaningful (the student's Q/K/V
// projected to the teacher's heads × d on the teacher's grid); anything else throws.
#pragma once

#include <cstdint>
#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/core/error.hpp"
#include "retikd/core/parallel.hpp"
#include "retikd/kd/cross_mask.hpp"
#include "retikd/ops/common.hpp"

namespace retikd {
namespace kd {

struct CrossMaskSpec {
  double p = 0.0;
  uint64_t seed = 0;
  uint64_t step = 0;
  uint32_t stream = kCrossMaskQ;
};

namespace detail {
// out = where(mask, b, a) over contiguous same-shaped tensors, the mask from the hash (CPU).
inline Tensor cross_select(const Tensor& a, const Tensor& b, const CrossMaskSpec& m, const char* op) {
  const Tensor ac = a.contiguous(), bc = b.contiguous();
  Tensor out = Tensor::empty(a.shape(), a.dtype());
  const uint64_t key = cross_mask_key(m.seed, m.step, m.stream), thr = cross_mask_threshold(m.p);
  dispatch_floating(a.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pa = ac.data<T>();
    const T* pb = bc.data<T>();
    T* po = out.data<T>();
    parallel_for(0, a.numel(), 1 << 14, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i)
        po[i] = cross_mask_replaced(key, static_cast<uint64_t>(i), thr) ? pb[i] : pa[i];
    });
  });
  return out;
}
// g masked to the kept (replaced = false) or replaced (replaced = true) elements.
inline Tensor cross_grad(const Tensor& g, const CrossMaskSpec& m, bool replaced) {
  const Tensor zeros = Tensor::zeros(g.shape(), g.dtype());
  return replaced ? cross_select(zeros, g, m, "partial_cross_replace backward")
                  : cross_select(g, zeros, m, "partial_cross_replace backward");
}
}  // namespace detail

// The number of elements of a tensor with `numel` elements that the spec replaces (tests, logs).
inline int64_t cross_replaced_count(int64_t numel, const CrossMaskSpec& m) {
  const uint64_t key = cross_mask_key(m.seed, m.step, m.stream), thr = cross_mask_threshold(m.p);
  int64_t n = 0;
  for (int64_t i = 0; i < numel; ++i) n += cross_mask_replaced(key, static_cast<uint64_t>(i), thr) ? 1 : 0;
  return n;
}

// The student tensor with a p-fraction of its elements replaced by the teacher's (see the file comment).
inline Var partial_cross_replace(const Var& student, const Var& teacher, const CrossMaskSpec& m) {
  const char* op = "partial_cross_replace";
  RETIKD_CHECK(student.defined() && teacher.defined(), op, ": student and teacher tensors must be defined");
  RETIKD_CHECK(student.shape() == teacher.shape(), op, ": the student's ", shape_str(student.shape()),
               " and the teacher's ", shape_str(teacher.shape()), " differ; partial cross replacement (p = ", m.p,
               ") needs the student's Q/K/V projected to the teacher's heads x head_dim on the teacher's grid "
               "(or p = 0)");
  RETIKD_CHECK(m.p >= 0.0 && m.p <= 1.0, op, ": probability ", m.p, " is outside [0, 1]");
  ops::check_cpu(op, student.value());
  ops::check_cpu(op, teacher.value());
  ops::check_same_dtype(op, student.value(), teacher.value());
  if (m.p == 0.0) return student;
  Tensor out = detail::cross_select(student.value(), teacher.value(), m, op);
  const bool ws = student.requires_grad(), wt = teacher.requires_grad();
  return make_result(out, op, {student, teacher}, [m, ws, wt](const Tensor& g) -> std::vector<Tensor> {
    return {ws ? detail::cross_grad(g, m, false) : Tensor(), wt ? detail::cross_grad(g, m, true) : Tensor()};
  });
}

}  // namespace kd
}  // namespace retikd
