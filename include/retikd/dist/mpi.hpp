// retikd/dist/mpi.hpp — MpiGroup: the ProcessGroup of dist/process_group.hpp over an MPI communicator, for
// tensors in host memory. Compiled only with RETIKD_WITH_MPI (the retikd::mpi CMake target: Debian's
// libopenmpi-dev, or any MPI-3 library); without it this header declares nothing.
//
// All-reduce in rank order without a home-made transport: MPI_Ialltoall hands rank r the r-th chunk of every
// rank's buffer, rank r adds the P chunks in rank order 0, 1, …, P−1, and MPI_Iallgather returns every summed
// chunk to every rank (MpiReduceQueue keeps the two phases of overlapping all-reduces in one order on all
// ranks). That moves 2·(P−1)/P of the buffer per rank — the same volume as a ring all-reduce —
// and the result does not depend on which algorithm the MPI library picks for MPI_Allreduce, so replicas stay
// bit-identical and runs repeat exactly.
//
// Every operation is non-blocking underneath and waited for against the group's deadline (MPI has no timeout
// of its own): a rank that died or stalls makes the others print which operation timed out and end the job
// with MPI_Abort. While a Work is pending, test() drives MPI's progress (Open MPI moves large shared-memory
// messages only inside MPI calls), which the gradient reducer calls as backward produces more gradients.
#pragma once

#ifdef RETIKD_WITH_MPI

// The C API only: the deprecated MPI-2 C++ bindings warn under -Wextra and are not used.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "retikd/core/error.hpp"
#include "retikd/core/tensor.hpp"
#include "retikd/dist/process_group.hpp"

namespace retikd {
namespace dist {

namespace detail {

inline void mpi_check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  fail("MPI: ", call, " failed: ", std::string(text, static_cast<std::size_t>(len)));
}

inline MPI_Datatype mpi_type(DType t, const std::string& what) {
  switch (t) {
    case DType::float32: return MPI_FLOAT;
    case DType::float64: return MPI_DOUBLE;
    case DType::int64: return MPI_INT64_T;
    case DType::int32: return MPI_INT32_T;
    default: fail(what, ": no MPI collective for ", dtype_name(t), " tensors (float32, float64, int64, int32)");
  }
}

// Prints why and ends every rank of the job (a collective that cannot complete leaves MPI unusable).
[[noreturn]] inline void abort_on_timeout(MPI_Comm comm, const std::string& what, double seconds) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  std::fflush(stdout);
  std::fprintf(stderr,
               "retikd dist: rank %d of %d: %s did not complete within %.0f s: another rank has died, stalled or "
               "taken another code path (RETIKD_DIST_TIMEOUT sets the limit); ending the job\n",
               rank, size, what.c_str(), seconds);
  std::fflush(stderr);
  MPI_Abort(comm, kAbortExitCode);
  std::_Exit(kAbortExitCode);
}

// Polls `done` (which must call into MPI, so progress happens) until it is true or `seconds` have passed.
// The first 2 ms it yields between polls: a large shared-memory message takes a few round trips, each of
// which needs both sides to poll, so a sleep there would be paid once per round trip; yield still hands the
// core to any other runnable process. Then it sleeps 50 µs, and after 100 ms 1 ms: a rank waiting for a much
// slower one (or for one that writes a checkpoint) must not take a core that rank could use.
template <class Done>
void wait_until(Done&& done, MPI_Comm comm, const std::string& what, double seconds) {
  const auto start = std::chrono::steady_clock::now();
  for (int polls = 0; !done(); ++polls) {
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (waited < 0.002) {
      std::this_thread::yield();
      continue;
    }
    if (waited > seconds) abort_on_timeout(comm, what, seconds);
    std::this_thread::sleep_for(std::chrono::microseconds(waited < 0.1 ? 50 : 1000));
  }
}

inline void check_host_tensor(const Tensor& t, const std::string& what) {
  RETIKD_CHECK(t.defined(), what, ": undefined tensor");
  RETIKD_CHECK(t.is_cpu(), what, ": MpiGroup reduces host tensors, got ", t.describe(),
               " (GPU tensors go through dist::NcclGroup)");
  RETIKD_CHECK(t.is_contiguous(), what, ": the tensor must be contiguous, got ", t.describe());
}

// acc[i] += x[i] for n elements of dtype t, in the tensor's own arithmetic.
inline void add_into(void* acc, const void* x, int64_t n, DType t) {
  switch (t) {
    case DType::float32: {
      float* a = static_cast<float*>(acc);
      const float* b = static_cast<const float*>(x);
      for (int64_t i = 0; i < n; ++i) a[i] += b[i];
      break;
    }
    case DType::float64: {
      double* a = static_cast<double*>(acc);
      const double* b = static_cast<const double*>(x);
      for (int64_t i = 0; i < n; ++i) a[i] += b[i];
      break;
    }
    case DType::int64: {
      int64_t* a = static_cast<int64_t*>(acc);
      const int64_t* b = static_cast<const int64_t*>(x);
      for (int64_t i = 0; i < n; ++i) a[i] += b[i];
      break;
    }
    case DType::int32: {
      int32_t* a = static_cast<int32_t*>(acc);
      const int32_t* b = static_cast<const int32_t*>(x);
      for (int64_t i = 0; i < n; ++i) a[i] += b[i];
      break;
    }
    default: fail("all_reduce: unsupported dtype ", dtype_name(t));
  }
}

}  // namespace detail

// The all-reduces of one group in flight. MPI requires every rank to start the collectives of a communicator
// in the same order, but an all-reduce here is two collectives (alltoall, then allgather once the alltoall has
// arrived) and arrival times differ between ranks. So the alltoalls go to one communicator, started in program
// order, and the allgathers to another, started strictly in the order of their all-reduces: advance() walks the
// queue front to back and never starts an allgather while an earlier all-reduce is still scattering.
class MpiReduceQueue {
 public:
  struct Reduce {
    Tensor t;
    std::string what;
    MPI_Datatype type = MPI_FLOAT;
    std::size_t es = 4;
    int64_t chunk = 0;
    bool padded = false;  // numel not a multiple of the ranks: staged through a zero-padded copy
    std::unique_ptr<char[]> staging, received, sum;
    MPI_Request request = MPI_REQUEST_NULL;
    enum Phase { scatter, gather, done } phase = scatter;
  };

  MpiReduceQueue(MPI_Comm scatter_comm, MPI_Comm gather_comm) : scatter_(scatter_comm), gather_(gather_comm) {
    MPI_Comm_size(scatter_, &size_);
  }

  // The tensor itself is the alltoall's send buffer and the allgather's receive buffer (no copies) unless its
  // size needs padding; its memory is not touched by the caller until the all-reduce is done.
  std::shared_ptr<Reduce> start(Tensor t, const std::string& what) {
    auto r = std::make_shared<Reduce>();
    r->t = std::move(t);
    r->what = what;
    r->type = detail::mpi_type(r->t.dtype(), what);
    r->es = r->t.element_size();
    const int64_t n = r->t.numel();
    r->chunk = (n + size_ - 1) / size_;
    RETIKD_CHECK(r->chunk <= INT_MAX, what, ": ", n, " elements exceed one MPI message per rank; split the tensor");
    const std::size_t bytes = static_cast<std::size_t>(r->chunk * size_) * r->es;
    r->padded = r->chunk * size_ != n;
    char* send = static_cast<char*>(r->t.raw_data());
    if (r->padded) {
      r->staging.reset(new char[bytes]);
      const std::size_t used = static_cast<std::size_t>(n) * r->es;
      std::memcpy(r->staging.get(), send, used);
      std::memset(r->staging.get() + used, 0, bytes - used);
      send = r->staging.get();
    }
    r->received.reset(new char[bytes]);
    detail::mpi_check(MPI_Ialltoall(send, static_cast<int>(r->chunk), r->type, r->received.get(),
                                    static_cast<int>(r->chunk), r->type, scatter_, &r->request),
                      "MPI_Ialltoall");
    pending_.push_back(r);
    return r;
  }

  // Moves every pending all-reduce as far as it can go without blocking (and lets MPI progress).
  void advance() {
    for (std::size_t i = 0; i < pending_.size(); ++i) {
      Reduce& r = *pending_[i];
      if (r.phase == Reduce::scatter) {
        if (!test(r.request)) break;  // later all-reduces must not start their allgather before this one
        // `received` holds this rank's chunk of ranks 0, 1, …, P−1 in that order: add them in that order.
        const std::size_t chunk_bytes = static_cast<std::size_t>(r.chunk) * r.es;
        r.sum.reset(new char[chunk_bytes]);
        std::memcpy(r.sum.get(), r.received.get(), chunk_bytes);
        for (int q = 1; q < size_; ++q)
          detail::add_into(r.sum.get(), r.received.get() + static_cast<std::size_t>(q) * chunk_bytes, r.chunk,
                           r.t.dtype());
        char* gathered = r.padded ? r.received.get() : static_cast<char*>(r.t.raw_data());
        detail::mpi_check(MPI_Iallgather(r.sum.get(), static_cast<int>(r.chunk), r.type, gathered,
                                         static_cast<int>(r.chunk), r.type, gather_, &r.request),
                          "MPI_Iallgather");
        r.phase = Reduce::gather;
      }
      if (r.phase == Reduce::gather && test(r.request)) {
        const int64_t n = r.t.numel();
        if (r.padded && n > 0) std::memcpy(r.t.raw_data(), r.received.get(), static_cast<std::size_t>(n) * r.es);
        r.staging.reset();
        r.received.reset();
        r.sum.reset();
        r.t = Tensor();
        r.phase = Reduce::done;
      }
    }
    while (!pending_.empty() && pending_.front()->phase == Reduce::done) pending_.pop_front();
  }

  bool empty() const { return pending_.empty(); }

 private:
  static bool test(MPI_Request& req) {
    int flag = 0;
    detail::mpi_check(MPI_Test(&req, &flag, MPI_STATUS_IGNORE), "MPI_Test");
    return flag != 0;
  }
  MPI_Comm scatter_, gather_;
  int size_ = 1;
  std::deque<std::shared_ptr<Reduce>> pending_;
};

// A handle on one queued all-reduce.
class MpiAllReduceWork : public Work {
 public:
  MpiAllReduceWork(std::shared_ptr<MpiReduceQueue> queue, std::shared_ptr<MpiReduceQueue::Reduce> reduce,
                   MPI_Comm comm, double timeout)
      : queue_(std::move(queue)), reduce_(std::move(reduce)), comm_(comm), timeout_(timeout) {}
  ~MpiAllReduceWork() override {
    if (reduce_->phase != MpiReduceQueue::Reduce::done) wait();  // MPI may still use the buffers
  }
  bool test() override {
    queue_->advance();
    return reduce_->phase == MpiReduceQueue::Reduce::done;
  }
  void wait() override {
    const std::string what = reduce_->what;
    detail::wait_until([&] { return test(); }, comm_, what, timeout_);
  }

 private:
  std::shared_ptr<MpiReduceQueue> queue_;
  std::shared_ptr<MpiReduceQueue::Reduce> reduce_;
  MPI_Comm comm_;
  double timeout_;
};

class MpiGroup : public ProcessGroup {
 public:
  // Works on duplicates of `comm` (freed with the group), so its messages never meet the caller's.
  explicit MpiGroup(MPI_Comm comm = MPI_COMM_WORLD, double timeout_seconds = default_timeout_seconds()) {
    detail::mpi_check(MPI_Comm_dup(comm, &comm_), "MPI_Comm_dup");
    detail::mpi_check(MPI_Comm_dup(comm, &gather_comm_), "MPI_Comm_dup");
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    set_timeout_seconds(timeout_seconds);
    queue_ = std::make_shared<MpiReduceQueue>(comm_, gather_comm_);
  }
  ~MpiGroup() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
    if (gather_comm_ != MPI_COMM_NULL) MPI_Comm_free(&gather_comm_);
  }
  MpiGroup(const MpiGroup&) = delete;
  MpiGroup& operator=(const MpiGroup&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }
  MPI_Comm comm() const { return comm_; }

  std::unique_ptr<Work> all_reduce_async(Tensor t, const std::string& what) override {
    detail::check_host_tensor(t, what);
    if (size_ == 1 || t.numel() == 0) return std::unique_ptr<Work>(new DoneWork());
    auto reduce = queue_->start(std::move(t), what);
    return std::unique_ptr<Work>(new MpiAllReduceWork(queue_, std::move(reduce), comm_, timeout_));
  }

  void broadcast(Tensor t, int root, const std::string& what) override {
    detail::check_host_tensor(t, what);
    check_root(root, what);
    if (size_ == 1) return;
    const MPI_Datatype type = detail::mpi_type(t.dtype(), what);
    char* p = static_cast<char*>(t.raw_data());
    const std::size_t es = t.element_size();
    for (int64_t at = 0, n = t.numel(); at < n;) {
      const int count = static_cast<int>(std::min<int64_t>(n - at, INT_MAX / 2));
      MPI_Request req;
      detail::mpi_check(MPI_Ibcast(p + static_cast<std::size_t>(at) * es, count, type, root, comm_, &req),
                        "MPI_Ibcast");
      wait_request(req, what);
      at += count;
    }
  }

  void broadcast_bytes(std::vector<uint8_t>& bytes, int root, const std::string& what) override {
    check_root(root, what);
    if (size_ == 1) return;
    uint64_t n = bytes.size();
    MPI_Request req;
    detail::mpi_check(MPI_Ibcast(&n, 1, MPI_UINT64_T, root, comm_, &req), "MPI_Ibcast");
    wait_request(req, what + " (size)");
    if (rank_ != root) bytes.assign(static_cast<std::size_t>(n), 0);
    for (uint64_t at = 0; at < n;) {
      const int count = static_cast<int>(std::min<uint64_t>(n - at, 1u << 30));
      detail::mpi_check(MPI_Ibcast(bytes.data() + at, count, MPI_BYTE, root, comm_, &req), "MPI_Ibcast");
      wait_request(req, what);
      at += static_cast<uint64_t>(count);
    }
  }

  void barrier(const std::string& what) override {
    if (size_ == 1) return;
    MPI_Request req;
    detail::mpi_check(MPI_Ibarrier(comm_, &req), "MPI_Ibarrier");
    wait_request(req, what);
  }

  std::shared_ptr<ProcessGroup> duplicate() override { return std::make_shared<MpiGroup>(comm_, timeout_); }

 private:
  void check_root(int root, const std::string& what) const {
    RETIKD_CHECK(root >= 0 && root < size_, what, ": root ", root, " outside a group of ", size_);
  }
  // Also advances the group's all-reduces in flight: another rank may need one of them to get here.
  void wait_request(MPI_Request& req, const std::string& what) {
    detail::wait_until(
        [&] {
          queue_->advance();
          int flag = 0;
          detail::mpi_check(MPI_Test(&req, &flag, MPI_STATUS_IGNORE), "MPI_Test");
          return flag != 0;
        },
        comm_, what, timeout_);
  }

  MPI_Comm comm_ = MPI_COMM_NULL, gather_comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  std::shared_ptr<MpiReduceQueue> queue_;
};

}  // namespace dist
}  // namespace retikd

#endif  // RETIKD_WITH_MPI
