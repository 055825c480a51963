// SyntheticLM: deterministic rows, targets = inputs shifted, and rows that share no stream (an earlier
// version seeded row i with seed + i * step of the generator, so row i+1 was row i shifted by one token
// and a model could memorise the "random" data).
#include <gtest/gtest.h>

#include <set>

#include "data/synthetic_lm.h"

using ssm::data::SyntheticLM;

TEST(SyntheticLM, DeterministicShiftedAndIndependentRows) {
  SyntheticLM d(100, 16, 50000, 0);
  auto b = d.get({0, 1, 2, 0});
  const auto in = b.inputs.to_int_vector(), tg = b.targets.to_int_vector();
  for (int64_t t = 0; t + 1 < 16; ++t) EXPECT_EQ(in[size_t(t + 1)], tg[size_t(t)]);
  for (int64_t t = 0; t < 16; ++t) EXPECT_EQ(in[size_t(t)], in[size_t(3 * 16 + t)]);  // row 0 twice
  // No row is a shift of another: the 48 tokens of rows 0..2 are (almost surely) all distinct.
  std::set<int64_t> seen(in.begin(), in.begin() + 48);
  EXPECT_GT(seen.size(), 45u);
  for (int64_t v : in) EXPECT_TRUE(v >= 0 && v < 50000);
  EXPECT_EQ(b.seq_idx.numel(), 4 * 16);
}
