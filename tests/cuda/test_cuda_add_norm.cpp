// Fused residual add + norm on CUDA against the CPU reference: odd widths (37, 768, 2050), more rows than
// one grad_w chunk (256), x in f32 / bf16 / f16 / f64, weights in f32 or x's dtype, output in x's dtype
// or bf16; forward (y, r, mean, rstd), backward (gr, grad_w, grad_b), the autograd op end to end, and
// bit-identical weight gradients run to run.
#include "tests/cuda/cuda_test_util.h"

#include "autograd/functions.h"
#include "kernels/norms/add_norm.h"

namespace ssm {
namespace {

using test::close;
using test::gpu;
using test::rand_cpu;

struct Case {
  int64_t rows, C;
};
// 5000 x 768: more rows than the fused backward's resident grid holds (its warps take several rows each); 2050
// columns: over its 1024, the two-pass weight gradients.
const std::vector<Case> kCases = {{300, 37}, {7, 768}, {5, 2050}, {1, 1}, {5000, 768}};

// f32 results vs the CPU's (double-accumulated) f32: the sums run in a different order.
test::Tol f32_tol(int64_t n) { return {1e-4, 2e-5 * std::sqrt(double(n))}; }

struct DtypeCase {
  DType x, w, y;
};
const std::vector<DtypeCase> kDtypes = {
    {DType::f32, DType::f32, DType::f32},   {DType::f32, DType::f32, DType::bf16}, {DType::bf16, DType::f32, DType::bf16},
    {DType::bf16, DType::bf16, DType::bf16}, {DType::f16, DType::f32, DType::f16},  {DType::f64, DType::f64, DType::f64},
};

std::string label(const DtypeCase& d, const Case& c, bool rms, bool res) {
  return cat(dtype_name(d.x), "/", dtype_name(d.w), "->", dtype_name(d.y), " rows=", c.rows, " C=", c.C,
             rms ? " rms" : " layer", res ? " +residual" : "");
}

TEST(CudaAddNorm, ForwardBackwardMatchCpu) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (const Case& c : kCases)
    for (const DtypeCase& d : kDtypes)
      for (bool rms : {true, false})
        for (bool with_res : {true, false}) {
          SCOPED_TRACE(label(d, c, rms, with_res));
          const DType A = d.x == DType::f64 ? DType::f64 : DType::f32;
          const Tensor x = rand_cpu({c.rows, c.C}, d.x, -2, 2, 1);
          const Tensor res = with_res ? rand_cpu({c.rows, c.C}, A, -1, 3, 2) : Tensor();
          const Tensor w = rand_cpu({c.C}, d.w, 0.5, 1.5, 3);
          const Tensor b = rms ? Tensor() : rand_cpu({c.C}, d.w, -0.5, 0.5, 4);
          auto gpu_or_null = [](const Tensor& t) { return t.defined() ? gpu(t) : Tensor(); };
          auto cf = kernels::add_norm_reference_forward(x, res, w, b, 1e-5, rms, d.y);
          auto gf = kernels::add_norm_forward(gpu(x), gpu_or_null(res), gpu(w), gpu_or_null(b), 1e-5, rms, d.y);
          const test::Tol ta = A == DType::f64 ? test::tol_for(DType::f64) : f32_tol(c.C);
          EXPECT_TRUE(close(gf.residual, cf.residual, ta));
          EXPECT_TRUE(close(gf.rstd, cf.rstd, ta));
          if (!rms) {
            EXPECT_TRUE(close(gf.mean, cf.mean, ta));
          }
          // y: one rounding to the output dtype (bf16 / f16), or f32 with reordered sums.
          EXPECT_TRUE(close(gf.y, cf.y, d.y == A ? ta : test::tol_for(d.y)));

          const Tensor gy = rand_cpu({c.rows, c.C}, d.y, -1, 1, 5);
          auto cg = kernels::add_norm_reference_backward(gy, cf.residual, w, cf.mean, cf.rstd, rms, true, true, !rms);
          auto gg = kernels::add_norm_backward(gpu(gy), gf.residual, gpu(w), gf.mean, gf.rstd, rms, true, true, !rms);
          EXPECT_TRUE(close(gg.residual, cg.residual, A == DType::f64 ? ta : f32_tol(c.C)));
          const test::Tol tw = d.w == DType::f64 ? test::Tol{1e-10, 1e-11}
                               : d.w == DType::f32 ? f32_tol(c.rows)
                                                   : test::tol_for(d.w);
          EXPECT_TRUE(close(gg.weight, cg.weight, tw));
          if (!rms) {
            EXPECT_TRUE(close(gg.bias, cg.bias, tw));
          }
        }
}

TEST(CudaAddNorm, AutogradMatchesCpu) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  const int64_t rows = 260, C = 37;
  for (DType xt : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(xt));
    const Tensor x = rand_cpu({2, rows / 2, C}, xt, -2, 2, 11), res = rand_cpu({2, rows / 2, C}, DType::f32, -1, 1, 12);
    const Tensor w = rand_cpu({C}, DType::f32, 0.5, 1.5, 13), b = rand_cpu({C}, DType::f32, -0.5, 0.5, 14);
    const Tensor gy = rand_cpu({2, rows / 2, C}, xt, -1, 1, 15), gr = rand_cpu({2, rows / 2, C}, DType::f32, -1, 1, 16);
    struct Grads {
      Tensor x, res, w, b;
    };
    auto run = [&](Device dev) {
      // The CPU runs bf16 x as f32 (its reference converts anyway); the GPU keeps bf16.
      const Tensor xd = dev.is_cuda() ? x.to(dev) : x.to(DType::f32);
      ag::Variable xv(xd, true), rv(res.to(dev), true), wv(w.to(dev), true), bv(b.to(dev), true);
      auto out = kernels::add_norm(xv, rv, wv, bv, 1e-5, false);
      // loss = sum(gy * y) + sum(gr * r): both outputs carry gradient.
      ag::Variable loss = ag::add(ag::sum(ag::mul(ag::cast(out.y, DType::f32), ag::Variable(gy.to(dev, DType::f32)))),
                                  ag::sum(ag::mul(out.residual, ag::Variable(gr.to(dev)))));
      loss.backward();
      return Grads{xv.grad(), rv.grad(), wv.grad(), bv.grad()};
    };
    Grads c = run(Device::cpu()), g = run(Device::cuda(0));
    EXPECT_EQ(g.x.dtype(), xt);
    EXPECT_TRUE(close(g.x, c.x.to(xt), xt == DType::f32 ? f32_tol(C) : test::tol_for(xt)));
    EXPECT_TRUE(close(g.res, c.res, f32_tol(C)));
    EXPECT_TRUE(close(g.w, c.w, f32_tol(rows)));
    EXPECT_TRUE(close(g.b, c.b, f32_tol(rows)));
  }
}

TEST(CudaAddNorm, WeightGradientIsDeterministic) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  const Tensor r = gpu(rand_cpu({1000, 768}, DType::f32, -2, 2, 21)), w = gpu(rand_cpu({768}, DType::f32, 0.5, 1.5, 22));
  const Tensor b = gpu(rand_cpu({768}, DType::f32, -1, 1, 23)), gy = gpu(rand_cpu({1000, 768}, DType::bf16, -1, 1, 24));
  auto f = kernels::add_norm_forward(r, Tensor(), w, b, 1e-5, false, DType::bf16);
  auto g1 = kernels::add_norm_backward(gy, f.residual, w, f.mean, f.rstd, false, true, true, true);
  auto g2 = kernels::add_norm_backward(gy, f.residual, w, f.mean, f.rstd, false, true, true, true);
  EXPECT_TRUE(test::same_bits(g1.weight, g2.weight.to(Device::cpu())));
  EXPECT_TRUE(test::same_bits(g1.bias, g2.bias.to(Device::cpu())));
  EXPECT_TRUE(test::same_bits(g1.residual, g2.residual.to(Device::cpu())));
}

}  // namespace
}  // namespace ssm
