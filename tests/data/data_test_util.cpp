// Shared helpers of the data tests (declared again at the top of each test file that uses them).
#include "tests/data/data_test_util.h"
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "data/hdf5_file.h"

namespace ssm_data_test {

// A fresh folder under /tmp, removed with everything in it when the object goes.
std::string make_temp_dir() {
  std::string tmpl = "/tmp/ssm-data-test-XXXXXX";
  char* p = mkdtemp(tmpl.data());
  if (!p) ssm::throw_internal("mkdtemp failed");
  return tmpl;
}
void remove_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// A classification split: `inputs` (N, H, W) u8 with raw[i, h, w] = (7 i + 3 h + w) % 256, labels i % classes.
void write_image_split(const std::string& path, int64_t n, int64_t h, int64_t w, int64_t classes, double scale,
                       double mean, double stdv, int gzip) {
  std::vector<uint8_t> px(static_cast<size_t>(n * h * w));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) px[size_t((i * h + y) * w + x)] = uint8_t((7 * i + 3 * y + x) % 256);
  std::vector<int64_t> lab(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) lab[size_t(i)] = i % classes;
  ssm::data::H5Writer wr(path);
  wr.set_attr("/", "ssm_format", "ssm-dataset");
  wr.set_attr("/", "version", int64_t(1));
  wr.set_attr("/", "task", "classification");
  wr.set_attr("/", "num_classes", classes);
  wr.write_dataset("inputs", ssm::Tensor::from_vector(px, {n, h, w}), ssm::data::H5WriteOptions{gzip, 3});
  wr.set_attr("inputs", "layout", "image");
  wr.set_attr("inputs", "scale", scale);
  wr.set_attr("inputs", "mean", mean);
  wr.set_attr("inputs", "std", stdv);
  wr.write_dataset("labels", ssm::Tensor::from_vector(lab, {n}), ssm::data::H5WriteOptions{gzip, 0});
  wr.commit();
}

void expect_bad_input(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
  } catch (const ssm::Error& e) {
    EXPECT_EQ(e.kind(), ssm::ErrorKind::BadInput) << e.what();
    for (const auto& part : parts)
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what() << "\n  lacks: " << part;
    return;
  }
  ADD_FAILURE() << "no ssm::Error thrown";
}

}  // namespace ssm_data_test
