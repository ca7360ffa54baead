// tests/fuzz/fuzz_target.hpp — what every fuzz harness (tests/fuzz/fuzz_<target>.cpp) shares, so one source
// serves twice:
//  - built by clang with -fsanitize=fuzzer,address,undefined (tests/fuzz/CMakeLists.txt, scripts/fuzz.sh),
//    RETIKD_FUZZ_TARGET(name) defines libFuzzer's entry point LLVMFuzzerTestOneInput;
//  - included by tests/test_hostile_input.cpp with RETIKD_FUZZ_REPLAY defined, it registers the harness under
//    its name, and the doctest suite replays the committed corpus and crash regressions through it with the
//    ordinary compiler (and under ASan/UBSan in scripts/sanitize.sh).
//
// A harness feeds the bytes to one reader and accepts exactly two outcomes: success (after checking what the
// result promises, FUZZ_REQUIRE) or a retikd::Error (the reader refused the input with a message). Anything
// else — another exception type (std::bad_alloc, std::length_error), a crash, a sanitizer report, a hang —
// is a finding.
#pragma once

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "retikd/core/error.hpp"

namespace retikd {
namespace fuzz {

using TargetFn = int (*)(const uint8_t*, std::size_t);

inline std::map<std::string, TargetFn>& registry() {
  static std::map<std::string, TargetFn> r;
  return r;
}
inline bool register_target(const char* name, TargetFn fn) {
  registry()[name] = fn;
  return true;
}

// A broken promise of a reader that accepted its input: abort, which libFuzzer reports with the input (and
// the replay test sees as a crash of the suite, naming the file it was replaying).
#define FUZZ_REQUIRE(cond)                                                                              \
  do {                                                                                                  \
    if (!(cond)) {                                                                                      \
      std::fprintf(stderr, "fuzz: %s:%d: requirement failed: %s\n", __FILE__, __LINE__, #cond);          \
      std::abort();                                                                                     \
    }                                                                                                   \
  } while (0)

// The bytes as a file the path-based loaders can open: an in-memory file (memfd) reached through
// /proc/self/fd, rewritten for each input, so no disk is touched on a million runs; a temporary file where
// memfd is missing.
class InputFile {
 public:
  InputFile() {
#ifdef MFD_CLOEXEC
    fd_ = ::memfd_create("retikd-fuzz", MFD_CLOEXEC);
#endif
    if (fd_ >= 0) {
      path_ = "/proc/self/fd/" + std::to_string(fd_);
    } else {
      char tmpl[] = "/tmp/retikd-fuzz-XXXXXX";
      fd_ = ::mkstemp(tmpl);
      RETIKD_CHECK(fd_ >= 0, "fuzz: cannot create a temporary file");
      path_ = tmpl;
      unlink_ = true;
    }
  }
  ~InputFile() {
    if (fd_ >= 0) ::close(fd_);
    if (unlink_) ::unlink(path_.c_str());
  }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  const std::string& write(const uint8_t* data, std::size_t size) {
    RETIKD_CHECK(::ftruncate(fd_, 0) == 0, "fuzz: ftruncate failed");
    std::size_t at = 0;
    while (at < size) {
      const ssize_t n = ::pwrite(fd_, data + at, size - at, static_cast<off_t>(at));
      RETIKD_CHECK(n > 0, "fuzz: write failed");
      at += static_cast<std::size_t>(n);
    }
    return path_;
  }

 private:
  int fd_ = -1;
  std::string path_;
  bool unlink_ = false;
};

}  // namespace fuzz
}  // namespace retikd

#ifdef RETIKD_FUZZ_REPLAY
#define RETIKD_FUZZ_TARGET(name)                                                                 \
  static int retikd_fuzz_##name(const uint8_t*, std::size_t);                                    \
  static const bool retikd_fuzz_registered_##name =                                             \
      ::retikd::fuzz::register_target(#name, &retikd_fuzz_##name);                               \
  static int retikd_fuzz_##name
#else
#define RETIKD_FUZZ_TARGET(name) extern "C" int LLVMFuzzerTestOneInput
#endif

// The one outcome besides success that a harness accepts.
#define FUZZ_EXPECT_ERROR_OR_SUCCESS(...) \
  try {                                   \
    __VA_ARGS__;                          \
  } catch (const ::retikd::Error&) {      \
  }
