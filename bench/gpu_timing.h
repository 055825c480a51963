// The plain-main benchmarks' timer: the median of `reps` calls of f, each timed by a pair of CUDA events on the
// current stream, after `warm` untimed calls. The time includes whatever the host does between the events, so a
// host-bound f (launches, syncs) shows as such. CUDA builds only.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "core/cuda/check.h"
#include "core/cuda/stream.h"

namespace ssm::bench {

inline double median_ms(const std::function<void()>& f, int warm = 3, int reps = 25) {
  cudaStream_t s = cuda::current_stream();
  for (int i = 0; i < warm; ++i) f();
  cudaEvent_t a, b;
  SSM_CUDA_CHECK(cudaEventCreate(&a));
  SSM_CUDA_CHECK(cudaEventCreate(&b));
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    SSM_CUDA_CHECK(cudaEventRecord(a, s));
    f();
    SSM_CUDA_CHECK(cudaEventRecord(b, s));
    SSM_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    SSM_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  SSM_CUDA_CHECK(cudaEventDestroy(a));
  SSM_CUDA_CHECK(cudaEventDestroy(b));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace ssm::bench
