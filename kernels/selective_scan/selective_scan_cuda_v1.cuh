// The first CUDA selective scan (selective_scan_cuda_v1.cu): one thread per (b, d, 8 states), time tiles
// staged in shared memory. Kept as a fallback (env SSM_SCAN_IMPL=v1) and a cross-check of the fast path.
#pragma once
#include "kernels/selective_scan/selective_scan.h"

namespace ssm::kernels::cuda {
void selective_scan_forward_v1(const ScanInputs& in, const ScanOptions& opt, Tensor& y, Tensor& h_last);
void selective_scan_backward_v1(const ScanInputs& in, const Tensor& grad_y, const Tensor& grad_h_last,
                                const ScanOptions& opt, ScanGrads& grads);
}  // namespace ssm::kernels::cuda
