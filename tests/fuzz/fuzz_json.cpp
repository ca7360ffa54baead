// tests/fuzz/fuzz_json.cpp — fuzzes io/json.hpp (every loader's metadata goes through it) and the
// metrics::Json view of its result. Promise checked: an accepted document survives a round trip through the
// string escaper unchanged (what is parsed is exactly what writing it back means), and the small-limits
// parse accepts a subset of what the default parse accepts.
#include "fuzz_target.hpp"

#include <retikd/io/json.hpp>
#include <retikd/metrics/json.hpp>

namespace fuzz_json {

using retikd::io::JsonValue;

// JSON text of a parsed value: numbers verbatim, strings through the library's escaper.
inline void write(const JsonValue& v, std::string& out) {
  switch (v.kind) {
    case JsonValue::Kind::null: out += "null"; break;
    case JsonValue::Kind::boolean: out += v.boolean ? "true" : "false"; break;
    case JsonValue::Kind::number: out += v.text; break;
    case JsonValue::Kind::string: retikd::io::append_json_string(out, v.text); break;
    case JsonValue::Kind::array:
      out += '[';
      for (std::size_t i = 0; i < v.items.size(); ++i) {
        if (i) out += ',';
        write(v.items[i], out);
      }
      out += ']';
      break;
    case JsonValue::Kind::object:
      out += '{';
      for (std::size_t i = 0; i < v.members.size(); ++i) {
        if (i) out += ',';
        retikd::io::append_json_string(out, v.members[i].first);
        out += ':';
        write(v.members[i].second, out);
      }
      out += '}';
      break;
  }
}

inline bool same(const JsonValue& a, const JsonValue& b) {
  if (a.kind != b.kind || a.boolean != b.boolean || a.text != b.text || a.items.size() != b.items.size() ||
      a.members.size() != b.members.size())
    return false;
  for (std::size_t i = 0; i < a.items.size(); ++i)
    if (!same(a.items[i], b.items[i])) return false;
  for (std::size_t i = 0; i < a.members.size(); ++i)
    if (a.members[i].first != b.members[i].first || !same(a.members[i].second, b.members[i].second)) return false;
  return true;
}

}  // namespace fuzz_json

RETIKD_FUZZ_TARGET(json)(const uint8_t* data, std::size_t size) {
  using namespace retikd;
  const char* text = reinterpret_cast<const char*>(data);
  bool accepted = false;
  io::JsonValue v;
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
  const io::JsonValue back = io::parse_json(again, "fuzz round trip");  // must not throw: it came from a value
  FUZZ_REQUIRE(fuzz_json::same(v, back));
  FUZZ_EXPECT_ERROR_OR_SUCCESS(metrics::Json::from_value(v).dump());
  return 0;
}
