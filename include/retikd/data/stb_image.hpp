// retikd/data/stb_image.hpp — how a header-only library uses stb_image (Debian's libstb-dev) without asking
// its users for a link flag or a "define the implementation in exactly one file" ritual.
//
// Default: every translation unit that includes the retikd data headers compiles its own private copy of
// stb_image's JPEG and PNG decoders (STB_IMAGE_STATIC: internal linkage, so any number of translation units
// link together; STBI_NO_STDIO: retikd reads files itself). The cost is ~0.1 MB of code per translation unit
// that decodes images, which is a handful in any program.
//
// RETIKD_STB_IMAGE_EXTERNAL (define it for the whole program): retikd only includes the declarations and the
// program provides the implementation — link Debian's libstb (`-lstb`, /usr/lib/<arch>/libstb.so) or define
// STB_IMAGE_IMPLEMENTATION in one file of your own. Use this when your own code also includes
// <stb/stb_image.h>: in the default mode a translation unit must not include stb_image itself (the private
// copy's include guard would hide its declarations, and this header stops the build if it came first).
//
// Either way retikd sniffs the format before calling stb, so only JPEG and PNG ever reach the decoder, and
// stb keeps its failure reason per thread (STBI_THREAD_LOCAL), so loader threads can decode concurrently.
//
// Memory: in the default mode every allocation stb makes goes through stb_alloc below, which enforces a
// per-thread byte budget while a StbBudgetScope is active (data/decode.hpp opens one per decode, sized from
// the dimensions in the file's header). A PNG whose compressed data inflates far beyond its declared size (a
// zlib bomb: 1 KB can inflate to 1 MB) then fails cleanly instead of growing stb's buffer to gigabytes. With
// RETIKD_STB_IMAGE_EXTERNAL the program's stb allocates as it likes; only the pixel limit applies.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace retikd {
namespace data {
namespace detail {

struct StbBudget {
  std::size_t limit = 0;  // 0: no budget (no decode in progress on this thread)
  std::size_t used = 0;
  bool exceeded = false;
};

inline StbBudget& stb_budget() {
  static thread_local StbBudget b;
  return b;
}

// Each block carries its size in a 16-byte header (keeps malloc's alignment), so free() can credit it back.
constexpr std::size_t kStbHeader = 16;

inline void* stb_alloc(std::size_t n) {
  StbBudget& b = stb_budget();
  if (b.limit && (n > b.limit || b.used > b.limit - n)) {
    b.exceeded = true;
    return nullptr;
  }
  if (n > static_cast<std::size_t>(-1) - kStbHeader) return nullptr;
  char* p = static_cast<char*>(std::malloc(n + kStbHeader));
  if (!p) return nullptr;
  std::memcpy(p, &n, sizeof n);
  b.used += n;
  return p + kStbHeader;
}

inline void stb_release(void* q) {
  if (!q) return;
  char* p = static_cast<char*>(q) - kStbHeader;
  std::size_t n;
  std::memcpy(&n, p, sizeof n);
  StbBudget& b = stb_budget();
  b.used = b.used > n ? b.used - n : 0;
  std::free(p);
}

inline void* stb_resize(void* q, std::size_t n) {
  if (!q) return stb_alloc(n);
  char* p = static_cast<char*>(q) - kStbHeader;
  std::size_t old;
  std::memcpy(&old, p, sizeof old);
  StbBudget& b = stb_budget();
  if (n > old && b.limit && (n - old > b.limit || b.used > b.limit - (n - old))) {
    b.exceeded = true;
    return nullptr;
  }
  if (n > static_cast<std::size_t>(-1) - kStbHeader) return nullptr;
  char* r = static_cast<char*>(std::realloc(p, n + kStbHeader));
  if (!r) return nullptr;
  std::memcpy(r, &n, sizeof n);
  b.used = b.used - (b.used < old ? b.used : old) + n;
  return r + kStbHeader;
}

// Limits stb's allocations on this thread to `bytes` for the scope's lifetime (0: unlimited).
class StbBudgetScope {
 public:
  explicit StbBudgetScope(std::size_t bytes) : saved_(stb_budget()) { stb_budget() = StbBudget{bytes, 0, false}; }
  ~StbBudgetScope() { stb_budget() = saved_; }
  StbBudgetScope(const StbBudgetScope&) = delete;
  StbBudgetScope& operator=(const StbBudgetScope&) = delete;
  bool exceeded() const { return stb_budget().exceeded; }

 private:
  StbBudget saved_;
};

}  // namespace detail
}  // namespace data
}  // namespace retikd

#if defined(RETIKD_STB_IMAGE_EXTERNAL)
#include <stb/stb_image.h>
#else
#if defined(STBI_INCLUDE_STB_IMAGE_H)
#error "retikd/data: <stb/stb_image.h> was included before the retikd data headers; retikd compiles a private \
copy of stb_image in each translation unit. Include retikd first and do not use stb_image in this file, or \
define RETIKD_STB_IMAGE_EXTERNAL for the whole program and link libstb (-lstb)."
#endif
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO
#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#define STBI_MALLOC(sz) ::retikd::data::detail::stb_alloc(sz)
#define STBI_REALLOC(p, newsz) ::retikd::data::detail::stb_resize(p, newsz)
#define STBI_FREE(p) ::retikd::data::detail::stb_release(p)
#ifndef STBI_MAX_DIMENSIONS
#define STBI_MAX_DIMENSIONS (1 << 15)
#endif
#include <stb/stb_image.h>
#undef STB_IMAGE_IMPLEMENTATION
#endif
