// flip: reverse a tensor along one dimension (bidirectional S4D runs causal_conv on a flipped sequence).
//
//   y[..., i, ...] = x[..., n-1-i, ...]            (n = x.size(dim))
//   backward: grad_x = flip(grad_y, dim)             (a flip is a permutation and its own inverse)
//
// Any dtype, CPU and CUDA; the output is a new contiguous tensor on x's device.
#pragma once
#include <cstdint>

#include "autograd/variable.h"
#include "core/tensor.h"

namespace ssm::kernels {

Tensor flip_forward(const Tensor& x, int64_t dim);
ag::Variable flip(const ag::Variable& x, int64_t dim);

}  // namespace ssm::kernels
