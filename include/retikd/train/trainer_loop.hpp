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
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "retikd/core/error.hpp"
#include "retikd/data/progress.hpp"
#include "retikd/metrics/json.hpp"
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
      : opt_(std::move(options)), state_(state),
        ckpt_(require_dir(opt_.run_dir), "val_" + opt_.select_metric, opt_.maximize) {
    RETIKD_CHECK(opt_.epochs >= 1, "TrainerLoop: epochs must be at least 1, got ", opt_.epochs);
    RETIKD_CHECK(!opt_.stage.empty(), "TrainerLoop: empty stage name");
  }

  using TrainFn = std::function<EpochStats(int64_t epoch)>;
  using EvalFn = std::function<EvalMetrics(int64_t epoch)>;

  LoopResult run(const TrainFn& train_one_epoch, const EvalFn& evaluate) {
    LoopResult result;
    result.last_path = ckpt_.last_path();
    result.best_path = ckpt_.best_path();
    result.log_path = log_path();
    for (const auto& kv : opt_.config) state_.metadata["config." + kv.first] = kv.second;

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

    RunLog log(log_path(), state_.epoch);
    result.first_epoch = state_.epoch + 1;
    result.already_complete = state_.epoch >= opt_.epochs;
    for (int64_t e = state_.epoch + 1; e <= opt_.epochs; ++e) run_epoch(e, log, train_one_epoch, evaluate);
    result.last_epoch = state_.epoch;
    result.best_metric = state_.best_metric;
    result.best_epoch = state_.best_epoch;
    return result;
  }

  // ---- for use inside train_one_epoch -------------------------------------------------------------------------
  // Checks one step's loss (NonFiniteLossError naming stage, epoch and step) and advances the progress bar.
  void step_done(double loss, int64_t steps = 1) {
    step_ += steps;
    check_loss(loss);
    running_loss_ += loss;
    ++running_count_;
    if (bar_) {
      detail::set_bar_status(*bar_, "loss " + detail::short_number(running_loss_ / static_cast<double>(running_count_)));
      bar_->add(steps);
    }
  }
  // Checks a value without advancing (e.g. a discriminator loss): `what` names it in the message.
  void check_loss(double value, const std::string& what = "loss") const {
    check_finite_loss(value, opt_.stage, epoch_, step_, what);
  }
  int64_t epoch() const { return epoch_; }
  int64_t step_in_epoch() const { return step_; }

  const LoopOptions& options() const { return opt_; }
  const CheckpointManager& checkpoints() const { return ckpt_; }
  std::string log_path() const { return ckpt_.dir() + "/" + opt_.log_name; }

 private:
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

  [[noreturn]] void stop(const NonFiniteLossError& e, RunLog& log) {
    bar_.reset();
    const std::string kept = ckpt_.has_last()
                                 ? "The run stopped; the last good checkpoint " + ckpt_.last_path() + " (epoch " +
                                       std::to_string(state_.epoch) + ") is untouched."
                                 : "The run stopped before its first checkpoint.";
    const NonFiniteLossError full = e.with_note(kept);
    metrics::Json rec = metrics::Json::object();
    rec["stage"] = opt_.stage;
    rec["epoch"] = e.epoch();
    rec["event"] = "non_finite_loss";
    rec["step"] = e.step();
    rec["message"] = std::string(full.what());
    try {
      log.append(rec);
    } catch (const Error&) {
      // The stop message matters more than the log line.
    }
    say(full.what());
    throw full;
  }

  void run_epoch(int64_t e, RunLog& log, const TrainFn& train_one_epoch, const EvalFn& evaluate) {
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
      check_finite_loss(stats.loss, opt_.stage, e, -1, "mean training loss");
      for (const auto& kv : stats.extra) check_finite_loss(kv.second, opt_.stage, e, -1, "training " + kv.first);
      val = evaluate(e);
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

    metrics::Json rec = metrics::Json::object();
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
    log.append(rec);
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
  CheckpointManager ckpt_;
  std::unique_ptr<data::ProgressBar> bar_;
  int64_t epoch_ = 0, step_ = 0;
  double running_loss_ = 0;
  int64_t running_count_ = 0;
};

}  // namespace train
}  // namespace retikd
