// Random tensors on CUDA, element for element the same as the CPU (core/random.cpp): element i of a draw
// (seed, offset) is philox_uniform / philox_normal / philox_bernoulli(seed, offset + i) from core/philox.h,
// generated in f32 and then stored (f64 holds the f32 value; bf16/f16 round to nearest even).
// Uniform and Bernoulli use only integer ops and exact f32 products, so they are bit-identical to the CPU;
// normal goes through logf / cosf, whose CUDA and glibc versions may differ in the last bit or two.
#include "core/cuda/common.cuh"
#include "core/cuda/cuda_ops.h"
#include "core/philox.h"

namespace ssm::cuda {
namespace {

constexpr int kThreads = 256;

enum class Dist { Uniform, Normal };

template <class O>
__global__ void __launch_bounds__(kThreads) rand_kernel(O* out, int64_t n, uint64_t seed, uint64_t offset, Dist dist) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const uint64_t ctr = offset + uint64_t(i);
    const float v = dist == Dist::Uniform ? philox_uniform(seed, ctr) : philox_normal(seed, ctr);
    out[i] = from_acc<O>(v);
  }
}

__global__ void __launch_bounds__(kThreads) bernoulli_kernel(uint8_t* out, int64_t n, uint64_t seed, uint64_t offset,
                                                             float p) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = philox_bernoulli(seed, offset + uint64_t(i), p);
}

unsigned grid_for(int64_t n) { return unsigned(std::min<int64_t>(blocks_for(n, kThreads), int64_t(sm_count()) * 16)); }

Tensor draw(const Shape& shape, uint64_t seed, uint64_t offset, DType dtype, Device device, Dist dist) {
  Tensor out = Tensor::empty(shape, dtype, device);
  const int64_t n = out.numel();
  if (n == 0) return out;
  TensorDevice td(out);
  SSM_DISPATCH_FLOAT(dtype, dist == Dist::Uniform ? "rand_uniform" : "rand_normal", {
    rand_kernel<scalar_t><<<grid_for(n), kThreads, 0, td.stream>>>(out.data<scalar_t>(), n, seed, offset, dist);
    SSM_CUDA_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

Tensor rand_uniform(const Shape& shape, uint64_t seed, uint64_t offset, DType dtype, Device device) {
  return draw(shape, seed, offset, dtype, device, Dist::Uniform);
}

Tensor rand_normal(const Shape& shape, uint64_t seed, uint64_t offset, DType dtype, Device device) {
  return draw(shape, seed, offset, dtype, device, Dist::Normal);
}

Tensor rand_bernoulli(const Shape& shape, double p, uint64_t seed, uint64_t offset, Device device) {
  Tensor out = Tensor::empty(shape, DType::u8, device);
  const int64_t n = out.numel();
  if (n == 0) return out;
  TensorDevice td(out);
  bernoulli_kernel<<<grid_for(n), kThreads, 0, td.stream>>>(out.data<uint8_t>(), n, seed, offset, float(p));
  SSM_CUDA_LAUNCH_CHECK();
  return out;
}

}  // namespace ssm::cuda
