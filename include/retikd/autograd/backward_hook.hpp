// retikd/autograd/backward_hook.hpp — hooks that see each backward pass's leaf gradients the moment they are
// final, before they are added to the leaves' .grad().
//
// Why: data parallelism (dist/data_parallel.hpp) averages gradients across processes in buckets and wants to
// start a bucket's all-reduce while the backward pass is still computing the earlier layers' gradients. The
// tape walks nodes in reverse topological order, so a leaf is reached only after every op that consumed it:
// at that point its gradient for this pass is complete and can be handed over.
//
// A hook may take a leaf's gradient (on_leaf_gradient returns true); it must then add the gradient to the
// leaf itself, at the latest in on_backward_end (e.g. after averaging it across processes). Hooks that take
// nothing leave the tape's behaviour unchanged. With no hook installed Var::backward pays one empty-vector
// test. Not thread-safe by design (like op_observer.hpp): install hooks on the thread that runs backward.
#pragma once

#include <algorithm>
#include <vector>

namespace retikd {

struct VarImpl;
class Tensor;

struct BackwardHook {
  virtual ~BackwardHook() = default;
  // Before the walk: every leaf that requires a gradient and is reachable from the output, in the order
  // the walk will reach them (a leaf may still receive no gradient, when no path carries one).
  virtual void on_backward_begin(const std::vector<const VarImpl*>& leaves) = 0;
  // The leaf's gradient of this pass is complete. true: the hook took it (and will accumulate it).
  virtual bool on_leaf_gradient(VarImpl* leaf, const Tensor& grad) = 0;
  // After the walk finished normally (not called when an op's backward threw).
  virtual void on_backward_end() = 0;
};

inline std::vector<BackwardHook*>& backward_hooks() {
  static std::vector<BackwardHook*> hooks;
  return hooks;
}
inline void add_backward_hook(BackwardHook* hook) {
  auto& hooks = backward_hooks();
  if (std::find(hooks.begin(), hooks.end(), hook) == hooks.end()) hooks.push_back(hook);
}
inline void remove_backward_hook(BackwardHook* hook) {
  auto& hooks = backward_hooks();
  hooks.erase(std::remove(hooks.begin(), hooks.end(), hook), hooks.end());
}

}  // namespace retikd
