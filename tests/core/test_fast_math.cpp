// The vectorizable f32 math of core/cpu_loops.h (exp, erf, normal cdf) against std:: in double over dense
// grids, the f32 fast paths of the elementwise ops (layout must not change results), and the host caching
// allocator.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/allocator.h"
#include "core/cpu_loops.h"
#include "core/ops.h"
#include "test_util.h"

using namespace ssm;
using namespace ssm::test;

namespace {

double ref_phi(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

}  // namespace

// erf_f32: max abs error <= 2e-7 against std::erf (double) at every grid point of [-8, 8] (step 2^-17,
// about 2.1 million points; the fit's own bound is 1.6e-8, the rest is f32 rounding).
TEST(FastMath, ErfMatchesStdErf) {
  double worst = 0, at = 0;
  for (double x = -8.0; x <= 8.0; x += 1.0 / 131072) {
    const float xf = float(x);
    const double e = std::abs(double(cpu::erf_f32(xf)) - std::erf(double(xf)));
    if (e > worst) {
      worst = e;
      at = xf;
    }
  }
  EXPECT_LE(worst, 2e-7) << "at x = " << at;
  EXPECT_EQ(cpu::erf_f32(0.0f), 0.0f);
  EXPECT_EQ(cpu::erf_f32(std::numeric_limits<float>::infinity()), 1.0f);
  EXPECT_EQ(cpu::erf_f32(-std::numeric_limits<float>::infinity()), -1.0f);
  EXPECT_TRUE(std::isnan(cpu::erf_f32(std::numeric_limits<float>::quiet_NaN())));
  // Odd symmetry is exact.
  for (float x : {0.1f, 0.9f, 0.95f, 2.5f, 5.0f}) EXPECT_EQ(cpu::erf_f32(-x), -cpu::erf_f32(x)) << x;
}

// Phi(x) with the erfc form in the lower tail: small relative error there, abs error <= 2e-7 everywhere.
TEST(FastMath, NormalCdfMatches) {
  double worst_abs = 0, worst_rel_tail = 0;
  for (double x = -12.0; x <= 12.0; x += 1.0 / 65536) {
    const float xf = float(x);
    const double want = ref_phi(double(xf)), got = double(cpu::normal_cdf_f32(xf));
    worst_abs = std::max(worst_abs, std::abs(got - want));
    if (xf < -1.0f && xf > -5.5f) worst_rel_tail = std::max(worst_rel_tail, std::abs(got - want) / want);
    if (xf < -5.55f) {  // erfc(-x / sqrt 2) < 6e-9: flushed to 0
      EXPECT_EQ(got, 0.0) << xf;
      if (got != 0.0) break;
    }
  }
  EXPECT_LE(worst_abs, 2e-7);
  EXPECT_LE(worst_rel_tail, 5e-6);  // f32 rounding of z = x / sqrt 2 and z^2 (relative 6e-8, times 2 z^2) dominates
}

// exp_f32: relative error below 1.5e-7 (about 2.5 ulp) on [-87, 88]; flushes below, overflows above.
TEST(FastMath, ExpMatchesStdExp) {
  double worst = 0, at = 0;
  for (double x = -87.0; x <= 88.0; x += 1.0 / 8192) {
    const float xf = float(x);
    const double want = std::exp(double(xf));
    const double e = std::abs(double(cpu::exp_f32(xf)) - want) / want;
    if (e > worst) {
      worst = e;
      at = xf;
    }
  }
  EXPECT_LE(worst, 1.5e-7) << "at x = " << at;
  EXPECT_EQ(cpu::exp_f32(0.0f), 1.0f);
  EXPECT_EQ(cpu::exp_f32(-100.0f), 0.0f);
  EXPECT_EQ(cpu::exp_f32(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_EQ(cpu::exp_f32(100.0f), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(cpu::exp_f32(std::numeric_limits<float>::quiet_NaN())));
}

// GELU forward and backward in f32 (vectorized path) against double formulas on a dense grid.
TEST(FastMath, GeluForwardBackwardF32) {
  const int64_t n = 200001;  // [-10, 10] in steps of 1e-4
  std::vector<float> xs(n);
  for (int64_t i = 0; i < n; ++i) xs[i] = float(-10.0 + 1e-4 * double(i));
  Tensor x = Tensor::from_vector(xs, {n});
  Tensor g = Tensor::ones({n});
  std::vector<double> y = unary(UnaryOp::Gelu, x).to_double_vector();
  std::vector<double> d = unary_backward(UnaryOp::Gelu, g, x).to_double_vector();
  double wy = 0, wd = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double v = xs[i];
    const double phi = std::exp(-0.5 * v * v) / std::sqrt(2.0 * M_PI);
    // Allow the rounding of the f32 result itself (half an ulp of |y| <= 10 is 4.8e-7).
    wy = std::max(wy, std::abs(y[i] - v * ref_phi(v)) / std::max(1.0, std::abs(v)));
    wd = std::max(wd, std::abs(d[i] - (ref_phi(v) + v * phi)));
  }
  EXPECT_LE(wy, 3e-7);
  EXPECT_LE(wd, 5e-7);
}

// The f32 fast paths must give bit-identical results whatever the layout (contiguous, strided, gathered).
TEST(FastMath, F32LayoutsAgree) {
  Tensor base = rand_t({6, 37, 10}, 3, DType::f32, -6.0, 6.0);
  Tensor strided = base.permute({2, 0, 1});  // gathered runs
  Tensor narrowed = base.narrow(2, 0, 5);    // unit-stride runs of 5
  Tensor g = rand_t({10, 6, 37}, 4, DType::f32);
  for (UnaryOp op : {UnaryOp::Gelu, UnaryOp::Sigmoid, UnaryOp::Silu, UnaryOp::Relu, UnaryOp::Tanh, UnaryOp::Exp}) {
    const std::vector<float> a = unary(op, strided).to_float_vector();
    const std::vector<float> b = unary(op, strided.contiguous()).to_float_vector();
    EXPECT_EQ(a, b) << int(op);
    EXPECT_EQ(unary(op, narrowed).to_float_vector(), unary(op, narrowed.contiguous()).to_float_vector()) << int(op);
    EXPECT_EQ(unary_backward(op, g, strided).to_float_vector(),
              unary_backward(op, g, strided.contiguous()).to_float_vector())
        << int(op);
  }
}

// x (B, L, H) op b (H) and b op x: the row-broadcast fast path, small and large (threaded), vs naive.
TEST(FastMath, RowBroadcastBinary) {
  for (int64_t B : {2, 64}) {
    const Shape s{B, 49, 24};
    Tensor x = rand_t(s, 7, DType::f32), b = rand_t({24}, 8, DType::f32, 0.5, 2.0);
    const std::vector<double> xv = x.to_double_vector(), bv = b.to_double_vector();
    for (BinaryOp op : {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Max}) {
      std::vector<double> want(xv.size()), want_r(xv.size());
      for (size_t i = 0; i < xv.size(); ++i) {
        const double p = xv[i], q = bv[i % 24];
        switch (op) {
          case BinaryOp::Add: want[i] = p + q, want_r[i] = q + p; break;
          case BinaryOp::Sub: want[i] = p - q, want_r[i] = q - p; break;
          case BinaryOp::Mul: want[i] = p * q, want_r[i] = q * p; break;
          case BinaryOp::Div: want[i] = p / q, want_r[i] = q / p; break;
          default: want[i] = want_r[i] = std::max(p, q); break;
        }
      }
      const double tol = op == BinaryOp::Div ? 1e-4 : 1e-6;
      expect_near_vec(binary(op, x, b).to_double_vector(), want, tol, "x op b");
      expect_near_vec(binary(op, b.view({1, 1, 24}), x).to_double_vector(), want_r, tol, "b op x");
    }
    // In place with a broadcast b, and axpby_ with one.
    Tensor y = x.clone();
    binary_(BinaryOp::Mul, y, b);
    std::vector<double> want(xv.size());
    for (size_t i = 0; i < xv.size(); ++i) want[i] = xv[i] * bv[i % 24];
    expect_near_vec(y.to_double_vector(), want, 1e-6, "mul_");
    Tensor z = x.clone();
    axpby_(z, 0.5, b, -2.0);
    for (size_t i = 0; i < xv.size(); ++i) want[i] = 0.5 * xv[i] - 2.0 * bv[i % 24];
    expect_near_vec(z.to_double_vector(), want, 1e-5, "axpby_");
  }
}

// Host blocks are reused: repeating the same allocations makes no new malloc, counters stay right.
TEST(HostAllocator, CachesBlocksAndCountsBytes) {
  const Device cpu = Device::cpu();
  { Tensor warm = Tensor::empty({1000, 37}); }  // the size now sits in the cache
  const AllocatorStats s0 = allocator_stats(cpu);
  for (int i = 0; i < 10; ++i) {
    Tensor t = Tensor::empty({1000, 37});
    EXPECT_EQ(allocator_stats(cpu).allocated_bytes, s0.allocated_bytes + 148032);  // 148000 rounded to 64
  }
  const AllocatorStats s1 = allocator_stats(cpu);
  EXPECT_EQ(s1.driver_allocs, s0.driver_allocs);
  EXPECT_EQ(s1.allocated_bytes, s0.allocated_bytes);
  EXPECT_GE(s1.reserved_bytes, s1.allocated_bytes + 148032);
  reset_peak_bytes(cpu);
  {
    Tensor a = Tensor::empty({3000});
    Tensor b = Tensor::empty({5000});
    EXPECT_GE(allocator_stats(cpu).peak_bytes, s1.allocated_bytes + 12032 + 20032);
  }
  EXPECT_EQ(allocator_stats(cpu).allocated_bytes, s1.allocated_bytes);
  empty_cache(cpu);
  EXPECT_EQ(allocator_stats(cpu).reserved_bytes, allocator_stats(cpu).allocated_bytes);
  // Memory handed out again is usable and 64-byte aligned.
  Tensor t = Tensor::full({777}, 3.0);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data_ptr()) % 64, 0u);
  EXPECT_EQ(t.to_double_vector()[776], 3.0);
}

// Products large enough to be split across OpenMP threads (by rows, and by columns when C has few rows)
// against a naive double loop, with transposed operands too.
TEST(FastMath, MatmulSplitAcrossThreads) {
  struct Case {
    int64_t M, K, N;
    bool ta, tb;
  };
  for (const Case& c : {Case{300, 70, 120, false, false}, Case{301, 70, 119, true, true}, Case{20, 60, 2001, false, true},
                        Case{13, 64, 4000, true, false}}) {
    Tensor a = rand_t(c.ta ? Shape{c.K, c.M} : Shape{c.M, c.K}, 11, DType::f32);
    Tensor b = rand_t(c.tb ? Shape{c.N, c.K} : Shape{c.K, c.N}, 12, DType::f32);
    const std::vector<double> av = a.to_double_vector(), bv = b.to_double_vector();
    std::vector<double> want(size_t(c.M * c.N), 0.0);
    for (int64_t m = 0; m < c.M; ++m)
      for (int64_t n = 0; n < c.N; ++n) {
        double s = 0;
        for (int64_t k = 0; k < c.K; ++k)
          s += av[c.ta ? k * c.M + m : m * c.K + k] * bv[c.tb ? n * c.K + k : k * c.N + n];
        want[m * c.N + n] = s;
      }
    Tensor out = matmul(a, b, c.ta, c.tb);
    ASSERT_EQ(out.shape(), (Shape{c.M, c.N}));
    expect_near_vec(out.to_double_vector(), want, 1e-4, "matmul");
  }
}
