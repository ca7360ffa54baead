// examples/compare_runs.cpp — the paired comparison of training recipes from finished distill_retina runs: one
// run directory per seed and recipe, the same seeds for every recipe, so seed i of recipe A and seed i of recipe B
// saw the same data order, student initialisation and epochs (scripts/compare_kd.sh makes such runs).
//
//   compare_runs --config "CE only=runs/s0:student_ce,runs/s1:student_ce"
//                --config "logit KD=runs/lkd_s0:student_kd,runs/lkd_s1:student_kd" [--out compare.md]
//   (one command line)
//
// The first --config is the baseline. Per recipe: validation macro-F1 of the selected epoch (the best in the
// stage's log.jsonl — what the pipeline selects on), test accuracy, macro-F1 and glaucoma recall, mean ± sample
// sd over the seeds. Per recipe against the baseline: paired differences with their 95% interval
// (metrics/paired.hpp: Student's t on n − 1 degrees of freedom) and McNemar's exact test on each seed's test
// predictions (STAGE/test_predictions.tsv). The test split is what it is: choose recipes on the validation
// column, read the test columns once.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <retikd/core/cli_args.hpp>
#include <retikd/core/error.hpp>
#include <retikd/io/json.hpp>
#include <retikd/metrics/paired.hpp>
#include <retikd/metrics/report.hpp>
#include <retikd/train/run_log.hpp>

using namespace retikd;

namespace {

struct Seed {
  std::string dir, stage;
  double val_f1 = std::nan(""), accuracy = 0, macro_f1 = 0, glaucoma_recall = 0;
  std::vector<int64_t> labels, predicted;
};

struct Recipe {
  std::string name;
  std::vector<Seed> seeds;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep))
    if (!cur.empty()) out.push_back(cur);
  return out;
}

Seed read_seed(const std::string& spec) {
  const auto colon = spec.rfind(':');
  RETIKD_CHECK(colon != std::string::npos && colon > 0 && colon + 1 < spec.size(), "compare_runs: '", spec,
               "' must be RUN_DIR:STAGE (e.g. runs/s0:student_kd)");
  Seed s;
  s.dir = spec.substr(0, colon);
  s.stage = spec.substr(colon + 1);
  const io::Json m = io::read_json_file(s.dir + "/metrics.json");
  RETIKD_CHECK(m.contains(s.stage), "compare_runs: ", s.dir, "/metrics.json has no stage '", s.stage, "'");
  const io::Json& e = m.at(s.stage);
  s.accuracy = e.at("accuracy").as_number();
  s.macro_f1 = e.at("macro_f1").as_number();
  s.glaucoma_recall = e.at("per_class").at("Glaucoma").at("recall").as_number();
  const std::string log = s.dir + "/" + s.stage + "/log.jsonl";
  std::ifstream lf(log);
  if (lf.good()) {
    for (const auto& r : train::read_log_file(log).records) {
      const io::Json* v = r.find("val_macro_f1");
      if (v && v->is_number() && (std::isnan(s.val_f1) || v->as_number() > s.val_f1)) s.val_f1 = v->as_number();
    }
  }
  const std::string tsv = s.dir + "/" + s.stage + "/test_predictions.tsv";
  std::ifstream f(tsv);
  RETIKD_CHECK(f.good(), "compare_runs: cannot read ", tsv, " (a run of an older retikd? rerun its stage)");
  std::string line;
  std::getline(f, line);  // header
  while (std::getline(f, line)) {
    const auto cols = split(line, '\t');
    int64_t label = 0, predicted = 0;
    RETIKD_CHECK(cols.size() == 3 && cli::parse_int64(cols[1], label) && cli::parse_int64(cols[2], predicted),
                 "compare_runs: ", tsv, ": bad line '", line, "'");
    s.labels.push_back(label);
    s.predicted.push_back(predicted);
  }
  return s;
}

std::string mean_sd(const std::vector<double>& v, int decimals = 4) {
  double m = 0;
  for (double x : v) m += x;
  m /= static_cast<double>(v.size());
  double ss = 0;
  for (double x : v) ss += (x - m) * (x - m);
  const std::string mean = metrics::format_metric(m, decimals);
  if (v.size() < 2) return mean;
  return mean + " ± " + metrics::format_metric(std::sqrt(ss / static_cast<double>(v.size() - 1)), decimals);
}

std::string signed_fixed(double v, int decimals) {
  char b[32];
  std::snprintf(b, sizeof b, "%+.*f", decimals, v);
  return b;
}

std::string interval(const metrics::PairedDifference& d, double scale) {
  if (d.n < 2) return signed_fixed(d.mean * scale, 2) + " (one seed: no interval)";
  return signed_fixed(d.mean * scale, 2) + " [" + signed_fixed(d.ci_low * scale, 2) + ", " +
         signed_fixed(d.ci_high * scale, 2) + "]";
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<Recipe> recipes;
  std::string out_path;
  try {
    cli::ArgReader args(argc, argv);
    while (args.next()) {
      const std::string& a = args.arg();
      if (a == "--help" || a == "-h") {
        std::cout << "usage: compare_runs --config NAME=RUN:STAGE[,RUN:STAGE...] --config ... [--out FILE.md]\n"
                     "  the first --config is the baseline; the i-th RUN of every config must be the same seed\n";
        return 0;
      }
      if (a != "--config" && a != "--out") throw cli::ArgumentError("unknown option '" + a + "'");
      const std::string v = args.value();
      if (a == "--config") {
        const auto eq = v.find('=');
        RETIKD_CHECK(eq != std::string::npos && eq > 0, "compare_runs: --config '", v, "' must be NAME=RUN:STAGE,...");
        Recipe r;
        r.name = v.substr(0, eq);
        for (const auto& spec : split(v.substr(eq + 1), ',')) r.seeds.push_back(read_seed(spec));
        RETIKD_CHECK(!r.seeds.empty(), "compare_runs: --config ", r.name, " lists no runs");
        recipes.push_back(std::move(r));
      } else {
        out_path = v;
      }
    }
    RETIKD_CHECK(!recipes.empty(), "compare_runs: give at least one --config (see --help)");

    std::ostringstream md;
    md << "| recipe | seeds | val macro-F1 (selected epoch) | test accuracy | test macro-F1 | glaucoma recall |\n"
          "|---|---|---|---|---|---|\n";
    for (const auto& r : recipes) {
      std::vector<double> val, acc, f1, gr;
      for (const auto& s : r.seeds) {
        val.push_back(s.val_f1);
        acc.push_back(s.accuracy);
        f1.push_back(s.macro_f1);
        gr.push_back(s.glaucoma_recall);
      }
      md << "| " << r.name << " | " << r.seeds.size() << " | " << mean_sd(val) << " | " << mean_sd(acc) << " | "
         << mean_sd(f1) << " | " << mean_sd(gr, 3) << " |\n";
    }
    const Recipe& base = recipes.front();
    if (recipes.size() > 1) {
      md << "\nPaired differences against **" << base.name
         << "** (points; mean [95% interval] over seeds) and McNemar's exact test per seed (test predictions):\n\n"
            "| recipe | seeds | Δ val macro-F1 | Δ test accuracy | Δ test macro-F1 | Δ glaucoma recall | McNemar p per seed "
            "(only baseline right / only recipe right) |\n|---|---|---|---|---|---|---|\n";
      for (std::size_t k = 1; k < recipes.size(); ++k) {
        const Recipe& r = recipes[k];
        const std::size_t n = std::min(base.seeds.size(), r.seeds.size());
        std::vector<double> bv, rv, ba, ra, bf, rf, bg, rg;
        std::string mc;
        for (std::size_t i = 0; i < n; ++i) {
          const Seed &x = base.seeds[i], &y = r.seeds[i];
          bv.push_back(x.val_f1), rv.push_back(y.val_f1);
          ba.push_back(x.accuracy), ra.push_back(y.accuracy);
          bf.push_back(x.macro_f1), rf.push_back(y.macro_f1);
          bg.push_back(x.glaucoma_recall), rg.push_back(y.glaucoma_recall);
          RETIKD_CHECK(x.labels == y.labels, "compare_runs: ", x.dir, " and ", y.dir,
                       " were evaluated on different test labels (not the same split?)");
          const metrics::McNemar m = metrics::mcnemar(x.labels, x.predicted, y.predicted);
          mc += (mc.empty() ? "" : "; ") + metrics::format_metric(m.p_value, 3) + " (" + std::to_string(m.only_a) +
                "/" + std::to_string(m.only_b) + ")";
        }
        md << "| " << r.name << " | " << n << " | " << interval(metrics::paired_difference(bv, rv), 100) << " | "
           << interval(metrics::paired_difference(ba, ra), 100) << " | "
           << interval(metrics::paired_difference(bf, rf), 100) << " | "
           << interval(metrics::paired_difference(bg, rg), 100) << " | " << mc << " |\n";
      }
    }
    std::cout << md.str();
    if (!out_path.empty()) {
      std::ofstream f(out_path);
      RETIKD_CHECK(f.good(), "compare_runs: cannot write ", out_path);
      f << md.str();
    }
  } catch (const cli::ArgumentError& e) {
    std::cerr << "compare_runs: " << e.what() << " (see --help)\n";
    return 2;
  } catch (const Error& e) {
    std::cerr << "compare_runs: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
