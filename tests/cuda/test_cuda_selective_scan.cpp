// CUDA selective scan (kernels/selective_scan/selective_scan_cuda.cu) against the CPU reference
// (selective_scan_reference_forward / _backward, computed in f64 on the very same, already rounded,
// inputs). Random realistic inputs: u, B, C, z, grad_y ~ N(0, 1); delta ~ U(-4, -1) before softplus
// (dt in [1e-3, 0.1] without it); A = -(1..N) with a little noise; D_skip, delta_bias small.
//
// Tolerances (|gpu - ref| <= atol + rtol |ref| elementwise), those of mamba_ssm's own tests:
//   outputs y, h_last:   f32 rtol 6e-4 atol 2e-3; bf16 rtol 3e-2 atol 5e-2; f16 rtol 3e-3 atol 5e-3.
//   gradients: as mamba_ssm's test_selective_scan: grad u x2 (rtol and atol), grad delta rtol x5 atol x10,
//   the others (A, B, C, D, z, delta_bias, h0) x2. The extra room covers the rounding of each gradient to
//   the input dtype plus f32 sums over many (b, t) or channels (gA, gD, gB, gC).
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

using namespace ssm;
using kernels::ScanGrads;
using kernels::ScanInputs;
using kernels::ScanOptions;
using kernels::ScanOutputs;

namespace {

struct Case {
  int64_t Bt, L, D, G, N;
  DType dt, bdt;  // u / delta / z dtype, B / C dtype
  bool z, Dskip, bias, softplus, h0, seq, gh;
};

std::string describe(const Case& c) {
  return cat("Bt=", c.Bt, " L=", c.L, " D=", c.D, " G=", c.G, " N=", c.N, " ", dtype_name(c.dt), "/",
             dtype_name(c.bdt), c.z ? " z" : "", c.Dskip ? " D" : "", c.bias ? " bias" : "",
             c.softplus ? " softplus" : "", c.h0 ? " h0" : "", c.seq ? " seq" : "", c.gh ? " gh" : "");
}

Tensor normal_cpu(const Shape& s, uint32_t seed, double scale = 1.0) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> nd(0.0, scale);
  std::vector<double> v(size_t(shape_numel(s)));
  for (double& x : v) x = nd(gen);
  return Tensor::from_vector(v, s);
}

struct Tol {
  double rtol, atol;
};
Tol out_tol(DType dt) {
  if (dt == DType::bf16) return {3e-2, 5e-2};
  if (dt == DType::f16) return {3e-3, 5e-3};
  return {6e-4, 2e-3};
}

::testing::AssertionResult near(const char* what, const Tensor& gpu, const Tensor& ref, Tol t) {
  if (!gpu.defined() || !ref.defined()) return ::testing::AssertionFailure() << what << ": undefined result";
  if (gpu.shape() != ref.shape())
    return ::testing::AssertionFailure() << what << ": shape " << shape_str(gpu.shape()) << " vs "
                                         << shape_str(ref.shape());
  const std::vector<double> g = gpu.to_double_vector(), r = ref.to_double_vector();
  int64_t bad = 0, first = -1;
  double worst = 0, rn = 0, en = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double e = std::abs(g[i] - r[i]);
    rn += r[i] * r[i];
    en += e * e;
    if (!(e <= t.atol + t.rtol * std::abs(r[i]))) {  // NaN fails
      if (first < 0) first = int64_t(i);
      ++bad;
      worst = std::max(worst, e);
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": " << bad << " of " << g.size() << " elements off; first at "
                                       << first << ": GPU " << g[size_t(first)] << " vs ref " << r[size_t(first)]
                                       << "; worst |diff| " << worst << "; rel l2 err " << std::sqrt(en / (rn + 1e-300));
}

// Inputs on the CPU in their storage dtypes (the oracle upcasts them), with a GPU copy.
struct Problem {
  ScanInputs cpu, gpu;
  Tensor g_cpu, g_gpu, gh_cpu, gh_gpu;
};

Problem make_problem(const Case& c, uint32_t seed) {
  Problem P;
  const int64_t Bt = c.Bt, L = c.L, D = c.D, G = c.G, N = c.N;
  ScanInputs& in = P.cpu;
  in.u = normal_cpu({Bt, L, D}, seed + 1).to(c.dt);
  in.delta = c.softplus ? test::rand_cpu({Bt, L, D}, c.dt, -4.0, -1.0, seed + 2)
                        : test::rand_cpu({Bt, L, D}, c.dt, 1e-3, 0.1, seed + 2);
  {
    std::vector<double> a(size_t(D * N));
    std::mt19937 gen(seed + 3);
    std::uniform_real_distribution<double> un(0.9, 1.1);
    for (int64_t d = 0; d < D; ++d)
      for (int64_t n = 0; n < N; ++n) a[size_t(d * N + n)] = -double(n + 1) * un(gen);
    in.A = Tensor::from_vector(a, {D, N}).to(DType::f32);
  }
  in.B = normal_cpu({Bt, L, G, N}, seed + 4).to(c.bdt);
  in.C = normal_cpu({Bt, L, G, N}, seed + 5).to(c.bdt);
  if (c.Dskip) in.D_skip = normal_cpu({D}, seed + 6).to(DType::f32);
  if (c.z) in.z = normal_cpu({Bt, L, D}, seed + 7).to(c.dt);
  if (c.bias) in.delta_bias = test::rand_cpu({D}, DType::f32, -0.5, 0.5, seed + 8);
  if (c.h0) in.h0 = normal_cpu({Bt, D, N}, seed + 9).to(DType::f32);
  if (c.seq) {  // documents of random lengths 1 .. L/3+1 packed into each row
    std::vector<int32_t> s(size_t(Bt * L));
    std::mt19937 gen(seed + 10);
    std::uniform_int_distribution<int64_t> len(1, std::max<int64_t>(1, L / 3) + 1);
    for (int64_t b = 0; b < Bt; ++b) {
      int32_t id = 0;
      for (int64_t t = 0; t < L;) {
        const int64_t n = len(gen);
        for (int64_t k = 0; k < n && t < L; ++k, ++t) s[size_t(b * L + t)] = id;
        ++id;
      }
    }
    in.seq_idx = Tensor::from_vector(s, {Bt, L});
  }
  P.g_cpu = normal_cpu({Bt, L, D}, seed + 11).to(c.dt);
  if (c.gh) P.gh_cpu = normal_cpu({Bt, D, N}, seed + 12).to(DType::f32);
  auto up = [](const Tensor& t) { return t.defined() ? test::gpu(t) : Tensor(); };
  P.gpu = {up(in.u), up(in.delta), up(in.A), up(in.B), up(in.C), up(in.D_skip), up(in.z), up(in.delta_bias),
           up(in.h0), up(in.seq_idx)};
  P.g_gpu = up(P.g_cpu);
  P.gh_gpu = up(P.gh_cpu);
  return P;
}

// The oracle's inputs: every floating tensor upcast to f64 (seq_idx stays i32).
ScanInputs as_f64(const ScanInputs& in) {
  auto f = [](const Tensor& t) { return t.defined() ? t.to(DType::f64) : Tensor(); };
  return {f(in.u), f(in.delta), f(in.A), f(in.B), f(in.C), f(in.D_skip), f(in.z), f(in.delta_bias), f(in.h0),
          in.seq_idx};
}

#ifdef SSM_WITH_CUDA
ScanOutputs gpu_forward(const ScanInputs& in, const ScanOptions& opt) {
  ScanOutputs o;
  o.y = Tensor::full(in.u.shape(), std::nan(""), in.u.dtype(), in.u.device());  // poisoned
  o.h_last = Tensor::full({in.u.size(0), in.u.size(2), in.A.size(1)}, std::nan(""), DType::f32, in.u.device());
  kernels::cuda::selective_scan_forward(in, opt, o.y, o.h_last, &o.starts);
  return o;
}
#endif

void check_case(const Case& c, uint32_t seed = 100) {
#ifdef SSM_WITH_CUDA
  SCOPED_TRACE(describe(c));
  Problem P = make_problem(c, seed);
  ScanOptions opt;
  opt.delta_softplus = c.softplus;
  const ScanInputs ref_in = as_f64(P.cpu);
  const ScanOutputs ref = kernels::selective_scan_reference_forward(ref_in, opt);
  const ScanOutputs out = gpu_forward(P.gpu, opt);
  const Tol to = out_tol(c.dt);
  EXPECT_TRUE(near("y", out.y, ref.y, to));
  EXPECT_TRUE(near("h_last", out.h_last, ref.h_last, to));

  const Tensor g64 = P.g_cpu.to(DType::f64), gh64 = P.gh_cpu.defined() ? P.gh_cpu.to(DType::f64) : Tensor();
  const ScanGrads rg = kernels::selective_scan_reference_backward(ref_in, g64, gh64, opt);
  // The backward three ways: default, deterministic, and from the forward's segment start states (the
  // autograd op's path; the same as the default when the forward did not cut the rows).
  for (const char* mode : {"default", "deterministic", "forward's segment starts"}) {
    SCOPED_TRACE(mode);
    const bool det = std::string(mode) == "deterministic", saved = std::string(mode)[0] == 'f';
    opt.deterministic = det;
    ScanGrads gg;
    kernels::cuda::selective_scan_backward(P.gpu, P.g_gpu, P.gh_gpu, opt, gg, saved ? &out.starts : nullptr);
    const Tol t2{to.rtol * 2, to.atol * 2}, td{to.rtol * 5, to.atol * 10};
    EXPECT_TRUE(near("grad u", gg.u, rg.u, t2));
    EXPECT_TRUE(near("grad delta", gg.delta, rg.delta, td));
    EXPECT_TRUE(near("grad A", gg.A, rg.A, t2));
    EXPECT_TRUE(near("grad B", gg.B, rg.B, t2));
    EXPECT_TRUE(near("grad C", gg.C, rg.C, t2));
    EXPECT_EQ(gg.u.dtype(), c.dt);
    EXPECT_EQ(gg.B.dtype(), c.bdt);
    if (c.Dskip) { EXPECT_TRUE(near("grad D", gg.D_skip, rg.D_skip, t2)); }
    if (c.z) { EXPECT_TRUE(near("grad z", gg.z, rg.z, t2)); }
    if (c.bias) { EXPECT_TRUE(near("grad delta_bias", gg.delta_bias, rg.delta_bias, t2)); }
    if (c.h0) { EXPECT_TRUE(near("grad h0", gg.h0, rg.h0, t2)); }
    EXPECT_FALSE(gg.D_skip.defined() && !c.Dskip);
    EXPECT_FALSE(gg.z.defined() && !c.z);
  }
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
// Sets environment variables for one scope (the kernels read them at every call).
struct Env {
  std::vector<std::string> names;
  Env(std::initializer_list<std::pair<const char*, const char*>> kv) {
    for (const auto& [k, v] : kv) {
      setenv(k, v, 1);
      names.emplace_back(k);
    }
  }
  ~Env() {
    for (const auto& k : names) unsetenv(k.c_str());
  }
};
// The time split and layouts below belong to the second implementation (selective_scan_cuda.cu's own).
struct SegEnv : Env {
  explicit SegEnv(const char* n) : Env({{"SSM_SCAN_IMPL", "v2"}, {"SSM_SCAN_FWD_SEGS", n}, {"SSM_SCAN_BWD_SEGS", n}}) {}
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
    Env env({{"SSM_SCAN_IMPL", "v2"}, {"SSM_SCAN_BWD_SEGS", segs}});
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
      Env env({{"SSM_SCAN_IMPL", "v2"}, {"SSM_SCAN_FWD_KF", kf}, {"SSM_SCAN_ADJ_KF", kf}, {"SSM_SCAN_FWD_SEGS", segs},
               {"SSM_SCAN_BWD_SEGS", segs}});
      check_case({2, 257, 70, 2, 16, f32, f32, true, true, true, true, true, true, true});
      check_case({2, 300, 45, 1, 64, bf16, bf16, true, true, true, true, true, true, true});
      check_case({1, 333, 24, 1, 3, f16, f16, true, true, true, true, true, true, true});
    }
  }
}

// Every implementation explicitly, whichever is the default (SSM_SCAN_IMPL: chunk = scan_chunked_cuda.cu's
// forward and backward, v1 = selective_scan_cuda_v1.cu, v2 = selective_scan_cuda.cu alone, legacy = v2 with
// v1 forwards where v2 would run one segment per row at N <= 16), on unaligned
// (D = 70, 45) and aligned (D = 96, 64) rows.
TEST(CudaSelectiveScan, AllImplementations) {
  SKIP_WITHOUT_CUDA();
  for (const char* impl : {"chunk", "v1", "v2", "legacy"}) {
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
// sizes its rule would leave it to selective_scan_cuda.cu's); check_case's deterministic mode runs
// selective_scan_cuda.cu's backward with the chunked checkpoint pass.
TEST(CudaSelectiveScan, ChunkedSegments) {
  SKIP_WITHOUT_CUDA();
  for (const char* segs : {"1", "3"}) {
    SCOPED_TRACE(std::string("segs ") + segs);
    Env env({{"SSM_SCAN_IMPL", "chunk"}, {"SSM_SCAN_CHUNK_SEGS", segs}, {"SSM_SCAN_CHUNK_BWD", "always"}});
    check_case({2, 1000, 70, 2, 16, f32, f32, true, true, true, true, true, true, true});
    check_case({1, 129, 33, 1, 1, bf16, bf16, true, true, true, true, true, true, true});
    check_case({2, 128, 40, 1, 64, f16, f16, true, true, false, true, true, true, true});
    check_case({1, 400, 24, 3, 256, f32, f32, true, true, true, true, true, true, true});
    check_case({3, 127, 17, 1, 3, bf16, f32, false, true, true, false, true, true, true});
    check_case({2, 1, 20, 1, 16, f32, f32, true, true, true, true, true, false, true});
    check_case({2, 777, 48, 1, 40, bf16, bf16, true, true, true, true, false, true, false});
  }
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
