// The Mamba block (Gu & Dao 2023; mamba_ssm's `Mamba` module with its defaults and initialisation).
//
// hidden (Bt, L, d_model) -> (Bt, L, d_model); Di = expand d_model, R = dt_rank, N = d_state, W = d_conv:
//   xz      = in_proj(hidden)                              (Bt, L, 2 Di); x = xz[..., :Di], z = xz[..., Di:]
//   x       = silu(causal_conv1d(x, conv1d.weight, conv1d.bias))            (kernels/conv1d)
//   x_dbl   = x_proj(x)                                    (Bt, L, R + 2N) -> dt_low (R), B (N), C (N)
//   delta   = dt_low dt_proj.weight^T                      (Bt, L, Di)  (no bias here: ...)
//   y       = selective_scan(u = x, delta, A = -exp(A_log), B, C, D, z,
//                            delta_bias = dt_proj.bias, softplus)            (kernels/selective_scan)
//             i.e. dt = softplus(delta + dt_proj.bias), h_t = exp(dt A) h_{t-1} + dt B_t x_t,
//                  y_t = (C_t h_t + D x_t) silu(z_t)
//   out     = out_proj(y)
// Parameters (checkpoint names, mamba_ssm's except conv1d.weight, which is (Di, W) here, (Di, 1, W) there):
//   in_proj.weight (2Di, d_model), conv1d.weight (Di, W), conv1d.bias (Di), x_proj.weight (R + 2N, Di),
//   dt_proj.weight (Di, R), dt_proj.bias (Di), A_log (Di, N), D (Di), out_proj.weight (d_model, Di).
// Groups: A_log, D, dt_proj.bias, conv1d.bias "no_decay"; the weights "default".
// Init (mamba_ssm): Linear weights U(+-1/sqrt(fan_in)); conv1d weight and bias U(+-1/sqrt(W));
//   dt_proj.weight U(+-R^-1/2); dt = exp(U(0,1)(ln dt_max - ln dt_min) + ln dt_min) clamped >= dt_init_floor,
//   dt_proj.bias = dt + log(-expm1(-dt)) (softplus^-1(dt)); A_log[d, n] = log(n + 1); D = 1.
//
// States for generation: conv (Bt, W-1, Di) = the last W-1 inputs of the conv (x before the conv);
// ssm (Bt, Di, N) = h, f32 (f64 for an f64 model).
// step(): one token with plain tensor math (no graph), constant memory:
//   conv_state <- [conv_state[1:], x_t];  xc = silu(sum_k w[:, k] conv_state'[k] + b)
//   dt = softplus(dt_proj(dt_low) + bias);  h = exp(dt A) h + dt B xc;  y = (C h + D xc) silu(z)
#pragma once
#include <memory>

#include "core/ops.h"
#include "layers/module.h"

namespace ssm::nn {

class Linear;
class DepthwiseCausalConv1d;

struct MambaOptions {
  int64_t d_state = 16;  // N
  int64_t d_conv = 4;    // W, 2..4
  int64_t expand = 2;    // Di = expand * d_model
  int64_t dt_rank = 0;   // R; 0 = ceil(d_model / 16)
  double dt_min = 1e-3;
  double dt_max = 1e-1;
  double dt_init_floor = 1e-4;
  bool deterministic = false;  // the scan's deterministic backward
};

// Recurrent state of one block. Undefined tensors mean zeros.
struct MambaBlockState {
  Tensor conv;  // (Bt, W-1, Di), the parameters' dtype
  Tensor ssm;   // (Bt, Di, N), f32 (f64 for an f64 model)
};

class MambaBlock : public Module {
 public:
  MambaBlock(int64_t d_model, const MambaOptions& opt, Generator& gen);

  Variable forward(const Variable& hidden) override;  // (Bt, L, d_model) -> (Bt, L, d_model)
  // seq_idx (Bt, L) i32 or i64 (packed documents; may be undefined).
  Variable forward(const Variable& hidden, const Tensor& seq_idx);
  // Prefill: starts from `state` (its defined parts: conv as the conv's x_init, ssm as the scan's h0) and
  // replaces it with the final states (detached tensors). With seq_idx, the conv state keeps only the
  // last document's inputs (taps of earlier documents zeroed) and the ssm state is the last document's.
  Variable forward(const Variable& hidden, const Tensor& seq_idx, MambaBlockState& state);

  // Zero states for `batch` rows, on the parameters' device.
  MambaBlockState initial_state(int64_t batch) const;
  // One token: x_t (Bt, d_model) -> (Bt, d_model); updates both states in place of the handles.
  Tensor step(const Tensor& x_t, Tensor& conv_state, Tensor& ssm_state);
  Tensor step(const Tensor& x_t, MambaBlockState& state) { return step(x_t, state.conv, state.ssm); }

  int64_t d_model() const { return d_model_; }
  int64_t d_inner() const { return d_inner_; }
  int64_t dt_rank() const { return dt_rank_; }
  const MambaOptions& options() const { return opt_; }

  Linear& out_proj() { return *out_proj_; }

 private:
  int64_t d_model_, d_inner_, dt_rank_;
  MambaOptions opt_;
  Variable *A_log_ = nullptr, *D_ = nullptr;
  std::shared_ptr<Linear> in_proj_, x_proj_, dt_proj_, out_proj_;
  std::shared_ptr<DepthwiseCausalConv1d> conv1d_;

  Variable run(const Variable& hidden, const Tensor& seq_idx, MambaBlockState* state);
  Tensor state_dtype_zeros(const Shape& s, bool ssm) const;
};

}  // namespace ssm::nn
