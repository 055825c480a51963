// Launch-size arithmetic and the device type of a dtype tag: the parts of cuda_utils.cuh that need no CUDA
// runtime (tests/emu's stand-in for cuda_utils.cuh includes this too).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "core/dtype.h"

namespace ssm::kernels::cuda {

inline unsigned blocks_for(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  return unsigned(b < 1 ? 1 : (b > 0x7fffffff ? 0x7fffffff : b));
}

// The device element type of a host dtype tag: DevT<bf16_t>::type is __nv_bfloat16, DevT<f16_t>::type
// __half, anything else itself.
template <typename T>
struct DevT {
  using type = T;
};
template <>
struct DevT<bf16_t> {
  using type = __nv_bfloat16;
};
template <>
struct DevT<f16_t> {
  using type = __half;
};

}  // namespace ssm::kernels::cuda
