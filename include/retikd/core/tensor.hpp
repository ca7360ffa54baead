// retikd/core/tensor.hpp — the n-dimensional array every other part of retikd is built on.
//
// A Tensor is a view: shape, strides (in elements), an offset and a dtype over a reference-counted Storage
// that lives on the host or on a CUDA device. Views (view, reshape, permute, transpose, slice, narrow,
// squeeze, unsqueeze, expand) share storage; contiguous(), clone(), to() copy. The tensor knows its device
// from day one, so every op can dispatch to a GPU without a second tensor type.
//
// Tensors carry no autograd state: the tape lives in retikd/autograd (Var wraps a Tensor).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <iomanip>
#include <limits>
#include <memory>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "retikd/core/device.hpp"
#include "retikd/core/dtype.hpp"
#include "retikd/core/error.hpp"
#include "retikd/core/half.hpp"
#include "retikd/core/shape.hpp"
#include "retikd/core/storage.hpp"
#ifdef RETIKD_WITH_CUDA
#include "retikd/cuda/elementwise.hpp"
#endif

namespace retikd {

// Converts between element types; float16 goes through float.
template <class To, class From>
inline To convert_scalar(From v) {
  if constexpr (std::is_same<To, From>::value) {
    return v;
  } else if constexpr (std::is_same<To, Half>::value) {
    return Half(static_cast<float>(v));
  } else if constexpr (std::is_same<From, Half>::value) {
    return static_cast<To>(static_cast<float>(v));
  } else {
    return static_cast<To>(v);
  }
}

// Calls fn(off[0], ..., off[K-1]) for every element of `shape` in row-major order, where off[k] is the
// element offset of operand k given its strides and base offset. The innermost dimension runs as a plain
// loop, so contiguous operands vectorise.
template <std::size_t K, class Fn>
void strided_loop(const Shape& shape, const std::array<const int64_t*, K>& strides,
                  const std::array<int64_t, K>& base, Fn&& fn) {
  const int64_t ndim = static_cast<int64_t>(shape.size());
  if (shape_numel(shape) == 0) return;
  if (ndim == 0) {
    std::apply([&](auto... o) { fn(o...); }, base);
    return;
  }
  const int64_t inner = shape[ndim - 1];
  std::array<int64_t, K> inner_stride;
  for (std::size_t k = 0; k < K; ++k) inner_stride[k] = strides[k][ndim - 1];
  std::vector<int64_t> idx(static_cast<std::size_t>(ndim), 0);
  std::array<int64_t, K> off = base;
  for (;;) {
    std::array<int64_t, K> o = off;
    for (int64_t i = 0; i < inner; ++i) {
      std::apply([&](auto... x) { fn(x...); }, o);
      for (std::size_t k = 0; k < K; ++k) o[k] += inner_stride[k];
    }
    int64_t d = ndim - 2;
    for (; d >= 0; --d) {
      if (++idx[d] < shape[d]) {
        for (std::size_t k = 0; k < K; ++k) off[k] += strides[k][d];
        break;
      }
      for (std::size_t k = 0; k < K; ++k) off[k] -= strides[k][d] * (shape[d] - 1);
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}

class Tensor {
 public:
  Tensor() = default;

  // ---- construction ------------------------------------------------------------------------------------
  static Tensor empty(const Shape& shape, DType dtype = DType::float32, Device device = Device::cpu()) {
    for (int64_t d : shape) RETIKD_CHECK(d >= 0, "empty: negative size in shape ", shape_str(shape));
    Tensor t;
    t.storage_ = std::make_shared<Storage>(shape_numel(shape) * dtype_size(dtype), device);
    t.shape_ = shape;
    t.strides_ = contiguous_strides(shape);
    t.dtype_ = dtype;
    return t;
  }
  static Tensor full(const Shape& shape, double value, DType dtype = DType::float32,
                     Device device = Device::cpu()) {
    Tensor t = empty(shape, dtype, device);
    t.fill_(value);
    return t;
  }
  static Tensor zeros(const Shape& shape, DType dtype = DType::float32, Device device = Device::cpu()) {
    return full(shape, 0.0, dtype, device);
  }
  static Tensor ones(const Shape& shape, DType dtype = DType::float32, Device device = Device::cpu()) {
    return full(shape, 1.0, dtype, device);
  }
  static Tensor scalar(double value, DType dtype = DType::float32, Device device = Device::cpu()) {
    return full({}, value, dtype, device);
  }
  // start, start+step, ... < end
  static Tensor arange(double start, double end, double step = 1.0, DType dtype = DType::float32,
                       Device device = Device::cpu()) {
    RETIKD_CHECK(step != 0.0, "arange: step must be non-zero");
    int64_t n = static_cast<int64_t>(std::ceil((end - start) / step));
    if (n < 0) n = 0;
    Tensor t = empty({n}, dtype);
    dispatch_all(dtype, "arange", [&](auto tag) {
      using T = typename decltype(tag)::type;
      T* p = t.data<T>();
      for (int64_t i = 0; i < n; ++i) p[i] = convert_scalar<T>(start + static_cast<double>(i) * step);
    });
    return t.to(device);
  }
  static Tensor arange(int64_t n, DType dtype = DType::int64) { return arange(0.0, double(n), 1.0, dtype); }
  // Copies `values` (row-major) into a new tensor of `shape` and dtype_of<T>.
  template <class T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device = Device::cpu()) {
    RETIKD_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "from_vector: ", values.size(),
                 " values do not fill shape ", shape_str(shape));
    Tensor t = empty(shape, dtype_of<T>::value);
    if (!values.empty()) std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(T));
    return t.to(device);
  }

  // ---- properties ----------------------------------------------------------------------------------------
  bool defined() const { return static_cast<bool>(storage_); }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int64_t offset() const { return offset_; }
  int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
  int64_t size(int64_t d) const { return shape_[wrap_dim(d, dim(), "size")]; }
  int64_t stride(int64_t d) const { return strides_[wrap_dim(d, dim(), "stride")]; }
  int64_t numel() const { return shape_numel(shape_); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device::cpu(); }
  bool is_cpu() const { return device().is_cpu(); }
  bool is_cuda() const { return device().is_cuda(); }
  std::size_t element_size() const { return dtype_size(dtype_); }
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  bool shares_storage_with(const Tensor& o) const { return storage_ && storage_ == o.storage_; }
  std::string describe() const {
    return str("Tensor", shape_str(shape_), " ", dtype_name(dtype_), " on ", device().to_string());
  }

  bool is_contiguous() const {
    if (numel() == 0) return true;  // nothing to lay out
    int64_t expected = 1;
    for (int64_t d = dim() - 1; d >= 0; --d) {
      if (shape_[d] == 1) continue;
      if (strides_[d] != expected) return false;
      expected *= shape_[d];
    }
    return true;
  }

  // Pointer to the first element (offset applied). Host tensors only for typed access.
  void* raw_data() const {
    require_defined("raw_data");
    return static_cast<char*>(storage_->data()) + offset_ * static_cast<int64_t>(element_size());
  }
  template <class T>
  T* data() const {
    require_defined("data");
    RETIKD_CHECK(dtype_of<T>::value == dtype_, "data: tensor is ", dtype_name(dtype_), ", asked for ",
                 dtype_name(dtype_of<T>::value));
    RETIKD_CHECK(is_cpu(), "data: typed host access to a tensor on ", device().to_string(),
                 " (use .to(Device::cpu()) first)");
    return static_cast<T*>(raw_data());
  }

  // ---- element access (host copies; any device) ------------------------------------------------------------
  template <class T>
  std::vector<T> to_vector() const {
    Tensor c = to(Device::cpu()).to(dtype_of<T>::value).contiguous();
    const T* p = c.data<T>();
    return std::vector<T>(p, p + c.numel());
  }
  template <class T = float>
  T item() const {
    RETIKD_CHECK(numel() == 1, "item: tensor of shape ", shape_str(shape_), " has ", numel(), " elements");
    return to_vector<T>()[0];
  }
  // Reads one element of a host tensor as double: t.at({1, 2}).
  double at(std::initializer_list<int64_t> index) const {
    RETIKD_CHECK(static_cast<int64_t>(index.size()) == dim(), "at: ", index.size(), " indices for shape ",
                 shape_str(shape_));
    RETIKD_CHECK(is_cpu(), "at: tensor is on ", device().to_string());
    int64_t off = offset_, d = 0;
    for (int64_t i : index) {
      RETIKD_CHECK(i >= 0 && i < shape_[d], "at: index ", i, " out of range for dimension ", d, " of ",
                   shape_str(shape_));
      off += i * strides_[d++];
    }
    return dispatch_all(dtype_, "at", [&](auto tag) {
      using T = typename decltype(tag)::type;
      return convert_scalar<double>(static_cast<const T*>(storage_->data())[off]);
    });
  }

  // ---- views ---------------------------------------------------------------------------------------------
  // A view with a new shape; one size may be -1. Fails (naming the shapes) when the strides do not allow it.
  Tensor view(Shape new_shape) const {
    require_defined("view");
    new_shape = infer_shape(new_shape, "view");
    Shape new_strides;
    RETIKD_CHECK(compute_view_strides(new_shape, new_strides), "view: cannot view ", describe(), " as ",
                 shape_str(new_shape), " without a copy (use reshape)");
    Tensor t = *this;
    t.shape_ = new_shape;
    t.strides_ = new_strides;
    return t;
  }
  // A view when the strides allow it, else a contiguous copy.
  Tensor reshape(Shape new_shape) const {
    require_defined("reshape");
    new_shape = infer_shape(new_shape, "reshape");
    Shape new_strides;
    if (compute_view_strides(new_shape, new_strides)) {
      Tensor t = *this;
      t.shape_ = new_shape;
      t.strides_ = new_strides;
      return t;
    }
    return contiguous().view(new_shape);
  }
  Tensor flatten(int64_t start = 0, int64_t end = -1) const {
    if (dim() == 0) return reshape({1});
    start = wrap_dim(start, dim(), "flatten");
    end = wrap_dim(end, dim(), "flatten");
    RETIKD_CHECK(start <= end, "flatten: start ", start, " after end ", end);
    Shape s(shape_.begin(), shape_.begin() + start);
    int64_t m = 1;
    for (int64_t d = start; d <= end; ++d) m *= shape_[d];
    s.push_back(m);
    s.insert(s.end(), shape_.begin() + end + 1, shape_.end());
    return reshape(s);
  }
  Tensor permute(const std::vector<int64_t>& dims) const {
    require_defined("permute");
    RETIKD_CHECK(static_cast<int64_t>(dims.size()) == dim(), "permute: ", dims.size(), " dims for ",
                 describe());
    std::vector<bool> seen(dims.size(), false);
    Tensor t = *this;
    for (std::size_t i = 0; i < dims.size(); ++i) {
      int64_t d = wrap_dim(dims[i], dim(), "permute");
      RETIKD_CHECK(!seen[d], "permute: dimension ", d, " repeated");
      seen[d] = true;
      t.shape_[i] = shape_[d];
      t.strides_[i] = strides_[d];
    }
    return t;
  }
  Tensor transpose(int64_t d0, int64_t d1) const {
    d0 = wrap_dim(d0, dim(), "transpose");
    d1 = wrap_dim(d1, dim(), "transpose");
    Tensor t = *this;
    std::swap(t.shape_[d0], t.shape_[d1]);
    std::swap(t.strides_[d0], t.strides_[d1]);
    return t;
  }
  // Elements start, start+step, ... < end along `d` (Python slicing; negative start/end count from the end).
  Tensor slice(int64_t d, int64_t start, int64_t end, int64_t step = 1) const {
    d = wrap_dim(d, dim(), "slice");
    RETIKD_CHECK(step > 0, "slice: step must be positive, got ", step);
    const int64_t n = shape_[d];
    if (start < 0) start += n;
    if (end < 0) end += n;
    start = std::min(std::max<int64_t>(start, 0), n);
    end = std::min(std::max<int64_t>(end, start), n);
    Tensor t = *this;
    t.offset_ += start * strides_[d];
    t.shape_[d] = (end - start + step - 1) / step;
    t.strides_[d] *= step;
    return t;
  }
  Tensor narrow(int64_t d, int64_t start, int64_t length) const {
    d = wrap_dim(d, dim(), "narrow");
    RETIKD_CHECK(start >= 0 && length >= 0 && start + length <= shape_[d], "narrow: [", start, ", ",
                 start + length, ") out of range for dimension ", d, " of ", describe());
    return slice(d, start, start + length);
  }
  // Removes dimension d (which must have size 1), or every size-1 dimension.
  Tensor squeeze(int64_t d) const {
    d = wrap_dim(d, dim(), "squeeze");
    RETIKD_CHECK(shape_[d] == 1, "squeeze: dimension ", d, " of ", describe(), " has size ", shape_[d]);
    Tensor t = *this;
    t.shape_.erase(t.shape_.begin() + d);
    t.strides_.erase(t.strides_.begin() + d);
    return t;
  }
  Tensor squeeze() const {
    Tensor t = *this;
    t.shape_.clear();
    t.strides_.clear();
    for (int64_t d = 0; d < dim(); ++d)
      if (shape_[d] != 1) {
        t.shape_.push_back(shape_[d]);
        t.strides_.push_back(strides_[d]);
      }
    return t;
  }
  Tensor unsqueeze(int64_t d) const {
    d = wrap_dim(d, dim() + 1, "unsqueeze");
    Tensor t = *this;
    int64_t st = d < dim() ? shape_[d] * strides_[d] : 1;
    t.shape_.insert(t.shape_.begin() + d, 1);
    t.strides_.insert(t.strides_.begin() + d, st);
    return t;
  }
  // Broadcasts size-1 dimensions (stride 0) and prepends new ones; -1 keeps a size.
  Tensor expand(const Shape& target) const {
    require_defined("expand");
    RETIKD_CHECK(static_cast<int64_t>(target.size()) >= dim(), "expand: cannot expand ", describe(), " to ",
                 shape_str(target));
    const int64_t lead = static_cast<int64_t>(target.size()) - dim();
    Tensor t = *this;
    t.shape_.assign(target.size(), 0);
    t.strides_.assign(target.size(), 0);
    for (int64_t i = 0; i < static_cast<int64_t>(target.size()); ++i) {
      if (i < lead) {
        RETIKD_CHECK(target[i] >= 0, "expand: size -1 not allowed in new leading dimension");
        t.shape_[i] = target[i];
        continue;
      }
      int64_t src = shape_[i - lead];
      int64_t want = target[i] == -1 ? src : target[i];
      RETIKD_CHECK(src == want || src == 1, "expand: cannot expand ", describe(), " to ", shape_str(target));
      t.shape_[i] = want;
      t.strides_[i] = src == want ? strides_[i - lead] : 0;
    }
    return t;
  }

  // ---- copies --------------------------------------------------------------------------------------------
  Tensor contiguous() const {
    require_defined("contiguous");
    if (is_contiguous()) return *this;
    return clone();
  }
  Tensor clone() const {
    require_defined("clone");
    Tensor out = empty(shape_, dtype_, device());
    out.copy_(*this);
    return out;
  }
  Tensor to(Device device) const {
    require_defined("to");
    if (device == this->device()) return *this;
    Tensor src = contiguous();
    Tensor out = empty(shape_, dtype_, device);
    copy_bytes(out.raw_data(), device, src.raw_data(), src.device(), numel() * element_size());
    return out;
  }
  Tensor to(DType dtype) const {
    require_defined("to");
    if (dtype == dtype_) return *this;
    Tensor out = empty(shape_, dtype, device());
    out.copy_(*this);
    return out;
  }
  // Copies src into this tensor in place (same shape; any dtype; any device; src may be a strided view).
  Tensor& copy_(const Tensor& src) {
    require_defined("copy_");
    src.require_defined("copy_");
    RETIKD_CHECK(src.shape_ == shape_, "copy_: source ", src.describe(), " does not match destination ",
                 describe());
    if (numel() == 0) return *this;
    if (device().is_cpu() && src.device().is_cpu()) {
      copy_host(src);
      return *this;
    }
#ifdef RETIKD_WITH_CUDA
    // Bring src to this device contiguously, cast there, then scatter into this (possibly strided) view.
    Tensor s = src;
    if (s.device() != device()) s = s.contiguous().to(device());
    if (!s.is_contiguous()) s = s.gathered_on_device();
    if (s.dtype_ != dtype_) {
      Tensor c = empty(shape_, dtype_, device());
      cuda::cast(s.raw_data(), static_cast<int>(s.dtype_), c.raw_data(), static_cast<int>(dtype_), numel(),
                 device().index);
      s = c;
    }
    PitchedView rows;
    if (is_contiguous()) {
      copy_bytes(raw_data(), device(), s.raw_data(), device(), numel() * element_size());
    } else if (as_pitched_view(shape_, strides_, &rows)) {
      // A narrow / slice of a contiguous tensor (e.g. the backward of narrow): one 2-D device copy. (Through
      // the host this cost 27 ms of a 121 ms KD step on an H100.)
      const std::size_t es = element_size();
      cuda::copy_2d_device_to_device(raw_data(), static_cast<std::size_t>(rows.pitch) * es, s.raw_data(),
                                     static_cast<std::size_t>(rows.row_elems) * es,
                                     static_cast<std::size_t>(rows.row_elems) * es,
                                     static_cast<std::size_t>(rows.rows), device().index);
    } else {
      // Other strided destinations on the GPU (rare: an in-place write into a transposed view): via the host.
      scatter_from_host(s.to(Device::cpu()));
    }
    return *this;
#else
    fail_no_cuda("copy_");
#endif
  }
  Tensor& fill_(double value) {
    require_defined("fill_");
    if (numel() == 0) return *this;
    if (is_cpu()) {
      dispatch_all(dtype_, "fill_", [&](auto tag) {
        using T = typename decltype(tag)::type;
        const T v = convert_scalar<T>(value);
        T* base = static_cast<T*>(storage_->data());
        if (is_contiguous()) {
          std::fill(base + offset_, base + offset_ + numel(), v);
          return;
        }
        const std::array<const int64_t*, 1> st{strides_.data()};
        strided_loop<1>(shape_, st, {offset_}, [&](int64_t o) { base[o] = v; });
      });
      return *this;
    }
#ifdef RETIKD_WITH_CUDA
    if (is_contiguous()) {
      cuda::fill(raw_data(), static_cast<int>(dtype_), numel(), value, device().index);
    } else {
      Tensor c = full(shape_, value, dtype_, device());
      copy_(c);
    }
    return *this;
#else
    fail_no_cuda("fill_");
#endif
  }

  friend std::ostream& operator<<(std::ostream& os, const Tensor& t) {
    if (!t.defined()) return os << "Tensor(undefined)";
    os << t.describe();
    const int64_t n = t.numel();
    if (n <= 64) {
      std::vector<double> v = t.to_vector<double>();
      os << " [";
      for (int64_t i = 0; i < n; ++i) os << (i ? ", " : "") << std::setprecision(6) << v[i];
      os << ']';
    }
    return os;
  }

 private:
  void require_defined(const char* op) const { RETIKD_CHECK(defined(), op, ": tensor is undefined"); }

  Shape infer_shape(Shape s, const char* op) const {
    int64_t known = 1, infer = -1;
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (s[i] == -1) {
        RETIKD_CHECK(infer < 0, op, ": only one dimension may be -1 in ", shape_str(s));
        infer = static_cast<int64_t>(i);
      } else {
        RETIKD_CHECK(s[i] >= 0, op, ": invalid size in ", shape_str(s));
        known *= s[i];
      }
    }
    if (infer >= 0) {
      RETIKD_CHECK(known > 0 && numel() % known == 0, op, ": cannot infer -1 in ", shape_str(s), " for ",
                   describe());
      s[infer] = numel() / known;
    }
    RETIKD_CHECK(shape_numel(s) == numel(), op, ": shape ", shape_str(s), " is invalid for ", describe(),
                 " (", numel(), " elements)");
    return s;
  }

  // PyTorch's rule: a view is possible when each group of new dimensions maps onto a run of old
  // dimensions that is contiguous in memory.
  bool compute_view_strides(const Shape& new_shape, Shape& out) const {
    out.assign(new_shape.size(), 0);
    if (numel() == 0) {
      out = contiguous_strides(new_shape);
      return true;
    }
    int64_t view_d = static_cast<int64_t>(new_shape.size()) - 1;
    int64_t chunk_base_stride = strides_.empty() ? 1 : strides_.back();
    int64_t tensor_numel = 1, view_numel = 1;
    for (int64_t d = dim() - 1; d >= 0; --d) {
      tensor_numel *= shape_[d];
      if (d == 0 || (shape_[d - 1] != 1 && strides_[d - 1] != tensor_numel * chunk_base_stride)) {
        while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
          out[view_d] = view_numel * chunk_base_stride;
          view_numel *= new_shape[view_d];
          --view_d;
        }
        if (view_numel != tensor_numel) return false;
        if (d > 0) {
          chunk_base_stride = strides_[d - 1];
          tensor_numel = 1;
          view_numel = 1;
        }
      }
    }
    while (view_d >= 0) out[view_d--] = 1;  // only size-1 dims can remain
    return true;
  }

  void copy_host(const Tensor& src) {
    dispatch_all(dtype_, "copy_", [&](auto dst_tag) {
      using D = typename decltype(dst_tag)::type;
      dispatch_all(src.dtype_, "copy_", [&](auto src_tag) {
        using S = typename decltype(src_tag)::type;
        D* dst = static_cast<D*>(storage_->data());
        const S* s = static_cast<const S*>(src.storage_->data());
        if (is_contiguous() && src.is_contiguous()) {
          D* d0 = dst + offset_;
          const S* s0 = s + src.offset_;
          const int64_t n = numel();
          for (int64_t i = 0; i < n; ++i) d0[i] = convert_scalar<D>(s0[i]);
          return;
        }
        const std::array<const int64_t*, 2> st{strides_.data(), src.strides_.data()};
        strided_loop<2>(shape_, st, {offset_, src.offset_},
                        [&](int64_t od, int64_t os) { dst[od] = convert_scalar<D>(s[os]); });
      });
    });
  }

#ifdef RETIKD_WITH_CUDA
  Tensor gathered_on_device() const {
    Tensor out = empty(shape_, dtype_, device());
    try {
      cuda::strided_copy(storage_->data(), static_cast<int>(dtype_), static_cast<int>(dim()), shape_.data(),
                         strides_.data(), offset_, out.raw_data(), device().index);
    } catch (const std::invalid_argument&) {
      // More than 8 non-mergeable dimensions: gather on the host (rare, correct, slow).
      Tensor span = empty({static_cast<int64_t>(storage_->bytes() / element_size())}, dtype_);
      copy_bytes(span.raw_data(), Device::cpu(), storage_->data(), device(), storage_->bytes());
      Tensor view_on_host = span;
      view_on_host.shape_ = shape_;
      view_on_host.strides_ = strides_;
      view_on_host.offset_ = offset_;
      return view_on_host.contiguous().to(device());
    }
    return out;
  }
  // Writes a host tensor of this shape into this strided device view, element by element of its storage span.
  void scatter_from_host(const Tensor& host) {
    // Download the whole storage span, patch it on the host, upload it again: simple and correct for the
    // rare case of an in-place write into a non-contiguous device view.
    const std::size_t bytes = storage_->bytes();
    Tensor span = empty({static_cast<int64_t>(bytes / element_size())}, dtype_);
    copy_bytes(span.raw_data(), Device::cpu(), storage_->data(), device(), bytes);
    Tensor view_on_host = span;
    view_on_host.shape_ = shape_;
    view_on_host.strides_ = strides_;
    view_on_host.offset_ = offset_;
    view_on_host.copy_host(host);
    copy_bytes(storage_->data(), device(), span.raw_data(), Device::cpu(), bytes);
  }
#endif

  std::shared_ptr<Storage> storage_;
  Shape shape_;
  Shape strides_;
  int64_t offset_ = 0;
  DType dtype_ = DType::float32;
};

}  // namespace retikd
