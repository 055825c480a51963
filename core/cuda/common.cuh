// Shared pieces of the CUDA kernels: storage types per dtype and their conversion to the compute type
// (f32 for f32/bf16/f16, f64 for f64, i64 for integers), dtype dispatch, N-d index decomposition,
// warp/block reductions and launch helpers. Internal to core/cuda/.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "core/cuda/acc.cuh"
#include "core/cuda/block_reduce.cuh"
#include "core/cuda/check.h"
#include "core/cuda/stream.h"
#include "core/tensor.h"

namespace ssm::cuda {

template <class T> constexpr bool is_int_v = std::is_integral_v<T>;

// ---------------- dtype dispatch ----------------
// SSM_DISPATCH_FLOAT(dtype, "op", ...) runs the body with `using scalar_t = <storage type>` for f32, f64,
// bf16, f16; SSM_DISPATCH_ALL adds i32, i64, u8; SSM_DISPATCH_ARITH adds i32, i64.
#define SSM_CASE_(DT, TYPE, ...) \
  case ::ssm::DType::DT: {       \
    using scalar_t = TYPE;       \
    __VA_ARGS__;                 \
    break;                       \
  }
#define SSM_DISPATCH_FLOAT(dtype, opname, ...)                                                       \
  switch (dtype) {                                                                                   \
    SSM_CASE_(f32, float, __VA_ARGS__)                                                               \
    SSM_CASE_(f64, double, __VA_ARGS__)                                                              \
    SSM_CASE_(bf16, ::ssm::cuda::bf16, __VA_ARGS__)                                                  \
    SSM_CASE_(f16, ::ssm::cuda::f16, __VA_ARGS__)                                                    \
    default: ::ssm::throw_input(::ssm::cat(opname, ": dtype ", ::ssm::dtype_name(dtype),             \
                                           " is not supported on CUDA (f32, f64, bf16, f16 only)")); \
  }
#define SSM_DISPATCH_ARITH(dtype, opname, ...)                                                              \
  switch (dtype) {                                                                                          \
    SSM_CASE_(f32, float, __VA_ARGS__)                                                                      \
    SSM_CASE_(f64, double, __VA_ARGS__)                                                                     \
    SSM_CASE_(bf16, ::ssm::cuda::bf16, __VA_ARGS__)                                                         \
    SSM_CASE_(f16, ::ssm::cuda::f16, __VA_ARGS__)                                                           \
    SSM_CASE_(i32, int32_t, __VA_ARGS__)                                                                    \
    SSM_CASE_(i64, int64_t, __VA_ARGS__)                                                                    \
    default: ::ssm::throw_input(::ssm::cat(opname, ": dtype ", ::ssm::dtype_name(dtype),                    \
                                           " is not supported on CUDA (f32, f64, bf16, f16, i32, i64 only)")); \
  }
#define SSM_DISPATCH_ALL(dtype, opname, ...)                                                     \
  switch (dtype) {                                                                               \
    SSM_CASE_(f32, float, __VA_ARGS__)                                                           \
    SSM_CASE_(f64, double, __VA_ARGS__)                                                          \
    SSM_CASE_(bf16, ::ssm::cuda::bf16, __VA_ARGS__)                                              \
    SSM_CASE_(f16, ::ssm::cuda::f16, __VA_ARGS__)                                                \
    SSM_CASE_(i32, int32_t, __VA_ARGS__)                                                         \
    SSM_CASE_(i64, int64_t, __VA_ARGS__)                                                         \
    SSM_CASE_(u8, uint8_t, __VA_ARGS__)                                                          \
    default: ::ssm::throw_internal(::ssm::cat(opname, ": unknown dtype ", int(dtype)));         \
  }

// ---------------- N-d index decomposition ----------------
constexpr int kMaxDims = 8;

// Fast unsigned division by a fixed divisor for dividends < 2^31 (Granlund-Montgomery):
//   q = (umulhi(n, m) + n) >> s  with s = ceil(log2 d), m = floor(2^32 (2^s - d) / d) + 1.
struct IntDivider {
  uint32_t d = 1, m = 0, s = 0;
  IntDivider() = default;
  explicit IntDivider(uint32_t div) : d(div) {
    while ((uint64_t(1) << s) < d) ++s;
    m = uint32_t(((uint64_t(1) << 32) * ((uint64_t(1) << s) - d)) / d + 1);
  }
  __device__ __forceinline__ uint32_t div(uint32_t n) const { return (__umulhi(n, m) + n) >> s; }
};

// Offsets (in elements) of NT operands for a linear index over a shape. Dims are stored innermost first.
template <int NT>
struct OffsetCalc {
  int ndim = 0;
  bool wide = false;  // numel >= 2^31: plain 64-bit division
  int64_t sizes[kMaxDims];
  IntDivider div[kMaxDims];
  int64_t strides[NT][kMaxDims];

  __device__ __forceinline__ void get(int64_t linear, int64_t (&off)[NT]) const {
#pragma unroll
    for (int t = 0; t < NT; ++t) off[t] = 0;
    if (!wide) {
      uint32_t rem = uint32_t(linear);
#pragma unroll
      for (int d = 0; d < kMaxDims; ++d) {
        if (d == ndim) break;
        uint32_t q = div[d].div(rem);
        uint32_t c = rem - q * uint32_t(sizes[d]);
        rem = q;
#pragma unroll
        for (int t = 0; t < NT; ++t) off[t] += int64_t(c) * strides[t][d];
      }
    } else {
      int64_t rem = linear;
#pragma unroll
      for (int d = 0; d < kMaxDims; ++d) {
        if (d == ndim) break;
        int64_t q = rem / sizes[d];
        int64_t c = rem - q * sizes[d];
        rem = q;
#pragma unroll
        for (int t = 0; t < NT; ++t) off[t] += c * strides[t][d];
      }
    }
  }
};

// Strides of `t` broadcast to `shape` (size-1 and missing leading dims get stride 0).
std::vector<int64_t> broadcast_strides(const Tensor& t, const Shape& shape, const char* op);

// Drops size-1 dims and merges dims that are contiguous for every operand; returns the OffsetCalc.
// strides[k] are operand k's strides over `shape` (outermost first). Throws BadInput past 8 dims.
template <int NT>
OffsetCalc<NT> make_offset_calc(const Shape& shape, const std::array<std::vector<int64_t>, NT>& strides,
                                const char* op);

// True when the strides are the row-major ones for shape (size-1 dims ignored).
bool is_dense(const Shape& shape, const Shape& strides);
inline bool is_dense(const Tensor& t) { return is_dense(t.shape(), t.strides()); }
inline bool aligned(const void* p, size_t a) { return (reinterpret_cast<uintptr_t>(p) % a) == 0; }

// Warp and block reductions: core/cuda/block_reduce.cuh (included above).

// ---------------- launch helpers ----------------
inline unsigned blocks_for(int64_t n, int64_t per_block) {
  int64_t b = (n + per_block - 1) / per_block;
  return unsigned(b < 1 ? 1 : b);
}
// Makes t's device current for the scope (kernels and cuBLAS calls then go to its stream).
struct TensorDevice {
  DeviceGuard guard;
  cudaStream_t stream;
  explicit TensorDevice(const Tensor& t) : guard(t.device().index), stream(current_stream(t.device().index)) {}
};

// Reads a device flag/int written by a kernel (synchronises the stream).
int read_device_int(const int* dptr, cudaStream_t s);

// Aligned vector of V elements (16-byte loads/stores).
template <class T, int V>
struct alignas(sizeof(T) * V) Vec {
  T v[V];
};

// Vector memory access through a plain integer type of the vector's size (uint4 for 16 bytes), so the
// access is always one LDG.E.128 / STG.E.128: copying a Vec of a class type (__nv_bfloat16, __half) may
// otherwise be split into one 2-byte access per element. dst/src are per-thread arrays (registers).
template <int Bytes> struct RawBytes;
template <> struct RawBytes<16> { using type = uint4; };
template <> struct RawBytes<8> { using type = uint2; };
template <> struct RawBytes<4> { using type = uint32_t; };
template <> struct RawBytes<2> { using type = uint16_t; };
template <> struct RawBytes<1> { using type = uint8_t; };

// dst[0:V] = p[vi*V : vi*V+V]; p 16-byte aligned when sizeof(T)*V == 16 (the vector's size in general).
template <class T, int V>
__device__ __forceinline__ void load_vec(const T* p, int64_t vi, T* dst) {
  using R = typename RawBytes<int(sizeof(T)) * V>::type;
  const R raw = reinterpret_cast<const R*>(p)[vi];
  memcpy(dst, &raw, sizeof(R));
}
template <class T, int V>
__device__ __forceinline__ void store_vec(T* p, int64_t vi, const T* src) {
  using R = typename RawBytes<int(sizeof(T)) * V>::type;
  R raw;
  memcpy(&raw, src, sizeof(R));
  reinterpret_cast<R*>(p)[vi] = raw;
}
template <class T, int V>
__device__ __forceinline__ Vec<T, V> load_vec(const T* p, int64_t vi) {
  Vec<T, V> r;
  load_vec<T, V>(p, vi, r.v);
  return r;
}

// x[e] = from_acc<T>(g(e)) for e < N, g(e) in the compute type; bf16 and f16 round in pairs (one
// cvt.rn.bf16x2.f32 per pair, same round-to-nearest-even result as from_acc).
template <class T, int N, class G>
__device__ __forceinline__ void from_acc_n(T* x, G&& g) {
  if constexpr ((std::is_same_v<T, bf16> || std::is_same_v<T, f16>) && N % 2 == 0) {
#pragma unroll
    for (int e = 0; e < N; e += 2) {
      if constexpr (std::is_same_v<T, bf16>) {
        const __nv_bfloat162 h = __floats2bfloat162_rn(g(e), g(e + 1));
        x[e] = h.x;
        x[e + 1] = h.y;
      } else {
        const __half2 h = __floats2half2_rn(g(e), g(e + 1));
        x[e] = h.x;
        x[e + 1] = h.y;
      }
    }
  } else {
#pragma unroll
    for (int e = 0; e < N; ++e) x[e] = from_acc<T>(g(e));
  }
}

}  // namespace ssm::cuda
