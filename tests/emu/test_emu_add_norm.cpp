// The fused residual add + norm's CUDA kernels (kernels/norms/add_norm_cuda.cu) run by the CUDA emulator
// (cuda_emu.h) on the CPU against the CPU reference: odd widths (37, 768, 1030, 40) and more rows than one block,
// RMSNorm and LayerNorm, with and without a residual, x in f32 and bf16 (weights f32), y in x's dtype or bf16;
// forward (y, r, mean, rstd) and backward (grad r, grad w, grad b). Tolerances as tests/cuda/test_cuda_add_norm.cpp's.
#include <gtest/gtest.h>

#include <cmath>

#include "core/tensor.h"
#include "kernels/norms/add_norm.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/emu/emu_names.h"
// (after emu_names.h: declares the emulated entry points)
#include "kernels/norms/add_norm_cuda.h"

namespace ssm {
namespace {

using test::rand_cpu;

test::Tol f32_tol(int64_t n) { return {1e-4, 2e-5 * std::sqrt(double(n))}; }

using test::all_near;

TEST(EmuAddNorm, ForwardBackwardMatchCpu) {
  struct Case {
    int64_t rows, C;
  };
  // 2500 rows: more than the fused backward's resident grid holds at once (264 blocks of 8 rows), so its warps
  // take several rows each; 1030 columns: over its 1024, the two-pass path.
  for (const Case c : {Case{70, 37}, Case{5, 768}, Case{3, 1030}, Case{2500, 40}})
    for (DType xt : {DType::f32, DType::bf16})
      for (DType yt : {xt, DType::bf16})
        for (bool rms : {true, false})
          for (bool with_res : {true, false}) {
            SCOPED_TRACE(cat(dtype_name(xt), "->", dtype_name(yt), " rows=", c.rows, " C=", c.C, rms ? " rms" : " layer",
                             with_res ? " +residual" : ""));
            const Tensor x = rand_cpu({c.rows, c.C}, xt, -2, 2, 1);
            const Tensor res = with_res ? rand_cpu({c.rows, c.C}, DType::f32, -1, 3, 2) : Tensor();
            const Tensor w = rand_cpu({c.C}, DType::f32, 0.5, 1.5, 3);
            const Tensor b = rms ? Tensor() : rand_cpu({c.C}, DType::f32, -0.5, 0.5, 4);
            const auto ref = kernels::add_norm_reference_forward(x, res, w, b, 1e-5, rms, yt);
            kernels::AddNormForward out;
            out.y = Tensor::full(x.shape(), std::nan(""), yt);
            out.residual = Tensor::full(x.shape(), std::nan(""), DType::f32);
            out.rstd = Tensor::full({c.rows}, std::nan(""), DType::f32);
            if (!rms) out.mean = Tensor::full({c.rows}, std::nan(""), DType::f32);
            kernels::cuda::add_norm_forward(x, res, w, b, 1e-5, rms, out.y, out.residual, out.mean, out.rstd);
            EXPECT_TRUE(all_near(out.residual, ref.residual, f32_tol(c.C))) << "residual";
            EXPECT_TRUE(all_near(out.rstd, ref.rstd, f32_tol(c.C))) << "rstd";
            if (!rms) { EXPECT_TRUE(all_near(out.mean, ref.mean, f32_tol(c.C))) << "mean"; }
            EXPECT_TRUE(all_near(out.y, ref.y, yt == DType::f32 ? f32_tol(c.C) : test::tol_for(yt))) << "y";

            const Tensor gy = rand_cpu({c.rows, c.C}, yt, -1, 1, 5);
            const auto gref = kernels::add_norm_reference_backward(gy, ref.residual, w, ref.mean, ref.rstd, rms, true, true,
                                                                   !rms);
            Tensor gr = Tensor::full(x.shape(), std::nan(""), DType::f32);
            Tensor gw = Tensor::zeros({c.C}, DType::f32), gb = rms ? Tensor() : Tensor::zeros({c.C}, DType::f32);
            kernels::cuda::add_norm_backward(gy, out.residual, w, out.mean, out.rstd, rms, &gr, &gw, rms ? nullptr : &gb);
            EXPECT_TRUE(all_near(gr, gref.residual, f32_tol(c.C))) << "grad residual";
            EXPECT_TRUE(all_near(gw, gref.weight, f32_tol(c.rows))) << "grad weight";
            if (!rms) { EXPECT_TRUE(all_near(gb, gref.bias, f32_tol(c.rows))) << "grad bias"; }
          }
}

}  // namespace
}  // namespace ssm
