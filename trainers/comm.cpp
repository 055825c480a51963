#include "trainers/comm.h"

#include <chrono>
#include <thread>

#include "core/error.h"

namespace ssm::train {

const char* reduce_op_name(ReduceOp op) { return op == ReduceOp::Sum ? "sum" : "avg"; }

double monotonic_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void PollDelay::pause() {
  // ~200 busy polls (a few µs each) catch fast completions; then sleep, growing to 1 ms.
  ++polls_;
  if (polls_ < 200) return;
  const int us = polls_ < 1200 ? 50 : 1000;
  std::this_thread::sleep_for(std::chrono::microseconds(us));
}

std::string comm_timeout_message(int rank, const std::string& what, double timeout_s) {
  return cat("rank ", rank, ": ", what, " did not complete within ", timeout_s,
             " s: a peer died or hangs; aborting (trainer.dist.timeout_s sets the limit)");
}

void check_comm_tensor(const Communicator& c, const Tensor& t, const char* op, const char* role) {
  SSM_CHECK_INPUT(t.defined(), c.backend(), " ", op, ": the ", role, " tensor is undefined");
  SSM_CHECK_INPUT(t.device() == c.device(), c.backend(), " ", op, ": the ", role, " tensor ", t.str(), " is on ",
                  t.device().str(), " but the communicator works on ", c.device().str());
  SSM_CHECK_INPUT(t.is_contiguous(), c.backend(), " ", op, ": the ", role, " tensor ", t.str(),
                  " must be contiguous");
  const DType d = t.dtype();
  SSM_CHECK_INPUT(d == DType::f32 || d == DType::f64 || d == DType::bf16, c.backend(), " ", op, ": the ", role,
                  " tensor ", t.str(), " has dtype ", dtype_name(d), "; supported: f32, f64, bf16");
}

void check_comm_sizes(const Communicator& c, const Tensor& in, const Tensor& out, const char* op, bool scatter) {
  check_comm_tensor(c, in, op, "input");
  check_comm_tensor(c, out, op, "output");
  SSM_CHECK_INPUT(in.dtype() == out.dtype(), c.backend(), " ", op, ": input ", in.str(), " and output ", out.str(),
                  " have different dtypes");
  const int64_t big = scatter ? in.numel() : out.numel();
  const int64_t small = scatter ? out.numel() : in.numel();
  SSM_CHECK_INPUT(big == small * c.size(), c.backend(), " ", op, ": ", scatter ? "input" : "output", " ",
                  (scatter ? in : out).str(), " must hold world size (", c.size(), ") x ", small, " = ",
                  small * c.size(), " elements");
}

double all_reduce_scalar(Communicator& c, double value, ReduceOp op, const std::string& what) {
  Tensor t = Tensor::full({1}, value, DType::f64, c.device());
  c.all_reduce(t, op, what);
  return t.item();
}

void broadcast_tensors(Communicator& c, const std::vector<Tensor>& tensors, int root, const std::string& what) {
  for (size_t i = 0; i < tensors.size(); ++i) {
    Tensor t = tensors[i];
    if (!t.defined() || !is_floating(t.dtype()) || t.dtype() == DType::f16) continue;
    if (t.is_contiguous()) {
      c.broadcast(t, root, cat(what, " (tensor ", i, ")"));
    } else {
      Tensor tmp = t.contiguous();
      c.broadcast(tmp, root, cat(what, " (tensor ", i, ")"));
      t.copy_(tmp);
    }
  }
}

std::shared_ptr<Communicator> make_communicator(const ProcessGroupEnv& env, Device device, double timeout_s) {
  SSM_CHECK_INPUT(timeout_s > 0, "data-parallel timeout must be > 0 seconds (got ", timeout_s, ")");
  if (device.is_cuda()) {
    SSM_CHECK_INPUT(nccl_built(), "rank ", env.rank, " of ", env.world_size, " (", env.launcher,
                    "): training on ", device.str(), " with several processes needs NCCL, and this build has "
                    "no NCCL (configure with CUDA and NCCL found: cmake -DSSM_ENABLE_CUDA=ON; look for "
                    "'NCCL communicator ON')");
    return make_nccl_communicator(env, device, timeout_s);
  }
  SSM_CHECK_INPUT(mpi_built(), "rank ", env.rank, " of ", env.world_size, " (", env.launcher,
                  "): training on the CPU with several processes needs MPI, and this build has none (install "
                  "openmpi-bin libopenmpi-dev, scripts/install-deps.sh, and re-run cmake)");
  return make_mpi_communicator(env, timeout_s);
}

}  // namespace ssm::train
