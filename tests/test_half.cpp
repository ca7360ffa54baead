// tests/test_half.cpp — retikd::Half on the host: every one of the 65536 bit patterns against an
// independent decoding, round to nearest even at every midpoint between neighbouring halves, random floats
// against a reference rounding done in double, subnormals, infinities, NaN and overflow.
#include <doctest/doctest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <ios>
#include <limits>
#include <random>
#include <type_traits>

#include "retikd/core/half.hpp"

namespace {

using retikd::float_to_half_bits;
using retikd::Half;
using retikd::half_bits_to_float;

bool is_nan_bits(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }

// IEEE binary16 decoded from its definition, in double.
double decode_reference(uint16_t h) {
  const int sign = (h & 0x8000u) ? -1 : 1;
  const int exponent = (h >> 10) & 0x1f;
  const int mantissa = h & 0x3ff;
  if (exponent == 0x1f) return mantissa ? std::numeric_limits<double>::quiet_NaN() : sign * INFINITY;
  if (exponent == 0) return sign * std::ldexp(static_cast<double>(mantissa), -24);
  return sign * std::ldexp(static_cast<double>(1024 + mantissa), exponent - 25);
}

// Round x to the binary16 grid with the C library's round-half-even (nearbyint in the default mode), in
// double, independent of the bit manipulation under test.
double round_reference(double x) {
  if (std::isnan(x) || std::isinf(x)) return x;
  const double a = std::fabs(x);
  if (a >= 65520.0) return std::copysign(INFINITY, x);
  int e = 0;
  std::frexp(a, &e);                     // a = m * 2^e, m in [0.5, 1): the leading bit is 2^(e-1)
  const int lead = std::max(e - 1, -14);  // below 2^-14 the grid spacing stays at 2^-24
  const double ulp = std::ldexp(1.0, lead - 10);
  return std::copysign(std::nearbyint(a / ulp) * ulp, x);
}

float bits_to_float(uint32_t x) {
  float f;
  std::memcpy(&f, &x, sizeof f);
  return f;
}

}  // namespace

TEST_CASE("Half: layout and basic use") {
  static_assert(sizeof(Half) == 2, "two bytes");
  static_assert(std::is_trivially_copyable<Half>::value, "memcpy-able into tensors");
  static_assert(std::is_standard_layout<Half>::value, "layout of __half");
  Half zero;
  CHECK(zero.bits == 0);
  CHECK(static_cast<float>(Half(1.0f)) == 1.0f);
  CHECK(Half(1.0f).bits == 0x3c00);
  CHECK(Half(-2.0f).bits == 0xc000);
  CHECK(Half(0.5f).bits == 0x3800);
  CHECK(Half::from_bits(0x3555).bits == 0x3555);  // 0.333251953125
  CHECK(static_cast<float>(Half::from_bits(0x3555)) == 0.333251953125f);
  // Arithmetic goes through float and rounds on assignment.
  const Half a(1.5f), b(2.25f);
  const Half c = a + b;
  CHECK(static_cast<float>(c) == 3.75f);
  CHECK(a < b);
  CHECK(a * b == 3.375f);
  const Half third = 1.0f / 3.0f;
  CHECK(third.bits == 0x3555);
}

TEST_CASE("Half: all 65536 bit patterns decode exactly and round-trip through float") {
  int checked = 0;
  for (uint32_t b = 0; b <= 0xffffu; ++b) {
    const uint16_t h = static_cast<uint16_t>(b);
    const float f = half_bits_to_float(h);
    const double ref = decode_reference(h);
    if (is_nan_bits(h)) {
      REQUIRE(std::isnan(f));
      const uint16_t back = float_to_half_bits(f);
      REQUIRE(is_nan_bits(back));
      REQUIRE((back & 0x8000u) == (h & 0x8000u));          // sign kept
      REQUIRE((back & 0x1ffu) == (h & 0x1ffu));            // payload kept
      REQUIRE((back & 0x200u) != 0);                       // and made quiet
    } else {
      REQUIRE(static_cast<double>(f) == ref);
      REQUIRE(std::signbit(f) == ((h & 0x8000u) != 0));    // -0 stays -0
      REQUIRE(float_to_half_bits(f) == h);
      REQUIRE(Half(f).bits == h);
      REQUIRE(static_cast<float>(Half::from_bits(h)) == f);
    }
    ++checked;
  }
  CHECK(checked == 65536);
}

TEST_CASE("Half: round to nearest, ties to even, at every midpoint") {
  // Between each pair of neighbouring finite halves (both signs): the midpoint goes to the even one, and the
  // floats just either side of it go to the nearer one.
  for (uint32_t sign = 0; sign <= 0x8000u; sign += 0x8000u) {
    for (uint32_t m = 0; m < 0x7bffu; ++m) {
      const uint16_t lo = static_cast<uint16_t>(sign | m);
      const uint16_t hi = static_cast<uint16_t>(sign | (m + 1));
      const double mid = 0.5 * (decode_reference(lo) + decode_reference(hi));
      const float fmid = static_cast<float>(mid);
      REQUIRE(static_cast<double>(fmid) == mid);  // 12 significant bits: exact in float
      const uint16_t even = (lo & 1u) ? hi : lo;
      REQUIRE(float_to_half_bits(fmid) == even);
      const float toward_lo = std::nextafter(fmid, static_cast<float>(decode_reference(lo)));
      const float toward_hi = std::nextafter(fmid, static_cast<float>(decode_reference(hi)));
      REQUIRE(float_to_half_bits(toward_lo) == lo);
      REQUIRE(float_to_half_bits(toward_hi) == hi);
    }
  }
  // Named cases.
  CHECK(float_to_half_bits(1.0f + 1.0f / 2048) == 0x3c00);        // tie, 1.0 is even
  CHECK(float_to_half_bits(1.0f + 3.0f / 2048) == 0x3c02);        // tie, rounds up to even
  CHECK(float_to_half_bits(1.0f + 1.0f / 2048 + 1e-7f) == 0x3c01);  // just above the tie
  CHECK(float_to_half_bits(2047.5f) == 0x6800);                   // tie between 2047 and 2048 -> 2048 (even)
  CHECK(float_to_half_bits(2048.5f) == 0x6800);                   // ulp 2 at 2048: 2048.5 -> 2048
  CHECK(float_to_half_bits(2049.0f) == 0x6800);                   // tie between 2048 and 2050 -> 2048 (even)
  CHECK(float_to_half_bits(2051.0f) == 0x6802);                   // tie between 2050 and 2052 -> 2052 (even)
}

TEST_CASE("Half: random floats match a reference rounding in double") {
  std::random_device rd;
  const uint32_t seed = rd();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  // Float bit patterns with exponents from far below the subnormal range to past the overflow threshold.
  std::uniform_int_distribution<uint32_t> exponent(90, 145);
  std::uniform_int_distribution<uint32_t> mantissa(0, 0x7fffffu);
  std::uniform_int_distribution<uint32_t> sign(0, 1);
  for (int k = 0; k < 300000; ++k) {
    const uint32_t x = (sign(rng) << 31) | (exponent(rng) << 23) | mantissa(rng);
    const float f = bits_to_float(x);
    const double want = round_reference(f);
    const float got = half_bits_to_float(float_to_half_bits(f));
    if (static_cast<double>(got) != want || std::signbit(got) != std::signbit(f)) {
      INFO("input " << f << " (bits 0x" << std::hex << x << ")");
      CHECK(static_cast<double>(got) == want);
      CHECK(std::signbit(got) == std::signbit(f));
      break;
    }
  }
}

TEST_CASE("Half: subnormals") {
  const float tiny = std::ldexp(1.0f, -24);  // smallest half subnormal
  CHECK(float_to_half_bits(tiny) == 0x0001);
  CHECK(half_bits_to_float(0x0001) == tiny);
  CHECK(float_to_half_bits(std::ldexp(1.0f, -25)) == 0x0000);           // tie with 0: 0 is even
  CHECK(float_to_half_bits(-std::ldexp(1.0f, -25)) == 0x8000);
  CHECK(float_to_half_bits(std::nextafter(std::ldexp(1.0f, -25), 1.0f)) == 0x0001);
  CHECK(float_to_half_bits(1.5f * std::ldexp(1.0f, -25) * 2) == 0x0002);  // 1.5 * 2^-24: tie 1|2 -> 2
  CHECK(float_to_half_bits(2.5f * std::ldexp(1.0f, -24)) == 0x0002);      // tie 2|3 -> 2
  CHECK(float_to_half_bits(std::ldexp(1.0f, -26)) == 0x0000);
  CHECK(float_to_half_bits(1023.0f * tiny) == 0x03ff);                  // largest subnormal
  CHECK(float_to_half_bits(1023.5f * tiny) == 0x0400);                  // tie 1023|1024 -> smallest normal
  CHECK(float_to_half_bits(std::ldexp(1.0f, -14)) == 0x0400);
  CHECK(half_bits_to_float(0x03ff) == 1023.0f * tiny);
  CHECK(half_bits_to_float(0x8001) == -tiny);
  // Float subnormals are far below half's range.
  CHECK(float_to_half_bits(std::numeric_limits<float>::denorm_min()) == 0x0000);
  CHECK(float_to_half_bits(-std::numeric_limits<float>::denorm_min()) == 0x8000);
  CHECK(float_to_half_bits(FLT_MIN) == 0x0000);
  CHECK(float_to_half_bits(-0.0f) == 0x8000);
  CHECK(float_to_half_bits(0.0f) == 0x0000);
}

TEST_CASE("Half: infinities, NaN and overflow") {
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(float_to_half_bits(inf) == 0x7c00);
  CHECK(float_to_half_bits(-inf) == 0xfc00);
  CHECK(std::isinf(half_bits_to_float(0x7c00)));
  CHECK(half_bits_to_float(0xfc00) < 0);
  CHECK(is_nan_bits(float_to_half_bits(std::numeric_limits<float>::quiet_NaN())));
  CHECK(is_nan_bits(float_to_half_bits(-std::numeric_limits<float>::quiet_NaN())));
  CHECK(is_nan_bits(float_to_half_bits(std::numeric_limits<float>::signaling_NaN())));
  CHECK(is_nan_bits(float_to_half_bits(bits_to_float(0x7f800001u))));  // payload only in the low bits
  CHECK(std::isnan(static_cast<float>(Half::from_bits(0x7e00))));
  CHECK(std::isnan(static_cast<float>(Half::from_bits(0xfc01))));
  // Overflow: 65504 is the largest half; everything from 65520 (the midpoint to the next binade) is inf.
  CHECK(float_to_half_bits(65504.0f) == 0x7bff);
  CHECK(float_to_half_bits(65519.0f) == 0x7bff);
  CHECK(float_to_half_bits(std::nextafter(65520.0f, 0.0f)) == 0x7bff);
  CHECK(float_to_half_bits(65520.0f) == 0x7c00);
  CHECK(float_to_half_bits(-65520.0f) == 0xfc00);
  CHECK(float_to_half_bits(1e10f) == 0x7c00);
  CHECK(float_to_half_bits(-1e10f) == 0xfc00);
  CHECK(float_to_half_bits(FLT_MAX) == 0x7c00);
  CHECK(float_to_half_bits(-FLT_MAX) == 0xfc00);
}
