// retikd/data/png_write.hpp — a small PNG encoder: every colour type and bit depth, uncompressed deflate.
//
// stb_image_write only writes 8-bit grey / grey+alpha / RGB / RGBA; the decoder tests also need 16-bit and
// palette PNGs (and files to damage on purpose), and tools want to write synthetic sets and maps without a
// dependency. The zlib stream uses stored blocks only, so files are larger than need be (raw size + 0.01 %)
// but trivially correct.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "retikd/core/error.hpp"
#include "retikd/data/decode.hpp"
#include "retikd/data/fs.hpp"
#include "retikd/data/image.hpp"

namespace retikd {
namespace data {

enum class PngColor : uint8_t { grey = 0, rgb = 2, palette = 3, grey_alpha = 4, rgba = 6 };

inline int png_channels(PngColor c) {
  switch (c) {
    case PngColor::grey: return 1;
    case PngColor::rgb: return 3;
    case PngColor::palette: return 1;
    case PngColor::grey_alpha: return 2;
    case PngColor::rgba: return 4;
  }
  return 0;
}

namespace detail {

inline void put_be32(std::vector<uint8_t>& out, uint32_t v) {
  out.push_back(uint8_t(v >> 24));
  out.push_back(uint8_t(v >> 16));
  out.push_back(uint8_t(v >> 8));
  out.push_back(uint8_t(v));
}

inline void put_chunk(std::vector<uint8_t>& out, const char* type, const std::vector<uint8_t>& data) {
  put_be32(out, static_cast<uint32_t>(data.size()));
  const std::size_t start = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data.begin(), data.end());
  put_be32(out, crc32_update(0, out.data() + start, 4 + data.size()));
}

// zlib stream of stored (uncompressed) deflate blocks.
inline std::vector<uint8_t> zlib_stored(const std::vector<uint8_t>& raw) {
  std::vector<uint8_t> z = {0x78, 0x01};
  std::size_t pos = 0;
  do {
    const std::size_t n = std::min<std::size_t>(65535, raw.size() - pos);
    const bool last = pos + n == raw.size();
    z.push_back(last ? 1 : 0);
    z.push_back(uint8_t(n));
    z.push_back(uint8_t(n >> 8));
    z.push_back(uint8_t(~n));
    z.push_back(uint8_t(~n >> 8));
    z.insert(z.end(), raw.begin() + static_cast<std::ptrdiff_t>(pos), raw.begin() + static_cast<std::ptrdiff_t>(pos + n));
    pos += n;
  } while (pos < raw.size());
  uint32_t a = 1, b = 0;  // Adler-32
  for (uint8_t v : raw) {
    a = (a + v) % 65521;
    b = (b + a) % 65521;
  }
  put_be32(z, (b << 16) | a);
  return z;
}

}  // namespace detail

// Encodes `samples` (row-major, channels interleaved, one value per sample: 0..2^bit_depth−1) as a PNG.
// Sub-byte depths are packed MSB first; 16-bit samples are written big-endian. For palette images,
// `palette` holds RGB triples and `alpha` (optional) the tRNS entries.
inline std::vector<uint8_t> encode_png(int width, int height, PngColor color, int bit_depth,
                                       const std::vector<uint16_t>& samples,
                                       const std::vector<uint8_t>& palette = {},
                                       const std::vector<uint8_t>& alpha = {}) {
  const int ch = png_channels(color);
  RETIKD_CHECK(width > 0 && height > 0, "encode_png: size ", width, "x", height, " must be positive");
  const bool depth_ok =
      (color == PngColor::grey && (bit_depth == 1 || bit_depth == 2 || bit_depth == 4 || bit_depth == 8 || bit_depth == 16)) ||
      (color == PngColor::palette && (bit_depth == 1 || bit_depth == 2 || bit_depth == 4 || bit_depth == 8)) ||
      ((color == PngColor::rgb || color == PngColor::grey_alpha || color == PngColor::rgba) &&
       (bit_depth == 8 || bit_depth == 16));
  RETIKD_CHECK(depth_ok, "encode_png: bit depth ", bit_depth, " is not allowed for colour type ", int(color));
  RETIKD_CHECK(samples.size() == static_cast<std::size_t>(width) * height * ch, "encode_png: ", samples.size(),
               " samples for ", width, "x", height, "x", ch);
  if (color == PngColor::palette)
    RETIKD_CHECK(!palette.empty() && palette.size() % 3 == 0 && palette.size() <= 768, "encode_png: palette needs 1-256 RGB triples");
  const uint32_t max_v = (1u << bit_depth) - 1;
  std::vector<uint8_t> raw;
  const std::size_t row_bits = static_cast<std::size_t>(width) * ch * bit_depth;
  raw.reserve(height * (1 + (row_bits + 7) / 8));
  for (int y = 0; y < height; ++y) {
    raw.push_back(0);  // filter: none
    const uint16_t* row = samples.data() + static_cast<std::size_t>(y) * width * ch;
    if (bit_depth >= 8) {
      for (int i = 0; i < width * ch; ++i) {
        RETIKD_CHECK(row[i] <= max_v, "encode_png: sample ", row[i], " exceeds ", bit_depth, " bits");
        if (bit_depth == 16) raw.push_back(uint8_t(row[i] >> 8));
        raw.push_back(uint8_t(row[i]));
      }
    } else {
      uint8_t acc = 0;
      int used = 0;
      for (int i = 0; i < width * ch; ++i) {
        RETIKD_CHECK(row[i] <= max_v, "encode_png: sample ", row[i], " exceeds ", bit_depth, " bits");
        acc = uint8_t(acc | (row[i] << (8 - bit_depth - used)));
        used += bit_depth;
        if (used == 8) {
          raw.push_back(acc);
          acc = 0;
          used = 0;
        }
      }
      if (used) raw.push_back(acc);
    }
  }
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  std::vector<uint8_t> ihdr;
  detail::put_be32(ihdr, static_cast<uint32_t>(width));
  detail::put_be32(ihdr, static_cast<uint32_t>(height));
  ihdr.push_back(uint8_t(bit_depth));
  ihdr.push_back(uint8_t(color));
  ihdr.push_back(0);  // deflate
  ihdr.push_back(0);  // adaptive filtering
  ihdr.push_back(0);  // no interlace
  detail::put_chunk(png, "IHDR", ihdr);
  if (color == PngColor::palette) {
    detail::put_chunk(png, "PLTE", palette);
    if (!alpha.empty()) detail::put_chunk(png, "tRNS", alpha);
  }
  detail::put_chunk(png, "IDAT", detail::zlib_stored(raw));
  detail::put_chunk(png, "IEND", {});
  return png;
}

// 8-bit RGB image → PNG bytes.
inline std::vector<uint8_t> encode_png(const ImageU8& img) {
  return encode_png(img.width, img.height, PngColor::rgb, 8,
                    std::vector<uint16_t>(img.pixels.begin(), img.pixels.end()));
}

// Writes an 8-bit RGB PNG (atomically); throws retikd::Error naming the path on failure.
inline void write_png(const std::string& path, const ImageU8& img) {
  const std::vector<uint8_t> bytes = encode_png(img);
  std::string err;
  RETIKD_CHECK(fs::write_file_atomic(path, bytes.data(), bytes.size(), &err), path, ": cannot write PNG (", err, ")");
}

}  // namespace data
}  // namespace retikd
