// retikd/dist/process_group.hpp — the collectives data-parallel training needs (all-reduce, broadcast,
// barrier), behind one interface with three back ends: LocalGroup (one process, every call a no-op: the
// library without MPI), MpiGroup (dist/mpi.hpp, CPU tensors over MPI) and NcclGroup (dist/nccl.hpp, GPU
// tensors over NCCL).
//
// The contract every back end keeps:
//  - all_reduce sums in a fixed order — rank 0 + rank 1 + … + rank P−1, element by element — so the result
//    is the same on every rank and from run to run, whatever the library's own algorithm would have chosen
//    (the training tests compare replicas bit for bit);
//  - every wait has a deadline (timeout_seconds(), default 600 s or RETIKD_DIST_TIMEOUT): a rank that died or
//    stalled makes the others stop with a message naming the operation, instead of hanging. A collective that
//    cannot complete leaves MPI / NCCL in no state to continue, so the back ends end the whole job
//    (MPI_Abort, exit status kAbortExitCode) rather than throw;
//  - calls are made in the same order on every rank (as MPI requires of collectives); `what` names the call
//    in messages ("gradient bucket 3/7 (2.1 MiB)").
//
// dist::world() is the group of all processes of the job: a LocalGroup until dist::Session (dist/session.hpp)
// starts MPI. Host code asks world().size() > 1 to know whether it runs data-parallel.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "retikd/core/error.hpp"
#include "retikd/core/tensor.hpp"

namespace retikd {
namespace dist {

// Exit status of a job ended by a collective's timeout (distinct from 1, an ordinary error, and from 124,
// what timeout(1) reports).
constexpr int kAbortExitCode = 75;

// A collective in flight. test() advances it without blocking and says whether it completed; wait() blocks
// until it completes or the group's deadline passes (then the job ends with a message).
class Work {
 public:
  virtual ~Work() = default;
  virtual bool test() = 0;
  virtual void wait() = 0;
};

// Already complete (one process, or an empty tensor).
class DoneWork : public Work {
 public:
  bool test() override { return true; }
  void wait() override {}
};

// Seconds a collective may wait: RETIKD_DIST_TIMEOUT when set (> 0), else 600 — long enough for rank 0 to write
// a checkpoint or decode a large split while the others wait, short enough that a dead rank is noticed.
inline double default_timeout_seconds() {
  if (const char* env = std::getenv("RETIKD_DIST_TIMEOUT")) {
    char* end = nullptr;
    const double v = std::strtod(env, &end);
    if (end != env && v > 0) return v;
  }
  return 600.0;
}

class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;  // "local", "mpi", "nccl"

  // Sums the contiguous tensor `t` over all ranks in place (rank order, see above). float32 / float64 /
  // int64 on the group's device kind. The tensor must stay alive and untouched until the Work completes.
  virtual std::unique_ptr<Work> all_reduce_async(Tensor t, const std::string& what) = 0;
  // Overwrites `t` on every rank with root's `t` (same shape and dtype everywhere).
  virtual void broadcast(Tensor t, int root, const std::string& what) = 0;
  // root's bytes on every rank (the size travels first; other ranks' vectors are resized).
  virtual void broadcast_bytes(std::vector<uint8_t>& bytes, int root, const std::string& what) = 0;
  virtual void barrier(const std::string& what) = 0;
  // A new group over the same ranks with its own message space: collectives on it never match collectives on
  // this one, so independent users (gradient buckets, synchronised batch norm) cannot cross their orders.
  virtual std::shared_ptr<ProcessGroup> duplicate() = 0;

  void all_reduce(Tensor t, const std::string& what) { all_reduce_async(std::move(t), what)->wait(); }
  // Element-wise sums of host doubles (statistics, counts).
  std::vector<double> all_reduce(std::vector<double> values, const std::string& what) {
    if (size() == 1 || values.empty()) return values;
    Tensor t = Tensor::from_vector(values, {static_cast<int64_t>(values.size())});
    all_reduce(t, what);
    return t.to_vector<double>();
  }
  double all_reduce(double value, const std::string& what) {
    return all_reduce(std::vector<double>{value}, what)[0];
  }
  // Whether `ok` holds on every rank (so all ranks take the same branch after a local check).
  bool all_true(bool ok, const std::string& what) { return all_reduce(ok ? 0.0 : 1.0, what) == 0.0; }
  // root's string on every rank.
  std::string broadcast_string(const std::string& s, int root, const std::string& what) {
    std::vector<uint8_t> bytes(s.begin(), s.end());
    broadcast_bytes(bytes, root, what);
    return std::string(bytes.begin(), bytes.end());
  }

  double timeout_seconds() const { return timeout_; }
  void set_timeout_seconds(double s) {
    RETIKD_CHECK(s > 0, "ProcessGroup: timeout must be positive, got ", s);
    timeout_ = s;
  }

 protected:
  double timeout_ = default_timeout_seconds();
};

// The group of one process: collectives return at once and change nothing.
class LocalGroup : public ProcessGroup {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "local"; }
  std::unique_ptr<Work> all_reduce_async(Tensor t, const std::string&) override {
    RETIKD_CHECK(!t.defined() || t.is_contiguous(), "all_reduce: the tensor must be contiguous");
    return std::unique_ptr<Work>(new DoneWork());
  }
  void broadcast(Tensor, int root, const std::string&) override {
    RETIKD_CHECK(root == 0, "broadcast: root ", root, " outside a group of 1");
  }
  void broadcast_bytes(std::vector<uint8_t>&, int root, const std::string&) override {
    RETIKD_CHECK(root == 0, "broadcast: root ", root, " outside a group of 1");
  }
  void barrier(const std::string&) override {}
  std::shared_ptr<ProcessGroup> duplicate() override { return std::make_shared<LocalGroup>(); }
};

namespace detail {
inline std::shared_ptr<ProcessGroup>& world_slot() {
  static std::shared_ptr<ProcessGroup> world = std::make_shared<LocalGroup>();
  return world;
}
}  // namespace detail

// Every process of the job (a LocalGroup unless a Session started MPI).
inline ProcessGroup& world() { return *detail::world_slot(); }
inline std::shared_ptr<ProcessGroup> world_ptr() { return detail::world_slot(); }
// nullptr restores the one-process group.
inline void set_world(std::shared_ptr<ProcessGroup> group) {
  detail::world_slot() = group ? std::move(group) : std::make_shared<LocalGroup>();
}
inline bool is_lead() { return world().rank() == 0; }

// How many processes the launcher started, from the variables mpirun / mpiexec (Open MPI; MPICH and Intel MPI
// through PMI) and srun (the job step's task count, not the allocation's) set; 1 when none is set. Used to
// refuse a multi-process launch of a build without MPI (each rank would otherwise run the whole job and
// overwrite the others' files).
inline int launcher_world_size() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"}) {
    if (const char* v = std::getenv(name)) {
      const int n = std::atoi(v);
      if (n > 0) return n;
    }
  }
  return 1;
}

// "2.1 MiB" — sizes in messages.
inline std::string byte_text(double bytes) {
  char buf[48];
  if (bytes >= 1024.0 * 1024.0) std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1024.0 * 1024.0));
  else if (bytes >= 1024.0) std::snprintf(buf, sizeof buf, "%.1f KiB", bytes / 1024.0);
  else std::snprintf(buf, sizeof buf, "%.0f B", bytes);
  return buf;
}

}  // namespace dist
}  // namespace retikd
