#include "trainers/task_classification.h"

#include <algorithm>
#include <numeric>

#include "autograd/functions.h"

namespace ssm::train {

namespace {
int64_t count_correct(const Tensor& logits, const Tensor& labels) {
  Tensor pred = argmax(logits, -1).to(Device::cpu());
  std::vector<int64_t> p = pred.to_int_vector(), y = labels.to_int_vector();
  int64_t c = 0;
  for (size_t i = 0; i < p.size(); ++i) c += p[i] == y[i];
  return c;
}
}  // namespace

ag::Variable classification_loss(nn::Module& model, const data::Batch& batch, Device device, bool autocast,
                                 int64_t* correct) {
  ag::AutocastGuard ac(autocast);
  Tensor x = batch.inputs.to(device);
  Tensor y = batch.labels.to(device);
  ag::Variable logits = model.forward(ag::Variable(x));
  SSM_CHECK_INPUT(logits.dim() == 2 && logits.size(0) == batch.size(),
                  "classification: the model returned logits of shape ", shape_str(logits.shape()),
                  ", expected (", batch.size(), ", n_classes)");
  if (logits.dtype() != DType::f32) logits = ag::cast(logits, DType::f32);
  if (correct) *correct = count_correct(logits.data(), batch.labels);
  return ag::cross_entropy(logits, y);
}

EvalStats evaluate_classifier(nn::Module& model, const data::ClassificationDataset& split, int64_t batch_size,
                              Device device, bool autocast) {
  const bool was_training = model.is_training();
  model.eval();
  ag::NoGradGuard no_grad;
  EvalStats s;
  double loss_sum = 0;
  int64_t correct_sum = 0;
  for (int64_t start = 0; start < split.size(); start += batch_size) {
    const int64_t n = std::min(batch_size, split.size() - start);
    std::vector<int64_t> idx(size_t(n), 0);
    std::iota(idx.begin(), idx.end(), start);
    data::Batch b = split.get(idx);
    int64_t correct = 0;
    ag::Variable loss = classification_loss(model, b, device, autocast, &correct);
    loss_sum += loss.data().item() * double(n);
    correct_sum += correct;
    s.samples += n;
  }
  model.train(was_training);
  if (s.samples > 0) {
    s.loss = loss_sum / double(s.samples);
    s.accuracy = double(correct_sum) / double(s.samples);
  }
  return s;
}

}  // namespace ssm::train
