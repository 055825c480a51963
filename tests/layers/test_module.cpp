// Module mechanics: names and order, state dict load checks, round trips, groups, moves, swaps.
#include "helpers.h"
#include "layers/basic.h"
#include "layers/models/s4_classifier.h"
#include "layers/residual.h"

namespace ssm::nn {
namespace {

using testing::as_map;
using testing::bad_input_message;

// A module with parameters, a buffer and nested children, registered out of order on purpose.
class Toy : public Module {
 public:
  explicit Toy(Generator& g) {
    scale_ = &register_parameter("scale", Tensor::ones({3}), "no_decay");
    proj_ = register_module("proj", std::make_shared<Linear>(3, 2, true, g));
    count_ = &register_buffer("count", Tensor::zeros({1}, DType::i64));
    gain_ = &register_parameter("gain", Tensor::full({2}, 2.0), "ssm");
    auto inner = std::make_shared<Sequential>();
    inner->push_back(std::make_shared<LayerNorm>(2));
    inner_ = register_module("inner", inner);
  }
  Variable forward(const Variable& x) override {
    return inner_->forward(ag::mul(proj_->forward(ag::mul(x, *scale_)), *gain_));
  }
  Variable* scale_;
  Variable* gain_;
  Tensor* count_;
  std::shared_ptr<Linear> proj_;
  std::shared_ptr<Sequential> inner_;
};

TEST(Module, NamesAndOrder) {
  Generator g{1, 0};
  Toy toy(g);
  EXPECT_EQ(testing::param_names(toy),
            std::vector<std::string>({"scale", "gain", "proj.weight", "proj.bias", "inner.0.weight", "inner.0.bias"}));
  auto sd = toy.state_dict();
  std::vector<std::string> names;
  for (auto& [n, t] : sd) names.push_back(n);
  EXPECT_EQ(names, std::vector<std::string>({"scale", "gain", "proj.weight", "proj.bias", "inner.0.weight",
                                             "inner.0.bias", "count"}));
  EXPECT_EQ(toy.named_buffers().size(), 1u);
  EXPECT_EQ(toy.num_parameters(), 3 + 2 + 6 + 2 + 2 + 2);
  EXPECT_EQ(toy.parameters().size(), 6u);
  // The state dict holds the live tensors, not copies.
  EXPECT_EQ(sd[0].second.data_ptr(), toy.scale_->data().data_ptr());
}

TEST(Module, ParameterGroups) {
  Generator g{2, 0};
  Toy toy(g);
  auto groups = toy.parameter_groups();
  ASSERT_EQ(groups.size(), 3u);
  std::map<std::string, std::vector<std::string>> by;
  for (auto& [name, ps] : groups)
    for (auto& p : ps) by[name].push_back(p.name);
  EXPECT_EQ(groups[0].first, "default");
  EXPECT_EQ(by["default"], std::vector<std::string>({"proj.weight"}));
  EXPECT_EQ(by["no_decay"], std::vector<std::string>({"scale", "proj.bias", "inner.0.weight", "inner.0.bias"}));
  EXPECT_EQ(by["ssm"], std::vector<std::string>({"gain"}));
}

TEST(Module, LoadStateDictErrorsNameTensorAndShapes) {
  Generator g{3, 0};
  S4ClassifierOptions small, big;
  small.d_input = big.d_input = 2;
  small.n_layers = big.n_layers = 1;
  small.n_classes = big.n_classes = 3;
  small.s4d.d_state = big.s4d.d_state = 4;
  small.d_model = 64;
  big.d_model = 128;
  S4Classifier a(small, g), b(big, g);
  auto before = b.state_dict()[0].second.clone();

  std::map<std::string, Tensor> sd = as_map(a.state_dict());
  sd.erase("encoder.weight");
  // Every other tensor has the wrong width too: the first problem is named, the rest counted.
  auto msg = bad_input_message([&] { b.load_state_dict(sd, "checkpoint.safetensors"); });
  EXPECT_NE(msg.find("checkpoint.safetensors: missing tensor 'encoder.weight'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("more problems"), std::string::npos) << msg;

  // Only one mismatch: the exact message.
  std::map<std::string, Tensor> sd2 = as_map(b.state_dict());
  sd2["layers.0.mixer.D"] = Tensor::zeros({64});
  msg = bad_input_message([&] { b.load_state_dict(sd2, "checkpoint.safetensors"); });
  EXPECT_EQ(msg, "checkpoint.safetensors: tensor 'layers.0.mixer.D' has shape [64] but the model expects [128]");

  std::map<std::string, Tensor> sd3 = as_map(b.state_dict());
  sd3["layers.0.mixer.D"] = Tensor::zeros({128}, DType::f64);
  msg = bad_input_message([&] { b.load_state_dict(sd3, "ck.safetensors"); });
  EXPECT_EQ(msg, "ck.safetensors: tensor 'layers.0.mixer.D' has dtype f64 but the model expects f32");

  std::map<std::string, Tensor> sd4 = as_map(b.state_dict());
  sd4["layers.1.mixer.D"] = Tensor::zeros({128});
  msg = bad_input_message([&] { b.load_state_dict(sd4); });
  EXPECT_NE(msg.find("state dict: unexpected tensor 'layers.1.mixer.D'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[128]"), std::string::npos) << msg;

  std::map<std::string, Tensor> sd5 = as_map(b.state_dict());
  sd5.erase("decoder.bias");
  msg = bad_input_message([&] { b.load_state_dict(sd5, "x.safetensors"); });
  EXPECT_EQ(msg, "x.safetensors: missing tensor 'decoder.bias' (the model expects shape [3], f32)");

  // Failed loads change nothing.
  EXPECT_EQ(b.state_dict()[0].second.to_double_vector(), before.to_double_vector());
}

TEST(Module, StateDictRoundTripGivesIdenticalOutputs) {
  S4ClassifierOptions o;
  o.d_input = 3;
  o.d_model = 8;
  o.n_layers = 2;
  o.s4d.d_state = 8;
  o.n_classes = 5;
  Generator g1{10, 0}, g2{20, 0}, gx{30, 0};
  S4Classifier a(o, g1), b(o, g2);
  a.eval();
  b.eval();
  Tensor x = gx.normal({2, 7, 3});
  auto ya = a.forward(Variable(x)).data().to_double_vector();
  EXPECT_NE(ya, b.forward(Variable(x)).data().to_double_vector());
  // Through copies, as a checkpoint file would give them.
  std::map<std::string, Tensor> copies;
  for (auto& [n, t] : a.state_dict()) copies[n] = t.clone();
  auto vars_before = b.parameters();
  b.load_state_dict(copies, "a.safetensors");
  EXPECT_EQ(ya, b.forward(Variable(x)).data().to_double_vector());
  // Loading copies values into the same Variables.
  auto vars_after = b.parameters();
  for (size_t i = 0; i < vars_before.size(); ++i) EXPECT_EQ(vars_before[i].id(), vars_after[i].id());
}

TEST(Module, ToKeepsVariables) {
  Generator g{4, 0};
  Toy toy(g);
  auto before = toy.parameters();
  auto values = toy.state_dict()[2].second.to_double_vector();
  Variable x(g.normal({4, 3}));
  ag::sum(toy.forward(x)).backward();
  EXPECT_TRUE(toy.proj_->weight().has_grad());
  toy.to(Device::cpu());
  auto after = toy.parameters();
  ASSERT_EQ(before.size(), after.size());
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(before[i].id(), after[i].id());
    EXPECT_TRUE(after[i].device().is_cpu());
  }
  EXPECT_EQ(toy.state_dict()[2].second.to_double_vector(), values);
  toy.zero_grad();
  EXPECT_FALSE(toy.proj_->weight().has_grad());

  // to(dtype): same Variables, new data; integer buffers untouched.
  toy.to(DType::f64);
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(before[i].id(), toy.parameters()[i].id());
    EXPECT_EQ(before[i].dtype(), DType::f64);
  }
  EXPECT_EQ(toy.count_->dtype(), DType::i64);
  EXPECT_EQ(toy.forward(Variable(g.normal({4, 3}, DType::f64))).dtype(), DType::f64);
}

TEST(Module, ToCudaMovesInPlace) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  Generator g{5, 0};
  Toy toy(g);
  auto before = toy.parameters();
  Tensor x = g.normal({4, 3});
  auto y_cpu = toy.forward(Variable(x)).data().to_double_vector();
  toy.to(Device::cuda());
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(before[i].id(), toy.parameters()[i].id());
    EXPECT_TRUE(before[i].device().is_cuda());
  }
  EXPECT_TRUE(toy.count_->device().is_cuda());
  auto y = toy.forward(Variable(x.to(Device::cuda()))).data().to_double_vector();
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], y_cpu[i], 1e-4);
  toy.to(Device::cpu());
  EXPECT_TRUE(before[0].device().is_cpu());
}

TEST(Module, TrainEvalRecurses) {
  Generator g{6, 0};
  Toy toy(g);
  EXPECT_TRUE(toy.is_training());
  toy.eval();
  EXPECT_FALSE(toy.is_training());
  EXPECT_FALSE(toy.proj_->is_training());
  EXPECT_FALSE(toy.inner_->children()[0].second->is_training());
  toy.train();
  EXPECT_TRUE(toy.inner_->children()[0].second->is_training());
}

TEST(Module, SwapParametersAndRestore) {
  Generator g{7, 0};
  Linear lin(2, 2, true, g);
  auto originals = lin.parameters();
  std::vector<Variable> repl{Variable(Tensor::zeros({2, 2}), true), Variable(Tensor::ones({2}), true)};
  lin.swap_parameters(repl);
  EXPECT_EQ(repl[0].id(), originals[0].id());
  EXPECT_EQ(lin.forward(Variable(Tensor::ones({1, 2}))).data().to_double_vector(), std::vector<double>({1, 1}));
  lin.swap_parameters(repl);
  EXPECT_EQ(lin.parameters()[0].id(), originals[0].id());
  std::vector<Variable> wrong{Variable(Tensor::zeros({3, 2}))};
  bad_input_message([&] { lin.swap_parameters(wrong); });
  std::vector<Variable> wrong2{Variable(Tensor::zeros({2, 3})), Variable(Tensor::zeros({2}))};
  auto msg = bad_input_message([&] { lin.swap_parameters(wrong2); });
  EXPECT_NE(msg.find("weight"), std::string::npos);
  EXPECT_EQ(lin.parameters()[0].id(), originals[0].id());
}

// The gradcheck helper really reaches parameter gradients: a deliberately wrong backward is caught.
class WrongGrad : public Module {
 public:
  WrongGrad() { w_ = &register_parameter("w", Tensor::full({3}, 0.5)); }
  Variable forward(const Variable& x) override {
    Tensor y = mul(x.data(), w_->data());
    return Variable(y, {x, *w_}, [](std::vector<Variable>& in, const Tensor& g) {
      if (in[0].requires_grad()) in[0].add_grad(mul(g, in[1].data()));
      if (in[1].requires_grad()) in[1].add_grad(sum_to(mul(mul(g, in[0].data()), 2.0), in[1].shape()));  // wrong: 2x
    });
  }
  Variable* w_;
};

TEST(Module, GradcheckHelperCatchesWrongParameterGradient) {
  Generator g{8, 0};
  WrongGrad m;
  std::string msg = testing::module_gradcheck(m, g.normal({2, 3}, DType::f64));
  EXPECT_NE(msg.find("input 1"), std::string::npos) << msg;  // input 0 is x, input 1 the parameter w
}

}  // namespace
}  // namespace ssm::nn
