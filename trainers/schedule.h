// Learning-rate schedules: a factor in [0, 1] (times the optimizer's lr) as a pure function of the step.
//
// `step` is the 0-based index of the update about to be taken (0 for the first optimizer step).
//   warmup (step < W):  f = w0 + (1 - w0) * step / W            w0 = warmup_init (default 0)
//   then, with p = clamp((step - W) / (T - W), 0, 1), m = min_factor, T = total_steps:
//     constant:  f = 1
//     linear:    f = 1 - (1 - m) * p
//     cosine:    f = m + (1 - m) * (1 + cos(pi * p)) / 2
// so f reaches 1 at step W and m at step T (and stays there after T).
#pragma once
#include <cstdint>
#include <set>
#include <string>

namespace ssm::train {

class Config;

struct Schedule {
  std::string name = "constant";  // constant | linear | cosine
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;  // needed by linear and cosine
  double min_factor = 0.0;
  double warmup_init = 0.0;

  // BadInput naming the bad field ("schedule 'cosine': total_steps (100) must exceed warmup_steps (200)").
  void validate() const;
  double factor(int64_t step) const;
};

double lr_factor(const Schedule& s, int64_t step);

// Reads a schedule from a recipe subtree (keys: name, warmup_steps, total_steps, min_factor, warmup_init);
// total_steps defaults to `default_total_steps` (the trainer's step count). Validates.
Schedule schedule_from_config(const Config& c, int64_t default_total_steps);
const std::set<std::string>& schedule_config_keys();

}  // namespace ssm::train
