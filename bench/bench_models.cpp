// bench/bench_models.cpp — one training step's compute of whole models on the CPU: forward, cross-entropy
// and backward (parameter gradients through the autograd tape, as training computes them: the images need
// none; no optimizer update) at batch 8, 224 px, float32, for MobileNetV2 (the student), ViT-Tiny/16 (the
// smallest teacher) and ViT-S/14 (DINOv2's shape at 224 px: 16×16 patches, 257 tokens; no LayerScale, which
// is a per-channel multiply and does not change the cost picture), 4 classes, in training mode (batch norm
// on batch statistics, dropout / stochastic depth at the models' defaults). A forward-only eval pass (no
// tape) is timed too.
//
// Counters: images/s from wall-clock time (the figure docs/results.md quotes); the CPU column is the whole
// process's CPU time (all pool threads), so batch / CPU time is the throughput per core-second, the steadier
// figure on a loaded machine. Threads: RETIKD_NUM_THREADS (the label says how many
// were in effect), e.g.
//   RETIKD_NUM_THREADS=2 ./retikd_bench_models --benchmark_min_time=10s
// bench/bench_models_torch.py times the same steps with PyTorch on the CPU for comparison.
#include <benchmark/benchmark.h>

#include <retikd/autograd/var.hpp>
#include <retikd/core/parallel.hpp>
#include <retikd/core/random.hpp>
#include <retikd/nn/models.hpp>
#include <retikd/ops/loss.hpp>

#include <cstdint>
#include <memory>
#include <string>

namespace {

using namespace retikd;

constexpr int64_t kBatch = 8;
constexpr int64_t kImg = 224;

struct ModelProblem {
  std::shared_ptr<nn::Model> model;
  Tensor x, targets;

  explicit ModelProblem(const std::string& name) {
    Generator gen(7);
    nn::ModelOptions o;
    o.num_classes = 4;
    o.img_size = kImg;
    if (name == "vit_small_patch14")
      model = std::make_shared<nn::VisionTransformer>(nn::ViTConfig::small(o.num_classes, kImg, 14), gen);
    else
      model = nn::create_model(name, o, gen);
    x = randn({kBatch, 3, kImg, kImg}, gen);
    std::vector<int64_t> t(static_cast<std::size_t>(kBatch));
    for (int64_t i = 0; i < kBatch; ++i) t[static_cast<std::size_t>(i)] = i % 4;
    targets = Tensor::from_vector(t, {kBatch});
  }
};

void finish(benchmark::State& state) {
  state.counters["images/s"] =
      benchmark::Counter(static_cast<double>(kBatch) * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
  state.SetLabel("batch=" + std::to_string(kBatch) + " " + std::to_string(kImg) +
                 "px threads=" + std::to_string(thread_pool().num_threads()));
}

void train_step(ModelProblem& p) {
  p.model->zero_grad();
  Var loss = ops::cross_entropy(p.model->forward(Var(p.x)), p.targets);
  loss.backward();
  benchmark::DoNotOptimize(loss.value().item<float>());
}

void eval_forward(ModelProblem& p) {
  NoGradGuard no_grad;
  Var y = p.model->forward(Var(p.x));
  benchmark::DoNotOptimize(y.value().raw_data());
}

// One untimed call first (as bench_models_torch.py makes): the first step also pays for fresh pages, the
// GEMM's scratch and the pool's start-up, which a training run pays once.
void BM_train_step(benchmark::State& state, const std::string& name) {
  ModelProblem p(name);
  p.model->train();
  train_step(p);
  for (auto _ : state) train_step(p);
  finish(state);
}

void BM_eval_forward(benchmark::State& state, const std::string& name) {
  ModelProblem p(name);
  p.model->eval();
  eval_forward(p);
  for (auto _ : state) eval_forward(p);
  finish(state);
}

}  // namespace

BENCHMARK_CAPTURE(BM_train_step, mobilenet_v2, std::string("mobilenet_v2"))->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();
BENCHMARK_CAPTURE(BM_train_step, vit_tiny, std::string("vit_tiny"))->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();
BENCHMARK_CAPTURE(BM_train_step, vit_small_patch14, std::string("vit_small_patch14"))->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();
BENCHMARK_CAPTURE(BM_eval_forward, mobilenet_v2, std::string("mobilenet_v2"))->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();
BENCHMARK_CAPTURE(BM_eval_forward, vit_tiny, std::string("vit_tiny"))->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();
BENCHMARK_CAPTURE(BM_eval_forward, vit_small_patch14, std::string("vit_small_patch14"))->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

BENCHMARK_MAIN();
