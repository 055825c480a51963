// SyntheticLM: rows of uniformly random tokens, for throughput benchmarks and smoke tests of the LM
// path without a corpus. Row i is tokens x_0..x_L drawn from splitmix64(seed ^ mix(i)) below vocab;
// inputs = x_0..x_{L-1}, targets = x_1..x_L, seq_idx = 0 (one document per row). Deterministic in
// (seed, row): any rank or resumed run sees the same rows.
#pragma once
#include <cstdint>
#include <string>

#include "data/dataset.h"

namespace ssm::data {

class SyntheticLM : public Dataset {
 public:
  SyntheticLM(int64_t rows, int64_t context, int64_t vocab_size, uint64_t seed);
  int64_t size() const override { return rows_; }
  Batch get(const std::vector<int64_t>& indices) const override;
  const std::string& path() const override { return path_; }
  int64_t context() const { return context_; }
  int64_t vocab_size() const { return vocab_; }

 private:
  int64_t rows_, context_, vocab_;
  uint64_t seed_;
  std::string path_ = "synthetic";
};

}  // namespace ssm::data
