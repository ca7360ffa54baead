// tests/onnx_peer.hpp — running tools/onnx_peer.py (onnxruntime, PyPI) from a test: inputs written as raw float32,
// onnxruntime's first output read back. Python comes from $RETIKD_PYTHON (scripts/test.sh points it at the
// virtual environment it fills from PyPI), else python3. When onnxruntime or numpy cannot be imported the check
// fails under CI (running_in_ci) and is skipped with the reason elsewhere. test_onnx.cpp and test_pipeline.cpp
// use it.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <retikd/core/paths.hpp>
#include <retikd/core/tensor.hpp>

namespace retikd {
namespace peer {

inline std::string python() {
  const char* p = std::getenv("RETIKD_PYTHON");
  return p && *p ? p : "python3";
}

inline std::string source_dir() {
#ifdef RETIKD_SOURCE_DIR
  return RETIKD_SOURCE_DIR;
#else
  return ".";
#endif
}

inline std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Runs `cmd` through the shell; returns the exit status and, in *out, what it printed (stdout and stderr).
inline int run_command(const std::string& cmd, std::string* out) {
  std::FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  std::string text;
  while (std::fgets(buf, sizeof buf, p)) text += buf;
  const int status = ::pclose(p);
  if (out) *out = text;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Whether onnxruntime and numpy import; the reason when they do not. Cached.
inline bool available(std::string* why = nullptr) {
  static int state = -1;
  static std::string reason;
  if (state < 0) {
    std::string out;
    const int rc = run_command(quote(python()) + " -c 'import numpy, onnxruntime'", &out);
    state = rc == 0 ? 1 : 0;
    reason = python() + " cannot import onnxruntime / numpy (" + (out.empty() ? "exit " + std::to_string(rc) : out) +
             "): pip install onnxruntime numpy, or set RETIKD_PYTHON";
  }
  if (why) *why = reason;
  return state == 1;
}

// True when the peer can run; otherwise fails the test under CI, or says why it is skipped.
inline bool require() {
  std::string why;
  if (available(&why)) return true;
  if (running_in_ci()) FAIL("CI: ", why);
  MESSAGE("skipped: ", why);
  return false;
}

inline std::string temp_path(const std::string& tag) {
  static int counter = 0;
  return "/tmp/retikd_onnx_peer_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" + tag;
}

// Several models through one start of tools/onnx_peer.py (Python and onnxruntime load once):
//   peer::Batch b;  std::size_t k = b.add("m.onnx", x, 4);  b.run();  Tensor y = b.output(k);
class Batch {
 public:
  // Queues `model` on input x (float32, NCHW) with `outputs_per_image` outputs; returns the job's index.
  std::size_t add(const std::string& model, const Tensor& x, int64_t outputs_per_image) {
    Job j;
    j.model = model;
    j.in = temp_path("x.f32");
    j.out = temp_path("y.f32");
    j.n = x.size(0);
    j.k = outputs_per_image;
    const Tensor xc = x.to(DType::float32).contiguous();
    std::ofstream f(j.in, std::ios::binary);
    f.write(static_cast<const char*>(xc.raw_data()), static_cast<std::streamsize>(xc.numel() * 4));
    jobs_.push_back(j);
    return jobs_.size() - 1;
  }
  // Runs every queued job (with Python's onnx.checker full check where the onnx package is installed);
  // REQUIREs that the script succeeds.
  void run() {
    std::string cmd = quote(python()) + " " + quote(source_dir() + "/tools/onnx_peer.py") + " --check";
    for (const Job& j : jobs_) cmd += " --run " + quote(j.model) + " " + quote(j.in) + " " + quote(j.out);
    std::string log;
    const int rc = run_command(cmd, &log);
    for (const Job& j : jobs_) std::remove(j.in.c_str());
    REQUIRE_MESSAGE(rc == 0, "tools/onnx_peer.py failed (exit ", rc, "): ", log);
    for (Job& j : jobs_) {
      std::ifstream f(j.out, std::ios::binary | std::ios::ate);
      REQUIRE_MESSAGE(f.good(), "no output from onnxruntime for ", j.model);
      const std::streamsize bytes = f.tellg();
      f.seekg(0);
      REQUIRE(bytes == static_cast<std::streamsize>(j.n * j.k * 4));
      j.y = Tensor::empty({j.n, j.k});
      f.read(static_cast<char*>(j.y.raw_data()), bytes);
      std::remove(j.out.c_str());
    }
  }
  const Tensor& output(std::size_t job) const { return jobs_.at(job).y; }

 private:
  struct Job {
    std::string model, in, out;
    int64_t n = 0, k = 0;
    Tensor y;
  };
  std::vector<Job> jobs_;
};

// One model: onnxruntime's output (N, K) for input x.
inline Tensor run(const std::string& model, const Tensor& x, int64_t outputs_per_image) {
  Batch b;
  b.add(model, x, outputs_per_image);
  b.run();
  return b.output(0);
}

}  // namespace peer
}  // namespace retikd
