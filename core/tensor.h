// Tensor: a strided view (shape, strides in elements, offset) over shared storage, with a dtype and a
// device. Views (view/reshape/permute/transpose/narrow/select/expand/unsqueeze/squeeze) share storage
// and copy nothing; contiguous(), clone(), to() copy. Tensors are cheap handles (a shared_ptr).
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"

namespace ssm {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  // "[2, 3, 4]"
int64_t shape_numel(const Shape& s);

struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Device device;
  Storage(Device d, size_t nbytes);  // allocates through device_alloc
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

class Tensor {
 public:
  Tensor() = default;  // undefined tensor
  Tensor(std::shared_ptr<Storage> storage, Shape shape, Shape strides, int64_t offset, DType dtype);

  // ---- factories (contiguous) ----
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor scalar(double value, DType dtype = DType::f32, Device device = Device::cpu());  // shape []
  static Tensor arange(int64_t n, DType dtype = DType::i64, Device device = Device::cpu());      // 0..n-1
  // Copies host values in; the values' C++ type must match dtype's width class (float->f32, double->f64,
  // int32_t->i32, int64_t->i64, uint8_t->u8). Then moves to `device`.
  static Tensor from_vector(const std::vector<float>& v, const Shape& shape, Device device = Device::cpu());
  static Tensor from_vector(const std::vector<double>& v, const Shape& shape, Device device = Device::cpu());
  static Tensor from_vector(const std::vector<int32_t>& v, const Shape& shape, Device device = Device::cpu());
  static Tensor from_vector(const std::vector<int64_t>& v, const Shape& shape, Device device = Device::cpu());
  static Tensor from_vector(const std::vector<uint8_t>& v, const Shape& shape, Device device = Device::cpu());

  // ---- metadata ----
  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int64_t offset() const { return offset_; }
  int64_t dim() const { return int64_t(shape_.size()); }
  int64_t numel() const;
  int64_t size(int64_t d) const;  // negative d counts from the end
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device : Device::cpu(); }
  bool is_contiguous() const;
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  std::string str() const;  // "Tensor[f32, cpu, [2, 3]]"

  // Pointer to element 0 of this view (storage base + offset).
  void* data_ptr() const;
  template <typename T>
  T* data() const {
    return static_cast<T*>(data_ptr());
  }

  // ---- views (no copy) ----
  Tensor view(const Shape& shape) const;     // requires a compatible layout; one dim may be -1
  Tensor reshape(const Shape& shape) const;  // view when possible, else contiguous().view()
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor select(int64_t dim, int64_t index) const;  // drops dim
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;
  Tensor expand(const Shape& shape) const;  // broadcast size-1 dims with stride 0; may add leading dims
  Tensor flatten() const { return reshape({numel()}); }

  // ---- copies ----
  Tensor contiguous() const;  // self if already contiguous
  Tensor clone() const;       // always a fresh contiguous copy
  Tensor to(Device device) const;
  Tensor to(DType dtype) const;
  Tensor to(Device device, DType dtype) const;
  Tensor& copy_(const Tensor& src);  // same shape (src may broadcast); converts dtype/device
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0.0); }

  // ---- host access ----
  double item() const;  // one-element tensor, any dtype/device
  std::vector<float> to_float_vector() const;   // any dtype/device, row-major copy
  std::vector<double> to_double_vector() const;
  std::vector<int64_t> to_int_vector() const;

 private:
  std::shared_ptr<Storage> storage_;
  Shape shape_;
  Shape strides_;
  int64_t offset_ = 0;
  DType dtype_ = DType::f32;
};

Shape contiguous_strides(const Shape& shape);
Shape broadcast_shapes(const Shape& a, const Shape& b);  // numpy rules; BadInput names both shapes

}  // namespace ssm
