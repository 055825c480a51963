// Fused residual add + LayerNorm / RMSNorm over the last dim (Mamba's pre-norm blocks, mamba_ssm's
// layer_norm_fn(..., residual=..., prenorm=True, residual_in_fp32=True)).
//
// x (..., C) f32/f64/bf16/f16; residual like x in the accumulation dtype A (f64 for f64 x, else f32),
// or undefined (the first layer: residual = 0); weight (C), bias (C) optional (no bias for rms).
//   r   = residual + x                 (in A: the residual stream stays f32 whatever x's dtype)
//   y   = norm(r) w + b                 (LayerNorm or RMSNorm of r, statistics as in norms.h)
// Returns (y in out_dtype, r in A). out_dtype is x's dtype or bf16 (autocast).
// Backward (gy = dLoss/dy; gr_out = dLoss/dr from r's other uses, the next layer's residual):
//   gr = rstd (gxh - mean_c(gxh) - xh mean_c(gxh xh)) + gr_out    (gxh = gy w, xh = (r - mean) rstd;
//                                                                    no mean_c(gxh) term for rms)
//   grad_x = gr (cast to x's dtype),   grad_residual = gr,   grad_w = sum_rows gy xh,   grad_b = sum_rows gy
// As a graph: r = residual + x is one node, y = norm(r) another (so gr_out and the norm's gradient meet
// in r's gradient without a multi-output node); the fused backward kernel reads gy in y's dtype and
// writes the norm's part of gr in A, plus grad_w / grad_b.
// The forward saves r, mean and rstd (per row, in A) for the backward.
// CPU: the reference, composed from kernels/norms' CPU path (bf16/f16 x converted to f32 first);
// weight/bias in A. CUDA: one warp per row, math in A; weight/bias in A or x's dtype; grad_w/grad_b
// reduced deterministically (per-chunk partial sums, then a fixed-order sum).
#pragma once
#include <optional>

#include "autograd/variable.h"
#include "core/tensor.h"

namespace ssm::kernels {

// Differentiable: y and residual both carry gradients back to x, residual, weight and bias.
struct AddNormResult {
  ag::Variable y;         // out_dtype (default: x's dtype)
  ag::Variable residual;  // r = residual + x, f32 (f64 for f64 x)
};
AddNormResult add_norm(const ag::Variable& x, const ag::Variable& residual, const ag::Variable& weight,
                       const ag::Variable& bias, double eps, bool rms,
                       std::optional<DType> out_dtype = std::nullopt);

// Tensor level. mean is undefined for rms.
struct AddNormForward {
  Tensor y, residual, mean, rstd;
};
AddNormForward add_norm_forward(const Tensor& x, const Tensor& residual, const Tensor& weight, const Tensor& bias,
                                double eps, bool rms, DType out_dtype);
struct AddNormGrads {
  Tensor residual, weight, bias;  // residual: the norm's part of dLoss/dr, in A; undefined when not wanted
};
// grad_y: y's shape, y's dtype (others are converted); residual_out, mean, rstd: saved by the forward.
AddNormGrads add_norm_backward(const Tensor& grad_y, const Tensor& residual_out, const Tensor& weight,
                               const Tensor& mean, const Tensor& rstd, bool rms, bool want_residual,
                               bool want_weight, bool want_bias);

// The CPU reference directly (CUDA tests call it on CPU copies).
AddNormForward add_norm_reference_forward(const Tensor& x, const Tensor& residual, const Tensor& weight,
                                          const Tensor& bias, double eps, bool rms, DType out_dtype);
AddNormGrads add_norm_reference_backward(const Tensor& grad_y, const Tensor& residual_out, const Tensor& weight,
                                         const Tensor& mean, const Tensor& rstd, bool rms, bool want_residual,
                                         bool want_weight, bool want_bias);

}  // namespace ssm::kernels
