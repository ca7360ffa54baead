// bench/bench_gemm.cpp — square GEMM throughput of retikd::cpu::gemm, next to OpenBLAS's cblas_sgemm /
// cblas_dgemm on the same inputs in the same process (when OpenBLAS is installed), with a GFLOP/s counter.
//
// Thread counts come from the environment, so one binary measures both regimes without lying about either:
//   RETIKD_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 ./retikd_bench_gemm      # single-threaded, both libraries
//   RETIKD_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 ./retikd_bench_gemm      # the pool, both libraries
// OpenBLAS 0.3.21 may pick a weak kernel on a virtual CPU it does not recognise; OPENBLAS_CORETYPE=SKYLAKEX
// forces its AVX-512 kernels (the comparison that matters). The context block printed before the table
// says which thread counts and which OpenBLAS core were in effect. Before timing OpenBLAS, each size checks
// once that OpenBLAS and retikd agree; a disagreement stops that benchmark with an error.
#include <benchmark/benchmark.h>

#include <retikd/core/parallel.hpp>
#include <retikd/ops/cpu/gemm.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#if defined(RETIKD_BENCH_HAVE_OPENBLAS)
#include <cblas.h>
// Declared here rather than relying on which cblas.h the include path found: these are OpenBLAS exports.
extern "C" char* openblas_get_corename(void);
extern "C" int openblas_get_num_threads(void);
#endif

namespace {

template <class T>
struct Problem {
  int64_t n;
  std::vector<T> A, B, C;
  explicit Problem(int64_t size) : n(size), A(size * size), B(size * size), C(size * size) {
    std::mt19937 rng(static_cast<uint32_t>(size));
    std::uniform_real_distribution<double> dist(-1.0, 1.0);
    for (auto& x : A) x = static_cast<T>(dist(rng));
    for (auto& x : B) x = static_cast<T>(dist(rng));
  }
};

void set_counters(benchmark::State& state, int64_t n) {
  const double flops = 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n);
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

template <class T>
void BM_gemm_retikd(benchmark::State& state) {
  const int64_t n = state.range(0);
  Problem<T> p(n);
  for (auto _ : state) {
    retikd::cpu::gemm<T>(false, false, n, n, n, T(1), p.A.data(), n, p.B.data(), n, T(0), p.C.data(), n);
    benchmark::DoNotOptimize(p.C.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, n);
  state.SetLabel("threads=" + std::to_string(retikd::thread_pool().num_threads()));
}

#if defined(RETIKD_BENCH_HAVE_OPENBLAS)
void cblas_gemm_nn(int64_t n, const float* A, const float* B, float* C) {
  const int m = static_cast<int>(n);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, m, m, 1.0f, A, m, B, m, 0.0f, C, m);
}
void cblas_gemm_nn(int64_t n, const double* A, const double* B, double* C) {
  const int m = static_cast<int>(n);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, m, m, 1.0, A, m, B, m, 0.0, C, m);
}

// OpenBLAS and retikd on the same inputs must agree within the error bound of a length-n dot product of
// values in [-1, 1]: (n + 2)·ε·n. Returns an empty string when they do.
template <class T>
std::string compare_with_retikd(const Problem<T>& p) {
  const int64_t n = p.n;
  std::vector<T> ours(p.C.size());
  retikd::cpu::gemm<T>(false, false, n, n, n, T(1), p.A.data(), n, p.B.data(), n, T(0), ours.data(), n);
  const double tol = static_cast<double>(n + 2) * std::numeric_limits<T>::epsilon() * static_cast<double>(n);
  for (std::size_t i = 0; i < ours.size(); ++i) {
    const double d = std::fabs(static_cast<double>(ours[i]) - static_cast<double>(p.C[i]));
    if (!(d <= tol))
      return "OpenBLAS and retikd disagree at element " + std::to_string(i) + ": " + std::to_string(p.C[i]) +
             " vs " + std::to_string(ours[i]);
  }
  return {};
}

template <class T>
void BM_gemm_openblas(benchmark::State& state) {
  const int64_t n = state.range(0);
  Problem<T> p(n);
  cblas_gemm_nn(n, p.A.data(), p.B.data(), p.C.data());
  const std::string mismatch = compare_with_retikd(p);
  if (!mismatch.empty()) {
    state.SkipWithError(mismatch.c_str());
    return;
  }
  for (auto _ : state) {
    cblas_gemm_nn(n, p.A.data(), p.B.data(), p.C.data());
    benchmark::DoNotOptimize(p.C.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, n);
  state.SetLabel("threads=" + std::to_string(openblas_get_num_threads()) + " core=" + openblas_get_corename());
}
#endif

// Real time: with the pool, the main thread's CPU time would overstate the rate.
BENCHMARK_TEMPLATE(BM_gemm_retikd, float)->Name("sgemm_nn/retikd")->Arg(256)->Arg(512)->Arg(1024)->UseRealTime();
#if defined(RETIKD_BENCH_HAVE_OPENBLAS)
BENCHMARK_TEMPLATE(BM_gemm_openblas, float)->Name("sgemm_nn/openblas")->Arg(256)->Arg(512)->Arg(1024)->UseRealTime();
#endif
BENCHMARK_TEMPLATE(BM_gemm_retikd, double)->Name("dgemm_nn/retikd")->Arg(512)->Arg(1024)->UseRealTime();
#if defined(RETIKD_BENCH_HAVE_OPENBLAS)
BENCHMARK_TEMPLATE(BM_gemm_openblas, double)->Name("dgemm_nn/openblas")->Arg(512)->Arg(1024)->UseRealTime();
#endif

}  // namespace

int main(int argc, char** argv) {
  benchmark::AddCustomContext("retikd_threads", std::to_string(retikd::thread_pool().num_threads()));
#if defined(RETIKD_BENCH_HAVE_OPENBLAS)
  benchmark::AddCustomContext("openblas_threads", std::to_string(openblas_get_num_threads()));
  benchmark::AddCustomContext("openblas_core", openblas_get_corename());
#else
  benchmark::AddCustomContext("openblas", "not built in (libopenblas-dev not found at configure time)");
#endif
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
