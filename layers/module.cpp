// Module: parameter/buffer registry, recursion over children, state dict, device/dtype moves.
#include "layers/module.h"

#include <algorithm>
#include <functional>
#include <set>

namespace ssm::nn {

Variable Module::forward(const Variable&) {
  throw_internal("this module has no one-input forward(x); call its own forward overload");
}

void Module::check_new_name(const std::string& name) const {
  SSM_CHECK(!name.empty() && name.find('.') == std::string::npos, "module: bad name '", name, "'");
  for (const auto& p : params_) SSM_CHECK(p.name != name, "module: name '", name, "' registered twice");
  for (const auto& b : buffers_) SSM_CHECK(b.first != name, "module: name '", name, "' registered twice");
  for (const auto& c : children_) SSM_CHECK(c.first != name, "module: name '", name, "' registered twice");
}

Variable& Module::register_parameter(const std::string& name, Tensor init, const std::string& group) {
  check_new_name(name);
  SSM_CHECK(init.defined(), "module: parameter '", name, "' has no data");
  params_.push_back(OwnParam{name, Variable(std::move(init), /*requires_grad=*/true), group});
  return params_.back().var;
}

Tensor& Module::register_buffer(const std::string& name, Tensor t) {
  check_new_name(name);
  buffers_.emplace_back(name, std::move(t));
  return buffers_.back().second;
}

void Module::collect_parameters(const std::string& prefix, std::vector<Parameter>& out) const {
  for (const auto& p : params_) out.push_back(Parameter{prefix + p.name, p.var, p.group});
  for (const auto& [name, child] : children_) child->collect_parameters(prefix + name + ".", out);
}

void Module::collect_buffers(const std::string& prefix, std::vector<std::pair<std::string, Tensor>>& out) const {
  for (const auto& [name, t] : buffers_) out.emplace_back(prefix + name, t);
  for (const auto& [name, child] : children_) child->collect_buffers(prefix + name + ".", out);
}

std::vector<Parameter> Module::named_parameters() const {
  std::vector<Parameter> out;
  collect_parameters("", out);
  return out;
}

std::vector<Variable> Module::parameters() const {
  std::vector<Variable> out;
  for (auto& p : named_parameters()) out.push_back(p.var);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers() const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect_buffers("", out);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::state_dict() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& p : named_parameters()) out.emplace_back(p.name, p.var.data());
  for (auto& b : named_buffers()) out.push_back(b);
  return out;
}

void Module::load_state_dict(const std::map<std::string, Tensor>& tensors, const std::string& source) {
  // Check everything first so that a failed load leaves the model untouched.
  auto own = state_dict();
  std::vector<std::string> problems;
  std::set<std::string> expected;
  for (const auto& [name, mine] : own) {
    expected.insert(name);
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      problems.push_back(cat(source, ": missing tensor '", name, "' (the model expects shape ",
                             shape_str(mine.shape()), ", ", dtype_name(mine.dtype()), ")"));
      continue;
    }
    const Tensor& t = it->second;
    if (!t.defined()) {
      problems.push_back(cat(source, ": tensor '", name, "' is empty"));
    } else if (t.shape() != mine.shape()) {
      problems.push_back(cat(source, ": tensor '", name, "' has shape ", shape_str(t.shape()),
                             " but the model expects ", shape_str(mine.shape())));
    } else if (t.dtype() != mine.dtype()) {
      problems.push_back(cat(source, ": tensor '", name, "' has dtype ", dtype_name(t.dtype()),
                             " but the model expects ", dtype_name(mine.dtype())));
    }
  }
  for (const auto& [name, t] : tensors) {
    if (!expected.count(name))
      problems.push_back(cat(source, ": unexpected tensor '", name, "' (shape ",
                             t.defined() ? shape_str(t.shape()) : std::string("undefined"),
                             ") that the model does not have"));
  }
  if (!problems.empty()) {
    std::string msg = problems.front();
    if (problems.size() > 1) msg += cat(" (and ", problems.size() - 1, " more problem", problems.size() > 2 ? "s" : "", ")");
    throw_input(msg);
  }
  for (auto& [name, mine] : own) mine.copy_(tensors.at(name));  // the tensors are the live handles
}

void Module::train(bool on) {
  training_ = on;
  for (auto& c : children_) c.second->train(on);
}

void Module::to(Device device) {
  for (auto& p : params_) {
    if (p.var.device() != device) p.var.data() = p.var.data().to(device);
    if (p.var.has_grad() && p.var.grad().device() != device) p.var.grad() = p.var.grad().to(device);
  }
  for (auto& b : buffers_)
    if (b.second.device() != device) b.second = b.second.to(device);
  for (auto& c : children_) c.second->to(device);
}

void Module::to(DType dtype) {
  SSM_CHECK_INPUT(is_floating(dtype), "Module::to: target dtype must be floating, got ", dtype_name(dtype));
  for (auto& p : params_) {
    if (is_floating(p.var.dtype()) && p.var.dtype() != dtype) p.var.data() = p.var.data().to(dtype);
    if (p.var.has_grad()) p.var.zero_grad();
  }
  for (auto& b : buffers_)
    if (is_floating(b.second.dtype()) && b.second.dtype() != dtype) b.second = b.second.to(dtype);
  for (auto& c : children_) c.second->to(dtype);
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& p : named_parameters()) n += p.var.numel();
  return n;
}

void Module::zero_grad() {
  for (auto& p : params_) p.var.zero_grad();
  for (auto& c : children_) c.second->zero_grad();
}

std::vector<std::pair<std::string, std::vector<Parameter>>> Module::parameter_groups() const {
  std::vector<std::pair<std::string, std::vector<Parameter>>> groups;
  for (auto& p : named_parameters()) {
    auto it = std::find_if(groups.begin(), groups.end(), [&](auto& g) { return g.first == p.group; });
    if (it == groups.end()) {
      groups.emplace_back(p.group, std::vector<Parameter>{});
      it = groups.end() - 1;
    }
    it->second.push_back(p);
  }
  std::stable_partition(groups.begin(), groups.end(), [](auto& g) { return g.first == "default"; });
  return groups;
}

void Module::swap_parameters(std::vector<Variable>& vars) {
  auto named = named_parameters();
  SSM_CHECK_INPUT(named.size() == vars.size(), "swap_parameters: got ", vars.size(), " variables for ",
                  named.size(), " parameters");
  for (size_t i = 0; i < named.size(); ++i)
    SSM_CHECK_INPUT(vars[i].defined() && vars[i].shape() == named[i].var.shape(), "swap_parameters: parameter '",
                    named[i].name, "' has shape ", shape_str(named[i].var.shape()), ", the replacement ",
                    vars[i].defined() ? shape_str(vars[i].shape()) : std::string("undefined"));
  // Walk the tree in named_parameters() order, touching the stored Variables themselves.
  size_t i = 0;
  std::function<void(Module&)> walk = [&](Module& m) {
    for (auto& p : m.params_) std::swap(p.var, vars[i++]);
    for (auto& c : m.children_) walk(*c.second);
  };
  walk(*this);
}

}  // namespace ssm::nn
