// Communicator: collectives over the ranks of a data-parallel run, with bounded waits.
//
//   auto comm = make_communicator(parse_launch_env(), device, /*timeout_s=*/300);
//   comm->all_reduce(t, ReduceOp::Avg);                         // blocking, in place
//   WorkPtr w = comm->all_reduce_async(buf, ReduceOp::Avg, "all-reduce of bucket 3");
//   ...                                                          // overlap other work
//   w->wait();                                                   // bounded
//
// Backends: NcclCommunicator (CUDA tensors f32/bf16/f64, trainers/comm_nccl.cpp) and MpiCommunicator
// (CPU tensors f32/f64/bf16, trainers/comm_mpi.cpp). make_communicator picks NCCL for a CUDA device and
// MPI for the CPU; a backend that was not built in is BadInput saying how to get it.
//
// Tensors are contiguous, on the communicator's device, and every rank passes the same dtype and numel
// in the same order of calls (as with NCCL/MPI themselves: a mismatch is undefined behaviour there, and
// a hang here until the timeout).
//   all_reduce(t):              t = op over ranks of t                       (every rank: same numel n)
//   reduce_scatter(in, out):    out = op over ranks of in[rank*m : (rank+1)*m]  (in: size*m, out: m)
//   all_gather(in, out):        out[r*m : (r+1)*m] = in of rank r              (in: m, out: size*m)
//   broadcast(t, root):         t = t of root
// Avg is Sum followed by a multiplication by 1/size (NCCL: ncclAvg).
//
// Bounded time: every blocking wait polls the operation with the communicator's timeout (NCCL: also
// ncclCommGetAsyncError). When it runs out, the communicator is aborted (abort()) and the wait throws
// ssm::Error (Internal) such as
//   "rank 1: all-reduce of bucket 3 did not complete within 300 s: a peer died or hangs; aborting"
// After abort() every call throws. NCCL: ncclCommAbort cancels the pending kernels. MPI: an MPI
// operation cannot be cancelled, so the process must not wait in MPI_Finalize: at exit an aborted MPI
// communicator calls MPI_Abort, which makes mpirun stop every rank.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/tensor.h"
#include "trainers/reducer.h"

namespace ssm::train {

enum class ReduceOp { Sum, Avg };
const char* reduce_op_name(ReduceOp op);

// A pending collective. Tensors given to the call must stay alive (and unmodified) until wait()
// returned; the handle keeps them referenced.
class Work {
 public:
  virtual ~Work() = default;
  // Blocks until the operation is complete, at most the communicator's timeout (then: abort + throw).
  // On CUDA, when wait() returns the result is ready for work queued afterwards on the current stream.
  virtual void wait() = 0;
  // Non-blocking: true once complete (MPI: also drives progress). Throws if the communicator failed.
  virtual bool done() = 0;
};
using WorkPtr = std::shared_ptr<Work>;

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual Device device() const = 0;
  virtual const char* backend() const = 0;  // "mpi" | "nccl"
  double timeout_s() const { return timeout_s_; }

  // `what` names the operation in error messages ("all-reduce of bucket 3").
  virtual WorkPtr all_reduce_async(Tensor& t, ReduceOp op, const std::string& what = "all-reduce") = 0;
  virtual WorkPtr reduce_scatter_async(const Tensor& in, Tensor& out, ReduceOp op,
                                       const std::string& what = "reduce-scatter") = 0;
  virtual WorkPtr all_gather_async(const Tensor& in, Tensor& out, const std::string& what = "all-gather") = 0;
  virtual WorkPtr broadcast_async(Tensor& t, int root, const std::string& what = "broadcast") = 0;

  void all_reduce(Tensor& t, ReduceOp op, const std::string& what = "all-reduce") {
    all_reduce_async(t, op, what)->wait();
  }
  void reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op, const std::string& what = "reduce-scatter") {
    reduce_scatter_async(in, out, op, what)->wait();
  }
  void all_gather(const Tensor& in, Tensor& out, const std::string& what = "all-gather") {
    all_gather_async(in, out, what)->wait();
  }
  void broadcast(Tensor& t, int root, const std::string& what = "broadcast") { broadcast_async(t, root, what)->wait(); }
  // Every rank reaches it before any leaves (bounded like the rest).
  virtual void barrier(const std::string& what = "barrier") = 0;

  // Makes the communicator unusable and cancels what can be cancelled; idempotent. Later calls throw
  // an error that quotes `reason`.
  virtual void abort(const std::string& reason) = 0;
  virtual bool aborted() const = 0;

 protected:
  explicit Communicator(double timeout_s) : timeout_s_(timeout_s) {}
  double timeout_s_;
};

// NCCL for a CUDA device (the NCCL id travels through MPI under mpirun, else through the TCP
// rendezvous of trainers/rendezvous.h), MPI for the CPU (needs mpirun, or srun with MPI support).
// timeout_s > 0 bounds every wait, initialisation included.
std::shared_ptr<Communicator> make_communicator(const ProcessGroupEnv& env, Device device, double timeout_s);

// ---- small collectives for the training loop ----
// The op over ranks of one number, through a 1-element f64 tensor on the communicator's device: e.g.
// the mean loss for logging, or "did any rank get a stop signal" (Sum of 0/1 > 0) so that every rank
// stops at the same step.
double all_reduce_scalar(Communicator& c, double value, ReduceOp op, const std::string& what = "all-reduce of a scalar");
// Broadcasts every floating tensor in place from `root` (e.g. the model's state_dict() after
// initialisation or loading, so all ranks start from identical weights); other dtypes are left alone.
void broadcast_tensors(Communicator& c, const std::vector<Tensor>& tensors, int root = 0,
                       const std::string& what = "broadcast of the initial weights");

// ---- helpers shared by the backends (comm.cpp) ----
// Checks shape/dtype/device rules of one call; BadInput naming the op, the tensor and the communicator.
void check_comm_tensor(const Communicator& c, const Tensor& t, const char* op, const char* role);
void check_comm_sizes(const Communicator& c, const Tensor& in, const Tensor& out, const char* op, bool scatter);
// The timeout message: "rank R: WHAT did not complete within T s: a peer died or hangs; aborting".
std::string comm_timeout_message(int rank, const std::string& what, double timeout_s);
// Polling with a deadline: spins briefly, then sleeps up to 1 ms between polls.
class PollDelay {
 public:
  void pause();
 private:
  int polls_ = 0;
};
double monotonic_seconds();

// Backend constructors (only linked in when built: SSM_WITH_MPI / SSM_WITH_NCCL).
std::shared_ptr<Communicator> make_mpi_communicator(const ProcessGroupEnv& env, double timeout_s);
std::shared_ptr<Communicator> make_nccl_communicator(const ProcessGroupEnv& env, Device device, double timeout_s);
bool mpi_built();
bool nccl_built();

}  // namespace ssm::train
