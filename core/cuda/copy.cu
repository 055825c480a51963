// Copies on CUDA: copy_strided (any strides, any dtype to any dtype, src may broadcast with stride 0),
// fill, and cat (one strided copy per input into a narrow() view of the output).
// Same dtype: a dense pair is one cudaMemcpyAsync; otherwise an element-size copy kernel (1/2/4/8 bytes)
// through the elementwise launcher. Different dtypes, both float types of f32 / bf16 / f16: the elementwise
// launcher too (CastF: 16-byte vectors when dense and aligned); any other pair: one kernel that switches on both
// dtypes at run time (uniform branches). Both convert like core/cpu_loops.h convert<D, S>: halves go through f32,
// integers convert directly, floats to integers truncate.
#include <cstring>
#include <type_traits>

#include "core/cuda/cuda_ops.h"
#include "core/cuda/elementwise.cuh"

namespace ssm::cuda {
namespace {

template <class U>
struct CopyF {
  using Out = U; using In0 = U; using In1 = uint8_t; using In2 = uint8_t; using Vt = U;
  static constexpr int kIn = 1;
  __device__ U operator()(U x, uint8_t, uint8_t) const { return x; }
};

// A conversion between the float types (f32, bf16, f16) through the elementwise launcher: 16-byte vectors of the
// wider type when both tensors are dense and aligned (the autocast weight and gradient casts, ~9 and ~47 us each
// in the 130M LM's step through cast_kernel below, which converts element by element through f64 and OffsetCalc).
// Same rounding (round to nearest even, through f32).
template <class D, class S>
struct CastF {
  using Out = D; using In0 = S; using In1 = uint8_t; using In2 = uint8_t;
  using Vt = std::conditional_t<(sizeof(D) > sizeof(S)), D, S>;
  static constexpr int kIn = 1;
  __device__ D operator()(S x, uint8_t, uint8_t) const { return from_acc<D>(float(to_acc(x))); }
};
template <class D>
bool cast_float_to(const Tensor& dst, const Tensor& src) {
  const auto run = [&](auto tag) {
    using S = decltype(tag);
    if constexpr (!std::is_same_v<S, D>) launch_elementwise(CastF<D, S>{}, dst, {src}, "cast");
    return true;
  };
  switch (src.dtype()) {
    case DType::f32: return run(float{});
    case DType::bf16: return run(bf16{});
    case DType::f16: return run(f16{});
    default: return false;
  }
}
// Whether dst = src (dtypes differ) was done as a float-to-float conversion.
bool cast_floats(const Tensor& dst, const Tensor& src) {
  switch (dst.dtype()) {
    case DType::f32: return cast_float_to<float>(dst, src);
    case DType::bf16: return cast_float_to<bf16>(dst, src);
    case DType::f16: return cast_float_to<f16>(dst, src);
    default: return false;
  }
}

// Any other pair (f64, the integer types).
__global__ void __launch_bounds__(kEwThreads) cast_kernel(int64_t n, char* dst, DType ddt, int dsz, const char* src,
                                                          DType sdt, int ssz, OffsetCalc<2> oc) {
  const int64_t base = int64_t(blockIdx.x) * (kEwThreads * kEwUnroll) + threadIdx.x;
#pragma unroll
  for (int j = 0; j < kEwUnroll; ++j) {
    const int64_t i = base + int64_t(j) * kEwThreads;
    if (i >= n) return;
    int64_t off[2];
    oc.get(i, off);
    const char* sp = src + off[1] * ssz;
    char* dp = dst + off[0] * dsz;
    double f = 0;
    int64_t k = 0;
    bool is_int = false;
    switch (sdt) {
      case DType::f32: f = *reinterpret_cast<const float*>(sp); break;
      case DType::f64: f = *reinterpret_cast<const double*>(sp); break;
      case DType::bf16: f = __bfloat162float(*reinterpret_cast<const bf16*>(sp)); break;
      case DType::f16: f = __half2float(*reinterpret_cast<const f16*>(sp)); break;
      case DType::i32: k = *reinterpret_cast<const int32_t*>(sp); is_int = true; break;
      case DType::i64: k = *reinterpret_cast<const int64_t*>(sp); is_int = true; break;
      case DType::u8: k = *reinterpret_cast<const uint8_t*>(sp); is_int = true; break;
    }
    const float f32 = is_int ? float(k) : float(f);  // int -> float directly, like static_cast<float>
    switch (ddt) {
      case DType::f32: *reinterpret_cast<float*>(dp) = f32; break;
      case DType::f64: *reinterpret_cast<double*>(dp) = is_int ? double(k) : f; break;
      case DType::bf16: *reinterpret_cast<bf16*>(dp) = __float2bfloat16_rn(f32); break;
      case DType::f16: *reinterpret_cast<f16*>(dp) = __float2half_rn(f32); break;
      case DType::i32: *reinterpret_cast<int32_t*>(dp) = is_int ? int32_t(k) : int32_t(f); break;
      case DType::i64: *reinterpret_cast<int64_t*>(dp) = is_int ? k : int64_t(f); break;
      case DType::u8: *reinterpret_cast<uint8_t*>(dp) = is_int ? uint8_t(k) : uint8_t(f); break;
    }
  }
}

template <class U>
__global__ void __launch_bounds__(kEwThreads) fill_kernel(int64_t n, U* p, U v, OffsetCalc<1> oc) {
  const int64_t base = int64_t(blockIdx.x) * (kEwThreads * kEwUnroll) + threadIdx.x;
#pragma unroll
  for (int j = 0; j < kEwUnroll; ++j) {
    const int64_t i = base + int64_t(j) * kEwThreads;
    if (i >= n) return;
    int64_t off[1];
    oc.get(i, off);
    p[off[0]] = v;
  }
}

template <class U>
void copy_same_dtype(const Tensor& dst, const Tensor& src) {
  launch_elementwise(CopyF<U>{}, dst, {src}, "copy_strided");
}

// The bytes of `value` stored as dtype dt (the CPU's convert<T, double>).
uint64_t value_bits(DType dt, double value) {
  uint64_t bits = 0;
  switch (dt) {
    case DType::f32: { float v = float(value); std::memcpy(&bits, &v, 4); break; }
    case DType::f64: std::memcpy(&bits, &value, 8); break;
    case DType::bf16: bits = f32_to_bf16(float(value)).bits; break;
    case DType::f16: bits = f32_to_f16(float(value)).bits; break;
    case DType::i32: { int32_t v = int32_t(value); std::memcpy(&bits, &v, 4); break; }
    case DType::i64: { int64_t v = int64_t(value); std::memcpy(&bits, &v, 8); break; }
    case DType::u8: bits = uint8_t(value); break;
  }
  return bits;
}

}  // namespace

void copy_strided(Tensor& dst, const Tensor& src_in) {
  SSM_CHECK(dst.shape() == src_in.shape(), "copy_strided: shapes ", shape_str(dst.shape()), " and ",
            shape_str(src_in.shape()), " differ");
  const int64_t n = dst.numel();
  if (n == 0) return;
  Tensor src = src_in;
  if (src.device() != dst.device()) {
    // Another GPU: bring a dense copy over first, then convert / scatter here.
    Tensor dense = src.contiguous();
    Tensor here = Tensor::empty(src.shape(), src.dtype(), dst.device());
    memcpy_bytes(dst.device(), here.data_ptr(), src.device(), dense.data_ptr(), dense.nbytes());
    src = here;
  }
  TensorDevice td(dst);
  if (src.dtype() == dst.dtype()) {
    if (is_dense(dst) && is_dense(src)) {
      SSM_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), dst.nbytes(), cudaMemcpyDeviceToDevice, td.stream));
      return;
    }
    switch (dtype_size(dst.dtype())) {
      case 1: copy_same_dtype<uint8_t>(dst, src); break;
      case 2: copy_same_dtype<uint16_t>(dst, src); break;
      case 4: copy_same_dtype<uint32_t>(dst, src); break;
      case 8: copy_same_dtype<uint64_t>(dst, src); break;
      default: throw_internal("copy_strided: unexpected element size");
    }
    return;
  }
  if (cast_floats(dst, src)) return;
  std::array<std::vector<int64_t>, 2> strides{dst.strides(), broadcast_strides(src, dst.shape(), "copy_strided")};
  OffsetCalc<2> oc = make_offset_calc<2>(dst.shape(), strides, "copy_strided");
  cast_kernel<<<blocks_for(n, kEwThreads * kEwUnroll), kEwThreads, 0, td.stream>>>(
      n, static_cast<char*>(dst.data_ptr()), dst.dtype(), int(dtype_size(dst.dtype())),
      static_cast<const char*>(src.data_ptr()), src.dtype(), int(dtype_size(src.dtype())), oc);
  SSM_CUDA_LAUNCH_CHECK();
}

void fill(Tensor& t, double value) {
  const int64_t n = t.numel();
  if (n == 0) return;
  TensorDevice td(t);
  const uint64_t bits = value_bits(t.dtype(), value);
  if (bits == 0 && is_dense(t)) {
    SSM_CUDA_CHECK(cudaMemsetAsync(t.data_ptr(), 0, t.nbytes(), td.stream));
    return;
  }
  std::array<std::vector<int64_t>, 1> strides{t.strides()};
  OffsetCalc<1> oc = make_offset_calc<1>(t.shape(), strides, "fill");
  const unsigned blocks = blocks_for(n, kEwThreads * kEwUnroll);
  switch (dtype_size(t.dtype())) {
    case 1: fill_kernel<uint8_t><<<blocks, kEwThreads, 0, td.stream>>>(n, static_cast<uint8_t*>(t.data_ptr()), uint8_t(bits), oc); break;
    case 2: fill_kernel<uint16_t><<<blocks, kEwThreads, 0, td.stream>>>(n, static_cast<uint16_t*>(t.data_ptr()), uint16_t(bits), oc); break;
    case 4: fill_kernel<uint32_t><<<blocks, kEwThreads, 0, td.stream>>>(n, static_cast<uint32_t*>(t.data_ptr()), uint32_t(bits), oc); break;
    case 8: fill_kernel<uint64_t><<<blocks, kEwThreads, 0, td.stream>>>(n, static_cast<uint64_t*>(t.data_ptr()), bits, oc); break;
    default: throw_internal("fill: unexpected element size");
  }
  SSM_CUDA_LAUNCH_CHECK();
}

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  SSM_CHECK(!xs.empty(), "cat: no tensors");
  const Tensor& x0 = xs[0];
  if (dim < 0) dim += x0.dim();
  Shape shape = x0.shape();
  int64_t total = 0;
  for (const Tensor& x : xs) total += x.shape()[size_t(dim)];
  shape[size_t(dim)] = total;
  Tensor out = Tensor::empty(shape, x0.dtype(), x0.device());
  int64_t at = 0;
  for (const Tensor& x : xs) {
    const int64_t len = x.shape()[size_t(dim)];
    if (len > 0 && x.numel() > 0) {
      Tensor slot = out.narrow(dim, at, len);
      copy_strided(slot, x);
    }
    at += len;
  }
  return out;
}

}  // namespace ssm::cuda
