// Selective scan (Mamba-1 S6) on CUDA: forward and backward (math in selective_scan.h).
//
// Thread layout (every kernel): one thread per (b, channel d, tile of kS = 16 states). The Tn = Np / 16
// threads of one channel are adjacent lanes (Np = N rounded up to a power of two >= 16, Tn in
// {1, 2, 4, 8, 16}); at N <= 16 a lane is a whole channel, so a warp is 32 consecutive channels and the
// per-(b, t, d) loads and stores (u, delta, z, y, grads) are coalesced straight from global memory. Sums
// over n (y, gu, gdt) are xor-shuffles over the Tn lanes (none at N <= 16). A block of 128 threads holds
// CB = 128 / Tn channels of ONE group g, so B_t, C_t are the same for the whole block: they are staged
// per time tile in shared memory as f32 and read as float4 broadcasts. The state (16 f32 per thread)
// lives in registers; decays are exp2(dt * A log2 e) with ex2.approx (16 independent MUFU ops per step).
// All offsets are 64-bit.
//
// Time parallelism. A row's L steps are cut into nseg segments of Ks steps (grid = (segment, channel
// block, batch row)); nseg = 1 only when Bt * D alone gives ~3 blocks per SM, else enough segments for
// ~4, never more blocks than fit on the GPU at once (set_segments):
//   local pass (fwd_kernel<0>): each segment from a zero state -> its end state E_s and S_s = sum dt
//                               (NaN when the segment holds a reset, i.e. its carry multiplier is 0).
//   carry kernel:               per (b, d, n), sequential over segments: start_s = h; h = P_s h + E_s with
//                               P_s = exp(A S_s) (the product of the segment's decays); ends in h_last.
//   full pass (fwd_kernel<1>):  each segment from its true start state, writing y (and h_last).
// Forward tiles of tf steps: the next tile's raw u / delta / z rows and B / C rows are copied into the other
// half of a double-buffered shared tile with cp.async (no registers held while in flight) while the current
// tile is computed; B / C are converted to f32 once per tile for the block. (An earlier version held the
// next tile in registers; ptxas let the loads stall the warps, 2x slower.)
// The chunked scan (scan_chunked_cuda.cu) is the other implementation of the forward and the backward (and of
// this file's checkpoint pass when chosen): see impl_for below for which runs.
//
// Backward (8 states per thread, pieces of P = 8 steps, set_bwd_layout; two segmentations, each fitted to
// its kernels):
//   1. checkpoints: the full forward pass again without y, storing the state before every P-th step
//      (Bt, L / P, D, Np) f32 (after a local pass + carry when nseg > 1).
//   2. (nseg > 1) adjoint local pass (fwd_kernel<2>): per segment of the main pass, in reverse from a zero carry,
//      F_s = m_{t0} dh_{t0} (dh_t = C_t gy_t + m_{t+1} dh_{t+1}, m_t = exp(dt_t A), 0 at a reset); the carry
//      kernel turns these into the adjoint entering each segment's last step (X_last = grad h_last,
//      X_{s-1} = P_s X_s + F_s).
//   3. main pass (bwd_kernel): per block, pieces from last to first. A piece stages its steps' dt, u,
//      gy = g silu(z), gz factor, sigmoid(delta) for the thread's channel and B_t, C_t of the group in
//      shared memory, recomputes h forward from the checkpoint storing h before every step in shared
//      memory, then sweeps in reverse with the adjoint X (= m_{t+1} dh_{t+1}) in registers:
//        dh = C gy + X;  hd = m_t h_{t-1};  gA += dt dh hd;  gdt = sum_n dh (A hd + B u);
//        gu = dt sum_n dh B + D gy;  gB_t(d) = dh dt u;  gC_t(d) = gy h_t;  X <- m_t dh.
//      gB / gC (16 values per lane and step) are summed over the warp's channels by a butterfly
//      reduce-scatter (8 + 4 + 2 + 1 shuffles leave one sum per lane at N <= 16), then over the block's warps
//      through shared memory once per piece; the block's sum goes by atomicAdd into one f32 buffer
//      (default) or to a per-block partial summed in fixed order (deterministic). gA, gD, gdelta_bias:
//      per-thread register accumulators, one partial per (b, segment) summed in fixed order; grad h0 is
//      the adjoint left after step 0. So opt.deterministic only changes gB / gC's last step.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

#include "kernels/common/cuda_utils.cuh"
#include "kernels/selective_scan/selective_scan_cuda.h"
#include "kernels/selective_scan/scan_chunked_cuda.h"
#include "kernels/selective_scan/scan_cuda_common.cuh"

namespace ssm::kernels::cuda {
namespace {

constexpr int kS = 16;                 // states per thread tile (Np is a multiple)
constexpr int kDefaultFwdKF = 16;      // forward passes: states per thread (set_fwd_layout)
constexpr int kThreads = 128;          // threads per block
constexpr int kWarps = kThreads / 32;  // warps per block
constexpr int kTF = 16;                // forward: steps per tile (tf = min(kTF, 512 / Np) at run time; see fwd_kernel_for)


struct Params {
  const void *u, *delta, *z, *B, *C, *gy;
  const float *A, *Dskip, *dbias, *h0, *gh;
  const int32_t* seq;
  int64_t Bt, L, D, G, N, Dg;
  int Np, Tn, CB, nj, tf, P, bc;  // tf: forward tile; P: backward piece / checkpoint interval; bc: B/C dtype
  int kf;                         // forward passes: states per thread (4, 8 or 16; Tn = Np / kf)
  int64_t nseg, Ks, nck;          // segments per row, steps per segment, checkpoints per row
  bool softplus, det;
  int tsz, unit_x, unit_bc;  // sizeof(T); forward tiles: cp.async unit (16, 4 or 0 = synchronous) for delta/u/z/g rows, B/C rows
  void* y;
  float* h_last;
  float* ck;         // (Bt, nck, D, Np): state before step c P
  float *E, *S, *F;  // (Bt, nseg, D, Np), (Bt, nseg, D), (Bt, nseg, D, Np)
  void *gu, *gdelta, *gz;
  float *gBp, *gCp;          // partials (nj, Bt, L, G, N) or accumulators (Bt, L, G, N)
  float *gAp, *gDp, *gdbp;   // (Bt nseg, D, N), (Bt nseg, D), (Bt nseg, D)
  float* gh0;
};

// Where this thread sits.
struct Pos {
  int64_t b, s, d, dbase;
  int g, j, cl, k, nvalid;
  bool valid;
};
__device__ __forceinline__ Pos position(const Params& p) {
  Pos q;
  q.b = blockIdx.z;
  q.s = blockIdx.x;
  const int jb = blockIdx.y;
  q.g = jb / p.nj;
  q.j = jb % p.nj;
  q.cl = threadIdx.x / p.Tn;
  q.k = threadIdx.x % p.Tn;
  q.dbase = int64_t(q.g) * p.Dg + int64_t(q.j) * p.CB;
  q.nvalid = int(min(int64_t(p.CB), p.Dg - int64_t(q.j) * p.CB));
  q.valid = q.cl < q.nvalid;
  q.d = q.dbase + q.cl;
  return q;
}

// K consecutive floats (K a multiple of 4, 16-byte aligned) between memory and registers.
template <int K>
__device__ __forceinline__ void loadv(const float* p, float* v) {
#pragma unroll
  for (int j = 0; j < K / 4; ++j) {
    const float4 a = reinterpret_cast<const float4*>(p)[j];
    v[4 * j] = a.x, v[4 * j + 1] = a.y, v[4 * j + 2] = a.z, v[4 * j + 3] = a.w;
  }
}
template <int K>
__device__ __forceinline__ void storev(float* p, const float* v) {
#pragma unroll
  for (int j = 0; j < K / 4; ++j)
    reinterpret_cast<float4*>(p)[j] = make_float4(v[4 * j], v[4 * j + 1], v[4 * j + 2], v[4 * j + 3]);
}
__device__ __forceinline__ bool reset_at(const Params& p, int64_t b, int64_t t) {
  return p.seq && t > 0 && p.seq[b * p.L + t] != p.seq[b * p.L + t - 1];
}

// Asynchronous global -> shared copies (cp.async, no registers held while in flight); plain copies where the
// host compiles this file (tests/emu).
__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
#ifdef __CUDA_ARCH__
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(src));
#else
  std::memcpy(dst, src, 16);
#endif
}
__device__ __forceinline__ void cp_async4(void* dst, const void* src) {
#ifdef __CUDA_ARCH__
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(d), "l"(src));
#else
  std::memcpy(dst, src, 4);
#endif
}
#ifdef __CUDA_ARCH__
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }
#else
__device__ __forceinline__ void cp_async_commit() {}
__device__ __forceinline__ void cp_async_wait_all() {}
#endif

// Copy `rows` rows of `rbytes` bytes (global row r at src + r * sstride bytes) to dst + r * dstride, spread
// over the block's threads: 16- or 4-byte cp.async units when `unit` says the rows allow it, else
// synchronous 2-byte copies (visible after the next barrier either way).
__device__ __forceinline__ void copy_rows(char* dst, int dstride, const char* src, int64_t sstride, int rows, int rbytes,
                                          int unit) {
  if (unit == 16) {
    const int upr = rbytes >> 4;
    for (int e = threadIdx.x; e < rows * upr; e += kThreads) {
      const int r = e / upr, c = e - r * upr;
      cp_async16(dst + r * dstride + c * 16, src + r * sstride + c * 16);
    }
  } else if (unit == 4) {
    const int upr = rbytes >> 2;
    for (int e = threadIdx.x; e < rows * upr; e += kThreads) {
      const int r = e / upr, c = e - r * upr;
      cp_async4(dst + r * dstride + c * 4, src + r * sstride + c * 4);
    }
  } else {
    const int upr = rbytes >> 1;
    for (int e = threadIdx.x; e < rows * upr; e += kThreads) {
      const int r = e / upr, c = e - r * upr;
      *reinterpret_cast<unsigned short*>(dst + r * dstride + c * 2) =
          *reinterpret_cast<const unsigned short*>(src + r * sstride + c * 2);
    }
  }
}
__device__ __forceinline__ float ldsm(const float* p, int i) { return p[i]; }
__device__ __forceinline__ float ldsm(const __nv_bfloat16* p, int i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ float ldsm(const __half* p, int i) { return __half2float(p[i]); }

// Forward shared memory (bytes) for tiles of up to TF steps: raw tiles of delta / u-or-g / z [2][3][TF][CB] in T,
// raw B / C [2][2][tf * N] in B's dtype (4 bytes reserved per element), f32 B / C [TF][2 Np], reset flags [2][TF].
__host__ __device__ inline size_t fwd_raw_bytes(int CB, int tsz, int TF) { return size_t(2) * 3 * TF * CB * tsz; }
__host__ __device__ inline size_t fwd_smem_bytes(int CB, int tsz, int tf, int N, int Np, int TF) {
  return fwd_raw_bytes(CB, tsz, TF) + size_t(2) * 2 * tf * N * 4 + size_t(TF) * 2 * Np * 4 + 2 * TF * 4 + 64;
}

// Scan over one segment, in tf-step tiles (tf <= TF, the tile's capacity: 16 for the forward's passes at N <= 32,
// 8 for the backward's, which checkpoint every P = 8 steps at tile starts). Tile it + 1's raw inputs are copied
// asynchronously into the other half of a double buffer while tile it is computed; at the top of each tile B / C
// are converted to f32 once for the block.
// MODE 0: local forward from a zero state -> E (end state), S (sum dt, NaN if reset).
// MODE 1: full forward from the true start -> y (when p.y), checkpoints (when p.ck), h_last.
// MODE 2: local adjoint in reverse from a zero carry -> F = m_{t0} dh_{t0}, and S as in MODE 0.
// A reset at step t is folded into the decay: exp2(dt A2 + (-inf)) = 0.
template <typename T, int MODE, int KF, int TF>
__global__ void __launch_bounds__(kThreads) fwd_kernel(Params p) {
  float4* const sm4 = dynamic_smem<float4>();
  const int Np = p.Np, tf = p.tf, tid = threadIdx.x, CB = p.CB;
  char* base = reinterpret_cast<char*>(sm4);
  T* raw = reinterpret_cast<T*>(base);                                          // [2][3][TF][CB]
  char* rbc = base + fwd_raw_bytes(CB, sizeof(T), TF);                          // [2][2][tf N] raw B / C
  const int bsz = p.bc == 0 ? 4 : 2;
  float* sbc = reinterpret_cast<float*>(rbc + size_t(2) * 2 * tf * p.N * 4);  // [TF][2 Np]
  int* srs = reinterpret_cast<int*>(sbc + TF * 2 * Np);                         // [2][TF]
  const Pos q = position(p);
  const int64_t t0 = q.s * p.Ks, t1 = min(p.L, t0 + p.Ks);
  const int64_t ntile = (t1 - t0 + tf - 1) / tf;
  const T* srcs[3] = {static_cast<const T*>(p.delta), static_cast<const T*>(MODE == 2 ? p.gy : p.u),
                      static_cast<const T*>(p.z)};
  const int64_t sb = (q.b * p.nseg + q.s) * p.D + q.d;  // (b, s, d) in E / S / F
  float A2[KF], h[KF];
#pragma unroll
  for (int i = 0; i < KF; ++i) {
    const int n = q.k * KF + i;
    const bool ok = q.valid && n < p.N;
    A2[i] = ok ? p.A[q.d * p.N + n] * kLog2e : 0.f;
    h[i] = 0.f;
    if (MODE == 1 && ok) {
      if (p.nseg > 1) h[i] = p.E[sb * Np + n];
      else if (p.h0) h[i] = p.h0[(q.b * p.D + q.d) * p.N + n];
    }
  }
  const float bias = (p.dbias && q.valid) ? p.dbias[q.d] : 0.f;
  const float Dv = (p.Dskip && q.valid) ? p.Dskip[q.d] : 0.f;
  const int bcw = 2 * Np;
  const bool hasz = p.z != nullptr;

  auto tile_start = [&](int64_t it) { return MODE == 2 ? t0 + (ntile - 1 - it) * tf : t0 + it * tf; };
  // Start the copies of tile it into buffer it & 1.
  auto issue = [&](int64_t it) {
    const int buf = int(it & 1);
    const int64_t ta = tile_start(it);
    const int len = int(min(int64_t(tf), t1 - ta));
    const int rb = q.nvalid * int(sizeof(T));
#pragma unroll
    for (int a = 0; a < 3; ++a) {
      if (a == 2 && !hasz) continue;
      copy_rows(reinterpret_cast<char*>(raw + (size_t(buf) * 3 + a) * TF * CB), CB * int(sizeof(T)),
                reinterpret_cast<const char*>(srcs[a] + (q.b * p.L + ta) * p.D + q.dbase), p.D * int64_t(sizeof(T)),
                len, rb, p.unit_x);
    }
#pragma unroll
    for (int w = 0; w < 2; ++w)
      copy_rows(rbc + (size_t(buf) * 2 + w) * tf * p.N * bsz, int(p.N) * bsz,
                static_cast<const char*>(w ? p.C : p.B) + ((q.b * p.L + ta) * p.G + q.g) * p.N * bsz,
                p.G * p.N * int64_t(bsz), len, int(p.N) * bsz, p.unit_bc);
    if (tid < TF) srs[buf * TF + tid] = (tid < len && reset_at(p, q.b, ta + tid)) ? 1 : 0;
    cp_async_commit();
  };

  T* y = static_cast<T*>(p.y);
  float sumdt = 0.f;
  bool reset = false;
  issue(0);
  for (int64_t it = 0; it < ntile; ++it) {
    const int buf = int(it & 1);
    const int64_t ta = tile_start(it);
    const int len = int(min(int64_t(tf), t1 - ta));
    cp_async_wait_all();
    __syncthreads();  // tile it landed; everyone is done with tile it - 1
    if (it + 1 < ntile) issue(it + 1);
    {  // B / C of tile it to f32 [step][B n | C n], zero past N
      const char* rb = rbc + size_t(buf) * 2 * tf * p.N * bsz;
      for (int e = tid; e < tf * bcw; e += kThreads) {
        const int st_ = e / bcw, rem = e - st_ * bcw, w = rem >= Np ? 1 : 0, n = rem - w * Np;
        float v = 0.f;
        if (n < p.N && st_ < len) {
          const int i = (w * tf + st_) * int(p.N) + n;
          v = p.bc == 0 ? reinterpret_cast<const float*>(rb)[i]
              : p.bc == 1 ? __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(rb)[i])
                          : __half2float(reinterpret_cast<const __half*>(rb)[i]);
        }
        sbc[e] = v;
      }
    }
    __syncthreads();
    const T* rd = raw + (size_t(buf) * 3 + 0) * TF * CB;
    const T* rx = raw + (size_t(buf) * 3 + 1) * TF * CB;
    const T* rz = raw + (size_t(buf) * 3 + 2) * TF * CB;
    const int* rs = srs + buf * TF;
    if (MODE == 1 && p.ck && q.valid && ta % p.P == 0)
      storev<KF>(p.ck + ((q.b * p.nck + ta / p.P) * p.D + q.d) * Np + q.k * KF, h);
    const int cl = q.valid ? q.cl : 0;
    if (MODE != 2) {
#pragma unroll
      for (int i = 0; i < TF; ++i) {
        if (i < len) {
          float dt = ldsm(rd, i * CB + cl) + bias;
          if (p.softplus) dt = softplus_f(dt);
          const float uu = q.valid ? ldsm(rx, i * CB + cl) : 0.f, du = dt * uu;
          float off = 0.f;
          if (p.seq && rs[i]) {
            reset = true;
            off = -INFINITY;
          }
          float Bv[KF];
          loadv<KF>(sbc + i * bcw + q.k * KF, Bv);
          if (MODE == 0) {
            sumdt += dt;
#pragma unroll
            for (int n = 0; n < KF; ++n) h[n] = fmaf(ex2(fmaf(dt, A2[n], off)), h[n], du * Bv[n]);
          } else if (y) {
            float Cv[KF];
            loadv<KF>(sbc + i * bcw + Np + q.k * KF, Cv);
            float acc = 0.f;
#pragma unroll
            for (int n = 0; n < KF; ++n) {
              h[n] = fmaf(ex2(fmaf(dt, A2[n], off)), h[n], du * Bv[n]);
              acc = fmaf(Cv[n], h[n], acc);
            }
            acc = lane_sum(acc, p.Tn);
            if (q.k == 0 && q.valid) {
              float out = fmaf(Dv, uu, acc);
              if (hasz) {
                const float zz = ldsm(rz, i * CB + cl);
                out *= zz * sigmoid_f(zz);
              }
              st(y, (q.b * p.L + ta + i) * p.D + q.d, out);
            }
          } else {
#pragma unroll
            for (int n = 0; n < KF; ++n) h[n] = fmaf(ex2(fmaf(dt, A2[n], off)), h[n], du * Bv[n]);
          }
        }
      }
    } else {
#pragma unroll
      for (int i = TF - 1; i >= 0; --i) {
        if (i < len) {
          float dt = ldsm(rd, i * CB + cl) + bias;
          if (p.softplus) dt = softplus_f(dt);
          float gy = q.valid ? ldsm(rx, i * CB + cl) : 0.f;
          if (hasz) {
            const float zz = ldsm(rz, i * CB + cl);
            gy *= zz * sigmoid_f(zz);
          }
          float off = 0.f;
          if (p.seq && rs[i]) {
            reset = true;
            off = -INFINITY;
          }
          sumdt += dt;
          float Cv[KF];
          loadv<KF>(sbc + i * bcw + Np + q.k * KF, Cv);
#pragma unroll
          for (int n = 0; n < KF; ++n) h[n] = ex2(fmaf(dt, A2[n], off)) * fmaf(Cv[n], gy, h[n]);  // h: adjoint X
        }
      }
    }
  }
  if (!q.valid) return;
  if (MODE == 0) {
    storev<KF>(p.E + sb * Np + q.k * KF, h);
    if (q.k == 0) p.S[sb] = reset ? __int_as_float(0x7fc00000) : sumdt;
  } else if (MODE == 2) {
    storev<KF>(p.F + sb * Np + q.k * KF, h);
    if (q.k == 0) p.S[sb] = reset ? __int_as_float(0x7fc00000) : sumdt;
  } else if (p.h_last && q.s == p.nseg - 1) {
#pragma unroll
    for (int i = 0; i < KF; ++i) {
      const int n = q.k * KF + i;
      if (n < p.N) p.h_last[(q.b * p.D + q.d) * p.N + n] = h[i];
    }
  }
}

// Carries across segments, one thread per (b, d, n). Forward: E[s] <- start state of segment s, h_last.
// Backward: F[s] <- adjoint carry entering segment s's last step.
__global__ void carry_kernel(Params p, bool fwd, bool bwd) {
  const int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (idx >= p.Bt * p.D * p.N) return;
  const int64_t n = idx % p.N, d = (idx / p.N) % p.D, b = idx / (p.N * p.D);
  const float A2 = p.A[d * p.N + n] * kLog2e;
  const int64_t e0 = (b * p.nseg * p.D + d) * p.Np + n, s0 = b * p.nseg * p.D + d;
  if (fwd) {
    const float h = carry_through(p.E + e0, p.D * p.Np, p.S + s0, p.D, p.nseg, A2, p.h0 ? p.h0[idx] : 0.f, false);
    if (p.h_last) p.h_last[idx] = h;
  }
  if (bwd) carry_through(p.F + e0, p.D * p.Np, p.S + s0, p.D, p.nseg, A2, p.gh ? p.gh[idx] : 0.f, true);
}

// The main backward pass: kBwdKS states per thread (Tn = Np / kBwdKS lanes per channel), pieces of kBwdP
// steps (also the checkpoint interval).
constexpr int kBwdKS = 8;
constexpr int kBwdP = 8;

// Butterfly reduce-scatter of v[2 KS] (v[0 .. KS-1] = gB terms, v[KS .. 2KS-1] = gC terms of the lane's KS
// states) over the lanes of a warp that hold the same states (xor masks >= Tn). Level (kHalf, kMask): a
// lane keeps the upper half when its kMask bit is set and receives its partner's copy of that half.
// Leaves R = 2 KS Tn / 32 values: lane's value r is the warp's sum of original index
// r + (lane & ~(Tn - 1) & 31) * 2 KS / 32.
template <int kN, int kHalf, int kMask>
__device__ __forceinline__ void level(float (&v)[kN], int lane, int Tn) {
  if (kMask < Tn) return;
  const bool up = (lane & kMask) != 0;
#pragma unroll
  for (int i = 0; i < kHalf; ++i) {
    const float send = up ? v[i] : v[i + kHalf];
    const float keep = up ? v[i + kHalf] : v[i];
    v[i] = keep + __shfl_xor_sync(0xffffffffu, send, kMask);
  }
}
__device__ __forceinline__ void reduce_scatter(float (&v)[2 * kBwdKS], int lane, int Tn) {  // Tn >= 2
  level<16, 8, 16>(v, lane, Tn);
  level<16, 4, 8>(v, lane, Tn);
  level<16, 2, 4>(v, lane, Tn);
  level<16, 1, 2>(v, lane, Tn);
}

// Shared-memory layout of the main backward pass (floats): h [P][KS / 4][kThreads] float4, staged per-thread
// step values [4][P][kThreads] (dt, u, gy, gz factor), B/C [P][2 Np], gB/gC warp sums
// [P][kWarps][2 Np], reset flags [P].
__host__ __device__ inline size_t bwd_smem_floats(int Np) {
  constexpr int P = kBwdP, KS = kBwdKS;
  return size_t(P) * KS * kThreads + size_t(4) * P * kThreads + size_t(P) * 2 * Np + size_t(P) * kWarps * 2 * Np + P;
}

// Main backward pass. TN: lanes per channel known at compile time (2: N <= 16, the Mamba default), or 0 to
// read p.Tn (larger N). With TN fixed, the butterfly, the lane sums and every shared-memory index fold to
// constants; with Tn read at run time the per-step code carried ~4x the instructions of the math.
// Pieces always run P steps: steps past the end of the row are staged as no-ops (dt = u = gy = 0, B = C = 0:
// decay 1, no contributions), so both loops have a fixed trip count.
// At most 128 registers, so that 4 blocks share an SM (the shared memory's limit at N = 16).
template <typename T, int TN>
__global__ void __launch_bounds__(kThreads, 4) bwd_kernel(Params p) {
  float4* const sm4 = dynamic_smem<float4>();
  constexpr int KS = kBwdKS, P = kBwdP, KV = KS / 4;
  const int Tn = TN ? TN : p.Tn, Np = TN ? TN * KS : p.Np;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, bcw = 2 * Np;
  float4* sh = sm4;
  float* sst = reinterpret_cast<float*>(sh + size_t(P) * KV * kThreads);
  float* sbc = sst + size_t(4) * P * kThreads;
  float* red = sbc + size_t(P) * bcw;
  int* srs = reinterpret_cast<int*>(red + size_t(P) * kWarps * bcw);
  const Pos q = position(p);
  const int64_t t0 = q.s * p.Ks, t1 = min(p.L, t0 + p.Ks);
  const int64_t c0 = t0 / P, c1 = (t1 + P - 1) / P;
  const int64_t sb = (q.b * p.nseg + q.s) * p.D + q.d;
  float A2[KS], X[KS], gA[KS];
#pragma unroll
  for (int i = 0; i < KS; ++i) {
    const int n = q.k * KS + i;
    const bool ok = q.valid && n < p.N;
    A2[i] = ok ? p.A[q.d * p.N + n] * kLog2e : 0.f;
    X[i] = 0.f;
    if (ok) {
      if (p.nseg > 1) X[i] = p.F[sb * Np + n];
      else if (p.gh) X[i] = p.gh[(q.b * p.D + q.d) * p.N + n];
    }
    gA[i] = 0.f;
  }
  const float bias = (p.dbias && q.valid) ? p.dbias[q.d] : 0.f;
  const float Dv = (p.Dskip && q.valid) ? p.Dskip[q.d] : 0.f;
  const T* de = static_cast<const T*>(p.delta);
  const T* up = static_cast<const T*>(p.u);
  const T* gp = static_cast<const T*>(p.gy);
  const T* zp = static_cast<const T*>(p.z);
  T* gu = static_cast<T*>(p.gu);
  T* gdelta = static_cast<T*>(p.gdelta);
  T* gz = static_cast<T*>(p.gz);
  float gDacc = 0.f, gdbacc = 0.f;
  const int64_t bcn = p.Bt * p.L * p.G * p.N;
  const int R = 2 * KS * Tn / 32;                          // values per lane after the butterfly
  const int jbase = (lane & ~(Tn - 1) & 31) * 2 * KS / 32;  // their first original index

  for (int64_t c = c1 - 1; c >= c0; --c) {
    const int64_t ta = c * P;
    const int len = int(min(int64_t(P), t1 - ta));
    __syncthreads();  // the previous piece is done with shared memory
    float h[KS];
    if (q.valid) loadv<KS>(p.ck + ((q.b * p.nck + c) * p.D + q.d) * Np + q.k * KS, h);
    else {
#pragma unroll
      for (int n = 0; n < KS; ++n) h[n] = 0.f;
    }
    {  // Stage this thread's channel's steps (loads first, then the math and the stores).
      float xd[P], xu[P], xg[P], xz[P];
#pragma unroll
      for (int i = 0; i < P; ++i) {
        xd[i] = xu[i] = xg[i] = xz[i] = 0.f;
        if (i < len && q.valid) {
          const int64_t idx = (q.b * p.L + ta + i) * p.D + q.d;
          xd[i] = ld(de, idx);
          xu[i] = ld(up, idx);
          xg[i] = ld(gp, idx);
          if (zp) xz[i] = ld(zp, idx);
        }
      }
#pragma unroll
      for (int i = 0; i < P; ++i) {
        const float x = xd[i] + bias;
        float gy = xg[i], gzf = 0.f;
        if (zp) {
          const float sg = sigmoid_f(xz[i]);
          gy = xg[i] * xz[i] * sg;
          gzf = xg[i] * sg * (1.f + xz[i] * (1.f - sg));
        }
        const bool in = i < len;
        sst[(0 * P + i) * kThreads + tid] = in ? (p.softplus ? softplus_f(x) : x) : 0.f;
        sst[(1 * P + i) * kThreads + tid] = xu[i];
        sst[(2 * P + i) * kThreads + tid] = gy;
        sst[(3 * P + i) * kThreads + tid] = gzf;
      }
    }
    for (int e = tid; e < P * bcw; e += kThreads) {
      const int s = e / bcw, rem = e - s * bcw, w = rem >= Np ? 1 : 0, n = rem - w * Np;
      float v = 0.f;
      if (n < p.N && s < len) v = ld_any(w ? p.C : p.B, ((q.b * p.L + ta + s) * p.G + q.g) * p.N + n, p.bc);
      sbc[e] = v;
    }
    if (tid < P) srs[tid] = (tid < len && reset_at(p, q.b, ta + tid)) ? 1 : 0;
    __syncthreads();
    // Forward over the piece, keeping h before every step.
#pragma unroll
    for (int i = 0; i < P; ++i) {
#pragma unroll
      for (int j = 0; j < KV; ++j)
        sh[(i * KV + j) * kThreads + tid] = make_float4(h[4 * j], h[4 * j + 1], h[4 * j + 2], h[4 * j + 3]);
      const float dt = sst[i * kThreads + tid], du = dt * sst[(P + i) * kThreads + tid];
      const float off = (p.seq && srs[i]) ? -INFINITY : 0.f;
      float Bv[KS];
      loadv<KS>(sbc + i * bcw + q.k * KS, Bv);
#pragma unroll
      for (int n = 0; n < KS; ++n) h[n] = fmaf(ex2(fmaf(dt, A2[n], off)), h[n], du * Bv[n]);
    }
    // Reverse sweep.
#pragma unroll
    for (int i = P - 1; i >= 0; --i) {
      const float dt = sst[i * kThreads + tid], uu = sst[(P + i) * kThreads + tid];
      const float gy = sst[(2 * P + i) * kThreads + tid];
      const float du = dt * uu;
      const float off = (p.seq && srs[i]) ? -INFINITY : 0.f;
      float Bv[KS], Cv[KS], hp[KS];
      loadv<KS>(sbc + i * bcw + q.k * KS, Bv);
      loadv<KS>(sbc + i * bcw + Np + q.k * KS, Cv);
#pragma unroll
      for (int j = 0; j < KV; ++j) {
        const float4 a = sh[(i * KV + j) * kThreads + tid];
        hp[4 * j] = a.x, hp[4 * j + 1] = a.y, hp[4 * j + 2] = a.z, hp[4 * j + 3] = a.w;
      }
      float v[2 * KS];
      float ypre = 0.f, sdhB = 0.f, sdA = 0.f;
#pragma unroll
      for (int n = 0; n < KS; ++n) {
        const float m = ex2(fmaf(dt, A2[n], off));
        const float dh = fmaf(Cv[n], gy, X[n]);
        ypre = fmaf(Cv[n], h[n], ypre);
        const float w = dh * (m * hp[n]);
        gA[n] = fmaf(dt, w, gA[n]);
        sdA = fmaf(A2[n], w, sdA);
        sdhB = fmaf(dh, Bv[n], sdhB);
        v[n] = dh * du;
        v[KS + n] = gy * h[n];
        X[n] = m * dh;
        h[n] = hp[n];
      }
      reduce_scatter(v, lane, Tn);
      {
        float* dst = red + size_t(i * kWarps + warp) * bcw + q.k * KS;
#pragma unroll
        for (int r = 0; r < 2 * KS; ++r) {
          if (r < R) {
            const int jl = jbase + r;
            dst[(jl >= KS ? Np - KS : 0) + jl] = v[r];
          }
        }
      }
      ypre = lane_sum(ypre, Tn);
      sdhB = lane_sum(sdhB, Tn);
      sdA = lane_sum(sdA, Tn);
      if (q.k == 0 && q.valid && i < len) {
        const int64_t o = (q.b * p.L + ta + i) * p.D + q.d;
        const float gdt = fmaf(sdA, kLn2, uu * sdhB);
        const float gdl = p.softplus ? gdt * one_minus_exp_neg(dt) : gdt;  // sigmoid(x) = 1 - exp(-softplus(x))
        st(gu, o, fmaf(dt, sdhB, Dv * gy));
        st(gdelta, o, gdl);
        if (gz) st(gz, o, sst[(3 * P + i) * kThreads + tid] * fmaf(Dv, uu, ypre));
        gDacc = fmaf(gy, uu, gDacc);
        gdbacc += gdl;
      }
    }
    __syncthreads();
    // gB / gC of the piece: sum the warps' sums (fixed order), then to global.
    for (int o = tid; o < len * bcw; o += kThreads) {
      const int i = o / bcw, jj = o - i * bcw, w = jj >= Np ? 1 : 0, n = jj - w * Np;
      if (n >= p.N) continue;
      float v = 0.f;
#pragma unroll
      for (int r = 0; r < kWarps; ++r) v += red[(i * kWarps + r) * bcw + jj];
      float* dst = w ? p.gCp : p.gBp;
      const int64_t e = ((q.b * p.L + ta + i) * p.G + q.g) * p.N + n;
      if (p.det) dst[int64_t(q.j) * bcn + e] = v;
      else atomicAdd(dst + e, v);
    }
  }
  if (!q.valid) return;
#pragma unroll
  for (int i = 0; i < KS; ++i) {
    const int n = q.k * KS + i;
    if (n < p.N) {
      p.gAp[sb * p.N + n] = gA[i];
      if (p.gh0 && q.s == 0) p.gh0[(q.b * p.D + q.d) * p.N + n] = X[i];
    }
  }
  if (q.k == 0) {
    p.gDp[sb] = gDacc;
    p.gdbp[sb] = gdbacc;
  }
}

// Which implementation runs: env SSM_SCAN_IMPL (both passes), SSM_SCAN_FWD_IMPL / SSM_SCAN_BWD_IMPL (one
// pass; these win): "chunk" (scan_chunked_cuda.cu: the forward, the backward where it applies, and this file's
// backward's checkpoint pass) or "legacy" (this file). Without them: the chunked scan wherever its blocks of
// whole rows make at least half a wave of its forward, or its sequential kernels run cut into time segments
// (N 12-16, SSM_SCAN_SEQ_SEGS; chunked_runs), this file's elsewhere (few rows of long sequences). Measured (bench/RESULTS.md, 2026-12-06): in one H200 run,
// forward+backward at (2, 3072, 8192, 16), 0.97 waves: 0.87x legacy's time; at (1, 2048, 65536), 0.32 waves,
// where it needs segments: 1.18x; the 130M LM: 1.26x legacy's tokens/s. At (8, 2048, 2048), 2.6 waves: 2.71 ms
// against legacy's 3.48 on an H100 (legacy ran within 1 % on the two cards). Both are tested
// (tests/cuda/test_cuda_selective_scan.cpp, and on the emulator, tests/emu) and selectable for comparison.
// (The first version, selective_scan_cuda_v1.cu, was deleted on 2026-12-07: the one-segment rows where its
// forward was faster all go to the chunked scan.)
enum class Impl { chunk, legacy };
Impl impl_for(const char* pass_env, const ScanInputs& in) {
  for (const char* name : {pass_env, "SSM_SCAN_IMPL"}) {
    const char* v = std::getenv(name);
    if (v && std::strcmp(v, "chunk") == 0) return Impl::chunk;
    if (v && std::strcmp(v, "legacy") == 0) return Impl::legacy;
    SSM_CHECK_INPUT(!v || !*v, "selective_scan (CUDA): ", name, "=", v, " is not an implementation (chunk or legacy)");
  }
  return chunked_runs(in, std::strcmp(pass_env, "SSM_SCAN_BWD_IMPL") == 0) ? Impl::chunk : Impl::legacy;
}

// The forward passes' thread layout: kf states per thread (4, 8 or 16; at least Np / 16 so that a channel's
// lanes stay within 16). Fewer states per thread means more threads for the same work (at N = 16 and
// kf = 4, 4x the warps), at the price of the per-step work every lane repeats (softplus, loads) and the
// lane sum of y. The state passes take env SSM_SCAN_FWD_KF (default 16); the backward's adjoint pass
// SSM_SCAN_ADJ_KF (default 8).
void set_fwd_layout(Params& p, int kf) {
  kf = kf <= 4 ? 4 : kf <= 8 ? 8 : 16;
  p.kf = std::max(kf, p.Np / 16);
  p.Tn = p.Np / p.kf;
  p.CB = kThreads / p.Tn;
  p.nj = int((p.Dg + p.CB - 1) / p.CB);
  p.tf = std::min(p.kf == 16 ? kTF : 8, 512 / p.Np);  // 16-step tiles only with 16 states a thread (fwd_kernel_for)
}

Params make_params(const ScanInputs& in, const ScanOptions& opt) {
  Params p{};
  set_scan_inputs(p, in);
  int Np = kS;
  while (Np < p.N) Np *= 2;
  p.Np = Np;
  set_fwd_layout(p, int(env_int("SSM_SCAN_FWD_KF", kDefaultFwdKF)));
  p.P = kBwdP;
  p.bc = dtype_code(in.B.dtype());
  p.softplus = opt.delta_softplus;
  p.det = opt.deterministic;
  return p;
}

// Segments: one per row when the channel blocks alone give ~3 blocks per SM, else enough for ~4 (each
// segment at least 64 steps), but never more blocks than fit on the GPU at once (`resident` per SM, from
// the occupancy calculator): blocks of equal length run in waves, and a few blocks past a full wave cost a
// whole second wave. Ks is a multiple of 16 (so of tf and P). Segments cost a second pass over the
// sequence (local + full), yet one block per SM is latency-bound. Measured on the H100 (N = 16 unless
// said): at (8, 2048, 2048) (1 block per SM) 8 segments ran the forward in 0.92 ms against 1.27 ms for one;
// aiming at 8 blocks per SM instead of 4 made (2, 3072, 8192) slower (1.35 vs 1.24 ms) and N = 64 at
// (8, 2048, 2048) (3.9 blocks per SM in one segment) much slower (4.08 vs 2.47 ms).
void set_segments(Params& p, const char* env, int resident) {
  const int64_t base = p.Bt * p.G * p.nj, sms = ::ssm::cuda::sm_count();
  const int64_t cap = std::max(1, resident) * sms;
  int64_t nseg = base >= 3 * sms ? 1 : (std::min<int64_t>(4 * sms, cap) + base - 1) / base;
  if (nseg > 1 && base * nseg > cap) nseg = std::max<int64_t>(1, cap / base);
  nseg = std::min(nseg, std::max<int64_t>(1, p.L / 64));
  nseg = std::max<int64_t>(1, std::min(env_int(env, nseg), p.L));
  p.Ks = ((p.L + nseg - 1) / nseg + 15) / 16 * 16;
  p.nseg = (p.L + p.Ks - 1) / p.Ks;
}

// Blocks of `kernel` (kThreads threads, `smem` dynamic bytes) resident per SM.
template <typename K>
int resident_blocks(K kernel, size_t smem) {
  int n = 0;
  SSM_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, kThreads, smem));
  return n;
}

// The main backward pass's thread layout: kBwdKS = 8 states per thread. Its pieces (p.P = kBwdP = 8 steps,
// set by make_params) are also the checkpoint interval. At N = 16 a piece's shared memory is 54 KB, so 4
// blocks share an SM (then the register limit). Measured on
// the H100 before the pieces became fixed: forward+backward at (8, 2048, 2048) 4.63 ms with P = 8 against
// 5.64 with 16, (2, 3072, 8192) 5.83 vs 7.63, (1, 2048, 65536) 15.25 vs 20.06; the 130M LM step 149.7 vs
// 169.8 ms; 16 states per thread was slower than 8.
void set_bwd_layout(Params& p) {
  p.Tn = p.Np / kBwdKS;
  p.CB = kThreads / p.Tn;
  p.nj = int((p.Dg + p.CB - 1) / p.CB);
}

// The forward tiles' copy units: 16- or 4-byte cp.async where every row (and row start) allows it.
void set_units(Params& p, int tsz, std::initializer_list<const void*> xs) {
  auto al = [](const void* q, int u) { return q == nullptr || reinterpret_cast<uintptr_t>(q) % u == 0; };
  p.tsz = tsz;
  p.unit_x = 0;
  for (int u : {16, 4}) {
    bool ok = (p.D * tsz) % u == 0 && (p.Dg * tsz) % u == 0 && (p.CB * tsz) % u == 0;
    for (const void* q : xs) ok = ok && al(q, u);
    if (ok) {
      p.unit_x = u;
      break;
    }
  }
  const int bsz = p.bc == 0 ? 4 : 2;
  p.unit_bc = 0;
  for (int u : {16, 4}) {
    if ((p.N * bsz) % u == 0 && al(p.B, u) && al(p.C, u)) {
      p.unit_bc = u;
      break;
    }
  }
}

template <typename K>
void allow_smem(K kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    SSM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

dim3 grid_of(const Params& p) { return dim3(unsigned(p.nseg), unsigned(p.G * p.nj), unsigned(p.Bt)); }
// The tile capacity that runs p's tiles: 16 steps where p.tf > 8 (the forward's state passes at N <= 32 and 16
// states a thread), else 8. Measured on the H100 at (1, 2048, 65536, 16), the legacy forward's row: 2.919 ms with
// 16-step tiles against 3.091 with 8 (half the barriers, cp.async waits and B / C conversions a step); the
// backward's passes keep 8 (with the capacity 16 and 8-step tiles its forward+backward ran 13.41 ms against 13.17).
int tile_capacity(const Params& p) { return p.tf > 8 ? 16 : 8; }
size_t fwd_smem(const Params& p) { return fwd_smem_bytes(p.CB, p.tsz, p.tf, int(p.N), p.Np, tile_capacity(p)); }

// fwd_kernel<T, MODE, p.kf, tile_capacity(p)>, launched over grid_of(p); its resident blocks per SM.
template <typename T, int MODE>
void (*fwd_kernel_for(const Params& p))(Params) {
  SSM_CHECK(p.tf <= (MODE == 2 ? 8 : tile_capacity(p)), "selective_scan (CUDA): ", p.tf, "-step tiles exceed pass ",
            MODE, "'s tile capacity");
  if (p.kf == 4) return fwd_kernel<T, MODE, 4, 8>;
  if (p.kf == 8) return fwd_kernel<T, MODE, 8, 8>;
  if constexpr (MODE != 2) {  // the adjoint pass is the backward's: 8-step tiles
    if (tile_capacity(p) == 16) return fwd_kernel<T, MODE, 16, 16>;
  }
  return fwd_kernel<T, MODE, 16, 8>;
}
template <typename T, int MODE>
void launch_fwd(const Params& p) {
  const auto kernel = fwd_kernel_for<T, MODE>(p);
  allow_smem(kernel, fwd_smem(p));
  kernel<<<grid_of(p), kThreads, fwd_smem(p), stream()>>>(p);
  SSM_CUDA_LAUNCH_CHECK();
}
// The state passes (local + full) share their segments: the fewer resident blocks of the two decides.
template <typename T>
int state_pass_resident(const Params& p) {
  int r = 1 << 30;
  for (auto kernel : {fwd_kernel_for<T, 0>(p), fwd_kernel_for<T, 1>(p)}) {
    allow_smem(kernel, fwd_smem(p));
    r = std::min(r, resident_blocks(kernel, fwd_smem(p)));
  }
  return r;
}

// The forward's segment start states: local pass + carry (only when nseg > 1; E, S allocated here).
template <typename T>
void segment_starts(Params& p, Tensor& E, Tensor& S, const Device& dev) {
  if (p.nseg <= 1) return;
  E = Tensor::empty({p.Bt, p.nseg, p.D, p.Np}, DType::f32, dev);
  S = Tensor::empty({p.Bt, p.nseg, p.D}, DType::f32, dev);
  p.E = E.data<float>();
  p.S = S.data<float>();
  launch_fwd<T, 0>(p);
  carry_kernel<<<blocks_for(p.Bt * p.D * p.N, 256), 256, 0, stream()>>>(p, true, false);
  SSM_CUDA_LAUNCH_CHECK();
  p.h_last = nullptr;  // written by the carry kernel
}

// This file's forward.
template <typename H>
void forward_t(const ScanInputs& in, const ScanOptions& opt, Tensor& y, Tensor& h_last, SegmentStarts* starts) {
  using T = typename DevT<H>::type;
  Params p = make_params(in, opt);
  set_units(p, int(sizeof(T)), {p.u, p.delta, p.z});
  set_segments(p, "SSM_SCAN_FWD_SEGS", state_pass_resident<T>(p));
  p.y = y.data_ptr();
  p.h_last = h_last.defined() ? h_last.data<float>() : nullptr;
  Tensor E, S;
  segment_starts<T>(p, E, S, in.u.device());
  launch_fwd<T, 1>(p);
  if (starts && p.nseg > 1) *starts = {E, p.Ks, Tensor()};
}

// Whether the forward's segment starts belong to these inputs' shape: (Bt, nseg, D, Np) with nseg segments
// of seg_len steps (a multiple of 16, as set_segments makes them).
bool fits(const SegmentStarts* s, const Params& p) {
  if (!s || !s->states.defined() || s->states.dim() != 4 || s->seg_len <= 0 || s->seg_len % 16 != 0) return false;
  const Tensor& e = s->states;
  return e.size(0) == p.Bt && e.size(1) == (p.L + s->seg_len - 1) / s->seg_len && e.size(2) == p.D &&
         e.size(3) == p.Np;
}

// The backward runs two segmentations, each fitted to its kernels' occupancy: the state passes (local +
// checkpoints, forward layout) and the main pass (with the adjoint local pass that feeds its carries).
template <typename H>
void backward_t(const ScanInputs& in, const Tensor& grad_y, const Tensor& grad_h_last, const ScanOptions& opt,
                ScanGrads& gr, const SegmentStarts* starts, Impl impl) {
  using T = typename DevT<H>::type;
  const Device dev = in.u.device();
  Params p = make_params(in, opt);
  p.gy = grad_y.data_ptr();
  p.gh = grad_h_last.defined() ? grad_h_last.data<float>() : nullptr;
  set_units(p, int(sizeof(T)), {p.u, p.delta, p.z, p.gy});
  const int64_t Bt = p.Bt, L = p.L, D = p.D, N = p.N, G = p.G;
  Params pb = p;  // the main pass's layout
  set_bwd_layout(pb);
  const auto main_kernel = pb.Tn == 2 ? bwd_kernel<T, 2> : bwd_kernel<T, 0>;
  const size_t main_smem = bwd_smem_floats(pb.Np) * sizeof(float);
  allow_smem(main_kernel, main_smem);
  set_segments(pb, "SSM_SCAN_BWD_SEGS", resident_blocks(main_kernel, main_smem));
  p.tf = std::min(p.tf, p.P);  // checkpoints are written at tile starts: P must be a multiple of tf
  p.nck = pb.nck = (L + p.P - 1) / p.P;
  // 1. Checkpoints: the chunked pass (default; from the forward's starts when they fit), or this file's full
  //    pass after the state's segment carries or from the forward's segment starts.
  Tensor ck = Tensor::empty({Bt, p.nck, D, p.Np}, DType::f32, dev);
  p.ck = ck.data<float>();
  if (impl == Impl::chunk) {
    SSM_CHECK(p.P == kChunkCheckpointEvery, "selective_scan (CUDA): checkpoint interval ", p.P, " != ",
              kChunkCheckpointEvery);
    chunked_checkpoints(in, opt, starts, ck);
  } else {
    Params pc = p;
    Tensor E, S;
    if (fits(starts, p)) {
      pc.nseg = starts->states.size(1);
      pc.Ks = starts->seg_len;
      pc.E = starts->states.data<float>();
    } else {
      set_segments(pc, "SSM_SCAN_BWD_SEGS", state_pass_resident<T>(pc));
      segment_starts<T>(pc, E, S, dev);
    }
    pc.y = nullptr;
    pc.h_last = nullptr;
    launch_fwd<T, 1>(pc);
  }
  // 2. Adjoint carries across the main pass's segments. 8 states per thread (env SSM_SCAN_ADJ_KF): the main
  //    pass's few segments left the 16-state layout at 1.5 blocks per SM (0.81 ms a layer of the 130M LM,
  //    more than a forward pass). Measured on the H100 (f+b at (8, 2048, 2048) / (2, 3072, 8192), LM
  //    tokens/s): 4 states 4.35 / 6.67 ms, 122.4k; 8 states 3.87 / 5.91 ms, 124.3k; 16 states 3.90 /
  //    5.97 ms, 122.9k.
  p.nseg = pb.nseg;
  p.Ks = pb.Ks;
  Tensor F, SF;
  if (p.nseg > 1) {
    F = Tensor::empty({Bt, p.nseg, D, p.Np}, DType::f32, dev);
    SF = Tensor::empty({Bt, p.nseg, D}, DType::f32, dev);
    p.F = F.data<float>();
    p.S = SF.data<float>();
    Params pa = p;
    set_fwd_layout(pa, int(env_int("SSM_SCAN_ADJ_KF", 8)));
    pa.tf = std::min(pa.tf, p.P);  // the backward's passes run tiles of at most P = 8 steps (fwd_kernel_for)
    set_units(pa, int(sizeof(T)), {p.u, p.delta, p.z, p.gy});
    launch_fwd<T, 2>(pa);
    carry_kernel<<<blocks_for(Bt * D * N, 256), 256, 0, stream()>>>(p, false, true);
    SSM_CUDA_LAUNCH_CHECK();
  }
  // 3. Main pass.
  alloc_scan_grads(p, in, gr);
  const int64_t nparts = p.det ? pb.nj : 1;
  Tensor gBp = p.det ? Tensor::empty({nparts, Bt, L, G, N}, DType::f32, dev) : Tensor::zeros({Bt, L, G, N}, DType::f32, dev);
  Tensor gCp = p.det ? Tensor::empty({nparts, Bt, L, G, N}, DType::f32, dev) : Tensor::zeros({Bt, L, G, N}, DType::f32, dev);
  const int64_t nbs = Bt * p.nseg;
  Tensor gAp = Tensor::empty({nbs, D, N}, DType::f32, dev);
  Tensor gDp = Tensor::empty({nbs, D}, DType::f32, dev), gdbp = Tensor::empty({nbs, D}, DType::f32, dev);
  p.gBp = gBp.data<float>();
  p.gCp = gCp.data<float>();
  p.gAp = gAp.data<float>();
  p.gDp = gDp.data<float>();
  p.gdbp = gdbp.data<float>();
  {
    Params q = p;  // the main pass: p's pointers with pb's layout
    q.Tn = pb.Tn;
    q.CB = pb.CB;
    q.nj = pb.nj;
    main_kernel<<<grid_of(q), kThreads, main_smem, stream()>>>(q);
    SSM_CUDA_LAUNCH_CHECK();
  }
  sum_scan_grads(gr, p.gBp, p.gCp, nparts, p.gAp, p.gDp, p.gdbp, nbs, p.bc);
}

}  // namespace

void selective_scan_forward(const ScanInputs& in, const ScanOptions& opt, Tensor& y, Tensor& h_last,
                            SegmentStarts* starts) {
  if (starts) *starts = {};
  const Impl impl = impl_for("SSM_SCAN_FWD_IMPL", in);
  if (impl == Impl::chunk) return chunked_forward(in, opt, y, h_last, starts);
  switch (in.u.dtype()) {
    case DType::f32: return forward_t<float>(in, opt, y, h_last, starts);
    case DType::bf16: return forward_t<bf16_t>(in, opt, y, h_last, starts);
    case DType::f16: return forward_t<f16_t>(in, opt, y, h_last, starts);
    default: SSM_CHECK(false, "selective_scan (CUDA): unsupported dtype ", dtype_name(in.u.dtype()));
  }
}

void selective_scan_backward(const ScanInputs& in, const Tensor& grad_y, const Tensor& grad_h_last_in,
                             const ScanOptions& opt, ScanGrads& grads, const SegmentStarts* starts) {
  const Impl impl = impl_for("SSM_SCAN_BWD_IMPL", in);
  const Tensor grad_h_last =
      grad_h_last_in.defined() ? grad_h_last_in.to(DType::f32).contiguous() : Tensor();
  SSM_CHECK(grad_y.dtype() == in.u.dtype(), "selective_scan (CUDA) backward: grad_y is ", dtype_name(grad_y.dtype()),
            " but y is ", dtype_name(in.u.dtype()));
  if (impl == Impl::chunk && chunked_backward(in, grad_y, grad_h_last, opt, grads, starts))
    return;
  switch (in.u.dtype()) {
    case DType::f32: return backward_t<float>(in, grad_y, grad_h_last, opt, grads, starts, impl);
    case DType::bf16: return backward_t<bf16_t>(in, grad_y, grad_h_last, opt, grads, starts, impl);
    case DType::f16: return backward_t<f16_t>(in, grad_y, grad_h_last, opt, grads, starts, impl);
    default: SSM_CHECK(false, "selective_scan (CUDA): unsupported dtype ", dtype_name(in.u.dtype()));
  }
}

}  // namespace ssm::kernels::cuda
