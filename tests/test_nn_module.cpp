// tests/test_nn_module.cpp — the Module base: dotted names, registration order, parameter counts, freezing,
// train/eval propagation, strict state-dict loading with every problem listed, Sequential naming.
#include <doctest/doctest.h>

#include "retikd/nn/module.hpp"
#include "retikd/ops/elementwise.hpp"
#include "retikd/ops/reduce.hpp"

using namespace retikd;

namespace {
struct Affine : nn::Layer {
  Var weight, bias;
  Tensor* count;
  explicit Affine(int64_t n) {
    weight = register_parameter("weight", Tensor::ones({n}));
    bias = register_parameter("bias", Tensor::zeros({n}));
    count = &register_buffer("num_calls", Tensor::zeros({1}, DType::int64));
  }
  Var forward(const Var& x) override {
    count->fill_(count->item<int64_t>() + 1);
    return x * weight + bias;
  }
};
struct Block : nn::Module {
  std::shared_ptr<nn::Sequential> layers = register_module("layers", std::make_shared<nn::Sequential>());
  std::shared_ptr<Affine> head = register_module("head", std::make_shared<Affine>(2));
  Block() {
    layers->push_back(std::make_shared<Affine>(2));
    layers->push_back(std::make_shared<Affine>(2));
  }
};
}  // namespace

TEST_CASE("names follow PyTorch's dotted convention in registration order") {
  Block b;
  std::vector<std::string> names;
  for (auto& kv : b.state_dict()) names.push_back(kv.first);
  CHECK(names == std::vector<std::string>{"layers.0.weight", "layers.0.bias", "layers.0.num_calls",
                                          "layers.1.weight", "layers.1.bias", "layers.1.num_calls",
                                          "head.weight", "head.bias", "head.num_calls"});
  CHECK(b.num_parameters() == 12);
  CHECK(b.parameters().size() == 6);
  CHECK(b.named_buffers().size() == 3);
  CHECK_THROWS_AS(b.register_parameter("head", Tensor::zeros({1})), Error);
  CHECK_THROWS_AS(b.register_parameter("a.b", Tensor::zeros({1})), Error);
  CHECK_THROWS_AS(b.parameter("nope"), Error);
}

TEST_CASE("parameters are shared handles: updates and moves are seen by the module") {
  Block b;
  Var x(Tensor::from_vector(std::vector<float>{1, 2}, {1, 2}));
  Var y = b.head->forward(b.layers->forward(x));
  ops::sum(y).backward();
  CHECK(b.head->weight.grad().defined());
  b.parameters()[0].mutable_value().fill_(3.0);
  CHECK(b.layers->child("0")->parameter("weight").value().at({0}) == 3.0);
  CHECK(b.layers->child("0")->named_buffers()[0].second->item<int64_t>() == 1);
  b.to(DType::float64);
  CHECK(b.head->weight.dtype() == DType::float64);
  CHECK(b.head->count->dtype() == DType::int64);  // integer buffers keep their dtype
  b.zero_grad();
  CHECK(!b.head->weight.grad().defined());
}

TEST_CASE("freeze, unfreeze, train and eval propagate to children") {
  Block b;
  b.layers->freeze();
  CHECK(b.num_parameters(true) == 4);
  CHECK(b.trainable_parameters().size() == 2);
  b.unfreeze();
  CHECK(b.num_parameters(true) == 12);
  CHECK(b.is_training());
  b.eval();
  CHECK(!b.head->is_training());
  CHECK(!(*b.layers)[1]->is_training());
  b.train();
  CHECK((*b.layers)[0]->is_training());
}

TEST_CASE("load_state_dict: strict by default, lists every problem, changes nothing on failure") {
  Block src, dst;
  src.parameters()[0].mutable_value().fill_(5.0);
  dst.load_state_dict(src.state_dict());
  CHECK(dst.layers->child("0")->named_buffers().size() == 1);
  CHECK(dst.parameters()[0].value().at({1}) == 5.0);

  auto state = src.state_dict();
  std::map<std::string, Tensor> m(state.begin(), state.end());
  m.erase("head.bias");
  m["head.extra"] = Tensor::zeros({1});
  m["layers.1.weight"] = Tensor::zeros({3});
  m["layers.0.weight"] = Tensor::full({2}, 9.0);
  try {
    dst.load_state_dict(m);
    FAIL("expected an error");
  } catch (const Error& e) {
    const std::string what = e.what();
    CHECK(what.find("head.bias") != std::string::npos);
    CHECK(what.find("head.extra") != std::string::npos);
    CHECK(what.find("layers.1.weight (3,)") != std::string::npos);
  }
  CHECK(dst.parameters()[0].value().at({0}) == 5.0);  // untouched
  m["layers.1.weight"] = Tensor::zeros({2});
  dst.load_state_dict(m, /*strict=*/false);  // missing/unexpected tolerated, shapes still checked
  CHECK(dst.parameters()[0].value().at({0}) == 9.0);
}
