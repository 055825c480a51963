#include "trainers/throughput.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "autograd/functions.h"
#include "core/allocator.h"
#include "data/loader.h"
#include "trainers/experiment.h"
#include "trainers/optim.h"
#include "trainers/task.h"

namespace ssm::train {

nlohmann::json bench_training(const Config& recipe, int64_t warmup, int64_t steps, std::ostream& log) {
  SSM_CHECK_INPUT(warmup >= 0 && steps >= 1, "bench: --warmup must be >= 0 and --steps >= 1");
  Experiment ex = build_experiment(recipe, log);
  std::unique_ptr<Task> task = make_task(ex.task);
  const Config t = recipe.sub("trainer");
  const int64_t accumulate = t.get_int("accumulate", 1);
  const double clip = t.get_double("grad_clip", 0.0);
  std::vector<nn::Parameter> params = ex.model->named_parameters();
  std::unique_ptr<Optimizer> optimizer = make_optimizer(recipe.sub("optimizer"), params);
  data::Sampler sampler(ex.train_set->size(), ex.batch_size, true, ex.seed, 0, 1, true);
  data::Loader loader(ex.train_set, sampler, ex.prefetch);
  ex.model->train();
  std::vector<double> times;
  int64_t tokens_per_step = 0;
  reset_peak_bytes(ex.device);
  for (int64_t s = 0; s < warmup + steps; ++s) {
    const auto t0 = std::chrono::steady_clock::now();
    StepCounts counts;
    for (int64_t micro = 0; micro < accumulate; ++micro) {
      data::Batch batch = loader.next();
      ag::Variable loss = task->loss(*ex.model, batch, ex.device, ex.autocast, &counts);
      if (accumulate > 1) loss = ag::mul(loss, 1.0 / double(accumulate));
      loss.backward();
      SSM_CHECK(std::isfinite(loss.data().item()), "bench: the loss is not finite at step ", s);
    }
    clip_grad_norm(params, clip > 0 ? clip : INFINITY);
    optimizer->step();
    optimizer->zero_grad();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    tokens_per_step = counts.tokens;
    if (s >= warmup) times.push_back(dt);
  }
  std::sort(times.begin(), times.end());
  const double median = times[times.size() / 2];
  const double tps = double(tokens_per_step) / median;
  const int64_t n_params = ex.model->num_parameters();
  const double peak_flops = ex.device.is_cuda() ? (ex.autocast ? 989e12 : 67e12) : 0.0;
  nlohmann::json j = {{"model", ex.model_name},
                      {"parameters", n_params},
                      {"device", ex.device.str()},
                      {"precision", ex.autocast ? "bf16" : "f32"},
                      {"batch", ex.batch_size * accumulate},
                      {"context", ex.seq_len},
                      {"steps_timed", steps},
                      {"step_ms_median", median * 1e3},
                      {"step_ms_min", times.front() * 1e3},
                      {"tokens_per_second", tps},
                      {"peak_memory_gib", double(allocator_stats(ex.device).peak_bytes) / double(1 << 30)}};
  if (peak_flops > 0) j["mfu"] = 6.0 * double(n_params) * tps / peak_flops;
  return j;
}

}  // namespace ssm::train
