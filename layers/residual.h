// Residual block around a sublayer ("mixer"), as in the S4 example models:
//   pre-norm  (default): y = x + dropout(mixer(norm(x)))
//   post-norm:           y = norm(x + dropout(mixer(x)))
// norm is "layer" (LayerNorm) or "rms" (RMSNorm) over the last dim. Children: "norm", "mixer", "dropout".
#pragma once
#include <memory>
#include <string>

#include "core/ops.h"
#include "layers/module.h"

namespace ssm::nn {

// A LayerNorm or RMSNorm by name; BadInput for anything else.
std::shared_ptr<Module> make_norm(const std::string& kind, int64_t dim);

class PreNormResidual : public Module {
 public:
  PreNormResidual(int64_t dim, const std::string& norm, std::shared_ptr<Module> mixer, double dropout,
                  Generator& gen, bool prenorm = true);
  Variable forward(const Variable& x) override;

  Module& mixer() { return *mixer_; }
  Module& norm() { return *norm_; }
  bool prenorm() const { return prenorm_; }

 private:
  std::shared_ptr<Module> norm_, mixer_, dropout_;
  bool prenorm_;
};

}  // namespace ssm::nn
