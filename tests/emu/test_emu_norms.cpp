// LayerNorm / RMSNorm's CUDA kernels (kernels/norms/norms_cuda.cu) run by the CUDA emulator (cuda_emu.h) on the
// CPU against the CPU path of the same ops (in f32): odd widths (37, 768, 1030), more rows than a block, x in f32
// and bf16 with f32 weights; forward (y, mean, rstd) and backward (grad x, grad w, grad b).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/tensor.h"
#include "kernels/norms/norms.h"
#include "tests/cuda/cuda_test_util.h"

namespace {
// The CPU ops, named before emu_names.h renames norm_forward and norm_backward.
constexpr auto cpu_norm_forward = &ssm::kernels::norm_forward;
constexpr auto cpu_norm_backward = &ssm::kernels::norm_backward;
}  // namespace

#include "tests/emu/emu_names.h"
// (after emu_names.h: declares the emulated entry points)
#include "kernels/norms/norms_cuda.h"

namespace ssm {
namespace {

using test::rand_cpu;

test::Tol f32_tol(int64_t n) { return {1e-4, 2e-5 * std::sqrt(double(n))}; }

using test::all_near;

TEST(EmuNorms, ForwardBackwardMatchCpu) {
  struct Case {
    int64_t rows, C;
  };
  for (const Case c : {Case{70, 37}, Case{5, 768}, Case{3, 1030}})
    for (DType xt : {DType::f32, DType::bf16})
      for (bool rms : {true, false}) {
        SCOPED_TRACE(cat(dtype_name(xt), " rows=", c.rows, " C=", c.C, rms ? " rms" : " layer"));
        const Tensor x = rand_cpu({c.rows, c.C}, xt, -2, 2, 1);
        const Tensor w = rand_cpu({c.C}, DType::f32, 0.5, 1.5, 3);
        const Tensor b = rms ? Tensor() : rand_cpu({c.C}, DType::f32, -0.5, 0.5, 4);
        const Tensor gy = rand_cpu({c.rows, c.C}, xt, -1, 1, 5);
        // The CPU op runs f32 (bf16 x and grad y converted: the values the kernels read).
        const Tensor x32 = x.to(DType::f32), gy32 = gy.to(DType::f32);
        const auto ref = cpu_norm_forward(x32, w, b, 1e-5, rms);
        const auto gref = cpu_norm_backward(gy32, x32, w, ref.mean, ref.rstd, rms, true, true, !rms);
        kernels::NormForward out;
        out.y = Tensor::full(x.shape(), std::nan(""), xt);
        out.rstd = Tensor::full({c.rows}, std::nan(""), DType::f32);
        if (!rms) out.mean = Tensor::full({c.rows}, std::nan(""), DType::f32);
        kernels::cuda::norm_forward(x, w, b, 1e-5, rms, out.y, out.mean, out.rstd);
        const test::Tol ty = xt == DType::f32 ? f32_tol(c.C) : test::tol_for(xt);
        EXPECT_TRUE(all_near(out.y, ref.y, ty)) << "y";
        EXPECT_TRUE(all_near(out.rstd, ref.rstd, f32_tol(c.C))) << "rstd";
        if (!rms) { EXPECT_TRUE(all_near(out.mean, ref.mean, f32_tol(c.C))) << "mean"; }

        Tensor gx = Tensor::full(x.shape(), std::nan(""), xt);
        Tensor gw = Tensor::zeros({c.C}, DType::f32), gb = rms ? Tensor() : Tensor::zeros({c.C}, DType::f32);
        kernels::cuda::norm_backward(gy, x, w, out.mean, out.rstd, rms, &gx, &gw, rms ? nullptr : &gb);
        EXPECT_TRUE(all_near(gx, gref.x, ty)) << "grad x";
        EXPECT_TRUE(all_near(gw, gref.weight, f32_tol(c.rows))) << "grad weight";
        if (!rms) { EXPECT_TRUE(all_near(gb, gref.bias, f32_tol(c.rows))) << "grad bias"; }
      }
}

}  // namespace
}  // namespace ssm
