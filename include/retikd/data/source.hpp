// retikd/data/source.hpp — what a loader reads: images by index, each with a label and a name.
//
// FileSource serves a Dataset's files (decoded on demand); SyntheticSource draws synthetic fundus images from
// (seed, index). The loader needs nothing else, so a new kind of data is one small class.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "retikd/data/dataset.hpp"
#include "retikd/data/decode.hpp"
#include "retikd/data/fs.hpp"
#include "retikd/data/synthetic.hpp"

namespace retikd {
namespace data {

class ImageSource {
 public:
  virtual ~ImageSource() = default;
  virtual int64_t size() const = 0;
  virtual int label(int64_t i) const = 0;
  // For messages: the file's path.
  virtual std::string name(int64_t i) const = 0;
  // Decodes item i; throws DataError naming it when it is bad.
  virtual ImageU8 load(int64_t i, ImageInfo* info = nullptr) const = 0;
  // Changes whenever item i's content may have changed (file size and time); part of the binary cache key.
  virtual std::string fingerprint(int64_t i) const = 0;
  // What the source is, for cache keys and messages.
  virtual std::string describe() const = 0;
  // Where a binary cache file may be kept by default ("" for nowhere).
  virtual std::string default_cache_dir() const { return ""; }
  // Problems already met before decoding (skipped manifest rows, unknown folders), or nullptr.
  virtual const DataReport* scan_report() const { return nullptr; }
};

class FileSource : public ImageSource {
 public:
  explicit FileSource(Dataset ds) : ds_(std::move(ds)) {}
  int64_t size() const override { return ds_.size(); }
  int label(int64_t i) const override { return ds_.samples[static_cast<std::size_t>(i)].label; }
  std::string name(int64_t i) const override { return ds_.samples[static_cast<std::size_t>(i)].path; }
  ImageU8 load(int64_t i, ImageInfo* info) const override { return load_image(name(i), info); }
  std::string fingerprint(int64_t i) const override {
    int64_t size = 0, mtime = 0;
    if (!fs::file_stamp(name(i), size, mtime)) return "missing";
    return str(size, ":", mtime);
  }
  std::string describe() const override {
    std::string splits;
    for (const std::string& s : ds_.splits()) splits += (splits.empty() ? "" : "+") + (s.empty() ? "all" : s);
    return str("files:", ds_.source, ":", splits);
  }
  std::string default_cache_dir() const override { return fs::join(ds_.root, ".retikd_cache"); }
  const DataReport* scan_report() const override { return &ds_.report; }
  const Dataset& dataset() const { return ds_; }

 private:
  Dataset ds_;
};

class SyntheticSource : public ImageSource {
 public:
  // `count` images; item i is synthetic_fundus(seed, first + i) with label synthetic_label(first + i), so
  // disjoint [first, first + count) ranges give disjoint train / test sets of one seed.
  SyntheticSource(int64_t count, uint64_t seed, SyntheticOptions opt = {}, int64_t first = 0)
      : count_(count), seed_(seed), first_(first), opt_(opt) {
    RETIKD_CHECK(count >= 0, "SyntheticSource: negative count ", count);
  }
  int64_t size() const override { return count_; }
  int label(int64_t i) const override { return synthetic_label(first_ + i); }
  std::string name(int64_t i) const override { return str("synthetic:", seed_, ":", first_ + i); }
  ImageU8 load(int64_t i, ImageInfo* info) const override {
    ImageU8 img = synthetic_fundus(seed_, first_ + i, opt_);
    if (info) *info = ImageInfo{ImageFormat::unknown, img.width, img.height, 3, 8};
    return img;
  }
  std::string fingerprint(int64_t) const override { return "synthetic"; }
  std::string describe() const override {
    return str("synthetic:seed=", seed_, ":first=", first_, ":count=", count_, ":size=", opt_.size,
               ":decorrelate=", opt_.decorrelate_colour, ":noise=", opt_.noise);
  }

 private:
  int64_t count_;
  uint64_t seed_;
  int64_t first_;
  SyntheticOptions opt_;
};

}  // namespace data
}  // namespace retikd
