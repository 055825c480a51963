#include "data/loader.h"

#include "core/error.h"

namespace ssm::data {

Loader::Loader(std::shared_ptr<const Dataset> dataset, Sampler sampler, int prefetch)
    : dataset_(std::move(dataset)), sampler_(std::move(sampler)), prefetch_(size_t(prefetch)),
      batches_per_epoch_(sampler_.batches_per_epoch()) {
  SSM_CHECK_INPUT(dataset_ != nullptr, "Loader: no dataset");
  SSM_CHECK_INPUT(prefetch >= 1, "Loader: prefetch must be >= 1, got ", prefetch);
  SSM_CHECK_INPUT(sampler_.size() == dataset_->size(), "Loader: sampler covers ", sampler_.size(), " rows but ",
                  dataset_->path(), " has ", dataset_->size());
  consumed_ = sampler_.state();
  start();
}

Loader::~Loader() { stop(); }

void Loader::start() {
  stopping_ = false;
  thread_ = std::thread([this] { worker(); });
}

void Loader::stop() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stopping_ = true;
  }
  not_full_.notify_all();
  if (thread_.joinable()) thread_.join();
  queue_.clear();
}

void Loader::worker() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      not_full_.wait(lk, [&] { return stopping_ || queue_.size() < prefetch_; });
      if (stopping_) return;
    }
    // Draw and read outside the lock: the consumer may take batches meanwhile.
    Item item;
    try {
      std::vector<int64_t> idx = sampler_.next();
      item.state_after = sampler_.state();
      item.batch = dataset_->get(idx);
    } catch (...) {
      item.error = std::current_exception();
    }
    const bool failed = item.error != nullptr;
    {
      std::lock_guard<std::mutex> g(mu_);
      queue_.push_back(std::move(item));
    }
    not_empty_.notify_one();
    if (failed) return;
  }
}

Batch Loader::next() {
  std::unique_lock<std::mutex> lk(mu_);
  if (error_) std::rethrow_exception(error_);
  not_empty_.wait(lk, [&] { return !queue_.empty(); });  // the worker always pushes (a batch or its error)
  Item item = std::move(queue_.front());
  queue_.pop_front();
  if (item.error) {
    error_ = item.error;
    std::rethrow_exception(error_);
  }
  consumed_ = item.state_after;
  lk.unlock();
  not_full_.notify_one();
  return std::move(item.batch);
}

Sampler::State Loader::state() const {
  std::lock_guard<std::mutex> g(mu_);
  return consumed_;
}

void Loader::set_state(const Sampler::State& s) {
  stop();
  try {
    sampler_.set_state(s);
  } catch (...) {  // a bad state: carry on from where the consumer was, then report it
    sampler_.set_state(consumed_);
    start();
    throw;
  }
  consumed_ = sampler_.state();
  error_ = nullptr;
  start();
}

}  // namespace ssm::data
