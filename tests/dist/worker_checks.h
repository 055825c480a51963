// Checks that the MPI (test_mpi.cpp, CPU) and NCCL (test_nccl.cpp, 2 GPUs) worker ranks both run, on
// whichever communicator and device they have: the single-process reference gradients of the Tiny
// model, an accumulated-and-reduced step, and a collective that a peer never joins.
#pragma once
#include <gtest/gtest.h>

#include <iostream>
#include <string>
#include <vector>

#include "core/error.h"
#include "tests/dist/tiny_model.h"
#include "trainers/bucket_reducer.h"
#include "trainers/comm.h"

namespace ssm::testing_dist {

using Runs = std::vector<std::vector<std::vector<double>>>;

// Single-process gradients (CPU, f32) for every rank r < ranks and micro-step k < micro, rank-major. Rank
// r's loss uses `extra` when extra_on(r).
template <typename ExtraOn>
Runs single_runs(int ranks, int micro, ExtraOn extra_on) {
  Runs out;
  for (int r = 0; r < ranks; ++r)
    for (int k = 0; k < micro; ++k) {
      Tiny m;
      m.loss(input(r, k), extra_on(r)).backward();
      out.push_back(grads(m));
    }
  return out;
}
inline Runs single_runs(int ranks, int micro) { return single_runs(ranks, micro, [](int) { return true; }); }

// One optimizer step's gradients on rank r: two micro-steps of half the loss (only the last one synchronised),
// then the reduction.
inline void accumulate_two_and_reduce(Tiny& m, train::BucketReducer& red, int r, Device dev) {
  for (int k = 0; k < 2; ++k) {
    red.set_sync(k == 1);
    ag::mul(m.loss(input(r, k, DType::f32, dev), true), 0.5).backward();
  }
  auto params = m.named_parameters();
  red.reduce(params);
}

// Rank 0's all-reduce that rank 1 never joins (the caller keeps rank 1 away): it must fail within the
// communicator's timeout_s, with a message naming the collective, leave the communicator aborted, and
// make every later collective fail at once. Prints SSM-TIMEOUT-OK for the parent test to find.
inline void expect_timeout_on_rank0(train::Communicator& c, double timeout_s, double max_s) {
  Tensor t = Tensor::ones({4}, DType::f32, c.device());
  const double t0 = train::monotonic_seconds();
  std::string msg;
  try {
    c.all_reduce(t, train::ReduceOp::Avg, "all-reduce of bucket 3");
  } catch (const Error& e) {
    msg = e.what();
  }
  const double took = train::monotonic_seconds() - t0;
  const std::string want = cat("rank 0: all-reduce of bucket 3 did not complete within ", timeout_s,
                               " s: a peer died or hangs; aborting");
  EXPECT_NE(msg.find(want), std::string::npos) << msg;
  EXPECT_GE(took, 0.95 * timeout_s);
  EXPECT_LT(took, max_s);
  EXPECT_TRUE(c.aborted());
  EXPECT_THROW(c.barrier(), Error);  // everything fails fast after the abort
  std::cout << "SSM-TIMEOUT-OK after " << took << " s: " << msg << std::endl;
}

}  // namespace ssm::testing_dist
