// retikd/metrics/report.hpp — the evaluation report: Markdown with SVG figures drawn by our own code (no
// plotting library): loss and accuracy curves per epoch (train / validation), the confusion matrix as a heat
// map with counts, and one-vs-rest ROC curves with each class's AUC in the legend.
//
// The SVG is plain SVG 1.1 (well-formed XML, text escaped, numbers written without locale), sized in pixels
// and readable at its natural size on GitHub or in a browser. Colours are the Okabe–Ito palette, which stays
// distinguishable for colour-blind readers; train and validation curves also differ in dash pattern, so the
// figures survive printing in grey.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "retikd/core/error.hpp"
#include "retikd/io/atomic_file.hpp"
#include "retikd/metrics/classification.hpp"

namespace retikd {
namespace metrics {

namespace svg {

// Text safe inside an XML element or a double-quoted attribute.
inline std::string escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        // XML 1.0 forbids most control characters even as references: drop them.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r') break;
        out += c;
    }
  }
  return out;
}

// A fixed-point number with `decimals` digits, '.' as the separator whatever the locale.
inline std::string fixed(double v, int decimals) {
  if (!std::isfinite(v)) return "0";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", std::max(0, decimals), v);
  for (char* p = buf; *p; ++p)
    if (*p == ',') *p = '.';
  std::string s = buf;
  if (s[0] == '-' && s.find_first_not_of("-0.") == std::string::npos) s.erase(0, 1);  // "-0.00" → "0.00"
  return s;
}
inline std::string px(double v) { return fixed(v, 2); }

// Okabe–Ito colours (black left out: it is the axes' colour).
inline const char* palette(std::size_t i) {
  static const char* colours[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442"};
  return colours[i % 7];
}

// Accumulates the elements of one SVG document.
class Canvas {
 public:
  Canvas(int width, int height) : width_(width), height_(height) {}

  void rect(double x, double y, double w, double h, const std::string& fill, const std::string& extra = "") {
    body_ += "<rect x=\"" + px(x) + "\" y=\"" + px(y) + "\" width=\"" + px(w) + "\" height=\"" + px(h) +
             "\" fill=\"" + fill + "\"" + (extra.empty() ? "" : " " + extra) + "/>\n";
  }
  void line(double x1, double y1, double x2, double y2, const std::string& stroke, double width = 1,
            const std::string& extra = "") {
    body_ += "<line x1=\"" + px(x1) + "\" y1=\"" + px(y1) + "\" x2=\"" + px(x2) + "\" y2=\"" + px(y2) +
             "\" stroke=\"" + stroke + "\" stroke-width=\"" + px(width) + "\"" + (extra.empty() ? "" : " " + extra) +
             "/>\n";
  }
  void polyline(const std::vector<std::pair<double, double>>& pts, const std::string& stroke, double width,
                const std::string& extra = "") {
    if (pts.empty()) return;
    std::string p;
    for (const auto& q : pts) p += (p.empty() ? "" : " ") + px(q.first) + "," + px(q.second);
    body_ += "<polyline points=\"" + p + "\" fill=\"none\" stroke=\"" + stroke + "\" stroke-width=\"" + px(width) +
             "\" stroke-linejoin=\"round\"" + (extra.empty() ? "" : " " + extra) + "/>\n";
  }
  void circle(double cx, double cy, double r, const std::string& fill) {
    body_ += "<circle cx=\"" + px(cx) + "\" cy=\"" + px(cy) + "\" r=\"" + px(r) + "\" fill=\"" + fill + "\"/>\n";
  }
  // anchor: start | middle | end. rotate: degrees about (x, y).
  void text(double x, double y, const std::string& s, double size = 12, const std::string& anchor = "start",
            const std::string& extra = "", double rotate = 0) {
    body_ += "<text x=\"" + px(x) + "\" y=\"" + px(y) + "\" font-size=\"" + px(size) + "\" text-anchor=\"" + anchor +
             "\"";
    if (rotate != 0) body_ += " transform=\"rotate(" + px(rotate) + " " + px(x) + " " + px(y) + ")\"";
    body_ += (extra.empty() ? "" : " " + extra) + ">" + escape(s) + "</text>\n";
  }
  std::string str() const {
    return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
           "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"" +
           std::to_string(width_) + "\" height=\"" + std::to_string(height_) + "\" viewBox=\"0 0 " +
           std::to_string(width_) + " " + std::to_string(height_) +
           "\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n"
           "<rect x=\"0\" y=\"0\" width=\"" +
           std::to_string(width_) + "\" height=\"" + std::to_string(height_) + "\" fill=\"#ffffff\"/>\n" + body_ +
           "</svg>\n";
  }

 private:
  int width_, height_;
  std::string body_;
};

// "Nice" tick positions covering [lo, hi] (steps 1, 2, 2.5 or 5 × 10^k), about `target` of them.
inline std::vector<double> nice_ticks(double lo, double hi, int target = 6) {
  if (!(hi > lo)) hi = lo + 1;
  const double raw = (hi - lo) / std::max(1, target - 1);
  const int exponent = static_cast<int>(std::floor(std::log10(raw)));
  const double scale = std::pow(10.0, std::abs(exponent));  // exact for the exponents that occur
  // A tick is (k·m)·10^exponent; dividing by 10^−exponent keeps 0.6 from becoming 0.6000000000000001.
  auto value = [&](double units) { return exponent >= 0 ? units * scale : units / scale; };
  double m = 10;
  for (double c : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (value(c) >= raw * (1 - 1e-12)) {
      m = c;
      break;
    }
  const double step = value(m);
  std::vector<double> ticks;
  for (double k = std::ceil(lo / step - 1e-9); value(k * m) <= hi + step * 1e-9; k += 1)
    ticks.push_back(k == 0 ? 0.0 : value(k * m));
  return ticks;
}

// Decimals needed to tell ticks `step` apart.
inline int tick_decimals(const std::vector<double>& ticks) {
  if (ticks.size() < 2) return 2;
  const double step = ticks[1] - ticks[0];
  int d = 0;
  while (d < 6 && std::fabs(step * std::pow(10.0, d) - std::round(step * std::pow(10.0, d))) > 1e-6) ++d;
  return d;
}

}  // namespace svg

// ---- line charts -------------------------------------------------------------------------------------------

struct Series {
  std::string name;
  std::vector<double> x, y;  // NaN y values leave a gap
  std::string colour;        // empty: the palette colour of its index
  bool dashed = false;
  bool markers = true;
};

struct ChartOptions {
  std::string title, x_label, y_label;
  int width = 640, height = 400;
  double y_min = std::numeric_limits<double>::quiet_NaN();  // NaN: from the data
  double y_max = std::numeric_limits<double>::quiet_NaN();
  bool integer_x = true;  // epochs
};

inline std::string line_chart_svg(const std::vector<Series>& series, const ChartOptions& opt) {
  const double left = 72, right = 24, top = 60, bottom = 58;
  const double W = opt.width, H = opt.height, pw = W - left - right, ph = H - top - bottom;
  double xmin = std::numeric_limits<double>::infinity(), xmax = -xmin, ymin = xmin, ymax = -xmin;
  for (const auto& s : series) {
    RETIKD_CHECK(s.x.size() == s.y.size(), "line_chart_svg: series \"", s.name, "\" has ", s.x.size(),
                 " x values and ", s.y.size(), " y values");
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      xmin = std::min(xmin, s.x[i]), xmax = std::max(xmax, s.x[i]);
      ymin = std::min(ymin, s.y[i]), ymax = std::max(ymax, s.y[i]);
    }
  }
  const bool has_data = std::isfinite(xmin);
  if (!has_data) xmin = 0, xmax = 1, ymin = 0, ymax = 1;
  if (std::isfinite(opt.y_min)) ymin = opt.y_min;
  if (std::isfinite(opt.y_max)) ymax = opt.y_max;
  if (!(xmax > xmin)) xmax = xmin + 1;
  if (!(ymax > ymin)) {
    const double pad = std::max(std::fabs(ymin) * 0.05, 1e-3);
    ymin -= pad, ymax += pad;
  }
  std::vector<double> xt = svg::nice_ticks(xmin, xmax, std::min(8, static_cast<int>(xmax - xmin) + 1));
  if (opt.integer_x) {
    std::vector<double> keep;
    for (double t : xt)
      if (t == std::floor(t)) keep.push_back(t);
    xt = keep;
  }
  std::vector<double> yt = svg::nice_ticks(ymin, ymax, 6);
  // Widen the y range to the outer ticks so the curve does not touch the frame.
  if (!yt.empty()) {
    const double step = yt.size() > 1 ? yt[1] - yt[0] : 1.0;
    if (!std::isfinite(opt.y_min) && yt.front() > ymin) yt.insert(yt.begin(), yt.front() - step);
    if (!std::isfinite(opt.y_max) && yt.back() < ymax) yt.push_back(yt.back() + step);
    if (!std::isfinite(opt.y_min)) ymin = std::min(ymin, yt.front());
    if (!std::isfinite(opt.y_max)) ymax = std::max(ymax, yt.back());
  }
  auto X = [&](double x) { return left + (x - xmin) / (xmax - xmin) * pw; };
  auto Y = [&](double y) { return top + (1 - (y - ymin) / (ymax - ymin)) * ph; };

  svg::Canvas c(opt.width, opt.height);
  c.text(W / 2, 26, opt.title, 16, "middle", "font-weight=\"bold\"");
  const int xd = svg::tick_decimals(xt), yd = svg::tick_decimals(yt);
  for (double t : yt) {
    if (t < ymin - 1e-12 || t > ymax + 1e-12) continue;
    c.line(left, Y(t), left + pw, Y(t), "#dddddd", 1);
    c.line(left - 5, Y(t), left, Y(t), "#000000", 1);
    c.text(left - 8, Y(t) + 4, svg::fixed(t, yd), 11, "end");
  }
  for (double t : xt) {
    c.line(X(t), top + ph, X(t), top + ph + 5, "#000000", 1);
    c.text(X(t), top + ph + 19, svg::fixed(t, xd), 11, "middle");
  }
  c.rect(left, top, pw, ph, "none", "stroke=\"#000000\" stroke-width=\"1\"");
  c.text(left + pw / 2, H - 14, opt.x_label, 13, "middle");
  c.text(18, top + ph / 2, opt.y_label, 13, "middle", "", -90);
  if (!has_data) c.text(left + pw / 2, top + ph / 2, "no data", 14, "middle", "fill=\"#888888\"");

  for (std::size_t k = 0; k < series.size(); ++k) {
    const Series& s = series[k];
    const std::string colour = s.colour.empty() ? svg::palette(k) : s.colour;
    const std::string dash = s.dashed ? "stroke-dasharray=\"7,4\"" : "";
    std::vector<std::pair<double, double>> run;
    auto flush = [&] {
      if (run.size() >= 2) c.polyline(run, colour, 2, dash);
      run.clear();
    };
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) {
        flush();
        continue;
      }
      run.emplace_back(X(s.x[i]), Y(std::min(std::max(s.y[i], ymin), ymax)));
      if (s.markers || s.x.size() == 1) c.circle(run.back().first, run.back().second, 2.5, colour);
    }
    flush();
  }
  // Legend: one row between the title and the plot, so it never hides a curve.
  if (!series.empty()) {
    std::vector<double> widths;
    double total = 0;
    for (const auto& s : series) {
      widths.push_back(34 + 7.0 * static_cast<double>(s.name.size()) + 18);
      total += widths.back();
    }
    double x = std::max(left, left + (pw - total) / 2);
    const double yy = 46;
    for (std::size_t k = 0; k < series.size(); ++k) {
      const std::string colour = series[k].colour.empty() ? svg::palette(k) : series[k].colour;
      c.line(x, yy - 4, x + 26, yy - 4, colour, 2, series[k].dashed ? "stroke-dasharray=\"7,4\"" : "");
      c.text(x + 32, yy, series[k].name, 12);
      x += widths[k];
    }
  }
  return c.str();
}

// ---- training curves ---------------------------------------------------------------------------------------

// Per-epoch values (NaN where a value was not recorded), e.g. from train::read_training_curves().
struct TrainingCurves {
  std::vector<double> epoch, train_loss, val_loss, train_accuracy, val_accuracy;
  // Every other numeric per-epoch training value ("train_ce", "train_pca", "train_w_pca", ...) by its log key,
  // one value per epoch (NaN where a record lacks it).
  std::map<std::string, std::vector<double>> extra;
};

inline std::string loss_curves_svg(const TrainingCurves& t, const std::string& title = "Loss") {
  std::vector<Series> s;
  s.push_back({"train", t.epoch, t.train_loss, svg::palette(0), false, true});
  s.push_back({"validation", t.epoch, t.val_loss, svg::palette(1), true, true});
  ChartOptions o;
  o.title = title, o.x_label = "epoch", o.y_label = "loss";
  return line_chart_svg(s, o);
}

// One training term per panel: its raw value per epoch and, when the log has "train_w_<term>", the weighted value
// that entered the loss (the KD stage: CE of ~0.5 next to a raw KL of ~100 reads on its own axis).
inline std::string term_curves_svg(const TrainingCurves& t, const std::string& term, const std::string& title) {
  std::vector<Series> s;
  auto raw = t.extra.find("train_" + term);
  if (raw != t.extra.end()) s.push_back({term + " (raw)", t.epoch, raw->second, svg::palette(0), false, true});
  auto w = t.extra.find("train_w_" + term);
  if (w != t.extra.end()) s.push_back({term + " x weight", t.epoch, w->second, svg::palette(2), true, true});
  ChartOptions o;
  o.title = title, o.x_label = "epoch", o.y_label = term;
  o.width = 420, o.height = 280;
  return line_chart_svg(s, o);
}

inline std::string accuracy_curves_svg(const TrainingCurves& t, const std::string& title = "Accuracy") {
  std::vector<Series> s;
  s.push_back({"train", t.epoch, t.train_accuracy, svg::palette(0), false, true});
  s.push_back({"validation", t.epoch, t.val_accuracy, svg::palette(1), true, true});
  ChartOptions o;
  o.title = title, o.x_label = "epoch", o.y_label = "accuracy";
  o.y_max = 1.0;
  return line_chart_svg(s, o);
}

// ---- confusion matrix --------------------------------------------------------------------------------------

// A heat map: rows = true class, columns = predicted class; each cell shows its count and its share of the
// row (the recall of the diagonal), and is shaded by that share, so a rare class reads as clearly as a
// common one.
inline std::string confusion_matrix_svg(const std::vector<std::vector<int64_t>>& m,
                                        const std::vector<std::string>& names,
                                        const std::string& title = "Confusion matrix") {
  const std::size_t C = m.size();
  RETIKD_CHECK(C > 0 && names.size() == C, "confusion_matrix_svg: ", C, " rows and ", names.size(), " names");
  for (const auto& row : m)
    RETIKD_CHECK(row.size() == C, "confusion_matrix_svg: the matrix is not square (", C, " rows, a row of ",
                 row.size(), ")");
  std::size_t longest = 0;
  for (const auto& n : names) longest = std::max(longest, n.size());
  const double cell = C <= 4 ? 90 : std::max(36.0, 360.0 / static_cast<double>(C));
  const double left = 50 + 7.5 * static_cast<double>(longest), top = 70;
  const double grid = cell * static_cast<double>(C);
  const double legend_w = 70;
  const int width = static_cast<int>(left + grid + legend_w + 20);
  const bool rotate_names = static_cast<double>(longest) * 7 >= cell;
  const int height = static_cast<int>(top + grid + 30 + (rotate_names ? 5.0 * static_cast<double>(longest) : 0.0));
  svg::Canvas c(width, height);
  c.text(width / 2.0, 26, title, 16, "middle", "font-weight=\"bold\"");
  c.text(left + grid / 2, 52, "predicted class", 13, "middle");
  c.text(16, top + grid / 2, "true class", 13, "middle", "", -90);
  // White → dark blue.
  auto shade = [](double f) {
    const double r = 255 + (8 - 255) * f, g = 255 + (48 - 255) * f, b = 255 + (107 - 255) * f;
    char buf[8];
    std::snprintf(buf, sizeof buf, "#%02x%02x%02x", static_cast<int>(std::lround(r)), static_cast<int>(std::lround(g)),
                  static_cast<int>(std::lround(b)));
    return std::string(buf);
  };
  for (std::size_t t = 0; t < C; ++t) {
    int64_t row_total = 0;
    for (int64_t v : m[t]) row_total += v;
    for (std::size_t p = 0; p < C; ++p) {
      const double f = row_total > 0 ? static_cast<double>(m[t][p]) / static_cast<double>(row_total) : 0.0;
      const double x = left + cell * static_cast<double>(p), y = top + cell * static_cast<double>(t);
      c.rect(x, y, cell, cell, shade(f), "stroke=\"#ffffff\" stroke-width=\"1\"");
      const std::string ink = f > 0.5 ? "#ffffff" : "#000000";
      const double fs = std::min(18.0, cell / 4);
      c.text(x + cell / 2, y + cell / 2 + (cell >= 60 ? -2 : fs / 3), std::to_string(m[t][p]), fs, "middle",
             "fill=\"" + ink + "\"" + (t == p ? " font-weight=\"bold\"" : ""));
      if (cell >= 60)
        c.text(x + cell / 2, y + cell / 2 + 16, svg::fixed(100 * f, 1) + "%", 11, "middle", "fill=\"" + ink + "\"");
    }
    c.text(left - 8, top + cell * (static_cast<double>(t) + 0.5) + 4, names[t], 12, "end");
  }
  for (std::size_t p = 0; p < C; ++p) {
    const double x = left + cell * (static_cast<double>(p) + 0.5), y = top + grid + 16;
    if (!rotate_names) {
      c.text(x, y, names[p], 12, "middle");
    } else {
      c.text(x, y - 4, names[p], 12, "end", "", -40);
    }
  }
  c.rect(left, top, grid, grid, "none", "stroke=\"#000000\" stroke-width=\"1\"");
  // Colour scale.
  const double sx = left + grid + 24, sw = 14;
  const int steps = 20;
  for (int i = 0; i < steps; ++i) {
    const double f = 1.0 - (i + 0.5) / steps;
    c.rect(sx, top + grid * i / steps, sw, grid / steps + 0.5, shade(f));
  }
  c.rect(sx, top, sw, grid, "none", "stroke=\"#000000\" stroke-width=\"1\"");
  for (int k = 0; k <= 4; ++k) {
    const double y = top + grid * (1.0 - k / 4.0);
    c.line(sx + sw, y, sx + sw + 4, y, "#000000", 1);
    c.text(sx + sw + 7, y + 4, std::to_string(25 * k) + "%", 10);
  }
  c.text(sx + sw / 2, top - 8, "of row", 10, "middle");
  return c.str();
}

// ---- ROC curves --------------------------------------------------------------------------------------------

inline std::string roc_curves_svg(const std::vector<RocCurve>& curves, const std::vector<std::string>& names,
                                  const std::vector<double>& aucs, const std::string& title = "ROC (one-vs-rest)") {
  RETIKD_CHECK(curves.size() == names.size() && aucs.size() == names.size(), "roc_curves_svg: ", curves.size(),
               " curves, ", names.size(), " names, ", aucs.size(), " AUCs");
  const double left = 64, top = 44, size = 380, right = 24, bottom = 56;
  const int width = static_cast<int>(left + size + right), height = static_cast<int>(top + size + bottom);
  auto X = [&](double f) { return left + f * size; };
  auto Y = [&](double t) { return top + (1 - t) * size; };
  svg::Canvas c(width, height);
  c.text(width / 2.0, 26, title, 16, "middle", "font-weight=\"bold\"");
  for (int k = 0; k <= 5; ++k) {
    const double v = k / 5.0;
    c.line(X(v), top, X(v), top + size, "#eeeeee", 1);
    c.line(left, Y(v), left + size, Y(v), "#eeeeee", 1);
    c.line(X(v), top + size, X(v), top + size + 5, "#000000", 1);
    c.text(X(v), top + size + 19, svg::fixed(v, 1), 11, "middle");
    c.line(left - 5, Y(v), left, Y(v), "#000000", 1);
    c.text(left - 8, Y(v) + 4, svg::fixed(v, 1), 11, "end");
  }
  c.line(X(0), Y(0), X(1), Y(1), "#999999", 1, "stroke-dasharray=\"4,4\"");
  c.rect(left, top, size, size, "none", "stroke=\"#000000\" stroke-width=\"1\"");
  c.text(left + size / 2, height - 14, "false positive rate", 13, "middle");
  c.text(18, top + size / 2, "true positive rate", 13, "middle", "", -90);
  std::vector<std::string> labels;
  for (std::size_t k = 0; k < curves.size(); ++k) {
    labels.push_back(names[k] + (std::isfinite(aucs[k]) ? " (AUC " + svg::fixed(aucs[k], 3) + ")" : " (AUC n/a)"));
    if (curves[k].empty()) continue;
    std::vector<std::pair<double, double>> pts;
    for (std::size_t i = 0; i < curves[k].fpr.size(); ++i) pts.emplace_back(X(curves[k].fpr[i]), Y(curves[k].tpr[i]));
    c.polyline(pts, svg::palette(k), 2);
  }
  std::size_t longest = 0;
  for (const auto& l : labels) longest = std::max(longest, l.size());
  const double lw = 40 + 6.6 * static_cast<double>(longest), lh = 8 + 18.0 * static_cast<double>(labels.size());
  const double lx = left + size - lw - 8, ly = top + size - lh - 8;
  c.rect(lx, ly, lw, lh, "#ffffff", "fill-opacity=\"0.9\" stroke=\"#999999\" stroke-width=\"1\"");
  for (std::size_t k = 0; k < labels.size(); ++k) {
    const double yy = ly + 16 + 18.0 * static_cast<double>(k);
    c.line(lx + 8, yy - 4, lx + 30, yy - 4, svg::palette(k), 2.5);
    c.text(lx + 36, yy, labels[k], 12);
  }
  return c.str();
}

inline std::string roc_curves_svg(const ClassificationResult& r, const std::string& title = "ROC (one-vs-rest)") {
  std::vector<double> aucs;
  for (const auto& m : r.per_class) aucs.push_back(m.auc);
  std::vector<RocCurve> curves = r.roc;
  curves.resize(r.class_names.size());
  return roc_curves_svg(curves, r.class_names, aucs, title);
}

// ---- Markdown ----------------------------------------------------------------------------------------------

inline std::string format_metric(double v, int decimals = 3) { return std::isfinite(v) ? svg::fixed(v, decimals) : "n/a"; }

// Per-class table (precision, recall, F1, AUC, support) with macro and weighted rows, then accuracy.
inline std::string metrics_table_markdown(const ClassificationResult& r) {
  std::string s = "| class | precision | recall | F1 | AUC | support |\n|---|---:|---:|---:|---:|---:|\n";
  for (const auto& m : r.per_class)
    s += "| " + m.name + " | " + format_metric(m.precision) + " | " + format_metric(m.recall) + " | " +
         format_metric(m.f1) + " | " + format_metric(m.auc) + " | " + std::to_string(m.support) + " |\n";
  s += "| *macro* | " + format_metric(r.macro_precision) + " | " + format_metric(r.macro_recall) + " | " +
       format_metric(r.macro_f1) + " | " + format_metric(r.macro_auc) + " | " + std::to_string(r.num_samples) + " |\n";
  s += "| *weighted* | " + format_metric(r.weighted_precision) + " | " + format_metric(r.weighted_recall) + " | " +
       format_metric(r.weighted_f1) + " | | " + std::to_string(r.num_samples) + " |\n";
  s += "\nAccuracy **" + format_metric(r.accuracy, 4) + "** on " + std::to_string(r.num_samples) + " images.\n";
  return s;
}

// One row per model: accuracy, macro-F1, weighted-F1, macro AUC and each class's recall.
inline std::string comparison_table_markdown(const std::vector<std::pair<std::string, ClassificationResult>>& rows) {
  if (rows.empty()) return "";
  const auto& names = rows.front().second.class_names;
  std::string s = "| model | accuracy | macro-F1 | weighted-F1 | macro AUC |";
  std::string rule = "|---|---:|---:|---:|---:|";
  for (const auto& n : names) s += " " + n + " recall |", rule += "---:|";
  s += "\n" + rule + "\n";
  for (const auto& row : rows) {
    const auto& r = row.second;
    s += "| " + row.first + " | " + format_metric(r.accuracy) + " | " + format_metric(r.macro_f1) + " | " +
         format_metric(r.weighted_f1) + " | " + format_metric(r.macro_auc) + " |";
    for (const auto& n : names) {
      double rec = std::numeric_limits<double>::quiet_NaN();
      for (const auto& m : r.per_class)
        if (m.name == n) rec = m.recall;
      s += " " + format_metric(rec) + " |";
    }
    s += "\n";
  }
  return s;
}

// Collects Markdown and writes the figures it refers to next to it.
//   MarkdownReport rep("runs/x");
//   rep.heading(1, "retikd report");
//   rep.figure("student_kd_confusion.svg", confusion_matrix_svg(r.confusion, r.class_names), "confusion");
//   rep.write();   // runs/x/report.md
class MarkdownReport {
 public:
  explicit MarkdownReport(std::string directory) : dir_(std::move(directory)) {
    RETIKD_CHECK(!dir_.empty(), "MarkdownReport: empty directory");
  }
  void heading(int level, const std::string& text) {
    md_ += std::string(static_cast<std::size_t>(std::min(6, std::max(1, level))), '#') + " " + text + "\n\n";
  }
  void paragraph(const std::string& text) { md_ += text + "\n\n"; }
  // Markdown as given, then a blank line (a table followed directly by a heading or a second table would
  // otherwise run into it).
  void raw(const std::string& markdown) {
    md_ += markdown;
    if (!md_.empty() && md_.back() != '\n') md_ += '\n';
    if (md_.size() >= 2 && md_[md_.size() - 2] != '\n') md_ += '\n';
  }
  void metrics_table(const ClassificationResult& r) { md_ += metrics_table_markdown(r) + "\n"; }
  // Writes `svg` to <dir>/<file_name> (atomically) and links it.
  void figure(const std::string& file_name, const std::string& svg, const std::string& caption) {
    RETIKD_CHECK(!file_name.empty() && file_name.find('/') == std::string::npos, "MarkdownReport: figure name \"",
                 file_name, "\" must be a plain file name");
    write_text(dir_ + "/" + file_name, svg);
    md_ += "![" + caption + "](" + file_name + ")\n\n";
  }
  const std::string& markdown() const { return md_; }
  // Writes <dir>/<file_name>; returns its path.
  std::string write(const std::string& file_name = "report.md") const {
    const std::string path = dir_ + "/" + file_name;
    write_text(path, md_);
    return path;
  }

  static void write_text(const std::string& path, const std::string& text) {
    io::write_file_atomically(path, [&](const io::ByteSink& sink) { sink(text.data(), text.size()); }, "report");
  }

 private:
  std::string dir_;
  std::string md_;
};

}  // namespace metrics
}  // namespace retikd
