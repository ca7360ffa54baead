// retikd/core/paths.hpp — where the shared assets (real fundus data, reference weights) are found, and how
// tests that need them decide between skipping and failing.
//
// The lookup never depends on the working directory (ctest runs in the build folder): RETIKD_SHARED wins,
// then the directory the build system recorded (RETIKD_DEFAULT_SHARED_DIR: the repository's sibling
// ../shared), then ../shared relative to the current directory as a last resort for installed use.
#pragma once

#include <cstdlib>
#include <string>
#include <sys/stat.h>

namespace retikd {

inline bool path_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

inline std::string shared_dir() {
  if (const char* env = std::getenv("RETIKD_SHARED")) {
    if (*env) return env;
  }
#ifdef RETIKD_DEFAULT_SHARED_DIR
  if (path_exists(RETIKD_DEFAULT_SHARED_DIR)) return RETIKD_DEFAULT_SHARED_DIR;
#endif
  return "../shared";
}

// A file under the shared directory: shared_path("data/fundus4/split.tsv").
inline std::string shared_path(const std::string& relative) { return shared_dir() + "/" + relative; }

// True when the CI environment variable is set (to anything but "" or "0" / "false"): tests that read
// ../shared must then fail, not skip, when the files are missing.
inline bool running_in_ci() {
  const char* ci = std::getenv("CI");
  if (!ci || !*ci) return false;
  const std::string v(ci);
  return v != "0" && v != "false" && v != "FALSE";
}

}  // namespace retikd
