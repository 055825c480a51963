#include "tests/trainers/trainers_test_util.h"
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/tensor.h"
#include "trainers/checkpoint.h"

using namespace ssm;
using namespace ssm::train;
namespace fs = std::filesystem;

namespace {

using namespace ssm_trainers_test;

NamedTensors model_at(float v) {
  return {{"encoder.weight", Tensor::full({3, 2}, v)}, {"encoder.bias", Tensor::full({2}, -v)}};
}
NamedTensors optim_at(int64_t step) {
  return {{"step", Tensor::scalar(double(step), DType::i64)}, {"encoder.weight.exp_avg", Tensor::full({3, 2}, 0.5)}};
}

}  // namespace

TEST(Checkpoint, SaveLatestLoad) {
  TmpDir d("basic");
  EXPECT_FALSE(latest_checkpoint(d.path).has_value());  // no checkpoints/ yet
  fs::path p = save_checkpoint(d.path, 100, model_at(1.0f), optim_at(100), {{"step", 100}, {"rng", {{"seed", 7}}}});
  EXPECT_EQ(p, d.path / "checkpoints" / "step-100");
  for (const char* f : {"model.safetensors", "optimizer.safetensors", "trainer_state.json"})
    EXPECT_TRUE(fs::is_regular_file(p / f)) << f;
  EXPECT_FALSE(fs::exists(d.path / "checkpoints" / "step-100.tmp"));

  save_checkpoint(d.path, 200, model_at(2.0f), optim_at(200), {{"step", 200}});
  save_checkpoint(d.path, 30, model_at(3.0f), optim_at(30), {{"step", 30}});  // numeric, not lexical, order
  auto latest = latest_checkpoint(d.path);
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(*latest, d.path / "checkpoints" / "step-200");

  Checkpoint c = load_checkpoint(*latest);
  EXPECT_EQ(c.step, 200);
  EXPECT_EQ(c.trainer_state["step"], 200);
  EXPECT_EQ(c.model.at("encoder.weight").to_float_vector(), std::vector<float>(6, 2.0f));
  EXPECT_EQ(c.model.at("encoder.bias").to_float_vector(), std::vector<float>(2, -2.0f));
  EXPECT_EQ(c.optimizer.at("step").item(), 200.0);
  EXPECT_EQ(c.optimizer.at("encoder.weight.exp_avg").shape(), (Shape{3, 2}));
  Checkpoint first = load_checkpoint(d.path / "checkpoints" / "step-100");
  EXPECT_EQ(first.trainer_state["rng"]["seed"], 7);

  // Re-saving a step replaces it.
  save_checkpoint(d.path, 200, model_at(5.0f), optim_at(200), {{"step", 200}});
  EXPECT_EQ(load_checkpoint(d.path / "checkpoints" / "step-200").model.at("encoder.bias").to_float_vector(),
            std::vector<float>(2, -5.0f));
  auto all = list_checkpoints(d.path);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].first, 30);
  EXPECT_EQ(all[2].first, 200);
}

TEST(Checkpoint, HalfWrittenFoldersAreIgnored) {
  TmpDir d("atomic");
  save_checkpoint(d.path, 10, model_at(1.0f), optim_at(10), {{"step", 10}});
  // A crash during step 20's save leaves step-20.tmp (even with every file in it).
  fs::path tmp = d.path / "checkpoints" / "step-20.tmp";
  fs::copy(d.path / "checkpoints" / "step-10", tmp);
  // A folder that lost a file, and unrelated entries.
  fs::path partial = d.path / "checkpoints" / "step-30";
  fs::copy(d.path / "checkpoints" / "step-10", partial);
  fs::remove(partial / "optimizer.safetensors");
  fs::create_directories(d.path / "checkpoints" / "notes");
  std::ofstream(d.path / "checkpoints" / "step-40") << "a file, not a folder";

  EXPECT_EQ(*latest_checkpoint(d.path), d.path / "checkpoints" / "step-10");
  std::string e = bad_input([&] { load_checkpoint(partial); });
  EXPECT_NE(e.find("is incomplete: missing optimizer.safetensors"), std::string::npos) << e;

  // Saving step 20 for real replaces the leftover.
  save_checkpoint(d.path, 20, model_at(2.0f), optim_at(20), {{"step", 20}});
  EXPECT_FALSE(fs::exists(tmp));
  EXPECT_EQ(*latest_checkpoint(d.path), d.path / "checkpoints" / "step-20");
}

TEST(Checkpoint, KeepLast) {
  TmpDir d("keep");
  fs::create_directories(d.path / "checkpoints" / "step-1.tmp");
  for (int s = 1; s <= 5; ++s) save_checkpoint(d.path, s * 10, model_at(float(s)), optim_at(s), {{"step", s * 10}}, 2);
  auto all = list_checkpoints(d.path);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].first, 40);
  EXPECT_EQ(all[1].first, 50);
  EXPECT_FALSE(fs::exists(d.path / "checkpoints" / "step-1.tmp"));
  EXPECT_FALSE(fs::exists(d.path / "checkpoints" / "step-30"));
}

TEST(Checkpoint, LoadErrors) {
  TmpDir d("errors");
  std::string e = bad_input([&] { load_checkpoint(d.path / "nope"); });
  EXPECT_NE(e.find("is not a folder (it does not exist)"), std::string::npos) << e;
  fs::path p = save_checkpoint(d.path, 5, model_at(1.0f), optim_at(5), {{"step", 5}});
  std::ofstream(p / "trainer_state.json") << "{\"step\": 5,";
  e = bad_input([&] { load_checkpoint(p); });
  EXPECT_NE(e.find("trainer_state.json': bad JSON"), std::string::npos) << e;
  std::ofstream(p / "trainer_state.json") << "{\"step\": 5}";
  std::ofstream(p / "model.safetensors") << "garbage";
  e = bad_input([&] { load_checkpoint(p); });
  EXPECT_NE(e.find("model.safetensors"), std::string::npos) << e;
  // Trailing slash and no step in the JSON: the step comes from the folder name.
  fs::path q = save_checkpoint(d.path, 7, model_at(1.0f), optim_at(7), nlohmann::json::object());
  EXPECT_EQ(load_checkpoint(q.string() + "/").step, 7);
}
