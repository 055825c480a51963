// Scalar math shared by the elementwise kernels: every UnaryOp, its derivative, every BinaryOp, in the
// compute type A (float for f32/bf16/f16, double for f64, int64 for the integer types).
#pragma once
#include <cuda_runtime.h>

#include <type_traits>

#include "core/ops.h"

namespace ssm::cuda {

__device__ __forceinline__ float m_exp(float x) { return expf(x); }
__device__ __forceinline__ double m_exp(double x) { return ::exp(x); }
__device__ __forceinline__ float m_log(float x) { return logf(x); }
__device__ __forceinline__ double m_log(double x) { return ::log(x); }
__device__ __forceinline__ float m_log1p(float x) { return log1pf(x); }
__device__ __forceinline__ double m_log1p(double x) { return ::log1p(x); }
__device__ __forceinline__ float m_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double m_sqrt(double x) { return ::sqrt(x); }
__device__ __forceinline__ float m_sin(float x) { return sinf(x); }
__device__ __forceinline__ double m_sin(double x) { return ::sin(x); }
__device__ __forceinline__ float m_cos(float x) { return cosf(x); }
__device__ __forceinline__ double m_cos(double x) { return ::cos(x); }
__device__ __forceinline__ float m_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double m_tanh(double x) { return ::tanh(x); }
__device__ __forceinline__ float m_erf(float x) { return erff(x); }
__device__ __forceinline__ double m_erf(double x) { return ::erf(x); }
__device__ __forceinline__ float m_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double m_abs(double x) { return ::fabs(x); }
__device__ __forceinline__ float m_pow(float x, float y) { return powf(x, y); }
__device__ __forceinline__ double m_pow(double x, double y) { return ::pow(x, y); }

template <class A>
__device__ __forceinline__ A m_sigmoid(A x) {
  return A(1) / (A(1) + m_exp(-x));
}

// Each op is a compile-time parameter (unary_fn<Op>, unary_grad_fn<Op>, binary_fn<Op>); visit_unary /
// visit_binary turn the run-time op into one: `visit_unary(op, [&](auto o) { ... unary_fn<o.value>(x) ... })`
// takes the switch once and runs the body -- typically a loop over all the elements a thread owns --
// with the op fixed, so the loop has no branch per element (the vectorised kernels use this; see
// elementwise.cuh). unary_math(op, x) etc. are the one-element forms (N-d kernels, reductions).
template <UnaryOp Op> using UnaryC = std::integral_constant<UnaryOp, Op>;
template <BinaryOp Op> using BinaryC = std::integral_constant<BinaryOp, Op>;

// y = op(x)
template <UnaryOp Op, class A>
__device__ __forceinline__ A unary_fn(A x) {
  if constexpr (Op == UnaryOp::Neg) return -x;
  else if constexpr (Op == UnaryOp::Exp) return m_exp(x);
  else if constexpr (Op == UnaryOp::Log) return m_log(x);
  else if constexpr (Op == UnaryOp::Sqrt) return m_sqrt(x);
  else if constexpr (Op == UnaryOp::Rsqrt) return A(1) / m_sqrt(x);
  else if constexpr (Op == UnaryOp::Abs) return m_abs(x);
  else if constexpr (Op == UnaryOp::Square) return x * x;
  else if constexpr (Op == UnaryOp::Reciprocal) return A(1) / x;
  else if constexpr (Op == UnaryOp::Sin) return m_sin(x);
  else if constexpr (Op == UnaryOp::Cos) return m_cos(x);
  else if constexpr (Op == UnaryOp::Tanh) return m_tanh(x);
  else if constexpr (Op == UnaryOp::Sigmoid) return m_sigmoid(x);
  else if constexpr (Op == UnaryOp::Relu) return x > A(0) ? x : A(0);
  else if constexpr (Op == UnaryOp::Silu) return x * m_sigmoid(x);
  else if constexpr (Op == UnaryOp::Gelu) return A(0.5) * x * (A(1) + m_erf(x * A(0.70710678118654752440)));  // x Phi(x)
  else if constexpr (Op == UnaryOp::Softplus) return x > A(20) ? x : m_log1p(m_exp(x));  // log(1 + e^x)
  else return x;
}

// g * op'(x)
template <UnaryOp Op, class A>
__device__ __forceinline__ A unary_grad_fn(A g, A x) {
  if constexpr (Op == UnaryOp::Neg) return -g;
  else if constexpr (Op == UnaryOp::Exp) return g * m_exp(x);
  else if constexpr (Op == UnaryOp::Log) return g / x;
  else if constexpr (Op == UnaryOp::Sqrt) return g * A(0.5) / m_sqrt(x);
  else if constexpr (Op == UnaryOp::Rsqrt) return g * A(-0.5) / (x * m_sqrt(x));  // d x^(-1/2) = -1/2 x^(-3/2)
  else if constexpr (Op == UnaryOp::Abs) return x > A(0) ? g : (x < A(0) ? -g : A(0));
  else if constexpr (Op == UnaryOp::Square) return g * A(2) * x;
  else if constexpr (Op == UnaryOp::Reciprocal) return -g / (x * x);
  else if constexpr (Op == UnaryOp::Sin) return g * m_cos(x);
  else if constexpr (Op == UnaryOp::Cos) return -g * m_sin(x);
  else if constexpr (Op == UnaryOp::Tanh) {
    const A t = m_tanh(x);
    return g * (A(1) - t * t);
  } else if constexpr (Op == UnaryOp::Sigmoid) {
    const A s = m_sigmoid(x);
    return g * s * (A(1) - s);
  } else if constexpr (Op == UnaryOp::Relu) {
    return x > A(0) ? g : A(0);
  } else if constexpr (Op == UnaryOp::Silu) {  // s (1 + x (1 - s))
    const A s = m_sigmoid(x);
    return g * s * (A(1) + x * (A(1) - s));
  } else if constexpr (Op == UnaryOp::Gelu) {  // Phi(x) + x phi(x), phi(x) = exp(-x^2/2) / sqrt(2 pi)
    const A cdf = A(0.5) * (A(1) + m_erf(x * A(0.70710678118654752440)));
    const A pdf = m_exp(A(-0.5) * x * x) * A(0.39894228040143267794);
    return g * (cdf + x * pdf);
  } else if constexpr (Op == UnaryOp::Softplus) {
    return x > A(20) ? g : g * m_sigmoid(x);
  } else {
    return g;
  }
}

// a op b for the arithmetic ops (comparisons are in compare_math); Div and Pow give 0 for integers
// (rejected before launch).
template <BinaryOp Op, class A>
__device__ __forceinline__ A binary_fn(A a, A b) {
  if constexpr (Op == BinaryOp::Add) return a + b;
  else if constexpr (Op == BinaryOp::Sub) return a - b;
  else if constexpr (Op == BinaryOp::Mul) return a * b;
  else if constexpr (Op == BinaryOp::Max) {
    if constexpr (std::is_floating_point_v<A>) {
      if (a != a || b != b) return a + b;  // NaN propagates
    }
    return a > b ? a : b;
  } else if constexpr (Op == BinaryOp::Min) {
    if constexpr (std::is_floating_point_v<A>) {
      if (a != a || b != b) return a + b;
    }
    return a < b ? a : b;
  } else if constexpr (Op == BinaryOp::Div && std::is_floating_point_v<A>) {
    return a / b;
  } else if constexpr (Op == BinaryOp::Pow && std::is_floating_point_v<A>) {
    return m_pow(a, b);
  } else {
    return A(0);
  }
}

// body(UnaryC<op>{}) for the run-time op.
template <class Body>
__device__ __forceinline__ void visit_unary(UnaryOp op, Body&& body) {
  switch (op) {
    case UnaryOp::Neg: body(UnaryC<UnaryOp::Neg>{}); break;
    case UnaryOp::Exp: body(UnaryC<UnaryOp::Exp>{}); break;
    case UnaryOp::Log: body(UnaryC<UnaryOp::Log>{}); break;
    case UnaryOp::Sqrt: body(UnaryC<UnaryOp::Sqrt>{}); break;
    case UnaryOp::Rsqrt: body(UnaryC<UnaryOp::Rsqrt>{}); break;
    case UnaryOp::Abs: body(UnaryC<UnaryOp::Abs>{}); break;
    case UnaryOp::Square: body(UnaryC<UnaryOp::Square>{}); break;
    case UnaryOp::Reciprocal: body(UnaryC<UnaryOp::Reciprocal>{}); break;
    case UnaryOp::Sin: body(UnaryC<UnaryOp::Sin>{}); break;
    case UnaryOp::Cos: body(UnaryC<UnaryOp::Cos>{}); break;
    case UnaryOp::Tanh: body(UnaryC<UnaryOp::Tanh>{}); break;
    case UnaryOp::Sigmoid: body(UnaryC<UnaryOp::Sigmoid>{}); break;
    case UnaryOp::Relu: body(UnaryC<UnaryOp::Relu>{}); break;
    case UnaryOp::Silu: body(UnaryC<UnaryOp::Silu>{}); break;
    case UnaryOp::Gelu: body(UnaryC<UnaryOp::Gelu>{}); break;
    case UnaryOp::Softplus: body(UnaryC<UnaryOp::Softplus>{}); break;
  }
}

// body(BinaryC<op>{}) for the arithmetic ops (the comparisons never reach it).
template <class Body>
__device__ __forceinline__ void visit_binary(BinaryOp op, Body&& body) {
  switch (op) {
    case BinaryOp::Add: body(BinaryC<BinaryOp::Add>{}); break;
    case BinaryOp::Sub: body(BinaryC<BinaryOp::Sub>{}); break;
    case BinaryOp::Mul: body(BinaryC<BinaryOp::Mul>{}); break;
    case BinaryOp::Div: body(BinaryC<BinaryOp::Div>{}); break;
    case BinaryOp::Max: body(BinaryC<BinaryOp::Max>{}); break;
    case BinaryOp::Min: body(BinaryC<BinaryOp::Min>{}); break;
    case BinaryOp::Pow: body(BinaryC<BinaryOp::Pow>{}); break;
    default: body(BinaryC<BinaryOp::Eq>{}); break;  // binary_fn gives 0
  }
}

// One-element forms.
template <class A>
__device__ __forceinline__ A unary_math(UnaryOp op, A x) {
  A y = x;
  visit_unary(op, [&](auto o) { y = unary_fn<decltype(o)::value>(x); });
  return y;
}
template <class A>
__device__ __forceinline__ A unary_grad_math(UnaryOp op, A g, A x) {
  A y = g;
  visit_unary(op, [&](auto o) { y = unary_grad_fn<decltype(o)::value>(g, x); });
  return y;
}
template <class A>
__device__ __forceinline__ A binary_math(BinaryOp op, A a, A b) {
  A y = A(0);
  visit_binary(op, [&](auto o) { y = binary_fn<decltype(o)::value>(a, b); });
  return y;
}

template <class A>
__device__ __forceinline__ bool compare_math(BinaryOp op, A a, A b) {
  switch (op) {
    case BinaryOp::Eq: return a == b;
    case BinaryOp::Ne: return a != b;
    case BinaryOp::Lt: return a < b;
    case BinaryOp::Le: return a <= b;
    case BinaryOp::Gt: return a > b;
    case BinaryOp::Ge: return a >= b;
    default: return false;
  }
}

inline bool is_comparison(BinaryOp op) {
  return op == BinaryOp::Eq || op == BinaryOp::Ne || op == BinaryOp::Lt || op == BinaryOp::Le ||
         op == BinaryOp::Gt || op == BinaryOp::Ge;
}
inline bool int_supported(BinaryOp op) {
  return op == BinaryOp::Add || op == BinaryOp::Sub || op == BinaryOp::Mul || op == BinaryOp::Max ||
         op == BinaryOp::Min;
}

}  // namespace ssm::cuda
