// `ssm launch --nproc N RECIPE.yaml [overrides]`: N local processes of `ssm train`, without torchrun.
//
// launch_local forks and execs `program` (default: this binary, /proc/self/exe) N times with `args`
// (e.g. {"train", "recipe.yaml", "trainer.device=cuda"}) and, in each child's environment,
//   RANK = LOCAL_RANK = r, WORLD_SIZE = LOCAL_WORLD_SIZE = N, MASTER_ADDR = 127.0.0.1,
//   MASTER_PORT = a free port p (p + 1, the NCCL rendezvous port, is free too)
// plus `extra_env`. Children run in their own process group (so a terminal's Ctrl-C reaches them once,
// through the launcher) and get SIGTERM if the launcher dies (PR_SET_PDEATHSIG).
//
// Signals: SIGTERM, SIGINT and SIGUSR1 received by the launcher are forwarded to every live child (the
// trainer then checkpoints and stops). Failures: when a child exits non-zero (or is killed), the others
// get `grace_s` seconds to finish on their own (they usually fail fast through their communicator's
// timeout), then SIGTERM, then SIGKILL `kill_after_s` later. The launcher returns the first failure's
// exit code (128 + signal for a child killed by a signal), or 0 when every child exited 0.
//
// With prefix_output, each child's stdout and stderr lines are copied to the launcher's with a
// "[rank r] " prefix ('\r' progress updates count as lines).
#pragma once
#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace ssm::train {

struct LaunchOptions {
  std::string program;  // empty: /proc/self/exe
  std::vector<std::pair<std::string, std::string>> extra_env;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;       // 0: pick a free pair
  double grace_s = 30.0;     // after a failure, before SIGTERM to the others
  double kill_after_s = 10.0;  // after that SIGTERM, before SIGKILL
  bool prefix_output = true;
  int out_fd = 1, err_fd = 2;   // where prefixed child stdout / stderr lines go
  std::ostream* log = nullptr;  // launcher messages ("rank 1 exited with code 3; ..."); nullptr: std::cerr
};

int launch_local(int nproc, const std::vector<std::string>& args, const LaunchOptions& options = {});

}  // namespace ssm::train
