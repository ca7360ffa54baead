// kernels/conv.cu — the convolution family (include/retikd/cuda/conv.hpp): dense convolutions through cuDNN's
// descriptor API when the build has cuDNN (RETIKD_USE_CUDNN, set by CMake; Debian's CUDA 11.8 that the sm_53
// gate uses has none, so that gate compiles the fallback alone) and through im2col + cuBLAS otherwise; the
// depthwise kernels; per-channel bias add and sum. The per-element index math lives in
// retikd/cuda/op_programs.hpp, which the CPU emulation test runs too.
//
// Why our own depthwise kernel: cuDNN's grouped convolution with one channel per group is slow on older cards
// and MobileNetV2's depthwise layers are memory bound; one thread per output (fp32 accumulation, optional
// bias + ReLU6 in the same pass) reads each input about kh·kw/stride² times from cache.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <stdexcept>
#include <string>

#include "cuda_check.cuh"
#include "launch.cuh"
#include "reduce.cuh"
#include "scratch.cuh"
#include "retikd/core/half.hpp"
#include "retikd/cuda/blas.hpp"
#include "retikd/cuda/conv.hpp"
#include "retikd/cuda/op_programs.hpp"
#include "retikd/cuda/runtime.hpp"

// CMake defines RETIKD_USE_CUDNN (0 or 1) to match what it links; a bare nvcc compile (the sm_53 gate) uses
// cuDNN exactly when its header is in reach, so the gate builds whichever path that toolkit can.
#ifndef RETIKD_USE_CUDNN
#if defined(__has_include)
#if __has_include(<cudnn.h>)
#define RETIKD_USE_CUDNN 1
#endif
#endif
#endif
#ifndef RETIKD_USE_CUDNN
#define RETIKD_USE_CUDNN 0
#endif
#if RETIKD_USE_CUDNN
#include <cudnn.h>
#include <map>
#include <tuple>
#endif

namespace retikd {
namespace cuda {
namespace {

std::size_t elem_size(int dtype) { return dtype == kFloat16 ? 2 : 4; }

using detail::launch32;  // launch.cuh: the shared dtype check, dispatch and 32-bit grid-stride launch
void check_dtype(const char* op, int dtype) { detail::check_float_dtype(op, dtype); }

void check_dims(const char* op, const Conv2dDims& d) {
  const long long L = 1LL * d.OH * d.OW;
  const bool ok = d.N >= 0 && d.C > 0 && d.H > 0 && d.W > 0 && d.O > 0 && d.kh > 0 && d.kw > 0 && d.OH >= 0 &&
                  d.OW >= 0 && d.stride_h > 0 && d.stride_w > 0 && d.dil_h > 0 && d.dil_w > 0 && d.groups > 0 &&
                  d.C % d.groups == 0 && d.O % d.groups == 0 && d.pad_top >= 0 && d.pad_bottom >= 0 &&
                  d.pad_left >= 0 && d.pad_right >= 0 && 1LL * d.N * d.C * d.H * d.W < (1LL << 31) &&
                  1LL * d.N * d.O * L < (1LL << 31) && 1LL * d.C * d.kh * d.kw * L < (1LL << 31);
  if (!ok) throw std::invalid_argument(std::string(op) + ": invalid or too large convolution dimensions");
}

const char* at(const void* p, int64_t elements, int dtype) {
  return static_cast<const char*>(p) + elements * static_cast<int64_t>(elem_size(dtype));
}
char* at(void* p, int64_t elements, int dtype) {
  return static_cast<char*>(p) + elements * static_cast<int64_t>(elem_size(dtype));
}

using detail::Scratch;  // a device buffer from the caching allocator, returned on scope exit

// ---- elementwise-shaped work (grid-stride, uint32 indices: every launcher checks < 2^31) -----------------

template <class T>
struct DepthwiseForward {
  Conv2dDims d;
  const T* x;
  const T* w;
  const T* bias;
  T* y;
  int act;
  __device__ void operator()(uint32_t i) const {
    float v = prog::depthwise_output<T, uint32_t>(d, x, w, i);
    if (bias) v += prog::to_f(bias[(i / static_cast<uint32_t>(d.OH * d.OW)) % static_cast<uint32_t>(d.O)]);
    if (act == kActRelu6) v = fminf(fmaxf(v, 0.f), 6.f);
    y[i] = prog::from_f<T>(v);
  }
};

template <class T>
struct DepthwiseBackwardInput {
  Conv2dDims d;
  const T* gy;
  const T* w;
  T* gx;
  __device__ void operator()(uint32_t i) const { gx[i] = prog::from_f<T>(prog::depthwise_grad_input<T, uint32_t>(d, gy, w, i)); }
};

template <class T>
struct Im2col {
  Conv2dDims d;
  const T* x;
  T* col;
  __device__ void operator()(uint32_t i) const { col[i] = prog::im2col_value<T, uint32_t>(d, x, i); }
};

template <class T>
struct Col2im {
  Conv2dDims d;
  const T* col;
  T* gx;
  __device__ void operator()(uint32_t i) const { gx[i] = prog::from_f<T>(prog::col2im_value<T, uint32_t>(d, col, i)); }
};

template <class T>
struct BiasAdd {
  T* y;
  const T* bias;
  uint32_t C, L;
  __device__ void operator()(uint32_t i) const { y[i] = prog::from_f<T>(prog::to_f(y[i]) + prog::to_f(bias[(i / L) % C])); }
};

// ---- block reductions --------------------------------------------------------------------------------------

constexpr int kReduceThreads = 256;

// One block per (o, tap): gw[o, ki, kj] = Σ gy·x over (n, oh, ow).
template <class T>
__global__ void __launch_bounds__(kReduceThreads) depthwise_weight_kernel(Conv2dDims d, const T* gy, const T* x, T* gw) {
  const int taps = d.kh * d.kw;
  const int o = blockIdx.x / taps, tap = blockIdx.x % taps;
  const float part = prog::depthwise_grad_weight_part<T>(d, gy, x, o, tap / d.kw, tap % d.kw, threadIdx.x, blockDim.x);
  const float s = detail::block_sum_f(part);
  if (threadIdx.x == 0) gw[blockIdx.x] = prog::from_f<T>(s);
}

// The weight gradient of a KH×KW depthwise layer with a (chunks, O) grid: block (p, o) reads its share of
// output channel o's N·OH·OW gradient values once and accumulates all KH·KW taps in registers, into
// partials[(o·chunks + p)·taps + tap]; depthwise_weight_fold sums each (o, tap)'s partials in a fixed order.
// The first version (one block per (o, tap), each re-reading gy, 64-bit index math) took 8.4 ms of a 74 ms KD
// step on an H100 for MobileNetV2's 17 depthwise layers at batch 32. 32-bit indices: N·OH·OW < 2³¹.
template <class T, int KH, int KW>
__global__ void __launch_bounds__(kReduceThreads) depthwise_weight_partial(Conv2dDims d, const T* gy, const T* x,
                                                                           uint32_t chunk, float* partials) {
  const uint32_t p = blockIdx.x, o = blockIdx.y, chunks = gridDim.x;
  const uint32_t c = o / static_cast<uint32_t>(d.O / d.C);
  const uint32_t OW = static_cast<uint32_t>(d.OW), L = static_cast<uint32_t>(d.OH) * OW;
  const uint32_t total = static_cast<uint32_t>(d.N) * L, j1 = min(total, (p + 1) * chunk);
  float acc[KH * KW];
#pragma unroll
  for (int t = 0; t < KH * KW; ++t) acc[t] = 0.f;
  for (uint32_t j = p * chunk + threadIdx.x; j < j1; j += blockDim.x) {
    const uint32_t n = j / L, l = j - n * L, oh = l / OW, ow = l - oh * OW;
    const float g = prog::to_f(gy[(static_cast<int64_t>(n) * d.O + o) * L + l]);
    const T* plane = x + (static_cast<int64_t>(n) * d.C + c) * d.H * d.W;
    const int ih0 = static_cast<int>(oh) * d.stride_h - d.pad_top, iw0 = static_cast<int>(ow) * d.stride_w - d.pad_left;
#pragma unroll
    for (int ki = 0; ki < KH; ++ki) {
      const int ih = ih0 + ki * d.dil_h;
      if (ih < 0 || ih >= d.H) continue;
#pragma unroll
      for (int kj = 0; kj < KW; ++kj) {
        const int iw = iw0 + kj * d.dil_w;
        if (iw >= 0 && iw < d.W) acc[ki * KW + kj] += g * prog::to_f(plane[ih * d.W + iw]);
      }
    }
  }
#pragma unroll
  for (int t = 0; t < KH * KW; ++t) {
    const float s = detail::block_sum_f(acc[t]);
    if (threadIdx.x == 0) partials[(static_cast<int64_t>(o) * chunks + p) * (KH * KW) + t] = s;
  }
}

// One warp per (o, tap): gw[o·taps + tap] = Σ_p partials[(o·chunks + p)·taps + tap].
template <class T>
__global__ void __launch_bounds__(kReduceThreads) depthwise_weight_fold(const float* partials, uint32_t outputs,
                                                                        uint32_t taps, uint32_t chunks, T* gw) {
  const uint32_t k = blockIdx.x * (kReduceThreads / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (k >= outputs * taps) return;
  const uint32_t o = k / taps, t = k - o * taps;
  float acc = 0.f;
  for (uint32_t p = lane; p < chunks; p += 32) acc += partials[(static_cast<int64_t>(o) * chunks + p) * taps + t];
  acc = detail::warp_sum_f(acc);
  if (lane == 0) gw[k] = prog::from_f<T>(acc);
}

// One block per channel c: out[c] = Σ_{n, l} x[(n·C + c)·L + l].
template <class T>
__global__ void __launch_bounds__(kReduceThreads) channel_sum_kernel(const T* x, T* out, int64_t N, int64_t C, int64_t L) {
  const int64_t c = blockIdx.x;
  float acc = 0.f;
  for (int64_t n = 0; n < N; ++n) {
    const T* p = x + (n * C + c) * L;
    for (int64_t l = threadIdx.x; l < L; l += blockDim.x) acc += prog::to_f(p[l]);
  }
  const float s = detail::block_sum_f(acc);
  if (threadIdx.x == 0) out[c] = prog::from_f<T>(s);
}

// ---- im2col + cuBLAS (fallback) ------------------------------------------------------------------------------

template <class T>
void im2col_one(const Conv2dDims& d, const void* x_n, void* col) {
  launch32(1LL * d.C * d.kh * d.kw * d.OH * d.OW, Im2col<T>{d, static_cast<const T*>(x_n), static_cast<T*>(col)});
}

void dense_forward_gemm(const Conv2dDims& d, const void* x, const void* w, void* y, int dtype, int device) {
  const int64_t L = 1LL * d.OH * d.OW, Cg = d.C / d.groups, Og = d.O / d.groups, K = Cg * d.kh * d.kw;
  Scratch col(static_cast<std::size_t>(d.groups * K * L) * elem_size(dtype), device);
  for (int n = 0; n < d.N; ++n) {
    const void* xn = at(x, 1LL * n * d.C * d.H * d.W, dtype);
    if (dtype == kFloat32) im2col_one<float>(d, xn, col.p); else im2col_one<Half>(d, xn, col.p);
    // y[n]_g (Og, L) = W_g (Og, K) · col_g (K, L), one batch entry per group.
    gemm(false, false, Og, L, K, 1.f, w, K, Og * K, col.p, L, K * L, 0.f, at(y, 1LL * n * d.O * L, dtype), L, Og * L,
         d.groups, dtype, device);
  }
}

void dense_backward_input_gemm(const Conv2dDims& d, const void* gy, const void* w, void* gx, int dtype, int device) {
  const int64_t L = 1LL * d.OH * d.OW, Cg = d.C / d.groups, Og = d.O / d.groups, K = Cg * d.kh * d.kw;
  Scratch col(static_cast<std::size_t>(d.groups * K * L) * elem_size(dtype), device);
  for (int n = 0; n < d.N; ++n) {
    // col_g (K, L) = W_gᵀ (K, Og) · gy[n]_g (Og, L), then the gather back onto the input.
    gemm(true, false, K, L, Og, 1.f, w, K, Og * K, at(gy, 1LL * n * d.O * L, dtype), L, Og * L, 0.f, col.p, L, K * L,
         d.groups, dtype, device);
    void* gxn = at(gx, 1LL * n * d.C * d.H * d.W, dtype);
    const int64_t count = 1LL * d.C * d.H * d.W;
    if (dtype == kFloat32)
      launch32(count, Col2im<float>{d, static_cast<const float*>(col.p), static_cast<float*>(gxn)});
    else
      launch32(count, Col2im<Half>{d, static_cast<const Half*>(col.p), static_cast<Half*>(gxn)});
  }
}

void dense_backward_weight_gemm(const Conv2dDims& d, const void* gy, const void* x, void* gw, int dtype, int device) {
  const int64_t L = 1LL * d.OH * d.OW, Cg = d.C / d.groups, Og = d.O / d.groups, K = Cg * d.kh * d.kw;
  if (d.N == 0) {
    RETIKD_CUDA_CHECK(cudaMemsetAsync(gw, 0, static_cast<std::size_t>(d.O * K) * elem_size(dtype), detail::current_stream()));
    return;
  }
  Scratch col(static_cast<std::size_t>(d.groups * K * L) * elem_size(dtype), device);
  for (int n = 0; n < d.N; ++n) {
    const void* xn = at(x, 1LL * n * d.C * d.H * d.W, dtype);
    if (dtype == kFloat32) im2col_one<float>(d, xn, col.p); else im2col_one<Half>(d, xn, col.p);
    // gw_g (Og, K) (+)= gy[n]_g (Og, L) · col_gᵀ (L, K). fp16 accumulates across samples in fp16 storage.
    gemm(false, true, Og, K, L, 1.f, at(gy, 1LL * n * d.O * L, dtype), L, Og * L, col.p, L, K * L, n == 0 ? 0.f : 1.f,
         gw, K, Og * K, d.groups, dtype, device);
  }
}

bool g_use_cudnn = true;

#if RETIKD_USE_CUDNN
// ---- cuDNN -----------------------------------------------------------------------------------------------------

// dst (planes, H2, W2)[h][w] = src (planes, H, W)[h − top][w − left], 0 outside; negative top / left crop.
template <class T>
struct PadCopy {
  const T* src;
  T* dst;
  int H, W, H2, W2, top, left;
  __device__ void operator()(uint32_t i) const {
    const int w = static_cast<int>(i % static_cast<uint32_t>(W2));
    const uint32_t t = i / static_cast<uint32_t>(W2);
    const int h = static_cast<int>(t % static_cast<uint32_t>(H2));
    const uint32_t p = t / static_cast<uint32_t>(H2);
    const int sh = h - top, sw = w - left;
    dst[i] = (sh >= 0 && sh < H && sw >= 0 && sw < W) ? src[(static_cast<uint64_t>(p) * H + sh) * W + sw]
                                                       : prog::from_f<T>(0.f);
  }
};

template <class T>
void pad_copy(const void* src, void* dst, int64_t planes, int H, int W, int H2, int W2, int top, int left) {
  launch32(planes * H2 * W2, PadCopy<T>{static_cast<const T*>(src), static_cast<T*>(dst), H, W, H2, W2, top, left});
}

void pad_copy_any(int dtype, const void* src, void* dst, int64_t planes, int H, int W, int H2, int W2, int top,
                  int left) {
  if (dtype == kFloat32)
    pad_copy<float>(src, dst, planes, H, W, H2, W2, top, left);
  else
    pad_copy<Half>(src, dst, planes, H, W, H2, W2, top, left);
}


void throw_cudnn(cudnnStatus_t s, const char* call, const char* file, int line) {
  throw std::runtime_error(std::string("cuDNN error: ") + call + " failed at " + file + ":" + std::to_string(line) +
                           ": " + cudnnGetErrorString(s) + " (" + std::to_string(static_cast<int>(s)) + ")");
}
#define RETIKD_CUDNN_CHECK(call)                                                    \
  do {                                                                              \
    const cudnnStatus_t retikd_s_ = (call);                                         \
    if (retikd_s_ != CUDNN_STATUS_SUCCESS) throw_cudnn(retikd_s_, #call, __FILE__, __LINE__); \
  } while (0)

constexpr int kMaxDevices = 64;
std::mutex g_cudnn_mutex;
cudnnHandle_t g_handles[kMaxDevices] = {};

// The handle of the current device (DeviceGuard made it current), bound to the current stream.
cudnnHandle_t handle_for(int device) {
  if (device < 0 || device >= kMaxDevices) throw std::invalid_argument("retikd::cuda::conv: device index too large");
  std::lock_guard<std::mutex> lock(g_cudnn_mutex);
  if (!g_handles[device]) {
    RETIKD_CUDNN_CHECK(cudnnCreate(&g_handles[device]));
  }
  RETIKD_CUDNN_CHECK(cudnnSetStream(g_handles[device], detail::current_stream()));
  return g_handles[device];
}

// Descriptors for one (symmetrically padded) convolution; destroyed on scope exit.
struct CudnnConv {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  bool fma_only = false;
  CudnnConv(const Conv2dDims& d, int H, int W, int pad_h, int pad_w, int dtype) {
    const cudnnDataType_t dt = dtype == kFloat16 ? CUDNN_DATA_HALF : CUDNN_DATA_FLOAT;
    RETIKD_CUDNN_CHECK(cudnnCreateTensorDescriptor(&x));
    RETIKD_CUDNN_CHECK(cudnnCreateTensorDescriptor(&y));
    RETIKD_CUDNN_CHECK(cudnnCreateFilterDescriptor(&w));
    RETIKD_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&conv));
    RETIKD_CUDNN_CHECK(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, dt, d.N, d.C, H, W));
    RETIKD_CUDNN_CHECK(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, dt, d.N, d.O, d.OH, d.OW));
    RETIKD_CUDNN_CHECK(cudnnSetFilter4dDescriptor(w, dt, CUDNN_TENSOR_NCHW, d.O, d.C / d.groups, d.kh, d.kw));
    // fp16 data with fp32 compute (cuDNN's "pseudo half"): fp32 accumulation, as the design asks.
    RETIKD_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv, pad_h, pad_w, d.stride_h, d.stride_w, d.dil_h, d.dil_w,
                                                       CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    RETIKD_CUDNN_CHECK(cudnnSetConvolutionGroupCount(conv, d.groups));
    // fp32 without TF32 permission: plain FMA math, so results match the CPU within fp32 rounding.
    fma_only = dtype == kFloat32 && !allow_tf32_conv();
    RETIKD_CUDNN_CHECK(cudnnSetConvolutionMathType(
        conv, fma_only ? CUDNN_FMA_MATH : (dtype == kFloat16 ? CUDNN_TENSOR_OP_MATH : CUDNN_DEFAULT_MATH)));
  }
  ~CudnnConv() {
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (x) cudnnDestroyTensorDescriptor(x);
  }
  CudnnConv(const CudnnConv&) = delete;
  CudnnConv& operator=(const CudnnConv&) = delete;
};

constexpr std::size_t kMaxWorkspace = std::size_t(1) << 30;

// The first heuristic choice (cudnnGet…_v7) that succeeded, fits the workspace limit and, for fp32 without
// TF32, does not use tensor-op math; the math type it wants is set on the descriptor.
// Returns false when none qualifies: the caller then takes the im2col + cuBLAS path (logged once).
template <class Perf>
bool pick(const char* what, const Perf* perf, int count, CudnnConv& c, Perf* out) {
  for (int i = 0; i < count; ++i) {
    if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > kMaxWorkspace) continue;
    if (c.fma_only && perf[i].mathType == CUDNN_TENSOR_OP_MATH) continue;
    if (!c.fma_only) RETIKD_CUDNN_CHECK(cudnnSetConvolutionMathType(c.conv, perf[i].mathType));
    *out = perf[i];
    return true;
  }
  static std::once_flag logged;
  std::call_once(logged, [what] {
    std::fprintf(stderr, "[retikd] cuDNN offered no usable %s algorithm; using im2col + cuBLAS there\n", what);
  });
  return false;
}

// The algorithm choice per problem, cached: cuDNN 9 answers the legacy cudnnGet…Algorithm_v7 queries through
// its heuristics engine, which costs 0.3–6 ms of host time per call (measured on an H100: a batch-1 MobileNetV2
// forward took 33 ms eagerly against 0.7 ms replayed from a CUDA graph). Keyed by everything the descriptors
// hold; the value is what pick() chose (or that nothing qualified) and the workspace it needs.
struct AlgoChoice {
  bool usable = false;
  int algo = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  std::size_t workspace = 0;
};
using AlgoKey = std::tuple<int, int, int, int, int, int, int, int, int, int, int, int, int, int, int, int, int, int>;
std::mutex g_algo_mutex;
std::map<AlgoKey, AlgoChoice> g_algo_cache;

AlgoKey algo_key(int direction, int device, const Conv2dDims& d, int H, int W, int pad_h, int pad_w, int dtype,
                 bool fma_only) {
  return AlgoKey(direction, device, d.N, d.C, H, W, d.O, d.kh, d.kw, d.stride_h, d.stride_w, pad_h, pad_w, d.dil_h,
                 d.dil_w, d.groups, dtype, fma_only ? 1 : 0);
}

// Looks the choice up, or runs query (the v7 heuristic + pick + workspace size) once and stores it; on a hit
// the cached math type is set on the fresh descriptor (pick() did that on the miss).
template <class Query>
AlgoChoice cached_choice(const AlgoKey& key, CudnnConv& c, Query&& query) {
  {
    std::lock_guard<std::mutex> lock(g_algo_mutex);
    auto it = g_algo_cache.find(key);
    if (it != g_algo_cache.end()) {
      if (it->second.usable && !c.fma_only) RETIKD_CUDNN_CHECK(cudnnSetConvolutionMathType(c.conv, it->second.math));
      return it->second;
    }
  }
  const AlgoChoice choice = query();
  std::lock_guard<std::mutex> lock(g_algo_mutex);
  g_algo_cache[key] = choice;
  return choice;
}

// Asymmetric padding is not expressible in cuDNN: pad explicitly into a scratch buffer, convolve unpadded.
bool symmetric(const Conv2dDims& d) { return d.pad_top == d.pad_bottom && d.pad_left == d.pad_right; }

bool cudnn_forward(const Conv2dDims& d, const void* x, const void* w, void* y, int dtype, int device) {
  const int H2 = d.H + d.pad_top + d.pad_bottom, W2 = d.W + d.pad_left + d.pad_right;
  const bool sym = symmetric(d);
  Scratch xp(sym ? 0 : static_cast<std::size_t>(1LL * d.N * d.C * H2 * W2) * elem_size(dtype), device);
  if (!sym) pad_copy_any(dtype, x, xp.p, 1LL * d.N * d.C, d.H, d.W, H2, W2, d.pad_top, d.pad_left);
  CudnnConv c(d, sym ? d.H : H2, sym ? d.W : W2, sym ? d.pad_top : 0, sym ? d.pad_left : 0, dtype);
  cudnnHandle_t h = handle_for(device);
  const AlgoChoice ch = cached_choice(
      algo_key(0, device, d, sym ? d.H : H2, sym ? d.W : W2, sym ? d.pad_top : 0, sym ? d.pad_left : 0, dtype,
               c.fma_only),
      c, [&] {
        cudnnConvolutionFwdAlgoPerf_t perf[8];
        int n = 0;
        RETIKD_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, c.x, c.w, c.conv, c.y, 8, &n, perf));
        cudnnConvolutionFwdAlgoPerf_t p{};
        AlgoChoice r;
        if (!pick("forward", perf, n, c, &p)) return r;
        r.usable = true;
        r.algo = static_cast<int>(p.algo);
        r.math = p.mathType;
        RETIKD_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(h, c.x, c.w, c.conv, c.y, p.algo, &r.workspace));
        return r;
      });
  if (!ch.usable) return false;
  Scratch ws(ch.workspace, device);
  const float one = 1.f, zero = 0.f;
  RETIKD_CUDNN_CHECK(cudnnConvolutionForward(h, &one, c.x, sym ? x : xp.p, c.w, w, c.conv,
                                             static_cast<cudnnConvolutionFwdAlgo_t>(ch.algo), ws.p, ch.workspace,
                                             &zero, c.y, y));
  return true;
}

bool cudnn_backward_input(const Conv2dDims& d, const void* gy, const void* w, void* gx, int dtype, int device) {
  const int H2 = d.H + d.pad_top + d.pad_bottom, W2 = d.W + d.pad_left + d.pad_right;
  const bool sym = symmetric(d);
  Scratch gxp(sym ? 0 : static_cast<std::size_t>(1LL * d.N * d.C * H2 * W2) * elem_size(dtype), device);
  CudnnConv c(d, sym ? d.H : H2, sym ? d.W : W2, sym ? d.pad_top : 0, sym ? d.pad_left : 0, dtype);
  cudnnHandle_t h = handle_for(device);
  const AlgoChoice ch = cached_choice(
      algo_key(1, device, d, sym ? d.H : H2, sym ? d.W : W2, sym ? d.pad_top : 0, sym ? d.pad_left : 0, dtype,
               c.fma_only),
      c, [&] {
        cudnnConvolutionBwdDataAlgoPerf_t perf[8];
        int n = 0;
        RETIKD_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, c.w, c.y, c.conv, c.x, 8, &n, perf));
        cudnnConvolutionBwdDataAlgoPerf_t p{};
        AlgoChoice r;
        if (!pick("backward-data", perf, n, c, &p)) return r;
        r.usable = true;
        r.algo = static_cast<int>(p.algo);
        r.math = p.mathType;
        RETIKD_CUDNN_CHECK(
            cudnnGetConvolutionBackwardDataWorkspaceSize(h, c.w, c.y, c.conv, c.x, p.algo, &r.workspace));
        return r;
      });
  if (!ch.usable) return false;
  Scratch ws(ch.workspace, device);
  const float one = 1.f, zero = 0.f;
  RETIKD_CUDNN_CHECK(cudnnConvolutionBackwardData(h, &one, c.w, w, c.y, gy, c.conv,
                                                  static_cast<cudnnConvolutionBwdDataAlgo_t>(ch.algo), ws.p,
                                                  ch.workspace, &zero, c.x, sym ? gx : gxp.p));
  // The gradient of the padded input, cropped back to the real one.
  if (!sym) pad_copy_any(dtype, gxp.p, gx, 1LL * d.N * d.C, H2, W2, d.H, d.W, -d.pad_top, -d.pad_left);
  return true;
}

bool cudnn_backward_weight(const Conv2dDims& d, const void* gy, const void* x, void* gw, int dtype, int device) {
  const int H2 = d.H + d.pad_top + d.pad_bottom, W2 = d.W + d.pad_left + d.pad_right;
  const bool sym = symmetric(d);
  Scratch xp(sym ? 0 : static_cast<std::size_t>(1LL * d.N * d.C * H2 * W2) * elem_size(dtype), device);
  if (!sym) pad_copy_any(dtype, x, xp.p, 1LL * d.N * d.C, d.H, d.W, H2, W2, d.pad_top, d.pad_left);
  CudnnConv c(d, sym ? d.H : H2, sym ? d.W : W2, sym ? d.pad_top : 0, sym ? d.pad_left : 0, dtype);
  cudnnHandle_t h = handle_for(device);
  const AlgoChoice ch = cached_choice(
      algo_key(2, device, d, sym ? d.H : H2, sym ? d.W : W2, sym ? d.pad_top : 0, sym ? d.pad_left : 0, dtype,
               c.fma_only),
      c, [&] {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[8];
        int n = 0;
        RETIKD_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, c.x, c.y, c.conv, c.w, 8, &n, perf));
        cudnnConvolutionBwdFilterAlgoPerf_t p{};
        AlgoChoice r;
        if (!pick("backward-filter", perf, n, c, &p)) return r;
        r.usable = true;
        r.algo = static_cast<int>(p.algo);
        r.math = p.mathType;
        RETIKD_CUDNN_CHECK(
            cudnnGetConvolutionBackwardFilterWorkspaceSize(h, c.x, c.y, c.conv, c.w, p.algo, &r.workspace));
        return r;
      });
  if (!ch.usable) return false;
  Scratch ws(ch.workspace, device);
  const float one = 1.f, zero = 0.f;
  RETIKD_CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &one, c.x, sym ? x : xp.p, c.y, gy, c.conv,
                                                    static_cast<cudnnConvolutionBwdFilterAlgo_t>(ch.algo), ws.p,
                                                    ch.workspace, &zero, c.w, gw));
  return true;
}
bool cudnn_active() { return g_use_cudnn; }
#endif  // RETIKD_USE_CUDNN


}  // namespace

std::string conv_backend() {
#if RETIKD_USE_CUDNN
  if (g_use_cudnn) {
    const std::size_t v = cudnnGetVersion();  // 8.x: M·1000 + m·100 + p; 9.x: M·10000 + m·100 + p
    const std::size_t major = v >= 90000 ? v / 10000 : v / 1000, rest = v >= 90000 ? v % 10000 : v % 1000;
    return "cuDNN " + std::to_string(major) + "." + std::to_string(rest / 100) + "." + std::to_string(rest % 100);
  }
  return "im2col + cuBLAS (cuDNN switched off)";
#else
  return "im2col + cuBLAS (built without cuDNN)";
#endif
}
void set_conv_use_cudnn(bool use) { g_use_cudnn = use; }
bool conv_built_with_cudnn() { return RETIKD_USE_CUDNN != 0; }

void conv2d_forward(const Conv2dDims& d, const void* x, const void* w, void* y, int dtype, int device) {
  check_dtype("retikd::cuda::conv2d_forward", dtype);
  check_dims("retikd::cuda::conv2d_forward", d);
  if (1LL * d.N * d.O * d.OH * d.OW == 0) return;
  detail::DeviceGuard guard(device);
#if RETIKD_USE_CUDNN
  if (cudnn_active() && cudnn_forward(d, x, w, y, dtype, device)) return;
#endif
  dense_forward_gemm(d, x, w, y, dtype, device);
}

void conv2d_backward_input(const Conv2dDims& d, const void* gy, const void* w, void* gx, int dtype, int device) {
  check_dtype("retikd::cuda::conv2d_backward_input", dtype);
  check_dims("retikd::cuda::conv2d_backward_input", d);
  if (1LL * d.N * d.C * d.H * d.W == 0) return;
  detail::DeviceGuard guard(device);
#if RETIKD_USE_CUDNN
  if (cudnn_active() && cudnn_backward_input(d, gy, w, gx, dtype, device)) return;
#endif
  dense_backward_input_gemm(d, gy, w, gx, dtype, device);
}

void conv2d_backward_weight(const Conv2dDims& d, const void* gy, const void* x, void* gw, int dtype, int device) {
  check_dtype("retikd::cuda::conv2d_backward_weight", dtype);
  check_dims("retikd::cuda::conv2d_backward_weight", d);
  detail::DeviceGuard guard(device);
#if RETIKD_USE_CUDNN
  if (cudnn_active() && d.N > 0 && cudnn_backward_weight(d, gy, x, gw, dtype, device)) return;
#endif
  dense_backward_weight_gemm(d, gy, x, gw, dtype, device);
}

void depthwise_forward(const Conv2dDims& d, const void* x, const void* w, const void* bias, void* y, int act,
                       int dtype, int device) {
  check_dtype("retikd::cuda::depthwise_forward", dtype);
  check_dims("retikd::cuda::depthwise_forward", d);
  if (d.groups != d.C) throw std::invalid_argument("retikd::cuda::depthwise_forward: groups must equal C");
  detail::DeviceGuard guard(device);
  const int64_t n = 1LL * d.N * d.O * d.OH * d.OW;
  if (dtype == kFloat32)
    launch32(n, DepthwiseForward<float>{d, static_cast<const float*>(x), static_cast<const float*>(w),
                                        static_cast<const float*>(bias), static_cast<float*>(y), act});
  else
    launch32(n, DepthwiseForward<Half>{d, static_cast<const Half*>(x), static_cast<const Half*>(w),
                                       static_cast<const Half*>(bias), static_cast<Half*>(y), act});
}

void depthwise_backward_input(const Conv2dDims& d, const void* gy, const void* w, void* gx, int dtype, int device) {
  check_dtype("retikd::cuda::depthwise_backward_input", dtype);
  check_dims("retikd::cuda::depthwise_backward_input", d);
  if (d.groups != d.C) throw std::invalid_argument("retikd::cuda::depthwise_backward_input: groups must equal C");
  detail::DeviceGuard guard(device);
  const int64_t n = 1LL * d.N * d.C * d.H * d.W;
  if (dtype == kFloat32)
    launch32(n, DepthwiseBackwardInput<float>{d, static_cast<const float*>(gy), static_cast<const float*>(w),
                                              static_cast<float*>(gx)});
  else
    launch32(n, DepthwiseBackwardInput<Half>{d, static_cast<const Half*>(gy), static_cast<const Half*>(w),
                                             static_cast<Half*>(gx)});
}

void depthwise_backward_weight(const Conv2dDims& d, const void* gy, const void* x, void* gw, int dtype, int device) {
  check_dtype("retikd::cuda::depthwise_backward_weight", dtype);
  check_dims("retikd::cuda::depthwise_backward_weight", d);
  if (d.groups != d.C) throw std::invalid_argument("retikd::cuda::depthwise_backward_weight: groups must equal C");
  detail::DeviceGuard guard(device);
  const int64_t total = 1LL * d.N * d.OH * d.OW;
  const bool square3 = d.kh == 3 && d.kw == 3, square5 = d.kh == 5 && d.kw == 5;
  if ((square3 || square5) && total > 0 && d.O <= 65535) {
    // Chunks per output channel: about 2048 blocks in all, none with fewer than 1024 positions.
    const int64_t taps = 1LL * d.kh * d.kw;
    int64_t chunks = std::min<int64_t>((2048 + d.O - 1) / d.O, (total + 1023) / 1024);
    chunks = std::max<int64_t>(1, std::min<int64_t>(chunks, 1024));
    const uint32_t chunk = static_cast<uint32_t>((total + chunks - 1) / chunks);
    Scratch partials(static_cast<std::size_t>(d.O * chunks * taps) * sizeof(float), device);
    float* part = static_cast<float*>(partials.p);
    const dim3 grid(static_cast<unsigned>(chunks), static_cast<unsigned>(d.O));
    const cudaStream_t cs = detail::current_stream();
    if (dtype == kFloat32) {
      const float* g = static_cast<const float*>(gy);
      const float* xs = static_cast<const float*>(x);
      if (square3) depthwise_weight_partial<float, 3, 3><<<grid, kReduceThreads, 0, cs>>>(d, g, xs, chunk, part);
      else depthwise_weight_partial<float, 5, 5><<<grid, kReduceThreads, 0, cs>>>(d, g, xs, chunk, part);
    } else {
      const Half* g = static_cast<const Half*>(gy);
      const Half* xs = static_cast<const Half*>(x);
      if (square3) depthwise_weight_partial<Half, 3, 3><<<grid, kReduceThreads, 0, cs>>>(d, g, xs, chunk, part);
      else depthwise_weight_partial<Half, 5, 5><<<grid, kReduceThreads, 0, cs>>>(d, g, xs, chunk, part);
    }
    RETIKD_CUDA_CHECK_LAUNCH();
    const unsigned fold_blocks = static_cast<unsigned>((d.O * taps + kReduceThreads / 32 - 1) / (kReduceThreads / 32));
    if (dtype == kFloat32)
      depthwise_weight_fold<float><<<fold_blocks, kReduceThreads, 0, cs>>>(
          part, static_cast<uint32_t>(d.O), static_cast<uint32_t>(taps), static_cast<uint32_t>(chunks),
          static_cast<float*>(gw));
    else
      depthwise_weight_fold<Half><<<fold_blocks, kReduceThreads, 0, cs>>>(
          part, static_cast<uint32_t>(d.O), static_cast<uint32_t>(taps), static_cast<uint32_t>(chunks),
          static_cast<Half*>(gw));
    RETIKD_CUDA_CHECK_LAUNCH();
    return;
  }
  // Other kernel shapes: one block per (o, tap).
  const unsigned blocks = static_cast<unsigned>(d.O * d.kh * d.kw);
  if (dtype == kFloat32)
    depthwise_weight_kernel<float><<<blocks, kReduceThreads, 0, detail::current_stream()>>>(d, static_cast<const float*>(gy),
                                                               static_cast<const float*>(x), static_cast<float*>(gw));
  else
    depthwise_weight_kernel<Half><<<blocks, kReduceThreads, 0, detail::current_stream()>>>(d, static_cast<const Half*>(gy),
                                                              static_cast<const Half*>(x), static_cast<Half*>(gw));
  RETIKD_CUDA_CHECK_LAUNCH();
}

void channel_bias_add(void* y, const void* bias, int64_t N, int64_t C, int64_t L, int dtype, int device) {
  check_dtype("retikd::cuda::channel_bias_add", dtype);
  if (N < 0 || C <= 0 || L < 0) throw std::invalid_argument("retikd::cuda::channel_bias_add: bad sizes");
  detail::DeviceGuard guard(device);
  if (dtype == kFloat32)
    launch32(N * C * L, BiasAdd<float>{static_cast<float*>(y), static_cast<const float*>(bias),
                                       static_cast<uint32_t>(C), static_cast<uint32_t>(L)});
  else
    launch32(N * C * L, BiasAdd<Half>{static_cast<Half*>(y), static_cast<const Half*>(bias), static_cast<uint32_t>(C),
                                      static_cast<uint32_t>(L)});
}

void channel_sum(const void* x, void* out, int64_t N, int64_t C, int64_t L, int dtype, int device) {
  check_dtype("retikd::cuda::channel_sum", dtype);
  if (N < 0 || C < 0 || L < 0 || C > 2147483647LL) throw std::invalid_argument("retikd::cuda::channel_sum: bad sizes");
  if (C == 0) return;
  detail::DeviceGuard guard(device);
  if (dtype == kFloat32)
    channel_sum_kernel<float><<<static_cast<unsigned>(C), kReduceThreads, 0, detail::current_stream()>>>(static_cast<const float*>(x),
                                                                           static_cast<float*>(out), N, C, L);
  else
    channel_sum_kernel<Half><<<static_cast<unsigned>(C), kReduceThreads, 0, detail::current_stream()>>>(static_cast<const Half*>(x),
                                                                          static_cast<Half*>(out), N, C, L);
  RETIKD_CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace retikd
