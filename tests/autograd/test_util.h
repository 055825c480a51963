// Helpers shared by the autograd tests.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "autograd/functions.h"

namespace ssm::ag::testing {

// Uniform random f64 tensor in [lo, hi), from a fixed seed.
inline Tensor rnd(const Shape& shape, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(size_t(shape_numel(shape)));
  for (auto& x : v) x = u(rng);
  return Tensor::from_vector(v, shape);
}

// Random f64 tensor whose entries have magnitude in [lo, hi) and a random sign (away from 0).
inline Tensor rnd_away0(const Shape& shape, uint64_t seed, double lo = 0.2, double hi = 1.5) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(size_t(shape_numel(shape)));
  for (auto& x : v) x = (rng() & 1 ? 1.0 : -1.0) * u(rng);
  return Tensor::from_vector(v, shape);
}

inline void expect_near(const std::vector<double>& a, const std::vector<double>& b, double tol = 1e-9) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], tol * (1.0 + std::abs(b[i]))) << "element " << i;
}

inline void expect_tensor_near(const Tensor& a, const Tensor& b, double tol = 1e-9) {
  ASSERT_EQ(a.shape(), b.shape());
  expect_near(a.to_double_vector(), b.to_double_vector(), tol);
}

using Fn = std::function<Variable(const std::vector<Variable>&)>;

}  // namespace ssm::ag::testing
