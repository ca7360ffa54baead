// examples/distill_retina.cpp — the main job: teacher fine-tune → CE-only student baseline → distilled student
// → evaluation on the test split → fp16 student bundle, each stage resumable and skipped when finished.
// The stage logic is include/retikd/pipeline/distill_pipeline.hpp; this file parses the command line.
// docs/pipeline.md describes the stages, the files, the presets and the resume semantics.
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>

#include "retikd/core/cli_args.hpp"
#include "retikd/pipeline/distill_pipeline.hpp"

using namespace retikd;

namespace {

constexpr int64_t kMaxEpochs = 100000;

void usage(std::FILE* f) {
  std::fprintf(f,
      "usage: distill_retina [--data ROOT] [--manifest FILE] [--synthetic] [--preset paper|cakd|quick|smoke]\n"
      "                      [--out DIR] [--teacher vit_tiny|vit_small|vit_b16] [--teacher-init FILE]\n"
      "                      [--student mobilenet_v2|resnet18|efficientnet_b0] [--student-init imagenet-tflite|scratch]\n"
      "                      [--epochs-teacher N] [--epochs-student N] [--img PX] [--batch N] [--lr X]\n"
      "                      [--teacher-lr X] [--weight-decay X] [--views K] [--cache-teacher 0|1] [--seed N]\n"
      "                      [--skip-bad] [--allow-outside-root] [--limit-train N] [--limit-eval N] [--workers N]\n"
      "                      [--no-export]\n"
      "                      [--stop-after-epochs N] [--quiet]\n"
      "                      [--alpha X] [--lambda-pca X] [--lambda-gl X] [--lambda-adv X] [--logit-kd 0|1]\n"
      "                      [--temperature X] [--teacher-from DIR|FILE] [--no-ce] [--no-kd] [--bn-recalibrate 0|1]\n"
      "\n"
      "Stages (each under DIR/<stage>/, resumed when interrupted, skipped when complete):\n"
      "  teacher     fine-tune the ViT teacher with cross-entropy\n"
      "  student_ce  CE-only student baseline (same budget as the distilled student)\n"
      "  student_kd  cross-architecture distillation (PCA + GL projectors, multi-view, adversarial)\n"
      "  then: test-split evaluation -> DIR/metrics.json, DIR/report.md; fp16 bundle DIR/student_kd.rkd\n"
      "\n"
      "  --data ROOT          image root (split.tsv manifest or class folders); default ../shared/data/fundus4\n"
      "                       when its split.tsv exists, else the built-in synthetic set\n"
      "  --preset NAME        paper | cakd (GPU-sized) | quick (CPU, default) | smoke (seconds, synthetic)\n"
      "  --out DIR            default runs/<preset>\n"
      "Numbers are checked strictly; an option left out keeps the preset's value, and 0 means something only\n"
      "where said here. Ranges: --epochs-* 1-100000, --img 16-2048 (a multiple of the teacher's patch),\n"
      "--batch 1-4096, --lr/--teacher-lr 1e-9-10, --weight-decay 0-10, --views 0-16, --seed 0-2^63-1,\n"
      "--alpha 0-1, --lambda-* 0-1000, --temperature 0.01-100, --workers 0-64 (0: batches built on the main\n"
      "thread), 0|1 switches.\n"
      "  --epochs-student N   epochs of both student stages (CE baseline and distilled)\n"
      "  --limit-train N      a seeded subset of N training images (timing runs; 0: all); --limit-eval the same\n"
      "                       for val/test\n"
      "  --stop-after-epochs N  stop (as if killed) after N epochs in this call (0: never); run again to resume\n"
      "  --allow-outside-root accept manifest paths that lead outside the data root (refused by default)\n"
      "  --alpha X            weight of the CE in the KD stage (the KD terms get 1 - alpha in logit KD)\n"
      "  --lambda-pca/-gl/-adv X  weights of the PCA, GL and adversarial losses (0 switches one off)\n"
      "  --logit-kd 0|1       add logit KD, (1 - alpha) * T^2 * KL(teacher/T || student/T), T = --temperature\n"
      "  --teacher-from DIR   reuse the finished teacher of another run (DIR/teacher/model.safetensors, or a\n"
      "                       weights file) instead of training one: ablations and seed repeats share a teacher\n"
      "  --no-ce, --no-kd     skip the CE-only baseline / the distilled student (and its export)\n"
      "  --bn-recalibrate 0|1 re-centre the ImageNet student's batch norms on training images (default 1;\n"
      "                       nn/batchnorm_recalibration.hpp says why)\n"
      "scripts/ablation.sh runs the ablation of docs/results.md with these.\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  pipeline::PipelineOptions o;
  bool preset_given = false;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      // Every number is parsed strictly and within the range --help documents (core/cli_args.hpp); a bad
      // one is a usage error (exit status 2), never a silent fallback to the preset.
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw cli::ArgumentError(a + " needs a value");
        return argv[++i];
      };
      auto integer = [&](int64_t lo, int64_t hi) { return cli::parse_int(a, value(), lo, hi); };
      auto real = [&](double lo, double hi) { return cli::parse_real(a, value(), lo, hi); };
      auto switch01 = [&]() { return static_cast<int>(cli::parse_switch(a, value())); };
      if (a == "--help" || a == "-h") {
        usage(stdout);
        return 0;
      } else if (a == "--data") {
        o.data_root = value();
      } else if (a == "--manifest") {
        o.manifest = value();
      } else if (a == "--synthetic") {
        o.synthetic = true;
      } else if (a == "--preset") {
        o.preset = value();
        preset_given = true;
      } else if (a == "--out") {
        o.out_dir = value();
      } else if (a == "--teacher") {
        o.teacher = value();
      } else if (a == "--teacher-init") {
        o.teacher_init = value();
      } else if (a == "--student") {
        o.student = value();
      } else if (a == "--student-init") {
        o.student_init = value();
      } else if (a == "--epochs-teacher") {
        o.epochs_teacher = integer(1, kMaxEpochs);
      } else if (a == "--epochs-student") {
        o.epochs_student = integer(1, kMaxEpochs);
      } else if (a == "--img") {
        o.img = integer(16, 2048);
      } else if (a == "--batch") {
        o.batch = integer(1, 4096);
      } else if (a == "--lr") {
        o.lr = real(1e-9, 10.0);
      } else if (a == "--teacher-lr") {
        o.teacher_lr = real(1e-9, 10.0);
      } else if (a == "--weight-decay") {
        o.weight_decay = real(0.0, 10.0);
      } else if (a == "--views") {
        o.views = integer(0, 16);
      } else if (a == "--cache-teacher") {
        o.cache_teacher = switch01();
      } else if (a == "--alpha") {
        o.alpha = real(0.0, 1.0);
      } else if (a == "--lambda-pca") {
        o.lambda_pca = real(0.0, 1000.0);
      } else if (a == "--lambda-gl") {
        o.lambda_gl = real(0.0, 1000.0);
      } else if (a == "--lambda-adv") {
        o.lambda_adv = real(0.0, 1000.0);
      } else if (a == "--logit-kd") {
        o.logit_kd = switch01();
      } else if (a == "--temperature") {
        o.temperature = real(0.01, 100.0);
      } else if (a == "--bn-recalibrate") {
        o.recalibrate_bn = switch01();
      } else if (a == "--teacher-from") {
        o.teacher_from = value();
      } else if (a == "--no-ce") {
        o.run_ce = false;
      } else if (a == "--no-kd") {
        o.run_kd = false;
      } else if (a == "--seed") {
        o.seed = integer(0, std::numeric_limits<int64_t>::max());
      } else if (a == "--skip-bad") {
        o.skip_bad = true;
      } else if (a == "--allow-outside-root") {
        o.allow_outside_root = true;
      } else if (a == "--limit-train") {
        o.limit_train = integer(0, 1000000000);
      } else if (a == "--limit-eval") {
        o.limit_eval = integer(0, 1000000000);
      } else if (a == "--workers") {
        o.num_workers = static_cast<int>(integer(0, 64));
      } else if (a == "--no-export") {
        o.export_bundle = false;
      } else if (a == "--stop-after-epochs") {
        o.stop_after_epochs = integer(0, kMaxEpochs);
      } else if (a == "--quiet") {
        o.progress = false;
      } else {
        std::fprintf(stderr, "distill_retina: unknown option '%s' (see --help)\n", a.c_str());
        return 2;
      }
    }
    bool known = false;
    for (const auto& n : kd::distill_preset_names()) known = known || n == o.preset;
    if (!known) {
      std::fprintf(stderr, "distill_retina: unknown preset '%s' (paper, cakd, quick, smoke)\n", o.preset.c_str());
      return 2;
    }
    (void)preset_given;
    const pipeline::PipelineResult r = pipeline::run_distill_pipeline(o);
    std::printf("\n%-11s %9s %9s %9s %12s\n", "model", "accuracy", "macro_f1", "glaucoma", "parameters");
    for (const auto& st : r.stages)
      std::printf("%-11s %9.4f %9.4f %9.4f %12lld%s\n", st.name.c_str(), st.test.accuracy, st.test.macro_f1,
                  st.test.of("Glaucoma").recall, static_cast<long long>(st.params), st.skipped ? "  (not trained in this call)" : "");
    return 0;
  } catch (const cli::ArgumentError& e) {
    std::fprintf(stderr, "distill_retina: %s (see --help)\n", e.what());
    return 2;
  } catch (const pipeline::PipelineInterrupted& e) {
    std::fprintf(stderr, "distill_retina: %s\n", e.what());
    return 3;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "distill_retina: error: %s\n", e.what());
    return 1;
  }
}
