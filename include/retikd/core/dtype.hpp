// retikd/core/dtype.hpp — element types a Tensor can hold, and the compile-time map between C++ types and
// DType values that the CPU kernels dispatch on.
//
// float64 is not in the design's list of deployable types; it exists for the CPU path so gradient checks
// can run in double precision (central differences in float32 are too noisy to catch subtle backward bugs).
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <type_traits>

#include "retikd/core/error.hpp"
#include "retikd/core/half.hpp"

namespace retikd {

enum class DType : uint8_t { float32 = 0, float16 = 1, int32 = 2, int64 = 3, float64 = 4 };

inline std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::float32: return 4;
    case DType::float16: return 2;
    case DType::int32: return 4;
    case DType::int64: return 8;
    case DType::float64: return 8;
  }
  fail("dtype_size: unknown dtype");
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::float32: return "float32";
    case DType::float16: return "float16";
    case DType::int32: return "int32";
    case DType::int64: return "int64";
    case DType::float64: return "float64";
  }
  return "unknown";
}

inline bool is_floating(DType t) {
  return t == DType::float32 || t == DType::float16 || t == DType::float64;
}

inline std::ostream& operator<<(std::ostream& os, DType t) { return os << dtype_name(t); }

template <class T>
struct dtype_of;
template <>
struct dtype_of<float> { static constexpr DType value = DType::float32; };
template <>
struct dtype_of<Half> { static constexpr DType value = DType::float16; };
template <>
struct dtype_of<int32_t> { static constexpr DType value = DType::int32; };
template <>
struct dtype_of<int64_t> { static constexpr DType value = DType::int64; };
template <>
struct dtype_of<double> { static constexpr DType value = DType::float64; };

template <class T>
struct type_tag { using type = T; };

// Calls fn(type_tag<T>{}) with T the C++ type of `t`; `op` names the caller in the error.
template <class Fn>
decltype(auto) dispatch_all(DType t, const char* op, Fn&& fn) {
  switch (t) {
    case DType::float32: return fn(type_tag<float>{});
    case DType::float16: return fn(type_tag<Half>{});
    case DType::int32: return fn(type_tag<int32_t>{});
    case DType::int64: return fn(type_tag<int64_t>{});
    case DType::float64: return fn(type_tag<double>{});
  }
  fail(op, ": unknown dtype");
}

// The CPU compute types of differentiable ops: float32 and float64 (float16 tensors are converted first).
template <class Fn>
decltype(auto) dispatch_floating(DType t, const char* op, Fn&& fn) {
  switch (t) {
    case DType::float32: return fn(type_tag<float>{});
    case DType::float64: return fn(type_tag<double>{});
    default: fail(op, ": expected a float32 or float64 tensor on the CPU, got ", dtype_name(t));
  }
}

}  // namespace retikd
