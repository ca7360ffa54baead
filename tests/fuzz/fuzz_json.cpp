// tests/fuzz/fuzz_json.cpp — fuzzes io/json.hpp, the one JSON parser and value type (every loader's metadata
// and every run file go through it). Promises checked: an accepted document survives a round trip through the
// string escaper with its number tokens verbatim, unchanged (what is parsed is exactly what writing it back
// means); it survives one through the library's own writer (dump, compact and pretty) as an equal value; and
// the small-limits parse accepts a subset of what the default parse accepts.
#include "fuzz_target.hpp"

#include <retikd/io/json.hpp>

namespace fuzz_json {

using retikd::io::Json;

// JSON text of a parsed value: number tokens verbatim (literal()), strings through the library's escaper.
inline void write(const Json& v, std::string& out) {
  if (!v.literal().empty()) {  // a number token, also one beyond double range (read as null)
    out += v.literal();
    return;
  }
  switch (v.type()) {
    case Json::Type::null: out += "null"; break;
    case Json::Type::boolean: out += v.as_bool() ? "true" : "false"; break;
    case Json::Type::integer:
    case Json::Type::number: FUZZ_REQUIRE(false && "a parsed number keeps its token"); break;
    case Json::Type::string: retikd::io::append_json_string(out, v.as_string()); break;
    case Json::Type::array:
      out += '[';
      for (std::size_t i = 0; i < v.items().size(); ++i) {
        if (i) out += ',';
        write(v.items()[i], out);
      }
      out += ']';
      break;
    case Json::Type::object:
      out += '{';
      for (std::size_t i = 0; i < v.members().size(); ++i) {
        if (i) out += ',';
        retikd::io::append_json_string(out, v.members()[i].first);
        out += ':';
        write(v.members()[i].second, out);
      }
      out += '}';
      break;
  }
}

// Equal structure and equal tokens (stricter than operator==, which compares number values).
inline bool same(const Json& a, const Json& b) {
  if (a.type() != b.type() || a.literal() != b.literal()) return false;
  switch (a.type()) {
    case Json::Type::boolean: return a.as_bool() == b.as_bool();
    case Json::Type::string: return a.as_string() == b.as_string();
    case Json::Type::array:
      if (a.items().size() != b.items().size()) return false;
      for (std::size_t i = 0; i < a.items().size(); ++i)
        if (!same(a.items()[i], b.items()[i])) return false;
      return true;
    case Json::Type::object:
      if (a.members().size() != b.members().size()) return false;
      for (std::size_t i = 0; i < a.members().size(); ++i)
        if (a.members()[i].first != b.members()[i].first || !same(a.members()[i].second, b.members()[i].second))
          return false;
      return true;
    default: return true;  // null and numbers: the type and the token decide
  }
}

}  // namespace fuzz_json

RETIKD_FUZZ_TARGET(json)(const uint8_t* data, std::size_t size) {
  using namespace retikd;
  const char* text = reinterpret_cast<const char*>(data);
  bool accepted = false;
  io::Json v;
  FUZZ_EXPECT_ERROR_OR_SUCCESS(v = io::parse_json(text, size, "fuzz"); accepted = true);
  io::JsonLimits small;
  small.max_depth = 4;
  small.max_values = 32;
  small.max_key_bytes = 8;
  small.max_string_bytes = 16;
  bool accepted_small = false;
  FUZZ_EXPECT_ERROR_OR_SUCCESS(io::parse_json(text, size, "fuzz", small); accepted_small = true);
  FUZZ_REQUIRE(accepted || !accepted_small);
  if (!accepted) return 0;
  std::string again;
  fuzz_json::write(v, again);
  const io::Json back = io::parse_json(again, "fuzz round trip");  // must not throw: it came from a value
  FUZZ_REQUIRE(fuzz_json::same(v, back));
  // The writer: shortest round-trip doubles, exact int64, non-finite already null, so the value reads back equal.
  for (int indent : {-1, 2}) FUZZ_REQUIRE(io::parse_json(v.dump(indent), "fuzz dump") == v);
  return 0;
}
