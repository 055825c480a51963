// S4D: initialisation, forward against a naive formula (uni- and bidirectional), float64 gradchecks,
// the recurrent step form against the convolution form, parameter groups.
#include <cmath>
#include <complex>
#include <numbers>

#include "helpers.h"
#include "layers/s4/s4d.h"

namespace ssm::nn {
namespace {

using testing::max_abs_diff;
using testing::module_gradcheck;
using cd = std::complex<double>;

S4DOptions opts(int64_t N, const std::string& init = "inv", bool bidir = false) {
  S4DOptions o;
  o.d_state = N;
  o.init = init;
  o.bidirectional = bidir;
  return o;
}

std::map<std::string, std::vector<double>> params_of(const Module& m) {
  std::map<std::string, std::vector<double>> out;
  for (auto& [name, t] : m.state_dict()) out[name] = t.to_double_vector();
  return out;
}

TEST(S4D, InitialisationValues) {
  Generator g{1, 0};
  const int64_t H = 4, N = 8, M = 4;
  for (std::string kind : {"lin", "inv"}) {
    S4D s4(H, opts(N, kind), g);
    auto p = params_of(s4);
    ASSERT_EQ(p["A_imag"].size(), size_t(H * M));
    for (int64_t h = 0; h < H; ++h)
      for (int64_t m = 0; m < M; ++m) {
        double expect = kind == "lin" ? std::numbers::pi * m : N / std::numbers::pi * (double(N) / (2 * m + 1) - 1);
        EXPECT_NEAR(p["A_imag"][h * M + m], expect, 1e-5 * (1 + std::abs(expect))) << kind << " m=" << m;
        EXPECT_NEAR(p["log_A_real"][h * M + m], std::log(0.5), 1e-7);
      }
    for (double v : p["log_dt"]) {
      EXPECT_GE(v, std::log(1e-3) - 1e-6);
      EXPECT_LE(v, std::log(1e-1) + 1e-6);
    }
  }
  // S4D-Inv's first mode: (N/pi)(N - 1); S4D-Lin's: 0.
  S4D inv(1, opts(64), g);
  EXPECT_NEAR(params_of(inv)["A_imag"][0], 64 / std::numbers::pi * 63, 1e-3);

  // C ~ complex normal of variance 1 (each part variance 1/2), D ~ N(0, 1); log_dt spread over its range.
  S4D big(64, opts(128), g);
  auto p = params_of(big);
  ASSERT_EQ(p["C"].size(), size_t(64 * 64 * 2));
  double mean = 0, var = 0;
  for (double c : p["C"]) mean += c / p["C"].size();
  for (double c : p["C"]) var += (c - mean) * (c - mean) / p["C"].size();
  EXPECT_NEAR(mean, 0.0, 0.03);
  EXPECT_NEAR(var, 0.5, 0.04);
  double lo = 1e9, hi = -1e9;
  for (double v : p["log_dt"]) lo = std::min(lo, v), hi = std::max(hi, v);
  EXPECT_LT(lo, std::log(1e-3) + 1.0);
  EXPECT_GT(hi, std::log(1e-1) - 1.0);
  EXPECT_EQ(p["D"].size(), 64u);

  S4D bi(3, opts(4, "inv", true), g);
  EXPECT_EQ(bi.state_dict()[3].first, "C");
  EXPECT_EQ(bi.state_dict()[3].second.shape(), Shape({2, 3, 2, 2}));
  testing::bad_input_message([&] { S4D(3, opts(5), g); });
  testing::bad_input_message([&] { S4D(3, opts(4, "diag"), g); });
}

TEST(S4D, NamesAndParameterGroups) {
  Generator g{2, 0};
  S4D s4(4, opts(8), g);
  EXPECT_EQ(testing::param_names(s4), std::vector<std::string>({"log_dt", "log_A_real", "A_imag", "C", "D",
                                                                "output_linear.weight", "output_linear.bias"}));
  std::map<std::string, std::vector<std::string>> groups;
  for (auto& [group, params] : s4.parameter_groups())
    for (auto& p : params) groups[group].push_back(p.name);
  EXPECT_EQ(groups["ssm"], std::vector<std::string>({"log_dt", "log_A_real", "A_imag"}));
  EXPECT_EQ(groups["default"], std::vector<std::string>({"C", "D", "output_linear.weight"}));
  EXPECT_EQ(groups["no_decay"], std::vector<std::string>({"output_linear.bias"}));
  EXPECT_EQ(s4.parameter_groups()[0].first, "default");
}

// The whole layer from its parameters, in double: kernel by the formula, direct convolutions, D skip,
// GELU, Linear(H, 2H), GLU.
std::vector<double> naive_s4d(const std::map<std::string, std::vector<double>>& p, const std::vector<double>& u,
                              int64_t B, int64_t L, int64_t H, int64_t M, bool bidir) {
  auto kernel = [&](int dir) {
    std::vector<double> K(size_t(H * L));
    for (int64_t h = 0; h < H; ++h)
      for (int64_t l = 0; l < L; ++l) {
        cd s = 0;
        double dt = std::exp(p.at("log_dt")[h]);
        for (int64_t m = 0; m < M; ++m) {
          cd A(-std::exp(p.at("log_A_real")[h * M + m]), p.at("A_imag")[h * M + m]);
          size_t ci = size_t(((dir * H + h) * M + m) * 2);
          cd C(p.at("C")[ci], p.at("C")[ci + 1]);
          s += C * (std::exp(dt * A) - 1.0) / A * std::exp(dt * A * double(l));
        }
        K[h * L + l] = 2 * s.real();
      }
    return K;
  };
  auto Kf = kernel(0);
  std::vector<double> Kb = bidir ? kernel(1) : std::vector<double>{};
  const auto &W = p.at("output_linear.weight"), &bias = p.at("output_linear.bias"), &D = p.at("D");
  std::vector<double> out(size_t(B * L * H));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < L; ++t) {
      std::vector<double> z(static_cast<size_t>(H), 0.0);
      for (int64_t h = 0; h < H; ++h) {
        double y = D[h] * u[(b * L + t) * H + h];
        for (int64_t s = 0; s <= t; ++s) y += Kf[h * L + s] * u[(b * L + t - s) * H + h];
        if (bidir)
          for (int64_t s = 0; t + s < L; ++s) y += Kb[h * L + s] * u[(b * L + t + s) * H + h];
        z[h] = 0.5 * y * (1 + std::erf(y / std::sqrt(2.0)));
      }
      for (int64_t h = 0; h < H; ++h) {
        double a = bias[h], gate = bias[H + h];
        for (int64_t i = 0; i < H; ++i) a += W[h * H + i] * z[i], gate += W[(H + h) * H + i] * z[i];
        out[(b * L + t) * H + h] = a / (1 + std::exp(-gate));
      }
    }
  return out;
}

TEST(S4D, ForwardMatchesNaiveFormula) {
  Generator g{3, 0};
  const int64_t B = 2, L = 9, H = 3, N = 6;
  for (bool bidir : {false, true}) {
    S4D s4(H, opts(N, bidir ? "lin" : "inv", bidir), g);
    s4.to(DType::f64);
    Tensor u = g.normal({B, L, H}, DType::f64);
    Tensor y = s4.forward(Variable(u)).data();
    ASSERT_EQ(y.shape(), Shape({B, L, H}));
    auto ref = naive_s4d(params_of(s4), u.to_double_vector(), B, L, H, N / 2, bidir);
    auto yv = y.to_double_vector();
    for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(yv[i], ref[i], 1e-9) << "bidir=" << bidir << " i=" << i;
    EXPECT_EQ(s4.kernel(L).shape(), Shape({bidir ? 2 * H : H, L}));
  }
  S4D s4(H, opts(N), g);
  testing::bad_input_message([&] { s4.forward(Variable(Tensor::zeros({B, L, H + 1}))); });
}

TEST(S4D, GradcheckUnidirectional) {
  Generator g{4, 0};
  S4D s4(2, opts(4, "inv"), g);
  EXPECT_EQ(module_gradcheck(s4, g.normal({2, 6, 2}, DType::f64)), "");
}

TEST(S4D, GradcheckBidirectional) {
  Generator g{5, 0};
  S4D s4(2, opts(4, "lin", true), g);
  EXPECT_EQ(module_gradcheck(s4, g.normal({2, 5, 2}, DType::f64)), "");
}

void check_step_matches_forward(DType dtype, double tol) {
  Generator g{6, 0};
  const int64_t B = 2, L = 32, H = 4, N = 8;
  S4D s4(H, opts(N), g);
  s4.to(dtype);
  s4.eval();
  Tensor u = g.normal({B, L, H}, dtype);
  Tensor y = s4.forward(Variable(u)).data();
  S4DState state = s4.initial_state(B);
  EXPECT_EQ(state.x_re.shape(), Shape({B, H, N / 2}));
  double worst = 0;
  for (int64_t t = 0; t < L; ++t) {
    Tensor y_t = s4.step(u.select(1, t).contiguous(), state);
    ASSERT_EQ(y_t.shape(), Shape({B, H}));
    EXPECT_EQ(y_t.dtype(), dtype);
    worst = std::max(worst, max_abs_diff(y_t, y.select(1, t).contiguous()));
  }
  EXPECT_LT(worst, tol) << dtype_name(dtype);
}

TEST(S4D, StepMatchesForwardF32) { check_step_matches_forward(DType::f32, 1e-4); }
TEST(S4D, StepMatchesForwardF64) { check_step_matches_forward(DType::f64, 1e-9); }

TEST(S4D, StepErrors) {
  Generator g{7, 0};
  S4D bi(3, opts(4, "inv", true), g);
  auto st = bi.initial_state(1);
  auto msg = testing::bad_input_message([&] { bi.step(Tensor::zeros({1, 3}), st); });
  EXPECT_NE(msg.find("bidirectional"), std::string::npos);
  S4D uni(3, opts(4), g);
  auto st2 = uni.initial_state(2);
  testing::bad_input_message([&] { uni.step(Tensor::zeros({1, 3}), st2); });
}

TEST(S4D, DropoutOnlyInTraining) {
  Generator g{8, 0};
  S4DOptions o = opts(8);
  o.dropout = 0.5;
  S4D s4(8, o, g);
  Tensor u = g.normal({2, 10, 8});
  s4.eval();
  auto a = s4.forward(Variable(u)).data().to_double_vector();
  EXPECT_EQ(a, s4.forward(Variable(u)).data().to_double_vector());
  s4.train();
  EXPECT_NE(a, s4.forward(Variable(u)).data().to_double_vector());
}

}  // namespace
}  // namespace ssm::nn
