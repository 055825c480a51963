#include "layers/activations.h"

#include "autograd/functions.h"

namespace ssm::nn {

Variable GELU::forward(const Variable& x) { return ag::gelu(x); }
Variable SiLU::forward(const Variable& x) { return ag::silu(x); }
Variable GLU::forward(const Variable& x) { return glu(x, dim_); }

Variable glu(const Variable& x, int64_t dim) {
  int64_t d = dim < 0 ? dim + x.dim() : dim;
  SSM_CHECK_INPUT(d >= 0 && d < x.dim(), "GLU: dim ", dim, " out of range for input ", shape_str(x.shape()));
  int64_t n = x.size(d);
  SSM_CHECK_INPUT(n % 2 == 0, "GLU: dim ", dim, " of input ", shape_str(x.shape()), " has odd size ", n);
  Variable a = ag::narrow(x, d, 0, n / 2);
  Variable b = ag::narrow(x, d, n / 2, n / 2);
  return ag::mul(a, ag::sigmoid(b));
}

}  // namespace ssm::nn
