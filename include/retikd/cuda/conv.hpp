// retikd/cuda/conv.hpp — launchers of the convolution family (kernels/conv.cu) that ops/conv.hpp calls for
// tensors on a GPU: dense convolutions through cuDNN's descriptor API (the one cuDNN 8.2 and 9 share) or, in a
// build without cuDNN (or after set_conv_use_cudnn(false)), through im2col + cuBLAS; our own depthwise kernel
// (fp32 / fp16 storage, fp32 accumulation, optional fused bias + ReLU6); and the per-channel bias add / sum.
//
// C++14, no CUDA types: buffers are contiguous NCHW device pointers, dtypes the DTypeCode ints (kFloat32,
// kFloat16). Every launcher runs on the default stream of `device` and throws std::invalid_argument for a bad
// dtype or size and std::runtime_error (naming the call) for a CUDA / cuBLAS / cuDNN failure.
#pragma once

#include <cstdint>
#include <string>

#include "retikd/cuda/dtype_code.hpp"
#include "retikd/cuda/op_programs.hpp"

namespace retikd {
namespace cuda {

// "cuDNN 9.19.0" or "im2col + cuBLAS (built without cuDNN)" / "im2col + cuBLAS (cuDNN switched off)".
std::string conv_backend();
// Whether dense convolutions use cuDNN (default: yes when built with it). Off sends them to im2col + cuBLAS,
// which is how the tests compare both paths.
void set_conv_use_cudnn(bool use);
bool conv_built_with_cudnn();

// Dense (any groups) y = conv(x, w), no bias. fp32 follows cuda::allow_tf32_conv() (FMA math otherwise), fp16
// accumulates in fp32.
void conv2d_forward(const Conv2dDims& d, const void* x, const void* w, void* y, int dtype, int device);
// gx (N, C, H, W) = the input gradient from gy (N, O, OH, OW).
void conv2d_backward_input(const Conv2dDims& d, const void* gy, const void* w, void* gx, int dtype, int device);
// gw (O, C/groups, kh, kw) = the weight gradient (overwritten, not accumulated).
void conv2d_backward_weight(const Conv2dDims& d, const void* gy, const void* x, void* gw, int dtype, int device);

enum ConvActivation { kActNone = 0, kActRelu6 = 1 };
// Depthwise (groups == C, O a multiple of C) y = act(conv(x, w) + bias); bias may be null.
void depthwise_forward(const Conv2dDims& d, const void* x, const void* w, const void* bias, void* y, int act,
                       int dtype, int device);
void depthwise_backward_input(const Conv2dDims& d, const void* gy, const void* w, void* gx, int dtype, int device);
void depthwise_backward_weight(const Conv2dDims& d, const void* gy, const void* x, void* gw, int dtype, int device);

// y (N, C, L) += bias[c], in place.
void channel_bias_add(void* y, const void* bias, int64_t N, int64_t C, int64_t L, int dtype, int device);
// out[c] = Σ_{n, l} x[n, c, l] (fp32 accumulation; out has the dtype of x).
void channel_sum(const void* x, void* out, int64_t N, int64_t C, int64_t L, int dtype, int device);

}  // namespace cuda
}  // namespace retikd
