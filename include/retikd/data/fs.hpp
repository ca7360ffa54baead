// retikd/data/fs.hpp — the few file-system calls the data pipeline needs, on POSIX directly.
//
// std::filesystem would need `-lstdc++fs` with GCC 8 (the newest compiler on the Jetson Nano's JetPack), and
// a header-only library cannot add link flags; opendir/stat are everywhere retikd runs.
#pragma once

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "retikd/core/error.hpp"

namespace retikd {
namespace data {
namespace fs {

struct Entry {
  std::string name;
  bool is_dir = false;
  bool is_file = false;
};

inline bool is_directory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
inline bool is_regular_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
inline bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// Size and modification time (ns), for cache keys; false when the file cannot be stat'ed.
inline bool file_stamp(const std::string& path, int64_t& size, int64_t& mtime_ns) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return false;
  size = static_cast<int64_t>(st.st_size);
  mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
  return true;
}

inline std::string join(const std::string& a, const std::string& b) {
  if (a.empty() || (!b.empty() && b[0] == '/')) return b;
  if (a.back() == '/') return a + b;
  return a + "/" + b;
}

inline std::string dirname(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

inline std::string basename(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

inline std::string extension_lower(const std::string& path) {
  const std::string base = basename(path);
  const std::size_t dot = base.find_last_of('.');
  if (dot == std::string::npos || dot == 0) return "";
  std::string e = base.substr(dot);
  for (char& c : e) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return e;
}

// Entries of a directory (without "." and ".."), sorted by name; throws retikd::Error when it cannot be read.
inline std::vector<Entry> list_dir(const std::string& path) {
  DIR* d = ::opendir(path.c_str());
  RETIKD_CHECK(d != nullptr, path, ": cannot list directory (", std::strerror(errno), ")");
  std::vector<Entry> out;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    Entry en;
    en.name = name;
    const std::string full = join(path, name);
    struct stat st;
    if (::stat(full.c_str(), &st) == 0) {  // follows symlinks, as a user expects of a data folder
      en.is_dir = S_ISDIR(st.st_mode);
    }
    // Anything that is not a folder counts as a file — a dangling link, a FIFO, a socket — so the reader
    // reports it as unreadable instead of it vanishing from the data set.
    en.is_file = !en.is_dir;
    out.push_back(std::move(en));
  }
  ::closedir(d);
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.name < b.name; });
  return out;
}

// Every regular file below `path` (hidden files and folders skipped), sorted, as full paths.
inline void list_files_recursive(const std::string& path, std::vector<std::string>& out) {
  for (const Entry& e : list_dir(path)) {
    if (e.name.empty() || e.name[0] == '.') continue;
    const std::string full = join(path, e.name);
    if (e.is_dir) {
      list_files_recursive(full, out);
    } else if (e.is_file) {
      out.push_back(full);
    }
  }
}

// Writes `bytes` to `path` through a temporary file and a rename, so readers never see half a file.
inline bool write_file_atomic(const std::string& path, const void* bytes, std::size_t size, std::string* error) {
  const std::string tmp = path + ".tmp" + std::to_string(static_cast<long>(::getpid()));
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) {
    if (error) *error = std::strerror(errno);
    return false;
  }
  const bool ok = std::fwrite(bytes, 1, size, f) == size;
  const bool closed = std::fclose(f) == 0;
  if (!ok || !closed || std::rename(tmp.c_str(), path.c_str()) != 0) {
    if (error) *error = std::strerror(errno);
    std::remove(tmp.c_str());
    return false;
  }
  return true;
}

inline bool make_dirs(const std::string& path) {
  if (path.empty() || is_directory(path)) return true;
  const std::string parent = dirname(path);
  if (parent != path && !make_dirs(parent)) return false;
  return ::mkdir(path.c_str(), 0755) == 0 || errno == EEXIST;
}

}  // namespace fs
}  // namespace data
}  // namespace retikd
