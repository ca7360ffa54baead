// tests/fuzz/fuzz_manifest.cpp — fuzzes the manifest reader (data/dataset.hpp): header detection, TSV and CSV
// quoting, labels and splits, path confinement and duplicate detection. The bytes become split.tsv and then
// split.csv in a small data root made once per process (a few tiny PNGs, two identical, a nested folder, a
// link to a folder outside the root and a link to a file inside it). Promises checked for every accepted
// sample: it is a regular file that resolves inside the root, no file is listed twice, and its label and
// split are valid.
#include "fuzz_target.hpp"

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>
#include <utility>

#include <retikd/data/dataset.hpp>
#include <retikd/data/png_write.hpp>

namespace fuzz_manifest {

class DataRoot {
 public:
  DataRoot() {
    // In memory where possible: rewriting split.tsv a million times costs ~3 ms each on ext4 (a truncated
    // file is flushed on close), ~10 µs on tmpfs.
    std::string tmpl = retikd::data::fs::is_directory("/dev/shm") ? "/dev/shm/retikd-fuzz-manifest-XXXXXX"
                                                                  : "/tmp/retikd-fuzz-manifest-XXXXXX";
    RETIKD_CHECK(::mkdtemp(&tmpl[0]) != nullptr, "fuzz: mkdtemp failed");
    root_ = tmpl;
    retikd::data::ImageU8 img(2, 2);
    for (std::size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>(i * 40);
    mkdir("images");
    mkdir("images/sub");
    retikd::data::write_png(root_ + "/images/a.png", img);
    retikd::data::write_png(root_ + "/images/b.png", img);  // the same bytes as a.png
    img.pixels[0] = 1;
    retikd::data::write_png(root_ + "/images/sub/c.png", img);
    link("/etc", "images/etc");          // a folder outside the root
    link("sub/c.png", "images/alias.png");  // a second name for c.png, inside the root
    real_ = retikd::data::fs::resolve(root_);
  }
  ~DataRoot() {
    for (const char* f : {"images/a.png", "images/b.png", "images/sub/c.png", "images/etc", "images/alias.png",
                          "split.tsv", "split.csv"})
      ::unlink((root_ + "/" + f).c_str());
    ::rmdir((root_ + "/images/sub").c_str());
    ::rmdir((root_ + "/images").c_str());
    ::rmdir(root_.c_str());
  }
  const std::string& path() const { return root_; }
  const std::string& real() const { return real_; }

 private:
  void mkdir(const char* rel) { ::mkdir((root_ + "/" + rel).c_str(), 0755); }
  void link(const char* target, const char* rel) {
    if (::symlink(target, (root_ + "/" + rel).c_str()) != 0) std::perror("fuzz: symlink");
  }
  std::string root_, real_;
};

inline const DataRoot& root() {
  static DataRoot r;
  return r;
}

inline void check(const retikd::data::Dataset& ds) {
  using namespace retikd::data;
  std::set<std::pair<uint64_t, uint64_t>> files;
  for (const Sample& s : ds.samples) {
    FUZZ_REQUIRE(s.path.find('\0') == std::string::npos);  // the system would open only a prefix of it
    FUZZ_REQUIRE(fs::is_regular_file(s.path));
    FUZZ_REQUIRE(fs::is_within(fs::resolve(s.path), root().real()));
    uint64_t dev = 0, ino = 0;
    FUZZ_REQUIRE(fs::file_identity(s.path, dev, ino));
    FUZZ_REQUIRE(files.insert({dev, ino}).second);
    FUZZ_REQUIRE(s.label >= 0 && s.label < kNumClasses);
    FUZZ_REQUIRE(s.split == "train" || s.split == "val" || s.split == "test");
  }
}

inline void run(const std::string& manifest, const uint8_t* data, std::size_t size) {
  using namespace retikd::data;
  {
    std::FILE* f = std::fopen(manifest.c_str(), "wb");
    RETIKD_CHECK(f != nullptr, "fuzz: cannot write ", manifest);
    if (size) std::fwrite(data, 1, size, f);
    std::fclose(f);
  }
  for (BadInput policy : {BadInput::skip, BadInput::error}) {
    DatasetOptions opt;
    opt.policy = policy;
    opt.warnings = nullptr;
    try {
      check(Dataset::from_manifest(manifest, opt));
    } catch (const retikd::Error&) {
    }
  }
}

}  // namespace fuzz_manifest

RETIKD_FUZZ_TARGET(manifest)(const uint8_t* data, std::size_t size) {
  const std::string& root = fuzz_manifest::root().path();
  fuzz_manifest::run(root + "/split.tsv", data, size);
  fuzz_manifest::run(root + "/split.csv", data, size);
  return 0;
}
