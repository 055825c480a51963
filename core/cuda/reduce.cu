// Reductions on CUDA: sum over any set of dims, amax / argmax over one dim, norm2.
//
// Layout (as on the CPU, core/ops_reduce.cpp): a contiguous x whose reduced dims form one block is read
// in place as (A, R, C) -- A = dims before the block, R = the reduced block, C = dims after; any other
// set of reduced dims is permuted to the end and made contiguous first, giving (A, R, 1).
//   C == 1 (rows):    R <= 2048: one warp per row; else blocks of 256 threads per row chunk, with the
//                     row split over several blocks when there are too few rows to fill the GPU; the
//                     per-chunk partial sums are then summed by a second, tiny pass.
//   C  > 1 (columns): a block of (tx, ty) threads covers tx*V consecutive columns (V-wide vector loads,
//                     coalesced) and ty rows at a time; ty partials meet in shared memory; R is split
//                     over blocks (second pass again) when A * C is too small to fill the GPU.
// Accumulation: f32 for f32/bf16/f16, f64 for f64, i64 for integers. Deterministic (no atomics): the
// reduction order depends only on the shape. Bytes moved: numel * sizeof(T) read + the output.
#include <algorithm>

#include "core/cuda/common.cuh"
#include "core/cuda/cuda_ops.h"
#include "core/cuda/sumsq_list.cuh"

namespace ssm::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kRowWarpMax = 2048;  // rows up to this length: one warp per row

template <class T> constexpr int vec_width() { return std::min<int>(8, int(16 / sizeof(T))); }

template <class T> DType dtype_of();
template <> DType dtype_of<float>() { return DType::f32; }
template <> DType dtype_of<double>() { return DType::f64; }
template <> DType dtype_of<int64_t>() { return DType::i64; }

__device__ __forceinline__ bool is_aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Sum of p[beg, end) by the threads of a group (thread t of nt), V-wide loads when aligned.
template <class T>
__device__ __forceinline__ acc_t<T> thread_sum(const T* p, int64_t beg, int64_t end, int t, int nt) {
  using A = acc_t<T>;
  constexpr int V = vec_width<T>();
  A acc = A(0);
  int64_t i0 = beg;
  if (V > 1 && is_aligned16(p + beg)) {
    const int64_t nv = (end - beg) / V;
    const T* pv = p + beg;
    int64_t i = t;
    for (; i + 3 * nt < nv; i += 4 * nt) {  // four 16-byte loads in flight per thread
      const Vec<T, V> v0 = load_vec<T, V>(pv, i), v1 = load_vec<T, V>(pv, i + nt), v2 = load_vec<T, V>(pv, i + 2 * nt),
                      v3 = load_vec<T, V>(pv, i + 3 * nt);
#pragma unroll
      for (int e = 0; e < V; ++e) acc += (to_acc(v0.v[e]) + to_acc(v1.v[e])) + (to_acc(v2.v[e]) + to_acc(v3.v[e]));
    }
    for (; i < nv; i += nt) {
      const Vec<T, V> v0 = load_vec<T, V>(pv, i);
#pragma unroll
      for (int e = 0; e < V; ++e) acc += to_acc(v0.v[e]);
    }
    i0 = beg + nv * V;
  }
  for (int64_t i = i0 + t; i < end; i += nt) acc += to_acc(p[i]);
  return acc;
}

// out[row] = sum of x[row, 0:R], one warp per row, 8 rows per block.
template <class T, class O>
__global__ void __launch_bounds__(kThreads) row_sum_warp(const T* x, int64_t rows, int64_t R, O* out) {
  const int64_t row = int64_t(blockIdx.x) * (kThreads / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;  // the whole warp leaves together
  acc_t<T> acc = thread_sum(x + row * R, 0, R, lane, 32);
  acc = warp_sum(acc);
  if (lane == 0) out[row] = from_acc<O>(acc);
}

// Block b sums chunk (b % splits) of row (b / splits) into out[b] (out[row] when splits == 1).
template <class T, class O>
__global__ void __launch_bounds__(kThreads) row_sum_block(const T* x, int64_t R, int64_t chunk, int splits, O* out) {
  const int64_t row = blockIdx.x / splits;
  const int64_t s = blockIdx.x % splits;
  const int64_t beg = s * chunk, end = std::min<int64_t>(R, beg + chunk);
  acc_t<T> acc = thread_sum(x + row * R, beg, end, threadIdx.x, blockDim.x);
  acc = block_sum(acc);
  if (threadIdx.x == 0) out[blockIdx.x] = from_acc<O>(acc);
}

// out[(a * splits + s) * C + c] = sum over rows r in chunk s of x[a, r, c]. Block (tx, ty) threads; thread
// x covers columns c0 .. c0 + V - 1 (V > 1 only when C % V == 0 and x is 16-byte aligned).
template <class T, class O, int V>
__global__ void __launch_bounds__(kThreads) col_sum(const T* x, int64_t R, int64_t C, int64_t col_blocks, int splits,
                                                    int64_t rchunk, O* out) {
  using A = acc_t<T>;
  __shared__ A sh[kThreads * V];
  const int64_t per_a = col_blocks * splits;
  const int64_t a = blockIdx.x / per_a;
  const int64_t rest = blockIdx.x % per_a;
  const int64_t cb = rest / splits, s = rest % splits;
  const int64_t c0 = (cb * blockDim.x + threadIdx.x) * V;
  const int64_t rbeg = s * rchunk, rend = std::min<int64_t>(R, rbeg + rchunk);
  A acc[V];
#pragma unroll
  for (int e = 0; e < V; ++e) acc[e] = A(0);
  if (c0 < C) {
    const T* p = x + a * R * C + c0;
#pragma unroll 4
    for (int64_t r = rbeg + threadIdx.y; r < rend; r += blockDim.y) {  // unrolled: 4 loads in flight
      if constexpr (V > 1) {
        const Vec<T, V> v = load_vec<T, V>(p + r * C, 0);
#pragma unroll
        for (int e = 0; e < V; ++e) acc[e] += to_acc(v.v[e]);
      } else {
        acc[0] += to_acc(p[r * C]);
      }
    }
  }
  const int slot = (threadIdx.y * blockDim.x + threadIdx.x) * V;
#pragma unroll
  for (int e = 0; e < V; ++e) sh[slot + e] = acc[e];
  __syncthreads();
  if (threadIdx.y == 0 && c0 < C) {
    for (int y = 1; y < int(blockDim.y); ++y) {
      const int o = (y * blockDim.x + threadIdx.x) * V;
#pragma unroll
      for (int e = 0; e < V; ++e) acc[e] += sh[o + e];
    }
    O* po = out + (a * splits + s) * C + c0;
#pragma unroll
    for (int e = 0; e < V; ++e) po[e] = from_acc<O>(acc[e]);
  }
}

int target_blocks() { return sm_count() * 8; }

// out (A elements) = row sums of the contiguous (A, R) array x.
template <class T, class O>
void sum_rows(const T* x, int64_t A, int64_t R, O* out, cudaStream_t st) {
  using Acc = acc_t<T>;
  if (R <= kRowWarpMax) {
    row_sum_warp<T, O><<<blocks_for(A, kThreads / 32), kThreads, 0, st>>>(x, A, R, out);
    SSM_CUDA_LAUNCH_CHECK();
    return;
  }
  constexpr int V = vec_width<T>();
  const int64_t min_chunk = int64_t(kThreads) * V * 4;
  int64_t splits = std::clamp<int64_t>((target_blocks() + A - 1) / A, 1, std::min<int64_t>(1024, (R + min_chunk - 1) / min_chunk));
  int64_t chunk = (R + splits - 1) / splits;
  chunk = (chunk + V - 1) / V * V;  // chunk starts stay 16-byte aligned when the row start is
  splits = (R + chunk - 1) / chunk;
  if (splits == 1) {
    row_sum_block<T, O><<<unsigned(A), kThreads, 0, st>>>(x, R, chunk, 1, out);
    SSM_CUDA_LAUNCH_CHECK();
    return;
  }
  Tensor part = Tensor::empty({A * splits}, dtype_of<Acc>(), Device::cuda(current_device()));
  row_sum_block<T, Acc><<<unsigned(A * splits), kThreads, 0, st>>>(x, R, chunk, int(splits), part.data<Acc>());
  SSM_CUDA_LAUNCH_CHECK();
  row_sum_warp<Acc, O><<<blocks_for(A, kThreads / 32), kThreads, 0, st>>>(part.data<Acc>(), A, splits, out);
  SSM_CUDA_LAUNCH_CHECK();
}

template <class T, class O, int V>
void launch_col_sum(const T* x, int64_t A, int64_t R, int64_t C, int splits, int64_t rchunk, O* out, cudaStream_t st) {
  const int64_t groups = (C + V - 1) / V;  // threads needed across the columns
  int tx = 1;
  while (tx < 32 && tx < groups) tx *= 2;
  const int ty = kThreads / tx;
  const int64_t col_blocks = (groups + tx - 1) / tx;
  const int64_t blocks = A * col_blocks * splits;
  col_sum<T, O, V><<<unsigned(blocks), dim3(unsigned(tx), unsigned(ty)), 0, st>>>(x, R, C, col_blocks, splits, rchunk, out);
  SSM_CUDA_LAUNCH_CHECK();
}

// out (A, C) = sum over r of the contiguous (A, R, C) array x, C > 1.
template <class T, class O>
void sum_cols(const T* x, int64_t A, int64_t R, int64_t C, O* out, cudaStream_t st) {
  using Acc = acc_t<T>;
  constexpr int V = vec_width<T>();
  const bool vec = (C % V == 0) && aligned(x, sizeof(T) * V);
  const int64_t groups = vec ? C / V : C;
  int tx = 1;
  while (tx < 32 && tx < groups) tx *= 2;
  const int ty = kThreads / tx;
  const int64_t base_blocks = A * ((groups + tx - 1) / tx);
  // Split R so that the blocks make exactly one full wave: as many as fit on the GPU at once. A partial
  // second wave cost a quarter of the time when registers allowed fewer than 8 blocks per SM (bf16).
  int per_sm = 0;
  if (vec)
    SSM_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, col_sum<T, Acc, V>, kThreads, 0));
  else
    SSM_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, col_sum<T, Acc, 1>, kThreads, 0));
  const int64_t wave = int64_t(sm_count()) * std::max(per_sm, 1);
  int64_t splits = 1;
  if (base_blocks < wave && R > 8 * int64_t(ty))
    splits = std::max<int64_t>(1, std::min<int64_t>(wave / base_blocks, R / (4 * int64_t(ty))));
  splits = std::clamp<int64_t>(splits, 1, 1024);
  const int64_t rchunk = (R + splits - 1) / splits;
  splits = (R + rchunk - 1) / rchunk;
  auto run = [&](auto* dst, int sp) {
    if (vec)
      launch_col_sum<T, std::remove_pointer_t<decltype(dst)>, V>(x, A, R, C, sp, rchunk, dst, st);
    else
      launch_col_sum<T, std::remove_pointer_t<decltype(dst)>, 1>(x, A, R, C, sp, rchunk, dst, st);
  };
  if (splits == 1) {
    run(out, 1);
    return;
  }
  Tensor part = Tensor::empty({A, splits, C}, dtype_of<Acc>(), Device::cuda(current_device()));
  run(part.data<Acc>(), int(splits));
  launch_col_sum<Acc, O, 1>(part.data<Acc>(), A, splits, C, 1, splits, out, st);  // second pass over splits
}

Shape reduced_shape(const Shape& s, const std::vector<int64_t>& dims, bool keepdim) {
  Shape out;
  for (int64_t d = 0; d < int64_t(s.size()); ++d) {
    const bool red = std::binary_search(dims.begin(), dims.end(), d);
    if (!red)
      out.push_back(s[size_t(d)]);
    else if (keepdim)
      out.push_back(1);
  }
  return out;
}

// x as (A, R, C) with the reduced elements of output (a, c) at data[(a R + r) C + c] (see the top).
struct ARC {
  Tensor x;
  int64_t A = 1, R = 1, C = 1;
};
ARC to_arc(const Tensor& x, const std::vector<int64_t>& dims) {
  ARC r;
  const Shape& s = x.shape();
  if (dims.empty()) {
    r.x = x.contiguous();
    r.A = x.numel();
    return r;
  }
  const bool block = dims.back() - dims.front() + 1 == int64_t(dims.size());
  if (block && is_dense(x)) {
    r.x = x;
    for (int64_t d = 0; d < dims.front(); ++d) r.A *= s[size_t(d)];
    for (int64_t d : dims) r.R *= s[size_t(d)];
    for (int64_t d = dims.back() + 1; d < x.dim(); ++d) r.C *= s[size_t(d)];
    return r;
  }
  std::vector<int64_t> perm;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (!std::binary_search(dims.begin(), dims.end(), d)) {
      perm.push_back(d);
      r.A *= s[size_t(d)];
    }
  for (int64_t d : dims) {
    perm.push_back(d);
    r.R *= s[size_t(d)];
  }
  r.x = x.permute(perm).contiguous();
  return r;
}

DType sum_dtype(DType t) { return t == DType::u8 ? DType::i64 : t; }

template <class T> struct SumOut { using type = T; };
template <> struct SumOut<uint8_t> { using type = int64_t; };

// ---------------- amax / argmax ----------------
// (v1, i1) beats (v2, i2): NaN beats numbers, larger beats smaller, ties go to the smaller index.
template <class A>
__device__ __forceinline__ bool beats(A v1, int64_t i1, A v2, int64_t i2) {
  if (i2 < 0) return i1 >= 0;
  if (i1 < 0) return false;
  const bool n1 = v1 != v1, n2 = v2 != v2;
  if (n1 || n2) return (n1 && n2) ? i1 < i2 : n1;
  return v1 > v2 || (v1 == v2 && i1 < i2);
}
template <class A>
__device__ __forceinline__ void warp_argmax(A& v, int64_t& i) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const A ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int64_t oi = __shfl_xor_sync(0xffffffffu, i, o);
    if (beats(ov, oi, v, i)) {
      v = ov;
      i = oi;
    }
  }
}

// Rows of the contiguous (rows, R) array; group = a warp (warp_rows) or the whole block.
template <class T>
__global__ void __launch_bounds__(kThreads) max_rows(const T* x, int64_t rows, int64_t R, bool warp_rows, T* vout,
                                                     int64_t* iout) {
  using A = acc_t<T>;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t row = warp_rows ? int64_t(blockIdx.x) * (kThreads / 32) + warp : int64_t(blockIdx.x);
  if (row >= rows) return;  // uniform per warp (warp_rows) or per block
  const int t = warp_rows ? lane : threadIdx.x;
  const int nt = warp_rows ? 32 : blockDim.x;
  const T* p = x + row * R;
  A best = A(0);
  int64_t bi = -1;
  for (int64_t r = t; r < R; r += nt) {
    const A v = to_acc(p[r]);
    if (beats(v, r, best, bi)) {
      best = v;
      bi = r;
    }
  }
  warp_argmax(best, bi);
  if (!warp_rows) {
    __shared__ A sv[32];
    __shared__ int64_t si[32];
    if (lane == 0) {
      sv[warp] = best;
      si[warp] = bi;
    }
    __syncthreads();
    if (warp != 0) return;
    const int nw = blockDim.x >> 5;
    best = lane < nw ? sv[lane] : A(0);
    bi = lane < nw ? si[lane] : -1;
    warp_argmax(best, bi);
  }
  if (lane == 0) {
    if (vout) vout[row] = from_acc<T>(best);
    if (iout) iout[row] = bi;
  }
}

// (A, R, C), C > 1: one thread per output (a, c), reading down r (coalesced across c).
template <class T>
__global__ void __launch_bounds__(kThreads) max_cols(const T* x, int64_t A_, int64_t R, int64_t C, T* vout,
                                                     int64_t* iout) {
  using A = acc_t<T>;
  const int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (o >= A_ * C) return;
  const int64_t a = o / C, c = o % C;
  const T* p = x + a * R * C + c;
  A best = to_acc(p[0]);
  int64_t bi = 0;
  for (int64_t r = 1; r < R; ++r) {
    const A v = to_acc(p[r * C]);
    if (beats(v, r, best, bi)) {
      best = v;
      bi = r;
    }
  }
  if (vout) vout[o] = from_acc<T>(best);
  if (iout) iout[o] = bi;
}

Tensor max_impl(const Tensor& x, int64_t dim, bool keepdim, bool want_index) {
  const char* op = want_index ? "argmax" : "amax";
  TensorDevice td(x);
  if (x.dim() == 0) return want_index ? Tensor::zeros({}, DType::i64, x.device()) : x.clone();
  const Shape oshape = reduced_shape(x.shape(), {dim}, keepdim);
  Tensor out = Tensor::empty(oshape, want_index ? DType::i64 : x.dtype(), x.device());
  if (out.numel() == 0) return out;
  ARC arc = to_arc(x, {dim});
  SSM_DISPATCH_ALL(x.dtype(), op, {
    const scalar_t* px = arc.x.data<scalar_t>();
    scalar_t* vout = want_index ? nullptr : out.data<scalar_t>();
    int64_t* iout = want_index ? out.data<int64_t>() : nullptr;
    if (arc.C == 1) {
      const bool warp_rows = arc.R <= 1024;
      const unsigned blocks = warp_rows ? blocks_for(arc.A, kThreads / 32) : unsigned(arc.A);
      max_rows<scalar_t><<<blocks, kThreads, 0, td.stream>>>(px, arc.A, arc.R, warp_rows, vout, iout);
    } else {
      max_cols<scalar_t><<<blocks_for(arc.A * arc.C, kThreads), kThreads, 0, td.stream>>>(px, arc.A, arc.R, arc.C,
                                                                                          vout, iout);
    }
    SSM_CUDA_LAUNCH_CHECK();
  });
  return out;
}

// ---------------- norm2 ----------------
template <class T>
__global__ void __launch_bounds__(kThreads) sumsq_kernel(const T* x, int64_t n, double* partial) {
  using A = acc_t<T>;
  constexpr int V = vec_width<T>();
  A acc = A(0);
  const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, nt = int64_t(gridDim.x) * blockDim.x;
  int64_t i0 = 0;
  if (is_aligned16(x)) {
    const int64_t nv = n / V;
    for (int64_t i = t; i < nv; i += nt) {
      const Vec<T, V> v = load_vec<T, V>(x, i);
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const A a = to_acc(v.v[e]);
        acc += a * a;
      }
    }
    i0 = nv * V;
  }
  for (int64_t i = i0 + t; i < n; i += nt) {
    const A a = to_acc(x[i]);
    acc += a * a;
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = double(acc);
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  TensorDevice td(x);
  std::vector<int64_t> dims = dims_in;
  if (dims.empty())
    for (int64_t d = 0; d < x.dim(); ++d) dims.push_back(d);
  const Shape oshape = reduced_shape(x.shape(), dims, keepdim);
  Tensor out = Tensor::empty(oshape, sum_dtype(x.dtype()), x.device());
  if (out.numel() == 0) return out;
  if (x.numel() == 0) {
    fill(out, 0.0);
    return out;
  }
  ARC arc = to_arc(x, dims);
  SSM_DISPATCH_ALL(x.dtype(), "sum", {
    using O = typename SumOut<scalar_t>::type;
    const scalar_t* px = arc.x.data<scalar_t>();
    O* po = out.data<O>();
    if (arc.R == 1) {
      // Nothing to reduce (only size-1 or no dims): a copy with the output dtype.
      Tensor src = arc.x.reshape(oshape);
      copy_strided(out, src);
    } else if (arc.C == 1) {
      sum_rows<scalar_t, O>(px, arc.A, arc.R, po, td.stream);
    } else {
      sum_cols<scalar_t, O>(px, arc.A, arc.R, arc.C, po, td.stream);
    }
  });
  return out;
}

Tensor amax(const Tensor& x, int64_t dim, bool keepdim) { return max_impl(x, dim, keepdim, false); }
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) { return max_impl(x, dim, keepdim, true); }

// sqrt(sum x^2): per-block partial sums (f32 tree for f32/bf16/f16, f64 for f64), added in f64 on the host.
// sum_squares: the same for many tensors into one buffer of partials, read back once (f32 lists in one launch).
namespace {
unsigned sumsq_blocks(int64_t n) {
  return unsigned(std::min<int64_t>(blocks_for(n, int64_t(kThreads) * 8), target_blocks()));
}
void launch_sumsq(const Tensor& x, double* partial, cudaStream_t st) {
  SSM_DISPATCH_FLOAT(x.dtype(), "norm2", {
    sumsq_kernel<scalar_t><<<sumsq_blocks(x.numel()), kThreads, 0, st>>>(x.data<scalar_t>(), x.numel(), partial);
    SSM_CUDA_LAUNCH_CHECK();
  });
}
double host_sum(const Tensor& part, cudaStream_t st) {
  std::vector<double> h(size_t(part.numel()));
  SSM_CUDA_CHECK(cudaMemcpyAsync(h.data(), part.data_ptr(), h.size() * sizeof(double), cudaMemcpyDeviceToHost, st));
  SSM_CUDA_CHECK(cudaStreamSynchronize(st));
  double s = 0;
  for (double v : h) s += v;
  return s;
}
}  // namespace

double norm2(const Tensor& x) { return std::sqrt(sum_squares({x})); }

// Dense, 16-byte aligned f32 tensors (gradients) go to sumsq_list (sumsq_list.cuh) up to kSumsqListMax a launch;
// any other tensor gets sumsq_kernel of its own. Every block's partial goes to one buffer, read back once.
double sum_squares(const std::vector<Tensor>& xs) {
  if (xs.empty()) return 0.0;
  TensorDevice td(xs[0]);
  std::vector<SumsqList> lists;
  std::vector<Tensor> singles;
  SumsqList L{};
  for (const Tensor& x : xs) {
    if (x.numel() == 0) continue;
    if (x.dtype() == DType::f32 && x.is_contiguous() && aligned(x.data_ptr(), 16)) {
      add_list_chunks<kSumsqChunk>(L.chunks_to, L.numel, L.n, x.numel());
      L.x[L.n] = x.data<float>();
      if (++L.n == kSumsqListMax) {
        lists.push_back(L);
        L = SumsqList{};
      }
    } else {
      singles.push_back(x.contiguous());
    }
  }
  if (L.n > 0) lists.push_back(L);
  const int64_t most = int64_t(sm_count()) * 8;
  const auto list_blocks = [&](const SumsqList& l) { return std::min(l.chunks_to[l.n - 1], most); };
  int64_t total = 0;
  for (const SumsqList& l : lists) total += list_blocks(l);
  for (const Tensor& c : singles) total += sumsq_blocks(c.numel());
  if (total == 0) return 0.0;
  Tensor part = Tensor::empty({total}, DType::f64, xs[0].device());
  double* at = part.data<double>();
  for (SumsqList& l : lists) {
    l.partial = at;
    sumsq_list<<<unsigned(list_blocks(l)), kSumsqThreads, 0, td.stream>>>(l);
    SSM_CUDA_LAUNCH_CHECK();
    at += list_blocks(l);
  }
  for (const Tensor& c : singles) {
    launch_sumsq(c, at, td.stream);
    at += sumsq_blocks(c.numel());
  }
  return host_sum(part, td.stream);
}

}  // namespace ssm::cuda
