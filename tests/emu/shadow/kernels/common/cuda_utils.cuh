// Stands in for kernels/common/cuda_utils.cuh when a kernel file is compiled for the CUDA emulator
// (tests/emu/cuda_emu.h): the same helpers, with the stream, the SM count and the error checks of a machine
// without a GPU. This folder comes first on the emulated targets' include path.
#pragma once
#include "tests/emu/cuda_emu.h"

#include <cmath>
#include <cstdint>

#include "core/error.h"
#include "kernels/common/cuda_types.cuh"

#define SSM_CUDA_CHECK(call) (void)(call)
#define SSM_CUDA_LAUNCH_CHECK() (void)0

namespace ssm::cuda {
namespace {
// An H100's 132 SMs: the kernels' segment and occupancy rules see the shapes they see on the GPU.
inline int sm_count() { return 132; }
}  // namespace
}  // namespace ssm::cuda

namespace ssm::kernels::cuda {
namespace {

inline cudaStream_t stream() { return nullptr; }

template <typename T>
inline T* dynamic_smem() {
  return static_cast<T*>(::ssm::emu::dynamic_shared());
}

inline float ex2(float x) { return std::exp2(x); }
template <bool UP>
inline float shfl_in(float v, int delta, int width, bool& in) {
  const int lane = ::ssm::emu::lane_id() % width;
  in = UP ? lane >= delta : lane + delta < width;
  return UP ? __shfl_up_sync(0xffffffffu, v, unsigned(delta), width)
            : __shfl_down_sync(0xffffffffu, v, unsigned(delta), width);
}

}  // namespace
}  // namespace ssm::kernels::cuda
