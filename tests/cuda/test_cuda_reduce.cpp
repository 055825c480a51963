// CUDA reductions, softmax and cross entropy against the CPU path.
#include "tests/cuda/cuda_test_util.h"

#include <cmath>

#include "core/ops.h"

namespace ssm {
namespace {

using test::close;
using test::gpu;
using test::rand_cpu;

struct SumCase {
  Shape shape;
  std::vector<int64_t> dims;
};
// Covers: warp rows, block rows (R > 2048), split rows (few long rows), columns (vector and scalar),
// split columns (few columns, long R), dims that are not one block (permute path), all dims, size-1 dims.
const std::vector<SumCase> kSumCases = {
    {{1000003}, {0}},    {{7, 33}, {1}},        {{7, 33}, {0}},        {{3, 5, 7}, {0, 2}}, {{3, 5, 7}, {1}},
    {{8, 4099}, {1}},    {{2, 300001}, {1}},    {{100003, 3}, {0}},    {{4096, 64}, {0}},   {{3, 5, 7}, {0, 1, 2}},
    {{1, 7, 1}, {0, 2}}, {{513, 16, 8}, {0, 1}}, {{5, 1000, 12}, {1}}, {{1}, {0}},          {{64, 196, 64}, {0, 1}},
};

test::Tol sum_tol(DType dt, int64_t R) {
  test::Tol t = test::tol_for(dt);
  const double a = (dt == DType::f64 ? 1e-12 : 2e-6) * std::sqrt(double(R)) * 4;  // accumulation order
  return {std::max(t.rtol, dt == DType::f32 ? 1e-5 : t.rtol), t.atol + a};
}

TEST(CudaReduce, SumMatchesCpu) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (DType dt : test::float_dtypes())
    for (const SumCase& c : kSumCases)
      for (bool keep : {false, true}) {
        const Tensor x = rand_cpu(c.shape, dt, -1, 1, 7);
        int64_t R = 1;
        for (int64_t d : c.dims) R *= c.shape[size_t(d)];
        EXPECT_TRUE(close(sum(gpu(x), c.dims, keep), sum(x, c.dims, keep), sum_tol(dt, R)))
            << test::name(dt, c.shape) << " dims " << shape_str(Shape(c.dims.begin(), c.dims.end())) << " keepdim "
            << keep;
      }
}

TEST(CudaReduce, SumIntegersExact) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (DType dt : {DType::i32, DType::i64, DType::u8})
    for (const SumCase& c : kSumCases) {
      const Tensor x = test::randint_cpu(c.shape, dt, 0, 9, 8);
      EXPECT_TRUE(close(sum(gpu(x), c.dims), sum(x, c.dims))) << test::name(dt, c.shape);
    }
}

TEST(CudaReduce, SumOfStridedInput) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  const Tensor x = rand_cpu({33, 7, 5}, DType::f32, -1, 1, 9);
  const Tensor xt = x.permute({2, 0, 1});
  EXPECT_TRUE(close(sum(gpu(x).permute({2, 0, 1}), {1}), sum(xt, {1}), sum_tol(DType::f32, 33)));
  EXPECT_TRUE(close(sum(gpu(x).permute({2, 0, 1}), {}), sum(xt, {}), sum_tol(DType::f32, 33 * 35)));
  EXPECT_TRUE(close(mean(gpu(x), {0, 2}), mean(x, {0, 2}), sum_tol(DType::f32, 165)));
}

TEST(CudaReduce, AmaxArgmaxMatchCpu) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  const std::vector<std::pair<Shape, int64_t>> cases = {
      {{33}, 0}, {{7, 33}, 1}, {{7, 33}, 0}, {{3, 5, 7}, 1}, {{5, 3000}, 1}, {{1000003}, 0}, {{3, 5, 7}, 2}};
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64, DType::u8})
    for (const auto& [shape, dim] : cases) {
      // Small integer range: many ties, so argmax must pick the first maximum as the CPU does.
      const Tensor x = test::randint_cpu(shape, dt, 0, 50, 10);
      EXPECT_TRUE(close(amax(gpu(x), dim), amax(x, dim))) << "amax " << test::name(dt, shape) << " dim " << dim;
      EXPECT_TRUE(close(argmax(gpu(x), dim), argmax(x, dim))) << "argmax " << test::name(dt, shape) << " dim " << dim;
      EXPECT_TRUE(close(argmax(gpu(x), dim, true), argmax(x, dim, true)));
    }
  // NaN propagates and wins the argmax.
  Tensor x = Tensor::from_vector(std::vector<float>{1, NAN, 3, 2}, {1, 4});
  EXPECT_TRUE(close(amax(gpu(x), 1), amax(x, 1)));
  EXPECT_TRUE(close(argmax(gpu(x), 1), argmax(x, 1)));
}

TEST(CudaReduce, Norm2MatchesCpu) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (DType dt : test::float_dtypes())
    for (int64_t n : {int64_t(1), int64_t(7), int64_t(33), int64_t(1000003)}) {
      const Tensor x = rand_cpu({n}, dt, -1, 1, 12);
      const double g = norm2(gpu(x)), c = norm2(x);
      EXPECT_NEAR(g, c, (dt == DType::f64 ? 1e-12 : 1e-5) * c + 1e-12) << test::name(dt, {n});
    }
  const Tensor x = rand_cpu({33, 7}, DType::f32, -1, 1, 13);
  EXPECT_NEAR(norm2(gpu(x).transpose(0, 1)), norm2(x), 1e-5 * norm2(x));
  // A list (gradient clipping): mixed dtypes, a strided view, an empty tensor, one CPU tensor beside them.
  const std::vector<Tensor> xs = {rand_cpu({1000003}, DType::bf16, -1, 1, 14), rand_cpu({5, 9}, DType::f32, -1, 1, 15),
                                  Tensor::zeros({0}), rand_cpu({3}, DType::f64, -1, 1, 16)};
  std::vector<Tensor> xg = {gpu(xs[0]), gpu(xs[1]).transpose(0, 1), gpu(xs[2]), xs[3]};
  std::vector<Tensor> xc = {xs[0], xs[1].transpose(0, 1), xs[2], xs[3]};
  EXPECT_NEAR(norm2(xg), norm2(xc), 1e-5 * norm2(xc));
  // 150 f32 gradients (two launches of the list kernel, at most 128 each) beside a bf16 one.
  std::vector<Tensor> fg, fc;
  for (int k = 0; k < 150; ++k) {
    fc.push_back(rand_cpu({int64_t(1 + 977 * (k % 11))}, DType::f32, -1, 1, uint32_t(200 + k)));
    fg.push_back(gpu(fc.back()));
  }
  fc.push_back(xs[0]);
  fg.push_back(gpu(xs[0]));
  EXPECT_NEAR(norm2(fg), norm2(fc), 1e-6 * norm2(fc));
  // scale_ over the same list (the f32 contiguous ones in one launch, the others one by one) against the CPU.
  scale_(xg, -0.75);
  scale_(xc, -0.75);
  for (size_t k = 0; k < xg.size(); ++k)
    EXPECT_TRUE(close(gpu(xg[k]), xc[k], test::tol_for(xc[k].dtype()))) << k;  // close() takes the GPU side first
}

TEST(CudaSoftmax, MatchesCpu) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  const std::vector<std::pair<Shape, int64_t>> cases = {{{7, 33}, 1}, {{7, 33}, 0},   {{3, 5, 7}, 1},
                                                         {{4, 5000}, 1}, {{1, 1}, 0},  {{1000003}, 0},
                                                         {{2, 3, 1025}, 2}};
  for (DType dt : test::float_dtypes())
    for (const auto& [shape, dim] : cases)
      for (bool lg : {false, true}) {
        const Tensor x = rand_cpu(shape, dt, -5, 5, 14);
        test::Tol tol = test::tol_for(dt);
        if (dt == DType::f32) tol = {1e-5, 1e-6};
        const Tensor g = lg ? log_softmax(gpu(x), dim) : softmax(gpu(x), dim);
        const Tensor c = lg ? log_softmax(x, dim) : softmax(x, dim);
        EXPECT_TRUE(close(g, c, tol)) << (lg ? "log_softmax " : "softmax ") << test::name(dt, shape) << " dim " << dim;
      }
}

TEST(CudaSoftmax, HandlesMinusInfinity) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  const Tensor x = Tensor::from_vector(std::vector<float>{-INFINITY, 0.f, 1.f, -INFINITY}, {1, 4});
  EXPECT_TRUE(close(softmax(gpu(x), 1), softmax(x, 1)));
}

TEST(CudaCrossEntropy, MatchesCpu) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  const std::vector<std::pair<int64_t, int64_t>> sizes = {{1, 1}, {33, 7}, {5, 3000}, {1000, 10}};
  for (DType dt : test::float_dtypes())
    for (const auto& [N, C] : sizes)
      for (DType tdt : {DType::i64, DType::i32}) {
        const Tensor x = rand_cpu({N, C}, dt, -4, 4, 15);
        Tensor t = test::randint_cpu({N}, DType::i64, 0, C - 1, 16);
        std::vector<int64_t> tv = t.to_int_vector();
        for (size_t i = 0; i < tv.size(); i += 3) tv[i] = -100;  // some ignored rows
        if (N == 1) tv[0] = 0;
        t = Tensor::from_vector(tv, {N}).to(tdt);
        test::Tol tol = dt == DType::f64 ? test::Tol{1e-12, 1e-12} : test::Tol{1e-5, 1e-5};
        EXPECT_TRUE(close(cross_entropy(gpu(x), gpu(t)), cross_entropy(x, t), tol))
            << "cross_entropy " << test::name(dt, {N, C});
        test::Tol btol = test::tol_for(dt);
        if (dt == DType::f32) btol = {1e-5, 1e-7};
        EXPECT_TRUE(close(cross_entropy_backward(gpu(x), gpu(t), 0.7), cross_entropy_backward(x, t, 0.7), btol))
            << "cross_entropy_backward " << test::name(dt, {N, C});
      }
  // Every row ignored: loss 0, gradient 0.
  const Tensor x = rand_cpu({4, 3}, DType::f32, -1, 1, 17);
  const Tensor t = Tensor::from_vector(std::vector<int64_t>{-100, -100, -100, -100}, {4});
  EXPECT_EQ(cross_entropy(gpu(x), gpu(t)).item(), 0.0);
  EXPECT_EQ(norm2(cross_entropy_backward(gpu(x), gpu(t), 1.0)), 0.0);
}

TEST(CudaCrossEntropy, WithGradInPlaceMatchesCpu) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  // Odd C (the scalar path), C a multiple of the 16-byte vector (the vector path, up to an LM head's width),
  // -inf padding columns at the end of some rows (the LM head's padded vocabulary), ignored rows.
  const std::vector<std::pair<int64_t, int64_t>> sizes = {{1, 1}, {33, 7}, {5, 3000}, {9, 50280}, {64, 256}};
  for (DType dt : test::float_dtypes())
    for (const auto& [N, C] : sizes) {
      Tensor x = rand_cpu({N, C}, dt, -4, 4, 19);
      if (C > 3) x.narrow(1, C - 3, 3).fill_(-INFINITY);
      std::vector<int64_t> tv = test::randint_cpu({N}, DType::i64, 0, std::max<int64_t>(C - 4, 0), 20).to_int_vector();
      for (size_t i = 1; i < tv.size(); i += 4) tv[i] = -100;
      const Tensor t = Tensor::from_vector(tv, {N});
      Tensor xg = gpu(x);
      const Tensor loss = cross_entropy_with_grad_(xg, gpu(t), 0.3);
      const test::Tol tol = dt == DType::f64 ? test::Tol{1e-12, 1e-12} : test::Tol{1e-5, 1e-5};
      EXPECT_TRUE(close(loss, cross_entropy(x, t), tol)) << "loss " << test::name(dt, {N, C});
      test::Tol btol = test::tol_for(dt);
      if (dt == DType::f32) btol = {1e-5, 1e-7};
      EXPECT_TRUE(close(xg, cross_entropy_backward(x, t, 0.3), btol)) << "grad " << test::name(dt, {N, C});
    }
  // A bad target: BadInput naming the row.
  Tensor x = gpu(rand_cpu({4, 8}, DType::f32, -1, 1, 21));
  const Tensor t = gpu(Tensor::from_vector(std::vector<int64_t>{0, 2, 1, 8}, {4}));
  try {
    cross_entropy_with_grad_(x, t, 1.0);
    ADD_FAILURE() << "target 8 was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput);
    EXPECT_NE(std::string(e.what()).find("row 3"), std::string::npos) << e.what();
  }
}

TEST(CudaCrossEntropy, BadTargetIsBadInput) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  const Tensor x = gpu(rand_cpu({4, 3}, DType::f32, -1, 1, 18));
  for (int64_t bad : {int64_t(3), int64_t(-1), int64_t(1000)}) {
    const Tensor t = gpu(Tensor::from_vector(std::vector<int64_t>{0, 2, bad, 1}, {4}));
    for (int which = 0; which < 2; ++which) {
      try {
        if (which == 0)
          cross_entropy(x, t);
        else
          cross_entropy_backward(x, t, 1.0);
        ADD_FAILURE() << "target " << bad << " was accepted";
      } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::BadInput);
        EXPECT_NE(std::string(e.what()).find("row 2"), std::string::npos) << e.what();
      }
    }
  }
  // The stream still works afterwards.
  const Tensor ok = gpu(Tensor::from_vector(std::vector<int64_t>{0, 2, 1, 1}, {4}));
  EXPECT_TRUE(std::isfinite(cross_entropy(x, ok).item()));
}

}  // namespace
}  // namespace ssm
