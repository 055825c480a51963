// Depthwise causal conv1d: input checks, the CPU reference, CPU/CUDA dispatch and the autograd op.
// Math in causal_conv1d.h. The CPU path is the oracle the CUDA kernels are tested against, so it is
// written to be obviously right: one output row (b, t) at a time, the W taps gathered through src(),
// which applies the zero padding, x_init and the document mask in one place; the inner loops run over
// the contiguous channel dim (vectorised by the compiler); OpenMP over the (b, t) rows.
#include "kernels/conv1d/causal_conv1d.h"

#include <algorithm>
#include <cmath>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "kernels/conv1d/causal_conv1d_cuda.h"

namespace ssm::kernels {
namespace {

constexpr const char* kOp = "causal_conv1d";

bool cuda_float(DType t) { return t == DType::f32 || t == DType::bf16 || t == DType::f16; }

// w or bias: x's dtype, or f32 with bf16/f16 x on CUDA.
void check_param_dtype(const Tensor& p, const char* name, const Tensor& x) {
  SSM_CHECK_INPUT(p.device() == x.device(), kOp, ": ", name, " is on ", p.device().str(), " but x is on ",
                  x.device().str());
  const bool ok = p.dtype() == x.dtype() || (x.device().is_cuda() && p.dtype() == DType::f32);
  SSM_CHECK_INPUT(ok, kOp, ": ", name, " is ", dtype_name(p.dtype()), " but x is ", dtype_name(x.dtype()),
                  " (must match, or be f32 with bf16/f16 x on CUDA)");
}

}  // namespace

void check_conv1d_inputs(const Conv1dInputs& in) {
  const Tensor& x = in.x;
  SSM_CHECK_INPUT(x.defined(), kOp, ": x is undefined");
  SSM_CHECK_INPUT(x.dim() == 3, kOp, ": x must be (Bt, L, D), got ", shape_str(x.shape()));
  const DType t = x.dtype();
  const bool dt_ok = x.device().is_cuda() ? cuda_float(t) : (t == DType::f32 || t == DType::f64);
  SSM_CHECK_INPUT(dt_ok, kOp, ": x dtype ", dtype_name(t), " not supported on ", x.device().str(),
                  " (CPU: f32, f64; CUDA: f32, bf16, f16)");
  const int64_t Bt = x.size(0), L = x.size(1), D = x.size(2);
  SSM_CHECK_INPUT(in.w.defined(), kOp, ": w is undefined");
  SSM_CHECK_INPUT(in.w.dim() == 2 && in.w.size(0) == D, kOp, ": w must be (D, W) = [", D, ", W] for x ",
                  shape_str(x.shape()), ", got ", shape_str(in.w.shape()));
  const int64_t W = in.w.size(1);
  SSM_CHECK_INPUT(W >= 2 && W <= 4, kOp, ": w ", shape_str(in.w.shape()), " has width W = ", W,
                  "; supported widths are 2, 3 and 4");
  check_param_dtype(in.w, "w", x);
  if (in.bias.defined()) {
    SSM_CHECK_INPUT(in.bias.dim() == 1 && in.bias.size(0) == D, kOp, ": bias must be (D) = [", D, "] for x ",
                    shape_str(x.shape()), ", got ", shape_str(in.bias.shape()));
    check_param_dtype(in.bias, "bias", x);
  }
  if (in.x_init.defined()) {
    const Shape want{Bt, W - 1, D};
    SSM_CHECK_INPUT(in.x_init.shape() == want, kOp, ": x_init must be (Bt, W-1, D) = ", shape_str(want),
                    " for x ", shape_str(x.shape()), " and w ", shape_str(in.w.shape()), ", got ",
                    shape_str(in.x_init.shape()));
    SSM_CHECK_INPUT(in.x_init.device() == x.device(), kOp, ": x_init is on ", in.x_init.device().str(),
                    " but x is on ", x.device().str());
    SSM_CHECK_INPUT(in.x_init.dtype() == x.dtype(), kOp, ": x_init is ", dtype_name(in.x_init.dtype()),
                    " but x is ", dtype_name(x.dtype()), " (must match)");
  }
  if (in.seq_idx.defined()) {
    const Shape want{Bt, L};
    SSM_CHECK_INPUT(in.seq_idx.shape() == want, kOp, ": seq_idx must be (Bt, L) = ", shape_str(want), " for x ",
                    shape_str(x.shape()), ", got ", shape_str(in.seq_idx.shape()));
    SSM_CHECK_INPUT(in.seq_idx.dtype() == DType::i32, kOp, ": seq_idx must be i32, got ",
                    dtype_name(in.seq_idx.dtype()));
    SSM_CHECK_INPUT(in.seq_idx.device() == x.device(), kOp, ": seq_idx is on ", in.seq_idx.device().str(),
                    " but x is on ", x.device().str());
  }
}

namespace {

// ---------------------------------------------------------------------------------------------------
// CPU reference. T = float or double.
template <typename T>
struct CpuConv {
  int64_t Bt, L, D, W;
  const T* x;
  std::vector<T> wt;  // wt[k * D + d] = w[d, k]: the taps as contiguous rows
  const T* bias;      // or null
  const T* xi;        // x_init or null
  const int32_t* seq; // seq_idx or null

  CpuConv(const Tensor& xt, const Tensor& w, const Tensor& b, const Tensor& x_init, const Tensor& seq_idx)
      : Bt(xt.size(0)), L(xt.size(1)), D(xt.size(2)), W(w.size(1)), x(xt.data<T>()),
        bias(b.defined() ? b.data<T>() : nullptr), xi(x_init.defined() ? x_init.data<T>() : nullptr),
        seq(seq_idx.defined() ? seq_idx.data<int32_t>() : nullptr) {
    const T* wp = w.data<T>();
    wt.resize(size_t(W * D));
    for (int64_t d = 0; d < D; ++d)
      for (int64_t k = 0; k < W; ++k) wt[size_t(k * D + d)] = wp[d * W + k];
  }

  // Does input time s (s < 0: x_init) belong to the document of output time t in row b?
  // Negative times belong to the row's first document.
  bool same_doc(int64_t b, int64_t s, int64_t t) const {
    return !seq || seq[b * L + std::max<int64_t>(s, 0)] == seq[b * L + t];
  }
  // Row xx_s (D values) as seen from output time t, or null when it reads as zeros.
  const T* src(int64_t b, int64_t s, int64_t t) const {
    if (!same_doc(b, s, t)) return nullptr;
    if (s >= 0) return x + (b * L + s) * D;
    return xi ? xi + (b * (W - 1) + (W - 1 + s)) * D : nullptr;
  }
  // out[d] = pre_t[d] = bias[d] + sum_k w[d, k] xx_{t-(W-1)+k}[d]
  void pre(int64_t b, int64_t t, T* out) const {
    for (int64_t d = 0; d < D; ++d) out[d] = bias ? bias[d] : T(0);
    for (int64_t k = 0; k < W; ++k) {
      const T* p = src(b, t - (W - 1) + k, t);
      if (!p) continue;
      const T* wk = wt.data() + k * D;
      for (int64_t d = 0; d < D; ++d) out[d] += wk[d] * p[d];
    }
  }
};

template <typename T>
T silu(T p) {
  return p / (T(1) + std::exp(-p));
}
template <typename T>
T silu_grad(T p) {  // d silu / dp = s (1 + p (1 - s)), s = sigmoid(p)
  const T s = T(1) / (T(1) + std::exp(-p));
  return s * (T(1) + p * (T(1) - s));
}

template <typename T>
void cpu_forward(const CpuConv<T>& c, bool use_silu, T* y) {
  const int64_t rows = c.Bt * c.L, D = c.D;
#pragma omp parallel for schedule(static) if (rows * D > 4096)
  for (int64_t r = 0; r < rows; ++r) {
    T* yr = y + r * D;
    c.pre(r / c.L, r % c.L, yr);
    if (use_silu)
      for (int64_t d = 0; d < D; ++d) yr[d] = silu(yr[d]);
  }
}

// gx, gxi, gw (D, W), gb may each be null.
template <typename T>
void cpu_backward(const CpuConv<T>& c, const T* gy, bool use_silu, T* gx, T* gxi, T* gw, T* gb) {
  const int64_t Bt = c.Bt, L = c.L, D = c.D, W = c.W, rows = Bt * L;
  const bool par = rows * D > 4096;
  // 1. gpre = g * silu'(pre) (or g), recomputing pre.
  std::vector<T> gpre(size_t(rows * D));
#pragma omp parallel for schedule(static) if (par)
  for (int64_t r = 0; r < rows; ++r) {
    T* o = gpre.data() + r * D;
    const T* g = gy + r * D;
    if (use_silu) {
      c.pre(r / L, r % L, o);
      for (int64_t d = 0; d < D; ++d) o[d] = g[d] * silu_grad(o[d]);
    } else {
      for (int64_t d = 0; d < D; ++d) o[d] = g[d];
    }
  }
  // 2. gx_s = sum_k w[k] gpre_{s+(W-1)-k} over outputs t = s+(W-1)-k in [0, L) of the same document;
  //    s in [-(W-1), 0) are the x_init rows.
  if (gx || gxi) {
    const int64_t S = L + W - 1;  // s = -(W-1) .. L-1
#pragma omp parallel for schedule(static) if (par)
    for (int64_t r = 0; r < Bt * S; ++r) {
      const int64_t b = r / S, s = r % S - (W - 1);
      T* o = s >= 0 ? (gx ? gx + (b * L + s) * D : nullptr) : (gxi ? gxi + (b * (W - 1) + (W - 1 + s)) * D : nullptr);
      if (!o) continue;
      for (int64_t d = 0; d < D; ++d) o[d] = T(0);
      for (int64_t k = 0; k < W; ++k) {
        const int64_t t = s + (W - 1) - k;
        if (t < 0 || t >= L || !c.same_doc(b, s, t)) continue;
        const T* wk = c.wt.data() + k * D;
        const T* gp = gpre.data() + (b * L + t) * D;
        for (int64_t d = 0; d < D; ++d) o[d] += wk[d] * gp[d];
      }
    }
  }
  // 3. gw[d, k] = sum_{b,t} gpre_t xx_{t-(W-1)+k}, gbias = sum_{b,t} gpre_t. Rows split into one
  //    contiguous chunk per thread; the chunks' f64 partial sums are added in chunk order (deterministic).
  if (!gw && !gb) return;
  int nchunks = 1;
#ifdef _OPENMP
  nchunks = std::max(1, std::min<int>(omp_get_max_threads(), int(std::min<int64_t>(rows, 1 << 20))));
#endif
  if (!par) nchunks = 1;
  const int64_t P = (W + 1) * D;  // per chunk: W rows of gw (k-major), then gbias
  std::vector<double> part(size_t(nchunks * P), 0.0);
#pragma omp parallel for schedule(static, 1) num_threads(nchunks) if (par)
  for (int ch = 0; ch < nchunks; ++ch) {
    double* pc = part.data() + size_t(ch) * P;
    const int64_t r0 = rows * ch / nchunks, r1 = rows * (ch + 1) / nchunks;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / L, t = r % L;
      const T* gp = gpre.data() + r * D;
      for (int64_t k = 0; k < W; ++k) {
        const T* p = c.src(b, t - (W - 1) + k, t);
        if (!p) continue;
        double* pk = pc + k * D;
        for (int64_t d = 0; d < D; ++d) pk[d] += double(gp[d]) * double(p[d]);
      }
      double* pb = pc + W * D;
      for (int64_t d = 0; d < D; ++d) pb[d] += double(gp[d]);
    }
  }
  for (int64_t k = 0; k <= W; ++k)
    for (int64_t d = 0; d < D; ++d) {
      double s = 0;
      for (int ch = 0; ch < nchunks; ++ch) s += part[size_t(ch * P + k * D + d)];
      if (k < W && gw) gw[d * W + k] = T(s);
      if (k == W && gb) gb[d] = T(s);
    }
}

Tensor contig(const Tensor& t) { return t.defined() ? t.contiguous() : t; }
#ifdef SSM_WITH_CUDA
Tensor to_f32(const Tensor& t) { return !t.defined() || t.dtype() == DType::f32 ? t : t.to(DType::f32); }
#endif

Conv1dInputs contiguous_inputs(const Conv1dInputs& in) {
  return {in.x.contiguous(), in.w.contiguous(), contig(in.bias), contig(in.x_init), contig(in.seq_idx)};
}

Tensor reference_forward(const Conv1dInputs& c, bool use_silu) {
  Tensor y = Tensor::empty(c.x.shape(), c.x.dtype(), Device::cpu());
  if (c.x.numel() == 0) return y;
  if (c.x.dtype() == DType::f32)
    cpu_forward(CpuConv<float>(c.x, c.w, c.bias, c.x_init, c.seq_idx), use_silu, y.data<float>());
  else
    cpu_forward(CpuConv<double>(c.x, c.w, c.bias, c.x_init, c.seq_idx), use_silu, y.data<double>());
  return y;
}

struct Want {
  bool x, w, bias, x_init;
};

template <typename T>
T* ptr(Tensor& t, bool want) {
  return want && t.defined() ? t.data<T>() : nullptr;
}

// Gradients for the wanted inputs (the others stay undefined). Inputs already checked and contiguous.
Conv1dGrads backward_impl(const Conv1dInputs& c, const Tensor& gy_in, bool use_silu, Want want) {
  SSM_CHECK_INPUT(gy_in.defined() && gy_in.shape() == c.x.shape(), kOp, " backward: grad_y ",
                  gy_in.defined() ? shape_str(gy_in.shape()) : std::string("(undefined)"), " must match x ",
                  shape_str(c.x.shape()));
  SSM_CHECK_INPUT(gy_in.device() == c.x.device(), kOp, " backward: grad_y is on ", gy_in.device().str(),
                  " but x is on ", c.x.device().str());
  const Tensor gy = (gy_in.dtype() == c.x.dtype() ? gy_in : gy_in.to(c.x.dtype())).contiguous();
  want.bias = want.bias && c.bias.defined();
  want.x_init = want.x_init && c.x_init.defined();
  const Device dev = c.x.device();
  const int64_t D = c.x.size(2), W = c.w.size(1);
  Conv1dGrads g;
  if (want.x) g.x = Tensor::empty(c.x.shape(), c.x.dtype(), dev);  // every row is written
  if (want.x_init) g.x_init = Tensor::zeros(c.x_init.shape(), c.x_init.dtype(), dev);
#ifdef SSM_WITH_CUDA
  if (dev.is_cuda()) {
    Tensor gw32 = want.w ? Tensor::zeros({D, W}, DType::f32, dev) : Tensor();
    Tensor gb32 = want.bias ? Tensor::zeros({D}, DType::f32, dev) : Tensor();
    if (c.x.numel() > 0 && (want.x || want.w || want.bias || want.x_init))
      cuda::causal_conv1d_backward(c.x, to_f32(c.w), to_f32(c.bias), c.x_init, c.seq_idx, gy, use_silu,
                                   want.x ? &g.x : nullptr, want.x_init ? &g.x_init : nullptr,
                                   want.w ? &gw32 : nullptr, want.bias ? &gb32 : nullptr);
    if (want.w) g.w = gw32.dtype() == c.w.dtype() ? gw32 : gw32.to(c.w.dtype());
    if (want.bias) g.bias = gb32.dtype() == c.bias.dtype() ? gb32 : gb32.to(c.bias.dtype());
    return g;
  }
#endif
  SSM_CHECK_INPUT(dev.is_cpu(), kOp, ": x is on ", dev.str(), " but this build has no CUDA");
  if (want.w) g.w = Tensor::zeros({D, W}, c.w.dtype(), dev);
  if (want.bias) g.bias = Tensor::zeros({D}, c.bias.dtype(), dev);
  if (c.x.numel() == 0) return g;
  if (c.x.dtype() == DType::f32)
    cpu_backward(CpuConv<float>(c.x, c.w, c.bias, c.x_init, c.seq_idx), gy.data<float>(), use_silu,
                 ptr<float>(g.x, want.x), ptr<float>(g.x_init, want.x_init), ptr<float>(g.w, want.w),
                 ptr<float>(g.bias, want.bias));
  else
    cpu_backward(CpuConv<double>(c.x, c.w, c.bias, c.x_init, c.seq_idx), gy.data<double>(), use_silu,
                 ptr<double>(g.x, want.x), ptr<double>(g.x_init, want.x_init), ptr<double>(g.w, want.w),
                 ptr<double>(g.bias, want.bias));
  return g;
}

}  // namespace

Tensor causal_conv1d_forward(const Conv1dInputs& in, bool silu) {
  check_conv1d_inputs(in);
  const Conv1dInputs c = contiguous_inputs(in);
#ifdef SSM_WITH_CUDA
  if (c.x.device().is_cuda()) {
    Tensor y = Tensor::empty(c.x.shape(), c.x.dtype(), c.x.device());
    if (c.x.numel() > 0) cuda::causal_conv1d_forward(c.x, to_f32(c.w), to_f32(c.bias), c.x_init, c.seq_idx, silu, y);
    return y;
  }
#endif
  SSM_CHECK_INPUT(c.x.device().is_cpu(), kOp, ": x is on ", c.x.device().str(), " but this build has no CUDA");
  return reference_forward(c, silu);
}

Conv1dGrads causal_conv1d_backward(const Conv1dInputs& in, const Tensor& grad_y, bool silu) {
  check_conv1d_inputs(in);
  return backward_impl(contiguous_inputs(in), grad_y, silu, {true, true, true, true});
}

Tensor causal_conv1d_reference_forward(const Conv1dInputs& in, bool silu) {
  check_conv1d_inputs(in);
  SSM_CHECK_INPUT(in.x.device().is_cpu(), kOp, " reference: needs CPU tensors, x is on ", in.x.device().str());
  return reference_forward(contiguous_inputs(in), silu);
}

Conv1dGrads causal_conv1d_reference_backward(const Conv1dInputs& in, const Tensor& grad_y, bool silu) {
  check_conv1d_inputs(in);
  SSM_CHECK_INPUT(in.x.device().is_cpu(), kOp, " reference: needs CPU tensors, x is on ", in.x.device().str());
  return backward_impl(contiguous_inputs(in), grad_y, silu, {true, true, true, true});
}

// The graph node keeps only its inputs (x, w, then bias and x_init when given) and seq_idx; the backward
// recomputes the pre-activations.
ag::Variable causal_conv1d(const ag::Variable& x, const ag::Variable& w, const ag::Variable& bias,
                           const ag::Variable& x_init, const Tensor& seq_idx, bool silu) {
  SSM_CHECK_INPUT(x.defined(), kOp, ": x is undefined");
  SSM_CHECK_INPUT(w.defined(), kOp, ": w is undefined");
  const Conv1dInputs in{x.data(), w.data(), bias.defined() ? bias.data() : Tensor(),
                        x_init.defined() ? x_init.data() : Tensor(), seq_idx};
  Tensor y = causal_conv1d_forward(in, silu);
  std::vector<ag::Variable> inputs{x, w};
  const int ib = bias.defined() ? int(inputs.size()) : -1;
  if (bias.defined()) inputs.push_back(bias);
  const int ii = x_init.defined() ? int(inputs.size()) : -1;
  if (x_init.defined()) inputs.push_back(x_init);
  return ag::Variable(y, std::move(inputs), [seq_idx, silu, ib, ii](std::vector<ag::Variable>& v, const Tensor& gy) {
    const Conv1dInputs c{v[0].data(), v[1].data(), ib >= 0 ? v[size_t(ib)].data() : Tensor(),
                         ii >= 0 ? v[size_t(ii)].data() : Tensor(), seq_idx};
    const Want want{v[0].requires_grad(), v[1].requires_grad(), ib >= 0 && v[size_t(ib)].requires_grad(),
                    ii >= 0 && v[size_t(ii)].requires_grad()};
    if (!(want.x || want.w || want.bias || want.x_init)) return;
    Conv1dGrads g = backward_impl(contiguous_inputs(c), gy, silu, want);
    if (want.x) v[0].add_grad(g.x);
    if (want.w) v[1].add_grad(g.w);
    if (want.bias) v[size_t(ib)].add_grad(g.bias);
    if (want.x_init) v[size_t(ii)].add_grad(g.x_init);
  });
}

}  // namespace ssm::kernels
