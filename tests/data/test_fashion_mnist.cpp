// Fashion-MNIST conversion: the real files (skipped where the Debian package is missing) and small
// synthetic IDX files for the error paths.
#include <gtest/gtest.h>
#include <zlib.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>

#include "data/dataset.h"
#include "data/fashion_mnist.h"
#include "data/hdf5_file.h"

#include "tests/data/data_test_util.h"

namespace {

using namespace ssm;
using namespace ssm::data;
using namespace ssm_data_test;
namespace fs = std::filesystem;

const std::string kRoot = kFashionMnistDefaultRoot;

std::string expect_bad_input(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput) << e.what();
    for (const auto& part : parts) EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what() << "\n  lacks: " << part;
    return e.what();
  }
  ADD_FAILURE() << "no ssm::Error thrown";
  return "";
}

// ---------------- the real data ----------------

class RealFashionMnist : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(kRoot + "/train-images-idx3-ubyte.gz")) return;
    dir_ = make_temp_dir();
    auto t0 = std::chrono::steady_clock::now();
    summary_ = convert_fashion_mnist(kRoot, dir_ + "/fmnist");
    seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  static void TearDownTestSuite() {
    if (!dir_.empty()) remove_dir(dir_);
  }
  void SetUp() override {
    if (dir_.empty()) GTEST_SKIP() << kRoot << " missing (install the Debian package dataset-fashion-mnist)";
  }
  static std::string dir_;
  static FashionMnistSummary summary_;
  static double seconds_;
};
std::string RealFashionMnist::dir_;
FashionMnistSummary RealFashionMnist::summary_;
double RealFashionMnist::seconds_ = 0;

TEST_F(RealFashionMnist, CountsAndFiles) {
  EXPECT_EQ(summary_.train, 60000);
  EXPECT_EQ(summary_.test, 10000);
  EXPECT_EQ(summary_.height, 28);
  EXPECT_EQ(summary_.width, 28);
  EXPECT_EQ(summary_.train_path, dir_ + "/fmnist/train.h5");
  EXPECT_TRUE(fashion_mnist_ready(dir_ + "/fmnist"));
  EXPECT_FALSE(fs::exists(summary_.train_path + ".tmp"));
  EXPECT_FALSE(fs::exists(summary_.test_path + ".tmp"));
  EXPECT_LT(seconds_, 30.0) << "conversion took " << seconds_ << " s";

  H5File f(summary_.train_path);
  EXPECT_EQ(f.attr_string("ssm_format"), "ssm-dataset");
  EXPECT_EQ(f.attr_int("version"), 1);
  EXPECT_EQ(f.attr_string("task"), "classification");
  EXPECT_EQ(f.attr_int("num_classes"), 10);
  EXPECT_EQ(f.attr_string("split"), "train");
  H5Dataset in = f.dataset("inputs");
  EXPECT_EQ(in.shape(), (Shape{60000, 28, 28}));
  EXPECT_EQ(in.dtype(), DType::u8);
  EXPECT_EQ(in.attr_string("layout"), "image");
  EXPECT_NEAR(in.attr_double("scale"), 1.0 / 255, 1e-15);
  EXPECT_NEAR(in.attr_double("mean"), 0.2860, 5e-4);
  EXPECT_NEAR(in.attr_double("std"), 0.3530, 5e-4);
  EXPECT_EQ(H5File(summary_.test_path).dataset("labels").shape(), (Shape{10000}));
}

TEST_F(RealFashionMnist, LabelHistogram) {
  ClassificationDataset train(summary_.train_path), test(summary_.test_path);
  EXPECT_EQ(train.size(), 60000);
  EXPECT_EQ(test.size(), 10000);
  EXPECT_EQ(train.class_names().size(), 10u);
  EXPECT_EQ(train.class_names()[9], "Ankle boot");
  std::vector<int64_t> htr(10, 0), hte(10, 0);
  for (int64_t l : train.labels()) htr[size_t(l)]++;
  for (int64_t l : test.labels()) hte[size_t(l)]++;
  for (int c = 0; c < 10; ++c) {
    EXPECT_EQ(htr[size_t(c)], 6000) << "class " << c;
    EXPECT_EQ(hte[size_t(c)], 1000) << "class " << c;
  }
  // The first training labels of Fashion-MNIST are 9 (ankle boot), 0, 0, 3, 0.
  EXPECT_EQ(std::vector<int64_t>(train.labels().begin(), train.labels().begin() + 5), (std::vector<int64_t>{9, 0, 0, 3, 0}));
}

TEST_F(RealFashionMnist, PixelStatistics) {
  // Mean pixel of train = 72.94 / 255 = 0.2860; normalised inputs have mean 0 and std 1.
  ClassificationDataset raw(summary_.train_path, ClassificationOptions{1, false});
  ClassificationDataset norm(summary_.train_path);
  EXPECT_EQ(norm.input_shape(), (Shape{784, 1}));
  double s = 0, sn = 0, sn2 = 0;
  int64_t count = 0;
  for (int64_t start = 0; start < 60000; start += 5000) {
    std::vector<int64_t> idx(5000);
    for (int64_t k = 0; k < 5000; ++k) idx[size_t(k)] = start + k;
    for (float v : raw.get(idx).inputs.to_float_vector()) s += v;
    for (float v : norm.get(idx).inputs.to_float_vector()) {
      sn += v;
      sn2 += double(v) * v;
    }
    count += 5000 * 784;
  }
  EXPECT_NEAR(s / count, 72.94 / 255, 2e-4);
  EXPECT_NEAR(sn / count, 0.0, 1e-4);
  EXPECT_NEAR(std::sqrt(sn2 / count - (sn / count) * (sn / count)), 1.0, 1e-4);
}

TEST_F(RealFashionMnist, PooledSequence) {
  ClassificationDataset full(summary_.test_path, ClassificationOptions{1, false});
  ClassificationDataset pooled(summary_.test_path, ClassificationOptions{2, false});
  EXPECT_EQ(pooled.input_shape(), (Shape{196, 1}));
  Batch a = full.get({0, 9999}), b = pooled.get({0, 9999});
  EXPECT_EQ(b.inputs.shape(), (Shape{2, 196, 1}));
  std::vector<float> x = a.inputs.to_float_vector(), y = b.inputs.to_float_vector();
  for (int64_t k = 0; k < 2; ++k)
    for (int64_t i = 0; i < 14; ++i)
      for (int64_t j = 0; j < 14; ++j) {
        auto px = [&](int64_t r, int64_t c) { return x[size_t(k * 784 + r * 28 + c)]; };
        float want = (px(2 * i, 2 * j) + px(2 * i, 2 * j + 1) + px(2 * i + 1, 2 * j) + px(2 * i + 1, 2 * j + 1)) / 4;
        ASSERT_NEAR(y[size_t(k * 196 + i * 14 + j)], want, 1e-6);
      }
}

TEST_F(RealFashionMnist, CorruptLabelFileNamed) {
  // The real images with a label file whose magic is wrong, gzipped as the real ones are.
  const std::string root = dir_ + "/bad-root";
  fs::create_directories(root);
  for (const char* name : {"train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"})
    fs::create_symlink(kRoot + "/" + name, root + "/" + name);
  const std::string bad = root + "/train-labels-idx1-ubyte.gz";
  gzFile g = gzopen(bad.c_str(), "wb");
  const unsigned char header[8] = {0, 0, 0x04, 0xd2, 0, 0, 0, 1};  // magic 1234, one label
  gzwrite(g, header, 8);
  gzwrite(g, "\x03", 1);
  gzclose(g);
  expect_bad_input([&] { convert_fashion_mnist(root, dir_ + "/bad-out"); },
                   {bad + ": bad magic 1234, expected 2049 (not an IDX label file?)"});
  EXPECT_FALSE(fashion_mnist_ready(dir_ + "/bad-out"));
}

// ---------------- synthetic IDX files ----------------

class IdxTest : public ::testing::Test {
 protected:
  void SetUp() override { dir = make_temp_dir(); }
  void TearDown() override { remove_dir(dir); }
  std::string dir;

  static std::string be32(uint32_t v) {
    return std::string{char(v >> 24), char((v >> 16) & 255), char((v >> 8) & 255), char(v & 255)};
  }
  static std::string images(uint32_t n, uint32_t rows, uint32_t cols, uint32_t magic = 2051) {
    std::string s = be32(magic) + be32(n) + be32(rows) + be32(cols);
    for (uint32_t i = 0; i < n * rows * cols; ++i) s.push_back(char((i * 13) % 256));
    return s;
  }
  static std::string labels(uint32_t n, uint32_t magic = 2049, int bad_at = -1) {
    std::string s = be32(magic) + be32(n);
    for (uint32_t i = 0; i < n; ++i) s.push_back(char(int(i) == bad_at ? 10 : i % 10));
    return s;
  }
  void put(const std::string& name, const std::string& bytes, bool gz) {
    if (gz) {
      gzFile g = gzopen((dir + "/" + name + ".gz").c_str(), "wb");
      gzwrite(g, bytes.data(), unsigned(bytes.size()));
      gzclose(g);
    } else {
      std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
    }
  }
  void put_all(bool gz) {
    put("train-images-idx3-ubyte", images(20, 4, 6), gz);
    put("train-labels-idx1-ubyte", labels(20), gz);
    put("t10k-images-idx3-ubyte", images(10, 4, 6), gz);
    put("t10k-labels-idx1-ubyte", labels(10), gz);
  }
};

TEST_F(IdxTest, PlainAndGzippedFilesConvert) {
  for (bool gz : {false, true}) {
    for (const auto& e : fs::directory_iterator(dir)) fs::remove_all(e.path());
    put_all(gz);
    FashionMnistSummary s = convert_fashion_mnist(dir, dir + "/out");
    EXPECT_EQ(s.train, 20);
    EXPECT_EQ(s.test, 10);
    EXPECT_EQ(s.height, 4);
    EXPECT_EQ(s.width, 6);
    ClassificationDataset ds(s.test_path, ClassificationOptions{1, false});
    Batch b = ds.get({1});
    EXPECT_EQ(b.labels.to_int_vector(), (std::vector<int64_t>{1}));
    EXPECT_NEAR(b.inputs.to_float_vector()[2], float(((24 + 2) * 13) % 256) / 255.0f, 1e-6);
  }
}

TEST_F(IdxTest, ErrorsNameTheFile) {
  put_all(true);
  // Missing file.
  fs::remove(dir + "/t10k-labels-idx1-ubyte.gz");
  expect_bad_input([&] { convert_fashion_mnist(dir, dir + "/out"); },
                   {dir + "/t10k-labels-idx1-ubyte.gz: file not found"});
  // Wrong magic: images where labels belong.
  put("t10k-labels-idx1-ubyte", images(10, 4, 6), true);
  expect_bad_input([&] { convert_fashion_mnist(dir, dir + "/out"); },
                   {dir + "/t10k-labels-idx1-ubyte.gz: bad magic 2051, expected 2049"});
  // Count mismatch.
  put("t10k-labels-idx1-ubyte", labels(9), true);
  expect_bad_input([&] { convert_fashion_mnist(dir, dir + "/out"); },
                   {"t10k-images-idx3-ubyte.gz holds 10 images", "t10k-labels-idx1-ubyte.gz holds 9 labels"});
  // Label out of range.
  put("t10k-labels-idx1-ubyte", labels(10, 2049, 4), true);
  expect_bad_input([&] { convert_fashion_mnist(dir, dir + "/out"); },
                   {dir + "/t10k-labels-idx1-ubyte.gz: label 10 at index 4 is out of range [0, 10)"});
  put("t10k-labels-idx1-ubyte", labels(10), true);
  // Truncated pixel data (header promises 20 images).
  std::string im = images(20, 4, 6);
  put("train-images-idx3-ubyte", im.substr(0, im.size() - 7), true);
  expect_bad_input([&] { convert_fashion_mnist(dir, dir + "/out"); },
                   {dir + "/train-images-idx3-ubyte.gz: truncated"});
  // A gzip file cut in the middle of its compressed stream.
  put("train-images-idx3-ubyte", im, true);
  const std::string gzpath = dir + "/train-images-idx3-ubyte.gz";
  fs::resize_file(gzpath, fs::file_size(gzpath) - 12);
  std::string msg = expect_bad_input([&] { convert_fashion_mnist(dir, dir + "/out"); }, {gzpath});
  EXPECT_TRUE(msg.find("truncated") != std::string::npos || msg.find("corrupt") != std::string::npos) << msg;
  // Trailing bytes after the data.
  put("train-images-idx3-ubyte", im + "xyz", true);
  expect_bad_input([&] { convert_fashion_mnist(dir, dir + "/out"); }, {gzpath, "unexpected bytes after 20 images"});
  // Nothing was written by the failed conversions.
  EXPECT_FALSE(fs::exists(dir + "/out/train.h5"));
  EXPECT_FALSE(fs::exists(dir + "/out/train.h5.tmp"));
}

}  // namespace
