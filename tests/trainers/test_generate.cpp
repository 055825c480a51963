// Sampling rules of trainers/generate.h: greedy, temperature, top-k, top-p, padding columns.
#include <gtest/gtest.h>

#include <cmath>

#include "trainers/generate.h"
#include "trainers_test_util.h"

using ssm::train::SamplingOptions;
using ssm::train::sample_token;
using ssm_trainers_test::bad_input;

TEST(Sampling, GreedyIsArgmaxOverTheRealVocabularyOnly) {
  SamplingOptions o;
  o.temperature = 0;
  // Column 4 is padding (vocab 4): never chosen even though it is the largest.
  const std::vector<float> l = {0.1f, 2.0f, -1.0f, 1.5f, 9.0f};
  for (double u : {0.0, 0.5, 0.999}) EXPECT_EQ(sample_token(l, 4, o, u), 1);
}

TEST(Sampling, InverseCdfOverTokensSortedByProbability) {
  SamplingOptions o;  // T = 1: p = (1/4, 3/4) for logits (0, ln 3); order: token 1 then token 0
  const std::vector<float> l = {0.0f, float(std::log(3.0))};
  EXPECT_EQ(sample_token(l, 2, o, 0.0), 1);
  EXPECT_EQ(sample_token(l, 2, o, 0.74), 1);
  EXPECT_EQ(sample_token(l, 2, o, 0.76), 0);
  EXPECT_EQ(sample_token(l, 2, o, 0.999), 0);
  // Temperature 2: p ~ exp(l / 2) = (1, sqrt 3) -> P(token 1) = sqrt3 / (1 + sqrt3) = 0.634.
  o.temperature = 2;
  EXPECT_EQ(sample_token(l, 2, o, 0.62), 1);
  EXPECT_EQ(sample_token(l, 2, o, 0.65), 0);
}

TEST(Sampling, TopKAndTopPKeepOnlyTheMostLikely) {
  const std::vector<float> l = {0.0f, 1.0f, 2.0f, 3.0f};
  SamplingOptions k1;
  k1.top_k = 1;
  for (double u : {0.0, 0.3, 0.99}) EXPECT_EQ(sample_token(l, 4, k1, u), 3);
  SamplingOptions k2;
  k2.top_k = 2;  // only tokens 3 and 2
  for (double u : {0.0, 0.5, 0.99}) {
    const int64_t t = sample_token(l, 4, k2, u);
    EXPECT_TRUE(t == 3 || t == 2) << t;
  }
  SamplingOptions p;
  p.top_p = 0.5;  // softmax(0..3): p(3) = 0.64 >= 0.5: the nucleus is token 3 alone
  for (double u : {0.0, 0.7, 0.99}) EXPECT_EQ(sample_token(l, 4, p, u), 3);
  p.top_p = 0.9;  // 0.64 + 0.24 = 0.88 < 0.9: tokens 3, 2 and 1
  EXPECT_EQ(sample_token(l, 4, p, 0.999), 1);
}

TEST(Sampling, BadOptionsNameTheFlag) {
  SamplingOptions o;
  o.top_p = 0;
  EXPECT_NE(bad_input([&] { ssm::train::check_sampling(o); }).find("--top-p"), std::string::npos);
  o = {};
  o.temperature = -1;
  EXPECT_NE(bad_input([&] { ssm::train::check_sampling(o); }).find("--temperature"), std::string::npos);
  o = {};
  o.top_k = -3;
  EXPECT_NE(bad_input([&] { ssm::train::check_sampling(o); }).find("--top-k"), std::string::npos);
}
