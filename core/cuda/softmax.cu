// softmax / log_softmax along any dim and cross entropy (forward and backward) on CUDA.
//
// softmax: x (made contiguous) is seen as (A, R, C) around the dim. C == 1 (the last dim): one warp per
// row when R <= 1024, else one block per row. C > 1: one thread per (a, c), reading down r (coalesced
// across c). Each pass keeps an online (max m, sum s of e^(x - m)) pair -- merging (m1, s1), (m2, s2)
// gives m = max(m1, m2), s = s1 e^(m1 - m) + s2 e^(m2 - m) -- then a second pass writes
// e^(x - m) / s (softmax) or x - m - log s (log_softmax). Compute in f32 (f64 for f64).
//
// cross_entropy: one group per row computes logsumexp(x_i) - x_i[t_i] (f64 row losses); a single block
// adds them in a fixed order and divides by the number of valid rows (0 when none). A target outside
// [0, C) that is not ignore_index sets a device flag (the first such row, by atomicMin) and the host then
// throws BadInput naming it. The backward writes (softmax - onehot) * grad_scale / n_valid.
// cross_entropy_with_grad_: both at once, in place, one block per row: pass 1 folds the row into (m, s) 16 bytes
// a load (a vector's max first, so one rescale per vector, not per element), pass 2 reads the row again (from
// L2: long rows get blocks of 1024 threads, so few rows are in flight; softmax_rows.cuh) and writes the
// gradient over it. One HBM read and one write of the logits; 2 exps an element.
#include <cfloat>
#include <climits>

#include "core/cuda/common.cuh"
#include "core/cuda/cuda_ops.h"
#include "core/cuda/math.cuh"
#include "core/cuda/softmax_rows.cuh"

namespace ssm::cuda {
namespace {

constexpr int kThreads = kSoftmaxThreads;

template <class A>
__device__ __forceinline__ MS<A> ms_add(MS<A> p, A v) {  // fold one value in
  if (v == -INFINITY) return p;                          // contributes e^-inf = 0
  if (v > p.m) {
    p.s = (p.s == A(0) ? A(0) : p.s * m_exp(p.m - v)) + A(1);
    p.m = v;
  } else {
    p.s += m_exp(v - p.m);  // NaN v makes s NaN, as on the CPU
  }
  return p;
}
// (m, s) of p[0, R) over a group: a warp (warp_rows) or the whole block. Every thread gets the result.
template <class T>
__device__ __forceinline__ MS<acc_t<T>> row_ms(const T* p, int64_t R, bool warp_rows) {
  using A = acc_t<T>;
  const int t = warp_rows ? (threadIdx.x & 31) : threadIdx.x;
  const int nt = warp_rows ? 32 : blockDim.x;
  MS<A> ms{A(-INFINITY), A(0)};
  for (int64_t r = t; r < R; r += nt) ms = ms_add(ms, to_acc(p[r]));
  return warp_rows ? warp_ms(ms) : block_ms(ms);
}

template <class T>
__global__ void __launch_bounds__(kThreads) softmax_rows(const T* x, T* y, int64_t rows, int64_t R, bool warp_rows,
                                                         bool log) {
  using A = acc_t<T>;
  const int64_t row = warp_rows ? int64_t(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5) : int64_t(blockIdx.x);
  if (row >= rows) return;  // uniform per warp (warp_rows) or block
  const T* p = x + row * R;
  T* q = y + row * R;
  const MS<A> ms = row_ms(p, R, warp_rows);
  const int t = warp_rows ? (threadIdx.x & 31) : threadIdx.x;
  const int nt = warp_rows ? 32 : blockDim.x;
  const A inv = A(1) / ms.s, ls = m_log(ms.s);
  for (int64_t r = t; r < R; r += nt) {
    const A v = to_acc(p[r]);
    q[r] = from_acc<T>(log ? v - ms.m - ls : m_exp(v - ms.m) * inv);
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads) softmax_cols(const T* x, T* y, int64_t A_, int64_t R, int64_t C, bool log) {
  using A = acc_t<T>;
  const int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (o >= A_ * C) return;
  const int64_t a = o / C, c = o % C;
  const T* p = x + a * R * C + c;
  T* q = y + a * R * C + c;
  MS<A> ms{A(-INFINITY), A(0)};
  for (int64_t r = 0; r < R; ++r) ms = ms_add(ms, to_acc(p[r * C]));
  const A inv = A(1) / ms.s, ls = m_log(ms.s);
  for (int64_t r = 0; r < R; ++r) {
    const A v = to_acc(p[r * C]);
    q[r * C] = from_acc<T>(log ? v - ms.m - ls : m_exp(v - ms.m) * inv);
  }
}

// ---------------- cross entropy ----------------
template <class I>
__device__ __forceinline__ bool target_ok(I t, int64_t C, int64_t ignore) {
  return int64_t(t) == ignore || (t >= 0 && int64_t(t) < C);
}

// Row losses (f64) and validity. bad = first invalid row (initialised to N).
template <class T, class I>
__global__ void __launch_bounds__(kThreads) ce_rows(const T* x, const I* tg, int64_t N, int64_t C, int64_t ignore,
                                                    bool warp_rows, double* loss, int* valid,
                                                    unsigned long long* bad) {
  using A = acc_t<T>;
  const int64_t row = warp_rows ? int64_t(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5) : int64_t(blockIdx.x);
  if (row >= N) return;
  const int64_t t = int64_t(tg[row]);
  const bool lead = warp_rows ? (threadIdx.x & 31) == 0 : threadIdx.x == 0;
  if (t == ignore || t < 0 || t >= C) {  // uniform per group: no reduction below runs
    if (lead) {
      loss[row] = 0.0;
      valid[row] = 0;
      if (t != ignore) atomicMin(bad, (unsigned long long)row);
    }
    return;
  }
  const T* p = x + row * C;
  const MS<A> ms = row_ms(p, C, warp_rows);
  if (lead) {
    loss[row] = double(ms.m) + ::log(double(ms.s)) - double(to_acc(p[t]));
    valid[row] = 1;
  }
}

// out[0] = sum(loss) / sum(valid) (0 when no row is valid); one block, fixed order.
template <class O>
__global__ void __launch_bounds__(1024) ce_mean(const double* loss, const int* valid, int64_t N, O* out) {
  double s = 0;
  long long v = 0;
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) {
    s += loss[i];
    v += valid[i];
  }
  s = block_sum(s);
  v = block_sum(v);
  if (threadIdx.x == 0) out[0] = O(v > 0 ? s / double(v) : 0.0);
}

// out (f32 or f64, 0-d) = the mean of the valid rows' losses.
void launch_ce_mean(const Tensor& loss, const Tensor& valid, int64_t N, Tensor& out, cudaStream_t st) {
  if (out.dtype() == DType::f64)
    ce_mean<double><<<1, 1024, 0, st>>>(loss.data<double>(), valid.data<int>(), N, out.data<double>());
  else
    ce_mean<float><<<1, 1024, 0, st>>>(loss.data<double>(), valid.data<int>(), N, out.data<float>());
  SSM_CUDA_LAUNCH_CHECK();
}

// n_valid (one block) and the first invalid row.
template <class I>
__global__ void __launch_bounds__(1024) ce_count(const I* tg, int64_t N, int64_t C, int64_t ignore, long long* count,
                                                 unsigned long long* bad) {
  long long v = 0;
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) {
    const int64_t t = int64_t(tg[i]);
    if (t == ignore) continue;
    if (t < 0 || t >= C)
      atomicMin(bad, (unsigned long long)i);
    else
      ++v;
  }
  v = block_sum(v);
  if (threadIdx.x == 0) count[0] = v;
}

template <class T, class I>
__global__ void __launch_bounds__(kThreads) ce_backward_rows(const T* x, const I* tg, int64_t N, int64_t C,
                                                             int64_t ignore, bool warp_rows, double grad_scale,
                                                             const long long* count, T* out) {
  using A = acc_t<T>;
  const int64_t row = warp_rows ? int64_t(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5) : int64_t(blockIdx.x);
  if (row >= N) return;
  const int tt = warp_rows ? (threadIdx.x & 31) : threadIdx.x;
  const int nt = warp_rows ? 32 : blockDim.x;
  const int64_t t = int64_t(tg[row]);
  T* q = out + row * C;
  if (t == ignore || t < 0 || t >= C) {
    for (int64_t c = tt; c < C; c += nt) q[c] = from_acc<T>(A(0));
    return;
  }
  const T* p = x + row * C;
  const MS<A> ms = row_ms(p, C, warp_rows);
  const A scale = A(grad_scale / double(count[0]));
  const A inv = A(1) / ms.s;
  for (int64_t c = tt; c < C; c += nt) {
    const A sm = m_exp(to_acc(p[c]) - ms.m) * inv;
    q[c] = from_acc<T>((sm - (c == t ? A(1) : A(0))) * scale);
  }
}

void check_bad_target(const char* op, const Tensor& bad, const Tensor& targets, int64_t N, int64_t C, int64_t ignore,
                      cudaStream_t st) {
  unsigned long long row = 0;
  SSM_CUDA_CHECK(cudaMemcpyAsync(&row, bad.data_ptr(), sizeof(row), cudaMemcpyDeviceToHost, st));
  SSM_CUDA_CHECK(cudaStreamSynchronize(st));
  if (row >= (unsigned long long)N) return;
  const int64_t value = targets.narrow(0, int64_t(row), 1).to_int_vector()[0];
  throw_input(::ssm::cat(op, ": target ", value, " at row ", row, " is outside [0, ", C,
                         ") and is not ignore_index (", ignore, ")"));
}

Tensor make_bad_flag(int64_t N, Device d) {
  Tensor bad = Tensor::empty({1}, DType::i64, d);
  fill(bad, double(N));
  return bad;
}

}  // namespace

Tensor softmax(const Tensor& x_in, int64_t dim, bool log) {
  TensorDevice td(x_in);
  const Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.numel() == 0) return y;
  if (x.dim() == 0) {
    fill(y, log ? 0.0 : 1.0);
    return y;
  }
  int64_t A = 1, C = 1;
  for (int64_t d = 0; d < dim; ++d) A *= x.shape()[size_t(d)];
  for (int64_t d = dim + 1; d < x.dim(); ++d) C *= x.shape()[size_t(d)];
  const int64_t R = x.shape()[size_t(dim)];
  SSM_DISPATCH_FLOAT(x.dtype(), log ? "log_softmax" : "softmax", {
    const scalar_t* px = x.data<scalar_t>();
    scalar_t* py = y.data<scalar_t>();
    if (C == 1) {
      const bool warp_rows = R <= 1024;
      const unsigned blocks = warp_rows ? blocks_for(A, kThreads / 32) : unsigned(A);
      softmax_rows<scalar_t><<<blocks, kThreads, 0, td.stream>>>(px, py, A, R, warp_rows, log);
    } else {
      softmax_cols<scalar_t><<<blocks_for(A * C, kThreads), kThreads, 0, td.stream>>>(px, py, A, R, C, log);
    }
    SSM_CUDA_LAUNCH_CHECK();
  });
  return y;
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets_in, int64_t ignore_index) {
  TensorDevice td(logits);
  const Tensor x = logits.contiguous();
  const Tensor tg = targets_in.contiguous();
  const int64_t N = x.shape()[0], C = x.shape()[1];
  const DType odt = x.dtype() == DType::f64 ? DType::f64 : DType::f32;  // halves: f32, as on the CPU
  Tensor out = Tensor::empty({}, odt, x.device());
  if (N == 0) {
    fill(out, 0.0);
    return out;
  }
  SSM_CHECK_INPUT(C > 0, "cross_entropy: logits of shape ", shape_str(x.shape()), " have no classes");
  Tensor loss = Tensor::empty({N}, DType::f64, x.device());
  Tensor valid = Tensor::empty({N}, DType::i32, x.device());
  Tensor bad = make_bad_flag(N, x.device());
  const bool warp_rows = C <= 1024;
  const unsigned blocks = warp_rows ? blocks_for(N, kThreads / 32) : unsigned(N);
  SSM_DISPATCH_FLOAT(x.dtype(), "cross_entropy", {
    auto run = [&](auto* ti) {
      using I = std::remove_const_t<std::remove_pointer_t<decltype(ti)>>;
      ce_rows<scalar_t, I><<<blocks, kThreads, 0, td.stream>>>(x.data<scalar_t>(), ti, N, C, ignore_index, warp_rows,
                                                              loss.data<double>(), valid.data<int>(),
                                                              static_cast<unsigned long long*>(bad.data_ptr()));
    };
    if (tg.dtype() == DType::i64) run(tg.data<int64_t>()); else run(tg.data<int32_t>());
    SSM_CUDA_LAUNCH_CHECK();
  });
  launch_ce_mean(loss, valid, N, out, td.stream);
  check_bad_target("cross_entropy", bad, tg, N, C, ignore_index, td.stream);
  return out;
}

Tensor cross_entropy_backward(const Tensor& logits, const Tensor& targets_in, double grad_scale, int64_t ignore_index) {
  TensorDevice td(logits);
  const Tensor x = logits.contiguous();
  const Tensor tg = targets_in.contiguous();
  const int64_t N = x.shape()[0], C = x.shape()[1];
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (out.numel() == 0) return out;
  Tensor count = Tensor::empty({1}, DType::i64, x.device());
  Tensor bad = make_bad_flag(N, x.device());
  const bool warp_rows = C <= 1024;
  const unsigned blocks = warp_rows ? blocks_for(N, kThreads / 32) : unsigned(N);
  SSM_DISPATCH_FLOAT(x.dtype(), "cross_entropy_backward", {
    auto run = [&](auto* ti) {
      using I = std::remove_const_t<std::remove_pointer_t<decltype(ti)>>;
      ce_count<I><<<1, 1024, 0, td.stream>>>(ti, N, C, ignore_index, static_cast<long long*>(count.data_ptr()),
                                             static_cast<unsigned long long*>(bad.data_ptr()));
      SSM_CUDA_LAUNCH_CHECK();
      ce_backward_rows<scalar_t, I><<<blocks, kThreads, 0, td.stream>>>(
          x.data<scalar_t>(), ti, N, C, ignore_index, warp_rows, grad_scale,
          static_cast<const long long*>(count.data_ptr()), out.data<scalar_t>());
      SSM_CUDA_LAUNCH_CHECK();
    };
    if (tg.dtype() == DType::i64) run(tg.data<int64_t>()); else run(tg.data<int32_t>());
  });
  check_bad_target("cross_entropy_backward", bad, tg, N, C, ignore_index, td.stream);
  return out;
}

Tensor cross_entropy_with_grad_(Tensor& x, const Tensor& targets_in, double grad_scale, int64_t ignore_index) {
  TensorDevice td(x);
  const Tensor tg = targets_in.contiguous();
  const int64_t N = x.shape()[0], C = x.shape()[1];
  const DType odt = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Tensor out = Tensor::empty({}, odt, x.device());
  if (N == 0) {
    fill(out, 0.0);
    return out;
  }
  SSM_CHECK_INPUT(C > 0, "cross_entropy_with_grad_: logits of shape ", shape_str(x.shape()), " have no classes");
  SSM_CHECK(N <= INT32_MAX, "cross_entropy_with_grad_: ", N, " rows are too many for one grid");
  Tensor loss = Tensor::empty({N}, DType::f64, x.device());
  Tensor valid = Tensor::empty({N}, DType::i32, x.device());
  Tensor count = Tensor::empty({1}, DType::i64, x.device());
  Tensor bad = make_bad_flag(N, x.device());
  SSM_DISPATCH_FLOAT(x.dtype(), "cross_entropy_with_grad_", {
    constexpr int V = 16 / int(sizeof(scalar_t));
    const bool vec = C % V == 0 && reinterpret_cast<uintptr_t>(x.data_ptr()) % 16 == 0;
    auto run = [&](auto* ti) {
      using I = std::remove_const_t<std::remove_pointer_t<decltype(ti)>>;
      ce_count<I><<<1, 1024, 0, td.stream>>>(ti, N, C, ignore_index, static_cast<long long*>(count.data_ptr()),
                                             static_cast<unsigned long long*>(bad.data_ptr()));
      SSM_CUDA_LAUNCH_CHECK();
      const long long* cnt = static_cast<const long long*>(count.data_ptr());
      if (vec)
        ce_with_grad_rows<scalar_t, I, V><<<unsigned(N), ce_threads(C), 0, td.stream>>>(
            x.data<scalar_t>(), ti, C, ignore_index, grad_scale, cnt, loss.data<double>(), valid.data<int>());
      else
        ce_with_grad_rows<scalar_t, I, 1><<<unsigned(N), ce_threads(C), 0, td.stream>>>(
            x.data<scalar_t>(), ti, C, ignore_index, grad_scale, cnt, loss.data<double>(), valid.data<int>());
      SSM_CUDA_LAUNCH_CHECK();
    };
    if (tg.dtype() == DType::i64) run(tg.data<int64_t>()); else run(tg.data<int32_t>());
  });
  launch_ce_mean(loss, valid, N, out, td.stream);
  check_bad_target("cross_entropy_with_grad_", bad, tg, N, C, ignore_index, td.stream);
  return out;
}

}  // namespace ssm::cuda
