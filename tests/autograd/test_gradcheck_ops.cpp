// Every differentiable op in autograd/functions.h against float64 finite differences.
#include "test_util.h"

namespace ssm::ag {
namespace {
using testing::Fn;
using testing::rnd;
using testing::rnd_away0;

#define EXPECT_GRADCHECK(fn, ...) EXPECT_EQ(gradcheck(fn, __VA_ARGS__), "")

// ---------------- elementwise ----------------
TEST(Gradcheck, BinaryOpsSameShape) {
  Tensor a = rnd({3, 4}, 1), b = rnd_away0({3, 4}, 2);
  EXPECT_GRADCHECK([](const std::vector<Variable>& v) { return add(v[0], v[1]); }, {a, b});
  EXPECT_GRADCHECK([](const std::vector<Variable>& v) { return sub(v[0], v[1]); }, {a, b});
  EXPECT_GRADCHECK([](const std::vector<Variable>& v) { return mul(v[0], v[1]); }, {a, b});
  EXPECT_GRADCHECK([](const std::vector<Variable>& v) { return div(v[0], v[1]); }, {a, b});
}

TEST(Gradcheck, BinaryOpsBroadcast) {
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{3, 1, 5}, {4, 5}}, {{4, 5}, {3, 1, 5}}, {{2, 3}, {}}, {{}, {2, 3}}, {{2, 1}, {1, 3}}, {{5}, {2, 3, 5}}};
  const std::vector<std::pair<const char*, Fn>> ops = {
      {"add", [](const std::vector<Variable>& v) { return add(v[0], v[1]); }},
      {"sub", [](const std::vector<Variable>& v) { return sub(v[0], v[1]); }},
      {"mul", [](const std::vector<Variable>& v) { return mul(v[0], v[1]); }},
      {"div", [](const std::vector<Variable>& v) { return div(v[0], v[1]); }},
  };
  uint64_t seed = 10;
  for (const auto& [sa, sb] : cases)
    for (const auto& [name, fn] : ops) {
      Tensor a = rnd(sa, seed++), b = rnd_away0(sb, seed++);
      EXPECT_GRADCHECK(fn, {a, b}) << name << " " << shape_str(sa) << " " << shape_str(sb);
    }
}

TEST(Gradcheck, ScalarOps) {
  Tensor a = rnd({2, 3}, 3);
  EXPECT_GRADCHECK([](const std::vector<Variable>& v) { return add(v[0], 2.5); }, {a});
  EXPECT_GRADCHECK([](const std::vector<Variable>& v) { return mul(v[0], -1.5); }, {a});
  EXPECT_GRADCHECK([](const std::vector<Variable>& v) { return neg(v[0]); }, {a});
}

TEST(Gradcheck, EveryUnaryOp) {
  struct Case {
    UnaryOp op;
    const char* name;
    Tensor x;
  };
  const Shape s = {3, 7};
  Tensor any = rnd(s, 4, -2.0, 2.0);
  Tensor pos = rnd(s, 5, 0.3, 2.0);
  Tensor away0 = rnd_away0(s, 6, 0.2, 2.0);
  const std::vector<Case> cases = {
      {UnaryOp::Neg, "neg", any},         {UnaryOp::Exp, "exp", any},
      {UnaryOp::Log, "log", pos},         {UnaryOp::Sqrt, "sqrt", pos},
      {UnaryOp::Rsqrt, "rsqrt", pos},     {UnaryOp::Abs, "abs", away0},
      {UnaryOp::Square, "square", any},   {UnaryOp::Reciprocal, "reciprocal", away0},
      {UnaryOp::Sin, "sin", any},         {UnaryOp::Cos, "cos", any},
      {UnaryOp::Tanh, "tanh", any},       {UnaryOp::Sigmoid, "sigmoid", any},
      {UnaryOp::Relu, "relu", away0},     {UnaryOp::Silu, "silu", any},
      {UnaryOp::Gelu, "gelu", any},       {UnaryOp::Softplus, "softplus", any},
      {UnaryOp::Softplus, "softplus(large)", rnd(s, 7, 21.0, 30.0)},
      {UnaryOp::Softplus, "softplus(very negative)", rnd(s, 8, -30.0, -21.0)},
  };
  for (const auto& c : cases) {
    UnaryOp op = c.op;
    EXPECT_GRADCHECK([op](const std::vector<Variable>& v) { return unary(op, v[0]); }, {c.x}) << c.name;
  }
  // The inline helpers go through unary().
  EXPECT_GRADCHECK([](const std::vector<Variable>& v) { return gelu(silu(sigmoid(exp(v[0])))); }, {any});
}

TEST(Gradcheck, Pow) {
  Tensor pos = rnd({2, 5}, 9, 0.3, 2.0);
  Tensor any = rnd({2, 5}, 10);
  for (double p : {2.0, 3.0, 1.0, 0.0})
    EXPECT_GRADCHECK([p](const std::vector<Variable>& v) { return pow(v[0], p); }, {any}) << "p = " << p;
  for (double p : {0.5, -1.5, 2.7})
    EXPECT_GRADCHECK([p](const std::vector<Variable>& v) { return pow(v[0], p); }, {pos}) << "p = " << p;
}

TEST(Gradcheck, Where) {
  Tensor cond = Tensor::from_vector(std::vector<uint8_t>{1, 0, 1, 1, 0, 0, 0, 1, 1, 0, 1, 0}, {3, 4});
  Tensor a = rnd({3, 4}, 11), b = rnd({3, 4}, 12);
  EXPECT_GRADCHECK([cond](const std::vector<Variable>& v) { return where(cond, v[0], v[1]); }, {a, b});
  // Broadcasting: cond (3, 1), a (4), b (3, 4) -> (3, 4).
  Tensor c31 = Tensor::from_vector(std::vector<uint8_t>{1, 0, 1}, {3, 1});
  EXPECT_GRADCHECK([c31](const std::vector<Variable>& v) { return where(c31, v[0], v[1]); }, {rnd({4}, 13), b});
  EXPECT_GRADCHECK([cond](const std::vector<Variable>& v) { return where(cond, v[0], v[1]); },
                   {rnd({1, 4}, 14), rnd({3, 1}, 15)});
}

// ---------------- matmul ----------------
TEST(Gradcheck, MatmulTransCombos) {
  const int64_t M = 3, K = 4, N = 5;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      Tensor a = rnd(ta ? Shape{K, M} : Shape{M, K}, 20 + ta);
      Tensor b = rnd(tb ? Shape{N, K} : Shape{K, N}, 22 + tb);
      EXPECT_GRADCHECK([ta, tb](const std::vector<Variable>& v) { return matmul(v[0], v[1], ta, tb); }, {a, b})
          << "trans_a " << ta << " trans_b " << tb;
    }
}

TEST(Gradcheck, MatmulBatched) {
  const int64_t M = 3, K = 2, N = 4;
  struct Case {
    Shape a_batch, b_batch;
  };
  const std::vector<Case> cases = {
      {{2}, {2}},        // plain batch
      {{2, 3}, {}},      // 2-D B shared by a (2, 3) batch (Linear weight)
      {{}, {2}},         // 2-D A shared by a batched B
      {{2, 1}, {3}},     // batch dims broadcast both ways: (2, 1) x (3) -> (2, 3)
      {{1}, {3}},        // size-1 batch broadcast
  };
  uint64_t seed = 30;
  for (const auto& c : cases)
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        Shape sa = c.a_batch, sb = c.b_batch;
        for (int64_t d : ta ? Shape{K, M} : Shape{M, K}) sa.push_back(d);
        for (int64_t d : tb ? Shape{N, K} : Shape{K, N}) sb.push_back(d);
        EXPECT_GRADCHECK([ta, tb](const std::vector<Variable>& v) { return matmul(v[0], v[1], ta, tb); },
                         {rnd(sa, seed++), rnd(sb, seed++)})
            << shape_str(sa) << " x " << shape_str(sb) << " trans_a " << ta << " trans_b " << tb;
      }
}

TEST(Gradcheck, MatmulOnViews) {
  // Non-contiguous operands (a transposed view; a batched weight sharing path with a permuted input).
  Tensor a = rnd({2, 4, 3}, 40), w = rnd({4, 5}, 41);
  EXPECT_GRADCHECK([](const std::vector<Variable>& v) { return matmul(transpose(v[0], 1, 2), v[1]); }, {a, w});
}

// One input feeding several products and another op: the later products add into its gradient in place
// (Engine::add_grad_product); a 3-D input (its batch folded into the GEMM's rows) and a leaf.
TEST(Gradcheck, MatmulSharedInputAccumulates) {
  Tensor x = rnd({2, 3, 4}, 42), w1 = rnd({5, 4}, 43), w2 = rnd({6, 4}, 44), w3 = rnd({4, 3}, 45);
  EXPECT_GRADCHECK(
      [](const std::vector<Variable>& v) {
        const Variable h = mul(v[0], v[0]);  // a non-leaf used by three products and a sum
        const Variable a = sum(matmul(h, v[1], false, true)), b = sum(matmul(h, v[2], false, true));
        return add(add(a, b), add(sum(matmul(h, v[3])), sum(h)));
      },
      {x, w1, w2, w3});
  // The leaf itself, twice.
  EXPECT_GRADCHECK(
      [](const std::vector<Variable>& v) { return add(sum(matmul(v[0], v[1], false, true)), sum(matmul(v[0], v[2], false, true))); },
      {x, w1, w2});
}

// A first gradient contribution that is a broadcast view (sum's backward: an expand of the scalar) held by nothing
// else: a later contribution must not be added into it in place (one element would be written many times); and
// the other order, where the view is added into a gradient that may be updated in place.
TEST(Gradcheck, AccumulationBesideBroadcastGradient) {
  Tensor x = rnd({3, 4}, 46), w = rnd({3, 4}, 47), m = rnd({5, 4}, 48);
  EXPECT_GRADCHECK(
      [](const std::vector<Variable>& v) {
        const Variable h = mul(v[0], v[0]);
        const Variable p = sum(mul(h, v[1]));
        const Variable s = sum(h);  // its gradient is made by mul(s, s)'s backward: the view's storage is its own
        return add(p, mul(s, s));   // sum(h)'s view reaches h first, mul(h, w)'s contribution second
      },
      {x, w});
  EXPECT_GRADCHECK(
      [](const std::vector<Variable>& v) {
        const Variable h = mul(v[0], v[0]);
        return add(sum(h), add(sum(mul(h, v[1])), sum(matmul(h, v[2], false, true))));
      },
      {x, w, m});
}

// ---------------- reductions ----------------
TEST(Gradcheck, SumAndMean) {
  Tensor x = rnd({2, 3, 4}, 50);
  const std::vector<std::vector<int64_t>> dim_sets = {{}, {0}, {1}, {-1}, {0, 2}, {-1, 0}, {0, 1, 2}};
  for (const auto& dims : dim_sets)
    for (bool keep : {false, true}) {
      EXPECT_GRADCHECK([dims, keep](const std::vector<Variable>& v) { return sum(v[0], dims, keep); }, {x})
          << "sum dims " << shape_str(dims) << " keepdim " << keep;
      EXPECT_GRADCHECK([dims, keep](const std::vector<Variable>& v) { return mean(v[0], dims, keep); }, {x})
          << "mean dims " << shape_str(dims) << " keepdim " << keep;
    }
  Tensor s = rnd({}, 51);
  EXPECT_GRADCHECK([](const std::vector<Variable>& v) { return sum(v[0]); }, {s});
}

TEST(Gradcheck, SoftmaxAndLogSoftmax) {
  Tensor x = rnd({3, 4, 5}, 60, -2.0, 2.0);
  for (int64_t dim : {0, 1, -1}) {
    EXPECT_GRADCHECK([dim](const std::vector<Variable>& v) { return softmax(v[0], dim); }, {x}) << "dim " << dim;
    EXPECT_GRADCHECK([dim](const std::vector<Variable>& v) { return log_softmax(v[0], dim); }, {x}) << "dim " << dim;
  }
}

TEST(Gradcheck, CrossEntropy) {
  Tensor logits = rnd({5, 4}, 70, -2.0, 2.0);
  Tensor t64 = Tensor::from_vector(std::vector<int64_t>{0, 3, -100, 1, 3}, {5});  // row 2 ignored
  EXPECT_GRADCHECK([t64](const std::vector<Variable>& v) { return cross_entropy(v[0], t64); }, {logits});
  Tensor t32 = Tensor::from_vector(std::vector<int32_t>{2, 7, 1, 7, 0}, {5});  // ignore_index 7
  EXPECT_GRADCHECK([t32](const std::vector<Variable>& v) { return cross_entropy(v[0], t32, 7); }, {logits});
  // The loss scaled downstream (the seed gradient is not 1).
  EXPECT_GRADCHECK([t64](const std::vector<Variable>& v) { return mul(cross_entropy(v[0], t64), 3.0); }, {logits});
  // Every row ignored: loss 0, gradient 0.
  Tensor none = Tensor::from_vector(std::vector<int64_t>{-100, -100, -100, -100, -100}, {5});
  EXPECT_GRADCHECK([none](const std::vector<Variable>& v) { return cross_entropy(v[0], none); }, {logits});
}

// ---------------- views, cat, split, indexing ----------------
TEST(Gradcheck, Views) {
  Tensor x = rnd({2, 3, 4}, 80);
  EXPECT_GRADCHECK([](const std::vector<Variable>& v) { return reshape(v[0], {4, -1}); }, {x});
  EXPECT_GRADCHECK([](const std::vector<Variable>& v) { return reshape(transpose(v[0], 0, 2), {-1}); }, {x});
  EXPECT_GRADCHECK([](const std::vector<Variable>& v) { return permute(v[0], {2, 0, 1}); }, {x});
  EXPECT_GRADCHECK([](const std::vector<Variable>& v) { return permute(v[0], {-1, 1, 0}); }, {x});
  EXPECT_GRADCHECK([](const std::vector<Variable>& v) { return transpose(v[0], 0, -1); }, {x});
  EXPECT_GRADCHECK([](const std::vector<Variable>& v) { return narrow(v[0], 2, 1, 2); }, {x});
  EXPECT_GRADCHECK([](const std::vector<Variable>& v) { return narrow(v[0], -2, 0, 1); }, {x});
  EXPECT_GRADCHECK([](const std::vector<Variable>& v) { return select(v[0], 1, 2); }, {x});
  EXPECT_GRADCHECK([](const std::vector<Variable>& v) { return select(v[0], -1, -1); }, {x});
  EXPECT_GRADCHECK([](const std::vector<Variable>& v) { return contiguous(permute(v[0], {1, 2, 0})); }, {x});
  EXPECT_GRADCHECK([](const std::vector<Variable>& v) { return contiguous(v[0]); }, {x});
  Tensor col = rnd({3, 1}, 81);
  EXPECT_GRADCHECK([](const std::vector<Variable>& v) { return expand(v[0], {2, 3, 4}); }, {col});
}

TEST(Gradcheck, SlicesOfOneInputAccumulate) {
  // Several narrow/select outputs of the same x, each weighted: the gradient pieces land in place.
  Tensor x = rnd({4, 6}, 90);
  EXPECT_GRADCHECK(
      [](const std::vector<Variable>& v) {
        Variable a = narrow(v[0], 1, 0, 3), b = narrow(v[0], 1, 2, 4);  // overlapping columns 2
        Variable r = select(v[0], 0, 1);
        return add(add(sum(mul(a, a), {1}), sum(b, {1})), sum(mul(r, 2.0)));
      },
      {x});
  // A scan-like loop over select().
  EXPECT_GRADCHECK(
      [](const std::vector<Variable>& v) {
        Variable h = select(v[0], 1, 0);
        for (int64_t t = 1; t < 6; ++t) h = add(mul(h, select(v[0], 1, t)), select(v[0], 1, t));
        return h;
      },
      {x});
}

TEST(Gradcheck, CatAndSplit) {
  Tensor a = rnd({2, 3}, 100), b = rnd({2, 1}, 101), c = rnd({2, 4}, 102);
  EXPECT_GRADCHECK([](const std::vector<Variable>& v) { return cat({v[0], v[1], v[2]}, 1); }, {a, b, c});
  EXPECT_GRADCHECK([](const std::vector<Variable>& v) { return cat({v[0], v[1]}, -1); }, {a, b});
  Tensor d = rnd({1, 3}, 103);
  EXPECT_GRADCHECK([](const std::vector<Variable>& v) { return cat({v[0], v[1], v[0]}, 0); }, {a, d});
  // One input does not require grad (a constant in the middle).
  Tensor k = rnd({2, 2}, 104);
  EXPECT_GRADCHECK(
      [k](const std::vector<Variable>& v) { return cat({v[0], Variable(k), v[1]}, 1); }, {a, c});

  Tensor x = rnd({3, 6}, 105);
  EXPECT_GRADCHECK(
      [](const std::vector<Variable>& v) {
        auto parts = split(v[0], {1, 2, 3}, 1);
        // Recombine with different weights and out of order so each piece's gradient is distinct.
        return cat({mul(parts[2], 3.0), parts[0], mul(parts[1], parts[1])}, 1);
      },
      {x});
  EXPECT_GRADCHECK(
      [](const std::vector<Variable>& v) {
        auto parts = split(v[0], {2, 1}, 0);
        return mul(sum(parts[0], {0}), parts[1]);  // only some pieces used with a product
      },
      {x});
  EXPECT_GRADCHECK([](const std::vector<Variable>& v) { return split(v[0], {4, 2}, -1)[1]; }, {x});  // one piece
}

TEST(Gradcheck, IndexSelect) {
  Tensor x = rnd({5, 3}, 110);
  Tensor idx = Tensor::from_vector(std::vector<int64_t>{4, 0, 4, 2, 4}, {5});  // repeats
  EXPECT_GRADCHECK([idx](const std::vector<Variable>& v) { return index_select(v[0], 0, idx); }, {x});
  Tensor idx32 = Tensor::from_vector(std::vector<int32_t>{2, 2, 1, 0}, {4});
  EXPECT_GRADCHECK([idx32](const std::vector<Variable>& v) { return index_select(v[0], 1, idx32); }, {x});
  EXPECT_GRADCHECK([idx](const std::vector<Variable>& v) { return index_select(v[0], -2, idx); }, {x});
}

// linear_rows: rows of a weight as a Linear's product; the weight's gradient added into its rows.
TEST(Gradcheck, LinearRows) {
  Tensor x = rnd({2, 3, 4}, 46), w = rnd({7, 4}, 47);
  EXPECT_GRADCHECK([](const std::vector<Variable>& v) { return linear_rows(v[0], v[1], 2, 3); }, {x, w});
  EXPECT_GRADCHECK([](const std::vector<Variable>& v) { return linear_rows(v[0], v[1], 0, 7); }, {x, w});  // all
  // Two row blocks of one weight (in_proj's x and z halves) and a third product of all its rows.
  EXPECT_GRADCHECK(
      [](const std::vector<Variable>& v) {
        Variable a = linear_rows(v[0], v[1], 0, 3), b = linear_rows(v[0], v[1], 3, 4);
        return add(sum(mul(a, a)), add(sum(b), sum(linear_rows(v[0], v[1], 0, 7))));
      },
      {x, w});
}

// A bf16 input and an f32 weight (autocast): the same output and input gradient as casting the rows and taking
// the product, and the weight's gradient in f32 without a bf16 rounding (the GEMM's f32 sums, within f32 error
// of the product in f32 of the same bf16 values), the rows it does not use left zero.
TEST(LinearRows, Bf16InputF32WeightGradientStaysF32) {
  const Tensor xt = rnd({3, 5, 8}, 48).to(DType::bf16), wt = rnd({6, 8}, 49).to(DType::f32);
  const Tensor gt = rnd({3, 5, 2}, 50).to(DType::bf16);
  Variable x(xt, true), w(wt, true);
  Variable y = linear_rows(x, w, 4, 2);
  ASSERT_EQ(y.dtype(), DType::bf16);
  y.backward(gt);
  ASSERT_EQ(w.grad().dtype(), DType::f32);

  Variable x2(xt, true), w2(wt, true);
  Variable y2 = matmul(x2, cast(narrow(w2, 0, 4, 2), DType::bf16), false, true);
  y2.backward(gt);
  EXPECT_EQ(y.data().to_double_vector(), y2.data().to_double_vector());
  EXPECT_EQ(x.grad().to_double_vector(), x2.grad().to_double_vector());

  const Tensor ref = ssm::matmul(gt.reshape({15, 2}).to(DType::f32), xt.reshape({15, 8}).to(DType::f32), true, false);
  const std::vector<double> gw = w.grad().to_double_vector(), rv = ref.to_double_vector();
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t k = 0; k < 8; ++k) {
      const double got = gw[size_t(r * 8 + k)];
      if (r < 4) {
        EXPECT_EQ(got, 0.0) << "row " << r;
      } else {
        EXPECT_NEAR(got, rv[size_t((r - 4) * 8 + k)], 1e-5) << "row " << r << " col " << k;
      }
    }
}

// ---------------- cast, dropout ----------------
TEST(Gradcheck, CastRoundTrip) {
  Tensor x = rnd({3, 4}, 120);
  // f32 rounding (~6e-8 relative) needs a large step and a loose tolerance.
  EXPECT_EQ(gradcheck(
                [](const std::vector<Variable>& v) {
                  return cast(unary(UnaryOp::Tanh, mul(cast(v[0], DType::f32), 2.0)), DType::f64);
                },
                {x}, 1e-2, 1e-3, 1e-2),
            "");
}

TEST(Cast, GradientComesBackInTheInputDtype) {
  Variable x(Tensor::from_vector(std::vector<float>{1, 2, 3}, {3}), true);
  Variable y = cast(x, DType::f64);
  EXPECT_EQ(y.dtype(), DType::f64);
  sum(mul(y, y)).backward();
  ASSERT_TRUE(x.has_grad());
  EXPECT_EQ(x.grad().dtype(), DType::f32);
  testing::expect_near(x.grad().to_double_vector(), {2, 4, 6}, 1e-6);
  EXPECT_EQ(cast(x, DType::f32).id(), x.id());  // same dtype: no node
}

TEST(Gradcheck, DropoutWithFixedGenerator) {
  Tensor x = rnd({4, 9}, 130);
  EXPECT_GRADCHECK(
      [](const std::vector<Variable>& v) {
        Generator gen{1234, 0};  // the same mask on every call
        return dropout(v[0], 0.3, gen);
      },
      {x});
}

TEST(Dropout, GradientIsMaskOverKeepProbability) {
  const double p = 0.25;
  Tensor xt = rnd({8, 33}, 140);
  Variable x(xt, true);
  Generator gen{99, 17};
  Generator same = gen;
  Variable y = dropout(x, p, gen);
  EXPECT_GT(gen.offset, same.offset);  // the draw advanced the stream
  sum(y).backward();
  std::vector<double> mask = same.bernoulli(xt.shape(), 1.0 - p).to(DType::f64).to_double_vector();
  std::vector<double> xv = xt.to_double_vector(), yv = y.data().to_double_vector(), gv = x.grad().to_double_vector();
  double kept = 0;
  for (size_t i = 0; i < mask.size(); ++i) {
    EXPECT_NEAR(gv[i], mask[i] / (1.0 - p), 1e-12) << i;
    EXPECT_NEAR(yv[i], xv[i] * mask[i] / (1.0 - p), 1e-12) << i;
    kept += mask[i];
  }
  EXPECT_GT(kept, 0.5 * double(mask.size()));  // about 75% kept
  EXPECT_LT(kept, 0.95 * double(mask.size()));

  // p = 0 is the identity (no draw); p = 1 is refused.
  Generator g0{1, 0};
  Variable same_x = dropout(x, 0.0, g0);
  EXPECT_EQ(same_x.id(), x.id());
  EXPECT_EQ(g0.offset, 0u);
  EXPECT_THROW(dropout(x, 1.0, g0), Error);
}

// ---------------- composite ----------------
TEST(Gradcheck, SmallMlpWithLoss) {
  Tensor x = rnd({2, 3, 4}, 150), w1 = rnd({4, 6}, 151), b1 = rnd({6}, 152), w2 = rnd({5, 6}, 153);
  Tensor t = Tensor::from_vector(std::vector<int64_t>{0, 4, 2, 1, -100, 3}, {6});
  EXPECT_GRADCHECK(
      [t](const std::vector<Variable>& v) {
        Variable h = gelu(add(matmul(v[0], v[1]), v[2]));        // (2, 3, 6)
        Variable logits = matmul(h, v[3], false, true);          // (2, 3, 5)
        return cross_entropy(reshape(logits, {6, 5}), t);
      },
      {x, w1, b1, w2});
}

// ---------------- gradcheck itself ----------------
TEST(Gradcheck, CatchesAWrongBackward) {
  // y = x^2 with a backward that forgets the factor 2.
  auto wrong = [](const std::vector<Variable>& v) {
    Tensor x = v[0].data();
    return Variable(ssm::mul(x, x), {v[0]}, [](std::vector<Variable>& in, const Tensor& g) {
      in[0].add_grad(ssm::mul(g, in[0].data()));
    });
  };
  std::string msg = gradcheck(wrong, {rnd({2, 3}, 160)});
  EXPECT_NE(msg, "");
  EXPECT_NE(msg.find("input 0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("analytic"), std::string::npos) << msg;
  EXPECT_NE(msg.find("numeric"), std::string::npos) << msg;

  // A backward that drops the gradient entirely is caught too.
  auto missing = [](const std::vector<Variable>& v) {
    return Variable(ssm::mul(v[0].data(), 2.0), {v[0]}, [](std::vector<Variable>&, const Tensor&) {});
  };
  EXPECT_NE(gradcheck(missing, {rnd({3}, 161)}), "");
}

TEST(Gradcheck, RefusesNonF64Inputs) {
  Tensor f32 = Tensor::from_vector(std::vector<float>{1, 2}, {2});
  EXPECT_THROW(gradcheck([](const std::vector<Variable>& v) { return v[0]; }, {f32}), Error);
}

}  // namespace
}  // namespace ssm::ag
