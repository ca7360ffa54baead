// retikd/deploy/onnx_export.hpp — retikd's networks as ONNX graphs (opset 13): the folded CNN students
// (MobileNetV2, ResNet18/34, EfficientNet-B0, from a bundle or a trained model) and the ViT teachers (timm's
// VisionTransformer, DINOv2 ViT-S/14 included), for TensorRT on a Jetson and onnxruntime on servers; and the way
// back: an exported student read into a FoldedConvNet (classify --onnx).
//
//   deploy::OnnxExportOptions o;                 // fp32, dynamic batch, input "input", output "logits"
//   o.precision = deploy::OnnxPrecision::fp16;   // float16 weights and arithmetic, float32 input and output
//   deploy::OnnxExportReport r = deploy::export_onnx("student.onnx", bundle, o);   // checked, then written
//   deploy::OnnxStudent s = deploy::load_onnx_student("student.onnx");             // BundleInfo + FoldedConvNet
//
// The graph: input (N, 3, S, S) float32 named `input` (N fixed or the symbolic "batch"), output (N, classes)
// float32 named `logits`; S is the preprocessing's input size (the bundle's crop or resize), since the folded
// convolutions with TensorFlow "SAME" padding and the ViT's position embedding depend on it. Node names are the
// module paths ("features.2.conv.1.0/Conv"), initializer names the state-dict names of the folded model
// ("features.2.conv.1.0.weight"), so a reader finds every weight by the name retikd gives it.
//
//   CNN: each folded ConvAct is Conv (+ bias) and its activation: Relu, Clip(0, 6) for ReLU6, x·Sigmoid(x) for
//   SiLU; residual blocks Add (ResNet: Add then Relu); squeeze-excitation GlobalAveragePool, Conv, SiLU, Conv,
//   Sigmoid, Mul; MaxPool; GlobalAveragePool + Flatten + Gemm (transB) for the head.
//   ViT: patch Conv, Reshape + Transpose to tokens; the CLS token folded into the first position-embedding row
//   and added to the patch tokens padded with one zero token in front (Pad, Add) — the same value and rounding as
//   concatenating and then adding; the position embedding precomputed at the export size (DINOv2's is resampled
//   bicubically from its 37×37 grid at run time in retikd, exactly as position_embedding() does it). LayerNorm
//   decomposed (opset 13 has none): ReduceMean, Sub, Mul, ReduceMean, Add ε, Sqrt, Div, Mul γ, Add β; exact GELU
//   as 0.5·x·(1 + Erf(x/√2)); attention as MatMul (qkv, weights stored transposed as "<name>.weight_t"),
//   Reshape, Transpose, Gather, Mul by d^−½, MatMul, Softmax(axis −1), MatMul, Transpose, Reshape, MatMul (proj);
//   LayerScale a Mul; pooling Gather (CLS) or Slice + ReduceMean (token mean).
//
// fp16: every weight and activation in float16 (the bundle's weights are float16 already, so they are exact);
// the input and output stay float32, cast at the ends (Cast nodes), so callers feed the same arrays. In a ViT the
// LayerNorms run in float32 (Cast around them): the squares of DINOv2's large residual activations overflow
// float16's 65504.
//
// metadata_props carry what a deployment needs besides the graph, with the bundle's keys and formats
// (deploy/bundle.hpp): retikd.arch, retikd.model_options, retikd.classes (JSON list, logit order),
// retikd.preprocess (JSON: fundus_crop, resize, crop, mean, std), plus retikd.onnx_export ("1"),
// retikd.precision ("fp32" / "fp16"), retikd.source (the bundle's checksum or "model"), and the exporter's own
// keys (a bundle's metadata). A ViT's retikd.model_options is its ViTConfig as JSON.
//
// Building the graph needs nothing but the headers; export_onnx and load_onnx_student need the retikd::onnx
// library (ONNX's checker, protobuf), like io/onnx.hpp.
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

#include "retikd/autograd/var.hpp"
#include "retikd/deploy/bundle.hpp"
#include "retikd/deploy/fold.hpp"
#include "retikd/io/onnx.hpp"
#include "retikd/io/onnx_export.hpp"
#include "retikd/nn/models.hpp"

namespace retikd {
namespace deploy {

enum class OnnxPrecision { fp32, fp16 };

inline const char* precision_name(OnnxPrecision p) { return p == OnnxPrecision::fp16 ? "fp16" : "fp32"; }
inline OnnxPrecision parse_precision(const std::string& s) {
  if (s == "fp32") return OnnxPrecision::fp32;
  if (s == "fp16") return OnnxPrecision::fp16;
  fail("onnx export: precision is fp32 or fp16, got '", s, "'");
}

struct OnnxExportOptions {
  OnnxPrecision precision = OnnxPrecision::fp32;
  int64_t batch = 0;  // images per call; 0: dynamic (the symbolic dimension "batch")
  int64_t img = 0;    // input side; 0: the preprocessing's input size (bundle) or the model's default size
  std::string input_name = "input", output_name = "logits";
  io::onnx::CheckLevel check = io::onnx::CheckLevel::full;
};

// What a model is besides its weights: classes, preprocessing and free-form metadata for metadata_props.
struct OnnxModelInfo {
  std::vector<std::string> classes;  // empty: data::class_names() when the model has 4 outputs, else "0", "1", ...
  Preprocess preprocess;
  std::map<std::string, std::string> metadata;
  std::string source = "model";      // retikd.source
};

struct OnnxExportReport {
  std::string path;
  int64_t bytes = 0;
  int64_t nodes = 0;
  int64_t initializers = 0;
  int64_t parameters = 0;  // elements of all initializers
  std::string summary() const {
    return path + ": " + std::to_string(bytes) + " bytes, " + std::to_string(nodes) + " nodes, " +
           std::to_string(initializers) + " initializers (" + std::to_string(parameters) +
           " values); ONNX's checker (full) passed";
  }
};

namespace detail {

inline std::string vit_config_json(const nn::ViTConfig& c) {
  return "{\"img_size\":" + std::to_string(c.img_size) + ",\"patch_size\":" + std::to_string(c.patch_size) +
         ",\"in_chans\":" + std::to_string(c.in_chans) + ",\"num_classes\":" + std::to_string(c.num_classes) +
         ",\"embed_dim\":" + std::to_string(c.embed_dim) + ",\"depth\":" + std::to_string(c.depth) +
         ",\"num_heads\":" + std::to_string(c.num_heads) + ",\"mlp_ratio\":" + format_number(c.mlp_ratio) +
         ",\"class_token\":" + (c.class_token ? "true" : "false") + ",\"global_pool_avg\":" +
         (c.global_pool_avg ? "true" : "false") + ",\"pool_token_and_avg\":" + (c.pool_token_and_avg ? "true" : "false") +
         ",\"norm_eps\":" + format_number(c.norm_eps) + ",\"layer_scale\":" + (c.init_values > 0 ? "true" : "false") +
         ",\"pos_embed_grid\":" + std::to_string(c.pos_embed_grid) + ",\"variant\":\"" + c.variant + "\"}";
}

// Emits retikd modules as ONNX nodes through a GraphBuilder, in one compute dtype (float32 or float16).
class OnnxEmitter {
 public:
  OnnxEmitter(io::onnx::GraphBuilder& b, DType compute) : b_(b), dt_(compute) {}

  DType dtype() const { return dt_; }
  io::onnx::GraphBuilder& builder() { return b_; }

  // A weight under its state-dict name, in the compute dtype.
  std::string weight(const std::string& name, const Tensor& t, DType as) { return b_.initializer(name, t.to(as)); }
  std::string weight(const std::string& name, const Tensor& t) { return weight(name, t, dt_); }

  // A shared scalar constant of the compute dtype (or `as`).
  std::string scalar(double v, DType as) {
    const std::string key = std::string(dtype_name(as)) + ":" + format_number(v);
    auto it = scalars_.find(key);
    if (it != scalars_.end()) return it->second;
    const std::string name = b_.scalar(std::string("const_") + dtype_name(as), v, as);
    scalars_[key] = name;
    return name;
  }
  std::string scalar(double v) { return scalar(v, dt_); }
  std::string ints(const std::vector<int64_t>& v) {
    std::string key;
    for (int64_t x : v) key += std::to_string(x) + ",";
    auto it = int_consts_.find(key);
    if (it != int_consts_.end()) return it->second;
    const std::string name = b_.ints("const_ints", v);
    int_consts_[key] = name;
    return name;
  }

  std::string activation(const std::string& x, nn::Activation a, const std::string& where) {
    switch (a) {
      case nn::Activation::identity: return x;
      case nn::Activation::relu: return b_.node("Relu", {x}, {}, where);
      case nn::Activation::relu6: return b_.node("Clip", {x, scalar(0.0), scalar(6.0)}, {}, where);
      case nn::Activation::sigmoid: return b_.node("Sigmoid", {x}, {}, where);
      case nn::Activation::tanh: return b_.node("Tanh", {x}, {}, where);
      case nn::Activation::silu: return b_.node("Mul", {x, b_.node("Sigmoid", {x}, {}, where)}, {}, where);
      case nn::Activation::gelu: {
        // 0.5 · x · (1 + erf(x / √2)), the exact GELU (opset 13 has no Gelu).
        const std::string e = b_.node("Erf", {b_.node("Mul", {x, scalar(0.70710678118654752440)}, {}, where)}, {}, where);
        const std::string one_plus = b_.node("Add", {e, scalar(1.0)}, {}, where);
        return b_.node("Mul", {b_.node("Mul", {x, scalar(0.5)}, {}, where), one_plus}, {}, where);
      }
      case nn::Activation::gelu_tanh: {
        // 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))
        const std::string x3 = b_.node("Mul", {b_.node("Mul", {x, x}, {}, where), x}, {}, where);
        const std::string inner =
            b_.node("Add", {x, b_.node("Mul", {x3, scalar(0.044715)}, {}, where)}, {}, where);
        const std::string t =
            b_.node("Tanh", {b_.node("Mul", {inner, scalar(0.79788456080286535588)}, {}, where)}, {}, where);
        return b_.node("Mul", {b_.node("Mul", {x, scalar(0.5)}, {}, where),
                               b_.node("Add", {t, scalar(1.0)}, {}, where)}, {}, where);
      }
    }
    fail("onnx export: ", where, ": unknown activation");
  }

  // Conv (+ bias) for `c` at input shape `in`.
  std::string conv(const nn::Conv2d& c, const std::string& path, const std::string& x, const Shape& in) {
    const ops::Conv2dOptions o = c.options_for(in);
    const Shape& w = c.weight.shape();
    std::vector<std::string> inputs{x, weight(path + ".weight", c.weight.value())};
    if (c.bias.defined()) inputs.push_back(weight(path + ".bias", c.bias.value()));
    return b_.node("Conv", inputs,
                   {io::onnx::attr_ints("kernel_shape", {w[2], w[3]}),
                    io::onnx::attr_ints("strides", {o.stride_h, o.stride_w}),
                    io::onnx::attr_ints("pads", {o.pad_top, o.pad_left, o.pad_bottom, o.pad_right}),
                    io::onnx::attr_ints("dilations", {o.dilation_h, o.dilation_w}),
                    io::onnx::attr_int("group", o.groups)},
                   path);
  }

  // y = x·Wᵀ + b on a 2-D x, with the weight in its (out, in) layout (Gemm transB).
  std::string gemm(const nn::Linear& l, const std::string& path, const std::string& x) {
    std::vector<std::string> inputs{x, weight(path + ".weight", l.weight.value())};
    if (l.bias.defined()) inputs.push_back(weight(path + ".bias", l.bias.value()));
    return b_.node("Gemm", inputs, {io::onnx::attr_int("transB", 1)}, path);
  }

  // y = x·Wᵀ + b on an (…, in) x of any rank: MatMul with the weight stored transposed, then Add.
  std::string linear(const nn::Linear& l, const std::string& path, const std::string& x) {
    const std::string wt = weight(path + ".weight_t", l.weight.value().transpose(0, 1).contiguous());
    std::string y = b_.node("MatMul", {x, wt}, {}, path);
    if (l.bias.defined()) y = b_.node("Add", {y, weight(path + ".bias", l.bias.value())}, {}, path);
    return y;
  }

  // LayerNorm over the last dimension, decomposed; in float32 when `fp32` (Cast around it otherwise).
  std::string layer_norm(const nn::LayerNorm& ln, const std::string& path, const std::string& x, bool fp32) {
    RETIKD_CHECK(ln.normalized_shape().size() == 1, "onnx export: ", path, ": LayerNorm over ",
                 ln.normalized_shape().size(), " dims (only the last dimension is exported)");
    const DType t = fp32 ? DType::float32 : dt_;
    std::string v = x;
    if (t != dt_) v = b_.node("Cast", {v}, {io::onnx::attr_int("to", io::onnx::elem_type_code(t))}, path);
    const std::string mean = b_.node("ReduceMean", {v}, {io::onnx::attr_ints("axes", {-1})}, path);
    const std::string d = b_.node("Sub", {v, mean}, {}, path);
    const std::string var =
        b_.node("ReduceMean", {b_.node("Mul", {d, d}, {}, path)}, {io::onnx::attr_ints("axes", {-1})}, path);
    const std::string sd = b_.node("Sqrt", {b_.node("Add", {var, scalar(ln.eps(), t)}, {}, path)}, {}, path);
    std::string y = b_.node("Div", {d, sd}, {}, path);
    if (ln.weight.defined()) y = b_.node("Mul", {y, weight(path + ".weight", ln.weight.value(), t)}, {}, path);
    if (ln.bias.defined()) y = b_.node("Add", {y, weight(path + ".bias", ln.bias.value(), t)}, {}, path);
    if (t != dt_) y = b_.node("Cast", {y}, {io::onnx::attr_int("to", io::onnx::elem_type_code(dt_))}, path);
    return y;
  }

  // One module of a folded CNN; `shape` is the input's shape and becomes the output's.
  std::string cnn_module(const nn::Module& m, const std::string& path, const std::string& x, Shape& shape) {
    auto child = [&](const std::string& n) { return path.empty() ? n : path + "." + n; };
    if (const auto* ca = dynamic_cast<const ConvAct*>(&m)) {
      const std::string y = conv(*ca, path, x, shape);
      shape = ca->infer_shape(shape, nullptr);
      return activation(y, ca->activation(), path);
    }
    if (const auto* c = dynamic_cast<const nn::Conv2d*>(&m)) {
      const std::string y = conv(*c, path, x, shape);
      shape = c->infer_shape(shape, nullptr);
      return y;
    }
    if (const auto* ch = dynamic_cast<const Chain*>(&m)) {
      std::string y = x;
      for (const auto& l : ch->layers()) y = cnn_module(*l.second, child(l.first), y, shape);
      return y;
    }
    if (const auto* r = dynamic_cast<const FoldedResidual*>(&m)) {
      const std::string y = cnn_module(r->body(), child(r->named_children()[0].first), x, shape);
      return r->residual() ? b_.node("Add", {x, y}, {}, path) : y;
    }
    if (const auto* bb = dynamic_cast<const FoldedBasicBlock*>(&m)) {
      const Shape in = shape;
      std::string y = cnn_module(*bb->conv1, child("conv1"), x, shape);
      y = cnn_module(*bb->conv2, child("conv2"), y, shape);
      std::string identity = x;
      if (bb->downsample) {
        Shape s = in;
        identity = cnn_module(*bb->downsample, child("downsample"), x, s);
      }
      return b_.node("Relu", {b_.node("Add", {y, identity}, {}, path)}, {}, path);
    }
    if (const auto* se = dynamic_cast<const nn::SqueezeExcitation*>(&m)) {
      Shape s{shape[0], shape[1], 1, 1};
      std::string v = b_.node("GlobalAveragePool", {x}, {}, path);
      v = activation(conv(*se->fc1, child("fc1"), v, s), se->activation(), child("fc1"));
      s = se->fc1->infer_shape(s, nullptr);
      v = activation(conv(*se->fc2, child("fc2"), v, s), se->scale_activation(), child("fc2"));
      return b_.node("Mul", {x, v}, {}, path);
    }
    if (const auto* mp = dynamic_cast<const nn::MaxPool2d*>(&m)) {
      const int64_t k = mp->kernel(), s = mp->stride(), p = mp->padding();
      shape = mp->infer_shape(shape, nullptr);
      return b_.node("MaxPool", {x},
                     {io::onnx::attr_ints("kernel_shape", {k, k}), io::onnx::attr_ints("strides", {s, s}),
                      io::onnx::attr_ints("pads", {p, p, p, p}), io::onnx::attr_int("ceil_mode", mp->ceil_mode() ? 1 : 0)},
                     path);
    }
    if (const auto* ap = dynamic_cast<const nn::AdaptiveAvgPool2d*>(&m)) {
      RETIKD_CHECK(ap->output_h() == 1 && ap->output_w() == 1, "onnx export: ", path, ": AdaptiveAvgPool2d to ",
                   ap->output_h(), "x", ap->output_w(), " (only the global pool is exported)");
      shape = {shape[0], shape[1], 1, 1};
      return b_.node("GlobalAveragePool", {x}, {}, path);
    }
    if (const auto* f = dynamic_cast<const nn::Flatten*>(&m)) {
      RETIKD_CHECK(f->start_dim() == 1 && (f->end_dim() == -1 || f->end_dim() + 1 == static_cast<int64_t>(shape.size())),
                   "onnx export: ", path, ": Flatten(", f->start_dim(), ", ", f->end_dim(), ") (only (1, -1) is exported)");
      shape = f->infer_shape(shape, nullptr);
      return b_.node("Flatten", {x}, {io::onnx::attr_int("axis", 1)}, path);
    }
    if (const auto* l = dynamic_cast<const nn::Linear*>(&m)) {
      RETIKD_CHECK(shape.size() == 2, "onnx export: ", path, ": Linear on a ", shape.size(), "-D input");
      shape = {shape[0], l->out_features()};
      return gemm(*l, path, x);
    }
    if (const auto* a = dynamic_cast<const nn::ActivationLayer*>(&m)) return activation(x, a->kind(), path);
    if (dynamic_cast<const nn::Dropout*>(&m) || dynamic_cast<const nn::DropPath*>(&m)) return x;
    fail("onnx export: ", path, ": cannot export a module of type ", typeid(m).name(),
         " (the folded CNN students' layers are supported: fold the model first)");
  }

 private:
  io::onnx::GraphBuilder& b_;
  DType dt_;
  std::map<std::string, std::string> scalars_, int_consts_;
};

inline std::vector<int64_t> batch_dims(int64_t batch) { return {batch > 0 ? batch : -1}; }
inline std::vector<std::string> batch_params(int64_t batch) { return {batch > 0 ? "" : "batch"}; }

// The graph's input (cast to the compute dtype) and output (cast back to float32) around `body`.
template <class Body>
io::onnx::Graph build_graph(const std::string& name, const OnnxExportOptions& opt, int64_t in_chans, int64_t img,
                            int64_t outputs, Body&& body) {
  RETIKD_CHECK(opt.batch >= 0, "onnx export: batch must be >= 0 (0: dynamic), got ", opt.batch);
  RETIKD_CHECK(img > 0, "onnx export: the input size must be positive, got ", img);
  io::onnx::GraphBuilder b(name);
  const DType dt = opt.precision == OnnxPrecision::fp16 ? DType::float16 : DType::float32;
  std::vector<int64_t> in_dims = batch_dims(opt.batch);
  std::vector<std::string> in_params = batch_params(opt.batch);
  for (int64_t d : {in_chans, img, img}) {
    in_dims.push_back(d);
    in_params.push_back("");
  }
  std::string x = b.input(opt.input_name, DType::float32, in_dims, in_params);
  if (dt != DType::float32)
    x = b.node("Cast", {x}, {io::onnx::attr_int("to", io::onnx::elem_type_code(dt))}, opt.input_name);
  OnnxEmitter e(b, dt);
  std::string y = body(e, x);
  if (dt != DType::float32)
    y = b.node("Cast", {y}, {io::onnx::attr_int("to", io::onnx::elem_type_code(DType::float32))}, opt.output_name);
  std::vector<int64_t> out_dims = batch_dims(opt.batch);
  std::vector<std::string> out_params = batch_params(opt.batch);
  out_dims.push_back(outputs);
  out_params.push_back("");
  b.output(y, opt.output_name, DType::float32, out_dims, out_params);
  b.graph().producer_name = "retikd";
  b.graph().producer_version = "0.1.0";
  return b.graph();
}

inline void put_metadata(io::onnx::Graph& g, const std::string& arch, const std::string& options_json,
                         const std::vector<std::string>& classes, const Preprocess& p, const OnnxExportOptions& opt,
                         const std::map<std::string, std::string>& extra, const std::string& source) {
  for (const auto& kv : extra) {
    RETIKD_CHECK(kv.first.compare(0, 7, "retikd.") != 0, "onnx export: metadata key \"", kv.first,
                 "\" is reserved (keys starting \"retikd.\")");
    g.metadata[kv.first] = kv.second;
  }
  g.metadata["retikd.onnx_export"] = "1";
  g.metadata["retikd.arch"] = arch;
  g.metadata["retikd.model_options"] = options_json;
  g.metadata["retikd.classes"] = classes_json(classes);
  g.metadata["retikd.preprocess"] = preprocess_json(p);
  g.metadata["retikd.precision"] = precision_name(opt.precision);
  g.metadata["retikd.source"] = source;
}

inline std::vector<std::string> default_classes(int64_t n) {
  std::vector<std::string> c;
  if (n == data::kNumClasses) {
    for (const char* s : data::class_names()) c.push_back(s);
  } else {
    for (int64_t i = 0; i < n; ++i) c.push_back(std::to_string(i));
  }
  return c;
}

}  // namespace detail

// The graph of a folded CNN student at `img` px (see the top of this file); `arch` / `options` name the
// architecture in the metadata (a bundle's; empty: the model's recipe).
inline io::onnx::Graph onnx_graph(const FoldedConvNet& model, const OnnxModelInfo& info, const OnnxExportOptions& opt) {
  const int64_t img = opt.img > 0 ? opt.img : (info.preprocess.input_size() > 0 ? info.preprocess.input_size()
                                                                                 : model.default_img_size());
  const int64_t B = opt.batch > 0 ? opt.batch : 1;
  io::onnx::Graph g = detail::build_graph(
      model.arch(), opt, model.in_chans(), img, model.num_classes(), [&](detail::OnnxEmitter& e, const std::string& x) {
        Shape shape{B, model.in_chans(), img, img};
        std::string y = x;
        for (const auto& c : model.named_children()) {
          if (c.first == "classifier" || c.first == "fc") continue;
          y = e.cnn_module(*c.second, c.first, y, shape);
        }
        y = e.builder().node("Flatten", {e.builder().node("GlobalAveragePool", {y}, {}, "global_pool")},
                             {io::onnx::attr_int("axis", 1)}, "global_pool");
        shape = {shape[0], shape[1]};
        for (const auto& c : model.named_children())
          if (c.first == "classifier" || c.first == "fc") y = e.cnn_module(*c.second, c.first, y, shape);
        return y;
      });
  const std::vector<std::string> classes =
      info.classes.empty() ? detail::default_classes(model.num_classes()) : info.classes;
  RETIKD_CHECK(static_cast<int64_t>(classes.size()) == model.num_classes(), "onnx export: ", classes.size(),
               " class names for a model with ", model.num_classes(), " outputs");
  RETIKD_CHECK(model.has_recipe(), "onnx export: ", model.arch(), " was not made from a model create_model rebuilds");
  Preprocess p = info.preprocess;
  if (p.input_size() != img) p.resize = p.crop = static_cast<int>(img);
  detail::put_metadata(g, model.recipe().first, detail::options_json(model.recipe().second), classes, p, opt,
                       info.metadata, info.source);
  return g;
}

// The graph of a Vision Transformer at `img` px (default: its configured size; a multiple of the patch size).
inline io::onnx::Graph onnx_graph(nn::VisionTransformer& vit, const OnnxModelInfo& info, const OnnxExportOptions& opt) {
  const nn::ViTConfig& c = vit.config();
  const int64_t img = opt.img > 0 ? opt.img : c.img_size;
  RETIKD_CHECK(img % c.patch_size == 0, "onnx export: ", vit.arch(), ": the input size ", img,
               " is not a multiple of the patch size ", c.patch_size);
  const auto grid = vit.grid(img, img);
  const int64_t D = c.embed_dim, H = c.num_heads, d = D / H, P = vit.num_prefix_tokens();
  const int64_t N = grid.first * grid.second, T = P + N;
  const bool fp16 = opt.precision == OnnxPrecision::fp16;
  io::onnx::Graph g = detail::build_graph(vit.arch(), opt, c.in_chans, img, vit.num_classes(), [&](
                                              detail::OnnxEmitter& e, const std::string& x) {
    io::onnx::GraphBuilder& b = e.builder();
    using io::onnx::attr_int;
    using io::onnx::attr_ints;
    // Patch tokens (B, N, D).
    std::string t = e.conv(*vit.patch_embed->proj, "patch_embed.proj", x, {1, c.in_chans, img, img});
    t = b.node("Reshape", {t, e.ints({0, D, N})}, {}, "patch_embed");
    t = b.node("Transpose", {t}, {attr_ints("perm", {0, 2, 1})}, "patch_embed");
    // The position embedding at this grid (resampled as retikd does at run time), CLS folded into row 0.
    Tensor pos;
    {
      NoGradGuard no_grad;
      pos = vit.position_embedding(grid.first, grid.second).value().to(Device::cpu()).contiguous().clone();
    }
    if (P > 0) {
      float* pp = pos.data<float>();
      const std::vector<float> cls = vit.cls_token.value().to_vector<float>();
      for (int64_t i = 0; i < D; ++i) pp[i] += cls[static_cast<std::size_t>(i)];
      t = b.node("Pad", {t, e.ints({0, P, 0, 0, 0, 0})}, {}, "cls_token");  // zeros in front: (B, T, D)
    }
    t = b.node("Add", {t, e.weight(P > 0 ? "pos_embed_with_cls_token" : "pos_embed_resampled", pos)}, {}, "pos_embed");
    // Scalar indices for Gather (a 0-d index drops the axis).
    const std::string zero = b.constant("const_index", Tensor::full({}, 0.0, DType::int64));
    const std::string one = b.constant("const_index", Tensor::full({}, 1.0, DType::int64));
    const std::string two = b.constant("const_index", Tensor::full({}, 2.0, DType::int64));
    for (std::size_t i = 0; i < vit.blocks.size(); ++i) {
      const nn::Block& blk = *vit.blocks[i];
      const std::string bp = "blocks." + std::to_string(i);
      // Attention branch.
      std::string h = e.layer_norm(*blk.norm1, bp + ".norm1", t, fp16);
      const std::string ap = bp + ".attn";
      std::string qkv = e.linear(*blk.attn->qkv, ap + ".qkv", h);                         // (B, T, 3D)
      qkv = b.node("Reshape", {qkv, e.ints({0, 0, 3, H, d})}, {}, ap);                      // (B, T, 3, H, d)
      qkv = b.node("Transpose", {qkv}, {attr_ints("perm", {2, 0, 3, 1, 4})}, ap);           // (3, B, H, T, d)
      const std::string q = b.node("Gather", {qkv, zero}, {attr_int("axis", 0)}, ap + ".q");
      const std::string k = b.node("Gather", {qkv, one}, {attr_int("axis", 0)}, ap + ".k");
      const std::string v = b.node("Gather", {qkv, two}, {attr_int("axis", 0)}, ap + ".v");
      const std::string qs = b.node("Mul", {q, e.scalar(blk.attn->scale())}, {}, ap + ".q");
      const std::string kt = b.node("Transpose", {k}, {attr_ints("perm", {0, 1, 3, 2})}, ap + ".k");
      const std::string logits = b.node("MatMul", {qs, kt}, {}, ap + ".logits");
      const std::string probs = b.node("Softmax", {logits}, {attr_int("axis", -1)}, ap + ".probs");
      std::string o = b.node("MatMul", {probs, v}, {}, ap);                                 // (B, H, T, d)
      o = b.node("Transpose", {o}, {attr_ints("perm", {0, 2, 1, 3})}, ap);                   // (B, T, H, d)
      o = b.node("Reshape", {o, e.ints({0, 0, D})}, {}, ap);                                 // (B, T, D)
      o = e.linear(*blk.attn->proj, ap + ".proj", o);
      if (blk.ls1) o = b.node("Mul", {o, e.weight(bp + ".ls1.gamma", blk.ls1->gamma.value())}, {}, bp + ".ls1");
      t = b.node("Add", {t, o}, {}, bp + ".residual1");
      // MLP branch.
      h = e.layer_norm(*blk.norm2, bp + ".norm2", t, fp16);
      h = e.linear(*blk.mlp->fc1, bp + ".mlp.fc1", h);
      h = e.activation(h, nn::Activation::gelu, bp + ".mlp.act");
      h = e.linear(*blk.mlp->fc2, bp + ".mlp.fc2", h);
      if (blk.ls2) h = b.node("Mul", {h, e.weight(bp + ".ls2.gamma", blk.ls2->gamma.value())}, {}, bp + ".ls2");
      t = b.node("Add", {t, h}, {}, bp + ".residual2");
    }
    t = e.layer_norm(*vit.norm, "norm", t, fp16);
    // Pooling (B, D) or (B, 2D).
    std::string pooled;
    auto cls = [&] { return b.node("Gather", {t, zero}, {attr_int("axis", 1)}, "pool.cls"); };
    auto mean = [&] {
      const std::string patches = b.node("Slice", {t, e.ints({P}), e.ints({T}), e.ints({1})}, {}, "pool.patches");
      return b.node("ReduceMean", {patches}, {attr_ints("axes", {1}), attr_int("keepdims", 0)}, "pool.mean");
    };
    if (c.pool_token_and_avg) {
      pooled = b.node("Concat", {cls(), mean()}, {attr_int("axis", 1)}, "pool");
    } else if (c.global_pool_avg) {
      pooled = mean();
    } else {
      pooled = cls();
    }
    return vit.head ? e.gemm(*vit.head, "head", pooled) : pooled;
  });
  const std::vector<std::string> classes =
      info.classes.empty() ? detail::default_classes(vit.num_classes()) : info.classes;
  RETIKD_CHECK(static_cast<int64_t>(classes.size()) == vit.num_classes(), "onnx export: ", classes.size(),
               " class names for a model with ", vit.num_classes(), " outputs");
  Preprocess p = info.preprocess;
  p.resize = p.crop = static_cast<int>(img);
  const std::string arch = c.variant == "dinov2" ? "vit_small_patch14_dinov2" : vit.arch();
  detail::put_metadata(g, arch, detail::vit_config_json(c), classes, p, opt, info.metadata, info.source);
  return g;
}

// Any supported model: a FoldedConvNet or ViT as they are, a trained CNN student folded first.
inline io::onnx::Graph onnx_graph(nn::Model& model, const OnnxModelInfo& info, const OnnxExportOptions& opt) {
  if (auto* f = dynamic_cast<FoldedConvNet*>(&model)) return onnx_graph(*f, info, opt);
  if (auto* v = dynamic_cast<nn::VisionTransformer*>(&model)) return onnx_graph(*v, info, opt);
  if (dynamic_cast<nn::ConvNet*>(&model)) {
    std::shared_ptr<FoldedConvNet> folded = fold_batch_norm(model);
    return onnx_graph(*folded, info, opt);
  }
  fail("onnx export: ", model.arch(), " is neither a CNN student nor a Vision Transformer");
}

// A bundle's student with its classes, preprocessing and metadata.
inline io::onnx::Graph onnx_graph(const Bundle& bundle, const OnnxExportOptions& opt) {
  OnnxModelInfo info;
  info.classes = bundle.info.classes;
  info.preprocess = bundle.info.preprocess;
  info.metadata = bundle.info.metadata;
  info.source = bundle.info.checksum;
  return onnx_graph(*bundle.model, info, opt);
}

// Counts for the report, and the write itself (needs retikd::onnx).
inline OnnxExportReport write_onnx(const std::string& path, const io::onnx::Graph& g, const OnnxExportOptions& opt) {
  OnnxExportReport r;
  r.path = path;
  r.bytes = io::onnx::write_model(path, g, opt.check);
  r.nodes = static_cast<int64_t>(g.nodes.size());
  r.initializers = static_cast<int64_t>(g.initializers.size());
  for (const auto& kv : g.initializers) r.parameters += kv.second.numel();
  return r;
}
inline OnnxExportReport export_onnx(const std::string& path, const Bundle& bundle, const OnnxExportOptions& opt = {}) {
  return write_onnx(path, onnx_graph(bundle, opt), opt);
}
inline OnnxExportReport export_onnx(const std::string& path, nn::Model& model, const OnnxModelInfo& info = {},
                                    const OnnxExportOptions& opt = {}) {
  return write_onnx(path, onnx_graph(model, info, opt), opt);
}

// ---- the way back: an exported student --------------------------------------------------------------------

// A student read from an ONNX file retikd exported: its header (as a bundle's, with the file's path) and the
// folded model with the file's weights (float32 on the CPU, eval mode), plus what the export said.
struct OnnxStudent {
  BundleInfo info;
  std::shared_ptr<FoldedConvNet> model;
  OnnxPrecision precision = OnnxPrecision::fp32;
  int64_t batch = 0;  // 0: dynamic
  int64_t img = 0;
};

namespace detail {

inline std::string describe_node(const io::onnx::Node& n) {
  std::string s = n.op_type + " '" + n.name + "' (";
  for (std::size_t i = 0; i < n.inputs.size(); ++i) s += (i ? ", " : "") + n.inputs[i];
  s += ")";
  for (const auto& a : n.attributes) {
    s += " " + a.name + "=";
    if (a.type == "INT") s += std::to_string(a.i);
    if (a.type == "INTS")
      for (std::size_t i = 0; i < a.ints.size(); ++i) s += (i ? "," : "") + std::to_string(a.ints[i]);
    if (a.type == "FLOAT") s += format_number(a.f);
    if (a.type == "STRING") s += a.s;
  }
  return s;
}

inline bool same_node(const io::onnx::Node& a, const io::onnx::Node& b) {
  if (a.op_type != b.op_type || a.name != b.name || a.inputs != b.inputs || a.outputs != b.outputs ||
      a.attributes.size() != b.attributes.size() || !(a.domain.empty() || a.domain == "ai.onnx"))
    return false;
  for (std::size_t i = 0; i < a.attributes.size(); ++i) {
    const auto &x = a.attributes[i], &y = b.attributes[i];
    if (x.name != y.name || x.type != y.type || x.i != y.i || x.ints != y.ints || x.s != y.s ||
        static_cast<float>(x.f) != static_cast<float>(y.f))
      return false;
  }
  return true;
}

}  // namespace detail

// Reads a student exported by export_onnx: the metadata rebuild the folded architecture, the initializers (by
// state-dict name) fill it, and the file's graph must be, node for node and constant for constant, the graph
// retikd exports for that model — classify runs retikd's own network with the file's weights, so a graph edited
// after export is refused rather than silently run as something else. Errors name the file. Needs retikd::onnx.
inline OnnxStudent load_onnx_student(const std::string& path) {
  const io::onnx::Model m = io::onnx::read_model(path);
  detail::MetaReader r(path);
  auto onnx_error = [&](const std::string& what) -> void { throw BundleError(path, what); };
  if (!m.metadata.count("retikd.onnx_export"))
    onnx_error("not exported by retikd (no retikd.onnx_export in metadata_props): classify --onnx runs retikd's own "
               "student exports; run other ONNX models with onnxruntime");
  if (m.metadata.at("retikd.onnx_export") != "1")
    onnx_error("export format " + m.metadata.at("retikd.onnx_export") + " is not the one this build reads (1)");
  OnnxStudent s;
  s.info.path = path;
  s.info.format_version = kBundleFormatVersion;
  const auto arch = m.metadata.find("retikd.arch");
  if (arch != m.metadata.end() && arch->second.compare(0, 4, "vit_") == 0)
    onnx_error("this is an exported " + arch->second + " (a ViT teacher); classify --onnx runs the CNN students");
  detail::parse_model_metadata(r, m.metadata, s.info);
  auto prec = m.metadata.find("retikd.precision");
  if (prec == m.metadata.end()) onnx_error("metadata lacks \"retikd.precision\"");
  try {
    s.precision = parse_precision(prec->second);
  } catch (const Error& e) {
    onnx_error(e.what());
  }
  for (const auto& kv : m.metadata)
    if (kv.first.compare(0, 7, "retikd.") != 0) s.info.metadata[kv.first] = kv.second;
  auto src = m.metadata.find("retikd.source");
  s.info.checksum = src == m.metadata.end() ? "" : src->second;
  if (m.inputs.size() != 1 || m.outputs.size() != 1 || m.inputs[0].dims.size() != 4)
    onnx_error("expected one 4-D input and one output");
  s.batch = m.inputs[0].dims[0] > 0 ? m.inputs[0].dims[0] : 0;
  s.img = m.inputs[0].dims[2];
  try {
    s.model = folded_skeleton(s.info.arch, s.info.options);
  } catch (const Error& e) {
    onnx_error(str("cannot rebuild architecture ", s.info.arch, ": ", e.what()));
  }
  std::map<std::string, Tensor> state;
  const auto expected = s.model->state_dict();
  for (const auto& kv : expected) {
    const io::onnx::Initializer* w = m.find(kv.first);
    if (!w || !w->is_float()) onnx_error("the weight " + kv.first + " is missing");
    state[kv.first] = w->value;
  }
  try {
    s.model->load_state_dict(state, /*strict=*/true);
  } catch (const Error& e) {
    onnx_error(str("the weights do not fit ", s.info.arch, ": ", e.what()));
  }
  s.model->set_requires_grad(false);
  s.model->eval();
  // The graph retikd would export for this model; the file's must be the same.
  OnnxExportOptions opt;
  opt.precision = s.precision;
  opt.batch = s.batch;
  opt.img = s.img;
  opt.input_name = m.inputs[0].name;
  opt.output_name = m.outputs[0].name;
  OnnxModelInfo info;
  info.classes = s.info.classes;
  info.preprocess = s.info.preprocess;
  const io::onnx::Graph want = onnx_graph(*s.model, info, opt);
  if (want.nodes.size() != m.nodes.size())
    onnx_error(str("the graph has ", m.nodes.size(), " nodes, retikd's export of ", s.info.arch, " has ",
                   want.nodes.size(), ": it was edited after export"));
  for (std::size_t i = 0; i < want.nodes.size(); ++i)
    if (!detail::same_node(want.nodes[i], m.nodes[i]))
      onnx_error(str("node ", i, " is ", detail::describe_node(m.nodes[i]), ", retikd's export has ",
                     detail::describe_node(want.nodes[i]), ": the graph was edited after export"));
  for (const auto& kv : want.initializers) {
    const io::onnx::Initializer* w = m.find(kv.first);
    if (!w) onnx_error("the constant " + kv.first + " is missing");
    if (state.count(kv.first)) continue;  // weights: loaded above
    const Tensor a = kv.second.to(w->value.dtype());
    if (a.shape() != w->value.shape() || a.to_vector<double>() != w->value.to_vector<double>())
      onnx_error("the constant " + kv.first + " differs from retikd's export: the graph was edited after export");
  }
  if (m.initializers.size() != want.initializers.size())
    onnx_error(str("the file has ", m.initializers.size(), " initializers, retikd's export ", want.initializers.size()));
  s.info.file_bytes = detail::file_size(path);
  for (const auto& w : m.initializers) s.info.parameters += w.value.numel();
  return s;
}

}  // namespace deploy
}  // namespace retikd
