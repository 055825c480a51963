#include "trainers/signals.h"

#include <atomic>
#include <csignal>

namespace ssm::train {

namespace {
std::atomic<int> g_signal{0};

void on_signal(int sig) {
  if (sig == SIGINT && g_signal.load() == SIGINT) {
    std::signal(SIGINT, SIG_DFL);
    std::raise(SIGINT);
    return;
  }
  g_signal.store(sig);
}
}  // namespace

void install_stop_handlers() {
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  std::signal(SIGUSR1, on_signal);
}

int stop_signal() { return g_signal.load(); }
void reset_stop_signal() { g_signal.store(0); }

}  // namespace ssm::train
