// tests/test_ops.cpp — the op registry and the one driver that checks every public op of ops/ on every back end
// (issue 18 item 2; DESIGN.md §7). Each registry entry names a public op, one configuration of it (shapes,
// options, which inputs are differentiable, which are non-contiguous views), its tolerances and its CUDA path
// (a kernel, a view that needs none, or none yet). The driver walks the registry:
//
//   1. float64 gradcheck on the CPU (central differences against the tape), for every differentiable case
//      small enough to perturb element by element;
//   2. the CPU in float32 against float64 on the same rounded inputs, forward and every input gradient — the
//      float32 fast paths (SIMD loops, the GEMM) against the reference loops;
//   3. with a GPU: CUDA float32 and float16 against float64 on the CPU, forward and backward, with the caching
//      allocator's blocks poisoned by NaN first (unwritten outputs fail), dense convolutions under both cuDNN and
//      im2col + cuBLAS; a case registered without a CUDA path must fail with the "no CUDA implementation yet"
//      error, so the registry cannot claim less (or more) than the code does;
//   4. coverage: every public op declared in include/retikd/ops/*.hpp has an entry, every entry names one;
//   5. the list of ops without a CUDA path, which must equal the block in docs/cuda.md;
//   6. for ops whose GPU path is composed from other ops (`.composite(...)`: clamp, the tanh GELU, the average
//      pools as GEMMs, qkv_attention, kl_div_log_input, BCE with pos_weight, max's gradient), that composition
//      run on the CPU in float64 against the CPU op — the part of a GPU path that can be proved anywhere.
//
// Adding an op: one entry in build_registry() (docs/architecture.md, "The op registry").
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "retikd/core/random.hpp"
#include "retikd/core/tensor.hpp"
#include "retikd/ops/activation.hpp"
#include "retikd/ops/attention.hpp"
#include "retikd/ops/conv.hpp"
#include "retikd/ops/dropout.hpp"
#include "retikd/ops/elementwise.hpp"
#include "retikd/ops/loss.hpp"
#include "retikd/ops/matmul.hpp"
#include "retikd/ops/norm.hpp"
#include "retikd/ops/pool.hpp"
#include "retikd/ops/reduce.hpp"
#include "retikd/ops/resize.hpp"
#include "retikd/ops/shape.hpp"
#include "retikd/ops/softmax.hpp"
#include "test_util.hpp"
#ifdef RETIKD_WITH_CUDA
#include "cuda_test_util.hpp"
#include "retikd/cuda/blas.hpp"
#include "retikd/cuda/conv.hpp"
#endif

using namespace retikd;
using namespace retikd::test;

namespace {

// ---- the registry ------------------------------------------------------------------------------------------

// How an input's values are drawn (always in float64 from the case's seed, then rounded to the tested dtype).
enum class Draw {
  normal,       // scale·N(0, 1) + offset
  positive,     // scale·|N(0, 1)| + offset (logarithms, roots, divisors, variances)
  distinct,     // a shuffled ramp with steps of 0.05·scale: no ties, so max and max-pool gradients are defined
  probability,  // uniform in [0, 1) (BCE targets)
  small_integers,  // whole numbers in [0, range) as floats: ties on purpose (max's first-maximum rule)
  labels,       // int64 class indices in [0, range), the fourth one set to ignore_index −100 when ignore
  indices,      // int64 indices in [0, range)
};

struct Input {
  Shape shape;
  Draw draw = Draw::normal;
  double scale = 1.0, offset = 0.0;
  int64_t range = 0;           // labels / indices
  bool ignore = false;         // labels: one −100
  bool grad = true;            // a differentiable leaf (float inputs only)
  bool transposed = false;     // handed to the op as a non-contiguous view (last two dims swapped in memory)
  bool float32_state = false;  // kept in float32 when the case runs in float16 (batch norm's running statistics)

  Input& fixed() {
    grad = false;
    return *this;
  }
  Input& t() {
    transposed = true;
    return *this;
  }
  Input& state() {
    grad = false;
    float32_state = true;
    return *this;
  }
  bool is_index() const { return draw == Draw::labels || draw == Draw::indices; }
};

Input N(Shape s, double scale = 1.0, double offset = 0.0) {
  Input i;
  i.shape = std::move(s);
  i.scale = scale;
  i.offset = offset;
  return i;
}
Input P(Shape s, double offset = 0.5, double scale = 1.0) {
  Input i = N(std::move(s), scale, offset);
  i.draw = Draw::positive;
  return i;
}
Input D(Shape s, double scale = 1.0) {
  Input i = N(std::move(s), scale);
  i.draw = Draw::distinct;
  return i;
}
Input Ties(Shape s, int64_t range) {
  Input i = N(std::move(s));
  i.draw = Draw::small_integers;
  i.range = range;
  return i;
}
Input Prob(Shape s) {
  Input i = N(std::move(s));
  i.draw = Draw::probability;
  return i;
}
Input Labels(Shape s, int64_t classes, bool ignore = false) {
  Input i = N(std::move(s));
  i.draw = Draw::labels;
  i.range = classes;
  i.ignore = ignore;
  i.grad = false;
  return i;
}
Input Index(Shape s, int64_t range) {
  Input i = N(std::move(s));
  i.draw = Draw::indices;
  i.range = range;
  i.grad = false;
  return i;
}

// The op's CUDA path: its own kernels (or ops that have them), a view (metadata only: no kernel needed), or none
// yet (a GPU input gets the "no CUDA implementation yet" error).
enum class CudaPath { kernel, view, none };

struct Tol {
  double rtol, atol;
};

using V = const std::vector<Var>&;
using OpFn = std::function<Var(V)>;

struct OpCase {
  std::string op;    // the public name in ops/ (the coverage check matches it)
  std::string what;  // this configuration
  std::vector<Input> inputs;
  OpFn fn;
  CudaPath cuda = CudaPath::kernel;
  Tol f32{1e-5, 1e-5};  // CPU float32 and CUDA float32 against float64
  Tol f16{1e-2, 1e-2};  // CUDA float16 against float64 on the fp16-rounded inputs
  bool fp16 = true;
  bool gradcheck = true;       // false for cases too large to perturb element by element
  bool differentiable = true;  // false: comparisons (0 / 1 outputs)
  bool conv_backends = false;  // on the GPU: under cuDNN and under im2col + cuBLAS
  OpFn gpu_route;              // the composite the GPU takes (any device): checked on the CPU against fn

  OpCase& no_cuda() {
    cuda = CudaPath::none;
    return *this;
  }
  OpCase& view() {
    cuda = CudaPath::view;
    return *this;
  }
  OpCase& tol32(double r, double a) {
    f32 = {r, a};
    return *this;
  }
  OpCase& tol16(double r, double a) {
    f16 = {r, a};
    return *this;
  }
  OpCase& no_fp16() {
    fp16 = false;
    return *this;
  }
  OpCase& no_gradcheck() {  // central differences are not defined here (ties)
    gradcheck = false;
    return *this;
  }
  OpCase& big() {
    gradcheck = false;
    return *this;
  }
  OpCase& not_differentiable() {
    differentiable = false;
    gradcheck = false;
    return *this;
  }
  OpCase& both_conv_backends() {
    conv_backends = true;
    return *this;
  }
  OpCase& composite(OpFn route) {
    gpu_route = std::move(route);
    return *this;
  }
};

OpCase entry(std::string op, std::string what, std::vector<Input> in, OpFn fn) {
  OpCase c;
  c.op = std::move(op);
  c.what = std::move(what);
  c.inputs = std::move(in);
  c.fn = std::move(fn);
  return c;
}

ops::Conv2dOptions conv_opt(int64_t stride, int64_t pad, int64_t groups = 1, int64_t dilation = 1) {
  return ops::Conv2dOptions().with_stride(stride).with_padding(pad).with_groups(groups).with_dilation(dilation);
}

ops::CrossEntropyOptions ce_opt(ops::Reduction r, double smoothing, const Tensor& weight = Tensor()) {
  ops::CrossEntropyOptions o;
  o.reduction = r;
  o.label_smoothing = smoothing;
  o.weight = weight;
  return o;
}

// Every public op, one entry per configuration worth telling apart. Tolerances: float32 rtol 1e-5 with atol
// scaled by the length of the sums an element is made of (K for a GEMM or convolution); float16 rtol 1e-2.
std::vector<OpCase> build_registry() {
  using ops::Reduction;
  std::vector<OpCase> r;
  auto add = [&r](OpCase c) { r.push_back(std::move(c)); };

  // ---- activations (scale 4 crosses ReLU6's kinks at 0 and 6; gradcheck's ε never straddles one by chance)
  add(entry("relu", "(3, 5, 7) and (1, 1)", {N({3, 5, 7}, 4.0)}, [](V v) { return ops::relu(v[0]); }));
  add(entry("relu6", "(3, 5, 7)", {N({3, 5, 7}, 4.0)}, [](V v) { return ops::relu6(v[0]); }));
  add(entry("leaky_relu", "slope 0.2, transposed input", {N({4, 9}, 4.0).t()},
            [](V v) { return ops::leaky_relu(v[0], 0.2); }));
  add(entry("gelu", "erf", {N({3, 5, 7}, 3.0)}, [](V v) { return ops::gelu(v[0]); }));
  add(entry("gelu", "tanh approximation", {N({3, 5, 7}, 3.0)}, [](V v) {
        return ops::gelu(v[0], ops::GeluApprox::tanh);
      }).composite([](V v) {
        const Tensor x = v[0].value();
        return make_result(ops::impl::gelu_tanh_composite(x), "gelu", {v[0]}, [x](const Tensor& g) {
          return std::vector<Tensor>{ops::impl::gelu_tanh_backward_composite(g, x)};
        });
      }));
  add(entry("sigmoid", "(3, 5, 7)", {N({3, 5, 7}, 4.0)}, [](V v) { return ops::sigmoid(v[0]); }));
  add(entry("silu", "(3, 5, 7)", {N({3, 5, 7}, 4.0)}, [](V v) { return ops::silu(v[0]); }));
  add(entry("tanh", "transposed input", {N({5, 6}, 2.0).t()}, [](V v) { return ops::tanh(v[0]); }));
  add(entry("relu", "(3, 70, 11): the vector loops", {N({3, 70, 11}, 4.0)}, [](V v) { return ops::relu(v[0]); }).big());
  add(entry("gelu", "erf, (3, 70, 11)", {N({3, 70, 11}, 4.0)}, [](V v) { return ops::gelu(v[0]); }).big());
  add(entry("silu", "(3, 70, 11)", {N({3, 70, 11}, 4.0)}, [](V v) { return ops::silu(v[0]); }).big());

  // ---- elementwise arithmetic, broadcasting in every position the models use
  add(entry("add", "(2, 3, 4) + (3, 1)", {N({2, 3, 4}), N({3, 1})}, [](V v) { return ops::add(v[0], v[1]); }));
  add(entry("sub", "(2, 3, 4) - (3, 1)", {N({2, 3, 4}), N({3, 1})}, [](V v) { return ops::sub(v[0], v[1]); }));
  add(entry("mul", "(2, 3, 4) * (3, 1)", {N({2, 3, 4}), N({3, 1})}, [](V v) { return ops::mul(v[0], v[1]); }));
  add(entry("div", "(2, 3, 4) / (3, 1)", {N({2, 3, 4}), P({3, 1}, 2.0, 0.5)}, [](V v) {
        return ops::div(v[0], v[1]);
      }).tol32(1e-5, 4e-5));
  add(entry("mul", "transposed (2, 3) * (2, 3)", {N({2, 3}).t(), N({2, 3})}, [](V v) { return ops::mul(v[0], v[1]); }));
  add(entry("add", "(2, 17, 24) + (1, 17, 24): position embeddings", {N({2, 17, 24}), N({1, 17, 24})},
            [](V v) { return ops::add(v[0], v[1]); })
          .big()
          .tol16(1e-2, 4e-2));
  add(entry("mul", "(3, 40, 5, 5) * (3, 40, 1, 1): SE gates", {N({3, 40, 5, 5}), N({3, 40, 1, 1})},
            [](V v) { return ops::mul(v[0], v[1]); })
          .big()
          .tol32(1e-5, 2.5e-4)
          .tol16(1e-2, 0.25));
  add(entry("div", "(4, 1, 9) / (1, 7, 9)", {N({4, 1, 9}), P({1, 7, 9}, 0.5)}, [](V v) { return ops::div(v[0], v[1]); })
          .tol32(1e-5, 4e-4)
          .tol16(1e-2, 0.4));
  add(entry("maximum", "(2, 3, 4) with (3, 1)", {N({2, 3, 4}), N({3, 1}, 0.5, 0.1)}, [](V v) {
        return ops::maximum(v[0], v[1]);
      }).tol16(1e-2, 7e-2));
  add(entry("minimum", "(2, 3, 4) with (3, 1)", {N({2, 3, 4}), N({3, 1}, 0.5, 0.1)}, [](V v) {
        return ops::minimum(v[0], v[1]);
      }).tol16(1e-2, 7e-2));
  add(entry("add", "a scalar", {N({4, 5})}, [](V v) { return ops::add(v[0], 2.5); }));
  add(entry("sub", "a scalar", {N({4, 5})}, [](V v) { return ops::sub(v[0], 1.0); }));
  add(entry("mul", "a scalar", {N({4, 5})}, [](V v) { return ops::mul(v[0], 3.0); }));
  add(entry("div", "a scalar", {N({4, 5})}, [](V v) { return ops::div(v[0], 4.0); }));
  add(entry("neg", "(4, 5)", {N({4, 5})}, [](V v) { return ops::neg(v[0]); }));
  add(entry("pow", "exponent 2.5 of positive values", {P({2, 3}, 0.5)}, [](V v) {
        return ops::pow(v[0], 2.5);
      }).no_cuda());
  add(entry("exp", "(3, 70, 11) of scale 1.5", {N({3, 70, 11}, 1.5)}, [](V v) { return ops::exp(v[0]); })
          .big()
          .tol32(1e-5, 8e-5)
          .tol16(1e-2, 8e-2));
  add(entry("exp", "(2, 3)", {N({2, 3})}, [](V v) { return ops::exp(v[0]); }));
  add(entry("log", "positive (3, 7)", {P({3, 7}, 0.25)}, [](V v) { return ops::log(v[0]); })
          .tol32(1e-5, 4e-5)
          .tol16(1e-2, 4e-2));
  add(entry("sqrt", "positive (3, 7)", {P({3, 7}, 0.25)}, [](V v) { return ops::sqrt(v[0]); })
          .tol32(1e-5, 4e-5)
          .tol16(1e-2, 4e-2));
  add(entry("square", "(3, 7)", {N({3, 7}, 2.0)}, [](V v) { return ops::square(v[0]); })
          .tol32(1e-5, 4e-5)
          .tol16(1e-2, 4e-2));
  add(entry("abs", "(3, 7) of scale 4", {N({3, 7}, 4.0)}, [](V v) { return ops::abs(v[0]); }));
  add(entry("clamp", "to [-0.3, 0.4]", {N({2, 3})}, [](V v) { return ops::clamp(v[0], -0.3, 0.4); })
          .composite([](V v) {
            const Tensor x = v[0].value();
            return make_result(ops::impl::clamp_composite(x, -0.3, 0.4), "clamp", {v[0]}, [x](const Tensor& g) {
              return std::vector<Tensor>{ops::impl::mul(g, ops::impl::clamp_mask_composite(x, -0.3, 0.4))};
            });
          }));
  for (const char* name : {"eq", "ne", "lt", "le", "gt", "ge"}) {
    const std::string n = name;
    auto cmp = [n](const Var& a, const Var& b) {
      if (n == "eq") return ops::eq(a, b);
      if (n == "ne") return ops::ne(a, b);
      if (n == "lt") return ops::lt(a, b);
      if (n == "le") return ops::le(a, b);
      if (n == "gt") return ops::gt(a, b);
      return ops::ge(a, b);
    };
    // Ties included: the second operand repeats the first's column 0 in every row, so eq / le / ge see equal
    // values (the rounded values compare the same on every device and dtype).
    add(entry(n, "(5, 12) against (12) and against a tie", {N({5, 12}).fixed(), N({12}).fixed()},
              [cmp](V v) { return ops::add(cmp(v[0], v[1]), cmp(v[0], ops::narrow(v[0], 1, 0, 1))); })
            .not_differentiable()
            .tol32(0, 0)
            .tol16(0, 0));
  }

  // ---- reductions
  add(entry("sum", "everything", {N({3, 4, 5})}, [](V v) { return ops::sum(v[0]); }).tol32(1e-5, 1e-4));
  add(entry("sum", "dims 0 and 2", {N({3, 4, 5})}, [](V v) { return ops::sum(v[0], {0, 2}); }).tol32(1e-5, 1e-4));
  add(entry("sum", "dim 1, keepdim", {N({3, 4, 5})}, [](V v) { return ops::sum(v[0], {1}, true); }));
  add(entry("sum", "dim 0 of a transposed view", {N({3, 5}).t()}, [](V v) { return ops::sum(v[0], {0}); }));
  add(entry("mean", "dim 2", {N({3, 4, 5})}, [](V v) { return ops::mean(v[0], {2}); }));
  add(entry("mean", "everything", {N({3, 4, 5})}, [](V v) { return ops::mean(v[0]); }));
  add(entry("mean", "(1, 1) over dim 1", {N({1, 1})}, [](V v) { return ops::mean(v[0], {1}); }));
  add(entry("sum", "dims 0 and 2 of (5, 7, 33)", {N({5, 7, 33})},
            [](V v) {
              return ops::sum(v[0], {0, 2});
            })
          .big()
          .tol32(1e-5, 1e-3)
          .tol16(1e-2, 0.5));
  add(entry("mean", "the last dim of (4, 3, 3000), keepdim", {N({4, 3, 3000})},
            [](V v) { return ops::mean(v[0], {-1}, true); })
          .big()
          .tol32(1e-5, 1e-4)
          .tol16(1e-2, 5e-2));
  add(entry("sum", "everything of (64, 1000)", {N({64, 1000})}, [](V v) { return ops::sum(v[0]); })
          .big()
          .tol32(1e-5, 1e-2)
          .tol16(1e-2, 5.0));
  add(entry("sum", "everything of 300k elements: the two-stage reduction", {N({3, 100000})},
            [](V v) { return ops::sum(v[0]); })
          .big()
          .tol32(1e-5, 0.1)
          .tol16(1e-2, 50.0));
  add(entry("mean", "3 rows of 100k", {N({3, 100000})}, [](V v) { return ops::mean(v[0], {-1}); })
          .big()
          .tol32(1e-5, 1e-4)
          .tol16(1e-2, 5e-2));
  add(entry("max", "over dim 1", {D({3, 4, 5})}, [](V v) { return ops::max(v[0], 1); }).composite([](V v) {
    return ops::impl::max_composite(v[0], 1, false);
  }));
  add(entry("max", "over dim 0, keepdim", {D({3, 4, 5})}, [](V v) { return ops::max(v[0], 0, true); })
          .composite([](V v) { return ops::impl::max_composite(v[0], 0, true); }));
  add(entry("max", "everything", {D({3, 4, 5})}, [](V v) { return ops::max(v[0]); }).composite([](V v) {
    return ops::impl::max_composite(v[0]);
  }));
  add(entry("max", "over the last dim of rows with ties", {Ties({5, 8}, 3)}, [](V v) { return ops::max(v[0], 1); })
          .no_gradcheck()
          .composite([](V v) { return ops::impl::max_composite(v[0], 1, false); }));
  add(entry("max", "everything, with ties", {Ties({3, 4}, 2)}, [](V v) { return ops::max(v[0]); })
          .no_gradcheck()
          .composite([](V v) { return ops::impl::max_composite(v[0]); }));
  add(entry("argmax", "over dim 1 (the index, as a float)", {D({4, 6}).fixed()},
            [](V v) { return Var(ops::argmax(v[0], 1).to(DType::float64)); })
          .not_differentiable()
          .no_cuda()
          .tol32(0, 0));

  // ---- matmul and linear (TF32 off on the GPU: strict float32 GEMMs)
  add(entry("matmul", "(3, 4) @ (4, 2)", {N({3, 4}), N({4, 2})}, [](V v) { return ops::matmul(v[0], v[1]); }));
  add(entry("matmul", "(2, 1, 3, 4) @ (3, 4, 2): broadcast batches", {N({2, 1, 3, 4}), N({3, 4, 2})},
            [](V v) { return ops::matmul(v[0], v[1]); }));
  add(entry("matmul", "(4) @ (4, 3), (2, 4) @ (4), (4) @ (4)", {N({4}), N({4, 3}), N({2, 4}), N({4})}, [](V v) {
        return ops::add(ops::sum(ops::matmul(v[0], v[1])),
                        ops::add(ops::sum(ops::matmul(v[2], v[3])), ops::matmul(v[0], v[3])));
      }).tol32(1e-5, 1e-4));
  add(entry("matmul", "transposed (3, 4) @ an expanded column", {N({3, 4}).t(), N({1, 1})}, [](V v) {
    return ops::matmul(v[0], ops::expand(v[1], {4, 1}));
  }));
  add(entry("matmul", "(37, 45) @ (45, 29)", {N({37, 45}), N({45, 29})}, [](V v) { return ops::matmul(v[0], v[1]); })
          .big()
          .tol32(1e-5, 5e-4)
          .tol16(1e-2, 0.3));
  add(entry("matmul", "(2, 3, 17, 33) @ (33, 11)", {N({2, 3, 17, 33}), N({33, 11})},
            [](V v) { return ops::matmul(v[0], v[1]); })
          .big()
          .tol32(1e-5, 4e-4)
          .tol16(1e-2, 0.25));
  add(entry("matmul", "(5, 19) @ transposed (7, 19)", {N({5, 19}), N({19, 7}).t()},
            [](V v) { return ops::matmul(v[0], v[1]); })
          .big()
          .tol32(1e-5, 2e-4)
          .tol16(1e-2, 0.15));
  add(entry("matmul", "transposed (4, 21, 13) @ (4, 21, 6)", {N({4, 13, 21}).t(), N({4, 21, 6})},
            [](V v) { return ops::matmul(v[0], v[1]); })
          .big()
          .tol32(1e-5, 2e-4)
          .tol16(1e-2, 0.15));
  add(entry("matmul", "(64, 196, 64) @ transposed: attention scores", {N({64, 196, 64}), N({64, 64, 196}).t()},
            [](V v) { return ops::matmul(v[0], v[1]); })
          .big()
          .tol32(1e-5, 1e-3)
          .tol16(1e-2, 0.5));
  add(entry("matmul", "a narrowed batch @ a shared right operand (strided batches)", {N({3, 20, 33}), N({33, 9})},
            [](V v) { return ops::matmul(ops::narrow(v[0], 1, 2, 17), v[1]); })
          .big()
          .tol32(1e-5, 4e-4)
          .tol16(1e-2, 0.25));
  add(entry("linear", "(2, 3, 5) with bias", {N({2, 3, 5}), N({4, 5}), N({4})},
            [](V v) { return ops::linear(v[0], v[1], v[2]); }));
  add(entry("linear", "(1, 5) without bias", {N({1, 5}), N({2, 5})}, [](V v) { return ops::linear(v[0], v[1]); }));
  for (const Shape& xs : {Shape{3, 7, 45}, Shape{11, 45}, Shape{1, 45}}) {
    add(entry("linear", shape_str(xs) + " @ (29, 45) + bias", {N(xs), N({29, 45}), N({29})},
              [](V v) { return ops::linear(v[0], v[1], v[2]); })
            .big()
            .tol32(1e-5, 5e-4)
            .tol16(1e-2, 0.3));
  }
  // fc1 + GELU: on the CPU one GEMM with the GELU on each tile (float32 fast path: both AVX-512 tiles, several K
  // slices, threaded); on a GPU, and as its reference, the composition.
  add(entry("linear_gelu", "(2, 3, 5) with bias", {N({2, 3, 5}, 2.0), N({4, 5}), N({4})},
            [](V v) { return ops::linear_gelu(v[0], v[1], v[2]); })
          .composite([](V v) { return ops::gelu(ops::linear(v[0], v[1], v[2])); }));
  add(entry("linear_gelu", "(3, 70, 200) @ (130, 200) + bias", {N({3, 70, 200}), N({130, 200}), N({130})},
            [](V v) { return ops::linear_gelu(v[0], v[1], v[2]); })
          .big()
          .tol32(1e-5, 5e-4)
          .tol16(1e-2, 0.3)
          .composite([](V v) { return ops::gelu(ops::linear(v[0], v[1], v[2])); }));

  // ---- softmax
  for (bool log : {false, true}) {
    const std::string name = log ? "log_softmax" : "softmax";
    auto sm = [log](const Var& x, int64_t d) { return log ? ops::log_softmax(x, d) : ops::softmax(x, d); };
    add(entry(name, "dim 1 of (3, 4)", {N({3, 4})}, [sm](V v) { return sm(v[0], 1); }));
    add(entry(name, "dim 0 of (3, 4)", {N({3, 4})}, [sm](V v) { return sm(v[0], 0); }));
    add(entry(name, "the middle dim of (2, 3, 4)", {N({2, 3, 4})}, [sm](V v) { return sm(v[0], 1); }));
    add(entry(name, "(1, 1)", {N({1, 1})}, [sm](V v) { return sm(v[0], 0); }));
    add(entry(name, "the last dim of a transposed view", {N({5, 3}).t()}, [sm](V v) { return sm(v[0], 1); }));
    add(entry(name, "a permuted view", {N({3, 2, 4})}, [sm](V v) { return sm(ops::permute(v[0], {2, 0, 1}), 1); }));
    for (const Shape& s : {Shape{37, 5}, Shape{2, 3, 196}, Shape{4, 1000}, Shape{7}})
      add(entry(name, "the last dim of " + shape_str(s), {N(s, 2.0)}, [sm](V v) { return sm(v[0], -1); })
              .big()
              .tol32(1e-5, 1e-5)
              .tol16(1e-2, 1e-2));
  }

  // ---- shape ops (views need no kernel; concat, contiguous and pad copy on the device)
  add(entry("reshape", "(2, 3, 4) to (4, 6)", {N({2, 3, 4})}, [](V v) { return ops::reshape(v[0], {4, 6}); }).view());
  add(entry("view", "(2, 3, 4) to (6, 4)", {N({2, 3, 4})}, [](V v) { return ops::view(v[0], {6, 4}); }).view());
  add(entry("flatten", "dims 1..2", {N({2, 3, 4})}, [](V v) { return ops::flatten(v[0], 1); }).view());
  add(entry("permute", "(2, 0, 1)", {N({2, 3, 4})}, [](V v) { return ops::permute(v[0], {2, 0, 1}); }).view());
  add(entry("transpose", "dims 0 and 2", {N({2, 3, 4})}, [](V v) { return ops::transpose(v[0], 0, 2); }).view());
  add(entry("slice", "dim 1, step 2", {N({2, 7, 3})}, [](V v) { return ops::slice(v[0], 1, 1, 6, 2); }));
  add(entry("narrow", "dim 0", {N({5, 3})}, [](V v) { return ops::narrow(v[0], 0, 1, 3); }));
  add(entry("squeeze", "dim 1, and every size-1 dim", {N({3, 1, 4, 1})}, [](V v) {
        return ops::add(ops::squeeze(ops::squeeze(v[0], 1)), ops::reshape(ops::squeeze(v[0], 1), {3, 4}));
      }).view());
  add(entry("unsqueeze", "dim 1", {N({3, 4})}, [](V v) { return ops::unsqueeze(v[0], 1); }).view());
  add(entry("expand", "(3, 1) to (3, 5)", {N({3, 1})}, [](V v) { return ops::expand(v[0], {3, 5}); }).view());
  add(entry("contiguous", "of a transposed view", {N({4, 3}).t()}, [](V v) { return ops::contiguous(v[0]); }));
  add(entry("concat", "along dim 1, three pieces", {N({2, 1, 8}), N({2, 5, 8}), N({2, 3, 8})}, [](V v) {
    return ops::concat({v[0], v[1], v[2]}, 1);
  }));
  add(entry("concat", "along dim 0 and the last dim", {N({2, 3}), N({1, 3}), N({3, 2})}, [](V v) {
    return ops::concat({ops::concat({v[0], v[1]}, 0), v[2]}, -1);
  }));
  add(entry("split", "sizes {1, 3, 2} along dim 1, re-joined in reverse", {N({2, 6, 3})}, [](V v) {
    std::vector<Var> p = ops::split(v[0], {1, 3, 2}, 1);
    return ops::concat({p[2], ops::mul(p[1], 2.0), p[0]}, 1);
  }));
  add(entry("chunk", "3 chunks of 7 rows, re-joined in reverse", {N({7, 2})}, [](V v) {
    std::vector<Var> p = ops::chunk(v[0], 3, 0);
    return ops::concat({p[2], p[1], ops::mul(p[0], -1.0)}, 0);
  }));
  add(entry("index_select", "dim 0 with repeats", {N({5, 3}), Index({7}, 5)}, [](V v) {
        return ops::index_select(v[0], 0, v[1].value());
      }).no_cuda());
  add(entry("gather", "dim 1", {N({3, 5}), Index({3, 4}, 5)}, [](V v) {
        return ops::gather(v[0], 1, v[1].value());
      }).no_cuda());
  add(entry("pad", "last two dims, one side cropped", {N({2, 3, 4})}, [](V v) {
    return ops::pad(v[0], {1, 2, -1, 1}, 0.5);
  }));

  // ---- dropout (the mask comes from the host generator: the same on every device)
  add(entry("dropout", "p 0.3, training", {N({4, 9})}, [](V v) {
    Generator g(42);
    return ops::dropout(v[0], 0.3, true, g);
  }));
  add(entry("drop_path", "p 0.5, training", {N({6, 2, 3})}, [](V v) {
    Generator g(43);
    return ops::drop_path(v[0], 0.5, true, g);
  }));

  // ---- convolution (K = C/groups·kh·kw terms per output: atol scales with it)
  struct Conv {
    std::string what;
    Shape x, w;
    ops::Conv2dOptions opt;
    bool small;
  };
  const std::vector<Conv> convs = {
      {"dense, stride 2, asymmetric padding, dilation 2",
       {2, 2, 5, 4},
       {3, 2, 3, 2},
       ops::Conv2dOptions().with_stride(2, 1).with_padding(1, 0, 0, 1).with_dilation(1, 2),
       true},
      {"groups 2", {2, 4, 4, 4}, {2, 2, 3, 3}, conv_opt(2, 1, 2), true},
      {"depthwise", {2, 3, 5, 11}, {3, 1, 3, 3}, conv_opt(1, 1, 3), true},
      {"depthwise, multiplier 2, stride 2", {1, 2, 6, 9}, {4, 1, 3, 3}, conv_opt(2, 1, 2), true},
      {"depthwise, dilation 2", {2, 2, 5, 5}, {2, 1, 3, 3}, conv_opt(1, 2, 2, 2), true},
      {"pointwise", {2, 3, 3, 4}, {2, 3, 1, 1}, conv_opt(1, 0), true},
      {"1x1 image", {2, 3, 1, 1}, {2, 3, 3, 3}, conv_opt(1, 1), true},
      {"dense (2, 5, 11, 9) 3x3", {2, 5, 11, 9}, {7, 5, 3, 3}, conv_opt(1, 1), false},
      {"dense groups 2, stride 2, asymmetric",
       {3, 4, 12, 10},
       {6, 2, 3, 3},
       ops::Conv2dOptions().with_stride(2).with_padding(0, 1, 0, 1).with_groups(2),
       false},
      {"pointwise (2, 16, 7, 7)", {2, 16, 7, 7}, {24, 16, 1, 1}, ops::Conv2dOptions(), false},
      {"stem-like (1, 3, 15, 13) stride 2", {1, 3, 15, 13}, {8, 3, 3, 3}, conv_opt(2, 1), false},
      {"depthwise (2, 32, 14, 14)", {2, 32, 14, 14}, {32, 1, 3, 3}, conv_opt(1, 1, 32), false},
      {"depthwise stride 2, asymmetric",
       {3, 24, 15, 13},
       {24, 1, 3, 3},
       ops::Conv2dOptions().with_stride(2).with_padding(0, 1, 0, 1).with_groups(24),
       false},
      {"depthwise multiplier 2, stride 2", {2, 8, 9, 9}, {16, 1, 3, 3}, conv_opt(2, 1, 8), false},
      {"depthwise (4, 16, 56, 56): several chunks per channel",
       {4, 16, 56, 56},
       {16, 1, 3, 3},
       conv_opt(1, 1, 16),
       false},
      {"depthwise 5x5 stride 2", {2, 12, 20, 19}, {12, 1, 5, 5}, conv_opt(2, 2, 12), false},
      {"depthwise 3x1",
       {2, 6, 10, 10},
       {6, 1, 3, 1},
       ops::Conv2dOptions().with_padding(1, 1, 0, 0).with_groups(6),
       false},
  };
  for (const Conv& c : convs) {
    const double K = static_cast<double>(c.w[1] * c.w[2] * c.w[3]);
    const ops::Conv2dOptions opt = c.opt;
    OpCase e = entry("conv2d", c.what, {N(c.x), N(c.w), N({c.w[0]})},
                     [opt](V v) { return ops::conv2d(v[0], v[1], v[2], opt); });
    // Gradients of the weight sum over N·OH·OW positions: their atol follows the larger of the two lengths.
    const double L = std::max(K, static_cast<double>(c.x[0] * c.x[2] * c.x[3]));
    e.tol32(1e-5, 1e-5 * L).tol16(1e-2, 8e-2 * std::sqrt(L));
    if (!c.small) e.big();
    if (opt.groups == 1) e.both_conv_backends();
    add(e);
  }
  add(entry("conv2d", "without a bias", {N({1, 2, 4, 5}), N({3, 2, 3, 3})},
            [](V v) { return ops::conv2d(v[0], v[1], Var(), conv_opt(1, 1)); })
          .tol32(1e-5, 1e-4)
          .both_conv_backends());

  // ---- normalisation (running statistics are state: after the call they must agree too)
  for (bool training : {true, false}) {
    const std::string mode = training ? "training" : "evaluation";
    for (const Shape& s : {Shape{3, 2, 3, 2}, Shape{5, 3}, Shape{2, 2, 5}}) {
      const int64_t C = s[1];
      add(entry("batch_norm", mode + ", " + shape_str(s),
                {N(s, 2.0, 1.0), N({C}), N({C}), N({C}).state(), P({C}, 0.5).state()},
                [training](V v) {
                  Tensor rm = v[3].value(), rv = v[4].value();
                  return ops::batch_norm(v[0], v[1], v[2], rm, rv, training, 0.1, 1e-3);
                })
              .tol32(1e-4, 1e-4)
              .tol16(1e-2, 5e-2));
    }
    add(entry("batch_norm", mode + ", no affine parameters", {N({4, 3, 2}), N({3}).state(), P({3}, 0.5).state()},
              [training](V v) {
                Tensor rm = v[1].value(), rv = v[2].value();
                return ops::batch_norm(v[0], Var(), Var(), rm, rv, training);
              })
            .tol32(1e-4, 1e-4)
            .tol16(1e-2, 5e-2));
    for (const Shape& s : {Shape{4, 6, 7, 5}, Shape{300, 5, 7, 7}, Shape{8, 3, 96, 96}}) {
      const int64_t C = s[1];
      add(entry("batch_norm", mode + ", " + shape_str(s) + ": the GPU's block layouts",
                {N(s, 2.0, 1.0), N({C}), N({C}), N({C}).state(), P({C}, 0.5).state()},
                [training](V v) {
                  Tensor rm = v[3].value(), rv = v[4].value();
                  return ops::batch_norm(v[0], v[1], v[2], rm, rv, training, 0.1, 1e-5);
                })
              .big()
              .tol32(1e-4, 1e-3)
              .tol16(1e-2, 5e-2));
    }
  }
  add(entry("layer_norm", "over (5) with weight and bias", {N({2, 3, 5}), N({5}), N({5})}, [](V v) {
        return ops::layer_norm(v[0], {5}, v[1], v[2], 1e-3);
      }).tol32(1e-4, 1e-4));
  add(entry("layer_norm", "over (3, 4) without affine parameters", {N({2, 3, 3, 4})}, [](V v) {
        return ops::layer_norm(v[0], {3, 4});
      }).tol32(1e-4, 1e-4));
  add(entry("layer_norm", "ViT rows (3, 37, 96)", {N({3, 37, 96}), N({96}), N({96})},
            [](V v) { return ops::layer_norm(v[0], {96}, v[1], v[2], 1e-6); })
          .big()
          .tol32(1e-4, 1e-4)
          .tol16(1e-2, 5e-2));

  // ---- pools
  struct MaxPool {
    int64_t k, s, p;
    bool ceil;
  };
  for (const MaxPool& m : {MaxPool{2, 2, 0, false}, MaxPool{3, 1, 1, false}, MaxPool{3, 2, 1, true},
                           MaxPool{2, 2, 1, true}, MaxPool{3, 2, 0, true}}) {
    std::ostringstream what;
    what << "kernel " << m.k << ", stride " << m.s << ", padding " << m.p << (m.ceil ? ", ceil" : "");
    add(entry("max_pool2d", what.str(), {D({2, 2, 5, 6})},
              [m](V v) { return ops::max_pool2d(v[0], m.k, m.s, m.p, m.ceil); }));
  }
  add(entry("max_pool2d", "3/2/1 of (2, 5, 13, 11)", {D({2, 5, 13, 11})}, [](V v) {
        return ops::max_pool2d(v[0], 3, 2, 1);
      }).big());
  struct AvgPool {
    int64_t k, s, p;
    bool ceil, include;
  };
  for (const AvgPool& a : {AvgPool{2, 2, 0, false, true}, AvgPool{3, 1, 1, false, false}, AvgPool{3, 2, 1, true, true},
                           AvgPool{3, 2, 1, true, false}}) {
    std::ostringstream what;
    what << "kernel " << a.k << ", stride " << a.s << ", padding " << a.p << (a.ceil ? ", ceil" : "")
         << (a.include ? "" : ", padding not counted");
    add(entry("avg_pool2d", what.str(), {N({2, 2, 5, 6})}, [a](V v) {
          return ops::avg_pool2d(v[0], a.k, a.s, a.p, a.ceil, a.include);
        }).composite([a](V v) { return ops::impl::avg_pool2d_by_matrices(v[0], a.k, a.s, a.p, a.ceil, a.include); }));
  }
  add(entry("adaptive_avg_pool2d", "global (1x1)", {N({2, 3, 5, 7})},
            [](V v) { return ops::adaptive_avg_pool2d(v[0], 1, 1); }));
  add(entry("adaptive_avg_pool2d", "global of (2, 40, 7, 7)", {N({2, 40, 7, 7})}, [](V v) {
        return ops::adaptive_avg_pool2d(v[0], 1, 1);
      }).big());
  for (auto hw : {std::pair<int64_t, int64_t>{3, 4}, {7, 9}, {5, 2}})
    add(entry("adaptive_avg_pool2d", std::to_string(hw.first) + "x" + std::to_string(hw.second) + " bins",
              {N({2, 3, 5, 7})}, [hw](V v) { return ops::adaptive_avg_pool2d(v[0], hw.first, hw.second); })
            .composite([hw](V v) { return ops::impl::adaptive_avg_pool2d_by_matrices(v[0], hw.first, hw.second); }));

  // ---- resize
  for (bool align : {false, true}) {
    const std::string ac = align ? ", align_corners" : "";
    for (auto hw : {std::pair<int64_t, int64_t>{5, 7}, {2, 2}, {6, 8}, {1, 1}, {3, 4}})
      add(entry("interpolate_bilinear", "(3, 4) to " + std::to_string(hw.first) + "x" + std::to_string(hw.second) + ac,
                {N({2, 2, 3, 4})},
                [hw, align](V v) { return ops::interpolate_bilinear(v[0], hw.first, hw.second, align); }));
    add(entry("interpolate_bilinear", "7x7 to 14x14" + ac, {N({2, 12, 7, 7})},
              [align](V v) { return ops::interpolate_bilinear(v[0], 14, 14, align); })
            .big()
            .tol16(1e-2, 4e-2));
    add(entry("interpolate_bilinear", "13x10 to 5x6" + ac, {N({1, 3, 13, 10})},
              [align](V v) { return ops::interpolate_bilinear(v[0], 5, 6, align); })
            .big()
            .tol16(1e-2, 4e-2));
  }
  add(entry("interpolate_bilinear", "7x6 to 3x4", {N({1, 2, 7, 6})},
            [](V v) { return ops::interpolate_bilinear(v[0], 3, 4); }));
  add(entry("interpolate_bicubic", "4x5 to 7x3 (position-embedding resampling)", {N({1, 2, 4, 5})}, [](V v) {
        return ops::interpolate_bicubic(v[0], 7, 3);
      }).tol16(1e-2, 4e-2));

  // ---- attention (the fused CPU kernel; the GPU composes it from views, matmul and softmax)
  add(entry("qkv_attention", "2 heads, 5 tokens", {N({2, 5, 12})},
            [](V v) { return ops::qkv_attention(v[0], 2, 1.0 / std::sqrt(3.0)); })
          .tol32(1e-5, 1e-4)
          .composite([](V v) { return ops::impl::qkv_attention_composite(v[0], 2, 1.0 / std::sqrt(3.0)); }));
  add(entry("qkv_attention", "4 heads, 50 tokens (ViT-sized rows)", {N({2, 50, 96})},
            [](V v) { return ops::qkv_attention(v[0], 4, 0.25); })
          .big()
          .tol32(1e-5, 1e-4)
          .tol16(1e-2, 5e-2)
          .composite([](V v) { return ops::impl::qkv_attention_composite(v[0], 4, 0.25); }));

  // ---- losses (float32 on the GPU, as the trainers use them)
  for (Reduction red : {Reduction::mean, Reduction::sum, Reduction::none}) {
    const std::string rn = ops::reduction_name(red);
    for (double eps : {0.0, 0.15}) {
      const std::string ls = eps > 0 ? ", label smoothing 0.15" : "";
      add(entry("cross_entropy", rn + ls + ", one ignored target", {N({5, 4}, 2.0), Labels({5}, 4, true)},
                [red, eps](V v) { return ops::cross_entropy(v[0], v[1].value(), ce_opt(red, eps)); })
              .no_fp16()
              .tol32(1e-5, 1e-5));
      add(entry("cross_entropy", rn + ls + ", class weights",
                {N({5, 4}, 2.0), Labels({5}, 4, true), P({4}, 0.1).fixed()},
                [red, eps](V v) { return ops::cross_entropy(v[0], v[1].value(), ce_opt(red, eps, v[2].value())); })
              .no_fp16()
              .tol32(1e-5, 1e-5));
    }
    add(entry("cross_entropy", rn + ", transposed logits", {N({4, 3}), Labels({3}, 4)}, [red](V v) {
          return ops::cross_entropy(ops::transpose(v[0], 0, 1), v[1].value(), ce_opt(red, 0.0));
        }).no_fp16());
    add(entry("binary_cross_entropy_with_logits", rn, {N({16, 3}, 3.0), Prob({16, 3})}, [red](V v) {
          return ops::binary_cross_entropy_with_logits(v[0], v[1], Tensor(), red);
        }).no_fp16());
    add(entry("binary_cross_entropy_with_logits", rn + ", pos_weight",
              {N({6, 3}, 3.0), Prob({6, 3}), P({3}, 0.5).fixed()},
              [red](V v) { return ops::binary_cross_entropy_with_logits(v[0], v[1], v[2].value(), red); })
            .no_fp16()
            .composite([red](V v) {
              return ops::impl::bce_with_logits_pos_weight_composite(
                  v[0], v[1], v[2].value().expand(v[0].shape()).contiguous(), red);
            }));
    add(entry("mse_loss", rn, {N({6, 33}), N({6, 33})}, [red](V v) { return ops::mse_loss(v[0], v[1], red); })
            .no_fp16()
            .tol32(1e-5, 1e-4));
  }
  add(entry("cross_entropy", "mean over (37, 5), weights, smoothing 0.1",
            {N({37, 5}, 3.0), Labels({37}, 5, true), P({5}, 0.1).fixed()},
            [](V v) { return ops::cross_entropy(v[0], v[1].value(), ce_opt(Reduction::mean, 0.1, v[2].value())); })
          .big()
          .no_fp16());
  for (Reduction red : {Reduction::batchmean, Reduction::sum, Reduction::mean, Reduction::none}) {
    const std::string rn = ops::reduction_name(red);
    add(entry("kl_div", rn + ", tau 2.5", {N({3, 5}, 2.0), N({3, 5}, 2.0)}, [red](V v) {
          return ops::kl_div(v[0], v[1], 2.5, red);
        }).no_fp16());
    add(entry("kl_div", rn + ", tau 1, transposed student", {N({2, 4}).t(), N({2, 4})}, [red](V v) {
          return ops::kl_div(v[0], v[1], 1.0, red);
        }).no_fp16());
    add(entry("kl_div_log_input", rn + ", probabilities as target", {N({3, 4}), P({3, 4}, 0.1)},
              [red](V v) { return ops::kl_div_log_input(v[0], v[1], false, red); })
            .no_fp16()
            .composite([red](V v) { return ops::impl::kl_div_log_input_composite(v[0], v[1], false, red); }));
    add(entry("kl_div_log_input", rn + ", log-probabilities as target", {N({3, 4}), N({3, 4})},
              [red](V v) { return ops::kl_div_log_input(v[0], v[1], true, red); })
            .no_fp16()
            .composite([red](V v) { return ops::impl::kl_div_log_input_composite(v[0], v[1], true, red); }));
  }
  for (Reduction red : {Reduction::batchmean, Reduction::none})
    add(entry("kl_div", ops::reduction_name(red) + std::string(", tau 4, attention rows (2, 12, 196)"),
              {N({2, 12, 196}, 3.0), N({2, 12, 196}, 3.0)}, [red](V v) { return ops::kl_div(v[0], v[1], 4.0, red); })
            .big()
            .no_fp16()
            .tol32(1e-4, 1e-6));
  return r;
}

const std::vector<OpCase>& registry() {
  static const std::vector<OpCase> cases = build_registry();
  return cases;
}

// ---- the driver ----------------------------------------------------------------------------------------------

std::string label(const OpCase& c) { return c.op + " (" + c.what + ")"; }

// The case's inputs in float64 (indices in int64) on the CPU, reproducible from the seed.
std::vector<Tensor> draw_inputs(const OpCase& c, uint64_t seed) {
  Generator g(seed);
  std::vector<Tensor> out;
  for (const Input& in : c.inputs) {
    int64_t n = 1;
    for (int64_t d : in.shape) n *= d;
    if (in.is_index()) {
      std::vector<int64_t> v(static_cast<std::size_t>(n));
      for (int64_t& e : v) e = static_cast<int64_t>(g.uniform() * static_cast<double>(in.range)) % in.range;
      if (in.ignore && n > 3) v[3] = -100;
      out.push_back(Tensor::from_vector(v, in.shape));
      continue;
    }
    std::vector<double> v(static_cast<std::size_t>(n));
    for (std::size_t i = 0; i < v.size(); ++i) {
      switch (in.draw) {
        case Draw::normal:
          v[i] = in.scale * g.normal() + in.offset;
          break;
        case Draw::positive:
          v[i] = in.scale * std::fabs(g.normal()) + in.offset;
          break;
        case Draw::distinct:
          v[i] = in.scale * 0.05 * (static_cast<double>(i) - static_cast<double>(n) / 2);
          break;
        case Draw::probability:
          v[i] = g.uniform();
          break;
        default:
          break;
      }
    }
    if (in.draw == Draw::distinct) {  // Fisher–Yates with the case's generator
      for (std::size_t i = v.size(); i > 1; --i)
        std::swap(v[i - 1], v[static_cast<std::size_t>(g.uniform() * static_cast<double>(i)) % i]);
    }
    out.push_back(Tensor::from_vector(v, in.shape));
  }
  return out;
}

// The dtype an input takes when the case runs in `dt` (float32 state under float16).
DType input_dtype(const Input& in, DType dt) {
  if (in.is_index()) return DType::int64;
  return in.float32_state && dt == DType::float16 ? DType::float32 : dt;
}

// Values rounded to the dtype each input takes under `dt`, stored as `store` (float64 for the reference), on
// `device`, non-contiguous where the input asks.
std::vector<Tensor> prepare(const OpCase& c, const std::vector<Tensor>& drawn, DType dt, DType store, Device device) {
  std::vector<Tensor> out;
  for (std::size_t i = 0; i < drawn.size(); ++i) {
    const Input& in = c.inputs[i];
    Tensor t = drawn[i];
    if (!in.is_index())
      t = t.to(input_dtype(in, dt)).to(in.float32_state && store == DType::float16 ? DType::float32 : store);
    if (in.transposed) {
      REQUIRE(t.dim() >= 2);
      t = t.transpose(-1, -2).contiguous().to(device).transpose(-1, -2);
    } else {
      t = t.to(device);
    }
    out.push_back(t);
  }
  return out;
}

struct RunResult {
  Tensor out;
  std::vector<Tensor> grads;  // per input: the gradient (differentiable inputs) or undefined
  std::vector<Tensor> state;  // per input: its values after the call (fixed float inputs) or undefined
};

// Runs the op on `inputs` and backs it up with N(0, 1) values drawn from grad_seed, rounded to `grad_dt`.
RunResult run_case(const OpCase& c, const std::vector<Tensor>& inputs, uint64_t grad_seed, DType grad_dt) {
  std::vector<Var> vars;
  for (std::size_t i = 0; i < inputs.size(); ++i)
    vars.emplace_back(inputs[i], c.differentiable && c.inputs[i].grad && !c.inputs[i].is_index());
  Var y = c.fn(vars);
  RunResult r;
  r.out = y.value();
  if (c.differentiable) {
    const Tensor g = randn64(y.shape(), grad_seed).to(grad_dt).to(y.dtype()).to(y.value().device());
    y.backward(g);
  }
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const Input& in = c.inputs[i];
    const bool wants_grad = c.differentiable && in.grad && !in.is_index();
    r.grads.push_back(wants_grad ? vars[i].grad() : Tensor());
    r.state.push_back(!wants_grad && !in.is_index() ? inputs[i] : Tensor());
  }
  return r;
}

void compare(const std::string& what, const RunResult& got, const RunResult& want, Tol tol) {
  check_close(what + " forward", got.out, want.out, tol.rtol, tol.atol);
  for (std::size_t i = 0; i < want.grads.size(); ++i) {
    if (want.grads[i].defined()) {
      INFO(what << ": no gradient reached input " << i);
      REQUIRE(got.grads[i].defined());
      check_close(what + " gradient of input " + std::to_string(i), got.grads[i], want.grads[i], tol.rtol, tol.atol);
    }
    if (want.state[i].defined())
      check_close(what + " input " + std::to_string(i) + " after the call", got.state[i], want.state[i], tol.rtol,
                  tol.atol);
  }
}

uint64_t case_seed(std::size_t index) { return 0x5eed0000ULL + 7919ULL * index; }

// What a public op looks like in the headers: `inline Var NAME(`, `inline std::vector<Var> NAME(`, a Var-taking
// `inline Tensor NAME(const Var&`, or a RETIKD_DEFINE_COMPARISON(NAME) line, in namespace ops outside impl.
std::set<std::string> public_ops_in_headers() {
  const std::string dir = std::string(RETIKD_SOURCE_DIR) + "/include/retikd/ops/";
  const char* files[] = {"activation.hpp",  "attention.hpp", "common.hpp", "conv.hpp",   "dropout.hpp",
                         "elementwise.hpp", "loss.hpp",      "matmul.hpp", "norm.hpp",   "pool.hpp",
                         "reduce.hpp",      "resize.hpp",    "shape.hpp",  "softmax.hpp"};
  std::set<std::string> names;
  for (const char* f : files) {
    std::ifstream in(dir + f);
    INFO("reading " << dir << f);
    REQUIRE(in.good());
    bool in_ops = false, in_impl = false;
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("namespace ops {", 0) == 0) in_ops = true;
      if (line.rfind("}  // namespace ops", 0) == 0) in_ops = false;
      if (line.rfind("namespace impl {", 0) == 0) in_impl = true;
      if (line.rfind("}  // namespace impl", 0) == 0) in_impl = false;
      if (!in_ops || in_impl) continue;
      std::string rest;
      for (const char* prefix : {"inline Var ", "inline std::vector<Var> ", "inline Tensor "}) {
        if (line.rfind(prefix, 0) == 0) rest = line.substr(std::string(prefix).size());
      }
      const std::string cmp = "RETIKD_DEFINE_COMPARISON(";
      if (line.rfind(cmp, 0) == 0) {
        names.insert(line.substr(cmp.size(), line.find(')') - cmp.size()));
        continue;
      }
      const std::size_t paren = rest.find('(');
      if (rest.empty() || paren == std::string::npos) continue;
      const std::string name = rest.substr(0, paren);
      if (name.find(' ') != std::string::npos || name.rfind("operator", 0) == 0) continue;
      // A Tensor-returning function is a public op only when it takes a Var (argmax); the others are the
      // Tensor-level helpers the front ends share.
      if (line.rfind("inline Tensor ", 0) == 0 && rest.compare(paren + 1, 10, "const Var&") != 0) continue;
      names.insert(name);
    }
  }
  return names;
}

// The report: one line per op with the registered configurations that have no CUDA path, in registry order.
std::string no_cuda_report() {
  std::vector<std::pair<std::string, std::string>> lines;
  for (const OpCase& c : registry()) {
    if (c.cuda != CudaPath::none) continue;
    auto it = std::find_if(lines.begin(), lines.end(), [&](const auto& l) { return l.first == c.op; });
    if (it == lines.end())
      lines.emplace_back(c.op, c.what);
    else
      it->second += "; " + c.what;
  }
  std::string s;
  for (const auto& l : lines) s += "- `" + l.first + "`: " + l.second + "\n";
  return s;
}

}  // namespace

TEST_CASE("op registry: every public op in include/retikd/ops has an entry, and every entry names one") {
  const std::set<std::string> declared = public_ops_in_headers();
  REQUIRE(declared.size() > 40);  // the parser found the ops (a broken parse would pass the next check vacuously)
  std::set<std::string> registered;
  for (const OpCase& c : registry()) registered.insert(c.op);
  for (const std::string& name : declared) {
    INFO("public op `" << name << "` has no entry in tests/test_ops.cpp's registry");
    CHECK(registered.count(name) == 1);
  }
  for (const std::string& name : registered) {
    INFO("registry entry `" << name << "` names no public op of include/retikd/ops");
    CHECK(declared.count(name) == 1);
  }
  MESSAGE(registry().size() << " registered configurations of " << registered.size() << " public ops");
}

TEST_CASE("op registry: float64 gradcheck on the CPU") {
  for (std::size_t i = 0; i < registry().size(); ++i) {
    const OpCase& c = registry()[i];
    if (!c.gradcheck) continue;
    CAPTURE(label(c));
    const std::vector<Tensor> in =
        prepare(c, draw_inputs(c, case_seed(i)), DType::float64, DType::float64, Device::cpu());
    std::vector<std::size_t> fixed;
    for (std::size_t k = 0; k < c.inputs.size(); ++k)
      if (!c.inputs[k].grad || c.inputs[k].is_index()) fixed.push_back(k);
    check_grad(c.fn, in, fixed);
  }
}

TEST_CASE("op registry: the CPU in float32 against float64, forward and backward") {
  for (std::size_t i = 0; i < registry().size(); ++i) {
    const OpCase& c = registry()[i];
    CAPTURE(label(c));
    const std::vector<Tensor> drawn = draw_inputs(c, case_seed(i));
    const RunResult want =
        run_case(c, prepare(c, drawn, DType::float32, DType::float64, Device::cpu()), case_seed(i) + 1, DType::float32);
    const RunResult got =
        run_case(c, prepare(c, drawn, DType::float32, DType::float32, Device::cpu()), case_seed(i) + 1, DType::float32);
    if (c.differentiable) REQUIRE(got.out.dtype() == DType::float32);  // the float32 path really ran
    compare(label(c) + " float32", got, want, c.f32);
  }
}

TEST_CASE("op registry: the GPU's composite routes, run on the CPU in float64, equal the CPU ops") {
  // Ops whose GPU path is composed from other ops (clamp, the tanh GELU, the average pools as GEMMs, attention
  // from views + matmul + softmax, kl_div_log_input, BCE with a pos_weight, max's gradient): the composition itself is checked here on any machine, so a GPU run only
  // has to confirm the ops it is made of (each of which has its own entry).
  std::set<std::string> checked;
  for (std::size_t i = 0; i < registry().size(); ++i) {
    const OpCase& c = registry()[i];
    if (!c.gpu_route) continue;
    CAPTURE(label(c));
    const std::vector<Tensor> in = prepare(c, draw_inputs(c, case_seed(i)), DType::float64, DType::float64, Device::cpu());
    OpCase route = c;
    route.fn = c.gpu_route;
    const RunResult want = run_case(c, in, case_seed(i) + 1, DType::float64);
    const RunResult got = run_case(route, in, case_seed(i) + 1, DType::float64);
    compare(label(c) + " composite route", got, want, Tol{1e-12, 1e-13});
    checked.insert(c.op);
  }
  CHECK(checked.size() >= 5);
  MESSAGE(checked.size() << " ops with a composite GPU route checked on the CPU");
}

TEST_CASE("op registry: which ops have no CUDA path (the list in docs/cuda.md)") {
  const std::string report = no_cuda_report();
  MESSAGE("ops without a CUDA path (a GPU tensor gets \"no CUDA implementation yet\"):\n" << report);
  const std::string path = std::string(RETIKD_SOURCE_DIR) + "/docs/cuda.md";
  std::ifstream in(path);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string doc = ss.str();
  const std::string begin = "<!-- ops without a CUDA path: generated by tests/test_ops.cpp -->\n";
  const std::string end = "<!-- end of the list -->";
  const std::size_t b = doc.find(begin), e = doc.find(end);
  INFO("docs/cuda.md must hold the list between \"" << begin << "\" and \"" << end << "\"");
  REQUIRE(b != std::string::npos);
  REQUIRE(e != std::string::npos);
  const std::string listed = doc.substr(b + begin.size(), e - b - begin.size());
  INFO("docs/cuda.md lists:\n" << listed << "\nthe registry says:\n" << report);
  CHECK(listed == report);
}

#ifdef RETIKD_WITH_CUDA
TEST_CASE("op registry: CUDA float32 and float16 against float64 on the CPU, forward and backward") {
  RETIKD_SKIP_WITHOUT_CUDA();
  const uint64_t seed = cuda_test::fresh_seed();
  CAPTURE(seed);
  const bool tf32_gemm = cuda::allow_tf32(), tf32_conv = cuda::allow_tf32_conv();
  cuda::set_allow_tf32(false);  // strict float32 GEMMs and convolutions: rtol 1e-5 holds
  MESSAGE("dense convolution backend: " << cuda::conv_backend());
  std::vector<bool> cudnn_modes{false};
  if (cuda::conv_built_with_cudnn()) cudnn_modes.push_back(true);
  int ran = 0, refused = 0;
  for (std::size_t i = 0; i < registry().size(); ++i) {
    const OpCase& c = registry()[i];
    CAPTURE(label(c));
    const std::vector<Tensor> drawn = draw_inputs(c, seed + 7919ULL * i);
    if (c.cuda == CudaPath::none) {
      const std::vector<Tensor> in = prepare(c, drawn, DType::float32, DType::float32, cuda_test::kGpu);
      const std::string msg = error_of([&] { (void)run_case(c, in, seed + i, DType::float32); });
      INFO("registered without a CUDA path; on the GPU it gave: "
           << (msg.empty() ? "no error" : msg)
           << " (if it now runs, register it as a kernel and let the comparison check it)");
      CHECK(contains(msg, "no CUDA implementation yet"));
      ++refused;
      continue;
    }
    for (DType dt : {DType::float32, DType::float16}) {
      if (dt == DType::float16 && !c.fp16) continue;
      CAPTURE(dtype_name(dt));
      const RunResult want = run_case(c, prepare(c, drawn, dt, DType::float64, Device::cpu()), seed + i, dt);
      for (bool cudnn : c.conv_backends ? cudnn_modes : std::vector<bool>{true}) {
        CAPTURE(cudnn);
        if (c.conv_backends) cuda::set_conv_use_cudnn(cudnn);
        cuda_test::poison_cache(4 * want.out.numel() + 4096);
        const RunResult got = run_case(c, prepare(c, drawn, dt, dt, cuda_test::kGpu), seed + i, dt);
        if (c.differentiable) REQUIRE(got.out.is_cuda());
        compare(label(c) + " " + dtype_name(dt) + " on the GPU", got, want, dt == DType::float32 ? c.f32 : c.f16);
      }
      cuda::set_conv_use_cudnn(true);
    }
    ++ran;
  }
  cuda::set_allow_tf32(tf32_gemm);
  cuda::set_allow_tf32_conv(tf32_conv);
  MESSAGE(ran << " configurations compared on the GPU, " << refused << " refused as registered");
}

// max's forward on the GPU is the row-max kernel (its backward needs argmax, CPU-only: see the registry); the
// maximum of rounded values is exact, so the rows must agree bit for bit, long rows (several blocks) included.
TEST_CASE("op registry: amax on the GPU equals the CPU's exactly, short and long rows") {
  RETIKD_SKIP_WITHOUT_CUDA();
  const uint64_t seed = cuda_test::fresh_seed();
  CAPTURE(seed);
  Generator gen(seed);
  for (DType dt : {DType::float32, DType::float16}) {
    for (const Shape& xs : {Shape{6, 50}, Shape{2, 70001}}) {
      CAPTURE(dtype_name(dt));
      CAPTURE(shape_str(xs));
      const Tensor x = cuda_test::rnd(gen, xs, dt);
      cuda_test::poison_cache(64);
      check_close("amax", ops::impl::amax(x.to(cuda_test::kGpu), {1}), ops::impl::amax(x.to(DType::float64), {1}), 0,
                  0);
    }
  }
}
#endif  // RETIKD_WITH_CUDA
