// Fused LayerNorm and RMSNorm over the last dim (C), forward and backward.
//
// x (..., C) viewed as rows r of length C; weight, bias (C) (either may be undefined: no scale/shift).
// LayerNorm:
//   mu = mean_c x,  var = mean_c (x - mu)^2 (biased),  rstd = 1 / sqrt(var + eps),  xh = (x - mu) rstd
//   y  = xh w + b
//   backward (gy = dLoss/dy, gxh = gy w):
//     grad_x = rstd (gxh - mean_c(gxh) - xh mean_c(gxh xh))
//     grad_w = sum_rows gy xh,   grad_b = sum_rows gy
// RMSNorm:
//   rstd = 1 / sqrt(mean_c x^2 + eps),  xh = x rstd,  y = xh w
//   backward: grad_x = rstd (gxh - xh mean_c(gxh xh)),  grad_w = sum_rows gy xh
// The forward saves mean and rstd per row (f32, or f64 for f64 inputs) for the backward.
// CPU: f32/f64, parallel over rows, row statistics in double. CUDA: one warp per row, f32 accumulation
// (f64 for f64); x may be f32, f64, bf16 or f16, weight/bias x's dtype or f32 (autocast: f32 params);
// y has x's dtype; grad_w / grad_b are reduced over rows deterministically (per-block partial sums, then
// a second pass).
#pragma once
#include "autograd/variable.h"
#include "core/tensor.h"

namespace ssm::kernels {

ag::Variable layer_norm(const ag::Variable& x, const ag::Variable& weight, const ag::Variable& bias, double eps);
ag::Variable rms_norm(const ag::Variable& x, const ag::Variable& weight, double eps);

// Tensor-level API. mean is undefined for rms. weight/bias may be undefined tensors.
struct NormForward {
  Tensor y, mean, rstd;  // mean, rstd: (rows)
};
NormForward norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, bool rms);
struct NormGrads {
  Tensor x, weight, bias;  // weight / bias undefined when not wanted
};
NormGrads norm_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight, const Tensor& mean,
                        const Tensor& rstd, bool rms, bool want_x, bool want_weight, bool want_bias);

}  // namespace ssm::kernels
