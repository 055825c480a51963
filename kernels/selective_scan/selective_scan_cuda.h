// CUDA entry points of the selective scan (implemented in selective_scan_cuda.cu). selective_scan.cpp
// checks the inputs, makes them contiguous and calls these only for CUDA tensors. Everything runs on
// the current stream (core/cuda/stream.h).
#pragma once
#ifdef SSM_WITH_CUDA
#include "kernels/selective_scan/selective_scan.h"

namespace ssm::kernels::cuda {

// y (Bt, L, D) in u's dtype and h_last (Bt, D, N) f32 are preallocated contiguous CUDA tensors. When
// `starts` is given it receives the segment start states (left empty when the rows were not cut).
void selective_scan_forward(const ScanInputs& in, const ScanOptions& opt, Tensor& y, Tensor& h_last,
                            SegmentStarts* starts = nullptr);

// Fills `grads` for every present input (allocates them, each in its input's dtype).
// grad_h_last may be undefined (zero). starts: the forward's, on the same inputs, or nullptr.
void selective_scan_backward(const ScanInputs& in, const Tensor& grad_y, const Tensor& grad_h_last,
                             const ScanOptions& opt, ScanGrads& grads, const SegmentStarts* starts = nullptr);

}  // namespace ssm::kernels::cuda
#endif
