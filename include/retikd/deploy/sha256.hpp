// retikd/deploy/sha256.hpp — SHA-256 (FIPS 180-4), the checksum of a student bundle.
//
// Written from the standard: 64-byte blocks, the message schedule W[0..63] with σ0/σ1, the compression rounds
// with Σ0/Σ1, Ch and Maj, big-endian words, and the padding 0x80, zeros, 64-bit bit length. Streaming
// (update() any number of times, then hex() / digest()); tests check the standard's example vectors. The
// hash is for detecting corruption, not for security: nothing here is constant-time.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace retikd {
namespace deploy {

class Sha256 {
 public:
  Sha256() { reset(); }

  void reset() {
    static const uint32_t init[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                                     0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};
    for (int i = 0; i < 8; ++i) h_[i] = init[i];
    buffered_ = 0;
    length_ = 0;
    finished_ = false;
  }

  Sha256& update(const void* data, std::size_t n) {
    const uint8_t* p = static_cast<const uint8_t*>(data);
    length_ += static_cast<uint64_t>(n);
    if (buffered_ > 0) {
      while (n > 0 && buffered_ < 64) {
        block_[buffered_++] = *p++;
        --n;
      }
      if (buffered_ == 64) {
        compress(block_);
        buffered_ = 0;
      }
    }
    while (n >= 64) {
      compress(p);
      p += 64;
      n -= 64;
    }
    while (n > 0) {
      block_[buffered_++] = *p++;
      --n;
    }
    return *this;
  }
  Sha256& update(const std::string& s) { return update(s.data(), s.size()); }

  // The 32-byte digest; the object must be reset() before it hashes anything else.
  std::array<uint8_t, 32> digest() {
    if (!finished_) finish();
    std::array<uint8_t, 32> out{};
    for (int i = 0; i < 8; ++i)
      for (int b = 0; b < 4; ++b) out[static_cast<std::size_t>(4 * i + b)] = static_cast<uint8_t>(h_[i] >> (24 - 8 * b));
    return out;
  }
  // The digest as 64 lower-case hex digits.
  std::string hex() {
    static const char* digits = "0123456789abcdef";
    std::string s;
    for (uint8_t b : digest()) {
      s += digits[b >> 4];
      s += digits[b & 15];
    }
    return s;
  }

 private:
  static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

  void finish() {
    const uint64_t bits = length_ * 8u;
    block_[buffered_++] = 0x80;
    if (buffered_ > 56) {
      while (buffered_ < 64) block_[buffered_++] = 0;
      compress(block_);
      buffered_ = 0;
    }
    while (buffered_ < 56) block_[buffered_++] = 0;
    for (int i = 7; i >= 0; --i) block_[buffered_++] = static_cast<uint8_t>(bits >> (8 * i));
    compress(block_);
    buffered_ = 0;
    finished_ = true;
  }

  void compress(const uint8_t* block) {
    // The first 32 bits of the fractional parts of the cube roots of the first 64 primes.
    static const uint32_t k[64] = {
        0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
        0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
        0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
        0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
        0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
        0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
        0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
        0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u};
    uint32_t w[64];
    for (int t = 0; t < 16; ++t)
      w[t] = (uint32_t(block[4 * t]) << 24) | (uint32_t(block[4 * t + 1]) << 16) | (uint32_t(block[4 * t + 2]) << 8) |
             uint32_t(block[4 * t + 3]);
    for (int t = 16; t < 64; ++t) {
      const uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
      const uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
      w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
    for (int t = 0; t < 64; ++t) {
      const uint32_t S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
      const uint32_t ch = (e & f) ^ (~e & g);
      const uint32_t t1 = h + S1 + ch + k[t] + w[t];
      const uint32_t S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
      const uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
      const uint32_t t2 = S0 + maj;
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    h_[0] += a;
    h_[1] += b;
    h_[2] += c;
    h_[3] += d;
    h_[4] += e;
    h_[5] += f;
    h_[6] += g;
    h_[7] += h;
  }

  uint32_t h_[8];
  uint8_t block_[64];
  std::size_t buffered_ = 0;
  uint64_t length_ = 0;
  bool finished_ = false;
};

// SHA-256 of a byte string, as hex.
inline std::string sha256_hex(const void* data, std::size_t n) { return Sha256().update(data, n).hex(); }
inline std::string sha256_hex(const std::string& s) { return sha256_hex(s.data(), s.size()); }

}  // namespace deploy
}  // namespace retikd
