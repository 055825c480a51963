// x *= s over a list of f32 tensors in one launch (gradient clipping's scaling of every gradient: one launch per
// tensor otherwise, ~240 for the 130M LM), walked as list_chunks.cuh says. A header of its own so that tests/emu
// runs the kernel on the CPU. Internal to core/cuda/.
#pragma once
#include <cstdint>

#include "core/cuda/list_chunks.cuh"

namespace ssm::cuda {

constexpr int kScaleListMax = 128;
constexpr int64_t kScaleChunk = 4096;  // a multiple of 4: chunks keep their tensor's float4 alignment
struct ScaleList {
  int n;
  float s;
  int64_t chunks_to[kScaleListMax];  // chunks of tensors 0..i together
  int64_t numel[kScaleListMax];
  float* x[kScaleListMax];           // 16-byte aligned (the host lists no other)
};

namespace {  // one kernel per including file (scale_list.cu; tests/emu's test beside the library)

__global__ void __launch_bounds__(256) scale_list(ScaleList L) {
  for_list_chunks<kScaleChunk>(L.chunks_to, L.numel, L.n, [&](int t, int64_t begin, int64_t end) {
    float* x = L.x[t];
    const int64_t n4 = (end - begin) / 4;
    for (int64_t q = threadIdx.x; q < n4; q += blockDim.x) {
      float4 v = *reinterpret_cast<float4*>(x + begin + 4 * q);
      v.x *= L.s;
      v.y *= L.s;
      v.z *= L.s;
      v.w *= L.s;
      *reinterpret_cast<float4*>(x + begin + 4 * q) = v;
    }
    for (int64_t i = begin + 4 * n4 + threadIdx.x; i < end; i += blockDim.x) x[i] *= L.s;
  });
}

}  // namespace
}  // namespace ssm::cuda
