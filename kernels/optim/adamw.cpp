// AdamW / SGD updates on the CPU, input checks and dispatch. Math in adamw.h.
#include "kernels/optim/adamw.h"

#include <cmath>

#include "kernels/optim/optim_cuda.h"

namespace ssm::kernels {
namespace {

void check_like(const char* op, const Tensor& param, const Tensor& t, const char* name, bool grad) {
  SSM_CHECK_INPUT(t.defined(), op, ": ", name, " is undefined");
  SSM_CHECK_INPUT(t.shape() == param.shape(), op, ": ", name, " ", shape_str(t.shape()), " must match param ",
                  shape_str(param.shape()));
  SSM_CHECK_INPUT(t.device() == param.device(), op, ": ", name, " is on ", t.device().str(), " but param is on ",
                  param.device().str());
  SSM_CHECK_INPUT(t.is_contiguous(), op, ": ", name, " ", shape_str(t.shape()), " must be contiguous");
  const bool ok = t.dtype() == param.dtype() || (grad && param.device().is_cuda() && t.dtype() == DType::bf16 &&
                                                 param.dtype() == DType::f32);
  SSM_CHECK_INPUT(ok, op, ": ", name, " is ", dtype_name(t.dtype()), " but param is ", dtype_name(param.dtype()),
                  grad ? " (grad may be bf16 only for f32 params on CUDA)" : "");
}

void check_param(const char* op, const Tensor& param) {
  SSM_CHECK_INPUT(param.defined(), op, ": param is undefined");
  SSM_CHECK_INPUT(param.is_contiguous(), op, ": param ", shape_str(param.shape()), " must be contiguous");
  const bool ok = param.dtype() == DType::f32 || (param.device().is_cpu() && param.dtype() == DType::f64);
  SSM_CHECK_INPUT(ok, op, ": param dtype ", dtype_name(param.dtype()), " not supported (f32; f64 on the CPU)");
}

template <typename T>
void adamw_cpu(int64_t n, T* p, const T* g, T* m, T* v, T decay, T b1, T b2, T step_size, T inv_sqrt_bc2, T eps) {
#pragma omp parallel for simd schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) {
    const T gi = g[i];
    const T mi = b1 * m[i] + (1 - b1) * gi;
    const T vi = b2 * v[i] + (1 - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - step_size * mi / (std::sqrt(vi) * inv_sqrt_bc2 + eps);
  }
}

template <typename T>
void sgd_cpu(int64_t n, T* p, const T* g, T* buf, T lr, T mom, T wd, bool nesterov) {
#pragma omp parallel for simd schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) {
    T d = g[i] + wd * p[i];
    if (buf) {
      const T bi = mom * buf[i] + d;
      buf[i] = bi;
      d = nesterov ? d + mom * bi : bi;
    }
    p[i] -= lr * d;
  }
}

}  // namespace

namespace {
// AdamW's folded constants for one parameter: decay 1 - lr wd, step size lr / (1 - b1^t), 1 / sqrt(1 - b2^t).
struct AdamConstants {
  double decay, step_size, inv_sqrt_bc2;
};
AdamConstants checked_adamw(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                            double lr, double beta1, double beta2, double weight_decay, int64_t step) {
  const char* op = "adamw_step";
  check_param(op, param);
  check_like(op, param, grad, "grad", true);
  check_like(op, param, exp_avg, "exp_avg", false);
  check_like(op, param, exp_avg_sq, "exp_avg_sq", false);
  SSM_CHECK_INPUT(step >= 1, op, ": step must be >= 1 (the first step is 1), got ", step);
  SSM_CHECK_INPUT(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, op, ": betas must be in [0, 1), got (", beta1,
                  ", ", beta2, ")");
  const double bc1 = 1 - std::pow(beta1, double(step)), bc2 = 1 - std::pow(beta2, double(step));
  return {1 - lr * weight_decay, lr / bc1, 1 / std::sqrt(bc2)};
}
}  // namespace

void adamw_step(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq, double lr, double beta1,
                double beta2, double eps, double weight_decay, int64_t step) {
  const AdamConstants k = checked_adamw(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, weight_decay, step);
  const double decay = k.decay, step_size = k.step_size, inv_sqrt_bc2 = k.inv_sqrt_bc2;
  const int64_t n = param.numel();
  if (n == 0) return;
#ifdef SSM_WITH_CUDA
  if (param.device().is_cuda()) {
    cuda::adamw_step(param, grad, exp_avg, exp_avg_sq, float(decay), float(beta1), float(beta2), float(step_size),
                     float(inv_sqrt_bc2), float(eps));
    return;
  }
#endif
  if (param.dtype() == DType::f32)
    adamw_cpu<float>(n, param.data<float>(), grad.data<float>(), exp_avg.data<float>(), exp_avg_sq.data<float>(),
                     float(decay), float(beta1), float(beta2), float(step_size), float(inv_sqrt_bc2), float(eps));
  else
    adamw_cpu<double>(n, param.data<double>(), grad.data<double>(), exp_avg.data<double>(),
                      exp_avg_sq.data<double>(), decay, beta1, beta2, step_size, inv_sqrt_bc2, eps);
}

void adamw_step_many(const std::vector<AdamWParam>& params, double beta1, double beta2, double eps) {
  std::vector<AdamConstants> ks;
  for (const AdamWParam& q : params)
    ks.push_back(checked_adamw(*q.param, *q.grad, *q.exp_avg, *q.exp_avg_sq, q.lr, beta1, beta2, q.weight_decay, q.step));
#ifdef SSM_WITH_CUDA
  // The parameters on the first CUDA device in one list; the rest one by one.
  std::vector<cuda::AdamWListItem> list;
  Device dev = Device::cpu();
  std::vector<bool> done(params.size(), false);
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = *params[i].param;
    if (!p.device().is_cuda() || (dev.is_cuda() && !(p.device() == dev))) continue;
    dev = p.device();
    list.push_back({params[i].param, params[i].grad, params[i].exp_avg, params[i].exp_avg_sq, float(ks[i].decay),
                    float(ks[i].step_size), float(ks[i].inv_sqrt_bc2)});
    done[i] = true;
  }
  if (!list.empty()) cuda::adamw_step_list(list, float(beta1), float(beta2), float(eps));  // as adamw_step: on the current device's stream
#else
  const std::vector<bool> done(params.size(), false);
#endif
  for (size_t i = 0; i < params.size(); ++i)
    if (!done[i])
      adamw_step(*params[i].param, *params[i].grad, *params[i].exp_avg, *params[i].exp_avg_sq, params[i].lr, beta1,
                 beta2, eps, params[i].weight_decay, params[i].step);
}

void sgd_step(Tensor& param, const Tensor& grad, Tensor& momentum_buf, double lr, double momentum,
              double weight_decay, bool nesterov) {
  const char* op = "sgd_step";
  check_param(op, param);
  check_like(op, param, grad, "grad", true);
  const bool use_buf = momentum != 0;
  if (use_buf) check_like(op, param, momentum_buf, "momentum_buf", false);
  SSM_CHECK_INPUT(!nesterov || use_buf, op, ": nesterov needs momentum != 0");
  const int64_t n = param.numel();
  if (n == 0) return;
#ifdef SSM_WITH_CUDA
  if (param.device().is_cuda()) {
    cuda::sgd_step(param, grad, use_buf ? &momentum_buf : nullptr, float(lr), float(momentum), float(weight_decay),
                   nesterov);
    return;
  }
#endif
  if (param.dtype() == DType::f32)
    sgd_cpu<float>(n, param.data<float>(), grad.data<float>(), use_buf ? momentum_buf.data<float>() : nullptr,
                   float(lr), float(momentum), float(weight_decay), nesterov);
  else
    sgd_cpu<double>(n, param.data<double>(), grad.data<double>(), use_buf ? momentum_buf.data<double>() : nullptr,
                    lr, momentum, weight_decay, nesterov);
}

}  // namespace ssm::kernels
