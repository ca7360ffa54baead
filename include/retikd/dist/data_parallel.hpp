// retikd/dist/data_parallel.hpp — data-parallel training on top of a ProcessGroup: every rank holds a replica
// of the model, runs forward and backward on its own shard of the global batch, and the gradients are
// averaged across ranks before the optimizer step, so every replica takes the same step.
//
//   dist::GradientReducer ddp(dist::world(), model.trainable_parameters());  // rank 0's weights to all ranks
//   ... loss.backward();   // returns with every parameter's .grad() averaged over the ranks
//   opt.step();
//
// How (GradientReducer):
//  - buckets: the parameters in reverse registration order (backward produces the last layers' gradients
//    first), cut into buckets of about `bucket_bytes`; one flat buffer per bucket;
//  - overlap: an autograd BackwardHook receives each parameter's gradient the moment the tape has finished it;
//    when a bucket is complete its all-reduce starts at once, while backward computes earlier layers;
//  - fixed order: buckets start in bucket order on every rank (a complete bucket waits for the ones before it)
//    and each all-reduce sums in rank order (process_group.hpp), so the result does not depend on timing;
//  - the mean: gradients are summed and multiplied by 1/P (exact for P a power of two). A rank with a
//    different share of the global batch states it with set_local_weight(n_r / N);
//  - unused parameters: each bucket carries one flag per parameter (1 where this rank produced a gradient);
//    a parameter no rank produced a gradient for keeps .grad() untouched, as in a single process;
//  - a backward pass through none of the reducer's parameters (a discriminator's own update) runs no
//    collective at all; which passes do must be the same on every rank, as the order of collectives must.
//  - only this pass's contribution is averaged and then added to .grad(), so gradients accumulated before
//    the pass are not averaged twice.
//
// Also: broadcast_module (rank 0's parameters and buffers to all), average_buffers (batch-norm running
// statistics, which per-rank batch norm updates from each rank's own batch: their mean over ranks is what a
// running average of the ranks' batch statistics gives, computed in float64 so identical replicas stay
// identical), local_batch_size, and RowCollector (per-rank evaluation rows assembled in the data set's order).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "retikd/autograd/accumulate.hpp"
#include "retikd/autograd/backward_hook.hpp"
#include "retikd/autograd/var.hpp"
#include "retikd/core/error.hpp"
#include "retikd/dist/process_group.hpp"
#include "retikd/nn/module.hpp"
#include "retikd/ops/elementwise.hpp"

namespace retikd {
namespace dist {

// rank 0's parameters and buffers on every rank (same architecture everywhere).
inline void broadcast_module(ProcessGroup& group, nn::Module& module, int root = 0) {
  if (group.size() == 1) return;
  for (auto& nt : module.named_parameters()) {
    Tensor& v = nt.second.mutable_value();
    Tensor c = v.contiguous();
    group.broadcast(c, root, "parameter " + nt.first);
    if (!c.shares_storage_with(v)) v.copy_(c);
  }
  for (auto& nb : module.named_buffers()) {
    Tensor c = nb.second->contiguous();
    group.broadcast(c, root, "buffer " + nb.first);
    if (!c.shares_storage_with(*nb.second)) nb.second->copy_(c);
  }
}

// Floating buffers (batch-norm running statistics) := their mean over the ranks, in float64; integer buffers
// (batch counters) := rank 0's. Identical replicas come out unchanged, bit for bit.
inline void average_buffers(ProcessGroup& group, nn::Module& module) {
  if (group.size() == 1) return;
  std::vector<Tensor*> floating;
  std::vector<double> values;
  for (auto& nb : module.named_buffers()) {
    Tensor& b = *nb.second;
    if (!is_floating(b.dtype())) {
      Tensor c = b.contiguous();
      group.broadcast(c, 0, "buffer " + nb.first);
      if (!c.shares_storage_with(b)) b.copy_(c);
      continue;
    }
    floating.push_back(&b);
    const std::vector<double> v = b.to_vector<double>();
    values.insert(values.end(), v.begin(), v.end());
  }
  if (floating.empty()) return;
  values = group.all_reduce(std::move(values), "batch-norm statistics");
  const double scale = 1.0 / static_cast<double>(group.size());
  std::size_t at = 0;
  for (Tensor* b : floating) {
    const std::size_t n = static_cast<std::size_t>(b->numel());
    std::vector<double> mean(values.begin() + static_cast<std::ptrdiff_t>(at),
                             values.begin() + static_cast<std::ptrdiff_t>(at + n));
    for (double& m : mean) m *= scale;
    b->copy_(Tensor::from_vector(mean, b->shape()).to(b->dtype()).to(b->device()));
    at += n;
  }
}

// Each rank's share of a global batch (the global batch must divide evenly: every rank then averages the same
// number of samples and the mean of the ranks' means is the global mean).
inline int64_t local_batch_size(int64_t global_batch, const ProcessGroup& group) {
  const int64_t p = group.size();
  RETIKD_CHECK(global_batch % p == 0, "data parallel: the batch ", global_batch, " does not divide among ", p,
               " ranks; choose a batch that is a multiple of the number of processes");
  return global_batch / p;
}

// Timing of the last backward pass that went through a GradientReducer (its bucket schedule).
struct ReducerPassStats {
  double backward_seconds = 0;  // on_backward_begin → on_backward_end: the walk the all-reduces overlap
  double wait_seconds = 0;      // in on_backward_end, waiting for the all-reduces (the exposed part)
  std::vector<double> bucket_bytes;
  std::vector<double> bucket_start_seconds;  // when each bucket's all-reduce started, from backward begin
  int buckets_started_in_backward = 0;       // started before the walk ended
};

class GradientReducer : public BackwardHook {
 public:
  struct Options {
    std::size_t bucket_bytes = 4u << 20;
    bool broadcast_parameters = true;  // rank 0's values to every rank now
    std::string name = "gradients";
    bool even_alone = false;  // reduce in a group of one too (a one-GPU check of the NCCL path)
  };

  GradientReducer(ProcessGroup& group, std::vector<Var> params)
      : GradientReducer(group, std::move(params), Options()) {}
  GradientReducer(ProcessGroup& group, std::vector<Var> params, Options o) : opt_(std::move(o)) {
    world_size_ = group.size();
    for (Var& p : params) {
      RETIKD_CHECK(p.defined(), "GradientReducer: undefined parameter");
      if (index_.count(p.impl())) continue;  // the same parameter listed twice
      index_[p.impl()] = params_.size();
      params_.push_back(p);
    }
    if (world_size_ == 1 && !opt_.even_alone) return;  // nothing to average: no hook, no cost
    group_ = group.duplicate();
    if (opt_.broadcast_parameters)
      for (std::size_t i = 0; i < params_.size(); ++i) {
        Tensor& v = params_[i].mutable_value();
        Tensor c = v.contiguous();
        group_->broadcast(c, 0, opt_.name + ": parameter " + std::to_string(i) + " from rank 0");
        if (!c.shares_storage_with(v)) v.copy_(c);
      }
    build_buckets();
    add_backward_hook(this);
  }
  ~GradientReducer() override { remove_backward_hook(this); }
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // This rank's share n_r / N of the global batch (default 1/P: equal shards). The averaged gradient is then
  // Σ_r (n_r / N)·g_r, the gradient of the global mean loss when each g_r is of a local mean loss.
  void set_local_weight(double w) {
    RETIKD_CHECK(w >= 0, "GradientReducer: the local weight must be non-negative, got ", w);
    pre_scale_ = w * static_cast<double>(world_size_);
  }
  int world_size() const { return world_size_; }
  std::size_t num_buckets() const { return buckets_.size(); }
  std::size_t num_parameters() const { return params_.size(); }
  const ReducerPassStats& last_pass() const { return stats_; }

  // ---- BackwardHook -----------------------------------------------------------------------------------------
  void on_backward_begin(const std::vector<const VarImpl*>& leaves) override {
    active_ = false;
    for (const VarImpl* l : leaves)
      if (index_.count(l)) {
        active_ = true;
        break;
      }
    if (!active_) return;
    t0_ = Clock::now();
    stats_ = ReducerPassStats();
    pending_.assign(params_.size(), Tensor());
    ready_.assign(params_.size(), true);
    for (const VarImpl* l : leaves) {
      auto it = index_.find(l);
      if (it != index_.end()) ready_[it->second] = false;  // a gradient may still come
    }
    ready_count_.assign(buckets_.size(), 0);
    for (std::size_t b = 0; b < buckets_.size(); ++b)
      for (std::size_t i : buckets_[b].params) ready_count_[b] += ready_[i] ? 1 : 0;
    works_.clear();
    works_.resize(buckets_.size());
    next_launch_ = 0;
    start_ready_buckets();
  }

  bool on_leaf_gradient(VarImpl* leaf, const Tensor& grad) override {
    if (!active_) return false;
    auto it = index_.find(leaf);
    if (it == index_.end()) return false;
    const std::size_t i = it->second;
    if (ready_[i]) {  // not expected from the tape (a leaf is finished once), kept correct anyway
      accumulate_grad(pending_[i], grad, "GradientReducer");
      return true;
    }
    pending_[i] = grad;
    ready_[i] = true;
    ++ready_count_[param_bucket_[i]];
    start_ready_buckets();
    progress();
    return true;
  }

  void on_backward_end() override {
    if (!active_) return;
    active_ = false;
    stats_.backward_seconds = seconds_since(t0_);
    stats_.buckets_started_in_backward = static_cast<int>(next_launch_);
    for (std::size_t i = 0; i < params_.size(); ++i)
      if (!ready_[i]) {  // reachable but no path carried a gradient: this rank contributes none
        ready_[i] = true;
        ++ready_count_[param_bucket_[i]];
      }
    start_ready_buckets();
    const auto w0 = Clock::now();
    for (std::size_t b = 0; b < buckets_.size(); ++b) {
      works_[b]->wait();
      unpack(b);
    }
    works_.clear();
    stats_.wait_seconds = seconds_since(w0);
  }

 private:
  using Clock = std::chrono::steady_clock;
  struct Bucket {
    std::vector<std::size_t> params;
    std::vector<int64_t> offsets;
    int64_t numel = 0;  // gradient elements; the flags follow them in the buffer
    DType dtype = DType::float32;
    Device device = Device::cpu();
    Tensor buffer;
  };

  static double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  }

  void build_buckets() {
    param_bucket_.assign(params_.size(), 0);
    std::size_t bytes = 0;
    for (std::size_t k = params_.size(); k-- > 0;) {
      const Tensor& v = params_[k].value();
      const bool fresh = buckets_.empty() || bytes >= opt_.bucket_bytes || buckets_.back().dtype != v.dtype() ||
                         !(buckets_.back().device == v.device());
      if (fresh) {
        buckets_.emplace_back();
        buckets_.back().dtype = v.dtype();
        buckets_.back().device = v.device();
        bytes = 0;
      }
      Bucket& b = buckets_.back();
      b.params.push_back(k);
      b.offsets.push_back(b.numel);
      b.numel += v.numel();
      bytes += static_cast<std::size_t>(v.numel()) * v.element_size();
      param_bucket_[k] = buckets_.size() - 1;
    }
  }

  // Starts every bucket whose gradients are all in, in bucket order.
  void start_ready_buckets() {
    while (next_launch_ < buckets_.size() && ready_count_[next_launch_] == buckets_[next_launch_].params.size())
      launch(next_launch_++);
  }

  void launch(std::size_t bi) {
    Bucket& b = buckets_[bi];
    const int64_t flags = static_cast<int64_t>(b.params.size());
    if (!b.buffer.defined()) b.buffer = Tensor::empty({b.numel + flags}, b.dtype, b.device);
    // One fill for the flags (every parameter usually has a gradient), then the exceptions: on a GPU each
    // operation here is a launch on the host's critical path.
    b.buffer.narrow(0, b.numel, flags).fill_(1.0);
    for (std::size_t j = 0; j < b.params.size(); ++j) {
      const std::size_t i = b.params[j];
      const int64_t n = params_[i].numel();
      Tensor region = b.buffer.narrow(0, b.offsets[j], n);
      if (pending_[i].defined()) {
        const Tensor g = pre_scale_ == 1.0 ? pending_[i] : ops::impl::mul_scalar(pending_[i], pre_scale_);
        region.copy_(g.contiguous().reshape({n}));
      } else {
        region.fill_(0.0);
        b.buffer.narrow(0, b.numel + static_cast<int64_t>(j), 1).fill_(0.0);
      }
      pending_[i] = Tensor();
    }
    stats_.bucket_bytes.push_back(static_cast<double>(b.numel) * static_cast<double>(dtype_size(b.dtype)));
    stats_.bucket_start_seconds.push_back(seconds_since(t0_));
    works_[bi] = group_->all_reduce_async(
        b.buffer, opt_.name + " bucket " + std::to_string(bi + 1) + "/" + std::to_string(buckets_.size()) + " (" +
                      byte_text(static_cast<double>(b.numel) * static_cast<double>(dtype_size(b.dtype))) + ")");
  }

  // Lets the oldest all-reduce in flight advance (MPI moves data only inside MPI calls).
  void progress() {
    for (std::size_t b = 0; b < next_launch_; ++b)
      if (works_[b] && !works_[b]->test()) return;
  }

  void unpack(std::size_t bi) {
    Bucket& b = buckets_[bi];
    const int64_t flags = static_cast<int64_t>(b.params.size());
    const std::vector<double> counts = b.buffer.narrow(0, b.numel, flags).to_vector<double>();
    // The whole bucket scaled in one pass into a fresh tensor; each gradient is a view of it (the bucket's
    // buffer itself is reused by the next pass).
    const Tensor mean = ops::impl::mul_scalar(b.buffer.narrow(0, 0, b.numel), 1.0 / static_cast<double>(world_size_));
    for (std::size_t j = 0; j < b.params.size(); ++j) {
      if (counts[j] == 0.0) continue;  // no rank produced a gradient: .grad() stays as it was
      Var& p = params_[b.params[j]];
      VarImpl* impl = const_cast<VarImpl*>(p.impl());
      accumulate_grad(impl->grad, mean.narrow(0, b.offsets[j], p.numel()).reshape(p.shape()), "GradientReducer");
    }
  }

  Options opt_;
  int world_size_ = 1;
  std::shared_ptr<ProcessGroup> group_;
  std::vector<Var> params_;
  std::unordered_map<const VarImpl*, std::size_t> index_;
  std::vector<std::size_t> param_bucket_;
  std::vector<Bucket> buckets_;
  double pre_scale_ = 1.0;
  // the pass in progress
  bool active_ = false;
  Clock::time_point t0_;
  std::vector<Tensor> pending_;
  std::vector<bool> ready_;
  std::vector<std::size_t> ready_count_;
  std::vector<std::unique_ptr<Work>> works_;
  std::size_t next_launch_ = 0;
  ReducerPassStats stats_;
};

// Rows (e.g. logits) that the ranks computed for disjoint parts of an ordered set (an evaluation split),
// assembled in the set's order on every rank: each rank writes its rows at their positions into a zero
// buffer and one all-reduce adds the buffers (x + 0 = x exactly, so every value arrives unchanged).
class RowCollector {
 public:
  RowCollector(int64_t rows, int64_t cols)
      : rows_(rows), cols_(cols), data_(static_cast<std::size_t>(std::max<int64_t>(0, rows * cols)), 0.0) {
    RETIKD_CHECK(rows >= 0 && cols > 0, "RowCollector: bad size ", rows, " x ", cols);
  }
  // Row `position` := values (cols of them).
  void put(int64_t position, const double* values) {
    RETIKD_CHECK(position >= 0 && position < rows_, "RowCollector: position ", position, " outside ", rows_, " rows");
    std::copy(values, values + cols_, data_.begin() + static_cast<std::ptrdiff_t>(position * cols_));
    ++filled_;
  }
  // All rows on every rank; checks that the ranks filled each row exactly once between them.
  std::vector<double> gather(ProcessGroup& group, const std::string& what) {
    const double filled = group.all_reduce(static_cast<double>(filled_), what + " (row count)");
    RETIKD_CHECK(filled == static_cast<double>(rows_), what, ": the ranks computed ", filled, " rows of ", rows_);
    return group.all_reduce(std::move(data_), what);
  }

 private:
  int64_t rows_, cols_;
  std::vector<double> data_;
  int64_t filled_ = 0;
};

}  // namespace dist
}  // namespace retikd
