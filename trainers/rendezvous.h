// Rendezvous: how the ranks of a run agree on the 128-byte NCCL unique id (or any small payload).
//
// Under mpirun (launcher "mpi", MPI built in): MPI_Bcast from rank 0.
// Otherwise (torchrun, srun, `ssm launch`): a small TCP exchange. Rank 0 listens on every interface at
//   port = MASTER_PORT + 1
// (torchrun's own store already listens on MASTER_PORT, so that port is left alone); every other rank
// connects to MASTER_ADDR:port, retrying until the timeout, and receives the payload after a handshake:
//   peer -> rank 0: magic "SSMR", protocol version, world size, rank        (4 x u32, network order)
//   rank 0 -> peer: magic, status (0 ok), payload length, payload or an error message
// A connection with a wrong magic (a stray client) is ignored by rank 0; a different world size, a rank
// out of range or a rank seen twice is an error on both sides. Everything is bounded by the timeout and
// errors name the address and port.
//
// Where MASTER_ADDR / MASTER_PORT come from (rendezvous_endpoint):
//   MASTER_ADDR: the variable when set (torchrun and `ssm launch` set it); else, under Slurm, the first
//                host of SLURM_JOB_NODELIST (or SLURM_NODELIST): "node[03-05,9],gpu1" -> "node03".
//   MASTER_PORT: the variable when set; else, under Slurm, 20000 + SLURM_JOB_ID mod 20000 (so the
//                rendezvous port, one above, lies in [20001, 40000] and differs between jobs).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "trainers/reducer.h"

namespace ssm::train {

struct RendezvousEndpoint {
  std::string host;  // MASTER_ADDR
  int port = 0;      // the rendezvous port: MASTER_PORT + 1
  std::string how;   // how host and port were found, for messages
};

RendezvousEndpoint rendezvous_endpoint(const ProcessGroupEnv& env, const EnvLookup& getenv);
RendezvousEndpoint rendezvous_endpoint(const ProcessGroupEnv& env);  // from the process environment

// The first host name of a Slurm node list ("a[1-3,7]b,c" -> "a1b"); BadInput on an empty list.
std::string slurm_first_host(const std::string& nodelist);

// Rank 0 serves `payload` (its argument; ignored elsewhere) to ranks 1..world_size-1; returns the payload
// on every rank. Bounded by timeout_s.
std::vector<uint8_t> tcp_broadcast(const RendezvousEndpoint& ep, int rank, int world_size,
                                   const std::vector<uint8_t>& payload, double timeout_s);

// The NCCL id: MPI_Bcast under mpirun when MPI is built in, else tcp_broadcast at rendezvous_endpoint(env).
std::vector<uint8_t> share_bytes(const ProcessGroupEnv& env, const std::vector<uint8_t>& payload_on_rank0,
                                 double timeout_s);

// Two free TCP ports p and p + 1 on this host (for `ssm launch`: MASTER_PORT and the rendezvous port).
int free_port_pair();

}  // namespace ssm::train
