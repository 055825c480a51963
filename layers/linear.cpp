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

// x of 2+ dims goes to the product as is (its leading dims fold into the GEMM's rows), so its gradient is
// added straight into x's (ag::matmul) when x feeds several products. Under autocast the product is
// ag::linear_rows: the weight's rows cast to bf16 for it, its gradient added into the f32 weight's own by the GEMM.
Variable autocast_linear(const Variable& x, const Variable& w, bool half_output, int64_t row0, int64_t rows) {
  const int64_t in = x.size(-1), n = rows < 0 ? w.size(0) - row0 : rows;
  Shape out_shape = x.shape();
  out_shape.back() = n;
  Variable x2 = x.dim() >= 2 ? x : ag::reshape(x, {1, in});
  Variable y;
  const bool half_in = x.dtype() == DType::bf16 || x.dtype() == DType::f32;
  if (ag::autocast_enabled() && x.device().is_cuda() && half_in) {
    Variable xb = x2.dtype() == DType::bf16 ? x2 : ag::cast(x2, DType::bf16);
    y = ag::linear_rows(xb, w, row0, n);
    if (!half_output && y.dtype() != DType::f32) y = ag::cast(y, DType::f32);
  } else {
    const Variable wr = row0 == 0 && n == w.size(0) ? w : ag::narrow(w, 0, row0, n);
    y = ag::matmul(x2, wr, false, true);
  }
  return x.dim() >= 2 ? y : ag::reshape(y, out_shape);
}

Variable Linear::forward(const Variable& x) {
  SSM_CHECK_INPUT(x.dim() >= 1 && x.size(-1) == in_, "Linear(", in_, " -> ", out_, "): input shape ",
                  shape_str(x.shape()), " does not end in ", in_);
  Variable y = autocast_linear(x, *weight_, half_output_);
  return bias_ ? ag::add(y, *bias_) : y;
}

}  // namespace ssm::nn
