// ZeRO stage 1 (Rajbhandari et al. 2020): AdamW whose state and update are sharded across the ranks of a
// data-parallel run. It replaces BOTH the gradient reducer and the optimizer.
//
// Layout. The trainable parameters (requires_grad, in the given order = named_parameters() order) are laid
// end to end in one logical f32 vector of P elements, padded with zeros to Ppad = W * S (S = ceil(P / W)).
// Rank r owns the contiguous shard [r S, (r+1) S): it keeps AdamW's m and v for it only (8 S bytes instead
// of 8 P: state_bytes() vs unsharded_state_bytes()) and updates only those elements. The f32 master
// weights are the model's parameters themselves (autocast computes in bf16 from them), so there is no
// second copy to shard: the update writes this rank's slices of the parameters, and the all-gather brings
// the other ranks' slices. The buffers of the exchange (flat: Ppad, shard: S) exist only between reduce()
// and the end of step(), when the activations are already freed, so they add nothing to the peak of the
// forward and backward; DDP instead keeps bucket buffers of P elements for the whole run.
//
// One optimizer step (the trainer calls them in this order):
//   reduce(params)    flat[k] = grad of the parameter at k (0 where a parameter has no gradient);
//                     grad_shard = reduce_scatter(flat, Avg)  = this rank's S-slice of the mean gradient.
//                     Also presence[i] = Sum over ranks of (parameter i has a gradient) (all_reduce of
//                     one flag per parameter): a parameter no rank gave a gradient is skipped by step(),
//                     exactly as Optimizer::step skips parameters without a gradient after BucketReducer.
//                     Not hook-driven: the collective starts after backward (no overlap in this version).
//                     Gradient accumulation needs nothing: gradients accumulate locally, reduce() once.
//                     The parameters' own .grad() are left as they are (local, not averaged).
//   clip_grad_norm(c) |g| = sqrt(all_reduce_scalar(Sum over ranks of |grad_shard|^2)); when finite and
//                     > c, grad_shard *= c / (|g| + 1e-6) (same rule as train::clip_grad_norm).
//   step(lr_scale)    for each parameter i present this step: t_i += 1, and on the intersection of its
//                     range [off_i, off_i + n_i) with the shard, kernels::adamw_step(parameter slice, grad,
//                     m, v, lr = group lr * lr_scale, group wd, betas, eps, t_i) -- the same arithmetic,
//                     element by element, as AdamW::update. Then the updated slices are packed into the
//                     shard buffer, flat = all_gather(shard), and every parameter copies its range back:
//                     parameters stay identical on every rank.
//
// Checkpoints: state_tensors() is this rank's shard, written per rank (optimizer-rank<r>.safetensors):
//   "step"              i64 []     optimizer steps taken
//   "zero1.layout"      i64 [4]    {P, W, rank, S}
//   "zero1.param_numel" i64 [n]    element count of each trainable parameter, in order (layout check)
//   "zero1.param_steps" i64 [n]    AdamW step count t_i of each parameter (the same on every rank)
//   "zero1.master"      f32 [S]    the parameters' values in the shard (the f32 masters; zeros in padding)
//   "zero1.exp_avg"     f32 [S]    m of the shard
//   "zero1.exp_avg_sq"  f32 [S]    v of the shard
// load_state_tensors() wants a shard of the same layout (P, W, rank); for another world size, first run
// reshard_zero1_state() over all the old ranks' files (a pure function, no communication).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "trainers/comm.h"
#include "trainers/optim.h"
#include "trainers/reducer.h"

namespace ssm::train {

class Config;

struct Zero1Options {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;
  GroupOverrides groups;  // same meaning as for AdamW ("no_decay" defaults to weight decay 0)
};

// From the recipe's optimizer subtree (the keys of make_optimizer); name must be adamw (BadInput else).
Zero1Options zero1_options(const Config& optimizer);

class Zero1 : public GradReducer {
 public:
  // params: the model's named_parameters(), already identical on every rank (broadcast first).
  Zero1(std::shared_ptr<Communicator> comm, std::vector<nn::Parameter> params, Zero1Options options);
  ~Zero1() override;
  Zero1(const Zero1&) = delete;
  Zero1& operator=(const Zero1&) = delete;

  // GradReducer: reduce-scatter of the mean gradient into this rank's shard (see above).
  void reduce(std::vector<nn::Parameter>& params) override;
  int rank() const override;
  int world_size() const override;

  double clip_grad_norm(double max_norm);  // returns the global norm before clipping; needs reduce() first
  void step(double lr_scale = 1.0);        // needs reduce() first; all-gathers the parameters
  void zero_grad();                        // drops every parameter's .grad()
  int64_t step_count() const;
  const std::vector<Optimizer::Group>& groups() const;  // lr / weight decay per group, as AdamW's

  // Layout and memory.
  int64_t numel() const;        // P
  int64_t shard_numel() const;  // S
  int64_t shard_offset() const; // r S
  size_t state_bytes() const;            // 8 S: m + v of this rank
  size_t unsharded_state_bytes() const;  // 8 P: what a non-sharded AdamW holds

  // Checkpoint shard of this rank (copies), and loading one (exact layout; BadInput naming `source`).
  std::vector<std::pair<std::string, Tensor>> state_tensors() const;
  void load_state_tensors(const std::map<std::string, Tensor>& tensors, const std::string& source = "zero1 state");

  struct State;

 private:
  std::unique_ptr<State> st_;
};

// ---- resharding (pure functions over checkpoint tensors; CPU) ----
// The full, unsharded state of a run: master / exp_avg / exp_avg_sq of P elements.
struct Zero1FullState {
  int64_t step = 0;
  std::vector<int64_t> param_numel;
  std::vector<int64_t> param_steps;
  Tensor master, exp_avg, exp_avg_sq;  // f32 [P]
};
// From every old rank's shard, in rank order (shards[r] written by rank r of W = shards.size()). BadInput
// (naming sources[r] when given) for a missing tensor, a wrong rank / world size / P / S, or shards that
// disagree on the step counts or the parameter sizes.
Zero1FullState zero1_gather(const std::vector<std::map<std::string, Tensor>>& shards,
                            const std::vector<std::string>& sources = {});
// The shard tensors (names as in Zero1::state_tensors) of rank `rank` of `world` for a full state.
std::vector<std::pair<std::string, Tensor>> zero1_shard(const Zero1FullState& full, int rank, int world);
// zero1_shard(zero1_gather(old), rank, world).
std::vector<std::pair<std::string, Tensor>> reshard_zero1_state(const std::vector<std::map<std::string, Tensor>>& old,
                                                                int rank, int world,
                                                                const std::vector<std::string>& sources = {});
// Between a ZeRO-1 full state and a plain AdamW's state_tensors() (Optimizer naming: "step",
// "<param>.exp_avg", "<param>.exp_avg_sq", "<param>.step"), for switching trainer.dist.zero on or off at
// resume. params: the model's named_parameters(); only those with requires_grad are in the flat vector
// (others get zero state and step 0). The AdamW's parameters hold the weights; the master is not used.
std::vector<std::pair<std::string, Tensor>> adamw_state_from_zero1(const Zero1FullState& full,
                                                                   const std::vector<nn::Parameter>& params);
Zero1FullState zero1_from_adamw_state(const std::map<std::string, Tensor>& adamw,
                                      const std::vector<nn::Parameter>& params, const std::string& source = "adamw state");

// The per-rank file name inside a checkpoint folder: "optimizer-rank<r>.safetensors".
std::string zero1_shard_file(int rank);

}  // namespace ssm::train
