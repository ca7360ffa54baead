// tests/cuda_test_util.hpp — what the GPU-vs-CPU test files share (DESIGN.md §7): the skip without a device,
// a fresh seed per run (printed on failure by CAPTURE), NaN-poisoned device blocks so unwritten outputs fail,
// random inputs rounded to the tested dtype, and compare_autograd (an op's forward and input gradients on the
// GPU against float64 on the CPU, through test_util.hpp's check_close).
#pragma once
#ifdef RETIKD_WITH_CUDA

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/core/random.hpp"
#include "retikd/core/tensor.hpp"
#include "retikd/cuda/runtime.hpp"
#include "test_util.hpp"

namespace retikd {
namespace cuda_test {

#define RETIKD_SKIP_WITHOUT_CUDA()                \
  do {                                            \
    if (::retikd::cuda::device_count() == 0) {    \
      MESSAGE("skipped: no CUDA device");         \
      return;                                     \
    }                                             \
  } while (0)

// The device the GPU-vs-CPU tests run on.
const Device kGpu = Device::cuda(0);

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

// Runs f on float64 CPU leaves (the reference) and on GPU leaves made from the same values rounded to the
// inputs' dtype, backs both up with the same random output gradient and compares the outputs and every input
// gradient with check_close (test_util.hpp).
inline void compare_autograd(const std::string& name, Generator& gen, const std::vector<Tensor>& inputs_dt,
                             const std::function<Var(const std::vector<Var>&)>& f, double rtol, double atol) {
  const Device gpu = Device::cuda(0);
  std::vector<Var> cpu_in, gpu_in;
  for (const Tensor& t : inputs_dt) {
    cpu_in.emplace_back(t.to(DType::float64), true);
    gpu_in.emplace_back(t.to(gpu), true);
  }
  Var cy = f(cpu_in);
  const Tensor g = rnd(gen, cy.shape(), inputs_dt[0].dtype());
  cy.backward(g.to(DType::float64));
  poison_cache(4 * cy.value().numel() + 4096);
  Var gy = f(gpu_in);
  REQUIRE(gy.value().is_cuda());
  gy.backward(g.to(gpu));
  test::check_close(name + " forward", gy.value(), cy.value(), rtol, atol);
  for (std::size_t i = 0; i < cpu_in.size(); ++i)
    test::check_close(name + " grad of input " + std::to_string(i), gpu_in[i].grad(), cpu_in[i].grad(), rtol,
                      atol);
}

}  // namespace cuda_test
}  // namespace retikd

#endif  // RETIKD_WITH_CUDA
