// The causal conv1d's CUDA kernels (kernels/conv1d/causal_conv1d_cuda.cu), run by the CUDA emulator
// (cuda_emu.h) on the CPU, against the CPU reference in f32: every vector width (D = 37: 1 channel per thread,
// 38: 2, 12 and 64: 4), W = 2..4, every flag, lengths across the kernels' time tiles (1, 3, 70, 300), f32 and
// bf16; then the forward's segments and chunks (SegmentsAndChunks), f16 too. Tolerances as
// tests/cuda/test_cuda_causal_conv1d.cpp's.
#include <gtest/gtest.h>

#include <array>
#include <cstdlib>
#include <exception>
#include <string>
#include <cstdint>
#include <random>
#include <vector>

#include "core/tensor.h"
#include "kernels/conv1d/causal_conv1d.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/emu/emu_names.h"
// (after emu_names.h: declares the emulated entry points)
#include "kernels/conv1d/causal_conv1d_cuda.h"

using namespace ssm;
using test::rand_cpu;
using test::Tol;

namespace {

Tol act_tol(DType dt) {
  if (dt == DType::bf16) return {1e-2, 1e-3};
  if (dt == DType::f16) return {2e-3, 1e-4};
  return {1e-5, 1e-5};
}
Tol sum_tol(int64_t n) { return {1e-4, 1e-6 * double(n) + 1e-5}; }

using test::all_near;

Tensor documents(int64_t Bt, int64_t L, uint32_t seed) {  // a boundary about every 20 steps, and at t = 2
  std::mt19937 g(seed);
  std::vector<int32_t> v(size_t(Bt * L));
  for (int64_t b = 0; b < Bt; ++b) {
    int32_t id = 0;
    for (int64_t t = 0; t < L; ++t) {
      if (t > 0 && (g() % 20 == 0 || t == 2)) ++id;
      v[size_t(b * L + t)] = id;
    }
  }
  return Tensor::from_vector(v, {Bt, L});
}

void run_case(DType dt, int64_t Bt, int64_t L, int64_t D, int64_t W, bool bias, bool silu, bool init, bool seq,
              uint32_t seed) {
  SCOPED_TRACE(cat(dtype_name(dt), " (", Bt, ", ", L, ", ", D, ") W=", W, " bias=", bias, " silu=", silu,
                   " x_init=", init, " seq_idx=", seq));
  const Tensor x = rand_cpu({Bt, L, D}, dt, -2, 2, seed), w = rand_cpu({D, W}, DType::f32, -1, 1, seed + 1);
  const Tensor b = bias ? rand_cpu({D}, DType::f32, -1, 1, seed + 2) : Tensor();
  const Tensor xi = init ? rand_cpu({Bt, W - 1, D}, dt, -2, 2, seed + 3) : Tensor();
  const Tensor sq = seq ? documents(Bt, L, seed + 4) : Tensor();
  const Tensor g = rand_cpu({Bt, L, D}, dt, -1, 1, seed + 5);
  auto f32 = [](const Tensor& t) { return t.defined() ? t.to(DType::f32) : t; };
  const kernels::Conv1dInputs ref_in{f32(x), w, b, f32(xi), sq};
  const Tensor y_ref = kernels::causal_conv1d_reference_forward(ref_in, silu);
  const kernels::Conv1dGrads g_ref = kernels::causal_conv1d_reference_backward(ref_in, f32(g), silu);

  Tensor y = Tensor::full(x.shape(), std::nan(""), dt);
  kernels::cuda::causal_conv1d_forward(x, w, b, xi, sq, silu, y);
  EXPECT_TRUE(all_near(y, y_ref, act_tol(dt))) << "y";
  Tensor gx = Tensor::full(x.shape(), std::nan(""), dt), gw = Tensor::full({D, W}, std::nan(""), DType::f32);
  Tensor gb = bias ? Tensor::full({D}, std::nan(""), DType::f32) : Tensor();
  Tensor gxi = init ? Tensor::full(xi.shape(), std::nan(""), dt) : Tensor();
  kernels::cuda::causal_conv1d_backward(x, w, b, xi, sq, g, silu, &gx, init ? &gxi : nullptr, &gw, bias ? &gb : nullptr);
  EXPECT_TRUE(all_near(gx, g_ref.x, act_tol(dt))) << "grad x";
  EXPECT_TRUE(all_near(gw, g_ref.w, sum_tol(Bt * L))) << "grad w";
  if (bias) { EXPECT_TRUE(all_near(gb, g_ref.bias, sum_tol(Bt * L))) << "grad bias"; }
  if (init) { EXPECT_TRUE(all_near(gxi, g_ref.x_init, act_tol(dt))) << "grad x_init"; }
}

TEST(EmuCausalConv1d, MatchesCpu) {
  // (Bt, L, D); D = 264: three channel blocks of 4 channels a thread (the block's staged weights), the last
  // part-full.
  const std::vector<std::array<int64_t, 3>> shapes = {{2, 1, 37}, {3, 3, 12}, {1, 70, 38}, {2, 300, 64}, {1, 40, 264}};
  uint32_t seed = 100;
  for (DType dt : {DType::f32, DType::bf16})
    for (size_t si = 0; si < shapes.size(); ++si)
      for (int64_t W = 2; W <= 4; ++W) {
        const auto [Bt, L, D] = shapes[si];
        for (int combo : {0, 15, int((si * 3 + size_t(W)) % 16)}) {
          run_case(dt, Bt, L, D, W, combo & 1, combo & 2, combo & 4, combo & 8, seed);
          seed += 10;
        }
      }
}

TEST(EmuCausalConv1d, SegmentsAndChunks) {
  // The forward walks 64-step segments (one a warp, 4 a block; the call's choice at these sizes) in 8-step
  // chunks: L = 2*64 + 13 gives a row three segments in one block, the last part-full (its last chunk 5
  // steps), L = 128 two full ones (loads ahead past the end), L = 333 two blocks; documents cross chunk and
  // segment boundaries; D = 72 leaves lanes past D in the warp's document shuffles, 40 has 10 lanes of 4
  // channels, 42 21 lanes of 2.
  // The same at 16 and 8 steps a warp (SSM_CONV_FWD_STEPS; the call's own choice is 64 at these sizes).
  const std::vector<std::array<int64_t, 3>> shapes = {{2, 141, 72}, {1, 128, 12}, {1, 333, 40}, {2, 141, 42}};
  uint32_t seed = 900;
  for (const char* steps : {"", "16", "8"}) {
    SCOPED_TRACE(cat("SSM_CONV_FWD_STEPS=", steps));
    setenv("SSM_CONV_FWD_STEPS", steps, 1);
    for (DType dt : {DType::f32, DType::bf16, DType::f16})
      for (const auto& [Bt, L, D] : shapes)
        for (int64_t W = 2; W <= 4; ++W)
          for (int combo : {15, 12, 10, 1}) {  // all flags; x_init + seq_idx; silu + seq_idx; bias alone
            if (*steps && dt == DType::f16) continue;
            run_case(dt, Bt, L, D, W, combo & 1, combo & 2, combo & 4, combo & 8, seed);
            seed += 10;
          }
  }
  unsetenv("SSM_CONV_FWD_STEPS");
}

TEST(EmuCausalConv1d, StepsOverrideRefused) {  // not a multiple of the 8-step chunk: a message naming the variable
  setenv("SSM_CONV_FWD_STEPS", "12", 1);
  const Tensor x = rand_cpu({1, 20, 8}, DType::f32, -1, 1, 1), w = rand_cpu({8, 4}, DType::f32, -1, 1, 2);
  Tensor y = Tensor::empty({1, 20, 8}, DType::f32);
  try {
    kernels::cuda::causal_conv1d_forward(x, w, Tensor(), Tensor(), Tensor(), true, y);
    ADD_FAILURE() << "no error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("SSM_CONV_FWD_STEPS=12"), std::string::npos) << e.what();
  }
  unsetenv("SSM_CONV_FWD_STEPS");
}

}  // namespace
