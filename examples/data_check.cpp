// examples/data_check.cpp — is this data set usable? Counts per split and class, image sizes, and every
// problem, before any training starts.
//
//   data_check ROOT [--manifest FILE] [--skip-bad] [--threads N] [--bench]
//   data_check                      (../shared/data/fundus4 when present, else the built-in synthetic set)
//
// ROOT holds class folders (ROOT/<class>/…, ROOT/<split>/<class>/…) or a manifest (ROOT/split.tsv or
// split.csv, or --manifest FILE). Every image is decoded once, across --threads threads (default 2), so a
// truncated, empty, non-image or unreadable file is reported by name. Exit status: 0 when the data is usable
// (no problems, or problems skipped with --skip-bad and images left), 1 when it is not, 2 on a usage error.
//
// --bench measures loader throughput at 224 px with 2 workers on the train split (or everything when there
// are no splits), with and without the decoded-image cache, for (a) resize + normalise and (b) the paper's
// training pipeline (RandomResizedCrop, both flips, RandomRotation 12°, ColorJitter 0.1/0.1/0.1/0.05,
// Normalize). docs/data.md has the numbers for this machine.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "retikd/core/cli_args.hpp"
#include "retikd/core/paths.hpp"
#include "retikd/data/data.hpp"

using namespace retikd;
using namespace retikd::data;

namespace {

const char* kUsage =
    "usage: data_check [ROOT] [--manifest FILE] [--skip-bad] [--threads N] [--bench] [--allow-outside-root]\n"
    "                  [--max-image-pixels N]\n"
    "  ROOT            class folders (ROOT/<class>/..., ROOT/<split>/<class>/...) or a folder with split.tsv/.csv\n"
    "  --manifest FILE a manifest (path, label, split columns; paths relative to ROOT when given)\n"
    "  --skip-bad      skip bad files and rows with a warning (default: report them and fail)\n"
    "  --threads N     decoding threads, 1 to 64 (default 2)\n"
    "  --allow-outside-root  accept manifest paths that lead outside the data root (refused by default)\n"
    "  --max-image-pixels N  refuse images above N pixels before decoding (default 50000000, or\n"
    "                  RETIKD_MAX_IMAGE_PIXELS)\n"
    "  --bench         also measure loader throughput at 224 px with 2 workers, with and without the cache\n"
    "Without ROOT: ../shared/data/fundus4 when present, else the built-in synthetic set.\n";

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string split_label(const std::string& s) { return s.empty() ? "(no split)" : s; }

struct Decoded {
  bool ok = false;
  ImageInfo info;
};

// Prints a split × class table of the labels of the given (split, label) pairs.
void print_table(const std::vector<std::pair<std::string, int>>& items, const std::vector<std::string>& splits) {
  std::printf("  %-12s", "split");
  for (int c = 0; c < kNumClasses; ++c) std::printf(" %9s", class_name(c));
  std::printf(" %9s\n", "total");
  ClassCounts all{};
  for (const std::string& s : splits) {
    ClassCounts c{};
    for (const auto& it : items)
      if (it.first == s) ++c[it.second];
    int64_t total = 0;
    std::printf("  %-12s", split_label(s).c_str());
    for (int k = 0; k < kNumClasses; ++k) {
      std::printf(" %9lld", static_cast<long long>(c[k]));
      total += c[k];
      all[k] += c[k];
    }
    std::printf(" %9lld\n", static_cast<long long>(total));
  }
  if (splits.size() > 1) {
    int64_t total = 0;
    std::printf("  %-12s", "all");
    for (int k = 0; k < kNumClasses; ++k) {
      std::printf(" %9lld", static_cast<long long>(all[k]));
      total += all[k];
    }
    std::printf(" %9lld\n", static_cast<long long>(total));
  }
}

void print_size_stats(const std::vector<Decoded>& decoded) {
  std::vector<int> ws, hs;
  std::map<std::string, int64_t> kinds;
  std::map<std::pair<int, int>, int64_t> sizes;
  for (const Decoded& d : decoded) {
    if (!d.ok) continue;
    ws.push_back(d.info.width);
    hs.push_back(d.info.height);
    ++sizes[{d.info.width, d.info.height}];
    const char* ch = d.info.channels == 1 ? "grey" : d.info.channels == 2 ? "grey+alpha" : d.info.channels == 4 ? "RGBA" : "RGB";
    ++kinds[str(image_format_name(d.info.format), " ", ch, " ", d.info.bit_depth, "-bit")];
  }
  if (ws.empty()) return;
  auto stat = [](std::vector<int> v, const char* name) {
    std::sort(v.begin(), v.end());
    double mean = 0;
    for (int x : v) mean += x;
    mean /= v.size();
    std::printf("  %-7s min %5d  median %5d  mean %7.1f  max %5d\n", name, v.front(), v[v.size() / 2], mean, v.back());
  };
  std::printf("image sizes (%zu decoded images, %zu distinct sizes):\n", ws.size(), sizes.size());
  stat(ws, "width");
  stat(hs, "height");
  std::vector<std::pair<int64_t, std::pair<int, int>>> common;
  for (const auto& s : sizes) common.push_back({s.second, s.first});
  std::sort(common.rbegin(), common.rend());
  std::printf("  most common:");
  for (std::size_t i = 0; i < std::min<std::size_t>(5, common.size()); ++i)
    std::printf(" %dx%d (%lld)", common[i].second.first, common[i].second.second, static_cast<long long>(common[i].first));
  std::printf("\n  formats:");
  for (const auto& k : kinds) std::printf(" %s %lld;", k.first.c_str(), static_cast<long long>(k.second));
  std::printf("\n");
}

// Loader throughput: the first pass (decode, fill the cache) and one epoch after it.
void bench(const Dataset& ds) {
  Dataset part = ds.split("train");
  if (part.empty()) part = ds;
  std::printf("\nloader throughput: %lld images of %s, 224 px, 2 workers, batch 32 (%u hardware threads)\n",
              static_cast<long long>(part.size()), part.samples.front().split.empty() ? "the set" : "train",
              std::thread::hardware_concurrency());
  std::printf("  %-44s %10s %14s\n", "pipeline", "cache", "images/s");
  struct Config {
    const char* name;
    TransformPtr preprocess, transform, uncached;
  };
  const std::vector<Config> configs = {
      {"(a) resize 224x224 + normalize", make<Resize>(224, 224, true), make<Normalize>(),
       compose({make<Resize>(224, 224, true), make<Normalize>()})},
      {"(b) RRC, flips, rotation 12, jitter, normalize", make<Resize>(256, 256, true), train_transform(224),
       compose({make<Resize>(256, 256, true), train_transform(224)})},
  };
  for (const Config& c : configs) {
    for (bool cached : {true, false}) {
      LoaderOptions opt;
      opt.batch_size = 32;
      opt.num_workers = 2;
      opt.prefetch = 4;
      opt.cache = cached;
      opt.preprocess = cached ? c.preprocess : nullptr;
      opt.transform = cached ? c.transform : c.uncached;
      opt.policy = BadInput::skip;
      opt.warnings = nullptr;
      Loader loader(part, opt);
      const auto t0 = std::chrono::steady_clock::now();
      loader.prepare();
      const double first = seconds_since(t0);
      const auto t1 = std::chrono::steady_clock::now();
      loader.start_epoch(0);
      Batch b;
      int64_t n = 0;
      while (loader.next(b)) n += b.size();
      const double epoch = seconds_since(t1);
      std::printf("  %-44s %10s %14.0f   (first pass %.1f s: %.0f images/s)\n", c.name, cached ? "memory" : "none",
                  n / epoch, first, loader.size() / first);
    }
  }
}

int check_synthetic() {
  const int64_t n = 400;
  SyntheticOptions so;
  so.size = 64;
  SyntheticSource src(n, 0, so);
  std::printf("no ROOT given and %s not found: checking the built-in synthetic set instead\n",
              shared_path("data/fundus4").c_str());
  std::printf("(%lld images, %dx%d, seed 0: the generator the tests use, and the default where no real data is given)\n\n%s\n",
              static_cast<long long>(n), so.size, so.size, kUsage);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::pair<std::string, int>> items;
  std::vector<Decoded> decoded;
  for (int64_t i = 0; i < n; ++i) {
    Decoded d;
    const ImageU8 img = src.load(i, &d.info);
    d.ok = !img.empty();
    decoded.push_back(d);
    items.push_back({"", src.label(i)});
  }
  std::printf("images per class:\n");
  print_table(items, {""});
  print_size_stats(decoded);
  std::printf("generated %lld images in %.2f s; no problems\n", static_cast<long long>(n), seconds_since(t0));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string root, manifest;
  bool skip_bad = false, do_bench = false, allow_outside = false;
  int threads = 2;
  try {
    cli::ArgReader args(argc, argv);
    while (args.next()) {
      const std::string& a = args.arg();
      if (a == "--help" || a == "-h") {
        std::printf("%s", kUsage);
        return 0;
      } else if (a == "--manifest") {
        manifest = args.value();
      } else if (a == "--skip-bad") {
        skip_bad = true;
      } else if (a == "--bench") {
        do_bench = true;
      } else if (a == "--allow-outside-root") {
        allow_outside = true;
      } else if (a == "--threads") {
        threads = static_cast<int>(args.integer(1, 64));
      } else if (a == "--max-image-pixels") {
        set_max_image_pixels(args.integer(1, int64_t(kMaxImageSide) * kMaxImageSide));
      } else if (!a.empty() && a[0] == '-') {
        throw cli::ArgumentError("unknown option " + a);
      } else if (root.empty()) {
        root = a;
      } else {
        throw cli::ArgumentError("more than one ROOT (" + root + ", " + a + ")");
      }
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "data_check: %s\n%s", e.what(), kUsage);
    return 2;
  }
  if (root.empty() && manifest.empty()) {
    if (!path_exists(shared_path("data/fundus4/split.tsv"))) return check_synthetic();
    root = shared_path("data/fundus4");
    std::printf("no ROOT given: checking %s\n", root.c_str());
  }

  const BadInput policy = skip_bad ? BadInput::skip : BadInput::error;
  DatasetOptions dopt;
  dopt.policy = BadInput::skip;  // collect every problem of the scan; the policy is applied below
  dopt.warnings = nullptr;       // problems and notes are printed from the report below
  dopt.allow_outside_root = allow_outside;
  const auto t_scan = std::chrono::steady_clock::now();
  Dataset ds;
  try {
    ds = Dataset::open(root, manifest, dopt);
  } catch (const Error& e) {
    std::fprintf(stderr, "data_check: %s\n", e.what());
    return 1;
  }
  const double scan_s = seconds_since(t_scan);
  const bool is_manifest = fs::is_regular_file(ds.source);
  std::printf("data: %s (%s)\n", ds.source.c_str(), is_manifest ? "manifest" : "class folders");
  std::printf("listed %lld images in %.2f s; %lld more in the excluded split, never loaded", static_cast<long long>(ds.size()),
              scan_s, static_cast<long long>(ds.excluded));
  if (ds.excluded) {
    std::printf(" (");
    for (int c = 0; c < kNumClasses; ++c) std::printf("%s%s %lld", c ? ", " : "", class_name(c), static_cast<long long>(ds.excluded_counts[c]));
    std::printf(")");
  }
  std::printf("\n");

  // Decode everything once.
  std::vector<Decoded> decoded(ds.samples.size());
  std::vector<Problem> problems = ds.report.problems();
  {
    const auto t0 = std::chrono::steady_clock::now();
    ProgressBar bar("decode", ds.size());
    std::atomic<int64_t> next{0};
    std::mutex pm;
    auto work = [&] {
      for (;;) {
        const int64_t i = next.fetch_add(1);
        if (i >= ds.size()) return;
        try {
          load_image(ds.samples[i].path, &decoded[i].info);
          decoded[i].ok = true;
        } catch (const DataError& e) {
          std::lock_guard<std::mutex> lock(pm);
          problems.insert(problems.end(), e.problems().begin(), e.problems().end());
        } catch (const std::exception& e) {
          std::lock_guard<std::mutex> lock(pm);
          problems.push_back({ds.samples[i].path, ProblemKind::corrupt, e.what()});
        }
        bar.add();
      }
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
    bar.finish();
    const double s = seconds_since(t0);
    std::printf("decoded %lld images in %.2f s with %d thread%s (%.0f images/s)\n", static_cast<long long>(ds.size()), s,
                threads, threads == 1 ? "" : "s", s > 0 ? ds.size() / s : 0.0);
  }

  std::vector<std::pair<std::string, int>> usable;
  for (std::size_t i = 0; i < ds.samples.size(); ++i)
    if (decoded[i].ok) usable.push_back({ds.samples[i].split, ds.samples[i].label});
  std::printf("\nusable images per split and class:\n");
  print_table(usable, ds.splits().empty() ? std::vector<std::string>{""} : ds.splits());
  print_size_stats(decoded);

  const std::vector<std::string> notes = ds.report.notes();
  if (!notes.empty()) {
    std::printf("\n%zu warning%s (nothing dropped for these):\n", notes.size(), notes.size() == 1 ? "" : "s");
    for (const auto& n : notes) std::printf("  %s\n", n.c_str());
  }

  std::sort(problems.begin(), problems.end(), [](const Problem& a, const Problem& b) { return a.path < b.path; });
  if (problems.empty()) {
    std::printf("\nno problems found\n");
  } else {
    std::printf("\n%zu problem%s found%s:\n", problems.size(), problems.size() == 1 ? "" : "s",
                policy == BadInput::skip ? " (skipped: --skip-bad)" : "");
    std::map<ProblemKind, int64_t> by_kind;
    for (const Problem& p : problems) {
      std::printf("  %s\n", p.to_string().c_str());
      ++by_kind[p.kind];
    }
    std::printf("  by kind:");
    for (const auto& k : by_kind) std::printf(" %s %lld;", problem_kind_name(k.first), static_cast<long long>(k.second));
    std::printf("\n");
  }

  bool usable_data = !usable.empty() && (problems.empty() || policy == BadInput::skip);
  if (usable.empty()) std::printf("\nnot usable: no image could be loaded\n");
  else if (!usable_data) std::printf("\nnot usable: fix the files above, or pass --skip-bad to leave them out\n");
  else std::printf("\nusable: %zu images%s\n", usable.size(), problems.empty() ? "" : " (bad inputs left out)");

  if (do_bench && usable_data) {
    Dataset clean = ds;
    clean.samples.clear();
    for (std::size_t i = 0; i < ds.samples.size(); ++i)
      if (decoded[i].ok) clean.samples.push_back(ds.samples[i]);
    bench(clean);
  }
  return usable_data ? 0 : 1;
}
