// Checkpoints in a run directory:
//   <run_dir>/checkpoints/step-<N>/model.safetensors        model state dict
//                                  optimizer.safetensors    optimizer state tensors
//                                  trainer_state.json       step, RNG, sampler position, world size, ...
// A checkpoint is written into step-<N>.tmp/ (every file fsynced), then the folder is renamed to
// step-<N>/, so a crash never leaves a half-written step-<N>/; latest_checkpoint() ignores *.tmp folders
// and folders missing a file.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/tensor.h"

namespace ssm::train {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

struct CheckpointFiles {
  static constexpr const char* model = "model.safetensors";
  static constexpr const char* optimizer = "optimizer.safetensors";
  static constexpr const char* trainer_state = "trainer_state.json";
};

struct Checkpoint {
  std::filesystem::path path;
  int64_t step = 0;
  std::map<std::string, Tensor> model;
  std::map<std::string, Tensor> optimizer;
  nlohmann::json trainer_state;
};

// Writes checkpoints/step-<step>/ (replacing one of the same step) and returns its path. extra_files (e.g.
// the per-rank ZeRO-1 optimizer shards, already written by their ranks) are moved into the folder before
// it is renamed, so they are part of the atomic step. keep_last > 0:
// afterwards only the keep_last newest complete checkpoints remain (and no stale *.tmp folders).
std::filesystem::path save_checkpoint(const std::filesystem::path& run_dir, int64_t step,
                                      const NamedTensors& model_tensors, const NamedTensors& optimizer_tensors,
                                      const nlohmann::json& trainer_state, int keep_last = 0,
                                      const std::vector<std::filesystem::path>& extra_files = {});

// Complete checkpoints of a run, oldest first.
std::vector<std::pair<int64_t, std::filesystem::path>> list_checkpoints(const std::filesystem::path& run_dir);
// The newest complete checkpoint, or nullopt when there is none (or no checkpoints/ folder).
std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& run_dir);

// Reads a checkpoint folder. BadInput naming the folder and the file when something is missing or bad.
Checkpoint load_checkpoint(const std::filesystem::path& path);

}  // namespace ssm::train
