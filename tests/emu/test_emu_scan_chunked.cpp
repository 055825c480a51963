// The chunked selective scan's CUDA kernels (kernels/selective_scan/scan_chunked_cuda.cu), run by the CUDA
// emulator (cuda_emu.h) on the CPU, against the f64 CPU reference: the forward (y, h_last, the saved chunk
// starts), the checkpoint pass, and the backward from its own states and from the forward's. Its host code
// runs as on the GPU, segments included (the emulated machine has an H100's 132 SMs, so these small shapes cut
// their rows as small shapes do there). Problems and tolerances: tests/cuda/scan_problem.h. The emulator is slow
// (every barrier switches 256 fibers), so the shapes are small but odd: lengths around the 128-step chunk,
// channel counts that leave a block of 16 part-empty, N across the 16-state tiles, resets, groups, every dtype.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "core/tensor.h"
#include "kernels/selective_scan/selective_scan.h"
#include "tests/cuda/scan_problem.h"
#include "tests/emu/emu_names.h"
// (after emu_names.h: declares the emulated entry points)
#include "kernels/selective_scan/scan_chunked_cuda.h"

using namespace ssm;
using kernels::ScanGrads;
using kernels::ScanInputs;
using kernels::ScanOptions;
using kernels::ScanOutputs;
using kernels::SegmentStarts;
using test::Case;

namespace {

constexpr DType f32 = DType::f32, bf16 = DType::bf16, f16 = DType::f16;


void check_case_once(const Case& c, const char* segs, uint32_t seed) {
  SCOPED_TRACE(test::describe(c) + (segs ? std::string(" segs ") + segs : std::string()));
  test::Env env({{"SSM_SCAN_CHUNK_SEGS", segs ? segs : ""}, {"SSM_SCAN_SEQ_SEGS", segs ? segs : ""}});  // empty: the rule
  const test::ScanProblem P = test::make_scan_problem(c, seed);
  ScanOptions opt;
  opt.delta_softplus = c.softplus;
  const ScanInputs ref_in = test::as_f64(P.in);
  const ScanOutputs ref = kernels::selective_scan_reference_forward(ref_in, opt);
  const test::Tol to = test::out_tol(c.dt);

  Tensor y = Tensor::full(P.in.u.shape(), std::nan(""), c.dt);  // poisoned
  Tensor h_last = Tensor::full({c.Bt, c.D, c.N}, std::nan(""), DType::f32);
  SegmentStarts starts;
  kernels::cuda::chunked_forward(P.in, opt, y, h_last, &starts);
  EXPECT_TRUE(test::near("y", y, ref.y, to));
  EXPECT_TRUE(test::near("h_last", h_last, ref.h_last, to));

  // The checkpoint pass: the state before every 8th step; step t's is the h_last of the first t steps.
  const int64_t every = kernels::cuda::kChunkCheckpointEvery, nck = (c.L + every - 1) / every;
  int64_t Np = 16;
  while (Np < c.N) Np *= 2;
  Tensor ck = Tensor::full({c.Bt, nck, c.D, Np}, std::nan(""), DType::f32);
  kernels::cuda::chunked_checkpoints(P.in, opt, &starts, ck);
  for (int64_t k : {int64_t(1), nck / 2, nck - 1}) {
    if (k < 1 || k >= nck) continue;
    SCOPED_TRACE("checkpoint " + std::to_string(k));
    const int64_t t = k * every;
    ScanInputs pre = ref_in;
    for (Tensor* x : {&pre.u, &pre.delta, &pre.z}) {
      if (x->defined()) *x = x->narrow(1, 0, t).contiguous();
    }
    for (Tensor* x : {&pre.B, &pre.C}) *x = x->narrow(1, 0, t).contiguous();
    if (pre.seq_idx.defined()) pre.seq_idx = pre.seq_idx.narrow(1, 0, t).contiguous();
    const Tensor want = kernels::selective_scan_reference_forward(pre, opt).h_last;
    const Tensor got = ck.narrow(1, k, 1).narrow(3, 0, c.N).contiguous().reshape({c.Bt, c.D, c.N});
    EXPECT_TRUE(test::near("checkpoint", got, want, to));
  }

  const Tensor g64 = P.g.to(DType::f64), gh64 = P.gh.defined() ? P.gh.to(DType::f64) : Tensor();
  const ScanGrads rg = kernels::selective_scan_reference_backward(ref_in, g64, gh64, opt);
  setenv("SSM_SCAN_CHUNK_BWD", "always", 1);  // at these sizes its rule would leave the backward to the other kernels
  // Both backward kernels: seq_bwd_kernel (N <= 16, where its blocks fill the GPU) and chunk_bwd_kernel.
  for (const char* seq : {"always", "never"})
  for (bool saved : {false, true}) {
    if (c.N > 16 && std::string(seq) == "always") continue;
    test::Env seq_env({{"SSM_SCAN_SEQ_BWD", seq}});
    SCOPED_TRACE(std::string(saved ? "backward from the forward's starts" : "backward from its own states") +
                 ", SSM_SCAN_SEQ_BWD=" + seq);
    ScanGrads gg;
    ASSERT_TRUE(kernels::cuda::chunked_backward(P.in, P.g, P.gh, opt, gg, saved ? &starts : nullptr));
    const test::Tol t2{to.rtol * 2, to.atol * 2}, td{to.rtol * 5, to.atol * 10};
    EXPECT_TRUE(test::near("grad u", gg.u, rg.u, t2));
    EXPECT_TRUE(test::near("grad delta", gg.delta, rg.delta, td));
    EXPECT_TRUE(test::near("grad A", gg.A, rg.A, t2));
    EXPECT_TRUE(test::near("grad B", gg.B, rg.B, t2));
    EXPECT_TRUE(test::near("grad C", gg.C, rg.C, t2));
    if (c.Dskip) { EXPECT_TRUE(test::near("grad D", gg.D_skip, rg.D_skip, t2)); }
    if (c.z) { EXPECT_TRUE(test::near("grad z", gg.z, rg.z, t2)); }
    if (c.bias) { EXPECT_TRUE(test::near("grad delta_bias", gg.delta_bias, rg.delta_bias, t2)); }
    if (c.h0) { EXPECT_TRUE(test::near("grad h0", gg.h0, rg.h0, t2)); }
  }
  unsetenv("SSM_SCAN_CHUNK_BWD");
  // The deterministic mode is not the chunked backward's.
  opt.deterministic = true;
  ScanGrads unused;
  EXPECT_FALSE(kernels::cuda::chunked_backward(P.in, P.g, P.gh, opt, unused, nullptr));
}

// Both forward kernels: seq_fwd_kernel (N <= 16, where its blocks fill the GPU) and chunk_kernel.
void check_case(const Case& c, const char* segs = nullptr, uint32_t seed = 100) {
  for (const char* seq_fwd : {"always", "never"}) {
    if (c.N > 16 && std::string(seq_fwd) == "always") continue;
    SCOPED_TRACE(std::string("SSM_SCAN_SEQ_FWD=") + seq_fwd);
    test::Env env({{"SSM_SCAN_SEQ_FWD", seq_fwd}});
    check_case_once(c, segs, seed);
  }
}

// Case fields: Bt, L, D, G, N, dtype, B/C dtype, z, D_skip, delta_bias, softplus, h0, seq_idx, grad h_last.
TEST(EmuScanChunked, F32EverythingWithGroups) {
  check_case({2, 257, 20, 2, 16, f32, f32, true, true, true, true, true, true, true});
}
TEST(EmuScanChunked, OneStepAndChunkEdges) {
  check_case({2, 1, 17, 1, 16, f32, f32, true, true, true, true, true, false, true});
  check_case({1, 127, 16, 1, 3, bf16, f32, false, true, true, false, true, true, true});
  check_case({1, 128, 18, 1, 1, f16, f16, true, false, true, true, false, true, false});
  check_case({1, 129, 33, 1, 16, bf16, bf16, true, true, true, true, true, true, true});
}
TEST(EmuScanChunked, StateTiles) {  // N over several 16-state tiles of B / C, and a last partial tile
  check_case({1, 200, 16, 1, 40, bf16, bf16, true, true, true, true, true, true, false});
  check_case({1, 130, 8, 1, 64, f32, f32, true, true, true, true, true, true, true});
}
// One segment per row, and several (local pass, carries, full pass). The sequential kernels' local passes cut the
// segments finer (seq_local_pass): by the occupancy ratio (the emulator's: shared memory only, so 2 for the
// backward's and 1 for the forward's), and forced to 3 (the largest divisor of the segment's chunks up to it: at
// L = 700, 11 chunks of 64 in segments of 4, local segments of 2 and a last one of 1; at L = 400, 7 chunks in
// segments of 3, local segments of 1).
TEST(EmuScanChunked, Segments) {
  for (const char* split : {"", "3"}) {
    test::Env env({{"SSM_SCAN_LOCAL_SPLIT", split}});
    for (const char* segs : {"1", "3"}) {
      if (*split && std::string(segs) == "1") continue;
      check_case({1, 700, 20, 1, 16, f32, f32, true, true, true, true, true, true, true}, segs);
      check_case({2, 400, 16, 2, 8, bf16, bf16, true, true, true, true, false, true, true}, segs);
    }
  }
}

// The rule that picks the implementation (impl_for asks chunked_runs): few rows go to selective_scan_cuda.cu's
// kernels unless the sequential kernels are asked to cut them into segments (SSM_SCAN_SEQ_SEGS, N 12-16 only);
// rows that fill half a wave go to the chunked scan either way.
TEST(EmuScanChunked, RoutingAtFewRows) {
  const test::ScanProblem few16 = test::make_scan_problem({1, 700, 64, 1, 16, bf16, bf16, true, true, true, true,
                                                           false, false, false}, 1);
  const test::ScanProblem few64 = test::make_scan_problem({1, 300, 64, 1, 64, f32, f32, true, true, true, true,
                                                           false, false, false}, 2);
  const test::ScanProblem many = test::make_scan_problem({16, 3, 1024, 1, 16, bf16, bf16, true, true, true, true,
                                                          false, false, false}, 3);
  for (bool backward : {false, true}) {
    SCOPED_TRACE(backward ? "backward" : "forward");
    {
      test::Env env({{"SSM_SCAN_SEQ_SEGS", ""}});
      EXPECT_FALSE(kernels::cuda::chunked_runs(few16.in, backward));
      EXPECT_TRUE(kernels::cuda::chunked_runs(many.in, backward));
    }
    {
      test::Env env({{"SSM_SCAN_SEQ_SEGS", "6"}});
      EXPECT_TRUE(kernels::cuda::chunked_runs(few16.in, backward));
      EXPECT_FALSE(kernels::cuda::chunked_runs(few64.in, backward));  // N > 16: no sequential kernels
      EXPECT_TRUE(kernels::cuda::chunked_runs(many.in, backward));
    }
    {
      test::Env env({{"SSM_SCAN_SEQ_SEGS", "6"}, {backward ? "SSM_SCAN_SEQ_BWD" : "SSM_SCAN_SEQ_FWD", "never"}});
      EXPECT_FALSE(kernels::cuda::chunked_runs(few16.in, backward));
    }
  }
}

}  // namespace
