// tests/cuda_test_util.hpp — what the GPU-vs-CPU test files share (DESIGN.md §7): the skip without a device,
// a fresh seed per run (printed on failure by CAPTURE), NaN-poisoned device blocks so unwritten outputs fail,
// random inputs rounded to the tested dtype, and the |gpu − cpu| ≤ atol + rtol·|cpu| comparison.
#pragma once
#ifdef RETIKD_WITH_CUDA

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>

#include "retikd/core/random.hpp"
#include "retikd/core/tensor.hpp"
#include "retikd/cuda/runtime.hpp"

namespace retikd {
namespace cuda_test {

#define RETIKD_SKIP_WITHOUT_CUDA()                \
  do {                                            \
    if (::retikd::cuda::device_count() == 0) {    \
      MESSAGE("skipped: no CUDA device");         \
      return;                                     \
    }                                             \
  } while (0)

inline uint64_t fresh_seed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

// Allocates and frees NaN-filled blocks so the next allocations of similar sizes start poisoned: an op that
// leaves elements unwritten then fails the comparison.
inline void poison_cache(int64_t elements) {
  for (DType dt : {DType::float32, DType::float16}) {
    Tensor t = Tensor::full({std::max<int64_t>(elements, 1)}, std::nan(""), dt, Device::cuda(0));
    (void)t;
  }
}

// Normal values (× scale) rounded to dt, returned in dt on the CPU.
inline Tensor rnd(Generator& g, const Shape& s, DType dt, double scale = 1.0) {
  Tensor t = Tensor::empty(s, DType::float64);
  normal_(t, 0.0, scale, g);
  return t.to(dt);
}

inline void check_close(const std::string& what, const Tensor& gpu, const Tensor& cpu, double rtol, double atol) {
  REQUIRE(gpu.defined());
  REQUIRE(cpu.defined());
  REQUIRE(gpu.shape() == cpu.shape());
  const auto g = gpu.to(Device::cpu()).to(DType::float64).contiguous().to_vector<double>();
  const auto c = cpu.to(Device::cpu()).to(DType::float64).contiguous().to_vector<double>();
  int bad = 0;
  std::size_t worst = 0;
  double worst_excess = -1.0, max_ref = 0.0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    const double err = std::abs(g[i] - c[i]), allowed = atol + rtol * std::abs(c[i]);
    max_ref = std::max(max_ref, std::abs(c[i]));
    if (!(err <= allowed)) ++bad;
    if (!(err - allowed <= worst_excess)) {
      worst_excess = err - allowed;
      worst = i;
    }
  }
  // On failure: how many, and the worst element (GPU, reference, the tolerance there), so one run tells
  // a few rounding outliers from a systematic error.
  INFO(what << ": " << bad << " of " << g.size() << " elements outside tolerance; worst at " << worst << ": gpu "
            << (g.empty() ? 0.0 : g[worst]) << ", reference " << (c.empty() ? 0.0 : c[worst]) << ", allowed "
            << (c.empty() ? 0.0 : atol + rtol * std::abs(c[worst])) << "; max |reference| " << max_ref);
  CHECK(bad == 0);
}

}  // namespace cuda_test
}  // namespace retikd

#endif  // RETIKD_WITH_CUDA
