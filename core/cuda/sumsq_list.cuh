// sum x^2 over a list of f32 tensors in one launch (gradient clipping's norm: one launch per tensor otherwise, 242
// a step for the 130M LM at ~4 us each), walked as list_chunks.cuh says: a block's chunks summed in f32 (4096
// elements each), the chunks' sums in f64, and one f64 partial per block, which the host adds. A header of its own
// so that tests/emu runs the kernel on the CPU. Internal to core/cuda/.
#pragma once
#include <cstdint>

#include "core/cuda/block_reduce.cuh"
#include "core/cuda/list_chunks.cuh"

namespace ssm::cuda {

constexpr int kSumsqListMax = 128;
constexpr int64_t kSumsqChunk = 4096;  // a multiple of 4: chunks keep their tensor's float4 alignment
constexpr int kSumsqThreads = 256;
struct SumsqList {
  int n;
  int64_t chunks_to[kSumsqListMax];  // chunks of tensors 0..i together
  int64_t numel[kSumsqListMax];
  const float* x[kSumsqListMax];     // 16-byte aligned (the host lists no other)
  double* partial;                   // one per block
};

namespace {  // one kernel per including file (reduce.cu; tests/emu's test beside the library)

__global__ void __launch_bounds__(kSumsqThreads) sumsq_list(SumsqList L) {
  double acc = 0;
  for_list_chunks<kSumsqChunk>(L.chunks_to, L.numel, L.n, [&](int t, int64_t begin, int64_t end) {
    const float* x = L.x[t];
    const int64_t n4 = (end - begin) / 4;
    float s = 0.f;
    for (int64_t q = threadIdx.x; q < n4; q += blockDim.x) {
      const float4 v = *reinterpret_cast<const float4*>(x + begin + 4 * q);
      s = fmaf(v.x, v.x, s);
      s = fmaf(v.y, v.y, s);
      s = fmaf(v.z, v.z, s);
      s = fmaf(v.w, v.w, s);
    }
    for (int64_t i = begin + 4 * n4 + threadIdx.x; i < end; i += blockDim.x) s = fmaf(x[i], x[i], s);
    acc += double(s);
  });
  acc = block_sum(acc);
  if (threadIdx.x == 0) L.partial[blockIdx.x] = acc;
}

}  // namespace
}  // namespace ssm::cuda
