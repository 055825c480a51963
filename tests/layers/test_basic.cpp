// Basic layers: values against naive loops, float64 gradchecks, train/eval behaviour.
#include <cmath>
#include <optional>

#include "helpers.h"
#include "layers/basic.h"
#include "layers/residual.h"

namespace ssm::nn {
namespace {

using testing::bad_input_message;
using testing::max_abs_diff;
using testing::module_gradcheck;

Tensor randn(const Shape& s, Generator& g, DType dt = DType::f64) { return g.normal(s, dt); }

TEST(Init, RangesAndMoments) {
  Generator g{7, 0};
  Tensor u = init::uniform({4000}, -0.25, 0.75, g);
  auto v = u.to_double_vector();
  double lo = 1e9, hi = -1e9, mean = 0;
  for (double x : v) lo = std::min(lo, x), hi = std::max(hi, x), mean += x / v.size();
  EXPECT_GE(lo, -0.25);
  EXPECT_LT(hi, 0.75);
  EXPECT_NEAR(mean, 0.25, 0.02);

  Tensor k = init::kaiming_uniform({100, 64}, 64, g);
  for (double x : k.to_double_vector()) EXPECT_LE(std::abs(x), 1.0 / 8.0);
  EXPECT_GT(std::abs(k.to_double_vector()[0]) + std::abs(k.to_double_vector()[1]), 0.0);

  Tensor n = init::normal({8000}, 2.0, 0.5, g);
  double m = 0, s2 = 0;
  for (double x : n.to_double_vector()) m += x / 8000;
  for (double x : n.to_double_vector()) s2 += (x - m) * (x - m) / 8000;
  EXPECT_NEAR(m, 2.0, 0.03);
  EXPECT_NEAR(std::sqrt(s2), 0.5, 0.03);

  // Same seed, same numbers.
  Generator g1{3, 0}, g2{3, 0};
  EXPECT_EQ(init::normal({10}, 0, 1, g1).to_double_vector(), init::normal({10}, 0, 1, g2).to_double_vector());
}

TEST(Linear, MatchesNaiveLoop) {
  Generator g{1, 0};
  Linear lin(5, 3, true, g);
  EXPECT_EQ(lin.weight().shape(), Shape({3, 5}));
  for (double w : lin.weight().data().to_double_vector()) EXPECT_LE(std::abs(w), 1 / std::sqrt(5.0));
  Tensor x = g.normal({2, 4, 5});
  Tensor y = lin.forward(Variable(x)).data();
  ASSERT_EQ(y.shape(), Shape({2, 4, 3}));
  auto xv = x.to_double_vector(), wv = lin.weight().data().to_double_vector(),
       bv = lin.bias()->data().to_double_vector(), yv = y.to_double_vector();
  for (int r = 0; r < 8; ++r)
    for (int o = 0; o < 3; ++o) {
      double s = bv[o];
      for (int i = 0; i < 5; ++i) s += xv[r * 5 + i] * wv[o * 5 + i];
      EXPECT_NEAR(yv[r * 3 + o], s, 1e-5);
    }
  auto msg = bad_input_message([&] { lin.forward(Variable(Tensor::zeros({2, 4}))); });
  EXPECT_NE(msg.find("[2, 4]"), std::string::npos) << msg;
}

TEST(Linear, Gradcheck) {
  Generator g{2, 0};
  Linear with_bias(4, 3, true, g), no_bias(4, 2, false, g);
  EXPECT_EQ(module_gradcheck(with_bias, randn({2, 3, 4}, g)), "");
  EXPECT_EQ(module_gradcheck(no_bias, randn({5, 4}, g)), "");
  EXPECT_EQ(no_bias.bias(), nullptr);
  EXPECT_EQ(testing::param_names(no_bias), std::vector<std::string>({"weight"}));
}

TEST(Linear, AutocastOnCuda) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  Generator g{3, 0};
  Linear lin(64, 32, true, g);
  Tensor x = g.normal({4, 64});
  Tensor ref = lin.forward(Variable(x)).data();
  lin.to(Device::cuda());
  Variable xc(x.to(Device::cuda()), true);
  ag::AutocastGuard autocast;
  Variable y = lin.forward(xc);
  EXPECT_EQ(y.dtype(), DType::f32);
  EXPECT_LT(max_abs_diff(y.data().to(Device::cpu()), ref), 0.1);  // bf16 inputs
  ag::sum(y).backward();
  EXPECT_EQ(lin.weight().grad().dtype(), DType::f32);
  EXPECT_EQ(xc.grad().dtype(), DType::f32);
}

// autocast_linear over row blocks of one weight on the GPU (in_proj's x and z halves): outputs and gradients
// against the same calls on the CPU (where linear_rows runs without autocast's casts, f32 throughout), and the
// weight's gradient in f32, filled by the two blocks.
TEST(Linear, AutocastRowBlocksOnCuda) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  Generator g{6, 0};
  const Tensor x = g.normal({2, 9, 48}), w = g.normal({40, 48}), gy = g.normal({2, 9, 40});
  auto run = [&](const Device& dev, bool autocast) {
    Variable xv(x.to(dev), true), wv(w.to(dev), true);
    std::optional<ag::AutocastGuard> guard;
    if (autocast) guard.emplace();
    Variable a = autocast_linear(xv, wv, /*half_output=*/false, 0, 16), b = autocast_linear(xv, wv, false, 16, 24);
    ag::cat({a, b}, 2).backward(gy.to(dev));
    return std::vector<Tensor>{ag::cat({a, b}, 2).data().to(Device::cpu()).to(DType::f32),
                               xv.grad().to(Device::cpu()).to(DType::f32), wv.grad().to(Device::cpu())};
  };
  const std::vector<Tensor> ref = run(Device::cpu(), false), got = run(Device::cuda(), true);
  EXPECT_EQ(got[2].dtype(), DType::f32);
  const char* what[] = {"y", "grad x", "grad w"};
  for (int i = 0; i < 3; ++i) {  // bf16 inputs (8-bit mantissas) to f32 sums: within 2 % of the largest value
    const Tensor& r = ref[size_t(i)];
    const double largest = max_abs_diff(r, Tensor::zeros(r.shape(), DType::f32));
    EXPECT_LT(max_abs_diff(got[size_t(i)], r), 0.02 * largest) << what[i];
  }
}

TEST(Embedding, LooksUpRowsAndGradchecks) {
  Generator g{4, 0};
  Embedding emb(6, 3, g);
  Tensor idx = Tensor::from_vector(std::vector<int64_t>{5, 0, 2, 2}, {2, 2});
  Tensor y = emb.forward(idx).data();
  ASSERT_EQ(y.shape(), Shape({2, 2, 3}));
  auto w = emb.weight().data().to_double_vector(), yv = y.to_double_vector();
  std::vector<int64_t> ids{5, 0, 2, 2};
  for (int i = 0; i < 4; ++i)
    for (int d = 0; d < 3; ++d) EXPECT_EQ(yv[i * 3 + d], w[ids[i] * 3 + d]);
  // Repeated index 2: its gradient row is the sum of two contributions.
  EXPECT_EQ(module_gradcheck(emb, idx), "");
}

TEST(Norms, LayerNormAndRMSNormValuesAndGradcheck) {
  Generator g{5, 0};
  LayerNorm ln(4);
  RMSNorm rms(4);
  Tensor x = randn({3, 4}, g);
  ln.to(DType::f64);
  rms.to(DType::f64);
  auto xv = x.to_double_vector();
  auto lv = ln.forward(Variable(x)).data().to_double_vector();
  auto rv = rms.forward(Variable(x)).data().to_double_vector();
  for (int r = 0; r < 3; ++r) {
    double mean = 0, var = 0, ms = 0;
    for (int i = 0; i < 4; ++i) mean += xv[r * 4 + i] / 4, ms += xv[r * 4 + i] * xv[r * 4 + i] / 4;
    for (int i = 0; i < 4; ++i) var += (xv[r * 4 + i] - mean) * (xv[r * 4 + i] - mean) / 4;
    for (int i = 0; i < 4; ++i) {
      EXPECT_NEAR(lv[r * 4 + i], (xv[r * 4 + i] - mean) / std::sqrt(var + 1e-5), 1e-9);
      EXPECT_NEAR(rv[r * 4 + i], xv[r * 4 + i] / std::sqrt(ms + 1e-5), 1e-9);
    }
  }
  // Non-trivial gains so their gradients matter.
  ln.weight().data().copy_(randn({4}, g));
  ln.bias().data().copy_(randn({4}, g));
  rms.weight().data().copy_(randn({4}, g));
  EXPECT_EQ(module_gradcheck(ln, randn({2, 3, 4}, g)), "");
  EXPECT_EQ(module_gradcheck(rms, randn({2, 3, 4}, g)), "");
  for (auto& p : ln.named_parameters()) EXPECT_EQ(p.group, "no_decay") << p.name;
  for (auto& p : rms.named_parameters()) EXPECT_EQ(p.group, "no_decay") << p.name;
}

TEST(Activations, ValuesAndGradcheck) {
  Generator g{6, 0};
  Tensor x = randn({2, 3, 6}, g);
  GLU glu_mod;
  auto xv = x.to_double_vector();
  auto yv = glu_mod.forward(Variable(x)).data().to_double_vector();
  ASSERT_EQ(yv.size(), 18u);
  for (int r = 0; r < 6; ++r)
    for (int i = 0; i < 3; ++i) {
      double a = xv[r * 6 + i], b = xv[r * 6 + 3 + i];
      EXPECT_NEAR(yv[r * 3 + i], a / (1 + std::exp(-b)), 1e-12);
    }
  EXPECT_EQ(module_gradcheck(glu_mod, x), "");
  GLU glu_mid(1);
  Tensor x2 = randn({2, 4, 3}, g);
  EXPECT_EQ(glu_mid.forward(Variable(x2)).shape(), Shape({2, 2, 3}));
  EXPECT_EQ(module_gradcheck(glu_mid, x2), "");
  bad_input_message([&] { GLU().forward(Variable(randn({2, 5}, g))); });

  GELU gelu_mod;
  SiLU silu_mod;
  Identity id;
  auto gv = gelu_mod.forward(Variable(x)).data().to_double_vector();
  auto sv = silu_mod.forward(Variable(x)).data().to_double_vector();
  for (size_t i = 0; i < xv.size(); ++i) {
    EXPECT_NEAR(gv[i], 0.5 * xv[i] * (1 + std::erf(xv[i] / std::sqrt(2.0))), 1e-12);
    EXPECT_NEAR(sv[i], xv[i] / (1 + std::exp(-xv[i])), 1e-12);
  }
  EXPECT_EQ(id.forward(Variable(x)).data().to_double_vector(), xv);
  EXPECT_EQ(module_gradcheck(gelu_mod, x), "");
  EXPECT_EQ(module_gradcheck(silu_mod, x), "");
}

// y[b,t,c] = bias[c] + sum_k w[c,k] x[b, t-(W-1)+k, c], zero before t = 0.
std::vector<double> naive_conv(const std::vector<double>& x, const std::vector<double>& w,
                               const std::vector<double>* bias, int B, int L, int C, int W) {
  std::vector<double> y(size_t(B * L * C));
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < L; ++t)
      for (int c = 0; c < C; ++c) {
        double s = bias ? (*bias)[c] : 0.0;
        for (int k = 0; k < W; ++k) {
          int src = t - (W - 1) + k;
          if (src >= 0) s += w[c * W + k] * x[(b * L + src) * C + c];
        }
        y[(b * L + t) * C + c] = s;
      }
  return y;
}

TEST(DepthwiseCausalConv1d, MatchesNaiveLoop) {
  Generator g{8, 0};
  for (int W : {1, 2, 4}) {
    for (bool bias : {true, false}) {
      DepthwiseCausalConv1d conv(3, W, bias, g);
      EXPECT_EQ(conv.weight().shape(), Shape({3, W}));
      Tensor x = g.normal({2, 7, 3});
      auto y = conv.forward(Variable(x)).data().to_double_vector();
      std::vector<double> bv = bias ? conv.bias()->data().to_double_vector() : std::vector<double>{};
      auto ref = naive_conv(x.to_double_vector(), conv.weight().data().to_double_vector(), bias ? &bv : nullptr,
                            2, 7, 3, W);
      ASSERT_EQ(y.size(), ref.size());
      for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], ref[i], 1e-5) << "W=" << W << " i=" << i;
    }
  }
  // Longer kernel than sequence: only the zero padding is seen before t = 0.
  DepthwiseCausalConv1d wide(2, 6, true, g);
  Tensor x = g.normal({1, 3, 2});
  std::vector<double> bv = wide.bias()->data().to_double_vector();
  auto ref = naive_conv(x.to_double_vector(), wide.weight().data().to_double_vector(), &bv, 1, 3, 2, 6);
  auto y = wide.forward(Variable(x)).data().to_double_vector();
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], ref[i], 1e-5);
  bad_input_message([&] { wide.forward(Variable(g.normal({1, 3, 4}))); });
}

TEST(DepthwiseCausalConv1d, Gradcheck) {
  Generator g{9, 0};
  DepthwiseCausalConv1d conv(3, 4, true, g);
  EXPECT_EQ(module_gradcheck(conv, randn({2, 5, 3}, g)), "");
}

TEST(Dropout, TrainDropsEvalIsIdentity) {
  Generator g{10, 0};
  Dropout d(0.5, g);
  Tensor x = Tensor::ones({4000});
  auto y = d.forward(Variable(x)).data().to_double_vector();
  int zeros = 0;
  for (double v : y) {
    EXPECT_TRUE(v == 0.0 || std::abs(v - 2.0) < 1e-6) << v;
    zeros += v == 0.0;
  }
  EXPECT_NEAR(zeros / 4000.0, 0.5, 0.05);
  d.eval();
  EXPECT_FALSE(d.is_training());
  EXPECT_EQ(d.forward(Variable(x)).data().to_double_vector(), x.to_double_vector());
  d.train();
  EXPECT_NE(d.forward(Variable(x)).data().to_double_vector(), x.to_double_vector());
  bad_input_message([&] { Dropout(1.0, g); });
}

TEST(SequencePool, MeanAndLast) {
  Generator g{11, 0};
  Tensor x = randn({2, 3, 4}, g);
  auto xv = x.to_double_vector();
  SequencePool mean_pool("mean"), last_pool("last");
  auto m = mean_pool.forward(Variable(x)).data().to_double_vector();
  auto l = last_pool.forward(Variable(x)).data().to_double_vector();
  ASSERT_EQ(m.size(), 8u);
  for (int b = 0; b < 2; ++b)
    for (int d = 0; d < 4; ++d) {
      double s = 0;
      for (int t = 0; t < 3; ++t) s += xv[(b * 3 + t) * 4 + d] / 3;
      EXPECT_NEAR(m[b * 4 + d], s, 1e-12);
      EXPECT_EQ(l[b * 4 + d], xv[(b * 3 + 2) * 4 + d]);
    }
  EXPECT_EQ(module_gradcheck(mean_pool, x), "");
  EXPECT_EQ(module_gradcheck(last_pool, x), "");
  auto msg = bad_input_message([] { SequencePool("max"); });
  EXPECT_NE(msg.find("max"), std::string::npos);
}

TEST(Containers, SequentialChainsAndNames) {
  Generator g{12, 0};
  auto seq = std::make_shared<Sequential>();
  seq->push_back(std::make_shared<Linear>(3, 4, true, g));
  seq->push_back(std::make_shared<GELU>());
  seq->push_back(std::make_shared<Linear>(4, 2, false, g));
  EXPECT_EQ(seq->size(), 3u);
  EXPECT_EQ(testing::param_names(*seq), std::vector<std::string>({"0.weight", "0.bias", "2.weight"}));
  Tensor x = randn({2, 3}, g);
  seq->to(DType::f64);
  Variable manual = (*seq)[2].forward((*seq)[1].forward((*seq)[0].forward(Variable(x))));
  EXPECT_EQ(seq->forward(Variable(x)).data().to_double_vector(), manual.data().to_double_vector());
  EXPECT_EQ(module_gradcheck(*seq, x), "");

  ModuleList list;
  list.push_back(std::make_shared<LayerNorm>(2));
  list.push_back(std::make_shared<RMSNorm>(2));
  EXPECT_EQ(testing::param_names(list), std::vector<std::string>({"0.weight", "0.bias", "1.weight"}));
  EXPECT_EQ(list.at<RMSNorm>(1).weight().shape(), Shape({2}));
}

TEST(PreNormResidual, ValuesAndGradcheck) {
  Generator g{13, 0};
  for (std::string norm : {"layer", "rms"}) {
    for (bool prenorm : {true, false}) {
      auto lin = std::make_shared<Linear>(4, 4, true, g);
      PreNormResidual block(4, norm, lin, 0.0, g, prenorm);
      EXPECT_EQ(testing::param_names(block)[0], "norm.weight");
      EXPECT_EQ(testing::param_names(block).back(), "mixer.bias");
      block.to(DType::f64);
      Tensor x = randn({2, 3, 4}, g);
      Variable xv(x);
      Variable expect = prenorm ? ag::add(xv, lin->forward(block.norm().forward(xv)))
                                : block.norm().forward(ag::add(xv, lin->forward(xv)));
      EXPECT_LT(max_abs_diff(block.forward(xv).data(), expect.data()), 1e-12);
      EXPECT_EQ(module_gradcheck(block, x), "") << norm << " prenorm=" << prenorm;
    }
  }
  bad_input_message([&] { PreNormResidual(4, "batch", std::make_shared<Identity>(), 0.0, g); });
}

TEST(PreNormResidual, DropoutFollowsTrainEval) {
  Generator g{14, 0};
  PreNormResidual block(8, "layer", std::make_shared<Linear>(8, 8, true, g), 0.5, g);
  Tensor x = g.normal({2, 5, 8});
  block.eval();
  auto a = block.forward(Variable(x)).data().to_double_vector();
  auto b = block.forward(Variable(x)).data().to_double_vector();
  EXPECT_EQ(a, b);
  block.train();
  auto c = block.forward(Variable(x)).data().to_double_vector();
  EXPECT_NE(a, c);
}

}  // namespace
}  // namespace ssm::nn
