// Private to trainers/: the process-wide MPI runtime behind MpiCommunicator and the mpirun rendezvous.
// MPI is initialised on first use (MPI_Init_thread, MPI_THREAD_SERIALIZED: every call below holds one
// mutex) and finalised at exit, or, if a communicator was aborted, MPI_Abort'ed at exit so that mpirun
// stops the other ranks instead of this one waiting forever in MPI_Finalize.
#pragma once
#include <cstddef>
#include <string>

namespace ssm::train::mpi {

#ifdef SSM_WITH_MPI
void ensure_init();
int world_rank();
int world_size();
// MPI_Ibcast over MPI_COMM_WORLD of `bytes` bytes, polled until `timeout_s` (then abort + throw).
void broadcast_bytes(void* data, size_t bytes, int root, double timeout_s, const std::string& what);
// Remember that a communicator failed: the exit path calls MPI_Abort instead of MPI_Finalize.
void mark_aborted(const std::string& reason);
#endif

}  // namespace ssm::train::mpi
