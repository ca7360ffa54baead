// retikd/core/shape.hpp — shapes and strides (vectors of int64 sizes), and the helpers that format and
// check them; every error message prints shapes the way PyTorch users read them: (2, 3, 224, 224).
#pragma once

#include <cstdint>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "retikd/core/error.hpp"

namespace retikd {

using Shape = std::vector<int64_t>;

inline std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << '(';
  for (std::size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  if (s.size() == 1) os << ',';
  os << ')';
  return os.str();
}

inline int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

inline Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (std::size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    acc *= s[i] > 0 ? s[i] : 1;
  }
  return st;
}

// Wraps a possibly negative dimension index into [0, ndim); `op` names the caller in the error.
inline int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t d = dim < 0 ? dim + ndim : dim;
  RETIKD_CHECK(d >= 0 && d < ndim, op, ": dimension ", dim, " out of range for a ", ndim, "-D tensor");
  return d;
}

// NumPy broadcasting of two shapes; throws naming `op` and both shapes when they do not broadcast.
inline Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  std::size_t n = a.size() > b.size() ? a.size() : b.size();
  Shape out(n);
  for (std::size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    RETIKD_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shape_str(a), " and ", shape_str(b),
                 " do not broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

}  // namespace retikd
