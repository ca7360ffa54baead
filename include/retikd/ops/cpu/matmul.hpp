// retikd/ops/cpu/matmul.hpp — the CPU back end of the matrix products (ops/matmul.hpp): matmul as one GEMM or
// a strided-batched one (cpu::gemm / cpu::gemm_batched of ops/cpu/gemm.hpp), and linear with the bias added
// in the GEMM's store rather than by a broadcast add over the whole output afterwards (and linear + GELU with
// the activation applied there too).
//
// The front end validates the operands, broadcasts the batch and lays each operand out (ops/gemm_matrix.hpp)
// exactly as for the CUDA back end; this header only runs the loops.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>

#include "retikd/core/tensor.hpp"
#include "retikd/ops/cpu/gemm.hpp"
#include "retikd/ops/dispatch.hpp"
#include "retikd/ops/gemm_matrix.hpp"

namespace retikd {
namespace cpu {

// out[b] = A[b] · B[b] (M×K · K×N) for b < B, or out[b] += A[b] · B[b] when `accumulate`. out is contiguous
// (B, M, N) in the operands' dtype; the front end checked shapes, dtypes and devices.
inline Tensor matmul(const ops::GemmMatrix& ga, const ops::GemmMatrix& gb, int64_t M, int64_t N, int64_t K,
                     int64_t B, bool accumulate, Tensor out) {
  dispatch_floating(out.dtype(), "matmul", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pa = static_cast<const T*>(ga.data);
    const T* pb = static_cast<const T*>(gb.data);
    T* pc = out.data<T>();
    const T beta = accumulate ? T(1) : T(0);
    if (B == 1) {
      cpu::gemm<T>(ga.trans, gb.trans, M, N, K, T(1), pa, ga.ld, pb, gb.ld, beta, pc, N);
    } else {
      cpu::gemm_batched<T>(B, ga.trans, gb.trans, M, N, K, T(1), pa, ga.ld, ga.batch_stride, pb, gb.ld,
                           gb.batch_stride, beta, pc, N, M * N);
    }
  });
  return out;
}

// A linear layer's operands as one GEMM over all leading rows of x (…, in): contiguous x, w (out, in) and bias,
// the output shape (…, out), and the GEMM's sizes and leading dimensions.
struct LinearGemm {
  Tensor xc, wc, bc;
  Shape out_shape;
  int64_t rows, in, outf, ld_in, ld_out;
  LinearGemm(const Tensor& x, const Tensor& w, const Tensor& bias)
      : xc(x.contiguous()), wc(w.contiguous()), bc(bias.contiguous()), out_shape(x.shape()), in(w.size(1)),
        outf(w.size(0)), ld_in(std::max<int64_t>(w.size(1), 1)), ld_out(std::max<int64_t>(w.size(0), 1)) {
    out_shape.back() = outf;
    rows = in > 0 ? xc.numel() / in : shape_numel(out_shape) / ld_out;
  }
};

// x (…, in) · wᵀ + bias as one GEMM over all leading rows, the bias added in the GEMM's store (cpu::gemm's bias
// argument). x, w (out, in) and bias (out): the front end checked that they are CPU tensors of one dtype with
// matching shapes.
inline Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias) {
  const LinearGemm g(x, w, bias);
  Tensor out = Tensor::empty(g.out_shape, x.dtype());
  dispatch_floating(x.dtype(), "linear", [&](auto tag) {
    using T = typename decltype(tag)::type;
    cpu::gemm<T>(false, true, g.rows, g.outf, g.in, T(1), g.xc.data<T>(), g.ld_in, g.wc.data<T>(), g.ld_in, T(0),
                 out.data<T>(), g.ld_out, g.bc.data<T>(), cpu::WideTileRule::linear_layer);
  });
  return out;
}

// gelu(x · wᵀ + bias) with the GELU applied to each GEMM tile while it is in cache (cpu::gemm_bias_gelu).
// Returns {pre-activation, activation}; the pre-activation is only kept (and allocated) when `keep_pre`,
// for a backward pass.
inline std::pair<Tensor, Tensor> linear_gelu(const Tensor& x, const Tensor& w, const Tensor& bias, bool keep_pre) {
  const LinearGemm g(x, w, bias);
  Tensor act = Tensor::empty(g.out_shape, x.dtype());
  Tensor pre = keep_pre ? Tensor::empty(g.out_shape, x.dtype()) : Tensor();
  dispatch_floating(x.dtype(), "linear_gelu", [&](auto tag) {
    using T = typename decltype(tag)::type;
    // Kept: the GEMM writes the pre-activation and the GELU beside it; not kept: the GELU in place.
    T* c = keep_pre ? pre.data<T>() : act.data<T>();
    cpu::gemm_bias_gelu<T>(false, true, g.rows, g.outf, g.in, g.xc.data<T>(), g.ld_in, g.wc.data<T>(), g.ld_in, c,
                           g.ld_out, g.bc.data<T>(), keep_pre ? act.data<T>() : nullptr, g.ld_out,
                           cpu::WideTileRule::linear_layer);
  });
  return {pre, act};
}

}  // namespace cpu
}  // namespace retikd
