// Datasets in the ssm HDF5 layout (docs/data-format.md). A Dataset maps row indices of one split to a
// Batch of model-ready tensors; get() is const and safe to call from the loader's worker thread.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "data/hdf5_file.h"

namespace ssm::data {

struct Batch {
  Tensor inputs;                 // f32 (B, L, C); i64 (B, L) for layout "tokens"
  Tensor labels;                 // i64 (B) (classification)
  Tensor targets;                // i64 (B, L): next-token targets (task "lm"), else undefined
  Tensor seq_idx;                // i32 (B, L): document index of each token (task "lm"), else undefined
  std::vector<int64_t> indices;  // the split's rows, in batch order
  int64_t size() const { return int64_t(indices.size()); }
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual Batch get(const std::vector<int64_t>& indices) const = 0;
  virtual const std::string& path() const = 0;
};

struct ClassificationOptions {
  int64_t pool = 1;       // layout "image" only: average-pool p x p blocks (28x28, p=2 -> 14x14, L = 196)
  bool normalize = true;  // apply the inputs' `mean` / `std` attributes when present
  int64_t max_memory_bytes = int64_t(1) << 30;  // inputs smaller than this are read whole on open
};

// One split of a classification dataset (task = "classification"): inputs (N, ...) and labels (N).
// Model input for row i (layouts "image" and "sequence"): x = ((raw * scale + shift) - mean[c]) / std[c],
// after the optional pooling, laid out (L, C) with L the row-major raster of the image.
class ClassificationDataset : public Dataset {
 public:
  explicit ClassificationDataset(const std::string& path, ClassificationOptions opt = {});

  int64_t size() const override { return n_; }
  Batch get(const std::vector<int64_t>& indices) const override;
  const std::string& path() const override { return path_; }

  const std::string& layout() const { return layout_; }    // "image" | "sequence" | "tokens"
  int64_t num_classes() const { return num_classes_; }
  int64_t seq_len() const { return out_len_; }              // L, after pooling
  int64_t channels() const { return channels_; }           // C (1 for "tokens")
  Shape input_shape() const;                               // {L, C}, or {L} for "tokens"
  const std::vector<int64_t>& labels() const { return labels_; }
  const std::vector<std::string>& class_names() const { return class_names_; }  // may be empty
  bool in_memory() const { return raw_.defined(); }

 private:
  void transform_rows(const std::vector<const uint8_t*>& rows, Tensor& out) const;

  std::string path_;
  ClassificationOptions opt_;
  std::string layout_;
  int64_t n_ = 0, num_classes_ = 0;
  int64_t height_ = 0, width_ = 1, channels_ = 1;  // "sequence": height = L, width = 1
  int64_t out_len_ = 0;
  DType raw_dtype_ = DType::u8;
  int64_t row_numel_ = 0;
  std::vector<float> a_, b_;  // per channel: x = raw_pooled * a[c] + b[c]
  std::vector<int64_t> labels_;
  std::vector<std::string> class_names_;
  Tensor raw_;                          // whole inputs when in memory
  std::optional<H5Dataset> inputs_ds_;  // otherwise read by hyperslab per batch
};

}  // namespace ssm::data
