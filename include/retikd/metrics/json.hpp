// retikd/metrics/json.hpp — a small JSON value (build, read back, write) for the files a run produces:
// metrics.json, the JSON-lines epoch log, run state.
//
// Reading goes through io/json.hpp's strict parser (one parser in the library, and it already validates
// UTF-8, escapes, duplicate keys and nesting); this header adds a value type that is easy to build and query,
// and the writer.
//
// Conventions, chosen for metrics files that people and scripts both read:
// - objects keep insertion order (the order a file was written in is the order it is read back in);
// - integers are held exactly as int64 when written or parsed as integer literals; other numbers are doubles,
//   written with the fewest digits that read back to the same double (so a round trip is exact);
// - JSON has no NaN or infinity: a non-finite number becomes null (when stored), and as_number() reads null as
//   NaN (an undefined metric — e.g. the AUC of a class with no positive example — stays "undefined");
// - formatting and parsing do not depend on the C locale (no "0,5").
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <limits>
#include <locale>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "retikd/core/error.hpp"
#include "retikd/io/atomic_file.hpp"
#include "retikd/io/json.hpp"

namespace retikd {
namespace metrics {

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
    if (!in.fail() && back == v) break;  // a text beyond DBL_MAX fails (and reads as DBL_MAX): not a round trip
  }
  std::string s = buf;
  // "1e+20" and "3" are valid JSON numbers; make integral doubles recognisable as such when read ("3.0").
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

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
  Json(const char* s) : type_(Type::string), str_(s) {}         // NOLINT
  Json(std::string s) : type_(Type::string), str_(std::move(s)) {}  // NOLINT

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
    return str_;
  }

  // ---- arrays ----------------------------------------------------------------------------------------------
  Json& push_back(Json v) {
    if (type_ == Type::null) type_ = Type::array;
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
    if (type_ == Type::null) type_ = Type::object;
    require(Type::object, "an object");
    for (auto& m : members_)
      if (m.first == key) return m.second;
    members_.emplace_back(key, Json());
    return members_.back().second;
  }
  bool contains(const std::string& key) const { return find(key) != nullptr; }
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

  static Json parse(const std::string& text, const std::string& context = "json") {
    return from_value(io::parse_json(text, context));
  }
  static Json from_value(const io::JsonValue& v) {
    switch (v.kind) {
      case io::JsonValue::Kind::null: return Json();
      case io::JsonValue::Kind::boolean: return Json(v.boolean);
      case io::JsonValue::Kind::string: return Json(v.text);
      case io::JsonValue::Kind::number: return number_from_literal(v.text);
      case io::JsonValue::Kind::array: {
        Json j = array();
        for (const auto& item : v.items) j.items_.push_back(from_value(item));
        return j;
      }
      case io::JsonValue::Kind::object: {
        Json j = object();
        for (const auto& m : v.members) j.members_.emplace_back(m.first, from_value(m.second));
        return j;
      }
    }
    return Json();
  }

  friend bool operator==(const Json& a, const Json& b) {
    if (a.is_number() && b.is_number()) {
      if (a.type_ == Type::integer && b.type_ == Type::integer) return a.int_ == b.int_;
      return a.as_number() == b.as_number();
    }
    if (a.type_ != b.type_) return false;
    switch (a.type_) {
      case Type::null: return true;
      case Type::boolean: return a.bool_ == b.bool_;
      case Type::string: return a.str_ == b.str_;
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
  template <class U>
  static long long checked_unsigned(U v) {
    RETIKD_CHECK(v <= static_cast<unsigned long long>(std::numeric_limits<long long>::max()), "json: integer ", v,
                 " does not fit in int64");
    return static_cast<long long>(v);
  }

  static Json number_from_literal(const std::string& text) {
    if (text.find_first_of(".eE") == std::string::npos) {
      // An integer literal: exact when it fits in int64.
      const bool neg = !text.empty() && text[0] == '-';
      uint64_t v = 0;
      bool fits = true;
      for (std::size_t i = neg ? 1 : 0; i < text.size(); ++i) {
        const uint64_t d = static_cast<uint64_t>(text[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
          fits = false;
          break;
        }
        v = v * 10 + d;
      }
      const uint64_t limit = neg ? (1ull << 63) : (1ull << 63) - 1;
      if (fits && v <= limit) {
        Json j;
        j.type_ = Type::integer;
        j.int_ = neg ? static_cast<int64_t>(0 - v) : static_cast<int64_t>(v);
        return j;
      }
    }
    std::istringstream in(text);
    in.imbue(std::locale::classic());
    double d = 0;
    in >> d;
    if (in.fail()) d = text[0] == '-' ? -HUGE_VAL : HUGE_VAL;  // out of double range (1e999)
    return Json(d);
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
      case Type::string: io::append_json_string(out, str_); return;
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
          io::append_json_string(out, members_[i].first);
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
  std::string str_;
  std::vector<Json> items_;
  std::vector<std::pair<std::string, Json>> members_;
};

// ---- files -------------------------------------------------------------------------------------------------

inline std::string read_text_file(const std::string& path, const char* what = "read") {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(what, ": ", path, ": cannot open for reading");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail(what, ": ", path, ": read failed");
  return ss.str();
}

// Parses a JSON file; errors name the file and the byte offset.
inline Json read_json_file(const std::string& path) { return Json::parse(read_text_file(path, "json"), "json: " + path); }

// Writes `j` pretty-printed (2 spaces) with a final newline, atomically (temporary file + fsync + rename).
inline void write_json_file(const std::string& path, const Json& j, int indent = 2) {
  const std::string text = j.dump(indent) + "\n";
  io::write_file_atomically(path, [&](const io::ByteSink& sink) { sink(text.data(), text.size()); }, "json");
}

}  // namespace metrics
}  // namespace retikd
