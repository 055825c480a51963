// The optimizers' CUDA kernels (kernels/optim/optim_cuda.cu: AdamW, SGD with momentum) run by the CUDA emulator
// (cuda_emu.h) on the CPU against the CPU optimizers: lengths around the 4-wide vector path (1, 3, 4, 1001,
// 4099), f32 and bf16 gradients, three steps. The kernels take the step's constants as the dispatcher
// (kernels/optim/adamw.cpp) computes them: decay 1 - lr wd, step size lr / (1 - beta1^t), 1 / sqrt(1 - beta2^t).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/tensor.h"
#include "kernels/optim/adamw.h"
#include "tests/cuda/cuda_test_util.h"

namespace {
// The CPU optimizers, named before emu_names.h renames adamw_step and sgd_step.
constexpr auto cpu_adamw_step = &ssm::kernels::adamw_step;
constexpr auto cpu_sgd_step = &ssm::kernels::sgd_step;
}  // namespace

#include "tests/emu/emu_names.h"
// (after emu_names.h: declares the emulated entry points)
#include "kernels/optim/optim_cuda.h"

namespace ssm {
namespace {

double max_diff(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_double_vector(), y = b.to_double_vector();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return x.size() == y.size() ? m : INFINITY;
}

TEST(EmuOptim, AdamWAndSgdMatchCpu) {
  const double lr = 1e-2, b1 = 0.9, b2 = 0.99, eps = 1e-8, wd = 0.05;
  for (int64_t n : {1, 3, 4, 1001, 4099})
    for (bool bf16_grad : {false, true}) {
      SCOPED_TRACE(cat("n=", n, " bf16_grad=", bf16_grad));
      const Tensor p0 = test::rand_cpu({n}, DType::f32, -1, 1, 3);
      Tensor pc = p0.clone(), mc = Tensor::zeros({n}), vc = Tensor::zeros({n});
      Tensor pe = p0.clone(), me = Tensor::zeros({n}), ve = Tensor::zeros({n});
      Tensor sc = p0.clone(), bc = Tensor::zeros({n}), se = p0.clone(), be = Tensor::zeros({n});
      for (int64_t t = 1; t <= 3; ++t) {
        Tensor g = test::rand_cpu({n}, DType::f32, -1, 1, uint32_t(10 + t));
        if (bf16_grad) g = g.to(DType::bf16).to(DType::f32);  // the CPU sees the same rounded values
        const Tensor ge = bf16_grad ? g.to(DType::bf16) : g;
        cpu_adamw_step(pc, g, mc, vc, lr, b1, b2, eps, wd, t);
        const double bc1 = 1 - std::pow(b1, double(t)), bc2 = 1 - std::pow(b2, double(t));
        kernels::cuda::adamw_step(pe, ge, me, ve, float(1 - lr * wd), float(b1), float(b2), float(lr / bc1),
                                  float(1 / std::sqrt(bc2)), float(eps));
        cpu_sgd_step(sc, g, bc, 0.1, 0.9, 1e-3, true);
        kernels::cuda::sgd_step(se, ge, &be, 0.1f, 0.9f, 1e-3f, true);
      }
      EXPECT_LT(max_diff(pe, pc), 1e-6);
      EXPECT_LT(max_diff(me, mc), 1e-6);
      EXPECT_LT(max_diff(ve, vc), 1e-6);
      EXPECT_LT(max_diff(se, sc), 1e-5);
    }
}

}  // namespace
}  // namespace ssm
