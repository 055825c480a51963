// Depthwise causal conv1d (Mamba's short convolution), channels-last, forward and backward.
//
//   x (Bt, L, D), w (D, W) with W in 2..4, bias (D) optional, x_init (Bt, W-1, D) optional,
//   seq_idx (Bt, L) i32 optional.
//   pre_t[d] = bias[d] + sum_{k<W} w[d,k] xx_{t-(W-1)+k}[d]        y = silu(pre) if silu else pre
// where xx_s = x_s for s >= 0 and xx_s = x_init[W-1+s] for s < 0 (zeros when x_init is absent).
// Packed sequences: with seq_idx, taps that reach into another document read 0 instead
// (xx_s := 0 when seq_idx[s] != seq_idx[t], s >= 0; x_init only reaches the row's first document).
// The final state for generation is the last W-1 inputs, cat(x_init, x)[L : L+W-1] along time, which
// the caller forms with autograd ops (narrow/cat).
// Backward: g = dLoss/dy, gpre = g * silu'(pre) (or g),
//   gx_s   = sum_{k} w[d,k] gpre_{s+(W-1)-k}  (same document only)      gw[d,k] = sum_{b,t} gpre_t xx_{t-(W-1)+k}
//   gbias  = sum_{b,t} gpre_t                 gx_init likewise for s < 0.
// CPU: f32/f64 reference. CUDA: x, w, bias, x_init in f32, bf16 or f16 (w/bias may be f32 while x is
// bf16); f32 accumulation; y in x's dtype; gradients in their input's dtype; gw/gbias reduced
// deterministically (per-block partials, then a fixed-order sum).
#pragma once
#include "autograd/variable.h"
#include "core/tensor.h"

namespace ssm::kernels {

struct Conv1dInputs {
  Tensor x, w, bias, x_init, seq_idx;  // bias, x_init, seq_idx may be undefined
};
struct Conv1dGrads {
  Tensor x, w, bias, x_init;  // undefined when the input is absent
};

void check_conv1d_inputs(const Conv1dInputs& in);
Tensor causal_conv1d_forward(const Conv1dInputs& in, bool silu);
Conv1dGrads causal_conv1d_backward(const Conv1dInputs& in, const Tensor& grad_y, bool silu);
Tensor causal_conv1d_reference_forward(const Conv1dInputs& in, bool silu);
Conv1dGrads causal_conv1d_reference_backward(const Conv1dInputs& in, const Tensor& grad_y, bool silu);

// Autograd op (bias, x_init: pass ag::Variable() to leave them out).
ag::Variable causal_conv1d(const ag::Variable& x, const ag::Variable& w, const ag::Variable& bias,
                           const ag::Variable& x_init, const Tensor& seq_idx, bool silu);

}  // namespace ssm::kernels
