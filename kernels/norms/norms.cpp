// LayerNorm / RMSNorm on the CPU, input checks, dispatch and the autograd wrappers. Math in norms.h.
#include "kernels/norms/norms.h"

#include <algorithm>
#include <cmath>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "kernels/norms/norms_cuda.h"

namespace ssm::kernels {
namespace {

const char* op_name(bool rms) { return rms ? "rms_norm" : "layer_norm"; }

void check_param(const Tensor& p, const char* pname, const Tensor& x, bool rms) {
  if (!p.defined()) return;
  const int64_t C = x.size(-1);
  SSM_CHECK_INPUT(p.dim() == 1 && p.size(0) == C, op_name(rms), ": ", pname, " must be (C) = [", C, "] for x ",
                  shape_str(x.shape()), ", got ", shape_str(p.shape()));
  SSM_CHECK_INPUT(p.device() == x.device(), op_name(rms), ": ", pname, " is on ", p.device().str(), " but x is on ",
                  x.device().str());
  const bool same = p.dtype() == x.dtype();
  const bool f32_param_half_x =
      x.device().is_cuda() && p.dtype() == DType::f32 && (x.dtype() == DType::bf16 || x.dtype() == DType::f16);
  SSM_CHECK_INPUT(same || f32_param_half_x, op_name(rms), ": ", pname, " is ", dtype_name(p.dtype()), " but x is ",
                  dtype_name(x.dtype()), " (must match, or be f32 with bf16/f16 x on CUDA)");
}

void check_x(const Tensor& x, bool rms) {
  SSM_CHECK_INPUT(x.defined(), op_name(rms), ": x is undefined");
  SSM_CHECK_INPUT(x.dim() >= 1 && x.size(-1) >= 1, op_name(rms), ": x must have a non-empty last dim, got ",
                  shape_str(x.shape()));
  const DType t = x.dtype();
  const bool ok = t == DType::f32 || t == DType::f64 || (x.device().is_cuda() && (t == DType::bf16 || t == DType::f16));
  SSM_CHECK_INPUT(ok, op_name(rms), ": x dtype ", dtype_name(t), " not supported on ", x.device().str(),
                  " (f32, f64; bf16/f16 on CUDA)");
}

template <typename T>
void cpu_forward(int64_t rows, int64_t C, const T* x, const T* w, const T* b, double eps, bool rms, T* y, T* mean,
                 T* rstd) {
#pragma omp parallel for schedule(static) if (rows * C > 4096)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * C;
    double mu = 0;
    if (!rms) {
      for (int64_t c = 0; c < C; ++c) mu += xr[c];
      mu /= double(C);
    }
    double ss = 0;
    for (int64_t c = 0; c < C; ++c) ss += (xr[c] - mu) * (xr[c] - mu);
    const double rs = 1.0 / std::sqrt(ss / double(C) + eps);
    if (mean) mean[r] = T(mu);
    rstd[r] = T(rs);
    const T muT = T(mu), rsT = T(rs);
    T* yr = y + r * C;
    for (int64_t c = 0; c < C; ++c) {
      T v = (xr[c] - muT) * rsT;
      if (w) v *= w[c];
      if (b) v += b[c];
      yr[c] = v;
    }
  }
}

// Rows split into one contiguous chunk per thread; grad_w/grad_b partial sums per chunk are added in
// chunk order, so the result does not depend on scheduling.
template <typename T>
void cpu_backward(int64_t rows, int64_t C, const T* gy, const T* x, const T* w, const T* mean, const T* rstd,
                  bool rms, T* gx, T* gw, T* gb) {
  int nchunks = 1;
#ifdef _OPENMP
  nchunks = std::max(1, std::min<int>(omp_get_max_threads(), int(rows)));
#endif
  const bool need_p = gw || gb;
  std::vector<double> pw(need_p ? size_t(nchunks * C) : 0, 0.0), pb(need_p ? size_t(nchunks * C) : 0, 0.0);
#pragma omp parallel for schedule(static, 1) num_threads(nchunks) if (rows * C > 4096)
  for (int ch = 0; ch < nchunks; ++ch) {
    const int64_t r0 = rows * ch / nchunks, r1 = rows * (ch + 1) / nchunks;
    double* pwc = need_p ? pw.data() + size_t(ch) * C : nullptr;
    double* pbc = need_p ? pb.data() + size_t(ch) * C : nullptr;
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * C;
      const T* gr = gy + r * C;
      const double mu = rms ? 0.0 : double(mean[r]), rs = double(rstd[r]);
      if (need_p)
        for (int64_t c = 0; c < C; ++c) {
          const double xh = (xr[c] - mu) * rs;
          pwc[c] += gr[c] * xh;
          pbc[c] += gr[c];
        }
      if (gx) {
        double s1 = 0, s2 = 0;  // sum gxh, sum gxh xh
        for (int64_t c = 0; c < C; ++c) {
          const double gxh = w ? double(gr[c]) * w[c] : double(gr[c]);
          s1 += gxh;
          s2 += gxh * (xr[c] - mu) * rs;
        }
        const double m1 = rms ? 0.0 : s1 / double(C), m2 = s2 / double(C);
        T* o = gx + r * C;
        for (int64_t c = 0; c < C; ++c) {
          const double gxh = w ? double(gr[c]) * w[c] : double(gr[c]);
          o[c] = T(rs * (gxh - m1 - (xr[c] - mu) * rs * m2));
        }
      }
    }
  }
  if (!need_p) return;
  for (int64_t c = 0; c < C; ++c) {
    double sw = 0, sb = 0;
    for (int ch = 0; ch < nchunks; ++ch) {
      sw += pw[size_t(ch) * C + c];
      sb += pb[size_t(ch) * C + c];
    }
    if (gw) gw[c] = T(sw);
    if (gb) gb[c] = T(sb);
  }
}

template <typename T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}
template <typename T>
T* ptr_or_null(Tensor* t) {
  return t ? t->data<T>() : nullptr;
}

}  // namespace

NormForward norm_forward(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, double eps, bool rms) {
  check_x(x_in, rms);
  check_param(w_in, "weight", x_in, rms);
  check_param(b_in, "bias", x_in, rms);
  SSM_CHECK_INPUT(!(rms && b_in.defined()), "rms_norm: takes no bias");
  SSM_CHECK_INPUT(eps >= 0, op_name(rms), ": eps must be >= 0, got ", eps);
  const Tensor x = x_in.contiguous();
  const Tensor w = w_in.defined() ? w_in.contiguous() : Tensor();
  const Tensor b = b_in.defined() ? b_in.contiguous() : Tensor();
  const int64_t C = x.size(-1), rows = x.numel() / C;
  const DType stat = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  NormForward out;
  out.y = Tensor::empty(x.shape(), x.dtype(), x.device());
  out.rstd = Tensor::empty({rows}, stat, x.device());
  if (!rms) out.mean = Tensor::empty({rows}, stat, x.device());
  if (rows == 0) return out;
#ifdef SSM_WITH_CUDA
  if (x.device().is_cuda()) {
    cuda::norm_forward(x, w, b, eps, rms, out.y, out.mean, out.rstd);
    return out;
  }
#endif
  SSM_CHECK_INPUT(x.device().is_cpu(), op_name(rms), ": x is on ", x.device().str(), " but this build has no CUDA");
  if (x.dtype() == DType::f32)
    cpu_forward<float>(rows, C, x.data<float>(), ptr_or_null<float>(w), ptr_or_null<float>(b), eps, rms,
                       out.y.data<float>(), rms ? nullptr : out.mean.data<float>(), out.rstd.data<float>());
  else
    cpu_forward<double>(rows, C, x.data<double>(), ptr_or_null<double>(w), ptr_or_null<double>(b), eps, rms,
                        out.y.data<double>(), rms ? nullptr : out.mean.data<double>(), out.rstd.data<double>());
  return out;
}

NormGrads norm_backward(const Tensor& gy_in, const Tensor& x_in, const Tensor& w_in, const Tensor& mean,
                        const Tensor& rstd, bool rms, bool want_x, bool want_w, bool want_b) {
  check_x(x_in, rms);
  check_param(w_in, "weight", x_in, rms);
  SSM_CHECK_INPUT(gy_in.shape() == x_in.shape(), op_name(rms), " backward: grad_y ", shape_str(gy_in.shape()),
                  " must match x ", shape_str(x_in.shape()));
  const Tensor x = x_in.contiguous();
  const Tensor gy = (gy_in.dtype() == x.dtype() ? gy_in : gy_in.to(x.dtype())).contiguous();
  const Tensor w = w_in.defined() ? w_in.contiguous() : Tensor();
  const int64_t C = x.size(-1), rows = x.numel() / C;
  const DType pdt = w.defined() ? w.dtype() : x.dtype();
  NormGrads g;
  if (want_x) g.x = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (want_w) g.weight = Tensor::zeros({C}, pdt, x.device());
  if (want_b) g.bias = Tensor::zeros({C}, pdt, x.device());
  if (rows == 0 || !(want_x || want_w || want_b)) return g;
#ifdef SSM_WITH_CUDA
  if (x.device().is_cuda()) {
    cuda::norm_backward(gy, x, w, mean, rstd, rms, want_x ? &g.x : nullptr, want_w ? &g.weight : nullptr,
                        want_b ? &g.bias : nullptr);
    return g;
  }
#endif
  if (x.dtype() == DType::f32)
    cpu_backward<float>(rows, C, gy.data<float>(), x.data<float>(), ptr_or_null<float>(w),
                        rms ? nullptr : mean.data<float>(), rstd.data<float>(), rms, ptr_or_null<float>(want_x ? &g.x : nullptr),
                        ptr_or_null<float>(want_w ? &g.weight : nullptr), ptr_or_null<float>(want_b ? &g.bias : nullptr));
  else
    cpu_backward<double>(rows, C, gy.data<double>(), x.data<double>(), ptr_or_null<double>(w),
                         rms ? nullptr : mean.data<double>(), rstd.data<double>(), rms,
                         ptr_or_null<double>(want_x ? &g.x : nullptr), ptr_or_null<double>(want_w ? &g.weight : nullptr),
                         ptr_or_null<double>(want_b ? &g.bias : nullptr));
  return g;
}

namespace {

// Builds the output Variable; the inputs list holds only the defined Variables (x, then weight, then bias).
ag::Variable norm_variable(const ag::Variable& x, const ag::Variable& weight, const ag::Variable& bias, double eps,
                           bool rms) {
  SSM_CHECK_INPUT(x.defined(), op_name(rms), ": x is undefined");
  const Tensor w = weight.defined() ? weight.data() : Tensor();
  const Tensor b = bias.defined() ? bias.data() : Tensor();
  NormForward f = norm_forward(x.data(), w, b, eps, rms);
  std::vector<ag::Variable> inputs{x};
  const int iw = weight.defined() ? int(inputs.size()) : -1;
  if (weight.defined()) inputs.push_back(weight);
  const int ib = bias.defined() ? int(inputs.size()) : -1;
  if (bias.defined()) inputs.push_back(bias);
  Tensor mean = f.mean, rstd = f.rstd;
  return ag::Variable(f.y, std::move(inputs), [mean, rstd, rms, iw, ib](std::vector<ag::Variable>& in, const Tensor& gy) {
    const bool want_x = in[0].requires_grad();
    const bool want_w = iw >= 0 && in[size_t(iw)].requires_grad();
    const bool want_b = ib >= 0 && in[size_t(ib)].requires_grad();
    const Tensor w = iw >= 0 ? in[size_t(iw)].data() : Tensor();
    NormGrads g = norm_backward(gy, in[0].data(), w, mean, rstd, rms, want_x, want_w, want_b);
    if (want_x) in[0].add_grad(g.x);
    if (want_w) in[size_t(iw)].add_grad(g.weight);
    if (want_b) in[size_t(ib)].add_grad(g.bias);
  });
}

}  // namespace

ag::Variable layer_norm(const ag::Variable& x, const ag::Variable& weight, const ag::Variable& bias, double eps) {
  return norm_variable(x, weight, bias, eps, false);
}

ag::Variable rms_norm(const ag::Variable& x, const ag::Variable& weight, double eps) {
  return norm_variable(x, weight, ag::Variable(), eps, true);
}

}  // namespace ssm::kernels
