// tests/test_cuda_nn_ops.cpp — the network ops of ops/ on a GPU against the same ops on the CPU (DESIGN.md §7):
// dense convolution through cuDNN and through the im2col + cuBLAS fallback (groups, stride, asymmetric
// padding), depthwise convolution (stride 1 / 2, fp16 storage), batch norm (training with the running update,
// evaluation), layer norm, sum / mean / amax, global average pool, max pool, bilinear resize, cross-entropy,
// MSE and KL losses, each forward and backward through autograd, and the fused AdamW / SGD updates over
// several steps; the fp16 GPU inference path of a folded MobileNetV2 against its fp32 CPU forward, and its
// CUDA-graph replay at batch 1 against the eager GPU forward. Fresh random inputs (seed captured), never all zero; the caching allocator's blocks are
// poisoned with NaN before every GPU call (unwritten outputs fail); |gpu − cpu| ≤ atol + rtol·|cpu|, the CPU
// side in float64 on the same rounded inputs, rtol 1e-5 (fp32, atol scaled by the summed length) or 1e-2
// (fp16). Every case skips with a message without a device.
#ifdef RETIKD_WITH_CUDA

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "retikd/core/random.hpp"
#include "retikd/cuda/conv.hpp"
#include "retikd/cuda/runtime.hpp"
#include "retikd/deploy/gpu_inference.hpp"
#include "retikd/nn/models.hpp"
#include "retikd/ops/activation.hpp"
#include "retikd/ops/conv.hpp"
#include "retikd/ops/loss.hpp"
#include "retikd/ops/norm.hpp"
#include "retikd/ops/pool.hpp"
#include "retikd/ops/reduce.hpp"
#include "retikd/ops/resize.hpp"
#include "retikd/ops/shape.hpp"
#include "retikd/optim/optim.hpp"
#include "cuda_test_util.hpp"

using namespace retikd;
using namespace retikd::cuda_test;
using namespace retikd::test;

namespace {


// |normal|·scale + offset (positive variances, class weights), rounded to dt.
Tensor positive(Generator& g, const Shape& s, DType dt, double offset) {
  std::vector<double> v = rnd(g, s, DType::float64).to_vector<double>();
  for (double& e : v) e = std::abs(e) + offset;
  return Tensor::from_vector(v, s).to(dt);
}
// normal·scale + offset, rounded to dt.
Tensor shifted(Generator& g, const Shape& s, DType dt, double scale, double offset) {
  std::vector<double> v = rnd(g, s, DType::float64, scale).to_vector<double>();
  for (double& e : v) e += offset;
  return Tensor::from_vector(v, s).to(dt);
}

}  // namespace

TEST_CASE("cuda conv2d dense: cuDNN and im2col + cuBLAS against the CPU, forward and backward") {
  RETIKD_SKIP_WITHOUT_CUDA();
  const uint64_t seed = fresh_seed();
  CAPTURE(seed);
  Generator gen(seed);
  MESSAGE("dense convolution backend: " << cuda::conv_backend());
  struct Case { Shape x, w; ops::Conv2dOptions opt; };
  const Case cases[] = {
      {{2, 5, 11, 9}, {7, 5, 3, 3}, ops::Conv2dOptions().with_padding(1)},
      {{3, 4, 12, 10}, {6, 2, 3, 3}, ops::Conv2dOptions().with_stride(2).with_padding(0, 1, 0, 1).with_groups(2)},
      {{2, 16, 7, 7}, {24, 16, 1, 1}, ops::Conv2dOptions()},                             // pointwise
      {{1, 3, 15, 13}, {8, 3, 3, 3}, ops::Conv2dOptions().with_stride(2).with_padding(1)}};  // stem-like
  std::vector<bool> backends{false};
  if (cuda::conv_built_with_cudnn()) backends.push_back(true);
  for (bool use_cudnn : backends) {
    cuda::set_conv_use_cudnn(use_cudnn);
    for (DType dt : {DType::float32, DType::float16}) {
      for (const Case& c : cases) {
        CAPTURE(use_cudnn);
        CAPTURE(dtype_name(dt));
        CAPTURE(shape_str(c.x));
        const double K = static_cast<double>(c.w[1] * c.w[2] * c.w[3]);
        const Tensor b = rnd(gen, {c.w[0]}, dt);
        compare_autograd(
            "conv2d", gen, {rnd(gen, c.x, dt), rnd(gen, c.w, dt), b},
            [&](const std::vector<Var>& v) { return ops::conv2d(v[0], v[1], v[2], c.opt); },
            dt == DType::float32 ? 1e-5 : 1e-2, dt == DType::float32 ? 1e-5 * K : 2e-2 * std::sqrt(K) * 4);
      }
    }
  }
  cuda::set_conv_use_cudnn(true);
}

TEST_CASE("cuda depthwise conv2d: our kernel against the CPU, stride 1 and 2, fp32 and fp16") {
  RETIKD_SKIP_WITHOUT_CUDA();
  const uint64_t seed = fresh_seed();
  CAPTURE(seed);
  Generator gen(seed);
  // 3×3 and 5×5 take the all-taps weight-gradient kernel (the large case with several chunks per channel);
  // 3×1 the per-tap one.
  struct Case { Shape x; int64_t mult; ops::Conv2dOptions opt; int64_t kh = 3, kw = 3; };
  const Case cases[] = {{{2, 32, 14, 14}, 1, ops::Conv2dOptions().with_padding(1)},
                        {{3, 24, 15, 13}, 1, ops::Conv2dOptions().with_stride(2).with_padding(0, 1, 0, 1)},
                        {{2, 8, 9, 9}, 2, ops::Conv2dOptions().with_stride(2).with_padding(1)},
                        {{4, 16, 56, 56}, 1, ops::Conv2dOptions().with_padding(1)},
                        {{2, 12, 20, 19}, 1, ops::Conv2dOptions().with_stride(2).with_padding(2), 5, 5},
                        {{2, 6, 10, 10}, 1, ops::Conv2dOptions().with_padding(1, 1, 0, 0), 3, 1}};
  for (DType dt : {DType::float32, DType::float16}) {
    for (Case c : cases) {
      CAPTURE(dtype_name(dt));
      CAPTURE(shape_str(c.x));
      c.opt.groups = c.x[1];
      const Shape ws{c.x[1] * c.mult, 1, c.kh, c.kw};
      compare_autograd(
          "depthwise", gen, {rnd(gen, c.x, dt), rnd(gen, ws, dt), rnd(gen, {ws[0]}, dt)},
          [&](const std::vector<Var>& v) { return ops::conv2d(v[0], v[1], v[2], c.opt); },
          dt == DType::float32 ? 1e-5 : 1e-2, dt == DType::float32 ? 1e-4 : 0.2);
    }
  }
}

TEST_CASE("cuda batch norm: training (running update) and evaluation, forward and backward") {
  RETIKD_SKIP_WITHOUT_CUDA();
  const uint64_t seed = fresh_seed();
  CAPTURE(seed);
  Generator gen(seed);
  // Shapes: one block per channel; many short planes per block (chunks cross plane boundaries); planes longer
  // than a chunk (several blocks per plane).
  for (const Shape& xs : {Shape{4, 6, 7, 5}, Shape{300, 5, 7, 7}, Shape{8, 3, 96, 96}}) {
  for (DType dt : {DType::float32, DType::float16}) {
    for (bool training : {true, false}) {
      CAPTURE(shape_str(xs));
      CAPTURE(dtype_name(dt));
      CAPTURE(training);
      const int64_t C = xs[1];
      const Tensor rm = rnd(gen, {C}, DType::float32), rv = positive(gen, {C}, DType::float32, 0.5);
      Tensor cm = rm.to(DType::float64), cv = rv.to(DType::float64), gm = rm.to(kGpu), gv = rv.to(kGpu);
      int call = 0;
      compare_autograd(
          "batch_norm", gen, {shifted(gen, xs, dt, 2.0, 1.0), rnd(gen, {C}, dt), rnd(gen, {C}, dt)},
          [&](const std::vector<Var>& v) {
            const bool gpu = v[0].value().is_cuda();
            ++call;
            return ops::batch_norm(v[0], v[1], v[2], gpu ? gm : cm, gpu ? gv : cv, training, 0.1, 1e-5);
          },
          dt == DType::float32 ? 1e-4 : 1e-2, dt == DType::float32 ? 1e-4 : 5e-2);
      REQUIRE(call == 2);
      check_close("running_mean", gm, cm, 1e-5, 1e-6);
      check_close("running_var", gv, cv, 1e-5, 1e-6);
    }
  }
  }
}

TEST_CASE("cuda layer norm, reductions, global average pool: forward and backward") {
  RETIKD_SKIP_WITHOUT_CUDA();
  const uint64_t seed = fresh_seed();
  CAPTURE(seed);
  Generator gen(seed);
  for (DType dt : {DType::float32, DType::float16}) {
    CAPTURE(dtype_name(dt));
    const double r = dt == DType::float32 ? 1e-5 : 1e-2, a = dt == DType::float32 ? 1e-4 : 5e-2;
    compare_autograd(
        "layer_norm", gen, {rnd(gen, {3, 37, 96}, dt), rnd(gen, {96}, dt), rnd(gen, {96}, dt)},
        [](const std::vector<Var>& v) { return ops::layer_norm(v[0], {96}, v[1], v[2], 1e-6); }, r, a);
    compare_autograd("sum over dims 0 and 2", gen, {rnd(gen, {5, 7, 33}, dt)},
                     [](const std::vector<Var>& v) { return ops::sum(v[0], {0, 2}); }, r, a * 10);
    compare_autograd("mean over the last dim", gen, {rnd(gen, {4, 3, 3000}, dt)},
                     [](const std::vector<Var>& v) { return ops::mean(v[0], {-1}, true); }, r, a);
    compare_autograd("sum of everything", gen, {rnd(gen, {64, 1000}, dt)},
                     [](const std::vector<Var>& v) { return ops::sum(v[0]); }, r, a * 100);
    compare_autograd("global average pool", gen, {rnd(gen, {2, 40, 7, 7}, dt)},
                     [](const std::vector<Var>& v) { return ops::adaptive_avg_pool2d(v[0], 1, 1); }, r, a);
    // A few very long rows take the chunked two-stage reduction (a loss summed over everything).
    compare_autograd("sum of everything, 300k elements", gen, {rnd(gen, {3, 100000}, dt)},
                     [](const std::vector<Var>& v) { return ops::sum(v[0]); }, r, a * 1000);
    compare_autograd("mean of 3 rows of 100k", gen, {rnd(gen, {3, 100000}, dt)},
                     [](const std::vector<Var>& v) { return ops::mean(v[0], {-1}); }, r, a);
    for (const Shape& xs : {Shape{6, 50}, Shape{2, 70001}}) {
      CAPTURE(shape_str(xs));
      const Tensor x = rnd(gen, xs, dt);
      poison_cache(64);
      check_close("amax", ops::impl::amax(x.to(kGpu), {1}), ops::impl::amax(x.to(DType::float64), {1}), 0, 0);
    }
  }
}

TEST_CASE("cuda activations and their gradients, unary math, maximum / minimum, comparisons, broadcasting ops, BCE with logits, concat") {
  RETIKD_SKIP_WITHOUT_CUDA();
  const uint64_t seed = fresh_seed();
  CAPTURE(seed);
  Generator gen(seed);
  for (DType dt : {DType::float32, DType::float16}) {
    CAPTURE(dtype_name(dt));
    const double r = dt == DType::float32 ? 1e-5 : 1e-2, a = dt == DType::float32 ? 1e-5 : 1e-2;
    // Inputs of scale 4 cross ReLU6's kinks at 0 and 6; a value rounded onto a kink has the same side on both
    // devices (the CPU reference sees the same rounded input).
    const Shape s{3, 70, 11};
    using F = std::function<Var(const std::vector<Var>&)>;
    const std::vector<std::pair<std::string, F>> activations = {
        {"relu", [](const std::vector<Var>& v) { return ops::relu(v[0]); }},
        {"relu6", [](const std::vector<Var>& v) { return ops::relu6(v[0]); }},
        {"leaky_relu 0.2", [](const std::vector<Var>& v) { return ops::leaky_relu(v[0], 0.2); }},
        {"gelu (erf)", [](const std::vector<Var>& v) { return ops::gelu(v[0]); }},
        {"silu", [](const std::vector<Var>& v) { return ops::silu(v[0]); }},
        {"sigmoid", [](const std::vector<Var>& v) { return ops::sigmoid(v[0]); }},
        {"tanh", [](const std::vector<Var>& v) { return ops::tanh(v[0]); }},
    };
    for (const auto& act : activations) compare_autograd(act.first, gen, {rnd(gen, s, dt, 4.0)}, act.second, r, a);
    // Unary math and maximum / minimum (their backward masks run on the GPU too).
    compare_autograd("exp", gen, {rnd(gen, s, dt, 1.5)}, [](const std::vector<Var>& v) { return ops::exp(v[0]); }, r,
                     a * 8);
    compare_autograd("abs", gen, {rnd(gen, s, dt, 4.0)}, [](const std::vector<Var>& v) { return ops::abs(v[0]); }, r, a);
    compare_autograd("sqrt", gen, {positive(gen, s, dt, 0.25)}, [](const std::vector<Var>& v) { return ops::sqrt(v[0]); },
                     r, a * 4);
    compare_autograd("log", gen, {positive(gen, s, dt, 0.25)}, [](const std::vector<Var>& v) { return ops::log(v[0]); },
                     r, a * 4);
    compare_autograd("square", gen, {rnd(gen, s, dt, 2.0)}, [](const std::vector<Var>& v) { return ops::square(v[0]); },
                     r, a * 4);
    compare_autograd("maximum (3,7,9) with (3,1,9)", gen, {rnd(gen, {3, 7, 9}, dt), rnd(gen, {3, 1, 9}, dt)},
                     [](const std::vector<Var>& v) { return ops::maximum(v[0], v[1]); }, r, a * 7);
    compare_autograd("minimum (3,7,9) with (3,1,9)", gen, {rnd(gen, {3, 7, 9}, dt), rnd(gen, {3, 1, 9}, dt)},
                     [](const std::vector<Var>& v) { return ops::minimum(v[0], v[1]); }, r, a * 7);
    {  // Comparisons give exactly the CPU's 0 / 1 (the rounded values compare the same in float64), ties included.
      const Tensor x = rnd(gen, {5, 12}, dt), y = rnd(gen, {12}, dt);
      using Cmp = Var (*)(const Var&, const Var&);
      const std::vector<std::pair<std::string, Cmp>> comparisons = {
          {"eq", ops::eq}, {"ne", ops::ne}, {"lt", ops::lt}, {"le", ops::le}, {"gt", ops::gt}, {"ge", ops::ge}};
      for (const auto& c : comparisons) {
        for (const Tensor& rhs : {y, x}) {
          CAPTURE(c.first);
          const Tensor got = c.second(Var(x.to(kGpu)), Var(rhs.to(kGpu))).value();
          REQUIRE(got.is_cuda());
          const Tensor want = c.second(Var(x.to(DType::float64)), Var(rhs.to(DType::float64))).value();
          test::check_close(c.first, got, want, 0.0, 0.0);
        }
      }
    }
    // Broadcasting in every position the models use: positional embeddings, SE gates, biases, scalars per row.
    compare_autograd("add (2,17,24) + (1,17,24)", gen, {rnd(gen, {2, 17, 24}, dt), rnd(gen, {1, 17, 24}, dt)},
                     [](const std::vector<Var>& v) { return ops::add(v[0], v[1]); }, r, a * 4);
    compare_autograd("mul (3,40,5,5) * (3,40,1,1)", gen, {rnd(gen, {3, 40, 5, 5}, dt), rnd(gen, {3, 40, 1, 1}, dt)},
                     [](const std::vector<Var>& v) { return ops::mul(v[0], v[1]); }, r, a * 25);
    compare_autograd("sub (6,33) - (33)", gen, {rnd(gen, {6, 33}, dt), rnd(gen, {33}, dt)},
                     [](const std::vector<Var>& v) { return ops::sub(v[0], v[1]); }, r, a * 6);
    compare_autograd("div (4,1,9) / (1,7,9)", gen, {rnd(gen, {4, 1, 9}, dt), positive(gen, {1, 7, 9}, dt, 0.5)},
                     [](const std::vector<Var>& v) { return ops::div(v[0], v[1]); }, r, a * 40);
    compare_autograd("concat along dim 1", gen, {rnd(gen, {2, 1, 8}, dt), rnd(gen, {2, 5, 8}, dt), rnd(gen, {2, 3, 8}, dt)},
                     [](const std::vector<Var>& v) { return ops::concat({v[0], v[1], v[2]}, 1); }, r, a);
  }
  // The discriminator's loss: logits against targets in [0, 1], both differentiable (float32, no pos_weight).
  std::vector<double> probabilities;
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::mt19937_64 engine(seed);
  for (int i = 0; i < 48; ++i) probabilities.push_back(unit(engine));
  const Tensor targets = Tensor::from_vector(probabilities, {16, 3}).to(DType::float32);
  for (ops::Reduction red : {ops::Reduction::mean, ops::Reduction::sum, ops::Reduction::none}) {
    CAPTURE(static_cast<int>(red));
    compare_autograd("binary_cross_entropy_with_logits", gen, {rnd(gen, {16, 3}, DType::float32, 3.0), targets},
                     [red](const std::vector<Var>& v) {
                       return ops::binary_cross_entropy_with_logits(v[0], v[1], Tensor(), red);
                     },
                     1e-5, 1e-5);
  }
}

TEST_CASE("cuda max pool and bilinear resize: forward and backward") {
  RETIKD_SKIP_WITHOUT_CUDA();
  const uint64_t seed = fresh_seed();
  CAPTURE(seed);
  Generator gen(seed);
  for (DType dt : {DType::float32, DType::float16}) {
    CAPTURE(dtype_name(dt));
    const double r = dt == DType::float32 ? 1e-5 : 1e-2, a = dt == DType::float32 ? 1e-5 : 1e-2;
    compare_autograd("max_pool2d 3/2/1", gen, {rnd(gen, {2, 5, 13, 11}, dt)},
                     [](const std::vector<Var>& v) { return ops::max_pool2d(v[0], 3, 2, 1); }, r, a);
    compare_autograd("max_pool2d 2/2 ceil", gen, {rnd(gen, {2, 3, 9, 8}, dt)},
                     [](const std::vector<Var>& v) { return ops::max_pool2d(v[0], 2, 2, 0, true); }, r, a);
    for (bool align : {false, true}) {
      CAPTURE(align);
      compare_autograd("bilinear 7x7 -> 14x14", gen, {rnd(gen, {2, 12, 7, 7}, dt)},
                       [align](const std::vector<Var>& v) { return ops::interpolate_bilinear(v[0], 14, 14, align); },
                       r, a * 4);
      compare_autograd("bilinear 13x10 -> 5x6", gen, {rnd(gen, {1, 3, 13, 10}, dt)},
                       [align](const std::vector<Var>& v) { return ops::interpolate_bilinear(v[0], 5, 6, align); },
                       r, a * 4);
    }
  }
}

TEST_CASE("cuda losses: cross-entropy (weights, smoothing, ignore_index), MSE, distillation KL") {
  RETIKD_SKIP_WITHOUT_CUDA();
  const uint64_t seed = fresh_seed();
  CAPTURE(seed);
  Generator gen(seed);
  const int64_t N = 37, C = 5;
  std::vector<int64_t> t(N);
  std::mt19937_64 rng(seed);
  for (int64_t i = 0; i < N; ++i) t[static_cast<std::size_t>(i)] = static_cast<int64_t>(rng() % C);
  t[3] = -100;
  const Tensor targets = Tensor::from_vector(t, {N});
  const Tensor w = positive(gen, {C}, DType::float64, 0.1);
  for (ops::Reduction red : {ops::Reduction::mean, ops::Reduction::sum, ops::Reduction::none}) {
    for (bool weighted : {false, true}) {
      CAPTURE(ops::reduction_name(red));
      CAPTURE(weighted);
      compare_autograd(
          "cross_entropy", gen, {rnd(gen, {N, C}, DType::float32, 3.0)},
          [&](const std::vector<Var>& v) {
            ops::CrossEntropyOptions o;
            o.reduction = red;
            o.label_smoothing = 0.1;
            if (weighted) o.weight = v[0].value().is_cuda() ? w.to(DType::float32).to(kGpu) : w;
            return ops::cross_entropy(v[0], v[0].value().is_cuda() ? targets.to(kGpu) : targets, o);
          },
          1e-5, 1e-5);
    }
    compare_autograd("mse", gen, {rnd(gen, {6, 33}, DType::float32), rnd(gen, {6, 33}, DType::float32)},
                     [red](const std::vector<Var>& v) { return ops::mse_loss(v[0], v[1], red); }, 1e-5, 1e-5);
  }
  for (ops::Reduction red : {ops::Reduction::batchmean, ops::Reduction::none}) {
    CAPTURE(ops::reduction_name(red));
    compare_autograd("kl_div tau 4", gen,
                     {rnd(gen, {2, 12, 196}, DType::float32, 3.0), rnd(gen, {2, 12, 196}, DType::float32, 3.0)},
                     [red](const std::vector<Var>& v) { return ops::kl_div(v[0], v[1], 4.0, red); }, 1e-4, 1e-6);
  }
}

TEST_CASE("cuda fused optimizer: AdamW and SGD over several steps and groups against the CPU update") {
  RETIKD_SKIP_WITHOUT_CUDA();
  const uint64_t seed = fresh_seed();
  CAPTURE(seed);
  Generator gen(seed);
  const std::vector<Shape> shapes{{32, 3, 3, 3}, {32}, {1000, 9}, {5}};  // 9000 elements: 3 chunks
  for (int which = 0; which < 2; ++which) {
    CAPTURE(which);
    std::vector<Var> cpu_p, gpu_p;
    for (const Shape& s : shapes) {
      const Tensor v = rnd(gen, s, DType::float32);
      cpu_p.emplace_back(v.clone(), true);
      gpu_p.emplace_back(v.to(kGpu), true);
    }
    auto groups = [](std::vector<Var>& p) {
      return std::vector<optim::ParamGroup>{{{p[0], p[1]}, 3e-3, 0.05, "a"}, {{p[2], p[3]}, 1e-2, 0.0, "b"}};
    };
    std::unique_ptr<optim::Optimizer> oc, og;
    if (which == 0) {
      oc.reset(new optim::AdamW(groups(cpu_p), optim::AdamWOptions{}));
      og.reset(new optim::AdamW(groups(gpu_p), optim::AdamWOptions{}));
    } else {
      const optim::SGDOptions o{0.1, 0.9, 0.0, 1e-4, true};
      oc.reset(new optim::SGD(groups(cpu_p), o));
      og.reset(new optim::SGD(groups(gpu_p), o));
    }
    for (int step = 0; step < 3; ++step) {
      for (std::size_t i = 0; i < shapes.size(); ++i) {
        const Tensor g = rnd(gen, shapes[i], DType::float32);
        cpu_p[i].mutable_grad() = g.clone();
        gpu_p[i].mutable_grad() = g.to(kGpu);
      }
      oc->step();
      og->step();
    }
    for (std::size_t i = 0; i < shapes.size(); ++i)
      check_close("parameter " + std::to_string(i), gpu_p[i].value(), cpu_p[i].value(), 1e-5, 1e-6);
  }
}

TEST_CASE("cuda fp16 inference: folded MobileNetV2 on the GPU in float16 against its float32 CPU forward") {
  RETIKD_SKIP_WITHOUT_CUDA();
  const uint64_t seed = fresh_seed();
  CAPTURE(seed);
  Generator gen(seed);
  nn::ModelOptions o;
  o.num_classes = 5;
  o.width_mult = 0.5;
  auto model = nn::create_model("mobilenet_v2", o, gen);
  // torchvision's classifier init (normal, std 0.01) makes logits ~100x smaller than the features they sum,
  // so fp16 rounding of the features would dominate a logit-relative tolerance; a trained classifier has
  // logits of the features' order. Re-draw it like nn.Linear's default (std ~ 1/sqrt(fan_in)).
  for (auto& p : model->named_parameters())
    if (p.first.find("classifier") != std::string::npos && p.second.value().dim() == 2)
      p.second.mutable_value().copy_(rnd(gen, p.second.value().shape(), DType::float32,
                                         1.0 / std::sqrt(static_cast<double>(p.second.value().size(1)))));
  // Freshly initialised running statistics (0 / 1) leave the activations of a random network vanishing
  // (logits ~1e-8 measured on an H100: below fp16's range); 40 training-mode passes move them to the data's,
  // as after training, so every layer works at unit scale.
  {
    NoGradGuard no_grad;
    model->train();
    for (int i = 0; i < 40; ++i) model->forward(Var(rnd(gen, {4, 3, 64, 64}, DType::float32), false));
  }
  model->eval();
  auto folded = deploy::fold_batch_norm(*model);
  const Tensor images = rnd(gen, {2, 3, 64, 64}, DType::float32);
  Tensor cpu_logits;
  {
    NoGradGuard no_grad;
    cpu_logits = folded->forward(Var(images, false)).value();
  }
  for (bool half : {false, true}) {
    CAPTURE(half);
    poison_cache(1 << 20);
    deploy::GpuHalfStudent gpu(deploy::fold_batch_norm(*model), kGpu, half);
    const Tensor logits = gpu.run(images);
    double scale = 0.0;
    for (double v : cpu_logits.to_vector<double>()) scale = std::max(scale, std::abs(v));
    REQUIRE(scale > 1e-2);  // a degenerate network would make the comparison meaningless
    // fp32: reassociation only; fp16: storage rounding through ~50 layers, relative to the logits' scale.
    check_close("logits", logits, cpu_logits, half ? 3e-2 : 1e-4, (half ? 3e-2 : 1e-4) * scale);
    // CUDA-graph replay of the batch-1 forward: the same logits as the eager GPU forward, for two images
    // (the second replay proves the static input is re-read).
    gpu.capture(64, 64);
    REQUIRE(gpu.captured());
    for (int64_t i = 0; i < 2; ++i) {
      const Tensor one = images.narrow(0, i, 1).contiguous();
      check_close("graph replay", gpu.run_captured(one), gpu.run(one), 1e-3, 1e-3 * scale);
    }
  }
}

#endif  // RETIKD_WITH_CUDA
