// End-to-end tests of the language-model commands: `ssm data pg19`, `ssm train` on a byte-level corpus
// (bits per byte), `ssm generate` (seeded, constant memory), `ssm export`, `ssm bench`, and their
// bad-input exit codes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "cli_test_util.h"
#include "core/error.h"

namespace fs = std::filesystem;

namespace {

using ssm_cli_test::Result;
using ssm_cli_test::ssm;


// A tiny PG19-layout corpus: repetitive English so that a small model learns it in a few steps.
void write_corpus(const fs::path& root) {
  const std::string verse = "and the lord spake unto moses, saying, speak unto the children of israel. ";
  for (const char* split : {"train", "validation", "test"}) {
    fs::create_directories(root / split);
    const int books = std::string(split) == "train" ? 3 : 1;
    for (int b = 0; b < books; ++b) {
      std::ofstream f(root / split / (std::string(split) + "-" + std::to_string(b) + ".txt"));
      for (int i = 0; i < (std::string(split) == "train" ? 60 : 12); ++i) f << verse;
    }
  }
}

class CliLM : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ssm::cat("ssm-cli-lm-", ::getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    write_corpus(dir_ / "corpus");
    std::ofstream(dir_ / "lm.yaml") << "model: {name: mamba_lm, d_model: 32, n_layer: 2, vocab_size: 256, "
                                       "d_state: 8, norm: layer, tied: false}\n"
                                       "data: {name: pg19, root: corpus, path: data, context: 64, batch_size: 8}\n"
                                       "optimizer: {name: adamw, lr: 0.01, betas: [0.9, 0.95]}\n"
                                       "schedule: {name: cosine, warmup_steps: 5}\n"
                                       "trainer: {steps: 40, out_dir: run, log_every: 10, grad_clip: 1.0}\n";
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(CliLM, TrainReportsBitsPerByteWellBelowEight) {
  Result r = ssm("train lm.yaml", dir_);
  ASSERT_EQ(r.code, 0) << r.out;
  const size_t at = r.out.find("bits_per_byte ");
  ASSERT_NE(at, std::string::npos) << r.out;
  const double bpb = std::stod(r.out.substr(at + 14));
  EXPECT_LT(bpb, 4.0) << r.out;  // uniform guessing is 8 bits per byte
  EXPECT_NE(r.out.find("word_perplexity"), std::string::npos) << r.out;
  std::ifstream m(dir_ / "run" / "metrics.jsonl");
  std::string line, last;
  while (std::getline(m, line)) last = line;
  auto j = nlohmann::json::parse(last);
  EXPECT_TRUE(j.contains("test/bits_per_byte")) << last;

  // Generation: seeded, so the same command gives the same text; the prompt is echoed first.
  Result g1 = ssm("generate run --prompt 'and the' --max-new 40 --seed 5 --top-k 20", dir_);
  Result g2 = ssm("generate run --prompt 'and the' --max-new 40 --seed 5 --top-k 20", dir_);
  ASSERT_EQ(g1.code, 0) << g1.out;
  EXPECT_EQ(g1.out, g2.out);
  EXPECT_EQ(g1.out.rfind("and the", 0), 0u) << g1.out;
  EXPECT_GE(g1.out.size(), 47u);
  // Greedy decoding of a learnt pattern continues it.
  Result greedy = ssm("generate run --prompt 'speak unto the chil' --max-new 8 --temperature 0", dir_);
  ASSERT_EQ(greedy.code, 0) << greedy.out;

  // Bad input: exit 2 with a message naming the problem.
  Result bad = ssm("generate run --prompt-tokens '1 x'", dir_);
  EXPECT_EQ(bad.code, 2) << bad.out;
  EXPECT_NE(bad.out.find("'x'"), std::string::npos) << bad.out;
  Result both = ssm("generate run --prompt a --prompt-tokens 1", dir_);
  EXPECT_EQ(both.code, 2) << both.out;
  Result topp = ssm("generate run --prompt a --top-p 0", dir_);
  EXPECT_EQ(topp.code, 2) << topp.out;

  // Export: LayerNorm + untied head cannot be Hugging Face's; mamba_ssm's format takes it.
  Result hf = ssm("export run --format hf --out hf", dir_);
  EXPECT_EQ(hf.code, 2) << hf.out;
  EXPECT_NE(hf.out.find("RMSNorm"), std::string::npos) << hf.out;
  Result ms = ssm("export run --format mamba_ssm --out ms", dir_);
  EXPECT_EQ(ms.code, 0) << ms.out;
  EXPECT_TRUE(fs::exists(dir_ / "ms" / "config.json"));
  Result imp = ssm("import ms --out imported", dir_);
  EXPECT_EQ(imp.code, 0) << imp.out;
  Result g3 = ssm("generate imported --prompt 'and the' --max-new 40 --seed 5 --top-k 20", dir_);
  EXPECT_EQ(g3.out, g1.out);
}

TEST_F(CliLM, DataPg19AndItsErrors) {
  Result r = ssm("data pg19 --root corpus --out converted", dir_);
  ASSERT_EQ(r.code, 0) << r.out;
  for (const char* s : {"train.h5", "validation.h5", "test.h5"}) EXPECT_TRUE(fs::exists(dir_ / "converted" / s));
  Result missing = ssm("data pg19 --root nowhere --out x", dir_);
  EXPECT_EQ(missing.code, 2) << missing.out;
  EXPECT_NE(missing.out.find("nowhere"), std::string::npos) << missing.out;
  // A classifier recipe pointed at LM data, and an LM recipe at an unknown dataset, are bad input.
  Result wrong = ssm("train lm.yaml data.name=fashion-mnist", dir_);
  EXPECT_EQ(wrong.code, 2) << wrong.out;
}

TEST_F(CliLM, BenchPrintsThroughputJson) {
  Result r = ssm("bench lm.yaml data.name=synthetic +data.vocab_size=256 +data.rows=32 --warmup 1 --steps 2", dir_);
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string last = r.out.substr(r.out.rfind('{'));
  auto j = nlohmann::json::parse(last);
  EXPECT_GT(j["tokens_per_second"].get<double>(), 0);
  EXPECT_EQ(j["context"], 64);
  EXPECT_EQ(j["batch"], 8);
}

// A truncated newest checkpoint is reported and skipped: resume falls back to the one before it, and the
// resumed run still ends where the uninterrupted one does.
TEST_F(CliLM, CorruptNewestCheckpointFallsBackToThePreviousOne) {
  std::ofstream(dir_ / "syn.yaml") << "model: {name: mamba_lm, d_model: 16, n_layer: 1, vocab_size: 32, d_state: 4}\n"
                                      "data: {name: synthetic, vocab_size: 32, rows: 64, context: 16, batch_size: 4}\n"
                                      "optimizer: {name: adamw, lr: 0.003}\n"
                                      "schedule: {name: cosine, total_steps: 12}\n"
                                      "trainer: {steps: 12, out_dir: syn, log_every: 4, checkpoint_every: 4, "
                                      "keep_checkpoints: 3}\n";
  ASSERT_EQ(ssm("train syn.yaml trainer.out_dir=full", dir_).code, 0);
  ASSERT_EQ(ssm("train syn.yaml trainer.steps=8", dir_).code, 0);  // checkpoints at 4 and 8
  const fs::path newest = dir_ / "syn/checkpoints/step-8/model.safetensors";
  ASSERT_TRUE(fs::exists(newest));
  fs::resize_file(newest, fs::file_size(newest) / 2);  // a crash mid-write
  Result r = ssm("train syn.yaml", dir_);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("skipping checkpoint"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("step-8/model.safetensors"), std::string::npos) << r.out;  // names the file
  EXPECT_NE(r.out.find("resuming from"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(step 4)"), std::string::npos) << r.out;
  // Same final weights as the run that was never interrupted (the CPU is deterministic).
  auto read = [&](const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  EXPECT_EQ(read(dir_ / "syn/checkpoints/step-12/model.safetensors"),
            read(dir_ / "full/checkpoints/step-12/model.safetensors"));
  // An unknown resume mode is bad input.
  EXPECT_EQ(ssm("train syn.yaml trainer.resume=sometimes", dir_).code, 2);
}

}  // namespace

