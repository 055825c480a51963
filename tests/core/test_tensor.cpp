// Tensor views, layout, copies and dtype conversion.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/allocator.h"
#include "core/tensor.h"
#include "test_util.h"

using namespace ssm;
using namespace ssm::test;

TEST(Tensor, FactoriesAndMetadata) {
  Tensor t = Tensor::zeros({2, 3, 4});
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.dim(), 3);
  EXPECT_EQ(t.strides(), (Shape{12, 4, 1}));
  EXPECT_EQ(t.size(-1), 4);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.str(), "Tensor[f32, cpu, [2, 3, 4]]");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data_ptr()) % 64, 0u);
  for (float v : t.to_float_vector()) EXPECT_EQ(v, 0.0f);
  for (float v : Tensor::ones({5}, DType::f64).to_float_vector()) EXPECT_EQ(v, 1.0f);
  EXPECT_EQ(Tensor::full({2}, 2.5, DType::bf16).to_float_vector(), (std::vector<float>{2.5f, 2.5f}));
  EXPECT_EQ(Tensor::scalar(3.0).dim(), 0);
  EXPECT_EQ(Tensor::scalar(3.0).item(), 3.0);
  EXPECT_EQ(Tensor::arange(4).to_int_vector(), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(Tensor::arange(3, DType::f32).to_float_vector(), (std::vector<float>{0, 1, 2}));
  EXPECT_FALSE(Tensor().defined());
  expect_bad_input([] { Tensor::from_vector(std::vector<float>{1, 2, 3}, {2, 2}); }, {"[2, 2]", "3 values"});
  expect_bad_input([] { Tensor::zeros({2}).size(3); }, {"dim 3"});
  EXPECT_EQ(Tensor::zeros({0, 3}).numel(), 0);
}

TEST(Tensor, ViewsShareStorage) {
  Tensor t = Tensor::from_vector(std::vector<float>{0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor v = t.view({3, 2});
  Tensor p = t.permute({1, 0});
  Tensor n = t.narrow(1, 1, 2);
  Tensor s = t.select(0, 1);
  EXPECT_EQ(v.storage(), t.storage());
  EXPECT_EQ(p.storage(), t.storage());
  EXPECT_EQ(n.storage(), t.storage());
  t.data<float>()[4] = 40.0f;  // element (1, 1)
  EXPECT_EQ(v.to_float_vector()[4], 40.0f);
  EXPECT_EQ(p.to_float_vector(), (std::vector<float>{0, 3, 1, 40, 2, 5}));
  EXPECT_EQ(n.to_float_vector(), (std::vector<float>{1, 2, 40, 5}));
  EXPECT_EQ(s.to_float_vector(), (std::vector<float>{3, 40, 5}));
  // Writing through a view changes the base.
  Tensor col = t.select(1, 2);
  col.fill_(-1.0);
  EXPECT_EQ(t.to_float_vector(), (std::vector<float>{0, 1, -1, 3, 40, -1}));
  n.copy_(Tensor::from_vector(std::vector<float>{7, 8}, {2}));  // broadcast over rows
  EXPECT_EQ(t.to_float_vector(), (std::vector<float>{0, 7, 8, 3, 7, 8}));
}

TEST(Tensor, StridesPermuteNarrowExpand) {
  Tensor t = Tensor::arange(24, DType::f32).view({2, 3, 4});
  Tensor p = t.permute({2, 0, 1});
  EXPECT_EQ(p.shape(), (Shape{4, 2, 3}));
  EXPECT_EQ(p.strides(), (Shape{1, 12, 4}));
  EXPECT_FALSE(p.is_contiguous());
  std::vector<float> pv = p.to_float_vector();
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j < 2; ++j)
      for (int64_t k = 0; k < 3; ++k) EXPECT_EQ(pv[(i * 2 + j) * 3 + k], float(j * 12 + k * 4 + i));
  Tensor pc = p.contiguous();
  EXPECT_TRUE(pc.is_contiguous());
  EXPECT_NE(pc.storage(), t.storage());
  EXPECT_EQ(pc.to_float_vector(), pv);
  EXPECT_EQ(t.contiguous().storage(), t.storage());  // already contiguous: same tensor

  Tensor n = t.narrow(2, 1, 2).narrow(0, 1, 1);
  EXPECT_EQ(n.shape(), (Shape{1, 3, 2}));
  EXPECT_EQ(n.offset(), 13);
  EXPECT_EQ(n.to_float_vector(), (std::vector<float>{13, 14, 17, 18, 21, 22}));

  Tensor tr = t.transpose(0, 2);
  EXPECT_EQ(tr.shape(), (Shape{4, 3, 2}));
  EXPECT_EQ(tr.to_float_vector()[1], 12.0f);

  Tensor row = Tensor::from_vector(std::vector<float>{1, 2, 3}, {1, 3});
  Tensor e = row.expand({2, 4, 3});
  EXPECT_EQ(e.strides(), (Shape{0, 0, 1}));
  std::vector<float> ev = e.to_float_vector();
  for (int64_t i = 0; i < 24; ++i) EXPECT_EQ(ev[i], float(i % 3 + 1));
  EXPECT_EQ(row.expand({-1, 3}).shape(), (Shape{1, 3}));
  expect_bad_input([&] { row.expand({2, 4}); }, {"[1, 3]", "[2, 4]"});

  Tensor u = t.unsqueeze(1);
  EXPECT_EQ(u.shape(), (Shape{2, 1, 3, 4}));
  EXPECT_EQ(u.squeeze(1).shape(), t.shape());
  EXPECT_EQ(t.unsqueeze(-1).shape(), (Shape{2, 3, 4, 1}));
  EXPECT_EQ(t.squeeze(0).shape(), t.shape());  // size 2: unchanged
  expect_bad_input([&] { t.narrow(1, 2, 2); }, {"narrow", "[2, 3, 4]"});
  expect_bad_input([&] { t.permute({0, 0, 1}); }, {"permute"});
}

TEST(Tensor, ViewAndReshape) {
  Tensor t = Tensor::arange(24, DType::f32).view({2, 3, 4});
  EXPECT_EQ(t.view({6, -1}).shape(), (Shape{6, 4}));
  EXPECT_EQ(t.view({-1}).shape(), (Shape{24}));
  // Merging dims that are contiguous within a permuted tensor is a view.
  Tensor p = t.permute({1, 2, 0});  // (3, 4, 2) strides (4, 1, 12)
  Tensor v = p.view({12, 2});
  EXPECT_EQ(v.storage(), t.storage());
  EXPECT_EQ(v.to_float_vector(), p.to_float_vector());
  expect_bad_input([&] { p.view({3, 8}); }, {"view", "[3, 4, 2]", "[3, 8]", "reshape"});
  Tensor r = p.reshape({3, 8});
  EXPECT_NE(r.storage(), t.storage());
  EXPECT_EQ(r.to_float_vector(), p.to_float_vector());
  expect_bad_input([&] { t.view({5, 5}); }, {"[5, 5]", "[2, 3, 4]"});
  expect_bad_input([&] { t.view({-1, -1}); }, {"-1"});
  EXPECT_EQ(t.flatten().shape(), (Shape{24}));
  // Views with size-1 dims.
  Tensor one = t.narrow(0, 0, 1).view({3, 4});
  EXPECT_EQ(one.storage(), t.storage());
}

TEST(Tensor, CloneAndCopies) {
  Tensor t = rand_t({3, 5}, 1);
  Tensor c = t.clone();
  EXPECT_NE(c.storage(), t.storage());
  EXPECT_EQ(c.to_float_vector(), t.to_float_vector());
  c.fill_(0.0);
  EXPECT_NE(c.to_float_vector(), t.to_float_vector());
  expect_bad_input([&] { c.copy_(Tensor::zeros({2, 5})); }, {"copy_", "[2, 5]", "[3, 5]"});
  // copy_ converts dtype.
  Tensor d = Tensor::empty({3, 5}, DType::f64);
  d.copy_(t);
  std::vector<double> dv = d.to_double_vector();
  std::vector<float> tv = t.to_float_vector();
  for (size_t i = 0; i < tv.size(); ++i) EXPECT_EQ(dv[i], double(tv[i]));
  // Large strided copy (parallel path) into a transposed view.
  Tensor big = rand_t({300, 257}, 2);
  Tensor dst = Tensor::empty({257, 300}).transpose(0, 1);
  dst.copy_(big);
  EXPECT_EQ(dst.to_float_vector(), big.to_float_vector());
  EXPECT_EQ(Tensor::from_vector(std::vector<int32_t>{4}, {1}).item(), 4.0);
  expect_bad_input([] { Tensor::zeros({2}).item(); }, {"[2]"});
  // Host memory is counted.
  const size_t before = allocator_stats(Device::cpu()).allocated_bytes;
  {
    Tensor m = Tensor::empty({1000});
    EXPECT_GE(allocator_stats(Device::cpu()).allocated_bytes, before + 4000);
  }
  EXPECT_EQ(allocator_stats(Device::cpu()).allocated_bytes, before);
}

TEST(Tensor, IntegerCasts) {
  Tensor f = Tensor::from_vector(std::vector<float>{-2.7f, -0.5f, 0.0f, 1.9f, 300.0f}, {5});
  EXPECT_EQ(f.to(DType::i64).to_int_vector(), (std::vector<int64_t>{-2, 0, 0, 1, 300}));  // truncation
  EXPECT_EQ(f.to(DType::i32).to_int_vector(), (std::vector<int64_t>{-2, 0, 0, 1, 300}));
  Tensor i = Tensor::from_vector(std::vector<int64_t>{1, 0, 5}, {3});
  EXPECT_EQ(i.to(DType::u8).to_int_vector(), (std::vector<int64_t>{1, 0, 5}));
  EXPECT_EQ(i.to(DType::f64).to_double_vector(), (std::vector<double>{1, 0, 5}));
  Tensor u = Tensor::from_vector(std::vector<uint8_t>{0, 1, 255}, {3});
  EXPECT_EQ(u.to_float_vector(), (std::vector<float>{0, 1, 255}));
}

static float bits_to_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

TEST(DType, NamesAndSizes) {
  EXPECT_EQ(dtype_size(DType::bf16), 2u);
  EXPECT_EQ(dtype_size(DType::i64), 8u);
  EXPECT_STREQ(dtype_name(DType::f16), "f16");
  EXPECT_EQ(dtype_from_name("bf16"), DType::bf16);
  EXPECT_EQ(dtype_from_name("float32"), DType::f32);
  EXPECT_TRUE(is_floating(DType::f16));
  EXPECT_FALSE(is_floating(DType::i32));
  expect_bad_input([] { dtype_from_name("f8"); }, {"'f8'"});
  EXPECT_EQ(Device::parse("cuda:1").index, 1);
  EXPECT_EQ(Device::parse("cpu").str(), "cpu");
  EXPECT_EQ(Device::cuda(2).str(), "cuda:2");
  expect_bad_input([] { Device::parse("tpu"); }, {"'tpu'"});
#ifndef SSM_WITH_CUDA
  EXPECT_FALSE(cuda_available());
  expect_bad_input([] { Tensor::empty({2}, DType::f32, Device::cuda(0)); }, {"no CUDA", "cuda:0"});
#endif
}

TEST(DType, Bf16RoundTrip) {
  // Exactly representable values survive.
  for (float v : {0.0f, -0.0f, 1.0f, -2.5f, 3.140625f, 1e30f, -1e-30f}) {
    const uint32_t bits = [&] { uint32_t u; std::memcpy(&u, &v, 4); return u; }();
    const float r = bf16_to_f32(f32_to_bf16(bits_to_f32(bits & 0xffff0000u)));
    EXPECT_EQ(r, bits_to_f32(bits & 0xffff0000u));
  }
  // Round to nearest even: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 -> 1 (even).
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 0.00390625f)), 1.0f);
  // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6 -> 1 + 2^-6 (even mantissa).
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 3 * 0.00390625f)), 1.0f + 0.015625f);
  // Just above halfway rounds up.
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(bits_to_f32(0x3f808001u))), 1.0f + 0.0078125f);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(bits_to_f32(0x7f800001u)))));  // NaN with low payload only
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(INFINITY)), INFINITY);
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(-INFINITY)), -INFINITY);
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(3.4e38f)), INFINITY);  // rounds past the largest finite bf16
  // Tensor cast path agrees with the scalar conversion.
  Tensor t = rand_t({17}, 3);
  std::vector<float> src = t.to_float_vector(), back = t.to(DType::bf16).to_float_vector();
  for (size_t i = 0; i < src.size(); ++i) {
    EXPECT_EQ(back[i], bf16_to_f32(f32_to_bf16(src[i])));
    EXPECT_NEAR(back[i], src[i], std::abs(src[i]) / 256.0f);
  }
}

TEST(DType, F16RoundTrip) {
  EXPECT_EQ(f32_to_f16(1.0f).bits, 0x3c00);
  EXPECT_EQ(f32_to_f16(-2.0f).bits, 0xc000);
  EXPECT_EQ(f32_to_f16(65504.0f).bits, 0x7bff);
  EXPECT_EQ(f32_to_f16(65519.0f).bits, 0x7bff);  // below the halfway point to 65536
  EXPECT_EQ(f32_to_f16(65520.0f).bits, 0x7c00);  // halfway, ties to even = inf
  EXPECT_EQ(f32_to_f16(1e6f).bits, 0x7c00);
  EXPECT_EQ(f32_to_f16(-INFINITY).bits, 0xfc00);
  EXPECT_EQ(f32_to_f16(0.0f).bits, 0x0000);
  EXPECT_EQ(f32_to_f16(-0.0f).bits, 0x8000);
  const f16_t nan = f32_to_f16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan.bits & 0x7c00, 0x7c00);
  EXPECT_NE(nan.bits & 0x03ff, 0);
  EXPECT_TRUE(std::isnan(f16_to_f32(nan)));
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(bits_to_f32(0x7f800001u)))));
  // Round to nearest even in the normal range: 1 + 2^-11 is halfway between 1 and 1 + 2^-10 -> 1.
  EXPECT_EQ(f32_to_f16(1.0f + 0.00048828125f).bits, 0x3c00);
  EXPECT_EQ(f32_to_f16(1.0f + 3 * 0.00048828125f).bits, 0x3c02);  // halfway to odd -> up to even
  // Subnormals: smallest 2^-24 = 0x0001; 2^-25 ties to 0; 1.5 * 2^-24 ties to 2 * 2^-24.
  EXPECT_EQ(f32_to_f16(5.9604644775390625e-08f).bits, 0x0001);
  EXPECT_EQ(f32_to_f16(2.98023223876953125e-08f).bits, 0x0000);
  EXPECT_EQ(f32_to_f16(3.1e-08f).bits, 0x0001);  // just above 2^-25
  EXPECT_EQ(f32_to_f16(8.94069671630859375e-08f).bits, 0x0002);
  EXPECT_EQ(f32_to_f16(6.097555160522461e-05f).bits, 0x03ff);  // largest subnormal
  EXPECT_EQ(f32_to_f16(6.103515625e-05f).bits, 0x0400);        // smallest normal
  // Every finite half value round-trips exactly through f32.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00) continue;
    const float f = f16_to_f32(f16_t{uint16_t(h)});
    EXPECT_EQ(f32_to_f16(f).bits, h) << std::hex << h;
  }
  EXPECT_EQ(f16_to_f32(f16_t{0x0001}), 5.9604644775390625e-08f);
  EXPECT_EQ(f16_to_f32(f16_t{0x7c00}), INFINITY);
  // Tensor casts.
  Tensor t = Tensor::from_vector(std::vector<float>{0.1f, -3.0f, 70000.0f, 1e-7f}, {4});
  std::vector<float> back = t.to(DType::f16).to_float_vector();
  EXPECT_NEAR(back[0], 0.1f, 1e-4);
  EXPECT_EQ(back[1], -3.0f);
  EXPECT_EQ(back[2], INFINITY);
  EXPECT_EQ(back[3], f16_to_f32(f32_to_f16(1e-7f)));
  EXPECT_EQ(t.to(DType::f16).to(DType::bf16).to(DType::f64).dtype(), DType::f64);
}

TEST(Tensor, ShapeHelpers) {
  EXPECT_EQ(shape_str({2, 3}), "[2, 3]");
  EXPECT_EQ(shape_str({}), "[]");
  EXPECT_EQ(shape_numel({}), 1);
  EXPECT_EQ(broadcast_shapes({3, 1, 5}, {4, 1}), (Shape{3, 4, 5}));
  EXPECT_EQ(broadcast_shapes({}, {2}), (Shape{2}));
  expect_bad_input([] { broadcast_shapes({2, 3}, {4, 3}); }, {"[2, 3]", "[4, 3]"});
  EXPECT_EQ(contiguous_strides({2, 3, 4}), (Shape{12, 4, 1}));
}
