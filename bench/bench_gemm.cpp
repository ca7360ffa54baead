// bench/bench_gemm.cpp — square GEMM throughput of retikd::cpu::gemm, next to OpenBLAS's cblas_sgemm /
// cblas_dgemm on the same inputs in the same process (when OpenBLAS is installed), with a GFLOP/s counter;
// and the ViT linear-layer shapes (x·Wᵀ + bias) with each AVX-512 register tile forced.
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

// ---- linear layers: x (M×K) · Wᵀ (W stored N×K) + bias, the ViT shapes (M = batch 8 × tokens) --------------
// `retikd` is cpu::gemm as ops::linear calls it (the tile use_wide_tile picks); `narrow` and `wide` force the
// 8×32 and 6×64 AVX-512 tiles (the same tile on other ISAs), so a tile or blocking change can be judged in-tree
// on the shapes that matter (docs/results.md, "The same race on the Intel Xeon"). OpenBLAS gets beta = 0 and
// no bias (one pass less than retikd).
struct LinearProblem {
  int64_t M, N, K;
  std::vector<float> x, w, bias, y;
  LinearProblem(int64_t m, int64_t n, int64_t k) : M(m), N(n), K(k), x(m * k), w(n * k), bias(n), y(m * n) {
    std::mt19937 rng(static_cast<uint32_t>(m * 31 + n * 7 + k));
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    for (auto& v : x) v = dist(rng);
    for (auto& v : w) v = dist(rng);
    for (auto& v : bias) v = dist(rng);
  }
};

void set_linear_counters(benchmark::State& state, const LinearProblem& p, const std::string& label) {
  const double flops = 2.0 * static_cast<double>(p.M) * static_cast<double>(p.N) * static_cast<double>(p.K);
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(label);
}

enum class LinearTile { chosen, narrow, wide };

template <LinearTile tile>
void BM_linear_retikd(benchmark::State& state) {
  LinearProblem p(state.range(0), state.range(1), state.range(2));
  namespace gd = retikd::cpu::gemm_detail;
  const int threads = retikd::thread_pool().num_threads();
  for (auto _ : state) {
    if (tile == LinearTile::chosen)
      retikd::cpu::gemm<float>(false, true, p.M, p.N, p.K, 1.0f, p.x.data(), p.K, p.w.data(), p.K, 0.0f,
                               p.y.data(), p.N, p.bias.data(), retikd::cpu::WideTileRule::linear_layer);
    else if (tile == LinearTile::narrow)
      gd::gemm_blocked<float>(false, true, p.M, p.N, p.K, 1.0f, p.x.data(), p.K, p.w.data(), p.K, 0.0f,
                              p.y.data(), p.N, threads, p.bias.data());
    else
      gd::gemm_blocked<float, gd::WideBlocking<float>>(false, true, p.M, p.N, p.K, 1.0f, p.x.data(), p.K,
                                                       p.w.data(), p.K, 0.0f, p.y.data(), p.N, threads,
                                                       p.bias.data());
    benchmark::DoNotOptimize(p.y.data());
    benchmark::ClobberMemory();
  }
  const bool chose_wide = gd::use_wide_tile<float>(p.M, p.N, p.K, retikd::cpu::WideTileRule::linear_layer);
  const char* name = tile == LinearTile::narrow ? "narrow"
                     : tile == LinearTile::wide ? "wide"
                     : chose_wide               ? "chose wide"
                                                : "chose narrow";
  set_linear_counters(state, p, std::string(name) + " threads=" + std::to_string(threads));
}

#if defined(RETIKD_BENCH_HAVE_OPENBLAS)
void BM_linear_openblas(benchmark::State& state) {
  LinearProblem p(state.range(0), state.range(1), state.range(2));
  const int m = static_cast<int>(p.M), n = static_cast<int>(p.N), k = static_cast<int>(p.K);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, p.x.data(), k, p.w.data(), k, 0.0f,
                p.y.data(), n);
    benchmark::DoNotOptimize(p.y.data());
    benchmark::ClobberMemory();
  }
  set_linear_counters(state, p, "threads=" + std::to_string(openblas_get_num_threads()));
}
#endif

void vit_linear_shapes(benchmark::internal::Benchmark* b) {
  b->Args({2056, 1152, 384})->Args({2056, 384, 384});                        // ViT-S/14 qkv, proj
  b->Args({2056, 1536, 384})->Args({2056, 384, 1536});                       // ViT-S/14 fc1, fc2
  b->Args({1576, 576, 192})->Args({1576, 768, 192})->Args({1576, 192, 768});  // ViT-Tiny/16 qkv, fc1, fc2
  b->UseRealTime();
}

// Real time: with the pool, the main thread's CPU time would overstate the rate.
BENCHMARK_TEMPLATE(BM_gemm_retikd, float)->Name("sgemm_nn/retikd")->Arg(256)->Arg(512)->Arg(1024)->UseRealTime();
#if defined(RETIKD_BENCH_HAVE_OPENBLAS)
BENCHMARK_TEMPLATE(BM_gemm_openblas, float)->Name("sgemm_nn/openblas")->Arg(256)->Arg(512)->Arg(1024)->UseRealTime();
#endif
BENCHMARK_TEMPLATE(BM_gemm_retikd, double)->Name("dgemm_nn/retikd")->Arg(512)->Arg(1024)->UseRealTime();
#if defined(RETIKD_BENCH_HAVE_OPENBLAS)
BENCHMARK_TEMPLATE(BM_gemm_openblas, double)->Name("dgemm_nn/openblas")->Arg(512)->Arg(1024)->UseRealTime();
#endif

BENCHMARK_TEMPLATE(BM_linear_retikd, LinearTile::chosen)->Name("sgemm_linear/retikd")->Apply(vit_linear_shapes);
BENCHMARK_TEMPLATE(BM_linear_retikd, LinearTile::narrow)->Name("sgemm_linear/retikd_narrow")->Apply(vit_linear_shapes);
BENCHMARK_TEMPLATE(BM_linear_retikd, LinearTile::wide)->Name("sgemm_linear/retikd_wide")->Apply(vit_linear_shapes);
#if defined(RETIKD_BENCH_HAVE_OPENBLAS)
BENCHMARK(BM_linear_openblas)->Name("sgemm_linear/openblas")->Apply(vit_linear_shapes);
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
