// Checked CUDA / cuBLAS / cuFFT calls. A failure throws ssm::Error (Internal) whose message holds the
// call's text, the library's error string and file:line, e.g.
//   CUDA error in cudaMalloc(&p, bytes): out of memory (cudaErrorMemoryAllocation) [core/cuda/allocator.cu:88]
// SSM_CUDA_LAUNCH_CHECK() goes after every kernel launch (it reads cudaGetLastError()).
#pragma once
#ifdef SSM_WITH_CUDA
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cufft.h>

#include "core/error.h"

namespace ssm::cuda {

[[noreturn]] inline void throw_cuda_error(cudaError_t e, const char* call, const char* file, int line) {
  throw_internal(::ssm::cat("CUDA error in ", call, ": ", cudaGetErrorString(e), " (", cudaGetErrorName(e), ") [", file,
                     ":", line, "]"));
}
[[noreturn]] inline void throw_cublas_error(cublasStatus_t s, const char* call, const char* file, int line) {
  throw_internal(::ssm::cat("cuBLAS error in ", call, ": ", cublasGetStatusName(s), " (", cublasGetStatusString(s), ") [",
                     file, ":", line, "]"));
}
inline const char* cufft_status_name(cufftResult r) {
  switch (r) {
    case CUFFT_SUCCESS: return "CUFFT_SUCCESS";
    case CUFFT_INVALID_PLAN: return "CUFFT_INVALID_PLAN";
    case CUFFT_ALLOC_FAILED: return "CUFFT_ALLOC_FAILED";
    case CUFFT_INVALID_TYPE: return "CUFFT_INVALID_TYPE";
    case CUFFT_INVALID_VALUE: return "CUFFT_INVALID_VALUE";
    case CUFFT_INTERNAL_ERROR: return "CUFFT_INTERNAL_ERROR";
    case CUFFT_EXEC_FAILED: return "CUFFT_EXEC_FAILED";
    case CUFFT_SETUP_FAILED: return "CUFFT_SETUP_FAILED";
    case CUFFT_INVALID_SIZE: return "CUFFT_INVALID_SIZE";
    case CUFFT_INVALID_DEVICE: return "CUFFT_INVALID_DEVICE";
    case CUFFT_NO_WORKSPACE: return "CUFFT_NO_WORKSPACE";
    case CUFFT_NOT_IMPLEMENTED: return "CUFFT_NOT_IMPLEMENTED";
    case CUFFT_NOT_SUPPORTED: return "CUFFT_NOT_SUPPORTED";
    default: return "unknown cuFFT status";
  }
}
[[noreturn]] inline void throw_cufft_error(cufftResult r, const char* call, const char* file, int line) {
  throw_internal(::ssm::cat("cuFFT error in ", call, ": ", cufft_status_name(r), " (", int(r), ") [", file, ":", line, "]"));
}

}  // namespace ssm::cuda

#define SSM_CUDA_CHECK(call)                                                              \
  do {                                                                                    \
    cudaError_t ssm_e_ = (call);                                                          \
    if (ssm_e_ != cudaSuccess) ::ssm::cuda::throw_cuda_error(ssm_e_, #call, __FILE__, __LINE__); \
  } while (0)

#define SSM_CUBLAS_CHECK(call)                                                                       \
  do {                                                                                               \
    cublasStatus_t ssm_s_ = (call);                                                                  \
    if (ssm_s_ != CUBLAS_STATUS_SUCCESS) ::ssm::cuda::throw_cublas_error(ssm_s_, #call, __FILE__, __LINE__); \
  } while (0)

#define SSM_CUFFT_CHECK(call)                                                                  \
  do {                                                                                         \
    cufftResult ssm_r_ = (call);                                                               \
    if (ssm_r_ != CUFFT_SUCCESS) ::ssm::cuda::throw_cufft_error(ssm_r_, #call, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: configuration errors (bad grid, too much shared memory) show up here.
#define SSM_CUDA_LAUNCH_CHECK() SSM_CUDA_CHECK(cudaGetLastError())

#endif  // SSM_WITH_CUDA
