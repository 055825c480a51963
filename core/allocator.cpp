// Host memory (64-byte aligned, with live/peak counters) and the dispatch to the CUDA caching allocator.
#include "core/allocator.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

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

[[noreturn]] void no_cuda(Device d) {
  throw_input(cat("this build has no CUDA; rebuild with nvcc available (device ", d.str(), " requested)"));
}

}  // namespace

void* device_alloc(Device d, size_t bytes) {
  if (d.is_cpu()) {
    const size_t n = round_up64(bytes == 0 ? 1 : bytes);
    void* p = std::aligned_alloc(64, n);
    if (!p) throw_internal(cat("out of host memory allocating ", bytes, " bytes"));
    update_peak(g_host_live += n);
    ++g_host_allocs;
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
    std::free(p);
    g_host_live -= round_up64(bytes == 0 ? 1 : bytes);
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
    s.reserved_bytes = s.allocated_bytes;
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
  if (d.is_cpu()) return;  // host memory is not cached
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
