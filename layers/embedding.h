// Embedding: out[..., :] = weight[idx[...], :]. idx (...) i64/i32 -> (..., dim). weight (num, dim) ~ N(0, 1)
// as PyTorch's nn.Embedding; gradient by index_add (through ag::index_select).
#pragma once
#include "core/ops.h"
#include "layers/module.h"

namespace ssm::nn {

class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t dim, Generator& gen);
  Variable forward(const Tensor& indices);
  Variable forward(const Variable& indices) override { return forward(indices.data()); }

  int64_t num_embeddings() const { return num_; }
  int64_t dim() const { return dim_; }
  Variable& weight() { return *weight_; }

 private:
  int64_t num_, dim_;
  Variable* weight_ = nullptr;
};

}  // namespace ssm::nn
