#include "data/lm_dataset.h"

#include <hdf5.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace ssm::data {

// ---------------- LMDataset ----------------

LMDataset::LMDataset(const std::string& path, int64_t context, LMOptions opt) : path_(path), context_(context) {
  SSM_CHECK_INPUT(context >= 1, path, ": context must be >= 1, got ", context);
  H5File f(path);
  SSM_CHECK_INPUT(f.has_attr("ssm_format"), path, ": not an ssm dataset (root attribute 'ssm_format' missing; ",
                  "see docs/data-format.md)");
  const std::string fmt = f.attr_string("ssm_format");
  SSM_CHECK_INPUT(fmt == "ssm-dataset", path, ": ssm_format is '", fmt, "', expected 'ssm-dataset'");
  const int64_t version = f.attr_int("version");
  SSM_CHECK_INPUT(version == 1, path, ": format version ", version, " is not supported (this build reads version 1)");
  const std::string task = f.attr_string("task");
  SSM_CHECK_INPUT(task == "lm", path, ": task is '", task, "', expected 'lm'");
  vocab_size_ = f.attr_int("vocab_size");
  SSM_CHECK_INPUT(vocab_size_ >= 1, path, ": attribute 'vocab_size' is ", vocab_size_, ", expected >= 1");
  tokenizer_ = f.attr_string_or("tokenizer", "");
  n_words_ = f.attr_int_or("n_words", -1);

  H5Dataset tok = f.dataset("tokens");
  SSM_CHECK_INPUT(tok.shape().size() == 1, tok.where(), ": shape ", shape_str(tok.shape()), ", expected (T)");
  stored_type_ = tok.stored_type();
  SSM_CHECK_INPUT(stored_type_ == "u8" || stored_type_ == "u16" || stored_type_ == "i32", tok.where(), ": element type ",
                  stored_type_, ", expected u8, u16 or i32");
  num_tokens_ = tok.rows();

  H5Dataset off = f.dataset("doc_offsets");
  SSM_CHECK_INPUT(off.shape().size() == 1 && off.rows() >= 2, off.where(), ": shape ", shape_str(off.shape()),
                  ", expected (D + 1) with D >= 1 documents");
  SSM_CHECK_INPUT(off.dtype() != DType::f32 && off.dtype() != DType::f64, off.where(), ": element type ",
                  off.stored_type(), ", expected an integer type");
  Tensor o = off.read_all(DType::i64);
  doc_offsets_.assign(o.data<int64_t>(), o.data<int64_t>() + o.numel());
  SSM_CHECK_INPUT(doc_offsets_.front() == 0, off.where(), ": starts at ", doc_offsets_.front(), ", expected 0");
  SSM_CHECK_INPUT(doc_offsets_.back() == num_tokens_, off.where(), ": ends at ", doc_offsets_.back(), ", expected T = ",
                  num_tokens_, " (the length of 'tokens')");
  for (size_t d = 1; d < doc_offsets_.size(); ++d)
    SSM_CHECK_INPUT(doc_offsets_[d] >= doc_offsets_[d - 1], off.where(), ": decreases at index ", d, " (",
                    doc_offsets_[d - 1], " then ", doc_offsets_[d], ")");
  SSM_CHECK_INPUT(num_docs() < (int64_t(1) << 31), off.where(), ": ", num_docs(), " documents do not fit seq_idx (i32)");

  windows_ = num_tokens_ >= 1 ? (num_tokens_ - 1) / context_ : 0;
  SSM_CHECK_INPUT(windows_ >= 1, tok.where(), ": holds ", num_tokens_, " tokens, but one window of context ", context_,
                  " needs ", context_ + 1, " (inputs and the next-token targets)");

  const DType mem = stored_type_ == "u8" ? DType::u8 : DType::i32;
  if (num_tokens_ * int64_t(dtype_size(mem)) <= opt.max_memory_bytes) {
    tokens_ = tok.read_all(mem);
    // Every token id must be a valid index into the embedding: 0 <= id < vocab_size.
    auto check = [&](const auto* p) {
      for (int64_t t = 0; t < num_tokens_; ++t)
        SSM_CHECK_INPUT(int64_t(p[t]) >= 0 && int64_t(p[t]) < vocab_size_, tok.where(), ": token ", int64_t(p[t]),
                        " at position ", t, " is out of range [0, vocab_size = ", vocab_size_, ")");
    };
    if (mem == DType::u8) {
      if (vocab_size_ < 256) check(tokens_.data<uint8_t>());
    } else {
      check(tokens_.data<int32_t>());
    }
  } else {
    tokens_ds_.emplace(std::move(tok));
  }
}

int64_t LMDataset::doc_of(int64_t t) const {
  SSM_CHECK(t >= 0 && t < num_tokens_, "LMDataset::doc_of: token ", t, " out of range [0, ", num_tokens_, ")");
  return int64_t(std::upper_bound(doc_offsets_.begin(), doc_offsets_.end(), t) - doc_offsets_.begin()) - 1;
}

void LMDataset::read_window(int64_t start, int64_t count, int64_t* dst) const {
  if (tokens_.defined()) {
    if (tokens_.dtype() == DType::u8) {
      const uint8_t* p = tokens_.data<uint8_t>() + start;
      for (int64_t j = 0; j < count; ++j) dst[j] = p[j];
    } else {
      const int32_t* p = tokens_.data<int32_t>() + start;
      for (int64_t j = 0; j < count; ++j) dst[j] = p[j];
    }
    return;
  }
  tokens_ds_->read_rows(start, count, DType::i64, dst);
  for (int64_t j = 0; j < count; ++j)
    SSM_CHECK_INPUT(dst[j] >= 0 && dst[j] < vocab_size_, tokens_ds_->where(), ": token ", dst[j], " at position ",
                    start + j, " is out of range [0, vocab_size = ", vocab_size_, ")");
}

Batch LMDataset::get(const std::vector<int64_t>& indices) const {
  const int64_t B = int64_t(indices.size()), L = context_;
  Batch b;
  b.inputs = Tensor::empty({B, L}, DType::i64);
  b.targets = Tensor::empty({B, L}, DType::i64);
  b.seq_idx = Tensor::empty({B, L}, DType::i32);
  b.indices = indices;
  std::vector<int64_t> w(size_t(L + 1));
  for (int64_t r = 0; r < B; ++r) {
    const int64_t i = indices[size_t(r)];
    SSM_CHECK_INPUT(i >= 0 && i < windows_, path_, ": window index ", i, " out of range [0, ", windows_, ")");
    const int64_t start = i * L;
    read_window(start, L + 1, w.data());
    int64_t* in = b.inputs.data<int64_t>() + r * L;
    int64_t* tg = b.targets.data<int64_t>() + r * L;
    int32_t* sq = b.seq_idx.data<int32_t>() + r * L;
    std::copy(w.begin(), w.begin() + L, in);      // inputs[j]  = tokens[start + j]
    std::copy(w.begin() + 1, w.end(), tg);        // targets[j] = tokens[start + j + 1]
    int64_t d = doc_of(start);                    // seq_idx[j] = document of tokens[start + j]
    for (int64_t j = 0; j < L; ++j) {
      while (doc_offsets_[size_t(d + 1)] <= start + j) ++d;  // skips empty documents too
      sq[j] = int32_t(d);
    }
  }
  return b;
}

// ---------------- raw HDF5 helpers (writer and string datasets) ----------------

namespace {

// The innermost message on HDF5's error stack, in parentheses, or "".
std::string h5_detail() {
  std::string msg;
  auto walk = [](unsigned, const H5E_error2_t* e, void* data) -> herr_t {
    auto* out = static_cast<std::string*>(data);
    if (out->empty() && e->desc && *e->desc) *out = e->desc;
    return 0;
  };
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk, &msg);
  H5Eclear2(H5E_DEFAULT);
  return msg.empty() ? msg : cat(" (", msg, ")");
}

void h5_silence() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

hid_t file_type(LMTokenType t) {
  switch (t) {
    case LMTokenType::u8: return H5T_STD_U8LE;
    case LMTokenType::u16: return H5T_STD_U16LE;
    case LMTokenType::i32: return H5T_STD_I32LE;
  }
  return H5T_STD_U8LE;
}
hid_t native_type(LMTokenType t) {
  switch (t) {
    case LMTokenType::u8: return H5T_NATIVE_UINT8;
    case LMTokenType::u16: return H5T_NATIVE_UINT16;
    case LMTokenType::i32: return H5T_NATIVE_INT32;
  }
  return H5T_NATIVE_UINT8;
}

hid_t vlen_utf8() {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  return t;
}

}  // namespace

std::vector<std::string> read_lm_strings(const std::string& path, const std::string& dataset) {
  H5File check(path);  // existence and "is HDF5" checks with good messages
  h5_silence();
  H5Handle f(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  SSM_CHECK_INPUT(f.valid(), path, ": cannot be opened", h5_detail());
  if (H5Lexists(f.get(), dataset.c_str(), H5P_DEFAULT) <= 0) return {};
  H5Handle d(H5Dopen2(f.get(), dataset.c_str(), H5P_DEFAULT));
  SSM_CHECK_INPUT(d.valid(), path, ": dataset '", dataset, "' cannot be opened", h5_detail());
  H5Handle ftype(H5Dget_type(d.get()));
  SSM_CHECK_INPUT(H5Tget_class(ftype.get()) == H5T_STRING, path, ": dataset '", dataset, "' is not a string array");
  H5Handle space(H5Dget_space(d.get()));
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  SSM_CHECK_INPUT(n >= 0, path, ": dataset '", dataset, "' has a bad dataspace", h5_detail());
  std::vector<std::string> out;
  if (n == 0) return out;
  H5Handle mtype(H5Tcopy(H5T_C_S1));
  H5Tset_cset(mtype.get(), H5Tget_cset(ftype.get()));
  if (H5Tis_variable_str(ftype.get()) > 0) {
    H5Tset_size(mtype.get(), H5T_VARIABLE);
    std::vector<char*> ptrs(size_t(n), nullptr);
    SSM_CHECK_INPUT(H5Dread(d.get(), mtype.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()) >= 0, path,
                    ": dataset '", dataset, "' cannot be read", h5_detail());
    for (char* p : ptrs) {
      out.emplace_back(p ? p : "");
      if (p) H5free_memory(p);
    }
  } else {
    const size_t len = H5Tget_size(ftype.get());
    H5Tset_size(mtype.get(), len);
    H5Tset_strpad(mtype.get(), H5T_STR_NULLPAD);
    std::vector<char> buf(size_t(n) * len + 1, 0);
    SSM_CHECK_INPUT(H5Dread(d.get(), mtype.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()) >= 0, path,
                    ": dataset '", dataset, "' cannot be read", h5_detail());
    for (hssize_t i = 0; i < n; ++i) {
      const char* p = buf.data() + size_t(i) * len;
      out.emplace_back(p, strnlen(p, len));
    }
  }
  return out;
}

// ---------------- LMWriter ----------------

LMWriter::LMWriter(const std::string& path, LMTokenType type, int gzip, int64_t chunk)
    : path_(path), tmp_path_(path + ".tmp"), type_(type), width_(type == LMTokenType::u8 ? 1 : type == LMTokenType::u16 ? 2 : 4),
      chunk_(chunk) {
  SSM_CHECK_INPUT(gzip >= 0 && gzip <= 9, path, ": gzip level ", gzip, " not in 0..9");
  SSM_CHECK_INPUT(chunk >= 1, path, ": chunk size ", chunk, " must be >= 1");
  h5_silence();
  file_ = H5Fcreate(tmp_path_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  SSM_CHECK_INPUT(file_ >= 0, tmp_path_, ": cannot create file (does the folder exist and is it writable?)", h5_detail());
  // tokens: 1-D, extendible (max size unlimited), chunked so that it can grow and be read by window.
  hsize_t dims = 0, maxdims = H5S_UNLIMITED, cdims = hsize_t(chunk);
  H5Handle space(H5Screate_simple(1, &dims, &maxdims));
  H5Handle dcpl(H5Pcreate(H5P_DATASET_CREATE));
  H5Pset_chunk(dcpl.get(), 1, &cdims);
  if (gzip > 0 && H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0) {
    if (width_ > 1) H5Pset_shuffle(dcpl.get());
    H5Pset_deflate(dcpl.get(), unsigned(gzip));
  }
  tokens_ = H5Dcreate2(file_, "tokens", file_type(type), space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT);
  SSM_CHECK_INPUT(tokens_ >= 0, tmp_path_, ": cannot create dataset 'tokens'", h5_detail());
}

LMWriter::~LMWriter() {
  if (tokens_ >= 0) H5Dclose(tokens_);
  if (file_ >= 0) H5Fclose(file_);
  if (!committed_) {
    std::error_code ec;
    std::filesystem::remove(tmp_path_, ec);
  }
}

void LMWriter::append(const void* tokens, int64_t count) {
  SSM_CHECK(!committed_, "LMWriter: append after commit");
  SSM_CHECK(count >= 0, "LMWriter: negative count");
  const char* p = static_cast<const char*>(tokens);
  buffer_.insert(buffer_.end(), p, p + size_t(count) * width_);
  if (int64_t(buffer_.size() / width_) >= chunk_) flush(false);
}

// Writes the buffered tokens at [written_, written_ + n): whole chunks only, or everything with `all`.
void LMWriter::flush(bool all) {
  const int64_t have = int64_t(buffer_.size() / width_);
  const int64_t n = all ? have : have / chunk_ * chunk_;
  if (n == 0) return;
  hsize_t new_size = hsize_t(written_ + n), off = hsize_t(written_), cnt = hsize_t(n);
  SSM_CHECK_INPUT(H5Dset_extent(tokens_, &new_size) >= 0, tmp_path_, ": cannot grow dataset 'tokens' to ", new_size,
                  h5_detail());
  H5Handle fspace(H5Dget_space(tokens_));
  H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, &off, nullptr, &cnt, nullptr);
  H5Handle mspace(H5Screate_simple(1, &cnt, nullptr));
  SSM_CHECK_INPUT(H5Dwrite(tokens_, native_type(type_), mspace.get(), fspace.get(), H5P_DEFAULT, buffer_.data()) >= 0,
                  tmp_path_, ": writing dataset 'tokens' failed (disk full?)", h5_detail());
  written_ += n;
  buffer_.erase(buffer_.begin(), buffer_.begin() + std::ptrdiff_t(size_t(n) * width_));
}

void LMWriter::end_document(const std::string& name, const std::string& title) {
  SSM_CHECK(!committed_, "LMWriter: end_document after commit");
  offsets_.push_back(num_tokens());
  names_.push_back(name);
  titles_.push_back(title);
}

void LMWriter::commit(const LMFileInfo& info) {
  SSM_CHECK(!committed_, "LMWriter: commit called twice");
  SSM_CHECK(offsets_.back() == num_tokens(), "LMWriter: ", num_tokens() - offsets_.back(),
            " tokens appended after the last end_document()");
  SSM_CHECK_INPUT(num_docs() >= 1, path_, ": no documents to write");
  flush(true);

  auto write_dataset = [&](const char* name, hid_t ftype, hid_t mtype, hsize_t n, const void* buf) {
    H5Handle space(H5Screate_simple(1, &n, nullptr));
    H5Handle d(H5Dcreate2(file_, name, ftype, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    SSM_CHECK_INPUT(d.valid(), tmp_path_, ": cannot create dataset '", name, "'", h5_detail());
    SSM_CHECK_INPUT(n == 0 || H5Dwrite(d.get(), mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0, tmp_path_,
                    ": writing dataset '", name, "' failed (disk full?)", h5_detail());
  };
  write_dataset("doc_offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, offsets_.size(), offsets_.data());
  auto write_strings = [&](const char* name, const std::vector<std::string>& v) {
    if (std::all_of(v.begin(), v.end(), [](const std::string& s) { return s.empty(); })) return;
    std::vector<const char*> ptrs;
    for (const auto& s : v) ptrs.push_back(s.c_str());
    H5Handle t(vlen_utf8());
    write_dataset(name, t.get(), t.get(), v.size(), ptrs.data());
  };
  write_strings("doc_names", names_);
  write_strings("doc_titles", titles_);

  auto attr = [&](const char* name, hid_t type, const void* buf) {
    H5Handle space(H5Screate(H5S_SCALAR));
    H5Handle a(H5Acreate2(file_, name, type, space.get(), H5P_DEFAULT, H5P_DEFAULT));
    SSM_CHECK_INPUT(a.valid() && H5Awrite(a.get(), type, buf) >= 0, tmp_path_, ": cannot write attribute '", name, "'",
                    h5_detail());
  };
  auto attr_str = [&](const char* name, const std::string& v) {
    H5Handle t(vlen_utf8());
    const char* p = v.c_str();
    attr(name, t.get(), &p);
  };
  auto attr_int = [&](const char* name, int64_t v) { attr(name, H5T_NATIVE_INT64, &v); };
  attr_str("ssm_format", "ssm-dataset");
  attr_int("version", 1);
  attr_str("task", "lm");
  attr_int("vocab_size", info.vocab_size);
  attr_str("tokenizer", info.tokenizer);
  if (info.n_words >= 0) attr_int("n_words", info.n_words);
  if (!info.split.empty()) attr_str("split", info.split);
  if (!info.source.empty()) attr_str("source", info.source);

  herr_t st = H5Dclose(tokens_);
  tokens_ = -1;
  herr_t sf = H5Fclose(file_);
  file_ = -1;
  SSM_CHECK_INPUT(st >= 0 && sf >= 0, tmp_path_, ": closing the file failed (disk full?)", h5_detail());
  std::error_code ec;
  std::filesystem::rename(tmp_path_, path_, ec);
  SSM_CHECK_INPUT(!ec, tmp_path_, ": cannot rename to ", path_, ": ", ec.message());
  committed_ = true;
}

}  // namespace ssm::data
