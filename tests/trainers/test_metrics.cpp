#include "tests/trainers/trainers_test_util.h"
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "trainers/metrics.h"
#include "trainers/tfevents.h"

using namespace ssm;
using namespace ssm::train;
namespace fs = std::filesystem;

namespace {

using namespace ssm_trainers_test;

std::string read_all(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

template <typename T>
T load(const std::string& s, size_t at) {
  T v;
  std::memcpy(&v, s.data() + at, sizeof(T));
  return v;
}

// Splits a TFRecord stream, checking both CRCs of every record.
std::vector<std::string> read_records(const std::string& bytes) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < bytes.size()) {
    EXPECT_GE(bytes.size() - at, 16u);
    uint64_t len = load<uint64_t>(bytes, at);
    EXPECT_EQ(load<uint32_t>(bytes, at + 8), masked_crc32c(bytes.data() + at, 8)) << "length crc, record " << out.size();
    std::string data = bytes.substr(at + 12, len);
    EXPECT_EQ(load<uint32_t>(bytes, at + 12 + len), masked_crc32c(data.data(), data.size()))
        << "data crc, record " << out.size();
    out.push_back(data);
    at += 12 + len + 4;
  }
  EXPECT_EQ(at, bytes.size());
  return out;
}

// A minimal protobuf reader: (field, wire type, value) triples; varints and fixed in `num`, bytes in `str`.
struct Field {
  uint32_t field, wire;
  uint64_t num = 0;
  std::string str;
};
uint64_t varint(const std::string& s, size_t& at) {
  uint64_t v = 0;
  for (int shift = 0;; shift += 7) {
    uint8_t b = uint8_t(s.at(at++));
    v |= uint64_t(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
}
std::vector<Field> fields(const std::string& s) {
  std::vector<Field> out;
  size_t at = 0;
  while (at < s.size()) {
    uint64_t key = varint(s, at);
    Field f;
    f.field = uint32_t(key >> 3);
    f.wire = uint32_t(key & 7);
    if (f.wire == 0) {
      f.num = varint(s, at);
    } else if (f.wire == 1) {
      f.num = load<uint64_t>(s, at);
      at += 8;
    } else if (f.wire == 5) {
      f.num = load<uint32_t>(s, at);
      at += 4;
    } else if (f.wire == 2) {
      uint64_t n = varint(s, at);
      f.str = s.substr(at, n);
      at += n;
    } else {
      ADD_FAILURE() << "unexpected wire type " << f.wire;
      break;
    }
    out.push_back(f);
  }
  return out;
}
double as_double(uint64_t bits) {
  double d;
  std::memcpy(&d, &bits, 8);
  return d;
}
float as_float(uint64_t bits) {
  uint32_t b = uint32_t(bits);
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

// Decoded scalar event: wall time, step, tag -> value.
struct Scalars {
  double wall = 0;
  int64_t step = -1;
  std::map<std::string, float> values;
};
Scalars decode_scalars(const std::string& event) {
  Scalars out;
  for (const Field& f : fields(event)) {
    if (f.field == 1 && f.wire == 1) out.wall = as_double(f.num);
    else if (f.field == 2 && f.wire == 0) out.step = int64_t(f.num);
    else if (f.field == 5 && f.wire == 2) {
      for (const Field& v : fields(f.str)) {
        EXPECT_EQ(v.field, 1u);
        std::string tag;
        float val = 0;
        for (const Field& x : fields(v.str)) {
          if (x.field == 1 && x.wire == 2) tag = x.str;
          if (x.field == 2 && x.wire == 5) val = as_float(x.num);
        }
        out.values[tag] = val;
      }
    } else ADD_FAILURE() << "unexpected field " << f.field;
  }
  return out;
}

}  // namespace

TEST(TfEvents, Crc32c) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);  // the standard check value
  EXPECT_EQ(crc32c("", 0), 0u);
  std::string zeros(32, '\0');
  EXPECT_EQ(crc32c(zeros.data(), 32), 0x8A9136AAu);  // RFC 3720 B.4
  // Continuing a CRC over a split buffer gives the same value.
  EXPECT_EQ(crc32c("6789", 4, crc32c("12345", 5)), 0xE3069283u);
  uint32_t c = 0xE3069283u;
  EXPECT_EQ(masked_crc32c("123456789", 9), ((c >> 15) | (c << 17)) + 0xa282ead8u);
}

TEST(TfEvents, EventEncoding) {
  std::string ev = encode_file_version_event(1.5);
  auto f = fields(ev);
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0].field, 1u);
  EXPECT_EQ(as_double(f[0].num), 1.5);
  EXPECT_EQ(f[1].field, 3u);
  EXPECT_EQ(f[1].str, "brain.Event:2");

  Scalars s = decode_scalars(encode_scalars_event(2.25, 300, {{"train/loss", 0.5f}, {"lr", 1e-3f}}));
  EXPECT_EQ(s.wall, 2.25);
  EXPECT_EQ(s.step, 300);
  EXPECT_EQ(s.values.at("train/loss"), 0.5f);
  EXPECT_EQ(s.values.at("lr"), 1e-3f);
  // Exact bytes of a tiny event: wall_time 0, step 1, value {tag "a", simple_value 1.0}.
  std::string want("\x09\0\0\0\0\0\0\0\0\x10\x01\x2a\x0a\x0a\x08\x0a\x01"
                   "a\x15\0\0\x80\x3f",
                   23);
  EXPECT_EQ(encode_scalars_event(0.0, 1, {{"a", 1.0f}}), want);
}

TEST(MetricsLogger, WritesJsonlAndEvents) {
  TmpDir d("log");
  double now = 1700000000.0;
  std::string events;
  {
    MetricsLogger log(d.path.string(), true, [&] { return now; });
    events = log.events_path();
    EXPECT_EQ(fs::path(events).filename().string().rfind("events.out.tfevents.1700000000.", 0), 0u) << events;
    now += 1;
    log.log(10, {{"loss", 0.75}, {"lr", 0.001}});
    now += 1;
    log.log(20, {{"loss", 0.5}, {"acc", 0.9}});
    // jsonl is flushed per line: readable while the logger lives.
    std::string jl = read_all(log.jsonl_path());
    std::istringstream in(jl);
    std::string l1, l2;
    std::getline(in, l1);
    std::getline(in, l2);
    auto j1 = nlohmann::json::parse(l1), j2 = nlohmann::json::parse(l2);
    EXPECT_EQ(l1.rfind("{\"step\":10,", 0), 0u) << l1;
    EXPECT_EQ(j1["step"], 10);
    EXPECT_EQ(j1["time"], 1700000001.0);
    EXPECT_EQ(j1["loss"], 0.75);
    EXPECT_EQ(j1["lr"], 0.001);
    EXPECT_EQ(j2["acc"], 0.9);
  }
  auto recs = read_records(read_all(events));
  ASSERT_EQ(recs.size(), 3u);
  auto f = fields(recs[0]);
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(as_double(f[0].num), 1700000000.0);
  EXPECT_EQ(f[1].str, "brain.Event:2");
  Scalars s1 = decode_scalars(recs[1]), s2 = decode_scalars(recs[2]);
  EXPECT_EQ(s1.step, 10);
  EXPECT_EQ(s1.wall, 1700000001.0);
  EXPECT_EQ(s1.values.at("loss"), 0.75f);
  EXPECT_EQ(s1.values.at("lr"), 0.001f);
  EXPECT_EQ(s2.step, 20);
  EXPECT_EQ(s2.values.at("acc"), 0.9f);

  // A second logger in the same second gets its own events file; metrics.jsonl is appended to.
  {
    MetricsLogger log(d.path.string(), true, [&] { return 1700000000.0; });
    EXPECT_NE(log.events_path(), events);
    log.log(30, {{"loss", std::nan("")}});
  }
  std::string jl = read_all((d.path / "metrics.jsonl").string());
  EXPECT_NE(jl.find("\"loss\":\"nan\""), std::string::npos) << jl;
  EXPECT_EQ(std::count(jl.begin(), jl.end(), '\n'), 3);
}

// TensorBoard's own reader, when python3 has it.
TEST(MetricsLogger, TensorBoardReadsIt) {
  if (std::system("python3 -c 'import tensorboard' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "python3 with tensorboard is not available";
  TmpDir d("tb");
  {
    MetricsLogger log(d.path.string());
    log.log(1, {{"train/loss", 2.5}});
    log.log(2, {{"train/loss", 1.25}, {"lr", 0.5}});
  }
  std::string script = (d.path / "read.py").string();
  std::ofstream(script) << "import sys\n"
                           "from tensorboard.backend.event_processing import event_accumulator as ea\n"
                           "acc = ea.EventAccumulator(sys.argv[1]); acc.Reload()\n"
                           "for tag in sorted(acc.Tags()['scalars']):\n"
                           "    for e in acc.Scalars(tag): print(tag, e.step, e.value)\n";
  std::string out_path = (d.path / "out.txt").string();
  int rc = std::system(cat("python3 ", script, " ", d.path.string(), " > ", out_path, " 2>/dev/null").c_str());
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(read_all(out_path), "lr 2 0.5\ntrain/loss 1 2.5\ntrain/loss 2 1.25\n");
}
