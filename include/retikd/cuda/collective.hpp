// retikd/cuda/collective.hpp — the device half of dist::NcclGroup's rank-order all-reduce (kernels/collective.cu).
//
// NcclGroup exchanges chunks with ncclSend / ncclRecv (each rank receives chunk r of every rank) and then adds
// them here, in rank order, before ncclAllGather: the same order as MpiGroup's host sum, so results do not
// depend on NCCL's ring or tree choice. C++14, no CUDA types: `stream` is a cudaStream_t passed as void*.
#pragma once

#include <cstdint>

#include "retikd/cuda/dtype_code.hpp"

namespace retikd {
namespace cuda {

// out[i] = parts[0·n + i] + parts[1·n + i] + … + parts[(count − 1)·n + i], added left to right in the dtype's own
// arithmetic (kFloat32, kFloat64, kInt64; kFloat16 is summed in float32 and rounded once), for i in [0, n), on
// `stream` of `device` (nullptr: the legacy default stream). out must not overlap parts. Throws
// std::invalid_argument for another dtype, n < 0 or count < 1.
void sum_parts_in_order(const void* parts, void* out, int64_t n, int count, int dtype, int device, void* stream);

}  // namespace cuda
}  // namespace retikd
