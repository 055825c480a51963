// The HDF5 wrapper: round trips, hyperslab reads, atomic writes, and the errors a user meets.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <string>

#include "data/hdf5_file.h"

#include "tests/data/data_test_util.h"

namespace {

using namespace ssm;
using namespace ssm::data;
using namespace ssm_data_test;
namespace fs = std::filesystem;

class Hdf5Test : public TempDirTest {};

// Runs f, expects a BadInput whose message contains every one of `parts`; returns the message.
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

TEST_F(Hdf5Test, RoundTripDatasetsAndAttributes) {
  std::vector<float> xf(5 * 3);
  for (size_t i = 0; i < xf.size(); ++i) xf[i] = float(i) * 0.5f - 2.0f;
  std::vector<int64_t> xi = {5, -1, 1ll << 40, 7};
  std::vector<uint8_t> xu = {0, 1, 254, 255, 9, 8};
  {
    H5Writer w(p("a.h5"));
    w.write_dataset("f", Tensor::from_vector(xf, {5, 3}), H5WriteOptions{4, 2});
    w.write_dataset("i", Tensor::from_vector(xi, {4}), H5WriteOptions{0, 0});
    w.write_dataset("u", Tensor::from_vector(xu, {2, 3}));
    w.set_attr("/", "name", "héllo");
    w.set_attr("/", "count", int64_t(42));
    w.set_attr("/", "ratio", 0.25);
    w.set_attr("/", "names", std::vector<std::string>{"a", "bb", ""});
    w.set_attr("f", "mean", std::vector<double>{1.5, -2.5});
    w.set_attr("f", "count", 3);
    w.set_attr("f", "count", 4);  // overwriting an attribute replaces it
    EXPECT_TRUE(fs::exists(p("a.h5.tmp")));
    EXPECT_FALSE(fs::exists(p("a.h5")));
    w.commit();
  }
  EXPECT_TRUE(fs::exists(p("a.h5")));
  EXPECT_FALSE(fs::exists(p("a.h5.tmp")));

  H5File f(p("a.h5"));
  EXPECT_EQ(f.attr_string("name"), "héllo");
  EXPECT_EQ(f.attr_int("count"), 42);
  EXPECT_DOUBLE_EQ(f.attr_double("ratio"), 0.25);
  EXPECT_DOUBLE_EQ(f.attr_double("count"), 42.0);
  EXPECT_EQ(f.attr_strings("names"), (std::vector<std::string>{"a", "bb", ""}));
  EXPECT_FALSE(f.has_attr("nope"));
  EXPECT_EQ(f.attr_int_or("nope", -3), -3);
  EXPECT_TRUE(f.has_dataset("f"));
  EXPECT_FALSE(f.has_dataset("g"));

  H5Dataset df = f.dataset("f");
  EXPECT_EQ(df.shape(), (Shape{5, 3}));
  EXPECT_EQ(df.dtype(), DType::f32);
  EXPECT_EQ(df.attr_doubles("mean"), (std::vector<double>{1.5, -2.5}));
  EXPECT_EQ(df.attr_int("count"), 4);
  EXPECT_EQ(df.read_all().to_float_vector(), xf);
  // A hyperslab of rows 1..3, and the same rows converted to f64.
  Tensor r = df.read_rows(1, 3, DType::f32);
  EXPECT_EQ(r.shape(), (Shape{3, 3}));
  EXPECT_EQ(r.to_float_vector(), std::vector<float>(xf.begin() + 3, xf.begin() + 12));
  Tensor r64 = df.read_rows(4, 1, DType::f64);
  EXPECT_EQ(r64.dtype(), DType::f64);
  EXPECT_DOUBLE_EQ(r64.to_double_vector()[2], double(xf[14]));

  EXPECT_EQ(f.dataset("i").dtype(), DType::i64);
  EXPECT_EQ(f.dataset("i").read_all().to_int_vector(), xi);
  H5Dataset du = f.dataset("u");
  EXPECT_EQ(du.dtype(), DType::u8);
  EXPECT_EQ(du.stored_type(), "u8");
  EXPECT_EQ(du.read_rows(1, 1, DType::i64).to_int_vector(), (std::vector<int64_t>{255, 9, 8}));

  expect_bad_input([&] { df.read_rows(4, 2, DType::f32); }, {"a.h5", "dataset 'f'", "out of range"});
  expect_bad_input([&] { f.attr_int("ratio"); }, {"a.h5", "'ratio'", "not an integer"});
  expect_bad_input([&] { f.attr_string("count"); }, {"a.h5", "'count'", "not a string"});
  expect_bad_input([&] { df.attr_double("nope"); }, {"a.h5", "dataset 'f'", "attribute 'nope' missing"});
}

TEST_F(Hdf5Test, WriterWithoutCommitLeavesNothing) {
  {
    H5Writer w(p("b.h5"));
    w.write_dataset("x", Tensor::zeros({10, 10}));
    EXPECT_TRUE(fs::exists(p("b.h5.tmp")));
  }  // destroyed without commit: as if an error happened part way
  EXPECT_FALSE(fs::exists(p("b.h5")));
  EXPECT_FALSE(fs::exists(p("b.h5.tmp")));
  // A stale .tmp from an interrupted run is simply overwritten.
  write_text(p("c.h5.tmp"), "garbage");
  {
    H5Writer w(p("c.h5"));
    w.write_dataset("x", Tensor::ones({3}));
    w.commit();
  }
  EXPECT_EQ(H5File(p("c.h5")).dataset("x").read_all().to_float_vector(), (std::vector<float>{1, 1, 1}));
  expect_bad_input([&] { H5Writer w(p("no/such/folder/d.h5")); }, {"no/such/folder/d.h5.tmp", "cannot create"});
}

TEST_F(Hdf5Test, MissingFile) {
  expect_bad_input([&] { H5File f(p("missing.h5")); }, {p("missing.h5"), "not found"});
}

TEST_F(Hdf5Test, TextFileIsNotHdf5) {
  write_text(p("notes.h5"), "this is a text file, not HDF5\n");
  expect_bad_input([&] { H5File f(p("notes.h5")); }, {p("notes.h5"), "not an HDF5 file"});
  write_text(p("empty.h5"), "");
  expect_bad_input([&] { H5File f(p("empty.h5")); }, {p("empty.h5"), "not an HDF5 file"});
}

TEST_F(Hdf5Test, TruncatedFile) {
  write_image_split(p("full.h5"), 200, 16, 16, 10, 1.0 / 255, 0.0, 1.0, /*gzip=*/0);
  const auto size = fs::file_size(p("full.h5"));
  ASSERT_GT(size, 200u * 256u);
  // Keep the first half: the superblock survives, the data does not.
  fs::copy_file(p("full.h5"), p("trunc.h5"));
  fs::resize_file(p("trunc.h5"), size / 2);
  std::string msg = expect_bad_input(
      [&] {
        H5File f(p("trunc.h5"));
        f.dataset("inputs").read_all();
        f.dataset("labels").read_all();
      },
      {p("trunc.h5")});
  EXPECT_TRUE(msg.find("corrupt") != std::string::npos || msg.find("truncated") != std::string::npos) << msg;
}

TEST_F(Hdf5Test, MissingDataset) {
  {
    H5Writer w(p("m.h5"));
    w.write_dataset("inputs", Tensor::zeros({4, 2}));
    w.commit();
  }
  H5File f(p("m.h5"));
  expect_bad_input([&] { f.dataset("labels"); }, {p("m.h5") + ": dataset 'labels' missing"});
}

TEST_F(Hdf5Test, DirectoryIsNotAFile) {
  expect_bad_input([&] { H5File f(dir); }, {dir, "directory"});
}

}  // namespace
