// tests/test_cuda.cpp — the CUDA launchers (retikd/cuda/runtime.hpp, retikd/cuda/elementwise.hpp) against
// CPU computations, per DESIGN.md §7: fresh random inputs (the seed is printed on failure), outputs poisoned
// before each call so unwritten elements fail, |gpu - cpu| <= atol + rtol * |cpu| with rtol 1e-5 (fp32) or
// 1e-2 (fp16). Every test case skips with a message when no CUDA device is present.
#ifdef RETIKD_WITH_CUDA

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "retikd/core/half.hpp"
#include "retikd/cuda/dtype_code.hpp"
#include "retikd/cuda/elementwise.hpp"
#include "retikd/cuda/runtime.hpp"
#include "cuda_test_util.hpp"
#include "test_util.hpp"

namespace {

namespace rc = retikd::cuda;
using retikd::Half;
using retikd::test::check_close;
using retikd::test::NanRule;

const int kDtypes[] = {rc::kFloat32, rc::kFloat16, rc::kInt32, rc::kInt64, rc::kFloat64};

const char* dtype_name(int dtype) {
  switch (dtype) {
    case rc::kFloat32: return "float32";
    case rc::kFloat16: return "float16";
    case rc::kInt32: return "int32";
    case rc::kInt64: return "int64";
    case rc::kFloat64: return "float64";
    default: return "?";
  }
}

std::size_t dtype_size(int dtype) {
  switch (dtype) {
    case rc::kFloat16: return 2;
    case rc::kFloat32:
    case rc::kInt32: return 4;
    default: return 8;
  }
}

bool is_float_dtype(int dtype) { return dtype == rc::kFloat32 || dtype == rc::kFloat16 || dtype == rc::kFloat64; }

// Host buffers are byte vectors in the dtype's layout; tests reason in doubles (every test value of every
// dtype is exact in double).
void encode(int dtype, double v, unsigned char* p) {
  switch (dtype) {
    case rc::kFloat32: { const float x = static_cast<float>(v); std::memcpy(p, &x, 4); break; }
    case rc::kFloat16: { const Half x(static_cast<float>(v)); std::memcpy(p, &x, 2); break; }
    case rc::kInt32: { const int32_t x = static_cast<int32_t>(v); std::memcpy(p, &x, 4); break; }
    case rc::kInt64: { const int64_t x = static_cast<int64_t>(v); std::memcpy(p, &x, 8); break; }
    default: std::memcpy(p, &v, 8); break;
  }
}

double decode(int dtype, const unsigned char* p) {
  switch (dtype) {
    case rc::kFloat32: { float x; std::memcpy(&x, p, 4); return x; }
    case rc::kFloat16: { Half x; std::memcpy(&x, p, 2); return static_cast<float>(x); }
    case rc::kInt32: { int32_t x; std::memcpy(&x, p, 4); return x; }
    case rc::kInt64: { int64_t x; std::memcpy(&x, p, 8); return static_cast<double>(x); }
    default: { double x; std::memcpy(&x, p, 8); return x; }
  }
}

// The value a dtype stores for v (rounding to float / half, truncating toward zero for integers).
double representable(int dtype, double v) {
  unsigned char tmp[8];
  encode(dtype, v, tmp);
  return decode(dtype, tmp);
}

std::vector<unsigned char> encode_all(int dtype, const std::vector<double>& v) {
  std::vector<unsigned char> bytes(v.size() * dtype_size(dtype));
  for (std::size_t i = 0; i < v.size(); ++i) encode(dtype, v[i], bytes.data() + i * dtype_size(dtype));
  return bytes;
}

std::vector<double> decode_all(int dtype, const std::vector<unsigned char>& bytes) {
  std::vector<double> v(bytes.size() / dtype_size(dtype));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = decode(dtype, bytes.data() + i * dtype_size(dtype));
  return v;
}

// What poisoned outputs hold: NaN for floating dtypes, a value no test produces for integers.
double poison_value(int dtype) { return is_float_dtype(dtype) ? std::numeric_limits<double>::quiet_NaN() : -987654321.0; }

struct DeviceBuffer {
  void* ptr = nullptr;
  std::size_t bytes = 0;
  DeviceBuffer(std::size_t n_bytes) : ptr(rc::device_malloc(n_bytes, 0)), bytes(n_bytes) {}
  ~DeviceBuffer() { rc::device_free(ptr, 0); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void upload(const std::vector<unsigned char>& host, std::size_t byte_offset = 0) {
    REQUIRE(byte_offset + host.size() <= bytes);
    rc::copy_host_to_device(static_cast<char*>(ptr) + byte_offset, host.data(), host.size(), 0);
  }
  std::vector<unsigned char> download() const {
    rc::synchronize(0);
    std::vector<unsigned char> host(bytes);
    rc::copy_device_to_host(host.data(), ptr, bytes, 0);
    return host;
  }
  void* at(int dtype, std::size_t element) const { return static_cast<char*>(ptr) + element * dtype_size(dtype); }
};

// A buffer of n elements of dtype, every element poisoned.
std::unique_ptr<DeviceBuffer> poisoned_buffer(int dtype, std::size_t n) {
  std::unique_ptr<DeviceBuffer> buf(new DeviceBuffer(n * dtype_size(dtype)));
  buf->upload(encode_all(dtype, std::vector<double>(n, poison_value(dtype))));
  return buf;
}

double rtol_for(int dtype) { return dtype == rc::kFloat16 ? 1e-2 : 1e-5; }
double atol_for(int dtype) { return dtype == rc::kFloat16 ? 1e-3 : 2e-6; }

uint32_t fresh_seed() {
  std::random_device rd;
  return rd();
}

std::vector<double> uniform(std::mt19937& rng, std::size_t n, double lo, double hi) {
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(n);
  for (double& x : v) x = dist(rng);
  return v;
}

const std::size_t kSizes[] = {1, 3, 8, 17, 1000, 65537};

}  // namespace

TEST_CASE("cuda runtime: devices, caching allocator, copies") {
  RETIKD_SKIP_WITHOUT_CUDA();
  const int count = rc::device_count();
  CHECK(count > 0);
  CHECK_FALSE(rc::device_name(0).empty());
  CHECK(rc::compute_capability(0) >= 50);
  MESSAGE("device 0: " << rc::device_name(0) << ", sm_" << rc::compute_capability(0));

  rc::empty_cache();
  CHECK(rc::cached_bytes(0) == 0);
  CHECK(rc::device_malloc(0, 0) == nullptr);
  rc::device_free(nullptr, 0);

  const std::size_t in_use = rc::allocated_bytes(0);
  void* p = rc::device_malloc(1000, 0);
  REQUIRE(p != nullptr);
  CHECK(rc::allocated_bytes(0) >= in_use + 1000);
  rc::device_free(p, 0);
  CHECK(rc::allocated_bytes(0) == in_use);
  CHECK(rc::cached_bytes(0) >= 1000);
  void* q = rc::device_malloc(900, 0);  // the same bucket: served from the cache
  CHECK(q == p);
  CHECK(rc::cached_bytes(0) == 0);
  rc::device_free(q, 0);
  rc::empty_cache();
  CHECK(rc::cached_bytes(0) == 0);

  int not_device_memory = 0;
  CHECK_THROWS_AS(rc::device_free(&not_device_memory, 0), std::runtime_error);
  CHECK_THROWS_AS(rc::device_malloc(1000, count), std::runtime_error);
  // Far beyond any GPU: the allocator releases its cache, retries once, then names the size and device.
  try {
    void* huge = rc::device_malloc(std::size_t(1) << 50, 0);
    rc::device_free(huge, 0);
    FAIL("a 1 PiB allocation succeeded");
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    CHECK(what.find(std::to_string(std::size_t(1) << 50)) != std::string::npos);
    CHECK(what.find("device 0") != std::string::npos);
  }
  // The failed allocation must not leave a pending error behind.
  void* after = rc::device_malloc(4096, 0);
  rc::device_free(after, 0);

  std::mt19937 rng(fresh_seed());
  std::vector<unsigned char> host(123457);
  for (auto& b : host) b = static_cast<unsigned char>(rng());
  DeviceBuffer a(host.size()), b(host.size());
  rc::copy_host_to_device(a.ptr, host.data(), host.size(), 0);
  rc::copy_device_to_device(b.ptr, a.ptr, host.size(), 0);
  std::vector<unsigned char> back(host.size(), 0);
  rc::copy_device_to_host(back.data(), b.ptr, host.size(), 0);
  CHECK(back == host);
}

TEST_CASE("cuda fill: every dtype, aligned and misaligned, memset and kernel paths") {
  RETIKD_SKIP_WITHOUT_CUDA();
  for (int dtype : kDtypes) {
    const std::vector<double> values = is_float_dtype(dtype) ? std::vector<double>{2.75, -1.5, 0.0, 0.1}
                                                             : std::vector<double>{-7.0, 0.0, 123456.0, -1.0};
    for (double value : values) {
      for (std::size_t n : kSizes) {
        for (std::size_t offset : {0, 1}) {
          INFO(dtype_name(dtype) << " value " << value << " n " << n << " offset " << offset);
          auto buf = poisoned_buffer(dtype, n + 1);
          rc::fill(buf->at(dtype, offset), dtype, static_cast<int64_t>(n), value, 0);
          const std::vector<double> got = decode_all(dtype, buf->download());
          std::vector<double> want(n + 1, poison_value(dtype));
          for (std::size_t i = 0; i < n; ++i) want[offset + i] = representable(dtype, value);
          check_close("fill", got, want, 0.0, 0.0, NanRule::must_match);
        }
      }
    }
  }
  DeviceBuffer buf(64);
  CHECK_THROWS_AS(rc::fill(buf.ptr, rc::kInt32, 4, 1e10, 0), std::invalid_argument);
  CHECK_THROWS_AS(rc::fill(buf.ptr, rc::kInt64, 4, std::nan(""), 0), std::invalid_argument);
  CHECK_THROWS_AS(rc::fill(buf.ptr, 17, 4, 1.0, 0), std::invalid_argument);
  CHECK_THROWS_AS(rc::fill(buf.ptr, rc::kFloat32, -1, 1.0, 0), std::invalid_argument);
}

TEST_CASE("cuda cast: every pair of the five dtypes") {
  RETIKD_SKIP_WITHOUT_CUDA();
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for (int src : kDtypes) {
    for (int dst : kDtypes) {
      INFO(dtype_name(src) << " -> " << dtype_name(dst));
      const std::size_t n = 1000 + rng() % 1000;
      // Floats with fractions (truncation to integers is visible); integers past half's range (inf) and,
      // for int64, past int32's (wrap-around).
      std::vector<double> in;
      if (is_float_dtype(src)) {
        in = uniform(rng, n, -300.0, 300.0);
      } else {
        const double span = src == rc::kInt64 ? 1e12 : 70000.0;
        in = uniform(rng, n, -span, span);
      }
      for (double& x : in) x = representable(src, x);
      DeviceBuffer sbuf(n * dtype_size(src));
      sbuf.upload(encode_all(src, in));
      auto dbuf = poisoned_buffer(dst, n);
      rc::cast(sbuf.ptr, src, dbuf->ptr, dst, static_cast<int64_t>(n), 0);
      const std::vector<double> got = decode_all(dst, dbuf->download());
      std::vector<double> want(n);
      for (std::size_t i = 0; i < n; ++i) {
        const double x = in[i];
        if (dst == rc::kInt32)
          want[i] = static_cast<double>(static_cast<int32_t>(static_cast<int64_t>(std::trunc(x))));  // wraps
        else if (dst == rc::kInt64)
          want[i] = std::trunc(x);
        else
          want[i] = representable(dst, x);
      }
      if (dst == rc::kFloat16)
        check_close("cast", got, want, rtol_for(dst), atol_for(dst), NanRule::must_match);
      else if (dst == rc::kFloat32)
        check_close("cast", got, want, rtol_for(dst), 0.0, NanRule::must_match);
      else
        check_close("cast", got, want, 0.0, 0.0, NanRule::must_match);
    }
  }
  DeviceBuffer buf(64);
  CHECK_THROWS_AS(rc::cast(buf.ptr, rc::kFloat32, buf.ptr, rc::kFloat64, 4, 0), std::invalid_argument);
  CHECK_THROWS_AS(rc::cast(buf.ptr, rc::kFloat32, buf.ptr, 9, 4, 0), std::invalid_argument);
}

namespace {

// Row-major gather on the host: the reference for strided_copy.
std::vector<double> gather_reference(const std::vector<double>& src, const std::vector<int64_t>& sizes,
                                     const std::vector<int64_t>& strides, int64_t offset) {
  int64_t n = 1;
  for (int64_t s : sizes) n *= s;
  std::vector<double> out(static_cast<std::size_t>(n));
  std::vector<int64_t> index(sizes.size(), 0);
  for (int64_t i = 0; i < n; ++i) {
    int64_t off = offset;
    for (std::size_t d = 0; d < sizes.size(); ++d) off += index[d] * strides[d];
    out[static_cast<std::size_t>(i)] = src[static_cast<std::size_t>(off)];
    for (int d = static_cast<int>(sizes.size()) - 1; d >= 0; --d) {
      if (++index[d] < sizes[d]) break;
      index[d] = 0;
    }
  }
  return out;
}

struct StridedCase {
  std::string name;
  std::vector<int64_t> sizes;
  std::vector<int64_t> strides;
  int64_t offset;
};

void run_strided_case(const StridedCase& c, int dtype, std::mt19937& rng) {
  INFO(c.name << " " << dtype_name(dtype));
  int64_t hi = c.offset, lo = c.offset, n = 1;
  for (std::size_t d = 0; d < c.sizes.size(); ++d) {
    n *= c.sizes[d];
    const int64_t reach = (c.sizes[d] - 1) * c.strides[d];
    if (reach > 0) hi += reach; else lo += reach;
  }
  REQUIRE(lo >= 0);
  const std::size_t extent = static_cast<std::size_t>(hi + 1);
  std::vector<double> src = uniform(rng, extent, -1000.0, 1000.0);
  for (double& x : src) x = representable(dtype, x);
  DeviceBuffer sbuf(extent * dtype_size(dtype));
  sbuf.upload(encode_all(dtype, src));
  auto dbuf = poisoned_buffer(dtype, static_cast<std::size_t>(n) + 1);  // one spare element must stay poisoned
  rc::strided_copy(sbuf.ptr, dtype, static_cast<int>(c.sizes.size()), c.sizes.data(), c.strides.data(), c.offset,
                   dbuf->ptr, 0);
  std::vector<double> want = gather_reference(src, c.sizes, c.strides, c.offset);
  want.push_back(poison_value(dtype));
  check_close("strided_copy", decode_all(dtype, dbuf->download()), want, 0.0, 0.0, NanRule::must_match);
}

// Contiguous strides of `sizes`, then permuted by `perm` (the strides of a permuted view).
std::vector<int64_t> permuted_strides(const std::vector<int64_t>& base_sizes, const std::vector<int>& perm) {
  std::vector<int64_t> contiguous(base_sizes.size());
  int64_t s = 1;
  for (int d = static_cast<int>(base_sizes.size()) - 1; d >= 0; --d) {
    contiguous[d] = s;
    s *= base_sizes[d];
  }
  std::vector<int64_t> out;
  for (int p : perm) out.push_back(contiguous[p]);
  return out;
}

}  // namespace

TEST_CASE("cuda strided_copy: transposes, permutes, slices, broadcasts, flips, 0 to 8 dimensions") {
  RETIKD_SKIP_WITHOUT_CUDA();
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  auto dim = [&](int lo, int hi) { return static_cast<int64_t>(lo + rng() % (hi - lo + 1)); };

  std::vector<StridedCase> cases;
  const int64_t r = dim(1, 40), c = dim(1, 40);
  cases.push_back({"transpose", {c, r}, {1, c}, 0});
  cases.push_back({"contiguous", {r, c}, {c, 1}, 0});
  {
    const std::vector<int64_t> base = {dim(1, 5), dim(2, 6), dim(1, 7), dim(2, 9)};
    const std::vector<int> perm = {2, 0, 3, 1};
    std::vector<int64_t> sizes;
    for (int p : perm) sizes.push_back(base[p]);
    cases.push_back({"permute 4d", sizes, permuted_strides(base, perm), 0});
  }
  cases.push_back({"slice with step and offset", {dim(2, 9), dim(2, 9)}, {3 * 50, 2}, 7});
  cases.push_back({"broadcast (stride 0)", {dim(2, 6), dim(2, 30), dim(1, 4)}, {0, 1, 0}, 5});
  {
    const int64_t rows = dim(2, 20), cols = dim(2, 20);
    cases.push_back({"flip (negative stride)", {rows, cols}, {-cols, 1}, (rows - 1) * cols});
  }
  cases.push_back({"0-d", {}, {}, 3});
  cases.push_back({"size-1 dims", {1, dim(2, 9), 1, dim(2, 9)}, {999, 1, 999, 20}, 0});
  {
    // 8 dimensions of size 2, reversed: nothing merges, the widest kernel runs.
    const std::vector<int64_t> base(8, 2);
    const std::vector<int> perm = {7, 6, 5, 4, 3, 2, 1, 0};
    cases.push_back({"8d reversed", std::vector<int64_t>(8, 2), permuted_strides(base, perm), 1});
  }
  for (const StridedCase& sc : cases)
    for (int dtype : {rc::kFloat32, rc::kFloat16, rc::kInt64})
      run_strided_case(sc, dtype, rng);

  // 9 dimensions that do not merge: refused with a message, not miscopied.
  {
    const std::vector<int64_t> base(9, 2);
    const std::vector<int> perm = {8, 7, 6, 5, 4, 3, 2, 1, 0};
    const std::vector<int64_t> sizes(9, 2);
    const std::vector<int64_t> strides = permuted_strides(base, perm);
    DeviceBuffer sbuf(512 * 4), dbuf(512 * 4);
    CHECK_THROWS_AS(rc::strided_copy(sbuf.ptr, rc::kFloat32, 9, sizes.data(), strides.data(), 0, dbuf.ptr, 0),
                    std::invalid_argument);
  }
}

TEST_CASE("cuda strided_copy: 64-bit indexing beyond 2^30 elements") {
  RETIKD_SKIP_WITHOUT_CUDA();
  // Two rows 2^30 + 5 elements apart (float16: a 2 GiB buffer); only the rows are written and read.
  const int64_t row_stride = (int64_t(1) << 30) + 5;
  const int64_t cols = 37;
  const std::size_t bytes = static_cast<std::size_t>(row_stride + cols) * 2;
  std::unique_ptr<DeviceBuffer> big;
  try {
    big.reset(new DeviceBuffer(bytes));
  } catch (const std::runtime_error& e) {
    MESSAGE("skipped: cannot allocate " << bytes << " bytes: " << e.what());
    return;
  }
  std::mt19937 rng(fresh_seed());
  const std::vector<double> row0 = decode_all(rc::kFloat16, encode_all(rc::kFloat16, uniform(rng, cols, -8, 8)));
  const std::vector<double> row1 = decode_all(rc::kFloat16, encode_all(rc::kFloat16, uniform(rng, cols, -8, 8)));
  big->upload(encode_all(rc::kFloat16, row0), 0);
  big->upload(encode_all(rc::kFloat16, row1), static_cast<std::size_t>(row_stride) * 2);
  auto out = poisoned_buffer(rc::kFloat16, static_cast<std::size_t>(2 * cols));
  const int64_t sizes[] = {2, cols};
  const int64_t strides[] = {row_stride, 1};
  rc::strided_copy(big->ptr, rc::kFloat16, 2, sizes, strides, 0, out->ptr, 0);
  std::vector<double> want = row0;
  want.insert(want.end(), row1.begin(), row1.end());
  check_close("strided_copy beyond 2^30", decode_all(rc::kFloat16, out->download()), want, 0.0, 0.0,
              NanRule::must_match);
  big.reset();
  rc::empty_cache();
}

namespace {

double binary_reference(int op, double a, double b) {
  const float x = static_cast<float>(a), y = static_cast<float>(b);
  switch (op) {
    case rc::kAdd: return x + y;
    case rc::kSub: return x - y;
    case rc::kMul: return x * y;
    case rc::kDiv: return x / y;
    case rc::kMax: return (std::isnan(x) || std::isnan(y)) ? NAN : std::max(x, y);
    case rc::kMin: return (std::isnan(x) || std::isnan(y)) ? NAN : std::min(x, y);
    case rc::kEq: return x == y ? 1.0 : 0.0;
    case rc::kNe: return x != y ? 1.0 : 0.0;
    case rc::kLt: return x < y ? 1.0 : 0.0;
    case rc::kLe: return x <= y ? 1.0 : 0.0;
    case rc::kGt: return x > y ? 1.0 : 0.0;
    case rc::kGe: return x >= y ? 1.0 : 0.0;
    default: return y > 0 ? x : (y < 0 ? -x : 0.0);  // kAbsGrad: x·sign(y)
  }
}

double unary_reference(int op, double x) {
  switch (op) {
    case rc::kRelu: return std::isnan(x) ? x : (x < 0 ? 0.0 : x);
    case rc::kRelu6: return std::isnan(x) ? x : std::min(std::max(x, 0.0), 6.0);
    case rc::kSigmoid: return 1.0 / (1.0 + std::exp(-x));
    case rc::kTanh: return std::tanh(x);
    case rc::kGeluErf: return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
    case rc::kSilu: return x / (1.0 + std::exp(-x));
    case rc::kNeg: return -x;
    case rc::kExp: return std::exp(x);
    case rc::kSqrt: return std::sqrt(x);
    case rc::kLog: return std::log(x);
    default: return std::fabs(x);
  }
}

const int kBinaryOps[] = {rc::kAdd, rc::kSub, rc::kMul, rc::kDiv, rc::kMax, rc::kMin, rc::kEq,
                          rc::kNe,  rc::kLt,  rc::kLe,  rc::kGt,  rc::kGe,  rc::kAbsGrad};
const int kUnaryOps[] = {rc::kRelu, rc::kRelu6, rc::kSigmoid, rc::kTanh, rc::kGeluErf,
                         rc::kSilu, rc::kNeg, rc::kExp, rc::kAbs, rc::kSqrt, rc::kLog};

}  // namespace

TEST_CASE("cuda binary: add sub mul div max min, comparisons, abs grad, float32 and float16, vector and scalar paths, in place") {
  RETIKD_SKIP_WITHOUT_CUDA();
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for (int dtype : {rc::kFloat32, rc::kFloat16}) {
    for (int op : kBinaryOps) {
      for (std::size_t n : kSizes) {
        for (std::size_t offset : {0, 1}) {  // offset 1 breaks 16-byte alignment: the scalar path
          for (bool in_place : {false, true}) {
            INFO(dtype_name(dtype) << " op " << op << " n " << n << " offset " << offset << " in place " << in_place);
            std::vector<double> a = uniform(rng, n, -4.0, 4.0);
            std::vector<double> b = uniform(rng, n, 0.25, 4.0);  // away from 0: division stays finite
            for (double& x : b) x = (rng() & 1) ? x : -x;
            for (std::size_t i = 0; i < n; i += 3) a[i] = b[i];  // ties, so the comparisons see equal operands
            for (double& x : a) x = representable(dtype, x);
            for (double& x : b) x = representable(dtype, x);
            DeviceBuffer abuf((n + offset) * dtype_size(dtype)), bbuf((n + offset) * dtype_size(dtype));
            abuf.upload(encode_all(dtype, a), offset * dtype_size(dtype));
            bbuf.upload(encode_all(dtype, b), offset * dtype_size(dtype));
            auto obuf = poisoned_buffer(dtype, n + offset + 1);
            void* out = in_place ? abuf.at(dtype, offset) : obuf->at(dtype, offset);
            rc::binary(op, abuf.at(dtype, offset), bbuf.at(dtype, offset), out, dtype, static_cast<int64_t>(n), 0);
            std::vector<double> got = decode_all(dtype, in_place ? abuf.download() : obuf->download());
            got.erase(got.begin(), got.begin() + static_cast<std::ptrdiff_t>(offset));
            std::vector<double> want(n);
            for (std::size_t i = 0; i < n; ++i) want[i] = representable(dtype, binary_reference(op, a[i], b[i]));
            if (!in_place) {
              want.push_back(poison_value(dtype));  // the element after the range stays untouched
            }
            check_close("binary", got, want, rtol_for(dtype), atol_for(dtype), NanRule::must_match);
          }
        }
      }
    }
  }
}

TEST_CASE("cuda unary: relu relu6 sigmoid tanh gelu silu neg exp abs sqrt log, float32 and float16") {
  RETIKD_SKIP_WITHOUT_CUDA();
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for (int dtype : {rc::kFloat32, rc::kFloat16}) {
    for (int op : kUnaryOps) {
      for (std::size_t n : kSizes) {
        for (std::size_t offset : {0, 1}) {
          for (bool in_place : {false, true}) {
            INFO(dtype_name(dtype) << " op " << op << " n " << n << " offset " << offset << " in place " << in_place);
            std::vector<double> x = uniform(rng, n, -7.0, 7.0);
            for (double& v : x) v = representable(dtype, v);
            DeviceBuffer xbuf((n + offset) * dtype_size(dtype));
            xbuf.upload(encode_all(dtype, x), offset * dtype_size(dtype));
            auto obuf = poisoned_buffer(dtype, n + offset + 1);
            void* out = in_place ? xbuf.at(dtype, offset) : obuf->at(dtype, offset);
            rc::unary(op, xbuf.at(dtype, offset), out, dtype, static_cast<int64_t>(n), 0);
            std::vector<double> got = decode_all(dtype, in_place ? xbuf.download() : obuf->download());
            got.erase(got.begin(), got.begin() + static_cast<std::ptrdiff_t>(offset));
            std::vector<double> want(n);
            for (std::size_t i = 0; i < n; ++i) want[i] = representable(dtype, unary_reference(op, x[i]));
            if (!in_place) want.push_back(poison_value(dtype));
            check_close("unary", got, want, rtol_for(dtype), atol_for(dtype), NanRule::must_match);
          }
        }
      }
    }
  }
}

TEST_CASE("cuda elementwise: NaN propagation and argument errors") {
  RETIKD_SKIP_WITHOUT_CUDA();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (int dtype : {rc::kFloat32, rc::kFloat16}) {
    INFO(dtype_name(dtype));
    const std::vector<double> a = {nan, 1.0, -2.0, nan};
    const std::vector<double> b = {1.0, nan, 3.0, nan};
    DeviceBuffer abuf(4 * dtype_size(dtype)), bbuf(4 * dtype_size(dtype)), obuf(4 * dtype_size(dtype));
    abuf.upload(encode_all(dtype, a));
    bbuf.upload(encode_all(dtype, b));
    for (int op : {rc::kMax, rc::kMin}) {
      rc::binary(op, abuf.ptr, bbuf.ptr, obuf.ptr, dtype, 4, 0);
      const std::vector<double> got = decode_all(dtype, obuf.download());
      CHECK(std::isnan(got[0]));
      CHECK(std::isnan(got[1]));
      CHECK(got[2] == (op == rc::kMax ? 3.0 : -2.0));
      CHECK(std::isnan(got[3]));
    }
    for (int op : {rc::kEq, rc::kNe, rc::kLt, rc::kLe, rc::kGt, rc::kGe}) {  // NaN compares false, but !=
      rc::binary(op, abuf.ptr, bbuf.ptr, obuf.ptr, dtype, 4, 0);
      const std::vector<double> got = decode_all(dtype, obuf.download());
      for (int i : {0, 1, 3}) CHECK(got[static_cast<std::size_t>(i)] == (op == rc::kNe ? 1.0 : 0.0));
    }
    for (int op : {rc::kRelu, rc::kRelu6, rc::kAbs}) {
      rc::unary(op, abuf.ptr, obuf.ptr, dtype, 4, 0);
      const std::vector<double> got = decode_all(dtype, obuf.download());
      CHECK(std::isnan(got[0]));
      CHECK(got[1] == 1.0);
      CHECK(got[2] == (op == rc::kAbs ? 2.0 : 0.0));
    }
  }
  DeviceBuffer buf(64);
  CHECK_THROWS_AS(rc::unary(rc::kRelu, buf.ptr, buf.ptr, rc::kInt32, 4, 0), std::invalid_argument);
  CHECK_THROWS_AS(rc::unary(99, buf.ptr, buf.ptr, rc::kFloat32, 4, 0), std::invalid_argument);
  CHECK_THROWS_AS(rc::binary(rc::kAdd, buf.ptr, buf.ptr, buf.ptr, rc::kFloat64, 4, 0), std::invalid_argument);
  CHECK_THROWS_AS(rc::binary(42, buf.ptr, buf.ptr, buf.ptr, rc::kFloat32, 4, 0), std::invalid_argument);
  CHECK_THROWS_AS(rc::binary(rc::kAdd, buf.ptr, buf.ptr, buf.ptr, rc::kFloat32, -3, 0), std::invalid_argument);
}

#endif  // RETIKD_WITH_CUDA
