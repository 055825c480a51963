// Export to Hugging Face / mamba_ssm layouts and import back (CPU): names, shapes, config.json,
// refusals, and that an exported-then-imported model computes the same logits.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "autograd/variable.h"
#include "layers/language_model.h"
#include "layers/registry.h"
#include "trainers/checkpoint.h"
#include "trainers/model_io.h"
#include "trainers/safetensors.h"
#include "trainers_test_util.h"

namespace fs = std::filesystem;
using namespace ssm;
using ssm_trainers_test::bad_input;
using ssm_trainers_test::TmpDir;

namespace {

std::map<std::string, std::string> tiny_config(const std::string& norm = "rms", bool tied = true) {
  return {{"d_model", "8"}, {"n_layer", "2"}, {"vocab_size", "21"}, {"d_state", "4"},
          {"norm", norm},   {"tied", tied ? "true" : "false"}};
}

// A run directory with one checkpoint of a freshly initialised tiny mamba_lm.
std::shared_ptr<nn::Module> write_run(const fs::path& run, const std::map<std::string, std::string>& cfg) {
  nn::ModelConfig mc("model");
  for (const auto& [k, v] : cfg) mc.set(k, v);
  Generator gen{7, 0};
  auto model = nn::build_model("mamba_lm", mc, gen);
  nlohmann::json st = {{"step", 3},
                       {"model", "mamba_lm"},
                       {"model_config", nn::resolve_model_config("mamba_lm", mc).values()},
                       {"recipe", "model: {name: mamba_lm}\n"},
                       {"world_size", 1}};
  train::save_checkpoint(run, 3, model->state_dict(), {}, st);
  return model;
}

Tensor logits_of(nn::Module& m, const Tensor& tokens) {
  ag::NoGradGuard ng;
  m.eval();
  return dynamic_cast<nn::LanguageModel&>(m).logits(tokens, Tensor()).data();
}

}  // namespace

TEST(ModelIO, HuggingFaceExportNamesShapesConfigAndRoundTrip) {
  TmpDir tmp("hf");
  auto model = write_run(tmp.path / "run", tiny_config());
  std::ostringstream log;
  train::export_model((tmp.path / "run").string(), "hf", tmp.file("hf"), log);
  auto st = train::load_safetensors(tmp.file("hf/model.safetensors"));
  EXPECT_EQ(st.metadata.at("format"), "pt");  // transformers refuses files without it
  EXPECT_TRUE(st.tensors.count("backbone.embeddings.weight"));
  EXPECT_FALSE(st.tensors.count("backbone.embedding.weight"));
  EXPECT_FALSE(st.tensors.count("lm_head.weight"));  // tied
  const Tensor& conv = st.tensors.at("backbone.layers.1.mixer.conv1d.weight");
  EXPECT_EQ(conv.shape(), (Shape{16, 1, 4}));
  for (const char* n : {"backbone.layers.0.norm.weight", "backbone.norm_f.weight", "backbone.layers.0.mixer.A_log",
                        "backbone.layers.0.mixer.D", "backbone.layers.0.mixer.dt_proj.bias",
                        "backbone.layers.0.mixer.x_proj.weight", "backbone.layers.0.mixer.out_proj.weight"})
    EXPECT_TRUE(st.tensors.count(n)) << n;
  nlohmann::json cfg = nlohmann::json::parse(std::ifstream(tmp.file("hf/config.json")));
  EXPECT_EQ(cfg["model_type"], "mamba");
  EXPECT_EQ(cfg["hidden_size"], 8);
  EXPECT_EQ(cfg["num_hidden_layers"], 2);
  EXPECT_EQ(cfg["state_size"], 4);
  EXPECT_EQ(cfg["vocab_size"], 24);  // 21 padded to a multiple of 8
  EXPECT_EQ(cfg["time_step_rank"], 1);
  EXPECT_EQ(cfg["intermediate_size"], 16);

  train::import_model(tmp.file("hf"), tmp.file("imported"), log);
  auto back = train::load_model(tmp.file("imported"), Device::cpu());
  const Tensor tokens = Tensor::from_vector(std::vector<int64_t>{1, 5, 20, 3, 3, 0, 7}, {1, 7});
  const Tensor a = logits_of(*model, tokens), b = logits_of(*back.model, tokens);
  ASSERT_EQ(a.shape(), b.shape());
  EXPECT_EQ(a.to_float_vector(), b.to_float_vector());
}

TEST(ModelIO, MambaSsmExportKeepsNamesAndHead) {
  TmpDir tmp("mssm");
  auto model = write_run(tmp.path / "run", tiny_config("layer", false));
  std::ostringstream log;
  train::export_model((tmp.path / "run").string(), "mamba_ssm", tmp.file("out"), log);
  auto st = train::load_safetensors(tmp.file("out/model.safetensors"));
  EXPECT_TRUE(st.tensors.count("backbone.embedding.weight"));
  EXPECT_TRUE(st.tensors.count("lm_head.weight"));
  EXPECT_TRUE(st.tensors.count("backbone.norm_f.bias"));  // LayerNorm
  nlohmann::json cfg = nlohmann::json::parse(std::ifstream(tmp.file("out/config.json")));
  EXPECT_EQ(cfg["d_model"], 8);
  EXPECT_EQ(cfg["vocab_size"], 21);
  EXPECT_EQ(cfg["rms_norm"], false);
  EXPECT_EQ(cfg["tie_embeddings"], false);
  train::import_model(tmp.file("out"), tmp.file("imported"), log);
  auto back = train::load_model(tmp.file("imported"), Device::cpu());
  const Tensor tokens = Tensor::from_vector(std::vector<int64_t>{2, 4, 6, 8}, {1, 4});
  EXPECT_EQ(logits_of(*model, tokens).to_float_vector(), logits_of(*back.model, tokens).to_float_vector());
}

TEST(ModelIO, RefusesWhatAFormatCannotExpress) {
  TmpDir tmp("refuse");
  std::ostringstream log;
  write_run(tmp.path / "ln", tiny_config("layer", true));
  EXPECT_NE(bad_input([&] { train::export_model(tmp.file("ln"), "hf", tmp.file("o1"), log); }).find("RMSNorm"),
            std::string::npos);
  write_run(tmp.path / "untied", tiny_config("rms", false));
  EXPECT_NE(bad_input([&] { train::export_model(tmp.file("untied"), "hf", tmp.file("o2"), log); }).find("untied"),
            std::string::npos);
  EXPECT_NE(bad_input([&] { train::export_model(tmp.file("ln"), "onnx", tmp.file("o3"), log); }).find("--format"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(tmp.file("o1")));
}

TEST(ModelIO, ImportRejectsMissingOrMisshapenTensors) {
  TmpDir tmp("badimport");
  std::ostringstream log;
  write_run(tmp.path / "run", tiny_config());
  train::export_model(tmp.file("run"), "hf", tmp.file("hf"), log);
  auto st = train::load_safetensors(tmp.file("hf/model.safetensors"));
  st.tensors.erase("backbone.layers.1.mixer.D");
  train::save_safetensors(tmp.file("hf/model.safetensors"), st.tensors, {{"format", "pt"}});
  EXPECT_NE(bad_input([&] { train::import_model(tmp.file("hf"), tmp.file("x"), log); })
                .find("backbone.layers.1.mixer.D"),
            std::string::npos);
  EXPECT_NE(bad_input([&] { train::import_model(tmp.file("nowhere"), tmp.file("x"), log); }).find("config.json"),
            std::string::npos);
}
