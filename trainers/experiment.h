// Experiment: what a recipe describes, built and ready to train or evaluate: the device, the model
// (with the generator it draws dropout masks from), and the train/test splits. Shared by `ssm train`
// and `ssm eval`, so both read a recipe the same way.
//
// Recipe sections read here (every key is checked; unknown ones are errors with file:line):
//   model:   name + the model's own keys (layers/registry.h); d_input and n_classes default to the data's
//   data:    classification (model task "classifier"):
//              name: fashion-mnist (root: IDX folder, path: HDF5 folder, converted on first use) or
//              name: hdf5 (train: file, test: file); pool
//            language modelling (model task "lm"; context: tokens per row):
//              name: lm (train: file, test: file), or
//              name: pg19 (root: PG19-layout folder, path: HDF5 folder, converted on first use;
//                          test: the split scored, validation by default), or
//              name: synthetic (vocab_size, rows: random token rows, for benchmarks)
//            every dataset: batch_size, eval_batch_size, prefetch
//   trainer: device (cpu | cuda | cuda:N), precision (f32 | bf16), seed
#pragma once
#include <map>
#include <memory>
#include <ostream>
#include <set>
#include <string>

#include "core/ops.h"
#include "data/dataset.h"
#include "layers/module.h"
#include "trainers/config.h"

namespace ssm::train {

struct Experiment {
  Device device;
  bool autocast = false;  // bf16 matmuls (GPU only)
  uint64_t seed = 0;
  std::unique_ptr<Generator> gen;  // init and dropout; outlives the model (declared first)
  std::string model_name;
  std::map<std::string, std::string> model_config;  // resolved (every key), saved in checkpoints
  std::string task;  // the model's task: "classifier" | "lm" (trainers/task.h)
  std::shared_ptr<nn::Module> model;
  std::shared_ptr<data::Dataset> train_set, test_set;
  int64_t seq_len = 0;  // time steps per row (for the log line and throughput)
  int64_t batch_size = 0, eval_batch_size = 0;
  int prefetch = 2;
};

// Builds everything; `log` receives one-line notes (dataset conversion). rank picks cuda:<local rank>
// when the recipe says plain "cuda" under a multi-process launcher.
Experiment build_experiment(const Config& recipe, std::ostream& log, int local_rank = 0);

// The keys build_experiment reads (for check_unknown_keys).
std::set<std::string> experiment_keys(const Config& recipe);

}  // namespace ssm::train
