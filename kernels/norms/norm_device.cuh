// Device helpers of the row-wise norm kernels (norms_cuda.cu, add_norm_cuda.cu): typed loads/stores
// that widen bf16/f16 to f32, a warp all-reduce, a dispatch from a runtime DType to a device element type,
// and the weight / bias gradient reduction both share.
// CUDA-only (include from .cu files).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "core/error.h"
#include "core/tensor.h"
#include "kernels/common/cuda_utils.cuh"

namespace ssm::kernels::cuda::norm_detail {

__device__ inline float ld(const float* p, int64_t i) { return p[i]; }
__device__ inline double ld(const double* p, int64_t i) { return p[i]; }
__device__ inline float ld(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }
__device__ inline float ld(const __half* p, int64_t i) { return __half2float(p[i]); }
__device__ inline void st(float* p, int64_t i, float v) { p[i] = v; }
__device__ inline void st(float* p, int64_t i, double v) { p[i] = float(v); }
__device__ inline void st(double* p, int64_t i, double v) { p[i] = v; }
__device__ inline void st(__nv_bfloat16* p, int64_t i, float v) { p[i] = __float2bfloat16(v); }
__device__ inline void st(__half* p, int64_t i, float v) { p[i] = __float2half(v); }
__device__ inline float rsqrt_t(float v) { return rsqrtf(v); }
__device__ inline double rsqrt_t(double v) { return 1.0 / sqrt(v); }

// Sum over the 32 lanes of a warp; every lane gets the total (all lanes must call it).
template <typename A>
__device__ inline A warp_allsum(A v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Calls fn(std::type_identity<T>{}) with T the device element type of a floating DType.
template <typename Fn>
void with_float_type(DType t, Fn&& fn) {
  switch (t) {
    case DType::f32: return fn(std::type_identity<float>{});
    case DType::f64: return fn(std::type_identity<double>{});
    case DType::bf16: return fn(std::type_identity<__nv_bfloat16>{});
    case DType::f16: return fn(std::type_identity<__half>{});
    default: SSM_CHECK(false, "norm kernels: unsupported dtype ", dtype_name(t));
  }
}

// Typed device pointer of a tensor, or null for an undefined one.
template <typename T>
T* dptr(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.data_ptr()) : static_cast<T*>(nullptr);
}

// Weight and bias gradients of a norm, shared by the plain norms and the fused add+norm:
//   grad_w[c] = sum_r gy[r, c] (x[r, c] - mean[r]) rstd[r],   grad_b[c] = sum_r gy[r, c]   (mean = 0: RMSNorm)
// in two fixed-order passes (deterministic): per chunk of kWbChunkRows rows a 32 x 8 block sums 32 columns
// into partials, then wb_final sums the chunks.
constexpr int kWbChunkRows = 256;

template <typename Tg, typename Tx, typename A>
__global__ void wb_partial_kernel(const Tg* __restrict__ gy, const Tx* __restrict__ x, const A* __restrict__ mean,
                                  const A* __restrict__ rstd, A* __restrict__ pw, A* __restrict__ pb, int64_t rows,
                                  int64_t C, bool rms) {
  __shared__ A sw[8][33], sb[8][33];
  const int64_t c = int64_t(blockIdx.x) * 32 + threadIdx.x;
  const int64_t r0 = int64_t(blockIdx.y) * kWbChunkRows;
  const int64_t r1 = r0 + kWbChunkRows < rows ? r0 + kWbChunkRows : rows;
  A aw = 0, ab = 0;
  if (c < C)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += blockDim.y) {
      const A g = A(ld(gy, r * C + c));
      const A mu = rms ? A(0) : mean[r];
      aw += g * (A(ld(x, r * C + c)) - mu) * rstd[r];
      ab += g;
    }
  sw[threadIdx.y][threadIdx.x] = aw;
  sb[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    A tw = 0, tb = 0;
    for (int i = 0; i < 8; ++i) {
      tw += sw[i][threadIdx.x];
      tb += sb[i][threadIdx.x];
    }
    pw[blockIdx.y * C + c] = tw;
    pb[blockIdx.y * C + c] = tb;
  }
}

// The partial rows' column sums: a (32, kWbFinalTY) block per 32 columns, thread y adding rows y, y + kWbFinalTY,
// ... in order, then the kWbFinalTY sums added in order (deterministic for a given number of rows). One thread
// per column walking every row in turn left 768 threads on the GPU for C = 768, each waiting on 264 loads: 34 us
// a call (0.84 ms a step of the 130M LM, H100, 2026-12-07).
constexpr int kWbFinalTY = 16;
template <typename Tw, typename A>
__global__ void __launch_bounds__(32 * kWbFinalTY) wb_final_kernel(const A* __restrict__ pw, const A* __restrict__ pb,
                                                                  Tw* __restrict__ gw, Tw* __restrict__ gb,
                                                                  int64_t nchunks, int64_t C) {
  __shared__ A sw[kWbFinalTY][33], sb[kWbFinalTY][33];
  const int64_t c = int64_t(blockIdx.x) * 32 + threadIdx.x;
  A tw = 0, tb = 0;
  if (c < C)
    for (int64_t k = threadIdx.y; k < nchunks; k += kWbFinalTY) {
      tw += pw[k * C + c];
      if (pb) tb += pb[k * C + c];
    }
  sw[threadIdx.y][threadIdx.x] = tw;
  sb[threadIdx.y][threadIdx.x] = tb;
  __syncthreads();
  if (threadIdx.y != 0 || c >= C) return;
  tw = tb = 0;
  for (int y = 0; y < kWbFinalTY; ++y) {
    tw += sw[y][threadIdx.x];
    tb += sb[y][threadIdx.x];
  }
  if (gw) st(gw, c, tw);
  if (gb) st(gb, c, tb);
}
template <typename Tw, typename A>
void wb_final(const A* pw, const A* pb, Tw* gw, Tw* gb, int64_t nchunks, int64_t C, cudaStream_t stream) {
  wb_final_kernel<Tw, A><<<unsigned((C + 31) / 32), dim3(32, kWbFinalTY), 0, stream>>>(pw, pb, gw, gb, nchunks, C);
  SSM_CUDA_LAUNCH_CHECK();
}

// gw / gb may be null (that gradient is not wanted); mean is ignored when rms.
template <typename Tg, typename Tx, typename Tw, typename A>
void norm_weight_grads(const Tg* gy, const Tx* x, const A* mean, const A* rstd, Tw* gw, Tw* gb, int64_t rows,
                       int64_t C, bool rms, Device dev, cudaStream_t stream) {
  const int64_t nchunks = (rows + kWbChunkRows - 1) / kWbChunkRows;
  const DType adt = std::is_same_v<A, double> ? DType::f64 : DType::f32;
  Tensor pw = Tensor::empty({nchunks, C}, adt, dev), pb = Tensor::empty({nchunks, C}, adt, dev);
  const dim3 grid(unsigned((C + 31) / 32), unsigned(nchunks)), block(32, 8);
  wb_partial_kernel<Tg, Tx, A><<<grid, block, 0, stream>>>(gy, x, mean, rstd, pw.data<A>(), pb.data<A>(), rows, C, rms);
  SSM_CUDA_LAUNCH_CHECK();
  wb_final<Tw, A>(pw.data<A>(), pb.data<A>(), gw, gb, nchunks, C, stream);
}

}  // namespace ssm::kernels::cuda::norm_detail
