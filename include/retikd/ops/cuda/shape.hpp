// retikd/ops/cuda/shape.hpp — the CUDA back end of the shape family (ops/shape.hpp): concatenation as 2-D
// device copies (retikd/cuda/runtime.hpp), so that it never goes through the host.
//
// The other shape ops need no back end of their own: the views share storage on any device, and slice /
// narrow backward and pad write through Tensor::copy_, which has its own device copies. index_select and gather
// are CPU-only. The front end validates concat's inputs and allocates the output; this header only copies.
// Bodies sit in `if constexpr (kCudaBuilt)` (ops/dispatch.hpp says why): a CPU-only build compiles this
// header and links no launcher.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "retikd/core/tensor.hpp"
#include "retikd/cuda/runtime.hpp"
#include "retikd/ops/dispatch.hpp"

namespace retikd {
namespace ops {
namespace cuda_backend {

// Writes the inputs xs, one after the other along dimension d, into `out` (their concatenation: contiguous, on
// their GPU, in their dtype, checked by the caller). Any dtype: bytes are copied.
inline Tensor concat(const std::vector<Tensor>& xs, int64_t d, Tensor out) {
  if constexpr (kCudaBuilt) {
    const Shape& out_shape = out.shape();
    // Each input is `outer` rows of x.size(d)·inner elements, landing at its column offset of the output's
    // rows — one 2-D device copy per input (a strided copy_ into a narrowed view would go through the host).
    int64_t outer = 1, inner = 1;
    for (int64_t k = 0; k < d; ++k) outer *= out_shape[k];
    for (int64_t k = d + 1; k < static_cast<int64_t>(out_shape.size()); ++k) inner *= out_shape[k];
    const std::size_t es = out.element_size(), row = static_cast<std::size_t>(out_shape[d] * inner) * es;
    std::size_t col = 0;
    for (const Tensor& x : xs) {
      const std::size_t width = static_cast<std::size_t>(x.size(d) * inner) * es;
      const Tensor c = x.contiguous();
      cuda::copy_2d_device_to_device(static_cast<char*>(out.raw_data()) + col, row, c.raw_data(), width, width,
                                     static_cast<std::size_t>(outer), out.device().index);
      col += width;
    }
    return out;
  }
  cuda_not_built("concat");
}

}  // namespace cuda_backend
}  // namespace ops
}  // namespace retikd
