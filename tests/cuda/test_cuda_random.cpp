// Random numbers on CUDA are the CPU's numbers: same (seed, offset) -> the same values.
#include "tests/cuda/cuda_test_util.h"

#include <cmath>

#include "core/ops.h"

namespace ssm {
namespace {

TEST(CudaRandom, UniformAndBernoulliBitIdentical) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (int64_t n : {int64_t(1), int64_t(7), int64_t(33), int64_t(1000003)})
    for (uint64_t offset : {uint64_t(0), uint64_t(5), (uint64_t(1) << 32) + 3}) {
      const uint64_t seed = 0x1234567890abcdefULL + uint64_t(n);
      for (DType dt : test::float_dtypes())
        EXPECT_TRUE(test::same_bits(rand_uniform({n}, seed, offset, dt, Device::cuda(0)),
                                    rand_uniform({n}, seed, offset, dt)))
            << "uniform " << test::name(dt, {n}) << " offset " << offset;
      for (double p : {0.0, 0.1, 0.5, 1.0})
        EXPECT_TRUE(test::same_bits(rand_bernoulli({n}, p, seed, offset, Device::cuda(0)),
                                    rand_bernoulli({n}, p, seed, offset)))
            << "bernoulli p " << p << " n " << n;
    }
}

// Box-Muller uses logf and cosf: CUDA's and glibc's may differ in the last bits, nothing more.
TEST(CudaRandom, NormalMatchesCpu) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (int64_t n : {int64_t(1), int64_t(33), int64_t(1000003)}) {
    for (DType dt : test::float_dtypes()) {
      const Tensor g = rand_normal({n}, 42, 17, dt, Device::cuda(0));
      const Tensor c = rand_normal({n}, 42, 17, dt);
      test::Tol tol = test::tol_for(dt);
      if (dt == DType::f32 || dt == DType::f64) tol = {2e-6, 1e-6};  // f64 holds the f32 value
      EXPECT_TRUE(test::close(g, c, tol)) << test::name(dt, {n});
    }
  }
  // Sanity of the distribution itself.
  const std::vector<double> v = rand_normal({1000003}, 7, 0, DType::f32, Device::cuda(0)).to_double_vector();
  double m = 0, s = 0;
  for (double x : v) m += x;
  m /= double(v.size());
  for (double x : v) s += (x - m) * (x - m);
  s = std::sqrt(s / double(v.size()));
  EXPECT_NEAR(m, 0.0, 5e-3);
  EXPECT_NEAR(s, 1.0, 5e-3);
}

TEST(CudaRandom, GeneratorAdvancesLikeCpu) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  Generator gc{99, 0}, gg{99, 0};
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(test::same_bits(gg.uniform({33}, DType::f32, Device::cuda(0)), gc.uniform({33})));
    EXPECT_TRUE(test::same_bits(gg.bernoulli({7}, 0.3, Device::cuda(0)), gc.bernoulli({7}, 0.3)));
  }
  EXPECT_EQ(gg.offset, gc.offset);
}

}  // namespace
}  // namespace ssm
