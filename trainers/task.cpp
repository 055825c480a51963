#include "trainers/task.h"

#include "trainers/task_classification.h"
#include "trainers/task_lm.h"

namespace ssm::train {

double EvalStats::metric(const std::string& name) const {
  for (const auto& [k, v] : metrics)
    if (k == name) return v;
  SSM_CHECK(false, "EvalStats: no metric '", name, "'");
  return 0;
}

std::unique_ptr<Task> make_task(const std::string& name) {
  if (name == "classifier") return std::make_unique<ClassificationTask>();
  if (name == "lm") return std::make_unique<LMTask>();
  throw_input(cat("unknown task '", name, "' (known: classifier, lm)"));
}

}  // namespace ssm::train
