// retikd/deploy/classify.hpp — batch classification with a student bundle: which files, decoding and
// preprocessing, batched inference, Grad-CAM overlays, and the table / CSV / JSON reports of
// examples/classify.
//
//   deploy::Classifier c(deploy::load_bundle("student.rkd"));
//   deploy::ImageList in = deploy::collect_images({"photos/", "one.jpg"});      // folders recursively
//   std::vector<deploy::Prediction> p = c.classify(in.files);                   // bad files: ok = false
//   deploy::write_text_file("out.csv", deploy::predictions_csv(p, c.info().classes));
//
// Bad input never stops a run: a file that cannot be read or decoded (missing, empty, truncated, not an
// image, too large) gives a Prediction with ok = false and the reason in `error`, and the batch goes on
// without it. A model output that is not finite (NaN or infinity in any probability) is an error for that
// image (model_error, CSV status "error"), never a class: argmax over NaN would otherwise name class 0.
// A Grad-CAM overlay that cannot be written costs that overlay only (the reason goes to `error`, the
// prediction stays). Text from outside — class names, file names — is sanitised where it becomes part of a
// file name (only [A-Za-z0-9._-] survive, so every overlay lands directly in the folder given) and where it
// becomes a CSV cell (quoted, and a leading = + - @ is defused so spreadsheets do not run it as a formula).
// Decoding and preprocessing run on the thread pool, one file per task; inference runs in batches of
// ClassifyOptions::batch images of the same size (a bundle with a crop always gives the same size). On the CPU a
// folded student runs through deploy::CpuEngine (fused NCHWc layers) unless use_cpu_engine(false) asks for the
// module path (the reference); both give the same probabilities to float rounding.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/core/parallel.hpp"
#include "retikd/data/classes.hpp"
#include "retikd/data/dataset.hpp"
#include "retikd/data/decode.hpp"
#include "retikd/data/fs.hpp"
#include "retikd/data/image.hpp"
#include "retikd/data/png_write.hpp"
#include "retikd/deploy/bundle.hpp"
#include "retikd/deploy/cpu_engine.hpp"
#include "retikd/deploy/gradcam.hpp"
#include "retikd/io/atomic_file.hpp"
#include "retikd/io/json.hpp"
#include "retikd/kd/multi_view.hpp"
#include "retikd/ops/elementwise.hpp"
#include "retikd/ops/softmax.hpp"

namespace retikd {
namespace deploy {

// ---- which files -------------------------------------------------------------------------------------------

// .jpg, .jpeg and .png (any case): what a folder walk picks up (decode.hpp reads JPEG and PNG).
inline bool has_image_extension(const std::string& path) {
  const std::string e = data::fs::extension_lower(path);
  return e == ".jpg" || e == ".jpeg" || e == ".png";
}

struct ImageList {
  std::vector<std::string> files;     // in the order given; each folder's images sorted
  std::vector<std::string> problems;  // inputs that do not exist or cannot be listed ("path: reason")
};

// Files named are kept whatever their extension (decoding will say if they are not images); folders are
// walked recursively for image files, hidden entries skipped, links followed but never in a loop (each link
// not followed is a line in `problems`). Nothing here throws for a bad input.
inline ImageList collect_images(const std::vector<std::string>& inputs) {
  ImageList out;
  data::fs::WalkOptions walk;
  walk.notes = [&](const std::string& line) { out.problems.push_back(line); };
  for (const std::string& p : inputs) {
    if (data::fs::is_directory(p)) {
      std::vector<std::string> all;
      try {
        data::fs::list_files_recursive(p, all, walk);
      } catch (const std::exception& e) {
        out.problems.push_back(p + ": cannot list the folder (" + e.what() + ")");
        continue;
      }
      std::size_t found = 0;
      for (const std::string& f : all)
        if (has_image_extension(f)) {
          out.files.push_back(f);
          ++found;
        }
      if (found == 0) out.problems.push_back(p + ": the folder holds no .jpg, .jpeg or .png file");
    } else if (data::fs::exists(p)) {
      out.files.push_back(p);
    } else {
      out.problems.push_back(p + ": no such file or folder");
    }
  }
  return out;
}

// ---- predictions -------------------------------------------------------------------------------------------

struct Prediction {
  std::string path;
  bool ok = false;
  bool model_error = false;   // the image was read but the model's output was not finite (ok = false)
  std::string error;          // why the file was skipped or failed (ok = false), or why its overlay is missing
  int64_t label = -1;         // the predicted class (index into the bundle's classes)
  std::vector<float> probs;   // softmax over the classes
  int64_t truth = -1;         // the known class, if any (same indexing), else -1
  std::string gradcam;        // the overlay written for it, if any

  float confidence() const { return ok && label >= 0 ? probs[static_cast<std::size_t>(label)] : 0.0f; }
};

struct ClassifyOptions {
  int64_t batch = 16;
  // Horizontal-flip test-time augmentation: each image's logits are the mean of its own and its mirror's, as the
  // pretrained teacher's flip_tta; twice the forward passes. A left eye's photo mirrors into a plausible right eye,
  // but a student that never trained on mirrors (the CE stage trains on unflipped images) may not read it as well:
  // measure on validation before using it (docs/results.md, "Flip test-time augmentation for the student").
  bool flip_tta = false;
  // Called after each batch with (files done, files in total); e.g. a progress line.
  std::function<void(int64_t, int64_t)> progress;
};

// Where the time went, for the throughput line.
struct ClassifyTiming {
  double decode_s = 0;     // reading, decoding and preprocessing (wall time on the thread pool)
  double inference_s = 0;  // forward passes (softmax included)
};

class Classifier {
 public:
  Classifier(std::shared_ptr<nn::Model> model, BundleInfo info) : model_(std::move(model)), info_(std::move(info)) {
    RETIKD_CHECK(model_ != nullptr, "Classifier: no model");
    RETIKD_CHECK(static_cast<int64_t>(info_.classes.size()) == model_->num_classes(), "Classifier: ",
                 info_.classes.size(), " class names for a model with ", model_->num_classes(), " outputs");
    use_cpu_engine(true);
  }
  explicit Classifier(Bundle b) : Classifier(b.model, b.info) {}

  const BundleInfo& info() const { return info_; }
  nn::Model& model() { return *model_; }
  // Where the model's parameters live (inputs are moved there).
  Device device() const {
    const auto params = model_->parameters();
    return params.empty() ? Device::cpu() : params.front().device();
  }
  // The parameters' dtype (float16 for the GPU fp16 path); inputs are cast to it, probabilities are float32.
  DType dtype() const {
    const auto params = model_->parameters();
    return params.empty() ? DType::float32 : params.front().dtype();
  }

  // Whether CPU inference of a folded student goes through deploy::CpuEngine (default) or the modules.
  void use_cpu_engine(bool on) {
    engine_.reset();
    auto folded = std::dynamic_pointer_cast<FoldedConvNet>(model_);
    if (on && folded && CpuEngine::supports(*folded, std::max(32, info_.preprocess.input_size())))
      engine_ = std::make_shared<CpuEngine>(folded);
  }
  bool cpu_engine() const { return engine_ != nullptr; }

  // Logits (B, classes) of a normalised batch (B, 3, H, W) float32 on the CPU: the engine or the modules.
  Tensor logits(const Tensor& x) const {
    NoGradGuard no_grad;
    if (engine_ && device().is_cpu() && dtype() == DType::float32) return engine_->forward(x);
    model_->eval();
    return model_->forward(Var(x.to(device()).to(dtype()))).value().to(Device::cpu()).to(DType::float32);
  }

  // The normalised model input (3, H, W) for one file (Preprocess::input); throws data::DataError naming the
  // file when it is bad.
  data::Image prepare(const std::string& path) const { return info_.preprocess.input(data::load_image(path)); }
  // The image with the model input's geometry, not normalised (Preprocess::view): what overlays are drawn on.
  data::ImageU8 view(const std::string& path) const { return info_.preprocess.view(data::load_image(path)); }

  // Softmax probabilities (B, classes) of a batch of prepared images of one size; with `flip_tta`, of the mean of
  // the batch's and its mirror's logits.
  Tensor probabilities(const std::vector<const data::Image*>& images, bool flip_tta = false) const {
    RETIKD_CHECK(!images.empty(), "Classifier: empty batch");
    const data::Image& first = *images.front();
    Tensor x = Tensor::empty({static_cast<int64_t>(images.size()), first.channels, first.height, first.width});
    float* p = x.data<float>();
    for (const data::Image* im : images) {
      RETIKD_CHECK(im->shape() == first.shape(), "Classifier: mixed image sizes in one batch");
      p = std::copy(im->data.begin(), im->data.end(), p);
    }
    if (!flip_tta) return ops::impl::softmax(logits(x), 1);
    const Tensor mean = ops::impl::mul_scalar(ops::impl::add(logits(x), logits(kd::hflip_batch(x))), 0.5);
    return ops::impl::softmax(mean, 1);
  }

  // Classifies `files` in order; truths (optional, same length) are copied into the predictions.
  std::vector<Prediction> classify(const std::vector<std::string>& files, const std::vector<int64_t>& truths = {},
                                   const ClassifyOptions& opt = {}, ClassifyTiming* timing = nullptr) const {
    RETIKD_CHECK(truths.empty() || truths.size() == files.size(), "Classifier::classify: ", truths.size(),
                 " truths for ", files.size(), " files");
    RETIKD_CHECK(opt.batch >= 1, "Classifier::classify: batch must be positive");
    const int64_t n = static_cast<int64_t>(files.size());
    std::vector<Prediction> out(files.size());
    for (int64_t i = 0; i < n; ++i) {
      out[i].path = files[i];
      if (!truths.empty()) out[i].truth = truths[i];
    }
    using clock = std::chrono::steady_clock;
    for (int64_t start = 0; start < n; start += opt.batch) {
      const int64_t end = std::min(n, start + opt.batch);
      std::vector<data::Image> prepared(static_cast<std::size_t>(end - start));
      const auto t0 = clock::now();
      thread_pool().run(end - start, [&](int64_t k) {
        Prediction& pr = out[start + k];
        try {
          prepared[k] = prepare(pr.path);
          pr.ok = true;
        } catch (const std::exception& e) {
          pr.ok = false;
          pr.error = e.what();
        }
      });
      const auto t1 = clock::now();
      // Group the good ones by size (one group unless the bundle has no crop).
      std::vector<bool> done(prepared.size(), false);
      for (std::size_t a = 0; a < prepared.size(); ++a) {
        if (!out[start + a].ok || done[a]) continue;
        std::vector<std::size_t> group;
        std::vector<const data::Image*> images;
        for (std::size_t b = a; b < prepared.size(); ++b)
          if (out[start + b].ok && !done[b] && prepared[b].shape() == prepared[a].shape()) {
            group.push_back(b);
            images.push_back(&prepared[b]);
            done[b] = true;
          }
        const Tensor probs = probabilities(images, opt.flip_tta);
        const int64_t K = probs.size(1);
        const float* pp = probs.data<float>();
        for (std::size_t g = 0; g < group.size(); ++g) {
          Prediction& pr = out[start + group[g]];
          pr.probs.assign(pp + g * K, pp + (g + 1) * K);
          if (!std::all_of(pr.probs.begin(), pr.probs.end(), [](float v) { return std::isfinite(v); })) {
            pr.ok = false;
            pr.model_error = true;
            pr.probs.clear();
            pr.error = pr.path + ": the model's output for this image is not finite (NaN or infinity): no class "
                                 "can be given (a broken bundle, or a numeric overflow in reduced precision)";
            continue;
          }
          pr.label = std::max_element(pr.probs.begin(), pr.probs.end()) - pr.probs.begin();
        }
      }
      const auto t2 = clock::now();
      if (timing) {
        timing->decode_s += std::chrono::duration<double>(t1 - t0).count();
        timing->inference_s += std::chrono::duration<double>(t2 - t1).count();
      }
      if (opt.progress) opt.progress(end, n);
    }
    return out;
  }

 private:
  std::shared_ptr<nn::Model> model_;
  BundleInfo info_;
  std::shared_ptr<CpuEngine> engine_;  // shared by copies; CpuEngine caches a plan per input shape
};

// The bundle's class index for each of the data module's four labels (Cataract, DR, Glaucoma, Normal), by
// name; -1 where the bundle has no such class.
inline std::vector<int64_t> class_index_map(const std::vector<std::string>& bundle_classes) {
  std::vector<int64_t> map(data::kNumClasses, -1);
  for (std::size_t i = 0; i < bundle_classes.size(); ++i) {
    const int label = data::parse_class(bundle_classes[i]);
    if (label >= 0) map[static_cast<std::size_t>(label)] = static_cast<int64_t>(i);
  }
  return map;
}

// ---- summary -------------------------------------------------------------------------------------------------

struct ClassifySummary {
  int64_t total = 0, classified = 0, skipped = 0;  // skipped: unreadable files and model errors
  int64_t model_errors = 0;                        // of the skipped: read, but the output was not finite
  int64_t labelled = 0, correct = 0;           // among the classified ones with a known truth
  std::vector<std::vector<int64_t>> confusion;  // [truth][predicted]

  double accuracy() const { return labelled ? static_cast<double>(correct) / static_cast<double>(labelled) : 0.0; }
  // Recall of class k (NaN when no image of class k was classified).
  double recall(std::size_t k) const {
    int64_t n = 0;
    for (int64_t v : confusion[k]) n += v;
    return n ? static_cast<double>(confusion[k][k]) / static_cast<double>(n) : std::nan("");
  }
};

inline ClassifySummary summarize(const std::vector<Prediction>& preds, std::size_t classes) {
  ClassifySummary s;
  s.confusion.assign(classes, std::vector<int64_t>(classes, 0));
  for (const Prediction& p : preds) {
    ++s.total;
    if (!p.ok) {
      ++s.skipped;
      s.model_errors += p.model_error;
      continue;
    }
    ++s.classified;
    if (p.truth < 0 || p.truth >= static_cast<int64_t>(classes)) continue;
    ++s.labelled;
    s.correct += p.truth == p.label;
    ++s.confusion[static_cast<std::size_t>(p.truth)][static_cast<std::size_t>(p.label)];
  }
  return s;
}

// ---- Grad-CAM overlays -------------------------------------------------------------------------------------

struct OverlayOptions {
  std::string dir;            // created if missing
  CamOptions cam;             // tap, method, score (targets: each image's predicted class)
  int64_t batch = 8;
  float alpha = 0.45f;
};

namespace detail {

// A piece of a file name: bytes outside [A-Za-z0-9._-] become '_' (no '/', no "..", no control or shell
// characters can survive), cut to `max_bytes`; "_" when nothing is left.
inline std::string file_name_part(const std::string& s, std::size_t max_bytes) {
  std::string out;
  for (unsigned char c : s) {
    if (out.size() >= max_bytes) break;
    const bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                      c == '_' || c == '-';
    out += keep ? static_cast<char>(c) : '_';
  }
  // Dots alone ("..") would still be a path step if the part ever stood alone: make them visible.
  if (out.find_first_not_of('.') == std::string::npos) out = std::string(out.size(), '_');
  return out.empty() ? "_" : out;
}

}  // namespace detail

// The overlay file for prediction `index`: "<dir>/<index>_<file stem>_<class>.png", stem and class passed
// through file_name_part, so the file is always directly inside `dir` whatever the names hold.
inline std::string gradcam_file(const std::string& dir, std::size_t index, const std::string& image_path,
                                const std::string& class_name) {
  std::string stem = data::fs::basename(image_path);
  const std::size_t dot = stem.find_last_of('.');
  if (dot != std::string::npos && dot > 0) stem = stem.substr(0, dot);
  char prefix[24];
  std::snprintf(prefix, sizeof prefix, "%04zu", index);
  return data::fs::join(dir, std::string(prefix) + "_" + detail::file_name_part(stem, 96) + "_" +
                                 detail::file_name_part(class_name, 64) + ".png");
}

// Writes one PNG per classified prediction (gradcam_file: the overlay of its predicted class on the model's
// view of the image), and records the path in Prediction::gradcam. Returns the number written. An image that
// fails here (it changed since it was classified, the disk is full) keeps gradcam empty, gets the reason in
// Prediction::error, and the others go on; only a problem with the folder itself or the CAM options throws.
inline int64_t write_gradcam_overlays(Classifier& c, std::vector<Prediction>& preds, const OverlayOptions& opt) {
  RETIKD_CHECK(!opt.dir.empty(), "write_gradcam_overlays: no output folder");
  RETIKD_CHECK(data::fs::make_dirs(opt.dir) && data::fs::is_directory(opt.dir), "write_gradcam_overlays: cannot create ",
               opt.dir);
  RETIKD_CHECK(opt.batch >= 1, "write_gradcam_overlays: batch must be positive");
  std::vector<std::size_t> todo;
  for (std::size_t i = 0; i < preds.size(); ++i)
    if (preds[i].ok) todo.push_back(i);
  auto overlay_failed = [&](Prediction& pr, const std::string& why) {
    pr.gradcam.clear();
    pr.error = "Grad-CAM overlay not written: " + why;
  };
  int64_t written = 0;
  // One forward / backward for images of one input size (a bundle with a crop: always all of them).
  auto render = [&](const std::vector<std::size_t>& which, const std::vector<data::Image>& inputs,
                    const std::vector<data::ImageU8>& views) {
    const data::Image& f = inputs.front();
    Tensor x = Tensor::empty({static_cast<int64_t>(inputs.size()), f.channels, f.height, f.width});
    float* p = x.data<float>();
    for (const auto& im : inputs) p = std::copy(im.data.begin(), im.data.end(), p);
    CamOptions co = opt.cam;
    co.targets.clear();
    for (std::size_t k : which) co.targets.push_back(preds[k].label);
    const CamResult r = class_activation_maps(c.model(), x.to(c.device()), co);
    for (std::size_t k = 0; k < which.size(); ++k) {
      Prediction& pr = preds[which[k]];
      const std::string out =
          gradcam_file(opt.dir, which[k], pr.path, c.info().classes[static_cast<std::size_t>(pr.label)]);
      try {
        data::write_png(out, cam_overlay(views[k], r.map(static_cast<int64_t>(k)), opt.alpha, r.origin));
        pr.gradcam = out;
        ++written;
      } catch (const std::exception& e) {
        overlay_failed(pr, e.what());
      }
    }
  };
  for (std::size_t start = 0; start < todo.size(); start += static_cast<std::size_t>(opt.batch)) {
    const std::size_t end = std::min(todo.size(), start + static_cast<std::size_t>(opt.batch));
    struct Group {
      std::vector<std::size_t> which;
      std::vector<data::Image> inputs;
      std::vector<data::ImageU8> views;
    };
    std::vector<Group> groups;  // by input shape, in order of first appearance
    for (std::size_t t = start; t < end; ++t) {
      try {
        data::ImageU8 v = c.view(preds[todo[t]].path);
        data::Image in = data::to_float(v);
        data::normalize(in, c.info().preprocess.mean, c.info().preprocess.std);
        auto g = std::find_if(groups.begin(), groups.end(),
                              [&](const Group& gr) { return gr.inputs.front().shape() == in.shape(); });
        if (g == groups.end()) g = groups.insert(groups.end(), Group());
        g->views.push_back(std::move(v));
        g->inputs.push_back(std::move(in));
        g->which.push_back(todo[t]);
      } catch (const std::exception& e) {
        overlay_failed(preds[todo[t]], e.what());
      }
    }
    for (const Group& g : groups) render(g.which, g.inputs, g.views);
  }
  return written;
}

// ---- reports -------------------------------------------------------------------------------------------------

namespace detail {

// One text cell, RFC 4180: quoted when it holds a comma, quote or line break. A cell that starts like a
// spreadsheet formula (= + - @, or a tab / carriage return before one) gets a leading apostrophe, the
// convention spreadsheets display as text, so a file or class named "=HYPERLINK(…)" stays text.
inline std::string csv_field(const std::string& text) {
  std::string s = text;
  if (!s.empty() && (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@' || s[0] == '\t' || s[0] == '\r'))
    s = "'" + s;
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

inline std::string fixed(double v, int digits) {
  if (!std::isfinite(v)) return "nan";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

}  // namespace detail

// One row per file: path, status (ok / skipped / error: a non-finite model output), predicted, confidence, truth, correct, p_<class>…, gradcam,
// error. Empty fields where a value does not apply; RFC 4180 quoting.
inline std::string predictions_csv(const std::vector<Prediction>& preds, const std::vector<std::string>& classes) {
  std::string s = "path,status,predicted,confidence,truth,correct";
  for (const auto& c : classes) s += "," + detail::csv_field("p_" + c);
  s += ",gradcam,error\n";
  for (const Prediction& p : preds) {
    s += detail::csv_field(p.path) + "," + (p.ok ? "ok" : p.model_error ? "error" : "skipped") + ",";
    s += p.ok ? detail::csv_field(classes[static_cast<std::size_t>(p.label)]) : "";
    s += "," + (p.ok ? detail::fixed(p.confidence(), 6) : "") + ",";
    s += p.truth >= 0 ? detail::csv_field(classes[static_cast<std::size_t>(p.truth)]) : "";
    s += ",";
    if (p.ok && p.truth >= 0) s += p.truth == p.label ? "1" : "0";
    for (std::size_t k = 0; k < classes.size(); ++k) s += "," + (p.ok ? detail::fixed(p.probs[k], 6) : "");
    s += "," + detail::csv_field(p.gradcam) + "," + detail::csv_field(p.error) + "\n";
  }
  return s;
}

// {"bundle": {...}, "summary": {...}, "predictions": [...]} with per-class probabilities by name.
inline std::string predictions_json(const std::vector<Prediction>& preds, const BundleInfo& info,
                                    const ClassifySummary& sum) {
  const auto& classes = info.classes;
  auto js = [](const std::string& v) { return io::json_string(v); };
  std::string s = "{\n  \"bundle\": {\"path\": " + js(info.path) + ", \"arch\": " + js(info.arch) +
                  ", \"checksum\": " + js(info.checksum) + ", \"classes\": [";
  for (std::size_t k = 0; k < classes.size(); ++k) s += (k ? ", " : "") + js(classes[k]);
  s += "]},\n  \"summary\": {\"total\": " + std::to_string(sum.total) + ", \"classified\": " +
       std::to_string(sum.classified) + ", \"skipped\": " + std::to_string(sum.skipped) + ", \"model_errors\": " +
       std::to_string(sum.model_errors) + ", \"labelled\": " +
       std::to_string(sum.labelled) + ", \"correct\": " + std::to_string(sum.correct) + ", \"accuracy\": " +
       (sum.labelled ? detail::fixed(sum.accuracy(), 6) : std::string("null")) + ", \"confusion\": [";
  for (std::size_t t = 0; t < sum.confusion.size(); ++t) {
    s += t ? ", [" : "[";
    for (std::size_t q = 0; q < sum.confusion[t].size(); ++q) s += (q ? ", " : "") + std::to_string(sum.confusion[t][q]);
    s += "]";
  }
  s += "]},\n  \"predictions\": [";
  for (std::size_t i = 0; i < preds.size(); ++i) {
    const Prediction& p = preds[i];
    s += i ? ",\n    {" : "\n    {";
    s += "\"path\": " + js(p.path) + ", \"ok\": " + (p.ok ? "true" : "false");
    if (p.ok) {
      s += ", \"predicted\": " + js(classes[static_cast<std::size_t>(p.label)]) + ", \"confidence\": " +
           detail::fixed(p.confidence(), 6) + ", \"probabilities\": {";
      for (std::size_t k = 0; k < classes.size(); ++k)
        s += (k ? ", " : "") + js(classes[k]) + ": " + detail::fixed(p.probs[k], 6);
      s += "}";
    }
    if (p.truth >= 0) s += ", \"truth\": " + js(classes[static_cast<std::size_t>(p.truth)]);
    if (!p.gradcam.empty()) s += ", \"gradcam\": " + js(p.gradcam);
    if (!p.ok && p.model_error) s += ", \"model_error\": true";
    if (!p.error.empty()) s += ", \"error\": " + js(p.error);
    s += "}";
  }
  s += preds.empty() ? "]\n}\n" : "\n  ]\n}\n";
  return s;
}

// A fixed-width table: file, prediction, confidence, [truth], one column per class.
inline std::string predictions_table(const std::vector<Prediction>& preds, const std::vector<std::string>& classes) {
  bool any_truth = false;
  std::size_t wpath = 4;
  for (const Prediction& p : preds) {
    any_truth = any_truth || p.truth >= 0;
    wpath = std::max(wpath, std::min<std::size_t>(60, p.path.size()));
  }
  std::size_t wcls = 10;
  for (const auto& c : classes) wcls = std::max(wcls, c.size() + 1);
  auto pad = [](std::string s, std::size_t w) {
    if (s.size() > w) s = "…" + s.substr(s.size() - (w - 1));
    return s + std::string(w > s.size() ? w - s.size() : 0, ' ');
  };
  std::string s = pad("file", wpath) + "  " + pad("predicted", wcls) + " " + pad("conf", 6);
  if (any_truth) s += "  " + pad("truth", wcls);
  for (const auto& c : classes) s += " " + pad(c.substr(0, 9), 9);
  s += "\n";
  for (const Prediction& p : preds) {
    s += pad(p.path, wpath) + "  ";
    if (!p.ok) {
      s += (p.model_error ? "error: " : "skipped: ") + p.error + "\n";
      continue;
    }
    s += pad(classes[static_cast<std::size_t>(p.label)], wcls) + " " + pad(detail::fixed(p.confidence(), 3), 6);
    if (any_truth)
      s += "  " + pad(p.truth >= 0 ? classes[static_cast<std::size_t>(p.truth)] + (p.truth == p.label ? "" : " ✗") : "-", wcls);
    for (float v : p.probs) s += " " + pad(detail::fixed(v, 3), 9);
    s += "\n";
  }
  return s;
}

// Writes text atomically (io/atomic_file.hpp); throws retikd::Error naming the path.
inline void write_text_file(const std::string& path, const std::string& text) {
  io::write_file_atomically(path, [&](const io::ByteSink& sink) { sink(text.data(), text.size()); }, "write");
}

}  // namespace deploy
}  // namespace retikd
