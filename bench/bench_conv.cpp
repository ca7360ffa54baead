// bench/bench_conv.cpp — CPU conv2d throughput at MobileNetV2-224 shapes (batch 1, float32): the dense 3×3
// path (im2col + GEMM) including the stem convolution, a pointwise layer, and the depthwise 3×3 path at the
// shapes of every depthwise stage, stride 1 and 2; forward for all, backward (input + weight) for one of each.
//
// Counters: GFLOP/s counts 2·MACs of the convolution as defined (padding taps excluded, so it is the work a
// perfect kernel must do); GB/s counts one read of input and weight and one write of the output — the
// depthwise layers are memory-bound, so GB/s is the figure to compare with the machine's bandwidth.
// Threads: RETIKD_NUM_THREADS (the label says how many were in effect), e.g.
//   RETIKD_NUM_THREADS=1 ./retikd_bench_conv --benchmark_min_time=0.2
// Ops are called through ops::impl (Tensors, no tape) so the numbers are the kernels', not the autograd's.
#include <benchmark/benchmark.h>

#include <retikd/core/parallel.hpp>
#include <retikd/core/random.hpp>
#include <retikd/ops/conv.hpp>

#include <cstdint>
#include <string>

namespace {

using retikd::Tensor;
namespace ops = retikd::ops;

struct ConvProblem {
  Tensor x, w, b, gy;
  ops::Conv2dOptions opt;
  ops::impl::Conv2dGeometry g;
  double macs = 0.0;  // multiply-adds with real (non-padding) input
  double bytes = 0.0;

  ConvProblem(int64_t C, int64_t H, int64_t O, int64_t k, int64_t stride, int64_t groups) {
    retikd::Generator gen(42);
    x = retikd::randn({1, C, H, H}, gen);
    w = retikd::randn({O, C / groups, k, k}, gen);
    b = retikd::randn({O}, gen);
    opt = ops::Conv2dOptions().with_stride(stride).with_groups(groups).with_same_padding(H, H, k, k);
    g = ops::impl::conv2d_geometry(x.shape(), w.shape(), opt);
    gy = retikd::randn({1, O, g.OH, g.OW}, gen);
    // Count the taps that land inside the input, per output row/column, then multiply out.
    auto inside = [](int64_t in, int64_t out, int64_t kk, int64_t s, int64_t pad) {
      double n = 0;
      for (int64_t o = 0; o < out; ++o)
        for (int64_t i = 0; i < kk; ++i) {
          const int64_t p = o * s - pad + i;
          n += (p >= 0 && p < in) ? 1 : 0;
        }
      return n;
    };
    macs = static_cast<double>(O) * static_cast<double>(C / groups) * inside(H, g.OH, k, stride, opt.pad_top) *
           inside(H, g.OW, k, stride, opt.pad_left);
    bytes = 4.0 * static_cast<double>(x.numel() + w.numel() + g.N * g.O * g.OH * g.OW);
  }
};

void set_counters(benchmark::State& state, const ConvProblem& p, double flop_factor) {
  const double it = static_cast<double>(state.iterations());
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * p.macs * flop_factor * it / 1e9, benchmark::Counter::kIsRate);
  state.counters["GB/s"] = benchmark::Counter(p.bytes * flop_factor * it / 1e9, benchmark::Counter::kIsRate);
  std::string label = p.g.depthwise() ? "depthwise" : (p.g.pointwise() ? "pointwise" : "im2col+gemm");
  label += " threads=" + std::to_string(retikd::thread_pool().num_threads());
  state.SetLabel(label);
}

// Args: C, H (= W), O, k, stride, groups.
ConvProblem make(const benchmark::State& state) {
  return ConvProblem(state.range(0), state.range(1), state.range(2), state.range(3), state.range(4), state.range(5));
}

void BM_conv2d_forward(benchmark::State& state) {
  ConvProblem p = make(state);
  for (auto _ : state) {
    Tensor y = ops::impl::conv2d(p.x, p.w, p.b, p.opt);
    benchmark::DoNotOptimize(y.raw_data());
  }
  set_counters(state, p, 1.0);
}

void BM_conv2d_forward_depthwise(benchmark::State& state) { BM_conv2d_forward(state); }

// Input and weight gradients (bias excluded): twice the forward's multiply-adds.
void BM_conv2d_backward(benchmark::State& state) {
  ConvProblem p = make(state);
  for (auto _ : state) {
    Tensor gx = ops::impl::conv2d_backward_input(p.gy, p.w, p.x.shape(), p.opt);
    Tensor gw = ops::impl::conv2d_backward_weight(p.gy, p.x, p.w.shape(), p.opt);
    benchmark::DoNotOptimize(gx.raw_data());
    benchmark::DoNotOptimize(gw.raw_data());
  }
  set_counters(state, p, 2.0);
}

void dense_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"C", "H", "O", "k", "stride", "groups"});
  b->Args({3, 224, 32, 3, 2, 1});     // MobileNetV2 stem: 1×3×224×224 → 32, stride 2
  b->Args({32, 112, 32, 3, 1, 1});    // dense 3×3 at 112×112
  b->Args({32, 112, 16, 1, 1, 1});    // pointwise projection of the first block
  b->Args({144, 56, 24, 1, 1, 1});    // pointwise projection at 56×56
}

void depthwise_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"C", "H", "O", "k", "stride", "groups"});
  for (int64_t stride : {1, 2}) {
    b->Args({32, 112, 32, 3, stride, 32});
    b->Args({144, 56, 144, 3, stride, 144});
    b->Args({192, 28, 192, 3, stride, 192});
    b->Args({960, 7, 960, 3, stride, 960});
  }
}

}  // namespace

BENCHMARK(BM_conv2d_forward)->Apply(dense_args)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_conv2d_forward_depthwise)->Apply(depthwise_args)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_conv2d_backward)
    ->ArgNames({"C", "H", "O", "k", "stride", "groups"})
    ->Args({32, 112, 32, 3, 1, 1})
    ->Args({144, 56, 144, 3, 1, 144})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

BENCHMARK_MAIN();
