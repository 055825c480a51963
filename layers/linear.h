// Linear: y = x W^T + b over the last dim. x (..., in), W (out, in), b (out) -> y (..., out).
// One matmul (trans_b) on x viewed as (N, in). Under ag::autocast_enabled() with f32 CUDA input, x and W
// are cast to bf16 for the product (f32 accumulate) and the result comes back as f32; W stays f32.
// Init as PyTorch's nn.Linear: W, b ~ U(-1/sqrt(in), 1/sqrt(in)). The bias is in group "no_decay".
#pragma once
#include "core/ops.h"
#include "layers/module.h"

namespace ssm::nn {

class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias, Generator& gen);
  Variable forward(const Variable& x) override;

  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  Variable& weight() { return *weight_; }
  Variable* bias() { return bias_; }  // nullptr without bias

 private:
  int64_t in_, out_;
  Variable* weight_ = nullptr;
  Variable* bias_ = nullptr;
};

}  // namespace ssm::nn
