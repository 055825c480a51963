// flip on CUDA: one thread per element of y (outer, n, inner), moved as an opaque word of the dtype's
// width. y[o, i, j] = x[o, n-1-i, j].
#include "kernels/common/cuda_utils.cuh"
#include "kernels/s4/s4_cuda.h"

namespace ssm::kernels::cuda {
namespace {

template <typename W>
__global__ void flip_kernel(W* __restrict__ y, const W* __restrict__ x, int64_t total, int64_t n, int64_t inner) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = e % inner, r = e / inner, i = r % n, o = r / n;
    y[e] = x[(o * n + (n - 1 - i)) * inner + j];
  }
}

template <typename W>
void launch(Tensor& y, const Tensor& x, int64_t outer, int64_t n, int64_t inner) {
  const int64_t total = outer * n * inner;
  const int threads = 256;
  unsigned blocks = blocks_for(total, threads);
  if (blocks > 65535u * 8u) blocks = 65535u * 8u;
  flip_kernel<W><<<blocks, threads, 0, stream()>>>(static_cast<W*>(y.data_ptr()), static_cast<const W*>(x.data_ptr()),
                                                   total, n, inner);
  SSM_CUDA_LAUNCH_CHECK();
}

}  // namespace

void flip(Tensor& y, const Tensor& x, int64_t outer, int64_t n, int64_t inner) {
  switch (dtype_size(x.dtype())) {
    case 1: launch<uint8_t>(y, x, outer, n, inner); break;
    case 2: launch<uint16_t>(y, x, outer, n, inner); break;
    case 4: launch<uint32_t>(y, x, outer, n, inner); break;
    case 8: launch<uint64_t>(y, x, outer, n, inner); break;
    default: SSM_CHECK(false, "flip: unexpected element size ", dtype_size(x.dtype()));
  }
}

}  // namespace ssm::kernels::cuda
