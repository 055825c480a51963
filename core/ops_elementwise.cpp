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
    case UnaryOp::Gelu: return g([kInvSqrt2](T x) { return T(0.5) * x * (T(1) + std::erf(x * kInvSqrt2)); });
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

// out = a op b on the CPU (out already allocated with the broadcast shape, a/b same dtype, not halves).
void cpu_binary_into(BinaryOp op, Tensor& out, const Tensor& a, const Tensor& b) {
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
