#include "trainers/zero1.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/ops.h"
#include "kernels/optim/adamw.h"
#include "trainers/config.h"

namespace ssm::train {

namespace {

// The optimizer's parameter-group rules without any state: reuses Optimizer's constructor (validation,
// "no_decay" default, overrides) and never updates anything.
class GroupTable : public Optimizer {
 public:
  GroupTable(std::vector<nn::Parameter> params, const Zero1Options& o)
      : Optimizer(std::move(params), o.lr, o.weight_decay, o.groups, "zero1") {}
  std::string name() const override { return "zero1"; }

 protected:
  void update(size_t, Tensor&, const Tensor&, double, double) override {}
};

std::vector<int64_t> ints_of(const Tensor& t) { return t.to_int_vector(); }

Tensor i64_vector(const std::vector<int64_t>& v) { return Tensor::from_vector(v, {int64_t(v.size())}); }

}  // namespace

Zero1Options zero1_options(const Config& c) {
  c.check_unknown_keys(optimizer_config_keys());
  const std::string name = c.get_string("name", "adamw");
  SSM_CHECK_INPUT(name == "adamw", c.source(), ": ", c.full_key("name"), ": trainer.dist.zero: 1 shards AdamW only, "
                  "got optimizer '", name, "'");
  for (const char* k : {"momentum", "nesterov"})
    SSM_CHECK_INPUT(!c.has(k), c.source(), ": ", c.full_key(k), " is an SGD setting; optimizer 'adamw' does not use it");
  Zero1Options o;
  o.lr = c.get_double("lr");
  std::vector<double> betas = c.get_double_list("betas", {0.9, 0.999});
  SSM_CHECK_INPUT(betas.size() == 2, c.source(), ": ", c.full_key("betas"), ": expected 2 numbers, got ", betas.size());
  o.beta1 = betas[0];
  o.beta2 = betas[1];
  o.eps = c.get_double("eps", 1e-8);
  o.weight_decay = c.get_double("weight_decay", 0.01);
  Config gc = c.sub("groups");
  for (const std::string& g : c.child_keys("groups")) {
    Config one = gc.sub(g);
    one.check_unknown_keys({"lr", "weight_decay"});
    GroupSettings s;
    if (one.has("lr")) s.lr = one.get_double("lr");
    if (one.has("weight_decay")) s.weight_decay = one.get_double("weight_decay");
    o.groups[g] = s;
  }
  return o;
}

struct Zero1::State {
  std::shared_ptr<Communicator> comm;
  Zero1Options opt;
  GroupTable table;
  int rank = 0, world = 1;
  // Trainable parameters (indices into table.params()), their offsets and sizes in the flat vector.
  std::vector<size_t> which;
  std::vector<int64_t> offset, count;
  std::vector<double> lr, wd;        // of each trainable parameter's group
  std::vector<int64_t> param_steps;  // AdamW t of each trainable parameter
  int64_t P = 0, S = 0, step_count = 0;
  Tensor exp_avg, exp_avg_sq;  // [S] f32: AdamW's m and v of the shard
  // Only from reduce() to the end of step(): [W S] f32 gradients in, then parameters out; [S] f32 this
  // rank's slice of the mean gradient, then of the updated parameters (the all-gather's input).
  Tensor flat, shard;
  std::vector<char> present;            // after reduce(): some rank has a gradient for parameter j
  bool reduced = false;

  State(std::shared_ptr<Communicator> c, std::vector<nn::Parameter> params, Zero1Options o)
      : comm(std::move(c)), opt(std::move(o)), table(std::move(params), opt) {
    SSM_CHECK_INPUT(comm != nullptr, "zero1: no communicator");
    SSM_CHECK_INPUT(opt.beta1 >= 0 && opt.beta1 < 1 && opt.beta2 >= 0 && opt.beta2 < 1,
                    "zero1 (adamw): betas must be in [0, 1), got (", opt.beta1, ", ", opt.beta2, ")");
    SSM_CHECK_INPUT(opt.eps > 0, "zero1 (adamw): eps must be > 0, got ", opt.eps);
    rank = comm->rank();
    world = comm->size();
    const auto& ps = table.params();
    std::vector<int> group_of(ps.size(), -1);
    for (size_t g = 0; g < table.groups().size(); ++g)
      for (size_t i : table.groups()[g].members) group_of[i] = int(g);
    for (size_t i = 0; i < ps.size(); ++i) {
      if (!ps[i].var.requires_grad()) continue;
      const Tensor& d = ps[i].var.data();
      SSM_CHECK_INPUT(d.device() == comm->device(), "zero1: parameter '", ps[i].name, "' is on ", d.device().str(),
                      " but the communicator works on ", comm->device().str());
      SSM_CHECK_INPUT(d.dtype() == DType::f32, "zero1: parameter '", ps[i].name, "' has dtype ", dtype_name(d.dtype()),
                      "; ZeRO-1 shards f32 parameters only");
      which.push_back(i);
      offset.push_back(P);
      count.push_back(d.numel());
      lr.push_back(table.groups()[size_t(group_of[i])].lr);
      wd.push_back(table.groups()[size_t(group_of[i])].weight_decay);
      P += d.numel();
    }
    param_steps.assign(which.size(), 0);
    S = std::max<int64_t>(1, (P + world - 1) / world);
    const Device dev = comm->device();
    exp_avg = Tensor::zeros({S}, DType::f32, dev);
    exp_avg_sq = Tensor::zeros({S}, DType::f32, dev);
  }

  // The intersection of parameter j's range with this rank's shard, in shard coordinates:
  // [lo, hi) of the shard and the first element of the parameter it maps to.
  bool overlap(size_t j, int64_t& lo, int64_t& hi, int64_t& first) const {
    const int64_t s0 = int64_t(rank) * S;
    const int64_t a = std::max(offset[j], s0), b = std::min(offset[j] + count[j], s0 + S);
    if (a >= b) return false;
    lo = a - s0;
    hi = b - s0;
    first = a - offset[j];
    return true;
  }

  const nn::Parameter& param(size_t j) const { return table.params()[which[j]]; }

  // Parameter j's part of the shard: [lo, lo + len) of the shard is elements [first, first + len) of it.
  Tensor param_slice(size_t j, int64_t first, int64_t len) const {
    return param(j).var.data().view({count[j]}).narrow(0, first, len);
  }

  // The shard's parameter values (zeros in the padding).
  Tensor gather_shard_params() const {
    Tensor out = Tensor::zeros({S}, DType::f32, comm->device());
    for (size_t j = 0; j < which.size(); ++j) {
      int64_t lo, hi, first;
      if (overlap(j, lo, hi, first)) out.narrow(0, lo, hi - lo).copy_(param_slice(j, first, hi - lo));
    }
    return out;
  }
};

Zero1::Zero1(std::shared_ptr<Communicator> comm, std::vector<nn::Parameter> params, Zero1Options options)
    : st_(std::make_unique<State>(std::move(comm), std::move(params), std::move(options))) {}
Zero1::~Zero1() = default;

int Zero1::rank() const { return st_->rank; }
int Zero1::world_size() const { return st_->world; }
int64_t Zero1::step_count() const { return st_->step_count; }
const std::vector<Optimizer::Group>& Zero1::groups() const { return st_->table.groups(); }
int64_t Zero1::numel() const { return st_->P; }
int64_t Zero1::shard_numel() const { return st_->S; }
int64_t Zero1::shard_offset() const { return int64_t(st_->rank) * st_->S; }
size_t Zero1::state_bytes() const { return size_t(8 * st_->S); }
size_t Zero1::unsharded_state_bytes() const { return size_t(8 * st_->P); }

void Zero1::reduce(std::vector<nn::Parameter>&) {
  State& s = *st_;
  const size_t n = s.which.size();
  std::vector<float> flags(std::max<size_t>(n, 1), 0.0f);
  s.flat = Tensor::zeros({s.S * s.world}, DType::f32, s.comm->device());  // padding, missing gradients: 0
  for (size_t j = 0; j < n; ++j) {
    const ag::Variable& v = s.param(j).var;
    if (!v.has_grad()) continue;
    SSM_CHECK_INPUT(v.grad().shape() == v.shape(), "zero1: gradient of '", s.param(j).name, "' has shape ",
                    shape_str(v.grad().shape()), ", parameter ", shape_str(v.shape()));
    s.flat.narrow(0, s.offset[j], s.count[j]).view(v.shape()).copy_(v.grad());
    flags[j] = 1.0f;
  }
  Tensor f = Tensor::from_vector(flags, {int64_t(flags.size())}).to(s.comm->device());
  WorkPtr wf = s.comm->all_reduce_async(f, ReduceOp::Sum, "zero1: all-reduce of the gradient flags");
  s.shard = Tensor::empty({s.S}, DType::f32, s.comm->device());
  s.comm->reduce_scatter(s.flat, s.shard, ReduceOp::Avg, "zero1: reduce-scatter of the gradients");
  s.flat = Tensor();  // not needed until the all-gather: its memory is free for the optimizer's temporaries
  wf->wait();
  const std::vector<float> any = f.to_float_vector();
  s.present.assign(n, 0);
  for (size_t j = 0; j < n; ++j) s.present[j] = any[j] > 0.0f;
  s.reduced = true;
}

double Zero1::clip_grad_norm(double max_norm) {
  State& s = *st_;
  SSM_CHECK_INPUT(max_norm > 0, "zero1.clip_grad_norm: max_norm must be > 0, got ", max_norm);
  SSM_CHECK(s.reduced, "zero1.clip_grad_norm: call reduce() first");
  const double mine = norm2(s.shard);
  const double total =
      std::sqrt(all_reduce_scalar(*s.comm, mine * mine, ReduceOp::Sum, "zero1: all-reduce of the gradient norm"));
  if (std::isfinite(total) && total > max_norm) {
    const double scale = max_norm / (total + 1e-6);
    binary_(BinaryOp::Mul, s.shard, Tensor::scalar(scale, s.shard.dtype(), s.shard.device()));
  }
  return total;
}

void Zero1::step(double lr_scale) {
  State& s = *st_;
  SSM_CHECK_INPUT(std::isfinite(lr_scale) && lr_scale >= 0, "zero1.step: lr_scale must be >= 0, got ", lr_scale);
  SSM_CHECK(s.reduced, "zero1.step: call reduce() first (once per step)");
  for (size_t j = 0; j < s.which.size(); ++j) {
    if (!s.present[j]) continue;  // no rank has a gradient: skipped, as Optimizer::step does
    const int64_t t = ++s.param_steps[j];
    int64_t lo, hi, first;
    if (!s.overlap(j, lo, hi, first)) continue;
    const int64_t len = hi - lo;
    Tensor p = s.param_slice(j, first, len), m = s.exp_avg.narrow(0, lo, len), v = s.exp_avg_sq.narrow(0, lo, len);
    Tensor g = s.shard.narrow(0, lo, len);
    kernels::adamw_step(p, g, m, v, s.lr[j] * lr_scale, s.opt.beta1, s.opt.beta2, s.opt.eps, s.wd[j], t);
    g.copy_(p);  // this gradient slice is used up: the shard buffer now carries the new parameter values
  }
  ++s.step_count;
  s.reduced = false;
  // Slices of absent parameters still hold gradients (zeros); nobody copies them back below.
  s.flat = Tensor::empty({s.S * s.world}, DType::f32, s.comm->device());
  s.comm->all_gather(s.shard, s.flat, "zero1: all-gather of the parameters");
  for (size_t j = 0; j < s.which.size(); ++j) {
    if (!s.present[j]) continue;
    ag::Variable v = s.param(j).var;
    v.data().copy_(s.flat.narrow(0, s.offset[j], s.count[j]).view(v.shape()));
  }
  s.flat = Tensor();
  s.shard = Tensor();
}

void Zero1::zero_grad() {
  for (const auto& p : st_->table.params()) {
    ag::Variable v = p.var;
    v.zero_grad();
  }
}

std::vector<std::pair<std::string, Tensor>> Zero1::state_tensors() const {
  const State& s = *st_;
  std::vector<int64_t> numel(s.count.begin(), s.count.end());
  return {{"step", Tensor::scalar(double(s.step_count), DType::i64)},
          {"zero1.layout", i64_vector({s.P, int64_t(s.world), int64_t(s.rank), s.S})},
          {"zero1.param_numel", i64_vector(numel)},
          {"zero1.param_steps", i64_vector(s.param_steps)},
          {"zero1.master", s.gather_shard_params()},
          {"zero1.exp_avg", s.exp_avg.clone()},
          {"zero1.exp_avg_sq", s.exp_avg_sq.clone()}};
}

namespace {

const Tensor& need(const std::map<std::string, Tensor>& t, const std::string& name, const std::string& source,
                   DType dt, const Shape& shape) {
  auto it = t.find(name);
  SSM_CHECK_INPUT(it != t.end(), source, ": zero1 state: missing tensor '", name, "'");
  SSM_CHECK_INPUT(it->second.dtype() == dt, source, ": zero1 state: tensor '", name, "' has dtype ",
                  dtype_name(it->second.dtype()), ", expected ", dtype_name(dt));
  SSM_CHECK_INPUT(it->second.shape() == shape, source, ": zero1 state: tensor '", name, "' has shape ",
                  shape_str(it->second.shape()), ", expected ", shape_str(shape));
  return it->second;
}

const char* const kNames[] = {"step", "zero1.layout", "zero1.param_numel", "zero1.param_steps",
                              "zero1.master", "zero1.exp_avg", "zero1.exp_avg_sq"};

void check_no_extras(const std::map<std::string, Tensor>& t, const std::string& source) {
  for (const auto& [n, _] : t)
    SSM_CHECK_INPUT(std::find(std::begin(kNames), std::end(kNames), n) != std::end(kNames), source,
                    ": zero1 state: unexpected tensor '", n, "' (is this a non-sharded optimizer's file?)");
}

}  // namespace

void Zero1::load_state_tensors(const std::map<std::string, Tensor>& t, const std::string& source) {
  State& s = *st_;
  check_no_extras(t, source);
  const int64_t n = int64_t(s.which.size());
  const std::vector<int64_t> layout = ints_of(need(t, "zero1.layout", source, DType::i64, {4}));
  SSM_CHECK_INPUT(layout[0] == s.P, source, ": zero1 state is for ", layout[0], " parameter elements; this model has ",
                  s.P);
  SSM_CHECK_INPUT(layout[1] == s.world && layout[2] == s.rank && layout[3] == s.S, source,
                  ": zero1 shard of rank ", layout[2], " of ", layout[1], " (", layout[3], " elements); this is rank ",
                  s.rank, " of ", s.world, " (", s.S, " elements): reshard with reshard_zero1_state first");
  const std::vector<int64_t> numel = ints_of(need(t, "zero1.param_numel", source, DType::i64, {n}));
  for (int64_t j = 0; j < n; ++j)
    SSM_CHECK_INPUT(numel[size_t(j)] == s.count[size_t(j)], source, ": zero1 state: parameter ", j, " ('",
                    s.param(size_t(j)).name, "') has ", numel[size_t(j)], " elements there, ", s.count[size_t(j)],
                    " in the model");
  const Tensor& steps = need(t, "zero1.param_steps", source, DType::i64, {n});
  const Tensor& step = need(t, "step", source, DType::i64, {});
  const Tensor& ma = need(t, "zero1.master", source, DType::f32, {s.S});
  const Tensor& m = need(t, "zero1.exp_avg", source, DType::f32, {s.S});
  const Tensor& v = need(t, "zero1.exp_avg_sq", source, DType::f32, {s.S});
  // All checked: copy.
  s.param_steps = ints_of(steps);
  s.step_count = int64_t(step.item());
  for (size_t j = 0; j < s.which.size(); ++j) {
    int64_t lo, hi, first;
    if (s.overlap(j, lo, hi, first)) s.param_slice(j, first, hi - lo).copy_(ma.narrow(0, lo, hi - lo));
  }
  s.exp_avg.copy_(m);
  s.exp_avg_sq.copy_(v);
  s.reduced = false;
}

// ---------------- resharding ----------------

Zero1FullState zero1_gather(const std::vector<std::map<std::string, Tensor>>& shards,
                            const std::vector<std::string>& sources) {
  SSM_CHECK_INPUT(!shards.empty(), "zero1 reshard: no shard files");
  const int64_t W = int64_t(shards.size());
  auto src = [&](size_t r) { return r < sources.size() ? sources[r] : cat("zero1 shard of rank ", r); };
  Zero1FullState full;
  int64_t P = -1, S = -1;
  std::vector<Tensor> parts[3];
  for (size_t r = 0; r < shards.size(); ++r) {
    const auto& t = shards[r];
    const std::string source = src(r);
    check_no_extras(t, source);
    const std::vector<int64_t> layout = ints_of(need(t, "zero1.layout", source, DType::i64, {4}));
    SSM_CHECK_INPUT(layout[1] == W && layout[2] == int64_t(r), source, ": holds the shard of rank ", layout[2], " of ",
                    layout[1], ", expected rank ", r, " of ", W, " (one file per old rank, in rank order)");
    if (r == 0) {
      P = layout[0];
      S = layout[3];
      SSM_CHECK_INPUT(P >= 0 && S >= 1 && S * W >= P && S == std::max<int64_t>(1, (P + W - 1) / W), source,
                      ": zero1 layout {P ", P, ", W ", W, ", S ", S, "} is inconsistent");
    }
    SSM_CHECK_INPUT(layout[0] == P && layout[3] == S, source, ": zero1 layout {P ", layout[0], ", S ", layout[3],
                    "} differs from rank 0's {P ", P, ", S ", S, "}");
    SSM_CHECK_INPUT(t.count("zero1.param_numel"), source, ": zero1 state: missing tensor 'zero1.param_numel'");
    const Tensor& numel = t.at("zero1.param_numel");
    SSM_CHECK_INPUT(numel.dtype() == DType::i64 && numel.dim() == 1, source, ": zero1.param_numel must be i64 [n]");
    const std::vector<int64_t> nv = ints_of(numel);
    const std::vector<int64_t> sv = ints_of(need(t, "zero1.param_steps", source, DType::i64, {int64_t(nv.size())}));
    const int64_t step = int64_t(need(t, "step", source, DType::i64, {}).item());
    if (r == 0) {
      full.param_numel = nv;
      full.param_steps = sv;
      full.step = step;
      int64_t sum = 0;
      for (int64_t x : nv) sum += x;
      SSM_CHECK_INPUT(sum == P, source, ": zero1.param_numel sums to ", sum, ", layout says ", P);
    }
    SSM_CHECK_INPUT(nv == full.param_numel && sv == full.param_steps && step == full.step, source,
                    ": parameter sizes or step counts differ from rank 0's (shards of different runs or steps?)");
    int k = 0;
    for (const char* name : {"zero1.master", "zero1.exp_avg", "zero1.exp_avg_sq"})
      parts[k++].push_back(need(t, name, source, DType::f32, {S}));
  }
  Tensor* outs[3] = {&full.master, &full.exp_avg, &full.exp_avg_sq};
  for (int k = 0; k < 3; ++k) {
    Tensor whole = Tensor::zeros({P}, DType::f32);
    for (int64_t r = 0; r < W; ++r) {
      const int64_t a = r * S, len = std::min(P, a + S) - a;
      if (len > 0) whole.narrow(0, a, len).copy_(parts[k][size_t(r)].to(Device::cpu()).narrow(0, 0, len));
    }
    *outs[k] = whole;
  }
  return full;
}

std::vector<std::pair<std::string, Tensor>> zero1_shard(const Zero1FullState& full, int rank, int world) {
  SSM_CHECK_INPUT(world >= 1 && rank >= 0 && rank < world, "zero1 reshard: rank ", rank, " of world size ", world,
                  " is out of range");
  const int64_t P = full.master.numel(), W = world;
  const int64_t S = std::max<int64_t>(1, (P + W - 1) / W);
  const int64_t a = rank * S, len = std::max<int64_t>(0, std::min(P, a + S) - a);
  auto cut = [&](const Tensor& t) {
    Tensor out = Tensor::zeros({S}, DType::f32);
    if (len > 0) out.narrow(0, 0, len).copy_(t.narrow(0, a, len));
    return out;
  };
  return {{"step", Tensor::scalar(double(full.step), DType::i64)},
          {"zero1.layout", i64_vector({P, W, int64_t(rank), S})},
          {"zero1.param_numel", i64_vector(full.param_numel)},
          {"zero1.param_steps", i64_vector(full.param_steps)},
          {"zero1.master", cut(full.master)},
          {"zero1.exp_avg", cut(full.exp_avg)},
          {"zero1.exp_avg_sq", cut(full.exp_avg_sq)}};
}

std::vector<std::pair<std::string, Tensor>> reshard_zero1_state(const std::vector<std::map<std::string, Tensor>>& old,
                                                                int rank, int world,
                                                                const std::vector<std::string>& sources) {
  return zero1_shard(zero1_gather(old, sources), rank, world);
}

std::vector<std::pair<std::string, Tensor>> adamw_state_from_zero1(const Zero1FullState& full,
                                                                   const std::vector<nn::Parameter>& params) {
  std::vector<std::pair<std::string, Tensor>> out;
  out.emplace_back("step", Tensor::scalar(double(full.step), DType::i64));
  size_t j = 0;
  int64_t off = 0;
  for (const auto& p : params) {
    const Tensor& d = p.var.data();
    Tensor m = Tensor::zeros(d.shape(), d.dtype()), v = Tensor::zeros(d.shape(), d.dtype());
    int64_t t = 0;
    if (p.var.requires_grad()) {
      SSM_CHECK_INPUT(j < full.param_numel.size() && full.param_numel[j] == d.numel(), "zero1 -> adamw: parameter '",
                      p.name, "' (", d.numel(), " elements) does not match the zero1 state's parameter ", j);
      m.copy_(full.exp_avg.narrow(0, off, d.numel()).view(d.shape()));
      v.copy_(full.exp_avg_sq.narrow(0, off, d.numel()).view(d.shape()));
      t = full.param_steps[j];
      off += d.numel();
      ++j;
    }
    out.emplace_back(p.name + ".exp_avg", m);
    out.emplace_back(p.name + ".exp_avg_sq", v);
    out.emplace_back(p.name + ".step", Tensor::scalar(double(t), DType::i64));
  }
  SSM_CHECK_INPUT(j == full.param_numel.size(), "zero1 -> adamw: the zero1 state has ", full.param_numel.size(),
                  " trainable parameters, the model ", j);
  return out;
}

Zero1FullState zero1_from_adamw_state(const std::map<std::string, Tensor>& adamw,
                                      const std::vector<nn::Parameter>& params, const std::string& source) {
  auto get = [&](const std::string& n) -> const Tensor& {
    auto it = adamw.find(n);
    SSM_CHECK_INPUT(it != adamw.end(), source, ": adamw state: missing tensor '", n, "'");
    return it->second;
  };
  Zero1FullState full;
  full.step = int64_t(get("step").item());
  int64_t P = 0;
  for (const auto& p : params)
    if (p.var.requires_grad()) P += p.var.numel();
  full.master = Tensor::zeros({P}, DType::f32);
  full.exp_avg = Tensor::zeros({P}, DType::f32);
  full.exp_avg_sq = Tensor::zeros({P}, DType::f32);
  int64_t off = 0;
  for (const auto& p : params) {
    if (!p.var.requires_grad()) continue;
    const int64_t n = p.var.numel();
    const Tensor& m = get(p.name + ".exp_avg");
    const Tensor& v = get(p.name + ".exp_avg_sq");
    SSM_CHECK_INPUT(m.numel() == n && v.numel() == n, source, ": adamw state of '", p.name, "' has ", m.numel(),
                    " elements, the parameter ", n);
    full.master.narrow(0, off, n).copy_(p.var.data().contiguous().view({n}).to(Device::cpu()));
    full.exp_avg.narrow(0, off, n).copy_(m.contiguous().view({n}).to(Device::cpu()));
    full.exp_avg_sq.narrow(0, off, n).copy_(v.contiguous().view({n}).to(Device::cpu()));
    full.param_numel.push_back(n);
    full.param_steps.push_back(int64_t(get(p.name + ".step").item()));
    off += n;
  }
  return full;
}

std::string zero1_shard_file(int rank) { return cat("optimizer-rank", rank, ".safetensors"); }

}  // namespace ssm::train
