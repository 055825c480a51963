// scale_'s list kernel (core/cuda/scale_list.cuh) run by the CUDA emulator (cuda_emu.h) on the CPU: 150 tensors
// (two launches of at most 128) of sizes around the chunk (4096) and the float4 step, each scaled once.
#include <gtest/gtest.h>

#include "tests/emu/cuda_emu.h"
// (after cuda_emu.h: the device qualifiers are plain functions)
#include "core/cuda/scale_list.cuh"
#include "core/tensor.h"
#include "tests/cuda/cuda_test_util.h"

namespace ssm {
namespace {

TEST(EmuScaleList, ScalesEveryElementOnce) {
  const std::vector<int64_t> sizes = {1, 3, 4, 4095, 4096, 4097, 9000, 37};
  std::vector<Tensor> xs, refs;
  for (int k = 0; k < 150; ++k) {
    xs.push_back(test::rand_cpu({sizes[size_t(k) % sizes.size()]}, DType::f32, -1, 1, uint32_t(40 + k)));
    refs.push_back(xs.back().clone());
  }
  cuda::ScaleList L{};
  L.s = -0.375f;
  auto flush = [&] {
    emu::launch_with(emu::Config(dim3(7), dim3(256)), [&](auto&&... a) { cuda::scale_list(a...); }, L);
    L.n = 0;
  };
  for (Tensor& x : xs) {
    const int k = L.n;
    cuda::add_list_chunks<cuda::kScaleChunk>(L.chunks_to, L.numel, k, x.numel());
    L.x[k] = x.data<float>();
    if (++L.n == cuda::kScaleListMax) flush();
  }
  flush();
  for (size_t k = 0; k < xs.size(); ++k) {
    const std::vector<double> got = xs[k].to_double_vector(), want = refs[k].to_double_vector();
    for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], double(float(want[i]) * -0.375f)) << k << " " << i;
  }
}

}  // namespace
}  // namespace ssm
