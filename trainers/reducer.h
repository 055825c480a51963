// Data parallelism: the one place where gradients are reduced across ranks, and the launch environment.
//
// GradReducer::reduce(params) leaves every parameter's gradient equal to the mean over ranks. For now
// only LocalReducer (one process, a no-op) exists; the NCCL reducer (bucketed, driven by autograd
// gradient hooks so that communication overlaps the backward pass) will implement the same interface.
//
// parse_launch_env() finds rank / world size / local rank from the launcher's environment, in order:
//   torchrun:  RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT
//   mpirun:    OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK, _LOCAL_SIZE
//   srun:      SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID
// and defaults to a single process (0 / 1 / 0). The first launcher whose variables are present wins
// (srun starting one torchrun per node sets both; torchrun's describe the workers). Inconsistent values
// (not integers, rank >= world size, a rank without its world size, ...) are BadInput naming the variables.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "layers/module.h"

namespace ssm::train {

class GradReducer {
 public:
  virtual ~GradReducer() = default;
  virtual void reduce(std::vector<nn::Parameter>& params) = 0;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
};

class LocalReducer : public GradReducer {
 public:
  void reduce(std::vector<nn::Parameter>&) override {}
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
};

struct ProcessGroupEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;   // processes on this node (when the launcher says)
  std::string launcher = "none";  // none | torchrun | mpi | slurm
  std::string master_addr;        // torchrun rendezvous (empty otherwise)
  int master_port = 0;
};

using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
ProcessGroupEnv parse_launch_env();                        // from the process environment
ProcessGroupEnv parse_launch_env(const EnvLookup& getenv);  // from any lookup (tests)

}  // namespace ssm::train
