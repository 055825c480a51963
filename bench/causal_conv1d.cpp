// GPU benchmark of the depthwise causal conv1d (kernels/conv1d) at Mamba's shapes, next to mamba_ssm's
// causal-conv1d on the same kind of GPU.
//
// Shapes (Bt, L, D) = (8, 2048, 2048) and (4, 4096, 2048), bf16 x (w, bias f32), W = 4, SiLU, bias, no
// x_init / seq_idx. "fwd" is causal_conv1d_forward; "fwd+bwd" is forward then causal_conv1d_backward
// (grad x, w, bias).
// Byte floor (N = Bt L D elements of 2 bytes; w, bias and the gw/gbias partials are < 1% and left out):
//   fwd:      read x, write y               4 N bytes
//   fwd+bwd:  fwd + read x, g, write gx    10 N bytes
// over 2.97e12 B/s, the device-to-device copy bandwidth measured on the H100 (bench/RESULTS.md).
// mamba_ssm's figures (H100, W=4, bf16, SiLU; layout (B, D, L)): (8, 2048, 2048) 0.053 ms forward,
// 0.514 ms forward+backward; (4, 4096, 2048) 0.053 / 0.589 ms. Goal: forward no slower, forward+backward
// at most half.
//
// Timing: one sample = cudaEvents around kReps back-to-back calls on the current stream (per-call time
// = elapsed / kReps), after kWarmup untimed calls; kSamples samples per benchmark; the counters report
// the median: median_ms, floor_ms, frac_of_floor (= floor / median), mamba_ms, vs_mamba (= ours /
// mamba's). Without a GPU the binary prints a message and exits 0.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <vector>

#include "core/device.h"
#include "core/ops.h"
#include "kernels/conv1d/causal_conv1d.h"
#ifdef SSM_WITH_CUDA
#include <cuda_runtime.h>

#include "core/cuda/check.h"
#include "core/cuda/cuda_ops.h"
#include "core/cuda/stream.h"
#endif

namespace {

#ifdef SSM_WITH_CUDA
using namespace ssm;

constexpr double kCopyBandwidth = 2.97e12;  // B/s, measured D2D copy on the H100 (bench/RESULTS.md)
constexpr int kWarmup = 5;
constexpr int kReps = 10;
constexpr int kSamples = 25;

double time_calls(const std::function<void()>& f) {  // seconds per call
  cudaStream_t s = cuda::current_stream();
  cudaEvent_t a, b;
  SSM_CUDA_CHECK(cudaEventCreate(&a));
  SSM_CUDA_CHECK(cudaEventCreate(&b));
  SSM_CUDA_CHECK(cudaEventRecord(a, s));
  for (int i = 0; i < kReps; ++i) f();
  SSM_CUDA_CHECK(cudaEventRecord(b, s));
  SSM_CUDA_CHECK(cudaEventSynchronize(b));
  float ms = 0;
  SSM_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
  SSM_CUDA_CHECK(cudaEventDestroy(a));
  SSM_CUDA_CHECK(cudaEventDestroy(b));
  return double(ms) * 1e-3 / kReps;
}

// args: Bt, L, D, backward (0: forward only, 1: forward + backward)
void BM_CausalConv1d(benchmark::State& st) {
  const int64_t Bt = st.range(0), L = st.range(1), D = st.range(2), W = 4;
  const bool bwd = st.range(3) != 0;
  const Device dev = Device::cuda();
  const kernels::Conv1dInputs in{rand_normal({Bt, L, D}, 1, 0, DType::bf16, dev),
                                 rand_uniform({D, W}, 2, 0, DType::f32, dev), rand_uniform({D}, 3, 0, DType::f32, dev),
                                 Tensor(), Tensor()};
  const Tensor g = rand_normal({Bt, L, D}, 4, 0, DType::bf16, dev);
  auto call = [&] {
    Tensor y = kernels::causal_conv1d_forward(in, true);
    if (bwd) {
      kernels::Conv1dGrads gr = kernels::causal_conv1d_backward(in, g, true);
      benchmark::DoNotOptimize(gr.x.data_ptr());
    }
    benchmark::DoNotOptimize(y.data_ptr());
  };
  for (int i = 0; i < kWarmup; ++i) call();
  cuda::synchronize();
  std::vector<double> samples;
  for (auto _ : st) {
    const double t = time_calls(call);
    st.SetIterationTime(t);
    samples.push_back(t);
  }
  std::sort(samples.begin(), samples.end());
  const double med_ms = samples[samples.size() / 2] * 1e3;
  const double n = double(Bt * L * D), bytes = (bwd ? 10.0 : 4.0) * n;
  const double floor_ms = bytes / kCopyBandwidth * 1e3;
  double mamba_ms = 0;
  if (Bt == 8 && L == 2048 && D == 2048) mamba_ms = bwd ? 0.514 : 0.053;
  if (Bt == 4 && L == 4096 && D == 2048) mamba_ms = bwd ? 0.589 : 0.053;
  st.counters["median_ms"] = med_ms;
  st.counters["floor_ms"] = floor_ms;
  st.counters["frac_of_floor"] = floor_ms / med_ms;
  st.counters["mamba_ms"] = mamba_ms;
  st.counters["vs_mamba"] = mamba_ms > 0 ? med_ms / mamba_ms : 0.0;
  st.SetLabel(bwd ? "bf16 W=4 silu fwd+bwd" : "bf16 W=4 silu fwd");
  std::printf("causal_conv1d %-8s (%lld, %lld, %lld): %.4f ms  floor %.4f ms  frac %.2f  mamba_ssm %.3f ms  ours/mamba %.2f\n",
              bwd ? "fwd+bwd" : "fwd", (long long)Bt, (long long)L, (long long)D, med_ms, floor_ms, floor_ms / med_ms,
              mamba_ms, mamba_ms > 0 ? med_ms / mamba_ms : 0.0);
}
#endif

}  // namespace

#ifdef SSM_WITH_CUDA
BENCHMARK(BM_CausalConv1d)
    ->Args({8, 2048, 2048, 0})
    ->Args({8, 2048, 2048, 1})
    ->Args({4, 4096, 2048, 0})
    ->Args({4, 4096, 2048, 1})
    ->UseManualTime()
    ->Iterations(kSamples)
    ->Unit(benchmark::kMillisecond);
#endif

int main(int argc, char** argv) {
#ifdef SSM_WITH_CUDA
  if (!ssm::cuda_available()) {
    std::fprintf(stderr, "bench_causal_conv1d: no CUDA device; nothing to measure (skipped)\n");
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
#else
  (void)argc;
  (void)argv;
  std::fprintf(stderr, "bench_causal_conv1d: built without CUDA; nothing to measure (skipped)\n");
#endif
  return 0;
}
