// tests/test_util.hpp — the helpers every test area shares (DESIGN.md §7), one copy each: the element-wise
// comparison check_close with the tolerance rule |got − want| ≤ atol + rtol·|want|, float64 random inputs
// (randn64), the float64 central-difference gradient check (check_grad) and max_abs_diff / max_abs; a private
// temporary directory (TempDir), a directory listing (names_in) and whole-file reads and writes for the tests
// of readers and writers.
//
// Tolerances are always named at the call site: rtol ≈ 1e-5 for float32 and 1e-2 for float16 against a float64
// reference (kRtolFloat32 / kRtolFloat16), atol for sums whose error scales with their length or with the
// reference's magnitude (scaled_atol), rtol = 0 for an absolute bound, both 0 for exact equality.
#pragma once

#include <doctest/doctest.h>
#include <dirent.h>
#include <ftw.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <exception>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "retikd/autograd/gradcheck.hpp"
#include "retikd/core/random.hpp"
#include "retikd/core/tensor.hpp"
#include "retikd/data/fs.hpp"

namespace retikd {
namespace test {

constexpr double kRtolFloat32 = 1e-5;
constexpr double kRtolFloat16 = 1e-2;

// What check_close reads: a tensor (any dtype, any device, any layout: read as float64 on the CPU) or plain
// values (float64 as they are; float, Half or integers widened to double). A tensor keeps its shape, so two
// tensors must agree in shape, not only in element count.
struct Values {
  std::vector<double> v;
  Shape shape;
  bool has_shape = false;

  Values(const Tensor& t) : shape(t.shape()), has_shape(true) {  // NOLINT(google-explicit-constructor)
    REQUIRE(t.defined());
    v = t.to(Device::cpu()).to(DType::float64).contiguous().to_vector<double>();
  }
  Values(const Var& x) : Values(x.value()) {}                         // NOLINT(google-explicit-constructor)
  Values(std::initializer_list<double> x) : v(x) {}                   // NOLINT(google-explicit-constructor)
  template <class T>
  Values(const std::vector<T>& x) {                                   // NOLINT(google-explicit-constructor)
    v.reserve(x.size());
    for (const T& e : x) v.push_back(static_cast<double>(e));
  }
};

// What a NaN in the reference means: a failure (the default: a NaN reference is a broken reference), or a
// value the other side must reproduce (launcher tests that check NaN propagation).
enum class NanRule { fail, must_match };

// |got − want| ≤ atol + rtol·|want| element-wise (DESIGN.md §7). An infinite reference must be met exactly;
// NaN on either side fails unless `nan` is NanRule::must_match and both are NaN. On failure: how many
// elements, and the worst one (got, reference, the tolerance there), so one run tells a few rounding
// outliers from a systematic error.
inline void check_close(const std::string& what, const Values& got, const Values& want, double rtol, double atol,
                        NanRule nan = NanRule::fail) {
  if (got.has_shape && want.has_shape) {
    INFO(what << ": shape " << shape_str(got.shape) << " vs reference " << shape_str(want.shape));
    REQUIRE(got.shape == want.shape);
  }
  INFO(what << ": " << got.v.size() << " elements vs " << want.v.size() << " in the reference");
  REQUIRE(got.v.size() == want.v.size());
  const std::vector<double>& g = got.v;
  const std::vector<double>& w = want.v;
  std::size_t bad = 0, worst = 0;
  double worst_excess = 0.0, max_ref = 0.0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    bool ok;
    double excess;  // the error beyond the tolerance; the element reported is the one with the largest
    if (std::isnan(w[i])) {
      ok = nan == NanRule::must_match && std::isnan(g[i]);
      excess = ok ? 0.0 : HUGE_VAL;
    } else if (std::isinf(w[i])) {
      ok = g[i] == w[i];
      excess = ok ? 0.0 : HUGE_VAL;
    } else {
      max_ref = std::max(max_ref, std::abs(w[i]));
      const double err = std::abs(g[i] - w[i]), allowed = atol + rtol * std::abs(w[i]);
      ok = err <= allowed;
      excess = std::isnan(err) ? HUGE_VAL : err - allowed;
    }
    if (!ok) ++bad;
    if (i == 0 || excess > worst_excess) {
      worst_excess = excess;
      worst = i;
    }
  }
  const bool any = !g.empty();
  INFO(what << ": " << bad << " of " << g.size() << " elements outside |got - want| <= " << atol << " + " << rtol
            << "·|want|; worst at " << worst << ": got " << (any ? g[worst] : 0.0) << ", reference "
            << (any ? w[worst] : 0.0) << ", allowed " << (any ? atol + rtol * std::abs(w[worst]) : 0.0)
            << "; max |reference| " << max_ref);
  CHECK(bad == 0);
}
// The same without a name, for short hand-computed comparisons.
inline void check_close(const Values& got, const Values& want, double rtol, double atol,
                        NanRule nan = NanRule::fail) {
  check_close("values", got, want, rtol, atol, nan);
}

inline double max_abs(const Values& a) {
  double m = 0.0;
  for (double x : a.v) m = std::max(m, std::fabs(x));
  return m;
}

// atol = rel·max|want| for results that are sums of many terms, whose rounding error scales with the
// reference's largest magnitude rather than with each element. An all-zero reference is refused: it would
// hide a kernel that writes nothing.
inline double scaled_atol(const Values& want, double rel) {
  const double scale = max_abs(want);
  INFO("reference of " << want.v.size() << " elements is all zero");
  REQUIRE(scale > 0.0);
  return rel * scale;
}

inline double max_abs_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const Values va(a), vb(b);
  double m = 0.0;
  for (std::size_t i = 0; i < va.v.size(); ++i) m = std::max(m, std::fabs(va.v[i] - vb.v[i]));
  return m;
}

// Normal(shift, scale²) values in float64, reproducible from the seed.
inline Tensor randn64(const Shape& s, uint64_t seed, double scale = 1.0, double shift = 0.0) {
  Generator g(seed);
  Tensor t = Tensor::empty(s, DType::float64);
  return normal_(t, shift, scale, g);
}
inline Tensor randn32(const Shape& s, uint64_t seed, double scale = 1.0) {
  return randn64(s, seed, scale).to(DType::float32);
}

// Autograd against central finite differences in float64 (autograd/gradcheck.hpp's default tolerances);
// inputs listed in `fixed` (targets, indices, running statistics) get no gradient.
inline void check_grad(const std::function<Var(const std::vector<Var>&)>& fn, const std::vector<Tensor>& inputs,
                       std::vector<std::size_t> fixed = {}) {
  GradcheckOptions opt;
  opt.no_grad_inputs = std::move(fixed);
  const GradcheckResult r = gradcheck(fn, inputs, opt);
  CHECK_MESSAGE(r.ok, r.message);
  CHECK(r.checked > 0);
}

// The message of the retikd::Error that fn throws; "" when it throws nothing. Another exception's message comes
// back marked "not a retikd::Error: …", so a needle check still prints what happened.
template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("not a retikd::Error: ") + e.what();
  }
  return "";
}

inline bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// A scalar Var against its expected value: |got − want| ≤ atol + rtol·|want| (the check_close rule).
inline void check_scalar(const Var& v, double want, double atol, double rtol = 0.0) {
  REQUIRE(v.value().numel() == 1);
  const double got = v.item<double>();
  CHECK_MESSAGE(std::fabs(got - want) <= atol + rtol * std::fabs(want), "got ", got, ", expected ", want, " (atol ",
                atol, ", rtol ", rtol, ")");
}

// Literal tensors: float64 and int64 values in the given shape.
inline Tensor f64(const std::vector<double>& v, const Shape& s) { return Tensor::from_vector(v, s); }
inline Tensor i64(const std::vector<int64_t>& v, const Shape& s) { return Tensor::from_vector(v, s); }

// Normal values of any dtype, reproducible from the seed (drawn by randn in that dtype).
inline Tensor random_tensor(const Shape& shape, uint64_t seed, DType dtype = DType::float64) {
  Generator g(seed);
  return randn(shape, g, dtype);
}

// The names directly inside `dir` (not "." and ".."), sorted; empty when it cannot be read.
inline std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d))
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) out.push_back(e->d_name);
    ::closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// A private directory under $TMPDIR (or /tmp), named retikd_<tag>_XXXXXX, removed with everything in it when
// the test leaves its scope.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "test") {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/retikd_" + tag + "_XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    REQUIRE(::mkdtemp(buf.data()) != nullptr);
    path_ = buf.data();
  }
  ~TempDir() {
    ::nftw(path_.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 16,
           FTW_DEPTH | FTW_PHYS);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(const std::string& rel) const { return path_ + "/" + rel; }
  std::string operator/(const std::string& rel) const { return file(rel); }
  // The names directly inside the directory, sorted.
  std::vector<std::string> files() const { return names_in(path_); }

 private:
  std::string path_;
};

// Writes `bytes` to `path` (replacing it), creating the directories above it.
inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  REQUIRE(data::fs::make_dirs(data::fs::dirname(path)));
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  out.close();
  INFO("writing " << path);
  REQUIRE(out.good());
}
inline void write_text(const std::string& path, const std::string& text) {
  write_bytes(path, std::vector<uint8_t>(text.begin(), text.end()));
}
// The whole file (empty when it cannot be read).
inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}
inline std::string read_text(const std::string& path) {
  const std::vector<uint8_t> b = read_bytes(path);
  return std::string(b.begin(), b.end());
}

// Values as the storage type T of a kernel program (float or Half) sees them, and back as the float64 values a
// reference computes with: inputs drawn in double, rounded to T, and the rounded values fed to both sides.
template <class T>
std::vector<T> to_storage(const std::vector<double>& v) {
  std::vector<T> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = T(static_cast<float>(v[i]));
  return out;
}
template <class T>
std::vector<double> stored_values(const std::vector<T>& v) {
  std::vector<double> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = static_cast<double>(static_cast<float>(v[i]));
  return out;
}

}  // namespace test
}  // namespace retikd

// CHECKs that `expr` throws a retikd::Error whose message contains `needle`, printing the message otherwise.
#define RETIKD_CHECK_THROWS_CONTAINING(expr, needle)                                                      \
  do {                                                                                                     \
    const std::string retikd_msg_ = ::retikd::test::error_of([&]() { (void)(expr); });                     \
    CHECK_MESSAGE(retikd_msg_.find(needle) != std::string::npos, "expected an error containing \"", needle, \
                  "\", got \"", (retikd_msg_.empty() ? std::string("(no error)") : retikd_msg_), "\"");     \
  } while (0)
