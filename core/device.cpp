// Device names and CUDA discovery.
#include "core/device.h"

#include <cstdlib>

#include "core/error.h"
#ifdef SSM_WITH_CUDA
#include "core/cuda/cuda_ops.h"
#include "core/cuda/stream.h"
#endif

namespace ssm {

std::string Device::str() const { return is_cpu() ? "cpu" : cat("cuda:", index); }

Device Device::parse(const std::string& s) {
  if (s == "cpu") return cpu();
  if (s == "cuda" || s == "gpu") return cuda(0);
  if (s.rfind("cuda:", 0) == 0 && s.size() > 5) {
    const std::string num = s.substr(5);
    bool digits = num.size() <= 6;
    for (char c : num) digits = digits && c >= '0' && c <= '9';
    if (digits) return cuda(std::atoi(num.c_str()));
  }
  throw_input(cat("unknown device '", s, "' (expected cpu, cuda or cuda:N)"));
}

int cuda_device_count() {
#ifdef SSM_WITH_CUDA
  return cuda::device_count();
#else
  return 0;
#endif
}

bool cuda_available() { return cuda_device_count() > 0; }

void use_device(Device d) {
#ifdef SSM_WITH_CUDA
  if (d.is_cuda()) cuda::set_current_device(d.index);
#else
  (void)d;
#endif
}

}  // namespace ssm
