#include "data/dataset.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

namespace ssm::data {

namespace {

// Reads raw values of type T from a row and writes the model's (L, C) f32 row:
//   out[(oi * Wo + oj) * C + c] = a[c] * mean_{di, dj < p} src[((oi p + di) W + oj p + dj) C + c] + b[c]
// (with p = 1 this is out[k] = a[c] * src[k] + b[c]).
template <typename T>
void transform_row(const T* src, float* dst, int64_t H, int64_t W, int64_t C, int64_t p, const float* a,
                   const float* b) {
  if (p == 1) {
    const int64_t L = H * W;
    if (C == 1) {
      const float a0 = a[0], b0 = b[0];
      for (int64_t k = 0; k < L; ++k) dst[k] = float(src[k]) * a0 + b0;
    } else {
      for (int64_t k = 0; k < L; ++k)
        for (int64_t c = 0; c < C; ++c) dst[k * C + c] = float(src[k * C + c]) * a[c] + b[c];
    }
    return;
  }
  const int64_t Ho = H / p, Wo = W / p;
  const float inv = 1.0f / float(p * p);
  for (int64_t oi = 0; oi < Ho; ++oi)
    for (int64_t oj = 0; oj < Wo; ++oj)
      for (int64_t c = 0; c < C; ++c) {
        float acc = 0;
        for (int64_t di = 0; di < p; ++di)
          for (int64_t dj = 0; dj < p; ++dj) acc += float(src[((oi * p + di) * W + oj * p + dj) * C + c]);
        dst[(oi * Wo + oj) * C + c] = acc * inv * a[c] + b[c];
      }
}

template <typename T>
void tokens_row(const T* src, int64_t* dst, int64_t L) {
  for (int64_t k = 0; k < L; ++k) dst[k] = int64_t(src[k]);
}

// A per-channel attribute: absent -> dflt, one value -> broadcast, C values -> as is.
std::vector<double> per_channel(const H5Dataset& ds, const std::string& name, int64_t C, double dflt) {
  if (!ds.has_attr(name)) return std::vector<double>(size_t(C), dflt);
  std::vector<double> v = ds.attr_doubles(name);
  if (v.size() == 1) v.assign(size_t(C), v[0]);
  SSM_CHECK_INPUT(int64_t(v.size()) == C, ds.where(), ": attribute '", name, "' has ", v.size(),
                  " values, expected 1 or ", C, " (one per channel)");
  return v;
}

}  // namespace

ClassificationDataset::ClassificationDataset(const std::string& path, ClassificationOptions opt)
    : path_(path), opt_(opt) {
  H5File f(path);
  // ---- root attributes ----
  SSM_CHECK_INPUT(f.has_attr("ssm_format"), path, ": not an ssm dataset (root attribute 'ssm_format' missing; ",
                  "see docs/data-format.md)");
  std::string fmt = f.attr_string("ssm_format");
  SSM_CHECK_INPUT(fmt == "ssm-dataset", path, ": ssm_format is '", fmt, "', expected 'ssm-dataset'");
  int64_t version = f.attr_int("version");
  SSM_CHECK_INPUT(version == 1, path, ": format version ", version, " is not supported (this build reads version 1)");
  std::string task = f.attr_string("task");
  SSM_CHECK_INPUT(task == "classification", path, ": task is '", task, "', expected 'classification'");
  num_classes_ = f.attr_int("num_classes");
  SSM_CHECK_INPUT(num_classes_ >= 1, path, ": num_classes is ", num_classes_, ", expected >= 1");
  if (f.has_attr("class_names")) {
    class_names_ = f.attr_strings("class_names");
    SSM_CHECK_INPUT(int64_t(class_names_.size()) == num_classes_, path, ": class_names has ", class_names_.size(),
                    " names for ", num_classes_, " classes");
  }

  // ---- labels ----
  H5Dataset lab = f.dataset("labels");
  SSM_CHECK_INPUT(lab.shape().size() == 1, lab.where(), ": shape ", shape_str(lab.shape()), ", expected (N)");
  SSM_CHECK_INPUT(lab.dtype() != DType::f32 && lab.dtype() != DType::f64, lab.where(), ": element type ",
                  lab.stored_type(), ", expected an integer type");
  n_ = lab.shape()[0];
  SSM_CHECK_INPUT(n_ > 0, lab.where(), ": the split is empty");
  labels_.resize(size_t(n_));
  lab.read_rows(0, n_, DType::i64, labels_.data());
  for (int64_t i = 0; i < n_; ++i)
    SSM_CHECK_INPUT(labels_[i] >= 0 && labels_[i] < num_classes_, lab.where(), ": label ", labels_[i], " at row ", i,
                    " is out of range [0, ", num_classes_, ")");

  // ---- inputs ----
  H5Dataset in = f.dataset("inputs");
  const Shape& s = in.shape();
  SSM_CHECK_INPUT(!s.empty() && s[0] == n_, in.where(), ": shape ", shape_str(s), " does not match ", n_, " labels");
  layout_ = in.attr_string_or("layout", s.size() == 2 ? "sequence" : "image");
  raw_dtype_ = in.dtype();
  row_numel_ = in.row_numel();
  if (layout_ == "image") {
    SSM_CHECK_INPUT(s.size() == 3 || s.size() == 4, in.where(), ": layout 'image' needs shape (N, H, W) or (N, H, W, C), got ",
                    shape_str(s));
    height_ = s[1];
    width_ = s[2];
    channels_ = s.size() == 4 ? s[3] : 1;
  } else if (layout_ == "sequence" || layout_ == "tokens") {
    SSM_CHECK_INPUT(s.size() == 2 || (layout_ == "sequence" && s.size() == 3), in.where(), ": layout '", layout_,
                    "' needs shape ", layout_ == "tokens" ? "(N, L)" : "(N, L) or (N, L, C)", ", got ", shape_str(s));
    height_ = s[1];
    width_ = 1;
    channels_ = s.size() == 3 ? s[2] : 1;
  } else {
    throw_input(cat(in.where(), ": layout '", layout_, "' is not one of image, sequence, tokens"));
  }
  SSM_CHECK_INPUT(row_numel_ > 0, in.where(), ": rows are empty (shape ", shape_str(s), ")");

  const int64_t p = opt_.pool;
  SSM_CHECK_INPUT(p >= 1, path, ": pool must be >= 1, got ", p);
  if (p > 1) {
    SSM_CHECK_INPUT(layout_ == "image", path, ": pool ", p, " applies to layout 'image' only, the inputs are '", layout_, "'");
    SSM_CHECK_INPUT(height_ % p == 0 && width_ % p == 0, path, ": pool ", p, " does not divide the image size ", height_,
                    "x", width_);
  }
  out_len_ = (height_ / p) * (width_ / p);

  if (layout_ == "tokens") {
    SSM_CHECK_INPUT(raw_dtype_ != DType::f32 && raw_dtype_ != DType::f64, in.where(),
                    ": layout 'tokens' needs integer inputs, got ", in.stored_type());
  } else {
    // x = ((raw * scale + shift) - mean) / std = raw * a + b, a = scale / std, b = (shift - mean) / std.
    const double scale = in.attr_double_or("scale", 1.0), shift = in.attr_double_or("shift", 0.0);
    std::vector<double> mean = per_channel(in, "mean", channels_, 0.0), stdv = per_channel(in, "std", channels_, 1.0);
    if (!opt_.normalize) {
      mean.assign(size_t(channels_), 0.0);
      stdv.assign(size_t(channels_), 1.0);
    }
    for (int64_t c = 0; c < channels_; ++c) {
      SSM_CHECK_INPUT(stdv[c] > 0 && std::isfinite(stdv[c]), in.where(), ": std[", c, "] = ", stdv[c], " must be > 0");
      a_.push_back(float(scale / stdv[c]));
      b_.push_back(float((shift - mean[c]) / stdv[c]));
    }
  }

  const int64_t bytes = n_ * row_numel_ * int64_t(dtype_size(raw_dtype_));
  if (bytes < opt_.max_memory_bytes)
    raw_ = in.read_all(raw_dtype_);
  else
    inputs_ds_.emplace(std::move(in));
}

Shape ClassificationDataset::input_shape() const {
  if (layout_ == "tokens") return {out_len_};
  return {out_len_, channels_};
}

void ClassificationDataset::transform_rows(const std::vector<const uint8_t*>& rows, Tensor& out) const {
  const int64_t B = int64_t(rows.size());
  const int64_t p = opt_.pool;
  for (int64_t i = 0; i < B; ++i) {
    const void* src = rows[size_t(i)];
    if (layout_ == "tokens") {
      int64_t* dst = out.data<int64_t>() + i * out_len_;
      switch (raw_dtype_) {
        case DType::u8: tokens_row(static_cast<const uint8_t*>(src), dst, out_len_); break;
        case DType::i32: tokens_row(static_cast<const int32_t*>(src), dst, out_len_); break;
        case DType::i64: tokens_row(static_cast<const int64_t*>(src), dst, out_len_); break;
        default: SSM_CHECK(false, "unexpected token dtype");
      }
      continue;
    }
    float* dst = out.data<float>() + i * out_len_ * channels_;
    switch (raw_dtype_) {
      case DType::u8: transform_row(static_cast<const uint8_t*>(src), dst, height_, width_, channels_, p, a_.data(), b_.data()); break;
      case DType::i32: transform_row(static_cast<const int32_t*>(src), dst, height_, width_, channels_, p, a_.data(), b_.data()); break;
      case DType::i64: transform_row(static_cast<const int64_t*>(src), dst, height_, width_, channels_, p, a_.data(), b_.data()); break;
      case DType::f32: transform_row(static_cast<const float*>(src), dst, height_, width_, channels_, p, a_.data(), b_.data()); break;
      case DType::f64: transform_row(static_cast<const double*>(src), dst, height_, width_, channels_, p, a_.data(), b_.data()); break;
      default: SSM_CHECK(false, "unexpected input dtype");
    }
  }
}

Batch ClassificationDataset::get(const std::vector<int64_t>& indices) const {
  const int64_t B = int64_t(indices.size());
  for (int64_t i : indices)
    SSM_CHECK_INPUT(i >= 0 && i < n_, path_, ": row index ", i, " out of range [0, ", n_, ")");
  Batch batch;
  batch.indices = indices;
  batch.labels = Tensor::empty({B}, DType::i64);
  for (int64_t k = 0; k < B; ++k) batch.labels.data<int64_t>()[k] = labels_[size_t(indices[k])];
  batch.inputs = layout_ == "tokens" ? Tensor::empty({B, out_len_}, DType::i64)
                                     : Tensor::empty({B, out_len_, channels_}, DType::f32);
  if (B == 0) return batch;

  const size_t row_bytes = size_t(row_numel_) * dtype_size(raw_dtype_);
  std::vector<const uint8_t*> rows(static_cast<size_t>(B));
  std::vector<uint8_t> scratch;
  if (raw_.defined()) {
    const uint8_t* base = static_cast<const uint8_t*>(raw_.data_ptr());
    for (int64_t k = 0; k < B; ++k) rows[size_t(k)] = base + size_t(indices[k]) * row_bytes;
  } else {
    // Read the distinct rows in ascending order, one hyperslab per run of consecutive rows.
    std::vector<int64_t> uniq(indices);
    std::sort(uniq.begin(), uniq.end());
    uniq.erase(std::unique(uniq.begin(), uniq.end()), uniq.end());
    scratch.resize(uniq.size() * row_bytes);
    for (size_t r = 0; r < uniq.size();) {
      size_t e = r + 1;
      while (e < uniq.size() && uniq[e] == uniq[e - 1] + 1) ++e;
      inputs_ds_->read_rows(uniq[r], int64_t(e - r), raw_dtype_, scratch.data() + r * row_bytes);
      r = e;
    }
    for (int64_t k = 0; k < B; ++k) {
      size_t pos = size_t(std::lower_bound(uniq.begin(), uniq.end(), indices[k]) - uniq.begin());
      rows[size_t(k)] = scratch.data() + pos * row_bytes;
    }
  }
  transform_rows(rows, batch.inputs);
  return batch;
}

}  // namespace ssm::data
