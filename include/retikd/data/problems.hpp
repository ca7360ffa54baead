// retikd/data/problems.hpp — what can be wrong with input data, and what the pipeline does about it.
//
// Bad input never crashes and never silently changes the data. Every problem — a truncated, empty,
// non-image or unreadable file, an unknown class folder or label, a manifest row whose file is missing, a
// manifest without a required column — is a Problem that names the file. The policy decides what happens:
//  - BadInput::error (default): collect the problems of a whole scan, then throw one DataError that lists
//    them, before any training starts;
//  - BadInput::skip (`--skip-bad`): drop the offending sample, print one warning per file, and count it in
//    the DataReport that the run's report prints.
// Some findings are warnings under both policies because nothing is dropped for them and the data is not
// changed: a folder link that is not followed (a loop, or a link into another class's folder) and identical
// image content in rows of different splits or classes. They go to the same sink as notes (DataReport::note)
// and are kept for the run's report.
// Problems that leave nothing to skip (a manifest missing a column, a root that does not exist) are errors
// under both policies.
#pragma once

#include <algorithm>
#include <array>
#include <cstdio>
#include <functional>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "retikd/core/error.hpp"

namespace retikd {
namespace data {

enum class BadInput { error, skip };

inline const char* bad_input_name(BadInput p) { return p == BadInput::error ? "error" : "skip"; }

enum class ProblemKind {
  unreadable,      // cannot open or read the file
  empty,           // zero bytes
  not_an_image,    // neither JPEG nor PNG by content
  truncated,       // the file ends before the image does
  corrupt,         // structurally broken or undecodable
  unknown_class,   // a class folder whose name is no known class
  unknown_label,   // a manifest label that is no known class
  missing_file,    // a manifest row whose file does not exist
  bad_row,         // a manifest row with too few fields, an empty path, or an unknown split
  duplicate,       // a path listed twice in a manifest
  missing_column,  // a manifest without a required column (never skippable)
  not_found,       // a dataset root or manifest that does not exist (never skippable)
  too_large,       // an image above the pixel limit (data/decode.hpp), refused before decoding
  outside_root,    // a manifest path that leads outside the data root (and outside paths were not allowed)
};
constexpr int kNumProblemKinds = 14;

inline const char* problem_kind_name(ProblemKind k) {
  switch (k) {
    case ProblemKind::unreadable: return "unreadable";
    case ProblemKind::empty: return "empty";
    case ProblemKind::not_an_image: return "not an image";
    case ProblemKind::truncated: return "truncated";
    case ProblemKind::corrupt: return "corrupt";
    case ProblemKind::unknown_class: return "unknown class folder";
    case ProblemKind::unknown_label: return "unknown label";
    case ProblemKind::missing_file: return "missing file";
    case ProblemKind::bad_row: return "bad manifest row";
    case ProblemKind::duplicate: return "duplicate entry";
    case ProblemKind::missing_column: return "missing column";
    case ProblemKind::not_found: return "not found";
    case ProblemKind::too_large: return "too large";
    case ProblemKind::outside_root: return "outside the data root";
  }
  return "unknown";
}

struct Problem {
  std::string path;  // the file (or folder, or manifest) at fault
  ProblemKind kind;
  std::string message;  // what is wrong, without the path

  std::string to_string() const { return path.empty() ? message : path + ": " + message; }
};

// Thrown for bad input under the error policy; what() names the file(s) and the problem(s).
class DataError : public Error {
 public:
  explicit DataError(Problem p) : Error(p.to_string()), problems_{std::move(p)} {}
  DataError(const std::string& what, std::vector<Problem> problems)
      : Error(what), problems_(std::move(problems)) {}
  const std::vector<Problem>& problems() const { return problems_; }
  // The first problem's kind (every DataError carries at least one).
  ProblemKind kind() const { return problems_.front().kind; }

 private:
  std::vector<Problem> problems_;
};

[[noreturn]] inline void throw_problem(const std::string& path, ProblemKind kind, const std::string& message) {
  throw DataError(Problem{path, kind, message});
}

// One error for a list of problems: "3 bad inputs in <where> (use --skip-bad to skip them):\n  a: ...".
inline DataError make_data_error(const std::string& where, std::vector<Problem> problems) {
  std::ostringstream os;
  if (problems.size() == 1) {
    os << problems[0].to_string();
  } else {
    os << problems.size() << " bad inputs in " << where << ":";
    const std::size_t shown = std::min<std::size_t>(problems.size(), 20);
    for (std::size_t i = 0; i < shown; ++i) os << "\n  " << problems[i].to_string();
    if (shown < problems.size()) os << "\n  ... and " << problems.size() - shown << " more";
  }
  os << "\n(the skip policy, e.g. --skip-bad, drops such inputs with a warning and counts them)";
  return DataError(os.str(), std::move(problems));
}

// Where skip-policy warnings go; default: one line on stderr. Replaceable (tests collect them).
using WarningSink = std::function<void(const std::string&)>;
inline WarningSink stderr_warnings() {
  return [](const std::string& line) { std::fprintf(stderr, "warning: %s\n", line.c_str()); };
}

// The run's record of skipped inputs: thread-safe, one warning per file and problem (a file met again in a later
// pass or epoch is not warned about again), counts per kind.
class DataReport {
 public:
  explicit DataReport(WarningSink sink = stderr_warnings()) : sink_(std::move(sink)) {}
  DataReport(const DataReport& o) {
    std::lock_guard<std::mutex> lock(o.mutex_);
    problems_ = o.problems_;
    warned_ = o.warned_;
    counts_ = o.counts_;
    notes_ = o.notes_;
    noted_ = o.noted_;
    sink_ = o.sink_;
  }
  DataReport& operator=(const DataReport& o) {
    if (this == &o) return *this;
    std::scoped_lock lock(mutex_, o.mutex_);
    problems_ = o.problems_;
    warned_ = o.warned_;
    counts_ = o.counts_;
    notes_ = o.notes_;
    noted_ = o.noted_;
    sink_ = o.sink_;
    return *this;
  }

  void set_sink(WarningSink sink) {
    std::lock_guard<std::mutex> lock(mutex_);
    sink_ = std::move(sink);
  }
  // Records a skipped input; warns the first time a given file is reported.
  void skip(const Problem& p) {
    WarningSink sink;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!warned_.insert(p.path + '\n' + p.message).second) return;
      problems_.push_back(p);
      ++counts_[static_cast<int>(p.kind)];
      sink = sink_;
    }
    if (sink) sink("skipping " + p.to_string());
  }
  // Records a warning that drops nothing (see the top of this file); sent to the sink once.
  void note(const std::string& line) {
    WarningSink sink;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!noted_.insert(line).second) return;
      notes_.push_back(line);
      sink = sink_;
    }
    if (sink) sink(line);
  }
  std::vector<std::string> notes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return notes_;
  }

  // Adds another report's problems (those for files not yet recorded) and notes without warning again.
  void absorb(const DataReport& other) {
    if (&other == this) return;
    const std::vector<Problem> theirs = other.problems();
    const std::vector<std::string> their_notes = other.notes();
    std::lock_guard<std::mutex> lock(mutex_);
    for (const Problem& p : theirs) {
      if (!warned_.insert(p.path + '\n' + p.message).second) continue;
      problems_.push_back(p);
      ++counts_[static_cast<int>(p.kind)];
    }
    for (const std::string& n : their_notes)
      if (noted_.insert(n).second) notes_.push_back(n);
  }

  std::vector<Problem> problems() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return problems_;
  }
  int64_t skipped() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return static_cast<int64_t>(problems_.size());
  }
  int64_t count(ProblemKind k) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return counts_[static_cast<int>(k)];
  }
  // "skipped 3 bad inputs (2 truncated, 1 unknown label)" or "no bad inputs".
  std::string summary() const {
    std::lock_guard<std::mutex> lock(mutex_);
    if (problems_.empty()) return "no bad inputs";
    std::ostringstream os;
    os << "skipped " << problems_.size() << " bad input" << (problems_.size() == 1 ? "" : "s") << " (";
    bool first = true;
    for (int k = 0; k < kNumProblemKinds; ++k) {
      if (!counts_[k]) continue;
      os << (first ? "" : ", ") << counts_[k] << " " << problem_kind_name(static_cast<ProblemKind>(k));
      first = false;
    }
    os << ")";
    return os.str();
  }

 private:
  mutable std::mutex mutex_;
  std::vector<Problem> problems_;
  std::set<std::string> warned_;
  std::array<int64_t, kNumProblemKinds> counts_{};
  std::vector<std::string> notes_;  // in order
  std::set<std::string> noted_;     // the same, for de-duplication
  WarningSink sink_;
};

// Applies the policy to the problems of one scan: throws under `error` (if any), else records them.
inline void apply_policy(BadInput policy, const std::string& where, std::vector<Problem> problems,
                         DataReport& report) {
  if (problems.empty()) return;
  if (policy == BadInput::error) throw make_data_error(where, std::move(problems));
  for (const Problem& p : problems) report.skip(p);
}

}  // namespace data
}  // namespace retikd
