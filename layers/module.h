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
  Module() = default;
  virtual ~Module() = default;
  // Not copyable: layers keep pointers into their own parameter storage (hold modules by shared_ptr).
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Modules whose forward maps one activation to one activation override this (Sequential uses it).
  virtual Variable forward(const Variable& x);

  // Recursive: a module's own parameters in registration order, then each child's, in order.
  std::vector<Parameter> named_parameters() const;
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
  void to(DType dtype);    // converts floating parameters and buffers (in place), e.g. to f64 for gradcheck
  int64_t num_parameters() const;
  void zero_grad();  // drops every parameter's gradient

  // Parameters grouped by Parameter::group, groups in order of first appearance ("default" first when
  // present); the optimizer builds its parameter groups from this.
  std::vector<std::pair<std::string, std::vector<Parameter>>> parameter_groups() const;

  // Functional evaluation (gradcheck, per-sample tricks): exchanges the Variable of every parameter, in
  // named_parameters() order, with vars[i] (same shapes). Calling it again with the returned vector
  // restores the originals. Optimizers holding the old Variables do not see the new ones.
  void swap_parameters(std::vector<Variable>& vars);

  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }

 protected:
  Variable& register_parameter(const std::string& name, Tensor init, const std::string& group = "default");
  Tensor& register_buffer(const std::string& name, Tensor t);
  // Layers keep the returned pointer/reference (it stays valid: the storage is a deque), never a copy
  // of the Variable, so swap_parameters() reaches them.
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    check_new_name(name);
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
  void check_new_name(const std::string& name) const;
  void collect_parameters(const std::string& prefix, std::vector<Parameter>& out) const;
  void collect_buffers(const std::string& prefix, std::vector<std::pair<std::string, Tensor>>& out) const;
};

}  // namespace ssm::nn
