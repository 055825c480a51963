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

// __shfl_up_sync (UP) / __shfl_down_sync of a float within segments of `width` lanes (a power of 2), which also
// says whether the source lane lies inside the lane's segment: PTX's shfl.sync sets that predicate with the move,
// so a scan can guard its combine with it instead of comparing lane numbers.
template <bool UP>
__device__ __forceinline__ float shfl_in(float v, int delta, int width, bool& in) {
  float r;
  int ok;
  const int c = UP ? (32 - width) << 8 : ((32 - width) << 8) | 0x1f;  // segment mask; clamp lane (down)
  if constexpr (UP)
    asm volatile("{\n\t.reg .pred p;\n\tshfl.sync.up.b32 %0|p, %2, %3, %4, 0xffffffff;\n\tselp.b32 %1, 1, 0, p;\n\t}"
                 : "=f"(r), "=r"(ok) : "f"(v), "r"(delta), "r"(c));
  else
    asm volatile("{\n\t.reg .pred p;\n\tshfl.sync.down.b32 %0|p, %2, %3, %4, 0xffffffff;\n\tselp.b32 %1, 1, 0, p;\n\t}"
                 : "=f"(r), "=r"(ok) : "f"(v), "r"(delta), "r"(c));
  in = ok != 0;
  return r;
}

}  // namespace ssm::kernels::cuda
