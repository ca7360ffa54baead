// retikd/core/device.hpp — where a tensor's storage lives: the host, or one CUDA device.
#pragma once

#include <ostream>
#include <string>

#include "retikd/core/error.hpp"

namespace retikd {

struct Device {
  enum class Kind : uint8_t { CPU, CUDA };
  Kind kind = Kind::CPU;
  int index = 0;

  static Device cpu() { return Device{Kind::CPU, 0}; }
  static Device cuda(int index = 0) { return Device{Kind::CUDA, index}; }
  bool is_cpu() const { return kind == Kind::CPU; }
  bool is_cuda() const { return kind == Kind::CUDA; }
  std::string to_string() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
  friend bool operator==(const Device& a, const Device& b) {
    return a.kind == b.kind && (a.kind == Kind::CPU || a.index == b.index);
  }
  friend bool operator!=(const Device& a, const Device& b) { return !(a == b); }
  friend std::ostream& operator<<(std::ostream& os, const Device& d) { return os << d.to_string(); }
};

}  // namespace retikd
