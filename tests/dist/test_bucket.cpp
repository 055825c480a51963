// BucketReducer in one process, with a recording communicator of world size 1 (Avg = identity): bucket
// assignment, launch order and timing (during backward vs in reduce()), set_sync, unused parameters.
#include <gtest/gtest.h>

#include "core/error.h"
#include "tests/dist/tiny_model.h"
#include "trainers/bucket_reducer.h"

using namespace ssm;
using namespace ssm::train;
using ssm::testing_dist::Tiny;

namespace {

class DoneWork : public Work {
 public:
  void wait() override {}
  bool done() override { return true; }
};

// Completes every collective at once; records what was launched.
class RecordingComm : public Communicator {
 public:
  RecordingComm() : Communicator(5.0) {}
  int rank() const override { return 0; }
  int size() const override { return 1; }
  Device device() const override { return Device::cpu(); }
  const char* backend() const override { return "recording"; }
  WorkPtr all_reduce_async(Tensor& t, ReduceOp op, const std::string& what) override {
    check_comm_tensor(*this, t, "all-reduce", "in-place");
    launched.push_back(what);
    numels.push_back(t.numel());
    dtypes.push_back(t.dtype());
    return std::make_shared<DoneWork>();
  }
  WorkPtr reduce_scatter_async(const Tensor&, Tensor&, ReduceOp, const std::string&) override { return nullptr; }
  WorkPtr all_gather_async(const Tensor&, Tensor&, const std::string&) override { return nullptr; }
  WorkPtr broadcast_async(Tensor&, int, const std::string&) override { return nullptr; }
  void barrier(const std::string&) override {}
  void abort(const std::string&) override {}
  bool aborted() const override { return false; }

  std::vector<std::string> launched;
  std::vector<int64_t> numels;
  std::vector<DType> dtypes;
};

}  // namespace

TEST(BucketAssignment, ReverseOrderWithCap) {
  // Sizes of parameters 0..5; cap 100 bytes; filled from the last parameter backwards.
  const std::vector<size_t> bytes = {40, 30, 80, 120, 50, 60};
  auto b = BucketReducer::assign_buckets(bytes, 100);
  std::vector<std::vector<size_t>> want = {{5}, {4}, {3}, {2}, {1, 0}};
  EXPECT_EQ(b, want);  // 60+50 > 100; 120 alone (larger than the cap); 80+30 > 100; 30+40 fits
  EXPECT_EQ(BucketReducer::assign_buckets(bytes, 1000), (std::vector<std::vector<size_t>>{{5, 4, 3, 2, 1, 0}}));
  EXPECT_EQ(BucketReducer::assign_buckets(bytes, 1).size(), 6u);
  EXPECT_TRUE(BucketReducer::assign_buckets({}, 10).empty());
}

TEST(BucketReducer, BucketsFollowReverseParameterOrder) {
  Tiny m;
  auto comm = std::make_shared<RecordingComm>();
  // never: 2, w1: 32, b1: 8, w2: 24, extra: 3 floats. Cap 128 bytes = 32 floats.
  BucketReducer red(comm, m.named_parameters(), {128.0 / 1048576.0, DType::f32});
  // Reverse: extra(3) + w2(24) = 27 <= 32, + b1 -> 35 > 32; b1(8); w1(32) alone (8 + 32 > 32); never(2).
  std::vector<std::vector<size_t>> want = {{4, 3}, {2}, {1}, {0}};
  EXPECT_EQ(red.buckets(), want);
  EXPECT_EQ(red.world_size(), 1);
}

TEST(BucketReducer, LaunchesDuringBackwardInOrder) {
  Tiny m;
  auto comm = std::make_shared<RecordingComm>();
  BucketReducer red(comm, m.named_parameters(), {1e-9, DType::f32});  // one parameter per bucket
  ASSERT_EQ(red.buckets().size(), 5u);
  m.loss(testing_dist::input(0, 0), /*use_extra=*/true).backward();
  // Buckets 0..3 (extra, w2, b1, w1) were complete during backward; bucket 4 (never) waits for reduce().
  EXPECT_EQ(comm->launched, (std::vector<std::string>{"all-reduce of bucket 0", "all-reduce of bucket 1",
                                                      "all-reduce of bucket 2", "all-reduce of bucket 3"}));
  auto before = testing_dist::grads(m);
  auto params = m.named_parameters();
  red.reduce(params);
  EXPECT_EQ(comm->launched.size(), 5u);
  EXPECT_EQ(comm->launched.back(), "all-reduce of bucket 4");
  // Each buffer holds the gradient plus one presence flag.
  EXPECT_EQ(comm->numels, (std::vector<int64_t>{3 + 1, 24 + 1, 8 + 1, 32 + 1, 2 + 1}));
  // World size 1: the averages are the gradients; the unused parameter stays without gradient.
  EXPECT_EQ(testing_dist::grads(m), before);
  EXPECT_FALSE(m.never->has_grad());

  // The next step starts afresh.
  m.zero_grad();
  comm->launched.clear();
  m.loss(testing_dist::input(0, 1), true).backward();
  EXPECT_EQ(comm->launched.size(), 4u);
  red.reduce(params);
  EXPECT_EQ(comm->launched.size(), 5u);
}

TEST(BucketReducer, AnUnusedParameterHoldsBackLaterBuckets) {
  Tiny m;
  auto comm = std::make_shared<RecordingComm>();
  BucketReducer red(comm, m.named_parameters(), {1e-9, DType::f32});
  m.loss(testing_dist::input(0, 0), /*use_extra=*/false).backward();
  // extra (bucket 0) got no gradient: nothing may start before it, so every rank launches in one order.
  EXPECT_TRUE(comm->launched.empty());
  auto params = m.named_parameters();
  red.reduce(params);
  EXPECT_EQ(comm->launched.size(), 5u);
  EXPECT_FALSE(m.extra->has_grad());
  EXPECT_TRUE(m.w1->has_grad());
}

TEST(BucketReducer, NoSyncAccumulatesLocallyAndReducesOnce) {
  Tiny m, ref;
  auto comm = std::make_shared<RecordingComm>();
  BucketReducer red(comm, m.named_parameters(), {1e-9, DType::f32});
  red.set_sync(false);
  m.loss(testing_dist::input(0, 0), true).backward();
  EXPECT_TRUE(comm->launched.empty());
  red.set_sync(true);
  m.loss(testing_dist::input(0, 1), true).backward();
  EXPECT_EQ(comm->launched.size(), 4u);  // the last micro-step's hooks see the accumulated gradients
  auto params = m.named_parameters();
  red.reduce(params);
  ref.loss(testing_dist::input(0, 0), true).backward();
  ref.loss(testing_dist::input(0, 1), true).backward();
  EXPECT_EQ(testing_dist::grads(m), testing_dist::grads(ref));
}

TEST(BucketReducer, TwoSynchronisedBackwardsAreAnError) {
  Tiny m;
  auto comm = std::make_shared<RecordingComm>();
  BucketReducer red(comm, m.named_parameters(), {1e-9, DType::f32});
  m.loss(testing_dist::input(0, 0), true).backward();
  try {
    m.loss(testing_dist::input(0, 1), true).backward();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("set_sync(false)"), std::string::npos) << e.what();
  }
}

TEST(BucketReducer, Bf16ReductionRoundsTheGradients) {
  Tiny m;
  auto comm = std::make_shared<RecordingComm>();
  BucketReducer red(comm, m.named_parameters(), {25.0, DType::bf16});
  EXPECT_EQ(red.buckets().size(), 1u);
  m.loss(testing_dist::input(0, 0), true).backward();
  const Tensor g = m.w1->grad().clone();
  auto params = m.named_parameters();
  red.reduce(params);
  EXPECT_EQ(comm->dtypes, std::vector<DType>{DType::bf16});
  EXPECT_EQ(m.w1->grad().dtype(), DType::f32);
  EXPECT_EQ(m.w1->grad().to_double_vector(), g.to(DType::bf16).to(DType::f32).to_double_vector());
}

TEST(BucketReducer, HooksOutliveTheReducerHarmlessly) {
  Tiny m;
  auto comm = std::make_shared<RecordingComm>();
  {
    BucketReducer red(comm, m.named_parameters(), {1e-9, DType::f32});
  }
  m.loss(testing_dist::input(0, 0), true).backward();
  EXPECT_TRUE(comm->launched.empty());
}

TEST(BucketReducer, RejectsBadOptions) {
  Tiny m;
  auto comm = std::make_shared<RecordingComm>();
  EXPECT_THROW(BucketReducer(comm, m.named_parameters(), {0.0, DType::f32}), Error);
  EXPECT_THROW(BucketReducer(comm, m.named_parameters(), {1.0, DType::i32}), Error);
  EXPECT_THROW(BucketReducer(nullptr, m.named_parameters(), {}), Error);
}

TEST(DistConfig, ReadsTheRecipeKeys) {
  Config r = Config::from_string(
      "trainer:\n  dist:\n    bucket_mb: 4\n    reduce_dtype: bf16\n    timeout_s: 20\n    zero: 1\n", "r.yaml");
  DistConfig d = dist_config(r.sub("trainer.dist"));
  EXPECT_EQ(d.bucket.bucket_mb, 4.0);
  EXPECT_EQ(d.bucket.reduce_dtype, DType::bf16);
  EXPECT_EQ(d.timeout_s, 20.0);
  EXPECT_EQ(d.zero, 1);
  DistConfig defaults = dist_config(Config().sub("trainer.dist"));
  EXPECT_EQ(defaults.bucket.bucket_mb, 25.0);
  EXPECT_EQ(defaults.bucket.reduce_dtype, DType::f32);
  EXPECT_EQ(defaults.timeout_s, 300.0);
  EXPECT_EQ(defaults.zero, 0);
  for (const char* bad : {"bucket_mb: 0", "reduce_dtype: f16", "timeout_s: -1", "zero: 2"}) {
    Config c = Config::from_string(std::string("trainer:\n  dist:\n    ") + bad + "\n", "r.yaml");
    try {
      dist_config(c.sub("trainer.dist"));
      FAIL() << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("trainer.dist."), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(dist_config_keys().size(), 4u);
}
