// The MPI communicator and the bucket reducer across 2 real processes on the CPU.
//
// MpiDist.* (the parent) runs this same binary under
//   mpirun --allow-run-as-root --oversubscribe -np 2 -x SSM_DIST_WORKER=mpi <test_dist> --gtest_filter=MpiWorker.X
// and checks the exit status and output; MpiWorker.* skip unless SSM_DIST_WORKER=mpi (then they are rank
// 0 or 1 of that job). Skipped when mpirun is absent or the build has no MPI.
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "core/error.h"
#include "tests/dist/tiny_model.h"
#include "tests/dist/worker_checks.h"
#include "trainers/bucket_reducer.h"
#include "trainers/comm.h"

using namespace ssm;
using namespace ssm::train;
using ssm::testing_dist::Tiny;

namespace {

bool mpi_worker() {
  const char* w = std::getenv("SSM_DIST_WORKER");
  return w && std::string(w) == "mpi";
}

std::string self_exe() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, size_t(n)) : std::string();
}

struct RunResult {
  int status = -1;
  std::string output;
  double seconds = 0;
};

RunResult run_mpirun(const std::string& filter, int np = 2) {
  const std::string cmd = "timeout 120 mpirun --allow-run-as-root --oversubscribe -np " + std::to_string(np) +
                          " -x SSM_DIST_WORKER=mpi -x OMP_NUM_THREADS=1 " + self_exe() +
                          " --gtest_color=no --gtest_filter=" + filter + " 2>&1";
  RunResult r;
  const double t0 = monotonic_seconds();
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t k;
  while ((k = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, k);
  r.status = ::pclose(p);
  r.seconds = monotonic_seconds() - t0;
  return r;
}

#define SKIP_WITHOUT_MPIRUN()                                                                  \
  do {                                                                                         \
    if (!mpi_built()) GTEST_SKIP() << "this build has no MPI";                                 \
    if (std::system("command -v mpirun > /dev/null 2>&1") != 0) GTEST_SKIP() << "no mpirun";   \
  } while (0)

#define WORKER_ONLY() \
  if (!mpi_worker()) GTEST_SKIP() << "runs as a rank under mpirun (see MpiDist.*)"

std::shared_ptr<Communicator> worker_comm(double timeout_s = 30) {
  ProcessGroupEnv env = parse_launch_env();
  return make_communicator(env, Device::cpu(), timeout_s);
}

Tensor values(const std::vector<double>& v, DType dt) { return Tensor::from_vector(v, {int64_t(v.size())}).to(dt); }

}  // namespace

// ---------------- the parent side ----------------

TEST(MpiDist, Collectives) {
  SKIP_WITHOUT_MPIRUN();
  RunResult r = run_mpirun("MpiWorker.Collectives:MpiWorker.Reducer*");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("[  PASSED  ] 4 tests"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("SKIPPED"), std::string::npos) << r.output;
}

TEST(MpiDist, HangingPeerTimesOutWithAClearError) {
  SKIP_WITHOUT_MPIRUN();
  RunResult r = run_mpirun("MpiWorker.Timeout");
  EXPECT_NE(r.status, 0) << r.output;  // rank 0 aborts the job (MPI_Abort) after the error
  EXPECT_NE(r.output.find("SSM-TIMEOUT-OK"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rank 0: all-reduce of bucket 3 did not complete within 2 s: a peer died or hangs; aborting"),
            std::string::npos)
      << r.output;
  EXPECT_LT(r.seconds, 30.0) << r.output;  // rank 1 sleeps 60 s: it was stopped, not waited for
}

TEST(MpiDist, DeadPeerStopsTheJob) {
  SKIP_WITHOUT_MPIRUN();
  RunResult r = run_mpirun("MpiWorker.DeadPeer");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_LT(r.seconds, 30.0) << r.output;
}

// ---------------- the ranks ----------------

TEST(MpiWorker, Collectives) {
  WORKER_ONLY();
  auto c = worker_comm();
  const int r = c->rank(), W = c->size();
  ASSERT_EQ(W, 2);
  EXPECT_STREQ(c->backend(), "mpi");
  for (DType dt : {DType::f32, DType::f64, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dt));
    // all-reduce: rank r holds (r + 1) * i + 0.5 (exact in bf16 for these sizes).
    std::vector<double> v(11), sum(11), avg(11);
    for (int i = 0; i < 11; ++i) {
      v[size_t(i)] = (r + 1) * i + 0.5;
      sum[size_t(i)] = 3 * i + 1.0;
      avg[size_t(i)] = 1.5 * i + 0.5;
    }
    Tensor t = values(v, dt);
    c->all_reduce(t, ReduceOp::Sum);
    EXPECT_EQ(t.to_double_vector(), sum);
    t = values(v, dt);
    c->all_reduce(t, ReduceOp::Avg);
    EXPECT_EQ(t.to_double_vector(), avg);
    // reduce-scatter: in_r[j] = 100 r + j over 2 x 3 elements; rank r gets the sum of block r.
    std::vector<double> in(6), out_want(3);
    for (int j = 0; j < 6; ++j) in[size_t(j)] = 100 * r + j;
    for (int k = 0; k < 3; ++k) out_want[size_t(k)] = 100 + 2 * (3 * r + k);
    Tensor out = Tensor::zeros({3}, dt);
    c->reduce_scatter(values(in, dt), out, ReduceOp::Sum);
    EXPECT_EQ(out.to_double_vector(), out_want);
    c->reduce_scatter(values(in, dt), out, ReduceOp::Avg);
    for (double& x : out_want) x /= 2;
    EXPECT_EQ(out.to_double_vector(), out_want);
    // all-gather: rank r contributes 10 r + k.
    Tensor gathered = Tensor::zeros({6}, dt);
    c->all_gather(values({10.0 * r, 10.0 * r + 1, 10.0 * r + 2}, dt), gathered);
    EXPECT_EQ(gathered.to_double_vector(), (std::vector<double>{0, 1, 2, 10, 11, 12}));
    // broadcast from rank 1.
    Tensor b = values({r == 1 ? 7.0 : 0.0, r == 1 ? -3.0 : 0.0}, dt);
    c->broadcast(b, 1);
    EXPECT_EQ(b.to_double_vector(), (std::vector<double>{7, -3}));
  }
  // Two collectives in flight at once, waited in the opposite order.
  Tensor a = values({1.0 + r}, DType::f32), b = values({10.0 * (r + 1)}, DType::f32);
  WorkPtr wa = c->all_reduce_async(a, ReduceOp::Sum, "a");
  WorkPtr wb = c->all_reduce_async(b, ReduceOp::Sum, "b");
  wb->wait();
  wa->wait();
  EXPECT_EQ(a.item(), 3.0);
  EXPECT_EQ(b.item(), 30.0);
  c->barrier();
  // Scalars (loss mean, "any rank stopping?") and the initial-weights broadcast.
  EXPECT_EQ(all_reduce_scalar(*c, 1.5 + r, ReduceOp::Avg), 2.0);
  EXPECT_EQ(all_reduce_scalar(*c, r == 1 ? 1.0 : 0.0, ReduceOp::Sum), 1.0);
  Tensor w = Tensor::full({2, 3}, 10.0 + r), wt = Tensor::full({3, 2}, 20.0 + r).transpose(0, 1);
  Tensor idx = Tensor::full({2}, double(r), DType::i64);
  broadcast_tensors(*c, {w, wt, idx}, 0);
  EXPECT_EQ(w.to_double_vector(), std::vector<double>(6, 10.0));
  EXPECT_EQ(wt.to_double_vector(), std::vector<double>(6, 20.0));  // a non-contiguous view, updated in place
  EXPECT_EQ(idx.to_double_vector(), std::vector<double>(2, double(r)));  // integers are left alone
  // Bad tensors are refused locally, before anything is sent.
  Tensor ints = Tensor::zeros({2}, DType::i64);
  EXPECT_THROW(c->all_reduce(ints, ReduceOp::Sum), Error);
  Tensor odd = Tensor::zeros({5}, DType::f32);
  EXPECT_THROW(c->reduce_scatter(Tensor::zeros({5}, DType::f32), odd, ReduceOp::Sum), Error);
  c->barrier();
}

// Two ranks with different inputs == the mean of their single-process gradients.
TEST(MpiWorker, ReducerAveragesGradients) {
  WORKER_ONLY();
  auto c = worker_comm();
  const int r = c->rank();
  const auto single = testing_dist::single_runs(2, 1, [](int rr) { return rr == 0; });  // `extra`: rank 0 only
  Tiny m;
  BucketReducer red(c, m.named_parameters(), {64.0 / 1048576.0, DType::f32});  // several buckets
  EXPECT_GE(red.buckets().size(), 3u);
  m.loss(testing_dist::input(r, 0), r == 0).backward();  // `extra` is used by rank 0 only
  auto params = m.named_parameters();
  red.reduce(params);
  const auto got = testing_dist::grads(m);
  testing_dist::expect_close(got, testing_dist::mean_grads(single), 1e-6);
  EXPECT_FALSE(m.never->has_grad());  // no rank used it
  EXPECT_TRUE(m.extra->has_grad());   // rank 0 did: g0 / 2 on both ranks
}

// Accumulation 2 on 2 ranks == the mean over the 4 micro-batches, only the last micro-step reduces.
TEST(MpiWorker, ReducerWithAccumulation) {
  WORKER_ONLY();
  auto c = worker_comm();
  const int r = c->rank();
  const auto single = testing_dist::single_runs(2, 2);
  Tiny m;
  BucketReducer red(c, m.named_parameters(), {100.0 / 1048576.0, DType::f32});
  for (int step = 0; step < 2; ++step) {  // the second step checks that the reducer's state was reset
    m.zero_grad();
    testing_dist::accumulate_two_and_reduce(m, red, r, Device::cpu());
    testing_dist::expect_close(testing_dist::grads(m), testing_dist::mean_grads(single), 1e-6);
  }
}

TEST(MpiWorker, ReducerInBf16) {
  WORKER_ONLY();
  auto c = worker_comm();
  const int r = c->rank();
  const auto single = testing_dist::single_runs(2, 1);
  Tiny m;
  BucketReducer red(c, m.named_parameters(), {25.0, DType::bf16});
  m.loss(testing_dist::input(r, 0), true).backward();
  auto params = m.named_parameters();
  red.reduce(params);
  testing_dist::expect_close(testing_dist::grads(m), testing_dist::mean_grads(single), 2e-2);  // bf16 keeps 8 significant bits
  EXPECT_EQ(m.w1->grad().dtype(), DType::f32);
}

// Rank 1 never joins the all-reduce: rank 0 must fail within its 2 s timeout with a clear message.
TEST(MpiWorker, Timeout) {
  WORKER_ONLY();
  auto c = worker_comm(/*timeout_s=*/2);
  if (c->rank() == 1) {
    std::this_thread::sleep_for(std::chrono::seconds(60));  // hangs; mpirun stops it after rank 0 aborts
    return;
  }
  testing_dist::expect_timeout_on_rank0(*c, 2, 6.0);
}

// Rank 1 dies before the collective: the job must end (mpirun tears it down), not hang.
TEST(MpiWorker, DeadPeer) {
  WORKER_ONLY();
  auto c = worker_comm(/*timeout_s=*/20);
  if (c->rank() == 1) std::_Exit(3);
  Tensor t = Tensor::ones({4});
  c->all_reduce(t, ReduceOp::Sum, "all-reduce of bucket 0");
}
