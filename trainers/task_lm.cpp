#include "trainers/task_lm.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "autograd/functions.h"
#include "data/lm_dataset.h"
#include "layers/language_model.h"
#include "trainers/format.h"

namespace ssm::train {

namespace {

nn::LanguageModel& as_lm(nn::Module& model) {
  auto* lm = dynamic_cast<nn::LanguageModel*>(&model);
  SSM_CHECK_INPUT(lm != nullptr, "lm task: the model is not a language model (model.name must name an LM, e.g. "
                                 "mamba_lm; `ssm models` lists them)");
  return *lm;
}

bool is_bytes(const data::Dataset& split) {
  const auto* lm = dynamic_cast<const data::LMDataset*>(&split);
  return lm && lm->tokenizer() == "bytes";
}

}  // namespace

ag::Variable LMTask::loss(nn::Module& model, const data::Batch& batch, Device device, bool autocast,
                          StepCounts* counts) {
  SSM_CHECK_INPUT(batch.targets.defined(), "lm task: the dataset has no next-token targets (is ",
                  "data.name an LM dataset?)");
  nn::LanguageModel& lm = as_lm(model);
  ag::AutocastGuard ac(autocast);
  const Tensor tokens = batch.inputs.to(device);
  const Tensor seq_idx = batch.seq_idx.defined() ? batch.seq_idx.to(device) : Tensor();
  const int64_t B = tokens.size(0), L = tokens.size(1);
  SSM_CHECK_INPUT(batch.targets.shape() == tokens.shape(), "lm task: targets ", shape_str(batch.targets.shape()),
                  " do not match inputs ", shape_str(tokens.shape()));
  if (counts) {
    counts->samples += B;
    counts->tokens += B * L;
  }
  return lm.loss(tokens, seq_idx, batch.targets.to(device));
}

EvalStats LMTask::evaluate(nn::Module& model, const data::Dataset& split, int64_t batch_size, Device device,
                           bool autocast) {
  const bool was_training = model.is_training();
  model.eval();
  ag::NoGradGuard no_grad;
  double nll_sum = 0;  // nats, summed over scored tokens
  StepCounts counts;
  for (int64_t start = 0; start < split.size(); start += batch_size) {
    const int64_t n = std::min(batch_size, split.size() - start);
    std::vector<int64_t> idx(size_t(n), 0);
    std::iota(idx.begin(), idx.end(), start);
    data::Batch b = split.get(idx);
    const int64_t before = counts.tokens;
    ag::Variable l = loss(model, b, device, autocast, &counts);
    nll_sum += l.data().item() * double(counts.tokens - before);
  }
  model.train(was_training);
  EvalStats s;
  s.samples = counts.samples;
  s.loss = counts.tokens > 0 ? nll_sum / double(counts.tokens) : 0.0;
  s.metrics.emplace_back(is_bytes(split) ? "bits_per_byte" : "bits_per_token", s.loss / std::log(2.0));
  s.metrics.emplace_back("perplexity", std::exp(s.loss));
  if (const auto* lm = dynamic_cast<const data::LMDataset*>(&split); lm && lm->n_words() > 0)
    s.metrics.emplace_back("word_perplexity",
                           std::exp(s.loss * double(lm->num_tokens()) / double(lm->n_words())));
  s.metrics.emplace_back("tokens", double(counts.tokens));
  return s;
}

std::vector<std::pair<std::string, double>> LMTask::window_metrics(const StepCounts& c, double seconds) const {
  return {{"tokens_per_second", double(c.tokens) / std::max(1e-9, seconds)},
          {"samples_per_second", double(c.samples) / std::max(1e-9, seconds)}};
}

std::string LMTask::describe(const EvalStats& s, const std::string& split) const {
  std::string line = cat(split, " loss: ", fixed(s.loss, 4), " nats/token");
  for (const auto& [k, v] : s.metrics) {
    if (k == "tokens") continue;
    line += cat(", ", k, " ", fixed(v, k == "word_perplexity" || k == "perplexity" ? 2 : 4));
  }
  return line + cat(" (", int64_t(s.metric("tokens")), " tokens)");
}

}  // namespace ssm::train
