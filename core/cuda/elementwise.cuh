// The elementwise launcher: out[i] = f(in0[i], in1[i], in2[i]) over out's shape, inputs broadcast.
//
// A functor F declares Out, In0, In1, In2 (unused ones: uint8_t), kIn (1..3), Vt (the type that sets the
// vector width V = 16 / sizeof(Vt)), and `__device__ Out operator()(In0, In1, In2) const`.
// A functor may also declare `template <int N> apply(...)` doing N elements at once (see ew_apply): the
// vector kernel then calls it once per thread, so a run-time op switch is taken once, not per element.
// Two kernels per functor:
//  - vectorised: out dense, every input dense over out's shape or a single element (scalar broadcast),
//    pointers aligned: each thread moves kUnroll 16-byte vectors per operand (float4 for f32, 8 x bf16),
//    as single 128-bit loads/stores (load_vec/store_vec in common.cuh);
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

// Operand k of the vector kernel: kUnroll vectors (or the broadcast scalar) into dst[0 : kUnroll*V].
template <class T, int V>
__device__ __forceinline__ void load_operand(const T* p, int64_t base, int64_t nvec, bool scalar, T* dst) {
  if (scalar) {
    const T s = p[0];
#pragma unroll
    for (int e = 0; e < kEwUnroll * V; ++e) dst[e] = s;
    return;
  }
#pragma unroll
  for (int j = 0; j < kEwUnroll; ++j) {
    const int64_t vi = base + int64_t(j) * kEwThreads;
    if (vi < nvec) load_vec<T, V>(p, vi, dst + j * V);
  }
}

// r[e] = f(a[e], b[e], c[e]) for e < N. A functor with
//   template <int N> __device__ void apply(Out (&r)[N], const In0 (&a)[N], const In1 (&b)[N], const In2 (&c)[N]) const
// does all N at once (it takes its op switch once, outside the element loop: see math.cuh); others go one
// element at a time through operator().
template <class F, int N>
__device__ __forceinline__ void ew_apply(const F& f, typename F::Out (&r)[N], const typename F::In0 (&a)[N],
                                         const typename F::In1 (&b)[N], const typename F::In2 (&c)[N]) {
  if constexpr (requires { f.template apply<N>(r, a, b, c); }) {
    f.template apply<N>(r, a, b, c);
  } else {
#pragma unroll
    for (int e = 0; e < N; ++e) r[e] = f(a[e], b[e], c[e]);
  }
}

// Thread t of block blk owns vectors blk*kEwThreads*kEwUnroll + t + j*kEwThreads, j < kEwUnroll (coalesced
// across the warp for every j): all kEwUnroll loads of every operand are issued before any arithmetic, so
// each thread has kEwUnroll 16-byte loads per operand in flight (8 bf16 or 4 f32 each).
template <class F, int V>
__global__ void __launch_bounds__(kEwThreads) ew_vec_kernel(F f, int64_t n, EwPtrs<F> p, unsigned scalar) {
  using Out = typename F::Out;
  using In0 = typename F::In0;
  using In1 = typename F::In1;
  using In2 = typename F::In2;
  constexpr int N = kEwUnroll * V;
  const int64_t nvec = n / V;
  const int64_t base = int64_t(blockIdx.x) * (kEwThreads * kEwUnroll) + threadIdx.x;
  // Zero-filled so that the slots past the end (last block only) compute on defined values.
  In0 a[N] = {};
  In1 b[N] = {};
  In2 c[N] = {};
  Out r[N];
  load_operand<In0, V>(p.in0, base, nvec, scalar & 1u, a);
  if constexpr (F::kIn >= 2) load_operand<In1, V>(p.in1, base, nvec, scalar & 2u, b);
  if constexpr (F::kIn >= 3) load_operand<In2, V>(p.in2, base, nvec, scalar & 4u, c);
  ew_apply<F, N>(f, r, a, b, c);
#pragma unroll
  for (int j = 0; j < kEwUnroll; ++j) {
    const int64_t vi = base + int64_t(j) * kEwThreads;
    if (vi < nvec) store_vec<Out, V>(p.out, vi, r + j * V);
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
