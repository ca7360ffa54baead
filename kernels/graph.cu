// kernels/graph.cu — CUDA-graph capture of retikd calls (include/retikd/cuda/graph.hpp). The capture stream is
// made current for kernels/launch.cuh's launchers and library handles, frees during capture are parked
// (kernels/capture.cuh), and the graph is instantiated once and replayed. cudaGraphInstantiate's signature
// changed in CUDA 12 (flags instead of error-node / log arguments); both forms are handled.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "capture.cuh"
#include "cuda_check.cuh"
#include "launch.cuh"
#include "retikd/cuda/graph.hpp"
#include "retikd/cuda/runtime.hpp"

namespace retikd {
namespace cuda {
namespace {

// Makes `stream` current (and parks frees in `deferred` when given) for the scope; restores on exit, also
// when the body throws.
class StreamScope {
 public:
  StreamScope(cudaStream_t stream, detail::DeferredFrees* deferred)
      : saved_stream_(detail::current_stream_slot()), saved_deferred_(detail::deferred_frees_slot()) {
    detail::current_stream_slot() = stream;
    detail::deferred_frees_slot() = deferred;
  }
  ~StreamScope() {
    detail::current_stream_slot() = saved_stream_;
    detail::deferred_frees_slot() = saved_deferred_;
  }
  StreamScope(const StreamScope&) = delete;
  StreamScope& operator=(const StreamScope&) = delete;

 private:
  cudaStream_t saved_stream_;
  detail::DeferredFrees* saved_deferred_;
};

}  // namespace

Graph::~Graph() {
  try {
    reset();
  } catch (...) {
    // destructors must not throw; a failing driver reports itself on the next checked call
  }
}

void Graph::reset() {
  if (exec_ != nullptr || graph_ != nullptr || stream_ != nullptr) {
    detail::DeviceGuard guard(device_);
    if (stream_) cudaStreamSynchronize(static_cast<cudaStream_t>(stream_));
    if (exec_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
    if (graph_) cudaGraphDestroy(static_cast<cudaGraph_t>(graph_));
    if (stream_) cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
  }
  exec_ = graph_ = stream_ = nullptr;
  for (const auto& b : held_) device_free(b.first, b.second);
  held_.clear();
}

void Graph::capture(int device, const std::function<void()>& body) {
  reset();
  device_ = device;
  detail::DeviceGuard guard(device);
  cudaStream_t stream = nullptr;
  // A blocking stream: work on the legacy default stream (the caller's input copy, the output read) is
  // ordered with the graph's launches without explicit events.
  RETIKD_CUDA_CHECK(cudaStreamCreate(&stream));
  stream_ = stream;
  {
    StreamScope scope(stream, nullptr);
    body();  // warm-up: lazy library setup and first allocations happen outside the capture
  }
  RETIKD_CUDA_CHECK(cudaStreamSynchronize(stream));
  cudaGraph_t graph = nullptr;
  {
    StreamScope scope(stream, &held_);
    RETIKD_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
    try {
      body();
    } catch (...) {
      cudaGraph_t broken = nullptr;
      cudaStreamEndCapture(stream, &broken);  // leave the stream usable
      if (broken) cudaGraphDestroy(broken);
      cudaGetLastError();
      throw;
    }
    RETIKD_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  }
  graph_ = graph;
  cudaGraphExec_t exec = nullptr;
#if CUDART_VERSION >= 12000
  RETIKD_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
#else
  RETIKD_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, nullptr, nullptr, 0));
#endif
  exec_ = exec;
}

void Graph::replay() {
  if (exec_ == nullptr) throw std::runtime_error("retikd::cuda::Graph::replay: nothing captured");
  detail::DeviceGuard guard(device_);
  RETIKD_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), static_cast<cudaStream_t>(stream_)));
  RETIKD_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)));
}

}  // namespace cuda
}  // namespace retikd
