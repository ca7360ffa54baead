// retikd/io/json.hpp — retikd's one JSON value type (io::Json: build, query, write) and its one parser, for
// two kinds of file: the metadata retikd reads from untrusted files (safetensors headers, bundle metadata),
// and the files a run produces (metrics.json, the JSON-lines epoch log, checkpoint sections).
//
// One type and one parser for both, so there is one reader to harden and fuzz (tests/fuzz/fuzz_json.cpp) and
// a value means the same thing whichever file it came from.
//
// The parser is strict on purpose: a weights file whose header is not exactly valid JSON is corrupt, and
// guessing what it meant would load wrong weights silently. So: UTF-8 is validated (no overlong forms, no
// surrogates), strings may not hold raw control characters, escapes must be complete (\uXXXX surrogates
// paired), numbers follow the RFC grammar, objects may not repeat a key (which of two "w" entries would be the
// weights?), nesting is bounded (no stack overflow on "[[[[…"), and nothing but whitespace may follow the
// value. Errors name the byte offset and what was wrong there.
//
// Bounded on purpose, too (JsonLimits): the time is linear in the input (duplicate keys are found by sorting
// each object's keys once it is complete, O(n log n) string comparisons in the worst case, instead of
// comparing every key with every earlier one: 200,000 keys took 113 s that way), and the memory is a bounded
// multiple of it: the number of values in a document, the length of a key and of a string, and the nesting
// depth all have limits, so a 100 MB header of "[0,0,0,…" cannot become 4 GB of tree nodes. The defaults
// hold any real safetensors header (a 1,000,000-value document is ~100,000 tensors); a caller that needs
// more passes its own limits.
//
// Conventions of the value, chosen for metrics files that people and scripts both read:
// - objects keep insertion order (the order a file was written in is the order it is read back in);
// - integers are held exactly as int64 when written or parsed as integer literals; other numbers are doubles,
//   written with the fewest digits that read back to the same double (so a round trip is exact);
// - JSON has no NaN or infinity: a non-finite number becomes null (when stored, and a literal beyond double
//   range such as 1e999 when parsed), and as_number() reads null as NaN (an undefined metric — e.g. the AUC
//   of a class with no positive example — stays "undefined");
// - a value parsed from a number token keeps the token as written (literal()), and to_uint64() converts that
//   token exactly. So an integer above INT64_MAX (a safetensors byte offset may be up to 2^64 - 1) is a
//   double to as_number() but exact to to_uint64(), without a third number kind that every query would have
//   to handle; and error messages can quote a number as the file wrote it. dump() writes values, not tokens
//   (a parsed 1e2 is written back as 100.0);
// - formatting and parsing do not depend on the C locale (no "0,5").
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <locale>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "retikd/core/error.hpp"
#include "retikd/io/atomic_file.hpp"

namespace retikd {
namespace io {

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

// What can be wrong with a UTF-8 sequence (RFC 3629).
enum class Utf8Fault { none, lead, truncated, continuation, value };

// Checks the UTF-8 sequence at p (avail bytes left, p[0] >= 0x80) by RFC 3629 — shortest form, no surrogates, at
// most U+10FFFF — and returns its length; on a fault returns 0 with `fault` set and `bad` the offending byte
// (the lead or continuation byte). The one decoder behind is_valid_utf8 and the parser's strings.
inline std::size_t utf8_sequence(const unsigned char* p, std::size_t avail, Utf8Fault& fault, unsigned char& bad) {
  const unsigned char b0 = p[0];
  std::size_t len;
  uint32_t cp, min;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2, cp = b0 & 0x1Fu, min = 0x80;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3, cp = b0 & 0x0Fu, min = 0x800;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4, cp = b0 & 0x07u, min = 0x10000;
  } else {
    fault = Utf8Fault::lead, bad = b0;
    return 0;
  }
  if (avail < len) {
    fault = Utf8Fault::truncated;
    return 0;
  }
  for (std::size_t k = 1; k < len; ++k) {
    if ((p[k] & 0xC0) != 0x80) {
      fault = Utf8Fault::continuation, bad = p[k];
      return 0;
    }
    cp = (cp << 6) | (p[k] & 0x3Fu);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    fault = Utf8Fault::value;
    return 0;
  }
  fault = Utf8Fault::none;
  return len;
}

// True when `s` is well-formed UTF-8 (what the parser accepts inside strings).
inline bool is_valid_utf8(const std::string& s) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(s.data());
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    Utf8Fault fault;
    unsigned char bad = 0;
    const std::size_t len = utf8_sequence(p + i, n - i, fault, bad);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

// `s` as a JSON string literal, quotes included.
inline std::string json_string(const std::string& s) {
  std::string out;
  append_json_string(out, s);
  return out;
}

// The shortest decimal text that reads back as exactly `v` (finite v), independent of the locale.
inline std::string format_double(double v) {
  char buf[40];
  for (int precision = 15; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    for (char* p = buf; *p; ++p)
      if (*p == ',') *p = '.';  // a locale with a decimal comma
    std::istringstream in(buf);
    in.imbue(std::locale::classic());
    double back = 0;
    in >> back;
    if (!in.fail() && back == v) break;  // a text beyond DBL_MAX fails (and reads as DBL_MAX), not a round trip
  }
  std::string s = buf;
  // "1e+20" and "3" are valid JSON numbers; make integral doubles recognisable as such when read ("3.0").
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

namespace detail {
class JsonParser;
}

// One JSON value, built in code or by parse_json (the conventions are at the top of this file).
class Json {
 public:
  enum class Type { null, boolean, integer, number, string, array, object };

  Json() = default;
  Json(std::nullptr_t) {}                                       // NOLINT: implicit by design
  Json(bool b) : type_(Type::boolean), bool_(b) {}              // NOLINT
  Json(int v) : type_(Type::integer), int_(v) {}                // NOLINT
  Json(long v) : type_(Type::integer), int_(v) {}               // NOLINT
  Json(long long v) : type_(Type::integer), int_(v) {}          // NOLINT
  Json(unsigned v) : type_(Type::integer), int_(v) {}           // NOLINT
  Json(unsigned long v) : Json(checked_unsigned(v)) {}          // NOLINT
  Json(unsigned long long v) : Json(checked_unsigned(v)) {}     // NOLINT
  // A non-finite double becomes null right away, so a value reads the same before and after a round trip.
  Json(double v) : type_(std::isfinite(v) ? Type::number : Type::null), num_(std::isfinite(v) ? v : 0.0) {}  // NOLINT
  Json(float v) : Json(static_cast<double>(v)) {}               // NOLINT
  Json(const char* s) : type_(Type::string), text_(s) {}        // NOLINT
  Json(std::string s) : type_(Type::string), text_(std::move(s)) {}  // NOLINT

  static Json array() {
    Json j;
    j.type_ = Type::array;
    return j;
  }
  static Json object() {
    Json j;
    j.type_ = Type::object;
    return j;
  }
  template <class T>
  static Json array_of(const std::vector<T>& values) {
    Json j = array();
    for (const T& v : values) j.push_back(Json(v));
    return j;
  }

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::null; }
  bool is_bool() const { return type_ == Type::boolean; }
  bool is_number() const { return type_ == Type::integer || type_ == Type::number; }
  bool is_integer() const { return type_ == Type::integer; }
  bool is_string() const { return type_ == Type::string; }
  bool is_array() const { return type_ == Type::array; }
  bool is_object() const { return type_ == Type::object; }

  // ---- reading values (errors name the expected and actual type) -------------------------------------------
  bool as_bool() const {
    require(Type::boolean, "a boolean");
    return bool_;
  }
  // A number as double; null reads as NaN (see the header comment).
  double as_number() const {
    if (type_ == Type::integer) return static_cast<double>(int_);
    if (type_ == Type::number) return num_;
    if (type_ == Type::null) return std::numeric_limits<double>::quiet_NaN();
    fail("json: expected a number, got ", type_name(type_));
  }
  // An integer; a double that holds an integral value in range is accepted too.
  int64_t as_int() const {
    if (type_ == Type::integer) return int_;
    if (type_ == Type::number && std::isfinite(num_) && num_ == std::floor(num_) && std::fabs(num_) < 9.2e18)
      return static_cast<int64_t>(num_);
    fail("json: expected an integer, got ", type_ == Type::number ? "the number " + format_double(num_)
                                                                 : std::string(type_name(type_)));
  }
  const std::string& as_string() const {
    require(Type::string, "a string");
    return text_;
  }
  // The number token as the parsed document wrote it ("-2.5e3"; also for a literal beyond double range, which
  // reads as null); empty for every other value, and for numbers built in code.
  const std::string& literal() const {
    static const std::string none;
    return type_ == Type::string ? none : text_;
  }
  // A non-negative integer that fits in 64 bits, exactly; false otherwise. A parsed number must be written as
  // one (no sign, fraction or exponent: "1.0", "1e2" and "-0" are refused; up to 18446744073709551615); a
  // number built in code must be a non-negative integer.
  bool to_uint64(uint64_t& out) const {
    if (!text_.empty() && type_ != Type::string) {
      uint64_t v = 0;
      for (char c : text_) {
        if (c < '0' || c > '9') return false;
        const uint64_t d = static_cast<uint64_t>(c - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
      }
      out = v;
      return true;
    }
    if (type_ != Type::integer || int_ < 0) return false;
    out = static_cast<uint64_t>(int_);
    return true;
  }

  // ---- arrays ----------------------------------------------------------------------------------------------
  Json& push_back(Json v) {
    if (type_ == Type::null) *this = array();
    require(Type::array, "an array");
    items_.push_back(std::move(v));
    return items_.back();
  }
  std::size_t size() const {
    if (type_ == Type::array) return items_.size();
    if (type_ == Type::object) return members_.size();
    fail("json: size() of ", type_name(type_));
  }
  const Json& at(std::size_t i) const {
    require(Type::array, "an array");
    RETIKD_CHECK(i < items_.size(), "json: index ", i, " out of range (array of ", items_.size(), ")");
    return items_[i];
  }
  Json& at(std::size_t i) {
    require(Type::array, "an array");
    RETIKD_CHECK(i < items_.size(), "json: index ", i, " out of range (array of ", items_.size(), ")");
    return items_[i];
  }
  const std::vector<Json>& items() const {
    require(Type::array, "an array");
    return items_;
  }

  // ---- objects ---------------------------------------------------------------------------------------------
  // The member `key`, created as null when missing (a null value becomes an empty object first).
  Json& operator[](const std::string& key) {
    if (type_ == Type::null) *this = object();
    require(Type::object, "an object");
    for (auto& m : members_)
      if (m.first == key) return m.second;
    members_.emplace_back(key, Json());
    return members_.back().second;
  }
  bool contains(const std::string& key) const { return find(key) != nullptr; }
  // The member named `key`, or nullptr (also for a value that is not an object); a linear search, in file
  // order, for the small objects of metadata and metrics.
  const Json* find(const std::string& key) const {
    if (type_ != Type::object) return nullptr;
    for (const auto& m : members_)
      if (m.first == key) return &m.second;
    return nullptr;
  }
  const Json& at(const std::string& key) const {
    require(Type::object, "an object");
    const Json* v = find(key);
    if (!v) fail("json: missing key \"", key, "\" (has ", key_list(), ")");
    return *v;
  }
  bool erase(const std::string& key) {
    require(Type::object, "an object");
    for (auto it = members_.begin(); it != members_.end(); ++it)
      if (it->first == key) {
        members_.erase(it);
        return true;
      }
    return false;
  }
  // In insertion order (file order for a parsed object; keys unique there).
  const std::vector<std::pair<std::string, Json>>& members() const {
    require(Type::object, "an object");
    return members_;
  }

  // ---- text ------------------------------------------------------------------------------------------------
  // indent < 0: one line (JSON-lines); otherwise pretty-printed with `indent` spaces per level. Arrays of
  // scalars stay on one line even when pretty-printed (confusion-matrix rows read as rows).
  std::string dump(int indent = -1) const {
    std::string out;
    write(out, indent, 0);
    return out;
  }

  // Compares values, not tokens: a parsed 1e2 equals a parsed 100 and Json(100).
  friend bool operator==(const Json& a, const Json& b) {
    if (a.is_number() && b.is_number()) {
      if (a.type_ == Type::integer && b.type_ == Type::integer) return a.int_ == b.int_;
      return a.as_number() == b.as_number();
    }
    if (a.type_ != b.type_) return false;
    switch (a.type_) {
      case Type::null: return true;
      case Type::boolean: return a.bool_ == b.bool_;
      case Type::string: return a.text_ == b.text_;
      case Type::array: return a.items_ == b.items_;
      case Type::object: return a.members_ == b.members_;
      default: return false;
    }
  }
  friend bool operator!=(const Json& a, const Json& b) { return !(a == b); }

  static const char* type_name(Type t) {
    switch (t) {
      case Type::null: return "null";
      case Type::boolean: return "a boolean";
      case Type::integer: return "an integer";
      case Type::number: return "a number";
      case Type::string: return "a string";
      case Type::array: return "an array";
      case Type::object: return "an object";
    }
    return "?";
  }

 private:
  friend class detail::JsonParser;  // builds values in place, number tokens included

  template <class U>
  static long long checked_unsigned(U v) {
    RETIKD_CHECK(v <= static_cast<unsigned long long>(std::numeric_limits<long long>::max()), "json: integer ", v,
                 " does not fit in int64");
    return static_cast<long long>(v);
  }

  // The value of a number token that the parser accepted (RFC grammar), keeping the token.
  static Json from_number_token(std::string token) {
    Json j;
    if (token.find_first_of(".eE") == std::string::npos) {
      // An integer literal: exact when it fits in int64.
      const bool neg = token[0] == '-';
      uint64_t v = 0;
      bool fits = true;
      for (std::size_t i = neg ? 1 : 0; i < token.size(); ++i) {
        const uint64_t d = static_cast<uint64_t>(token[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
          fits = false;
          break;
        }
        v = v * 10 + d;
      }
      const uint64_t limit = neg ? (1ull << 63) : (1ull << 63) - 1;
      if (fits && v <= limit) {
        j.type_ = Type::integer;
        j.int_ = neg ? static_cast<int64_t>(0 - v) : static_cast<int64_t>(v);
      }
    }
    if (j.type_ != Type::integer) {
      std::istringstream in(token);
      in.imbue(std::locale::classic());
      double d = 0;
      in >> d;
      if (in.fail()) d = token[0] == '-' ? -HUGE_VAL : HUGE_VAL;  // out of double range (1e999)
      j = Json(d);
    }
    j.text_ = std::move(token);
    return j;
  }

  void require(Type t, const char* what) const {
    if (type_ != t) fail("json: expected ", what, ", got ", type_name(type_));
  }
  std::string key_list() const {
    std::string s;
    for (const auto& m : members_) s += (s.empty() ? "" : ", ") + m.first;
    return s.empty() ? "no keys" : s;
  }
  bool is_scalar() const { return type_ != Type::array && type_ != Type::object; }

  static void newline(std::string& out, int indent, int level) {
    out += '\n';
    out.append(static_cast<std::size_t>(indent * level), ' ');
  }
  void write(std::string& out, int indent, int level) const {
    switch (type_) {
      case Type::null: out += "null"; return;
      case Type::boolean: out += bool_ ? "true" : "false"; return;
      case Type::integer: out += std::to_string(int_); return;
      case Type::number: out += format_double(num_); return;
      case Type::string: append_json_string(out, text_); return;
      case Type::array: {
        bool flat = indent < 0;
        if (!flat) {
          flat = true;
          for (const Json& v : items_) flat = flat && v.is_scalar();
        }
        out += '[';
        for (std::size_t i = 0; i < items_.size(); ++i) {
          if (i) out += flat && indent >= 0 ? ", " : ",";
          if (!flat) newline(out, indent, level + 1);
          items_[i].write(out, indent, level + 1);
        }
        if (!flat && !items_.empty()) newline(out, indent, level);
        out += ']';
        return;
      }
      case Type::object: {
        out += '{';
        for (std::size_t i = 0; i < members_.size(); ++i) {
          if (i) out += ',';
          if (indent >= 0) newline(out, indent, level + 1);
          append_json_string(out, members_[i].first);
          out += indent >= 0 ? ": " : ":";
          members_[i].second.write(out, indent, level + 1);
        }
        if (indent >= 0 && !members_.empty()) newline(out, indent, level);
        out += '}';
        return;
      }
    }
  }

  Type type_ = Type::null;
  bool bool_ = false;
  int64_t int_ = 0;
  double num_ = 0.0;
  std::string text_;  // string: the decoded UTF-8 value; a value parsed from a number token: the token
  std::vector<Json> items_;                               // array
  std::vector<std::pair<std::string, Json>> members_;     // object, in insertion (file) order
};

// What a value is, in the words of a message about a file: JSON has one kind of number, so an integer, a
// fraction and a number token too large for a double are all "a number".
inline const char* json_kind_name(const Json& v) {
  return v.is_number() || !v.literal().empty() ? "a number" : Json::type_name(v.type());
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

  Json parse_document() {
    skip_ws();
    Json v = parse_value(0);
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

  Json parse_value(int depth) {
    if (depth > limits_.max_depth) error("nesting deeper than " + std::to_string(limits_.max_depth) + " levels");
    if (at_end()) error("unexpected end of input, expected a value");
    if (++values_ > limits_.max_values)
      error("more than " + std::to_string(limits_.max_values) + " values in one document (the limit)");
    Json v;
    const char c = p_[i_];
    if (c == '{') {
      v.type_ = Json::Type::object;
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
        Json member = parse_value(depth + 1);
        v.members_.emplace_back(std::move(key), std::move(member));
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
      v.type_ = Json::Type::array;
      ++i_;
      skip_ws();
      if (!at_end() && p_[i_] == ']') {
        ++i_;
        return v;
      }
      for (;;) {
        skip_ws();
        v.items_.push_back(parse_value(depth + 1));
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
      v.type_ = Json::Type::string;
      v.text_ = parse_string(limits_.max_string_bytes, "string");
      return v;
    }
    if (c == 't') {
      expect_literal("true");
      v.type_ = Json::Type::boolean;
      v.bool_ = true;
      return v;
    }
    if (c == 'f') {
      expect_literal("false");
      v.type_ = Json::Type::boolean;
      return v;
    }
    if (c == 'n') {
      expect_literal("null");
      return v;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      return Json::from_number_token(parse_number());
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
    Utf8Fault fault;
    unsigned char bad = 0;
    const std::size_t len = utf8_sequence(reinterpret_cast<const unsigned char*>(p_ + i_), n_ - i_, fault, bad);
    switch (fault) {
      case Utf8Fault::none: break;
      case Utf8Fault::lead: error("invalid UTF-8 lead byte " + describe_byte(bad));
      case Utf8Fault::truncated: error("truncated UTF-8 sequence");
      case Utf8Fault::continuation: error("invalid UTF-8 continuation byte " + describe_byte(bad));
      case Utf8Fault::value: error("invalid UTF-8 sequence");
    }
    out.append(p_ + i_, len);
    i_ += len;
  }

  // Reports the first key (in file order) that repeats an earlier one. Small objects compare directly;
  // larger ones sort their member indices by key, so the cost stays O(n log n) for any input — a hash set
  // would be linear on average, but std::hash is unkeyed and colliding keys can be crafted.
  void check_unique_keys(const Json& v, const std::vector<std::size_t>& key_offsets) {
    const auto& m = v.members_;
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
inline Json parse_json(const char* data, std::size_t size, const std::string& context = "json",
                       const JsonLimits& limits = {}) {
  return detail::JsonParser(data, size, context, limits).parse_document();
}
inline Json parse_json(const std::string& text, const std::string& context = "json", const JsonLimits& limits = {}) {
  return parse_json(text.data(), text.size(), context, limits);
}

// ---- files -------------------------------------------------------------------------------------------------

// The whole file as bytes; errors start with `what` and name the file.
inline std::string read_text_file(const std::string& path, const char* what = "read") {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(what, ": ", path, ": cannot open for reading");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail(what, ": ", path, ": read failed");
  return ss.str();
}

// Parses a JSON file; errors name the file and the byte offset.
inline Json read_json_file(const std::string& path) {
  return parse_json(read_text_file(path, "json"), "json: " + path);
}

// Writes `j` pretty-printed (2 spaces) with a final newline, atomically (temporary file + fsync + rename).
inline void write_json_file(const std::string& path, const Json& j, int indent = 2) {
  const std::string text = j.dump(indent) + "\n";
  write_file_atomically(path, [&](const ByteSink& sink) { sink(text.data(), text.size()); }, "json");
}

}  // namespace io
}  // namespace retikd
