// tests/test_metrics.cpp — classification metrics against values worked out by hand (a 4-class confusion
// matrix, an AUC with ties, zero-division cases, perfect and worst classifiers), the metrics.json shape and
// JSON round trips with escaping, and the report's SVG figures parsed as XML.
#include <doctest/doctest.h>


#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "retikd/core/random.hpp"
#include "retikd/io/json.hpp"
#include "retikd/metrics/classification.hpp"
#include "retikd/metrics/paired.hpp"
#include "retikd/metrics/report.hpp"
#include "test_util.hpp"

using namespace retikd;
using io::Json;

namespace {

// A temporary directory removed at scope exit.

// Rows of one-hot-ish probabilities: the predicted class gets 0.7, the others 0.1.
std::vector<double> peaked(const std::vector<int64_t>& predictions, int64_t C) {
  std::vector<double> p;
  for (int64_t k : predictions)
    for (int64_t c = 0; c < C; ++c) p.push_back(c == k ? 0.7 : 0.1);
  return p;
}

// A strict-enough XML well-formedness check: one root element, balanced and properly nested tags, quoted
// and unique attributes, only the five predefined or numeric entities, no '<' in attribute values, comments
// without "--". Returns "" when well-formed, else what is wrong and where.
std::string xml_problem(const std::string& s, std::string* root_name = nullptr) {
  std::size_t i = 0;
  std::vector<std::string> stack;
  int roots = 0;
  auto is_name_start = [](char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':'; };
  auto is_name_char = [&](char c) {
    return is_name_start(c) || std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '.';
  };
  auto at = [&](std::size_t k) { return "at byte " + std::to_string(k); };
  auto entity_ok = [&](std::size_t k, std::size_t& len) {
    const std::size_t semi = s.find(';', k);
    if (semi == std::string::npos || semi - k > 10) return false;
    const std::string e = s.substr(k + 1, semi - k - 1);
    len = semi - k + 1;
    if (e == "amp" || e == "lt" || e == "gt" || e == "quot" || e == "apos") return true;
    if (e.size() >= 2 && e[0] == '#') {
      const bool hex = e[1] == 'x';
      if (e.size() == (hex ? 2u : 1u)) return false;
      for (std::size_t j = hex ? 2 : 1; j < e.size(); ++j)
        if (!(hex ? std::isxdigit(static_cast<unsigned char>(e[j])) : std::isdigit(static_cast<unsigned char>(e[j]))))
          return false;
      return true;
    }
    return false;
  };
  auto skip_ws = [&] {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  };
  skip_ws();
  if (s.compare(i, 5, "<?xml") == 0) {
    const std::size_t end = s.find("?>", i);
    if (end == std::string::npos) return "unterminated XML declaration";
    i = end + 2;
  }
  while (i < s.size()) {
    if (s[i] != '<') {
      if (stack.empty() && !std::isspace(static_cast<unsigned char>(s[i]))) return "text outside the root " + at(i);
      if (s[i] == '&') {
        std::size_t len = 0;
        if (!entity_ok(i, len)) return "bad entity " + at(i);
        i += len;
      } else {
        ++i;
      }
      continue;
    }
    if (s.compare(i, 4, "<!--") == 0) {
      const std::size_t end = s.find("-->", i + 4);
      if (end == std::string::npos) return "unterminated comment " + at(i);
      if (s.substr(i + 4, end - i - 4).find("--") != std::string::npos) return "'--' inside a comment " + at(i);
      i = end + 3;
      continue;
    }
    if (s.compare(i, 2, "</") == 0) {
      std::size_t j = i + 2;
      while (j < s.size() && is_name_char(s[j])) ++j;
      const std::string name = s.substr(i + 2, j - i - 2);
      while (j < s.size() && std::isspace(static_cast<unsigned char>(s[j]))) ++j;
      if (j >= s.size() || s[j] != '>') return "bad closing tag " + at(i);
      if (stack.empty() || stack.back() != name) return "closing </" + name + "> does not match " + at(i);
      stack.pop_back();
      i = j + 1;
      continue;
    }
    // Start tag.
    std::size_t j = i + 1;
    if (j >= s.size() || !is_name_start(s[j])) return "bad tag name " + at(i);
    while (j < s.size() && is_name_char(s[j])) ++j;
    const std::string name = s.substr(i + 1, j - i - 1);
    std::set<std::string> attrs;
    for (;;) {
      const std::size_t before = j;
      while (j < s.size() && std::isspace(static_cast<unsigned char>(s[j]))) ++j;
      if (j >= s.size()) return "unterminated tag <" + name + "> " + at(i);
      if (s[j] == '>' || s.compare(j, 2, "/>") == 0) break;
      if (j == before) return "attributes of <" + name + "> not separated by space " + at(j);
      std::size_t k = j;
      if (!is_name_start(s[k])) return "bad attribute name in <" + name + "> " + at(k);
      while (k < s.size() && is_name_char(s[k])) ++k;
      const std::string attr = s.substr(j, k - j);
      if (!attrs.insert(attr).second) return "duplicate attribute " + attr + " " + at(j);
      while (k < s.size() && std::isspace(static_cast<unsigned char>(s[k]))) ++k;
      if (k >= s.size() || s[k] != '=') return "attribute " + attr + " without '=' " + at(k);
      ++k;
      while (k < s.size() && std::isspace(static_cast<unsigned char>(s[k]))) ++k;
      if (k >= s.size() || (s[k] != '"' && s[k] != '\'')) return "unquoted attribute " + attr + " " + at(k);
      const char q = s[k++];
      while (k < s.size() && s[k] != q) {
        if (s[k] == '<') return "'<' in attribute " + attr + " " + at(k);
        if (s[k] == '&') {
          std::size_t len = 0;
          if (!entity_ok(k, len)) return "bad entity in attribute " + attr + " " + at(k);
          k += len;
        } else {
          ++k;
        }
      }
      if (k >= s.size()) return "unterminated attribute " + attr + " " + at(j);
      j = k + 1;
    }
    const bool empty = s[j] == '/';
    if (stack.empty()) {
      if (++roots > 1) return "a second root element <" + name + "> " + at(i);
      if (root_name) *root_name = name;
    }
    if (!empty) stack.push_back(name);
    i = j + (empty ? 2 : 1);
  }
  if (!stack.empty()) return "unclosed <" + stack.back() + ">";
  if (roots != 1) return "no root element";
  return "";
}

void check_svg(const std::string& svg) {
  std::string root;
  const std::string problem = xml_problem(svg, &root);
  INFO(svg.substr(0, 400));
  CHECK(problem == "");
  CHECK(root == "svg");
  CHECK(svg.find("xmlns=\"http://www.w3.org/2000/svg\"") != std::string::npos);
  CHECK(svg.find("nan") == std::string::npos);
  CHECK(svg.find("inf") == std::string::npos);
}

}  // namespace

// ---- classification metrics --------------------------------------------------------------------------------------

TEST_CASE("metrics: a 4-class example worked out by hand") {
  // true:  Cataract ×3 → predicted 0,0,1;  DR ×4 → 1,1,1,3;  Glaucoma ×3 → 2,3,3;  Normal ×2 → 3,0
  const std::vector<int64_t> y = {0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 3, 3};
  const std::vector<int64_t> pred = {0, 0, 1, 1, 1, 1, 3, 2, 3, 3, 3, 0};
  const auto r = metrics::evaluate_classification(y, peaked(pred, 4), 4);
  const std::vector<std::vector<int64_t>> expected_confusion = {{2, 1, 0, 0}, {0, 3, 0, 1}, {0, 0, 1, 2}, {1, 0, 0, 1}};
  CHECK(r.confusion == expected_confusion);
  CHECK(r.class_names == metrics::default_class_names());
  CHECK(r.num_samples == 12);
  CHECK(r.accuracy == doctest::Approx(7.0 / 12));
  // precision = TP / column sum, recall = TP / row sum, F1 = 2TP / (2TP + FP + FN)
  const double P[] = {2.0 / 3, 3.0 / 4, 1.0, 1.0 / 4};
  const double R[] = {2.0 / 3, 3.0 / 4, 1.0 / 3, 1.0 / 2};
  const double F[] = {2.0 / 3, 3.0 / 4, 1.0 / 2, 1.0 / 3};
  const int64_t S[] = {3, 4, 3, 2};
  for (int c = 0; c < 4; ++c) {
    CAPTURE(c);
    CHECK(r.per_class[c].precision == doctest::Approx(P[c]));
    CHECK(r.per_class[c].recall == doctest::Approx(R[c]));
    CHECK(r.per_class[c].f1 == doctest::Approx(F[c]));
    CHECK(r.per_class[c].support == S[c]);
  }
  CHECK(r.macro_precision == doctest::Approx(2.0 / 3));
  CHECK(r.macro_recall == doctest::Approx(27.0 / 48));
  CHECK(r.macro_f1 == doctest::Approx(27.0 / 48));
  CHECK(r.weighted_precision == doctest::Approx(17.0 / 24));
  CHECK(r.weighted_recall == doctest::Approx(7.0 / 12));  // always the accuracy
  CHECK(r.weighted_f1 == doctest::Approx(43.0 / 72));
  // Normal's column: 0.7 for the 4 samples predicted Normal (1 positive, 3 negatives), 0.1 for the other 8
  // (1 positive, 7 negatives). Pairs won: 0.7-positive beats 7, ties 3 (1.5); 0.1-positive ties 7 (3.5).
  // (7 + 1.5 + 3.5) / (2 × 10) = 0.6.
  CHECK(r.of("Normal").auc == doctest::Approx(0.6));
  // Glaucoma: one positive at 0.7 beats all 9 negatives (at 0.1); two positives at 0.1 tie all 9: 18/27.
  CHECK(r.of("Glaucoma").auc == doctest::Approx(2.0 / 3));
  double mean = 0;
  for (const auto& m : r.per_class) mean += m.auc / 4;
  CHECK(r.macro_auc == doctest::Approx(mean));
}

TEST_CASE("metrics: ROC-AUC with ties is the Mann-Whitney statistic (scikit-learn's value)") {
  // positives 0.9, 0.8, 0.7; negatives 0.8, 0.8, 0.3. Pairs: 0.9 wins 3; 0.8 ties 2 (1) and wins 1;
  // 0.7 wins 1: 6 of 9.
  const std::vector<double> s = {0.9, 0.8, 0.8, 0.7, 0.8, 0.3};
  const std::vector<bool> pos = {true, true, false, true, false, false};
  CHECK(metrics::roc_auc(s, pos) == 2.0 / 3.0);  // exact: 12 half-pairs / 18
  const auto curve = metrics::roc_curve(s, pos);
  const std::vector<double> fpr = {0, 0, 2.0 / 3, 2.0 / 3, 1}, tpr = {0, 1.0 / 3, 2.0 / 3, 1, 1};
  REQUIRE(curve.fpr.size() == 5);
  for (std::size_t i = 0; i < 5; ++i) {
    CHECK(curve.fpr[i] == doctest::Approx(fpr[i]));
    CHECK(curve.tpr[i] == doctest::Approx(tpr[i]));
  }
  CHECK(std::isinf(curve.thresholds[0]));
  CHECK(curve.thresholds[2] == 0.8);
  CHECK(metrics::trapezoid_area(curve.fpr, curve.tpr) == doctest::Approx(2.0 / 3).epsilon(1e-15));
  // All tied: 0.5. One class only: undefined.
  CHECK(metrics::roc_auc({0.3, 0.3, 0.3}, {true, false, true}) == 0.5);
  CHECK(std::isnan(metrics::roc_auc({0.1, 0.2}, {true, true})));
  CHECK(metrics::roc_curve({0.1, 0.2}, {false, false}).empty());

  // Against brute-force pair counting on heavily tied random scores, and against the curve's area.
  Generator g(7);
  for (int trial = 0; trial < 20; ++trial) {
    const std::size_t n = 5 + g.below(60);
    std::vector<double> sc(n);
    std::vector<bool> p(n);
    for (std::size_t i = 0; i < n; ++i) {
      sc[i] = static_cast<double>(g.below(6)) / 5.0;
      p[i] = g.uniform() < 0.4;
    }
    double wins = 0, pairs = 0;
    for (std::size_t a = 0; a < n; ++a)
      for (std::size_t b = 0; b < n; ++b)
        if (p[a] && !p[b]) {
          pairs += 1;
          wins += sc[a] > sc[b] ? 1.0 : sc[a] == sc[b] ? 0.5 : 0.0;
        }
    const double auc = metrics::roc_auc(sc, p);
    if (pairs == 0) {
      CHECK(std::isnan(auc));
      continue;
    }
    CHECK(auc == doctest::Approx(wins / pairs).epsilon(1e-14));
    const auto c = metrics::roc_curve(sc, p);
    CHECK(metrics::trapezoid_area(c.fpr, c.tpr) == doctest::Approx(auc).epsilon(1e-12));
    CHECK(c.fpr.back() == 1.0);
    CHECK(c.tpr.back() == 1.0);
  }
}

TEST_CASE("metrics: zero division gives 0, absent classes have no AUC") {
  // Classes 2 and 3 never occur and are never predicted.
  const std::vector<int64_t> y = {0, 0, 1, 1, 1};
  const std::vector<int64_t> pred = {0, 1, 1, 1, 1};
  const auto r = metrics::evaluate_classification(y, peaked(pred, 4), 4);
  CHECK(r.per_class[0].precision == 1.0);
  CHECK(r.per_class[0].recall == 0.5);
  CHECK(r.per_class[0].f1 == doctest::Approx(2.0 / 3));
  CHECK(r.per_class[1].precision == doctest::Approx(0.75));
  CHECK(r.per_class[1].f1 == doctest::Approx(6.0 / 7));
  for (int c : {2, 3}) {
    CHECK(r.per_class[c].precision == 0.0);
    CHECK(r.per_class[c].recall == 0.0);
    CHECK(r.per_class[c].f1 == 0.0);
    CHECK(r.per_class[c].support == 0);
    CHECK(std::isnan(r.per_class[c].auc));
  }
  // Every class counts in the macro average (scikit-learn with labels=[0, 1, 2, 3]).
  CHECK(r.macro_f1 == doctest::Approx((2.0 / 3 + 6.0 / 7) / 4));
  CHECK(r.weighted_f1 == doctest::Approx((2 * 2.0 / 3 + 3 * 6.0 / 7) / 5));
  CHECK(r.macro_auc == doctest::Approx((r.per_class[0].auc + r.per_class[1].auc) / 2));
  const Json j = metrics::to_json(r);
  CHECK(j.at("per_class").at("Glaucoma").at("auc").is_null());
  CHECK(j.dump().find("\"auc\":null") != std::string::npos);

  // Present but never predicted: precision 0 (no predictions), recall 0.
  const auto q = metrics::evaluate_predictions({0, 1, 2, 3}, {0, 0, 0, 0}, 4);
  CHECK(q.per_class[0].precision == 0.25);
  CHECK(q.per_class[0].recall == 1.0);
  CHECK(q.per_class[0].f1 == doctest::Approx(0.4));
  for (int c = 1; c < 4; ++c) {
    CHECK(q.per_class[c].precision == 0.0);
    CHECK(q.per_class[c].recall == 0.0);
    CHECK(q.per_class[c].f1 == 0.0);
  }
  CHECK(q.accuracy == 0.25);
}

TEST_CASE("metrics: perfect and worst classifiers") {
  const std::vector<int64_t> y = {0, 1, 2, 3, 3, 2, 1, 0, 0};
  std::vector<double> perfect, worst;
  for (int64_t t : y)
    for (int64_t c = 0; c < 4; ++c) {
      perfect.push_back(c == t ? 1.0 : 0.0);
      worst.push_back(c == t ? 0.0 : 1.0 / 3);  // the true class always scores lowest
    }
  const auto p = metrics::evaluate_classification(y, perfect, 4);
  CHECK(p.accuracy == 1.0);
  CHECK(p.macro_f1 == 1.0);
  CHECK(p.weighted_f1 == 1.0);
  CHECK(p.macro_auc == 1.0);
  for (const auto& m : p.per_class) {
    CHECK(m.precision == 1.0);
    CHECK(m.recall == 1.0);
    CHECK(m.auc == 1.0);
  }
  for (std::size_t t = 0; t < 4; ++t)
    for (std::size_t k = 0; k < 4; ++k) CHECK(p.confusion[t][k] == (t == k ? (t == 0 ? 3 : 2) : 0));
  const auto w = metrics::evaluate_classification(y, worst, 4);
  CHECK(w.accuracy == 0.0);
  CHECK(w.macro_f1 == 0.0);
  CHECK(w.macro_auc == 0.0);
  for (const auto& m : w.per_class) CHECK(m.auc == 0.0);
  // Ties in the argmax go to the lowest index: class 0 rows predict 1, the others predict 0.
  CHECK(w.confusion[0][1] == 3);
  CHECK(w.confusion[1][0] == 2);
}

TEST_CASE("metrics: logits are softmaxed; tensor input; input errors") {
  Generator g(3);
  const int64_t N = 40, C = 4;
  std::vector<int64_t> y;
  std::vector<double> logits;
  for (int64_t i = 0; i < N; ++i) {
    y.push_back(static_cast<int64_t>(g.below(C)));
    for (int64_t c = 0; c < C; ++c) logits.push_back(g.normal() * 2 + (c == y.back() ? 1.5 : 0));
  }
  const auto a = metrics::evaluate_classification(y, logits, C, metrics::ScoreKind::logits);
  const auto b = metrics::evaluate_classification(y, metrics::softmax_rows(logits, C), C);
  CHECK(a.accuracy == b.accuracy);
  for (int c = 0; c < C; ++c) CHECK(a.per_class[c].auc == b.per_class[c].auc);
  CHECK(a.accuracy > 0.25);  // the logits carry signal

  const Tensor ty = Tensor::from_vector(y, {N});
  const Tensor ts = Tensor::from_vector(std::vector<float>(logits.begin(), logits.end()), {N, C});
  const auto t = metrics::evaluate_classification(ty, ts, metrics::ScoreKind::logits);
  CHECK(t.confusion == a.confusion);

  CHECK_THROWS_WITH_AS(metrics::evaluate_classification({0, 4}, std::vector<double>(8, 0.25), 4),
                       doctest::Contains("label 4 of sample 1"), Error);
  CHECK_THROWS_AS(metrics::evaluate_classification({0, 1}, std::vector<double>(7, 0.25), 4), Error);
  CHECK_THROWS_AS(metrics::evaluate_classification({}, {}, 4), Error);
  std::vector<double> bad(8, 0.25);
  bad[5] = std::nan("");
  CHECK_THROWS_WITH_AS(metrics::evaluate_classification({0, 1}, bad, 4), doctest::Contains("sample 1, class 1"),
                       Error);
  CHECK_THROWS_AS(metrics::evaluate_predictions({0, 1}, {0, 1}, 2, {"a", "b", "c"}), Error);
}

// ---- JSON ------------------------------------------------------------------------------------------------------------

TEST_CASE("json: build, dump, parse back; escaping; numbers") {
  Json j = Json::object();
  j["name"] = "quote \" backslash \\ slash / newline \n tab \t bell \x07 é 🙂";
  j["int"] = int64_t(9007199254740993);  // 2^53 + 1: exact as an integer, not as a double
  j["neg"] = -42;
  j["tenth"] = 0.1;
  j["third"] = 1.0 / 3;
  j["tiny"] = 1e-300;
  j["whole"] = 3.0;
  j["nan"] = std::nan("");
  j["inf"] = HUGE_VAL;
  j["flag"] = true;
  j["none"] = nullptr;
  j["list"] = Json::array_of(std::vector<double>{1.5, -2.25});
  j["nested"]["deeper"]["x"] = 1;

  const std::string compact = j.dump();
  CHECK(compact.find('\n') == std::string::npos);
  CHECK(compact.find("\\\"") != std::string::npos);
  CHECK(compact.find("\\n") != std::string::npos);
  CHECK(compact.find("\\u0007") != std::string::npos);
  CHECK(compact.find("\"tenth\":0.1,") != std::string::npos);  // shortest round-trip text
  CHECK(compact.find("\"whole\":3.0") != std::string::npos);
  CHECK(compact.find("\"nan\":null") != std::string::npos);
  CHECK(compact.find("\"inf\":null") != std::string::npos);
  CHECK(compact.find("9007199254740993") != std::string::npos);

  for (int indent : {-1, 2}) {
    const Json back = io::parse_json(j.dump(indent));
    CHECK(back.at("name").as_string() == j.at("name").as_string());
    CHECK(back.at("int").as_int() == 9007199254740993LL);
    CHECK(back.at("int").is_integer());
    CHECK(back.at("neg").as_int() == -42);
    CHECK(back.at("third").as_number() == 1.0 / 3);  // bit-exact
    CHECK(back.at("tiny").as_number() == 1e-300);
    CHECK(back.at("whole").is_number());
    CHECK(!back.at("whole").is_integer());
    CHECK(std::isnan(back.at("nan").as_number()));
    CHECK(back.at("flag").as_bool());
    CHECK(back.at("list").at(1).as_number() == -2.25);
    CHECK(back.at("nested").at("deeper").at("x").as_int() == 1);
    // Key order is kept.
    CHECK(back.members().front().first == "name");
    CHECK(back.members().back().first == "nested");
    CHECK(back.dump() == io::parse_json(compact).dump());
  }
  // Errors say what and where.
  CHECK_THROWS_WITH_AS(io::parse_json("{\"a\": 1,}", "ctx"), doctest::Contains("ctx"), Error);
  CHECK_THROWS_AS(io::parse_json("{\"a\": 1, \"a\": 2}"), Error);
  CHECK_THROWS_WITH_AS(j.at("missing"), doctest::Contains("missing key \"missing\""), Error);
  CHECK_THROWS_AS(j.at("name").as_number(), Error);
  CHECK_THROWS_AS(Json(2.5).as_int(), Error);
  CHECK(Json(4.0).as_int() == 4);
  CHECK(io::parse_json("-9223372036854775808").as_int() == INT64_MIN);
  CHECK(!io::parse_json("9223372036854775808").is_integer());  // out of int64: a double
  CHECK(io::parse_json("1e999").is_null());  // beyond double range: not a finite number
  // The largest double is written with enough digits to read back as itself: 15 would round it up past the
  // range, and the parser would read null.
  const double largest = std::numeric_limits<double>::max();
  CHECK(io::parse_json(Json(largest).dump()).as_number() == largest);
  CHECK(io::parse_json(Json(-largest).dump()).as_number() == -largest);
}

TEST_CASE("json: metrics.json entry has exactly the issue's shape and reads back") {
  const std::vector<int64_t> y = {0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 3, 3};
  const std::vector<int64_t> pred = {0, 0, 1, 1, 1, 1, 3, 2, 3, 3, 3, 0};
  const auto r = metrics::evaluate_classification(y, peaked(pred, 4), 4);
  const Json j = metrics::to_json(r, 2230000, 8921000);
  std::vector<std::string> keys;
  for (const auto& m : j.members()) keys.push_back(m.first);
  CHECK(keys == std::vector<std::string>{"accuracy", "macro_f1", "weighted_f1", "per_class", "confusion", "params",
                                         "weights_bytes"});
  std::vector<std::string> classes;
  for (const auto& m : j.at("per_class").members()) {
    classes.push_back(m.first);
    std::vector<std::string> fields;
    for (const auto& f : m.second.members()) fields.push_back(f.first);
    CHECK(fields == std::vector<std::string>{"precision", "recall", "f1", "auc", "support"});
  }
  CHECK(classes == std::vector<std::string>{"Cataract", "DR", "Glaucoma", "Normal"});
  CHECK(j.at("confusion").at(2).dump() == "[0,0,1,2]");
  CHECK(j.at("params").as_int() == 2230000);
  CHECK(j.dump(2).find("[0, 0, 1, 2]") != std::string::npos);  // rows stay on one line when pretty

  int64_t params = 0, bytes = 0;
  const auto back = metrics::from_json(io::parse_json(j.dump(2)), &params, &bytes);
  CHECK(params == 2230000);
  CHECK(bytes == 8921000);
  CHECK(back.confusion == r.confusion);
  CHECK(back.accuracy == r.accuracy);
  CHECK(back.weighted_f1 == r.weighted_f1);
  CHECK(back.num_samples == 12);
  for (int c = 0; c < 4; ++c) {
    CHECK(back.per_class[c].f1 == r.per_class[c].f1);
    CHECK(back.per_class[c].auc == r.per_class[c].auc);
    CHECK(back.per_class[c].support == r.per_class[c].support);
  }
  CHECK(back.macro_auc == doctest::Approx(r.macro_auc));
  CHECK(metrics::to_json(r, -1, -1).contains("params") == false);
  CHECK(metrics::to_json(r, 1, 1, true).at("macro_auc").as_number() == r.macro_auc);

  // update_metrics_file: each stage sets its own entry, the others stay.
  test::TempDir dir("metrics");
  const std::string path = dir.path() + "/metrics.json";
  metrics::update_metrics_file(path, "teacher", j);
  metrics::update_metrics_file(path, "student_ce", metrics::to_json(r, 5, 6));
  metrics::update_metrics_file(path, "teacher", metrics::to_json(r, 7, 8));
  const Json file = io::read_json_file(path);
  CHECK(file.size() == 2);
  CHECK(file.at("teacher").at("params").as_int() == 7);
  CHECK(file.at("student_ce").at("weights_bytes").as_int() == 6);
  CHECK(io::read_text_file(path).back() == '\n');
}

// ---- SVG and the Markdown report -----------------------------------------------------------------------------------

TEST_CASE("svg: numbers are written without a minus zero") {
  CHECK(metrics::svg::fixed(-0.0001, 2) == "0.00");
  CHECK(metrics::svg::fixed(-1.5, 1) == "-1.5");
  CHECK(metrics::svg::fixed(2.0, 0) == "2");
  CHECK(metrics::svg::nice_ticks(0, 1, 6) == std::vector<double>{0, 0.2, 0.4, 0.6, 0.8, 1});
  CHECK(metrics::svg::nice_ticks(1, 50, 8) == std::vector<double>{10, 20, 30, 40, 50});
  CHECK(metrics::svg::nice_ticks(0.31, 0.97, 6) == std::vector<double>{0.4, 0.6, 0.8});
}

TEST_CASE("svg: the XML checker rejects what it should") {
  CHECK(xml_problem("<svg><g></g></svg>") == "");
  CHECK(xml_problem("<svg><g></svg>") != "");
  CHECK(xml_problem("<svg a=\"1\" a=\"2\"/>") != "");
  CHECK(xml_problem("<svg a=1/>") != "");
  CHECK(xml_problem("<svg>&bogus;</svg>") != "");
  CHECK(xml_problem("<svg>a & b</svg>") != "");
  CHECK(xml_problem("<svg/><svg/>") != "");
  CHECK(xml_problem("<svg a=\"<\"/>") != "");
  CHECK(xml_problem("<svg><!-- a -- b --></svg>") != "");
  CHECK(xml_problem("<svg>&amp;&#38;&#x26;</svg>") == "");
}

TEST_CASE("svg: curves, confusion heat map and ROC are well-formed and carry their content") {
  metrics::TrainingCurves t;
  for (int e = 1; e <= 12; ++e) {
    t.epoch.push_back(e);
    t.train_loss.push_back(1.4 / e);
    t.val_loss.push_back(e == 5 ? std::nan("") : 1.5 / std::sqrt(e));  // a gap
    t.train_accuracy.push_back(0.5 + 0.04 * e);
    t.val_accuracy.push_back(0.45 + 0.035 * e);
  }
  const std::string loss = metrics::loss_curves_svg(t, "student <kd> & \"loss\"");
  check_svg(loss);
  CHECK(loss.find("student &lt;kd&gt; &amp; &quot;loss&quot;") != std::string::npos);
  CHECK(loss.find(">validation<") != std::string::npos);
  CHECK(loss.find(">epoch<") != std::string::npos);
  check_svg(metrics::accuracy_curves_svg(t));
  check_svg(metrics::loss_curves_svg(metrics::TrainingCurves{}));  // no data: still a valid figure
  metrics::TrainingCurves one;
  one.epoch = {1};
  one.train_loss = {0.7};
  one.val_loss = {0.8};
  one.train_accuracy = one.val_accuracy = {std::nan("")};
  check_svg(metrics::loss_curves_svg(one));
  check_svg(metrics::accuracy_curves_svg(one));

  const std::vector<int64_t> y = {0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 3, 3};
  const std::vector<int64_t> pred = {0, 0, 1, 1, 1, 1, 3, 2, 3, 3, 3, 0};
  const auto r = metrics::evaluate_classification(y, peaked(pred, 4), 4);
  const std::string cm = metrics::confusion_matrix_svg(r.confusion, r.class_names);
  check_svg(cm);
  CHECK(cm.find(">Glaucoma<") != std::string::npos);
  CHECK(cm.find(">66.7%<") != std::string::npos);  // Glaucoma → Normal: 2 of 3
  CHECK(cm.find(">predicted class<") != std::string::npos);
  const std::string roc = metrics::roc_curves_svg(r);
  check_svg(roc);
  CHECK(roc.find("Normal (AUC 0.600)") != std::string::npos);
  CHECK(roc.find("<polyline") != std::string::npos);
  // An undefined AUC is labelled, not drawn.
  const auto z = metrics::evaluate_classification({0, 0, 1, 1, 1}, peaked({0, 1, 1, 1, 1}, 4), 4);
  const std::string roc_z = metrics::roc_curves_svg(z);
  check_svg(roc_z);
  CHECK(roc_z.find("Glaucoma (AUC n/a)") != std::string::npos);
  // Many classes with long names.
  std::vector<std::vector<int64_t>> big(9, std::vector<int64_t>(9, 3));
  std::vector<std::string> names;
  for (int i = 0; i < 9; ++i) names.push_back("a rather long class name " + std::to_string(i));
  check_svg(metrics::confusion_matrix_svg(big, names));
  CHECK_THROWS_AS(metrics::confusion_matrix_svg(big, {"x"}), Error);
}

TEST_CASE("report: Markdown with linked SVG files") {
  test::TempDir dir("metrics");
  const std::vector<int64_t> y = {0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 3, 3};
  const std::vector<int64_t> pred = {0, 0, 1, 1, 1, 1, 3, 2, 3, 3, 3, 0};
  const auto r = metrics::evaluate_classification(y, peaked(pred, 4), 4);
  metrics::MarkdownReport rep(dir.path());
  rep.heading(1, "retikd report");
  rep.metrics_table(r);
  rep.raw(metrics::comparison_table_markdown({{"student_ce", r}, {"student_kd", r}}));
  rep.figure("confusion.svg", metrics::confusion_matrix_svg(r.confusion, r.class_names), "confusion matrix");
  rep.figure("roc.svg", metrics::roc_curves_svg(r), "ROC curves");
  const std::string path = rep.write();
  const std::string md = io::read_text_file(path);
  CHECK(md.find("# retikd report") == 0);
  CHECK(md.find("| Glaucoma | 1.000 | 0.333 | 0.500 | 0.667 | 3 |") != std::string::npos);
  CHECK(md.find("| student_kd | 0.583 | 0.562 |") != std::string::npos);
  CHECK(md.find("![confusion matrix](confusion.svg)") != std::string::npos);
  check_svg(io::read_text_file(dir.path() + "/roc.svg"));
  CHECK_THROWS_AS(rep.figure("../escape.svg", "<svg/>", "x"), Error);
}

TEST_CASE("paired comparison: Student's t quantiles, the paired interval and McNemar's exact test") {
  // t(0.975) from the standard tables
  CHECK(metrics::student_t_quantile(0.975, 1) == doctest::Approx(12.7062).epsilon(1e-4));
  CHECK(metrics::student_t_quantile(0.975, 4) == doctest::Approx(2.7764).epsilon(1e-4));
  CHECK(metrics::student_t_quantile(0.975, 30) == doctest::Approx(2.0423).epsilon(1e-4));
  CHECK(metrics::student_t_cdf(0.0, 7) == doctest::Approx(0.5));
  CHECK(metrics::student_t_cdf(-2.3646, 7) == doctest::Approx(0.025).epsilon(1e-3));
  // five seeds: differences 1, 2, 3, 4, 5 points -> mean 3, sd sqrt(2.5), half-width 2.7764 * sd / sqrt(5)
  const metrics::PairedDifference d =
      metrics::paired_difference({0.80, 0.80, 0.80, 0.80, 0.80}, {0.81, 0.82, 0.83, 0.84, 0.85});
  CHECK(d.n == 5);
  CHECK(d.mean == doctest::Approx(0.03));
  CHECK(d.sd == doctest::Approx(std::sqrt(2.5) / 100));
  CHECK(d.ci_low == doctest::Approx(0.03 - 2.7764 * std::sqrt(2.5) / 100 / std::sqrt(5.0)).epsilon(1e-3));
  CHECK(d.ci_high > d.mean);
  CHECK(std::isnan(metrics::paired_difference({0.5}, {0.6}).ci_low));  // one seed: no interval
  // McNemar: 5 images only A gets right, 15 only B: p = 2 * P[Binomial(20, 1/2) <= 5] = 0.04139
  std::vector<int64_t> labels(30, 1), a(30, 1), b(30, 1);
  for (int i = 0; i < 5; ++i) b[static_cast<std::size_t>(i)] = 0;        // only A right
  for (int i = 5; i < 20; ++i) a[static_cast<std::size_t>(i)] = 0;       // only B right
  const metrics::McNemar m = metrics::mcnemar(labels, a, b);
  CHECK(m.only_a == 5);
  CHECK(m.only_b == 15);
  CHECK(m.p_value == doctest::Approx(0.041389).epsilon(1e-4));
  CHECK(metrics::mcnemar(labels, a, a).p_value == 1.0);
  CHECK_THROWS_AS(metrics::paired_difference({0.1, 0.2}, {0.3}), retikd::Error);
}
