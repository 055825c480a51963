// Parameter initialisers. Every draw comes from an ssm::Generator (Philox: the same numbers on every
// device for the same seed and offset), so a model built from the same seed is the same bit for bit.
// Results are contiguous f32 CPU tensors unless a dtype is given.
#pragma once
#include <cstdint>

#include "core/ops.h"

namespace ssm::nn::init {

// U(lo, hi) elementwise.
Tensor uniform(const Shape& shape, double lo, double hi, Generator& gen, DType dtype = DType::f32);
// U(-a, a) elementwise.
inline Tensor uniform_symmetric(const Shape& shape, double a, Generator& gen, DType dtype = DType::f32) {
  return uniform(shape, -a, a, gen, dtype);
}
// N(mean, std^2) elementwise.
Tensor normal(const Shape& shape, double mean, double std, Generator& gen, DType dtype = DType::f32);
// PyTorch's nn.Linear / nn.Conv1d default (kaiming_uniform with a = sqrt 5, which reduces to):
//   U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the weight, and the same bound for the bias.
Tensor kaiming_uniform(const Shape& shape, int64_t fan_in, Generator& gen, DType dtype = DType::f32);

}  // namespace ssm::nn::init
