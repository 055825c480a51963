#include "trainers/task_classification.h"

#include <algorithm>
#include <numeric>

#include "autograd/functions.h"
#include "trainers/format.h"

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

ag::Variable ClassificationTask::loss(nn::Module& model, const data::Batch& batch, Device device, bool autocast,
                                      StepCounts* counts) {
  SSM_CHECK_INPUT(batch.labels.defined(), "classifier task: the dataset ", "has no labels (is it an LM dataset?)");
  ag::AutocastGuard ac(autocast);
  Tensor x = batch.inputs.to(device);
  Tensor y = batch.labels.to(device);
  ag::Variable logits = model.forward(ag::Variable(x));
  SSM_CHECK_INPUT(logits.dim() == 2 && logits.size(0) == batch.size(),
                  "classification: the model returned logits of shape ", shape_str(logits.shape()),
                  ", expected (", batch.size(), ", n_classes)");
  if (logits.dtype() != DType::f32) logits = ag::cast(logits, DType::f32);
  if (counts) {
    counts->samples += batch.size();
    counts->tokens += batch.size() * (batch.inputs.dim() >= 2 ? batch.inputs.size(1) : 1);
    counts->correct += count_correct(logits.data(), batch.labels);
  }
  return ag::cross_entropy(logits, y);
}

EvalStats ClassificationTask::evaluate(nn::Module& model, const data::Dataset& split, int64_t batch_size,
                                       Device device, bool autocast) {
  const bool was_training = model.is_training();
  model.eval();
  ag::NoGradGuard no_grad;
  EvalStats s;
  double loss_sum = 0;
  StepCounts counts;
  for (int64_t start = 0; start < split.size(); start += batch_size) {
    const int64_t n = std::min(batch_size, split.size() - start);
    std::vector<int64_t> idx(size_t(n), 0);
    std::iota(idx.begin(), idx.end(), start);
    data::Batch b = split.get(idx);
    ag::Variable l = loss(model, b, device, autocast, &counts);
    loss_sum += l.data().item() * double(n);
  }
  model.train(was_training);
  s.samples = counts.samples;
  if (s.samples > 0) s.loss = loss_sum / double(s.samples);
  s.metrics.emplace_back("accuracy", s.samples > 0 ? double(counts.correct) / double(s.samples) : 0.0);
  return s;
}

std::vector<std::pair<std::string, double>> ClassificationTask::window_metrics(const StepCounts& c,
                                                                               double seconds) const {
  return {{"train_accuracy", double(c.correct) / double(std::max<int64_t>(1, c.samples))},
          {"samples_per_second", double(c.samples) / std::max(1e-9, seconds)}};
}

std::string ClassificationTask::describe(const EvalStats& s, const std::string& split) const {
  return cat(split, " accuracy: ", fixed(s.metric("accuracy"), 4), " (loss ", fixed(s.loss, 4), ", ", s.samples,
             " samples)");
}

}  // namespace ssm::train
