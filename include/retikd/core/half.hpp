// retikd/core/half.hpp — retikd::Half, IEEE 754 binary16 storage usable on the host and in device code.
//
// Why not __half: host C++17 code must not need the CUDA headers, and the Jetson's nvcc 10.2 must compile
// this file, so it is C++14 (no if constexpr, inline variables or std::bit_cast). The layout is that of
// __half (one 16-bit word), so buffers of either type can be reinterpreted as the other.
//
// Arithmetic and comparisons go through float: `a + b` converts both operands to float (the implicit
// conversion) and yields a float; assigning the result to a Half rounds it to nearest even. No Half
// operators are declared on purpose — they would make mixed Half/float expressions ambiguous.
#pragma once

#include <cstdint>
#include <cstring>

#include "retikd/core/host_device.hpp"

namespace retikd {

// float -> binary16 bits, round to nearest even. NaN stays NaN (quiet, sign and top payload bits kept),
// infinities stay infinite, values that round beyond 65504 become infinity, and results below 2^-14 become
// subnormals (or a signed zero).
RETIKD_HOST_DEVICE inline uint16_t float_to_half_bits(float f) {
#if defined(__CUDA_ARCH__)
  unsigned short h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return static_cast<uint16_t>(h);
#else
  uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) {  // inf or NaN
    if (absx == 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u);
    return static_cast<uint16_t>(sign | 0x7e00u | ((absx >> 13) & 0x3ffu));
  }
  if (absx >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds past 65504
  if (absx < 0x38800000u) {  // below 2^-14: a half subnormal or zero
    const uint32_t exponent = absx >> 23;  // biased; 0 for float subnormals, all far below 2^-25
    if (exponent < 102u) return static_cast<uint16_t>(sign);  // < 2^-25 (or exactly half of it: ties to 0)
    const uint32_t mantissa = (absx & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - exponent;  // value = mantissa * 2^-shift units of 2^-24; 14 <= shift <= 24
    uint32_t q = mantissa >> shift;
    const uint32_t rem = mantissa & ((1u << shift) - 1u);
    const uint32_t halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (q & 1u))) ++q;  // a carry into 0x400 is the smallest normal
    return static_cast<uint16_t>(sign | q);
  }
  uint32_t h = (absx - 0x38000000u) >> 13;  // rebias 127 -> 15, keep the top 10 mantissa bits
  const uint32_t rem = absx & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry rolls into the exponent correctly
  return static_cast<uint16_t>(sign | h);
#endif
}

// binary16 bits -> float; exact (every half value is a float).
RETIKD_HOST_DEVICE inline float half_bits_to_float(uint16_t h) {
#if defined(__CUDA_ARCH__)
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(static_cast<unsigned short>(h)));
  return f;
#else
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t x;
  if (exponent == 0x1fu) {
    x = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0u) {
    x = sign | ((exponent + 112u) << 23) | (mantissa << 13);
  } else if (mantissa == 0u) {
    x = sign;
  } else {  // subnormal: normalise
    uint32_t e = 113u;
    while ((mantissa & 0x400u) == 0u) {
      mantissa <<= 1;
      --e;
    }
    x = sign | (e << 23) | ((mantissa & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &x, sizeof f);
  return f;
#endif
}

struct Half {
  uint16_t bits;

  RETIKD_HOST_DEVICE Half() : bits(0) {}
  RETIKD_HOST_DEVICE Half(float f) : bits(float_to_half_bits(f)) {}  // NOLINT: implicit on purpose
  RETIKD_HOST_DEVICE operator float() const { return half_bits_to_float(bits); }

  RETIKD_HOST_DEVICE static Half from_bits(uint16_t b) {
    Half h;
    h.bits = b;
    return h;
  }
};

static_assert(sizeof(Half) == 2, "retikd::Half must have the layout of __half");
static_assert(alignof(Half) == 2, "retikd::Half must have the alignment of __half");

}  // namespace retikd
