// Device memory. CPU: 64-byte aligned host memory. CUDA: a caching allocator (core/cuda/allocator.cu)
// that keeps freed blocks in size-class free lists per device and stream, so the steady state makes no
// cudaMalloc per op; it reports current and peak bytes.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/device.h"

namespace ssm {

void* device_alloc(Device d, size_t bytes);
void device_free(Device d, void* p, size_t bytes);

struct AllocatorStats {
  size_t allocated_bytes = 0;  // live, handed to tensors
  size_t peak_bytes = 0;       // max of allocated_bytes since the last reset
  size_t reserved_bytes = 0;   // held from the driver (live + cached)
  uint64_t driver_allocs = 0;  // cudaMalloc calls made
};
AllocatorStats allocator_stats(Device d);
void reset_peak_bytes(Device d);
void empty_cache(Device d);  // give cached blocks back to the driver

// Copy bytes between any two devices (host<->device, device<->device); synchronous for the host side.
void copy_bytes(Device dst_dev, void* dst, Device src_dev, const void* src, size_t bytes);

}  // namespace ssm
