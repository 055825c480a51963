#include "layers/init.h"

#include <cmath>

namespace ssm::nn::init {

Tensor uniform(const Shape& shape, double lo, double hi, Generator& gen, DType dtype) {
  SSM_CHECK_INPUT(hi >= lo, "init::uniform: empty range [", lo, ", ", hi, ")");
  Tensor u = gen.uniform(shape, dtype);  // [0, 1)
  return add(mul(u, hi - lo), lo);
}

Tensor normal(const Shape& shape, double mean, double std, Generator& gen, DType dtype) {
  SSM_CHECK_INPUT(std >= 0, "init::normal: negative standard deviation ", std);
  Tensor z = gen.normal(shape, dtype);
  return add(mul(z, std), mean);
}

Tensor kaiming_uniform(const Shape& shape, int64_t fan_in, Generator& gen, DType dtype) {
  SSM_CHECK_INPUT(fan_in > 0, "init::kaiming_uniform: fan_in must be positive, got ", fan_in);
  double bound = 1.0 / std::sqrt(double(fan_in));
  return uniform(shape, -bound, bound, gen, dtype);
}

}  // namespace ssm::nn::init
