// retikd/nn/trace.hpp — shape inference and multiply-accumulate counting without running a forward.
//
// Every layer in nn/ also implements `Traceable::infer_shape(in, trace)`: the output shape for an input shape,
// adding the layer's multiply-accumulates (MACs) to the trace. Models chain these to list their feature
// taps with shapes and to count forward FLOPs at any image size in microseconds — a ViT-B/16 forward at
// 224 px takes seconds on a CPU, its shape walk none.
//
// MAC convention: convolutions (out elements × C/groups·kh·kw), linear layers (out elements × in features)
// and the two attention products (Q·Kᵀ and P·V); normalisation, activations, pooling, softmax and the
// elementwise ops (residual adds, SE scaling) are not counted. FLOPs = 2 × MACs.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <typeinfo>

#include "retikd/core/error.hpp"
#include "retikd/core/shape.hpp"
#include "retikd/nn/module.hpp"

namespace retikd {
namespace nn {

struct ShapeTrace {
  double macs = 0.0;
  std::map<std::string, double> macs_by_kind;  // "conv", "linear", "attention"

  void add(const std::string& kind, double m) {
    macs += m;
    macs_by_kind[kind] += m;
  }
  double flops() const { return 2.0 * macs; }
};

// Implemented by every layer of nn/ alongside Layer::forward.
class Traceable {
 public:
  virtual ~Traceable() = default;
  // Output shape for an input of shape `in`; adds this layer's MACs to *trace when trace is non-null.
  // Throws (as forward would) when the input shape is invalid for the layer.
  virtual Shape infer_shape(const Shape& in, ShapeTrace* trace) const = 0;
};

// Shape inference through any module: a Sequential chains its children, a Traceable answers for itself.
inline Shape infer_shape(const Module& m, const Shape& in, ShapeTrace* trace = nullptr) {
  if (const auto* t = dynamic_cast<const Traceable*>(&m)) return t->infer_shape(in, trace);
  if (const auto* s = dynamic_cast<const Sequential*>(&m)) {
    Shape x = in;
    for (std::size_t i = 0; i < s->size(); ++i) x = infer_shape(*(*s)[i], x, trace);
    return x;
  }
  fail("infer_shape: module of type ", typeid(m).name(), " implements no shape inference (nn::Traceable)");
}

}  // namespace nn
}  // namespace retikd
