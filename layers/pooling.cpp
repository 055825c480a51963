#include "layers/pooling.h"

#include "autograd/functions.h"

namespace ssm::nn {

SequencePool::SequencePool(const std::string& mode) : mode_(mode) {
  SSM_CHECK_INPUT(mode == "mean" || mode == "last", "pool: expected \"mean\" or \"last\", got '", mode, "'");
}

Variable SequencePool::forward(const Variable& x) {
  SSM_CHECK_INPUT(x.dim() == 3 && x.size(1) > 0, "SequencePool(", mode_, "): expected input (B, L, D) with L > 0, got ",
                  shape_str(x.shape()));
  if (mode_ == "mean") return ag::mean(x, {1});
  return ag::select(x, 1, x.size(1) - 1);
}

}  // namespace ssm::nn
