// S4D kernel on the CPU, input checks, dispatch and the autograd wrapper. Math in s4d_kernel.h.
#include "kernels/s4/s4d_kernel.h"

#include <cmath>
#include <complex>
#include <vector>

#include "kernels/s4/s4_cuda.h"

namespace ssm::kernels {
namespace {

using cd = std::complex<double>;
constexpr int64_t kAnchor = 16;  // exp(dtA l) computed directly every kAnchor steps

struct S4Dims {
  int64_t H, M;
};

S4Dims check_s4d(const Tensor& log_dt, const Tensor& lar, const Tensor& aim, const Tensor& C) {
  SSM_CHECK_INPUT(log_dt.defined() && lar.defined() && aim.defined() && C.defined(),
                  "s4d_kernel: an input is undefined");
  SSM_CHECK_INPUT(log_dt.dim() == 1, "s4d_kernel: log_dt must be (H), got ", shape_str(log_dt.shape()));
  const int64_t H = log_dt.size(0);
  SSM_CHECK_INPUT(lar.dim() == 2 && lar.size(0) == H, "s4d_kernel: log_A_real must be (H, M) with H = ", H,
                  " (from log_dt ", shape_str(log_dt.shape()), "), got ", shape_str(lar.shape()));
  const int64_t M = lar.size(1);
  SSM_CHECK_INPUT(aim.shape() == lar.shape(), "s4d_kernel: A_imag ", shape_str(aim.shape()),
                  " must match log_A_real ", shape_str(lar.shape()));
  SSM_CHECK_INPUT(C.dim() == 3 && C.size(0) == H && C.size(1) == M && C.size(2) == 2, "s4d_kernel: C must be (H, M, 2) = ",
                  shape_str({H, M, 2}), ", got ", shape_str(C.shape()));
  const DType dt = log_dt.dtype();
  SSM_CHECK_INPUT(dt == DType::f32 || dt == DType::f64, "s4d_kernel: dtype ", dtype_name(dt),
                  " not supported (f32 or f64)");
  for (const Tensor* t : {&lar, &aim, &C}) {
    SSM_CHECK_INPUT(t->dtype() == dt, "s4d_kernel: inputs must share one dtype; log_dt is ", dtype_name(dt),
                    " but a ", shape_str(t->shape()), " input is ", dtype_name(t->dtype()));
    SSM_CHECK_INPUT(t->device() == log_dt.device(), "s4d_kernel: inputs must be on one device; log_dt is on ",
                    log_dt.device().str(), " but a ", shape_str(t->shape()), " input is on ", t->device().str());
  }
  return {H, M};
}

// Per-mode quantities of the discretisation.
struct Mode {
  double dt;
  cd A, dtA, E, C, Ct;
};

template <typename T>
Mode mode(const T* log_dt, const T* lar, const T* aim, const T* C, int64_t h, int64_t M, int64_t m) {
  Mode q;
  q.dt = std::exp(double(log_dt[h]));
  const int64_t hm = h * M + m;
  q.A = cd(-std::exp(double(lar[hm])), double(aim[hm]));
  q.dtA = q.dt * q.A;
  q.E = std::exp(q.dtA);
  q.C = cd(double(C[2 * hm]), double(C[2 * hm + 1]));
  q.Ct = q.C * (q.E - 1.0) / q.A;
  return q;
}

// z[l] = exp(dtA l) for l < L: direct at multiples of kAnchor, times E in between.
void powers(const Mode& q, int64_t L, std::vector<cd>& z) {
  for (int64_t l = 0; l < L; ++l)
    z[size_t(l)] = (l % kAnchor == 0) ? std::exp(q.dtA * double(l)) : z[size_t(l - 1)] * q.E;
}

template <typename T>
void cpu_forward(const S4Dims& d, int64_t L, const T* log_dt, const T* lar, const T* aim, const T* C, T* K) {
#pragma omp parallel
  {
    std::vector<cd> z(static_cast<size_t>(L));
    std::vector<double> acc(static_cast<size_t>(L));
#pragma omp for schedule(static)
    for (int64_t h = 0; h < d.H; ++h) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t m = 0; m < d.M; ++m) {
        const Mode q = mode(log_dt, lar, aim, C, h, d.M, m);
        powers(q, L, z);
        const double cr = 2 * q.Ct.real(), ci = 2 * q.Ct.imag();
        for (int64_t l = 0; l < L; ++l) acc[size_t(l)] += cr * z[size_t(l)].real() - ci * z[size_t(l)].imag();
      }
      for (int64_t l = 0; l < L; ++l) K[h * L + l] = T(acc[size_t(l)]);
    }
  }
}

template <typename T>
void cpu_backward(const S4Dims& d, int64_t L, const T* G, const T* log_dt, const T* lar, const T* aim, const T* C,
                  T* g_log_dt, T* g_lar, T* g_aim, T* g_C) {
#pragma omp parallel
  {
    std::vector<cd> z(static_cast<size_t>(L));
#pragma omp for schedule(static)
    for (int64_t h = 0; h < d.H; ++h) {
      double g_dt = 0;
      for (int64_t m = 0; m < d.M; ++m) {
        const Mode q = mode(log_dt, lar, aim, C, h, d.M, m);
        powers(q, L, z);
        cd S0 = 0, S1 = 0;
        for (int64_t l = 0; l < L; ++l) {
          const cd gz = double(G[h * L + l]) * z[size_t(l)];
          S0 += gz;
          S1 += double(l) * gz;
        }
        const cd g_Ct = 2.0 * std::conj(S0);
        const cd g_Cc = g_Ct * std::conj((q.E - 1.0) / q.A);
        const cd g_dtA = 2.0 * std::conj(q.Ct * S1) + g_Ct * std::conj(q.C * q.E / q.A);
        const cd g_A = -g_Ct * std::conj(q.Ct / q.A) + q.dt * g_dtA;
        g_dt += (g_dtA * std::conj(q.A)).real();
        const int64_t hm = h * d.M + m;
        g_lar[hm] = T(q.A.real() * g_A.real());  // d(-exp(lar))/d lar = -exp(lar) = Re A
        g_aim[hm] = T(g_A.imag());
        g_C[2 * hm] = T(g_Cc.real());
        g_C[2 * hm + 1] = T(g_Cc.imag());
      }
      g_log_dt[h] = T(std::exp(double(log_dt[h])) * g_dt);
    }
  }
}

}  // namespace

Tensor s4d_kernel_forward(const Tensor& log_dt_in, const Tensor& lar_in, const Tensor& aim_in, const Tensor& C_in,
                          int64_t L) {
  const S4Dims d = check_s4d(log_dt_in, lar_in, aim_in, C_in);
  SSM_CHECK_INPUT(L >= 1, "s4d_kernel: L must be >= 1, got ", L);
  const Tensor log_dt = log_dt_in.contiguous(), lar = lar_in.contiguous(), aim = aim_in.contiguous(),
               C = C_in.contiguous();
  Tensor K = Tensor::empty({d.H, L}, log_dt.dtype(), log_dt.device());
  if (K.numel() == 0) return K;
#ifdef SSM_WITH_CUDA
  if (K.device().is_cuda()) {
    cuda::s4d_kernel_forward(K, log_dt, lar, aim, C);
    return K;
  }
#endif
  SSM_CHECK_INPUT(K.device().is_cpu(), "s4d_kernel: inputs are on ", K.device().str(), " but this build has no CUDA");
  if (K.dtype() == DType::f32)
    cpu_forward<float>(d, L, log_dt.data<float>(), lar.data<float>(), aim.data<float>(), C.data<float>(),
                       K.data<float>());
  else
    cpu_forward<double>(d, L, log_dt.data<double>(), lar.data<double>(), aim.data<double>(), C.data<double>(),
                        K.data<double>());
  return K;
}

S4DKernelGrads s4d_kernel_backward(const Tensor& grad_K, const Tensor& log_dt_in, const Tensor& lar_in,
                                   const Tensor& aim_in, const Tensor& C_in) {
  const S4Dims d = check_s4d(log_dt_in, lar_in, aim_in, C_in);
  SSM_CHECK_INPUT(grad_K.dim() == 2 && grad_K.size(0) == d.H, "s4d_kernel backward: grad_K must be (H = ", d.H,
                  ", L), got ", shape_str(grad_K.shape()));
  const int64_t L = grad_K.size(1);
  const DType dt = log_dt_in.dtype();
  const Tensor G = (grad_K.dtype() == dt ? grad_K : grad_K.to(dt)).contiguous();
  const Tensor log_dt = log_dt_in.contiguous(), lar = lar_in.contiguous(), aim = aim_in.contiguous(),
               C = C_in.contiguous();
  const Device dev = log_dt.device();
  S4DKernelGrads g{Tensor::zeros(log_dt.shape(), dt, dev), Tensor::zeros(lar.shape(), dt, dev),
                   Tensor::zeros(aim.shape(), dt, dev), Tensor::zeros(C.shape(), dt, dev)};
  if (d.H == 0 || L == 0) return g;
#ifdef SSM_WITH_CUDA
  if (dev.is_cuda()) {
    cuda::s4d_kernel_backward(G, log_dt, lar, aim, C, g.log_dt, g.log_A_real, g.A_imag, g.C);
    return g;
  }
#endif
  if (dt == DType::f32)
    cpu_backward<float>(d, L, G.data<float>(), log_dt.data<float>(), lar.data<float>(), aim.data<float>(),
                        C.data<float>(), g.log_dt.data<float>(), g.log_A_real.data<float>(), g.A_imag.data<float>(),
                        g.C.data<float>());
  else
    cpu_backward<double>(d, L, G.data<double>(), log_dt.data<double>(), lar.data<double>(), aim.data<double>(),
                         C.data<double>(), g.log_dt.data<double>(), g.log_A_real.data<double>(),
                         g.A_imag.data<double>(), g.C.data<double>());
  return g;
}

ag::Variable s4d_kernel(const ag::Variable& log_dt, const ag::Variable& log_A_real, const ag::Variable& A_imag,
                        const ag::Variable& C, int64_t L) {
  SSM_CHECK_INPUT(log_dt.defined() && log_A_real.defined() && A_imag.defined() && C.defined(),
                  "s4d_kernel: an input (log_dt, log_A_real, A_imag or C) is undefined");
  Tensor K = s4d_kernel_forward(log_dt.data(), log_A_real.data(), A_imag.data(), C.data(), L);
  return ag::Variable(K, {log_dt, log_A_real, A_imag, C}, [](std::vector<ag::Variable>& in, const Tensor& gK) {
    S4DKernelGrads g = s4d_kernel_backward(gK, in[0].data(), in[1].data(), in[2].data(), in[3].data());
    if (in[0].requires_grad()) in[0].add_grad(g.log_dt);
    if (in[1].requires_grad()) in[1].add_grad(g.log_A_real);
    if (in[2].requires_grad()) in[2].add_grad(g.A_imag);
    if (in[3].requires_grad()) in[3].add_grad(g.C);
  });
}

}  // namespace ssm::kernels
