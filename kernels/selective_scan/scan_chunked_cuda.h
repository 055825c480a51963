// The chunked selective scan on CUDA (scan_chunked_cuda.cu): forward, backward where it applies, and the
// checkpoint pass of selective_scan_cuda.cu's backward; selective_scan_cuda.cu calls these when
// SSM_SCAN_IMPL=chunk. Internal to kernels/selective_scan (selective_scan_cuda.cu dispatches to it).
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

// Whether the chunked scan runs the forward (backward: the backward) rather than selective_scan_cuda.cu's kernels:
// where the chunked kernels' blocks of whole rows fill half a wave of the GPU, or the sequential kernels (N 12-16)
// run, cutting few long rows into time segments. selective_scan_cuda.cu's rule (impl_for).
bool chunked_runs(const ScanInputs& in, bool backward);

// The chunked backward (non-deterministic mode only: it sums gB / gC with float atomics). Returns false, doing nothing,
// when it does not apply: deterministic mode, or rows too few to fill half the GPU where the sequential backward does
// not run (env SSM_SCAN_CHUNK_BWD "always" / "never" overrides the latter); the caller then runs
// selective_scan_cuda.cu's backward.
bool chunked_backward(const ScanInputs& in, const Tensor& grad_y, const Tensor& grad_h_last, const ScanOptions& opt,
                      ScanGrads& grads, const SegmentStarts* starts);

}  // namespace ssm::kernels::cuda
#endif
