// BucketReducer: DDP-style gradient averaging that overlaps communication with the backward pass.
//
// At construction every parameter that requires grad gets an autograd hook (autograd/variable.h: it runs
// when the leaf's gradient for the pass is complete). Parameters are grouped into buckets of about
// bucket_mb megabytes (in reduce_dtype) in REVERSE parameter order, the order in which backward
// finishes them; a parameter larger than the cap gets a bucket of its own.
//
// Per synchronised step:
//   hook(p):   mark p ready; while the next bucket in order (0, 1, 2, ...) has every parameter ready,
//              flatten its gradients into the bucket's contiguous buffer (converted to reduce_dtype) and
//              start an async all-reduce (Avg) of it. Buckets start strictly in index order on every
//              rank, so the collectives match even when gradients become ready in different orders.
//   reduce():  start the buckets not started yet (parameters that got no gradient this step count as
//              zeros), wait for all (bounded by the communicator's timeout), copy the averages back
//              into each parameter's .grad() (converted to the parameter's dtype).
// Each bucket also carries one presence flag per parameter (1 when this rank has a gradient): a
// parameter that no rank gave a gradient keeps an undefined gradient (the optimizer then skips it, as in
// a single-process run); one that some ranks did not use gets sum / world size (their zeros included).
//
// Gradient accumulation: set_sync(false) before the backward of every micro-step but the last, so the
// hooks do nothing and gradients accumulate locally; set_sync(true) before the last one, whose hooks see
// the accumulated gradients. reduce() is called once per optimizer step (it reduces whatever is there).
//
// The same code runs with the MPI communicator on CPU tensors (CI) and NCCL on CUDA tensors, where the
// flatten copy is queued on the compute stream and the all-reduce on NCCL's own stream after it.
#pragma once
#include <memory>
#include <vector>

#include "trainers/comm.h"
#include "trainers/config.h"
#include "trainers/reducer.h"

namespace ssm::train {

struct BucketOptions {
  double bucket_mb = 25.0;         // trainer.dist.bucket_mb (MiB of reduce_dtype values per bucket)
  DType reduce_dtype = DType::f32;  // trainer.dist.reduce_dtype: f32 or bf16 (f64 for gradchecks)
};

// The recipe's trainer.dist section: bucket_mb (default 25), reduce_dtype (f32 | bf16, default f32),
// timeout_s (default 300). BadInput naming the key for bad values.
struct DistConfig {
  BucketOptions bucket;
  double timeout_s = 300.0;
  int zero = 0;  // trainer.dist.zero: 1 = ZeRO-1 (trainers/zero1.h: optimizer state sharded over ranks)
};
DistConfig dist_config(const Config& trainer_dist);  // pass recipe.sub("trainer.dist")
// The keys above, fully qualified ("trainer.dist.bucket_mb", ...), for Config::check_unknown_keys.
std::vector<std::string> dist_config_keys();

class BucketReducer : public GradReducer {
 public:
  BucketReducer(std::shared_ptr<Communicator> comm, const std::vector<nn::Parameter>& params,
                BucketOptions options = {});
  ~BucketReducer() override;  // the hooks stay registered but become no-ops
  BucketReducer(const BucketReducer&) = delete;
  BucketReducer& operator=(const BucketReducer&) = delete;

  void reduce(std::vector<nn::Parameter>& params) override;
  int rank() const override;
  int world_size() const override;

  void set_sync(bool on);
  bool sync() const;

  // Indices into the constructor's parameter list, bucket by bucket in launch order (tests, logs).
  const std::vector<std::vector<size_t>>& buckets() const;
  Communicator& communicator() const;

  // The assignment rule alone: `bytes[i]` is parameter i's size; returns buckets of indices, filled from
  // the last parameter backwards, a new bucket starting when the next one would pass cap_bytes.
  static std::vector<std::vector<size_t>> assign_buckets(const std::vector<size_t>& bytes, size_t cap_bytes);

  struct State;

 private:
  std::shared_ptr<State> st_;
};

}  // namespace ssm::train
