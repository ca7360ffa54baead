// tests/fuzz/fuzz_all.cpp — the one libFuzzer binary (retikd_fuzz) that holds every harness of tests/fuzz/:
// each fuzz_<target>.cpp is included in registering mode (as tests/test_hostile_input.cpp includes them for the
// replay), and the target to fuzz is chosen at start-up by the environment variable RETIKD_FUZZ_TARGET
// (scripts/fuzz.sh sets it). One translation unit instead of one per target: the headers the readers share are
// compiled once, which is most of the fuzz build's time in CI.
//
//   RETIKD_FUZZ_TARGET=json build/fuzz/tests/fuzz/retikd_fuzz -runs=1000000 corpus_dir seeds_dir
#define RETIKD_FUZZ_REPLAY
#include "fuzz_bundle.cpp"
#include "fuzz_checkpoint.cpp"
#include "fuzz_image.cpp"
#include "fuzz_json.cpp"
#include "fuzz_manifest.cpp"
#include "fuzz_safetensors.cpp"
#include "fuzz_tflite.cpp"
#ifdef RETIKD_WITH_ONNX  // the ONNX reader is part of the optional retikd::onnx component
#include "fuzz_onnx.cpp"
#endif

namespace {
retikd::fuzz::TargetFn selected_target = nullptr;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const auto& targets = retikd::fuzz::registry();
  const char* name = std::getenv("RETIKD_FUZZ_TARGET");
  const auto it = name ? targets.find(name) : targets.end();
  if (it == targets.end()) {
    std::string known;
    for (const auto& t : targets) known += " " + t.first;
    std::fprintf(stderr, "retikd_fuzz: set RETIKD_FUZZ_TARGET to one of:%s (got %s)\n", known.c_str(),
                 name ? name : "nothing");
    std::exit(2);
  }
  selected_target = it->second;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) { return selected_target(data, size); }
