// bench/bench_dist.cpp — data-parallel throughput: one training step per iteration on every rank, gradients
// averaged by dist::GradientReducer, timed on rank 0 (the ranks move in lockstep: every step ends in the same
// all-reduces). Run it alone for one process, or under mpirun for P (scripts/dist_bench.sh interleaves
// 1 rank × 1 thread with 2 ranks × 1 thread, the measurement of docs/distributed.md):
//
//   RETIKD_NUM_THREADS=1 mpirun --allow-run-as-root -np 2 -x RETIKD_NUM_THREADS
//       build/release/bench/retikd_bench_dist --step student --batch 8 --steps 6
//
//   --step student   MobileNetV2 (4 classes) at --img px (224): forward, cross-entropy, backward, AdamW
//   --step kd        one kd::CrossArchitectureDistiller step of --preset quick as kd::distill_preset defines it
//                    now (ViT-Tiny/16 teacher and MobileNetV2 student at 160 px, 1 + 2 views, logit KD; until
//                    the quick preset moved to logit KD, which docs/distributed.md's figures predate: 128 px with
//                    PCA + GL projectors and a discriminator), teacher cache warm (the steady state after the
//                    first epoch), random init; --preset h100: the configuration of
//                    the H100 KD step in docs/results.md (ViT-B/16 → MobileNetV2 at 224 px, one view)
//   --steps 0        no timing: print the gradient bytes only (for configurations too large for this CPU)
//   --step allreduce all-reduce time, algbw and busbw from 4 KiB to 64 MiB (--iters 20)
//   --backend nccl   GPU tensors over dist::NcclGroup, one GPU per rank (Session::local_rank); with one rank
//                    the whole NCCL path still runs — the first check on a machine with a GPU:
//                      mpirun -np 1 retikd_bench_dist --backend nccl --step allreduce
//                      mpirun -np 1 retikd_bench_dist --backend nccl --step student --batch 32
//   --batch B        images per rank per step (the global batch is P·B)
//   --steps N        timed steps after --warmup W (default 6 and 2); the median step is reported
//   --bucket-kib K   gradient bucket size (default the reducer's 4096 KiB)
//
// Output, one line: ranks, threads per rank, step median / min (ms), images/s = P·B / median, rank 0's process
// CPU time per step (all its threads; a rank waiting for another sleeps, so waits do not count) and images per
// CPU-second — the steadier figure on a loaded machine, where other processes take the cores — the gradient
// bytes and buckets, and the bucket schedule of the last step — when each bucket's all-reduce started as a
// fraction of the backward walk, the walk's length and the wait after it (the exposed communication) — which
// docs/distributed.md feeds into its scaling model.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "retikd/core/cli_args.hpp"
#include "retikd/core/parallel.hpp"
#include "retikd/core/random.hpp"
#include "retikd/dist/data_parallel.hpp"
#include "retikd/dist/nccl.hpp"
#include "retikd/dist/session.hpp"
#ifdef RETIKD_WITH_CUDA
#include "retikd/cuda/runtime.hpp"
#endif
#include "retikd/kd/distiller.hpp"
#include "retikd/nn/models.hpp"
#include "retikd/ops/loss.hpp"
#include "retikd/optim/optim.hpp"

using namespace retikd;

namespace {

using Clock = std::chrono::steady_clock;

Tensor labels_for(int64_t n, int rank) {
  std::vector<int64_t> y(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) y[static_cast<std::size_t>(i)] = (i + rank) % 4;
  return Tensor::from_vector(y, {n});
}

}  // namespace

// All-reduce time and bandwidth over message sizes on `group` (host tensors for MPI, this rank's GPU for NCCL),
// nccl-tests' conventions: algbw = bytes / time, busbw = algbw · 2(P − 1)/P. Checks the sums once per size.
int run_allreduce(dist::ProcessGroup& group, Device device, int iters) {
  const int P = group.size(), rank = group.rank();
  if (rank == 0)
    std::printf("bench_dist: all_reduce on %s, %d rank(s), rank-order sum; %d iterations per size\n"
                "%12s %12s %12s %12s\n",
                group.backend().c_str(), P, iters, "bytes", "time (us)", "algbw GB/s", "busbw GB/s");
  for (int64_t bytes = 4 << 10; bytes <= (64 << 20); bytes *= 4) {
    const int64_t n = bytes / 4;
    Tensor check = Tensor::full({n}, rank + 1.0, DType::float32, device);
    group.all_reduce(check, "bandwidth check");
    const std::vector<float> got = check.narrow(0, n - 1, 1).to(Device::cpu()).to_vector<float>();
    const float want = static_cast<float>(P * (P + 1) / 2);
    if (got[0] != want) {
      std::fprintf(stderr, "bench_dist: all_reduce of %lld bytes gave %g, expected %g\n", static_cast<long long>(bytes),
                   got[0], want);
      return 1;
    }
    Tensor t = Tensor::zeros({n}, DType::float32, device);
    for (int i = 0; i < 3; ++i) group.all_reduce(t, "warm-up");
    group.barrier("bandwidth start");
    const auto t0 = Clock::now();
    for (int i = 0; i < iters; ++i) group.all_reduce(t, "bandwidth");
    const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / iters;
    const double algbw = static_cast<double>(bytes) / (us * 1e3);
    if (rank == 0)
      std::printf("%12lld %12.1f %12.2f %12.2f\n", static_cast<long long>(bytes), us, algbw,
                  algbw * 2.0 * (P - 1) / std::max(1, P));
  }
  return 0;
}

int main(int argc, char** argv) {
  // The whole command line first, before MPI starts: an unknown option or a malformed or out-of-range value
  // stops every rank alike, naming the option, with exit status 2 (core/cli_args.hpp).
  int iters = 20, steps = 6, warmup = 2;
  int64_t batch = 8, bucket_kib = 4096, img = 224;
  std::string backend = "mpi", step_kind = "student", preset = "quick";
  try {
    cli::ArgReader args(argc, argv);
    while (args.next()) {
      if (args.is("--iters")) iters = static_cast<int>(args.integer(1, 1000000));
      else if (args.is("--batch")) batch = args.integer(1, 4096);
      else if (args.is("--steps")) steps = static_cast<int>(args.integer(0, 1000000));
      else if (args.is("--warmup")) warmup = static_cast<int>(args.integer(0, 1000000));
      else if (args.is("--bucket-kib")) bucket_kib = args.integer(1, int64_t(1) << 22);  // up to 4 GiB
      else if (args.is("--img")) img = args.integer(32, 4096);
      else if (args.is("--backend")) backend = args.value();
      else if (args.is("--step")) step_kind = args.value();
      else if (args.is("--preset")) preset = args.value();
      else throw cli::ArgumentError("unknown option " + args.arg());
    }
    if (backend != "mpi" && backend != "nccl")
      throw cli::ArgumentError("--backend: expected mpi or nccl, got '" + backend + "'");
    if (step_kind != "student" && step_kind != "kd" && step_kind != "allreduce")
      throw cli::ArgumentError("--step: expected student, kd or allreduce, got '" + step_kind + "'");
  } catch (const cli::ArgumentError& e) {
    std::fprintf(stderr, "bench_dist: %s\n", e.what());
    return 2;
  }
  dist::Session session(dist::SessionOptions{backend == "nccl"});  // MPI under mpirun / srun (NCCL bootstraps on it)
  std::shared_ptr<dist::ProcessGroup> group = dist::world_ptr();
  Device device = Device::cpu();
  if (backend == "nccl") {
#ifdef RETIKD_WITH_NCCL
    try {
      device = Device::cuda(session.local_rank());
      group = std::make_shared<dist::NcclGroup>(session.mpi_group(), session.local_rank());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench_dist: cannot start NCCL on GPU %d: %s\n", session.local_rank(), e.what());
      session.abort(1);
      return 1;
    }
#else
    std::fprintf(stderr, "bench_dist: --backend nccl needs a build with the retikd::nccl component\n");
    return 2;
#endif
  }
  dist::ProcessGroup& world = *group;
  const int P = world.size(), rank = world.rank();
  if (step_kind == "allreduce")
    return run_allreduce(world, device, iters);
  dist::GradientReducer::Options ro;
  ro.bucket_bytes = static_cast<std::size_t>(bucket_kib) << 10;
  ro.even_alone = backend == "nccl";  // one GPU: still run the NCCL path (the first GPU check)
  try {
    Generator data_gen(100 + static_cast<uint64_t>(rank));  // each rank its own images
    std::function<void()> step;
    std::unique_ptr<dist::GradientReducer> ddp, ddp_disc;
    std::shared_ptr<nn::Model> student;
    std::unique_ptr<optim::AdamW> opt;
    std::unique_ptr<kd::CrossArchitectureDistiller> distiller;
    Tensor x, y;
    std::vector<int64_t> ids;
    std::string what;
    if (step_kind == "student") {
      Generator gen(7);
      nn::ModelOptions o;
      o.num_classes = 4;
      student = nn::create_model("mobilenet_v2", o, gen);
      student->train();
      student->to(device);
      opt.reset(new optim::AdamW(student->parameters(), optim::AdamWOptions{}));
      ddp.reset(new dist::GradientReducer(world, student->parameters(), ro));
      x = randn({batch, 3, img, img}, data_gen).to(device);
      y = labels_for(batch, rank).to(device);
      step = [&] {
        opt->zero_grad();
        Var loss = ops::cross_entropy(student->forward(Var(x)), y);
        loss.backward();
        opt->step();
#ifdef RETIKD_WITH_CUDA
        if (device.is_cuda()) cuda::synchronize(device.index);  // the step's kernels are asynchronous
#endif
      };
      what = "MobileNetV2 training step, " + std::to_string(img) + " px, " + device.to_string() + ", " +
             world.backend();
    } else {  // "kd": --step was checked against student | kd | allreduce when it was read
      kd::DistillConfig cfg;
      if (preset == "h100") {  // the KD step timed on an H100 (scripts/gpu_bench_kd.cpp, docs/results.md)
        cfg = kd::distill_preset("paper");
        cfg.views.augmented_views = 0;
        cfg.pca.heads = 12;
        cfg.pca.head_dim = 64;
        cfg.pca.projection = kd::QkvProjection::linear;
        cfg.pca.align = kd::GridAlign::upsample_student;
        cfg.gl.align = kd::GridAlign::upsample_student;
      } else {
        cfg = kd::distill_preset(preset);
      }
      Generator tgen(1), sgen(2), hgen(3);
      auto teacher = kd::make_teacher(cfg, tgen);
      student = kd::make_student(cfg, sgen);
      distiller.reset(new kd::CrossArchitectureDistiller(teacher, student, cfg, hgen));
      ddp.reset(new dist::GradientReducer(world, distiller->student_parameters(), ro));
      if (distiller->discriminator())
        ddp_disc.reset(new dist::GradientReducer(world, distiller->discriminator()->trainable_parameters(), ro));
      if (P > 1) distiller->set_agreement([&world](bool ok) { return world.all_true(ok, "KD step"); });
      x = randn({batch, 3, cfg.img_size, cfg.img_size}, data_gen);
      y = labels_for(batch, rank);
      for (int64_t i = 0; i < batch; ++i) ids.push_back(rank * batch + i);
      step = [&] { distiller->step(x, y, ids, 1.0); };
      what = "KD step (" + preset + ": teacher " + std::to_string(cfg.teacher.embed_dim) + "-wide ViT" +
             (cfg.cache_teacher ? " cached" : "") + ", " + cfg.student + ", " +
             std::to_string(1 + cfg.views.augmented_views) + " view(s)), " + std::to_string(cfg.img_size) + " px";
    }

    if (steps == 0) {  // sizes only: what the scaling model needs from a configuration too large to step here
      if (rank == 0) {
        auto bytes = [](const std::vector<Var>& ps) {
          double b = 0;
          for (const auto& p : ps) b += static_cast<double>(p.numel()) * static_cast<double>(p.value().element_size());
          return b;
        };
        const std::vector<Var> main = step_kind == "kd" ? distiller->student_parameters() : student->parameters();
        std::printf("bench_dist: %s | gradient bytes %.3f MB in %zu tensors", what.c_str(), bytes(main) / 1e6,
                    main.size());
        if (distiller && distiller->discriminator())
          std::printf(" + discriminator %.3f MB", bytes(distiller->discriminator()->trainable_parameters()) / 1e6);
        std::printf("\n");
      }
      return 0;
    }
    for (int i = 0; i < warmup; ++i) step();
    world.barrier("bench start");
    std::vector<double> ms, cpu_ms;
    for (int i = 0; i < steps; ++i) {
      const auto t0 = Clock::now();
      const std::clock_t c0 = std::clock();
      step();
      cpu_ms.push_back(1000.0 * static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC);
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    world.barrier("bench end");
    if (rank == 0) {
      std::vector<double> sorted = ms, cpu_sorted = cpu_ms;
      std::sort(sorted.begin(), sorted.end());
      std::sort(cpu_sorted.begin(), cpu_sorted.end());
      const double median = sorted[sorted.size() / 2], cpu_median = cpu_sorted[cpu_sorted.size() / 2];
      const dist::ReducerPassStats& st = ddp->last_pass();
      double grad_bytes = 0;
      for (const auto& p : (step_kind == "kd" ? distiller->student_parameters() : student->parameters()))
        grad_bytes += static_cast<double>(p.numel()) * 4.0;
      std::string schedule;
      char part[64];
      for (std::size_t b = 0; b < st.bucket_start_seconds.size(); ++b) {
        std::snprintf(part, sizeof part, "%s%.2f MB @ %.2f", b ? ", " : "", st.bucket_bytes[b] / 1e6,
                      st.backward_seconds > 0 ? st.bucket_start_seconds[b] / st.backward_seconds : 0.0);
        schedule += part;
      }
      std::printf("bench_dist: %s | ranks %d x %d thread(s), batch %lld/rank (global %lld) | step median %.1f ms "
                  "(min %.1f, %d steps) | %.2f images/s | rank 0 CPU %.1f ms/step = %.2f images per CPU-second | "
                  "gradients %.2f MB in %zu bucket(s) | last step: backward walk %.1f ms, wait after it %.2f ms, "
                  "buckets [size @ start as a fraction of the walk: %s]\n",
                  what.c_str(), P, thread_pool().num_threads(), static_cast<long long>(batch),
                  static_cast<long long>(batch * P), median, sorted.front(), steps,
                  static_cast<double>(batch * P) / (median / 1000.0), cpu_median,
                  static_cast<double>(batch) / (cpu_median / 1000.0), grad_bytes / 1e6,
                  P > 1 ? ddp->num_buckets() : static_cast<std::size_t>(0), st.backward_seconds * 1000.0,
                  st.wait_seconds * 1000.0, schedule.c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_dist (rank %d): error: %s\n", rank, e.what());
    session.abort(1);
    return 1;
  }
  return 0;
}
