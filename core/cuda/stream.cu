// Current stream per device (see stream.h), device guard, device count and synchronisation.
#include <cstring>
#include <mutex>
#include <vector>

#include "core/cuda/check.h"
#include "core/cuda/cuda_ops.h"
#include "core/cuda/stream.h"

namespace ssm::cuda {
namespace {

struct StreamState {
  std::mutex mu;
  std::vector<cudaStream_t> default_streams;  // created on first use, never destroyed (process lifetime)
  std::vector<cudaStream_t> current;          // nullptr = the default one
  std::vector<int> sms;
};
StreamState& state() {
  static StreamState* s = new StreamState();  // leaked on purpose: no CUDA calls during static destruction
  return *s;
}
int checked_device_count() {
  int n = device_count();
  SSM_CHECK(n > 0, "CUDA: no CUDA device is visible (cudaGetDeviceCount returned 0 or failed)");
  return n;
}

}  // namespace

int device_count() {
  static int count = [] {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();  // no driver / no device: report 0, never throw
      return 0;
    }
    return n;
  }();
  return count;
}

cudaStream_t current_stream(int device) {
  StreamState& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.default_streams.empty()) {
    int n = checked_device_count();
    s.default_streams.assign(size_t(n), nullptr);
    s.current.assign(size_t(n), nullptr);
    s.sms.assign(size_t(n), 0);
  }
  SSM_CHECK(device >= 0 && size_t(device) < s.default_streams.size(), "CUDA: device index ", device,
            " out of range (", s.default_streams.size(), " devices)");
  if (s.current[size_t(device)]) return s.current[size_t(device)];
  cudaStream_t& st = s.default_streams[size_t(device)];
  if (!st) {
    DeviceGuard g(device);
    SSM_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  }
  return st;
}

int current_device() {
  int dev = 0;
  SSM_CUDA_CHECK(cudaGetDevice(&dev));
  return dev;
}

cudaStream_t current_stream() {
  int dev = 0;
  SSM_CUDA_CHECK(cudaGetDevice(&dev));
  return current_stream(dev);
}

void set_current_stream(int device, cudaStream_t st) {
  (void)current_stream(device);  // initialises the tables
  StreamState& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.current[size_t(device)] = st;
}

void set_current_device(int device) { SSM_CUDA_CHECK(cudaSetDevice(device)); }

DeviceGuard::DeviceGuard(int device) {
  SSM_CUDA_CHECK(cudaGetDevice(&prev_));
  if (prev_ != device) {
    SSM_CUDA_CHECK(cudaSetDevice(device));
    changed_ = true;
  }
}
DeviceGuard::~DeviceGuard() {
  if (changed_) (void)cudaSetDevice(prev_);
}

int sm_count() {
  int dev = 0;
  SSM_CUDA_CHECK(cudaGetDevice(&dev));
  (void)current_stream(dev);
  StreamState& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  int& n = s.sms[size_t(dev)];
  if (n == 0) SSM_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
  return n;
}

void synchronize() { SSM_CUDA_CHECK(cudaStreamSynchronize(current_stream())); }

// Host side stays synchronous: a copy from or to host memory returns once the bytes have landed.
void memcpy_bytes(Device dst_dev, void* dst, Device src_dev, const void* src, size_t bytes) {
  if (bytes == 0) return;
  if (dst_dev.is_cpu() && src_dev.is_cpu()) {
    std::memcpy(dst, src, bytes);
  } else if (dst_dev.is_cuda() && src_dev.is_cpu()) {
    DeviceGuard g(dst_dev.index);
    cudaStream_t st = current_stream(dst_dev.index);
    SSM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, st));
    SSM_CUDA_CHECK(cudaStreamSynchronize(st));
  } else if (dst_dev.is_cpu() && src_dev.is_cuda()) {
    DeviceGuard g(src_dev.index);
    cudaStream_t st = current_stream(src_dev.index);
    SSM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, st));
    SSM_CUDA_CHECK(cudaStreamSynchronize(st));
  } else if (dst_dev.index == src_dev.index) {
    DeviceGuard g(dst_dev.index);
    SSM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, current_stream(dst_dev.index)));
  } else {
    // Across devices: wait for the producer, copy on the destination's stream, wait for the copy.
    {
      DeviceGuard g(src_dev.index);
      SSM_CUDA_CHECK(cudaStreamSynchronize(current_stream(src_dev.index)));
    }
    DeviceGuard g(dst_dev.index);
    cudaStream_t st = current_stream(dst_dev.index);
    SSM_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_dev.index, src, src_dev.index, bytes, st));
    SSM_CUDA_CHECK(cudaStreamSynchronize(st));
  }
}

}  // namespace ssm::cuda
