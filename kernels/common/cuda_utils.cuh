// Small helpers shared by the kernels/*/*.cu files: the stream the kernels run on, the dynamic shared memory, 2^x,
// and (cuda_types.cuh) launch-size arithmetic and the device type of a dtype tag. Error checks (SSM_CUDA_CHECK, SSM_CUFFT_CHECK, SSM_CUDA_LAUNCH_CHECK) come from
// core/cuda/check.h. CUDA-only (include from .cu files).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/cuda/check.h"
#include "core/cuda/stream.h"
#include "core/dtype.h"
#include "kernels/common/cuda_types.cuh"

namespace ssm::kernels::cuda {

// Every kernel here runs on the current stream of the current device, like the core ops, so work on
// one device stays ordered and the caching allocator may recycle temporaries without a sync.
inline cudaStream_t stream() { return ::ssm::cuda::current_stream(); }

// The block's dynamic shared memory (the launch's third argument), 16-byte aligned. One declaration for all
// kernels, so tests/emu's emulator can stand in for it.
template <typename T>
__device__ __forceinline__ T* dynamic_smem() {
  extern __shared__ float4 ssm_dynamic_smem[];
  return reinterpret_cast<T*>(ssm_dynamic_smem);
}

// 2^x on the MUFU unit (ex2.approx.ftz: about 2 ulp, a subnormal result reads 0): the scans' decays
// exp2(dt A log2 e), the conv's SiLU.
__device__ __forceinline__ float ex2(float x) {
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
  return r;
}

}  // namespace ssm::kernels::cuda
