// The CUDA emulator itself (cuda_emu.h): thread and block indices, shared memory, __syncthreads, the
// shuffles and votes at their widths, the atomics, and the deadlock report.
#include <gtest/gtest.h>

#include <numeric>
#include <stdexcept>
#include <vector>

#include "tests/emu/cuda_emu.h"

namespace {

using ::ssm::emu::Config;
using ::ssm::emu::launch_with;

__global__ void ids_kernel(int* out) {
  const int t = int(threadIdx.x + blockDim.x * threadIdx.y);
  const int b = int(blockIdx.x + gridDim.x * blockIdx.y);
  out[b * int(blockDim.x * blockDim.y) + t] = b * 1000 + t;
}

// Each thread writes its index to shared memory; after the barrier, reads its mirror's.
__global__ void mirror_kernel(int* out) {
  int* s = static_cast<int*>(::ssm::emu::dynamic_shared());
  const int t = int(threadIdx.x), n = int(blockDim.x);
  s[t] = t * 10 + int(blockIdx.x);
  __syncthreads();
  out[blockIdx.x * n + t] = s[n - 1 - t];
}

__global__ void shuffle_kernel(float* out) {
  const int t = int(threadIdx.x);
  const float v = float(t);
  float* o = out + t * 6;
  o[0] = __shfl_up_sync(0xffffffffu, v, 1, 16);
  o[1] = __shfl_down_sync(0xffffffffu, v, 2, 16);
  o[2] = __shfl_xor_sync(0xffffffffu, v, 16);
  o[3] = __shfl_sync(0xffffffffu, v, 5);
  o[4] = float(__ballot_sync(0xffffffffu, t % 3 == 0) & 0xffffu);
  float sum = v;  // a warp sum by xor shuffles, in a loop (every lane reaches each shuffle)
  for (int k = 1; k < 32; k <<= 1) sum += __shfl_xor_sync(0xffffffffu, sum, k);
  o[5] = sum;
}

// Every thread of every block adds (1, t, -t, 2) into four float4 cells, (t % 4), and 1 into an int counter.
__global__ void atomics_kernel(float4* cells, int* count) {
  const int t = int(threadIdx.x);
  atomicAdd(&cells[t % 4], make_float4(1.f, float(t), float(-t), 2.f));
  atomicAdd(count, 1);
}

__global__ void deadlock_kernel() {
  if (threadIdx.x == 0) __syncthreads();  // the others have exited... and thread 1 waits on a warp barrier
  if (threadIdx.x == 1) __syncwarp();
  if (threadIdx.x >= 1) __syncthreads();
}

TEST(EmuRuntime, ThreadAndBlockIndices) {
  std::vector<int> out(6 * 64, -1);
  launch_with(Config(dim3(3, 2), dim3(16, 4)), ids_kernel, out.data());
  for (int b = 0; b < 6; ++b)
    for (int t = 0; t < 64; ++t) EXPECT_EQ(out[size_t(b * 64 + t)], b * 1000 + t);
}

TEST(EmuRuntime, SharedMemoryAndBarrier) {
  std::vector<int> out(2 * 100, -1);
  launch_with(Config(2, 100, 100 * sizeof(int)), mirror_kernel, out.data());  // a partial last warp
  for (int b = 0; b < 2; ++b)
    for (int t = 0; t < 100; ++t) EXPECT_EQ(out[size_t(b * 100 + t)], (99 - t) * 10 + b);
}

TEST(EmuRuntime, ShufflesAndBallot) {
  std::vector<float> out(64 * 6, -1.f);
  launch_with(Config(1, 64), shuffle_kernel, out.data());
  for (int t = 0; t < 64; ++t) {
    const int lane = t % 32, warp0 = t - lane;
    const float* o = &out[size_t(t * 6)];
    EXPECT_EQ(o[0], float(lane % 16 >= 1 ? t - 1 : t)) << t;
    EXPECT_EQ(o[1], float(lane % 16 + 2 < 16 ? t + 2 : t)) << t;
    EXPECT_EQ(o[2], float(warp0 + (lane ^ 16))) << t;
    EXPECT_EQ(o[3], float(warp0 + 5)) << t;
    unsigned want = 0;
    for (int l = 0; l < 16; ++l) want |= unsigned((warp0 + l) % 3 == 0) << l;
    EXPECT_EQ(o[4], float(want)) << t;
    EXPECT_EQ(o[5], float(32 * warp0 + 31 * 16)) << t;
  }
}

TEST(EmuRuntime, Atomics) {
  std::vector<float4> cells(4, make_float4(0.f, 0.f, 0.f, 0.f));
  int count = 0;
  launch_with(Config(3, 64), atomics_kernel, cells.data(), &count);
  EXPECT_EQ(count, 3 * 64);
  for (int k = 0; k < 4; ++k) {
    float tsum = 0.f;  // the thread indices t < 64 with t % 4 == k, once per block
    for (int t = k; t < 64; t += 4) tsum += float(t);
    EXPECT_EQ(cells[size_t(k)].x, 3.f * 16.f) << k;
    EXPECT_EQ(cells[size_t(k)].y, 3.f * tsum) << k;
    EXPECT_EQ(cells[size_t(k)].z, -3.f * tsum) << k;
    EXPECT_EQ(cells[size_t(k)].w, 3.f * 32.f) << k;
  }
}

TEST(EmuRuntime, DeadlockIsReported) {
  EXPECT_THROW(launch_with(Config(1, 32), deadlock_kernel), std::runtime_error);
}

}  // namespace
