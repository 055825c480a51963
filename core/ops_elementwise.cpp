// Elementwise ops on the CPU: unary (+ fused backward), binary with numpy broadcasting, in-place forms,
// axpby_, where. f32/f64 compute in their own precision; bf16/f16 are converted to f32, computed, and
// converted back to the input dtype. Add/Sub/Mul/Max/Min and comparisons also take i32/i64/u8.
#include <cmath>

#include "core/cpu_loops.h"
#include "core/ops.h"
#ifdef SSM_WITH_CUDA
#include "core/cuda/cuda_ops.h"
#endif

namespace ssm {
namespace {

using cpu::nd_loop;

bool is_half_dtype(DType t) { return t == DType::bf16 || t == DType::f16; }

const char* unary_name(UnaryOp op) {
  static const char* names[] = {"Neg",  "Exp",     "Log",  "Sqrt", "Rsqrt", "Abs",  "Square", "Reciprocal",
                                "Sin",  "Cos",     "Tanh", "Sigmoid", "Relu", "Silu", "Gelu", "Softplus"};
  return names[int(op)];
}
const char* binary_name(BinaryOp op) {
  static const char* names[] = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow",
                                "Eq",  "Ne",  "Lt",  "Le",  "Gt",  "Ge"};
  return names[int(op)];
}
bool is_comparison(BinaryOp op) { return int(op) >= int(BinaryOp::Eq); }

void check_defined(const Tensor& t, const char* op, const char* what) {
  SSM_CHECK_INPUT(t.defined(), op, ": ", what, " is undefined");
}

void check_same_device(const Tensor& a, const Tensor& b, const char* op) {
  SSM_CHECK_INPUT(a.device() == b.device(), op, ": tensors on different devices (", a.device().str(), " ",
                  shape_str(a.shape()), " vs ", b.device().str(), " ", shape_str(b.shape()), ")");
}

void check_same_dtype(const Tensor& a, const Tensor& b, const char* op) {
  SSM_CHECK_INPUT(a.dtype() == b.dtype(), op, ": dtypes differ (", dtype_name(a.dtype()), " ",
                  shape_str(a.shape()), " vs ", dtype_name(b.dtype()), " ", shape_str(b.shape()),
                  "); convert one with to()");
}

// out (any strides, shape S) = f(x) with x of shape S.
template <typename TO, typename TI, typename F>
void map1(Tensor& out, const Tensor& x, F f) {
  TO* o = out.data<TO>();
  const TI* p = x.data<TI>();
  const int64_t n = x.numel();
  if (out.is_contiguous() && x.is_contiguous()) {
#pragma omp parallel for schedule(static) if (n > cpu::kParallelGrain)
    for (int64_t i = 0; i < n; ++i) o[i] = f(p[i]);
    return;
  }
  nd_loop<2>(out.shape(), {out.strides(), x.strides()},
             [&](const std::array<int64_t, 2>& of, const std::array<int64_t, 2>& st, int64_t m) {
               for (int64_t i = 0; i < m; ++i) o[of[0] + i * st[0]] = f(p[of[1] + i * st[1]]);
             });
}

// out (shape S, any strides) = f(a, b); a and b broadcast to S.
template <typename TO, typename TA, typename TB, typename F>
void map2(Tensor& out, const Tensor& a, const Tensor& b, F f) {
  TO* o = out.data<TO>();
  const TA* pa = a.data<TA>();
  const TB* pb = b.data<TB>();
  const int64_t n = out.numel();
  const bool oc = out.is_contiguous();
  if (oc && a.is_contiguous() && a.shape() == out.shape()) {
    if (b.is_contiguous() && b.shape() == out.shape()) {
#pragma omp parallel for schedule(static) if (n > cpu::kParallelGrain)
      for (int64_t i = 0; i < n; ++i) o[i] = f(pa[i], pb[i]);
      return;
    }
    if (b.numel() == 1) {
      const TB s = pb[0];
#pragma omp parallel for schedule(static) if (n > cpu::kParallelGrain)
      for (int64_t i = 0; i < n; ++i) o[i] = f(pa[i], s);
      return;
    }
  }
  if (oc && a.numel() == 1 && b.is_contiguous() && b.shape() == out.shape()) {
    const TA s = pa[0];
#pragma omp parallel for schedule(static) if (n > cpu::kParallelGrain)
    for (int64_t i = 0; i < n; ++i) o[i] = f(s, pb[i]);
    return;
  }
  nd_loop<3>(out.shape(), {out.strides(), cpu::broadcast_strides(a, out.shape()), cpu::broadcast_strides(b, out.shape())},
             [&](const std::array<int64_t, 3>& of, const std::array<int64_t, 3>& st, int64_t m) {
               TO* op = o + of[0];
               const TA* ap = pa + of[1];
               const TB* bp = pb + of[2];
               if (st[0] == 1 && st[1] == 1 && st[2] == 0) {
                 const TB s = bp[0];
                 for (int64_t i = 0; i < m; ++i) op[i] = f(ap[i], s);
               } else if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
                 for (int64_t i = 0; i < m; ++i) op[i] = f(ap[i], bp[i]);
               } else {
                 for (int64_t i = 0; i < m; ++i) op[i * st[0]] = f(ap[i * st[1]], bp[i * st[2]]);
               }
             });
}

// ---- unary math: y = op(x) ----
template <typename T>
inline T sigmoid(T x) {
  if constexpr (std::is_same_v<T, float>)
    return cpu::sigmoid_f32(x);  // vectorizable exp (cpu_loops.h)
  else
    return T(1) / (T(1) + std::exp(-x));
}

template <typename T, typename G>
void with_unary(UnaryOp op, G&& g) {
  constexpr T kInvSqrt2 = T(0.70710678118654752440);
  switch (op) {
    case UnaryOp::Neg: return g([](T x) { return -x; });
    case UnaryOp::Exp: return g([](T x) { return std::exp(x); });
    case UnaryOp::Log: return g([](T x) { return std::log(x); });
    case UnaryOp::Sqrt: return g([](T x) { return std::sqrt(x); });
    case UnaryOp::Rsqrt: return g([](T x) { return T(1) / std::sqrt(x); });
    case UnaryOp::Abs: return g([](T x) { return std::abs(x); });
    case UnaryOp::Square: return g([](T x) { return x * x; });
    case UnaryOp::Reciprocal: return g([](T x) { return T(1) / x; });
    case UnaryOp::Sin: return g([](T x) { return std::sin(x); });
    case UnaryOp::Cos: return g([](T x) { return std::cos(x); });
    case UnaryOp::Tanh: return g([](T x) { return std::tanh(x); });
    case UnaryOp::Sigmoid: return g([](T x) { return sigmoid(x); });
    case UnaryOp::Relu: return g([](T x) { return x > T(0) ? x : T(0); });
    case UnaryOp::Silu: return g([](T x) { return x * sigmoid(x); });
    case UnaryOp::Gelu:
      if constexpr (std::is_same_v<T, float>)  // x Phi(x) with the vectorizable erf (cpu_loops.h)
        return g([](float x) { return x * cpu::normal_cdf_f32(x); });
      else
        return g([kInvSqrt2](T x) { return T(0.5) * x * (T(1) + std::erf(x * kInvSqrt2)); });
    case UnaryOp::Softplus: return g([](T x) { return x > T(20) ? x : std::log1p(std::exp(x)); });
  }
  throw_internal("unary: unknown op");
}

// ---- derivative: d op(x) / dx ----
template <typename T, typename G>
void with_unary_deriv(UnaryOp op, G&& g) {
  constexpr T kInvSqrt2 = T(0.70710678118654752440);
  constexpr T kInvSqrt2Pi = T(0.39894228040143267794);
  switch (op) {
    case UnaryOp::Neg: return g([](T) { return T(-1); });
    case UnaryOp::Exp: return g([](T x) { return std::exp(x); });
    case UnaryOp::Log: return g([](T x) { return T(1) / x; });
    case UnaryOp::Sqrt: return g([](T x) { return T(0.5) / std::sqrt(x); });               // 1 / (2 sqrt x)
    case UnaryOp::Rsqrt: return g([](T x) { return T(-0.5) / (x * std::sqrt(x)); });       // -x^-3/2 / 2
    case UnaryOp::Abs: return g([](T x) { return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0)); });
    case UnaryOp::Square: return g([](T x) { return T(2) * x; });
    case UnaryOp::Reciprocal: return g([](T x) { return T(-1) / (x * x); });
    case UnaryOp::Sin: return g([](T x) { return std::cos(x); });
    case UnaryOp::Cos: return g([](T x) { return -std::sin(x); });
    case UnaryOp::Tanh: return g([](T x) { const T t = std::tanh(x); return T(1) - t * t; });
    case UnaryOp::Sigmoid: return g([](T x) { const T s = sigmoid(x); return s * (T(1) - s); });
    case UnaryOp::Relu: return g([](T x) { return x > T(0) ? T(1) : T(0); });
    case UnaryOp::Silu:  // s (1 + x (1 - s))
      return g([](T x) { const T s = sigmoid(x); return s * (T(1) + x * (T(1) - s)); });
    case UnaryOp::Gelu:  // Phi(x) + x phi(x)
      if constexpr (std::is_same_v<T, float>)
        return g([=](float x) { return cpu::normal_cdf_f32(x) + x * kInvSqrt2Pi * cpu::exp_f32(-0.5f * x * x); });
      else
        return g([=](T x) {
          return T(0.5) * (T(1) + std::erf(x * kInvSqrt2)) + x * kInvSqrt2Pi * std::exp(T(-0.5) * x * x);
        });
    case UnaryOp::Softplus: return g([](T x) { return x > T(20) ? T(1) : sigmoid(x); });
  }
  throw_internal("unary_backward: unknown op");
}

// ---- binary math ----
template <typename T>
constexpr bool kIsFloat = std::is_floating_point_v<T>;

template <typename T, typename G>
void with_binary(BinaryOp op, G&& g) {
  switch (op) {
    case BinaryOp::Add: return g([](T x, T y) { return T(x + y); });
    case BinaryOp::Sub: return g([](T x, T y) { return T(x - y); });
    case BinaryOp::Mul: return g([](T x, T y) { return T(x * y); });
    case BinaryOp::Max: return g([](T x, T y) { return (x > y || x != x) ? x : y; });  // NaN propagates
    case BinaryOp::Min: return g([](T x, T y) { return (x < y || x != x) ? x : y; });
    case BinaryOp::Div:
    case BinaryOp::Pow:
      if constexpr (kIsFloat<T>) {
        if (op == BinaryOp::Div) return g([](T x, T y) { return x / y; });
        return g([](T x, T y) { return T(std::pow(x, y)); });
      } else {
        throw_input(cat("binary ", binary_name(op), ": integer dtypes are not supported; convert to f32 first"));
      }
    default: break;
  }
  throw_internal("with_binary: comparison passed to arithmetic dispatch");
}

template <typename T, typename G>
void with_compare(BinaryOp op, G&& g) {
  switch (op) {
    case BinaryOp::Eq: return g([](T x, T y) { return uint8_t(x == y); });
    case BinaryOp::Ne: return g([](T x, T y) { return uint8_t(x != y); });
    case BinaryOp::Lt: return g([](T x, T y) { return uint8_t(x < y); });
    case BinaryOp::Le: return g([](T x, T y) { return uint8_t(x <= y); });
    case BinaryOp::Gt: return g([](T x, T y) { return uint8_t(x > y); });
    case BinaryOp::Ge: return g([](T x, T y) { return uint8_t(x >= y); });
    default: break;
  }
  throw_internal("with_compare: arithmetic op passed to comparison dispatch");
}

}  // namespace

// ---- f32 fast paths: loops over contiguous runs, compiled for AVX2+FMA and baseline (SSM_CPU_CLONES) ----
// Each takes its operands as (pointer, stride) with stride 0 (one value broadcast along the run) or 1;
// the per-element math is the same inline code the generic template path uses, so results do not depend
// on the layout. No std::function, no per-element switch: the op is dispatched once per run.
namespace f32k {

SSM_CPU_CLONES void unary_run(UnaryOp op, const float* x, float* y, int64_t n) {
  with_unary<float>(op, [&](auto f) {
    for (int64_t i = 0; i < n; ++i) y[i] = f(x[i]);
  });
}

// y = g * op'(x), all unit stride.
SSM_CPU_CLONES void unary_bwd_run(UnaryOp op, const float* g, const float* x, float* y, int64_t n) {
  with_unary_deriv<float>(op, [&](auto d) {
    for (int64_t i = 0; i < n; ++i) y[i] = g[i] * d(x[i]);
  });
}

template <int SA, int SB, typename F>
SSM_ALWAYS_INLINE void loop2(const float* a, const float* b, float* o, int64_t n, F f) {
  if constexpr (SA == 0 && SB == 0) {
    const float v = f(a[0], b[0]);
    for (int64_t i = 0; i < n; ++i) o[i] = v;
  } else if constexpr (SA == 0) {
    const float s = a[0];
    for (int64_t i = 0; i < n; ++i) o[i] = f(s, b[i]);
  } else if constexpr (SB == 0) {
    const float s = b[0];
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], s);
  } else {
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], b[i]);
  }
}

template <typename F>
SSM_ALWAYS_INLINE void strided2(const float* a, int64_t sa, const float* b, int64_t sb, float* o, int64_t n, F f) {
  if (sa == 1 && sb == 1)
    loop2<1, 1>(a, b, o, n, f);
  else if (sa == 1)
    loop2<1, 0>(a, b, o, n, f);
  else if (sb == 1)
    loop2<0, 1>(a, b, o, n, f);
  else
    loop2<0, 0>(a, b, o, n, f);
}

// o = a op b (arithmetic ops only).
SSM_CPU_CLONES void binary_run(BinaryOp op, const float* a, int64_t sa, const float* b, int64_t sb, float* o,
                               int64_t n) {
  with_binary<float>(op, [&](auto f) { strided2(a, sa, b, sb, o, n, f); });
}

// o = al a + be b.
SSM_CPU_CLONES void axpby_run(float al, float be, const float* a, int64_t sa, const float* b, int64_t sb,
                              float* o, int64_t n) {
  if (al == 1.0f)
    strided2(a, sa, b, sb, o, n, [be](float x, float y) { return x + be * y; });
  else
    strided2(a, sa, b, sb, o, n, [al, be](float x, float y) { return al * x + be * y; });
}

}  // namespace f32k

namespace {

constexpr int64_t kGatherBlock = 256;  // strided runs are gathered into stack buffers of this many elements

// True when `t` is contiguous with exactly `shape`.
bool dense_as(const Tensor& t, const Shape& shape) { return t.is_contiguous() && t.shape() == shape; }

// Number of elements C when `t` (contiguous) equals the trailing dims of `shape` (leading 1s of t ignored)
// and broadcasts over the leading ones, i.e. out[r, c] uses t[c]; 0 otherwise.
int64_t trailing_block(const Tensor& t, const Shape& shape) {
  if (!t.is_contiguous()) return 0;
  const Shape& s = t.shape();
  size_t lead = 0;
  while (lead < s.size() && s[lead] == 1) ++lead;
  const size_t k = s.size() - lead;
  if (k == 0 || k > shape.size()) return 0;
  for (size_t d = 0; d < k; ++d)
    if (s[lead + d] != shape[shape.size() - k + d]) return 0;
  return t.numel();
}

// out = unary op of x, f32.
void unary_f32(UnaryOp op, Tensor& out, const Tensor& x) {
  float* o = out.data<float>();
  const float* p = x.data<float>();
  if (out.is_contiguous() && dense_as(x, out.shape())) {
    cpu::parallel_chunks(x.numel(), cpu::kParallelGrain,
                         [&](int64_t b, int64_t e) { f32k::unary_run(op, p + b, o + b, e - b); });
    return;
  }
  nd_loop<2>(out.shape(), {out.strides(), x.strides()},
             [&](const std::array<int64_t, 2>& of, const std::array<int64_t, 2>& st, int64_t m) {
               if (st[0] == 1 && st[1] == 1) return f32k::unary_run(op, p + of[1], o + of[0], m);
               float bx[kGatherBlock], by[kGatherBlock];
               for (int64_t s = 0; s < m; s += kGatherBlock) {
                 const int64_t c = std::min(kGatherBlock, m - s);
                 for (int64_t i = 0; i < c; ++i) bx[i] = p[of[1] + (s + i) * st[1]];
                 f32k::unary_run(op, bx, by, c);
                 for (int64_t i = 0; i < c; ++i) o[of[0] + (s + i) * st[0]] = by[i];
               }
             });
}

// out = run(a, b) for f32 with a, b broadcasting to out's shape. run(a, sa, b, sb, o, n) handles a
// contiguous output run with operand strides sa, sb in {0, 1} (only 1 when !bcast_ok: then other runs are
// gathered into unit-stride buffers first).
template <typename Run>
void map2_f32(Tensor& out, const Tensor& a, const Tensor& b, bool bcast_ok, Run run) {
  float* o = out.data<float>();
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  const Shape& shape = out.shape();
  const int64_t n = out.numel();
  if (n == 0) return;
  if (out.is_contiguous()) {
    const bool da = dense_as(a, shape), db = dense_as(b, shape);
    auto whole = [&](int64_t sa, int64_t sb) {
      cpu::parallel_chunks(n, cpu::kParallelGrain,
                           [&](int64_t s, int64_t e) { run(pa + s * sa, sa, pb + s * sb, sb, o + s, e - s); });
    };
    if (da && db) return whole(1, 1);
    if (bcast_ok && da && b.numel() == 1) return whole(1, 0);
    if (bcast_ok && db && a.numel() == 1) return whole(0, 1);
    // Row broadcast, e.g. x (B, L, H) op bias (H): out[r, :] = run(a[r, :], b) row by row.
    const int64_t cb = da ? trailing_block(b, shape) : 0, ca = db ? trailing_block(a, shape) : 0;
    if (cb > 1 || ca > 1) {
      const int64_t C = cb > 1 ? cb : ca, R = n / C;
      cpu::parallel_chunks(R, std::max<int64_t>(cpu::kParallelGrain / C, 1), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          if (cb > 1)
            run(pa + r * C, 1, pb, 1, o + r * C, C);
          else
            run(pa, 1, pb + r * C, 1, o + r * C, C);
        }
      });
      return;
    }
  }
  nd_loop<3>(shape, {out.strides(), cpu::broadcast_strides(a, shape), cpu::broadcast_strides(b, shape)},
             [&](const std::array<int64_t, 3>& of, const std::array<int64_t, 3>& st, int64_t m) {
               const bool ok_a = st[1] == 1 || (bcast_ok && st[1] == 0);
               const bool ok_b = st[2] == 1 || (bcast_ok && st[2] == 0);
               if (st[0] == 1 && ok_a && ok_b) return run(pa + of[1], st[1], pb + of[2], st[2], o + of[0], m);
               float ba[kGatherBlock], bb[kGatherBlock], bo[kGatherBlock];
               for (int64_t s = 0; s < m; s += kGatherBlock) {
                 const int64_t c = std::min(kGatherBlock, m - s);
                 for (int64_t i = 0; i < c; ++i) {
                   ba[i] = pa[of[1] + (s + i) * st[1]];
                   bb[i] = pb[of[2] + (s + i) * st[2]];
                 }
                 run(ba, 1, bb, 1, bo, c);
                 for (int64_t i = 0; i < c; ++i) o[of[0] + (s + i) * st[0]] = bo[i];
               }
             });
}

// out = a op b on the CPU (out already allocated with the broadcast shape, a/b same dtype, not halves).
void cpu_binary_into(BinaryOp op, Tensor& out, const Tensor& a, const Tensor& b) {
  if (a.dtype() == DType::f32 && !is_comparison(op) && op != BinaryOp::Pow) {
    map2_f32(out, a, b, true, [op](const float* x, int64_t sx, const float* y, int64_t sy, float* o, int64_t n) {
      f32k::binary_run(op, x, sx, y, sy, o, n);
    });
    return;
  }
  cpu::dispatch_arith(a.dtype(), binary_name(op), [&](auto zero) {
    using T = decltype(zero);
    if (is_comparison(op)) {
      with_compare<T>(op, [&](auto f) { map2<uint8_t, T, T>(out, a, b, f); });
    } else {
      with_binary<T>(op, [&](auto f) { map2<T, T, T>(out, a, b, f); });
    }
  });
}

}  // namespace

// ---------------- unary ----------------
Tensor unary(UnaryOp op, const Tensor& x) {
  check_defined(x, "unary", "x");
  SSM_CHECK_INPUT(is_floating(x.dtype()), "unary ", unary_name(op), ": expected a floating tensor, got ",
                  dtype_name(x.dtype()), " ", shape_str(x.shape()));
#ifdef SSM_WITH_CUDA
  if (x.device().is_cuda()) return cuda::unary(op, x);
#endif
  if (is_half_dtype(x.dtype())) return unary(op, x.to(DType::f32)).to(x.dtype());
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  if (x.dtype() == DType::f32) {
    unary_f32(op, out, x);
    return out;
  }
  cpu::dispatch_float(x.dtype(), "unary", [&](auto zero) {
    using T = decltype(zero);
    with_unary<T>(op, [&](auto f) { map1<T, T>(out, x, f); });
  });
  return out;
}

Tensor unary_backward(UnaryOp op, const Tensor& grad, const Tensor& x) {
  check_defined(grad, "unary_backward", "grad");
  check_defined(x, "unary_backward", "x");
  check_same_device(grad, x, "unary_backward");
  check_same_dtype(grad, x, "unary_backward");
  SSM_CHECK_INPUT(grad.shape() == x.shape(), "unary_backward ", unary_name(op), ": grad shape ",
                  shape_str(grad.shape()), " differs from x shape ", shape_str(x.shape()));
  SSM_CHECK_INPUT(is_floating(x.dtype()), "unary_backward ", unary_name(op), ": expected a floating tensor, got ",
                  dtype_name(x.dtype()));
#ifdef SSM_WITH_CUDA
  if (x.device().is_cuda()) return cuda::unary_backward(op, grad, x);
#endif
  if (is_half_dtype(x.dtype()))
    return unary_backward(op, grad.to(DType::f32), x.to(DType::f32)).to(x.dtype());
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  if (x.dtype() == DType::f32) {
    map2_f32(out, grad, x, false, [op](const float* g, int64_t, const float* v, int64_t, float* o, int64_t n) {
      f32k::unary_bwd_run(op, g, v, o, n);
    });
    return out;
  }
  cpu::dispatch_float(x.dtype(), "unary_backward", [&](auto zero) {
    using T = decltype(zero);
    with_unary_deriv<T>(op, [&](auto d) { map2<T, T, T>(out, grad, x, [d](T g, T v) { return g * d(v); }); });
  });
  return out;
}

// ---------------- binary ----------------
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  check_defined(a, binary_name(op), "a");
  check_defined(b, binary_name(op), "b");
  check_same_device(a, b, binary_name(op));
  check_same_dtype(a, b, binary_name(op));
  Shape shape;
  try {
    shape = broadcast_shapes(a.shape(), b.shape());
  } catch (const Error& e) {
    throw_input(cat("binary ", binary_name(op), ": ", e.what()));
  }
#ifdef SSM_WITH_CUDA
  if (a.device().is_cuda()) return cuda::binary(op, a, b);
#endif
  if (is_half_dtype(a.dtype())) {
    Tensor r = binary(op, a.to(DType::f32), b.to(DType::f32));
    return is_comparison(op) ? r : r.to(a.dtype());
  }
  Tensor out = Tensor::empty(shape, is_comparison(op) ? DType::u8 : a.dtype());
  cpu_binary_into(op, out, a, b);
  return out;
}

Tensor binary_scalar(BinaryOp op, const Tensor& a, double s) {
  check_defined(a, binary_name(op), "a");
#ifdef SSM_WITH_CUDA
  if (a.device().is_cuda()) return cuda::binary_scalar(op, a, s);
#endif
  if (is_half_dtype(a.dtype())) {
    Tensor r = binary_scalar(op, a.to(DType::f32), s);
    return is_comparison(op) ? r : r.to(a.dtype());
  }
  return binary(op, a, Tensor::scalar(s, a.dtype()));
}

void binary_(BinaryOp op, Tensor& a, const Tensor& b) {
  check_defined(a, binary_name(op), "a");
  check_defined(b, binary_name(op), "b");
  check_same_device(a, b, binary_name(op));
  check_same_dtype(a, b, binary_name(op));
  SSM_CHECK_INPUT(!is_comparison(op), "binary_ ", binary_name(op), ": comparisons cannot run in place");
  SSM_CHECK_INPUT(cpu::broadcasts_to(b.shape(), a.shape()), "binary_ ", binary_name(op), ": b of shape ", shape_str(b.shape()),
                  " does not broadcast to a's shape ", shape_str(a.shape()));
#ifdef SSM_WITH_CUDA
  if (a.device().is_cuda()) return cuda::binary_(op, a, b);
#endif
  if (is_half_dtype(a.dtype())) {
    Tensor r = binary(op, a.to(DType::f32), b.to(DType::f32));
    a.copy_(r);
    return;
  }
  cpu_binary_into(op, a, a, b);
}

void axpby_(Tensor& a, double alpha, const Tensor& b, double beta) {
  check_defined(a, "axpby_", "a");
  check_defined(b, "axpby_", "b");
  check_same_device(a, b, "axpby_");
  check_same_dtype(a, b, "axpby_");
  SSM_CHECK_INPUT(cpu::broadcasts_to(b.shape(), a.shape()), "axpby_: b of shape ", shape_str(b.shape()), " does not broadcast to a's shape ",
                  shape_str(a.shape()));
  SSM_CHECK_INPUT(is_floating(a.dtype()), "axpby_: expected a floating tensor, got ", dtype_name(a.dtype()));
#ifdef SSM_WITH_CUDA
  if (a.device().is_cuda()) return cuda::axpby_(a, alpha, b, beta);
#endif
  if (is_half_dtype(a.dtype())) {
    Tensor af = a.to(DType::f32);
    axpby_(af, alpha, b.to(DType::f32), beta);
    a.copy_(af);
    return;
  }
  if (a.dtype() == DType::f32) {
    const float al = float(alpha), be = float(beta);
    map2_f32(a, a, b, true, [al, be](const float* x, int64_t sx, const float* y, int64_t sy, float* o, int64_t n) {
      f32k::axpby_run(al, be, x, sx, y, sy, o, n);
    });
    return;
  }
  cpu::dispatch_float(a.dtype(), "axpby_", [&](auto zero) {
    using T = decltype(zero);
    const T al = T(alpha), be = T(beta);
    if (alpha == 1.0)
      map2<T, T, T>(a, a, b, [be](T x, T y) { return x + be * y; });
    else
      map2<T, T, T>(a, a, b, [al, be](T x, T y) { return al * x + be * y; });
  });
}

// ---------------- where ----------------
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_defined(cond, "where", "cond");
  check_defined(a, "where", "a");
  check_defined(b, "where", "b");
  check_same_device(cond, a, "where");
  check_same_device(a, b, "where");
  check_same_dtype(a, b, "where");
  SSM_CHECK_INPUT(cond.dtype() == DType::u8, "where: cond must be u8, got ", dtype_name(cond.dtype()), " ",
                  shape_str(cond.shape()));
  Shape shape;
  try {
    shape = broadcast_shapes(cond.shape(), broadcast_shapes(a.shape(), b.shape()));
  } catch (const Error& e) {
    throw_input(cat("where: cond ", shape_str(cond.shape()), ", a ", shape_str(a.shape()), ", b ",
                    shape_str(b.shape()), ": ", e.what()));
  }
#ifdef SSM_WITH_CUDA
  if (a.device().is_cuda()) return cuda::where(cond, a, b);
#endif
  Tensor out = Tensor::empty(shape, a.dtype());
  cpu::dispatch_all(a.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* o = out.data<T>();
    const uint8_t* c = cond.data<uint8_t>();
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    nd_loop<4>(shape,
               {out.strides(), cpu::broadcast_strides(cond, shape), cpu::broadcast_strides(a, shape),
                cpu::broadcast_strides(b, shape)},
               [&](const std::array<int64_t, 4>& of, const std::array<int64_t, 4>& st, int64_t m) {
                 for (int64_t i = 0; i < m; ++i)
                   o[of[0] + i * st[0]] = c[of[1] + i * st[1]] ? pa[of[2] + i * st[2]] : pb[of[3] + i * st[3]];
               });
  });
  return out;
}

}  // namespace ssm
