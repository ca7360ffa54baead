// retikd/dist/session.hpp — starting and ending a data-parallel job: dist::Session starts MPI when the process
// was launched by mpirun / mpiexec / srun with more than one process (or when asked to: --distributed), makes
// dist::world() the MPI group of all ranks, and finalises MPI at the end.
//
//   int main(int argc, char** argv) {
//     ... parse options (no tensor work yet) ...
//     dist::Session session({force_distributed, timeout_seconds});
//     try { run(); } catch (const std::exception& e) { print; session.abort(1); return 1; }
//   }
//
// Without RETIKD_WITH_MPI (a build without the retikd::mpi component) a multi-process launch is refused with
// an error rather than run P independent copies of the job that overwrite each other's files.
//
// Threads: when RETIKD_NUM_THREADS is not set, each rank's CPU thread pool gets its share of the node's
// hardware threads (hardware threads / ranks on this node, at least 1), so P ranks on one machine do not
// oversubscribe it. The pool reads the variable when first used, so construct the Session before any op runs.
#pragma once

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "retikd/core/error.hpp"
#include "retikd/dist/process_group.hpp"
#ifdef RETIKD_WITH_MPI
#include "retikd/dist/mpi.hpp"
#endif

namespace retikd {
namespace dist {

struct SessionOptions {
  bool force = false;            // start MPI even for one process (--distributed)
  double timeout_seconds = 0;    // > 0: the collectives' deadline, else RETIKD_DIST_TIMEOUT or 600 s
  bool share_threads = true;     // set RETIKD_NUM_THREADS to this rank's share when it is not set
};

// Whether this build can run data-parallel over MPI.
constexpr bool built_with_mpi() {
#ifdef RETIKD_WITH_MPI
  return true;
#else
  return false;
#endif
}

class Session {
 public:
  explicit Session(SessionOptions o = {}) {
    const int launched = launcher_world_size();
#ifdef RETIKD_WITH_MPI
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!(o.force || launched > 1 || initialized)) return;
    if (!initialized) {
      int provided = 0;
      // All MPI calls come from the thread that runs training; loader workers never call MPI.
      detail::mpi_check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
      owns_mpi_ = true;
    }
    auto group = std::make_shared<MpiGroup>(MPI_COMM_WORLD, o.timeout_seconds > 0 ? o.timeout_seconds
                                                                                   : default_timeout_seconds());
    MPI_Comm node;
    detail::mpi_check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node),
                      "MPI_Comm_split_type");
    MPI_Comm_rank(node, &local_rank_);
    MPI_Comm_size(node, &local_size_);
    MPI_Comm_free(&node);
    if (o.share_threads && !std::getenv("RETIKD_NUM_THREADS")) {
      const unsigned hw = std::thread::hardware_concurrency();
      const int share = std::max(1, static_cast<int>(hw == 0 ? 1 : hw) / std::max(1, local_size_));
      ::setenv("RETIKD_NUM_THREADS", std::to_string(share).c_str(), 0);
    }
    mpi_ = group;
    set_world(group);
    active_ = true;
#else
    RETIKD_CHECK(!o.force && launched <= 1, "dist::Session: this build has no MPI, so it cannot run data-parallel (",
                 o.force ? "--distributed was given" : std::to_string(launched) + " processes were launched",
                 "); configure with -DRETIKD_MPI=ON (Debian: libopenmpi-dev) or run one process");
#endif
  }
  ~Session() {
    if (!active_) return;
    set_world(nullptr);
#ifdef RETIKD_WITH_MPI
    mpi_.reset();
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owns_mpi_ && !finalized) MPI_Finalize();
#endif
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  bool distributed() const { return active_; }
  int rank() const { return world().rank(); }
  int size() const { return world().size(); }
  // This rank's index among the ranks on its node, and their count (GPU selection: device = local_rank).
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
#ifdef RETIKD_WITH_MPI
  // The MPI group of all ranks (NcclGroup bootstraps from it); null when MPI was not started.
  std::shared_ptr<MpiGroup> mpi_group() const { return mpi_; }
#endif

  // Ends every rank of the job now with `code` (after this rank's error message was printed): the others
  // would otherwise wait in their next collective until the timeout. Returns (does nothing) in a job of one.
  void abort(int code) const {
    if (!active_ || world().size() == 1) return;
#ifdef RETIKD_WITH_MPI
    std::fflush(stdout);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
#endif
    (void)code;
  }

 private:
  bool active_ = false, owns_mpi_ = false;
  int local_rank_ = 0, local_size_ = 1;
#ifdef RETIKD_WITH_MPI
  std::shared_ptr<MpiGroup> mpi_;
#endif
};

}  // namespace dist
}  // namespace retikd
