// LanguageModel: what the LM trainer task, generation and export need of a language model.
//   logits(tokens (B, L) i64, seq_idx (B, L) i32 or undefined) -> (B, L, V), V = padded_vocab_size();
//   seq_idx marks documents packed into one row (the model must not carry state across a change).
// Recurrent inference (constant memory per generated token):
//   auto st = lm.new_state(B);  logits = lm.prefill(prompt (B, L), *st);   // last position (B, V)
//   logits = lm.step(next (B), *st);                                         // one token, (B, V)
#pragma once
#include <memory>

#include "layers/module.h"

namespace ssm::nn {

struct RecurrentState {
  virtual ~RecurrentState() = default;
};

class LanguageModel : public Module {
 public:
  virtual Variable logits(const Tensor& tokens, const Tensor& seq_idx) = 0;
  // Mean next-token cross-entropy over all (B, L) positions for targets (B, L) i64. The default forms
  // the logits and calls ag::cross_entropy; models override it to skip the full logits matrix
  // (ag::linear_cross_entropy).
  virtual Variable loss(const Tensor& tokens, const Tensor& seq_idx, const Tensor& targets);
  virtual int64_t vocab_size() const = 0;         // the real vocabulary
  virtual int64_t padded_vocab_size() const = 0;  // the logits' last dim (>= vocab_size)

  virtual std::unique_ptr<RecurrentState> new_state(int64_t batch) = 0;
  virtual Tensor prefill(const Tensor& tokens, RecurrentState& state) = 0;
  virtual Tensor step(const Tensor& tokens, RecurrentState& state) = 0;
};

}  // namespace ssm::nn
