// retikd/data/decode.hpp — image files to 8-bit RGB, with every failure named.
//
// JPEG (baseline and progressive) and PNG (grey, grey+alpha, RGB, RGBA, palette; 1–16 bits) decode to
// ImageU8 through stb_image. The result is what PIL's `Image.open(p).convert("RGB")` gives: grey is
// replicated to three channels, alpha is dropped (not composited), palettes are expanded; 16-bit samples are
// rounded to 8 bits (v·255/65535, to nearest) rather than truncated as stb's own 16→8 path does. EXIF
// orientation is ignored, as PIL ignores it unless asked.
//
// stb_image decodes some damaged files without complaint — a JPEG cut short decodes with its missing rows
// filled in grey, a PNG with a broken chunk checksum decodes as if nothing happened. Before decoding, the
// structure is checked: a JPEG's marker segments must be intact and reach the end-of-image marker; a PNG's
// chunks must fit the file, carry correct CRCs, and end with IEND. Anything else is a DataError naming the
// file and the problem (unreadable, empty, not an image, truncated, corrupt, too large).
//
// Size limits, checked from the header before a byte of pixel data is decoded, because a 632-byte JPEG can
// declare 16000 x 16000 pixels (768 MB of RGB, several GB inside the decoder): an image above
// max_image_pixels() (default 50 megapixels; RETIKD_MAX_IMAGE_PIXELS or set_max_image_pixels() change it) or
// with a side above 32768 px (the decoder's own limit) is a `too_large` DataError that says how large it is
// and what the limit is. While stb decodes, its allocations are held to a budget derived from those
// dimensions (data/stb_image.hpp), so compressed data that inflates beyond its declared image also fails
// cleanly ("corrupt") instead of exhausting memory.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <sys/stat.h>

#include "retikd/data/image.hpp"
#include "retikd/data/problems.hpp"
#include "retikd/data/stb_image.hpp"

namespace retikd {
namespace data {

enum class ImageFormat { unknown, jpeg, png };

inline const char* image_format_name(ImageFormat f) {
  switch (f) {
    case ImageFormat::jpeg: return "JPEG";
    case ImageFormat::png: return "PNG";
    default: return "unknown";
  }
}

// What the file held before conversion to RGB8.
struct ImageInfo {
  ImageFormat format = ImageFormat::unknown;
  int width = 0;
  int height = 0;
  int channels = 0;   // in the file: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA (palette PNGs report 3 or 4)
  int bit_depth = 8;  // 8 or 16 as decoded (PNGs below 8 bits are expanded to 8)
};

// By content, not by extension.
inline ImageFormat sniff_format(const uint8_t* p, std::size_t n) {
  static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (n >= 8 && std::memcmp(p, png_sig, 8) == 0) return ImageFormat::png;
  if (n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) return ImageFormat::jpeg;
  return ImageFormat::unknown;
}

// The whole file; DataError (unreadable / empty) on failure.
inline std::vector<uint8_t> read_file_bytes(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    throw_problem(path, ProblemKind::unreadable, str("cannot open (", std::strerror(errno), ")"));
  if (!S_ISREG(st.st_mode))  // a folder, a FIFO (which would block), a device
    throw_problem(path, ProblemKind::unreadable, "cannot read: not a regular file");
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) throw_problem(path, ProblemKind::unreadable, str("cannot open (", std::strerror(errno), ")"));
  std::vector<uint8_t> bytes;
  std::array<uint8_t, 1 << 16> chunk;
  for (;;) {
    const std::size_t got = std::fread(chunk.data(), 1, chunk.size(), f.get());
    bytes.insert(bytes.end(), chunk.data(), chunk.data() + got);
    if (got < chunk.size()) {
      if (std::ferror(f.get()))
        throw_problem(path, ProblemKind::unreadable, str("read error (", std::strerror(errno), ")"));
      break;
    }
  }
  if (bytes.empty()) throw_problem(path, ProblemKind::empty, "empty file (0 bytes)");
  return bytes;
}

namespace detail {

inline uint32_t crc32_update(uint32_t crc, const uint8_t* p, std::size_t n) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (std::size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

inline std::string hex_byte(uint8_t b) {
  static const char digits[] = "0123456789abcdef";
  return std::string{digits[b >> 4], digits[b & 15]};
}

inline uint32_t read_be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

// The tables a JPEG has defined so far and what its frame declares: stb_image 2.27 neither checks that a scan's
// Huffman tables were defined (it then reads past the end of an uninitialised table: found by
// tests/fuzz/fuzz_image.cpp) nor that a table holds at most 256 codes (it then writes past its 257-entry
// arrays: a heap overflow, found the same way). Upstream fixed both later; Debian 12 and the Jetson ship the
// old code, so the structure check refuses such files before stb sees them.
struct JpegTables {
  bool dc[4] = {}, ac[4] = {}, quant[4] = {};
  bool frame = false, progressive = false;
  std::vector<std::pair<int, int>> components;  // (component id, quantisation table) of the frame
};

// DHT: whole tables (class 0/1, id 0-3) of at most 256 codes each, filling the segment exactly.
inline void check_jpeg_huffman_tables(const uint8_t* p, std::size_t at, std::size_t len, const std::string& name,
                                      JpegTables& t) {
  std::size_t pos = at + 2;
  const std::size_t end = at + len;
  while (pos < end) {
    const unsigned table_class = p[pos] >> 4, table_id = p[pos] & 15;
    if (table_class > 1 || table_id > 3)
      throw_problem(name, ProblemKind::corrupt, str("corrupt JPEG: Huffman table class ", table_class, " id ",
                                                    table_id, " at byte ", pos));
    if (end - pos < 17)
      throw_problem(name, ProblemKind::corrupt, str("corrupt JPEG: Huffman table header cut short at byte ", pos));
    std::size_t codes = 0;
    for (int k = 1; k <= 16; ++k) codes += p[pos + static_cast<std::size_t>(k)];
    if (codes > 256)
      throw_problem(name, ProblemKind::corrupt, str("corrupt JPEG: Huffman table at byte ", pos, " declares ", codes,
                                                    " codes (at most 256)"));
    if (end - pos - 17 < codes)
      throw_problem(name, ProblemKind::corrupt, str("corrupt JPEG: Huffman table at byte ", pos, " is cut short"));
    (table_class == 0 ? t.dc : t.ac)[table_id] = true;
    pos += 17 + codes;
  }
}

// DQT: whole tables (8- or 16-bit, id 0-3) filling the segment exactly.
inline void check_jpeg_quant_tables(const uint8_t* p, std::size_t at, std::size_t len, const std::string& name,
                                    JpegTables& t) {
  std::size_t pos = at + 2;
  const std::size_t end = at + len;
  while (pos < end) {
    const unsigned precision = p[pos] >> 4, id = p[pos] & 15;
    const std::size_t size = 1 + (precision == 0 ? 64 : 128);
    if (precision > 1 || id > 3 || end - pos < size)
      throw_problem(name, ProblemKind::corrupt, str("corrupt JPEG: bad quantisation table at byte ", pos));
    t.quant[id] = true;
    pos += size;
  }
}

// SOF: the components and their quantisation tables (the size is read by the caller).
inline void check_jpeg_frame(const uint8_t* p, std::size_t at, std::size_t len, uint8_t marker, const std::string& name,
                             JpegTables& t) {
  if (t.frame) throw_problem(name, ProblemKind::corrupt, str("corrupt JPEG: a second frame header at byte ", at));
  const std::size_t count = p[at + 7];
  if (count < 1 || count > 4 || len != 8 + 3 * count)
    throw_problem(name, ProblemKind::corrupt, str("corrupt JPEG: frame header of ", len, " bytes for ", count,
                                                  " components"));
  for (std::size_t k = 0; k < count; ++k) {
    const int quant = p[at + 10 + 3 * k];
    if (quant > 3) throw_problem(name, ProblemKind::corrupt, str("corrupt JPEG: quantisation table ", quant));
    t.components.emplace_back(p[at + 8 + 3 * k], quant);
  }
  t.frame = true;
  t.progressive = marker == 0xC2 || marker == 0xC6 || marker == 0xCA || marker == 0xCE;
}

// SOS: a frame first; every table the scan decodes with defined before it.
inline void check_jpeg_scan(const uint8_t* p, std::size_t at, std::size_t len, const std::string& name,
                            const JpegTables& t) {
  if (!t.frame) throw_problem(name, ProblemKind::corrupt, str("corrupt JPEG: a scan before the frame header"));
  const std::size_t count = p[at + 2];
  if (count < 1 || count > 4 || len != 6 + 2 * count)
    throw_problem(name, ProblemKind::corrupt, str("corrupt JPEG: scan header of ", len, " bytes for ", count,
                                                  " components"));
  const unsigned first = p[at + 3 + 2 * count], last = p[at + 4 + 2 * count], refine = p[at + 5 + 2 * count] >> 4;
  // Baseline decodes every block with both tables; progressive DC first scans need DC tables, AC scans AC ones.
  const bool need_dc = !t.progressive || (first == 0 && refine == 0);
  const bool need_ac = !t.progressive || last > 0;
  for (std::size_t k = 0; k < count; ++k) {
    const int id = p[at + 3 + 2 * k];
    const unsigned dc = p[at + 4 + 2 * k] >> 4, ac = p[at + 4 + 2 * k] & 15;
    int quant = -1;
    for (const auto& c : t.components)
      if (c.first == id) quant = c.second;
    if (quant < 0) throw_problem(name, ProblemKind::corrupt, str("corrupt JPEG: a scan of unknown component ", id));
    if (!t.quant[quant])
      throw_problem(name, ProblemKind::corrupt, str("corrupt JPEG: quantisation table ", quant, " is used but not defined"));
    if (dc > 3 || ac > 3 || (need_dc && !t.dc[dc]) || (need_ac && !t.ac[ac]))
      throw_problem(name, ProblemKind::corrupt, str("corrupt JPEG: the scan at byte ", at, " uses Huffman tables DC ", dc,
                                                    " / AC ", ac, ", which are not defined"));
  }
}

// Walks the marker segments up to EOI. Entropy-coded data after each SOS is scanned for the next marker
// (0xFF followed by anything but a stuffed 0x00, a restart marker or a fill byte).
inline void check_jpeg_structure(const uint8_t* p, std::size_t n, const std::string& name, int* width = nullptr,
                                 int* height = nullptr) {
  std::size_t i = 2;  // after SOI
  bool seen_frame = false, seen_scan = false;
  JpegTables tables;
  for (;;) {
    if (i >= n) {
      throw_problem(name, ProblemKind::truncated,
                    str("truncated JPEG: the file (", n, " bytes) ends ",
                        seen_scan ? "inside the compressed image data" : "before the image data",
                        " without an end-of-image marker"));
    }
    if (p[i] != 0xFF) {
      throw_problem(name, ProblemKind::corrupt, str("corrupt JPEG: expected a marker at byte ", i, ", found 0x",
                                                     hex_byte(p[i])));
    }
    while (i < n && p[i] == 0xFF) ++i;  // fill bytes
    if (i >= n) continue;               // reported as truncated above
    const uint8_t m = p[i++];
    if (m == 0xD9) {                    // EOI
      if (!seen_frame || !seen_scan)
        throw_problem(name, ProblemKind::corrupt, "corrupt JPEG: end-of-image marker before any image data");
      return;
    }
    if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue;  // standalone markers
    if (m == 0xD8 || m == 0x00)
      throw_problem(name, ProblemKind::corrupt, str("corrupt JPEG: unexpected marker 0xff", hex_byte(m),
                                                     " at byte ", i - 2));
    if (i + 2 > n) {  // truncated: reported at the top of the loop
      i = n;
      continue;
    }
    const std::size_t len = (std::size_t(p[i]) << 8) | p[i + 1];
    if (len < 2) throw_problem(name, ProblemKind::corrupt, str("corrupt JPEG: segment length ", len, " at byte ", i));
    if (i + len > n) {
      i = n;
      continue;
    }
    if (m == 0xC4) check_jpeg_huffman_tables(p, i, len, name, tables);
    if (m == 0xDB) check_jpeg_quant_tables(p, i, len, name, tables);
    if (m == 0xDA) check_jpeg_scan(p, i, len, name, tables);
    if ((m >= 0xC0 && m <= 0xCF) && m != 0xC4 && m != 0xC8 && m != 0xCC) {
      // Frame header: length (2), precision (1), height (2), width (2), components (1).
      if (len < 8) throw_problem(name, ProblemKind::corrupt, str("corrupt JPEG: frame header of ", len, " bytes"));
      check_jpeg_frame(p, i, len, m, name, tables);
      if (!seen_frame && width && height) {
        *height = (int(p[i + 3]) << 8) | p[i + 4];
        *width = (int(p[i + 5]) << 8) | p[i + 6];
      }
      seen_frame = true;
    }
    i += len;
    if (m == 0xDA) {  // start of scan: skip the entropy-coded segment
      seen_scan = true;
      for (;;) {
        if (i + 1 >= n) {
          i = n;
          break;
        }
        if (p[i] != 0xFF) {
          ++i;
          continue;
        }
        const uint8_t next = p[i + 1];
        if (next == 0x00 || (next >= 0xD0 && next <= 0xD7)) {
          i += 2;
        } else if (next == 0xFF) {
          ++i;
        } else {
          break;  // a real marker: handled by the outer loop
        }
      }
    }
  }
}

// Chunks must fit, carry correct CRCs, start with IHDR and end with IEND, with at least one IDAT.
inline void check_png_structure(const uint8_t* p, std::size_t n, const std::string& name, int64_t* width = nullptr,
                                int64_t* height = nullptr) {
  std::size_t i = 8;
  bool seen_ihdr = false, seen_idat = false;
  while (true) {
    if (i + 8 > n)
      throw_problem(name, ProblemKind::truncated, str("truncated PNG: the file (", n, " bytes) ends before the IEND chunk"));
    const uint32_t len = read_be32(p + i);
    const uint8_t* type = p + i + 4;
    const std::string type_str(reinterpret_cast<const char*>(type), 4);
    if (len > 0x7FFFFFFFu)
      throw_problem(name, ProblemKind::corrupt, str("corrupt PNG: chunk length ", len, " at byte ", i));
    if (i + 12 + std::size_t(len) > n)
      throw_problem(name, ProblemKind::truncated, str("truncated PNG: chunk '", type_str, "' at byte ", i, " needs ",
                                                      len + 12, " bytes, the file has ", n - i, " left"));
    const uint32_t stored = read_be32(p + i + 8 + len);
    const uint32_t actual = crc32_update(0, type, 4 + std::size_t(len));
    if (stored != actual)
      throw_problem(name, ProblemKind::corrupt, str("corrupt PNG: CRC mismatch in chunk '", type_str, "' at byte ", i));
    if (!seen_ihdr && type_str != "IHDR")
      throw_problem(name, ProblemKind::corrupt, "corrupt PNG: the first chunk is '" + type_str + "', not IHDR");
    if (!seen_ihdr) {
      if (len != 13) throw_problem(name, ProblemKind::corrupt, str("corrupt PNG: IHDR chunk of ", len, " bytes, not 13"));
      if (width) *width = read_be32(p + i + 8);
      if (height) *height = read_be32(p + i + 12);
    }
    seen_ihdr = true;
    if (type_str == "IDAT") seen_idat = true;
    i += 12 + std::size_t(len);
    if (type_str == "IEND") {
      if (!seen_idat) throw_problem(name, ProblemKind::corrupt, "corrupt PNG: no IDAT chunk (no image data)");
      return;
    }
  }
}

// Refuses an image whose header declares more pixels than `max_pixels` or a side above kMaxImageSide.
inline void check_dimensions(int64_t w, int64_t h, int64_t max_pixels, ImageFormat fmt, const std::string& name) {
  if (w <= 0 || h <= 0)
    throw_problem(name, ProblemKind::corrupt, str("corrupt ", image_format_name(fmt), ": the header declares ", w,
                                                  "x", h, " pixels"));
  const double mp = static_cast<double>(w) * static_cast<double>(h) / 1e6;
  char size[96];
  std::snprintf(size, sizeof size, "%lldx%lld pixels (%.1f megapixels, %.1f GB as RGB)", static_cast<long long>(w),
                static_cast<long long>(h), mp, 3.0 * mp / 1000.0);
  if (w > kMaxImageSide || h > kMaxImageSide)
    throw_problem(name, ProblemKind::too_large, str("image too large: ", size, "; sides above ", kMaxImageSide,
                                                    " px are not supported"));
  if (w * h > max_pixels)
    throw_problem(name, ProblemKind::too_large,
                  str("image too large: ", size, ", above the limit of ", max_pixels,
                      " pixels (raise it with RETIKD_MAX_IMAGE_PIXELS or data::set_max_image_pixels if the image "
                      "is genuine)"));
}

// stb's failure reasons are terse ("bad huffman code"); "outofmem" and the dimension limit deserve words.
inline std::string stb_reason() {
  const char* r = stbi_failure_reason();
  if (!r) return "unknown decoder error";
  if (std::strcmp(r, "outofmem") == 0) return "out of memory while decoding";
  if (std::strcmp(r, "too large") == 0) return "image dimensions too large";
  return r;
}

}  // namespace detail

// Checks the file's structure without decoding the pixels (DataError on failure); returns the format and,
// when asked, the dimensions its header declares (not yet checked against any limit).
inline ImageFormat check_image_structure(const uint8_t* data, std::size_t size, const std::string& name,
                                         int64_t* width = nullptr, int64_t* height = nullptr) {
  if (size == 0) throw_problem(name, ProblemKind::empty, "empty file (0 bytes)");
  const ImageFormat fmt = sniff_format(data, size);
  int64_t w = 0, h = 0;
  if (fmt == ImageFormat::jpeg) {
    int jw = 0, jh = 0;
    detail::check_jpeg_structure(data, size, name, &jw, &jh);
    w = jw, h = jh;
  } else if (fmt == ImageFormat::png) {
    detail::check_png_structure(data, size, name, &w, &h);
  } else {
    std::string head;
    for (std::size_t i = 0; i < std::min<std::size_t>(size, 8); ++i) head += (i ? " " : "") + detail::hex_byte(data[i]);
    throw_problem(name, ProblemKind::not_an_image,
                  str("not an image: neither JPEG nor PNG (", size, " bytes starting ", head, ")"));
  }
  if (width) *width = w;
  if (height) *height = h;
  return fmt;
}

// Decodes JPEG or PNG bytes to 8-bit RGB; `name` is used in messages (the file's path). `max_pixels` 0:
// max_image_pixels().
inline ImageU8 decode_image(const uint8_t* data, std::size_t size, const std::string& name,
                            ImageInfo* info = nullptr, int64_t max_pixels = 0) {
  int64_t declared_w = 0, declared_h = 0;
  const ImageFormat fmt = check_image_structure(data, size, name, &declared_w, &declared_h);
  detail::check_dimensions(declared_w, declared_h, max_pixels > 0 ? max_pixels : max_image_pixels(), fmt, name);
  if (size > static_cast<std::size_t>(INT32_MAX))
    throw_problem(name, ProblemKind::too_large, str("file too large for the decoder (", size, " bytes)"));
  const int len = static_cast<int>(size);
  // Everything stb may need for this image (16-bit RGBA rows inflated, converted and copied, at most ~24 bytes
  // per pixel) plus the compressed data and slack; more means the data expands beyond its declared size.
  detail::StbBudgetScope budget(size + static_cast<std::size_t>(declared_w * declared_h) * 24 + (std::size_t(1) << 20));
  auto decoder_failure = [&](const char* format_name) {
    if (budget.exceeded())
      throw_problem(name, ProblemKind::corrupt,
                    str("corrupt ", format_name, ": decoding needs more memory than a ", declared_w, "x", declared_h,
                        " image can (the compressed data expands beyond the declared image)"));
    throw_problem(name, ProblemKind::corrupt, str("corrupt ", format_name, ": ", detail::stb_reason()));
  };
  int w = 0, h = 0, comp = 0;
  if (!stbi_info_from_memory(data, len, &w, &h, &comp)) decoder_failure(image_format_name(fmt));
  if (w != declared_w || h != declared_h)
    throw_problem(name, ProblemKind::corrupt, str("corrupt ", image_format_name(fmt), ": the decoder reads ", w, "x",
                                                  h, " pixels, the header declares ", declared_w, "x", declared_h));
  const bool sixteen = fmt == ImageFormat::png && stbi_is_16_bit_from_memory(data, len);
  ImageU8 out;
  if (sixteen) {
    std::unique_ptr<uint16_t, void (*)(void*)> px(stbi_load_16_from_memory(data, len, &w, &h, &comp, 3),
                                                  &stbi_image_free);
    if (!px) decoder_failure("PNG");
    out = ImageU8(w, h);
    const std::size_t count = out.pixels.size();
    for (std::size_t i = 0; i < count; ++i)
      out.pixels[i] = static_cast<uint8_t>((uint32_t(px.get()[i]) * 255u + 32767u) / 65535u);
  } else {
    std::unique_ptr<uint8_t, void (*)(void*)> px(stbi_load_from_memory(data, len, &w, &h, &comp, 3),
                                                 &stbi_image_free);
    if (!px) decoder_failure(image_format_name(fmt));
    out = ImageU8(w, h);
    std::memcpy(out.pixels.data(), px.get(), out.pixels.size());
  }
  if (info) *info = ImageInfo{fmt, w, h, comp, sixteen ? 16 : 8};
  return out;
}

inline ImageU8 decode_image(const std::vector<uint8_t>& bytes, const std::string& name, ImageInfo* info = nullptr,
                            int64_t max_pixels = 0) {
  return decode_image(bytes.data(), bytes.size(), name, info, max_pixels);
}

// Reads and decodes one file (DataError naming the file on any failure).
inline ImageU8 load_image(const std::string& path, ImageInfo* info = nullptr) {
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  return decode_image(bytes, path, info);
}

}  // namespace data
}  // namespace retikd
