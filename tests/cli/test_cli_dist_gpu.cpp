// Data-parallel training end to end on two GPUs over NCCL, started by `ssm launch --nproc 2`: the same
// checks as the CPU (MPI) tests in test_cli_dist.cpp, on the GPU code path. Skipped unless this build has
// CUDA and NCCL and at least two GPUs are visible (the GPU machine's nvidia-h200-x2).
//   - 2 GPUs equal 1 GPU with accumulation 2 at the same global batch (f32 training);
//   - a resumed run equals the uninterrupted one bit for bit (the scan's deterministic backward);
//   - a rank killed mid-run: the survivor notices on its own (NCCL error or the step watchdog, within
//     trainer.dist.timeout_s), exits, and the job ends before the launcher's grace time would have
//     stopped it.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "cli_test_util.h"
#include "core/device.h"
#include "core/error.h"

namespace fs = std::filesystem;

namespace {

using ssm_cli_test::kSsm;
using ssm_cli_test::losses;
using ssm_cli_test::max_rel_diff;
using ssm_cli_test::Result;

class CliDistGpu : public ::testing::Test {
 protected:
  void SetUp() override {
#ifndef SSM_WITH_NCCL
    GTEST_SKIP() << "built without NCCL";
#endif
    if (ssm::cuda_device_count() < 2) GTEST_SKIP() << "needs 2 GPUs (" << ssm::cuda_device_count() << " visible)";
    dir_ = fs::temp_directory_path() / ssm::cat("ssm-cli-dist-gpu-", ::getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::ofstream(dir_ / "lm.yaml")
        << "model: {name: mamba_lm, d_model: 64, n_layer: 2, vocab_size: 128, d_state: 16, deterministic: true}\n"
           "data: {name: synthetic, vocab_size: 128, rows: 512, context: 128, batch_size: 8}\n"
           "optimizer: {name: adamw, lr: 0.003}\n"
           "trainer: {steps: 8, out_dir: run, log_every: 1, checkpoint_every: 4, device: cuda, precision: f32}\n";
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  Result launch(const std::string& args) {
    return ssm_cli_test::run_in(dir_, "timeout -k 5 240 '" + kSsm + "' launch --nproc 2 lm.yaml " + args);
  }
  fs::path dir_;
};

TEST_F(CliDistGpu, TwoGpusEqualOneGpuWithAccumulationTwo) {
  Result dp = launch("trainer.out_dir=dp");
  ASSERT_EQ(dp.code, 0) << dp.out;
  EXPECT_NE(dp.out.find("2 processes, nccl"), std::string::npos) << dp.out;
  Result acc = ssm_cli_test::ssm("train lm.yaml trainer.out_dir=acc +trainer.accumulate=2", dir_);
  ASSERT_EQ(acc.code, 0) << acc.out;
  const auto l_dp = losses(dir_ / "dp/metrics.jsonl"), l_acc = losses(dir_ / "acc/metrics.jsonl");
  ASSERT_EQ(l_dp.size(), 8u);
  ASSERT_EQ(l_acc.size(), 8u);
  // The CPU bound (1e-6) with room for the GPU's different summation orders in matmuls and reductions.
  for (size_t i = 0; i < l_dp.size(); ++i) EXPECT_NEAR(l_dp[i], l_acc[i], 1e-5 * std::abs(l_acc[i])) << "step " << i + 1;
  EXPECT_LT(max_rel_diff(dir_ / "dp/checkpoints/step-8", dir_ / "acc/checkpoints/step-8"), 1e-5);
}

TEST_F(CliDistGpu, ResumedRunEqualsTheUninterruptedOneBitForBit) {
  Result full = launch("trainer.out_dir=full");
  ASSERT_EQ(full.code, 0) << full.out;
  Result half = launch("trainer.out_dir=split trainer.steps=4 +schedule.total_steps=8");
  ASSERT_EQ(half.code, 0) << half.out;
  Result rest = launch("trainer.out_dir=split +schedule.total_steps=8");
  ASSERT_EQ(rest.code, 0) << rest.out;
  EXPECT_NE(rest.out.find("resuming from"), std::string::npos) << rest.out;
  EXPECT_EQ(max_rel_diff(dir_ / "split/checkpoints/step-8", dir_ / "full/checkpoints/step-8"), 0.0);
  EXPECT_EQ(losses(dir_ / "split/metrics.jsonl").back(), losses(dir_ / "full/metrics.jsonl").back());
}

// SIGKILL to one rank (no goodbye). The launcher's grace is 120 s, so a job that ends sooner ended because
// the survivor stopped on its own: NCCL's async error check or the 15 s step watchdog.
TEST_F(CliDistGpu, KilledRankEndsTheJobWithinTheTimeout) {
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    setpgid(0, 0);
    if (chdir(dir_.c_str()) != 0) _exit(100);
    if (!freopen("launch.log", "w", stdout) || !freopen("launch.log", "a", stderr)) _exit(102);
    execl(kSsm.c_str(), kSsm.c_str(), "launch", "--nproc", "2", "--grace", "120", "lm.yaml",
          "trainer.out_dir=killed", "trainer.steps=1000000", "trainer.checkpoint_every=0",
          "+trainer.dist.timeout_s=15", (char*)nullptr);
    _exit(101);
  }
  ASSERT_TRUE(ssm_cli_test::wait_for_file(dir_ / "killed" / "metrics.jsonl", 120)) << "no step logged in 120 s";
  // The ranks are the launcher's children; kill the newest one (rank 1).
  Result ranks = ssm_cli_test::run_in(dir_, "pgrep -n -P " + std::to_string(pid));
  const int victim = std::atoi(ranks.out.c_str());
  ASSERT_GT(victim, 0) << ranks.out;
  const auto t0 = std::chrono::steady_clock::now();
  kill(victim, SIGKILL);
  int status = 0;
  if (!ssm_cli_test::wait_for_exit(pid, &status, 90)) {
    kill(-pid, SIGKILL);
    waitpid(pid, &status, 0);
    FAIL() << "the job did not end within 90 s of a rank's death";
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::ifstream log(dir_ / "launch.log");
  const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_LT(secs, 60.0) << text;  // 15 s timeout + teardown; the launcher alone would wait 120 s
  EXPECT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << text;
  std::cout << "job ended " << secs << " s after the kill; launcher log:\n" << text << std::endl;
}

}  // namespace
