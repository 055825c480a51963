// Causality of the Mamba LM: changing a later token never changes earlier logits, with and without a graph.
#include <gtest/gtest.h>
#include "autograd/functions.h"
#include "layers/models/mamba_lm.h"
#include "kernels/selective_scan/selective_scan.h"
#include "kernels/conv1d/causal_conv1d.h"
using namespace ssm;
TEST(MambaLMCausality, FutureTokensDoNotChangeEarlierLogits) {
  nn::MambaLMConfig c; c.d_model = 16; c.n_layer = 2; c.vocab_size = 64; c.d_state = 4;
  Generator gen{1, 0};
  nn::MambaLM lm(nn::resolve_mamba_lm_config(c), gen);
  std::vector<int64_t> a(32), b(32);
  for (int i = 0; i < 32; ++i) { a[i] = (i * 7) % 64; b[i] = a[i]; }
  b[20] = 63;  // change a future token
  Tensor ta = Tensor::from_vector(a, {1, 32}), tb = Tensor::from_vector(b, {1, 32});
  for (bool grad : {false, true}) {
    std::unique_ptr<ag::NoGradGuard> g; if (!grad) g = std::make_unique<ag::NoGradGuard>();
    auto la = lm.logits(ta, Tensor()).data().to_float_vector();
    auto lb = lm.logits(tb, Tensor()).data().to_float_vector();
    for (int t = 0; t < 20; ++t) for (int v = 0; v < 64; ++v)
      ASSERT_EQ(la[t * 64 + v], lb[t * 64 + v]) << "grad " << grad << " t " << t;
  }
}
