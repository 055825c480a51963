#include "layers/norm.h"

#include "kernels/norms/norms.h"

namespace ssm::nn {

LayerNorm::LayerNorm(int64_t dim, double eps) : dim_(dim), eps_(eps) {
  SSM_CHECK_INPUT(dim > 0, "LayerNorm: dim must be positive, got ", dim);
  weight_ = &register_parameter("weight", Tensor::ones({dim}), "no_decay");
  bias_ = &register_parameter("bias", Tensor::zeros({dim}), "no_decay");
}

Variable LayerNorm::forward(const Variable& x) {
  SSM_CHECK_INPUT(x.dim() >= 1 && x.size(-1) == dim_, "LayerNorm(", dim_, "): input shape ", shape_str(x.shape()),
                  " does not end in ", dim_);
  return kernels::layer_norm(x, *weight_, *bias_, eps_);
}

RMSNorm::RMSNorm(int64_t dim, double eps) : dim_(dim), eps_(eps) {
  SSM_CHECK_INPUT(dim > 0, "RMSNorm: dim must be positive, got ", dim);
  weight_ = &register_parameter("weight", Tensor::ones({dim}), "no_decay");
}

Variable RMSNorm::forward(const Variable& x) {
  SSM_CHECK_INPUT(x.dim() >= 1 && x.size(-1) == dim_, "RMSNorm(", dim_, "): input shape ", shape_str(x.shape()),
                  " does not end in ", dim_);
  return kernels::rms_norm(x, *weight_, eps_);
}

}  // namespace ssm::nn
