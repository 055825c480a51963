// causal_conv: the long convolution of S4/S4D, y = k * u along time, per channel, causal.
//
//   u (B, L, H) channels last, contiguous;  k (H, Lk) with Lk <= L (taps at and beyond Lk are 0)
//   y[b,t,h]      = sum_{s=0}^{min(t, Lk-1)} k[h,s] u[b,t-s,h]                       -> y (B, L, H)
//   grad_u[b,s,h] = sum_{t=s}^{min(L-1, s+Lk-1)} k[h,t-s] g[b,t,h]      (correlation of g with k)
//   grad_k[h,s]   = sum_b sum_{t=s}^{L-1} g[b,t,h] u[b,t-s,h]            (correlation of g with u)
//
// By FFT: with n = next power of two >= L + Lk - 1 (so circular wrap-around never reaches an output
// we keep) and F the length-n DFT of the zero-padded sequences,
//   y      = IFFT(F(u) F(k))[0:L]
//   grad_u = IFFT(F(g) conj(F(k)))[0:L]
//   grad_k = Re IFFT(sum_b F(g_b) conj(F(u_b)))[0:Lk]
// CPU: two batch rows of one channel share k, so they ride in one complex FFT, x = u_b0 + i u_b1:
// IFFT(F(x) F(k)) = y_b0 + i y_b1 (linearity; both are real). For grad_k the same packing gives
// F(g_b0 + i g_b1) conj(F(u_b0 + i u_b1)) whose inverse has real part sum over the pair of the
// correlations (the cross terms come out purely imaginary). Works on (B, H, L) transposed copies so
// time rows are contiguous; parallel over channels h (OpenMP); a
// direct O(L Lk) sum, vectorised over channels, when the kernel is short (see use_direct()).
// CUDA: cuFFT R2C/C2R (plans cached per (n, batch, precision)) on a (B H, n) zero-padded copy.
#pragma once
#include <cstdint>

#include "autograd/variable.h"
#include "core/tensor.h"

namespace ssm::kernels {

ag::Variable causal_conv(const ag::Variable& u, const ag::Variable& k);

// CPU method: Auto picks the direct sum for short kernels (causal_conv_use_direct) and the FFT
// otherwise; the tests force each. Ignored on CUDA (always cuFFT).
enum class ConvMethod { Auto, Direct, Fft };
bool causal_conv_use_direct(int64_t L, int64_t Lk);

// Tensor-level forward/backward (any device; f32 or f64). grad_u / grad_k may be null (not wanted).
Tensor causal_conv_forward(const Tensor& u, const Tensor& k, ConvMethod method = ConvMethod::Auto);
void causal_conv_backward(const Tensor& grad_y, const Tensor& u, const Tensor& k, Tensor* grad_u, Tensor* grad_k,
                          ConvMethod method = ConvMethod::Auto);

}  // namespace ssm::kernels
