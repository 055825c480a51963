#include "layers/linear.h"

#include "autograd/functions.h"
#include "layers/init.h"

namespace ssm::nn {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, Generator& gen)
    : in_(in_features), out_(out_features) {
  SSM_CHECK_INPUT(in_features > 0 && out_features > 0, "Linear: sizes must be positive, got in=", in_features,
                  " out=", out_features);
  weight_ = &register_parameter("weight", init::kaiming_uniform({out_, in_}, in_, gen));
  if (bias) bias_ = &register_parameter("bias", init::kaiming_uniform({out_}, in_, gen), "no_decay");
}

Variable Linear::forward(const Variable& x) {
  SSM_CHECK_INPUT(x.dim() >= 1 && x.size(-1) == in_, "Linear(", in_, " -> ", out_, "): input shape ",
                  shape_str(x.shape()), " does not end in ", in_);
  Shape out_shape = x.shape();
  out_shape.back() = out_;
  Variable x2 = x.dim() == 2 ? x : ag::reshape(x, {x.numel() / in_, in_});
  Variable y;
  if (ag::autocast_enabled() && x.device().is_cuda() && x.dtype() == DType::f32) {
    y = ag::matmul(ag::cast(x2, DType::bf16), ag::cast(*weight_, DType::bf16), false, true);
    if (y.dtype() != DType::f32) y = ag::cast(y, DType::f32);
  } else {
    y = ag::matmul(x2, *weight_, false, true);
  }
  if (bias_) y = ag::add(y, *bias_);
  return x.dim() == 2 ? y : ag::reshape(y, out_shape);
}

}  // namespace ssm::nn
