// Data-parallel training end to end on the CPU under `mpirun -np 2` (Open MPI): a 2-rank run equals a
// 1-rank run with accumulation 2 at the same global batch bit for bit; a resumed 2-rank run equals the
// uninterrupted one bit for bit; SIGUSR1 (Slurm's preemption warning, forwarded by mpirun) makes every
// rank stop at the same step with a checkpoint; `ssm launch` refuses a CPU run with a clear message.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli_test_util.h"
#include "core/error.h"
#include "trainers/safetensors.h"

namespace fs = std::filesystem;

namespace {

using ssm_cli_test::kSsm;
using ssm_cli_test::losses;
using ssm_cli_test::max_rel_diff;
using ssm_cli_test::Result;
Result sh(const std::string& cmd, const fs::path& dir) { return ssm_cli_test::run_in(dir, cmd); }


bool have_mpirun() { return std::system("command -v mpirun >/dev/null 2>&1") == 0; }
const std::string kMpirun = "mpirun --allow-run-as-root --oversubscribe -np 2 ";

class CliDist : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_mpirun()) GTEST_SKIP() << "mpirun not installed (scripts/install-deps.sh installs Open MPI)";
    dir_ = fs::temp_directory_path() / ssm::cat("ssm-cli-dist-", ::getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::ofstream(dir_ / "lm.yaml") << "model: {name: mamba_lm, d_model: 16, n_layer: 2, vocab_size: 64, d_state: 4}\n"
                                       "data: {name: synthetic, vocab_size: 64, rows: 256, context: 32, batch_size: 4}\n"
                                       "optimizer: {name: adamw, lr: 0.003}\n"
                                       "trainer: {steps: 8, out_dir: run, log_every: 1, checkpoint_every: 4}\n";
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  fs::path dir_;
};

TEST_F(CliDist, TwoRanksEqualOneRankWithAccumulationTwo) {
  Result dp = sh(kMpirun + kSsm + " train lm.yaml trainer.out_dir=dp", dir_);
  ASSERT_EQ(dp.code, 0) << dp.out;
  EXPECT_NE(dp.out.find("2 processes, mpi"), std::string::npos) << dp.out;
  Result acc = sh(kSsm + " train lm.yaml trainer.out_dir=acc +trainer.accumulate=2", dir_);
  ASSERT_EQ(acc.code, 0) << acc.out;
  const auto l_dp = losses(dir_ / "dp/metrics.jsonl"), l_acc = losses(dir_ / "acc/metrics.jsonl");
  ASSERT_EQ(l_dp.size(), 8u);
  ASSERT_EQ(l_acc.size(), 8u);
  for (size_t i = 0; i < l_dp.size(); ++i) EXPECT_NEAR(l_dp[i], l_acc[i], 1e-6 * std::abs(l_acc[i])) << "step " << i + 1;
  // Same micro-batches (the sampler gives rank r the r-th block of each global batch), each micro-step's
  // gradient summed on its own then added (rank 0's + rank 1's), and the 1/2 exact in f32: the same bits.
  EXPECT_EQ(max_rel_diff(dir_ / "dp/checkpoints/step-8", dir_ / "acc/checkpoints/step-8"), 0.0);
}

TEST_F(CliDist, ResumedRunEqualsTheUninterruptedOneBitForBit) {
  ASSERT_EQ(sh(kMpirun + kSsm + " train lm.yaml trainer.out_dir=full", dir_).code, 0);
  // First half (the schedule still spans 8 steps), then the same command with 8 steps resumes at 4.
  Result half = sh(kMpirun + kSsm + " train lm.yaml trainer.out_dir=split trainer.steps=4 +schedule.total_steps=8", dir_);
  ASSERT_EQ(half.code, 0) << half.out;
  Result rest = sh(kMpirun + kSsm + " train lm.yaml trainer.out_dir=split +schedule.total_steps=8", dir_);
  ASSERT_EQ(rest.code, 0) << rest.out;
  EXPECT_NE(rest.out.find("resuming from"), std::string::npos) << rest.out;
  EXPECT_EQ(max_rel_diff(dir_ / "split/checkpoints/step-8", dir_ / "full/checkpoints/step-8"), 0.0);
}

TEST_F(CliDist, PreemptionSignalStopsEveryRankAtTheSameStepWithACheckpoint) {
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    setpgid(0, 0);  // mpirun and its ranks in one process group: the test can signal or kill them all
    if (chdir(dir_.c_str()) != 0) _exit(100);
    // One OpenMP thread per rank, as run_in does: on a many-core machine busy with other tests, ranks with
    // a thread per core spin in OpenMP barriers and a step can take seconds.
    setenv("OMP_NUM_THREADS", "1", 1);
    if (!freopen("pre.log", "w", stdout) || !freopen("pre.log", "a", stderr)) _exit(102);
    execlp("mpirun", "mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2", kSsm.c_str(), "train",
           "lm.yaml", "trainer.out_dir=pre", "trainer.steps=100000", "trainer.checkpoint_every=0", (char*)nullptr);
    _exit(101);
  }
  const auto log = [&] {
    std::ifstream f(dir_ / "pre.log");
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  };
  int status = 0;
  if (!ssm_cli_test::wait_for_file(dir_ / "pre" / "metrics.jsonl", 60)) {
    kill(-pid, SIGKILL);
    waitpid(pid, &status, 0);
    FAIL() << "no step logged within 60 s:\n" << log();
  }
  // Slurm signals every task of the step: here mpirun's group and each rank (mpirun's direct children, each in
  // its own process group). Whether mpirun forwards SIGUSR1 itself depends on the Open MPI build: the GPU
  // machine's did not, and the ranks ran on.
  kill(-pid, SIGUSR1);
  Result ranks = sh("pgrep -P " + std::to_string(pid), dir_);
  std::istringstream rank_pids(ranks.out);
  for (int rank_pid; rank_pids >> rank_pid;) kill(rank_pid, SIGUSR1);
  if (!ssm_cli_test::wait_for_exit(pid, &status, 60)) {
    kill(-pid, SIGKILL);
    waitpid(pid, &status, 0);
    FAIL() << "the ranks did not stop within 60 s of SIGUSR1:\n" << log();
  }
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 0);
  bool found = false;
  for (const auto& e : fs::directory_iterator(dir_ / "pre" / "checkpoints"))
    found |= e.path().filename().string().rfind("step-", 0) == 0 && e.path().extension() != ".tmp";
  EXPECT_TRUE(found);
}

// ZeRO-1: the same training as plain data parallelism (to 1e-6), less optimizer state per rank, per-rank
// shards in the checkpoint, and a resumed ZeRO run equal to the uninterrupted one bit for bit.
TEST_F(CliDist, Zero1EqualsDataParallelAndResumes) {
  ASSERT_EQ(sh(kMpirun + kSsm + " train lm.yaml trainer.out_dir=dp", dir_).code, 0);
  Result z = sh(kMpirun + kSsm + " train lm.yaml trainer.out_dir=z +trainer.dist.zero=1", dir_);
  ASSERT_EQ(z.code, 0) << z.out;
  EXPECT_NE(z.out.find("ZeRO-1: optimizer state"), std::string::npos) << z.out;
  EXPECT_LT(max_rel_diff(dir_ / "z/checkpoints/step-8", dir_ / "dp/checkpoints/step-8"), 1e-6);
  for (const char* f : {"optimizer-rank0.safetensors", "optimizer-rank1.safetensors"})
    EXPECT_TRUE(fs::exists(dir_ / "z/checkpoints/step-8" / f)) << f;
  Result half = sh(kMpirun + kSsm + " train lm.yaml trainer.out_dir=zs trainer.steps=4 +schedule.total_steps=8 "
                   "+trainer.dist.zero=1", dir_);
  ASSERT_EQ(half.code, 0) << half.out;
  Result rest = sh(kMpirun + kSsm + " train lm.yaml trainer.out_dir=zs +schedule.total_steps=8 +trainer.dist.zero=1", dir_);
  ASSERT_EQ(rest.code, 0) << rest.out;
  EXPECT_NE(rest.out.find("resuming from"), std::string::npos) << rest.out;
  EXPECT_EQ(max_rel_diff(dir_ / "zs/checkpoints/step-8", dir_ / "z/checkpoints/step-8"), 0.0);
}

// A rank killed mid-run (SIGKILL: no chance to say goodbye) ends the whole job quickly with a non-zero
// exit instead of leaving the survivor waiting forever in a collective.
TEST_F(CliDist, KilledRankEndsTheJob) {
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    setpgid(0, 0);
    if (chdir(dir_.c_str()) != 0) _exit(100);
    // One OpenMP thread per rank, as run_in does: on a many-core machine busy with other tests, ranks with
    // a thread per core spin in OpenMP barriers and a step can take seconds.
    setenv("OMP_NUM_THREADS", "1", 1);
    if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr)) _exit(102);
    execlp("mpirun", "mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2", kSsm.c_str(), "train",
           "lm.yaml", "trainer.out_dir=killed", "trainer.steps=100000", "trainer.checkpoint_every=0",
           "+trainer.dist.timeout_s=20", (char*)nullptr);
    _exit(101);
  }
  ssm_cli_test::wait_for_file(dir_ / "killed" / "metrics.jsonl", 60);
  // One rank: mpirun's newest child (the ranks are its direct children, each in its own process group).
  Result ranks = sh("pgrep -n -P " + std::to_string(pid), dir_);
  const int victim = std::atoi(ranks.out.c_str());
  ASSERT_GT(victim, 0) << ranks.out;
  kill(victim, SIGKILL);
  int status = 0;
  if (!ssm_cli_test::wait_for_exit(pid, &status, 60)) {  // 60 s: well under a hang, above the 20 s timeout
    sh("pkill -9 -P " + std::to_string(pid), dir_);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    FAIL() << "the job did not end within 60 s of a rank's death";
  }
  EXPECT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

// scripts/scaling_bench.sh (the scaling runs of issues 5 and 6 on 2, 4, 8 GPUs) exercised on the CPU with its
// mpirun launcher and a tiny model: one line per run with processes, tokens/s and peak memory, and an
// efficiency line per multi-process run; a wrong launcher or run name is refused before anything runs.
TEST_F(CliDist, ScalingScriptRunsOneLinePerRun) {
  const std::string script = std::string(SSM_SOURCE_DIR) + "/scripts/scaling_bench.sh";
  const std::string env =  // OUT absolute: the script runs from the repository root
      "OUT='" + (dir_ / "scaling").string() + "' SCALING_LAUNCHER=mpirun SCALING_RUNS='dp zero1' SCALING_STEPS=6 SCALING_RUN_TIMEOUT=120 "
      "SCALING_OVERRIDES='++trainer.device=cpu ++trainer.precision=f32 ++model.preset=none ++model.d_model=16 "
      "++model.n_layer=2 ++model.vocab_size=64 ++data.vocab_size=64 ++data.context=32 ++data.batch_size=2 "
      "++data.rows=64' ";
  Result r = sh(env + script + " " + kSsm + " 2", dir_);
  ASSERT_EQ(r.code, 0) << r.out;
  for (const char* want : {"p1 1 ", "p2-dp 2 ", "p2-zero1 2 ", "efficiency p2-dp: ", "efficiency p2-zero1: "})
    EXPECT_NE(r.out.find(want), std::string::npos) << want << " missing in:\n" << r.out;
  EXPECT_EQ(r.out.find("error"), std::string::npos) << r.out;
  Result bad = sh("SCALING_LAUNCHER=srun " + script + " " + kSsm + " 2", dir_);
  EXPECT_EQ(bad.code, 2) << bad.out;
  EXPECT_NE(bad.out.find("SCALING_LAUNCHER"), std::string::npos) << bad.out;
  Result badrun = sh("SCALING_RUNS=fast " + script + " " + kSsm + " 2", dir_);
  EXPECT_EQ(badrun.code, 2) << badrun.out;
  EXPECT_NE(badrun.out.find("unknown run 'fast'"), std::string::npos) << badrun.out;
}

}  // namespace
