// Depthwise causal conv1d on CUDA (math in causal_conv1d.h), channels-last (Bt, L, D).
//
// Layout of the work: a thread owns V adjacent channels (4 channels, one 8- or 16-byte vector load of x
// per time step, when D and the pointers allow, else 2 or 1) over a tile of time steps (kFwdTL forward,
// kTL backward), and keeps the last W-1 inputs (and their document ids) in registers,
// so x is read once plus a W-1 step halo per tile (served by L2: the previous tile belongs to the
// neighbouring thread of the same block or the previous block in launch order). A block is
// (32 channel groups) x (TY time tiles); the grid is (time tiles, channel tiles, Bt). A warp reads 32 V
// contiguous channels of one time step: fully coalesced. The forward loads its whole tile into
// registers before using any step; the backward loads kChunk steps ahead; so several loads per thread
// are in flight. The block's weights and bias come through shared memory (BlockWeights).
//
// Forward:  y_t = act(bias + sum_k w_k xx_{t-(W-1)+k}), taps outside t's document read 0.
// Backward (one pass, no saved activations): the thread walks t = t0 .. t1+W-2, recomputes
//   pre_t and gpre_t = g_t silu'(pre_t) (0 for t >= L), keeps the last W-1 gpre in registers and emits
//   gx_s = sum_k w_k gpre_{s+(W-1)-k} (same document) for s = t-(W-1) once all its terms are known.
//   Tile 0 also emits s = -(W-1)..-1 (grad of x_init). gw_k += gpre_t xx_{t-(W-1)+k}, gbias += gpre_t
//   for t in [t0, t1) in f32 registers; the block adds its TY threads in order through shared memory and
//   writes one partial row per (b, time block); a second kernel adds the rows in order per (k, d).
//   No atomics: results are bit-identical run to run.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <initializer_list>
#include <type_traits>
#include <utility>

#include "kernels/common/cuda_utils.cuh"
#include "kernels/conv1d/causal_conv1d_cuda.h"

namespace ssm::kernels::cuda {
namespace {

constexpr int kThreadsC = 32;  // threads along channels (one warp)
constexpr int kTL = 32;        // backward: time steps per thread
constexpr int kChunk = 4;      // backward: time steps loaded ahead (kTL is a multiple)
constexpr int kFwdTL = 8;      // forward: time steps per thread, all loaded before any is used (the
                               // forward is a pure stream: 8 loads in flight per thread keep HBM busy)
constexpr int kFwdTY = 8;      // time tiles per forward block: 256 threads, 64 time steps
constexpr int kBwdTY = 4;      // time tiles per backward block: 128 threads, 128 time steps
constexpr int kMaxV = 4;  // at most 4 channels per thread (register pressure: the forward holds its 8
                          // loaded steps, w and the x window per channel, the backward w, x and gpre
                          // windows and W+1 accumulators; 8 bf16 channels spill in the forward)
// Blocks per SM asked of the register allocator (65536 registers per SM): <= 168 registers
// per thread for both (4 forward blocks spill in the bf16 W=4 kernel); no spills (ptxas -v).
constexpr int kFwdMinBlocks = 2, kBwdMinBlocks = 3;
static_assert(kTL % kChunk == 0);

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
template <typename T>
__device__ __forceinline__ T from_f(float v);
template <>
__device__ __forceinline__ float from_f<float>(float v) { return v; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16(v); }
template <>
__device__ __forceinline__ __half from_f<__half>(float v) { return __float2half(v); }

// V elements of T moved as one aligned vector.
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

template <typename T, int V>
__device__ __forceinline__ Pack<T, V> load_pack(const T* p) {
  return *reinterpret_cast<const Pack<T, V>*>(p);
}
template <typename T, int V>
__device__ __forceinline__ void unpack(const Pack<T, V>& pk, float (&o)[V]) {
#pragma unroll
  for (int i = 0; i < V; ++i) o[i] = to_f(pk.v[i]);
}
template <typename T, int V>
__device__ __forceinline__ void load_vec(const T* p, float (&o)[V]) {
  unpack(load_pack<T, V>(p), o);
}
template <typename T, int V>
__device__ __forceinline__ Pack<T, V> zero_pack() {
  Pack<T, V> pk;
#pragma unroll
  for (int i = 0; i < V; ++i) pk.v[i] = from_f<T>(0.f);
  return pk;
}
template <typename T, int V>
__device__ __forceinline__ void store_vec(T* p, const float (&o)[V]) {
  Pack<T, V> pk;
#pragma unroll
  for (int i = 0; i < V; ++i) pk.v[i] = from_f<T>(o[i]);
  *reinterpret_cast<Pack<T, V>*>(p) = pk;
}
template <int V>
__device__ __forceinline__ void zero(float (&o)[V]) {
#pragma unroll
  for (int i = 0; i < V; ++i) o[i] = 0.f;
}

__device__ __forceinline__ float sigmoid_f(float p) { return 1.f / (1.f + __expf(-p)); }

template <typename T>
struct Params {
  const T* x;          // (Bt, L, D)
  const float* w;      // (D, W)
  const float* bias;   // (D) or null
  const T* xi;         // x_init (Bt, W-1, D) or null
  const int32_t* seq;  // seq_idx (Bt, L) or null
  const T* gy;         // backward: grad_y (Bt, L, D)
  T* y;                // forward output
  T* gx;               // backward outputs, each may be null
  T* gxi;
  float* part;         // backward partials (Bt * blocks_t, W+1, D) or null
  int64_t L, D;
  bool silu;
};

// The block's weights and bias (its kThreadsC V channels from blockIdx.y) in shared memory, transposed to
// [tap][channel] so a thread reads its V channels of a tap as one vector: (D, W) holds them as one contiguous
// slab, read coalesced by the whole block (read by each thread from global memory, its W V taps at a W V
// float stride are one L1 request per lane). Every thread of the block calls it, before any returns.
template <int W, int V>
struct BlockWeights {
  static constexpr int kCh = kThreadsC * V;
  alignas(16) float w[W][kCh];
  alignas(16) float bias[kCh];

  __device__ __forceinline__ void stage(const float* gw, const float* gbias, int64_t D) {
    const int64_t cb = int64_t(blockIdx.y) * kCh;
    const int n = int(D - cb < kCh ? D - cb : kCh);  // channels of this block present in D
    const int tid = int(threadIdx.y * blockDim.x + threadIdx.x), nthr = int(blockDim.x * blockDim.y);
    for (int e = tid; e < n * W; e += nthr) w[e % W][e / W] = gw[cb * W + e];
    for (int e = tid; e < n; e += nthr) bias[e] = gbias ? gbias[cb + e] : 0.f;
    __syncthreads();
  }
};

// Shared per-thread setup: weights, bias, and the window xx_{t0-(W-1)} .. xx_{t0-1} with document ids
// (negative times read x_init or zeros and belong to the row's first document).
template <typename T, int W, int V>
struct Thread {
  float wr[W][V], br[V];
  float xw[W - 1][V];
  int sw[W - 1];

  __device__ __forceinline__ void setup(const Params<T>& p, const BlockWeights<W, V>& bw, int64_t b, int64_t c0,
                                        int64_t t0) {
    const int cc = int(threadIdx.x) * V;  // this thread's first channel in the block
    using FV = Pack<float, V>;
#pragma unroll
    for (int k = 0; k < W; ++k) {
      const FV wk = *reinterpret_cast<const FV*>(&bw.w[k][cc]);
#pragma unroll
      for (int v = 0; v < V; ++v) wr[k][v] = wk.v[v];
    }
    const FV bv = *reinterpret_cast<const FV*>(&bw.bias[cc]);
#pragma unroll
    for (int v = 0; v < V; ++v) br[v] = bv.v[v];
#pragma unroll
    for (int j = 0; j < W - 1; ++j) {
      const int64_t s = t0 - (W - 1) + j;
      if (s >= 0)
        load_vec<T, V>(p.x + (b * p.L + s) * p.D + c0, xw[j]);
      else if (p.xi)
        load_vec<T, V>(p.xi + (b * (W - 1) + (W - 1 + s)) * p.D + c0, xw[j]);
      else
        zero(xw[j]);
      sw[j] = p.seq ? p.seq[b * p.L + (s > 0 ? s : 0)] : 0;
    }
  }
  // Taps of output time t (document st), masked: xm[k] = xx_{t-(W-1)+k} or 0; xm[W-1] = x_t.
  __device__ __forceinline__ void taps(const float (&xt)[V], int st, float (&xm)[W][V]) const {
#pragma unroll
    for (int k = 0; k < W - 1; ++k) {
      const bool same = sw[k] == st;
#pragma unroll
      for (int v = 0; v < V; ++v) xm[k][v] = same ? xw[k][v] : 0.f;
    }
#pragma unroll
    for (int v = 0; v < V; ++v) xm[W - 1][v] = xt[v];
  }
  __device__ __forceinline__ void pre(const float (&xm)[W][V], float (&o)[V]) const {
#pragma unroll
    for (int v = 0; v < V; ++v) {
      float a = br[v];
#pragma unroll
      for (int k = 0; k < W; ++k) a = fmaf(wr[k][v], xm[k][v], a);
      o[v] = a;
    }
  }
  __device__ __forceinline__ void push(const float (&xt)[V], int st) {
#pragma unroll
    for (int j = 0; j + 1 < W - 1; ++j) {
      sw[j] = sw[j + 1];
#pragma unroll
      for (int v = 0; v < V; ++v) xw[j][v] = xw[j + 1][v];
    }
    sw[W - 2] = st;
#pragma unroll
    for (int v = 0; v < V; ++v) xw[W - 2][v] = xt[v];
  }
};

template <typename T, int W, int V>
__global__ void __launch_bounds__(kThreadsC* kFwdTY, kFwdMinBlocks) conv1d_fwd_kernel(Params<T> p) {
  const int64_t b = blockIdx.z;
  const int64_t c0 = (int64_t(blockIdx.y) * kThreadsC + threadIdx.x) * V;
  const int64_t t0 = (int64_t(blockIdx.x) * kFwdTY + threadIdx.y) * kFwdTL;
  const bool active = c0 < p.D && t0 < p.L;
  const int64_t t1 = !active ? t0 : t0 + kFwdTL < p.L ? t0 + kFwdTL : p.L;
  const T* xb = p.x + b * p.L * p.D + c0;
  T* yb = p.y + b * p.L * p.D + c0;
  const int32_t* sb = p.seq ? p.seq + b * p.L : nullptr;
  Pack<T, V> xc[kFwdTL];  // the tile's raw inputs, converted when used
  int sc[kFwdTL];
#pragma unroll
  for (int i = 0; i < kFwdTL; ++i) {
    const int64_t t = t0 + i;
    sc[i] = 0;
    xc[i] = t < t1 ? load_pack<T, V>(xb + t * p.D) : zero_pack<T, V>();
    if (sb && t < t1) sc[i] = sb[t];
  }
  __shared__ BlockWeights<W, V> bw;  // staged while the tile's loads are in flight
  bw.stage(p.w, p.bias, p.D);
  if (!active) return;
  Thread<T, W, V> th;
  th.setup(p, bw, b, c0, t0);
#pragma unroll
  for (int i = 0; i < kFwdTL; ++i) {
    if (t0 + i < t1) {
      float xt[V], xm[W][V], o[V];
      unpack(xc[i], xt);
      th.taps(xt, sc[i], xm);
      th.pre(xm, o);
      if (p.silu) {
#pragma unroll
        for (int v = 0; v < V; ++v) o[v] = o[v] * sigmoid_f(o[v]);
      }
      store_vec<T, V>(yb + (t0 + i) * p.D, o);
      th.push(xt, sc[i]);
    }
  }
}

template <typename T, int W, int V>
__global__ void __launch_bounds__(kThreadsC* kBwdTY, kBwdMinBlocks) conv1d_bwd_kernel(Params<T> p) {
  __shared__ float red[kBwdTY][kThreadsC * V];
  __shared__ BlockWeights<W, V> bw;
  bw.stage(p.w, p.bias, p.D);
  const int64_t b = blockIdx.z;
  const int64_t c0 = (int64_t(blockIdx.y) * kThreadsC + threadIdx.x) * V;
  const int64_t t0 = (int64_t(blockIdx.x) * kBwdTY + threadIdx.y) * kTL;
  const bool active = c0 < p.D && t0 < p.L;
  float accw[W + 1][V];  // gw taps 0..W-1, then gbias
#pragma unroll
  for (int k = 0; k <= W; ++k) zero(accw[k]);
  if (active) {
    const int64_t L = p.L, D = p.D;
    const int64_t t1 = t0 + kTL < L ? t0 + kTL : L;
    const int64_t t_last = t1 + (W - 2);                          // last step: finishes gx_{t1-1}
    const int64_t s_begin = (t0 == 0 && p.gxi) ? -(W - 1) : t0;  // first gx row this thread writes
    Thread<T, W, V> th;
    th.setup(p, bw, b, c0, t0);
    float gw_win[W - 1][V];  // gpre_{t-(W-1)} .. gpre_{t-1} (0 before t0: never needed for our rows)
#pragma unroll
    for (int j = 0; j < W - 1; ++j) zero(gw_win[j]);
    const T* xb = p.x + b * L * D + c0;
    const T* gb = p.gy + b * L * D + c0;
    const int32_t* sb = p.seq ? p.seq + b * L : nullptr;
    for (int64_t tc = t0; tc <= t_last; tc += kChunk) {
      Pack<T, V> xc[kChunk], gc[kChunk];  // raw inputs of the chunk, converted when used
      int sc[kChunk];
#pragma unroll
      for (int i = 0; i < kChunk; ++i) {
        const int64_t t = tc + i;
        const bool in = t <= t_last && t < L;
        sc[i] = sb && in ? sb[t] : 0;  // times >= L: gpre is 0, so their document id is never used
        xc[i] = in ? load_pack<T, V>(xb + t * D) : zero_pack<T, V>();
        gc[i] = in ? load_pack<T, V>(gb + t * D) : zero_pack<T, V>();
      }
#pragma unroll
      for (int i = 0; i < kChunk; ++i) {
        const int64_t t = tc + i;
        if (t > t_last) break;
        float xt[V], gt[V], xm[W][V], gp[V];
        unpack(xc[i], xt);
        unpack(gc[i], gt);
        th.taps(xt, sc[i], xm);
        if (p.silu) {
          float pr[V];
          th.pre(xm, pr);
#pragma unroll
          for (int v = 0; v < V; ++v) {
            const float s = sigmoid_f(pr[v]);
            gp[v] = gt[v] * s * (1.f + pr[v] * (1.f - s));
          }
        } else {
#pragma unroll
          for (int v = 0; v < V; ++v) gp[v] = gt[v];
        }
        if (t < t1) {
#pragma unroll
          for (int v = 0; v < V; ++v) {
#pragma unroll
            for (int k = 0; k < W; ++k) accw[k][v] = fmaf(gp[v], xm[k][v], accw[k][v]);
            accw[W][v] += gp[v];
          }
        }
        // gx_s, s = t-(W-1): tap k pairs s with output t-k; th.sw[0] is s's document, th.sw[W-1-k]
        // (k >= 1) or sc[i] (k = 0) the output's.
        const int64_t s = t - (W - 1);
        if (s >= s_begin && s < t1) {
          float o[V];
          const int ds = th.sw[0];
          const bool same0 = ds == sc[i];
#pragma unroll
          for (int v = 0; v < V; ++v) o[v] = same0 ? th.wr[0][v] * gp[v] : 0.f;
#pragma unroll
          for (int k = 1; k < W; ++k) {
            const bool same = ds == th.sw[W - 1 - k];
#pragma unroll
            for (int v = 0; v < V; ++v)
              if (same) o[v] = fmaf(th.wr[k][v], gw_win[W - 1 - k][v], o[v]);
          }
          if (s >= 0) {
            if (p.gx) store_vec<T, V>(p.gx + (b * L + s) * D + c0, o);
          } else {
            store_vec<T, V>(p.gxi + (b * (W - 1) + (W - 1 + s)) * D + c0, o);
          }
        }
        th.push(xt, sc[i]);
#pragma unroll
        for (int j = 0; j + 1 < W - 1; ++j)
#pragma unroll
          for (int v = 0; v < V; ++v) gw_win[j][v] = gw_win[j + 1][v];
#pragma unroll
        for (int v = 0; v < V; ++v) gw_win[W - 2][v] = gp[v];
      }
    }
  }
  if (!p.part) return;  // uniform over the grid
  // Block partial of gw / gbias: threads of one channel group added in threadIdx.y order.
  const int64_t row = b * gridDim.x + blockIdx.x;
#pragma unroll
  for (int k = 0; k <= W; ++k) {
#pragma unroll
    for (int v = 0; v < V; ++v) red[threadIdx.y][threadIdx.x * V + v] = accw[k][v];
    __syncthreads();
    if (threadIdx.y == 0 && c0 < p.D) {
#pragma unroll
      for (int v = 0; v < V; ++v) {
        float s = 0.f;
        for (int y = 0; y < kBwdTY; ++y) s += red[y][threadIdx.x * V + v];
        p.part[(row * (W + 1) + k) * p.D + c0 + v] = s;
      }
    }
    __syncthreads();
  }
}

// gw[d, k] = sum_r part[r, k, d] (k < W), gbias[d] = sum_r part[r, W, d]. Block (32, kFinalTY): column
// i = k * D + d per threadIdx.x; thread y adds rows y, y + kFinalTY, ... in order, then thread 0 adds
// the kFinalTY sums in order (fixed order: deterministic; kFinalTY-way parallel over the rows).
constexpr int kFinalTY = 16;
__global__ void __launch_bounds__(32 * kFinalTY) conv1d_wb_final(const float* __restrict__ part, int64_t rows,
                                                                 int64_t D, int W, float* __restrict__ gw,
                                                                 float* __restrict__ gbias) {
  __shared__ float red[kFinalTY][33];
  const int64_t n = int64_t(W + 1) * D;
  const int64_t i = int64_t(blockIdx.x) * 32 + threadIdx.x;
  float s = 0.f;
  if (i < n)
    for (int64_t r = threadIdx.y; r < rows; r += kFinalTY) s += part[r * n + i];
  red[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y != 0 || i >= n) return;
  float t = 0.f;
  for (int y = 0; y < kFinalTY; ++y) t += red[y][threadIdx.x];
  const int64_t k = i / D, d = i % D;
  if (k < W) {
    if (gw) gw[d * W + k] = t;
  } else if (gbias) {
    gbias[d] = t;
  }
}

// Widest vector (elements, at most max_v) that divides D and keeps every pointer aligned.
int pick_vec(int64_t D, size_t elem, int max_v, std::initializer_list<const void*> ptrs) {
  int V = max_v;
  for (; V > 1; V /= 2) {
    bool ok = D % V == 0;
    for (const void* q : ptrs)
      if (q && reinterpret_cast<uintptr_t>(q) % (size_t(V) * elem) != 0) ok = false;
    if (ok) break;
  }
  return V;
}

// Calls f(integral_constant<W>, integral_constant<V>) for the runtime W (2..4) and V (1, 2, 4).
template <typename F>
void dispatch_wv(int W, int V, F&& f) {
  static_assert(kMaxV == 4);
  auto with_w = [&](auto wc) {
    switch (V) {
      case 1: return f(wc, std::integral_constant<int, 1>());
      case 2: return f(wc, std::integral_constant<int, 2>());
      case 4: return f(wc, std::integral_constant<int, 4>());
      default: break;
    }
    SSM_CHECK(false, "causal_conv1d: no kernel for vector width ", V);
  };
  switch (W) {
    case 2: return with_w(std::integral_constant<int, 2>());
    case 3: return with_w(std::integral_constant<int, 3>());
    case 4: return with_w(std::integral_constant<int, 4>());
    default: SSM_CHECK(false, "causal_conv1d: no kernel for width ", W);
  }
}

template <typename Fn>
void dispatch_dtype(DType t, Fn&& fn) {
  if (t == DType::f32) return fn(float());
  if (t == DType::bf16) return fn(__nv_bfloat16());
  if (t == DType::f16) return fn(__half());
  SSM_CHECK(false, "causal_conv1d: no CUDA kernel for dtype ", dtype_name(t));
}

template <typename T>
const T* cptr(const Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.data_ptr()) : nullptr;
}
template <typename T>
T* mptr(Tensor* t) {
  return t ? static_cast<T*>(t->data_ptr()) : nullptr;
}

dim3 grid_for(int64_t Bt, int64_t L, int64_t D, int V, int64_t block_steps) {
  const int64_t nt = (L + block_steps - 1) / block_steps;
  const int64_t nc = (D + int64_t(kThreadsC) * V - 1) / (int64_t(kThreadsC) * V);
  SSM_CHECK_INPUT(Bt <= 65535 && nc <= 65535 && nt <= 0x7fffffff, "causal_conv1d: shape (Bt, L, D) = (", Bt,
                  ", ", L, ", ", D, ") exceeds the CUDA grid (Bt <= 65535, D <= ", 65535 * kThreadsC * V, ")");
  return dim3(unsigned(nt), unsigned(nc), unsigned(Bt));
}

}  // namespace

void causal_conv1d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& x_init,
                           const Tensor& seq_idx, bool silu, Tensor& y) {
  const int64_t Bt = x.size(0), L = x.size(1), D = x.size(2);
  const int W = int(w.size(1));
  if (x.numel() == 0) return;
  dispatch_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    Params<T> p{};
    p.x = cptr<T>(x);
    p.w = w.data<float>();
    p.bias = bias.defined() ? bias.data<float>() : nullptr;
    p.xi = cptr<T>(x_init);
    p.seq = seq_idx.defined() ? seq_idx.data<int32_t>() : nullptr;
    p.y = static_cast<T*>(y.data_ptr());
    p.L = L;
    p.D = D;
    p.silu = silu;
    const int V = pick_vec(D, sizeof(T), kMaxV, {p.x, p.xi, p.y});
    const dim3 grid = grid_for(Bt, L, D, V, kFwdTL * kFwdTY), block(kThreadsC, kFwdTY);
    dispatch_wv(W, V, [&](auto wc, auto vc) {
      conv1d_fwd_kernel<T, decltype(wc)::value, decltype(vc)::value><<<grid, block, 0, stream()>>>(p);
      SSM_CUDA_LAUNCH_CHECK();
    });
  });
}

void causal_conv1d_backward(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& x_init,
                            const Tensor& seq_idx, const Tensor& grad_y, bool silu, Tensor* grad_x,
                            Tensor* grad_x_init, Tensor* grad_w, Tensor* grad_bias) {
  const int64_t Bt = x.size(0), L = x.size(1), D = x.size(2);
  const int W = int(w.size(1));
  if (x.numel() == 0) return;
  dispatch_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    Params<T> p{};
    p.x = cptr<T>(x);
    p.w = w.data<float>();
    p.bias = bias.defined() ? bias.data<float>() : nullptr;
    p.xi = cptr<T>(x_init);
    p.seq = seq_idx.defined() ? seq_idx.data<int32_t>() : nullptr;
    p.gy = cptr<T>(grad_y);
    p.gx = mptr<T>(grad_x);
    p.gxi = mptr<T>(grad_x_init);
    p.L = L;
    p.D = D;
    p.silu = silu;
    const int V = pick_vec(D, sizeof(T), kMaxV, {p.x, p.xi, p.gy, p.gx, p.gxi});
    const dim3 grid = grid_for(Bt, L, D, V, kTL * kBwdTY), block(kThreadsC, kBwdTY);
    const int64_t rows = Bt * int64_t(grid.x);
    Tensor part;
    if (grad_w || grad_bias) {
      part = Tensor::empty({rows, W + 1, D}, DType::f32, x.device());
      p.part = part.data<float>();
    }
    dispatch_wv(W, V, [&](auto wc, auto vc) {
      conv1d_bwd_kernel<T, decltype(wc)::value, decltype(vc)::value><<<grid, block, 0, stream()>>>(p);
      SSM_CUDA_LAUNCH_CHECK();
    });
    if (p.part) {
      const int64_t n = int64_t(W + 1) * D;
      conv1d_wb_final<<<blocks_for(n, 32), dim3(32, kFinalTY), 0, stream()>>>(p.part, rows, D, W,
                                                                                mptr<float>(grad_w),
                                                                                mptr<float>(grad_bias));
      SSM_CUDA_LAUNCH_CHECK();
    }
  });
}

}  // namespace ssm::kernels::cuda
