// Small helpers shared by the kernels/*/*.cu files: the stream the kernels run on, launch-size
// arithmetic and the device type of a dtype tag. Error checks (SSM_CUDA_CHECK, SSM_CUFFT_CHECK, SSM_CUDA_LAUNCH_CHECK) come from
// core/cuda/check.h. CUDA-only (include from .cu files).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/cuda/check.h"
#include "core/cuda/stream.h"
#include "core/dtype.h"

namespace ssm::kernels::cuda {

// Every kernel here runs on the current stream of the current device, like the core ops, so work on
// one device stays ordered and the caching allocator may recycle temporaries without a sync.
inline cudaStream_t stream() { return ::ssm::cuda::current_stream(); }

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
