// retikd/core/cli_args.hpp — one strict, bounded parser for the numbers in command lines and environment
// variables, shared by every example, benchmark program and the library's own RETIKD_* variables.
//
//   cli::ArgReader args(argc, argv);
//   while (args.next()) {
//     if (args.is("--batch")) o.batch = args.integer(1, 4096);          // "--batch 0" is an error
//     else if (args.is("--lr")) o.lr = args.real(1e-12, 10.0);
//     else if (args.is("--logit-kd")) o.logit_kd = args.switch01();
//     else if (args.is("--out")) o.out = args.value();
//     else throw cli::ArgumentError("unknown option " + args.arg());
//   }
//   // callers catch cli::ArgumentError, print "<program>: <what()> (see --help)" and exit with status 2
//
// Why one parser: atoi("abc") is 0, atoi("99999999999999999999") is undefined, strtoll saturates, strtod
// reads "nan", "inf", "0x1p4" and a locale's decimal comma, and each program had picked a different one
// with different gaps. Here a number is the whole text or an error: integers are an optional '-' and decimal
// digits (no '+', spaces, hex or exponent) that fit in int64; reals are decimal with an optional fraction and
// exponent, read in the "C" locale, finite; and every value must lie in the range its option documents,
// so nothing downstream sees a count that overflows its arithmetic or a size that exhausts memory. A value
// of 0 that means "the preset's" or "no limit" is an explicit part of an option's range, never a fallback for
// text that did not parse.
//
// The header lives in core/ (not in examples/) because the library parses its own environment variables
// (RETIKD_NUM_THREADS, RETIKD_MAX_IMAGE_PIXELS) with it, and research code that builds its own programs on
// retikd gets the same behaviour.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <limits>
#include <locale>
#include <sstream>
#include <string>
#include <vector>

#include "retikd/core/error.hpp"

namespace retikd {
namespace cli {

// A bad command line (unknown option, missing or malformed value, value out of range): exit status 2.
class ArgumentError : public Error {
 public:
  explicit ArgumentError(const std::string& what) : Error(what) {}
};

// Exactly an optional '-' and 1..19 decimal digits that fit in int64. No allocation, no locale.
inline bool parse_int64(const std::string& text, int64_t& out) {
  std::size_t i = 0;
  const bool negative = !text.empty() && text[0] == '-';
  if (negative) i = 1;
  if (i == text.size()) return false;
  // Accumulate negatively so INT64_MIN parses without overflow.
  int64_t v = 0;
  const int64_t min = std::numeric_limits<int64_t>::min();
  for (; i < text.size(); ++i) {
    const char c = text[i];
    if (c < '0' || c > '9') return false;
    const int64_t d = c - '0';
    if (v < (min + d) / 10) return false;
    v = v * 10 - d;
  }
  if (!negative) {
    if (v == min) return false;
    v = -v;
  }
  out = v;
  return true;
}

// A decimal real: -?(digits)(.digits?)?([eE][+-]?digits)? or -?.digits(…), finite, read in the "C" locale
// (a program that calls setlocale still reads "0.5", never "0,5"). No "nan", "inf", hex or spaces.
inline bool parse_double(const std::string& text, double& out) {
  std::size_t i = 0;
  const std::size_t n = text.size();
  if (i < n && text[i] == '-') ++i;
  std::size_t digits = 0;
  while (i < n && text[i] >= '0' && text[i] <= '9') ++i, ++digits;
  if (i < n && text[i] == '.') {
    ++i;
    while (i < n && text[i] >= '0' && text[i] <= '9') ++i, ++digits;
  }
  if (digits == 0) return false;
  if (i < n && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    if (i < n && (text[i] == '+' || text[i] == '-')) ++i;
    std::size_t exp_digits = 0;
    while (i < n && text[i] >= '0' && text[i] <= '9') ++i, ++exp_digits;
    if (exp_digits == 0) return false;
  }
  if (i != n) return false;
  std::istringstream in(text);
  in.imbue(std::locale::classic());
  double v = 0;
  in >> v;
  // istream sets failbit on overflow ("1e999"); the grammar above already excludes everything else.
  if (in.fail() || !(v == v) || v > std::numeric_limits<double>::max() || v < -std::numeric_limits<double>::max())
    return false;
  out = v;
  return true;
}

namespace detail {

inline std::string quoted_value(const std::string& text) {
  // Long or binary garbage is shortened and escaped so the message stays one readable line.
  std::string out = "'";
  for (std::size_t i = 0; i < text.size() && i < 64; ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (text.size() > 64) out += "...";
  return out + "'";
}

inline std::string range_text(double lo, double hi) {
  std::ostringstream os;
  os.imbue(std::locale::classic());
  os << "from " << lo << " to " << hi;
  return os.str();
}

}  // namespace detail

// `what` names the option ("--batch") or variable ("RETIKD_NUM_THREADS") in the error.
inline int64_t parse_int(const std::string& what, const std::string& text, int64_t lo, int64_t hi) {
  int64_t v = 0;
  if (!parse_int64(text, v) || v < lo || v > hi)
    throw ArgumentError(what + ": expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi) +
                        ", got " + detail::quoted_value(text));
  return v;
}

inline double parse_real(const std::string& what, const std::string& text, double lo, double hi) {
  double v = 0;
  if (!parse_double(text, v) || v < lo || v > hi)
    throw ArgumentError(what + ": expected a number " + detail::range_text(lo, hi) + ", got " +
                        detail::quoted_value(text));
  return v;
}

// "0" or "1" (the on/off options' documented spelling).
inline bool parse_switch(const std::string& what, const std::string& text) {
  if (text == "0") return false;
  if (text == "1") return true;
  throw ArgumentError(what + ": expected 0 or 1, got " + detail::quoted_value(text));
}

// "1,8,32": 1..max_count comma-separated integers, each in [lo, hi]; no empty items.
inline std::vector<int64_t> parse_int_list(const std::string& what, const std::string& text, int64_t lo, int64_t hi,
                                           std::size_t max_count) {
  std::vector<int64_t> out;
  std::size_t start = 0;
  for (;;) {
    const std::size_t comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (out.size() == max_count)
      throw ArgumentError(what + ": at most " + std::to_string(max_count) + " values, got " +
                          detail::quoted_value(text));
    out.push_back(parse_int(what, item, lo, hi));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

// An environment variable as a bounded integer: `fallback` when unset or empty; an ArgumentError naming
// the variable when it is set to anything else than an integer in [lo, hi] (a typo must not silently
// fall back to the default).
inline int64_t env_int(const char* name, int64_t fallback, int64_t lo, int64_t hi) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  return parse_int(name, v, lo, hi);
}

// Walks argv[1..]: next() moves to each argument in turn; value() and the typed readers consume the
// argument after it. Errors name the option.
class ArgReader {
 public:
  ArgReader(int argc, char** argv) : argc_(argc), argv_(argv) {}

  bool next() {
    if (i_ + 1 >= argc_) return false;
    arg_ = argv_[++i_];
    return true;
  }
  const std::string& arg() const { return arg_; }
  bool is(const char* name) const { return arg_ == name; }

  std::string value() {
    if (i_ + 1 >= argc_) throw ArgumentError(arg_ + " needs a value");
    return argv_[++i_];
  }
  int64_t integer(int64_t lo, int64_t hi) { return parse_int(arg_, value(), lo, hi); }
  double real(double lo, double hi) { return parse_real(arg_, value(), lo, hi); }
  bool switch01() { return parse_switch(arg_, value()); }
  std::vector<int64_t> integer_list(int64_t lo, int64_t hi, std::size_t max_count) {
    return parse_int_list(arg_, value(), lo, hi, max_count);
  }

 private:
  int argc_;
  char** argv_;
  int i_ = 0;
  std::string arg_;
};

}  // namespace cli
}  // namespace retikd
