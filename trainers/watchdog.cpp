#include "trainers/watchdog.h"

#include <unistd.h>

#include <cstdio>
#include <string>

namespace ssm::train {

Watchdog::Watchdog(std::shared_ptr<Communicator> comm, double timeout_s)
    : comm_(std::move(comm)), timeout_s_(timeout_s), thread_([this] { run(); }) {}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Watchdog::arm(int64_t step) {
  step_ = step;
  armed_at_ = monotonic_seconds();
}

void Watchdog::disarm() { armed_at_ = -1.0; }

void Watchdog::run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, std::chrono::milliseconds(500), [this] { return stop_; })) {
    const double at = armed_at_;
    if (at < 0 || monotonic_seconds() - at < timeout_s_) continue;
    const std::string msg = cat("ssm: error: rank ", comm_->rank(), ": step ", step_.load(), " made no progress for ",
                                timeout_s_, " s (trainer.dist.timeout_s): a peer died or hangs; aborting\n");
    (void)!::write(2, msg.data(), msg.size());
    comm_->abort("watchdog: no progress");
    ::_exit(1);
  }
}

}  // namespace ssm::train
