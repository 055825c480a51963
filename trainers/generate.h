// Sampling from a language model with its recurrent state (layers/language_model.h): the prompt is
// run once through the parallel forward (prefill), then one step() per new token, so memory stays
// constant however many tokens are generated.
//
// Next-token distribution from the logits l (real vocabulary only; padding columns never sampled):
//   temperature T = 0: argmax (greedy).  Otherwise p = softmax(l / T), then
//   top_k > 0: keep the k most likely tokens;  top_p < 1: keep the smallest most-likely set whose
//   probability reaches top_p (nucleus);  renormalise and draw with a splitmix64 stream from `seed`
//   (the same seed gives the same text on any machine).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "core/device.h"
#include "layers/language_model.h"

namespace ssm::train {

struct SamplingOptions {
  double temperature = 1.0;
  int64_t top_k = 0;   // 0: off
  double top_p = 1.0;  // 1: off
  uint64_t seed = 0;
};

// Validates the options (BadInput naming the flag).
void check_sampling(const SamplingOptions& opt);

// One draw from logits[0 .. vocab) (f32, CPU). `u` is a uniform number in [0, 1).
int64_t sample_token(const std::vector<float>& logits, int64_t vocab, const SamplingOptions& opt, double u);

// Generates max_new tokens after `prompt` (non-empty); on_token(id) is called as each one is drawn.
std::vector<int64_t> generate(nn::LanguageModel& model, const std::vector<int64_t>& prompt, int64_t max_new,
                              const SamplingOptions& opt, Device device,
                              const std::function<void(int64_t)>& on_token = {});

}  // namespace ssm::train
