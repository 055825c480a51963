// S4D kernel on CUDA (math in s4d_kernel.h).
// Forward: grid (ceil(L / 256), H); the block first stages (dtA, 2 Ct) of its channel's M modes in
// shared memory, then thread l sums 2 Re(Ct z^l) over m with z^l = exp(l Re dtA) (cos, sin)(l Im dtA).
// Backward: one block per channel h, one warp per mode m (strided): lanes accumulate
// S0 = sum_l G z^l and S1 = sum_l G l z^l, a shuffle reduction, lane 0 forms the gradients; the
// per-mode contributions to grad log_dt are summed by thread 0 in mode order (deterministic).
#include <cmath>

#include "kernels/common/cuda_utils.cuh"
#include "kernels/s4/s4_cuda.h"

namespace ssm::kernels::cuda {
namespace {

template <typename T>
struct Cx {
  T re, im;
};
template <typename T>
__device__ inline Cx<T> mul(Cx<T> a, Cx<T> b) {
  return {a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re};
}
template <typename T>
__device__ inline Cx<T> conj(Cx<T> a) {
  return {a.re, -a.im};
}
template <typename T>
__device__ inline Cx<T> div(Cx<T> a, Cx<T> b) {
  const T d = b.re * b.re + b.im * b.im;
  return {(a.re * b.re + a.im * b.im) / d, (a.im * b.re - a.re * b.im) / d};
}
__device__ inline void sincos_t(float x, float* s, float* c) { sincosf(x, s, c); }
__device__ inline void sincos_t(double x, double* s, double* c) { sincos(x, s, c); }
__device__ inline float exp_t(float x) { return expf(x); }
__device__ inline double exp_t(double x) { return exp(x); }
template <typename T>
__device__ inline Cx<T> cexp(T re, T im) {
  T s, c;
  sincos_t(im, &s, &c);
  const T e = exp_t(re);
  return {e * c, e * s};
}

template <typename T>
struct ModeQ {
  T dt;
  Cx<T> A, dtA, E, C, Ct;
};
template <typename T>
__device__ inline ModeQ<T> mode(const T* log_dt, const T* lar, const T* aim, const T* C, int64_t h, int64_t M,
                                int64_t m) {
  ModeQ<T> q;
  q.dt = exp_t(log_dt[h]);
  const int64_t hm = h * M + m;
  q.A = {-exp_t(lar[hm]), aim[hm]};
  q.dtA = {q.dt * q.A.re, q.dt * q.A.im};
  q.E = cexp(q.dtA.re, q.dtA.im);
  q.C = {C[2 * hm], C[2 * hm + 1]};
  q.Ct = div(mul(q.C, Cx<T>{q.E.re - T(1), q.E.im}), q.A);
  return q;
}

template <typename T>
__global__ void s4d_forward_kernel(T* __restrict__ K, const T* __restrict__ log_dt, const T* __restrict__ lar,
                                   const T* __restrict__ aim, const T* __restrict__ C, int64_t M, int64_t L) {
  T* s = dynamic_smem<T>();  // [4 M]: dtA.re, dtA.im, 2 Ct.re, 2 Ct.im
  const int64_t h = blockIdx.y;
  for (int64_t m = threadIdx.x; m < M; m += blockDim.x) {
    const ModeQ<T> q = mode(log_dt, lar, aim, C, h, M, m);
    s[4 * m] = q.dtA.re;
    s[4 * m + 1] = q.dtA.im;
    s[4 * m + 2] = T(2) * q.Ct.re;
    s[4 * m + 3] = T(2) * q.Ct.im;
  }
  __syncthreads();
  const int64_t l = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (l >= L) return;
  const T lf = T(l);
  T acc = 0;
  for (int64_t m = 0; m < M; ++m) {
    const Cx<T> z = cexp(lf * s[4 * m], lf * s[4 * m + 1]);
    acc += s[4 * m + 2] * z.re - s[4 * m + 3] * z.im;
  }
  K[h * L + l] = acc;
}

template <typename T>
__device__ inline T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}

template <typename T>
__global__ void s4d_backward_kernel(const T* __restrict__ G, const T* __restrict__ log_dt, const T* __restrict__ lar,
                                    const T* __restrict__ aim, const T* __restrict__ C, T* __restrict__ g_log_dt,
                                    T* __restrict__ g_lar, T* __restrict__ g_aim, T* __restrict__ g_C, int64_t M,
                                    int64_t L) {
  T* gdt_part = dynamic_smem<T>();  // [M]
  const int64_t h = blockIdx.x;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  const T* Gh = G + h * L;
  for (int64_t m = warp; m < M; m += nwarps) {
    const ModeQ<T> q = mode(log_dt, lar, aim, C, h, M, m);
    Cx<T> S0{0, 0}, S1{0, 0};
    for (int64_t l = lane; l < L; l += 32) {
      const T lf = T(l);
      const Cx<T> z = cexp(lf * q.dtA.re, lf * q.dtA.im);
      const T g = Gh[l];
      S0.re += g * z.re;
      S0.im += g * z.im;
      S1.re += g * lf * z.re;
      S1.im += g * lf * z.im;
    }
    S0.re = warp_sum(S0.re);
    S0.im = warp_sum(S0.im);
    S1.re = warp_sum(S1.re);
    S1.im = warp_sum(S1.im);
    if (lane == 0) {
      const Cx<T> g_Ct{T(2) * S0.re, -T(2) * S0.im};
      const Cx<T> g_Cc = mul(g_Ct, conj(div(Cx<T>{q.E.re - T(1), q.E.im}, q.A)));
      const Cx<T> t1 = conj(mul(q.Ct, S1));
      const Cx<T> t2 = mul(g_Ct, conj(div(mul(q.C, q.E), q.A)));
      const Cx<T> g_dtA{T(2) * t1.re + t2.re, T(2) * t1.im + t2.im};
      const Cx<T> t3 = mul(g_Ct, conj(div(q.Ct, q.A)));
      const Cx<T> g_A{-t3.re + q.dt * g_dtA.re, -t3.im + q.dt * g_dtA.im};
      const int64_t hm = h * M + m;
      g_lar[hm] = q.A.re * g_A.re;
      g_aim[hm] = g_A.im;
      g_C[2 * hm] = g_Cc.re;
      g_C[2 * hm + 1] = g_Cc.im;
      gdt_part[m] = g_dtA.re * q.A.re + g_dtA.im * q.A.im;  // Re(g_dtA conj(A))
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    T s = 0;
    for (int64_t m = 0; m < M; ++m) s += gdt_part[m];
    g_log_dt[h] = exp_t(log_dt[h]) * s;
  }
}

template <typename T>
void forward_t(Tensor& K, const Tensor& log_dt, const Tensor& lar, const Tensor& aim, const Tensor& C) {
  const int64_t H = K.size(0), L = K.size(1), M = lar.size(1);
  const int threads = 256;
  const dim3 grid(blocks_for(L, threads), unsigned(H));
  const size_t smem = size_t(4 * M) * sizeof(T);
  if (smem > 48 * 1024)
    SSM_CUDA_CHECK(cudaFuncSetAttribute(s4d_forward_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  s4d_forward_kernel<T><<<grid, threads, smem, stream()>>>(K.data<T>(), log_dt.data<T>(), lar.data<T>(),
                                                           aim.data<T>(), C.data<T>(), M, L);
  SSM_CUDA_LAUNCH_CHECK();
}

template <typename T>
void backward_t(const Tensor& G, const Tensor& log_dt, const Tensor& lar, const Tensor& aim, const Tensor& C,
                Tensor& g_log_dt, Tensor& g_lar, Tensor& g_aim, Tensor& g_C) {
  const int64_t H = G.size(0), L = G.size(1), M = lar.size(1);
  const int threads = 256;
  const size_t smem = size_t(M > 0 ? M : 1) * sizeof(T);
  if (smem > 48 * 1024)
    SSM_CUDA_CHECK(cudaFuncSetAttribute(s4d_backward_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  s4d_backward_kernel<T><<<unsigned(H), threads, smem, stream()>>>(
      G.data<T>(), log_dt.data<T>(), lar.data<T>(), aim.data<T>(), C.data<T>(), g_log_dt.data<T>(), g_lar.data<T>(),
      g_aim.data<T>(), g_C.data<T>(), M, L);
  SSM_CUDA_LAUNCH_CHECK();
}

}  // namespace

void s4d_kernel_forward(Tensor& K, const Tensor& log_dt, const Tensor& log_A_real, const Tensor& A_imag,
                        const Tensor& C) {
  if (K.dtype() == DType::f32)
    forward_t<float>(K, log_dt, log_A_real, A_imag, C);
  else
    forward_t<double>(K, log_dt, log_A_real, A_imag, C);
}

void s4d_kernel_backward(const Tensor& grad_K, const Tensor& log_dt, const Tensor& log_A_real, const Tensor& A_imag,
                         const Tensor& C, Tensor& g_log_dt, Tensor& g_log_A_real, Tensor& g_A_imag, Tensor& g_C) {
  if (grad_K.dtype() == DType::f32)
    backward_t<float>(grad_K, log_dt, log_A_real, A_imag, C, g_log_dt, g_log_A_real, g_A_imag, g_C);
  else
    backward_t<double>(grad_K, log_dt, log_A_real, A_imag, C, g_log_dt, g_log_A_real, g_A_imag, g_C);
}

}  // namespace ssm::kernels::cuda
