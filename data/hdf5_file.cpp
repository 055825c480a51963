#include "data/hdf5_file.h"

#include <hdf5.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <type_traits>

namespace ssm::data {

static_assert(std::is_same_v<hid_t, int64_t>, "HDF5 >= 1.10 (64-bit hid_t) is required");

namespace {

// One lock for every HDF5 call in the process (the packaged library is not thread-safe). Recursive:
// wrapper functions call each other.
std::recursive_mutex& h5_mutex() {
  static std::recursive_mutex m;
  return m;
}

// Takes the lock and switches HDF5's automatic error printing off (the setting is per thread in
// thread-safe builds, so do it for every thread that calls in).
struct H5Lock {
  std::lock_guard<std::recursive_mutex> g{h5_mutex()};
  H5Lock() {
    thread_local bool silenced = false;
    if (!silenced) {
      H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
      silenced = true;
    }
  }
};

// The innermost message on HDF5's error stack (where the failure was detected), e.g.
// "truncated file: eof = 1000, sblock->base_addr = 0, stored_eof = 5000"; "" when the stack is empty.
std::string h5_error_detail() {
  std::string msg;
  auto walk = [](unsigned, const H5E_error2_t* e, void* data) -> herr_t {
    auto* out = static_cast<std::string*>(data);
    if (out->empty() && e->desc && *e->desc) *out = e->desc;
    return 0;
  };
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk, &msg);
  H5Eclear2(H5E_DEFAULT);
  return msg;
}

std::string with_detail(const std::string& msg) {
  std::string d = h5_error_detail();
  return d.empty() ? msg : cat(msg, " (", d, ")");
}

hid_t mem_type(DType t) {
  switch (t) {
    case DType::u8: return H5T_NATIVE_UINT8;
    case DType::i32: return H5T_NATIVE_INT32;
    case DType::i64: return H5T_NATIVE_INT64;
    case DType::f32: return H5T_NATIVE_FLOAT;
    case DType::f64: return H5T_NATIVE_DOUBLE;
    default: break;
  }
  throw_input(cat("HDF5: dtype ", dtype_name(t), " cannot be stored (use u8, i32, i64, f32 or f64)"));
}

}  // namespace

// ---------------- H5Handle ----------------

H5Handle::~H5Handle() {
  if (id_ < 0) return;
  H5Lock lock;
  switch (H5Iget_type(id_)) {
    case H5I_FILE: H5Fclose(id_); break;
    case H5I_GROUP: H5Gclose(id_); break;
    case H5I_DATASET: H5Dclose(id_); break;
    case H5I_ATTR: H5Aclose(id_); break;
    case H5I_DATASPACE: H5Sclose(id_); break;
    case H5I_DATATYPE: H5Tclose(id_); break;
    case H5I_GENPROP_LST: H5Pclose(id_); break;
    default: H5Idec_ref(id_); break;
  }
}

H5Handle& H5Handle::operator=(H5Handle&& o) noexcept {
  if (this != &o) {
    H5Handle tmp(std::move(*this));  // closes the old id
    id_ = o.id_;
    o.id_ = -1;
  }
  return *this;
}

// ---------------- H5Object: attributes ----------------

std::string H5Object::where() const { return object_.empty() ? path_ : cat(path_, ": dataset '", object_, "'"); }

bool H5Object::has_attr(const std::string& name) const {
  H5Lock lock;
  return H5Aexists(h_.get(), name.c_str()) > 0;
}

int64_t H5Object::open_attr(const std::string& name) const {
  H5Lock lock;
  SSM_CHECK_INPUT(H5Aexists(h_.get(), name.c_str()) > 0, where(), ": attribute '", name, "' missing");
  hid_t a = H5Aopen(h_.get(), name.c_str(), H5P_DEFAULT);
  SSM_CHECK_INPUT(a >= 0, with_detail(cat(where(), ": attribute '", name, "' cannot be read (corrupt file?)")));
  return a;
}

std::vector<std::string> H5Object::attr_strings(const std::string& name) const {
  H5Lock lock;
  H5Handle a(open_attr(name));
  H5Handle ftype(H5Aget_type(a.get()));
  SSM_CHECK_INPUT(H5Tget_class(ftype.get()) == H5T_STRING, where(), ": attribute '", name, "' is not a string");
  H5Handle space(H5Aget_space(a.get()));
  hssize_t n = H5Sget_simple_extent_npoints(space.get());
  SSM_CHECK_INPUT(n >= 0, with_detail(cat(where(), ": attribute '", name, "' has a bad dataspace")));
  std::vector<std::string> out;
  if (H5Tis_variable_str(ftype.get()) > 0) {
    H5Handle mtype(H5Tcopy(H5T_C_S1));
    H5Tset_size(mtype.get(), H5T_VARIABLE);
    H5Tset_cset(mtype.get(), H5Tget_cset(ftype.get()));
    std::vector<char*> ptrs(size_t(n), nullptr);
    SSM_CHECK_INPUT(H5Aread(a.get(), mtype.get(), ptrs.data()) >= 0,
                    with_detail(cat(where(), ": attribute '", name, "' cannot be read")));
    for (char* p : ptrs) {
      out.emplace_back(p ? p : "");
      if (p) H5free_memory(p);
    }
  } else {
    size_t len = H5Tget_size(ftype.get());
    H5Handle mtype(H5Tcopy(H5T_C_S1));
    H5Tset_size(mtype.get(), len);
    H5Tset_strpad(mtype.get(), H5T_STR_NULLPAD);
    H5Tset_cset(mtype.get(), H5Tget_cset(ftype.get()));
    std::vector<char> buf(size_t(n) * len + 1, 0);
    SSM_CHECK_INPUT(H5Aread(a.get(), mtype.get(), buf.data()) >= 0,
                    with_detail(cat(where(), ": attribute '", name, "' cannot be read")));
    for (hssize_t i = 0; i < n; ++i) {
      const char* p = buf.data() + size_t(i) * len;
      out.emplace_back(p, strnlen(p, len));
    }
  }
  return out;
}

std::string H5Object::attr_string(const std::string& name) const {
  auto v = attr_strings(name);
  SSM_CHECK_INPUT(v.size() == 1, where(), ": attribute '", name, "' should hold one string, holds ", v.size());
  return v[0];
}

std::vector<double> H5Object::attr_doubles(const std::string& name) const {
  H5Lock lock;
  H5Handle a(open_attr(name));
  H5Handle ftype(H5Aget_type(a.get()));
  H5T_class_t c = H5Tget_class(ftype.get());
  SSM_CHECK_INPUT(c == H5T_INTEGER || c == H5T_FLOAT, where(), ": attribute '", name, "' is not a number");
  H5Handle space(H5Aget_space(a.get()));
  hssize_t n = H5Sget_simple_extent_npoints(space.get());
  SSM_CHECK_INPUT(n >= 0, with_detail(cat(where(), ": attribute '", name, "' has a bad dataspace")));
  std::vector<double> out(static_cast<size_t>(n));
  SSM_CHECK_INPUT(H5Aread(a.get(), H5T_NATIVE_DOUBLE, out.data()) >= 0,
                  with_detail(cat(where(), ": attribute '", name, "' cannot be read")));
  return out;
}

double H5Object::attr_double(const std::string& name) const {
  auto v = attr_doubles(name);
  SSM_CHECK_INPUT(v.size() == 1, where(), ": attribute '", name, "' should hold one number, holds ", v.size());
  return v[0];
}

int64_t H5Object::attr_int(const std::string& name) const {
  H5Lock lock;
  H5Handle a(open_attr(name));
  H5Handle ftype(H5Aget_type(a.get()));
  SSM_CHECK_INPUT(H5Tget_class(ftype.get()) == H5T_INTEGER, where(), ": attribute '", name, "' is not an integer");
  H5Handle space(H5Aget_space(a.get()));
  SSM_CHECK_INPUT(H5Sget_simple_extent_npoints(space.get()) == 1, where(), ": attribute '", name,
                  "' should hold one integer");
  int64_t v = 0;
  SSM_CHECK_INPUT(H5Aread(a.get(), H5T_NATIVE_INT64, &v) >= 0,
                  with_detail(cat(where(), ": attribute '", name, "' cannot be read")));
  return v;
}

std::string H5Object::attr_string_or(const std::string& name, const std::string& dflt) const {
  return has_attr(name) ? attr_string(name) : dflt;
}
int64_t H5Object::attr_int_or(const std::string& name, int64_t dflt) const {
  return has_attr(name) ? attr_int(name) : dflt;
}
double H5Object::attr_double_or(const std::string& name, double dflt) const {
  return has_attr(name) ? attr_double(name) : dflt;
}

// ---------------- H5Dataset ----------------

H5Dataset::H5Dataset(std::string path, std::string name, H5Handle h)
    : H5Object(std::move(path), std::move(name), std::move(h)) {
  H5Lock lock;
  H5Handle space(H5Dget_space(h_.get()));
  int nd = H5Sget_simple_extent_ndims(space.get());
  SSM_CHECK_INPUT(nd >= 0, with_detail(cat(where(), ": bad dataspace (corrupt file?)")));
  std::vector<hsize_t> dims(static_cast<size_t>(nd));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  shape_.assign(dims.begin(), dims.end());

  H5Handle t(H5Dget_type(h_.get()));
  H5T_class_t c = H5Tget_class(t.get());
  size_t size = H5Tget_size(t.get());
  if (c == H5T_INTEGER) {
    bool sign = H5Tget_sign(t.get()) == H5T_SGN_2;
    stored_type_ = cat(sign ? "i" : "u", size * 8);
    if (!sign && size == 1) dtype_ = DType::u8;
    else if (size < 4 || (sign && size == 4)) dtype_ = DType::i32;
    else if (sign || size == 4) dtype_ = DType::i64;
    else throw_input(cat(where(), ": element type u64 is not supported (use i64)"));
  } else if (c == H5T_FLOAT) {
    stored_type_ = cat("f", size * 8);
    SSM_CHECK_INPUT(size == 4 || size == 8, where(), ": element type ", stored_type_, " is not supported (use f32 or f64)");
    dtype_ = size == 4 ? DType::f32 : DType::f64;
  } else {
    throw_input(cat(where(), ": element type is not a number (HDF5 type class ", int(c), ")"));
  }
}

int64_t H5Dataset::row_numel() const {
  int64_t n = 1;
  for (size_t i = 1; i < shape_.size(); ++i) n *= shape_[i];
  return n;
}

void H5Dataset::read_rows(int64_t start, int64_t count, DType as, void* dst) const {
  SSM_CHECK_INPUT(!shape_.empty(), where(), ": read_rows needs at least one dimension");
  SSM_CHECK_INPUT(start >= 0 && count >= 0 && start + count <= shape_[0], where(), ": rows [", start, ", ",
                  start + count, ") out of range for shape ", shape_str(shape_));
  if (count == 0) return;
  H5Lock lock;
  H5Handle fspace(H5Dget_space(h_.get()));
  std::vector<hsize_t> off(shape_.size(), 0), cnt(shape_.begin(), shape_.end());
  off[0] = hsize_t(start);
  cnt[0] = hsize_t(count);
  SSM_CHECK(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, off.data(), nullptr, cnt.data(), nullptr) >= 0,
            "H5Sselect_hyperslab failed on ", where());
  H5Handle mspace(H5Screate_simple(int(cnt.size()), cnt.data(), nullptr));
  herr_t st = H5Dread(h_.get(), mem_type(as), mspace.get(), fspace.get(), H5P_DEFAULT, dst);
  SSM_CHECK_INPUT(st >= 0, with_detail(cat(where(), ": reading rows [", start, ", ", start + count,
                                           ") failed (corrupt or truncated file?)")));
}

Tensor H5Dataset::read_rows(int64_t start, int64_t count, DType as) const {
  Shape s = shape_.empty() ? Shape{} : shape_;
  if (s.empty()) {  // a scalar dataset: read it whole
    Tensor t = Tensor::empty({}, as);
    H5Lock lock;
    SSM_CHECK_INPUT(H5Dread(h_.get(), mem_type(as), H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()) >= 0,
                    with_detail(cat(where(), ": read failed (corrupt or truncated file?)")));
    return t;
  }
  s[0] = count;
  Tensor t = Tensor::empty(s, as);
  read_rows(start, count, as, t.data_ptr());
  return t;
}

// ---------------- H5File ----------------

namespace {
H5Handle open_file(const std::string& path) {
  std::error_code ec;
  SSM_CHECK_INPUT(std::filesystem::exists(path, ec), path, ": file not found");
  SSM_CHECK_INPUT(!std::filesystem::is_directory(path, ec), path, ": is a directory, expected an HDF5 file");
  H5Lock lock;
  htri_t is = H5Fis_hdf5(path.c_str());
  if (is < 0) throw_input(with_detail(cat(path, ": cannot be read")));
  SSM_CHECK_INPUT(is > 0, path, ": not an HDF5 file");
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) throw_input(with_detail(cat(path, ": corrupt HDF5 file")));
  return H5Handle(f);
}
}  // namespace

H5File::H5File(const std::string& path) : H5Object(path, "", open_file(path)) {}

bool H5File::has_dataset(const std::string& name) const {
  H5Lock lock;
  if (H5Lexists(h_.get(), name.c_str(), H5P_DEFAULT) <= 0) return false;
  H5Handle obj(H5Oopen(h_.get(), name.c_str(), H5P_DEFAULT));
  return obj.valid() && H5Iget_type(obj.get()) == H5I_DATASET;
}

H5Dataset H5File::dataset(const std::string& name) const {
  H5Lock lock;
  SSM_CHECK_INPUT(has_dataset(name), path_, ": dataset '", name, "' missing");
  // A 16 MiB chunk cache (HDF5's default is 1 MiB) so that a batch of random rows keeps its chunks.
  H5Handle dapl(H5Pcreate(H5P_DATASET_ACCESS));
  H5Pset_chunk_cache(dapl.get(), 4099, size_t(16) << 20, 0.75);
  hid_t d = H5Dopen2(h_.get(), name.c_str(), dapl.get());
  SSM_CHECK_INPUT(d >= 0, with_detail(cat(path_, ": dataset '", name, "' cannot be opened (corrupt file?)")));
  return H5Dataset(path_, name, H5Handle(d));
}

// ---------------- H5Writer ----------------

H5Writer::H5Writer(const std::string& path) : path_(path), tmp_path_(path + ".tmp") {
  H5Lock lock;
  hid_t f = H5Fcreate(tmp_path_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  SSM_CHECK_INPUT(f >= 0, with_detail(cat(tmp_path_, ": cannot create file (does the folder exist and is it writable?)")));
  file_ = H5Handle(f);
}

H5Writer::~H5Writer() {
  if (committed_) return;
  file_ = H5Handle();  // close before removing
  std::error_code ec;
  std::filesystem::remove(tmp_path_, ec);
}

void H5Writer::write_dataset(const std::string& name, const Tensor& t_in, const H5WriteOptions& opt) {
  SSM_CHECK(!committed_, "H5Writer: write after commit");
  SSM_CHECK_INPUT(opt.gzip_level >= 0 && opt.gzip_level <= 9, path_, ": gzip level ", opt.gzip_level, " not in 0..9");
  Tensor t = t_in.to(Device::cpu()).contiguous();
  hid_t mtype = mem_type(t.dtype());
  H5Lock lock;
  std::vector<hsize_t> dims(t.shape().begin(), t.shape().end());
  H5Handle space(dims.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(int(dims.size()), dims.data(), nullptr));
  H5Handle dcpl(H5Pcreate(H5P_DATASET_CREATE));
  if (!dims.empty() && t.numel() > 0) {
    // Chunks span whole rows, about 64 KiB each: a random row read decompresses one small chunk.
    size_t row_bytes = dtype_size(t.dtype());
    for (size_t i = 1; i < dims.size(); ++i) row_bytes *= dims[i];
    int64_t rows = opt.chunk_rows > 0 ? opt.chunk_rows : std::max<int64_t>(1, int64_t((64 << 10) / std::max<size_t>(row_bytes, 1)));
    std::vector<hsize_t> chunk = dims;
    chunk[0] = hsize_t(std::min<int64_t>(rows, int64_t(dims[0])));
    SSM_CHECK(H5Pset_chunk(dcpl.get(), int(chunk.size()), chunk.data()) >= 0, "H5Pset_chunk failed for ", name);
    if (opt.gzip_level > 0 && H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0) {
      if (dtype_size(t.dtype()) > 1) H5Pset_shuffle(dcpl.get());
      H5Pset_deflate(dcpl.get(), unsigned(opt.gzip_level));
    }
  }
  H5Handle d(H5Dcreate2(file_.get(), name.c_str(), mtype, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
  SSM_CHECK_INPUT(d.valid(), with_detail(cat(tmp_path_, ": cannot create dataset '", name, "'")));
  if (t.numel() > 0)
    SSM_CHECK_INPUT(H5Dwrite(d.get(), mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()) >= 0,
                    with_detail(cat(tmp_path_, ": writing dataset '", name, "' failed (disk full?)")));
}

void H5Writer::write_attr(const std::string& object, const std::string& name, int64_t type, int64_t space,
                          const void* buf) {
  SSM_CHECK(!committed_, "H5Writer: write after commit");
  H5Lock lock;
  const char* obj = object.empty() ? "/" : object.c_str();
  if (H5Aexists_by_name(file_.get(), obj, name.c_str(), H5P_DEFAULT) > 0)
    H5Adelete_by_name(file_.get(), obj, name.c_str(), H5P_DEFAULT);
  H5Handle a(H5Acreate_by_name(file_.get(), obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  SSM_CHECK_INPUT(a.valid(), with_detail(cat(tmp_path_, ": cannot create attribute '", name, "' on '", obj, "'")));
  SSM_CHECK_INPUT(H5Awrite(a.get(), type, buf) >= 0, with_detail(cat(tmp_path_, ": cannot write attribute '", name, "'")));
}

void H5Writer::set_attr(const std::string& object, const std::string& name, const std::string& value) {
  H5Lock lock;  // a single string is a scalar attribute
  H5Handle t(H5Tcopy(H5T_C_S1));
  H5Tset_size(t.get(), H5T_VARIABLE);
  H5Tset_cset(t.get(), H5T_CSET_UTF8);
  H5Handle s(H5Screate(H5S_SCALAR));
  const char* p = value.c_str();
  write_attr(object, name, t.get(), s.get(), &p);
}

void H5Writer::set_attr(const std::string& object, const std::string& name, const std::vector<std::string>& values) {
  H5Lock lock;
  H5Handle t(H5Tcopy(H5T_C_S1));
  H5Tset_size(t.get(), H5T_VARIABLE);
  H5Tset_cset(t.get(), H5T_CSET_UTF8);
  hsize_t n = values.size();
  H5Handle s(H5Screate_simple(1, &n, nullptr));
  std::vector<const char*> ptrs;
  for (const auto& v : values) ptrs.push_back(v.c_str());
  write_attr(object, name, t.get(), s.get(), ptrs.data());
}

void H5Writer::set_attr(const std::string& object, const std::string& name, int64_t value) {
  H5Lock lock;
  H5Handle s(H5Screate(H5S_SCALAR));
  write_attr(object, name, H5T_NATIVE_INT64, s.get(), &value);
}

void H5Writer::set_attr(const std::string& object, const std::string& name, double value) {
  H5Lock lock;
  H5Handle s(H5Screate(H5S_SCALAR));
  write_attr(object, name, H5T_NATIVE_DOUBLE, s.get(), &value);
}

void H5Writer::set_attr(const std::string& object, const std::string& name, const std::vector<double>& values) {
  H5Lock lock;
  hsize_t n = values.size();
  H5Handle s(H5Screate_simple(1, &n, nullptr));
  write_attr(object, name, H5T_NATIVE_DOUBLE, s.get(), values.data());
}

void H5Writer::commit() {
  SSM_CHECK(!committed_, "H5Writer: commit called twice");
  {
    H5Lock lock;
    herr_t st = H5Fclose(file_.release());  // the id is gone either way
    SSM_CHECK_INPUT(st >= 0, with_detail(cat(tmp_path_, ": closing the file failed (disk full?)")));
  }
  std::error_code ec;
  std::filesystem::rename(tmp_path_, path_, ec);
  SSM_CHECK_INPUT(!ec, tmp_path_, ": cannot rename to ", path_, ": ", ec.message());
  committed_ = true;
}

}  // namespace ssm::data
