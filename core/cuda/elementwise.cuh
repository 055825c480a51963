// The elementwise launcher: out[i] = f(in0[i], in1[i], in2[i]) over out's shape, inputs broadcast.
//
// A functor F declares Out, In0, In1, In2 (unused ones: uint8_t), kIn (1..3), Vt (the type that sets the
// vector width V = 16 / sizeof(Vt)), and `__device__ Out operator()(In0, In1, In2) const`.
// Two kernels per functor:
//  - vectorised: out dense, every input dense over out's shape or a single element (scalar broadcast),
//    pointers aligned: each thread moves kUnroll 16-byte vectors per operand (float4 for f32, 8 x bf16);
//  - N-d: any strides (broadcast = stride 0), offsets from the linear index by OffsetCalc (dims coalesced
//    first, at most 8 left).
// Bytes moved = numel * (sizeof(Out) + sum of dense inputs' sizeof): the bandwidth floor of every op here.
#pragma once
#include <array>

#include "core/cuda/common.cuh"

namespace ssm::cuda {

constexpr int kEwThreads = 256;
constexpr int kEwUnroll = 4;

template <class F>
struct EwPtrs {
  typename F::Out* out;
  const typename F::In0* in0;
  const typename F::In1* in1;
  const typename F::In2* in2;
};

template <class T, int V>
__device__ __forceinline__ Vec<T, V> load_vec(const T* p, int64_t vi, bool scalar) {
  if (scalar) {
    Vec<T, V> r;
    const T s = p[0];
#pragma unroll
    for (int e = 0; e < V; ++e) r.v[e] = s;
    return r;
  }
  return reinterpret_cast<const Vec<T, V>*>(p)[vi];
}

template <class F, int V>
__global__ void __launch_bounds__(kEwThreads) ew_vec_kernel(F f, int64_t n, EwPtrs<F> p, unsigned scalar) {
  using Out = typename F::Out;
  using In0 = typename F::In0;
  using In1 = typename F::In1;
  using In2 = typename F::In2;
  const int64_t nvec = n / V;
  const int64_t base = int64_t(blockIdx.x) * (kEwThreads * kEwUnroll) + threadIdx.x;
  Vec<In0, V> a[kEwUnroll];
  Vec<In1, V> b[kEwUnroll];
  Vec<In2, V> c[kEwUnroll];
#pragma unroll
  for (int j = 0; j < kEwUnroll; ++j) {
    const int64_t vi = base + int64_t(j) * kEwThreads;
    if (vi < nvec) {
      a[j] = load_vec<In0, V>(p.in0, vi, scalar & 1u);
      if constexpr (F::kIn >= 2) b[j] = load_vec<In1, V>(p.in1, vi, scalar & 2u);
      if constexpr (F::kIn >= 3) c[j] = load_vec<In2, V>(p.in2, vi, scalar & 4u);
    }
  }
#pragma unroll
  for (int j = 0; j < kEwUnroll; ++j) {
    const int64_t vi = base + int64_t(j) * kEwThreads;
    if (vi < nvec) {
      Vec<Out, V> r;
#pragma unroll
      for (int e = 0; e < V; ++e) {
        In1 bv{};
        In2 cv{};
        if constexpr (F::kIn >= 2) bv = b[j].v[e];
        if constexpr (F::kIn >= 3) cv = c[j].v[e];
        r.v[e] = f(a[j].v[e], bv, cv);
      }
      reinterpret_cast<Vec<Out, V>*>(p.out)[vi] = r;
    }
  }
  // The last block also does the n % V tail elements.
  if (blockIdx.x == gridDim.x - 1) {
    const int64_t i = nvec * V + threadIdx.x;
    if (threadIdx.x < V && i < n) {
      In1 bv{};
      In2 cv{};
      if constexpr (F::kIn >= 2) bv = p.in1[(scalar & 2u) ? 0 : i];
      if constexpr (F::kIn >= 3) cv = p.in2[(scalar & 4u) ? 0 : i];
      p.out[i] = f(p.in0[(scalar & 1u) ? 0 : i], bv, cv);
    }
  }
}

template <class F>
__global__ void __launch_bounds__(kEwThreads) ew_nd_kernel(F f, int64_t n, EwPtrs<F> p, OffsetCalc<F::kIn + 1> oc) {
  using In1 = typename F::In1;
  using In2 = typename F::In2;
  const int64_t base = int64_t(blockIdx.x) * (kEwThreads * kEwUnroll) + threadIdx.x;
#pragma unroll
  for (int j = 0; j < kEwUnroll; ++j) {
    const int64_t i = base + int64_t(j) * kEwThreads;
    if (i < n) {
      int64_t off[F::kIn + 1];
      oc.get(i, off);
      In1 bv{};
      In2 cv{};
      if constexpr (F::kIn >= 2) bv = p.in1[off[2]];
      if constexpr (F::kIn >= 3) cv = p.in2[off[3]];
      p.out[off[0]] = f(p.in0[off[1]], bv, cv);
    }
  }
}

// Runs f over out's shape; ins broadcast to it. out may be strided (in-place ops pass a view).
template <class F>
void launch_elementwise(const F& f, const Tensor& out, const std::array<Tensor, F::kIn>& ins, const char* op) {
  using Out = typename F::Out;
  constexpr int V = int(16 / sizeof(typename F::Vt));
  const int64_t n = out.numel();
  if (n == 0) return;
  TensorDevice td(out);
  const Shape& shape = out.shape();

  EwPtrs<F> p{};
  p.out = static_cast<Out*>(out.data_ptr());
  std::array<std::vector<int64_t>, F::kIn + 1> strides;
  strides[0] = out.strides();
  const void* raw[3] = {nullptr, nullptr, nullptr};
  size_t isz[3] = {sizeof(typename F::In0), sizeof(typename F::In1), sizeof(typename F::In2)};
  bool vec_ok = is_dense(out) && aligned(p.out, sizeof(Out) * V);
  unsigned scalar = 0;
  for (int k = 0; k < F::kIn; ++k) {
    const Tensor& t = ins[size_t(k)];
    SSM_CHECK(t.device() == out.device(), op, ": inputs on ", t.device().str(), " and ", out.device().str());
    raw[k] = t.data_ptr();
    strides[size_t(k) + 1] = broadcast_strides(t, shape, op);
    if (t.numel() == 1) {
      scalar |= 1u << k;
    } else if (!(is_dense(shape, strides[size_t(k) + 1]) && aligned(raw[k], isz[k] * V))) {
      vec_ok = false;
    }
  }
  p.in0 = static_cast<const typename F::In0*>(raw[0]);
  p.in1 = static_cast<const typename F::In1*>(raw[1]);
  p.in2 = static_cast<const typename F::In2*>(raw[2]);

  if (vec_ok) {
    const unsigned blocks = blocks_for(n / V, kEwThreads * kEwUnroll);
    ew_vec_kernel<F, V><<<blocks, kEwThreads, 0, td.stream>>>(f, n, p, scalar);
  } else {
    OffsetCalc<F::kIn + 1> oc = make_offset_calc<F::kIn + 1>(shape, strides, op);
    const unsigned blocks = blocks_for(n, kEwThreads * kEwUnroll);
    ew_nd_kernel<F><<<blocks, kEwThreads, 0, td.stream>>>(f, n, p, oc);
  }
  SSM_CUDA_LAUNCH_CHECK();
}

}  // namespace ssm::cuda
