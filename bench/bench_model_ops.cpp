// bench/bench_model_ops.cpp — where a model's CPU step goes, op by op: the training step of
// bench_models.cpp (forward in training mode, cross-entropy, backward; batch 8, 224 px, 4 classes) or the
// eval forward, timed through the autograd OpObserver hook (autograd/op_observer.hpp). The time between two
// consecutive ops is charged to the second one (its forward or its backward), so the table adds up to the
// whole step: serial glue (views, allocation, the tape's own bookkeeping, gradient accumulation) lands on
// the op that follows it. Wall time and process CPU time (all pool threads) are both shown; on a shared
// machine CPU time is the steadier one. Docs: docs/results.md, "ViT-Tiny and ViT-S/14 on the CPU".
//
//   RETIKD_NUM_THREADS=1 ./retikd_bench_model_ops vit_small_patch14 3 train
//
// Models: those of nn::create_model (mobilenet_v2, vit_tiny, …) and vit_small_patch14 (ViT-S/14 at 224 px).
// Its own main(): a per-op table is not a Google Benchmark figure.
#include <retikd/autograd/op_observer.hpp>
#include <retikd/autograd/var.hpp>
#include <retikd/core/cli_args.hpp>
#include <retikd/core/parallel.hpp>
#include <retikd/core/random.hpp>
#include <retikd/nn/models.hpp>
#include <retikd/ops/loss.hpp>

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace {

using namespace retikd;

double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

struct OpTimes {
  double wall = 0, cpu = 0;
  int64_t calls = 0;
};

// Charges the time since the previous event to the op that just finished.
class OpTimer : public OpObserver {
 public:
  void start() {
    last_wall_ = wall_seconds();
    last_cpu_ = process_cpu_seconds();
  }
  void on_op(const char* op, bool backward) override {
    const double w = wall_seconds(), c = process_cpu_seconds();
    if (recording) {
      OpTimes& t = times[std::string(backward ? "backward " : "forward ") + op];
      t.wall += w - last_wall_;
      t.cpu += c - last_cpu_;
      ++t.calls;
    }
    last_wall_ = w;
    last_cpu_ = c;
  }
  bool recording = false;
  std::map<std::string, OpTimes> times;

 private:
  double last_wall_ = 0, last_cpu_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  const std::string name = argc > 1 ? argv[1] : "vit_tiny";
  int iterations = 3;
  bool train = true;
  try {  // malformed arguments stop with exit status 2, naming the argument (core/cli_args.hpp)
    if (argc > 2) iterations = static_cast<int>(cli::parse_int("ITERATIONS", argv[2], 1, 100000));
    if (argc > 3) {
      const std::string mode = argv[3];
      if (mode != "train" && mode != "eval")
        throw cli::ArgumentError("MODE: expected train or eval, got '" + mode + "'");
      train = mode == "train";
    }
    if (argc > 4) throw cli::ArgumentError("at most three arguments: MODEL [ITERATIONS [train|eval]]");
  } catch (const cli::ArgumentError& e) {
    std::fprintf(stderr, "bench_model_ops: %s\n", e.what());
    return 2;
  }
  constexpr int64_t kBatch = 8, kImg = 224;
  Generator gen(7);
  nn::ModelOptions o;
  o.num_classes = 4;
  o.img_size = kImg;
  std::shared_ptr<nn::Model> model =
      name == "vit_small_patch14"
          ? std::make_shared<nn::VisionTransformer>(nn::ViTConfig::small(o.num_classes, kImg, 14), gen)
          : nn::create_model(name, o, gen);
  const Tensor x = randn({kBatch, 3, kImg, kImg}, gen);
  std::vector<int64_t> labels(kBatch);
  for (int64_t i = 0; i < kBatch; ++i) labels[static_cast<std::size_t>(i)] = i % 4;
  const Tensor targets = Tensor::from_vector(labels, {kBatch});
  if (train) {
    model->train();
  } else {
    model->eval();
  }

  OpTimer timer;
  set_op_observer(&timer);
  double wall = 0, cpu = 0;
  for (int it = 0; it <= iterations; ++it) {  // iteration 0 warms up (fresh pages, scratch, pool start-up)
    timer.recording = it > 0;
    const double w0 = wall_seconds(), c0 = process_cpu_seconds();
    timer.start();
    if (train) {
      model->zero_grad();
      ops::cross_entropy(model->forward(Var(x)), targets).backward();
    } else {
      NoGradGuard no_grad;
      model->forward(Var(x));
    }
    if (it > 0) {
      wall += wall_seconds() - w0;
      cpu += process_cpu_seconds() - c0;
    }
  }
  set_op_observer(nullptr);

  std::vector<std::pair<std::string, OpTimes>> rows(timer.times.begin(), timer.times.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.cpu > b.second.cpu; });
  const double n = iterations;
  std::printf("%s %s, batch %lld, %lld px, %d threads: %.1f ms wall, %.1f ms CPU per step (mean of %d)\n",
              name.c_str(), train ? "train step" : "eval forward", static_cast<long long>(kBatch),
              static_cast<long long>(kImg), thread_pool().num_threads(), wall / n * 1e3, cpu / n * 1e3,
              iterations);
  std::printf("| op | calls | wall ms | CPU ms | CPU share |\n| --- | --- | --- | --- | --- |\n");
  for (const auto& r : rows)
    std::printf("| %s | %lld | %.2f | %.2f | %.1f %% |\n", r.first.c_str(), static_cast<long long>(r.second.calls / iterations),
                r.second.wall / n * 1e3, r.second.cpu / n * 1e3, 100.0 * r.second.cpu / cpu);
  return 0;
}
