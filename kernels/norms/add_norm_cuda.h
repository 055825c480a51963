// CUDA entry points of the fused residual add + norm (add_norm_cuda.cu; math in add_norm.h).
// add_norm.cpp checks the inputs, makes them contiguous and allocates the outputs.
#pragma once
#ifdef SSM_WITH_CUDA
#include "core/tensor.h"

namespace ssm::kernels::cuda {

// x (rows, C); residual (rows, C) in A or undefined; weight/bias (C) or undefined.
// Writes y (out dtype), residual_out (A), mean (rows, A; ignored for rms), rstd (rows, A).
void add_norm_forward(const Tensor& x, const Tensor& residual, const Tensor& weight, const Tensor& bias, double eps,
                      bool rms, Tensor& y, Tensor& residual_out, Tensor& mean, Tensor& rstd);
// grad_y (rows, C) in y's dtype; any of grad_r (A), grad_w, grad_b (weight's dtype) may be null.
void add_norm_backward(const Tensor& grad_y, const Tensor& residual_out, const Tensor& weight, const Tensor& mean,
                       const Tensor& rstd, bool rms, Tensor* grad_r, Tensor* grad_w, Tensor* grad_b);

}  // namespace ssm::kernels::cuda
#endif
