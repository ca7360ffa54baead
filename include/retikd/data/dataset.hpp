// retikd/data/dataset.hpp — which image files exist, what class each is, and which split it belongs to.
//
// Two layouts (DESIGN §6):
//  - class folders: root/<class>/… or root/<split>/<class>/… (files may sit in nested folders below the class
//    folder; hidden files and folders are ignored, and so are loose files next to the class folders);
//  - a manifest: split.tsv / split.csv with a header naming at least the path, label and split columns (extra
//    columns ignored; paths relative to the manifest's folder unless a root is given).
// The `excluded` split is never loaded: its rows are counted, and their files are not even looked at.
//
// Hostile or careless folders and manifests cannot change the data silently:
//  - a manifest path must lead to a file under the data root once ".", "..", doubled slashes and symbolic
//    links are resolved (`outside_root` problem otherwise; DatasetOptions::allow_outside_root lifts this), so
//    "../../etc/passwd" or an absolute path is never opened;
//  - one file listed twice — by two spellings ("images/a.jpg", "images/./a.jpg"), a hard link or a symbolic
//    link — is found by its (device, inode): when the listings agree on class and split the later ones are
//    `duplicate` problems, when they disagree every listing is (which label would be true?);
//  - folder walks follow links but never loop, and a link in one class folder into another part of the data
//    set is not followed (data/fs.hpp), each with a warning;
//  - identical file content under different names, in different splits or classes, is a warning (a copy of
//    a test image in training inflates the test score): files are compared only when their sizes match, so
//    the check reads almost nothing on real data.
//
// A Dataset is only the list of samples. Nothing here decodes pixels: the loader does that once, before
// training, and applies the same bad-input policy to what it finds (see problems.hpp).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <unordered_set>
#include <vector>

#include "retikd/core/random.hpp"
#include "retikd/core/tensor.hpp"
#include "retikd/data/classes.hpp"
#include "retikd/data/fs.hpp"
#include "retikd/data/problems.hpp"

namespace retikd {
namespace data {

struct Sample {
  std::string path;   // as opened: root joined with the listed path
  int label = -1;     // 0..3 in class_names() order
  std::string split;  // "train", "val", "test", or "" for a layout without splits
};

using ClassCounts = std::array<int64_t, kNumClasses>;

struct DatasetOptions {
  BadInput policy = BadInput::error;
  WarningSink warnings = stderr_warnings();  // where skip-policy warnings and notes go
  std::string root;                          // manifests: the folder paths are relative to (default: its own)
  bool allow_outside_root = false;           // manifests: accept paths that lead outside the root
  bool check_content_duplicates = true;      // warn about identical files in different splits / classes
};

// "val" for val / valid / validation / dev, likewise train and test; "excluded"; anything else as given
// (lower-cased), which callers reject.
inline std::string normalize_split(const std::string& s) {
  const std::string v = to_lower_trimmed(s);
  if (v == "train" || v == "training") return "train";
  if (v == "val" || v == "valid" || v == "validation" || v == "dev") return "val";
  if (v == "test" || v == "testing") return "test";
  if (v == "excluded" || v == "exclude") return "excluded";
  return v;
}
inline bool is_known_split(const std::string& normalized) {
  return normalized == "train" || normalized == "val" || normalized == "test" || normalized == "excluded";
}

class Dataset {
 public:
  std::string root;                // the folder sample paths were resolved against
  std::string source;              // the manifest's path, or the root for class folders
  std::vector<Sample> samples;     // sorted by (split, class folder, path) for folders; manifest order otherwise
  int64_t excluded = 0;            // rows / files of the excluded split (never loaded)
  ClassCounts excluded_counts{};   // … per class, where the label was readable
  DataReport report;               // inputs skipped under the skip policy

  int64_t size() const { return static_cast<int64_t>(samples.size()); }
  bool empty() const { return samples.empty(); }

  // The samples of one split ("train", "val", "test"; aliases accepted), same root and report.
  Dataset split(const std::string& name) const {
    const std::string want = normalize_split(name);
    Dataset out;
    out.root = root;
    out.source = source;
    out.report = report;
    for (const Sample& s : samples)
      if (s.split == want) out.samples.push_back(s);
    return out;
  }
  // The split names present, in train, val, test order (then others).
  std::vector<std::string> splits() const {
    std::set<std::string> present;
    for (const Sample& s : samples) present.insert(s.split);
    std::vector<std::string> out;
    for (const char* k : {"train", "val", "test"})
      if (present.erase(k)) out.push_back(k);
    out.insert(out.end(), present.begin(), present.end());
    return out;
  }

  ClassCounts class_counts() const {
    ClassCounts c{};
    for (const Sample& s : samples) ++c[s.label];
    return c;
  }
  // Inverse-frequency weights normalised so a balanced set gets 1.0 each: w_c = N / (K · n_c) (scikit-learn's
  // "balanced"); a class with no samples gets 0.
  std::array<double, kNumClasses> class_weights() const {
    const ClassCounts c = class_counts();
    std::array<double, kNumClasses> w{};
    const double n = static_cast<double>(samples.size());
    for (int k = 0; k < kNumClasses; ++k) w[k] = c[k] > 0 ? n / (kNumClasses * static_cast<double>(c[k])) : 0.0;
    return w;
  }
  // The same weights as a float32 tensor of shape (4,), for a weighted cross-entropy.
  Tensor class_weight_tensor() const {
    const auto w = class_weights();
    return Tensor::from_vector(std::vector<float>(w.begin(), w.end()), {kNumClasses});
  }

  static Dataset from_folders(const std::string& root, const DatasetOptions& opt = {});
  static Dataset from_manifest(const std::string& manifest, const DatasetOptions& opt = {});
  // A manifest when one is given, or when root holds split.tsv / split.csv; class folders otherwise.
  static Dataset open(const std::string& root, const std::string& manifest = "", const DatasetOptions& opt = {});
};

// Gives an unsplit dataset train / val / test splits by class (stratified), with a seeded shuffle:
// fractions {0.7, 0.15, 0.15} → per class, the first round(0.7·n) go to train, the next round(0.15·n) to val,
// the rest to test. Samples that already have a split keep it.
inline Dataset stratified_split(const Dataset& ds, double train_fraction, double val_fraction, uint64_t seed) {
  RETIKD_CHECK(train_fraction >= 0 && val_fraction >= 0 && train_fraction + val_fraction <= 1.0,
               "stratified_split: fractions ", train_fraction, " + ", val_fraction, " must lie in [0, 1]");
  Dataset out = ds;
  for (int k = 0; k < kNumClasses; ++k) {
    std::vector<std::size_t> idx;
    for (std::size_t i = 0; i < out.samples.size(); ++i)
      if (out.samples[i].label == k && out.samples[i].split.empty()) idx.push_back(i);
    Generator g = Generator::derive(seed, 0x5e11'7000ULL + static_cast<uint64_t>(k));
    for (std::size_t i = idx.size(); i > 1; --i) std::swap(idx[i - 1], idx[g.below(i)]);
    const std::size_t n = idx.size();
    const std::size_t n_train = static_cast<std::size_t>(std::llround(train_fraction * n));
    const std::size_t n_val = std::min(n - n_train, static_cast<std::size_t>(std::llround(val_fraction * n)));
    for (std::size_t j = 0; j < n; ++j)
      out.samples[idx[j]].split = j < n_train ? "train" : (j < n_train + n_val ? "val" : "test");
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Class folders.

namespace detail {

inline bool is_hidden(const std::string& name) { return name.empty() || name[0] == '.'; }

// Adds root/<class>/… of one split; unknown folders become problems. Each class folder's walk is fenced
// with the data set's root, so no link in it pulls in another part of the data set.
inline void scan_class_folders(const std::string& dir, const std::string& split, std::vector<Sample>& out,
                               std::vector<Problem>& problems, int64_t* excluded, ClassCounts* excluded_counts,
                               const fs::WalkOptions& walk) {
  for (const fs::Entry& e : fs::list_dir(dir)) {
    if (is_hidden(e.name) || !e.is_dir) continue;
    const std::string folder = fs::join(dir, e.name);
    const int label = parse_class(e.name);
    std::vector<std::string> files;
    if (label < 0) {
      if (excluded) continue;  // excluded split: its folders are never looked into, known or not
      fs::list_files_recursive(folder, files, walk);
      problems.push_back({folder, ProblemKind::unknown_class,
                          str("unknown class folder '", e.name, "' (", files.size(), files.size() == 1 ? " file" : " files",
                              "; expected ", class_list_text(), ", in any case)")});
      continue;
    }
    fs::list_files_recursive(folder, files, walk);
    if (excluded) {
      *excluded += static_cast<int64_t>(files.size());
      (*excluded_counts)[label] += static_cast<int64_t>(files.size());
      continue;
    }
    for (std::string& f : files) out.push_back({std::move(f), label, split});
  }
}

// The same file (device, inode) listed more than once: see the top of this file. `where[i]` says where
// sample i was listed ("split.tsv line 7"; empty for folders).
inline void drop_same_file_listings(std::vector<Sample>& samples, const std::vector<std::string>& where,
                                    std::vector<Problem>& problems) {
  std::map<std::pair<uint64_t, uint64_t>, std::vector<std::size_t>> by_file;
  for (std::size_t i = 0; i < samples.size(); ++i) {
    uint64_t dev = 0, ino = 0;
    if (fs::file_identity(samples[i].path, dev, ino)) by_file[{dev, ino}].push_back(i);
  }
  std::vector<bool> drop(samples.size(), false);
  auto describe = [&](std::size_t i) {
    std::string d = samples[i].path + " (" + class_name(samples[i].label);
    if (!samples[i].split.empty()) d += ", " + samples[i].split;
    if (i < where.size() && !where[i].empty()) d += ", " + where[i];
    return d + ")";
  };
  for (const auto& kv : by_file) {
    const std::vector<std::size_t>& idx = kv.second;
    if (idx.size() < 2) continue;
    bool agree = true;
    for (std::size_t k : idx)
      agree = agree && samples[k].label == samples[idx[0]].label && samples[k].split == samples[idx[0]].split;
    std::string all;
    for (std::size_t k : idx) all += (all.empty() ? "" : "; ") + describe(k);
    const std::string times = idx.size() == 2 ? "twice" : str(idx.size(), " times");
    for (std::size_t j = agree ? 1 : 0; j < idx.size(); ++j) {
      drop[idx[j]] = true;
      // Each listing's own place first: listings of one file under one spelling are separate problems.
      const std::string at = idx[j] < where.size() && !where[idx[j]].empty() ? where[idx[j]] + ": " : "";
      problems.push_back({samples[idx[j]].path, ProblemKind::duplicate,
                          agree ? str(at, "the same file is listed ", times, ": ", all)
                                : str(at, "the same file is listed ", times, " with different classes or splits, so "
                                      "none of its labels can be trusted: ", all)});
    }
  }
  std::vector<Sample> kept;
  kept.reserve(samples.size());
  for (std::size_t i = 0; i < samples.size(); ++i)
    if (!drop[i]) kept.push_back(std::move(samples[i]));
  samples = std::move(kept);
}

inline uint64_t content_hash(const std::string& path, bool& ok) {
  ok = false;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) return 0;
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a: a warning's hash, confirmed byte by byte before reporting
  unsigned char buf[1 << 15];
  for (;;) {
    const std::size_t got = std::fread(buf, 1, sizeof buf, f.get());
    for (std::size_t i = 0; i < got; ++i) h = (h ^ buf[i]) * 0x100000001B3ULL;
    if (got < sizeof buf) break;
  }
  ok = !std::ferror(f.get());
  return h;
}

inline bool same_content(const std::string& a, const std::string& b) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> fa(std::fopen(a.c_str(), "rb"), &std::fclose);
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> fb(std::fopen(b.c_str(), "rb"), &std::fclose);
  if (!fa || !fb) return false;
  unsigned char x[1 << 15], y[1 << 15];
  for (;;) {
    const std::size_t n = std::fread(x, 1, sizeof x, fa.get()), m = std::fread(y, 1, sizeof y, fb.get());
    if (n != m || std::memcmp(x, y, n) != 0) return false;
    if (n < sizeof x) return !std::ferror(fa.get()) && !std::ferror(fb.get());
  }
}

// Identical content in samples of different splits or classes: one note per group of identical files.
inline void note_content_duplicates(const std::vector<Sample>& samples, DataReport& report) {
  std::map<int64_t, std::vector<std::size_t>> by_size;
  for (std::size_t i = 0; i < samples.size(); ++i) {
    uint64_t dev = 0, ino = 0;
    int64_t size = 0;
    if (fs::file_identity(samples[i].path, dev, ino, &size) && size > 0) by_size[size].push_back(i);
  }
  auto mixed = [&](const std::vector<std::size_t>& idx) {
    for (std::size_t k : idx)
      if (samples[k].label != samples[idx[0]].label || samples[k].split != samples[idx[0]].split) return true;
    return false;
  };
  for (const auto& kv : by_size) {
    if (kv.second.size() < 2 || !mixed(kv.second)) continue;
    std::map<uint64_t, std::vector<std::size_t>> by_hash;
    for (std::size_t i : kv.second) {
      bool ok = false;
      const uint64_t h = content_hash(samples[i].path, ok);
      if (ok) by_hash[h].push_back(i);
    }
    for (const auto& hv : by_hash) {
      std::vector<std::size_t> rest = hv.second;
      while (rest.size() >= 2) {  // split a hash bucket into groups of truly identical files
        std::vector<std::size_t> same{rest[0]}, other;
        for (std::size_t k = 1; k < rest.size(); ++k)
          (same_content(samples[rest[0]].path, samples[rest[k]].path) ? same : other).push_back(rest[k]);
        if (same.size() >= 2 && mixed(same)) {
          std::string list;
          bool splits_differ = false;
          for (std::size_t k : same) {
            list += (list.empty() ? "" : "; ") + samples[k].path + " (" + class_name(samples[k].label) +
                    (samples[k].split.empty() ? "" : ", " + samples[k].split) + ")";
            splits_differ = splits_differ || samples[k].split != samples[same[0]].split;
          }
          report.note(str("identical content in ", same.size(), " files: ", list,
                          splits_differ ? " — the same image in more than one split leaks evaluation data into "
                                          "training"
                                        : " — the same image under different classes"));
        }
        rest = std::move(other);
      }
    }
  }
}

}  // namespace detail

inline Dataset Dataset::from_folders(const std::string& root, const DatasetOptions& opt) {
  if (!fs::is_directory(root))
    throw_problem(root, ProblemKind::not_found, "dataset folder does not exist (or is not a folder)");
  Dataset ds;
  ds.root = root;
  ds.source = root;
  ds.report.set_sink(opt.warnings);
  std::vector<Problem> problems;
  std::vector<std::string> notes;
  fs::WalkOptions walk;
  walk.fence = root;
  walk.notes = [&](const std::string& line) { notes.push_back(line); };
  const std::vector<fs::Entry> top = fs::list_dir(root);
  bool split_layout = false;
  for (const fs::Entry& e : top)
    if (e.is_dir && !detail::is_hidden(e.name) && is_known_split(normalize_split(e.name))) split_layout = true;
  if (split_layout) {
    for (const fs::Entry& e : top) {
      if (!e.is_dir || detail::is_hidden(e.name)) continue;
      const std::string split = normalize_split(e.name);
      const std::string folder = fs::join(root, e.name);
      if (!is_known_split(split)) {
        problems.push_back({folder, ProblemKind::unknown_class,
                            str("unknown folder '", e.name, "' next to split folders (expected train, val, test "
                                "or excluded, each holding class folders)")});
        continue;
      }
      if (split == "excluded") {
        detail::scan_class_folders(folder, split, ds.samples, problems, &ds.excluded, &ds.excluded_counts, walk);
      } else {
        detail::scan_class_folders(folder, split, ds.samples, problems, nullptr, nullptr, walk);
      }
    }
  } else {
    detail::scan_class_folders(root, "", ds.samples, problems, nullptr, nullptr, walk);
  }
  for (const std::string& n : notes) ds.report.note(n);
  detail::drop_same_file_listings(ds.samples, {}, problems);
  apply_policy(opt.policy, root, std::move(problems), ds.report);
  if (opt.check_content_duplicates) detail::note_content_duplicates(ds.samples, ds.report);
  return ds;
}

// ---------------------------------------------------------------------------------------------------------
// Manifests.

namespace detail {

// One line of a manifest: tab-separated (no quoting), or comma-separated with RFC 4180 quotes ("a ""b""").
inline std::vector<std::string> split_manifest_line(const std::string& line, char delim) {
  std::vector<std::string> out;
  if (delim == '\t') {
    std::size_t start = 0;
    for (;;) {
      const std::size_t tab = line.find('\t', start);
      out.push_back(line.substr(start, tab == std::string::npos ? std::string::npos : tab - start));
      if (tab == std::string::npos) break;
      start = tab + 1;
    }
    return out;
  }
  std::string field;
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < line.size() && line[i + 1] == '"') {
          field += '"';
          ++i;
        } else {
          quoted = false;
        }
      } else {
        field += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == delim) {
      out.push_back(field);
      field.clear();
    } else {
      field += c;
    }
  }
  out.push_back(field);
  return out;
}

inline int find_column(const std::vector<std::string>& header, std::initializer_list<const char*> names) {
  for (const char* n : names)
    for (std::size_t i = 0; i < header.size(); ++i)
      if (to_lower_trimmed(header[i]) == n) return static_cast<int>(i);
  return -1;
}

inline std::string trim(const std::string& s) {
  std::size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r')) --e;
  return s.substr(b, e - b);
}

}  // namespace detail

inline Dataset Dataset::from_manifest(const std::string& manifest, const DatasetOptions& opt) {
  if (!fs::is_regular_file(manifest))
    throw_problem(manifest, ProblemKind::not_found, "manifest does not exist (or is not a file)");
  std::ifstream in(manifest, std::ios::binary);
  if (!in) throw_problem(manifest, ProblemKind::unreadable, "cannot open manifest");
  Dataset ds;
  ds.root = opt.root.empty() ? fs::dirname(manifest) : opt.root;
  ds.source = manifest;
  ds.report.set_sink(opt.warnings);
  const std::string ext = fs::extension_lower(manifest);
  const std::string root_real = fs::resolve(ds.root);
  if (root_real.empty() || !fs::is_directory(root_real))
    throw_problem(ds.root, ProblemKind::not_found, "the manifest's data root does not exist (or is not a folder)");
  const std::string outside_hint = "a manifest may only list files under its data root " + root_real +
                                   " (allow_outside_root / --allow-outside-root permits others)";

  std::string line;
  int64_t line_no = 0;
  std::vector<std::string> header;
  char delim = ext == ".csv" ? ',' : '\t';
  while (std::getline(in, line)) {
    ++line_no;
    if (line_no == 1 && line.size() >= 3 && static_cast<unsigned char>(line[0]) == 0xEF &&
        static_cast<unsigned char>(line[1]) == 0xBB && static_cast<unsigned char>(line[2]) == 0xBF)
      line = line.substr(3);  // UTF-8 byte-order mark
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (detail::trim(line).empty()) continue;
    if (ext != ".csv" && ext != ".tsv") delim = line.find('\t') != std::string::npos ? '\t' : ',';
    header = detail::split_manifest_line(line, delim);
    break;
  }
  if (header.empty()) throw_problem(manifest, ProblemKind::missing_column, "manifest is empty (no header row)");
  const int c_path = detail::find_column(header, {"path", "file", "filename", "image", "image_path"});
  const int c_label = detail::find_column(header, {"label", "class", "diagnosis"});
  const int c_split = detail::find_column(header, {"split"});
  {
    std::string missing;
    if (c_path < 0) missing += " path";
    if (c_label < 0) missing += " label";
    if (c_split < 0) missing += " split";
    if (!missing.empty()) {
      std::string found;
      for (const std::string& h : header) found += (found.empty() ? "" : ", ") + h;
      throw_problem(manifest, ProblemKind::missing_column,
                    str("manifest has no", missing, " column (header: ", found,
                        "; needs path, label and split, any order, extra columns ignored)"));
    }
  }
  const std::size_t needed = static_cast<std::size_t>(std::max(c_path, std::max(c_label, c_split))) + 1;
  const std::string mname = fs::basename(manifest);

  std::vector<Problem> problems;
  std::vector<std::string> where_listed;  // per sample, for the duplicate check
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (detail::trim(line).empty()) continue;
    const std::vector<std::string> f = detail::split_manifest_line(line, delim);
    const std::string where = str(mname, " line ", line_no);
    if (f.size() < needed) {
      problems.push_back({str(manifest, ":", line_no), ProblemKind::bad_row,
                          str("row has ", f.size(), " fields, the header needs ", needed)});
      continue;
    }
    const std::string rel = detail::trim(f[c_path]);
    const std::string split = normalize_split(f[c_split]);
    if (rel.empty()) {
      problems.push_back({str(manifest, ":", line_no), ProblemKind::bad_row, "row has an empty path"});
      continue;
    }
    if (rel.find('\0') != std::string::npos) {  // the system would see only the part before it
      problems.push_back({str(manifest, ":", line_no), ProblemKind::bad_row, "the path holds a NUL byte"});
      continue;
    }
    // The row's path, lexically normalised ("a/./b//c" → "a/b/c"); one that climbs out of the root
    // ("../x") or is absolute is confined below unless outside paths are allowed.
    std::string normal;
    const bool relative_inside = fs::normalize_relative(rel, normal);
    const std::string path = relative_inside ? fs::join(ds.root, normal) : fs::join(ds.root, rel);
    const int label = parse_class(f[c_label], /*allow_index=*/true);
    if (split == "excluded") {  // never loaded: not even checked
      ++ds.excluded;
      if (label >= 0) ++ds.excluded_counts[label];
      continue;
    }
    if (!is_known_split(split)) {
      problems.push_back({path, ProblemKind::bad_row,
                          str("unknown split '", detail::trim(f[c_split]), "' (", where,
                              "; expected train, val, test or excluded)")});
      continue;
    }
    if (label < 0) {
      problems.push_back({path, ProblemKind::unknown_label,
                          str("unknown label '", detail::trim(f[c_label]), "' (", where, "; expected ",
                              class_list_text(), ", any case, or 0-3)")});
      continue;
    }
    if (!opt.allow_outside_root && !relative_inside && rel[0] != '/') {  // never touches the file
      problems.push_back({path, ProblemKind::outside_root, str("the path climbs out of the data root (", where, "); ",
                                                               outside_hint)});
      continue;
    }
    if (!fs::is_regular_file(path)) {
      problems.push_back({path, ProblemKind::missing_file,
                          str("file listed in the manifest does not exist, or is not a regular file (", where, ")")});
      continue;
    }
    if (!opt.allow_outside_root) {
      const std::string real = fs::resolve(path);
      if (!fs::is_within(real, root_real)) {
        problems.push_back({path, ProblemKind::outside_root,
                            str("the path resolves to ", real, ", outside the data root (", where, "); ",
                                outside_hint)});
        continue;
      }
    }
    ds.samples.push_back({path, label, split});
    where_listed.push_back(where);
  }
  detail::drop_same_file_listings(ds.samples, where_listed, problems);
  apply_policy(opt.policy, manifest, std::move(problems), ds.report);
  if (opt.check_content_duplicates) detail::note_content_duplicates(ds.samples, ds.report);
  return ds;
}

inline Dataset Dataset::open(const std::string& root, const std::string& manifest, const DatasetOptions& opt) {
  if (!manifest.empty()) {
    std::string m = manifest;
    if (!fs::exists(m) && !root.empty() && fs::exists(fs::join(root, manifest))) m = fs::join(root, manifest);
    DatasetOptions o = opt;
    if (o.root.empty() && !root.empty()) o.root = root;
    return from_manifest(m, o);
  }
  for (const char* name : {"split.tsv", "split.csv"}) {
    const std::string m = fs::join(root, name);
    if (fs::is_regular_file(m)) {
      DatasetOptions o = opt;
      if (o.root.empty()) o.root = root;
      return from_manifest(m, o);
    }
  }
  return from_folders(root, opt);
}

}  // namespace data
}  // namespace retikd
