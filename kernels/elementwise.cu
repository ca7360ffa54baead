// kernels/elementwise.cu — launchers of the elementwise family (include/retikd/cuda/elementwise.hpp):
// argument checks, dtype / op dispatch and the explicit instantiations of elementwise.cuh for float and
// half. All launches go to the default stream of `device`.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "cuda_check.cuh"
#include "elementwise.cuh"
#include "launch.cuh"
#include "retikd/cuda/elementwise.hpp"

namespace retikd {
namespace cuda {
namespace kernels {

// The float / half instantiations every launcher below uses (the other kernel families link against these
// rather than re-instantiating the math).
#define RETIKD_INSTANTIATE_UNARY(T, OP) template void launch_unary<T, OP>(const T*, T*, int64_t, OP);
#define RETIKD_INSTANTIATE_BINARY(T, OP) template void launch_binary<T, OP>(const T*, const T*, T*, int64_t, OP);
#define RETIKD_INSTANTIATE_FOR(T)            \
  RETIKD_INSTANTIATE_UNARY(T, ReluOp)        \
  RETIKD_INSTANTIATE_UNARY(T, Relu6Op)       \
  RETIKD_INSTANTIATE_UNARY(T, SigmoidOp)     \
  RETIKD_INSTANTIATE_UNARY(T, TanhOp)        \
  RETIKD_INSTANTIATE_UNARY(T, GeluErfOp)     \
  RETIKD_INSTANTIATE_UNARY(T, SiluOp)        \
  RETIKD_INSTANTIATE_UNARY(T, NegOp)         \
  RETIKD_INSTANTIATE_UNARY(T, ExpOp)         \
  RETIKD_INSTANTIATE_UNARY(T, AbsOp)         \
  RETIKD_INSTANTIATE_BINARY(T, AddOp)        \
  RETIKD_INSTANTIATE_BINARY(T, SubOp)        \
  RETIKD_INSTANTIATE_BINARY(T, MulOp)        \
  RETIKD_INSTANTIATE_BINARY(T, DivOp)        \
  RETIKD_INSTANTIATE_BINARY(T, MaxOp)        \
  RETIKD_INSTANTIATE_BINARY(T, MinOp)        \
  RETIKD_INSTANTIATE_BINARY(T, ReluGradOp)   \
  RETIKD_INSTANTIATE_BINARY(T, Relu6GradOp)  \
  RETIKD_INSTANTIATE_BINARY(T, SigmoidGradOp) \
  RETIKD_INSTANTIATE_BINARY(T, TanhGradOp)   \
  RETIKD_INSTANTIATE_BINARY(T, GeluErfGradOp) \
  RETIKD_INSTANTIATE_BINARY(T, SiluGradOp)   \
  RETIKD_INSTANTIATE_BINARY(T, BceLogitsOp)  \
  RETIKD_INSTANTIATE_BINARY(T, BceLogitsGradXOp)
RETIKD_INSTANTIATE_FOR(float)
RETIKD_INSTANTIATE_FOR(__half)
#undef RETIKD_INSTANTIATE_FOR
#undef RETIKD_INSTANTIATE_BINARY
#undef RETIKD_INSTANTIATE_UNARY

}  // namespace kernels

namespace {

const char* dtype_name(int dtype) {
  switch (dtype) {
    case kFloat32: return "float32";
    case kFloat16: return "float16";
    case kInt32: return "int32";
    case kInt64: return "int64";
    case kFloat64: return "float64";
    default: return "unknown";
  }
}

std::size_t element_size(int dtype, const char* op) {
  switch (dtype) {
    case kFloat16: return 2;
    case kFloat32:
    case kInt32: return 4;
    case kInt64:
    case kFloat64: return 8;
    default:
      throw std::invalid_argument(std::string("retikd::cuda::") + op + ": unknown dtype code " +
                                  std::to_string(dtype));
  }
}

void check_count(int64_t n, const char* op) {
  if (n < 0) throw std::invalid_argument(std::string("retikd::cuda::") + op + ": negative element count " + std::to_string(n));
}

void check_float_dtype(int dtype, const char* op) {
  if (dtype != kFloat32 && dtype != kFloat16)
    throw std::invalid_argument(std::string("retikd::cuda::") + op + ": dtype " + dtype_name(dtype) + " (code " +
                                std::to_string(dtype) + ") is not supported; only float32 and float16");
}

template <typename T>
void unary_typed(int op, const void* x, void* out, int64_t n) {
  const T* xt = static_cast<const T*>(x);
  T* ot = static_cast<T*>(out);
  switch (op) {
    case kRelu: kernels::launch_unary(xt, ot, n, kernels::ReluOp{}); return;
    case kRelu6: kernels::launch_unary(xt, ot, n, kernels::Relu6Op{}); return;
    case kSigmoid: kernels::launch_unary(xt, ot, n, kernels::SigmoidOp{}); return;
    case kTanh: kernels::launch_unary(xt, ot, n, kernels::TanhOp{}); return;
    case kGeluErf: kernels::launch_unary(xt, ot, n, kernels::GeluErfOp{}); return;
    case kSilu: kernels::launch_unary(xt, ot, n, kernels::SiluOp{}); return;
    case kNeg: kernels::launch_unary(xt, ot, n, kernels::NegOp{}); return;
    case kExp: kernels::launch_unary(xt, ot, n, kernels::ExpOp{}); return;
    case kAbs: kernels::launch_unary(xt, ot, n, kernels::AbsOp{}); return;
    case kSqrt: kernels::launch_unary(xt, ot, n, kernels::SqrtOp{}); return;
    case kLog: kernels::launch_unary(xt, ot, n, kernels::LogOp{}); return;
    default: throw std::invalid_argument("retikd::cuda::unary: unknown op code " + std::to_string(op));
  }
}

template <typename T>
void binary_typed(int op, const void* a, const void* b, void* out, int64_t n) {
  const T* at = static_cast<const T*>(a);
  const T* bt = static_cast<const T*>(b);
  T* ot = static_cast<T*>(out);
  switch (op) {
    case kAdd: kernels::launch_binary(at, bt, ot, n, kernels::AddOp{}); return;
    case kSub: kernels::launch_binary(at, bt, ot, n, kernels::SubOp{}); return;
    case kMul: kernels::launch_binary(at, bt, ot, n, kernels::MulOp{}); return;
    case kDiv: kernels::launch_binary(at, bt, ot, n, kernels::DivOp{}); return;
    case kMax: kernels::launch_binary(at, bt, ot, n, kernels::MaxOp{}); return;
    case kMin: kernels::launch_binary(at, bt, ot, n, kernels::MinOp{}); return;
    case kReluGrad: kernels::launch_binary(at, bt, ot, n, kernels::ReluGradOp{}); return;
    case kRelu6Grad: kernels::launch_binary(at, bt, ot, n, kernels::Relu6GradOp{}); return;
    case kSigmoidGrad: kernels::launch_binary(at, bt, ot, n, kernels::SigmoidGradOp{}); return;
    case kTanhGrad: kernels::launch_binary(at, bt, ot, n, kernels::TanhGradOp{}); return;
    case kGeluErfGrad: kernels::launch_binary(at, bt, ot, n, kernels::GeluErfGradOp{}); return;
    case kSiluGrad: kernels::launch_binary(at, bt, ot, n, kernels::SiluGradOp{}); return;
    case kBceLogits: kernels::launch_binary(at, bt, ot, n, kernels::BceLogitsOp{}); return;
    case kBceLogitsGradX: kernels::launch_binary(at, bt, ot, n, kernels::BceLogitsGradXOp{}); return;
    case kEq: kernels::launch_binary(at, bt, ot, n, kernels::EqOp{}); return;
    case kNe: kernels::launch_binary(at, bt, ot, n, kernels::NeOp{}); return;
    case kLt: kernels::launch_binary(at, bt, ot, n, kernels::LtOp{}); return;
    case kLe: kernels::launch_binary(at, bt, ot, n, kernels::LeOp{}); return;
    case kGt: kernels::launch_binary(at, bt, ot, n, kernels::GtOp{}); return;
    case kGe: kernels::launch_binary(at, bt, ot, n, kernels::GeOp{}); return;
    case kAbsGrad: kernels::launch_binary(at, bt, ot, n, kernels::AbsGradOp{}); return;
    default: throw std::invalid_argument("retikd::cuda::binary: unknown op code " + std::to_string(op));
  }
}

template <typename S>
void cast_from(const S* src, void* dst, int dst_dtype, int64_t n) {
  switch (dst_dtype) {
    case kFloat32: kernels::launch_cast(src, static_cast<float*>(dst), n); return;
    case kFloat16: kernels::launch_cast(src, static_cast<__half*>(dst), n); return;
    case kInt32: kernels::launch_cast(src, static_cast<int32_t*>(dst), n); return;
    case kInt64: kernels::launch_cast(src, static_cast<int64_t*>(dst), n); return;
    case kFloat64: kernels::launch_cast(src, static_cast<double*>(dst), n); return;
    default: throw std::invalid_argument("retikd::cuda::cast: unknown dtype code " + std::to_string(dst_dtype));
  }
}

template <typename T>
T integer_fill_value(double value, int dtype) {
  // The range test is on the truncated value, in double: both bounds are exactly representable.
  const double t = std::trunc(value);
  const double lo = -std::ldexp(1.0, 8 * static_cast<int>(sizeof(T)) - 1);
  if (!(t >= lo && t < -lo))
    throw std::invalid_argument(std::string("retikd::cuda::fill: value ") + std::to_string(value) +
                                " is not representable as " + dtype_name(dtype));
  return static_cast<T>(t);
}

template <typename U>
void fill_pattern(void* dst, int64_t n, U bits) {
  unsigned char bytes[sizeof(U)];
  std::memcpy(bytes, &bits, sizeof(U));
  bool uniform = true;
  for (std::size_t k = 1; k < sizeof(U); ++k) uniform = uniform && bytes[k] == bytes[0];
  if (uniform) {  // zeros (the common case) and other byte-uniform patterns: the driver's memset
    RETIKD_CUDA_CHECK(cudaMemsetAsync(dst, bytes[0], static_cast<std::size_t>(n) * sizeof(U), detail::current_stream()));
    return;
  }
  kernels::launch_fill(static_cast<U*>(dst), n, bits);
}

template <int NDIM, typename U>
void strided_copy_ndim(const U* src, U* dst, const int64_t* sizes, const int64_t* strides, int64_t n, bool wide) {
  if (wide)
    kernels::launch_strided_copy<U, NDIM, int64_t>(src, dst, sizes, strides, n);
  else
    kernels::launch_strided_copy<U, NDIM, int32_t>(src, dst, sizes, strides, n);
}

template <typename U>
void strided_copy_typed(const U* src, U* dst, int ndim, const int64_t* sizes, const int64_t* strides, int64_t n,
                        bool wide) {
  switch (ndim) {
    case 1: strided_copy_ndim<1>(src, dst, sizes, strides, n, wide); return;
    case 2: strided_copy_ndim<2>(src, dst, sizes, strides, n, wide); return;
    case 3: strided_copy_ndim<3>(src, dst, sizes, strides, n, wide); return;
    case 4: strided_copy_ndim<4>(src, dst, sizes, strides, n, wide); return;
    case 5: strided_copy_ndim<5>(src, dst, sizes, strides, n, wide); return;
    case 6: strided_copy_ndim<6>(src, dst, sizes, strides, n, wide); return;
    case 7: strided_copy_ndim<7>(src, dst, sizes, strides, n, wide); return;
    case 8: strided_copy_ndim<8>(src, dst, sizes, strides, n, wide); return;
    default: throw std::logic_error("retikd::cuda::strided_copy: unreachable dimension count");
  }
}

}  // namespace

void fill(void* dst, int dtype, int64_t n, double value, int device) {
  (void)element_size(dtype, "fill");
  check_count(n, "fill");
  if (n == 0) return;
  detail::DeviceGuard guard(device);
  switch (dtype) {
    case kFloat32: {
      const float f = static_cast<float>(value);
      uint32_t bits;
      std::memcpy(&bits, &f, sizeof bits);
      fill_pattern<uint32_t>(dst, n, bits);
      return;
    }
    case kFloat16: fill_pattern<uint16_t>(dst, n, kernels::double_to_half_bits(value)); return;
    case kInt32: {
      const int32_t v = integer_fill_value<int32_t>(value, dtype);
      uint32_t bits;
      std::memcpy(&bits, &v, sizeof bits);
      fill_pattern<uint32_t>(dst, n, bits);
      return;
    }
    case kInt64: {
      const int64_t v = integer_fill_value<int64_t>(value, dtype);
      unsigned long long bits;
      std::memcpy(&bits, &v, sizeof bits);
      fill_pattern<unsigned long long>(dst, n, bits);
      return;
    }
    case kFloat64: {
      unsigned long long bits;
      std::memcpy(&bits, &value, sizeof bits);
      fill_pattern<unsigned long long>(dst, n, bits);
      return;
    }
    default: return;  // element_size rejected it
  }
}

void cast(const void* src, int src_dtype, void* dst, int dst_dtype, int64_t n, int device) {
  const std::size_t src_size = element_size(src_dtype, "cast");
  const std::size_t dst_size = element_size(dst_dtype, "cast");
  check_count(n, "cast");
  if (src == dst && src_size != dst_size)
    throw std::invalid_argument(std::string("retikd::cuda::cast: in-place cast from ") + dtype_name(src_dtype) +
                                " to " + dtype_name(dst_dtype) + " would overwrite unread input");
  if (n == 0) return;
  detail::DeviceGuard guard(device);
  if (src_dtype == dst_dtype) {
    if (src != dst)
      RETIKD_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<std::size_t>(n) * src_size, cudaMemcpyDeviceToDevice, detail::current_stream()));
    return;
  }
  switch (src_dtype) {
    case kFloat32: cast_from(static_cast<const float*>(src), dst, dst_dtype, n); return;
    case kFloat16: cast_from(static_cast<const __half*>(src), dst, dst_dtype, n); return;
    case kInt32: cast_from(static_cast<const int32_t*>(src), dst, dst_dtype, n); return;
    case kInt64: cast_from(static_cast<const int64_t*>(src), dst, dst_dtype, n); return;
    case kFloat64: cast_from(static_cast<const double*>(src), dst, dst_dtype, n); return;
    default: return;
  }
}

void strided_copy(const void* src, int dtype, int ndim, const int64_t* sizes, const int64_t* src_strides,
                  int64_t src_offset, void* dst, int device) {
  const std::size_t size = element_size(dtype, "strided_copy");
  if (ndim < 0) throw std::invalid_argument("retikd::cuda::strided_copy: negative ndim " + std::to_string(ndim));
  if (ndim > 0 && (sizes == nullptr || src_strides == nullptr))
    throw std::invalid_argument("retikd::cuda::strided_copy: null sizes or strides");

  // Merge dimensions (dropping size-1 ones and folding a dimension into the next when its stride is the
  // next one's extent), so the common views reach the kernel as 1 to 3 dimensions.
  int64_t n = 1;
  int64_t merged_sizes[64];
  int64_t merged_strides[64];
  int merged = 0;
  for (int d = 0; d < ndim; ++d) {
    if (sizes[d] < 0)
      throw std::invalid_argument("retikd::cuda::strided_copy: negative size " + std::to_string(sizes[d]) +
                                  " in dimension " + std::to_string(d));
    n *= sizes[d];
    if (sizes[d] == 1) continue;
    if (merged > 0 && merged_strides[merged - 1] == src_strides[d] * sizes[d]) {
      merged_sizes[merged - 1] *= sizes[d];
      merged_strides[merged - 1] = src_strides[d];
      continue;
    }
    if (merged == 64) throw std::invalid_argument("retikd::cuda::strided_copy: more than 64 dimensions");
    merged_sizes[merged] = sizes[d];
    merged_strides[merged] = src_strides[d];
    ++merged;
  }
  if (n == 0) return;
  if (merged > 8)
    throw std::invalid_argument("retikd::cuda::strided_copy: the view has " + std::to_string(merged) +
                                " non-mergeable dimensions; the kernel handles at most 8 (make it contiguous in "
                                "steps, or copy through the host)");
  if (merged == 0) {  // a single element
    merged = 1;
    merged_sizes[0] = 1;
    merged_strides[0] = 1;
  }
  // 32-bit indices when the element count and every reachable offset stay well inside int32.
  const int64_t kLimit = int64_t(1) << 30;
  int64_t lo = 0;
  int64_t hi = 0;
  for (int d = 0; d < merged; ++d) {
    const int64_t reach = (merged_sizes[d] - 1) * merged_strides[d];
    if (reach < 0) lo += reach; else hi += reach;
  }
  const bool wide = n > kLimit || hi >= kLimit || lo <= -kLimit;

  detail::DeviceGuard guard(device);
  const char* base = static_cast<const char*>(src) + src_offset * static_cast<int64_t>(size);
  switch (size) {
    case 2:
      strided_copy_typed(reinterpret_cast<const uint16_t*>(base), static_cast<uint16_t*>(dst), merged, merged_sizes,
                         merged_strides, n, wide);
      return;
    case 4:
      strided_copy_typed(reinterpret_cast<const uint32_t*>(base), static_cast<uint32_t*>(dst), merged, merged_sizes,
                         merged_strides, n, wide);
      return;
    default:
      strided_copy_typed(reinterpret_cast<const unsigned long long*>(base), static_cast<unsigned long long*>(dst),
                         merged, merged_sizes, merged_strides, n, wide);
      return;
  }
}

void binary(int op, const void* a, const void* b, void* out, int dtype, int64_t n, int device) {
  check_float_dtype(dtype, "binary");
  if (op < kAdd || op > kBceLogitsGradX) throw std::invalid_argument("retikd::cuda::binary: unknown op code " + std::to_string(op));
  check_count(n, "binary");
  if (n == 0) return;
  detail::DeviceGuard guard(device);
  if (dtype == kFloat32)
    binary_typed<float>(op, a, b, out, n);
  else
    binary_typed<__half>(op, a, b, out, n);
}

void unary(int op, const void* x, void* out, int dtype, int64_t n, int device) {
  check_float_dtype(dtype, "unary");
  if (op < kRelu || op > kAbs) throw std::invalid_argument("retikd::cuda::unary: unknown op code " + std::to_string(op));
  check_count(n, "unary");
  if (n == 0) return;
  detail::DeviceGuard guard(device);
  if (dtype == kFloat32)
    unary_typed<float>(op, x, out, n);
  else
    unary_typed<__half>(op, x, out, n);
}

}  // namespace cuda
}  // namespace retikd
