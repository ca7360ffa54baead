// retikd/cuda/optim.hpp — the fused optimizer updates (kernels/optim.cu): one kernel launch updates every
// float32 parameter of an optimizer on a GPU, driven by a multi-tensor-apply chunk table (tensor, start) that
// the launcher builds and uploads with the tensor table in one copy. The per-element formulas are
// retikd/cuda/op_programs.hpp's adamw_element / sgd_element, i.e. optim/optim.hpp's CPU update in float.
//
// Why one launch: a MobileNetV2 student has ~160 parameter tensors; a launch per tensor per step costs more
// than the arithmetic at batch 32 on small cards. C++14, no CUDA types; host arrays in, device pointers inside.
#pragma once

#include <cstdint>

#include "retikd/cuda/op_programs.hpp"

namespace retikd {
namespace cuda {

// One parameter: p, its gradient g and the two Adam moments (all float32, n elements, on `device`), with the
// scalars of its group (lr and weight decay may differ between groups).
struct AdamWTensor {
  float* p;
  const float* g;
  float* m;
  float* v;
  int64_t n;
  prog::AdamWScalars s;
};
// b (the momentum buffer) may be null when momentum is 0.
struct SGDTensor {
  float* p;
  const float* g;
  float* b;
  int64_t n;
  prog::SGDScalars s;
};

// Elements per chunk of the table (one block of 256 threads each).
constexpr int64_t kOptimChunk = 4096;

// Updates tensors[0 .. count) in one launch on the default stream of `device` (count 0: nothing).
void adamw_multi(const AdamWTensor* tensors, int count, int device);
void sgd_multi(const SGDTensor* tensors, int count, int device);

}  // namespace cuda
}  // namespace retikd
