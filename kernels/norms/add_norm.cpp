// Fused residual add + norm: input checks, the CPU reference (composed from kernels/norms), dispatch
// and the autograd op. Math in add_norm.h.
#include "kernels/norms/add_norm.h"

#include "core/ops.h"
#include "kernels/norms/add_norm_cuda.h"
#include "kernels/norms/norms.h"

namespace ssm::kernels {
namespace {

const char* op_name(bool rms) { return rms ? "add_rms_norm" : "add_layer_norm"; }

DType acc_dtype(DType x) { return x == DType::f64 ? DType::f64 : DType::f32; }

bool is_float(DType t) { return t == DType::f32 || t == DType::f64 || t == DType::bf16 || t == DType::f16; }

void check_param(const Tensor& p, const char* pname, const Tensor& x, bool rms) {
  if (!p.defined()) return;
  const int64_t C = x.size(-1);
  SSM_CHECK_INPUT(p.dim() == 1 && p.size(0) == C, op_name(rms), ": ", pname, " must be (C) = [", C, "] for x ",
                  shape_str(x.shape()), ", got ", shape_str(p.shape()));
  SSM_CHECK_INPUT(p.device() == x.device(), op_name(rms), ": ", pname, " is on ", p.device().str(), " but x is on ",
                  x.device().str());
  const DType a = acc_dtype(x.dtype());
  // The CPU reference converts parameters to the accumulation dtype, so x's dtype is fine everywhere.
  const bool ok = p.dtype() == a || p.dtype() == x.dtype();
  SSM_CHECK_INPUT(ok, op_name(rms), ": ", pname, " is ", dtype_name(p.dtype()), " but x is ", dtype_name(x.dtype()),
                  " (must be ", dtype_name(a), " or x's dtype)");
}

void check_inputs(const Tensor& x, const Tensor& residual, const Tensor& weight, const Tensor& bias, double eps,
                  bool rms, DType out_dtype) {
  SSM_CHECK_INPUT(x.defined(), op_name(rms), ": x is undefined");
  SSM_CHECK_INPUT(x.dim() >= 1 && x.size(-1) >= 1, op_name(rms), ": x must have a non-empty last dim, got ",
                  shape_str(x.shape()));
  SSM_CHECK_INPUT(is_float(x.dtype()), op_name(rms), ": x must be f32, f64, bf16 or f16, got ",
                  dtype_name(x.dtype()));
  SSM_CHECK_INPUT(x.device().is_cpu() || x.device().is_cuda(), op_name(rms), ": unsupported device ",
                  x.device().str());
  const DType a = acc_dtype(x.dtype());
  if (residual.defined()) {
    SSM_CHECK_INPUT(residual.shape() == x.shape(), op_name(rms), ": residual ", shape_str(residual.shape()),
                    " must match x ", shape_str(x.shape()));
    SSM_CHECK_INPUT(residual.dtype() == a, op_name(rms), ": residual must be ", dtype_name(a), " for ",
                    dtype_name(x.dtype()), " x (the residual stream is kept in f32), got ",
                    dtype_name(residual.dtype()));
    SSM_CHECK_INPUT(residual.device() == x.device(), op_name(rms), ": residual is on ", residual.device().str(),
                    " but x is on ", x.device().str());
  }
  check_param(weight, "weight", x, rms);
  check_param(bias, "bias", x, rms);
  SSM_CHECK_INPUT(!(rms && bias.defined()), op_name(rms), ": RMSNorm takes no bias");
  SSM_CHECK_INPUT(eps >= 0, op_name(rms), ": eps must be >= 0, got ", eps);
  SSM_CHECK_INPUT(out_dtype == x.dtype() || (out_dtype == DType::bf16 && x.dtype() != DType::f64), op_name(rms),
                  ": the output dtype must be x's (", dtype_name(x.dtype()), ") or bf16, got ", dtype_name(out_dtype));
}

Tensor to_dtype(const Tensor& t, DType d) { return t.defined() && t.dtype() != d ? t.to(d) : t; }

}  // namespace

// r = residual + x in A; y = norm(r) through the CPU norm kernel, then cast to out_dtype.
AddNormForward add_norm_reference_forward(const Tensor& x_in, const Tensor& residual, const Tensor& weight,
                                          const Tensor& bias, double eps, bool rms, DType out_dtype) {
  check_inputs(x_in, residual, weight, bias, eps, rms, out_dtype);
  SSM_CHECK_INPUT(x_in.device().is_cpu(), op_name(rms), ": the reference runs on the CPU; x is on ",
                  x_in.device().str());
  const DType a = acc_dtype(x_in.dtype());
  const Tensor x = x_in.dtype() == a ? x_in : x_in.to(a);
  AddNormForward out;
  out.residual = residual.defined() ? add(x, residual) : (x.storage() == x_in.storage() ? x.clone() : x.contiguous());
  NormForward f = norm_forward(out.residual, to_dtype(weight, a), to_dtype(bias, a), eps, rms);
  out.y = to_dtype(f.y, out_dtype);
  out.mean = f.mean;
  out.rstd = f.rstd;
  return out;
}

AddNormGrads add_norm_reference_backward(const Tensor& grad_y, const Tensor& residual_out, const Tensor& weight,
                                         const Tensor& mean, const Tensor& rstd, bool rms, bool want_residual,
                                         bool want_weight, bool want_bias) {
  SSM_CHECK_INPUT(residual_out.device().is_cpu(), op_name(rms), " backward: the reference runs on the CPU");
  SSM_CHECK_INPUT(grad_y.shape() == residual_out.shape(), op_name(rms), " backward: grad_y ",
                  shape_str(grad_y.shape()), " must match r ", shape_str(residual_out.shape()));
  SSM_CHECK(!want_weight || weight.defined(), "add_norm backward: grad_weight wanted without a weight");
  const DType a = residual_out.dtype();
  NormGrads g = norm_backward(to_dtype(grad_y, a), residual_out, to_dtype(weight, a), mean, rstd, rms, want_residual,
                              want_weight, want_bias);
  const DType pdt = weight.defined() ? weight.dtype() : a;
  AddNormGrads out;
  out.residual = g.x;
  if (want_weight) out.weight = to_dtype(g.weight, pdt);
  if (want_bias) out.bias = to_dtype(g.bias, pdt);
  return out;
}

AddNormForward add_norm_forward(const Tensor& x_in, const Tensor& residual_in, const Tensor& weight_in,
                                const Tensor& bias_in, double eps, bool rms, DType out_dtype) {
  check_inputs(x_in, residual_in, weight_in, bias_in, eps, rms, out_dtype);
#ifdef SSM_WITH_CUDA
  if (x_in.device().is_cuda()) {
    const Tensor x = x_in.contiguous();
    const Tensor res = residual_in.defined() ? residual_in.contiguous() : Tensor();
    const Tensor w = weight_in.defined() ? weight_in.contiguous() : Tensor();
    const Tensor b = bias_in.defined() ? bias_in.contiguous() : Tensor();
    const DType a = acc_dtype(x.dtype());
    const int64_t C = x.size(-1), rows = x.numel() / C;
    AddNormForward out;
    out.y = Tensor::empty(x.shape(), out_dtype, x.device());
    out.residual = Tensor::empty(x.shape(), a, x.device());
    out.rstd = Tensor::empty({rows}, a, x.device());
    if (!rms) out.mean = Tensor::empty({rows}, a, x.device());
    if (rows > 0) cuda::add_norm_forward(x, res, w, b, eps, rms, out.y, out.residual, out.mean, out.rstd);
    return out;
  }
#endif
  SSM_CHECK_INPUT(x_in.device().is_cpu(), op_name(rms), ": x is on ", x_in.device().str(),
                  " but this build has no CUDA");
  return add_norm_reference_forward(x_in, residual_in, weight_in, bias_in, eps, rms, out_dtype);
}

AddNormGrads add_norm_backward(const Tensor& grad_y, const Tensor& residual_out, const Tensor& weight,
                               const Tensor& mean, const Tensor& rstd, bool rms, bool want_residual, bool want_weight,
                               bool want_bias) {
#ifdef SSM_WITH_CUDA
  if (residual_out.device().is_cuda()) {
    SSM_CHECK_INPUT(grad_y.shape() == residual_out.shape(), op_name(rms), " backward: grad_y ",
                    shape_str(grad_y.shape()), " must match r ", shape_str(residual_out.shape()));
    SSM_CHECK(!want_weight || weight.defined(), "add_norm backward: grad_weight wanted without a weight");
    const DType a = residual_out.dtype();
    // gy in y's dtype: f32 family for f32 accumulation (any of them), f64 with f64.
    Tensor gy = grad_y;
    if (a == DType::f64 ? gy.dtype() != DType::f64 : !(gy.dtype() == DType::f32 || gy.dtype() == DType::bf16 ||
                                                       gy.dtype() == DType::f16))
      gy = gy.to(a);
    gy = gy.contiguous();
    const Tensor r = residual_out.contiguous();
    const Tensor w = weight.defined() ? weight.contiguous() : Tensor();
    const int64_t C = r.size(-1), rows = r.numel() / C;
    const DType pdt = w.defined() ? w.dtype() : a;
    AddNormGrads g;
    if (want_residual) g.residual = Tensor::empty(r.shape(), a, r.device());
    if (want_weight) g.weight = Tensor::zeros({C}, pdt, r.device());
    if (want_bias) g.bias = Tensor::zeros({C}, pdt, r.device());
    if (rows > 0 && (want_residual || want_weight || want_bias))
      cuda::add_norm_backward(gy, r, w, mean, rstd, rms, want_residual ? &g.residual : nullptr,
                              want_weight ? &g.weight : nullptr, want_bias ? &g.bias : nullptr);
    return g;
  }
#endif
  return add_norm_reference_backward(grad_y, residual_out, weight, mean, rstd, rms, want_residual, want_weight,
                                     want_bias);
}

// Two graph nodes: r = residual + x (gradient g to both, add_grad casts to x's dtype), and
// y = norm(r) w + b (the fused backward gives the norm's part of dLoss/dr and grad_w / grad_b).
AddNormResult add_norm(const ag::Variable& x, const ag::Variable& residual, const ag::Variable& weight,
                       const ag::Variable& bias, double eps, bool rms, std::optional<DType> out_dtype) {
  SSM_CHECK_INPUT(x.defined(), op_name(rms), ": x is undefined");
  const Tensor res_t = residual.defined() ? residual.data() : Tensor();
  const Tensor w_t = weight.defined() ? weight.data() : Tensor();
  const Tensor b_t = bias.defined() ? bias.data() : Tensor();
  AddNormForward f = add_norm_forward(x.data(), res_t, w_t, b_t, eps, rms, out_dtype.value_or(x.dtype()));

  std::vector<ag::Variable> r_inputs{x};
  if (residual.defined()) r_inputs.push_back(residual);
  ag::Variable r(f.residual, std::move(r_inputs), [](std::vector<ag::Variable>& in, const Tensor& g) {
    for (auto& v : in)
      if (v.requires_grad()) v.add_grad(g);
  });

  std::vector<ag::Variable> y_inputs{r};
  const int iw = weight.defined() ? int(y_inputs.size()) : -1;
  if (weight.defined()) y_inputs.push_back(weight);
  const int ib = bias.defined() ? int(y_inputs.size()) : -1;
  if (bias.defined()) y_inputs.push_back(bias);
  Tensor mean = f.mean, rstd = f.rstd;
  ag::Variable y(f.y, std::move(y_inputs), [mean, rstd, rms, iw, ib](std::vector<ag::Variable>& in, const Tensor& gy) {
    const bool want_r = in[0].requires_grad();
    const bool want_w = iw >= 0 && in[size_t(iw)].requires_grad();
    const bool want_b = ib >= 0 && in[size_t(ib)].requires_grad();
    const Tensor w = iw >= 0 ? in[size_t(iw)].data() : Tensor();
    AddNormGrads g = add_norm_backward(gy, in[0].data(), w, mean, rstd, rms, want_r, want_w, want_b);
    if (want_r) in[0].add_grad(g.residual);
    if (want_w) in[size_t(iw)].add_grad(g.weight);
    if (want_b) in[size_t(ib)].add_grad(g.bias);
  });
  return AddNormResult{y, r};
}

}  // namespace ssm::kernels
