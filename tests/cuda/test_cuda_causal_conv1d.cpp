// causal_conv1d on CUDA against the CPU reference (the oracle): f32 / bf16 / f16 inputs (w and bias in
// f32 or x's dtype), odd L (1, 3, 1001) and odd D (37, 2050: scalar and 2-wide paths; 12, 64: 4- and
// 8-wide), W = 2..4, with and without bias, SiLU, x_init, seq_idx; outputs and every gradient; a
// misaligned input; the autograd op; bit-identical reruns.
//
// The reference runs in f32 on the CPU from the same (already rounded) inputs, so the only differences
// are f32 evaluation order (fma vs mul+add, __expf) and the final rounding of the GPU result to its dtype.
// Tolerances, |gpu - cpu| <= atol + rtol |cpu|:
//   y, grad_x, grad_x_init: f32 (1e-5, 1e-5); bf16 (1e-2, 1e-3) = 2.5 ulp; f16 (2e-3, 1e-4) = 4 ulp.
//   grad_w, grad_bias (sums over N = Bt*L terms, f32 accumulation on the GPU, f64 on the CPU): atol
//   grows with N: 1e-6 N; rtol 1e-4 in f32, the dtype's rtol when w is bf16/f16.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <random>

#include "autograd/variable.h"
#include "core/device.h"
#include "core/ops.h"
#include "kernels/conv1d/causal_conv1d.h"
#include "tests/cuda/cuda_test_util.h"

using namespace ssm;
using ssm::test::close;
using ssm::test::gpu;
using ssm::test::rand_cpu;
using ssm::test::same_bits;
using ssm::test::Tol;

namespace {

Tol act_tol(DType dt) {
  if (dt == DType::bf16) return {1e-2, 1e-3};
  if (dt == DType::f16) return {2e-3, 1e-4};
  return {1e-5, 1e-5};
}
Tol sum_tol(DType param_dt, int64_t n) {
  const double rtol = param_dt == DType::f32 ? 1e-4 : act_tol(param_dt).rtol;
  return {rtol, 1e-6 * double(n) + act_tol(param_dt).atol};
}

// Documents with random boundaries (about one every 40 steps, some of length 1), ids increasing.
Tensor random_seq(int64_t Bt, int64_t L, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<int32_t> v(size_t(Bt * L));
  for (int64_t b = 0; b < Bt; ++b) {
    int32_t id = int32_t(b * 1000);
    for (int64_t t = 0; t < L; ++t) {
      if (t > 0 && (g() % 40 == 0 || t == 2)) ++id;  // t == 2: an early boundary in every row
      v[size_t(b * L + t)] = id;
    }
  }
  return Tensor::from_vector(v, {Bt, L});
}

struct Case {
  DType dt, wdt;
  int64_t Bt, L, D, W;
  bool bias, silu, init, seq;
  std::string str() const {
    return cat(dtype_name(dt), " w:", dtype_name(wdt), " (", Bt, ", ", L, ", ", D, ") W=", W, " bias=", bias,
               " silu=", silu, " x_init=", init, " seq_idx=", seq);
  }
};

Tensor on_gpu(const Tensor& t) { return t.defined() ? gpu(t) : t; }
Tensor f32(const Tensor& t) { return t.defined() ? t.to(DType::f32) : t; }

void run_case(const Case& c, uint32_t seed) {
  SCOPED_TRACE(c.str());
  // Inputs in their dtypes (CPU), then the f32 copies the reference sees.
  Tensor x = rand_cpu({c.Bt, c.L, c.D}, c.dt, -2, 2, seed);
  Tensor w = rand_cpu({c.D, c.W}, c.wdt, -1, 1, seed + 1);
  Tensor b = c.bias ? rand_cpu({c.D}, c.wdt, -1, 1, seed + 2) : Tensor();
  Tensor xi = c.init ? rand_cpu({c.Bt, c.W - 1, c.D}, c.dt, -2, 2, seed + 3) : Tensor();
  Tensor sq = c.seq ? random_seq(c.Bt, c.L, seed + 4) : Tensor();
  Tensor g = rand_cpu({c.Bt, c.L, c.D}, c.dt, -1, 1, seed + 5);

  const kernels::Conv1dInputs ref_in{f32(x), f32(w), f32(b), f32(xi), sq};
  Tensor y_ref = kernels::causal_conv1d_reference_forward(ref_in, c.silu);
  kernels::Conv1dGrads g_ref = kernels::causal_conv1d_reference_backward(ref_in, f32(g), c.silu);

  const kernels::Conv1dInputs in{gpu(x), gpu(w), on_gpu(b), on_gpu(xi), on_gpu(sq)};
  Tensor y = kernels::causal_conv1d_forward(in, c.silu);
  ASSERT_EQ(y.dtype(), c.dt);
  EXPECT_TRUE(close(y.to(DType::f32), y_ref, act_tol(c.dt))) << "y";
  kernels::Conv1dGrads gg = kernels::causal_conv1d_backward(in, gpu(g), c.silu);
  ASSERT_EQ(gg.x.dtype(), c.dt);
  ASSERT_EQ(gg.w.dtype(), c.wdt);
  EXPECT_TRUE(close(gg.x.to(DType::f32), g_ref.x, act_tol(c.dt))) << "grad x";
  EXPECT_TRUE(close(gg.w.to(DType::f32), g_ref.w, sum_tol(c.wdt, c.Bt * c.L))) << "grad w";
  ASSERT_EQ(gg.bias.defined(), c.bias);
  if (c.bias) {
    ASSERT_EQ(gg.bias.dtype(), c.wdt);
    EXPECT_TRUE(close(gg.bias.to(DType::f32), g_ref.bias, sum_tol(c.wdt, c.Bt * c.L))) << "grad bias";
  }
  ASSERT_EQ(gg.x_init.defined(), c.init);
  if (c.init) {
    ASSERT_EQ(gg.x_init.dtype(), c.dt);
    EXPECT_TRUE(close(gg.x_init.to(DType::f32), g_ref.x_init, act_tol(c.dt))) << "grad x_init";
  }
}

}  // namespace

TEST(CudaCausalConv1d, MatchesCpu) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  const std::vector<std::array<int64_t, 3>> shapes = {{2, 1, 37}, {3, 3, 12}, {2, 1001, 37}, {2, 300, 64}, {1, 1001, 2050}};
  uint32_t seed = 100;
  for (DType dt : {DType::f32, DType::bf16, DType::f16})
    for (size_t si = 0; si < shapes.size(); ++si)
      for (int64_t W = 2; W <= 4; ++W) {
        const auto [Bt, L, D] = shapes[si];
        // Every flag combination over the (shape, W) grid: all off, all on, and a rotating one.
        for (int combo : {0, 15, int((si * 3 + size_t(W)) % 16)}) {
          const DType wdt = (combo + int(si)) % 2 ? DType::f32 : dt;
          run_case({dt, wdt, Bt, L, D, W, bool(combo & 1), bool(combo & 2), bool(combo & 4), bool(combo & 8)}, seed);
          seed += 10;
        }
      }
}

// A view starting one element into its storage: the kernels must fall back from vector loads.
TEST(CudaCausalConv1d, MisalignedInput) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  const int64_t Bt = 2, L = 33, D = 64, W = 4;
  for (DType dt : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dt));
    Tensor flat = rand_cpu({Bt * L * D + 1}, dt, -2, 2, 7);
    Tensor x = flat.narrow(0, 1, Bt * L * D).view({Bt, L, D});
    Tensor w = rand_cpu({D, W}, DType::f32, -1, 1, 8), g = rand_cpu({Bt, L, D}, dt, -1, 1, 9);
    Tensor xg = gpu(flat).narrow(0, 1, Bt * L * D).view({Bt, L, D});
    ASSERT_NE(reinterpret_cast<uintptr_t>(xg.data_ptr()) % 8, 0u);
    const kernels::Conv1dInputs ref_in{f32(x), w, Tensor(), Tensor(), Tensor()};
    const kernels::Conv1dInputs in{xg, gpu(w), Tensor(), Tensor(), Tensor()};
    EXPECT_TRUE(close(kernels::causal_conv1d_forward(in, true).to(DType::f32),
                      kernels::causal_conv1d_reference_forward(ref_in, true), act_tol(dt)));
    auto gg = kernels::causal_conv1d_backward(in, gpu(g), true);
    auto gr = kernels::causal_conv1d_reference_backward(ref_in, f32(g), true);
    EXPECT_TRUE(close(gg.x.to(DType::f32), gr.x, act_tol(dt)));
    EXPECT_TRUE(close(gg.w, gr.w, sum_tol(DType::f32, Bt * L)));
  }
}

TEST(CudaCausalConv1d, AutogradOp) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  const int64_t Bt = 2, L = 77, D = 40, W = 4;
  Tensor x = rand_cpu({Bt, L, D}, DType::bf16, -2, 2, 11), w = rand_cpu({D, W}, DType::f32, -1, 1, 12),
         b = rand_cpu({D}, DType::f32, -1, 1, 13), xi = rand_cpu({Bt, W - 1, D}, DType::bf16, -2, 2, 14),
         g = rand_cpu({Bt, L, D}, DType::bf16, -1, 1, 15);
  Tensor sq = random_seq(Bt, L, 16);
  ag::Variable xv(gpu(x), true), wv(gpu(w), true), bv(gpu(b), true), iv(gpu(xi), true);
  ag::Variable y = kernels::causal_conv1d(xv, wv, bv, iv, gpu(sq), true);
  y.backward(gpu(g));
  const kernels::Conv1dInputs ref_in{f32(x), w, b, f32(xi), sq};
  auto gr = kernels::causal_conv1d_reference_backward(ref_in, f32(g), true);
  EXPECT_TRUE(close(y.data().to(DType::f32), kernels::causal_conv1d_reference_forward(ref_in, true), act_tol(DType::bf16)));
  EXPECT_TRUE(close(xv.grad().to(DType::f32), gr.x, act_tol(DType::bf16)));
  EXPECT_TRUE(close(iv.grad().to(DType::f32), gr.x_init, act_tol(DType::bf16)));
  EXPECT_EQ(wv.grad().dtype(), DType::f32);
  EXPECT_TRUE(close(wv.grad(), gr.w, sum_tol(DType::f32, Bt * L)));
  EXPECT_TRUE(close(bv.grad(), gr.bias, sum_tol(DType::f32, Bt * L)));
}

// Same inputs twice: bit-identical outputs and gradients (no atomics; fixed reduction order).
TEST(CudaCausalConv1d, Deterministic) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  const int64_t Bt = 4, L = 1001, D = 2048, W = 4;
  Tensor x = gpu(rand_cpu({Bt, L, D}, DType::bf16, -2, 2, 21)), w = gpu(rand_cpu({D, W}, DType::f32, -1, 1, 22)),
         b = gpu(rand_cpu({D}, DType::f32, -1, 1, 23)), xi = gpu(rand_cpu({Bt, W - 1, D}, DType::bf16, -2, 2, 24)),
         g = gpu(rand_cpu({Bt, L, D}, DType::bf16, -1, 1, 25)), sq = gpu(random_seq(Bt, L, 26));
  const kernels::Conv1dInputs in{x, w, b, xi, sq};
  Tensor y1 = kernels::causal_conv1d_forward(in, true), y2 = kernels::causal_conv1d_forward(in, true);
  EXPECT_TRUE(same_bits(y1, y2.to(Device::cpu())));
  auto g1 = kernels::causal_conv1d_backward(in, g, true), g2 = kernels::causal_conv1d_backward(in, g, true);
  EXPECT_TRUE(same_bits(g1.x, g2.x.to(Device::cpu())));
  EXPECT_TRUE(same_bits(g1.w, g2.w.to(Device::cpu())));
  EXPECT_TRUE(same_bits(g1.bias, g2.bias.to(Device::cpu())));
  EXPECT_TRUE(same_bits(g1.x_init, g2.x_init.to(Device::cpu())));
}

TEST(CudaCausalConv1d, BadInputs) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  auto expect_bad = [](auto&& fn, const std::string& what) {
    try {
      fn();
      ADD_FAILURE() << "no error for " << what;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::BadInput);
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  Tensor x = Tensor::zeros({2, 5, 4}, DType::bf16, Device::cuda()), w = Tensor::zeros({4, 3}, DType::f32, Device::cuda());
  expect_bad([&] { kernels::causal_conv1d_forward({x.to(DType::f64), w.to(DType::f64), {}, {}, {}}, false); }, "x dtype f64");
  expect_bad([&] { kernels::causal_conv1d_forward({x, w.to(Device::cpu()), {}, {}, {}}, false); }, "w is on cpu but x is on cuda");
  expect_bad([&] { kernels::causal_conv1d_forward({x, w, {}, Tensor::zeros({2, 2, 4}, DType::f32, Device::cuda()), {}}, false); },
             "x_init is f32 but x is bf16");
  expect_bad([&] { kernels::causal_conv1d_forward({x, w, {}, {}, Tensor::zeros({2, 5}, DType::i32)}, false); },
             "seq_idx is on cpu");
}
