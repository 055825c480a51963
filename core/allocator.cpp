// Host memory (64-byte aligned, with live/peak counters) and the dispatch to the CUDA caching allocator.
//
// Host blocks are cached: a freed block goes onto a free list keyed by its exact (64-byte rounded) size and
// the next request of that size takes it back, so a training step -- which asks for the same sizes every
// step -- makes no malloc/free (and touches no fresh pages) once warm. The cache holds at most
// kMaxCachedBytes; a free that would exceed it returns the block to malloc. empty_cache(cpu) releases all.
#include "core/allocator.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/error.h"
#ifdef SSM_WITH_CUDA
#include "core/cuda/cuda_ops.h"
#endif

namespace ssm {
namespace {

std::atomic<size_t> g_host_live{0};
std::atomic<size_t> g_host_peak{0};
std::atomic<uint64_t> g_host_allocs{0};

size_t round_up64(size_t b) { return (b + 63) / 64 * 64; }

void update_peak(size_t live) {
  size_t p = g_host_peak.load();
  while (live > p && !g_host_peak.compare_exchange_weak(p, live)) {
  }
}

constexpr size_t kMaxCachedBytes = size_t(1) << 30;

struct HostCache {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> free;  // rounded size -> cached blocks
  size_t cached = 0;                                     // bytes on the free lists

  void* take(size_t n) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = free.find(n);
    if (it == free.end() || it->second.empty()) return nullptr;
    void* p = it->second.back();
    it->second.pop_back();
    cached -= n;
    return p;
  }
  bool put(void* p, size_t n) {
    std::lock_guard<std::mutex> lock(mu);
    if (cached + n > kMaxCachedBytes) return false;
    free[n].push_back(p);
    cached += n;
    return true;
  }
  void release_all() {
    std::lock_guard<std::mutex> lock(mu);
    for (auto& [n, v] : free)
      for (void* p : v) std::free(p);
    free.clear();
    cached = 0;
  }
  size_t cached_bytes() {
    std::lock_guard<std::mutex> lock(mu);
    return cached;
  }
};

// Never destroyed: tensors held by other static objects may be freed during exit.
HostCache& host_cache() {
  static HostCache* c = new HostCache;
  return *c;
}

#ifndef SSM_WITH_CUDA
[[noreturn]] void no_cuda(Device d) {
  throw_input(cat("this build has no CUDA; rebuild with nvcc available (device ", d.str(), " requested)"));
}
#endif

}  // namespace

void* device_alloc(Device d, size_t bytes) {
  if (d.is_cpu()) {
    const size_t n = round_up64(bytes == 0 ? 1 : bytes);
    void* p = host_cache().take(n);
    if (!p) {
      p = std::aligned_alloc(64, n);
      if (!p) {  // give the cached blocks back and try once more
        host_cache().release_all();
        p = std::aligned_alloc(64, n);
      }
      if (!p) throw_internal(cat("out of host memory allocating ", bytes, " bytes"));
      ++g_host_allocs;
    }
    update_peak(g_host_live += n);
    return p;
  }
#ifdef SSM_WITH_CUDA
  return cuda::caching_alloc(d.index, bytes);
#else
  no_cuda(d);
#endif
}

void device_free(Device d, void* p, size_t bytes) {
  if (!p) return;
  if (d.is_cpu()) {
    const size_t n = round_up64(bytes == 0 ? 1 : bytes);
    if (!host_cache().put(p, n)) std::free(p);
    g_host_live -= n;
    return;
  }
#ifdef SSM_WITH_CUDA
  cuda::caching_free(d.index, p, bytes);
#endif
}

AllocatorStats allocator_stats(Device d) {
  if (d.is_cpu()) {
    AllocatorStats s;
    s.allocated_bytes = g_host_live.load();
    s.peak_bytes = g_host_peak.load();
    s.reserved_bytes = s.allocated_bytes + host_cache().cached_bytes();
    s.driver_allocs = g_host_allocs.load();
    return s;
  }
#ifdef SSM_WITH_CUDA
  return cuda::caching_stats(d.index);
#else
  no_cuda(d);
#endif
}

void reset_peak_bytes(Device d) {
  if (d.is_cpu()) {
    g_host_peak = g_host_live.load();
    return;
  }
#ifdef SSM_WITH_CUDA
  cuda::caching_reset_peak(d.index);
#else
  no_cuda(d);
#endif
}

void empty_cache(Device d) {
  if (d.is_cpu()) {
    host_cache().release_all();
    return;
  }
#ifdef SSM_WITH_CUDA
  cuda::caching_empty(d.index);
#else
  no_cuda(d);
#endif
}

void copy_bytes(Device dst_dev, void* dst, Device src_dev, const void* src, size_t bytes) {
  if (bytes == 0) return;
  if (dst_dev.is_cpu() && src_dev.is_cpu()) {
    std::memcpy(dst, src, bytes);
    return;
  }
#ifdef SSM_WITH_CUDA
  cuda::memcpy_bytes(dst_dev, dst, src_dev, src, bytes);
#else
  no_cuda(dst_dev.is_cuda() ? dst_dev : src_dev);
#endif
}

}  // namespace ssm
