#include "trainers/optim.h"

#include <cmath>

#include "core/error.h"
#include "core/ops.h"
#include "kernels/optim/adamw.h"
#include "trainers/config.h"

namespace ssm::train {

Optimizer::Optimizer(std::vector<nn::Parameter> params, double lr, double weight_decay,
                     const GroupOverrides& overrides, const std::string& what)
    : params_(std::move(params)) {
  SSM_CHECK_INPUT(std::isfinite(lr) && lr >= 0, what, ": lr must be >= 0, got ", lr);
  SSM_CHECK_INPUT(std::isfinite(weight_decay) && weight_decay >= 0, what, ": weight_decay must be >= 0, got ",
                  weight_decay);
  std::set<const void*> seen_vars;
  std::set<std::string> seen_names;
  std::map<std::string, size_t> group_index;
  for (size_t i = 0; i < params_.size(); ++i) {
    const nn::Parameter& p = params_[i];
    SSM_CHECK_INPUT(p.var.defined(), what, ": parameter '", p.name, "' is undefined");
    SSM_CHECK_INPUT(seen_vars.insert(p.var.id()).second, what, ": parameter '", p.name, "' is listed twice");
    SSM_CHECK_INPUT(seen_names.insert(p.name).second, what, ": two parameters are named '", p.name, "'");
    std::string g = p.group.empty() ? "default" : p.group;
    auto [it, fresh] = group_index.emplace(g, groups_.size());
    if (fresh) {
      Group grp;
      grp.name = g;
      grp.lr = lr;
      grp.weight_decay = g == "no_decay" ? 0.0 : weight_decay;
      if (auto o = overrides.find(g); o != overrides.end()) {
        if (o->second.lr) grp.lr = *o->second.lr;
        if (o->second.weight_decay) grp.weight_decay = *o->second.weight_decay;
      }
      SSM_CHECK_INPUT(std::isfinite(grp.lr) && grp.lr >= 0, what, ": group '", g, "': lr must be >= 0, got ",
                      grp.lr);
      SSM_CHECK_INPUT(std::isfinite(grp.weight_decay) && grp.weight_decay >= 0, what, ": group '", g,
                      "': weight_decay must be >= 0, got ", grp.weight_decay);
      groups_.push_back(grp);
    }
    groups_[it->second].members.push_back(i);
  }
  state_.resize(params_.size());
  param_steps_.assign(params_.size(), 0);
}

const Optimizer::Group& Optimizer::group(const std::string& name) const {
  for (const auto& g : groups_)
    if (g.name == name) return g;
  throw_input(cat("optimizer: no parameter is in group '", name, "'"));
}

void Optimizer::add_state(size_t i, const std::string& suffix, Tensor t) { state_[i].emplace_back(suffix, std::move(t)); }

void Optimizer::step(double lr_scale) {
  SSM_CHECK_INPUT(std::isfinite(lr_scale) && lr_scale >= 0, name(), ".step: lr_scale must be >= 0, got ", lr_scale);
  last_lr_scale_ = lr_scale;
  std::vector<Update> updates;
  for (const Group& g : groups_) {
    for (size_t i : g.members) {
      nn::Parameter& p = params_[i];
      if (!p.var.requires_grad() || !p.var.has_grad()) continue;
      Tensor& data = p.var.data();
      const Tensor& grad = p.var.grad();
      SSM_CHECK_INPUT(grad.shape() == data.shape(), name(), ": gradient of '", p.name, "' has shape ",
                      shape_str(grad.shape()), ", parameter ", shape_str(data.shape()));
      updates.push_back({i, &data, &grad, g.lr * lr_scale, g.weight_decay});
    }
  }
  for (const Update& u : updates) ++param_steps_[u.i];
  update_all(updates);
  ++step_count_;
}

void Optimizer::update_all(const std::vector<Update>& updates) {
  for (const Update& u : updates) update(u.i, *u.param, *u.grad, u.lr, u.weight_decay);
}

void Optimizer::zero_grad() {
  for (auto& p : params_) p.var.zero_grad();
}

std::vector<std::pair<std::string, Tensor>> Optimizer::state_tensors() const {
  std::vector<std::pair<std::string, Tensor>> out;
  out.emplace_back("step", Tensor::scalar(double(step_count_), DType::i64));
  for (size_t i = 0; i < params_.size(); ++i) {
    for (const auto& [suffix, t] : state_[i]) out.emplace_back(params_[i].name + "." + suffix, t);
    out.emplace_back(params_[i].name + ".step", Tensor::scalar(double(param_steps_[i]), DType::i64));
  }
  return out;
}

void Optimizer::load_state_tensors(const std::map<std::string, Tensor>& tensors, const std::string& source) {
  const std::string ctx = cat(source, ": ", name(), " state: ");
  std::map<std::string, Tensor> expected;
  for (auto& [n, t] : state_tensors()) expected.emplace(n, t);
  for (const auto& [n, t] : tensors)
    SSM_CHECK_INPUT(expected.count(n), ctx, "unexpected tensor '", n, "' (no such parameter state in this ",
                    name(), " optimizer)");
  for (const auto& [n, want] : expected) {
    auto it = tensors.find(n);
    SSM_CHECK_INPUT(it != tensors.end(), ctx, "missing tensor '", n, "'");
    const Tensor& got = it->second;
    SSM_CHECK_INPUT(got.shape() == want.shape(), ctx, "tensor '", n, "' has shape ", shape_str(got.shape()),
                    ", expected ", shape_str(want.shape()));
    SSM_CHECK_INPUT(got.dtype() == want.dtype(), ctx, "tensor '", n, "' has dtype ", dtype_name(got.dtype()),
                    ", expected ", dtype_name(want.dtype()));
  }
  // All checked: now copy (nothing is half-loaded on error).
  step_count_ = int64_t(tensors.at("step").item());
  for (size_t i = 0; i < params_.size(); ++i) {
    for (auto& [suffix, t] : state_[i]) t.copy_(tensors.at(params_[i].name + "." + suffix));
    param_steps_[i] = int64_t(tensors.at(params_[i].name + ".step").item());
  }
}

void Optimizer::load_state_tensors(const std::vector<std::pair<std::string, Tensor>>& tensors,
                                   const std::string& source) {
  std::map<std::string, Tensor> m;
  for (const auto& [n, t] : tensors)
    SSM_CHECK_INPUT(m.emplace(n, t).second, source, ": optimizer state tensor '", n, "' appears twice");
  load_state_tensors(m, source);
}

// ---------------- AdamW ----------------

AdamW::AdamW(std::vector<nn::Parameter> params, double lr, std::pair<double, double> betas, double eps,
             double weight_decay, const GroupOverrides& groups)
    : Optimizer(std::move(params), lr, weight_decay, groups, "adamw"),
      beta1_(betas.first),
      beta2_(betas.second),
      eps_(eps) {
  SSM_CHECK_INPUT(beta1_ >= 0 && beta1_ < 1 && beta2_ >= 0 && beta2_ < 1, "adamw: betas must be in [0, 1), got (",
                  beta1_, ", ", beta2_, ")");
  SSM_CHECK_INPUT(eps_ > 0, "adamw: eps must be > 0, got ", eps_);
  for (size_t i = 0; i < this->params().size(); ++i) {
    const Tensor& d = this->params()[i].var.data();
    add_state(i, "exp_avg", Tensor::zeros(d.shape(), d.dtype(), d.device()));
    add_state(i, "exp_avg_sq", Tensor::zeros(d.shape(), d.dtype(), d.device()));
  }
}

void AdamW::update(size_t i, Tensor& param, const Tensor& grad, double lr, double weight_decay) {
  kernels::adamw_step(param, grad, state(i, 0), state(i, 1), lr, beta1_, beta2_, eps_, weight_decay,
                      param_step(i));
}

void AdamW::update_all(const std::vector<Update>& updates) {
  std::vector<kernels::AdamWParam> ps;
  ps.reserve(updates.size());
  for (const Update& u : updates)
    ps.push_back({u.param, u.grad, &state(u.i, 0), &state(u.i, 1), u.lr, u.weight_decay, param_step(u.i)});
  kernels::adamw_step_many(ps, beta1_, beta2_, eps_);
}

// ---------------- SGD ----------------

SGD::SGD(std::vector<nn::Parameter> params, double lr, double momentum, bool nesterov, double weight_decay,
         const GroupOverrides& groups)
    : Optimizer(std::move(params), lr, weight_decay, groups, "sgd"), momentum_(momentum), nesterov_(nesterov) {
  SSM_CHECK_INPUT(momentum_ >= 0 && momentum_ < 1, "sgd: momentum must be in [0, 1), got ", momentum_);
  SSM_CHECK_INPUT(!nesterov_ || momentum_ > 0, "sgd: nesterov needs momentum > 0");
  if (momentum_ > 0) {
    for (size_t i = 0; i < this->params().size(); ++i) {
      const Tensor& d = this->params()[i].var.data();
      add_state(i, "momentum_buffer", Tensor::zeros(d.shape(), d.dtype(), d.device()));
    }
  }
}

void SGD::update(size_t i, Tensor& param, const Tensor& grad, double lr, double weight_decay) {
  if (momentum_ > 0) {
    kernels::sgd_step(param, grad, state(i, 0), lr, momentum_, weight_decay, nesterov_);
  } else {
    // p <- p - lr (g + wd p) = (1 - lr wd) p - lr g
    axpby_(param, 1.0 - lr * weight_decay, grad, -lr);
  }
}

// ---------------- from a recipe ----------------

const std::set<std::string>& optimizer_config_keys() {
  static const std::set<std::string> keys = {"name", "lr", "weight_decay", "betas", "eps", "momentum", "nesterov",
                                             "groups"};
  return keys;
}

std::unique_ptr<Optimizer> make_optimizer(const Config& c, std::vector<nn::Parameter> params) {
  c.check_unknown_keys(optimizer_config_keys());
  const std::string name = c.get_string("name", "adamw");
  GroupOverrides groups;
  Config gc = c.sub("groups");
  for (const std::string& g : c.child_keys("groups")) {
    Config one = gc.sub(g);
    one.check_unknown_keys({"lr", "weight_decay"});
    GroupSettings s;
    if (one.has("lr")) s.lr = one.get_double("lr");
    if (one.has("weight_decay")) s.weight_decay = one.get_double("weight_decay");
    groups[g] = s;
  }
  const double lr = c.get_double("lr");
  if (name == "adamw") {
    for (const char* k : {"momentum", "nesterov"})
      SSM_CHECK_INPUT(!c.has(k), c.source(), ": ", c.full_key(k), " is an SGD setting; optimizer '", name,
                      "' does not use it");
    std::vector<double> betas = c.get_double_list("betas", {0.9, 0.999});
    SSM_CHECK_INPUT(betas.size() == 2, c.source(), ": ", c.full_key("betas"), ": expected 2 numbers, got ",
                    betas.size());
    return std::make_unique<AdamW>(std::move(params), lr, std::make_pair(betas[0], betas[1]),
                                   c.get_double("eps", 1e-8), c.get_double("weight_decay", 0.01), groups);
  }
  if (name == "sgd") {
    for (const char* k : {"betas", "eps"})
      SSM_CHECK_INPUT(!c.has(k), c.source(), ": ", c.full_key(k), " is an AdamW setting; optimizer '", name,
                      "' does not use it");
    return std::make_unique<SGD>(std::move(params), lr, c.get_double("momentum", 0.0), c.get_bool("nesterov", false),
                                 c.get_double("weight_decay", 0.0), groups);
  }
  throw_input(cat(c.source(), ": ", c.full_key("name"), ": unknown optimizer '", name, "' (expected adamw or sgd)"));
}

// ---------------- clipping ----------------

double clip_grad_norm(const std::vector<nn::Parameter>& params, double max_norm) {
  SSM_CHECK_INPUT(max_norm > 0, "clip_grad_norm: max_norm must be > 0, got ", max_norm);
  std::vector<Tensor> grads;
  for (const auto& p : params)
    if (p.var.has_grad()) grads.push_back(p.var.grad());
  const double total = norm2(grads);  // one host sync for all of them
  if (std::isfinite(total) && total > max_norm) scale_(grads, max_norm / (total + 1e-6));  // in place
  return total;
}

}  // namespace ssm::train
