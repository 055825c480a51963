// Where a tensor lives: the host CPU or CUDA device n.
#pragma once
#include <cstdint>
#include <string>

namespace ssm {

enum class DeviceKind : uint8_t { CPU, CUDA };

struct Device {
  DeviceKind kind = DeviceKind::CPU;
  int index = 0;

  static Device cpu() { return {DeviceKind::CPU, 0}; }
  static Device cuda(int i = 0) { return {DeviceKind::CUDA, i}; }
  bool is_cpu() const { return kind == DeviceKind::CPU; }
  bool is_cuda() const { return kind == DeviceKind::CUDA; }
  bool operator==(const Device& o) const { return kind == o.kind && (kind == DeviceKind::CPU || index == o.index); }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const;                     // "cpu", "cuda:0"
  static Device parse(const std::string& s);   // "cpu", "cuda", "cuda:1"; BadInput otherwise
};

// True when the binary was built with CUDA and at least one device is visible.
bool cuda_available();
// Makes d the process's current CUDA device (kernels without an explicit device guard run there);
// no-op for the CPU. One process per GPU: the trainer calls it with cuda:<local rank> at start.
void use_device(Device d);
int cuda_device_count();

}  // namespace ssm
