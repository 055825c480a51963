// matmul (transposes, batch broadcasting, strided operands) and indexing ops vs naive loops.
#include <gtest/gtest.h>

#include <cmath>

#include "core/ops.h"
#include "test_util.h"

using namespace ssm;
using namespace ssm::test;

namespace {

// Naive op(A) op(B) with batch broadcasting, in double.
std::vector<double> ref_matmul(const Tensor& a_in, const Tensor& b_in, bool ta, bool tb, Shape* out_shape) {
  const Tensor a = (ta ? a_in.transpose(-1, -2) : a_in).contiguous();
  const Tensor b = (tb ? b_in.transpose(-1, -2) : b_in).contiguous();
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  const Shape ab(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  const Shape batch = broadcast_shapes(ab, bb);
  std::vector<double> av = a.to_double_vector(), bv = b.to_double_vector();
  std::vector<double> out(size_t(shape_numel(batch) * M * N), 0.0);
  for (int64_t i = 0; i < shape_numel(batch); ++i) {
    const auto idx = unravel(i, batch);
    const int64_t ia = bcast_index(idx, ab), ib = bcast_index(idx, bb);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k) s += av[(ia * M + m) * K + k] * bv[(ib * K + k) * N + n];
        out[(i * M + m) * N + n] = s;
      }
  }
  *out_shape = batch;
  out_shape->push_back(M);
  out_shape->push_back(N);
  return out;
}

}  // namespace

TEST(Matmul, TransposesAndBatchBroadcasting) {
  struct Case {
    Shape a, b;  // logical (pre-transpose) shapes of op(A) and op(B)
  };
  const std::vector<Case> cases = {
      {{5, 3}, {3, 7}},          {{1, 4}, {4, 1}},          {{2, 5, 3}, {3, 7}},  // 2-D B, batched A
      {{2, 5, 3}, {2, 3, 7}},    {{2, 1, 5, 3}, {4, 3, 6}}, {{5, 3}, {3, 3, 2}},  // batched B, 2-D A
      {{3, 1, 9}, {9, 1}},       {{2, 3, 4, 0}, {0, 5}},    {{33, 17}, {17, 65}}};
  for (DType dt : {DType::f32, DType::f64}) {
    for (size_t c = 0; c < cases.size(); ++c) {
      for (int t = 0; t < 4; ++t) {
        const bool ta = t & 1, tb = t & 2;
        Shape as = cases[c].a, bs = cases[c].b;
        if (ta) std::swap(as[as.size() - 1], as[as.size() - 2]);
        if (tb) std::swap(bs[bs.size() - 1], bs[bs.size() - 2]);
        Tensor a = rand_t(as, 300 + uint32_t(c), dt), b = rand_t(bs, 400 + uint32_t(c), dt);
        Shape ws;
        std::vector<double> want = ref_matmul(a, b, ta, tb, &ws);
        Tensor y = matmul(a, b, ta, tb);
        EXPECT_EQ(y.shape(), ws) << c << " " << t;
        EXPECT_EQ(y.dtype(), dt);
        expect_near_vec(y.to_double_vector(), want, dt == DType::f32 ? 1e-5 : 1e-12, cat("case ", c, " t ", t));
      }
    }
  }
}

TEST(Matmul, StridedOperands) {
  // A transposed view (BLAS transpose flag), a narrowed view (leading dim > cols), an expanded batch,
  // and a permuted layout that needs a copy.
  Tensor base = rand_t({4, 6, 9}, 1);
  Tensor a1 = base.transpose(1, 2);               // (4, 9, 6), transposed-contiguous matrices
  Tensor b1 = rand_t({6, 5}, 2);
  Tensor a2 = base.narrow(2, 2, 5);               // (4, 6, 5), row stride 9
  Tensor b2 = rand_t({1, 5, 3}, 3).expand({4, 5, 3});
  Tensor a3 = rand_t({6, 4, 7}, 4).permute({1, 2, 0});  // (4, 7, 6) odd strides
  Tensor b3 = rand_t({5, 6}, 5).transpose(0, 1);
  for (auto [a, b] : std::vector<std::pair<Tensor, Tensor>>{{a1, b1}, {a2, b2}, {a3, b3}}) {
    Shape ws;
    std::vector<double> want = ref_matmul(a, b, false, false, &ws);
    Tensor y = matmul(a, b);
    EXPECT_EQ(y.shape(), ws);
    expect_near_vec(y.to_double_vector(), want, 1e-5);
  }
  // bf16 inputs are computed in f32 and returned as bf16.
  Tensor hb = matmul(b1.to(DType::bf16), b1.to(DType::bf16), true, false);
  EXPECT_EQ(hb.dtype(), DType::bf16);
  EXPECT_EQ(hb.shape(), (Shape{5, 5}));
}

TEST(Matmul, Errors) {
  expect_bad_input([] { matmul(Tensor::zeros({2, 3}), Tensor::zeros({4, 5})); }, {"matmul", "[2, 3]", "[4, 5]"});
  expect_bad_input([] { matmul(Tensor::zeros({2, 3}), Tensor::zeros({2, 5}), false, true); }, {"[2, 5]", "transposed"});
  expect_bad_input([] { matmul(Tensor::zeros({2, 2, 3}), Tensor::zeros({3, 3, 5})); }, {"batch", "[2, 2, 3]", "[3, 3, 5]"});
  expect_bad_input([] { matmul(Tensor::zeros({3}), Tensor::zeros({3, 5})); }, {"[3]", "2 dims"});
  expect_bad_input([] { matmul(Tensor::zeros({2, 3}), Tensor::zeros({3, 5}, DType::f64)); }, {"f32", "f64"});
  expect_bad_input([] { matmul(Tensor::zeros({2, 3}, DType::i64), Tensor::zeros({3, 5}, DType::i64)); }, {"i64"});
}

TEST(Matmul, AddInPlace) {
  // c += op(a) op(b): every transpose pair, f64 and f32 as is, bf16 inputs into an f32 c.
  for (DType dt : {DType::f64, DType::f32, DType::bf16})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const Tensor a = rand_t(ta ? Shape{9, 7} : Shape{7, 9}, 1, dt);
        const Tensor b = rand_t(tb ? Shape{5, 9} : Shape{9, 5}, 2, dt);
        const DType cdt = dt == DType::bf16 ? DType::f32 : dt;
        Tensor c = rand_t({7, 5}, 3, cdt);
        const std::vector<double> c0 = c.to_double_vector();
        Shape os;
        const std::vector<double> prod = ref_matmul(a, b, ta, tb, &os);
        matmul_add_(c, a, b, ta, tb);
        ASSERT_EQ(c.shape(), os);
        const std::vector<double> got = c.to_double_vector();
        const double tol = dt == DType::f64 ? 1e-12 : 1e-5;  // bf16 inputs are exact in f32; only the sum rounds
        for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], c0[i] + prod[i], tol) << i;
      }
}

TEST(Matmul, IntoOverwrites) {
  // c = op(a) op(b): c's old values (NaN here) are never read; bf16 inputs into an f32 c.
  for (DType dt : {DType::f32, DType::bf16})
    for (bool ta : {false, true}) {
      const Tensor a = rand_t(ta ? Shape{9, 7} : Shape{7, 9}, 4, dt), b = rand_t({9, 5}, 5, dt);
      Tensor c = Tensor::full({7, 5}, std::nan(""), DType::f32);
      Shape os;
      const std::vector<double> prod = ref_matmul(a, b, ta, false, &os);
      matmul_into_(c, a, b, ta, false);
      const std::vector<double> got = c.to_double_vector();
      for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], prod[i], 1e-5) << i;
    }
  Tensor c = Tensor::zeros({2, 5});
  expect_bad_input([&] { matmul_into_(c, Tensor::zeros({2, 3}), Tensor::zeros({3, 4})); }, {"matmul_into_", "chain"});
}

TEST(Matmul, AddInPlaceErrors) {
  Tensor c = Tensor::zeros({2, 5});
  expect_bad_input([&] { matmul_add_(c, Tensor::zeros({2, 3}), Tensor::zeros({4, 5})); }, {"matmul_add_", "[2, 3]", "[4, 5]"});
  expect_bad_input([&] { matmul_add_(c, Tensor::zeros({2, 3}), Tensor::zeros({3, 4})); }, {"[2, 5]", "chain"});
  expect_bad_input([&] { matmul_add_(c, Tensor::zeros({2, 3}, DType::f64), Tensor::zeros({3, 5}, DType::f64)); },
                   {"f32", "f64"});
  Tensor cb = Tensor::zeros({2, 5}, DType::bf16);
  expect_bad_input([&] { matmul_add_(cb, Tensor::zeros({2, 3}), Tensor::zeros({3, 5})); }, {"bf16", "f32"});
  Tensor wide = Tensor::zeros({5, 2});
  Tensor ct = wide.transpose(0, 1);
  expect_bad_input([&] { matmul_add_(ct, Tensor::zeros({2, 3}), Tensor::zeros({3, 5})); }, {"contiguous"});
}

TEST(Index, IndexSelectAndIndexAdd) {
  Tensor x = rand_t({4, 6, 3}, 1, DType::f64);
  std::vector<double> xv = x.to_double_vector();
  const std::vector<int64_t> iv = {5, 0, 5, 2};
  for (DType it : {DType::i64, DType::i32}) {
    Tensor idx = Tensor::from_vector(iv, {4}).to(it);
    Tensor y = index_select(x, 1, idx);
    EXPECT_EQ(y.shape(), (Shape{4, 4, 3}));
    std::vector<double> yv = y.to_double_vector();
    for (int64_t a = 0; a < 4; ++a)
      for (int64_t i = 0; i < 4; ++i)
        for (int64_t c = 0; c < 3; ++c) EXPECT_EQ(yv[(a * 4 + i) * 3 + c], xv[(a * 6 + iv[i]) * 3 + c]);
    // index_add is the adjoint of index_select: <index_select(x), g> == <x, index_add(g)>.
    Tensor g = rand_t({4, 4, 3}, 2, DType::f64);
    Tensor back = index_add({4, 6, 3}, 1, idx, g);
    std::vector<double> gv = g.to_double_vector(), want(xv.size(), 0.0);
    for (int64_t a = 0; a < 4; ++a)
      for (int64_t i = 0; i < 4; ++i)
        for (int64_t c = 0; c < 3; ++c) want[(a * 6 + iv[i]) * 3 + c] += gv[(a * 4 + i) * 3 + c];
    expect_near_vec(back.to_double_vector(), want, 1e-14);
  }
  // Embedding style: (V, E) rows by token id, on a strided table.
  Tensor table = rand_t({10, 8}, 3).transpose(0, 1).contiguous().transpose(0, 1);
  Tensor tok = Tensor::from_vector(std::vector<int64_t>{9, 1, 1}, {3});
  std::vector<float> e = index_select(table, 0, tok).to_float_vector(), tv = table.to_float_vector();
  for (int64_t j = 0; j < 8; ++j) EXPECT_EQ(e[j], tv[9 * 8 + j]);
  expect_bad_input([&] { index_select(x, 1, Tensor::from_vector(std::vector<int64_t>{6}, {1})); },
                   {"index 6", "[0, 6)", "[4, 6, 3]"});
  expect_bad_input([&] { index_select(x, 1, Tensor::zeros({2})); }, {"i64", "f32"});
  expect_bad_input([&] { index_add({4, 6, 3}, 1, Tensor::zeros({2}, DType::i64), rand_t({4, 3, 3}, 1)); },
                   {"[4, 3, 3]", "[4, 2, 3]"});
}

TEST(Index, GatherAndScatterAdd) {
  Tensor x = rand_t({3, 5, 4}, 4, DType::f64);
  std::vector<double> xv = x.to_double_vector();
  for (int64_t dim = 0; dim < 3; ++dim) {
    Shape is = {2, 3, 4};  // smaller than x in every non-indexed dim
    is[dim] = 6;
    std::vector<int64_t> iv(size_t(shape_numel(is)));
    for (size_t i = 0; i < iv.size(); ++i) iv[i] = int64_t((i * 7 + 3) % size_t(x.shape()[dim]));
    Tensor idx = Tensor::from_vector(iv, is);
    Tensor y = gather(x, dim, idx);
    EXPECT_EQ(y.shape(), is);
    std::vector<double> yv = y.to_double_vector();
    Tensor src = rand_t(is, 5, DType::f64);
    std::vector<double> sv = src.to_double_vector(), want(xv.size(), 0.0);
    for (int64_t i = 0; i < int64_t(iv.size()); ++i) {
      auto m = unravel(i, is);
      m[dim] = iv[i];
      const int64_t lin = (m[0] * 5 + m[1]) * 4 + m[2];
      EXPECT_EQ(yv[i], xv[lin]);
      want[lin] += sv[i];
    }
    expect_near_vec(scatter_add(x.shape(), dim, idx, src).to_double_vector(), want, 1e-14, "scatter_add");
  }
  // Gather from a strided x.
  Tensor xt = x.transpose(0, 2);  // (4, 5, 3)
  Tensor idx = Tensor::from_vector(std::vector<int64_t>{2, 0, 1, 2}, {4, 1, 1});
  std::vector<double> g = gather(xt, 2, idx).to_double_vector();
  std::vector<double> xtv = xt.to_double_vector();
  const int64_t iv[4] = {2, 0, 1, 2};
  for (int64_t i = 0; i < 4; ++i) EXPECT_EQ(g[i], xtv[(i * 5 + 0) * 3 + iv[i]]);
  expect_bad_input([&] { gather(x, 1, Tensor::zeros({3, 5}, DType::i64)); }, {"gather", "[3, 5]", "[3, 5, 4]"});
  expect_bad_input([&] { gather(x, 0, Tensor::full({1, 1, 1}, 3, DType::i64)); }, {"index 3", "[0, 3)"});
}

TEST(Index, CatAndSplit) {
  Tensor a = rand_t({2, 3, 4}, 1), b = rand_t({2, 1, 4}, 2), c = rand_t({2, 5, 4}, 3).narrow(1, 1, 2);
  Tensor y = cat({a, b, c}, 1);
  EXPECT_EQ(y.shape(), (Shape{2, 6, 4}));
  std::vector<float> yv = y.to_float_vector(), av = a.to_float_vector(), bv = b.to_float_vector(),
                     cv = c.to_float_vector();
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 6; ++j)
      for (int64_t k = 0; k < 4; ++k) {
        const float w = j < 3 ? av[(i * 3 + j) * 4 + k] : j < 4 ? bv[i * 4 + k] : cv[(i * 2 + j - 4) * 4 + k];
        EXPECT_EQ(yv[(i * 6 + j) * 4 + k], w);
      }
  std::vector<Tensor> parts = split(y, {3, 1, 2}, -2);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0].to_float_vector(), av);
  EXPECT_EQ(parts[1].to_float_vector(), bv);
  EXPECT_EQ(parts[2].to_float_vector(), cv);
  EXPECT_EQ(parts[2].storage(), y.storage());  // views
  EXPECT_EQ(cat({a, a}, -1).shape(), (Shape{2, 3, 8}));
  expect_bad_input([&] { cat({a, rand_t({3, 3, 4}, 4)}, 1); }, {"cat", "[3, 3, 4]", "[2, 3, 4]"});
  expect_bad_input([&] { cat({a, a.to(DType::f64)}, 0); }, {"cat", "f64"});
  expect_bad_input([&] { split(y, {3, 1}, 1); }, {"split", "[3, 1]", "[2, 6, 4]"});
}
