#include "layers/mamba/mamba_block.h"

#include <cmath>
#include <vector>

#include "autograd/functions.h"
#include "kernels/conv1d/causal_conv1d.h"
#include "kernels/selective_scan/selective_scan.h"
#include "layers/conv1d.h"
#include "layers/linear.h"

namespace ssm::nn {

namespace {

// dt_proj.bias = softplus^-1(dt) = dt + log(-expm1(-dt)),
// dt = max(exp(u (ln dt_max - ln dt_min) + ln dt_min), floor), u ~ U(0, 1).
Tensor init_dt_bias(int64_t Di, const MambaOptions& o, Generator& gen) {
  std::vector<double> u = gen.uniform({Di}, DType::f64).to_double_vector();
  std::vector<float> b(static_cast<size_t>(Di));
  const double lo = std::log(o.dt_min), hi = std::log(o.dt_max);
  for (int64_t d = 0; d < Di; ++d) {
    double dt = std::exp(u[size_t(d)] * (hi - lo) + lo);
    dt = std::max(dt, o.dt_init_floor);
    b[size_t(d)] = float(dt + std::log(-std::expm1(-dt)));
  }
  return Tensor::from_vector(b, {Di});
}

// A_log[d, n] = log(n + 1) (S4D-Real: A = -(n + 1)).
Tensor init_A_log(int64_t Di, int64_t N) {
  std::vector<float> v(size_t(Di * N));
  for (int64_t d = 0; d < Di; ++d)
    for (int64_t n = 0; n < N; ++n) v[size_t(d * N + n)] = float(std::log(double(n + 1)));
  return Tensor::from_vector(v, {Di, N});
}

Tensor seq_idx_i32(const Tensor& seq_idx, int64_t Bt, int64_t L, Device dev) {
  if (!seq_idx.defined()) return seq_idx;
  SSM_CHECK_INPUT(seq_idx.dim() == 2 && seq_idx.size(0) == Bt && seq_idx.size(1) == L, "MambaBlock: seq_idx ",
                  shape_str(seq_idx.shape()), " must be (Bt, L) = [", Bt, ", ", L, "]");
  SSM_CHECK_INPUT(seq_idx.dtype() == DType::i32 || seq_idx.dtype() == DType::i64,
                  "MambaBlock: seq_idx must be i32 or i64, got ", dtype_name(seq_idx.dtype()));
  Tensor s = seq_idx.dtype() == DType::i32 ? seq_idx : seq_idx.to(DType::i32);
  return s.device() == dev ? s : s.to(dev);
}

}  // namespace

MambaBlock::MambaBlock(int64_t d_model, const MambaOptions& opt, Generator& gen) : d_model_(d_model), opt_(opt) {
  SSM_CHECK_INPUT(d_model > 0, "MambaBlock: d_model must be positive, got ", d_model);
  SSM_CHECK_INPUT(opt.expand >= 1, "MambaBlock: expand must be >= 1, got ", opt.expand);
  SSM_CHECK_INPUT(opt.d_state >= 1 && opt.d_state <= 256, "MambaBlock: d_state must be in 1..256, got ", opt.d_state);
  SSM_CHECK_INPUT(opt.d_conv >= 2 && opt.d_conv <= 4, "MambaBlock: d_conv must be in 2..4, got ", opt.d_conv);
  SSM_CHECK_INPUT(opt.dt_rank >= 0, "MambaBlock: dt_rank must be >= 1 (or 0 for ceil(d_model / 16)), got ",
                  opt.dt_rank);
  SSM_CHECK_INPUT(opt.dt_min > 0 && opt.dt_max >= opt.dt_min, "MambaBlock: need 0 < dt_min <= dt_max, got dt_min=",
                  opt.dt_min, " dt_max=", opt.dt_max);
  SSM_CHECK_INPUT(opt.dt_init_floor >= 0, "MambaBlock: dt_init_floor must be >= 0, got ", opt.dt_init_floor);
  d_inner_ = opt.expand * d_model;
  dt_rank_ = opt.dt_rank > 0 ? opt.dt_rank : (d_model + 15) / 16;
  opt_.dt_rank = dt_rank_;
  const int64_t Di = d_inner_, R = dt_rank_, N = opt.d_state;

  in_proj_ = register_module("in_proj", std::make_shared<Linear>(d_model, 2 * Di, false, gen));
  conv1d_ = register_module("conv1d", std::make_shared<DepthwiseCausalConv1d>(Di, opt.d_conv, true, gen));
  x_proj_ = register_module("x_proj", std::make_shared<Linear>(Di, R + 2 * N, false, gen));
  // Linear's weight init U(+-1/sqrt(R)) is mamba_ssm's dt_init "random" with dt_scale 1; the bias is redrawn.
  dt_proj_ = register_module("dt_proj", std::make_shared<Linear>(R, Di, true, gen));
  dt_proj_->bias()->data().copy_(init_dt_bias(Di, opt, gen));
  A_log_ = &register_parameter("A_log", init_A_log(Di, N), "no_decay");
  D_ = &register_parameter("D", Tensor::ones({Di}), "no_decay");
  out_proj_ = register_module("out_proj", std::make_shared<Linear>(Di, d_model, false, gen));
  // Under autocast the projections hand bf16 to the conv, scan and add+norm kernels (all read bf16).
  for (auto* l : {in_proj_.get(), x_proj_.get(), out_proj_.get()}) l->set_half_output(true);
}

Variable MambaBlock::forward(const Variable& hidden) { return run(hidden, Tensor(), nullptr); }

Variable MambaBlock::forward(const Variable& hidden, const Tensor& seq_idx) { return run(hidden, seq_idx, nullptr); }

Variable MambaBlock::forward(const Variable& hidden, const Tensor& seq_idx, MambaBlockState& state) {
  return run(hidden, seq_idx, &state);
}

Variable MambaBlock::run(const Variable& hidden, const Tensor& seq_idx_in, MambaBlockState* state) {
  SSM_CHECK_INPUT(hidden.defined() && hidden.dim() == 3 && hidden.size(2) == d_model_, "MambaBlock(d_model=",
                  d_model_, "): expected input (Bt, L, ", d_model_, "), got ",
                  hidden.defined() ? shape_str(hidden.shape()) : std::string("undefined"));
  const int64_t Bt = hidden.size(0), L = hidden.size(1), Di = d_inner_, R = dt_rank_, N = opt_.d_state;
  const int64_t W = opt_.d_conv;
  const Tensor seq_idx = seq_idx_i32(seq_idx_in, Bt, L, hidden.device());
  Variable x_init, h0;
  if (state) {
    if (state->conv.defined()) {
      SSM_CHECK_INPUT(state->conv.shape() == Shape({Bt, W - 1, Di}), "MambaBlock: conv state ",
                      shape_str(state->conv.shape()), " must be (Bt, d_conv - 1, d_inner) = [", Bt, ", ", W - 1, ", ",
                      Di, "]");
      x_init = Variable(state->conv);
    }
    if (state->ssm.defined()) {
      SSM_CHECK_INPUT(state->ssm.shape() == Shape({Bt, Di, N}), "MambaBlock: ssm state ",
                      shape_str(state->ssm.shape()), " must be (Bt, d_inner, d_state) = [", Bt, ", ", Di, ", ", N,
                      "]");
      h0 = Variable(state->ssm);
    }
  }

  // in_proj as two products against its weight's row halves: x and z come out contiguous. (Splitting one
  // (Bt, L, 2Di) output gives two strided views, which the conv and the scan copied in both passes.)
  const Variable& w_in = in_proj_->weight();
  const Variable x = autocast_linear(hidden, w_in, /*half_output=*/true, 0, Di);   // (Bt, L, Di)
  const Variable z = autocast_linear(hidden, w_in, /*half_output=*/true, Di, Di);  // (Bt, L, Di)
  Variable xc = kernels::causal_conv1d(x, conv1d_->weight(), *conv1d_->bias(), x_init, seq_idx, /*silu=*/true);
  std::vector<Variable> dbl = ag::split(x_proj_->forward(xc), {R, N, N}, 2);  // dt_low, B, C
  Variable delta = autocast_linear(dbl[0], dt_proj_->weight(), /*half_output=*/true);                        // (Bt, L, Di), bias in the scan
  Variable B = ag::reshape(ag::contiguous(dbl[1]), {Bt, L, 1, N});
  Variable C = ag::reshape(ag::contiguous(dbl[2]), {Bt, L, 1, N});
  Variable A = ag::neg(ag::exp(*A_log_));
  kernels::ScanOptions so;
  so.delta_softplus = true;
  so.deterministic = opt_.deterministic;
  kernels::ScanResult scan = kernels::selective_scan(xc, delta, A, B, C, *D_, z, *dt_proj_->bias(), h0, seq_idx, so);

  if (state) {
    // The conv state: the last W-1 conv inputs, cat(x_init, x)[L : L+W-1] along time.
    const Tensor xs = x.data();
    Tensor conv;
    if (L >= W - 1) {
      conv = xs.narrow(1, L - (W - 1), W - 1).contiguous();
    } else {
      Tensor xi = state->conv.defined() ? state->conv : Tensor::zeros({Bt, W - 1, Di}, xs.dtype(), xs.device());
      conv = cat({xi.narrow(1, L, W - 1 - L), xs}, 1);
    }
    if (seq_idx.defined()) {
      // Keep only the taps of the row's last document (x_init belongs to the first document).
      std::vector<int64_t> s = seq_idx.to_int_vector();
      std::vector<float> keep(size_t(Bt * (W - 1)));
      for (int64_t b = 0; b < Bt; ++b) {
        const int64_t last = s[size_t(b * L + L - 1)];
        for (int64_t k = 0; k < W - 1; ++k) {
          const int64_t t = L - (W - 1) + k;
          keep[size_t(b * (W - 1) + k)] = s[size_t(b * L + std::max<int64_t>(t, 0))] == last ? 1.f : 0.f;
        }
      }
      Tensor mask = Tensor::from_vector(keep, {Bt, W - 1, 1}, conv.device()).to(conv.dtype());
      conv = mul(conv, mask);
    }
    state->conv = conv;
    state->ssm = scan.h_last.data();
  }
  return out_proj_->forward(scan.y);
}

MambaBlockState MambaBlock::initial_state(int64_t batch) const {
  SSM_CHECK_INPUT(batch > 0, "MambaBlock::initial_state: batch must be positive, got ", batch);
  const Tensor& p = A_log_->data();
  const DType sdt = p.dtype() == DType::f64 ? DType::f64 : DType::f32;
  const DType cdt = in_proj_->weight().data().dtype();
  return MambaBlockState{Tensor::zeros({batch, opt_.d_conv - 1, d_inner_}, cdt, p.device()),
                         Tensor::zeros({batch, d_inner_, opt_.d_state}, sdt, p.device())};
}

Tensor MambaBlock::step(const Tensor& x_t, Tensor& conv_state, Tensor& ssm_state) {
  SSM_CHECK_INPUT(x_t.defined() && x_t.dim() == 2 && x_t.size(1) == d_model_, "MambaBlock::step: expected x_t (Bt, ",
                  d_model_, "), got ", x_t.defined() ? shape_str(x_t.shape()) : std::string("undefined"));
  const int64_t Bt = x_t.size(0), Di = d_inner_, R = dt_rank_, N = opt_.d_state, W = opt_.d_conv;
  if (!conv_state.defined() || !ssm_state.defined()) {
    MambaBlockState z = initial_state(Bt);
    if (!conv_state.defined()) conv_state = z.conv;
    if (!ssm_state.defined()) ssm_state = z.ssm;
  }
  SSM_CHECK_INPUT(conv_state.shape() == Shape({Bt, W - 1, Di}), "MambaBlock::step: conv state ",
                  shape_str(conv_state.shape()), " must be [", Bt, ", ", W - 1, ", ", Di, "]; use initial_state(", Bt,
                  ")");
  SSM_CHECK_INPUT(ssm_state.shape() == Shape({Bt, Di, N}), "MambaBlock::step: ssm state ",
                  shape_str(ssm_state.shape()), " must be [", Bt, ", ", Di, ", ", N, "]; use initial_state(", Bt, ")");
  ag::NoGradGuard no_grad;
  const DType pdt = in_proj_->weight().data().dtype();
  const Tensor x_in = x_t.dtype() == pdt ? x_t : x_t.to(pdt);

  // xz = in_proj(x_t): x, z (Bt, Di).
  Tensor xz = matmul(x_in, in_proj_->weight().data(), false, true);
  Tensor x = xz.narrow(1, 0, Di), z = xz.narrow(1, Di, Di);
  // Conv over the window [conv_state, x] (Bt, W, Di): xc = silu(b + sum_k w[:, k] window[k]).
  Tensor window = cat({conv_state.dtype() == pdt ? conv_state : conv_state.to(pdt), x.unsqueeze(1)}, 1);
  conv_state = window.narrow(1, 1, W - 1).contiguous();
  Tensor taps = conv1d_->weight().data().transpose(0, 1).unsqueeze(0);  // (1, W, Di)
  Tensor xc = unary(UnaryOp::Silu, add(sum(mul(window, taps), {1}), conv1d_->bias()->data()));
  // x_dbl = x_proj(xc) -> dt_low (R), B (N), C (N); dt = softplus(dt_proj(dt_low) + bias).
  Tensor dbl = matmul(xc, x_proj_->weight().data(), false, true);
  Tensor dt_low = dbl.narrow(1, 0, R).contiguous();
  Tensor Bm = dbl.narrow(1, R, N), Cm = dbl.narrow(1, R + N, N);
  Tensor dt = unary(UnaryOp::Softplus, add(matmul(dt_low, dt_proj_->weight().data(), false, true),
                                           dt_proj_->bias()->data()));
  // h = exp(dt A) h + dt B xc  (in the state dtype), y = C h + D xc, y *= silu(z).
  const DType sdt = ssm_state.dtype();
  auto st = [sdt](const Tensor& t) { return t.dtype() == sdt ? t : t.to(sdt); };
  Tensor A = mul(exp(st(A_log_->data())), -1.0);        // (Di, N)
  Tensor dA = exp(mul(st(dt).unsqueeze(2), A));          // (Bt, Di, N)
  Tensor dBx = mul(st(mul(dt, xc)).unsqueeze(2), st(Bm).unsqueeze(1));
  ssm_state = add(mul(dA, ssm_state), dBx);
  Tensor y = sum(mul(ssm_state, st(Cm).unsqueeze(1)), {2});  // (Bt, Di)
  y = y.dtype() == pdt ? y : y.to(pdt);
  y = add(y, mul(xc, D_->data()));
  y = mul(y, unary(UnaryOp::Silu, z));
  return matmul(y, out_proj_->weight().data(), false, true);
}

}  // namespace ssm::nn
