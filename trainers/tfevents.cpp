#include "trainers/tfevents.h"

#include <array>
#include <cstring>

#include "core/error.h"

namespace ssm::train {

namespace {

std::array<uint32_t, 256> make_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}

// ---- protobuf wire format ----
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(char(uint8_t(v) | 0x80));
    v >>= 7;
  }
  out.push_back(char(uint8_t(v)));
}
void put_tag(std::string& out, uint32_t field, uint32_t wire) { put_varint(out, (uint64_t(field) << 3) | wire); }
template <typename T>
void put_fixed(std::string& out, T v) {  // wire types 1 (8 bytes) and 5 (4 bytes), little-endian host
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}
void put_bytes(std::string& out, uint32_t field, const std::string& s) {
  put_tag(out, field, 2);
  put_varint(out, s.size());
  out += s;
}

}  // namespace

uint32_t crc32c(const void* data, size_t n, uint32_t crc) {
  static const std::array<uint32_t, 256> table = make_table();
  const uint8_t* p = static_cast<const uint8_t*>(data);
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

uint32_t masked_crc32c(const void* data, size_t n) {
  uint32_t crc = crc32c(data, n);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

std::string tfrecord_frame(const std::string& payload) {
  std::string out;
  uint64_t len = payload.size();
  put_fixed(out, len);
  put_fixed(out, masked_crc32c(&len, 8));
  out += payload;
  put_fixed(out, masked_crc32c(payload.data(), payload.size()));
  return out;
}

std::string encode_file_version_event(double wall_time) {
  std::string ev;
  put_tag(ev, 1, 1);
  put_fixed(ev, wall_time);
  put_bytes(ev, 3, "brain.Event:2");
  return ev;
}

std::string encode_scalars_event(double wall_time, int64_t step,
                                 const std::vector<std::pair<std::string, float>>& values) {
  std::string summary;
  for (const auto& [tag, v] : values) {
    std::string value;
    put_bytes(value, 1, tag);
    put_tag(value, 2, 5);
    put_fixed(value, v);
    put_bytes(summary, 1, value);
  }
  std::string ev;
  put_tag(ev, 1, 1);
  put_fixed(ev, wall_time);
  put_tag(ev, 2, 0);
  put_varint(ev, uint64_t(step));  // int64: negative values take 10 bytes, as protobuf does
  put_bytes(ev, 5, summary);
  return ev;
}

EventFileWriter::EventFileWriter(const std::string& path, double wall_time)
    : path_(path), out_(path, std::ios::binary | std::ios::app) {
  SSM_CHECK_INPUT(out_.good(), "cannot write TensorBoard event file '", path, "'");
  write_record(encode_file_version_event(wall_time));
}

void EventFileWriter::add_scalars(int64_t step, const std::vector<std::pair<std::string, float>>& values,
                                  double wall_time) {
  write_record(encode_scalars_event(wall_time, step, values));
}

void EventFileWriter::write_record(const std::string& payload) {
  std::string rec = tfrecord_frame(payload);
  out_.write(rec.data(), std::streamsize(rec.size()));
  out_.flush();
  SSM_CHECK(out_.good(), "writing TensorBoard event file '", path_, "' failed");
}

}  // namespace ssm::train
