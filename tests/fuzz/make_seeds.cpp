// tests/fuzz/make_seeds.cpp — writes the fuzz seeds only retikd itself can make: student bundles (a whole
// small one that loads, and two whose header and checksum are valid but whose single tensor does not fit the
// architecture, so mutations of their fields reach the semantic checks cheaply) and training checkpoints of
// exactly the state fuzz_checkpoint.cpp loads into (fresh, and after two optimizer steps); with retikd::onnx,
// the small student exported to ONNX at fp16 (what classify --onnx reads). scripts/fuzz.sh --make-seeds
// builds and runs it together with make_seeds.py.
//
//   retikd_fuzz_make_seeds tests/fuzz/corpus
#include <cstdio>
#include <string>

#include <retikd/data/fs.hpp>
#include <retikd/deploy/bundle.hpp>
#ifdef RETIKD_WITH_ONNX
#include <retikd/deploy/onnx_export.hpp>
#endif
#include <retikd/core/random.hpp>
#include <retikd/ops/elementwise.hpp>
#include <retikd/ops/reduce.hpp>

#define RETIKD_FUZZ_REPLAY  // only for the State type of the checkpoint harness
#include "fuzz_checkpoint.cpp"

using namespace retikd;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: retikd_fuzz_make_seeds CORPUS_DIR\n");
    return 2;
  }
  const std::string out = argv[1];
  try {
    RETIKD_CHECK(data::fs::make_dirs(out + "/bundle") && data::fs::make_dirs(out + "/checkpoint"), "cannot create ",
                 out);
    // A whole bundle, small enough for fast runs: EfficientNet-B0 at width 0.1 (every layer kind of a CNN
    // student: convolutions, depthwise, squeeze-excitation, residuals) with 2 classes at 32 px.
    Generator gen(3);
    nn::ModelOptions o;
    o.num_classes = 2;
    o.width_mult = 0.1;
    auto model = nn::create_model("efficientnet_b0", o, gen);
    deploy::ExportOptions eo;
    eo.classes = {"Glaucoma", "Normal"};
    eo.preprocess.resize = 40;
    eo.preprocess.crop = 32;
    eo.preprocess.fundus_crop = true;
    eo.metadata["trained_on"] = "nothing (a fuzz seed)";
    const std::string whole = out + "/bundle/efficientnet_b0_w0.1.rkd";
    deploy::export_bundle(whole, *model, eo);
#ifdef RETIKD_WITH_ONNX
    // The same student exported to ONNX (what classify --onnx reads back), a seed of the onnx target.
    RETIKD_CHECK(data::fs::make_dirs(out + "/onnx"), "cannot create ", out, "/onnx");
    // fp16 weights: half the size (203 KB), and the FLOAT16 conversion path is fuzzed as well.
    deploy::OnnxExportOptions half;
    half.precision = deploy::OnnxPrecision::fp16;
    deploy::export_onnx(out + "/onnx/efficientnet_b0_w0.1_student_fp16.onnx", deploy::load_bundle(whole), half);
#endif
    // Header-valid, one tensor: passes the checksum and the field checks, fails when the tensors load. The
    // same header as MobileNetV2 (its model is built, then the tensors do not fit).
    {
      io::SafetensorsContents c = io::read_safetensors(whole);
      c.tensors.resize(1);
      c.metadata["retikd.checksum"] = deploy::detail::compute_checksum(c.metadata, c.tensors);
      io::save_safetensors(out + "/bundle/header_only.rkd", c.tensors, c.metadata);
      c.metadata["retikd.arch"] = "mobilenet_v2";
      c.metadata["retikd.checksum"] = deploy::detail::compute_checksum(c.metadata, c.tensors);
      io::save_safetensors(out + "/bundle/header_only_mobilenet_v2.rkd", c.tensors, c.metadata);
    }
    // Checkpoints of the harness's own state.
    fuzz_checkpoint::State s;
    train::save_checkpoint(out + "/checkpoint/fresh.safetensors", s.state);
    for (int step = 0; step < 2; ++step) {
      s.opt.zero_grad();
      Var y = s.layer.forward(Var(randn({5, 4}, s.init)));
      ops::mean(ops::mul(y, y)).backward();
      s.opt.step();
      s.schedule.step();
    }
    s.counter = 9;
    s.state.epoch = 2;
    s.state.global_step = 2;
    s.state.best_metric = 0.75;
    s.state.best_epoch = 1;
    s.state.best_metric_name = "val_macro_f1";
    s.state.metadata["config.lr"] = "0.001";
    train::save_checkpoint(out + "/checkpoint/two_steps.safetensors", s.state);
    // A checkpoint of another state (a wider layer, no counter): valid, but it does not fit; the loader
    // must list every mismatch and change nothing.
    {
      Generator g(1);
      nn::Linear wide(4, 5, g);
      optim::AdamW opt(wide.parameters(), optim::AdamWOptions());
      train::TrainState other;
      other.add_module("model", wide);
      other.add_optimizer("adamw", opt);
      train::save_checkpoint(out + "/checkpoint/other_state.safetensors", other);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_seeds: %s\n", e.what());
    return 1;
  }
  std::printf("make_seeds: wrote the bundle and checkpoint seeds under %s\n", out.c_str());
  return 0;
}
