// retikd/io/json.hpp — a small, strict JSON (RFC 8259) parser and string escaper, written for the headers
// of safetensors files and other small metadata that retikd reads from untrusted files.
//
// Strict on purpose: a weights file whose header is not exactly valid JSON is corrupt, and guessing what it
// meant would load wrong weights silently. So: UTF-8 is validated (no overlong forms, no surrogates), strings
// may not hold raw control characters, escapes must be complete (\uXXXX surrogates paired), numbers follow
// the RFC grammar, objects may not repeat a key (which of two "w" entries would be the weights?), nesting is
// bounded (no stack overflow on "[[[[…"), and nothing but whitespace may follow the value. Errors name the
// byte offset and what was wrong there.
//
// Bounded on purpose, too (JsonLimits): the time is linear in the input (duplicate keys are found by sorting
// each object's keys once it is complete, O(n log n) string comparisons in the worst case, instead of
// comparing every key with every earlier one: 200,000 keys took 113 s that way), and the memory is a bounded
// multiple of it: the number of values in a document, the length of a key and of a string, and the nesting
// depth all have limits, so a 100 MB header of "[0,0,0,…" cannot become 4 GB of tree nodes. The defaults
// hold any real safetensors header (a 1,000,000-value document is ~100,000 tensors); a caller that needs
// more passes its own limits.
//
// Numbers keep their literal text; as_uint64() converts exactly (shapes and byte offsets exceed 2^53 only in
// corrupt files, but a double would silently round them).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "retikd/core/error.hpp"

namespace retikd {
namespace io {

struct JsonValue {
  enum class Kind : uint8_t { null, boolean, number, string, array, object };

  Kind kind = Kind::null;
  bool boolean = false;
  std::string text;  // string: the decoded UTF-8 value; number: the literal as written
  std::vector<JsonValue> items;                               // array
  std::vector<std::pair<std::string, JsonValue>> members;     // object, in file order, keys unique

  bool is_null() const { return kind == Kind::null; }
  bool is_bool() const { return kind == Kind::boolean; }
  bool is_number() const { return kind == Kind::number; }
  bool is_string() const { return kind == Kind::string; }
  bool is_array() const { return kind == Kind::array; }
  bool is_object() const { return kind == Kind::object; }

  // The member named `key`, or nullptr (a linear search: for the small objects of metadata).
  const JsonValue* find(const std::string& key) const {
    for (const auto& m : members)
      if (m.first == key) return &m.second;
    return nullptr;
  }

  // A non-negative integer literal (no sign, fraction or exponent) that fits in 64 bits; false otherwise.
  bool to_uint64(uint64_t& out) const {
    if (kind != Kind::number || text.empty()) return false;
    uint64_t v = 0;
    for (char c : text) {
      if (c < '0' || c > '9') return false;
      const uint64_t d = static_cast<uint64_t>(c - '0');
      if (v > (UINT64_MAX - d) / 10) return false;
      v = v * 10 + d;
    }
    out = v;
    return true;
  }
};

inline const char* json_kind_name(JsonValue::Kind k) {
  switch (k) {
    case JsonValue::Kind::null: return "null";
    case JsonValue::Kind::boolean: return "a boolean";
    case JsonValue::Kind::number: return "a number";
    case JsonValue::Kind::string: return "a string";
    case JsonValue::Kind::array: return "an array";
    case JsonValue::Kind::object: return "an object";
  }
  return "unknown";
}

// What one document may hold; exceeding any limit is a parse error naming the limit.
struct JsonLimits {
  int max_depth = 64;                        // nesting of arrays and objects
  std::size_t max_values = 1u << 20;         // values in the document (object members and array items count)
  std::size_t max_key_bytes = 64u << 10;     // one object key, decoded
  std::size_t max_string_bytes = 64u << 20;  // one string value, decoded
};

namespace detail {

class JsonParser {
 public:
  JsonParser(const char* data, std::size_t size, std::string context, const JsonLimits& limits = {})
      : p_(data), n_(size), context_(std::move(context)), limits_(limits) {}

  JsonValue parse_document() {
    skip_ws();
    JsonValue v = parse_value(0);
    skip_ws();
    if (i_ != n_) error("unexpected data after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void error(const std::string& what) const {
    fail(context_, ": invalid JSON at byte ", i_, ": ", what);
  }
  bool at_end() const { return i_ >= n_; }
  unsigned char peek() const { return static_cast<unsigned char>(p_[i_]); }

  void skip_ws() {
    while (i_ < n_ && (p_[i_] == ' ' || p_[i_] == '\t' || p_[i_] == '\n' || p_[i_] == '\r')) ++i_;
  }
  void expect_literal(const char* word) {
    for (const char* w = word; *w; ++w) {
      if (at_end() || p_[i_] != *w) error(std::string("expected '") + word + "'");
      ++i_;
    }
  }

  JsonValue parse_value(int depth) {
    if (depth > limits_.max_depth) error("nesting deeper than " + std::to_string(limits_.max_depth) + " levels");
    if (at_end()) error("unexpected end of input, expected a value");
    if (++values_ > limits_.max_values)
      error("more than " + std::to_string(limits_.max_values) + " values in one document (the limit)");
    JsonValue v;
    const char c = p_[i_];
    if (c == '{') {
      v.kind = JsonValue::Kind::object;
      ++i_;
      skip_ws();
      if (!at_end() && p_[i_] == '}') {
        ++i_;
        return v;
      }
      std::vector<std::size_t> key_offsets;  // where each key starts, for the duplicate-key error
      for (;;) {
        skip_ws();
        if (at_end() || p_[i_] != '"') error("expected a string key in object");
        key_offsets.push_back(i_);
        std::string key = parse_string(limits_.max_key_bytes, "object key");
        skip_ws();
        if (at_end() || p_[i_] != ':') error("expected ':' after object key");
        ++i_;
        skip_ws();
        JsonValue member = parse_value(depth + 1);
        v.members.emplace_back(std::move(key), std::move(member));
        skip_ws();
        if (at_end()) error("unexpected end of input inside object");
        if (p_[i_] == ',') {
          ++i_;
          continue;
        }
        if (p_[i_] == '}') {
          const std::size_t end = ++i_;
          check_unique_keys(v, key_offsets);
          i_ = end;
          return v;
        }
        error("expected ',' or '}' in object");
      }
    }
    if (c == '[') {
      v.kind = JsonValue::Kind::array;
      ++i_;
      skip_ws();
      if (!at_end() && p_[i_] == ']') {
        ++i_;
        return v;
      }
      for (;;) {
        skip_ws();
        v.items.push_back(parse_value(depth + 1));
        skip_ws();
        if (at_end()) error("unexpected end of input inside array");
        if (p_[i_] == ',') {
          ++i_;
          continue;
        }
        if (p_[i_] == ']') {
          ++i_;
          return v;
        }
        error("expected ',' or ']' in array");
      }
    }
    if (c == '"') {
      v.kind = JsonValue::Kind::string;
      v.text = parse_string(limits_.max_string_bytes, "string");
      return v;
    }
    if (c == 't') {
      expect_literal("true");
      v.kind = JsonValue::Kind::boolean;
      v.boolean = true;
      return v;
    }
    if (c == 'f') {
      expect_literal("false");
      v.kind = JsonValue::Kind::boolean;
      return v;
    }
    if (c == 'n') {
      expect_literal("null");
      return v;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      v.kind = JsonValue::Kind::number;
      v.text = parse_number();
      return v;
    }
    error(std::string("unexpected character ") + describe_byte(peek()));
  }

  static std::string describe_byte(unsigned char b) {
    if (b >= 0x20 && b < 0x7f) return std::string("'") + static_cast<char>(b) + "'";
    static const char* hex = "0123456789abcdef";
    return std::string("0x") + hex[b >> 4] + hex[b & 15];
  }

  bool digit() const { return !at_end() && p_[i_] >= '0' && p_[i_] <= '9'; }

  // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  std::string parse_number() {
    const std::size_t start = i_;
    if (p_[i_] == '-') ++i_;
    if (!digit()) error("expected a digit in number");
    if (p_[i_] == '0') {
      ++i_;
      if (digit()) error("leading zero in number");
    } else {
      while (digit()) ++i_;
    }
    if (!at_end() && p_[i_] == '.') {
      ++i_;
      if (!digit()) error("expected a digit after '.' in number");
      while (digit()) ++i_;
    }
    if (!at_end() && (p_[i_] == 'e' || p_[i_] == 'E')) {
      ++i_;
      if (!at_end() && (p_[i_] == '+' || p_[i_] == '-')) ++i_;
      if (!digit()) error("expected a digit in number exponent");
      while (digit()) ++i_;
    }
    return std::string(p_ + start, i_ - start);
  }

  unsigned hex4() {
    if (n_ - i_ < 4) error("incomplete \\u escape");
    unsigned v = 0;
    for (int k = 0; k < 4; ++k) {
      const char h = p_[i_++];
      v <<= 4;
      if (h >= '0' && h <= '9') {
        v |= static_cast<unsigned>(h - '0');
      } else if (h >= 'a' && h <= 'f') {
        v |= static_cast<unsigned>(h - 'a' + 10);
      } else if (h >= 'A' && h <= 'F') {
        v |= static_cast<unsigned>(h - 'A' + 10);
      } else {
        --i_;
        error("invalid hex digit in \\u escape");
      }
    }
    return v;
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  // Copies one well-formed UTF-8 sequence starting at a byte >= 0x80 (RFC 3629: shortest form, no
  // surrogates, at most U+10FFFF).
  void copy_utf8(std::string& out) {
    const unsigned char b0 = peek();
    int len;
    uint32_t cp, min;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
      len = 2, cp = b0 & 0x1Fu, min = 0x80;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      len = 3, cp = b0 & 0x0Fu, min = 0x800;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      len = 4, cp = b0 & 0x07u, min = 0x10000;
    } else {
      error("invalid UTF-8 lead byte " + describe_byte(b0));
    }
    if (n_ - i_ < static_cast<std::size_t>(len)) error("truncated UTF-8 sequence");
    for (int k = 1; k < len; ++k) {
      const unsigned char b = static_cast<unsigned char>(p_[i_ + k]);
      if ((b & 0xC0) != 0x80) error("invalid UTF-8 continuation byte " + describe_byte(b));
      cp = (cp << 6) | (b & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) error("invalid UTF-8 sequence");
    out.append(p_ + i_, static_cast<std::size_t>(len));
    i_ += static_cast<std::size_t>(len);
  }

  // Reports the first key (in file order) that repeats an earlier one. Small objects compare directly;
  // larger ones sort their member indices by key, so the cost stays O(n log n) for any input — a hash set
  // would be linear on average, but std::hash is unkeyed and colliding keys can be crafted.
  void check_unique_keys(const JsonValue& v, const std::vector<std::size_t>& key_offsets) {
    const auto& m = v.members;
    const std::size_t n = m.size();
    std::size_t first_repeat = n;  // index of the earliest member whose key appeared before it
    if (n <= 16) {
      for (std::size_t b = 1; b < n && first_repeat == n; ++b)
        for (std::size_t a = 0; a < b; ++a)
          if (m[a].first == m[b].first) {
            first_repeat = b;
            break;
          }
    } else {
      std::vector<std::size_t> order(n);
      for (std::size_t k = 0; k < n; ++k) order[k] = k;
      std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        const int c = m[a].first.compare(m[b].first);
        return c != 0 ? c < 0 : a < b;
      });
      for (std::size_t k = 1; k < n; ++k)
        if (m[order[k]].first == m[order[k - 1]].first) first_repeat = std::min(first_repeat, order[k]);
    }
    if (first_repeat == n) return;
    i_ = key_offsets[first_repeat];
    error("duplicate key \"" + m[first_repeat].first + "\" in object");
  }

  std::string parse_string(std::size_t max_bytes, const char* what) {
    ++i_;  // opening quote
    std::string out;
    for (;;) {
      if (out.size() > max_bytes)
        error(std::string(what) + " longer than " + std::to_string(max_bytes) + " bytes (the limit)");
      if (at_end()) error("unterminated string");
      const unsigned char c = peek();
      if (c == '"') {
        ++i_;
        return out;
      }
      if (c < 0x20) error("raw control character " + describe_byte(c) + " in string (must be escaped)");
      if (c >= 0x80) {
        copy_utf8(out);
        continue;
      }
      if (c != '\\') {
        out += static_cast<char>(c);
        ++i_;
        continue;
      }
      ++i_;
      if (at_end()) error("unterminated escape in string");
      const char e = p_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xDC00 && cp <= 0xDFFF) error("unpaired low surrogate in \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (n_ - i_ < 2 || p_[i_] != '\\' || p_[i_ + 1] != 'u') error("unpaired high surrogate in \\u escape");
            i_ += 2;
            const uint32_t lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) error("high surrogate not followed by a low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default:
          --i_;
          error("invalid escape '\\" + std::string(1, e) + "' in string");
      }
    }
  }

  const char* p_;
  std::size_t n_;
  std::size_t i_ = 0;
  std::string context_;
  JsonLimits limits_;
  std::size_t values_ = 0;
};

}  // namespace detail

// Parses one JSON document; `context` (e.g. "safetensors: model.safetensors: header") starts every error.
inline JsonValue parse_json(const char* data, std::size_t size, const std::string& context = "json",
                            const JsonLimits& limits = {}) {
  return detail::JsonParser(data, size, context, limits).parse_document();
}
inline JsonValue parse_json(const std::string& text, const std::string& context = "json",
                            const JsonLimits& limits = {}) {
  return parse_json(text.data(), text.size(), context, limits);
}

// Appends `s` as a JSON string literal (quotes included); control characters become \uXXXX or the short
// escapes, everything else (UTF-8 included) is copied as is.
inline void append_json_string(std::string& out, const std::string& s) {
  static const char* hex = "0123456789abcdef";
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 15];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

// True when `s` is well-formed UTF-8 (what the parser accepts inside strings).
inline bool is_valid_utf8(const std::string& s) {
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    const unsigned char b0 = static_cast<unsigned char>(s[i]);
    if (b0 < 0x80) {
      ++i;
      continue;
    }
    int len;
    uint32_t cp, min;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
      len = 2, cp = b0 & 0x1Fu, min = 0x80;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      len = 3, cp = b0 & 0x0Fu, min = 0x800;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      len = 4, cp = b0 & 0x07u, min = 0x10000;
    } else {
      return false;
    }
    if (n - i < static_cast<std::size_t>(len)) return false;
    for (int k = 1; k < len; ++k) {
      const unsigned char b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += static_cast<std::size_t>(len);
  }
  return true;
}

inline std::string json_string(const std::string& s) {
  std::string out;
  append_json_string(out, s);
  return out;
}

}  // namespace io
}  // namespace retikd
