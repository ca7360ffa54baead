// kernels/capture.cuh — what a CUDA-graph capture (kernels/graph.cu) needs from the allocator
// (kernels/runtime.cu): while a capture runs on this thread, device_free does not return blocks to the free
// lists but parks them here, because the graph bakes in their addresses; the graph releases them when it is
// destroyed. Private to kernels/.
#pragma once

#include <utility>
#include <vector>

namespace retikd {
namespace cuda {
namespace detail {

using DeferredFrees = std::vector<std::pair<void*, int>>;  // (block, device)

// Non-null while this thread captures a graph.
inline DeferredFrees*& deferred_frees_slot() {
  static thread_local DeferredFrees* list = nullptr;
  return list;
}

}  // namespace detail
}  // namespace cuda
}  // namespace retikd
