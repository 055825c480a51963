// Sampler: permutations, determinism, sharding across ranks, exact mid-epoch resume.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <set>

#include "core/error.h"
#include "data/sampler.h"

namespace {

using namespace ssm;
using namespace ssm::data;

std::vector<int64_t> draw_epoch(Sampler& s) {
  std::vector<int64_t> all;
  for (int64_t b = 0; b < s.batches_per_epoch(); ++b) {
    auto v = s.next();
    all.insert(all.end(), v.begin(), v.end());
  }
  return all;
}

TEST(SplitMix64, KnownValues) {
  // Reference values of splitmix64 seeded with 0 (as in Vigna's splitmix64.c): the stream is portable.
  SplitMix64 r(0);
  EXPECT_EQ(r.next(), 0xe220a8397b1dcdafull);
  EXPECT_EQ(r.next(), 0x6e789e6aa1b965f4ull);
  EXPECT_EQ(r.next(), 0x06c45d188009454full);
  SplitMix64 q(7);
  for (int i = 0; i < 1000; ++i) EXPECT_LT(q.below(13), 13u);
}

TEST(Sampler, PermutationCoversEveryIndexOncePerEpoch) {
  const int64_t n = 1003;
  Sampler s(n, 64, true, 42);
  EXPECT_EQ(s.batches_per_epoch(), 16);  // ceil(1003 / 64)
  for (int e = 0; e < 3; ++e) {
    EXPECT_EQ(s.epoch(), e);
    std::vector<int64_t> all = draw_epoch(s);
    ASSERT_EQ(int64_t(all.size()), n);
    std::vector<int64_t> sorted = all;
    std::sort(sorted.begin(), sorted.end());
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(sorted[size_t(i)], i);
    std::vector<int64_t> identity(static_cast<size_t>(n));
    std::iota(identity.begin(), identity.end(), int64_t(0));
    EXPECT_NE(all, identity);
  }
  EXPECT_EQ(s.epoch(), 3);
}

TEST(Sampler, LastBatchShortOrDropped) {
  Sampler keep(10, 4, false, 0);
  EXPECT_EQ(keep.next(), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(keep.next(), (std::vector<int64_t>{4, 5, 6, 7}));
  EXPECT_EQ(keep.next(), (std::vector<int64_t>{8, 9}));
  EXPECT_EQ(keep.epoch(), 1);
  EXPECT_EQ(keep.next(), (std::vector<int64_t>{0, 1, 2, 3}));
  Sampler drop(10, 4, false, 0, 0, 1, true);
  EXPECT_EQ(drop.batches_per_epoch(), 2);
  drop.next();
  drop.next();
  EXPECT_EQ(drop.epoch(), 1);
}

TEST(Sampler, DeterministicForSeedDifferentAcrossEpochsAndSeeds) {
  Sampler a(500, 50, true, 7), b(500, 50, true, 7), c(500, 50, true, 8);
  std::vector<int64_t> a0 = draw_epoch(a), b0 = draw_epoch(b), c0 = draw_epoch(c);
  EXPECT_EQ(a0, b0);
  EXPECT_NE(a0, c0);
  std::vector<int64_t> a1 = draw_epoch(a);
  EXPECT_NE(a0, a1);
  EXPECT_EQ(a1, draw_epoch(b));
  EXPECT_EQ(epoch_permutation(500, 7, 1), a1);
  // Pinned values: the order is part of a run's reproducibility (a resumed run, another machine, another
  // standard library must draw the same), so a change here changes every run's data order.
  EXPECT_EQ(epoch_permutation(10, 0, 0), (std::vector<int64_t>{3, 2, 8, 1, 7, 6, 4, 5, 9, 0}));
  EXPECT_EQ(epoch_permutation(10, 12345, 3), (std::vector<int64_t>{6, 2, 8, 7, 3, 4, 0, 5, 9, 1}));
}

TEST(Sampler, ShuffleIsRoughlyUniform) {
  // Over many epochs each index appears at position 0 about equally often (chi-square-ish bound).
  const int n = 8, epochs = 8000;
  std::vector<int> first(n, 0);
  for (int e = 0; e < epochs; ++e) first[size_t(epoch_permutation(n, 3, e)[0])]++;
  for (int c : first) EXPECT_NEAR(c, epochs / n, 150);
}

TEST(Sampler, RanksDisjointAndCovering) {
  const int64_t n = 1000;
  const int W = 4;
  std::set<int64_t> seen;
  int64_t total = 0;
  for (int r = 0; r < W; ++r) {
    Sampler s(n, 32, true, 5, r, W);
    EXPECT_EQ(s.rows_per_rank(), 250);
    EXPECT_EQ(s.batches_per_epoch(), 8);
    for (int64_t x : draw_epoch(s)) {
      EXPECT_TRUE(seen.insert(x).second) << "index " << x << " on two ranks";
      ++total;
    }
  }
  EXPECT_EQ(total, n);
  EXPECT_EQ(int64_t(seen.size()), n);
}

TEST(Sampler, UnevenRanksPadOrDrop) {
  const int64_t n = 10;
  const int W = 4;
  // Padded: every rank gets ceil(10 / 4) = 3 rows; together they cover every index, 2 twice.
  std::vector<int64_t> counts(static_cast<size_t>(n), 0);
  for (int r = 0; r < W; ++r) {
    Sampler s(n, 2, true, 1, r, W);
    EXPECT_EQ(s.batches_per_epoch(), 2);
    auto all = draw_epoch(s);
    EXPECT_EQ(all.size(), 3u);
    for (int64_t x : all) counts[size_t(x)]++;
  }
  for (int64_t c : counts) EXPECT_GE(c, 1);
  EXPECT_EQ(std::accumulate(counts.begin(), counts.end(), int64_t(0)), 12);
  // drop_last: floor(10 / 4) = 2 rows per rank, disjoint.
  std::set<int64_t> seen;
  for (int r = 0; r < W; ++r) {
    Sampler s(n, 2, true, 1, r, W, true);
    EXPECT_EQ(s.batches_per_epoch(), 1);
    for (int64_t x : draw_epoch(s)) EXPECT_TRUE(seen.insert(x).second);
  }
  EXPECT_EQ(seen.size(), 8u);
}

TEST(Sampler, ResumeMidEpochGivesTheSameRemainingBatches) {
  Sampler a(777, 20, true, 99, 1, 3);
  for (int i = 0; i < 50; ++i) a.next();  // 259 rows per rank, 13 batches per epoch: into the fourth epoch
  Sampler::State st = a.state();
  EXPECT_EQ(st.epoch, 3);
  EXPECT_EQ(st.position, 11);
  std::vector<std::vector<int64_t>> rest;
  for (int i = 0; i < 60; ++i) rest.push_back(a.next());

  Sampler b(777, 20, true, 99, 1, 3);
  b.set_state(st);
  for (int i = 0; i < 60; ++i) ASSERT_EQ(b.next(), rest[size_t(i)]) << "batch " << i << " after resume";

  // The end of an epoch normalises to the start of the next.
  b.set_state({2, b.batches_per_epoch()});
  EXPECT_EQ(b.state(), (Sampler::State{3, 0}));
  EXPECT_THROW(b.set_state({0, b.batches_per_epoch() + 1}), Error);
  EXPECT_THROW(b.set_state({-1, 0}), Error);
}

TEST(Sampler, BadArguments) {
  EXPECT_THROW(Sampler(0, 4), Error);
  EXPECT_THROW(Sampler(10, 0), Error);
  EXPECT_THROW(Sampler(10, 4, true, 0, 2, 2), Error);
  EXPECT_THROW(Sampler(10, 4, true, 0, 0, 4, true), Error);  // 2 rows per rank, no full batch of 4
}

}  // namespace
