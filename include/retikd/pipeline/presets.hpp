// retikd/pipeline/presets.hpp — every number of the distill_retina presets in one place: the distillation stage
// comes from kd::distill_preset(name) unchanged (kd/distiller.hpp, docs/distillation.md), and pipeline_preset(name)
// adds the stages around it (teacher training, student initialisation, data) as named fields of PipelineSettings.
// resolve_settings (pipeline/distill_pipeline.hpp) then applies the user's options and nothing else: it reads
// these fields and never tests a preset's name.
//
// The only departure from kd::distill_preset is named here and in docs/pipeline.md: `paper` / `cakd` /
// `cakd_paper` train the students with one warm-up epoch (§5 gives a cosine schedule without one).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "retikd/kd/distiller.hpp"
#include "retikd/pipeline/pretrained_teacher.hpp"

namespace retikd {
namespace pipeline {

// Everything the pipeline needs beyond kd::DistillConfig: the teacher fine-tune and the data.
struct PipelineSettings {
  kd::DistillConfig kd;             // the distilled student (and the CE baseline's optimiser, epochs, batch)
  // The scratch ViT teacher (the preset's kd.teacher, trained here from scratch or from --teacher-init)
  int64_t teacher_epochs = 1;
  double teacher_lr = 1e-4;
  double teacher_weight_decay = 0.05;
  int64_t teacher_warmup_epochs = 0;
  data::LoaderAugment teacher_augment;  // the teacher's loader augmentation (the KD stage uses kd.augment)
  bool class_weighted = false;        // balanced class weights in every CE
  std::string student_init = "scratch";  // imagenet-tflite | scratch
  // The pretrained DINOv2 ViT-S/14 teacher (pipeline/pretrained_teacher.hpp): whether the preset uses it when its
  // weights are found (without --teacher), and its fine-tune when it does.
  bool prefers_dinov2 = false;
  TeacherFinetuneConfig dinov2_finetune;
  // With DINOv2, the KD stage's augmented view is the image's mirror (one view): every teacher target then comes
  // from the frozen-block cache, so the teacher never runs a full forward in the KD stage (the CPU route).
  bool dinov2_mirror_views = false;
  // Filled by resolve_settings: the teacher this run uses ("dinov2" or "scratch"), its weights file, and why.
  std::string teacher_kind = "scratch";
  std::string teacher_weights;           // dinov2: the file (.onnx or .safetensors with timm names)
  std::string teacher_note;              // why the teacher is what it is (a fallback is said in the log and report)
  TeacherFinetuneConfig teacher_ft;      // dinov2: dinov2_finetune with the user's options applied
  bool recalibrate_batchnorm = true;     // imagenet-tflite: nn::recalibrate_batchnorm on training images
  bool synthetic_by_default = false;     // smoke: the synthetic set unless --data is given
  // synthetic set (used when no real data is given or found)
  int64_t synthetic_train = 480, synthetic_val = 120, synthetic_test = 120;
};

// Our per-preset settings around kd::distill_preset(name) (docs/pipeline.md lists them).
inline PipelineSettings pipeline_preset(const std::string& name) {
  PipelineSettings s;
  s.kd = kd::distill_preset(name);
  s.dinov2_finetune.epochs = 10;         // with --teacher dinov2_s14 (paper / cakd prefer it)
  s.dinov2_finetune.freeze_blocks = 0;   // every block fine-tuned from images (the GPU route)
  s.dinov2_finetune.class_weighted = true;
  if (name == "paper" || name == "cakd" || name == "cakd_paper") {
    s.teacher_epochs = 30;
    s.teacher_lr = 1e-4;
    s.teacher_weight_decay = 0.05;
    s.teacher_warmup_epochs = 3;
    s.teacher_augment = s.kd.augment;
    s.student_init = "imagenet-tflite";
    s.kd.warmup_epochs = 1;  // ours, the one departure from §5 (see the top of this file)
    s.prefers_dinov2 = true;
  } else if (name == "quick") {
    s.teacher_epochs = 6;
    s.teacher_lr = 1e-3;
    s.teacher_weight_decay = 0.05;
    s.teacher_warmup_epochs = 1;
    s.teacher_augment = {true, true, 12.0, 0.0, 0.0, 0.0, 0.0, true};
    s.class_weighted = true;
    s.student_init = "imagenet-tflite";
    s.prefers_dinov2 = true;
    s.dinov2_finetune.epochs = 6;
    s.dinov2_finetune.freeze_blocks = 8;  // the top 4 blocks trained; the first 8 cached once (the CPU route)
    s.dinov2_mirror_views = true;
  } else if (name == "smoke") {
    s.teacher_epochs = 2;
    s.teacher_lr = 1e-3;
    s.teacher_weight_decay = 0.0;
    s.teacher_augment = s.kd.augment;
    s.student_init = "scratch";
    s.synthetic_by_default = true;
    s.synthetic_train = 32;
    s.synthetic_val = 12;
    s.synthetic_test = 16;
  }
  if (s.class_weighted) s.kd.weights.class_weights = {};  // filled from the training split at run time
  return s;
}

}  // namespace pipeline
}  // namespace retikd
