// Depthwise causal conv1d on CUDA (math in causal_conv1d.h), channels-last (Bt, L, D).
//
// Layout of the work: a thread owns V adjacent channels (4 channels, one 8- or 16-byte vector load of x
// per time step, when D and the pointers allow, else 2 or 1) over a run of time steps (forward: a segment
// of 16-64 steps, one per warp; backward: a tile of kTL), and keeps the last W-1 inputs in registers, so x is
// read once plus a W-1 step halo per segment / tile (served by L2: the steps before belong to the
// neighbouring warp of the same block or the previous block in launch order). A block is (32 channel groups)
// x (TY segments / tiles); the grid is (time blocks, channel tiles, Bt). A warp reads 32 V contiguous
// channels of one time step: fully coalesced. The block's weights and bias come through shared memory
// (BlockWeights).
//
// Forward (a pure stream: it runs at HBM speed only if loads are in flight at every moment): the thread walks
// its segment in chunks of kFwdTL steps through a ring of kFwdTL raw vectors (Words): step t's slot is
// refilled with step t+kFwdTL as soon as t is converted, so kFwdTL loads are always in flight, and each
// chunk's document ids (one per lane, compared through warp shuffles into one bit mask) are loaded a chunk
// ahead. The window before the segment is loaded with the first chunk, before the weights are staged, so
// a single memory round trip (and one barrier) precedes the first output.
//   y_t = act(bias + sum_k w_k xx_{t-(W-1)+k}), taps outside t's document read 0.
// Backward (one pass, no saved activations; x and grad y through a ring of kChunk raw steps, as the forward,
//   the window and the first steps loaded before the weights are staged): the thread walks t = t0 .. t1+W-2,
//   recomputes pre_t and gpre_t = g_t silu'(pre_t) (0 for t >= L), keeps the last W-1 gpre in registers and emits
//   gx_s = sum_k w_k gpre_{s+(W-1)-k} (same document) for s = t-(W-1) once all its terms are known.
//   Tile 0 also emits s = -(W-1)..-1 (grad of x_init). gw_k += gpre_t xx_{t-(W-1)+k}, gbias += gpre_t
//   for t in [t0, t1) in f32 registers; the block adds its TY threads in order through shared memory and
//   writes one partial row per (b, time block); a second kernel adds the rows in order per (k, d).
//   No atomics: results are bit-identical run to run.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <type_traits>
#include <utility>

#include "kernels/common/cuda_utils.cuh"
#include "kernels/conv1d/causal_conv1d_cuda.h"

namespace ssm::kernels::cuda {
namespace {

constexpr int kThreadsC = 32;  // threads along channels (one warp)
constexpr int kTL = 32;        // backward: time steps per thread
constexpr int kChunk = 4;      // backward: steps in flight (the ring; kTL is a multiple; 8 spills at 168 registers)
constexpr int kFwdTL = 8;      // forward: steps per chunk = loads in flight per thread (the ring of raw steps)
// forward: steps per thread (its segment; the W-1 steps before it are read twice) are chosen per call, 16 to 64
// (fwd_steps below)
constexpr int kFwdTY = 4;      // segments per forward block: 128 threads, 256 time steps
constexpr int kBwdTY = 4;      // time tiles per backward block: 128 threads, 128 time steps
constexpr int kMaxV = 4;  // at most 4 channels per thread (register pressure: the forward holds its ring
                          // of kFwdTL steps, w and the x window per channel, the backward w, x and gpre
                          // windows and W+1 accumulators)
// Blocks per SM asked of the register allocator (65536 registers per SM; no spills: ptxas -v, as
// scripts/sass_loops.py prints it): forward 6 (<= 80 registers a thread, 24 warps per SM) where a step is at
// most 8 bytes a thread, 4 for 16 (f32 x 4: its ring alone is 32 registers; <= 128, 16 warps, as many
// bytes in flight); backward 3 (<= 168).
template <typename T, int V>
constexpr int kFwdMinBlocks = sizeof(T) * V > 8 ? 4 : 6;
constexpr int kBwdMinBlocks = 3;
static_assert(kTL % kChunk == 0);

// V floats moved as one aligned vector (the staged weights).
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

template <int V>
__device__ __forceinline__ void zero(float (&o)[V]) {
#pragma unroll
  for (int i = 0; i < V; ++i) o[i] = 0.f;
}

// A value of T from its bits (the low 16 for bf16 / f16) and back.
template <typename T>
__device__ __forceinline__ float f_of_bits(uint32_t b);
template <>
__device__ __forceinline__ float f_of_bits<float>(uint32_t b) { return __uint_as_float(b); }
template <>
__device__ __forceinline__ float f_of_bits<__nv_bfloat16>(uint32_t b) { return __uint_as_float(b << 16); }
template <>
__device__ __forceinline__ float f_of_bits<__half>(uint32_t b) {
  return __half2float(__ushort_as_half((unsigned short)b));
}
template <typename T>
__device__ __forceinline__ uint32_t bits_of_f(float v);
template <>
__device__ __forceinline__ uint32_t bits_of_f<float>(float v) { return __float_as_uint(v); }
template <>
__device__ __forceinline__ uint32_t bits_of_f<__nv_bfloat16>(float v) {
  return __bfloat16_as_ushort(__float2bfloat16(v));
}
template <>
__device__ __forceinline__ uint32_t bits_of_f<__half>(float v) { return __half_as_ushort(__float2half(v)); }

// V values of T as raw 32-bit words (16-bit values two to a word; a single one alone), moved with one vector
// load or store: what the forward keeps in flight and stores. A Pack of 16-bit values takes a register per
// value, and a Pack written value by value is stored by the compiler as V scalar stores.
template <typename T, int V>
struct Words {
  static constexpr int kBytes = int(sizeof(T)) * V, kN = kBytes < 4 ? 1 : kBytes / 4;
  uint32_t w[kN];

  __device__ __forceinline__ void load(const T* p) {
    if constexpr (kBytes == 2) {
      w[0] = *reinterpret_cast<const unsigned short*>(p);
    } else if constexpr (kBytes == 4) {
      w[0] = *reinterpret_cast<const uint32_t*>(p);
    } else if constexpr (kBytes == 8) {
      const uint2 u = *reinterpret_cast<const uint2*>(p);
      w[0] = u.x, w[1] = u.y;
    } else {
      static_assert(kBytes == 16);
      const uint4 u = *reinterpret_cast<const uint4*>(p);
      w[0] = u.x, w[1] = u.y, w[2] = u.z, w[3] = u.w;
    }
  }
  __device__ __forceinline__ void store(T* p) const {
    if constexpr (kBytes == 2) {
      *reinterpret_cast<unsigned short*>(p) = (unsigned short)w[0];
    } else if constexpr (kBytes == 4) {
      *reinterpret_cast<uint32_t*>(p) = w[0];
    } else if constexpr (kBytes == 8) {
      *reinterpret_cast<uint2*>(p) = make_uint2(w[0], w[1]);
    } else {
      *reinterpret_cast<uint4*>(p) = make_uint4(w[0], w[1], w[2], w[3]);
    }
  }
  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int i = 0; i < kN; ++i) w[i] = 0;  // +0 in every type
  }
  __device__ __forceinline__ void to_float(float (&o)[V]) const {
    if constexpr (sizeof(T) == 4 || V == 1) {
#pragma unroll
      for (int i = 0; i < V; ++i) o[i] = f_of_bits<T>(w[i]);
    } else {
#pragma unroll
      for (int i = 0; i < kN; ++i) {
        o[2 * i] = f_of_bits<T>(w[i] & 0xffffu);
        o[2 * i + 1] = f_of_bits<T>(w[i] >> 16);
      }
    }
  }
  __device__ __forceinline__ void from_float(const float (&o)[V]) {
    if constexpr (sizeof(T) == 4 || V == 1) {
#pragma unroll
      for (int i = 0; i < V; ++i) w[i] = bits_of_f<T>(o[i]);
    } else {
#pragma unroll
      for (int i = 0; i < kN; ++i) w[i] = bits_of_f<T>(o[2 * i]) | bits_of_f<T>(o[2 * i + 1]) << 16;
    }
  }
};

// sigmoid(p) = 1 / (1 + 2^(-p log2 e)), the division by MUFU.RCP (__fdividef: 2 ulp; 1 / inf = 0) where the IEEE
// division takes a dozen instructions and a branch to a slow path.
__device__ __forceinline__ float sigmoid_fast(float p) {
  return __fdividef(1.f, 1.f + ex2(-1.4426950408889634f * p));
}

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
  int fwd_steps;       // forward: steps a warp walks, a multiple of kFwdTL
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

// The window before time t0 as loaded: raw xx_{t0-(W-1)} .. xx_{t0-1} (negative times read x_init or zeros)
// and, with ids, their document ids (negative times belong to the row's first document).
template <typename T, int W, int V>
struct Halo {
  Words<T, V> x[W - 1];
  int s[W - 1];

  __device__ __forceinline__ void load(const Params<T>& p, int64_t b, int64_t c0, int64_t t0, bool ids) {
#pragma unroll
    for (int j = 0; j < W - 1; ++j) {
      const int64_t t = t0 - (W - 1) + j;
      if (t >= 0)
        x[j].load(p.x + (b * p.L + t) * p.D + c0);
      else if (p.xi)
        x[j].load(p.xi + (b * (W - 1) + (W - 1 + t)) * p.D + c0);
      else
        x[j].zero();
      s[j] = ids && p.seq ? p.seq[b * p.L + (t > 0 ? t : 0)] : 0;
    }
  }
};

// Shared per-thread state: weights, bias, and the window xx_{t-(W-1)} .. xx_{t-1} with document ids. Both
// kernels load the window (Halo) before the weights are staged, then take weights() and window().
template <typename T, int W, int V>
struct Thread {
  float wr[W][V], br[V];
  float xw[W - 1][V];
  int sw[W - 1];

  __device__ __forceinline__ void weights(const BlockWeights<W, V>& bw) {
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
  }
  __device__ __forceinline__ void window(const Halo<T, W, V>& h) {
#pragma unroll
    for (int j = 0; j < W - 1; ++j) {
      h.x[j].to_float(xw[j]);
      sw[j] = h.s[j];
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

// Forward SiLU: y = p sigmoid(p) = p / (1 + 2^(-p log2 e)), the division by MUFU.RCP (__fdividef: 2 ulp;
// 2^-p = inf gives -0): 5 instructions an element, where sigmoid_f's IEEE division takes a dozen and a branch.
__device__ __forceinline__ float silu_f(float p) { return __fdividef(p, 1.f + ex2(-1.4426950408889634f * p)); }

// Document mask of a chunk j .. j+kFwdTL-1 (times relative to the segment's start t0; n steps in the
// segment): lane l holds the document of time j-(W-1)+l (doc_id; clamped to [lo, n-1]: times before the
// row belong to its first document, lo = -t0 (only chunk 0 of a row's first segment reaches back that far);
// times from t1 on are never stored). Tap k of step i (time j+i-(W-1)+k, lane i+k) counts iff it is in
// step i's document (lane i+W-1): lane i (W-1) + k compares the two and the ballot holds the answer in bit
// i (W-1) + k, all the chunk's taps in one register. Without seq_idx every id is 0 and every bit set. The
// whole warp calls doc_mask.
template <int W>
__device__ __forceinline__ int doc_id(const int32_t* ss, int j, int lo, int n) {
  if (!ss) return 0;
  const int r = j - (W - 1) + int(threadIdx.x);
  return ss[r < lo ? lo : r < n ? r : n - 1];
}
template <int W>
__device__ __forceinline__ uint32_t doc_mask(int id) {
  static_assert(kFwdTL * (W - 1) <= 32 && kFwdTL + W - 1 <= 32);  // lanes of the taps, of the ids
  const int lane = int(threadIdx.x), i = lane / (W - 1), k = lane - i * (W - 1);
  const int tap = __shfl_sync(0xffffffffu, id, i + k), own = __shfl_sync(0xffffffffu, id, (i + W - 1) & 31);
  return __ballot_sync(0xffffffffu, tap == own);
}

// The warp's segment [t0, t0+n) (n <= p.fwd_steps), V channels a lane, chunk by chunk. x goes through a ring
// of kFwdTL raw steps: the slot of step t is refilled with step t+kFwdTL once t is converted, so kFwdTL loads
// are in flight at every step, and the next chunk's document ids during the whole chunk. y_t = act(bias +
// sum_k [tap k in t's document] w_k xx_{t-(W-1)+k}), the window xx_{t-(W-1)} .. xx_{t-1} carried in
// registers (Thread; converted floats, so the W-1 steps before the segment are the only ones read twice).
// Lanes past D run along (the warp's shuffles) on channel 0's data and store nothing. D < 2^32 (grid_for).
template <typename T, int W, int V>
__global__ void __launch_bounds__(kThreadsC* kFwdTY, (kFwdMinBlocks<T, V>)) conv1d_fwd_kernel(Params<T> p) {
  __shared__ BlockWeights<W, V> bw;
  const int64_t b = blockIdx.z, L = p.L;
  const uint32_t D = uint32_t(p.D);
  const uint32_t c = (blockIdx.y * kThreadsC + threadIdx.x) * V;
  const bool cin = c < D;
  const uint32_t c0 = cin ? c : 0;
  const int64_t t0 = (int64_t(blockIdx.x) * kFwdTY + threadIdx.y) * p.fwd_steps;  // the warp's segment
  const bool live = t0 < L;  // uniform over the warp; a warp past L only helps stage the weights
  const int n = !live ? 0 : int(L - t0 < p.fwd_steps ? L - t0 : p.fwd_steps);
  const int64_t e = (b * L + (live ? t0 : 0)) * D + c0;              // x_{t0} = p.x[e], y_{t0} = p.y[e]
  const int32_t* ss = p.seq && live ? p.seq + b * L + t0 : nullptr;  // seq_{t0}
  // The next step to load walks the row a step at a time; the step stored then, kFwdTL earlier, sits at a
  // fixed byte distance from it (p.x, p.y and D are uniform: no registers of the thread's own).
  const T* xq = p.x + e;
  const int64_t dy = (reinterpret_cast<const char*>(p.y) - reinterpret_cast<const char*>(p.x)) -
                     int64_t(kFwdTL) * D * int64_t(sizeof(T));
  // One round trip before the first output: the window and chunk 0 are in flight while the weights are staged.
  Halo<T, W, V> h{};  // (zeroed: read only when live, which the host compiler of tests/emu cannot see)
  if (live) h.load(p, b, c0, t0, false);
  Words<T, V> ring[kFwdTL];  // raw x_{j+i} (stale past the segment's end: never stored), converted when used
#pragma unroll
  for (int i = 0; i < kFwdTL; ++i) {
    ring[i].zero();
    if (i < n) ring[i].load(xq);
    xq += D;
  }
  int id = live ? doc_id<W>(ss, 0, t0 < W - 1 ? -int(t0) : 1 - W, n) : 0;
  bw.stage(p.w, p.bias, D);  // every thread of the block, at one barrier
  if (!live) return;
  Thread<T, W, V> th;
  th.weights(bw);
  th.window(h);
#pragma unroll 1
  for (int j = 0; j < n; j += kFwdTL) {
    const uint32_t same = doc_mask<W>(id);
    id = doc_id<W>(ss, j + kFwdTL, 0, n);  // the next chunk's (times >= kFwdTL-(W-1) > 0), in flight meanwhile
#pragma unroll
    for (int i = 0; i < kFwdTL; ++i) {
      float xt[V], o[V];
      ring[i].to_float(xt);
      ring[i].zero();
      if (j + kFwdTL + i < n) ring[i].load(xq);
#pragma unroll
      for (int v = 0; v < V; ++v) o[v] = fmaf(th.wr[W - 1][v], xt[v], th.br[v]);
#pragma unroll
      for (int k = 0; k < W - 1; ++k) {
        if (same >> (i * (W - 1) + k) & 1u) {
#pragma unroll
          for (int v = 0; v < V; ++v) o[v] = fmaf(th.wr[k][v], th.xw[k][v], o[v]);
        }
      }
      if (p.silu) {
#pragma unroll
        for (int v = 0; v < V; ++v) o[v] = silu_f(o[v]);
      }
      if (cin && j + i < n) {
        Words<T, V> out;
        out.from_float(o);
        out.store(reinterpret_cast<T*>(const_cast<char*>(reinterpret_cast<const char*>(xq)) + dy));
      }
      xq += D;
      th.push(xt, 0);
    }
  }
}

template <typename T, int W, int V>
__global__ void __launch_bounds__(kThreadsC* kBwdTY, kBwdMinBlocks) conv1d_bwd_kernel(Params<T> p) {
  __shared__ float red[kBwdTY][kThreadsC * V];
  __shared__ BlockWeights<W, V> bw;
  const int64_t b = blockIdx.z, L = p.L, D = p.D;
  const int64_t c0 = (int64_t(blockIdx.y) * kThreadsC + threadIdx.x) * V;
  const int64_t t0 = (int64_t(blockIdx.x) * kBwdTY + threadIdx.y) * kTL;
  const bool active = c0 < D && t0 < L;
  const int64_t t1 = !active ? t0 : t0 + kTL < L ? t0 + kTL : L;
  const int64_t t_last = t1 + (W - 2);  // last step: finishes gx_{t1-1}
  const T* xb = p.x + b * L * D + c0;
  const T* gb = p.gy + b * L * D + c0;
  const int32_t* sb = p.seq ? p.seq + b * L : nullptr;
  // The ring of raw steps: slot i holds step t0 + i + kChunk j; refilled with the step kChunk later as soon as
  // it is converted (kChunk steps of x and grad y in flight at every step). Times >= L (or past t_last) read 0;
  // their gpre is 0, so their document id is never used.
  Words<T, V> xc[kChunk], gc[kChunk];
  int sc[kChunk];
  const auto fetch = [&](int i, int64_t t) {
    xc[i].zero();
    gc[i].zero();
    sc[i] = 0;
    if (active && t <= t_last && t < L) {
      if (sb) sc[i] = sb[t];
      xc[i].load(xb + t * D);
      gc[i].load(gb + t * D);
    }
  };
  // One round trip before the first step: the window and the first kChunk steps are in flight while the
  // weights are staged.
  Halo<T, W, V> h{};  // (zeroed: read only when active, which the host compiler of tests/emu cannot see)
  if (active) h.load(p, b, c0, t0, true);
#pragma unroll
  for (int i = 0; i < kChunk; ++i) fetch(i, t0 + i);
  bw.stage(p.w, p.bias, D);
  float accw[W + 1][V];  // gw taps 0..W-1, then gbias
#pragma unroll
  for (int k = 0; k <= W; ++k) zero(accw[k]);
  if (active) {
    const int64_t s_begin = (t0 == 0 && p.gxi) ? -(W - 1) : t0;  // first gx row this thread writes
    Thread<T, W, V> th;
    th.weights(bw);
    th.window(h);
    float gw_win[W - 1][V];  // gpre_{t-(W-1)} .. gpre_{t-1} (0 before t0: never needed for our rows)
#pragma unroll
    for (int j = 0; j < W - 1; ++j) zero(gw_win[j]);
    // One step t of the walk. FAST: a chunk inside the tile without document ids, where every check holds: its
    // steps are below t1 (<= L), their refills too, and each emits its gx_s (s >= s_begin); no step masks a tap.
    const auto step = [&](auto fast, int i, int64_t t) {
      constexpr bool kFast = decltype(fast)::value;
      float xt[V], gt[V], xm[W][V], gp[V];
      xc[i].to_float(xt);
      gc[i].to_float(gt);
      const int st = sc[i];
      if constexpr (kFast) {
        xc[i].load(xb + (t + kChunk) * D);
        gc[i].load(gb + (t + kChunk) * D);
#pragma unroll
        for (int k = 0; k < W - 1; ++k)
#pragma unroll
          for (int v = 0; v < V; ++v) xm[k][v] = th.xw[k][v];
#pragma unroll
        for (int v = 0; v < V; ++v) xm[W - 1][v] = xt[v];
      } else {
        fetch(i, t + kChunk);
        th.taps(xt, st, xm);
      }
      if (p.silu) {
        float pr[V];
        th.pre(xm, pr);
#pragma unroll
        for (int v = 0; v < V; ++v) {
          const float sg = sigmoid_fast(pr[v]);
          gp[v] = gt[v] * sg * (1.f + pr[v] * (1.f - sg));
        }
      } else {
#pragma unroll
        for (int v = 0; v < V; ++v) gp[v] = gt[v];
      }
      if (kFast || t < t1) {
#pragma unroll
        for (int v = 0; v < V; ++v) {
#pragma unroll
          for (int k = 0; k < W; ++k) accw[k][v] = fmaf(gp[v], xm[k][v], accw[k][v]);
          accw[W][v] += gp[v];
        }
      }
      // gx_s, s = t-(W-1): tap k pairs s with output t-k; th.sw[0] is s's document, th.sw[W-1-k]
      // (k >= 1) or st (k = 0) the output's.
      const int64_t s = t - (W - 1);
      if (kFast || (s >= s_begin && s < t1)) {
        float o[V];
        if constexpr (kFast) {
#pragma unroll
          for (int v = 0; v < V; ++v) o[v] = th.wr[0][v] * gp[v];
#pragma unroll
          for (int k = 1; k < W; ++k)
#pragma unroll
            for (int v = 0; v < V; ++v) o[v] = fmaf(th.wr[k][v], gw_win[W - 1 - k][v], o[v]);
        } else {
          const int ds = th.sw[0];
          const bool same0 = ds == st;
#pragma unroll
          for (int v = 0; v < V; ++v) o[v] = same0 ? th.wr[0][v] * gp[v] : 0.f;
#pragma unroll
          for (int k = 1; k < W; ++k) {
            const bool same = ds == th.sw[W - 1 - k];
#pragma unroll
            for (int v = 0; v < V; ++v)
              if (same) o[v] = fmaf(th.wr[k][v], gw_win[W - 1 - k][v], o[v]);
          }
        }
        // One store site (two, for gx and gx_init, compiled to 2 scalar stores each instead of one vector).
        T* dst = s >= 0 ? (p.gx ? p.gx + (b * L + s) * D + c0 : nullptr)
                        : p.gxi + (b * (W - 1) + (W - 1 + s)) * D + c0;
        if (dst) {
          Words<T, V> out;
          out.from_float(o);
          out.store(dst);
        }
      }
      th.push(xt, st);
#pragma unroll
      for (int j = 0; j + 1 < W - 1; ++j)
#pragma unroll
        for (int v = 0; v < V; ++v) gw_win[j][v] = gw_win[j + 1][v];
#pragma unroll
      for (int v = 0; v < V; ++v) gw_win[W - 2][v] = gp[v];
    };
    for (int64_t tc = t0; tc <= t_last; tc += kChunk) {
      if (!sb && tc - (W - 1) >= s_begin && tc + 2 * kChunk <= t1) {  // uniform over the warp
#pragma unroll
        for (int i = 0; i < kChunk; ++i) step(std::true_type(), i, tc + i);
      } else {
#pragma unroll
        for (int i = 0; i < kChunk; ++i) {
          if (tc + i > t_last) break;
          step(std::false_type(), i, tc + i);
        }
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

// Steps a warp walks in the forward: the longest of 64 and 32 whose grid is one wave (every block resident at
// once), else 16, so a second wave is never a long one, part full. Measured on an H100 (bench/RESULTS.md,
// 2026-12-07): (8, 2048, 2048) is 1024 blocks at 64, 1.29 waves, 0.057 ms; at 16, 5.2 waves, 0.051; the 130M
// LM's (8, 2048, 1536) is 768 blocks at 64, one wave, and its step 0.4 % faster than at 16. Env
// SSM_CONV_FWD_STEPS (a multiple of 8) overrides the choice (tests).
template <typename K>
int fwd_steps(K kernel, int64_t Bt, int64_t L, int64_t D, int V) {
  if (const char* e = std::getenv("SSM_CONV_FWD_STEPS"); e && *e) {
    const int v = std::atoi(e);
    SSM_CHECK_INPUT(v > 0 && v % kFwdTL == 0, "causal_conv1d: SSM_CONV_FWD_STEPS=", e,
                    " is not a positive multiple of ", kFwdTL);
    return v;
  }
  int resident = 0;
  SSM_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&resident, kernel, kThreadsC * kFwdTY, 0));
  const int64_t slots = int64_t(std::max(1, resident)) * ::ssm::cuda::sm_count();
  const int64_t nc = (D + int64_t(kThreadsC) * V - 1) / (int64_t(kThreadsC) * V);
  for (int steps : {64, 32}) {
    const int64_t nt = (L + int64_t(steps) * kFwdTY - 1) / (int64_t(steps) * kFwdTY);
    if (nt * nc * Bt <= slots) return steps;
  }
  return 16;
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
    dispatch_wv(W, V, [&](auto wc, auto vc) {
      const auto kernel = conv1d_fwd_kernel<T, decltype(wc)::value, decltype(vc)::value>;
      p.fwd_steps = fwd_steps(kernel, Bt, L, D, V);
      const dim3 grid = grid_for(Bt, L, D, V, int64_t(p.fwd_steps) * kFwdTY), block(kThreadsC, kFwdTY);
      kernel<<<grid, block, 0, stream()>>>(p);
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
