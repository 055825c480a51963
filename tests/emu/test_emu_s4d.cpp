// The S4D convolution-kernel CUDA kernels (kernels/s4/s4d_kernel_cuda.cu: K = C Vandermonde(dt A), forward and
// backward) run by the CUDA emulator (cuda_emu.h) on the CPU against the CPU path: odd H, M and L, f32 and f64,
// S4D-Lin-like parameters (dt in [1e-3, 1e-1], A = -1/2 + i pi m, with noise).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <tuple>
#include <vector>

#include "core/tensor.h"
#include "kernels/s4/s4d_kernel.h"

namespace {
// The CPU ops, named before emu_names.h renames s4d_kernel_forward and s4d_kernel_backward.
constexpr auto cpu_s4d_forward = &ssm::kernels::s4d_kernel_forward;
constexpr auto cpu_s4d_backward = &ssm::kernels::s4d_kernel_backward;
}  // namespace

#include "tests/emu/emu_names.h"
// (after emu_names.h: declares the emulated entry points)
#include "kernels/s4/s4_cuda.h"

namespace ssm {
namespace {

double max_rel_diff(const Tensor& got, const Tensor& want) {
  const std::vector<double> g = got.to_double_vector(), w = want.to_double_vector();
  double scale = 1, d = 0;
  for (double v : w) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < g.size(); ++i) d = std::max(d, std::abs(g[i] - w[i]));
  return g.size() == w.size() ? d / scale : INFINITY;
}

Tensor normal(const Shape& s, std::mt19937_64& g, double mean, double sd, DType dt) {
  std::normal_distribution<double> n(mean, sd);
  std::vector<double> v(size_t(shape_numel(s)));
  for (double& x : v) x = n(g);
  return Tensor::from_vector(v, s).to(dt);
}

TEST(EmuS4DKernel, ForwardBackwardMatchCpu) {
  for (auto [H, M, L] : {std::tuple<int64_t, int64_t, int64_t>{3, 4, 9}, {7, 33, 300}, {1, 1, 1}})
    for (DType dt : {DType::f32, DType::f64}) {
      SCOPED_TRACE(cat("H=", H, " M=", M, " L=", L, " ", dtype_name(dt)));
      std::mt19937_64 g(uint64_t(H * 100 + M));
      const Tensor log_dt = normal({H}, g, std::log(1e-2), 0.5, dt);
      const Tensor lar = normal({H, M}, g, std::log(0.5), 0.2, dt);
      std::vector<double> im(size_t(H * M));
      for (int64_t i = 0; i < H * M; ++i) im[size_t(i)] = M_PI * double(i % M) + 0.1 * double(i % 7);
      const Tensor aim = Tensor::from_vector(im, {H, M}).to(dt);
      const Tensor C = normal({H, M, 2}, g, 0, 1, dt);
      const double tol = dt == DType::f32 ? 1e-4 : 1e-11;

      const Tensor K_ref = cpu_s4d_forward(log_dt, lar, aim, C, L);
      Tensor K = Tensor::full({H, L}, std::nan(""), dt);
      kernels::cuda::s4d_kernel_forward(K, log_dt, lar, aim, C);
      EXPECT_LT(max_rel_diff(K, K_ref), tol);

      const Tensor G = normal({H, L}, g, 0, 1, dt);
      const auto ref = cpu_s4d_backward(G, log_dt, lar, aim, C);
      Tensor gdt = Tensor::zeros(log_dt.shape(), dt), glar = Tensor::zeros(lar.shape(), dt);
      Tensor gaim = Tensor::zeros(aim.shape(), dt), gC = Tensor::zeros(C.shape(), dt);
      kernels::cuda::s4d_kernel_backward(G, log_dt, lar, aim, C, gdt, glar, gaim, gC);
      EXPECT_LT(max_rel_diff(gdt, ref.log_dt), 2 * tol) << "log_dt";
      EXPECT_LT(max_rel_diff(glar, ref.log_A_real), 2 * tol) << "log_A_real";
      EXPECT_LT(max_rel_diff(gaim, ref.A_imag), 2 * tol) << "A_imag";
      EXPECT_LT(max_rel_diff(gC, ref.C), 2 * tol) << "C";
    }
}

}  // namespace
}  // namespace ssm
