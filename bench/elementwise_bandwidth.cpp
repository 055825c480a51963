// GPU memory-bandwidth benchmark of the elementwise and reduction kernels (core/cuda/).
//
// The floor: these ops do almost no arithmetic per byte, so their time is bytes / bandwidth. Bytes are
// counted as read + written once each: for n elements of size s,
//   add, mul, unary_backward:         3 n s      (two inputs, one output)
//   gelu:                             2 n s
//   sum over the last / leading dims: n s + (output, 8192 elements here)
//   cudaMemcpyAsync D2D:              2 n s      (the practical ceiling we compare against)
// At 64M elements (256 MiB of f32) a pass takes a few hundred microseconds on an H100 (~3.0 TB/s
// measured copy bandwidth of its 3.35 TB/s HBM3), so launch and allocation overheads are < 1%. The goal
// (issue 3): every op here at >= 80% of the measured D2D bandwidth, i.e. frac_of_d2d >= 0.8.
//
// Timing: cudaEvents around kReps back-to-back calls on the current stream (the host enqueues ahead, so
// the GPU never waits for it), reported as manual time per call. Each benchmark runs a fixed kIters
// iterations per repetition and 5 repetitions; the median is the figure to read. Counters:
// bytes_per_second (read + written) and frac_of_d2d.
// The iteration count is fixed on purpose: each iteration runs kReps calls but reports the time of one,
// so Google Benchmark's default (iterate until min_time of reported time) would run kReps x min_time of
// GPU work per repetition -- 5 s here, minutes for the whole binary. Now the binary takes a few seconds.
// Without a GPU the binary prints a message and exits 0.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "core/ops.h"
#include "core/tensor.h"
#ifdef SSM_WITH_CUDA
#include <cuda_runtime.h>

#include "core/cuda/check.h"
#include "core/cuda/cuda_ops.h"
#include "core/cuda/stream.h"
#endif

namespace {

#ifdef SSM_WITH_CUDA
using namespace ssm;

constexpr int64_t kN = int64_t(64) << 20;  // 64M elements
constexpr int64_t kRows = 8192, kCols = kN / kRows;
constexpr int kReps = 10;   // calls timed together by one pair of events
constexpr int kIters = 5;   // iterations (of kReps calls) per repetition

// Seconds per call of f on the GPU (cudaEvents around kReps calls).
double time_calls(const std::function<void()>& f) {
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

// Measured device-to-device copy bandwidth (read + write bytes per second): median of 11 runs.
double d2d_bandwidth() {
  static const double bw = [] {
    Tensor src = Tensor::zeros({kN}, DType::f32, Device::cuda(0));
    Tensor dst = Tensor::empty({kN}, DType::f32, Device::cuda(0));
    cudaStream_t s = cuda::current_stream();
    auto copy = [&] { SSM_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), src.nbytes(), cudaMemcpyDeviceToDevice, s)); };
    copy();
    std::vector<double> t;
    for (int i = 0; i < 11; ++i) t.push_back(time_calls(copy));
    std::sort(t.begin(), t.end());
    return 2.0 * double(src.nbytes()) / t[t.size() / 2];
  }();
  return bw;
}

struct Inputs {
  Tensor a, b, g;
};
const Inputs& inputs(DType dt) {
  static Inputs f32, bf16;
  Inputs& in = dt == DType::f32 ? f32 : bf16;
  if (!in.a.defined()) {
    in.a = rand_uniform({kRows, kCols}, 1, 0, dt, Device::cuda(0));
    in.b = rand_uniform({kRows, kCols}, 2, 0, dt, Device::cuda(0));
    in.g = rand_normal({kRows, kCols}, 3, 0, dt, Device::cuda(0));
  }
  return in;
}

void run(benchmark::State& st, DType dt, double bytes, const std::function<void()>& f) {
  f();  // warm up: allocator blocks, cuBLAS-free, first-launch costs
  cuda::synchronize();
  double total = 0;
  for (auto _ : st) {
    const double t = time_calls(f);
    st.SetIterationTime(t);
    total += t;
  }
  // Plain values computed from the GPU time (a kIsRate counter would divide by the host's time).
  const double bps = total > 0 ? bytes * double(st.iterations()) / total : 0.0;
  st.counters["bytes_per_second"] = bps;
  st.counters["frac_of_d2d"] = bps / d2d_bandwidth();
  st.counters["bytes"] = bytes;
  st.SetLabel(dtype_name(dt));
}

void register_all() {
  for (DType dt : {DType::f32, DType::bf16}) {
    const double s = double(dtype_size(dt)), n = double(kN);
    const std::string d = std::string("/") + dtype_name(dt);
    auto reg = [&](const std::string& name, double bytes, std::function<void()> f) {
      benchmark::RegisterBenchmark((name + d).c_str(), [dt, bytes, f](benchmark::State& st) { run(st, dt, bytes, f); })
          ->UseManualTime()
          ->Iterations(kIters)
          ->Unit(benchmark::kMicrosecond)
          ->Repetitions(5)
          ->ReportAggregatesOnly(true);
    };
    reg("add", 3 * n * s, [dt] { const Inputs& i = inputs(dt); Tensor c = add(i.a, i.b); });
    reg("mul", 3 * n * s, [dt] { const Inputs& i = inputs(dt); Tensor c = mul(i.a, i.b); });
    reg("gelu", 2 * n * s, [dt] { const Inputs& i = inputs(dt); Tensor c = unary(UnaryOp::Gelu, i.a); });
    reg("unary_backward_gelu", 3 * n * s,
        [dt] { const Inputs& i = inputs(dt); Tensor c = unary_backward(UnaryOp::Gelu, i.g, i.a); });
    reg("sum_last_dim", n * s + double(kRows) * s, [dt] { const Inputs& i = inputs(dt); Tensor c = sum(i.a, {1}); });
    reg("sum_leading_dims", n * s + double(kCols) * s, [dt] { const Inputs& i = inputs(dt); Tensor c = sum(i.a, {0}); });
    reg("memcpy_d2d", 2 * n * s, [dt] {
      const Inputs& i = inputs(dt);
      static Tensor dst32, dst16;
      Tensor& dst = dt == DType::f32 ? dst32 : dst16;
      if (!dst.defined()) dst = Tensor::empty(i.a.shape(), dt, Device::cuda(0));
      SSM_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), i.a.data_ptr(), i.a.nbytes(), cudaMemcpyDeviceToDevice,
                                     cuda::current_stream()));
    });
  }
}
#endif

}  // namespace

int main(int argc, char** argv) {
#ifdef SSM_WITH_CUDA
  if (!ssm::cuda_available()) {
    std::fprintf(stderr, "bench_elementwise_bandwidth: no CUDA device; nothing to measure (skipped)\n");
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  register_all();
  benchmark::AddCustomContext("d2d_bandwidth_GBps", std::to_string(d2d_bandwidth() / 1e9));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
#else
  (void)argc;
  (void)argv;
  std::fprintf(stderr, "bench_elementwise_bandwidth: built without CUDA; nothing to measure (skipped)\n");
#endif
  return 0;
}
