// ClassificationDataset on small synthetic files: the documented transform (scale, normalise, pool), the
// in-memory and hyperslab paths agree, the other layouts, and validation errors naming the file.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>

#include "data/dataset.h"
#include "data/hdf5_file.h"

#include "tests/data/data_test_util.h"

namespace {

using namespace ssm;
using namespace ssm::data;
using namespace ssm_data_test;

class DatasetTest : public TempDirTest {};


double raw_px(int64_t i, int64_t y, int64_t x) { return double((7 * i + 3 * y + x) % 256); }

// A minimal valid file whose parts the caller can spoil.
struct Spec {
  std::string format = "ssm-dataset";
  int64_t version = 1;
  std::string task = "classification";
  int64_t num_classes = 3;
  Shape input_shape = {6, 4};
  std::string layout = "sequence";
  std::vector<int64_t> labels = {0, 1, 2, 0, 1, 2};
  bool write_labels = true;
  std::vector<double> mean, stdv;
};
void write_spec(const std::string& path, const Spec& s) {
  H5Writer w(path);
  w.set_attr("/", "ssm_format", s.format);
  w.set_attr("/", "version", s.version);
  w.set_attr("/", "task", s.task);
  w.set_attr("/", "num_classes", s.num_classes);
  std::vector<float> x(static_cast<size_t>(shape_numel(s.input_shape)));
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(i);
  w.write_dataset("inputs", Tensor::from_vector(x, s.input_shape));
  w.set_attr("inputs", "layout", s.layout);
  if (!s.mean.empty()) w.set_attr("inputs", "mean", s.mean);
  if (!s.stdv.empty()) w.set_attr("inputs", "std", s.stdv);
  if (s.write_labels) w.write_dataset("labels", Tensor::from_vector(s.labels, {int64_t(s.labels.size())}));
  w.commit();
}

TEST_F(DatasetTest, ImageTransformExact) {
  const double scale = 1.0 / 255, mean = 0.25, stdv = 0.5;
  write_image_split(p("img.h5"), 10, 4, 6, 3, scale, mean, stdv, 1);
  ClassificationDataset ds(p("img.h5"));
  EXPECT_EQ(ds.size(), 10);
  EXPECT_EQ(ds.num_classes(), 3);
  EXPECT_EQ(ds.layout(), "image");
  EXPECT_EQ(ds.input_shape(), (Shape{24, 1}));
  EXPECT_TRUE(ds.in_memory());
  Batch b = ds.get({7, 0, 7, 3});
  EXPECT_EQ(b.inputs.shape(), (Shape{4, 24, 1}));
  EXPECT_EQ(b.inputs.dtype(), DType::f32);
  EXPECT_EQ(b.labels.dtype(), DType::i64);
  EXPECT_EQ(b.labels.to_int_vector(), (std::vector<int64_t>{1, 0, 1, 0}));
  EXPECT_EQ(b.indices, (std::vector<int64_t>{7, 0, 7, 3}));
  std::vector<float> v = b.inputs.to_float_vector();
  const int64_t rows[4] = {7, 0, 7, 3};
  for (int k = 0; k < 4; ++k)
    for (int64_t y = 0; y < 4; ++y)
      for (int64_t x = 0; x < 6; ++x)  // row-major raster: position y * W + x
        EXPECT_NEAR(v[size_t(k * 24 + y * 6 + x)], (raw_px(rows[k], y, x) * scale - mean) / stdv, 1e-5);

  // Without normalisation: raw * scale.
  ClassificationDataset plain(p("img.h5"), ClassificationOptions{1, false});
  EXPECT_NEAR(plain.get({2}).inputs.to_float_vector()[5], raw_px(2, 0, 5) / 255.0, 1e-6);
}

TEST_F(DatasetTest, Pool2x2) {
  write_image_split(p("img.h5"), 5, 4, 6, 3, 1.0, 0.0, 1.0, 0);
  ClassificationDataset ds(p("img.h5"), ClassificationOptions{2, true});
  EXPECT_EQ(ds.input_shape(), (Shape{6, 1}));  // (4/2) * (6/2)
  std::vector<float> v = ds.get({3}).inputs.to_float_vector();
  ASSERT_EQ(v.size(), 6u);
  for (int64_t oi = 0; oi < 2; ++oi)
    for (int64_t oj = 0; oj < 3; ++oj) {
      double want = 0;
      for (int di = 0; di < 2; ++di)
        for (int dj = 0; dj < 2; ++dj) want += raw_px(3, 2 * oi + di, 2 * oj + dj) / 4;
      EXPECT_NEAR(v[size_t(oi * 3 + oj)], want, 1e-4);
    }
  expect_bad_input([&] { ClassificationDataset d(p("img.h5"), ClassificationOptions{4, true}); },
                   {p("img.h5"), "pool 4 does not divide", "4x6"});
}

TEST_F(DatasetTest, HyperslabPathMatchesInMemory) {
  write_image_split(p("img.h5"), 50, 5, 5, 7, 1.0 / 255, 0.3, 0.4, 1);
  ClassificationDataset mem(p("img.h5"));
  ClassificationOptions o;
  o.max_memory_bytes = 0;  // force per-batch hyperslab reads
  ClassificationDataset disk(p("img.h5"), o);
  EXPECT_TRUE(mem.in_memory());
  EXPECT_FALSE(disk.in_memory());
  std::vector<int64_t> idx = {49, 3, 4, 5, 3, 17, 0, 48, 6};  // runs, repeats, unsorted
  Batch a = mem.get(idx), b = disk.get(idx);
  EXPECT_EQ(a.inputs.to_float_vector(), b.inputs.to_float_vector());
  EXPECT_EQ(a.labels.to_int_vector(), b.labels.to_int_vector());
  expect_bad_input([&] { disk.get({50}); }, {p("img.h5"), "row index 50 out of range [0, 50)"});
  expect_bad_input([&] { mem.get({-1}); }, {p("img.h5"), "row index -1"});
}

TEST_F(DatasetTest, SequencePerChannelNormalisation) {
  Spec s;
  s.input_shape = {6, 2, 3};  // (N, L, C)
  s.mean = {0.0, 1.0, 2.0};
  s.stdv = {1.0, 2.0, 4.0};
  write_spec(p("seq.h5"), s);
  ClassificationDataset ds(p("seq.h5"));
  EXPECT_EQ(ds.layout(), "sequence");
  EXPECT_EQ(ds.input_shape(), (Shape{2, 3}));
  std::vector<float> v = ds.get({1}).inputs.to_float_vector();  // raw = 6 .. 11
  for (int l = 0; l < 2; ++l)
    for (int c = 0; c < 3; ++c) EXPECT_FLOAT_EQ(v[size_t(l * 3 + c)], float((6 + l * 3 + c - s.mean[c]) / s.stdv[c]));
  Spec bad = s;
  bad.mean = {0.0, 1.0};
  write_spec(p("bad.h5"), bad);
  expect_bad_input([&] { ClassificationDataset d(p("bad.h5")); }, {p("bad.h5"), "'mean' has 2 values, expected 1 or 3"});
  bad = s;
  bad.stdv = {0.0};
  write_spec(p("bad2.h5"), bad);
  expect_bad_input([&] { ClassificationDataset d(p("bad2.h5")); }, {p("bad2.h5"), "std[0]"});
}

TEST_F(DatasetTest, TokensLayout) {
  H5Writer w(p("tok.h5"));
  w.set_attr("/", "ssm_format", "ssm-dataset");
  w.set_attr("/", "version", int64_t(1));
  w.set_attr("/", "task", "classification");
  w.set_attr("/", "num_classes", int64_t(2));
  w.write_dataset("inputs", Tensor::from_vector(std::vector<int32_t>{1, 2, 3, 40000, 5, 6}, {2, 3}));
  w.set_attr("inputs", "layout", "tokens");
  w.write_dataset("labels", Tensor::from_vector(std::vector<int32_t>{1, 0}, {2}));
  w.commit();
  ClassificationDataset ds(p("tok.h5"));
  EXPECT_EQ(ds.input_shape(), (Shape{3}));
  Batch b = ds.get({1, 0});
  EXPECT_EQ(b.inputs.dtype(), DType::i64);
  EXPECT_EQ(b.inputs.to_int_vector(), (std::vector<int64_t>{40000, 5, 6, 1, 2, 3}));
  EXPECT_EQ(b.labels.to_int_vector(), (std::vector<int64_t>{0, 1}));
}

TEST_F(DatasetTest, ValidationNamesTheFile) {
  Spec s;
  s.labels = {0, 1, 2, 3, 1, 2};  // 3 is out of range for 3 classes
  write_spec(p("labels.h5"), s);
  expect_bad_input([&] { ClassificationDataset d(p("labels.h5")); },
                   {p("labels.h5"), "dataset 'labels'", "label 3 at row 3 is out of range [0, 3)"});
  s = Spec{};
  s.labels = {0, -1, 2, 0, 1, 2};
  write_spec(p("neg.h5"), s);
  expect_bad_input([&] { ClassificationDataset d(p("neg.h5")); }, {p("neg.h5"), "label -1 at row 1"});

  s = Spec{};
  s.write_labels = false;
  write_spec(p("nolabels.h5"), s);
  expect_bad_input([&] { ClassificationDataset d(p("nolabels.h5")); }, {p("nolabels.h5") + ": dataset 'labels' missing"});

  s = Spec{};
  s.format = "something-else";
  write_spec(p("fmt.h5"), s);
  expect_bad_input([&] { ClassificationDataset d(p("fmt.h5")); }, {p("fmt.h5"), "ssm_format", "something-else"});

  s = Spec{};
  s.version = 2;
  write_spec(p("ver.h5"), s);
  expect_bad_input([&] { ClassificationDataset d(p("ver.h5")); }, {p("ver.h5"), "version 2"});

  s = Spec{};
  s.task = "lm";
  write_spec(p("task.h5"), s);
  expect_bad_input([&] { ClassificationDataset d(p("task.h5")); }, {p("task.h5"), "task is 'lm'"});

  s = Spec{};
  s.labels = {0, 1, 2};  // 3 labels, 6 inputs
  write_spec(p("count.h5"), s);
  expect_bad_input([&] { ClassificationDataset d(p("count.h5")); }, {p("count.h5"), "[6, 4]", "3 labels"});

  s = Spec{};
  s.layout = "image";  // 2-D inputs cannot be an image
  write_spec(p("layout.h5"), s);
  expect_bad_input([&] { ClassificationDataset d(p("layout.h5")); }, {p("layout.h5"), "layout 'image' needs shape"});

  s = Spec{};
  s.layout = "voxels";
  write_spec(p("voxels.h5"), s);
  expect_bad_input([&] { ClassificationDataset d(p("voxels.h5")); }, {p("voxels.h5"), "layout 'voxels'"});

  // No ssm attributes at all: a plain HDF5 file from somewhere else.
  {
    H5Writer w(p("plain.h5"));
    w.write_dataset("x", Tensor::zeros({2}));
    w.commit();
  }
  expect_bad_input([&] { ClassificationDataset d(p("plain.h5")); }, {p("plain.h5"), "not an ssm dataset"});
}

}  // namespace
