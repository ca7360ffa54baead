// retikd/train/checkpoint.hpp — training checkpoints: everything a killed run needs to continue exactly where
// it stopped, in one safetensors file written atomically, and the run directory's last / best files.
//
// A TrainState registers, by reference and under a name, what a run restores: modules (state dicts:
// parameters and buffers), optimizers (momentum / Adam moments, step count, group learning rates),
// warm-up + cosine schedules (their step), random generators (the exact xoshiro state, spare normal
// included) and integer counters; plus the scalars of the run itself (completed epochs, global step, the
// best validation metric and its epoch) and free-form string metadata (the configuration).
//
// File layout (one safetensors file; tensor names are "<section>/<name>/<key>"):
//   module/<name>/<state-dict name>     the module's tensors, dtype as in memory
//   optimizer/<name>/<state key>        Optimizer::state(): "step" and "<param index>.<slot>"
//   optimizer_lr/<name>                 F64 (groups,): each parameter group's current lr
//   schedule/<name>                     I64 scalar: the schedule's step
//   rng/<name>                          I64 (6,): Generator::state(), bit for bit
//   counter/<name>                      I64 scalar
//   __metadata__: "retikd.checkpoint" = "1" (format version), "retikd.epoch", "retikd.global_step",
//                 "retikd.best_metric" (shortest round-trip decimal, or "nan"), "retikd.best_epoch",
//                 "retikd.best_metric_name", "retikd.sections" (JSON: the registered names per section),
//                 and the user's metadata verbatim (keys starting "retikd." are reserved).
// Module tensors keep their torchvision / timm names after the prefix, so a checkpoint's weights can be
// pulled out with any safetensors reader.
//
// Writing: the whole file is produced, then published with io::write_file_atomically (temporary file in the
// same directory, fsync, rename, directory fsync): a crash or an exception leaves the previous checkpoint
// intact. Loading is all or nothing: every section, name, shape and count is checked against what the
// TrainState registered before anything is modified, and any problem raises CheckpointError naming the file
// and listing every mismatch.
#pragma once

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <locale>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "retikd/core/error.hpp"
#include "retikd/core/random.hpp"
#include "retikd/core/tensor.hpp"
#include "retikd/io/atomic_file.hpp"
#include "retikd/io/json.hpp"
#include "retikd/io/safetensors.hpp"
#include "retikd/nn/module.hpp"
#include "retikd/optim/optim.hpp"

namespace retikd {
namespace train {

// A checkpoint that cannot be written, read or applied; what() starts with "checkpoint: <file>: ".
class CheckpointError : public Error {
 public:
  CheckpointError(const std::string& path, const std::string& problem)
      : Error("checkpoint: " + path + ": " + problem), path_(path) {}
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

constexpr const char* kCheckpointFormatVersion = "1";

class TrainState {
 public:
  // ---- what is restored (registered by reference; the objects must outlive the TrainState's use) ---------
  void add_module(const std::string& name, nn::Module& m) { add(modules_, name, &m, "module"); }
  void add_optimizer(const std::string& name, optim::Optimizer& o) { add(optimizers_, name, &o, "optimizer"); }
  void add_schedule(const std::string& name, optim::WarmupCosineSchedule& s) { add(schedules_, name, &s, "schedule"); }
  void add_generator(const std::string& name, Generator& g) { add(generators_, name, &g, "generator"); }
  void add_counter(const std::string& name, int64_t& c) { add(counters_, name, &c, "counter"); }

  // ---- the run's own scalars ---------------------------------------------------------------------------------
  int64_t epoch = 0;        // completed epochs (1-based numbering: after the first epoch this is 1)
  int64_t global_step = 0;  // optimizer steps so far, if the caller counts them
  double best_metric = std::numeric_limits<double>::quiet_NaN();  // NaN: no epoch evaluated yet
  int64_t best_epoch = 0;                                          // 0: none
  std::string best_metric_name;                                    // e.g. "val_macro_f1"
  std::map<std::string, std::string> metadata;                     // free-form; keys "retikd.*" reserved

  const std::vector<std::pair<std::string, nn::Module*>>& modules() const { return modules_; }
  const std::vector<std::pair<std::string, optim::Optimizer*>>& optimizers() const { return optimizers_; }
  const std::vector<std::pair<std::string, optim::WarmupCosineSchedule*>>& schedules() const { return schedules_; }
  const std::vector<std::pair<std::string, Generator*>>& generators() const { return generators_; }
  const std::vector<std::pair<std::string, int64_t*>>& counters() const { return counters_; }

 private:
  template <class T>
  static void add(std::vector<std::pair<std::string, T*>>& list, const std::string& name, T* p, const char* what) {
    RETIKD_CHECK(!name.empty() && name.find('/') == std::string::npos, "TrainState: ", what, " name \"", name,
                 "\" must be non-empty and contain no '/'");
    for (const auto& e : list) RETIKD_CHECK(e.first != name, "TrainState: ", what, " \"", name, "\" registered twice");
    list.emplace_back(name, p);
  }
  std::vector<std::pair<std::string, nn::Module*>> modules_;
  std::vector<std::pair<std::string, optim::Optimizer*>> optimizers_;
  std::vector<std::pair<std::string, optim::WarmupCosineSchedule*>> schedules_;
  std::vector<std::pair<std::string, Generator*>> generators_;
  std::vector<std::pair<std::string, int64_t*>> counters_;
};

// What a checkpoint's header says, read without loading any tensor.
struct CheckpointInfo {
  std::string path;
  int64_t epoch = 0, global_step = 0, best_epoch = 0;
  double best_metric = std::numeric_limits<double>::quiet_NaN();
  std::string best_metric_name;
  std::map<std::string, std::string> metadata;  // the user's (reserved keys removed)
  std::map<std::string, std::vector<std::string>> sections;  // "module" → names, …
};

struct CheckpointWriteOptions {
  // Called after each chunk of the file is handed to the temporary file, with the bytes written so far and
  // the total; throwing from it aborts the write (tests use it to simulate a crash mid-write).
  std::function<void(uint64_t written, uint64_t total)> on_progress;
  std::size_t chunk_bytes = 1 << 20;
};

namespace detail {

inline std::string number_text(double v) { return std::isfinite(v) ? io::format_double(v) : "nan"; }

inline bool parse_int(const std::string& s, int64_t& out) {
  if (s.empty()) return false;
  std::size_t i = s[0] == '-' ? 1 : 0;
  if (i == s.size()) return false;
  int64_t v = 0;
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    if (v > (std::numeric_limits<int64_t>::max() - (s[i] - '0')) / 10) return false;
    v = v * 10 + (s[i] - '0');
  }
  out = s[0] == '-' ? -v : v;
  return true;
}

inline bool parse_double(const std::string& s, double& out) {
  if (s == "nan") {
    out = std::numeric_limits<double>::quiet_NaN();
    return true;
  }
  std::istringstream in(s);
  in.imbue(std::locale::classic());
  in >> out;
  return !in.fail() && in.peek() == std::char_traits<char>::eof();
}

inline const char* const kSections[] = {"module", "optimizer", "schedule", "rng", "counter"};

inline Tensor int64_scalar(int64_t v) { return Tensor::from_vector<int64_t>({v}, {}); }

inline Tensor generator_tensor(const Generator& g) {
  const std::vector<uint64_t> s = g.state();
  std::vector<int64_t> bits(s.size());
  std::memcpy(bits.data(), s.data(), s.size() * sizeof(uint64_t));
  return Tensor::from_vector<int64_t>(bits, {static_cast<int64_t>(bits.size())});
}

inline CheckpointInfo info_from_metadata(const std::string& path, const std::map<std::string, std::string>& meta) {
  CheckpointInfo info;
  info.path = path;
  auto it = meta.find("retikd.checkpoint");
  if (it == meta.end())
    throw CheckpointError(path, "not a retikd training checkpoint (no \"retikd.checkpoint\" metadata; a plain "
                                "weights file loads with io::load_module)");
  if (it->second != kCheckpointFormatVersion)
    throw CheckpointError(path, "checkpoint format version " + it->second + ", this build reads version " +
                                    kCheckpointFormatVersion);
  auto need = [&](const char* key) -> const std::string& {
    auto f = meta.find(key);
    if (f == meta.end()) throw CheckpointError(path, std::string("metadata lacks \"") + key + "\"");
    return f->second;
  };
  auto need_int = [&](const char* key) {
    int64_t v = 0;
    if (!parse_int(need(key), v))
      throw CheckpointError(path, std::string("metadata \"") + key + "\" = \"" + need(key) + "\" is not an integer");
    return v;
  };
  info.epoch = need_int("retikd.epoch");
  info.global_step = need_int("retikd.global_step");
  info.best_epoch = need_int("retikd.best_epoch");
  if (!parse_double(need("retikd.best_metric"), info.best_metric))
    throw CheckpointError(path, "metadata \"retikd.best_metric\" = \"" + need("retikd.best_metric") +
                                    "\" is not a number");
  info.best_metric_name = need("retikd.best_metric_name");
  try {
    const io::Json sections = io::parse_json(need("retikd.sections"), "retikd.sections");
    for (const char* s : kSections) {
      std::vector<std::string>& names = info.sections[s];
      if (const io::Json* list = sections.find(s))
        for (const auto& n : list->items()) names.push_back(n.as_string());
    }
  } catch (const CheckpointError&) {
    throw;
  } catch (const Error& e) {
    throw CheckpointError(path, std::string("metadata \"retikd.sections\" is invalid: ") + e.what());
  }
  for (const auto& kv : meta)
    if (kv.first.compare(0, 7, "retikd.") != 0) info.metadata.insert(kv);
  return info;
}

inline std::vector<std::string> state_names(const TrainState& s, const char* section) {
  std::vector<std::string> out;
  const std::string sec = section;
  if (sec == "module") for (const auto& e : s.modules()) out.push_back(e.first);
  if (sec == "optimizer") for (const auto& e : s.optimizers()) out.push_back(e.first);
  if (sec == "schedule") for (const auto& e : s.schedules()) out.push_back(e.first);
  if (sec == "rng") for (const auto& e : s.generators()) out.push_back(e.first);
  if (sec == "counter") for (const auto& e : s.counters()) out.push_back(e.first);
  return out;
}

// Every parameter of an optimizer in the order its state indices count them.
inline std::vector<const Var*> optimizer_params(const optim::Optimizer& o) {
  std::vector<const Var*> out;
  for (const auto& g : o.groups())
    for (const auto& p : g.params) out.push_back(&p);
  return out;
}

}  // namespace detail

// The tensors and metadata of a checkpoint of `state` (shared tensors, no copies).
inline std::pair<std::vector<std::pair<std::string, Tensor>>, std::map<std::string, std::string>> checkpoint_contents(
    const TrainState& state) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  std::map<std::string, std::string> meta;
  for (const auto& kv : state.metadata) {
    RETIKD_CHECK(kv.first.compare(0, 7, "retikd.") != 0, "checkpoint: metadata key \"", kv.first,
                 "\" is reserved (keys starting \"retikd.\" belong to the checkpoint format)");
    meta.insert(kv);
  }
  io::Json sections = io::Json::object();
  for (const char* s : detail::kSections) sections[s] = io::Json::array_of(detail::state_names(state, s));
  for (const auto& m : state.modules())
    for (auto& nt : m.second->state_dict()) tensors.emplace_back("module/" + m.first + "/" + nt.first, nt.second);
  for (const auto& o : state.optimizers()) {
    for (const auto& kv : o.second->state()) tensors.emplace_back("optimizer/" + o.first + "/" + kv.first, kv.second);
    std::vector<double> lrs;
    for (const auto& g : o.second->groups()) lrs.push_back(g.lr);
    tensors.emplace_back("optimizer_lr/" + o.first, Tensor::from_vector(lrs, {static_cast<int64_t>(lrs.size())}));
  }
  for (const auto& s : state.schedules()) tensors.emplace_back("schedule/" + s.first, detail::int64_scalar(s.second->current_step()));
  for (const auto& g : state.generators()) tensors.emplace_back("rng/" + g.first, detail::generator_tensor(*g.second));
  for (const auto& c : state.counters()) tensors.emplace_back("counter/" + c.first, detail::int64_scalar(*c.second));
  meta["retikd.checkpoint"] = kCheckpointFormatVersion;
  meta["retikd.epoch"] = std::to_string(state.epoch);
  meta["retikd.global_step"] = std::to_string(state.global_step);
  meta["retikd.best_metric"] = detail::number_text(state.best_metric);
  meta["retikd.best_epoch"] = std::to_string(state.best_epoch);
  meta["retikd.best_metric_name"] = state.best_metric_name;
  meta["retikd.sections"] = sections.dump();
  return {std::move(tensors), std::move(meta)};
}

// Writes a checkpoint of `state` to `path` atomically: until the final rename, `path` keeps its previous
// content (or stays absent).
inline void save_checkpoint(const std::string& path, const TrainState& state, const CheckpointWriteOptions& opt = {}) {
  std::vector<uint8_t> bytes;
  try {
    auto contents = checkpoint_contents(state);
    bytes = io::serialize_safetensors(contents.first, contents.second);
  } catch (const CheckpointError&) {
    throw;
  } catch (const Error& e) {
    throw CheckpointError(path, std::string("cannot serialise: ") + e.what());
  }
  const std::size_t chunk = std::max<std::size_t>(1, opt.chunk_bytes);
  try {
    io::write_file_atomically(
        path,
        [&](const io::ByteSink& sink) {
          for (std::size_t at = 0; at < bytes.size(); at += chunk) {
            const std::size_t n = std::min(chunk, bytes.size() - at);
            sink(bytes.data() + at, n);
            if (opt.on_progress) opt.on_progress(at + n, bytes.size());
          }
        },
        "checkpoint");
  } catch (const CheckpointError&) {
    throw;
  } catch (const Error& e) {
    throw CheckpointError(path, std::string("write failed, the previous file (if any) is unchanged: ") + e.what());
  }
}

// The header of a checkpoint (validated as safetensors and as a retikd checkpoint; no tensor is read).
inline CheckpointInfo read_checkpoint_info(const std::string& path) {
  io::SafetensorsHeader h;
  try {
    h = io::read_safetensors_header(path);
  } catch (const Error& e) {
    throw CheckpointError(path, std::string("unreadable or corrupt: ") + e.what());
  }
  return detail::info_from_metadata(path, h.metadata);
}

// Restores everything `state` registered, and its scalars and metadata, from `path`. Nothing is modified
// unless the whole file matches: the error lists every missing, unexpected or mis-shaped entry.
inline CheckpointInfo load_checkpoint_contents(const io::SafetensorsContents& c, const std::string& path,
                                               TrainState& state);

inline CheckpointInfo load_checkpoint(const std::string& path, TrainState& state) {
  io::SafetensorsContents c;
  try {
    c = io::read_safetensors(path);
  } catch (const Error& e) {
    throw CheckpointError(path, std::string("unreadable or corrupt: ") + e.what());
  }
  return load_checkpoint_contents(c, path, state);
}

// The bytes of a checkpoint of `state` (what save_checkpoint writes): a data-parallel run sends rank 0's state
// to the other ranks this way.
inline std::vector<uint8_t> checkpoint_bytes(const TrainState& state) {
  auto contents = checkpoint_contents(state);
  return io::serialize_safetensors(contents.first, contents.second);
}

// load_checkpoint from contents already read (`path` names their origin in errors).
inline CheckpointInfo load_checkpoint_contents(const io::SafetensorsContents& c, const std::string& path,
                                               TrainState& state) {
  CheckpointInfo info = detail::info_from_metadata(path, c.metadata);
  std::map<std::string, Tensor> all = c.to_map();
  std::vector<std::string> problems;

  // Sections: the registered names must be exactly the file's.
  for (const char* s : detail::kSections) {
    const std::vector<std::string> mine = detail::state_names(state, s);
    const std::vector<std::string>& theirs = info.sections[s];
    for (const auto& n : mine)
      if (std::find(theirs.begin(), theirs.end(), n) == theirs.end())
        problems.push_back(std::string(s) + " \"" + n + "\" is registered but not in the file");
    for (const auto& n : theirs)
      if (std::find(mine.begin(), mine.end(), n) == mine.end())
        problems.push_back(std::string(s) + " \"" + n + "\" is in the file but not registered");
  }
  // Split the tensors by section and owner; anything unaccounted for is a problem too.
  std::map<std::string, bool> used;
  auto take_prefix = [&](const std::string& prefix) {
    std::map<std::string, Tensor> out;
    for (auto it = all.lower_bound(prefix); it != all.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
      out[it->first.substr(prefix.size())] = it->second;
      used[it->first] = true;
    }
    return out;
  };
  auto take_exact = [&](const std::string& name) -> const Tensor* {
    auto it = all.find(name);
    if (it == all.end()) {
      problems.push_back("tensor \"" + name + "\" is missing");
      return nullptr;
    }
    used[name] = true;
    return &it->second;
  };

  std::vector<std::map<std::string, Tensor>> module_states;
  for (const auto& m : state.modules()) {
    module_states.push_back(take_prefix("module/" + m.first + "/"));
    const auto& file = module_states.back();
    std::map<std::string, bool> known;
    for (const auto& nt : m.second->state_dict()) {
      known[nt.first] = true;
      auto it = file.find(nt.first);
      if (it == file.end()) {
        problems.push_back("module \"" + m.first + "\": \"" + nt.first + "\" " + shape_str(nt.second.shape()) +
                           " is missing");
      } else if (it->second.shape() != nt.second.shape()) {
        problems.push_back("module \"" + m.first + "\": \"" + nt.first + "\" is " + shape_str(it->second.shape()) +
                           " in the file but " + shape_str(nt.second.shape()) + " in the model");
      }
    }
    for (const auto& kv : file)
      if (!known.count(kv.first)) problems.push_back("module \"" + m.first + "\": unexpected \"" + kv.first + "\"");
  }
  std::vector<std::map<std::string, Tensor>> optimizer_states;
  std::vector<const Tensor*> optimizer_lrs;
  for (const auto& o : state.optimizers()) {
    optimizer_states.push_back(take_prefix("optimizer/" + o.first + "/"));
    const auto& file = optimizer_states.back();
    const std::vector<const Var*> params = detail::optimizer_params(*o.second);
    for (const auto& kv : file) {
      if (kv.first == "step") {
        if (kv.second.numel() != 1) {
          problems.push_back("optimizer \"" + o.first + "\": \"step\" is not a scalar");
        } else if (!optim::Optimizer::valid_step_count(kv.second.item<double>())) {
          // NaN or 1e300 would reach an integer conversion (undefined behaviour, found by fuzz_checkpoint)
          problems.push_back(str("optimizer \"", o.first, "\": \"step\" is ", kv.second.item<double>(),
                                 ", not a whole number from 0 to 2^53"));
        }
        continue;
      }
      const std::size_t dot = kv.first.find('.');
      int64_t index = -1;
      if (dot == std::string::npos || !detail::parse_int(kv.first.substr(0, dot), index) || index < 0) {
        problems.push_back("optimizer \"" + o.first + "\": unexpected state \"" + kv.first + "\"");
      } else if (static_cast<std::size_t>(index) >= params.size()) {
        problems.push_back("optimizer \"" + o.first + "\": state \"" + kv.first + "\" is for parameter " +
                           std::to_string(index) + " but the optimizer has " + std::to_string(params.size()));
      } else if (kv.second.shape() != params[static_cast<std::size_t>(index)]->shape()) {
        problems.push_back("optimizer \"" + o.first + "\": state \"" + kv.first + "\" is " +
                           shape_str(kv.second.shape()) + " but parameter " + std::to_string(index) + " is " +
                           shape_str(params[static_cast<std::size_t>(index)]->shape()));
      }
    }
    if (!file.count("step")) problems.push_back("optimizer \"" + o.first + "\": \"step\" is missing");
    const Tensor* lr = take_exact("optimizer_lr/" + o.first);
    if (lr && lr->numel() != static_cast<int64_t>(o.second->groups().size())) {
      problems.push_back("optimizer \"" + o.first + "\": the file has " + std::to_string(lr->numel()) +
                         " parameter groups, the optimizer " + std::to_string(o.second->groups().size()));
    } else if (lr) {
      for (double v : lr->to_vector<double>())
        if (!(std::isfinite(v) && v >= 0)) {  // a NaN learning rate would silently ruin the resumed run
          problems.push_back(str("optimizer \"", o.first, "\": learning rate ", v, " is not a finite number >= 0"));
          break;
        }
    }
    optimizer_lrs.push_back(lr);
  }
  auto integer_tensor = [&](const std::string& name, int64_t count) -> const Tensor* {
    const Tensor* t = take_exact(name);
    if (t && (t->dtype() != DType::int64 || t->numel() != count)) {
      problems.push_back("tensor \"" + name + "\" is " + t->describe() + ", expected " + std::to_string(count) +
                         " int64 value(s)");
      return nullptr;
    }
    return t;
  };
  std::vector<const Tensor*> schedule_steps, rng_states, counter_values;
  for (const auto& s : state.schedules()) schedule_steps.push_back(integer_tensor("schedule/" + s.first, 1));
  for (const auto& g : state.generators()) rng_states.push_back(integer_tensor("rng/" + g.first, 6));
  for (const auto& k : state.counters()) counter_values.push_back(integer_tensor("counter/" + k.first, 1));
  for (const auto& kv : all) {
    if (used.count(kv.first)) continue;
    // A tensor of a section entry that is in the file but not registered was reported above; name the rest.
    const std::size_t slash = kv.first.find('/');
    std::string section = slash == std::string::npos ? kv.first : kv.first.substr(0, slash);
    if (section == "optimizer_lr") section = "optimizer";
    const std::string rest = slash == std::string::npos ? "" : kv.first.substr(slash + 1);
    const std::string owner = rest.substr(0, rest.find('/'));
    const auto& listed = info.sections[section];
    const std::vector<std::string> mine = detail::state_names(state, section.c_str());
    const bool reported = std::find(listed.begin(), listed.end(), owner) != listed.end() &&
                          std::find(mine.begin(), mine.end(), owner) == mine.end();
    if (!reported) problems.push_back("unexpected tensor \"" + kv.first + "\"");
  }
  if (!problems.empty()) {
    std::string msg = "does not match the training state (" + std::to_string(problems.size()) + " problem" +
                      (problems.size() == 1 ? "" : "s") + "):";
    const std::size_t shown = std::min<std::size_t>(problems.size(), 500);  // a hostile file may have 200,000
    for (std::size_t i = 0; i < shown; ++i) msg += "\n  " + problems[i];
    if (shown < problems.size()) msg += "\n  ... and " + std::to_string(problems.size() - shown) + " more";
    throw CheckpointError(path, msg);
  }

  // Everything matches: apply.
  try {
    for (std::size_t i = 0; i < state.modules().size(); ++i) state.modules()[i].second->load_state_dict(module_states[i]);
    for (std::size_t i = 0; i < state.optimizers().size(); ++i) {
      optim::Optimizer& o = *state.optimizers()[i].second;
      o.load_state(optimizer_states[i]);
      const std::vector<double> lrs = optimizer_lrs[i]->to_vector<double>();
      for (std::size_t g = 0; g < lrs.size(); ++g) o.groups()[g].lr = lrs[g];
    }
    for (std::size_t i = 0; i < state.schedules().size(); ++i)
      state.schedules()[i].second->set_step(schedule_steps[i]->item<int64_t>());
    for (std::size_t i = 0; i < state.generators().size(); ++i) {
      const std::vector<int64_t> bits = rng_states[i]->to_vector<int64_t>();
      std::vector<uint64_t> words(bits.size());
      std::memcpy(words.data(), bits.data(), bits.size() * sizeof(int64_t));
      state.generators()[i].second->set_state(words);
    }
    for (std::size_t i = 0; i < state.counters().size(); ++i) *state.counters()[i].second = counter_values[i]->item<int64_t>();
  } catch (const Error& e) {
    throw CheckpointError(path, std::string("cannot apply: ") + e.what());
  }
  state.epoch = info.epoch;
  state.global_step = info.global_step;
  state.best_metric = info.best_metric;
  state.best_epoch = info.best_epoch;
  state.best_metric_name = info.best_metric_name;
  state.metadata = info.metadata;
  return info;
}

// ---- run directories -----------------------------------------------------------------------------------------

namespace detail {

inline bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// mkdir -p.
inline void make_directories(const std::string& path) {
  RETIKD_CHECK(!path.empty(), "make_directories: empty path");
  std::string cur;
  std::size_t i = 0;
  while (i <= path.size()) {
    const std::size_t slash = path.find('/', i);
    const std::size_t end = slash == std::string::npos ? path.size() : slash;
    cur = path.substr(0, end);
    if (!cur.empty() && cur != "." && cur != "..") {
      struct stat st;
      if (::stat(cur.c_str(), &st) != 0) {
        if (::mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST)
          fail("cannot create directory ", cur, ": ", std::strerror(errno));
      } else if (!S_ISDIR(st.st_mode)) {
        fail("cannot create directory ", path, ": ", cur, " is not a directory");
      }
    }
    if (slash == std::string::npos) break;
    i = slash + 1;
  }
}

}  // namespace detail

// The checkpoints of one run directory:
//   <dir>/last.safetensors   the state after the latest completed epoch (what --resume continues from)
//   <dir>/best.safetensors   the state after the epoch with the best validation metric so far
// save_epoch() writes best (when the epoch improved it) before last, so that after a crash between the two
// writes, last never claims a best epoch that best.safetensors does not hold: the resumed run recomputes the
// same epoch and writes best again.
class CheckpointManager {
 public:
  // writes = false: a manager that keeps the best-epoch bookkeeping but never touches the directory (the
  // ranks other than 0 of a data-parallel run, which share rank 0's files).
  CheckpointManager(std::string run_dir, std::string metric_name, bool maximize = true, bool writes = true)
      : dir_(std::move(run_dir)), metric_(std::move(metric_name)), maximize_(maximize), writes_(writes) {
    RETIKD_CHECK(!dir_.empty(), "CheckpointManager: empty run directory");
    RETIKD_CHECK(!metric_.empty(), "CheckpointManager: empty metric name");
    while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
    if (!writes_) return;
    detail::make_directories(dir_);
    io::remove_stale_temporaries(dir_, "last.safetensors");
    io::remove_stale_temporaries(dir_, "best.safetensors");
  }
  bool writes() const { return writes_; }

  const std::string& dir() const { return dir_; }
  const std::string& metric_name() const { return metric_; }
  bool maximize() const { return maximize_; }
  std::string last_path() const { return dir_ + "/last.safetensors"; }
  std::string best_path() const { return dir_ + "/best.safetensors"; }
  bool has_last() const { return detail::file_exists(last_path()); }
  bool has_best() const { return detail::file_exists(best_path()); }

  // Whether `metric` beats `best` (a NaN metric never does; anything finite beats a NaN best).
  bool is_better(double metric, double best) const {
    if (!std::isfinite(metric)) return false;
    if (!std::isfinite(best)) return true;
    return maximize_ ? metric > best : metric < best;
  }

  // Header of last.safetensors, checking it was selected by the same metric.
  CheckpointInfo last_info() const {
    CheckpointInfo info = read_checkpoint_info(last_path());
    check_metric(info);
    return info;
  }

  // After epoch `state.epoch` completed with validation `metric`: updates the best fields of `state`, writes
  // best.safetensors when this epoch is the best so far, then last.safetensors. Returns whether it was best.
  // A manager without writes() only updates the best fields.
  bool save_epoch(TrainState& state, double metric, const CheckpointWriteOptions& opt = {}) {
    state.best_metric_name = metric_;
    const bool best = is_better(metric, state.best_metric);
    if (best) {
      state.best_metric = metric;
      state.best_epoch = state.epoch;
      if (writes_) save_checkpoint(best_path(), state, opt);
    }
    if (writes_) save_checkpoint(last_path(), state, opt);
    return best;
  }

  // Restores `state` from last.safetensors (for --resume).
  CheckpointInfo resume(TrainState& state) const {
    check_metric(read_checkpoint_info(last_path()));
    return load_checkpoint(last_path(), state);
  }
  // Restores `state` from best.safetensors (e.g. the weights to evaluate on the test split).
  CheckpointInfo load_best(TrainState& state) const { return load_checkpoint(best_path(), state); }

  // Deletes last, best and any leftover temporaries (a restart from scratch).
  void clear() const {
    for (const auto& p : {last_path(), best_path()})
      if (detail::file_exists(p) && ::unlink(p.c_str()) != 0)
        fail("checkpoint: cannot remove ", p, ": ", std::strerror(errno));
  }

 private:
  void check_metric(const CheckpointInfo& info) const {
    if (info.best_metric_name != metric_)
      throw CheckpointError(info.path, "best epoch was selected by \"" + info.best_metric_name +
                                           "\" but this run selects by \"" + metric_ + "\"");
  }
  std::string dir_, metric_;
  bool maximize_;
  bool writes_ = true;
};

}  // namespace train
}  // namespace retikd
