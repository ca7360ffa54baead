// retikd/ops/cuda/loss.hpp — the CUDA back end of the loss family (ops/loss.hpp): Tensor-level wrappers around
// the row launchers of kernels/loss_rows.cu (cross_entropy and the distillation kl_div, forward and backward)
// and kernels/row_ops.cu (a reduced loss's total, and its gradient broadcast back to every element).
//
// The kernels are float32 only (the front end's check_loss_input rejects other dtypes on a GPU) and reduce in
// float32. Cross-entropy targets and class weights are small: they are copied to the host to be validated and
// to sum the mean's denominator in double, as on the CPU. The structs these functions fill for the backward
// are in ops/loss_types.hpp, so this header does not include its front end. BCE with logits runs on the
// elementwise kernels (ops/cuda/elementwise.hpp); mse_loss is composed from GPU elementwise ops in the front
// end. Bodies sit in `if constexpr (kCudaBuilt)` (ops/dispatch.hpp says why): a CPU-only build compiles this
// header and links no launcher.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "retikd/core/tensor.hpp"
#include "retikd/cuda/nn_ops.hpp"
#include "retikd/ops/common.hpp"
#include "retikd/ops/dispatch.hpp"
#include "retikd/ops/loss_types.hpp"

namespace retikd {
namespace ops {
namespace cuda_backend {

// The 0-d total of the elementwise losses e, divided by `divisor` (impl::loss_divisor).
inline Tensor reduce_loss(const Tensor& e, double divisor) {
  if constexpr (kCudaBuilt) {
    Tensor out = Tensor::empty({}, e.dtype(), e.device());
    const Tensor ec = e.contiguous();
    cuda::reduce_rows(ec.raw_data(), out.raw_data(), 1, ec.numel(), cuda::kRowSum, static_cast<float>(1.0 / divisor),
                      static_cast<int>(ec.dtype()), ec.device().index);
    return out;
  }
  cuda_not_built("loss");
}

// The gradient of a reduced loss per element: the 0-d g / divisor everywhere in `shape`. No host round trip:
// the 0-d gradient is read on the device.
inline Tensor loss_grad_broadcast(const Tensor& g, const Shape& shape, double divisor) {
  if constexpr (kCudaBuilt) {
    RETIKD_CHECK(g.numel() == 1, "loss backward: expected a 0-d gradient, got ", g.describe());
    Tensor out = Tensor::empty(shape, g.dtype(), g.device());
    const Tensor gc = g.contiguous();
    cuda::row_broadcast(gc.raw_data(), out.raw_data(), 1, shape_numel(shape), static_cast<float>(1.0 / divisor),
                        static_cast<int>(g.dtype()), g.device().index);
    return out;
  }
  cuda_not_built("loss backward");
}

// impl::cross_entropy_forward for float32 logits (N, C) on a GPU, after the front end's checks (logits, the
// targets' dtype and shape, label_smoothing, reduction). The targets' range and the class weights are checked
// (and the mean's denominator summed, in double as on the CPU) on the host, the rows run on the device.
inline Tensor cross_entropy_forward(const Tensor& logits, const Tensor& targets, const CrossEntropyOptions& opt,
                                    impl::CrossEntropySaved& saved) {
  if constexpr (kCudaBuilt) {
    const char* op = "cross_entropy";
    const int64_t N = logits.size(0), C = logits.size(1);
    const Tensor t_host = targets.to(Device::cpu()).contiguous();
    const int64_t* pt = t_host.data<int64_t>();
    for (int64_t i = 0; i < N; ++i)
      RETIKD_CHECK(pt[i] == opt.ignore_index || (pt[i] >= 0 && pt[i] < C), op, ": target ", pt[i], " at index ",
                   i, " is out of range for ", C, " classes (logits ", shape_str(logits.shape()), ")");
    std::vector<double> w_host;
    if (opt.weight.defined()) {
      RETIKD_CHECK(opt.weight.dim() == 1 && opt.weight.size(0) == C, op, ": class weights ",
                   shape_str(opt.weight.shape()), " must be (C,) = (", C, ",)");
      RETIKD_CHECK(is_floating(opt.weight.dtype()), op, ": class weights must be floating, got ",
                   opt.weight.describe());
      w_host = opt.weight.to(Device::cpu()).to(DType::float64).contiguous().to_vector<double>();
      saved.weight = opt.weight.to(DType::float32).to(logits.device()).contiguous().clone();
    }
    saved.logits = logits.contiguous();
    saved.targets = t_host.to(logits.device());
    saved.label_smoothing = opt.label_smoothing;
    saved.ignore_index = opt.ignore_index;
    saved.lse = Tensor::empty({N}, DType::float32, logits.device());
    Tensor per_row = Tensor::empty({N}, DType::float32, logits.device());
    cuda::ce_rows_forward(static_cast<const float*>(saved.logits.raw_data()),
                          static_cast<const int64_t*>(saved.targets.raw_data()),
                          saved.weight.defined() ? static_cast<const float*>(saved.weight.raw_data()) : nullptr,
                          static_cast<float*>(saved.lse.raw_data()), static_cast<float*>(per_row.raw_data()), N, C,
                          static_cast<float>(opt.label_smoothing), opt.ignore_index, logits.device().index);
    double denom = 0.0;
    for (int64_t i = 0; i < N; ++i)
      if (pt[i] != opt.ignore_index) denom += w_host.empty() ? 1.0 : w_host[static_cast<std::size_t>(pt[i])];
    saved.denominator = opt.reduction == Reduction::mean ? denom : 1.0;
    if (opt.reduction == Reduction::none) return per_row;
    Tensor out = Tensor::empty({}, DType::float32, logits.device());
    cuda::reduce_rows(per_row.raw_data(), out.raw_data(), 1, N, cuda::kRowSum,
                      static_cast<float>(1.0 / saved.denominator), cuda::kFloat32, logits.device().index);
    return out;
  }
  cuda_not_built("cross_entropy");
}

// impl::cross_entropy_backward for statistics saved on a GPU; g is 0-D (mean, sum) or (N,) (none).
inline Tensor cross_entropy_backward(const Tensor& g, const impl::CrossEntropySaved& s, Reduction reduction) {
  if constexpr (kCudaBuilt) {
    const char* op = "cross_entropy backward";
    const int64_t N = s.logits.size(0), C = s.logits.size(1);
    check_same_device(op, g, s.logits);
    Tensor gx = Tensor::empty(s.logits.shape(), DType::float32, s.logits.device());
    if (gx.numel() == 0) return gx;
    const Tensor gc = g.to(DType::float32).contiguous();
    double weight_sum = static_cast<double>(C);
    if (s.weight.defined()) {
      weight_sum = 0.0;  // the CPU sums in the logits' dtype; float32 here as well
      for (double v : s.weight.to(Device::cpu()).to(DType::float64).to_vector<double>()) weight_sum += v;
    }
    cuda::ce_rows_backward(static_cast<const float*>(gc.raw_data()), reduction == Reduction::none,
                           static_cast<float>(1.0 / s.denominator), static_cast<const float*>(s.logits.raw_data()),
                           static_cast<const float*>(s.lse.raw_data()),
                           static_cast<const int64_t*>(s.targets.raw_data()),
                           s.weight.defined() ? static_cast<const float*>(s.weight.raw_data()) : nullptr,
                           static_cast<float>(weight_sum), static_cast<float*>(gx.raw_data()), N, C,
                           static_cast<float>(s.label_smoothing), s.ignore_index, s.logits.device().index);
    return gx;
  }
  cuda_not_built("cross_entropy backward");
}

// The elementwise terms p·(log p − log q) of the distillation KL over R rows of C float32 logits on a GPU
// (saved.s, saved.t and saved.tau already set by impl::kl_div_forward); fills saved.lse_s / saved.lse_t. The
// front end reduces the terms.
inline Tensor kl_div_terms(const Tensor& s_in, const Tensor& t_in, int64_t R, int64_t C, impl::KlDivSaved& saved) {
  if constexpr (kCudaBuilt) {
    check_same_device("kl_div", s_in, t_in);
    saved.lse_s = Tensor::empty({R}, DType::float32, s_in.device());
    saved.lse_t = Tensor::empty({R}, DType::float32, s_in.device());
    Tensor terms = Tensor::empty(s_in.shape(), DType::float32, s_in.device());
    if (C > 0)
      cuda::kl_rows_forward(static_cast<const float*>(saved.s.raw_data()),
                            static_cast<const float*>(saved.t.raw_data()), static_cast<float*>(terms.raw_data()),
                            static_cast<float*>(saved.lse_s.raw_data()), static_cast<float*>(saved.lse_t.raw_data()),
                            R, C, static_cast<float>(1.0 / saved.tau), s_in.device().index);
    return terms;
  }
  cuda_not_built("kl_div");
}

// impl::kl_div_backward for statistics saved on a GPU: ge (R, C) is the gradient reaching each term; gs / gt
// (allocated by the front end, undefined where not wanted) are written and returned.
inline std::vector<Tensor> kl_div_backward(const impl::KlDivSaved& sv, const Tensor& ge, const Tensor& gs,
                                           const Tensor& gt, bool want_s, bool want_t, int64_t R, int64_t C) {
  if constexpr (kCudaBuilt) {
    if (C > 0 && R > 0)
      cuda::kl_rows_backward(static_cast<const float*>(sv.s.raw_data()), static_cast<const float*>(sv.t.raw_data()),
                             static_cast<const float*>(sv.lse_s.raw_data()),
                             static_cast<const float*>(sv.lse_t.raw_data()), static_cast<const float*>(ge.raw_data()),
                             want_s ? static_cast<float*>(gs.raw_data()) : nullptr,
                             want_t ? static_cast<float*>(gt.raw_data()) : nullptr, R, C,
                             static_cast<float>(1.0 / sv.tau), sv.s.device().index);
    return {gs, gt};
  }
  cuda_not_built("kl_div backward");
}

}  // namespace cuda_backend
}  // namespace ops
}  // namespace retikd
