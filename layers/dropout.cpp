#include "layers/dropout.h"

#include "autograd/functions.h"

namespace ssm::nn {

Dropout::Dropout(double p, Generator& gen) : p_(p), gen_(&gen) {
  SSM_CHECK_INPUT(p >= 0.0 && p < 1.0, "Dropout: p must be in [0, 1), got ", p);
}

Variable Dropout::forward(const Variable& x) {
  if (!is_training() || p_ == 0.0) return x;
  return ag::dropout(x, p_, *gen_);
}

}  // namespace ssm::nn
