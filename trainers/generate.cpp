#include "trainers/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "autograd/variable.h"
#include "data/sampler.h"

namespace ssm::train {

void check_sampling(const SamplingOptions& opt) {
  SSM_CHECK_INPUT(opt.temperature >= 0 && std::isfinite(opt.temperature), "--temperature must be >= 0, got ",
                  opt.temperature);
  SSM_CHECK_INPUT(opt.top_k >= 0, "--top-k must be >= 0 (0: off), got ", opt.top_k);
  SSM_CHECK_INPUT(opt.top_p > 0 && opt.top_p <= 1, "--top-p must be in (0, 1], got ", opt.top_p);
}

int64_t sample_token(const std::vector<float>& logits, int64_t vocab, const SamplingOptions& opt, double u) {
  SSM_CHECK(vocab >= 1 && int64_t(logits.size()) >= vocab, "sample_token: ", logits.size(), " logits for vocab ",
            vocab);
  if (opt.temperature == 0)
    return int64_t(std::max_element(logits.begin(), logits.begin() + vocab) - logits.begin());
  // Most likely first; ties broken by token id so the order is total.
  std::vector<int64_t> order(size_t(vocab), 0);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return logits[size_t(a)] > logits[size_t(b)] || (logits[size_t(a)] == logits[size_t(b)] && a < b);
  });
  size_t keep = order.size();
  if (opt.top_k > 0) keep = std::min(keep, size_t(opt.top_k));
  const double top = logits[size_t(order[0])];
  std::vector<double> p(keep);
  double total = 0;
  for (size_t i = 0; i < keep; ++i) total += p[i] = std::exp((logits[size_t(order[i])] - top) / opt.temperature);
  if (opt.top_p < 1) {
    double mass = 0;
    for (size_t i = 0; i < keep; ++i) {
      mass += p[i] / total;
      if (mass >= opt.top_p) {
        keep = i + 1;
        break;
      }
    }
    total = std::accumulate(p.begin(), p.begin() + long(keep), 0.0);
  }
  double r = u * total;
  for (size_t i = 0; i < keep; ++i) {
    r -= p[i];
    if (r < 0) return order[i];
  }
  return order[keep - 1];
}

std::vector<int64_t> generate(nn::LanguageModel& model, const std::vector<int64_t>& prompt, int64_t max_new,
                              const SamplingOptions& opt, Device device,
                              const std::function<void(int64_t)>& on_token) {
  check_sampling(opt);
  SSM_CHECK_INPUT(!prompt.empty(), "generate: the prompt is empty (give at least one token)");
  SSM_CHECK_INPUT(max_new >= 0, "generate: --max-new must be >= 0, got ", max_new);
  const int64_t V = model.vocab_size();
  for (int64_t t : prompt)
    SSM_CHECK_INPUT(t >= 0 && t < V, "generate: prompt token ", t, " is outside the vocabulary [0, ", V, ")");
  ag::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  data::SplitMix64 rng(opt.seed);
  auto state = model.new_state(1);
  Tensor logits = model.prefill(Tensor::from_vector(prompt, {1, int64_t(prompt.size())}).to(device), *state);
  std::vector<int64_t> out;
  out.reserve(size_t(max_new));
  for (int64_t i = 0; i < max_new; ++i) {
    std::vector<float> l = logits.to(Device::cpu()).to(DType::f32).contiguous().to_float_vector();
    const double u = double(rng.next() >> 11) * 0x1.0p-53;
    const int64_t tok = sample_token(l, V, opt, u);
    out.push_back(tok);
    if (on_token) on_token(tok);
    if (i + 1 < max_new) logits = model.step(Tensor::from_vector(std::vector<int64_t>{tok}, {1}).to(device), *state);
  }
  model.train(was_training);
  return out;
}

}  // namespace ssm::train
