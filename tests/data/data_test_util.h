// Shared helpers of the data tests (defined in data_test_util.cpp).
#pragma once
#include <cstdint>
#include <string>

namespace ssm_data_test {
std::string make_temp_dir();  // a fresh folder under /tmp
void remove_dir(const std::string& dir);
void write_text(const std::string& path, const std::string& text);
// A classification split: `inputs` (N, H, W) u8 with raw[i, h, w] = (7 i + 3 h + w) % 256, labels i % classes.
void write_image_split(const std::string& path, int64_t n, int64_t h, int64_t w, int64_t classes, double scale,
                       double mean, double stdv, int gzip);
}  // namespace ssm_data_test
