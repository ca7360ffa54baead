// retikd/deploy/bundle.hpp — the student bundle: one file that is everything a screening device needs to run
// a trained CNN student: fp16 weights with batch norm folded into the convolutions, the architecture, the
// class names, the preprocessing, a format version and a SHA-256 checksum.
//
//   deploy::ExportOptions opt;                      // classes (default Cataract, DR, Glaucoma, Normal),
//   opt.preprocess.resize = 224;                    //   preprocessing, free-form metadata
//   deploy::export_bundle("student.rkd", student, opt);      // any trained student (or a FoldedConvNet)
//   deploy::Bundle b = deploy::load_bundle("student.rkd");   // checks version and checksum, rebuilds
//   Var logits = b.model->forward(Var(batch));               // a ready FoldedConvNet (eval, fp32 on CPU)
//
// The file is a safetensors file (io/safetensors.hpp), so any safetensors reader can open it:
//   tensors        the folded state dict (deploy/fold.hpp): "<conv>.weight" / "<conv>.bias" for every
//                  convolution with its BN folded in, the classifier's Linear, squeeze-excitation convs —
//                  all F16 (a value beyond ±65504 or non-finite refuses to export)
//   __metadata__   "retikd.bundle"         format version ("1"); a file without it is not a bundle
//                  "retikd.arch"           create_model name: mobilenet_v2, resnet18, resnet34, efficientnet_b0
//                  "retikd.model_options"  JSON {"num_classes", "in_chans", "width_mult"}
//                  "retikd.classes"        JSON array of class names, in logit order
//                  "retikd.preprocess"     JSON {"fundus_crop", "resize", "crop", "mean", "std"}
//                  "retikd.weights"        "float16, batch norm folded"
//                  "retikd.checksum"       "sha256:<64 hex digits>" (below)
//                  other keys              the exporter's own metadata (keys starting "retikd." are reserved)
// The checksum is SHA-256 over a canonical form of everything else: the text "retikd-bundle-v1\n", then each
// metadata key except retikd.checksum in byte order as key NUL value NUL, then "\n", then each tensor in name
// order as name NUL dtype NUL shape ("3,32,3,3") NUL and its raw little-endian bytes. Hashing the parsed
// content (not the header's bytes) keeps the definition independent of JSON spacing, and any change to a
// weight, a shape, a name or a metadata value is caught.
//
// Loading treats the file as untrusted: a truncated or damaged file fails in the safetensors validation or the
// checksum, an unknown or newer format version, a missing key, a class list that does not match the model,
// or tensors that do not fit the architecture each throw BundleError naming the file and the problem.
// The checksum proves integrity, not sanity (anyone can recompute it), so every field is also checked against
// what a screening model can be before anything is allocated for it (check_bundle_fields, also applied on
// export): a known CNN architecture with 3 input channels; width_mult in [0.1, 4] (1 for ResNets); 1 to
// 1000 classes whose names are 1 to 64 bytes of UTF-8 without control characters, all different; resize and
// crop 0 or 16 to 1024 px; mean finite within ±10 and std within [0.001, 1000] (so normalised inputs stay
// finite, in fp16 too); and every weight finite. Class names are free text: wherever one reaches a file name
// (Grad-CAM overlays) or a CSV cell it is sanitised there (deploy/classify.hpp).
// A MobileNetV2 student with 4 classes is 4,434,136 bytes (2,211,940 folded parameters × 2 bytes plus a 10 KB
// header; limit 4,500,000 bytes, the paper's fp32 file was 8.79 MB).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <locale>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <utility>
#include <vector>

#include "retikd/core/error.hpp"
#include "retikd/data/classes.hpp"
#include "retikd/data/transforms.hpp"
#include "retikd/deploy/fold.hpp"
#include "retikd/deploy/sha256.hpp"
#include "retikd/io/json.hpp"
#include "retikd/io/safetensors.hpp"

namespace retikd {
namespace deploy {

constexpr int kBundleFormatVersion = 1;

// A bundle that cannot be written or read; what() starts with "bundle: <file>: ".
class BundleError : public Error {
 public:
  BundleError(const std::string& path, const std::string& problem)
      : Error("bundle: " + path + ": " + problem), path_(path) {}
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// How an image becomes the model's input, torchvision's eval pipeline: optional FundusCrop (square), Resize
// of the shorter side, CenterCrop, then ToTensor and Normalize (with an 8-bit rounding after the geometry, as
// the training loader does).
struct Preprocess {
  bool fundus_crop = false;
  int resize = 224;  // shorter side; 0: no resize
  int crop = 224;    // centre crop (square); 0: no crop
  std::array<float, 3> mean = data::kImageNetMean;
  std::array<float, 3> std = data::kImageNetStd;

  // The side of the model's (square) input, 0 when it depends on the image (no crop and no resize).
  int input_size() const { return crop > 0 ? crop : resize; }

  // The deterministic geometry (fundus crop, resize, centre crop) as a transform on float images.
  data::TransformPtr geometry() const {
    std::vector<data::TransformPtr> ts;
    if (fundus_crop) ts.push_back(data::make<data::FundusCrop>(true));
    if (resize > 0) ts.push_back(data::make<data::Resize>(resize));
    if (crop > 0) ts.push_back(data::make<data::CenterCrop>(crop));
    return data::compose(ts);
  }
  // A decoded image after the geometry, rounded to 8 bits — as the training loader holds its preprocessed
  // images (data/loader.hpp), so a bundle sees the pixels its evaluation saw. What overlays are drawn on.
  data::ImageU8 view(const data::ImageU8& decoded) const {
    Generator unused(0);
    return data::to_u8((*geometry())(data::to_float(decoded), unused));
  }
  // The normalised model input (3, H, W): view(), then ToTensor and Normalize.
  data::Image input(const data::ImageU8& decoded) const {
    data::Image f = data::to_float(view(decoded));
    data::normalize(f, mean, std);
    return f;
  }
};

// What a bundle's header says.
struct BundleInfo {
  std::string path;
  int format_version = kBundleFormatVersion;
  std::string arch;
  nn::ModelOptions options;
  std::vector<std::string> classes;
  Preprocess preprocess;
  std::string checksum;                         // "sha256:<hex>"
  std::map<std::string, std::string> metadata;  // the exporter's own keys
  int64_t file_bytes = 0;
  int64_t parameters = 0;                       // elements of all tensors
};

// A loaded bundle: its header and the ready inference model (eval mode, float32 on the CPU, parameters not
// requiring gradients).
struct Bundle {
  BundleInfo info;
  std::shared_ptr<FoldedConvNet> model;
};

struct ExportOptions {
  std::vector<std::string> classes;             // empty: data::class_names() (must match num_classes)
  Preprocess preprocess;
  std::map<std::string, std::string> metadata;  // stored as is; keys may not start with "retikd."
};

// The sanity limits of a bundle's fields (see the top of this file).
constexpr int64_t kBundleMaxClasses = 1000;
constexpr std::size_t kBundleMaxClassNameBytes = 64;
constexpr int kBundleMinSide = 16, kBundleMaxSide = 1024;  // resize and crop, when not 0
constexpr double kBundleMinWidthMult = 0.1, kBundleMaxWidthMult = 4.0;
constexpr float kBundleMaxAbsMean = 10.0f, kBundleMinStd = 1e-3f, kBundleMaxStd = 1e3f;

inline std::vector<std::string> bundle_archs() { return {"mobilenet_v2", "resnet18", "resnet34", "efficientnet_b0"}; }

// "" when the fields describe a model a bundle may hold (the limits above), else what is wrong.
inline std::string check_bundle_fields(const std::string& arch, const nn::ModelOptions& o,
                                       const std::vector<std::string>& classes, const Preprocess& p) {
  const std::vector<std::string> archs = bundle_archs();
  if (std::find(archs.begin(), archs.end(), arch) == archs.end())
    return "architecture \"" + arch + "\" is not a bundle architecture (mobilenet_v2, resnet18, resnet34, "
           "efficientnet_b0)";
  if (o.in_chans != 3) return str("in_chans ", o.in_chans, ": a bundle classifies RGB images (3 channels)");
  if (o.num_classes < 1 || o.num_classes > kBundleMaxClasses)
    return str("num_classes ", o.num_classes, " is not in [1, ", kBundleMaxClasses, "]");
  const bool has_width = arch == "mobilenet_v2" || arch == "efficientnet_b0";
  if (!std::isfinite(o.width_mult) || (has_width && (o.width_mult < kBundleMinWidthMult ||
                                                     o.width_mult > kBundleMaxWidthMult)))
    return str("width_mult ", o.width_mult, " is not in [", kBundleMinWidthMult, ", ", kBundleMaxWidthMult, "]");
  if (!has_width && o.width_mult != 1.0) return str("width_mult ", o.width_mult, ": ", arch, " has no width multiplier");
  if (static_cast<int64_t>(classes.size()) != o.num_classes)
    return str(classes.size(), " class names for num_classes ", o.num_classes);
  std::vector<std::string> sorted = classes;
  std::sort(sorted.begin(), sorted.end());
  for (std::size_t i = 0; i < sorted.size(); ++i) {
    const std::string& c = sorted[i];
    if (c.empty() || c.size() > kBundleMaxClassNameBytes)
      return str("class name \"", c.substr(0, kBundleMaxClassNameBytes), c.size() > kBundleMaxClassNameBytes ? "…" : "",
                 "\" is not 1 to ", kBundleMaxClassNameBytes, " bytes long");
    if (!io::is_valid_utf8(c)) return "a class name is not valid UTF-8";
    for (unsigned char ch : c)
      if (ch < 0x20 || ch == 0x7f) return "class name " + io::json_string(c) + " holds a control character";
    if (i > 0 && c == sorted[i - 1]) return "class name \"" + c + "\" appears twice";
  }
  auto side_ok = [](int v) { return v == 0 || (v >= kBundleMinSide && v <= kBundleMaxSide); };
  if (!side_ok(p.resize) || !side_ok(p.crop))
    return str("preprocess resize ", p.resize, " / crop ", p.crop, ": each must be 0 (none) or ", kBundleMinSide,
               " to ", kBundleMaxSide, " px");
  if (p.input_size() <= 0) return "preprocess needs a resize or a crop size (the model's input size)";
  for (int c = 0; c < 3; ++c) {
    if (!std::isfinite(p.mean[c]) || std::fabs(p.mean[c]) > kBundleMaxAbsMean)
      return str("preprocess mean ", p.mean[c], " is not a finite number within ±", kBundleMaxAbsMean);
    if (!std::isfinite(p.std[c]) || p.std[c] < kBundleMinStd || p.std[c] > kBundleMaxStd)
      return str("preprocess std ", p.std[c], " is not in [", kBundleMinStd, ", ", kBundleMaxStd, "]");
  }
  return "";
}

namespace detail {

// The shortest decimal that reads back as exactly v, independent of the C locale.
inline std::string format_number(double v) {
  RETIKD_CHECK(std::isfinite(v), "bundle: non-finite number ", v, " in metadata");
  for (int precision = 1; precision <= 17; ++precision) {
    std::ostringstream os;
    os.imbue(std::locale::classic());
    os.precision(precision);
    os << v;
    std::istringstream is(os.str());
    is.imbue(std::locale::classic());
    double back = 0;
    is >> back;
    if (back == v) return os.str();
  }
  std::ostringstream os;
  os.imbue(std::locale::classic());
  os.precision(17);
  os << v;
  return os.str();
}

inline bool parse_number(const std::string& text, double& out) {
  std::istringstream is(text);
  is.imbue(std::locale::classic());
  is >> out;
  return !is.fail() && is.peek() == std::char_traits<char>::eof();
}

inline std::string options_json(const nn::ModelOptions& o) {
  return "{\"num_classes\":" + std::to_string(o.num_classes) + ",\"in_chans\":" + std::to_string(o.in_chans) +
         ",\"width_mult\":" + format_number(o.width_mult) + "}";
}

inline std::string classes_json(const std::vector<std::string>& classes) {
  std::string s = "[";
  for (std::size_t i = 0; i < classes.size(); ++i) {
    if (i) s += ',';
    io::append_json_string(s, classes[i]);
  }
  return s + "]";
}

inline std::string triple_json(const std::array<float, 3>& v) {
  return "[" + format_number(v[0]) + "," + format_number(v[1]) + "," + format_number(v[2]) + "]";
}

inline std::string preprocess_json(const Preprocess& p) {
  return std::string("{\"fundus_crop\":") + (p.fundus_crop ? "true" : "false") + ",\"resize\":" +
         std::to_string(p.resize) + ",\"crop\":" + std::to_string(p.crop) + ",\"mean\":" + triple_json(p.mean) +
         ",\"std\":" + triple_json(p.std) + "}";
}

// Field readers that name the key and the file.
class MetaReader {
 public:
  explicit MetaReader(std::string path) : path_(std::move(path)) {}

  [[noreturn]] void bad(const std::string& what) const { throw BundleError(path_, what); }

  io::Json parse(const std::string& key, const std::string& text) const {
    try {
      return io::parse_json(text, key);
    } catch (const Error& e) {
      bad(str("metadata ", key, " is not valid JSON: ", e.what()));
    }
  }
  const io::Json& member(const io::Json& obj, const std::string& key, const char* name) const {
    const io::Json* v = obj.find(name);
    if (!v) bad(str("metadata ", key, " lacks \"", name, "\""));
    return *v;
  }
  // A Json number is finite: a literal beyond double range (1e999) reads as null.
  double number(const io::Json& v, const std::string& what) const {
    if (!v.is_number()) bad(str(what, " is not a finite number"));
    return v.as_number();
  }
  int64_t integer(const io::Json& v, const std::string& what, int64_t lo, int64_t hi) const {
    uint64_t u = 0;
    if (!v.to_uint64(u) || u < static_cast<uint64_t>(lo) || u > static_cast<uint64_t>(hi))
      bad(str(what, " must be an integer in [", lo, ", ", hi, "]"));
    return static_cast<int64_t>(u);
  }
  std::array<float, 3> triple(const io::Json& v, const std::string& what) const {
    if (!v.is_array() || v.items().size() != 3) bad(str(what, " must be an array of 3 numbers"));
    std::array<float, 3> out{};
    for (std::size_t i = 0; i < 3; ++i) out[i] = static_cast<float>(number(v.items()[i], what));
    return out;
  }

 private:
  std::string path_;
};

// The canonical byte stream the checksum covers (see the top of this file), fed to a hasher.
inline std::string compute_checksum(const std::map<std::string, std::string>& metadata,
                                    const std::vector<std::pair<std::string, Tensor>>& tensors) {
  Sha256 h;
  h.update("retikd-bundle-v1\n");
  const char nul = '\0';
  for (const auto& kv : metadata) {  // std::map: byte order of the keys
    if (kv.first == "retikd.checksum") continue;
    h.update(kv.first).update(&nul, 1).update(kv.second).update(&nul, 1);
  }
  h.update("\n");
  std::vector<const std::pair<std::string, Tensor>*> order;
  for (const auto& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const auto* a, const auto* b) { return a->first < b->first; });
  for (const auto* nt : order) {
    const Tensor t = nt->second.to(Device::cpu()).contiguous();
    std::string shape;
    for (int64_t d = 0; d < t.dim(); ++d) shape += (d ? "," : "") + std::to_string(t.size(d));
    h.update(nt->first).update(&nul, 1).update(io::safetensors_dtype_name(t.dtype())).update(&nul, 1);
    h.update(shape).update(&nul, 1);
    h.update(t.raw_data(), static_cast<std::size_t>(t.numel()) * t.element_size());
  }
  return "sha256:" + h.hex();
}

inline int64_t file_size(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : -1;
}

// The float16 copy of a folded state dict; refuses values float16 cannot hold.
inline std::vector<std::pair<std::string, Tensor>> half_state(const nn::Module& m, const std::string& path) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& kv : m.state_dict()) {
    const Tensor& t = kv.second;
    if (!is_floating(t.dtype())) {
      out.emplace_back(kv.first, t.to(Device::cpu()).contiguous());
      continue;
    }
    const std::vector<float> v = t.to_vector<float>();
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (!std::isfinite(v[i])) throw BundleError(path, str("tensor ", kv.first, " holds a non-finite value (", v[i],
                                                            " at element ", i, "): the student is broken"));
      if (std::fabs(v[i]) > 65504.0f)
        throw BundleError(path, str("tensor ", kv.first, " holds ", v[i], " at element ", i,
                                    ", beyond float16's range (±65504): cannot store it as float16"));
    }
    out.emplace_back(kv.first, t.to(Device::cpu()).to(DType::float16).contiguous());
  }
  return out;
}

}  // namespace detail

// Folds (if needed), converts to float16 and writes `student` as a bundle at `path` (atomically). `student`
// is a trained MobileNetV2 / ResNet / EfficientNet (its BN running statistics are folded in), or a
// FoldedConvNet. Returns the header as written.
inline BundleInfo export_bundle(const std::string& path, nn::Model& student, const ExportOptions& opt = {}) {
  std::shared_ptr<FoldedConvNet> folded;
  std::pair<std::string, nn::ModelOptions> recipe;
  try {
    if (auto* f = dynamic_cast<FoldedConvNet*>(&student)) {
      RETIKD_CHECK(f->has_recipe(), "this folded model was not made from a model create_model can rebuild");
      recipe = f->recipe();
      folded = std::shared_ptr<FoldedConvNet>(std::shared_ptr<FoldedConvNet>(), f);  // non-owning
    } else {
      recipe = rebuild_recipe(student);
      folded = fold_batch_norm(student);
    }
  } catch (const BundleError&) {
    throw;
  } catch (const Error& e) {
    throw BundleError(path, str("cannot export ", student.arch(), ": ", e.what()));
  }

  BundleInfo info;
  info.path = path;
  info.arch = recipe.first;
  info.options = recipe.second;
  info.preprocess = opt.preprocess;
  info.metadata = opt.metadata;
  info.classes = opt.classes;
  if (info.classes.empty())
    for (const char* c : data::class_names()) info.classes.push_back(c);
  if (static_cast<int64_t>(info.classes.size()) != folded->num_classes())
    throw BundleError(path, str(info.classes.size(), " class names for a model with ", folded->num_classes(),
                                " outputs"));
  const Preprocess& p = opt.preprocess;
  const std::string bad = check_bundle_fields(info.arch, info.options, info.classes, p);
  if (!bad.empty()) throw BundleError(path, "cannot export: " + bad);
  for (const auto& kv : opt.metadata)
    if (kv.first.compare(0, 7, "retikd.") == 0)
      throw BundleError(path, "metadata key \"" + kv.first + "\" is reserved (keys starting \"retikd.\")");

  const auto tensors = detail::half_state(*folded, path);
  std::map<std::string, std::string> meta = opt.metadata;
  meta["retikd.bundle"] = std::to_string(kBundleFormatVersion);
  meta["retikd.arch"] = info.arch;
  meta["retikd.model_options"] = detail::options_json(info.options);
  meta["retikd.classes"] = detail::classes_json(info.classes);
  meta["retikd.preprocess"] = detail::preprocess_json(p);
  meta["retikd.weights"] = "float16, batch norm folded";
  info.checksum = detail::compute_checksum(meta, tensors);
  meta["retikd.checksum"] = info.checksum;
  try {
    io::save_safetensors(path, tensors, meta);
  } catch (const Error& e) {
    throw BundleError(path, str("cannot write: ", e.what()));
  }
  info.file_bytes = detail::file_size(path);
  for (const auto& t : tensors) info.parameters += t.second.numel();
  return info;
}

namespace detail {

// The architecture, model options, classes and preprocessing from a bundle's metadata keys (retikd.arch,
// retikd.model_options, retikd.classes, retikd.preprocess) into `info`; shared with the ONNX export's
// metadata_props (deploy/onnx_export.hpp), which carry the same keys.
inline void parse_model_metadata(const MetaReader& r, const std::map<std::string, std::string>& m, BundleInfo& info) {
  auto need = [&](const char* key) -> const std::string& {
    auto it = m.find(key);
    if (it == m.end()) r.bad(str("metadata lacks \"", key, "\" (corrupt, or written by something else)"));
    return it->second;
  };
  info.arch = need("retikd.arch");
  {
    const io::Json o = r.parse("retikd.model_options", need("retikd.model_options"));
    if (!o.is_object()) r.bad("metadata retikd.model_options is not a JSON object");
    info.options.num_classes =
        r.integer(r.member(o, "retikd.model_options", "num_classes"), "num_classes", 1, kBundleMaxClasses);
    info.options.in_chans = r.integer(r.member(o, "retikd.model_options", "in_chans"), "in_chans", 3, 3);
    info.options.width_mult = r.number(r.member(o, "retikd.model_options", "width_mult"), "width_mult");
  }
  {
    const io::Json a = r.parse("retikd.classes", need("retikd.classes"));
    if (!a.is_array()) r.bad("metadata retikd.classes is not a JSON array");
    if (a.items().size() > static_cast<std::size_t>(kBundleMaxClasses))
      r.bad(str("metadata retikd.classes holds ", a.items().size(), " names, more than ", kBundleMaxClasses));
    for (const auto& it : a.items()) {
      if (!it.is_string() || it.as_string().empty()) r.bad("metadata retikd.classes holds a non-string or empty name");
      info.classes.push_back(it.as_string());
    }
    if (static_cast<int64_t>(info.classes.size()) != info.options.num_classes)
      r.bad(str(info.classes.size(), " class names for num_classes ", info.options.num_classes));
  }
  {
    const io::Json p = r.parse("retikd.preprocess", need("retikd.preprocess"));
    if (!p.is_object()) r.bad("metadata retikd.preprocess is not a JSON object");
    const io::Json& fc = r.member(p, "retikd.preprocess", "fundus_crop");
    if (!fc.is_bool()) r.bad("preprocess fundus_crop must be true or false");
    info.preprocess.fundus_crop = fc.as_bool();
    info.preprocess.resize =
        static_cast<int>(r.integer(r.member(p, "retikd.preprocess", "resize"), "resize", 0, kBundleMaxSide));
    info.preprocess.crop =
        static_cast<int>(r.integer(r.member(p, "retikd.preprocess", "crop"), "crop", 0, kBundleMaxSide));
    info.preprocess.mean = r.triple(r.member(p, "retikd.preprocess", "mean"), "preprocess mean");
    info.preprocess.std = r.triple(r.member(p, "retikd.preprocess", "std"), "preprocess std");
  }
  const std::string bad = check_bundle_fields(info.arch, info.options, info.classes, info.preprocess);
  if (!bad.empty()) r.bad(bad);
}

inline BundleInfo parse_info(const std::string& path, const io::SafetensorsContents& c, bool verify) {
  MetaReader r(path);
  const auto& m = c.metadata;
  auto need = [&](const char* key) -> const std::string& {
    auto it = m.find(key);
    if (it == m.end()) r.bad(str("metadata lacks \"", key, "\" (corrupt, or written by something else)"));
    return it->second;
  };
  auto version = m.find("retikd.bundle");
  if (version == m.end())
    r.bad(m.count("retikd.checkpoint")
              ? "this is a training checkpoint, not a student bundle (export one with deploy::export_bundle)"
              : "not a retikd student bundle (a safetensors file without \"retikd.bundle\" metadata)");
  double v = 0;
  if (!parse_number(version->second, v) || v != std::floor(v) || v < 1)
    r.bad(str("format version \"", version->second, "\" is not a positive integer (corrupt header)"));
  if (v != kBundleFormatVersion)
    r.bad(v > kBundleFormatVersion
              ? str("format version ", version->second, " is newer than this build reads (", kBundleFormatVersion,
                    "): update retikd")
              : str("format version ", version->second, " is not supported (this build reads ",
                    kBundleFormatVersion, ")"));

  BundleInfo info;
  info.path = path;
  info.format_version = static_cast<int>(v);
  info.checksum = need("retikd.checksum");
  if (verify) {
    const std::string actual = compute_checksum(m, c.tensors);
    if (actual != info.checksum)
      r.bad(str("checksum mismatch: the file is corrupt or was modified (stored ", info.checksum, ", computed ",
                actual, ")"));
  }
  parse_model_metadata(r, m, info);
  for (const auto& kv : m)
    if (kv.first.compare(0, 7, "retikd.") != 0) info.metadata[kv.first] = kv.second;
  info.file_bytes = file_size(path);
  for (const auto& t : c.tensors) info.parameters += t.second.numel();
  return info;
}

// A NaN or infinite weight makes every output NaN, which argmax would turn into class 0 for every image.
inline void check_finite_weights(const std::string& path, const io::SafetensorsContents& c) {
  for (const auto& nt : c.tensors) {
    if (!is_floating(nt.second.dtype())) continue;
    const std::vector<float> v = nt.second.to_vector<float>();
    for (std::size_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(v[i]))
        throw BundleError(path, str("tensor ", nt.first, " holds a non-finite value (", v[i], " at element ", i,
                                    "): the weights are broken"));
  }
}

inline io::SafetensorsContents read_bundle_file(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) throw BundleError(path, "cannot open: no such file");
  try {
    return io::read_safetensors(path);
  } catch (const Error& e) {
    throw BundleError(path, str("not a valid bundle (corrupt or truncated file): ", e.what()));
  }
}

}  // namespace detail

// The header of a bundle, with the checksum verified (unless verify = false); builds no model.
inline BundleInfo read_bundle_info(const std::string& path, bool verify = true) {
  const io::SafetensorsContents c = detail::read_bundle_file(path);
  return detail::parse_info(path, c, verify);
}

// Reads, verifies and rebuilds a bundle (see the top of this file).
inline Bundle load_bundle(const std::string& path) {
  const io::SafetensorsContents c = detail::read_bundle_file(path);
  Bundle b;
  b.info = detail::parse_info(path, c, /*verify=*/true);
  detail::check_finite_weights(path, c);
  try {
    b.model = folded_skeleton(b.info.arch, b.info.options);
  } catch (const Error& e) {
    throw BundleError(path, str("cannot rebuild architecture ", b.info.arch, " ", detail::options_json(b.info.options),
                                ": ", e.what()));
  }
  try {
    b.model->load_state_dict(c.to_map(), /*strict=*/true);
  } catch (const Error& e) {
    throw BundleError(path, str("the tensors do not fit ", b.info.arch, ": ", e.what()));
  }
  b.model->set_requires_grad(false);
  b.model->eval();
  return b;
}

}  // namespace deploy
}  // namespace retikd
