// Watchdog: under data parallelism, a step that makes no progress for `timeout_s` (a peer died or hangs
// inside a collective, or a GPU sync never returns) ends this process with a clear message instead of a
// silent hang. arm() at the start of a training step, disarm() at its end; a background thread checks
// every 0.5 s and, past the deadline, prints "rank R: step N made no progress for T s ...", aborts the
// communicator (ncclCommAbort releases GPU kernels waiting on peers) and exits with code 1, so the
// launcher (torchrun, srun, mpirun, ssm launch) stops the other ranks.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>

#include "trainers/comm.h"

namespace ssm::train {

class Watchdog {
 public:
  Watchdog(std::shared_ptr<Communicator> comm, double timeout_s);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  void arm(int64_t step);
  void disarm();

 private:
  void run();
  std::shared_ptr<Communicator> comm_;
  double timeout_s_;
  std::atomic<double> armed_at_{-1.0};
  std::atomic<int64_t> step_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace ssm::train
