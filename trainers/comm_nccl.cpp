// NcclCommunicator: CUDA tensors (f32, bf16, f64) over NCCL, one process per GPU.
//
// Initialisation: rank 0 makes the unique id (ncclGetUniqueId), share_bytes() hands it to every rank
// (MPI_Bcast under mpirun, else the TCP rendezvous at MASTER_ADDR:MASTER_PORT+1), then
// ncclCommInitRankConfig with blocking = 0, so that initialisation too is polled with the timeout.
//
// Ordering: every collective runs on the communicator's own high-priority stream. It first waits (event)
// for what the compute stream (ssm::cuda::current_stream) has queued so far, e.g. the bucket's flatten
// copy; Work::wait() then polls its completion event from the host (bounded, with
// ncclCommGetAsyncError each time) and finally makes the compute stream wait for it, so kernels queued
// afterwards see the result. The host never blocks inside CUDA on a collective, so a dead peer is always
// noticed: on timeout or an asynchronous NCCL error the communicator is aborted (ncclCommAbort, which
// also ends the pending kernels) and the wait throws.
#include "trainers/comm.h"

#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/error.h"

#ifdef SSM_WITH_NCCL
#include <cuda_runtime.h>
#include <nccl.h>

#include "core/cuda/stream.h"
#include "trainers/rendezvous.h"
#endif

namespace ssm::train {

#ifndef SSM_WITH_NCCL

bool nccl_built() { return false; }
std::shared_ptr<Communicator> make_nccl_communicator(const ProcessGroupEnv& env, Device device, double) {
  throw_input(cat("rank ", env.rank, ": this build has no NCCL communicator (needed for ", device.str(),
                  "); configure with -DSSM_ENABLE_CUDA=ON where NCCL is installed"));
}

#else

bool nccl_built() { return true; }

namespace {

void check_cuda(cudaError_t e, const char* call) {
  SSM_CHECK(e == cudaSuccess, call, " failed: ", cudaGetErrorString(e));
}

ncclDataType_t nccl_type(DType d) {
  switch (d) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::bf16: return ncclBfloat16;
    default: throw_internal(cat("NCCL communicator: dtype ", dtype_name(d), " is not supported"));
  }
}

struct NcclState {
  ncclComm_t comm = nullptr;
  int rank = 0, size = 1, device = 0;
  double timeout_s = 0;
  cudaStream_t stream = nullptr;
  bool aborted = false;
  std::string reason;

  [[noreturn]] void throw_aborted(const std::string& what) const {
    throw_internal(cat("rank ", rank, ": ", what, ": the NCCL communicator was aborted earlier (", reason, ")"));
  }

  void abort(const std::string& why) {
    if (aborted) return;
    aborted = true;
    reason = why;
    if (comm) ncclCommAbort(comm);
    comm = nullptr;
  }

  [[noreturn]] void fail(const std::string& msg) {
    abort(msg);
    throw_internal(msg);
  }

  // An NCCL error (returned or asynchronous) is fatal for the communicator: abort it and throw.
  void check_result(ncclResult_t r, const std::string& what) {
    if (r == ncclSuccess || r == ncclInProgress) return;
    const char* last = comm ? ncclGetLastError(comm) : "";
    fail(cat("rank ", rank, ": ", what, " failed: NCCL ", ncclGetErrorString(r), (last && *last ? ": " : ""),
             (last ? last : ""), " (a peer died, or see NCCL_DEBUG=WARN); aborting"));
  }

  // Non-blocking communicator: a call may return ncclInProgress; wait (bounded) until it has settled.
  void settle(const std::string& what) {
    const double deadline = monotonic_seconds() + timeout_s;
    PollDelay delay;
    for (;;) {
      ncclResult_t st = ncclSuccess;
      check_result(ncclCommGetAsyncError(comm, &st), what);
      if (st == ncclSuccess) return;
      check_result(st, what);
      if (monotonic_seconds() > deadline) fail(comm_timeout_message(rank, what, timeout_s));
      delay.pause();
    }
  }
};

class NcclWork : public Work {
 public:
  NcclWork(std::shared_ptr<NcclState> st, cudaEvent_t done, cudaStream_t compute, std::string what,
           std::vector<Tensor> keep)
      : st_(std::move(st)), done_(done), compute_(compute), what_(std::move(what)), keep_(std::move(keep)) {}

  ~NcclWork() override {
    if (!complete_ && !st_->aborted) {
      try {
        wait();  // the buffers must outlive the collective
      } catch (...) {
      }
    }
    cudaEventDestroy(done_);
  }

  bool done() override {
    if (complete_) return true;
    if (st_->aborted) st_->throw_aborted(what_);
    const cudaError_t q = cudaEventQuery(done_);
    if (q == cudaErrorNotReady) {
      ncclResult_t st = ncclSuccess;
      st_->check_result(ncclCommGetAsyncError(st_->comm, &st), what_);
      st_->check_result(st, what_);
      return false;
    }
    check_cuda(q, "cudaEventQuery");
    check_cuda(cudaStreamWaitEvent(compute_, done_, 0), "cudaStreamWaitEvent");
    complete_ = true;
    keep_.clear();
    return true;
  }

  void wait() override {
    const double deadline = monotonic_seconds() + st_->timeout_s;
    PollDelay delay;
    while (!done()) {
      if (monotonic_seconds() > deadline) st_->fail(comm_timeout_message(st_->rank, what_, st_->timeout_s));
      delay.pause();
    }
  }

 private:
  std::shared_ptr<NcclState> st_;
  cudaEvent_t done_;
  cudaStream_t compute_;
  std::string what_;
  std::vector<Tensor> keep_;
  bool complete_ = false;
};

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(const ProcessGroupEnv& env, Device device, double timeout_s) : Communicator(timeout_s) {
    // NCCL's socket transport (nodes without an InfiniBand/RoCE path) defaults to 1 helper thread x 1
    // socket per connection; NCCL's documentation suggests 4 x 4 for 100 Gb/s networks. Take that unless
    // the user set either (only the socket transport reads them). Measured on the 2 x H200 machine's eth0
    // (bench/RESULTS.md): 2-GPU scaling of the 130M LM 1.62x -> 1.80x in one run, no change in a later one.
    ::setenv("NCCL_SOCKET_NTHREADS", "4", 0);
    ::setenv("NCCL_NSOCKS_PERTHREAD", "4", 0);
    st_ = std::make_shared<NcclState>();
    st_->rank = env.rank;
    st_->size = env.world_size;
    st_->device = device.index;
    st_->timeout_s = timeout_s;
    cuda::DeviceGuard guard(device.index);
    ncclUniqueId id;
    std::memset(&id, 0, sizeof id);
    std::vector<uint8_t> mine;
    if (env.rank == 0) {
      NcclState& s = *st_;
      s.check_result(ncclGetUniqueId(&id), "ncclGetUniqueId");
      mine.assign(reinterpret_cast<uint8_t*>(&id), reinterpret_cast<uint8_t*>(&id) + sizeof id);
    }
    const std::vector<uint8_t> got = share_bytes(env, mine, timeout_s);
    SSM_CHECK(got.size() == sizeof id, "rank ", env.rank, ": the rendezvous delivered ", got.size(),
              " bytes, expected a ", sizeof id, "-byte NCCL unique id");
    std::memcpy(&id, got.data(), sizeof id);
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    const std::string what = cat("NCCL initialisation (rank ", env.rank, " of ", env.world_size, " on cuda:",
                                 device.index, ")");
    ncclResult_t r = ncclCommInitRankConfig(&st_->comm, env.world_size, id, env.rank, &cfg);
    st_->check_result(r, what);
    st_->settle(what);
    int lo = 0, hi = 0;
    check_cuda(cudaDeviceGetStreamPriorityRange(&lo, &hi), "cudaDeviceGetStreamPriorityRange");
    check_cuda(cudaStreamCreateWithPriority(&st_->stream, cudaStreamNonBlocking, hi), "cudaStreamCreateWithPriority");
  }

  ~NcclCommunicator() override {
    cuda::DeviceGuard guard(st_->device);
    if (!st_->aborted && st_->comm) {
      try {
        st_->check_result(ncclCommFinalize(st_->comm), "ncclCommFinalize");
        st_->settle("ncclCommFinalize");
        ncclCommDestroy(st_->comm);
        st_->comm = nullptr;
      } catch (...) {
      }
    }
    if (st_->stream) cudaStreamDestroy(st_->stream);
  }

  int rank() const override { return st_->rank; }
  int size() const override { return st_->size; }
  Device device() const override { return Device::cuda(st_->device); }
  const char* backend() const override { return "nccl"; }

  WorkPtr all_reduce_async(Tensor& t, ReduceOp op, const std::string& what) override {
    check_comm_tensor(*this, t, "all-reduce", "in-place");
    return run(what, {t}, [&](cudaStream_t s) {
      return ncclAllReduce(t.data_ptr(), t.data_ptr(), size_t(t.numel()), nccl_type(t.dtype()), nccl_op(op),
                           st_->comm, s);
    });
  }

  WorkPtr reduce_scatter_async(const Tensor& in, Tensor& out, ReduceOp op, const std::string& what) override {
    check_comm_sizes(*this, in, out, "reduce-scatter", true);
    return run(what, {in, out}, [&](cudaStream_t s) {
      return ncclReduceScatter(in.data_ptr(), out.data_ptr(), size_t(out.numel()), nccl_type(in.dtype()), nccl_op(op),
                               st_->comm, s);
    });
  }

  WorkPtr all_gather_async(const Tensor& in, Tensor& out, const std::string& what) override {
    check_comm_sizes(*this, in, out, "all-gather", false);
    return run(what, {in, out}, [&](cudaStream_t s) {
      return ncclAllGather(in.data_ptr(), out.data_ptr(), size_t(in.numel()), nccl_type(in.dtype()), st_->comm, s);
    });
  }

  WorkPtr broadcast_async(Tensor& t, int root, const std::string& what) override {
    check_comm_tensor(*this, t, "broadcast", "in-place");
    SSM_CHECK_INPUT(root >= 0 && root < size(), "nccl broadcast: root ", root, " is not a rank of ", size());
    return run(what, {t}, [&](cudaStream_t s) {
      return ncclBroadcast(t.data_ptr(), t.data_ptr(), size_t(t.numel()), nccl_type(t.dtype()), root, st_->comm, s);
    });
  }

  void barrier(const std::string& what) override {
    Tensor one = Tensor::ones({1}, DType::f32, device());
    all_reduce_async(one, ReduceOp::Sum, what)->wait();
  }

  void abort(const std::string& reason) override { st_->abort(reason); }
  bool aborted() const override { return st_->aborted; }

 private:
  std::shared_ptr<NcclState> st_;

  static ncclRedOp_t nccl_op(ReduceOp op) { return op == ReduceOp::Avg ? ncclAvg : ncclSum; }

  template <typename Call>
  WorkPtr run(const std::string& what, std::vector<Tensor> keep, Call&& call) {
    if (st_->aborted) st_->throw_aborted(what);
    cuda::DeviceGuard guard(st_->device);
    cudaStream_t compute = cuda::current_stream(st_->device);
    cudaEvent_t ready = nullptr, done = nullptr;
    check_cuda(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), "cudaEventCreate");
    check_cuda(cudaEventRecord(ready, compute), "cudaEventRecord");
    check_cuda(cudaStreamWaitEvent(st_->stream, ready, 0), "cudaStreamWaitEvent");
    cudaEventDestroy(ready);  // legal: the wait was already enqueued
    st_->check_result(call(st_->stream), what);
    st_->settle(what);
    check_cuda(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreate");
    check_cuda(cudaEventRecord(done, st_->stream), "cudaEventRecord");
    return std::make_shared<NcclWork>(st_, done, compute, what, std::move(keep));
  }
};

}  // namespace

std::shared_ptr<Communicator> make_nccl_communicator(const ProcessGroupEnv& env, Device device, double timeout_s) {
  SSM_CHECK_INPUT(device.is_cuda(), "NCCL communicator: device ", device.str(), " is not a CUDA device");
  return std::make_shared<NcclCommunicator>(env, device, timeout_s);
}

#endif  // SSM_WITH_NCCL

}  // namespace ssm::train
