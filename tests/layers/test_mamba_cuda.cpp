// One training step of a small Mamba LM on the GPU against the same step on the CPU: the loss and every
// parameter's gradient, in f32 and under bf16 autocast, with packed sequences. It runs every kernel of the
// LM's step together (embedding, fused add + norm, autocast projections with their f32 weight gradients, conv1d,
// both selective-scan implementations, the chunked head + cross-entropy), where each kernel's own test checks it
// alone.
#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <utility>

#include "helpers.h"
#include "layers/models/mamba_lm.h"
#include "tests/cuda/cuda_test_util.h"

namespace ssm::nn {
namespace {

using testing::max_abs_diff;

struct StepResult {
  double loss = 0;
  std::map<std::string, Tensor> grads;  // f32, on the CPU
};

StepResult train_step(const MambaLMConfig& cfg, const Device& dev, bool autocast, const Tensor& tok,
                      const Tensor& seq, const Tensor& tgt) {
  Generator g{31, 0};
  MambaLM lm(cfg, g);  // the same seed: the same parameters on both devices
  lm.to(dev);
  std::optional<ag::AutocastGuard> guard;
  if (autocast) guard.emplace();
  Variable loss = lm.loss(tok.to(dev), seq.to(dev), tgt.to(dev));
  loss.backward();
  StepResult r;
  r.loss = loss.data().to(Device::cpu()).to(DType::f64).item();
  for (auto& p : lm.named_parameters()) {
    EXPECT_TRUE(p.var.grad().defined()) << p.name;
    if (p.var.grad().defined()) r.grads[p.name] = p.var.grad().to(Device::cpu()).to(DType::f32);
  }
  return r;
}

// Every gradient within `rel` of its own largest entry (the CPU's).
void expect_close(const StepResult& got, const StepResult& ref, double loss_rel, double rel, const char* what) {
  EXPECT_NEAR(got.loss, ref.loss, loss_rel * std::abs(ref.loss)) << what;
  ASSERT_EQ(got.grads.size(), ref.grads.size()) << what;
  for (const auto& [name, r] : ref.grads) {
    const Tensor& x = got.grads.at(name);
    const double largest = max_abs_diff(r, Tensor::zeros(r.shape(), DType::f32));
    EXPECT_LE(max_abs_diff(x, r), rel * largest + 1e-7) << what << ": grad of " << name;
  }
}

TEST(MambaLMCuda, TrainingStepMatchesCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  MambaLMConfig cfg;
  cfg.d_model = 64;  // d_inner 128
  cfg.n_layer = 2;
  cfg.vocab_size = 253;  // padded to 256
  cfg.d_state = 16;
  const int64_t Bt = 2, L = 301;  // odd: a partial last chunk
  Generator g{32, 0};
  const std::vector<double> ut = g.uniform({Bt * L}, DType::f64).to_double_vector(),
                            uy = g.uniform({Bt * L}, DType::f64).to_double_vector();
  std::vector<int64_t> t(ut.size()), y(uy.size());
  std::vector<int32_t> s(ut.size());
  for (size_t i = 0; i < t.size(); ++i) {
    t[i] = std::min<int64_t>(252, int64_t(ut[i] * 253));
    y[i] = std::min<int64_t>(252, int64_t(uy[i] * 253));
    s[i] = int64_t(i % size_t(L)) < 180 ? 0 : 1;  // two documents a row
  }
  const Tensor tok = Tensor::from_vector(t, {Bt, L}), tgt = Tensor::from_vector(y, {Bt, L}),
               seq = Tensor::from_vector(s, {Bt, L});
  for (const char* norm : {"rms", "layer"}) {
    cfg.norm = norm;
    cfg.tied = std::string(norm) == "rms";
    SCOPED_TRACE(norm);
    const StepResult ref = train_step(cfg, Device::cpu(), false, tok, seq, tgt);
    // Both scan implementations: at this size the per-call rule would pick selective_scan_cuda.cu's only, where the
    // 130M LM runs the chunked one.
    // The chunked one with each of its kernel pairs (SSM_SCAN_SEQ_FWD / BWD).
    for (auto [impl, seq_kernels] : {std::pair{"chunk", "always"}, {"chunk", "never"}, {"legacy", "never"}}) {
      const test::Env env{{"SSM_SCAN_IMPL", impl}, {"SSM_SCAN_CHUNK_BWD", "always"}, {"SSM_SCAN_SEQ_FWD", seq_kernels},
                          {"SSM_SCAN_SEQ_BWD", seq_kernels}};
      SCOPED_TRACE(std::string(impl) + ", SSM_SCAN_SEQ_FWD / BWD=" + seq_kernels);
      // f32 on the GPU: the same math in another order (tf32 is off in f32 GEMMs).
      expect_close(train_step(cfg, Device::cuda(), false, tok, seq, tgt), ref, 1e-4, 2e-3, "f32");
      // bf16 autocast: bf16 activations (8-bit mantissas), f32 state, sums and weight gradients.
      expect_close(train_step(cfg, Device::cuda(), true, tok, seq, tgt), ref, 1e-2, 6e-2, "bf16 autocast");
    }
  }
}

}  // namespace
}  // namespace ssm::nn
