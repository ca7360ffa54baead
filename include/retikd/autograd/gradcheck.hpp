// retikd/autograd/gradcheck.hpp — the central-difference gradient checker every op test uses.
//
// gradcheck(fn, inputs) compares the tape's gradient of ⟨w, fn(inputs)⟩ — w a fixed random weighting of the
// outputs, so every output element matters and errors cannot cancel — with central differences
// (f(x+ε) − f(x−ε)) / 2ε on each input element. Run it on float64 inputs: in float32 the differences are too
// noisy to catch a wrong factor in a small term. Integer inputs (indices) are passed through, not checked.
#pragma once

#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/core/random.hpp"
#include "retikd/core/tensor.hpp"

namespace retikd {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-7;
  double rtol = 1e-5;
  uint64_t seed = 1234;
  // Inputs whose index is listed here are held fixed (e.g. targets, running statistics).
  std::vector<std::size_t> no_grad_inputs;
};

struct GradcheckResult {
  bool ok = true;
  double max_abs_error = 0.0;
  int64_t checked = 0;
  std::string message;  // the first few mismatches, naming input and element
};

inline GradcheckResult gradcheck(const std::function<Var(const std::vector<Var>&)>& fn,
                                 const std::vector<Tensor>& inputs, const GradcheckOptions& opt = {}) {
  GradcheckResult result;
  std::vector<Var> vars;
  std::vector<bool> checked_input(inputs.size(), false);
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    Tensor copy = inputs[i].to(Device::cpu()).contiguous().clone();
    bool want = is_floating(copy.dtype());
    for (std::size_t k : opt.no_grad_inputs) want = want && k != i;
    if (want) {
      RETIKD_CHECK(copy.dtype() == DType::float64, "gradcheck: input ", i, " is ", copy.describe(),
                   "; pass float64 inputs (or list it in no_grad_inputs)");
    }
    checked_input[i] = want;
    vars.emplace_back(copy, want);
  }

  Var out = fn(vars);
  RETIKD_CHECK(out.requires_grad(), "gradcheck: the output does not depend on any checked input");
  Generator g(opt.seed);
  Tensor weight = Tensor::empty(out.shape(), out.dtype());
  uniform_(weight, 0.5, 1.5, g);
  out.backward(weight);

  auto weighted_output = [&]() {
    NoGradGuard no_grad;
    Tensor y = fn(vars).value().to(DType::float64).contiguous();
    Tensor w = weight.to(DType::float64);
    const double* py = y.data<double>();
    const double* pw = w.data<double>();
    double s = 0.0;
    for (int64_t k = 0; k < y.numel(); ++k) s += py[k] * pw[k];
    return s;
  };

  std::ostringstream msg;
  int reported = 0;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (!checked_input[i]) continue;
    Tensor& x = vars[i].mutable_value();
    double* px = x.data<double>();
    Tensor analytic = vars[i].grad().defined() ? vars[i].grad().to(DType::float64).contiguous()
                                               : Tensor::zeros(x.shape(), DType::float64);
    const double* pa = analytic.data<double>();
    for (int64_t k = 0; k < x.numel(); ++k) {
      const double saved = px[k];
      px[k] = saved + opt.eps;
      const double plus = weighted_output();
      px[k] = saved - opt.eps;
      const double minus = weighted_output();
      px[k] = saved;
      const double numeric = (plus - minus) / (2.0 * opt.eps);
      const double err = std::fabs(pa[k] - numeric);
      result.max_abs_error = std::max(result.max_abs_error, err);
      ++result.checked;
      if (!(err <= opt.atol + opt.rtol * std::fabs(numeric))) {
        result.ok = false;
        if (reported++ < 5)
          msg << "input " << i << " element " << k << ": analytic " << pa[k] << " vs numeric " << numeric
              << "\n";
      }
    }
  }
  result.message = msg.str();
  return result;
}

}  // namespace retikd
