// causal_conv on the CPU (FFT and direct paths), input checks, dispatch and the autograd wrapper.
// The math is in fft_conv.h.
#include "kernels/s4/fft_conv.h"

#include <algorithm>
#include <vector>

#include "kernels/s4/fft_cpu.h"
#include "kernels/s4/s4_cuda.h"

namespace ssm::kernels {
namespace {

struct Dims {
  int64_t B, L, H, Lk;
};

Dims check_conv(const Tensor& u, const Tensor& k) {
  SSM_CHECK_INPUT(u.defined() && k.defined(), "causal_conv: u or k is undefined");
  SSM_CHECK_INPUT(u.dim() == 3, "causal_conv: u must be (B, L, H), got ", shape_str(u.shape()));
  SSM_CHECK_INPUT(k.dim() == 2, "causal_conv: k must be (H, L_k), got ", shape_str(k.shape()));
  const Dims d{u.size(0), u.size(1), u.size(2), k.size(1)};
  SSM_CHECK_INPUT(k.size(0) == d.H, "causal_conv: k ", shape_str(k.shape()), " has ", k.size(0),
                  " channels but u ", shape_str(u.shape()), " has H = ", d.H);
  SSM_CHECK_INPUT(d.Lk >= 1 && d.Lk <= d.L, "causal_conv: kernel length L_k = ", d.Lk, " (k ", shape_str(k.shape()),
                  ") must be in [1, L = ", d.L, "] (u ", shape_str(u.shape()), ")");
  SSM_CHECK_INPUT(u.dtype() == k.dtype(), "causal_conv: u is ", dtype_name(u.dtype()), " but k is ",
                  dtype_name(k.dtype()));
  SSM_CHECK_INPUT(u.dtype() == DType::f32 || u.dtype() == DType::f64, "causal_conv: dtype ", dtype_name(u.dtype()),
                  " not supported (f32 or f64)");
  SSM_CHECK_INPUT(u.device() == k.device(), "causal_conv: u is on ", u.device().str(), " but k is on ",
                  k.device().str());
  return d;
}

// ---------------- direct sums, vectorised over channels (h is the contiguous dim of u) ----------------

template <typename T>
std::vector<T> transpose_k(const T* k, int64_t H, int64_t Lk) {  // (H, Lk) -> (Lk, H)
  std::vector<T> kt(size_t(H * Lk));
  for (int64_t h = 0; h < H; ++h)
    for (int64_t s = 0; s < Lk; ++s) kt[size_t(s * H + h)] = k[h * Lk + s];
  return kt;
}

template <typename T>
void direct_forward(const Dims& d, const T* u, const T* k, T* y) {
  const auto [B, L, H, Lk] = d;
  const std::vector<T> kt = transpose_k(k, H, Lk);
#pragma omp parallel for schedule(static)
  for (int64_t bt = 0; bt < B * L; ++bt) {
    const int64_t b = bt / L, t = bt % L;
    T* __restrict__ yr = y + bt * H;
    std::fill(yr, yr + H, T(0));
    for (int64_t s = 0; s <= std::min(t, Lk - 1); ++s) {
      const T* __restrict__ ks = kt.data() + s * H;
      const T* __restrict__ ur = u + (b * L + t - s) * H;
#pragma omp simd
      for (int64_t h = 0; h < H; ++h) yr[h] += ks[h] * ur[h];
    }
  }
}

template <typename T>
void direct_backward(const Dims& d, const T* g, const T* u, const T* k, T* gu, T* gk) {
  const auto [B, L, H, Lk] = d;
  if (gu) {
    const std::vector<T> kt = transpose_k(k, H, Lk);
#pragma omp parallel for schedule(static)
    for (int64_t bs = 0; bs < B * L; ++bs) {
      const int64_t b = bs / L, s = bs % L;
      T* __restrict__ out = gu + bs * H;
      std::fill(out, out + H, T(0));
      for (int64_t t = s; t <= std::min(L - 1, s + Lk - 1); ++t) {
        const T* __restrict__ kr = kt.data() + (t - s) * H;
        const T* __restrict__ gr = g + (b * L + t) * H;
#pragma omp simd
        for (int64_t h = 0; h < H; ++h) out[h] += kr[h] * gr[h];
      }
    }
  }
  if (gk) {
    std::vector<T> gkt(size_t(Lk * H), T(0));
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t s = 0; s < Lk; ++s) {
      T* __restrict__ acc = gkt.data() + s * H;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = s; t < L; ++t) {
          const T* __restrict__ gr = g + (b * L + t) * H;
          const T* __restrict__ ur = u + (b * L + t - s) * H;
#pragma omp simd
          for (int64_t h = 0; h < H; ++h) acc[h] += gr[h] * ur[h];
        }
    }
    for (int64_t h = 0; h < H; ++h)
      for (int64_t s = 0; s < Lk; ++s) gk[h * Lk + s] = gkt[size_t(s * H + h)];
  }
}

// ---------------- FFT path: one channel h per job, batch rows in pairs ----------------

template <typename T>
struct Scratch {
  std::vector<T> kr, ki, xr, xi, yr, yi, ur, ui, ar, ai;
  explicit Scratch(int64_t n)
      : kr(n), ki(n), xr(n), xi(n), yr(n), yi(n), ur(n), ui(n), ar(n), ai(n) {}
};

// out (B, C, R) = x (B, R, C) transposed per batch, in 32 x 32 tiles (channels-last <-> rows of time).
template <typename T>
void transpose_batched(const T* x, T* out, int64_t B, int64_t R, int64_t C) {
  const int64_t tr = (R + 31) / 32, tc = (C + 31) / 32;
#pragma omp parallel for schedule(static)
  for (int64_t job = 0; job < B * tr * tc; ++job) {
    const int64_t b = job / (tr * tc), r0 = (job / tc) % tr * 32, c0 = job % tc * 32;
    const T* xb = x + b * R * C;
    T* ob = out + b * R * C;
    for (int64_t c = c0; c < std::min(C, c0 + 32); ++c)
      for (int64_t r = r0; r < std::min(R, r0 + 32); ++r) ob[c * R + r] = xb[r * C + c];
  }
}

// Loads the time rows x0 and x1 (x1 may be null: zeros) of length L into (re, im), bit-reversed and
// zero-padded to n, and transforms.
template <typename T>
void fft_pair(const fft::Plan<T>& p, int64_t L, const T* x0, const T* x1, T* re, T* im) {
  const int64_t n = p.n;
  std::fill(re, re + n, T(0));
  std::fill(im, im + n, T(0));
  const int32_t* rev = p.rev.data();
  for (int64_t t = 0; t < L; ++t) re[rev[t]] = x0[t];
  if (x1)
    for (int64_t t = 0; t < L; ++t) im[rev[t]] = x1[t];
  fft::forward_bitrev(p, re, im);
}

// F(k_h) into (kr, ki).
template <typename T>
void fft_kernel(const fft::Plan<T>& p, const Dims& d, const T* k, int64_t h, T* kr, T* ki) {
  fft_pair(p, d.Lk, k + h * d.Lk, static_cast<const T*>(nullptr), kr, ki);
}

// (yr, yi) <- IFFT of X * (conj_k ? conj(K) : K); real part -> row o0, imaginary part -> row o1 (if any).
template <typename T>
void multiply_inverse(const fft::Plan<T>& p, int64_t L, const T* xr, const T* xi, const T* kr, const T* ki,
                      bool conj_k, T* yr, T* yi, T* o0, T* o1) {
  const int64_t n = p.n;
  const T inv_n = T(1) / T(n);
  const T sk = conj_k ? T(-1) : T(1);
  const int32_t* rev = p.rev.data();
  for (int64_t f = 0; f < n; ++f) {  // conj(X K) / n, written bit-reversed for the next transform
    const T kim = sk * ki[f];
    const T pr = xr[f] * kr[f] - xi[f] * kim;
    const T pi = xr[f] * kim + xi[f] * kr[f];
    yr[rev[f]] = pr * inv_n;
    yi[rev[f]] = -pi * inv_n;
  }
  fft::forward_bitrev(p, yr, yi);  // = conj(IFFT(X K)); real part yr, imaginary part -yi
  std::copy(yr, yr + L, o0);
  if (o1)
    for (int64_t t = 0; t < L; ++t) o1[t] = -yi[t];
}

// The FFT paths work on (B, H, L) copies so that every time row is contiguous.
template <typename T>
void fft_forward(const Dims& d, const T* u, const T* k, T* y) {
  const auto& p = fft::plan<T>(fft::next_pow2(std::max<int64_t>(d.L + d.Lk - 1, 4)));
  const int64_t L = d.L;
  std::vector<T> ut(size_t(d.B * d.H * L)), yt(size_t(d.B * d.H * L));
  transpose_batched(u, ut.data(), d.B, L, d.H);
  auto row = [&](std::vector<T>& v, int64_t b, int64_t h) { return b < d.B ? v.data() + (b * d.H + h) * L : nullptr; };
#pragma omp parallel
  {
    Scratch<T> s(p.n);
#pragma omp for schedule(static)
    for (int64_t h = 0; h < d.H; ++h) {
      fft_kernel(p, d, k, h, s.kr.data(), s.ki.data());
      for (int64_t b0 = 0; b0 < d.B; b0 += 2) {
        fft_pair(p, L, static_cast<const T*>(row(ut, b0, h)), static_cast<const T*>(row(ut, b0 + 1, h)), s.xr.data(),
                 s.xi.data());
        multiply_inverse(p, L, s.xr.data(), s.xi.data(), s.kr.data(), s.ki.data(), false, s.yr.data(), s.yi.data(),
                         row(yt, b0, h), row(yt, b0 + 1, h));
      }
    }
  }
  transpose_batched(yt.data(), y, d.B, d.H, L);
}

template <typename T>
void fft_backward(const Dims& d, const T* g, const T* u, const T* k, T* gu, T* gk) {
  const auto& p = fft::plan<T>(fft::next_pow2(std::max<int64_t>(d.L + d.Lk - 1, 4)));
  const int64_t n = p.n, L = d.L;
  std::vector<T> gt(size_t(d.B * d.H * L)), ut(gk ? size_t(d.B * d.H * L) : 0), gut(gu ? size_t(d.B * d.H * L) : 0);
  transpose_batched(g, gt.data(), d.B, L, d.H);
  if (gk) transpose_batched(u, ut.data(), d.B, L, d.H);
  auto row = [&](std::vector<T>& v, int64_t b, int64_t h) { return b < d.B ? v.data() + (b * d.H + h) * L : nullptr; };
#pragma omp parallel
  {
    Scratch<T> s(n);
#pragma omp for schedule(static)
    for (int64_t h = 0; h < d.H; ++h) {
      if (gu) fft_kernel(p, d, k, h, s.kr.data(), s.ki.data());
      if (gk) {
        std::fill(s.ar.begin(), s.ar.end(), T(0));
        std::fill(s.ai.begin(), s.ai.end(), T(0));
      }
      for (int64_t b0 = 0; b0 < d.B; b0 += 2) {
        fft_pair(p, L, static_cast<const T*>(row(gt, b0, h)), static_cast<const T*>(row(gt, b0 + 1, h)), s.xr.data(),
                 s.xi.data());
        if (gu)
          multiply_inverse(p, L, s.xr.data(), s.xi.data(), s.kr.data(), s.ki.data(), true, s.yr.data(), s.yi.data(),
                           row(gut, b0, h), row(gut, b0 + 1, h));
        if (gk) {  // acc += F(g pair) conj(F(u pair))
          fft_pair(p, L, static_cast<const T*>(row(ut, b0, h)), static_cast<const T*>(row(ut, b0 + 1, h)),
                   s.ur.data(), s.ui.data());
          T* __restrict__ ar = s.ar.data();
          T* __restrict__ ai = s.ai.data();
          const T* __restrict__ xr = s.xr.data();
          const T* __restrict__ xi = s.xi.data();
          const T* __restrict__ ur = s.ur.data();
          const T* __restrict__ ui = s.ui.data();
#pragma omp simd
          for (int64_t f = 0; f < n; ++f) {
            ar[f] += xr[f] * ur[f] + xi[f] * ui[f];
            ai[f] += xi[f] * ur[f] - xr[f] * ui[f];
          }
        }
      }
      if (gk) {  // grad_k = Re IFFT(acc)[0:Lk] = Re FFT(conj(acc))[0:Lk] / n
        const T inv_n = T(1) / T(n);
        for (int64_t f = 0; f < n; ++f) {
          s.yr[p.rev[f]] = s.ar[f] * inv_n;
          s.yi[p.rev[f]] = -s.ai[f] * inv_n;
        }
        fft::forward_bitrev(p, s.yr.data(), s.yi.data());
        for (int64_t t = 0; t < d.Lk; ++t) gk[h * d.Lk + t] = s.yr[t];
      }
    }
  }
  if (gu) transpose_batched(gut.data(), gu, d.B, d.H, L);
}

template <typename T>
void cpu_forward(const Dims& d, const Tensor& u, const Tensor& k, Tensor& y, ConvMethod m) {
  const bool direct = m == ConvMethod::Direct || (m == ConvMethod::Auto && causal_conv_use_direct(d.L, d.Lk));
  if (direct)
    direct_forward(d, u.data<T>(), k.data<T>(), y.data<T>());
  else
    fft_forward(d, u.data<T>(), k.data<T>(), y.data<T>());
}

template <typename T>
void cpu_backward(const Dims& d, const Tensor& g, const Tensor& u, const Tensor& k, Tensor* gu, Tensor* gk,
                  ConvMethod m) {
  const bool direct = m == ConvMethod::Direct || (m == ConvMethod::Auto && causal_conv_use_direct(d.L, d.Lk));
  T* pu = gu ? gu->data<T>() : nullptr;
  T* pk = gk ? gk->data<T>() : nullptr;
  if (direct)
    direct_backward(d, g.data<T>(), u.data<T>(), k.data<T>(), pu, pk);
  else
    fft_backward(d, g.data<T>(), u.data<T>(), k.data<T>(), pu, pk);
}

}  // namespace

bool causal_conv_use_direct(int64_t L, int64_t Lk) { return L <= 64 || Lk <= 32; }

Tensor causal_conv_forward(const Tensor& u_in, const Tensor& k_in, ConvMethod method) {
  const Dims d = check_conv(u_in, k_in);
  const Tensor u = u_in.contiguous(), k = k_in.contiguous();
  Tensor y = Tensor::empty(u.shape(), u.dtype(), u.device());
  if (y.numel() == 0) return y;
#ifdef SSM_WITH_CUDA
  if (u.device().is_cuda()) {
    cuda::causal_conv_forward(y, u, k);
    return y;
  }
#endif
  SSM_CHECK_INPUT(u.device().is_cpu(), "causal_conv: u is on ", u.device().str(), " but this build has no CUDA");
  if (u.dtype() == DType::f32)
    cpu_forward<float>(d, u, k, y, method);
  else
    cpu_forward<double>(d, u, k, y, method);
  return y;
}

void causal_conv_backward(const Tensor& g_in, const Tensor& u_in, const Tensor& k_in, Tensor* grad_u,
                          Tensor* grad_k, ConvMethod method) {
  const Dims d = check_conv(u_in, k_in);
  SSM_CHECK_INPUT(g_in.shape() == u_in.shape(), "causal_conv backward: grad_y ", shape_str(g_in.shape()),
                  " must match u ", shape_str(u_in.shape()));
  const Tensor g = (g_in.dtype() == u_in.dtype() ? g_in : g_in.to(u_in.dtype())).contiguous();
  const Tensor u = u_in.contiguous(), k = k_in.contiguous();
  // Both methods and the CUDA path write every element of the gradients.
  if (grad_u) *grad_u = Tensor::empty(u.shape(), u.dtype(), u.device());
  if (grad_k) *grad_k = Tensor::empty(k.shape(), k.dtype(), k.device());
  if (!grad_u && !grad_k) return;
  if (u.numel() == 0) {  // B == 0: nothing flows back
    if (grad_k) grad_k->zero_();
    return;
  }
#ifdef SSM_WITH_CUDA
  if (u.device().is_cuda()) {
    cuda::causal_conv_backward(g, u, k, grad_u, grad_k);
    return;
  }
#endif
  if (u.dtype() == DType::f32)
    cpu_backward<float>(d, g, u, k, grad_u, grad_k, method);
  else
    cpu_backward<double>(d, g, u, k, grad_u, grad_k, method);
}

ag::Variable causal_conv(const ag::Variable& u, const ag::Variable& k) {
  SSM_CHECK_INPUT(u.defined() && k.defined(), "causal_conv: u or k is undefined");
  Tensor y = causal_conv_forward(u.data(), k.data());
  return ag::Variable(y, {u, k}, [](std::vector<ag::Variable>& in, const Tensor& g) {
    const bool want_u = in[0].requires_grad(), want_k = in[1].requires_grad();
    Tensor gu, gk;
    causal_conv_backward(g, in[0].data(), in[1].data(), want_u ? &gu : nullptr, want_k ? &gk : nullptr);
    if (want_u) in[0].add_grad(gu);
    if (want_k) in[1].add_grad(gk);
  });
}

}  // namespace ssm::kernels
