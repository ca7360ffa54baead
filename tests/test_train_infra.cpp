// tests/test_train_infra.cpp — training infrastructure: checkpoint round trip (modules with buffers, SGD and
// AdamW state, schedule, generators, counters, metadata), atomic writes that fail midway, corrupt and
// mismatched checkpoints, the JSON-lines log across resumes, the NaN stop, and the resume equivalence a
// killed run must reach: 4 epochs straight == 2 epochs + kill + resume, bit for bit. Data parallelism in one
// process: the loop's data-parallel path under a mirrored two-rank group, the one-process group, batch shares.
// (Real multi-process runs: tests/dist_check.cpp under mpirun.)
#include <doctest/doctest.h>


#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/core/random.hpp"
#include "retikd/dist/data_parallel.hpp"
#include "retikd/ops/reduce.hpp"
#include "retikd/io/safetensors.hpp"
#include "retikd/metrics/classification.hpp"
#include "retikd/nn/layers.hpp"
#include "retikd/ops/loss.hpp"
#include "retikd/optim/optim.hpp"
#include "retikd/train/checkpoint.hpp"
#include "retikd/train/run_log.hpp"
#include "retikd/train/trainer_loop.hpp"
#include "test_util.hpp"

using namespace retikd;
using test::read_text;
using test::TempDir;
using test::write_text;

namespace {



// Bit-for-bit equality of two tensors (dtype, shape and bytes).
bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  const Tensor x = a.contiguous(), y = b.contiguous();
  return std::memcmp(x.raw_data(), y.raw_data(), static_cast<std::size_t>(x.numel()) * x.element_size()) == 0;
}
bool same_state(const nn::Module& a, const nn::Module& b) {
  const auto sa = a.state_dict(), sb = b.state_dict();
  if (sa.size() != sb.size()) return false;
  for (std::size_t i = 0; i < sa.size(); ++i)
    if (sa[i].first != sb[i].first || !same_bits(sa[i].second, sb[i].second)) return false;
  return true;
}

// Conv → BatchNorm (buffers: running stats and an int64 counter) → ReLU → Flatten → Dropout (a NoiseSource
// stream) → Linear. Input (N, 2, 4, 4), 3 classes.
std::shared_ptr<nn::Sequential> tiny_model(Generator& init, const nn::NoiseSource& noise) {
  auto m = std::make_shared<nn::Sequential>();
  m->push_back(std::make_shared<nn::Conv2d>(2, 4, 3, init, ops::Conv2dOptions().with_padding(1)));
  m->push_back(std::make_shared<nn::BatchNorm2d>(4));
  m->push_back(std::make_shared<nn::ReLU>());
  m->push_back(std::make_shared<nn::Flatten>());
  m->push_back(std::make_shared<nn::Dropout>(0.2, noise));
  m->push_back(std::make_shared<nn::Linear>(64, 3, init));
  return m;
}

// A fixed little data set: class c has a bright 2x2 patch at a class-specific place plus noise.
struct TinyData {
  std::vector<float> x;  // (N, 2, 4, 4)
  std::vector<int64_t> y;
  int64_t n = 0;
  TinyData(int64_t count, uint64_t seed) : n(count) {
    Generator g(seed);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t c = i % 3;
      y.push_back(c);
      for (int64_t ch = 0; ch < 2; ++ch)
        for (int64_t r = 0; r < 4; ++r)
          for (int64_t q = 0; q < 4; ++q) {
            const bool patch = r / 2 == (c == 2 ? 1 : 0) && q / 2 == (c == 1 ? 1 : 0);
            x.push_back(static_cast<float>((patch ? 1.0 : 0.0) + 0.3 * g.normal()));
          }
    }
  }
  Tensor batch_x(const std::vector<int64_t>& idx) const {
    std::vector<float> out;
    for (int64_t i : idx) out.insert(out.end(), x.begin() + i * 32, x.begin() + (i + 1) * 32);
    return Tensor::from_vector(out, {static_cast<int64_t>(idx.size()), 2, 4, 4});
  }
  Tensor batch_y(const std::vector<int64_t>& idx) const {
    std::vector<int64_t> out;
    for (int64_t i : idx) out.push_back(y[static_cast<std::size_t>(i)]);
    return Tensor::from_vector(out, {static_cast<int64_t>(idx.size())});
  }
};

struct SimulatedKill {};

struct RunSpec {
  RunSpec(std::string d, int64_t e, train::ExistingRun x = train::ExistingRun::fail)
      : dir(std::move(d)), epochs(e), existing(x) {}
  std::string dir;
  int64_t epochs = 4;
  train::ExistingRun existing = train::ExistingRun::fail;
  int64_t kill_in_epoch = -1;  // throw SimulatedKill after the first step of this epoch
  int64_t nan_in_epoch = -1;   // the loss of step 2 of this epoch becomes NaN
  bool shuffle_from_startup_stream = false;  // breaks the resume contract on purpose
  std::map<std::string, std::string> config = {{"lr", "0.01"}, {"seed", "5"}};
  std::function<void(int64_t)> on_epoch_start;
  std::FILE* out = nullptr;
  dist::ProcessGroup* group = nullptr;  // the loop's ranks (nullptr: one process)
};

// One training run, everything built from the seed as a real program would at start-up.
struct TinyRun {
  const uint64_t seed = 5;
  Generator init{seed};
  nn::NoiseSource noise = nn::make_noise(seed + 1);
  std::shared_ptr<nn::Sequential> model = tiny_model(init, noise);
  optim::AdamW opt{groups(*model), optim::AdamWOptions{}};
  optim::WarmupCosineSchedule sched{opt, 2, 12, 0.05};
  Generator aug{seed + 2};      // per-step input noise: a stream that continues across epochs
  Generator startup{seed + 3};  // only used when breaking the contract
  train::TrainState state;
  TinyData train_data{24, 11}, val_data{12, 12};
  int64_t train_calls = 0;

  static std::vector<optim::ParamGroup> groups(const nn::Sequential& m) {
    std::vector<optim::ParamGroup> g(3);
    g[0].params = m.child("0")->parameters(), g[0].lr = 0.01, g[0].weight_decay = 0.01, g[0].name = "conv";
    g[1].params = m.child("5")->parameters(), g[1].lr = 0.02, g[1].name = "head";
    g[2].params = m.child("1")->parameters(), g[2].lr = 0.01, g[2].name = "bn";
    return g;
  }

  TinyRun() {
    state.add_module("model", *model);
    state.add_optimizer("adamw", opt);
    state.add_schedule("lr", sched);
    state.add_generator("aug", aug);
    state.add_generator("dropout", *noise);
  }

  train::LoopResult run(const RunSpec& spec) {
    train::LoopOptions o;
    o.stage = "tiny";
    o.run_dir = spec.dir;
    o.epochs = spec.epochs;
    o.select_metric = "loss";
    o.maximize = false;
    o.existing = spec.existing;
    o.config = spec.config;
    o.out = spec.out;
    o.steps_per_epoch = 3;
    o.group = spec.group;
    train::TrainerLoop loop(o, state);
    auto train_one_epoch = [&](int64_t epoch) {
      ++train_calls;
      if (spec.on_epoch_start) spec.on_epoch_start(epoch);
      model->train();
      // The shuffle of epoch e comes from (seed, e): the contract.
      Generator shuffle = Generator::derive(seed, static_cast<uint64_t>(epoch));
      Generator& order_gen = spec.shuffle_from_startup_stream ? startup : shuffle;
      std::vector<int64_t> order(static_cast<std::size_t>(train_data.n));
      for (int64_t i = 0; i < train_data.n; ++i) order[static_cast<std::size_t>(i)] = i;
      for (std::size_t i = order.size() - 1; i > 0; --i) std::swap(order[i], order[order_gen.below(i + 1)]);
      train::EpochStats stats;
      double loss_sum = 0;
      int64_t correct = 0;
      for (int64_t b = 0; b < 3; ++b) {
        std::vector<int64_t> idx(order.begin() + b * 8, order.begin() + (b + 1) * 8);
        Tensor x = train_data.batch_x(idx);
        float* px = x.data<float>();
        for (int64_t k = 0; k < x.numel(); ++k) px[k] += static_cast<float>(0.05 * aug.normal());
        if (epoch == spec.nan_in_epoch && b == 1) px[3] = std::nanf("");
        opt.zero_grad();
        Var logits = model->forward(Var(x));
        Var loss = ops::cross_entropy(logits, train_data.batch_y(idx));
        const double lv = loss.item<double>();
        loop.step_done(lv);  // throws NonFiniteLossError before the step can poison the weights
        loss.backward();
        opt.step();
        sched.step();
        ++state.global_step;
        loss_sum += lv;
        const auto pred = metrics::argmax_rows(logits.value().to_vector<double>(), 3);
        for (std::size_t i = 0; i < idx.size(); ++i) correct += pred[i] == train_data.y[static_cast<std::size_t>(idx[i])];
        if (epoch == spec.kill_in_epoch) throw SimulatedKill{};
      }
      stats.loss = loss_sum / 3;
      stats.accuracy = static_cast<double>(correct) / 24;
      stats.samples = 24;
      return stats;
    };
    auto evaluate = [&](int64_t) {
      model->eval();
      NoGradGuard no_grad;
      std::vector<int64_t> all(static_cast<std::size_t>(val_data.n));
      for (int64_t i = 0; i < val_data.n; ++i) all[static_cast<std::size_t>(i)] = i;
      Var logits = model->forward(Var(val_data.batch_x(all)));
      const double loss = ops::cross_entropy(logits, val_data.batch_y(all)).item<double>();
      const auto r = metrics::evaluate_classification(val_data.y, logits.value().to_vector<double>(), 3,
                                                      metrics::ScoreKind::logits, {"a", "b", "c"});
      model->train();
      return train::EvalMetrics{{"loss", loss}, {"accuracy", r.accuracy}, {"macro_f1", r.macro_f1}};
    };
    return loop.run(train_one_epoch, evaluate);
  }
};

std::vector<int64_t> logged_epochs(const std::string& log_path, bool include_events = false) {
  std::vector<int64_t> out;
  for (const auto& r : train::read_log_file(log_path).records)
    if (include_events || !train::is_event_record(r)) out.push_back(r.at("epoch").as_int());
  return out;
}

}  // namespace

// ---- checkpoints -------------------------------------------------------------------------------------------------

TEST_CASE("checkpoint: round trip restores modules, SGD and AdamW state, schedule, generators, counters") {
  TempDir dir("train");
  const std::string path = dir.path() + "/ck.safetensors";
  struct Setup {
    Generator init;
    nn::NoiseSource noise;
    std::shared_ptr<nn::Sequential> model;
    std::shared_ptr<nn::Linear> head2;
    optim::SGD sgd;
    optim::AdamW adamw;
    optim::WarmupCosineSchedule sched;
    Generator data;
    int64_t counter = 0;
    train::TrainState state;
    explicit Setup(uint64_t seed)
        : init(seed), noise(nn::make_noise(seed + 1)), model(tiny_model(init, noise)),
          head2(std::make_shared<nn::Linear>(3, 2, init)),
          sgd(model->parameters(), optim::SGDOptions{0.05, 0.9, 0.0, 1e-4, true}),
          adamw({{head2->parameters(), 1e-2, 0.0, "a"}}, optim::AdamWOptions{}), sched(sgd, 3, 10), data(seed + 2) {
      state.add_module("student", *model);
      state.add_module("head2", *head2);
      state.add_optimizer("sgd", sgd);
      state.add_optimizer("adamw", adamw);
      state.add_schedule("cosine", sched);
      state.add_generator("data", data);
      state.add_generator("dropout", *noise);
      state.add_counter("views", counter);
    }
    void step() {
      Tensor x = randn({4, 2, 4, 4}, data);
      sgd.zero_grad();
      adamw.zero_grad();
      Var logits = head2->forward(model->forward(Var(x)));
      Var loss = ops::cross_entropy(logits, Tensor::from_vector<int64_t>({0, 1, 1, 0}, {4}));
      loss.backward();
      sgd.step();
      adamw.step();
      sched.step();
      data.normal();  // leaves a spare normal in the generator state
      ++counter;
    }
  };
  Setup a(1);
  for (int i = 0; i < 3; ++i) a.step();
  a.state.epoch = 7;
  a.state.global_step = 3;
  a.state.best_metric = 0.8125;
  a.state.best_epoch = 6;
  a.state.best_metric_name = "val_accuracy";
  a.state.metadata = {{"config.lr", "0.05"}, {"note", "quote \" and ünïcode"}};
  train::save_checkpoint(path, a.state);

  Setup b(99);  // different initialisation, fresh optimizers and streams
  CHECK_FALSE(same_state(*a.model, *b.model));
  const train::CheckpointInfo info = train::load_checkpoint(path, b.state);
  CHECK(info.epoch == 7);
  CHECK(b.state.epoch == 7);
  CHECK(b.state.global_step == 3);
  CHECK(b.state.best_metric == 0.8125);
  CHECK(b.state.best_epoch == 6);
  CHECK(b.state.best_metric_name == "val_accuracy");
  CHECK(b.state.metadata == a.state.metadata);
  CHECK(same_state(*a.model, *b.model));  // BatchNorm buffers and num_batches_tracked (int64) included
  CHECK(same_state(*a.head2, *b.head2));
  CHECK(b.model->child("1")->state_dict()[4].second.item<int64_t>() == 3);
  auto same_optimizer = [](const optim::Optimizer& oa, const optim::Optimizer& ob) {
    const auto sa = oa.state(), sb = ob.state();
    REQUIRE(sa.size() == sb.size());
    for (const auto& kv : sa) CHECK(same_bits(kv.second, sb.at(kv.first)));
    CHECK(ob.step_count() == 3);
    CHECK(ob.groups()[0].lr == oa.groups()[0].lr);
  };
  same_optimizer(a.sgd, b.sgd);
  same_optimizer(a.adamw, b.adamw);
  CHECK(a.sgd.state().count("0.momentum_buffer") == 1);
  CHECK(a.adamw.state().count("1.exp_avg_sq") == 1);
  CHECK(b.sched.current_step() == 3);
  CHECK(b.counter == 3);
  CHECK(b.data.state() == a.data.state());  // spare normal included
  CHECK(b.noise->state() == a.noise->state());
  // The restored run continues exactly as the original.
  a.step();
  b.step();
  CHECK(same_state(*a.model, *b.model));
  CHECK(same_state(*a.head2, *b.head2));

  // The header alone.
  const train::CheckpointInfo h = train::read_checkpoint_info(path);
  CHECK(h.epoch == 7);
  CHECK(h.sections.at("module") == std::vector<std::string>{"student", "head2"});
  CHECK(h.metadata.at("note") == "quote \" and ünïcode");
  // Module weights keep their torchvision names after the prefix.
  const auto raw = io::load_safetensors(path);
  CHECK(raw.count("module/student/1.running_var") == 1);
  CHECK(raw.count("module/student/5.weight") == 1);
  // Reserved metadata keys are refused.
  a.state.metadata["retikd.epoch"] = "3";
  CHECK_THROWS_WITH_AS(train::save_checkpoint(path, a.state), doctest::Contains("reserved"), Error);
}

TEST_CASE("checkpoint: a write that fails midway leaves the previous checkpoint intact") {
  TempDir dir("train");
  TinyRun run;
  train::CheckpointManager mgr(dir.path(), "val_loss", false);
  run.state.epoch = 1;
  CHECK(mgr.save_epoch(run.state, 0.9));  // first epoch: best
  const std::string best_before = read_text(mgr.best_path());
  const std::string before = read_text(mgr.last_path());
  const auto weights_before = run.model->state_dict();
  std::vector<Tensor> copies;
  for (const auto& nt : weights_before) copies.push_back(nt.second.clone());

  // Change everything, then fail after the first 64 bytes of the new file reached the disk.
  for (auto& p : run.model->parameters()) p.mutable_value().fill_(0.5);
  run.state.epoch = 2;
  train::CheckpointWriteOptions fault;
  fault.chunk_bytes = 64;
  fault.on_progress = [](uint64_t written, uint64_t total) {
    CHECK(written < total);
    throw std::runtime_error("injected fault: disk full");
  };
  CHECK_THROWS_AS(mgr.save_epoch(run.state, 0.95, fault), std::runtime_error);  // not best: last only
  CHECK(read_text(mgr.last_path()) == before);
  CHECK_THROWS_AS(mgr.save_epoch(run.state, 0.5, fault), std::runtime_error);  // best: best, then last
  CHECK(read_text(mgr.last_path()) == before);
  CHECK(read_text(mgr.best_path()) == best_before);
  // No temporary is left behind.
  for (const auto& f : dir.files()) CHECK(f.find(".tmp.") == std::string::npos);

  // The previous checkpoint loads and restores the epoch-1 weights.
  TinyRun fresh;
  const auto info = mgr.resume(fresh.state);
  CHECK(info.epoch == 1);
  const auto sd = fresh.model->state_dict();
  for (std::size_t i = 0; i < sd.size(); ++i) CHECK(same_bits(sd[i].second, copies[i]));

  // A temporary left by a process that died mid-write is cleaned up by the next manager.
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  const std::string stale = dir.path() + "/last.safetensors.tmp." + std::to_string(child) + ".0";
  write_text(stale, "half a checkpoint");
  train::CheckpointManager again(dir.path(), "val_loss", false);
  CHECK(::access(stale.c_str(), F_OK) != 0);
  CHECK(read_text(again.last_path()) == before);
}

TEST_CASE("checkpoint: corrupt, foreign and mismatched files give clear errors and change nothing") {
  TempDir dir("train");
  const std::string path = dir.path() + "/last.safetensors";
  TinyRun run;
  run.state.epoch = 3;
  train::save_checkpoint(path, run.state);
  const std::string good = read_text(path);

  TinyRun target;
  auto expect_unchanged = [&] { CHECK_FALSE(same_state(*run.model, *target.model)); };
  // Different initial weights, so a partial load would show.
  for (auto& p : target.model->parameters()) p.mutable_value().fill_(0.25);
  const auto target_before = target.model->state_dict();
  std::vector<Tensor> target_copies;
  for (const auto& nt : target_before) target_copies.push_back(nt.second.clone());
  auto target_untouched = [&] {
    const auto sd = target.model->state_dict();
    for (std::size_t i = 0; i < sd.size(); ++i) CHECK(same_bits(sd[i].second, target_copies[i]));
    CHECK(target.state.epoch == 0);
  };

  SUBCASE("truncated") {
    write_text(path, good.substr(0, good.size() / 2));
    CHECK_THROWS_WITH_AS(train::load_checkpoint(path, target.state), doctest::Contains(path.c_str()), train::CheckpointError);
    CHECK_THROWS_WITH_AS(train::load_checkpoint(path, target.state), doctest::Contains("corrupt"), train::CheckpointError);
    target_untouched();
  }
  SUBCASE("garbage header") {
    std::string bad = good;
    bad[12] = '\x01';
    write_text(path, bad);
    CHECK_THROWS_WITH_AS(train::read_checkpoint_info(path), doctest::Contains(path.c_str()), train::CheckpointError);
    target_untouched();
  }
  SUBCASE("a plain weights file") {
    io::save_module(path, *run.model);
    CHECK_THROWS_WITH_AS(train::load_checkpoint(path, target.state),
                         doctest::Contains("not a retikd training checkpoint"), train::CheckpointError);
    target_untouched();
  }
  SUBCASE("a different model") {
    Generator g(1);
    auto other = std::make_shared<nn::Sequential>();
    other->push_back(std::make_shared<nn::Linear>(64, 5, g));
    train::TrainState s;
    s.add_module("model", *other);
    s.add_optimizer("adamw", target.opt);
    s.add_schedule("lr", target.sched);
    s.add_generator("aug", target.aug);
    s.add_generator("dropout", *target.noise);
    try {
      train::load_checkpoint(path, s);
      FAIL("no error");
    } catch (const train::CheckpointError& e) {
      const std::string msg = e.what();
      CHECK(e.path() == path);
      CHECK(msg.find("checkpoint: " + path) == 0);
      CHECK(msg.find("\"0.weight\" is (4, 2, 3, 3) in the file but (5, 64) in the model") != std::string::npos);
      CHECK(msg.find("unexpected \"5.bias\"") != std::string::npos);
      CHECK(msg.find("\"0.bias\"") != std::string::npos);
    }
    target_untouched();
  }
  SUBCASE("sections registered under other names") {
    train::TrainState s;
    s.add_module("student", *target.model);
    s.add_optimizer("adamw", target.opt);
    s.add_schedule("lr", target.sched);
    s.add_generator("aug", target.aug);
    try {
      train::load_checkpoint(path, s);
      FAIL("no error");
    } catch (const train::CheckpointError& e) {
      const std::string msg = e.what();
      CHECK(msg.find("module \"student\" is registered but not in the file") != std::string::npos);
      CHECK(msg.find("module \"model\" is in the file but not registered") != std::string::npos);
      CHECK(msg.find("rng \"dropout\" is in the file but not registered") != std::string::npos);
      CHECK(msg.find("unexpected tensor") == std::string::npos);  // no noise about the tensors of those
    }
    target_untouched();
  }
  SUBCASE("an optimizer over other parameters") {
    TinyRun trained;
    trained.run({dir.path() + "/r", 1});
    Generator g(2);
    nn::Linear small(3, 3, g);
    optim::AdamW other_opt({{small.parameters(), 0.1, 0, "x"}}, optim::AdamWOptions{});
    train::TrainState s;
    s.add_module("model", *target.model);
    s.add_optimizer("adamw", other_opt);
    s.add_schedule("lr", target.sched);
    s.add_generator("aug", target.aug);
    s.add_generator("dropout", *target.noise);
    CHECK_THROWS_WITH_AS(train::load_checkpoint(dir.path() + "/r/last.safetensors", s),
                         doctest::Contains("the file has 3 parameter groups, the optimizer 1"), train::CheckpointError);
    target_untouched();
  }
  expect_unchanged();
}

// ---- the run log and the NaN guard ---------------------------------------------------------------------------

TEST_CASE("run log: appends, refuses repeated epochs, trims to the checkpoint on reopen") {
  TempDir dir("train");
  const std::string path = dir.path() + "/log.jsonl";
  {
    train::RunLog log(path, 0);
    for (int e = 1; e <= 3; ++e) {
      io::Json r = io::Json::object();
      r["epoch"] = e;
      r["train_loss"] = 1.0 / e;
      log.append(r);
    }
    io::Json dup = io::Json::object();
    dup["epoch"] = 3;
    CHECK_THROWS_WITH_AS(log.append(dup), doctest::Contains("already logged"), Error);
    CHECK_THROWS_AS(log.append(io::Json::object()), Error);
    CHECK(log.last_epoch() == 3);
  }
  CHECK(logged_epochs(path) == std::vector<int64_t>{1, 2, 3});
  // A torn last line (killed mid-write) and lines past the checkpoint are dropped on reopen.
  {
    std::ofstream out(path, std::ios::app);
    out << "{\"epoch\": 4, \"train_lo";
  }
  CHECK(train::read_log_file(path).torn_tail);
  {
    train::RunLog log(path, 2);
    CHECK(log.last_epoch() == 2);
    io::Json r = io::Json::object();
    r["epoch"] = 3;
    r["train_loss"] = 0.3;
    log.append(r);
  }
  CHECK(logged_epochs(path) == std::vector<int64_t>{1, 2, 3});
  CHECK_FALSE(train::read_log_file(path).torn_tail);
  const auto curves = train::read_training_curves(path);
  CHECK(curves.train_loss.back() == 0.3);
  CHECK(std::isnan(curves.val_loss.front()));
  // A bad line that is not the last is an error naming the file and line.
  write_text(path, "{\"epoch\": 1}\nnot json\n{\"epoch\": 2}\n");
  CHECK_THROWS_WITH_AS(train::read_log_file(path), doctest::Contains("line 2"), Error);
}

TEST_CASE("non-finite loss: the error names stage, epoch, step and value") {
  CHECK_NOTHROW(train::check_finite_loss(0.5, "teacher", 1, 0));
  try {
    train::check_finite_loss(std::nan(""), "student_kd", 3, 17);
    FAIL("no error");
  } catch (const train::NonFiniteLossError& e) {
    CHECK(std::string(e.what()) == "non-finite loss in stage 'student_kd', epoch 3, step 17: loss = nan.");
    CHECK(e.stage() == "student_kd");
    CHECK(e.epoch() == 3);
    CHECK(e.step() == 17);
  }
  CHECK_THROWS_WITH_AS(train::check_finite_loss(-HUGE_VAL, "s", 1, -1, "discriminator loss"),
                       doctest::Contains("discriminator loss = -inf"), train::NonFiniteLossError);
  CHECK_THROWS_AS(train::check_finite_loss(Tensor::from_vector<float>({1.f, INFINITY}, {2}), "s", 1, 2),
                  train::NonFiniteLossError);
}

// ---- the loop ------------------------------------------------------------------------------------------------

TEST_CASE("trainer loop: killed after epoch 2 and resumed ends bit-identical to 4 straight epochs") {
  TempDir dir("train");
  TinyRun straight;
  const auto rs = straight.run({dir.path() + "/straight", 4});
  CHECK(rs.last_epoch == 4);
  CHECK(rs.first_epoch == 1);
  CHECK_FALSE(rs.resumed);
  CHECK(logged_epochs(rs.log_path) == std::vector<int64_t>{1, 2, 3, 4});

  RunSpec killed{dir.path() + "/killed", 4};
  killed.kill_in_epoch = 3;
  {
    TinyRun first;
    CHECK_THROWS_AS(first.run(killed), SimulatedKill);
    CHECK(train::read_checkpoint_info(killed.dir + "/last.safetensors").epoch == 2);
  }
  // "Crash" between the log line of epoch 3 and its checkpoint: a line the resumed run must drop.
  {
    std::ofstream out(killed.dir + "/log.jsonl", std::ios::app);
    out << "{\"stage\":\"tiny\",\"epoch\":3,\"train_loss\":0.5}\n{\"epoch\":4,\"tr";
  }
  TinyRun resumed;
  killed.kill_in_epoch = -1;
  killed.existing = train::ExistingRun::resume;
  const auto rr = resumed.run(killed);
  CHECK(rr.resumed);
  CHECK(rr.first_epoch == 3);
  CHECK(rr.last_epoch == 4);
  CHECK(resumed.train_calls == 2);

  CHECK(same_state(*straight.model, *resumed.model));
  const auto sa = straight.opt.state(), sb = resumed.opt.state();
  for (const auto& kv : sa) CHECK(same_bits(kv.second, sb.at(kv.first)));
  CHECK(straight.aug.state() == resumed.aug.state());
  CHECK(straight.noise->state() == resumed.noise->state());
  CHECK(straight.sched.current_step() == resumed.sched.current_step());
  // The whole checkpoint files agree byte for byte, best selection included.
  CHECK(read_text(rs.last_path) == read_text(rr.last_path));
  CHECK(read_text(rs.best_path) == read_text(rr.best_path));
  CHECK(rr.best_epoch == rs.best_epoch);
  CHECK(rr.best_metric == rs.best_metric);
  // The log has each epoch once, with the same numbers as the straight run (timings aside).
  CHECK(logged_epochs(rr.log_path, true) == std::vector<int64_t>{1, 2, 3, 4});
  const auto la = train::read_log_file(rs.log_path).records, lb = train::read_log_file(rr.log_path).records;
  for (std::size_t i = 0; i < 4; ++i) {
    CHECK(la[i].at("train_loss").as_number() == lb[i].at("train_loss").as_number());
    CHECK(la[i].at("val_loss").as_number() == lb[i].at("val_loss").as_number());
    CHECK(la[i].at("lr_adamw").as_number() == lb[i].at("lr_adamw").as_number());
    CHECK(la[i].at("best").as_bool() == lb[i].at("best").as_bool());
  }

  // The contract matters: drawing the shuffle from a stream made at start-up (not registered, not derived
  // from the epoch) makes the resumed run diverge.
  RunSpec bad_straight{dir.path() + "/bad_straight", 4};
  bad_straight.shuffle_from_startup_stream = true;
  TinyRun bs;
  bs.run(bad_straight);
  RunSpec bad{dir.path() + "/bad", 4};
  bad.shuffle_from_startup_stream = true;
  bad.kill_in_epoch = 3;
  {
    TinyRun first;
    CHECK_THROWS_AS(first.run(bad), SimulatedKill);
  }
  bad.kill_in_epoch = -1;
  bad.existing = train::ExistingRun::resume;
  TinyRun br;
  br.run(bad);
  CHECK_FALSE(same_state(*bs.model, *br.model));

  // Resuming a finished run does nothing; a changed configuration is refused; an existing run is not
  // overwritten by accident; restart starts over.
  TinyRun again;
  RunSpec done{dir.path() + "/straight", 4, train::ExistingRun::resume};
  const auto rd = again.run(done);
  CHECK(rd.already_complete);
  CHECK(again.train_calls == 0);
  CHECK(same_state(*again.model, *straight.model));  // the state is loaded all the same
  RunSpec changed = done;
  changed.config["lr"] = "0.02";
  TinyRun c;
  CHECK_THROWS_WITH_AS(c.run(changed), doctest::Contains("lr: \"0.01\" in the checkpoint, now \"0.02\""),
                       train::CheckpointError);
  TinyRun f;
  CHECK_THROWS_WITH_AS(f.run({dir.path() + "/straight", 4}), doctest::Contains("already holds a checkpoint (epoch 4"),
                       Error);
  TinyRun r;
  RunSpec restart{dir.path() + "/straight", 1, train::ExistingRun::restart};
  std::FILE* console = std::tmpfile();
  REQUIRE(console != nullptr);
  restart.out = console;
  const auto rrs = r.run(restart);
  CHECK(rrs.last_epoch == 1);
  CHECK(logged_epochs(rrs.log_path) == std::vector<int64_t>{1});
  // The console shows the progress bar's summary and the epoch line.
  std::rewind(console);
  std::string text;
  for (int ch; (ch = std::fgetc(console)) != EOF;) text += static_cast<char>(ch);
  std::fclose(console);
  CHECK(text.find("tiny epoch 1/1: 3 batch in") != std::string::npos);
  CHECK(text.find("tiny epoch 1/1: train loss ") != std::string::npos);
  CHECK(text.find("| val accuracy ") != std::string::npos);
  CHECK(text.find("| best") != std::string::npos);
}

TEST_CASE("trainer loop: NaN stops the run and keeps the last good checkpoint untouched") {
  TempDir dir("train");
  RunSpec spec{dir.path() + "/nan", 4};
  spec.nan_in_epoch = 3;
  std::string last_before, best_before;
  spec.on_epoch_start = [&](int64_t epoch) {
    if (epoch == 3) {
      last_before = read_text(spec.dir + "/last.safetensors");
      best_before = read_text(spec.dir + "/best.safetensors");
    }
  };
  {
    TinyRun run;
    try {
      run.run(spec);
      FAIL("no error");
    } catch (const train::NonFiniteLossError& e) {
      const std::string msg = e.what();
      CHECK(e.stage() == "tiny");
      CHECK(e.epoch() == 3);
      CHECK(e.step() == 2);
      CHECK(msg.find("non-finite loss in stage 'tiny', epoch 3, step 2: loss = nan.") == 0);
      CHECK(msg.find(spec.dir + "/last.safetensors (epoch 2) is untouched") != std::string::npos);
    }
  }
  REQUIRE_FALSE(last_before.empty());
  CHECK(read_text(spec.dir + "/last.safetensors") == last_before);
  CHECK(read_text(spec.dir + "/best.safetensors") == best_before);
  CHECK(train::read_checkpoint_info(spec.dir + "/last.safetensors").epoch == 2);
  // The log says what happened.
  const auto records = train::read_log_file(spec.dir + "/log.jsonl").records;
  REQUIRE(records.size() == 3);
  CHECK(records[2].at("event").as_string() == "non_finite_loss");
  CHECK(records[2].at("step").as_int() == 2);

  // Resumed without the fault, the run ends exactly where an uninterrupted one does.
  spec.nan_in_epoch = -1;
  spec.existing = train::ExistingRun::resume;
  spec.on_epoch_start = nullptr;
  TinyRun resumed;
  resumed.run(spec);
  TinyRun straight;
  straight.run({dir.path() + "/straight", 4});
  CHECK(same_state(*resumed.model, *straight.model));
  CHECK(logged_epochs(spec.dir + "/log.jsonl", true) == std::vector<int64_t>{1, 2, 3, 4});

  // A non-finite epoch mean or validation value stops the run too.
  train::TrainState s;
  train::LoopOptions o;
  o.run_dir = dir.path() + "/nan2";
  o.stage = "probe";
  o.out = nullptr;
  o.epochs = 2;
  train::TrainerLoop loop(o, s);
  CHECK_THROWS_WITH_AS(
      loop.run([](int64_t) { return train::EpochStats{}; }, [](int64_t) { return train::EvalMetrics{{"accuracy", 1}}; }),
      doctest::Contains("mean training loss = nan"), train::NonFiniteLossError);
  train::TrainState s2;
  o.run_dir = dir.path() + "/nan3";
  train::TrainerLoop loop2(o, s2);
  CHECK_THROWS_WITH_AS(loop2.run(
                           [](int64_t) {
                             train::EpochStats st;
                             st.loss = 1;
                             return st;
                           },
                           [](int64_t) { return train::EvalMetrics{{"accuracy", std::nan("")}}; }),
                       doctest::Contains("stage 'probe (validation)', epoch 1"), train::NonFiniteLossError);
  train::TrainState s3;
  o.run_dir = dir.path() + "/nan4";
  train::TrainerLoop loop3(o, s3);
  CHECK_THROWS_WITH_AS(loop3.run(
                           [](int64_t) {
                             train::EpochStats st;
                             st.loss = 1;
                             return st;
                           },
                           [](int64_t) { return train::EvalMetrics{{"macro_f1", 0.5}}; }),
                       doctest::Contains("did not report the selection metric \"accuracy\" (it reported: macro_f1)"),
                       Error);
}

namespace {
// Two ranks as rank 0 sees them when rank 1 computes exactly what rank 0 does: a sum over the ranks is twice
// the local value, every broadcast finds the same value already there.
struct MirrorGroup : dist::ProcessGroup {
  int reductions = 0;
  int rank() const override { return 0; }
  int size() const override { return 2; }
  std::string backend() const override { return "mirror"; }
  std::unique_ptr<dist::Work> all_reduce_async(Tensor t, const std::string&) override {
    std::vector<double> v = t.to_vector<double>();
    for (double& x : v) x *= 2;
    t.copy_(Tensor::from_vector(v, t.shape()).to(t.dtype()));
    ++reductions;
    return std::unique_ptr<dist::Work>(new dist::DoneWork());
  }
  void broadcast(Tensor, int, const std::string&) override {}
  void broadcast_bytes(std::vector<uint8_t>&, int, const std::string&) override {}
  void barrier(const std::string&) override {}
  std::shared_ptr<dist::ProcessGroup> duplicate() override { return std::make_shared<MirrorGroup>(); }
};
}  // namespace

TEST_CASE("trainer loop: the data-parallel path trains like one process, records the ranks, refuses another count") {
  TempDir dir("train");
  TinyRun plain;
  plain.run({dir.path() + "/plain", 2});
  MirrorGroup mirror;
  RunSpec spec(dir.path() + "/dp", 2);
  spec.group = &mirror;
  TinyRun dp;
  dp.run(spec);
  CHECK(mirror.reductions > 6);  // per-step losses, epoch statistics, buffers
  CHECK(same_state(*dp.model, *plain.model));  // the mirrored sums and means are exact
  CHECK(train::read_checkpoint_info(dir.path() + "/dp/last.safetensors").metadata.at("config.world_size") == "2");
  CHECK(train::read_checkpoint_info(dir.path() + "/plain/last.safetensors").metadata.count("config.world_size") == 0);
  // One process may not continue a two-rank run (its shards and batches were those of two ranks).
  RunSpec again(dir.path() + "/dp", 3, train::ExistingRun::resume);
  TinyRun one;
  CHECK_THROWS_WITH_AS(one.run(again), doctest::Contains("written by a run on 2 rank(s)"), train::CheckpointError);
  // Nor may two ranks continue a one-process run.
  RunSpec plain_again(dir.path() + "/plain", 3, train::ExistingRun::resume);
  plain_again.group = &mirror;
  TinyRun two;
  CHECK_THROWS_WITH_AS(two.run(plain_again), doctest::Contains("this run has 2"), train::CheckpointError);
}

TEST_CASE("data parallel in one process: no hook, no cost; batch shares; rows in order") {
  dist::LocalGroup local;
  Var w(Tensor::full({3}, 1.5), true);
  {
    dist::GradientReducer ddp(local, {w});
    CHECK(backward_hooks().empty());  // one process: nothing to average
    ops::sum(ops::mul(w, w)).backward();
  }
  CHECK(w.grad().to_vector<float>() == std::vector<float>{3, 3, 3});
  MirrorGroup two;
  CHECK(dist::local_batch_size(32, two) == 16);
  CHECK_THROWS_WITH_AS(dist::local_batch_size(33, two), doctest::Contains("does not divide among 2"), Error);
  dist::RowCollector rows(3, 2);
  const double r1[2] = {3, 4}, r0[2] = {1, 2}, r2[2] = {5, 6};
  rows.put(1, r1);
  rows.put(0, r0);
  rows.put(2, r2);
  CHECK(rows.gather(local, "rows") == std::vector<double>{1, 2, 3, 4, 5, 6});
  dist::RowCollector short_rows(3, 1);
  const double x = 1;
  short_rows.put(0, &x);
  CHECK_THROWS_WITH_AS(short_rows.gather(local, "rows"), doctest::Contains("computed 1 rows of 3"), Error);
  CHECK(dist::world().size() == 1);  // no Session in this process
}
