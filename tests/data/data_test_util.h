// Shared helpers of the data tests (defined in data_test_util.cpp).
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ssm_data_test {
std::string make_temp_dir();  // a fresh folder under /tmp
void remove_dir(const std::string& dir);
void write_text(const std::string& path, const std::string& text);
// A classification split: `inputs` (N, H, W) u8 with raw[i, h, w] = (7 i + 3 h + w) % 256, labels i % classes.
void write_image_split(const std::string& path, int64_t n, int64_t h, int64_t w, int64_t classes, double scale,
                       double mean, double stdv, int gzip);

// A fixture with a fresh temporary folder `dir` (removed afterwards); p(name) is a path inside it.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override { dir = make_temp_dir(); }
  void TearDown() override { remove_dir(dir); }
  std::string p(const std::string& name) const { return dir + "/" + name; }
  std::string dir;
};

// f must throw a BadInput ssm::Error whose message contains every one of `parts`.
void expect_bad_input(const std::function<void()>& f, const std::vector<std::string>& parts);

}  // namespace ssm_data_test
