// retikd/io/safetensors.hpp — our own reader and writer of the safetensors format (Hugging Face), the
// checkpoint format of retikd: state dicts keyed by torchvision / timm names move to and from PyTorch
// unchanged.
//
// The format: an 8-byte little-endian header length N, N bytes of JSON, then the data section. The JSON is
// one object: each tensor name maps to {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]} with
// offsets relative to the start of the data section; the optional "__metadata__" maps strings to strings.
// Data is raw, row-major, little-endian.
//
// The reader treats the file as hostile and checks everything before it allocates or reads a byte of data:
// the header length against the file size, the JSON (strict parser, io/json.hpp), every entry's keys and
// types, the dtype name, shape × dtype size == offset span (overflow-checked), offsets inside the data
// section, and — as the reference implementation does — that the sorted ranges tile the data section
// exactly (no overlap, no gap, no trailing bytes). Any failure throws retikd::Error
// "safetensors: <file>: <problem>".
//
// The writer takes tensors from any device and in any layout (views are made contiguous on the host),
// orders the data by element size (largest first) and pads the header with spaces to a multiple of 8, so
// every tensor starts aligned to its element size; it writes atomically (io/atomic_file.hpp).
//
// dtypes: F32, F16, F64, I32, I64 map to retikd's types; BF16 is read and widened to float32 exactly; the
// other safetensors dtypes (U8, I8, BOOL, F8_*, …) are recognised and rejected with a message saying so.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <sys/stat.h>
#include <utility>
#include <vector>

#include "retikd/core/dtype.hpp"
#include "retikd/core/error.hpp"
#include "retikd/core/tensor.hpp"
#include "retikd/io/atomic_file.hpp"
#include "retikd/io/json.hpp"
#include "retikd/nn/module.hpp"

namespace retikd {
namespace io {

// The safetensors name of a retikd dtype.
inline const char* safetensors_dtype_name(DType t) {
  switch (t) {
    case DType::float32: return "F32";
    case DType::float16: return "F16";
    case DType::float64: return "F64";
    case DType::int32: return "I32";
    case DType::int64: return "I64";
  }
  fail("safetensors: unknown dtype");
}

// One tensor as the header describes it. `dtype` is the type it loads as (BF16 loads as float32);
// `file_dtype` is the name in the file; begin/end are offsets into the data section.
struct SafetensorsEntry {
  std::string name;
  std::string file_dtype;
  DType dtype = DType::float32;
  Shape shape;
  uint64_t begin = 0, end = 0;
};

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;  // sorted by data offset
  std::map<std::string, std::string> metadata;
  uint64_t header_bytes = 0;  // N
  uint64_t data_bytes = 0;    // file size − 8 − N
};

struct SafetensorsContents {
  std::vector<std::pair<std::string, Tensor>> tensors;  // in data order
  std::map<std::string, std::string> metadata;

  // The tensors by name.
  std::map<std::string, Tensor> to_map() const { return std::map<std::string, Tensor>(tensors.begin(), tensors.end()); }
};

// Headers larger than this are refused (the reference implementation's limit); real ones are kilobytes.
constexpr uint64_t kSafetensorsMaxHeader = 100ull << 20;

namespace detail {

inline bool host_is_little_endian() {
  const uint16_t one = 1;
  unsigned char first;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

inline void require_little_endian_host(const std::string& where) {
  RETIKD_CHECK(host_is_little_endian(), "safetensors: ", where,
               ": this host is big-endian; retikd reads and writes safetensors on little-endian hosts only");
}

// Random access to the bytes of a file or of a memory block.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual uint64_t size() const = 0;
  virtual void read(uint64_t offset, void* dst, std::size_t n) = 0;
};

class FileSource : public ByteSource {
 public:
  explicit FileSource(const std::string& path) : path_(path) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) fail("safetensors: ", path, ": cannot open: ", std::strerror(errno));
    RETIKD_CHECK(S_ISREG(st.st_mode), "safetensors: ", path, ": not a regular file");
    f_ = std::fopen(path.c_str(), "rb");
    if (!f_) fail("safetensors: ", path, ": cannot open: ", std::strerror(errno));
    size_ = static_cast<uint64_t>(st.st_size);
  }
  ~FileSource() override {
    if (f_) std::fclose(f_);
  }
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;

  uint64_t size() const override { return size_; }
  void read(uint64_t offset, void* dst, std::size_t n) override {
    if (n == 0) return;
    if (::fseeko(f_, static_cast<off_t>(offset), SEEK_SET) != 0)
      fail("safetensors: ", path_, ": seek to byte ", offset, " failed: ", std::strerror(errno));
    const std::size_t got = std::fread(dst, 1, n, f_);
    if (got != n)
      fail("safetensors: ", path_, ": read of ", n, " bytes at byte ", offset, " returned ", got,
           " (the file changed or is unreadable)");
  }

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
  uint64_t size_ = 0;
};

class MemorySource : public ByteSource {
 public:
  MemorySource(const uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  uint64_t size() const override { return size_; }
  void read(uint64_t offset, void* dst, std::size_t n) override {
    if (n == 0) return;
    RETIKD_CHECK(offset <= size_ && n <= size_ - offset, "safetensors: read past the end of the buffer");
    std::memcpy(dst, data_ + offset, n);
  }

 private:
  const uint8_t* data_;
  std::size_t size_;
};

// Maps a safetensors dtype name to (load dtype, bytes per element); false for names retikd cannot load.
// `known` tells whether the name is a safetensors dtype at all.
inline bool safetensors_dtype_from_name(const std::string& name, DType& dtype, std::size_t& elem, bool& known) {
  known = true;
  if (name == "F32") return dtype = DType::float32, elem = 4, true;
  if (name == "F16") return dtype = DType::float16, elem = 2, true;
  if (name == "F64") return dtype = DType::float64, elem = 8, true;
  if (name == "I32") return dtype = DType::int32, elem = 4, true;
  if (name == "I64") return dtype = DType::int64, elem = 8, true;
  if (name == "BF16") return dtype = DType::float32, elem = 2, true;  // widened on load
  static const char* other[] = {"BOOL", "U8", "I8", "U16", "I16", "U32", "U64", "F8_E4M3", "F8_E5M2",
                                "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64", "C128"};
  known = false;
  for (const char* o : other)
    if (name == o) known = true;
  return false;
}

inline std::string quoted(const std::string& s) { return json_string(s); }

inline SafetensorsEntry parse_entry(const std::string& where, const std::string& name, const Json& v,
                                    uint64_t data_bytes) {
  RETIKD_CHECK(!name.empty(), "safetensors: ", where, ": a tensor has an empty name");
  RETIKD_CHECK(v.is_object(), "safetensors: ", where, ": entry ", quoted(name), " is ", json_kind_name(v),
               ", expected an object with dtype, shape and data_offsets");
  const Json *dt = nullptr, *sh = nullptr, *off = nullptr;
  for (const auto& m : v.members()) {
    if (m.first == "dtype") {
      dt = &m.second;
    } else if (m.first == "shape") {
      sh = &m.second;
    } else if (m.first == "data_offsets") {
      off = &m.second;
    } else {
      fail("safetensors: ", where, ": tensor ", quoted(name), " has an unexpected key ", quoted(m.first));
    }
  }
  RETIKD_CHECK(dt && sh && off, "safetensors: ", where, ": tensor ", quoted(name), " lacks ",
               !dt ? "\"dtype\"" : !sh ? "\"shape\"" : "\"data_offsets\"");
  RETIKD_CHECK(dt->is_string(), "safetensors: ", where, ": tensor ", quoted(name), ": dtype is ",
               json_kind_name(*dt), ", expected a string");
  SafetensorsEntry e;
  e.name = name;
  e.file_dtype = dt->as_string();
  std::size_t elem = 0;
  bool known = false;
  if (!safetensors_dtype_from_name(e.file_dtype, e.dtype, elem, known)) {
    if (known)
      fail("safetensors: ", where, ": tensor ", quoted(name), ": dtype ", e.file_dtype,
           " is valid safetensors but retikd cannot hold it (supported: F32, F16, F64, I32, I64, BF16)");
    fail("safetensors: ", where, ": tensor ", quoted(name), ": unknown dtype ", quoted(e.file_dtype));
  }
  RETIKD_CHECK(sh->is_array(), "safetensors: ", where, ": tensor ", quoted(name), ": shape is ",
               json_kind_name(*sh), ", expected an array of sizes");
  uint64_t numel = 1;
  bool overflow = false, has_zero = false;
  for (const Json& d : sh->items()) {
    uint64_t s = 0;
    RETIKD_CHECK(d.to_uint64(s) && s <= static_cast<uint64_t>(INT64_MAX), "safetensors: ", where, ": tensor ",
                 quoted(name), ": shape entry ", d.literal().empty() ? json_kind_name(d) : d.literal(),
                 " is not a non-negative integer");
    e.shape.push_back(static_cast<int64_t>(s));
    if (s == 0) {
      has_zero = true;
    } else if (!overflow && numel > UINT64_MAX / s) {
      overflow = true;
    } else if (!overflow) {
      numel *= s;
    }
  }
  if (has_zero) numel = 0, overflow = false;  // a zero dimension makes any product of the others harmless
  RETIKD_CHECK(!overflow && numel <= UINT64_MAX / elem, "safetensors: ", where, ": tensor ", quoted(name),
               ": shape ", shape_str(e.shape), " is too large");
  RETIKD_CHECK(off->is_array() && off->items().size() == 2, "safetensors: ", where, ": tensor ", quoted(name),
               ": data_offsets must be an array [begin, end]");
  RETIKD_CHECK(off->items()[0].to_uint64(e.begin) && off->items()[1].to_uint64(e.end), "safetensors: ", where,
               ": tensor ", quoted(name), ": data_offsets must be non-negative integers");
  RETIKD_CHECK(e.begin <= e.end, "safetensors: ", where, ": tensor ", quoted(name), ": data_offsets [", e.begin,
               ", ", e.end, ") end before they begin");
  const uint64_t want = numel * elem;
  RETIKD_CHECK(e.end - e.begin == want, "safetensors: ", where, ": tensor ", quoted(name), ": data_offsets [",
               e.begin, ", ", e.end, ") span ", e.end - e.begin, " bytes but shape ", shape_str(e.shape), " of ",
               e.file_dtype, " needs ", want, " (offsets do not match shape and dtype)");
  RETIKD_CHECK(e.end <= data_bytes, "safetensors: ", where, ": tensor ", quoted(name), ": data_offsets [", e.begin,
               ", ", e.end, ") lie outside the data section of ", data_bytes,
               " bytes (the file is truncated or the offsets are corrupt)");
  return e;
}

inline SafetensorsHeader parse_header(ByteSource& src, const std::string& where) {
  require_little_endian_host(where);
  const uint64_t size = src.size();
  RETIKD_CHECK(size >= 8, "safetensors: ", where, ": file is ", size,
               " bytes, too short for the 8-byte header length (truncated or not a safetensors file)");
  unsigned char len_bytes[8];
  src.read(0, len_bytes, 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len_bytes[i];
  RETIKD_CHECK(n <= size - 8, "safetensors: ", where, ": header length ", n, " exceeds the ", size - 8,
               " bytes that follow it (truncated file, or not a safetensors file)");
  RETIKD_CHECK(n <= kSafetensorsMaxHeader, "safetensors: ", where, ": header length ", n, " is larger than the ",
               kSafetensorsMaxHeader, "-byte limit");
  RETIKD_CHECK(n >= 2, "safetensors: ", where, ": header length ", n, " is too small for a JSON object");
  std::string text(static_cast<std::size_t>(n), '\0');
  src.read(8, &text[0], text.size());
  RETIKD_CHECK(text[0] == '{', "safetensors: ", where, ": header does not start with '{' (not a safetensors file)");
  const Json root = parse_json(text, "safetensors: " + where + ": header");
  RETIKD_CHECK(root.is_object(), "safetensors: ", where, ": header is not a JSON object");

  SafetensorsHeader h;
  h.header_bytes = n;
  h.data_bytes = size - 8 - n;
  for (const auto& m : root.members()) {
    if (m.first == "__metadata__") {
      RETIKD_CHECK(m.second.is_object(), "safetensors: ", where, ": __metadata__ is ",
                   json_kind_name(m.second), ", expected an object of strings");
      for (const auto& kv : m.second.members()) {
        RETIKD_CHECK(kv.second.is_string(), "safetensors: ", where, ": __metadata__ value of ", quoted(kv.first),
                     " is ", json_kind_name(kv.second), ", expected a string");
        h.metadata[kv.first] = kv.second.as_string();
      }
      continue;
    }
    h.entries.push_back(parse_entry(where, m.first, m.second, h.data_bytes));
  }
  // The ranges must tile [0, data_bytes): sort by (begin, end) so empty tensors come before a tensor that
  // starts at the same offset.
  std::stable_sort(h.entries.begin(), h.entries.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  const SafetensorsEntry* prev = nullptr;
  for (const auto& e : h.entries) {
    if (e.begin < cursor)
      fail("safetensors: ", where, ": tensors ", quoted(prev->name), " [", prev->begin, ", ", prev->end, ") and ",
           quoted(e.name), " [", e.begin, ", ", e.end, ") overlap");
    if (e.begin > cursor)
      fail("safetensors: ", where, ": bytes [", cursor, ", ", e.begin, ") of the data section belong to no tensor",
           prev ? " (gap after " + quoted(prev->name) + ")" : std::string(" (gap before the first tensor)"));
    if (e.end > cursor || !prev) prev = &e;
    cursor = std::max(cursor, e.end);
  }
  RETIKD_CHECK(cursor == h.data_bytes, "safetensors: ", where, ": the data section has ", h.data_bytes,
               " bytes but the tensors cover ", cursor, " (", h.data_bytes - cursor,
               " trailing bytes: corrupt or appended data)");
  return h;
}

inline float bf16_to_float(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline SafetensorsContents read_contents(ByteSource& src, const std::string& where) {
  SafetensorsHeader h = parse_header(src, where);
  SafetensorsContents out;
  out.metadata = std::move(h.metadata);
  const uint64_t base = 8 + h.header_bytes;
  for (const auto& e : h.entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    const std::size_t bytes = static_cast<std::size_t>(e.end - e.begin);
    if (e.file_dtype == "BF16") {
      std::vector<uint16_t> raw(bytes / 2);
      src.read(base + e.begin, raw.data(), bytes);
      float* p = t.data<float>();
      for (std::size_t i = 0; i < raw.size(); ++i) p[i] = bf16_to_float(raw[i]);
    } else {
      src.read(base + e.begin, t.raw_data(), bytes);
    }
    out.tensors.emplace_back(e.name, std::move(t));
  }
  return out;
}

// What the writer needs, prepared once: the header text and the host-contiguous tensors in data order.
struct PreparedFile {
  std::string header;  // padded JSON
  std::vector<Tensor> data_order;
  uint64_t total_bytes = 0;
};

inline PreparedFile prepare(const std::vector<std::pair<std::string, Tensor>>& tensors,
                            const std::map<std::string, std::string>& metadata, const std::string& where) {
  require_little_endian_host(where);
  std::map<std::string, bool> seen;
  for (const auto& nt : tensors) {
    RETIKD_CHECK(!nt.first.empty(), "safetensors: ", where, ": a tensor has an empty name");
    RETIKD_CHECK(nt.first != "__metadata__", "safetensors: ", where, ": \"__metadata__\" is reserved");
    RETIKD_CHECK(is_valid_utf8(nt.first), "safetensors: ", where, ": tensor name ", quoted(nt.first),
                 " is not valid UTF-8");
    RETIKD_CHECK(!seen[nt.first], "safetensors: ", where, ": duplicate tensor name ", quoted(nt.first));
    seen[nt.first] = true;
    RETIKD_CHECK(nt.second.defined(), "safetensors: ", where, ": tensor ", quoted(nt.first), " is undefined");
  }
  for (const auto& kv : metadata)
    RETIKD_CHECK(is_valid_utf8(kv.first) && is_valid_utf8(kv.second), "safetensors: ", where, ": metadata ",
                 quoted(kv.first), " is not valid UTF-8");
  // Data order: larger elements first (stable), so every tensor starts aligned to its element size.
  std::vector<std::size_t> order(tensors.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return tensors[a].second.element_size() > tensors[b].second.element_size();
  });
  std::vector<uint64_t> begin(tensors.size()), end(tensors.size());
  PreparedFile f;
  uint64_t cursor = 0;
  for (std::size_t i : order) {
    const Tensor& t = tensors[i].second;
    Tensor host = t.to(Device::cpu()).contiguous();
    begin[i] = cursor;
    cursor += static_cast<uint64_t>(host.numel()) * host.element_size();
    end[i] = cursor;
    f.data_order.push_back(std::move(host));
  }
  std::string& j = f.header;
  j = "{";
  bool first = true;
  if (!metadata.empty()) {
    j += "\"__metadata__\":{";
    for (auto it = metadata.begin(); it != metadata.end(); ++it) {
      if (it != metadata.begin()) j += ',';
      append_json_string(j, it->first);
      j += ':';
      append_json_string(j, it->second);
    }
    j += '}';
    first = false;
  }
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i].second;
    if (!first) j += ',';
    first = false;
    append_json_string(j, tensors[i].first);
    j += ":{\"dtype\":\"";
    j += safetensors_dtype_name(t.dtype());
    j += "\",\"shape\":[";
    for (int64_t d = 0; d < t.dim(); ++d) {
      if (d) j += ',';
      j += std::to_string(t.size(d));
    }
    j += "],\"data_offsets\":[" + std::to_string(begin[i]) + "," + std::to_string(end[i]) + "]}";
  }
  j += '}';
  while ((8 + j.size()) % 8 != 0) j += ' ';
  f.total_bytes = 8 + j.size() + cursor;
  return f;
}

inline void emit(const PreparedFile& f, const ByteSink& sink) {
  unsigned char len_bytes[8];
  uint64_t n = f.header.size();
  for (int i = 0; i < 8; ++i, n >>= 8) len_bytes[i] = static_cast<unsigned char>(n & 0xff);
  sink(len_bytes, 8);
  sink(f.header.data(), f.header.size());
  for (const Tensor& t : f.data_order) sink(t.raw_data(), static_cast<std::size_t>(t.numel()) * t.element_size());
}

}  // namespace detail

// ---- reading ---------------------------------------------------------------------------------------------

// Validates the header (and the layout of the data section) without reading any tensor data.
inline SafetensorsHeader read_safetensors_header(const std::string& path) {
  detail::FileSource src(path);
  return detail::parse_header(src, path);
}

// Every tensor (in data order) and the metadata of a file.
inline SafetensorsContents read_safetensors(const std::string& path) {
  detail::FileSource src(path);
  return detail::read_contents(src, path);
}

// The same from bytes in memory; `source` names them in errors.
inline SafetensorsContents parse_safetensors(const uint8_t* data, std::size_t size,
                                             const std::string& source = "<memory>") {
  detail::MemorySource src(data, size);
  return detail::read_contents(src, source);
}
inline SafetensorsContents parse_safetensors(const std::vector<uint8_t>& bytes,
                                             const std::string& source = "<memory>") {
  return parse_safetensors(bytes.data(), bytes.size(), source);
}

// name → tensor; the metadata goes to *metadata when given.
inline std::map<std::string, Tensor> load_safetensors(const std::string& path,
                                                      std::map<std::string, std::string>* metadata = nullptr) {
  SafetensorsContents c = read_safetensors(path);
  if (metadata) *metadata = c.metadata;
  return c.to_map();
}

// ---- writing ---------------------------------------------------------------------------------------------

// The bytes of a safetensors file holding `tensors` (float32, float16, float64, int32, int64; any device,
// any layout) and `metadata`. Names must be unique, non-empty UTF-8.
inline std::vector<uint8_t> serialize_safetensors(const std::vector<std::pair<std::string, Tensor>>& tensors,
                                                  const std::map<std::string, std::string>& metadata = {}) {
  const detail::PreparedFile f = detail::prepare(tensors, metadata, "<memory>");
  // Sized once and filled by memcpy (vector::insert after reserve made GCC 12 -O3 warn, wrongly, about an
  // overflow in every program that saves a checkpoint).
  std::vector<uint8_t> out(static_cast<std::size_t>(f.total_bytes));
  std::size_t at = 0;
  detail::emit(f, [&](const void* p, std::size_t n) {
    RETIKD_CHECK(at + n <= out.size(), "serialize_safetensors: more bytes than the prepared size ", out.size());
    if (n != 0) std::memcpy(out.data() + at, p, n);
    at += n;
  });
  RETIKD_CHECK(at == out.size(), "serialize_safetensors: ", at, " bytes written, ", out.size(), " prepared");
  return out;
}

// Writes a safetensors file atomically (temporary file + rename). A std::map of tensors converts:
// save_safetensors(path, {sd.begin(), sd.end()}).
inline void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                             const std::map<std::string, std::string>& metadata = {}) {
  const detail::PreparedFile f = detail::prepare(tensors, metadata, path);
  write_file_atomically(path, [&](const ByteSink& sink) { detail::emit(f, sink); }, "safetensors");
}

// ---- modules ---------------------------------------------------------------------------------------------

// Saves module.state_dict() (parameters and buffers, torchvision / timm names) with `metadata`.
inline void save_module(const std::string& path, const nn::Module& module,
                        const std::map<std::string, std::string>& metadata = {}) {
  save_safetensors(path, module.state_dict(), metadata);
}

// Loads a file into `module` (dtype and device converted to the module's; strict: every name must match,
// and the error lists all mismatches). Returns the file's metadata.
inline std::map<std::string, std::string> load_module(const std::string& path, nn::Module& module,
                                                      bool strict = true) {
  SafetensorsContents c = read_safetensors(path);
  try {
    module.load_state_dict(c.to_map(), strict);
  } catch (const Error& e) {
    fail("safetensors: ", path, ": ", e.what());
  }
  return c.metadata;
}

}  // namespace io
}  // namespace retikd
