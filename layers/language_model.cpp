#include "layers/language_model.h"

#include "autograd/functions.h"

namespace ssm::nn {

Variable LanguageModel::loss(const Tensor& tokens, const Tensor& seq_idx, const Tensor& targets) {
  Variable l = logits(tokens, seq_idx);
  SSM_CHECK_INPUT(l.dim() == 3 && targets.numel() == l.size(0) * l.size(1), "LanguageModel::loss: logits ",
                  shape_str(l.shape()), " do not match targets ", shape_str(targets.shape()));
  return ag::cross_entropy(ag::reshape(l, {l.size(0) * l.size(1), l.size(2)}),
                           targets.reshape({targets.numel()}).to(l.device()));
}

}  // namespace ssm::nn
