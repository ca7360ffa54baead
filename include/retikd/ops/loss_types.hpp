// retikd/ops/loss_types.hpp — the loss family's reduction mode, cross-entropy options and the statistics its
// forwards save for their backwards: shared by the front end (ops/loss.hpp) and its CUDA back end
// (ops/cuda/loss.hpp), which fills and reads the same Saved structs without including its front end.
#pragma once

#include <cstdint>

#include "retikd/core/shape.hpp"
#include "retikd/core/tensor.hpp"

namespace retikd {
namespace ops {

// none: one loss per element (per sample for cross_entropy); sum: the total; mean: the total divided by the
// number of terms (cross_entropy: by the summed weights of the counted targets); batchmean (kl_div and
// kl_div_log_input only): the total divided by the size of the first dimension.
enum class Reduction { none, mean, sum, batchmean };

inline const char* reduction_name(Reduction r) {
  switch (r) {
    case Reduction::none: return "none";
    case Reduction::mean: return "mean";
    case Reduction::sum: return "sum";
    case Reduction::batchmean: return "batchmean";
  }
  return "unknown";
}

namespace impl {

// Per-row statistics saved by the forward pass for the backward pass.
struct CrossEntropySaved {
  Tensor logits;   // (N, C) contiguous
  Tensor targets;  // (N,) int64 contiguous
  Tensor weight;   // (C,) logits' dtype, contiguous, or undefined
  Tensor lse;      // (N,) log Σ_c exp(z_ic)
  double label_smoothing = 0.0;
  int64_t ignore_index = -100;
  double denominator = 1.0;  // what the mean divides by
};

}  // namespace impl

struct CrossEntropyOptions {
  Tensor weight;                 // (C) class weights; undefined: all 1
  double label_smoothing = 0.0;  // ε in [0, 1]
  Reduction reduction = Reduction::mean;
  int64_t ignore_index = -100;  // targets equal to this contribute nothing (PyTorch's default, -100)
};

namespace impl {

// Saved by kl_div's forward for its backward.
struct KlDivSaved {
  Tensor s, t;          // student and teacher logits, contiguous, (R, C) as rows of the last dimension
  Tensor lse_s, lse_t;  // (R,) log-sum-exp of s/τ and t/τ
  double tau = 1.0;
  Shape shape;
};

}  // namespace impl
}  // namespace ops
}  // namespace retikd
