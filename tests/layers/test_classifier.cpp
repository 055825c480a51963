// S4Classifier and the model registry.
#include "helpers.h"
#include "layers/models/s4_classifier.h"
#include "layers/registry.h"

namespace ssm::nn {
namespace {

using testing::bad_input_message;

S4ClassifierOptions tiny(bool bidir = false, const std::string& pool = "mean", bool prenorm = true) {
  S4ClassifierOptions o;
  o.d_input = 2;
  o.d_model = 3;
  o.n_layers = 1;
  o.n_classes = 3;
  o.pool = pool;
  o.prenorm = prenorm;
  o.s4d.d_state = 4;
  o.s4d.bidirectional = bidir;
  return o;
}

TEST(S4Classifier, NamesShapesAndGroups) {
  Generator g{1, 0};
  S4ClassifierOptions o = tiny();
  o.n_layers = 2;
  S4Classifier model(o, g);
  std::vector<std::string> expect = {"encoder.weight", "encoder.bias"};
  for (std::string l : {"layers.0.", "layers.1."})
    for (std::string n : {"norm.weight", "norm.bias", "mixer.log_dt", "mixer.log_A_real", "mixer.A_imag", "mixer.C",
                          "mixer.D", "mixer.output_linear.weight", "mixer.output_linear.bias"})
      expect.push_back(l + n);
  for (std::string n : {"norm.weight", "norm.bias", "decoder.weight", "decoder.bias"}) expect.push_back(n);
  EXPECT_EQ(testing::param_names(model), expect);
  Tensor x = g.normal({4, 6, 2});
  EXPECT_EQ(model.forward(Variable(x)).shape(), Shape({4, 3}));
  auto msg = bad_input_message([&] { model.forward(Variable(g.normal({4, 6, 5}))); });
  EXPECT_NE(msg.find("[4, 6, 5]"), std::string::npos) << msg;
  int ssm_params = 0;
  for (auto& [group, ps] : model.parameter_groups())
    if (group == "ssm") {
      ssm_params = int(ps.size());
      for (auto& p : ps) EXPECT_NE(p.name.find(".mixer."), std::string::npos);
    }
  EXPECT_EQ(ssm_params, 6);
}

TEST(S4Classifier, Gradcheck) {
  Generator g{2, 0};
  S4Classifier model(tiny(), g);
  EXPECT_EQ(testing::module_gradcheck(model, g.normal({2, 5, 2}, DType::f64)), "");
}

TEST(S4Classifier, GradcheckBidirectionalLastPoolPostNorm) {
  Generator g{3, 0};
  S4Classifier model(tiny(true, "last", false), g);
  EXPECT_EQ(testing::module_gradcheck(model, g.normal({2, 4, 2}, DType::f64)), "");
}

TEST(S4Classifier, TrainsAStep) {
  // One backward through the whole model reaches every parameter.
  Generator g{4, 0};
  S4Classifier model(tiny(), g);
  Variable logits = model.forward(Variable(g.normal({3, 8, 2})));
  ag::cross_entropy(logits, Tensor::from_vector(std::vector<int64_t>{0, 2, 1}, {3})).backward();
  for (auto& p : model.named_parameters()) {
    ASSERT_TRUE(p.var.has_grad()) << p.name;
    EXPECT_GT(norm2(p.var.grad()), 0.0) << p.name;
  }
}

TEST(Registry, BuildsWithDefaults) {
  Generator g{5, 0};
  ModelConfig cfg;
  cfg.set("d_input", int64_t(1));
  cfg.set("n_classes", 10);
  auto model = build_model("s4d_classifier", cfg, g);
  auto sd = model->state_dict();
  std::map<std::string, Shape> shapes;
  for (auto& [n, t] : sd) shapes[n] = t.shape();
  EXPECT_EQ(shapes["layers.3.mixer.C"], Shape({64, 32, 2}));  // d_model 64, d_state 64, 4 layers
  EXPECT_EQ(shapes.count("layers.4.mixer.C"), 0u);
  EXPECT_EQ(shapes["decoder.weight"], Shape({10, 64}));
  auto* clf = dynamic_cast<S4Classifier*>(model.get());
  ASSERT_NE(clf, nullptr);
  EXPECT_EQ(clf->options().pool, "mean");
  EXPECT_TRUE(clf->options().prenorm);
  EXPECT_FALSE(clf->options().s4d.bidirectional);
  EXPECT_EQ(clf->options().s4d.init, "inv");
  EXPECT_EQ(clf->options().dropout, 0.0);

  EXPECT_EQ(model_spec("s4d_classifier").task, "classifier");
  ModelConfig resolved = resolve_model_config("s4d_classifier", cfg);
  EXPECT_EQ(resolved.get_string("pool"), "mean");
  EXPECT_EQ(resolved.get_int("d_model"), 64);
  EXPECT_EQ(resolved.get_double("dt_max"), 0.1);
}

TEST(Registry, OverridesFromStrings) {
  Generator g{6, 0};
  ModelConfig cfg;
  cfg.set("name", "s4d_classifier");  // reserved, ignored
  cfg.set("d_input", "3");
  cfg.set("n_classes", "4");
  cfg.set("d_model", "8");
  cfg.set("n_layers", "1");
  cfg.set("d_state", "1e1");
  cfg.set("bidirectional", "True");
  cfg.set("pool", "last");
  cfg.set("init", "lin");
  cfg.set("dropout", 0.25);
  auto model = build_model("s4d_classifier", cfg, g);
  auto& o = dynamic_cast<S4Classifier&>(*model).options();
  EXPECT_EQ(o.d_model, 8);
  EXPECT_EQ(o.s4d.d_state, 10);
  EXPECT_TRUE(o.s4d.bidirectional);
  EXPECT_EQ(o.pool, "last");
  EXPECT_EQ(o.dropout, 0.25);
  EXPECT_EQ(model->forward(Variable(g.normal({2, 5, 3}))).shape(), Shape({2, 4}));
}

TEST(Registry, ErrorsNameTheKey) {
  Generator g{7, 0};
  auto base = [] {
    ModelConfig c;
    c.set("d_input", 1);
    c.set("n_classes", 2);
    return c;
  };
  ModelConfig c1 = base();
  c1.set("d_model", "abc");
  EXPECT_EQ(bad_input_message([&] { build_model("s4d_classifier", c1, g); }),
            "model.d_model: expected an integer, got 'abc'");
  ModelConfig c2 = base();
  c2.set("d_modle", 32);
  auto msg = bad_input_message([&] { build_model("s4d_classifier", c2, g); });
  EXPECT_NE(msg.find("model.d_modle: unknown key"), std::string::npos) << msg;
  EXPECT_NE(msg.find("d_model"), std::string::npos) << msg;
  ModelConfig c3;
  c3.set("n_classes", 2);
  msg = bad_input_message([&] { build_model("s4d_classifier", c3, g); });
  EXPECT_NE(msg.find("model.d_input: required key missing"), std::string::npos) << msg;
  ModelConfig c4 = base();
  c4.set("prenorm", "maybe");
  EXPECT_EQ(bad_input_message([&] { build_model("s4d_classifier", c4, g); }),
            "model.prenorm: expected true or false, got 'maybe'");
  ModelConfig c5 = base();
  c5.set("dropout", "lots");
  EXPECT_EQ(bad_input_message([&] { build_model("s4d_classifier", c5, g); }),
            "model.dropout: expected a number, got 'lots'");
  ModelConfig c6 = base();
  c6.set("pool", "max");
  msg = bad_input_message([&] { build_model("s4d_classifier", c6, g); });
  EXPECT_NE(msg.find("model.pool"), std::string::npos) << msg;
  ModelConfig c7 = base();
  c7.set("d_state", "7");
  msg = bad_input_message([&] { build_model("s4d_classifier", c7, g); });
  EXPECT_NE(msg.find("model.d_state"), std::string::npos) << msg;
  msg = bad_input_message([&] { build_model("mamba9", base(), g); });
  EXPECT_NE(msg.find("unknown model 'mamba9'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("s4d_classifier"), std::string::npos) << msg;
}

TEST(Registry, ConfigGetters) {
  ModelConfig c("trainer");
  c.set("a", "64.0");
  c.set("b", "3.5");
  c.set("c", " off ");
  c.set("d", int64_t(-7));
  EXPECT_EQ(c.get_int("a"), 64);
  EXPECT_EQ(bad_input_message([&] { c.get_int("b"); }), "trainer.b: expected an integer, got '3.5'");
  EXPECT_EQ(c.get_double("b"), 3.5);
  EXPECT_FALSE(c.get_bool("c"));
  EXPECT_EQ(c.get_int("d"), -7);
  EXPECT_EQ(c.get_int("missing", 5), 5);
  EXPECT_EQ(c.get_string("missing", "x"), "x");
  EXPECT_EQ(bad_input_message([&] { c.get_double("missing"); }), "trainer.missing: required key missing");
}

TEST(Registry, RegisterAnotherModel) {
  register_model(ModelSpec{"test_identity_model", "for tests", "none", {{"width", "4", "w"}},
                           [](const ModelConfig& c, Generator&) -> std::shared_ptr<Module> {
                             c.get_int("width");
                             return std::make_shared<Module>();
                           }});
  auto names = model_names();
  EXPECT_NE(std::find(names.begin(), names.end(), "test_identity_model"), names.end());
  Generator g{8, 0};
  EXPECT_NE(build_model("test_identity_model", ModelConfig(), g), nullptr);
}

}  // namespace
}  // namespace ssm::nn
