// linear_cross_entropy (chunked LM head + loss) against the plain composition, and its gradcheck.
#include "test_util.h"

namespace ssm::ag::testing {

TEST(LinearCrossEntropy, EqualsMatmulThenCrossEntropyForAnyChunking) {
  const Tensor x = rnd({7, 3}, 1), w = rnd({5, 3}, 2);
  const Tensor t = Tensor::from_vector(std::vector<int64_t>{0, 4, 2, 2, 1, 3, 0}, {7});
  Variable xr(x, true), wr(w, true);
  Variable ref = cross_entropy(matmul(xr, wr, false, true), t);
  ref.backward();
  for (int64_t chunk : {1, 3, 7, 100}) {
    Variable xv(x, true), wv(w, true);
    Variable l = linear_cross_entropy(xv, wv, t, chunk);
    EXPECT_NEAR(l.data().item(), ref.data().item(), 1e-12) << chunk;
    mul(l, 2.5).backward();  // the upstream gradient scales both stored gradients
    expect_tensor_near(xv.grad(), ssm::mul(xr.grad(), 2.5), 1e-12);
    expect_tensor_near(wv.grad(), ssm::mul(wr.grad(), 2.5), 1e-12);
  }
}

// Padding rows of w (classes < rows): the same loss and x gradient as w's first `classes` rows alone, the
// same gradient on those rows, and exactly 0 on the padding rows.
TEST(LinearCrossEntropy, PaddingRowsAreNoClasses) {
  const Tensor x = rnd({7, 3}, 1), w = rnd({8, 3}, 2);
  const Tensor t = Tensor::from_vector(std::vector<int64_t>{0, 4, 2, 2, 1, 3, 0}, {7});
  Variable xr(x, true), wr(w.narrow(0, 0, 5).contiguous(), true);
  Variable ref = linear_cross_entropy(xr, wr, t, 3);
  ref.backward();
  Variable xv(x, true), wv(w, true);
  Variable l = linear_cross_entropy(xv, wv, t, 3, 5);
  EXPECT_NEAR(l.data().item(), ref.data().item(), 1e-12);
  l.backward();
  expect_tensor_near(xv.grad(), xr.grad(), 1e-12);
  expect_tensor_near(wv.grad().narrow(0, 0, 5), wr.grad(), 1e-12);
  for (double g : wv.grad().narrow(0, 5, 3).contiguous().to_double_vector()) EXPECT_EQ(g, 0.0);
  EXPECT_THROW(linear_cross_entropy(xv, wv, t, 3, 9), Error);
}

TEST(LinearCrossEntropy, Gradcheck) {
  const Tensor t = Tensor::from_vector(std::vector<int64_t>{1, 0, 3, 3, 2}, {5});
  auto fn = [&](const std::vector<Variable>& in) { return linear_cross_entropy(in[0], in[1], t, 2); };
  EXPECT_EQ(gradcheck(fn, {rnd({5, 4}, 3), rnd({4, 4}, 4)}), "");
  auto padded = [&](const std::vector<Variable>& in) { return linear_cross_entropy(in[0], in[1], t, 2, 4); };
  EXPECT_EQ(gradcheck(padded, {rnd({5, 4}, 3), rnd({6, 4}, 4)}), "");
}

// Autocast's form: bf16 x with the f32 master w. The products run on a bf16 copy of w; w's gradient is the f32 sum
// (here against the all-f32 composition on the same bf16-rounded values, to bf16's precision).
TEST(LinearCrossEntropy, HalfXWithF32W) {
  const Tensor t = Tensor::from_vector(std::vector<int64_t>{0, 4, 2, 2, 1, 3, 0}, {7});
  const Tensor xb = rnd({7, 3}, 1).to(DType::bf16), wf = rnd({5, 3}, 2).to(DType::f32);
  Variable xr(xb.to(DType::f32), true), wr(wf.to(DType::bf16).to(DType::f32), true);
  Variable ref = linear_cross_entropy(xr, wr, t, 3);
  ref.backward();
  Variable xv(xb, true), wv(wf, true);
  Variable l = linear_cross_entropy(xv, wv, t, 3);
  EXPECT_NEAR(l.data().item(), ref.data().item(), 1e-2);
  l.backward();
  EXPECT_EQ(xv.grad().dtype(), DType::bf16);
  EXPECT_EQ(wv.grad().dtype(), DType::f32);
  expect_tensor_near(xv.grad().to(DType::f64), xr.grad().to(DType::f64), 2e-2);
  expect_tensor_near(wv.grad().to(DType::f64), wr.grad().to(DType::f64), 2e-2);
  Variable w64(rnd({5, 3}, 2), true);  // f64 beside bf16 x: refused by name
  EXPECT_THROW(linear_cross_entropy(xv, w64, t, 3), Error);
}

TEST(LinearCrossEntropy, BadShapesNameTheTensors) {
  Variable x(rnd({4, 3}, 1)), w(rnd({5, 2}, 2));
  const Tensor t = Tensor::zeros({4}, DType::i64);
  try {
    linear_cross_entropy(x, w, t);
    FAIL() << "expected BadInput";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput);
    EXPECT_NE(std::string(e.what()).find("[5, 2]"), std::string::npos) << e.what();
  }
}

}  // namespace ssm::ag::testing
