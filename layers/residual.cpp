#include "layers/residual.h"

#include "autograd/functions.h"
#include "layers/dropout.h"
#include "layers/norm.h"

namespace ssm::nn {

std::shared_ptr<Module> make_norm(const std::string& kind, int64_t dim) {
  if (kind == "layer") return std::make_shared<LayerNorm>(dim);
  if (kind == "rms") return std::make_shared<RMSNorm>(dim);
  throw_input(cat("norm: expected \"layer\" or \"rms\", got '", kind, "'"));
}

PreNormResidual::PreNormResidual(int64_t dim, const std::string& norm, std::shared_ptr<Module> mixer,
                                 double dropout, Generator& gen, bool prenorm)
    : prenorm_(prenorm) {
  SSM_CHECK(mixer != nullptr, "PreNormResidual: null mixer");
  norm_ = register_module("norm", make_norm(norm, dim));
  mixer_ = register_module("mixer", std::move(mixer));
  dropout_ = register_module("dropout", std::static_pointer_cast<Module>(std::make_shared<Dropout>(dropout, gen)));
}

Variable PreNormResidual::forward(const Variable& x) {
  if (prenorm_) return ag::add(x, dropout_->forward(mixer_->forward(norm_->forward(x))));
  return norm_->forward(ag::add(x, dropout_->forward(mixer_->forward(x))));
}

}  // namespace ssm::nn
