// The 16-byte vector path of the elementwise kernels (core/cuda/elementwise.cuh) for the half types: each
// thread owns kEwUnroll = 4 vectors of 8 bf16/f16, a block 256 threads, so a block covers 8192 elements.
// Sizes straddle those boundaries (partial vectors, partial unroll groups, the n % 8 tail); views are
// aligned (vector path) or one element off (N-d path); a 1-element operand is the scalar broadcast.
// add / sub / mul are computed in f32 and rounded to nearest even on both sides, so bf16/f16 results must
// be bit-identical to the CPU's (this checks the pairwise cvt.rn.bf16x2 rounding).
#include "tests/cuda/cuda_test_util.h"

#include "core/ops.h"

namespace ssm {
namespace {

using test::close;
using test::gpu;
using test::rand_cpu;

const std::vector<int64_t> kVecSizes = {8, 9, 15, 2047, 2048, 2056, 8191, 8192, 8193, 8200, 16384 + 8 * 3 + 5, 100005};
const std::vector<DType> kHalf = {DType::bf16, DType::f16};

TEST(CudaVectorPath, HalfBinaryBitExactAtBlockBoundaries) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (DType dt : kHalf)
    for (int64_t n : kVecSizes) {
      const Tensor a = rand_cpu({n}, dt, -4, 4, uint32_t(n)), b = rand_cpu({n}, dt, 0.25, 4, uint32_t(n) + 1);
      for (BinaryOp op : {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul})
        EXPECT_TRUE(test::same_bits(binary(op, gpu(a), gpu(b)), binary(op, a, b))) << int(op) << " " << test::name(dt, {n});
      for (BinaryOp op : {BinaryOp::Div, BinaryOp::Max, BinaryOp::Min, BinaryOp::Pow})
        EXPECT_TRUE(close(binary(op, gpu(a), gpu(b)), binary(op, a, b))) << int(op) << " " << test::name(dt, {n});
      // A one-element operand on either side (scalar broadcast inside the vector kernel).
      const Tensor s = rand_cpu({1}, dt, 0.5, 2, 7);
      EXPECT_TRUE(test::same_bits(binary(BinaryOp::Mul, gpu(a), gpu(s)), binary(BinaryOp::Mul, a, s))) << n;
      EXPECT_TRUE(test::same_bits(binary(BinaryOp::Sub, gpu(s), gpu(a)), binary(BinaryOp::Sub, s, a))) << n;
      EXPECT_TRUE(close(binary_scalar(BinaryOp::Add, gpu(a), 0.375), binary_scalar(BinaryOp::Add, a, 0.375))) << n;
    }
}

TEST(CudaVectorPath, HalfUnaryAndBackwardAtBlockBoundaries) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (DType dt : kHalf)
    for (int64_t n : kVecSizes) {
      const Tensor x = rand_cpu({n}, dt, -3, 3, uint32_t(n) + 2), g = rand_cpu({n}, dt, -1, 1, uint32_t(n) + 3);
      for (UnaryOp op : {UnaryOp::Gelu, UnaryOp::Neg, UnaryOp::Relu, UnaryOp::Tanh, UnaryOp::Silu}) {
        EXPECT_TRUE(close(unary(op, gpu(x)), unary(op, x))) << int(op) << " " << test::name(dt, {n});
        EXPECT_TRUE(close(unary_backward(op, gpu(g), gpu(x)), unary_backward(op, g, x), {3e-2, 2e-3}))
            << "backward " << int(op) << " " << test::name(dt, {n});
      }
      EXPECT_TRUE(test::same_bits(unary(UnaryOp::Neg, gpu(x)), unary(UnaryOp::Neg, x))) << n;
    }
}

TEST(CudaVectorPath, HalfViewsAlignedAndMisaligned) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  const int64_t n = 8192 * 2 + 37;
  for (DType dt : kHalf) {
    const Tensor a = rand_cpu({n}, dt, -2, 2, 11), b = rand_cpu({n}, dt, -2, 2, 12);
    const Tensor ag = gpu(a), bg = gpu(b);
    for (int64_t off : {int64_t(8), int64_t(16), int64_t(1), int64_t(3), int64_t(7)}) {  // 16-byte aligned or not
      const int64_t len = n - 16 - off;
      const Tensor av = a.narrow(0, off, len), bv = b.narrow(0, 16 - off % 8, len);
      const Tensor avg = ag.narrow(0, off, len), bvg = bg.narrow(0, 16 - off % 8, len);
      EXPECT_TRUE(test::same_bits(binary(BinaryOp::Add, avg, bvg), binary(BinaryOp::Add, av, bv))) << "offset " << off;
      EXPECT_TRUE(close(unary(UnaryOp::Gelu, avg), unary(UnaryOp::Gelu, av))) << "offset " << off;
      // In place on the view: the elements outside it stay as they were.
      Tensor hc = a.clone(), hg = gpu(a);
      Tensor vc = hc.narrow(0, off, len), vg = hg.narrow(0, off, len);
      binary_(BinaryOp::Mul, vc, bv);
      binary_(BinaryOp::Mul, vg, bvg);
      EXPECT_TRUE(test::same_bits(hg, hc)) << "in place, offset " << off;
    }
  }
}

// bf16 sums over the two layouts of the benchmark (rows, leading dims), at odd sizes and views.
TEST(CudaVectorPath, HalfSumsMatchCpu) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (DType dt : kHalf)
    for (const Shape& s : std::vector<Shape>{{64, 8192}, {3, 5000}, {7, 2049}, {1, 100003}, {4096, 72}, {301, 129}}) {
      const Tensor x = rand_cpu(s, dt, -1, 1, 21);
      EXPECT_TRUE(close(sum(gpu(x), {1}), sum(x, {1}), {2e-2, 2e-2})) << "rows " << test::name(dt, s);
      EXPECT_TRUE(close(sum(gpu(x), {0}), sum(x, {0}), {2e-2, 2e-2})) << "leading " << test::name(dt, s);
      const Tensor xv = x.flatten().narrow(0, 1, x.numel() - 1);  // misaligned start
      EXPECT_TRUE(close(sum(gpu(x).flatten().narrow(0, 1, x.numel() - 1)), sum(xv), {2e-2, 2e-1})) << test::name(dt, s);
    }
}

}  // namespace
}  // namespace ssm
