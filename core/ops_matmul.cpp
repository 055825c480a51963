// matmul on the CPU: C[b] = op(A[b]) op(B[b]) with broadcast batch dims, through OpenBLAS
// (cblas_sgemm / cblas_dgemm) when SSM_WITH_OPENBLAS, else a simple loop. No copies when each
// operand's last two dims are a row-major matrix or a transposed one (the BLAS transpose flag covers
// the latter); a 2-D (or batch-broadcast) B with a row-stacked batched A becomes a single GEMM.
#include <cstring>
#include <optional>

#include "core/cpu_loops.h"
#include "core/ops.h"
#ifdef SSM_WITH_CUDA
#include "core/cuda/cuda_ops.h"
#endif
#ifdef SSM_WITH_OPENBLAS
#include <cblas.h>
#endif

namespace ssm {
namespace {

// A logical (rows, cols) matrix with strides (rs, cs) as BLAS sees it: row-major storage of either
// the matrix (trans = false) or its transpose (trans = true), with leading dimension ld.
struct MatLayout {
  bool trans = false;
  int64_t ld = 1;
};

std::optional<MatLayout> blas_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
  if ((cols <= 1 || cs == 1) && (rows <= 1 || rs >= std::max<int64_t>(cols, 1)))
    return MatLayout{false, rows <= 1 ? std::max<int64_t>(cols, 1) : rs};
  if ((rows <= 1 || rs == 1) && (cols <= 1 || cs >= std::max<int64_t>(rows, 1)))
    return MatLayout{true, cols <= 1 ? std::max<int64_t>(rows, 1) : cs};
  return std::nullopt;
}

// C (M x N, row-major, ldc = N) = A (M x K) B (K x N) for layouts as above.
template <typename T>
void gemm(int64_t M, int64_t N, int64_t K, const T* A, MatLayout la, const T* B, MatLayout lb, T* C) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    std::memset(C, 0, size_t(M * N) * sizeof(T));
    return;
  }
#ifdef SSM_WITH_OPENBLAS
  // One thread pool: OpenBLAS (Debian's is the pthread build) runs single-threaded inside our OpenMP
  // threads. Left to itself it starts its own threads, whose spin-waiting fights the OpenMP workers for
  // the same cores and made 2 threads slower than 1. Large products are split here instead: by rows of C
  // (or by columns when C has few rows), each part one sgemm on one thread; every element of C is still
  // computed by the same K loop, so the split does not change results beyond the kernel's blocking.
  static const bool single = (openblas_set_num_threads(1), true);
  (void)single;
  const auto ta = la.trans ? CblasTrans : CblasNoTrans, tb = lb.trans ? CblasTrans : CblasNoTrans;
  auto call = [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    const T* a = A + m0 * (la.trans ? 1 : la.ld);
    const T* b = B + n0 * (lb.trans ? lb.ld : 1);
    T* c = C + m0 * N + n0;
    if constexpr (std::is_same_v<T, float>)
      cblas_sgemm(CblasRowMajor, ta, tb, int(m1 - m0), int(n1 - n0), int(K), 1.0f, a, int(la.ld), b, int(lb.ld),
                  0.0f, c, int(N));
    else
      cblas_dgemm(CblasRowMajor, ta, tb, int(m1 - m0), int(n1 - n0), int(K), 1.0, a, int(la.ld), b, int(lb.ld),
                  0.0, c, int(N));
  };
  int nt = 1;
#ifdef _OPENMP
  if (M * N * K >= (int64_t(1) << 21) && !omp_in_parallel()) nt = cpu::num_threads();
#endif
  if (nt <= 1) {
    call(0, M, 0, N);
    return;
  }
  const bool by_rows = M >= 16 * nt || M >= N;
#pragma omp parallel num_threads(nt)
  {
#ifdef _OPENMP
    const int t = omp_get_thread_num(), T_ = omp_get_num_threads();
#else
    const int t = 0, T_ = 1;
#endif
    const int64_t len = by_rows ? M : N;
    const int64_t s = (len * t / T_) / 8 * 8, e = t == T_ - 1 ? len : (len * (t + 1) / T_) / 8 * 8;
    if (e > s) {
      if (by_rows)
        call(s, e, 0, N);
      else
        call(0, M, s, e);
    }
  }
#else
  // Fallback: pack B row-major, then C[m, :] = sum_k A[m, k] B[k, :] (the inner loop vectorizes).
  const int64_t a_rs = la.trans ? 1 : la.ld, a_cs = la.trans ? la.ld : 1;
  std::vector<T> Bp(size_t(K * N));
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < N; ++n) Bp[k * N + n] = lb.trans ? B[n * lb.ld + k] : B[k * lb.ld + n];
  const T* bp = Bp.data();
#pragma omp parallel for schedule(static) if (M * N * K > cpu::kParallelGrain)
  for (int64_t m = 0; m < M; ++m) {
    T* c = C + m * N;
    for (int64_t n = 0; n < N; ++n) c[n] = T(0);
    for (int64_t k0 = 0; k0 < K; k0 += 256) {
      const int64_t k1 = std::min(K, k0 + 256);
      for (int64_t k = k0; k < k1; ++k) {
        const T a = A[m * a_rs + k * a_cs];
        const T* b = bp + k * N;
        for (int64_t n = 0; n < N; ++n) c[n] += a * b[n];
      }
    }
  }
#endif
}

Shape batch_of(const Tensor& t) { return Shape(t.shape().begin(), t.shape().end() - 2); }

Tensor cpu_matmul(Tensor a, Tensor b) {  // a: (..., M, K), b: (..., K, N), already transposed views
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  const Shape batch = broadcast_shapes(batch_of(a), batch_of(b));
  auto la = blas_layout(M, K, a.strides()[a.dim() - 2], a.strides()[a.dim() - 1]);
  if (!la) {
    a = a.contiguous();
    la = MatLayout{false, std::max<int64_t>(K, 1)};
  }
  auto lb = blas_layout(K, N, b.strides()[b.dim() - 2], b.strides()[b.dim() - 1]);
  if (!lb) {
    b = b.contiguous();
    lb = MatLayout{false, std::max<int64_t>(N, 1)};
  }
  Shape oshape = batch;
  oshape.push_back(M);
  oshape.push_back(N);
  Tensor out = Tensor::empty(oshape, a.dtype());
  const int64_t nb = shape_numel(batch);
  if (out.numel() == 0) return out;

  Shape ab = batch, bb = batch;
  ab.insert(ab.end(), {M, K});
  bb.insert(bb.end(), {K, N});
  const Tensor ae = a.expand(ab), be = b.expand(bb);
  const size_t nbd = batch.size();

  // One GEMM when B is the same matrix for every batch and A's rows stack uniformly (stride ld).
  bool b_shared = true;
  for (size_t d = 0; d < nbd; ++d) b_shared = b_shared && (be.strides()[d] == 0 || batch[d] == 1);
  bool a_stacks = !la->trans;
  int64_t expect = M * la->ld;
  for (int64_t d = int64_t(nbd) - 1; a_stacks && d >= 0; --d) {
    if (batch[d] == 1) continue;
    a_stacks = ae.strides()[d] == expect;
    expect *= batch[d];
  }

  cpu::dispatch_float(a.dtype(), "matmul", [&](auto zero) {
    using T = decltype(zero);
    const T* pa = ae.data<T>();
    const T* pb = be.data<T>();
    T* pc = out.data<T>();
    if (b_shared && a_stacks && nb > 1) {
      gemm<T>(nb * M, N, K, pa, *la, pb, *lb, pc);  // rows of all batches form one (nb*M, K) matrix
      return;
    }
    for (int64_t i = 0; i < nb; ++i) {
      int64_t oa = 0, ob = 0, rem = i;
      for (int64_t d = int64_t(nbd) - 1; d >= 0; --d) {
        const int64_t idx = rem % batch[d];
        rem /= batch[d];
        oa += idx * ae.strides()[d];
        ob += idx * be.strides()[d];
      }
      gemm<T>(M, N, K, pa + oa, *la, pb + ob, *lb, pc + i * M * N);
    }
  });
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a_in, const Tensor& b_in, bool trans_a, bool trans_b) {
  SSM_CHECK_INPUT(a_in.defined() && b_in.defined(), "matmul: undefined input");
  SSM_CHECK_INPUT(a_in.dim() >= 2 && b_in.dim() >= 2, "matmul: both operands need at least 2 dims, got A ",
                  shape_str(a_in.shape()), " and B ", shape_str(b_in.shape()), " (unsqueeze vectors first)");
  SSM_CHECK_INPUT(a_in.device() == b_in.device(), "matmul: A ", shape_str(a_in.shape()), " on ",
                  a_in.device().str(), " but B ", shape_str(b_in.shape()), " on ", b_in.device().str());
  SSM_CHECK_INPUT(a_in.dtype() == b_in.dtype(), "matmul: dtypes differ (A ", dtype_name(a_in.dtype()), " ",
                  shape_str(a_in.shape()), ", B ", dtype_name(b_in.dtype()), " ", shape_str(b_in.shape()), ")");
  SSM_CHECK_INPUT(is_floating(a_in.dtype()), "matmul: expected floating tensors, got ", dtype_name(a_in.dtype()));
  const Tensor a = trans_a ? a_in.transpose(-1, -2) : a_in;
  const Tensor b = trans_b ? b_in.transpose(-1, -2) : b_in;
  SSM_CHECK_INPUT(a.size(-1) == b.size(-2), "matmul: inner dims differ: A ", shape_str(a_in.shape()),
                  trans_a ? " (transposed)" : "", " has K = ", a.size(-1), " but B ", shape_str(b_in.shape()),
                  trans_b ? " (transposed)" : "", " has K = ", b.size(-2));
  try {
    broadcast_shapes(batch_of(a), batch_of(b));
  } catch (const Error&) {
    throw_input(cat("matmul: batch dims of A ", shape_str(a_in.shape()), " and B ", shape_str(b_in.shape()),
                    " do not broadcast"));
  }
#ifdef SSM_WITH_CUDA
  if (a_in.device().is_cuda()) return cuda::matmul(a_in, b_in, trans_a, trans_b);
#endif
  if (a.dtype() == DType::bf16 || a.dtype() == DType::f16)
    return cpu_matmul(a.to(DType::f32), b.to(DType::f32)).to(a.dtype());
  return cpu_matmul(a, b);
}

namespace {
// c = op(a) op(b) (accumulate: c += ...), checked; name is the caller's, for messages.
void matmul_to_(Tensor& c, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, bool accumulate,
                const char* name) {
  SSM_CHECK_INPUT(a.defined() && b.defined() && c.defined(), name, ": undefined input");
  SSM_CHECK_INPUT(a.dim() == 2 && b.dim() == 2 && c.dim() == 2, name, ": expected 2-D tensors, got C ",
                  shape_str(c.shape()), ", A ", shape_str(a.shape()), ", B ", shape_str(b.shape()));
  SSM_CHECK_INPUT(a.device() == c.device() && b.device() == c.device(), name, ": A on ", a.device().str(), ", B on ",
                  b.device().str(), ", C on ", c.device().str());
  SSM_CHECK_INPUT(a.dtype() == b.dtype() && is_floating(a.dtype()), name, ": A and B must share a floating dtype (A ",
                  dtype_name(a.dtype()), ", B ", dtype_name(b.dtype()), ")");
  const bool half_in = a.dtype() == DType::bf16 || a.dtype() == DType::f16;
  SSM_CHECK_INPUT(c.dtype() == a.dtype() || (half_in && c.dtype() == DType::f32), name, ": C is ",
                  dtype_name(c.dtype()), " for ", dtype_name(a.dtype()), " inputs (use ", dtype_name(a.dtype()),
                  half_in ? " or f32)" : ")");
  SSM_CHECK_INPUT(c.is_contiguous(), name, ": C ", shape_str(c.shape()), " must be contiguous");
  const int64_t M = trans_a ? a.size(1) : a.size(0), K = trans_a ? a.size(0) : a.size(1);
  const int64_t Kb = trans_b ? b.size(1) : b.size(0), N = trans_b ? b.size(0) : b.size(1);
  SSM_CHECK_INPUT(K == Kb && c.size(0) == M && c.size(1) == N, name, ": C ", shape_str(c.shape()),
                  accumulate ? " += op(A) " : " = op(A) ", shape_str(a.shape()), trans_a ? "^T" : "", " op(B) ",
                  shape_str(b.shape()), trans_b ? "^T" : "", ": shapes do not chain");
#ifdef SSM_WITH_CUDA
  if (c.device().is_cuda()) return cuda::matmul_add_(c, a, b, trans_a, trans_b, accumulate);
#endif
  const Tensor ta = trans_a ? a.transpose(0, 1) : a, tb = trans_b ? b.transpose(0, 1) : b;
  const Tensor prod = half_in ? cpu_matmul(ta.to(DType::f32), tb.to(DType::f32)) : cpu_matmul(ta, tb);
  const Tensor p = prod.dtype() == c.dtype() ? prod : prod.to(c.dtype());
  if (accumulate)
    binary_(BinaryOp::Add, c, p);
  else
    c.copy_(p);
}
}  // namespace

void matmul_add_(Tensor& c, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  matmul_to_(c, a, b, trans_a, trans_b, true, "matmul_add_");
}
void matmul_into_(Tensor& c, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  matmul_to_(c, a, b, trans_a, trans_b, false, "matmul_into_");
}

}  // namespace ssm
