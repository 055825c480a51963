#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "trainers/config.h"
#include "trainers/schedule.h"

using namespace ssm;
using namespace ssm::train;

TEST(Schedule, CosineWithWarmup) {
  Schedule s{"cosine", 10, 110, 0.1, 0.0};
  EXPECT_DOUBLE_EQ(s.factor(0), 0.0);
  EXPECT_DOUBLE_EQ(s.factor(5), 0.5);
  EXPECT_DOUBLE_EQ(s.factor(10), 1.0);                                       // end of warmup
  EXPECT_NEAR(s.factor(35), 0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * 0.25)), 1e-15);
  EXPECT_NEAR(s.factor(60), 0.55, 1e-15);                                    // halfway: (1 + m) / 2
  EXPECT_NEAR(s.factor(110), 0.1, 1e-15);                                    // total_steps: min_factor
  EXPECT_NEAR(s.factor(500), 0.1, 1e-15);                                    // and after
  EXPECT_DOUBLE_EQ(lr_factor(s, 5), 0.5);
  // Monotone decay after warmup.
  for (int64_t t = 10; t < 110; ++t) EXPECT_GE(s.factor(t), s.factor(t + 1));
}

TEST(Schedule, WarmupInit) {
  Schedule s{"cosine", 10, 20, 0.0, 0.2};
  EXPECT_DOUBLE_EQ(s.factor(0), 0.2);
  EXPECT_DOUBLE_EQ(s.factor(5), 0.6);
  EXPECT_DOUBLE_EQ(s.factor(10), 1.0);
  EXPECT_NEAR(s.factor(20), 0.0, 1e-15);
}

TEST(Schedule, LinearAndConstant) {
  Schedule lin{"linear", 10, 110, 0.1, 0.0};
  EXPECT_DOUBLE_EQ(lin.factor(0), 0.0);
  EXPECT_DOUBLE_EQ(lin.factor(10), 1.0);
  EXPECT_NEAR(lin.factor(35), 1 - 0.9 * 0.25, 1e-15);
  EXPECT_NEAR(lin.factor(60), 0.55, 1e-15);
  EXPECT_NEAR(lin.factor(110), 0.1, 1e-15);
  EXPECT_NEAR(lin.factor(1000), 0.1, 1e-15);
  Schedule lin0{"linear", 0, 4, 0.0, 0.0};
  EXPECT_DOUBLE_EQ(lin0.factor(0), 1.0);
  EXPECT_DOUBLE_EQ(lin0.factor(1), 0.75);
  EXPECT_DOUBLE_EQ(lin0.factor(4), 0.0);

  Schedule c;  // constant, no warmup
  EXPECT_DOUBLE_EQ(c.factor(0), 1.0);
  EXPECT_DOUBLE_EQ(c.factor(123456), 1.0);
  Schedule cw{"constant", 4, 0, 0.0, 0.0};
  EXPECT_DOUBLE_EQ(cw.factor(0), 0.0);
  EXPECT_DOUBLE_EQ(cw.factor(2), 0.5);
  EXPECT_DOUBLE_EQ(cw.factor(4), 1.0);
  EXPECT_DOUBLE_EQ(cw.factor(400), 1.0);
}

TEST(Schedule, ValidationAndConfig) {
  auto msg = [](const Schedule& s) {
    try {
      s.validate();
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::BadInput);
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(msg({"cosine", 200, 100, 0.0, 0.0}).find("total_steps (100) must exceed warmup_steps (200)"),
            std::string::npos);
  EXPECT_NE(msg({"exponential", 0, 100, 0.0, 0.0}).find("unknown schedule 'exponential'"), std::string::npos);
  EXPECT_NE(msg({"linear", 0, 100, 1.5, 0.0}).find("min_factor must be in [0, 1]"), std::string::npos);
  EXPECT_EQ(msg({"constant", 0, 0, 0.0, 0.0}), "");

  Config c = Config::from_string("schedule:\n  name: cosine\n  warmup_steps: 5\n  min_factor: 0.01\n", "s.yaml");
  Schedule s = schedule_from_config(c.sub("schedule"), 50);
  EXPECT_EQ(s.name, "cosine");
  EXPECT_EQ(s.warmup_steps, 5);
  EXPECT_EQ(s.total_steps, 50);
  EXPECT_DOUBLE_EQ(s.min_factor, 0.01);
  Config bad = Config::from_string("schedule:\n  name: cosine\n  warmup: 5\n", "s.yaml");
  try {
    schedule_from_config(bad.sub("schedule"), 50);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("s.yaml:3: unknown key 'schedule.warmup' (did you mean "
                                         "'schedule.warmup_init'?)"),
              std::string::npos)
        << e.what();
  }
  Config bad2 = Config::from_string("schedule:\n  name: cosine\n  warmup_steps: 60\n", "s.yaml");
  try {
    schedule_from_config(bad2.sub("schedule"), 50);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("total_steps (50) must exceed warmup_steps (60)"), std::string::npos);
  }
}
