// retikd/core/error.hpp — the library's exception type and the checks that raise it.
//
// Every shape, dtype or device mismatch throws retikd::Error with a message that names the op and the
// offending shapes, so a user sees "conv2d: input (2, 3, 5) must be 4-D (N, C, H, W)" rather than a crash
// deep inside a kernel.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace retikd {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
inline void append_all(std::ostringstream&) {}
template <class T, class... Rest>
void append_all(std::ostringstream& os, const T& first, const Rest&... rest) {
  os << first;
  append_all(os, rest...);
}
}  // namespace detail

// Builds a message from any streamable pieces: str("conv2d: got ", n, " channels").
template <class... Parts>
std::string str(const Parts&... parts) {
  std::ostringstream os;
  detail::append_all(os, parts...);
  return os.str();
}

template <class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  throw Error(str(parts...));
}

}  // namespace retikd

// RETIKD_CHECK(cond, "op: message ", value, ...) — throws retikd::Error when cond is false.
#define RETIKD_CHECK(cond, ...)                  \
  do {                                           \
    if (!(cond)) ::retikd::fail(__VA_ARGS__);    \
  } while (0)
