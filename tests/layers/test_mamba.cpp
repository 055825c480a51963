// Mamba block and Mamba LM: parameter names / shapes / groups, initialisation, float64 gradchecks,
// packed sequences (seq_idx) against separate forwards, the recurrent step() and prefill() against the
// parallel forward, tied / untied heads, presets and parameter counts, the registry and its errors.
#include <cmath>
#include <set>

#include "helpers.h"
#include "layers/mamba/mamba_block.h"
#include "layers/models/mamba_lm.h"
#include "layers/registry.h"

namespace ssm::nn {
namespace {

using testing::bad_input_message;
using testing::max_abs_diff;
using testing::module_gradcheck;

MambaOptions tiny_opts(int64_t N = 3) {
  MambaOptions o;
  o.d_state = N;
  return o;
}

MambaLMConfig tiny_lm(const std::string& norm = "rms", bool tied = true) {
  MambaLMConfig c;
  c.d_model = 8;
  c.n_layer = 2;
  c.vocab_size = 13;  // padded to 16
  c.d_state = 4;
  c.norm = norm;
  c.tied = tied;
  return c;
}

Tensor randn(const Shape& s, uint64_t seed, DType dt = DType::f64) {
  Generator g{seed, 0};
  return g.normal(s, dt);
}

Tensor tokens_of(const std::vector<int64_t>& v, const Shape& s) { return Tensor::from_vector(v, s); }

std::map<std::string, Tensor> params_of(const Module& m) { return testing::as_map(m.state_dict()); }

double max_rel_diff(const Tensor& a, const Tensor& b) {
  auto x = a.to_double_vector(), y = b.to_double_vector();
  double scale = 0, m = 0;
  for (double v : y) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m / std::max(scale, 1e-30);
}

TEST(MambaBlock, NamesShapesGroups) {
  Generator g{1, 0};
  MambaBlock blk(20, tiny_opts(16), g);  // Di = 40, dt_rank = ceil(20 / 16) = 2
  EXPECT_EQ(blk.d_inner(), 40);
  EXPECT_EQ(blk.dt_rank(), 2);
  std::map<std::string, Shape> want = {{"in_proj.weight", {80, 20}}, {"conv1d.weight", {40, 4}},
                                       {"conv1d.bias", {40}},        {"x_proj.weight", {2 + 32, 40}},
                                       {"dt_proj.weight", {40, 2}},  {"dt_proj.bias", {40}},
                                       {"A_log", {40, 16}},          {"D", {40}},
                                       {"out_proj.weight", {20, 40}}};
  auto params = blk.named_parameters();
  ASSERT_EQ(params.size(), want.size());
  const std::set<std::string> no_decay = {"A_log", "D", "dt_proj.bias", "conv1d.bias"};
  for (auto& p : params) {
    ASSERT_TRUE(want.count(p.name)) << p.name;
    EXPECT_EQ(shape_str(p.var.shape()), shape_str(want[p.name])) << p.name;
    EXPECT_EQ(p.group, no_decay.count(p.name) ? "no_decay" : "default") << p.name;
    EXPECT_EQ(p.var.dtype(), DType::f32);
  }
  MambaOptions o = tiny_opts();
  o.dt_rank = 5;
  o.expand = 3;
  o.d_conv = 2;
  MambaBlock b2(4, o, g);
  EXPECT_EQ(params_of(b2)["dt_proj.weight"].shape(), Shape({12, 5}));
  EXPECT_EQ(params_of(b2)["conv1d.weight"].shape(), Shape({12, 2}));
  o.d_conv = 5;
  auto msg = bad_input_message([&] { MambaBlock(4, o, g); });
  EXPECT_NE(msg.find("d_conv"), std::string::npos) << msg;
}

TEST(MambaBlock, Initialisation) {
  Generator g{2, 0};
  MambaOptions o;  // d_state 16, dt in [1e-3, 1e-1], floor 1e-4
  MambaBlock blk(64, o, g);  // Di 128, R 4
  auto p = params_of(blk);
  auto A_log = p["A_log"].to_double_vector();
  for (int64_t d = 0; d < 128; ++d)
    for (int64_t n = 0; n < 16; ++n) ASSERT_NEAR(A_log[size_t(d * 16 + n)], std::log(n + 1.0), 1e-6);
  for (double v : p["D"].to_double_vector()) ASSERT_EQ(v, 1.0);
  // softplus(dt_proj.bias) = dt in [dt_min, dt_max], log-uniformly spread.
  double lo = 1e9, hi = -1e9;
  for (double b : p["dt_proj.bias"].to_double_vector()) {
    const double dt = std::log1p(std::exp(b));
    EXPECT_GE(dt, 1e-3 * (1 - 1e-4));
    EXPECT_LE(dt, 1e-1 * (1 + 1e-4));
    lo = std::min(lo, std::log(dt)), hi = std::max(hi, std::log(dt));
  }
  EXPECT_LT(lo, std::log(1e-3) + 0.5);
  EXPECT_GT(hi, std::log(1e-1) - 0.5);
  auto within = [](const Tensor& t, double bound) {
    double m = 0;
    for (double v : t.to_double_vector()) m = std::max(m, std::abs(v));
    return m <= bound && m > 0.8 * bound;
  };
  EXPECT_TRUE(within(p["conv1d.weight"], 0.5));  // 1/sqrt(d_conv)
  EXPECT_TRUE(within(p["conv1d.bias"], 0.5));
  EXPECT_TRUE(within(p["dt_proj.weight"], 0.5));  // dt_rank^-1/2
  EXPECT_TRUE(within(p["in_proj.weight"], 1 / 8.0));
  EXPECT_TRUE(within(p["out_proj.weight"], 1 / std::sqrt(128.0)));

  // The floor: dt_min 1e-5, dt_max 1e-3, floor 1e-4 -> every dt >= 1e-4, some exactly at it.
  o.dt_min = 1e-5, o.dt_max = 1e-3, o.dt_init_floor = 1e-4;
  MambaBlock fl(64, o, g);
  int at_floor = 0;
  for (double b : params_of(fl)["dt_proj.bias"].to_double_vector()) {
    const double dt = std::log1p(std::exp(b));
    EXPECT_GE(dt, 1e-4 * (1 - 1e-3));
    at_floor += std::abs(dt - 1e-4) < 1e-7;
  }
  EXPECT_GT(at_floor, 10);
}

TEST(MambaBlock, Gradcheck) {
  Generator g{3, 0};
  MambaBlock blk(4, tiny_opts(3), g);  // Bt 2, L 5, d_model 4, N 3: Di 8, R 1
  // Larger dt than the default init so the recurrence matters over 5 steps.
  blk.to(DType::f64);
  for (auto& p : blk.named_parameters())
    if (p.name == "dt_proj.bias") p.var.data().fill_(0.3);
  const Tensor x = randn({2, 5, 4}, 4);
  EXPECT_EQ(module_gradcheck(blk, x), "");
  // With packed documents too.
  const Tensor seq = Tensor::from_vector(std::vector<int32_t>{0, 0, 1, 1, 1, 0, 0, 0, 0, 2}, {2, 5});
  EXPECT_EQ(module_gradcheck(blk, x, [&](Module& m, const Variable& v) {
              return static_cast<MambaBlock&>(m).forward(v, seq);
            }),
            "");
}

TEST(MambaBlock, PackedSequencesEqualSeparateForwards) {
  Generator g{5, 0};
  MambaBlock blk(6, tiny_opts(4), g);
  blk.to(DType::f64);
  const Tensor a = randn({1, 3, 6}, 6), b = randn({1, 5, 6}, 7);
  const Tensor packed = cat({a, b}, 1);
  const Tensor seq = Tensor::from_vector(std::vector<int64_t>{3, 3, 3, 8, 8, 8, 8, 8}, {1, 8});
  Tensor y = blk.forward(Variable(packed), seq).data();
  Tensor ya = blk.forward(Variable(a)).data(), yb = blk.forward(Variable(b)).data();
  EXPECT_LT(max_abs_diff(y.narrow(1, 0, 3), ya), 1e-12);
  EXPECT_LT(max_abs_diff(y.narrow(1, 3, 5), yb), 1e-12);
  // Without seq_idx the second document sees the first.
  EXPECT_GT(max_abs_diff(blk.forward(Variable(packed)).data().narrow(1, 3, 5), yb), 1e-6);

  // Prefill of the packed row keeps the last document's states: continuing with step() equals
  // continuing the second document alone.
  MambaBlockState st = blk.initial_state(1), st_b = blk.initial_state(1);
  blk.forward(Variable(packed), seq, st);
  blk.forward(Variable(b), Tensor(), st_b);
  EXPECT_LT(max_abs_diff(st.conv, st_b.conv), 1e-12);
  EXPECT_LT(max_abs_diff(st.ssm, st_b.ssm), 1e-12);
}

TEST(MambaBlock, StepEqualsForward) {
  Generator g{8, 0};
  MambaBlock blk(5, tiny_opts(4), g);
  blk.to(DType::f64);
  for (auto& p : blk.named_parameters())
    if (p.name == "dt_proj.bias") p.var.data().fill_(0.5);
  const int64_t L = 9;
  const Tensor x = randn({3, L, 5}, 9);
  Tensor y = blk.forward(Variable(x)).data();
  MambaBlockState st = blk.initial_state(3);
  for (int64_t t = 0; t < L; ++t) {
    Tensor yt = blk.step(x.select(1, t).contiguous(), st);
    EXPECT_LT(max_abs_diff(yt, y.select(1, t)), 1e-12) << "t=" << t;
  }
  // The states after the prefill equal those after stepping.
  MambaBlockState pf;
  blk.forward(Variable(x), Tensor(), pf);
  EXPECT_LT(max_abs_diff(pf.conv, st.conv), 1e-12);
  EXPECT_LT(max_abs_diff(pf.ssm, st.ssm), 1e-12);
  // Short prefill (L < d_conv - 1) then more: the conv state mixes x_init and x.
  MambaBlockState s2;
  blk.forward(Variable(x.narrow(1, 0, 2)), Tensor(), s2);
  Tensor y2 = blk.forward(Variable(x.narrow(1, 2, 4)), Tensor(), s2).data();
  EXPECT_LT(max_abs_diff(y2, y.narrow(1, 2, 4)), 1e-12);
}

TEST(MambaLM, StateDictNamesMatchMambaSsm) {
  Generator g{10, 0};
  MambaLM lm(tiny_lm(), g);
  EXPECT_EQ(lm.config().vocab_padded, 16);
  EXPECT_EQ(lm.config().dt_rank, 1);
  auto sd = params_of(lm);
  std::set<std::string> names;
  for (auto& [n, t] : sd) names.insert(n);
  std::set<std::string> want = {"backbone.embedding.weight", "backbone.norm_f.weight"};
  for (int i = 0; i < 2; ++i) {
    const std::string p = "backbone.layers." + std::to_string(i) + ".";
    for (const char* s : {"mixer.in_proj.weight", "mixer.conv1d.weight", "mixer.conv1d.bias", "mixer.x_proj.weight",
                          "mixer.dt_proj.weight", "mixer.dt_proj.bias", "mixer.A_log", "mixer.D",
                          "mixer.out_proj.weight", "norm.weight"})
      want.insert(p + s);
  }
  EXPECT_EQ(names, want);
  EXPECT_EQ(sd["backbone.embedding.weight"].shape(), Shape({16, 8}));
  EXPECT_EQ(sd["backbone.layers.1.mixer.in_proj.weight"].shape(), Shape({32, 8}));

  Generator g2{10, 0};
  MambaLM ln(tiny_lm("layer", false), g2);
  auto sd2 = params_of(ln);
  for (const char* s : {"backbone.layers.0.norm.bias", "backbone.norm_f.bias", "lm_head.weight"})
    EXPECT_TRUE(sd2.count(s)) << s;
  EXPECT_EQ(sd2["lm_head.weight"].shape(), Shape({16, 8}));
  EXPECT_EQ(sd2.size(), sd.size() + 4);  // 2 layer-norm biases, norm_f bias, lm_head
}

TEST(MambaLM, InitStatistics) {
  Generator g{11, 0};
  MambaLMConfig c = tiny_lm();
  c.d_model = 32, c.n_layer = 4, c.vocab_size = 500;
  MambaLM lm(c, g);
  auto sd = params_of(lm);
  auto e = sd["backbone.embedding.weight"].to_double_vector();
  double mean = 0, var = 0;
  for (double v : e) mean += v / e.size();
  for (double v : e) var += (v - mean) * (v - mean) / e.size();
  EXPECT_NEAR(mean, 0.0, 0.002);
  EXPECT_NEAR(std::sqrt(var), 0.02, 0.001);
  // out_proj: U(+-1/sqrt(Di)) / sqrt(n_layer).
  double m = 0;
  for (double v : sd["backbone.layers.2.mixer.out_proj.weight"].to_double_vector()) m = std::max(m, std::abs(v));
  const double bound = 1 / std::sqrt(64.0) / 2.0;
  EXPECT_LE(m, bound * (1 + 1e-6));
  EXPECT_GT(m, 0.9 * bound);
  for (double v : sd["backbone.norm_f.weight"].to_double_vector()) EXPECT_EQ(v, 1.0);
}

TEST(MambaLM, LogitsShapeAndTiedHead) {
  Generator g{12, 0};
  MambaLM lm(tiny_lm(), g);
  const Tensor tok = tokens_of({1, 2, 3, 12, 0, 5, 7, 9}, {2, 4});
  Variable logits = lm.forward(tok);
  EXPECT_EQ(logits.shape(), Shape({2, 4, 13}));  // the real vocabulary, not V_pad
  // Gradients reach every parameter; the pad rows of the tied embedding get none from the head.
  ag::sum(logits).backward();
  for (auto& p : lm.named_parameters()) EXPECT_TRUE(p.var.has_grad()) << p.name;

  // Untied with the same seed: every other parameter is drawn identically (lm_head is drawn last);
  // copying the embedding into lm_head gives the tied model's logits.
  Generator g2{12, 0};
  MambaLM un(tiny_lm("rms", false), g2);
  EXPECT_EQ(un.num_parameters(), lm.num_parameters() + 16 * 8);
  auto sd = params_of(un);
  sd["lm_head.weight"].copy_(sd["backbone.embedding.weight"]);
  EXPECT_LT(max_abs_diff(un.forward(tok).data(), lm.forward(tok).data()), 1e-6);
  sd["lm_head.weight"].fill_(0.0);
  EXPECT_LT(max_abs_diff(un.forward(tok).data(), Tensor::zeros({2, 4, 13})), 1e-12);
}

TEST(MambaLM, PackedSequences) {
  Generator g{13, 0};
  MambaLM lm(tiny_lm(), g);
  lm.to(DType::f64);
  const Tensor packed = tokens_of({4, 1, 7, 7, 2, 9, 3}, {1, 7});
  const Tensor seq = Tensor::from_vector(std::vector<int32_t>{0, 0, 0, 1, 1, 1, 1}, {1, 7});
  Tensor y = lm.forward(packed, seq).data();
  Tensor ya = lm.forward(tokens_of({4, 1, 7}, {1, 3})).data(), yb = lm.forward(tokens_of({7, 2, 9, 3}, {1, 4})).data();
  EXPECT_LT(max_abs_diff(y.narrow(1, 0, 3), ya), 1e-12);
  EXPECT_LT(max_abs_diff(y.narrow(1, 3, 4), yb), 1e-12);
}

void check_recurrent_matches_parallel(MambaLM& lm, double tol) {
  const int64_t Bt = 2, L = 7;
  const Tensor tok = tokens_of({1, 5, 2, 12, 0, 3, 3, 8, 8, 1, 4, 11, 6, 2}, {Bt, L});
  const Tensor full = lm.forward(tok).data();  // (Bt, L, V)
  // step() from an empty cache, one token at a time.
  MambaCache cache = lm.new_cache(Bt);
  for (int64_t t = 0; t < L; ++t) {
    Tensor lt = lm.step(tok.select(1, t).contiguous(), cache);
    ASSERT_EQ(lt.shape(), Shape({Bt, 13}));
    EXPECT_LT(max_rel_diff(lt, full.select(1, t)), tol) << "step t=" << t;
  }
  // prefill(first 4) then step the rest.
  MambaCache c2 = lm.new_cache(Bt);
  Tensor lp = lm.prefill(tok.narrow(1, 0, 4).contiguous(), c2);
  EXPECT_LT(max_rel_diff(lp, full.select(1, 3)), tol);
  for (int64_t t = 4; t < L; ++t)
    EXPECT_LT(max_rel_diff(lm.step(tok.select(1, t).contiguous(), c2), full.select(1, t)), tol) << "t=" << t;
  // Chunked prefill: prefill(2) then prefill(5) equals the whole.
  MambaCache c3 = lm.new_cache(Bt);
  lm.prefill(tok.narrow(1, 0, 2).contiguous(), c3);
  EXPECT_LT(max_rel_diff(lm.prefill(tok.narrow(1, 2, 5).contiguous(), c3), full.select(1, L - 1)), tol);
}

TEST(MambaLM, RecurrentStepAndPrefillMatchParallelF64) {
  Generator g{14, 0};
  MambaLM lm(tiny_lm(), g);
  lm.to(DType::f64);
  for (auto& p : lm.named_parameters())  // larger dt: the recurrence matters over 7 tokens
    if (p.name.find("dt_proj.bias") != std::string::npos) p.var.data().fill_(0.4);
  check_recurrent_matches_parallel(lm, 1e-10);
}

TEST(MambaLM, RecurrentStepMatchesParallelF32LayerNorm) {
  Generator g{15, 0};
  MambaLM lm(tiny_lm("layer", false), g);
  check_recurrent_matches_parallel(lm, 1e-5);
}

// The training loss runs its GEMMs over the padded rows (13 -> 16) with the padding columns at -inf: the
// same value as the cross-entropy of the real-vocabulary logits. A target in the padding is refused.
TEST(MambaLM, LossEqualsCrossEntropyOfLogitsAndRefusesPaddingTargets) {
  Generator g{21, 0};
  MambaLM lm(tiny_lm(), g);
  const Tensor tok = tokens_of({1, 2, 3, 12, 0, 5, 7, 9}, {2, 4});
  const Tensor tgt = tokens_of({2, 3, 12, 0, 5, 7, 9, 11}, {2, 4});
  const double loss = lm.loss(tok, Tensor(), tgt).data().item();
  const Tensor logits = lm.forward(tok).data().reshape({8, 13});
  EXPECT_NEAR(loss, cross_entropy(logits, tgt.reshape({8})).item(), 1e-5);
  auto msg = bad_input_message([&] { lm.loss(tok, Tensor(), tokens_of({2, 3, 12, 14, 5, 7, 9, 11}, {2, 4})); });
  EXPECT_NE(msg.find("target 14 at position 3 is a padding row"), std::string::npos) << msg;
}

TEST(MambaLM, LanguageModelInterface) {
  Generator g{19, 0};
  MambaLM lm(tiny_lm(), g);
  LanguageModel& base = lm;
  EXPECT_EQ(base.vocab_size(), 13);
  EXPECT_EQ(base.padded_vocab_size(), 13);  // the logits' last dim: pad columns are not produced
  const Tensor tok = tokens_of({3, 1, 4, 1, 5}, {1, 5});
  const Tensor full = base.logits(tok, Tensor()).data();
  EXPECT_EQ(full.shape(), Shape({1, 5, 13}));
  auto st = base.new_state(1);
  EXPECT_LT(max_rel_diff(base.prefill(tok.narrow(1, 0, 3).contiguous(), *st), full.select(1, 2)), 1e-5);
  EXPECT_LT(max_rel_diff(base.step(tokens_of({1}, {1}), *st), full.select(1, 3)), 1e-5);
  struct Other : RecurrentState {};
  Other other;
  auto msg = bad_input_message([&] { base.step(tokens_of({1}, {1}), other); });
  EXPECT_NE(msg.find("MambaCache"), std::string::npos) << msg;
}

TEST(MambaLM, CacheErrors) {
  Generator g{16, 0};
  MambaLM lm(tiny_lm(), g);
  MambaCache c = lm.new_cache(2);
  auto msg = bad_input_message([&] { lm.step(tokens_of({1, 2, 3}, {3}), c); });
  EXPECT_NE(msg.find("new_cache(3)"), std::string::npos) << msg;
  msg = bad_input_message([&] { lm.forward(tokens_of({1, 2, 3}, {3})); });
  EXPECT_NE(msg.find("(Bt, L)"), std::string::npos) << msg;
}

TEST(MambaLM, ParameterCountFormulaAndPresets) {
  for (const char* norm : {"rms", "layer"})
    for (bool tied : {true, false}) {
      Generator g{17, 0};
      MambaLMConfig c = tiny_lm(norm, tied);
      c.expand = 3, c.dt_rank = 3, c.d_conv = 3;
      MambaLM lm(c, g);
      EXPECT_EQ(lm.num_parameters(), mamba_lm_num_parameters(c)) << norm << " tied=" << tied;
    }
  // mamba-130m: d_model 768, 24 layers, vocab 50277 -> 50280, tied: 129,135,360 parameters.
  ModelConfig mc;
  mc.set("preset", "130m");
  ModelConfig full = resolve_model_config("mamba_lm", mc);
  MambaLMConfig c = mamba_lm_config_from(full);
  EXPECT_EQ(c.d_model, 768);
  EXPECT_EQ(c.n_layer, 24);
  EXPECT_EQ(c.vocab_padded, 50280);
  EXPECT_EQ(c.dt_rank, 48);
  EXPECT_EQ(mamba_lm_num_parameters(c), 129135360);
  struct P {
    const char* name;
    int64_t d, n;
  };
  for (P p : {P{"370m", 1024, 48}, P{"790m", 1536, 48}, P{"1.4b", 2048, 48}, P{"2.8b", 2560, 64}}) {
    ModelConfig m;
    m.set("preset", p.name);
    MambaLMConfig r = mamba_lm_config_from(resolve_model_config("mamba_lm", m));
    EXPECT_EQ(r.d_model, p.d);
    EXPECT_EQ(r.n_layer, p.n);
  }
  // Explicit keys win over the preset.
  mc.set("n_layer", 2);
  EXPECT_EQ(mamba_lm_config_from(resolve_model_config("mamba_lm", mc)).n_layer, 2);
  EXPECT_EQ(mamba_lm_config_from(resolve_model_config("mamba_lm", mc)).d_model, 768);
}

TEST(MambaLM, RegistryBuildAndErrors) {
  EXPECT_EQ(model_spec("mamba_lm").task, "lm");
  ModelConfig mc;
  mc.set("d_model", 8);
  mc.set("n_layer", 1);
  mc.set("vocab_size", 10);
  mc.set("norm", "layer");
  mc.set("tied", false);
  Generator g{18, 0};
  auto m = build_model("mamba_lm", mc, g);
  auto* lm = dynamic_cast<MambaLM*>(m.get());
  ASSERT_NE(lm, nullptr);
  EXPECT_EQ(lm->config().vocab_padded, 16);
  EXPECT_FALSE(lm->config().tied);
  EXPECT_EQ(lm->forward(tokens_of({1, 2, 9}, {1, 3})).shape(), Shape({1, 3, 10}));

  auto expect_key = [&](const std::string& key, const std::string& value, const std::string& want) {
    ModelConfig bad = mc;
    bad.set(key, value);
    auto msg = bad_input_message([&] { build_model("mamba_lm", bad, g); });
    EXPECT_NE(msg.find(want), std::string::npos) << msg;
  };
  expect_key("norm", "foo", "model.norm");
  expect_key("d_conv", "7", "model.d_conv");
  expect_key("preset", "7b", "model.preset");
  expect_key("d_state", "0", "model.d_state");
  expect_key("dt_min", "0.5", "model.dt_min");
  expect_key("d_model", "auto", "model.d_model");  // no preset: required
  expect_key("dt_rank", "x", "model.dt_rank");
}

}  // namespace
}  // namespace ssm::nn
