// retikd/kd/cross_mask.hpp — which of the student's Q/K/V entries the partial cross replacement swaps for the
// teacher's (DESIGN.md §5, PCA projector): the counter-based hash of core/mask_hash.hpp under its kd:: names,
// and one independent stream per projected tensor.
//
// C++14 only, no library headers beyond <cstdint>: nvcc 10.2 (Jetson) includes this file.
#pragma once

#include <cstdint>

#include "retikd/core/mask_hash.hpp"

namespace retikd {
namespace kd {

using ::retikd::cross_mask_key;
using ::retikd::cross_mask_mix;
using ::retikd::cross_mask_replaced;
using ::retikd::cross_mask_threshold;

// Streams: one independent mask per projected tensor.
enum CrossMaskStream : uint32_t { kCrossMaskQ = 0, kCrossMaskK = 1, kCrossMaskV = 2 };

}  // namespace kd
}  // namespace retikd
