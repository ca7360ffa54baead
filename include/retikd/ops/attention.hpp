// retikd/ops/attention.hpp — the core of multi-head self-attention on a fused qkv projection, forward and
// backward as one op on the CPU: qkv (B, T, 3·D), laid out (B, T, 3, heads, d) as timm's Attention makes it,
// gives softmax(q·kᵀ·scale)·v per head with the heads concatenated, (B, T, D).
//
// Why one op: built from views, matmul, mul and softmax (nn/transformer.hpp's tapped path) the same
// computation copies q·scale and the output transpose, runs six batched GEMMs that each wake the thread pool,
// and its backward scatters the q, k and v gradients into three zero-filled (3, B, H, T, d) buffers that are
// then summed — ~225 ms of a ~840 ms ViT-Tiny training step on one core (docs/results.md, "ViT on the CPU").
// Here each (batch, head) pair is one task: its GEMMs read q, k, v straight out of the qkv rows (leading
// dimension 3·D), write the output and the qkv gradient straight into their (B, T, D) / (B, T, 3·D) places,
// and keep the T×T scores in cache between the GEMMs and the softmax. The probabilities are saved for the
// backward only when a gradient will be needed; without one a per-thread T×T scratch is used.
//
// Backward per head, P = softmax(S), S = (q·scale)·kᵀ, O = P·v, G = ∂L/∂O:
//   dv = Pᵀ·G,  dP = G·vᵀ,  dS = P ⊙ (dP − rowsum(dP ⊙ P)),  dq = scale·dS·k,  dk = dSᵀ·(q·scale).
// Every product is computed as the view path computes it, so the two agree to the bit (tests check it).
// The fused loops are CPU-only (float32, float64); a GPU qkv takes qkv_attention_composite, the same
// computation from views, matmul, mul and softmax (the layer's tapped path), which the tests also run on CPU
// tensors against the fused op.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/core/parallel.hpp"
#include "retikd/ops/common.hpp"
#include "retikd/ops/cpu/gemm.hpp"
#include "retikd/ops/cpu/vec_math.hpp"
#include "retikd/ops/elementwise.hpp"
#include "retikd/ops/matmul.hpp"
#include "retikd/ops/shape.hpp"
#include "retikd/ops/softmax.hpp"

namespace retikd {
namespace ops {
namespace impl {

struct QkvAttentionShape {
  int64_t batch = 0, tokens = 0, dim = 0, heads = 0, head_dim = 0;
};

inline QkvAttentionShape qkv_attention_shape(const Tensor& qkv, int64_t heads, const char* op) {
  RETIKD_CHECK(qkv.defined(), op, ": qkv is undefined");
  RETIKD_CHECK(heads > 0, op, ": heads must be positive, got ", heads);
  RETIKD_CHECK(qkv.dim() == 3 && qkv.size(2) > 0 && qkv.size(2) % (3 * heads) == 0, op, ": qkv ",
               shape_str(qkv.shape()), " must be (B, T, 3·D) with D a multiple of heads = ", heads);
  check_cpu(op, qkv);
  QkvAttentionShape s;
  s.batch = qkv.size(0);
  s.tokens = qkv.size(1);
  s.dim = qkv.size(2) / 3;
  s.heads = heads;
  s.head_dim = s.dim / heads;
  return s;
}

// A per-thread block of `count` elements, reused across calls: slot 0 the T×T scores of one head, slot 1 its
// scaled queries.
template <class T>
T* attention_scratch(int slot, std::size_t count) {
  static thread_local std::vector<T> buffers[2];
  std::vector<T>& buffer = buffers[slot];
  if (buffer.size() < count) buffer.resize(count);
  return buffer.data();
}

// q·scale of one head into a contiguous (T, d) block. Scaling q before the product (as timm does) makes the
// scores bit-identical to the view path's `matmul(mul(q, scale), kᵀ)`, so a forward with attention taps and
// one without agree exactly.
template <class T>
T* scaled_queries(const T* q, int64_t ld, int64_t tokens, int64_t d, T scale) {
  T* qs = attention_scratch<T>(1, static_cast<std::size_t>(tokens * d));
  for (int64_t i = 0; i < tokens; ++i)
    for (int64_t c = 0; c < d; ++c) qs[i * d + c] = q[i * ld + c] * scale;
  return qs;
}

// The row stride of the T×T score blocks: float rows are padded to whole SIMD vectors, so the softmax runs
// without a scalar tail (197 tokens: 208; 257: 272). The padding columns hold 0 after the softmax.
template <class T>
int64_t score_stride(int64_t tokens) {
#if defined(RETIKD_VEC_MATH)
  if constexpr (std::is_same<T, float>::value)
    return (tokens + cpu::vec::kLanes - 1) / cpu::vec::kLanes * cpu::vec::kLanes;
#endif
  return tokens;
}

// Row-wise softmax of a rows × n block (row stride ld ≥ n) in place, max-subtracted as ops::softmax; the
// padding columns [n, ld) become 0.
template <class T>
void softmax_rows_in_place(T* s, int64_t rows, int64_t n, int64_t ld) {
  for (int64_t r = 0; r < rows; ++r) {
    T* row = s + r * ld;
    if constexpr (std::is_same<T, float>::value) {
      for (int64_t j = n; j < ld; ++j) row[j] = -std::numeric_limits<float>::infinity();
      cpu::vec::softmax_row(row, row, ld);
    } else {
      T m = row[0];
      for (int64_t j = 1; j < n; ++j) m = row[j] > m ? row[j] : m;
      T total = T(0);
      for (int64_t j = 0; j < n; ++j) {
        row[j] = std::exp(row[j] - m);
        total += row[j];
      }
      const T inv = T(1) / total;
      for (int64_t j = 0; j < n; ++j) row[j] *= inv;
    }
  }
}

// out (B, T, D) from contiguous qkv (B, T, 3D); probs_keep (B, H, T, score_stride(T)) or null.
template <class T>
void qkv_attention_forward(const QkvAttentionShape& s, const T* qkv, T scale, T* out, T* probs_keep) {
  const int64_t Tn = s.tokens, D = s.dim, H = s.heads, d = s.head_dim, ld = 3 * D, lp = score_stride<T>(Tn);
  parallel_for(0, s.batch * H, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t task = lo; task < hi; ++task) {
      const int64_t b = task / H, h = task % H;
      const T* q = qkv + b * Tn * ld + h * d;  // (T, d), row stride 3D
      const T* k = q + D;
      const T* v = q + 2 * D;
      T* p = probs_keep ? probs_keep + task * Tn * lp : attention_scratch<T>(0, static_cast<std::size_t>(Tn * lp));
      const T* qs = scaled_queries(q, ld, Tn, d, scale);
      cpu::gemm_serial<T>(false, true, Tn, Tn, d, T(1), qs, d, k, ld, T(0), p, lp);  // (T, T) scores
      softmax_rows_in_place(p, Tn, Tn, lp);
      cpu::gemm_serial<T>(false, false, Tn, d, Tn, T(1), p, lp, v, ld, T(0), out + b * Tn * D + h * d, D);
    }
  });
}

// gqkv (B, T, 3D), every element written, from the output gradient g (B, T, D, contiguous).
template <class T>
void qkv_attention_backward(const QkvAttentionShape& s, const T* qkv, const T* probs, const T* g, T scale,
                            T* gqkv) {
  const int64_t Tn = s.tokens, D = s.dim, H = s.heads, d = s.head_dim, ld = 3 * D, lp = score_stride<T>(Tn);
  parallel_for(0, s.batch * H, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t task = lo; task < hi; ++task) {
      const int64_t b = task / H, h = task % H;
      const T* q = qkv + b * Tn * ld + h * d;
      const T* k = q + D;
      const T* v = q + 2 * D;
      const T* p = probs + task * Tn * lp;
      const T* go = g + b * Tn * D + h * d;  // (T, d), row stride D
      T* gq = gqkv + b * Tn * ld + h * d;
      T* gk = gq + D;
      T* gv = gq + 2 * D;
      cpu::gemm_serial<T>(true, false, Tn, d, Tn, T(1), p, lp, go, D, T(0), gv, ld);  // dv = Pᵀ·G
      T* ds = attention_scratch<T>(0, static_cast<std::size_t>(Tn * lp));
      cpu::gemm_serial<T>(false, true, Tn, Tn, d, T(1), go, D, v, ld, T(0), ds, lp);  // dP = G·vᵀ
      for (int64_t r = 0; r < Tn; ++r) {  // dS = P ⊙ (dP − rowsum(dP ⊙ P)), in place
        T* dr = ds + r * lp;
        const T* pr = p + r * lp;
        T dot = T(0);
        if constexpr (std::is_same<T, float>::value) {
          dot = cpu::vec::dot(dr, pr, Tn);
        } else {
          for (int64_t j = 0; j < Tn; ++j) dot += dr[j] * pr[j];
        }
        for (int64_t j = 0; j < Tn; ++j) dr[j] = pr[j] * (dr[j] - dot);
      }
      cpu::gemm_serial<T>(false, false, Tn, d, Tn, scale, ds, lp, k, ld, T(0), gq, ld);  // dq = scale·dS·k
      const T* qs = scaled_queries(q, ld, Tn, d, scale);
      cpu::gemm_serial<T>(true, false, Tn, d, Tn, T(1), ds, lp, qs, d, T(0), gk, ld);     // dk = dSᵀ·(q·scale)
    }
  });
}

}  // namespace impl

// softmax(q·kᵀ·scale)·v for every head of a fused qkv projection (B, T, 3·D) laid out (B, T, 3, heads, d);
// returns (B, T, D) with the heads concatenated (timm's `(attn @ v).transpose(1, 2).reshape(B, T, D)`).
// CPU tensors, float32 or float64.
namespace impl {
// qkv_attention from views, matmul, mul and softmax: the GPU route (any device), differentiable through them.
inline Var qkv_attention_composite(const Var& qkv, int64_t heads, double scale) {
  const QkvAttentionShape s = qkv_attention_shape(qkv.value(), heads, "qkv_attention");
  // (B, T, 3, H, d) → (3, B, H, T, d), as timm's Attention.
  const Var r = ops::permute(ops::reshape(qkv, {s.batch, s.tokens, 3, s.heads, s.head_dim}), {2, 0, 3, 1, 4});
  auto part = [&](int64_t i) { return ops::squeeze(ops::narrow(r, 0, i, 1), 0); };
  const Var q = part(0), k = part(1), v = part(2);
  const Var p = ops::softmax(ops::matmul(ops::mul(q, scale), ops::transpose(k, -2, -1)), -1);  // (B, H, T, T)
  return ops::reshape(ops::permute(ops::matmul(p, v), {0, 2, 1, 3}), {s.batch, s.tokens, s.dim});
}
}  // namespace impl

inline Var qkv_attention(const Var& qkv, int64_t heads, double scale) {
  const char* op = "qkv_attention";
  if (gpu_float(qkv.value())) return impl::qkv_attention_composite(qkv, heads, scale);
  const impl::QkvAttentionShape s = impl::qkv_attention_shape(qkv.value(), heads, op);
  const Tensor x = qkv.value().contiguous();
  const bool keep = grad_mode_enabled() && qkv.requires_grad();
  Tensor out = Tensor::empty({s.batch, s.tokens, s.dim}, x.dtype());
  Tensor probs;  // (B, H, T, score_stride(T)): internal to the op, never handed out
  if (keep) {
    const int64_t lp = x.dtype() == DType::float32 ? impl::score_stride<float>(s.tokens) : s.tokens;
    probs = Tensor::empty({s.batch, s.heads, s.tokens, lp}, x.dtype());
  }
  if (out.numel() > 0) {
    dispatch_floating(x.dtype(), op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      impl::qkv_attention_forward<T>(s, x.data<T>(), static_cast<T>(scale), out.data<T>(),
                                     keep ? probs.data<T>() : nullptr);
    });
  }
  return make_result(out, op, {qkv}, [s, x, probs, scale](const Tensor& g) -> std::vector<Tensor> {
    Tensor gx = Tensor::empty(x.shape(), x.dtype());
    if (gx.numel() == 0) return {gx};
    const Tensor gc = g.contiguous();
    check_cpu("qkv_attention backward", gc);
    check_same_dtype("qkv_attention backward", gc, x);
    dispatch_floating(x.dtype(), "qkv_attention backward", [&](auto tag) {
      using T = typename decltype(tag)::type;
      impl::qkv_attention_backward<T>(s, x.data<T>(), probs.data<T>(), gc.data<T>(), static_cast<T>(scale),
                                      gx.data<T>());
    });
    return {gx};
  });
}

}  // namespace ops
}  // namespace retikd
