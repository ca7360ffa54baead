// retikd/cuda/graph.hpp — CUDA-graph capture of a sequence of retikd GPU calls (kernels/graph.cu), so that a
// batch-1 forward is one graph launch instead of ~100 kernel launches (issue 6, item 6).
//
// How: capture() makes a private stream current for every retikd launcher on this thread
// (kernels/launch.cuh's current_stream), runs body once as a warm-up (cuDNN algorithm queries, cuBLAS
// workspace for that stream, first cudaMallocs), then runs it again under cudaStreamBeginCapture (relaxed
// mode) and instantiates the graph. Blocks the body frees while capturing stay reserved for the graph until
// it is destroyed (the graph holds their addresses). The body must only touch device memory through retikd
// launchers; its inputs and outputs must be tensors that outlive the graph (a static input the caller copies
// into before replay(), a static output read after it). A synchronous copy or any legacy-default-stream call
// inside the body makes the capture fail with the CUDA error that names it.
//
// Status: ran on an H100 (the fp16 student's batch-1 graph, then in test_cuda_nn_ops.cpp, now in
// test_cuda_models.cpp). C++14, no CUDA types.
#pragma once

#include <functional>
#include <utility>
#include <vector>

namespace retikd {
namespace cuda {

class Graph {
 public:
  Graph() = default;
  ~Graph();
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  // Warm-up call, then capture of a second call of body on `device`; replaces a previous capture.
  void capture(int device, const std::function<void()>& body);
  // Launches the captured graph and waits for it.
  void replay();
  bool captured() const { return exec_ != nullptr; }

 private:
  void reset();
  int device_ = 0;
  void* stream_ = nullptr;  // cudaStream_t
  void* graph_ = nullptr;   // cudaGraph_t
  void* exec_ = nullptr;    // cudaGraphExec_t
  std::vector<std::pair<void*, int>> held_;  // blocks freed during capture, released with the graph
};

}  // namespace cuda
}  // namespace retikd
