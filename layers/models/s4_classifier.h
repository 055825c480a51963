// S4Classifier: the S4 repository's example classifier.
//   x (B, L, d_input) -> encoder Linear(d_input, d_model)
//     -> n_layers x residual block (LayerNorm, S4D mixer, dropout; pre- or post-norm)
//     -> final LayerNorm -> pool over L ("mean" or "last") -> decoder Linear(d_model, n_classes)
//   -> logits (B, n_classes)
// Parameter names: encoder.weight, layers.0.norm.weight, layers.0.mixer.log_dt,
// layers.0.mixer.output_linear.weight, ..., norm.weight, decoder.weight, decoder.bias.
#pragma once
#include <memory>
#include <string>

#include "layers/module.h"
#include "layers/s4/s4d.h"

namespace ssm::nn {

class Linear;
class LayerNorm;
class ModuleList;
class SequencePool;

struct S4ClassifierOptions {
  int64_t d_input = 1;
  int64_t d_model = 64;
  int64_t n_layers = 4;
  int64_t n_classes = 10;
  double dropout = 0.0;
  bool prenorm = true;
  std::string pool = "mean";  // "mean" | "last"
  S4DOptions s4d;             // d_state, init, dt_min, dt_max, bidirectional (dropout: the one above)
};

class S4Classifier : public Module {
 public:
  S4Classifier(const S4ClassifierOptions& opt, Generator& gen);
  Variable forward(const Variable& x) override;  // (B, L, d_input) -> (B, n_classes)
  const S4ClassifierOptions& options() const { return opt_; }

 private:
  S4ClassifierOptions opt_;
  std::shared_ptr<Linear> encoder_, decoder_;
  std::shared_ptr<ModuleList> layers_;
  std::shared_ptr<LayerNorm> norm_;
  std::shared_ptr<SequencePool> pool_;
};

}  // namespace ssm::nn
