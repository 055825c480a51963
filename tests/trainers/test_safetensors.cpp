#include "tests/trainers/trainers_test_util.h"
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/tensor.h"
#include "trainers/safetensors.h"

using namespace ssm;
using namespace ssm::train;
namespace fs = std::filesystem;

namespace {

using namespace ssm_trainers_test;

using NT = std::vector<std::pair<std::string, Tensor>>;

std::string read_all(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
void write_all(const std::string& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary) << bytes;
}
// A safetensors file from a header text and data bytes (header not padded unless the text is).
std::string make_file(const std::string& header, const std::string& data) {
  uint64_t n = header.size();
  std::string out(reinterpret_cast<const char*>(&n), 8);
  return out + header + data;
}
std::string floats(std::initializer_list<float> v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), std::data(v), s.size());
  return s;
}

}  // namespace

TEST(Safetensors, RoundTripEveryDtype) {
  TmpDir d("rt");
  std::vector<float> fv = {1.5f, -2.25f, 3.0f, 0.0f, -0.5f, 1e-3f};
  std::vector<std::pair<std::string, Tensor>> in = {
      {"f32", Tensor::from_vector(fv, {2, 3})},
      {"f64", Tensor::from_vector(std::vector<double>{1.0 / 3, -2.0, 1e300}, {3})},
      {"bf16", Tensor::from_vector(fv, {3, 2}).to(DType::bf16)},
      {"f16", Tensor::from_vector(fv, {6}).to(DType::f16)},
      {"i32", Tensor::from_vector(std::vector<int32_t>{-7, 0, 2147483647, 5}, {2, 2})},
      {"i64", Tensor::from_vector(std::vector<int64_t>{int64_t(1) << 40, -3}, {2, 1})},
      {"u8", Tensor::from_vector(std::vector<uint8_t>{0, 1, 255}, {3})},
      {"scalar", Tensor::scalar(4.0, DType::i64)},
      {"empty", Tensor::zeros({0, 4})},
      {"layers.0.mixer.weight", Tensor::from_vector(fv, {3, 2}).transpose(0, 1)},  // not contiguous
  };
  std::string path = d.file("m.safetensors");
  save_safetensors(path, in, {{"format", "pt"}, {"note", "hello"}});
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  SafetensorsContents out = load_safetensors(path);
  EXPECT_EQ(out.metadata, (std::map<std::string, std::string>{{"format", "pt"}, {"note", "hello"}}));
  ASSERT_EQ(out.tensors.size(), in.size());
  for (const auto& [name, t] : in) {
    SCOPED_TRACE(name);
    const Tensor& r = out.tensors.at(name);
    EXPECT_EQ(r.dtype(), t.dtype());
    EXPECT_EQ(r.shape(), t.shape());
    EXPECT_TRUE(r.is_contiguous());
    if (is_floating(t.dtype()))
      EXPECT_EQ(r.to_double_vector(), t.to_double_vector());
    else
      EXPECT_EQ(r.to_int_vector(), t.to_int_vector());
  }

  // The layout on disk: header length a multiple of 8, JSON padded with spaces, offsets tiling the data.
  std::string bytes = read_all(path);
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  std::string header = bytes.substr(8, n);
  EXPECT_EQ(header.front(), '{');
  auto j = nlohmann::json::parse(header);
  EXPECT_EQ(j["f32"]["dtype"], "F32");
  EXPECT_EQ(j["bf16"]["dtype"], "BF16");
  EXPECT_EQ(j["u8"]["dtype"], "U8");
  EXPECT_EQ(j["f32"]["shape"], nlohmann::json({2, 3}));
  EXPECT_EQ(j["scalar"]["shape"], nlohmann::json::array());
  EXPECT_EQ(j["__metadata__"]["note"], "hello");
  uint64_t total = 0;
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "__metadata__") total += it.value()["data_offsets"][1].get<uint64_t>() - it.value()["data_offsets"][0].get<uint64_t>();
  EXPECT_EQ(bytes.size(), 8 + n + total);
  // Widest first: the f64 and i64 tensors start at multiples of 8.
  EXPECT_EQ(j["f64"]["data_offsets"][0].get<uint64_t>() % 8, 0u);
  EXPECT_EQ(j["i64"]["data_offsets"][0].get<uint64_t>() % 8, 0u);
  // Data bytes of a tensor are its raw little-endian values.
  uint64_t b = j["f32"]["data_offsets"][0];
  EXPECT_EQ(bytes.substr(8 + n + b, 24), floats({1.5f, -2.25f, 3.0f, 0.0f, -0.5f, 1e-3f}));
}

TEST(Safetensors, ReadsAHandWrittenFile) {
  TmpDir d("hand");
  // As the reference implementation writes it: no metadata, BOOL read as u8.
  std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"m":{"dtype":"BOOL","shape":[3],"data_offsets":[8,11]}})";
  std::string path = d.file("h.safetensors");
  write_all(path, make_file(header, floats({1.0f, -2.0f}) + std::string("\x01\x00\x01", 3)));
  auto c = load_safetensors(path);
  EXPECT_EQ(c.tensors.at("a").to_float_vector(), (std::vector<float>{1.0f, -2.0f}));
  EXPECT_EQ(c.tensors.at("m").dtype(), DType::u8);
  EXPECT_EQ(c.tensors.at("m").to_int_vector(), (std::vector<int64_t>{1, 0, 1}));
  EXPECT_TRUE(c.metadata.empty());
}

TEST(Safetensors, CorruptFiles) {
  TmpDir d("bad");
  std::string p = d.file("x.safetensors");
  auto expect = [&](const std::string& bytes, const std::string& needle) {
    write_all(p, bytes);
    std::string e = bad_input([&] { load_safetensors(p); });
    EXPECT_NE(e.find(p), std::string::npos) << e;
    EXPECT_NE(e.find(needle), std::string::npos) << "want '" << needle << "' in: " << e;
  };
  const std::string good = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  write_all(p, make_file(good, floats({1, 2})));
  EXPECT_NO_THROW(load_safetensors(p));

  expect("abcd", "file too short (4 bytes");
  {
    uint64_t n = 1000;
    expect(std::string(reinterpret_cast<const char*>(&n), 8) + "{}", "header length 1000 goes beyond the end of the file (10 bytes)");
  }
  expect(make_file(R"({"w":{"dtype":"F32",)", ""), "bad JSON header");
  expect(make_file("[1, 2]", ""), "the JSON header must be an object");
  expect(make_file(good, floats({1})), "tensor 'w': data_offsets [0, 8] out of range (the data section has 4 bytes)");
  expect(make_file(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", floats({1, 2})),
         "tensor 'w': F32 [3] needs 12 bytes, but data_offsets [0, 8] hold 8");
  expect(make_file(R"({"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", "ab"),
         "tensor 'w': unsupported dtype 'F8_E4M3'");
  expect(make_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", floats({1, 2})),
         "tensor 'w': data_offsets [8, 0] out of range");
  expect(make_file(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", floats({1, 2})),
         "tensor 'w': shape [-2] must hold non-negative integers");
  expect(make_file(R"({"w":{"dtype":"F32","shape":[2]}})", floats({1, 2})), "tensor 'w': data_offsets must be");
  expect(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                   floats({1, 2, 3})),
         "tensors 'a' [0, 8] and 'b' [4, 12] overlap");
  expect(make_file(R"({"__metadata__":{"k":1}})", ""), "__metadata__ value 'k' is not a string");

  std::string e = bad_input([&] { load_safetensors(d.file("missing.safetensors")); });
  EXPECT_NE(e.find("cannot read safetensors file"), std::string::npos) << e;
}

TEST(Safetensors, WriteErrors) {
  TmpDir d("werr");
  std::string p = d.file("w.safetensors");
  Tensor t = Tensor::zeros({2});
  EXPECT_NE(bad_input([&] { save_safetensors(p, NT{{"a", t}, {"a", t}}); }).find("tensor 'a' appears twice"),
            std::string::npos);
  EXPECT_NE(bad_input([&] { save_safetensors(p, NT{{"__metadata__", t}}); }).find("reserved"), std::string::npos);
  EXPECT_NE(bad_input([&] { save_safetensors(p, NT{{"u", Tensor()}}); }).find("tensor 'u' is undefined"),
            std::string::npos);
  EXPECT_NE(bad_input([&] { save_safetensors(d.file("no/such/dir/x.safetensors"), NT{{"a", t}}); }).find("cannot write"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(p));
  EXPECT_FALSE(fs::exists(p + ".tmp"));
}
