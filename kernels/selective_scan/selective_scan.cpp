// Selective scan: input checks, the CPU reference (the oracle the CUDA kernels are tested against),
// CPU/CUDA dispatch and the autograd op. The math (the spec) is the comment in selective_scan.h.
//
// The reference is plain loops in double: the forward runs one (b, d) row at a time with its state
// h[N] in a local buffer; the backward, per (batch row b, group g), recomputes each channel's states
// h_t (an L x N buffer) and runs the adjoint from t = L-1 down to 0. gB/gC (summed over the channels
// of a group) are owned by the (b, g) job that writes them; gA/gD/gdelta_bias are summed over b in a
// fixed order afterwards, so every result is bit-identical run to run. The same loops instantiated for
// float (with core/cpu_loops.h's vectorisable exp) serve f32 inputs on the CPU: training there spends most
// of its time in the scan; the double instantiation stays the oracle (f64 inputs, the CUDA tests).
#include "kernels/selective_scan/selective_scan.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/cpu_loops.h"
#include "kernels/selective_scan/selective_scan_cuda.h"

namespace ssm::kernels {
namespace {

constexpr const char* kOp = "selective_scan";
constexpr int64_t kParallelWork = 1 << 15;  // below this many state updates, threads cost more than they save

struct Dims {
  int64_t Bt, L, D, N, G;
};

void check_same_shape(const Tensor& t, const char* name, const Shape& want, const char* want_str) {
  SSM_CHECK_INPUT(t.shape() == want, kOp, ": ", name, " ", shape_str(t.shape()), " must be ", want_str, " = ",
                  shape_str(want));
}

// Shapes and devices (the rules common to every device).
Dims check_shapes(const ScanInputs& in) {
  SSM_CHECK_INPUT(in.u.defined() && in.delta.defined() && in.A.defined() && in.B.defined() && in.C.defined(), kOp,
                  ": u, delta, A, B and C are required (one is undefined)");
  const Tensor &u = in.u, &A = in.A, &B = in.B;
  SSM_CHECK_INPUT(u.dim() == 3, kOp, ": u must be (Bt, L, D), got ", shape_str(u.shape()));
  const int64_t Bt = u.size(0), L = u.size(1), D = u.size(2);
  SSM_CHECK_INPUT(D >= 1, kOp, ": u ", shape_str(u.shape()), " has no channels (D = 0)");
  check_same_shape(in.delta, "delta", u.shape(), "(Bt, L, D) like u");
  SSM_CHECK_INPUT(A.dim() == 2 && A.size(0) == D && A.size(1) >= 1, kOp, ": A ", shape_str(A.shape()),
                  " must be (D, N) with D = ", D, " (u ", shape_str(u.shape()), ") and N >= 1");
  const int64_t N = A.size(1);
  SSM_CHECK_INPUT(B.dim() == 4 && B.size(0) == Bt && B.size(1) == L && B.size(2) >= 1 && B.size(3) == N, kOp, ": B ",
                  shape_str(B.shape()), " must be (Bt, L, G, N) = (", Bt, ", ", L, ", G, ", N, ") (u ",
                  shape_str(u.shape()), ", A ", shape_str(A.shape()), ")");
  const int64_t G = B.size(2);
  SSM_CHECK_INPUT(D % G == 0, kOp, ": D = ", D, " (u ", shape_str(u.shape()), ") is not divisible by the number of groups G = ",
                  G, " (B ", shape_str(B.shape()), ")");
  check_same_shape(in.C, "C", B.shape(), "(Bt, L, G, N) like B");
  if (in.D_skip.defined()) check_same_shape(in.D_skip, "D_skip", {D}, "(D)");
  if (in.z.defined()) check_same_shape(in.z, "z", u.shape(), "(Bt, L, D) like u");
  if (in.delta_bias.defined()) check_same_shape(in.delta_bias, "delta_bias", {D}, "(D)");
  if (in.h0.defined()) check_same_shape(in.h0, "h0", {Bt, D, N}, "(Bt, D, N)");
  if (in.seq_idx.defined()) {
    check_same_shape(in.seq_idx, "seq_idx", {Bt, L}, "(Bt, L)");
    SSM_CHECK_INPUT(in.seq_idx.dtype() == DType::i32, kOp, ": seq_idx ", shape_str(in.seq_idx.shape()), " must be i32, got ",
                    dtype_name(in.seq_idx.dtype()));
  }
  const std::pair<const Tensor*, const char*> all[] = {{&in.delta, "delta"}, {&in.A, "A"},   {&in.B, "B"},
                                                       {&in.C, "C"},         {&in.D_skip, "D_skip"}, {&in.z, "z"},
                                                       {&in.delta_bias, "delta_bias"}, {&in.h0, "h0"},
                                                       {&in.seq_idx, "seq_idx"}};
  for (const auto& [t, name] : all)
    if (t->defined())
      SSM_CHECK_INPUT(t->device() == u.device(), kOp, ": ", name, " is on ", t->device().str(), " but u is on ",
                      u.device().str());
  return {Bt, L, D, N, G};
}

// The floating inputs other than u, with their names.
std::vector<std::pair<const Tensor*, const char*>> float_inputs(const ScanInputs& in) {
  return {{&in.delta, "delta"}, {&in.A, "A"}, {&in.B, "B"}, {&in.C, "C"}, {&in.D_skip, "D_skip"},
          {&in.z, "z"},         {&in.delta_bias, "delta_bias"}, {&in.h0, "h0"}};
}

// CPU: u is f32 or f64 and every other floating input has u's dtype.
void check_cpu_dtypes(const ScanInputs& in) {
  const DType t = in.u.dtype();
  SSM_CHECK_INPUT(t == DType::f32 || t == DType::f64, kOp, ": u is ", dtype_name(t),
                  "; on the CPU every input must be f32 or f64 (all the same dtype)");
  for (const auto& [x, name] : float_inputs(in))
    if (x->defined())
      SSM_CHECK_INPUT(x->dtype() == t, kOp, ": ", name, " ", shape_str(x->shape()), " is ", dtype_name(x->dtype()),
                      " but u is ", dtype_name(t), " (on the CPU all inputs must have the same dtype)");
}

// CUDA: u, delta, z one dtype in {f32, bf16, f16}; B, C one dtype in that set; A, D_skip,
// delta_bias, h0 f32; N <= 256.
void check_cuda_dtypes(const ScanInputs& in, const Dims& d) {
  auto half_or_f32 = [](DType t) { return t == DType::f32 || t == DType::bf16 || t == DType::f16; };
  const DType tu = in.u.dtype(), tb = in.B.dtype();
  SSM_CHECK_INPUT(half_or_f32(tu), kOp, ": u is ", dtype_name(tu), "; on CUDA u must be f32, bf16 or f16");
  SSM_CHECK_INPUT(in.delta.dtype() == tu, kOp, ": delta is ", dtype_name(in.delta.dtype()), " but u is ",
                  dtype_name(tu), " (must match)");
  if (in.z.defined())
    SSM_CHECK_INPUT(in.z.dtype() == tu, kOp, ": z is ", dtype_name(in.z.dtype()), " but u is ", dtype_name(tu),
                    " (must match)");
  SSM_CHECK_INPUT(half_or_f32(tb), kOp, ": B is ", dtype_name(tb), "; on CUDA B and C must be f32, bf16 or f16");
  SSM_CHECK_INPUT(in.C.dtype() == tb, kOp, ": C is ", dtype_name(in.C.dtype()), " but B is ", dtype_name(tb),
                  " (must match)");
  const std::pair<const Tensor*, const char*> f32s[] = {
      {&in.A, "A"}, {&in.D_skip, "D_skip"}, {&in.delta_bias, "delta_bias"}, {&in.h0, "h0"}};
  for (const auto& [x, name] : f32s)
    if (x->defined())
      SSM_CHECK_INPUT(x->dtype() == DType::f32, kOp, ": ", name, " ", shape_str(x->shape()), " is ",
                      dtype_name(x->dtype()), "; on CUDA it must be f32");
  SSM_CHECK_INPUT(d.N <= 256, kOp, ": state size N = ", d.N, " (A ", shape_str(in.A.shape()),
                  ") is too large for the CUDA kernels (N <= 256)");
}

// The reference (an oracle also for CUDA dtypes): CPU tensors of any floating dtype; it computes in f64.
Dims check_reference_inputs(const ScanInputs& in) {
  const Dims d = check_shapes(in);
  SSM_CHECK_INPUT(in.u.device().is_cpu(), kOp, " reference: inputs must be on the CPU, u is on ", in.u.device().str());
  SSM_CHECK_INPUT(is_floating(in.u.dtype()), kOp, ": u is ", dtype_name(in.u.dtype()), "; must be floating");
  for (const auto& [x, name] : float_inputs(in))
    if (x->defined())
      SSM_CHECK_INPUT(is_floating(x->dtype()), kOp, ": ", name, " is ", dtype_name(x->dtype()), "; must be floating");
  return d;
}

void check_grads(const ScanInputs& in, const Dims& d, const Tensor& grad_y, const Tensor& grad_h_last) {
  SSM_CHECK_INPUT(grad_y.defined(), kOp, " backward: grad_y is undefined");
  SSM_CHECK_INPUT(grad_y.shape() == in.u.shape(), kOp, " backward: grad_y ", shape_str(grad_y.shape()),
                  " must be (Bt, L, D) = ", shape_str(in.u.shape()));
  SSM_CHECK_INPUT(grad_y.device() == in.u.device() && is_floating(grad_y.dtype()), kOp, " backward: grad_y is ",
                  dtype_name(grad_y.dtype()), " on ", grad_y.device().str(), "; must be floating, on u's device ",
                  in.u.device().str());
  if (!grad_h_last.defined()) return;
  SSM_CHECK_INPUT(grad_h_last.shape() == Shape({d.Bt, d.D, d.N}), kOp, " backward: grad_h_last ",
                  shape_str(grad_h_last.shape()), " must be (Bt, D, N) = ", shape_str({d.Bt, d.D, d.N}));
  SSM_CHECK_INPUT(grad_h_last.device() == in.u.device() && is_floating(grad_h_last.dtype()), kOp,
                  " backward: grad_h_last is ", dtype_name(grad_h_last.dtype()), " on ", grad_h_last.device().str(),
                  "; must be floating, on u's device ", in.u.device().str());
}

// h_last is f32, except f64 when u is f64 (CPU).
DType h_last_dtype(const ScanInputs& in) { return in.u.dtype() == DType::f64 ? DType::f64 : DType::f32; }

ScanInputs contiguous_inputs(const ScanInputs& in) {
  auto c = [](const Tensor& t) { return t.defined() ? t.contiguous() : Tensor(); };
  return {c(in.u), c(in.delta), c(in.A), c(in.B), c(in.C), c(in.D_skip), c(in.z), c(in.delta_bias), c(in.h0),
          c(in.seq_idx)};
}

// ---------------------------------------------- the reference ----------------------------------------------

// T = double: the reference (the oracle). T = float: the same loops in f32 with the vectorisable exp of
// core/cpu_loops.h, which the CPU path of selective_scan_forward/backward uses for f32 inputs (training on
// the CPU spends most of its time here).
template <typename T>
SSM_ALWAYS_INLINE T exp_t(T x) {
  if constexpr (std::is_same_v<T, float>)
    return cpu::exp_f32(x);
  else
    return std::exp(x);
}
template <typename T>
SSM_ALWAYS_INLINE T sigmoid(T x) { return T(1) / (T(1) + exp_t(-x)); }
template <typename T>
SSM_ALWAYS_INLINE T softplus(T x) { return x > T(20) ? x : std::log1p(exp_t(x)); }  // as Mamba: linear above 20

template <typename T>
constexpr DType dtype_of() { return std::is_same_v<T, float> ? DType::f32 : DType::f64; }

// Contiguous copies of the inputs in T (kept alive here) and index helpers.
template <typename T>
struct Ref {
  Dims d;
  bool softplus_on;
  Tensor keep[9];
  const T *u, *delta, *A, *B, *C, *Dskip, *z, *bias, *h0;
  const int32_t* seq;

  Ref(const ScanInputs& in, const Dims& dims, bool sp) : d(dims), softplus_on(sp) {
    const Tensor* src[9] = {&in.u, &in.delta, &in.A, &in.B, &in.C, &in.D_skip, &in.z, &in.delta_bias, &in.h0};
    const T** dst[9] = {&u, &delta, &A, &B, &C, &Dskip, &z, &bias, &h0};
    for (int i = 0; i < 9; ++i) {
      keep[i] = src[i]->defined() ? src[i]->to(dtype_of<T>()).contiguous() : Tensor();
      *dst[i] = keep[i].defined() ? keep[i].data<T>() : nullptr;
    }
    seq = in.seq_idx.defined() ? in.seq_idx.data<int32_t>() : nullptr;  // contiguous (caller)
  }
  int64_t x_at(int64_t b, int64_t t, int64_t c) const { return (b * d.L + t) * d.D + c; }            // u, delta, z, y
  int64_t bc_at(int64_t b, int64_t t, int64_t g) const { return ((b * d.L + t) * d.G + g) * d.N; }  // B, C row
  int64_t group(int64_t c) const { return c / (d.D / d.G); }
  T pre_dt(int64_t b, int64_t t, int64_t c) const { return delta[x_at(b, t, c)] + (bias ? bias[c] : T(0)); }
  T dt(int64_t b, int64_t t, int64_t c) const {
    const T x = pre_dt(b, t, c);
    return softplus_on ? softplus(x) : x;
  }
  // The state is reset before step t when a new document starts there.
  bool reset(int64_t b, int64_t t) const { return seq && t > 0 && seq[b * d.L + t] != seq[b * d.L + t - 1]; }

  // Runs channel c of row b forward: h_t for every t into hs (L x N) if given; returns h_{L-1} in h.
  // y (pre-gate or gated) is written to y if given.
  void run_row(int64_t b, int64_t c, std::vector<T>& hv, T* hs, T* y) const {
    const int64_t N = d.N, g = group(c);
    T* __restrict__ h = hv.data();
    const T* __restrict__ Ac = A + c * N;
    for (int64_t n = 0; n < N; ++n) h[n] = h0 ? h0[(b * d.D + c) * N + n] : T(0);
    for (int64_t t = 0; t < d.L; ++t) {
      if (reset(b, t)) std::fill(hv.begin(), hv.end(), T(0));
      const T dtv = dt(b, t, c), uv = u[x_at(b, t, c)], dtu = dtv * uv;
      const T *__restrict__ Bt = B + bc_at(b, t, g), *__restrict__ Ct = C + bc_at(b, t, g);
      T acc = T(0);
#pragma omp simd reduction(+ : acc)
      for (int64_t n = 0; n < N; ++n) {
        h[n] = exp_t(dtv * Ac[n]) * h[n] + Bt[n] * dtu;
        acc += Ct[n] * h[n];
      }
      if (Dskip) acc += Dskip[c] * uv;
      if (hs) std::copy(hv.begin(), hv.end(), hs + t * N);
      if (y) {
        if (z) {
          const T zv = z[x_at(b, t, c)];
          acc *= zv * sigmoid(zv);
        }
        y[x_at(b, t, c)] = acc;
      }
    }
  }
};

Tensor as_dtype(const Tensor& t, DType dt) { return t.dtype() == dt ? t : t.to(dt); }

template <typename T>
ScanOutputs scan_forward_impl(const ScanInputs& in_raw, const ScanOptions& opt) {
  const Dims d = check_reference_inputs(in_raw);
  const ScanInputs in = contiguous_inputs(in_raw);
  const Ref<T> r(in, d, opt.delta_softplus);
  auto buffer = [](const Shape& s) { return Tensor::zeros(s, dtype_of<T>()); };
  Tensor y = buffer({d.Bt, d.L, d.D}), h_last = buffer({d.Bt, d.D, d.N});
  T *py = y.data<T>(), *ph = h_last.data<T>();
#pragma omp parallel for schedule(static) if (d.Bt * d.D * d.L * d.N > kParallelWork)
  for (int64_t row = 0; row < d.Bt * d.D; ++row) {
    std::vector<T> h(size_t(d.N));
    r.run_row(row / d.D, row % d.D, h, nullptr, py);
    std::copy(h.begin(), h.end(), ph + row * d.N);
  }
  return {as_dtype(y, in.u.dtype()), as_dtype(h_last, h_last_dtype(in)), {}};
}

template <typename T>
ScanGrads scan_backward_impl(const ScanInputs& in_raw, const Tensor& grad_y, const Tensor& grad_h_last,
                             const ScanOptions& opt) {
  const Dims d = check_reference_inputs(in_raw);
  check_grads(in_raw, d, grad_y, grad_h_last);
  const ScanInputs in = contiguous_inputs(in_raw);
  const Ref<T> r(in, d, opt.delta_softplus);
  const auto [Bt, L, D, N, G] = d;
  auto buffer = [](const Shape& s) { return Tensor::zeros(s, dtype_of<T>()); };
  const Tensor gyT = grad_y.to(dtype_of<T>()).contiguous();
  const Tensor ghT = grad_h_last.defined() ? grad_h_last.to(dtype_of<T>()).contiguous() : Tensor();
  const T* gout = gyT.data<T>();
  const T* gh = ghT.defined() ? ghT.data<T>() : nullptr;

  // Sums over channels (gB, gC) and over time (gA, gD, gdelta_bias) accumulate in double for either T.
  Tensor gu = buffer(in.u.shape()), gdelta = buffer(in.u.shape());
  Tensor gB = Tensor::zeros(in.B.shape(), DType::f64), gC = Tensor::zeros(in.C.shape(), DType::f64);
  Tensor gz = r.z ? buffer(in.u.shape()) : Tensor(), gh0 = r.h0 ? buffer({Bt, D, N}) : Tensor();
  // Per batch row partial sums of the parameter gradients, reduced over b in order below.
  std::vector<double> gA_b(size_t(Bt * D * N), 0.0), gD_b(size_t(Bt * D), 0.0), gbias_b(size_t(Bt * D), 0.0);
  double *pgB = gB.data<double>(), *pgC = gC.data<double>();
  T *pgu = gu.data<T>(), *pgdelta = gdelta.data<T>(),
    *pgz = gz.defined() ? gz.data<T>() : nullptr, *pgh0 = gh0.defined() ? gh0.data<T>() : nullptr;

#pragma omp parallel for schedule(dynamic, 1) if (Bt * D * L * N > kParallelWork)
  for (int64_t job = 0; job < Bt * G; ++job) {  // job (b, g) owns gB[b, :, g, :] and gC[b, :, g, :]
    const int64_t b = job / G, g = job % G, Dg = D / G;
    std::vector<T> h(static_cast<size_t>(N)), hs(static_cast<size_t>(L * N)), dh(static_cast<size_t>(N)),
        zeros(static_cast<size_t>(N), T(0));
    for (int64_t c = g * Dg; c < (g + 1) * Dg; ++c) {
      r.run_row(b, c, h, hs.data(), nullptr);  // hs[t] = h_t
      const int64_t bc = b * D + c;
      for (int64_t n = 0; n < N; ++n) dh[size_t(n)] = gh ? gh[bc * N + n] : 0.0;  // dh_{L-1} starts at gh
      for (int64_t t = L - 1; t >= 0; --t) {
        const int64_t x = r.x_at(b, t, c), row = r.bc_at(b, t, g);
        const T dtv = r.dt(b, t, c), uv = r.u[x];
        const T *Bt_ = r.B + row, *Ct = r.C + row, *ht = hs.data() + t * N;
        // h_{t-1} as step t saw it: 0 after a reset, h0 (or 0) at t = 0.
        const bool rs = r.reset(b, t);
        const T* hprev = rs ? zeros.data() : t > 0 ? ht - N : r.h0 ? r.h0 + bc * N : zeros.data();
        const T keep = rs ? T(0) : T(1);  // the adjoint carry is cut at a document start
        T gyv = gout[x];
        if (r.z) {  // y = y_pre silu(z): gz = g y_pre silu'(z), gy = g silu(z)
          const T zv = r.z[x], s = sigmoid(zv);
          T y_pre = r.Dskip ? r.Dskip[c] * uv : T(0);
          for (int64_t n = 0; n < N; ++n) y_pre += Ct[n] * ht[n];
          pgz[x] = gyv * y_pre * s * (T(1) + zv * (T(1) - s));
          gyv *= zv * s;
        }
        T gu_t = T(0), gdt = T(0);
        T* __restrict__ dhp = dh.data();
        double *__restrict__ gCr = pgC + row, *__restrict__ gBr = pgB + row, *__restrict__ gAr = gA_b.data() + bc * N;
        const T* __restrict__ Ac = r.A + c * N;
        const T dtu = dtv * uv;
#pragma omp simd reduction(+ : gu_t, gdt)
        for (int64_t n = 0; n < N; ++n) {
          const T a = Ac[n], e = exp_t(dtv * a), hp = hprev[n];
          T dhn = dhp[n];
          dhn += Ct[n] * gyv;  // dh_t = C_t gy_t + exp(dt_{t+1} A) dh_{t+1}
          gCr[n] += gyv * ht[n];
          gBr[n] += dhn * dtu;
          gu_t += dhn * Bt_[n];
          gdt += dhn * (a * e * hp + Bt_[n] * uv);
          gAr[n] += dhn * dtv * e * hp;
          dhp[n] = keep * e * dhn;  // carry to t-1
        }
        gu_t = gu_t * dtv + (r.Dskip ? r.Dskip[c] * gyv : T(0));
        pgu[x] = gu_t;
        const T gdelta_t = r.softplus_on ? gdt * sigmoid(r.pre_dt(b, t, c)) : gdt;
        pgdelta[x] = gdelta_t;
        gbias_b[size_t(bc)] += gdelta_t;
        gD_b[size_t(bc)] += gyv * uv;
      }
      if (pgh0)  // dh now holds exp(dt_0 A) dh_0 (0 if the first document ended before the last)
        for (int64_t n = 0; n < N; ++n) pgh0[bc * N + n] = dh[size_t(n)];
    }
  }

  Tensor gA = Tensor::zeros({D, N}, DType::f64), gD = Tensor::zeros({D}, DType::f64),
         gbias = Tensor::zeros({D}, DType::f64);
  double *pgA = gA.data<double>(), *pgD = gD.data<double>(), *pgbias = gbias.data<double>();
  for (int64_t b = 0; b < Bt; ++b)
    for (int64_t c = 0; c < D; ++c) {
      pgD[c] += gD_b[size_t(b * D + c)];
      pgbias[c] += gbias_b[size_t(b * D + c)];
      for (int64_t n = 0; n < N; ++n) pgA[c * N + n] += gA_b[size_t((b * D + c) * N + n)];
    }

  ScanGrads out;
  out.u = as_dtype(gu, in.u.dtype());
  out.delta = as_dtype(gdelta, in.delta.dtype());
  out.A = as_dtype(gA, in.A.dtype());
  out.B = as_dtype(gB, in.B.dtype());
  out.C = as_dtype(gC, in.C.dtype());
  if (in.D_skip.defined()) out.D_skip = as_dtype(gD, in.D_skip.dtype());
  if (in.z.defined()) out.z = as_dtype(gz, in.z.dtype());
  if (in.delta_bias.defined()) out.delta_bias = as_dtype(gbias, in.delta_bias.dtype());
  if (in.h0.defined()) out.h0 = as_dtype(gh0, in.h0.dtype());
  return out;
}

}  // namespace

ScanOutputs selective_scan_reference_forward(const ScanInputs& in, const ScanOptions& opt) {
  return scan_forward_impl<double>(in, opt);
}
ScanGrads selective_scan_reference_backward(const ScanInputs& in, const Tensor& grad_y, const Tensor& grad_h_last,
                                            const ScanOptions& opt) {
  return scan_backward_impl<double>(in, grad_y, grad_h_last, opt);
}

// ---------------------------------------------- checks and dispatch ----------------------------------------------

void check_scan_inputs(const ScanInputs& in) {
  const Dims d = check_shapes(in);
  if (in.u.device().is_cuda())
    check_cuda_dtypes(in, d);
  else
    check_cpu_dtypes(in);
}

ScanOutputs selective_scan_forward(const ScanInputs& in_raw, const ScanOptions& opt) {
  check_scan_inputs(in_raw);
  const ScanInputs in = contiguous_inputs(in_raw);
#ifdef SSM_WITH_CUDA
  if (in.u.device().is_cuda()) {
    const int64_t Bt = in.u.size(0), L = in.u.size(1), D = in.u.size(2), N = in.A.size(1);
    ScanOutputs out;
    out.y = Tensor::empty(in.u.shape(), in.u.dtype(), in.u.device());
    if (Bt == 0 || L == 0) {  // nothing to scan: h_last = h0 (or 0)
      out.h_last = in.h0.defined() ? in.h0.clone() : Tensor::zeros({Bt, D, N}, DType::f32, in.u.device());
      return out;
    }
    out.h_last = Tensor::empty({Bt, D, N}, DType::f32, in.u.device());
    cuda::selective_scan_forward(in, opt, out.y, out.h_last, &out.starts);
    return out;
  }
#endif
  SSM_CHECK_INPUT(in.u.device().is_cpu(), kOp, ": u is on ", in.u.device().str(), " but this build has no CUDA");
  if (in.u.dtype() == DType::f32) return scan_forward_impl<float>(in, opt);  // the f32 loops (fast exp)
  return selective_scan_reference_forward(in, opt);
}

ScanGrads selective_scan_backward(const ScanInputs& in_raw, const Tensor& grad_y, const Tensor& grad_h_last,
                                  const ScanOptions& opt, const SegmentStarts* starts) {
  check_scan_inputs(in_raw);
  const ScanInputs in = contiguous_inputs(in_raw);
#ifdef SSM_WITH_CUDA
  if (in.u.device().is_cuda()) {
    const int64_t Bt = in.u.size(0), L = in.u.size(1), D = in.u.size(2), N = in.A.size(1);
    check_grads(in, {Bt, L, D, N, in.B.size(2)}, grad_y, grad_h_last);
    const Tensor gy = (grad_y.dtype() == in.u.dtype() ? grad_y : grad_y.to(in.u.dtype())).contiguous();
    const Tensor gh = grad_h_last.defined()
                          ? (grad_h_last.dtype() == DType::f32 ? grad_h_last : grad_h_last.to(DType::f32)).contiguous()
                          : Tensor();
    ScanGrads g;
    if (Bt == 0 || L == 0) {  // nothing was scanned: h_last = h0, every other gradient is zero
      auto zeros_like = [](const Tensor& t) { return t.defined() ? Tensor::zeros(t.shape(), t.dtype(), t.device()) : Tensor(); };
      g = {zeros_like(in.u), zeros_like(in.delta), zeros_like(in.A), zeros_like(in.B), zeros_like(in.C),
           zeros_like(in.D_skip), zeros_like(in.z), zeros_like(in.delta_bias), zeros_like(in.h0)};
      if (in.h0.defined() && gh.defined()) g.h0.copy_(gh);
      return g;
    }
    cuda::selective_scan_backward(in, gy, gh, opt, g, starts);
    return g;
  }
#endif
  SSM_CHECK_INPUT(in.u.device().is_cpu(), kOp, ": u is on ", in.u.device().str(), " but this build has no CUDA");
  if (in.u.dtype() == DType::f32) return scan_backward_impl<float>(in, grad_y, grad_h_last, opt);
  return selective_scan_reference_backward(in, grad_y, grad_h_last, opt);
}

// ---------------------------------------------- autograd op ----------------------------------------------
//
// Two differentiable outputs from one backward. The node of h_last is the op: its inputs are the
// scan's inputs and its closure runs the whole backward. y is a node whose only input is h_last: its
// closure parks dLoss/dy in a shared slot and passes a zero gradient on to h_last, so the engine
// (which runs every consumer of a node before the node) runs h_last's closure exactly once, after
// y's, with dLoss/dh_last summed. If y is not used by the loss its slot stays empty (zero gradient);
// if h_last is not used, it receives only y's zero. Saved: the inputs and, on CUDA, the forward's
// segment start states (a few MB); the backward recomputes every other state.

ScanResult selective_scan(const ag::Variable& u, const ag::Variable& delta, const ag::Variable& A,
                          const ag::Variable& B, const ag::Variable& C, const ag::Variable& D_skip,
                          const ag::Variable& z, const ag::Variable& delta_bias, const ag::Variable& h0,
                          const Tensor& seq_idx, const ScanOptions& opt) {
  SSM_CHECK_INPUT(u.defined() && delta.defined() && A.defined() && B.defined() && C.defined(), kOp,
                  ": u, delta, A, B and C are required (one is undefined)");
  // The present inputs, in ScanInputs order; slot[i] = position in `inputs` or -1.
  const ag::Variable* all[9] = {&u, &delta, &A, &B, &C, &D_skip, &z, &delta_bias, &h0};
  std::vector<ag::Variable> inputs;
  std::array<int, 9> slot{};
  for (int i = 0; i < 9; ++i) {
    slot[size_t(i)] = all[i]->defined() ? int(inputs.size()) : -1;
    if (all[i]->defined()) inputs.push_back(*all[i]);
  }
  auto gather = [slot, seq_idx](const std::vector<ag::Variable>& in) {
    auto t = [&](int i) { return slot[size_t(i)] >= 0 ? in[size_t(slot[size_t(i)])].data() : Tensor(); };
    return ScanInputs{t(0), t(1), t(2), t(3), t(4), t(5), t(6), t(7), t(8), seq_idx};
  };
  ScanOutputs out = selective_scan_forward(gather(inputs), opt);

  struct Slot {
    Tensor grad_y;  // dLoss/dy, parked by y's closure until h_last's closure runs
  };
  auto parked = std::make_shared<Slot>();
  const Shape y_shape = out.y.shape();
  const DType y_dtype = out.y.dtype();
  auto starts = std::make_shared<SegmentStarts>(std::move(out.starts));
  ag::Variable h_last(out.h_last, std::move(inputs),
                      [gather, parked, opt, slot, y_shape, y_dtype, starts](std::vector<ag::Variable>& in, const Tensor& gh) {
                        const ScanInputs si = gather(in);
                        Tensor gy = std::move(parked->grad_y);
                        parked->grad_y = Tensor();
                        if (!gy.defined()) gy = Tensor::zeros(y_shape, y_dtype, si.u.device());
                        ScanGrads g = selective_scan_backward(si, gy, gh, opt, starts.get());
                        const Tensor* grads[9] = {&g.u, &g.delta, &g.A, &g.B, &g.C, &g.D_skip, &g.z, &g.delta_bias, &g.h0};
                        for (int i = 0; i < 9; ++i) {
                          const int s = slot[size_t(i)];
                          if (s >= 0 && in[size_t(s)].requires_grad()) in[size_t(s)].add_grad(*grads[i]);
                        }
                      });
  ag::Variable y(out.y, {h_last}, [parked](std::vector<ag::Variable>& in, const Tensor& g) {
    parked->grad_y = g;
    in[0].add_grad(Tensor::zeros(in[0].shape(), in[0].dtype(), in[0].device()));
  });
  return {y, h_last};
}

}  // namespace ssm::kernels
