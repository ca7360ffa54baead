// tests/test_cuda_ops.cpp — ops/ on a GPU against the same ops on the CPU (DESIGN.md §7): matmul (cuBLAS,
// fp32 and fp16 with fp32 accumulation, transposed and broadcast operands), linear forward and backward, and
// softmax / log-softmax forward and backward. Fresh random inputs (seed printed on failure), never all zero;
// outputs are new tensors from the op, poisoned by construction (the caching allocator hands back blocks
// filled with NaN by the previous case — see poison_cache); |gpu − cpu| ≤ atol + rtol·|cpu| with rtol 1e-5
// (fp32; atol scaled by the inner dimension) or 1e-2 (fp16). Every case skips with a message without a device.
#ifdef RETIKD_WITH_CUDA

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "retikd/core/random.hpp"
#include "retikd/cuda/blas.hpp"
#include "retikd/cuda/runtime.hpp"
#include "retikd/ops/matmul.hpp"
#include "retikd/ops/softmax.hpp"
#include "cuda_test_util.hpp"

using namespace retikd;
using namespace retikd::cuda_test;
using namespace retikd::test;

namespace {

}  // namespace

TEST_CASE("cuda matmul: cuBLAS against the CPU GEMM, fp32 and fp16, transposes and broadcast batches") {
  RETIKD_SKIP_WITHOUT_CUDA();
  cuda::set_allow_tf32(false);
  const uint64_t seed = fresh_seed();
  CAPTURE(seed);
  Generator gen(seed);
  struct Case { Shape a, b; bool ta, tb; };
  const Case cases[] = {{{37, 45}, {45, 29}, false, false}, {{3, 17, 33}, {3, 33, 9}, false, false},
                        {{2, 3, 17, 33}, {33, 11}, false, false}, {{5, 19}, {7, 19}, false, true},
                        {{4, 21, 13}, {4, 21, 6}, true, false}, {{64, 196, 64}, {64, 196, 64}, false, true}};
  for (DType dt : {DType::float32, DType::float16}) {
    for (const Case& c : cases) {
      CAPTURE(shape_str(c.a));
      CAPTURE(dtype_name(dt));
      const Tensor a = rnd(gen, c.a, dt), b = rnd(gen, c.b, dt);
      const Tensor av = c.ta ? a.transpose(-1, -2) : a, bv = c.tb ? b.transpose(-1, -2) : b;
      // CPU reference in float64 on the same (rounded) values.
      const Tensor cpu = ops::impl::matmul(av.to(DType::float64), bv.to(DType::float64));
      poison_cache(cpu.numel());
      const Tensor ga = a.to(Device::cuda(0)), gb = b.to(Device::cuda(0));
      const Tensor gpu = ops::impl::matmul(c.ta ? ga.transpose(-1, -2) : ga, c.tb ? gb.transpose(-1, -2) : gb);
      const double K = static_cast<double>(av.size(-1));
      if (dt == DType::float32)
        check_close("matmul fp32", gpu, cpu, 1e-5, 1e-6 * K);
      else
        check_close("matmul fp16", gpu, cpu, 1e-2, 1e-3 * K);
    }
    // A shared right operand over a batch whose rows are not evenly spaced (a narrowed view): this one must
    // stay a strided-batched GEMM, not be folded into one (B·M)-row product.
    const Tensor a = rnd(gen, {3, 20, 33}, dt), b = rnd(gen, {33, 9}, dt);
    const Tensor cpu = ops::impl::matmul(a.narrow(1, 2, 17).to(DType::float64), b.to(DType::float64));
    poison_cache(cpu.numel());
    const Tensor gpu = ops::impl::matmul(a.to(Device::cuda(0)).narrow(1, 2, 17), b.to(Device::cuda(0)));
    check_close("matmul of a narrowed batch", gpu, cpu, dt == DType::float32 ? 1e-5 : 1e-2,
                (dt == DType::float32 ? 1e-6 : 1e-3) * 33);
  }
}

TEST_CASE("cuda linear: forward and backward (input, weight, bias) against the CPU") {
  RETIKD_SKIP_WITHOUT_CUDA();
  const uint64_t seed = fresh_seed();
  CAPTURE(seed);
  Generator gen(seed);
  // 3-D input: one folded GEMM accumulating onto the broadcast bias; 2-D: the plain GEMM onto it.
  // One row: the bias must not be accumulated into (a broadcast view of one row counts as contiguous).
  for (const Shape& xs : {Shape{3, 7, 45}, Shape{11, 45}, Shape{1, 45}}) {
  CAPTURE(shape_str(xs));
  Shape ys = xs;
  ys.back() = 29;
  const Tensor x = rnd(gen, xs, DType::float32), w = rnd(gen, {29, 45}, DType::float32),
               b = rnd(gen, {29}, DType::float32), g = rnd(gen, ys, DType::float32);
  Var cx(x, true), cw(w, true), cb(b, true);
  Var cy = ops::linear(cx, cw, cb);
  cy.backward(g);
  poison_cache(3 * 7 * 45);
  Var gx(x.to(Device::cuda(0)), true), gw(w.to(Device::cuda(0)), true), gbv(b.to(Device::cuda(0)), true);
  Var gy = ops::linear(gx, gw, gbv);
  gy.backward(g.to(Device::cuda(0)));
  check_close("linear y", gy.value(), cy.value(), 1e-5, 1e-5);
  check_close("linear dx", gx.grad(), cx.grad(), 1e-5, 1e-5);
  check_close("linear dw", gw.grad(), cw.grad(), 1e-5, 1e-5);
  check_close("linear db", gbv.grad(), cb.grad(), 1e-5, 1e-5);
  check_close("bias after the call", gbv.value(), b, 0, 0);
  }
}

TEST_CASE("cuda softmax / log_softmax: last dimension, forward and backward, fp32 and fp16") {
  RETIKD_SKIP_WITHOUT_CUDA();
  const uint64_t seed = fresh_seed();
  CAPTURE(seed);
  Generator gen(seed);
  for (DType dt : {DType::float32, DType::float16}) {
    for (const Shape& s : {Shape{37, 5}, Shape{2, 3, 196}, Shape{4, 1000}, Shape{7}}) {
      for (bool log : {false, true}) {
        CAPTURE(shape_str(s));
        CAPTURE(log);
        const Tensor x = rnd(gen, s, dt).to(DType::float64), g = rnd(gen, s, dt).to(DType::float64);
        const Tensor cy = log ? ops::impl::log_softmax(x, -1) : ops::impl::softmax(x, -1);
        const Tensor cgx = log ? ops::impl::log_softmax_backward(g, cy, -1) : ops::impl::softmax_backward(g, cy, -1);
        poison_cache(x.numel());
        const Tensor gx_in = x.to(dt).to(Device::cuda(0)), gg = g.to(dt).to(Device::cuda(0));
        const Tensor gy = log ? ops::impl::log_softmax(gx_in, -1) : ops::impl::softmax(gx_in, -1);
        // Backward from the CPU's output rounded to dt, so only the backward kernel is compared.
        const Tensor ydev = cy.to(dt).to(Device::cuda(0));
        const Tensor ggx =
            log ? ops::impl::log_softmax_backward(gg, ydev, -1) : ops::impl::softmax_backward(gg, ydev, -1);
        const double r = dt == DType::float32 ? 1e-5 : 1e-2, a = dt == DType::float32 ? 1e-6 : 1e-3;
        check_close("softmax forward", gy, cy, r, a);
        check_close("softmax backward", ggx, dt == DType::float32 ? cgx : (log ? ops::impl::log_softmax_backward(
                                                                                   g, cy.to(dt).to(DType::float64), -1)
                                                                             : ops::impl::softmax_backward(
                                                                                   g, cy.to(dt).to(DType::float64), -1)),
                    r, a * 10);
      }
    }
  }
}

#endif  // RETIKD_WITH_CUDA
