// retikd/ops/cpu/vec_math.hpp — float32 exp and erf on whole SIMD vectors, and the row kernels built on them
// (exact GELU forward and backward, softmax rows), for the CPU fast paths of ops/cpu/activation.hpp and
// ops/cpu/softmax.hpp.
//
// Why: glibc's expf / erff are scalar calls, and a ViT step evaluates them ~60 million times (GELU on
// (B·T, 4D) activations forward and backward, softmax on (B, H, T, T) logits): with them GELU and softmax
// took ~200 ms of a ~1 s ViT-Tiny step on one core (docs/results.md, "ViT on the CPU"), as much as half the
// step's GEMM time. These versions run 16 lanes at a time on AVX-512 with the same GCC/Clang vector
// extensions the GEMM uses (no intrinsics), and agree with the libm functions to about one float ulp:
//   exp  n = round(x·log2 e), r = x − n·ln 2 (two-part ln 2), e^r by its degree-7 Taylor polynomial
//        (|r| ≤ ln2/2: truncation < 6e-9 relative), times 2^n built in the exponent bits (two factors, so
//        n = 128 still overflows to inf correctly). Results below FLT_MIN (x < −87.34) are flushed to 0:
//        denormals are slow on many cores and are 1e-38 absolute at most; −inf gives 0, NaN stays NaN.
//   erf  |x| < 1: x·P(x²), P of degree 6; 1 ≤ |x| < 4: Q((|x| − 2.5)/1.5), Q of degree 13; beyond: ±1
//        (erfc(4) = 1.5e-8 is below half a float ulp of 1). P and Q were fitted for this file by weighted
//        least squares (Q on Chebyshev nodes) against double-precision erf: truncation error 1.3e-9 relative
//        for P, 3.7e-8 absolute for Q; in float the largest error is 1.4e-7 absolute (glibc's erff: 5e-8).
//        tests/test_activation_softmax_dropout.cpp checks the float results against std::erf on a dense grid.
// double keeps the libm calls (it is the precision reference the gradient checks use).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace retikd {
namespace cpu {
namespace vec {

#if defined(__GNUC__) || defined(__clang__)
#define RETIKD_VEC_MATH 1
#if defined(__AVX512F__)
constexpr int kBytes = 64;
#elif defined(__AVX__)
constexpr int kBytes = 32;
#else
constexpr int kBytes = 16;  // SSE2, NEON: every 64-bit target this project builds for
#endif
constexpr int kLanes = kBytes / 4;
typedef float VF __attribute__((vector_size(kBytes)));
typedef int32_t VI __attribute__((vector_size(kBytes)));

inline VF load(const float* p) {
  VF v;
  std::memcpy(&v, p, sizeof(VF));
  return v;
}
inline void store(float* p, VF v) { std::memcpy(p, &v, sizeof(VF)); }
inline VF splat(float s) { return VF{} + s; }
// mask ? a : b with a comparison mask (all bits set or clear per lane); bitwise, so it is the same on every
// compiler that has the vector extensions.
inline VF select(VI mask, VF a, VF b) { return (VF)(((VI)a & mask) | ((VI)b & ~mask)); }
inline VF abs(VF x) { return (VF)((VI)x & 0x7fffffff); }

inline VF exp(VF x) {
  const VI underflow = x < -87.3365447f;  // e^x < FLT_MIN
  x = select(x > 88.8f, splat(88.8f), x);   // overflows to inf below, as e^88.8 does
  x = select(x < -87.5f, splat(-87.5f), x);
  // Round x·log2 e to an integer with the 1.5·2^23 trick: the sum's low mantissa bits hold n.
  const VF shifted = x * 1.44269504088896341f + 12582912.0f;
  const VF n = shifted - 12582912.0f;
  const VI ni = (VI)shifted - 0x4B400000;
  const VF r = (x - n * 0.693145751953125f) - n * 1.42860682030941723e-6f;  // ln 2 = hi + lo, hi exact
  VF p = splat(1.0f / 5040.0f);
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const VI n1 = ni >> 1, n2 = ni - n1;  // 2^n = 2^n1 · 2^n2, each a normal float
  const VF s1 = (VF)((n1 + 127) << 23), s2 = (VF)((n2 + 127) << 23);
  return select(underflow, VF{}, p * s1 * s2);
}

// The same for x ≤ 88 only (softmax's x − max ≤ 0): one scale factor and no overflow clamp, ~20% fewer
// instructions; identical results where both apply.
inline VF exp_upto88(VF x) {
  const VI underflow = x < -87.3365447f;
  x = select(underflow, splat(-87.0f), x);
  const VF shifted = x * 1.44269504088896341f + 12582912.0f;
  const VF n = shifted - 12582912.0f;
  const VI ni = (VI)shifted - 0x4B400000;
  const VF r = (x - n * 0.693145751953125f) - n * 1.42860682030941723e-6f;
  VF p = splat(1.0f / 5040.0f);
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  return select(underflow, VF{}, p * (VF)((ni + 127) << 23));
}

inline VF erf(VF x) {
  const VF ax = abs(x);
  const VI sign = (VI)x & (int32_t)0x80000000u;
  // |x| < 1: x·P(x²)
  const VF u = x * x;
  VF p = splat(7.885877567e-05f);
  p = p * u - 8.020440698e-04f;
  p = p * u + 5.189580532e-03f;
  p = p * u - 2.685453858e-02f;
  p = p * u + 1.128360518e-01f;
  p = p * u - 3.761262807e-01f;
  p = p * u + 1.128379166e+00f;
  const VF small = x * p;
  // 1 ≤ |x|: Q(z), z = (|x| − 2.5)/1.5 ∈ [−1, 1]; |x| is capped at 4 (NaN passes through the comparisons).
  // A polynomial costs 14 FMAs here; 1 − e^(−x²)·R(1/(1+|x|)), tried first, costs an exp and a division
  // (1.6× slower).
  const VF c = select((VI)(ax > 4.0f), splat(4.0f), ax);
  const VF z = (c - 2.5f) * (1.0f / 1.5f);
  VF q = splat(7.892192125e-05f);
  q = q * z - 1.131925252e-03f;
  q = q * z + 1.595124845e-03f;
  q = q * z + 3.431826554e-03f;
  q = q * z - 1.047718785e-02f;
  q = q * z + 7.477176845e-03f;
  q = q * z + 9.618567138e-03f;
  q = q * z - 3.216097821e-02f;
  q = q * z + 4.637811178e-02f;
  q = q * z - 4.360298166e-02f;
  q = q * z + 2.818884364e-02f;
  q = q * z - 1.225584066e-02f;
  q = q * z + 3.267218855e-03f;
  q = q * z + 9.995930784e-01f;
  // erf rounds to 1 in float from |x| = 3.92 on (erfc < half an ulp); Q(1) is one ulp below it.
  const VF large = (VF)((VI)select((VI)(c >= 3.92f), splat(1.0f), q) | sign);
  return select((VI)(ax < 1.0f), small, large);
}

// Applies fn (VF → VF, or (VF, VF) → VF) over n elements; the tail goes through a zero-padded vector so the
// functions only ever see whole vectors.
template <class Fn>
void map1(const float* x, float* y, int64_t n, Fn&& fn) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) store(y + i, fn(load(x + i)));
  if (i < n) {
    float in[kLanes] = {}, out[kLanes];
    std::memcpy(in, x + i, static_cast<std::size_t>(n - i) * sizeof(float));
    store(out, fn(load(in)));
    std::memcpy(y + i, out, static_cast<std::size_t>(n - i) * sizeof(float));
  }
}
template <class Fn>
void map2(const float* a, const float* b, float* y, int64_t n, Fn&& fn) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) store(y + i, fn(load(a + i), load(b + i)));
  if (i < n) {
    float ia[kLanes] = {}, ib[kLanes] = {}, out[kLanes];
    std::memcpy(ia, a + i, static_cast<std::size_t>(n - i) * sizeof(float));
    std::memcpy(ib, b + i, static_cast<std::size_t>(n - i) * sizeof(float));
    store(out, fn(load(ia), load(ib)));
    std::memcpy(y + i, out, static_cast<std::size_t>(n - i) * sizeof(float));
  }
}
#endif  // vector extensions

constexpr float kInvSqrt2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;

// y = x·Φ(x) = ½x(1 + erf(x/√2)), PyTorch's gelu(approximate='none').
inline void gelu_erf(const float* x, float* y, int64_t n) {
#if defined(RETIKD_VEC_MATH)
  map1(x, y, n, [](VF v) { return 0.5f * v * (1.0f + erf(v * kInvSqrt2)); });
#else
  for (int64_t i = 0; i < n; ++i) y[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * kInvSqrt2));
#endif
}

// out = g·(Φ(x) + x·φ(x)), the gradient of gelu_erf.
inline void gelu_erf_backward(const float* g, const float* x, float* out, int64_t n) {
#if defined(RETIKD_VEC_MATH)
  map2(g, x, out, n, [](VF gv, VF v) {
    const VF cdf = 0.5f * (1.0f + erf(v * kInvSqrt2));
    const VF pdf = kInvSqrt2Pi * exp(-0.5f * v * v);
    return gv * (cdf + v * pdf);
  });
#else
  for (int64_t i = 0; i < n; ++i) {
    const float cdf = 0.5f * (1.0f + std::erf(x[i] * kInvSqrt2));
    const float pdf = kInvSqrt2Pi * std::exp(-0.5f * x[i] * x[i]);
    out[i] = g[i] * (cdf + x[i] * pdf);
  }
#endif
}

// Across-lane max and sum of one vector. With GCC, log2(lanes) rotate-and-combine steps (lane permutes):
// otherwise a softmax row of ViT scores (13 vectors of 16 floats) ends in two chains of 16 dependent scalar
// operations; with the rotations one ViT-Tiny attention head's softmax took 19.6 µs instead of 24.4 (one thread,
// a scratch driver, docs/results.md). The sum's order differs from a left-to-right one (a tree), which is
// within the rounding any float sum has. Other compilers keep the scalar loop.
#if defined(RETIKD_VEC_MATH)
#if defined(__GNUC__) && !defined(__clang__)
template <int Shift>
inline VF rotate_lanes(VF v) {
  VI mask;
  for (int j = 0; j < kLanes; ++j) mask[j] = (j + Shift) % kLanes;
  return __builtin_shuffle(v, mask);
}
template <int Half = kLanes / 2>
inline VF max_across(VF v) {
  const VF r = rotate_lanes<Half>(v);
  v = select((VI)(r > v), r, v);
  return Half > 1 ? max_across<(Half > 1 ? Half / 2 : 1)>(v) : v;
}
template <int Half = kLanes / 2>
inline VF sum_across(VF v) {
  v += rotate_lanes<Half>(v);
  return Half > 1 ? sum_across<(Half > 1 ? Half / 2 : 1)>(v) : v;
}
inline float lanes_max(VF v) { return max_across(v)[0]; }
inline float lanes_sum(VF v) { return sum_across(v)[0]; }
#else
inline float lanes_max(VF v) {
  float m = v[0];
  for (int j = 1; j < kLanes; ++j) m = v[j] > m ? v[j] : m;
  return m;
}
inline float lanes_sum(VF v) {
  float total = 0.0f;
  for (int j = 0; j < kLanes; ++j) total += v[j];
  return total;
}
#endif
#endif

// Largest element of a row (NaN-propagating like the scalar loop is not needed: a NaN row gives NaN later).
inline float row_max(const float* x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  int64_t i = 0;
#if defined(RETIKD_VEC_MATH)
  if (n >= kLanes) {
    VF mv = load(x);
    for (i = kLanes; i + kLanes <= n; i += kLanes) {
      const VF v = load(x + i);
      mv = select((VI)(v > mv), v, mv);
    }
    m = lanes_max(mv);
  }
#endif
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// y = softmax(x) over a row of n elements (max-subtracted; y may alias x). Rows whose length is a multiple of
// the vector width run without a scalar tail (attention pads its score rows for that).
inline void softmax_row(const float* x, float* y, int64_t n) {
#if defined(RETIKD_VEC_MATH)
  if (n <= 0) return;
  int64_t i = 0;
  VF mv = splat(-std::numeric_limits<float>::infinity());
  for (; i + kLanes <= n; i += kLanes) {
    const VF v = load(x + i);
    mv = select((VI)(v > mv), v, mv);
  }
  float tail[kLanes];
  const int64_t rest = n - i;
  for (int j = 0; j < kLanes; ++j) tail[j] = j < rest ? x[i + j] : -std::numeric_limits<float>::infinity();
  {
    const VF v = load(tail);
    mv = select((VI)(v > mv), v, mv);
  }
  const VF mm = splat(lanes_max(mv));
  VF acc{};
  for (i = 0; i + kLanes <= n; i += kLanes) {
    const VF e = exp_upto88(load(x + i) - mm);
    store(y + i, e);
    acc += e;
  }
  VF et{};
  if (rest > 0) {
    et = exp_upto88(load(tail) - mm);  // the padding lanes give e^−inf = 0
    acc += et;
  }
  const VF inv = splat(1.0f / lanes_sum(acc));
  for (i = 0; i + kLanes <= n; i += kLanes) store(y + i, load(y + i) * inv);
  if (rest > 0) {
    store(tail, et * inv);
    for (int64_t j = 0; j < rest; ++j) y[i + j] = tail[j];
  }
#else
  if (n <= 0) return;
  float m = x[0];
  for (int64_t i = 1; i < n; ++i) m = x[i] > m ? x[i] : m;
  float total = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    y[i] = std::exp(x[i] - m);
    total += y[i];
  }
  const float inv = 1.0f / total;
  for (int64_t i = 0; i < n; ++i) y[i] *= inv;
#endif
}

// y = e^(x − shift) over a row; returns Σ y (summed in float, lane-wise then across lanes).
inline float exp_shifted_sum(const float* x, float shift, float* y, int64_t n) {
#if defined(RETIKD_VEC_MATH)
  VF acc{};
  int64_t i = 0;
  const VF s = splat(shift);
  for (; i + kLanes <= n; i += kLanes) {
    const VF e = exp(load(x + i) - s);
    store(y + i, e);
    acc += e;
  }
  float total = lanes_sum(acc);
  if (i < n) {
    float in[kLanes], out[kLanes];
    for (int j = 0; j < kLanes; ++j) in[j] = i + j < n ? x[i + j] - shift : -std::numeric_limits<float>::infinity();
    store(out, exp(load(in)));
    for (int64_t j = 0; i + j < n; ++j) {
      y[i + j] = out[j];
      total += out[j];
    }
  }
  return total;
#else
  float total = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    y[i] = std::exp(x[i] - shift);
    total += y[i];
  }
  return total;
#endif
}

// y *= s over a row.
inline void scale(float* y, float s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] *= s;
}

// Σ a·b over a row (lane-wise partial sums, so it vectorises without reassociation flags).
inline float dot(const float* a, const float* b, int64_t n) {
  int64_t i = 0;
  float total = 0.0f;
#if defined(RETIKD_VEC_MATH)
  VF acc{};
  for (; i + kLanes <= n; i += kLanes) acc += load(a + i) * load(b + i);
  total = lanes_sum(acc);
#endif
  for (; i < n; ++i) total += a[i] * b[i];
  return total;
}

}  // namespace vec
}  // namespace cpu
}  // namespace retikd
