// Parameter-free activations as modules (for Sequential and named sub-blocks).
//   GELU: x * Phi(x) (exact, erf)      SiLU: x * sigmoid(x)
//   GLU(dim): split x into halves a, b along dim (a first); y = a * sigmoid(b)
//   Identity: y = x
#pragma once
#include "layers/module.h"

namespace ssm::nn {

class GELU : public Module {
 public:
  Variable forward(const Variable& x) override;
};

class SiLU : public Module {
 public:
  Variable forward(const Variable& x) override;
};

class GLU : public Module {
 public:
  explicit GLU(int64_t dim = -1) : dim_(dim) {}
  Variable forward(const Variable& x) override;

 private:
  int64_t dim_;
};

class Identity : public Module {
 public:
  Variable forward(const Variable& x) override { return x; }
};

// The function form of GLU, shared by layers that gate without a module.
Variable glu(const Variable& x, int64_t dim = -1);

}  // namespace ssm::nn
