// Optimizers over parameter groups, and gradient clipping.
//
// Every parameter belongs to a group (nn::Parameter::group: "default", "no_decay", "ssm", ...). A group's
// lr and weight decay come from the overrides map when it names the group, else from the base values;
// the "no_decay" group defaults to weight decay 0. step(lr_scale) updates every parameter that has a
// gradient with lr = group lr * lr_scale (lr_scale: the schedule's factor for this step).
//
// AdamW (decoupled weight decay, Loshchilov & Hutter), per parameter with its own step count t:
//   p <- p * (1 - lr * wd)
//   m <- b1 m + (1 - b1) g          v <- b2 v + (1 - b2) g^2
//   p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
// SGD (L2 weight decay coupled into the gradient, as in PyTorch):
//   g <- g + wd p;  buf <- momentum buf + g;  p <- p - lr * (nesterov ? g + momentum buf : buf)
//
// State for checkpoints: "<param>.exp_avg", "<param>.exp_avg_sq", "<param>.step" (AdamW),
// "<param>.momentum_buffer" (SGD with momentum), and "step" (the optimizer's step count).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "layers/module.h"

namespace ssm::train {

class Config;

struct GroupSettings {
  std::optional<double> lr;
  std::optional<double> weight_decay;
};
using GroupOverrides = std::map<std::string, GroupSettings>;

class Optimizer {
 public:
  struct Group {
    std::string name;
    double lr = 0;
    double weight_decay = 0;
    std::vector<size_t> members;  // indices into params()
  };

  virtual ~Optimizer() = default;
  virtual std::string name() const = 0;

  // One update of every parameter that has a gradient. lr_scale multiplies every group's lr.
  void step(double lr_scale = 1.0);
  void zero_grad();  // drops every parameter's gradient
  int64_t step_count() const { return step_count_; }

  const std::vector<nn::Parameter>& params() const { return params_; }
  const std::vector<Group>& groups() const { return groups_; }
  const Group& group(const std::string& name) const;  // BadInput when no parameter is in that group
  double last_lr_scale() const { return last_lr_scale_; }

  // Named state tensors (the live tensors, not copies) for checkpoints, parameters in order.
  std::vector<std::pair<std::string, Tensor>> state_tensors() const;
  // Copies values in. Exact: every name present, no extras, same shape and dtype; BadInput names the
  // tensor, the shapes and `source`.
  void load_state_tensors(const std::vector<std::pair<std::string, Tensor>>& tensors,
                          const std::string& source = "optimizer state");
  void load_state_tensors(const std::map<std::string, Tensor>& tensors,
                          const std::string& source = "optimizer state");

 protected:
  Optimizer(std::vector<nn::Parameter> params, double lr, double weight_decay, const GroupOverrides& groups,
            const std::string& what);
  // Updates parameter i (which has a gradient) with the group's lr (already scaled) and weight decay;
  // param_step(i) is already incremented (1 on the first update).
  virtual void update(size_t i, Tensor& param, const Tensor& grad, double lr, double weight_decay) = 0;
  // One step's updates together (each as update() takes it); the default calls update() for each.
  struct Update {
    size_t i;
    Tensor* param;
    const Tensor* grad;
    double lr, weight_decay;
  };
  virtual void update_all(const std::vector<Update>& updates);
  // Derived classes register per-parameter state here (suffix -> tensor), in their constructors.
  void add_state(size_t i, const std::string& suffix, Tensor t);
  Tensor& state(size_t i, size_t k) { return state_[i][k].second; }
  int64_t param_step(size_t i) const { return param_steps_[i]; }

 private:
  std::vector<nn::Parameter> params_;
  std::vector<Group> groups_;
  std::vector<std::vector<std::pair<std::string, Tensor>>> state_;
  std::vector<int64_t> param_steps_;
  int64_t step_count_ = 0;
  double last_lr_scale_ = 1.0;
};

class AdamW : public Optimizer {
 public:
  AdamW(std::vector<nn::Parameter> params, double lr, std::pair<double, double> betas = {0.9, 0.999},
        double eps = 1e-8, double weight_decay = 0.01, const GroupOverrides& groups = {});
  std::string name() const override { return "adamw"; }
  double beta1() const { return beta1_; }
  double beta2() const { return beta2_; }
  double eps() const { return eps_; }

 protected:
  void update(size_t i, Tensor& param, const Tensor& grad, double lr, double weight_decay) override;
  void update_all(const std::vector<Update>& updates) override;  // one fused call (kernels::adamw_step_many)

 private:
  double beta1_, beta2_, eps_;
};

class SGD : public Optimizer {
 public:
  SGD(std::vector<nn::Parameter> params, double lr, double momentum = 0.0, bool nesterov = false,
      double weight_decay = 0.0, const GroupOverrides& groups = {});
  std::string name() const override { return "sgd"; }

 protected:
  void update(size_t i, Tensor& param, const Tensor& grad, double lr, double weight_decay) override;

 private:
  double momentum_;
  bool nesterov_;
};

// Builds an optimizer from a recipe subtree:
//   name: adamw | sgd        lr: 1e-3       weight_decay: 0.01
//   betas: [0.9, 0.999]      eps: 1e-8      (adamw)
//   momentum: 0.9            nesterov: false (sgd)
//   groups: {ssm: {lr: 1e-3, weight_decay: 0.0}, no_decay: {weight_decay: 0.0}}
// Unknown keys are BadInput with file:line.
std::unique_ptr<Optimizer> make_optimizer(const Config& c, std::vector<nn::Parameter> params);
const std::set<std::string>& optimizer_config_keys();

// Global L2 norm of all gradients, sqrt(sum_p |g_p|^2); when it exceeds max_norm (and is finite), every
// gradient is scaled in place by max_norm / (norm + 1e-6). Parameters without a gradient are skipped.
// Returns the norm before clipping.
double clip_grad_norm(const std::vector<nn::Parameter>& params, double max_norm);

}  // namespace ssm::train
