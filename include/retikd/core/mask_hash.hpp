// retikd/core/mask_hash.hpp — the counter-based hash behind the partial cross replacement's masks
// (kd/cross_mask.hpp, DESIGN.md §5): which of the student's Q/K/V entries are swapped for the teacher's, decided
// element by element without a stored mask tensor.
//
// Element `index` of stream `stream` (0 = Q, 1 = K, 2 = V) at training step `step` is replaced iff
//     mix(key(seed, step, stream) + (index + 1)·φ) >> 32  <  threshold(p)
// where mix is SplitMix64's finaliser, φ = 0x9E3779B97F4A7C15 and threshold(p) = ⌊p·2³²⌋ (so p = 0 replaces
// nothing and p = 1 everything, exactly). The test is a pure function of its integer arguments, so the CPU
// op, the fused CUDA kernel (cuda/fused_tiles.hpp) and a test written with loops all agree bit for bit.
//
// In core/ because both kd/ (the CPU op) and cuda/ (the fused kernels' block programs, below ops/ and kd/)
// use it. C++14 only, no library headers beyond <cstdint>: nvcc 10.2 (Jetson) includes this file.
#pragma once

#include <cstdint>

#include "retikd/core/host_device.hpp"

namespace retikd {

// SplitMix64's output function: a bijective 64-bit mixer with full avalanche.
RETIKD_HOST_DEVICE inline uint64_t cross_mask_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// The per-(seed, step, stream) key; computed once per tensor on the host and passed to kernels.
RETIKD_HOST_DEVICE inline uint64_t cross_mask_key(uint64_t seed, uint64_t step, uint32_t stream) {
  uint64_t k = cross_mask_mix(seed + 0x9E3779B97F4A7C15ULL);
  k = cross_mask_mix(k ^ (step * 0xD1B54A32D192ED03ULL + 0x8CB92BA72F3D8DD7ULL));
  return cross_mask_mix(k ^ ((static_cast<uint64_t>(stream) + 1ULL) * 0xABC98388FB8FAC03ULL));
}

// ⌊p·2³²⌋ clamped to [0, 2³²]: compared with the top 32 bits of a hash, the replacement probability is
// threshold / 2³², i.e. p to within 2⁻³².
RETIKD_HOST_DEVICE inline uint64_t cross_mask_threshold(double p) {
  if (!(p > 0.0)) return 0ULL;  // also catches NaN
  if (p >= 1.0) return 4294967296ULL;
  return static_cast<uint64_t>(p * 4294967296.0);
}

// Whether element `index` (row-major flat index in the (B, heads, N, d) tensor) is replaced.
RETIKD_HOST_DEVICE inline bool cross_mask_replaced(uint64_t key, uint64_t index, uint64_t threshold) {
  return (cross_mask_mix(key + (index + 1ULL) * 0x9E3779B97F4A7C15ULL) >> 32) < threshold;
}

}  // namespace retikd
