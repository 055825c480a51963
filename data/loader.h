// Loader: a background thread draws the sampler's next batches and reads them from the dataset into a
// bounded queue (at most `prefetch` batches ahead); next() hands them over in order.
//
// - An exception in the worker (a read error, a bad index) is re-thrown by the next() that would have
//   returned that batch, and by every later next().
// - The destructor stops the worker and joins it, whatever the queue holds; it never hangs, even if the
//   consumer stopped early or never called next().
// - state() is the sampler state after the last batch handed to the consumer (prefetched batches do not
//   count), so saving state() and restoring it with set_state() resumes exactly where the consumer was.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>

#include "data/dataset.h"
#include "data/sampler.h"

namespace ssm::data {

class Loader {
 public:
  Loader(std::shared_ptr<const Dataset> dataset, Sampler sampler, int prefetch = 2);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  Batch next();

  Sampler::State state() const;          // after the last batch returned by next()
  void set_state(const Sampler::State& s);  // drops prefetched batches and restarts from s
  int64_t epoch() const { return state().epoch; }
  int64_t batches_per_epoch() const { return batches_per_epoch_; }
  const Dataset& dataset() const { return *dataset_; }

 private:
  struct Item {
    Batch batch;
    Sampler::State state_after;
    std::exception_ptr error;
  };
  void start();
  void stop();
  void worker();

  std::shared_ptr<const Dataset> dataset_;
  Sampler sampler_;  // touched only by the worker while it runs
  const size_t prefetch_;
  const int64_t batches_per_epoch_;

  mutable std::mutex mu_;
  std::condition_variable not_full_, not_empty_;
  std::deque<Item> queue_;
  bool stopping_ = false;
  std::exception_ptr error_;  // sticky: re-thrown by every next() after the first failure
  Sampler::State consumed_;
  std::thread thread_;
};

}  // namespace ssm::data
