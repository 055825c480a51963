// Walking a list of tensors in one launch: their elements cut into chunks of Chunk, numbered tensor after tensor
// (chunks_to[i]: the chunks of tensors 0..i together), block b taking chunks b, b + grid, ... The list's
// pointers travel in the kernel's parameter block (4 KB), so a launch takes some tens of tensors; the list
// kernels (scale_list.cuh, kernels/optim's adamw_list) replace a launch per tensor.
#pragma once
#include <cstdint>

namespace ssm::cuda {

// f(t, begin, end) for each chunk of this block: elements [begin, end) of tensor t. Chunk a multiple of 4 keeps
// a tensor's float4 alignment in every chunk.
template <int64_t Chunk, class F>
__device__ __forceinline__ void for_list_chunks(const int64_t* chunks_to, const int64_t* numel, int n, F&& f) {
  const int64_t total = chunks_to[n - 1];
  int t = 0;
  for (int64_t c = blockIdx.x; c < total; c += gridDim.x) {
    while (chunks_to[t] <= c) ++t;  // c only grows: the search goes on from the last tensor
    const int64_t begin = (c - (t > 0 ? chunks_to[t - 1] : 0)) * Chunk;
    f(t, begin, begin + Chunk < numel[t] ? begin + Chunk : numel[t]);
  }
}

// Host side: appends a tensor of `numel` elements as entry k of the list.
template <int64_t Chunk>
inline void add_list_chunks(int64_t* chunks_to, int64_t* numel_out, int k, int64_t numel) {
  numel_out[k] = numel;
  chunks_to[k] = (k > 0 ? chunks_to[k - 1] : 0) + (numel + Chunk - 1) / Chunk;
}

}  // namespace ssm::cuda
