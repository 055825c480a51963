// Indexing on CUDA: index_select, index_add, gather, scatter_add (torch semantics, as core/ops_index.cpp).
// Indices (i32 or i64) are converted to a contiguous i64 tensor first. An index outside [0, n) sets a
// device flag (the smallest bad position, by atomicMin); the op then syncs and throws BadInput naming it
// (that one sync per call is the price of never reading or writing out of bounds).
// index_add (the embedding's backward) is deterministic: the index positions are sorted by index value
// (a stable radix sort, so equal indices keep their order), then one thread per (run of equal indices,
// outer, inner) element sums its run in order, in f32 (f64 for f64), and stores: no atomics, the same bits
// every run. scatter_add accumulates with atomicAdd: duplicate indices make the f32 summation order, and so
// the last bits of the result, vary from run to run (bf16/f16 atomics need sm_80 / sm_70).
#include <cub/device/device_radix_sort.cuh>

#include <bit>
#include <type_traits>

#include "core/cuda/common.cuh"
#include "core/cuda/cuda_ops.h"

namespace ssm::cuda {
namespace {

constexpr int kThreads = 256;

// out (A, L, B) = x (A, D, B) at rows index[l]; U is the element's bit pattern (copy only).
template <class U>
__global__ void __launch_bounds__(kThreads) index_select_kernel(const U* x, const int64_t* idx, U* out, int64_t A,
                                                                int64_t D, int64_t L, int64_t B,
                                                                unsigned long long* bad) {
  const int64_t n = A * L * B;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < n; o += stride) {
    const int64_t b = o % B, t = o / B, l = t % L, a = t / L;
    const int64_t k = idx[l];
    if (k < 0 || k >= D) {
      atomicMin(bad, (unsigned long long)l);
      out[o] = U(0);
      continue;
    }
    out[o] = x[(a * D + k) * B + b];
  }
}

__device__ __forceinline__ void atomic_add(float* p, float v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(double* p, double v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(bf16* p, bf16 v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(f16* p, f16 v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(int32_t* p, int32_t v) { atomicAdd(reinterpret_cast<int*>(p), int(v)); }
__device__ __forceinline__ void atomic_add(int64_t* p, int64_t v) {
  atomicAdd(reinterpret_cast<unsigned long long*>(p), (unsigned long long)v);  // two's complement wraps alike
}

// Flags indices outside [0, D) (the smallest bad position).
__global__ void __launch_bounds__(kThreads) check_index_kernel(const int64_t* idx, int64_t L, int64_t D,
                                                               unsigned long long* bad) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t l = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; l < L; l += stride)
    if (idx[l] < 0 || idx[l] >= D) atomicMin(bad, (unsigned long long)l);
}

// out (A, D, B) = Sum over l with index[l] = k of src (A, l, B), for every k that occurs. key/pos: the
// index values sorted ascending and their positions (stable); the thread at the first position p of a run
// of equal keys sums the run's rows in order.
template <class T>
__global__ void __launch_bounds__(kThreads) index_add_sorted_kernel(const T* src, const int64_t* key,
                                                                    const int32_t* pos, T* out, int64_t A, int64_t D,
                                                                    int64_t L, int64_t B) {
  using Acc = std::conditional_t<std::is_same_v<T, double>, double,
                                 std::conditional_t<std::is_integral_v<T>, T, float>>;
  const int64_t n = A * L * B;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < n; o += stride) {
    const int64_t b = o % B, t = o / B, p = t % L, a = t / L;
    const int64_t k = key[p];
    if (p > 0 && key[p - 1] == k) continue;  // not the start of a run
    Acc sum = Acc(0);
    for (int64_t q = p; q < L && key[q] == k; ++q) sum += Acc(src[(a * L + pos[q]) * B + b]);
    out[(a * D + k) * B + b] = T(sum);
  }
}

// gather: over index's shape; oc gives (index offset, x offset without the indexed dim).
template <class U>
__global__ void __launch_bounds__(kThreads) gather_kernel(const U* x, const int64_t* idx, U* out, int64_t n, int64_t D,
                                                          int64_t dstride, OffsetCalc<2> oc, unsigned long long* bad) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t off[2];
    oc.get(i, off);
    const int64_t k = idx[off[0]];
    if (k < 0 || k >= D) {
      atomicMin(bad, (unsigned long long)i);
      out[i] = U(0);
      continue;
    }
    out[i] = x[off[1] + k * dstride];
  }
}

// scatter_add: over index's shape; oc gives (index offset, src offset, out offset without the dim).
template <class T>
__global__ void __launch_bounds__(kThreads) scatter_add_kernel(const T* src, const int64_t* idx, T* out, int64_t n,
                                                               int64_t D, int64_t dstride, OffsetCalc<3> oc,
                                                               unsigned long long* bad) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t off[3];
    oc.get(i, off);
    const int64_t k = idx[off[0]];
    if (k < 0 || k >= D) {
      atomicMin(bad, (unsigned long long)i);
      continue;
    }
    atomic_add(out + off[2] + k * dstride, src[off[1]]);
  }
}

unsigned grid_for(int64_t n) { return unsigned(std::min<int64_t>(blocks_for(n, kThreads), int64_t(sm_count()) * 32)); }

constexpr int64_t kNoBad = int64_t(1) << 62;  // exact in a double, above any position

struct BadFlag {
  Tensor t;
  explicit BadFlag(Device d) : t(Tensor::empty({1}, DType::i64, d)) { fill(t, double(kNoBad)); }
  unsigned long long* ptr() const { return static_cast<unsigned long long*>(t.data_ptr()); }
  // Throws when some index was out of range; `value_at(pos)` gives the offending index value.
  template <class F>
  void check(cudaStream_t st, F&& message) const {
    unsigned long long pos = 0;
    SSM_CUDA_CHECK(cudaMemcpyAsync(&pos, t.data_ptr(), sizeof(pos), cudaMemcpyDeviceToHost, st));
    SSM_CUDA_CHECK(cudaStreamSynchronize(st));
    if (pos != (unsigned long long)kNoBad) throw_input(message(int64_t(pos)));
  }
};

__global__ void arange_i32_kernel(int32_t* out, int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) out[i] = int32_t(i);
}

Tensor arange_i32(int64_t n, Device d, cudaStream_t st) {
  Tensor t = Tensor::empty({n}, DType::i32, d);
  arange_i32_kernel<<<grid_for(n), kThreads, 0, st>>>(t.data<int32_t>(), n);
  SSM_CUDA_LAUNCH_CHECK();
  return t;
}

Tensor as_i64(const Tensor& index) { return (index.dtype() == DType::i64 ? index : index.to(DType::i64)).contiguous(); }

void adb(const Shape& s, int64_t dim, int64_t& A, int64_t& B) {
  A = 1;
  B = 1;
  for (int64_t d = 0; d < dim; ++d) A *= s[size_t(d)];
  for (int64_t d = dim + 1; d < int64_t(s.size()); ++d) B *= s[size_t(d)];
}

template <class F>
void dispatch_size(size_t es, const char* op, F&& f) {
  switch (es) {
    case 1: f(uint8_t{}); break;
    case 2: f(uint16_t{}); break;
    case 4: f(uint32_t{}); break;
    case 8: f(uint64_t{}); break;
    default: throw_internal(::ssm::cat(op, ": unexpected element size ", es));
  }
}


}  // namespace

Tensor index_select(const Tensor& x_in, int64_t dim, const Tensor& index) {
  TensorDevice td(x_in);
  const Tensor x = x_in.contiguous();
  const Tensor idx = as_i64(index);
  Shape os = x.shape();
  const int64_t D = os[size_t(dim)], L = idx.numel();
  os[size_t(dim)] = L;
  Tensor out = Tensor::empty(os, x.dtype(), x.device());
  if (out.numel() == 0) return out;
  int64_t A, B;
  adb(x.shape(), dim, A, B);
  BadFlag bad(x.device());
  dispatch_size(dtype_size(x.dtype()), "index_select", [&](auto z) {
    using U = decltype(z);
    index_select_kernel<U><<<grid_for(out.numel()), kThreads, 0, td.stream>>>(
        x.data<U>(), idx.data<int64_t>(), out.data<U>(), A, D, L, B, bad.ptr());
    SSM_CUDA_LAUNCH_CHECK();
  });
  bad.check(td.stream, [&](int64_t pos) {
    return ::ssm::cat("index_select: index ", idx.narrow(0, pos, 1).item(), " (at position ", pos,
                      ") is out of range [0, ", D, ") for dim ", dim, " of shape ", shape_str(x.shape()));
  });
  return out;
}

Tensor index_add(const Shape& shape, int64_t dim, const Tensor& index, const Tensor& src_in) {
  TensorDevice td(src_in);
  const Tensor src = src_in.contiguous();
  const Tensor idx = as_i64(index);
  Tensor out = Tensor::zeros(shape, src.dtype(), src.device());
  if (src.numel() == 0) return out;
  int64_t A, B;
  adb(shape, dim, A, B);
  const int64_t D = shape[size_t(dim)], L = idx.numel();
  SSM_CHECK_INPUT(L < (int64_t(1) << 31), "index_add: ", L, " indices; at most 2^31 - 1 are supported");
  BadFlag bad(src.device());
  check_index_kernel<<<grid_for(L), kThreads, 0, td.stream>>>(idx.data<int64_t>(), L, D, bad.ptr());
  SSM_CUDA_LAUNCH_CHECK();
  bad.check(td.stream, [&](int64_t pos) {
    return ::ssm::cat("index_add: index ", idx.narrow(0, pos, 1).item(), " (at position ", pos,
                      ") is out of range [0, ", D, ") for dim ", dim, " of shape ", shape_str(shape));
  });
  // Sort (index value, position) pairs on the low bits that can be set (values are in [0, D)).
  Tensor positions = arange_i32(L, src.device(), td.stream);
  Tensor keys_sorted = Tensor::empty({L}, DType::i64, src.device());
  Tensor pos_sorted = Tensor::empty({L}, DType::i32, src.device());
  const int end_bit = std::max(1, int(std::bit_width(uint64_t(D))));
  size_t temp_bytes = 0;
  SSM_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, idx.data<int64_t>(), keys_sorted.data<int64_t>(),
                                                 positions.data<int32_t>(), pos_sorted.data<int32_t>(), L, 0, end_bit,
                                                 td.stream));
  Tensor temp = Tensor::empty({int64_t(std::max<size_t>(temp_bytes, 1))}, DType::u8, src.device());
  SSM_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.data_ptr(), temp_bytes, idx.data<int64_t>(),
                                                 keys_sorted.data<int64_t>(), positions.data<int32_t>(),
                                                 pos_sorted.data<int32_t>(), L, 0, end_bit, td.stream));
  SSM_DISPATCH_ARITH(src.dtype(), "index_add", {
    index_add_sorted_kernel<scalar_t><<<grid_for(src.numel()), kThreads, 0, td.stream>>>(
        src.data<scalar_t>(), keys_sorted.data<int64_t>(), pos_sorted.data<int32_t>(), out.data<scalar_t>(), A, D, L,
        B);
    SSM_CUDA_LAUNCH_CHECK();
  });
  return out;
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  TensorDevice td(x);
  const Tensor idx = as_i64(index);
  Tensor out = Tensor::empty(index.shape(), x.dtype(), x.device());
  const int64_t n = out.numel();
  if (n == 0) return out;
  const int64_t D = x.dim() == 0 ? 1 : x.shape()[size_t(dim)];
  std::vector<int64_t> xs = x.strides();
  const int64_t dstride = x.dim() == 0 ? 0 : xs[size_t(dim)];
  if (x.dim() > 0) xs[size_t(dim)] = 0;  // the indexed dim's offset comes from the index value
  OffsetCalc<2> oc = make_offset_calc<2>(index.shape(), {idx.strides(), xs}, "gather");
  BadFlag bad(x.device());
  dispatch_size(dtype_size(x.dtype()), "gather", [&](auto z) {
    using U = decltype(z);
    gather_kernel<U><<<grid_for(n), kThreads, 0, td.stream>>>(static_cast<const U*>(x.data_ptr()),
                                                               idx.data<int64_t>(), out.data<U>(), n, D, dstride, oc,
                                                               bad.ptr());
    SSM_CUDA_LAUNCH_CHECK();
  });
  bad.check(td.stream, [&](int64_t pos) {
    return ::ssm::cat("gather: index ", idx.flatten().narrow(0, pos, 1).item(), " (at position ", pos,
                      ") is out of range [0, ", D, ") for dim ", dim, " of shape ", shape_str(x.shape()));
  });
  return out;
}

Tensor scatter_add(const Shape& shape, int64_t dim, const Tensor& index, const Tensor& src) {
  TensorDevice td(src);
  const Tensor idx = as_i64(index);
  Tensor out = Tensor::zeros(shape, src.dtype(), src.device());
  const int64_t n = idx.numel();
  if (n == 0) return out;
  const int64_t D = shape.empty() ? 1 : shape[size_t(dim)];
  std::vector<int64_t> os = out.strides();
  const int64_t dstride = shape.empty() ? 0 : os[size_t(dim)];
  if (!shape.empty()) os[size_t(dim)] = 0;
  OffsetCalc<3> oc = make_offset_calc<3>(idx.shape(), {idx.strides(), src.strides(), os}, "scatter_add");
  BadFlag bad(src.device());
  SSM_DISPATCH_ARITH(src.dtype(), "scatter_add", {
    scatter_add_kernel<scalar_t><<<grid_for(n), kThreads, 0, td.stream>>>(
        static_cast<const scalar_t*>(src.data_ptr()), idx.data<int64_t>(), out.data<scalar_t>(), n, D, dstride, oc,
        bad.ptr());
    SSM_CUDA_LAUNCH_CHECK();
  });
  bad.check(td.stream, [&](int64_t pos) {
    return ::ssm::cat("scatter_add: index ", idx.flatten().narrow(0, pos, 1).item(), " (at position ", pos,
                      ") is out of range [0, ", D, ") for dim ", dim, " of shape ", shape_str(shape));
  });
  return out;
}

}  // namespace ssm::cuda
