// retikd/data/classes.hpp — the four classes, in the one order every model, checkpoint and report uses.
//
// Cataract, DR, Glaucoma, Normal are indices 0..3, whatever order folders or manifests list them in.
// Folder names and manifest labels map case-insensitively, with the spellings real sets use for diabetic
// retinopathy (`DR`, `diabetic_retinopathy`, `diabetic retinopathy`, `diabetic-retinopathy`).
#pragma once

#include <array>
#include <cctype>
#include <string>

namespace retikd {
namespace data {

constexpr int kNumClasses = 4;

inline const std::array<const char*, kNumClasses>& class_names() {
  static const std::array<const char*, kNumClasses> names = {"Cataract", "DR", "Glaucoma", "Normal"};
  return names;
}
inline const char* class_name(int label) {
  return label >= 0 && label < kNumClasses ? class_names()[label] : "?";
}

inline std::string to_lower_trimmed(const std::string& s) {
  std::size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  std::string out = s.substr(b, e - b);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The class index for a folder name or label, or -1. With allow_index, "0".."3" are accepted too
// (manifests that store indices).
inline int parse_class(const std::string& name, bool allow_index = false) {
  const std::string s = to_lower_trimmed(name);
  if (s == "cataract") return 0;
  if (s == "dr" || s == "diabetic_retinopathy" || s == "diabetic retinopathy" || s == "diabetic-retinopathy" ||
      s == "diabeticretinopathy")
    return 1;
  if (s == "glaucoma") return 2;
  if (s == "normal") return 3;
  if (allow_index && s.size() == 1 && s[0] >= '0' && s[0] < '0' + kNumClasses) return s[0] - '0';
  return -1;
}

// The accepted names, for error messages.
inline std::string class_list_text() { return "Cataract, DR (or diabetic_retinopathy), Glaucoma, Normal"; }

}  // namespace data
}  // namespace retikd
