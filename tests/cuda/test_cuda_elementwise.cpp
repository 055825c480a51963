// CUDA elementwise ops against the CPU path: every unary op (and its backward), every binary op with
// broadcasting, scalars, in-place forms, where, at odd sizes and all floating dtypes (ints where defined).
#include "tests/cuda/cuda_test_util.h"

#include "core/ops.h"

namespace ssm {
namespace {

using test::close;
using test::gpu;
using test::rand_cpu;

const std::vector<UnaryOp> kUnary = {UnaryOp::Neg,  UnaryOp::Exp,     UnaryOp::Log,  UnaryOp::Sqrt,
                                     UnaryOp::Rsqrt, UnaryOp::Abs,    UnaryOp::Square, UnaryOp::Reciprocal,
                                     UnaryOp::Sin,  UnaryOp::Cos,     UnaryOp::Tanh, UnaryOp::Sigmoid,
                                     UnaryOp::Relu, UnaryOp::Silu,    UnaryOp::Gelu, UnaryOp::Softplus};
const std::vector<int64_t> kSizes = {1, 7, 33, 1000003};

bool positive_domain(UnaryOp op) {
  return op == UnaryOp::Log || op == UnaryOp::Sqrt || op == UnaryOp::Rsqrt || op == UnaryOp::Reciprocal;
}
Tensor unary_input(UnaryOp op, const Shape& s, DType dt, uint32_t seed) {
  if (positive_domain(op)) return rand_cpu(s, dt, 0.1, 3.0, seed);
  if (op == UnaryOp::Softplus) return rand_cpu(s, dt, -25.0, 25.0, seed);  // both sides of the threshold
  return rand_cpu(s, dt, -3.0, 3.0, seed);
}

TEST(CudaElementwise, UnaryMatchesCpu) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (DType dt : test::float_dtypes())
    for (int64_t n : kSizes)
      for (UnaryOp op : kUnary) {
        const Tensor x = unary_input(op, {n}, dt, uint32_t(n));
        EXPECT_TRUE(close(unary(op, gpu(x)), unary(op, x))) << "unary op " << int(op) << " " << test::name(dt, {n});
      }
}

TEST(CudaElementwise, UnaryOnStridedViews) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (DType dt : test::float_dtypes()) {
    const Tensor x = rand_cpu({33, 7}, dt, -2, 2, 3);
    const Tensor xt = x.transpose(0, 1);                  // non-contiguous
    const Tensor xn = x.flatten().narrow(0, 1, 33 * 7 - 1);  // misaligned for 16-byte loads
    for (UnaryOp op : {UnaryOp::Exp, UnaryOp::Gelu, UnaryOp::Tanh}) {
      EXPECT_TRUE(close(unary(op, gpu(x).transpose(0, 1)), unary(op, xt))) << test::name(dt, xt.shape());
      EXPECT_TRUE(close(unary(op, gpu(x).flatten().narrow(0, 1, 33 * 7 - 1)), unary(op, xn)));
    }
  }
}

TEST(CudaElementwise, UnaryBackwardMatchesCpu) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (DType dt : test::float_dtypes())
    for (int64_t n : kSizes)
      for (UnaryOp op : kUnary) {
        const Tensor x = unary_input(op, {n}, dt, uint32_t(n) + 5);
        const Tensor g = rand_cpu({n}, dt, -1, 1, uint32_t(n) + 6);
        test::Tol tol = test::tol_for(dt);
        if (dt == DType::f32) tol = {1e-4, 1e-5};  // the derivative formulas round differently
        EXPECT_TRUE(close(unary_backward(op, gpu(g), gpu(x)), unary_backward(op, g, x), tol))
            << "unary_backward op " << int(op) << " " << test::name(dt, {n});
      }
}

const std::vector<BinaryOp> kArith = {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div,
                                      BinaryOp::Max, BinaryOp::Min, BinaryOp::Pow};
const std::vector<BinaryOp> kCompare = {BinaryOp::Eq, BinaryOp::Ne, BinaryOp::Lt,
                                        BinaryOp::Le, BinaryOp::Gt, BinaryOp::Ge};

struct ShapePair {
  Shape a, b;
};
const std::vector<ShapePair> kPairs = {
    {{1000003}, {1000003}}, {{3, 5, 7}, {5, 1}}, {{7}, {}},      {{}, {33}},
    {{1}, {7}},             {{33, 1}, {1, 7}},   {{2, 3, 1, 5}, {4, 1}}, {{1}, {1}},
};

Tensor binary_input(BinaryOp op, const Shape& s, DType dt, uint32_t seed, bool second) {
  if (op == BinaryOp::Pow && !second) return rand_cpu(s, dt, 0.1, 3.0, seed);
  if (op == BinaryOp::Div && second) return rand_cpu(s, dt, 0.5, 2.0, seed);
  if (op == BinaryOp::Eq || op == BinaryOp::Ne) return test::randint_cpu(s, dt, -2, 2, seed);  // real ties
  return rand_cpu(s, dt, -2.0, 2.0, seed);
}

TEST(CudaElementwise, BinaryBroadcastMatchesCpu) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (DType dt : test::float_dtypes())
    for (const ShapePair& p : kPairs) {
      for (BinaryOp op : kArith) {
        const Tensor a = binary_input(op, p.a, dt, 11, false), b = binary_input(op, p.b, dt, 12, true);
        test::Tol tol = test::tol_for(dt);
        if (op == BinaryOp::Pow && dt == DType::f32) tol = {1e-5, 1e-6};
        EXPECT_TRUE(close(binary(op, gpu(a), gpu(b)), binary(op, a, b), tol))
            << "binary op " << int(op) << " " << test::name(dt, p.a) << " with " << shape_str(p.b);
      }
      for (BinaryOp op : kCompare) {
        const Tensor a = binary_input(op, p.a, dt, 13, false), b = binary_input(op, p.b, dt, 14, true);
        EXPECT_TRUE(close(binary(op, gpu(a), gpu(b)), binary(op, a, b)))
            << "compare op " << int(op) << " " << test::name(dt, p.a) << " with " << shape_str(p.b);
      }
    }
}

TEST(CudaElementwise, BinaryNonContiguous) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (DType dt : test::float_dtypes()) {
    const Tensor a = rand_cpu({33, 7}, dt, -1, 1, 21), b = rand_cpu({7, 33}, dt, -1, 1, 22);
    EXPECT_TRUE(close(add(gpu(a).transpose(0, 1), gpu(b)), add(a.transpose(0, 1), b)));
    EXPECT_TRUE(close(mul(gpu(a).transpose(0, 1), gpu(b).narrow(1, 0, 1)), mul(a.transpose(0, 1), b.narrow(1, 0, 1))));
  }
}

TEST(CudaElementwise, IntegerBinaryMatchesCpu) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (DType dt : {DType::i32, DType::i64, DType::u8})
    for (const ShapePair& p : kPairs) {
      const Tensor a = test::randint_cpu(p.a, dt, 0, 20, 31), b = test::randint_cpu(p.b, dt, 0, 20, 32);
      for (BinaryOp op : {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Max, BinaryOp::Min})
        EXPECT_TRUE(close(binary(op, gpu(a), gpu(b)), binary(op, a, b))) << int(op) << " " << test::name(dt, p.a);
      for (BinaryOp op : kCompare)
        EXPECT_TRUE(close(binary(op, gpu(a), gpu(b)), binary(op, a, b))) << int(op) << " " << test::name(dt, p.a);
    }
}

TEST(CudaElementwise, BinaryScalarMatchesCpu) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (DType dt : test::float_dtypes())
    for (int64_t n : kSizes) {
      const Tensor a = rand_cpu({n}, dt, 0.1, 2.0, 41);
      for (BinaryOp op : kArith)
        EXPECT_TRUE(close(binary_scalar(op, gpu(a), 1.7), binary_scalar(op, a, 1.7))) << int(op) << " " << n;
      for (BinaryOp op : kCompare)
        EXPECT_TRUE(close(binary_scalar(op, gpu(a), 1.0), binary_scalar(op, a, 1.0))) << int(op) << " " << n;
    }
  const Tensor ai = test::randint_cpu({33}, DType::i64, -5, 5, 42);
  EXPECT_TRUE(close(binary_scalar(BinaryOp::Mul, gpu(ai), 3.0), binary_scalar(BinaryOp::Mul, ai, 3.0)));
  EXPECT_TRUE(close(binary_scalar(BinaryOp::Lt, gpu(ai), 2.5), binary_scalar(BinaryOp::Lt, ai, 2.5)));
}

TEST(CudaElementwise, InPlaceMatchesCpu) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (DType dt : test::float_dtypes())
    for (const ShapePair& p : std::vector<ShapePair>{{{1000003}, {1000003}}, {{3, 5, 7}, {5, 1}}, {{7}, {}}}) {
      const Tensor a = rand_cpu(p.a, dt, -1, 1, 51), b = rand_cpu(p.b, dt, -1, 1, 52);
      Tensor ac = a.clone(), ag = gpu(a);
      binary_(BinaryOp::Mul, ac, b);
      binary_(BinaryOp::Mul, ag, gpu(b));
      EXPECT_TRUE(close(ag, ac)) << "binary_ " << test::name(dt, p.a);
      Tensor xc = a.clone(), xg = gpu(a);
      axpby_(xc, 0.9, b, -0.25);
      axpby_(xg, 0.9, gpu(b), -0.25);
      test::Tol tol = test::tol_for(dt);
      if (dt == DType::f32) tol = {1e-5, 1e-6};  // the GPU may fuse into an fma
      EXPECT_TRUE(close(xg, xc, tol)) << "axpby_ " << test::name(dt, p.a);
    }
  // In place on a strided view: only the view changes.
  const Tensor base = rand_cpu({7, 33}, DType::f32, -1, 1, 53), b = rand_cpu({7, 1}, DType::f32, -1, 1, 54);
  Tensor hc = base.clone(), hg = gpu(base);
  Tensor vc = hc.narrow(1, 3, 20), vg = hg.narrow(1, 3, 20);
  binary_(BinaryOp::Add, vc, b);
  binary_(BinaryOp::Add, vg, gpu(b));
  EXPECT_TRUE(close(hg, hc));
}

TEST(CudaElementwise, WhereMatchesCpu) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64, DType::u8}) {
    const Tensor c = test::randint_cpu({5, 1}, DType::u8, 0, 1, 61);
    const Tensor a = test::randint_cpu({3, 5, 7}, dt, 0, 100, 62), b = test::randint_cpu({7}, dt, 0, 100, 63);
    EXPECT_TRUE(close(where(gpu(c), gpu(a), gpu(b)), where(c, a, b))) << dtype_name(dt);
    const Tensor c2 = test::randint_cpu({1000003}, DType::u8, 0, 1, 64);
    const Tensor a2 = test::randint_cpu({1000003}, dt, 0, 100, 65), b2 = test::randint_cpu({}, dt, 0, 100, 66);
    EXPECT_TRUE(close(where(gpu(c2), gpu(a2), gpu(b2)), where(c2, a2, b2))) << dtype_name(dt);
  }
}

}  // namespace
}  // namespace ssm
