// retikd/autograd/gpu_op_profiler.hpp — GPU time per op of a host-driven sequence (a training step, a
// forward), from one CUDA event recorded after each differentiable op's forward and backward
// (autograd/op_observer.hpp) and at explicit marks (e.g. "optimizer step"). The time between two consecutive
// events is charged to the op that ended the interval: kernels of non-differentiable helpers and any GPU idle
// time while the host works (a loss read back with item(), host-side bookkeeping) land on the next op, which
// is what a step's wall time is made of.
//
//   GpuOpProfiler prof(0);
//   prof.start();  distiller.step(...);  prof.stop();
//   std::printf("%s", prof.report(25).c_str());
//
// Only for profiling runs (an event per op); single-threaded use. Beside op_observer.hpp rather than in cuda/:
// it observes the autograd tape, and cuda/ (the launchers' declarations) sits below autograd.
#pragma once

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "retikd/autograd/op_observer.hpp"
#include "retikd/cuda/runtime.hpp"

namespace retikd {

class GpuOpProfiler : public OpObserver {
 public:
  explicit GpuOpProfiler(int device = 0) : device_(device) {}
  ~GpuOpProfiler() override {
    stop();
    for (void* e : events_) cuda::event_destroy(e);
  }
  GpuOpProfiler(const GpuOpProfiler&) = delete;
  GpuOpProfiler& operator=(const GpuOpProfiler&) = delete;

  // Clears earlier records, records the starting event and becomes the op observer.
  void start() {
    used_ = 0;
    labels_.clear();
    record("(start)");
    set_op_observer(this);
  }
  void stop() {
    if (op_observer() == this) set_op_observer(nullptr);
  }
  // An explicit boundary: the time since the previous event is charged to `what`.
  void mark(const std::string& what) { record(what); }
  void on_op(const char* op, bool backward) override { record(std::string(op) + (backward ? " (bwd)" : "")); }

  // Per label: calls, total GPU ms and share of the whole, largest first; at most `top` rows.
  std::string report(std::size_t top = 25) const {
    std::map<std::string, std::pair<int, double>> by;
    double total = 0.0;
    for (std::size_t i = 1; i < used_; ++i) {
      const double ms = cuda::event_elapsed_ms(events_[i - 1], events_[i]);
      auto& r = by[labels_[i]];
      r.first += 1;
      r.second += ms;
      total += ms;
    }
    std::vector<std::pair<std::string, std::pair<int, double>>> rows(by.begin(), by.end());
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.second > b.second.second; });
    std::string out;
    char line[256];
    std::snprintf(line, sizeof line, "%-34s %7s %10s %7s\n", "op", "calls", "GPU ms", "share");
    out += line;
    for (std::size_t i = 0; i < rows.size() && i < top; ++i) {
      std::snprintf(line, sizeof line, "%-34.34s %7d %10.3f %6.1f%%\n", rows[i].first.c_str(), rows[i].second.first,
                    rows[i].second.second, total > 0 ? 100.0 * rows[i].second.second / total : 0.0);
      out += line;
    }
    std::snprintf(line, sizeof line, "%-34s %7zu %10.3f\n", "total", used_ > 0 ? used_ - 1 : 0, total);
    out += line;
    return out;
  }

 private:
  void record(const std::string& label) {
    if (used_ == events_.size()) events_.push_back(cuda::event_create(device_));
    cuda::event_record(events_[used_], device_);
    if (labels_.size() <= used_) labels_.resize(used_ + 1);
    labels_[used_] = label;
    ++used_;
  }
  int device_;
  std::vector<void*> events_;
  std::vector<std::string> labels_;
  std::size_t used_ = 0;
};

}  // namespace retikd
