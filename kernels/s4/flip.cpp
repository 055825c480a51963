// flip on the CPU (a block copy: x viewed as (outer, n, inner), row i of each outer slab comes from
// row n-1-i) and the differentiable wrapper. The CUDA copy is in flip_cuda.cu.
#include "kernels/s4/flip.h"

#include <cstring>

#include "kernels/s4/s4_cuda.h"

namespace ssm::kernels {

Tensor flip_forward(const Tensor& x_in, int64_t dim) {
  SSM_CHECK_INPUT(x_in.defined(), "flip: input x is undefined");
  const int64_t nd = x_in.dim();
  SSM_CHECK_INPUT(nd > 0, "flip: x must have at least one dim, got shape ", shape_str(x_in.shape()));
  const int64_t d = dim < 0 ? dim + nd : dim;
  SSM_CHECK_INPUT(d >= 0 && d < nd, "flip: dim ", dim, " out of range for x of shape ", shape_str(x_in.shape()));
  Tensor x = x_in.contiguous();
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < d; ++i) outer *= x.size(i);
  for (int64_t i = d + 1; i < nd; ++i) inner *= x.size(i);
  const int64_t n = x.size(d);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (y.numel() == 0) return y;
#ifdef SSM_WITH_CUDA
  if (x.device().is_cuda()) {
    cuda::flip(y, x, outer, n, inner);
    return y;
  }
#endif
  SSM_CHECK_INPUT(x.device().is_cpu(), "flip: x is on ", x.device().str(), " but this build has no CUDA");
  const size_t row = size_t(inner) * dtype_size(x.dtype());
  const char* src = static_cast<const char*>(x.data_ptr());
  char* dst = static_cast<char*>(y.data_ptr());
#pragma omp parallel for if (outer * n * inner > (1 << 16))
  for (int64_t r = 0; r < outer * n; ++r) {
    const int64_t o = r / n, i = r % n;
    std::memcpy(dst + size_t(r) * row, src + size_t(o * n + (n - 1 - i)) * row, row);
  }
  return y;
}

ag::Variable flip(const ag::Variable& x, int64_t dim) {
  SSM_CHECK_INPUT(x.defined(), "flip: input x is undefined");
  Tensor y = flip_forward(x.data(), dim);
  return ag::Variable(y, {x}, [dim](std::vector<ag::Variable>& in, const Tensor& g) {
    if (in[0].requires_grad()) in[0].add_grad(flip_forward(g, dim));
  });
}

}  // namespace ssm::kernels
