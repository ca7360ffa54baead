// retikd/io/flatbuffer.hpp — a minimal, bounds-checked reader of FlatBuffers binaries (the container of
// TFLite models), written from the published wire format, with no generated code.
//
// The wire format, as far as a reader needs it (all integers little-endian, read with memcpy so unaligned
// data is fine):
//   - the buffer starts with a uoffset (u32) to the root table, optionally followed by a 4-byte file
//     identifier ("TFL3" for TFLite);
//   - a table starts with a soffset (i32): the table's position minus the position of its vtable;
//   - a vtable is u16 vtable size in bytes, u16 table size in bytes, then one u16 per field: the field's
//     offset from the table start, 0 when the field is absent (the reader then uses the schema default);
//   - a field that refers to a table, vector or string holds a uoffset relative to the field's own position;
//   - a vector is a u32 element count followed by the elements (scalars inline; tables and strings as
//     uoffsets relative to each element's position); a string is a vector of bytes plus a NUL;
//   - a union is two fields: a u8 type tag (field id n) and a uoffset to the table (field id n + 1).
//
// Every read checks that the bytes it touches lie inside the buffer (64-bit arithmetic, so no offset can
// wrap around), so a corrupt or truncated file raises retikd::Error "<source>: flatbuffer: …", never reads
// out of bounds. The reader never follows offsets in a loop of its own, so a cyclic file cannot hang it; the
// schema-driven caller bounds the depth.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "retikd/core/error.hpp"

namespace retikd {
namespace io {
namespace flatbuffer {

class Table;

// The bytes of a flatbuffer and the name used in errors. Does not own the bytes.
class Buffer {
 public:
  Buffer() = default;
  Buffer(const uint8_t* data, std::size_t size, std::string source)
      : data_(data), size_(size), source_(std::move(source)) {}

  const uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  const std::string& source() const { return source_; }

  template <class... Parts>
  [[noreturn]] void error(const Parts&... parts) const {
    fail(source_, ": flatbuffer: ", parts...);
  }

  // Checks that [pos, pos + n) lies inside the buffer.
  void require(uint64_t pos, uint64_t n, const char* what) const {
    if (pos > size_ || n > size_ - pos)
      error(what, " at byte ", pos, " (", n, " bytes) lies outside the ", size_, "-byte buffer");
  }

  template <class T>
  T read(uint64_t pos, const char* what) const {
    static_assert(std::is_arithmetic<T>::value, "flatbuffer: scalar reads only");
    require(pos, sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos, sizeof(T));
    return v;
  }

  // Follows the uoffset stored at `pos`.
  uint64_t follow(uint64_t pos, const char* what) const {
    const uint32_t off = read<uint32_t>(pos, what);
    const uint64_t target = pos + off;
    if (target >= size_) error(what, ": offset at byte ", pos, " points to byte ", target, ", past the end (", size_, ")");
    return target;
  }

  // The root table (the uoffset at byte 0), checking the 4-byte file identifier when one is given.
  Table root(const char* identifier = nullptr) const;

 private:
  const uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
  std::string source_;
};

// A vector's element range: `count` elements of `stride` bytes starting at `pos`.
struct VectorRef {
  uint64_t pos = 0;
  uint32_t count = 0;
  bool present = false;
};

class Table {
 public:
  Table() = default;
  Table(const Buffer* buf, uint64_t pos, const char* what) : buf_(buf), pos_(pos) {
    const int32_t soff = buf->read<int32_t>(pos, what);
    const int64_t vt = static_cast<int64_t>(pos) - static_cast<int64_t>(soff);
    if (vt < 0 || static_cast<uint64_t>(vt) >= buf->size())
      buf->error(what, ": table at byte ", pos, " has its vtable at byte ", vt, ", outside the buffer");
    vtable_ = static_cast<uint64_t>(vt);
    vt_size_ = buf->read<uint16_t>(vtable_, what);
    table_size_ = buf->read<uint16_t>(vtable_ + 2, what);
    if (vt_size_ < 4 || (vt_size_ & 1u))
      buf->error(what, ": vtable at byte ", vtable_, " has an invalid size ", vt_size_);
    buf->require(vtable_, vt_size_, what);
    if (table_size_ < 4) buf->error(what, ": table at byte ", pos, " has an invalid size ", table_size_);
    buf->require(pos, table_size_, what);
    what_ = what;
  }

  bool valid() const { return buf_ != nullptr; }
  uint64_t position() const { return pos_; }
  const Buffer& buffer() const { return *buf_; }

  // The field's offset within the table, 0 when absent (field ids count from 0 in schema order).
  uint16_t field_offset(int id) const {
    const uint64_t slot = 4 + 2 * static_cast<uint64_t>(id);
    if (slot + 2 > vt_size_) return 0;
    const uint16_t off = buf_->read<uint16_t>(vtable_ + slot, what_);
    if (off != 0 && off < 4) buf_->error(what_, ": field ", id, " has invalid offset ", off);
    return off;
  }
  bool has(int id) const { return field_offset(id) != 0; }

  template <class T>
  T scalar(int id, T default_value) const {
    const uint16_t off = field_offset(id);
    if (off == 0) return default_value;
    if (static_cast<uint64_t>(off) + sizeof(T) > table_size_)
      buf_->error(what_, ": field ", id, " (", sizeof(T), " bytes at ", off, ") overruns its table of ",
                  table_size_, " bytes");
    return buf_->read<T>(pos_ + off, what_);
  }

  // A sub-table; an invalid Table when the field is absent.
  Table table(int id, const char* what) const {
    const uint64_t at = ref_position(id);
    if (at == 0) return Table();
    return Table(buf_, buf_->follow(at, what), what);
  }

  // A vector of `elem_size`-byte elements (bounds of the whole vector checked here).
  VectorRef vector(int id, std::size_t elem_size, const char* what) const {
    VectorRef v;
    const uint64_t at = ref_position(id);
    if (at == 0) return v;
    const uint64_t vp = buf_->follow(at, what);
    v.count = buf_->read<uint32_t>(vp, what);
    v.pos = vp + 4;
    v.present = true;
    buf_->require(v.pos, static_cast<uint64_t>(v.count) * elem_size, what);
    return v;
  }

  template <class T>
  std::vector<T> scalars(int id, const char* what) const {
    const VectorRef v = vector(id, sizeof(T), what);
    std::vector<T> out(v.count);
    if (v.count) std::memcpy(out.data(), buf_->data() + v.pos, static_cast<std::size_t>(v.count) * sizeof(T));
    return out;
  }

  // Element i of a vector of tables.
  Table table_at(const VectorRef& v, uint32_t i, const char* what) const {
    if (i >= v.count) buf_->error(what, ": index ", i, " out of a vector of ", v.count);
    const uint64_t at = v.pos + 4ull * i;
    return Table(buf_, buf_->follow(at, what), what);
  }

  std::string string(int id, const char* what) const {
    const uint64_t at = ref_position(id);
    if (at == 0) return std::string();
    const uint64_t sp = buf_->follow(at, what);
    const uint32_t n = buf_->read<uint32_t>(sp, what);
    buf_->require(sp + 4, static_cast<uint64_t>(n), what);
    return std::string(reinterpret_cast<const char*>(buf_->data() + sp + 4), n);
  }

 private:
  // Position of a reference field (uoffset), 0 when absent.
  uint64_t ref_position(int id) const {
    const uint16_t off = field_offset(id);
    if (off == 0) return 0;
    if (static_cast<uint64_t>(off) + 4 > table_size_)
      buf_->error(what_, ": reference field ", id, " at ", off, " overruns its table of ", table_size_, " bytes");
    return pos_ + off;
  }

  const Buffer* buf_ = nullptr;
  uint64_t pos_ = 0, vtable_ = 0;
  uint16_t vt_size_ = 0, table_size_ = 0;
  const char* what_ = "table";
};

inline Table Buffer::root(const char* identifier) const {
  if (size_ < 8) error("file is ", size_, " bytes, too short for a flatbuffer");
  if (identifier && std::memcmp(data_ + 4, identifier, 4) != 0)
    error("file identifier is not \"", identifier, "\" (not this kind of file)");
  return Table(this, follow(0, "root"), "root table");
}

}  // namespace flatbuffer
}  // namespace io
}  // namespace retikd
