// Normalisations over the last dim, through the fused kernels (kernels/norms):
//   LayerNorm: y = (x - mean) / sqrt(var + eps) * weight + bias   (weight = 1, bias = 0 at init)
//   RMSNorm:   y = x / sqrt(mean(x^2) + eps) * weight             (weight = 1 at init)
// Weights and biases are in group "no_decay".
#pragma once
#include "layers/module.h"

namespace ssm::nn {

class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t dim, double eps = 1e-5);
  Variable forward(const Variable& x) override;
  Variable& weight() { return *weight_; }
  Variable& bias() { return *bias_; }

 private:
  int64_t dim_;
  double eps_;
  Variable* weight_ = nullptr;
  Variable* bias_ = nullptr;
};

class RMSNorm : public Module {
 public:
  explicit RMSNorm(int64_t dim, double eps = 1e-5);
  Variable forward(const Variable& x) override;
  Variable& weight() { return *weight_; }

 private:
  int64_t dim_;
  double eps_;
  Variable* weight_ = nullptr;
};

}  // namespace ssm::nn
