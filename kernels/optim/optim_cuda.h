// CUDA entry points of kernels/optim (optim_cuda.cu). adamw.cpp checks inputs first.
#pragma once
#ifdef SSM_WITH_CUDA
#include <vector>

#include "core/tensor.h"

namespace ssm::kernels::cuda {

// f32 param/state, grad f32 or bf16, all contiguous with n elements.
// p = p * decay - step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps)  after the moment updates.
void adamw_step(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq, float decay, float beta1,
                float beta2, float step_size, float inv_sqrt_bc2, float eps);
// Many parameters at once (adamw_step_list): each with its own folded constants; beta1, beta2, eps shared.
struct AdamWListItem {
  Tensor* param;
  const Tensor* grad;
  Tensor *exp_avg, *exp_avg_sq;
  float decay, step_size, inv_sqrt_bc2;
};
void adamw_step_list(const std::vector<AdamWListItem>& items, float beta1, float beta2, float eps);
void sgd_step(Tensor& param, const Tensor& grad, Tensor* momentum_buf, float lr, float momentum, float weight_decay,
              bool nesterov);

}  // namespace ssm::kernels::cuda
#endif
