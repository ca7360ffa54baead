// bench/bench_jetson.cpp — the student's inference on the device it runs on, next to the Jetson Nano's
// ceilings: one binary that times every kernel MobileNetV2's inference uses (dense and pointwise convolution,
// depthwise convolution, activation, residual add, batch norm, pooling, GEMM, the fp16 → fp32 weight
// conversion of a bundle) at the 224-px student's shapes, then the whole folded student at batch 1 / 8 / 32 (through
// deploy::CpuEngine, classify's CPU path, and through the modules),
// and prints achieved GFLOP/s and GB/s beside what the Nano's roofline allows for the same work:
//     Nano (Maxwell GM20B, 128 cores at 921.6 MHz, 10 W mode): 236 GFLOP/s fp32, 472 GFLOP/s fp16 (HFMA2),
//     25.6 GB/s LPDDR4 (64-bit at 1600 MHz) shared with the CPU.
// "Nano bound" = max(FLOPs / peak, bytes / 25.6 GB/s): the least time any implementation needs there, with fp16
// moving half the bytes. --roofline adds the per-layer table of the student (deploy::layer_costs: MACs,
// weights and activations each layer must move when BN is folded and activations are fused).
//
//   retikd_bench_jetson [--img 224] [--batches 1,8,32] [--min-time 0.5] [--threads N] [--json FILE]
//                       [--roofline] [--quick] [--width 1.0]
//
// It uses no Google Benchmark (one table, one JSON, and it cross-compiles for aarch64 with nothing else):
// each measurement runs once to warm up, then repeats for at least --min-time seconds (and 3 times), and
// reports the median. The CPU path is timed always (NEON on the Nano's Cortex-A57, AVX2 / AVX-512 on x86). In a
// CUDA build with a device, the same kernels are timed again on the GPU in fp32 and fp16 with CUDA events
// (GpuTimer: an event pair around each call on the stream retikd launches on, the same warm-up / min-time /
// median rule), then the folded student through deploy::GpuHalfStudent in fp32 and fp16 at every batch, and
// batch 1 replayed from a CUDA graph. GPU forward rows start from images already on the device and end with
// the logits on the host (what a classifier needs); the graph row includes copying the image in.
//   --no-gpu skips the GPU section; --no-cpu skips the CPU section (a GPU run on a slow host).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include <retikd/core/cli_args.hpp>
#include <retikd/core/parallel.hpp>
#include <retikd/core/random.hpp>
#include <retikd/deploy/cpu_engine.hpp>
#include <retikd/deploy/fold.hpp>
#include <retikd/io/atomic_file.hpp>
#include <retikd/io/json.hpp>
#include <retikd/nn/models.hpp>
#include <retikd/ops/activation.hpp>
#include <retikd/ops/conv.hpp>
#include <retikd/ops/elementwise.hpp>
#include <retikd/ops/matmul.hpp>
#include <retikd/ops/norm.hpp>
#include <retikd/ops/pool.hpp>
#include <retikd/ops/softmax.hpp>
#ifdef RETIKD_WITH_CUDA
#include <cuda_runtime.h>

#include <retikd/cuda/runtime.hpp>
#include <retikd/deploy/gpu_inference.hpp>
#endif

using namespace retikd;

namespace {

// The Jetson Nano's ceilings (10 W mode, GPU at 921.6 MHz).
constexpr double kNanoFp32 = 128 * 2 * 0.9216e9;  // 235.9 GFLOP/s
constexpr double kNanoFp16 = 2 * kNanoFp32;       // 471.9 GFLOP/s with HFMA2
constexpr double kNanoBandwidth = 25.6e9;         // bytes/s

double nano_seconds(double flops, double bytes, bool fp16) {
  return std::max(flops / (fp16 ? kNanoFp16 : kNanoFp32), bytes / kNanoBandwidth);
}

struct Options {
  int64_t img = 224;
  std::vector<int64_t> batches = {1, 8, 32};
  double min_time = 0.5;
  int threads = 0;
  std::string json;
  bool roofline = false;
  bool quick = false;
  double width = 1.0;
  bool cpu = true;
  bool gpu = true;
};

struct Timing {
  double median = 0, best = 0;
  int reps = 0;
};

// A timer runs fn once to warm up, then repeats it (at least 3 times and min_time seconds) and reports the median.
using TimerFn = std::function<Timing(const std::function<void()>&)>;

// Wall-clock timing of host code (the CPU path).
struct CpuTimer {
  double min_time;
  Timing operator()(const std::function<void()>& fn) const {
    using clock = std::chrono::steady_clock;
    fn();  // warm-up: first-touch allocation, packed buffers, the thread pool
    std::vector<double> t;
    const auto start = clock::now();
    while (t.size() < 3 || std::chrono::duration<double>(clock::now() - start).count() < min_time) {
      const auto a = clock::now();
      fn();
      t.push_back(std::chrono::duration<double>(clock::now() - a).count());
      if (t.size() >= 1000) break;
    }
    std::sort(t.begin(), t.end());
    return {t[t.size() / 2], t.front(), static_cast<int>(t.size())};
  }
};

#ifdef RETIKD_WITH_CUDA
// CUDA-event timing of GPU work: one event pair around each call on the legacy default stream, which every
// retikd launcher uses outside a graph capture; the elapsed time is the device's, not the host's.
struct GpuTimer {
  double min_time;
  Timing operator()(const std::function<void()>& fn) const {
    fn();  // warm-up: cuDNN algorithm choice, cuBLAS workspace, the caching allocator's first blocks
    cuda::synchronize(0);
    cudaEvent_t a = nullptr, b = nullptr;
    if (cudaEventCreate(&a) != cudaSuccess || cudaEventCreate(&b) != cudaSuccess)
      throw std::runtime_error("bench_jetson: cudaEventCreate failed");
    std::vector<double> t;
    double total = 0;
    while (t.size() < 3 || total < min_time) {
      cudaEventRecord(a, nullptr);
      fn();
      cudaEventRecord(b, nullptr);
      cudaEventSynchronize(b);
      float ms = 0;
      cudaEventElapsedTime(&ms, a, b);
      t.push_back(ms / 1e3);
      total += ms / 1e3;
      if (t.size() >= 2000) break;
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    cuda::synchronize(0);  // reports an asynchronous kernel error here rather than in the next row
    std::sort(t.begin(), t.end());
    return {t[t.size() / 2], t.front(), static_cast<int>(t.size())};
  }
};
#endif

struct Row {
  std::string section, name, shape, dtype;
  double flops = 0, bytes = 0;  // bytes at this dtype
  Timing t;
  int64_t images = 0;  // forward rows: images per call
};

std::string shape_text(const Shape& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? "x" : "") + std::to_string(s[i]);
  return out;
}

std::string number(double v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

const char* cpu_isa() {
#if defined(__AVX512F__)
  return "x86-64 AVX-512";
#elif defined(__AVX2__)
  return "x86-64 AVX2";
#elif defined(__aarch64__)
  return "AArch64 NEON";
#elif defined(__SSE2__)
  return "x86-64 SSE2";
#else
  return "generic";
#endif
}

Options parse(int argc, char** argv) {
  Options o;
  try {
    cli::ArgReader args(argc, argv);
    while (args.next()) {
      const std::string& a = args.arg();
      if (a == "--help" || a == "-h") {
        std::printf("usage: retikd_bench_jetson [--img PX] [--batches 1,8,32] [--min-time S] [--threads N]\n"
                    "                           [--json FILE] [--roofline] [--quick] [--width W] [--no-gpu] [--no-cpu]\n"
                    "  --img 32-1024 (a multiple of 32), --batches up to 16 values 1-1024, --min-time 0.001-600 s,\n"
                    "  --threads 1-256 (default: RETIKD_NUM_THREADS or every core), --width 0.1-4\n"
                    "  --quick: 96 px, batches 1 and 2, short timings (a smoke, e.g. under qemu)\n");
        std::exit(0);
      } else if (a == "--img") {
        o.img = args.integer(32, 1024);
      } else if (a == "--batches") {
        o.batches = args.integer_list(1, 1024, 16);
      } else if (a == "--min-time") {
        o.min_time = args.real(0.001, 600.0);
      } else if (a == "--threads") {
        o.threads = static_cast<int>(args.integer(1, 256));
      } else if (a == "--json") {
        o.json = args.value();
      } else if (a == "--roofline") {
        o.roofline = true;
      } else if (a == "--quick") {
        o.quick = true;
      } else if (a == "--width") {
        o.width = args.real(0.1, 4.0);
      } else if (a == "--no-gpu") {
        o.gpu = false;
      } else if (a == "--no-cpu") {
        o.cpu = false;
      } else {
        throw cli::ArgumentError("unknown option " + a);
      }
    }
    if (o.img % 32 != 0) throw cli::ArgumentError("--img must be a multiple of 32, got " + std::to_string(o.img));
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_jetson: %s (see --help)\n", e.what());
    std::exit(2);
  }
  if (o.quick) {
    o.img = 96;
    o.batches = {1, 2};
    o.min_time = 0.05;
  }
  return o;
}

// ---- the kernels ---------------------------------------------------------------------------------------------

// A convolution at the student's shape: FLOPs count the taps inside the input (padding excluded).
// Where a kernel runs: the device and the storage dtype of its tensors.
struct Placement {
  Device device = Device::cpu();
  DType dtype = DType::float32;
  Tensor on(const Tensor& t) const { return t.to(dtype).to(device); }
  double element_bytes() const { return static_cast<double>(dtype_size(dtype)); }
  std::string name() const { return dtype == DType::float16 ? "fp16" : "fp32"; }
};

Row conv_row(const std::string& name, int64_t C, int64_t H, int64_t O, int64_t k, int64_t stride, int64_t groups,
             const TimerFn& timer, Generator& gen, const Placement& at) {
  const Tensor x = at.on(randn({1, C, H, H}, gen)), w = at.on(randn({O, C / groups, k, k}, gen)),
               b = at.on(randn({O}, gen));
  const auto opt = ops::Conv2dOptions().with_stride(stride).with_padding((k - 1) / 2).with_groups(groups);
  const auto g = ops::impl::conv2d_geometry(x.shape(), w.shape(), opt);
  auto inside = [&](int64_t in, int64_t out) {
    double n = 0;
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < k; ++i) {
        const int64_t p = o * stride - (k - 1) / 2 + i;
        n += p >= 0 && p < in;
      }
    return n;
  };
  Row r;
  r.section = "kernel";
  r.name = name;
  r.shape = shape_text(x.shape()) + " -> " + std::to_string(O) + "x" + std::to_string(g.OH) + "x" + std::to_string(g.OW) +
            " k" + std::to_string(k) + " s" + std::to_string(stride) + (groups > 1 ? " dw" : "");
  r.dtype = at.name();
  r.flops = 2.0 * static_cast<double>(O) * static_cast<double>(C / groups) * inside(H, g.OH) * inside(H, g.OW);
  r.bytes = at.element_bytes() * static_cast<double>(x.numel() + w.numel() + b.numel() + O * g.OH * g.OW);
  r.t = timer([&] { Tensor y = ops::impl::conv2d(x, w, b, opt); });
  return r;
}

// The kernels at the placement `at`; a kernel with no path there (e.g. an op without an fp16 GPU kernel) is
// reported and left out, not fatal for the table.
std::vector<Row> kernel_rows(const TimerFn& timer, const Placement& at) {
  Generator gen(1);
  std::vector<Row> rows;
  const double es = at.element_bytes();
  auto attempt = [&](const std::string& name, const std::function<void()>& add) {
    try {
      add();
    } catch (const std::exception& e) {
      std::printf("  (%s %s on %s not timed: %s)\n", name.c_str(), at.name().c_str(), at.device.to_string().c_str(),
                  e.what());
    }
  };
  auto conv = [&](const std::string& name, int64_t C, int64_t H, int64_t O, int64_t k, int64_t stride,
                  int64_t groups) {
    attempt(name, [&] { rows.push_back(conv_row(name, C, H, O, k, stride, groups, timer, gen, at)); });
  };
  // MobileNetV2 at 224 px, batch 1 (docs/models.md): the stem, three pointwise layers, three depthwise.
  conv("conv 3x3 (stem)", 3, 224, 32, 3, 2, 1);
  conv("pointwise expand", 24, 56, 144, 1, 1, 1);
  conv("pointwise project", 144, 56, 24, 1, 1, 1);
  conv("pointwise 320->1280", 320, 7, 1280, 1, 1, 1);
  conv("depthwise 3x3", 144, 56, 144, 3, 1, 144);
  conv("depthwise 3x3 stride 2", 144, 56, 144, 3, 2, 144);
  conv("depthwise 3x3 (7x7 map)", 960, 7, 960, 3, 1, 960);

  auto simple = [&](const std::string& name, const Shape& s, double flops, double bytes,
                    const std::function<void()>& fn) {
    attempt(name, [&] {
      Row r;
      r.section = "kernel";
      r.name = name;
      r.shape = shape_text(s);
      r.dtype = at.name();
      r.flops = flops;
      r.bytes = bytes;
      r.t = timer(fn);
      rows.push_back(r);
    });
  };
  {
    const Tensor x = at.on(randn({1, 144, 56, 56}, gen));
    const double n = static_cast<double>(x.numel());
    simple("relu6", x.shape(), 2 * n, 2 * es * n, [&] { Tensor y = ops::impl::relu6(x); });
    // Batch norm's weight and bias follow the activations' dtype; its running statistics stay float32.
    const Placement stats{at.device, DType::float32};
    Tensor w = at.on(randn({144}, gen)), b = at.on(randn({144}, gen)), m = stats.on(randn({144}, gen)),
           v = stats.on(rand({144}, gen));
    simple("batch norm (eval; folded away)", x.shape(), 2 * n, 2 * es * n,
           [&] { auto y = ops::impl::batch_norm(x, w, b, m, v, false, 0.1, 1e-5); });
  }
  {
    const Tensor a = at.on(randn({1, 24, 56, 56}, gen)), b = at.on(randn({1, 24, 56, 56}, gen));
    const double n = static_cast<double>(a.numel());
    simple("residual add", a.shape(), n, 3 * es * n, [&] { Tensor y = ops::impl::add(a, b); });
  }
  {
    const Tensor x = at.on(randn({32, 1280, 7, 7}, gen));
    const double n = static_cast<double>(x.numel());
    simple("global average pool", x.shape(), n, es * (n + 32 * 1280), [&] { Tensor y = ops::impl::adaptive_avg_pool2d(x, 1, 1); });
  }
  {
    const Tensor x = at.on(randn({1, 64, 112, 112}, gen));
    const double out = 64.0 * 56 * 56;
    simple("max pool 3x3 s2 (ResNet)", x.shape(), 9 * out, es * (static_cast<double>(x.numel()) + out),
           [&] { auto y = ops::impl::max_pool2d(x, 3, 2, 1, false); });
  }
  auto gemm_row = [&](const std::string& name, int64_t M, int64_t N, int64_t K) {
    const Tensor a = at.on(randn({M, K}, gen)), b = at.on(randn({K, N}, gen));
    simple(name + " " + std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K), {M, N, K},
           2.0 * M * N * K, es * static_cast<double>(M * K + K * N + M * N), [&] { Tensor c = ops::impl::matmul(a, b); });
  };
  gemm_row("GEMM classifier", 32, 4, 1280);
  gemm_row("GEMM", 512, 512, 512);
  if (at.dtype == DType::float16 || !at.device.is_cuda()) {
    const int64_t n = 2211940;  // the folded MobileNetV2's parameters
    const Tensor h = randn({n}, gen).to(DType::float16).to(at.device);
    attempt("fp16 -> fp32 weights", [&] {
      Row r;
      r.section = "kernel";
      r.name = "fp16 -> fp32 weights (bundle load)";
      r.shape = std::to_string(n);
      r.dtype = "fp16";
      r.flops = 0;
      r.bytes = 6.0 * static_cast<double>(n);
      r.t = timer([&] { Tensor f = h.to(DType::float32); });
      rows.push_back(r);
    });
  }
  return rows;
}

// ---- the student ------------------------------------------------------------------------------------------------

std::vector<Row> forward_rows(const Options& o, const CpuTimer& timer, deploy::FoldedConvNet& folded, nn::Model& source) {
  std::vector<Row> rows;
  Generator gen(2);
  const double macs = folded.trace(o.img, o.img, 1).macs;
  // The engine classify runs on the CPU (deploy::CpuEngine: fused NCHWc layers), then the module path it replaces.
  std::shared_ptr<deploy::FoldedConvNet> shared(std::shared_ptr<deploy::FoldedConvNet>(), &folded);  // non-owning
  std::unique_ptr<deploy::CpuEngine> engine;
  if (deploy::CpuEngine::supports(folded)) engine = std::make_unique<deploy::CpuEngine>(shared);
  for (const int64_t b : o.batches) {
    const Tensor x = randn({b, 3, o.img, o.img}, gen);
    for (int variant = engine ? -1 : 0; variant < 2; ++variant) {
      nn::Model& m = variant <= 0 ? static_cast<nn::Model&>(folded) : source;
      Row r;
      r.section = "forward";
      r.name = variant < 0    ? "student forward (CpuEngine)"
               : variant == 0 ? "student forward (BN folded)"
                              : "student forward (BN separate)";
      r.shape = shape_text(x.shape());
      r.dtype = "fp32";
      r.images = b;
      r.flops = 2.0 * macs * static_cast<double>(b);
      // Weights once per batch, activations per image (the per-layer roofline's fp32 bytes).
      double w = 0, act = 0;
      for (const auto& c : deploy::layer_costs(folded, o.img, o.img, 1)) {
        w += 4.0 * static_cast<double>(c.weights);
        act += 4.0 * static_cast<double>(c.read + c.written);
      }
      r.bytes = w + act * static_cast<double>(b);
      NoGradGuard ng;
      if (variant < 0)
        r.t = timer([&] { Tensor y = engine->forward(x); });
      else
        r.t = timer([&] { Var y = m.forward(Var(x)); });
      rows.push_back(r);
      if (b > 8 && variant >= 0) break;  // the unfolded model only where it is cheap to time
    }
  }
  return rows;
}

#ifdef RETIKD_WITH_CUDA
// The folded student on the GPU (deploy::GpuHalfStudent) in fp32 and fp16 at every batch, then batch 1
// replayed from a CUDA graph; FLOPs and bytes as the CPU rows count them, bytes at the storage dtype.
std::vector<Row> gpu_forward_rows(const Options& o, const TimerFn& timer, nn::Model& source) {
  std::vector<Row> rows;
  Generator gen(2);
  for (const bool half : {false, true}) {
    const Placement at{Device::cuda(0), half ? DType::float16 : DType::float32};
    deploy::GpuHalfStudent student(deploy::fold_batch_norm(source), Device::cuda(0), half);
    const double macs = student.model().trace(o.img, o.img, 1).macs;
    double w = 0, act = 0;
    for (const auto& c : deploy::layer_costs(student.model(), o.img, o.img, 1)) {
      w += at.element_bytes() * static_cast<double>(c.weights);
      act += at.element_bytes() * static_cast<double>(c.read + c.written);
    }
    auto row = [&](const std::string& name, int64_t b, const std::function<void()>& fn) {
      Row r;
      r.section = "forward";
      r.name = name;
      r.shape = shape_text({b, 3, o.img, o.img});
      r.dtype = at.name();
      r.images = b;
      r.flops = 2.0 * macs * static_cast<double>(b);
      r.bytes = w + act * static_cast<double>(b);
      r.t = timer(fn);
      rows.push_back(r);
    };
    for (const int64_t b : o.batches) {
      const Tensor x = at.on(randn({b, 3, o.img, o.img}, gen));
      row(std::string("GPU student ") + at.name(), b, [&] { Tensor y = student.run(x); });
    }
    student.capture(o.img, o.img);
    const Tensor one = randn({1, 3, o.img, o.img}, gen);
    row(std::string("GPU student ") + at.name() + " CUDA graph", 1, [&] { Tensor y = student.run_captured(one); });
  }
  return rows;
}
#endif

struct ModelRoofline {
  std::vector<deploy::LayerCost> layers;
  double fp16_s = 0, fp32_s = 0, flops = 0, bytes16 = 0;
};

ModelRoofline roofline(deploy::FoldedConvNet& folded, int64_t img, int64_t batch) {
  ModelRoofline r;
  r.layers = deploy::layer_costs(folded, img, img, batch);
  for (const auto& c : r.layers) {
    const double f = 2.0 * c.macs;
    r.flops += f;
    r.bytes16 += c.bytes(2);
    r.fp16_s += nano_seconds(f, c.bytes(2), true);
    r.fp32_s += nano_seconds(f, c.bytes(4), false);
  }
  return r;
}

// Bytes the same work moves in fp16 (what the GPU path stores); a conversion row already counts its bytes.
double fp16_bytes(const Row& r) { return r.dtype == "fp16" ? r.bytes : r.bytes / 2; }

void print_rows(const std::vector<Row>& rows) {
  std::printf("%-36s %-32s %9s %9s %8s %7s | %10s %10s %5s\n", "what", "shape", "ms", "GFLOP/s", "GB/s", "FLOP/B",
              "Nano fp32", "Nano fp16", "bound");
  for (const Row& r : rows) {
    const double s = r.t.median;
    const double ai = r.bytes > 0 ? r.flops / r.bytes : 0;
    const double n32 = nano_seconds(r.flops, r.bytes, false), n16 = nano_seconds(r.flops, fp16_bytes(r), true);
    const bool memory = fp16_bytes(r) / kNanoBandwidth >= r.flops / kNanoFp16;
    std::printf("%-36.36s %-32.32s %9.3f %9.2f %8.2f %7.2f | %8.3fms %8.3fms %5s\n", r.name.c_str(), r.shape.c_str(),
                1e3 * s, r.flops / s / 1e9, r.bytes / s / 1e9, ai, 1e3 * n32, 1e3 * n16, memory ? "mem" : "math");
  }
}

std::string json_rows(const std::vector<Row>& rows) {
  std::string s = "[";
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    s += i ? ",\n    " : "\n    ";
    s += "{\"name\": " + io::json_string(r.name) + ", \"shape\": " + io::json_string(r.shape) +
         ", \"dtype\": " + io::json_string(r.dtype) + ", \"flops\": " + number(r.flops) + ", \"bytes\": " +
         number(r.bytes) + ", \"median_ms\": " + number(1e3 * r.t.median) + ", \"best_ms\": " +
         number(1e3 * r.t.best) + ", \"reps\": " + std::to_string(r.t.reps) + ", \"gflops\": " +
         number(r.flops / r.t.median / 1e9) + ", \"gbytes_per_s\": " + number(r.bytes / r.t.median / 1e9);
    if (r.images) s += ", \"images_per_s\": " + number(static_cast<double>(r.images) / r.t.median);
    s += ", \"nano_fp32_ms\": " + number(1e3 * nano_seconds(r.flops, r.bytes, false)) + ", \"nano_fp16_ms\": " +
         number(1e3 * nano_seconds(r.flops, fp16_bytes(r), true)) + "}";
  }
  return s + "\n  ]";
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const Options o = parse(argc, argv);
  if (o.threads > 0) ::setenv("RETIKD_NUM_THREADS", std::to_string(o.threads).c_str(), 1);
  try {
    const CpuTimer timer{o.min_time};
    std::printf("bench_jetson: CPU %s, %d threads (RETIKD_NUM_THREADS), min time %.2f s per row\n", cpu_isa(),
                thread_pool().num_threads(), o.min_time);
    std::printf("Nano ceilings: %.0f GFLOP/s fp32, %.0f GFLOP/s fp16, %.1f GB/s; ridge %.1f FLOP/B fp32, %.1f fp16\n",
                kNanoFp32 / 1e9, kNanoFp16 / 1e9, kNanoBandwidth / 1e9, kNanoFp32 / kNanoBandwidth,
                kNanoFp16 / kNanoBandwidth);
    std::string gpu = "none";
#ifdef RETIKD_WITH_CUDA
    if (cuda::device_count() > 0) {
      gpu = cuda::device_name(0) + " (sm_" + std::to_string(cuda::compute_capability(0)) + ")";
      std::printf("GPU: %s%s\n", gpu.c_str(), o.gpu ? " (timed with CUDA events after the CPU section)" : " (--no-gpu)");
    }
#endif
    std::printf("fp16: the CPU path has no fp16 arithmetic (a bundle's fp16 weights are widened once at load,\n"
                "timed below); fp16 compute is the GPU's (HFMA2 on sm_53).\n\n");

    std::vector<Row> kernels;
    if (o.cpu) {
      kernels = kernel_rows(timer, Placement{});
      std::printf("== kernels at MobileNetV2-224 shapes (batch 1 unless the shape says otherwise), this CPU ==\n");
      print_rows(kernels);
    }

    Generator gen(3);
    nn::ModelOptions mo;
    mo.num_classes = 4;
    mo.width_mult = o.width;
    auto source = nn::create_model("mobilenet_v2", mo, gen);
    source->eval();
    auto folded = deploy::fold_batch_norm(*source);
    std::vector<Row> forward;
    if (o.cpu) forward = forward_rows(o, timer, *folded, *source);
    std::printf("\n== the student: MobileNetV2 x%g, 4 classes, %lld px, %.3f GMACs/image ==\n", o.width,
                static_cast<long long>(o.img), folded->trace(o.img, o.img, 1).macs / 1e9);
    print_rows(forward);
    for (const Row& r : forward)
      std::printf("  %-30s batch %-3lld %8.1f images/s\n", r.name.c_str(), static_cast<long long>(r.images),
                  static_cast<double>(r.images) / r.t.median);

    std::vector<Row> gpu_kernels, gpu_forward;
#ifdef RETIKD_WITH_CUDA
    if (o.gpu && cuda::device_count() > 0) {
      const GpuTimer gpu_timer{o.min_time};
      for (const DType dt : {DType::float32, DType::float16}) {
        const std::vector<Row> k = kernel_rows(gpu_timer, Placement{Device::cuda(0), dt});
        gpu_kernels.insert(gpu_kernels.end(), k.begin(), k.end());
      }
      std::printf("\n== the same kernels on the GPU (%s), CUDA events ==\n", gpu.c_str());
      print_rows(gpu_kernels);
      gpu_forward = gpu_forward_rows(o, gpu_timer, *source);
      std::printf("\n== the student on the GPU (%s): images on the device, logits back on the host ==\n", gpu.c_str());
      print_rows(gpu_forward);
      for (const Row& r : gpu_forward)
        std::printf("  %-30s batch %-3lld %8.3f ms %10.1f images/s\n", r.name.c_str(), static_cast<long long>(r.images),
                    1e3 * r.t.median, static_cast<double>(r.images) / r.t.median);
    }
#endif

    const ModelRoofline one = roofline(*folded, o.img, 1), many = roofline(*folded, o.img, 32);
    std::printf("\n== Nano roofline of the student (per image; BN folded, activations fused) ==\n");
    std::printf("  batch 1 : %.2f ms fp16 (%.0f images/s), %.2f ms fp32; %.3f GFLOP, %.2f MB moved in fp16\n",
                1e3 * one.fp16_s, 1 / one.fp16_s, 1e3 * one.fp32_s, one.flops / 1e9, one.bytes16 / 1e6);
    std::printf("  batch 32: %.2f ms fp16 (%.0f images/s), %.2f ms fp32 per image\n", 1e3 * many.fp16_s / 32,
                32 / many.fp16_s, 1e3 * many.fp32_s / 32);
    if (o.roofline) {
      std::printf("\n%-32s %-10s %-16s %9s %9s %9s %8s %6s\n", "layer", "kind", "output", "MFLOP", "KB fp16",
                  "FLOP/B", "us fp16", "bound");
      for (const auto& c : one.layers) {
        const double f = 2.0 * c.macs, b = c.bytes(2);
        const bool memory = b / kNanoBandwidth >= f / kNanoFp16;
        std::printf("%-32.32s %-10s %-16s %9.2f %9.1f %9.2f %8.1f %6s\n", c.name.c_str(), c.kind.c_str(),
                    shape_text(c.out).c_str(), f / 1e6, b / 1e3, b > 0 ? f / b : 0.0,
                    1e6 * nano_seconds(f, b, true), memory ? "mem" : "math");
      }
    }

    if (!o.json.empty()) {
      std::string s = "{\n  \"device\": {\"cpu\": " + io::json_string(cpu_isa()) + ", \"threads\": " +
                      std::to_string(thread_pool().num_threads()) + ", \"gpu\": " + io::json_string(gpu) + "},\n";
      s += "  \"nano\": {\"fp32_gflops\": " + number(kNanoFp32 / 1e9) + ", \"fp16_gflops\": " + number(kNanoFp16 / 1e9) +
           ", \"bandwidth_gbs\": " + number(kNanoBandwidth / 1e9) + "},\n";
      s += "  \"options\": {\"img\": " + std::to_string(o.img) + ", \"width\": " + number(o.width) +
           ", \"min_time_s\": " + number(o.min_time) + "},\n";
      s += "  \"kernels\": " + json_rows(kernels) + ",\n  \"forward\": " + json_rows(forward) + ",\n";
      s += "  \"gpu_kernels\": " + json_rows(gpu_kernels) + ",\n  \"gpu_forward\": " + json_rows(gpu_forward) + ",\n";
      s += "  \"nano_roofline\": {\"batch1_fp16_ms\": " + number(1e3 * one.fp16_s) + ", \"batch1_fp32_ms\": " +
           number(1e3 * one.fp32_s) + ", \"batch32_fp16_ms_per_image\": " + number(1e3 * many.fp16_s / 32) +
           ", \"layers\": [";
      for (std::size_t i = 0; i < one.layers.size(); ++i) {
        const auto& c = one.layers[i];
        s += (i ? ",\n    " : "\n    ") + std::string("{\"name\": ") + io::json_string(c.name) + ", \"kind\": " +
             io::json_string(c.kind) + ", \"macs\": " + number(c.macs) + ", \"weights\": " + std::to_string(c.weights) +
             ", \"read\": " + std::to_string(c.read) + ", \"written\": " + std::to_string(c.written) +
             ", \"fp16_us\": " + number(1e6 * nano_seconds(2 * c.macs, c.bytes(2), true)) + "}";
      }
      s += "]}\n}\n";
      io::write_file_atomically(o.json, [&](const io::ByteSink& sink) { sink(s.data(), s.size()); }, "bench_jetson");
      std::printf("\nwrote %s\n", o.json.c_str());
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_jetson: error: %s\n", e.what());
    return 1;
  }
}
