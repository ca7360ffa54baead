// tests/test_pipeline.cpp — the distill_retina pipeline (include/retikd/pipeline/distill_pipeline.hpp) end to end
// with the smoke preset on the synthetic set: every stage runs, metrics.json holds the three entries, a second
// run skips the finished stages, and an interrupted run resumes to the same result; the trained bundle exported to
// ONNX gives onnxruntime's predictions identical to retikd's on every test-split image (with retikd::onnx).
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include <doctest/doctest.h>
#include "golden_util.hpp"
#include "retikd/pipeline/distill_pipeline.hpp"
#ifdef RETIKD_WITH_ONNX
#include "onnx_peer.hpp"
#include "retikd/deploy/onnx_export.hpp"
#endif

using namespace retikd;

namespace {

std::string temp_dir(const std::string& tag) {
  char tmpl[] = "/tmp/retikd_pipeline_XXXXXX";
  const char* d = ::mkdtemp(tmpl);
  REQUIRE(d != nullptr);
  return std::string(d) + "/" + tag;
}

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

pipeline::PipelineOptions smoke_options(const std::string& out) {
  pipeline::PipelineOptions o;
  o.preset = "smoke";
  o.out_dir = out;
  o.out = nullptr;  // quiet
  o.progress = false;
  return o;
}

void check_entry(const io::Json& j, const char* key) {
  INFO("entry " << key);
  REQUIRE(j.contains(key));
  const io::Json& e = j.at(key);
  for (const char* k : {"accuracy", "macro_f1", "weighted_f1"}) {
    const double v = e.at(k).as_number();
    CHECK(v >= 0.0);
    CHECK(v <= 1.0);
  }
  for (const char* c : {"Cataract", "DR", "Glaucoma", "Normal"}) {
    REQUIRE(e.at("per_class").contains(c));
    for (const char* k : {"precision", "recall", "f1", "auc"}) {
      const double v = e.at("per_class").at(c).at(k).as_number();
      CHECK(v >= 0.0);
      CHECK(v <= 1.0);
    }
  }
  REQUIRE(e.at("confusion").size() == 4);
  int64_t total = 0;
  for (std::size_t t = 0; t < 4; ++t)
    for (std::size_t p = 0; p < 4; ++p) total += e.at("confusion").at(t).at(p).as_int();
  CHECK(total == 16);  // the smoke preset's synthetic test split
  CHECK(e.at("params").as_int() > 1000);
  CHECK(e.at("weights_bytes").as_int() > 4 * e.at("params").as_int());
}

}  // namespace

#ifdef RETIKD_WITH_ONNX
// A bundle exported as ONNX (fp32 and fp16) and run by onnxruntime on every image of `split`, preprocessed by the
// bundle's own rule: fp32 logits within 1e-4 (scale-relative) of retikd's, and the same prediction for every image
// in both precisions.
void check_bundle_through_onnx(const deploy::Bundle& b, const data::ImageSource& split, const std::string& stem,
                               const std::string& what) {
  const int64_t n = split.size(), S = b.info.preprocess.input_size();
  Tensor x = Tensor::empty({n, 3, S, S});
  float* px = x.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    const data::Image im = b.info.preprocess.input(split.load(i, nullptr));
    px = std::copy(im.data.begin(), im.data.end(), px);
  }
  Tensor ours;
  {
    NoGradGuard no_grad;
    ours = b.model->forward(Var(x)).value();
  }
  const std::string onnx_fp32 = stem + ".onnx", onnx_fp16 = stem + "_fp16.onnx";
  deploy::export_onnx(onnx_fp32, b);
  deploy::OnnxExportOptions half;
  half.precision = deploy::OnnxPrecision::fp16;
  deploy::export_onnx(onnx_fp16, b, half);
  peer::Batch batch;
  const std::size_t j32 = batch.add(onnx_fp32, x, b.info.options.num_classes),
                    j16 = batch.add(onnx_fp16, x, b.info.options.num_classes);
  batch.run();
  auto argmax = [](const Tensor& t) {
    std::vector<int64_t> labels;
    const auto v = t.contiguous().to_vector<float>();
    const int64_t k = t.size(1);
    for (int64_t i = 0; i < t.size(0); ++i)
      labels.push_back(std::max_element(v.begin() + i * k, v.begin() + (i + 1) * k) - (v.begin() + i * k));
    return labels;
  };
  const auto a = batch.output(j32).to_vector<double>(), r = ours.to_vector<double>();
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::fabs(a[i] - r[i]));
    scale = std::max(scale, std::fabs(r[i]));
  }
  const auto ours_pred = argmax(ours), p32 = argmax(batch.output(j32)), p16 = argmax(batch.output(j16));
  int64_t same32 = 0, same16 = 0;
  for (int64_t i = 0; i < n; ++i) {
    same32 += p32[static_cast<std::size_t>(i)] == ours_pred[static_cast<std::size_t>(i)];
    same16 += p16[static_cast<std::size_t>(i)] == ours_pred[static_cast<std::size_t>(i)];
  }
  MESSAGE(what, " through ONNX: fp32 logits vs retikd ", diff / scale, " (scale-relative); identical predictions fp32 ",
          same32, " / ", n, ", fp16 ", same16, " / ", n);
  CHECK(diff <= 1e-4 * scale);
  CHECK(same32 == n);
  CHECK(same16 == n);
}
#endif

TEST_CASE("pipeline: smoke preset runs every stage, skips finished stages, resumes an interrupted run") {
  const std::string out = temp_dir("smoke");
  const pipeline::PipelineResult r1 = pipeline::run_distill_pipeline(smoke_options(out));
  REQUIRE(r1.stages.size() == 3);
  for (const auto& st : r1.stages) {
    INFO(st.name);
    CHECK_FALSE(st.skipped);
    CHECK(st.epochs_run == 2);
  }
  const io::Json j = io::read_json_file(out + "/metrics.json");
  check_entry(j, "teacher");
  check_entry(j, "student_ce");
  check_entry(j, "student_kd");
  CHECK(j.at("teacher").at("params").as_int() != j.at("student_kd").at("params").as_int());
  const std::string report = read_text(out + "/report.md");
  CHECK(report.find("student_kd_confusion.svg") != std::string::npos);
  CHECK(report.find("teacher_loss.svg") != std::string::npos);
  // the teacher-vs-student check on validation, with the numbers it rests on
  const std::string against = "Teacher against the CE-only student on validation (macro-F1): ";
  const std::size_t at = report.find(against);
  REQUIRE(at != std::string::npos);
  {  // "0.1234 vs 0.5678. ": each figure rounded to four decimals, as a reader reads it
    const std::string figures = report.substr(at + against.size(), 16);
    INFO(figures);
    for (const std::size_t i : {std::size_t(0), std::size_t(10)}) {
      CHECK(std::isdigit(static_cast<unsigned char>(figures[i])));
      CHECK(figures[i + 1] == '.');
      for (std::size_t d = i + 2; d < i + 6; ++d) CHECK(std::isdigit(static_cast<unsigned char>(figures[d])));
    }
    CHECK(figures.substr(6, 4) == " vs ");
    CHECK(report.substr(at + against.size() + 16, 2) == ". ");
  }
  CHECK(path_exists(out + "/student_kd_roc.svg"));
  CHECK(path_exists(out + "/student_kd/model.safetensors"));
  CHECK(r1.bundle_bytes > 0);
  if (r1.bundle_bytes > 0) {
    const deploy::Bundle b = deploy::load_bundle(r1.bundle_path);
    CHECK(b.info.arch == "mobilenet_v2");
#ifdef RETIKD_WITH_ONNX
    // The trained bundle through ONNX: onnxruntime predicts every test-split image as retikd does, with the
    // bundle's own preprocessing (deploy::Preprocess) applied to the split's images.
    if (peer::require()) {
      const pipeline::PipelineSettings settings = pipeline::pipeline_preset("smoke");
      const pipeline::detail::RunData d = pipeline::detail::open_data(smoke_options(out), settings, settings.kd.seed);
      CHECK(d.test->size() == 16);
      check_bundle_through_onnx(b, *d.test, out + "/student_kd", "smoke bundle");
    }
#endif
  }

  // A second run: every stage is complete, nothing trains, and the metrics are the same.
  const pipeline::PipelineResult r2 = pipeline::run_distill_pipeline(smoke_options(out));
  for (const auto& st : r2.stages) {
    INFO(st.name);
    CHECK(st.skipped);
    CHECK(st.epochs_run == 0);
    CHECK(st.test.accuracy == r1.stage(st.name).test.accuracy);
    CHECK(st.test.confusion == r1.stage(st.name).test.confusion);
  }

  // Interrupted after 3 epochs (teacher done, student_ce after its first epoch), then resumed.
  const std::string out2 = temp_dir("resume");
  pipeline::PipelineOptions o = smoke_options(out2);
  o.stop_after_epochs = 3;
  CHECK_THROWS_AS(pipeline::run_distill_pipeline(o), pipeline::PipelineInterrupted);
  CHECK(path_exists(out2 + "/student_ce/last.safetensors"));
  CHECK_FALSE(path_exists(out2 + "/student_kd/last.safetensors"));
  o.stop_after_epochs = 0;
  const pipeline::PipelineResult r3 = pipeline::run_distill_pipeline(o);
  CHECK(r3.stage("teacher").skipped);
  CHECK(r3.stage("student_ce").resumed);
  CHECK(r3.stage("student_ce").epochs_run == 1);
  CHECK(r3.stage("student_kd").epochs_run == 2);
  // The resume contract: the interrupted run ends where the uninterrupted one did.
  for (const char* name : {"teacher", "student_ce", "student_kd"}) {
    INFO(name);
    CHECK(r3.stage(name).test.confusion == r1.stage(name).test.confusion);
    CHECK(read_text(out2 + "/" + name + "/model.safetensors") == read_text(out + "/" + name + "/model.safetensors"));
  }
}

#ifdef RETIKD_WITH_ONNX
// A trained quick-preset bundle (RETIKD_QUICK_BUNDLE=path/student_ce.rkd) on the real test split of
// ../shared/data/fundus4: the "the quick run's agreement, reported in docs". Not in CI (it needs a
// trained bundle, minutes of training); run by hand: docs/results.md has the command and its figures.
TEST_CASE("pipeline: a trained quick bundle through ONNX predicts the real test split as retikd does") {
  const char* bundle = std::getenv("RETIKD_QUICK_BUNDLE");
  if (bundle == nullptr || !*bundle) {
    MESSAGE("skipped: set RETIKD_QUICK_BUNDLE to a trained quick-preset bundle to run it");
    return;
  }
  REQUIRE(path_exists(shared_path("data/fundus4/split.tsv")));
  if (!peer::require()) return;
  const deploy::Bundle b = deploy::load_bundle(bundle);
  pipeline::PipelineOptions o;
  o.preset = "quick";
  o.data_root = shared_path("data/fundus4");
  const pipeline::PipelineSettings settings = pipeline::pipeline_preset("quick");
  const pipeline::detail::RunData d = pipeline::detail::open_data(o, settings, settings.kd.seed);
  CHECK(d.test->size() == 446);
  const std::string dir = temp_dir("quick_onnx");
  REQUIRE(data::fs::make_dirs(dir));
  check_bundle_through_onnx(b, *d.test, dir + "/student", "quick bundle, real test split");
}
#endif

TEST_CASE("pipeline: settings and errors") {
  pipeline::PipelineOptions o;
  o.preset = "quick";
  pipeline::PipelineSettings s = pipeline::resolve_settings(o);
  CHECK(s.kd.img_size == 160);
  CHECK(s.kd.cache_teacher);
  CHECK(s.kd.student == "mobilenet_v2");
  CHECK(s.student_init == "imagenet-tflite");
  o.epochs_student = 3;
  o.img = 96;
  o.teacher = "vit_tiny";  // a scratch teacher works at the student's image size
  s = pipeline::resolve_settings(o);
  CHECK(s.teacher_kind == "scratch");
  CHECK(s.kd.epochs == 3);
  CHECK(s.kd.teacher.img_size == 96);
  o.img = 100;
  CHECK_THROWS_WITH_AS(pipeline::resolve_settings(o), doctest::Contains("multiple"), Error);
  o.img = -1;
  o.teacher = "vit_huge";
  CHECK_THROWS_WITH_AS(pipeline::resolve_settings(o), doctest::Contains("--teacher"), Error);
  o.teacher = "";
  o.student_init = "imagenet";
  CHECK_THROWS_WITH_AS(pipeline::resolve_settings(o), doctest::Contains("--student-init"), Error);
  o.student_init = "";
  o.preset = "nope";
  CHECK_THROWS_AS(pipeline::resolve_settings(o), Error);
}

// Environment variables set for one scope (the teacher search reads RETIKD_SHARED and RETIKD_CACHE_DIR).
struct ScopedEnv {
  std::string name, old;
  bool had;
  ScopedEnv(const char* n, const std::string& v) : name(n) {
    const char* o = std::getenv(n);
    had = o != nullptr;
    if (had) old = o;
    ::setenv(n, v.c_str(), 1);
  }
  ~ScopedEnv() {
    if (had) ::setenv(name.c_str(), old.c_str(), 1);
    else ::unsetenv(name.c_str());
  }
};

TEST_CASE("pipeline: presets keep the distillation numbers of kd::distill_preset; teacher choices are named fields") {
  for (const std::string& name : kd::distill_preset_names()) {
    INFO(name);
    const kd::DistillConfig k = kd::distill_preset(name);
    const pipeline::PipelineSettings s = pipeline::pipeline_preset(name);
    CHECK(s.kd.epochs == k.epochs);
    CHECK(s.kd.batch_size == k.batch_size);
    CHECK(s.kd.lr == k.lr);
    CHECK(s.kd.img_size == k.img_size);
    CHECK(s.kd.views.augmented_views == k.views.augmented_views);
    CHECK(s.kd.weights.alpha == k.weights.alpha);
    // the one stated departure: paper / cakd / cakd_paper students warm up for one epoch
    const bool paper_like = name == "paper" || name == "cakd" || name == "cakd_paper";
    CHECK(s.kd.warmup_epochs == (paper_like ? 1 : k.warmup_epochs));
    CHECK(s.prefers_dinov2 == (name != "smoke"));
  }
  CHECK(pipeline::pipeline_preset("quick").kd.epochs == 6);
  CHECK(pipeline::pipeline_preset("quick").dinov2_finetune.freeze_blocks == 8);
  CHECK(pipeline::pipeline_preset("paper").dinov2_finetune.freeze_blocks == 0);
  CHECK(pipeline::pipeline_preset("smoke").kd.epochs == 2);
}

TEST_CASE("pipeline: --student-augment reads an augmentation as the log writes it") {
  // the inverse of data::augment_text, so a run's logged augmentation can be passed back verbatim
  for (const data::LoaderAugment& a :
       {data::LoaderAugment{}, data::LoaderAugment{true, false, 0, 0, 0, 0, 0, true},
        data::LoaderAugment{true, true, 12.0, 0.1, 0.1, 0.1, 0.05, true},
        data::LoaderAugment{false, true, 0, 0.2, 0, 0.3, 0, true},
        data::LoaderAugment{false, false, 7.5, 0, 0, 0, 0, true}}) {
    const std::string text = data::augment_text(a);
    INFO(text);
    CHECK(data::augment_text(data::parse_augment(text)) == text);
  }
  const data::LoaderAugment a = data::parse_augment(" vflip ,hflip, jitter 0.1/0.2/0.3/0.04", false);
  CHECK(a.hflip);
  CHECK(a.vflip);
  CHECK(a.rotation_degrees == 0.0);
  CHECK(a.hue == 0.04);
  CHECK_FALSE(a.imagenet_normalize);
  // every malformed text is an error that names the item, never a silently dropped one
  for (const char* bad : {"", "hflip,", "hflip, hflip", "flip", "rotation", "rotation 0", "rotation 200",
                          "rotation 1e400", "rotation nan", "jitter 0.1/0.1/0.1", "jitter 0.1/0.1/0.1/0.6",
                          "hflip 1", "none, hflip", "rotation 5, rotation 6"}) {
    INFO(bad);
    CHECK_THROWS_AS(data::parse_augment(bad), Error);
  }
  CHECK_THROWS_WITH_AS(data::parse_augment("hflip, mixup"), doctest::Contains("unknown item 'mixup'"), Error);
  // the smoke preset takes it for both student stages (its scratch teacher's targets are computed live)
  pipeline::PipelineOptions o;
  o.preset = "smoke";
  o.student_augment = "hflip, vflip, rotation 12";
  const pipeline::PipelineSettings s = pipeline::resolve_settings(o);
  CHECK(data::augment_text(s.kd.augment) == "hflip, vflip, rotation 12.0");  // as the log writes it
  CHECK(s.kd.augment.imagenet_normalize == pipeline::pipeline_preset("smoke").kd.augment.imagenet_normalize);
}

TEST_CASE("pipeline: the DINOv2 teacher is the default where its weights are found, a stated fallback elsewhere") {
  const std::string tmp = temp_dir("teacher_search");
  REQUIRE(data::fs::make_dirs(tmp + "/cache/dinov2-vits14"));
  // nothing in the shared folder or the cache: quick falls back to its scratch ViT and says so
  ScopedEnv shared("RETIKD_SHARED", tmp + "/no_shared");
  ScopedEnv cache("RETIKD_CACHE_DIR", tmp + "/cache");
  pipeline::PipelineOptions o;
  o.preset = "quick";
  pipeline::PipelineSettings s = pipeline::resolve_settings(o);
  CHECK(s.teacher_kind == "scratch");
  CHECK(s.teacher_note.find("falling back") != std::string::npos);
  CHECK(s.teacher_note.find("fetch_teacher.sh") != std::string::npos);
  // asked for explicitly, a missing file is an error that says where it looked
  o.teacher = "dinov2_s14";
  CHECK_THROWS_WITH_AS(pipeline::resolve_settings(o), doctest::Contains("no weights found"), Error);
  o.teacher_weights = tmp + "/missing.onnx";
  CHECK_THROWS_WITH_AS(pipeline::resolve_settings(o), doctest::Contains("does not exist"), Error);
  // a file in the cache is found; the teacher has its own image size, independent of --img
  o.teacher = "";
  o.teacher_weights = "";
  {
    std::ofstream f(tmp + "/cache/dinov2-vits14/vit_s_focus.onnx");
    f << "placeholder";
  }
#ifndef RETIKD_WITH_ONNX
  // a build without ONNX import cannot read the .onnx it finds: the scratch teacher, and the note says why
  o.img = 96;
  s = pipeline::resolve_settings(o);
  CHECK(s.teacher_kind == "scratch");
  CHECK(s.teacher_note.find("no ONNX import") != std::string::npos);
#else
  o.img = 100;
  s = pipeline::resolve_settings(o);
  CHECK(s.teacher_kind == "dinov2");
  CHECK(s.teacher_weights == tmp + "/cache/dinov2-vits14/vit_s_focus.onnx");
  CHECK(s.kd.img_size == 100);
  CHECK(s.kd.teacher_img_size == 224);
  CHECK(s.kd.teacher.patch_size == 14);
  CHECK(s.kd.pca.align == kd::GridAlign::resize_teacher);
  CHECK(s.teacher_ft.freeze_blocks == 8);
  // the KD stage's targets are cached for each image and its mirror: the distilled student takes at most hflip,
  // the CE student alone anything
  o.student_augment = "hflip";
  CHECK(pipeline::resolve_settings(o).kd.augment.hflip);
  o.student_augment = "hflip, rotation 12";
  CHECK_THROWS_WITH_AS(pipeline::resolve_settings(o), doctest::Contains("cached for each image and its mirror"), Error);
  o.run_kd = false;
  CHECK(pipeline::resolve_settings(o).kd.augment.rotation_degrees == 12.0);
  o.run_kd = true;
  o.student_augment = "";
  o.teacher_img = 230;
  CHECK_THROWS_WITH_AS(pipeline::resolve_settings(o), doctest::Contains("multiple of DINOv2"), Error);
  o.teacher_img = 280;
  o.teacher_freeze = 12;
  CHECK_THROWS_WITH_AS(pipeline::resolve_settings(o), doctest::Contains("--teacher-freeze"), Error);
  o.teacher_freeze = 0;
  o.teacher_head = "cls_avg";
  s = pipeline::resolve_settings(o);
  CHECK(s.kd.teacher_img_size == 280);
  CHECK(s.teacher_ft.freeze_blocks == 0);
  CHECK(s.teacher_ft.drop_path == doctest::Approx(0.1));  // all blocks trained: drop-path follows the freeze
  CHECK(s.teacher_ft.head == "cls_avg");
  CHECK(s.teacher_ft.epochs == 6);  // quick's DINOv2 fine-tune (pipeline_preset)
  CHECK(s.kd.views.mirror);         // quick with DINOv2: the mirror view, served by the frozen-block cache
#endif
  // the smoke preset (synthetic, seconds) keeps its tiny scratch teacher; teacher options then are an error
  o = pipeline::PipelineOptions();
  o.preset = "smoke";
  CHECK(pipeline::resolve_settings(o).teacher_kind == "scratch");
  o.teacher_img = 224;
  CHECK_THROWS_WITH_AS(pipeline::resolve_settings(o), doctest::Contains("--teacher dinov2_s14"), Error);
  // a safetensors teacher is named by the source its metadata gives (pretrain_ijepa's adapted encoder is not
  // DINOv2's own weights); without one it is DINOv2's
  o = pipeline::PipelineOptions();
  o.preset = "quick";
  o.teacher = "dinov2_s14";
  o.teacher_weights = tmp + "/adapted.safetensors";
  io::save_safetensors(o.teacher_weights, {{"w", Tensor::zeros({1})}},
                       {{"source", "pretrain_ijepa (I-JEPA context encoder)"}});
  s = pipeline::resolve_settings(o);
  CHECK(s.teacher_kind == "dinov2");
  CHECK(s.teacher_note.find("'pretrain_ijepa (I-JEPA context encoder)'") != std::string::npos);
  CHECK(s.teacher_note.find("LVD-142M") == std::string::npos);
  io::save_safetensors(o.teacher_weights, {{"w", Tensor::zeros({1})}}, {{"format", "pt"}});
  CHECK(pipeline::resolve_settings(o).teacher_note.find("LVD-142M") != std::string::npos);
}

TEST_CASE("pipeline: a pretrained ViT teacher fine-tunes on cached frozen blocks, picks its head and resumes") {
  // The tiny DINOv2 of tests/golden (width 32, 2 blocks, patch 14) on 56 px synthetic images: block 0 frozen.
  const std::string weights = golden::tiny_dinov2_weights();
  const nn::ViTConfig cfg = golden::tiny_dinov2_config(4);
  data::SyntheticOptions so;
  so.size = 64;
  auto source = [&](int64_t n, int64_t first) { return std::make_shared<data::SyntheticSource>(n, 5, so, first); };
  data::LoaderOptions lo;
  lo.batch_size = 8;
  lo.num_workers = 0;
  lo.shuffle = false;
  lo.preprocess = data::compose({data::make<data::Resize>(56), data::make<data::CenterCrop>(56)});
  lo.transform = data::make<data::Normalize>();
  const std::string dir = temp_dir("teacher_stage");
  pipeline::TeacherStageContext ctx;
  ctx.run_dir = dir + "/teacher";
  ctx.train_plain = std::make_shared<data::Loader>(source(24, 0), lo);
  ctx.val = std::make_shared<data::Loader>(source(12, 24), lo);
  ctx.test = std::make_shared<data::Loader>(source(12, 36), lo);
  ctx.class_weights = {1.0, 1.0, 1.0, 1.0};
  ctx.seed = 3;
  pipeline::TeacherFinetuneConfig ft;
  ft.freeze_blocks = 1;
  ft.epochs = 2;
  ft.batch_size = 8;
  ft.head = "auto";
  int loads = 0;
  auto load = [&](nn::VisionTransformer& v) {
    io::load_module(weights, v, /*strict=*/false);
    ++loads;
  };
  const pipeline::TeacherStageResult r = pipeline::finetune_pretrained_teacher(cfg, load, ft, ctx);
  CHECK(r.loop.last_epoch == 2);
  CHECK(r.probe_val_macro_f1.size() == 3);  // cls, avg, cls_avg
  CHECK((r.pooling == "cls" || r.pooling == "avg" || r.pooling == "cls_avg"));
  CHECK(r.model->pooled_dim() == (r.pooling == "cls_avg" ? 64 : 32));
  CHECK(r.test.accuracy >= 0.0);
  CHECK(r.test.confusion.size() == 4);
  // the frozen block kept its pretrained weights; the trained one moved
  Generator gen(1);
  nn::VisionTransformer fresh(pipeline::with_pooling(cfg, r.pooling), gen);
  io::load_module(weights, fresh, false);
  const auto frozen = fresh.blocks[0]->state_dict(), after = r.model->blocks[0]->state_dict();
  for (std::size_t i = 0; i < frozen.size(); ++i)
    CHECK(frozen[i].second.to_vector<float>() == after[i].second.to_vector<float>());
  CHECK(fresh.blocks[1]->mlp->fc1->weight.value().to_vector<float>() !=
        r.model->blocks[1]->mlp->fc1->weight.value().to_vector<float>());
  // a second call finds the finished stage and the recorded head choice: no training, the same test metrics
  const pipeline::TeacherStageResult again = pipeline::finetune_pretrained_teacher(cfg, load, ft, ctx);
  CHECK(again.loop.already_complete);
  CHECK(again.pooling == r.pooling);
  CHECK(again.test.accuracy == r.test.accuracy);
  CHECK(again.test.macro_f1 == r.test.macro_f1);
}

TEST_CASE("pipeline: KD targets from the frozen-block cache; logit KD alone stores the logits and no tokens") {
  // The tiny DINOv2 of tests/golden (2 blocks, block 0 frozen) as the teacher at 56 px, a MobileNetV2 x0.25 student
  // at 64 px, the mirror views of quick with DINOv2. The quick preset's default (logit KD alone) taps nothing, so
  // its records hold logits only; with a token tap the records gain the tokens and keep the same logits.
  const std::string weights = golden::tiny_dinov2_weights();
  const nn::ViTConfig cfg = golden::tiny_dinov2_config(4);
  Generator gen(4);
  auto vit = std::make_shared<nn::VisionTransformer>(cfg, gen);
  io::load_module(weights, *vit, /*strict=*/false);
  data::SyntheticOptions so;
  so.size = 64;
  auto train = std::make_shared<data::SyntheticSource>(10, 5, so, 0);
  auto loader_at = [&](int64_t px) {
    data::LoaderOptions lo;
    lo.batch_size = 4;
    lo.num_workers = 0;
    lo.shuffle = false;
    lo.preprocess = data::compose({data::make<data::Resize>(px), data::make<data::CenterCrop>(px)});
    lo.transform = data::make<data::Normalize>();
    return std::make_shared<data::Loader>(train, lo);
  };
  auto teacher_plain = loader_at(56), student_plain = loader_at(64);
  const pipeline::PrefixCache pc = pipeline::PrefixCache::build(*vit, *teacher_plain, 1, "prefix", nullptr);
  auto distiller = [&](const std::string& token_tap) {
    kd::DistillConfig c = kd::distill_preset("quick");
    c.teacher = cfg;
    c.img_size = 64;
    c.teacher_img_size = 56;
    c.student_options.width_mult = 0.25;
    c.views.mirror = true;
    c.views.augmented_views = 1;
    c.pca_student_tap = c.gl_student_tap = "features";
    c.gl.align = kd::GridAlign::resize_teacher;
    c.teacher_token_tap = token_tap;
    if (!token_tap.empty()) c.weights.lambda_gl = 1.0;  // a GL projector reads the tokens
    Generator g(5);
    return std::make_unique<kd::CrossArchitectureDistiller>(vit, kd::make_student(c, g), c, g);
  };
  auto logit_only = distiller("");
  REQUIRE(logit_only->teacher_taps().empty());
  CHECK(pipeline::fill_teacher_cache_from_prefix(*logit_only, *vit, pc, *student_plain, true, 4, nullptr) == 20);
  auto with_tokens = distiller("norm");
  REQUIRE(with_tokens->teacher_taps() == std::vector<std::string>{"norm"});
  CHECK(pipeline::fill_teacher_cache_from_prefix(*with_tokens, *vit, pc, *student_plain, true, 4, nullptr) == 20);
  // the teacher's own flip-averaged logits on the 56 px image (the prefix is stored in float16: close, not equal)
  teacher_plain->start_epoch(0);
  data::Batch b;
  REQUIRE(teacher_plain->next(b));
  NoGradGuard no_grad;
  vit->eval();
  const Tensor direct = ops::impl::mul_scalar(
      ops::impl::add(vit->forward(Var(b.images)).value(), vit->forward(Var(pipeline::flip_width(b.images))).value()), 0.5);
  for (int64_t i = 0; i < b.size(); ++i) {
    const int64_t id = b.indices[static_cast<std::size_t>(i)];
    for (int64_t v = 0; v < 2; ++v) {
      const kd::TeacherRecord* r = logit_only->cache().find(id, v);
      const kd::TeacherRecord* t = with_tokens->cache().find(id, v);
      REQUIRE(r != nullptr);
      REQUIRE(t != nullptr);
      CHECK(r->taps.empty());
      CHECK(t->taps.count("norm") == 1);
      CHECK(r->logits.to_vector<float>() == t->logits.to_vector<float>());
      const auto got = r->logits.to_vector<double>(), want = direct.narrow(0, i, 1).to_vector<double>();
      REQUIRE(got.size() == want.size());
      for (std::size_t j = 0; j < got.size(); ++j) CHECK(got[j] == doctest::Approx(want[j]).epsilon(2e-2).scale(1.0));
    }
  }
  // the distiller reads them back for the student's views, the same records for both views (flip TTA)
  student_plain->start_epoch(0);
  REQUIRE(student_plain->next(b));
  std::vector<int64_t> ids(b.indices.begin(), b.indices.end());
  const kd::TeacherFeatures f = logit_only->teacher_from_cache(logit_only->views().generate(b.images, ids, 0), ids);
  CHECK(logit_only->cache().hits == 2 * b.size());
  CHECK(logit_only->cache().misses == 0);
  CHECK_FALSE(f.tokens.defined());
  REQUIRE(f.logits.defined());
  CHECK(f.logits.value().size(0) == 2 * b.size());
}

TEST_CASE("pipeline: the probe loaded into a head reproduces the probe's logits; the split forward is the forward") {
  Generator gen(2);
  nn::ViTConfig cfg = nn::ViTConfig::tiny(3, 32, 8);
  nn::VisionTransformer vit(cfg, gen);
  vit.eval();
  NoGradGuard no_grad;
  const Tensor x = randn({2, 3, 32, 32}, gen);
  const Tensor whole = vit.forward_features(Var(x)).value();
  const Tensor split = vit.norm->forward(vit.run_blocks(vit.embed_tokens(Var(x)), 0, 12)).value();
  CHECK(whole.to_vector<float>() == split.to_vector<float>());
  ssl::FeatureSet f;
  f.dim = 192;
  const Tensor cls = whole.narrow(1, 0, 1).squeeze(1).contiguous();
  f.x = cls.to_vector<double>();
  f.y = {0, 2};
  ssl::LogisticRegressionOptions lo;
  lo.iterations = 200;
  const ssl::LogisticRegression probe = ssl::fit_logistic_regression(f, 3, lo);
  pipeline::load_probe_into_head(*vit.head, probe);
  const auto head = vit.forward_head(Var(whole)).value().to_vector<double>();
  const auto ref = probe.logits(f);
  REQUIRE(head.size() == ref.size());
  for (std::size_t i = 0; i < ref.size(); ++i) CHECK(head[i] == doctest::Approx(ref[i]).epsilon(1e-5));
  // and flip_width mirrors the last axis
  const Tensor img = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {1, 1, 2, 3});
  CHECK(pipeline::flip_width(img).to_vector<float>() == std::vector<float>{3, 2, 1, 6, 5, 4});
}
