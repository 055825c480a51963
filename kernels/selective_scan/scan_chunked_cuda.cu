// Selective scan on CUDA, chunked in time inside a block: forward, two backward kernels (chunk_bwd_kernel, and
// seq_bwd_kernel at N <= 16: see its comment), and the checkpoint pass of
// selective_scan_cuda.cu's backward (math in selective_scan.h). selective_scan_cuda.cu's impl_for runs it where
// its blocks fill the GPU (chunked_runs); SSM_SCAN_IMPL=chunk forces it.
//
// Layout. A block of 256 threads owns CB = 16 channels of one group g in one batch row b, as 16 channels x
// TS = 16 time slices: warp w holds channels 2w and 2w + 1, lane = 16 (channel & 1) + slice. The block walks
// its part of the row in chunks of TC = TS K = 128 steps; a thread owns K = 8 consecutive steps of one
// channel (t = t0 + slice K + i). Per chunk:
//   - the delta, u, z tiles (TC x CB) are staged in shared memory transposed to [channel][step], so a
//     thread reads its K steps with one 16-byte load; it computes dt and dt u for them once.
//   - for every state n (the outer loop, so any N; the group's B_t, C_t staged as f32 in tiles of 16 states):
//       a_t = exp(dt_t A[d, n])  (0 where a packed document starts: the reset),   b_t = dt_t B_t[n] u_t
//       the slice's composite map h_end = Aa h_start + Bb:  Aa = prod_i a_i,  Bb = sum_i (prod_{j>i} a_j) b_i;
//       an inclusive scan of the composites over the 16 slices (4 width-16 shuffle levels; (A1, B1) then
//       (A2, B2) composes to (A2 A1, A2 B1 + B2)) applied to the chunk's carry-in h_in[d, n] (shared memory)
//       gives each slice's end state; shifted up one lane, its start state (h_in on lane 0);
//       apply: h_t = a_t h_{t-1} + b_t,  y_t += C_t[n] h_t;  the last slice's end state is the next chunk's
//       carry-in.
//     a_t stays in registers from the composite to the apply: one exp per state and step (the per-channel
//     kernels' two-pass time split costs two), and the state never leaves the SM.
//   - y_t = (y_t + D u_t) silu(z_t), written back through the shared tile so the global stores are whole rows.
// Rows that Bt x D / 16 blocks cannot spread over the GPU (few channels, long L) are also cut into segments of
// whole chunks: a local pass from a zero state gives each segment's end state E_s and its sum of dt S_s (NaN
// when a reset falls inside: the carry multiplier is then 0), a carry kernel turns them into start states
// (h <- exp(A S_s) h + E_s), and the full pass starts each segment from its own.
// The full pass writes y (when asked), h_last, the state at the start of every `every`-th chunk (the
// forward's SegmentStarts: the backward's checkpoint pass starts there instead of redoing the local pass),
// and, for the backward, the state before every K-th step (its checkpoints) instead of y.
// All offsets are 64-bit.
#include "kernels/selective_scan/scan_chunked_cuda.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <type_traits>
#include <utility>

#include "kernels/common/cuda_utils.cuh"
#include "kernels/selective_scan/scan_cuda_common.cuh"

namespace ssm::kernels::cuda {
namespace {

constexpr int kK = kChunkCheckpointEvery;  // steps per thread in a chunk
constexpr int kTS = 16;                    // time slices (lanes) per channel
constexpr int kTC = kK * kTS;              // steps per chunk
constexpr int kCB = 16;                    // channels per block
constexpr int kThr = kCB * kTS;            // threads per block
constexpr int kNT = 16;                    // states per staged B / C tile
constexpr int kSliceStride = kK + 4;       // B / C tile: a slice's K steps, padded (conflict-free float4 reads)
constexpr int kBCRow = kTS * kSliceStride + 4;  // floats per state row of the B / C tile
static_assert(kK == 8, "the 16-byte tile loads below move 8 steps");

struct ChunkParams {
  const void *u, *delta, *z, *B, *C;
  const float *A, *Dskip, *dbias, *h0;
  const int32_t* seq;
  int64_t Bt, L, D, G, N, Dg;
  int Np, nj, bc;      // state stride of E / starts / ck rows; channel blocks per group; B / C dtype code
  bool softplus;
  bool bcvec;          // B / C rows can be read as 16-byte vectors (N a multiple of 16 / element size, aligned)
  int64_t nseg, cps;   // segments per row, chunks per segment
  const float* Ein;    // (Bt, nseg, D, Np): each segment's start state (nullptr: h0 or zero)
  int64_t nloc, lsub;  // the sequential kernels: Ein has nloc rows a batch row, lsub of them a segment (their local
                       // passes cut segments finer: seq_local_pass)
  float *E, *S;        // local pass: (Bt, nseg, D, Np) end states, (Bt, nseg, D) sums of dt
  void* y;             // (Bt, L, D) or nullptr
  float* h_last;       // (Bt, D, N) or nullptr
  float* starts;       // (Bt, nsave, D, Np): the state entering every `every`-th chunk, or nullptr
  int64_t every, nsave;
  float* ck;           // (Bt, nck, D, Np): the state before every K-th step, or nullptr
  int64_t nck;
  // The backward's (chunk_bwd_kernel).
  const void* gy;      // (Bt, L, D) dLoss/dy
  const float* gh;     // (Bt, D, N) dLoss/dh_last, or nullptr
  const float* Hs;     // (Bt, nchunks, D, Np): the state entering every chunk
  const float* Hmid;   // (Bt, nchunks, D, Np): the state at every chunk's middle (seq_bwd_kernel)
  float* mids;         // the forward's output of the same, or nullptr
  void *gu, *gdelta, *gz;
  float *gB, *gC;      // (Bt, G, N, L) f32 accumulators (zeroed): time fastest, so a warp's atomics coalesce
  float *gAp, *gDp, *gdbp, *gh0;  // per batch row: (Bt, D, N), (Bt, D), (Bt, D); gh0 (Bt, D, N) or nullptr
};

// Eight consecutive elements (16-byte aligned) between shared memory and f32 registers, in 16-byte moves.
template <typename T>
__device__ __forceinline__ void load8(const T* p, float* v) {
  constexpr int kPer = 16 / int(sizeof(T));
#pragma unroll
  for (int j = 0; j < 8 / kPer; ++j) {
    const uint4 r = reinterpret_cast<const uint4*>(p)[j];
#pragma unroll
    for (int k = 0; k < kPer; ++k) v[j * kPer + k] = ld(reinterpret_cast<const T*>(&r), k);
  }
}
template <typename T>
__device__ __forceinline__ void store8(T* p, const float* v) {
  constexpr int kPer = 16 / int(sizeof(T));
#pragma unroll
  for (int j = 0; j < 8 / kPer; ++j) {
    uint4 r;
#pragma unroll
    for (int k = 0; k < kPer; ++k) st(reinterpret_cast<T*>(&r), k, v[j * kPer + k]);
    reinterpret_cast<uint4*>(p)[j] = r;
  }
}

// Elements per channel row of the transposed delta / u / z tiles (16 bytes of padding: rows stay 16-byte
// aligned and consecutive channels start on different banks).
template <typename T>
constexpr int x_row() {
  return kTC + 16 / int(sizeof(T));
}
// Shared memory (bytes): B / C tile [2][kNT][kBCRow] f32, x tiles [3][kCB][x_row] T, carry and A log2(e)
// [kCB][N + 1] f32 each, reset flags [kTC].
size_t chunk_smem(int tsz, int64_t N) {
  return size_t(2) * kNT * kBCRow * 4 + size_t(3) * kCB * (kTC * tsz + 16) + size_t(2) * kCB * (N + 1) * 4 +
         kTC * 4;
}

// Steps t0 .. t0 + kTC of the block's channels d0 .. d0 + nvalid of x (Bt, L, D) into the shared tile
// [kCB][x_row], transposed (a thread's steps of a channel are then one 16-byte load); 0 past L and past the
// group's channels. Thread i moves channel i % 16 of rows i / 16 + 16 k (k < 8): a walk of one pointer, the 8
// loads issued before any store.
constexpr int kRowsPerPass = kThr / kCB;
template <typename T>
__device__ __forceinline__ void stage_x(T* tile, const T* x, const ChunkParams& p, int64_t b, int64_t t0, int64_t d0,
                                        int nvalid) {
  const int cc = int(threadIdx.x) % kCB, r0 = int(threadIdx.x) / kCB;
  const int64_t rows_left = p.L - t0 - r0, step = int64_t(kRowsPerPass) * p.D;
  const T* src = x + (b * p.L + t0 + r0) * p.D + d0 + cc;
  T v[kTC / kRowsPerPass];
#pragma unroll
  for (int k = 0; k < kTC / kRowsPerPass; ++k)
    v[k] = (cc < nvalid && kRowsPerPass * k < rows_left) ? src[k * step] : T(0.f);
  T* dst = tile + cc * x_row<T>() + r0;
#pragma unroll
  for (int k = 0; k < kTC / kRowsPerPass; ++k) dst[k * kRowsPerPass] = v[k];
}
// The reverse: the tile's rows below L back to x as whole rows.
template <typename T>
__device__ __forceinline__ void unstage_x(const T* tile, T* x, const ChunkParams& p, int64_t b, int64_t t0, int64_t d0,
                                          int nvalid) {
  const int cc = int(threadIdx.x) % kCB, r0 = int(threadIdx.x) / kCB;
  if (cc >= nvalid) return;
  const int64_t rows_left = p.L - t0 - r0, step = int64_t(kRowsPerPass) * p.D;
  T* dst = x + (b * p.L + t0 + r0) * p.D + d0 + cc;
  const T* src = tile + cc * x_row<T>() + r0;
#pragma unroll
  for (int k = 0; k < kTC / kRowsPerPass; ++k)
    if (kRowsPerPass * k < rows_left) dst[k * step] = src[k * kRowsPerPass];
}
// flags[r] = 1 where a packed document starts at step t0 + r.
__device__ __forceinline__ void stage_resets(int* flags, const ChunkParams& p, int64_t b, int64_t t0) {
  if (threadIdx.x < kTC) {
    const int64_t t = t0 + threadIdx.x;
    flags[threadIdx.x] = (p.seq && t > 0 && t < p.L && p.seq[b * p.L + t] != p.seq[b * p.L + t - 1]) ? 1 : 0;
  }
}
// B (and C when nw = 2) of group g, steps t0 .. t0 + kTC, states n0 .. n0 + nt, as f32 into the tile
// [2][kNT][kBCRow] (a slice's kK steps padded to kSliceStride); 0 past L. A row's nt states are contiguous in
// B / C: when p.bcvec says rows and pointers allow (nt a multiple of V = 16 / sizeof(E), aligned), each is read
// as 16-byte vectors of V states, else element by element.
template <typename E>
__device__ __forceinline__ void stage_bc_vec(float* bcs, const ChunkParams& p, int64_t b, int g, int64_t t0, int n0,
                                             int nt, int nw) {
  constexpr int V = 16 / int(sizeof(E));
  const int vpr = nt / V;  // vectors per row
  for (int row = threadIdx.x; row < nw * kTC; row += kThr) {  // one (B or C, step) row per thread
    const int w = row / kTC, r = row % kTC;
    const int64_t t = t0 + r;
    const E* src = static_cast<const E*>(w ? p.C : p.B) + ((b * p.L + t) * p.G + g) * p.N + n0;
    float* dst = bcs + w * kNT * kBCRow + (r / kK) * kSliceStride + r % kK;
    for (int j = 0; j < vpr; ++j) {
      uint4 raw = make_uint4(0u, 0u, 0u, 0u);  // zero bits: 0 in every dtype
      if (t < p.L) raw = reinterpret_cast<const uint4*>(src)[j];
#pragma unroll
      for (int k = 0; k < V; ++k) dst[(j * V + k) * kBCRow] = ld(reinterpret_cast<const E*>(&raw), k);
    }
  }
}
__device__ __forceinline__ void stage_bc(float* bcs, const ChunkParams& p, int64_t b, int g, int64_t t0, int n0, int nt,
                                         int nw) {
  if (p.bcvec) {  // then nt, N - n0 with n0 a multiple of 16, is a multiple of V too
    if (p.bc == 0) return stage_bc_vec<float>(bcs, p, b, g, t0, n0, nt, nw);
    if (p.bc == 1) return stage_bc_vec<__nv_bfloat16>(bcs, p, b, g, t0, n0, nt, nw);
    return stage_bc_vec<__half>(bcs, p, b, g, t0, n0, nt, nw);
  }
  for (int e = threadIdx.x; e < nw * kTC * nt; e += kThr) {
    const int w = e / (kTC * nt), rem = e - w * kTC * nt, r = rem / nt, nn = rem - r * nt;
    const int64_t t = t0 + r;
    float v = 0.f;
    if (t < p.L) v = ld_any(w ? p.C : p.B, ((b * p.L + t) * p.G + g) * p.N + n0 + nn, p.bc);
    bcs[(w * kNT + nn) * kBCRow + (r / kK) * kSliceStride + r % kK] = v;
  }
}

// Where this thread sits: batch row b, channel c of the block's 16 (global d0 + c) in group g, time slice s.
struct ChunkPos {
  int64_t b, d0, d;
  int g, c, s, lane, nvalid;
  bool valid;  // c is one of the group's channels (a last block may hold fewer than 16)
};
// The block's place, for a position q whose channel q.c is set: batch row b, group g and the block's first channel
// d0 of `width` (block index gj = g nj + j), how many of them lie in the group, and q.c's global channel d.
template <typename Pos>
__device__ __forceinline__ void place_block(Pos& q, const ChunkParams& p, unsigned gj, unsigned b, int width) {
  q.b = b;
  q.g = int(gj) / p.nj;
  const int j = int(gj) % p.nj;
  q.d0 = int64_t(q.g) * p.Dg + int64_t(j) * width;
  q.nvalid = int(min(int64_t(width), p.Dg - int64_t(j) * width));
  q.valid = q.c < q.nvalid;
  q.d = q.d0 + (q.valid ? q.c : 0);
}
__device__ __forceinline__ ChunkPos chunk_position(const ChunkParams& p) {
  ChunkPos q;
  q.lane = threadIdx.x & 31;
  q.s = q.lane & (kTS - 1);
  q.c = (threadIdx.x >> 5) * 2 + (q.lane >> 4);
  place_block(q, p, blockIdx.y, blockIdx.z, kCB);
  return q;
}

// a_t = exp2(dt_t A2) for the thread's K steps (A2 = A log2 e), 0 where a document starts (bit i of rmask).
__device__ __forceinline__ void decays(const float (&dt)[kK], float A2, unsigned rmask, float (&a)[kK]) {
#pragma unroll
  for (int i = 0; i < kK; ++i) a[i] = ex2(dt[i] * A2);
  if (rmask) {
#pragma unroll
    for (int i = 0; i < kK; ++i) a[i] = (rmask >> i) & 1u ? 0.f : a[i];
  }
}

// Scans of affine maps h -> A h + B over the channel's 16 lanes, level by level ((A1, B1) then (A2, B2) composes
// to (A2 A1, A2 B1 + B2)): UP, lane s ends with lanes 0..s composed (time runs up the lanes); else lanes s..15
// (the adjoint, which runs down). A lane with no partner at a level keeps its map: the shuffle's own predicate
// (the source lane lies in the segment) guards the combine.
template <bool UP>
__device__ __forceinline__ float lane_step(float v, int o) {
  return UP ? __shfl_up_sync(0xffffffffu, v, o, kTS) : __shfl_down_sync(0xffffffffu, v, o, kTS);
}
template <bool UP>
__device__ __forceinline__ float lane_step_in(float v, int o, bool& in) {
  return shfl_in<UP>(v, o, kTS, in);
}
__device__ __forceinline__ void compose(bool has, float Ap, float Bp, float& A, float& B) {
  if (has) {
    B = fmaf(A, Bp, B);
    A *= Ap;
  }
}
template <bool UP>
__device__ __forceinline__ void scan_maps(float& A, float& B) {
#pragma unroll
  for (int o = 1; o < kTS; o <<= 1) {
    bool has;
    const float Ap = lane_step<UP>(A, o), Bp = lane_step_in<UP>(B, o, has);
    compose(has, Ap, Bp, A, B);
  }
}
// The backward's two scans at once (its forward's maps up the lanes, its adjoint's down): a level's four
// shuffles are independent, so they are in flight together rather than one scan after the other.
__device__ __forceinline__ void scan_maps_both(float& A, float& B, float& P, float& Q) {
#pragma unroll
  for (int o = 1; o < kTS; o <<= 1) {
    bool up, down;
    const float Ap = lane_step<true>(A, o), Bp = lane_step_in<true>(B, o, up);
    const float Pp = lane_step<false>(P, o), Qp = lane_step_in<false>(Q, o, down);
    compose(up, Ap, Bp, A, B);
    compose(down, Pp, Qp, P, Q);
  }
}
// The value entering this lane's slice: the neighbour's end value (the lane below when UP, above otherwise),
// or the chunk's carry on the first lane in that direction.
template <bool UP>
__device__ __forceinline__ float enter(float end, float carry, int s) {
  const float v = lane_step<UP>(end, 1);
  return s == (UP ? 0 : kTS - 1) ? carry : v;
}

// The thread's K steps h <- a_i h + b(i) as one affine map h -> A h + B (A = prod a_i), composed as a tree of
// pairs (3 levels of dependent arithmetic instead of a chain of 7; the same 7 multiplies and 7 FMAs). The
// tree's lower-half map (A_lo, B_lo) and upper-half product A_up come with it, so a walk over the steps can run
// as two halves at once.
struct SliceMap {
  float A, B, A_lo, B_lo, A_up;
};
template <typename FB>
__device__ __forceinline__ SliceMap slice_map(const float (&a)[kK], FB b) {
  float A[kK], B[kK];
#pragma unroll
  for (int i = 0; i < kK; ++i) A[i] = a[i], B[i] = b(i);
  SliceMap m;
#pragma unroll
  for (int w = 1; w < kK; w <<= 1) {
#pragma unroll
    for (int i = 0; i < kK; i += 2 * w) {  // steps i.. then i + w..
      B[i] = fmaf(A[i + w], B[i], B[i + w]);
      A[i] *= A[i + w];
    }
    if (2 * w == kK / 2) m.A_lo = A[0], m.B_lo = B[0], m.A_up = A[kK / 2];
  }
  m.A = A[0];
  m.B = B[0];
  return m;
}

// LOCAL: the segment's pass from a zero state -> E, S. Otherwise the full pass (see the top of the file).
// Built for 3 blocks per SM (80 registers a thread, no spills): measured 1.13x faster than 2 blocks (128
// registers) at (8, 2048, 2048, 16) and more at longer rows (bench/RESULTS.md, 2026-12-06).
template <typename T, bool LOCAL>
__global__ void __launch_bounds__(kThr, 3) chunk_kernel(ChunkParams p) {
  float4* const smem4 = dynamic_smem<float4>();
  constexpr int XR = x_row<T>();
  char* base = reinterpret_cast<char*>(smem4);
  float* bcs = reinterpret_cast<float*>(base);                        // [2][kNT][kBCRow]
  T* xs = reinterpret_cast<T*>(base + size_t(2) * kNT * kBCRow * 4);  // [3][kCB][XR]
  const int N = int(p.N), Nr = N + 1;
  float* carry = reinterpret_cast<float*>(xs + 3 * kCB * XR);  // [kCB][Nr]
  float* A2s = carry + kCB * Nr;                                // [kCB][Nr]
  int* flags = reinterpret_cast<int*>(A2s + kCB * Nr);          // [kTC]

  const ChunkPos q = chunk_position(p);
  const int tid = threadIdx.x, lane = q.lane, s = q.s, c = q.c, g = q.g, nvalid = q.nvalid;
  const int64_t b = q.b, d0 = q.d0, d = q.d, seg = blockIdx.x;
  const bool valid = q.valid;
  const int64_t nchunks = (p.L + kTC - 1) / kTC;
  const int64_t ch0 = seg * p.cps, ch1 = min(nchunks, ch0 + p.cps);

  for (int e = tid; e < kCB * N; e += kThr) {
    const int cc = e / N, n = e - cc * N;
    float h = 0.f, a = 0.f;
    if (cc < nvalid) {
      const int64_t dd = d0 + cc;
      a = p.A[dd * N + n] * kLog2e;
      if (!LOCAL) {
        if (p.Ein) h = p.Ein[((b * p.nseg + seg) * p.D + dd) * p.Np + n];
        else if (p.h0) h = p.h0[(b * p.D + dd) * N + n];
      }
    }
    carry[cc * Nr + n] = h;
    A2s[cc * Nr + n] = a;
  }
  const float bias = (p.dbias && valid) ? p.dbias[d] : 0.f;
  const float Dv = (p.Dskip && valid) ? p.Dskip[d] : 0.f;
  const bool wanty = !LOCAL && p.y != nullptr, hasz = wanty && p.z != nullptr;
  const T* src[3] = {static_cast<const T*>(p.delta), static_cast<const T*>(p.u), static_cast<const T*>(p.z)};
  T* xc[3] = {xs + c * XR + s * kK, xs + (kCB + c) * XR + s * kK, xs + (2 * kCB + c) * XR + s * kK};
  float sumdt = 0.f;
  bool reset = false;

  for (int64_t ch = ch0; ch < ch1; ++ch) {
    const int64_t t0 = ch * kTC;
    __syncthreads();  // the previous chunk is done with the tiles; its carries are visible
    for (int a = 0; a < (hasz ? 3 : 2); ++a) stage_x(xs + a * kCB * XR, src[a], p, b, t0, d0, nvalid);
    stage_bc(bcs, p, b, g, t0, 0, min(kNT, N), wanty ? 2 : 1);  // the first state tile (C only for y)
    stage_resets(flags, p, b, t0);
    __syncthreads();
    if (!LOCAL && p.starts && ch % p.every == 0) {  // this channel's carry-in, before its lanes move on
      if (valid)
        for (int n = s; n < N; n += kTS)
          p.starts[((b * p.nsave + ch / p.every) * p.D + d) * p.Np + n] = carry[c * Nr + n];
      __syncwarp();
    }
    float dt[kK], du[kK], yv[kK];
    unsigned rmask = 0;  // bit i: a document starts at this thread's step i (a_t = 0)
    {
      float xd[kK], xu[kK];
      load8(xc[0], xd);
      load8(xc[1], xu);
#pragma unroll
      for (int i = 0; i < kK; ++i) {
        const bool in = t0 + s * kK + i < p.L;
        const float x = xd[i] + bias;
        dt[i] = in ? (p.softplus ? softplus_f(x) : x) : 0.f;
        du[i] = dt[i] * xu[i];
        const bool rs = flags[s * kK + i] != 0;
        rmask |= rs ? 1u << i : 0u;
        yv[i] = 0.f;
        if (LOCAL) {
          sumdt += dt[i];
          reset = reset || rs;
        }
      }
    }
    for (int n0 = 0; n0 < N; n0 += kNT) {
      const int nt = min(kNT, N - n0);
      if (n0 > 0) {  // the next state tile, once everyone is done with this one
        __syncthreads();
        stage_bc(bcs, p, b, g, t0, n0, nt, wanty ? 2 : 1);
        __syncthreads();
      }
      for (int nn = 0; nn < nt; ++nn) {
        const int n = n0 + nn;
        const float A2 = A2s[c * Nr + n];
        // The carry-in read first: its latency then runs under the scan. (C read here too made the 80-register
        // build spill in the chunk's epilogue.)
        float a[kK], bb[kK];
        const float hin = carry[c * Nr + n];
        load8(bcs + nn * kBCRow + s * kSliceStride, bb);
#pragma unroll
        for (int i = 0; i < kK; ++i) bb[i] *= du[i];
        decays(dt, A2, rmask, a);
        // The slice's map, scanned over the slices, applied to the carry-in: this slice's end state (lane 15's
        // is the chunk's), and the state entering it.
        const SliceMap m = slice_map(a, [&](int i) { return bb[i]; });
        float Aa = m.A, Bb = m.B;
        scan_maps<true>(Aa, Bb);
        const float h_end = fmaf(Aa, hin, Bb);
        float h = enter<true>(h_end, hin, s);
        if (!LOCAL && p.mids && valid && s == kTS / 2) p.mids[((b * p.nsave + ch) * p.D + d) * p.Np + n] = h;
        if (!LOCAL && p.ck && valid && t0 + s * kK < p.L)
          p.ck[((b * p.nck + (t0 + s * kK) / kK) * p.D + d) * p.Np + n] = h;
        if (wanty) {  // the two halves of the slice at once, the second from the first's map applied to h
          float Cv[kK];
          load8(bcs + (kNT + nn) * kBCRow + s * kSliceStride, Cv);
          float h2 = fmaf(m.A_lo, h, m.B_lo);
#pragma unroll
          for (int i = 0; i < kK / 2; ++i) {
            h = fmaf(a[i], h, bb[i]);
            yv[i] = fmaf(Cv[i], h, yv[i]);
            h2 = fmaf(a[i + kK / 2], h2, bb[i + kK / 2]);
            yv[i + kK / 2] = fmaf(Cv[i + kK / 2], h2, yv[i + kK / 2]);
          }
        }
        __syncwarp();  // every lane of the channel has read h_in
        if (s == kTS - 1) carry[c * Nr + n] = h_end;
      }
    }
    if (wanty) {
      float xu[kK], xz[kK];
      load8(xc[1], xu);
      if (hasz) load8(xc[2], xz);
#pragma unroll
      for (int i = 0; i < kK; ++i) {
        float o = fmaf(Dv, xu[i], yv[i]);
        if (hasz) o *= xz[i] * sigmoid_f(xz[i]);
        yv[i] = o;
      }
      store8(xc[1], yv);  // in place: only this thread reads these u entries
      __syncthreads();
      unstage_x(xs + kCB * XR, static_cast<T*>(p.y), p, b, t0, d0, nvalid);
    }
  }
  __syncthreads();
  if (LOCAL) {
#pragma unroll
    for (int o = 1; o < kTS; o <<= 1) sumdt += __shfl_xor_sync(0xffffffffu, sumdt, o);
    const unsigned any = __ballot_sync(0xffffffffu, reset) & (0xffffu << (16 * (lane >> 4)));
    if (valid && s == 0) p.S[(b * p.nseg + seg) * p.D + d] = any ? __int_as_float(0x7fc00000) : sumdt;
    for (int e = tid; e < kCB * N; e += kThr) {
      const int cc = e / N, n = e - cc * N;
      if (cc < nvalid) p.E[((b * p.nseg + seg) * p.D + d0 + cc) * p.Np + n] = carry[cc * Nr + n];
    }
  } else if (p.h_last && seg == p.nseg - 1) {
    for (int e = tid; e < kCB * N; e += kThr) {
      const int cc = e / N, n = e - cc * N;
      if (cc < nvalid) p.h_last[(b * p.D + d0 + cc) * N + n] = carry[cc * Nr + n];
    }
  }
}

// The backward (non-deterministic mode), one block per (b, 16 channels) as in the forward, walking the row's chunks from
// last to first with the adjoint carried between them (math in selective_scan.h; dh_t = C_t gy_t + X_t,
// X_t = a_{t+1} dh_{t+1} the adjoint arriving from step t + 1, X_{L-1} = grad h_last). Per chunk and state n:
//   recompute a_t, b_t and h (from the forward's state entering the chunk, Hs) exactly as the forward does,
//   keeping h_{t-1} of the thread's K steps in registers;
//   the adjoint's slice composite in reverse, X_out = Pa X_in + Q (Pa = prod a_i, Q <- a_i (C_i gy_i + Q) for
//   i = K-1 .. 0), a suffix scan over the 16 slices (width-16 shuffles down), the chunk's adjoint carry X_c
//   (shared memory) giving each slice's X_in; then in reverse over the thread's steps:
//     dh = C gy + X;  w = dh a h_{t-1};  gA += dt w;  sum_n A w, sum_n dh B (for gdt and gu);  X <- a dh;
//     gB_t += dh dt u and gC_t += gy h_t: summed over the block's 16 channels through shared memory (each lane
//     stores its 8 steps' terms, then after a barrier one thread per (gB or gC, step) adds the 16; two buffers,
//     so one barrier per state; shared-memory float atomics would be compare-and-swap loops on sm_90, and a
//     shuffle pairing the warp's two channels first cost more than it saved), and into f32 (Bt, G, N, L)
//     accumulators by global atomics (time fastest: a warp's 32 steps are 128 contiguous bytes, 4 sectors,
//     where (Bt, L, G, N) put each lane in its own; so this backward is not bit-reproducible: the deterministic
//     mode runs selective_scan_cuda.cu's); bc_grad_kernel transposes them into gB, gC.
//   gu = dt sum_n dh B + D gy,  gdt = ln2 sum_n A2 w + u sum_n dh B,  gz = g silu'(z) (sum_n C h + D u),
//   written back through the shared tiles; gA, gD, gdelta_bias per batch row, summed afterwards.
// One exp per state and step (the forward's recompute; the adjoint reuses the same a_t), against 2 to 3 in
// selective_scan_cuda.cu's backward (checkpoint pass, adjoint pass, main pass).
constexpr int kPartFloats = 2 * 2 * kCB * kTC;  // gB / gC terms: [2 buffers][gB, gC][channel][step]
size_t chunk_bwd_smem(int tsz, int64_t N) {
  return size_t(2) * kNT * kBCRow * 4 + size_t(4) * kCB * (kTC * tsz + 16) + size_t(kPartFloats) * 4 +
         size_t(4) * kCB * (N + 1) * 4 + kTC * 4;
}

// Built for 2 blocks per SM (128 registers, ~140 bytes of spills): at 3 blocks (80 registers) it spills 450
// bytes a thread and measured 1.4x slower.
template <typename T>
__global__ void __launch_bounds__(kThr, 2) chunk_bwd_kernel(ChunkParams p) {
  float4* const smem4 = dynamic_smem<float4>();
  constexpr int XR = x_row<T>();
  char* base = reinterpret_cast<char*>(smem4);
  float* bcs = reinterpret_cast<float*>(base);                        // [2][kNT][kBCRow]
  T* xs = reinterpret_cast<T*>(base + size_t(2) * kNT * kBCRow * 4);  // [4][kCB][XR]: delta, u, z, g
  float* part = reinterpret_cast<float*>(xs + 4 * kCB * XR);          // [2][2][kCB][kTC]: gB, gC terms
  const int N = int(p.N), Nr = N + 1;
  float* Hc = part + kPartFloats;       // [kCB][Nr] the forward's state entering the chunk
  float* Xc = Hc + kCB * Nr;            // [kCB][Nr] the adjoint arriving from the next chunk
  float* A2s = Xc + kCB * Nr;           // [kCB][Nr]
  float* gAc = A2s + kCB * Nr;          // [kCB][Nr]
  int* flags = reinterpret_cast<int*>(gAc + kCB * Nr);  // [kTC]

  const ChunkPos q = chunk_position(p);
  const int tid = threadIdx.x, s = q.s, c = q.c, g = q.g, nvalid = q.nvalid;
  const int64_t b = q.b, d0 = q.d0, d = q.d;
  const bool valid = q.valid;
  const int64_t nchunks = (p.L + kTC - 1) / kTC;

  for (int e = tid; e < kCB * N; e += kThr) {
    const int cc = e / N, n = e - cc * N;
    float a = 0.f, x = 0.f;
    if (cc < nvalid) {
      const int64_t dd = d0 + cc;
      a = p.A[dd * N + n] * kLog2e;
      if (p.gh) x = p.gh[(b * p.D + dd) * N + n];
    }
    A2s[cc * Nr + n] = a;
    Xc[cc * Nr + n] = x;
    gAc[cc * Nr + n] = 0.f;
  }
  const float bias = (p.dbias && valid) ? p.dbias[d] : 0.f;
  const float Dv = (p.Dskip && valid) ? p.Dskip[d] : 0.f;
  const bool hasz = p.z != nullptr;
  const T* src[4] = {static_cast<const T*>(p.delta), static_cast<const T*>(p.u), static_cast<const T*>(p.z),
                     static_cast<const T*>(p.gy)};
  T* xc[4];
#pragma unroll
  for (int a = 0; a < 4; ++a) xc[a] = xs + (a * kCB + c) * XR + s * kK;
  // This lane's slots for its gB and gC terms (steps 0-3 and 4-7 of its slice as two 16-byte stores; in slices
  // with bit 2 set the two halves trade places, so the 8 lanes of a quarter-warp store to 8 different bank
  // groups, where slices s and s + 4 would share one), and the (gB or gC, step) it adds up, read where it lies.
  static_assert(kK == 8 && kTS == 16, "the swizzle: bit 2 of the slice swaps its two 4-step halves");
  const int swap = s & 4;
  float* const partw_lo = part + c * kTC + s * kK + swap;        // steps 0-3
  float* const partw_hi = part + c * kTC + s * kK + (4 - swap);  // steps 4-7
  const int red_w = tid / kTC, red_r = tid % kTC, red_at = red_r ^ ((red_r >> 3) & 4);
  static_assert(kThr == 2 * kTC, "one thread per (gB or gC, step) of a chunk");
  float gDacc = 0.f, gdbacc = 0.f;

  for (int64_t ch = nchunks - 1; ch >= 0; --ch) {
    const int64_t t0 = ch * kTC;
    __syncthreads();  // the previous chunk is done with the tiles
    for (int a = 0; a < 4; ++a)
      if (a != 2 || hasz) stage_x(xs + a * kCB * XR, src[a], p, b, t0, d0, nvalid);
    stage_bc(bcs, p, b, g, t0, 0, min(kNT, N), 2);  // the first state tile
    stage_resets(flags, p, b, t0);
    for (int e = tid; e < kCB * N; e += kThr) {
      const int cc = e / N, n = e - cc * N;
      Hc[cc * Nr + n] = cc < nvalid ? p.Hs[((b * nchunks + ch) * p.D + d0 + cc) * p.Np + n] : 0.f;
    }
    __syncthreads();
    float dt[kK], du[kK], gy[kK], sB[kK], sA[kK], ypre[kK];
    unsigned rmask = 0;
    {
      float xd[kK], xu[kK], xz[kK], xg[kK];
      load8(xc[0], xd);
      load8(xc[1], xu);
      load8(xc[3], xg);
      if (hasz) load8(xc[2], xz);
#pragma unroll
      for (int i = 0; i < kK; ++i) {
        const bool in = t0 + s * kK + i < p.L;
        const float x = xd[i] + bias;
        dt[i] = in ? (p.softplus ? softplus_f(x) : x) : 0.f;
        du[i] = dt[i] * xu[i];
        gy[i] = hasz ? xg[i] * xz[i] * sigmoid_f(xz[i]) : xg[i];
        rmask |= flags[s * kK + i] ? 1u << i : 0u;
        sB[i] = sA[i] = ypre[i] = 0.f;
      }
    }
    // The (gB or gC) accumulator of the step this thread adds up, at state 0 (null past L); state n is red_off =
    // n L further.
    float* const red_dst = t0 + red_r < p.L ? (red_w ? p.gC : p.gB) + (b * p.G + g) * p.N * p.L + t0 + red_r : nullptr;
    int64_t red_off = 0;
    for (int n0 = 0; n0 < N; n0 += kNT) {
      const int nt = min(kNT, N - n0);
      if (n0 > 0) {  // the next state tile, once everyone is done with this one
        __syncthreads();
        stage_bc(bcs, p, b, g, t0, n0, nt, 2);
        __syncthreads();
      }
#pragma unroll 1
      for (int nn = 0; nn < nt; ++nn) {
        const int n = n0 + nn;
        const float A2 = A2s[c * Nr + n];
        float a[kK], Bv[kK], Cv[kK], hp[kK], Q = 0.f, Qh = 0.f;
        load8(bcs + nn * kBCRow + s * kSliceStride, Bv);
        load8(bcs + (kNT + nn) * kBCRow + s * kSliceStride, Cv);
        decays(dt, A2, rmask, a);
        // The slice's two maps: the forward's h -> Aa h + Bb over its steps and, in reverse, the adjoint's
        // X -> Pa X + Q (Pa = Aa: the same decays); both scanned at once, then applied to the chunk's carries:
        // the state entering the slice (lane 0: H_c) and the adjoint entering it from above (lane 15: X_c).
        // Each walk over the slice's steps runs as its two halves at once (K = 2 x 4 steps): (m.A_lo, m.B_lo) is
        // the forward's map of the lower half, Qh the adjoint's of the upper half (Q = Q_lo + A_lo Qh), m.A_up its
        // multiplier.
        constexpr int H = kK / 2;
        const SliceMap m = slice_map(a, [&](int i) { return du[i] * Bv[i]; });
        float Aa = m.A, Bb = m.B;
#pragma unroll
        for (int i = H - 1; i >= 0; --i) {
          Q = a[i] * fmaf(Cv[i], gy[i], Q);
          Qh = a[i + H] * fmaf(Cv[i + H], gy[i + H], Qh);
        }
        Q = fmaf(m.A_lo, Qh, Q);
        float Pa = Aa;
        scan_maps_both(Aa, Bb, Pa, Q);
        const float hin = Hc[c * Nr + n], xin = Xc[c * Nr + n];
        const float x_end = fmaf(Pa, xin, Q);
        float h = enter<true>(fmaf(Aa, hin, Bb), hin, s);  // into step 0
        float hu = fmaf(m.A_lo, h, m.B_lo);                 // into step H
        float X = enter<false>(x_end, xin, s);              // into step K - 1, from above
        float Xl = fmaf(m.A_up, X, Qh);                     // into step H - 1
        // h over the thread's steps (h_{t-1} kept in hp), then the steps in reverse.
#pragma unroll
        for (int i = 0; i < H; ++i) {
          hp[i] = h;
          h = fmaf(a[i], h, du[i] * Bv[i]);
          ypre[i] = fmaf(Cv[i], h, ypre[i]);
          hp[i + H] = hu;
          hu = fmaf(a[i + H], hu, du[i + H] * Bv[i + H]);
          ypre[i + H] = fmaf(Cv[i + H], hu, ypre[i + H]);
        }
        float gAl = 0.f, gAu = 0.f, vB[kK], vC[kK];
        auto back = [&](int i, float& Xi, float& gAi) {  // step i, the adjoint Xi arriving from step i + 1
          const float dh = fmaf(Cv[i], gy[i], Xi);
          Xi = a[i] * dh;  // the adjoint leaving for step i - 1
          const float w = Xi * hp[i];  // dh a_i h_{i-1}
          gAi = fmaf(w, dt[i], gAi);
          sA[i] = fmaf(A2, w, sA[i]);
          sB[i] = fmaf(dh, Bv[i], sB[i]);
          vB[i] = dh * du[i];
          vC[i] = gy[i] * (i == kK - 1 ? hu : hp[i + 1]);
        };
#pragma unroll
        for (int i = H - 1; i >= 0; --i) {
          back(i + H, X, gAu);
          back(i, Xl, gAl);
        }
        float gAv = gAl + gAu;
        const int bo = (nn & 1) * (kPartFloats / 2);  // this state's buffer
        *reinterpret_cast<float4*>(partw_lo + bo) = make_float4(vB[0], vB[1], vB[2], vB[3]);
        *reinterpret_cast<float4*>(partw_hi + bo) = make_float4(vB[4], vB[5], vB[6], vB[7]);
        *reinterpret_cast<float4*>(partw_lo + bo + kCB * kTC) = make_float4(vC[0], vC[1], vC[2], vC[3]);
        *reinterpret_cast<float4*>(partw_hi + bo + kCB * kTC) = make_float4(vC[4], vC[5], vC[6], vC[7]);
        __syncwarp();  // every lane of the channel has read X_c
        if (s == 0) Xc[c * Nr + n] = x_end;
        // The block's sum of this state's gB / gC: the 16 channels' terms, one (gB or gC, step) per thread, into
        // the global accumulators (the other buffer takes the next state's terms: one barrier a state); the
        // channel's gA term summed over its lanes meanwhile, so neither sum's latency waits on the other.
        __syncthreads();
        const float* cell = part + bo + red_w * kCB * kTC + red_at;
        float sum0 = cell[0], sum1 = cell[kTC];
#pragma unroll
        for (int k = 2; k < kCB; k += 2) {
          sum0 += cell[k * kTC];
          sum1 += cell[(k + 1) * kTC];
        }
#pragma unroll
        for (int o = 1; o < kTS; o <<= 1) gAv += __shfl_xor_sync(0xffffffffu, gAv, o);
        if (s == 0) gAc[c * Nr + n] += gAv;
        if (red_dst) atomicAdd(red_dst + red_off, sum0 + sum1);
        red_off += p.L;
      }
    }
    {  // Per-step gradients, back through the tiles (each thread overwrites only its own entries).
      float xu[kK], xz[kK], xg[kK], gu[kK], gd[kK], gz[kK];
      asm volatile("" ::: "memory");  // reload the tiles here rather than keep the prologue's values live
      load8(xc[1], xu);
      load8(xc[3], xg);
      if (hasz) load8(xc[2], xz);
#pragma unroll
      for (int i = 0; i < kK; ++i) {
        const bool in = t0 + s * kK + i < p.L;
        gu[i] = fmaf(dt[i], sB[i], Dv * gy[i]);
        const float gdt = fmaf(sA[i], kLn2, xu[i] * sB[i]);
        gd[i] = p.softplus ? gdt * one_minus_exp_neg(dt[i]) : gdt;
        if (hasz) {
          const float sg = sigmoid_f(xz[i]);
          gz[i] = xg[i] * sg * (1.f + xz[i] * (1.f - sg)) * fmaf(Dv, xu[i], ypre[i]);
        }
        gDacc = fmaf(gy[i], xu[i], gDacc);
        gdbacc += in ? gd[i] : 0.f;
      }
      store8(xc[0], gd);
      store8(xc[1], gu);
      if (hasz) store8(xc[2], gz);
      __syncthreads();
      T* outs[3] = {static_cast<T*>(p.gdelta), static_cast<T*>(p.gu), static_cast<T*>(p.gz)};
      for (int a = 0; a < (hasz ? 3 : 2); ++a) unstage_x(xs + a * kCB * XR, outs[a], p, b, t0, d0, nvalid);
    }
  }
  __syncthreads();
#pragma unroll
  for (int o = 1; o < kTS; o <<= 1) {
    gDacc += __shfl_xor_sync(0xffffffffu, gDacc, o);
    gdbacc += __shfl_xor_sync(0xffffffffu, gdbacc, o);
  }
  if (valid && s == 0) {
    p.gDp[b * p.D + d] = gDacc;
    p.gdbp[b * p.D + d] = gdbacc;
  }
  for (int e = tid; e < kCB * N; e += kThr) {
    const int cc = e / N, n = e - cc * N;
    if (cc >= nvalid) continue;
    const int64_t o = (b * p.D + d0 + cc) * N + n;
    p.gAp[o] = gAc[cc * Nr + n];
    if (p.gh0) p.gh0[o] = Xc[cc * Nr + n];
  }
}

// The sequential backward (seq_bwd_kernel; N <= 16, non-deterministic mode): no scans inside a chunk. A block of
// 128 threads owns kQC = 32 channels of one group in one batch row; warp w holds channels 8w..8w+7 as 8 channels x 4
// state quarters (lane = 4 channel + quarter), and a thread carries 4 states of its channel. The block walks the row
// in chunks of kQT = 64 steps, last to first, with each thread's adjoint X in registers (X_{L-1} = grad h_last).
// Per chunk (math in selective_scan.h; dh_t = C_t gy_t + X_t, X_{t-1} = a_t dh_t):
//   - dt, u and gy silu(z) are staged in shared memory as [channel][step] rows, B_t and C_t as [step][B | C][16];
//   - sweep 1 runs the 4 states forward from the forward's state at the chunk's start (it keeps one at every 64
//     steps: ChunkParams::Hs and ::Hmid) and leaves the state entering every kQP = 8-step piece in shared memory;
//   - for each piece, last to first: sweep 2 recomputes its 8 states h_{t-1} into registers; then in reverse
//     dh = C gy + X,  X <- a dh,  w = X h_{t-1},  gA += dt w,  and per step the sums over n of A w, dh B and C h_t
//     (for grad delta, grad u and grad z) and the terms dh dt u, gy h_t of gB_t, gC_t (sums over channels).
// Every chain is a thread's own: 4 independent states a thread, no shuffle or barrier on the recurrence (the
// chunked backward's two lane scans a state and step are gone), for 3 exps a state and step (sweep 1, sweep 2, and
// the reverse recomputes a_t rather than hold 32 more registers).
// Sums: over a channel's 4 state quarters (lanes xor 1, 2) by shuffles; over the warp's 8 channels (lanes xor 4, 8,
// 16) by shuffles, where a thread in an odd channel holds its states in slot order j ^ 2 so that the first level
// pairs slots without selects; over the block's 4 warps through shared memory, then global float atomics into the
// (Bt, G, N, L) accumulators (bc_grad_kernel transposes them), as the chunked backward does.
constexpr int kQC = 32;              // channels per block
constexpr int kQThr = 128;           // threads per block
constexpr int kQT = kTC / 2;         // steps per chunk
constexpr int kQP = 8;               // steps per piece
constexpr int kQPieces = kQT / kQP;  // pieces per chunk
constexpr int kQRow = kQT + 4;       // floats per channel row of the f32 tiles (16-byte aligned rows)
constexpr int kQNs = 10;             // floats per state row of the cross-warp buffer (8 steps, padded: float2 stores
                                     // of the 16 states land on 32 different banks)
constexpr int kQRed = 2 * 16 * kQNs;  // a warp's part of the cross-warp buffer: [B | C][16][kQNs]
constexpr int kQURow = kQT + 8;      // elements per channel row of seq_bwd_kernel's u tile (T): 16-byte aligned rows
size_t seq_bwd_smem(int tsz) {
  return size_t(2) * kQC * kQRow * 4 + size_t(kQC) * kQURow * tsz + size_t(kQT) * 32 * 4 +
         size_t(kQPieces - 1) * kQC * 16 * 4 + size_t(2) * 4 * kQRed * 4 + 16;
}

// Four consecutive elements (8- or 16-byte aligned) of a tile row into f32.
template <typename T>
__device__ __forceinline__ void load4(const T* p, float* v) {
  if constexpr (sizeof(T) == 4) {
    const float4 r = *reinterpret_cast<const float4*>(p);
    v[0] = r.x, v[1] = r.y, v[2] = r.z, v[3] = r.w;
  } else {
    const uint2 r = *reinterpret_cast<const uint2*>(p);
#pragma unroll
    for (int k = 0; k < 4; ++k) v[k] = ld(reinterpret_cast<const T*>(&r), k);
  }
}

// dt and dt u of piece k's 8 steps from a channel's tile rows.
template <typename U>
__device__ __forceinline__ void load_piece_dt(const float* drow, const U* urow, int k, float (&dt)[kQP], float (&du)[kQP]) {
  float u[kQP];
  load4(drow + kQP * k, dt);
  load4(drow + kQP * k + 4, dt + 4);
  load4(urow + kQP * k, u);
  load4(urow + kQP * k + 4, u + 4);
#pragma unroll
  for (int i = 0; i < kQP; ++i) du[i] = dt[i] * u[i];
}

// v[k] summed over the 4 lanes of a channel (lanes 4 c + 0..3), for k = sq, this lane's quarter: lanes xor 2 keep
// entries 2 (sq >> 1) .. + 1 and send the others, lanes xor 1 keep entry sq (a reduce-scatter: 3 shuffles, not 8).
__device__ __forceinline__ float quarter_sum(const float (&v)[4], int sq) {
  const bool hi2 = (sq >> 1) & 1, hi1 = sq & 1;
  float r2[2];
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    const float keep = hi2 ? v[2 + e] : v[e], send = hi2 ? v[e] : v[2 + e];
    r2[e] = keep + __shfl_xor_sync(0xffffffffu, send, 2);
  }
  const float keep = hi1 ? r2[1] : r2[0], send = hi1 ? r2[0] : r2[1];
  return keep + __shfl_xor_sync(0xffffffffu, send, 1);
}

// A step's B or C for this thread's 4 slots (slot j: state 4 q + (j ^ sw)) from the tile row [16] of the step.
__device__ __forceinline__ void load_slots(const float* row, int q4, int sw, float (&v)[4]) {
  const float2 lo = *reinterpret_cast<const float2*>(row + q4 + sw);
  const float2 hi = *reinterpret_cast<const float2*>(row + q4 + (sw ^ 2));
  v[0] = lo.x, v[1] = lo.y, v[2] = hi.x, v[3] = hi.y;
}

// B_t, C_t of group g for steps t0 .. t0 + kQT as f32 rows [step][B | C][16] (0 past L and N): one row a thread,
// read as 16-byte vectors when p.bcvec allows (N = 16 then, for every dtype's vector of 4 or 8 states).
template <typename E>
__device__ __forceinline__ void stage_bc_row(float* dst, const E* src, bool in, int N, bool vec) {
  constexpr int V = 16 / int(sizeof(E));
  if (vec && N == 16) {
#pragma unroll
    for (int j = 0; j < 16 / V; ++j) {
      uint4 raw = make_uint4(0u, 0u, 0u, 0u);
      if (in) raw = reinterpret_cast<const uint4*>(src)[j];
      float v[V];
#pragma unroll
      for (int k = 0; k < V; ++k) v[k] = ld(reinterpret_cast<const E*>(&raw), k);
#pragma unroll
      for (int k = 0; k < V; k += 4) *reinterpret_cast<float4*>(dst + j * V + k) = make_float4(v[k], v[k + 1], v[k + 2], v[k + 3]);
    }
  } else {
    for (int n = 0; n < 16; ++n) dst[n] = in && n < N ? ld(src, n) : 0.f;
  }
}
__device__ __forceinline__ void stage_bc_rows(float* bct, const ChunkParams& p, int64_t b, int g, int64_t t0) {
  static_assert(kQThr == 2 * kQT, "one (step, B or C) row a thread");
  const int r = int(threadIdx.x) >> 1, bc = int(threadIdx.x) & 1;
  const bool in = t0 + r < p.L;
  const int64_t o = ((b * p.L + t0 + r) * p.G + g) * p.N;
  const void* src = bc ? p.C : p.B;
  float* dst = bct + r * 32 + bc * 16;
  const int N = int(p.N);
  if (p.bc == 0) stage_bc_row(dst, static_cast<const float*>(src) + o, in, N, p.bcvec);
  else if (p.bc == 1) stage_bc_row(dst, static_cast<const __nv_bfloat16*>(src) + o, in, N, p.bcvec);
  else stage_bc_row(dst, static_cast<const __half*>(src) + o, in, N, p.bcvec);
}

// Where a thread of the sequential kernels sits: warp w, channel c = 8 w + cw of the block's 32 (global d0 + c) in
// group g of batch row b, state quarter sq (states q4 .. q4 + 3, held in slot order j ^ sw).
struct SeqPos {
  int tid, w, lane, cw, sq, q4, c, sw, g, nvalid;
  int64_t b, d0, d;
  bool valid;
};
__device__ __forceinline__ SeqPos seq_position(const ChunkParams& p) {
  SeqPos q;
  q.tid = threadIdx.x, q.w = q.tid >> 5, q.lane = q.tid & 31, q.cw = q.lane >> 2, q.sq = q.lane & 3, q.q4 = 4 * q.sq;
  q.c = 8 * q.w + q.cw, q.sw = (q.cw & 1) << 1;
  place_block(q, p, blockIdx.x, blockIdx.y, kQC);
  return q;
}

// The thread's 4 states (slot j: state q4 + (j ^ sw)): whether each is real (n < N, in a real channel), A log2 e, and
// its entry of a (Bt, D, N) f32 tensor `src` (0 where src is null).
__device__ __forceinline__ void seq_states(const ChunkParams& p, const SeqPos& q, const float* src, bool (&nin)[4],
                                           float (&A2)[4], float (&v)[4]) {
  const int N = int(p.N);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int n = q.q4 + (j ^ q.sw);
    nin[j] = q.valid && n < N;
    A2[j] = nin[j] ? p.A[q.d * N + n] * kLog2e : 0.f;
    v[j] = nin[j] && src ? src[(q.b * p.D + q.d) * N + n] : 0.f;
  }
}

// The carried value (p.Ein, (Bt, nloc, D, Np)) entering segment seg: at its start, the state, i.e. local segment
// seg lsub's entry; AT_END, the adjoint entering its end from the right, i.e. the entry of its last local segment
// (the row's last segment may have fewer than lsub). The thread's 4 entries, each state in its slot.
__device__ __forceinline__ void seq_load_segment(const ChunkParams& p, const SeqPos& q, int64_t seg, bool at_end,
                                                 const bool (&nin)[4], float (&v)[4]) {
  const int64_t r = at_end ? min(p.nloc - 1, (seg + 1) * p.lsub - 1) : seg * p.lsub;
  const float* row = p.Ein + ((q.b * p.nloc + r) * p.D + q.d) * p.Np + q.q4;
#pragma unroll
  for (int j = 0; j < 4; ++j) v[j] = nin[j] ? row[j ^ q.sw] : 0.f;
}

// A local pass's result for carry_kernel: the end state (or adjoint) v into p.E, the segment's sum of dt into p.S
// (NaN where a document starts inside it: the carry's multiplier is then 0).
__device__ __forceinline__ void seq_store_segment_end(const ChunkParams& p, const SeqPos& q, int64_t seg,
                                                      const bool (&nin)[4], const float (&v)[4], float sumdt,
                                                      bool any_reset) {
  const int64_t o = (q.b * p.nseg + seg) * p.D + q.d;
#pragma unroll
  for (int j = 0; j < 4; ++j)
    if (nin[j]) p.E[o * p.Np + q.q4 + (j ^ q.sw)] = v[j];
  if (q.valid && q.sq == 0) p.S[o] = any_reset ? __int_as_float(0x7fc00000) : sumdt;
}

// A 64-step chunk of channel `lane` (rows w + 4 k) into the sequential kernels' tiles, every load (B / C's too) in
// flight before the first conversion: dts = dt (softplus of delta + bias where asked, 0 past L), u into `ut` (none
// when null), and into `xt` (none when null) gy silu(z) (BWD: the gradient at y before the gate) or silu(z) (1
// without z).
template <bool BWD, typename T, typename U>
__device__ __forceinline__ void stage_seq_chunk(const ChunkParams& p, const SeqPos& q, int64_t t0, float lbias,
                                                float* dts, U* ut, int urow, float* xt, float* bct) {
  constexpr int R = kQT / 4;
  const bool cin = q.lane < q.nvalid, hasz = p.z != nullptr;
  const int64_t o0 = (q.b * p.L + t0 + q.w) * p.D + q.d0 + q.lane, step = 4 * p.D;
  T vd[R], vu[R], vz[R], vg[R];
#pragma unroll
  for (int k = 0; k < R; ++k) {
    const bool in = cin && t0 + q.w + 4 * k < p.L;
    const int64_t i = o0 + k * step;
    vd[k] = in ? static_cast<const T*>(p.delta)[i] : T(0.f);
    vu[k] = in && ut ? static_cast<const T*>(p.u)[i] : T(0.f);
    vz[k] = in && hasz ? static_cast<const T*>(p.z)[i] : T(0.f);
    if (BWD) vg[k] = in ? static_cast<const T*>(p.gy)[i] : T(0.f);
  }
  stage_bc_rows(bct, p, q.b, q.g, t0);
#pragma unroll
  for (int k = 0; k < R; ++k) {
    const int r = q.w + 4 * k;
    const bool in = cin && t0 + r < p.L;
    const float x = ld(vd, k) + lbias, zk = ld(vz, k), sz = hasz ? zk * sigmoid_f(zk) : 1.f;
    dts[q.lane * kQRow + r] = in ? (p.softplus ? softplus_f(x) : x) : 0.f;
    if (ut) ut[q.lane * urow + r] = U(ld(vu, k));
    if (xt) xt[q.lane * kQRow + r] = BWD ? ld(vg, k) * sz : sz;
  }
}

// rmw[0..1] = the chunk's resets, a bit a step (a packed document starts at step t0 + bit); warps 0 and 1.
__device__ __forceinline__ void stage_reset_bits(unsigned* rmw, const ChunkParams& p, const SeqPos& q, int64_t t0) {
  if (q.w < 2) {
    const int64_t t = t0 + q.tid;
    const bool rs = p.seq && t > 0 && t < p.L && p.seq[q.b * p.L + t] != p.seq[q.b * p.L + t - 1];
    const unsigned m = __ballot_sync(0xffffffffu, rs);
    if (q.lane == 0) rmw[q.w] = m;
  }
}

template <typename T>
__global__ void __launch_bounds__(kQThr, 4) seq_bwd_kernel(ChunkParams p) {
  char* base = reinterpret_cast<char*>(dynamic_smem<float4>());
  constexpr int UR = kQURow;
  float* dts = reinterpret_cast<float*>(base);  // [kQC][kQRow] dt, then grad delta
  float* gys = dts + kQC * kQRow;               // [kQC][kQRow] gy silu(z), then C h summed over n + D u
  T* us = reinterpret_cast<T*>(gys + kQC * kQRow);           // [kQC][UR] u, then grad u
  float* bct = reinterpret_cast<float*>(us + kQC * UR);      // [kQT][2][16] B_t, C_t
  float* ckp = bct + kQT * 32;                               // [kQPieces - 1][kQC][16] the state entering a piece
  float* red = ckp + (kQPieces - 1) * kQC * 16;              // [2][4 warps][kQRed]
  unsigned* rmw = reinterpret_cast<unsigned*>(red + 2 * 4 * kQRed);  // [2] the chunk's resets, a bit a step

  const SeqPos q = seq_position(p);
  const int tid = q.tid, w = q.w, lane = q.lane, cw = q.cw, sq = q.sq, q4 = q.q4, c = q.c, sw = q.sw, g = q.g;
  const int nvalid = q.nvalid, hb = (cw >> 1) & 1;
  const int64_t b = q.b, d0 = q.d0, d = q.d;
  const bool valid = q.valid;
  const int N = int(p.N);
  const int64_t L = p.L, D = p.D, nch = (L + kTC - 1) / kTC, nq = (L + kQT - 1) / kQT;

  // Segments (blockIdx.z, p.cps 64-step chunks each): each starts from the adjoint carried into its end (p.Ein,
  // from seq_adj_kernel and the reverse carry) and writes its own parts of gA, gD, gdelta_bias.
  const int64_t seg = blockIdx.z, cq0 = seg * p.cps, cq1 = min(nq, cq0 + p.cps), prow = b * p.nseg + seg;
  float A2[4], X[4], gA[4] = {0.f, 0.f, 0.f, 0.f};
  bool nin[4];
  seq_states(p, q, p.gh, nin, A2, X);
  if (p.Ein) seq_load_segment(p, q, seg, true, nin, X);
  const float Dv = (p.Dskip && valid) ? p.Dskip[d] : 0.f;
  const float lbias = (p.dbias && lane < nvalid) ? p.dbias[d0 + lane] : 0.f;  // the staged channel's
  const bool hasz = p.z != nullptr;
  const int n_own = q4 + sw + hb;  // the state whose channel sums this lane holds after the warp's reduction
  float gDacc = 0.f, gdbacc = 0.f;
  int buf = 0;

  for (int64_t cq = cq1 - 1; cq >= cq0; --cq) {
    const int64_t t0 = cq * kQT;
    __syncthreads();  // the previous chunk's outputs have left the tiles
    stage_seq_chunk<true, T>(p, q, t0, lbias, dts, us, UR, gys, bct);
    stage_reset_bits(rmw, p, q, t0);
    __syncthreads();
    const uint64_t rbits = uint64_t(rmw[0]) | (uint64_t(rmw[1]) << 32);
    const float* hsrc = (cq & 1) ? p.Hmid : p.Hs;
    const float* hrow = hsrc + ((b * nch + cq / 2) * D + d) * p.Np + q4;  // the state entering the chunk
    auto load_hin = [&](float (&h)[4]) {
#pragma unroll
      for (int j = 0; j < 4; ++j) h[j] = nin[j] ? hrow[j ^ sw] : 0.f;
    };
    const float* drow = dts + c * kQRow;
    const T* urow = us + c * UR;
    const float* grow = gys + c * kQRow;
    // Piece k forward from h: h <- a h + dt u B with a = exp2(dt A2) (0 where a document starts when RESET), and
    // h_{t-1} of each step into hp.
    auto run_piece = [&](auto reset, int k, const float (&dt)[kQP], const float (&du)[kQP], unsigned rk, float (&h)[4],
                         float (&hp)[kQP][4]) {
#pragma unroll
      for (int i = 0; i < kQP; ++i) {
        float Bv[4];
        load_slots(bct + (kQP * k + i) * 32, q4, sw, Bv);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          float a = ex2(dt[i] * A2[j]);
          if constexpr (decltype(reset)::value) a = (rk >> i) & 1u ? 0.f : a;
          hp[i][j] = h[j];
          h[j] = fmaf(a, h[j], du[i] * Bv[j]);
        }
      }
    };
    {  // sweep 1: the state entering pieces 1 .. kQPieces - 1
      float h[4];
      load_hin(h);
#pragma unroll 1
      for (int k = 0; k < kQPieces - 1; ++k) {
        float dt[kQP], du[kQP];
        load_piece_dt(drow, urow, k, dt, du);
        const unsigned rk = unsigned(rbits >> (kQP * k)) & 0xffu;
        float hp[kQP][4];  // dead here: the compiler drops it
        if (rk) run_piece(std::true_type{}, k, dt, du, rk, h, hp);
        else run_piece(std::false_type{}, k, dt, du, rk, h, hp);
        *reinterpret_cast<float4*>(ckp + (k * kQC + c) * 16 + q4) = make_float4(h[0], h[1], h[2], h[3]);
      }
    }
#pragma unroll 1
    for (int k = kQPieces - 1; k >= 0; --k) {
      float h[4];
      if (k == 0) {
        load_hin(h);  // again (an L2 hit): 4 registers fewer over the pieces
      } else {
        const float4 v = *reinterpret_cast<const float4*>(ckp + ((k - 1) * kQC + c) * 16 + q4);
        h[0] = v.x, h[1] = v.y, h[2] = v.z, h[3] = v.w;
      }
      float dt[kQP], du[kQP], hp[kQP][4];
      load_piece_dt(drow, urow, k, dt, du);
      const unsigned rk = unsigned(rbits >> (kQP * k)) & 0xffu;
      auto piece = [&](auto reset) {
      run_piece(reset, k, dt, du, rk, h, hp);  // sweep 2
      // The reverse, four steps at a time: sums over n (sA: A w, sB: dh B, yp: C h_t) per step, reduced over the
      // channel's 4 lanes so that lane sq ends with step 4 f + sq's; the gB / gC terms per step, reduced over the
      // warp's channels into red.
      float* redw = red + (buf * 4 + w) * kQRed;
#pragma unroll
      for (int f = 1; f >= 0; --f) {
        float sA[4], sB[4], yp[4];
#pragma unroll
        for (int ii = 3; ii >= 0; --ii) {
          const int i = 4 * f + ii, r = kQP * k + i;
          float Bv[4], Cv[4], v[2][4];  // v: [B | C][slot]
          load_slots(bct + r * 32, q4, sw, Bv);
          load_slots(bct + r * 32 + 16, q4, sw, Cv);
          const float gy = grow[r];
          float a0 = 0.f, a1 = 0.f, a2 = 0.f;
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            const float hnow = i == kQP - 1 ? h[j] : hp[i + 1][j];
            float a = ex2(dt[i] * A2[j]);
            if constexpr (decltype(reset)::value) a = (rk >> i) & 1u ? 0.f : a;
            const float dh = fmaf(Cv[j], gy, X[j]);
            X[j] = a * dh;
            const float wv = X[j] * hp[i][j];
            gA[j] = fmaf(wv, dt[i], gA[j]);
            a0 = fmaf(A2[j], wv, a0);
            a1 = fmaf(dh, Bv[j], a1);
            a2 = fmaf(Cv[j], hnow, a2);
            v[0][j] = dh * du[i];
            v[1][j] = gy * hnow;
          }
          sA[ii] = a0, sB[ii] = a1, yp[ii] = a2;
          // Over the warp's 8 channels: lanes xor 4 (slots j, j + 2: the partner holds the same states there),
          // xor 8 (slot hb kept), xor 16 (both keep the sum).
#pragma unroll
          for (int bc = 0; bc < 2; ++bc) {
            const float s0 = v[bc][0] + __shfl_xor_sync(0xffffffffu, v[bc][2], 4);
            const float s1 = v[bc][1] + __shfl_xor_sync(0xffffffffu, v[bc][3], 4);
            const float keep = hb ? s1 : s0, send = hb ? s0 : s1;
            const float t2 = keep + __shfl_xor_sync(0xffffffffu, send, 8);
            const float o = t2 + __shfl_xor_sync(0xffffffffu, t2, 16);
            if (cw < 4) redw[(bc * 16 + n_own) * kQNs + i] = o;
          }
        }
        // Over the channel's 4 lanes: lane sq ends with step 4 f + sq's sums.
        const float r1[3] = {quarter_sum(sA, sq), quarter_sum(sB, sq), quarter_sum(yp, sq)};
        // This lane's step: grad u, grad delta (through the softplus), and C h + D u for grad z, in place.
        const int r = kQP * k + 4 * f + sq;
        if (valid) {
          const float dtv = drow[r], uv = ld(urow, r), gyv = grow[r];
          const float gu = fmaf(dtv, r1[1], Dv * gyv);
          const float gdt = fmaf(r1[0], kLn2, uv * r1[1]);
          const float gd = p.softplus ? gdt * one_minus_exp_neg(dtv) : gdt;
          gDacc = fmaf(gyv, uv, gDacc);
          gdbacc += t0 + r < L ? gd : 0.f;
          dts[c * kQRow + r] = gd;
          st(us + c * UR, r, gu);
          gys[c * kQRow + r] = fmaf(Dv, uv, r1[2]);
        }
      }
      };
      if (rk) piece(std::true_type{});
      else piece(std::false_type{});
      // The block's sums of this piece's gB / gC terms: output o = (B | C, n, step), step fastest.
      __syncthreads();
#pragma unroll
      for (int h2 = 0; h2 < 2; ++h2) {
        const int o = tid + kQThr * h2, bc = o >> 7, n = (o >> 3) & 15, i = o & 7;
        const float* cell = red + buf * 4 * kQRed + (bc * 16 + n) * kQNs + i;
        const float s = (cell[0] + cell[kQRed]) + (cell[2 * kQRed] + cell[3 * kQRed]);
        const int64_t t = t0 + kQP * k + i;
        if (n < N && t < L) atomicAdd((bc ? p.gC : p.gB) + ((b * p.G + g) * p.N + n) * L + t, s);
      }
      buf ^= 1;
    }
    __syncthreads();
    {  // grad delta, grad u, grad z of the chunk: channel `lane` of rows w + 4 k
      if (lane < nvalid) {
        const int rows = int(min(int64_t(kQT), L - t0));
        const int64_t o0 = (b * L + t0 + w) * D + d0 + lane, step = 4 * D;
        T* gdp = static_cast<T*>(p.gdelta) + o0;
        T* gup = static_cast<T*>(p.gu) + o0;
        T* gzp = hasz ? static_cast<T*>(p.gz) + o0 : nullptr;
        const T* zp = hasz ? static_cast<const T*>(p.z) + o0 : nullptr;
        const T* gp = static_cast<const T*>(p.gy) + o0;
#pragma unroll 4
        for (int r = w; r < rows; r += 4) {
          st(gdp, 0, dts[lane * kQRow + r]);
          st(gup, 0, ld(us + lane * UR, r));
          gdp += step, gup += step;
          if (hasz) {
            const float zv = ld(zp, 0), gv = ld(gp, 0);
            const float sg = sigmoid_f(zv);
            st(gzp, 0, gv * sg * (1.f + zv * (1.f - sg)) * gys[lane * kQRow + r]);
            zp += step, gp += step, gzp += step;
          }
        }
      }
    }
  }
#pragma unroll
  for (int o = 1; o < 4; o <<= 1) {
    gDacc += __shfl_xor_sync(0xffffffffu, gDacc, o);
    gdbacc += __shfl_xor_sync(0xffffffffu, gdbacc, o);
  }
  if (valid && sq == 0) {
    p.gDp[prow * D + d] = gDacc;
    p.gdbp[prow * D + d] = gdbacc;
  }
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    if (!nin[j]) continue;
    p.gAp[(prow * D + d) * N + q4 + (j ^ sw)] = gA[j];
    if (p.gh0 && seg == 0) p.gh0[(b * D + d) * N + q4 + (j ^ sw)] = X[j];
  }
}

size_t seq_adj_smem() { return size_t(2) * kQC * kQRow * 4 + size_t(kQT) * 32 * 4 + 16; }

// The adjoint's local pass for seq_bwd_kernel's segments: each segment from a zero adjoint at its end, in reverse,
// X <- a_t (C_t gy_t + X) (the adjoint needs neither h nor B); writes the adjoint leaving its first step E and its sum
// of dt S (NaN where a document starts inside it: the carry multiplier is then 0) for carry_kernel (reverse).
// Built for 8 blocks an SM (64 registers; ~130 bytes of spills, in the chunk staging's loads in flight, none in the
// step loop), as seq_fwd_kernel's local pass.
template <typename T>
__global__ void __launch_bounds__(kQThr, 8) seq_adj_kernel(ChunkParams p) {
  float* dts = dynamic_smem<float>();  // [kQC][kQRow] dt
  float* gys = dts + kQC * kQRow;       // [kQC][kQRow] gy silu(z)
  float* bct = gys + kQC * kQRow;       // [kQT][2][16] B_t, C_t
  unsigned* rmw = reinterpret_cast<unsigned*>(bct + kQT * 32);
  SeqPos q = seq_position(p);
  q.sw = 0;  // no sums over channels here: states in their own order, C_t as one 16-byte load
  // Segments 1 .. nseg - 1 (blockIdx.z + 1): nothing reads the adjoint leaving the row's first (carry_kernel).
  const int64_t nq = (p.L + kQT - 1) / kQT, seg = blockIdx.z + 1, cq0 = seg * p.cps, cq1 = min(nq, cq0 + p.cps);
  float A2[4], X[4];
  bool nin[4];
  seq_states(p, q, nullptr, nin, A2, X);
  const float lbias = (p.dbias && q.lane < q.nvalid) ? p.dbias[q.d0 + q.lane] : 0.f;
  const float* drow = dts + q.c * kQRow;
  const float* grow = gys + q.c * kQRow;
  float sumdt = 0.f;
  bool any_reset = false;
  for (int64_t cq = cq1 - 1; cq >= cq0; --cq) {
    const int64_t t0 = cq * kQT;
    __syncthreads();
    stage_seq_chunk<true, T>(p, q, t0, lbias, dts, static_cast<float*>(nullptr), 0, gys, bct);  // no u
    stage_reset_bits(rmw, p, q, t0);
    __syncthreads();
    const uint64_t rbits = uint64_t(rmw[0]) | (uint64_t(rmw[1]) << 32);
    any_reset = any_reset || rbits != 0;
#pragma unroll 1
    for (int k = kQPieces - 1; k >= 0; --k) {  // 8-step pieces, last to first: dt and gy as 16-byte loads
      float dt[kQP], gy[kQP];
      load4(drow + kQP * k, dt);
      load4(drow + kQP * k + 4, dt + 4);
      load4(grow + kQP * k, gy);
      load4(grow + kQP * k + 4, gy + 4);
      const unsigned rk = unsigned(rbits >> (kQP * k)) & 0xffu;
      auto piece = [&](auto reset) {  // resets as a uniform branch per piece, not a select per step
#pragma unroll
        for (int i = kQP - 1; i >= 0; --i) {
          const float4 c4 = *reinterpret_cast<const float4*>(bct + (kQP * k + i) * 32 + 16 + q.q4);
          const float Cv[4] = {c4.x, c4.y, c4.z, c4.w};
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            float a = ex2(dt[i] * A2[j]);
            if constexpr (decltype(reset)::value) a = (rk >> i) & 1u ? 0.f : a;
            X[j] = a * fmaf(Cv[j], gy[i], X[j]);
          }
          sumdt += dt[i];
        }
      };
      if (rk) piece(std::true_type{});
      else piece(std::false_type{});
    }
  }
  seq_store_segment_end(p, q, seg, nin, X, sumdt, any_reset);
}

// The sequential forward (seq_fwd_kernel; N <= 16): seq_bwd_kernel's layout without its sweeps. A block of 128
// threads owns 32 channels of one group in one batch row (a warp: 8 channels x 4 state quarters), a thread carries
// 4 states of its channel through the row in time order, in chunks of kQT = 64 steps: dt, u and silu(z) (f32) and
// B_t, C_t staged in shared memory, then per step h <- exp2(dt A2) h + dt u B (0 for the decay where a document
// starts) and the thread's part of y_t = sum_n C_t h_t; the 4 parts of a step are summed over the channel's lanes
// (xor 2, 1: after four steps lane q holds step 4 f + q's) and y_t = (y_t + D u_t) silu(z_t) goes back through the
// dt tile as whole rows. It keeps the state at every 64 steps (ChunkParams::starts at each 128-step chunk's start,
// ::mids at its middle) for seq_bwd_kernel. One exp a state and step, no scan, no barrier within a chunk.
// Shared memory: the dt, u and silu(z) tiles (the local pass has no z tile), B_t / C_t, the reset bits.
size_t seq_fwd_smem(bool local) { return size_t(local ? 2 : 3) * kQC * kQRow * 4 + size_t(kQT) * 32 * 4 + 16; }

// Segments (blockIdx.z; p.cps 64-step chunks each): LOCAL runs a segment from a zero state and writes its end state E
// and sum of dt S (NaN where a document starts inside it) for carry_kernel; the full pass starts each segment
// from p.Ein (after the carry) or h0. LOCAL needs fewer registers (no y, no C) and a third less shared memory:
// built for 8 blocks an SM (64 registers; 32 bytes of spills, in the chunk staging, none in the step loop), twice
// the full pass's, so that its segments can be cut twice as fine (seq_local_pass).
template <typename T, bool LOCAL>
__global__ void __launch_bounds__(kQThr, LOCAL ? 8 : 4) seq_fwd_kernel(ChunkParams p) {
  char* base = reinterpret_cast<char*>(dynamic_smem<float4>());
  float* dts = reinterpret_cast<float*>(base);       // [kQC][kQRow] dt, then y
  float* uts = dts + kQC * kQRow;                    // [kQC][kQRow] u
  float* zts = LOCAL ? nullptr : uts + kQC * kQRow;  // [kQC][kQRow] silu(z)
  float* bct = (LOCAL ? uts : zts) + kQC * kQRow;    // [kQT][2][16] B_t, C_t
  unsigned* rmw = reinterpret_cast<unsigned*>(bct + kQT * 32);  // [2] the chunk's resets, a bit a step

  SeqPos q = seq_position(p);
  q.sw = 0;  // no sums over channels here: states in their own order, B and C as one 16-byte load each
  const int lane = q.lane, sq = q.sq, q4 = q.q4, c = q.c, sw = q.sw, w = q.w, nvalid = q.nvalid;
  const int64_t b = q.b, d0 = q.d0, d = q.d;
  const bool valid = q.valid;
  const int N = int(p.N);
  const int64_t L = p.L, D = p.D, nq = (L + kQT - 1) / kQT;

  const int64_t seg = blockIdx.z, cq0 = seg * p.cps, cq1 = min(nq, cq0 + p.cps);
  float A2[4], h[4];
  bool nin[4];
  seq_states(p, q, LOCAL ? nullptr : p.h0, nin, A2, h);
  if (!LOCAL && p.Ein) seq_load_segment(p, q, seg, false, nin, h);
  const float Dv = (p.Dskip && valid) ? p.Dskip[d] : 0.f;
  const float lbias = (p.dbias && lane < nvalid) ? p.dbias[d0 + lane] : 0.f;
  const float* drow = dts + c * kQRow;
  const float* urow = uts + c * kQRow;
  float sumdt = 0.f;
  bool any_reset = false;

  for (int64_t cq = cq0; cq < cq1; ++cq) {
    const int64_t t0 = cq * kQT;
    __syncthreads();  // the previous chunk's y has left the tiles
    stage_seq_chunk<false, T>(p, q, t0, lbias, dts, uts, kQRow, zts, bct);
    stage_reset_bits(rmw, p, q, t0);
    __syncthreads();
    if (!LOCAL && p.starts) {  // the state entering this chunk: a 128-step chunk's start, or its middle
      float* dst = ((cq & 1) ? p.mids : p.starts) + ((b * p.nsave + cq / 2) * D + d) * p.Np + q4;
#pragma unroll
      for (int j = 0; j < 4; ++j)
        if (nin[j]) dst[j ^ sw] = h[j];
    }
    const uint64_t rbits = uint64_t(rmw[0]) | (uint64_t(rmw[1]) << 32);
    any_reset = any_reset || rbits != 0;
#pragma unroll 1
    for (int k = 0; k < kQPieces; ++k) {
      float dt[kQP], du[kQP];
      load_piece_dt(drow, urow, k, dt, du);
      const unsigned rk = unsigned(rbits >> (kQP * k)) & 0xffu;
      if (LOCAL) {
#pragma unroll
        for (int i = 0; i < kQP; ++i) sumdt += dt[i];
      }
      auto piece = [&](auto reset) {
#pragma unroll
        for (int f = 0; f < 2; ++f) {
          float yp[4];
#pragma unroll
          for (int ii = 0; ii < 4; ++ii) {
            const int i = 4 * f + ii, r = kQP * k + i;
            const float4 b4 = *reinterpret_cast<const float4*>(bct + r * 32 + q4);
            const float4 c4 = *reinterpret_cast<const float4*>(bct + r * 32 + 16 + q4);
            const float Bv[4] = {b4.x, b4.y, b4.z, b4.w}, Cv[4] = {c4.x, c4.y, c4.z, c4.w};
            float acc = 0.f;
#pragma unroll
            for (int j = 0; j < 4; ++j) {
              float a = ex2(dt[i] * A2[j]);
              if constexpr (decltype(reset)::value) a = (rk >> i) & 1u ? 0.f : a;
              h[j] = fmaf(a, h[j], du[i] * Bv[j]);
              acc = fmaf(Cv[j], h[j], acc);
            }
            yp[ii] = acc;
          }
          if (LOCAL) continue;
          const float ysum = quarter_sum(yp, sq);  // over the channel's 4 lanes: step 4 f + sq's
          const int r = kQP * k + 4 * f + sq;
          if (valid) dts[c * kQRow + r] = fmaf(Dv, urow[r], ysum) * zts[c * kQRow + r];
        }
      };
      if (rk) piece(std::true_type{});
      else piece(std::false_type{});
    }
    __syncthreads();
    if (!LOCAL && p.y && lane < nvalid) {  // y of the chunk: channel `lane` of rows w + 4 k
      const int rows = int(min(int64_t(kQT), L - t0));
      T* yp = static_cast<T*>(p.y) + (b * L + t0) * D + d0 + lane;
      for (int r = w; r < rows; r += 4) st(yp, int64_t(r) * D, dts[lane * kQRow + r]);
    }
  }
  if (LOCAL) {
    seq_store_segment_end(p, q, seg, nin, h, sumdt, any_reset);
  } else if (p.h_last && seg == p.nseg - 1) {
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (nin[j]) p.h_last[(b * D + d) * N + q4 + (j ^ sw)] = h[j];
  }
}

// gB or gC (Bt, L, G, N) in B's dtype from the backward's (Bt, G, N, L) f32 accumulator, one thread per output
// element (the reads are strided; the accumulator is small and was just written through L2).
__global__ void bc_grad_kernel(const float* acc, int64_t Bt, int64_t L, int64_t G, int64_t N, void* out, int code) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= Bt * L * G * N) return;
  const int64_t n = i % N, g = (i / N) % G, t = (i / (N * G)) % L, b = i / (N * G * L);
  st_any(out, i, code, acc[((b * G + g) * N + n) * L + t]);
}

// Segment start states from the local passes' end states E, one thread per (b, d, n) (carry_through); REVERSE: the
// adjoint entering each segment's end from the right (seq_adj_kernel's E; the last segment's is grad h_last).
// No local pass runs on the segment whose result nothing reads (the forward's last, the adjoint's first: the value
// leaving the row is the full pass's), so its E and S hold nothing: the carry runs over the other nseg - 1 and writes
// only the value entering that one.
__global__ void carry_kernel(ChunkParams p, bool reverse) {
  const int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (idx >= p.Bt * p.D * p.N) return;
  const int64_t n = idx % p.N, d = (idx / p.N) % p.D, b = idx / (p.N * p.D), xs = p.D * p.Np, m = p.nseg - 1;
  const float* first = reverse ? p.gh : p.h0;
  float* X = p.E + (b * p.nseg * p.D + d) * p.Np + n;
  const float* S = p.S + b * p.nseg * p.D + d;
  const int64_t skip = reverse ? 1 : 0;  // the local passes' segments: 0 .. m - 1, or 1 .. m for the adjoint
  const float h = carry_through(X + skip * xs, xs, S + skip * p.D, p.D, m, p.A[d * p.N + n] * kLog2e,
                                first ? first[idx] : 0.f, reverse);
  X[(reverse ? 0 : m) * xs] = h;
}

// E (Bt, nseg, D, Np) and S (Bt, nseg, D) for the local passes of p's segments.
void alloc_segment_ends(ChunkParams& p, Tensor& E, Tensor& S, const Device& dev) {
  E = Tensor::empty({p.Bt, p.nseg, p.D, p.Np}, DType::f32, dev);
  S = Tensor::empty({p.Bt, p.nseg, p.D}, DType::f32, dev);
  p.E = E.data<float>();
  p.S = S.data<float>();
}

// The carries after the local passes: p.Ein = the state (REVERSE: adjoint) entering each segment.
void carry_segments(ChunkParams& p, bool reverse) {
  carry_kernel<<<blocks_for(p.Bt * p.D * p.N, 256), 256, 0, stream()>>>(p, reverse);
  SSM_CUDA_LAUNCH_CHECK();
  p.Ein = p.E;
}

ChunkParams make_chunk_params(const ScanInputs& in, const ScanOptions& opt) {
  ChunkParams p{};
  set_scan_inputs(p, in);
  p.nj = int((p.Dg + kCB - 1) / kCB);
  p.bc = dtype_code(in.B.dtype());
  const int64_t per16 = 16 / int64_t(dtype_size(in.B.dtype()));
  p.bcvec = p.N % per16 == 0 && reinterpret_cast<uintptr_t>(p.B) % 16 == 0 && reinterpret_cast<uintptr_t>(p.C) % 16 == 0;
  p.softplus = opt.delta_softplus;
  int Np = 16;
  while (Np < p.N) Np *= 2;
  p.Np = Np;
  p.nseg = 1;
  p.cps = (p.L + kTC - 1) / kTC;
  return p;
}

template <typename T, bool LOCAL>
void launch_chunk(const ChunkParams& p) {
  const auto kernel = chunk_kernel<T, LOCAL>;
  const size_t smem = chunk_smem(int(sizeof(T)), p.N);
  if (smem > 48 * 1024)
    SSM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  // A local pass skips the last segment: nothing reads its end state (carry_kernel).
  const unsigned segs = unsigned(LOCAL ? p.nseg - 1 : p.nseg);
  kernel<<<dim3(segs, unsigned(p.G * p.nj), unsigned(p.Bt)), kThr, smem, stream()>>>(p);
  SSM_CUDA_LAUNCH_CHECK();
}

// Segments per row. One when the blocks of whole rows give at least half a wave (the occupancy calculator's
// resident blocks on every SM); else enough to fill one wave, at the price of the second (local) pass.
// Segments are whole multiples of `align` chunks. Env SSM_SCAN_CHUNK_SEGS overrides the count.
template <typename T>
void set_chunk_segments(ChunkParams& p, int64_t align) {
  const auto kernel = chunk_kernel<T, false>;
  const size_t smem = chunk_smem(int(sizeof(T)), p.N);
  if (smem > 48 * 1024)
    SSM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  int resident = 0;
  SSM_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&resident, kernel, kThr, smem));
  const int64_t blocks = p.Bt * p.G * p.nj, slots = int64_t(std::max(1, resident)) * ::ssm::cuda::sm_count();
  const int64_t nchunks = (p.L + kTC - 1) / kTC, units = (nchunks + align - 1) / align;
  int64_t nseg = 2 * blocks >= slots ? 1 : slots / blocks;
  nseg = std::max<int64_t>(1, std::min(env_int("SSM_SCAN_CHUNK_SEGS", nseg), units));
  p.cps = (units + nseg - 1) / nseg * align;
  p.nseg = (nchunks + p.cps - 1) / p.cps;
}

// Segment start states for p's segments (local pass + carry) when there are several; E, S allocated here.
template <typename T>
void chunk_segment_starts(ChunkParams& p, Tensor& E, Tensor& S, const Device& dev) {
  if (p.nseg <= 1) return;
  alloc_segment_ends(p, E, S, dev);
  launch_chunk<T, true>(p);
  carry_segments(p, false);
}

// The sequential kernels' plan (seq_fwd_kernel / seq_bwd_kernel: N 12-16, blocks of 32 channels): 0 where their
// chunked counterparts (blocks of 16) run instead, else how many time segments of whole 64-step chunks a row is cut
// into. A block runs a whole segment, so a part-filled last wave costs a whole one:
//   - segments: as many as env SSM_SCAN_SEQ_SEGS asks, else 1 (whole rows), each at the price of a local pass (the
//     forward's state, or the backward's adjoint, from zero over the segment) and a carry. Not yet timed on a GPU
//     (written in the sixteenth session, which got no device time): once timed, the default should become
//     qslots / qblocks where whole rows fill less than half a wave (one full wave; 8 at (1, 2048, 65536)), as
//     set_chunk_segments does for the chunked forward;
//   - they run where their blocks, with those segments, fill their waves at least 1 / 1.35 as well as the chunked
//     kernels' (1 + kSeqLocal the segments' cost where there are several); or, where the chunked kernels' blocks fill
//     less than half a wave (the legacy kernels' ground: selective_scan_cuda.cu), wherever rows are cut in segments.
// Measured for the backward (H100, 2026-12-07): at 0.73 of a wave (the 130M LM's (8, 1536, 2048)) seq_bwd_kernel still
// beat chunk_bwd_kernel's 2.9 waves (1.654 against 1.709 ms forward+backward); at 0.36 of a wave ((2, 3072, 8192)) it
// lost (5.18 against 3.73). `env` (always / never) overrides.
// Segments of whole 64-step chunks (nq of them) as near `want` as leaves none empty: ceil(nq / ceil(nq / want)).
int64_t seq_segment_count(int64_t nq, int64_t want) {
  const int64_t segs = std::clamp<int64_t>(want, 1, nq), cps = (nq + segs - 1) / segs;
  return (nq + cps - 1) / cps;
}
constexpr double kSeqLocal = 0.4;  // a local pass's cost, as a share of the full pass's (an estimate)
struct SeqPlan {
  int64_t segs = 0;       // 0: the chunked kernels
  bool chunk_few = false;  // the chunked kernels' blocks fill less than half a wave
  int resident = 1;       // the sequential kernel's resident blocks an SM (seq_local_pass)
};
template <typename KS, typename KC>
SeqPlan seq_plan(const ChunkParams& p, KS* seq_kernel, size_t seq_smem, KC* chunk_kernel_, size_t chunk_smem_,
                 int chunk_threads, const char* env) {
  SeqPlan plan;
  if (seq_smem > 48 * 1024)
    SSM_CUDA_CHECK(cudaFuncSetAttribute(seq_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(seq_smem)));
  if (chunk_smem_ > 48 * 1024)
    SSM_CUDA_CHECK(cudaFuncSetAttribute(chunk_kernel_, cudaFuncAttributeMaxDynamicSharedMemorySize, int(chunk_smem_)));
  int qres = 0, cres = 0;
  SSM_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&qres, seq_kernel, kQThr, seq_smem));
  SSM_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&cres, chunk_kernel_, chunk_threads, chunk_smem_));
  plan.resident = std::max(1, qres);
  const int64_t sms = ::ssm::cuda::sm_count(), qslots = plan.resident * sms, cslots = std::max(1, cres) * sms;
  const int64_t qblocks = p.Bt * p.G * ((p.Dg + kQC - 1) / kQC), cblocks = p.Bt * p.G * ((p.Dg + kCB - 1) / kCB);
  plan.chunk_few = 2 * cblocks < cslots;
  if (p.N > 16) return plan;
  const char* e = std::getenv(env);
  if (e && std::strcmp(e, "never") == 0) return plan;
  const int64_t nq = (p.L + kQT - 1) / kQT;
  const int64_t segs = seq_segment_count(nq, env_int("SSM_SCAN_SEQ_SEGS", 1));
  if (e && std::strcmp(e, "always") == 0) return plan.segs = segs, plan;
  // They compute 16 states whatever N is: below 12, the chunked kernels' N-state loops do less work than their
  // speed-up at N = 16 (1.6x forward, 1.3x backward) makes up (an estimate; not measured below N = 16).
  if (p.N < 12) return plan;
  auto fill = [](int64_t n, int64_t per_wave) {  // the share of the waves' slots that n blocks use
    return double(n) / double((n + per_wave - 1) / per_wave * per_wave);
  };
  const double qfill = fill(qblocks * segs, qslots);
  const bool wins = plan.chunk_few ? segs > 1
                                   : 1.35 * qfill / (segs > 1 ? 1 + kSeqLocal : 1.0) >= fill(cblocks, cslots);
  if (wins) plan.segs = segs;
  return plan;
}

// Cuts p's rows into `segs` segments for the sequential kernels (seq_segment_count's, p.cps chunks of 64 steps each).
void set_seq_segments(ChunkParams& p, int64_t segs) {
  const int64_t nq = (p.L + kQT - 1) / kQT;
  p.nj = int((p.Dg + kQC - 1) / kQC);
  p.cps = (nq + segs - 1) / segs;
  p.nseg = seq_segment_count(nq, segs);
  p.Ein = nullptr;
  p.nloc = p.nseg;
  p.lsub = 1;
}

// The local pass before a sequential kernel's segmented full pass (the forward's state, or with `adjoint` the
// backward's adjoint, from zero over each segment), then the carry; p.Ein is then the carried values. The local
// kernels hold twice the blocks an SM that the full passes do (64 registers against 128), so their segments are cut
// k times finer (k = the ratio of the two kernels' resident blocks, or the largest divisor of p.cps below it; env
// SSM_SCAN_LOCAL_SPLIT overrides): the same waves with k times the warps (the sequential kernels are latency-bound:
// measured 2.1x slower a step at 0.36 of a wave than at a full one). The full pass reads every k-th carried value
// (seq_load_segment). E, S: the local pass's outputs, kept until the full pass has run.
// full_resident: the full pass's resident blocks an SM (SeqPlan::resident).
template <typename KL>
void seq_local_pass(ChunkParams& p, bool adjoint, KL* local_kernel, size_t local_smem, int full_resident, Tensor& E,
                    Tensor& S, const Device& dev) {
  int lres = 0;
  SSM_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&lres, local_kernel, kQThr, local_smem));
  int64_t k = std::max<int64_t>(1, env_int("SSM_SCAN_LOCAL_SPLIT", std::max(1, lres) / full_resident));
  while (p.cps % k) --k;
  const int64_t nq = (p.L + kQT - 1) / kQT;
  ChunkParams lp = p;
  lp.cps = p.cps / k;
  lp.nseg = (nq + lp.cps - 1) / lp.cps;
  if (!adjoint) lp.z = nullptr;  // the forward's local pass needs no gate (the adjoint's stages gy silu(z))
  alloc_segment_ends(lp, E, S, dev);
  // Every local segment but the one whose result nothing reads (carry_kernel).
  const dim3 grid(unsigned(p.G * p.nj), unsigned(p.Bt), unsigned(lp.nseg - 1));
  local_kernel<<<grid, kQThr, local_smem, stream()>>>(lp);
  SSM_CUDA_LAUNCH_CHECK();
  carry_segments(lp, adjoint);
  p.Ein = lp.Ein;
  p.nloc = lp.nseg;
  p.lsub = k;
}

template <typename H>
void forward_t(const ScanInputs& in, const ScanOptions& opt, Tensor& y, Tensor& h_last, SegmentStarts* starts) {
  using T = typename DevT<H>::type;
  ChunkParams p = make_chunk_params(in, opt);
  // The forward keeps the state entering every `every`-th chunk for the backward: Bt L D N 4 / (128 every)
  // bytes, i.e. 1/128 of an f32 state per step at N <= 16 and no more at larger N.
  p.every = std::max(1, p.Np / 16);
  p.nsave = ((p.L + kTC - 1) / kTC + p.every - 1) / p.every;
  const SeqPlan plan = seq_plan(p, seq_fwd_kernel<T, false>, seq_fwd_smem(false), chunk_kernel<T, false>,
                                chunk_smem(int(sizeof(T)), p.N), kThr, "SSM_SCAN_SEQ_FWD");
  const bool seq = plan.segs > 0;
  Tensor E, S;
  if (!seq) {
    set_chunk_segments<T>(p, p.every);
    chunk_segment_starts<T>(p, E, S, in.u.device());
  }
  p.y = y.data_ptr();
  p.h_last = h_last.defined() ? h_last.data<float>() : nullptr;
  if (starts) {
    Tensor st = Tensor::empty({p.Bt, p.nsave, p.D, p.Np}, DType::f32, in.u.device());
    p.starts = st.data<float>();
    *starts = {st, kTC * p.every, Tensor()};
    if (p.every == 1) {  // N <= 16: the chunks' middles too, for seq_bwd_kernel
      starts->mids = Tensor::empty({p.Bt, p.nsave, p.D, p.Np}, DType::f32, in.u.device());
      p.mids = starts->mids.data<float>();
    }
  }
  if (!seq) return launch_chunk<T, false>(p);
  // Segments (seq_plan): a local pass, the carry, then the full pass from the carried states.
  set_seq_segments(p, plan.segs);
  const dim3 grid(unsigned(p.G * p.nj), unsigned(p.Bt), unsigned(p.nseg));
  if (p.nseg > 1)
    seq_local_pass(p, false, seq_fwd_kernel<T, true>, seq_fwd_smem(true), plan.resident, E, S, in.u.device());
  seq_fwd_kernel<T, false><<<grid, kQThr, seq_fwd_smem(false), stream()>>>(p);
  SSM_CUDA_LAUNCH_CHECK();
}

// Whether the forward's starts belong to these inputs, at segments of whole chunks.
bool starts_fit(const SegmentStarts* st, const ChunkParams& p) {
  return st && st->states.defined() && st->states.dim() == 4 && st->seg_len > 0 && st->seg_len % kTC == 0 &&
         st->states.size(0) == p.Bt && st->states.size(1) == (p.L + st->seg_len - 1) / st->seg_len &&
         st->states.size(2) == p.D && st->states.size(3) == p.Np;
}

// The full pass with the outputs p names, each segment starting from the forward's saved state when those fit,
// else from its own local pass and carries.
template <typename T>
void full_pass_from(ChunkParams& p, const SegmentStarts* starts, const Device& dev) {
  Tensor E, S;
  if (starts_fit(starts, p)) {
    p.nseg = starts->states.size(1);
    p.cps = starts->seg_len / kTC;
    p.Ein = starts->states.data<float>();
  } else {
    set_chunk_segments<T>(p, 1);
    chunk_segment_starts<T>(p, E, S, dev);
  }
  launch_chunk<T, false>(p);
}

template <typename H>
void checkpoints_t(const ScanInputs& in, const ScanOptions& opt, const SegmentStarts* starts, Tensor& ck) {
  using T = typename DevT<H>::type;
  ChunkParams p = make_chunk_params(in, opt);
  p.Np = int(ck.size(3));
  p.ck = ck.data<float>();
  p.nck = ck.size(1);
  SSM_CHECK(p.nck == (p.L + kK - 1) / kK && p.Np >= p.N, "selective_scan (CUDA): checkpoints ", shape_str(ck.shape()),
            " do not match L = ", p.L, ", N = ", p.N);
  if (p.Np > p.N) ck.zero_();  // the states past N: the other backward reads whole rows of Np
  full_pass_from<T>(p, starts, in.u.device());
}

// The state entering every chunk, (Bt, nchunks, D, Np): the forward's starts when it kept one per chunk (N <= 16),
// else a full pass without y that writes them (from the forward's coarser starts when they fit).
// With `mids`, the state at every chunk's middle as well (the forward's when it kept them).
template <typename T>
Tensor chunk_states(const ScanInputs& in, const ScanOptions& opt, const SegmentStarts* starts, Tensor* mids = nullptr) {
  ChunkParams p = make_chunk_params(in, opt);
  if (starts_fit(starts, p) && starts->seg_len == kTC && (!mids || starts->mids.defined())) {
    if (mids) *mids = starts->mids;
    return starts->states;
  }
  const int64_t nchunks = (p.L + kTC - 1) / kTC;
  Tensor out = Tensor::empty({p.Bt, nchunks, p.D, p.Np}, DType::f32, in.u.device());
  p.starts = out.data<float>();
  if (mids) {
    *mids = Tensor::empty({p.Bt, nchunks, p.D, p.Np}, DType::f32, in.u.device());
    p.mids = mids->data<float>();
  }
  p.every = 1;
  p.nsave = nchunks;
  full_pass_from<T>(p, starts, in.u.device());
  return out;
}

template <typename H>
bool backward_t(const ScanInputs& in, const Tensor& grad_y, const Tensor& grad_h_last, const ScanOptions& opt,
                ScanGrads& gr, const SegmentStarts* starts) {
  using T = typename DevT<H>::type;
  ChunkParams p = make_chunk_params(in, opt);
  const auto kernel = chunk_bwd_kernel<T>;
  const size_t smem = chunk_bwd_smem(int(sizeof(T)), p.N);
  // N <= 16: the sequential backward (seq_plan, which also lets both kernels have their shared memory). Otherwise
  // whole rows only: with fewer blocks than half a wave the other backward (which cuts rows in time) is faster.
  const SeqPlan plan = seq_plan(p, seq_bwd_kernel<T>, seq_bwd_smem(int(sizeof(T))), kernel, smem, kThr, "SSM_SCAN_SEQ_BWD");
  const bool seq = plan.segs > 0;
  const char* mode = std::getenv("SSM_SCAN_CHUNK_BWD");  // "always" / "never" override the rule (tests, benches)
  if (mode && std::strcmp(mode, "never") == 0) return false;
  if (!seq && plan.chunk_few && !(mode && std::strcmp(mode, "always") == 0)) return false;
  const Device dev = in.u.device();
  Tensor hmid;
  const Tensor hs = chunk_states<T>(in, opt, starts, seq ? &hmid : nullptr);
  p.Hs = hs.data<float>();
  if (seq) p.Hmid = hmid.data<float>();
  p.gy = grad_y.data_ptr();
  p.gh = grad_h_last.defined() ? grad_h_last.data<float>() : nullptr;
  const int64_t Bt = p.Bt, L = p.L, D = p.D, N = p.N, G = p.G;
  alloc_scan_grads(p, in, gr);
  // seq_bwd_kernel's segments (seq_plan): the adjoint's local pass and reverse carry first.
  int64_t nparts = Bt;
  Tensor E, S;
  if (seq) {
    set_seq_segments(p, plan.segs);
    nparts = Bt * p.nseg;
    if (p.nseg > 1)
      seq_local_pass(p, true, seq_adj_kernel<T>, seq_adj_smem(), plan.resident, E, S, dev);
  }
  Tensor gB = Tensor::zeros({Bt, G, N, L}, DType::f32, dev), gC = Tensor::zeros({Bt, G, N, L}, DType::f32, dev);
  Tensor gAp = Tensor::empty({nparts, D, N}, DType::f32, dev);
  Tensor gDp = Tensor::empty({nparts, D}, DType::f32, dev), gdbp = Tensor::empty({nparts, D}, DType::f32, dev);
  p.gB = gB.data<float>();
  p.gC = gC.data<float>();
  p.gAp = gAp.data<float>();
  p.gDp = gDp.data<float>();
  p.gdbp = gdbp.data<float>();
  if (seq) {
    seq_bwd_kernel<T><<<dim3(unsigned(G * p.nj), unsigned(Bt), unsigned(p.nseg)), kQThr, seq_bwd_smem(int(sizeof(T))),
                        stream()>>>(p);
  } else {
    kernel<<<dim3(1u, unsigned(G * p.nj), unsigned(Bt)), kThr, smem, stream()>>>(p);
  }
  SSM_CUDA_LAUNCH_CHECK();
  for (auto [acc, out] : {std::pair{p.gB, &gr.B}, std::pair{p.gC, &gr.C}}) {
    bc_grad_kernel<<<blocks_for(Bt * L * G * N, 256), 256, 0, stream()>>>(acc, Bt, L, G, N, out->data_ptr(), p.bc);
    SSM_CUDA_LAUNCH_CHECK();
  }
  sum_param_grads(gr, p.gAp, p.gDp, p.gdbp, nparts);
  return true;
}

// Whether the chunked scan's pass runs rather than selective_scan_cuda.cu's: where the chunked forward's blocks of
// whole rows fill half a wave (for both passes, so that the backward finds the forward's saved states), or where the
// pass's sequential kernel runs (seq_plan: cut into time segments, its blocks fill half a wave at few rows).
template <typename T>
bool chunked_runs_t(const ScanInputs& in, bool backward) {
  const ChunkParams p = make_chunk_params(in, ScanOptions{});
  const int tsz = int(sizeof(T));
  const SeqPlan fwd = seq_plan(p, seq_fwd_kernel<T, false>, seq_fwd_smem(false), chunk_kernel<T, false>,
                               chunk_smem(tsz, p.N), kThr, "SSM_SCAN_SEQ_FWD");
  if (!fwd.chunk_few) return true;
  if (!backward) return fwd.segs > 0;
  return seq_plan(p, seq_bwd_kernel<T>, seq_bwd_smem(tsz), chunk_bwd_kernel<T>, chunk_bwd_smem(tsz, p.N), kThr,
                  "SSM_SCAN_SEQ_BWD").segs > 0;
}

}  // namespace

void chunked_forward(const ScanInputs& in, const ScanOptions& opt, Tensor& y, Tensor& h_last, SegmentStarts* starts) {
  switch (in.u.dtype()) {
    case DType::f32: return forward_t<float>(in, opt, y, h_last, starts);
    case DType::bf16: return forward_t<bf16_t>(in, opt, y, h_last, starts);
    case DType::f16: return forward_t<f16_t>(in, opt, y, h_last, starts);
    default: SSM_CHECK(false, "selective_scan (CUDA): unsupported dtype ", dtype_name(in.u.dtype()));
  }
}

void chunked_checkpoints(const ScanInputs& in, const ScanOptions& opt, const SegmentStarts* starts, Tensor& ck) {
  switch (in.u.dtype()) {
    case DType::f32: return checkpoints_t<float>(in, opt, starts, ck);
    case DType::bf16: return checkpoints_t<bf16_t>(in, opt, starts, ck);
    case DType::f16: return checkpoints_t<f16_t>(in, opt, starts, ck);
    default: SSM_CHECK(false, "selective_scan (CUDA): unsupported dtype ", dtype_name(in.u.dtype()));
  }
}

bool chunked_runs(const ScanInputs& in, bool backward) {
  switch (in.u.dtype()) {
    case DType::f32: return chunked_runs_t<float>(in, backward);
    case DType::bf16: return chunked_runs_t<__nv_bfloat16>(in, backward);
    default: return chunked_runs_t<__half>(in, backward);
  }
}

bool chunked_backward(const ScanInputs& in, const Tensor& grad_y, const Tensor& grad_h_last, const ScanOptions& opt,
                      ScanGrads& grads, const SegmentStarts* starts) {
  if (opt.deterministic) return false;
  switch (in.u.dtype()) {
    case DType::f32: return backward_t<float>(in, grad_y, grad_h_last, opt, grads, starts);
    case DType::bf16: return backward_t<bf16_t>(in, grad_y, grad_h_last, opt, grads, starts);
    case DType::f16: return backward_t<f16_t>(in, grad_y, grad_h_last, opt, grads, starts);
    default: SSM_CHECK(false, "selective_scan (CUDA): unsupported dtype ", dtype_name(in.u.dtype()));
  }
  return false;
}

}  // namespace ssm::kernels::cuda
