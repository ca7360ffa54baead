// tests/test_data.cpp — the data pipeline: decoding every PNG variant and JPEG, the structural checks that
// catch damaged files stb_image would accept, class folders and manifests (class mapping, splits, excluded),
// every bad input under both policies, transforms against hand-computed pixels, and the loader (order,
// determinism across thread counts, the memory and file caches, the bounded prefetch queue, uint8 output).
// The real fundus4 set is checked when present (and must be present under CI).
// Test files are fabricated in temporary folders; nothing is written next to the shared data.
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "retikd/core/paths.hpp"
#include "retikd/data/data.hpp"
#include "test_util.hpp"


using namespace retikd;
using namespace retikd::test;
using namespace retikd::data;

namespace {



// A small image with distinct pixels: value (y, x, c) = (40·y + 13·x + 90·c + seed) mod 256.
ImageU8 pattern(int w, int h, int seed = 0) {
  ImageU8 img(w, h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) img.at(y, x)[c] = static_cast<uint8_t>((40 * y + 13 * x + 90 * c + seed) % 256);
  return img;
}

// A baseline JPEG encoder, small and slow, for fabricating test files (stb_image_write's JPEG writer shifts
// negative ints, which UBSan rightly reports). One component (the grey level of R, G, B) or three (JFIF YCbCr,
// no subsampling); a flat quantiser of 4; Huffman tables of equal-length codes (4 bits for the 12 DC
// categories, 8 bits for the 162 AC run/size symbols), which are valid if not optimal.
std::vector<uint8_t> encode_jpeg(const ImageU8& img, int components = 3) {
  const int W = img.width, H = img.height, Q = 4;
  std::vector<uint8_t> out = {0xFF, 0xD8};
  auto segment = [&](uint8_t marker, const std::vector<uint8_t>& body) {
    out.push_back(0xFF);
    out.push_back(marker);
    out.push_back(uint8_t((body.size() + 2) >> 8));
    out.push_back(uint8_t(body.size() + 2));
    out.insert(out.end(), body.begin(), body.end());
  };
  std::vector<uint8_t> dqt(65, Q);
  dqt[0] = 0x00;
  segment(0xDB, dqt);
  std::vector<uint8_t> sof = {8, uint8_t(H >> 8), uint8_t(H), uint8_t(W >> 8), uint8_t(W), uint8_t(components)};
  for (int c = 0; c < components; ++c) sof.insert(sof.end(), {uint8_t(c + 1), 0x11, 0});
  segment(0xC0, sof);
  std::vector<uint8_t> dc_vals, ac_vals = {0x00, 0xF0};
  for (int v = 0; v < 12; ++v) dc_vals.push_back(uint8_t(v));
  for (int r = 0; r < 16; ++r)
    for (int sz = 1; sz <= 10; ++sz) ac_vals.push_back(uint8_t(r << 4 | sz));
  std::vector<uint8_t> dht = {0x00, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  for (uint8_t v : dc_vals) dht.push_back(v);  // (not insert(): GCC 12 -O3 warns falsely, -Warray-bounds)
  segment(0xC4, dht);
  std::vector<uint8_t> dht_ac = {0x10, 0, 0, 0, 0, 0, 0, 0, 162, 0, 0, 0, 0, 0, 0, 0, 0};
  for (uint8_t v : ac_vals) dht_ac.push_back(v);
  segment(0xC4, dht_ac);
  std::vector<uint8_t> sos = {uint8_t(components)};
  for (int c = 0; c < components; ++c) sos.insert(sos.end(), {uint8_t(c + 1), 0x00});
  sos.insert(sos.end(), {0, 63, 0});
  segment(0xDA, sos);
  // Canonical codes: symbols in table order, consecutive codes of one length.
  int dc_code[12], ac_code[256];
  for (int i = 0; i < 12; ++i) dc_code[dc_vals[i]] = i;
  for (int i = 0; i < 162; ++i) ac_code[ac_vals[i]] = i;
  uint32_t acc = 0;
  int nbits = 0;
  auto put = [&](int bits, int len) {
    for (int i = len - 1; i >= 0; --i) {
      acc = (acc << 1) | ((bits >> i) & 1);
      if (++nbits == 8) {
        out.push_back(uint8_t(acc));
        if (uint8_t(acc) == 0xFF) out.push_back(0x00);  // byte stuffing
        acc = 0;
        nbits = 0;
      }
    }
  };
  auto category = [](int v) {
    int cat = 0;
    while ((std::abs(v) >> cat) > 0) ++cat;
    return cat;
  };
  auto put_value = [&](int v, int cat) {
    if (cat) put(v >= 0 ? v : v + (1 << cat) - 1, cat);
  };
  int zigzag[64], k = 0;
  for (int d = 0; d < 15; ++d)
    for (int i = 0; i <= d; ++i) {
      const int u = d % 2 ? i : d - i, v = d - u;  // (row, col) along the anti-diagonal
      if (u < 8 && v < 8) zigzag[k++] = u * 8 + v;
    }
  auto sample = [&](int c, int y, int x) -> double {
    const uint8_t* p = img.at(std::min(y, H - 1), std::min(x, W - 1));
    const double r = p[0], g = p[1], b = p[2];
    if (components == 1 || c == 0) return 0.299 * r + 0.587 * g + 0.114 * b;
    if (c == 1) return -0.168736 * r - 0.331264 * g + 0.5 * b + 128;
    return 0.5 * r - 0.418688 * g - 0.081312 * b + 128;
  };
  const double pi = 3.14159265358979323846;
  int previous[3] = {0, 0, 0};
  for (int by = 0; by < (H + 7) / 8; ++by)
    for (int bx = 0; bx < (W + 7) / 8; ++bx)
      for (int c = 0; c < components; ++c) {
        int coef[64];
        for (int u = 0; u < 8; ++u)
          for (int v = 0; v < 8; ++v) {
            double sum = 0;
            for (int y = 0; y < 8; ++y)
              for (int x = 0; x < 8; ++x)
                sum += (sample(c, by * 8 + y, bx * 8 + x) - 128) * std::cos((2 * y + 1) * u * pi / 16) *
                       std::cos((2 * x + 1) * v * pi / 16);
            const double cu = u ? 1 : std::sqrt(0.5), cv = v ? 1 : std::sqrt(0.5);
            coef[u * 8 + v] = static_cast<int>(std::lround(0.25 * cu * cv * sum / Q));
          }
        const int diff = coef[0] - previous[c];
        previous[c] = coef[0];
        put(dc_code[category(diff)], 4);
        put_value(diff, category(diff));
        int run = 0;
        for (int i = 1; i < 64; ++i) {
          const int v = coef[zigzag[i]];
          if (v == 0) {
            ++run;
            continue;
          }
          for (; run >= 16; run -= 16) put(ac_code[0xF0], 8);
          const int cat = category(v);
          put(ac_code[run << 4 | cat], 8);
          put_value(v, cat);
          run = 0;
        }
        if (run) put(ac_code[0x00], 8);
      }
  while (nbits) put(1, 1);
  out.push_back(0xFF);
  out.push_back(0xD9);
  return out;
}

// A smooth image, so JPEG's loss stays small.
ImageU8 smooth(int w, int h) {
  ImageU8 img(w, h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      img.at(y, x)[0] = static_cast<uint8_t>(60 + 150 * x / std::max(1, w - 1));
      img.at(y, x)[1] = static_cast<uint8_t>(40 + 120 * y / std::max(1, h - 1));
      img.at(y, x)[2] = 100;
    }
  return img;
}

ProblemKind decode_problem(const std::vector<uint8_t>& bytes, std::string* message = nullptr) {
  try {
    decode_image(bytes, "some/file.bin");
  } catch (const DataError& e) {
    if (message) *message = e.what();
    return e.kind();
  }
  FAIL("decode_image accepted a bad file");
  return ProblemKind::corrupt;
}

bool stb_accepts(const std::vector<uint8_t>& bytes) {
  int w = 0, h = 0, c = 0;
  stbi_uc* px = stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &c, 3);
  stbi_image_free(px);
  return px != nullptr;
}

Image make_image(int c, int h, int w, std::initializer_list<float> values) {
  Image img(c, h, w);
  REQUIRE(values.size() == img.data.size());
  std::copy(values.begin(), values.end(), img.data.begin());
  return img;
}

std::vector<std::string> collect_warnings(std::vector<std::string>& into, DatasetOptions& opt) {
  opt.warnings = [&into](const std::string& w) { into.push_back(w); };
  return into;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Decoding.

TEST_CASE("data: PNG 8-bit RGB round-trips exactly") {
  const ImageU8 img = pattern(5, 3);
  ImageInfo info;
  const ImageU8 out = decode_image(encode_png(img), "rgb.png", &info);
  CHECK(out.width == 5);
  CHECK(out.height == 3);
  CHECK(out.pixels == img.pixels);
  CHECK(info.format == ImageFormat::png);
  CHECK(info.channels == 3);
  CHECK(info.bit_depth == 8);
}

TEST_CASE("data: PNG grey, grey+alpha, RGBA and palette become RGB") {
  const int w = 4, h = 2;
  SUBCASE("grey 8-bit is replicated to three channels") {
    std::vector<uint16_t> s = {0, 10, 20, 30, 200, 210, 220, 255};
    const ImageU8 out = decode_image(encode_png(w, h, PngColor::grey, 8, s), "g.png");
    for (int i = 0; i < w * h; ++i)
      for (int c = 0; c < 3; ++c) CHECK(out.pixels[3 * i + c] == s[i]);
  }
  SUBCASE("grey 1-bit expands to 0 / 255") {
    std::vector<uint16_t> s = {0, 1, 1, 0, 1, 0, 0, 1};
    const ImageU8 out = decode_image(encode_png(w, h, PngColor::grey, 1, s), "g1.png");
    for (int i = 0; i < w * h; ++i) CHECK(out.pixels[3 * i] == (s[i] ? 255 : 0));
  }
  SUBCASE("grey+alpha drops alpha (no compositing, as PIL's convert('RGB'))") {
    std::vector<uint16_t> s;
    for (int i = 0; i < w * h; ++i) {
      s.push_back(static_cast<uint16_t>(30 * i));
      s.push_back(static_cast<uint16_t>(i % 2 ? 0 : 128));  // alpha
    }
    ImageInfo info;
    const ImageU8 out = decode_image(encode_png(w, h, PngColor::grey_alpha, 8, s), "ga.png", &info);
    CHECK(info.channels == 2);
    for (int i = 0; i < w * h; ++i)
      for (int c = 0; c < 3; ++c) CHECK(out.pixels[3 * i + c] == 30 * i);
  }
  SUBCASE("RGBA drops alpha") {
    std::vector<uint16_t> s;
    for (int i = 0; i < w * h; ++i)
      for (int c = 0; c < 4; ++c) s.push_back(static_cast<uint16_t>(c == 3 ? 7 : 10 * i + c));
    ImageInfo info;
    const ImageU8 out = decode_image(encode_png(w, h, PngColor::rgba, 8, s), "rgba.png", &info);
    CHECK(info.channels == 4);
    for (int i = 0; i < w * h; ++i)
      for (int c = 0; c < 3; ++c) CHECK(out.pixels[3 * i + c] == 10 * i + c);
  }
  SUBCASE("palette 8-bit and 4-bit, with and without transparency") {
    const std::vector<uint8_t> palette = {255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30};
    std::vector<uint16_t> s = {0, 1, 2, 3, 3, 2, 1, 0};
    for (int depth : {8, 4, 2}) {
      for (bool trns : {false, true}) {
        const std::vector<uint8_t> alpha = trns ? std::vector<uint8_t>{0, 128} : std::vector<uint8_t>{};
        const ImageU8 out = decode_image(encode_png(w, h, PngColor::palette, depth, s, palette, alpha), "p.png");
        for (int i = 0; i < w * h; ++i)
          for (int c = 0; c < 3; ++c) CHECK(out.pixels[3 * i + c] == palette[3 * s[i] + c]);
      }
    }
  }
}

TEST_CASE("data: PNG 16-bit rounds to the nearest 8-bit value") {
  const int w = 3, h = 2;
  // Values chosen where truncation (v >> 8) and rounding (v·255/65535) differ.
  std::vector<uint16_t> grey = {0, 65535, 0x1280, 0x12F0, 0x7F80, 257};
  auto expect8 = [](uint16_t v) { return static_cast<int>(std::lround(v * 255.0 / 65535.0)); };
  SUBCASE("grey") {
    ImageInfo info;
    const ImageU8 out = decode_image(encode_png(w, h, PngColor::grey, 16, grey), "g16.png", &info);
    CHECK(info.bit_depth == 16);
    for (int i = 0; i < w * h; ++i)
      for (int c = 0; c < 3; ++c) CHECK(out.pixels[3 * i + c] == expect8(grey[i]));
    CHECK(expect8(0x12F0) != (0x12F0 >> 8));  // the case that tells rounding from truncation
  }
  SUBCASE("RGB and RGBA") {
    std::vector<uint16_t> rgb, rgba;
    for (int i = 0; i < w * h; ++i)
      for (int c = 0; c < 4; ++c) {
        const uint16_t v = static_cast<uint16_t>(grey[i] ^ (c * 0x1111));
        if (c < 3) rgb.push_back(v);
        rgba.push_back(c == 3 ? 1000 : v);
      }
    const ImageU8 a = decode_image(encode_png(w, h, PngColor::rgb, 16, rgb), "rgb16.png");
    const ImageU8 b = decode_image(encode_png(w, h, PngColor::rgba, 16, rgba), "rgba16.png");
    for (int i = 0; i < w * h * 3; ++i) {
      CHECK(a.pixels[i] == expect8(rgb[i]));
      CHECK(b.pixels[i] == expect8(rgb[i]));
    }
  }
  SUBCASE("grey+alpha") {
    std::vector<uint16_t> s;
    for (uint16_t v : grey) {
      s.push_back(v);
      s.push_back(65535);
    }
    const ImageU8 out = decode_image(encode_png(w, h, PngColor::grey_alpha, 16, s), "ga16.png");
    for (int i = 0; i < w * h; ++i) CHECK(out.pixels[3 * i + 1] == expect8(grey[i]));
  }
}

TEST_CASE("data: JPEG colour and greyscale decode close to the source") {
  const ImageU8 src = smooth(32, 24);
  SUBCASE("colour") {
    ImageInfo info;
    const ImageU8 out = decode_image(encode_jpeg(src, 3), "c.jpg", &info);
    CHECK(info.format == ImageFormat::jpeg);
    REQUIRE(out.width == 32);
    REQUIRE(out.height == 24);
    double err = 0;
    for (std::size_t i = 0; i < out.pixels.size(); ++i) err += std::abs(int(out.pixels[i]) - int(src.pixels[i]));
    CHECK(err / out.pixels.size() < 2.0);
  }
  SUBCASE("a one-component (greyscale) JPEG becomes three equal channels") {
    ImageInfo info;
    ImageU8 blocks(24, 16);  // 3 × 2 blocks of 8 × 8, each one grey level
    const int level[2][3] = {{40, 200, 128}, {90, 7, 250}};
    for (int y = 0; y < 16; ++y)
      for (int x = 0; x < 24; ++x)
        for (int c = 0; c < 3; ++c) blocks.at(y, x)[c] = static_cast<uint8_t>(level[y / 8][x / 8]);
    const ImageU8 out = decode_image(encode_jpeg(blocks, 1), "g.jpg", &info);
    CHECK(info.channels == 1);
    REQUIRE(out.width == 24);
    REQUIRE(out.height == 16);
    const int expected[2][3] = {{40, 200, 128}, {90, 7, 250}};
    for (int y = 0; y < 16; ++y)
      for (int x = 0; x < 24; ++x) {
        const uint8_t* p = out.at(y, x);
        CHECK(std::abs(int(p[0]) - expected[y / 8][x / 8]) <= 1);
        CHECK(p[0] == p[1]);
        CHECK(p[0] == p[2]);
      }
  }
  SUBCASE("from a file, by content not extension") {
    TempDir dir("data");
    write_bytes(dir / "actually_a_jpeg.png", encode_jpeg(src));
    ImageInfo info;
    const ImageU8 out = load_image(dir / "actually_a_jpeg.png", &info);
    CHECK(info.format == ImageFormat::jpeg);
    CHECK(out.width == 32);
  }
}

TEST_CASE("data: damaged files are refused by name, including those stb_image would decode") {
  const std::vector<uint8_t> jpeg = encode_jpeg(pattern(64, 64));
  const std::vector<uint8_t> png = encode_png(pattern(16, 16));
  std::string msg;

  SUBCASE("empty") {
    CHECK(decode_problem({}, &msg) == ProblemKind::empty);
    CHECK(msg.find("some/file.bin") != std::string::npos);
  }
  SUBCASE("not an image") {
    const std::string text = "path\tlabel\nthis is text, not a picture\n";
    CHECK(decode_problem(std::vector<uint8_t>(text.begin(), text.end()), &msg) == ProblemKind::not_an_image);
    CHECK(msg.find("not an image") != std::string::npos);
  }
  SUBCASE("truncated JPEG") {
    // stb_image 2.27 (Debian 12) rejects this too, but only with "expected marker"; the check names it.
    const std::vector<uint8_t> cut(jpeg.begin(), jpeg.begin() + static_cast<std::ptrdiff_t>(jpeg.size() * 6 / 10));
    CHECK(decode_problem(cut, &msg) == ProblemKind::truncated);
    CHECK(msg.find("some/file.bin") != std::string::npos);
    CHECK(msg.find("truncated JPEG") != std::string::npos);
  }
  SUBCASE("JPEG cut inside its headers") {
    const std::vector<uint8_t> cut(jpeg.begin(), jpeg.begin() + 40);
    CHECK(decode_problem(cut) == ProblemKind::truncated);
  }
  SUBCASE("JPEG missing only its end-of-image marker") {
    const std::vector<uint8_t> cut(jpeg.begin(), jpeg.end() - 2);
    CHECK(decode_problem(cut) == ProblemKind::truncated);
  }
  SUBCASE("JPEG with trailing bytes after the end marker is fine") {
    std::vector<uint8_t> padded = jpeg;
    padded.insert(padded.end(), 100, 0);
    CHECK(decode_image(padded, "padded.jpg").width == 64);
  }
  SUBCASE("truncated PNG") {
    const std::vector<uint8_t> cut(png.begin(), png.end() - 20);
    CHECK(decode_problem(cut, &msg) == ProblemKind::truncated);
    CHECK(msg.find("truncated PNG") != std::string::npos);
  }
  SUBCASE("PNG cut inside its last chunk, which stb_image alone decodes without an error") {
    const std::vector<uint8_t> cut(png.begin(), png.end() - 2);
    CHECK(stb_accepts(cut));  // the reason the structural check exists
    CHECK(decode_problem(cut, &msg) == ProblemKind::truncated);
  }
  SUBCASE("PNG with a flipped bit in its image data (bad CRC), which stb_image alone decodes") {
    std::vector<uint8_t> bad = png;
    bad[bad.size() / 2] ^= 0x10;
    CHECK(stb_accepts(bad));
    CHECK(decode_problem(bad, &msg) == ProblemKind::corrupt);
    CHECK(msg.find("CRC") != std::string::npos);
  }
  SUBCASE("unreadable: missing file, and a folder") {
    TempDir dir("data");
    for (const std::string& p : {dir / "nope.jpg", dir.path()}) {
      try {
        load_image(p);
        FAIL("load_image accepted ", p);
      } catch (const DataError& e) {
        CHECK(e.kind() == ProblemKind::unreadable);
        CHECK(std::string(e.what()).find(p) != std::string::npos);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Datasets.

TEST_CASE("data: class names map case-insensitively to the fixed order") {
  CHECK(parse_class("Cataract") == 0);
  CHECK(parse_class("CATARACT") == 0);
  CHECK(parse_class("dr") == 1);
  CHECK(parse_class("DR") == 1);
  CHECK(parse_class("diabetic_retinopathy") == 1);
  CHECK(parse_class("Diabetic Retinopathy") == 1);
  CHECK(parse_class("glaucoma") == 2);
  CHECK(parse_class(" Normal ") == 3);
  CHECK(parse_class("normals") == -1);
  CHECK(parse_class("2") == -1);
  CHECK(parse_class("2", true) == 2);
  CHECK(parse_class("4", true) == -1);
  CHECK(std::string(class_name(1)) == "DR");
}

TEST_CASE("data: class folders, flat and split, with excluded never loaded") {
  TempDir dir("data");
  const std::vector<uint8_t> png = encode_png(pattern(4, 4));
  SUBCASE("flat, any case and the long DR name") {
    write_bytes(dir / "Normal/a.png", png);
    write_bytes(dir / "Normal/b.png", png);
    write_bytes(dir / "Normal/sub/c.png", png);  // nested below a class folder: still Normal
    write_bytes(dir / "diabetic_retinopathy/d.png", png);
    write_bytes(dir / "CATARACT/e.png", png);
    write_bytes(dir / "glaucoma/.hidden.png", png);
    write_text(dir / "README.txt", "loose files next to class folders are ignored");
    const Dataset ds = Dataset::from_folders(dir.path());
    CHECK(ds.size() == 5);
    const ClassCounts c = ds.class_counts();
    CHECK(c == ClassCounts{1, 1, 0, 3});
    for (const Sample& s : ds.samples) CHECK(s.split.empty());
    const auto w = ds.class_weights();  // N / (K · n_c)
    CHECK(w[0] == doctest::Approx(5.0 / 4.0));
    CHECK(w[1] == doctest::Approx(5.0 / 4.0));
    CHECK(w[2] == 0.0);
    CHECK(w[3] == doctest::Approx(5.0 / 12.0));
    const Tensor wt = ds.class_weight_tensor();
    CHECK(wt.shape() == Shape{4});
    CHECK(wt.at({3}) == doctest::Approx(5.0 / 12.0));
  }
  SUBCASE("split folders") {
    write_bytes(dir / "train/cataract/a.png", png);
    write_bytes(dir / "train/dr/b.png", png);
    write_bytes(dir / "Val/Glaucoma/c.png", png);
    write_bytes(dir / "test/normal/d.png", png);
    write_bytes(dir / "excluded/glaucoma/e.png", png);
    write_bytes(dir / "excluded/whatever/f.png", png);  // never looked into
    write_text(dir / "excluded/glaucoma/g.png", "not even an image: never loaded");
    const Dataset ds = Dataset::from_folders(dir.path());
    CHECK(ds.size() == 4);
    CHECK(ds.excluded == 2);
    CHECK(ds.excluded_counts[2] == 2);
    CHECK(ds.splits() == std::vector<std::string>{"train", "val", "test"});
    CHECK(ds.split("train").size() == 2);
    CHECK(ds.split("validation").size() == 1);
    CHECK(ds.split("test").samples[0].label == 3);
    for (const Sample& s : ds.samples) CHECK(s.path.find("excluded") == std::string::npos);
    // And the loader over it decodes only the four.
    Loader loader(ds, LoaderOptions{});
    CHECK(loader.size() == 4);
  }
  SUBCASE("stratified split of an unsplit set") {
    for (int k = 0; k < 20; ++k) write_bytes(dir / ("normal/" + std::to_string(k) + ".png"), png);
    for (int k = 0; k < 10; ++k) write_bytes(dir / ("dr/" + std::to_string(k) + ".png"), png);
    const Dataset ds = stratified_split(Dataset::from_folders(dir.path()), 0.7, 0.15, 1);
    CHECK(ds.split("train").class_counts() == ClassCounts{0, 7, 0, 14});
    CHECK(ds.split("val").class_counts() == ClassCounts{0, 2, 0, 3});
    CHECK(ds.split("test").class_counts() == ClassCounts{0, 1, 0, 3});
    const Dataset again = stratified_split(Dataset::from_folders(dir.path()), 0.7, 0.15, 1);
    for (std::size_t i = 0; i < ds.samples.size(); ++i) CHECK(ds.samples[i].split == again.samples[i].split);
  }
}

TEST_CASE("data: an unknown class folder under both policies") {
  TempDir dir("data");
  const std::vector<uint8_t> png = encode_png(pattern(4, 4));
  write_bytes(dir / "normal/a.png", png);
  write_bytes(dir / "cataracts/b.png", png);
  SUBCASE("error names the folder") {
    try {
      Dataset::from_folders(dir.path());
      FAIL("accepted an unknown class folder");
    } catch (const DataError& e) {
      CHECK(e.kind() == ProblemKind::unknown_class);
      CHECK(std::string(e.what()).find(dir / "cataracts") != std::string::npos);
    }
  }
  SUBCASE("skip warns once and counts it") {
    std::vector<std::string> warnings;
    DatasetOptions opt;
    opt.policy = BadInput::skip;
    collect_warnings(warnings, opt);
    const Dataset ds = Dataset::from_folders(dir.path(), opt);
    CHECK(ds.size() == 1);
    CHECK(ds.report.skipped() == 1);
    CHECK(ds.report.count(ProblemKind::unknown_class) == 1);
    REQUIRE(warnings.size() == 1);
    CHECK(warnings[0].find("cataracts") != std::string::npos);
  }
}

TEST_CASE("data: manifests in TSV and CSV") {
  TempDir dir("data");
  const std::vector<uint8_t> png = encode_png(pattern(4, 4));
  for (const char* f : {"a.png", "b.png", "c.png", "d.png", "sub/e.png"}) write_bytes(dir / f, png);
  SUBCASE("TSV with extra columns; excluded rows are never checked") {
    write_text(dir / "split.tsv",
               "path\tlabel\tsplit\tgroup\n"
               "a.png\tcataract\ttrain\tg1\n"
               "b.png\tdiabetic_retinopathy\ttrain\tg2\n"
               "c.png\tGlaucoma\tval\tg3\n"
               "sub/e.png\tNORMAL\ttest\tg4\n"
               "gone.png\tnot-a-class\texcluded\tg5\n"  // missing file and unknown label: never looked at
               "d.png\tnormal\texcluded\tg6\n"
               "\n");
    const Dataset ds = Dataset::open(dir.path());  // finds split.tsv by itself
    CHECK(ds.source == dir / "split.tsv");
    CHECK(ds.size() == 4);
    CHECK(ds.excluded == 2);
    CHECK(ds.excluded_counts[3] == 1);
    CHECK(ds.samples[1].label == 1);
    CHECK(ds.samples[3].path == dir / "sub/e.png");
    CHECK(ds.split("train").size() == 2);
    for (const Sample& s : ds.samples) CHECK(s.path != dir / "d.png");
  }
  SUBCASE("CSV: other column order and names, quotes, CRLF, BOM, index labels") {
    write_text(dir / "list.csv",
               "\xEF\xBB\xBF" "Split,Image,Notes,Class\r\n"
               "train,a.png,\"has, a comma\",0\r\n"
               "valid,\"b.png\",\"say \"\"hi\"\"\",DR\r\n"
               "test,c.png,,3\r\n");
    const Dataset ds = Dataset::from_manifest(dir / "list.csv");
    REQUIRE(ds.size() == 3);
    CHECK(ds.samples[0].label == 0);
    CHECK(ds.samples[1].split == "val");
    CHECK(ds.samples[1].path == dir / "b.png");
    CHECK(ds.samples[2].label == 3);
  }
  SUBCASE("a root other than the manifest's folder") {
    write_text(dir / "lists/m.tsv", "path\tlabel\tsplit\na.png\tnormal\ttrain\n");
    const Dataset ds = Dataset::open(dir.path(), dir / "lists/m.tsv");
    REQUIRE(ds.size() == 1);
    CHECK(ds.samples[0].path == dir / "a.png");
  }
}

TEST_CASE("data: bad manifest rows under both policies") {
  TempDir dir("data");
  const std::vector<uint8_t> png = encode_png(pattern(4, 4));
  write_bytes(dir / "a.png", png);
  write_bytes(dir / "b.png", png);
  write_text(dir / "split.tsv",
             "path\tlabel\tsplit\n"
             "a.png\tnormal\ttrain\n"
             "missing.png\tnormal\ttrain\n"  // file does not exist
             "b.png\tretinitis\ttrain\n"     // unknown label
             "a.png\tnormal\ttrain\n"        // listed twice (the same class and split: the repeat is dropped)
             "b.png\tnormal\n"               // too few fields
             "b.png\tnormal\ttset\n");       // unknown split
  SUBCASE("error: one exception naming each file and problem") {
    try {
      Dataset::open(dir.path());
      FAIL("accepted a bad manifest");
    } catch (const DataError& e) {
      const std::string what = e.what();
      CHECK(e.problems().size() == 5);
      CHECK(what.find(dir / "missing.png") != std::string::npos);
      CHECK(what.find("does not exist") != std::string::npos);
      CHECK(what.find("unknown label 'retinitis'") != std::string::npos);
      CHECK(what.find("listed twice") != std::string::npos);
      CHECK(what.find("unknown split 'tset'") != std::string::npos);
      CHECK(what.find("split.tsv:6: row has 2 fields") != std::string::npos);
      CHECK(what.find("split.tsv line 7") != std::string::npos);
    }
  }
  SUBCASE("skip: the good row stays, each problem is warned about once and counted") {
    std::vector<std::string> warnings;
    DatasetOptions opt;
    opt.policy = BadInput::skip;
    collect_warnings(warnings, opt);
    const Dataset ds = Dataset::open(dir.path(), "", opt);
    REQUIRE(ds.size() == 1);
    CHECK(ds.samples[0].path == dir / "a.png");
    CHECK(ds.report.count(ProblemKind::missing_file) == 1);
    CHECK(ds.report.count(ProblemKind::unknown_label) == 1);
    CHECK(ds.report.count(ProblemKind::duplicate) == 1);
    CHECK(ds.report.count(ProblemKind::bad_row) == 2);
    CHECK(warnings.size() == 5);
    CHECK(ds.report.summary().find("skipped 5 bad inputs") != std::string::npos);
  }
}

TEST_CASE("data: a manifest without a required column fails under both policies") {
  TempDir dir("data");
  write_bytes(dir / "a.png", encode_png(pattern(4, 4)));
  write_text(dir / "split.tsv", "path\tlabel\tgroup\na.png\tnormal\tg\n");
  for (BadInput policy : {BadInput::error, BadInput::skip}) {
    DatasetOptions opt;
    opt.policy = policy;
    try {
      Dataset::open(dir.path(), "", opt);
      FAIL("accepted a manifest without a split column");
    } catch (const DataError& e) {
      CHECK(e.kind() == ProblemKind::missing_column);
      const std::string what = e.what();
      CHECK(what.find(dir / "split.tsv") != std::string::npos);
      CHECK(what.find("no split column") != std::string::npos);
    }
  }
  CHECK_THROWS_AS(Dataset::open(dir / "no_such_folder"), DataError);
  CHECK_THROWS_AS(Dataset::from_manifest(dir / "no_such.tsv"), DataError);
}

TEST_CASE("data: bad image files under both policies, found before training starts") {
  TempDir dir("data");
  write_bytes(dir / "normal/good1.png", encode_png(pattern(8, 8, 1)));
  write_bytes(dir / "normal/good2.jpg", encode_jpeg(smooth(8, 8)));
  write_bytes(dir / "dr/good3.png", encode_png(pattern(8, 8, 3)));
  write_bytes(dir / "dr/empty.png", {});
  write_text(dir / "dr/notes.txt", "a text file in a class folder");
  const std::vector<uint8_t> jpeg = encode_jpeg(smooth(48, 48));
  write_bytes(dir / "glaucoma/cut.jpg", std::vector<uint8_t>(jpeg.begin(), jpeg.begin() + static_cast<std::ptrdiff_t>(jpeg.size() / 2)));
  const std::vector<uint8_t> png = encode_png(pattern(8, 8));
  write_bytes(dir / "glaucoma/cut.png", std::vector<uint8_t>(png.begin(), png.end() - 30));
  std::vector<uint8_t> flipped = png;
  flipped[flipped.size() / 2] ^= 1;
  write_bytes(dir / "cataract/flipped.png", flipped);
  REQUIRE(::symlink((dir / "nowhere.png").c_str(), (dir / "normal/dangling.png").c_str()) == 0);  // unreadable
  REQUIRE(::mkfifo((dir / "dr/pipe.jpg").c_str(), 0600) == 0);  // unreadable, and must not block the reader
  const std::vector<std::string> bad = {dir / "dr/empty.png", dir / "dr/notes.txt", dir / "glaucoma/cut.jpg",
                                        dir / "glaucoma/cut.png", dir / "cataract/flipped.png",
                                        dir / "normal/dangling.png", dir / "dr/pipe.jpg"};
  LoaderOptions opt;
  opt.batch_size = 2;
  opt.num_workers = 2;
  opt.transform = compose({make<Resize>(8, 8, true)});

  SUBCASE("error: prepare() throws one error listing every bad file") {
    Loader loader(Dataset::from_folders(dir.path()), opt);
    try {
      loader.prepare();
      FAIL("the loader accepted bad files");
    } catch (const DataError& e) {
      const std::string what = e.what();
      CHECK(e.problems().size() == bad.size());
      for (const std::string& p : bad) CHECK_MESSAGE(what.find(p) != std::string::npos, p);
      CHECK(what.find("truncated JPEG") != std::string::npos);
      CHECK(what.find("--skip-bad") != std::string::npos);
    }
  }
  SUBCASE("skip: three good images; each bad one warned about once over several epochs") {
    // (unreadable files are a dangling link and a FIFO: running as root, permissions would not stop a read)
    std::vector<std::string> warnings;
    std::mutex m;
    opt.policy = BadInput::skip;
    opt.warnings = [&](const std::string& w) {
      std::lock_guard<std::mutex> lock(m);
      warnings.push_back(w);
    };
    Loader loader(Dataset::from_folders(dir.path()), opt);
    CHECK(loader.size() == 3);
    for (int epoch = 0; epoch < 3; ++epoch) {
      loader.start_epoch(epoch);
      Batch b;
      int64_t seen = 0;
      while (loader.next(b)) seen += b.size();
      CHECK(seen == 3);
    }
    CHECK(warnings.size() == bad.size());
    CHECK(loader.report().skipped() == 7);
    CHECK(loader.report().count(ProblemKind::unreadable) == 2);
    CHECK(loader.report().count(ProblemKind::truncated) == 2);
    CHECK(loader.report().count(ProblemKind::empty) == 1);
    CHECK(loader.report().count(ProblemKind::not_an_image) == 1);
    CHECK(loader.report().count(ProblemKind::corrupt) == 1);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Transforms.

TEST_CASE("data: flips and crops move pixels where expected") {
  // One channel, 2 × 3:  1 2 3 / 4 5 6
  const Image img = make_image(1, 2, 3, {1, 2, 3, 4, 5, 6});
  check_close(hflip(img).data, {3, 2, 1, 6, 5, 4}, 0, 1e-5);
  check_close(vflip(img).data, {4, 5, 6, 1, 2, 3}, 0, 1e-5);
  check_close(crop(img, 0, 1, 2, 2).data, {2, 3, 5, 6}, 0, 1e-5);
  check_close(crop(img, -1, 2, 2, 2, 9.0f).data, {9, 9, 3, 9}, 0, 1e-5);  // outside the image: fill
  // centre crop: top = round_half_even((H − h)/2)
  Image tall(1, 7, 1);
  for (int y = 0; y < 7; ++y) tall.data[y] = float(y);
  check_close(center_crop(tall, 2, 1).data, {2, 3}, 0, 1e-5);  // (7−2)/2 = 2.5 → 2
  Image five(1, 5, 1);
  for (int y = 0; y < 5; ++y) five.data[y] = float(y);
  check_close(center_crop(five, 2, 1).data, {2, 3}, 0, 1e-5);  // (5−2)/2 = 1.5 → 2
  check_close(center_crop(img, 4, 3).data, {0, 0, 0, 1, 2, 3, 4, 5, 6, 0, 0, 0}, 0, 1e-5);  // padded with zeros
}

TEST_CASE("data: rotation by multiples of 90 degrees permutes pixels exactly") {
  for (int n : {3, 4}) {
    Image img(2, n, n);
    for (std::size_t i = 0; i < img.data.size(); ++i) img.data[i] = float(i + 1);
    const Image r90 = rotate(img, 90.0);
    const Image r180 = rotate(img, 180.0);
    const Image r270 = rotate(img, -90.0);
    for (int c = 0; c < 2; ++c)
      for (int y = 0; y < n; ++y)
        for (int x = 0; x < n; ++x) {
          CHECK(r90.at(c, y, x) == img.at(c, x, n - 1 - y));  // counter-clockwise: numpy.rot90
          CHECK(r180.at(c, y, x) == img.at(c, n - 1 - y, n - 1 - x));
          CHECK(r270.at(c, y, x) == img.at(c, n - 1 - x, y));
        }
  }
  // A 2 × 2 by hand: a b / c d → b d / a c
  check_close(rotate(make_image(1, 2, 2, {1, 2, 3, 4}), 90.0).data, {2, 4, 1, 3}, 0, 1e-5);
  // 45°: the centre stays, the corners of a constant image fall outside the source and blend with the fill.
  Image ones(1, 9, 9, 1.0f);
  const Image r45 = rotate(ones, 45.0);
  CHECK(r45.at(0, 4, 4) == doctest::Approx(1.0));
  CHECK(r45.at(0, 0, 0) == doctest::Approx(0.0));
  CHECK(r45.at(0, 0, 4) == doctest::Approx(1.0));
}

TEST_CASE("data: bilinear resize matches hand-computed values") {
  // Enlarging 2 → 4 (half-pixel centres): a, ¾a + ¼b, ¼a + ¾b, b.
  const Image row = make_image(1, 1, 2, {0, 8});
  check_close(resize(row, 1, 4).data, {0, 2, 6, 8}, 0, 1e-5);
  // In both directions at once: 2 × 2 → 3 × 3: centres at 1/3 px steps.
  const Image sq = make_image(1, 2, 2, {0, 6, 12, 18});
  // x: centre (x + ½)·⅔ → 1/3, 1, 5/3 → weights: x0: p0 only; x1: ½, ½; x2: p1 only.
  check_close(resize(sq, 3, 3).data, {0, 3, 6, 6, 9, 12, 12, 15, 18}, 0, 1e-5);
  // Shrinking 4 → 2: antialiased (PIL): taps ¾, ¾, ¼ over 1.75; plain bilinear: the two middle neighbours.
  const Image four = make_image(1, 1, 4, {0, 7, 14, 21});
  check_close(resize(four, 1, 2, true).data, {(0.75f * 0 + 0.75f * 7 + 0.25f * 14) / 1.75f,
                                              (0.25f * 7 + 0.75f * 14 + 0.75f * 21) / 1.75f}, 0, 1e-5);
  check_close(resize(four, 1, 2, false).data, {3.5f, 17.5f}, 0, 1e-5);
  // Constant images stay constant; identity size is the identity.
  Image c(3, 5, 7, 0.25f);
  for (float v : resize(c, 11, 3).data) CHECK(v == doctest::Approx(0.25f));
  Image p(1, 3, 3);
  for (std::size_t i = 0; i < 9; ++i) p.data[i] = float(i);
  check_close(resize(p, 3, 3).data, p.data, 0, 1e-5);
  // Resize(shorter side), torchvision's size rule.
  CHECK(shorter_side_size(100, 200, 50) == std::pair<int, int>{50, 100});
  CHECK(shorter_side_size(300, 200, 64) == std::pair<int, int>{96, 64});
  CHECK(shorter_side_size(333, 500, 224) == std::pair<int, int>{224, 336});
  Generator g(0);
  CHECK((*make<Resize>(64))(Image(3, 300, 200), g).shape() == Shape{3, 96, 64});
}

TEST_CASE("data: normalise with the ImageNet constants") {
  Image img = make_image(3, 1, 2, {0.485f, 1.0f, 0.456f, 0.0f, 0.406f, 0.5f});
  Generator g(0);
  make<Normalize>()->apply(img, g);
  check_close(img.data, {0.0f, (1.0f - 0.485f) / 0.229f, 0.0f, -0.456f / 0.224f, 0.0f, (0.5f - 0.406f) / 0.225f}, 0,
              1e-5);
}

TEST_CASE("data: colour adjustments follow torchvision's definitions") {
  // Two pixels: (0.2, 0.4, 0.6) and (0.8, 0.1, 0.3).
  const Image base = make_image(3, 1, 2, {0.2f, 0.8f, 0.4f, 0.1f, 0.6f, 0.3f});
  const float g0 = 0.2989f * 0.2f + 0.587f * 0.4f + 0.114f * 0.6f;
  const float g1 = 0.2989f * 0.8f + 0.587f * 0.1f + 0.114f * 0.3f;
  SUBCASE("brightness scales and clamps") {
    Image img = base;
    adjust_brightness(img, 1.5);
    check_close(img.data, {0.3f, 1.0f, 0.6f, 0.15f, 0.9f, 0.45f}, 0, 1e-5);
  }
  SUBCASE("contrast blends with the mean grey level") {
    Image img = base;
    adjust_contrast(img, 0.5);
    const float m = 0.5f * (g0 + g1);
    check_close(img.data, {0.5f * 0.2f + 0.5f * m, 0.5f * 0.8f + 0.5f * m, 0.5f * 0.4f + 0.5f * m,
                           0.5f * 0.1f + 0.5f * m, 0.5f * 0.6f + 0.5f * m, 0.5f * 0.3f + 0.5f * m}, 0, 1e-5);
  }
  SUBCASE("saturation blends with each pixel's grey") {
    Image img = base;
    adjust_saturation(img, 0.0);
    check_close(img.data, {g0, g1, g0, g1, g0, g1}, 0, 1e-5);
    img = base;
    adjust_saturation(img, 2.0);
    check_close(img.data, {std::max(0.f, 2 * 0.2f - g0), std::min(1.f, 2 * 0.8f - g1), 2 * 0.4f - g0,
                           std::max(0.f, 2 * 0.1f - g1), std::min(1.f, 2 * 0.6f - g0), std::max(0.f, 2 * 0.3f - g1)},
                0, 1e-5);
  }
  SUBCASE("hue rotates in HSV") {
    Image red = make_image(3, 1, 1, {1.0f, 0.0f, 0.0f});
    adjust_hue(red, 1.0 / 3.0);
    check_close(red.data, {0.0f, 1.0f, 0.0f}, 0, 1e-5);
    Image mixed = make_image(3, 1, 1, {0.8f, 0.4f, 0.2f});  // h = 1/18, s = 0.75, v = 0.8
    adjust_hue(mixed, 0.5);                                  // h = 10/18 → sector 3: (p, q, v)
    check_close(mixed.data, {0.2f, 0.6f, 0.8f}, 0, 1e-5f);
    Image grey = make_image(3, 1, 1, {0.3f, 0.3f, 0.3f});
    adjust_hue(grey, 0.25);
    check_close(grey.data, {0.3f, 0.3f, 0.3f}, 0, 1e-5);
    Image same = base;
    adjust_hue(same, 0.0);
    check_close(same.data, base.data, 0, 1e-6f);
  }
  SUBCASE("ColorJitter draws factors from torchvision's ranges") {
    // brightness only: each output is f·x with f in [0.9, 1.1].
    const Image flat(3, 2, 2, 0.5f);
    for (uint64_t s = 0; s < 50; ++s) {
      Generator g(s);
      const Image out = (*make<ColorJitter>(0.1, 0, 0, 0))(flat, g);
      CHECK(out.data[0] >= 0.45f - 1e-6f);
      CHECK(out.data[0] <= 0.55f + 1e-6f);
      for (float v : out.data) CHECK(v == out.data[0]);
    }
    Generator a(7), b(7);
    const TransformPtr cj = make<ColorJitter>(0.1, 0.1, 0.1, 0.05);
    CHECK((*cj)(base, a).data == (*cj)(base, b).data);
  }
}

TEST_CASE("data: random transforms stay in range and are reproducible per generator") {
  Image img(3, 40, 60);
  for (std::size_t i = 0; i < img.data.size(); ++i) img.data[i] = float(i % 97) / 97.0f;
  SUBCASE("RandomResizedCrop boxes respect scale and ratio") {
    const RandomResizedCrop rrc(32);
    int fallback = 0;
    for (uint64_t s = 0; s < 300; ++s) {
      Generator g(s);
      const Box b = rrc.sample_box(40, 60, g);
      CHECK(b.top >= 0);
      CHECK(b.left >= 0);
      CHECK(b.top + b.height <= 40);
      CHECK(b.left + b.width <= 60);
      const double area = double(b.height) * b.width / (40.0 * 60.0), ratio = double(b.width) / b.height;
      if (area >= 0.08 - 0.02 && area <= 1.0 && ratio >= 0.75 - 0.06 && ratio <= 4.0 / 3 + 0.06) continue;
      ++fallback;
    }
    CHECK(fallback == 0);
    Generator g(1);
    CHECK(rrc(img, g).shape() == Shape{3, 32, 32});
  }
  SUBCASE("RandomCrop returns a window of the input") {
    Generator g(3);
    const Image out = (*make<RandomCrop>(10))(img, g);
    REQUIRE(out.shape() == Shape{3, 10, 10});
    bool found = false;
    for (int t = 0; t <= 30 && !found; ++t)
      for (int l = 0; l <= 50 && !found; ++l) found = crop(img, t, l, 10, 10).data == out.data;
    CHECK(found);
    CHECK_THROWS_AS((*make<RandomCrop>(50))(img, g), Error);
    CHECK((*make<RandomCrop>(50, true))(img, g).shape() == Shape{3, 50, 50});
  }
  SUBCASE("flips happen about half the time") {
    int flipped = 0;
    for (uint64_t s = 0; s < 400; ++s) {
      Generator g(s);
      flipped += (*make<RandomHorizontalFlip>())(img, g).data != img.data;
    }
    CHECK(flipped > 150);
    CHECK(flipped < 250);
  }
  SUBCASE("patch masking covers round(ratio · cells) patches") {
    Image ones(3, 10, 13, 1.0f);  // 4 × 5 cells of 3 px (partial at the edges)
    Generator g(5);
    const Image out = (*make<RandomPatchMask>(3, 0.25, 0.0f))(ones, g);
    int cells = 0;
    for (int cy = 0; cy < 4; ++cy)
      for (int cx = 0; cx < 5; ++cx) cells += out.at(0, cy * 3, cx * 3) == 0.0f;
    CHECK(cells == 5);
  }
  SUBCASE("the full training pipeline depends only on the generator") {
    const TransformPtr t = train_transform(32);
    Generator a = Generator::derive(9, 2, 11), b = Generator::derive(9, 2, 11), c = Generator::derive(9, 3, 11);
    const Image x = (*t)(img, a), y = (*t)(img, b), z = (*t)(img, c);
    CHECK(x.shape() == Shape{3, 32, 32});
    CHECK(x.data == y.data);
    CHECK(x.data != z.data);
    CHECK(t->is_random());
    CHECK(!eval_transform(32)->is_random());
    CHECK(t->describe().find("ColorJitter(0.1, 0.1, 0.1, 0.05)") != std::string::npos);
  }
}

TEST_CASE("data: FundusCrop trims the black border around the field of view") {
  // A bright disc of radius 10 centred at (y 15, x 30) in a black 40 × 70 image.
  Image img(3, 40, 70, 0.0f);
  for (int y = 0; y < 40; ++y)
    for (int x = 0; x < 70; ++x)
      if ((y - 15) * (y - 15) + (x - 30) * (x - 30) <= 100)
        for (int c = 0; c < 3; ++c) img.at(c, y, x) = 0.6f;
  Box b;
  REQUIRE(fundus_box(img, b));
  CHECK(b.top == 5);
  CHECK(b.left == 20);
  CHECK(b.height == 21);
  CHECK(b.width == 21);
  Generator g(0);
  CHECK((*make<FundusCrop>(true))(img, g).shape() == Shape{3, 21, 21});
  // A wide field gets padded to a square, centred.
  Image wide(3, 20, 60, 0.0f);
  for (int y = 5; y < 15; ++y)
    for (int x = 10; x < 50; ++x) wide.at(1, y, x) = 0.5f;
  const Image sq = (*make<FundusCrop>(true))(wide, g);
  CHECK(sq.shape() == Shape{3, 40, 40});
  CHECK(sq.at(1, 0, 0) == 0.0f);
  CHECK(sq.at(1, 20, 20) == 0.5f);
  // All black: unchanged.
  Image black(3, 8, 8, 0.0f);
  CHECK((*make<FundusCrop>())(black, g).shape() == Shape{3, 8, 8});
}

// ---------------------------------------------------------------------------------------------------------
// Loader.

namespace {

// A synthetic source that counts decodes (to see the cache work) and can be slowed down.
class CountingSource : public SyntheticSource {
 public:
  CountingSource(int64_t n, uint64_t seed, int size) : SyntheticSource(n, seed, make_opts(size)) {}
  ImageU8 load(int64_t i, ImageInfo* info) const override {
    ++loads;
    return SyntheticSource::load(i, info);
  }
  static SyntheticOptions make_opts(int size) {
    SyntheticOptions o;
    o.size = size;
    return o;
  }
  mutable std::atomic<int64_t> loads{0};
};

std::vector<Batch> run_epoch(Loader& loader, int64_t epoch) {
  loader.start_epoch(epoch);
  std::vector<Batch> out;
  Batch b;
  while (loader.next(b)) out.push_back(b);
  return out;
}

std::vector<float> floats(const Tensor& t) { return t.to_vector<float>(); }

}  // namespace

TEST_CASE("data: loader batches, shuffle, drop_last and labels") {
  auto src = std::make_shared<CountingSource>(21, 3, 16);
  LoaderOptions opt;
  opt.batch_size = 4;
  opt.num_workers = 2;
  opt.seed = 11;
  Loader loader(src, opt);
  CHECK(loader.num_batches() == 6);
  const std::vector<Batch> e0 = run_epoch(loader, 0), e1 = run_epoch(loader, 1);
  REQUIRE(e0.size() == 6);
  CHECK(e0[0].images.shape() == Shape{4, 3, 16, 16});
  CHECK(e0[0].labels.dtype() == DType::int64);
  CHECK(e0.back().images.shape() == Shape{1, 3, 16, 16});
  std::multiset<int64_t> seen;
  std::vector<int64_t> order0, order1;
  for (const Batch& b : e0)
    for (int64_t j = 0; j < b.size(); ++j) {
      seen.insert(b.indices[j]);
      order0.push_back(b.indices[j]);
      CHECK(b.labels.at({j}) == synthetic_label(b.indices[j]));
    }
  for (const Batch& b : e1) order1.insert(order1.end(), b.indices.begin(), b.indices.end());
  CHECK(seen.size() == 21);
  CHECK(std::set<int64_t>(seen.begin(), seen.end()).size() == 21);
  CHECK(order0 != order1);  // reshuffled per epoch
  // The pixels are the decoded image / 255 with no transform.
  const ImageU8 first = synthetic_fundus(3, e0[0].indices[0], CountingSource::make_opts(16));
  CHECK(e0[0].images.at({0, 1, 5, 7}) == doctest::Approx(first.at(5, 7)[1] / 255.0));

  opt.drop_last = true;
  opt.shuffle = false;
  Loader tail(std::make_shared<CountingSource>(21, 3, 16), opt);
  const std::vector<Batch> e = run_epoch(tail, 0);
  CHECK(e.size() == 5);
  CHECK(e[1].indices == std::vector<int64_t>{4, 5, 6, 7});
}

TEST_CASE("data: the same seed gives the same batches whatever the thread count") {
  std::vector<std::vector<float>> reference;
  std::vector<std::vector<int64_t>> reference_idx;
  for (int workers : {0, 1, 3}) {
    LoaderOptions opt;
    opt.batch_size = 5;
    opt.num_workers = workers;
    opt.prefetch = 2;
    opt.seed = 42;
    opt.transform = train_transform(24);
    Loader loader(std::make_shared<SyntheticSource>(23, 8, CountingSource::make_opts(32)), opt);
    std::vector<std::vector<float>> got;
    std::vector<std::vector<int64_t>> idx;
    for (int64_t epoch : {0, 1})
      for (const Batch& b : run_epoch(loader, epoch)) {
        got.push_back(floats(b.images));
        idx.push_back(b.indices);
      }
    if (reference.empty()) {
      reference = got;
      reference_idx = idx;
      continue;
    }
    CHECK_MESSAGE(got == reference, "batches differ with ", workers, " workers");
    CHECK(idx == reference_idx);
  }
  // Another seed changes them.
  LoaderOptions opt;
  opt.batch_size = 5;
  opt.seed = 43;
  opt.transform = train_transform(24);
  Loader other(std::make_shared<SyntheticSource>(23, 8, CountingSource::make_opts(32)), opt);
  CHECK(floats(run_epoch(other, 0)[0].images) != reference[0]);
}

TEST_CASE("data: shards of a data-parallel run (train: fixed owners, equal counts; cover: every sample once)") {
  constexpr int kShards = 3;
  constexpr int64_t kCount = 23;  // not a multiple of the shards: the train mode leaves out ⌊23/3⌋ = 7 · 3 = 21
  auto src = std::make_shared<CountingSource>(kCount, 3, 16);
  auto shard_loader = [&](int shard, ShardMode mode, int workers) {
    LoaderOptions opt;
    opt.batch_size = 3;
    opt.num_workers = workers;
    opt.seed = 5;
    opt.shuffle = mode == ShardMode::train;
    opt.num_shards = kShards;
    opt.shard = shard;
    opt.shard_mode = mode;
    return std::make_shared<Loader>(src, opt);
  };
  std::vector<std::set<int64_t>> owned(kShards);
  for (int64_t epoch : {1, 2, 3}) {
    std::set<int64_t> epoch_seen;
    for (int r = 0; r < kShards; ++r) {
      auto loader = shard_loader(r, ShardMode::train, r % 2);
      CHECK(loader->size() == kCount);
      CHECK(loader->shard_size() == kCount / kShards);
      CHECK(loader->num_batches() == 3);  // 7 samples in batches of 3: the same count on every rank
      std::vector<int64_t> order;
      for (const Batch& b : run_epoch(*loader, epoch)) order.insert(order.end(), b.indices.begin(), b.indices.end());
      CHECK(order.size() == static_cast<std::size_t>(kCount / kShards));
      CHECK(loader->images_in_memory() == (r == 2 ? 7 : 8));  // its own shard's images only, not all 23
      for (int64_t i : order) {
        CHECK(epoch_seen.insert(i).second);  // disjoint across shards
        owned[static_cast<std::size_t>(r)].insert(i);
      }
      // The same shard from (seed, epoch) alone: another worker count gives the same order.
      std::vector<int64_t> again;
      for (const Batch& b : run_epoch(*shard_loader(r, ShardMode::train, 2), epoch))
        again.insert(again.end(), b.indices.begin(), b.indices.end());
      CHECK(again == order);
    }
    CHECK(epoch_seen.size() == static_cast<std::size_t>(kShards * (kCount / kShards)));
  }
  // Ownership is fixed: over the epochs each shard saw at most its ⌈23/3⌉ = 8 own samples, and together all 23.
  std::set<int64_t> all;
  for (const auto& o : owned) {
    CHECK(o.size() <= 8);
    all.insert(o.begin(), o.end());
  }
  CHECK(all.size() == static_cast<std::size_t>(kCount));
  // cover: contiguous blocks in the source order, positions numbered over all shards.
  std::vector<int64_t> covered(kCount, -1);
  for (int r = 0; r < kShards; ++r) {
    auto loader = shard_loader(r, ShardMode::cover, 0);
    CHECK(loader->images_in_memory() == 0);
    CHECK(loader->shard_size() == (r + 1) * kCount / kShards - r * kCount / kShards);
    CHECK(loader->images_in_memory() == loader->shard_size());
    for (const Batch& b : run_epoch(*loader, 0))
      for (int64_t j = 0; j < b.size(); ++j) {
        REQUIRE(b.position + j < kCount);
        CHECK(covered[static_cast<std::size_t>(b.position + j)] == -1);
        covered[static_cast<std::size_t>(b.position + j)] = b.indices[static_cast<std::size_t>(j)];
      }
  }
  for (int64_t i = 0; i < kCount; ++i) CHECK(covered[static_cast<std::size_t>(i)] == i);
}

TEST_CASE("data: shards agree on bad files (skip policy) and on the count every rank can fill") {
  // Items 0, 1, 2, 5 are corrupt: every shard must know it (the epoch count and cover positions depend on it).
  struct BrokenSource : SyntheticSource {
    BrokenSource() : SyntheticSource(20, 4, CountingSource::make_opts(16)) {}
    ImageU8 load(int64_t i, ImageInfo* info) const override {
      if (i <= 2 || i == 5) throw DataError(Problem{name(i), ProblemKind::corrupt, "corrupt on purpose"});
      return SyntheticSource::load(i, info);
    }
  };
  auto src = std::make_shared<BrokenSource>();
  std::vector<int64_t> counts, cover_rows;
  std::set<int64_t> seen;
  for (int r = 0; r < 2; ++r) {
    LoaderOptions opt;
    opt.batch_size = 4;
    opt.num_workers = 0;
    opt.policy = BadInput::skip;
    opt.warnings = nullptr;
    opt.num_shards = 2;
    opt.shard = r;
    Loader train(src, opt);
    counts.push_back(train.shard_size());
    for (const Batch& b : run_epoch(train, 1))
      for (int64_t i : b.indices) {
        CHECK(i != 0);
        CHECK(i != 5);
        CHECK(seen.insert(i).second);
      }
    opt.shuffle = false;
    opt.shard_mode = ShardMode::cover;
    Loader eval(src, opt);
    for (const Batch& b : run_epoch(eval, 0))
      for (int64_t j = 0; j < b.size(); ++j) {
        CHECK(b.position + j == static_cast<int64_t>(cover_rows.size()));  // positions among the 16 usable
        cover_rows.push_back(b.indices[static_cast<std::size_t>(j)]);
      }
  }
  CHECK(counts[0] == counts[1]);  // the smaller shard's usable count, on both
  CHECK(counts[0] <= 8);
  CHECK(cover_rows.size() == 16);
  CHECK(cover_rows.front() == 3);
}

TEST_CASE("data: epochs after the first decode nothing; without the cache each epoch decodes") {
  LoaderOptions opt;
  opt.batch_size = 8;
  opt.num_workers = 2;
  opt.transform = compose({make<RandomHorizontalFlip>()});
  auto cached = std::make_shared<CountingSource>(20, 1, 16);
  Loader a(cached, opt);
  for (int e = 0; e < 3; ++e) run_epoch(a, e);
  CHECK(cached->loads == 20);
  opt.cache = false;
  auto uncached = std::make_shared<CountingSource>(20, 1, 16);
  Loader b(uncached, opt);
  for (int e = 0; e < 3; ++e) run_epoch(b, e);
  CHECK(uncached->loads == 20 + 3 * 20);  // the checking pass, then every epoch
}

TEST_CASE("data: the binary cache file is reused, and rebuilt when a file changes") {
  TempDir dir("data");
  for (int k = 0; k < 6; ++k)
    write_bytes(dir / ("normal/" + std::to_string(k) + ".png"), encode_png(synthetic_fundus(2, k, CountingSource::make_opts(20))));
  write_bytes(dir / "dr/bad.jpg", {0xFF, 0xD8, 0xFF, 0xE0, 0x00});
  std::vector<std::string> notes;
  LoaderOptions opt;
  opt.batch_size = 4;
  opt.cache_file = "auto";
  opt.policy = BadInput::skip;
  opt.preprocess = compose({make<FundusCrop>(), make<Resize>(12, 12, true)});
  opt.transform = compose({make<RandomHorizontalFlip>(), make<Normalize>()});
  opt.warnings = [&](const std::string& w) { notes.push_back(w); };
  std::vector<float> first_batch;
  std::string path;
  {
    Loader loader(Dataset::from_folders(dir.path()), opt);
    CHECK(loader.size() == 6);
    CHECK(!loader.loaded_from_cache_file());
    path = loader.cache_path();
    CHECK(path.find(dir / ".retikd_cache/cache-") == 0);
    CHECK(fs::is_regular_file(path));
    first_batch = floats(run_epoch(loader, 0)[0].images);
  }
  {
    notes.clear();
    Loader loader(Dataset::from_folders(dir.path()), opt);
    CHECK(loader.size() == 6);
    CHECK(loader.loaded_from_cache_file());
    CHECK(loader.report().count(ProblemKind::truncated) == 1);  // the bad file is remembered, and warned about
    CHECK(notes.size() == 1);
    CHECK(floats(run_epoch(loader, 0)[0].images) == first_batch);
  }
  {
    // Under the error policy the remembered bad file still stops the run.
    LoaderOptions strict = opt;
    strict.policy = BadInput::error;
    Loader loader(Dataset::from_folders(dir.path()), strict);
    CHECK_THROWS_AS(loader.prepare(), DataError);
  }
  {
    // Rewrite one image (new size and time): the key changes and everything is decoded again.
    ::usleep(20000);
    write_bytes(dir / "normal/3.png", encode_png(pattern(30, 20)));
    notes.clear();
    Loader loader(Dataset::from_folders(dir.path()), opt);
    CHECK(loader.size() == 6);
    CHECK(!loader.loaded_from_cache_file());
    bool stale_note = false;
    for (const std::string& n : notes) stale_note = stale_note || n.find("out of date") != std::string::npos;
    CHECK(stale_note);
  }
  {
    // A damaged cache file is ignored, with a note, never trusted.
    std::vector<uint8_t> bytes;
    {
      std::ifstream in(path, std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    bytes.resize(bytes.size() / 2);
    write_bytes(path, bytes);
    notes.clear();
    Loader loader(Dataset::from_folders(dir.path()), opt);
    CHECK(loader.size() == 6);
    CHECK(!loader.loaded_from_cache_file());
    CHECK(!notes.empty());
  }
}

TEST_CASE("data: the prefetch queue is bounded") {
  auto src = std::make_shared<CountingSource>(64, 5, 16);
  LoaderOptions opt;
  opt.batch_size = 4;
  opt.num_workers = 2;
  opt.prefetch = 3;
  opt.cache = false;  // every batch decodes, so loads count the batches built
  Loader loader(src, opt);
  loader.prepare();
  const int64_t base = src->loads;
  CHECK(base == 64);
  auto wait_for = [&](int64_t target) {
    for (int i = 0; i < 500 && src->loads < target; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // time to overshoot, if the bound were broken
  };
  loader.start_epoch(0);
  wait_for(base + 3 * 4);
  CHECK(src->loads == base + 3 * 4);
  Batch b;
  REQUIRE(loader.next(b));
  wait_for(base + 4 * 4);
  CHECK(src->loads == base + 4 * 4);
  while (loader.next(b)) {
  }
  CHECK(src->loads == base + 64);
}

TEST_CASE("data: uint8 batches hold the rounded float pixels") {
  LoaderOptions opt;
  opt.batch_size = 3;
  opt.seed = 4;
  opt.transform = compose({make<RandomResizedCrop>(12), make<ColorJitter>(0.2, 0.2, 0.2, 0.05)});
  Loader f(std::make_shared<SyntheticSource>(6, 2, CountingSource::make_opts(20)), opt);
  opt.output_uint8 = true;
  Loader u(std::make_shared<SyntheticSource>(6, 2, CountingSource::make_opts(20)), opt);
  const Batch bf = run_epoch(f, 0)[0], bu = run_epoch(u, 0)[0];
  CHECK(!bu.images.defined());
  REQUIRE(bu.bytes.shape == Shape{3, 3, 12, 12});
  const std::vector<float> v = floats(bf.images);
  for (std::size_t i = 0; i < v.size(); ++i) CHECK(bu.bytes.data[i] == to_byte(v[i]));
}

TEST_CASE("data: a transform that yields mixed sizes is a clear error") {
  LoaderOptions opt;
  opt.batch_size = 4;
  opt.num_workers = 2;
  opt.transform = compose({make<Resize>(10)});
  // Images of two sizes: a shorter-side resize keeps their different aspect ratios.
  class Mixed : public SyntheticSource {
   public:
    Mixed() : SyntheticSource(4, 1, CountingSource::make_opts(16)) {}
    ImageU8 load(int64_t i, ImageInfo* info) const override {
      return i % 2 ? ImageU8(20, 16) : SyntheticSource::load(i, info);
    }
  };
  Loader loader(std::make_shared<Mixed>(), opt);
  loader.start_epoch(0);
  Batch b;
  try {
    loader.next(b);
    FAIL("mixed sizes were batched");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("came out of the transforms as") != std::string::npos);
  }
}

TEST_CASE("data: progress bar draws on a terminal and writes lines otherwise") {
  for (ProgressBar::Mode mode : {ProgressBar::Mode::lines, ProgressBar::Mode::terminal}) {
    std::FILE* f = std::tmpfile();
    REQUIRE(f != nullptr);
    {
      ProgressBar bar("decode", 20, "img", f, mode);
      bar.set_line_interval(0.0);
      for (int i = 0; i < 20; ++i) bar.add();
    }
    std::rewind(f);
    std::string text;
    char buf[512];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
    std::fclose(f);
    CHECK(text.find("decode: 20 img in") != std::string::npos);  // the summary
    CHECK(text.find("img/s") != std::string::npos);
    CHECK(text.find("ETA") != std::string::npos);
    if (mode == ProgressBar::Mode::lines) {
      CHECK(text.find('\r') == std::string::npos);
      CHECK(text.find("decode: 10/20 (50%)") != std::string::npos);
    } else {
      CHECK(text.find('\r') != std::string::npos);
      CHECK(text.find("[####################] 20/20 100%") != std::string::npos);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// The real set (../shared/data/fundus4): must be there under CI, skipped with a message elsewhere.

namespace {
bool real_data_available() {
  if (path_exists(shared_path("data/fundus4/split.tsv"))) return true;
  if (running_in_ci()) FAIL("CI is set but " << shared_path("data/fundus4/split.tsv") << " is missing");
  MESSAGE("skipped: " << shared_path("data/fundus4/split.tsv") << " not found (set RETIKD_SHARED)");
  return false;
}
}  // namespace

TEST_CASE("data: the real fundus4 split has the README's counts") {
  if (!real_data_available()) return;
  const Dataset ds = Dataset::open(shared_path("data/fundus4"));
  CHECK(ds.report.skipped() == 0);
  CHECK(ds.split("train").size() == 2082);
  CHECK(ds.split("val").size() == 445);
  CHECK(ds.split("test").size() == 446);
  CHECK(ds.split("train").class_counts() == ClassCounts{276, 770, 283, 753});
  CHECK(ds.split("val").class_counts() == ClassCounts{62, 164, 56, 163});
  CHECK(ds.split("test").class_counts() == ClassCounts{58, 164, 66, 158});
  CHECK(ds.excluded == 1244);
  CHECK(ds.excluded_counts == ClassCounts{642, 0, 602, 0});
  // None of the excluded augmented copies (`_*.jpg`) is loaded.
  for (const Sample& s : ds.samples) CHECK(fs::basename(s.path)[0] != '_');
  const auto w = ds.split("train").class_weights();
  CHECK(w[0] == doctest::Approx(2082.0 / (4 * 276)));
}

TEST_CASE("data: a few real images decode, and FundusCrop finds their field of view") {
  if (!real_data_available()) return;
  const Dataset ds = Dataset::open(shared_path("data/fundus4"));
  int png = 0, jpeg = 0;
  for (std::size_t i = 0; i < ds.samples.size() && (png < 3 || jpeg < 3); i += 7) {
    ImageInfo info;
    const ImageU8 img = load_image(ds.samples[i].path, &info);
    if (info.format == ImageFormat::png ? png >= 3 : jpeg >= 3) continue;
    (info.format == ImageFormat::png ? png : jpeg)++;
    CHECK(img.width > 100);
    CHECK(img.height > 100);
    CHECK(std::max(img.width, img.height) <= 400);
    Generator g(0);
    const Image cropped = (*make<FundusCrop>())(to_float(img), g);
    CHECK(cropped.height == cropped.width);
    CHECK(cropped.height <= std::max(img.width, img.height));
  }
  CHECK(png == 3);
  CHECK(jpeg == 3);
}
