// tests/test_pipeline.cpp — the distill_retina pipeline (include/retikd/pipeline/distill_pipeline.hpp) end to end
// with the smoke preset on the synthetic set: every stage runs, metrics.json holds the three entries, a second
// run skips the finished stages, and an interrupted run resumes to the same result.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include <doctest/doctest.h>
#include "retikd/pipeline/distill_pipeline.hpp"

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

void check_entry(const metrics::Json& j, const char* key) {
  INFO("entry " << key);
  REQUIRE(j.contains(key));
  const metrics::Json& e = j.at(key);
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

TEST_CASE("pipeline: smoke preset runs every stage, skips finished stages, resumes an interrupted run") {
  const std::string out = temp_dir("smoke");
  const pipeline::PipelineResult r1 = pipeline::run_distill_pipeline(smoke_options(out));
  REQUIRE(r1.stages.size() == 3);
  for (const auto& st : r1.stages) {
    INFO(st.name);
    CHECK_FALSE(st.skipped);
    CHECK(st.epochs_run == 2);
  }
  const metrics::Json j = metrics::read_json_file(out + "/metrics.json");
  check_entry(j, "teacher");
  check_entry(j, "student_ce");
  check_entry(j, "student_kd");
  CHECK(j.at("teacher").at("params").as_int() != j.at("student_kd").at("params").as_int());
  const std::string report = read_text(out + "/report.md");
  CHECK(report.find("student_kd_confusion.svg") != std::string::npos);
  CHECK(report.find("teacher_loss.svg") != std::string::npos);
  CHECK(path_exists(out + "/student_kd_roc.svg"));
  CHECK(path_exists(out + "/student_kd/model.safetensors"));
  CHECK(r1.bundle_bytes > 0);
  if (r1.bundle_bytes > 0) {
    const deploy::Bundle b = deploy::load_bundle(r1.bundle_path);
    CHECK(b.info.arch == "mobilenet_v2");
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

TEST_CASE("pipeline: settings and errors") {
  pipeline::PipelineOptions o;
  o.preset = "quick";
  pipeline::PipelineSettings s = pipeline::resolve_settings(o);
  CHECK(s.kd.img_size <= 128);
  CHECK(s.kd.cache_teacher);
  CHECK(s.kd.student == "mobilenet_v2");
  CHECK(s.student_init == "imagenet-tflite");
  o.epochs_student = 3;
  o.img = 96;
  s = pipeline::resolve_settings(o);
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
