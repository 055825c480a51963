// causal_conv and flip: FFT and direct paths against a plain double loop, float64 gradchecks, CUDA vs
// CPU, input errors.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "autograd/functions.h"
#include "kernels/s4/fft_conv.h"
#include "kernels/s4/flip.h"

using namespace ssm;
using ssm::kernels::ConvMethod;

namespace {

Tensor randn(const Shape& s, uint64_t seed, DType dt = DType::f64) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> n;
  std::vector<double> v(size_t(shape_numel(s)));
  for (auto& x : v) x = n(g);
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

// The definitions in fft_conv.h, literally, in double.
struct Ref {
  std::vector<double> y, gu, gk;
};
Ref reference(const Tensor& ut, const Tensor& kt, const Tensor& gt) {
  const int64_t B = ut.size(0), L = ut.size(1), H = ut.size(2), Lk = kt.size(1);
  auto u = ut.to_double_vector(), k = kt.to_double_vector(), g = gt.to_double_vector();
  Ref r{std::vector<double>(u.size()), std::vector<double>(u.size()), std::vector<double>(k.size())};
  auto U = [&](int64_t b, int64_t t, int64_t h) { return u[size_t((b * L + t) * H + h)]; };
  auto G = [&](int64_t b, int64_t t, int64_t h) { return g[size_t((b * L + t) * H + h)]; };
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < L; ++t)
      for (int64_t h = 0; h < H; ++h) {
        double y = 0, gu = 0;
        for (int64_t s = 0; s <= std::min(t, Lk - 1); ++s) y += k[size_t(h * Lk + s)] * U(b, t - s, h);
        for (int64_t tt = t; tt <= std::min(L - 1, t + Lk - 1); ++tt) gu += k[size_t(h * Lk + tt - t)] * G(b, tt, h);
        r.y[size_t((b * L + t) * H + h)] = y;
        r.gu[size_t((b * L + t) * H + h)] = gu;
      }
  for (int64_t h = 0; h < H; ++h)
    for (int64_t s = 0; s < Lk; ++s) {
      double acc = 0;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = s; t < L; ++t) acc += G(b, t, h) * U(b, t - s, h);
      r.gk[size_t(h * Lk + s)] = acc;
    }
  return r;
}

double max_abs_diff(const Tensor& a, const std::vector<double>& b) {
  auto x = a.to_double_vector();
  EXPECT_EQ(x.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - b[i]));
  return m;
}

void check_against_reference(int64_t B, int64_t L, int64_t H, int64_t Lk, ConvMethod method, DType dt, double tol) {
  SCOPED_TRACE(cat("B=", B, " L=", L, " H=", H, " Lk=", Lk, " method=", int(method), " dtype=", dtype_name(dt)));
  Tensor u = randn({B, L, H}, 1 + L, dt), k = randn({H, Lk}, 2 + L, dt), g = randn({B, L, H}, 3 + L, dt);
  const Ref r = reference(u, k, g);
  Tensor y = kernels::causal_conv_forward(u, k, method);
  EXPECT_EQ(y.shape(), u.shape());
  EXPECT_EQ(y.dtype(), dt);
  const double scale = std::sqrt(double(std::min(L, Lk)));  // typical output magnitude
  EXPECT_LT(max_abs_diff(y, r.y), tol * scale);
  Tensor gu, gk;
  kernels::causal_conv_backward(g, u, k, &gu, &gk, method);
  EXPECT_LT(max_abs_diff(gu, r.gu), tol * scale);
  EXPECT_LT(max_abs_diff(gk, r.gk), tol * std::sqrt(double(B * L)));
}

}  // namespace

TEST(CausalConv, FftMatchesDirectSumAtOddLengths) {
  for (int64_t L : {1, 7, 196, 333, 784}) {
    check_against_reference(3, L, 5, L, ConvMethod::Fft, DType::f64, 1e-11);
    check_against_reference(3, L, 5, (L + 1) / 2, ConvMethod::Fft, DType::f64, 1e-11);
    check_against_reference(2, L, 3, L, ConvMethod::Fft, DType::f32, 2e-5);
  }
}

TEST(CausalConv, DirectPathMatchesReference) {
  for (int64_t L : {1, 7, 50, 196}) {
    check_against_reference(3, L, 5, L, ConvMethod::Direct, DType::f64, 1e-12);
    check_against_reference(2, L, 9, std::max<int64_t>(1, L / 3), ConvMethod::Direct, DType::f32, 1e-5);
  }
}

TEST(CausalConv, AutoDispatchOnOddBatchAndQuickstartShape) {
  check_against_reference(5, 129, 4, 100, ConvMethod::Auto, DType::f32, 2e-5);  // odd B: last FFT pair half empty
  check_against_reference(1, 196, 7, 196, ConvMethod::Auto, DType::f64, 1e-11);
}

TEST(CausalConv, ImpulseResponseIsTheKernel) {
  // u = delta at t=0 -> y[b, t, h] = k[h, t] for t < Lk, 0 after.
  const int64_t L = 100, H = 3, Lk = 70;
  Tensor u = Tensor::zeros({1, L, H}, DType::f64);
  for (int64_t h = 0; h < H; ++h) u.narrow(1, 0, 1).narrow(2, h, 1).fill_(1.0);
  Tensor k = randn({H, Lk}, 9);
  auto y = kernels::causal_conv_forward(u, k, ConvMethod::Fft).to_double_vector();
  auto kv = k.to_double_vector();
  for (int64_t t = 0; t < L; ++t)
    for (int64_t h = 0; h < H; ++h)
      EXPECT_NEAR(y[size_t(t * H + h)], t < Lk ? kv[size_t(h * Lk + t)] : 0.0, 1e-12) << "t=" << t << " h=" << h;
}

TEST(CausalConv, GradcheckDirectPath) {
  for (int64_t Lk : {13, 5}) {
    SCOPED_TRACE(cat("Lk=", Lk));
    std::string err = ag::gradcheck(
        [](const std::vector<ag::Variable>& in) { return kernels::causal_conv(in[0], in[1]); },
        {randn({2, 13, 3}, 11), randn({3, Lk}, 12)});
    EXPECT_EQ(err, "");
  }
}

TEST(CausalConv, GradcheckFftPath) {
  ASSERT_FALSE(kernels::causal_conv_use_direct(70, 40));
  std::string err =
      ag::gradcheck([](const std::vector<ag::Variable>& in) { return kernels::causal_conv(in[0], in[1]); },
                    {randn({3, 70, 2}, 13), randn({2, 40}, 14)});
  EXPECT_EQ(err, "");
}

TEST(CausalConv, BadInputsNameTheTensors) {
  auto expect_bad = [](auto&& fn, const std::string& what) {
    try {
      fn();
      ADD_FAILURE() << "no error for " << what;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::BadInput);
      EXPECT_NE(std::string(e.what()).find("causal_conv"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_bad([] { kernels::causal_conv_forward(Tensor::zeros({4, 5}), Tensor::zeros({5, 4})); }, "u must be (B, L, H)");
  expect_bad([] { kernels::causal_conv_forward(Tensor::zeros({2, 8, 4}), Tensor::zeros({3, 8})); }, "[3, 8]");
  expect_bad([] { kernels::causal_conv_forward(Tensor::zeros({2, 8, 4}), Tensor::zeros({4, 9})); }, "L_k = 9");
  expect_bad([] { kernels::causal_conv_forward(Tensor::zeros({2, 8, 4}), Tensor::zeros({4, 8}, DType::f64)); },
             "f64");
}

TEST(Flip, ForwardAndGradcheck) {
  Tensor x = randn({3, 4, 5}, 21);
  Tensor y = kernels::flip_forward(x, 1);
  auto xv = x.to_double_vector(), yv = y.to_double_vector();
  for (int64_t a = 0; a < 3; ++a)
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t c = 0; c < 5; ++c) EXPECT_EQ(yv[size_t((a * 4 + i) * 5 + c)], xv[size_t((a * 4 + 3 - i) * 5 + c)]);
  // Flipping twice is the identity, also on a non-contiguous view.
  Tensor xt = x.transpose(0, 2);
  EXPECT_EQ(max_abs_diff(kernels::flip_forward(kernels::flip_forward(xt, -1), -1), xt.contiguous()), 0.0);
  for (int64_t d : {0, 1, -1}) {
    std::string err = ag::gradcheck(
        [d](const std::vector<ag::Variable>& in) { return kernels::flip(in[0], d); }, {randn({3, 4, 5}, 22)});
    EXPECT_EQ(err, "") << "dim " << d;
  }
  EXPECT_THROW(kernels::flip_forward(x, 3), Error);
}

// ---------------- CUDA vs CPU ----------------

TEST(CausalConvCuda, MatchesCpu) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  struct Case {
    int64_t B, L, H, Lk;
  };
  for (Case c : {Case{3, 1, 5, 1}, Case{2, 7, 3, 7}, Case{3, 197, 33, 197}, Case{5, 333, 17, 100}, Case{1, 784, 65, 784}}) {
    for (DType dt : {DType::f32, DType::f64}) {
      SCOPED_TRACE(cat("B=", c.B, " L=", c.L, " H=", c.H, " Lk=", c.Lk, " ", dtype_name(dt)));
      Tensor u = randn({c.B, c.L, c.H}, 31, dt), k = randn({c.H, c.Lk}, 32, dt), g = randn({c.B, c.L, c.H}, 33, dt);
      const double tol = (dt == DType::f32 ? 5e-5 : 1e-10) * std::sqrt(double(c.L));
      Tensor y_cpu = kernels::causal_conv_forward(u, k);
      Tensor y_gpu = kernels::causal_conv_forward(u.to(Device::cuda()), k.to(Device::cuda()));
      EXPECT_TRUE(y_gpu.device().is_cuda());
      EXPECT_LT(max_abs_diff(y_gpu.to(Device::cpu()), y_cpu), tol);
      Tensor gu_cpu, gk_cpu, gu_gpu, gk_gpu;
      kernels::causal_conv_backward(g, u, k, &gu_cpu, &gk_cpu);
      kernels::causal_conv_backward(g.to(Device::cuda()), u.to(Device::cuda()), k.to(Device::cuda()), &gu_gpu, &gk_gpu);
      EXPECT_LT(max_abs_diff(gu_gpu.to(Device::cpu()), gu_cpu), tol);
      EXPECT_LT(max_abs_diff(gk_gpu.to(Device::cpu()), gk_cpu), tol * std::sqrt(double(c.B)));
      // Only grad_k wanted.
      Tensor gk_only;
      kernels::causal_conv_backward(g.to(Device::cuda()), u.to(Device::cuda()), k.to(Device::cuda()), nullptr, &gk_only);
      EXPECT_LT(max_abs_diff(gk_only.to(Device::cpu()), gk_cpu), tol * std::sqrt(double(c.B)));
    }
  }
}

TEST(CausalConvCuda, AutogradOnDevice) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  Tensor u = randn({2, 45, 6}, 41, DType::f32), k = randn({6, 30}, 42, DType::f32);
  ag::Variable uc(u.to(Device::cuda()), true), kc(k.to(Device::cuda()), true);
  ag::sum(kernels::causal_conv(uc, kc)).backward();
  ag::Variable ul(u, true), kl(k, true);
  ag::sum(kernels::causal_conv(ul, kl)).backward();
  EXPECT_LT(max_abs_diff(uc.grad().to(Device::cpu()), ul.grad()), 1e-4);
  EXPECT_LT(max_abs_diff(kc.grad().to(Device::cpu()), kl.grad()), 1e-4);
}

TEST(FlipCuda, MatchesCpu) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (DType dt : {DType::f32, DType::f64, DType::bf16}) {
    Tensor x = randn({3, 7, 5}, 51, dt);
    for (int64_t d : {0, 1, 2}) {
      Tensor a = kernels::flip_forward(x.to(Device::cuda()), d).to(Device::cpu());
      EXPECT_EQ(max_abs_diff(a, kernels::flip_forward(x, d)), 0.0) << dtype_name(dt) << " dim " << d;
    }
  }
}
