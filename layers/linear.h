// Linear: y = x W^T + b over the last dim. x (..., in), W (out, in), b (out) -> y (..., out).
// One matmul (trans_b) on x viewed as (N, in). Under ag::autocast_enabled() on CUDA, x (f32 or bf16) and W
// are cast to bf16 for the product (f32 accumulate); W stays f32. The result comes back as f32, or stays
// bf16 with set_half_output(true) (Mamba's projections: the next kernels read bf16, saving a cast and
// half the activation memory).
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
  void set_half_output(bool on) { half_output_ = on; }

 private:
  int64_t in_, out_;
  bool half_output_ = false;
  Variable* weight_ = nullptr;
  Variable* bias_ = nullptr;
};

// x (..., in) times w (out, in)^T with Linear's autocast rule; the building block of Linear::forward. With row0 /
// rows, only those rows of w (in_proj's x and z halves: two products, each output contiguous).
Variable autocast_linear(const Variable& x, const Variable& w, bool half_output, int64_t row0 = 0, int64_t rows = -1);

}  // namespace ssm::nn
