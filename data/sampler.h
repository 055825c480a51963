// Sampler: which rows form each batch, epoch after epoch, for one rank of a data-parallel run.
//
// Epoch e's order is a permutation of 0..n-1 drawn by Fisher-Yates from a splitmix64 stream seeded
// with mix(seed, e), so it depends only on (seed, epoch) and is the same on every machine and standard
// library (no std::uniform_int_distribution). With shuffle off the order is 0..n-1.
// Sharding: every rank gets the same number of rows: floor(n / W) (drop_last) or ceil(n / W) (the order
// padded by repeating its start). Global batch k is positions [k W B, (k+1) W B) of the order and rank r
// takes its r-th block of B, so a W-rank step sees the same micro-batches as one rank with accumulation
// W. A rank's last batch is dropped if short (drop_last) or kept short.
//
// The sampler is an endless stream: next() after an epoch's last batch starts the next epoch. State
// {epoch, position} (position = batches already drawn in that epoch) restores it exactly, mid-epoch too.
#pragma once
#include <cstdint>
#include <vector>

namespace ssm::data {

// splitmix64: a 64-bit counter with a strong output mix (Steele, Lea, Flood 2014).
struct SplitMix64 {
  uint64_t state;
  explicit SplitMix64(uint64_t seed) : state(seed) {}
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, bound), bound > 0, without modulo bias: reject draws below 2^64 mod bound.
  uint64_t below(uint64_t bound) {
    const uint64_t threshold = (0 - bound) % bound;
    for (;;) {
      uint64_t x = next();
      if (x >= threshold) return x % bound;
    }
  }
};

// The permutation of 0..n-1 for (seed, epoch): Fisher-Yates, for i = n-1 .. 1 swap(p[i], p[below(i+1)]).
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

class Sampler {
 public:
  struct State {
    int64_t epoch = 0;
    int64_t position = 0;  // batches of this epoch already drawn
    bool operator==(const State& o) const { return epoch == o.epoch && position == o.position; }
  };

  Sampler(int64_t n, int64_t batch_size, bool shuffle = true, uint64_t seed = 0, int rank = 0, int world_size = 1,
          bool drop_last = false);

  std::vector<int64_t> next();  // the next batch's row indices
  int64_t epoch() const { return state_.epoch; }
  int64_t position() const { return state_.position; }
  int64_t batches_per_epoch() const { return batches_per_epoch_; }
  int64_t rows_per_rank() const { return rows_per_rank_; }  // per epoch
  int64_t batch_size() const { return batch_size_; }
  int64_t size() const { return n_; }
  State state() const { return state_; }
  void set_state(const State& s);  // BadInput if position is past the epoch's end

 private:
  void build_epoch(int64_t epoch);  // this rank's rows of that epoch into rows_

  int64_t n_, batch_size_;
  bool shuffle_;
  uint64_t seed_;
  int rank_, world_size_;
  bool drop_last_;
  int64_t rows_per_rank_ = 0, batches_per_epoch_ = 0;
  State state_;
  int64_t built_epoch_ = -1;
  std::vector<int64_t> rows_;
};

}  // namespace ssm::data
