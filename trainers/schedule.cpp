#include "trainers/schedule.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "trainers/config.h"

namespace ssm::train {

void Schedule::validate() const {
  const std::string ctx = cat("schedule '", name, "': ");
  SSM_CHECK_INPUT(name == "constant" || name == "linear" || name == "cosine", "unknown schedule '", name,
                  "' (expected constant, linear or cosine)");
  SSM_CHECK_INPUT(warmup_steps >= 0, ctx, "warmup_steps must be >= 0, got ", warmup_steps);
  SSM_CHECK_INPUT(min_factor >= 0.0 && min_factor <= 1.0, ctx, "min_factor must be in [0, 1], got ", min_factor);
  SSM_CHECK_INPUT(warmup_init >= 0.0 && warmup_init <= 1.0, ctx, "warmup_init must be in [0, 1], got ",
                  warmup_init);
  if (name != "constant")
    SSM_CHECK_INPUT(total_steps > warmup_steps, ctx, "total_steps (", total_steps, ") must exceed warmup_steps (",
                    warmup_steps, ")");
}

double Schedule::factor(int64_t step) const {
  if (step < 0) step = 0;
  if (step < warmup_steps) return warmup_init + (1.0 - warmup_init) * double(step) / double(warmup_steps);
  if (name == "constant") return 1.0;
  double p = std::clamp(double(step - warmup_steps) / double(std::max<int64_t>(1, total_steps - warmup_steps)), 0.0, 1.0);
  if (name == "linear") return 1.0 - (1.0 - min_factor) * p;
  if (name == "cosine") return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + std::cos(M_PI * p));
  throw_input(cat("unknown schedule '", name, "' (expected constant, linear or cosine)"));
}

double lr_factor(const Schedule& s, int64_t step) { return s.factor(step); }

const std::set<std::string>& schedule_config_keys() {
  static const std::set<std::string> keys = {"name", "warmup_steps", "total_steps", "min_factor", "warmup_init"};
  return keys;
}

Schedule schedule_from_config(const Config& c, int64_t default_total_steps) {
  Schedule s;
  s.name = c.get_string("name", "constant");
  s.warmup_steps = c.get_int("warmup_steps", 0);
  s.total_steps = c.get_int("total_steps", default_total_steps);
  s.min_factor = c.get_double("min_factor", 0.0);
  s.warmup_init = c.get_double("warmup_init", 0.0);
  c.check_unknown_keys(schedule_config_keys());
  try {
    s.validate();
  } catch (const Error& e) {
    throw_input(cat(c.source(), ": ", c.full_key(""), ": ", e.what()));
  }
  return s;
}

}  // namespace ssm::train
