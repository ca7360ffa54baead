// tools/fp32_kink_check.cpp — how far the CPU's own float32 training step is from float64 (the evidence behind
// test_cuda_models.cpp's gradient rule). ReLU / ReLU6 make a float32 backward discontinuous: an activation within
// rounding of a kink lands on the other side, and a few gradient elements move by percents up the network.
// For three seeds, one training step (cross-entropy, batch 4, 48 px, width 0.5) of the named model in float32
// and in float64 on the CPU; prints per seed the tensors and elements whose float32 gradient is off by more
// than 2e-3 of the tensor's largest reference magnitude, and the smallest cosine similarity of a tensor.
//
//   g++ -std=c++17 -O2 -march=native -Iinclude tools/fp32_kink_check.cpp -o /tmp/fp32_kink_check -lpthread
//   /tmp/fp32_kink_check mobilenet_v2        # or efficientnet_b0, resnet18, vit_tiny (ViT: 48 px, patch 16)
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "retikd/core/random.hpp"
#include "retikd/nn/models.hpp"
#include "retikd/ops/loss.hpp"

using namespace retikd;

static std::vector<double> values(const Tensor& t) { return t.to(DType::float64).contiguous().to_vector<double>(); }

int main(int argc, char** argv) {
  const std::string name = argc > 1 ? argv[1] : "mobilenet_v2";
  for (uint64_t seed : {1ull, 2ull, 3ull}) {
    nn::ModelOptions o;
    o.num_classes = 4;
    o.width_mult = 0.5;
    o.img_size = 48;
    o.dropout = 0;
    o.drop_path_rate = 0;
    Generator g64(seed), g32(seed), gd(seed + 99);
    auto m64 = nn::create_model(name, o, g64), m32 = nn::create_model(name, o, g32);
    m64->to(DType::float64);
    m64->train();
    m32->train();
    Tensor x = Tensor::empty({4, 3, 48, 48}, DType::float64);
    normal_(x, 0, 1, gd);
    const Tensor y = Tensor::from_vector(std::vector<int64_t>{0, 1, 2, 3}, {4});
    ops::cross_entropy(m64->forward(Var(x, false)), y).backward();
    ops::cross_entropy(m32->forward(Var(x.to(DType::float32), false)), y).backward();
    const auto a = m32->named_parameters(), r = m64->named_parameters();
    int tensors = 0;
    long outside = 0, total = 0;
    double min_cos = 1;
    for (std::size_t i = 0; i < r.size(); ++i) {
      const auto va = values(a[i].second.grad()), vr = values(r[i].second.grad());
      double mx = 0, dot = 0, na = 0, nr = 0;
      for (double v : vr) mx = std::max(mx, std::abs(v));
      if (mx < 1e-12) continue;  // zero in exact arithmetic
      long out = 0;
      for (std::size_t k = 0; k < vr.size(); ++k) {
        dot += va[k] * vr[k];
        na += va[k] * va[k];
        nr += vr[k] * vr[k];
        if (std::abs(va[k] - vr[k]) > 2e-3 * mx) ++out;
      }
      min_cos = std::min(min_cos, dot / std::sqrt(na * nr));
      outside += out;
      total += static_cast<long>(vr.size());
      tensors += out > 0;
    }
    std::printf("%s seed %llu: float32 vs float64 on the CPU: %d tensors with elements outside 2e-3 of their scale, "
                "%ld of %ld elements, smallest cosine %.8f\n",
                name.c_str(), static_cast<unsigned long long>(seed), tensors, outside, total, min_cos);
  }
  return 0;
}
