// Caching device allocator.
//
// Sizes are rounded up: to 512 B for small requests (<= 1 MiB) and to 2 MiB for large ones. Freed blocks
// go to a free list of their device and of the stream that was current when they were allocated
// (std::multimap size -> pointer); an allocation takes the smallest cached block that fits and is at
// most 2x the rounded size, and calls cudaMalloc only on a miss. Blocks are never split or merged.
// Because all work of a device runs in order on its current stream, a block freed by the host while
// kernels that use it are still queued can be handed to the next op on that stream without a sync.
// On cudaMalloc failure the device's cache is returned to the driver and the call retried once.
//
// Stats count rounded block sizes: allocated = live blocks, reserved = live + cached, peak = max of
// allocated since the last reset_peak.
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/cuda/check.h"
#include "core/cuda/cuda_ops.h"
#include "core/cuda/stream.h"

namespace ssm::cuda {
namespace {

constexpr size_t kSmallLimit = size_t(1) << 20;  // <= 1 MiB: small pool
constexpr size_t kSmallRound = 512;
constexpr size_t kLargeRound = size_t(2) << 20;  // 2 MiB

size_t round_size(size_t bytes) {
  if (bytes <= kSmallLimit) return (bytes + kSmallRound - 1) / kSmallRound * kSmallRound;
  return (bytes + kLargeRound - 1) / kLargeRound * kLargeRound;
}

struct Block {
  size_t size;
  cudaStream_t stream;
};

struct DeviceCache {
  std::map<cudaStream_t, std::multimap<size_t, void*>> free_lists;  // per stream: size -> block
  std::unordered_map<void*, Block> live;
  AllocatorStats stats;
};

struct Allocator {
  std::mutex mu;
  std::vector<DeviceCache> devices;

  DeviceCache& dev(int d) {
    if (devices.empty()) devices.resize(size_t(device_count()));
    SSM_CHECK(d >= 0 && size_t(d) < devices.size(), "CUDA allocator: device index ", d, " out of range (",
              devices.size(), " devices)");
    return devices[size_t(d)];
  }
  // Gives every cached block of device d back to the driver (caller holds mu and the device guard).
  void release_cached(DeviceCache& c) {
    for (auto& [stream, list] : c.free_lists) {
      for (auto& [size, p] : list) {
        SSM_CUDA_CHECK(cudaFree(p));
        c.stats.reserved_bytes -= size;
      }
      list.clear();
    }
    c.free_lists.clear();
  }
};
Allocator& allocator() {
  static Allocator* a = new Allocator();  // leaked on purpose: tensors may be freed during static destruction
  return *a;
}

}  // namespace

void* caching_alloc(int device, size_t bytes) {
  if (bytes == 0) return nullptr;
  const size_t size = round_size(bytes);
  cudaStream_t stream = current_stream(device);
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mu);
  DeviceCache& c = a.dev(device);
  void* p = nullptr;

  auto it_list = c.free_lists.find(stream);
  if (it_list != c.free_lists.end()) {
    auto& list = it_list->second;
    auto it = list.lower_bound(size);  // smallest cached block >= size
    if (it != list.end() && it->first <= 2 * size) {
      p = it->second;
      const size_t got = it->first;
      list.erase(it);
      c.live[p] = Block{got, stream};
      c.stats.allocated_bytes += got;
      c.stats.peak_bytes = std::max(c.stats.peak_bytes, c.stats.allocated_bytes);
      return p;
    }
  }

  DeviceGuard guard(device);
  cudaError_t e = cudaMalloc(&p, size);
  if (e == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();  // clear the sticky-free error state of the failed call
    a.release_cached(c);
    e = cudaMalloc(&p, size);
  }
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    (void)cudaMemGetInfo(&free_b, &total_b);
    (void)cudaGetLastError();
    throw_internal(::ssm::cat("CUDA out of memory on cuda:", device, ": tried to allocate ", bytes, " bytes (", size,
                       " rounded); ", c.stats.allocated_bytes, " bytes allocated by tensors, ",
                       c.stats.reserved_bytes, " reserved by the caching allocator, ", free_b, " free of ",
                       total_b, " on the device (", cudaGetErrorString(e), ")"));
  }
  c.stats.driver_allocs += 1;
  c.stats.reserved_bytes += size;
  c.live[p] = Block{size, stream};
  c.stats.allocated_bytes += size;
  c.stats.peak_bytes = std::max(c.stats.peak_bytes, c.stats.allocated_bytes);
  return p;
}

void caching_free(int device, void* p, size_t /*bytes*/) {
  if (!p) return;
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mu);
  DeviceCache& c = a.dev(device);
  auto it = c.live.find(p);
  SSM_CHECK(it != c.live.end(), "CUDA allocator: free of a pointer it did not allocate on cuda:", device);
  const Block b = it->second;
  c.live.erase(it);
  c.stats.allocated_bytes -= b.size;
  c.free_lists[b.stream].emplace(b.size, p);
}

AllocatorStats caching_stats(int device) {
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mu);
  return a.dev(device).stats;
}

void caching_reset_peak(int device) {
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mu);
  DeviceCache& c = a.dev(device);
  c.stats.peak_bytes = c.stats.allocated_bytes;
}

void caching_empty(int device) {
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mu);
  DeviceCache& c = a.dev(device);
  DeviceGuard guard(device);
  a.release_cached(c);  // cudaFree waits for the device, so queued work using these blocks has finished
}

}  // namespace ssm::cuda
