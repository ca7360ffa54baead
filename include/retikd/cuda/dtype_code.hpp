// retikd/cuda/dtype_code.hpp — the dtype codes the launchers take as plain ints, so that the C++14
// launcher declarations need neither core/'s C++17 DType nor any CUDA type.
#pragma once

namespace retikd {
namespace cuda {

enum DTypeCode { kFloat32 = 0, kFloat16 = 1, kInt32 = 2, kInt64 = 3, kFloat64 = 4 };

}  // namespace cuda
}  // namespace retikd
