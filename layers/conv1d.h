// Depthwise causal 1-D convolution over the sequence, channels last (Mamba's short conv):
//   y[b, t, c] = bias[c] + sum_{k < width} w[c, k] * x[b, t - (width - 1) + k, c]
// with x = 0 at negative times (left zero padding), so y[t] sees x[t - width + 1 .. t] only.
// x (B, L, C) -> y (B, L, C); w (C, width); bias (C), in group "no_decay".
// Init as PyTorch's Conv1d(groups = C): w, bias ~ U(-1/sqrt(width), 1/sqrt(width)).
// Composed from autograd ops (pad, narrow, mul, add); a fused kernel can replace forward later.
#pragma once
#include "core/ops.h"
#include "layers/module.h"

namespace ssm::nn {

class DepthwiseCausalConv1d : public Module {
 public:
  DepthwiseCausalConv1d(int64_t channels, int64_t width, bool bias, Generator& gen);
  Variable forward(const Variable& x) override;

  int64_t channels() const { return channels_; }
  int64_t width() const { return width_; }
  Variable& weight() { return *weight_; }
  Variable* bias() { return bias_; }

 private:
  int64_t channels_, width_;
  Variable* weight_ = nullptr;
  Variable* bias_ = nullptr;
};

}  // namespace ssm::nn
