// retikd/train/trainer_loop.hpp — a small, generic, resumable epoch loop for one training stage: it calls
// the stage's train_one_epoch(epoch) and evaluate(epoch), and around them handles the per-epoch checkpoint
// (last + best by a chosen validation metric), the JSON-lines log, a progress bar, the NaN/Inf stop, and
// resuming a killed run.
//
//   train::TrainState state;
//   state.add_module("model", *model);  state.add_optimizer("opt", opt);
//   state.add_schedule("lr", sched);    state.add_generator("noise", *noise);
//   train::LoopOptions o;  o.stage = "student_kd";  o.run_dir = out + "/student_kd";  o.epochs = 50;
//   o.existing = resume ? train::ExistingRun::resume : train::ExistingRun::fail;  o.config = {...};
//   train::TrainerLoop loop(o, state);
//   loop.run([&](int64_t epoch) { ... for each batch: loss.backward(); opt.step(); sched.step();
//                                     loop.step_done(loss_value); ...  return stats; },
//            [&](int64_t epoch) { return train::EvalMetrics{{"loss", l}, {"accuracy", a}, {"macro_f1", f}}; });
//
// The resume contract (docs/metrics.md): a run killed at any point and resumed with the same configuration
// ends with bit-identical weights to an uninterrupted run, provided that
//   1. everything that carries state across epochs is registered in the TrainState: modules (parameters and
//      buffers such as batch-norm statistics), optimizers, schedules, and any Generator whose stream
//      continues from one epoch to the next (e.g. a model's dropout NoiseSource);
//   2. all other randomness of epoch e is derived from (seed, e) — e.g. Generator::derive(seed, e) for the
//      shuffle and Generator::derive(seed, e, index) for each sample's augmentation — never from a stream
//      that was created once at start-up and not registered;
//   3. evaluate(e) changes no training state (eval mode, no optimizer step; it may use its own generators);
//   4. the computation is deterministic for a given input (same kind of device, same thread count).
// Epochs are numbered 1..epochs. A checkpoint holds the state after its epoch; resuming from epoch k runs
// k+1.. with the restored state.
//
// Data-parallel runs (LoopOptions::group, by default dist::world(): more than one rank once a dist::Session
// started MPI) follow the same contract on every rank, with rank 0 alone touching the run directory:
//   - rank 0 decides whether the stage starts, resumes or refuses (and an error there stops every rank with
//     its message); then rank 0's whole training state — parameters, buffers, optimizer moments, schedules,
//     generators, counters — is sent to the other ranks, so all replicas start identical, fresh or resumed;
//   - the configuration gains "world_size", so a run resumes only with the number of ranks that wrote it
//     (the data shards and the batch composition depend on it);
//   - step_done / check_loss use the mean of the ranks' losses (one small all-reduce per call), so a
//     non-finite loss on any rank stops all of them at the same step; the epoch's statistics are averaged
//     over the ranks, weighted by their samples;
//   - before evaluate(e), floating buffers of the registered modules (per-rank batch-norm statistics) become
//     their mean over the ranks (LoopOptions::average_buffers), so replicas stay identical; evaluate(e) must
//     return the same metrics on every rank (compute them over the whole split: dist::RowCollector), and rank
//     0's are the ones used;
//   - rank 0 writes the log and the checkpoints (atomically); load_best() reads on rank 0 and sends.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "retikd/core/error.hpp"
#include "retikd/data/progress.hpp"
#include "retikd/dist/data_parallel.hpp"
#include "retikd/dist/process_group.hpp"
#include "retikd/io/json.hpp"
#include "retikd/train/checkpoint.hpp"
#include "retikd/train/run_log.hpp"

namespace retikd {
namespace train {

// What train_one_epoch reports. `loss` (the epoch's mean training loss) is required and must be finite;
// accuracy is optional (NaN: not measured); `extra` values are logged as "train_<key>".
struct EpochStats {
  double loss = std::numeric_limits<double>::quiet_NaN();
  double accuracy = std::numeric_limits<double>::quiet_NaN();
  int64_t samples = 0;
  std::map<std::string, double> extra;
};

// What evaluate reports, by name ("loss", "accuracy", "macro_f1", ...); logged as "val_<name>". The selection
// metric must be present and finite, and so must "loss" when reported; others may be NaN (undefined).
using EvalMetrics = std::map<std::string, double>;

// What to do when the run directory already holds a checkpoint.
enum class ExistingRun {
  resume,   // continue from last.safetensors (--resume)
  restart,  // delete the run's checkpoints and log, start at epoch 1
  fail,     // refuse: the caller must choose (the default, so a run never overwrites another by accident)
};

struct LoopOptions {
  std::string stage = "train";        // names the stage in messages and log records
  std::string run_dir;                // last.safetensors, best.safetensors, log.jsonl
  int64_t epochs = 1;
  std::string select_metric = "accuracy";  // key of EvalMetrics choosing the best epoch
  bool maximize = true;
  ExistingRun existing = ExistingRun::fail;
  // Stored in every checkpoint as metadata "config.<key>"; resuming requires the same map (a resumed run
  // with other hyper-parameters would not continue the same run).
  std::map<std::string, std::string> config;
  std::FILE* out = stderr;       // epoch summaries and the progress bar; nullptr: quiet
  int64_t steps_per_epoch = 0;   // > 0: a progress bar per epoch advanced by step_done()
  std::string step_unit = "batch";
  std::string log_name = "log.jsonl";
  // The ranks that train together (see the top of this file); nullptr: dist::world().
  dist::ProcessGroup* group = nullptr;
  // Data-parallel runs: floating module buffers := their mean over the ranks before each evaluation.
  bool average_buffers = true;
};

struct LoopResult {
  int64_t first_epoch = 1;   // the first epoch this call ran (epochs + 1 when there was nothing to do)
  int64_t last_epoch = 0;    // the last completed epoch
  bool resumed = false;
  bool already_complete = false;  // the checkpoint already held every epoch: nothing ran
  double best_metric = std::numeric_limits<double>::quiet_NaN();
  int64_t best_epoch = 0;
  std::string last_path, best_path, log_path;
};

namespace detail {
// data::ProgressBar gains a status text (running loss) in a later version; use it when it is there.
template <class Bar, class = void>
struct has_set_status : std::false_type {};
template <class Bar>
struct has_set_status<Bar, decltype(std::declval<Bar&>().set_status(std::string()), void())> : std::true_type {};

template <class Bar>
void set_bar_status(Bar& bar, const std::string& s) {
  if constexpr (has_set_status<Bar>::value) {
    bar.set_status(s);
  } else {
    (void)bar;
    (void)s;
  }
}

// A number as io::format_double writes it ("nan" included).
inline bool parse_metric(const std::string& text, double& out) {
  if (text == "nan" || text == "null") {
    out = std::numeric_limits<double>::quiet_NaN();
    return true;
  }
  char* end = nullptr;
  out = std::strtod(text.c_str(), &end);
  return end != text.c_str();
}

inline std::string short_number(double v, int decimals = 4) {
  if (!std::isfinite(v)) return NonFiniteLossError::value_text(v);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}
}  // namespace detail

class TrainerLoop {
 public:
  TrainerLoop(LoopOptions options, TrainState& state)
      : opt_(std::move(options)), state_(state), group_(opt_.group ? opt_.group : &dist::world()),
        ckpt_(require_dir(opt_.run_dir), "val_" + opt_.select_metric, opt_.maximize, group_->rank() == 0) {
    RETIKD_CHECK(opt_.epochs >= 1, "TrainerLoop: epochs must be at least 1, got ", opt_.epochs);
    RETIKD_CHECK(!opt_.stage.empty(), "TrainerLoop: empty stage name");
    if (!lead()) opt_.out = nullptr;  // one voice: rank 0 prints the bar and the summaries
  }

  using TrainFn = std::function<EpochStats(int64_t epoch)>;
  using EvalFn = std::function<EvalMetrics(int64_t epoch)>;

  LoopResult run(const TrainFn& train_one_epoch, const EvalFn& evaluate) {
    LoopResult result;
    result.last_path = ckpt_.last_path();
    result.best_path = ckpt_.best_path();
    result.log_path = log_path();
    if (distributed()) opt_.config["world_size"] = std::to_string(group_->size());
    for (const auto& kv : opt_.config) state_.metadata["config." + kv.first] = kv.second;

    if (!distributed()) {
      start(result);
    } else {
      // Rank 0 decides (and may refuse); every rank learns the outcome, then receives rank 0's state.
      std::exception_ptr error;
      std::string problem;
      if (lead()) {
        try {
          start(result);
        } catch (const std::exception& e) {
          error = std::current_exception();
          problem = e.what();
        }
      }
      problem = group_->broadcast_string(problem, 0, "stage '" + opt_.stage + "': start");
      if (error) std::rethrow_exception(error);
      if (!problem.empty())
        fail("stage '", opt_.stage, "' (rank ", group_->rank(), " of ", group_->size(),
             "): rank 0 could not start it: ", problem);
      Tensor resumed = Tensor::from_vector<int64_t>({result.resumed ? 1 : 0}, {1});
      group_->broadcast(resumed, 0, "stage '" + opt_.stage + "': resume flag");
      result.resumed = resumed.to_vector<int64_t>()[0] != 0;
      share_state_from_lead();
    }

    std::unique_ptr<RunLog> log;
    if (lead()) log.reset(new RunLog(log_path(), state_.epoch));
    result.first_epoch = state_.epoch + 1;
    result.already_complete = state_.epoch >= opt_.epochs;
    for (int64_t e = state_.epoch + 1; e <= opt_.epochs; ++e) run_epoch(e, log.get(), train_one_epoch, evaluate);
    result.last_epoch = state_.epoch;
    result.best_metric = state_.best_metric;
    result.best_epoch = state_.best_epoch;
    return result;
  }

  // Restores best.safetensors into `state`; in a data-parallel run rank 0 reads it and sends its bytes, so the
  // other ranks need no access to the run directory.
  CheckpointInfo load_best(TrainState& state) {
    if (!distributed()) return ckpt_.load_best(state);
    std::vector<uint8_t> bytes;
    std::string problem;
    if (lead()) {
      std::ifstream in(ckpt_.best_path(), std::ios::binary);
      if (!in) problem = "cannot read " + ckpt_.best_path();
      else bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    problem = group_->broadcast_string(problem, 0, "stage '" + opt_.stage + "': best checkpoint");
    if (!problem.empty()) throw CheckpointError(ckpt_.best_path(), problem);
    group_->broadcast_bytes(bytes, 0, "stage '" + opt_.stage + "': best checkpoint");
    io::SafetensorsContents c;
    try {
      c = io::parse_safetensors(bytes, ckpt_.best_path());
    } catch (const Error& e) {
      throw CheckpointError(ckpt_.best_path(), std::string("unreadable or corrupt: ") + e.what());
    }
    return load_checkpoint_contents(c, ckpt_.best_path(), state);
  }

  // ---- for use inside train_one_epoch -------------------------------------------------------------------------
  // Checks one step's loss (NonFiniteLossError naming stage, epoch and step) and advances the progress bar.
  // Returns the loss checked: in a data-parallel run the mean over the ranks (every rank must call this).
  double step_done(double loss, int64_t steps = 1) {
    step_ += steps;
    loss = mean_over_ranks(loss, "loss");
    check_value(loss, "loss");
    running_loss_ += loss;
    ++running_count_;
    if (bar_) {
      const double mean = running_loss_ / static_cast<double>(running_count_);
      detail::set_bar_status(*bar_, "loss " + detail::short_number(mean));
      bar_->add(steps);
    }
    return loss;
  }
  // Checks a value without advancing (e.g. a discriminator loss): `what` names it in the message. Data-parallel:
  // checks and returns the mean over the ranks (every rank must call this).
  double check_loss(double value, const std::string& what = "loss") const {
    value = mean_over_ranks(value, what);
    check_value(value, what);
    return value;
  }
  int64_t epoch() const { return epoch_; }
  int64_t step_in_epoch() const { return step_; }

  const LoopOptions& options() const { return opt_; }
  const CheckpointManager& checkpoints() const { return ckpt_; }
  std::string log_path() const { return ckpt_.dir() + "/" + opt_.log_name; }
  dist::ProcessGroup& group() const { return *group_; }

 private:
  bool distributed() const { return group_->size() > 1; }
  bool lead() const { return group_->rank() == 0; }

  double mean_over_ranks(double v, const std::string& what) const {
    if (!distributed()) return v;
    return group_->all_reduce(v, "stage '" + opt_.stage + "': " + what) / static_cast<double>(group_->size());
  }
  void check_value(double value, const std::string& what) const {
    check_finite_loss(value, opt_.stage, epoch_, step_, what);
  }

  // The starting state: fresh, restarted or resumed from last.safetensors (rank 0 only in a data-parallel run).
  void start(LoopResult& result) {
    if (ckpt_.has_last()) {
      if (opt_.existing == ExistingRun::fail) {
        const CheckpointInfo info = read_checkpoint_info(ckpt_.last_path());
        fail("stage '", opt_.stage, "': ", ckpt_.last_path(), " already holds a checkpoint (epoch ", info.epoch, " of ",
             opt_.epochs, "); resume it (--resume), restart it, or choose another output directory");
      }
      if (opt_.existing == ExistingRun::restart) {
        ckpt_.clear();
        std::remove(log_path().c_str());
      }
    }
    if (opt_.existing == ExistingRun::resume && ckpt_.has_last()) {
      check_config(ckpt_.last_info());
      ckpt_.resume(state_);
      for (const auto& kv : opt_.config) state_.metadata["config." + kv.first] = kv.second;
      result.resumed = true;
      RETIKD_CHECK(state_.epoch <= opt_.epochs, "stage '", opt_.stage, "': ", ckpt_.last_path(), " holds epoch ",
                   state_.epoch, " but the run has only ", opt_.epochs, " epochs");
      say(opt_.stage + ": resuming after epoch " + std::to_string(state_.epoch) + "/" + std::to_string(opt_.epochs) +
          " from " + ckpt_.last_path());
    } else if (!ckpt_.has_last()) {
      state_.epoch = 0;
      state_.best_metric = std::numeric_limits<double>::quiet_NaN();
      state_.best_epoch = 0;
    }
    state_.best_metric_name = ckpt_.metric_name();
  }

  // Rank 0's whole training state (what a checkpoint holds) onto every other rank.
  void share_state_from_lead() {
    std::vector<uint8_t> bytes;
    if (lead()) bytes = checkpoint_bytes(state_);
    const std::string what = "stage '" + opt_.stage + "': rank 0's training state";
    group_->broadcast_bytes(bytes, 0, what);
    if (!lead()) load_checkpoint_contents(io::parse_safetensors(bytes, what), what, state_);
  }

  // The epoch's statistics over all ranks, weighted by each rank's samples (by rank when none counted any).
  EpochStats reduce_stats(const EpochStats& s) const {
    const std::string what = "stage '" + opt_.stage + "': epoch statistics";
    const double total_samples = group_->all_reduce(static_cast<double>(s.samples), what);
    const double w = total_samples > 0 ? static_cast<double>(s.samples) : 1.0;
    const double total = total_samples > 0 ? total_samples : static_cast<double>(group_->size());
    const bool acc_known = std::isfinite(s.accuracy);
    std::vector<double> v{s.loss * w, acc_known ? s.accuracy * w : 0.0, acc_known ? 0.0 : 1.0};
    for (const auto& kv : s.extra) v.push_back(kv.second * w);
    v = group_->all_reduce(std::move(v), what);
    EpochStats out;
    out.samples = static_cast<int64_t>(total_samples);
    out.loss = v[0] / total;
    out.accuracy = v[2] == 0.0 ? v[1] / total : std::numeric_limits<double>::quiet_NaN();
    std::size_t i = 3;
    for (const auto& kv : s.extra) out.extra[kv.first] = v[i++] / total;
    return out;
  }

  // Rank 0's evaluation metrics on every rank (the ranks must agree on the best epoch).
  EvalMetrics lead_metrics(const EvalMetrics& m) const {
    std::string text;
    if (lead())
      for (const auto& kv : m) text += kv.first + "\t" + io::format_double(kv.second) + "\n";
    text = group_->broadcast_string(text, 0, "stage '" + opt_.stage + "': validation metrics");
    EvalMetrics out;
    std::size_t at = 0;
    while (at < text.size()) {
      const std::size_t tab = text.find('\t', at), nl = text.find('\n', at);
      double v = std::numeric_limits<double>::quiet_NaN();
      detail::parse_metric(text.substr(tab + 1, nl - tab - 1), v);
      out[text.substr(at, tab - at)] = v;
      at = nl + 1;
    }
    return out;
  }

  static const std::string& require_dir(const std::string& d) {
    RETIKD_CHECK(!d.empty(), "TrainerLoop: LoopOptions::run_dir is empty");
    return d;
  }

  void say(const std::string& line) const {
    if (!opt_.out) return;
    std::fprintf(opt_.out, "%s\n", line.c_str());
    std::fflush(opt_.out);
  }

  void check_config(const CheckpointInfo& info) const {
    // The number of ranks first, with its own message: the data shards and batches depend on it.
    auto ranks = [](const std::map<std::string, std::string>& m, const std::string& key) {
      auto it = m.find(key);
      return it == m.end() ? std::string("1") : it->second;
    };
    const std::string was = ranks(info.metadata, "config.world_size"), now = ranks(opt_.config, "world_size");
    if (was != now)
      throw CheckpointError(info.path, "cannot resume stage '" + opt_.stage + "': the checkpoint was written by a " +
                                           "run on " + was + " rank(s) (world_size), this run has " + now +
                                           "; resume it with " + was +
                                           " (each rank's data shard and batch depend on the number of ranks)");
    std::vector<std::string> diffs;
    for (const auto& kv : opt_.config) {
      auto it = info.metadata.find("config." + kv.first);
      if (it == info.metadata.end()) {
        diffs.push_back(kv.first + ": not in the checkpoint, now \"" + kv.second + "\"");
      } else if (it->second != kv.second) {
        diffs.push_back(kv.first + ": \"" + it->second + "\" in the checkpoint, now \"" + kv.second + "\"");
      }
    }
    for (const auto& kv : info.metadata)
      if (kv.first.compare(0, 7, "config.") == 0 && !opt_.config.count(kv.first.substr(7)))
        diffs.push_back(kv.first.substr(7) + ": \"" + kv.second + "\" in the checkpoint, not set now");
    if (diffs.empty()) return;
    std::string msg = "cannot resume stage '" + opt_.stage + "': the configuration differs from the checkpoint's:";
    for (const auto& d : diffs) msg += "\n  " + d;
    throw CheckpointError(info.path, msg + "\n(resume with the same settings, or restart in another directory)");
  }

  [[noreturn]] void stop(const NonFiniteLossError& e, RunLog* log) {
    bar_.reset();
    const std::string kept = ckpt_.has_last()
                                 ? "The run stopped; the last good checkpoint " + ckpt_.last_path() + " (epoch " +
                                       std::to_string(state_.epoch) + ") is untouched."
                                 : "The run stopped before its first checkpoint.";
    const NonFiniteLossError full = e.with_note(kept);
    io::Json rec = io::Json::object();
    rec["stage"] = opt_.stage;
    rec["epoch"] = e.epoch();
    rec["event"] = "non_finite_loss";
    rec["step"] = e.step();
    rec["message"] = std::string(full.what());
    try {
      if (log) log->append(rec);
    } catch (const Error&) {
      // The stop message matters more than the log line.
    }
    say(full.what());
    throw full;
  }

  void run_epoch(int64_t e, RunLog* log, const TrainFn& train_one_epoch, const EvalFn& evaluate) {
    epoch_ = e;
    step_ = 0;
    running_loss_ = 0;
    running_count_ = 0;
    const auto t0 = std::chrono::steady_clock::now();
    if (opt_.steps_per_epoch > 0 && opt_.out)
      bar_.reset(new data::ProgressBar(opt_.stage + " epoch " + std::to_string(e) + "/" + std::to_string(opt_.epochs),
                                       opt_.steps_per_epoch, opt_.step_unit, opt_.out));
    EpochStats stats;
    EvalMetrics val;
    try {
      stats = train_one_epoch(e);
      if (bar_) bar_->finish();
      bar_.reset();
      if (distributed()) stats = reduce_stats(stats);
      check_finite_loss(stats.loss, opt_.stage, e, -1, "mean training loss");
      for (const auto& kv : stats.extra) check_finite_loss(kv.second, opt_.stage, e, -1, "training " + kv.first);
      if (distributed() && opt_.average_buffers)
        for (const auto& m : state_.modules()) dist::average_buffers(*group_, *m.second);
      val = evaluate(e);
      if (distributed()) val = lead_metrics(val);
      auto sel = val.find(opt_.select_metric);
      if (sel == val.end()) {
        std::string keys;
        for (const auto& kv : val) keys += (keys.empty() ? "" : ", ") + kv.first;
        fail("stage '", opt_.stage, "': evaluate() did not report the selection metric \"", opt_.select_metric,
             "\" (it reported: ", keys.empty() ? "nothing" : keys, ")");
      }
      check_finite_loss(sel->second, opt_.stage + " (validation)", e, -1, "validation " + sel->first);
      if (val.count("loss")) check_finite_loss(val.at("loss"), opt_.stage + " (validation)", e, -1, "validation loss");
    } catch (const NonFiniteLossError& err) {
      stop(err, log);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double metric = val.at(opt_.select_metric);
    const bool best = ckpt_.is_better(metric, state_.best_metric);

    io::Json rec = io::Json::object();
    rec["stage"] = opt_.stage;
    rec["epoch"] = e;
    rec["train_loss"] = stats.loss;
    rec["train_accuracy"] = stats.accuracy;
    for (const auto& kv : stats.extra) rec["train_" + kv.first] = kv.second;
    for (const auto& kv : val) rec["val_" + kv.first] = kv.second;
    for (const auto& o : state_.optimizers())
      if (!o.second->groups().empty()) rec["lr_" + o.first] = o.second->groups().front().lr;
    rec["seconds"] = seconds;
    rec["best"] = best;
    rec["best_metric"] = best ? metric : state_.best_metric;
    // Log first, then checkpoint: a crash in between leaves a log line that the resumed run drops.
    if (log) log->append(rec);
    state_.epoch = e;
    ckpt_.save_epoch(state_, metric);

    std::string line = opt_.stage + " epoch " + std::to_string(e) + "/" + std::to_string(opt_.epochs) +
                       ": train loss " + detail::short_number(stats.loss);
    if (std::isfinite(stats.accuracy)) line += " acc " + detail::short_number(stats.accuracy);
    for (const auto& kv : stats.extra) line += " " + kv.first + " " + detail::short_number(kv.second);
    line += " | val";
    for (const auto& kv : val) line += " " + kv.first + " " + detail::short_number(kv.second);
    line += " | " + data::format_duration(seconds) + (best ? " | best" : " | best " +
            detail::short_number(state_.best_metric) + " @ " + std::to_string(state_.best_epoch));
    say(line);
  }

  LoopOptions opt_;
  TrainState& state_;
  dist::ProcessGroup* group_;
  CheckpointManager ckpt_;
  std::unique_ptr<data::ProgressBar> bar_;
  int64_t epoch_ = 0, step_ = 0;
  double running_loss_ = 0;
  int64_t running_count_ = 0;
};

}  // namespace train
}  // namespace retikd
