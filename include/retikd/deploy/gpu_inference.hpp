// retikd/deploy/gpu_inference.hpp — the fp16 GPU inference path of a folded student (issue 6, item 6): the
// FoldedConvNet's weights converted once to float16 on a CUDA device, images cast to float16 there, the
// forward run without a tape through the ordinary ops (which dispatch to retikd::cuda for GPU tensors: cuDNN
// or im2col + cuBLAS for dense layers, retikd's depthwise kernel with fp32 accumulation, cuBLAS fp16 GEMM with
// fp32 accumulation for the classifier), logits returned as float32 on the host.
//
// Why fp16 storage: MobileNetV2 on the Jetson Nano is bound by its 25.6 GB/s of memory bandwidth; half the
// bytes per activation is most of the gain, while fp32 accumulation keeps the logits within ~1e-2 of fp32.
//
// capture(h, w) records the batch-1 forward as one CUDA graph (retikd/cuda/graph.hpp) on a static input
// tensor; run_captured(image) copies the image in, replays the graph and reads the static output — batch-1
// latency is then not bound by ~100 kernel launches.
//
// Status: ran on an H100 (then in test_cuda_nn_ops.cpp, now test_cuda_models.cpp; 0.453 ms per fp16 batch-1
// 224-px MobileNetV2 from the graph, docs/results.md); not yet on a Jetson Nano. Without RETIKD_WITH_CUDA the
// constructor throws.
#pragma once

#include <memory>
#include <string>

#include "retikd/autograd/var.hpp"
#include "retikd/core/error.hpp"
#include "retikd/core/tensor.hpp"
#include "retikd/deploy/fold.hpp"
#ifdef RETIKD_WITH_CUDA
#include "retikd/cuda/graph.hpp"
#endif

namespace retikd {
namespace deploy {

class GpuHalfStudent {
 public:
  // Takes the folded model over: its parameters are converted in place to float16 on `device` (rebuild or
  // reload the bundle for CPU use afterwards).
  GpuHalfStudent(std::shared_ptr<FoldedConvNet> model, Device device = Device::cuda(0), bool half = true)
      : model_(std::move(model)), device_(device), dtype_(half ? DType::float16 : DType::float32) {
    RETIKD_CHECK(model_, "GpuHalfStudent: no model");
    RETIKD_CHECK(device_.is_cuda(), "GpuHalfStudent: ", device_.to_string(), " is not a CUDA device");
#ifndef RETIKD_WITH_CUDA
    RETIKD_CHECK(false, "GpuHalfStudent: this build has no CUDA (link retikd::cuda)");
#endif
    model_->eval();
    model_->to(dtype_);
    model_->to(device_);
  }

  // Logits (N, classes), float32 on the host, for images (N, 3, H, W) of any floating dtype on any device.
  Tensor run(const Tensor& images) {
    NoGradGuard no_grad;
    const Tensor x = images.to(device_).to(dtype_);
    const Var y = model_->forward(Var(x, false));
    return y.value().to(DType::float32).to(Device::cpu());
  }

#ifdef RETIKD_WITH_CUDA
  // Captures the forward of one (1, 3, h, w) image (warm-up included); replaces an earlier capture.
  void capture(int64_t h, int64_t w) {
    input_ = Tensor::zeros({1, model_->in_chans(), h, w}, dtype_, device_);
    graph_.capture(device_.index, [this] {
      NoGradGuard no_grad;
      output_ = model_->forward(Var(input_, false)).value();
    });
  }
  bool captured() const { return graph_.captured(); }
  // Logits (1, classes) of one image (1, 3, h, w) of the captured size, through the graph.
  Tensor run_captured(const Tensor& image) {
    RETIKD_CHECK(graph_.captured(), "GpuHalfStudent::run_captured: call capture(h, w) first");
    RETIKD_CHECK(image.shape() == input_.shape(), "GpuHalfStudent::run_captured: image ", shape_str(image.shape()),
                 " does not match the captured ", shape_str(input_.shape()));
    input_.copy_(image.to(device_).to(dtype_));  // legacy stream: ordered before the graph (blocking stream)
    graph_.replay();
    return output_.to(DType::float32).to(Device::cpu());
  }
#endif

  FoldedConvNet& model() { return *model_; }
  DType dtype() const { return dtype_; }

 private:
  std::shared_ptr<FoldedConvNet> model_;
  Device device_;
  DType dtype_;
#ifdef RETIKD_WITH_CUDA
  cuda::Graph graph_;
  Tensor input_, output_;  // static buffers the graph reads and writes
#endif
};

}  // namespace deploy
}  // namespace retikd
