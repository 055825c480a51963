// Helpers for the core tests: random inputs and naive index arithmetic for reference loops.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/ops.h"
#include "core/tensor.h"

namespace ssm::test {

inline std::vector<double> rand_vec(int64_t n, uint32_t seed, double lo = -2.0, double hi = 2.0) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<double> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(g);
  return v;
}

// A random tensor of the given shape and floating dtype (values in [lo, hi)).
inline Tensor rand_t(const Shape& s, uint32_t seed, DType dt = DType::f32, double lo = -2.0, double hi = 2.0) {
  return Tensor::from_vector(rand_vec(shape_numel(s), seed, lo, hi), s).to(dt);
}

// Multi-index of linear index i in a row-major shape.
inline std::vector<int64_t> unravel(int64_t i, const Shape& s) {
  std::vector<int64_t> idx(s.size());
  for (int64_t d = int64_t(s.size()) - 1; d >= 0; --d) {
    idx[d] = i % s[d];
    i /= s[d];
  }
  return idx;
}

// Linear (row-major) index into shape `s` of the element that broadcasts to multi-index `idx` of a
// larger shape (missing leading dims and size-1 dims are ignored).
inline int64_t bcast_index(const std::vector<int64_t>& idx, const Shape& s) {
  const size_t off = idx.size() - s.size();
  int64_t lin = 0;
  for (size_t d = 0; d < s.size(); ++d) lin = lin * s[d] + (s[d] == 1 ? 0 : idx[off + d]);
  return lin;
}

inline void expect_near_vec(const std::vector<double>& got, const std::vector<double>& want, double tol,
                            const std::string& what = "") {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(want[i])) {
      EXPECT_TRUE(std::isnan(got[i])) << what << " at " << i;
      continue;
    }
    ASSERT_NEAR(got[i], want[i], tol * (1.0 + std::abs(want[i]))) << what << " at " << i;
  }
}

// Runs f and checks that it throws ssm::Error of kind BadInput whose message contains every needle.
template <typename F>
void expect_bad_input(F&& f, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "expected a BadInput error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput) << e.what();
    const std::string msg = e.what();
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "message '" << msg << "' lacks '" << n << "'";
  }
}

}  // namespace ssm::test
