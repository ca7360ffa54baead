// retikd/autograd/accumulate.hpp — gradient accumulation for the tape (acc ← acc + g).
//
// Out of place on purpose: an op's backward may return its incoming gradient unchanged for several inputs
// (add returns the same tensor twice), so summing in place would corrupt a tensor someone else still holds.
// Self-contained (CPU loop or the CUDA elementwise launcher) because ops/ depends on autograd, not back.
#pragma once

#include <array>

#include "retikd/core/error.hpp"
#include "retikd/core/parallel.hpp"
#include "retikd/core/tensor.hpp"
#ifdef RETIKD_WITH_CUDA
#include "retikd/cuda/elementwise.hpp"
#endif

namespace retikd {

inline void accumulate_grad(Tensor& acc, const Tensor& g, const char* op) {
  if (!acc.defined()) {
    acc = g;
    return;
  }
  RETIKD_CHECK(acc.shape() == g.shape() && acc.dtype() == g.dtype() && acc.device() == g.device(), op,
               ": cannot accumulate gradient ", g.describe(), " into ", acc.describe());
  Tensor sum = Tensor::empty(acc.shape(), acc.dtype(), acc.device());
  if (acc.is_cpu() && acc.dtype() == DType::float32 && acc.is_contiguous() && g.is_contiguous()) {
    // The common case (a residual stream feeding two ops): a threaded float add. Bitwise the same as the
    // double round trip below — a float sum computed in double and rounded once is the correctly rounded
    // float sum (53 ≥ 2·24 + 2 bits).
    const float* a = acc.data<float>();
    const float* b = g.data<float>();
    float* out = sum.data<float>();
    parallel_for(0, acc.numel(), 1 << 15, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) out[i] = a[i] + b[i];
    });
    acc = sum;
    return;
  }
  if (acc.is_cpu()) {
    dispatch_all(acc.dtype(), op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* a = static_cast<const T*>(acc.storage()->data());
      const T* b = static_cast<const T*>(g.storage()->data());
      T* out = sum.data<T>();
      int64_t i = 0;
      const std::array<const int64_t*, 2> st{acc.strides().data(), g.strides().data()};
      strided_loop<2>(acc.shape(), st, {acc.offset(), g.offset()}, [&](int64_t oa, int64_t ob) {
        out[i++] = convert_scalar<T>(convert_scalar<double>(a[oa]) + convert_scalar<double>(b[ob]));
      });
    });
  } else {
#ifdef RETIKD_WITH_CUDA
    Tensor a = acc.contiguous(), b = g.contiguous();
    cuda::binary(cuda::kAdd, a.raw_data(), b.raw_data(), sum.raw_data(), static_cast<int>(acc.dtype()),
                 acc.numel(), acc.device().index);
#else
    fail_no_cuda(op);
#endif
  }
  acc = sum;
}

}  // namespace retikd
