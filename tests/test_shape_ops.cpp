// tests/test_shape_ops.cpp — differentiable shape ops: views, concat / split / chunk, index_select, gather
// and constant pad. Forward values by hand, backward through the float64 gradient checker (the random output
// weighting makes a misplaced gradient element fail), and the error paths.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "retikd/autograd/gradcheck.hpp"
#include "retikd/core/random.hpp"
#include "retikd/ops/elementwise.hpp"
#include "retikd/ops/shape.hpp"
#include "test_util.hpp"

using namespace retikd;
using namespace retikd::test;

namespace {


// 0, 1, 2, ... as float64 of shape s: values that name their position
Tensor iota(const Shape& s) {
  return Tensor::arange(0.0, static_cast<double>(shape_numel(s)), 1.0, DType::float64).reshape(s);
}



}  // namespace

// ---- views ------------------------------------------------------------------------------------------------
TEST_CASE("reshape, view and flatten forward and backward") {
  Tensor x = iota({2, 3, 4});
  check_close(ops::reshape(Var(x), {4, -1}).value(), x.to_vector<double>(), 0, 0);
  CHECK(ops::reshape(Var(x), {4, -1}).shape() == Shape{4, 6});
  CHECK(ops::view(Var(x), {6, 4}).value().shares_storage_with(x));
  CHECK(ops::flatten(Var(x), 1).shape() == Shape{2, 12});
  check_grad([](const std::vector<Var>& v) { return ops::reshape(v[0], {3, 8}); }, {randn64({2, 3, 4}, 1)});
  check_grad([](const std::vector<Var>& v) { return ops::view(v[0], {6, 4}); }, {randn64({2, 3, 4}, 2)});
  check_grad([](const std::vector<Var>& v) { return ops::flatten(v[0], 0, 1); }, {randn64({2, 3, 4}, 3)});
  // reshape of a transposed (non-contiguous) view copies; its gradient still lands in the right places
  check_grad([](const std::vector<Var>& v) { return ops::reshape(ops::transpose(v[0], 0, 1), {-1}); },
             {randn64({3, 4}, 4)});
  CHECK_THROWS_AS(ops::view(ops::transpose(Var(x), 0, 2), {24}), Error);
  CHECK_THROWS_AS(ops::reshape(Var(x), {5, -1}), Error);
}

TEST_CASE("permute, transpose, squeeze, unsqueeze, contiguous: values and gradients") {
  Tensor x = iota({2, 3, 4});
  Var p = ops::permute(Var(x), {2, 0, 1});
  CHECK(p.shape() == Shape{4, 2, 3});
  CHECK(p.value().at({3, 1, 2}) == x.at({1, 2, 3}));
  CHECK(ops::transpose(Var(x), 0, -1).value().at({3, 2, 1}) == x.at({1, 2, 3}));
  // a permutation that is not its own inverse: a wrong inverse fails here
  check_grad(
      [](const std::vector<Var>& v) {
        return ops::permute(v[0], {2, 0, 1});
      },
      {randn64({2, 3, 4}, 5)});
  check_grad(
      [](const std::vector<Var>& v) {
        return ops::permute(v[0], {1, -1, 0});
      },
      {randn64({2, 3, 4}, 6)});
  check_grad([](const std::vector<Var>& v) { return ops::transpose(v[0], 1, 2); }, {randn64({2, 3, 4}, 7)});
  check_grad([](const std::vector<Var>& v) { return ops::contiguous(ops::transpose(v[0], 0, 1)); },
             {randn64({3, 5}, 8)});
  Tensor y = randn64({3, 1, 4, 1}, 9);
  CHECK(ops::squeeze(Var(y)).shape() == Shape{3, 4});
  CHECK(ops::squeeze(Var(y), 1).shape() == Shape{3, 4, 1});
  CHECK(ops::unsqueeze(Var(y), -1).shape() == Shape{3, 1, 4, 1, 1});
  check_grad([](const std::vector<Var>& v) { return ops::squeeze(v[0]); }, {y});
  check_grad([](const std::vector<Var>& v) { return ops::squeeze(v[0], -1); }, {y});
  check_grad([](const std::vector<Var>& v) { return ops::unsqueeze(v[0], 2); }, {y});
  CHECK_THROWS_AS(ops::squeeze(Var(y), 0), Error);
  CHECK_THROWS_AS(ops::permute(Var(x), {0, 0, 1}), Error);
}

TEST_CASE("slice and narrow: values and gradients scattered back into zeros") {
  Tensor x = iota({4, 5});
  check_close(ops::slice(Var(x), 1, 1, 5, 2).value(), {1, 3, 6, 8, 11, 13, 16, 18}, 0, 0);
  check_close(ops::slice(Var(x), 0, -2, 4).value(), {10, 11, 12, 13, 14, 15, 16, 17, 18, 19}, 0, 0);
  check_close(ops::narrow(Var(x), 1, 3, 2).value(), {3, 4, 8, 9, 13, 14, 18, 19}, 0, 0);
  Var v(x, true);
  ops::slice(v, 1, 1, 5, 2).backward(Tensor::ones({4, 2}, DType::float64));
  check_close(v.grad(), {0, 1, 0, 1, 0, 0, 1, 0, 1, 0, 0, 1, 0, 1, 0, 0, 1, 0, 1, 0}, 0, 0);
  check_grad([](const std::vector<Var>& in) { return ops::slice(in[0], 1, 1, 5, 2); }, {randn64({4, 5}, 1)});
  check_grad([](const std::vector<Var>& in) { return ops::slice(in[0], 0, -3, -1); }, {randn64({4, 5}, 2)});
  check_grad([](const std::vector<Var>& in) { return ops::narrow(in[0], -1, 2, 3); },
             {randn64({2, 3, 5}, 3)});
  // slicing a transposed view
  check_grad([](const std::vector<Var>& in) { return ops::narrow(ops::transpose(in[0], 0, 1), 0, 1, 2); },
             {randn64({3, 4}, 4)});
  CHECK_THROWS_AS(ops::narrow(Var(x), 1, 4, 2), Error);
  CHECK_THROWS_AS(ops::slice(Var(x), 2, 0, 1), Error);
}

// as_pitched_view decides when a GPU copy_ into a view can be one 2-D copy: every element of the view must sit
// at row·pitch + column of the flattened order, and every layout it accepts is checked element by element.
TEST_CASE("as_pitched_view: narrows of contiguous tensors are rows of a pitch; transposes and steps are not") {
  auto check = [](const Tensor& v, bool expect) {
    CAPTURE(shape_str(v.shape()));
    CAPTURE(shape_str(v.strides()));
    PitchedView p;
    const bool ok = as_pitched_view(v.shape(), v.strides(), &p);
    CHECK(ok == expect);
    if (!ok) return;
    CHECK(p.rows * p.row_elems == v.numel());
    // The view's element i in row-major order lives at offset + (i / row_elems)·pitch + i % row_elems.
    std::vector<int64_t> idx(v.shape().size(), 0);
    for (int64_t i = 0; i < v.numel(); ++i) {
      int64_t off = 0;
      for (std::size_t k = 0; k < idx.size(); ++k) off += idx[k] * v.strides()[k];
      CHECK(off == (i / p.row_elems) * p.pitch + i % p.row_elems);
      for (int64_t k = static_cast<int64_t>(idx.size()) - 1; k >= 0; --k) {
        if (++idx[static_cast<std::size_t>(k)] < v.shape()[static_cast<std::size_t>(k)]) break;
        idx[static_cast<std::size_t>(k)] = 0;
      }
    }
  };
  const Tensor t = Tensor::zeros({2, 5, 8});
  check(t, true);
  check(t.narrow(1, 1, 3), true);   // rows of 24, pitch 40
  check(t.narrow(2, 2, 5), true);   // rows of 5, pitch 8
  check(t.narrow(0, 1, 1), true);   // one contiguous block
  check(t.narrow(1, 4, 1), true);   // a size-1 dimension in the middle
  check(Tensor::zeros({4, 1, 6}).narrow(2, 0, 3), true);
  check(t.narrow(1, 1, 3).narrow(2, 0, 4), false);  // two levels of rows
  check(t.transpose(1, 2), false);
  check(t.slice(2, 0, 8, 2), false);  // a step
  check(Tensor::zeros({1, 8}).expand({3, 8}), false);
}

TEST_CASE("expand sums its gradient over the broadcast dimensions") {
  Tensor x = f64({1, 2, 3}, {1, 3});
  Var e = ops::expand(Var(x), {4, 2, 3});
  CHECK(e.shape() == Shape{4, 2, 3});
  CHECK(e.value().at({3, 1, 2}) == 3.0);
  Var v(x, true);
  ops::expand(v, {4, 2, 3}).backward(Tensor::ones({4, 2, 3}, DType::float64));
  check_close(v.grad(), {8, 8, 8}, 0, 0);
  check_grad([](const std::vector<Var>& in) { return ops::expand(in[0], {4, 2, 3}); }, {randn64({1, 3}, 1)});
  check_grad([](const std::vector<Var>& in) { return ops::expand(in[0], {3, -1, 5}); }, {randn64({2, 1}, 2)});
  check_grad([](const std::vector<Var>& in) { return ops::expand(in[0], {1, 1}); }, {randn64({1, 1}, 3)});
  CHECK_THROWS_AS(ops::expand(Var(x), {4, 2}), Error);
}

// ---- concat / split / chunk -------------------------------------------------------------------------------
TEST_CASE("concat along any dimension, with its gradient split back") {
  Tensor a = f64({1, 2, 3, 4}, {2, 2}), b = f64({5, 6}, {2, 1}), c = f64({7, 8, 9, 10, 11, 12}, {2, 3});
  check_close(ops::concat({Var(a), Var(b), Var(c)}, 1).value(), {1, 2, 5, 7, 8, 9, 3, 4, 6, 10, 11, 12}, 0, 0);
  check_close(ops::concat({Var(a), Var(f64({9, 9}, {1, 2}))}, 0).value(), {1, 2, 3, 4, 9, 9}, 0, 0);
  CHECK(ops::concat({Var(a), Var(b), Var(c)}, -1).shape() == Shape{2, 6});
  check_grad(
      [](const std::vector<Var>& v) {
        return ops::concat({v[0], v[1], v[2]}, 1);
      },
      {randn64({2, 2}, 1), randn64({2, 1}, 2), randn64({2, 3}, 3)});
  check_grad(
      [](const std::vector<Var>& v) {
        return ops::concat({v[0], v[1]}, 0);
      },
      {randn64({1, 3, 2}, 4), randn64({3, 3, 2}, 5)});
  // a middle dimension, a transposed input and an input used twice (gradients add)
  check_grad(
      [](const std::vector<Var>& v) {
        return ops::concat({v[0], ops::transpose(v[1], 1, 2), v[0]}, 1);
      },
      {randn64({2, 3, 4}, 6), randn64({2, 4, 1}, 7)});
  // inputs that do not require a gradient are fine
  check_grad(
      [](const std::vector<Var>& v) {
        return ops::concat({v[0], v[1]}, 0);
      },
      {randn64({2, 2}, 8), randn64({1, 2}, 9)}, {1});
  // integer tensors concatenate too (no gradient)
  Tensor ints = ops::concat({Var(i64({1, 2}, {2})), Var(i64({3}, {1}))}, 0).value();
  CHECK(ints.dtype() == DType::int64);
  CHECK(ints.to_vector<int64_t>() == std::vector<int64_t>{1, 2, 3});
}

TEST_CASE("concat rejects mismatched inputs with a message naming them") {
  Var a(randn64({2, 3}, 1)), b(randn64({3, 2}, 2));
  const std::string msg = error_of([&] { ops::concat({a, b}, 0); });
  CHECK(contains(msg, "concat"));
  CHECK(contains(msg, "(3, 2)"));
  CHECK_THROWS_AS(ops::concat({a, Var(randn64({2, 3}, 3).to(DType::float32))}, 0), Error);
  CHECK_THROWS_AS(ops::concat({a, Var(randn64({2, 3, 1}, 3))}, 0), Error);
  CHECK_THROWS_AS(ops::concat({}, 0), Error);
  CHECK_THROWS_AS(ops::concat({a, a}, 2), Error);
}

TEST_CASE("split and chunk give the documented pieces and their gradients") {
  Tensor x = iota({2, 7});
  std::vector<Var> s = ops::split(Var(x), {1, 4, 2}, 1);
  REQUIRE(s.size() == 3);
  check_close(s[0].value(), {0, 7}, 0, 0);
  check_close(s[1].value(), {1, 2, 3, 4, 8, 9, 10, 11}, 0, 0);
  check_close(s[2].value(), {5, 6, 12, 13}, 0, 0);
  std::vector<Var> c = ops::chunk(Var(x), 4, -1);  // 7 in 4: 2, 2, 2, 1
  REQUIRE(c.size() == 4);
  CHECK(c[3].shape() == Shape{2, 1});
  CHECK(ops::chunk(Var(iota({5})), 4, 0).size() == 3);  // 5 in 4: 2, 2, 1
  CHECK(ops::chunk(Var(iota({2, 1})), 3, 1).size() == 1);
  // pieces reordered: every piece's gradient must land in its own window
  check_grad(
      [](const std::vector<Var>& v) {
        std::vector<Var> p = ops::split(v[0], {1, 4, 2}, 1);
        return ops::concat({p[2], ops::mul(p[0], 3.0), p[1]}, 1);
      },
      {randn64({2, 7}, 1)});
  check_grad(
      [](const std::vector<Var>& v) {
        std::vector<Var> p = ops::chunk(v[0], 3, 0);
        return ops::concat({p[1], p[0], ops::mul(p[2], -2.0)}, 0);
      },
      {randn64({5, 3}, 2)});
  // only some pieces used: the unused ones get zero gradient
  check_grad([](const std::vector<Var>& v) { return ops::chunk(v[0], 2, 1)[1]; }, {randn64({3, 4}, 3)});
  CHECK_THROWS_AS(ops::split(Var(x), {1, 4}, 1), Error);
  CHECK_THROWS_AS(ops::split(Var(x), {8, -1}, 1), Error);
  CHECK_THROWS_AS(ops::chunk(Var(x), 0, 1), Error);
}

// ---- index_select / gather --------------------------------------------------------------------------------
TEST_CASE("index_select picks rows (with repeats) and scatter-adds its gradient") {
  Tensor x = iota({3, 4});
  check_close(ops::index_select(Var(x), 0, i64({2, 0, 2}, {3})).value(),
               {8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11}, 0, 0);
  check_close(ops::index_select(Var(x), 1, i64({3, 1}, {2})).value(), {3, 1, 7, 5, 11, 9}, 0, 0);
  CHECK(ops::index_select(Var(x), 0, i64({1}, {})).shape() == Shape{1, 4});  // 0-D index
  Var v(x, true);
  ops::index_select(v, 0, i64({2, 0, 2}, {3})).backward(Tensor::ones({3, 4}, DType::float64));
  check_close(v.grad(), {1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 2, 2}, 0, 0);
  const Tensor idx = i64({1, 1, 0, 3}, {4});
  check_grad([idx](const std::vector<Var>& in) { return ops::index_select(in[0], 1, idx); },
             {randn64({2, 4, 3}, 1)});
  check_grad([idx](const std::vector<Var>& in) { return ops::index_select(in[0], 0, idx); },
             {randn64({5, 2}, 2)});
  check_grad(
      [idx](const std::vector<Var>& in) { return ops::index_select(ops::transpose(in[0], 0, 1), -1, idx); },
      {randn64({4, 3}, 3)});
  // int32 indices are widened
  check_close(ops::index_select(Var(x), 1, i64({2}, {1}).to(DType::int32)).value(), {2, 6, 10}, 0, 0);
}

TEST_CASE("index_select errors name the bad index") {
  Tensor x = iota({3, 4});
  const std::string msg = error_of([&] { ops::index_select(Var(x), 1, i64({0, 5}, {2})); });
  CHECK(contains(msg, "index_select"));
  CHECK(contains(msg, "index 5"));
  CHECK(contains(msg, "position 1"));
  CHECK_THROWS_AS(ops::index_select(Var(x), 0, i64({-1}, {1})), Error);
  CHECK_THROWS_AS(ops::index_select(Var(x), 0, f64({0}, {1})), Error);        // float index
  CHECK_THROWS_AS(ops::index_select(Var(x), 0, i64({0, 1}, {1, 2})), Error);  // 2-D index
  CHECK_THROWS_AS(ops::index_select(Var(x), 2, i64({0}, {1})), Error);
}

TEST_CASE("gather follows PyTorch's semantics, forward and backward") {
  // torch.gather(torch.tensor([[1, 2], [3, 4]]), 1, torch.tensor([[0, 0], [1, 0]])) == [[1, 1], [4, 3]]
  Tensor x = f64({1, 2, 3, 4}, {2, 2});
  check_close(ops::gather(Var(x), 1, i64({0, 0, 1, 0}, {2, 2})).value(), {1, 1, 4, 3}, 0, 0);
  // dim 0, and an index smaller than the input in the other dimension
  Tensor y = iota({3, 4});
  check_close(ops::gather(Var(y), 0, i64({2, 0, 1, 1, 0, 2}, {2, 3})).value(), {8, 1, 6, 4, 1, 10}, 0, 0);
  Var v(x, true);
  ops::gather(v, 1, i64({0, 0, 1, 0}, {2, 2})).backward(Tensor::ones({2, 2}, DType::float64));
  check_close(v.grad(), {2, 0, 1, 1}, 0, 0);
  const Tensor idx3 = i64({0, 2, 2, 1, 0, 0, 1, 1, 2, 0, 2, 1}, {2, 3, 2});
  check_grad([idx3](const std::vector<Var>& in) { return ops::gather(in[0], 2, idx3); },
             {randn64({2, 3, 3}, 1)});
  check_grad([idx3](const std::vector<Var>& in) { return ops::gather(in[0], 1, idx3); },
             {randn64({2, 3, 2}, 2)});
  check_grad([idx3](const std::vector<Var>& in) { return ops::gather(in[0], 0, idx3); },
             {randn64({3, 4, 5}, 3)});
  // a non-contiguous input and a non-contiguous index
  const Tensor idx_t = i64({1, 0, 2, 2, 0, 1}, {3, 2}).transpose(0, 1);
  check_grad(
      [idx_t](const std::vector<Var>& in) { return ops::gather(ops::transpose(in[0], 0, 1), 1, idx_t); },
      {randn64({4, 2}, 4)});
  // 1x1
  check_grad(
      [](const std::vector<Var>& in) {
        return ops::gather(in[0], 1, i64({0}, {1, 1}));
      },
      {randn64({1, 1}, 5)});
}

TEST_CASE("gather errors") {
  Tensor x = iota({2, 3});
  const std::string msg = error_of([&] { ops::gather(Var(x), 1, i64({0, 3}, {2, 1})); });
  CHECK(contains(msg, "gather"));
  CHECK(contains(msg, "index 3"));
  CHECK_THROWS_AS(ops::gather(Var(x), 1, i64({0, 1}, {2})), Error);           // wrong number of dims
  CHECK_THROWS_AS(ops::gather(Var(x), 1, i64({0, 0, 0, 0}, {4, 1})), Error);  // too big outside dim
  CHECK_THROWS_AS(ops::gather(Var(x), 1, f64({0, 0}, {2, 1})), Error);        // float index
}

// ---- pad --------------------------------------------------------------------------------------------------
TEST_CASE("constant pad of the last dimensions, cropping with negative amounts") {
  Tensor x = f64({1, 2, 3, 4, 5, 6}, {2, 3});
  Var p = ops::pad(Var(x), {1, 2}, -1.0);
  CHECK(p.shape() == Shape{2, 6});
  check_close(p.value(), {-1, 1, 2, 3, -1, -1, -1, 4, 5, 6, -1, -1}, 0, 0);
  // {left, right, top, bottom}: the last dim by (0, 1), the one before by (1, 0)
  check_close(ops::pad(Var(x), {0, 1, 1, 0}).value(), {0, 0, 0, 0, 1, 2, 3, 0, 4, 5, 6, 0}, 0, 0);
  check_close(ops::pad(Var(x), {-1, 1}).value(), {2, 3, 0, 5, 6, 0}, 0, 0);
  check_grad([](const std::vector<Var>& v) { return ops::pad(v[0], {1, 2}, 3.0); }, {randn64({2, 3}, 1)});
  check_grad([](const std::vector<Var>& v) { return ops::pad(v[0], {2, 0, 1, 1}); }, {randn64({2, 3, 4}, 2)});
  check_grad([](const std::vector<Var>& v) { return ops::pad(v[0], {-1, 2, 0, -1}); }, {randn64({3, 4}, 3)});
  check_grad(
      [](const std::vector<Var>& v) {
        return ops::pad(ops::transpose(v[0], 0, 1), {1, 1, 1, 1});
      },
      {randn64({2, 3}, 4)});
  check_grad(
      [](const std::vector<Var>& v) {
        return ops::pad(v[0], {1, 0, 0, 1, 1, 1});
      },
      {randn64({1, 1, 1}, 5)});
  CHECK_THROWS_AS(ops::pad(Var(x), {1}), Error);
  CHECK_THROWS_AS(ops::pad(Var(x), {1, 1, 1, 1, 1, 1}), Error);
  CHECK_THROWS_AS(ops::pad(Var(x), {-2, -2}), Error);
}
