#include <gtest/gtest.h>

#include <sstream>

#include "trainers/progress.h"

using namespace ssm::train;

namespace {
size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + what.size())) ++n;
  return n;
}
std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}
}  // namespace

TEST(Progress, FormatDuration) {
  EXPECT_EQ(format_duration(0), "00:00");
  EXPECT_EQ(format_duration(41), "00:41");
  EXPECT_EQ(format_duration(128), "02:08");
  EXPECT_EQ(format_duration(3728), "1:02:08");
  EXPECT_EQ(format_duration(-1), "?");
}

TEST(Progress, TerminalLine) {
  double now = 0;
  std::ostringstream out;
  ProgressOptions o;
  o.total = 100;
  ProgressBar bar(out, true, o, [&] { return now; });
  for (int k = 1; k <= 24; ++k) {
    now = 0.5 * k;
    bar.update(k, {{"loss", 0.4123}}, 32);
  }
  // 0.5 s and 32 samples per step: 64 samples/s; 76 steps left: 38 s.
  const std::string want = "[ 24/100] ▕████▊               ▏  24% loss 0.4123 | 64.0 samples/s | 00:12<00:38";
  EXPECT_EQ(bar.interactive_line(), want);
  EXPECT_DOUBLE_EQ(bar.samples_per_second(), 64.0);
  EXPECT_DOUBLE_EQ(bar.eta_seconds(), 38.0);
  const std::string s = out.str();
  EXPECT_EQ(count(s, "\r"), 24u);  // one redraw per update (0.5 s apart)
  EXPECT_EQ(s.substr(s.size() - want.size() - 1), "\r" + want);
  EXPECT_EQ(count(s, "\n"), 0u);

  bar.print("eval accuracy 0.91");
  EXPECT_NE(out.str().find("eval accuracy 0.91\n\r" + want), std::string::npos);
  bar.finish();
  EXPECT_EQ(out.str().back(), '\n');
}

TEST(Progress, TerminalRedrawsAreThrottled) {
  double now = 0;
  std::ostringstream out;
  ProgressOptions o;
  o.total = 20;
  ProgressBar bar(out, true, o, [&] { return now; });
  for (int k = 1; k <= 20; ++k) {
    now = 0.02 * k;
    bar.update(k, {}, 0);
  }
  size_t draws = count(out.str(), "\r");
  EXPECT_GE(draws, 3u);
  EXPECT_LE(draws, 6u);  // 0.4 s of updates, one redraw per 0.1 s, plus the final step
  EXPECT_NE(out.str().find("[20/20] ▕████████████████████▏ 100%"), std::string::npos) << out.str();
  EXPECT_NE(bar.interactive_line().find("50.0 it/s"), std::string::npos) << bar.interactive_line();
}

TEST(Progress, PlainLines) {
  double now = 0;
  std::ostringstream out;
  ProgressOptions o;
  o.total = 100;
  o.plain_interval_s = 30;
  ProgressBar bar(out, false, o, [&] { return now; });
  for (int k = 1; k <= 100; ++k) {
    now = 0.5 * k;
    bar.update(k, {{"loss", 0.4123}}, 32);
  }
  bar.finish();
  auto lines = lines_of(out.str());
  ASSERT_EQ(lines.size(), 3u) << out.str();  // first step, after 30 s, last step
  EXPECT_EQ(lines[0], "step 1/100 loss 0.4123 64.0 samples/s eta 00:50");
  EXPECT_EQ(lines[1], "step 61/100 loss 0.4123 64.0 samples/s eta 00:20");
  EXPECT_EQ(lines[2], "step 100/100 loss 0.4123 64.0 samples/s eta 00:00");
  EXPECT_EQ(count(out.str(), "\r"), 0u);
}

TEST(Progress, PlainEveryNStepsAndUnknownTotal) {
  double now = 0;
  std::ostringstream out;
  ProgressOptions o;
  o.total = 100;
  o.plain_every_steps = 25;
  o.plain_interval_s = 1e9;
  {
    ProgressBar bar(out, false, o, [&] { return now; });
    for (int k = 1; k <= 100; ++k) {
      now = 0.1 * k;
      bar.update(k, {{"loss", 2.5e-5}});
    }
  }  // the destructor finishes (nothing left to print)
  auto lines = lines_of(out.str());
  ASSERT_EQ(lines.size(), 5u) << out.str();
  EXPECT_EQ(lines[1].rfind("step 26/100 loss 2.500e-05 10.0 it/s eta", 0), 0u) << lines[1];
  EXPECT_EQ(lines[4].rfind("step 100/100", 0), 0u);

  std::ostringstream out2;
  ProgressOptions u;  // total unknown
  now = 0;
  ProgressBar bar(out2, true, u, [&] { return now; });
  now = 2;
  bar.update(5, {{"loss", 1.0}}, 40);
  EXPECT_EQ(bar.interactive_line(), "[5] loss 1.0000 | 20.0 samples/s | 00:02");
  EXPECT_EQ(bar.plain_line(), "step 5 loss 1.0000 20.0 samples/s");
  EXPECT_EQ(bar.eta_seconds(), -1);
}

TEST(Progress, RateIsSmoothed) {
  double now = 0;
  std::ostringstream out;
  ProgressOptions o;
  o.total = 1000;
  o.smoothing = 0.5;
  ProgressBar bar(out, false, o, [&] { return now; });
  now = 1;
  bar.update(1, {}, 10);  // 1 s/step
  now = 1.5;
  bar.update(2, {}, 10);  // 0.5 s/step -> EMA 0.75 s/step
  EXPECT_DOUBLE_EQ(bar.eta_seconds(), 998 * 0.75);
  EXPECT_DOUBLE_EQ(bar.samples_per_second(), 10 / 0.75);
}
