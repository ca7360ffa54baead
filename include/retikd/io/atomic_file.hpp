// retikd/io/atomic_file.hpp — write a file so that a reader (or a crash) never sees half of it.
//
// The bytes go to a temporary file next to the target (same directory, so the same file system), which is
// flushed to disk (fsync) and then renamed over the target: rename() is atomic on POSIX, so `path` holds
// either the old complete file or the new complete file. On any failure the temporary is removed and an
// Error names the path and the system's reason.
#pragma once

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <functional>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

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

}  // namespace detail

// Calls produce(sink) to generate the file's bytes and publishes them at `path` atomically. `what` names
// the format in errors ("safetensors").
inline void write_file_atomically(const std::string& path, const std::function<void(const ByteSink&)>& produce,
                                  const char* what = "write") {
  RETIKD_CHECK(!path.empty(), what, ": empty output path");
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
