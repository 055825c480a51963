// Selective scan on the CPU: float64 gradchecks of every input (through y and h_last, softplus on and
// off, optional inputs on and off, packed sequences), the forward against an independent
// convolution-form evaluation, packed rows against separate scans, chained scans against one scan,
// bad inputs, and run-to-run determinism of the backward.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "autograd/functions.h"
#include "kernels/selective_scan/selective_scan.h"

using namespace ssm;
using kernels::ScanInputs;
using kernels::ScanOptions;

namespace {

Tensor uniform(const Shape& s, uint64_t seed, double lo, double hi, DType dt = DType::f64) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(size_t(shape_numel(s)));
  for (auto& x : v) x = u(g);
  Tensor t = Tensor::from_vector(v, s);
  return dt == DType::f64 ? t : t.to(dt);
}

struct Sizes {
  int64_t Bt, L, D, N, G;
};

// Random inputs in the ranges a Mamba block produces: A < 0, dt > 0 after softplus (or raw delta > 0
// when softplus is off). Every optional input is present; tests drop what they do not want.
ScanInputs make_inputs(const Sizes& s, uint64_t seed, bool softplus = true) {
  ScanInputs in;
  in.u = uniform({s.Bt, s.L, s.D}, seed + 1, -1, 1);
  in.delta = softplus ? uniform({s.Bt, s.L, s.D}, seed + 2, -1.5, 0.5) : uniform({s.Bt, s.L, s.D}, seed + 2, 0.1, 0.6);
  in.A = uniform({s.D, s.N}, seed + 3, -1.5, -0.2);
  in.B = uniform({s.Bt, s.L, s.G, s.N}, seed + 4, -1, 1);
  in.C = uniform({s.Bt, s.L, s.G, s.N}, seed + 5, -1, 1);
  in.D_skip = uniform({s.D}, seed + 6, -1, 1);
  in.z = uniform({s.Bt, s.L, s.D}, seed + 7, -2, 2);
  in.delta_bias = uniform({s.D}, seed + 8, -0.2, 0.2);
  in.h0 = uniform({s.Bt, s.D, s.N}, seed + 9, -1, 1);
  return in;
}

std::vector<double> vec(const Tensor& t) { return t.contiguous().to_double_vector(); }

void expect_close(const Tensor& a, const Tensor& b, double tol, const std::string& what) {
  ASSERT_TRUE(a.defined() && b.defined()) << what;
  ASSERT_EQ(a.shape(), b.shape()) << what;
  auto x = vec(a), y = vec(b);
  for (size_t i = 0; i < x.size(); ++i)
    ASSERT_NEAR(x[i], y[i], tol * (1.0 + std::abs(y[i]))) << what << " element " << i;
}

ag::Variable flat(const ag::Variable& v) { return ag::reshape(v, {v.numel()}); }

// ---------------- an independent evaluation: the convolution form ----------------
// y_t = C_t . [ sum_{s = t0..t} (prod_{r=s+1..t} exp(dt_r A)) dt_s B_s u_s + [t0 == 0] (prod_{r=0..t} exp(dt_r A)) h0 ]
//       + D u_t, then times silu(z_t); t0 = the start of t's document.
struct Naive {
  std::vector<double> y, h_last;
};

Naive naive_scan(const ScanInputs& in, bool softplus) {
  const int64_t Bt = in.u.size(0), L = in.u.size(1), D = in.u.size(2), N = in.A.size(1), G = in.B.size(2);
  auto u = vec(in.u), delta = vec(in.delta), A = vec(in.A), B = vec(in.B), C = vec(in.C);
  auto Dk = in.D_skip.defined() ? vec(in.D_skip) : std::vector<double>();
  auto z = in.z.defined() ? vec(in.z) : std::vector<double>();
  auto bias = in.delta_bias.defined() ? vec(in.delta_bias) : std::vector<double>();
  auto h0 = in.h0.defined() ? vec(in.h0) : std::vector<double>();
  auto seq = in.seq_idx.defined() ? in.seq_idx.to_int_vector() : std::vector<int64_t>();
  auto X = [&](int64_t b, int64_t t, int64_t c) { return size_t((b * L + t) * D + c); };
  auto BC = [&](int64_t b, int64_t t, int64_t g, int64_t n) { return size_t(((b * L + t) * G + g) * N + n); };
  auto dt = [&](int64_t b, int64_t t, int64_t c) {
    const double x = delta[X(b, t, c)] + (bias.empty() ? 0.0 : bias[size_t(c)]);
    return softplus ? std::log(1.0 + std::exp(x)) : x;
  };
  auto doc_start = [&](int64_t b, int64_t t) {
    while (!seq.empty() && t > 0 && seq[size_t(b * L + t)] == seq[size_t(b * L + t - 1)]) --t;
    return seq.empty() ? int64_t(0) : t;
  };
  // The state h_t[n] of channel c, row b, in closed form.
  auto state = [&](int64_t b, int64_t c, int64_t t, int64_t n) {
    const int64_t g = c / (D / G), t0 = doc_start(b, t);
    const double a = A[size_t(c * N + n)];
    double h = 0;
    for (int64_t s = t0; s <= t; ++s) {
      double decay = 1;
      for (int64_t r = s + 1; r <= t; ++r) decay *= std::exp(dt(b, r, c) * a);
      h += decay * dt(b, s, c) * B[BC(b, s, g, n)] * u[X(b, s, c)];
    }
    if (t0 == 0 && !h0.empty()) {
      double decay = 1;
      for (int64_t r = 0; r <= t; ++r) decay *= std::exp(dt(b, r, c) * a);
      h += decay * h0[size_t((b * D + c) * N + n)];
    }
    return h;
  };
  Naive out;
  out.y.assign(size_t(Bt * L * D), 0.0);
  out.h_last.assign(size_t(Bt * D * N), 0.0);
  for (int64_t b = 0; b < Bt; ++b)
    for (int64_t c = 0; c < D; ++c) {
      const int64_t g = c / (D / G);
      for (int64_t t = 0; t < L; ++t) {
        double y = Dk.empty() ? 0.0 : Dk[size_t(c)] * u[X(b, t, c)];
        for (int64_t n = 0; n < N; ++n) y += C[BC(b, t, g, n)] * state(b, c, t, n);
        if (!z.empty()) y *= z[X(b, t, c)] / (1.0 + std::exp(-z[X(b, t, c)]));
        out.y[X(b, t, c)] = y;
      }
      for (int64_t n = 0; n < N; ++n) out.h_last[size_t((b * D + c) * N + n)] = state(b, c, L - 1, n);
    }
  return out;
}

// Which optional inputs a gradcheck case uses.
struct Case {
  bool softplus, with_D, with_z, with_bias, with_h0, packed;
};

std::string case_str(const Case& c) {
  return cat("softplus=", c.softplus, " D=", c.with_D, " z=", c.with_z, " delta_bias=", c.with_bias,
             " h0=", c.with_h0, " packed=", c.packed);
}

const Sizes kSmall{2, 7, 4, 3, 2};

// Row 0 holds three documents [0,0,0,1,1,2,2], row 1 one.
Tensor packed_seq_idx() { return Tensor::from_vector(std::vector<int32_t>{0, 0, 0, 1, 1, 2, 2, 5, 5, 5, 5, 5, 5, 5}, {2, 7}); }

ScanInputs for_case(const Case& c, uint64_t seed) {
  ScanInputs in = make_inputs(kSmall, seed, c.softplus);
  if (!c.with_D) in.D_skip = Tensor();
  if (!c.with_z) in.z = Tensor();
  if (!c.with_bias) in.delta_bias = Tensor();
  if (!c.with_h0) in.h0 = Tensor();
  if (c.packed) in.seq_idx = packed_seq_idx();
  return in;
}

}  // namespace

// ---------------- forward values ----------------

TEST(SelectiveScan, ForwardMatchesConvolutionForm) {
  for (bool softplus : {true, false})
    for (bool packed : {false, true}) {
      ScanInputs in = make_inputs({2, 9, 6, 5, 3}, 100 + softplus, softplus);
      if (packed) in.seq_idx = Tensor::from_vector(std::vector<int32_t>{0, 0, 1, 1, 1, 1, 4, 4, 4,  //
                                                                         7, 7, 7, 7, 7, 7, 7, 7, 8},
                                                   {2, 9});
      ScanOptions opt;
      opt.delta_softplus = softplus;
      auto out = kernels::selective_scan_forward(in, opt);
      Naive ref = naive_scan(in, softplus);
      ASSERT_EQ(out.y.shape(), Shape({2, 9, 6}));
      ASSERT_EQ(out.h_last.shape(), Shape({2, 6, 5}));
      EXPECT_EQ(out.y.dtype(), DType::f64);
      EXPECT_EQ(out.h_last.dtype(), DType::f64);
      auto y = vec(out.y), h = vec(out.h_last);
      for (size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], ref.y[i], 1e-12) << "y " << i << " packed " << packed;
      for (size_t i = 0; i < h.size(); ++i) ASSERT_NEAR(h[i], ref.h_last[i], 1e-12) << "h_last " << i;
    }
}

TEST(SelectiveScan, ForwardWithoutOptionalInputs) {
  ScanInputs in = make_inputs({1, 5, 2, 4, 1}, 7);
  in.D_skip = in.z = in.delta_bias = in.h0 = Tensor();
  auto out = kernels::selective_scan_forward(in, {});
  Naive ref = naive_scan(in, true);
  auto y = vec(out.y);
  for (size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], ref.y[i], 1e-12) << i;
}

TEST(SelectiveScan, F32MatchesF64) {
  ScanInputs in = make_inputs({2, 33, 8, 16, 2}, 55);
  in.seq_idx = Tensor::zeros({2, 33}, DType::i32);
  ScanInputs in32 = in;
  for (Tensor* t : {&in32.u, &in32.delta, &in32.A, &in32.B, &in32.C, &in32.D_skip, &in32.z, &in32.delta_bias, &in32.h0})
    *t = t->to(DType::f32);
  auto o64 = kernels::selective_scan_forward(in, {});
  auto o32 = kernels::selective_scan_forward(in32, {});
  EXPECT_EQ(o32.y.dtype(), DType::f32);
  EXPECT_EQ(o32.h_last.dtype(), DType::f32);
  expect_close(o32.y, o64.y, 1e-5, "y");
  expect_close(o32.h_last, o64.h_last, 1e-5, "h_last");
  Tensor gy = uniform({2, 33, 8}, 56, -1, 1), gh = uniform({2, 8, 16}, 57, -1, 1);
  auto g64 = kernels::selective_scan_backward(in, gy, gh, {});
  auto g32 = kernels::selective_scan_backward(in32, gy.to(DType::f32), gh.to(DType::f32), {});
  expect_close(g32.u, g64.u, 1e-4, "gu");
  expect_close(g32.delta, g64.delta, 1e-4, "gdelta");
  expect_close(g32.A, g64.A, 1e-4, "gA");
  expect_close(g32.B, g64.B, 1e-4, "gB");
  expect_close(g32.C, g64.C, 1e-4, "gC");
  expect_close(g32.h0, g64.h0, 1e-4, "gh0");
  EXPECT_EQ(g32.B.dtype(), DType::f32);
}

// ---------------- gradients ----------------

TEST(SelectiveScan, GradcheckEveryInput) {
  const Case cases[] = {
      {true, true, true, true, true, false},     {false, true, true, true, true, false},
      {true, false, false, false, false, false}, {false, false, true, false, true, false},
      {true, true, true, true, true, true},      {false, true, false, true, true, true},
  };
  uint64_t seed = 200;
  for (const Case& c : cases) {
    const ScanInputs in = for_case(c, seed += 10);
    ScanOptions opt;
    opt.delta_softplus = c.softplus;
    const Tensor seq = in.seq_idx;
    // Inputs in ScanInputs order; absent ones are replaced by a dummy and left out of the op.
    std::vector<Tensor> xs{in.u, in.delta, in.A, in.B, in.C};
    for (const Tensor& t : {in.D_skip, in.z, in.delta_bias, in.h0}) xs.push_back(t.defined() ? t : Tensor::zeros({1}, DType::f64));
    auto fn = [c, seq, opt](const std::vector<ag::Variable>& v) {
      auto opt_in = [](bool on, const ag::Variable& x) { return on ? x : ag::Variable(); };
      auto r = kernels::selective_scan(v[0], v[1], v[2], v[3], v[4], opt_in(c.with_D, v[5]), opt_in(c.with_z, v[6]),
                                       opt_in(c.with_bias, v[7]), opt_in(c.with_h0, v[8]), seq, opt);
      return ag::cat({flat(r.y), flat(r.h_last)}, 0);  // both outputs in the checked loss
    };
    EXPECT_EQ(ag::gradcheck(fn, xs), "") << case_str(c);
  }
}

TEST(SelectiveScan, GradcheckOneOutputOnly) {
  const Case c{true, true, true, true, true, true};
  const ScanInputs in = for_case(c, 300);
  const Tensor seq = in.seq_idx;
  const std::vector<Tensor> xs{in.u, in.delta, in.A, in.B, in.C, in.D_skip, in.z, in.delta_bias, in.h0};
  for (bool use_y : {true, false}) {
    auto fn = [seq, use_y](const std::vector<ag::Variable>& v) {
      auto r = kernels::selective_scan(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], seq, {});
      return use_y ? r.y : r.h_last;  // the other output gets no gradient (zero)
    };
    EXPECT_EQ(ag::gradcheck(fn, xs), "") << (use_y ? "y only" : "h_last only");
  }
}

TEST(SelectiveScan, OnlyInputsThatRequireGradGetGradients) {
  const ScanInputs in = make_inputs(kSmall, 400);
  ag::Variable u(in.u, true), delta(in.delta), A(in.A, true), B(in.B), C(in.C), h0(in.h0, true);
  auto r = kernels::selective_scan(u, delta, A, B, C, ag::Variable(), ag::Variable(), ag::Variable(), h0, Tensor(), {});
  ASSERT_TRUE(r.y.requires_grad());
  ASSERT_TRUE(r.h_last.requires_grad());
  ag::sum(r.y).backward();
  EXPECT_TRUE(u.has_grad());
  EXPECT_TRUE(A.has_grad());
  EXPECT_TRUE(h0.has_grad());
  EXPECT_FALSE(delta.has_grad());
  EXPECT_FALSE(B.has_grad());
  EXPECT_FALSE(C.has_grad());

  ag::Variable u2(in.u), d2(in.delta), A2(in.A), B2(in.B), C2(in.C);  // nothing requires grad: no graph
  auto r2 = kernels::selective_scan(u2, d2, A2, B2, C2, {}, {}, {}, {}, Tensor(), {});
  EXPECT_FALSE(r2.y.requires_grad());
  EXPECT_FALSE(r2.h_last.requires_grad());
}

// ---------------- packed sequences ----------------

namespace {
ScanInputs slice_time(const ScanInputs& in, int64_t t0, int64_t len) {
  ScanInputs s = in;
  for (Tensor* t : {&s.u, &s.delta, &s.B, &s.C, &s.z}) *t = t->narrow(1, t0, len).contiguous();
  s.seq_idx = Tensor();
  return s;
}
}  // namespace

TEST(SelectiveScan, PackedRowEqualsSeparateScans) {
  // One row, documents [0, 3) and [3, 7).
  ScanInputs in = make_inputs({1, 7, 4, 3, 2}, 500);
  in.seq_idx = Tensor::from_vector(std::vector<int32_t>{4, 4, 4, 9, 9, 9, 9}, {1, 7});
  ScanInputs doc1 = slice_time(in, 0, 3), doc2 = slice_time(in, 3, 4);
  doc2.h0 = Tensor();  // h0 feeds only the first document
  const ScanOptions opt;

  auto packed = kernels::selective_scan_forward(in, opt);
  auto o1 = kernels::selective_scan_forward(doc1, opt);
  auto o2 = kernels::selective_scan_forward(doc2, opt);
  expect_close(packed.y.narrow(1, 0, 3), o1.y, 1e-13, "y doc 1");
  expect_close(packed.y.narrow(1, 3, 4), o2.y, 1e-13, "y doc 2");
  expect_close(packed.h_last, o2.h_last, 1e-13, "h_last = end of the last document");

  // h0 changes nothing in the second document.
  ScanInputs no_h0 = in;
  no_h0.h0 = Tensor();
  auto p0 = kernels::selective_scan_forward(no_h0, opt);
  expect_close(p0.y.narrow(1, 3, 4), packed.y.narrow(1, 3, 4), 0, "doc 2 without h0");
  EXPECT_GT(std::abs(vec(p0.y)[0] - vec(packed.y)[0]), 1e-6) << "h0 must affect the first document";

  // Gradients: packed = doc 1 (no h_last gradient: its end state is not an output) + doc 2.
  Tensor gy = uniform({1, 7, 4}, 501, -1, 1), gh = uniform({1, 4, 3}, 502, -1, 1);
  auto gp = kernels::selective_scan_backward(in, gy, gh, opt);
  auto g1 = kernels::selective_scan_backward(doc1, gy.narrow(1, 0, 3), Tensor(), opt);
  auto g2 = kernels::selective_scan_backward(doc2, gy.narrow(1, 3, 4), gh, opt);
  for (auto [gpk, ga, gb, name] : {std::tuple{gp.u, g1.u, g2.u, "u"}, std::tuple{gp.delta, g1.delta, g2.delta, "delta"},
                                   std::tuple{gp.B, g1.B, g2.B, "B"}, std::tuple{gp.C, g1.C, g2.C, "C"},
                                   std::tuple{gp.z, g1.z, g2.z, "z"}}) {
    expect_close(gpk.narrow(1, 0, 3), ga, 1e-12, cat("grad ", name, " doc 1"));
    expect_close(gpk.narrow(1, 3, 4), gb, 1e-12, cat("grad ", name, " doc 2"));
  }
  for (auto [gpk, ga, gb, name] : {std::tuple{gp.A, g1.A, g2.A, "A"}, std::tuple{gp.D_skip, g1.D_skip, g2.D_skip, "D"},
                                   std::tuple{gp.delta_bias, g1.delta_bias, g2.delta_bias, "delta_bias"}})
    expect_close(gpk, ssm::add(ga, gb), 1e-12, cat("grad ", name, " (sum of both documents)"));
  expect_close(gp.h0, g1.h0, 1e-12, "grad h0 comes from the first document only");
}

// ---------------- chaining: [0, L) == [0, k) then [k, L) with h0 = the first h_last ----------------

TEST(SelectiveScan, ChainedScansEqualOneScan) {
  const Sizes s{2, 9, 4, 3, 2};
  const ScanInputs in = make_inputs(s, 600);
  const Tensor wy = uniform({s.Bt, s.L, s.D}, 601, -1, 1), wh = uniform({s.Bt, s.D, s.N}, 602, -1, 1);
  for (int64_t k : {1, 4, 8}) {
    auto leaves = [&] {
      std::vector<ag::Variable> v;
      for (const Tensor& t : {in.u, in.delta, in.A, in.B, in.C, in.D_skip, in.z, in.delta_bias, in.h0})
        v.emplace_back(t.clone(), true);
      return v;
    };
    std::vector<ag::Variable> one = leaves(), two = leaves();
    // One scan; loss = sum(y wy) + sum(h_last wh).
    auto r = kernels::selective_scan(one[0], one[1], one[2], one[3], one[4], one[5], one[6], one[7], one[8], Tensor(), {});
    ag::add(ag::sum(ag::mul(r.y, ag::Variable(wy))), ag::sum(ag::mul(r.h_last, ag::Variable(wh)))).backward();
    // Two scans over the time slices of the same leaves.
    auto part = [&](const ag::Variable& x, int64_t t0, int64_t len) { return ag::narrow(x, 1, t0, len); };
    auto& v = two;
    auto r1 = kernels::selective_scan(part(v[0], 0, k), part(v[1], 0, k), v[2], part(v[3], 0, k), part(v[4], 0, k), v[5],
                                      part(v[6], 0, k), v[7], v[8], Tensor(), {});
    const int64_t k2 = s.L - k;
    auto r2 = kernels::selective_scan(part(v[0], k, k2), part(v[1], k, k2), v[2], part(v[3], k, k2), part(v[4], k, k2),
                                      v[5], part(v[6], k, k2), v[7], r1.h_last, Tensor(), {});
    ag::Variable y = ag::cat({r1.y, r2.y}, 1);
    expect_close(y.data(), r.y.data(), 1e-12, cat("y, k = ", k));
    expect_close(r2.h_last.data(), r.h_last.data(), 1e-12, cat("h_last, k = ", k));
    ag::add(ag::sum(ag::mul(y, ag::Variable(wy))), ag::sum(ag::mul(r2.h_last, ag::Variable(wh)))).backward();
    const char* names[] = {"u", "delta", "A", "B", "C", "D_skip", "z", "delta_bias", "h0"};
    for (size_t i = 0; i < 9; ++i) {
      ASSERT_TRUE(one[i].has_grad() && two[i].has_grad()) << names[i];
      expect_close(two[i].grad(), one[i].grad(), 1e-11, cat("grad ", names[i], ", k = ", k));
    }
  }
}

// ---------------- bad inputs ----------------

namespace {
void expect_bad(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one mentioning " << parts[0];
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput) << e.what();
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << "'" << p << "' not in: " << e.what();
  }
}
}  // namespace

TEST(SelectiveScan, BadInputsNameTheTensors) {
  const ScanInputs good = make_inputs(kSmall, 700);  // u (2, 7, 4), A (4, 3), B/C (2, 7, 2, 3)
  EXPECT_NO_THROW(kernels::check_scan_inputs(good));
  auto with = [&](auto&& edit) {
    ScanInputs in = good;
    edit(in);
    return in;
  };
  auto fwd = [](const ScanInputs& in) { return [in] { kernels::selective_scan_forward(in, {}); }; };

  expect_bad(fwd(with([](ScanInputs& in) { in.B = Tensor::zeros({2, 6, 2, 3}, DType::f64); })),
             {"selective_scan: B [2, 6, 2, 3] must be (Bt, L, G, N) = (2, 7, G, 3)"});
  expect_bad(fwd(with([](ScanInputs& in) { in.B = Tensor::zeros({2, 7, 2, 5}, DType::f64); })), {"B [2, 7, 2, 5]", "A [4, 3]"});
  expect_bad(fwd(with([](ScanInputs& in) { in.C = Tensor::zeros({2, 7, 1, 3}, DType::f64); })),
             {"C [2, 7, 1, 3] must be (Bt, L, G, N) like B = [2, 7, 2, 3]"});
  expect_bad(fwd(with([](ScanInputs& in) { in.u = Tensor::zeros({2, 7}, DType::f64); })), {"u must be (Bt, L, D)", "[2, 7]"});
  expect_bad(fwd(with([](ScanInputs& in) { in.delta = Tensor::zeros({2, 7, 5}, DType::f64); })), {"delta [2, 7, 5]", "[2, 7, 4]"});
  expect_bad(fwd(with([](ScanInputs& in) { in.A = Tensor::zeros({5, 3}, DType::f64); })), {"A [5, 3] must be (D, N)", "D = 4"});
  expect_bad(fwd(with([](ScanInputs& in) { in.D_skip = Tensor::zeros({3}, DType::f64); })), {"D_skip [3] must be (D)"});
  expect_bad(fwd(with([](ScanInputs& in) { in.z = Tensor::zeros({2, 7, 3}, DType::f64); })), {"z [2, 7, 3]"});
  expect_bad(fwd(with([](ScanInputs& in) { in.delta_bias = Tensor::zeros({4, 1}, DType::f64); })), {"delta_bias [4, 1]"});
  expect_bad(fwd(with([](ScanInputs& in) { in.h0 = Tensor::zeros({2, 4, 2}, DType::f64); })),
             {"h0 [2, 4, 2] must be (Bt, D, N) = [2, 4, 3]"});
  // D % G != 0: three groups for four channels.
  expect_bad(fwd(with([](ScanInputs& in) {
               in.B = Tensor::zeros({2, 7, 3, 3}, DType::f64);
               in.C = Tensor::zeros({2, 7, 3, 3}, DType::f64);
             })),
             {"D = 4", "not divisible", "G = 3"});
  // seq_idx: i32 (Bt, L).
  expect_bad(fwd(with([](ScanInputs& in) { in.seq_idx = Tensor::zeros({2, 7}, DType::i64); })), {"seq_idx [2, 7] must be i32, got i64"});
  expect_bad(fwd(with([](ScanInputs& in) { in.seq_idx = Tensor::zeros({2, 6}, DType::i32); })), {"seq_idx [2, 6] must be (Bt, L)"});
  // dtypes on the CPU: all the same, f32 or f64.
  expect_bad(fwd(with([](ScanInputs& in) { in.delta = in.delta.to(DType::f32); })), {"delta [2, 7, 4] is f32 but u is f64"});
  expect_bad(fwd(with([](ScanInputs& in) { in.h0 = in.h0.to(DType::f32); })), {"h0", "is f32 but u is f64"});
  expect_bad(fwd(with([](ScanInputs& in) {
               for (Tensor* t : {&in.u, &in.delta, &in.A, &in.B, &in.C, &in.D_skip, &in.z, &in.delta_bias, &in.h0})
                 *t = t->to(DType::bf16);
             })),
             {"u is bf16", "f32 or f64"});
  expect_bad(fwd(with([](ScanInputs& in) { in.B = Tensor(); })), {"u, delta, A, B and C are required"});
  // Backward: gradient shapes.
  expect_bad([&] { kernels::selective_scan_backward(good, Tensor::zeros({2, 7, 3}, DType::f64), Tensor(), {}); },
             {"grad_y [2, 7, 3] must be (Bt, L, D) = [2, 7, 4]"});
  expect_bad([&] {
    kernels::selective_scan_backward(good, Tensor::zeros({2, 7, 4}, DType::f64), Tensor::zeros({2, 4}, DType::f64), {});
  }, {"grad_h_last [2, 4] must be (Bt, D, N) = [2, 4, 3]"});
  // The autograd op: a missing required input.
  expect_bad([&] {
    kernels::selective_scan(ag::Variable(good.u), ag::Variable(good.delta), ag::Variable(), ag::Variable(good.B),
                            ag::Variable(good.C), {}, {}, {}, {}, Tensor(), {});
  }, {"selective_scan", "required"});
}

TEST(SelectiveScan, BadDevicesAndCudaDtypes) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  const ScanInputs cpu = make_inputs(kSmall, 800);
  auto to_cuda = [](ScanInputs in) {
    for (Tensor* t : {&in.u, &in.delta, &in.B, &in.C, &in.z}) *t = t->to(Device::cuda(0), DType::f32);
    for (Tensor* t : {&in.A, &in.D_skip, &in.delta_bias, &in.h0}) *t = t->to(Device::cuda(0), DType::f32);
    return in;
  };
  ScanInputs in = to_cuda(cpu);
  EXPECT_NO_THROW(kernels::check_scan_inputs(in));
  ScanInputs bad = in;
  bad.A = cpu.A.to(DType::f32);
  expect_bad([&] { kernels::check_scan_inputs(bad); }, {"A is on cpu but u is on cuda"});
  bad = in;
  bad.A = in.A.to(DType::bf16);
  expect_bad([&] { kernels::check_scan_inputs(bad); }, {"A [4, 3] is bf16; on CUDA it must be f32"});
  bad = in;
  bad.delta = in.delta.to(DType::bf16);
  expect_bad([&] { kernels::check_scan_inputs(bad); }, {"delta is bf16 but u is f32"});
  bad = in;
  bad.A = Tensor::zeros({4, 257}, DType::f32, Device::cuda(0));
  bad.B = Tensor::zeros({2, 7, 2, 257}, DType::f32, Device::cuda(0));
  bad.C = bad.B;
  bad.h0 = Tensor();
  expect_bad([&] { kernels::check_scan_inputs(bad); }, {"N = 257", "N <= 256"});
}

// ---------------- determinism ----------------

TEST(SelectiveScan, BackwardIsBitIdenticalRunToRun) {
  // Large enough (Bt L D N = 76800) for the reference to run its OpenMP path.
  ScanInputs in = make_inputs({3, 50, 32, 16, 2}, 900);
  for (Tensor* t : {&in.u, &in.delta, &in.A, &in.B, &in.C, &in.D_skip, &in.z, &in.delta_bias, &in.h0}) *t = t->to(DType::f32);
  in.seq_idx = Tensor::from_vector(std::vector<int32_t>(150, 0), {3, 50});
  ScanOptions opt;
  opt.deterministic = true;
  Tensor gy = uniform({3, 50, 32}, 901, -1, 1, DType::f32), gh = uniform({3, 32, 16}, 902, -1, 1, DType::f32);
  auto a = kernels::selective_scan_backward(in, gy, gh, opt);
  auto b = kernels::selective_scan_backward(in, gy, gh, opt);
  const std::pair<Tensor*, Tensor*> pairs[] = {{&a.u, &b.u}, {&a.delta, &b.delta}, {&a.A, &b.A}, {&a.B, &b.B},
                                               {&a.C, &b.C}, {&a.D_skip, &b.D_skip}, {&a.z, &b.z},
                                               {&a.delta_bias, &b.delta_bias}, {&a.h0, &b.h0}};
  for (auto [x, y] : pairs) {
    ASSERT_TRUE(x->defined() && y->defined());
    EXPECT_EQ(x->to_float_vector(), y->to_float_vector());
  }
  // The threaded run equals batch rows run one at a time (each small enough to run serially).
  Tensor gA_sum = Tensor::zeros(a.A.shape());
  for (int64_t b = 0; b < 3; ++b) {
    ScanInputs row = in;
    for (Tensor* t : {&row.u, &row.delta, &row.B, &row.C, &row.z, &row.h0, &row.seq_idx}) *t = t->narrow(0, b, 1);
    auto out_row = kernels::selective_scan_forward(row, opt);
    auto g_row = kernels::selective_scan_backward(row, gy.narrow(0, b, 1), gh.narrow(0, b, 1), opt);
    expect_close(g_row.u, a.u.narrow(0, b, 1), 0, cat("grad u, row ", b));
    expect_close(g_row.B, a.B.narrow(0, b, 1), 0, cat("grad B, row ", b));
    expect_close(g_row.h0, a.h0.narrow(0, b, 1), 0, cat("grad h0, row ", b));
    expect_close(out_row.y, kernels::selective_scan_forward(in, opt).y.narrow(0, b, 1), 0, cat("y, row ", b));
    gA_sum = ssm::add(gA_sum, g_row.A);
  }
  expect_close(gA_sum, a.A, 1e-5, "grad A = sum over rows");
}

TEST(SelectiveScan, EmptySequence) {
  // L = 0: nothing is scanned; h_last = h0 and its gradient passes straight back to h0.
  ScanInputs in = make_inputs({2, 0, 4, 3, 2}, 1000);
  auto out = kernels::selective_scan_forward(in, {});
  EXPECT_EQ(out.y.shape(), Shape({2, 0, 4}));
  expect_close(out.h_last, in.h0, 0, "h_last = h0");
  Tensor gh = uniform({2, 4, 3}, 1001, -1, 1);
  auto g = kernels::selective_scan_backward(in, Tensor::zeros({2, 0, 4}, DType::f64), gh, {});
  expect_close(g.h0, gh, 0, "grad h0 = grad h_last");
  expect_close(g.A, Tensor::zeros({4, 3}, DType::f64), 0, "grad A");
}
