// launch_local with /bin/sh children: environment, exit codes, failure handling, signal forwarding,
// output prefixes.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "trainers/comm.h"
#include "trainers/launch.h"

using namespace ssm;
using namespace ssm::train;
namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("ssm_test_launch_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

LaunchOptions sh_options(std::ostream* log) {
  LaunchOptions o;
  o.program = "/bin/sh";
  o.log = log;
  o.prefix_output = false;
  return o;
}

}  // namespace

TEST(Launch, ChildrenGetTheRendezvousEnvironment) {
  const fs::path dir = fresh_dir("env");
  std::ostringstream log;
  LaunchOptions o = sh_options(&log);
  o.extra_env = {{"SSM_TEST_DIR", dir.string()}};
  const int rc = launch_local(3, {"-c", "echo $RANK $WORLD_SIZE $LOCAL_RANK $LOCAL_WORLD_SIZE $MASTER_ADDR "
                                        "$MASTER_PORT > $SSM_TEST_DIR/env.$RANK"},
                              o);
  EXPECT_EQ(rc, 0) << log.str();
  std::string port;
  for (int r = 0; r < 3; ++r) {
    std::istringstream in(slurp(dir / ("env." + std::to_string(r))));
    int rank, world, local, local_world;
    std::string addr, p;
    in >> rank >> world >> local >> local_world >> addr >> p;
    EXPECT_EQ(rank, r);
    EXPECT_EQ(world, 3);
    EXPECT_EQ(local, r);
    EXPECT_EQ(local_world, 3);
    EXPECT_EQ(addr, "127.0.0.1");
    if (r == 0) port = p;
    EXPECT_EQ(p, port);  // one port for all
  }
  EXPECT_GT(std::stoi(port), 0);
  fs::remove_all(dir);
}

TEST(Launch, AFailingChildStopsTheOthersAfterTheGraceTime) {
  std::ostringstream log;
  LaunchOptions o = sh_options(&log);
  o.grace_s = 0.5;
  o.kill_after_s = 2.0;
  const double t0 = monotonic_seconds();
  // Rank 1 fails at once; ranks 0 and 2 would sleep for a minute.
  const int rc = launch_local(3, {"-c", "if [ \"$RANK\" = 1 ]; then exit 3; fi; sleep 60"}, o);
  const double took = monotonic_seconds() - t0;
  EXPECT_EQ(rc, 3);
  EXPECT_LT(took, 5.0) << log.str();
  EXPECT_NE(log.str().find("rank 1 exited with code 3"), std::string::npos) << log.str();
  EXPECT_NE(log.str().find("SIGTERM"), std::string::npos) << log.str();
}

TEST(Launch, ChildIgnoringSigtermIsKilled) {
  std::ostringstream log;
  LaunchOptions o = sh_options(&log);
  o.grace_s = 0.2;
  o.kill_after_s = 0.5;
  const double t0 = monotonic_seconds();
  const int rc =
      launch_local(2, {"-c", "if [ \"$RANK\" = 0 ]; then exit 5; fi; trap '' TERM; while :; do sleep 0.1; done"}, o);
  EXPECT_EQ(rc, 5);
  EXPECT_LT(monotonic_seconds() - t0, 5.0);
  EXPECT_NE(log.str().find("SIGKILL"), std::string::npos) << log.str();
}

TEST(Launch, ExitCodesAndKilledChildren) {
  std::ostringstream log;
  LaunchOptions o = sh_options(&log);
  EXPECT_EQ(launch_local(2, {"-c", "exit 0"}, o), 0);
  EXPECT_EQ(launch_local(1, {"-c", "kill -9 $$"}, o), 128 + 9);
  EXPECT_THROW(launch_local(0, {"-c", "exit 0"}, o), Error);
}

TEST(Launch, ForwardsSignalsToEveryChild) {
  const fs::path dir = fresh_dir("signal");
  std::ostringstream log;
  LaunchOptions o = sh_options(&log);
  o.extra_env = {{"SSM_TEST_DIR", dir.string()}};
  int rc = -1;
  // Each child: on SIGUSR1 note it and exit 7; announce readiness, then wait.
  std::thread launcher([&] {
    rc = launch_local(2, {"-c", "trap 'echo usr1 > $SSM_TEST_DIR/got.$RANK; exit 7' USR1; "
                                "touch $SSM_TEST_DIR/ready.$RANK; i=0; while [ $i -lt 200 ]; do sleep 0.05; "
                                "i=$((i+1)); done; exit 0"},
                      o);
  });
  const double t0 = monotonic_seconds();
  while (!(fs::exists(dir / "ready.0") && fs::exists(dir / "ready.1")) && monotonic_seconds() - t0 < 10)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(fs::exists(dir / "ready.0") && fs::exists(dir / "ready.1"));
  ::kill(::getpid(), SIGUSR1);  // as Slurm would signal the launcher
  launcher.join();
  EXPECT_EQ(rc, 7) << log.str();
  EXPECT_EQ(slurp(dir / "got.0"), "usr1\n");
  EXPECT_EQ(slurp(dir / "got.1"), "usr1\n");
  EXPECT_NE(log.str().find("forwarding signal " + std::to_string(SIGUSR1)), std::string::npos) << log.str();
  fs::remove_all(dir);
}

TEST(Launch, PrefixesEachLineWithTheRank) {
  const fs::path dir = fresh_dir("prefix");
  const int out = ::open((dir / "out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const int err = ::open((dir / "err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::ostringstream log;
  LaunchOptions o = sh_options(&log);
  o.prefix_output = true;
  o.out_fd = out;
  o.err_fd = err;
  EXPECT_EQ(launch_local(2, {"-c", "if [ $RANK = 1 ]; then sleep 0.2; fi; printf 'a\\nb\\n'; printf 'oops' >&2"}, o), 0);
  ::close(out);
  ::close(err);
  EXPECT_EQ(slurp(dir / "out"), "[rank 0] a\n[rank 0] b\n[rank 1] a\n[rank 1] b\n");
  EXPECT_EQ(slurp(dir / "err"), "[rank 0] oops\n[rank 1] oops\n");
  fs::remove_all(dir);
}
