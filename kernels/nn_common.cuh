// kernels/nn_common.cuh — what the nn op kernel families (row_ops.cu, norm.cu, pool_resize.cu, loss_rows.cu; the
// launchers of include/retikd/cuda/nn_ops.hpp) share: their block size, the one-warp-per-row grid, the size
// check. The dtype check and dispatch, launch32 (launch.cuh) and the warp reductions (reduce.cuh) are shared with
// the other families.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda_check.cuh"
#include "launch.cuh"
#include "reduce.cuh"
#include "scratch.cuh"
#include "retikd/core/half.hpp"
#include "retikd/cuda/nn_ops.hpp"
#include "retikd/cuda/op_programs.hpp"
#include "retikd/cuda/runtime.hpp"

namespace retikd {
namespace cuda {
namespace nn_common {

// The shared helpers the families call unqualified (each .cu says `using namespace nn_common;`).
using detail::check_float_dtype;
using detail::launch32;
using detail::nan_max;
using detail::warp_max_f;
using detail::warp_nan_max;
using prog::from_f;
using prog::to_f;

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;

inline void check_sizes(const char* op, bool ok) {
  if (!ok) throw std::invalid_argument(std::string(op) + ": invalid or too large sizes");
}

// Blocks of a one-warp-per-row launch.
inline unsigned warp_row_blocks(int64_t rows) {
  const int64_t b = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (b > 2147483647LL) throw std::invalid_argument("retikd::cuda: too many rows for one launch");
  return static_cast<unsigned>(b);
}

}  // namespace nn_common
}  // namespace cuda
}  // namespace retikd
