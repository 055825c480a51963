// CUDA matmul (cuBLASLt) against the CPU path: plain, batched, broadcast batch, 2-D B folded into M,
// all transpose flags, strided views, all floating dtypes.
#include "tests/cuda/cuda_test_util.h"

#include <cmath>

#include "core/ops.h"

namespace ssm {
namespace {

using test::close;
using test::gpu;
using test::rand_cpu;

test::Tol mm_tol(DType dt, int64_t K) {
  const double s = std::sqrt(double(K));
  switch (dt) {
    case DType::f32: return {1e-5, 1e-6 * s * 4};  // pure f32 (no TF32): only the summation order differs
    case DType::f64: return {1e-12, 1e-13 * s};
    case DType::bf16: return {1.6e-2, 1e-3 * s};
    default: return {2e-3, 2e-4 * s};
  }
}

// Logical (..., M, K) x (..., K, N); with trans flags the stored operands are the transposes.
void check(const Shape& a_shape, const Shape& b_shape, bool ta, bool tb, DType dt) {
  const Tensor a = rand_cpu(a_shape, dt, -1, 1, 71), b = rand_cpu(b_shape, dt, -1, 1, 72);
  const int64_t K = ta ? a_shape[a_shape.size() - 2] : a_shape.back();
  EXPECT_TRUE(close(matmul(gpu(a), gpu(b), ta, tb), matmul(a, b, ta, tb), mm_tol(dt, K)))
      << "A " << test::name(dt, a_shape) << (ta ? " (T)" : "") << " B " << shape_str(b_shape) << (tb ? " (T)" : "");
}

TEST(CudaMatmul, PlainAndTransposed) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  const std::vector<std::array<int64_t, 3>> mkn = {{1, 1, 1}, {7, 33, 5}, {64, 128, 96}, {1, 1000, 3}, {257, 65, 129}};
  for (DType dt : test::float_dtypes())
    for (const auto& [M, K, N] : mkn)
      for (bool ta : {false, true})
        for (bool tb : {false, true})
          check(ta ? Shape{K, M} : Shape{M, K}, tb ? Shape{N, K} : Shape{K, N}, ta, tb, dt);
}

TEST(CudaMatmul, BatchedAndBroadcast) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (DType dt : test::float_dtypes()) {
    check({3, 7, 33}, {3, 33, 5}, false, false, dt);      // strided batch
    check({3, 7, 33}, {33, 5}, false, false, dt);         // 2-D B: folded into M
    check({2, 3, 7, 33}, {3, 33, 5}, false, false, dt);   // batch broadcast
    check({2, 1, 7, 33}, {1, 3, 33, 5}, false, false, dt);
    check({7, 33}, {4, 33, 5}, false, false, dt);         // 2-D A, batched B
    check({3, 33, 7}, {3, 5, 33}, true, true, dt);
    check({3, 33, 7}, {33, 5}, true, false, dt);          // transposed A cannot fold
    check({64, 196, 64}, {64, 128}, false, false, dt);    // the quickstart's shape
  }
}

TEST(CudaMatmul, StridedViews) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (DType dt : test::float_dtypes()) {
    const Tensor a = rand_cpu({5, 40, 33}, dt, -1, 1, 73), b = rand_cpu({33, 9}, dt, -1, 1, 74);
    // A narrowed (row stride 33 > K = 20), B a transposed view, A's batch a permuted view.
    const Tensor an = a.narrow(2, 3, 20), bn = b.narrow(0, 0, 20);
    EXPECT_TRUE(close(matmul(gpu(a).narrow(2, 3, 20), gpu(b).narrow(0, 0, 20)), matmul(an, bn), mm_tol(dt, 20)));
    const Tensor bt = rand_cpu({9, 33}, dt, -1, 1, 75);
    EXPECT_TRUE(close(matmul(gpu(a), gpu(bt).transpose(0, 1)), matmul(a, bt.transpose(0, 1)), mm_tol(dt, 33)));
    const Tensor ap = a.permute({1, 0, 2});  // (40, 5, 33): batch stride 33, row stride 40*33
    EXPECT_TRUE(close(matmul(gpu(a).permute({1, 0, 2}), gpu(b)), matmul(ap, b), mm_tol(dt, 33)));
  }
}

TEST(CudaMatmul, AddInPlace) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  // c += op(a) op(b) against the CPU, twice (the second adds onto the first); bf16 / f16 inputs into f32.
  for (DType dt : test::float_dtypes())
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const int64_t M = 37, K = 301, N = 24;
        const Tensor a = rand_cpu(ta ? Shape{K, M} : Shape{M, K}, dt, -1, 1, 81);
        const Tensor b = rand_cpu(tb ? Shape{N, K} : Shape{K, N}, dt, -1, 1, 82);
        const bool half = dt == DType::bf16 || dt == DType::f16;
        const DType cdt = half ? DType::f32 : dt;
        Tensor c = rand_cpu({M, N}, cdt, -1, 1, 83);
        Tensor cg = gpu(c);
        for (int rep = 0; rep < 2; ++rep) {
          matmul_add_(c, a, b, ta, tb);
          matmul_add_(cg, gpu(a), gpu(b), ta, tb);
        }
        const test::Tol tol = half ? test::Tol{1e-5, 1e-5 * std::sqrt(double(K))} : mm_tol(dt, K);
        EXPECT_TRUE(close(cg, c, tol)) << test::name(dt, {M, K}) << (ta ? " (T)" : "") << (tb ? " B (T)" : "");
        if (!half) continue;
        // C in the inputs' own half dtype (a gradient that two products add into: ag::matmul).
        Tensor ch = rand_cpu({M, N}, dt, -1, 1, 84);
        Tensor chg = gpu(ch);
        for (int rep = 0; rep < 2; ++rep) {
          matmul_add_(ch, a, b, ta, tb);
          matmul_add_(chg, gpu(a), gpu(b), ta, tb);
        }
        EXPECT_TRUE(close(chg, ch, mm_tol(dt, K))) << test::name(dt, {M, K}) << " into " << dtype_name(dt);
      }
}

TEST(CudaMatmul, IntoOverwrites) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  // c = op(a) op(b) (beta 0): c's NaNs never read; bf16 / f16 inputs into f32, as a weight's gradient is written.
  for (DType dt : test::float_dtypes())
    for (bool ta : {false, true}) {
      const int64_t M = 37, K = 301, N = 24;
      const Tensor a = rand_cpu(ta ? Shape{K, M} : Shape{M, K}, dt, -1, 1, 85), b = rand_cpu({K, N}, dt, -1, 1, 86);
      const bool half = dt == DType::bf16 || dt == DType::f16;
      const DType cdt = half ? DType::f32 : dt;
      Tensor c = Tensor::zeros({M, N}, cdt), cg = gpu(Tensor::full({M, N}, std::nan(""), cdt));
      matmul_into_(c, a, b, ta, false);
      matmul_into_(cg, gpu(a), gpu(b), ta, false);
      const test::Tol tol = half ? test::Tol{1e-5, 1e-5 * std::sqrt(double(K))} : mm_tol(dt, K);
      EXPECT_TRUE(close(cg, c, tol)) << test::name(dt, {M, K}) << (ta ? " (T)" : "");
    }
}

TEST(CudaMatmul, EmptyAndZeroK) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  const Tensor a = Tensor::zeros({3, 0}, DType::f32), b = Tensor::zeros({0, 4}, DType::f32);
  const Tensor c = matmul(gpu(a), gpu(b));
  EXPECT_EQ(c.shape(), (Shape{3, 4}));
  EXPECT_EQ(norm2(c), 0.0);
  EXPECT_EQ(matmul(gpu(Tensor::zeros({0, 5})), gpu(Tensor::zeros({5, 2}))).shape(), (Shape{0, 2}));
}

}  // namespace
}  // namespace ssm
