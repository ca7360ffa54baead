// retikd/core/random.hpp — seeded random numbers and the weight initialisers built on them.
//
// Generator is xoshiro256** seeded through SplitMix64: fast, small, and reproducible across platforms
// (std::normal_distribution is not: its algorithm is implementation-defined, so we do Box–Muller ourselves).
// `Generator::derive(seed, a, b)` gives an independent stream per (epoch, index), which is how the data
// pipeline stays reproducible whatever the thread count.
//
// Initialisers fill on the host and copy to the tensor's device, so GPU and CPU runs with one seed match.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>
#include <string>
#include <vector>

#include "retikd/core/error.hpp"
#include "retikd/core/tensor.hpp"

namespace retikd {

inline uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) { reseed(seed); }

  // An independent stream for (seed, a, b): e.g. (run seed, epoch, sample index).
  static Generator derive(uint64_t seed, uint64_t a, uint64_t b = 0) {
    uint64_t s = seed;
    uint64_t h = splitmix64(s) ^ (a * 0xD1B54A32D192ED03ULL);
    h = splitmix64(h) ^ (b * 0xABC98388FB8FAC03ULL);
    return Generator(splitmix64(h));
  }

  void reseed(uint64_t seed) {
    uint64_t s = seed;
    for (auto& w : state_) w = splitmix64(s);
    has_spare_normal_ = false;
  }

  uint64_t next_u64() {
    const uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * (1.0 / 9007199254740992.0); }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [0, n).
  uint64_t below(uint64_t n) {
    RETIKD_CHECK(n > 0, "Generator::below: n must be positive");
    // Lemire's multiply-shift with rejection: unbiased.
    unsigned __int128 m = static_cast<unsigned __int128>(next_u64()) * n;
    uint64_t low = static_cast<uint64_t>(m);
    if (low < n) {
      const uint64_t threshold = (0 - n) % n;
      while (low < threshold) {
        m = static_cast<unsigned __int128>(next_u64()) * n;
        low = static_cast<uint64_t>(m);
      }
    }
    return static_cast<uint64_t>(m >> 64);
  }
  double normal() {
    if (has_spare_normal_) {
      has_spare_normal_ = false;
      return spare_normal_;
    }
    double u1;
    do u1 = uniform(); while (u1 <= 0.0);
    const double u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_normal_ = r * std::sin(kTwoPi * u2);
    has_spare_normal_ = true;
    return r * std::cos(kTwoPi * u2);
  }
  double normal(double mean, double std) { return mean + std * normal(); }

  // State for checkpoints: resuming a run restores the exact stream.
  std::vector<uint64_t> state() const {
    uint64_t spare_bits;
    std::memcpy(&spare_bits, &spare_normal_, sizeof(double));
    return {state_[0], state_[1], state_[2], state_[3], has_spare_normal_ ? 1ULL : 0ULL, spare_bits};
  }
  void set_state(const std::vector<uint64_t>& s) {
    RETIKD_CHECK(s.size() == 6, "Generator::set_state: expected 6 words, got ", s.size());
    for (int i = 0; i < 4; ++i) state_[i] = s[i];
    has_spare_normal_ = s[4] != 0;
    std::memcpy(&spare_normal_, &s[5], sizeof(double));
  }

 private:
  static constexpr double kTwoPi = 6.283185307179586476925286766559;
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t state_[4];
  bool has_spare_normal_ = false;
  double spare_normal_ = 0.0;
};

namespace detail {
// Fills a floating tensor (any device, any layout) from a host generator function of the element index.
template <class Fn>
void fill_host_generated(Tensor& t, const char* op, Fn&& gen) {
  RETIKD_CHECK(is_floating(t.dtype()), op, ": expected a floating tensor, got ", t.describe());
  Tensor host = Tensor::empty(t.shape(), DType::float64);
  double* p = host.data<double>();
  for (int64_t i = 0; i < host.numel(); ++i) p[i] = gen();
  t.copy_(host);
}
}  // namespace detail

inline Tensor& uniform_(Tensor& t, double lo, double hi, Generator& g) {
  detail::fill_host_generated(t, "uniform_", [&] { return g.uniform(lo, hi); });
  return t;
}
inline Tensor& normal_(Tensor& t, double mean, double std, Generator& g) {
  detail::fill_host_generated(t, "normal_", [&] { return g.normal(mean, std); });
  return t;
}
// Normal(mean, std) truncated to [a, b] by rejection (a, b absolute, as timm's trunc_normal_).
inline Tensor& trunc_normal_(Tensor& t, double mean, double std, double a, double b, Generator& g) {
  RETIKD_CHECK(a < b, "trunc_normal_: empty interval [", a, ", ", b, "]");
  detail::fill_host_generated(t, "trunc_normal_", [&] {
    for (int attempt = 0; attempt < 1000; ++attempt) {
      double v = g.normal(mean, std);
      if (v >= a && v <= b) return v;
    }
    return std::min(std::max(mean, a), b);
  });
  return t;
}

// fan_in / fan_out of a weight laid out as (out, in, kh, kw...) — PyTorch's convention.
inline std::pair<int64_t, int64_t> fan_in_out(const Tensor& w) {
  RETIKD_CHECK(w.dim() >= 2, "fan_in_out: weight ", w.describe(), " needs at least 2 dimensions");
  int64_t receptive = 1;
  for (int64_t d = 2; d < w.dim(); ++d) receptive *= w.size(d);
  return {w.size(1) * receptive, w.size(0) * receptive};
}

// The gain PyTorch's calculate_gain uses: "relu" → √2, "leaky_relu" → √(2/(1+a²)), "linear" → 1.
inline double init_gain(const std::string& nonlinearity, double a = 0.0) {
  if (nonlinearity == "relu") return std::sqrt(2.0);
  if (nonlinearity == "leaky_relu") return std::sqrt(2.0 / (1.0 + a * a));
  if (nonlinearity == "linear" || nonlinearity == "sigmoid") return 1.0;
  if (nonlinearity == "tanh") return 5.0 / 3.0;
  fail("init_gain: unknown nonlinearity '", nonlinearity, "'");
}

inline Tensor& kaiming_uniform_(Tensor& w, Generator& g, double a = 0.0, bool fan_out = false,
                                const std::string& nonlinearity = "leaky_relu") {
  auto fans = fan_in_out(w);
  const double fan = static_cast<double>(fan_out ? fans.second : fans.first);
  const double bound = init_gain(nonlinearity, a) * std::sqrt(3.0 / fan);
  return uniform_(w, -bound, bound, g);
}
inline Tensor& kaiming_normal_(Tensor& w, Generator& g, double a = 0.0, bool fan_out = false,
                               const std::string& nonlinearity = "leaky_relu") {
  auto fans = fan_in_out(w);
  const double fan = static_cast<double>(fan_out ? fans.second : fans.first);
  return normal_(w, 0.0, init_gain(nonlinearity, a) / std::sqrt(fan), g);
}
inline Tensor& xavier_uniform_(Tensor& w, Generator& g, double gain = 1.0) {
  auto fans = fan_in_out(w);
  const double bound = gain * std::sqrt(6.0 / static_cast<double>(fans.first + fans.second));
  return uniform_(w, -bound, bound, g);
}

inline Tensor rand(const Shape& shape, Generator& g, DType dtype = DType::float32, Device device = Device::cpu()) {
  Tensor t = Tensor::empty(shape, dtype, device);
  return uniform_(t, 0.0, 1.0, g);
}
inline Tensor randn(const Shape& shape, Generator& g, DType dtype = DType::float32,
                    Device device = Device::cpu()) {
  Tensor t = Tensor::empty(shape, dtype, device);
  return normal_(t, 0.0, 1.0, g);
}

}  // namespace retikd
