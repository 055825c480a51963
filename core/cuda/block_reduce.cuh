// Warp and block reductions (sum, max) for the CUDA kernels. Apart from common.cuh so that tests/emu's emulated
// device headers (core/cuda/sumsq_list.cuh) use these same definitions.
#pragma once

namespace ssm::cuda {

template <class A>
__device__ __forceinline__ A warp_sum(A v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <class A>
__device__ __forceinline__ A warp_max(A v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    A w = __shfl_xor_sync(0xffffffffu, v, o);
    v = (w > v || w != w) ? w : v;  // NaN wins
  }
  return v;
}
// Sum over the whole block (blockDim.x a multiple of 32, <= 1024); every thread gets the result.
template <class A>
__device__ __forceinline__ A block_sum(A v) {
  __shared__ A sh[32];
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // sh may still be read by a previous call
  if (lane == 0) sh[w] = v;
  __syncthreads();
  v = lane < nw ? sh[lane] : A(0);
  return warp_sum(v);
}
template <class A>
__device__ __forceinline__ A block_max(A v, A lowest) {
  __shared__ A sh[32];
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) sh[w] = v;
  __syncthreads();
  v = lane < nw ? sh[lane] : lowest;
  return warp_max(v);
}

}  // namespace ssm::cuda
