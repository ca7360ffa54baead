// retikd/data/progress.hpp — a progress bar for long loops (decoding a data set, an epoch).
//
// On a terminal it redraws one line in place, at most ten times a second:
//   decode train  [##########..........]  1041/2082  50%  812.4 img/s  ETA 0:01
// When the stream is not a terminal (a log file, CI) it prints plain lines instead — at each 10 % step that
// comes at least 2 s after the previous line, and at least every 30 s — so logs stay short and readable.
// finish() prints the total count, time and rate.
// add() may be called from several threads.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>

namespace retikd {
namespace data {

inline std::string format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e7) return "?";
  const long s = static_cast<long>(std::lround(seconds));
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  }
  return buf;
}

class ProgressBar {
 public:
  enum class Mode { automatic, terminal, lines, silent };

  ProgressBar(std::string label, int64_t total, std::string unit = "img", std::FILE* out = stderr,
              Mode mode = Mode::automatic)
      : label_(std::move(label)), unit_(std::move(unit)), total_(total), out_(out),
        start_(std::chrono::steady_clock::now()), last_draw_(start_) {
    if (mode == Mode::automatic) mode = out && ::isatty(::fileno(out)) ? Mode::terminal : Mode::lines;
    mode_ = out ? mode : Mode::silent;
  }
  ~ProgressBar() { finish(); }
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void add(int64_t n = 1) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (finished_) return;
    done_ += n;
    const auto now = std::chrono::steady_clock::now();
    const double since = std::chrono::duration<double>(now - last_draw_).count();
    if (mode_ == Mode::terminal) {
      if (since >= 0.1 || done_ == total_) draw_terminal(now);
    } else if (mode_ == Mode::lines) {
      const int64_t step = total_ > 0 ? std::max<int64_t>(1, total_ / 10) : 0;
      if ((step && done_ / step != last_line_ / step && since >= line_interval_) || since >= 30.0) draw_line(now);
    }
  }

  // Prints the final summary once: "decode train: 2082 img in 0:03 (694.0 img/s)".
  void finish() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (finished_) return;
    finished_ = true;
    if (mode_ == Mode::silent) return;
    const double secs = elapsed();
    if (mode_ == Mode::terminal) std::fputs("\r\033[K", out_);
    std::fprintf(out_, "%s: %lld %s in %s (%.1f %s/s)\n", label_.c_str(), static_cast<long long>(done_), unit_.c_str(),
                 format_duration(secs).c_str(), secs > 0 ? done_ / secs : 0.0, unit_.c_str());
    std::fflush(out_);
  }

  // Lines mode: the least time between two progress lines (default 2 s).
  void set_line_interval(double seconds) {
    std::lock_guard<std::mutex> lock(mutex_);
    line_interval_ = seconds;
  }

  int64_t done() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return done_;
  }
  Mode mode() const { return mode_; }

 private:
  double elapsed() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }
  // Rate and ETA from the whole run so far (stable, and right for a steady loader).
  void stats(std::chrono::steady_clock::time_point now, double& rate, double& eta) const {
    const double secs = std::chrono::duration<double>(now - start_).count();
    rate = secs > 0 ? done_ / secs : 0.0;
    eta = rate > 0 && total_ > 0 ? (total_ - done_) / rate : -1.0;
  }
  void draw_terminal(std::chrono::steady_clock::time_point now) {
    last_draw_ = now;
    double rate, eta;
    stats(now, rate, eta);
    const int width = 20;
    const int filled = total_ > 0 ? static_cast<int>(width * std::min<int64_t>(done_, total_) / total_) : 0;
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.append(static_cast<std::size_t>(width - filled), '.');
    std::fprintf(out_, "\r\033[K%s [%s] %lld/%lld %3d%% %.1f %s/s ETA %s", label_.c_str(), bar.c_str(),
                 static_cast<long long>(done_), static_cast<long long>(total_),
                 total_ > 0 ? static_cast<int>(100 * done_ / total_) : 0, rate, unit_.c_str(),
                 format_duration(eta).c_str());
    std::fflush(out_);
  }
  void draw_line(std::chrono::steady_clock::time_point now) {
    last_draw_ = now;
    last_line_ = done_;
    double rate, eta;
    stats(now, rate, eta);
    std::fprintf(out_, "%s: %lld/%lld (%d%%) %.1f %s/s ETA %s\n", label_.c_str(), static_cast<long long>(done_),
                 static_cast<long long>(total_), total_ > 0 ? static_cast<int>(100 * done_ / total_) : 0, rate,
                 unit_.c_str(), format_duration(eta).c_str());
    std::fflush(out_);
  }

  std::string label_, unit_;
  int64_t total_;
  std::FILE* out_;
  Mode mode_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  mutable std::mutex mutex_;
  int64_t done_ = 0, last_line_ = 0;
  double line_interval_ = 2.0;
  bool finished_ = false;
};

}  // namespace data
}  // namespace retikd
