// Device helpers of the row-wise norm kernels (norms_cuda.cu, add_norm_cuda.cu): typed loads/stores
// that widen bf16/f16 to f32, a warp all-reduce, and a dispatch from a runtime DType to a device element type.
// CUDA-only (include from .cu files).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "core/error.h"
#include "core/tensor.h"

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

}  // namespace ssm::kernels::cuda::norm_detail
