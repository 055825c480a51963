// A small RAII wrapper over the HDF5 C API: read-only files with datasets and attributes (random access
// to row ranges through hyperslabs), and an atomic writer ("<path>.tmp", renamed on commit()).
//
// Errors are BadInput naming the file and the dataset or attribute:
//   "data/fmnist/train.h5: dataset 'labels' missing", "x.h5: not an HDF5 file", "x.h5: corrupt HDF5 file (...)".
// HDF5's own error printing is silenced; the innermost HDF5 message is appended in parentheses instead.
// HDF5 (as packaged by Debian/Ubuntu) is not thread-safe: every call here holds one process-wide lock,
// so loaders in several threads may read at the same time.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace ssm::data {

// Owns one HDF5 identifier (hid_t is int64_t in HDF5 >= 1.10) and closes it with the right H5?close.
class H5Handle {
 public:
  H5Handle() = default;
  explicit H5Handle(int64_t id) : id_(id) {}
  ~H5Handle();
  H5Handle(H5Handle&& o) noexcept : id_(o.id_) { o.id_ = -1; }
  H5Handle& operator=(H5Handle&& o) noexcept;
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;
  int64_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  int64_t release() {  // gives up ownership without closing
    int64_t id = id_;
    id_ = -1;
    return id;
  }

 private:
  int64_t id_ = -1;
};

// Attribute access shared by files (the root group) and datasets. `where` names the object in messages.
class H5Object {
 public:
  bool has_attr(const std::string& name) const;
  std::string attr_string(const std::string& name) const;                // fixed or variable length
  std::vector<std::string> attr_strings(const std::string& name) const;  // 1-D string array
  int64_t attr_int(const std::string& name) const;                       // any integer type
  double attr_double(const std::string& name) const;                     // any numeric type, one value
  std::vector<double> attr_doubles(const std::string& name) const;       // any numeric type, 1-D

  // Convenience: the attribute if present, else the default.
  std::string attr_string_or(const std::string& name, const std::string& dflt) const;
  int64_t attr_int_or(const std::string& name, int64_t dflt) const;
  double attr_double_or(const std::string& name, double dflt) const;

  const std::string& file_path() const { return path_; }
  std::string where() const;  // "x.h5" or "x.h5: dataset 'inputs'"

 protected:
  H5Object(std::string path, std::string object, H5Handle h) : path_(std::move(path)), object_(std::move(object)), h_(std::move(h)) {}
  int64_t open_attr(const std::string& name) const;  // throws "attribute 'name' missing"
  std::string path_;
  std::string object_;  // "" for the root group
  H5Handle h_;
};

class H5Dataset : public H5Object {
 public:
  const std::string& name() const { return object_; }
  const Shape& shape() const { return shape_; }
  int64_t rows() const { return shape_.empty() ? 1 : shape_[0]; }
  int64_t row_numel() const;  // product of dims after the first
  // The ssm dtype the stored values read into without loss: u8, i32 (also for i8/i16/u16), i64 (also
  // u32), f32, f64. Other element types (u64, strings, compounds) are a BadInput naming the dataset.
  DType dtype() const { return dtype_; }
  const std::string& stored_type() const { return stored_type_; }  // "u16", "f32", ... for messages

  // Rows [start, start + count) (along dim 0) converted to `as`, into dst (count * row_numel values).
  void read_rows(int64_t start, int64_t count, DType as, void* dst) const;
  Tensor read_rows(int64_t start, int64_t count, DType as) const;
  Tensor read_all(DType as) const { return read_rows(0, rows(), as); }
  Tensor read_all() const { return read_all(dtype_); }

 private:
  friend class H5File;
  H5Dataset(std::string path, std::string name, H5Handle h);
  Shape shape_;
  DType dtype_ = DType::f32;
  std::string stored_type_;
};

// A file opened read-only. Opening checks: the file exists, is HDF5, and HDF5 can open it.
class H5File : public H5Object {
 public:
  explicit H5File(const std::string& path);
  bool has_dataset(const std::string& name) const;
  H5Dataset dataset(const std::string& name) const;  // "<path>: dataset 'name' missing"
  const std::string& path() const { return path_; }
};

struct H5WriteOptions {
  int gzip_level = 4;       // 0 = no compression; 1..9 = deflate level (with the byte-shuffle filter)
  int64_t chunk_rows = 0;   // rows per chunk along dim 0; 0 = about 64 KiB per chunk
};

// Writes "<path>.tmp"; commit() closes it and renames it to <path>. Destroyed without commit() (an error
// part way), the temporary file is removed, so nothing half-written is ever left under the final name.
class H5Writer {
 public:
  explicit H5Writer(const std::string& path);
  ~H5Writer();
  H5Writer(const H5Writer&) = delete;
  H5Writer& operator=(const H5Writer&) = delete;

  // A dataset of t's shape and dtype (any CPU or CUDA tensor; written contiguous, chunked along dim 0).
  void write_dataset(const std::string& name, const Tensor& t, const H5WriteOptions& opt = {});
  // Attributes on `object`: "/" for the root group, or a dataset name. Strings are UTF-8 variable length
  // (what h5py writes for a Python str), integers i64, reals f64.
  void set_attr(const std::string& object, const std::string& name, const std::string& value);
  void set_attr(const std::string& object, const std::string& name, const char* value) { set_attr(object, name, std::string(value)); }
  void set_attr(const std::string& object, const std::string& name, int64_t value);
  void set_attr(const std::string& object, const std::string& name, int value) { set_attr(object, name, int64_t(value)); }
  void set_attr(const std::string& object, const std::string& name, double value);
  void set_attr(const std::string& object, const std::string& name, const std::vector<double>& values);
  void set_attr(const std::string& object, const std::string& name, const std::vector<std::string>& values);
  void commit();

  const std::string& path() const { return path_; }
  const std::string& tmp_path() const { return tmp_path_; }

 private:
  void write_attr(const std::string& object, const std::string& name, int64_t type, int64_t space, const void* buf);
  std::string path_, tmp_path_;
  H5Handle file_;
  bool committed_ = false;
};

}  // namespace ssm::data
