// retikd/core/shape.hpp — shapes and strides (vectors of int64 sizes), and the helpers that format and
// check them; every error message prints shapes the way PyTorch users read them: (2, 3, 224, 224).
#pragma once

#include <cstdint>
#include <ostream>
#include <sstream>
#include <string>
#include <utility>
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

// Element count of a shape. Throws when the product of its non-zero sizes (what the strides are built from) does
// not fit in int64: a hostile file can declare (6, 0, 63, 1056672, 64, 7427, 127, 917575), which holds no
// elements yet overflows any stride computation (found by fuzz_onnx). Shapes of real tensors pass at the cost
// of one division per dimension.
inline int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  bool empty = false;
  for (int64_t d : s) {
    if (d == 0) {
      empty = true;
      continue;
    }
    RETIKD_CHECK(d < 0 || n <= INT64_MAX / d, "shape ", shape_str(s), " has more elements than int64 can count");
    n *= d;
  }
  return empty ? 0 : n;
}

// Row-major strides of a shape (a size 0 or 1 dimension strides like size 1). Throws like shape_numel when the
// strides do not fit in int64.
inline Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (std::size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    const int64_t d = s[i] > 0 ? s[i] : 1;
    RETIKD_CHECK(i == 0 || acc <= INT64_MAX / d, "shape ", shape_str(s), " has strides that int64 cannot hold");
    if (i > 0) acc *= d;
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
// A strided view laid out as `rows` rows of `row_elems` contiguous elements whose starts are `pitch` elements
// apart — what one 2-D copy (cudaMemcpy2D) writes: a narrow / slice with step 1 of a contiguous tensor along
// any dimension, for instance. as_pitched_view returns false for other layouts (transposes, steps, broadcasts).
struct PitchedView {
  int64_t rows = 1, row_elems = 1, pitch = 1;
};
inline bool as_pitched_view(const Shape& shape, const Shape& strides, PitchedView* out) {
  std::vector<std::pair<int64_t, int64_t>> dims;  // (size, stride) of the dimensions larger than 1
  for (std::size_t k = 0; k < shape.size(); ++k) {
    if (shape[k] == 0) return false;
    if (shape[k] != 1) dims.emplace_back(shape[k], strides[k]);
  }
  PitchedView v;
  int64_t k = static_cast<int64_t>(dims.size()) - 1;
  int64_t inner = 1;  // the contiguous innermost block
  while (k >= 0 && dims[static_cast<std::size_t>(k)].second == inner) {
    inner *= dims[static_cast<std::size_t>(k)].first;
    --k;
  }
  v.row_elems = inner;
  v.pitch = inner;
  if (k >= 0) {
    if (inner == 1) return false;  // the innermost dimension itself is strided
    const auto& row_dim = dims[static_cast<std::size_t>(k)];
    if (row_dim.second < inner) return false;  // rows would overlap (or run backwards)
    v.pitch = row_dim.second;
    v.rows = row_dim.first;
    for (int64_t j = k - 1; j >= 0; --j) {  // the outer dimensions must continue the same row progression
      const auto& d = dims[static_cast<std::size_t>(j)];
      const auto& next = dims[static_cast<std::size_t>(j + 1)];
      if (d.second != next.second * next.first) return false;
      v.rows *= d.first;
    }
  }
  *out = v;
  return true;
}

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
