// matmul on CUDA with cuBLASLt.
//
// Row-major trick: cuBLAS is column-major, and a row-major (r x c) matrix with leading stride ld is the
// column-major (c x r) matrix with the same ld. So C = A B (row-major, M x N) is computed as the
// column-major product C^T (N x M) = B^T (N x K) A^T (K x M): cuBLAS's "A" is our B and its "B" is our A,
// with m = N, n = M, k = K; neither operand is copied.
//
// Operands: each logical matrix (after trans flags) is used in place when one of its last two strides is 1
// (a transposed view just flips the cuBLAS op); otherwise it is made contiguous. Batch dims broadcast; each
// operand's batch dims must collapse to one stride (0 for a broadcast operand), else that operand is
// materialised. When B is shared by all batches and A's rows stack uniformly, the batch folds into M (one
// big GEMM). Precision: f32 in CUBLAS_COMPUTE_32F (no TF32), bf16/f16 in with f32 accumulation and output
// in the input dtype, f64 in CUBLAS_COMPUTE_64F. One cuBLASLt handle, a 32 MiB workspace and a heuristic
// cache per device; if cuBLASLt offers no algorithm, cublasGemmStridedBatchedEx runs instead.
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>

#include "core/cuda/common.cuh"
#include "core/cuda/cuda_ops.h"

namespace ssm::cuda {
namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;

struct DeviceBlas {
  cublasLtHandle_t lt = nullptr;
  cublasHandle_t blas = nullptr;
  void* workspace = nullptr;
};

using AlgoKey = std::tuple<int, int, int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                           int64_t, int64_t, int, int, int, int>;

struct BlasState {
  std::mutex mu;
  std::map<int, DeviceBlas> devices;
  std::map<std::pair<int, AlgoKey>, std::pair<bool, cublasLtMatmulAlgo_t>> algos;  // (found, algo)
};
BlasState& blas_state() {
  static BlasState* s = new BlasState();  // leaked: no CUDA calls during static destruction
  return *s;
}
DeviceBlas& device_blas(int dev) {
  BlasState& s = blas_state();
  DeviceBlas& d = s.devices[dev];  // caller holds s.mu
  if (!d.lt) {
    SSM_CUBLAS_CHECK(cublasLtCreate(&d.lt));
    SSM_CUBLAS_CHECK(cublasCreate(&d.blas));
    SSM_CUDA_CHECK(cudaMalloc(&d.workspace, kWorkspaceBytes));
  }
  return d;
}

// A logical (rows x cols) matrix as cuBLAS sees our row-major storage.
struct MatArg {
  Tensor t;          // the tensor whose storage is used (maybe a contiguous copy)
  bool trans = false;  // stored row-major as (cols x rows): the logical matrix is its transpose
  int64_t ld = 0;    // row stride of the stored row-major matrix
  int64_t batch_stride = 0;
};

// Largest power of two (<= 256) dividing the address.
int alignment_of(const void* p) {
  uintptr_t u = reinterpret_cast<uintptr_t>(p);
  int a = 1;
  while (a < 256 && (u % uintptr_t(a * 2)) == 0) a *= 2;
  return a;
}

// One stride that walks the (broadcast) batch dims in row-major order, if there is one.
bool single_batch_stride(const Shape& sizes, const std::vector<int64_t>& strides, int64_t& out) {
  int64_t s = -1, expect = 0;
  for (size_t i = sizes.size(); i-- > 0;) {
    if (sizes[i] == 1) continue;
    if (s < 0) {
      s = strides[i];
      expect = s * sizes[i];
      continue;
    }
    if (strides[i] != expect) return false;
    expect *= sizes[i];
  }
  out = s < 0 ? 0 : s;
  return true;
}

// x: logical (..., r, c) view. Picks the stored layout and the batch stride over `batch`.
MatArg make_arg(const Tensor& x, const Shape& batch) {
  const int64_t nd = x.dim();
  const int64_t r = x.shape()[size_t(nd - 2)], c = x.shape()[size_t(nd - 1)];
  Shape full = batch;
  full.push_back(r);
  full.push_back(c);
  auto try_layout = [&](const Tensor& t, MatArg& m) {
    const int64_t tn = t.dim();  // the dense fallback below has the full batch rank, not x's
    int64_t sr = t.strides()[size_t(tn - 2)], sc = t.strides()[size_t(tn - 1)];
    if (c == 1) sc = 1;                      // a single column: only the row stride matters
    if (r == 1) sr = sc == 1 ? c : 1;        // a single row: row-major if unit stride, else transposed
    if (sc == 1 && sr >= std::max<int64_t>(c, 1)) {
      m.trans = false;
      m.ld = sr;
    } else if (sr == 1 && sc >= std::max<int64_t>(r, 1)) {
      m.trans = true;
      m.ld = sc;
    } else {
      return false;
    }
    Shape bt(t.shape().begin(), t.shape().end() - 2);
    Tensor bview = t;  // batch strides broadcast to `batch`
    std::vector<int64_t> bs(batch.size(), 0);
    const size_t off = batch.size() - bt.size();
    for (size_t i = 0; i < bt.size(); ++i) bs[off + i] = bt[i] == 1 ? 0 : t.strides()[i];
    if (!single_batch_stride(batch, bs, m.batch_stride)) return false;
    m.t = t;
    return true;
  };
  MatArg m;
  if (try_layout(x, m)) return m;
  Tensor dense = x.expand(full).contiguous();
  const bool ok = try_layout(dense, m);
  SSM_CHECK(ok, "matmul: could not lay out ", shape_str(x.shape()));
  return m;
}

struct GemmDesc {
  cudaDataType_t type;
  cublasComputeType_t compute;
  cudaDataType_t scale;
};
GemmDesc gemm_desc(DType dt) {
  switch (dt) {
    case DType::f32: return {CUDA_R_32F, CUBLAS_COMPUTE_32F, CUDA_R_32F};
    case DType::f64: return {CUDA_R_64F, CUBLAS_COMPUTE_64F, CUDA_R_64F};
    case DType::bf16: return {CUDA_R_16BF, CUBLAS_COMPUTE_32F, CUDA_R_32F};
    case DType::f16: return {CUDA_R_16F, CUBLAS_COMPUTE_32F, CUDA_R_32F};
    default: throw_input(::ssm::cat("matmul: dtype ", dtype_name(dt), " is not supported on CUDA"));
  }
}

struct LtDescs {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~LtDescs() {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

void set_batch(cublasLtMatrixLayout_t l, int32_t count, int64_t stride) {
  SSM_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
  SSM_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
}

// Column-major D (m x n, ldd) = op(X) (m x k) * op(Y) (k x n) + (accumulate ? D : 0), `batch` times with the
// given strides. D's type is X's and Y's, or f32 (dt_out) for bf16 / f16 inputs.
void gemm(DType dt, bool tx, bool ty, int64_t m, int64_t n, int64_t k, const void* x, int64_t ldx, int64_t sx,
          const void* y, int64_t ldy, int64_t sy, void* d, int64_t ldd, int64_t sd, int64_t batch, cudaStream_t st,
          DType dt_out, bool accumulate) {
  const GemmDesc g = gemm_desc(dt);
  const cudaDataType_t d_type = gemm_desc(dt_out).type;
  int dev = current_device();
  BlasState& s = blas_state();
  std::lock_guard<std::mutex> lock(s.mu);
  DeviceBlas& db = device_blas(dev);

  const float one_f = 1.0f, zero_f = 0.0f;
  const double one_d = 1.0, zero_d = 0.0;
  const void* alpha = dt == DType::f64 ? static_cast<const void*>(&one_d) : static_cast<const void*>(&one_f);
  const void* beta = dt == DType::f64 ? static_cast<const void*>(accumulate ? &one_d : &zero_d)
                                      : static_cast<const void*>(accumulate ? &one_f : &zero_f);
  const cublasOperation_t opx = tx ? CUBLAS_OP_T : CUBLAS_OP_N, opy = ty ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int ax = alignment_of(x), ay = alignment_of(y), ad = alignment_of(d);

  const AlgoKey key{int(dt), int(tx), int(ty), m, n, k, ldx, ldy, ldd, sx, sy, sd, batch, ax, ay, ad,
                   int(dt_out) * 2 + int(accumulate)};
  LtDescs D;
  SSM_CUBLAS_CHECK(cublasLtMatmulDescCreate(&D.op, g.compute, g.scale));
  SSM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(D.op, CUBLASLT_MATMUL_DESC_TRANSA, &opx, sizeof(opx)));
  SSM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(D.op, CUBLASLT_MATMUL_DESC_TRANSB, &opy, sizeof(opy)));
  SSM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&D.a, g.type, uint64_t(tx ? k : m), uint64_t(tx ? m : k), ldx));
  SSM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&D.b, g.type, uint64_t(ty ? n : k), uint64_t(ty ? k : n), ldy));
  SSM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&D.c, d_type, uint64_t(m), uint64_t(n), ldd));
  if (batch > 1) {
    set_batch(D.a, int32_t(batch), sx);
    set_batch(D.b, int32_t(batch), sy);
    set_batch(D.c, int32_t(batch), sd);
  }
  auto it = s.algos.find({dev, key});
  if (it == s.algos.end()) {
    SSM_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&D.pref));
    const uint64_t ws = kWorkspaceBytes;
    const uint32_t a1 = uint32_t(ax), a2 = uint32_t(ay), a3 = uint32_t(ad);
    SSM_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(D.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    SSM_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(D.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &a1, sizeof(a1)));
    SSM_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(D.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &a2, sizeof(a2)));
    SSM_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(D.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &a3, sizeof(a3)));
    SSM_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(D.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &a3, sizeof(a3)));
    cublasLtMatmulHeuristicResult_t res{};
    int found = 0;
    cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(db.lt, D.op, D.a, D.b, D.c, D.c, D.pref, 1, &res, &found);
    const bool ok = hs == CUBLAS_STATUS_SUCCESS && found > 0;
    it = s.algos.emplace(std::make_pair(dev, key), std::make_pair(ok, res.algo)).first;
  }
  if (it->second.first) {
    SSM_CUBLAS_CHECK(cublasLtMatmul(db.lt, D.op, alpha, x, D.a, y, D.b, beta, d, D.c, d, D.c, &it->second.second,
                                    db.workspace, kWorkspaceBytes, st));
    return;
  }
  // No cuBLASLt algorithm for this case: classic cuBLAS.
  SSM_CUBLAS_CHECK(cublasSetStream(db.blas, st));
  SSM_CUBLAS_CHECK(cublasGemmStridedBatchedEx(db.blas, opx, opy, int(m), int(n), int(k), alpha, x, g.type, int(ldx),
                                              sx, y, g.type, int(ldy), sy, beta, d, d_type, int(ldd), sd, int(batch),
                                              g.compute, CUBLAS_GEMM_DEFAULT));
}

}  // namespace

Tensor matmul(const Tensor& a_in, const Tensor& b_in, bool trans_a, bool trans_b) {
  TensorDevice td(a_in);
  const Tensor a = trans_a ? a_in.transpose(-1, -2) : a_in;  // (..., M, K)
  const Tensor b = trans_b ? b_in.transpose(-1, -2) : b_in;  // (..., K, N)
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  const Shape batch = broadcast_shapes(Shape(a.shape().begin(), a.shape().end() - 2),
                                       Shape(b.shape().begin(), b.shape().end() - 2));
  const int64_t nb = shape_numel(batch);
  Shape oshape = batch;
  oshape.push_back(M);
  oshape.push_back(N);
  Tensor out = Tensor::empty(oshape, a.dtype(), a.device());
  if (out.numel() == 0) return out;
  if (K == 0) {
    fill(out, 0.0);
    return out;
  }
  MatArg A = make_arg(a, batch), B = make_arg(b, batch);
  int64_t rows = M, count = nb;
  // Fold the batch into M: B shared, A stored untransposed with its batches stacked at stride M * lda.
  if (nb > 1 && B.batch_stride == 0 && !A.trans && A.batch_stride == M * A.ld) {
    rows = nb * M;
    count = 1;
  }
  SSM_CHECK(count <= INT32_MAX, "matmul: batch of ", count, " is too large for cuBLAS");
  // Column-major: D (N x rows) = op(B) (N x K) * op(A) (K x rows). Our B stored row-major (K x N) is the
  // column-major (N x K) matrix: no transpose; stored as (N x K) (B.trans) it needs op T. Same for A.
  gemm(a.dtype(), B.trans, A.trans, N, rows, K, B.t.data_ptr(), B.ld, B.batch_stride, A.t.data_ptr(), A.ld,
       A.batch_stride, out.data_ptr(), N, M * N, count, td.stream, a.dtype(), false);
  return out;
}

void matmul_add_(Tensor& c, const Tensor& a_in, const Tensor& b_in, bool trans_a, bool trans_b,
                 bool accumulate) {
  TensorDevice td(c);
  const Tensor a = trans_a ? a_in.transpose(-1, -2) : a_in;  // (M, K)
  const Tensor b = trans_b ? b_in.transpose(-1, -2) : b_in;  // (K, N)
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  if (c.numel() == 0) return;
  if (K == 0) {  // an empty sum
    if (!accumulate) c.zero_();
    return;
  }
  const MatArg A = make_arg(a, {}), B = make_arg(b, {});
  gemm(a.dtype(), B.trans, A.trans, N, M, K, B.t.data_ptr(), B.ld, 0, A.t.data_ptr(), A.ld, 0, c.data_ptr(), N, 0, 1,
       td.stream, c.dtype(), accumulate);
}

}  // namespace ssm::cuda
