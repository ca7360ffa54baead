// retikd/data/fs.hpp — the few file-system calls the data pipeline needs, on POSIX directly.
//
// std::filesystem would need `-lstdc++fs` with GCC 8 (the newest compiler on the Jetson Nano's JetPack), and
// a header-only library cannot add link flags; opendir/stat/realpath are everywhere retikd runs.
//
// Folder walks follow symbolic links (a data folder assembled from links is normal) but never loop: each
// folder's (device, inode) is listed once per walk, a link back to the walk's root or one of its ancestors
// is not followed, and a walk can be fenced so that a link inside one part of a data set (a class folder)
// cannot pull in another part (another class's folder, which would relabel its images). Every link not
// followed is reported through WalkOptions::notes with the reason.
#pragma once

#include <dirent.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "retikd/core/error.hpp"
#include "retikd/io/atomic_file.hpp"

namespace retikd {
namespace data {
namespace fs {

struct Entry {
  std::string name;
  bool is_dir = false;
  bool is_file = false;
  bool is_link = false;  // a symbolic link (is_dir / is_file describe its target)
  uint64_t device = 0, inode = 0;  // of the target; 0 when it cannot be stat'ed (a dangling link)
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

// The absolute path with every link, "." and ".." resolved (realpath(3)); "" when it does not exist.
inline std::string resolve(const std::string& path) {
  std::unique_ptr<char, void (*)(void*)> p(::realpath(path.c_str(), nullptr), &::free);
  return p ? std::string(p.get()) : std::string();
}

// True when `path` is `dir` or lies below it (both absolute and resolved, as resolve() gives them).
inline bool is_within(const std::string& path, const std::string& dir) {
  if (dir.empty() || path.size() < dir.size() || path.compare(0, dir.size(), dir) != 0) return false;
  return path.size() == dir.size() || dir == "/" || path[dir.size()] == '/';
}

// A relative path with "." and empty components removed and ".." applied lexically ("a/./b//c/../d" →
// "a/b/d"); false when it is absolute or climbs above its start ("../x", "a/../../x").
inline bool normalize_relative(const std::string& path, std::string& out) {
  if (path.empty() || path[0] == '/') return false;
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t slash = path.find('/', start);
    if (slash == std::string::npos) slash = path.size();
    const std::string part = path.substr(start, slash - start);
    if (part == "..") {
      if (parts.empty()) return false;
      parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    start = slash + 1;
  }
  out.clear();
  for (const auto& p : parts) out += (out.empty() ? "" : "/") + p;
  return !out.empty();
}

// (device, inode) of the file a path names (links followed); false when it cannot be stat'ed.
inline bool file_identity(const std::string& path, uint64_t& device, uint64_t& inode, int64_t* size = nullptr) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return false;
  device = static_cast<uint64_t>(st.st_dev);
  inode = static_cast<uint64_t>(st.st_ino);
  if (size) *size = static_cast<int64_t>(st.st_size);
  return true;
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
    if (::lstat(full.c_str(), &st) == 0) en.is_link = S_ISLNK(st.st_mode);
    if (::stat(full.c_str(), &st) == 0) {  // follows symlinks, as a user expects of a data folder
      en.is_dir = S_ISDIR(st.st_mode);
      en.device = static_cast<uint64_t>(st.st_dev);
      en.inode = static_cast<uint64_t>(st.st_ino);
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

// How a recursive walk treats links; the defaults suit any folder of images.
struct WalkOptions {
  // A folder reached through a link that resolves inside `fence` but outside the walk's own root is not
  // followed. Data sets fence each class folder's walk with the data set's root, so a link in glaucoma/
  // cannot list cataract/'s images as glaucoma. Empty: no fence.
  std::string fence;
  // One line per folder not followed ("<path>: not followed: <why>"); nullptr: silent.
  std::function<void(const std::string&)> notes;
  // Folders below the root deeper than this are not entered (a note says so): no unbounded recursion.
  int max_depth = 64;
};

namespace detail {

struct Walk {
  const WalkOptions& opt;
  std::string root_real, fence_real;
  std::set<std::pair<uint64_t, uint64_t>> visited;  // (device, inode) of every folder entered

  void note(const std::string& line) const {
    if (opt.notes) opt.notes(line);
  }

  // Whether the folder entry `e` (at `full`) may be entered; notes the reason when not.
  bool may_enter(const Entry& e, const std::string& full, int depth) {
    if (depth >= opt.max_depth) {
      note(full + ": not followed: more than " + std::to_string(opt.max_depth) + " folders deep");
      return false;
    }
    if (e.is_link) {
      const std::string target = resolve(full);
      if (!target.empty() && is_within(root_real, target)) {
        note(full + ": not followed: the link leads back to " + target +
             ", which holds the folder being listed (a link loop)");
        return false;
      }
      if (!target.empty() && !fence_real.empty() && is_within(target, fence_real) && !is_within(target, root_real)) {
        note(full + ": not followed: the link leads to " + target + ", another part of the data set under " +
             fence_real + " (its files would be listed twice, here under another class or split)");
        return false;
      }
    }
    if (!visited.insert({e.device, e.inode}).second) {
      note(full + ": not followed: this folder was already listed in this walk (a link loop, or a second link " +
           "to the same folder)");
      return false;
    }
    return true;
  }

  void run(const std::string& dir, std::vector<std::string>& out, int depth) {
    for (const Entry& e : list_dir(dir)) {
      if (e.name.empty() || e.name[0] == '.') continue;
      const std::string full = join(dir, e.name);
      if (e.is_dir) {
        if (may_enter(e, full, depth + 1)) run(full, out, depth + 1);
      } else if (e.is_file) {
        out.push_back(full);
      }
    }
  }
};

}  // namespace detail

// Every file below `path` (hidden files and folders skipped), sorted per folder, as full paths. Links are
// followed, loops are not (see the top of this file); throws retikd::Error when `path` cannot be listed.
inline void list_files_recursive(const std::string& path, std::vector<std::string>& out,
                                 const WalkOptions& opt = WalkOptions()) {
  detail::Walk w{opt, resolve(path), opt.fence.empty() ? std::string() : resolve(opt.fence), {}};
  uint64_t dev = 0, ino = 0;
  if (file_identity(path, dev, ino)) w.visited.insert({dev, ino});
  w.run(path, out, 0);
}

// Writes `bytes` to `path` through a temporary file and a rename, so readers never see half a file
// (io::write_file_atomically: exclusive temporary, fsync, rename; stale temporaries of killed runs swept).
inline bool write_file_atomic(const std::string& path, const void* bytes, std::size_t size, std::string* error) {
  try {
    io::write_file_atomically(path, [&](const io::ByteSink& sink) { sink(bytes, size); }, "write");
    return true;
  } catch (const std::exception& e) {
    if (error) *error = e.what();
    return false;
  }
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
