#include "layers/embedding.h"

#include "autograd/functions.h"
#include "layers/init.h"

namespace ssm::nn {

Embedding::Embedding(int64_t num_embeddings, int64_t dim, Generator& gen) : num_(num_embeddings), dim_(dim) {
  SSM_CHECK_INPUT(num_embeddings > 0 && dim > 0, "Embedding: sizes must be positive, got num=", num_embeddings,
                  " dim=", dim);
  weight_ = &register_parameter("weight", init::normal({num_, dim_}, 0.0, 1.0, gen));
}

Variable Embedding::forward(const Tensor& indices) {
  SSM_CHECK_INPUT(indices.dtype() == DType::i64 || indices.dtype() == DType::i32,
                  "Embedding: indices must be i64 or i32, got ", dtype_name(indices.dtype()));
  Shape out_shape = indices.shape();
  out_shape.push_back(dim_);
  Variable rows = ag::index_select(*weight_, 0, indices.reshape({indices.numel()}));  // (n, dim)
  return ag::reshape(rows, out_shape);
}

}  // namespace ssm::nn
