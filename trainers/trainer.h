// The training loop: `ssm train RECIPE [overrides]`.
//
// Recipe keys read here, besides experiment.h's:
//   trainer: steps (optimizer steps) or epochs; accumulate (micro-batches per step); grad_clip (0: off);
//            log_every; eval_every (0: at the end only); checkpoint_every (0: at the end only);
//            keep_checkpoints; out_dir; resume (true: continue from out_dir's latest checkpoint)
//   optimizer: trainers/optim.h       schedule: trainers/schedule.h
//
// Global batch = data.batch_size x trainer.accumulate x world size. Each step: `accumulate` forward and
// backward passes (loss scaled by 1/accumulate), the reducer averages gradients over ranks (the one
// place where they are reduced), optional clipping, one optimizer update with the schedule's lr factor.
//
// The run directory holds recipe.yaml (resolved), overrides.txt, metrics.jsonl, TensorBoard events and
// checkpoints/step-N/ (model.safetensors, optimizer.safetensors, trainer_state.json with step, sampler
// position, generator offset, world size and the resolved recipe). On SIGTERM/SIGINT the loop writes a
// checkpoint and stops; running the same command again resumes where it stopped.
#pragma once
#include <ostream>
#include <string>
#include <vector>

#include "trainers/config.h"
#include "trainers/task.h"

namespace ssm::train {

struct TrainSummary {
  std::string run_dir;
  int64_t steps = 0;         // optimizer steps done in total (including before a resume)
  bool stopped_early = false;  // stopped by a signal (checkpoint written)
  int stop_signal = 0;
  EvalStats test;            // final evaluation (when not stopped early)
  double train_seconds = 0;
};

// `out` gets the human-readable lines (progress goes to stderr).
TrainSummary train(const Config& recipe, std::ostream& out);

// `ssm eval CHECKPOINT`: rebuilds the model from the recipe saved in the checkpoint (plus overrides),
// loads the weights and scores the test split.
EvalStats evaluate_checkpoint(const std::string& checkpoint_dir, const std::vector<std::string>& overrides,
                              std::ostream& out);

}  // namespace ssm::train
