// LayerNorm / RMSNorm on CUDA (math in norms.h).
// Forward and grad_x: one warp per row (8 rows per 256-thread block); the row statistics are two
// warp all-reduces (sum, then the centred sum of squares) in the accumulation type A (f32, f64 for
// f64 inputs). grad_w / grad_b: a column reduction over rows in two deterministic passes: blocks of
// 32 columns x a chunk of rows write partial sums, then one thread per column adds the chunks in order.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "kernels/common/cuda_utils.cuh"
#include "kernels/norms/norm_device.cuh"
#include "kernels/norms/norms_cuda.h"

namespace ssm::kernels::cuda {
namespace {

// Typed loads/stores widening bf16/f16 to f32, rsqrt_t and the warp all-reduce: kernels/norms/norm_device.cuh.
using norm_detail::ld;
using norm_detail::rsqrt_t;
using norm_detail::st;
using norm_detail::norm_weight_grads;
using norm_detail::warp_allsum;

constexpr int kRowsPerBlock = 8;  // one warp per row

template <typename Tx, typename Tw, typename A>
__global__ void norm_fwd_kernel(const Tx* __restrict__ x, const Tw* __restrict__ w, const Tw* __restrict__ b,
                                Tx* __restrict__ y, A* __restrict__ mean, A* __restrict__ rstd, int64_t rows,
                                int64_t C, A eps, bool rms) {
  const int lane = threadIdx.x & 31;
  const int64_t r = int64_t(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (r >= rows) return;
  const Tx* xr = x + r * C;
  A mu = 0;
  if (!rms) {
    A s = 0;
    for (int64_t c = lane; c < C; c += 32) s += A(ld(xr, c));
    mu = warp_allsum(s) / A(C);
  }
  A ss = 0;
  for (int64_t c = lane; c < C; c += 32) {
    const A d = A(ld(xr, c)) - mu;
    ss += d * d;
  }
  const A rs = rsqrt_t(warp_allsum(ss) / A(C) + eps);
  if (lane == 0) {
    if (!rms) mean[r] = mu;
    rstd[r] = rs;
  }
  Tx* yr = y + r * C;
  for (int64_t c = lane; c < C; c += 32) {
    A v = (A(ld(xr, c)) - mu) * rs;
    if (w) v *= A(ld(w, c));
    if (b) v += A(ld(b, c));
    st(yr, c, v);
  }
}

template <typename Tx, typename Tw, typename A>
__global__ void norm_bwd_x_kernel(const Tx* __restrict__ gy, const Tx* __restrict__ x, const Tw* __restrict__ w,
                                  const A* __restrict__ mean, const A* __restrict__ rstd, Tx* __restrict__ gx,
                                  int64_t rows, int64_t C, bool rms) {
  const int lane = threadIdx.x & 31;
  const int64_t r = int64_t(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (r >= rows) return;
  const Tx* xr = x + r * C;
  const Tx* gr = gy + r * C;
  const A mu = rms ? A(0) : mean[r], rs = rstd[r];
  A s1 = 0, s2 = 0;
  for (int64_t c = lane; c < C; c += 32) {
    const A gxh = w ? A(ld(gr, c)) * A(ld(w, c)) : A(ld(gr, c));
    s1 += gxh;
    s2 += gxh * (A(ld(xr, c)) - mu) * rs;
  }
  const A m1 = rms ? A(0) : warp_allsum(s1) / A(C);
  const A m2 = warp_allsum(s2) / A(C);
  Tx* o = gx + r * C;
  for (int64_t c = lane; c < C; c += 32) {
    const A gxh = w ? A(ld(gr, c)) * A(ld(w, c)) : A(ld(gr, c));
    st(o, c, rs * (gxh - m1 - (A(ld(xr, c)) - mu) * rs * m2));
  }
}

template <typename T>
auto dptr(const Tensor& t) {
  using D = typename DevT<T>::type;
  return t.defined() ? static_cast<D*>(t.data_ptr()) : static_cast<D*>(nullptr);
}

// Calls fn.template run<Tx, Tw>() for the supported (x, weight) dtype pairs (host types).
template <typename Fn>
void dispatch(DType xt, DType wt, const Fn& fn) {
  if (xt == DType::f32) return fn.template run<float, float>();
  if (xt == DType::f64) return fn.template run<double, double>();
  if (xt == DType::bf16) {
    if (wt == DType::f32) return fn.template run<bf16_t, float>();
    return fn.template run<bf16_t, bf16_t>();
  }
  if (xt == DType::f16) {
    if (wt == DType::f32) return fn.template run<f16_t, float>();
    return fn.template run<f16_t, f16_t>();
  }
  SSM_CHECK(false, "norms: unsupported dtype ", dtype_name(xt));
}

template <typename T>
using AccOf = std::conditional_t<std::is_same_v<T, double>, double, float>;

struct ForwardLaunch {
  const Tensor &x, &weight, &bias;
  double eps;
  bool rms;
  Tensor &y, &mean, &rstd;
  template <typename Tx, typename Tw>
  void run() const {
    using A = AccOf<Tx>;
    const int64_t C = x.size(-1), rows = x.numel() / C;
    norm_fwd_kernel<<<blocks_for(rows, kRowsPerBlock), 32 * kRowsPerBlock, 0, stream()>>>(
        dptr<Tx>(x), dptr<Tw>(weight), dptr<Tw>(bias), dptr<Tx>(y), rms ? static_cast<A*>(nullptr) : mean.data<A>(),
        rstd.data<A>(), rows, C, A(eps), rms);
    SSM_CUDA_LAUNCH_CHECK();
  }
};

struct BackwardLaunch {
  const Tensor &grad_y, &x, &weight, &mean, &rstd;
  bool rms;
  Tensor *grad_x, *grad_w, *grad_b;
  template <typename Tx, typename Tw>
  void run() const {
    using A = AccOf<Tx>;
    const int64_t C = x.size(-1), rows = x.numel() / C;
    const A* mp = rms ? static_cast<const A*>(nullptr) : mean.data<A>();
    if (grad_x) {
      norm_bwd_x_kernel<<<blocks_for(rows, kRowsPerBlock), 32 * kRowsPerBlock, 0, stream()>>>(
          dptr<Tx>(grad_y), dptr<Tx>(x), dptr<Tw>(weight), mp, rstd.data<A>(), dptr<Tx>(*grad_x), rows, C, rms);
      SSM_CUDA_LAUNCH_CHECK();
    }
    if (grad_w || grad_b)
      norm_weight_grads(dptr<Tx>(grad_y), dptr<Tx>(x), mp, rstd.data<A>(), grad_w ? dptr<Tw>(*grad_w) : nullptr,
                        grad_b ? dptr<Tw>(*grad_b) : nullptr, rows, C, rms, x.device(), stream());
  }
};

}  // namespace

void norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, bool rms, Tensor& y,
                  Tensor& mean, Tensor& rstd) {
  const DType wt = weight.defined() ? weight.dtype() : (bias.defined() ? bias.dtype() : x.dtype());
  dispatch(x.dtype(), wt, ForwardLaunch{x, weight, bias, eps, rms, y, mean, rstd});
}

void norm_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight, const Tensor& mean,
                   const Tensor& rstd, bool rms, Tensor* grad_x, Tensor* grad_w, Tensor* grad_b) {
  const DType wt =
      weight.defined() ? weight.dtype() : (grad_w ? grad_w->dtype() : (grad_b ? grad_b->dtype() : x.dtype()));
  dispatch(x.dtype(), wt, BackwardLaunch{grad_y, x, weight, mean, rstd, rms, grad_x, grad_w, grad_b});
}

}  // namespace ssm::kernels::cuda
