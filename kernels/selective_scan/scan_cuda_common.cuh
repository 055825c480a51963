// Pieces the CUDA selective scans share (selective_scan_cuda.cu and the chunked scan_chunked_cuda.cu): element loads and stores in the inputs' dtypes, the fast exp2, softplus and sigmoid, the segment carry, the lane sum
// over a channel's lanes, the fixed-order partial sum, and the host-side dtype, pointer, environment, input and gradient helpers.
// Internal to those files (an unnamed namespace: each gets its own copy, as kernels must).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstdlib>

#include "core/tensor.h"
#include "kernels/selective_scan/selective_scan.h"
#include "kernels/common/cuda_utils.cuh"

namespace ssm::kernels::cuda {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

__device__ __forceinline__ float ld(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float ld(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ float ld(const __half* p, int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ void st(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void st(__nv_bfloat16* p, int64_t i, float v) { p[i] = __float2bfloat16(v); }
__device__ __forceinline__ void st(__half* p, int64_t i, float v) { p[i] = __float2half(v); }

// B / C / their grads: dtype chosen at run time (code 0 f32, 1 bf16, 2 f16; staged off the per-state loop).
__device__ __forceinline__ float ld_any(const void* p, int64_t i, int code) {
  if (code == 0) return static_cast<const float*>(p)[i];
  if (code == 1) return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
  return __half2float(static_cast<const __half*>(p)[i]);
}
__device__ __forceinline__ void st_any(void* p, int64_t i, int code, float v) {
  if (code == 0) static_cast<float*>(p)[i] = v;
  else if (code == 1) static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16(v);
  else static_cast<__half*>(p)[i] = __float2half(v);
}

// softplus(x) = log(1 + e^x); below -4 the series y - y^2/2 + y^3/3 (y = e^x < 0.019, rel. error < 2e-6).
__device__ __forceinline__ float softplus_f(float x) {
  if (x > 20.f) return x;
  const float y = __expf(x);
  return x < -4.f ? y * (1.f - y * (0.5f - y * (1.f / 3.f))) : __logf(1.f + y);
}
// sigmoid(x) = 1 / (1 + e^-x), the division by MUFU.RCP (__fdividef: 2 ulp; 1 / inf = 0) where the IEEE division
// takes a dozen instructions and a branch to a slow path.
__device__ __forceinline__ float sigmoid_f(float x) { return __fdividef(1.f, 1.f + __expf(-x)); }
// 1 - exp(-x) for x >= 0, without the cancellation at small x (series below 0.125: rel. error < 3e-8).
__device__ __forceinline__ float one_minus_exp_neg(float x) {
  if (x >= 0.125f) return 1.f - __expf(-x);
  return x * (1.f - x * (0.5f - x * (1.f / 6.f - x * (1.f / 24.f - x * (1.f / 120.f)))));
}

// A carry through a row's segments for one (b, d, n): segment s multiplies by exp2(A2 S_s) (0 where S_s is
// NaN: a document starts inside it) and adds X_s, and X_s is replaced by the value entering the segment; X_s at
// X[s xstride], S_s at S[s sstride]. In time order (the state), or reversed (the adjoint). Returns the value
// leaving the row.
__device__ __forceinline__ float carry_through(float* X, int64_t xstride, const float* S, int64_t sstride, int64_t nseg,
                                               float A2, float h, bool reverse) {
  for (int64_t k = 0; k < nseg; ++k) {
    const int64_t s = reverse ? nseg - 1 - k : k;
    const float x = X[s * xstride], sd = S[s * sstride];
    X[s * xstride] = h;
    h = fmaf(isnan(sd) ? 0.f : exp2f(A2 * sd), h, x);
  }
  return h;
}

// Sum over the Tn adjacent lanes of one channel (xor shuffles).
__device__ __forceinline__ float lane_sum(float v, int Tn) {
  for (int o = 1; o < Tn; o <<= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// out[i] = sum_{k < nparts} part[k * stride + i], in order; stored in dtype `code`.
__global__ void sum_parts_kernel(const float* part, int64_t nparts, int64_t stride, int64_t n, void* out, int code) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  float v = 0.f;
  for (int64_t k = 0; k < nparts; ++k) v += part[k * stride + i];
  st_any(out, i, code, v);
}

int dtype_code(DType t) { return t == DType::f32 ? 0 : t == DType::bf16 ? 1 : 2; }
const void* ptr(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }
const float* fptr(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

int64_t env_int(const char* name, int64_t dflt) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoll(v) : dflt;
}

// The inputs' pointers and sizes into a scan's kernel parameters (each file's struct has these fields).
template <typename P>
void set_scan_inputs(P& p, const ScanInputs& in) {
  p.u = in.u.data_ptr();
  p.delta = in.delta.data_ptr();
  p.z = ptr(in.z);
  p.B = in.B.data_ptr();
  p.C = in.C.data_ptr();
  p.A = in.A.data<float>();
  p.Dskip = fptr(in.D_skip);
  p.dbias = fptr(in.delta_bias);
  p.h0 = fptr(in.h0);
  p.seq = in.seq_idx.defined() ? in.seq_idx.data<int32_t>() : nullptr;
  p.Bt = in.u.size(0);
  p.L = in.u.size(1);
  p.D = in.u.size(2);
  p.G = in.B.size(2);
  p.N = in.B.size(3);
  p.Dg = p.D / p.G;
}

// Every gradient of a present input, in its input's dtype (A, D_skip, delta_bias, h0 in f32), and the kernels'
// pointers to the per-step ones and grad h0 (each file's parameter struct has these fields).
template <typename P>
void alloc_scan_grads(P& p, const ScanInputs& in, ScanGrads& gr) {
  const Device dev = in.u.device();
  gr.u = Tensor::empty(in.u.shape(), in.u.dtype(), dev);
  gr.delta = Tensor::empty(in.delta.shape(), in.delta.dtype(), dev);
  gr.A = Tensor::empty(in.A.shape(), DType::f32, dev);
  gr.B = Tensor::empty(in.B.shape(), in.B.dtype(), dev);
  gr.C = Tensor::empty(in.C.shape(), in.C.dtype(), dev);
  if (in.z.defined()) gr.z = Tensor::empty(in.z.shape(), in.z.dtype(), dev);
  if (in.D_skip.defined()) gr.D_skip = Tensor::empty(in.D_skip.shape(), DType::f32, dev);
  if (in.delta_bias.defined()) gr.delta_bias = Tensor::empty(in.delta_bias.shape(), DType::f32, dev);
  if (in.h0.defined()) gr.h0 = Tensor::empty(in.h0.shape(), DType::f32, dev);
  p.gu = gr.u.data_ptr();
  p.gdelta = gr.delta.data_ptr();
  p.gz = gr.z.defined() ? gr.z.data_ptr() : nullptr;
  p.gh0 = gr.h0.defined() ? gr.h0.data<float>() : nullptr;
}

// gA, gD, gdelta_bias from nparam f32 parts of (D, N) / (D) each, summed in fixed order into `gr`.
void sum_param_grads(ScanGrads& gr, const float* gA, const float* gD, const float* gdb, int64_t nparam) {
  const int64_t na = gr.A.numel(), D = gr.A.size(0);
  sum_parts_kernel<<<blocks_for(na, 256), 256, 0, stream()>>>(gA, nparam, na, na, gr.A.data_ptr(), 0);
  SSM_CUDA_LAUNCH_CHECK();
  if (gr.D_skip.defined()) {
    sum_parts_kernel<<<blocks_for(D, 256), 256, 0, stream()>>>(gD, nparam, D, D, gr.D_skip.data_ptr(), 0);
    SSM_CUDA_LAUNCH_CHECK();
  }
  if (gr.delta_bias.defined()) {
    sum_parts_kernel<<<blocks_for(D, 256), 256, 0, stream()>>>(gdb, nparam, D, D, gr.delta_bias.data_ptr(), 0);
    SSM_CUDA_LAUNCH_CHECK();
  }
}

// The backward's last step: gB, gC from nbc f32 parts of (Bt, L, G, N) each (in B's dtype, `bc` its code), and
// the parameters' gradients (sum_param_grads).
inline void sum_scan_grads(ScanGrads& gr, const float* gB, const float* gC, int64_t nbc, const float* gA,
                           const float* gD, const float* gdb, int64_t nparam, int bc) {
  const int64_t nb = gr.B.numel();
  sum_parts_kernel<<<blocks_for(nb, 256), 256, 0, stream()>>>(gB, nbc, nb, nb, gr.B.data_ptr(), bc);
  SSM_CUDA_LAUNCH_CHECK();
  sum_parts_kernel<<<blocks_for(nb, 256), 256, 0, stream()>>>(gC, nbc, nb, nb, gr.C.data_ptr(), bc);
  SSM_CUDA_LAUNCH_CHECK();
  sum_param_grads(gr, gA, gD, gdb, nparam);
}

}  // namespace
}  // namespace ssm::kernels::cuda
