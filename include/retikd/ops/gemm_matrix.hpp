// retikd/ops/gemm_matrix.hpp — how one operand of a (batched) GEMM is laid out, the type the matmul front end
// (ops/matmul.hpp) hands to both back ends (ops/cpu/matmul.hpp, ops/cuda/matmul.hpp), so neither back end
// includes the front end (as ops/conv_geometry.hpp does for the convolutions).
#pragma once

#include <cstdint>

namespace retikd {
namespace ops {

// One operand of a (batched) GEMM as the front end laid it out: its data (kept alive by the caller, on the
// device the GEMM runs on), whether it is read transposed, its leading dimension, and its batch stride in
// elements (0: one matrix shared by the whole batch).
struct GemmMatrix {
  const void* data = nullptr;
  bool trans = false;
  int64_t ld = 0;
  int64_t batch_stride = 0;
};

}  // namespace ops
}  // namespace retikd
