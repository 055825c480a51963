#include "data/sampler.h"

#include <algorithm>
#include <numeric>
#include <utility>

#include "core/error.h"

namespace ssm::data {

std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), int64_t(0));
  // Seed the stream with a mix of both numbers, so (seed, epoch) and (seed + 1, epoch - 1) differ.
  SplitMix64 mix(seed);
  SplitMix64 rng(mix.next() ^ (uint64_t(epoch) * 0xd1b54a32d192ed03ull + 0x8cb92ba72f3d8dd7ull));
  for (int64_t i = n - 1; i > 0; --i) std::swap(p[size_t(i)], p[size_t(rng.below(uint64_t(i) + 1))]);
  return p;
}

Sampler::Sampler(int64_t n, int64_t batch_size, bool shuffle, uint64_t seed, int rank, int world_size, bool drop_last)
    : n_(n), batch_size_(batch_size), shuffle_(shuffle), seed_(seed), rank_(rank), world_size_(world_size),
      drop_last_(drop_last) {
  SSM_CHECK_INPUT(n > 0, "Sampler: the dataset is empty");
  SSM_CHECK_INPUT(batch_size > 0, "Sampler: batch_size must be > 0, got ", batch_size);
  SSM_CHECK_INPUT(world_size >= 1 && rank >= 0 && rank < world_size, "Sampler: rank ", rank,
                  " not in [0, world_size = ", world_size, ")");
  rows_per_rank_ = drop_last ? n / world_size : (n + world_size - 1) / world_size;
  batches_per_epoch_ = drop_last ? rows_per_rank_ / batch_size : (rows_per_rank_ + batch_size - 1) / batch_size;
  SSM_CHECK_INPUT(batches_per_epoch_ > 0, "Sampler: ", n, " rows over ", world_size, " ranks give no full batch of ",
                  batch_size, " (drop_last); use a smaller batch size");
}

void Sampler::build_epoch(int64_t epoch) {
  if (built_epoch_ == epoch) return;
  std::vector<int64_t> order;
  if (shuffle_) {
    order = epoch_permutation(n_, seed_, epoch);
  } else {
    order.resize(size_t(n_));
    std::iota(order.begin(), order.end(), int64_t(0));
  }
  // Global batch k is positions [k W B, (k+1) W B) of the order and rank r takes the r-th block of B of
  // it, so W ranks together see exactly the rows one rank would see with accumulation W (same micro-
  // batches, hence bitwise-equal gradients). A last partial batch of R < B rows per rank is split the same
  // way (blocks of R). Positions >= n wrap to the start (padding).
  rows_.resize(size_t(rows_per_rank_));
  const int64_t B = batch_size_, W = world_size_;
  for (int64_t j = 0; j < rows_per_rank_; ++j) {
    const int64_t k = j / B, i = j % B, block = std::min(B, rows_per_rank_ - k * B);
    rows_[size_t(j)] = order[size_t((k * W * B + rank_ * block + i) % n_)];
  }
  built_epoch_ = epoch;
}

std::vector<int64_t> Sampler::next() {
  build_epoch(state_.epoch);
  const int64_t begin = state_.position * batch_size_;
  const int64_t end = std::min(begin + batch_size_, rows_per_rank_);
  std::vector<int64_t> batch(rows_.begin() + begin, rows_.begin() + end);
  if (++state_.position == batches_per_epoch_) state_ = {state_.epoch + 1, 0};
  return batch;
}

void Sampler::set_state(const State& s) {
  SSM_CHECK_INPUT(s.epoch >= 0 && s.position >= 0 && s.position <= batches_per_epoch_, "Sampler: state (epoch ",
                  s.epoch, ", position ", s.position, ") is out of range; an epoch has ", batches_per_epoch_,
                  " batches (did the batch size or world size change?)");
  state_ = s.position == batches_per_epoch_ ? State{s.epoch + 1, 0} : s;
}

}  // namespace ssm::data
