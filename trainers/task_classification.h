// The classification task: logits = model(inputs) (B, n_classes); loss = mean cross-entropy;
// accuracy = fraction of argmax(logits) == label.
#pragma once
#include "trainers/task.h"

namespace ssm::train {

class ClassificationTask : public Task {
 public:
  std::string name() const override { return "classifier"; }
  ag::Variable loss(nn::Module& model, const data::Batch& batch, Device device, bool autocast,
                    StepCounts* counts) override;
  EvalStats evaluate(nn::Module& model, const data::Dataset& split, int64_t batch_size, Device device,
                     bool autocast) override;
  std::vector<std::pair<std::string, double>> window_metrics(const StepCounts& c, double seconds) const override;
  std::string describe(const EvalStats& s, const std::string& split) const override;
};

}  // namespace ssm::train
