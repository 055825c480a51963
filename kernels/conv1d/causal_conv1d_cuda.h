// CUDA entry points of the depthwise causal conv1d (causal_conv1d_cuda.cu; math in causal_conv1d.h).
// causal_conv1d.cpp checks the inputs, makes them contiguous, converts w / bias to f32 and allocates the
// outputs; these only launch. Everything runs on the current stream (core/cuda/stream.h).
#pragma once
#ifdef SSM_WITH_CUDA
#include "core/tensor.h"

namespace ssm::kernels::cuda {

// x (Bt, L, D) f32/bf16/f16 contiguous; w (D, W) f32; bias (D) f32 or undefined; x_init (Bt, W-1, D) in
// x's dtype or undefined; seq_idx (Bt, L) i32 or undefined; y preallocated like x.
void causal_conv1d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& x_init,
                           const Tensor& seq_idx, bool silu, Tensor& y);

// grad_y like x. Any output pointer may be null (that gradient is not computed). grad_x (Bt, L, D) and
// grad_x_init (Bt, W-1, D) in x's dtype; grad_w (D, W) and grad_bias (D) f32. All preallocated.
void causal_conv1d_backward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& x_init,
                            const Tensor& seq_idx, const Tensor& grad_y, bool silu, Tensor* grad_x,
                            Tensor* grad_x_init, Tensor* grad_w, Tensor* grad_bias);

}  // namespace ssm::kernels::cuda
#endif
