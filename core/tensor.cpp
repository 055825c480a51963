// Tensor: strided views over shared storage, factories, copies with dtype/device conversion.
#include "core/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>

#include "core/cpu_loops.h"
#ifdef SSM_WITH_CUDA
#include "core/cuda/cuda_ops.h"
#endif

namespace ssm {

// ---------------- shapes ----------------
std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t v : s) n *= v;
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape st(shape.size());
  int64_t s = 1;
  for (int64_t d = int64_t(shape.size()) - 1; d >= 0; --d) {
    st[d] = s;
    s *= std::max<int64_t>(shape[d], 1);
  }
  return st;
}

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    SSM_CHECK_INPUT(da == db || da == 1 || db == 1, "shapes ", shape_str(a), " and ", shape_str(b),
                    " cannot be broadcast together (dim ", i, ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

// ---------------- storage ----------------
Storage::Storage(Device d, size_t nbytes) : bytes(nbytes), device(d) { data = device_alloc(d, nbytes); }
Storage::~Storage() { device_free(device, data, bytes); }

// ---------------- construction ----------------
Tensor::Tensor(std::shared_ptr<Storage> storage, Shape shape, Shape strides, int64_t offset, DType dtype)
    : storage_(std::move(storage)), shape_(std::move(shape)), strides_(std::move(strides)), offset_(offset),
      dtype_(dtype) {
  SSM_CHECK(shape_.size() == strides_.size(), "Tensor: shape ", shape_str(shape_), " and strides ",
            shape_str(strides_), " differ in rank");
  for (int64_t v : shape_) SSM_CHECK_INPUT(v >= 0, "Tensor: negative size in shape ", shape_str(shape_));
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t v : shape) SSM_CHECK_INPUT(v >= 0, "Tensor::empty: negative size in shape ", shape_str(shape));
  auto st = std::make_shared<Storage>(device, size_t(shape_numel(shape)) * dtype_size(dtype));
  return Tensor(std::move(st), shape, contiguous_strides(shape), 0, dtype);
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(0.0);
  return t;
}
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }
Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}
Tensor Tensor::scalar(double value, DType dtype, Device device) { return full({}, value, dtype, device); }

Tensor Tensor::arange(int64_t n, DType dtype, Device device) {
  SSM_CHECK_INPUT(n >= 0, "arange: n must be >= 0, got ", n);
  Tensor t = empty({n}, DType::f64);
  double* p = t.data<double>();
  for (int64_t i = 0; i < n; ++i) p[i] = double(i);
  return t.to(device, dtype);
}

namespace {
template <typename T>
Tensor from_host(const std::vector<T>& v, const Shape& shape, DType dt, Device device) {
  SSM_CHECK_INPUT(int64_t(v.size()) == shape_numel(shape), "Tensor::from_vector: ", v.size(),
                  " values do not fill shape ", shape_str(shape), " (", shape_numel(shape), " elements)");
  Tensor t = Tensor::empty(shape, dt);
  if (!v.empty()) std::memcpy(t.data_ptr(), v.data(), v.size() * sizeof(T));
  return t.to(device);
}
}  // namespace

Tensor Tensor::from_vector(const std::vector<float>& v, const Shape& s, Device d) { return from_host(v, s, DType::f32, d); }
Tensor Tensor::from_vector(const std::vector<double>& v, const Shape& s, Device d) { return from_host(v, s, DType::f64, d); }
Tensor Tensor::from_vector(const std::vector<int32_t>& v, const Shape& s, Device d) { return from_host(v, s, DType::i32, d); }
Tensor Tensor::from_vector(const std::vector<int64_t>& v, const Shape& s, Device d) { return from_host(v, s, DType::i64, d); }
Tensor Tensor::from_vector(const std::vector<uint8_t>& v, const Shape& s, Device d) { return from_host(v, s, DType::u8, d); }

// ---------------- metadata ----------------
int64_t Tensor::numel() const { return shape_numel(shape_); }

int64_t Tensor::size(int64_t d) const { return shape_[cpu::wrap_dim(d, dim(), "Tensor::size")]; }

// Contiguous = row-major; the strides of size-1 dims do not matter.
bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int64_t d = dim() - 1; d >= 0; --d) {
    if (shape_[d] == 1) continue;
    if (shape_[d] == 0) return true;
    if (strides_[d] != expected) return false;
    expected *= shape_[d];
  }
  return true;
}

std::string Tensor::str() const {
  if (!defined()) return "Tensor[undefined]";
  return cat("Tensor[", dtype_name(dtype_), ", ", device().str(), ", ", shape_str(shape_), "]");
}

void* Tensor::data_ptr() const {
  SSM_CHECK(storage_ != nullptr, "data_ptr() of an undefined tensor");
  if (!storage_->data) return nullptr;
  return static_cast<char*>(storage_->data) + offset_ * int64_t(dtype_size(dtype_));
}

// ---------------- views ----------------
namespace {

// Strides that let a tensor of (shape, strides) be viewed as new_shape without copying (torch's rule:
// every run of old dims that is contiguous in memory may be split/merged freely); nullopt if impossible.
std::optional<Shape> view_strides(const Shape& shape, const Shape& strides, const Shape& ns) {
  if (shape.empty() || shape_numel(shape) == 0) return contiguous_strides(ns);
  Shape out(ns.size());
  int64_t view_d = int64_t(ns.size()) - 1;
  int64_t chunk_base = strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t td = int64_t(shape.size()) - 1; td >= 0; --td) {
    tensor_numel *= shape[td];
    if (td == 0 || (shape[td - 1] != 1 && strides[td - 1] != tensor_numel * chunk_base)) {
      while (view_d >= 0 && (view_numel < tensor_numel || ns[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base;
        view_numel *= ns[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (td > 0) {
        chunk_base = strides[td - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return out;
}

Shape infer_shape(const Shape& shape, int64_t numel, const char* op, const Shape& from) {
  Shape s = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      SSM_CHECK_INPUT(infer < 0, op, ": only one dim may be -1 in ", shape_str(shape));
      infer = int64_t(i);
    } else {
      SSM_CHECK_INPUT(s[i] >= 0, op, ": invalid size in ", shape_str(shape));
      known *= s[i];
    }
  }
  if (infer >= 0) {
    SSM_CHECK_INPUT(known != 0 && numel % known == 0, op, ": cannot view a tensor of shape ", shape_str(from),
                    " (", numel, " elements) as ", shape_str(shape));
    s[infer] = numel / known;
  }
  SSM_CHECK_INPUT(shape_numel(s) == numel, op, ": shape ", shape_str(shape), " has ", shape_numel(s),
                  " elements but the tensor of shape ", shape_str(from), " has ", numel);
  return s;
}

}  // namespace

Tensor Tensor::view(const Shape& shape) const {
  const Shape s = infer_shape(shape, numel(), "view", shape_);
  auto st = view_strides(shape_, strides_, s);
  SSM_CHECK_INPUT(st.has_value(), "view: a tensor of shape ", shape_str(shape_), " with strides ",
                  shape_str(strides_), " cannot be viewed as ", shape_str(s), " without a copy (use reshape)");
  return Tensor(storage_, s, *st, offset_, dtype_);
}

Tensor Tensor::reshape(const Shape& shape) const {
  const Shape s = infer_shape(shape, numel(), "reshape", shape_);
  if (auto st = view_strides(shape_, strides_, s)) return Tensor(storage_, s, *st, offset_, dtype_);
  return contiguous().view(s);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  SSM_CHECK_INPUT(int64_t(dims.size()) == dim(), "permute: ", dims.size(), " dims given for a tensor of shape ",
                  shape_str(shape_));
  Shape ns(dims.size()), nst(dims.size());
  std::vector<bool> seen(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    const int64_t d = cpu::wrap_dim(dims[i], dim(), "permute");
    SSM_CHECK_INPUT(!seen[d], "permute: dim ", d, " repeated in ", shape_str(Shape(dims.begin(), dims.end())));
    seen[d] = true;
    ns[i] = shape_[d];
    nst[i] = strides_[d];
  }
  return Tensor(storage_, ns, nst, offset_, dtype_);
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  d0 = cpu::wrap_dim(d0, dim(), "transpose");
  d1 = cpu::wrap_dim(d1, dim(), "transpose");
  Shape ns = shape_, nst = strides_;
  std::swap(ns[d0], ns[d1]);
  std::swap(nst[d0], nst[d1]);
  return Tensor(storage_, ns, nst, offset_, dtype_);
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  d = cpu::wrap_dim(d, dim(), "narrow");
  SSM_CHECK_INPUT(start >= 0 && length >= 0 && start + length <= shape_[d], "narrow: range [", start, ", ",
                  start + length, ") is out of bounds for dim ", d, " of shape ", shape_str(shape_));
  Shape ns = shape_;
  ns[d] = length;
  return Tensor(storage_, ns, strides_, offset_ + start * strides_[d], dtype_);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = cpu::wrap_dim(d, dim(), "select");
  const int64_t n = shape_[d];
  SSM_CHECK_INPUT(index >= -n && index < n, "select: index ", index, " is out of range for dim ", d, " of shape ",
                  shape_str(shape_));
  if (index < 0) index += n;
  Shape ns = shape_, nst = strides_;
  ns.erase(ns.begin() + d);
  nst.erase(nst.begin() + d);
  return Tensor(storage_, ns, nst, offset_ + index * strides_[d], dtype_);
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = cpu::wrap_dim(d, dim() + 1, "unsqueeze");
  Shape ns = shape_, nst = strides_;
  const int64_t st = d < dim() ? shape_[d] * strides_[d] : 1;
  ns.insert(ns.begin() + d, 1);
  nst.insert(nst.begin() + d, st);
  return Tensor(storage_, ns, nst, offset_, dtype_);
}

// Drops dim d when it has size 1; otherwise returns the tensor unchanged (torch semantics).
Tensor Tensor::squeeze(int64_t d) const {
  d = cpu::wrap_dim(d, dim(), "squeeze");
  if (dim() == 0 || shape_[d] != 1) return *this;
  Shape ns = shape_, nst = strides_;
  ns.erase(ns.begin() + d);
  nst.erase(nst.begin() + d);
  return Tensor(storage_, ns, nst, offset_, dtype_);
}

Tensor Tensor::expand(const Shape& shape) const {
  SSM_CHECK_INPUT(int64_t(shape.size()) >= dim(), "expand: cannot expand shape ", shape_str(shape_), " to ",
                  shape_str(shape), " (fewer dims)");
  const int64_t lead = int64_t(shape.size()) - dim();
  Shape ns(shape.size()), nst(shape.size(), 0);
  for (int64_t i = 0; i < int64_t(shape.size()); ++i) {
    if (i < lead) {
      SSM_CHECK_INPUT(shape[i] >= 0, "expand: invalid size -1 for a new leading dim in ", shape_str(shape));
      ns[i] = shape[i];
      continue;
    }
    const int64_t have = shape_[i - lead];
    const int64_t want = shape[i] == -1 ? have : shape[i];
    if (have == want) {
      ns[i] = have;
      nst[i] = strides_[i - lead];
    } else {
      SSM_CHECK_INPUT(have == 1, "expand: cannot expand shape ", shape_str(shape_), " to ", shape_str(shape),
                      " (dim ", i, ": ", have, " vs ", want, ")");
      ns[i] = want;
      nst[i] = 0;
    }
  }
  return Tensor(storage_, ns, nst, offset_, dtype_);
}

// ---------------- copies ----------------
Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  Tensor out = empty(shape_, dtype_, device());
  out.copy_(*this);
  return out;
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape_, dtype_, device());
  out.copy_(*this);
  return out;
}

Tensor Tensor::to(Device device) const {
  SSM_CHECK_INPUT(defined(), "to(", device.str(), "): the tensor is undefined");
  if (device == this->device()) return *this;
  Tensor src = contiguous();
  Tensor out = empty(shape_, dtype_, device);
  copy_bytes(device, out.data_ptr(), src.device(), src.data_ptr(), src.nbytes());
  return out;
}

Tensor Tensor::to(DType dtype) const {
  SSM_CHECK_INPUT(defined(), "to(", dtype_name(dtype), "): the tensor is undefined");
  if (dtype == dtype_) return *this;
  Tensor out = empty(shape_, dtype, device());
  out.copy_(*this);
  return out;
}

Tensor Tensor::to(Device device, DType dtype) const {
  // Convert on the host side (cheaper to move the smaller of the two when shrinking; keep it simple).
  if (this->device().is_cpu()) return to(dtype).to(device);
  return to(device).to(dtype);
}

namespace {

// dst[i] = convert(src[i]) over dst's shape; src strides already broadcast.
void cpu_copy(Tensor& dst, const Tensor& src, const Shape& src_strides) {
  if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous() && src.shape() == dst.shape()) {
    std::memcpy(dst.data_ptr(), src.data_ptr(), dst.nbytes());
    return;
  }
  cpu::dispatch_all(dst.dtype(), [&](auto dzero) {
    using D = decltype(dzero);
    cpu::dispatch_all(src.dtype(), [&](auto szero) {
      using S = decltype(szero);
      D* d = dst.data<D>();
      const S* s = src.data<S>();
      cpu::nd_loop<2>(dst.shape(), {dst.strides(), src_strides},
                      [&](const std::array<int64_t, 2>& o, const std::array<int64_t, 2>& st, int64_t n) {
                        D* dp = d + o[0];
                        const S* sp = s + o[1];
                        if (st[0] == 1 && st[1] == 1) {
                          for (int64_t i = 0; i < n; ++i) dp[i] = cpu::convert<D, S>(sp[i]);
                        } else {
                          for (int64_t i = 0; i < n; ++i) dp[i * st[0]] = cpu::convert<D, S>(sp[i * st[1]]);
                        }
                      });
    });
  });
}

}  // namespace

Tensor& Tensor::copy_(const Tensor& src_in) {
  SSM_CHECK_INPUT(defined() && src_in.defined(), "copy_: undefined tensor");
  SSM_CHECK_INPUT(cpu::broadcasts_to(src_in.shape(), shape_), "copy_: source of shape ", shape_str(src_in.shape()),
                  " does not broadcast to destination shape ", shape_str(shape_));
  Tensor src = src_in;
  if (src.device() != device()) {
    // Keep the source's dtype, move it here, then convert in place on this device.
    src = src.to(device());
  }
  if (numel() == 0) return *this;
  if (device().is_cuda()) {
#ifdef SSM_WITH_CUDA
    Tensor s = src.expand(shape_);
    cuda::copy_strided(*this, s);
    return *this;
#else
    throw_internal("copy_: CUDA tensor in a build without CUDA");
#endif
  }
  cpu_copy(*this, src, cpu::broadcast_strides(src, shape_));
  return *this;
}

Tensor& Tensor::fill_(double value) {
  SSM_CHECK_INPUT(defined(), "fill_: undefined tensor");
  if (numel() == 0) return *this;
  if (device().is_cuda()) {
#ifdef SSM_WITH_CUDA
    cuda::fill(*this, value);
    return *this;
#else
    throw_internal("fill_: CUDA tensor in a build without CUDA");
#endif
  }
  if (value == 0.0 && is_contiguous() && !std::signbit(value)) {
    std::memset(data_ptr(), 0, nbytes());
    return *this;
  }
  cpu::dispatch_all(dtype_, [&](auto zero) {
    using T = decltype(zero);
    const T v = cpu::convert<T, double>(value);
    T* p = data<T>();
    cpu::nd_loop<1>(shape_, {strides_}, [&](const std::array<int64_t, 1>& o, const std::array<int64_t, 1>& st,
                                            int64_t n) {
      for (int64_t i = 0; i < n; ++i) p[o[0] + i * st[0]] = v;
    });
  });
  return *this;
}

// ---------------- host access ----------------
double Tensor::item() const {
  SSM_CHECK_INPUT(numel() == 1, "item: expected a one-element tensor, got shape ", shape_str(shape_));
  return to_double_vector()[0];
}

namespace {
template <typename T, DType DT>
std::vector<T> host_vector(const Tensor& t) {
  SSM_CHECK_INPUT(t.defined(), "to_vector: undefined tensor");
  Tensor h = t.to(Device::cpu()).to(DT).contiguous();
  std::vector<T> out(size_t(h.numel()));
  if (!out.empty()) std::memcpy(out.data(), h.data_ptr(), out.size() * sizeof(T));
  return out;
}
}  // namespace

std::vector<float> Tensor::to_float_vector() const { return host_vector<float, DType::f32>(*this); }
std::vector<double> Tensor::to_double_vector() const { return host_vector<double, DType::f64>(*this); }
std::vector<int64_t> Tensor::to_int_vector() const { return host_vector<int64_t, DType::i64>(*this); }

}  // namespace ssm
