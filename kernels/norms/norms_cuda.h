// CUDA entry points of kernels/norms (norms_cuda.cu). norms.cpp checks inputs and allocates outputs.
#pragma once
#ifdef SSM_WITH_CUDA
#include "core/tensor.h"

namespace ssm::kernels::cuda {

// x (rows, C) contiguous; weight/bias (C) or undefined; y like x; mean (rows) (ignored when rms), rstd (rows).
void norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, bool rms, Tensor& y,
                  Tensor& mean, Tensor& rstd);
// Any of grad_x / grad_w / grad_b may be null. grad_y has x's dtype and shape.
void norm_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight, const Tensor& mean,
                   const Tensor& rstd, bool rms, Tensor* grad_x, Tensor* grad_w, Tensor* grad_b);

}  // namespace ssm::kernels::cuda
#endif
