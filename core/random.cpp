// Counter-based random numbers on the CPU; the per-element rule lives in core/philox.h so the CUDA
// kernels produce the same values: element i of a draw (seed, offset) uses Philox counter offset + i.
#include "core/cpu_loops.h"
#include "core/ops.h"
#include "core/philox.h"
#ifdef SSM_WITH_CUDA
#include "core/cuda/cuda_ops.h"
#endif

namespace ssm {
namespace {

// out[i] = gen(seed, offset + i), stored as f32 or f64 (halves: generated in f32 and converted).
template <typename G>
Tensor fill_random(const Shape& shape, DType dtype, uint64_t seed, uint64_t offset, G gen) {
  const DType work = dtype == DType::f64 ? DType::f64 : DType::f32;
  Tensor out = Tensor::empty(shape, work);
  const int64_t n = out.numel();
  if (work == DType::f64) {
    double* p = out.data<double>();
#pragma omp parallel for schedule(static) if (n > cpu::kParallelGrain / 16)
    for (int64_t i = 0; i < n; ++i) p[i] = double(gen(seed, offset + uint64_t(i)));
  } else {
    float* p = out.data<float>();
#pragma omp parallel for schedule(static) if (n > cpu::kParallelGrain / 16)
    for (int64_t i = 0; i < n; ++i) p[i] = gen(seed, offset + uint64_t(i));
  }
  return out.to(dtype);
}

void check_random(const Shape& shape, DType dtype, const char* op) {
  for (int64_t v : shape) SSM_CHECK_INPUT(v >= 0, op, ": negative size in shape ", shape_str(shape));
  SSM_CHECK_INPUT(is_floating(dtype), op, ": dtype must be floating, got ", dtype_name(dtype));
}

}  // namespace

Tensor rand_uniform(const Shape& shape, uint64_t seed, uint64_t offset, DType dtype, Device device) {
  check_random(shape, dtype, "rand_uniform");
#ifdef SSM_WITH_CUDA
  if (device.is_cuda()) return cuda::rand_uniform(shape, seed, offset, dtype, device);
#endif
  SSM_CHECK_INPUT(device.is_cpu(), "rand_uniform: this build has no CUDA (device ", device.str(), " requested)");
  return fill_random(shape, dtype, seed, offset, [](uint64_t s, uint64_t c) { return philox_uniform(s, c); });
}

Tensor rand_normal(const Shape& shape, uint64_t seed, uint64_t offset, DType dtype, Device device) {
  check_random(shape, dtype, "rand_normal");
#ifdef SSM_WITH_CUDA
  if (device.is_cuda()) return cuda::rand_normal(shape, seed, offset, dtype, device);
#endif
  SSM_CHECK_INPUT(device.is_cpu(), "rand_normal: this build has no CUDA (device ", device.str(), " requested)");
  return fill_random(shape, dtype, seed, offset, [](uint64_t s, uint64_t c) { return philox_normal(s, c); });
}

Tensor rand_bernoulli(const Shape& shape, double p, uint64_t seed, uint64_t offset, Device device) {
  for (int64_t v : shape) SSM_CHECK_INPUT(v >= 0, "rand_bernoulli: negative size in shape ", shape_str(shape));
  SSM_CHECK_INPUT(p >= 0.0 && p <= 1.0, "rand_bernoulli: p must be in [0, 1], got ", p);
#ifdef SSM_WITH_CUDA
  if (device.is_cuda()) return cuda::rand_bernoulli(shape, p, seed, offset, device);
#endif
  SSM_CHECK_INPUT(device.is_cpu(), "rand_bernoulli: this build has no CUDA (device ", device.str(), " requested)");
  Tensor out = Tensor::empty(shape, DType::u8);
  uint8_t* o = out.data<uint8_t>();
  const int64_t n = out.numel();
  const float pf = float(p);
#pragma omp parallel for schedule(static) if (n > cpu::kParallelGrain / 16)
  for (int64_t i = 0; i < n; ++i) o[i] = philox_bernoulli(seed, offset + uint64_t(i), pf);
  return out;
}

// Every draw reserves numel counters: the next draw starts where this one ended.
Tensor Generator::uniform(const Shape& s, DType dt, Device d) {
  Tensor t = rand_uniform(s, seed, offset, dt, d);
  offset += uint64_t(shape_numel(s));
  return t;
}

Tensor Generator::normal(const Shape& s, DType dt, Device d) {
  Tensor t = rand_normal(s, seed, offset, dt, d);
  offset += uint64_t(shape_numel(s));
  return t;
}

Tensor Generator::bernoulli(const Shape& s, double p, Device d) {
  Tensor t = rand_bernoulli(s, p, seed, offset, d);
  offset += uint64_t(shape_numel(s));
  return t;
}

}  // namespace ssm
