// retikd/io/atomic_file.hpp — write a file so that a reader (or a crash) never sees half of it.
//
// The bytes go to a temporary file next to the target (same directory, so the same file system), which is
// flushed to disk (fsync) and then renamed over the target: rename() is atomic on POSIX, so `path` holds
// either the old complete file or the new complete file. On any failure the temporary is removed and an
// Error names the path and the system's reason.
//
// The temporary is "<path>.tmp.<pid>.<n>", created exclusively (O_EXCL: never through a planted link). A
// process killed mid-write (kill -9, power loss) leaves its temporary behind; the next write to the same
// target removes every "<path>.tmp.<pid>.<n>" whose process no longer runs, so stale files never pile up
// (each folder is read once per process for this, when the process first writes into it). A temporary of a
// live process (another run writing the same file) is left alone. Caveat: on a file system shared between
// hosts a pid is only meaningful on its own host.
#pragma once

#include <dirent.h>
#include <signal.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "retikd/core/error.hpp"

namespace retikd {
namespace io {

// Receives the bytes of a file, in order.
using ByteSink = std::function<void(const void* data, std::size_t size)>;

namespace detail {

inline std::string errno_text(int err) { return std::strerror(err); }

inline std::string parent_directory(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

inline uint64_t next_temp_counter() {
  static std::atomic<uint64_t> counter{0};
  return counter.fetch_add(1);
}

inline bool all_digits(const std::string& s) {
  if (s.empty() || s.size() > 18) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

// Splits "<base>.tmp.<pid>.<n>" into base and pid; false for any other name.
inline bool parse_temporary_name(const std::string& name, std::string& base, long long& pid) {
  const std::size_t last = name.rfind('.');
  if (last == std::string::npos || last == 0 || !all_digits(name.substr(last + 1))) return false;
  const std::size_t mid = name.rfind('.', last - 1);
  if (mid == std::string::npos || !all_digits(name.substr(mid + 1, last - mid - 1))) return false;
  static const std::string marker = ".tmp";
  if (mid < marker.size() + 1 || name.compare(mid - marker.size(), marker.size(), marker) != 0) return false;
  base = name.substr(0, mid - marker.size());
  pid = std::stoll(name.substr(mid + 1, last - mid - 1));
  return true;
}

// The stale temporaries in `dir` (those of processes that no longer run), by target base name.
inline std::map<std::string, std::vector<std::string>> scan_stale_temporaries(const std::string& dir) {
  std::map<std::string, std::vector<std::string>> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  const long long self = static_cast<long long>(::getpid());
  while (dirent* e = ::readdir(d)) {
    std::string base;
    long long pid = 0;
    if (!parse_temporary_name(e->d_name, base, pid) || pid <= 0 || pid == self || pid > 0x7fffffffLL) continue;
    const bool alive = ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
    if (!alive) out[base].push_back(e->d_name);
  }
  ::closedir(d);
  return out;
}

inline int unlink_plain_files(const std::string& dir, const std::vector<std::string>& names) {
  int n = 0;
  for (const auto& name : names) {
    const std::string p = (dir == "/" ? std::string() : dir) + "/" + name;
    struct stat st;  // only plain files: never a folder or a link someone named like a temporary
    if (::lstat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::unlink(p.c_str()) == 0) ++n;
  }
  return n;
}

// Removes the stale temporaries of `dir`/`base` before a write. Each folder is scanned once per process
// (a run that writes 10,000 Grad-CAM maps into one folder must not read that folder 10,000 times); the
// stale names found are removed when their target is next written.
inline void sweep_before_write(const std::string& dir, const std::string& base) {
  static std::mutex mutex;
  static std::map<std::string, std::map<std::string, std::vector<std::string>>> pending;  // dir → base → names
  static std::set<std::string> scanned;
  std::vector<std::string> names;
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (scanned.insert(dir).second) pending[dir] = scan_stale_temporaries(dir);
    auto d = pending.find(dir);
    if (d != pending.end()) {
      auto b = d->second.find(base);
      if (b != d->second.end()) {
        names = std::move(b->second);
        d->second.erase(b);
      }
    }
  }
  unlink_plain_files(dir, names);
}

}  // namespace detail

// Removes now the "<base>.tmp.<pid>.<n>" files in `dir` (write_file_atomically's temporaries for the target
// `dir`/`base`) whose process no longer runs. Returns how many were removed.
inline int remove_stale_temporaries(const std::string& dir, const std::string& base) {
  auto all = detail::scan_stale_temporaries(dir);
  auto it = all.find(base);
  return it == all.end() ? 0 : detail::unlink_plain_files(dir, it->second);
}

// Calls produce(sink) to generate the file's bytes and publishes them at `path` atomically. `what` names
// the format in errors ("safetensors").
inline void write_file_atomically(const std::string& path, const std::function<void(const ByteSink&)>& produce,
                                  const char* what = "write") {
  RETIKD_CHECK(!path.empty(), what, ": empty output path");
  {
    const std::size_t slash = path.find_last_of('/');
    detail::sweep_before_write(detail::parent_directory(path), slash == std::string::npos ? path : path.substr(slash + 1));
  }
  const std::string tmp = path + ".tmp." + std::to_string(static_cast<long>(::getpid())) + "." +
                          std::to_string(detail::next_temp_counter());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) fail(what, ": ", path, ": cannot create temporary file ", tmp, ": ", detail::errno_text(errno));
  bool closed = false;
  try {
    const ByteSink sink = [&](const void* data, std::size_t size) {
      const char* p = static_cast<const char*>(data);
      while (size > 0) {
        const ssize_t n = ::write(fd, p, size);
        if (n < 0) {
          if (errno == EINTR) continue;
          fail(what, ": ", path, ": write failed: ", detail::errno_text(errno));
        }
        p += n;
        size -= static_cast<std::size_t>(n);
      }
    };
    produce(sink);
    if (::fsync(fd) != 0) fail(what, ": ", path, ": fsync failed: ", detail::errno_text(errno));
    closed = true;
    if (::close(fd) != 0) fail(what, ": ", path, ": close failed: ", detail::errno_text(errno));
    if (::rename(tmp.c_str(), path.c_str()) != 0)
      fail(what, ": ", path, ": cannot rename ", tmp, " over it: ", detail::errno_text(errno));
  } catch (...) {
    if (!closed) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  // Make the rename itself durable; best effort (some file systems refuse fsync on directories).
  const int dir = ::open(detail::parent_directory(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    (void)::fsync(dir);
    ::close(dir);
  }
}

}  // namespace io
}  // namespace retikd
