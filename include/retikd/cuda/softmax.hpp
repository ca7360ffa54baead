// retikd/cuda/softmax.hpp — softmax / log-softmax over the last dimension of contiguous rows, forward and
// backward (kernels/softmax.cu), for ops/softmax.hpp's GPU path. C++14, no CUDA types; float32 or float16
// storage, float32 math; default stream of `device`.
#pragma once

#include <cstdint>

#include "retikd/cuda/dtype_code.hpp"

namespace retikd {
namespace cuda {

// y[r, :] = softmax(x[r, :]) (log: log_softmax) for r < rows, rows of n contiguous elements.
void softmax_rows(const void* x, void* y, int64_t rows, int64_t n, bool log, int dtype, int device);

// gx from the output y and its gradient g: softmax y·(g − Σ g·y); log_softmax g − exp(y)·Σ g.
void softmax_rows_backward(const void* g, const void* y, void* gx, int64_t rows, int64_t n, bool log, int dtype,
                           int device);

}  // namespace cuda
}  // namespace retikd
