// causal_conv1d on the CPU: values against a direct formula written here and against the composed
// nn::DepthwiseCausalConv1d, float64 gradchecks (x, w, bias, x_init; silu on/off; W = 2, 3, 4; with
// seq_idx), packed documents == separate calls, chaining through x_init, f32 vs f64, input errors.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "autograd/functions.h"
#include "core/ops.h"
#include "kernels/conv1d/causal_conv1d.h"
#include "layers/conv1d.h"

using namespace ssm;

namespace {

Tensor randn(const Shape& s, uint64_t seed, DType dt = DType::f64) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> n;
  std::vector<double> v(size_t(shape_numel(s)));
  for (auto& x : v) x = n(g);
  Tensor t = Tensor::from_vector(v, s);
  return dt == DType::f64 ? t : t.to(dt);
}

Tensor seq_tensor(const std::vector<int32_t>& v, const Shape& s) { return Tensor::from_vector(v, s); }

double max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  auto x = a.to_double_vector(), y = b.to_double_vector();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

// y[b, t, d] straight from the definition: taps s = t-(W-1)+k read x (s >= 0) or x_init (s < 0), and 0
// when absent or in another document (negative s belong to the row's first document).
Tensor direct(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& x_init, const Tensor& seq,
              bool silu) {
  const int64_t B = x.size(0), L = x.size(1), D = x.size(2), W = w.size(1);
  auto xv = x.to_double_vector(), wv = w.to_double_vector();
  auto bv = bias.defined() ? bias.to_double_vector() : std::vector<double>();
  auto iv = x_init.defined() ? x_init.to_double_vector() : std::vector<double>();
  auto sv = seq.defined() ? seq.to_int_vector() : std::vector<int64_t>();
  std::vector<double> y(size_t(B * L * D));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < L; ++t)
      for (int64_t d = 0; d < D; ++d) {
        double acc = bv.empty() ? 0.0 : bv[size_t(d)];
        for (int64_t k = 0; k < W; ++k) {
          const int64_t s = t - (W - 1) + k;
          if (!sv.empty() && sv[size_t(b * L + std::max<int64_t>(s, 0))] != sv[size_t(b * L + t)]) continue;
          double xs = 0;
          if (s >= 0)
            xs = xv[size_t((b * L + s) * D + d)];
          else if (!iv.empty())
            xs = iv[size_t((b * (W - 1) + W - 1 + s) * D + d)];
          acc += wv[size_t(d * W + k)] * xs;
        }
        y[size_t((b * L + t) * D + d)] = silu ? acc / (1.0 + std::exp(-acc)) : acc;
      }
  return Tensor::from_vector(y, {B, L, D});
}

kernels::Conv1dInputs inputs(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& xi, const Tensor& seq) {
  return {x, w, b, xi, seq};
}

}  // namespace

TEST(CausalConv1d, MatchesDirectFormula) {
  const int64_t B = 2, L = 9, D = 5;
  // Row 0: documents of length 4 and 5; row 1: 1, 2, 6 (a one-step document).
  Tensor seq = seq_tensor({0, 0, 0, 0, 1, 1, 1, 1, 1, 3, 4, 4, 7, 7, 7, 7, 7, 7}, {B, L});
  for (int64_t W = 2; W <= 4; ++W)
    for (bool silu : {false, true})
      for (int variant = 0; variant < 4; ++variant) {
        SCOPED_TRACE(cat("W=", W, " silu=", silu, " variant=", variant));
        Tensor x = randn({B, L, D}, 1), w = randn({D, W}, 2), b = randn({D}, 3), xi = randn({B, W - 1, D}, 4);
        const Tensor bb = variant & 1 ? b : Tensor(), ii = variant & 2 ? xi : Tensor();
        for (const Tensor& sq : {Tensor(), seq}) {
          Tensor y = kernels::causal_conv1d_forward(inputs(x, w, bb, ii, sq), silu);
          EXPECT_LT(max_abs_diff(y, direct(x, w, bb, ii, sq, silu)), 1e-12);
        }
      }
}

TEST(CausalConv1d, MatchesComposedLayer) {
  const int64_t B = 3, L = 11, D = 6;
  for (int64_t W = 2; W <= 4; ++W) {
    SCOPED_TRACE(cat("W=", W));
    Generator gen{7};
    nn::DepthwiseCausalConv1d layer(D, W, true, gen);
    Tensor w = randn({D, W}, 10 + uint64_t(W)), b = randn({D}, 20), x = randn({B, L, D}, 30), g = randn({B, L, D}, 40);
    layer.weight().data() = w.clone();
    layer.bias()->data() = b.clone();
    ag::Variable xa(x, true), xb(x, true), wv(w, true), bv(b, true);
    ag::Variable ya = layer.forward(xa);
    ag::Variable yb = kernels::causal_conv1d(xb, wv, bv, ag::Variable(), Tensor(), false);
    EXPECT_LT(max_abs_diff(ya.data(), yb.data()), 1e-12);
    ya.backward(g);
    yb.backward(g);
    EXPECT_LT(max_abs_diff(xa.grad(), xb.grad()), 1e-12);
    EXPECT_LT(max_abs_diff(layer.weight().grad(), wv.grad()), 1e-12);
    EXPECT_LT(max_abs_diff(layer.bias()->grad(), bv.grad()), 1e-12);
  }
}

TEST(CausalConv1d, Gradcheck) {
  const int64_t B = 2, L = 7, D = 3;
  Tensor seq = seq_tensor({0, 0, 0, 1, 1, 1, 1, 5, 6, 6, 9, 9, 9, 9}, {B, L});
  for (int64_t W = 2; W <= 4; ++W)
    for (bool silu : {false, true})
      for (const Tensor& sq : {Tensor(), seq}) {
        SCOPED_TRACE(cat("W=", W, " silu=", silu, " seq_idx=", sq.defined()));
        std::string err = ag::gradcheck(
            [&](const std::vector<ag::Variable>& in) { return kernels::causal_conv1d(in[0], in[1], in[2], in[3], sq, silu); },
            {randn({B, L, D}, 51), randn({D, W}, 52), randn({D}, 53), randn({B, W - 1, D}, 54)});
        EXPECT_EQ(err, "");
        err = ag::gradcheck(
            [&](const std::vector<ag::Variable>& in) {
              return kernels::causal_conv1d(in[0], in[1], ag::Variable(), ag::Variable(), sq, silu);
            },
            {randn({B, L, D}, 55), randn({D, W}, 56)});
        EXPECT_EQ(err, "") << "(no bias, no x_init)";
      }
}

TEST(CausalConv1d, OnlySomeInputsRequireGrad) {
  Tensor x = randn({2, 5, 4}, 61), w = randn({4, 3}, 62), b = randn({4}, 63), xi = randn({2, 2, 4}, 64);
  ag::Variable xv(x, false), wv(w, true), bv(b, false), iv(xi, true);
  ag::Variable y = kernels::causal_conv1d(xv, wv, bv, iv, Tensor(), true);
  y.backward(randn({2, 5, 4}, 65));
  EXPECT_FALSE(xv.has_grad());
  EXPECT_FALSE(bv.has_grad());
  ASSERT_TRUE(wv.has_grad());
  ASSERT_TRUE(iv.has_grad());
  auto full = kernels::causal_conv1d_backward(inputs(x, w, b, xi, Tensor()), randn({2, 5, 4}, 65), true);
  EXPECT_LT(max_abs_diff(wv.grad(), full.w), 1e-12);
  EXPECT_LT(max_abs_diff(iv.grad(), full.x_init), 1e-12);
}

// Two documents packed in one row give the same outputs and gradients as two separate calls: the first
// document with x_init, the second from zeros.
TEST(CausalConv1d, PackedEqualsSeparate) {
  const int64_t L1 = 5, L2 = 6, D = 4;
  for (int64_t W = 2; W <= 4; ++W)
    for (bool silu : {false, true}) {
      SCOPED_TRACE(cat("W=", W, " silu=", silu));
      Tensor x = randn({1, L1 + L2, D}, 71), w = randn({D, W}, 72), b = randn({D}, 73), xi = randn({1, W - 1, D}, 74),
             g = randn({1, L1 + L2, D}, 75);
      std::vector<int32_t> sv(size_t(L1 + L2), 2);
      for (int64_t t = L1; t < L1 + L2; ++t) sv[size_t(t)] = 3;
      Tensor seq = seq_tensor(sv, {1, L1 + L2});
      Tensor x1 = x.narrow(1, 0, L1).contiguous(), x2 = x.narrow(1, L1, L2).contiguous();
      Tensor g1 = g.narrow(1, 0, L1).contiguous(), g2 = g.narrow(1, L1, L2).contiguous();
      Tensor y = kernels::causal_conv1d_forward(inputs(x, w, b, xi, seq), silu);
      Tensor y1 = kernels::causal_conv1d_forward(inputs(x1, w, b, xi, Tensor()), silu);
      Tensor y2 = kernels::causal_conv1d_forward(inputs(x2, w, b, Tensor(), Tensor()), silu);
      EXPECT_LT(max_abs_diff(y, cat({y1, y2}, 1)), 1e-12);
      auto gp = kernels::causal_conv1d_backward(inputs(x, w, b, xi, seq), g, silu);
      auto gs1 = kernels::causal_conv1d_backward(inputs(x1, w, b, xi, Tensor()), g1, silu);
      auto gs2 = kernels::causal_conv1d_backward(inputs(x2, w, b, Tensor(), Tensor()), g2, silu);
      EXPECT_LT(max_abs_diff(gp.x, cat({gs1.x, gs2.x}, 1)), 1e-12);
      EXPECT_LT(max_abs_diff(gp.x_init, gs1.x_init), 1e-12);
      EXPECT_LT(max_abs_diff(gp.w, add(gs1.w, gs2.w)), 1e-12);
      EXPECT_LT(max_abs_diff(gp.bias, add(gs1.bias, gs2.bias)), 1e-12);
      EXPECT_FALSE(gs2.x_init.defined());
    }
}

// conv over [0, L) == conv over [0, k) then over [k, L) with x_init = the last W-1 inputs of
// cat(x_init, x[0, k)) (the generation state), for every split point k (including k < W-1).
TEST(CausalConv1d, ChainingThroughXInit) {
  const int64_t B = 2, L = 8, D = 3;
  for (int64_t W = 2; W <= 4; ++W)
    for (int64_t k = 1; k < L; ++k) {
      SCOPED_TRACE(cat("W=", W, " k=", k));
      Tensor x = randn({B, L, D}, 81), w = randn({D, W}, 82), b = randn({D}, 83), xi = randn({B, W - 1, D}, 84);
      Tensor y = kernels::causal_conv1d_forward(inputs(x, w, b, xi, Tensor()), true);
      Tensor xa = x.narrow(1, 0, k).contiguous(), xb = x.narrow(1, k, L - k).contiguous();
      Tensor ya = kernels::causal_conv1d_forward(inputs(xa, w, b, xi, Tensor()), true);
      Tensor state = cat({xi, xa}, 1).narrow(1, k, W - 1).contiguous();
      Tensor yb = kernels::causal_conv1d_forward(inputs(xb, w, b, state, Tensor()), true);
      EXPECT_LT(max_abs_diff(y, cat({ya, yb}, 1)), 1e-12);
    }
}

TEST(CausalConv1d, F32MatchesF64) {
  const int64_t B = 3, L = 37, D = 19, W = 4;
  Tensor x = randn({B, L, D}, 91), w = randn({D, W}, 92), b = randn({D}, 93), xi = randn({B, W - 1, D}, 94),
         g = randn({B, L, D}, 95);
  std::vector<int32_t> sv(size_t(B * L));
  for (int64_t i = 0; i < B * L; ++i) sv[size_t(i)] = int32_t((i % L) / 10);
  Tensor seq = seq_tensor(sv, {B, L});
  auto f = [](const Tensor& t) { return t.to(DType::f32); };
  Tensor y64 = kernels::causal_conv1d_forward(inputs(x, w, b, xi, seq), true);
  Tensor y32 = kernels::causal_conv1d_forward(inputs(f(x), f(w), f(b), f(xi), seq), true);
  EXPECT_EQ(y32.dtype(), DType::f32);
  EXPECT_LT(max_abs_diff(y32, y64), 1e-5);
  auto g64 = kernels::causal_conv1d_backward(inputs(x, w, b, xi, seq), g, true);
  auto g32 = kernels::causal_conv1d_backward(inputs(f(x), f(w), f(b), f(xi), seq), f(g), true);
  EXPECT_EQ(g32.w.dtype(), DType::f32);
  EXPECT_LT(max_abs_diff(g32.x, g64.x), 1e-5);
  EXPECT_LT(max_abs_diff(g32.x_init, g64.x_init), 1e-5);
  EXPECT_LT(max_abs_diff(g32.w, g64.w), 1e-4);
  EXPECT_LT(max_abs_diff(g32.bias, g64.bias), 1e-4);
}

TEST(CausalConv1d, EmptySequence) {
  Tensor x = Tensor::zeros({2, 0, 3}, DType::f64), w = randn({3, 3}, 1), xi = randn({2, 2, 3}, 2);
  EXPECT_EQ(kernels::causal_conv1d_forward(inputs(x, w, Tensor(), xi, Tensor()), true).shape(), (Shape{2, 0, 3}));
  auto g = kernels::causal_conv1d_backward(inputs(x, w, Tensor(), xi, Tensor()), x, true);
  EXPECT_EQ(max_abs_diff(g.x_init, Tensor::zeros({2, 2, 3}, DType::f64)), 0.0);
  EXPECT_EQ(max_abs_diff(g.w, Tensor::zeros({3, 3}, DType::f64)), 0.0);
}

TEST(CausalConv1d, BadInputsNameTheTensors) {
  auto expect_bad = [](auto&& fn, const std::string& what) {
    try {
      fn();
      ADD_FAILURE() << "no error for " << what;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::BadInput);
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  Tensor x = Tensor::zeros({2, 5, 4}), w = Tensor::zeros({4, 3}), b = Tensor::zeros({4});
  auto fwd = [](const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& xi, const Tensor& s) {
    return kernels::causal_conv1d_forward(inputs(x, w, b, xi, s), false);
  };
  expect_bad([&] { fwd(Tensor::zeros({5, 4}), w, b, Tensor(), Tensor()); }, "causal_conv1d: x must be (Bt, L, D), got [5, 4]");
  expect_bad([&] { fwd(x, Tensor::zeros({5, 3}), b, Tensor(), Tensor()); },
             "causal_conv1d: w must be (D, W) = [4, W] for x [2, 5, 4], got [5, 3]");
  expect_bad([&] { fwd(x, Tensor::zeros({4, 5}), b, Tensor(), Tensor()); }, "width W = 5");
  expect_bad([&] { fwd(x, Tensor::zeros({4, 1}), b, Tensor(), Tensor()); }, "width W = 1");
  expect_bad([&] { fwd(x, w, Tensor::zeros({3}), Tensor(), Tensor()); }, "causal_conv1d: bias must be (D) = [4]");
  expect_bad([&] { fwd(x, w, b, Tensor::zeros({2, 3, 4}), Tensor()); },
             "causal_conv1d: x_init must be (Bt, W-1, D) = [2, 2, 4] for x [2, 5, 4] and w [4, 3], got [2, 3, 4]");
  expect_bad([&] { fwd(x, w, b, Tensor(), Tensor::zeros({2, 4}, DType::i32)); },
             "causal_conv1d: seq_idx must be (Bt, L) = [2, 5]");
  expect_bad([&] { fwd(x, w, b, Tensor(), Tensor::zeros({2, 5}, DType::i64)); }, "seq_idx must be i32, got i64");
  expect_bad([&] { fwd(x, Tensor::zeros({4, 3}, DType::f64), b, Tensor(), Tensor()); }, "w is f64 but x is f32");
  expect_bad([&] { fwd(x, w, Tensor::zeros({4}, DType::f64), Tensor(), Tensor()); }, "bias is f64 but x is f32");
  expect_bad([&] { fwd(x, w, b, Tensor::zeros({2, 2, 4}, DType::f64), Tensor()); }, "x_init is f64 but x is f32");
  expect_bad([&] { fwd(Tensor::zeros({2, 5, 4}, DType::i64), w, b, Tensor(), Tensor()); }, "x dtype i64");
  expect_bad([&] { fwd(Tensor::zeros({2, 5, 4}).to(DType::bf16), w, b, Tensor(), Tensor()); }, "x dtype bf16");
  expect_bad([&] { kernels::causal_conv1d_backward(inputs(x, w, b, Tensor(), Tensor()), Tensor::zeros({2, 4, 4}), false); },
             "causal_conv1d backward: grad_y [2, 4, 4] must match x [2, 5, 4]");
}
