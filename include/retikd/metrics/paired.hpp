// retikd/metrics/paired.hpp — the statistics of a fair comparison between two training recipes run on paired
// seeds (same data order, views and epochs per seed) and evaluated on the same test images:
//
//   paired_difference(a, b)   per-seed differences d_i = b_i − a_i: mean, sample standard deviation and the 95%
//                             confidence interval mean ± t(0.975, n−1)·sd/√n (Student's t: with 5 seeds the
//                             half-width is 2.78·sd/√5, not 1.96·sd/√5)
//   mcnemar(labels, pa, pb)   McNemar's exact test on one test split: of the images exactly one model gets right
//                             (b: only A, c: only B), is the split consistent with 50:50? two-sided binomial
//                             p = min(1, 2·P[X ≤ min(b, c)]), X ~ Binomial(b + c, ½)
//
// One seed on 446 test images moves accuracy by 1–2 points; a claim that B beats A needs the interval of the
// paired differences above zero, not two means that differ.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "retikd/core/error.hpp"

namespace retikd {
namespace metrics {

namespace detail {

// The regularised incomplete beta function I_x(a, b) by its continued fraction (modified Lentz), used on the side
// where it converges fast (x < (a + 1)/(a + b + 2)) and by symmetry I_x(a, b) = 1 − I_{1−x}(b, a) otherwise.
inline double incomplete_beta_cf(double a, double b, double x) {
  const double tiny = 1e-300;
  double c = 1.0, d = 1.0 - (a + b) * x / (a + 1.0);
  if (std::abs(d) < tiny) d = tiny;
  d = 1.0 / d;
  double f = d;
  for (int m = 1; m <= 300; ++m) {
    const double m2 = 2.0 * m;
    double num = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
    d = 1.0 + num * d;
    c = 1.0 + num / c;
    if (std::abs(d) < tiny) d = tiny;
    if (std::abs(c) < tiny) c = tiny;
    d = 1.0 / d;
    f *= d * c;
    num = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0));
    d = 1.0 + num * d;
    c = 1.0 + num / c;
    if (std::abs(d) < tiny) d = tiny;
    if (std::abs(c) < tiny) c = tiny;
    d = 1.0 / d;
    const double step = d * c;
    f *= step;
    if (std::abs(step - 1.0) < 1e-14) break;
  }
  return f;
}

inline double regularized_incomplete_beta(double a, double b, double x) {
  if (x <= 0.0) return 0.0;
  if (x >= 1.0) return 1.0;
  const double log_front = std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x);
  if (x < (a + 1.0) / (a + b + 2.0)) return std::exp(log_front) * incomplete_beta_cf(a, b, x) / a;
  return 1.0 - std::exp(log_front) * incomplete_beta_cf(b, a, 1.0 - x) / b;
}

}  // namespace detail

// P[T ≤ t] for Student's t with `df` degrees of freedom.
inline double student_t_cdf(double t, double df) {
  RETIKD_CHECK(df > 0, "student_t_cdf: degrees of freedom must be positive, got ", df);
  const double x = df / (df + t * t);
  const double tail = 0.5 * detail::regularized_incomplete_beta(0.5 * df, 0.5, x);  // P[T > |t|]
  return t >= 0 ? 1.0 - tail : tail;
}

// The q-quantile of Student's t (bisection on the CDF; q in (0, 1)).
inline double student_t_quantile(double q, double df) {
  RETIKD_CHECK(q > 0.0 && q < 1.0, "student_t_quantile: q ", q, " must be in (0, 1)");
  double lo = -1e4, hi = 1e4;
  for (int it = 0; it < 200; ++it) {
    const double mid = 0.5 * (lo + hi);
    (student_t_cdf(mid, df) < q ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

struct PairedDifference {
  int64_t n = 0;
  double mean = 0, sd = 0;  // of the per-seed differences b − a
  double ci_low = std::numeric_limits<double>::quiet_NaN(), ci_high = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> differences;
};

// Paired differences b_i − a_i with the 95% interval of their mean (undefined for fewer than 2 pairs).
inline PairedDifference paired_difference(const std::vector<double>& a, const std::vector<double>& b) {
  RETIKD_CHECK(a.size() == b.size() && !a.empty(), "paired_difference: ", a.size(), " and ", b.size(),
               " values (need the same positive number: one per seed)");
  PairedDifference r;
  r.n = static_cast<int64_t>(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) r.differences.push_back(b[i] - a[i]);
  for (double d : r.differences) r.mean += d;
  r.mean /= static_cast<double>(r.n);
  if (r.n < 2) return r;
  double ss = 0;
  for (double d : r.differences) ss += (d - r.mean) * (d - r.mean);
  r.sd = std::sqrt(ss / static_cast<double>(r.n - 1));
  const double half = student_t_quantile(0.975, static_cast<double>(r.n - 1)) * r.sd / std::sqrt(static_cast<double>(r.n));
  r.ci_low = r.mean - half;
  r.ci_high = r.mean + half;
  return r;
}

struct McNemar {
  int64_t only_a = 0, only_b = 0;  // images exactly one of the two models classifies correctly
  double p_value = 1.0;            // exact two-sided
};

// McNemar's exact test of two models' predictions on the same labelled images.
inline McNemar mcnemar(const std::vector<int64_t>& labels, const std::vector<int64_t>& pred_a,
                       const std::vector<int64_t>& pred_b) {
  RETIKD_CHECK(labels.size() == pred_a.size() && labels.size() == pred_b.size() && !labels.empty(), "mcnemar: ",
               labels.size(), " labels, ", pred_a.size(), " and ", pred_b.size(), " predictions");
  McNemar m;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const bool a = pred_a[i] == labels[i], b = pred_b[i] == labels[i];
    m.only_a += a && !b;
    m.only_b += b && !a;
  }
  const int64_t n = m.only_a + m.only_b, k = std::min(m.only_a, m.only_b);
  if (n == 0) return m;
  // P[X ≤ k], X ~ Binomial(n, ½), summed in log space
  double tail = 0.0;
  for (int64_t i = 0; i <= k; ++i)
    tail += std::exp(std::lgamma(n + 1.0) - std::lgamma(i + 1.0) - std::lgamma(n - i + 1.0) - n * std::log(2.0));
  m.p_value = std::min(1.0, 2.0 * tail);
  return m;
}

}  // namespace metrics
}  // namespace retikd
