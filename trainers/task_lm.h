// The language-modelling task: next-token prediction on windows of a token stream (data/lm_dataset.h).
//
//   logits = model.logits(inputs, seq_idx) (B, L, V);  loss = mean_{b,t} -log softmax(logits[b,t])[targets[b,t]]
// Documents packed into a window are kept apart by seq_idx (the model resets its state where it
// changes); every target is scored: position t predicts token t+1 from the state of t's own document,
// so a document's first token is predicted from the end of the previous one (as an end-of-document
// guess would be).
// Evaluation over a whole split (every window once, in order), in nats per token:
//   bits per token      = loss / ln 2            ("bits_per_byte" when the tokenizer is "bytes")
//   perplexity          = exp(loss)
//   word perplexity     = exp(loss * T / W)      T tokens and W whitespace-separated words in the split:
//                         the MambaByte paper's word-level perplexity (total NLL over the words).
#pragma once
#include "trainers/task.h"

namespace ssm::train {

class LMTask : public Task {
 public:
  std::string name() const override { return "lm"; }
  ag::Variable loss(nn::Module& model, const data::Batch& batch, Device device, bool autocast,
                    StepCounts* counts) override;
  EvalStats evaluate(nn::Module& model, const data::Dataset& split, int64_t batch_size, Device device,
                     bool autocast) override;
  std::vector<std::pair<std::string, double>> window_metrics(const StepCounts& c, double seconds) const override;
  std::string describe(const EvalStats& s, const std::string& split) const override;
};

}  // namespace ssm::train
