// kernels/optim.cu — fused AdamW / SGD updates over all parameters in one launch (include/retikd/cuda/optim.hpp).
// The launcher packs the tensor table and a chunk table {tensor, first element} into one device buffer (one
// host-to-device copy); block b updates chunk b with retikd/cuda/op_programs.hpp's per-element formula, which
// the CPU test runs against optim/optim.hpp.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "cuda_check.cuh"
#include "launch.cuh"
#include "retikd/cuda/optim.hpp"
#include "retikd/cuda/runtime.hpp"

namespace retikd {
namespace cuda {
namespace {

constexpr int kThreads = 256;

struct Chunk {
  int tensor;
  int64_t start;
};

__global__ void __launch_bounds__(kThreads) adamw_kernel(const AdamWTensor* tensors, const Chunk* chunks) {
  const Chunk c = chunks[blockIdx.x];
  const AdamWTensor t = tensors[c.tensor];
  const int64_t end = c.start + kOptimChunk < t.n ? c.start + kOptimChunk : t.n;
  for (int64_t k = c.start + threadIdx.x; k < end; k += kThreads) prog::adamw_element(t.s, t.p, t.g, t.m, t.v, k);
}

__global__ void __launch_bounds__(kThreads) sgd_kernel(const SGDTensor* tensors, const Chunk* chunks) {
  const Chunk c = chunks[blockIdx.x];
  const SGDTensor t = tensors[c.tensor];
  const int64_t end = c.start + kOptimChunk < t.n ? c.start + kOptimChunk : t.n;
  for (int64_t k = c.start + threadIdx.x; k < end; k += kThreads) prog::sgd_element(t.s, t.p, t.g, t.b, k);
}

// Uploads [tensors | chunks] and launches kernel<<<chunks, 256, 0, detail::current_stream()>>>(tensors, chunks).
template <class T, class Kernel>
void launch_multi(const T* tensors, int count, int device, Kernel kernel) {
  if (count < 0) throw std::invalid_argument("retikd::cuda optimizer update: negative tensor count");
  std::vector<Chunk> chunks;
  for (int i = 0; i < count; ++i) {
    if (tensors[i].n < 0) throw std::invalid_argument("retikd::cuda optimizer update: negative size");
    for (int64_t s = 0; s < tensors[i].n; s += kOptimChunk) chunks.push_back(Chunk{i, s});
  }
  if (chunks.empty()) return;
  if (chunks.size() > 2147483647u) throw std::invalid_argument("retikd::cuda optimizer update: too many chunks");
  detail::DeviceGuard guard(device);
  const std::size_t tensor_bytes = (sizeof(T) * static_cast<std::size_t>(count) + 15) / 16 * 16;
  const std::size_t bytes = tensor_bytes + sizeof(Chunk) * chunks.size();
  std::vector<unsigned char> host(bytes);
  std::memcpy(host.data(), tensors, sizeof(T) * static_cast<std::size_t>(count));
  std::memcpy(host.data() + tensor_bytes, chunks.data(), sizeof(Chunk) * chunks.size());
  void* table = device_malloc(bytes, device);
  try {
    copy_host_to_device(table, host.data(), bytes, device);
    kernel<<<static_cast<unsigned>(chunks.size()), kThreads, 0, detail::current_stream()>>>(
        static_cast<const T*>(table), reinterpret_cast<const Chunk*>(static_cast<unsigned char*>(table) + tensor_bytes));
    RETIKD_CUDA_CHECK_LAUNCH();
  } catch (...) {
    device_free(table, device);
    throw;
  }
  device_free(table, device);  // the default stream orders any reuse after the kernel
}

}  // namespace

void adamw_multi(const AdamWTensor* tensors, int count, int device) { launch_multi(tensors, count, device, adamw_kernel); }
void sgd_multi(const SGDTensor* tensors, int count, int device) { launch_multi(tensors, count, device, sgd_kernel); }

}  // namespace cuda
}  // namespace retikd
