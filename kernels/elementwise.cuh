// kernels/elementwise.cuh — templated device code of the elementwise family: vector loads, the math
// functors, dtype conversions and the work items that kernels/elementwise.cu instantiates for float and
// half. Other kernel families include it for the functors and the load/store helpers.
//
// Every work item is a small struct with `operator()(index)` run by launch.cuh's grid-stride kernel.
// Contiguous launches use 32-bit indices and split huge buffers into chunks on the host, because 64-bit
// integer arithmetic is emulated on the GPU; the strided gather picks 32- or 64-bit indices per call.
// float16 values are stored as __half (the layout of retikd::Half) and computed in float32.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "launch.cuh"
#include "retikd/core/half.hpp"

namespace retikd {
namespace cuda {
namespace kernels {

// ------------------------------------------------------------------------------------------------------
// Vector loads: 16 bytes per access where every pointer of a launch is 16-byte aligned, one element
// otherwise. float16 goes through __half2 (two halves per register, converted pairwise).

constexpr int kVectorBytes = 16;

template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }

template <typename T>
struct FromFloat;
template <>
struct FromFloat<float> {
  __device__ __forceinline__ static float apply(float x) { return x; }
};
template <>
struct FromFloat<__half> {
  __device__ __forceinline__ static __half apply(float x) { return __float2half_rn(x); }
};

template <typename T, int N>
struct VecIo {
  __device__ __forceinline__ static void load(const T* p, float (&out)[N]) {
    const Vec<T, N> v = *reinterpret_cast<const Vec<T, N>*>(p);
#pragma unroll
    for (int k = 0; k < N; ++k) out[k] = to_float(v.v[k]);
  }
  __device__ __forceinline__ static void store(T* p, const float (&in)[N]) {
    Vec<T, N> v;
#pragma unroll
    for (int k = 0; k < N; ++k) v.v[k] = FromFloat<T>::apply(in[k]);
    *reinterpret_cast<Vec<T, N>*>(p) = v;
  }
};

template <>
struct VecIo<__half, 8> {
  __device__ __forceinline__ static void load(const __half* p, float (&out)[8]) {
    const Vec<__half2, 4> v = *reinterpret_cast<const Vec<__half2, 4>*>(p);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const float2 f = __half22float2(v.v[k]);
      out[2 * k] = f.x;
      out[2 * k + 1] = f.y;
    }
  }
  __device__ __forceinline__ static void store(__half* p, const float (&in)[8]) {
    Vec<__half2, 4> v;
#pragma unroll
    for (int k = 0; k < 4; ++k) v.v[k] = __floats2half2_rn(in[2 * k], in[2 * k + 1]);
    *reinterpret_cast<Vec<__half2, 4>*>(p) = v;
  }
};

inline bool is_aligned(const void* p, std::size_t bytes) {
  return reinterpret_cast<std::uintptr_t>(p) % bytes == 0;
}

// ------------------------------------------------------------------------------------------------------
// Math, always in float32.

struct ReluOp {
  __device__ __forceinline__ float operator()(float x) const { return x < 0.f ? 0.f : x; }  // NaN stays
};
struct Relu6Op {
  __device__ __forceinline__ float operator()(float x) const { return x < 0.f ? 0.f : (x > 6.f ? 6.f : x); }
};
struct SigmoidOp {
  __device__ __forceinline__ float operator()(float x) const { return 1.f / (1.f + expf(-x)); }
};
struct TanhOp {
  __device__ __forceinline__ float operator()(float x) const { return tanhf(x); }
};
struct GeluErfOp {
  __device__ __forceinline__ float operator()(float x) const {
    return 0.5f * x * (1.f + erff(x * 0.70710678118654752f));
  }
};
struct SiluOp {
  __device__ __forceinline__ float operator()(float x) const { return x / (1.f + expf(-x)); }
};
struct NegOp {
  __device__ __forceinline__ float operator()(float x) const { return -x; }
};
struct ExpOp {
  __device__ __forceinline__ float operator()(float x) const { return expf(x); }
};
struct AbsOp {
  __device__ __forceinline__ float operator()(float x) const { return fabsf(x); }
};
struct SqrtOp {
  __device__ __forceinline__ float operator()(float x) const { return sqrtf(x); }
};
struct LogOp {
  __device__ __forceinline__ float operator()(float x) const { return logf(x); }
};

struct AddOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return a + b; }
};
struct SubOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return a - b; }
};
struct MulOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return a * b; }
};
struct DivOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return a / b; }
};
struct MaxOp {  // a NaN in either operand wins, as in torch.maximum (fmaxf would drop it)
  __device__ __forceinline__ float operator()(float a, float b) const { return (a > b || a != a) ? a : b; }
};
struct MinOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return (a < b || a != a) ? a : b; }
};
// Activation gradients (a: incoming gradient, b: the saved input or output), as ops/activation.hpp's CPU helpers.
struct ReluGradOp {
  __device__ __forceinline__ float operator()(float g, float x) const { return x > 0.f ? g : 0.f; }
};
struct Relu6GradOp {
  __device__ __forceinline__ float operator()(float g, float x) const {
    return (x > 0.f && x < 6.f) ? g : 0.f;
  }
};
struct SigmoidGradOp {
  __device__ __forceinline__ float operator()(float g, float y) const { return g * y * (1.f - y); }
};
struct TanhGradOp {
  __device__ __forceinline__ float operator()(float g, float y) const { return g * (1.f - y * y); }
};
struct GeluErfGradOp {
  __device__ __forceinline__ float operator()(float g, float x) const {
    const float cdf = 0.5f * (1.f + erff(x * 0.70710678118654752f));
    const float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
    return g * (cdf + x * pdf);
  }
};
struct BceLogitsOp {
  __device__ __forceinline__ float operator()(float x, float y) const {
    const float sp = fmaxf(-x, 0.f) + log1pf(expf(-fabsf(x)));  // softplus(−x)
    return (1.f - y) * x + sp;
  }
};
struct BceLogitsGradXOp {
  __device__ __forceinline__ float operator()(float x, float y) const {
    const float e = expf(-fabsf(x));
    const float sig_neg = x >= 0.f ? e / (1.f + e) : 1.f / (1.f + e);  // σ(−x), stably
    return (1.f - y) - sig_neg;
  }
};
// Comparisons as 1 / 0 (a NaN operand gives false, except for !=), like C++'s and PyTorch's.
struct EqOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return a == b ? 1.f : 0.f; }
};
struct NeOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return a != b ? 1.f : 0.f; }
};
struct LtOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return a < b ? 1.f : 0.f; }
};
struct LeOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return a <= b ? 1.f : 0.f; }
};
struct GtOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return a > b ? 1.f : 0.f; }
};
struct GeOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return a >= b ? 1.f : 0.f; }
};
struct AbsGradOp {  // g·sign(x), 0 at x = 0 and for NaN x (as the CPU's x > 0 ? 1 : (x < 0 ? -1 : 0))
  __device__ __forceinline__ float operator()(float g, float x) const { return x > 0.f ? g : (x < 0.f ? -g : 0.f); }
};
struct SiluGradOp {
  __device__ __forceinline__ float operator()(float g, float x) const {
    const float s = x >= 0.f ? 1.f / (1.f + expf(-x)) : expf(x) / (1.f + expf(x));
    return g * s * (1.f + x * (1.f - s));
  }
};

// ------------------------------------------------------------------------------------------------------
// Conversions between the five dtypes (float, __half, int32_t, int64_t, double).

// double -> binary16 bits with a single rounding: truncate to float, set the sticky bit when inexact
// (round to odd), then round to half. float keeps 13 more bits than half, so the result equals a direct
// round-to-nearest-even of the double; double -> float -> half would round twice.
__host__ __device__ inline uint16_t double_to_half_bits(double d) {
#if defined(__CUDA_ARCH__)
  float f = __double2float_rz(d);
  if (static_cast<double>(f) != d && d == d) f = __int_as_float(__float_as_int(f) | 1);
  return __half_as_ushort(__float2half_rn(f));
#else
  float f = static_cast<float>(d);
  if (static_cast<double>(f) != d && d == d) {
    if (std::fabs(static_cast<double>(f)) > std::fabs(d)) f = std::nextafter(f, 0.0f);
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    bits |= 1u;
    std::memcpy(&f, &bits, sizeof f);
  }
  return retikd::float_to_half_bits(f);
#endif
}

template <typename D, typename S>
struct Convert {
  __device__ __forceinline__ static D apply(S s) { return static_cast<D>(s); }
};
template <typename D>
struct Convert<D, __half> {
  __device__ __forceinline__ static D apply(__half s) { return static_cast<D>(__half2float(s)); }
};
template <typename S>
struct Convert<__half, S> {  // int32 / int64 / float: every value below 65520 is exact in float
  __device__ __forceinline__ static __half apply(S s) { return __float2half_rn(static_cast<float>(s)); }
};
template <>
struct Convert<__half, __half> {
  __device__ __forceinline__ static __half apply(__half s) { return s; }
};
template <>
struct Convert<__half, double> {
  __device__ __forceinline__ static __half apply(double s) { return __ushort_as_half(double_to_half_bits(s)); }
};

// ------------------------------------------------------------------------------------------------------
// Work items.

// dst[i] = value for element type U (the dtype's bit pattern), N elements per access.
template <typename U, int N>
struct FillWork {
  U* dst;
  uint32_t n_vec;  // accesses of N elements; the tail is done one element at a time
  U value;
  __device__ __forceinline__ void operator()(uint32_t i) const {
    if (N > 1 && i < n_vec) {
      Vec<U, N> v;
#pragma unroll
      for (int k = 0; k < N; ++k) v.v[k] = value;
      *reinterpret_cast<Vec<U, N>*>(dst + static_cast<std::size_t>(i) * N) = v;
    } else {
      dst[static_cast<std::size_t>(n_vec) * N + (i - n_vec)] = value;
    }
  }
};

template <typename S, typename D>
struct CastWork {
  const S* src;
  D* dst;
  __device__ __forceinline__ void operator()(uint32_t i) const { dst[i] = Convert<D, S>::apply(src[i]); }
};

template <typename T, int N, typename F>
struct UnaryWork {
  const T* x;
  T* out;
  uint32_t n_vec;
  F f;
  __device__ __forceinline__ void operator()(uint32_t i) const {
    if (N > 1 && i < n_vec) {
      float v[N];
      VecIo<T, N>::load(x + static_cast<std::size_t>(i) * N, v);
#pragma unroll
      for (int k = 0; k < N; ++k) v[k] = f(v[k]);
      VecIo<T, N>::store(out + static_cast<std::size_t>(i) * N, v);
    } else {
      const std::size_t j = static_cast<std::size_t>(n_vec) * N + (i - n_vec);
      out[j] = FromFloat<T>::apply(f(to_float(x[j])));
    }
  }
};

template <typename T, int N, typename F>
struct BinaryWork {
  const T* a;
  const T* b;
  T* out;
  uint32_t n_vec;
  F f;
  __device__ __forceinline__ void operator()(uint32_t i) const {
    if (N > 1 && i < n_vec) {
      float va[N];
      float vb[N];
      VecIo<T, N>::load(a + static_cast<std::size_t>(i) * N, va);
      VecIo<T, N>::load(b + static_cast<std::size_t>(i) * N, vb);
#pragma unroll
      for (int k = 0; k < N; ++k) va[k] = f(va[k], vb[k]);
      VecIo<T, N>::store(out + static_cast<std::size_t>(i) * N, va);
    } else {
      const std::size_t j = static_cast<std::size_t>(n_vec) * N + (i - n_vec);
      out[j] = FromFloat<T>::apply(f(to_float(a[j]), to_float(b[j])));
    }
  }
};

// Row-major gather of an NDIM-dimensional strided view; `src` already points at the view's offset.
template <typename U, int NDIM, typename Index>
struct StridedCopyWork {
  const U* src;
  U* dst;
  Index sizes[NDIM];
  Index strides[NDIM];
  __device__ __forceinline__ void operator()(Index i) const {
    Index rest = i;
    Index offset = 0;
#pragma unroll
    for (int d = NDIM - 1; d > 0; --d) {
      const Index q = rest / sizes[d];
      offset += (rest - q * sizes[d]) * strides[d];
      rest = q;
    }
    offset += rest * strides[0];
    dst[i] = src[offset];
  }
};

// ------------------------------------------------------------------------------------------------------
// Typed launchers (explicitly instantiated for float and __half in elementwise.cu). The current device must
// already be set (DeviceGuard).

// Contiguous launches run in chunks of 2^30 elements: 32-bit indices, and i + grid stride cannot wrap.
constexpr int64_t kChunk = int64_t(1) << 30;

template <typename T, typename F>
void launch_unary(const T* x, T* out, int64_t n, F f) {
  constexpr int N = kVectorBytes / static_cast<int>(sizeof(T));
  const bool vec = is_aligned(x, kVectorBytes) && is_aligned(out, kVectorBytes);
  for (int64_t start = 0; start < n; start += kChunk) {
    const uint32_t len = static_cast<uint32_t>(n - start < kChunk ? n - start : kChunk);
    if (vec) {
      const UnaryWork<T, N, F> work{x + start, out + start, len / N, f};
      detail::launch_grid_stride<uint32_t>(len / N + len % N, work);
    } else {
      const UnaryWork<T, 1, F> work{x + start, out + start, 0, f};
      detail::launch_grid_stride<uint32_t>(len, work);
    }
  }
}

template <typename T, typename F>
void launch_binary(const T* a, const T* b, T* out, int64_t n, F f) {
  constexpr int N = kVectorBytes / static_cast<int>(sizeof(T));
  const bool vec = is_aligned(a, kVectorBytes) && is_aligned(b, kVectorBytes) && is_aligned(out, kVectorBytes);
  for (int64_t start = 0; start < n; start += kChunk) {
    const uint32_t len = static_cast<uint32_t>(n - start < kChunk ? n - start : kChunk);
    if (vec) {
      const BinaryWork<T, N, F> work{a + start, b + start, out + start, len / N, f};
      detail::launch_grid_stride<uint32_t>(len / N + len % N, work);
    } else {
      const BinaryWork<T, 1, F> work{a + start, b + start, out + start, 0, f};
      detail::launch_grid_stride<uint32_t>(len, work);
    }
  }
}

template <typename U>
void launch_fill(U* dst, int64_t n, U value) {
  constexpr int N = kVectorBytes / static_cast<int>(sizeof(U));
  const bool vec = is_aligned(dst, kVectorBytes);
  for (int64_t start = 0; start < n; start += kChunk) {
    const uint32_t len = static_cast<uint32_t>(n - start < kChunk ? n - start : kChunk);
    if (vec) {
      const FillWork<U, N> work{dst + start, len / N, value};
      detail::launch_grid_stride<uint32_t>(len / N + len % N, work);
    } else {
      const FillWork<U, 1> work{dst + start, 0, value};
      detail::launch_grid_stride<uint32_t>(len, work);
    }
  }
}

template <typename S, typename D>
void launch_cast(const S* src, D* dst, int64_t n) {
  for (int64_t start = 0; start < n; start += kChunk) {
    const uint32_t len = static_cast<uint32_t>(n - start < kChunk ? n - start : kChunk);
    const CastWork<S, D> work{src + start, dst + start};
    detail::launch_grid_stride<uint32_t>(len, work);
  }
}

template <typename U, int NDIM, typename Index>
void launch_strided_copy(const U* src, U* dst, const int64_t* sizes, const int64_t* strides, int64_t n) {
  StridedCopyWork<U, NDIM, Index> work;
  work.src = src;
  work.dst = dst;
  for (int d = 0; d < NDIM; ++d) {
    work.sizes[d] = static_cast<Index>(sizes[d]);
    work.strides[d] = static_cast<Index>(strides[d]);
  }
  detail::launch_grid_stride<Index>(static_cast<Index>(n), work);
}

}  // namespace kernels
}  // namespace cuda
}  // namespace retikd
