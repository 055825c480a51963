// scale_: x *= s for many tensors (the kernel and its layout: scale_list.cuh).
#include "core/cuda/scale_list.cuh"

#include "core/cuda/common.cuh"
#include "core/cuda/cuda_ops.h"

namespace ssm::cuda {

void scale_(const std::vector<Tensor>& xs, double s) {
  if (xs.empty()) return;
  TensorDevice td(xs[0]);
  ScaleList L{};
  L.s = float(s);
  auto flush = [&] {
    if (L.n == 0) return;
    const int64_t total = L.chunks_to[L.n - 1], most = int64_t(sm_count()) * 8;
    scale_list<<<unsigned(total < most ? total : most), 256, 0, td.stream>>>(L);
    SSM_CUDA_LAUNCH_CHECK();
    L.n = 0;
  };
  for (const Tensor& x : xs) {
    if (x.numel() == 0) continue;
    const int k = L.n;
    add_list_chunks<kScaleChunk>(L.chunks_to, L.numel, k, x.numel());
    L.x[k] = static_cast<float*>(const_cast<void*>(x.data_ptr()));
    if (++L.n == kScaleListMax) flush();
  }
  flush();
}

}  // namespace ssm::cuda
