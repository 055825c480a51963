#include <gtest/gtest.h>

#include <map>

#include "core/error.h"
#include "trainers/reducer.h"

using namespace ssm;
using namespace ssm::train;

namespace {
EnvLookup env_of(std::map<std::string, std::string> m) {
  return [m](const std::string& k) -> std::optional<std::string> {
    auto it = m.find(k);
    if (it == m.end()) return std::nullopt;
    return it->second;
  };
}
std::string bad(const std::map<std::string, std::string>& m) {
  try {
    parse_launch_env(env_of(m));
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput);
    return e.what();
  }
  ADD_FAILURE() << "expected an error";
  return "";
}
}  // namespace

TEST(LaunchEnv, DefaultsToOneProcess) {
  ProcessGroupEnv pg = parse_launch_env(env_of({}));
  EXPECT_EQ(pg.rank, 0);
  EXPECT_EQ(pg.world_size, 1);
  EXPECT_EQ(pg.local_rank, 0);
  EXPECT_EQ(pg.launcher, "none");
}

TEST(LaunchEnv, Torchrun) {
  ProcessGroupEnv pg = parse_launch_env(env_of({{"RANK", "5"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"},
                                                {"LOCAL_WORLD_SIZE", "4"}, {"MASTER_ADDR", "node1"},
                                                {"MASTER_PORT", "29500"},
                                                // srun started torchrun: Slurm's view is per node, ignored
                                                {"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "2"}}));
  EXPECT_EQ(pg.launcher, "torchrun");
  EXPECT_EQ(pg.rank, 5);
  EXPECT_EQ(pg.world_size, 8);
  EXPECT_EQ(pg.local_rank, 1);
  EXPECT_EQ(pg.local_world_size, 4);
  EXPECT_EQ(pg.master_addr, "node1");
  EXPECT_EQ(pg.master_port, 29500);
}

TEST(LaunchEnv, SlurmAndMpi) {
  ProcessGroupEnv s = parse_launch_env(env_of({{"SLURM_PROCID", "3"}, {"SLURM_NTASKS", "4"}, {"SLURM_LOCALID", "1"}}));
  EXPECT_EQ(s.launcher, "slurm");
  EXPECT_EQ(s.rank, 3);
  EXPECT_EQ(s.world_size, 4);
  EXPECT_EQ(s.local_rank, 1);
  ProcessGroupEnv m = parse_launch_env(env_of({{"OMPI_COMM_WORLD_RANK", "2"}, {"OMPI_COMM_WORLD_SIZE", "3"},
                                               {"OMPI_COMM_WORLD_LOCAL_RANK", "0"},
                                               {"OMPI_COMM_WORLD_LOCAL_SIZE", "1"},
                                               {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}}));
  EXPECT_EQ(m.launcher, "mpi");
  EXPECT_EQ(m.rank, 2);
  EXPECT_EQ(m.world_size, 3);
  EXPECT_EQ(m.local_world_size, 1);
}

TEST(LaunchEnv, InconsistentValues) {
  EXPECT_NE(bad({{"RANK", "1"}}).find("RANK is set but WORLD_SIZE is not"), std::string::npos);
  EXPECT_NE(bad({{"WORLD_SIZE", "2"}}).find("WORLD_SIZE is set but RANK is not"), std::string::npos);
  EXPECT_NE(bad({{"RANK", "4"}, {"WORLD_SIZE", "4"}}).find("RANK=4 must be in [0, WORLD_SIZE=4)"), std::string::npos);
  EXPECT_NE(bad({{"RANK", "x1"}, {"WORLD_SIZE", "4"}}).find("RANK='x1' is not an integer"), std::string::npos);
  EXPECT_NE(bad({{"RANK", "0"}, {"WORLD_SIZE", "0"}}).find("WORLD_SIZE=0 must be >= 1"), std::string::npos);
  EXPECT_NE(bad({{"RANK", "1"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "3"}, {"LOCAL_WORLD_SIZE", "2"}})
                .find("LOCAL_RANK=3 is inconsistent with RANK=1 and LOCAL_WORLD_SIZE=2"),
            std::string::npos);
  EXPECT_NE(bad({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_LOCALID", "-1"}}).find("SLURM_LOCALID=-1"),
            std::string::npos);
  EXPECT_NE(bad({{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"MASTER_PORT", "70000"}}).find("MASTER_PORT=70000"),
            std::string::npos);
}

TEST(LocalReducer, IsANoOp) {
  LocalReducer r;
  EXPECT_EQ(r.rank(), 0);
  EXPECT_EQ(r.world_size(), 1);
  std::vector<nn::Parameter> none;
  r.reduce(none);
  GradReducer& base = r;
  EXPECT_EQ(base.world_size(), 1);
}
