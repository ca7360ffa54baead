// tests/test_data_synthetic.cpp — the synthetic fundus set: seeded and balanced; its classes are learnable by
// a small CNN from the lesions, cups and blur; and global colour statistics alone do not separate them (with a
// positive control: without the colour decorrelation the same classifier does separate them, so the test
// can fail).
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/data/loader.hpp"
#include "retikd/data/synthetic.hpp"
#include "retikd/ops/activation.hpp"
#include "retikd/ops/conv.hpp"
#include "retikd/ops/loss.hpp"
#include "retikd/ops/matmul.hpp"
#include "retikd/ops/pool.hpp"
#include "retikd/ops/reduce.hpp"
#include "retikd/ops/shape.hpp"

using namespace retikd;
using namespace retikd::data;

namespace {

SyntheticOptions sized(int size, bool decorrelate = true) {
  SyntheticOptions o;
  o.size = size;
  o.decorrelate_colour = decorrelate;
  return o;
}

// Per-image mean and standard deviation of each channel, over the whole image.
std::array<double, 6> colour_stats(const ImageU8& img) {
  std::array<double, 6> f{};
  const double n = static_cast<double>(img.width) * img.height;
  for (int c = 0; c < 3; ++c) {
    double s = 0, s2 = 0;
    for (std::size_t i = c; i < img.pixels.size(); i += 3) {
      const double v = img.pixels[i] / 255.0;
      s += v;
      s2 += v * v;
    }
    f[c] = s / n;
    f[3 + c] = std::sqrt(std::max(0.0, s2 / n - f[c] * f[c]));
  }
  return f;
}

// Held-out accuracy of two classifiers on the six colour statistics: nearest class centroid and 15-nearest
// neighbours, both on standardised features.
std::pair<double, double> colour_stat_accuracy(bool decorrelate) {
  const SyntheticOptions o = sized(32, decorrelate);
  const int n_train = 400, n_test = 400;
  std::vector<std::array<double, 6>> train, test;
  std::vector<int> y_train, y_test;
  for (int i = 0; i < n_train; ++i) {
    train.push_back(colour_stats(synthetic_fundus(21, i, o)));
    y_train.push_back(synthetic_label(i));
  }
  for (int i = 0; i < n_test; ++i) {
    test.push_back(colour_stats(synthetic_fundus(21, 10000 + i, o)));
    y_test.push_back(synthetic_label(10000 + i));
  }
  std::array<double, 6> mu{}, sd{};
  for (const auto& x : train)
    for (int j = 0; j < 6; ++j) mu[j] += x[j] / n_train;
  for (const auto& x : train)
    for (int j = 0; j < 6; ++j) sd[j] += (x[j] - mu[j]) * (x[j] - mu[j]) / n_train;
  for (double& s : sd) s = std::sqrt(s) + 1e-12;
  for (auto* set : {&train, &test})
    for (auto& x : *set)
      for (int j = 0; j < 6; ++j) x[j] = (x[j] - mu[j]) / sd[j];
  double centroid[4][6] = {};
  int count[4] = {};
  for (int i = 0; i < n_train; ++i) {
    ++count[y_train[i]];
    for (int j = 0; j < 6; ++j) centroid[y_train[i]][j] += train[i][j];
  }
  for (int c = 0; c < 4; ++c)
    for (int j = 0; j < 6; ++j) centroid[c][j] /= count[c];
  auto dist = [](const std::array<double, 6>& a, const double* b) {
    double d = 0;
    for (int j = 0; j < 6; ++j) d += (a[j] - b[j]) * (a[j] - b[j]);
    return d;
  };
  int ok_centroid = 0, ok_knn = 0;
  for (int i = 0; i < n_test; ++i) {
    int best = 0;
    for (int c = 1; c < 4; ++c)
      if (dist(test[i], centroid[c]) < dist(test[i], centroid[best])) best = c;
    ok_centroid += best == y_test[i];
    std::vector<std::pair<double, int>> d;
    for (int t = 0; t < n_train; ++t) d.push_back({dist(test[i], train[t].data()), y_train[t]});
    std::partial_sort(d.begin(), d.begin() + 15, d.end());
    int votes[4] = {};
    for (int k = 0; k < 15; ++k) ++votes[d[k].second];
    ok_knn += static_cast<int>(std::max_element(votes, votes + 4) - votes) == y_test[i];
  }
  return {double(ok_centroid) / n_test, double(ok_knn) / n_test};
}

}  // namespace

TEST_CASE("data: synthetic fundus images are seeded, balanced and round") {
  const SyntheticOptions o = sized(48);
  CHECK(synthetic_fundus(1, 5, o).pixels == synthetic_fundus(1, 5, o).pixels);
  CHECK(synthetic_fundus(1, 5, o).pixels != synthetic_fundus(2, 5, o).pixels);
  CHECK(synthetic_fundus(1, 5, o).pixels != synthetic_fundus(1, 9, o).pixels);  // same class, other index
  int counts[4] = {};
  for (int i = 0; i < 40; ++i) ++counts[synthetic_label(i)];
  for (int c : counts) CHECK(c == 10);
  const ImageU8 img = synthetic_fundus(1, 3, o);
  CHECK(img.width == 48);
  CHECK(img.height == 48);
  // Corners are black (outside the field of view), the centre is not.
  CHECK(img.at(0, 0)[0] < 10);
  CHECK(img.at(47, 47)[0] < 10);
  CHECK(img.at(24, 24)[0] > 40);
}

TEST_CASE("data: global colour statistics do not separate the synthetic classes") {
  const auto decorrelated = colour_stat_accuracy(true);
  const auto raw = colour_stat_accuracy(false);
  MESSAGE("colour-statistics accuracy (chance 0.25): decorrelated " << decorrelated.first << " / "
          << decorrelated.second << ", without decorrelation " << raw.first << " / " << raw.second);
  CHECK(decorrelated.first < 0.35);
  CHECK(decorrelated.second < 0.35);
  // Positive control: the classifiers do work when colour carries the class (cataract haze).
  CHECK(std::max(raw.first, raw.second) > 0.45);
}

TEST_CASE("data: a small CNN learns the synthetic classes") {
  // 800 training images at 32 px, through the loader (flips as augmentation), 8 epochs of Adam; 400 held-out
  // images from another index range. A few seconds in Release on two cores.
  const int S = 32;
  LoaderOptions opt;
  opt.batch_size = 32;
  opt.num_workers = 2;
  opt.seed = 1;
  opt.drop_last = true;
  opt.transform = compose({make<RandomHorizontalFlip>(), make<RandomVerticalFlip>(),
                           make<Normalize>(std::array<float, 3>{0.3f, 0.3f, 0.3f}, std::array<float, 3>{0.25f, 0.25f, 0.25f})});
  Loader train(std::make_shared<SyntheticSource>(800, 77, sized(S), 0), opt);
  LoaderOptions eval_opt = opt;
  eval_opt.shuffle = false;
  eval_opt.drop_last = false;
  eval_opt.batch_size = 100;
  eval_opt.transform = compose({make<Normalize>(std::array<float, 3>{0.3f, 0.3f, 0.3f}, std::array<float, 3>{0.25f, 0.25f, 0.25f})});
  Loader test(std::make_shared<SyntheticSource>(400, 77, sized(S), 100000), eval_opt);

  Generator g(3);
  const int64_t ch = 16;
  Var w1(Tensor::empty({ch, 3, 3, 3}), true), b1(Tensor::zeros({ch}), true);
  Var w2(Tensor::empty({2 * ch, ch, 3, 3}), true), b2(Tensor::zeros({2 * ch}), true);
  Var w3(Tensor::empty({2 * ch, 2 * ch, 3, 3}), true), b3(Tensor::zeros({2 * ch}), true);
  Var wl(Tensor::empty({4, 4 * ch}), true), bl(Tensor::zeros({4}), true);
  for (Var* w : {&w1, &w2, &w3, &wl}) kaiming_uniform_(w->mutable_value(), g, std::sqrt(5.0));
  std::vector<Var*> params = {&w1, &b1, &w2, &b2, &w3, &b3, &wl, &bl};
  const ops::Conv2dOptions same = ops::Conv2dOptions().with_padding(1);
  auto forward = [&](const Tensor& x) {  // (B, 3, 32, 32) → (B, 4)
    Var h = ops::max_pool2d(ops::relu(ops::conv2d(Var(x), w1, b1, same)), 2);  // (B, 16, 16, 16)
    h = ops::max_pool2d(ops::relu(ops::conv2d(h, w2, b2, same)), 2);          // (B, 32, 8, 8)
    h = ops::relu(ops::conv2d(h, w3, b3, same));                               // (B, 32, 8, 8)
    Var f = ops::reshape(h, {h.size(0), h.size(1), -1});                       // (B, 32, 64)
    // Average and max over positions: lesions are small, so a max detector helps.
    return ops::linear(ops::concat({ops::mean(f, {2}), ops::max(f, 2)}, 1), wl, bl);  // (B, 4)
  };
  auto accuracy = [&] {
    NoGradGuard no_grad;
    test.start_epoch(0);
    Batch b;
    int correct = 0, total = 0;
    while (test.next(b)) {
      const Tensor logits = forward(b.images).value();
      for (int64_t i = 0; i < b.size(); ++i) {
        int best = 0;
        for (int c = 1; c < 4; ++c)
          if (logits.at({i, c}) > logits.at({i, best})) best = c;
        correct += best == b.labels.at({i});
        ++total;
      }
    }
    return double(correct) / total;
  };

  // Adam (lr 3e-3), written out: no optimizer is needed from optim/ for this check.
  std::vector<std::vector<float>> m1, m2;
  for (Var* p : params) {
    m1.emplace_back(static_cast<std::size_t>(p->numel()), 0.0f);
    m2.emplace_back(static_cast<std::size_t>(p->numel()), 0.0f);
  }
  const double lr = 3e-3;
  int step = 0;
  const double before = accuracy();
  for (int epoch = 0; epoch < 8; ++epoch) {
    train.start_epoch(epoch);
    Batch b;
    while (train.next(b)) {
      for (Var* p : params) p->zero_grad();
      Var loss = ops::cross_entropy(forward(b.images), b.labels);
      loss.backward();
      ++step;
      const double c1 = 1 - std::pow(0.9, step), c2 = 1 - std::pow(0.999, step);
      for (std::size_t k = 0; k < params.size(); ++k) {
        float* w = params[k]->mutable_value().data<float>();
        const float* gr = params[k]->grad().data<float>();
        for (std::size_t q = 0; q < m1[k].size(); ++q) {
          m1[k][q] = 0.9f * m1[k][q] + 0.1f * gr[q];
          m2[k][q] = 0.999f * m2[k][q] + 0.001f * gr[q] * gr[q];
          w[q] -= static_cast<float>(lr * (m1[k][q] / c1) / (std::sqrt(m2[k][q] / c2) + 1e-8));
        }
      }
    }
  }
  const double after = accuracy();
  MESSAGE("held-out accuracy on 400 synthetic images: " << before << " before training, " << after << " after");
  CHECK(after >= 0.6);  // chance is 0.25
}
