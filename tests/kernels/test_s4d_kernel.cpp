// s4d_kernel: against a straightforward complex<double> evaluation of the definition, float64
// gradcheck of all four inputs, CUDA vs CPU, input errors.
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <random>

#include "autograd/functions.h"
#include "kernels/s4/s4d_kernel.h"

using namespace ssm;

namespace {

struct Params {
  Tensor log_dt, log_A_real, A_imag, C;
};

// S4D-Lin style initialisation with some noise: dt in [1e-3, 1e-1], A = -1/2 + i pi m.
Params make_params(int64_t H, int64_t M, uint64_t seed, DType dt = DType::f64) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u01(0, 1);
  std::normal_distribution<double> n;
  std::vector<double> ldt(static_cast<size_t>(H)), lar(static_cast<size_t>(H * M)), aim(static_cast<size_t>(H * M)),
      c(static_cast<size_t>(H * M * 2));
  for (auto& v : ldt) v = std::log(1e-3) + u01(g) * (std::log(1e-1) - std::log(1e-3));
  for (int64_t i = 0; i < H * M; ++i) {
    lar[size_t(i)] = std::log(0.5) + 0.2 * n(g);
    aim[size_t(i)] = M_PI * double(i % M) + 0.1 * n(g);
  }
  for (auto& v : c) v = n(g) * std::sqrt(0.5);
  auto mk = [&](const std::vector<double>& v, const Shape& s) {
    Tensor t = Tensor::from_vector(v, s);
    return dt == DType::f64 ? t : t.to(dt);
  };
  return {mk(ldt, {H}), mk(lar, {H, M}), mk(aim, {H, M}), mk(c, {H, M, 2})};
}

// K[h, l] = 2 Re sum_m C (exp(dtA) - 1) / A exp(dtA l), evaluated term by term.
std::vector<double> reference(const Params& p, int64_t L) {
  const int64_t H = p.log_dt.size(0), M = p.log_A_real.size(1);
  auto ldt = p.log_dt.to_double_vector(), lar = p.log_A_real.to_double_vector(), aim = p.A_imag.to_double_vector(),
       c = p.C.to_double_vector();
  std::vector<double> K(size_t(H * L));
  for (int64_t h = 0; h < H; ++h)
    for (int64_t l = 0; l < L; ++l) {
      std::complex<double> s = 0;
      for (int64_t m = 0; m < M; ++m) {
        const size_t hm = size_t(h * M + m);
        const std::complex<double> A(-std::exp(lar[hm]), aim[hm]);
        const std::complex<double> dtA = std::exp(ldt[size_t(h)]) * A;
        const std::complex<double> C(c[2 * hm], c[2 * hm + 1]);
        s += C * (std::exp(dtA) - 1.0) / A * std::exp(dtA * double(l));
      }
      K[size_t(h * L + l)] = 2 * s.real();
    }
  return K;
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}
double max_abs(const std::vector<double>& a) {
  double m = 0;
  for (double v : a) m = std::max(m, std::abs(v));
  return m;
}

}  // namespace

TEST(S4DKernel, MatchesComplexReference) {
  for (auto [H, M, L] : {std::tuple<int64_t, int64_t, int64_t>{3, 4, 9}, {5, 32, 784}, {2, 7, 1}, {4, 16, 333}}) {
    SCOPED_TRACE(cat("H=", H, " M=", M, " L=", L));
    Params p = make_params(H, M, 7 + L);
    const auto ref = reference(p, L);
    Tensor K = kernels::s4d_kernel_forward(p.log_dt, p.log_A_real, p.A_imag, p.C, L);
    EXPECT_EQ(K.shape(), (Shape{H, L}));
    EXPECT_EQ(K.dtype(), DType::f64);
    EXPECT_LT(max_abs_diff(K.to_double_vector(), ref), 1e-12 * std::max(1.0, max_abs(ref)));
    // f32 tensors: same math in double inside, rounded once.
    Params pf = make_params(H, M, 7 + L, DType::f32);
    Tensor Kf = kernels::s4d_kernel_forward(pf.log_dt, pf.log_A_real, pf.A_imag, pf.C, L);
    EXPECT_EQ(Kf.dtype(), DType::f32);
    EXPECT_LT(max_abs_diff(Kf.to_double_vector(), reference(pf, L)), 1e-5 * std::max(1.0, max_abs(ref)));
  }
}

TEST(S4DKernel, FirstTapIsTwiceTheRealSumOfCt) {
  // K[h, 0] = 2 Re sum_m Ct: with one mode, A = -1 (imag 0), dt = 1, C = 1: Ct = (e^-1 - 1)/(-1).
  Tensor ldt = Tensor::from_vector(std::vector<double>{0.0}, {1});
  Tensor lar = Tensor::from_vector(std::vector<double>{0.0}, {1, 1});
  Tensor aim = Tensor::from_vector(std::vector<double>{0.0}, {1, 1});
  Tensor C = Tensor::from_vector(std::vector<double>{1.0, 0.0}, {1, 1, 2});
  auto K = kernels::s4d_kernel_forward(ldt, lar, aim, C, 3).to_double_vector();
  const double ct = 1 - std::exp(-1.0);
  EXPECT_NEAR(K[0], 2 * ct, 1e-15);
  EXPECT_NEAR(K[1], 2 * ct * std::exp(-1.0), 1e-15);
  EXPECT_NEAR(K[2], 2 * ct * std::exp(-2.0), 1e-15);
}

TEST(S4DKernel, GradcheckAllInputs) {
  Params p = make_params(3, 4, 99);
  // Larger steps than the S4D init so every term matters in the check.
  p.log_dt = Tensor::from_vector(std::vector<double>{std::log(0.05), std::log(0.2), std::log(0.5)}, {3});
  std::string err = ag::gradcheck(
      [](const std::vector<ag::Variable>& in) { return kernels::s4d_kernel(in[0], in[1], in[2], in[3], 9); },
      {p.log_dt, p.log_A_real, p.A_imag, p.C});
  EXPECT_EQ(err, "");
}

TEST(S4DKernel, BadInputsNameTheTensors) {
  Params p = make_params(3, 4, 1);
  auto expect_bad = [](auto&& fn, const std::string& what) {
    try {
      fn();
      ADD_FAILURE() << "no error for " << what;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::BadInput);
      EXPECT_NE(std::string(e.what()).find("s4d_kernel"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_bad([&] { kernels::s4d_kernel_forward(p.log_dt, p.log_A_real, p.A_imag, Tensor::zeros({3, 4}, DType::f64), 5); },
             "C must be (H, M, 2)");
  expect_bad([&] { kernels::s4d_kernel_forward(p.log_dt, p.log_A_real, Tensor::zeros({3, 5}, DType::f64), p.C, 5); },
             "A_imag [3, 5]");
  expect_bad([&] { kernels::s4d_kernel_forward(Tensor::zeros({2}, DType::f64), p.log_A_real, p.A_imag, p.C, 5); },
             "log_A_real");
  expect_bad([&] { kernels::s4d_kernel_forward(p.log_dt, p.log_A_real, p.A_imag, p.C, 0); }, "L must be >= 1");
  expect_bad([&] { kernels::s4d_kernel_forward(p.log_dt, p.log_A_real.to(DType::f32), p.A_imag, p.C, 5); }, "f32");
}

TEST(S4DKernelCuda, MatchesCpu) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (auto [H, M, L] : {std::tuple<int64_t, int64_t, int64_t>{3, 4, 9}, {7, 33, 785}, {128, 32, 784}, {1, 1, 1}}) {
    for (DType dt : {DType::f32, DType::f64}) {
      SCOPED_TRACE(cat("H=", H, " M=", M, " L=", L, " ", dtype_name(dt)));
      Params p = make_params(H, M, 5 + M, dt);
      auto cu = [](const Tensor& t) { return t.to(Device::cuda()); };
      Tensor K_cpu = kernels::s4d_kernel_forward(p.log_dt, p.log_A_real, p.A_imag, p.C, L);
      Tensor K_gpu = kernels::s4d_kernel_forward(cu(p.log_dt), cu(p.log_A_real), cu(p.A_imag), cu(p.C), L);
      const auto kc = K_cpu.to_double_vector();
      const double tol = (dt == DType::f32 ? 1e-4 : 1e-11) * std::max(1.0, max_abs(kc));
      EXPECT_LT(max_abs_diff(K_gpu.to(Device::cpu()).to_double_vector(), kc), tol);
      std::mt19937_64 g(3);
      std::normal_distribution<double> n;
      std::vector<double> gv(size_t(H * L));
      for (auto& v : gv) v = n(g);
      Tensor G = Tensor::from_vector(gv, {H, L}).to(dt);
      auto gc = kernels::s4d_kernel_backward(G, p.log_dt, p.log_A_real, p.A_imag, p.C);
      auto gg = kernels::s4d_kernel_backward(cu(G), cu(p.log_dt), cu(p.log_A_real), cu(p.A_imag), cu(p.C));
      for (auto [a, b, name] : {std::tuple<Tensor, Tensor, const char*>{gc.log_dt, gg.log_dt, "log_dt"},
                                {gc.log_A_real, gg.log_A_real, "log_A_real"},
                                {gc.A_imag, gg.A_imag, "A_imag"},
                                {gc.C, gg.C, "C"}}) {
        const auto av = a.to_double_vector();
        const double gt = (dt == DType::f32 ? 2e-4 : 1e-10) * std::max(1.0, max_abs(av));
        EXPECT_LT(max_abs_diff(b.to(Device::cpu()).to_double_vector(), av), gt) << name;
      }
    }
  }
}
