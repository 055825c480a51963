// CUDA indexing, cat, copies between strides and dtypes, and fill, against the CPU path.
#include "tests/cuda/cuda_test_util.h"

#include "core/ops.h"

namespace ssm {
namespace {

using test::close;
using test::gpu;
using test::rand_cpu;

const std::vector<DType> kAll = {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64, DType::u8};

TEST(CudaIndex, IndexSelectAndAdd) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (DType idt : {DType::i64, DType::i32}) {
    const Tensor idx = test::randint_cpu({10}, idt, 0, 32, 81);  // repeats likely
    for (DType dt : kAll) {
      const Tensor x = test::randint_cpu({7, 33, 5}, dt, 0, 100, 82);
      for (int64_t dim : {0, 1, 2}) {
        const Tensor id = dim == 1 ? idx : test::randint_cpu({10}, idt, 0, x.shape()[size_t(dim)] - 1, 83);
        EXPECT_TRUE(close(index_select(gpu(x), dim, gpu(id)), index_select(x, dim, id)))
            << "index_select " << test::name(dt, x.shape()) << " dim " << dim;
        if (dt == DType::u8) continue;  // no atomics for bytes on CUDA
        Shape src_shape = x.shape();
        src_shape[size_t(dim)] = 10;
        const Tensor src = test::randint_cpu(src_shape, dt, 0, 10, 84);  // small ints: order-independent sums
        EXPECT_TRUE(close(index_add(x.shape(), dim, gpu(id), gpu(src)), index_add(x.shape(), dim, id, src)))
            << "index_add " << test::name(dt, x.shape()) << " dim " << dim;
      }
    }
  }
  // Embedding-like: float gradients with many duplicate rows. The CUDA sum runs over each index's rows in
  // position order, as the CPU loop does: the same bits as the CPU, and the same bits run after run.
  const Tensor idx = test::randint_cpu({4097}, DType::i64, 0, 99, 85);
  const Tensor g = rand_cpu({4097, 65}, DType::f32, -1, 1, 86);
  const Tensor first = index_add({100, 65}, 0, gpu(idx), gpu(g));
  EXPECT_EQ(first.to(Device::cpu()).to_double_vector(), index_add({100, 65}, 0, idx, g).to_double_vector());
  for (int run = 0; run < 3; ++run)
    EXPECT_EQ(index_add({100, 65}, 0, gpu(idx), gpu(g)).to(Device::cpu()).to_double_vector(),
              first.to(Device::cpu()).to_double_vector());
}

TEST(CudaIndex, GatherAndScatterAdd) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (DType dt : kAll) {
    const Tensor x = test::randint_cpu({3, 5, 7}, dt, 0, 100, 91);
    for (int64_t dim : {0, 1, 2}) {
      Shape ishape = {3, 4, 6};  // smaller than x outside dim, as torch allows
      ishape[size_t(dim)] = 9;
      const Tensor idx = test::randint_cpu(ishape, DType::i64, 0, x.shape()[size_t(dim)] - 1, 92);
      EXPECT_TRUE(close(gather(gpu(x), dim, gpu(idx)), gather(x, dim, idx))) << "gather " << dtype_name(dt) << dim;
      const Tensor xt = test::randint_cpu({7, 5, 3}, dt, 0, 100, 90);  // a strided (3, 5, 7) view below
      EXPECT_TRUE(close(gather(gpu(xt).permute({2, 1, 0}), dim, gpu(idx).to(DType::i32)),
                        gather(xt.permute({2, 1, 0}), dim, idx)));
      if (dt == DType::u8) continue;
      const Tensor src = test::randint_cpu(ishape, dt, 0, 10, 93);
      EXPECT_TRUE(close(scatter_add(x.shape(), dim, gpu(idx), gpu(src)), scatter_add(x.shape(), dim, idx, src)))
          << "scatter_add " << dtype_name(dt) << " dim " << dim;
    }
  }
}

TEST(CudaIndex, OutOfRangeIsBadInput) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  const Tensor x = gpu(rand_cpu({4, 3}, DType::f32));
  const Tensor bad = gpu(Tensor::from_vector(std::vector<int64_t>{0, 4, 1}, {3}));
  try {
    index_select(x, 0, bad);
    ADD_FAILURE() << "index 4 accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput);
    EXPECT_NE(std::string(e.what()).find("position 1"), std::string::npos) << e.what();
  }
  EXPECT_THROW(index_add({4, 3}, 0, bad, x.narrow(0, 0, 3)), Error);
}

TEST(CudaIndex, Cat) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (DType dt : kAll) {
    const Tensor a = test::randint_cpu({3, 2, 5}, dt, 0, 100, 94), b = test::randint_cpu({3, 7, 5}, dt, 0, 100, 95);
    const Tensor c = test::randint_cpu({3, 0, 5}, dt, 0, 100, 96);
    EXPECT_TRUE(close(cat({gpu(a), gpu(c), gpu(b)}, 1), cat({a, c, b}, 1))) << dtype_name(dt);
    EXPECT_TRUE(close(cat({gpu(a), gpu(a)}, -1), cat({a, a}, -1)));
  }
}

TEST(CudaCopy, StridedAndCasts) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (DType src : kAll)
    for (DType dst : kAll) {
      // Small non-negative integers are exact in every dtype, so every conversion is exact.
      const Tensor x = test::randint_cpu({33, 7}, src, 0, 100, 97);
      EXPECT_TRUE(close(gpu(x).to(dst), x.to(dst))) << dtype_name(src) << " -> " << dtype_name(dst);
      EXPECT_TRUE(close(gpu(x).transpose(0, 1).to(dst), x.transpose(0, 1).to(dst)));
    }
  for (DType dt : test::float_dtypes()) {
    const Tensor x = rand_cpu({1000003}, DType::f64, -3, 3, 98);
    EXPECT_TRUE(test::same_bits(gpu(x).to(dt), x.to(dt))) << "rounding f64 -> " << dtype_name(dt);
    const Tensor y = rand_cpu({1000003}, DType::f32, -3, 3, 99);
    EXPECT_TRUE(test::same_bits(gpu(y).to(dt), y.to(dt))) << "rounding f32 -> " << dtype_name(dt);
  }
  // Between the float types (16-byte vectors when dense and aligned): random values, odd sizes, views whose
  // start is not 16-byte aligned (the element-wise path), every pair bit for bit against the CPU.
  for (DType src : test::float_dtypes())
    for (DType dst : test::float_dtypes()) {
      if (src == DType::f64 || dst == DType::f64 || src == dst) continue;
      const Tensor x = rand_cpu({1000003}, src, -3, 3, 103);
      EXPECT_TRUE(test::same_bits(gpu(x).to(dst), x.to(dst))) << dtype_name(src) << " -> " << dtype_name(dst);
      EXPECT_TRUE(test::same_bits(gpu(x).narrow(0, 1, 999).to(dst), x.narrow(0, 1, 999).to(dst)))
          << dtype_name(src) << " -> " << dtype_name(dst) << ", misaligned view";
      const Tensor w = rand_cpu({7, 33}, src, -3, 3, 104);
      EXPECT_TRUE(test::same_bits(gpu(w).transpose(0, 1).to(dst), w.transpose(0, 1).to(dst)));
    }
  // contiguous() of permuted / expanded views, and copy_ with broadcasting.
  const Tensor x = rand_cpu({3, 5, 7}, DType::f32, -1, 1, 100);
  EXPECT_TRUE(test::same_bits(gpu(x).permute({2, 0, 1}).contiguous(), x.permute({2, 0, 1}).contiguous()));
  const Tensor row = rand_cpu({7}, DType::f32, -1, 1, 101);
  Tensor dg = Tensor::zeros({5, 7}, DType::f32, Device::cuda(0)), dc = Tensor::zeros({5, 7}, DType::f32);
  dg.copy_(gpu(row));
  dc.copy_(row);
  EXPECT_TRUE(test::same_bits(dg, dc));
  // Host <-> device round trip of an odd size.
  const Tensor h = rand_cpu({1000003}, DType::bf16, -1, 1, 102);
  EXPECT_TRUE(test::same_bits(gpu(h), h));
}

TEST(CudaCopy, Fill) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (DType dt : kAll)
    for (double v : {0.0, 1.0, 3.0, -0.0}) {
      if (dt == DType::u8 && v < 0) continue;
      Tensor g = Tensor::empty({33, 7}, dt, Device::cuda(0)), c = Tensor::empty({33, 7}, dt);
      g.fill_(v);
      c.fill_(v);
      EXPECT_TRUE(test::same_bits(g, c)) << dtype_name(dt) << " " << v;
      // A strided view: only its elements change.
      Tensor gz = Tensor::zeros({33, 7}, dt, Device::cuda(0)), cz = Tensor::zeros({33, 7}, dt);
      Tensor gv = gz.narrow(1, 2, 3), cv = cz.narrow(1, 2, 3);
      gv.fill_(v + 2);
      cv.fill_(v + 2);
      EXPECT_TRUE(test::same_bits(gz, cz)) << dtype_name(dt);
    }
}

}  // namespace
}  // namespace ssm
