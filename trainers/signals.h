// Preemption: SIGTERM / SIGINT / SIGUSR1 set a flag that the training loop polls once per step; it then
// writes a checkpoint and stops, so the same command resumes the run. A second SIGINT kills at once.
#pragma once

namespace ssm::train {

void install_stop_handlers();
int stop_signal();  // 0 while no stop was asked for, else the signal number
void reset_stop_signal();  // tests

}  // namespace ssm::train
