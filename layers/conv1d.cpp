#include "layers/conv1d.h"

#include "autograd/functions.h"
#include "layers/init.h"

namespace ssm::nn {

DepthwiseCausalConv1d::DepthwiseCausalConv1d(int64_t channels, int64_t width, bool bias, Generator& gen)
    : channels_(channels), width_(width) {
  SSM_CHECK_INPUT(channels > 0 && width > 0, "DepthwiseCausalConv1d: channels and width must be positive, got ",
                  channels, " and ", width);
  weight_ = &register_parameter("weight", init::kaiming_uniform({channels, width}, width, gen));
  if (bias) bias_ = &register_parameter("bias", init::kaiming_uniform({channels}, width, gen), "no_decay");
}

Variable DepthwiseCausalConv1d::forward(const Variable& x) {
  SSM_CHECK_INPUT(x.dim() == 3 && x.size(2) == channels_, "DepthwiseCausalConv1d(", channels_,
                  "): expected input (B, L, ", channels_, "), got ", shape_str(x.shape()));
  const int64_t B = x.size(0), L = x.size(1), C = channels_;
  Variable xp = x;  // (B, L + width - 1, C): width - 1 zeros in front
  if (width_ > 1) xp = ag::cat({Variable(Tensor::zeros({B, width_ - 1, C}, x.dtype(), x.device())), x}, 1);
  Variable y;
  for (int64_t k = 0; k < width_; ++k) {
    Variable term = ag::mul(ag::narrow(xp, 1, k, L), ag::select(*weight_, 1, k));  // (B, L, C) * (C)
    y = y.defined() ? ag::add(y, term) : term;
  }
  if (bias_) y = ag::add(y, *bias_);
  return y;
}

}  // namespace ssm::nn
