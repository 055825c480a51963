// Reductions, softmax and cross entropy vs naive loops.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/ops.h"
#include "test_util.h"

using namespace ssm;
using namespace ssm::test;

namespace {

// Naive sum over `dims` (sorted, normalized) of a tensor of shape s with values v; output row-major over kept dims.
std::vector<double> ref_sum(const std::vector<double>& v, const Shape& s, const std::vector<int64_t>& dims) {
  Shape os;
  for (int64_t d = 0; d < int64_t(s.size()); ++d)
    if (std::find(dims.begin(), dims.end(), d) == dims.end()) os.push_back(s[d]);
  std::vector<double> out(size_t(shape_numel(os)), 0.0);
  for (int64_t i = 0; i < int64_t(v.size()); ++i) {
    const auto idx = unravel(i, s);
    int64_t lin = 0;
    for (int64_t d = 0; d < int64_t(s.size()); ++d)
      if (std::find(dims.begin(), dims.end(), d) == dims.end()) lin = lin * s[d] + idx[d];
    out[lin] += v[i];
  }
  return out;
}

}  // namespace

TEST(Reduce, SumOverEveryDimSet) {
  const Shape s = {3, 4, 5, 2};
  Tensor x = rand_t(s, 1, DType::f64);
  std::vector<double> v = x.to_double_vector();
  // Every subset of dims, with and without keepdim, on a contiguous and a permuted input.
  for (int mask = 0; mask < 16; ++mask) {
    std::vector<int64_t> dims;
    for (int64_t d = 0; d < 4; ++d)
      if (mask & (1 << d)) dims.push_back(d);
    std::vector<double> want = ref_sum(v, s, mask ? dims : std::vector<int64_t>{0, 1, 2, 3});
    for (bool keep : {false, true}) {
      Tensor y = sum(x, dims, keep);
      Shape ws;
      for (int64_t d = 0; d < 4; ++d) {
        const bool red = mask == 0 || (mask & (1 << d));
        if (!red) ws.push_back(s[d]);
        else if (keep) ws.push_back(1);
      }
      EXPECT_EQ(y.shape(), ws) << mask;
      expect_near_vec(y.to_double_vector(), want, 1e-12, cat("sum mask ", mask));
    }
  }
  // Permuted input: sum over dim 1 of the (5, 3, 2, 4) view.
  Tensor p = x.permute({2, 0, 3, 1});
  std::vector<double> pv = p.to_double_vector();
  expect_near_vec(sum(p, {1}).to_double_vector(), ref_sum(pv, p.shape(), {1}), 1e-12, "permuted");
  expect_near_vec(sum(p, {-1, 0}).to_double_vector(), ref_sum(pv, p.shape(), {0, 3}), 1e-12, "negative dims");
  expect_bad_input([&] { sum(x, {4}); }, {"sum", "dim 4"});
  expect_bad_input([&] { sum(x, {1, -3}); }, {"sum", "repeated"});
}

TEST(Reduce, SumLargeF32AccumulatesInDouble) {
  // The quickstart's bias gradient: (64, 196, 64) summed over the two leading dims, and the last dim.
  const Shape s = {64, 196, 64};
  Tensor x = rand_t(s, 2);
  std::vector<double> v = x.to_double_vector();
  expect_near_vec(sum(x, {0, 1}).to_double_vector(), ref_sum(v, s, {0, 1}), 1e-6, "leading");
  expect_near_vec(sum(x, {2}).to_double_vector(), ref_sum(v, s, {2}), 1e-6, "last");
  expect_near_vec(sum(x, {1}).to_double_vector(), ref_sum(v, s, {1}), 1e-6, "middle");
  // Full sum of many 1.0f + tiny: f32 accumulation would stall at 2^24.
  Tensor ones = Tensor::ones({1 << 25});
  EXPECT_EQ(sum(ones).item(), double(1 << 25));
  EXPECT_EQ(sum(ones).dim(), 0);
}

TEST(Reduce, IntegerSums) {
  Tensor i = Tensor::from_vector(std::vector<int32_t>{1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(sum(i, {0}).dtype(), DType::i32);
  EXPECT_EQ(sum(i, {0}).to_int_vector(), (std::vector<int64_t>{5, 7, 9}));
  Tensor u = Tensor::from_vector(std::vector<uint8_t>{1, 0, 1, 1, 255}, {5});
  EXPECT_EQ(sum(u).dtype(), DType::i64);
  EXPECT_EQ(sum(u).item(), 258.0);
}

TEST(Reduce, MeanAmaxArgmax) {
  const Shape s = {4, 7, 3};
  Tensor x = rand_t(s, 3, DType::f64);
  std::vector<double> v = x.to_double_vector();
  for (int64_t d = 0; d < 3; ++d) {
    std::vector<double> want = ref_sum(v, s, {d});
    for (auto& w : want) w /= double(s[d]);
    expect_near_vec(mean(x, {d}).to_double_vector(), want, 1e-12, "mean");
    // amax / argmax along d, naive.
    Shape os = s;
    os.erase(os.begin() + d);
    std::vector<double> mx(size_t(shape_numel(os)), -INFINITY), am(mx.size(), -1);
    for (int64_t i = 0; i < int64_t(v.size()); ++i) {
      auto idx = unravel(i, s);
      const int64_t r = idx[d];
      idx.erase(idx.begin() + d);
      int64_t lin = 0;
      for (size_t k = 0; k < idx.size(); ++k) lin = lin * os[k] + idx[k];
      if (v[i] > mx[lin]) {
        mx[lin] = v[i];
        am[lin] = double(r);
      }
    }
    expect_near_vec(amax(x, d).to_double_vector(), mx, 0, "amax");
    expect_near_vec(argmax(x, d).to_double_vector(), am, 0, "argmax");
    EXPECT_EQ(argmax(x, d).dtype(), DType::i64);
    Shape ks = s;
    ks[d] = 1;
    EXPECT_EQ(amax(x, d, true).shape(), ks);
  }
  EXPECT_NEAR(mean(x).item(), [&] { double t = 0; for (double e : v) t += e; return t / v.size(); }(), 1e-12);
  // Ties: first index wins; NaN propagates.
  Tensor t = Tensor::from_vector(std::vector<float>{1, 3, 3, NAN, 0, 2}, {2, 3});
  EXPECT_EQ(argmax(t, 1).to_int_vector(), (std::vector<int64_t>{1, 0}));
  EXPECT_TRUE(std::isnan(amax(t, 1).to_float_vector()[1]));
  expect_bad_input([] { mean(Tensor::zeros({2}, DType::i64)); }, {"mean", "i64"});
  expect_bad_input([] { amax(Tensor::zeros({2, 0}), 1); }, {"amax", "[2, 0]"});
}

TEST(Reduce, SumToAndNorm2) {
  Tensor g = rand_t({2, 3, 4, 5}, 4, DType::f64);
  std::vector<double> v = g.to_double_vector();
  Tensor r = sum_to(g, {3, 1, 5});
  EXPECT_EQ(r.shape(), (Shape{3, 1, 5}));
  expect_near_vec(r.to_double_vector(), ref_sum(v, g.shape(), {0, 2}), 1e-12, "sum_to");
  EXPECT_EQ(sum_to(g, {5}).shape(), (Shape{5}));
  expect_near_vec(sum_to(g, {5}).to_double_vector(), ref_sum(v, g.shape(), {0, 1, 2}), 1e-12);
  EXPECT_EQ(sum_to(g, g.shape()).to_double_vector(), v);
  EXPECT_NEAR(sum_to(g, {}).item(), ref_sum(v, g.shape(), {0, 1, 2, 3})[0], 1e-12);
  expect_bad_input([&] { sum_to(g, {4, 4}); }, {"sum_to", "[2, 3, 4, 5]", "[4, 4]"});
  double ss = 0;
  for (double e : v) ss += e * e;
  EXPECT_NEAR(norm2(g), std::sqrt(ss), 1e-12);
  EXPECT_NEAR(norm2(g.permute({3, 1, 0, 2}).to(DType::f32)), std::sqrt(ss), 1e-5);
  // Over a list: the norm of all elements together; empty tensors and an empty list count 0.
  const Tensor h = rand_t({7}, 4, DType::f32);
  double hs = 0;
  for (double e : h.to_double_vector()) hs += e * e;
  EXPECT_NEAR(norm2(std::vector<Tensor>{g, Tensor::zeros({0}), h}), std::sqrt(ss + hs), 1e-6);
  EXPECT_EQ(norm2(std::vector<Tensor>{}), 0.0);
  // scale_: in place, through handles that share the storage; any float dtype, strided views too.
  Tensor a = Tensor::from_vector(std::vector<float>{1, -2, 3}, {3});
  Tensor b = Tensor::from_vector(std::vector<double>{4, 5, 6, 7}, {2, 2}).transpose(0, 1);
  scale_({a, b, Tensor::zeros({0})}, 0.5);
  EXPECT_EQ(a.to_double_vector(), (std::vector<double>{0.5, -1, 1.5}));
  EXPECT_EQ(b.to_double_vector(), (std::vector<double>{2, 3, 2.5, 3.5}));
  expect_bad_input([&] { norm2(std::vector<Tensor>{g, Tensor::zeros({2}, DType::i64)}); }, {"norm2", "i64"});
}

TEST(Softmax, EveryDimMatchesNaive) {
  const Shape s = {3, 5, 4};
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = rand_t(s, 5, dt, -5, 5);
    std::vector<double> v = x.to_double_vector();
    for (int64_t d = 0; d < 3; ++d) {
      std::vector<double> want(v.size()), wantlog(v.size());
      for (int64_t i = 0; i < int64_t(v.size()); ++i) {
        auto idx = unravel(i, s);
        double m = -INFINITY, z = 0;
        for (int64_t r = 0; r < s[d]; ++r) {
          idx[d] = r;
          m = std::max(m, v[bcast_index(idx, s)]);
        }
        for (int64_t r = 0; r < s[d]; ++r) {
          idx[d] = r;
          z += std::exp(v[bcast_index(idx, s)] - m);
        }
        want[i] = std::exp(v[i] - m) / z;
        wantlog[i] = v[i] - m - std::log(z);
      }
      const double tol = dt == DType::f32 ? 1e-6 : 1e-13;
      expect_near_vec(softmax(x, d).to_double_vector(), want, tol, "softmax");
      expect_near_vec(log_softmax(x, d).to_double_vector(), wantlog, tol, "log_softmax");
      expect_near_vec(softmax(x.transpose(0, 2), 2 - d).transpose(0, 2).to_double_vector(), want, tol, "strided");
    }
  }
  // Stable for huge logits.
  Tensor big = Tensor::from_vector(std::vector<float>{1000, 1001, 1002, -1000}, {1, 4});
  std::vector<float> p = softmax(big, -1).to_float_vector();
  EXPECT_NEAR(p[2], 1.0 / (1 + std::exp(-1.0) + std::exp(-2.0)), 1e-6);
  EXPECT_EQ(p[3], 0.0f);
  EXPECT_TRUE(std::isfinite(log_softmax(big, 1).to_float_vector()[3]));
  expect_bad_input([] { softmax(Tensor::zeros({2}), 1); }, {"softmax", "dim 1"});
}

TEST(CrossEntropy, WithGradInPlaceIsBothOps) {
  const Tensor logits = rand_t({6, 9}, 8, DType::f64, -3, 3);
  const Tensor t = Tensor::from_vector(std::vector<int64_t>{0, 8, -100, 2, 3, 1}, {6});
  Tensor x = logits.clone();
  const Tensor loss = cross_entropy_with_grad_(x, t, 0.25);
  EXPECT_EQ(loss.item(), cross_entropy(logits, t).item());
  EXPECT_EQ(x.to_double_vector(), cross_entropy_backward(logits, t, 0.25).to_double_vector());
  Tensor wide = rand_t({9, 6}, 9, DType::f64);
  Tensor strided = wide.transpose(0, 1);
  expect_bad_input([&] { cross_entropy_with_grad_(strided, t, 1.0); }, {"cross_entropy_with_grad_", "contiguous"});
  Tensor y = logits.clone();
  const Tensor bad = Tensor::from_vector(std::vector<int64_t>{0, 9, 1, 2, 3, 1}, {6});
  expect_bad_input([&] { cross_entropy_with_grad_(y, bad, 1.0); }, {"target 9", "row 1"});
}

TEST(CrossEntropy, ForwardBackwardWithIgnoreIndex) {
  const int64_t N = 7, C = 5;
  Tensor logits = rand_t({N, C}, 6, DType::f64, -3, 3);
  const std::vector<int64_t> tv = {0, 4, -100, 2, 3, -100, 1};
  std::vector<double> lv = logits.to_double_vector();
  auto ref_loss = [&](const std::vector<double>& L) {
    double tot = 0;
    int n = 0;
    for (int64_t i = 0; i < N; ++i) {
      if (tv[i] == -100) continue;
      double m = -INFINITY, z = 0;
      for (int64_t c = 0; c < C; ++c) m = std::max(m, L[i * C + c]);
      for (int64_t c = 0; c < C; ++c) z += std::exp(L[i * C + c] - m);
      tot += m + std::log(z) - L[i * C + tv[i]];
      ++n;
    }
    return tot / n;
  };
  for (DType tdt : {DType::i64, DType::i32}) {
    Tensor t = Tensor::from_vector(tv, {N}).to(tdt);
    Tensor loss = cross_entropy(logits, t);
    EXPECT_EQ(loss.dim(), 0);
    EXPECT_NEAR(loss.item(), ref_loss(lv), 1e-12);
    // Backward vs central differences of the reference, times grad_scale.
    Tensor g = cross_entropy_backward(logits, t, 2.0);
    std::vector<double> gv = g.to_double_vector();
    for (int64_t i = 0; i < N * C; ++i) {
      std::vector<double> lp = lv, lm = lv;
      lp[i] += 1e-6;
      lm[i] -= 1e-6;
      EXPECT_NEAR(gv[i], 2.0 * (ref_loss(lp) - ref_loss(lm)) / 2e-6, 1e-6) << i;
    }
    for (int64_t c = 0; c < C; ++c) EXPECT_EQ(gv[2 * C + c], 0.0);  // ignored row
  }
  // f32 logits, custom ignore_index, all ignored -> 0.
  Tensor lf = logits.to(DType::f32);
  Tensor all_ignored = Tensor::full({N}, 3, DType::i64);
  EXPECT_EQ(cross_entropy(lf, all_ignored, 3).item(), 0.0);
  EXPECT_EQ(cross_entropy(lf, all_ignored, 3).dtype(), DType::f32);
  for (double v : cross_entropy_backward(lf, all_ignored, 1.0, 3).to_double_vector()) EXPECT_EQ(v, 0.0);
  EXPECT_NEAR(cross_entropy(lf, Tensor::from_vector(tv, {N})).item(), ref_loss(lv), 1e-5);
  // Errors: a bad target names the row and value; shape mismatch names the shapes.
  std::vector<int64_t> bad = tv;
  bad[3] = 5;
  expect_bad_input([&] { cross_entropy(logits, Tensor::from_vector(bad, {N})); }, {"target 5", "row 3", "[0, 5)"});
  expect_bad_input([&] { cross_entropy(logits, Tensor::zeros({N + 1}, DType::i64)); }, {"[8]", "[7, 5]"});
  expect_bad_input([&] { cross_entropy(logits, Tensor::zeros({N}, DType::f32)); }, {"i64", "f32"});
  expect_bad_input([&] { cross_entropy_backward(logits.view({-1}), Tensor::zeros({N}, DType::i64), 1.0); },
                   {"(N, C)", "[35]"});
}
