// Selective scan (Mamba-1 S6) on CUDA, version 1 (the first design, kept as a fallback and a cross-check:
// env SSM_SCAN_IMPL=v1 routes selective_scan_cuda.cu's entry points here). Math in selective_scan.h.
//
// Thread layout (every kernel): one thread per (b, channel d, tile of kS = 8 states). The Tn = Np / 8
// threads of one channel are adjacent lanes of a warp (Np = N rounded up to a power of two >= 8, so
// Tn in {1, 2, 4, 8, 16, 32}); sums over n (y, gu, gdt) are xor-shuffles over those Tn lanes. A block
// of 128 threads holds CB = 128 / Tn channels of ONE group g (blocks never straddle groups), so B_t, C_t
// are shared by the whole block: each time tile of TT steps stages dt (softplus applied once per (t, d)),
// u, z, grad_y of the block's channels and B_t, C_t of its group in shared memory as f32. Loads are
// coalesced along d (channels-last). The state h (kS f32 per thread) lives in registers; decays are
// exp2(dt * A log2 e) with ex2.approx. All offsets are 64-bit.
//
// Time is cut into chunks of Kc steps; grid = (chunk, channel block, batch row).
//   chunk pass (forward):  each chunk from a zero state -> its local end state E_c and S_c = sum dt over the
//                          chunk (NaN when the chunk holds a reset, i.e. its carry multiplier P_c is 0).
//   carry kernel:          per (b, d, n), sequential over chunks: start_c = h; h = P_c h + E_c with
//                          P_c = exp(A S_c) (the product of the chunk's per-step decays); ends in h_last.
//   full pass:             each chunk again from its true start state, writing y.
// The forward uses one chunk when Bt * D already fills the GPU, otherwise enough chunks to fill it.
//
// Backward: chunks of Kc = TT = 32 steps (one staged tile each; env SSM_SCAN_BWD_CHUNK overrides).
//   local pass: per chunk, forward from zero -> E_c, S_c; reverse from a zero adjoint carry ->
//               F_c = m_{t0} dh_{t0} (m_t = exp(dt_t A), 0 at a reset).
//   carry kernel: start states (as above) and adjoint carries X_c (what enters the chunk's last step from
//               the future): X_{last} = grad h_last, X_{c-1} = P_c X_c + F_c; finally grad h0 = X_{-1}.
//   main pass:  per chunk, forward from start_c keeping a checkpoint every R = 4 steps in shared memory;
//               then per 4-step piece in reverse: recompute h_t, m_t for the 4 steps into registers and
//               sweep backwards:  dh_t = X + C_t gy_t,  X <- m_t dh_t; with hd_t = h_t - dt u B_t (= m_t h_{t-1})
//                 gu = dt sum_n dh B + D gy,  gdt = sum_n dh (A hd + B u),  gA += dt dh hd,
//                 gB_t(d) = dh dt u,  gC_t(d) = gy h_t,  gz = g y_pre silu'(z),  gdelta = gdt sigmoid(.)
//               gB, gC are summed over the block's channels through shared memory (fixed order); the
//               block's sum goes to a per-block partial (deterministic) or by atomicAdd into one f32
//               buffer (default). gA, gD, gdelta_bias: per-(b, chunk) partials summed in fixed order by a
//               small kernel. So opt.deterministic only changes gB / gC's last step.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "kernels/common/cuda_utils.cuh"
#include "kernels/selective_scan/selective_scan_cuda.h"
#include "kernels/selective_scan/selective_scan_cuda_v1.cuh"
#include "kernels/selective_scan/scan_cuda_common.cuh"

namespace ssm::kernels::cuda {
namespace {

constexpr int kS = 8;          // states per thread
constexpr int kThreads = 128;  // threads per block
constexpr int kR = 4;          // backward: steps per register-history piece

__device__ inline float softplus(float x) { return x > 20.f ? x : log1pf(expf(x)); }

struct Params {
  const void *u, *delta, *z, *B, *C, *gy;
  const float *A, *Dskip, *dbias, *h0, *gh;
  const int32_t* seq;
  int64_t Bt, L, D, G, N, Dg;
  int Np, Tn, CB, nj, TT, bc;  // bc: dtype code of B / C (0 f32, 1 bf16, 2 f16)
  int64_t nck, Kc;
  bool softplus;
  void* y;
  float* h_last;
  float *E, *S, *F;  // (Bt, nck, D, N), (Bt, nck, D), (Bt, nck, D, N)
  void *gu, *gdelta, *gz;
  float *gBp, *gCp;  // partials (nj, Bt, L, G, N) or accumulators (Bt, L, G, N)
  bool det;
  float *gDp, *gdbp;  // (Bt, nck, D)
  float* gh0;
};

// Where this thread sits.
struct Pos {
  int64_t b, c, d, dbase;
  int g, j, cl, k, nvalid;
  bool valid;
};
__device__ inline Pos position(const Params& p) {
  Pos q;
  q.b = blockIdx.z;
  q.c = blockIdx.x;
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

struct Smem {
  float *dt, *u, *z, *g, *B, *C;
  int* rs;
};
// Shared-memory carve-up for a tile of TT steps: dt, u, z, g [TT][CB]; B, C [TT][Np]; rs [TT].
__device__ inline Smem carve(float* sm, const Params& p, bool bwd) {
  Smem s;
  const int tc = p.TT * p.CB;
  s.dt = sm;
  s.u = s.dt + tc;
  s.z = s.u + tc;
  s.g = bwd ? s.z + tc : nullptr;
  s.B = (bwd ? s.g : s.z) + tc;
  s.C = s.B + p.TT * p.Np;
  s.rs = reinterpret_cast<int*>(s.C + p.TT * p.Np);
  return s;
}
__host__ __device__ inline size_t stage_floats(int TT, int CB, int Np, bool bwd) {
  return size_t(TT) * CB * (bwd ? 4 : 3) + size_t(TT) * Np * 2 + TT;
}

// Stage steps t0 .. t0+len-1 of this block's channels and group. Loads go out in batches of kBatch per
// thread before any is used, so a tile costs ~2 memory round trips instead of one per element.
constexpr int kBatch = 8;
template <typename T>
__device__ void stage(const Params& p, const Pos& q, const Smem& s, int64_t t0, int len, bool bwd) {
  const T* u = static_cast<const T*>(p.u);
  const T* de = static_cast<const T*>(p.delta);
  const T* z = static_cast<const T*>(p.z);
  const T* gy = static_cast<const T*>(p.gy);
  const int nth = blockDim.x, tot = len * p.CB;
  for (int base = threadIdx.x; base < tot; base += kBatch * nth) {
    float xd[kBatch], xu[kBatch], xz[kBatch], xg[kBatch];
#pragma unroll
    for (int r = 0; r < kBatch; ++r) {
      const int i = base + r * nth;
      const int tt = i / p.CB, cl = i - tt * p.CB;
      xd[r] = xu[r] = xz[r] = xg[r] = 0.f;
      if (i < tot && cl < q.nvalid) {
        const int64_t d = q.dbase + cl;
        const int64_t idx = (q.b * p.L + t0 + tt) * p.D + d;
        xd[r] = ld(de, idx) + (p.dbias ? p.dbias[d] : 0.f);
        xu[r] = ld(u, idx);
        if (z) xz[r] = ld(z, idx);
        if (bwd) xg[r] = ld(gy, idx);
      }
    }
#pragma unroll
    for (int r = 0; r < kBatch; ++r) {
      const int i = base + r * nth;
      if (i < tot) {
        s.dt[i] = p.softplus ? softplus(xd[r]) : xd[r];
        s.u[i] = xu[r];
        s.z[i] = xz[r];
        if (bwd) s.g[i] = xg[r];
      }
    }
  }
  const int totb = len * p.Np;
  for (int base = threadIdx.x; base < totb; base += kBatch * nth) {
    float xb[kBatch], xc[kBatch];
#pragma unroll
    for (int r = 0; r < kBatch; ++r) {
      const int i = base + r * nth;
      const int tt = i / p.Np, n = i - tt * p.Np;
      xb[r] = xc[r] = 0.f;
      if (i < totb && n < p.N) {
        const int64_t idx = ((q.b * p.L + t0 + tt) * p.G + q.g) * p.N + n;
        xb[r] = ld_any(p.B, idx, p.bc);
        xc[r] = ld_any(p.C, idx, p.bc);
      }
    }
#pragma unroll
    for (int r = 0; r < kBatch; ++r) {
      const int i = base + r * nth;
      if (i < totb) {
        s.B[i] = xb[r];
        s.C[i] = xc[r];
      }
    }
  }
  for (int i = threadIdx.x; i < len; i += nth) {
    const int64_t t = t0 + i;
    s.rs[i] = (p.seq && t > 0 && p.seq[q.b * p.L + t] != p.seq[q.b * p.L + t - 1]) ? 1 : 0;
  }
}

__device__ inline void load8(const float* p, float* v) {
  const float4 a = *reinterpret_cast<const float4*>(p), b = *reinterpret_cast<const float4*>(p + 4);
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}

// mode 0: chunk pass (local end state E and S from a zero start); mode 1: full pass (y, h_last).
template <typename T>
__global__ void __launch_bounds__(kThreads) scan_fwd_kernel(Params p, int mode) {
  float4* const sm4 = dynamic_smem<float4>();
  const Pos q = position(p);
  const Smem s = carve(reinterpret_cast<float*>(sm4), p, false);
  const int64_t t0 = q.c * p.Kc, t1 = min(p.L, t0 + p.Kc);
  float A2[kS], h[kS];
  const int64_t hb = (q.b * p.nck + q.c) * p.D;
#pragma unroll
  for (int i = 0; i < kS; ++i) {
    const int n = q.k * kS + i;
    const bool ok = q.valid && n < p.N;
    A2[i] = ok ? p.A[q.d * p.N + n] * kLog2e : 0.f;
    h[i] = 0.f;
    if (mode == 1 && ok) {
      if (p.nck > 1) h[i] = p.E[(hb + q.d) * p.N + n];
      else if (p.h0) h[i] = p.h0[(q.b * p.D + q.d) * p.N + n];
    }
  }
  const float Dv = (p.Dskip && q.valid) ? p.Dskip[q.d] : 0.f;
  T* y = static_cast<T*>(p.y);
  float sumdt = 0.f;
  bool reset = false;
  for (int64_t ta = t0; ta < t1; ta += p.TT) {
    const int len = int(min(int64_t(p.TT), t1 - ta));
    __syncthreads();
    stage<T>(p, q, s, ta, len, false);
    __syncthreads();
    for (int i = 0; i < len; ++i) {
      const float dt = s.dt[i * p.CB + q.cl], uu = s.u[i * p.CB + q.cl];
      const bool rs = s.rs[i] != 0;
      reset |= rs;
      sumdt += dt;
      float Bv[kS], Cv[kS];
      load8(s.B + i * p.Np + q.k * kS, Bv);
      const float du = dt * uu;
      if (mode == 0) {
#pragma unroll
        for (int n = 0; n < kS; ++n) h[n] = fmaf(rs ? 0.f : ex2(dt * A2[n]), h[n], du * Bv[n]);
      } else {
        load8(s.C + i * p.Np + q.k * kS, Cv);
        float acc = 0.f;
#pragma unroll
        for (int n = 0; n < kS; ++n) {
          h[n] = fmaf(rs ? 0.f : ex2(dt * A2[n]), h[n], du * Bv[n]);
          acc = fmaf(Cv[n], h[n], acc);
        }
        acc = lane_sum(acc, p.Tn);
        if (q.k == 0 && q.valid) {
          float out = acc + Dv * uu;
          if (p.z) {
            const float zz = s.z[i * p.CB + q.cl];
            out *= zz / (1.f + __expf(-zz));
          }
          st(y, (q.b * p.L + ta + i) * p.D + q.d, out);
        }
      }
    }
  }
#pragma unroll
  for (int i = 0; i < kS; ++i) {
    const int n = q.k * kS + i;
    if (!q.valid || n >= p.N) continue;
    if (mode == 0) p.E[(hb + q.d) * p.N + n] = h[i];
    else if (q.c == p.nck - 1 && p.h_last) p.h_last[(q.b * p.D + q.d) * p.N + n] = h[i];
  }
  if (mode == 0 && q.k == 0 && q.valid) p.S[hb + q.d] = reset ? __int_as_float(0x7fc00000) : sumdt;
}

// Backward local pass: chunk = one tile. E, S as the forward chunk pass; F = m_{t0} dh_{t0} of the chunk's
// adjoint from a zero carry (dh_t = C_t gy_t + m_{t+1} dh_{t+1}).
template <typename T>
__global__ void __launch_bounds__(kThreads) scan_bwd_local_kernel(Params p) {
  float4* const sm4 = dynamic_smem<float4>();
  const Pos q = position(p);
  const Smem s = carve(reinterpret_cast<float*>(sm4), p, true);
  const int64_t t0 = q.c * p.Kc;
  const int len = int(min(p.Kc, p.L - t0));
  stage<T>(p, q, s, t0, len, true);
  __syncthreads();
  float A2[kS], h[kS];
#pragma unroll
  for (int i = 0; i < kS; ++i) {
    const int n = q.k * kS + i;
    A2[i] = (q.valid && n < p.N) ? p.A[q.d * p.N + n] * kLog2e : 0.f;
    h[i] = 0.f;
  }
  float sumdt = 0.f;
  bool reset = false;
  for (int i = 0; i < len; ++i) {
    const float dt = s.dt[i * p.CB + q.cl], du = dt * s.u[i * p.CB + q.cl];
    const bool rs = s.rs[i] != 0;
    reset |= rs;
    sumdt += dt;
    float Bv[kS];
    load8(s.B + i * p.Np + q.k * kS, Bv);
#pragma unroll
    for (int n = 0; n < kS; ++n) h[n] = fmaf(rs ? 0.f : ex2(dt * A2[n]), h[n], du * Bv[n]);
  }
  float X[kS];
#pragma unroll
  for (int n = 0; n < kS; ++n) X[n] = 0.f;
  for (int i = len - 1; i >= 0; --i) {
    const float dt = s.dt[i * p.CB + q.cl];
    float gy = s.g[i * p.CB + q.cl];
    if (p.z) {
      const float zz = s.z[i * p.CB + q.cl];
      gy *= zz / (1.f + __expf(-zz));
    }
    const bool rs = s.rs[i] != 0;
    float Cv[kS];
    load8(s.C + i * p.Np + q.k * kS, Cv);
#pragma unroll
    for (int n = 0; n < kS; ++n) X[n] = (rs ? 0.f : ex2(dt * A2[n])) * fmaf(Cv[n], gy, X[n]);
  }
  const int64_t hb = (q.b * p.nck + q.c) * p.D;
#pragma unroll
  for (int i = 0; i < kS; ++i) {
    const int n = q.k * kS + i;
    if (!q.valid || n >= p.N) continue;
    p.E[(hb + q.d) * p.N + n] = h[i];
    p.F[(hb + q.d) * p.N + n] = X[i];
  }
  if (q.k == 0 && q.valid) p.S[hb + q.d] = reset ? __int_as_float(0x7fc00000) : sumdt;
}

// Carries across chunks, one thread per (b, d, n). Forward: E[c] <- start state of chunk c, h_last.
// Backward (F given): F[c] <- adjoint carry entering chunk c's last step; gh0 = the final carry.
__global__ void scan_carry_kernel(Params p, bool fwd, bool bwd) {
  const int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (idx >= p.Bt * p.D * p.N) return;
  const int64_t n = idx % p.N, d = (idx / p.N) % p.D, b = idx / (p.N * p.D);
  const float A2 = p.A[d * p.N + n] * kLog2e;
  const int64_t e0 = (b * p.nck * p.D + d) * p.N + n, s0 = b * p.nck * p.D + d;
  if (fwd) {
    const float h = carry_through(p.E + e0, p.D * p.N, p.S + s0, p.D, p.nck, A2, p.h0 ? p.h0[idx] : 0.f, false);
    if (p.h_last) p.h_last[idx] = h;
  }
  if (bwd) {
    const float x = carry_through(p.F + e0, p.D * p.N, p.S + s0, p.D, p.nck, A2, p.gh ? p.gh[idx] : 0.f, true);
    if (p.gh0) p.gh0[idx] = x;
  }
}

// Backward main pass (see the top of the file). Extra shared memory after the stage: checkpoints
// ck[TT / kR][kS][kThreads] and the gB / gC transpose buffer red[kR][2 Np][CB + 1].
template <typename T>
__global__ void __launch_bounds__(kThreads) scan_bwd_kernel(Params p) {
  float4* const sm4 = dynamic_smem<float4>();
  float* sm = reinterpret_cast<float*>(sm4);
  const Pos q = position(p);
  const Smem s = carve(sm, p, true);
  float* ck = sm + ((stage_floats(p.TT, p.CB, p.Np, true) + 3) & ~size_t(3));
  float* red = ck + size_t(p.TT / kR) * kS * kThreads;
  const int redw = p.CB + 1;
  const int64_t t0 = q.c * p.Kc;
  const int len = int(min(p.Kc, p.L - t0));
  stage<T>(p, q, s, t0, len, true);
  const int64_t hb = (q.b * p.nck + q.c) * p.D;
  float A2[kS], Af[kS], h[kS], X[kS], gA[kS];
#pragma unroll
  for (int i = 0; i < kS; ++i) {
    const int n = q.k * kS + i;
    const bool ok = q.valid && n < p.N;
    Af[i] = ok ? p.A[q.d * p.N + n] : 0.f;
    A2[i] = Af[i] * kLog2e;
    h[i] = ok ? p.E[(hb + q.d) * p.N + n] : 0.f;
    X[i] = ok ? p.F[(hb + q.d) * p.N + n] : 0.f;
    gA[i] = 0.f;
  }
  const float Dv = (p.Dskip && q.valid) ? p.Dskip[q.d] : 0.f;
  __syncthreads();
  // Forward over the chunk, checkpointing the state before every kR-th step.
  for (int i = 0; i < len; ++i) {
    if (i % kR == 0) {
#pragma unroll
      for (int n = 0; n < kS; ++n) ck[((i / kR) * kS + n) * kThreads + threadIdx.x] = h[n];
    }
    const float dt = s.dt[i * p.CB + q.cl], du = dt * s.u[i * p.CB + q.cl];
    const bool rs = s.rs[i] != 0;
    float Bv[kS];
    load8(s.B + i * p.Np + q.k * kS, Bv);
#pragma unroll
    for (int n = 0; n < kS; ++n) h[n] = fmaf(rs ? 0.f : ex2(dt * A2[n]), h[n], du * Bv[n]);
  }
  T* gu = static_cast<T*>(p.gu);
  T* gdelta = static_cast<T*>(p.gdelta);
  T* gz = static_cast<T*>(p.gz);
  float gDacc = 0.f, gdbacc = 0.f;
  const int npiece = (len + kR - 1) / kR;
  for (int pc = npiece - 1; pc >= 0; --pc) {
    const int i0 = pc * kR, rl = min(kR, len - i0);
    float hh[kR][kS], mm[kR][kS], hs[kS];
#pragma unroll
    for (int n = 0; n < kS; ++n) h[n] = hs[n] = ck[(pc * kS + n) * kThreads + threadIdx.x];
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      if (r < rl) {
        const int i = i0 + r;
        const float dt = s.dt[i * p.CB + q.cl], du = dt * s.u[i * p.CB + q.cl];
        const bool rs = s.rs[i] != 0;
        float Bv[kS];
        load8(s.B + i * p.Np + q.k * kS, Bv);
#pragma unroll
        for (int n = 0; n < kS; ++n) {
          mm[r][n] = rs ? 0.f : ex2(dt * A2[n]);
          h[n] = fmaf(mm[r][n], h[n], du * Bv[n]);
          hh[r][n] = h[n];
        }
      }
    }
#pragma unroll
    for (int r = kR - 1; r >= 0; --r) {
      if (r < rl) {
        const int i = i0 + r;
        const float dt = s.dt[i * p.CB + q.cl], uu = s.u[i * p.CB + q.cl], gg = s.g[i * p.CB + q.cl];
        const float du = dt * uu;
        float gy = gg, sig = 0.f, zz = 0.f;
        if (p.z) {
          zz = s.z[i * p.CB + q.cl];
          sig = 1.f / (1.f + __expf(-zz));
          gy = gg * zz * sig;
        }
        float Bv[kS], Cv[kS];
        load8(s.B + i * p.Np + q.k * kS, Bv);
        load8(s.C + i * p.Np + q.k * kS, Cv);
        float ypre = 0.f, sdhB = 0.f, sdA = 0.f;
        float* rb = red + size_t(r) * 2 * p.Np * redw;
#pragma unroll
        for (int n = 0; n < kS; ++n) {
          const float dh = fmaf(Cv[n], gy, X[n]);
          const float hd = mm[r][n] * (r > 0 ? hh[r > 0 ? r - 1 : 0][n] : hs[n]);  // m_t h_{t-1}
          ypre = fmaf(Cv[n], hh[r][n], ypre);
          sdhB = fmaf(dh, Bv[n], sdhB);
          sdA = fmaf(dh * Af[n], hd, sdA);
          gA[n] = fmaf(dh * dt, hd, gA[n]);
          const int nn = q.k * kS + n;
          rb[nn * redw + q.cl] = q.valid ? dh * du : 0.f;
          rb[(p.Np + nn) * redw + q.cl] = q.valid ? gy * hh[r][n] : 0.f;
          X[n] = mm[r][n] * dh;
        }
        ypre = lane_sum(ypre, p.Tn);
        sdhB = lane_sum(sdhB, p.Tn);
        sdA = lane_sum(sdA, p.Tn);
        if (q.k == 0 && q.valid) {
          const int64_t o = (q.b * p.L + t0 + i) * p.D + q.d;
          const float gdt = sdA + uu * sdhB;
          const float gdl = p.softplus ? gdt * -expm1f(-dt) : gdt;  // sigmoid(x) = 1 - exp(-softplus(x))
          st(gu, o, fmaf(dt, sdhB, Dv * gy));
          st(gdelta, o, gdl);
          if (p.z) st(gz, o, gg * (ypre + Dv * uu) * sig * (1.f + zz * (1.f - sig)));
          gDacc = fmaf(gy, uu, gDacc);
          gdbacc += gdl;
        }
      }
    }
    __syncthreads();
    // Sum the piece's gB / gC contributions over the block's channels (fixed order).
    const int nout = rl * 2 * p.Np;
    for (int o = threadIdx.x; o < nout; o += blockDim.x) {
      const int r = o / (2 * p.Np), qq = o % (2 * p.Np), n = qq % p.Np;
      if (n >= p.N) continue;
      const float* src = red + size_t(o) * redw;
      float v = 0.f;
      for (int cl = 0; cl < q.nvalid; ++cl) v += src[cl];
      float* dst = qq < p.Np ? p.gBp : p.gCp;
      const int64_t e = ((q.b * p.L + t0 + i0 + r) * p.G + q.g) * p.N + n;
      if (p.det) dst[int64_t(q.j) * p.Bt * p.L * p.G * p.N + e] = v;
      else atomicAdd(dst + e, v);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < kS; ++i) {
    const int n = q.k * kS + i;
    if (q.valid && n < p.N) p.E[(hb + q.d) * p.N + n] = gA[i];  // E is reused for gA's partials
  }
  if (q.k == 0 && q.valid) {
    p.gDp[hb + q.d] = gDacc;
    p.gdbp[hb + q.d] = gdbacc;
  }
}

Params make_params(const ScanInputs& in, const ScanOptions& opt) {
  Params p{};
  set_scan_inputs(p, in);
  int Np = 8;
  while (Np < p.N) Np *= 2;
  p.Np = Np;
  p.Tn = Np / kS;
  p.CB = kThreads / p.Tn;
  p.nj = int((p.Dg + p.CB - 1) / p.CB);
  p.bc = dtype_code(in.B.dtype());
  p.softplus = opt.delta_softplus;
  p.det = opt.deterministic;
  return p;
}

template <typename K>
void allow_smem(K kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    SSM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

dim3 grid_of(const Params& p) { return dim3(unsigned(p.nck), unsigned(p.G * p.nj), unsigned(p.Bt)); }

template <typename H>
void forward_t(const ScanInputs& in, const ScanOptions& opt, Tensor& y, Tensor& h_last) {
  using T = typename DevT<H>::type;
  Params p = make_params(in, opt);
  p.y = y.data_ptr();
  p.h_last = h_last.defined() ? h_last.data<float>() : nullptr;
  p.TT = 32;
  // Chunks: enough blocks to fill the GPU (about 16 blocks of 128 threads per SM), chunks >= 256 steps.
  const int64_t base = int64_t(p.G) * p.nj * p.Bt, want = int64_t(::ssm::cuda::sm_count()) * 16;
  int64_t nck = base >= want ? 1 : (want + base - 1) / base;
  nck = std::min(nck, std::max<int64_t>(1, p.L / 256));
  nck = env_int("SSM_SCAN_FWD_CHUNKS", nck);
  nck = std::max<int64_t>(1, std::min(nck, p.L));
  p.Kc = (p.L + nck - 1) / nck;
  p.nck = (p.L + p.Kc - 1) / p.Kc;
  const size_t smem = stage_floats(p.TT, p.CB, p.Np, false) * sizeof(float);
  allow_smem(scan_fwd_kernel<T>, smem);
  Tensor E, S;
  if (p.nck > 1) {
    E = Tensor::empty({p.Bt, p.nck, p.D, p.N}, DType::f32, in.u.device());
    S = Tensor::empty({p.Bt, p.nck, p.D}, DType::f32, in.u.device());
    p.E = E.data<float>();
    p.S = S.data<float>();
    scan_fwd_kernel<T><<<grid_of(p), kThreads, smem, stream()>>>(p, 0);
    SSM_CUDA_LAUNCH_CHECK();
    scan_carry_kernel<<<blocks_for(p.Bt * p.D * p.N, 256), 256, 0, stream()>>>(p, true, false);
    SSM_CUDA_LAUNCH_CHECK();
    p.h_last = nullptr;  // written by the carry kernel
  }
  scan_fwd_kernel<T><<<grid_of(p), kThreads, smem, stream()>>>(p, 1);
  SSM_CUDA_LAUNCH_CHECK();
}

template <typename H>
void backward_t(const ScanInputs& in, const Tensor& grad_y, const Tensor& grad_h_last, const ScanOptions& opt,
                ScanGrads& gr) {
  using T = typename DevT<H>::type;
  const Device dev = in.u.device();
  Params p = make_params(in, opt);
  p.gy = grad_y.data_ptr();
  p.gh = grad_h_last.defined() ? grad_h_last.data<float>() : nullptr;
  p.TT = int(env_int("SSM_SCAN_BWD_CHUNK", 32));
  p.TT = std::max(kR, p.TT / kR * kR);
  p.Kc = p.TT;
  p.nck = (p.L + p.Kc - 1) / p.Kc;
  const int64_t Bt = p.Bt, L = p.L, D = p.D, N = p.N, G = p.G;
  Tensor E = Tensor::empty({Bt, p.nck, D, N}, DType::f32, dev);
  Tensor F = Tensor::empty({Bt, p.nck, D, N}, DType::f32, dev);
  Tensor S = Tensor::empty({Bt, p.nck, D}, DType::f32, dev);
  Tensor gdbp = Tensor::empty({Bt, p.nck, D}, DType::f32, dev);
  p.E = E.data<float>();
  p.F = F.data<float>();
  p.S = S.data<float>();
  alloc_scan_grads(p, in, gr);
  const int64_t nparts = p.det ? p.nj : 1;
  Tensor gBp = p.det ? Tensor::empty({nparts, Bt, L, G, N}, DType::f32, dev) : Tensor::zeros({Bt, L, G, N}, DType::f32, dev);
  Tensor gCp = p.det ? Tensor::empty({nparts, Bt, L, G, N}, DType::f32, dev) : Tensor::zeros({Bt, L, G, N}, DType::f32, dev);
  p.gBp = gBp.data<float>();
  p.gCp = gCp.data<float>();
  p.gDp = S.data<float>();  // S is free once the carries are done
  p.gdbp = gdbp.data<float>();

  const size_t stage_b = ((stage_floats(p.TT, p.CB, p.Np, true) + 3) & ~size_t(3)) * sizeof(float);
  const size_t smem_main = stage_b + (size_t(p.TT / kR) * kS * kThreads + size_t(kR) * 2 * p.Np * (p.CB + 1)) * 4;
  allow_smem(scan_bwd_local_kernel<T>, stage_b);
  allow_smem(scan_bwd_kernel<T>, smem_main);
  scan_bwd_local_kernel<T><<<grid_of(p), kThreads, stage_b, stream()>>>(p);
  SSM_CUDA_LAUNCH_CHECK();
  scan_carry_kernel<<<blocks_for(Bt * D * N, 256), 256, 0, stream()>>>(p, true, true);
  SSM_CUDA_LAUNCH_CHECK();
  scan_bwd_kernel<T><<<grid_of(p), kThreads, smem_main, stream()>>>(p);
  SSM_CUDA_LAUNCH_CHECK();
  const int64_t nbc = Bt * p.nck;
  sum_scan_grads(gr, p.gBp, p.gCp, nparts, p.E, p.gDp, p.gdbp, nbc, p.bc);  // E holds gA's partials
}

}  // namespace

void selective_scan_forward_v1(const ScanInputs& in, const ScanOptions& opt, Tensor& y, Tensor& h_last) {
  switch (in.u.dtype()) {
    case DType::f32: return forward_t<float>(in, opt, y, h_last);
    case DType::bf16: return forward_t<bf16_t>(in, opt, y, h_last);
    case DType::f16: return forward_t<f16_t>(in, opt, y, h_last);
    default: SSM_CHECK(false, "selective_scan (CUDA): unsupported dtype ", dtype_name(in.u.dtype()));
  }
}

void selective_scan_backward_v1(const ScanInputs& in, const Tensor& grad_y, const Tensor& grad_h_last_in,
                             const ScanOptions& opt, ScanGrads& grads) {
  const Tensor grad_h_last =
      grad_h_last_in.defined() ? grad_h_last_in.to(DType::f32).contiguous() : Tensor();
  SSM_CHECK(grad_y.dtype() == in.u.dtype(), "selective_scan (CUDA) backward: grad_y is ", dtype_name(grad_y.dtype()),
            " but y is ", dtype_name(in.u.dtype()));
  switch (in.u.dtype()) {
    case DType::f32: return backward_t<float>(in, grad_y, grad_h_last, opt, grads);
    case DType::bf16: return backward_t<bf16_t>(in, grad_y, grad_h_last, opt, grads);
    case DType::f16: return backward_t<f16_t>(in, grad_y, grad_h_last, opt, grads);
    default: SSM_CHECK(false, "selective_scan (CUDA): unsupported dtype ", dtype_name(in.u.dtype()));
  }
}

}  // namespace ssm::kernels::cuda
