// The selective scan's test problems, shared by the CUDA tests (tests/cuda) and the emulated kernels' tests
// (tests/emu): random realistic inputs on the CPU, the f64 oracle's inputs, and the tolerances and comparison.
// Inputs: u, B, C, z, grad_y ~ N(0, 1); delta ~ U(-4, -1) before softplus (dt in [1e-3, 0.1] without it);
// A = -(1..N) with a little noise; D_skip, delta_bias small; packed documents of random lengths.
//
// Tolerances (|result - ref| <= atol + rtol |ref| elementwise), those of mamba_ssm's own tests:
//   outputs y, h_last:   f32 rtol 6e-4 atol 2e-3; bf16 rtol 3e-2 atol 5e-2; f16 rtol 3e-3 atol 5e-3.
//   gradients: as mamba_ssm's test_selective_scan: grad u x2 (rtol and atol), grad delta rtol x5 atol x10,
//   the others (A, B, C, D, z, delta_bias, h0) x2. The extra room covers the rounding of each gradient to
//   the input dtype plus f32 sums over many (b, t) or channels (gA, gD, gB, gC).
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "kernels/selective_scan/selective_scan.h"
#include "tests/cuda/cuda_test_util.h"

namespace ssm::test {

using kernels::ScanInputs;

struct Case {
  int64_t Bt, L, D, G, N;
  DType dt, bdt;  // u / delta / z dtype, B / C dtype
  bool z, Dskip, bias, softplus, h0, seq, gh;
};

inline std::string describe(const Case& c) {
  return cat("Bt=", c.Bt, " L=", c.L, " D=", c.D, " G=", c.G, " N=", c.N, " ", dtype_name(c.dt), "/",
             dtype_name(c.bdt), c.z ? " z" : "", c.Dskip ? " D" : "", c.bias ? " bias" : "",
             c.softplus ? " softplus" : "", c.h0 ? " h0" : "", c.seq ? " seq" : "", c.gh ? " gh" : "");
}

inline Tensor normal_cpu(const Shape& s, uint32_t seed, double scale = 1.0) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> nd(0.0, scale);
  std::vector<double> v(size_t(shape_numel(s)));
  for (double& x : v) x = nd(gen);
  return Tensor::from_vector(v, s);
}

inline test::Tol out_tol(DType dt) {
  if (dt == DType::bf16) return {3e-2, 5e-2};
  if (dt == DType::f16) return {3e-3, 5e-3};
  return {6e-4, 2e-3};
}

inline ::testing::AssertionResult near(const char* what, const Tensor& gpu, const Tensor& ref, test::Tol t) {
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

// Inputs on the CPU in their storage dtypes (the oracle upcasts them), grad y and grad h_last.
struct ScanProblem {
  ScanInputs in;
  Tensor g, gh;
};

inline ScanProblem make_scan_problem(const Case& c, uint32_t seed) {
  ScanProblem P;
  const int64_t Bt = c.Bt, L = c.L, D = c.D, G = c.G, N = c.N;
  ScanInputs& in = P.in;
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
  P.g = normal_cpu({Bt, L, D}, seed + 11).to(c.dt);
  if (c.gh) P.gh = normal_cpu({Bt, D, N}, seed + 12).to(DType::f32);
  return P;
}

// The oracle's inputs: every floating tensor upcast to f64 (seq_idx stays i32).
inline ScanInputs as_f64(const ScanInputs& in) {
  auto f = [](const Tensor& t) { return t.defined() ? t.to(DType::f64) : Tensor(); };
  return {f(in.u), f(in.delta), f(in.A), f(in.B), f(in.C), f(in.D_skip), f(in.z), f(in.delta_bias), f(in.h0),
          in.seq_idx};
}

inline Tensor on(const Tensor& t, const Device& dev) { return t.defined() ? t.to(dev) : Tensor(); }
inline ScanInputs scan_inputs_on(const ScanInputs& in, const Device& dev) {
  return {on(in.u, dev),       on(in.delta, dev), on(in.A, dev),          on(in.B, dev),  on(in.C, dev),
          on(in.D_skip, dev),  on(in.z, dev),     on(in.delta_bias, dev), on(in.h0, dev), on(in.seq_idx, dev)};
}

// A CUDA implementation's entry points (the real ones, or the emulated ones of tests/emu) and where its
// inputs live.
struct ScanImpl {
  void (*forward)(const ScanInputs&, const kernels::ScanOptions&, Tensor& y, Tensor& h_last,
                  kernels::SegmentStarts* starts);
  void (*backward)(const ScanInputs&, const Tensor& grad_y, const Tensor& grad_h_last, const kernels::ScanOptions&,
                   kernels::ScanGrads& grads, const kernels::SegmentStarts* starts);
  Device device;
};

// y and h_last poisoned with NaN before the forward writes them; the forward's segment starts kept.
inline kernels::ScanOutputs scan_forward(const ScanImpl& impl, const ScanInputs& in, const kernels::ScanOptions& opt) {
  kernels::ScanOutputs o;
  o.y = Tensor::full(in.u.shape(), std::nan(""), in.u.dtype(), in.u.device());
  o.h_last = Tensor::full({in.u.size(0), in.u.size(2), in.A.size(1)}, std::nan(""), DType::f32, in.u.device());
  impl.forward(in, opt, o.y, o.h_last, &o.starts);
  return o;
}

// The forward, and the backward three ways (default, deterministic, and from the forward's segment start
// states: the autograd op's path), against the f64 reference.
inline void check_scan_case(const Case& c, const ScanImpl& impl, uint32_t seed = 100) {
  SCOPED_TRACE(describe(c));
  const ScanProblem P = make_scan_problem(c, seed);
  const ScanInputs in = scan_inputs_on(P.in, impl.device);
  const Tensor g = on(P.g, impl.device), gh = on(P.gh, impl.device);
  kernels::ScanOptions opt;
  opt.delta_softplus = c.softplus;
  const ScanInputs ref_in = as_f64(P.in);
  const kernels::ScanOutputs ref = kernels::selective_scan_reference_forward(ref_in, opt);
  const kernels::ScanOutputs out = scan_forward(impl, in, opt);
  const Tol to = out_tol(c.dt);
  EXPECT_TRUE(near("y", out.y, ref.y, to));
  EXPECT_TRUE(near("h_last", out.h_last, ref.h_last, to));

  const Tensor g64 = P.g.to(DType::f64), gh64 = P.gh.defined() ? P.gh.to(DType::f64) : Tensor();
  const kernels::ScanGrads rg = kernels::selective_scan_reference_backward(ref_in, g64, gh64, opt);
  for (const char* mode : {"default", "deterministic", "forward's segment starts"}) {
    SCOPED_TRACE(mode);
    const bool det = std::string(mode) == "deterministic", saved = std::string(mode)[0] == 'f';
    opt.deterministic = det;
    kernels::ScanGrads gg;
    impl.backward(in, g, gh, opt, gg, saved ? &out.starts : nullptr);
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
}

}  // namespace ssm::test
