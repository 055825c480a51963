// Philox4x32-10 known answers, the per-element rule, distribution sanity and Generator advancing.
#include <gtest/gtest.h>

#include <cmath>

#include "core/ops.h"
#include "core/philox.h"
#include "test_util.h"

using namespace ssm;

TEST(Philox, KnownAnswers) {
  // Random123 kat_vectors for philox4x32_10.
  Philox4x32 r = philox4x32_10(0, 0, 0, 0, 0, 0);
  EXPECT_EQ(r.v[0], 0x6627e8d5u);
  EXPECT_EQ(r.v[1], 0xe169c58du);
  EXPECT_EQ(r.v[2], 0xbc57ac4cu);
  EXPECT_EQ(r.v[3], 0x9b00dbd8u);
  r = philox4x32_10(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu);
  EXPECT_EQ(r.v[0], 0x408f276du);
  EXPECT_EQ(r.v[1], 0x41c83b0eu);
  EXPECT_EQ(r.v[2], 0xa20bc7c6u);
  EXPECT_EQ(r.v[3], 0x6d5451fdu);
  // The element rule: counter = (lo, hi) of offset + i, key = (lo, hi) of seed.
  const uint64_t seed = 0x0123456789abcdefull, ctr = 0xfedcba9876543210ull;
  Philox4x32 a = philox_bits(seed, ctr), b = philox4x32_10(0x76543210u, 0xfedcba98u, 0, 0, 0x89abcdefu, 0x01234567u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(a.v[i], b.v[i]);
}

TEST(Philox, UnitIntervalIsOpen) {
  EXPECT_EQ(philox_bits_to_unit(0), 5.9604644775390625e-08f);  // 2^-24 > 0
  EXPECT_LT(philox_bits_to_unit(0xffffffffu), 1.0f);
  EXPECT_EQ(philox_bits_to_unit(0xffffffffu), 1.0f - 5.9604644775390625e-08f);
  EXPECT_TRUE(std::isfinite(philox_normal(0, 0)));
}

TEST(Random, TensorsFollowTheElementRule) {
  const uint64_t seed = 42, off = 1000;
  Tensor u = rand_uniform({3, 37}, seed, off);
  Tensor n = rand_normal({3, 37}, seed, off, DType::f64);
  Tensor b = rand_bernoulli({3, 37}, 0.3, seed, off);
  EXPECT_EQ(u.dtype(), DType::f32);
  EXPECT_EQ(n.dtype(), DType::f64);
  EXPECT_EQ(b.dtype(), DType::u8);
  std::vector<float> uv = u.to_float_vector();
  std::vector<double> nv = n.to_double_vector();
  std::vector<int64_t> bv = b.to_int_vector();
  for (int64_t i = 0; i < 3 * 37; ++i) {
    EXPECT_EQ(uv[i], philox_uniform(seed, off + i));
    EXPECT_EQ(nv[i], double(philox_normal(seed, off + i)));
    EXPECT_EQ(bv[i], uv[i] < 0.3f ? 1 : 0);
  }
  // Same numbers whatever the dtype; a shifted offset shifts the stream.
  EXPECT_EQ(rand_uniform({111}, seed, off, DType::f64).to_float_vector(), uv);
  std::vector<float> shifted = rand_uniform({10}, seed, off + 5).to_float_vector();
  for (int i = 0; i < 10; ++i) EXPECT_EQ(shifted[i], uv[i + 5]);
  EXPECT_NE(rand_uniform({10}, seed + 1, off).to_float_vector(), std::vector<float>(uv.begin(), uv.begin() + 10));
  EXPECT_EQ(rand_uniform({5}, seed, off, DType::bf16).dtype(), DType::bf16);
  ssm::test::expect_bad_input([] { rand_bernoulli({2}, 1.5, 0, 0); }, {"p", "1.5"});
  ssm::test::expect_bad_input([] { rand_uniform({2}, 0, 0, DType::i64); }, {"rand_uniform", "i64"});
}

TEST(Random, Statistics) {
  const int64_t n = 200000;
  std::vector<double> u = rand_uniform({n}, 7, 0, DType::f64).to_double_vector();
  std::vector<double> z = rand_normal({n}, 7, 0, DType::f64).to_double_vector();
  double mu = 0, m2 = 0, zm = 0, z2 = 0, z4 = 0;
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_GT(u[i], 0.0);
    ASSERT_LT(u[i], 1.0);
    mu += u[i];
    m2 += u[i] * u[i];
    zm += z[i];
    z2 += z[i] * z[i];
    z4 += z[i] * z[i] * z[i] * z[i];
  }
  mu /= n;
  m2 /= n;
  zm /= n;
  z2 /= n;
  z4 /= n;
  EXPECT_NEAR(mu, 0.5, 0.005);
  EXPECT_NEAR(m2 - mu * mu, 1.0 / 12, 0.002);
  EXPECT_NEAR(zm, 0.0, 0.01);
  EXPECT_NEAR(z2, 1.0, 0.015);
  EXPECT_NEAR(z4, 3.0, 0.1);
  const double frac = sum(rand_bernoulli({n}, 0.25, 9, 0)).item() / double(n);
  EXPECT_NEAR(frac, 0.25, 0.005);
  EXPECT_EQ(sum(rand_bernoulli({1000}, 0.0, 9, 0)).item(), 0.0);
  EXPECT_EQ(sum(rand_bernoulli({1000}, 1.0, 9, 0)).item(), 1000.0);
}

TEST(Random, GeneratorAdvances) {
  Generator g{123, 0};
  Tensor a = g.uniform({4, 5});
  EXPECT_EQ(g.offset, 20u);
  Tensor b = g.normal({7});
  EXPECT_EQ(g.offset, 27u);
  Tensor c = g.bernoulli({3}, 0.5);
  EXPECT_EQ(g.offset, 30u);
  // Draws reproduce the stateless calls at the offsets the generator reserved.
  EXPECT_EQ(a.to_float_vector(), rand_uniform({4, 5}, 123, 0).to_float_vector());
  EXPECT_EQ(b.to_float_vector(), rand_normal({7}, 123, 20).to_float_vector());
  EXPECT_EQ(c.to_int_vector(), rand_bernoulli({3}, 0.5, 123, 27).to_int_vector());
  // Consecutive draws differ; a fresh generator with the same seed repeats them.
  Generator g2{123, 0};
  EXPECT_EQ(g2.uniform({4, 5}).to_float_vector(), a.to_float_vector());
  EXPECT_NE(g2.uniform({4, 5}).to_float_vector(), a.to_float_vector());
}
