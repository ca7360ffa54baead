// examples/distill_retina.cpp — the main job's entry point.
//
// The distillation pipeline (teacher fine-tune → CE student → distilled student → evaluation → fp16 export)
// has not landed yet. Until it does, this program runs a smoke of the library end to end and says so: it
// reads the real fundus set when it is there (../shared/data/fundus4 with its leak-free split.tsv, or
// --data), else the built-in synthetic fundus set, trains a small MobileNetV2 with cross-entropy through the
// threaded loader, the autograd tape, the CPU ops and AdamW, and reports loss and test accuracy.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "retikd/data/data.hpp"
#include "retikd/nn/models.hpp"
#include "retikd/retikd.hpp"

using namespace retikd;

namespace {

struct Options {
  std::string data;      // "" = default lookup
  std::string manifest;
  int64_t epochs = 6;
  int64_t img = 64;
  int64_t limit = 768;   // training images used (the smoke is a smoke)
  int64_t batch = 32;
  double lr = 2e-3;
  uint64_t seed = 0;
  bool synthetic = false;
  bool skip_bad = false;
};

void usage() {
  std::printf(
      "usage: distill_retina [--data ROOT] [--manifest FILE] [--synthetic] [--epochs N] [--img PX]\n"
      "                      [--limit N] [--batch N] [--lr X] [--seed N] [--skip-bad]\n"
      "  The distillation pipeline has not landed yet: this runs a smoke of the library (a small\n"
      "  MobileNetV2 trained with cross-entropy) on the real fundus set when present, else on the\n"
      "  synthetic set.\n");
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "distill_retina: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      usage();
      std::exit(0);
    } else if (a == "--data") {
      o.data = value();
    } else if (a == "--manifest") {
      o.manifest = value();
    } else if (a == "--synthetic") {
      o.synthetic = true;
    } else if (a == "--epochs") {
      o.epochs = std::stoll(value());
    } else if (a == "--img") {
      o.img = std::stoll(value());
    } else if (a == "--limit") {
      o.limit = std::stoll(value());
    } else if (a == "--batch") {
      o.batch = std::stoll(value());
    } else if (a == "--lr") {
      o.lr = std::stod(value());
    } else if (a == "--seed") {
      o.seed = std::stoull(value());
    } else if (a == "--skip-bad") {
      o.skip_bad = true;
    } else {
      std::fprintf(stderr, "distill_retina: unknown option %s (see --help)\n", a.c_str());
      std::exit(2);
    }
  }
  return o;
}

// A class-balanced, seeded subset of at most `limit` samples (the smoke does not need the whole split).
data::Dataset subset(const data::Dataset& ds, int64_t limit, uint64_t seed) {
  if (limit <= 0 || ds.size() <= limit) return ds;
  data::Dataset out = ds;
  std::vector<data::Sample> s = ds.samples;
  Generator g(seed);
  for (std::size_t i = s.size(); i > 1; --i) std::swap(s[i - 1], s[g.below(i)]);
  s.resize(static_cast<std::size_t>(limit));
  out.samples = s;
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // keep our lines in order with the loader's progress on stderr
  try {
    const Options o = parse(argc, argv);
    std::printf("distill_retina: NOTE — the distillation pipeline has not landed yet; this run is a SMOKE of the\n"
                "library (MobileNetV2 width 0.5, cross-entropy only, %lld px, %lld epochs).\n",
                static_cast<long long>(o.img), static_cast<long long>(o.epochs));

    std::shared_ptr<const data::ImageSource> train_source, test_source;
    std::string root = o.data;
    if (root.empty() && !o.synthetic && path_exists(shared_path("data/fundus4/split.tsv")))
      root = shared_path("data/fundus4");
    if (!root.empty() && !o.synthetic) {
      data::DatasetOptions dopt;
      dopt.policy = o.skip_bad ? data::BadInput::skip : data::BadInput::error;
      data::Dataset all = data::Dataset::open(root, o.manifest, dopt);
      std::printf("data: %s (%lld images; train/test splits of its manifest or folders)\n", root.c_str(),
                  static_cast<long long>(all.size()));
      train_source = std::make_shared<data::FileSource>(subset(all.split("train"), o.limit, o.seed));
      test_source = std::make_shared<data::FileSource>(subset(all.split("test"), o.limit / 2, o.seed + 1));
    } else {
      data::SyntheticOptions sopt;
      sopt.size = static_cast<int>(o.img);
      std::printf("data: synthetic fundus set (no real data found; pass --data ROOT for yours)\n");
      train_source = std::make_shared<data::SyntheticSource>(o.limit, o.seed, sopt);
      test_source = std::make_shared<data::SyntheticSource>(o.limit / 2, o.seed, sopt, o.limit);
    }

    data::LoaderOptions lopt;
    lopt.batch_size = o.batch;
    lopt.seed = o.seed;
    lopt.preprocess = data::compose({data::make<data::Resize>(static_cast<int>(o.img)),
                                     data::make<data::CenterCrop>(static_cast<int>(o.img))});
    lopt.transform = data::compose({data::make<data::RandomHorizontalFlip>(), data::make<data::RandomRotation>(12.0),
                                    data::make<data::Normalize>()});
    lopt.policy = o.skip_bad ? data::BadInput::skip : data::BadInput::error;
    lopt.progress = true;
    data::Loader train(train_source, lopt);
    data::LoaderOptions eopt = lopt;
    eopt.shuffle = false;
    eopt.transform = data::compose({data::make<data::Normalize>()});
    data::Loader test(test_source, eopt);

    Generator gen(o.seed);
    nn::ModelOptions mopt;
    mopt.width_mult = 0.5;
    auto model = nn::create_model("mobilenet_v2", mopt, gen);
    std::printf("model: mobilenet_v2 x0.5, %lld parameters\n", static_cast<long long>(model->num_parameters()));
    optim::AdamW opt(model->parameters(), {o.lr, 0.9, 0.999, 1e-8, 1e-4});

    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t epoch = 0; epoch < o.epochs; ++epoch) {
      model->train();
      train.start_epoch(epoch);
      data::Batch batch;
      double loss_sum = 0;
      int64_t seen = 0;
      while (train.next(batch)) {
        opt.zero_grad();
        Var loss = ops::cross_entropy(model->forward(Var(batch.images)), batch.labels);
        const double l = loss.item<double>();
        if (!std::isfinite(l)) throw Error(str("distill_retina: loss became ", l, " in epoch ", epoch));
        loss.backward();
        opt.step();
        loss_sum += l * batch.size();
        seen += batch.size();
      }
      std::printf("epoch %lld: train loss %.4f over %lld images\n", static_cast<long long>(epoch + 1),
                  loss_sum / std::max<int64_t>(seen, 1), static_cast<long long>(seen));
    }

    model->eval();
    NoGradGuard no_grad;
    test.start_epoch(0);
    data::Batch batch;
    int64_t correct = 0, total = 0;
    while (test.next(batch)) {
      Tensor pred = ops::argmax(model->forward(Var(batch.images)), 1);
      const auto p = pred.to_vector<int64_t>();
      const auto y = batch.labels.to_vector<int64_t>();
      for (std::size_t i = 0; i < p.size(); ++i) correct += p[i] == y[i];
      total += static_cast<int64_t>(p.size());
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("smoke result: test accuracy %.3f on %lld images (chance 0.25), %.1f s\n",
                total ? double(correct) / double(total) : 0.0, static_cast<long long>(total), secs);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "distill_retina: error: %s\n", e.what());
    return 1;
  }
}
