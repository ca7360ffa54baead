// retikd/metrics/classification.hpp — the evaluation of a classifier (DESIGN.md §1 step 4): accuracy,
// per-class precision / recall / F1 / support, macro and weighted averages, the confusion matrix, one-vs-rest
// ROC curves and ROC-AUC — with scikit-learn's conventions, so figures compare with published ones — and
// the metrics.json shape the distill_retina example writes.
//
// Conventions (docs/metrics.md has the formulas):
// - every class in `class_names` counts, present in the data or not (scikit-learn with labels=[0..C-1]);
// - zero division gives 0: precision of a class never predicted, recall of a class with no example, and F1
//   = 2·TP / (2·TP + FP + FN) when that denominator is 0 (scikit-learn's zero_division=0);
// - predictions are the argmax of the scores, the lowest index winning a tie (numpy.argmax);
// - ROC-AUC is the Mann–Whitney statistic: the fraction of (positive, negative) pairs the score orders
//   correctly, a tie counting one half — exactly the area under scikit-learn's trapezoidal ROC curve. It
//   is computed from integer pair counts and divided once, so it is exact to the last bit. A class with no
//   positive or no negative example has no AUC: NaN (scikit-learn raises), left out of the macro AUC;
// - logits are turned into probabilities with a softmax first (one-vs-rest AUC is not invariant to it).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "retikd/core/error.hpp"
#include "retikd/core/tensor.hpp"
#include "retikd/io/json.hpp"

namespace retikd {
namespace metrics {

inline const std::vector<std::string>& default_class_names() {
  static const std::vector<std::string> names = {"Cataract", "DR", "Glaucoma", "Normal"};
  return names;
}

enum class ScoreKind { probabilities, logits };

struct ClassMetrics {
  std::string name;
  double precision = 0, recall = 0, f1 = 0;
  double auc = std::numeric_limits<double>::quiet_NaN();
  int64_t support = 0;    // examples whose true class this is
  int64_t predicted = 0;  // examples predicted as this class
  int64_t true_positives = 0;
};

// One-vs-rest ROC curve: points in order of decreasing threshold, from (0, 0) (threshold +inf) to (1, 1).
// One point per distinct score (scikit-learn's roc_curve with drop_intermediate=False). Empty when the class
// has no positive or no negative example.
struct RocCurve {
  std::vector<double> fpr, tpr, thresholds;
  bool empty() const { return fpr.empty(); }
};

struct ClassificationResult {
  std::vector<std::string> class_names;
  int64_t num_samples = 0;
  double accuracy = 0;
  std::vector<ClassMetrics> per_class;
  double macro_precision = 0, macro_recall = 0, macro_f1 = 0;
  double weighted_precision = 0, weighted_recall = 0, weighted_f1 = 0;  // weights: support / N
  double macro_auc = std::numeric_limits<double>::quiet_NaN();          // mean over classes with an AUC
  std::vector<std::vector<int64_t>> confusion;                         // [true class][predicted class]
  std::vector<RocCurve> roc;                                            // per class (empty without scores)
  std::vector<int64_t> labels, predicted;                               // per sample, in evaluation order

  int64_t num_classes() const { return static_cast<int64_t>(class_names.size()); }
  const ClassMetrics& of(const std::string& name) const {
    for (const auto& c : per_class)
      if (c.name == name) return c;
    fail("metrics: no class \"", name, "\"");
  }
};

namespace detail {

inline void check_labels(const std::vector<int64_t>& labels, int64_t num_classes, const char* op) {
  RETIKD_CHECK(num_classes >= 2, op, ": need at least 2 classes, got ", num_classes);
  RETIKD_CHECK(!labels.empty(), op, ": no samples to evaluate");
  for (std::size_t i = 0; i < labels.size(); ++i)
    RETIKD_CHECK(labels[i] >= 0 && labels[i] < num_classes, op, ": label ", labels[i], " of sample ", i,
                 " is outside [0, ", num_classes, ")");
}

inline std::vector<std::string> resolve_names(const std::vector<std::string>& names, int64_t num_classes,
                                              const char* op) {
  if (names.empty()) {
    if (num_classes == static_cast<int64_t>(default_class_names().size())) return default_class_names();
    std::vector<std::string> out;
    for (int64_t c = 0; c < num_classes; ++c) out.push_back("class_" + std::to_string(c));
    return out;
  }
  RETIKD_CHECK(static_cast<int64_t>(names.size()) == num_classes, op, ": ", names.size(), " class names for ",
               num_classes, " classes");
  return names;
}

}  // namespace detail

// Row-wise softmax of logits (N·C row-major), in double, max-subtracted.
inline std::vector<double> softmax_rows(const std::vector<double>& logits, int64_t num_classes) {
  RETIKD_CHECK(num_classes > 0 && logits.size() % static_cast<std::size_t>(num_classes) == 0,
               "softmax_rows: ", logits.size(), " values are not rows of ", num_classes);
  std::vector<double> p(logits.size());
  const std::size_t C = static_cast<std::size_t>(num_classes);
  for (std::size_t r = 0; r < logits.size() / C; ++r) {
    const double* z = &logits[r * C];
    double m = z[0];
    for (std::size_t c = 1; c < C; ++c) m = std::max(m, z[c]);
    double s = 0;
    for (std::size_t c = 0; c < C; ++c) s += (p[r * C + c] = std::exp(z[c] - m));
    for (std::size_t c = 0; c < C; ++c) p[r * C + c] /= s;
  }
  return p;
}

// The argmax of each row (lowest index on ties).
inline std::vector<int64_t> argmax_rows(const std::vector<double>& scores, int64_t num_classes) {
  RETIKD_CHECK(num_classes > 0 && scores.size() % static_cast<std::size_t>(num_classes) == 0,
               "argmax_rows: ", scores.size(), " values are not rows of ", num_classes);
  const std::size_t C = static_cast<std::size_t>(num_classes);
  std::vector<int64_t> out(scores.size() / C);
  for (std::size_t r = 0; r < out.size(); ++r) {
    std::size_t best = 0;
    for (std::size_t c = 1; c < C; ++c)
      if (scores[r * C + c] > scores[r * C + best]) best = c;
    out[r] = static_cast<int64_t>(best);
  }
  return out;
}

// confusion[t][p] = number of samples of true class t predicted as p.
inline std::vector<std::vector<int64_t>> confusion_matrix(const std::vector<int64_t>& labels,
                                                          const std::vector<int64_t>& predictions,
                                                          int64_t num_classes) {
  detail::check_labels(labels, num_classes, "confusion_matrix");
  RETIKD_CHECK(predictions.size() == labels.size(), "confusion_matrix: ", predictions.size(),
               " predictions for ", labels.size(), " labels");
  std::vector<std::vector<int64_t>> m(static_cast<std::size_t>(num_classes),
                                      std::vector<int64_t>(static_cast<std::size_t>(num_classes), 0));
  for (std::size_t i = 0; i < labels.size(); ++i) {
    RETIKD_CHECK(predictions[i] >= 0 && predictions[i] < num_classes, "confusion_matrix: prediction ",
                 predictions[i], " of sample ", i, " is outside [0, ", num_classes, ")");
    ++m[static_cast<std::size_t>(labels[i])][static_cast<std::size_t>(predictions[i])];
  }
  return m;
}

// Binary ROC-AUC of `scores` for `positive` (true = positive example): P(s+ > s−) + ½·P(s+ = s−) over all
// (positive, negative) pairs. NaN when either class is empty.
inline double roc_auc(const std::vector<double>& scores, const std::vector<bool>& positive) {
  RETIKD_CHECK(scores.size() == positive.size(), "roc_auc: ", scores.size(), " scores for ", positive.size(),
               " labels");
  std::vector<std::size_t> order(scores.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return scores[a] < scores[b]; });
  // Walk tie groups in increasing score. Twice the count of correctly ordered pairs (a tie counts 1 of 2),
  // an integer, so the division at the end is the only rounding.
  uint64_t twice_correct = 0, negatives_below = 0, n_pos = 0, n_neg = 0;
  for (std::size_t i = 0; i < order.size();) {
    std::size_t j = i;
    uint64_t pos = 0, neg = 0;
    while (j < order.size() && scores[order[j]] == scores[order[i]]) {
      if (positive[order[j]]) {
        ++pos;
      } else {
        ++neg;
      }
      ++j;
    }
    twice_correct += pos * (2 * negatives_below + neg);
    negatives_below += neg;
    n_pos += pos;
    n_neg += neg;
    i = j;
  }
  if (n_pos == 0 || n_neg == 0) return std::numeric_limits<double>::quiet_NaN();
  return static_cast<double>(twice_correct) / (2.0 * static_cast<double>(n_pos) * static_cast<double>(n_neg));
}

// The ROC curve (see RocCurve). The area under it by the trapezoid rule equals roc_auc().
inline RocCurve roc_curve(const std::vector<double>& scores, const std::vector<bool>& positive) {
  RETIKD_CHECK(scores.size() == positive.size(), "roc_curve: ", scores.size(), " scores for ", positive.size(),
               " labels");
  uint64_t n_pos = 0;
  for (bool p : positive) n_pos += p ? 1 : 0;
  const uint64_t n_neg = positive.size() - n_pos;
  RocCurve curve;
  if (n_pos == 0 || n_neg == 0) return curve;
  std::vector<std::size_t> order(scores.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return scores[a] > scores[b]; });
  curve.fpr.push_back(0);
  curve.tpr.push_back(0);
  curve.thresholds.push_back(std::numeric_limits<double>::infinity());
  uint64_t tp = 0, fp = 0;
  for (std::size_t i = 0; i < order.size();) {
    const double t = scores[order[i]];
    while (i < order.size() && scores[order[i]] == t) {
      if (positive[order[i]]) {
        ++tp;
      } else {
        ++fp;
      }
      ++i;
    }
    curve.fpr.push_back(static_cast<double>(fp) / static_cast<double>(n_neg));
    curve.tpr.push_back(static_cast<double>(tp) / static_cast<double>(n_pos));
    curve.thresholds.push_back(t);
  }
  return curve;
}

// Area under a curve by the trapezoid rule (x non-decreasing).
inline double trapezoid_area(const std::vector<double>& x, const std::vector<double>& y) {
  RETIKD_CHECK(x.size() == y.size(), "trapezoid_area: sizes differ");
  double a = 0;
  for (std::size_t i = 1; i < x.size(); ++i) a += (x[i] - x[i - 1]) * (y[i] + y[i - 1]) / 2;
  return a;
}

// Everything from labels and hard predictions alone (AUC and ROC stay undefined/empty).
inline ClassificationResult evaluate_predictions(const std::vector<int64_t>& labels,
                                                 const std::vector<int64_t>& predictions, int64_t num_classes,
                                                 const std::vector<std::string>& class_names = {}) {
  ClassificationResult r;
  r.class_names = detail::resolve_names(class_names, num_classes, "evaluate_predictions");
  r.confusion = confusion_matrix(labels, predictions, num_classes);
  r.labels = labels;
  r.predicted = predictions;
  r.num_samples = static_cast<int64_t>(labels.size());
  const double n = static_cast<double>(r.num_samples);
  const std::size_t C = static_cast<std::size_t>(num_classes);
  int64_t correct = 0;
  for (std::size_t c = 0; c < C; ++c) {
    ClassMetrics m;
    m.name = r.class_names[c];
    m.true_positives = r.confusion[c][c];
    for (std::size_t k = 0; k < C; ++k) {
      m.support += r.confusion[c][k];
      m.predicted += r.confusion[k][c];
    }
    correct += m.true_positives;
    const double tp = static_cast<double>(m.true_positives);
    const double fp = static_cast<double>(m.predicted - m.true_positives);
    const double fn = static_cast<double>(m.support - m.true_positives);
    m.precision = m.predicted > 0 ? tp / static_cast<double>(m.predicted) : 0.0;
    m.recall = m.support > 0 ? tp / static_cast<double>(m.support) : 0.0;
    m.f1 = 2 * tp + fp + fn > 0 ? 2 * tp / (2 * tp + fp + fn) : 0.0;
    r.per_class.push_back(m);
  }
  r.accuracy = static_cast<double>(correct) / n;
  for (const auto& m : r.per_class) {
    r.macro_precision += m.precision;
    r.macro_recall += m.recall;
    r.macro_f1 += m.f1;
    const double w = static_cast<double>(m.support);
    r.weighted_precision += w * m.precision;
    r.weighted_recall += w * m.recall;
    r.weighted_f1 += w * m.f1;
  }
  const double k = static_cast<double>(C);
  r.macro_precision /= k;
  r.macro_recall /= k;
  r.macro_f1 /= k;
  r.weighted_precision /= n;
  r.weighted_recall /= n;
  r.weighted_f1 /= n;
  r.roc.resize(C);
  return r;
}

// The full evaluation from labels (N) and scores (N·C row-major): probabilities, or logits (softmaxed).
inline ClassificationResult evaluate_classification(const std::vector<int64_t>& labels,
                                                    const std::vector<double>& scores, int64_t num_classes,
                                                    ScoreKind kind = ScoreKind::probabilities,
                                                    const std::vector<std::string>& class_names = {}) {
  const char* op = "evaluate_classification";
  detail::check_labels(labels, num_classes, op);
  RETIKD_CHECK(scores.size() == labels.size() * static_cast<std::size_t>(num_classes), op, ": ", scores.size(),
               " scores for ", labels.size(), " samples × ", num_classes, " classes");
  for (std::size_t i = 0; i < scores.size(); ++i)
    RETIKD_CHECK(std::isfinite(scores[i]), op, ": score of sample ", i / static_cast<std::size_t>(num_classes),
                 ", class ", i % static_cast<std::size_t>(num_classes), " is ", scores[i],
                 " (a non-finite output: the model diverged?)");
  const std::vector<double> probs = kind == ScoreKind::logits ? softmax_rows(scores, num_classes) : scores;
  ClassificationResult r = evaluate_predictions(labels, argmax_rows(probs, num_classes), num_classes, class_names);
  const std::size_t C = static_cast<std::size_t>(num_classes), N = labels.size();
  double auc_sum = 0;
  int auc_count = 0;
  std::vector<double> column(N);
  std::vector<bool> positive(N);
  for (std::size_t c = 0; c < C; ++c) {
    for (std::size_t i = 0; i < N; ++i) {
      column[i] = probs[i * C + c];
      positive[i] = labels[i] == static_cast<int64_t>(c);
    }
    r.per_class[c].auc = roc_auc(column, positive);
    r.roc[c] = roc_curve(column, positive);
    if (std::isfinite(r.per_class[c].auc)) {
      auc_sum += r.per_class[c].auc;
      ++auc_count;
    }
  }
  r.macro_auc = auc_count > 0 ? auc_sum / auc_count : std::numeric_limits<double>::quiet_NaN();
  return r;
}

// The same from tensors: labels (N,) of any integer or floating dtype, scores (N, C); any device.
inline ClassificationResult evaluate_classification(const Tensor& labels, const Tensor& scores,
                                                    ScoreKind kind = ScoreKind::probabilities,
                                                    const std::vector<std::string>& class_names = {}) {
  RETIKD_CHECK(scores.dim() == 2, "evaluate_classification: scores ", scores.describe(), " must be (N, C)");
  RETIKD_CHECK(labels.dim() == 1 && labels.size(0) == scores.size(0), "evaluate_classification: labels ",
               labels.describe(), " must be (N,) with N = ", scores.size(0));
  return evaluate_classification(labels.to_vector<int64_t>(), scores.to_vector<double>(), scores.size(1), kind,
                                 class_names);
}

// ---- metrics.json ------------------------------------------------------------------------------------------

// One model's entry of metrics.json, in the shape issue 5 fixes:
//   {"accuracy", "macro_f1", "weighted_f1",
//    "per_class": {"<name>": {"precision", "recall", "f1", "auc", "support"}, ...},
//    "confusion": [[...], ...]   (rows = true class, in class order),
//    "params", "weights_bytes"}  (supplied by the caller; left out when negative)
// With `extended`, also macro/weighted precision and recall, macro_auc, num_samples and class_names. An
// undefined AUC is written as null.
inline io::Json to_json(const ClassificationResult& r, int64_t params = -1, int64_t weights_bytes = -1,
                    bool extended = false) {
  io::Json j = io::Json::object();
  j["accuracy"] = r.accuracy;
  j["macro_f1"] = r.macro_f1;
  j["weighted_f1"] = r.weighted_f1;
  io::Json& per = j["per_class"] = io::Json::object();
  for (const auto& m : r.per_class) {
    io::Json& c = per[m.name] = io::Json::object();
    c["precision"] = m.precision;
    c["recall"] = m.recall;
    c["f1"] = m.f1;
    c["auc"] = m.auc;
    c["support"] = m.support;
  }
  io::Json& conf = j["confusion"] = io::Json::array();
  for (const auto& row : r.confusion) conf.push_back(io::Json::array_of(row));
  if (params >= 0) j["params"] = params;
  if (weights_bytes >= 0) j["weights_bytes"] = weights_bytes;
  if (extended) {
    j["macro_precision"] = r.macro_precision;
    j["macro_recall"] = r.macro_recall;
    j["weighted_precision"] = r.weighted_precision;
    j["weighted_recall"] = r.weighted_recall;
    j["macro_auc"] = r.macro_auc;
    j["num_samples"] = r.num_samples;
    j["class_names"] = io::Json::array_of(r.class_names);
  }
  return j;
}

// Reads an entry written by to_json back. Fields the entry does not carry are recomputed from the confusion
// matrix where they can be (counts, averages); ROC curves are not stored, so they stay empty.
inline ClassificationResult from_json(const io::Json& j, int64_t* params = nullptr, int64_t* weights_bytes = nullptr) {
  ClassificationResult r;
  const io::Json& per = j.at("per_class");
  for (const auto& m : per.members()) r.class_names.push_back(m.first);
  const std::size_t C = r.class_names.size();
  const io::Json& conf = j.at("confusion");
  RETIKD_CHECK(conf.size() == C, "metrics json: confusion has ", conf.size(), " rows for ", C, " classes");
  for (std::size_t t = 0; t < C; ++t) {
    const io::Json& row = conf.at(t);
    RETIKD_CHECK(row.size() == C, "metrics json: confusion row ", t, " has ", row.size(), " entries for ", C,
                 " classes");
    std::vector<int64_t> v;
    for (std::size_t p = 0; p < C; ++p) v.push_back(row.at(p).as_int());
    r.confusion.push_back(v);
  }
  // Recompute everything derivable from the confusion matrix, then take the stored values (identical when
  // the file came from to_json, and authoritative otherwise).
  std::vector<int64_t> labels, preds;
  for (std::size_t t = 0; t < C; ++t)
    for (std::size_t p = 0; p < C; ++p)
      for (int64_t k = 0; k < r.confusion[t][p]; ++k) {
        labels.push_back(static_cast<int64_t>(t));
        preds.push_back(static_cast<int64_t>(p));
      }
  if (!labels.empty()) {
    r = evaluate_predictions(labels, preds, static_cast<int64_t>(C), r.class_names);
  } else {
    r.per_class.resize(C);
    r.roc.resize(C);
    for (std::size_t c = 0; c < C; ++c) r.per_class[c].name = r.class_names[c];
  }
  r.accuracy = j.at("accuracy").as_number();
  r.macro_f1 = j.at("macro_f1").as_number();
  r.weighted_f1 = j.at("weighted_f1").as_number();
  for (std::size_t c = 0; c < C; ++c) {
    const io::Json& m = per.at(r.class_names[c]);
    ClassMetrics& cm = r.per_class[c];
    cm.precision = m.at("precision").as_number();
    cm.recall = m.at("recall").as_number();
    cm.f1 = m.at("f1").as_number();
    cm.auc = m.at("auc").as_number();
    cm.support = m.at("support").as_int();
  }
  auto number = [&](const char* key, double& out) {
    if (const io::Json* v = j.find(key)) out = v->as_number();
  };
  number("macro_precision", r.macro_precision);
  number("macro_recall", r.macro_recall);
  number("weighted_precision", r.weighted_precision);
  number("weighted_recall", r.weighted_recall);
  double macro_auc = std::numeric_limits<double>::quiet_NaN();
  if (j.contains("macro_auc")) {
    number("macro_auc", macro_auc);
  } else {
    double s = 0;
    int n = 0;
    for (const auto& m : r.per_class)
      if (std::isfinite(m.auc)) s += m.auc, ++n;
    if (n > 0) macro_auc = s / n;
  }
  r.macro_auc = macro_auc;
  if (params) *params = j.contains("params") ? j.at("params").as_int() : -1;
  if (weights_bytes) *weights_bytes = j.contains("weights_bytes") ? j.at("weights_bytes").as_int() : -1;
  return r;
}

// Sets metrics.json's entry `key` (e.g. "student_kd") to `entry`, keeping the other entries; the file is
// created when missing and replaced atomically, so a resumed or re-run stage updates only its own entry.
inline void update_metrics_file(const std::string& path, const std::string& key, const io::Json& entry) {
  io::Json root = io::Json::object();
  std::ifstream probe(path);
  if (probe.good()) {
    probe.close();
    root = io::read_json_file(path);
    RETIKD_CHECK(root.is_object(), "metrics: ", path, " does not hold a JSON object");
  }
  root[key] = entry;
  io::write_json_file(path, root);
}

}  // namespace metrics
}  // namespace retikd
