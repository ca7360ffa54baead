// retikd/data/loader.hpp — batches for training: worker threads, a bounded prefetch queue, a decoded-image
// cache, and batches that depend only on the seed.
//
// Life of a Loader:
//  1. prepare() (called by the first start_epoch): every image is decoded once, across the worker threads,
//     and passed through the deterministic `preprocess` transform (e.g. FundusCrop + Resize(256)). Bad files
//     are found here, before training starts: under BadInput::error one DataError lists them all; under
//     BadInput::skip each is warned about once, counted in report(), and left out. With `cache` the 8-bit
//     results stay in memory, so later epochs decode nothing; with `cache_file` they are also written to a
//     binary file (by default <data root>/.retikd_cache/<tag>.bin) that the next run reads instead of decoding,
//     as long as the key — source, pre-processing, and every file's size and time — still matches.
//  2. start_epoch(e) fixes the order (a seeded shuffle of (seed, e), or the source order), and the workers
//     start building batches ahead of the consumer, at most `prefetch` batches at a time.
//  3. next(batch) returns the batches in order. Sample i of epoch e is transformed with
//     Generator::derive(seed, e, i), so the batches are identical whatever the number of workers (0 builds them
//     on the calling thread) and whatever order the workers finish in.
//
// Batches are NCHW float32 tensors (images) with int64 labels, or uint8 NCHW (`output_uint8`: ByteBatch, for a
// GPU-side normalisation). Every image of a batch must come out of the transforms at the same size.
//
// Shards (data-parallel training, dist/): with num_shards = P each rank's Loader gives only its part, chosen
// from the seed and the epoch, never from the rank's timing:
//  - ShardMode::train: a permutation of the source's items drawn from the seed alone is dealt round-robin, so
//    an item belongs to the same shard in every epoch (each rank's teacher cache holds only its shard); each
//    epoch the shard's usable items are shuffled by (seed, epoch, shard) and cut to the smallest shard's
//    usable count (⌊n / P⌋ without bad files), so every rank has the same number of batches of the same sizes
//    (a larger shard leaves out a different item each epoch). The global batch of step k is the union of the
//    ranks' k-th batches;
//  - ShardMode::cover (no shuffle): contiguous blocks of the source order, every usable item exactly once
//    (evaluation: the rows are gathered back by Batch::position, the item's place among all usable items —
//    dist::RowCollector).
// Every rank still checks every file in prepare() (so all ranks agree on the bad ones), but keeps only its
// shard's images in memory, and with a cache file writes its own (<name>.shard<r>of<P>.bin).
#pragma once

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "retikd/core/random.hpp"
#include "retikd/core/tensor.hpp"
#include "retikd/data/image.hpp"
#include "retikd/data/problems.hpp"
#include "retikd/data/progress.hpp"
#include "retikd/data/source.hpp"
#include "retikd/data/transforms.hpp"

namespace retikd {
namespace data {

// More worker threads than this is a typo (each holds a batch in flight), not a configuration.
constexpr int kMaxLoaderWorkers = 256;
enum class ShardMode {
  train,  // fixed sample ownership, equal counts per epoch
  cover,  // contiguous blocks, every sample once
};

struct LoaderOptions {
  int64_t batch_size = 32;
  int num_workers = 2;         // 0: batches are built on the thread that calls next()
  int64_t prefetch = 4;        // batches built ahead of the consumer (the bound of the queue)
  bool shuffle = true;
  bool drop_last = false;
  uint64_t seed = 0;
  TransformPtr preprocess;     // deterministic; its 8-bit output is what the cache holds
  TransformPtr transform;      // per sample and epoch, seeded by (seed, epoch, index)
  bool cache = true;           // keep pre-processed images in memory after the first pass
  std::string cache_file;      // "": none; "auto": next to the data; else this path
  BadInput policy = BadInput::error;
  WarningSink warnings = stderr_warnings();
  bool progress = false;       // progress bar for the decode pass and for each epoch (stderr)
  bool output_uint8 = false;   // Batch::bytes (uint8) instead of Batch::images (float32)
  int num_shards = 1;          // > 1: this loader yields shard `shard` only (see the top of this file)
  int shard = 0;
  ShardMode shard_mode = ShardMode::train;
};

struct Batch {
  Tensor images;                 // (N, 3, H, W) float32
  ByteBatch bytes;               // (N, 3, H, W) uint8, with output_uint8
  Tensor labels;                 // (N,) int64
  std::vector<int64_t> indices;  // source indices
  int64_t epoch = -1;
  int64_t number = -1;           // position in the epoch
  int64_t position = -1;         // epoch-order position of the first sample over all shards (ShardMode::cover)
  int64_t size() const { return static_cast<int64_t>(indices.size()); }
};

namespace detail {

inline uint64_t fnv1a(uint64_t h, const std::string& s) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001B3ULL;
  }
  h ^= 0xFF;  // separator
  h *= 0x100000001B3ULL;
  return h;
}

inline std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

constexpr char kCacheMagic[8] = {'R', 'K', 'D', 'C', 'A', 'C', 'H', '1'};

}  // namespace detail

class Loader {
 public:
  Loader(std::shared_ptr<const ImageSource> source, LoaderOptions opt)
      : source_(std::move(source)), opt_(std::move(opt)), report_(opt_.warnings) {
    RETIKD_CHECK(source_ != nullptr, "Loader: null source");
    RETIKD_CHECK(opt_.batch_size > 0, "Loader: batch_size ", opt_.batch_size, " must be positive");
    RETIKD_CHECK(opt_.num_workers >= 0 && opt_.num_workers <= kMaxLoaderWorkers, "Loader: num_workers ",
                 opt_.num_workers, " is not in [0, ", kMaxLoaderWorkers, "]");
    RETIKD_CHECK(opt_.prefetch >= 1, "Loader: prefetch ", opt_.prefetch, " must be >= 1");
    RETIKD_CHECK(opt_.num_shards >= 1 && opt_.shard >= 0 && opt_.shard < opt_.num_shards, "Loader: shard ",
                 opt_.shard, " of ", opt_.num_shards, " is not a valid shard");
    RETIKD_CHECK(!opt_.preprocess || !opt_.preprocess->is_random(), "Loader: preprocess ",
                 opt_.preprocess->describe(), " is random; random transforms belong in `transform` (the "
                 "pre-processed images are cached)");
    if (const DataReport* r = source_->scan_report()) report_.absorb(*r);
  }
  Loader(const Dataset& ds, LoaderOptions opt) : Loader(std::make_shared<FileSource>(ds), std::move(opt)) {}
  ~Loader() { stop_workers(); }
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // Decodes (or reads from the cache file) and checks every image; idempotent.
  void prepare() {
    if (prepared_) return;
    const int64_t n = source_->size();
    compute_shard_items(n);
    cached_.assign(opt_.cache ? static_cast<std::size_t>(n) : 0, ImageU8());
    std::vector<Problem> problems;
    const std::string cache_path = resolve_cache_path();
    bool from_file = !cache_path.empty() && read_cache_file(cache_path, problems);
    if (!from_file) {
      problems.clear();
      decode_all(problems);
      if (!cache_path.empty()) write_cache_file(cache_path, problems);
    }
    std::vector<bool> bad(static_cast<std::size_t>(n), false);
    for (const Problem& p : problems) bad[static_cast<std::size_t>(bad_index_.at(p.path))] = true;
    apply_policy(opt_.policy, source_->describe(), problems, report_);
    usable_.clear();
    for (int64_t i = 0; i < n; ++i)
      if (!bad[static_cast<std::size_t>(i)]) usable_.push_back(i);
    settle_shards(bad);
    loaded_from_file_ = from_file;
    prepared_ = true;
  }

  // Usable samples (after skipping bad ones; prepares) — of all shards.
  int64_t size() {
    prepare();
    return static_cast<int64_t>(usable_.size());
  }
  // Samples this loader yields per epoch (size() without shards).
  int64_t shard_size() {
    prepare();
    return opt_.num_shards == 1 ? static_cast<int64_t>(usable_.size()) : shard_count_;
  }
  // Decoded images held in memory (with shards: this shard's only).
  int64_t images_in_memory() const {
    int64_t k = 0;
    for (const ImageU8& img : cached_) k += img.pixels.empty() ? 0 : 1;
    return k;
  }
  int64_t num_batches() {
    const int64_t n = shard_size();
    // n / b rounded up without forming n + b − 1, which overflows for a batch size near INT64_MAX.
    return opt_.drop_last ? n / opt_.batch_size : n / opt_.batch_size + (n % opt_.batch_size != 0);
  }
  const DataReport& report() const { return report_; }
  const LoaderOptions& options() const { return opt_; }
  const ImageSource& source() const { return *source_; }
  bool loaded_from_cache_file() const { return loaded_from_file_; }
  const std::string& cache_path() const { return cache_path_; }
  // Labels of the usable samples, in source order (for class counts and weights).
  std::vector<int> labels() {
    prepare();
    std::vector<int> out;
    for (int64_t i : usable_) out.push_back(source_->label(i));
    return out;
  }

  // Starts epoch `epoch` (abandoning whatever is left of the previous one).
  void start_epoch(int64_t epoch) {
    prepare();
    auto plan = std::make_shared<Plan>();
    plan->epoch = epoch;
    plan->order = opt_.num_shards > 1 ? shard_usable_ : usable_;
    if (opt_.num_shards > 1 && opt_.shard_mode == ShardMode::train) {
      if (opt_.shuffle) {
        Generator g = Generator::derive(opt_.seed ^ 0x5348415244ULL, static_cast<uint64_t>(epoch),
                                        static_cast<uint64_t>(opt_.shard));
        for (std::size_t i = plan->order.size(); i > 1; --i) std::swap(plan->order[i - 1], plan->order[g.below(i)]);
      }
      plan->order.resize(static_cast<std::size_t>(shard_count_));
    } else if (opt_.num_shards > 1) {  // cover: the block, in source order
      plan->first_position = first_position_;
    } else if (opt_.shuffle) {
      Generator g = Generator::derive(opt_.seed ^ 0x9E3779B97F4A7C15ULL, static_cast<uint64_t>(epoch), 0x5u);
      for (std::size_t i = plan->order.size(); i > 1; --i) std::swap(plan->order[i - 1], plan->order[g.below(i)]);
    }
    plan->batches = num_batches();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      plan_ = plan;
      ++generation_;
      next_claim_ = 0;
      consumed_ = 0;
      ready_.clear();
    }
    if (opt_.progress) {
      bar_.reset();
      bar_.reset(new ProgressBar(str("epoch ", epoch), plan->batches, "batch"));
    }
    start_workers();
    work_cv_.notify_all();
  }

  // The next batch of the current epoch; false when the epoch is over. Rethrows a worker's exception.
  bool next(Batch& out) {
    std::shared_ptr<const Plan> plan;
    int64_t k;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      RETIKD_CHECK(plan_ != nullptr, "Loader::next: call start_epoch first");
      if (consumed_ >= plan_->batches) {
        if (bar_) bar_->finish();
        return false;
      }
      k = consumed_;
      plan = plan_;
      if (opt_.num_workers > 0) {
        ready_cv_.wait(lock, [&] { return ready_.count(k) > 0; });
        Slot slot = std::move(ready_[k]);
        ready_.erase(k);
        ++consumed_;
        lock.unlock();
        work_cv_.notify_all();
        if (slot.error) std::rethrow_exception(slot.error);
        out = std::move(slot.batch);
        if (bar_) bar_->add();
        return true;
      }
      ++consumed_;
    }
    out = build(*plan, k);
    if (bar_) bar_->add();
    return true;
  }

 private:
  struct Plan {
    int64_t epoch = 0;
    std::vector<int64_t> order;
    int64_t batches = 0;
    int64_t first_position = 0;  // of order[0] in the epoch order over all shards
  };

  // Shard `q`'s items among the source's n, before any file is read (so a rank knows which images to keep
  // while decoding): ShardMode::train deals a permutation of the seed alone round-robin, ShardMode::cover
  // cuts the source order into P contiguous blocks. Sorted.
  std::vector<int64_t> items_of_shard(int q, int64_t n) const {
    std::vector<int64_t> mine;
    const int64_t p = opt_.num_shards;
    if (opt_.shard_mode == ShardMode::cover) {
      for (int64_t i = q * n / p; i < (q + 1) * n / p; ++i) mine.push_back(i);
      return mine;
    }
    std::vector<int64_t> perm(static_cast<std::size_t>(n));
    for (int64_t i = 0; i < n; ++i) perm[static_cast<std::size_t>(i)] = i;
    Generator g = Generator::derive(opt_.seed ^ 0x4F574E4552ULL, 0, 0);
    for (std::size_t i = perm.size(); i > 1; --i) std::swap(perm[i - 1], perm[g.below(i)]);
    for (std::size_t i = static_cast<std::size_t>(q); i < perm.size(); i += static_cast<std::size_t>(p))
      mine.push_back(perm[i]);
    std::sort(mine.begin(), mine.end());
    return mine;
  }

  void compute_shard_items(int64_t n) {
    keep_.assign(static_cast<std::size_t>(n), opt_.num_shards == 1);
    if (opt_.num_shards == 1) return;
    RETIKD_CHECK(opt_.shard_mode == ShardMode::train || !opt_.shuffle, "Loader: ShardMode::cover keeps the source "
                 "order (evaluation); set shuffle = false");
    for (int64_t i : items_of_shard(opt_.shard, n)) keep_[static_cast<std::size_t>(i)] = true;
  }

  // After the bad files are known (the same on every rank): this shard's usable items, the per-epoch count
  // every rank can fill, and (cover) the place of the block's first item among all usable items.
  void settle_shards(const std::vector<bool>& bad) {
    if (opt_.num_shards == 1) return;
    const int64_t n = static_cast<int64_t>(bad.size());
    auto usable_of = [&](int q) {
      std::vector<int64_t> u;
      for (int64_t i : items_of_shard(q, n))
        if (!bad[static_cast<std::size_t>(i)]) u.push_back(i);
      return u;
    };
    shard_usable_ = usable_of(opt_.shard);
    if (opt_.shard_mode == ShardMode::cover) {
      shard_count_ = static_cast<int64_t>(shard_usable_.size());
      first_position_ = 0;
      const int64_t begin = opt_.shard * n / opt_.num_shards;
      for (int64_t i = 0; i < begin; ++i) first_position_ += bad[static_cast<std::size_t>(i)] ? 0 : 1;
      return;
    }
    shard_count_ = static_cast<int64_t>(shard_usable_.size());
    for (int q = 0; q < opt_.num_shards; ++q) shard_count_ = std::min<int64_t>(shard_count_, usable_of(q).size());
  }
  struct Slot {
    Batch batch;
    std::exception_ptr error;
  };

  std::string resolve_cache_path() {
    cache_path_.clear();
    if (opt_.cache_file.empty()) return "";
    if (opt_.cache_file != "auto") return cache_path_ = shard_file_name(opt_.cache_file);
    const std::string dir = source_->default_cache_dir();
    if (dir.empty()) return "";
    if (!fs::make_dirs(dir)) {
      if (opt_.warnings) opt_.warnings(str("cannot create cache folder ", dir, " (", std::strerror(errno),
                                           "); continuing without a cache file"));
      return "";
    }
    const uint64_t tag = detail::fnv1a(detail::fnv1a(0xcbf29ce484222325ULL, source_->describe()),
                                       opt_.preprocess ? opt_.preprocess->describe() : "none");
    return cache_path_ = shard_file_name(fs::join(dir, "cache-" + detail::hex64(tag) + ".bin"));
  }

  // With shards each rank writes its own cache file (it holds only its shard's images): x.bin → x.shard1of4.bin.
  std::string shard_file_name(const std::string& path) const {
    if (opt_.num_shards == 1) return path;
    const std::string tag = ".shard" + std::to_string(opt_.shard) + "of" + std::to_string(opt_.num_shards) +
                            (opt_.shard_mode == ShardMode::cover ? "c" : "");
    const std::size_t dot = path.rfind('.'), slash = path.rfind('/');
    if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return path + tag;
    return path.substr(0, dot) + tag + path.substr(dot);
  }

  uint64_t cache_key() const {
    uint64_t h = detail::fnv1a(0xcbf29ce484222325ULL, "retikd-cache-v1");
    h = detail::fnv1a(h, source_->describe());
    h = detail::fnv1a(h, opt_.preprocess ? opt_.preprocess->describe() : "none");
    const int64_t n = source_->size();
    h = detail::fnv1a(h, std::to_string(n));
    if (opt_.num_shards > 1)  // which images the file holds
      h = detail::fnv1a(h, str("shard ", opt_.shard, "/", opt_.num_shards, " mode ", static_cast<int>(opt_.shard_mode),
                               " seed ", opt_.seed));
    for (int64_t i = 0; i < n; ++i) {
      h = detail::fnv1a(h, source_->name(i));
      h = detail::fnv1a(h, source_->fingerprint(i));
    }
    return h;
  }

  ImageU8 load_preprocessed(int64_t i) const {
    ImageU8 img = source_->load(i);
    if (!opt_.preprocess) return img;
    Generator unused(0);
    Image f = to_float(img);
    opt_.preprocess->apply(f, unused);
    RETIKD_CHECK(f.channels == 3 && !f.empty(), source_->name(i), ": preprocess ", opt_.preprocess->describe(),
                 " produced a ", f.channels, "x", f.height, "x", f.width, " image");
    return to_u8(f);
  }

  // Decodes every item across max(1, num_workers) threads.
  void decode_all(std::vector<Problem>& problems) {
    const int64_t n = source_->size();
    std::unique_ptr<ProgressBar> bar;
    if (opt_.progress) bar.reset(new ProgressBar("decode", n));
    std::atomic<int64_t> next{0};
    std::mutex pm;
    std::vector<std::exception_ptr> errors;
    auto work = [&] {
      for (;;) {
        const int64_t i = next.fetch_add(1);
        if (i >= n) return;
        try {
          ImageU8 img = load_preprocessed(i);
          if (opt_.cache && keep_[static_cast<std::size_t>(i)]) cached_[static_cast<std::size_t>(i)] = std::move(img);
        } catch (const DataError& e) {
          std::lock_guard<std::mutex> lock(pm);
          for (Problem p : e.problems()) {
            p.path = source_->name(i);
            problems.push_back(p);
          }
        } catch (...) {
          std::lock_guard<std::mutex> lock(pm);
          errors.push_back(std::current_exception());
        }
        if (bar) bar->add();
      }
    };
    const int threads = std::max(1, std::min<int>(opt_.num_workers, static_cast<int>(std::max<int64_t>(n, 1))));
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
    if (bar) bar->finish();
    if (!errors.empty()) std::rethrow_exception(errors.front());
    // Problems in source order, whatever order the threads met them.
    index_problems(problems);
  }

  void index_problems(std::vector<Problem>& problems) {
    bad_index_.clear();
    std::map<std::string, int64_t> by_name;
    for (int64_t i = 0; i < source_->size(); ++i) by_name.emplace(source_->name(i), i);
    for (const Problem& p : problems) bad_index_[p.path] = by_name.at(p.path);
    std::sort(problems.begin(), problems.end(),
              [&](const Problem& a, const Problem& b) { return bad_index_[a.path] < bad_index_[b.path]; });
  }

  void write_cache_file(const std::string& path, const std::vector<Problem>& problems) {
    if (!opt_.cache) return;  // nothing kept in memory to write
    const int64_t n = source_->size();
    std::map<int64_t, const Problem*> bad;
    for (const Problem& p : problems) bad[bad_index_.at(p.path)] = &p;
    const std::string tmp = path + ".tmp" + std::to_string(static_cast<long>(::getpid()));
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    auto warn = [&](const std::string& why) {
      if (opt_.warnings) opt_.warnings(str("cannot write cache file ", path, " (", why, "); continuing without it"));
    };
    if (!f) return warn(std::strerror(errno));
    bool ok = std::fwrite(detail::kCacheMagic, 1, 8, f) == 8;
    auto put64 = [&](uint64_t v) { ok = ok && std::fwrite(&v, sizeof v, 1, f) == 1; };
    auto put32 = [&](uint32_t v) { ok = ok && std::fwrite(&v, sizeof v, 1, f) == 1; };
    put64(cache_key());
    put64(static_cast<uint64_t>(n));
    for (int64_t i = 0; i < n && ok; ++i) {
      auto it = bad.find(i);
      if (it != bad.end()) {
        const uint8_t status = 1, kind = static_cast<uint8_t>(it->second->kind);
        ok = ok && std::fwrite(&status, 1, 1, f) == 1 && std::fwrite(&kind, 1, 1, f) == 1;
        put32(static_cast<uint32_t>(it->second->message.size()));
        ok = ok && std::fwrite(it->second->message.data(), 1, it->second->message.size(), f) ==
                       it->second->message.size();
      } else if (!keep_[static_cast<std::size_t>(i)]) {
        const uint8_t status = 2;  // good, but another shard's image: not in this file
        ok = ok && std::fwrite(&status, 1, 1, f) == 1;
      } else {
        const ImageU8& img = cached_[static_cast<std::size_t>(i)];
        const uint8_t status = 0;
        ok = ok && std::fwrite(&status, 1, 1, f) == 1;
        put32(static_cast<uint32_t>(img.width));
        put32(static_cast<uint32_t>(img.height));
        ok = ok && std::fwrite(img.pixels.data(), 1, img.pixels.size(), f) == img.pixels.size();
      }
    }
    const bool closed = std::fclose(f) == 0;
    if (!ok || !closed || std::rename(tmp.c_str(), path.c_str()) != 0) {
      const std::string why = std::strerror(errno);
      std::remove(tmp.c_str());
      warn(why);
    }
  }

  // True when `path` held a cache with the current key; fills the memory cache and `problems`.
  bool read_cache_file(const std::string& path, std::vector<Problem>& problems) {
    if (!opt_.cache || !fs::is_regular_file(path)) return false;
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
    if (!f) return false;
    auto stale = [&](const std::string& why) {
      if (opt_.warnings) opt_.warnings(str("cache file ", path, " ", why, "; decoding again"));
      for (ImageU8& img : cached_) img = ImageU8();
      problems.clear();
      return false;
    };
    char magic[8];
    uint64_t key = 0, count = 0;
    if (std::fread(magic, 1, 8, f.get()) != 8 || std::memcmp(magic, detail::kCacheMagic, 8) != 0)
      return stale("is not a retikd cache");
    if (std::fread(&key, sizeof key, 1, f.get()) != 1 || std::fread(&count, sizeof count, 1, f.get()) != 1)
      return stale("is truncated");
    const int64_t n = source_->size();
    if (key != cache_key() || count != static_cast<uint64_t>(n))
      return stale("is out of date (files or pre-processing changed)");
    for (int64_t i = 0; i < n; ++i) {
      uint8_t status = 0;
      if (std::fread(&status, 1, 1, f.get()) != 1) return stale("is truncated");
      if (status == 1) {
        uint8_t kind = 0;
        uint32_t len = 0;
        if (std::fread(&kind, 1, 1, f.get()) != 1 || std::fread(&len, sizeof len, 1, f.get()) != 1 || len > 65536 ||
            kind >= kNumProblemKinds)
          return stale("is corrupt");
        std::string msg(len, '\0');
        if (len && std::fread(&msg[0], 1, len, f.get()) != len) return stale("is truncated");
        problems.push_back({source_->name(i), static_cast<ProblemKind>(kind), msg});
      } else if (status == 0) {
        uint32_t w = 0, h = 0;
        if (std::fread(&w, sizeof w, 1, f.get()) != 1 || std::fread(&h, sizeof h, 1, f.get()) != 1 || w == 0 ||
            h == 0 || w > (1u << 15) || h > (1u << 15) || int64_t(w) * h > max_image_pixels())
          return stale("is corrupt");
        ImageU8 img(static_cast<int>(w), static_cast<int>(h));
        if (std::fread(img.pixels.data(), 1, img.pixels.size(), f.get()) != img.pixels.size())
          return stale("is truncated");
        cached_[static_cast<std::size_t>(i)] = std::move(img);
      } else if (status == 2 && !keep_[static_cast<std::size_t>(i)]) {
        continue;  // another shard's image
      } else {
        return stale("is corrupt");
      }
    }
    index_problems(problems);
    return true;
  }

  Batch build(const Plan& plan, int64_t k) const {
    const int64_t n = static_cast<int64_t>(plan.order.size());
    const int64_t begin = k * opt_.batch_size, end = std::min(n, begin + opt_.batch_size);
    Batch b;
    b.epoch = plan.epoch;
    b.number = k;
    b.position = plan.first_position + begin;
    b.indices.assign(plan.order.begin() + begin, plan.order.begin() + end);
    const int64_t count = end - begin;
    b.labels = Tensor::empty({count}, DType::int64);
    int64_t* labels = b.labels.data<int64_t>();
    int C = 0, H = 0, W = 0;
    for (int64_t j = 0; j < count; ++j) {
      const int64_t i = b.indices[static_cast<std::size_t>(j)];
      labels[j] = source_->label(i);
      Image img = opt_.cache ? to_float(cached_[static_cast<std::size_t>(i)]) : to_float(load_preprocessed(i));
      if (opt_.transform) {
        Generator g = Generator::derive(opt_.seed, static_cast<uint64_t>(plan.epoch), static_cast<uint64_t>(i));
        opt_.transform->apply(img, g);
      }
      if (j == 0) {
        C = img.channels;
        H = img.height;
        W = img.width;
        const Shape shape = {count, C, H, W};
        if (opt_.output_uint8) {
          b.bytes.shape = shape;
          b.bytes.data.assign(static_cast<std::size_t>(shape_numel(shape)), 0);
        } else {
          b.images = Tensor::empty(shape, DType::float32);
        }
      } else if (img.channels != C || img.height != H || img.width != W) {
        fail("Loader: ", source_->name(i), " came out of the transforms as ", img.channels, "x", img.height, "x",
             img.width, " but the batch is ", C, "x", H, "x", W, " (end the transform with a Resize + CenterCrop "
             "or a RandomResizedCrop to a fixed size)");
      }
      const std::size_t per = img.data.size();
      if (opt_.output_uint8) {
        uint8_t* dst = b.bytes.data.data() + static_cast<std::size_t>(j) * per;
        for (std::size_t t = 0; t < per; ++t) dst[t] = to_byte(img.data[t]);
      } else {
        std::memcpy(b.images.data<float>() + static_cast<std::size_t>(j) * per, img.data.data(), per * sizeof(float));
      }
    }
    return b;
  }

  void start_workers() {
    if (opt_.num_workers == 0 || !workers_.empty()) return;
    for (int t = 0; t < opt_.num_workers; ++t) workers_.emplace_back([this] { worker_loop(); });
  }
  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    work_cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  void worker_loop() {
    for (;;) {
      std::shared_ptr<const Plan> plan;
      int64_t k = 0;
      uint64_t gen = 0;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        work_cv_.wait(lock, [&] {
          return stopping_ || (plan_ && next_claim_ < plan_->batches && next_claim_ < consumed_ + opt_.prefetch);
        });
        if (stopping_) return;
        plan = plan_;
        k = next_claim_++;
        gen = generation_;
      }
      Slot slot;
      try {
        slot.batch = build(*plan, k);
      } catch (...) {
        slot.error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (gen != generation_) continue;  // an abandoned epoch
        ready_[k] = std::move(slot);
      }
      ready_cv_.notify_all();
    }
  }

  std::shared_ptr<const ImageSource> source_;
  LoaderOptions opt_;
  DataReport report_;
  bool prepared_ = false;
  bool loaded_from_file_ = false;
  std::string cache_path_;
  std::vector<ImageU8> cached_;
  std::vector<int64_t> usable_;
  // shards (num_shards > 1)
  std::vector<bool> keep_;             // items whose image this shard keeps in memory
  std::vector<int64_t> shard_usable_;  // this shard's usable items, sorted
  int64_t shard_count_ = 0;            // items per epoch
  int64_t first_position_ = 0;         // cover: place of the block's first item among all usable items
  std::map<std::string, int64_t> bad_index_;

  std::mutex mutex_;
  std::condition_variable work_cv_, ready_cv_;
  std::vector<std::thread> workers_;
  std::shared_ptr<const Plan> plan_;
  uint64_t generation_ = 0;
  int64_t next_claim_ = 0, consumed_ = 0;
  std::map<int64_t, Slot> ready_;
  bool stopping_ = false;
  std::unique_ptr<ProgressBar> bar_;
};

}  // namespace data
}  // namespace retikd
