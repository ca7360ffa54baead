// retikd/cuda/elementwise.hpp — launchers of the elementwise kernel family (kernels/elementwise.cu):
// fill, dtype casts, strided gathers and the elementwise unary / binary math that ops/ dispatches to when a
// tensor lives on a GPU.
//
// C++14, no CUDA types: buffers are void* device pointers and dtypes the DTypeCode ints. Every launcher
// runs on `device`'s default stream (asynchronously: call synchronize() or copy back before reading), leaves
// the current device as it was, and throws std::invalid_argument for an unknown dtype / op or a negative
// size. float16 math is done in float32 (convert, compute, round to nearest even).
#pragma once

#include <cstdint>

#include "retikd/cuda/dtype_code.hpp"

namespace retikd {
namespace cuda {

enum BinaryOp {
  kAdd = 0,
  kSub = 1,
  kMul = 2,
  kDiv = 3,
  kMax = 4,
  kMin = 5,
  // Activation gradients: out = a · f'(b), a the incoming gradient, b the saved input x (or output y where
  // named), the same formulas as ops/activation.hpp's CPU backward helpers.
  kReluGrad = 6,     // b = x: a where x > 0, else 0
  kRelu6Grad = 7,    // b = x: a where 0 < x < 6
  kSigmoidGrad = 8,  // b = y = σ(x): a·y(1 − y)
  kTanhGrad = 9,     // b = y = tanh(x): a·(1 − y²)
  kGeluErfGrad = 10, // b = x: a·(Φ(x) + x·φ(x))
  kSiluGrad = 11,    // b = x: a·σ(x)(1 + x(1 − σ(x)))
  // Binary cross-entropy on logits a = x against targets b = y (no pos_weight), stably:
  kBceLogits = 12,       // (1 − y)·x + softplus(−x)
  kBceLogitsGradX = 13,  // ∂/∂x: (1 − y) − σ(−x)
  // Comparisons, 1 where true and 0 elsewhere (a NaN compares false except in kNe), as ops/elementwise.hpp's
  // eq … ge; kGe / kLe are also the masks of maximum's / minimum's backward.
  kEq = 14,
  kNe = 15,
  kLt = 16,
  kLe = 17,
  kGt = 18,
  kGe = 19,
  kAbsGrad = 20  // b = x: a·sign(x), 0 at x = 0 (abs's subgradient)
};

enum UnaryOp {
  kRelu = 0,
  kRelu6 = 1,
  kSigmoid = 2,
  kTanh = 3,
  kGeluErf = 4,  // x * Phi(x) with the exact erf
  kSilu = 5,
  kNeg = 6,
  kExp = 7,
  kAbs = 8,
  kSqrt = 9,  // NaN below 0, as sqrtf
  kLog = 10   // −inf at 0, NaN below 0, as logf
};

// dst[i] = value for i in [0, n), for any of the five dtypes. value must be representable as the dtype's
// integer type for int32 / int64 (fractions truncate; NaN or out of range throws).
void fill(void* dst, int dtype, int64_t n, double value, int device);

// dst[i] = src[i] converted, for every pair of the five dtypes (same dtype: a copy). Float to integer
// truncates toward zero and saturates (NaN becomes 0); integer narrowing wraps; to float16 rounds to
// nearest even. src and dst may be the same buffer only when the dtypes have the same size.
void cast(const void* src, int src_dtype, void* dst, int dst_dtype, int64_t n, int device);

// Gathers the strided view (sizes[ndim], src_strides[ndim] in elements, may be 0 or negative, src_offset in
// elements) of src into the contiguous buffer dst, in row-major order. Any dtype; at most 8 dimensions after
// merging the dimensions that are contiguous with each other; ndim == 0 copies one element.
void strided_copy(const void* src, int dtype, int ndim, const int64_t* sizes, const int64_t* src_strides,
                  int64_t src_offset, void* dst, int device);

// out[i] = a[i] op b[i] (op: BinaryOp) for float32 and float16; out may alias a or b. max / min propagate
// NaN like torch.maximum / torch.minimum.
void binary(int op, const void* a, const void* b, void* out, int dtype, int64_t n, int device);

// out[i] = op(x[i]) (op: UnaryOp) for float32 and float16; out may alias x. relu / relu6 keep NaN.
void unary(int op, const void* x, void* out, int dtype, int64_t n, int device);

}  // namespace cuda
}  // namespace retikd
