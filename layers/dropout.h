// Dropout: in training, keeps each element with probability 1 - p and scales it by 1 / (1 - p)
// (inverted dropout); identity in eval mode or when p = 0. Draws from the Generator given at
// construction, which must outlive the module (the trainer's generator: one RNG state to checkpoint).
#pragma once
#include "core/ops.h"
#include "layers/module.h"

namespace ssm::nn {

class Dropout : public Module {
 public:
  Dropout(double p, Generator& gen);
  Variable forward(const Variable& x) override;
  double p() const { return p_; }

 private:
  double p_;
  Generator* gen_;
};

}  // namespace ssm::nn
