// retikd/autograd/op_observer.hpp — a hook for profilers: called after every differentiable op has computed its
// forward value (in make_result, with or without grad mode) and after every node's backward in Var::backward.
//
// Why a hook rather than timing code in the ops: one pointer test per op costs nothing when no profiler is set,
// and a profiler (autograd/gpu_op_profiler.hpp records a CUDA event per call) then sees the whole sequence of a
// training step by op name. Not thread-safe by design: set it around single-threaded code being profiled.
#pragma once

namespace retikd {

struct OpObserver {
  virtual ~OpObserver() = default;
  // op: the name the op gave make_result ("conv2d", "matmul", …); backward: true after its backward ran.
  virtual void on_op(const char* op, bool backward) = 0;
};

inline OpObserver*& op_observer_slot() {
  static OpObserver* observer = nullptr;
  return observer;
}
inline OpObserver* op_observer() { return op_observer_slot(); }
// nullptr removes the observer.
inline void set_op_observer(OpObserver* observer) { op_observer_slot() = observer; }

}  // namespace retikd
