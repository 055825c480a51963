// Elementwise ops vs naive double-precision loops at odd shapes, with broadcasting and strided inputs.
#include <gtest/gtest.h>

#include <cmath>

#include "core/ops.h"
#include "test_util.h"

using namespace ssm;
using namespace ssm::test;

namespace {

double ref_unary(UnaryOp op, double x) {
  const double s = 1.0 / (1.0 + std::exp(-x));
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::Exp: return std::exp(x);
    case UnaryOp::Log: return std::log(x);
    case UnaryOp::Sqrt: return std::sqrt(x);
    case UnaryOp::Rsqrt: return 1.0 / std::sqrt(x);
    case UnaryOp::Abs: return std::abs(x);
    case UnaryOp::Square: return x * x;
    case UnaryOp::Reciprocal: return 1.0 / x;
    case UnaryOp::Sin: return std::sin(x);
    case UnaryOp::Cos: return std::cos(x);
    case UnaryOp::Tanh: return std::tanh(x);
    case UnaryOp::Sigmoid: return s;
    case UnaryOp::Relu: return x > 0 ? x : 0;
    case UnaryOp::Silu: return x * s;
    case UnaryOp::Gelu: return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    case UnaryOp::Softplus: return x > 20 ? x : std::log(1 + std::exp(x));
  }
  return 0;
}

bool positive_domain(UnaryOp op) {
  return op == UnaryOp::Log || op == UnaryOp::Sqrt || op == UnaryOp::Rsqrt || op == UnaryOp::Reciprocal;
}

const std::vector<UnaryOp> kUnary = {UnaryOp::Neg,  UnaryOp::Exp,     UnaryOp::Log,  UnaryOp::Sqrt,
                                     UnaryOp::Rsqrt, UnaryOp::Abs,    UnaryOp::Square, UnaryOp::Reciprocal,
                                     UnaryOp::Sin,  UnaryOp::Cos,     UnaryOp::Tanh, UnaryOp::Sigmoid,
                                     UnaryOp::Relu, UnaryOp::Silu,    UnaryOp::Gelu, UnaryOp::Softplus};

}  // namespace

TEST(Elementwise, UnaryMatchesNaive) {
  for (DType dt : {DType::f32, DType::f64}) {
    for (UnaryOp op : kUnary) {
      const bool pos = positive_domain(op);
      // A permuted (non-contiguous) input and a large contiguous one (parallel path).
      Tensor base = rand_t({5, 3, 7}, 10 + int(op), dt, pos ? 0.3 : -3.0, pos ? 3.0 : 3.0);
      Tensor x = base.permute({2, 0, 1});
      Tensor y = unary(op, x);
      EXPECT_EQ(y.shape(), (Shape{7, 5, 3}));
      EXPECT_EQ(y.dtype(), dt);
      std::vector<double> xv = x.to_double_vector(), want(xv.size());
      for (size_t i = 0; i < xv.size(); ++i) want[i] = ref_unary(op, xv[i]);
      expect_near_vec(y.to_double_vector(), want, dt == DType::f32 ? 2e-6 : 1e-13, "unary");

      Tensor big = rand_t({40000}, 20 + int(op), dt, pos ? 0.3 : -25.0, pos ? 3.0 : 25.0);
      std::vector<double> bv = big.to_double_vector(), bw(bv.size());
      for (size_t i = 0; i < bv.size(); ++i) bw[i] = ref_unary(op, bv[i]);
      expect_near_vec(unary(op, big).to_double_vector(), bw, dt == DType::f32 ? 2e-6 : 1e-13, "unary big");
    }
  }
}

TEST(Elementwise, UnaryHalfAndErrors) {
  Tensor x = rand_t({9}, 5).to(DType::bf16);
  Tensor y = unary(UnaryOp::Exp, x);
  EXPECT_EQ(y.dtype(), DType::bf16);
  std::vector<float> xv = x.to_float_vector(), yv = y.to_float_vector();
  for (size_t i = 0; i < xv.size(); ++i) EXPECT_EQ(yv[i], bf16_to_f32(f32_to_bf16(std::exp(xv[i]))));
  expect_bad_input([] { unary(UnaryOp::Exp, Tensor::zeros({2, 3}, DType::i64)); }, {"Exp", "i64", "[2, 3]"});
}

// unary_backward = grad * op'(x), checked against central differences in f64.
TEST(Elementwise, UnaryBackwardMatchesFiniteDifferences) {
  for (UnaryOp op : kUnary) {
    const bool pos = positive_domain(op);
    Tensor x = rand_t({3, 7}, 30 + int(op), DType::f64, pos ? 0.5 : -2.0, pos ? 2.0 : 2.0);
    Tensor g = rand_t({3, 7}, 40 + int(op), DType::f64);
    std::vector<double> xv = x.to_double_vector(), gv = g.to_double_vector(), want(xv.size());
    const double h = 1e-6;
    for (size_t i = 0; i < xv.size(); ++i) {
      if ((op == UnaryOp::Relu || op == UnaryOp::Abs) && std::abs(xv[i]) < 1e-3) xv[i] = 0.5;
      want[i] = gv[i] * (ref_unary(op, xv[i] + h) - ref_unary(op, xv[i] - h)) / (2 * h);
    }
    x = Tensor::from_vector(xv, {3, 7});
    expect_near_vec(unary_backward(op, g, x).to_double_vector(), want, 1e-6, "unary_backward");
  }
  expect_bad_input([] { unary_backward(UnaryOp::Exp, Tensor::zeros({2}), Tensor::zeros({3})); }, {"[2]", "[3]"});
}

namespace {

double ref_binary(BinaryOp op, double a, double b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
    case BinaryOp::Max: return std::max(a, b);
    case BinaryOp::Min: return std::min(a, b);
    case BinaryOp::Pow: return std::pow(a, b);
    case BinaryOp::Eq: return a == b;
    case BinaryOp::Ne: return a != b;
    case BinaryOp::Lt: return a < b;
    case BinaryOp::Le: return a <= b;
    case BinaryOp::Gt: return a > b;
    case BinaryOp::Ge: return a >= b;
  }
  return 0;
}

const std::vector<BinaryOp> kBinary = {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Max,
                                       BinaryOp::Min, BinaryOp::Pow, BinaryOp::Eq,  BinaryOp::Ne,  BinaryOp::Lt,
                                       BinaryOp::Le,  BinaryOp::Gt,  BinaryOp::Ge};

// Reference of a op b with broadcasting, in double.
std::vector<double> ref_broadcast(BinaryOp op, const Tensor& a, const Tensor& b, Shape* out_shape) {
  const Shape s = broadcast_shapes(a.shape(), b.shape());
  *out_shape = s;
  std::vector<double> av = a.to_double_vector(), bv = b.to_double_vector(), out(size_t(shape_numel(s)));
  for (int64_t i = 0; i < int64_t(out.size()); ++i) {
    const auto idx = unravel(i, s);
    out[i] = ref_binary(op, av[bcast_index(idx, a.shape())], bv[bcast_index(idx, b.shape())]);
  }
  return out;
}

bool is_cmp(BinaryOp op) { return int(op) >= int(BinaryOp::Eq); }

}  // namespace

TEST(Elementwise, BinaryBroadcastingMatchesNaive) {
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{3, 5}, {3, 5}}, {{3, 1, 5}, {4, 1}}, {{1}, {2, 3}}, {{2, 3, 7}, {}}, {{}, {5}}, {{7, 1}, {1, 9}},
      {{200, 1, 65}, {1, 3, 65}}};  // the last one is large enough for the parallel path
  for (DType dt : {DType::f32, DType::f64}) {
    for (BinaryOp op : kBinary) {
      for (size_t c = 0; c < cases.size(); ++c) {
        const bool pow = op == BinaryOp::Pow;
        Tensor a = rand_t(cases[c].first, 100 + uint32_t(c), dt, pow ? 0.5 : -2, 2);
        Tensor b = rand_t(cases[c].second, 200 + uint32_t(c), dt, pow ? -2 : 0.25, 2);
        if (is_cmp(op) && c == 0) b = a.clone();  // exercise equality
        Shape s;
        std::vector<double> want = ref_broadcast(op, a, b, &s);
        Tensor y = binary(op, a, b);
        EXPECT_EQ(y.shape(), s);
        EXPECT_EQ(y.dtype(), is_cmp(op) ? DType::u8 : dt);
        // f32 results are compared against the double result of the f32 inputs.
        expect_near_vec(y.to_double_vector(), want, dt == DType::f32 ? 1e-6 : 1e-14,
                        cat("binary op ", int(op), " case ", c));
      }
    }
  }
}

TEST(Elementwise, BinaryStridedInputs) {
  Tensor a = rand_t({6, 5}, 1).transpose(0, 1);          // (5, 6), non-contiguous
  Tensor b = rand_t({5, 12}, 2).narrow(1, 3, 6);         // (5, 6), offset view
  Shape s;
  std::vector<double> want = ref_broadcast(BinaryOp::Mul, a, b, &s);
  expect_near_vec(mul(a, b).to_double_vector(), want, 1e-6);
  want = ref_broadcast(BinaryOp::Sub, b, a, &s);
  expect_near_vec(sub(b, a).to_double_vector(), want, 1e-6);
}

TEST(Elementwise, IntegerOps) {
  Tensor a = Tensor::from_vector(std::vector<int64_t>{1, -2, 3, 40}, {2, 2});
  Tensor b = Tensor::from_vector(std::vector<int64_t>{5, 6}, {2});
  EXPECT_EQ(add(a, b).to_int_vector(), (std::vector<int64_t>{6, 4, 8, 46}));
  EXPECT_EQ(sub(a, b).to_int_vector(), (std::vector<int64_t>{-4, -8, -2, 34}));
  EXPECT_EQ(mul(a, b).to_int_vector(), (std::vector<int64_t>{5, -12, 15, 240}));
  EXPECT_EQ(binary(BinaryOp::Gt, a, b).to_int_vector(), (std::vector<int64_t>{0, 0, 0, 1}));
  Tensor ai = a.to(DType::i32), bi = b.to(DType::i32);
  EXPECT_EQ(add(ai, bi).dtype(), DType::i32);
  EXPECT_EQ(add(ai, bi).to_int_vector(), (std::vector<int64_t>{6, 4, 8, 46}));
  EXPECT_EQ(mul(ai, 3.0).to_int_vector(), (std::vector<int64_t>{3, -6, 9, 120}));
  expect_bad_input([&] { div(a, b); }, {"Div", "integer"});
}

TEST(Elementwise, ScalarOpsAndErrors) {
  Tensor a = rand_t({3, 4}, 7);
  std::vector<double> av = a.to_double_vector();
  std::vector<double> want(av.size());
  for (size_t i = 0; i < av.size(); ++i) want[i] = av[i] * 2.5;
  expect_near_vec(mul(a, 2.5).to_double_vector(), want, 1e-7);
  for (size_t i = 0; i < av.size(); ++i) want[i] = av[i] > 0.5;
  expect_near_vec(binary_scalar(BinaryOp::Gt, a, 0.5).to_double_vector(), want, 0);
  for (size_t i = 0; i < av.size(); ++i) want[i] = std::pow(av[i] * av[i], 1.5);
  expect_near_vec(binary_scalar(BinaryOp::Pow, mul(a, a), 1.5).to_double_vector(), want, 1e-5);
  expect_bad_input([] { add(Tensor::zeros({2, 3}), Tensor::zeros({4, 3})); }, {"Add", "[2, 3]", "[4, 3]"});
  expect_bad_input([] { add(Tensor::zeros({2}), Tensor::zeros({2}, DType::f64)); }, {"Add", "f32", "f64"});
  Tensor h = binary(BinaryOp::Mul, a.to(DType::f16), a.to(DType::f16));
  EXPECT_EQ(h.dtype(), DType::f16);
}

TEST(Elementwise, InPlaceOps) {
  Tensor base = rand_t({4, 10}, 8);
  Tensor a = base.narrow(1, 2, 5);  // strided view (4, 5): writes go to base
  Tensor b = rand_t({5}, 9);
  std::vector<double> before = base.to_double_vector(), bv = b.to_double_vector();
  binary_(BinaryOp::Add, a, b);
  std::vector<double> after = base.to_double_vector();
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j < 10; ++j) {
      const double w = before[i * 10 + j] + ((j >= 2 && j < 7) ? bv[j - 2] : 0.0);
      EXPECT_NEAR(after[i * 10 + j], w, 1e-6);
    }
  expect_bad_input([&] { binary_(BinaryOp::Add, b, a); }, {"[4, 5]", "[5]"});
  expect_bad_input([&] { binary_(BinaryOp::Lt, a, b); }, {"in place"});

  // axpby_: a = alpha a + beta b, b broadcast.
  for (double alpha : {1.0, 0.9}) {
    Tensor x = rand_t({3, 50000}, 11, DType::f64);
    Tensor y = rand_t({50000}, 12, DType::f64);
    std::vector<double> xv = x.to_double_vector(), yv = y.to_double_vector();
    axpby_(x, alpha, y, -0.25);
    std::vector<double> got = x.to_double_vector();
    for (size_t i = 0; i < xv.size(); ++i) ASSERT_NEAR(got[i], alpha * xv[i] - 0.25 * yv[i % 50000], 1e-12);
  }
  Tensor hb = Tensor::ones({4}, DType::bf16);
  axpby_(hb, 2.0, Tensor::ones({4}, DType::bf16), 1.0);
  EXPECT_EQ(hb.to_float_vector(), (std::vector<float>{3, 3, 3, 3}));
  Tensor ff = Tensor::ones({2});
  expect_bad_input([&] { axpby_(ff, 1.0, Tensor::ones({3}), 1.0); }, {"axpby_", "[3]", "[2]"});
}

TEST(Elementwise, Where) {
  Tensor c = Tensor::from_vector(std::vector<uint8_t>{1, 0, 0, 1, 1, 0}, {2, 3});
  Tensor a = rand_t({3}, 1), b = rand_t({2, 1}, 2);
  std::vector<double> av = a.to_double_vector(), bv = b.to_double_vector();
  std::vector<double> got = where(c, a, b).to_double_vector();
  const std::vector<uint8_t> cv = {1, 0, 0, 1, 1, 0};
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 3; ++j) EXPECT_EQ(got[i * 3 + j], cv[i * 3 + j] ? av[j] : bv[i]);
  expect_bad_input([&] { where(a, a, a); }, {"where", "u8"});
  expect_bad_input([&] { where(c, Tensor::zeros({4}), a); }, {"where", "[4]"});
}
