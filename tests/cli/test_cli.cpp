// End-to-end tests of the `ssm` binary: help, exit codes and messages for bad input, a tiny training
// run with its run directory, eval, exact resume, and SIGTERM (checkpoint, then exit 128 + 15).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "data/hdf5_file.h"
#include "trainers/safetensors.h"
#include "cli_test_util.h"

namespace fs = std::filesystem;

namespace {

using ssm_cli_test::kSsm;
using ssm_cli_test::Result;
using ssm_cli_test::ssm;


void write_text(const fs::path& p, const std::string& s) { std::ofstream(p) << s; }

std::string read_text(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A learnable toy task: 16-step sequences of one channel; the label says whether the first half sums
// to more than the second.
void write_toy_split(const fs::path& path, int64_t n, uint64_t seed) {
  std::vector<float> x(static_cast<size_t>(n * 16));
  std::vector<int64_t> y(static_cast<size_t>(n));
  uint64_t s = seed;
  auto next = [&] {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return float((s >> 40) & 0xffff) / 65536.0f - 0.5f;
  };
  for (int64_t i = 0; i < n; ++i) {
    float a = 0, b = 0;
    for (int64_t t = 0; t < 16; ++t) {
      const float v = next();
      x[size_t(i * 16 + t)] = v;
      (t < 8 ? a : b) += v;
    }
    y[size_t(i)] = a > b ? 1 : 0;
  }
  ssm::data::H5Writer w(path.string());
  w.set_attr("/", "ssm_format", "ssm-dataset");
  w.set_attr("/", "version", int64_t(1));
  w.set_attr("/", "task", "classification");
  w.set_attr("/", "num_classes", int64_t(2));
  w.write_dataset("inputs", ssm::Tensor::from_vector(x, {n, 16}));
  w.set_attr("inputs", "layout", "sequence");
  w.write_dataset("labels", ssm::Tensor::from_vector(y, {n}));
  w.commit();
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ssm-cli-test-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    write_toy_split(dir_ / "train.h5", 512, 1);
    write_toy_split(dir_ / "test.h5", 128, 2);
    write_text(dir_ / "toy.yaml", R"(model:
  name: s4d_classifier
  d_model: 8
  n_layers: 1
  d_state: 8
data:
  name: hdf5
  train: train.h5
  test: test.h5
  batch_size: 16
optimizer:
  name: adamw
  lr: 0.01
  weight_decay: 0.0
schedule:
  name: cosine
  warmup_steps: 2
  total_steps: 20
trainer:
  steps: 20
  device: cpu
  seed: 3
  out_dir: run
  log_every: 5
  checkpoint_every: 10
)");
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST(CliHelp, TopLevelAndSubcommands) {
  Result r = ssm("--help");
  EXPECT_EQ(r.code, 0) << r.out;
  for (const char* sub : {"train", "eval", "data", "models"}) EXPECT_NE(r.out.find(sub), std::string::npos) << sub;
  for (const char* sub : {"train --help", "eval --help", "data --help", "data fashion-mnist --help", "models --help"}) {
    Result s = ssm(sub);
    EXPECT_EQ(s.code, 0) << sub << ": " << s.out;
    EXPECT_NE(s.out.find("Usage"), std::string::npos) << sub;
  }
  EXPECT_EQ(ssm("").code, 2);
  EXPECT_EQ(ssm("frobnicate").code, 2);
}

TEST_F(Cli, MissingRecipeFile) {
  Result r = ssm("train nope.yaml", dir_);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("nope.yaml"), std::string::npos) << r.out;
}

TEST_F(Cli, UnknownKeyNamesKeyAndLine) {
  std::string text = read_text(dir_ / "toy.yaml");
  text.replace(text.find("  lr: 0.01"), 10, "  lr: 0.01\n  learnin_rate: 3");
  write_text(dir_ / "bad.yaml", text);
  Result r = ssm("train bad.yaml", dir_);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("bad.yaml:14"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("learnin_rate"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir_ / "run" / "checkpoints"));
}

TEST_F(Cli, UnknownOverrideSuggestsKey) {
  Result r = ssm("train toy.yaml trainer.stepz=3", dir_);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("trainer.stepz"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("trainer.steps"), std::string::npos) << r.out;  // the suggestion
}

TEST_F(Cli, WrongTypeNamesKeyAndLine) {
  std::string text = read_text(dir_ / "toy.yaml");
  text.replace(text.find("\n  steps: 20"), 12, "\n  steps: ten");
  write_text(dir_ / "bad.yaml", text);
  Result r = ssm("train bad.yaml", dir_);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("trainer.steps"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ten"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("bad.yaml:20"), std::string::npos) << r.out;
}

TEST_F(Cli, MissingAndCorruptDataFiles) {
  Result r = ssm("train toy.yaml data.train=missing.h5", dir_);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("missing.h5"), std::string::npos) << r.out;
  write_text(dir_ / "corrupt.h5", "this is not an HDF5 file\n");
  r = ssm("train toy.yaml data.train=corrupt.h5", dir_);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("corrupt.h5"), std::string::npos) << r.out;
  // A truncated copy of a real file.
  const std::string good = read_text(dir_ / "train.h5");
  write_text(dir_ / "cut.h5", good.substr(0, good.size() / 2));
  r = ssm("train toy.yaml data.train=cut.h5", dir_);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("cut.h5"), std::string::npos) << r.out;
}

TEST_F(Cli, CudaWithoutDeviceIsBadInput) {
  Result r = ssm("train toy.yaml trainer.device=cuda:7", dir_);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("trainer.device"), std::string::npos) << r.out;
}

TEST_F(Cli, TrainWritesRunDirectoryAndLearns) {
  Result r = ssm("train toy.yaml", dir_);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("test accuracy"), std::string::npos) << r.out;
  const fs::path run = dir_ / "run";
  EXPECT_TRUE(fs::exists(run / "recipe.yaml"));
  EXPECT_TRUE(fs::exists(run / "checkpoints" / "step-20" / "model.safetensors"));
  EXPECT_TRUE(fs::exists(run / "checkpoints" / "step-20" / "optimizer.safetensors"));
  EXPECT_TRUE(fs::exists(run / "checkpoints" / "step-20" / "trainer_state.json"));
  bool events = false;
  for (const auto& e : fs::directory_iterator(run)) events |= e.path().filename().string().rfind("events.out.tfevents", 0) == 0;
  EXPECT_TRUE(events);
  const std::string metrics = read_text(run / "metrics.jsonl");
  for (const char* key : {"\"loss\"", "\"lr\"", "\"grad_norm\"", "\"samples_per_second\"", "\"test/accuracy\""})
    EXPECT_NE(metrics.find(key), std::string::npos) << key;
  // eval of the final checkpoint reproduces the final test accuracy line.
  Result e = ssm("eval run/checkpoints/step-20", dir_);
  ASSERT_EQ(e.code, 0) << e.out;
  const auto line = [](const std::string& s) { return s.substr(s.find("test accuracy")); };
  EXPECT_EQ(line(e.out), line(r.out));
}

TEST_F(Cli, CheckpointThatDoesNotMatchTheModel) {
  ASSERT_EQ(ssm("train toy.yaml trainer.steps=2 schedule.total_steps=2 schedule.warmup_steps=1", dir_).code, 0);
  Result r = ssm("eval run/checkpoints/step-2 model.d_model=16", dir_);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("model.safetensors"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("encoder.weight"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[8, 1]"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[16, 1]"), std::string::npos) << r.out;
  // A damaged checkpoint file is named too.
  write_text(dir_ / "run/checkpoints/step-2/model.safetensors", "garbage");
  r = ssm("eval run/checkpoints/step-2", dir_);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("model.safetensors"), std::string::npos) << r.out;
}

// Stopping after 10 steps and resuming gives bit-identical weights to the uninterrupted run.
TEST_F(Cli, ResumeReproducesTheUninterruptedRun) {
  ASSERT_EQ(ssm("train toy.yaml trainer.out_dir=full", dir_).code, 0);
  Result a = ssm("train toy.yaml trainer.out_dir=split trainer.steps=10", dir_);
  ASSERT_EQ(a.code, 0) << a.out;
  Result b = ssm("train toy.yaml trainer.out_dir=split", dir_);
  ASSERT_EQ(b.code, 0) << b.out;
  EXPECT_NE(b.out.find("resuming from"), std::string::npos) << b.out;
  auto full = ssm::train::load_safetensors((dir_ / "full/checkpoints/step-20/model.safetensors").string());
  auto split = ssm::train::load_safetensors((dir_ / "split/checkpoints/step-20/model.safetensors").string());
  ASSERT_EQ(full.tensors.size(), split.tensors.size());
  for (const auto& [name, t] : full.tensors) {
    ASSERT_TRUE(split.tensors.count(name)) << name;
    EXPECT_EQ(t.to_float_vector(), split.tensors.at(name).to_float_vector()) << name;
  }
}

// Gradient accumulation: 2 micro-batches of 8 give the update of one batch of 16 (same rows, same order).
TEST_F(Cli, AccumulationMatchesTheLargerBatch) {
  ASSERT_EQ(ssm("train toy.yaml trainer.out_dir=big trainer.steps=10", dir_).code, 0);
  Result r = ssm("train toy.yaml trainer.out_dir=acc trainer.steps=10 data.batch_size=8 +trainer.accumulate=2", dir_);
  ASSERT_EQ(r.code, 0) << r.out;
  auto big = ssm::train::load_safetensors((dir_ / "big/checkpoints/step-10/model.safetensors").string());
  auto acc = ssm::train::load_safetensors((dir_ / "acc/checkpoints/step-10/model.safetensors").string());
  for (const auto& [name, t] : big.tensors) {
    const auto a = t.to_float_vector(), b = acc.tensors.at(name).to_float_vector();
    ASSERT_EQ(a.size(), b.size()) << name;
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 2e-5) << name << "[" << i << "]";
  }
}

// SIGTERM: the run writes a checkpoint at the step it reached and exits with 128 + 15.
TEST_F(Cli, SigtermCheckpointsAndStops) {
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (chdir(dir_.c_str()) != 0) _exit(100);
    freopen("/dev/null", "w", stdout);
    freopen("/dev/null", "w", stderr);
    execl(kSsm.c_str(), "ssm", "train", "toy.yaml", "trainer.steps=100000", "schedule.total_steps=100000",
          "trainer.checkpoint_every=0", "trainer.log_every=1", (char*)nullptr);
    _exit(101);
  }
  // Wait until training has started (a metrics line), then ask it to stop.
  const fs::path metrics = dir_ / "run" / "metrics.jsonl";
  for (int i = 0; i < 600 && (!fs::exists(metrics) || fs::file_size(metrics) == 0); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGTERM);
  bool found = false;
  for (const auto& e : fs::directory_iterator(dir_ / "run" / "checkpoints"))
    found |= e.path().filename().string().rfind("step-", 0) == 0 && e.path().extension() != ".tmp";
  EXPECT_TRUE(found);
}

}  // namespace
