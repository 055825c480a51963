// sum_squares' list kernel (core/cuda/sumsq_list.cuh) run by the CUDA emulator (cuda_emu.h) on the CPU: 150 tensors
// (two launches of at most 128) of sizes around the chunk (4096) and the float4 step, against an f64 sum; and the
// blocks' partials: every chunk counted once whatever the grid (1, 7 or 64 blocks).
#include <gtest/gtest.h>

#include <cmath>

#include "tests/emu/cuda_emu.h"
// (after cuda_emu.h: the device qualifiers are plain functions)
#include "core/cuda/sumsq_list.cuh"
#include "core/tensor.h"
#include "tests/cuda/cuda_test_util.h"

namespace ssm {
namespace {

TEST(EmuSumsqList, SumsEveryElementOnce) {
  const std::vector<int64_t> sizes = {1, 3, 4, 4095, 4096, 4097, 9000, 37};
  std::vector<Tensor> xs;
  double want = 0;
  for (int k = 0; k < 150; ++k) {
    xs.push_back(test::rand_cpu({sizes[size_t(k) % sizes.size()]}, DType::f32, -1, 1, uint32_t(60 + k)));
    for (double v : xs.back().to_double_vector()) want += v * v;
  }
  for (unsigned grid : {1u, 7u, 64u}) {
    std::vector<double> partial(2 * grid, std::nan(""));
    double* at = partial.data();
    cuda::SumsqList L{};
    auto flush = [&] {
      L.partial = at;
      emu::launch_with(emu::Config(dim3(grid), dim3(cuda::kSumsqThreads)), [&](auto&&... a) { cuda::sumsq_list(a...); },
                       L);
      at += grid;
      L = cuda::SumsqList{};
    };
    for (const Tensor& x : xs) {
      cuda::add_list_chunks<cuda::kSumsqChunk>(L.chunks_to, L.numel, L.n, x.numel());
      L.x[L.n] = x.data<float>();
      if (++L.n == cuda::kSumsqListMax) flush();
    }
    flush();
    double got = 0;
    for (double p : partial) got += p;  // every block wrote its partial (a NaN left would show)
    EXPECT_NEAR(got, want, 1e-6 * want) << "grid " << grid;
  }
}

}  // namespace
}  // namespace ssm
