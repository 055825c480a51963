// Streams and the current device. Every kernel, cuBLAS call and memcpy of the CUDA backend runs on the
// current stream of its device: by default a non-blocking stream created per device on first use (so
// nothing serialises with the legacy default stream). Work on one device is therefore ordered, which is
// what lets the caching allocator hand a freed block to the next op without a sync.
#pragma once
#ifdef SSM_WITH_CUDA
#include <cuda_runtime.h>

namespace ssm::cuda {

cudaStream_t current_stream();            // of the current device (cudaGetDevice)
cudaStream_t current_stream(int device);
// Replace the current stream of `device` (nullptr restores the default one). The caller keeps ownership
// of `s`. Blocks freed while one stream is current are reused only on that stream.
void set_current_stream(int device, cudaStream_t s);

// Sets the current device for a scope and restores the previous one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = -1;
  bool changed_ = false;
};

int current_device();  // cudaGetDevice
void set_current_device(int device);  // cudaSetDevice: the process's default device (one process per GPU)

// Properties of the current device, cached.
int sm_count();

}  // namespace ssm::cuda
#endif
