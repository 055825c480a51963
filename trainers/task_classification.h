// The classification task head: logits = model(inputs) (B, n_classes); loss = mean cross-entropy;
// accuracy = fraction of argmax(logits) == label.
#pragma once
#include "autograd/variable.h"
#include "data/dataset.h"
#include "layers/module.h"

namespace ssm::train {

struct EvalStats {
  double loss = 0;
  double accuracy = 0;
  int64_t samples = 0;
};

// Forward and loss of one batch on `device` (the batch is moved there). autocast: bf16 matmuls.
ag::Variable classification_loss(nn::Module& model, const data::Batch& batch, Device device, bool autocast,
                                 int64_t* correct = nullptr);

// Loss and accuracy over a whole split, in eval mode and without a graph; restores the model's mode.
EvalStats evaluate_classifier(nn::Module& model, const data::ClassificationDataset& split, int64_t batch_size,
                              Device device, bool autocast);

}  // namespace ssm::train
