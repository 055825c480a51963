// Fused optimizer updates: one pass over a parameter, its gradient and its state.
//
// AdamW (decoupled weight decay; the same arithmetic as torch.optim.AdamW), step t >= 1:
//   p  <- p (1 - lr wd)
//   m  <- b1 m + (1 - b1) g
//   v  <- b2 v + (1 - b2) g^2
//   p  <- p - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// SGD (torch.optim.SGD, dampening 0; coupled L2 weight decay):
//   d  <- g + wd p
//   buf <- momentum buf + d      (buf starts at 0, so the first step gives buf = d, as in PyTorch)
//   d  <- nesterov ? d + momentum buf : buf      (when momentum != 0)
//   p  <- p - lr d
// param and state are f32 (f64 also accepted on the CPU, for tests), contiguous, the same shape and
// device; grad is param's dtype, or bf16 on CUDA. CPU: an OpenMP loop. CUDA: one thread per four
// elements with float4 loads/stores (scalar tail), all scalars folded on the host.
// momentum_buf may be undefined when momentum == 0.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace ssm::kernels {

void adamw_step(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq, double lr, double beta1,
                double beta2, double eps, double weight_decay, int64_t step);

// adamw_step for many parameters (an optimizer's step): each with its own lr, weight decay and step, the
// betas and eps shared. On CUDA one launch covers up to 48 parameters of one device (the kernel per parameter
// costs a launch each: ~240 for the 130M LM); elsewhere it is adamw_step per parameter. Every parameter is
// checked before any is updated.
struct AdamWParam {
  Tensor* param;
  const Tensor* grad;
  Tensor *exp_avg, *exp_avg_sq;
  double lr, weight_decay;
  int64_t step;
};
void adamw_step_many(const std::vector<AdamWParam>& params, double beta1, double beta2, double eps);

void sgd_step(Tensor& param, const Tensor& grad, Tensor& momentum_buf, double lr, double momentum,
              double weight_decay, bool nesterov);

}  // namespace ssm::kernels
