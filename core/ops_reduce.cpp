// Reductions (sum, mean, amax, argmax, sum_to, norm2), softmax / log_softmax and cross entropy on the CPU.
// Layout trick: a contiguous x whose reduced dims form one block is viewed as (A, R, C) -- A = product of
// the dims before the block, R = the reduced block, C = the dims after -- and out[a, c] = sum_r x[a, r, c].
// Any other set of reduced dims is permuted to the end and made contiguous first, giving (A, R, 1).
#include <algorithm>
#include <cmath>
#include <limits>

#include "core/cpu_loops.h"
#include "core/ops.h"
#ifdef SSM_WITH_CUDA
#include "core/cuda/cuda_ops.h"
#endif

namespace ssm {
namespace {

bool is_half_dtype(DType t) { return t == DType::bf16 || t == DType::f16; }

// Normalized, sorted, unique dims; empty input = all dims.
std::vector<int64_t> norm_dims(const std::vector<int64_t>& dims, int64_t ndim, const char* op) {
  std::vector<int64_t> out;
  if (dims.empty()) {
    for (int64_t d = 0; d < ndim; ++d) out.push_back(d);
    return out;
  }
  for (int64_t d : dims) {
    SSM_CHECK_INPUT(ndim > 0 || d == 0 || d == -1, op, ": dim ", d, " is out of range for a 0-d tensor");
    if (ndim == 0) continue;
    out.push_back(cpu::wrap_dim(d, ndim, op));
  }
  std::sort(out.begin(), out.end());
  SSM_CHECK_INPUT(std::adjacent_find(out.begin(), out.end()) == out.end(), op, ": a dim is repeated in ",
                  shape_str(Shape(dims.begin(), dims.end())));
  return out;
}

Shape reduced_shape(const Shape& s, const std::vector<int64_t>& dims, bool keepdim) {
  Shape out;
  for (int64_t d = 0; d < int64_t(s.size()); ++d) {
    const bool red = std::binary_search(dims.begin(), dims.end(), d);
    if (!red)
      out.push_back(s[d]);
    else if (keepdim)
      out.push_back(1);
  }
  return out;
}

// A contiguous tensor plus (A, R, C) sizes such that the reduced elements of output (a, c) are
// data[(a * R + r) * C + c].
struct ARC {
  Tensor x;
  int64_t A = 1, R = 1, C = 1;
};

ARC to_arc(const Tensor& x, const std::vector<int64_t>& dims) {
  ARC r;
  const Shape& s = x.shape();
  const bool block = !dims.empty() && dims.back() - dims.front() + 1 == int64_t(dims.size());
  if (dims.empty()) {
    r.x = x.contiguous();
    r.A = x.numel();
    return r;
  }
  if (block && x.is_contiguous()) {
    r.x = x;
    for (int64_t d = 0; d < dims.front(); ++d) r.A *= s[d];
    for (int64_t d : dims) r.R *= s[d];
    for (int64_t d = dims.back() + 1; d < x.dim(); ++d) r.C *= s[d];
    return r;
  }
  std::vector<int64_t> perm;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (!std::binary_search(dims.begin(), dims.end(), d)) {
      perm.push_back(d);
      r.A *= s[d];
    }
  for (int64_t d : dims) {
    perm.push_back(d);
    r.R *= s[d];
  }
  r.x = x.permute(perm).contiguous();
  return r;
}

// out[a, c] = sum_r x[a, r, c], accumulated in Acc. Deterministic for a fixed thread count.
template <typename T, typename Acc, typename O>
void sum_arc(const T* x, int64_t A, int64_t R, int64_t C, O* out) {
  const int64_t total = A * R * C;
  const int nt = total > cpu::kParallelGrain ? cpu::num_threads() : 1;
  if (nt == 1 || A >= nt) {
#pragma omp parallel if (nt > 1)
    {
      std::vector<Acc> acc(static_cast<size_t>(C));
#pragma omp for schedule(static)
      for (int64_t a = 0; a < A; ++a) {
        std::fill(acc.begin(), acc.end(), Acc(0));
        const T* xa = x + a * R * C;
        if (C == 1) {  // four independent partial sums hide the add latency
          Acc s0 = 0, s1 = 0, s2 = 0, s3 = 0;
          int64_t r = 0;
          for (; r + 4 <= R; r += 4) {
            s0 += Acc(xa[r]);
            s1 += Acc(xa[r + 1]);
            s2 += Acc(xa[r + 2]);
            s3 += Acc(xa[r + 3]);
          }
          for (; r < R; ++r) s0 += Acc(xa[r]);
          acc[0] = (s0 + s1) + (s2 + s3);
        } else {
          for (int64_t r = 0; r < R; ++r)
            for (int64_t c = 0; c < C; ++c) acc[c] += Acc(xa[r * C + c]);
        }
        for (int64_t c = 0; c < C; ++c) out[a * C + c] = O(acc[c]);
      }
    }
    return;
  }
  // Few outputs rows, long reductions: split R over threads, then add the partials in thread order.
  std::vector<Acc> part(size_t(nt) * C);
  for (int64_t a = 0; a < A; ++a) {
    std::fill(part.begin(), part.end(), Acc(0));
    const T* xa = x + a * R * C;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int t = 0; t < nt; ++t) {
      const int64_t r0 = R * t / nt, r1 = R * (t + 1) / nt;
      Acc* p = part.data() + size_t(t) * C;
      if (C == 1) {
        Acc s = 0;
        for (int64_t r = r0; r < r1; ++r) s += Acc(xa[r]);
        p[0] = s;
      } else {
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = 0; c < C; ++c) p[c] += Acc(xa[r * C + c]);
      }
    }
    for (int64_t c = 0; c < C; ++c) {
      Acc s = 0;
      for (int t = 0; t < nt; ++t) s += part[size_t(t) * C + c];
      out[a * C + c] = O(s);
    }
  }
}

DType sum_dtype(DType t) { return t == DType::u8 ? DType::i64 : t; }

Tensor cpu_sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  const Shape oshape = reduced_shape(x.shape(), dims, keepdim);
  Tensor out = Tensor::empty(oshape, sum_dtype(x.dtype()));
  if (out.numel() == 0) return out;
  if (x.numel() == 0) return out.fill_(0.0);
  ARC arc = to_arc(x, dims);
  cpu::dispatch_arith(x.dtype(), "sum", [&](auto zero) {
    using T = decltype(zero);
    if constexpr (std::is_floating_point_v<T>) {
      sum_arc<T, double, T>(arc.x.data<T>(), arc.A, arc.R, arc.C, out.data<T>());
    } else if constexpr (std::is_same_v<T, int32_t>) {
      sum_arc<T, int64_t, int32_t>(arc.x.data<T>(), arc.A, arc.R, arc.C, out.data<int32_t>());
    } else {
      sum_arc<T, int64_t, int64_t>(arc.x.data<T>(), arc.A, arc.R, arc.C, out.data<int64_t>());
    }
  });
  return out;
}

// amax (want_index = false) or argmax (true) over one dim, via the (A, R, C) layout. NaN wins (propagates).
Tensor cpu_max(const Tensor& x, int64_t dim, bool keepdim, bool want_index) {
  const Shape oshape = reduced_shape(x.shape(), {dim}, keepdim);
  Tensor out = Tensor::empty(oshape, want_index ? DType::i64 : x.dtype());
  if (out.numel() == 0) return out;
  ARC arc = to_arc(x, {dim});
  const int64_t A = arc.A, R = arc.R, C = arc.C;
  cpu::dispatch_arith(x.dtype(), want_index ? "argmax" : "amax", [&](auto zero) {
    using T = decltype(zero);
    const T* p = arc.x.data<T>();
#pragma omp parallel for schedule(static) if (A * R * C > cpu::kParallelGrain)
    for (int64_t ac = 0; ac < A * C; ++ac) {
      const int64_t a = ac / C, c = ac % C;
      const T* xa = p + a * R * C + c;
      T best = xa[0];
      int64_t bi = 0;
      for (int64_t r = 1; r < R; ++r) {
        const T v = xa[r * C];
        if (v > best || (v != v && best == best)) {
          best = v;
          bi = r;
        }
      }
      if (want_index)
        out.data<int64_t>()[ac] = bi;
      else
        out.data<T>()[ac] = best;
    }
  });
  return out;
}

void check_float(const Tensor& x, const char* op) {
  SSM_CHECK_INPUT(x.defined(), op, ": input is undefined");
  SSM_CHECK_INPUT(is_floating(x.dtype()), op, ": expected a floating tensor, got ", dtype_name(x.dtype()), " ",
                  shape_str(x.shape()));
}

}  // namespace

// ---------------- sum / mean ----------------
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  SSM_CHECK_INPUT(x.defined(), "sum: input is undefined");
  const std::vector<int64_t> dims = norm_dims(dims_in, x.dim(), "sum");
#ifdef SSM_WITH_CUDA
  if (x.device().is_cuda()) return cuda::sum(x, dims, keepdim);
#endif
  if (is_half_dtype(x.dtype())) return cpu_sum(x.to(DType::f32), dims, keepdim).to(x.dtype());
  return cpu_sum(x, dims, keepdim);
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  check_float(x, "mean");
  const std::vector<int64_t> dims = norm_dims(dims_in, x.dim(), "mean");
  int64_t count = 1;
  for (int64_t d : dims) count *= x.shape()[d];
  Tensor s = sum(x, dims, keepdim);
  return binary_scalar(BinaryOp::Mul, s, count > 0 ? 1.0 / double(count) : std::nan(""));
}

// ---------------- amax / argmax ----------------
Tensor amax(const Tensor& x, int64_t dim, bool keepdim) {
  SSM_CHECK_INPUT(x.defined(), "amax: input is undefined");
  dim = cpu::wrap_dim(dim, x.dim(), "amax");
  SSM_CHECK_INPUT(x.dim() == 0 || x.shape()[dim] > 0, "amax: cannot reduce the empty dim ", dim, " of shape ",
                  shape_str(x.shape()));
#ifdef SSM_WITH_CUDA
  if (x.device().is_cuda()) return cuda::amax(x, dim, keepdim);
#endif
  if (x.dim() == 0) return x.clone();
  if (is_half_dtype(x.dtype())) return cpu_max(x.to(DType::f32), dim, keepdim, false).to(x.dtype());
  return cpu_max(x, dim, keepdim, false);
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  SSM_CHECK_INPUT(x.defined(), "argmax: input is undefined");
  dim = cpu::wrap_dim(dim, x.dim(), "argmax");
  SSM_CHECK_INPUT(x.dim() == 0 || x.shape()[dim] > 0, "argmax: cannot reduce the empty dim ", dim, " of shape ",
                  shape_str(x.shape()));
#ifdef SSM_WITH_CUDA
  if (x.device().is_cuda()) return cuda::argmax(x, dim, keepdim);
#endif
  if (x.dim() == 0) return Tensor::zeros({}, DType::i64);
  if (is_half_dtype(x.dtype())) return cpu_max(x.to(DType::f32), dim, keepdim, true);
  return cpu_max(x, dim, keepdim, true);
}

// ---------------- sum_to ----------------
// Reduces the leading dims x has beyond `shape`, and every dim where shape has 1 and x does not.
Tensor sum_to(const Tensor& x, const Shape& shape) {
  SSM_CHECK_INPUT(x.defined(), "sum_to: input is undefined");
  bool ok = int64_t(shape.size()) <= x.dim();
  const int64_t lead = x.dim() - int64_t(shape.size());
  std::vector<int64_t> dims;
  for (int64_t d = 0; ok && d < x.dim(); ++d) {
    if (d < lead) {
      dims.push_back(d);
      continue;
    }
    const int64_t want = shape[d - lead], have = x.shape()[d];
    if (want == have) continue;
    if (want == 1)
      dims.push_back(d);
    else
      ok = false;
  }
  SSM_CHECK_INPUT(ok, "sum_to: a tensor of shape ", shape_str(x.shape()), " cannot be summed to shape ",
                  shape_str(shape), " (the target must broadcast to the source)");
  if (dims.empty()) return x;
  return sum(x, dims, true).view(shape);
}

// ---------------- norm2 ----------------
double norm2(const Tensor& x) {
  check_float(x, "norm2");
#ifdef SSM_WITH_CUDA
  if (x.device().is_cuda()) return cuda::norm2(x);
#endif
  Tensor c = (is_half_dtype(x.dtype()) ? x.to(DType::f32) : x).contiguous();
  const int64_t n = c.numel();
  double s = 0;
  cpu::dispatch_float(c.dtype(), "norm2", [&](auto zero) {
    using T = decltype(zero);
    const T* p = c.data<T>();
#pragma omp parallel for reduction(+ : s) schedule(static) if (n > cpu::kParallelGrain)
    for (int64_t i = 0; i < n; ++i) s += double(p[i]) * double(p[i]);
  });
  return std::sqrt(s);
}

double norm2(const std::vector<Tensor>& xs) {
  double sq = 0;
#ifdef SSM_WITH_CUDA
  std::vector<Tensor> listed;  // the first CUDA device's tensors: one sync for them all
#endif
  for (const Tensor& x : xs) {
    check_float(x, "norm2");
#ifdef SSM_WITH_CUDA
    if (x.device().is_cuda() && (listed.empty() || listed[0].device() == x.device())) {
      listed.push_back(x);
      continue;
    }
#endif
    const double n = norm2(x);
    sq += n * n;
  }
#ifdef SSM_WITH_CUDA
  sq += cuda::sum_squares(listed);
#endif
  return std::sqrt(sq);
}

void scale_(const std::vector<Tensor>& xs, double s) {
#ifdef SSM_WITH_CUDA
  std::vector<Tensor> listed;  // contiguous, aligned f32 on the first CUDA device seen
#endif
  for (const Tensor& x : xs) {
    check_float(x, "scale_");
#ifdef SSM_WITH_CUDA
    const bool aligned = (reinterpret_cast<uintptr_t>(x.data_ptr()) & 15u) == 0;
    if (x.device().is_cuda() && x.dtype() == DType::f32 && x.is_contiguous() && aligned &&
        (listed.empty() || listed[0].device() == x.device())) {
      listed.push_back(x);
      continue;
    }
#endif
    Tensor t = x;
    binary_(BinaryOp::Mul, t, Tensor::scalar(s, x.dtype(), x.device()));
  }
#ifdef SSM_WITH_CUDA
  cuda::scale_(listed, s);
#endif
}

// ---------------- softmax ----------------
namespace {

// softmax along R of the (A, R, C) layout: y = exp(x - max) / sum exp(x - max); log: x - max - log(sum).
Tensor cpu_softmax(const Tensor& x, int64_t dim, bool log) {
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  if (x.numel() == 0) return out;
  ARC arc = to_arc(x.contiguous(), {dim});  // contiguous + one dim: (A, R, C) in out's layout
  const int64_t A = arc.A, R = arc.R, C = arc.C;
  cpu::dispatch_float(x.dtype(), log ? "log_softmax" : "softmax", [&](auto zero) {
    using T = decltype(zero);
    const T* p = arc.x.data<T>();
    T* o = out.data<T>();
    T* w = o;
#pragma omp parallel for schedule(static) if (A * R * C > cpu::kParallelGrain / 8)
    for (int64_t ac = 0; ac < A * C; ++ac) {
      const int64_t a = ac / C, c = ac % C;
      const T* xa = p + a * R * C + c;
      T* wa = w + a * R * C + c;
      T m = xa[0];
      for (int64_t r = 1; r < R; ++r) m = std::max(m, xa[r * C]);
      double s = 0;
      for (int64_t r = 0; r < R; ++r) {
        const T e = std::exp(xa[r * C] - m);
        s += double(e);
        if (!log) wa[r * C] = e;
      }
      if (log) {
        const T ls = T(std::log(s));
        for (int64_t r = 0; r < R; ++r) wa[r * C] = xa[r * C] - m - ls;
      } else {
        const T inv = T(1.0 / s);
        for (int64_t r = 0; r < R; ++r) wa[r * C] *= inv;
      }
    }
  });
  return out;
}

Tensor softmax_impl(const Tensor& x, int64_t dim, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  check_float(x, op);
  dim = cpu::wrap_dim(dim, x.dim(), op);
#ifdef SSM_WITH_CUDA
  if (x.device().is_cuda()) return cuda::softmax(x, dim, log);
#endif
  if (x.dim() == 0) return log ? Tensor::zeros({}, x.dtype()) : Tensor::ones({}, x.dtype());
  if (is_half_dtype(x.dtype())) return cpu_softmax(x.to(DType::f32), dim, log).to(x.dtype());
  return cpu_softmax(x, dim, log);
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, true); }

// ---------------- cross entropy ----------------
namespace {

void check_ce(const Tensor& logits, const Tensor& targets, const char* op) {
  SSM_CHECK_INPUT(logits.defined() && targets.defined(), op, ": undefined input");
  SSM_CHECK_INPUT(logits.dim() == 2, op, ": logits must be (N, C), got ", shape_str(logits.shape()));
  SSM_CHECK_INPUT(is_floating(logits.dtype()), op, ": logits must be floating, got ", dtype_name(logits.dtype()));
  SSM_CHECK_INPUT(targets.dim() == 1 && targets.shape()[0] == logits.shape()[0], op, ": targets of shape ",
                  shape_str(targets.shape()), " do not match logits of shape ", shape_str(logits.shape()),
                  " (expected [", logits.shape()[0], "])");
  SSM_CHECK_INPUT(targets.dtype() == DType::i64 || targets.dtype() == DType::i32, op,
                  ": targets must be i64 or i32, got ", dtype_name(targets.dtype()));
  SSM_CHECK_INPUT(logits.device() == targets.device(), op, ": logits on ", logits.device().str(),
                  " but targets on ", targets.device().str());
}

// Host targets as i64, each checked to be in [0, C) or == ignore_index.
std::vector<int64_t> checked_targets(const Tensor& targets, int64_t C, int64_t ignore_index, const char* op) {
  std::vector<int64_t> t = targets.to_int_vector();
  for (size_t i = 0; i < t.size(); ++i)
    SSM_CHECK_INPUT(t[i] == ignore_index || (t[i] >= 0 && t[i] < C), op, ": target ", t[i], " at row ", i,
                    " is outside [0, ", C, ") and is not ignore_index (", ignore_index, ")");
  return t;
}

}  // namespace

// loss = (1 / n_valid) sum_{i valid} (logsumexp(x_i) - x_i[t_i])
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  check_ce(logits, targets, "cross_entropy");
#ifdef SSM_WITH_CUDA
  if (logits.device().is_cuda()) return cuda::cross_entropy(logits, targets, ignore_index);
#endif
  if (is_half_dtype(logits.dtype())) return cross_entropy(logits.to(DType::f32), targets, ignore_index);
  const int64_t N = logits.shape()[0], C = logits.shape()[1];
  const std::vector<int64_t> t = checked_targets(targets, C, ignore_index, "cross_entropy");
  SSM_CHECK_INPUT(C > 0 || N == 0, "cross_entropy: logits of shape ", shape_str(logits.shape()), " have no classes");
  Tensor x = logits.contiguous();
  std::vector<double> row(size_t(N), 0.0);
  cpu::dispatch_float(x.dtype(), "cross_entropy", [&](auto zero) {
    using T = decltype(zero);
    const T* p = x.data<T>();
#pragma omp parallel for schedule(static) if (N * C > cpu::kParallelGrain)
    for (int64_t i = 0; i < N; ++i) {
      if (t[i] == ignore_index) continue;
      const T* xi = p + i * C;
      double m = double(xi[0]);
      for (int64_t c = 1; c < C; ++c) m = std::max(m, double(xi[c]));
      double s = 0;
      for (int64_t c = 0; c < C; ++c) s += std::exp(double(xi[c]) - m);
      row[i] = m + std::log(s) - double(xi[t[i]]);
    }
  });
  double total = 0;
  int64_t valid = 0;
  for (int64_t i = 0; i < N; ++i)
    if (t[i] != ignore_index) {
      total += row[i];
      ++valid;
    }
  return Tensor::scalar(valid ? total / double(valid) : 0.0, x.dtype());
}

// d loss / d x_ic = (softmax(x_i)_c - [c == t_i]) * grad_scale / n_valid; ignored rows get 0.
Tensor cross_entropy_backward(const Tensor& logits, const Tensor& targets, double grad_scale, int64_t ignore_index) {
  check_ce(logits, targets, "cross_entropy_backward");
#ifdef SSM_WITH_CUDA
  if (logits.device().is_cuda()) return cuda::cross_entropy_backward(logits, targets, grad_scale, ignore_index);
#endif
  if (is_half_dtype(logits.dtype()))
    return cross_entropy_backward(logits.to(DType::f32), targets, grad_scale, ignore_index).to(logits.dtype());
  const int64_t N = logits.shape()[0], C = logits.shape()[1];
  const std::vector<int64_t> t = checked_targets(targets, C, ignore_index, "cross_entropy_backward");
  int64_t valid = 0;
  for (int64_t v : t) valid += v != ignore_index;
  Tensor x = logits.contiguous();
  Tensor out = Tensor::zeros(x.shape(), x.dtype());
  if (valid == 0) return out;
  const double scale = grad_scale / double(valid);
  cpu::dispatch_float(x.dtype(), "cross_entropy_backward", [&](auto zero) {
    using T = decltype(zero);
    const T* p = x.data<T>();
    T* o = out.data<T>();
#pragma omp parallel for schedule(static) if (N * C > cpu::kParallelGrain)
    for (int64_t i = 0; i < N; ++i) {
      if (t[i] == ignore_index) continue;
      const T* xi = p + i * C;
      T* oi = o + i * C;
      double m = double(xi[0]);
      for (int64_t c = 1; c < C; ++c) m = std::max(m, double(xi[c]));
      double s = 0;
      for (int64_t c = 0; c < C; ++c) s += std::exp(double(xi[c]) - m);
      const double inv = 1.0 / s;
      for (int64_t c = 0; c < C; ++c) oi[c] = T((std::exp(double(xi[c]) - m) * inv - (c == t[i])) * scale);
    }
  });
  return out;
}

Tensor cross_entropy_with_grad_(Tensor& logits, const Tensor& targets, double grad_scale, int64_t ignore_index) {
  check_ce(logits, targets, "cross_entropy_with_grad_");
  SSM_CHECK_INPUT(logits.is_contiguous(), "cross_entropy_with_grad_: logits ", shape_str(logits.shape()),
                  " must be contiguous (their gradient is written over them)");
#ifdef SSM_WITH_CUDA
  if (logits.device().is_cuda()) return cuda::cross_entropy_with_grad_(logits, targets, grad_scale, ignore_index);
#endif
  Tensor loss = cross_entropy(logits, targets, ignore_index);
  logits.copy_(cross_entropy_backward(logits, targets, grad_scale, ignore_index));
  return loss;
}

}  // namespace ssm
