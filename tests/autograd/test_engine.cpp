// The engine: graph building, accumulation, topological order, freeing, hooks, error messages.
#include <thread>

#include "test_util.h"

namespace ssm::ag {
namespace {
using testing::expect_near;
using testing::expect_tensor_near;
using testing::rnd;

Variable leaf(const std::vector<double>& v, const Shape& s) { return Variable(Tensor::from_vector(v, s), true); }

TEST(Variable, LeafAndOpOutput) {
  Variable x = leaf({1, 2, 3}, {3});
  EXPECT_TRUE(x.is_leaf());
  EXPECT_TRUE(x.requires_grad());
  EXPECT_FALSE(x.has_grad());
  Variable c(Tensor::from_vector(std::vector<double>{4, 5, 6}, {3}));
  EXPECT_FALSE(c.requires_grad());

  Variable y = mul(x, c);
  EXPECT_FALSE(y.is_leaf());
  EXPECT_TRUE(y.requires_grad());
  expect_near(y.data().to_double_vector(), {4, 10, 18});

  // No input requires grad: a constant, no graph.
  Variable z = mul(c, c);
  EXPECT_FALSE(z.requires_grad());
  EXPECT_TRUE(z.is_leaf());
  EXPECT_THROW(z.backward(Tensor::ones({3}, DType::f64)), Error);
}

TEST(Variable, SetRequiresGradOnlyOnLeaves) {
  Variable x = leaf({1, 2}, {2});
  Variable y = mul(x, 2.0);
  EXPECT_THROW(y.set_requires_grad(false), Error);
  x.set_requires_grad(false);
  EXPECT_FALSE(x.requires_grad());
  Variable idx(Tensor::from_vector(std::vector<int64_t>{0, 1}, {2}));
  EXPECT_THROW(idx.set_requires_grad(true), Error);
}

TEST(Variable, DetachSharesDataWithoutGraph) {
  Variable x = leaf({1, 2}, {2});
  Variable y = mul(x, 3.0);
  Variable d = y.detach();
  EXPECT_TRUE(d.is_leaf());
  EXPECT_FALSE(d.requires_grad());
  EXPECT_EQ(d.data().data_ptr(), y.data().data_ptr());
  Variable w = mul(d, 2.0);
  EXPECT_FALSE(w.requires_grad());
}

TEST(Engine, NoGradGuardBuildsNoGraph) {
  Variable x = leaf({1, 2}, {2});
  EXPECT_TRUE(grad_enabled());
  {
    NoGradGuard g;
    EXPECT_FALSE(grad_enabled());
    Variable y = mul(x, x);
    EXPECT_FALSE(y.requires_grad());
    EXPECT_TRUE(y.is_leaf());
    {
      NoGradGuard g2;
      EXPECT_FALSE(grad_enabled());
    }
    EXPECT_FALSE(grad_enabled());
  }
  EXPECT_TRUE(grad_enabled());
  EXPECT_TRUE(mul(x, x).requires_grad());
}

TEST(Engine, GradModeAndAutocastAreThreadLocal) {
  NoGradGuard g;
  AutocastGuard ac(true);
  EXPECT_TRUE(autocast_enabled());
  bool other_grad = false, other_autocast = true;
  std::thread t([&] {
    other_grad = grad_enabled();
    other_autocast = autocast_enabled();
  });
  t.join();
  EXPECT_TRUE(other_grad);
  EXPECT_FALSE(other_autocast);
  {
    AutocastGuard off(false);
    EXPECT_FALSE(autocast_enabled());
  }
  EXPECT_TRUE(autocast_enabled());
}

TEST(Engine, ScalarSeedAndErrors) {
  Variable x = leaf({1, 2, 3}, {3});
  Variable y = mul(x, x);
  try {
    y.backward();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput);
    EXPECT_NE(std::string(e.what()).find("backward() needs a scalar or an explicit gradient"), std::string::npos)
        << e.what();
  }
  try {
    y.backward(Tensor::ones({4}, DType::f64));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput);
    EXPECT_NE(std::string(e.what()).find("[4]"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(x.has_grad());  // nothing was accumulated by the failed calls
  y.backward(Tensor::from_vector(std::vector<double>{1, 10, 100}, {3}));
  expect_near(x.grad().to_double_vector(), {2, 40, 600});  // d(x^2) = 2x * g
}

TEST(Engine, AccumulatesOverTwoBackwardCalls) {
  Variable x = leaf({1, -2}, {2});
  for (int i = 0; i < 2; ++i) sum(mul(x, 3.0)).backward();
  expect_near(x.grad().to_double_vector(), {6, 6});
  x.zero_grad();
  EXPECT_FALSE(x.has_grad());
  sum(mul(x, x)).backward();
  expect_near(x.grad().to_double_vector(), {2, -4});
}

TEST(Engine, DiamondGraphs) {
  // Leaf used twice: z = x*x + x -> dz/dx = 2x + 1
  Variable x = leaf({0.5, 3}, {2});
  sum(add(mul(x, x), x)).backward();
  expect_near(x.grad().to_double_vector(), {2, 7});

  // Intermediate used twice: a = exp(x); z = a + a*a -> dz/dx = (1 + 2a) a
  Variable x2 = leaf({0.1, -0.3}, {2});
  Variable a = exp(x2);
  sum(add(a, mul(a, a))).backward();
  std::vector<double> expect;
  for (double v : {0.1, -0.3}) expect.push_back((1 + 2 * std::exp(v)) * std::exp(v));
  expect_near(x2.grad().to_double_vector(), expect, 1e-12);

  // add(a, a): the same gradient tensor is handed to one node twice.
  Variable x3 = leaf({1, 2}, {2});
  Variable b = mul(x3, 1.0);
  sum(add(b, b)).backward();
  expect_near(x3.grad().to_double_vector(), {2, 2});
}

TEST(Engine, DeepChainHasNoRecursion) {
  const int depth = 10000;
  Variable x = leaf({1.0}, {1});
  Variable y = x;
  for (int i = 0; i < depth; ++i) y = add(y, 0.5);
  expect_near(y.data().to_double_vector(), {1.0 + 0.5 * depth});
  y.backward();
  expect_near(x.grad().to_double_vector(), {1.0});

  // Dropping a deep graph that never ran backward must not recurse either.
  Variable z = x;
  for (int i = 0; i < 200000; ++i) z = mul(z, 1.0);
  z = Variable();
  SUCCEED();
}

TEST(Engine, BackwardTwiceNeedsRetainGraph) {
  Variable x = leaf({1, 2}, {2});
  Variable y = sum(mul(x, x));
  y.backward(true);
  y.backward(true);
  expect_near(x.grad().to_double_vector(), {4, 8});
  y.backward();  // frees
  expect_near(x.grad().to_double_vector(), {6, 12});
  try {
    y.backward();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput);
    EXPECT_NE(std::string(e.what()).find("second time"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("retain_graph"), std::string::npos) << e.what();
  }
  expect_near(x.grad().to_double_vector(), {6, 12});

  // A new graph on top of a freed intermediate fails the same way.
  Variable h = mul(x, x);
  sum(h).backward();
  EXPECT_THROW(sum(mul(h, 2.0)).backward(), Error);
}

TEST(Engine, HooksRunOncePerLeafWithTheFullGradient) {
  Variable x = leaf({1, 2}, {2});
  Variable w = leaf({3, 4}, {2});
  std::vector<std::vector<double>> seen_x;
  int calls_w = 0;
  x.register_hook([&](Variable& v) { seen_x.push_back(v.grad().to_double_vector()); });
  w.register_hook([&](Variable& v) {
    ++calls_w;
    EXPECT_TRUE(v.has_grad());
  });
  // x is used three times: z = sum(x*w + x*x + x) -> dz/dx = w + 2x + 1
  auto loss = [&] { return sum(add(add(mul(x, w), mul(x, x)), x)); };
  loss().backward();
  ASSERT_EQ(seen_x.size(), 1u);
  expect_near(seen_x[0], {3 + 2 + 1, 4 + 4 + 1});
  EXPECT_EQ(calls_w, 1);
  loss().backward();
  ASSERT_EQ(seen_x.size(), 2u);
  expect_near(seen_x[1], {12, 18});  // accumulated over both passes when the hook runs
  EXPECT_EQ(calls_w, 2);

  // A leaf outside this graph is not called.
  sum(mul(w, 2.0)).backward();
  EXPECT_EQ(seen_x.size(), 2u);
  EXPECT_EQ(calls_w, 3);
}

TEST(Engine, HookRunsAfterEveryUseIsProcessed) {
  // x feeds a long chain and a short path; the hook must see both contributions.
  Variable x = leaf({1.0}, {1});
  double at_hook = 0;
  x.register_hook([&](Variable& v) { at_hook = v.grad().item(); });
  Variable long_path = x;
  for (int i = 0; i < 50; ++i) long_path = mul(long_path, 1.0);
  sum(add(long_path, mul(x, 2.0))).backward();
  EXPECT_DOUBLE_EQ(at_hook, 3.0);
}

TEST(Engine, SeedAndSavedTensorsAreNeverWrittenInPlace) {
  Variable x = leaf({1, 2}, {2});
  Tensor seed = Tensor::from_vector(std::vector<double>{1, 1}, {2});
  Variable y = reshape(x, {2});
  y.backward(seed, true);
  y.backward(seed, true);
  x.grad().fill_(7.0);  // an optimizer scaling the gradient in place
  expect_near(seed.to_double_vector(), {1, 1});

  // Two contributions to an intermediate node (first stored by reference, then summed).
  Variable a = leaf({1, 2}, {2});
  Variable m = mul(a, 1.0);
  Variable s = add(m, m);
  Tensor g = Tensor::from_vector(std::vector<double>{1, 2}, {2});
  s.backward(g);
  expect_near(g.to_double_vector(), {1, 2});
  expect_near(a.grad().to_double_vector(), {2, 4});
}

TEST(Engine, LeafRootAndExplicitSeed) {
  Variable x = leaf({1, 2}, {2});
  x.backward(Tensor::from_vector(std::vector<double>{3, 4}, {2}));
  expect_near(x.grad().to_double_vector(), {3, 4});
}

TEST(Engine, CustomFunctionRegistration) {
  // y = 3x, registered by hand as the header describes.
  Variable x = leaf({1, 2}, {2});
  Variable y(ssm::mul(x.data(), 3.0), {x}, [](std::vector<Variable>& in, const Tensor& g) {
    if (in[0].requires_grad()) in[0].add_grad(ssm::mul(g, 3.0));
  });
  sum(y).backward();
  expect_near(x.grad().to_double_vector(), {3, 3});
}

TEST(Engine, IntermediateGradientsAreFreed) {
  Variable x = leaf({1, 2}, {2});
  Variable h = mul(x, 2.0);
  Variable y = sum(h);
  y.backward(true);
  EXPECT_FALSE(h.has_grad());  // consumed and dropped
  EXPECT_FALSE(y.has_grad());
  y.backward();
  EXPECT_FALSE(h.has_grad());
}

TEST(Engine, F32Gradients) {
  Variable x(Tensor::from_vector(std::vector<float>{1, 2, 3}, {3}), true);
  sum(mul(x, x)).backward();
  EXPECT_EQ(x.grad().dtype(), DType::f32);
  expect_near(x.grad().to_double_vector(), {2, 4, 6}, 1e-6);
}

}  // namespace
}  // namespace ssm::ag
