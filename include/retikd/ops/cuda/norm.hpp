// retikd/ops/cuda/norm.hpp — the CUDA back end of the norm family (ops/norm.hpp): batch and layer
// normalisation, forward and backward, as Tensor-level wrappers around the launchers of kernels/norm.cu.
//
// The front end sends every GPU x here (not only float32 / float16), so these functions check the dtype and
// say "no CUDA path for …" themselves; the shape checks the front end already made (x (N, C, *), the
// normalized_shape against x) are not repeated, and it passes the sizes it computed. The kernels accumulate
// in float32: the saved mean / invstd are float32 tensors on x's device (the CPU path saves float64), and
// running statistics must be contiguous float32 on that device, since the kernel updates them in place.
// Bodies sit in `if constexpr (kCudaBuilt)` (ops/dispatch.hpp says why): a CPU-only build compiles this header
// and links no launcher.
#pragma once

#include <array>
#include <cstdint>

#include "retikd/core/tensor.hpp"
#include "retikd/cuda/nn_ops.hpp"
#include "retikd/ops/common.hpp"
#include "retikd/ops/dispatch.hpp"

namespace retikd {
namespace ops {
namespace cuda_backend {

// What a normalisation forward returns: the output and the statistics its backward needs, (C,) for batch
// norm and (rows,) for layer norm, float32 on x's device.
struct NormResult {
  Tensor output;
  Tensor mean;
  Tensor invstd;
};

// An optional GPU parameter: its device pointer (null when undefined) after checking place, dtype and shape.
inline const void* norm_param(const char* op, const char* what, const Tensor& p, const Shape& shape, const Tensor& x,
                              Tensor& keep) {
  if (!p.defined()) return nullptr;
  check_same_device(op, x, p);
  check_same_dtype(op, x, p);
  RETIKD_CHECK(p.shape() == shape, op, ": ", what, " ", shape_str(p.shape()), " must be ", shape_str(shape));
  keep = p.contiguous();
  return keep.raw_data();
}
inline void norm_check(const char* op, const Tensor& x) {
  RETIKD_CHECK(x.dtype() == DType::float32 || x.dtype() == DType::float16, op, ": no CUDA path for ",
               x.describe());
}

// x (N, C, S) with S the product of the trailing dims; running_mean / running_var are updated in place when
// training and defined.
inline NormResult batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& running_mean,
                             Tensor& running_var, bool training, double momentum, double eps, int64_t N, int64_t C,
                             int64_t S) {
  if constexpr (kCudaBuilt) {
    const int64_t M = N * S;
    norm_check("batch_norm", x);
    Tensor wk, bk;
    const void* pw = norm_param("batch_norm", "weight", weight, {C}, x, wk);
    const void* pb = norm_param("batch_norm", "bias", bias, {C}, x, bk);
    RETIKD_CHECK(running_mean.defined() == running_var.defined(), "batch_norm: running_mean and running_var must "
                 "both be given or both be undefined");
    for (const Tensor* rs : {&running_mean, &running_var})
      if (rs->defined())
        RETIKD_CHECK(rs->is_contiguous() && rs->dtype() == DType::float32 && rs->device() == x.device() &&
                         rs->dim() == 1 && rs->size(0) == C,
                     "batch_norm: running statistics ", rs->describe(), " must be contiguous float32 (", C,
                     ",) on ", x.device().to_string());
    RETIKD_CHECK(training ? M > 1 : running_mean.defined(), "batch_norm: input ", shape_str(x.shape()),
                 training ? " has at most 1 value per channel" : ": evaluation needs running statistics");
    NormResult r;
    r.output = Tensor::empty(x.shape(), x.dtype(), x.device());
    r.mean = Tensor::empty({C}, DType::float32, x.device());
    r.invstd = Tensor::empty({C}, DType::float32, x.device());
    const Tensor xc = x.contiguous();
    cuda::batch_norm_forward(xc.raw_data(), pw, pb,
                             running_mean.defined() ? static_cast<float*>(running_mean.raw_data()) : nullptr,
                             running_var.defined() ? static_cast<float*>(running_var.raw_data()) : nullptr,
                             static_cast<float*>(r.mean.raw_data()), static_cast<float*>(r.invstd.raw_data()),
                             r.output.raw_data(), N, C, S, training, static_cast<float>(momentum),
                             static_cast<float>(eps), static_cast<int>(x.dtype()), x.device().index);
    return r;
  }
  cuda_not_built("batch_norm");
}

// Gradients {x, weight, bias} (undefined where not asked for); save_mean / save_invstd from batch_norm above.
inline std::array<Tensor, 3> batch_norm_backward(const Tensor& grad_out, const Tensor& x, const Tensor& weight,
                                                 const Tensor& save_mean, const Tensor& save_invstd, bool training,
                                                 bool need_x, bool need_w, bool need_b, int64_t N, int64_t C,
                                                 int64_t S) {
  if constexpr (kCudaBuilt) {
    norm_check("batch_norm backward", x);
    check_same_device("batch_norm backward", grad_out, x);
    Tensor wk;
    const void* pw = norm_param("batch_norm backward", "weight", weight, {C}, x, wk);
    std::array<Tensor, 3> out;
    if (need_x) out[0] = Tensor::empty(x.shape(), x.dtype(), x.device());
    if (need_w) out[1] = Tensor::empty({C}, x.dtype(), x.device());
    if (need_b) out[2] = Tensor::empty({C}, x.dtype(), x.device());
    const Tensor xc = x.contiguous(), gc = grad_out.contiguous();
    const Tensor mc = save_mean.contiguous(), ic = save_invstd.contiguous();
    cuda::batch_norm_backward(gc.raw_data(), xc.raw_data(), pw, static_cast<const float*>(mc.raw_data()),
                              static_cast<const float*>(ic.raw_data()), need_x ? out[0].raw_data() : nullptr,
                              need_w ? out[1].raw_data() : nullptr, need_b ? out[2].raw_data() : nullptr, N, C, S,
                              training, static_cast<int>(x.dtype()), x.device().index);
    return out;
  }
  cuda_not_built("batch_norm backward");
}

// x as (R, D) rows: D the product of normalized_shape (checked against x's trailing dims), R = numel / D (0
// when D is 0, and then no kernel runs).
inline NormResult layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                             double eps, int64_t R, int64_t D) {
  if constexpr (kCudaBuilt) {
    norm_check("layer_norm", x);
    RETIKD_CHECK(eps >= 0.0, "layer_norm: eps ", eps, " must be non-negative");
    Tensor wk, bk;
    const void* pw = norm_param("layer_norm", "weight", weight, normalized_shape, x, wk);
    const void* pb = norm_param("layer_norm", "bias", bias, normalized_shape, x, bk);
    NormResult r;
    r.output = Tensor::empty(x.shape(), x.dtype(), x.device());
    r.mean = Tensor::empty({R}, DType::float32, x.device());
    r.invstd = Tensor::empty({R}, DType::float32, x.device());
    const Tensor xc = x.contiguous();
    if (D > 0)
      cuda::layer_norm_forward(xc.raw_data(), pw, pb, static_cast<float*>(r.mean.raw_data()),
                               static_cast<float*>(r.invstd.raw_data()), r.output.raw_data(), R, D,
                               static_cast<float>(eps), static_cast<int>(x.dtype()), x.device().index);
    return r;
  }
  cuda_not_built("layer_norm");
}

// Gradients {x, weight, bias} (undefined where not asked for); save_mean / save_invstd from layer_norm above.
inline std::array<Tensor, 3> layer_norm_backward(const Tensor& grad_out, const Tensor& x,
                                                 const Shape& normalized_shape, const Tensor& weight,
                                                 const Tensor& save_mean, const Tensor& save_invstd, bool need_x,
                                                 bool need_w, bool need_b, int64_t R, int64_t D) {
  if constexpr (kCudaBuilt) {
    norm_check("layer_norm backward", x);
    check_same_device("layer_norm backward", grad_out, x);
    Tensor wk;
    const void* pw = norm_param("layer_norm backward", "weight", weight, normalized_shape, x, wk);
    std::array<Tensor, 3> out;
    if (need_x) out[0] = Tensor::empty(x.shape(), x.dtype(), x.device());
    if (need_w) out[1] = Tensor::empty(normalized_shape, x.dtype(), x.device());
    if (need_b) out[2] = Tensor::empty(normalized_shape, x.dtype(), x.device());
    const Tensor xc = x.contiguous(), gc = grad_out.contiguous();
    const Tensor mc = save_mean.contiguous(), ic = save_invstd.contiguous();
    if (D > 0)
      cuda::layer_norm_backward(gc.raw_data(), xc.raw_data(), pw, static_cast<const float*>(mc.raw_data()),
                                static_cast<const float*>(ic.raw_data()), need_x ? out[0].raw_data() : nullptr,
                                need_w ? out[1].raw_data() : nullptr, need_b ? out[2].raw_data() : nullptr, R, D,
                                static_cast<int>(x.dtype()), x.device().index);
    return out;
  }
  cuda_not_built("layer_norm backward");
}

}  // namespace cuda_backend
}  // namespace ops
}  // namespace retikd
