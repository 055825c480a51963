// Loader: same batches as direct reads, exact resume through state(), clean early shutdown, errors
// from the worker re-thrown in next().
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "data/dataset.h"
#include "data/loader.h"

#include "tests/data/data_test_util.h"

namespace {

using namespace ssm;
using namespace ssm::data;
using namespace ssm_data_test;

// inputs[b] = (index, index + 0.5), labels[b] = index; optionally slow, optionally failing at a call.
class FakeDataset : public Dataset {
 public:
  explicit FakeDataset(int64_t n, int fail_at_call = -1, int sleep_ms = 0)
      : n_(n), fail_at_(fail_at_call), sleep_ms_(sleep_ms) {}
  int64_t size() const override { return n_; }
  const std::string& path() const override { return path_; }
  Batch get(const std::vector<int64_t>& idx) const override {
    int call = calls_++;
    if (sleep_ms_) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms_));
    if (call == fail_at_) throw_input(cat(path_, ": read failed at batch ", call));
    Batch b;
    b.indices = idx;
    const int64_t B = int64_t(idx.size());
    b.inputs = Tensor::empty({B, 2, 1});
    b.labels = Tensor::empty({B}, DType::i64);
    for (int64_t k = 0; k < B; ++k) {
      b.inputs.data<float>()[2 * k] = float(idx[size_t(k)]);
      b.inputs.data<float>()[2 * k + 1] = float(idx[size_t(k)]) + 0.5f;
      b.labels.data<int64_t>()[k] = idx[size_t(k)];
    }
    return b;
  }
  int calls() const { return calls_; }

 private:
  int64_t n_;
  int fail_at_, sleep_ms_;
  mutable std::atomic<int> calls_{0};
  std::string path_ = "fake.h5";
};

TEST(Loader, SameBatchesAsDirectReads) {
  const std::string dir = make_temp_dir();
  const std::string path = dir + "/img.h5";
  write_image_split(path, 97, 6, 6, 5, 1.0 / 255, 0.2, 0.3, 1);
  auto ds = std::make_shared<ClassificationDataset>(path, ClassificationOptions{2, true});
  Sampler ref(97, 10, true, 11);
  Loader loader(ds, Sampler(97, 10, true, 11), 3);
  EXPECT_EQ(loader.batches_per_epoch(), 10);
  for (int i = 0; i < 25; ++i) {  // two and a half epochs
    std::vector<int64_t> idx = ref.next();
    Batch want = ds->get(idx);
    Batch got = loader.next();
    ASSERT_EQ(got.indices, idx) << "batch " << i;
    EXPECT_EQ(got.inputs.shape(), (Shape{int64_t(idx.size()), 9, 1}));
    EXPECT_EQ(got.inputs.to_float_vector(), want.inputs.to_float_vector());
    EXPECT_EQ(got.labels.to_int_vector(), want.labels.to_int_vector());
    EXPECT_EQ(loader.state(), ref.state());
  }
  remove_dir(dir);
}

TEST(Loader, StateCountsConsumedBatchesNotPrefetched) {
  auto ds = std::make_shared<FakeDataset>(100);
  Loader loader(ds, Sampler(100, 8, true, 3), 4);
  EXPECT_EQ(loader.state(), (Sampler::State{0, 0}));
  for (int i = 0; i < 5; ++i) loader.next();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let the worker run ahead
  EXPECT_GT(ds->calls(), 5);
  Sampler::State st = loader.state();
  EXPECT_EQ(st, (Sampler::State{0, 5}));
  std::vector<std::vector<int64_t>> rest;
  for (int i = 0; i < 20; ++i) rest.push_back(loader.next().indices);

  // A new loader restored from the saved state yields exactly the batches the first one went on to.
  Loader resumed(std::make_shared<FakeDataset>(100), Sampler(100, 8, true, 3), 2);
  resumed.set_state(st);
  for (int i = 0; i < 20; ++i) ASSERT_EQ(resumed.next().indices, rest[size_t(i)]) << "batch " << i;

  // set_state on a running loader drops what it prefetched.
  loader.set_state(st);
  EXPECT_EQ(loader.state(), st);
  EXPECT_EQ(loader.next().indices, rest[0]);
  // A state that does not fit the sampler is a BadInput, and the loader carries on where it was.
  EXPECT_THROW(loader.set_state({0, 1000}), Error);
  EXPECT_EQ(loader.next().indices, rest[1]);
}

TEST(Loader, ShutsDownCleanlyWhenDestroyedEarly) {
  auto start = std::chrono::steady_clock::now();
  {
    Loader never_read(std::make_shared<FakeDataset>(1000), Sampler(1000, 10), 2);  // queue fills, worker waits
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  {
    Loader one(std::make_shared<FakeDataset>(1000), Sampler(1000, 10), 8);
    one.next();
  }
  {
    // Destroyed while the worker is inside a slow read.
    auto slow = std::make_shared<FakeDataset>(1000, -1, 30);
    Loader l(slow, Sampler(1000, 10), 2);
    l.next();
  }
  {
    Loader immediately(std::make_shared<FakeDataset>(50), Sampler(50, 10), 1);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(Loader, WorkerErrorIsRethrownInNext) {
  auto ds = std::make_shared<FakeDataset>(100, /*fail_at_call=*/3);
  Loader loader(ds, Sampler(100, 10, false), 2);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(loader.next().indices.front(), 10 * i);
  for (int k = 0; k < 2; ++k) {  // the first failing next() and every later one
    try {
      loader.next();
      ADD_FAILURE() << "next() after the failing read should throw";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::BadInput);
      EXPECT_NE(std::string(e.what()).find("fake.h5: read failed at batch 3"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(loader.state(), (Sampler::State{0, 3}));
}

TEST(Loader, RejectsMismatchedSampler) {
  EXPECT_THROW(Loader(std::make_shared<FakeDataset>(100), Sampler(99, 10), 2), Error);
  EXPECT_THROW(Loader(std::make_shared<FakeDataset>(100), Sampler(100, 10), 0), Error);
}

}  // namespace
