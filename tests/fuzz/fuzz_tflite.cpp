// tests/fuzz/fuzz_tflite.cpp — fuzzes the TFLite importer (io/tflite.hpp over io/flatbuffer.hpp): the
// flatbuffer walk, the model's validation, dequantization of every constant, the float network's setup
// (deploy/tflite_interpreter.hpp) and, for graphs small enough to run in a moment (every tensor together under
// 65,536 elements), one forward pass on zeros; plus the MobileNetV2 name mapping. Promise checked: a
// dequantized constant has its declared shape.
#include "fuzz_target.hpp"

#include <retikd/deploy/tflite_interpreter.hpp>
#include <retikd/io/tflite.hpp>
#include <retikd/io/tflite_mobilenet_v2.hpp>

RETIKD_FUZZ_TARGET(tflite)(const uint8_t* data, std::size_t size) {
  using namespace retikd;
  namespace tfl = io::tflite;
  std::shared_ptr<tfl::Model> model;
  try {
    model = std::make_shared<tfl::Model>(tfl::Model::from_bytes(std::vector<uint8_t>(data, data + size), "fuzz"));
  } catch (const Error&) {
    return 0;
  }
  (void)model->summary();
  uint64_t elements = 0;
  for (std::size_t i = 0; i < model->tensors().size(); ++i) {
    uint64_t n = 1;
    for (int64_t d : model->tensors()[i].shape) n *= static_cast<uint64_t>(d);  // each below 2^40 (validated)
    elements += std::min<uint64_t>(n, uint64_t(1) << 40);
    if (!model->is_constant(static_cast<int32_t>(i))) continue;
    FUZZ_EXPECT_ERROR_OR_SUCCESS({
      const Tensor t = model->dequantize(static_cast<int32_t>(i));
      FUZZ_REQUIRE(t.shape() == model->tensors()[i].shape);
    });
  }
  FUZZ_EXPECT_ERROR_OR_SUCCESS(tfl::mobilenet_v2_state_dict(*model));
  if (elements > (1u << 16)) return 0;
  FUZZ_EXPECT_ERROR_OR_SUCCESS({
    const deploy::tflite::FloatNetwork net(*model);
    const tfl::TensorInfo& in = model->tensor(model->inputs().at(0));
    const Tensor x = Tensor::zeros(in.shape, DType::float32);
    (void)net.forward(x);
  });
  return 0;
}
