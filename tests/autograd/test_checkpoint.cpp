// checkpoint(): the recompute gives the same values and gradients as the plain computation.
#include "test_util.h"

namespace ssm::ag {
namespace {
using testing::expect_tensor_near;
using testing::rnd;

// A block: tanh(x W + b) * y, with W and b captured parameters.
struct Block {
  Variable W{rnd({4, 5}, 1), true};
  Variable b{rnd({5}, 2), true};
  Variable operator()(const std::vector<Variable>& in) const {
    return mul(unary(UnaryOp::Tanh, add(matmul(in[0], W), b)), in[1]);
  }
};

TEST(Checkpoint, SameValuesAndGradientsAsPlain) {
  Block blk;
  Variable x(rnd({2, 3, 4}, 3), true), y(rnd({2, 3, 5}, 4), true);
  // Plain.
  Variable out = blk({x, y});
  sum(mul(out, out)).backward();
  Tensor gx = x.grad().clone(), gy = y.grad().clone(), gW = blk.W.grad().clone(), gb = blk.b.grad().clone();
  x.zero_grad(), y.zero_grad(), blk.W.zero_grad(), blk.b.zero_grad();
  // Checkpointed.
  Variable out_c = checkpoint([&](const std::vector<Variable>& in) { return blk(in); }, {x, y});
  expect_tensor_near(out_c.data(), out.data(), 0);
  sum(mul(out_c, out_c)).backward();
  expect_tensor_near(x.grad(), gx, 1e-12);
  expect_tensor_near(y.grad(), gy, 1e-12);
  expect_tensor_near(blk.W.grad(), gW, 1e-12);
  expect_tensor_near(blk.b.grad(), gb, 1e-12);
}

TEST(Checkpoint, DropoutThroughAGeneratorDrawsTheSameMask) {
  Block blk;
  Variable x(rnd({3, 4}, 5), true), y(rnd({3, 5}, 6), true);
  auto fn = [&](Generator& gen) {
    return [&blk, &gen](const std::vector<Variable>& in) { return dropout(blk(in), 0.4, gen); };
  };
  Generator g_plain{77, 8};
  Variable out = fn(g_plain)({x, y});
  sum(mul(out, out)).backward();
  Tensor gx = x.grad().clone(), gW = blk.W.grad().clone();
  x.zero_grad(), y.zero_grad(), blk.W.zero_grad(), blk.b.zero_grad();

  Generator g{77, 8};
  Variable out_c = checkpoint(fn(g), {x, y}, &g);
  EXPECT_EQ(g.offset, g_plain.offset);
  expect_tensor_near(out_c.data(), out.data(), 0);
  // Something else draws from the stream between forward and backward; the recompute must not care.
  (void)g.uniform({10});
  const uint64_t before_backward = g.offset;
  sum(mul(out_c, out_c)).backward();
  EXPECT_EQ(g.offset, before_backward);  // the recompute's draws do not move the stream
  expect_tensor_near(x.grad(), gx, 1e-12);
  expect_tensor_near(blk.W.grad(), gW, 1e-12);
}

TEST(Checkpoint, InputsWithoutGradButCapturedParameters) {
  Block blk;
  Variable x(rnd({2, 4}, 7)), y(rnd({2, 5}, 8));  // data, no grad
  sum(blk({x, y})).backward();
  Tensor gW = blk.W.grad().clone(), gb = blk.b.grad().clone();
  blk.W.zero_grad(), blk.b.zero_grad();

  Variable out_c = checkpoint([&](const std::vector<Variable>& in) { return blk(in); }, {x, y});
  EXPECT_TRUE(out_c.requires_grad());
  sum(out_c).backward();
  expect_tensor_near(blk.W.grad(), gW, 1e-12);
  expect_tensor_near(blk.b.grad(), gb, 1e-12);
  EXPECT_FALSE(x.has_grad());
}

TEST(Checkpoint, HooksOnCapturedParametersRunOnceWithTheFullGradient) {
  // W is used inside two checkpointed blocks and once outside them.
  Variable W(rnd({3, 3}, 9), true);
  Variable x(rnd({2, 3}, 10), true);
  auto block = [&](const std::vector<Variable>& in) { return unary(UnaryOp::Tanh, matmul(in[0], W)); };
  auto model = [&](bool ckpt) {
    Variable h = ckpt ? checkpoint(block, {x}) : block({x});
    h = ckpt ? checkpoint(block, {h}) : block({h});
    return sum(matmul(h, W));
  };
  model(false).backward();
  Tensor expect = W.grad().clone();
  W.zero_grad();

  int calls = 0;
  Tensor at_hook;
  W.register_hook([&](Variable& v) {
    ++calls;
    at_hook = v.grad().clone();
  });
  model(true).backward();
  EXPECT_EQ(calls, 1);
  expect_tensor_near(at_hook, expect, 1e-12);
  expect_tensor_near(W.grad(), expect, 1e-12);
}

TEST(Checkpoint, NestedAndRetainGraph) {
  Block blk;
  Variable x(rnd({2, 4}, 11), true), y(rnd({2, 5}, 12), true);
  auto inner = [&](const std::vector<Variable>& in) { return blk(in); };
  auto outer = [&](const std::vector<Variable>& in) {
    Variable h = checkpoint(inner, in);
    return mul(h, h);
  };
  Variable plain = sum(outer({x, y}));
  plain.backward();
  Tensor gx = x.grad().clone(), gW = blk.W.grad().clone();
  x.zero_grad(), y.zero_grad(), blk.W.zero_grad(), blk.b.zero_grad();

  Variable loss = sum(checkpoint(outer, {x, y}));
  EXPECT_NEAR(loss.data().item(), plain.data().item(), 1e-12);
  loss.backward(true);
  expect_tensor_near(x.grad(), gx, 1e-12);
  expect_tensor_near(blk.W.grad(), gW, 1e-12);
  loss.backward();  // the checkpoint node recomputes again
  expect_tensor_near(x.grad(), ssm::mul(gx, 2.0), 1e-12);
  expect_tensor_near(blk.W.grad(), ssm::mul(gW, 2.0), 1e-12);
}

TEST(Checkpoint, AutocastStateIsReplayed) {
  std::vector<bool> seen;
  Variable x(rnd({3}, 13), true);
  auto fn = [&](const std::vector<Variable>& in) {
    seen.push_back(autocast_enabled());
    return mul(in[0], in[0]);
  };
  Variable out;
  {
    AutocastGuard ac(true);
    out = checkpoint(fn, {x});
  }
  sum(out).backward();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_TRUE(seen[0]);
  EXPECT_TRUE(seen[1]);
}

TEST(Checkpoint, UnderNoGradJustRuns) {
  Variable x(rnd({3}, 14), true);
  NoGradGuard ng;
  Variable out = checkpoint([](const std::vector<Variable>& in) { return mul(in[0], 2.0); }, {x});
  EXPECT_FALSE(out.requires_grad());
  expect_tensor_near(out.data(), ssm::mul(x.data(), 2.0), 0);
}

TEST(Checkpoint, CapturedActivationIsABadInput) {
  Variable x(rnd({3}, 15), true);
  Variable act = mul(x, 2.0);  // computed outside, captured inside: must go through `inputs`
  try {
    (void)checkpoint([&](const std::vector<Variable>& in) { return mul(in[0], act); }, {x});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput);
    EXPECT_NE(std::string(e.what()).find("checkpoint"), std::string::npos) << e.what();
  }
}

TEST(Checkpoint, Gradcheck) {
  Tensor w = rnd({4, 4}, 16);
  EXPECT_EQ(gradcheck(
                [](const std::vector<Variable>& v) {
                  Variable W = v[1];
                  return checkpoint(
                      [W](const std::vector<Variable>& in) { return gelu(matmul(in[0], W)); }, {v[0]});
                },
                {rnd({2, 4}, 17), w}),
            "");
}

}  // namespace
}  // namespace ssm::ag
