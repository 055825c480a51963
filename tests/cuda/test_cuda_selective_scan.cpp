// CUDA selective scan (kernels/selective_scan/selective_scan_cuda.cu) against the CPU reference
// (selective_scan_reference_forward / _backward, computed in f64 on the very same, already rounded,
// inputs). The problems and tolerances: scan_problem.h.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "core/device.h"
#include "core/ops.h"
#include "core/tensor.h"
#include "kernels/selective_scan/selective_scan.h"
#ifdef SSM_WITH_CUDA
#include <cuda_runtime.h>

#include "core/cuda/cuda_ops.h"
#include "kernels/selective_scan/selective_scan_cuda.h"
#endif
#include "cuda_test_util.h"
#include "scan_problem.h"

using namespace ssm;
using kernels::ScanGrads;
using kernels::ScanInputs;
using kernels::ScanOptions;
using kernels::ScanOutputs;

namespace {

using test::as_f64;
using test::Case;
using test::describe;
using test::near;
using test::out_tol;
using Tol = test::Tol;

#ifdef SSM_WITH_CUDA
const test::ScanImpl kGpu{&kernels::cuda::selective_scan_forward, &kernels::cuda::selective_scan_backward,
                          Device::cuda(0)};
struct Problem {  // the GPU copy of a test problem
  ScanInputs gpu;
  Tensor g_gpu, gh_gpu;
};
Problem make_problem(const Case& c, uint32_t seed) {
  const test::ScanProblem sp = test::make_scan_problem(c, seed);
  return {test::scan_inputs_on(sp.in, kGpu.device), test::on(sp.g, kGpu.device), test::on(sp.gh, kGpu.device)};
}
ScanOutputs gpu_forward(const ScanInputs& in, const ScanOptions& opt) { return test::scan_forward(kGpu, in, opt); }
#endif

void check_case(const Case& c, uint32_t seed = 100) {
#ifdef SSM_WITH_CUDA
  test::check_scan_case(c, kGpu, seed);
#else
  (void)c;
  (void)seed;
#endif
}

#define SKIP_WITHOUT_CUDA() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device"

constexpr DType f32 = DType::f32, bf16 = DType::bf16, f16 = DType::f16;

TEST(CudaSelectiveScan, F32EverythingOnGroups) {
  SKIP_WITHOUT_CUDA();
  check_case({2, 257, 70, 2, 16, f32, f32, true, true, true, true, true, true, true});
}
TEST(CudaSelectiveScan, F32SingleStepN1Bare) {
  SKIP_WITHOUT_CUDA();
  check_case({3, 1, 33, 1, 1, f32, f32, false, false, false, false, false, false, false});
}
TEST(CudaSelectiveScan, F32OddShapesN64) {
  SKIP_WITHOUT_CUDA();
  check_case({1, 7, 40, 1, 64, f32, f32, true, false, false, true, false, false, false});
  check_case({2, 1000, 45, 3, 64, f32, f32, false, true, true, true, true, false, true});
}
TEST(CudaSelectiveScan, F32N256WithResets) {
  SKIP_WITHOUT_CUDA();
  check_case({2, 1000, 8, 1, 256, f32, f32, true, true, true, true, true, true, true});
}
TEST(CudaSelectiveScan, Bf16Everything) {
  SKIP_WITHOUT_CUDA();
  check_case({2, 1000, 96, 3, 16, bf16, bf16, true, true, true, true, true, true, true});
  check_case({1, 257, 33, 1, 16, bf16, bf16, false, false, false, true, false, false, false});
}
TEST(CudaSelectiveScan, F16N64) {
  SKIP_WITHOUT_CUDA();
  check_case({2, 257, 50, 1, 64, f16, f16, true, true, true, true, false, true, false});
}
TEST(CudaSelectiveScan, MixedBf16WithF32BC) {
  SKIP_WITHOUT_CUDA();
  check_case({2, 300, 64, 2, 16, bf16, f32, true, true, true, true, true, false, true});
  check_case({1, 129, 48, 1, 16, f32, f16, true, true, false, true, false, false, false});
}
TEST(CudaSelectiveScan, LongSequenceChunked) {  // few channels -> the forward splits L into chunks
  SKIP_WITHOUT_CUDA();
  check_case({1, 70000, 4, 1, 16, f32, f32, true, true, true, true, true, true, true});
  check_case({1, 70001, 6, 2, 16, bf16, bf16, true, true, true, true, true, false, true});
}

// The time split: the kernels cut each row into segments only when Bt * D channels cannot fill the GPU
// (always the case at these small test sizes). Force one segment per row (the path of large Bt * D),
// and many short segments, through the environment overrides.
using test::Env;
// The time split and layouts below belong to the legacy implementation (selective_scan_cuda.cu's own).
struct SegEnv : Env {
  explicit SegEnv(const char* n) : Env({{"SSM_SCAN_IMPL", "legacy"}, {"SSM_SCAN_FWD_SEGS", n}, {"SSM_SCAN_BWD_SEGS", n}}) {}
};
TEST(CudaSelectiveScan, OneSegmentPerRow) {
  SKIP_WITHOUT_CUDA();
  SegEnv env("1");
  check_case({2, 257, 70, 2, 16, f32, f32, true, true, true, true, true, true, true});
  check_case({2, 300, 130, 1, 16, bf16, bf16, true, true, true, true, true, false, true});
  check_case({1, 100, 40, 1, 64, f32, f32, true, true, true, true, true, true, true});
  check_case({1, 50, 8, 1, 256, f32, f32, true, true, true, true, true, true, true});
}
TEST(CudaSelectiveScan, ManyShortSegments) {
  SKIP_WITHOUT_CUDA();
  SegEnv env("40");
  check_case({2, 700, 70, 2, 16, f32, f32, true, true, true, true, true, true, true});
  check_case({1, 333, 20, 1, 32, f16, f16, true, false, true, true, true, false, true});
}

// The main backward pass at every lane count per channel: 2 (N <= 16, its compiled-in fast path), 4, 16 and
// 32 (N = 32, 128, 256: the run-time path), with one segment per row and with several.
TEST(CudaSelectiveScan, BackwardLanesPerChannel) {
  SKIP_WITHOUT_CUDA();
  for (const char* segs : {"1", "3"}) {
    SCOPED_TRACE(std::string("segs ") + segs);
    Env env({{"SSM_SCAN_IMPL", "legacy"}, {"SSM_SCAN_BWD_SEGS", segs}});
    check_case({2, 257, 70, 2, 8, f32, f32, true, true, true, true, true, true, true});
    check_case({2, 301, 70, 1, 32, f32, f32, true, true, true, true, true, true, true});
    check_case({1, 100, 40, 1, 128, bf16, bf16, true, true, true, true, true, false, true});
    check_case({2, 300, 24, 1, 256, f32, f32, true, true, true, true, true, true, true});
  }
}

// The forward passes' states per thread (SSM_SCAN_FWD_KF and the backward's adjoint pass's SSM_SCAN_ADJ_KF:
// 4, 8, 16), with one segment per row and with several (SSM_SCAN_FWD_SEGS / BWD_SEGS), forward and backward (the backward's checkpoint pass is a forward).
TEST(CudaSelectiveScan, ForwardLayouts) {
  SKIP_WITHOUT_CUDA();
  for (const char* kf : {"4", "8", "16"}) {
    for (const char* segs : {"1", "5"}) {
      SCOPED_TRACE(std::string("kf ") + kf + " segs " + segs);
      Env env({{"SSM_SCAN_IMPL", "legacy"}, {"SSM_SCAN_FWD_KF", kf}, {"SSM_SCAN_ADJ_KF", kf}, {"SSM_SCAN_FWD_SEGS", segs},
               {"SSM_SCAN_BWD_SEGS", segs}});
      check_case({2, 257, 70, 2, 16, f32, f32, true, true, true, true, true, true, true});
      check_case({2, 300, 45, 1, 64, bf16, bf16, true, true, true, true, true, true, true});
      check_case({1, 333, 24, 1, 3, f16, f16, true, true, true, true, true, true, true});
    }
  }
}

// Both implementations explicitly, whichever is the default (SSM_SCAN_IMPL: chunk = scan_chunked_cuda.cu's
// forward and backward, legacy = selective_scan_cuda.cu's), on unaligned
// (D = 70, 45) and aligned (D = 96, 64) rows.
TEST(CudaSelectiveScan, AllImplementations) {
  SKIP_WITHOUT_CUDA();
  for (const char* impl : {"chunk", "legacy"}) {
    SCOPED_TRACE(impl);
    Env env({{"SSM_SCAN_IMPL", impl}});
    check_case({2, 257, 70, 2, 16, f32, f32, true, true, true, true, true, true, true});
    check_case({2, 1000, 96, 3, 16, bf16, bf16, true, true, true, true, true, true, true});
    check_case({2, 300, 64, 2, 16, bf16, f32, true, true, true, true, true, false, true});
    check_case({2, 1000, 45, 3, 64, f32, f32, false, true, true, true, true, false, true});
    check_case({1, 2000, 6, 1, 16, f16, f16, true, true, true, true, true, true, true});
    check_case({2, 100, 33, 1, 3, bf16, bf16, true, true, true, true, true, true, true});
  }
}

// The chunked forward's time split (SSM_SCAN_CHUNK_SEGS: segments of whole 128-step chunks per row; local
// pass, carries, full pass), in the forward and in the backward's checkpoint pass, at lengths around the
// chunk (1, 127, 128, 129, 1000), channel counts that leave a block of 16 part-empty, N from 1 to 256 (B / C
// staged in tiles of 16 states), resets, groups and every dtype. The chunked backward is forced on (at these
// sizes its rule would leave it to selective_scan_cuda.cu's), with each of its kernels; check_case's deterministic mode runs
// selective_scan_cuda.cu's backward with the chunked checkpoint pass.
TEST(CudaSelectiveScan, ChunkedSegments) {
  SKIP_WITHOUT_CUDA();
  for (const char* seq : {"always", "never"})  // both chunked kernel pairs (seq_fwd / seq_bwd_kernel: N <= 16 only),
                                               // each with rows whole and cut into 3 time segments (the
                                               // sequential kernels' local passes into 6: seq_local_pass)
  for (const char* segs : {"1", "3"}) {
    SCOPED_TRACE(std::string("segs ") + segs + ", SSM_SCAN_SEQ_FWD / BWD=" + seq);
    Env env({{"SSM_SCAN_IMPL", "chunk"}, {"SSM_SCAN_CHUNK_SEGS", segs}, {"SSM_SCAN_CHUNK_BWD", "always"},
             {"SSM_SCAN_SEQ_FWD", seq}, {"SSM_SCAN_SEQ_BWD", seq}, {"SSM_SCAN_SEQ_SEGS", segs}});
    check_case({2, 1000, 70, 2, 16, f32, f32, true, true, true, true, true, true, true});
    check_case({1, 129, 33, 1, 1, bf16, bf16, true, true, true, true, true, true, true});
    check_case({2, 128, 40, 1, 64, f16, f16, true, true, false, true, true, true, true});
    check_case({1, 400, 24, 3, 256, f32, f32, true, true, true, true, true, true, true});
    check_case({3, 127, 17, 1, 3, bf16, f32, false, true, true, false, true, true, true});
    check_case({2, 1, 20, 1, 16, f32, f32, true, true, true, true, true, false, true});
    check_case({2, 777, 48, 1, 40, bf16, bf16, true, true, true, true, false, true, false});
  }
}

// Few long rows with time segments asked for, the implementation left to the rule (impl_for, chunked_runs,
// seq_plan): the sequential kernels cut into segments, at N 12-16.
TEST(CudaSelectiveScan, FewLongRowsSegmentsByRule) {
  SKIP_WITHOUT_CUDA();
  Env env({{"SSM_SCAN_IMPL", ""}, {"SSM_SCAN_SEQ_SEGS", "6"}, {"SSM_SCAN_SEQ_FWD", ""}, {"SSM_SCAN_SEQ_BWD", ""}});
  check_case({1, 5000, 64, 1, 16, bf16, bf16, true, true, true, true, true, true, true});
  check_case({2, 3001, 40, 2, 12, f32, f32, true, true, true, true, false, true, true});
}

#ifdef SSM_WITH_CUDA
// Deterministic mode: two backward runs give bit-identical gradients.
TEST(CudaSelectiveScan, DeterministicBitIdentical) {
  SKIP_WITHOUT_CUDA();
  const Case c{2, 777, 200, 2, 16, bf16, bf16, true, true, true, true, true, true, true};
  Problem P = make_problem(c, 7);
  ScanOptions opt;
  opt.deterministic = true;
  ScanGrads a, b;
  kernels::cuda::selective_scan_backward(P.gpu, P.g_gpu, P.gh_gpu, opt, a);
  kernels::cuda::selective_scan_backward(P.gpu, P.g_gpu, P.gh_gpu, opt, b);
  for (auto [x, y, n] : {std::tuple{a.u, b.u, "u"}, {a.delta, b.delta, "delta"}, {a.A, b.A, "A"}, {a.B, b.B, "B"},
                         {a.C, b.C, "C"}, {a.D_skip, b.D_skip, "D"}, {a.z, b.z, "z"},
                         {a.delta_bias, b.delta_bias, "delta_bias"}, {a.h0, b.h0, "h0"}}) {
    SCOPED_TRACE(n);
    EXPECT_TRUE(test::same_bits(x, y.to(Device::cpu())));
  }
}

// 64-bit offsets: Bt * L * D > 2^31 elements (forward). G = 1, so channels are independent: the
// reference runs on a slice of 3 channels at the high end of D.
TEST(CudaSelectiveScan, SixtyFourBitOffsets) {
  SKIP_WITHOUT_CUDA();
  size_t free_b = 0, total_b = 0;
  cudaMemGetInfo(&free_b, &total_b);
  const int64_t Bt = 1, L = (int64_t(1) << 20) + 3, D = 2056, N = 16;
  if (free_b < size_t(20) << 30) GTEST_SKIP() << "needs ~20 GB of free GPU memory";
  const Device dev = Device::cuda(0);
  ScanInputs in;
  in.u = rand_normal({Bt, L, D}, 1, 0, DType::bf16, dev);
  in.delta = add(mul(rand_uniform({Bt, L, D}, 2, 0, DType::f32, dev), 3.0), -4.0).to(DType::bf16);
  in.B = rand_normal({Bt, L, 1, N}, 3, 0, DType::bf16, dev);
  in.C = rand_normal({Bt, L, 1, N}, 4, 0, DType::bf16, dev);
  std::vector<float> a(size_t(D * N));
  for (int64_t i = 0; i < D * N; ++i) a[size_t(i)] = -float(i % N + 1);
  in.A = Tensor::from_vector(a, {D, N}, dev);
  ScanOptions opt;
  const ScanOutputs out = gpu_forward(in, opt);
  const int64_t d0 = D - 3;
  auto sl = [&](const Tensor& t) { return t.narrow(2, d0, 3).contiguous().to(Device::cpu()).to(DType::f64); };
  ScanInputs r;
  r.u = sl(in.u);
  r.delta = sl(in.delta);
  r.A = in.A.narrow(0, d0, 3).contiguous().to(Device::cpu()).to(DType::f64);
  r.B = in.B.to(Device::cpu()).to(DType::f64);
  r.C = in.C.to(Device::cpu()).to(DType::f64);
  const ScanOutputs ref = kernels::selective_scan_reference_forward(r, opt);
  EXPECT_TRUE(near("y (last channels)", out.y.narrow(2, d0, 3).contiguous(), ref.y, out_tol(DType::bf16)));
  EXPECT_TRUE(near("h_last (last channels)", out.h_last.narrow(1, d0, 3).contiguous(), ref.h_last,
                   out_tol(DType::bf16)));
}
#endif

}  // namespace
