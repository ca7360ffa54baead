// retikd/autograd/var.hpp — reverse-mode automatic differentiation on a dynamic tape.
//
// A Var is a shared handle to a value Tensor plus, when it requires a gradient, the Node that produced it.
// Each differentiable op builds its result with `make_result(value, "op", {inputs}, backward)`: the node keeps
// the inputs alive and a closure that maps the output's gradient to one gradient per input. `backward()`
// walks the nodes in reverse topological order, summing gradients where a Var feeds several ops, and
// leaves the totals in the `.grad()` of leaf Vars that require a gradient.
//
// Hooks (autograd/backward_hook.hpp) see each leaf's gradient of the pass when it is complete: data parallelism
// starts averaging it across processes while the walk goes on.
//
// An op registered without a backward closure still records a node, so the error is raised where it belongs:
// when backward actually reaches it ("backward reached 'argmax', which has no backward").
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "retikd/core/error.hpp"
#include "retikd/autograd/accumulate.hpp"
#include "retikd/autograd/backward_hook.hpp"
#include "retikd/autograd/op_observer.hpp"
#include "retikd/core/tensor.hpp"

namespace retikd {

class Var;

// Maps the gradient of an op's output to the gradients of its inputs (an undefined Tensor for an input that
// needs none). Called at most once per backward pass.
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;

struct Node {
  std::string op;
  std::vector<Var> inputs;
  BackwardFn backward;  // empty: the op has no backward
};

struct VarImpl {
  Tensor value;
  Tensor grad;
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;
  ~VarImpl();
};

// Grad mode is per thread, like PyTorch's: a loader thread never records onto the training thread's tape.
inline bool& grad_mode_enabled() {
  static thread_local bool enabled = true;
  return enabled;
}

// RAII scope in which ops record nothing (evaluation, teacher forward, optimizer updates).
class NoGradGuard {
 public:
  NoGradGuard() : previous_(grad_mode_enabled()) { grad_mode_enabled() = false; }
  ~NoGradGuard() { grad_mode_enabled() = previous_; }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

class Var {
 public:
  Var() = default;
  Var(Tensor value, bool requires_grad = false) : impl_(std::make_shared<VarImpl>()) {  // NOLINT: implicit
    impl_->value = std::move(value);
    set_requires_grad(requires_grad);
  }

  bool defined() const { return impl_ && impl_->value.defined(); }
  const Tensor& value() const {
    RETIKD_CHECK(impl_, "Var: undefined");
    return impl_->value;
  }
  // In-place access to the value, for optimizers and weight loading (never for values on a live tape).
  Tensor& mutable_value() {
    RETIKD_CHECK(impl_, "Var: undefined");
    return impl_->value;
  }
  const Tensor& grad() const {
    RETIKD_CHECK(impl_, "Var: undefined");
    return impl_->grad;
  }
  Tensor& mutable_grad() {
    RETIKD_CHECK(impl_, "Var: undefined");
    return impl_->grad;
  }
  void zero_grad() {
    if (impl_) impl_->grad = Tensor();
  }
  bool requires_grad() const { return impl_ && impl_->requires_grad; }
  Var& set_requires_grad(bool flag) {
    RETIKD_CHECK(impl_, "Var: undefined");
    RETIKD_CHECK(!flag || is_floating(impl_->value.dtype()), "requires_grad: only floating tensors can "
                 "require gradients, got ", impl_->value.describe());
    impl_->requires_grad = flag;
    return *this;
  }
  bool is_leaf() const { return !impl_ || !impl_->grad_fn; }
  const std::shared_ptr<Node>& grad_fn() const { return impl_->grad_fn; }
  // The same value, cut from the tape.
  Var detach() const { return Var(value(), false); }

  // Shortcuts to the value.
  const Shape& shape() const { return value().shape(); }
  int64_t dim() const { return value().dim(); }
  int64_t size(int64_t d) const { return value().size(d); }
  int64_t numel() const { return value().numel(); }
  DType dtype() const { return value().dtype(); }
  Device device() const { return value().device(); }
  template <class T = float>
  T item() const {
    return value().item<T>();
  }

  // Backward from a scalar (gradient 1) or from an explicit output gradient of the value's shape.
  void backward() const {
    RETIKD_CHECK(numel() == 1, "backward: called on ", value().describe(),
                 "; a non-scalar output needs an explicit gradient");
    backward(Tensor::ones(shape(), dtype(), device()));
  }
  void backward(const Tensor& grad_output) const;

  const VarImpl* impl() const { return impl_.get(); }
  friend bool same_var(const Var& a, const Var& b) { return a.impl_ == b.impl_; }

 private:
  friend Var make_result(Tensor, const char*, std::vector<Var>, BackwardFn);
  friend struct VarImpl;
  std::shared_ptr<VarImpl> impl_;
};

// Tears a graph down iteratively: the default recursive destruction (Var → Node → input Var → …) would
// overflow the stack on a long chain (an RNN-like loop, or many small ops in a training step).
inline VarImpl::~VarImpl() {
  if (!grad_fn) return;
  std::vector<std::shared_ptr<Node>> pending;
  pending.push_back(std::move(grad_fn));
  while (!pending.empty()) {
    std::shared_ptr<Node> node = std::move(pending.back());
    pending.pop_back();
    if (node.use_count() != 1) continue;  // still referenced elsewhere: not ours to tear down
    for (Var& in : node->inputs) {
      if (in.impl_ && in.impl_.use_count() == 1 && in.impl_->grad_fn)
        pending.push_back(std::move(in.impl_->grad_fn));
    }
  }  // each node dies here with inputs that no longer own a grad_fn: no recursion
}

// Wraps an op's output: records a node when grad mode is on and some input requires a gradient.
inline Var make_result(Tensor value, const char* op, std::vector<Var> inputs, BackwardFn backward) {
  if (OpObserver* observer = op_observer()) observer->on_op(op, false);
  Var out(std::move(value), false);
  if (!grad_mode_enabled()) return out;
  bool any = false;
  for (const Var& v : inputs) any = any || v.requires_grad();
  if (!any) return out;
  RETIKD_CHECK(is_floating(out.dtype()), op, ": produced a non-floating output ", out.value().describe(),
               " from inputs that require gradients (register it without inputs)");
  auto node = std::make_shared<Node>();
  node->op = op;
  node->inputs = std::move(inputs);
  node->backward = std::move(backward);
  out.impl_->grad_fn = std::move(node);
  out.impl_->requires_grad = true;
  return out;
}

inline void Var::backward(const Tensor& grad_output) const {
  RETIKD_CHECK(requires_grad(), "backward: the output does not require a gradient (no input requires one, "
               "or it was computed under NoGradGuard)");
  RETIKD_CHECK(grad_output.shape() == shape(), "backward: gradient ", grad_output.describe(),
               " does not match output ", value().describe());
  // A copy: a hook may install or remove hooks while it runs.
  const std::vector<BackwardHook*> hooks = backward_hooks();
  auto finish_leaf = [&hooks](VarImpl* leaf, const Tensor& g) {
    for (BackwardHook* h : hooks)
      if (h->on_leaf_gradient(leaf, g)) return;
    accumulate_grad(leaf->grad, g, "backward");
  };
  if (is_leaf()) {
    for (BackwardHook* h : hooks) h->on_backward_begin({impl_.get()});
    finish_leaf(impl_.get(), grad_output);
    for (BackwardHook* h : hooks) h->on_backward_end();
    return;
  }
  // Reverse topological order by iterative depth-first search (deep networks would overflow recursion).
  std::vector<VarImpl*> order;
  std::unordered_set<VarImpl*> visited;
  std::vector<std::pair<VarImpl*, std::size_t>> stack{{impl_.get(), 0}};
  visited.insert(impl_.get());
  while (!stack.empty()) {
    auto& top = stack.back();
    VarImpl* v = top.first;
    if (v->grad_fn && top.second < v->grad_fn->inputs.size()) {
      VarImpl* child = v->grad_fn->inputs[top.second++].impl_.get();
      if (child && child->requires_grad && !visited.count(child)) {
        visited.insert(child);
        stack.push_back({child, 0});
      }
      continue;
    }
    order.push_back(v);
    stack.pop_back();
  }
  if (!hooks.empty()) {
    std::vector<const VarImpl*> leaves;
    for (auto it = order.rbegin(); it != order.rend(); ++it)
      if (!(*it)->grad_fn) leaves.push_back(*it);
    for (BackwardHook* h : hooks) h->on_backward_begin(leaves);
  }
  std::unordered_map<VarImpl*, Tensor> grads;
  grads[impl_.get()] = grad_output;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    VarImpl* v = *it;
    auto found = grads.find(v);
    if (found == grads.end()) continue;  // no path carried a gradient here
    Tensor g = std::move(found->second);
    grads.erase(found);
    if (!v->grad_fn) {
      finish_leaf(v, g);
      continue;
    }
    Node& node = *v->grad_fn;
    RETIKD_CHECK(static_cast<bool>(node.backward), "backward reached '", node.op,
                 "', which has no backward (wrap it in NoGradGuard or detach its inputs)");
    std::vector<Tensor> input_grads = node.backward(g);
    if (OpObserver* observer = op_observer()) observer->on_op(node.op.c_str(), true);
    RETIKD_CHECK(input_grads.size() == node.inputs.size(), node.op, " backward: returned ",
                 input_grads.size(), " gradients for ", node.inputs.size(), " inputs");
    for (std::size_t i = 0; i < input_grads.size(); ++i) {
      VarImpl* in = node.inputs[i].impl_.get();
      if (!in || !in->requires_grad || !input_grads[i].defined()) continue;
      RETIKD_CHECK(input_grads[i].shape() == in->value.shape(), node.op, " backward: gradient ",
                   input_grads[i].describe(), " for input ", i, " of shape ", shape_str(in->value.shape()));
      accumulate_grad(grads[in], input_grads[i], node.op.c_str());
    }
  }
  for (BackwardHook* h : hooks) h->on_backward_end();
}

}  // namespace retikd
