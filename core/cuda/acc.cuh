// The storage types of the CUDA kernels and their conversions to the compute type (f32 for f32 / bf16 / f16,
// f64 for f64, i64 for the integer types) and back. Apart from common.cuh so that tests/emu's emulated device
// headers use these same definitions.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace ssm::cuda {

using bf16 = __nv_bfloat16;
using f16 = __half;

template <class T> struct AccT { using type = T; };
template <> struct AccT<bf16> { using type = float; };
template <> struct AccT<f16> { using type = float; };
template <> struct AccT<int32_t> { using type = int64_t; };
template <> struct AccT<uint8_t> { using type = int64_t; };
template <class T> using acc_t = typename AccT<T>::type;

template <class T> __device__ __forceinline__ acc_t<T> to_acc(T v) { return acc_t<T>(v); }
template <> __device__ __forceinline__ float to_acc<bf16>(bf16 v) { return __bfloat162float(v); }
template <> __device__ __forceinline__ float to_acc<f16>(f16 v) { return __half2float(v); }

// Round to T (round to nearest even for the half types; integers truncate).
template <class T, class A> __device__ __forceinline__ T from_acc(A v) { return T(v); }
template <> __device__ __forceinline__ bf16 from_acc<bf16, float>(float v) { return __float2bfloat16_rn(v); }
template <> __device__ __forceinline__ f16 from_acc<f16, float>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ bf16 from_acc<bf16, double>(double v) { return __float2bfloat16_rn(float(v)); }
template <> __device__ __forceinline__ f16 from_acc<f16, double>(double v) { return __float2half_rn(float(v)); }

}  // namespace ssm::cuda
