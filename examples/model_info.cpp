// examples/model_info.cpp — what a model costs and what it offers the distillation, without running it:
// parameter count, weights size in fp32 and fp16, every feature tap with its shape, and forward FLOPs.
//
//   model_info --model mobilenet_v2 [--classes 4] [--img 224] [--width-mult 1.0]
//   model_info --model vit_base --patch 16 --img 224
//   model_info --model vit_small_patch14_dinov2 --weights vit_s_focus.onnx --embed photo.jpg
//   model_info --model vit_small_patch14_dinov2 --weights teacher/model.safetensors --export-onnx teacher.onnx
//
// With --export-onnx FILE the model (a CNN folded first, a ViT as it is) is written as ONNX opset 13 at --img px
// (deploy/onnx_export.hpp: the teachers' route to onnxruntime / TensorRT; a student bundle's is classify
// --export-onnx), with --precision fp32|fp16 and --onnx-batch N|dynamic.
//
// With --weights the model's weights come from a file (.onnx: the DINOv2 ONNX export through
// io/onnx_import.hpp; .safetensors: timm / retikd names); with --embed IMAGE it runs the model on one image and
// prints the output shape, the first 8 values of the final-norm CLS token and its L2 norm. An image of the
// model's size is used as it is; others are resized (whole photo, antialiased) first; then ImageNet mean / std.
//
// FLOPs are counted analytically by shape inference through every layer (nn/trace.hpp), not by timing or
// instrumenting a forward: multiply-accumulates of convolutions, linear layers and the two attention
// products; FLOPs = 2 × MACs. Normalisation, activations, pooling, softmax and elementwise adds are left out
// (torchvision's published "GFLOPS" use the same MAC count).
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <retikd/core/cli_args.hpp>
#include <retikd/data/decode.hpp>
#include <retikd/data/image.hpp>
#include <retikd/data/transforms.hpp>
#include <retikd/io/safetensors.hpp>
#include <retikd/nn/models.hpp>
#ifdef RETIKD_WITH_ONNX
#include <retikd/deploy/onnx_export.hpp>
#include <retikd/io/onnx_import.hpp>
#endif

using namespace retikd;

namespace {

void usage(std::ostream& os) {
  os << "usage: model_info --model NAME [--classes N] [--img SIZE] [--patch P] [--width-mult W] [--batch B]\n"
        "                  [--all-taps]\n"
        "  NAME: ";
  const auto names = nn::model_names();
  for (std::size_t i = 0; i < names.size(); ++i) os << (i ? ", " : "") << names[i];
  os << "\n"
        "  --classes N      output classes, 1-100000 (default 4: Cataract, DR, Glaucoma, Normal)\n"
        "  --img SIZE       square input size in pixels, 8-4096 (default 224); for ViTs also the\n"
        "                   position-embedding grid\n"
        "  --patch P        ViT patch size, 1-64 (default 16)\n"
        "  --width-mult W   MobileNetV2 / EfficientNet width multiplier, 0.1-4 (default 1.0)\n"
        "  --batch B        batch size for tap shapes and FLOPs, 1-1024 (default 1)\n"
        "  --all-taps       list every ViT block's taps instead of one line per tap kind\n"
        "  --weights FILE   load weights: .onnx (vit_small_patch14_dinov2 from a Hugging Face Dinov2Model export)\n"
        "                   or .safetensors (timm / retikd names; entries the file lacks keep their init)\n"
        "  --embed IMAGE    run the model on IMAGE (resized to --img unless it already is that size, ImageNet\n"
        "                   mean/std) and print the output shape, the first 8 values of the final-norm CLS\n"
        "                   token and its L2 norm\n"
        "  --export-onnx F  write the model (with --weights) as ONNX opset 13 at --img px, checked by ONNX's full\n"
        "                   check: a CNN folded, a ViT with LayerNorm decomposed and exact GELU\n"
        "  --precision P    fp32 (default) or fp16 for --export-onnx\n"
        "  --onnx-batch B   N or dynamic (default) for --export-onnx\n"
        "Prints parameters, weights size (fp32, fp16), feature taps with shapes, and forward FLOPs\n"
        "(analytic: 2 x multiply-accumulates of convolutions, linear layers and attention products).\n";
}

std::string with_commas(long long v) {
  std::string s = std::to_string(v < 0 ? -v : v);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<std::size_t>(i), ",");
  return (v < 0 ? "-" : "") + s;
}

std::string megabytes(double bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f MB (%.2f MiB)", bytes / 1e6, bytes / (1024.0 * 1024.0));
  return buf;
}

std::string giga(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.4f G", v / 1e9);
  return buf;
}

// "blocks.7.attn.q" → ("blocks.{i}.attn.q", 7); other names → (name, -1).
std::pair<std::string, int64_t> block_pattern(const std::string& name) {
  const std::string pre = "blocks.";
  if (name.compare(0, pre.size(), pre) != 0) return {name, -1};
  std::size_t end = pre.size();
  while (end < name.size() && std::isdigit(static_cast<unsigned char>(name[end]))) ++end;
  int64_t index = 0;
  if (end == pre.size() || !cli::parse_int64(name.substr(pre.size(), end - pre.size()), index)) return {name, -1};
  return {pre + "{i}" + name.substr(end), index};
}

void print_taps(const std::vector<nn::TapInfo>& taps, bool all) {
  struct Row {
    std::string name;
    Shape shape;
    std::string description;
    int64_t lo = -1, hi = -1;
    bool uniform = true;
  };
  std::vector<Row> rows;
  std::map<std::string, std::size_t> group;
  for (const auto& t : taps) {
    const auto p = block_pattern(t.name);
    if (all || p.second < 0) {
      rows.push_back({t.name, t.shape, t.description});
      continue;
    }
    auto it = group.find(p.first);
    if (it == group.end()) {
      group[p.first] = rows.size();
      std::string desc = t.description;
      const std::string num = std::to_string(p.second);
      const auto at = desc.find("block " + num);
      if (at != std::string::npos) desc.replace(at, 6 + num.size(), "block i");
      rows.push_back({p.first, t.shape, desc, p.second, p.second});
    } else {
      Row& r = rows[it->second];
      r.uniform = r.uniform && r.shape == t.shape;
      r.lo = std::min(r.lo, p.second);
      r.hi = std::max(r.hi, p.second);
    }
  }
  std::size_t width = 0;
  for (auto& r : rows) {
    if (r.lo >= 0 && r.uniform)
      r.name.replace(r.name.find("{i}"), 3, "{" + std::to_string(r.lo) + ".." + std::to_string(r.hi) + "}");
    width = std::max(width, r.name.size());
  }
  for (const auto& r : rows) {
    std::string shape = shape_str(r.shape);
    if (!r.uniform) shape = "(varies)";
    std::cout << "  " << r.name << std::string(width + 2 - r.name.size(), ' ') << shape
              << std::string(shape.size() < 22 ? 22 - shape.size() : 1, ' ') << r.description << "\n";
  }
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void load_weights(nn::Model& m, const std::string& path) {
  if (ends_with(path, ".onnx")) {
#ifdef RETIKD_WITH_ONNX
    auto* vit = dynamic_cast<nn::VisionTransformer*>(&m);
    if (vit == nullptr || vit->config().variant != "dinov2")
      throw Error("--weights " + path + ": ONNX import is for vit_small_patch14_dinov2 (a Dinov2Model export)");
    const io::onnx::ImportReport r = io::onnx::load_dinov2(*vit, path);
    std::cout << "weights     " << r.summary() << "\n";
    return;
#else
    throw Error("--weights " + path + ": this build has no ONNX import (install libonnx-dev and rebuild)");
#endif
  }
  io::load_module(path, m, /*strict=*/false);
  std::cout << "weights     " << path << " (safetensors)\n";
}

// IMAGE as a (1, 3, size, size) ImageNet-normalised tensor.
Tensor image_input(const std::string& path, int size) {
  data::Image img = data::to_float(data::load_image(path));
  if (img.channels == 1) {
    data::Image rgb(3, img.height, img.width);
    for (int c = 0; c < 3; ++c) std::copy(img.data.begin(), img.data.end(), rgb.plane(c));
    img = rgb;
  }
  if (img.channels == 4) img.data.resize(3 * img.plane_size()), img.channels = 3;
  if (img.height != size || img.width != size) img = data::resize(img, size, size, /*antialias=*/true);
  data::normalize(img, data::kImageNetMean, data::kImageNetStd);
  return Tensor::from_vector(img.data, {1, 3, size, size});
}

void embed(nn::Model& m, const std::string& image, int size) {
  m.eval();
  NoGradGuard no_grad;
  const Tensor x = image_input(image, size);
  const Tensor y = m.forward_features(Var(x)).value();
  std::cout << "embed       " << image << " at " << size << "x" << size << " px: output " << shape_str(y.shape()) << "\n";
  if (y.dim() != 3) return;  // a CNN's feature map: no CLS token
  const std::vector<float> cls = y.narrow(1, 0, 1).contiguous().to_vector<float>();
  double norm = 0;
  for (float v : cls) norm += static_cast<double>(v) * v;
  std::cout << "cls token   ";
  for (std::size_t i = 0; i < 8 && i < cls.size(); ++i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%s%.6f", i ? " " : "", cls[i]);
    std::cout << buf;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6f", std::sqrt(norm));
  std::cout << "\ncls norm    " << buf << "  (L2 of the final-norm CLS token)\n";
}

}  // namespace

int main(int argc, char** argv) {
  std::string model;
  nn::ModelOptions opt;
  int64_t batch = 1;
  bool all_taps = false;
  std::string weights, embed_image, export_onnx, precision = "fp32";
  int64_t onnx_batch = 0;
  try {
    cli::ArgReader args(argc, argv);
    while (args.next()) {
      const std::string& a = args.arg();
      // Strict, bounded numbers (core/cli_args.hpp): the bounds keep every shape and MAC count within int64.
      if (a == "--help" || a == "-h") {
        usage(std::cout);
        return 0;
      } else if (a == "--model") {
        model = args.value();
      } else if (a == "--classes") {
        opt.num_classes = args.integer(1, 100000);
      } else if (a == "--img") {
        opt.img_size = args.integer(8, 4096);
      } else if (a == "--patch") {
        opt.patch_size = args.integer(1, 64);
      } else if (a == "--width-mult") {
        opt.width_mult = args.real(0.1, 4.0);
      } else if (a == "--batch") {
        batch = args.integer(1, 1024);
      } else if (a == "--all-taps") {
        all_taps = true;
      } else if (a == "--weights") {
        weights = args.value();
      } else if (a == "--embed") {
        embed_image = args.value();
      } else if (a == "--export-onnx") {
        export_onnx = args.value();
      } else if (a == "--precision") {
        precision = args.value();
        if (precision != "fp32" && precision != "fp16") throw Error("--precision is fp32 or fp16");
      } else if (a == "--onnx-batch") {
        const std::string v = args.value();
        onnx_batch = v == "dynamic" ? 0 : cli::parse_int(a, v, 1, 1024);
      } else {
        throw Error("unknown argument '" + a + "'");
      }
    }
    if (model.empty()) throw Error("--model is required");
    bool known = false;
    for (const auto& n : nn::model_names()) known = known || n == model;
    if (!known) {
      std::string names;
      for (const auto& n : nn::model_names()) names += (names.empty() ? "" : ", ") + n;
      throw Error("unknown model '" + model + "' (known: " + names + ")");
    }
    const bool vit = model.compare(0, 4, "vit_") == 0;
    const bool width_ok = model == "mobilenet_v2" || model == "efficientnet_b0";
    if (opt.width_mult != 1.0 && !width_ok) throw Error("--width-mult applies to mobilenet_v2 and efficientnet_b0 only");
    if (opt.patch_size != 16 && !vit) throw Error("--patch applies to the ViT models only");
    if (model == "vit_small_patch14_dinov2" && opt.patch_size != 16) throw Error("--patch: DINOv2's patch is 14");
  } catch (const Error& e) {
    std::cerr << "model_info: " << e.what() << "\n(model_info --help lists the options)\n";
    return 2;
  }

  try {
    Generator gen(0);
    const std::shared_ptr<nn::Model> m = nn::create_model(model, opt, gen);
    const int64_t img = opt.img_size;

    int64_t params = 0, buffer_floats = 0, buffer_ints = 0;
    for (const auto& p : m->named_parameters()) params += p.second.numel();
    for (const auto& b : m->named_buffers())
      (is_floating(b.second->dtype()) ? buffer_floats : buffer_ints) += b.second->numel();

    std::cout << "model       " << model << " (" << m->arch() << ")\n";
    std::cout << "classes     " << m->num_classes() << "\n";
    std::cout << "input       " << shape_str({batch, m->in_chans(), img, img}) << "\n";
    std::cout << "parameters  " << with_commas(params) << "\n";
    std::cout << "buffers     " << with_commas(buffer_floats) << " floating (batch-norm running statistics), "
              << with_commas(buffer_ints) << " int64 counters\n";
    std::cout << "weights     fp32 " << megabytes(4.0 * static_cast<double>(params)) << ", fp16 "
              << megabytes(2.0 * static_cast<double>(params)) << "  (parameters only)\n";
    std::cout << "state dict  fp32 " << megabytes(4.0 * static_cast<double>(params + buffer_floats) +
                                                   8.0 * static_cast<double>(buffer_ints))
              << ", fp16 " << megabytes(2.0 * static_cast<double>(params + buffer_floats) +
                                        8.0 * static_cast<double>(buffer_ints))
              << "  (with buffers; tensor data only)\n";

    const nn::ShapeTrace t = m->trace(img, img, batch);
    std::cout << "forward     " << giga(t.macs) << "MACs = " << giga(t.flops()) << "FLOPs  (FLOPs = 2 x MACs; batch "
              << batch << ", " << img << "x" << img << " px)\n";
    for (const auto& kv : t.macs_by_kind)
      std::cout << "            " << kv.first << std::string(kv.first.size() < 10 ? 10 - kv.first.size() : 1, ' ')
                << giga(kv.second) << "MACs\n";
    std::cout << "            counted analytically by shape inference: convolutions, linear layers and the\n"
                 "            attention products (q.k^T, p.v); norms, activations, pooling, softmax and\n"
                 "            elementwise adds are not counted\n";
    std::cout << "feature taps (forward_with_taps names; shapes at " << img << "x" << img << " px, batch " << batch
              << "):\n";
    print_taps(m->tap_names(img, img, batch), all_taps);
    if (!weights.empty()) load_weights(*m, weights);
    if (!embed_image.empty()) embed(*m, embed_image, static_cast<int>(img));
    if (!export_onnx.empty()) {
#ifdef RETIKD_WITH_ONNX
      m->eval();
      deploy::OnnxExportOptions eo;
      eo.precision = deploy::parse_precision(precision);
      eo.batch = onnx_batch;
      eo.img = img;
      deploy::OnnxModelInfo info;
      info.source = weights.empty() ? "model (initial weights)" : weights;
      const deploy::OnnxExportReport r = deploy::export_onnx(export_onnx, *m, info, eo);
      std::cout << "onnx        " << r.summary() << " (" << precision << ", opset " << io::onnx::kExportOpset << ")\n";
#else
      throw Error("--export-onnx: this build has no ONNX support (install libonnx-dev libprotobuf-dev and rebuild)");
#endif
    }
  } catch (const Error& e) {
    std::cerr << "model_info: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
