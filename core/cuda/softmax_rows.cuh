// Device pieces of the softmax and cross-entropy kernels (core/cuda/softmax.cu): the online (max, sum of
// exps) pair and its warp merge, and the rows of cross_entropy_with_grad_. A header of its own so that
// tests/emu runs the fused cross-entropy kernel on the CPU (its shadow common.cuh and math.cuh give it the
// conversions and exp). Internal to core/cuda/.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/cuda/common.cuh"
#include "core/cuda/math.cuh"

namespace ssm::cuda {

constexpr int kSoftmaxThreads = 256;
// cross_entropy_with_grad_'s block: 1024 threads for rows of 8192 elements or more, so that the rows in flight
// (one or two blocks an SM: 132-264 rows of an LM head's 100 KB) stay well inside the 50 MB L2 between a row's
// two reads; 256 for shorter rows.
constexpr int kCeLongRowThreads = 1024;
constexpr int64_t kCeLongRow = 8192;
inline int ce_threads(int64_t C) { return C >= kCeLongRow ? kCeLongRowThreads : kSoftmaxThreads; }

// (m, s): the running max and the sum of e^(x - m). Merging (m1, s1), (m2, s2) gives m = max(m1, m2),
// s = s1 e^(m1 - m) + s2 e^(m2 - m).
template <class A>
struct MS {
  A m, s;
};
template <class A>
__device__ __forceinline__ MS<A> ms_merge(MS<A> p, MS<A> q) {
  const A m = p.m > q.m ? p.m : q.m;
  if (m == -INFINITY) return p;
  const A s = (p.s == A(0) ? A(0) : p.s * m_exp(p.m - m)) + (q.s == A(0) ? A(0) : q.s * m_exp(q.m - m));
  return MS<A>{m, s};
}
template <class A>
__device__ __forceinline__ MS<A> warp_ms(MS<A> p) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    MS<A> q{__shfl_xor_sync(0xffffffffu, p.m, o), __shfl_xor_sync(0xffffffffu, p.s, o)};
    p = ms_merge(p, q);
  }
  return p;
}
// The merge of every thread's (m, s) over the block (a multiple of 32 threads, at most 1024); every thread gets
// it. The leading barrier lets a block call it again (the shared slots are reused).
template <class A>
__device__ __forceinline__ MS<A> block_ms(MS<A> ms) {
  ms = warp_ms(ms);
  __shared__ A sm[32], ss[32];
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) {
    sm[w] = ms.m;
    ss[w] = ms.s;
  }
  __syncthreads();
  ms = lane < nw ? MS<A>{sm[lane], ss[lane]} : MS<A>{A(-INFINITY), A(0)};
  return warp_ms(ms);
}
// Pass 1 and 2 of cross_entropy_with_grad_ over one row p[0, C) in chunks of V elements (V = 1, or 16 bytes
// when the rows are 16-byte aligned).
template <class T, int V>
__device__ __forceinline__ void ce_load(const T* p, int64_t j, acc_t<T>* a) {
  if constexpr (V == 1) {
    a[0] = to_acc(p[j]);
  } else {
    const uint4 r = reinterpret_cast<const uint4*>(p)[j];
#pragma unroll
    for (int k = 0; k < V; ++k) a[k] = to_acc(reinterpret_cast<const T*>(&r)[k]);
  }
}
template <class T, int V>
__device__ __forceinline__ MS<acc_t<T>> ce_row_ms(const T* p, int64_t C) {
  using A = acc_t<T>;
  A m = A(-INFINITY), s = A(0);
#pragma unroll 4  // the loads of 4 iterations in flight together
  for (int64_t j = threadIdx.x; j < C / V; j += blockDim.x) {
    A a[V];
    ce_load<T, V>(p, j, a);
    A mv = a[0];
#pragma unroll
    for (int k = 1; k < V; ++k) mv = mv > a[k] ? mv : a[k];  // a NaN reaches s below, whatever m becomes
    if (mv > m) {
      s *= m_exp(m - mv);  // 0 while m is -inf (s is 0 then too)
      m = mv;
    }
#pragma unroll
    for (int k = 0; k < V; ++k) s += a[k] == A(-INFINITY) ? A(0) : m_exp(a[k] - m);
  }
  return block_ms(MS<A>{m, s});
}
template <class T, int V>
__device__ __forceinline__ void ce_row_grad(T* p, int64_t C, int64_t t, MS<acc_t<T>> ms, acc_t<T> scale) {
  using A = acc_t<T>;
  const A inv = A(1) / ms.s;
  for (int64_t j = threadIdx.x; j < C / V; j += blockDim.x) {
    A a[V];
    ce_load<T, V>(p, j, a);
    T g[V];
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const A sm = a[k] == A(-INFINITY) ? A(0) : m_exp(a[k] - ms.m) * inv;
      g[k] = from_acc<T>((sm - (j * V + k == t ? A(1) : A(0))) * scale);
    }
    if constexpr (V == 1) {
      p[j] = g[0];
    } else {
      uint4 r;
#pragma unroll
      for (int k = 0; k < V; ++k) reinterpret_cast<T*>(&r)[k] = g[k];
      reinterpret_cast<uint4*>(p)[j] = r;
    }
  }
}

// One block per row: the row's loss and validity (as ce_rows), then its gradient written over it.
template <class T, class I, int V>
__global__ void __launch_bounds__(kCeLongRowThreads) ce_with_grad_rows(T* x, const I* tg, int64_t C, int64_t ignore,
                                                              double grad_scale, const long long* count,
                                                              double* loss, int* valid) {
  using A = acc_t<T>;
  const int64_t row = blockIdx.x;
  const int64_t t = int64_t(tg[row]);
  T* p = x + row * C;
  if (t == ignore || t < 0 || t >= C) {  // ce_count has flagged a bad target
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) p[c] = from_acc<T>(A(0));
    if (threadIdx.x == 0) {
      loss[row] = 0.0;
      valid[row] = 0;
    }
    return;
  }
  const A xt = to_acc(p[t]);  // read before the barrier in ce_row_ms: pass 2 overwrites it
  const MS<A> ms = ce_row_ms<T, V>(p, C);
  if (threadIdx.x == 0) {
    loss[row] = double(ms.m) + ::log(double(ms.s)) - double(xt);
    valid[row] = 1;
  }
  ce_row_grad<T, V>(p, C, t, ms, A(grad_scale / double(count[0])));
}

}  // namespace ssm::cuda
