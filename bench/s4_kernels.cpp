// Microbenchmarks of the S4 kernels: causal_conv forward / backward (B, L, H) = (64, 784, 128) and the
// quickstart shape (64, 196, 64); s4d_kernel forward / backward at H=128, M=32, L=784. CPU always;
// CUDA when a device is visible (each iteration synchronises).
#include <benchmark/benchmark.h>

#include "core/device.h"
#include "core/ops.h"
#include "kernels/s4/fft_conv.h"
#include "kernels/s4/s4d_kernel.h"

#ifdef SSM_WITH_CUDA
#include "core/cuda/cuda_ops.h"
#endif

using namespace ssm;

namespace {

void sync(Device d) {
#ifdef SSM_WITH_CUDA
  if (d.is_cuda()) cuda::synchronize();
#else
  (void)d;
#endif
}

Device dev_of(int64_t gpu) { return gpu ? Device::cuda() : Device::cpu(); }

// args: B, L, H, gpu
void BM_CausalConvForward(benchmark::State& st) {
  const Device d = dev_of(st.range(3));
  if (d.is_cuda() && !cuda_available()) return st.SkipWithError("no CUDA device");
  const int64_t B = st.range(0), L = st.range(1), H = st.range(2);
  Tensor u = rand_normal({B, L, H}, 1, 0, DType::f32, d), k = rand_normal({H, L}, 2, 0, DType::f32, d);
  for (auto _ : st) {
    Tensor y = kernels::causal_conv_forward(u, k);
    sync(d);
    benchmark::DoNotOptimize(y.data_ptr());
  }
  st.SetItemsProcessed(st.iterations() * B * L * H);
}

void BM_CausalConvBackward(benchmark::State& st) {
  const Device d = dev_of(st.range(3));
  if (d.is_cuda() && !cuda_available()) return st.SkipWithError("no CUDA device");
  const int64_t B = st.range(0), L = st.range(1), H = st.range(2);
  Tensor u = rand_normal({B, L, H}, 1, 0, DType::f32, d), k = rand_normal({H, L}, 2, 0, DType::f32, d),
         g = rand_normal({B, L, H}, 3, 0, DType::f32, d);
  for (auto _ : st) {
    Tensor gu, gk;
    kernels::causal_conv_backward(g, u, k, &gu, &gk);
    sync(d);
    benchmark::DoNotOptimize(gu.data_ptr());
  }
  st.SetItemsProcessed(st.iterations() * B * L * H);
}

// args: H, M, L, gpu, backward
void BM_S4DKernel(benchmark::State& st) {
  const Device d = dev_of(st.range(3));
  if (d.is_cuda() && !cuda_available()) return st.SkipWithError("no CUDA device");
  const int64_t H = st.range(0), M = st.range(1), L = st.range(2);
  const bool bwd = st.range(4) != 0;
  Tensor log_dt = add(mul(rand_uniform({H}, 1, 0, DType::f32, d), 4.6), -6.9);  // log dt in [log 1e-3, log 1e-1]
  Tensor lar = Tensor::full({H, M}, -0.69, DType::f32, d);
  Tensor aim = mul(rand_uniform({H, M}, 2, 0, DType::f32, d), 100.0);
  Tensor C = rand_normal({H, M, 2}, 3, 0, DType::f32, d);
  Tensor G = rand_normal({H, L}, 4, 0, DType::f32, d);
  for (auto _ : st) {
    if (bwd) {
      auto g = kernels::s4d_kernel_backward(G, log_dt, lar, aim, C);
      benchmark::DoNotOptimize(g.C.data_ptr());
    } else {
      Tensor K = kernels::s4d_kernel_forward(log_dt, lar, aim, C, L);
      benchmark::DoNotOptimize(K.data_ptr());
    }
    sync(d);
  }
  st.SetItemsProcessed(st.iterations() * H * M * L);
}

}  // namespace

BENCHMARK(BM_CausalConvForward)->Args({64, 196, 64, 0})->Args({64, 784, 128, 0})->Args({64, 784, 128, 1})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_CausalConvBackward)->Args({64, 196, 64, 0})->Args({64, 784, 128, 0})->Args({64, 784, 128, 1})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_S4DKernel)->Args({64, 32, 196, 0, 0})->Args({64, 32, 196, 0, 1})->Args({128, 32, 784, 0, 0})
    ->Args({128, 32, 784, 0, 1})->Args({128, 32, 784, 1, 0})->Args({128, 32, 784, 1, 1})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
