// A CUDA emulator for kernel tests on machines without a GPU: a kernel's own source, compiled by the host
// compiler, runs on the CPU with CUDA's execution model (blocks of threads, shared memory, __syncthreads, warp
// shuffles and votes, atomics), so CI checks the kernels' indexing, staging and synchronisation against the
// CPU references. Correctness only: it is thousands of times slower than a GPU and says nothing of speed.
//
// How a .cu file becomes an emulated one (tests/emu/CMakeLists.txt, ssm_emu_sources):
//   - its launches `kernel<<<grid, block, smem, stream>>>(args)` are rewritten to
//     `::ssm::emu::launch_with(::ssm::emu::Config(grid, block, smem, stream), [&](auto&&... a) { kernel(a...); }, args)`;
//   - tests/emu/shadow/kernels/common/cuda_utils.cuh stands in for the real one (it comes first on the include
//     path): the host compiler gets CUDA's types (cuda_bf16.h, vector_types.h) and this header's definitions
//     of the device built-ins, and the runtime calls the kernels' host code makes.
//
// Execution: each block runs alone; each of its threads is a fiber (ucontext) on one OS thread, switched
// at every barrier. __syncthreads waits for the block's live threads, __syncwarp and the shuffles for the
// warp's (all 32 lanes, or the block's last partial warp, must take part, as the full masks the kernels pass
// say). A barrier that can never complete (threads at different barriers, or some exited early while
// others wait on them) is reported as a deadlock instead of hanging. Dynamic shared memory is filled with
// NaN bytes before each block, so a read of an unwritten entry shows up in the results; static __shared__
// arrays are function-level statics (not refilled). Kernels take dynamic shared memory through dynamic_smem()
// (kernels/common/cuda_utils.cuh), never `extern __shared__`.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <driver_types.h>
#include <vector_types.h>

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

// The host compiler's view of CUDA's qualifiers: plain functions.
#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __forceinline__
#undef __launch_bounds__
#define __global__
#define __device__
#define __host__
#define __shared__ static  // one array per kernel instantiation, shared by the block's fibers (blocks run one at a time)
#define __forceinline__ inline
#define __launch_bounds__(...)

namespace ssm::emu {

constexpr size_t kMaxSharedBytes = 227 * 1024;  // an H100's opt-in limit per block

// The running thread's coordinates (valid inside a kernel).
const uint3& thread_idx();
const uint3& block_idx();
const dim3& block_dim();
const dim3& grid_dim();
// The block's dynamic shared memory: the launch's bytes, 16-byte aligned (at most kMaxSharedBytes).
void* dynamic_shared();

void sync_block();
void sync_warp();
// Each lane publishes `v`; returns the value published by lane `src` (lane index within the warp).
uint32_t exchange(uint32_t v, int src);
uint32_t ballot(bool pred);
int lane_id();

// Runs body() as every thread of every block of the grid (blocks in order x, y, z).
void run_grid(dim3 grid, dim3 block, size_t smem, const std::function<void()>& body);

// A launch's configuration.
struct Config {
  dim3 grid, block;
  size_t smem;
  Config(dim3 g, dim3 b, size_t s = 0, cudaStream_t = nullptr) : grid(g), block(b), smem(s) {}
};
// A launch: `kernel(args...)` as every thread of every block (`call` forwards to the kernel, so its template
// arguments are deduced from the arguments as in a CUDA launch). Each thread gets its own copies of the arguments.
template <typename F, typename... A>
void launch_with(const Config& cfg, F&& call, A&&... args) {
  const std::tuple<std::decay_t<A>...> bound(std::forward<A>(args)...);
  run_grid(cfg.grid, cfg.block, cfg.smem, [&] {
    std::apply([&](const auto&... a) { call(a...); }, bound);
  });
}

// A lane's value from lane `src` of its warp, for 4- and 8-byte types (two 32-bit exchanges).
template <typename T>
T exchange_value(T v, int src) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8);
  uint32_t w[2] = {0u, 0u};
  std::memcpy(w, &v, sizeof(T));
  for (size_t i = 0; i < sizeof(T) / 4; ++i) w[i] = exchange(w[i], src);
  T r;
  std::memcpy(&r, w, sizeof(T));
  return r;
}

}  // namespace ssm::emu

// Built-in variables.
#define threadIdx (::ssm::emu::thread_idx())
#define blockIdx (::ssm::emu::block_idx())
#define blockDim (::ssm::emu::block_dim())
#define gridDim (::ssm::emu::grid_dim())

// Built-in functions (the ones the emulated kernels use; add as needed).
inline void __syncthreads() { ::ssm::emu::sync_block(); }
inline void __syncwarp(unsigned = 0xffffffffu) { ::ssm::emu::sync_warp(); }
template <typename T>
inline T __shfl_sync(unsigned, T v, int src, int width = 32) {
  const int lane = ::ssm::emu::lane_id();
  return ::ssm::emu::exchange_value(v, lane / width * width + src % width);
}
template <typename T>
inline T __shfl_up_sync(unsigned, T v, unsigned delta, int width = 32) {
  const int lane = ::ssm::emu::lane_id();
  return ::ssm::emu::exchange_value(v, lane % width >= int(delta) ? lane - int(delta) : lane);
}
template <typename T>
inline T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
  const int lane = ::ssm::emu::lane_id();
  return ::ssm::emu::exchange_value(v, lane % width + int(delta) < width ? lane + int(delta) : lane);
}
template <typename T>
inline T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
  const int lane = ::ssm::emu::lane_id();
  const int src = lane ^ mask;
  return ::ssm::emu::exchange_value(v, src / width == lane / width ? src : lane);
}
inline unsigned __ballot_sync(unsigned, int pred) { return ::ssm::emu::ballot(pred != 0); }
inline float atomicAdd(float* p, float v) {  // one OS thread: a plain read-modify-write is atomic
  const float old = *p;
  *p = old + v;
  return old;
}
inline float4 atomicAdd(float4* p, float4 v) {  // sm_90's 16-byte vector add (global memory)
  const float4 old = *p;
  *p = make_float4(old.x + v.x, old.y + v.y, old.z + v.z, old.w + v.w);
  return old;
}
inline int atomicAdd(int* p, int v) {
  const int old = *p;
  *p = old + v;
  return old;
}
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __int_as_float(int i) { return std::bit_cast<float>(i); }
inline float __uint_as_float(unsigned u) { return std::bit_cast<float>(u); }
inline unsigned __float_as_uint(float f) { return std::bit_cast<unsigned>(f); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long min(long a, long b) { return a < b ? a : b; }
inline long max(long a, long b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
using std::isnan;

// The runtime calls the kernels' host code makes: attributes are accepted as given; the occupancy is what
// shared memory and threads allow on an H100 (228 KB and 2048 threads per SM, 1 KB reserved per block).
template <typename F>
inline cudaError_t cudaFuncSetAttribute(F, cudaFuncAttribute, int) {
  return cudaSuccess;
}
template <typename F>
inline cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* n, F, int threads, size_t smem) {
  const size_t by_smem = (228 * 1024) / (smem + 1024);
  const int by_threads = 2048 / (threads > 0 ? threads : 1);
  *n = int(std::min<size_t>(std::min<size_t>(by_smem, size_t(by_threads)), 32));
  return cudaSuccess;
}
