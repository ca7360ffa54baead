// retikd/ops/cuda/reduce.hpp — the CUDA back end of the reduction family (ops/reduce.hpp): sum, mean and max
// as one call of retikd/cuda/nn_ops.hpp's row-reduction kernel (float32 accumulation).
//
// The front end owns the reduction plan: it checks the dtype (float32 / float16), allocates the output and
// lays the input out as rows × row_len with the reduced dimensions last (its rows_view), so this header needs
// none of ops/reduce.hpp and runs one launcher. argmax and max's backward have no CUDA path.
// Bodies sit in `if constexpr (kCudaBuilt)` (ops/dispatch.hpp says why): a CPU-only build compiles this
// header and links no launcher.
#pragma once

#include <cstdint>

#include "retikd/core/tensor.hpp"
#include "retikd/cuda/nn_ops.hpp"
#include "retikd/ops/dispatch.hpp"

namespace retikd {
namespace ops {
namespace cuda_backend {

// The reductions of the row kernel (cuda::RowReduceOp), for the front end to name: kRowSum (scale·Σ: sum,
// mean) and kRowMax (NaN wins, as on the CPU).
using cuda::kRowMax;
using cuda::kRowSum;

// Reduces each row of `r` (contiguous rows × row_len, on out's GPU in out's dtype) into `out` (rows elements,
// contiguous): op kRowSum (times scale: 1/row_len for mean) or kRowMax.
inline Tensor reduce_rows(const Tensor& r, Tensor out, int64_t rows, int64_t row_len, int op, double scale) {
  if constexpr (kCudaBuilt) {
    cuda::reduce_rows(r.raw_data(), out.raw_data(), rows, row_len, op, static_cast<float>(scale),
                      static_cast<int>(out.dtype()), out.device().index);
    return out;
  }
  cuda_not_built("reduce");
}

}  // namespace cuda_backend
}  // namespace ops
}  // namespace retikd
