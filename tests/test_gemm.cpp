// tests/test_gemm.cpp — the blocked CPU GEMM (retikd/ops/cpu/gemm.hpp) against its naive reference.
//
// Every case fills A, B and C with seeded random values, runs gemm and gemm_reference on copies of C and
// compares element-wise against the rigorous error bound of a length-K dot product,
// |got − ref| ≤ (K + 2)·ε·(|α|·Σ_k |a_ik||b_kj| + |β|·|c_ij|), which no summation order can exceed but an
// indexing or packing bug does. The padding columns of C (ldc > N) hold a sentinel that must survive. Sizes
// cover 0 and 1, primes, edge tiles in both directions, K across the KC slices, N across the NC blocks, and
// problems large enough to take the threaded paths when the pool has more than one thread.
#include <doctest/doctest.h>

#include <retikd/ops/cpu/gemm.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using retikd::cpu::gemm;
using retikd::cpu::gemm_batched;
using retikd::cpu::gemm_reference;

struct Case {
  int64_t M, N, K;
  bool trans_a, trans_b;
  double alpha, beta;
  int64_t pad_a = 0, pad_b = 0, pad_c = 0;  // extra elements per stored row (lda > minimum)
  bool poison_c = false;                    // fill C with NaN (only meaningful with beta == 0)
  bool bias = false;                        // add a random per-column bias (cpu::gemm's bias argument)
  bool serial = false;                      // call cpu::gemm_serial (the calling thread only)
  bool linear_rule = false;                 // WideTileRule::linear_layer (the wide tile from K >= 192)
};

std::string describe(const Case& c) {
  return "M=" + std::to_string(c.M) + " N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) +
         " ta=" + std::to_string(c.trans_a) + " tb=" + std::to_string(c.trans_b) +
         " alpha=" + std::to_string(c.alpha) + " beta=" + std::to_string(c.beta) +
         " pads=" + std::to_string(c.pad_a) + "," + std::to_string(c.pad_b) + "," + std::to_string(c.pad_c) +
         (c.poison_c ? " NaN-C" : "") + (c.bias ? " bias" : "") + (c.serial ? " serial" : "") +
         (c.linear_rule ? " linear-rule" : "");
}

template <class T>
std::vector<T> random_vector(std::size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(dist(rng));
  return v;
}

// Runs one case; returns the number of elements outside the bound (and reports the first one).
template <class T>
int64_t run_case(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t a_rows = c.trans_a ? c.K : c.M, a_cols = c.trans_a ? c.M : c.K;
  const int64_t b_rows = c.trans_b ? c.N : c.K, b_cols = c.trans_b ? c.K : c.N;
  const int64_t lda = std::max<int64_t>(1, a_cols + c.pad_a);
  const int64_t ldb = std::max<int64_t>(1, b_cols + c.pad_b);
  const int64_t ldc = std::max<int64_t>(1, c.N + c.pad_c);
  auto A = random_vector<T>(static_cast<std::size_t>(std::max<int64_t>(1, a_rows * lda)), rng);
  auto B = random_vector<T>(static_cast<std::size_t>(std::max<int64_t>(1, b_rows * ldb)), rng);
  auto C0 = random_vector<T>(static_cast<std::size_t>(std::max<int64_t>(1, c.M * ldc)), rng);
  const T sentinel = T(12345.5);
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = c.N; j < ldc; ++j) C0[i * ldc + j] = sentinel;
  if (c.poison_c)
    for (int64_t i = 0; i < c.M; ++i)
      for (int64_t j = 0; j < c.N; ++j) C0[i * ldc + j] = std::numeric_limits<T>::quiet_NaN();

  const T alpha = static_cast<T>(c.alpha), beta = static_cast<T>(c.beta);
  const auto bias = random_vector<T>(static_cast<std::size_t>(std::max<int64_t>(1, c.N)), rng);
  std::vector<T> got = C0, ref = C0;
  if (c.serial) {
    retikd::cpu::gemm_serial<T>(c.trans_a, c.trans_b, c.M, c.N, c.K, alpha, A.data(), lda, B.data(), ldb, beta,
                                got.data(), ldc);
  } else {
    gemm<T>(c.trans_a, c.trans_b, c.M, c.N, c.K, alpha, A.data(), lda, B.data(), ldb, beta, got.data(), ldc,
            c.bias ? bias.data() : nullptr,
            c.linear_rule ? retikd::cpu::WideTileRule::linear_layer : retikd::cpu::WideTileRule::deep_only);
  }
  gemm_reference<T>(c.trans_a, c.trans_b, c.M, c.N, c.K, alpha, A.data(), lda, B.data(), ldb, beta, ref.data(),
                    ldc);
  if (c.bias)
    for (int64_t i = 0; i < c.M; ++i)
      for (int64_t j = 0; j < c.N; ++j) ref[i * ldc + j] += bias[j];

  const double eps = std::numeric_limits<T>::epsilon();
  int64_t bad = 0;
  for (int64_t i = 0; i < c.M; ++i) {
    for (int64_t j = 0; j < ldc; ++j) {
      const T g = got[i * ldc + j];
      if (j >= c.N) {  // padding of C must not be written
        if (g != sentinel && bad++ == 0) FAIL_CHECK(describe(c) << ": wrote C padding at (" << i << "," << j << ")");
        continue;
      }
      double abs_sum = 0.0;
      for (int64_t k = 0; k < c.K; ++k) {
        const double a = c.trans_a ? A[k * lda + i] : A[i * lda + k];
        const double b = c.trans_b ? B[j * ldb + k] : B[k * ldb + j];
        abs_sum += std::fabs(a * b);
      }
      double bound = std::fabs(c.alpha) * abs_sum;
      if (c.beta != 0.0) bound += std::fabs(c.beta) * std::fabs(static_cast<double>(C0[i * ldc + j]));
      if (c.bias) bound += std::fabs(static_cast<double>(bias[j]));
      const double tol = static_cast<double>(c.K + 2) * eps * bound + 4 * std::numeric_limits<T>::min();
      const double r = ref[i * ldc + j];
      if (!(std::isfinite(static_cast<double>(g)) && std::fabs(static_cast<double>(g) - r) <= tol)) {
        if (bad++ == 0)
          FAIL_CHECK(describe(c) << ": C(" << i << "," << j << ") = " << g << ", reference " << r
                                 << ", tolerance " << tol);
      }
    }
  }
  return bad;
}

// Sizes chosen to hit every path: degenerate, tiny, primes, edge tiles in M and N (tile heights 4..8,
// widths 8..64 depending on the ISA), K across the 192- or 256-deep slices, N across the 4096-wide blocks,
// short-and-wide (column split when threaded), tall-and-skinny. On AVX-512 use_wide_tile sends some of these
// to the 6×64 tile (K >= 256: e.g. 12×128×384, 16×64×513, 520×530×610) and the rest to the 8×32 one.
const int64_t kShapes[][3] = {
    {1, 1, 1},     {0, 5, 3},    {5, 0, 3},    {5, 3, 0},     {0, 0, 0},    {1, 7, 1},     {7, 1, 1},
    {2, 3, 4},     {17, 33, 65}, {31, 47, 13}, {8, 32, 256},  {9, 33, 257}, {16, 64, 513}, {6, 16, 8},
    {13, 29, 300}, {1, 300, 40}, {300, 1, 40}, {3, 5, 700},   {257, 9, 31}, {9, 257, 31},  {64, 64, 64},
    {97, 193, 89}, {4, 1000, 60}, {130, 140, 150}, {100, 4200, 21}, {33, 4100, 9},
    {6, 64, 192},  {7, 65, 193}, {12, 128, 384}, {5, 63, 191},
};

template <class T>
void run_shape_sweep() {
  uint32_t seed = 1;
  const bool trans[4][2] = {{false, false}, {false, true}, {true, false}, {true, true}};
  for (const auto& s : kShapes) {
    for (const auto& t : trans) {
      Case c{s[0], s[1], s[2], t[0], t[1], 1.0, 0.0};
      CHECK_MESSAGE(run_case<T>(c, seed++) == 0, describe(c));
    }
  }
}

template <class T>
void run_alpha_beta() {
  uint32_t seed = 100;
  const double ab[][2] = {{1.0, 0.0}, {0.5, 0.0}, {1.0, 1.0}, {-1.5, 0.25}, {0.0, 2.0}, {0.0, 0.0}, {2.0, -1.0}};
  const int64_t shapes[][3] = {{1, 1, 1}, {17, 33, 65}, {40, 70, 300}, {5, 3, 0}};
  for (const auto& s : shapes)
    for (const auto& v : ab)
      for (int t = 0; t < 4; ++t) {
        Case c{s[0], s[1], s[2], (t & 1) != 0, (t & 2) != 0, v[0], v[1], 3, 5, 2};
        CHECK_MESSAGE(run_case<T>(c, seed++) == 0, describe(c));
      }
}

template <class T>
void run_random_sizes(int count) {
  std::mt19937 rng(2024);
  std::uniform_int_distribution<int64_t> size(1, 150), pad(0, 9), coin(0, 1);
  const double alphas[] = {1.0, -0.75, 2.5}, betas[] = {0.0, 1.0, 0.5};
  for (int n = 0; n < count; ++n) {
    Case c{size(rng), size(rng), size(rng), coin(rng) == 1, coin(rng) == 1, alphas[n % 3], betas[(n / 3) % 3],
           pad(rng), pad(rng), pad(rng)};
    c.poison_c = c.beta == 0.0 && coin(rng) == 1;
    CHECK_MESSAGE(run_case<T>(c, 5000u + static_cast<uint32_t>(n)) == 0, describe(c));
  }
}

// gemm_bias_gelu against cpu::gemm with the same bias followed by gelu_values on each element. Not bit for bit:
// the two calls' stores and the GELU's polynomial may be contracted into FMAs differently (inlining differs
// between translation units), so each value gets the dot product's rounding bound, and the GELU (slope ≤ 1.13)
// that bound plus a few ulps. A GELU skipped on a tile, or run on an unfinished K slice or twice, is far
// outside it. Padding columns of C and of the GELU output must keep their sentinel. Returns the number of
// mismatching elements (reporting the first).
template <class T>
int64_t run_gelu_case(int64_t M, int64_t N, int64_t K, bool ta, bool tb, bool in_place, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t lda = std::max<int64_t>(1, (ta ? M : K) + 1), ldb = std::max<int64_t>(1, (tb ? K : N) + 2);
  const int64_t ldc = std::max<int64_t>(1, N + 3), ldg = std::max<int64_t>(1, N + 5);
  auto A = random_vector<T>(static_cast<std::size_t>(std::max<int64_t>(1, (ta ? K : M) * lda)), rng);
  auto B = random_vector<T>(static_cast<std::size_t>(std::max<int64_t>(1, (tb ? N : K) * ldb)), rng);
  for (auto& v : A) v *= T(2);  // pre-activations of a few units: the GELU's curved part, not just its tails
  const auto bias = random_vector<T>(static_cast<std::size_t>(std::max<int64_t>(1, N)), rng);
  const T sentinel = T(12345.5);
  std::vector<T> pre(static_cast<std::size_t>(std::max<int64_t>(1, M * ldc)), sentinel), got_c = pre;
  std::vector<T> got_g(static_cast<std::size_t>(std::max<int64_t>(1, M * ldg)), sentinel);
  gemm<T>(ta, tb, M, N, K, T(1), A.data(), lda, B.data(), ldb, T(0), pre.data(), ldc, bias.data());
  // x·Wᵀ (ta false, tb true) as ops::linear_gelu calls it, with the linear layer's tile rule.
  const auto rule = !ta && tb ? retikd::cpu::WideTileRule::linear_layer : retikd::cpu::WideTileRule::deep_only;
  retikd::cpu::gemm_bias_gelu<T>(ta, tb, M, N, K, A.data(), lda, B.data(), ldb, got_c.data(), ldc, bias.data(),
                                 in_place ? nullptr : got_g.data(), ldg, rule);
  const std::string what = "gemm_bias_gelu M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" +
                           std::to_string(K) + " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb) +
                           (in_place ? " in place" : " beside");
  const double eps = std::numeric_limits<T>::epsilon(), tiny = 4 * std::numeric_limits<T>::min();
  int64_t bad = 0;
  auto report = [&](int64_t i, int64_t j, const char* which, double got, double want, double tol) {
    if (bad++ == 0)
      FAIL_CHECK(what << ": " << which << "(" << i << "," << j << ") = " << got << ", want " << want
                      << " within " << tol);
  };
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = N; j < ldc; ++j)
      if (got_c[i * ldc + j] != sentinel) report(i, j, "C padding ", got_c[i * ldc + j], sentinel, 0);
    if (!in_place)
      for (int64_t j = N; j < ldg; ++j)
        if (got_g[i * ldg + j] != sentinel) report(i, j, "GELU padding ", got_g[i * ldg + j], sentinel, 0);
    for (int64_t j = 0; j < N; ++j) {
      double abs_sum = std::fabs(static_cast<double>(bias[j]));
      for (int64_t k = 0; k < K; ++k)
        abs_sum += std::fabs(static_cast<double>(ta ? A[k * lda + i] : A[i * lda + k]) *
                             static_cast<double>(tb ? B[j * ldb + k] : B[k * ldb + j]));
      const double tol = 2.0 * static_cast<double>(K + 2) * eps * abs_sum + tiny;
      const T x = pre[i * ldc + j];
      T act;
      retikd::cpu::gemm_detail::gelu_values<T>(&x, &act, 1);
      const double tol_g = 1.2 * tol + 16 * eps * std::max(std::fabs(static_cast<double>(act)),
                                                            std::fabs(static_cast<double>(x))) + tiny;
      const double g = in_place ? got_c[i * ldc + j] : got_g[i * ldg + j];
      if (!in_place && !(std::fabs(static_cast<double>(got_c[i * ldc + j]) - x) <= tol))
        report(i, j, "C ", got_c[i * ldc + j], x, tol);
      if (!(std::fabs(g - static_cast<double>(act)) <= tol_g)) report(i, j, "GELU ", g, act, tol_g);
    }
  }
  return bad;
}

}  // namespace

TEST_CASE("gemm float: shapes x transposes") { run_shape_sweep<float>(); }
TEST_CASE("gemm double: shapes x transposes") { run_shape_sweep<double>(); }
TEST_CASE("gemm float: alpha/beta, padded strides") { run_alpha_beta<float>(); }
TEST_CASE("gemm double: alpha/beta, padded strides") { run_alpha_beta<double>(); }
TEST_CASE("gemm float: random sizes") { run_random_sizes<float>(60); }
TEST_CASE("gemm double: random sizes") { run_random_sizes<double>(30); }

TEST_CASE("gemm: beta = 0 ignores NaN in C, also with K = 0 and alpha = 0") {
  const double ab[][2] = {{1.0, 0.0}, {3.0, 0.0}, {0.0, 0.0}};
  uint32_t seed = 900;
  for (const auto& v : ab) {
    for (int64_t K : {int64_t(0), int64_t(1), int64_t(37), int64_t(600)}) {
      Case c{45, 67, K, false, true, v[0], v[1], 1, 0, 3, true};
      CHECK_MESSAGE(run_case<float>(c, seed++) == 0, describe(c));
      c.trans_a = true;
      CHECK_MESSAGE(run_case<double>(c, seed++) == 0, describe(c));
    }
  }
}

TEST_CASE("gemm: large enough to run threaded, all transposes") {
  // With a pool of more than one thread these take the row split (shared packed B), the column split
  // (M below two tiles per thread) and several K slices; with one thread they still check the blocking.
  // {40, 4100, 700} spans two N blocks and two packed-B groups of K slices.
  const int64_t shapes[][3] = {{520, 530, 610}, {7, 2100, 300}, {1100, 40, 90}, {40, 4100, 700}};
  uint32_t seed = 7000;
  for (const auto& s : shapes)
    for (int t = 0; t < 4; ++t) {
      Case c{s[0], s[1], s[2], (t & 1) != 0, (t & 2) != 0, 1.25, t == 3 ? 0.5 : 0.0, 2, 1, 3};
      CHECK_MESSAGE(run_case<float>(c, seed++) == 0, describe(c));
    }
  Case d{300, 310, 290, true, false, -1.0, 1.0, 0, 0, 0};
  CHECK_MESSAGE(run_case<double>(d, seed++) == 0, describe(d));
}

TEST_CASE("gemm: per-column bias added in the store, on every path; gemm_serial") {
  // The bias reaches full tiles, edge tiles, later K slices (it must be added once), the column split and the
  // threaded row split, with beta 0 (C not read, NaN-safe) and beta != 0; K = 0 leaves beta·C + bias.
  uint32_t seed = 8000;
  for (const auto& s : kShapes)
    for (int t = 0; t < 4; ++t) {
      Case c{s[0], s[1], s[2], (t & 1) != 0, (t & 2) != 0, t == 2 ? -0.5 : 1.0, t == 3 ? 0.5 : 0.0, 1, 2, 3};
      c.bias = true;
      c.poison_c = c.beta == 0.0 && t == 1;
      c.linear_rule = t == 2;  // x·Wᵀ as ops::linear calls it: K = 192, 193 take the wide tile on AVX-512
      CHECK_MESSAGE(run_case<float>(c, seed++) == 0, describe(c));
    }
  const int64_t large[][3] = {{520, 530, 610}, {7, 2100, 300}, {40, 4100, 700}};
  for (const auto& s : large) {
    Case c{s[0], s[1], s[2], false, true, 1.0, 0.0};
    c.bias = true;
    CHECK_MESSAGE(run_case<float>(c, seed++) == 0, describe(c));
    c.bias = false;
    c.serial = true;
    CHECK_MESSAGE(run_case<float>(c, seed++) == 0, describe(c));
  }
  Case d{33, 47, 300, true, false, 1.0, 1.0, 0, 0, 0};
  d.bias = true;
  CHECK_MESSAGE(run_case<double>(d, seed++) == 0, describe(d));
}

TEST_CASE("gemm: the wide tile rule per caller: linear layers from K = 192, other products from K = 256") {
  namespace gd = retikd::cpu::gemm_detail;
  using retikd::cpu::WideTileRule;
  // ViT-Tiny's qkv and fc1 (K = D = 192), ViT-S/14's proj (K = 384), MobileNetV2's 192 -> 64 projection.
  CHECK(gd::use_wide_tile<float>(1576, 576, 192, WideTileRule::linear_layer) == gd::kHasWideTile);
  CHECK(gd::use_wide_tile<float>(1576, 768, 192, WideTileRule::linear_layer) == gd::kHasWideTile);
  CHECK_FALSE(gd::use_wide_tile<float>(1576, 576, 192, WideTileRule::deep_only));
  CHECK_FALSE(gd::use_wide_tile<float>(64, 784, 192));  // conv: M = out channels, N = 28 × 28
  CHECK(gd::use_wide_tile<float>(2056, 384, 384) == gd::kHasWideTile);
  CHECK_FALSE(gd::use_wide_tile<float>(1576, 576, 191, WideTileRule::linear_layer));
  // 32 output columns waste half of a 64-wide tile under either rule.
  CHECK_FALSE(gd::use_wide_tile<float>(1576, 32, 512, WideTileRule::linear_layer));
  // Both rules, the same product: a linear over 200 tokens with K = 192 against the reference.
  for (int rule = 0; rule < 2; ++rule) {
    Case c{200, 130, 192, false, true, 1.0, 0.0};
    c.bias = true;
    c.linear_rule = rule == 1;
    CHECK_MESSAGE(run_case<float>(c, 8900u + static_cast<uint32_t>(rule)) == 0, describe(c));
  }
}

TEST_CASE("gemm_bias_gelu: the GELU runs once on every finished tile, in place or beside the pre-activation") {
  // Full and edge tiles of both AVX-512 tiles, several K slices (a GELU on an unfinished slice, or on every
  // slice, changes the values), the column split, the threaded row split, N across the 4096-wide blocks, K = 0.
  uint32_t seed = 9000;
  const bool trans[3][2] = {{false, true}, {false, false}, {true, false}};
  for (const auto& s : kShapes)
    for (int in_place = 0; in_place < 2; ++in_place)
      for (const auto& t : trans) CHECK(run_gelu_case<float>(s[0], s[1], s[2], t[0], t[1], in_place != 0, seed++) == 0);
  const int64_t large[][3] = {{520, 530, 610}, {7, 2100, 300}, {40, 4100, 700}};
  for (const auto& s : large)
    for (int in_place = 0; in_place < 2; ++in_place)
      CHECK(run_gelu_case<float>(s[0], s[1], s[2], false, true, in_place != 0, seed++) == 0);
  CHECK(run_gelu_case<double>(33, 47, 300, false, true, false, seed++) == 0);
  CHECK(run_gelu_case<double>(9, 257, 31, true, false, true, seed++) == 0);

  // gelu_values itself against the formula in double precision: ½x(1 + erf(x/√2)).
  for (double x : {-6.0, -2.5, -1.0, -0.3, 0.0, 1e-3, 0.7, 1.5, 4.0}) {
    float y = 0.0f;
    const float xf = static_cast<float>(x);
    retikd::cpu::gemm_detail::gelu_values<float>(&xf, &y, 1);
    const double want = 0.5 * static_cast<double>(xf) * (1.0 + std::erf(static_cast<double>(xf) / std::sqrt(2.0)));
    CHECK(std::fabs(static_cast<double>(y) - want) <= 2e-6 * (1.0 + std::fabs(want)));
  }
  std::vector<float> a(8), b(12), c(6), g(6);
  CHECK_THROWS_WITH_AS(retikd::cpu::gemm_bias_gelu<float>(false, true, 2, 3, 4, a.data(), 4, b.data(), 4, c.data(), 3,
                                                          nullptr, g.data(), 2),
                       doctest::Contains("ld_gelu"), std::invalid_argument);
}

namespace {

// Batched: compare every matrix of the batch with gemm_reference on the same slices.
template <class T>
void check_batched(int64_t batch, int64_t M, int64_t N, int64_t K, bool ta, bool tb, bool broadcast_a,
                   bool broadcast_b, double alpha, double beta) {
  CAPTURE(batch);
  CAPTURE(M);
  CAPTURE(N);
  CAPTURE(K);
  CAPTURE(ta);
  CAPTURE(tb);
  CAPTURE(broadcast_a);
  CAPTURE(broadcast_b);
  std::mt19937 rng(static_cast<uint32_t>(batch * 131 + M * 7 + N * 3 + K));
  const int64_t lda = (ta ? M : K) + 1, ldb = (tb ? K : N) + 2, ldc = N + 3;
  const int64_t sa = broadcast_a ? 0 : (ta ? K : M) * lda, sb = broadcast_b ? 0 : (tb ? N : K) * ldb;
  const int64_t sc = M * ldc + 5;
  auto A = random_vector<T>(static_cast<std::size_t>((broadcast_a ? 1 : batch) * (ta ? K : M) * lda), rng);
  auto B = random_vector<T>(static_cast<std::size_t>((broadcast_b ? 1 : batch) * (tb ? N : K) * ldb), rng);
  auto C0 = random_vector<T>(static_cast<std::size_t>(batch * sc), rng);
  std::vector<T> got = C0, ref = C0;
  const T a = static_cast<T>(alpha), b = static_cast<T>(beta);
  gemm_batched<T>(batch, ta, tb, M, N, K, a, A.data(), lda, sa, B.data(), ldb, sb, b, got.data(), ldc, sc);
  for (int64_t i = 0; i < batch; ++i)
    gemm_reference<T>(ta, tb, M, N, K, a, A.data() + i * sa, lda, B.data() + i * sb, ldb, b,
                      ref.data() + i * sc, ldc);
  const double tol = static_cast<double>(K + 2) * std::numeric_limits<T>::epsilon() *
                     (std::fabs(alpha) * static_cast<double>(K) + std::fabs(beta));  // |a|,|b|,|c| <= 1
  int64_t bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const int64_t within = static_cast<int64_t>(i) % sc, col = within % ldc;
    const bool inside = within < M * ldc && col < N;
    const bool ok = inside ? std::fabs(static_cast<double>(got[i]) - static_cast<double>(ref[i])) <= tol
                           : got[i] == C0[i];  // strides and padding untouched
    if (!ok && bad++ == 0) FAIL_CHECK("element " << i << ": " << got[i] << " vs " << ref[i]);
  }
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("gemm_batched: strides, broadcast operands, small and large batches") {
  check_batched<float>(1, 17, 33, 65, false, false, false, false, 1.0, 0.0);
  check_batched<float>(5, 17, 33, 65, false, true, true, false, 1.0, 0.5);   // shared A (e.g. weights)
  check_batched<float>(5, 17, 33, 65, true, false, false, true, -2.0, 0.0);  // shared B
  check_batched<float>(12, 49, 49, 32, false, true, false, false, 0.125, 0.0);  // attention-like, one per task
  check_batched<float>(2, 200, 190, 210, true, true, false, false, 1.0, 1.0);   // few mid-size: one per task
  check_batched<float>(2, 300, 280, 260, false, false, true, false, 1.0, 0.0);  // few large: threaded inside
  check_batched<double>(6, 23, 41, 19, true, false, false, true, 1.5, -0.5);
  check_batched<float>(3, 4, 5, 0, false, false, false, false, 1.0, 0.5);  // K = 0: C = beta*C
  check_batched<float>(0, 4, 5, 6, false, false, false, false, 1.0, 0.0);  // empty batch
}

TEST_CASE("gemm: bad arguments throw std::invalid_argument naming gemm and the sizes") {
  std::vector<float> A(64, 1.0f), B(64, 1.0f), C(64, 0.0f);
  auto expect_throw = [](auto&& fn, const char* needle) {
    bool threw = false;
    try {
      fn();
    } catch (const std::invalid_argument& e) {
      threw = true;
      const std::string msg = e.what();
      CHECK_MESSAGE(msg.find("gemm") != std::string::npos, msg);
      CHECK_MESSAGE(msg.find(needle) != std::string::npos, msg);
    }
    CHECK_MESSAGE(threw, needle);
  };
  float* a = A.data();
  float* b = B.data();
  float* c = C.data();
  expect_throw([&] { gemm<float>(false, false, -1, 2, 2, 1.f, a, 2, b, 2, 0.f, c, 2); }, "M=-1");
  expect_throw([&] { gemm<float>(false, false, 2, 2, -3, 1.f, a, 2, b, 2, 0.f, c, 2); }, "K=-3");
  expect_throw([&] { gemm<float>(false, false, 3, 4, 5, 1.f, a, 4, b, 4, 0.f, c, 4); }, "lda");  // lda < K
  expect_throw([&] { gemm<float>(true, false, 6, 4, 5, 1.f, a, 5, b, 4, 0.f, c, 4); }, "lda");   // lda < M
  expect_throw([&] { gemm<float>(false, false, 3, 4, 5, 1.f, a, 5, b, 3, 0.f, c, 4); }, "ldb");  // ldb < N
  expect_throw([&] { gemm<float>(false, true, 3, 4, 5, 1.f, a, 5, b, 4, 0.f, c, 4); }, "ldb");   // ldb < K
  expect_throw([&] { gemm<float>(false, false, 3, 4, 5, 1.f, a, 5, b, 4, 0.f, c, 3); }, "ldc");  // ldc < N
  expect_throw([&] { gemm<float>(false, false, 3, 4, 5, 1.f, nullptr, 5, b, 4, 0.f, c, 4); }, "null");
  expect_throw([&] { gemm_reference<float>(false, false, 3, 4, 5, 1.f, a, 4, b, 4, 0.f, c, 4); }, "lda");
  expect_throw([&] { gemm_batched<float>(-1, false, false, 2, 2, 2, 1.f, a, 2, 4, b, 2, 4, 0.f, c, 2, 4); },
               "batch=-1");
  expect_throw([&] { gemm_batched<float>(2, false, false, 2, 2, 2, 1.f, a, 2, -4, b, 2, 4, 0.f, c, 2, 4); },
               "stride");
  expect_throw([&] { gemm_batched<float>(2, false, false, 2, 2, 2, 1.f, a, 2, 4, b, 2, 4, 0.f, c, 2, 0); },
               "stride_c");  // every matrix would write the same C
  // Valid degenerate calls do not throw: empty matrices with the minimum strides of 1.
  CHECK_NOTHROW(gemm<float>(false, false, 0, 0, 0, 1.f, nullptr, 1, nullptr, 1, 0.f, nullptr, 1));
  CHECK_NOTHROW(gemm<float>(false, false, 0, 4, 5, 1.f, nullptr, 5, b, 4, 0.f, nullptr, 4));
}
