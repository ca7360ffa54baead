// tests/test_hostile_input.cpp — hostile and careless input (issue 16): each finding of the attack on the
// readers, reproduced as a test that failed before the fix — strict bounded arguments (core/cli_args.hpp),
// JSON limits and large objects, stale temporaries, link loops and fenced folder walks, manifest paths
// confined to their root and duplicates found by file identity and content, image size limits checked from
// the header and decompression budgets, loader and view bounds, sane bundle fields, non-finite outputs,
// Grad-CAM files kept inside their folder and failing one at a time, CSV cells that cannot become formulas —
// and the replay of the fuzz corpus and crash regressions of tests/fuzz/ through the same harnesses that
// libFuzzer runs (scripts/fuzz.sh).
#include <doctest/doctest.h>

#include <ftw.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "retikd/core/cli_args.hpp"
#include "retikd/core/parallel.hpp"
#include "retikd/core/paths.hpp"
#include "retikd/data/data.hpp"
#include "retikd/data/png_write.hpp"
#include "retikd/data/synthetic.hpp"
#include "retikd/deploy/deploy.hpp"
#include "retikd/io/atomic_file.hpp"
#include "retikd/io/json.hpp"
#include "retikd/io/safetensors.hpp"
#include "retikd/kd/multi_view.hpp"
#include "test_util.hpp"

// The fuzz harnesses, registered for replay (tests/fuzz/fuzz_target.hpp).
#define RETIKD_FUZZ_REPLAY
#include "fuzz/fuzz_bundle.cpp"
#include "fuzz/fuzz_checkpoint.cpp"
#include "fuzz/fuzz_image.cpp"
#include "fuzz/fuzz_json.cpp"
#include "fuzz/fuzz_manifest.cpp"
#include "fuzz/fuzz_safetensors.cpp"
#include "fuzz/fuzz_tflite.cpp"
#ifdef RETIKD_WITH_ONNX  // the ONNX reader is part of the optional retikd::onnx component
#include "fuzz/fuzz_onnx.cpp"
#endif

using namespace retikd;
using retikd::test::error_of;
using retikd::test::names_in;
using retikd::test::read_bytes;
using retikd::test::TempDir;
using retikd::test::write_bytes;
using retikd::test::write_text;

namespace {


std::string fuzz_dir() {
  std::string here = __FILE__;
  const auto slash = here.find_last_of('/');
  return (slash == std::string::npos ? std::string(".") : here.substr(0, slash)) + "/fuzz";
}
void put_link(const std::string& target, const std::string& at) { REQUIRE(::symlink(target.c_str(), at.c_str()) == 0); }

data::ImageU8 tiny_image(int seed, int size = 6) {
  data::ImageU8 img(size, size);
  for (std::size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>(i * 7 + seed * 31);
  return img;
}
void put_png(const std::string& path, int seed) {
  REQUIRE(data::fs::make_dirs(data::fs::dirname(path)));
  data::write_png(path, tiny_image(seed));
}

// A process id that no longer runs: a child that exited and was reaped.
pid_t dead_pid() {
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) ::_exit(0);
  int status = 0;
  ::waitpid(child, &status, 0);
  return child;
}


// Every file below `dir`, links not followed (what a run actually wrote where).
std::vector<std::string> tree(const std::string& dir) {
  static std::vector<std::string>* out = nullptr;
  std::vector<std::string> files;
  out = &files;
  ::nftw(dir.c_str(), [](const char* p, const struct stat*, int type, struct FTW*) {
    if (type != FTW_D && type != FTW_DP) out->push_back(p);
    return 0;
  }, 16, FTW_PHYS);
  std::sort(files.begin(), files.end());
  return files;
}


// ---- crafted image files -----------------------------------------------------------------------------------

void be32(std::vector<uint8_t>& v, uint32_t x) {
  for (int s = 24; s >= 0; s -= 8) v.push_back(static_cast<uint8_t>(x >> s));
}
void png_chunk(std::vector<uint8_t>& out, const char* type, const std::vector<uint8_t>& body) {
  be32(out, static_cast<uint32_t>(body.size()));
  std::vector<uint8_t> tb(type, type + 4);
  tb.insert(tb.end(), body.begin(), body.end());
  out.insert(out.end(), tb.begin(), tb.end());
  be32(out, data::detail::crc32_update(0, tb.data(), tb.size()));
}
// A structurally valid PNG (8-bit grey) with the given header size and IDAT bytes.
std::vector<uint8_t> png_with(uint32_t w, uint32_t h, const std::vector<uint8_t>& idat) {
  std::vector<uint8_t> out = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  std::vector<uint8_t> ihdr;
  be32(ihdr, w);
  be32(ihdr, h);
  ihdr.insert(ihdr.end(), {8, 0, 0, 0, 0});  // depth 8, grey, deflate, filter 0, no interlace
  png_chunk(out, "IHDR", ihdr);
  png_chunk(out, "IDAT", idat);
  png_chunk(out, "IEND", {});
  return out;
}
// A zlib stream that inflates to `zeros` zero bytes with fixed-Huffman back-references (258 bytes per 13 bits:
// about 1000:1, a decompression bomb).
std::vector<uint8_t> zlib_zeros(std::size_t zeros) {
  std::vector<uint8_t> out = {0x78, 0x01};
  uint32_t acc = 0;
  int bits = 0;
  auto put = [&](uint32_t v, int n) {  // LSB first
    acc |= v << bits;
    bits += n;
    while (bits >= 8) {
      out.push_back(static_cast<uint8_t>(acc & 0xFF));
      acc >>= 8;
      bits -= 8;
    }
  };
  auto put_code = [&](uint32_t code, int n) {  // Huffman codes go MSB first
    uint32_t r = 0;
    for (int i = 0; i < n; ++i) r |= ((code >> i) & 1u) << (n - 1 - i);
    put(r, n);
  };
  put(1, 1);  // final block
  put(1, 2);  // fixed Huffman
  put_code(0x30, 8);  // literal 0
  std::size_t made = 1;
  while (made + 258 <= zeros) {
    put_code(0xC5, 8);  // length code 285: 258 bytes
    put_code(0, 5);     // distance code 0: distance 1
    made += 258;
  }
  while (made < zeros) {
    put_code(0x30, 8);
    ++made;
  }
  put_code(0, 7);  // end of block
  if (bits) put(0, 8 - bits);
  uint32_t a = 1, b = 0;  // Adler-32 of the zeros
  for (std::size_t i = 0; i < zeros; ++i) b = (b + a) % 65521;
  be32(out, (b << 16) | a);
  return out;
}
// A JPEG whose frame header declares w x h: tables and markers intact up to EOI, no real image data.
std::vector<uint8_t> jpeg_declaring(uint16_t w, uint16_t h) {
  std::vector<uint8_t> out = {0xFF, 0xD8, 0xFF, 0xDB, 0x00, 0x43, 0x00};  // DQT: table 0, all ones
  out.insert(out.end(), 64, 1);
  for (uint8_t table : {0x00, 0x10}) {  // DHT: DC 0 and AC 0, one code of length 1 each
    out.insert(out.end(), {0xFF, 0xC4, 0x00, 0x14, table, 1});
    out.insert(out.end(), 15, 0);
    out.push_back(0);
  }
  out.insert(out.end(), {0xFF, 0xC0, 0x00, 0x11, 0x08, static_cast<uint8_t>(h >> 8), static_cast<uint8_t>(h & 0xFF),
                         static_cast<uint8_t>(w >> 8), static_cast<uint8_t>(w & 0xFF), 0x03, 1, 0x11, 0, 2, 0x11,
                         0, 3, 0x11, 0});
  out.insert(out.end(), {0xFF, 0xDA, 0x00, 0x0C, 0x03, 1, 0, 2, 0, 3, 0, 0x00, 0x3F, 0x00});
  for (int i = 0; i < 600; ++i) out.push_back(static_cast<uint8_t>(i % 251));  // entropy-coded bytes, no 0xFF
  out.insert(out.end(), {0xFF, 0xD9});
  return out;
}

// ---- bundles -----------------------------------------------------------------------------------------------

// A small MobileNetV2 bundle (width 0.35, 32 px input) at `path`.
void make_bundle(const std::string& path, const std::vector<std::string>& classes = {}) {
  Generator gen(5);
  nn::ModelOptions o;
  o.num_classes = classes.empty() ? 4 : static_cast<int64_t>(classes.size());
  o.width_mult = 0.35;
  auto model = nn::create_model("mobilenet_v2", o, gen);
  deploy::ExportOptions eo;
  eo.classes = classes;
  eo.preprocess.resize = 32;
  eo.preprocess.crop = 32;
  deploy::export_bundle(path, *model, eo);
}
// The bundle at `from`, edited and re-signed (a valid checksum: integrity proves nothing about sanity).
void resign(const std::string& from, const std::string& to,
            const std::function<void(std::map<std::string, std::string>&, std::vector<std::pair<std::string, Tensor>>&)>& edit) {
  io::SafetensorsContents c = io::read_safetensors(from);
  edit(c.metadata, c.tensors);
  c.metadata["retikd.checksum"] = deploy::detail::compute_checksum(c.metadata, c.tensors);
  io::save_safetensors(to, c.tensors, c.metadata);
}

}  // namespace

// ---- 6. arguments ----------------------------------------------------------------------------------------------

TEST_CASE("hostile: numbers in arguments are the whole text, in range, or an error naming the option") {
  int64_t v = 0;
  for (const char* bad : {"", "-", "+1", " 1", "1 ", "0x10", "1e3", "1.0", "abc", "12abc", "99999999999999999999",
                          "9223372036854775808", "-9223372036854775809"}) {
    CAPTURE(bad);
    CHECK_FALSE(cli::parse_int64(bad, v));
  }
  REQUIRE(cli::parse_int64("9223372036854775807", v));
  CHECK(v == std::numeric_limits<int64_t>::max());
  REQUIRE(cli::parse_int64("-9223372036854775808", v));
  CHECK(v == std::numeric_limits<int64_t>::min());
  REQUIRE(cli::parse_int64("007", v));
  CHECK(v == 7);

  CHECK(cli::parse_int("--batch", "16", 1, 4096) == 16);
  RETIKD_CHECK_THROWS_CONTAINING(cli::parse_int("--batch", "0", 1, 4096),
                          "--batch: expected an integer from 1 to 4096, got '0'");
  RETIKD_CHECK_THROWS_CONTAINING(cli::parse_int("--batch", "99999999999999999999", 1, 4096), "got '99999999999999999999'");
  CHECK_THROWS_AS(cli::parse_int("--views", "1000000", 0, 16), cli::ArgumentError);
  RETIKD_CHECK_THROWS_CONTAINING(cli::parse_int("--threads", "abc", 1, 64), "--threads: expected an integer");
  RETIKD_CHECK_THROWS_CONTAINING(cli::parse_int("--x", std::string("1\x01\xff", 3), 0, 9), "'1\\x01\\xff'");

  double d = 0;
  for (const char* bad : {"", ".", "-", "nan", "NaN", "inf", "-inf", "infinity", "1e999", "0x1p4", "1,5", "1e", "e5",
                          "1.5.2", " 1", "+1"}) {
    CAPTURE(bad);
    CHECK_FALSE(cli::parse_double(bad, d));
  }
  for (auto ok : std::vector<std::pair<const char*, double>>{
           {"0.5", 0.5}, {".5", 0.5}, {"5.", 5.0}, {"-0.25", -0.25}, {"1e-3", 1e-3}, {"2E+2", 200.0}, {"7", 7.0}}) {
    CAPTURE(ok.first);
    REQUIRE(cli::parse_double(ok.first, d));
    CHECK(d == ok.second);
  }
  RETIKD_CHECK_THROWS_CONTAINING(cli::parse_real("--lr", "-1", 1e-9, 10), "--lr: expected a number from 1e-09 to 10");
  CHECK(cli::parse_switch("--logit-kd", "1"));
  CHECK_FALSE(cli::parse_switch("--logit-kd", "0"));
  CHECK_THROWS_AS(cli::parse_switch("--logit-kd", "2"), cli::ArgumentError);
  CHECK(cli::parse_int_list("--batches", "1,8,32", 1, 1024, 16) == std::vector<int64_t>{1, 8, 32});
  CHECK_THROWS_AS(cli::parse_int_list("--batches", "1,,8", 1, 1024, 16), cli::ArgumentError);
  CHECK_THROWS_AS(cli::parse_int_list("--batches", "1,2,3", 1, 1024, 2), cli::ArgumentError);

  char prog[] = "prog", flag[] = "--batch";
  char* argv[] = {prog, flag};
  cli::ArgReader args(2, argv);
  REQUIRE(args.next());
  RETIKD_CHECK_THROWS_CONTAINING(args.integer(1, 10), "--batch needs a value");
}

TEST_CASE("hostile: the library's own numeric environment variables are strict too") {
  const char* saved = std::getenv("RETIKD_NUM_THREADS");
  const std::string keep = saved ? saved : "";
  ::setenv("RETIKD_NUM_THREADS", "abc", 1);
  RETIKD_CHECK_THROWS_CONTAINING(default_num_threads(), "RETIKD_NUM_THREADS: expected an integer from 1 to 1024");
  ::setenv("RETIKD_NUM_THREADS", "100000", 1);
  CHECK_THROWS_AS(default_num_threads(), cli::ArgumentError);
  ::setenv("RETIKD_NUM_THREADS", "3", 1);
  CHECK(default_num_threads() == 3);
  if (saved) ::setenv("RETIKD_NUM_THREADS", keep.c_str(), 1);
  else ::unsetenv("RETIKD_NUM_THREADS");
  CHECK(cli::env_int("RETIKD_SURELY_UNSET_VARIABLE", 42, 1, 100) == 42);
}

TEST_CASE("hostile: loader, views and batch arithmetic are bounded") {
  auto src = std::make_shared<data::SyntheticSource>(5, 0, data::SyntheticOptions());
  data::LoaderOptions lo;
  lo.batch_size = std::numeric_limits<int64_t>::max();  // once from "--batch 99999999999999999999" (saturated)
  lo.num_workers = 0;
  lo.cache = false;
  data::Loader loader(src, lo);
  CHECK(loader.num_batches() == 1);  // n + batch − 1 overflowed here
  lo.batch_size = 2;
  lo.num_workers = 100000;
  RETIKD_CHECK_THROWS_CONTAINING(data::Loader(src, lo), "num_workers 100000 is not in [0, 256]");
  kd::MultiViewConfig mv;
  mv.augmented_views = 1000000;
  RETIKD_CHECK_THROWS_CONTAINING(kd::MultiViewGenerator(mv), "augmented_views 1000000 is not in [0, 64]");
}

// ---- 1. JSON -------------------------------------------------------------------------------------------------

TEST_CASE("hostile: JSON limits bound values, keys, strings and depth, and name what was exceeded") {
  io::JsonLimits l;
  l.max_values = 5;
  CHECK_NOTHROW(io::parse_json("[1,2,3,4]", "t", l));  // the array and its 4 items
  RETIKD_CHECK_THROWS_CONTAINING(io::parse_json("[1,2,3,4,5]", "t", l), "more than 5 values in one document");
  l = io::JsonLimits();
  l.max_key_bytes = 4;
  CHECK_NOTHROW(io::parse_json("{\"abcd\":1}", "t", l));
  RETIKD_CHECK_THROWS_CONTAINING(io::parse_json("{\"abcde\":1}", "t", l), "object key longer than 4 bytes");
  l = io::JsonLimits();
  l.max_string_bytes = 3;
  CHECK_NOTHROW(io::parse_json("[\"abc\"]", "t", l));
  RETIKD_CHECK_THROWS_CONTAINING(io::parse_json("[\"ab\\u00e9\"]", "t", l), "string longer than 3 bytes");
  l = io::JsonLimits();
  l.max_depth = 2;
  CHECK_NOTHROW(io::parse_json("[[[]]]", "t", l));
  RETIKD_CHECK_THROWS_CONTAINING(io::parse_json("[[[[]]]]", "t", l), "nesting deeper than 2 levels");
  // The default limit on values is what stops a header of "[0,0,0,…" becoming gigabytes of tree nodes.
  std::string zeros = "[0";
  for (std::size_t i = 0; i < io::JsonLimits().max_values; ++i) zeros += ",0";
  zeros += "]";
  RETIKD_CHECK_THROWS_CONTAINING(io::parse_json(zeros), "values in one document (the limit)");
}

TEST_CASE("hostile: 200,000 keys parse, and a repeated key among them is found at its own offset") {
  std::string doc = "{";
  for (int i = 0; i < 200000; ++i) {
    char key[40];
    std::snprintf(key, sizeof key, "%s\"k%015d\":%d", i ? "," : "", i, i);
    doc += key;
  }
  const std::string unique = doc + "}";
  const io::Json v = io::parse_json(unique);
  REQUIRE(v.members().size() == 200000);
  CHECK(v.members()[123456].first == "k000000000123456");
  // The same key again at the end: reported at the offset of the repeat, not of the first.
  const std::string offset = std::to_string(doc.size() + 1);
  const std::string repeated = doc + ",\"k000000000000007\":1}";
  const std::string msg = error_of([&] { io::parse_json(repeated, "big"); });
  CHECK(msg.find("duplicate key \"k000000000000007\"") != std::string::npos);
  CHECK(msg.find("at byte " + offset) != std::string::npos);
  // Small objects keep reporting the first repeat in file order.
  RETIKD_CHECK_THROWS_CONTAINING(io::parse_json("{\"b\":1,\"a\":2,\"a\":3,\"b\":4}"), "duplicate key \"a\"");
}

TEST_CASE("hostile: the issue's 200,000-key safetensors header is refused with a clear error") {
  std::string h = "{";
  for (int i = 0; i < 200000; ++i) {
    char key[32];
    std::snprintf(key, sizeof key, "%s\"k%015d\":0", i ? "," : "", i);
    h += key;
  }
  h += "}";
  std::vector<uint8_t> file(8);
  for (int i = 0; i < 8; ++i) file[i] = static_cast<uint8_t>(static_cast<uint64_t>(h.size()) >> (8 * i));
  file.insert(file.end(), h.begin(), h.end());
  RETIKD_CHECK_THROWS_CONTAINING(io::parse_safetensors(file, "k.st"), "expected an object with dtype, shape and data_offsets");
  TempDir dir("hostile");
  write_bytes(dir / "k.st", file);
  RETIKD_CHECK_THROWS_CONTAINING(deploy::load_bundle(dir / "k.st"), "bundle: ");
}

// ---- 6. stale temporaries ----------------------------------------------------------------------------------

TEST_CASE("hostile: a write sweeps the temporaries a killed writer left, and nothing else") {
  TempDir dir("hostile");
  const std::string target = dir / "student.rkd";
  const pid_t gone = dead_pid();
  const std::string stale = target + ".tmp." + std::to_string(gone) + ".3";
  const std::string live = target + ".tmp." + std::to_string(::getppid()) + ".0";  // a running process's
  const std::string other = dir / "other.rkd.tmp." + std::to_string(gone) + ".0";   // another target's
  const std::string lookalike = target + ".tmp.12x.0";
  for (const auto& p : {stale, live, other, lookalike}) write_text(p, "partial");
  REQUIRE(::mkdir((target + ".tmp." + std::to_string(gone) + ".9").c_str(), 0755) == 0);  // not a plain file
  make_bundle(target);
  const std::vector<std::string> left = names_in(dir.path());
  const auto has = [&](const std::string& p) {
    return std::find(left.begin(), left.end(), data::fs::basename(p)) != left.end();
  };
  CHECK_FALSE(has(stale));
  CHECK(has(live));
  CHECK(has(other));
  CHECK(has(lookalike));
  CHECK(has(target + ".tmp." + std::to_string(gone) + ".9"));
  CHECK(has(target));
  CHECK(io::remove_stale_temporaries(dir.path(), "other.rkd") == 1);
}

// ---- 2. folder walks -----------------------------------------------------------------------------------------

TEST_CASE("hostile: a link loop in a class folder lists each image once, under its own class, with a warning") {
  TempDir dir("hostile");
  put_png(dir / "glaucoma/g1.png", 1);
  put_png(dir / "glaucoma/g2.png", 2);
  put_png(dir / "cataract/c1.png", 3);
  put_link("..", dir / "glaucoma/up");             // the reproduction
  REQUIRE(data::fs::make_dirs(dir / "normal/deep"));
  put_png(dir / "normal/n1.png", 4);
  put_link("../..", dir / "normal/deep/loop1");    // two loops in one folder once hung every program
  put_link("..", dir / "normal/deep/loop2");
  std::vector<std::string> notes;
  data::DatasetOptions opt;
  opt.warnings = [&](const std::string& w) { notes.push_back(w); };
  const data::Dataset ds = data::Dataset::from_folders(dir.path(), opt);
  REQUIRE(ds.size() == 4);
  for (const auto& s : ds.samples) {
    CAPTURE(s.path);
    const std::string name = data::fs::basename(s.path);
    CHECK(s.label == (name[0] == 'g' ? 2 : name[0] == 'c' ? 0 : 3));
    CHECK(s.path.find("/up/") == std::string::npos);
    CHECK(s.path.find("/loop") == std::string::npos);
  }
  REQUIRE(notes.size() >= 3);
  for (const auto& n : notes) CHECK(n.find("not followed") != std::string::npos);
  CHECK(ds.report.notes().size() == notes.size());
}

TEST_CASE("hostile: a link from one class folder into another is not followed; a linked file is a conflict") {
  TempDir dir("hostile");
  put_png(dir / "dr/d1.png", 1);
  put_png(dir / "normal/n1.png", 2);
  put_png(dir / "normal/n2.png", 3);
  put_link("../normal", dir / "dr/more");          // would list normal's photos as DR
  data::DatasetOptions opt;
  std::vector<std::string> notes;
  opt.warnings = [&](const std::string& w) { notes.push_back(w); };
  data::Dataset ds = data::Dataset::from_folders(dir.path(), opt);
  CHECK(ds.size() == 3);
  REQUIRE(notes.size() == 1);
  CHECK(notes[0].find("another part of the data set") != std::string::npos);

  // A file link instead: the same photo under two classes. No label can be trusted: an error by default,
  // both listings dropped under the skip policy.
  put_link("../normal/n1.png", dir / "dr/n1.png");
  notes.clear();
  RETIKD_CHECK_THROWS_CONTAINING(data::Dataset::from_folders(dir.path(), opt), "none of its labels can be trusted");
  opt.policy = data::BadInput::skip;
  ds = data::Dataset::from_folders(dir.path(), opt);
  CHECK(ds.size() == 2);
  CHECK(ds.report.count(data::ProblemKind::duplicate) == 2);
  for (const auto& s : ds.samples) CHECK(data::fs::basename(s.path) != "n1.png");

  // A link to a folder outside the data set (a shared store) is followed.
  TempDir store("hostile");
  put_png(store / "x.png", 9);
  put_link(store.path(), dir / "dr/store");
  ds = data::Dataset::from_folders(dir.path(), opt);
  CHECK(ds.size() == 3);
}

TEST_CASE("hostile: classify's folder walk survives link loops and says what it did not follow") {
  TempDir dir("hostile");
  put_png(dir / "photos/a.png", 1);
  put_png(dir / "photos/sub/b.png", 2);
  put_link("..", dir / "photos/sub/up");
  put_link("../..", dir / "photos/sub/up2");
  const deploy::ImageList list = deploy::collect_images({dir / "photos"});
  CHECK(list.files.size() == 2);
  REQUIRE(list.problems.size() == 2);
  for (const auto& p : list.problems) CHECK(p.find("not followed") != std::string::npos);
}

// ---- 5. manifests ------------------------------------------------------------------------------------------

TEST_CASE("hostile: manifest paths must stay under the data root, unless allowed") {
  TempDir outer("hostile");
  put_png(outer / "secret.png", 1);
  put_png(outer / "data/images/a.png", 2);
  put_link("../../secret.png", outer / "data/images/escape.png");
  write_text(outer / "data/split.tsv", "path\tlabel\tsplit\n"
                                     "images/a.png\tnormal\ttrain\n"
                                     "../secret.png\tnormal\ttrain\n"
                                     "images/../../secret.png\tnormal\tval\n" +
                                         outer / "secret.png" + "\tnormal\ttest\n"
                                         "images/escape.png\tnormal\ttest\n");
  const std::string msg = error_of([&] { data::Dataset::open(outer / "data"); });
  CHECK(msg.find("4 bad inputs") != std::string::npos);
  CHECK(msg.find("climbs out of the data root") != std::string::npos);
  CHECK(msg.find("resolves to " + data::fs::resolve(outer / "secret.png")) != std::string::npos);
  CHECK(msg.find("--allow-outside-root") != std::string::npos);
  data::DatasetOptions opt;
  opt.policy = data::BadInput::skip;
  opt.warnings = nullptr;
  data::Dataset ds = data::Dataset::open(outer / "data", "", opt);
  CHECK(ds.size() == 1);
  CHECK(ds.report.count(data::ProblemKind::outside_root) == 4);
  opt.allow_outside_root = true;
  ds = data::Dataset::open(outer / "data", "", opt);
  // The four rows name one file (secret.png) in three splits: allowed outside, but still a conflict.
  CHECK(ds.size() == 1);
  CHECK(ds.report.count(data::ProblemKind::outside_root) == 0);
  CHECK(ds.report.count(data::ProblemKind::duplicate) == 4);
}

TEST_CASE("hostile: one photo under three spellings is one file, found by identity, never in three splits") {
  TempDir dir("hostile");
  put_png(dir / "images/a.png", 1);
  put_png(dir / "images/b.png", 2);
  write_text(dir / "split.tsv", "path\tlabel\tsplit\n"
                              "images/a.png\tnormal\ttrain\n"
                              "images/./a.png\tglaucoma\tval\n"
                              "images//a.png\tcataract\ttest\n"
                              "images/b.png\tnormal\ttrain\n"
                              "./images/b.png\tnormal\ttrain\n" +
                                  std::string("images/b.png\0.jpg\tnormal\ttest\n", 30));
  const std::string msg = error_of([&] { data::Dataset::open(dir.path()); });
  CHECK(msg.find("none of its labels can be trusted") != std::string::npos);
  CHECK(msg.find("split.tsv line 3") != std::string::npos);
  data::DatasetOptions opt;
  opt.policy = data::BadInput::skip;
  opt.warnings = nullptr;
  const data::Dataset ds = data::Dataset::open(dir.path(), "", opt);
  REQUIRE(ds.size() == 1);  // b.png once; a.png's three conflicting rows dropped
  CHECK(ds.samples[0].path == dir / "images/b.png");
  CHECK(ds.report.count(data::ProblemKind::duplicate) == 4);
  CHECK(ds.report.count(data::ProblemKind::bad_row) == 1);  // "images/b.png\0.jpg" would open images/b.png
}

TEST_CASE("hostile: identical content in two splits is a warning that names both files") {
  TempDir dir("hostile");
  put_png(dir / "images/a.png", 1);
  put_png(dir / "images/copy_of_a.png", 1);
  put_png(dir / "images/c.png", 3);
  put_png(dir / "images/same_size_other.png", 4);  // same size as a.png, other bytes: no warning
  write_text(dir / "split.tsv", "path\tlabel\tsplit\n"
                              "images/a.png\tnormal\ttrain\n"
                              "images/copy_of_a.png\tnormal\ttest\n"
                              "images/c.png\tnormal\ttrain\n"
                              "images/same_size_other.png\tdr\ttest\n");
  data::DatasetOptions opt;
  std::vector<std::string> notes;
  opt.warnings = [&](const std::string& w) { notes.push_back(w); };
  const data::Dataset ds = data::Dataset::open(dir.path(), "", opt);
  CHECK(ds.size() == 4);  // nothing dropped
  REQUIRE(notes.size() == 1);
  CHECK(notes[0].find("identical content in 2 files") != std::string::npos);
  CHECK(notes[0].find("copy_of_a.png (Normal, test)") != std::string::npos);
  CHECK(notes[0].find("leaks evaluation data") != std::string::npos);
}

// ---- 3. image sizes ------------------------------------------------------------------------------------------

TEST_CASE("hostile: oversize images are refused from the header, with their size and the limit") {
  // The 632-byte JPEG declaring 16000 x 16000 (4.2 GB and 13 s in classify).
  const std::vector<uint8_t> jpeg = jpeg_declaring(16000, 16000);
  try {
    data::decode_image(jpeg, "big.jpg");
    FAIL("decoded a 16000 x 16000 JPEG");
  } catch (const data::DataError& e) {
    CHECK(e.kind() == data::ProblemKind::too_large);
    CHECK(std::string(e.what()).find("image too large: 16000x16000 pixels (256.0 megapixels") != std::string::npos);
    CHECK(std::string(e.what()).find("above the limit of 50000000 pixels") != std::string::npos);
  }
  // A 60000 x 60000 PNG was "corrupt PNG: unknown image type".
  const std::vector<uint8_t> png = png_with(60000, 60000, zlib_zeros(16));
  const std::string msg = error_of([&] { data::decode_image(png, "huge.png"); });
  CHECK(msg.find("60000x60000 pixels") != std::string::npos);
  CHECK(msg.find("sides above 32768 px are not supported") != std::string::npos);
  CHECK(msg.find("unknown image type") == std::string::npos);
  // The limit is a setting, and a per-call argument.
  const std::vector<uint8_t> small = data::encode_png(tiny_image(1, 100));
  CHECK(data::decode_image(small, "ok.png").width == 100);
  RETIKD_CHECK_THROWS_CONTAINING(data::decode_image(small, "x.png", nullptr, 9999), "above the limit of 9999 pixels");
  data::set_max_image_pixels(5000);
  RETIKD_CHECK_THROWS_CONTAINING(data::decode_image(small, "x.png"), "above the limit of 5000 pixels");
  data::set_max_image_pixels(data::kDefaultMaxImagePixels);
  CHECK_THROWS_AS(data::set_max_image_pixels(0), Error);
}

TEST_CASE("hostile: a JPEG Huffman table of more than 256 codes is refused before stb sees it") {
  // Debian's stb_image 2.27 writes past its 257-entry tables for such a segment (found by fuzz_image; the
  // input is tests/fuzz/regressions/image/stb_dht_more_than_256_codes.jpg).
  std::vector<uint8_t> jpeg = jpeg_declaring(8, 8);
  std::vector<uint8_t> dht = {0xFF, 0xC4, 0x00, 0x00, 0x01};  // one DC table, id 1
  for (int k = 0; k < 16; ++k) dht.push_back(17);              // 16 lengths x 17 codes = 272 codes
  for (int k = 0; k < 272; ++k) dht.push_back(static_cast<uint8_t>(k % 12));
  const std::size_t len = dht.size() - 2;
  dht[2] = static_cast<uint8_t>(len >> 8);
  dht[3] = static_cast<uint8_t>(len & 0xFF);
  jpeg.insert(jpeg.begin() + 2, dht.begin(), dht.end());
  RETIKD_CHECK_THROWS_CONTAINING(data::decode_image(jpeg, "dht.jpg"), "Huffman table at byte 6 declares 272 codes (at most 256)");
  const std::vector<uint8_t> crash = read_bytes(fuzz_dir() + "/regressions/image/stb_dht_more_than_256_codes.jpg");
  REQUIRE(!crash.empty());
  RETIKD_CHECK_THROWS_CONTAINING(data::decode_image(crash, "crash.jpg"), "declares 259 codes");
}

TEST_CASE("hostile: a JPEG scan that uses an undefined Huffman or quantisation table is refused") {
  // stb_image 2.27 reads past an uninitialised table then (found by fuzz_image; the input is
  // tests/fuzz/regressions/image/stb_undefined_huffman_table.jpg).
  std::vector<uint8_t> jpeg = jpeg_declaring(8, 8);
  const std::size_t sos = jpeg.size() - 2 - 600 - 14;
  REQUIRE((jpeg[sos] == 0xFF && jpeg[sos + 1] == 0xDA));
  jpeg[sos + 8] = 0x11;  // component 2: DC 1 / AC 1, never defined
  RETIKD_CHECK_THROWS_CONTAINING(data::decode_image(jpeg, "t.jpg"), "uses Huffman tables DC 1 / AC 1, which are not defined");
  jpeg = jpeg_declaring(8, 8);
  jpeg[6] = 0x02;  // the DQT defines table 2; the frame uses table 0
  RETIKD_CHECK_THROWS_CONTAINING(data::decode_image(jpeg, "t.jpg"), "quantisation table 0 is used but not defined");
  const std::vector<uint8_t> crash = read_bytes(fuzz_dir() + "/regressions/image/stb_undefined_huffman_table.jpg");
  REQUIRE(!crash.empty());
  RETIKD_CHECK_THROWS_CONTAINING(data::decode_image(crash, "crash.jpg"), "which are not defined");
}

TEST_CASE("hostile: a PNG whose data inflates far beyond its declared size fails within a budget") {
  // 1 x 1 pixel declared (2 bytes of rows), 8 MB of zeros inflated from ~53 KB.
  const std::vector<uint8_t> bomb = png_with(1, 1, zlib_zeros(8u << 20));
  CHECK(bomb.size() < 64 * 1024);
  try {
    data::decode_image(bomb, "bomb.png");
    FAIL("decoded a zlib bomb");
  } catch (const data::DataError& e) {
    CHECK(e.kind() == data::ProblemKind::corrupt);
    CHECK(std::string(e.what()).find("expands beyond the declared image") != std::string::npos);
  }
  // The same stream at its honest size decodes.
  const std::vector<uint8_t> honest = png_with(1, 1, zlib_zeros(2));
  CHECK(data::decode_image(honest, "one.png").width == 1);
}

TEST_CASE("hostile: resizing a thin image cannot blow it up beyond the image limits") {
  data::Image thin(3, 16, 32768, 0.5f);
  Generator g(0);
  RETIKD_CHECK_THROWS_CONTAINING(data::Resize(224).apply(thin, g), "above the image limits");
  data::Image fine(3, 16, 64, 0.5f);
  data::Resize(32).apply(fine, g);
  CHECK((fine.height == 32 && fine.width == 128));
}

// ---- 4. bundles ----------------------------------------------------------------------------------------------

TEST_CASE("hostile: a re-signed bundle with insane fields is refused before anything is allocated") {
  TempDir dir("hostile");
  const std::string good = dir / "good.rkd", bad = dir / "bad.rkd";
  make_bundle(good);
  REQUIRE_NOTHROW(deploy::load_bundle(good));
  auto edit = [&](const char* key, const std::string& value) {
    resign(good, bad, [&](std::map<std::string, std::string>& m, std::vector<std::pair<std::string, Tensor>>&) {
      m[key] = value;
    });
  };
  const std::string pre = ",\"mean\":[0.485,0.456,0.406],\"std\":[0.229,0.224,0.225]}";
  struct Case {
    const char* key;
    std::string value, needle;
  };
  const std::vector<Case> cases = {
      {"retikd.preprocess", "{\"fundus_crop\":false,\"resize\":32768,\"crop\":32768" + pre, "resize must be an integer in [0, 1024]"},
      {"retikd.preprocess", "{\"fundus_crop\":false,\"resize\":8,\"crop\":8" + pre, "each must be 0 (none) or 16 to 1024"},
      {"retikd.preprocess", "{\"fundus_crop\":false,\"resize\":32,\"crop\":32,\"mean\":[0.5,0.5,0.5],\"std\":[1e-45,1,1]}",
       "preprocess std"},
      {"retikd.preprocess", "{\"fundus_crop\":false,\"resize\":32,\"crop\":32,\"mean\":[1e30,0.5,0.5],\"std\":[1,1,1]}",
       "preprocess mean"},
      {"retikd.model_options", "{\"num_classes\":4,\"in_chans\":3,\"width_mult\":1000000}", "width_mult 1e+06 is not in [0.1, 4]"},
      {"retikd.model_options", "{\"num_classes\":4,\"in_chans\":1,\"width_mult\":0.35}", "in_chans must be an integer in [3, 3]"},
      {"retikd.model_options", "{\"num_classes\":100000,\"in_chans\":3,\"width_mult\":0.35}", "num_classes must be an integer in [1, 1000]"},
      {"retikd.classes", "[\"A\",\"B\",\"A\",\"D\"]", "class name \"A\" appears twice"},
      {"retikd.classes", "[\"A\",\"B\\nC\",\"C\",\"D\"]", "holds a control character"},
      {"retikd.classes", "[\"A\",\"B\",\"C\",\"" + std::string(65, 'x') + "\"]", "is not 1 to 64 bytes long"},
      {"retikd.arch", "vit_base", "is not a bundle architecture"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.value);
    edit(c.key, c.value);
    RETIKD_CHECK_THROWS_CONTAINING(deploy::load_bundle(bad), c.needle);
    RETIKD_CHECK_THROWS_CONTAINING(deploy::read_bundle_info(bad), c.needle);
  }
  // NaN weights: every image was "Cataract", confidence nan, status ok.
  resign(good, bad, [](std::map<std::string, std::string>&, std::vector<std::pair<std::string, Tensor>>& t) {
    for (auto& nt : t)
      if (nt.first.find("classifier") != std::string::npos && nt.second.dtype() == DType::float16) {
        Tensor f = nt.second.to(DType::float32);
        f.fill_(std::nan(""));
        nt.second = f.to(DType::float16);
        break;
      }
  });
  RETIKD_CHECK_THROWS_CONTAINING(deploy::load_bundle(bad), "holds a non-finite value");
  // Export refuses the same things.
  Generator gen(1);
  nn::ModelOptions o;
  o.width_mult = 0.35;
  auto model = nn::create_model("mobilenet_v2", o, gen);
  deploy::ExportOptions eo;
  eo.preprocess.std = {1e-45f, 1.0f, 1.0f};
  RETIKD_CHECK_THROWS_CONTAINING(deploy::export_bundle(dir / "x.rkd", *model, eo), "cannot export: preprocess std");
  CHECK_FALSE(data::fs::exists(dir / "x.rkd"));
}

TEST_CASE("hostile: a non-finite model output is an error for that image, never a class") {
  TempDir dir("hostile");
  make_bundle(dir / "s.rkd");
  deploy::Bundle b = deploy::load_bundle(dir / "s.rkd");
  // Weights broken after loading (as an fp16 overflow on a GPU would break the activations).
  b.model->named_parameters().back().second.mutable_value().fill_(std::nan(""));
  deploy::Classifier c(b);
  put_png(dir / "a.png", 1);
  put_png(dir / "b.png", 2);
  const auto preds = c.classify({dir / "a.png", dir / "b.png"});
  for (const auto& p : preds) {
    CHECK_FALSE(p.ok);
    CHECK(p.model_error);
    CHECK(p.label == -1);
    CHECK(p.error.find("not finite") != std::string::npos);
  }
  const deploy::ClassifySummary s = deploy::summarize(preds, 4);
  CHECK(s.classified == 0);
  CHECK(s.model_errors == 2);
  const std::string csv = deploy::predictions_csv(preds, c.info().classes);
  const std::string rows = csv.substr(csv.find('\n') + 1);
  CHECK(rows.find(",error,,") != std::string::npos);
  CHECK(rows.find("Cataract") == std::string::npos);
  CHECK(rows.find("nan") == std::string::npos);
  CHECK(deploy::predictions_json(preds, c.info(), s).find("\"model_errors\": 2") != std::string::npos);
}

TEST_CASE("hostile: Grad-CAM files stay inside --gradcam DIR whatever the names hold, and fail one at a time") {
  TempDir dir("hostile");
  const std::vector<std::string> classes = {"x/../../../y", "..", "a\\b c", "=HYPERLINK(\"z\")"};
  make_bundle(dir / "s.rkd", classes);
  deploy::Classifier c(deploy::load_bundle(dir / "s.rkd"));
  std::vector<std::string> files;
  for (int i = 0; i < 5; ++i) {
    files.push_back(dir / ("in/" + std::string(i == 0 ? "=cmd|x" : "..") + std::to_string(i) + ".png"));
    put_png(files.back(), i);
  }
  std::vector<deploy::Prediction> preds = c.classify(files);
  for (const auto& p : preds) REQUIRE(p.ok);
  const std::string maps = dir / "out/maps";
  // One overlay cannot be written: its file name is taken by a folder.
  const std::string blocked = deploy::gradcam_file(maps, 2, preds[2].path,
                                                   classes[static_cast<std::size_t>(preds[2].label)]);
  REQUIRE(data::fs::make_dirs(blocked));
  const std::vector<std::string> before = tree(dir.path());
  deploy::OverlayOptions g;
  g.dir = maps;
  g.cam.tap = "stage3";
  g.batch = 2;
  int64_t written = -1;
  CHECK_NOTHROW(written = deploy::write_gradcam_overlays(c, preds, g));
  CHECK(written == 4);
  CHECK(preds[2].gradcam.empty());
  CHECK(preds[2].error.find("Grad-CAM overlay not written") != std::string::npos);
  for (std::size_t i = 0; i < preds.size(); ++i) {
    if (i == 2) continue;
    CAPTURE(preds[i].gradcam);
    CHECK(data::fs::dirname(preds[i].gradcam) == maps);
    const std::string name = data::fs::basename(preds[i].gradcam);
    CHECK(name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") ==
          std::string::npos);
  }
  // Nothing new anywhere but in the maps folder.
  for (const auto& f : tree(dir.path()))
    if (std::find(before.begin(), before.end(), f) == before.end()) CHECK(data::fs::dirname(f) == maps);
  // The CSV is still complete, and no cell starts like a formula.
  const std::string csv = deploy::predictions_csv(preds, c.info().classes);
  CHECK(std::count(csv.begin(), csv.end(), '\n') == 6);
  CHECK(csv.find("\n=") == std::string::npos);
  CHECK(csv.find(",=") == std::string::npos);
  CHECK(deploy::detail::csv_field("=HYPERLINK(\"z\")") == "\"'=HYPERLINK(\"\"z\"\")\"");
  CHECK(deploy::detail::csv_field("@SUM(A1)") == "'@SUM(A1)");
  CHECK(deploy::detail::csv_field("-2+3") == "'-2+3");
  CHECK(deploy::detail::csv_field("Glaucoma") == "Glaucoma");
}

// ---- the fuzz corpus and crash regressions -----------------------------------------------------------------

TEST_CASE("hostile: a checkpoint whose optimizer step or learning rate is not a number is refused, state unchanged") {
  // Found by fuzz_checkpoint: an optimizer "step" of NaN reached a float -> int64 conversion (undefined
  // behaviour) after every other check had passed, in the all-or-nothing apply phase.
  fuzz_checkpoint::State s;
  const std::vector<uint8_t> before = s.snapshot();
  const std::string nan_step = fuzz_dir() + "/regressions/checkpoint/optimizer_step_nan.safetensors";
  const std::string e = error_of([&] { train::load_checkpoint(nan_step, s.state); });
  INFO(e);
  CHECK(e.find("optimizer \"adamw\": \"step\" is ") != std::string::npos);  // NaN prints as nan or -nan
  CHECK(e.find("nan, not a whole number from 0 to 2^53") != std::string::npos);
  CHECK(s.snapshot() == before);
  // The same for a learning rate of NaN, and for a fractional step, in an otherwise valid checkpoint.
  auto contents = train::checkpoint_contents(s.state);
  for (auto& kv : contents.first)
    if (kv.first == "optimizer_lr/adamw") kv.second = Tensor::from_vector(std::vector<double>{std::nan("")}, {1});
  for (auto& kv : contents.first)
    if (kv.first == "optimizer/adamw/step") kv.second = Tensor::scalar(2.5, DType::float64);
  TempDir dir("hostile");
  const std::string bad = dir / "bad_lr.safetensors";
  io::save_safetensors(bad, contents.first, contents.second);
  const std::string e2 = error_of([&] { train::load_checkpoint(bad, s.state); });
  INFO(e2);
  CHECK(e2.find("nan is not a finite number >= 0") != std::string::npos);
  CHECK(e2.find("\"step\" is 2.5") != std::string::npos);
  CHECK(s.snapshot() == before);
}


TEST_CASE("hostile: shapes whose element count or strides overflow int64 are refused by the core") {
  const Shape empty_beside_huge{6, 0, 63, 1056672, 64, 7427, 127, 917575};
  // no elements, but sizes whose product (what strides are built from) overflows int64
  RETIKD_CHECK_THROWS_CONTAINING(shape_numel(empty_beside_huge), "more elements than int64 can count");
  RETIKD_CHECK_THROWS_CONTAINING(contiguous_strides(empty_beside_huge), "has strides that int64 cannot hold");
  RETIKD_CHECK_THROWS_CONTAINING(Tensor::empty(empty_beside_huge, DType::float32), "than int64 can count");
  CHECK(shape_numel({6, 0, 1 << 20}) == 0);
  RETIKD_CHECK_THROWS_CONTAINING(shape_numel({int64_t(1) << 32, int64_t(1) << 32}), "more elements than int64 can count");
  CHECK(shape_numel({int64_t(1) << 31, int64_t(1) << 31}) == int64_t(1) << 62);
  CHECK(contiguous_strides({int64_t(1) << 40, int64_t(1) << 22, 2}) == Shape{int64_t(1) << 23, 2, 1});
  CHECK(contiguous_strides({0, 5, 0, 3}) == Shape{15, 3, 3, 1});
}

#ifdef RETIKD_WITH_ONNX
TEST_CASE("hostile: the onnx fuzz seeds reach the success paths of both importers") {
  // Without this, a seed that no longer imports would leave the fuzzer exploring error paths only.
  Generator gen(1);
  nn::VisionTransformer vit(fuzz_onnx::micro_dinov2_config(), gen);
  const io::onnx::ImportReport r =
      io::onnx::load_dinov2(vit, io::onnx::read_model(fuzz_dir() + "/corpus/onnx/dinov2_micro.onnx"));
  CHECK(r.state.size() == vit.state_dict().size());
  const deploy::OnnxStudent s = deploy::load_onnx_student(fuzz_dir() + "/corpus/onnx/efficientnet_b0_w0.1_student_fp16.onnx");
  CHECK(s.info.arch == "efficientnet_b0");
  CHECK(s.model->num_classes() == 2);
}

TEST_CASE("hostile: an ONNX initializer with an empty dimension beside huge ones is refused") {
  // Found by fuzz_onnx: shape (6, 0, 63, 1056672, 64, 7427, 127, 917575) holds no elements, so its empty data
  // matched, but the strides of such a tensor overflow int64.
  RETIKD_CHECK_THROWS_CONTAINING(io::onnx::read_model(fuzz_dir() + "/regressions/onnx/empty_dim_beside_huge_dims.onnx"),
                          "whose product exceeds 2^40 (corrupt shape)");
}

TEST_CASE("hostile: an ONNX graph that repeats a node name is refused") {
  // Found by fuzz_onnx: two nodes named "use_i64_raw" reading different initializers. The importers resolve
  // anonymous weights by the name of the node reading them, so a repeated name could hand the DINOv2 mapping
  // the wrong tensor of the right shape (query and key weights, say) without any error.
  RETIKD_CHECK_THROWS_CONTAINING(io::onnx::read_model(fuzz_dir() + "/regressions/onnx/duplicate_node_name.onnx"),
                          "node name 'use_i64_raw' appears twice");
  const io::onnx::Model m = io::onnx::read_model(fuzz_dir() + "/corpus/onnx/onnx_types.onnx");
  CHECK(m.node("") == nullptr);  // unnamed nodes are never found by name
  CHECK(m.by_consumer("", 0) == nullptr);
}
#endif

TEST_CASE("hostile: every committed fuzz input and crash regression runs clean through its harness") {
  const auto& targets = fuzz::registry();
#ifdef RETIKD_WITH_ONNX
  REQUIRE(targets.size() == 8);
#else
  REQUIRE(targets.size() == 7);
#endif
  int64_t replayed = 0;
  for (const auto& t : targets) {
    int64_t corpus = 0;
    for (const char* kind : {"corpus", "regressions"}) {
      const std::string d = fuzz_dir() + "/" + kind + "/" + t.first;
      for (const auto& name : names_in(d)) {
        if (name == "README.md") continue;
        CAPTURE(d + "/" + name);
        const std::vector<uint8_t> bytes = read_bytes(d + "/" + name);
        CHECK(t.second(bytes.data(), bytes.size()) == 0);
        ++replayed;
        corpus += std::strcmp(kind, "corpus") == 0;
      }
    }
    CAPTURE(t.first);
    CHECK(corpus >= 3);  // each target has seeds committed
  }
  MESSAGE("replayed " << replayed << " fuzz inputs");
}
