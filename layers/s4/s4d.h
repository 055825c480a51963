// S4D: the diagonal state space layer (Gu et al. 2022, "On the Parameterization and Initialization of
// Diagonal State Space Models"), as in the S4 repository's standalone s4d.py with its defaults.
//
// Per channel h (H = d_model channels) a complex diagonal SSM with M = N/2 modes (N = d_state; the
// conjugate half is implied, hence the factor 2 Re):
//   A = -exp(log_A_real) + i A_imag,   dt = exp(log_dt),   B = 1 (folded into C)
// ZOH discretisation:  dA = exp(dt A),  dB = (exp(dt A) - 1) / A
//   recurrence:  x_t = dA x_{t-1} + dB u_t,   y_t = 2 Re(sum_m C_m x_t,m) + D u_t
//   convolution: K[h, l] = 2 Re(sum_m C[h,m] dB[h,m] dA[h,m]^l),  y = K * u (causal) + D u
// Bidirectional: two kernels (C has shape (2, H, M, 2); dt and A shared),
//   y = K_fwd * u + flip(K_bwd * flip(u)) + D u
// Then the output block: y -> GELU -> dropout -> Linear(H, 2H) -> GLU.
//
// Initialisation: log_dt ~ U(log dt_min, log dt_max); log_A_real = log 0.5;
//   A_imag[m] = pi m (S4D-Lin) or (N / pi)(N / (2m + 1) - 1) (S4D-Inv);
//   C ~ complex normal of variance 1 (each part N(0, 1/2)); D ~ N(0, 1).
// Groups: log_dt, log_A_real, A_imag in "ssm" (own lr, no weight decay); C, D and the output
// linear are ordinary ("default", the bias "no_decay").
// Shapes: u (B, L, H) -> y (B, L, H). Step form: u_t (B, H) -> y_t (B, H) with a state (B, H, M) complex.
#pragma once
#include <memory>
#include <string>

#include "core/ops.h"
#include "layers/module.h"

namespace ssm::nn {

class Linear;
class Dropout;

struct S4DOptions {
  int64_t d_state = 64;       // N; M = N / 2 complex modes
  std::string init = "inv";   // "inv" (S4D-Inv) or "lin" (S4D-Lin)
  double dt_min = 1e-3;
  double dt_max = 1e-1;
  bool bidirectional = false;
  double dropout = 0.0;
};

// Recurrent state for S4D::step: x = x_re + i x_im, each (B, H, M), the parameters' dtype.
struct S4DState {
  Tensor x_re, x_im;
};

class S4D : public Module {
 public:
  S4D(int64_t d_model, const S4DOptions& opt, Generator& gen);
  Variable forward(const Variable& u) override;  // (B, L, H) -> (B, L, H)

  // The SSM convolution kernel(s) for length L: (H, L), or (2H, L) (forward then backward) when bidirectional.
  Variable kernel(int64_t L);

  // Recurrent form (unidirectional only): zero state, then one token at a time; no graph is built.
  S4DState initial_state(int64_t batch) const;
  Tensor step(const Tensor& u_t, S4DState& state);  // u_t (B, H) -> y_t (B, H)

  int64_t d_model() const { return H_; }
  int64_t n_modes() const { return M_; }
  const S4DOptions& options() const { return opt_; }

 private:
  int64_t H_, M_;
  S4DOptions opt_;
  Variable *log_dt_, *log_A_real_, *A_imag_, *C_, *D_;
  std::shared_ptr<Dropout> dropout_;
  std::shared_ptr<Linear> output_linear_;
  Variable output_block(const Variable& y);  // GELU -> dropout -> Linear(H, 2H) -> GLU
};

}  // namespace ssm::nn
