// `ssm bench RECIPE [overrides]`: training throughput of a recipe's model, without the loop's logging,
// evaluation or checkpoints. Runs `warmup` full training steps (forward, backward, clip, optimizer),
// then `steps` timed ones (wall clock per step; every step ends in a host sync, as the loss is read),
// and reports the median step:
//   tokens_per_second = batch x accumulate x context / median step seconds
//   mfu               = 6 x parameters x tokens_per_second / peak FLOP/s (the usual 6N-per-token estimate
//                       of a forward+backward; the scan's own FLOPs are not counted), peak = 989e12 for
//                       bf16 on an H100 SXM, 67e12 for its f32, 0 (not reported) on the CPU
//   peak_memory_gib   = the caching allocator's peak bytes on the device (reserved blocks in use)
#pragma once
#include <ostream>

#include <nlohmann/json.hpp>

#include "trainers/config.h"

namespace ssm::train {

nlohmann::json bench_training(const Config& recipe, int64_t warmup, int64_t steps, std::ostream& log);

}  // namespace ssm::train
