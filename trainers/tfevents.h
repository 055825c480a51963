// TensorBoard event files, written by hand (no protobuf, no TensorFlow).
//
// A file is a sequence of TFRecords:
//   uint64 length | uint32 masked_crc32c(length bytes) | data[length] | uint32 masked_crc32c(data)
//   masked_crc(x) = ((crc >> 15) | (crc << 17)) + 0xa282ead8      (all little-endian)
// Each record's data is a protobuf `Event`:
//   1: wall_time (double, wire type 1)   2: step (int64, varint)   3: file_version (string, "brain.Event:2")
//   5: summary (Summary message)  Summary { 1: repeated Value }  Value { 1: tag (string), 2: simple_value (float) }
// The first record carries wall_time + file_version; each later one wall_time, step and a summary.
#pragma once
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace ssm::train {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table driven. crc32c("123456789") == 0xE3069283.
// `crc` continues an earlier value (pass the previous result).
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);
uint32_t masked_crc32c(const void* data, size_t n);

// length, crc(length), payload, crc(payload).
std::string tfrecord_frame(const std::string& payload);

std::string encode_file_version_event(double wall_time);
std::string encode_scalars_event(double wall_time, int64_t step,
                                 const std::vector<std::pair<std::string, float>>& values);

class EventFileWriter {
 public:
  // Creates `path` (BadInput if it cannot) and writes the file_version record.
  EventFileWriter(const std::string& path, double wall_time);
  void add_scalars(int64_t step, const std::vector<std::pair<std::string, float>>& values, double wall_time);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ofstream out_;
  void write_record(const std::string& payload);
};

}  // namespace ssm::train
