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

TEST(LinearCrossEntropy, Gradcheck) {
  const Tensor t = Tensor::from_vector(std::vector<int64_t>{1, 0, 3, 3, 2}, {5});
  auto fn = [&](const std::vector<Variable>& in) { return linear_cross_entropy(in[0], in[1], t, 2); };
  EXPECT_EQ(gradcheck(fn, {rnd({5, 4}, 3), rnd({4, 4}, 4)}), "");
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
