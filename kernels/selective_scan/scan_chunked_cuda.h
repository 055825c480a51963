// The chunked selective-scan forward on CUDA (scan_chunked_cuda.cu): the default forward, and the backward's
// checkpoint pass. Internal to kernels/selective_scan (selective_scan_cuda.cu dispatches to it).
#pragma once
#ifdef SSM_WITH_CUDA
#include "kernels/selective_scan/selective_scan.h"

namespace ssm::kernels::cuda {

// Steps between the backward's checkpoints that chunked_checkpoints writes (a thread's steps in a chunk).
constexpr int kChunkCheckpointEvery = 8;

// y (Bt, L, D) and h_last (Bt, D, N) f32 preallocated (h_last may be undefined). When `starts` is given it
// receives the state at the start of every few chunks (seg_len a multiple of the 128-step chunk).
void chunked_forward(const ScanInputs& in, const ScanOptions& opt, Tensor& y, Tensor& h_last, SegmentStarts* starts);

// ck (Bt, ceil(L / 8), D, Np) f32 preallocated (Np >= N): the state before every 8th step, for the backward.
// Starts its segments from `starts` (the forward's) when they fit these inputs, else finds its own.
void chunked_checkpoints(const ScanInputs& in, const ScanOptions& opt, const SegmentStarts* starts, Tensor& ck);

}  // namespace ssm::kernels::cuda
#endif
