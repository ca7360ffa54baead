// retikd/train/run_log.hpp — the JSON-lines log of a training run (one object per epoch, appended and
// flushed as each epoch ends) and the NaN/Inf guard that stops a diverging run with a message saying where.
//
// Resume consistency: a run appends the epoch's log line *before* it writes that epoch's checkpoint. A run
// killed between the two leaves a line for an epoch the checkpoint does not hold; a run killed while writing
// leaves a torn last line. Opening the log for a run that restarts after `completed_epochs` therefore keeps
// exactly the records of epochs 1..completed_epochs (rewriting the file atomically when it drops anything),
// and append() refuses an epoch that is not after the last one, so a resumed run never duplicates an epoch.
//
// Records: {"stage": ..., "epoch": e, "train_loss": ..., "train_accuracy": ..., "val_<metric>": ..., "lr_<opt>": ...,
// "seconds": ..., "best": true|false, "best_metric": ...}. Event records ({"event": "non_finite_loss", ...})
// note why a run stopped; they carry the epoch they happened in and are dropped on resume like any other.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "retikd/core/error.hpp"
#include "retikd/core/tensor.hpp"
#include "retikd/io/atomic_file.hpp"
#include "retikd/io/json.hpp"
#include "retikd/metrics/report.hpp"

namespace retikd {
namespace train {

// ---- non-finite losses -----------------------------------------------------------------------------------------

// A loss (or other monitored value) became NaN or ±Inf. what():
//   "non-finite loss in stage 'student_kd', epoch 3, step 17: loss = nan. <note>"
class NonFiniteLossError : public Error {
 public:
  NonFiniteLossError(std::string stage, int64_t epoch, int64_t step, std::string what, double value,
                     const std::string& note = "")
      : Error(message(stage, epoch, step, what, value, note)),
        stage_(std::move(stage)), what_(std::move(what)), epoch_(epoch), step_(step), value_(value), note_(note) {}

  const std::string& stage() const { return stage_; }
  const std::string& quantity() const { return what_; }
  int64_t epoch() const { return epoch_; }
  int64_t step() const { return step_; }  // -1: not tied to one step (an epoch mean, a validation metric)
  double value() const { return value_; }
  const std::string& note() const { return note_; }
  // The same error with `note` appended (the loop adds which checkpoint was kept).
  NonFiniteLossError with_note(const std::string& note) const {
    return NonFiniteLossError(stage_, epoch_, step_, what_, value_, note_.empty() ? note : note_ + " " + note);
  }

  static std::string value_text(double v) {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    return io::format_double(v);
  }

 private:
  static std::string message(const std::string& stage, int64_t epoch, int64_t step, const std::string& what,
                             double value, const std::string& note) {
    std::string m = "non-finite " + what + " in stage '" + stage + "', epoch " + std::to_string(epoch);
    if (step >= 0) m += ", step " + std::to_string(step);
    m += ": " + what + " = " + value_text(value) + ".";
    if (!note.empty()) m += " " + note;
    return m;
  }
  std::string stage_, what_;
  int64_t epoch_, step_;
  double value_;
  std::string note_;
};

// Throws NonFiniteLossError unless `value` is finite.
inline void check_finite_loss(double value, const std::string& stage, int64_t epoch, int64_t step,
                              const std::string& what = "loss") {
  if (!std::isfinite(value)) throw NonFiniteLossError(stage, epoch, step, what, value);
}
// The same for every element of a tensor (any device, any floating dtype); reports the first bad one.
inline void check_finite_loss(const Tensor& value, const std::string& stage, int64_t epoch, int64_t step,
                              const std::string& what = "loss") {
  for (double v : value.to_vector<double>())
    if (!std::isfinite(v)) throw NonFiniteLossError(stage, epoch, step, what, v);
}

// ---- the JSON-lines log --------------------------------------------------------------------------------------

struct LogContents {
  std::vector<io::Json> records;
  bool torn_tail = false;  // the last line had no newline and did not parse (a write cut short)
};

// Parses a JSON-lines file. A torn last line is reported (torn_tail) rather than fatal; any other bad line
// throws, naming the file and line.
inline LogContents read_log_file(const std::string& path) {
  LogContents out;
  const std::string text = io::read_text_file(path, "run log");
  std::size_t begin = 0, line_no = 0;
  while (begin < text.size()) {
    ++line_no;
    const std::size_t nl = text.find('\n', begin);
    const bool complete = nl != std::string::npos;
    const std::string line = text.substr(begin, complete ? nl - begin : std::string::npos);
    begin = complete ? nl + 1 : text.size();
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      io::Json j = io::parse_json(line, "run log: " + path + ": line " + std::to_string(line_no));
      RETIKD_CHECK(j.is_object() && j.contains("epoch") && j.at("epoch").is_integer(), "run log: ", path,
                   ": line ", line_no, " is not an object with an integer \"epoch\"");
      out.records.push_back(std::move(j));
    } catch (const Error&) {
      if (!complete) {
        out.torn_tail = true;
        break;
      }
      throw;
    }
  }
  return out;
}

inline bool is_event_record(const io::Json& r) { return r.contains("event"); }

class RunLog {
 public:
  // Opens (creating if needed) the log of a run that continues after `completed_epochs` (0: a fresh run),
  // keeping only the records of epochs <= completed_epochs.
  RunLog(std::string path, int64_t completed_epochs) : path_(std::move(path)) {
    std::vector<io::Json> keep;
    bool rewrite = false;
    if (::access(path_.c_str(), F_OK) == 0) {
      LogContents c = read_log_file(path_);
      rewrite = c.torn_tail;
      for (auto& r : c.records) {
        if (r.at("epoch").as_int() <= completed_epochs) {
          keep.push_back(std::move(r));
        } else {
          rewrite = true;
        }
      }
    }
    if (rewrite) {
      std::string text;
      for (const auto& r : keep) text += r.dump() + "\n";
      io::write_file_atomically(path_, [&](const io::ByteSink& sink) { sink(text.data(), text.size()); }, "run log");
    }
    for (const auto& r : keep)
      if (!is_event_record(r)) last_epoch_ = std::max(last_epoch_, r.at("epoch").as_int());
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("run log: ", path_, ": cannot open for appending: ", std::strerror(errno));
  }
  ~RunLog() {
    if (fd_ >= 0) ::close(fd_);
  }
  RunLog(const RunLog&) = delete;
  RunLog& operator=(const RunLog&) = delete;

  // Appends one record as a line and pushes it to disk (write + fdatasync). An epoch record must carry an
  // integer "epoch" after the last one logged.
  void append(const io::Json& record) {
    RETIKD_CHECK(record.is_object() && record.contains("epoch") && record.at("epoch").is_integer(), "run log: ",
                 path_, ": a record needs an integer \"epoch\"");
    const int64_t e = record.at("epoch").as_int();
    const bool event = is_event_record(record);
    if (!event)
      RETIKD_CHECK(e > last_epoch_, "run log: ", path_, ": epoch ", e, " is already logged (last epoch ",
                   last_epoch_, "); a resumed run must not repeat epochs");
    const std::string line = record.dump() + "\n";
    const char* p = line.data();
    std::size_t left = line.size();
    while (left > 0) {
      const ssize_t n = ::write(fd_, p, left);
      if (n < 0) {
        if (errno == EINTR) continue;
        fail("run log: ", path_, ": write failed: ", std::strerror(errno));
      }
      p += n;
      left -= static_cast<std::size_t>(n);
    }
    (void)::fdatasync(fd_);
    if (!event) last_epoch_ = e;
  }

  int64_t last_epoch() const { return last_epoch_; }
  const std::string& path() const { return path_; }
  std::vector<io::Json> records() const { return read_log_file(path_).records; }

 private:
  std::string path_;
  int fd_ = -1;
  int64_t last_epoch_ = 0;
};

// The per-epoch curves of a log (event records skipped; a missing value is NaN).
inline metrics::TrainingCurves training_curves(const std::vector<io::Json>& records) {
  metrics::TrainingCurves t;
  auto value = [](const io::Json& r, const char* key) {
    const io::Json* v = r.find(key);
    return v && (v->is_number() || v->is_null()) ? v->as_number() : std::numeric_limits<double>::quiet_NaN();
  };
  for (const auto& r : records) {
    if (is_event_record(r)) continue;
    t.epoch.push_back(static_cast<double>(r.at("epoch").as_int()));
    t.train_loss.push_back(value(r, "train_loss"));
    t.val_loss.push_back(value(r, "val_loss"));
    t.train_accuracy.push_back(value(r, "train_accuracy"));
    t.val_accuracy.push_back(value(r, "val_accuracy"));
    if (!r.is_object()) continue;
    for (const auto& m : r.members()) {
      if (m.first.compare(0, 6, "train_") != 0 || m.first == "train_loss" || m.first == "train_accuracy" ||
          !(m.second.is_number() || m.second.is_null()))
        continue;
      auto& v = t.extra[m.first];
      v.resize(t.epoch.size() - 1, std::numeric_limits<double>::quiet_NaN());
      v.push_back(m.second.as_number());
    }
  }
  for (auto& kv : t.extra) kv.second.resize(t.epoch.size(), std::numeric_limits<double>::quiet_NaN());
  return t;
}
inline metrics::TrainingCurves read_training_curves(const std::string& log_path) {
  return training_curves(read_log_file(log_path).records);
}

}  // namespace train
}  // namespace retikd
