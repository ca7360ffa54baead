// bench/bench_loader.cpp — data loader throughput at 224 px, 2 workers, batch 32 (issue 4's targets), for
//   (a) Resize 224×224 + Normalize, and
//   (b) the training pipeline: RandomResizedCrop 224, both flips, RandomRotation 12°, ColorJitter
//       0.1/0.1/0.1/0.05, Normalize (data::train_transform),
// each from the in-memory cache of decoded, resized images (what every epoch after the first costs) and
// without a cache (decode every image every epoch: what the first epoch costs).
//
// Data: the train split of ../shared/data/fundus4 (RETIKD_SHARED or the configured shared dir), or the folder
// / manifest in RETIKD_BENCH_DATA; without real data it falls back to the synthetic fundus set at 512 px and
// the label says so. RETIKD_BENCH_LIMIT=N times a seeded subset of N images (the uncached rows decode every
// image every iteration, so the full split makes each iteration several seconds).
//
//   bench/retikd_bench_loader --benchmark_counters_tabular=true
//
// One iteration is one full epoch (a fresh shuffle per iteration); the items_per_second counter is images/s.
// Wall time (UseRealTime): the work happens on the loader's worker threads, not the benchmark thread.
#include <benchmark/benchmark.h>

#include <retikd/core/cli_args.hpp>
#include <retikd/core/error.hpp>
#include <retikd/core/paths.hpp>
#include <retikd/core/random.hpp>
#include <retikd/data/data.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>

namespace {

namespace data = retikd::data;

// The data every benchmark reads, built once: the real train split when present, else synthetic.
struct BenchData {
  std::shared_ptr<data::Dataset> real;          // non-null when real data was found
  std::shared_ptr<const data::SyntheticSource> synth;  // otherwise
  std::string label;
};

const BenchData& bench_data() {
  static const BenchData d = [] {
    BenchData out;
    const char* env = std::getenv("RETIKD_BENCH_DATA");
    std::string root = env ? env : retikd::shared_path("data/fundus4");
    // 0 (the default): the whole train split.
    const int64_t limit = retikd::cli::env_int("RETIKD_BENCH_LIMIT", 0, 0, 1000000000);
    if (env || retikd::path_exists(retikd::shared_path("data/fundus4/split.tsv"))) {
      data::DatasetOptions dopt;
      dopt.policy = data::BadInput::skip;
      dopt.warnings = nullptr;
      data::Dataset all = data::Dataset::open(root, "", dopt);
      data::Dataset train = all.split("train");
      if (train.empty()) train = all;
      if (limit > 0 && limit < train.size()) {  // a seeded subset, so every class is represented
        retikd::Generator g(0);
        auto& s = train.samples;
        for (std::size_t i = s.size(); i > 1; --i) std::swap(s[i - 1], s[g.below(i)]);
        s.resize(static_cast<std::size_t>(limit));
      }
      out.real = std::make_shared<data::Dataset>(train);
      out.label = "real " + std::to_string(train.size()) + " images";
    } else {
      data::SyntheticOptions so;
      so.size = 512;
      const int64_t n = limit > 0 ? limit : 512;
      out.synth = std::make_shared<const data::SyntheticSource>(n, 0, so);
      out.label = "SYNTHETIC 512px " + std::to_string(n) + " images (no real data found)";
    }
    return out;
  }();
  return d;
}

enum class Pipeline { resize_normalize, train };

void BM_Loader(benchmark::State& state, Pipeline pipeline, bool cached) {
  using namespace data;
  const BenchData& d = bench_data();
  TransformPtr preprocess, transform;
  if (pipeline == Pipeline::resize_normalize) {
    preprocess = make<Resize>(224, 224, true);
    transform = make<Normalize>();
  } else {
    // The cache holds 256×256 so the random crop still has context to choose from.
    preprocess = make<Resize>(256, 256, true);
    transform = train_transform(224);
  }
  LoaderOptions opt;
  opt.batch_size = 32;
  opt.num_workers = 2;
  opt.prefetch = 4;
  opt.cache = cached;
  opt.preprocess = cached ? preprocess : nullptr;
  opt.transform = cached ? transform : compose({preprocess, transform});
  opt.policy = BadInput::skip;
  opt.warnings = nullptr;
  std::unique_ptr<Loader> loader =
      d.real ? std::unique_ptr<Loader>(new Loader(*d.real, opt)) : std::unique_ptr<Loader>(new Loader(d.synth, opt));
  loader->prepare();  // the cached rows fill the cache here, outside the timed epochs
  int64_t epoch = 0, images = 0;
  for (auto _ : state) {
    loader->start_epoch(epoch++);
    Batch b;
    while (loader->next(b)) {
      images += b.size();
      benchmark::DoNotOptimize(b.images.raw_data());
    }
  }
  state.SetItemsProcessed(images);
  state.SetLabel(d.label);
}

}  // namespace

BENCHMARK_CAPTURE(BM_Loader, a_resize_normalize_cached, Pipeline::resize_normalize, true)
    ->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK_CAPTURE(BM_Loader, a_resize_normalize_uncached, Pipeline::resize_normalize, false)
    ->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);
BENCHMARK_CAPTURE(BM_Loader, b_train_pipeline_cached, Pipeline::train, true)
    ->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK_CAPTURE(BM_Loader, b_train_pipeline_uncached, Pipeline::train, false)
    ->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(1);

BENCHMARK_MAIN();
