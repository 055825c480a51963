#include "layers/s4/s4d.h"

#include <cmath>
#include <numbers>
#include <vector>

#include "autograd/functions.h"
#include "kernels/s4/fft_conv.h"
#include "kernels/s4/flip.h"
#include "kernels/s4/s4d_kernel.h"
#include "layers/activations.h"
#include "layers/dropout.h"
#include "layers/init.h"
#include "layers/linear.h"

namespace ssm::nn {

namespace {

// A_imag[h, m], the same for every channel h.
Tensor init_A_imag(int64_t H, int64_t M, int64_t N, const std::string& kind) {
  std::vector<float> v(size_t(H * M));
  for (int64_t h = 0; h < H; ++h)
    for (int64_t m = 0; m < M; ++m) {
      double a = kind == "lin" ? std::numbers::pi * double(m)
                               : double(N) / std::numbers::pi * (double(N) / double(2 * m + 1) - 1.0);
      v[size_t(h * M + m)] = float(a);
    }
  return Tensor::from_vector(v, {H, M});
}

}  // namespace

S4D::S4D(int64_t d_model, const S4DOptions& opt, Generator& gen) : H_(d_model), M_(opt.d_state / 2), opt_(opt) {
  SSM_CHECK_INPUT(d_model > 0, "S4D: d_model must be positive, got ", d_model);
  SSM_CHECK_INPUT(opt.d_state >= 2 && opt.d_state % 2 == 0, "S4D: d_state must be even and >= 2, got ", opt.d_state);
  SSM_CHECK_INPUT(opt.init == "inv" || opt.init == "lin", "S4D: init must be \"inv\" or \"lin\", got '", opt.init, "'");
  SSM_CHECK_INPUT(opt.dt_min > 0 && opt.dt_max >= opt.dt_min, "S4D: need 0 < dt_min <= dt_max, got dt_min=",
                  opt.dt_min, " dt_max=", opt.dt_max);
  const int64_t H = H_, M = M_;
  log_dt_ = &register_parameter("log_dt", init::uniform({H}, std::log(opt.dt_min), std::log(opt.dt_max), gen), "ssm");
  log_A_real_ = &register_parameter("log_A_real", Tensor::full({H, M}, std::log(0.5)), "ssm");
  A_imag_ = &register_parameter("A_imag", init_A_imag(H, M, opt.d_state, opt.init), "ssm");
  Shape c_shape = opt.bidirectional ? Shape{2, H, M, 2} : Shape{H, M, 2};
  C_ = &register_parameter("C", init::normal(c_shape, 0.0, std::sqrt(0.5), gen));
  D_ = &register_parameter("D", init::normal({H}, 0.0, 1.0, gen));
  dropout_ = register_module("dropout", std::make_shared<Dropout>(opt.dropout, gen));
  output_linear_ = register_module("output_linear", std::make_shared<Linear>(H, 2 * H, true, gen));
}

Variable S4D::kernel(int64_t L) {
  if (!opt_.bidirectional) return kernels::s4d_kernel(*log_dt_, *log_A_real_, *A_imag_, *C_, L);
  // Both directions in one kernel call: dt and A repeated, C (2, H, M, 2) viewed as (2H, M, 2).
  Variable log_dt = ag::cat({*log_dt_, *log_dt_}, 0);
  Variable log_A_real = ag::cat({*log_A_real_, *log_A_real_}, 0);
  Variable A_imag = ag::cat({*A_imag_, *A_imag_}, 0);
  return kernels::s4d_kernel(log_dt, log_A_real, A_imag, ag::reshape(*C_, {2 * H_, M_, 2}), L);
}

Variable S4D::output_block(const Variable& y) {
  return glu(output_linear_->forward(dropout_->forward(ag::gelu(y))), -1);
}

Variable S4D::forward(const Variable& u) {
  SSM_CHECK_INPUT(u.dim() == 3 && u.size(2) == H_, "S4D(d_model=", H_, "): expected input (B, L, ", H_, "), got ",
                  shape_str(u.shape()));
  const int64_t L = u.size(1);
  Variable K = kernel(L);
  Variable y;
  if (!opt_.bidirectional) {
    y = kernels::causal_conv(u, K);
  } else {
    Variable k_fwd = ag::narrow(K, 0, 0, H_), k_bwd = ag::narrow(K, 0, H_, H_);
    Variable back = kernels::flip(kernels::causal_conv(kernels::flip(u, 1), k_bwd), 1);
    y = ag::add(kernels::causal_conv(u, k_fwd), back);
  }
  y = ag::add(y, ag::mul(u, *D_));
  return output_block(y);
}

S4DState S4D::initial_state(int64_t batch) const {
  SSM_CHECK_INPUT(batch > 0, "S4D::initial_state: batch must be positive, got ", batch);
  const Tensor& p = log_dt_->data();
  return S4DState{Tensor::zeros({batch, H_, M_}, p.dtype(), p.device()),
                  Tensor::zeros({batch, H_, M_}, p.dtype(), p.device())};
}

Tensor S4D::step(const Tensor& u_t, S4DState& state) {
  SSM_CHECK_INPUT(!opt_.bidirectional, "S4D::step: a bidirectional S4D has no recurrent form (it sees the future)");
  SSM_CHECK_INPUT(u_t.dim() == 2 && u_t.size(1) == H_, "S4D::step: expected u_t (B, ", H_, "), got ",
                  shape_str(u_t.shape()));
  const int64_t B = u_t.size(0);
  SSM_CHECK_INPUT(state.x_re.defined() && state.x_re.shape() == Shape({B, H_, M_}) &&
                      state.x_im.defined() && state.x_im.shape() == Shape({B, H_, M_}),
                  "S4D::step: state must be (", B, ", ", H_, ", ", M_, "); use initial_state(", B, ")");
  ag::NoGradGuard no_grad;
  // Discretise (H, M): dtA = dt A;  dA = exp(dtA);  dB = (dA - 1) / A.
  Tensor dt = exp(log_dt_->data()).unsqueeze(1);        // (H, 1)
  Tensor a_re = mul(exp(log_A_real_->data()), -1.0);   // (H, M)
  const Tensor& a_im = A_imag_->data();
  Tensor dtA_re = mul(dt, a_re), dtA_im = mul(dt, a_im);
  Tensor mag = exp(dtA_re);
  Tensor dA_re = mul(mag, unary(UnaryOp::Cos, dtA_im)), dA_im = mul(mag, unary(UnaryOp::Sin, dtA_im));
  Tensor n_re = add(dA_re, -1.0);  // numerator dA - 1 = n_re + i dA_im
  Tensor den = add(mul(a_re, a_re), mul(a_im, a_im));
  Tensor dB_re = div(add(mul(n_re, a_re), mul(dA_im, a_im)), den);
  Tensor dB_im = div(sub(mul(dA_im, a_re), mul(n_re, a_im)), den);
  // x_t = dA x_{t-1} + dB u_t (complex, broadcast over B).
  Tensor u = u_t.unsqueeze(2);  // (B, H, 1)
  Tensor x_re = add(sub(mul(dA_re, state.x_re), mul(dA_im, state.x_im)), mul(dB_re, u));
  Tensor x_im = add(add(mul(dA_re, state.x_im), mul(dA_im, state.x_re)), mul(dB_im, u));
  state.x_re = x_re;
  state.x_im = x_im;
  // y_t = 2 Re(sum_m C x_t) + D u_t.
  Tensor c_re = C_->data().select(2, 0), c_im = C_->data().select(2, 1);  // (H, M)
  Tensor y = mul(sum(sub(mul(c_re, x_re), mul(c_im, x_im)), {2}), 2.0);  // (B, H)
  y = add(y, mul(u_t, D_->data()));
  return output_block(Variable(y)).data();
}

}  // namespace ssm::nn
