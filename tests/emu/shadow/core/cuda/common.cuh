// Stands in for core/cuda/common.cuh in tests/emu (this folder comes first on test_emu's include path): the
// storage types and their conversions to the compute type, all a device header of core/cuda needs
// (core/cuda/softmax_rows.cuh). The real one also brings tensors, dispatch and launch helpers.
#pragma once
#include "tests/emu/cuda_emu.h"

#include <cstdint>

namespace ssm::cuda {

using bf16 = __nv_bfloat16;
using f16 = __half;

template <class T> struct AccT { using type = T; };
template <> struct AccT<bf16> { using type = float; };
template <> struct AccT<f16> { using type = float; };
template <class T> using acc_t = typename AccT<T>::type;

template <class T> inline acc_t<T> to_acc(T v) { return acc_t<T>(v); }
template <> inline float to_acc<bf16>(bf16 v) { return __bfloat162float(v); }
template <> inline float to_acc<f16>(f16 v) { return __half2float(v); }

template <class T, class A> inline T from_acc(A v) { return T(v); }
template <> inline bf16 from_acc<bf16, float>(float v) { return __float2bfloat16_rn(v); }
template <> inline f16 from_acc<f16, float>(float v) { return __float2half_rn(v); }

}  // namespace ssm::cuda
