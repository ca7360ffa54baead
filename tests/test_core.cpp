// tests/test_core.cpp — Tensor (construction, dtypes, views and their strides, copies, conversions), the
// seeded generator and the initialisers, the thread pool.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cmath>
#include <numeric>
#include <thread>

#include "retikd/core/host_block_cache.hpp"
#include "retikd/core/parallel.hpp"
#include "retikd/core/random.hpp"
#include "retikd/core/tensor.hpp"

using namespace retikd;

namespace {
std::vector<float> values(const Tensor& t) { return t.to_vector<float>(); }
Tensor iota(const Shape& s) { return Tensor::arange(0.0, double(shape_numel(s)), 1.0).reshape(s); }
}  // namespace

TEST_CASE("tensor construction and properties") {
  Tensor z = Tensor::zeros({2, 3});
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.strides() == Shape{3, 1});
  CHECK(z.numel() == 6);
  CHECK(z.dtype() == DType::float32);
  CHECK(z.is_cpu());
  CHECK(z.is_contiguous());
  for (float v : values(z)) CHECK(v == 0.0f);
  for (float v : values(Tensor::ones({4}))) CHECK(v == 1.0f);
  for (float v : values(Tensor::full({3, 1}, 2.5))) CHECK(v == 2.5f);

  Tensor a = Tensor::arange(2.0, 5.0, 0.5, DType::float64);
  CHECK(a.to_vector<double>() == std::vector<double>{2.0, 2.5, 3.0, 3.5, 4.0, 4.5});
  Tensor i = Tensor::arange(4);
  CHECK(i.dtype() == DType::int64);
  CHECK(i.to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3});

  Tensor s = Tensor::scalar(7.0);
  CHECK(s.dim() == 0);
  CHECK(s.numel() == 1);
  CHECK(s.item<float>() == 7.0f);

  Tensor e = Tensor::empty({0, 3});
  CHECK(e.numel() == 0);
  CHECK_THROWS_AS(Tensor::empty({-1}), Error);
  CHECK_THROWS_AS(Tensor::from_vector(std::vector<float>{1, 2, 3}, {2, 2}), Error);
  CHECK_THROWS_AS(z.item<float>(), Error);
  CHECK(dtype_size(DType::float16) == 2);
  CHECK(dtype_size(DType::int64) == 8);
  CHECK(std::string(dtype_name(DType::int32)) == "int32");
}

TEST_CASE("dtype conversions round-trip and round") {
  Tensor f = Tensor::from_vector(std::vector<float>{-2.75f, 0.5f, 1.0f / 3.0f, 65504.0f, 1e6f}, {5});
  Tensor h = f.to(DType::float16);
  CHECK(h.dtype() == DType::float16);
  std::vector<float> back = h.to_vector<float>();
  CHECK(back[0] == -2.75f);
  CHECK(back[1] == 0.5f);
  CHECK(back[2] == doctest::Approx(1.0 / 3.0).epsilon(1e-3));
  CHECK(back[2] != 1.0f / 3.0f);  // really rounded to 11 bits
  CHECK(back[3] == 65504.0f);
  CHECK(std::isinf(back[4]));
  Tensor n = Tensor::from_vector(std::vector<float>{-1.7f, 2.9f}, {2}).to(DType::int32);
  CHECK(n.to_vector<int32_t>() == std::vector<int32_t>{-1, 2});  // truncation, like a C cast
  Tensor d = Tensor::from_vector(std::vector<int64_t>{3, -4}, {2}).to(DType::float64);
  CHECK(d.to_vector<double>() == std::vector<double>{3.0, -4.0});
  CHECK_THROWS_AS(f.data<double>(), Error);
}

TEST_CASE("views share storage and compute strides") {
  Tensor t = iota({2, 3, 4});
  Tensor v = t.view({6, 4});
  CHECK(v.shares_storage_with(t));
  CHECK(v.strides() == Shape{4, 1});
  CHECK(t.view({-1, 12}).shape() == Shape{2, 12});
  CHECK_THROWS_AS(t.view({5, -1}), Error);
  CHECK_THROWS_AS(t.view({-1, -1}), Error);

  Tensor p = t.permute({2, 0, 1});  // (4, 2, 3)
  CHECK(p.shape() == Shape{4, 2, 3});
  CHECK(p.strides() == Shape{1, 12, 4});
  CHECK(!p.is_contiguous());
  CHECK(p.at({3, 1, 2}) == t.at({1, 2, 3}));
  CHECK_THROWS_AS(p.view({24}), Error);  // needs a copy
  Tensor r = p.reshape({24});              // which reshape makes
  CHECK(!r.shares_storage_with(t));
  CHECK(r.at({1}) == 4.0);  // p[0,0,1] = t[0,1,0] = 4
  CHECK_THROWS_AS(t.permute({0, 0, 1}), Error);

  Tensor tr = t.transpose(0, 2);
  CHECK(tr.shape() == Shape{4, 3, 2});
  CHECK(tr.at({1, 2, 1}) == t.at({1, 2, 1}));
  CHECK(tr.at({3, 0, 1}) == t.at({1, 0, 3}));

  Tensor s = t.slice(2, 1, 4, 2);  // columns 1, 3
  CHECK(s.shape() == Shape{2, 3, 2});
  CHECK(s.offset() == 1);
  CHECK(s.at({1, 2, 1}) == t.at({1, 2, 3}));
  CHECK(t.slice(1, -2, 3).shape() == Shape{2, 2, 4});
  CHECK(t.slice(1, 5, 9).shape() == Shape{2, 0, 4});
  Tensor n = t.narrow(1, 1, 2);
  CHECK(n.at({0, 0, 0}) == 4.0);
  CHECK_THROWS_AS(t.narrow(1, 2, 2), Error);

  Tensor u = t.unsqueeze(1);
  CHECK(u.shape() == Shape{2, 1, 3, 4});
  CHECK(u.squeeze(1).shape() == t.shape());
  CHECK(t.unsqueeze(-1).shape() == Shape{2, 3, 4, 1});
  CHECK(Tensor::zeros({1, 3, 1}).squeeze().shape() == Shape{3});
  CHECK_THROWS_AS(t.squeeze(0), Error);

  Tensor col = iota({3, 1});
  Tensor ex = col.expand({2, 3, 4});
  CHECK(ex.strides() == Shape{0, 1, 0});
  CHECK(ex.at({1, 2, 3}) == 2.0);
  CHECK(col.expand({-1, 5}).shape() == Shape{3, 5});
  CHECK_THROWS_AS(iota({3, 2}).expand({3, 4}), Error);

  CHECK(t.flatten(1).shape() == Shape{2, 12});
  CHECK(t.flatten().shape() == Shape{24});
  CHECK_THROWS_AS(t.size(3), Error);
  CHECK(t.size(-1) == 4);
}

TEST_CASE("view after slicing keeps strides where PyTorch can") {
  Tensor t = iota({4, 6});
  Tensor s = t.slice(1, 0, 6, 2);  // (4, 3) stride (6, 2)
  Tensor v = s.view({2, 2, 3});
  CHECK(v.shares_storage_with(t));
  CHECK(v.strides() == Shape{12, 6, 2});
  CHECK(v.at({1, 1, 2}) == t.at({3, 4}));
  Tensor flat = s.view({12});  // rows of stride 2 that continue each other: still one strided run
  CHECK(flat.strides() == Shape{2});
  CHECK(flat.at({11}) == t.at({3, 4}));
  CHECK_THROWS_AS(t.slice(1, 0, 3).view({12}), Error);  // rows with gaps between them
}

TEST_CASE("contiguous, clone and copy_ through strided views") {
  Tensor t = iota({3, 4});
  Tensor c = t.transpose(0, 1).contiguous();
  CHECK(c.is_contiguous());
  CHECK(values(c) == std::vector<float>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11});
  Tensor same = t.contiguous();
  CHECK(same.shares_storage_with(t));
  Tensor cl = t.clone();
  CHECK(!cl.shares_storage_with(t));
  cl.fill_(1.0);
  CHECK(t.at({0, 0}) == 0.0);

  // Write a column through a view: only that column changes.
  Tensor col = t.narrow(1, 2, 1);
  col.copy_(Tensor::full({3, 1}, -1.0, DType::float64));
  CHECK(values(t) == std::vector<float>{0, 1, -1, 3, 4, 5, -1, 7, 8, 9, -1, 11});
  t.slice(0, 0, 3, 2).fill_(9.0);
  CHECK(values(t.narrow(0, 1, 1)) == std::vector<float>{4, 5, -1, 7});
  CHECK(values(t.narrow(0, 2, 1)) == std::vector<float>{9, 9, 9, 9});
  CHECK_THROWS_AS(t.copy_(Tensor::zeros({4, 3})), Error);
}

TEST_CASE("strided_loop visits every element once in row-major order") {
  Tensor t = iota({2, 3, 5}).permute({1, 2, 0});
  std::vector<float> seen;
  const float* base = static_cast<const float*>(t.storage()->data());
  const std::array<const int64_t*, 1> st{t.strides().data()};
  strided_loop<1>(t.shape(), st, {t.offset()}, [&](int64_t o) { seen.push_back(base[o]); });
  CHECK(seen == values(t.contiguous()));
  CHECK(seen.size() == 30);
}

TEST_CASE("CUDA tensors fail clearly without a device") {
  if (cuda_available()) {
    MESSAGE("skipped: a CUDA device is present (covered by test_cuda)");
    return;
  }
  // retikd::Error without CUDA support; the runtime's std::runtime_error naming the failed call with it.
  CHECK_THROWS_AS(Tensor::zeros({2}, DType::float32, Device::cuda(0)), std::runtime_error);
}

TEST_CASE("generator is reproducible and well distributed") {
  Generator a(42), b(42), c(43);
  for (int i = 0; i < 10; ++i) CHECK(a.next_u64() == b.next_u64());
  CHECK(Generator(42).next_u64() != c.next_u64());
  CHECK(Generator::derive(1, 2, 3).next_u64() == Generator::derive(1, 2, 3).next_u64());
  CHECK(Generator::derive(1, 2, 3).next_u64() != Generator::derive(1, 3, 2).next_u64());

  Generator g(7);
  double sum = 0, sum2 = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    double x = g.normal();
    sum += x;
    sum2 += x * x;
  }
  CHECK(std::fabs(sum / n) < 0.01);
  CHECK(std::fabs(sum2 / n - 1.0) < 0.02);
  std::vector<int> counts(7, 0);
  for (int i = 0; i < 70000; ++i) ++counts[g.below(7)];
  for (int k : counts) CHECK(std::abs(k - 10000) < 500);

  Generator s(9);
  s.normal();  // leaves a spare normal in the state
  Generator r(0);
  r.set_state(s.state());
  CHECK(r.normal() == s.normal());
  CHECK(r.next_u64() == s.next_u64());
}

TEST_CASE("initialisers follow PyTorch's bounds") {
  Generator g(3);
  Tensor w = Tensor::empty({64, 32, 3, 3});
  kaiming_uniform_(w, g, std::sqrt(5.0));  // nn.Conv2d's default
  // gain √(2/(1+5)) · √(3/fan_in) = 1/√fan_in, PyTorch's documented default bound
  const double bound = 1.0 / std::sqrt(32.0 * 9.0);
  double mx = 0;
  for (float v : values(w)) mx = std::max(mx, std::fabs(double(v)));
  CHECK(mx <= bound);
  CHECK(mx > 0.95 * bound);

  Tensor k = Tensor::empty({256, 128});
  kaiming_normal_(k, g, 0.0, true, "relu");
  double var = 0;
  for (float v : values(k)) var += double(v) * v;
  var /= k.numel();
  CHECK(var == doctest::Approx(2.0 / 256).epsilon(0.05));

  Tensor t = Tensor::empty({10000});
  trunc_normal_(t, 0.0, 0.02, -0.04, 0.04, g);
  for (float v : values(t)) CHECK(std::fabs(v) <= 0.04f);
  CHECK_THROWS_AS(kaiming_uniform_(t, g), Error);  // 1-D: no fan-in

  Generator g2(3);
  CHECK(values(rand({4}, g2)) != values(rand({4}, g2)));
}

TEST_CASE("thread pool covers ranges and propagates errors") {
  std::vector<std::atomic<int>> hits(10007);
  parallel_for(0, 10007, 16, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) hits[i]++;
  });
  for (auto& h : hits) CHECK(h.load() == 1);
  // Nested parallel_for runs inline instead of deadlocking.
  std::atomic<int64_t> total{0};
  parallel_for(0, 8, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i)
      parallel_for(0, 100, 1, [&](int64_t a, int64_t b) { total += b - a; });
  });
  CHECK(total.load() == 800);
  CHECK_THROWS_AS(parallel_for(0, 1000, 1, [&](int64_t lo, int64_t) {
                    if (lo > 500) throw Error("boom");
                  }),
                  Error);
}

TEST_CASE("thread pool: many short regions back to back, with polling workers and with sleeping ones") {
  // Regions follow each other faster than a worker can go to sleep (polling), or every worker sleeps between
  // them (spin 0): either way every task runs exactly once and no wake-up is lost (a lost one hangs here).
  for (int64_t spin_us : {int64_t(0), int64_t(50), int64_t(5000)}) {
    CAPTURE(spin_us);
    ThreadPool pool(3, spin_us);
    std::atomic<int64_t> total{0};
    int64_t expected = 0;
    for (int region = 0; region < 3000; ++region) {
      const int64_t tasks = 1 + region % 7;
      expected += tasks * (tasks + 1) / 2;
      pool.run(tasks, [&](int64_t t) { total += t + 1; });
      if (region % 1000 == 999) std::this_thread::sleep_for(std::chrono::milliseconds(1));  // let them sleep
    }
    CHECK(total.load() == expected);
    CHECK_THROWS_AS(pool.run(4, [](int64_t t) {
                      if (t == 2) throw Error("boom");
                    }),
                    Error);
    pool.run(2, [&](int64_t) { total += 1; });  // still usable after an exception
    CHECK(total.load() == expected + 2);
  }
}

// ---- host block cache (core/host_block_cache.hpp) ---------------------------------------------------------
TEST_CASE("large host blocks are reused after release, small ones are not cached") {
  HostBlockCache& cache = HostBlockCache::instance();
  cache.empty();
  const void* first = nullptr;
  {
    Tensor big = Tensor::empty({3 << 18});  // 3 MiB of float32
    first = big.raw_data();
    CHECK(cache.cached_bytes() == 0);
  }
  CHECK(cache.cached_bytes() == HostBlockCache::rounded(3u << 20));
  {
    Tensor again = Tensor::empty({3 << 18});  // the same size: the cached block comes back
    CHECK(again.raw_data() == first);
    CHECK(cache.cached_bytes() == 0);
    CHECK(reinterpret_cast<std::uintptr_t>(again.raw_data()) % 64 == 0);
  }
  {
    Tensor much_bigger = Tensor::empty({1 << 21});  // 8 MiB: more than 1.25× the cached block, a fresh one
    CHECK(much_bigger.raw_data() != first);
    CHECK(cache.cached_bytes() == HostBlockCache::rounded(3u << 20));
  }
  {
    Tensor small = Tensor::empty({1000});  // below 1 MiB: never cached
    (void)small;
  }
  CHECK(cache.cached_bytes() == HostBlockCache::rounded(3u << 20) + HostBlockCache::rounded(8u << 20));
  empty_host_block_cache();
  CHECK(cache.cached_bytes() == 0);
}
