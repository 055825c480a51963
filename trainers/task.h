// Task: how the trainer turns a batch into a loss and scores a split. One per ModelSpec::task:
//   "classifier" (trainers/task_classification.h): logits (B, n_classes), cross-entropy, accuracy
//   "lm"         (trainers/task_lm.h): next-token cross-entropy, bits per token/byte, perplexities
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/variable.h"
#include "data/dataset.h"
#include "layers/module.h"

namespace ssm::train {

struct EvalStats {
  double loss = 0;      // mean cross-entropy (nats) per scored sample / token
  int64_t samples = 0;  // rows scored
  std::vector<std::pair<std::string, double>> metrics;  // e.g. {"accuracy", 0.86}, {"bits_per_byte", 1.9}
  double metric(const std::string& name) const;       // Internal error if absent
};

// Counts of one training micro-batch, summed by the trainer over its logging window.
struct StepCounts {
  int64_t samples = 0, tokens = 0, correct = 0;
};

class Task {
 public:
  virtual ~Task() = default;
  virtual std::string name() const = 0;
  // Forward and loss (a scalar Variable) of one batch on `device` (the batch is moved there).
  virtual ag::Variable loss(nn::Module& model, const data::Batch& batch, Device device, bool autocast,
                            StepCounts* counts) = 0;
  // Scores a whole split in eval mode without a graph; restores the model's mode.
  virtual EvalStats evaluate(nn::Module& model, const data::Dataset& split, int64_t batch_size, Device device,
                             bool autocast) = 0;
  // Training-window metrics from summed counts (e.g. train_accuracy, tokens_per_second).
  virtual std::vector<std::pair<std::string, double>> window_metrics(const StepCounts& c, double seconds) const = 0;
  // One line for the final score, e.g. "test accuracy: 0.8571 (loss 0.4012, 10000 samples)".
  virtual std::string describe(const EvalStats& s, const std::string& split) const = 0;
};

// BadInput naming the task when unknown.
std::unique_ptr<Task> make_task(const std::string& name);

}  // namespace ssm::train
