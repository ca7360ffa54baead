// tests/dist_check.cpp — the data-parallel checks that need several processes, run by tests/dist_check.sh under
// `mpirun --allow-run-as-root --oversubscribe -np 2` (ctest: dist_*; built only with the retikd::mpi component).
// doctest cannot host them: each rank is its own process and every rank must reach the same verdict.
//
//   retikd_dist_check collectives    all-reduce (rank order, padding, dtypes), broadcast, barrier, agreement
//   retikd_dist_check equivalence    P ranks × N steps vs one process on the same global batches:
//                                     per-rank batch norm + SGD: bit-identical to one process that runs the P
//                                     shards as micro-batches and adds their gradients in rank order;
//                                     synchronised batch norm (a small smooth CNN), SGD and AdamW: within 1e-6
//                                     (relative, per tensor) of one process on the whole global batch;
//                                     replicas bit-identical; buckets start during backward
//   retikd_dist_check train [--fault kill|stall --fault-rank R --fault-step K]
//                                    a DDP loop of a few steps; the faulty rank kills or stops itself (the
//                                     survivor must end the job through its collective's timeout)
//   retikd_dist_check loop --out DIR [--fault kill --fault-rank R --fault-epoch E --fault-step K]
//                                    a resumable train::TrainerLoop run (checkpoints, sharded loader, gathered
//                                     validation); rank 0 writes DIR/final.safetensors at the end
// Exit status 0: every check passed on this rank; 1: a check failed (the message says which).
#include <signal.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "retikd/data/loader.hpp"
#include "retikd/data/source.hpp"
#include "retikd/data/transforms.hpp"
#include "retikd/dist/dist.hpp"
#include "retikd/io/safetensors.hpp"
#include "retikd/nn/models.hpp"
#include "retikd/ops/elementwise.hpp"
#include "retikd/ops/loss.hpp"
#include "retikd/ops/reduce.hpp"
#include "retikd/ops/shape.hpp"
#include "retikd/optim/optim.hpp"
#include "retikd/train/trainer_loop.hpp"

using namespace retikd;

namespace {

int g_failures = 0;

void check(bool ok, const std::string& what) {
  const dist::ProcessGroup& w = dist::world();
  std::printf("[rank %d/%d] %s: %s\n", w.rank(), w.size(), ok ? "ok" : "FAILED", what.c_str());
  std::fflush(stdout);
  if (!ok) ++g_failures;
}

std::string arg(int argc, char** argv, const std::string& name, const std::string& fallback) {
  for (int i = 2; i + 1 < argc; ++i)
    if (name == argv[i]) return argv[i + 1];
  return fallback;
}

// The student family at toy size: depthwise convolutions, batch norm and ReLU6 like the real one.
std::shared_ptr<nn::Model> make_model(uint64_t seed) {
  Generator gen(seed);
  nn::ModelOptions o;
  o.num_classes = 4;
  o.width_mult = 0.25;
  o.dropout = 0.0;  // no randomness inside the step: the comparison is about the arithmetic
  return nn::create_model("mobilenet_v2", o, gen);
}

// A small CNN with batch norm and smooth activations (SiLU): for comparisons within a tolerance. ReLU6 would
// make the float32 backward discontinuous — an activation within rounding of a kink lands on the other side
// and moves gradients by percents (docs/results.md, tools/fp32_kink_check.cpp) — so two runs that differ only
// by rounding could legitimately part ways after a step.
std::shared_ptr<nn::Sequential> make_smooth_model(uint64_t seed) {
  Generator gen(seed);
  auto m = std::make_shared<nn::Sequential>();
  const ops::Conv2dOptions down = ops::Conv2dOptions().with_stride(2).with_padding(1);
  m->push_back(std::make_shared<nn::Conv2d>(3, 16, 3, gen, down, false));
  m->push_back(std::make_shared<nn::BatchNorm2d>(16));
  m->push_back(std::make_shared<nn::SiLU>());
  m->push_back(std::make_shared<nn::Conv2d>(16, 32, 3, gen, down, false));
  m->push_back(std::make_shared<nn::BatchNorm2d>(32));
  m->push_back(std::make_shared<nn::SiLU>());
  m->push_back(std::make_shared<nn::AdaptiveAvgPool2d>(1, 1));
  m->push_back(std::make_shared<nn::Flatten>());
  m->push_back(std::make_shared<nn::Linear>(32, 4, gen));
  return m;
}

std::shared_ptr<data::Loader> make_loader(int64_t count, int64_t first, int64_t batch, int shards, int shard,
                                          bool shuffle) {
  data::SyntheticOptions so;
  so.size = 32;
  data::LoaderOptions lo;
  lo.batch_size = batch;
  lo.num_workers = 0;
  lo.seed = 3;
  lo.shuffle = shuffle;
  lo.transform = data::compose({data::make<data::RandomHorizontalFlip>(), data::make<data::Normalize>()});
  lo.num_shards = shards;
  lo.shard = shard;
  lo.shard_mode = shuffle ? data::ShardMode::train : data::ShardMode::cover;
  lo.warnings = nullptr;
  return std::make_shared<data::Loader>(std::make_shared<data::SyntheticSource>(count, 5, so, first), lo);
}

template <class M>
Var step_loss(M& m, const data::Batch& b) {
  return ops::cross_entropy(m.forward(Var(b.images)), b.labels);
}

// max over tensors of ||a − b|| / ||b|| and the number of elements that differ at all.
struct Difference {
  double relative = 0;
  int64_t differing = 0;
};
Difference compare(const std::vector<std::pair<std::string, Tensor>>& a,
                   const std::vector<std::pair<std::string, Tensor>>& b) {
  Difference d;
  for (std::size_t t = 0; t < a.size(); ++t) {
    const std::vector<double> x = a[t].second.to_vector<double>(), y = b[t].second.to_vector<double>();
    double num = 0, den = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      num += (x[i] - y[i]) * (x[i] - y[i]);
      den += y[i] * y[i];
      d.differing += x[i] != y[i] ? 1 : 0;
    }
    if (den > 0) d.relative = std::max(d.relative, std::sqrt(num / den));
    else if (num > 0) d.relative = std::max(d.relative, std::sqrt(num));
  }
  return d;
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

std::vector<std::pair<std::string, Tensor>> parameters_of(const nn::Module& m) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& p : m.named_parameters()) out.emplace_back(p.first, p.second.value().clone());
  return out;
}
std::vector<std::pair<std::string, Tensor>> buffers_of(nn::Module& m) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& b : m.named_buffers())
    if (is_floating(b.second->dtype())) out.emplace_back(b.first, b.second->clone());
  return out;
}

// Whether every rank holds rank 0's parameters bit for bit.
bool replicas_identical(dist::ProcessGroup& w, const nn::Module& m) {
  bool same = true;
  for (const auto& p : m.named_parameters()) {
    Tensor mine = p.second.value().contiguous().clone();
    Tensor lead = mine.clone();
    w.broadcast(lead, 0, "replica check");
    same = same && std::memcmp(mine.raw_data(), lead.raw_data(), mine.numel() * mine.element_size()) == 0;
  }
  return w.all_true(same, "replica check");
}

// ---- collectives ------------------------------------------------------------------------------------------------

void run_collectives() {
  dist::ProcessGroup& w = dist::world();
  const int P = w.size(), r = w.rank();
  // 7 elements: not a multiple of the ranks (the chunks are padded).
  for (DType t : {DType::float32, DType::float64, DType::int64}) {
    std::vector<double> v(7);
    for (int i = 0; i < 7; ++i) v[static_cast<std::size_t>(i)] = (r + 1) * 10 + i;
    Tensor x = Tensor::from_vector(v, {7}).to(t);
    w.all_reduce(x, "test all-reduce");
    const std::vector<double> got = x.to_vector<double>();
    bool ok = true;
    for (int i = 0; i < 7; ++i) {
      double want = 0;
      for (int q = 0; q < P; ++q) want += (q + 1) * 10 + i;
      ok = ok && got[static_cast<std::size_t>(i)] == want;
    }
    check(ok, std::string("all_reduce of 7 ") + dtype_name(t) + " values sums every rank's");
  }
  // Rank order: 1e8 + 1 − 1e8 in float depends on the order of the additions; every rank gets the same bits.
  {
    auto value = [](int q) { return q == 0 ? 1.0e8f : (q == 1 ? 1.0f : -1.0e8f); };
    Tensor x = Tensor::from_vector<float>({value(r), value(r), value(r)}, {3});
    w.all_reduce(x, "order");
    float want = value(0);
    for (int q = 1; q < P; ++q) want += value(q);
    const std::vector<float> got = x.to_vector<float>();
    check(got[0] == want && got[1] == want && got[2] == want, "all_reduce adds in rank order 0, 1, …");
  }
  {
    Tensor x = Tensor::full({5}, r == 0 ? 42.0 : -1.0);
    w.broadcast(x, 0, "test broadcast");
    check(x.to_vector<float>() == std::vector<float>(5, 42.0f), "broadcast from rank 0");
    std::vector<uint8_t> bytes;
    if (r == 0) bytes = {1, 2, 3, 250};
    w.broadcast_bytes(bytes, 0, "test bytes");
    check(bytes == std::vector<uint8_t>({1, 2, 3, 250}), "broadcast_bytes carries size and content");
  }
  w.barrier("test barrier");
  check(w.all_true(true, "agree") && !w.all_true(r != P - 1, "agree"), "all_true is false when one rank says no");
  {
    dist::RowCollector rows(5, 2);
    for (int64_t i = 0; i < 5; ++i)
      if (i % P == r) {
        const double v[2] = {static_cast<double>(i), -static_cast<double>(i)};
        rows.put(i, v);
      }
    const std::vector<double> all = rows.gather(w, "test rows");
    bool ok = all.size() == 10;
    for (int i = 0; ok && i < 5; ++i) ok = all[2 * i] == i && all[2 * i + 1] == -i;
    check(ok, "RowCollector assembles the ranks' rows in order");
  }
}

// ---- equivalence ------------------------------------------------------------------------------------------------

constexpr int64_t kSamples = 32, kLocalBatch = 4, kSteps = 3;

// Per-rank batch norm, SGD with momentum: the reference runs the P shards' batches of each step as
// micro-batches and adds their gradients in rank order, times 1/P — what the reducer computes.
void run_equivalence_per_rank_bn() {
  dist::ProcessGroup& w = dist::world();
  const int P = w.size(), r = w.rank();
  optim::SGDOptions so;
  so.lr = 0.05;
  so.momentum = 0.9;

  auto ref = make_model(11);
  ref->train();
  optim::SGD ref_opt(ref->parameters(), so);
  std::vector<std::shared_ptr<data::Loader>> shards;
  for (int q = 0; q < P; ++q) shards.push_back(make_loader(kSamples, 0, kLocalBatch, P, q, true));
  for (auto& l : shards) l->start_epoch(1);
  for (int64_t k = 0; k < kSteps; ++k) {
    std::vector<Tensor> total;
    for (int q = 0; q < P; ++q) {
      data::Batch b;
      shards[static_cast<std::size_t>(q)]->next(b);
      ref_opt.zero_grad();
      step_loss(*ref, b).backward();
      const std::vector<Var> ps = ref->parameters();
      for (std::size_t i = 0; i < ps.size(); ++i) {
        const Tensor g = ps[i].grad().clone();
        if (q == 0) total.push_back(g);
        else total[i] = ops::impl::add(total[i], g);
      }
    }
    std::vector<Var> ps = ref->parameters();
    for (std::size_t i = 0; i < ps.size(); ++i)
      ps[i].mutable_grad() = ops::impl::mul_scalar(total[i], 1.0 / static_cast<double>(P));
    ref_opt.step();
  }

  auto model = make_model(11);
  model->train();
  optim::SGD opt(model->parameters(), so);
  dist::GradientReducer::Options ro;
  ro.bucket_bytes = 16 << 10;  // many small buckets: most start while backward still runs
  dist::GradientReducer ddp(w, model->parameters(), ro);
  auto mine = make_loader(kSamples, 0, kLocalBatch, P, r, true);
  mine->start_epoch(1);
  for (int64_t k = 0; k < kSteps; ++k) {
    data::Batch b;
    mine->next(b);
    opt.zero_grad();
    step_loss(*model, b).backward();
    opt.step();
  }
  const Difference d = compare(parameters_of(*model), parameters_of(*ref));
  check(d.differing == 0, "per-rank BN + SGD, " + std::to_string(P) + " ranks x " + std::to_string(kSteps) +
                              " steps: bit-identical to one process with the shards as micro-batches (" +
                              std::to_string(d.differing) + " elements differ, relative " + number(d.relative) + ")");
  const dist::ReducerPassStats& st = ddp.last_pass();
  check(ddp.num_buckets() > 2 && st.buckets_started_in_backward * 2 >= static_cast<int>(ddp.num_buckets()),
        "gradient buckets start during backward (" + std::to_string(st.buckets_started_in_backward) + " of " +
            std::to_string(ddp.num_buckets()) + " before the walk ended)");
  check(replicas_identical(w, *model), "replicas bit-identical after training");
  dist::average_buffers(w, *model);
  bool buffers_same = true;
  for (const auto& b : buffers_of(*model)) {
    Tensor lead = b.second.clone();
    w.broadcast(lead, 0, "buffer check");
    buffers_same = buffers_same && std::memcmp(lead.raw_data(), b.second.raw_data(), b.second.numel() * 4) == 0;
  }
  check(w.all_true(buffers_same, "buffers"), "average_buffers leaves identical running statistics on every rank");
}

// Synchronised batch norm: the reference is one process on the whole global batch (the union of the ranks'
// batches), batch norm over all of it; SGD with momentum, then AdamW, each held to 1e-6 per tensor.
void run_equivalence_sync_bn(bool adamw) {
  dist::ProcessGroup& w = dist::world();
  const int P = w.size(), r = w.rank();
  auto make_opt = [&](nn::Module& m) -> std::unique_ptr<optim::Optimizer> {
    if (adamw) {
      optim::AdamWOptions ao;
      ao.lr = 2e-3;
      ao.weight_decay = 0.01;
      return std::unique_ptr<optim::Optimizer>(new optim::AdamW(m.parameters(), ao));
    }
    optim::SGDOptions so;
    so.lr = 0.05;
    so.momentum = 0.9;
    return std::unique_ptr<optim::Optimizer>(new optim::SGD(m.parameters(), so));
  };

  auto ref = make_smooth_model(12);
  ref->train();
  auto ref_opt = make_opt(*ref);
  std::vector<std::shared_ptr<data::Loader>> shards;
  for (int q = 0; q < P; ++q) shards.push_back(make_loader(kSamples, 0, kLocalBatch, P, q, true));
  for (auto& l : shards) l->start_epoch(1);
  for (int64_t k = 0; k < kSteps; ++k) {
    std::vector<Tensor> images, labels;
    for (int q = 0; q < P; ++q) {
      data::Batch b;
      shards[static_cast<std::size_t>(q)]->next(b);
      images.push_back(b.images);
      labels.push_back(b.labels);
    }
    data::Batch global;
    global.images = ops::impl::concat(images, 0);
    global.labels = ops::impl::concat(labels, 0);
    ref_opt->zero_grad();
    step_loss(*ref, global).backward();
    ref_opt->step();
  }

  auto model = make_smooth_model(12);
  model->train();
  auto opt = make_opt(*model);
  dist::GradientReducer ddp(w, model->parameters());
  {
    dist::SyncBatchNorm sync_bn(w);
    auto mine = make_loader(kSamples, 0, kLocalBatch, P, r, true);
    mine->start_epoch(1);
    for (int64_t k = 0; k < kSteps; ++k) {
      data::Batch b;
      mine->next(b);
      opt->zero_grad();
      step_loss(*model, b).backward();
      opt->step();
    }
  }
  const Difference d = compare(parameters_of(*model), parameters_of(*ref));
  check(d.relative <= 1e-6, std::string("synchronised BN + ") + (adamw ? "AdamW" : "SGD") + ", " + std::to_string(P) +
                                " ranks x " + std::to_string(kSteps) + " steps vs one process on the global batch: " +
                                "largest relative difference of a tensor " + number(d.relative) + " <= 1e-6 (" +
                                std::to_string(d.differing) + " elements not bit-identical)");
  const Difference db = compare(buffers_of(*model), buffers_of(*ref));
  check(db.relative <= 1e-6, "synchronised BN running statistics match the global batch's (relative " +
                                 number(db.relative) + ")");
  check(replicas_identical(w, *model), "replicas bit-identical after training");
}

// A parameter no rank uses keeps an undefined gradient (the optimizer then skips it, as in one process).
void run_unused_parameter() {
  dist::ProcessGroup& w = dist::world();
  nn::Module m;
  Var used = m.register_parameter("used", Tensor::full({3}, 2.0));
  Var unused = m.register_parameter("unused", Tensor::full({3}, 1.0));
  dist::GradientReducer ddp(w, m.parameters());
  Var loss = ops::mean(ops::mul(used, used));
  loss.backward();
  const std::vector<float> g = used.grad().to_vector<float>();
  check(!unused.grad().defined() && g.size() == 3 && std::fabs(g[0] - 4.0f / 3.0f) < 1e-6f,
        "an unused parameter keeps no gradient; the used one gets the mean");
}

// ---- faults -----------------------------------------------------------------------------------------------------

int run_train(int argc, char** argv) {
  dist::ProcessGroup& w = dist::world();
  const std::string fault = arg(argc, argv, "--fault", "none");
  const int fault_rank = std::atoi(arg(argc, argv, "--fault-rank", "1").c_str());
  const int fault_step = std::atoi(arg(argc, argv, "--fault-step", "2").c_str());
  const int steps = std::atoi(arg(argc, argv, "--steps", "4").c_str());
  auto model = make_model(13);
  model->train();
  optim::SGD opt(model->parameters(), optim::SGDOptions{});
  dist::GradientReducer ddp(w, model->parameters());
  auto loader = make_loader(kSamples * 2, 0, kLocalBatch, w.size(), w.rank(), true);
  loader->start_epoch(1);
  for (int k = 0; k < steps; ++k) {
    if (k == fault_step && w.rank() == fault_rank) {
      std::printf("[rank %d] simulating a %s at step %d\n", w.rank(), fault == "kill" ? "crash (SIGKILL)" :
                  "hang (SIGSTOP)", k);
      std::fflush(stdout);
      if (fault == "kill") ::raise(SIGKILL);
      if (fault == "stall") ::raise(SIGSTOP);
    }
    data::Batch b;
    loader->next(b);
    opt.zero_grad();
    step_loss(*model, b).backward();
    opt.step();
    std::printf("[rank %d] step %d done\n", w.rank(), k);
    std::fflush(stdout);
  }
  return 0;
}

int run_loop(int argc, char** argv) {
  dist::ProcessGroup& w = dist::world();
  const std::string out = arg(argc, argv, "--out", "");
  RETIKD_CHECK(!out.empty(), "loop: --out DIR is required");
  const std::string fault = arg(argc, argv, "--fault", "none");
  const int fault_rank = std::atoi(arg(argc, argv, "--fault-rank", "1").c_str());
  const int64_t fault_epoch = std::atoi(arg(argc, argv, "--fault-epoch", "2").c_str());
  const int64_t fault_step = std::atoi(arg(argc, argv, "--fault-step", "1").c_str());
  const int64_t epochs = 3, global_batch = 8;

  auto model = make_model(14);
  optim::AdamW opt(model->parameters(), optim::AdamWOptions{});
  auto train_loader = make_loader(48, 0, dist::local_batch_size(global_batch, w), w.size(), w.rank(), true);
  auto val_loader = make_loader(14, 1000, dist::local_batch_size(global_batch, w), w.size(), w.rank(), false);
  const int64_t steps = train_loader->num_batches();
  optim::WarmupCosineSchedule sched(opt, steps, epochs * steps);
  dist::GradientReducer ddp(w, model->parameters());
  train::TrainState state;
  state.add_module("model", *model);
  state.add_optimizer("opt", opt);
  state.add_schedule("lr", sched);
  train::LoopOptions lo;
  lo.stage = "dist_check";
  lo.run_dir = out;
  lo.epochs = epochs;
  lo.existing = train::ExistingRun::resume;
  lo.out = nullptr;
  lo.config = {{"model", "mobilenet_v2 x0.25"}, {"batch", std::to_string(global_batch)}};
  train::TrainerLoop loop(lo, state);
  loop.run(
      [&](int64_t epoch) {
        model->train();
        train_loader->start_epoch(epoch);
        data::Batch b;
        double sum = 0;
        int64_t n = 0, k = 0;
        while (train_loader->next(b)) {
          if (fault == "kill" && epoch == fault_epoch && k == fault_step && w.rank() == fault_rank) {
            std::printf("[rank %d] simulating a crash (SIGKILL) in epoch %lld step %lld\n", w.rank(),
                        static_cast<long long>(epoch), static_cast<long long>(k));
            std::fflush(stdout);
            ::raise(SIGKILL);
          }
          opt.zero_grad();
          Var loss = step_loss(*model, b);
          const double l = loop.step_done(loss.item<double>());
          loss.backward();
          opt.step();
          sched.step();
          sum += l * static_cast<double>(b.size());
          n += b.size();
          ++k;
        }
        train::EpochStats st;
        st.loss = sum / static_cast<double>(n);
        st.samples = n;
        return st;
      },
      [&](int64_t) {
        model->eval();
        NoGradGuard ng;
        val_loader->start_epoch(0);
        dist::RowCollector correct(val_loader->size(), 1);
        data::Batch b;
        while (val_loader->next(b)) {
          const std::vector<int64_t> pred = ops::argmax(model->forward(Var(b.images)).value(), 1).to_vector<int64_t>();
          const std::vector<int64_t> y = b.labels.to_vector<int64_t>();
          for (int64_t i = 0; i < b.size(); ++i) {
            const double c = pred[static_cast<std::size_t>(i)] == y[static_cast<std::size_t>(i)] ? 1.0 : 0.0;
            correct.put(b.position + i, &c);
          }
        }
        double hits = 0;
        for (double c : correct.gather(w, "validation")) hits += c;
        return train::EvalMetrics{{"accuracy", hits / static_cast<double>(val_loader->size())}};
      });
  loop.load_best(state);
  check(replicas_identical(w, *model), "replicas identical after load_best");
  if (w.rank() == 0) io::save_module(out + "/final.safetensors", *model);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::string mode = argc > 1 ? argv[1] : "";
  dist::Session session(dist::SessionOptions{true});
  try {
    if (mode == "collectives") {
      run_collectives();
    } else if (mode == "equivalence") {
      check(dist::world().size() > 1, "runs with more than one rank (mpirun -np 2)");
      run_equivalence_per_rank_bn();
      run_equivalence_sync_bn(false);
      run_equivalence_sync_bn(true);
      run_unused_parameter();
    } else if (mode == "train") {
      return run_train(argc, argv);
    } else if (mode == "loop") {
      run_loop(argc, argv);
    } else {
      std::fprintf(stderr, "usage: retikd_dist_check collectives|equivalence|train|loop [options]\n");
      return 2;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[rank %d] error: %s\n", dist::world().rank(), e.what());
    session.abort(1);
    return 1;
  }
  return g_failures == 0 ? 0 : 1;
}
