// tests/fuzz/fuzz_checkpoint.cpp — fuzzes the training-checkpoint loader (train/checkpoint.hpp) as --resume
// uses it: the header alone (read_checkpoint_info), then a full load into a small training state (a linear
// layer, an AdamW optimizer with a warm-up + cosine schedule, a generator and a counter). Promise checked:
// a load that fails leaves the state exactly as it was (loading is all or nothing).
#include "fuzz_target.hpp"

#include <cstring>

#include <retikd/nn/layers.hpp>
#include <retikd/train/checkpoint.hpp>

namespace fuzz_checkpoint {

struct State {
  retikd::Generator init{7};
  retikd::nn::Linear layer{4, 3, init};
  retikd::optim::AdamW opt{layer.parameters(), retikd::optim::AdamWOptions()};
  retikd::optim::WarmupCosineSchedule schedule{opt, 2, 10};
  retikd::Generator noise{11};
  int64_t counter = 5;
  retikd::train::TrainState state;

  State() {
    state.add_module("model", layer);
    state.add_optimizer("adamw", opt);
    state.add_schedule("lr", schedule);
    state.add_generator("noise", noise);
    state.add_counter("batches", counter);
  }
  // Everything a load may touch, as bytes.
  std::vector<uint8_t> snapshot() const {
    auto contents = retikd::train::checkpoint_contents(state);
    return retikd::io::serialize_safetensors(contents.first, contents.second);
  }
};

}  // namespace fuzz_checkpoint

RETIKD_FUZZ_TARGET(checkpoint)(const uint8_t* data, std::size_t size) {
  using namespace retikd;
  static fuzz::InputFile file, initial_file;
  static fuzz_checkpoint::State s;  // built once; put back after every load that succeeds
  static const std::vector<uint8_t> initial = s.snapshot();
  const std::string& path = file.write(data, size);
  FUZZ_EXPECT_ERROR_OR_SUCCESS(train::read_checkpoint_info(path));
  try {
    train::load_checkpoint(path, s.state);
  } catch (const Error&) {
    FUZZ_REQUIRE(s.snapshot() == initial);  // nothing was modified
    return 0;
  }
  train::load_checkpoint(initial_file.write(initial.data(), initial.size()), s.state);
  FUZZ_REQUIRE(s.snapshot() == initial);
  return 0;
}
