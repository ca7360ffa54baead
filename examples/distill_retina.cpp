// examples/distill_retina.cpp — the main job: teacher fine-tune → CE-only student baseline → distilled student
// → evaluation on the test split → fp16 student bundle, each stage resumable and skipped when finished.
// The stage logic is include/retikd/pipeline/distill_pipeline.hpp; this file parses the command line.
// docs/pipeline.md describes the stages, the files, the presets and the resume semantics.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "retikd/dist/session.hpp"
#include "retikd/pipeline/distill_pipeline.hpp"

using namespace retikd;

namespace {

void usage(std::FILE* f) {
  std::fprintf(f,
      "usage: distill_retina [--data ROOT] [--manifest FILE] [--synthetic] [--preset paper|cakd|quick|smoke]\n"
      "                      [--out DIR] [--teacher vit_tiny|vit_small|vit_b16] [--teacher-init FILE]\n"
      "                      [--student mobilenet_v2|resnet18|efficientnet_b0] [--student-init imagenet-tflite|scratch]\n"
      "                      [--epochs-teacher N] [--epochs-student N] [--img PX] [--batch N] [--lr X]\n"
      "                      [--teacher-lr X] [--weight-decay X] [--views K] [--cache-teacher 0|1] [--seed N]\n"
      "                      [--skip-bad] [--limit-train N] [--limit-eval N] [--workers N] [--no-export]\n"
      "                      [--stop-after-epochs N] [--quiet]\n"
      "                      [--alpha X] [--lambda-pca X] [--lambda-gl X] [--lambda-adv X] [--logit-kd 0|1]\n"
      "                      [--temperature X] [--teacher-from DIR|FILE] [--no-ce] [--no-kd] [--bn-recalibrate 0|1]\n"
      "                      [--distributed] [--sync-bn] [--dist-timeout S]\n"
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
      "  --epochs-student N   epochs of both student stages (CE baseline and distilled)\n"
      "  --limit-train N      a seeded subset of N training images (timing runs); --limit-eval the same for val/test\n"
      "  --stop-after-epochs N  stop (as if killed) after N epochs in this call; run again to resume\n"
      "  --alpha X            weight of the CE in the KD stage (the KD terms get 1 - alpha in logit KD)\n"
      "  --lambda-pca/-gl/-adv X  weights of the PCA, GL and adversarial losses (0 switches one off)\n"
      "  --logit-kd 0|1       add logit KD, (1 - alpha) * T^2 * KL(teacher/T || student/T), T = --temperature\n"
      "  --teacher-from DIR   reuse the finished teacher of another run (DIR/teacher/model.safetensors, or a\n"
      "                       weights file) instead of training one: ablations and seed repeats share a teacher\n"
      "  --no-ce, --no-kd     skip the CE-only baseline / the distilled student (and its export)\n"
      "  --bn-recalibrate 0|1 re-centre the ImageNet student's batch norms on training images (default 1;\n"
      "                       nn/batchnorm_recalibration.hpp says why)\n"
      "  --distributed        data-parallel over MPI even for one process (it is on by itself under mpirun /\n"
      "                       srun with several processes); --batch stays the global batch (docs/distributed.md)\n"
      "  --sync-bn            batch-norm statistics over all ranks' samples (default: each rank's own)\n"
      "  --dist-timeout S     seconds a collective may wait for the other ranks before the job ends (default 600)\n"
      "scripts/ablation.sh runs the ablation of docs/results.md with these.\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  pipeline::PipelineOptions o;
  bool preset_given = false;
  dist::SessionOptions dist_options;
  std::unique_ptr<dist::Session> session;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) {
          std::fprintf(stderr, "distill_retina: %s needs a value (see --help)\n", a.c_str());
          std::exit(2);
        }
        return argv[++i];
      };
      auto integer = [&]() -> int64_t {
        const std::string v = value();
        char* end = nullptr;
        const long long x = std::strtoll(v.c_str(), &end, 10);
        if (v.empty() || *end != '\0' || x < 0) {
          std::fprintf(stderr, "distill_retina: %s needs a non-negative integer, got '%s'\n", a.c_str(), v.c_str());
          std::exit(2);
        }
        return x;
      };
      auto real = [&]() -> double {
        const std::string v = value();
        char* end = nullptr;
        const double x = std::strtod(v.c_str(), &end);
        if (v.empty() || *end != '\0' || !(x >= 0)) {
          std::fprintf(stderr, "distill_retina: %s needs a non-negative number, got '%s'\n", a.c_str(), v.c_str());
          std::exit(2);
        }
        return x;
      };
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
        o.epochs_teacher = integer();
      } else if (a == "--epochs-student") {
        o.epochs_student = integer();
      } else if (a == "--img") {
        o.img = integer();
      } else if (a == "--batch") {
        o.batch = integer();
      } else if (a == "--lr") {
        o.lr = real();
      } else if (a == "--teacher-lr") {
        o.teacher_lr = real();
      } else if (a == "--weight-decay") {
        o.weight_decay = real();
      } else if (a == "--views") {
        o.views = integer();
      } else if (a == "--cache-teacher") {
        o.cache_teacher = static_cast<int>(integer() != 0);
      } else if (a == "--alpha") {
        o.alpha = real();
      } else if (a == "--lambda-pca") {
        o.lambda_pca = real();
      } else if (a == "--lambda-gl") {
        o.lambda_gl = real();
      } else if (a == "--lambda-adv") {
        o.lambda_adv = real();
      } else if (a == "--logit-kd") {
        o.logit_kd = static_cast<int>(integer() != 0);
      } else if (a == "--temperature") {
        o.temperature = real();
      } else if (a == "--bn-recalibrate") {
        o.recalibrate_bn = static_cast<int>(integer() != 0);
      } else if (a == "--teacher-from") {
        o.teacher_from = value();
      } else if (a == "--no-ce") {
        o.run_ce = false;
      } else if (a == "--no-kd") {
        o.run_kd = false;
      } else if (a == "--seed") {
        o.seed = integer();
      } else if (a == "--skip-bad") {
        o.skip_bad = true;
      } else if (a == "--limit-train") {
        o.limit_train = integer();
      } else if (a == "--limit-eval") {
        o.limit_eval = integer();
      } else if (a == "--workers") {
        o.num_workers = static_cast<int>(integer());
      } else if (a == "--no-export") {
        o.export_bundle = false;
      } else if (a == "--stop-after-epochs") {
        o.stop_after_epochs = integer();
      } else if (a == "--quiet") {
        o.progress = false;
      } else if (a == "--distributed") {
        dist_options.force = true;
      } else if (a == "--sync-bn") {
        o.sync_batchnorm = true;
      } else if (a == "--dist-timeout") {
        dist_options.timeout_seconds = real();
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
    session.reset(new dist::Session(dist_options));  // MPI when launched by mpirun / srun (or --distributed)
    const pipeline::PipelineResult r = pipeline::run_distill_pipeline(o);
    if (!dist::is_lead()) return 0;  // rank 0 prints the summary
    std::printf("\n%-11s %9s %9s %9s %12s\n", "model", "accuracy", "macro_f1", "glaucoma", "parameters");
    for (const auto& st : r.stages)
      std::printf("%-11s %9.4f %9.4f %9.4f %12lld%s\n", st.name.c_str(), st.test.accuracy, st.test.macro_f1,
                  st.test.of("Glaucoma").recall, static_cast<long long>(st.params), st.skipped ? "  (not trained in this call)" : "");
    return 0;
  } catch (const pipeline::PipelineInterrupted& e) {
    std::fprintf(stderr, "distill_retina: %s\n", e.what());
    return 3;
  } catch (const std::exception& e) {
    if (dist::world().size() > 1)
      std::fprintf(stderr, "distill_retina: error (rank %d of %d): %s\n", dist::world().rank(), dist::world().size(),
                   e.what());
    else
      std::fprintf(stderr, "distill_retina: error: %s\n", e.what());
    if (session) session->abort(1);  // the other ranks would wait for this one until the timeout
    return 1;
  }
}
