// add_norm (fused residual add + RMSNorm / LayerNorm): values against a direct evaluation, float64
// gradchecks of both outputs (with and without residual, weight, bias), output dtypes, input errors.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "autograd/functions.h"
#include "kernels/norms/add_norm.h"

using namespace ssm;

namespace {

Tensor randn(const Shape& s, uint64_t seed, DType dt = DType::f64, double mean = 0, double scale = 1) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> n;
  std::vector<double> v(size_t(shape_numel(s)));
  for (auto& x : v) x = mean + scale * n(g);
  Tensor t = Tensor::from_vector(v, s);
  return dt == DType::f64 ? t : t.to(dt);
}

std::string bad_input(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(int(e.kind()), int(ErrorKind::BadInput)) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected a BadInput error";
  return "";
}

}  // namespace

TEST(AddNorm, ValuesAgainstDirectFormula) {
  const int64_t R = 6, C = 13;
  for (bool rms : {true, false}) {
    Tensor x = randn({2, 3, C}, 1, DType::f64, 0.5, 2.0), res = randn({2, 3, C}, 2), w = randn({C}, 3),
           b = randn({C}, 4);
    auto out = kernels::add_norm(ag::Variable(x), ag::Variable(res), ag::Variable(w),
                                 rms ? ag::Variable() : ag::Variable(b), 1e-5, rms);
    ASSERT_EQ(out.y.dtype(), DType::f64);
    ASSERT_EQ(out.residual.dtype(), DType::f64);
    auto y = out.y.data().to_double_vector(), r = out.residual.data().to_double_vector();
    auto xv = x.to_double_vector(), rv = res.to_double_vector(), wv = w.to_double_vector(), bv = b.to_double_vector();
    for (int64_t i = 0; i < R; ++i) {
      std::vector<double> s(static_cast<size_t>(C));
      double mu = 0, var = 0;
      for (int64_t c = 0; c < C; ++c) s[size_t(c)] = xv[size_t(i * C + c)] + rv[size_t(i * C + c)];
      if (!rms)
        for (double v : s) mu += v / C;
      for (double v : s) var += (v - mu) * (v - mu) / C;
      for (int64_t c = 0; c < C; ++c) {
        EXPECT_NEAR(r[size_t(i * C + c)], s[size_t(c)], 1e-14);
        double want = (s[size_t(c)] - mu) / std::sqrt(var + 1e-5) * wv[size_t(c)] + (rms ? 0.0 : bv[size_t(c)]);
        EXPECT_NEAR(y[size_t(i * C + c)], want, 1e-12) << (rms ? "rms" : "layer") << " row " << i << " c " << c;
      }
    }
  }
}

TEST(AddNorm, NoResidualIsPlainNormAndCopiesX) {
  Tensor x = randn({4, 9}, 5, DType::f32), w = randn({9}, 6, DType::f32);
  auto out = kernels::add_norm(ag::Variable(x), ag::Variable(), ag::Variable(w), ag::Variable(), 1e-6, true);
  EXPECT_EQ(out.residual.dtype(), DType::f32);
  EXPECT_EQ(out.residual.data().to_float_vector(), x.to_float_vector());
  EXPECT_NE(out.residual.data().data_ptr(), x.data_ptr());  // a copy, not an alias of x
  auto y = out.y.data().to_double_vector();
  auto xv = x.to_double_vector(), wv = w.to_double_vector();
  for (int r = 0; r < 4; ++r) {
    double ms = 0;
    for (int c = 0; c < 9; ++c) ms += xv[size_t(r * 9 + c)] * xv[size_t(r * 9 + c)] / 9;
    for (int c = 0; c < 9; ++c)
      EXPECT_NEAR(y[size_t(r * 9 + c)], xv[size_t(r * 9 + c)] / std::sqrt(ms + 1e-6) * wv[size_t(c)], 1e-5);
  }
}

TEST(AddNorm, GradcheckBothOutputs) {
  // sum(w1 * y) + sum(w2 * r) through cat: the residual output's gradient reaches x and residual too.
  const int64_t C = 7;
  for (bool rms : {true, false})
    for (bool with_res : {true, false})
      for (bool affine : {true, false}) {
        std::vector<Tensor> inputs{randn({2, 3, C}, 11, DType::f64, 0.3, 1.5)};
        if (with_res) inputs.push_back(randn({2, 3, C}, 12));
        if (affine) inputs.push_back(randn({C}, 13, DType::f64, 1.0, 0.5));
        if (affine && !rms) inputs.push_back(randn({C}, 14));
        auto fn = [&](const std::vector<ag::Variable>& v) {
          size_t i = 1;
          ag::Variable res = with_res ? v[i++] : ag::Variable();
          ag::Variable w = affine ? v[i++] : ag::Variable();
          ag::Variable b = affine && !rms ? v[i++] : ag::Variable();
          auto out = kernels::add_norm(v[0], res, w, b, 1e-5, rms);
          return ag::cat({out.y, out.residual}, -1);
        };
        EXPECT_EQ(ag::gradcheck(fn, inputs), "") << (rms ? "rms" : "layer") << " residual=" << with_res
                                                 << " affine=" << affine;
      }
}

TEST(AddNorm, GradcheckChainedLayers) {
  // Two layers as in the LM: (h, r) = add_norm(x, none); h = h * s; (h2, r2) = add_norm(h, r); out = h2 + r2.
  const int64_t C = 5;
  std::vector<Tensor> inputs{randn({3, C}, 21), randn({C}, 22, DType::f64, 1.0, 0.3), randn({C}, 23, DType::f64, 1.0, 0.3),
                             randn({C}, 24)};
  auto fn = [](const std::vector<ag::Variable>& v) {
    auto a = kernels::add_norm(v[0], ag::Variable(), v[1], ag::Variable(), 1e-5, true);
    ag::Variable h = ag::mul(a.y, v[3]);
    auto b = kernels::add_norm(h, a.residual, v[2], ag::Variable(), 1e-5, true);
    return ag::add(b.y, b.residual);
  };
  EXPECT_EQ(ag::gradcheck(fn, inputs), "");
}

TEST(AddNorm, OutputDtypeBf16OnCpu) {
  Tensor x = randn({3, 8}, 31, DType::f32), res = randn({3, 8}, 32, DType::f32), w = randn({8}, 33, DType::f32);
  auto f32 = kernels::add_norm_forward(x, res, w, Tensor(), 1e-5, true, DType::f32);
  auto b16 = kernels::add_norm_forward(x, res, w, Tensor(), 1e-5, true, DType::bf16);
  EXPECT_EQ(b16.y.dtype(), DType::bf16);
  EXPECT_EQ(b16.residual.dtype(), DType::f32);
  EXPECT_EQ(b16.y.to(DType::f32).to_float_vector(), f32.y.to(DType::bf16).to(DType::f32).to_float_vector());
  // bf16 x on the CPU: converted to f32 first; the residual stream is f32.
  auto xb = kernels::add_norm_forward(x.to(DType::bf16), res, w, Tensor(), 1e-5, true, DType::bf16);
  EXPECT_EQ(xb.residual.dtype(), DType::f32);
  EXPECT_EQ(xb.y.dtype(), DType::bf16);
}

TEST(AddNorm, BackwardMatchesTensorApi) {
  // The autograd op's gradients equal add_norm_backward's (gr also reaching x and residual unchanged).
  const int64_t C = 6;
  Tensor x = randn({4, C}, 41), res = randn({4, C}, 42), w = randn({C}, 43), b = randn({C}, 44), gy = randn({4, C}, 45);
  ag::Variable xv(x, true), rv(res, true), wv(w, true), bv(b, true);
  auto out = kernels::add_norm(xv, rv, wv, bv, 1e-5, false);
  out.y.backward(gy);
  auto f = kernels::add_norm_forward(x, res, w, b, 1e-5, false, DType::f64);
  auto g = kernels::add_norm_backward(gy, f.residual, w, f.mean, f.rstd, false, true, true, true);
  EXPECT_EQ(xv.grad().to_double_vector(), g.residual.to_double_vector());
  EXPECT_EQ(rv.grad().to_double_vector(), g.residual.to_double_vector());
  EXPECT_EQ(wv.grad().to_double_vector(), g.weight.to_double_vector());
  EXPECT_EQ(bv.grad().to_double_vector(), g.bias.to_double_vector());
}

TEST(AddNorm, InputErrors) {
  Tensor x = randn({2, 4}, 1, DType::f32), w = Tensor::ones({4});
  auto msg = bad_input([&] { kernels::add_norm_forward(x, randn({2, 4}, 2), w, Tensor(), 1e-5, true, DType::f32); });
  EXPECT_NE(msg.find("residual must be f32"), std::string::npos) << msg;
  msg = bad_input([&] { kernels::add_norm_forward(x, randn({2, 5}, 2, DType::f32), w, Tensor(), 1e-5, true, DType::f32); });
  EXPECT_NE(msg.find("[2, 5]"), std::string::npos) << msg;
  msg = bad_input([&] { kernels::add_norm_forward(x, Tensor(), Tensor::ones({3}), Tensor(), 1e-5, true, DType::f32); });
  EXPECT_NE(msg.find("weight"), std::string::npos) << msg;
  msg = bad_input([&] { kernels::add_norm_forward(x, Tensor(), w, Tensor::zeros({4}), 1e-5, true, DType::f32); });
  EXPECT_NE(msg.find("no bias"), std::string::npos) << msg;
  msg = bad_input([&] { kernels::add_norm_forward(x, Tensor(), w, Tensor(), 1e-5, true, DType::f16); });
  EXPECT_NE(msg.find("output dtype"), std::string::npos) << msg;
  msg = bad_input([&] { kernels::add_norm_forward(x, Tensor(), w.to(DType::f64), Tensor(), 1e-5, false, DType::f32); });
  EXPECT_NE(msg.find("add_layer_norm"), std::string::npos) << msg;
}
