// scripts/gpu_bench_kd.cpp — whole-model GPU timings beside torch_anchor.py's rows (issue 6), built by
// scripts/gpu_prepare.sh and run by scripts/gpu_check.sh: CUDA events on the legacy stream every retikd
// launcher uses, 3 warm-up calls, median of 10.
//
//   retikd teacher_fwd_b32   ViT-B/16 forward, batch 32, 224 px, fp32, no tape (torch: "vit_base_patch16_224
//                            fp32 eager b32")
//   retikd student_step_b32  MobileNetV2 training step: forward, cross-entropy, backward, AdamW; batch 32, 224 px
//   retikd kd_step_b32       one CrossArchitectureDistiller step, batch 32, 224 px, ViT-B/16 → MobileNetV2, one
//                            view, PCA 12 heads × 64 on the 14 × 14 grid (student upsampled, linear Q/K/V), GL 8
//                            channel groups 1280 → 768, the discriminator and its update, AdamW — torch_anchor.py's
//                            "KD train step fp32" does the same work except that its PCA target is the teacher's
//                            last-block attention probabilities per head while retikd's paper target is the
//                            teacher-token affinity (DESIGN.md §5)
//   retikd *_tf32conv        the same step with PyTorch eager's default precision policy: TF32 for cuDNN
//                            convolutions (torch.backends.cudnn.allow_tf32 = True), strict fp32 GEMMs
// then "retikd kd_step_mem_gib X": the device memory the process took from the driver for the KD step
// (cudaMemGetInfo before the models were built and after the timed steps: weights, activations, the caching
// allocator's free blocks, cuBLAS / cuDNN workspaces) — an upper bound of its peak allocation, to set beside
// torch's max_memory_allocated. A configuration that fails prints "retikd <key> FAILED: <error>" and the rest go on.
// After each timing, one more call runs under GpuOpProfiler and its per-op table is printed (lines
// "profile ..."), with the teacher's forward inside the KD step timed on its own (kd_teacher_part_b32).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "retikd/core/random.hpp"
#include "retikd/cuda/blas.hpp"
#include "retikd/autograd/gpu_op_profiler.hpp"
#include "retikd/cuda/runtime.hpp"
#include "retikd/kd/distiller.hpp"
#include "retikd/nn/models.hpp"
#include "retikd/ops/loss.hpp"
#include "retikd/optim/optim.hpp"

using namespace retikd;

namespace {

const Device kGpu = Device::cuda(0);

double median_ms(const std::function<void()>& step, int warm = 3, int iters = 10) {
  for (int i = 0; i < warm; ++i) step();
  cuda::synchronize(0);
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  std::vector<float> t;
  for (int i = 0; i < iters; ++i) {
    cudaEventRecord(a, nullptr);
    step();
    cudaEventRecord(b, nullptr);
    cudaEventSynchronize(b);
    float ms = 0.f;
    cudaEventElapsedTime(&ms, a, b);
    t.push_back(ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  cuda::synchronize(0);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

double used_gib() {
  size_t free_b = 0, total_b = 0;
  cudaMemGetInfo(&free_b, &total_b);
  return static_cast<double>(total_b - free_b) / (1024.0 * 1024.0 * 1024.0);
}

Tensor random_images(Generator& gen, int64_t b) {
  Tensor x = Tensor::empty({b, 3, 224, 224}, DType::float32);
  normal_(x, 0.0, 1.0, gen);
  return x;
}

// One more call of fn under the op profiler; its table, each line prefixed "profile <key>".
void profile(const std::string& key, const std::function<void()>& fn) {
  GpuOpProfiler prof(0);
  prof.start();
  fn();
  prof.mark("(after the last op: optimizer, host work)");
  prof.stop();
  const std::string table = prof.report(30);
  std::size_t start = 0;
  while (start < table.size()) {
    const std::size_t end = table.find('\n', start);
    std::printf("profile %s | %s\n", key.c_str(), table.substr(start, end - start).c_str());
    if (end == std::string::npos) break;
    start = end + 1;
  }
}

void run(const std::string& key, const std::function<void()>& body) {
  try {
    body();
  } catch (const std::exception& e) {
    std::printf("retikd %s FAILED: %s\n", key.c_str(), e.what());
    std::fflush(stdout);
  }
}

}  // namespace

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (cuda::device_count() == 0) {
    std::printf("gpu_bench_kd: no CUDA device\n");
    return 1;
  }
  std::printf("gpu_bench_kd on %s\n", cuda::device_name(0).c_str());
  const int64_t B = 32;
  Generator gen(7);
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < B; ++i) labels.push_back(i % 4);
  const Tensor y = Tensor::from_vector(labels, {B});
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < B; ++i) ids.push_back(i);

  const double base_gib = used_gib();
  run("kd_step_b32", [&] {
    kd::DistillConfig c = kd::distill_preset("paper");
    c.views.augmented_views = 0;  // one view, as torch_anchor.py
    c.pca.heads = 12;
    c.pca.head_dim = 64;
    c.pca.projection = kd::QkvProjection::linear;
    c.pca.align = kd::GridAlign::upsample_student;
    c.gl.align = kd::GridAlign::upsample_student;
    auto teacher = kd::make_teacher(c, gen);
    auto student = kd::make_student(c, gen);
    kd::CrossArchitectureDistiller d(teacher, student, c, gen);
    teacher->to(kGpu);
    student->to(kGpu);
    d.heads().to(kGpu);
    const Tensor x = random_images(gen, B).to(kGpu);
    const Tensor yg = y.to(kGpu);
    double epoch = 10.0;  // past any KD ramp
    const double ms = median_ms([&] { d.step(x, yg, ids, epoch); });
    std::printf("retikd kd_step_b32 %.3f ms %.1f img/s\n", ms, 1e3 * B / ms);
    std::printf("retikd kd_step_mem_gib %.2f\n", used_gib() - base_gib);
    const double tms = median_ms([&] { kd::TeacherFeatures t = d.teacher_forward(x); });
    std::printf("retikd kd_teacher_part_b32 %.3f ms\n", tms);
    profile("kd_step_b32", [&] { d.step(x, yg, ids, epoch); });
    // PyTorch eager's default precision: TF32 convolutions (cudnn.allow_tf32), strict fp32 matmuls.
    cuda::set_allow_tf32_conv(true);
    const double ms_tf32 = median_ms([&] { d.step(x, yg, ids, epoch); });
    std::printf("retikd kd_step_b32_tf32conv %.3f ms %.1f img/s\n", ms_tf32, 1e3 * B / ms_tf32);
    profile("kd_step_b32_tf32conv", [&] { d.step(x, yg, ids, epoch); });
    cuda::set_allow_tf32_conv(false);
  });
  cuda::empty_cache();

  run("teacher_fwd_b32", [&] {
    auto t = std::make_shared<nn::VisionTransformer>(nn::ViTConfig::base(4, 224, 16), gen);
    t->eval();
    t->to(kGpu);
    const Tensor x = random_images(gen, B).to(kGpu);
    const double ms = median_ms([&] {
      NoGradGuard ng;
      Var out = t->forward(Var(x, false));
    });
    std::printf("retikd teacher_fwd_b32 %.3f ms %.1f img/s\n", ms, 1e3 * B / ms);
    profile("teacher_fwd_b32", [&] {
      NoGradGuard ng;
      Var out = t->forward(Var(x, false));
    });
  });
  cuda::empty_cache();

  run("student_step_b32", [&] {
    nn::ModelOptions o;
    o.num_classes = 4;
    auto s = nn::create_model("mobilenet_v2", o, gen);
    s->train();
    s->to(kGpu);
    optim::AdamWOptions ao;
    ao.lr = 1e-4;
    optim::AdamW opt({{s->trainable_parameters(), ao.lr, ao.weight_decay, "student"}}, ao);
    const Tensor x = random_images(gen, B).to(kGpu);
    const Tensor yg = y.to(kGpu);
    auto step = [&] {
      Var loss = ops::cross_entropy(s->forward(Var(x, false)), yg);
      opt.zero_grad();
      loss.backward();
      opt.step();
    };
    const double ms = median_ms(step);
    std::printf("retikd student_step_b32 %.3f ms %.1f img/s\n", ms, 1e3 * B / ms);
    profile("student_step_b32", step);
    cuda::set_allow_tf32_conv(true);
    const double ms_tf32 = median_ms(step);
    std::printf("retikd student_step_b32_tf32conv %.3f ms %.1f img/s\n", ms_tf32, 1e3 * B / ms_tf32);
    cuda::set_allow_tf32_conv(false);
  });
  return 0;
}
