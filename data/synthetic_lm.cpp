#include "data/synthetic_lm.h"

#include "core/error.h"
#include "data/sampler.h"

namespace ssm::data {

SyntheticLM::SyntheticLM(int64_t rows, int64_t context, int64_t vocab_size, uint64_t seed)
    : rows_(rows), context_(context), vocab_(vocab_size), seed_(seed) {
  SSM_CHECK_INPUT(rows >= 1 && context >= 1 && vocab_size >= 2, "synthetic LM data: rows (", rows, "), context (",
                  context, ") and vocab_size (", vocab_size, ") must be >= 1, >= 1, >= 2");
}

Batch SyntheticLM::get(const std::vector<int64_t>& indices) const {
  const int64_t B = int64_t(indices.size()), L = context_;
  Batch b;
  b.indices = indices;
  b.inputs = Tensor::empty({B, L}, DType::i64, Device::cpu());
  b.targets = Tensor::empty({B, L}, DType::i64, Device::cpu());
  b.seq_idx = Tensor::zeros({B, L}, DType::i32, Device::cpu());
  int64_t* in = b.inputs.data<int64_t>();
  int64_t* tg = b.targets.data<int64_t>();
  for (int64_t r = 0; r < B; ++r) {
    SSM_CHECK_INPUT(indices[size_t(r)] >= 0 && indices[size_t(r)] < rows_, "synthetic LM data: row ",
                    indices[size_t(r)], " out of range [0, ", rows_, ")");
    // Row seed = a hash of (seed, row): rows must not be shifted copies of one stream (splitmix64's state
    // advances by a constant, so seeding row i with seed + i * constant would make row i+1 = row i shifted).
    SplitMix64 rng(SplitMix64(seed_ ^ (0xd1b54a32d192ed03ull * uint64_t(indices[size_t(r)] + 1))).next());
    int64_t prev = int64_t(rng.below(uint64_t(vocab_)));
    for (int64_t t = 0; t < L; ++t) {
      const int64_t next = int64_t(rng.below(uint64_t(vocab_)));
      in[r * L + t] = prev;
      tg[r * L + t] = next;
      prev = next;
    }
  }
  return b;
}

}  // namespace ssm::data
