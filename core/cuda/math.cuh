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

// y = op(x)
template <class A>
__device__ __forceinline__ A unary_math(UnaryOp op, A x) {
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::Exp: return m_exp(x);
    case UnaryOp::Log: return m_log(x);
    case UnaryOp::Sqrt: return m_sqrt(x);
    case UnaryOp::Rsqrt: return A(1) / m_sqrt(x);
    case UnaryOp::Abs: return m_abs(x);
    case UnaryOp::Square: return x * x;
    case UnaryOp::Reciprocal: return A(1) / x;
    case UnaryOp::Sin: return m_sin(x);
    case UnaryOp::Cos: return m_cos(x);
    case UnaryOp::Tanh: return m_tanh(x);
    case UnaryOp::Sigmoid: return m_sigmoid(x);
    case UnaryOp::Relu: return x > A(0) ? x : A(0);
    case UnaryOp::Silu: return x * m_sigmoid(x);
    case UnaryOp::Gelu: return A(0.5) * x * (A(1) + m_erf(x * A(0.70710678118654752440)));  // x Phi(x)
    case UnaryOp::Softplus: return x > A(20) ? x : m_log1p(m_exp(x));                        // log(1 + e^x)
  }
  return x;
}

// g * op'(x)
template <class A>
__device__ __forceinline__ A unary_grad_math(UnaryOp op, A g, A x) {
  switch (op) {
    case UnaryOp::Neg: return -g;
    case UnaryOp::Exp: return g * m_exp(x);
    case UnaryOp::Log: return g / x;
    case UnaryOp::Sqrt: return g * A(0.5) / m_sqrt(x);
    case UnaryOp::Rsqrt: return g * A(-0.5) / (x * m_sqrt(x));  // d x^(-1/2) = -1/2 x^(-3/2)
    case UnaryOp::Abs: return x > A(0) ? g : (x < A(0) ? -g : A(0));
    case UnaryOp::Square: return g * A(2) * x;
    case UnaryOp::Reciprocal: return -g / (x * x);
    case UnaryOp::Sin: return g * m_cos(x);
    case UnaryOp::Cos: return -g * m_sin(x);
    case UnaryOp::Tanh: {
      const A t = m_tanh(x);
      return g * (A(1) - t * t);
    }
    case UnaryOp::Sigmoid: {
      const A s = m_sigmoid(x);
      return g * s * (A(1) - s);
    }
    case UnaryOp::Relu: return x > A(0) ? g : A(0);
    case UnaryOp::Silu: {  // s (1 + x (1 - s))
      const A s = m_sigmoid(x);
      return g * s * (A(1) + x * (A(1) - s));
    }
    case UnaryOp::Gelu: {  // Phi(x) + x phi(x), phi(x) = exp(-x^2/2) / sqrt(2 pi)
      const A cdf = A(0.5) * (A(1) + m_erf(x * A(0.70710678118654752440)));
      const A pdf = m_exp(A(-0.5) * x * x) * A(0.39894228040143267794);
      return g * (cdf + x * pdf);
    }
    case UnaryOp::Softplus: return x > A(20) ? g : g * m_sigmoid(x);
  }
  return g;
}

// a op b for the arithmetic ops (comparisons are in compare_math).
template <class A>
__device__ __forceinline__ A binary_math(BinaryOp op, A a, A b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Max:
      if constexpr (std::is_floating_point_v<A>) {
        if (a != a || b != b) return a + b;  // NaN propagates
      }
      return a > b ? a : b;
    case BinaryOp::Min:
      if constexpr (std::is_floating_point_v<A>) {
        if (a != a || b != b) return a + b;
      }
      return a < b ? a : b;
    case BinaryOp::Div:
      if constexpr (std::is_floating_point_v<A>) return a / b;
      break;
    case BinaryOp::Pow:
      if constexpr (std::is_floating_point_v<A>) return m_pow(a, b);
      break;
    default: break;
  }
  return A(0);
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
