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

TEST(EmuOptim, AdamWListMatchesCpu) {
  // 53 parameters (two launches of at most 48), sizes around the chunk (4096) and the vector (4), some starting
  // 4 bytes into their storage (the scalar path), f32 and bf16 gradients, each its own lr, decay and step.
  const double b1 = 0.9, b2 = 0.99, eps = 1e-8;
  const std::vector<int64_t> sizes = {1, 3, 4, 4095, 4096, 4097, 10001, 8192, 37};
  struct Param {
    Tensor pc, mc, vc, g;     // the CPU's
    Tensor pe, me, ve, ge;    // the emulated kernel's (pe, me, ve 4 bytes into their storage when `offset`)
    double lr, wd;
    int64_t step;
  };
  // A copy of t, aligned or 4 bytes past an aligned start.
  auto placed = [](const Tensor& t, bool offset) {
    if (!offset) return t.clone();
    Tensor base = Tensor::zeros({t.numel() + 1}, t.dtype());
    Tensor view = base.narrow(0, 1, t.numel());
    view.copy_(t);
    return view;
  };
  std::vector<Param> ps;
  for (int k = 0; k < 53; ++k) {
    const int64_t n = sizes[size_t(k) % sizes.size()];
    const bool offset = k % 5 == 2, bf16_grad = k % 3 == 1;
    Param q;
    q.pc = test::rand_cpu({n}, DType::f32, -1, 1, uint32_t(100 + k));
    q.mc = test::rand_cpu({n}, DType::f32, -0.1, 0.1, uint32_t(300 + k));
    q.vc = test::rand_cpu({n}, DType::f32, 0, 0.01, uint32_t(500 + k));
    q.g = test::rand_cpu({n}, DType::f32, -1, 1, uint32_t(700 + k));
    if (bf16_grad) q.g = q.g.to(DType::bf16).to(DType::f32);  // the CPU sees the rounded values
    q.pe = placed(q.pc, offset);
    q.me = placed(q.mc, offset);
    q.ve = placed(q.vc, offset);
    q.ge = placed(bf16_grad ? q.g.to(DType::bf16) : q.g, offset);
    q.lr = 1e-3 * (1 + k % 4);
    q.wd = k % 2 ? 0.0 : 0.1;
    q.step = 1 + k % 7;
    ps.push_back(q);
  }
  std::vector<kernels::cuda::AdamWListItem> items;
  for (Param& q : ps) {
    cpu_adamw_step(q.pc, q.g, q.mc, q.vc, q.lr, b1, b2, eps, q.wd, q.step);
    const double bc1 = 1 - std::pow(b1, double(q.step)), bc2 = 1 - std::pow(b2, double(q.step));
    items.push_back({&q.pe, &q.ge, &q.me, &q.ve, float(1 - q.lr * q.wd), float(q.lr / bc1), float(1 / std::sqrt(bc2))});
  }
  kernels::cuda::adamw_step_list(items, float(b1), float(b2), float(eps));
  for (size_t k = 0; k < ps.size(); ++k) {
    SCOPED_TRACE(cat("parameter ", k, " of ", ps[k].pc.numel()));
    EXPECT_LT(max_diff(ps[k].pe, ps[k].pc), 1e-6);
    EXPECT_LT(max_diff(ps[k].me, ps[k].mc), 1e-6);
    EXPECT_LT(max_diff(ps[k].ve, ps[k].vc), 1e-6);
  }
}

}  // namespace
}  // namespace ssm
