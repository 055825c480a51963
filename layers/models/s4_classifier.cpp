#include "layers/models/s4_classifier.h"

#include "layers/containers.h"
#include "layers/linear.h"
#include "layers/norm.h"
#include "layers/pooling.h"
#include "layers/residual.h"

namespace ssm::nn {

S4Classifier::S4Classifier(const S4ClassifierOptions& opt, Generator& gen) : opt_(opt) {
  SSM_CHECK_INPUT(opt.d_input > 0, "S4Classifier: d_input must be positive, got ", opt.d_input);
  SSM_CHECK_INPUT(opt.d_model > 0, "S4Classifier: d_model must be positive, got ", opt.d_model);
  SSM_CHECK_INPUT(opt.n_layers >= 0, "S4Classifier: n_layers must be >= 0, got ", opt.n_layers);
  SSM_CHECK_INPUT(opt.n_classes > 0, "S4Classifier: n_classes must be positive, got ", opt.n_classes);
  opt_.s4d.dropout = opt.dropout;
  encoder_ = register_module("encoder", std::make_shared<Linear>(opt.d_input, opt.d_model, true, gen));
  layers_ = register_module("layers", std::make_shared<ModuleList>());
  for (int64_t i = 0; i < opt.n_layers; ++i) {
    auto mixer = std::make_shared<S4D>(opt.d_model, opt_.s4d, gen);
    layers_->push_back(std::make_shared<PreNormResidual>(opt.d_model, "layer", mixer, opt.dropout, gen, opt.prenorm));
  }
  norm_ = register_module("norm", std::make_shared<LayerNorm>(opt.d_model));
  pool_ = register_module("pool", std::make_shared<SequencePool>(opt.pool));
  decoder_ = register_module("decoder", std::make_shared<Linear>(opt.d_model, opt.n_classes, true, gen));
}

Variable S4Classifier::forward(const Variable& x) {
  SSM_CHECK_INPUT(x.dim() == 3 && x.size(2) == opt_.d_input, "S4Classifier: expected input (B, L, ", opt_.d_input,
                  "), got ", shape_str(x.shape()));
  Variable h = encoder_->forward(x);
  for (size_t i = 0; i < layers_->size(); ++i) h = (*layers_)[i].forward(h);
  return decoder_->forward(pool_->forward(norm_->forward(h)));
}

}  // namespace ssm::nn
