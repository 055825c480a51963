// The NCCL communicator and the bucket reducer on 2 GPUs (skipped without 2 GPUs or without NCCL).
//
// NcclDist.* (the parent) starts this same binary twice through launch_local (as `ssm launch` would:
// RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR=127.0.0.1, MASTER_PORT), with SSM_DIST_WORKER=nccl and
// --gtest_filter=NcclWorker.X; each worker uses GPU LOCAL_RANK and gets the NCCL id through the TCP
// rendezvous at MASTER_PORT + 1. Run on the 2-GPU machine:
//   NCCL_NVLS_ENABLE=0 build/bin/test_dist --gtest_filter='NcclDist.*'
// and, for the network transport: NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1 (same command).
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "tests/dist/tiny_model.h"
#include "tests/dist/worker_checks.h"
#include "trainers/bucket_reducer.h"
#include "trainers/comm.h"
#include "trainers/launch.h"

using namespace ssm;
using namespace ssm::train;
using ssm::testing_dist::Tiny;
namespace fs = std::filesystem;

namespace {

bool nccl_worker() {
  const char* w = std::getenv("SSM_DIST_WORKER");
  return w && std::string(w) == "nccl";
}

#define SKIP_WITHOUT_TWO_GPUS()                                                                          \
  do {                                                                                                   \
    if (!nccl_built()) GTEST_SKIP() << "this build has no NCCL";                                         \
    if (!cuda_available() || cuda_device_count() < 2) GTEST_SKIP() << "needs 2 GPUs";                    \
  } while (0)

#define NCCL_WORKER_ONLY() \
  if (!nccl_worker()) GTEST_SKIP() << "runs as a rank under launch_local (see NcclDist.*)"

struct Launched {
  int rc = -1;
  std::string out;
  double seconds = 0;
};

Launched launch_workers(const std::string& filter) {
  const fs::path out = fs::temp_directory_path() / ("ssm_test_nccl_" + std::to_string(::getpid()) + ".txt");
  const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  LaunchOptions o;  // program: this test binary (/proc/self/exe)
  o.extra_env = {{"SSM_DIST_WORKER", "nccl"}};
  o.grace_s = 20;
  o.out_fd = fd;
  o.err_fd = fd;
  Launched l;
  const double t0 = monotonic_seconds();
  l.rc = launch_local(2, {"--gtest_color=no", "--gtest_filter=" + filter}, o);
  l.seconds = monotonic_seconds() - t0;
  ::close(fd);
  std::ifstream f(out);
  std::stringstream s;
  s << f.rdbuf();
  l.out = s.str();
  fs::remove(out);
  return l;
}

std::shared_ptr<Communicator> worker_comm(double timeout_s = 60) {
  ProcessGroupEnv env = parse_launch_env();
  return make_communicator(env, Device::cuda(env.local_rank), timeout_s);
}

Tensor values(const std::vector<double>& v, DType dt, Device dev) {
  return Tensor::from_vector(v, {int64_t(v.size())}).to(dev, dt);
}

}  // namespace

TEST(NcclDist, CollectivesAndReducer) {
  SKIP_WITHOUT_TWO_GPUS();
  Launched l = launch_workers("NcclWorker.Collectives:NcclWorker.Reducer*");
  EXPECT_EQ(l.rc, 0) << l.out;
  EXPECT_NE(l.out.find("[rank 0] [  PASSED  ] 3 tests"), std::string::npos) << l.out;
  EXPECT_NE(l.out.find("[rank 1] [  PASSED  ] 3 tests"), std::string::npos) << l.out;
  EXPECT_EQ(l.out.find("SKIPPED"), std::string::npos) << l.out;
}

TEST(NcclDist, HangingPeerTimesOutWithAClearError) {
  SKIP_WITHOUT_TWO_GPUS();
  Launched l = launch_workers("NcclWorker.Timeout");
  EXPECT_EQ(l.rc, 0) << l.out;
  EXPECT_NE(l.out.find("SSM-TIMEOUT-OK"), std::string::npos) << l.out;
  EXPECT_NE(l.out.find("rank 0: all-reduce of bucket 3 did not complete within 3 s"), std::string::npos) << l.out;
}

TEST(NcclWorker, Collectives) {
  NCCL_WORKER_ONLY();
  auto c = worker_comm();
  const int r = c->rank();
  const Device dev = c->device();
  ASSERT_EQ(c->size(), 2);
  EXPECT_STREQ(c->backend(), "nccl");
  for (DType dt : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dt));
    std::vector<double> v(1001), sum(1001), avg(1001);
    for (int i = 0; i < 1001; ++i) {
      const int k = i % 50;  // exact in bf16
      v[size_t(i)] = (r + 1) * k + 0.5;
      sum[size_t(i)] = 3 * k + 1.0;
      avg[size_t(i)] = 1.5 * k + 0.5;
    }
    Tensor t = values(v, dt, dev);
    c->all_reduce(t, ReduceOp::Sum);
    EXPECT_EQ(t.to_double_vector(), sum);
    t = values(v, dt, dev);
    c->all_reduce(t, ReduceOp::Avg);
    EXPECT_EQ(t.to_double_vector(), avg);
    std::vector<double> in(6), want(3);
    for (int j = 0; j < 6; ++j) in[size_t(j)] = 100 * r + j;
    for (int k = 0; k < 3; ++k) want[size_t(k)] = 100 + 2 * (3 * r + k);
    Tensor out = Tensor::zeros({3}, dt, dev);
    c->reduce_scatter(values(in, dt, dev), out, ReduceOp::Sum);
    EXPECT_EQ(out.to_double_vector(), want);
    Tensor gathered = Tensor::zeros({6}, dt, dev);
    c->all_gather(values({10.0 * r, 10.0 * r + 1, 10.0 * r + 2}, dt, dev), gathered);
    EXPECT_EQ(gathered.to_double_vector(), (std::vector<double>{0, 1, 2, 10, 11, 12}));
    Tensor b = values({r == 1 ? 7.0 : 0.0, r == 1 ? -3.0 : 0.0}, dt, dev);
    c->broadcast(b, 1);
    EXPECT_EQ(b.to_double_vector(), (std::vector<double>{7, -3}));
  }
  Tensor on_cpu = Tensor::zeros({2});
  EXPECT_THROW(c->all_reduce(on_cpu, ReduceOp::Sum), Error);
  c->barrier();
}

TEST(NcclWorker, ReducerAveragesGradients) {
  NCCL_WORKER_ONLY();
  auto c = worker_comm();
  const int r = c->rank();
  const auto single = testing_dist::single_runs(2, 1, [](int rr) { return rr == 0; });  // the CPU reference
  Tiny m(DType::f32, c->device());
  BucketReducer red(c, m.named_parameters(), {64.0 / 1048576.0, DType::f32});
  m.loss(testing_dist::input(r, 0, DType::f32, c->device()), r == 0).backward();
  auto params = m.named_parameters();
  red.reduce(params);
  testing_dist::expect_close(testing_dist::grads(m), testing_dist::mean_grads(single), 1e-4);
  EXPECT_FALSE(m.never->has_grad());
}

TEST(NcclWorker, ReducerWithAccumulationInBf16) {
  NCCL_WORKER_ONLY();
  auto c = worker_comm();
  const int r = c->rank();
  const auto single = testing_dist::single_runs(2, 2);
  Tiny m(DType::f32, c->device());
  BucketReducer red(c, m.named_parameters(), {100.0 / 1048576.0, DType::bf16});
  for (int step = 0; step < 2; ++step) {
    m.zero_grad();
    testing_dist::accumulate_two_and_reduce(m, red, r, c->device());
    testing_dist::expect_close(testing_dist::grads(m), testing_dist::mean_grads(single), 2e-2);
  }
}

TEST(NcclWorker, Timeout) {
  NCCL_WORKER_ONLY();
  auto c = worker_comm(/*timeout_s=*/3);
  if (c->rank() == 1) {
    std::this_thread::sleep_for(std::chrono::seconds(8));  // never joins; exits normally afterwards
    return;
  }
  testing_dist::expect_timeout_on_rank0(*c, 3, 10.0);
}
