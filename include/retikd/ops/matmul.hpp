// retikd/ops/matmul.hpp — matrix products: matmul (torch.matmul semantics: 1-D, 2-D and broadcast batched
// operands), linear (x · Wᵀ + b with PyTorch's (out, in) weight layout) and linear_gelu (a transformer MLP's
// fc1 + GELU, fused on the CPU), forward and backward.
//
// The CPU back end (ops/cpu/matmul.hpp) lands on cpu::gemm / cpu::gemm_batched. Transposed views (Kᵀ in
// attention, the gradients' Aᵀ and Bᵀ) are passed to the GEMM as transpose flags with their leading dimension,
// never copied; a matrix operand shared by the whole batch is passed with batch stride 0. Tensors on a GPU take the same
// operands to cuBLAS (retikd/cuda/blas.hpp); linear's bias add and bias gradient then run as a same-shape add
// and a ones-vector GEMM, so no CPU-only broadcast op is reached. The CUDA path is in ops/cuda/matmul.hpp.
#pragma once

#include <utility>
#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/ops/activation.hpp"
#include "retikd/ops/common.hpp"
#include "retikd/ops/cpu/matmul.hpp"
#include "retikd/ops/cuda/matmul.hpp"
#include "retikd/ops/gemm_matrix.hpp"
#include "retikd/ops/elementwise.hpp"

namespace retikd {
namespace ops {
namespace impl {

// A (batch, rows, cols) operand as the GEMM sees it: base pointer offset, transpose flag, leading dim and
// batch stride. Made from a 3-D view whose last two dims are row- or column-major.
struct GemmOperand {
  Tensor keep_alive;
  bool trans = false;
  int64_t ld = 0;
  int64_t batch_stride = 0;
};

inline GemmOperand as_gemm_operand(const Tensor& t3) {
  // t3: (B, R, C)
  GemmOperand op;
  const int64_t R = t3.size(1), C = t3.size(2);
  const int64_t sR = t3.stride(1), sC = t3.stride(2);
  // Any batch stride works (reads may overlap); only the matrix layout decides the transpose flag.
  if ((sC == 1 || C == 1) && sR >= std::max<int64_t>(C, 1)) {
    op.keep_alive = t3;
    op.ld = std::max<int64_t>(sR, std::max<int64_t>(C, 1));
  } else if ((sR == 1 || R == 1) && sC >= std::max<int64_t>(R, 1)) {
    op.keep_alive = t3;
    op.trans = true;
    op.ld = std::max<int64_t>(sC, std::max<int64_t>(R, 1));
  } else {
    op.keep_alive = t3.contiguous();
    op.ld = std::max<int64_t>(C, 1);
  }
  op.batch_stride = op.keep_alive.size(0) == 1 ? 0 : op.keep_alive.stride(0);
  return op;
}

// (…, M, K) · (…, K, N) with broadcast batch dims; both operands at least 2-D here. With c_init (a fresh,
// unaliased contiguous tensor of the result's shape and dtype) the product is accumulated onto it (GEMM β = 1):
// linear's bias on the GPU is written once and the GEMM adds onto it, instead of a separate add pass.
inline Tensor matmul_nd(const Tensor& a, const Tensor& b, const Tensor& c_init = Tensor()) {
  const bool on_gpu = a.is_cuda();  // never in a CPU-only build: it cannot allocate GPU storage
  if (on_gpu) {
    check_same_device("matmul", a, b);
    RETIKD_CHECK(a.dtype() == DType::float32 || a.dtype() == DType::float16, "matmul: no CUDA GEMM for ",
                 a.describe(), " (float32 and float16 only)");
  } else {
    check_cpu("matmul", a);
    check_cpu("matmul", b);
  }
  check_same_dtype("matmul", a, b);
  const int64_t M = a.size(-2), K = a.size(-1), K2 = b.size(-2), N = b.size(-1);
  RETIKD_CHECK(K == K2, "matmul: inner dimensions differ: ", shape_str(a.shape()), " · ", shape_str(b.shape()));
  Shape batch_a(a.shape().begin(), a.shape().end() - 2), batch_b(b.shape().begin(), b.shape().end() - 2);
  const Shape batch = broadcast_shapes(batch_a, batch_b, "matmul");
  const int64_t B = shape_numel(batch);
  Shape out_shape = batch;
  out_shape.push_back(M);
  out_shape.push_back(N);
  const bool accumulate = c_init.defined();
  if (accumulate)
    RETIKD_CHECK(c_init.shape() == out_shape && c_init.dtype() == a.dtype() && c_init.device() == a.device() &&
                     c_init.is_contiguous(),
                 "matmul: the accumulation target ", c_init.describe(), " is not a contiguous ",
                 shape_str(out_shape), " ", dtype_name(a.dtype()), " tensor on ", a.device().to_string());
  Tensor out = accumulate ? c_init : Tensor::empty(out_shape, a.dtype(), a.device());
  if (out.numel() == 0) return out;
  auto to3 = [&](const Tensor& t, const Shape& tb, int64_t r, int64_t c) {
    Shape full = batch;
    full.push_back(r);
    full.push_back(c);
    Tensor e = t.expand(full);
    // Collapse batch dims into one when the view allows it; an operand broadcast over the whole batch
    // keeps stride 0.
    if (shape_numel(tb) == 1) return t.reshape({1, r, c}).expand({B, r, c});
    return e.reshape({B, r, c});
  };
  GemmOperand ga = as_gemm_operand(to3(a, batch_a, M, K));
  GemmOperand gb = as_gemm_operand(to3(b, batch_b, K, N));
  // ga / gb keep the operands alive until the back end returns.
  const GemmMatrix ma{ga.keep_alive.raw_data(), ga.trans, ga.ld, ga.batch_stride};
  const GemmMatrix mb{gb.keep_alive.raw_data(), gb.trans, gb.ld, gb.batch_stride};
  return on_gpu ? cuda_backend::matmul(ma, mb, M, N, K, B, accumulate, out)
                : cpu::matmul(ma, mb, M, N, K, B, accumulate, out);
}

inline Tensor matmul(const Tensor& a, const Tensor& b) {
  RETIKD_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: operands must be at least 1-D, got ",
               shape_str(a.shape()), " and ", shape_str(b.shape()));
  const bool a_vec = a.dim() == 1, b_vec = b.dim() == 1;
  Tensor out = matmul_nd(a_vec ? a.unsqueeze(0) : a, b_vec ? b.unsqueeze(1) : b);
  if (a_vec) out = out.squeeze(-2);
  if (b_vec) out = out.squeeze(-1);
  return out;
}

// The CPU back end's operands: x, w and bias on the CPU, of one dtype.
inline void check_linear_cpu(const char* op, const Tensor& x, const Tensor& w, const Tensor& bias) {
  check_cpu(op, x);
  check_cpu(op, w);
  check_cpu(op, bias);
  check_same_dtype(op, x, w);
  check_same_dtype(op, x, bias);
}

// x (…, in) · Wᵀ + b on the CPU (cpu::linear: one GEMM with the bias added in its store).
inline Tensor linear_cpu(const Tensor& x, const Tensor& w, const Tensor& bias) {
  check_linear_cpu("linear", x, w, bias);
  return cpu::linear(x, w, bias);
}

// gelu(x · Wᵀ + b) on the CPU in one pass over the output: {pre-activation (kept only when keep_pre), gelu}.
inline std::pair<Tensor, Tensor> linear_gelu_cpu(const Tensor& x, const Tensor& w, const Tensor& bias,
                                                 bool keep_pre) {
  check_linear_cpu("linear_gelu", x, w, bias);
  return cpu::linear_gelu(x, w, bias, keep_pre);
}

}  // namespace impl

// torch.matmul: (…, M, K) · (…, K, N) → (…, M, N), batch dims broadcast; a 1-D operand is a vector.
inline Var matmul(const Var& a, const Var& b) {
  Tensor va = a.value(), vb = b.value();
  Tensor out = impl::matmul(va, vb);
  const bool ga = a.requires_grad(), gb = b.requires_grad();
  return make_result(out, "matmul", {a, b}, [va, vb, ga, gb](const Tensor& g) -> std::vector<Tensor> {
    // Work with ≥2-D forms: vectors become a row (left operand) or a column (right operand).
    const Tensor a2 = va.dim() == 1 ? va.unsqueeze(0) : va;
    const Tensor b2 = vb.dim() == 1 ? vb.unsqueeze(1) : vb;
    Tensor g2 = g;
    if (va.dim() == 1 && vb.dim() == 1) {
      g2 = g.reshape({1, 1});
    } else if (va.dim() == 1) {
      g2 = g.unsqueeze(-2);
    } else if (vb.dim() == 1) {
      g2 = g.unsqueeze(-1);
    }
    Tensor da, db;
    if (ga) {
      Tensor full = impl::matmul_nd(g2, b2.transpose(-1, -2));  // (…, M, K)
      da = impl::sum_to(full, a2.shape()).reshape(va.shape());
    }
    if (gb) {
      Tensor full = impl::matmul_nd(a2.transpose(-1, -2), g2);  // (…, K, N)
      db = impl::sum_to(full, b2.shape()).reshape(vb.shape());
    }
    return {da, db};
  });
}

namespace detail {
// linear's shape rules (linear_gelu's too): weight (out, in), x (…, in), bias (out,) when given.
inline void check_linear_args(const Var& x, const Var& weight, const Var& bias) {
  RETIKD_CHECK(weight.dim() == 2, "linear: weight ", shape_str(weight.shape()), " must be 2-D (out, in)");
  RETIKD_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "linear: input ", shape_str(x.shape()),
               " does not end in the weight's in-features ", weight.size(1));
  if (bias.defined())
    RETIKD_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), "linear: bias ", shape_str(bias.shape()),
                 " must be (", weight.size(0), ",)");
}

// linear's input, weight and bias gradients from the output gradient g (the ones asked for; others undefined).
inline std::vector<Tensor> linear_grads(const Tensor& g, const Tensor& xv, const Tensor& wv, bool gx, bool gw,
                                        bool gbias, bool has_bias) {
  std::vector<Tensor> grads(has_bias ? 3 : 2);
  const int64_t in = wv.size(1), outf = wv.size(0);
  const Tensor g2 = g.reshape({-1, outf});
  if (gx) grads[0] = impl::matmul_nd(g2, wv).reshape(xv.shape());
  if (gw) grads[1] = impl::matmul_nd(g2.transpose(0, 1), xv.reshape({-1, in}));
  if (gbias) {
    if (g2.is_cuda())  // column sums as ones(1, rows) · g2 (cuBLAS), bitwise-independent of the CPU path
      grads[2] = impl::matmul_nd(Tensor::ones({1, g2.size(0)}, g2.dtype(), g2.device()), g2).reshape({outf});
    else
      grads[2] = impl::sum_to(g2, {outf});
  }
  return grads;
}
}  // namespace detail

// y = x · Wᵀ + b over the last dim of x: x (…, in), weight (out, in), bias (out) or undefined.
inline Var linear(const Var& x, const Var& weight, const Var& bias = Var()) {
  detail::check_linear_args(x, weight, bias);
  const bool has_bias = bias.defined();
  Tensor xv = x.value();
  const Tensor& wv = weight.value();
  const bool gx = x.requires_grad(), gw = weight.requires_grad(), gbias = has_bias && bias.requires_grad();
  Tensor out;
  if (has_bias && xv.is_cuda() && xv.dim() >= 2) {
    // GPU: the bias is broadcast into the output (one strided copy of a stride-0 view) and the GEMM
    // accumulates onto it (β = 1), so the bias costs one write instead of a separate add pass.
    // Always a fresh buffer: for one row the expanded view already counts as contiguous, and .contiguous()
    // would hand back the bias parameter itself for the GEMM to accumulate into.
    Shape out_shape = xv.shape();
    out_shape.back() = wv.size(0);
    const Tensor expanded = bias.value().expand(out_shape);
    const Tensor init = expanded.is_contiguous() ? expanded.clone() : expanded.contiguous();
    out = impl::matmul_nd(xv, wv.transpose(0, 1), init);
  } else if (has_bias && xv.is_cpu() && xv.dim() >= 2) {
    out = impl::linear_cpu(xv, wv, bias.value());
  } else {
    out = impl::matmul(xv, wv.transpose(0, 1));
    if (has_bias)
      out = out.is_cuda() ? impl::add(out, bias.value().expand(out.shape()).contiguous())
                          : impl::add(out, bias.value());
  }
  std::vector<Var> inputs{x, weight};
  if (has_bias) inputs.push_back(bias);
  return make_result(out, "linear", inputs, [xv, wv, gx, gw, gbias, has_bias](const Tensor& g) {
    return detail::linear_grads(g, xv, wv, gx, gw, gbias, has_bias);
  });
}

// gelu(linear(x, weight, bias)) (exact GELU). On the CPU with a bias and a batch of rows, the GELU runs on each
// GEMM tile while it is in cache instead of as a second pass over the (rows × out) output — a transformer
// MLP's fc1 + act; the pre-activation is kept only when a gradient will need it. The values are the
// composition's up to rounding (FMA contraction may differ); elsewhere (GPU, no bias, a 1-D input) it is the
// composition.
inline Var linear_gelu(const Var& x, const Var& weight, const Var& bias) {
  detail::check_linear_args(x, weight, bias);
  if (!bias.defined() || !x.value().is_cpu() || x.dim() < 2) return gelu(linear(x, weight, bias));
  const Tensor xv = x.value();
  const Tensor& wv = weight.value();
  const bool gx = x.requires_grad(), gw = weight.requires_grad(), gbias = bias.requires_grad();
  const bool keep_pre = grad_mode_enabled() && (gx || gw || gbias);
  std::pair<Tensor, Tensor> pre_act = impl::linear_gelu_cpu(xv, wv, bias.value(), keep_pre);
  const Tensor pre = pre_act.first;
  return make_result(pre_act.second, "linear_gelu", {x, weight, bias}, [xv, wv, pre, gx, gw, gbias](const Tensor& g) {
    return detail::linear_grads(impl::gelu_backward(g, pre), xv, wv, gx, gw, gbias, true);
  });
}

}  // namespace ops
}  // namespace retikd
