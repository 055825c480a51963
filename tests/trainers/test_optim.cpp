#include "tests/trainers/trainers_test_util.h"
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "core/tensor.h"
#include "trainers/config.h"
#include "trainers/optim.h"

using namespace ssm;
using namespace ssm::train;
using ssm::ag::Variable;

namespace {

using namespace ssm_trainers_test;

nn::Parameter param(const std::string& name, std::vector<double> v, const std::string& group = "default",
                    DType dt = DType::f64) {
  Tensor t = Tensor::from_vector(v, {int64_t(v.size())});
  if (dt != DType::f64) t = t.to(dt);
  return {name, Variable(t, true), group};
}

void set_grad(nn::Parameter& p, const std::vector<double>& g) {
  p.var.zero_grad();
  Tensor t = Tensor::from_vector(g, {int64_t(g.size())});
  p.var.add_grad(t.to(p.var.dtype()));
}

// torch.optim.AdamW, one element at a time, in double.
struct RefAdamW {
  double lr, b1, b2, eps, wd;
  std::vector<double> m, v;
  int t = 0;
  RefAdamW(double lr_, double b1_, double b2_, double eps_, double wd_)
      : lr(lr_), b1(b1_), b2(b2_), eps(eps_), wd(wd_) {}
  void step(std::vector<double>& p, const std::vector<double>& g, double lr_scale) {
    if (m.empty()) m.assign(p.size(), 0), v.assign(p.size(), 0);
    ++t;
    const double a = lr * lr_scale;
    for (size_t i = 0; i < p.size(); ++i) {
      p[i] *= 1 - a * wd;
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      double mhat = m[i] / (1 - std::pow(b1, t)), vhat = v[i] / (1 - std::pow(b2, t));
      p[i] -= a * mhat / (std::sqrt(vhat) + eps);
    }
  }
};

const std::vector<std::vector<double>> kGradsW = {
    {0.5, -1.0, 2.0, 0.0, -0.25}, {0.1, 0.3, -2.0, 1.0, -0.5}, {-0.4, 0.0, 1.5, 0.2, 0.05}};
const std::vector<std::vector<double>> kGradsB = {{1.0, -0.1, 0.3}, {0.2, 0.2, -0.6}, {-1.0, 0.5, 0.0}};

}  // namespace

TEST(AdamW, MatchesScalarReferenceWithWeightDecay) {
  for (DType dt : {DType::f64, DType::f32}) {
    SCOPED_TRACE(dtype_name(dt));
    std::vector<double> w = {1.0, -2.0, 0.5, 3.0, -0.1}, b = {0.2, 0.0, -1.0};
    std::vector<nn::Parameter> ps = {param("w", w, "default", dt), param("b", b, "no_decay", dt)};
    AdamW opt(ps, 0.01, {0.9, 0.99}, 1e-8, 0.1);
    RefAdamW rw{0.01, 0.9, 0.99, 1e-8, 0.1}, rb{0.01, 0.9, 0.99, 1e-8, 0.0};  // no_decay: wd 0
    const double scales[] = {1.0, 0.5, 0.25};
    for (int s = 0; s < 3; ++s) {
      set_grad(ps[0], kGradsW[s]);
      set_grad(ps[1], kGradsB[s]);
      opt.step(scales[s]);
      rw.step(w, kGradsW[s], scales[s]);
      rb.step(b, kGradsB[s], scales[s]);
    }
    const double tol = dt == DType::f64 ? 1e-12 : 2e-6;
    auto gw = ps[0].var.data().to_double_vector(), gb = ps[1].var.data().to_double_vector();
    for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(gw[i], w[i], tol) << i;
    for (size_t i = 0; i < b.size(); ++i) EXPECT_NEAR(gb[i], b[i], tol) << i;
    EXPECT_EQ(opt.step_count(), 3);
    // The moments are exposed by name.
    auto st = opt.state_tensors();
    std::map<std::string, Tensor> m(st.begin(), st.end());
    auto ea = m.at("w.exp_avg").to_double_vector();
    auto eas = m.at("b.exp_avg_sq").to_double_vector();
    for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(ea[i], rw.m[i], tol);
    for (size_t i = 0; i < b.size(); ++i) EXPECT_NEAR(eas[i], rb.v[i], tol);
    EXPECT_EQ(m.at("w.step").item(), 3.0);
    EXPECT_EQ(m.at("step").item(), 3.0);
  }
}

TEST(Optimizer, GroupSettings) {
  std::vector<nn::Parameter> ps = {param("a", {1.0}), param("b", {1.0}, "no_decay"), param("c", {1.0}, "ssm"),
                                   param("d", {1.0}, "custom"), param("e", {2.0}, "ssm")};
  GroupOverrides g;
  g["ssm"].lr = 0.1;
  g["ssm"].weight_decay = 0.0;
  g["missing"].lr = 5.0;  // names no parameter: harmless
  SGD opt(ps, 0.01, 0.0, false, 0.5, g);
  ASSERT_EQ(opt.groups().size(), 4u);
  EXPECT_EQ(opt.groups()[0].name, "default");
  EXPECT_DOUBLE_EQ(opt.group("default").lr, 0.01);
  EXPECT_DOUBLE_EQ(opt.group("default").weight_decay, 0.5);
  EXPECT_DOUBLE_EQ(opt.group("no_decay").lr, 0.01);
  EXPECT_DOUBLE_EQ(opt.group("no_decay").weight_decay, 0.0);
  EXPECT_DOUBLE_EQ(opt.group("ssm").lr, 0.1);
  EXPECT_DOUBLE_EQ(opt.group("ssm").weight_decay, 0.0);
  EXPECT_DOUBLE_EQ(opt.group("custom").lr, 0.01);  // unknown group: base settings
  EXPECT_DOUBLE_EQ(opt.group("custom").weight_decay, 0.5);
  EXPECT_EQ(opt.group("ssm").members, (std::vector<size_t>{2, 4}));
  EXPECT_NE(bad_input([&] { opt.group("nope"); }).find("no parameter is in group 'nope'"), std::string::npos);

  // Plain SGD: p - lr_scale * lr * (g + wd p), per group.
  for (auto& p : ps) set_grad(p, {1.0});
  opt.step(0.5);
  EXPECT_DOUBLE_EQ(ps[0].var.data().item(), 1.0 - 0.005 * (1.0 + 0.5));
  EXPECT_DOUBLE_EQ(ps[1].var.data().item(), 1.0 - 0.005 * 1.0);
  EXPECT_DOUBLE_EQ(ps[2].var.data().item(), 1.0 - 0.05 * 1.0);
  EXPECT_DOUBLE_EQ(ps[3].var.data().item(), 1.0 - 0.005 * 1.5);
  EXPECT_DOUBLE_EQ(ps[4].var.data().item(), 2.0 - 0.05 * 1.0);
  EXPECT_DOUBLE_EQ(opt.last_lr_scale(), 0.5);
}

TEST(Optimizer, SkipsParametersWithoutGradients) {
  std::vector<nn::Parameter> ps = {param("a", {1.0, 2.0}), param("b", {3.0})};
  AdamW opt(ps, 0.1, {0.9, 0.999}, 1e-8, 0.0);
  set_grad(ps[0], {1.0, 1.0});
  opt.step();
  EXPECT_EQ(ps[1].var.data().item(), 3.0);  // untouched, not even decayed
  EXPECT_NEAR(ps[0].var.data().to_double_vector()[0], 0.9, 1e-9);  // Adam's first step moves by lr
  auto st = opt.state_tensors();
  std::map<std::string, Tensor> m(st.begin(), st.end());
  EXPECT_EQ(m.at("a.step").item(), 1.0);
  EXPECT_EQ(m.at("b.step").item(), 0.0);
  opt.zero_grad();
  EXPECT_FALSE(ps[0].var.has_grad());
}

TEST(SGD, MomentumAndNesterovMatchReference) {
  for (bool nesterov : {false, true}) {
    SCOPED_TRACE(nesterov ? "nesterov" : "heavy ball");
    std::vector<double> w = {1.0, -2.0, 0.5, 3.0, -0.1};
    std::vector<nn::Parameter> ps = {param("w", w)};
    SGD opt(ps, 0.1, 0.9, nesterov, 0.01);
    std::vector<double> buf(w.size(), 0.0);
    for (int s = 0; s < 3; ++s) {
      set_grad(ps[0], kGradsW[s]);
      opt.step();
      for (size_t i = 0; i < w.size(); ++i) {
        double d = kGradsW[s][i] + 0.01 * w[i];
        buf[i] = 0.9 * buf[i] + d;
        w[i] -= 0.1 * (nesterov ? d + 0.9 * buf[i] : buf[i]);
      }
    }
    auto got = ps[0].var.data().to_double_vector();
    for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(got[i], w[i], 1e-12);
    auto st = opt.state_tensors();
    EXPECT_EQ(st[1].first, "w.momentum_buffer");
  }
}

TEST(Optimizer, StateRoundTripAndExactChecks) {
  std::vector<double> w0 = {1.0, -2.0, 0.5, 3.0, -0.1}, b0 = {0.2, 0.0, -1.0};
  std::vector<nn::Parameter> ps = {param("w", w0), param("b", b0, "no_decay")};
  AdamW a(ps, 0.01, {0.9, 0.99}, 1e-8, 0.1);
  for (int s = 0; s < 2; ++s) {
    set_grad(ps[0], kGradsW[s]);
    set_grad(ps[1], kGradsB[s]);
    a.step();
  }
  std::vector<std::pair<std::string, Tensor>> saved;
  for (auto& [n, t] : a.state_tensors()) saved.emplace_back(n, t.clone());
  EXPECT_EQ(saved.size(), 7u);  // step + 3 per parameter

  // A fresh optimizer over copies of the parameters, loaded from the saved state, takes the same step.
  std::vector<nn::Parameter> qs = {{"w", Variable(ps[0].var.data().clone(), true), "default"},
                                   {"b", Variable(ps[1].var.data().clone(), true), "no_decay"}};
  AdamW b(qs, 0.01, {0.9, 0.99}, 1e-8, 0.1);
  b.load_state_tensors(saved, "run/checkpoints/step-2/optimizer.safetensors");
  EXPECT_EQ(b.step_count(), 2);
  set_grad(ps[0], kGradsW[2]);
  set_grad(ps[1], kGradsB[2]);
  set_grad(qs[0], kGradsW[2]);
  set_grad(qs[1], kGradsB[2]);
  a.step();
  b.step();
  EXPECT_EQ(qs[0].var.data().to_double_vector(), ps[0].var.data().to_double_vector());
  EXPECT_EQ(qs[1].var.data().to_double_vector(), ps[1].var.data().to_double_vector());

  // Exact checks, with the file and the tensor named.
  auto with = [&](const std::string& name, Tensor t) {
    auto s = saved;
    for (auto& [n, x] : s)
      if (n == name) x = t;
    return s;
  };
  std::string e = bad_input([&] { b.load_state_tensors(with("w.exp_avg", Tensor::zeros({4}, DType::f64)), "opt.st"); });
  EXPECT_NE(e.find("opt.st"), std::string::npos) << e;
  EXPECT_NE(e.find("tensor 'w.exp_avg' has shape [4], expected [5]"), std::string::npos) << e;
  e = bad_input([&] { b.load_state_tensors(with("w.exp_avg", Tensor::zeros({5}, DType::f32))); });
  EXPECT_NE(e.find("tensor 'w.exp_avg' has dtype f32, expected f64"), std::string::npos) << e;
  auto missing = saved;
  missing.pop_back();
  e = bad_input([&] { b.load_state_tensors(missing); });
  EXPECT_NE(e.find("missing tensor '"), std::string::npos) << e;
  auto extra = saved;
  extra.emplace_back("v.exp_avg", Tensor::zeros({5}, DType::f64));
  e = bad_input([&] { b.load_state_tensors(extra); });
  EXPECT_NE(e.find("unexpected tensor 'v.exp_avg'"), std::string::npos) << e;
  // A failed load leaves the state as it was.
  EXPECT_EQ(b.step_count(), 3);
}

TEST(Optimizer, BadSettings) {
  std::vector<nn::Parameter> ps = {param("w", {1.0})};
  EXPECT_NE(bad_input([&] { AdamW(ps, -1.0); }).find("lr must be >= 0"), std::string::npos);
  EXPECT_NE(bad_input([&] { AdamW(ps, 0.1, {1.0, 0.9}); }).find("betas must be in [0, 1)"), std::string::npos);
  EXPECT_NE(bad_input([&] { SGD(ps, 0.1, 0.0, true); }).find("nesterov needs momentum"), std::string::npos);
  std::vector<nn::Parameter> twice = {ps[0], ps[0]};
  EXPECT_NE(bad_input([&] { SGD s(twice, 0.1); }).find("listed twice"), std::string::npos);
  GroupOverrides g;
  g["default"].weight_decay = -1.0;
  EXPECT_NE(bad_input([&] { SGD(ps, 0.1, 0.0, false, 0.0, g); }).find("group 'default': weight_decay must be >= 0"),
            std::string::npos);
}

TEST(Optimizer, FromRecipe) {
  Config c = Config::from_string(
      "optimizer:\n"
      "  name: adamw\n"
      "  lr: 0.003\n"
      "  betas: [0.9, 0.95]\n"
      "  weight_decay: 0.05\n"
      "  groups:\n"
      "    ssm: {lr: 0.001, weight_decay: 0.0}\n",
      "r.yaml");
  std::vector<nn::Parameter> ps = {param("w", {1.0}), param("A", {1.0}, "ssm")};
  auto opt = make_optimizer(c.sub("optimizer"), ps);
  EXPECT_EQ(opt->name(), "adamw");
  auto* adam = dynamic_cast<AdamW*>(opt.get());
  ASSERT_NE(adam, nullptr);
  EXPECT_DOUBLE_EQ(adam->beta2(), 0.95);
  EXPECT_DOUBLE_EQ(opt->group("default").lr, 0.003);
  EXPECT_DOUBLE_EQ(opt->group("default").weight_decay, 0.05);
  EXPECT_DOUBLE_EQ(opt->group("ssm").lr, 0.001);
  EXPECT_DOUBLE_EQ(opt->group("ssm").weight_decay, 0.0);

  Config bad = Config::from_string("optimizer:\n  name: adamw\n  lr: 0.1\n  groups:\n    ssm: {lr: 1, wd: 0}\n", "r.yaml");
  std::string e = bad_input([&] { make_optimizer(bad.sub("optimizer"), ps); });
  EXPECT_NE(e.find("r.yaml:5: unknown key 'optimizer.groups.ssm.wd'"), std::string::npos) << e;
  Config sgd = Config::from_string("name: sgd\nlr: 0.1\nmomentum: 0.9\nnesterov: true\n", "s.yaml");
  EXPECT_EQ(make_optimizer(sgd, ps)->name(), "sgd");
  Config wrong = Config::from_string("name: sgd\nlr: 0.1\nbetas: [0.9, 0.9]\n", "s.yaml");
  EXPECT_NE(bad_input([&] { make_optimizer(wrong, ps); }).find("betas is an AdamW setting"), std::string::npos);
  Config unk = Config::from_string("name: lion\nlr: 0.1\n", "s.yaml");
  EXPECT_NE(bad_input([&] { make_optimizer(unk, ps); }).find("unknown optimizer 'lion'"), std::string::npos);
}

TEST(ClipGradNorm, ScalesWhenOverTheLimit) {
  std::vector<nn::Parameter> ps = {param("a", {0.0, 0.0}), param("b", {0.0}), param("c", {0.0})};
  set_grad(ps[0], {3.0, 4.0});
  set_grad(ps[1], {12.0});  // c has no gradient
  double n = clip_grad_norm(ps, 100.0);
  EXPECT_DOUBLE_EQ(n, 13.0);
  EXPECT_EQ(ps[0].var.grad().to_double_vector(), (std::vector<double>{3.0, 4.0}));  // under: untouched
  n = clip_grad_norm(ps, 6.5);
  EXPECT_DOUBLE_EQ(n, 13.0);
  const double s = 6.5 / (13.0 + 1e-6);
  auto ga = ps[0].var.grad().to_double_vector();
  EXPECT_NEAR(ga[0], 3.0 * s, 1e-15);
  EXPECT_NEAR(ga[1], 4.0 * s, 1e-15);
  EXPECT_NEAR(ps[1].var.grad().item(), 12.0 * s, 1e-15);
  EXPECT_NEAR(clip_grad_norm(ps, 100.0), 6.5, 1e-6);  // the new norm
  EXPECT_FALSE(ps[2].var.has_grad());
  EXPECT_NE(bad_input([&] { clip_grad_norm(ps, 0.0); }).find("max_norm must be > 0"), std::string::npos);
}
