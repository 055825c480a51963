// CUDA entry points of kernels/s4 (implemented in *_cuda.cu). The public functions in flip.h,
// fft_conv.h and s4d_kernel.h check their inputs, make them contiguous and call these only for CUDA
// tensors. Outputs are preallocated contiguous CUDA tensors; everything runs on cuda::stream().
#pragma once
#ifdef SSM_WITH_CUDA
#include <cstdint>

#include "core/tensor.h"

namespace ssm::kernels::cuda {

// y (outer, n, inner) = x with the middle dim reversed; any dtype.
void flip(Tensor& y, const Tensor& x, int64_t outer, int64_t n, int64_t inner);

// S4D kernel (see s4d_kernel.h for the math). f32 or f64, all inputs the same dtype.
void s4d_kernel_forward(Tensor& K, const Tensor& log_dt, const Tensor& log_A_real, const Tensor& A_imag,
                        const Tensor& C);
void s4d_kernel_backward(const Tensor& grad_K, const Tensor& log_dt, const Tensor& log_A_real,
                         const Tensor& A_imag, const Tensor& C, Tensor& g_log_dt, Tensor& g_log_A_real,
                         Tensor& g_A_imag, Tensor& g_C);

// Causal convolution through cuFFT (see fft_conv.h). u (B, L, H), k (H, Lk); f32 or f64.
void causal_conv_forward(Tensor& y, const Tensor& u, const Tensor& k);
// grad_u / grad_k may be null (not wanted).
void causal_conv_backward(const Tensor& g, const Tensor& u, const Tensor& k, Tensor* grad_u, Tensor* grad_k);

}  // namespace ssm::kernels::cuda
#endif
