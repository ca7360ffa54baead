// retikd/dist/nccl.hpp — NcclGroup: the ProcessGroup of dist/process_group.hpp for tensors on a GPU, over NCCL.
// Compiled only with RETIKD_WITH_NCCL (the retikd::nccl CMake target: CUDA, MPI and libnccl, which CUDA 13
// ships in the toolkit); without it this header declares nothing.
//
// Status: compiled with CUDA 13 / NCCL 2.28 here; not yet run — this project's CI has no GPU, and the machines
// with one are single-GPU. The CPU path (MpiGroup) runs the same reducer in CI. docs/distributed.md says what
// the first multi-GPU run must check.
//
// - Bootstrap: rank 0 creates the NCCL unique id and MpiGroup::broadcast_bytes sends it; every rank then joins
//   with ncclCommInitRankConfig on its own device (one GPU per rank: Session::local_rank()).
// - Non-blocking communicator (config.blocking = 0) and a private stream: every wait polls the CUDA event that
//   ends the operation and ncclCommGetAsyncError against the group's deadline; at the deadline the
//   communicator is aborted (ncclCommAbort) and the job ended through MPI_Abort with the operation named.
// - Overlap: an all-reduce waits (cudaStreamWaitEvent) for the work queued on the legacy default stream, which
//   every retikd launcher uses, and then runs on the private stream while backward keeps queuing kernels.
// - Order: ReduceOrder::rank_order (default) sums in rank order like MpiGroup — chunks exchanged with grouped
//   ncclSend / ncclRecv, added by cuda::sum_parts_in_order, returned with ncclAllGather — so results do not
//   depend on NCCL's algorithm choice and match the CPU path; ReduceOrder::nccl uses ncclAllReduce (NCCL's
//   ring / tree: the same result on every rank and from run to run for a fixed NCCL version, topology and
//   NCCL_ALGO / NCCL_PROTO, but not the rank-order sum). Both move 2·(P−1)/P of the buffer per rank.
#pragma once

#ifdef RETIKD_WITH_NCCL

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "retikd/core/error.hpp"
#include "retikd/core/tensor.hpp"
#include "retikd/cuda/collective.hpp"
#include "retikd/dist/mpi.hpp"
#include "retikd/dist/process_group.hpp"

namespace retikd {
namespace dist {

enum class ReduceOrder {
  rank_order,  // Σ in rank order, as MpiGroup (default)
  nccl,        // ncclAllReduce
};

namespace detail {

inline void cuda_check(cudaError_t rc, const char* call) {
  if (rc != cudaSuccess) fail("CUDA: ", call, " failed: ", cudaGetErrorString(rc));
}

inline ncclDataType_t nccl_type(DType t, const std::string& what) {
  switch (t) {
    case DType::float32: return ncclFloat32;
    case DType::float64: return ncclFloat64;
    case DType::int64: return ncclInt64;
    case DType::float16: return ncclFloat16;
    default: fail(what, ": no NCCL collective for ", dtype_name(t), " tensors (float32, float64, int64, float16)");
  }
}

}  // namespace detail

class NcclGroup;

// One NCCL operation queued on the group's stream; complete when its end event has fired.
class NcclWork : public Work {
 public:
  NcclWork(NcclGroup& group, cudaEvent_t done, std::vector<Tensor> keep, std::string what)
      : group_(&group), done_(done), keep_(std::move(keep)), what_(std::move(what)) {}
  ~NcclWork() override;
  bool test() override;
  void wait() override;

 private:
  NcclGroup* group_;
  cudaEvent_t done_;
  std::vector<Tensor> keep_;  // buffers the queued operations use: released only after completion
  std::string what_;
  bool complete_ = false;
};

class NcclGroup : public ProcessGroup {
 public:
  struct Options {
    ReduceOrder order = ReduceOrder::rank_order;
    double timeout_seconds = 0;  // > 0: overrides the bootstrap group's
  };

  // Collective over `bootstrap`'s ranks: every rank passes its own GPU (device index).
  NcclGroup(std::shared_ptr<MpiGroup> bootstrap, int device) : NcclGroup(std::move(bootstrap), device, Options()) {}
  NcclGroup(std::shared_ptr<MpiGroup> bootstrap, int device, Options o)
      : bootstrap_(std::move(bootstrap)), device_(device), order_(o.order) {
    RETIKD_CHECK(bootstrap_ != nullptr, "NcclGroup: null bootstrap group");
    set_timeout_seconds(o.timeout_seconds > 0 ? o.timeout_seconds : bootstrap_->timeout_seconds());
    rank_ = bootstrap_->rank();
    size_ = bootstrap_->size();
    DeviceScope scope(device_);
    std::vector<uint8_t> id(sizeof(ncclUniqueId), 0);
    if (rank_ == 0) {
      ncclUniqueId uid;
      check(ncclGetUniqueId(&uid), "ncclGetUniqueId");
      std::memcpy(id.data(), &uid, sizeof uid);
    }
    bootstrap_->broadcast_bytes(id, 0, "NCCL unique id");
    ncclUniqueId uid;
    std::memcpy(&uid, id.data(), sizeof uid);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    check(ncclCommInitRankConfig(&comm_, size_, uid, rank_, &config), "ncclCommInitRankConfig", "NCCL init");
    detail::cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    detail::cuda_check(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  }
  ~NcclGroup() override {
    DeviceScope scope(device_, /*nothrow=*/true);
    if (comm_) {
      if (aborted_) ncclCommAbort(comm_);
      else ncclCommDestroy(comm_);
    }
    if (ready_) cudaEventDestroy(ready_);
    if (stream_) cudaStreamDestroy(stream_);
  }
  NcclGroup(const NcclGroup&) = delete;
  NcclGroup& operator=(const NcclGroup&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "nccl"; }
  int device() const { return device_; }

  std::unique_ptr<Work> all_reduce_async(Tensor t, const std::string& what) override {
    check_tensor(t, what);
    // A group of one still runs the whole path (a one-GPU check of NCCL, the sum kernel and the waits).
    if (t.numel() == 0) return std::unique_ptr<Work>(new DoneWork());
    DeviceScope scope(device_);
    after_default_stream();
    const ncclDataType_t type = detail::nccl_type(t.dtype(), what);
    const int64_t n = t.numel();
    std::vector<Tensor> keep{t};
    if (order_ == ReduceOrder::nccl) {
      check(ncclAllReduce(t.raw_data(), t.raw_data(), static_cast<size_t>(n), type, ncclSum, comm_, stream_),
            "ncclAllReduce", what);
    } else {
      const int64_t chunk = (n + size_ - 1) / size_;
      const std::size_t es = t.element_size(), chunk_bytes = static_cast<std::size_t>(chunk) * es;
      Tensor send = Tensor::empty({chunk * size_}, t.dtype(), t.device());
      Tensor recv = Tensor::empty({chunk * size_}, t.dtype(), t.device());
      Tensor sum = Tensor::empty({chunk}, t.dtype(), t.device());
      char* ps = static_cast<char*>(send.raw_data());
      char* pr = static_cast<char*>(recv.raw_data());
      detail::cuda_check(cudaMemcpyAsync(ps, t.raw_data(), static_cast<std::size_t>(n) * es, cudaMemcpyDeviceToDevice,
                                         stream_), "cudaMemcpyAsync");
      if (chunk * size_ > n)
        detail::cuda_check(cudaMemsetAsync(ps + static_cast<std::size_t>(n) * es, 0,
                                           static_cast<std::size_t>(chunk * size_ - n) * es, stream_),
                           "cudaMemsetAsync");
      // Rank r receives chunk r of every rank, in rank order.
      check(ncclGroupStart(), "ncclGroupStart", what);
      for (int p = 0; p < size_; ++p) {
        const std::size_t at = static_cast<std::size_t>(p) * chunk_bytes;
        check(ncclSend(ps + at, static_cast<size_t>(chunk), type, p, comm_, stream_), "ncclSend", what);
        check(ncclRecv(pr + at, static_cast<size_t>(chunk), type, p, comm_, stream_), "ncclRecv", what);
      }
      check(ncclGroupEnd(), "ncclGroupEnd", what);
      cuda::sum_parts_in_order(pr, sum.raw_data(), chunk, size_, static_cast<int>(t.dtype()), device_, stream_);
      check(ncclAllGather(sum.raw_data(), ps, static_cast<size_t>(chunk), type, comm_, stream_), "ncclAllGather", what);
      detail::cuda_check(cudaMemcpyAsync(t.raw_data(), ps, static_cast<std::size_t>(n) * es, cudaMemcpyDeviceToDevice,
                                         stream_), "cudaMemcpyAsync");
      keep.push_back(send);
      keep.push_back(recv);
      keep.push_back(sum);
    }
    return finish(std::move(keep), what);
  }

  void broadcast(Tensor t, int root, const std::string& what) override {
    check_tensor(t, what);
    RETIKD_CHECK(root >= 0 && root < size_, what, ": root ", root, " outside a group of ", size_);
    if (t.numel() == 0) return;
    DeviceScope scope(device_);
    after_default_stream();
    check(ncclBroadcast(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()), detail::nccl_type(t.dtype(), what),
                        root, comm_, stream_),
          "ncclBroadcast", what);
    finish({t}, what)->wait();
  }

  void broadcast_bytes(std::vector<uint8_t>& bytes, int root, const std::string& what) override {
    bootstrap_->broadcast_bytes(bytes, root, what);
  }

  void barrier(const std::string& what) override {
    if (size_ == 1) return;
    Tensor one = Tensor::ones({1}, DType::float32, Device::cuda(device_));
    all_reduce(one, what);
  }

  std::shared_ptr<ProcessGroup> duplicate() override {
    Options o;
    o.order = order_;
    o.timeout_seconds = timeout_;
    return std::make_shared<NcclGroup>(bootstrap_, device_, o);
  }

  // ---- used by NcclWork ------------------------------------------------------------------------------------
  // ncclSuccess, or the communicator's asynchronous error (a peer failed, the network broke).
  ncclResult_t async_error() {
    ncclResult_t state = ncclSuccess;
    ncclCommGetAsyncError(comm_, &state);
    return state;
  }
  [[noreturn]] void abort_on_timeout(const std::string& what) {
    aborted_ = true;
    ncclCommAbort(comm_);
    comm_ = nullptr;
    detail::abort_on_timeout(bootstrap_->comm(), what, timeout_);
  }

 private:
  // Makes `device` current for a scope (NCCL and the CUDA runtime calls act on the current device).
  class DeviceScope {
   public:
    explicit DeviceScope(int device, bool nothrow = false) {
      if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
      const cudaError_t rc = cudaSetDevice(device);
      if (rc != cudaSuccess && !nothrow) detail::cuda_check(rc, "cudaSetDevice");
    }
    ~DeviceScope() {
      if (previous_ >= 0) cudaSetDevice(previous_);
    }

   private:
    int previous_ = -1;
  };

  void check_tensor(const Tensor& t, const std::string& what) const {
    RETIKD_CHECK(t.defined() && t.is_cuda() && t.device().index == device_, what, ": NcclGroup works on tensors of",
                 " GPU ", device_, ", got ", t.defined() ? t.describe() : std::string("an undefined tensor"),
                 " (host tensors go through dist::MpiGroup)");
    RETIKD_CHECK(t.is_contiguous(), what, ": the tensor must be contiguous, got ", t.describe());
  }

  // A call on the non-blocking communicator: ncclInProgress means "poll until it is done".
  void check(ncclResult_t rc, const char* call, const std::string& what = "") {
    if (rc == ncclInProgress) {
      const auto start = std::chrono::steady_clock::now();
      do {
        rc = async_error();
        if (rc != ncclInProgress) break;
        if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > timeout_)
          abort_on_timeout((what.empty() ? std::string(call) : what) + " (" + call + ")");
        std::this_thread::yield();
      } while (true);
    }
    if (rc != ncclSuccess)
      fail("NCCL: ", call, what.empty() ? "" : " (" + what + ")", " failed: ", ncclGetErrorString(rc),
           comm_ ? std::string(" — ") + ncclGetLastError(comm_) : std::string());
  }

  // The private stream waits for everything queued so far on the legacy default stream.
  void after_default_stream() {
    detail::cuda_check(cudaEventRecord(ready_, cudaStreamLegacy), "cudaEventRecord");
    detail::cuda_check(cudaStreamWaitEvent(stream_, ready_, 0), "cudaStreamWaitEvent");
  }

  std::unique_ptr<Work> finish(std::vector<Tensor> keep, const std::string& what) {
    cudaEvent_t done = nullptr;
    detail::cuda_check(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    detail::cuda_check(cudaEventRecord(done, stream_), "cudaEventRecord");
    return std::unique_ptr<Work>(new NcclWork(*this, done, std::move(keep), what));
  }

  std::shared_ptr<MpiGroup> bootstrap_;
  int device_ = 0;
  ReduceOrder order_ = ReduceOrder::rank_order;
  int rank_ = 0, size_ = 1;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr;
  bool aborted_ = false;
};

inline NcclWork::~NcclWork() {
  if (!complete_) wait();  // the queued operations still use the kept buffers
  cudaEventDestroy(done_);
}

inline bool NcclWork::test() {
  if (complete_) return true;
  const cudaError_t rc = cudaEventQuery(done_);
  if (rc == cudaSuccess) {
    complete_ = true;
    keep_.clear();
    return true;
  }
  if (rc != cudaErrorNotReady) detail::cuda_check(rc, "cudaEventQuery");
  const ncclResult_t e = group_->async_error();
  if (e != ncclSuccess && e != ncclInProgress)
    fail("NCCL: ", what_, " failed: ", ncclGetErrorString(e), " (a peer or the network failed)");
  return false;
}

inline void NcclWork::wait() {
  const auto start = std::chrono::steady_clock::now();
  while (!test()) {
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (waited > group_->timeout_seconds()) group_->abort_on_timeout(what_);
    if (waited < 0.002) std::this_thread::yield();  // as MpiGroup's waits (dist/mpi.hpp): poll, then sleep
    else std::this_thread::sleep_for(std::chrono::microseconds(waited < 0.1 ? 20 : 500));
  }
}

}  // namespace dist
}  // namespace retikd

#endif  // RETIKD_WITH_NCCL
