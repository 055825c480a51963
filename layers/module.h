// Module: named parameters (Variables) and buffers (Tensors), child modules, train/eval mode and a
// state dict with stable dotted names ("layers.3.mixer.in_proj.weight") in registration order.
// Parameters carry a group name; optimizers map groups to their own lr / weight decay
// ("default": decayed; "no_decay": biases and norm gains; "ssm": S4D/Mamba SSM parameters, own lr,
// no weight decay, as in the S4 papers).
#pragma once
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/variable.h"

namespace ssm::nn {

using ag::Variable;

struct Parameter {
  std::string name;  // dotted, from the root module
  Variable var;
  std::string group;
};

class Module {
 public:
  virtual ~Module() = default;

  // Modules whose forward maps one activation to one activation override this (Sequential uses it).
  virtual Variable forward(const Variable& x);

  std::vector<Parameter> named_parameters() const;  // recursive, registration order
  std::vector<Variable> parameters() const;
  std::vector<std::pair<std::string, Tensor>> named_buffers() const;
  // Parameters then buffers, by dotted name (the tensors themselves, not copies).
  std::vector<std::pair<std::string, Tensor>> state_dict() const;
  // Copies values in. Strict: every name present, no extras; shapes and dtypes must match exactly.
  // Errors (BadInput) name the tensor and both shapes/dtypes. `source` (a file name) goes in messages.
  void load_state_dict(const std::map<std::string, Tensor>& tensors, const std::string& source = "state dict");

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void to(Device device);  // moves parameters and buffers (in place: same Variables, new data)
  int64_t num_parameters() const;

  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }

 protected:
  Variable& register_parameter(const std::string& name, Tensor init, const std::string& group = "default");
  Tensor& register_buffer(const std::string& name, Tensor t);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    children_.emplace_back(name, m);
    return m;
  }

 private:
  struct OwnParam {
    std::string name;
    Variable var;
    std::string group;
  };
  std::deque<OwnParam> params_;  // deque: references handed out stay valid
  std::deque<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
  void collect_parameters(const std::string& prefix, std::vector<Parameter>& out) const;
  void collect_buffers(const std::string& prefix, std::vector<std::pair<std::string, Tensor>>& out) const;
};

}  // namespace ssm::nn
