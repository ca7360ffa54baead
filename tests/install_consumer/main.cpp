// Uses the installed headers: a tiny forward and backward, printing the gradient it checks.
#include <retikd/kd.hpp>

#include <cstdio>

int main() {
  using namespace retikd;
  Var x(Tensor::from_vector(std::vector<float>{1, 2, 3}, {3}), true);
  Var y = ops::sum(x * x);
  y.backward();
  const std::vector<float> g = x.grad().to_vector<float>();
  std::printf("grad = %g %g %g\n", g[0], g[1], g[2]);
  return (g[0] == 2 && g[1] == 4 && g[2] == 6) ? 0 : 1;
}
