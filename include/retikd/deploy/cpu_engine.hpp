// retikd/deploy/cpu_engine.hpp — the CPU inference engine of a folded CNN student: the network compiled once per
// input shape into a plan of fused layers on the channel-blocked layout of ops/cpu/nchwc.hpp, run on the thread
// pool with spinning workers.
//
//   deploy::CpuEngine engine(bundle.model);            // a FoldedConvNet (MobileNetV2, ResNet, EfficientNet)
//   Tensor logits = engine.forward(x);                 // x (N, 3, H, W) float32 on the CPU → (N, classes)
//   std::vector<deploy::CpuEngine::LayerTime> t = engine.profile(x, 20);   // per fused layer, median ms
//
// What the plan does that the module path (FoldedConvNet::forward, the reference) does not:
//   - one layer per Conv-BN-act(-add): bias, activation and the residual add (MobileNetV2 / EfficientNet's
//     inverted residuals, ResNet's add + ReLU) in the convolution's epilogue, in registers;
//   - the NCHWc layout: depthwise 3×3 / 5×5 as vector FMAs per pixel, pointwise and dense convolutions as
//     register-tiled outer products straight on the activations (no im2col, no packing per call);
//   - weights packed once per plan; activations in a preallocated arena, buffers reused once their last reader
//     has run (no allocation, no page faults per call);
//   - squeeze-excitation, max pool and the global average pool on the same layout; the classifier on the pooled
//     vector;
//   - the thread pool's workers spin between layers (ThreadPool::SpinScope, CpuEngineOptions::spin_us) instead of
//     sleeping on a condition variable after each of the ~60 parallel regions.
// Results equal the module path's to float rounding (a different summation order; tests/test_deploy.cpp checks
// ≤ 1e-4 relative on every supported architecture, odd widths and sizes, batches 1 and 3).
//
// Supported: every layer fold_batch_norm produces — dense convolutions (any kernel, stride, padding, dilation;
// groups 1), depthwise (multiplier 1, square kernel), squeeze-excitation, max pool, global average pool and a
// Linear classifier. CpuEngine::supports() says whether a model compiles; classify and bench_jetson fall back to
// the module path otherwise, and where the compiler has no vector extensions.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

#include "retikd/core/parallel.hpp"
#include "retikd/deploy/fold.hpp"
#include "retikd/ops/cpu/nchwc.hpp"

namespace retikd {
namespace deploy {

struct CpuEngineOptions {
  // Spin budget of the pool's workers during a forward (µs; 0: sleep between layers as elsewhere in retikd).
  int spin_us = 200;
  // Split a batch of at least as many images as threads by image (see CpuEngine::forward).
  bool split_batch = true;
};

class CpuEngine {
 public:
  struct LayerTime {
    std::string name;  // the module path ("features.2.conv.0.0"; "+ res" when the add is fused)
    std::string kind;  // pointwise, depthwise, conv, maxpool, se, head
    Shape out;         // output (N, C, H, W), or (N, classes)
    double ms = 0;     // median over the repetitions
  };

  explicit CpuEngine(std::shared_ptr<FoldedConvNet> model, CpuEngineOptions options = {})
      : model_(std::move(model)), options_(options) {
    RETIKD_CHECK(model_ != nullptr, "CpuEngine: no model");
  }

  // Whether `model` compiles to a plan on this build (a FoldedConvNet of supported layers, vector extensions).
  static bool supports(const nn::Model& model, int64_t img = 64) {
    if (!cpu::nchwc::kAvailable) return false;
    const auto* f = dynamic_cast<const FoldedConvNet*>(&model);
    if (!f) return false;
    try {
      Plan p(*f, {1, f->in_chans(), img, img});
      return true;
    } catch (const Error&) {
      return false;
    }
  }

  const FoldedConvNet& model() const { return *model_; }

  // Logits (N, classes) for x (N, C, H, W), float32 on the CPU. A batch of at least as many images as threads is
  // split by image: each thread runs whole images through its own single-image plan (no synchronisation between
  // layers, and one image's activations stay in its core's caches); a smaller batch runs each layer on all threads.
  Tensor forward(const Tensor& x) {
    RETIKD_CHECK(x.dim() == 4 && x.dtype() == DType::float32 && !x.is_cuda(), "CpuEngine: input ", x.describe(),
                 " must be (N, C, H, W) float32 on the CPU");
    const int64_t N = x.size(0), T = thread_pool().num_threads();
    if (N >= 2 && T >= 2 && N >= T && options_.split_batch) {
      const Tensor xc = x.contiguous();
      const Shape one{1, x.size(1), x.size(2), x.size(3)};
      const int64_t per_image = shape_numel(one);
      auto& team = team_plans(one, T);
      const int64_t K = team[0]->classes;
      Tensor out = Tensor::empty({N, K});
      const float* px = xc.data<float>();
      float* po = out.data<float>();
      thread_pool().run(T, [&](int64_t t) {
        for (int64_t n = t * N / T; n < (t + 1) * N / T; ++n)
          team[static_cast<std::size_t>(t)]->run(px + n * per_image, po + n * K, nullptr);
      });
      return out;
    }
    Plan& p = plan_for(x);
    ThreadPool::SpinScope spin(thread_pool(), options_.spin_us);
    return p.run(x, nullptr);
  }

  // Each fused layer's time over `reps` forwards of x (after one warm-up), median per layer.
  std::vector<LayerTime> profile(const Tensor& x, int reps) {
    Plan& p = plan_for(x);
    ThreadPool::SpinScope spin(thread_pool(), options_.spin_us);
    p.run(x, nullptr);
    std::vector<std::vector<double>> samples(p.ops.size());
    for (int r = 0; r < std::max(1, reps); ++r) {
      std::vector<double> t(p.ops.size(), 0.0);
      p.run(x, &t);
      for (std::size_t i = 0; i < t.size(); ++i) samples[i].push_back(t[i]);
    }
    std::vector<LayerTime> out;
    for (std::size_t i = 0; i < p.ops.size(); ++i) {
      auto& s = samples[i];
      std::sort(s.begin(), s.end());
      const Op& op = p.ops[i];
      const Value& v = p.values[static_cast<std::size_t>(op.out)];
      out.push_back({op.name, op.kind_name(), op.kind == Kind::head ? Shape{p.N, v.C} : Shape{p.N, v.C, v.H, v.W},
                     1e3 * s[s.size() / 2]});
    }
    return out;
  }

 private:
  using Act = cpu::nchwc::Act;
  static constexpr int CB = cpu::nchwc::CB;

  enum class Kind { pointwise, depthwise, conv, maxpool, se, add, head, to_blocked };

  // 64-byte-aligned float storage.
  struct Buffer {
    float* data = nullptr;
    int64_t size = 0;
    Buffer() = default;
    explicit Buffer(int64_t n) : size(n) {
      data = static_cast<float*>(::operator new(static_cast<std::size_t>(std::max<int64_t>(n, 1)) * sizeof(float),
                                                std::align_val_t(64)));
      std::fill(data, data + n, 0.0f);
    }
    Buffer(Buffer&& o) noexcept : data(o.data), size(o.size) { o.data = nullptr; }
    Buffer& operator=(Buffer&& o) noexcept {
      std::swap(data, o.data);
      std::swap(size, o.size);
      return *this;
    }
    ~Buffer() {
      if (data) ::operator delete(data, std::align_val_t(64));
    }
  };

  // An activation of the plan: (N, C, H, W), blocked (C padded to CB) or plain NCHW (the input).
  struct Value {
    int64_t C = 0, H = 0, W = 0;
    bool blocked = true;
    int slot = -1;        // arena buffer; -1: the caller's input tensor
    int last_use = -1;    // index of the last op reading it
    int64_t per_image() const { return (blocked ? cpu::nchwc::round_up(C, CB) : C) * H * W; }
  };

  struct Op {
    Kind kind = Kind::pointwise;
    std::string name;
    int in = -1, out = -1, res = -1;  // value ids (res: fused residual input)
    Act act = Act::identity;
    Buffer w, b;                       // packed weights, padded bias
    int mp = 1, nb = 1;                // register tile
    cpu::nchwc::DirectConv dc;         // conv
    cpu::nchwc::Depthwise dw;          // depthwise, maxpool
    // squeeze-excitation / head: plain fc layers on the pooled vector
    struct Fc {
      int64_t in = 0, out = 0;
      std::vector<float> w, b;  // (out, in), (out)
      Act act = Act::identity;
    };
    std::vector<Fc> fcs;
    const char* kind_name() const {
      switch (kind) {
        case Kind::pointwise: return "pointwise";
        case Kind::depthwise: return "depthwise";
        case Kind::conv: return "conv";
        case Kind::maxpool: return "maxpool";
        case Kind::se: return "se";
        case Kind::add: return "add";
        case Kind::head: return "head";
        case Kind::to_blocked: return "to_blocked";
      }
      return "?";
    }
  };

  struct Plan {
    int64_t N = 0;
    std::vector<Value> values;
    std::vector<Op> ops;
    std::vector<Buffer> arena;
    int64_t classes = 0;

    Plan(const FoldedConvNet& m, const Shape& input) {
      RETIKD_CHECK(cpu::nchwc::kAvailable, "CpuEngine: this build has no vector extensions");
      RETIKD_CHECK(input.size() == 4 && input[1] == m.in_chans(), "CpuEngine: input ", shape_str(input),
                   " must be (N, ", m.in_chans(), ", H, W)");
      N = input[0];
      Value x;
      x.C = input[1];
      x.H = input[2];
      x.W = input[3];
      x.blocked = false;
      values.push_back(x);
      int v = 0;
      for (const auto& c : m.named_children()) {
        if (c.first == "classifier" || c.first == "fc") continue;
        v = module(*c.second, c.first, v);
      }
      head(m, v);
      allocate();
    }

    // ---- building ----------------------------------------------------------------------------------------------

    int new_value(int64_t C, int64_t H, int64_t W) {
      Value v;
      v.C = C;
      v.H = H;
      v.W = W;
      values.push_back(v);
      return static_cast<int>(values.size()) - 1;
    }
    int blocked(int v, const std::string& name) {
      if (values[static_cast<std::size_t>(v)].blocked) return v;
      Op op;
      op.kind = Kind::to_blocked;
      op.name = name + " (to blocked)";
      op.in = v;
      const Value& s = values[static_cast<std::size_t>(v)];
      op.out = new_value(s.C, s.H, s.W);
      ops.push_back(std::move(op));
      return ops.back().out;
    }

    static Act act_of(nn::Activation a, const std::string& where) {
      switch (a) {
        case nn::Activation::identity: return Act::identity;
        case nn::Activation::relu: return Act::relu;
        case nn::Activation::relu6: return Act::relu6;
        case nn::Activation::silu: return Act::silu;
        case nn::Activation::sigmoid: return Act::sigmoid;
        default: break;
      }
      fail("CpuEngine: ", where, ": activation ", nn::activation_name(a), " is not fused");
    }

    // The register tile for `ob` output blocks: NB the largest of 4, 3, 2, 1 dividing it, MP filling the registers.
    static void tile_for(int64_t ob, int& mp, int& nb) {
      nb = ob % 4 == 0 ? 4 : ob % 3 == 0 ? 3 : ob % 2 == 0 ? 2 : 1;
      if (cpu::nchwc::kRegisters >= 32) {
        mp = nb == 4 ? 6 : nb == 3 ? 8 : nb == 2 ? 12 : 24;
      } else {
        mp = nb == 4 ? 3 : nb == 3 ? 4 : nb == 2 ? 6 : 12;
      }
    }

    // A convolution (+ bias, act, residual).
    int conv(const nn::Conv2d& c, const std::string& name, int in, Act act, int res) {
      const Value src = values[static_cast<std::size_t>(in)];
      const Shape in_shape{N, src.C, src.H, src.W};
      const ops::Conv2dOptions o = c.options_for(in_shape);
      const auto g = ops::impl::conv2d_geometry(in_shape, c.weight.shape(), o);
      const std::vector<float> W = c.weight.value().contiguous().to_vector<float>();
      const std::vector<float> B = c.bias.defined() ? c.bias.value().to_vector<float>() : std::vector<float>();
      Op op;
      op.name = name + (res >= 0 ? " (+ residual)" : "");
      op.act = act;
      op.res = res;
      const int64_t Ob = cpu::nchwc::blocks(g.O);
      op.b = Buffer(Ob * CB);
      for (int64_t i = 0; i < static_cast<int64_t>(B.size()); ++i) op.b.data[i] = B[static_cast<std::size_t>(i)];
      if (g.depthwise()) {
        RETIKD_CHECK(g.O == g.C && g.kh == g.kw && o.stride_h == o.stride_w && o.pad_top == o.pad_left &&
                         o.dilation_h == 1 && o.dilation_w == 1,
                     "CpuEngine: ", name, ": depthwise layer outside the fused kernel's range (multiplier 1, square "
                     "kernel and stride, no dilation)");
        op.kind = Kind::depthwise;
        in = blocked(in, name);
        op.dw.H = g.H;
        op.dw.W = g.W;
        op.dw.OH = g.OH;
        op.dw.OW = g.OW;
        op.dw.k = g.kh;
        op.dw.s = o.stride_h;
        op.dw.p = o.pad_top;
        const int64_t kk = g.kh * g.kw;
        op.w = Buffer(Ob * kk * CB);
        for (int64_t ch = 0; ch < g.C; ++ch)
          for (int64_t t = 0; t < kk; ++t)
            op.w.data[((ch / CB) * kk + t) * CB + ch % CB] = W[static_cast<std::size_t>(ch * kk + t)];
      } else {
        RETIKD_CHECK(g.groups == 1, "CpuEngine: ", name, ": grouped convolution (groups ", g.groups, ")");
        tile_for(Ob, op.mp, op.nb);
        if (g.pointwise() && src.blocked) {
          op.kind = Kind::pointwise;
          const int64_t Cpad = cpu::nchwc::round_up(g.C, CB);
          op.w = Buffer(Ob * Cpad * CB);
          for (int64_t oc = 0; oc < g.O; ++oc)
            for (int64_t ic = 0; ic < g.C; ++ic)
              op.w.data[((oc / CB) * Cpad + ic) * CB + oc % CB] = W[static_cast<std::size_t>(oc * g.C + ic)];
        } else {
          op.kind = Kind::conv;
          cpu::nchwc::DirectConv& d = op.dc;
          d.cin_block = src.blocked ? CB : 1;
          d.in_blocks = src.blocked ? cpu::nchwc::blocks(g.C) : g.C;
          d.H = g.H;
          d.W = g.W;
          d.OH = g.OH;
          d.OW = g.OW;
          d.in_pixel = d.cin_block;
          d.in_plane = g.H * g.W * d.cin_block;
          d.out_plane = g.OH * g.OW * CB;
          d.kh = g.kh;
          d.kw = g.kw;
          d.sh = o.stride_h;
          d.sw = o.stride_w;
          d.ph = o.pad_top;
          d.pw = o.pad_left;
          d.dh = o.dilation_h;
          d.dw = o.dilation_w;
          d.w_stride = d.in_blocks * g.kh * g.kw * d.cin_block * CB;
          op.w = Buffer(Ob * d.w_stride);
          for (int64_t oc = 0; oc < g.O; ++oc)
            for (int64_t ic = 0; ic < g.C; ++ic)
              for (int64_t ki = 0; ki < g.kh; ++ki)
                for (int64_t kj = 0; kj < g.kw; ++kj) {
                  const int64_t cb = ic / d.cin_block, ci = ic % d.cin_block;
                  const int64_t at = (oc / CB) * d.w_stride + (((cb * g.kh + ki) * g.kw + kj) * d.cin_block + ci) * CB +
                                     oc % CB;
                  op.w.data[at] = W[static_cast<std::size_t>(((oc * g.C + ic) * g.kh + ki) * g.kw + kj)];
                }
        }
      }
      op.in = in;
      op.out = new_value(g.O, g.OH, g.OW);
      ops.push_back(std::move(op));
      return ops.back().out;
    }

    // A chain of layers; when `res` >= 0 the last one must be a convolution with an identity activation, which
    // takes the residual add (and `post` as its activation).
    int chain(const Chain& ch, const std::string& path, int v, int res, Act post) {
      const auto& layers = ch.layers();
      for (std::size_t i = 0; i < layers.size(); ++i) {
        const std::string name = path + "." + layers[i].first;
        const bool last = i + 1 == layers.size();
        if (last && res >= 0) {
          const auto* ca = dynamic_cast<const ConvAct*>(layers[i].second.get());
          if (ca && ca->activation() == nn::Activation::identity) return conv(*ca, name, v, post, res);
          v = module(*layers[i].second, name, v);
          return add(v, res, post, path);
        }
        v = module(*layers[i].second, name, v);
      }
      return res >= 0 ? add(v, res, post, path) : v;
    }

    // act(a + b) as its own layer (when the add could not be fused).
    int add(int a, int b, Act act, const std::string& name) {
      Op op;
      op.kind = Kind::add;
      op.name = name + " (+)";
      op.in = blocked(a, name);
      op.res = blocked(b, name);
      op.act = act;
      const Value& s = values[static_cast<std::size_t>(op.in)];
      op.out = new_value(s.C, s.H, s.W);
      ops.push_back(std::move(op));
      return ops.back().out;
    }

    static Op::Fc fc_of(const nn::Conv2d& c, Act act) {
      Op::Fc f;
      f.out = c.weight.size(0);
      f.in = c.weight.size(1);
      RETIKD_CHECK(c.weight.size(2) == 1 && c.weight.size(3) == 1, "CpuEngine: a squeeze-excitation conv is not 1x1");
      f.w = c.weight.value().contiguous().to_vector<float>();
      f.b = c.bias.defined() ? c.bias.value().to_vector<float>() : std::vector<float>(static_cast<std::size_t>(f.out), 0.f);
      f.act = act;
      return f;
    }
    static Op::Fc fc_of(const nn::Linear& l) {
      Op::Fc f;
      f.out = l.out_features();
      f.in = l.in_features();
      f.w = l.weight.value().contiguous().to_vector<float>();
      f.b = l.bias.defined() ? l.bias.value().to_vector<float>() : std::vector<float>(static_cast<std::size_t>(f.out), 0.f);
      return f;
    }

    int module(const nn::Module& m, const std::string& path, int v) {
      if (const auto* ca = dynamic_cast<const ConvAct*>(&m)) return conv(*ca, path, v, act_of(ca->activation(), path), -1);
      if (const auto* c = dynamic_cast<const nn::Conv2d*>(&m)) return conv(*c, path, v, Act::identity, -1);
      if (const auto* ch = dynamic_cast<const Chain*>(&m)) return chain(*ch, path, v, -1, Act::identity);
      if (const auto* r = dynamic_cast<const FoldedResidual*>(&m))
        return chain(r->body(), path + "." + r->named_children()[0].first, v, r->residual() ? v : -1, Act::identity);
      if (const auto* bb = dynamic_cast<const FoldedBasicBlock*>(&m)) {
        const int identity = bb->downsample ? chain(*bb->downsample, path + ".downsample", v, -1, Act::identity) : v;
        const int h = conv(*bb->conv1, path + ".conv1", v, act_of(bb->conv1->activation(), path), -1);
        RETIKD_CHECK(bb->conv2->activation() == nn::Activation::identity, "CpuEngine: ", path, ": conv2 with an activation");
        return conv(*bb->conv2, path + ".conv2", h, Act::relu, blocked(identity, path));
      }
      if (const auto* se = dynamic_cast<const nn::SqueezeExcitation*>(&m)) {
        Op op;
        op.kind = Kind::se;
        op.name = path;
        op.in = blocked(v, path);
        op.fcs.push_back(fc_of(*se->fc1, act_of(se->activation(), path)));
        op.fcs.push_back(fc_of(*se->fc2, act_of(se->scale_activation(), path)));
        const Value& s = values[static_cast<std::size_t>(op.in)];
        RETIKD_CHECK(op.fcs[0].in == s.C && op.fcs[1].out == s.C, "CpuEngine: ", path, ": squeeze-excitation width");
        op.out = new_value(s.C, s.H, s.W);
        ops.push_back(std::move(op));
        return ops.back().out;
      }
      if (const auto* mp = dynamic_cast<const nn::MaxPool2d*>(&m)) {
        RETIKD_CHECK(!mp->ceil_mode(), "CpuEngine: ", path, ": max pool with ceil_mode");
        Op op;
        op.kind = Kind::maxpool;
        op.name = path;
        op.in = blocked(v, path);
        const Value& s = values[static_cast<std::size_t>(op.in)];
        const Shape o = mp->infer_shape({N, s.C, s.H, s.W}, nullptr);
        op.dw.H = s.H;
        op.dw.W = s.W;
        op.dw.OH = o[2];
        op.dw.OW = o[3];
        op.dw.k = mp->kernel();
        op.dw.s = mp->stride();
        op.dw.p = mp->padding();
        op.out = new_value(s.C, o[2], o[3]);
        ops.push_back(std::move(op));
        return ops.back().out;
      }
      if (const auto* a = dynamic_cast<const nn::ActivationLayer*>(&m)) {
        RETIKD_CHECK(a->kind() == nn::Activation::identity, "CpuEngine: ", path, ": a separate activation layer");
        return v;
      }
      if (dynamic_cast<const nn::Dropout*>(&m) || dynamic_cast<const nn::DropPath*>(&m)) return v;
      fail("CpuEngine: ", path, ": no fused kernel for a module of type ", typeid(m).name());
    }

    // Global average pool and the classifier (Linear layers, dropouts skipped).
    void head(const FoldedConvNet& m, int v) {
      Op op;
      op.kind = Kind::head;
      op.name = "global_pool + classifier";
      op.in = blocked(v, "global_pool");
      for (const auto& c : m.named_children()) {
        if (c.first != "classifier" && c.first != "fc") continue;
        std::function<void(const nn::Module&)> walk = [&](const nn::Module& mod) {
          if (const auto* l = dynamic_cast<const nn::Linear*>(&mod)) {
            op.fcs.push_back(fc_of(*l));
          } else if (const auto* ch = dynamic_cast<const Chain*>(&mod)) {
            for (const auto& l : ch->layers()) walk(*l.second);
          } else if (const auto* a = dynamic_cast<const nn::ActivationLayer*>(&mod)) {
            RETIKD_CHECK(!op.fcs.empty(), "CpuEngine: an activation before the classifier's first Linear");
            op.fcs.back().act = act_of(a->kind(), "classifier");
          } else if (!dynamic_cast<const nn::Dropout*>(&mod)) {
            fail("CpuEngine: classifier: a module of type ", typeid(mod).name());
          }
        };
        walk(*c.second);
      }
      RETIKD_CHECK(!op.fcs.empty(), "CpuEngine: no classifier");
      RETIKD_CHECK(op.fcs.front().in == values[static_cast<std::size_t>(op.in)].C, "CpuEngine: classifier width");
      classes = op.fcs.back().out;
      op.out = new_value(classes, 1, 1);
      values[static_cast<std::size_t>(op.out)].blocked = false;
      ops.push_back(std::move(op));
    }

    // Arena slots: each value's buffer is taken when it is produced and returned after its last reader ran.
    void allocate() {
      for (std::size_t i = 0; i < ops.size(); ++i)
        for (int r : {ops[i].in, ops[i].res})
          if (r >= 0) values[static_cast<std::size_t>(r)].last_use = static_cast<int>(i);
      std::vector<int64_t> slot_size;
      std::vector<bool> busy;
      for (std::size_t i = 0; i < ops.size(); ++i) {
        Value& out = values[static_cast<std::size_t>(ops[i].out)];
        const int64_t need = N * out.per_image();
        int best = -1;
        for (std::size_t s = 0; s < slot_size.size(); ++s)
          if (!busy[s] && slot_size[s] >= need && (best < 0 || slot_size[s] < slot_size[static_cast<std::size_t>(best)]))
            best = static_cast<int>(s);
        if (best < 0) {
          for (std::size_t s = 0; s < slot_size.size(); ++s)  // grow the largest free slot rather than adding one
            if (!busy[s] && (best < 0 || slot_size[s] > slot_size[static_cast<std::size_t>(best)])) best = static_cast<int>(s);
          if (best < 0) {
            slot_size.push_back(need);
            busy.push_back(false);
            best = static_cast<int>(slot_size.size()) - 1;
          }
          slot_size[static_cast<std::size_t>(best)] = std::max(slot_size[static_cast<std::size_t>(best)], need);
        }
        out.slot = best;
        busy[static_cast<std::size_t>(best)] = true;
        for (int r : {ops[i].in, ops[i].res}) {
          if (r < 0) continue;
          const Value& rv = values[static_cast<std::size_t>(r)];
          if (rv.slot >= 0 && rv.last_use == static_cast<int>(i)) busy[static_cast<std::size_t>(rv.slot)] = false;
        }
        if (out.last_use < 0 && static_cast<int>(i) + 1 < static_cast<int>(ops.size()))
          busy[static_cast<std::size_t>(best)] = false;  // never read (cannot happen in a chain, but harmless)
      }
      for (int64_t s : slot_size) arena.emplace_back(s);
    }

    // ---- running -----------------------------------------------------------------------------------------------

    const float* input_ = nullptr;  // the caller's images during run()
    // A value's storage: the caller's input (read only: the input is never an op's output) or an arena buffer.
    float* data(int v) {
      const Value& val = values[static_cast<std::size_t>(v)];
      return val.slot < 0 ? const_cast<float*>(input_) : arena[static_cast<std::size_t>(val.slot)].data;
    }

    static void run_tasks(int64_t n, const std::function<void(int64_t)>& fn) {
      if (n <= 0) return;
      if (n == 1 || thread_pool().num_threads() == 1) {
        for (int64_t t = 0; t < n; ++t) fn(t);
      } else {
        thread_pool().run(n, fn);
      }
    }
    // Splits `items` units of `cost` work each into tasks: about 4 per thread, none below ~20k multiply-adds.
    static int64_t chunks(int64_t items, double cost) {
      const int64_t threads = thread_pool().num_threads();
      const int64_t by_work = static_cast<int64_t>(static_cast<double>(items) * cost / 20000.0) + 1;
      return std::max<int64_t>(1, std::min({items, threads * 4, by_work}));
    }

    template <class Fn>
    static void parallel_items(int64_t items, double cost, Fn&& fn) {
      const int64_t per = chunks(items, cost);
      run_tasks(per, [&](int64_t task) {
        for (int64_t u = task * items / per; u < (task + 1) * items / per; ++u) fn(u);
      });
    }

    Tensor run(const Tensor& input, std::vector<double>* times) {
      RETIKD_CHECK(input.dim() == 4 && input.size(0) == N && input.dtype() == DType::float32 && !input.is_cuda(),
                   "CpuEngine: input ", input.describe(), " does not match the plan (", N, " images, float32, CPU)");
      const Tensor x = input.contiguous();
      Tensor logits = Tensor::empty({N, classes});
      run(x.data<float>(), logits.data<float>(), times);
      return logits;
    }
    // input: N images (C, H, W) contiguous; logits: N × classes.
    void run(const float* input, float* logits, std::vector<double>* times) {
      input_ = input;
      for (std::size_t i = 0; i < ops.size(); ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        run_op(ops[i], logits);
        if (times) (*times)[i] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      }
      input_ = nullptr;
    }

    void run_op(const Op& op, float* logits) {
#if defined(RETIKD_GEMM_VECTOR_EXTENSIONS)
      using namespace cpu::nchwc;
      const Value& iv = values[static_cast<std::size_t>(op.in)];
      const Value& ov = values[static_cast<std::size_t>(op.out)];
      const float* in = data(op.in);
      const float* res = op.res >= 0 ? data(op.res) : nullptr;
      float* out = op.kind == Kind::head ? nullptr : data(op.out);
      const int64_t in_img = iv.per_image(), out_img = ov.per_image();
      switch (op.kind) {
        case Kind::to_blocked: {
          const int64_t C = iv.C, P = iv.H * iv.W, Cb = blocks(C);
          run_tasks(N * Cb, [&](int64_t t) {
            const int64_t n = t / Cb, cb = t % Cb;
            float* o = out + n * out_img + cb * P * CB;
            for (int64_t p = 0; p < P; ++p)
              for (int64_t l = 0; l < CB; ++l) {
                const int64_t c = cb * CB + l;
                o[p * CB + l] = c < C ? in[n * in_img + c * P + p] : 0.0f;
              }
          });
          break;
        }
        case Kind::pointwise: {
          const int64_t P = iv.H * iv.W, Cb = blocks(iv.C), Ob = blocks(ov.C);
          // items: (image, pixel tile, group of NB output blocks), the group fastest so that a task's consecutive
          // items reuse one input tile from L1
          const int64_t tiles = pointwise_tile_count(P, op.mp), groups = Ob / op.nb;
          parallel_items(N * tiles * groups, static_cast<double>(std::min<int64_t>(op.mp, P)) * Cb * CB * op.nb * CB,
                         [&](int64_t u) {
                           const int64_t g = u % groups, tile = (u / groups) % tiles, n = u / (groups * tiles);
                           pointwise(op, in + n * in_img, P, Cb, g * op.nb, op.nb, tile, out + n * out_img,
                                     res ? res + n * out_img : nullptr);
                         });
          break;
        }
        case Kind::conv: {
          const cpu::nchwc::DirectConv& d = op.dc;
          const int64_t Ob = blocks(ov.C);
          // items: (image, output row, group of NB output blocks), the group fastest (the input rows stay in cache)
          const int64_t groups = Ob / op.nb;
          parallel_items(N * d.OH * groups,
                         static_cast<double>(d.OW) * d.in_blocks * d.cin_block * d.kh * d.kw * op.nb * CB, [&](int64_t u) {
                           const int64_t ob = (u % groups) * op.nb, oh = (u / groups) % d.OH, n = u / (groups * d.OH);
                           direct_row(op, in + n * in_img, op.w.data + ob * d.w_stride, op.b.data + ob * CB,
                                      out + n * out_img + ob * d.out_plane,
                                      res ? res + n * out_img + ob * d.out_plane : nullptr, oh);
                         });
          break;
        }
        case Kind::depthwise:
        case Kind::maxpool: {
          const Depthwise& d = op.dw;
          const int64_t Cb = blocks(iv.C);
          parallel_items(N * Cb * d.OH, static_cast<double>(d.OW) * d.k * d.k * CB, [&](int64_t u) {
            const int64_t oh = u % d.OH, cb = (u / d.OH) % Cb, n = u / (d.OH * Cb);
            const float* plane = in + n * in_img + cb * d.H * d.W * CB;
            float* orow = out + n * out_img + (cb * d.OH + oh) * d.OW * CB;
            if (op.kind == Kind::maxpool) {
              max_pool_row(d, plane, orow, oh);
              return;
            }
            const float* rrow = res ? res + n * out_img + (cb * d.OH + oh) * d.OW * CB : nullptr;
            const float* wb = op.w.data + cb * d.k * d.k * CB;
            const vf bias = load(op.b.data + cb * CB);
            if (d.k == 3)
              depthwise_row<3>(d, plane, wb, bias, orow, rrow, oh, op.act);
            else if (d.k == 5)
              depthwise_row<5>(d, plane, wb, bias, orow, rrow, oh, op.act);
            else
              depthwise_row<0>(d, plane, wb, bias, orow, rrow, oh, op.act);
          });
          break;
        }
        case Kind::add: {
          const int64_t vectors = N * in_img / CB, per = 256;
          parallel_items((vectors + per - 1) / per, 4.0 * per * CB, [&](int64_t u) {
            for (int64_t i = u * per * CB; i < std::min(vectors, (u + 1) * per) * CB; i += CB)
              store(out + i, activate(load(in + i) + load(res + i), op.act));
          });
          break;
        }
        case Kind::se: {
          // pool each channel block, the two small FC layers per image, then scale every pixel vector
          const int64_t P = iv.H * iv.W, Cb = blocks(iv.C), items = N * Cb;
          std::vector<float> pooled(static_cast<std::size_t>(items * CB)), scale(pooled.size(), 0.0f);
          parallel_items(items, static_cast<double>(P) * CB, [&](int64_t u) {
            global_average(in + (u / Cb) * in_img + (u % Cb) * P * CB, P, &pooled[static_cast<std::size_t>(u * CB)]);
          });
          for (int64_t n = 0; n < N; ++n) {
            std::vector<float> h(pooled.begin() + n * Cb * CB, pooled.begin() + (n + 1) * Cb * CB);
            for (const auto& f : op.fcs) h = fc(f, h);
            std::copy(h.begin(), h.begin() + Cb * CB, scale.begin() + n * Cb * CB);
          }
          parallel_items(items, static_cast<double>(P) * CB, [&](int64_t u) {
            scale_plane_to(in + (u / Cb) * in_img + (u % Cb) * P * CB, out + (u / Cb) * out_img + (u % Cb) * P * CB, P,
                           load(&scale[static_cast<std::size_t>(u * CB)]));
          });
          break;
        }
        case Kind::head: {
          const int64_t P = iv.H * iv.W, Cb = blocks(iv.C);
          std::vector<float> pooled(static_cast<std::size_t>(Cb * CB));
          float* lo = logits;
          for (int64_t n = 0; n < N; ++n) {
            for (int64_t cb = 0; cb < Cb; ++cb) global_average(in + n * in_img + cb * P * CB, P, &pooled[static_cast<std::size_t>(cb * CB)]);
            std::vector<float> h = pooled;
            for (const auto& f : op.fcs) h = fc(f, h);
            std::copy(h.begin(), h.begin() + classes, lo + n * classes);
          }
          break;
        }
      }
#else
      (void)op;
      (void)logits;
      fail("CpuEngine: this build has no vector extensions");
#endif
    }

    // y = act(W·x + b) for one pooled vector (x may be padded past f.in).
    static std::vector<float> fc(const Op::Fc& f, const std::vector<float>& x) {
      std::vector<float> y(static_cast<std::size_t>(cpu::nchwc::round_up(f.out, CB)), 0.0f);
      for (int64_t o = 0; o < f.out; ++o) {
        const float* w = &f.w[static_cast<std::size_t>(o * f.in)];
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        int64_t i = 0;
        for (; i + 4 <= f.in; i += 4) {
          s0 += w[i] * x[static_cast<std::size_t>(i)];
          s1 += w[i + 1] * x[static_cast<std::size_t>(i + 1)];
          s2 += w[i + 2] * x[static_cast<std::size_t>(i + 2)];
          s3 += w[i + 3] * x[static_cast<std::size_t>(i + 3)];
        }
        for (; i < f.in; ++i) s0 += w[i] * x[static_cast<std::size_t>(i)];
        float v = f.b[static_cast<std::size_t>(o)] + ((s0 + s1) + (s2 + s3));
        switch (f.act) {
          case Act::relu: v = std::max(v, 0.0f); break;
          case Act::relu6: v = std::min(std::max(v, 0.0f), 6.0f); break;
          case Act::silu: v = v / (1.0f + std::exp(-v)); break;
          case Act::sigmoid: v = 1.0f / (1.0f + std::exp(-v)); break;
          case Act::identity: break;
        }
        y[static_cast<std::size_t>(o)] = v;
      }
      return y;
    }

#if defined(RETIKD_GEMM_VECTOR_EXTENSIONS)
    // The P pixels of a pointwise layer in MP-wide tiles; the r = P mod MP left over either one by one (r single-
    // pixel tiles, each about 2.5× a tile pixel's cost: they are load-bound) or as one more MP-wide tile shifted back
    // to end at P (recomputing MP − r pixels), whichever is cheaper. Tile index t ≥ P / MP is a single pixel in the
    // first case.
    static bool singles(int64_t P, int64_t mp) { return P < mp || 5 * (P % mp) < 2 * mp; }
    static int64_t pointwise_tile_count(int64_t P, int64_t mp) {
      return P / mp + (P % mp == 0 ? 0 : singles(P, mp) ? P % mp : 1);
    }
    // Output blocks [ob0, ob1) of one pixel tile.
    template <int MP, int NB>
    static void pointwise_tiles(const Op& op, const float* in, int64_t P, int64_t Cb, int64_t ob0, int64_t ob1,
                                int64_t tile, float* out, const float* res) {
      const int64_t Cpad = Cb * CB;
      if (tile >= P / MP && singles(P, MP)) {
        const int64_t p = (P / MP) * MP + (tile - P / MP);
        for (int64_t ob = ob0; ob < ob1; ob += NB)
          cpu::nchwc::pointwise_tile<1, NB>(Cb, in + p * CB, P * CB, op.w.data + ob * Cpad * CB, Cpad * CB,
                                            op.b.data + ob * CB, out + (ob * P + p) * CB, P * CB,
                                            res ? res + (ob * P + p) * CB : nullptr, op.act);
        return;
      }
      const int64_t p0 = std::min(tile * MP, P - MP);  // the last tile ends at P (recomputes a few pixels)
      for (int64_t ob = ob0; ob < ob1; ob += NB)
        cpu::nchwc::pointwise_tile<MP, NB>(Cb, in + p0 * CB, P * CB, op.w.data + ob * Cpad * CB, Cpad * CB,
                                           op.b.data + ob * CB, out + (ob * P + p0) * CB, P * CB,
                                           res ? res + (ob * P + p0) * CB : nullptr, op.act);
    }
    static void pointwise(const Op& op, const float* in, int64_t P, int64_t Cb, int64_t ob0, int64_t nblocks,
                          int64_t tile, float* out, const float* res) {
      const int64_t Ob = ob0 + nblocks;
      if (cpu::nchwc::kRegisters >= 32) {
        switch (op.nb) {
          case 4: return pointwise_tiles<6, 4>(op, in, P, Cb, ob0, Ob, tile, out, res);
          case 3: return pointwise_tiles<8, 3>(op, in, P, Cb, ob0, Ob, tile, out, res);
          case 2: return pointwise_tiles<12, 2>(op, in, P, Cb, ob0, Ob, tile, out, res);
          default: return pointwise_tiles<24, 1>(op, in, P, Cb, ob0, Ob, tile, out, res);
        }
      } else {
        switch (op.nb) {
          case 4: return pointwise_tiles<3, 4>(op, in, P, Cb, ob0, Ob, tile, out, res);
          case 3: return pointwise_tiles<4, 3>(op, in, P, Cb, ob0, Ob, tile, out, res);
          case 2: return pointwise_tiles<6, 2>(op, in, P, Cb, ob0, Ob, tile, out, res);
          default: return pointwise_tiles<12, 1>(op, in, P, Cb, ob0, Ob, tile, out, res);
        }
      }
    }
    static void direct_row(const Op& op, const float* in, const float* w, const float* b, float* out, const float* res,
                           int64_t oh) {
      const auto& d = op.dc;
      if (cpu::nchwc::kRegisters >= 32) {
        switch (op.nb) {
          case 4: return cpu::nchwc::direct_conv_row<6, 4>(d, in, w, b, out, res, oh, op.act);
          case 3: return cpu::nchwc::direct_conv_row<8, 3>(d, in, w, b, out, res, oh, op.act);
          case 2: return cpu::nchwc::direct_conv_row<12, 2>(d, in, w, b, out, res, oh, op.act);
          default: return cpu::nchwc::direct_conv_row<24, 1>(d, in, w, b, out, res, oh, op.act);
        }
      } else {
        switch (op.nb) {
          case 4: return cpu::nchwc::direct_conv_row<3, 4>(d, in, w, b, out, res, oh, op.act);
          case 3: return cpu::nchwc::direct_conv_row<4, 3>(d, in, w, b, out, res, oh, op.act);
          case 2: return cpu::nchwc::direct_conv_row<6, 2>(d, in, w, b, out, res, oh, op.act);
          default: return cpu::nchwc::direct_conv_row<12, 1>(d, in, w, b, out, res, oh, op.act);
        }
      }
    }
#endif
  };

  Plan& plan_for(const Tensor& x) {
    RETIKD_CHECK(x.dim() == 4, "CpuEngine: input ", shape_str(x.shape()), " must be (N, C, H, W)");
    auto it = plans_.find(x.shape());
    if (it == plans_.end()) {
      if (plans_.size() >= 8) plans_.clear();  // a bounded cache: batch sizes and image sizes seen recently
      it = plans_.emplace(x.shape(), std::make_unique<Plan>(*model_, x.shape())).first;
    }
    return *it->second;
  }

  // One single-image plan per thread of the pool (their arenas are separate).
  std::vector<std::unique_ptr<Plan>>& team_plans(const Shape& one, int64_t threads) {
    if (team_shape_ != one || static_cast<int64_t>(team_.size()) != threads) {
      team_.clear();
      for (int64_t t = 0; t < threads; ++t) team_.push_back(std::make_unique<Plan>(*model_, one));
      team_shape_ = one;
    }
    return team_;
  }

  std::shared_ptr<FoldedConvNet> model_;
  CpuEngineOptions options_;
  std::map<Shape, std::unique_ptr<Plan>> plans_;
  Shape team_shape_;
  std::vector<std::unique_ptr<Plan>> team_;
};

}  // namespace deploy
}  // namespace retikd
