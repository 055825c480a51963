// Fused residual add + LayerNorm / RMSNorm on CUDA (math in add_norm.h).
// Forward and the gradient w.r.t. r: one warp per row (8 rows per 256-thread block), statistics by
// warp all-reduces in A (f32; f64 for f64 inputs). The forward writes r = residual + x (A) once and
// reads it back (the same lane wrote it, so no synchronisation) for the centred variance and y.
// grad_w / grad_b: summed by the grad-r kernel itself where C <= 1024 (one pass over gy and r: per-block partial
// rows, added in order), else blocks of 32 columns x a chunk of rows write partial sums, then one thread per
// column adds the chunks in order: no atomics, the same bits every run.
#include <algorithm>
#include <type_traits>

#include "kernels/common/cuda_utils.cuh"
#include "kernels/norms/add_norm_cuda.h"
#include "kernels/norms/norm_device.cuh"

namespace ssm::kernels::cuda {
namespace {

using namespace norm_detail;

constexpr int kRowsPerBlock = 8;  // one warp per row

// r = x + residual;  y = (r - mu) rstd w + b   (mu = 0 for rms)
template <typename Tx, typename Tw, typename Ty, typename A>
__global__ void add_norm_fwd_kernel(const Tx* __restrict__ x, const A* __restrict__ res, const Tw* __restrict__ w,
                                    const Tw* __restrict__ b, Ty* __restrict__ y, A* __restrict__ rout,
                                    A* __restrict__ mean, A* __restrict__ rstd, int64_t rows, int64_t C, A eps,
                                    bool rms) {
  const int lane = threadIdx.x & 31;
  const int64_t r = int64_t(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (r >= rows) return;  // whole warps leave together
  const Tx* xr = x + r * C;
  const A* rr = res ? res + r * C : nullptr;
  A* ro = rout + r * C;
  A s = 0;
  for (int64_t c = lane; c < C; c += 32) {
    A v = A(ld(xr, c));
    if (rr) v += rr[c];
    ro[c] = v;
    s += v;
  }
  const A mu = rms ? A(0) : warp_allsum(s) / A(C);
  A ss = 0;
  for (int64_t c = lane; c < C; c += 32) {
    const A d = ro[c] - mu;
    ss += d * d;
  }
  const A rs = rsqrt_t(warp_allsum(ss) / A(C) + eps);
  if (lane == 0) {
    if (!rms) mean[r] = mu;
    rstd[r] = rs;
  }
  Ty* yr = y + r * C;
  for (int64_t c = lane; c < C; c += 32) {
    A v = (ro[c] - mu) * rs;
    if (w) v *= A(ld(w, c));
    if (b) v += A(ld(b, c));
    st(yr, c, v);
  }
}

// gr = rstd (gxh - mean(gxh) - xh mean(gxh xh)),  gxh = gy w,  xh = (r - mu) rstd
template <typename Ty, typename Tw, typename A>
__global__ void add_norm_bwd_r_kernel(const Ty* __restrict__ gy, const A* __restrict__ rin, const Tw* __restrict__ w,
                                      const A* __restrict__ mean, const A* __restrict__ rstd, A* __restrict__ gr,
                                      int64_t rows, int64_t C, bool rms) {
  const int lane = threadIdx.x & 31;
  const int64_t r = int64_t(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (r >= rows) return;
  const A* xr = rin + r * C;
  const Ty* g = gy + r * C;
  const A mu = rms ? A(0) : mean[r], rs = rstd[r];
  A s1 = 0, s2 = 0;
  for (int64_t c = lane; c < C; c += 32) {
    const A gxh = w ? A(ld(g, c)) * A(ld(w, c)) : A(ld(g, c));
    s1 += gxh;
    s2 += gxh * (xr[c] - mu) * rs;
  }
  const A m1 = rms ? A(0) : warp_allsum(s1) / A(C);
  const A m2 = warp_allsum(s2) / A(C);
  A* o = gr + r * C;
  for (int64_t c = lane; c < C; c += 32) {
    const A gxh = w ? A(ld(g, c)) * A(ld(w, c)) : A(ld(g, c));
    o[c] = rs * (gxh - m1 - (xr[c] - mu) * rs * m2);
  }
}

// The same rows with grad_w / grad_b summed on the way (C <= 32 kFusedCols): the grid stays resident (at most
// kFusedBlocksPerSm blocks a SM), warp w of block b takes rows b*8 + w, + 8 grid, ...; lane l keeps the sums of
// columns l + 32 k in registers, the block adds its 8 warps' sums in order through shared memory and writes one
// partial row, and wb_final adds the blocks' rows in a fixed order (deterministic for a given grid). This saves
// norm_weight_grads' second pass over gy and r (25 norms a step of the 130M LM: 1.3 ms at 2c5c03c).
constexpr int kFusedCols = 32;  // columns per lane: C up to 1024
constexpr int kFusedBlocksPerSm = 2;
template <typename Ty, typename Tw, typename A>
__global__ void __launch_bounds__(32 * kRowsPerBlock) add_norm_bwd_fused_kernel(
    const Ty* __restrict__ gy, const A* __restrict__ rin, const Tw* __restrict__ w, const A* __restrict__ mean,
    const A* __restrict__ rstd, A* __restrict__ gr, A* __restrict__ pw, A* __restrict__ pb, int64_t rows, int64_t C,
    bool rms) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  A aw[kFusedCols], ab[kFusedCols];
#pragma unroll
  for (int k = 0; k < kFusedCols; ++k) aw[k] = ab[k] = A(0);
  for (int64_t r = int64_t(blockIdx.x) * kRowsPerBlock + warp; r < rows; r += int64_t(gridDim.x) * kRowsPerBlock) {
    const A* xr = rin + r * C;
    const Ty* g = gy + r * C;
    const A mu = rms ? A(0) : mean[r], rs = rstd[r];
    A s1 = 0, s2 = 0;
#pragma unroll
    for (int k = 0; k < kFusedCols; ++k) {
      const int64_t c = lane + 32 * k;
      if (c < C) {
        const A gv = A(ld(g, c)), xh = (xr[c] - mu) * rs;
        aw[k] += gv * xh;
        ab[k] += gv;
        const A gxh = w ? gv * A(ld(w, c)) : gv;
        s1 += gxh;
        s2 += gxh * xh;
      }
    }
    const A m1 = rms ? A(0) : warp_allsum(s1) / A(C);
    const A m2 = warp_allsum(s2) / A(C);
    A* o = gr + r * C;
#pragma unroll
    for (int k = 0; k < kFusedCols; ++k) {
      const int64_t c = lane + 32 * k;
      if (c < C) {
        const A gxh = w ? A(ld(g, c)) * A(ld(w, c)) : A(ld(g, c));
        o[c] = rs * (gxh - m1 - (xr[c] - mu) * rs * m2);
      }
    }
  }
  // The block's 8 warps, in order: first the weight sums, then (LayerNorm) the bias sums, through one buffer.
  __shared__ A part[kRowsPerBlock][32 * kFusedCols];
  for (int pass = 0; pass < (pb ? 2 : 1); ++pass) {
    if (pass) __syncthreads();  // the first pass's reads are done
#pragma unroll
    for (int k = 0; k < kFusedCols; ++k) part[warp][lane + 32 * k] = pass ? ab[k] : aw[k];
    __syncthreads();
    A* dst = pass ? pb : pw;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      A t = 0;
      for (int i = 0; i < kRowsPerBlock; ++i) t += part[i][c];
      dst[int64_t(blockIdx.x) * C + c] = t;
    }
  }
}

// Device types of the f32 family (f32, bf16, f16): everything but f64, which runs all-f64.
template <typename Fn>
void with_f32_family(DType t, Fn&& fn) {
  switch (t) {
    case DType::f32: return fn(std::type_identity<float>{});
    case DType::bf16: return fn(std::type_identity<__nv_bfloat16>{});
    case DType::f16: return fn(std::type_identity<__half>{});
    default: SSM_CHECK(false, "add_norm: unsupported dtype ", dtype_name(t), " with f32 accumulation");
  }
}

template <typename Tx, typename Tw, typename Ty, typename A>
void launch_forward(const Tensor& x, const Tensor& res, const Tensor& w, const Tensor& b, double eps, bool rms,
                    Tensor& y, Tensor& rout, Tensor& mean, Tensor& rstd) {
  const int64_t C = x.size(-1), rows = x.numel() / C;
  add_norm_fwd_kernel<Tx, Tw, Ty, A><<<blocks_for(rows, kRowsPerBlock), 32 * kRowsPerBlock, 0, stream()>>>(
      dptr<const Tx>(x), dptr<const A>(res), dptr<const Tw>(w), dptr<const Tw>(b), dptr<Ty>(y), dptr<A>(rout),
      rms ? static_cast<A*>(nullptr) : dptr<A>(mean), dptr<A>(rstd), rows, C, A(eps), rms);
  SSM_CUDA_LAUNCH_CHECK();
}

template <typename Ty, typename Tw, typename A>
void launch_backward(const Tensor& gy, const Tensor& rin, const Tensor& w, const Tensor& mean, const Tensor& rstd,
                     bool rms, Tensor* grad_r, Tensor* grad_w, Tensor* grad_b) {
  const int64_t C = rin.size(-1), rows = rin.numel() / C;
  const A* mp = rms ? static_cast<const A*>(nullptr) : dptr<const A>(mean);
  if constexpr (!std::is_same_v<A, double>) {  // (f64 rows: the two passes below)
    if (grad_r && (grad_w || grad_b) && C <= 32 * kFusedCols) {
      const int64_t grid = std::min<int64_t>(blocks_for(rows, kRowsPerBlock), int64_t(::ssm::cuda::sm_count()) * kFusedBlocksPerSm);
      Tensor pw = Tensor::empty({grid, C}, DType::f32, rin.device());
      Tensor pb = grad_b ? Tensor::empty({grid, C}, DType::f32, rin.device()) : Tensor();
      add_norm_bwd_fused_kernel<Ty, Tw, A><<<unsigned(grid), 32 * kRowsPerBlock, 0, stream()>>>(
          dptr<const Ty>(gy), dptr<const A>(rin), dptr<const Tw>(w), mp, dptr<const A>(rstd), dptr<A>(*grad_r),
          pw.data<A>(), grad_b ? pb.data<A>() : nullptr, rows, C, rms);
      SSM_CUDA_LAUNCH_CHECK();
      wb_final<Tw, A>(pw.data<A>(), grad_b ? pb.data<A>() : nullptr, grad_w ? dptr<Tw>(*grad_w) : nullptr,
                      grad_b ? dptr<Tw>(*grad_b) : nullptr, grid, C, stream());
      return;
    }
  }
  if (grad_r) {
    add_norm_bwd_r_kernel<Ty, Tw, A><<<blocks_for(rows, kRowsPerBlock), 32 * kRowsPerBlock, 0, stream()>>>(
        dptr<const Ty>(gy), dptr<const A>(rin), dptr<const Tw>(w), mp, dptr<const A>(rstd), dptr<A>(*grad_r), rows,
        C, rms);
    SSM_CUDA_LAUNCH_CHECK();
  }
  if (grad_w || grad_b)
    norm_weight_grads(dptr<const Ty>(gy), dptr<const A>(rin), mp, dptr<const A>(rstd),
                      grad_w ? dptr<Tw>(*grad_w) : nullptr, grad_b ? dptr<Tw>(*grad_b) : nullptr, rows, C, rms,
                      rin.device(), stream());
}

}  // namespace

void add_norm_forward(const Tensor& x, const Tensor& residual, const Tensor& weight, const Tensor& bias, double eps,
                      bool rms, Tensor& y, Tensor& residual_out, Tensor& mean, Tensor& rstd) {
  if (x.dtype() == DType::f64) {
    launch_forward<double, double, double, double>(x, residual, weight, bias, eps, rms, y, residual_out, mean, rstd);
    return;
  }
  const DType wt = weight.defined() ? weight.dtype() : (bias.defined() ? bias.dtype() : DType::f32);
  with_f32_family(x.dtype(), [&](auto xtag) {
    with_f32_family(wt, [&](auto wtag) {
      with_f32_family(y.dtype(), [&](auto ytag) {
        using Tx = typename decltype(xtag)::type;
        using Tw = typename decltype(wtag)::type;
        using Ty = typename decltype(ytag)::type;
        launch_forward<Tx, Tw, Ty, float>(x, residual, weight, bias, eps, rms, y, residual_out, mean, rstd);
      });
    });
  });
}

void add_norm_backward(const Tensor& grad_y, const Tensor& residual_out, const Tensor& weight, const Tensor& mean,
                       const Tensor& rstd, bool rms, Tensor* grad_r, Tensor* grad_w, Tensor* grad_b) {
  if (residual_out.dtype() == DType::f64) {
    launch_backward<double, double, double>(grad_y, residual_out, weight, mean, rstd, rms, grad_r, grad_w, grad_b);
    return;
  }
  const DType wt = weight.defined() ? weight.dtype() : (grad_b ? grad_b->dtype() : DType::f32);
  with_f32_family(grad_y.dtype(), [&](auto ytag) {
    with_f32_family(wt, [&](auto wtag) {
      using Ty = typename decltype(ytag)::type;
      using Tw = typename decltype(wtag)::type;
      launch_backward<Ty, Tw, float>(grad_y, residual_out, weight, mean, rstd, rms, grad_r, grad_w, grad_b);
    });
  });
}

}  // namespace ssm::kernels::cuda
