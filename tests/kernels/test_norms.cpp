// layer_norm / rms_norm: values against a direct evaluation, float64 gradchecks (with and without
// affine parameters), CUDA vs CPU (f32, f64, bf16 with f32 weights), input errors.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "autograd/functions.h"
#include "kernels/norms/norms.h"

using namespace ssm;

namespace {

Tensor randn(const Shape& s, uint64_t seed, DType dt = DType::f64, double mean = 0, double scale = 1) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> n;
  std::vector<double> v(size_t(shape_numel(s)));
  for (auto& x : v) x = mean + scale * n(g);
  Tensor t = Tensor::from_vector(v, s);
  return dt == DType::f64 ? t : t.to(dt);
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  auto x = a.to_double_vector(), y = b.to_double_vector();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

}  // namespace

TEST(Norms, LayerNormValues) {
  const int64_t R = 6, C = 11;
  Tensor x = randn({2, 3, C}, 1, DType::f64, 3.0, 2.0), w = randn({C}, 2), b = randn({C}, 3);
  auto y = kernels::layer_norm(ag::Variable(x), ag::Variable(w), ag::Variable(b), 1e-5).data().to_double_vector();
  auto xv = x.to_double_vector(), wv = w.to_double_vector(), bv = b.to_double_vector();
  for (int64_t r = 0; r < R; ++r) {
    double mu = 0, var = 0;
    for (int64_t c = 0; c < C; ++c) mu += xv[size_t(r * C + c)] / C;
    for (int64_t c = 0; c < C; ++c) var += std::pow(xv[size_t(r * C + c)] - mu, 2) / C;
    for (int64_t c = 0; c < C; ++c)
      EXPECT_NEAR(y[size_t(r * C + c)], (xv[size_t(r * C + c)] - mu) / std::sqrt(var + 1e-5) * wv[size_t(c)] + bv[size_t(c)],
                  1e-12);
  }
}

TEST(Norms, RmsNormValues) {
  const int64_t R = 5, C = 7;
  Tensor x = randn({R, C}, 4), w = randn({C}, 5);
  auto y = kernels::rms_norm(ag::Variable(x), ag::Variable(w), 1e-6).data().to_double_vector();
  auto xv = x.to_double_vector(), wv = w.to_double_vector();
  for (int64_t r = 0; r < R; ++r) {
    double ms = 0;
    for (int64_t c = 0; c < C; ++c) ms += xv[size_t(r * C + c)] * xv[size_t(r * C + c)] / C;
    for (int64_t c = 0; c < C; ++c)
      EXPECT_NEAR(y[size_t(r * C + c)], xv[size_t(r * C + c)] / std::sqrt(ms + 1e-6) * wv[size_t(c)], 1e-12);
  }
}

TEST(Norms, LayerNormGradcheck) {
  std::string err = ag::gradcheck(
      [](const std::vector<ag::Variable>& in) { return kernels::layer_norm(in[0], in[1], in[2], 1e-5); },
      {randn({3, 4, 9}, 11), randn({9}, 12), randn({9}, 13)});
  EXPECT_EQ(err, "");
  err = ag::gradcheck(
      [](const std::vector<ag::Variable>& in) { return kernels::layer_norm(in[0], ag::Variable(), ag::Variable(), 1e-5); },
      {randn({5, 6}, 14)});
  EXPECT_EQ(err, "") << "(no affine)";
}

TEST(Norms, RmsNormGradcheck) {
  std::string err =
      ag::gradcheck([](const std::vector<ag::Variable>& in) { return kernels::rms_norm(in[0], in[1], 1e-6); },
                    {randn({3, 4, 9}, 21), randn({9}, 22)});
  EXPECT_EQ(err, "");
  err = ag::gradcheck([](const std::vector<ag::Variable>& in) { return kernels::rms_norm(in[0], ag::Variable(), 1e-6); },
                      {randn({5, 6}, 23)});
  EXPECT_EQ(err, "") << "(no weight)";
}

TEST(Norms, F32MatchesF64) {
  Tensor x = randn({37, 64}, 31), w = randn({64}, 32), b = randn({64}, 33), g = randn({37, 64}, 34);
  for (bool rms : {false, true}) {
    auto f64 = kernels::norm_forward(x, w, rms ? Tensor() : b, 1e-5, rms);
    auto f32 = kernels::norm_forward(x.to(DType::f32), w.to(DType::f32), rms ? Tensor() : b.to(DType::f32), 1e-5, rms);
    EXPECT_LT(max_abs_diff(f32.y, f64.y), 1e-5);
    auto g64 = kernels::norm_backward(g, x, w, f64.mean, f64.rstd, rms, true, true, !rms);
    auto g32 = kernels::norm_backward(g.to(DType::f32), x.to(DType::f32), w.to(DType::f32), f32.mean, f32.rstd, rms,
                                      true, true, !rms);
    EXPECT_LT(max_abs_diff(g32.x, g64.x), 1e-4);
    EXPECT_LT(max_abs_diff(g32.weight, g64.weight), 1e-4);
    if (!rms) {
      EXPECT_LT(max_abs_diff(g32.bias, g64.bias), 1e-4);
    }
  }
}

TEST(Norms, BadInputsNameTheTensors) {
  auto expect_bad = [](auto&& fn, const std::string& what) {
    try {
      fn();
      ADD_FAILURE() << "no error for " << what;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::BadInput);
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  ag::Variable x(Tensor::zeros({4, 8})), w(Tensor::zeros({7})), b(Tensor::zeros({8}));
  expect_bad([&] { kernels::layer_norm(x, w, b, 1e-5); }, "layer_norm: weight must be (C) = [8] for x [4, 8], got [7]");
  expect_bad([&] { kernels::layer_norm(x, b, ag::Variable(Tensor::zeros({8}, DType::f64)), 1e-5); }, "bias is f64");
  expect_bad([&] { kernels::rms_norm(x, w, 1e-5); }, "rms_norm: weight");
  expect_bad([&] { kernels::rms_norm(ag::Variable(Tensor::zeros({4, 8}, DType::i64)), b, 1e-5); }, "i64");
}

TEST(NormsCuda, MatchesCpu) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (auto [R, C] : {std::pair<int64_t, int64_t>{1, 1}, {7, 33}, {513, 100}, {300, 1027}}) {
    for (bool rms : {false, true}) {
      for (DType dt : {DType::f32, DType::f64}) {
        SCOPED_TRACE(cat("R=", R, " C=", C, " rms=", rms, " ", dtype_name(dt)));
        Tensor x = randn({R, C}, 41, dt, 1.0, 2.0), w = randn({C}, 42, dt), b = randn({C}, 43, dt),
               g = randn({R, C}, 44, dt);
        const Tensor bb = rms ? Tensor() : b;
        auto cpu = kernels::norm_forward(x, w, bb, 1e-5, rms);
        auto cu = [](const Tensor& t) { return t.defined() ? t.to(Device::cuda()) : t; };
        auto gpu = kernels::norm_forward(cu(x), cu(w), cu(bb), 1e-5, rms);
        const double tol = dt == DType::f32 ? 1e-4 : 1e-11;
        EXPECT_LT(max_abs_diff(gpu.y.to(Device::cpu()), cpu.y), tol);
        EXPECT_LT(max_abs_diff(gpu.rstd.to(Device::cpu()), cpu.rstd), tol);
        auto gc = kernels::norm_backward(g, x, w, cpu.mean, cpu.rstd, rms, true, true, !rms);
        auto gg = kernels::norm_backward(cu(g), cu(x), cu(w), gpu.mean, gpu.rstd, rms, true, true, !rms);
        EXPECT_LT(max_abs_diff(gg.x.to(Device::cpu()), gc.x), tol * 10);
        EXPECT_LT(max_abs_diff(gg.weight.to(Device::cpu()), gc.weight), tol * std::sqrt(double(R)) * 10);
        if (!rms) {
          EXPECT_LT(max_abs_diff(gg.bias.to(Device::cpu()), gc.bias), tol * std::sqrt(double(R)) * 10);
        }
      }
    }
  }
}

TEST(NormsCuda, Bf16InputWithF32Weights) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  const int64_t R = 45, C = 96;
  Tensor x = randn({R, C}, 51, DType::f32).to(DType::bf16), w = randn({C}, 52, DType::f32), b = randn({C}, 53, DType::f32);
  auto ref = kernels::norm_forward(x.to(DType::f32), w, b, 1e-5, false);  // f32 reference on the rounded input
  auto gpu = kernels::norm_forward(x.to(Device::cuda()), w.to(Device::cuda()), b.to(Device::cuda()), 1e-5, false);
  EXPECT_EQ(gpu.y.dtype(), DType::bf16);
  EXPECT_LT(max_abs_diff(gpu.y.to(Device::cpu()).to(DType::f32), ref.y), 0.05);  // bf16 output rounding
  ag::Variable xv(x.to(Device::cuda()), true), wv(w.to(Device::cuda()), true), bv(b.to(Device::cuda()), true);
  ag::sum(ag::cast(kernels::layer_norm(xv, wv, bv, 1e-5), DType::f32)).backward();
  EXPECT_EQ(wv.grad().dtype(), DType::f32);
  EXPECT_EQ(xv.grad().dtype(), DType::bf16);
  // d sum(y) / d b = number of rows.
  for (double v : bv.grad().to_double_vector()) EXPECT_NEAR(v, double(R), 1e-3);
}
