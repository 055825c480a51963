// causal_conv on CUDA with cuFFT (math in fft_conv.h).
// Forward: u (B, L, H) -> tiled transpose + zero pad -> (B H, n) real -> R2C -> times F(k_h) -> C2R ->
// transpose back, scaled by 1/n. Backward: F(g) conj(F(k)) -> C2R for grad_u; sum_b F(g_b) conj(F(u_b))
// (a deterministic loop over b per (h, f)) -> C2R -> first Lk taps for grad_k.
// Plans are cached per (device, n, batch, direction, precision) for the life of the process.
#include <cufft.h>

#include <map>
#include <mutex>
#include <tuple>

#include "kernels/common/cuda_utils.cuh"
#include "kernels/s4/s4_cuda.h"

namespace ssm::kernels::cuda {
namespace {

template <typename T>
struct FftTypes;
template <>
struct FftTypes<float> {
  static constexpr cufftType r2c = CUFFT_R2C, c2r = CUFFT_C2R;
  static void fwd(cufftHandle p, float* in, float* out) {
    SSM_CUFFT_CHECK(cufftExecR2C(p, reinterpret_cast<cufftReal*>(in), reinterpret_cast<cufftComplex*>(out)));
  }
  static void inv(cufftHandle p, float* in, float* out) {
    SSM_CUFFT_CHECK(cufftExecC2R(p, reinterpret_cast<cufftComplex*>(in), reinterpret_cast<cufftReal*>(out)));
  }
};
template <>
struct FftTypes<double> {
  static constexpr cufftType r2c = CUFFT_D2Z, c2r = CUFFT_Z2D;
  static void fwd(cufftHandle p, double* in, double* out) {
    SSM_CUFFT_CHECK(
        cufftExecD2Z(p, reinterpret_cast<cufftDoubleReal*>(in), reinterpret_cast<cufftDoubleComplex*>(out)));
  }
  static void inv(cufftHandle p, double* in, double* out) {
    SSM_CUFFT_CHECK(
        cufftExecZ2D(p, reinterpret_cast<cufftDoubleComplex*>(in), reinterpret_cast<cufftDoubleReal*>(out)));
  }
};

// A batched 1-D real<->complex plan of size n with the basic layout (rows of n reals / n/2+1 complex).
cufftHandle get_plan(int n, int batch, cufftType type) {
  static std::mutex mu;
  static std::map<std::tuple<int, int, int, int>, cufftHandle> cache;
  int dev = 0;
  SSM_CUDA_CHECK(cudaGetDevice(&dev));
  std::lock_guard<std::mutex> lock(mu);
  const auto key = std::make_tuple(dev, n, batch, int(type));
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  cufftHandle plan;
  int dims[1] = {n};
  SSM_CUFFT_CHECK(cufftPlanMany(&plan, 1, dims, nullptr, 1, 0, nullptr, 1, 0, type, batch));
  cache.emplace(key, plan);
  return plan;
}

// (B, L, H) -> (B, H, n) with zeros for t >= L, through a 32x32 shared-memory tile.
template <typename T>
__global__ void pad_transpose(T* __restrict__ out, const T* __restrict__ x, int64_t L, int64_t H, int64_t n) {
  __shared__ T tile[32][33];
  const int64_t b = blockIdx.z, t0 = int64_t(blockIdx.x) * 32, h0 = int64_t(blockIdx.y) * 32;
  for (int r = threadIdx.y; r < 32; r += blockDim.y) {
    const int64_t t = t0 + r, h = h0 + threadIdx.x;
    tile[r][threadIdx.x] = (t < L && h < H) ? x[(b * L + t) * H + h] : T(0);
  }
  __syncthreads();
  for (int r = threadIdx.y; r < 32; r += blockDim.y) {
    const int64_t h = h0 + r, t = t0 + threadIdx.x;
    if (h < H && t < n) out[(b * H + h) * n + t] = tile[threadIdx.x][r];
  }
}

// (B, H, n) rows -> y (B, L, H), first L entries, times scale.
template <typename T>
__global__ void unpad_transpose(T* __restrict__ y, const T* __restrict__ in, int64_t L, int64_t H, int64_t n,
                                T scale) {
  __shared__ T tile[32][33];
  const int64_t b = blockIdx.z, t0 = int64_t(blockIdx.x) * 32, h0 = int64_t(blockIdx.y) * 32;
  for (int r = threadIdx.y; r < 32; r += blockDim.y) {
    const int64_t h = h0 + r, t = t0 + threadIdx.x;
    tile[r][threadIdx.x] = (h < H && t < L) ? in[(b * H + h) * n + t] : T(0);
  }
  __syncthreads();
  for (int r = threadIdx.y; r < 32; r += blockDim.y) {
    const int64_t t = t0 + r, h = h0 + threadIdx.x;
    if (t < L && h < H) y[(b * L + t) * H + h] = tile[threadIdx.x][r] * scale;
  }
}

// out (rows, n) = k (rows, Lk) zero padded; or the reverse with scale (grad_k).
template <typename T>
__global__ void pad_rows(T* __restrict__ out, const T* __restrict__ k, int64_t rows, int64_t Lk, int64_t n) {
  const int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (e >= rows * n) return;
  const int64_t r = e / n, s = e % n;
  out[e] = s < Lk ? k[r * Lk + s] : T(0);
}
template <typename T>
__global__ void unpad_rows(T* __restrict__ k, const T* __restrict__ in, int64_t rows, int64_t Lk, int64_t n, T scale) {
  const int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (e >= rows * Lk) return;
  const int64_t r = e / Lk, s = e % Lk;
  k[e] = in[r * n + s] * scale;
}

// out[b,h,f] = X[b,h,f] * (conj ? conj(K[h,f]) : K[h,f]), complex interleaved, nf = n/2+1 per row.
template <typename T>
__global__ void cmul_kernel(T* __restrict__ out, const T* __restrict__ X, const T* __restrict__ K, int64_t BH, int64_t H,
                            int64_t nf, bool conj_k) {
  const int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (e >= BH * nf) return;
  const int64_t f = e % nf, h = (e / nf) % H;
  const T xr = X[2 * e], xi = X[2 * e + 1];
  const T kr = K[2 * (h * nf + f)], ki = conj_k ? -K[2 * (h * nf + f) + 1] : K[2 * (h * nf + f) + 1];
  out[2 * e] = xr * kr - xi * ki;
  out[2 * e + 1] = xr * ki + xi * kr;
}

// Q[h,f] = sum_b G[b,h,f] conj(U[b,h,f]) (b in order: deterministic).
template <typename T>
__global__ void corr_sum_kernel(T* __restrict__ Q, const T* __restrict__ G, const T* __restrict__ U, int64_t B,
                                int64_t H, int64_t nf) {
  const int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (e >= H * nf) return;
  T qr = 0, qi = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t i = 2 * (b * H * nf + e);
    const T gr = G[i], gi = G[i + 1], ur = U[i], ui = U[i + 1];
    qr += gr * ur + gi * ui;
    qi += gi * ur - gr * ui;
  }
  Q[2 * e] = qr;
  Q[2 * e + 1] = qi;
}

struct Geometry {
  int64_t B, L, H, Lk, n, nf;
};
Geometry geometry(const Tensor& u, const Tensor& k) {
  Geometry g{u.size(0), u.size(1), u.size(2), k.size(1), 1, 0};
  while (g.n < g.L + g.Lk - 1 || g.n < 4) g.n <<= 1;
  g.nf = g.n / 2 + 1;
  SSM_CHECK_INPUT(g.B * g.H <= 0x7fffffff && g.n <= 0x7fffffff, "causal_conv: B*H = ", g.B * g.H, " or FFT size ", g.n,
                  " too large for cuFFT");
  return g;
}

template <typename T>
void transpose_in(Tensor& out, const Tensor& x, const Geometry& g) {
  const dim3 grid(unsigned((g.n + 31) / 32), unsigned((g.H + 31) / 32), unsigned(g.B)), block(32, 8);
  pad_transpose<T><<<grid, block, 0, stream()>>>(out.data<T>(), x.data<T>(), g.L, g.H, g.n);
  SSM_CUDA_LAUNCH_CHECK();
}
template <typename T>
void transpose_out(Tensor& y, const Tensor& in, const Geometry& g) {
  const dim3 grid(unsigned((g.L + 31) / 32), unsigned((g.H + 31) / 32), unsigned(g.B)), block(32, 8);
  unpad_transpose<T><<<grid, block, 0, stream()>>>(y.data<T>(), in.data<T>(), g.L, g.H, g.n, T(1) / T(g.n));
  SSM_CUDA_LAUNCH_CHECK();
}

// F(k) for every channel: (H, nf) complex.
template <typename T>
Tensor kernel_spectrum(const Tensor& k, const Geometry& g, DType dt, Device dev) {
  Tensor kp = Tensor::empty({g.H, g.n}, dt, dev);
  pad_rows<T><<<blocks_for(g.H * g.n, 256), 256, 0, stream()>>>(kp.data<T>(), k.data<T>(), g.H, g.Lk, g.n);
  SSM_CUDA_LAUNCH_CHECK();
  Tensor kf = Tensor::empty({g.H, g.nf, 2}, dt, dev);
  cufftHandle p = get_plan(int(g.n), int(g.H), FftTypes<T>::r2c);
  SSM_CUFFT_CHECK(cufftSetStream(p, stream()));
  FftTypes<T>::fwd(p, kp.data<T>(), kf.data<T>());
  return kf;
}

// F of the (B, L, H) tensor x, per (b, h) row: (B, H, nf) complex.
template <typename T>
Tensor batch_spectrum(const Tensor& x, const Geometry& g, DType dt, Device dev) {
  Tensor xp = Tensor::empty({g.B, g.H, g.n}, dt, dev);
  transpose_in<T>(xp, x, g);
  Tensor xf = Tensor::empty({g.B, g.H, g.nf, 2}, dt, dev);
  cufftHandle p = get_plan(int(g.n), int(g.B * g.H), FftTypes<T>::r2c);
  SSM_CUFFT_CHECK(cufftSetStream(p, stream()));
  FftTypes<T>::fwd(p, xp.data<T>(), xf.data<T>());
  return xf;
}

// out (B, L, H) = IFFT(X * K or X * conj(K)) rows, first L entries.
template <typename T>
void multiply_inverse(Tensor& out, const Tensor& X, const Tensor& Kf, bool conj_k, const Geometry& g, DType dt,
                      Device dev) {
  Tensor P = Tensor::empty({g.B, g.H, g.nf, 2}, dt, dev);
  cmul_kernel<T><<<blocks_for(g.B * g.H * g.nf, 256), 256, 0, stream()>>>(P.data<T>(), X.data<T>(), Kf.data<T>(),
                                                                           g.B * g.H, g.H, g.nf, conj_k);
  SSM_CUDA_LAUNCH_CHECK();
  Tensor r = Tensor::empty({g.B, g.H, g.n}, dt, dev);
  cufftHandle p = get_plan(int(g.n), int(g.B * g.H), FftTypes<T>::c2r);
  SSM_CUFFT_CHECK(cufftSetStream(p, stream()));
  FftTypes<T>::inv(p, P.data<T>(), r.data<T>());
  transpose_out<T>(out, r, g);
}

template <typename T>
void forward_t(Tensor& y, const Tensor& u, const Tensor& k) {
  const Geometry g = geometry(u, k);
  const DType dt = u.dtype();
  const Device dev = u.device();
  const Tensor kf = kernel_spectrum<T>(k, g, dt, dev);
  const Tensor uf = batch_spectrum<T>(u, g, dt, dev);
  multiply_inverse<T>(y, uf, kf, false, g, dt, dev);
}

template <typename T>
void backward_t(const Tensor& gy, const Tensor& u, const Tensor& k, Tensor* gu, Tensor* gk) {
  const Geometry g = geometry(u, k);
  const DType dt = u.dtype();
  const Device dev = u.device();
  const Tensor gf = batch_spectrum<T>(gy, g, dt, dev);
  if (gu) {
    const Tensor kf = kernel_spectrum<T>(k, g, dt, dev);
    multiply_inverse<T>(*gu, gf, kf, true, g, dt, dev);
  }
  if (gk) {
    const Tensor uf = batch_spectrum<T>(u, g, dt, dev);
    Tensor q = Tensor::empty({g.H, g.nf, 2}, dt, dev);
    corr_sum_kernel<T><<<blocks_for(g.H * g.nf, 256), 256, 0, stream()>>>(q.data<T>(), gf.data<T>(), uf.data<T>(), g.B,
                                                                          g.H, g.nf);
    SSM_CUDA_LAUNCH_CHECK();
    Tensor r = Tensor::empty({g.H, g.n}, dt, dev);
    cufftHandle p = get_plan(int(g.n), int(g.H), FftTypes<T>::c2r);
    SSM_CUFFT_CHECK(cufftSetStream(p, stream()));
    FftTypes<T>::inv(p, q.data<T>(), r.data<T>());
    unpad_rows<T><<<blocks_for(g.H * g.Lk, 256), 256, 0, stream()>>>(gk->data<T>(), r.data<T>(), g.H, g.Lk, g.n,
                                                                      T(1) / T(g.n));
    SSM_CUDA_LAUNCH_CHECK();
  }
}

}  // namespace

void causal_conv_forward(Tensor& y, const Tensor& u, const Tensor& k) {
  if (u.dtype() == DType::f32)
    forward_t<float>(y, u, k);
  else
    forward_t<double>(y, u, k);
}

void causal_conv_backward(const Tensor& g, const Tensor& u, const Tensor& k, Tensor* grad_u, Tensor* grad_k) {
  if (u.dtype() == DType::f32)
    backward_t<float>(g, u, k, grad_u, grad_k);
  else
    backward_t<double>(g, u, k, grad_u, grad_k);
}

}  // namespace ssm::kernels::cuda
