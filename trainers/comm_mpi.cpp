// MpiCommunicator: CPU tensors (f32, f64, bf16) over MPI nonblocking collectives (MPI_Iallreduce, ...),
// each polled with MPI_Test until done or the timeout. Open MPI progresses a nonblocking collective
// only inside MPI calls, so done() (which the bucket reducer calls from its hooks) also drives progress.
//
// bf16 has no MPI datatype: it travels as MPI_UINT16_T with a user-defined sum, a + b computed in f32
// and rounded to nearest even (the same rounding as NCCL's bf16 sum). Avg = Sum, then x * (1 / size)
// on this rank (bf16: in f32, rounded once).
#include "trainers/comm.h"
#include "trainers/comm_mpi.h"

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <limits>
#include <vector>
#include <mutex>

#include "core/error.h"

#ifdef SSM_WITH_MPI
#define OMPI_SKIP_MPICXX 1  // the C API only
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace ssm::train {

#ifndef SSM_WITH_MPI

bool mpi_built() { return false; }
std::shared_ptr<Communicator> make_mpi_communicator(const ProcessGroupEnv& env, double) {
  throw_input(cat("rank ", env.rank, ": this build has no MPI communicator (install openmpi-bin libopenmpi-dev and "
                  "re-run cmake)"));
}

#else

bool mpi_built() { return true; }

namespace mpi {
namespace {

struct Runtime {
  std::recursive_mutex mu;
  bool initialised_here = false;
  bool aborted = false;
  std::string reason;
  MPI_Op bf16_sum = MPI_OP_NULL;
};

Runtime& rt() {
  static Runtime* r = new Runtime;  // never destroyed: the exit handler uses it
  return *r;
}

// inout[i] = in[i] + inout[i] on bf16 bit patterns, computed in f32.
void bf16_sum_fn(void* in, void* inout, int* len, MPI_Datatype*) {
  const auto* a = static_cast<const bf16_t*>(in);
  auto* b = static_cast<bf16_t*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = f32_to_bf16(bf16_to_f32(a[i]) + bf16_to_f32(b[i]));
}

void at_exit() {
  Runtime& r = rt();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (r.aborted) {
    std::cout.flush();
    std::cerr.flush();
    std::fflush(nullptr);
    std::fprintf(stderr, "ssm: rank %d: the MPI communicator was aborted (%s); MPI_Abort stops every rank\n",
                 world_rank(), r.reason.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    return;
  }
  if (r.initialised_here) MPI_Finalize();
}

void check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw_internal(cat(call, " failed: ", std::string(msg, size_t(len))));
}

}  // namespace

void ensure_init() {
  Runtime& r = rt();
  std::lock_guard<std::recursive_mutex> lock(r.mu);
  int inited = 0;
  MPI_Initialized(&inited);
  if (!inited) {
    int provided = 0;
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread");
    r.initialised_here = true;
    std::atexit(at_exit);
  }
  if (r.bf16_sum == MPI_OP_NULL) check(MPI_Op_create(bf16_sum_fn, /*commute=*/1, &r.bf16_sum), "MPI_Op_create");
}

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int world_size() {
  int s = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

void mark_aborted(const std::string& reason) {
  Runtime& r = rt();
  std::lock_guard<std::recursive_mutex> lock(r.mu);
  if (!r.aborted) r.reason = reason;
  r.aborted = true;
}

void broadcast_bytes(void* data, size_t bytes, int root, double timeout_s, const std::string& what) {
  ensure_init();
  Runtime& r = rt();
  SSM_CHECK(bytes <= size_t(std::numeric_limits<int>::max()), what, ": ", bytes, " bytes is too large");
  MPI_Request req;
  {
    std::lock_guard<std::recursive_mutex> lock(r.mu);
    check(MPI_Ibcast(data, int(bytes), MPI_BYTE, root, MPI_COMM_WORLD, &req), "MPI_Ibcast");
  }
  const double deadline = monotonic_seconds() + timeout_s;
  PollDelay delay;
  for (;;) {
    int flag = 0;
    {
      std::lock_guard<std::recursive_mutex> lock(r.mu);
      check(MPI_Test(&req, &flag, MPI_STATUS_IGNORE), "MPI_Test");
    }
    if (flag) return;
    if (monotonic_seconds() > deadline) {
      const std::string msg = comm_timeout_message(world_rank(), what, timeout_s);
      mark_aborted(msg);
      throw_internal(msg);
    }
    delay.pause();
  }
}

}  // namespace mpi

namespace {

struct MpiState {
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0, size = 1;
  double timeout_s = 0;
  bool aborted = false;
  std::string reason;

  [[noreturn]] void throw_aborted(const std::string& what) const {
    throw_internal(cat("rank ", rank, ": ", what, ": the communicator was aborted earlier (", reason, ")"));
  }
};

MPI_Datatype mpi_type(DType d) {
  switch (d) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::bf16: return MPI_UINT16_T;
    default: throw_internal(cat("MPI communicator: dtype ", dtype_name(d), " is not supported"));
  }
}

MPI_Op mpi_sum(DType d) { return d == DType::bf16 ? mpi::rt().bf16_sum : MPI_SUM; }

int checked_count(int64_t n, const std::string& what) {
  SSM_CHECK_INPUT(n <= int64_t(std::numeric_limits<int>::max()), "MPI ", what, ": ", n,
                  " elements is more than MPI's int count allows; use smaller buckets (trainer.dist.bucket_mb)");
  return int(n);
}

// x *= s in place (Avg = Sum * (1 / size)).
void scale_in_place(Tensor& t, double s) {
  const int64_t n = t.numel();
  switch (t.dtype()) {
    case DType::f32: {
      float* p = t.data<float>();
      const float f = float(s);
      for (int64_t i = 0; i < n; ++i) p[i] *= f;
      break;
    }
    case DType::f64: {
      double* p = t.data<double>();
      for (int64_t i = 0; i < n; ++i) p[i] *= s;
      break;
    }
    case DType::bf16: {
      bf16_t* p = t.data<bf16_t>();
      const float f = float(s);
      for (int64_t i = 0; i < n; ++i) p[i] = f32_to_bf16(bf16_to_f32(p[i]) * f);
      break;
    }
    default: SSM_CHECK(false, "scale_in_place: dtype ", dtype_name(t.dtype()));
  }
}

class MpiWork : public Work {
 public:
  MpiWork(std::shared_ptr<MpiState> st, MPI_Request req, std::string what, std::vector<Tensor> keep,
          std::function<void()> finish)
      : st_(std::move(st)), req_(req), what_(std::move(what)), keep_(std::move(keep)), finish_(std::move(finish)) {}

  ~MpiWork() override {
    // A nonblocking collective can be neither freed nor cancelled: finish it (bounded) while its buffers live.
    if (!complete_ && !st_->aborted) {
      try {
        wait();
      } catch (...) {
      }
    }
  }

  bool done() override {
    if (complete_) return true;
    if (st_->aborted) st_->throw_aborted(what_);
    int flag = 0;
    {
      std::lock_guard<std::recursive_mutex> lock(mpi::rt().mu);
      int rc = MPI_Test(&req_, &flag, MPI_STATUS_IGNORE);
      SSM_CHECK(rc == MPI_SUCCESS, "rank ", st_->rank, ": MPI_Test of ", what_, " failed (code ", rc, ")");
    }
    if (!flag) return false;
    complete_ = true;
    if (finish_) finish_();
    keep_.clear();
    return true;
  }

  void wait() override {
    const double deadline = monotonic_seconds() + st_->timeout_s;
    PollDelay delay;
    while (!done()) {
      if (monotonic_seconds() > deadline) {
        const std::string msg = comm_timeout_message(st_->rank, what_, st_->timeout_s);
        st_->aborted = true;
        st_->reason = msg;
        mpi::mark_aborted(msg);
        throw_internal(msg);
      }
      delay.pause();
    }
  }

 private:
  std::shared_ptr<MpiState> st_;
  MPI_Request req_;
  std::string what_;
  std::vector<Tensor> keep_;
  std::function<void()> finish_;
  bool complete_ = false;
};

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator(const ProcessGroupEnv& env, double timeout_s) : Communicator(timeout_s) {
    mpi::ensure_init();
    st_ = std::make_shared<MpiState>();
    st_->timeout_s = timeout_s;
    const int r = mpi::world_rank(), s = mpi::world_size();
    SSM_CHECK_INPUT(s == env.world_size && r == env.rank, "the CPU (MPI) communicator sees rank ", r, " of ", s,
                    " processes but the launch environment (", env.launcher, ") says rank ", env.rank, " of ",
                    env.world_size, ": CPU data parallelism needs mpirun (e.g. mpirun -np ", env.world_size,
                    " build/bin/ssm train ...), or srun with MPI support; torchrun and `ssm launch` are for GPUs");
    std::lock_guard<std::recursive_mutex> lock(mpi::rt().mu);
    // A private communicator: our collectives never match someone else's on MPI_COMM_WORLD.
    int rc = MPI_Comm_dup(MPI_COMM_WORLD, &st_->comm);
    SSM_CHECK(rc == MPI_SUCCESS, "MPI_Comm_dup failed (code ", rc, ")");
    MPI_Comm_rank(st_->comm, &st_->rank);
    MPI_Comm_size(st_->comm, &st_->size);
  }

  ~MpiCommunicator() override {
    if (!st_->aborted && st_->comm != MPI_COMM_NULL) {
      int finalized = 0;
      MPI_Finalized(&finalized);
      std::lock_guard<std::recursive_mutex> lock(mpi::rt().mu);
      if (!finalized) MPI_Comm_free(&st_->comm);
    }
  }

  int rank() const override { return st_->rank; }
  int size() const override { return st_->size; }
  Device device() const override { return Device::cpu(); }
  const char* backend() const override { return "mpi"; }

  WorkPtr all_reduce_async(Tensor& t, ReduceOp op, const std::string& what) override {
    check_comm_tensor(*this, t, "all-reduce", "in-place");
    const int n = checked_count(t.numel(), what);
    Tensor buf = t;
    return start(what, {t}, [&](MPI_Request* req) {
      return MPI_Iallreduce(MPI_IN_PLACE, buf.data_ptr(), n, mpi_type(buf.dtype()), mpi_sum(buf.dtype()), st_->comm, req);
    }, avg_finish(op, buf));
  }

  WorkPtr reduce_scatter_async(const Tensor& in, Tensor& out, ReduceOp op, const std::string& what) override {
    check_comm_sizes(*this, in, out, "reduce-scatter", /*scatter=*/true);
    const int m = checked_count(out.numel(), what);
    Tensor o = out;
    return start(what, {in, out}, [&](MPI_Request* req) {
      return MPI_Ireduce_scatter_block(in.data_ptr(), o.data_ptr(), m, mpi_type(in.dtype()), mpi_sum(in.dtype()),
                                       st_->comm, req);
    }, avg_finish(op, o));
  }

  WorkPtr all_gather_async(const Tensor& in, Tensor& out, const std::string& what) override {
    check_comm_sizes(*this, in, out, "all-gather", /*scatter=*/false);
    const int m = checked_count(in.numel(), what);
    return start(what, {in, out}, [&](MPI_Request* req) {
      return MPI_Iallgather(in.data_ptr(), m, mpi_type(in.dtype()), out.data_ptr(), m, mpi_type(in.dtype()), st_->comm,
                            req);
    }, nullptr);
  }

  WorkPtr broadcast_async(Tensor& t, int root, const std::string& what) override {
    check_comm_tensor(*this, t, "broadcast", "in-place");
    SSM_CHECK_INPUT(root >= 0 && root < size(), "mpi broadcast: root ", root, " is not a rank of ", size());
    const int n = checked_count(t.numel(), what);
    return start(what, {t}, [&](MPI_Request* req) {
      return MPI_Ibcast(t.data_ptr(), n, mpi_type(t.dtype()), root, st_->comm, req);
    }, nullptr);
  }

  void barrier(const std::string& what) override {
    start(what, {}, [&](MPI_Request* req) { return MPI_Ibarrier(st_->comm, req); }, nullptr)->wait();
  }

  void abort(const std::string& reason) override {
    if (!st_->aborted) st_->reason = reason;
    st_->aborted = true;
    mpi::mark_aborted(reason);
  }
  bool aborted() const override { return st_->aborted; }

 private:
  std::shared_ptr<MpiState> st_;

  std::function<void()> avg_finish(ReduceOp op, Tensor t) {
    if (op != ReduceOp::Avg || st_->size == 1) return nullptr;
    const double s = 1.0 / double(st_->size);
    return [t, s]() mutable { scale_in_place(t, s); };
  }

  template <typename Start>
  WorkPtr start(const std::string& what, std::vector<Tensor> keep, Start&& start_fn, std::function<void()> finish) {
    if (st_->aborted) st_->throw_aborted(what);
    MPI_Request req;
    {
      std::lock_guard<std::recursive_mutex> lock(mpi::rt().mu);
      int rc = start_fn(&req);
      SSM_CHECK(rc == MPI_SUCCESS, "rank ", st_->rank, ": starting MPI ", what, " failed (code ", rc, ")");
    }
    return std::make_shared<MpiWork>(st_, req, what, std::move(keep), std::move(finish));
  }
};

}  // namespace

std::shared_ptr<Communicator> make_mpi_communicator(const ProcessGroupEnv& env, double timeout_s) {
  return std::make_shared<MpiCommunicator>(env, timeout_s);
}

#endif  // SSM_WITH_MPI

}  // namespace ssm::train
