// Sequence pooling heads: (B, L, D) -> (B, D).
//   "mean": y[b] = (1/L) sum_t x[b, t]      "last": y[b] = x[b, L - 1]
#pragma once
#include <string>

#include "layers/module.h"

namespace ssm::nn {

class SequencePool : public Module {
 public:
  explicit SequencePool(const std::string& mode);  // BadInput for anything but "mean" or "last"
  Variable forward(const Variable& x) override;
  const std::string& mode() const { return mode_; }

 private:
  std::string mode_;
};

}  // namespace ssm::nn
