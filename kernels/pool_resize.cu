// kernels/pool_resize.cu — max pooling and bilinear resize, forward and backward (include/retikd/cuda/nn_ops.hpp).
// Their index math comes from retikd/cuda/op_programs.hpp, which tests/test_cuda_programs.cpp runs on the CPU.
#include "nn_common.cuh"

namespace retikd {
namespace cuda {
namespace {

using namespace nn_common;

// ---- max pool, bilinear ---------------------------------------------------------------------------------------

template <class T>
struct MaxPoolForward {
  Pool2dDims d;
  const T* x;
  T* y;
  int64_t* idx;
  __device__ void operator()(uint32_t i) const {
    int64_t a = 0;
    y[i] = from_f<T>(prog::maxpool_output<T, uint32_t>(d, x, i, &a));
    idx[i] = a;
  }
};

template <class T>
struct MaxPoolScatter {
  const T* gy;
  const int64_t* idx;
  float* acc;
  uint32_t in_plane, out_plane;
  __device__ void operator()(uint32_t i) const {
    atomicAdd(acc + static_cast<uint64_t>(i / out_plane) * in_plane + idx[i], to_f(gy[i]));
  }
};

template <class T>
struct BilinearForward {
  const T* x;
  T* y;
  int H, W, OH, OW;
  bool align;
  __device__ void operator()(uint32_t i) const {
    y[i] = from_f<T>(prog::bilinear_output<T, uint32_t>(H, W, OH, OW, align, x, i));
  }
};

// Each output gradient scattered onto its four taps (float atomics into a float32 plane buffer).
template <class T>
struct BilinearScatter {
  const T* gy;
  float* acc;
  int H, W, OH, OW;
  bool align;
  __device__ void operator()(uint32_t i) const {
    const int ow = static_cast<int>(i % static_cast<uint32_t>(OW));
    const uint32_t t = i / static_cast<uint32_t>(OW);
    const int oh = static_cast<int>(t % static_cast<uint32_t>(OH));
    const uint32_t p = t / static_cast<uint32_t>(OH);
    const prog::LinearTap th = prog::linear_tap(H, OH, align, oh), tw = prog::linear_tap(W, OW, align, ow);
    const float g = to_f(gy[i]);
    float* a = acc + static_cast<uint64_t>(p) * H * W;
    atomicAdd(a + th.i0 * W + tw.i0, th.l0 * tw.l0 * g);
    atomicAdd(a + th.i0 * W + tw.i1, th.l0 * tw.l1 * g);
    atomicAdd(a + th.i1 * W + tw.i0, th.l1 * tw.l0 * g);
    atomicAdd(a + th.i1 * W + tw.i1, th.l1 * tw.l1 * g);
  }
};

struct FloatToHalf {
  const float* src;
  Half* dst;
  __device__ void operator()(uint32_t i) const { dst[i] = Half(src[i]); }
};

}  // namespace

void max_pool2d_forward(const Pool2dDims& d, const void* x, void* y, int64_t* indices, int dtype, int device) {
  check_float_dtype("retikd::cuda::max_pool2d_forward", dtype);
  check_sizes("retikd::cuda::max_pool2d_forward", d.planes >= 0 && d.OH >= 0 && d.OW >= 0 && d.sh > 0 && d.sw > 0);
  detail::DeviceGuard guard(device);
  RETIKD_FLOAT_DISPATCH(dtype, T,
                     launch32(1LL * d.planes * d.OH * d.OW,
                              MaxPoolForward<T>{d, static_cast<const T*>(x), static_cast<T*>(y), indices}));
}

void max_pool2d_backward(const void* gy, const int64_t* indices, void* gx, int64_t planes, int64_t in_plane,
                         int64_t out_plane, int dtype, int device) {
  check_float_dtype("retikd::cuda::max_pool2d_backward", dtype);
  check_sizes("retikd::cuda::max_pool2d_backward", planes >= 0 && in_plane > 0 && out_plane >= 0);
  const int64_t n_in = planes * in_plane;
  if (n_in == 0) return;
  detail::DeviceGuard guard(device);
  float* acc = dtype == kFloat32 ? static_cast<float*>(gx)
                                 : static_cast<float*>(device_malloc(static_cast<std::size_t>(n_in) * 4, device));
  try {
    RETIKD_CUDA_CHECK(cudaMemsetAsync(acc, 0, static_cast<std::size_t>(n_in) * sizeof(float), detail::current_stream()));
    RETIKD_FLOAT_DISPATCH(dtype, T,
                       launch32(planes * out_plane,
                                MaxPoolScatter<T>{static_cast<const T*>(gy), indices, acc,
                                                  static_cast<uint32_t>(in_plane), static_cast<uint32_t>(out_plane)}));
    if (dtype == kFloat16) launch32(n_in, FloatToHalf{acc, static_cast<Half*>(gx)});
  } catch (...) {
    if (dtype == kFloat16) device_free(acc, device);
    throw;
  }
  if (dtype == kFloat16) device_free(acc, device);
}

void bilinear_forward(const void* x, void* y, int64_t planes, int H, int W, int OH, int OW, bool align_corners,
                      int dtype, int device) {
  check_float_dtype("retikd::cuda::bilinear_forward", dtype);
  check_sizes("retikd::cuda::bilinear_forward", planes >= 0 && H > 0 && W > 0 && OH > 0 && OW > 0);
  detail::DeviceGuard guard(device);
  RETIKD_FLOAT_DISPATCH(dtype, T,
                     launch32(planes * OH * OW, BilinearForward<T>{static_cast<const T*>(x), static_cast<T*>(y), H, W,
                                                                   OH, OW, align_corners}));
}

void bilinear_backward(const void* gy, void* gx, int64_t planes, int H, int W, int OH, int OW, bool align_corners,
                       int dtype, int device) {
  check_float_dtype("retikd::cuda::bilinear_backward", dtype);
  check_sizes("retikd::cuda::bilinear_backward", planes >= 0 && H > 0 && W > 0 && OH > 0 && OW > 0);
  const int64_t n_in = planes * H * W;
  if (n_in == 0) return;
  detail::DeviceGuard guard(device);
  float* acc = dtype == kFloat32 ? static_cast<float*>(gx)
                                 : static_cast<float*>(device_malloc(static_cast<std::size_t>(n_in) * 4, device));
  try {
    RETIKD_CUDA_CHECK(cudaMemsetAsync(acc, 0, static_cast<std::size_t>(n_in) * sizeof(float), detail::current_stream()));
    RETIKD_FLOAT_DISPATCH(dtype, T,
                       launch32(planes * OH * OW,
                                BilinearScatter<T>{static_cast<const T*>(gy), acc, H, W, OH, OW, align_corners}));
    if (dtype == kFloat16) launch32(n_in, FloatToHalf{acc, static_cast<Half*>(gx)});
  } catch (...) {
    if (dtype == kFloat16) device_free(acc, device);
    throw;
  }
  if (dtype == kFloat16) device_free(acc, device);
}

}  // namespace cuda
}  // namespace retikd
