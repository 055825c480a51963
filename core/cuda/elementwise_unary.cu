// Elementwise ops on CUDA, part 1: unary, unary_backward (grad * op'(x), fused), axpby_, where.
// One functor per kind of op; the op itself is a runtime switch inside the functor (uniform across the
// grid, so no divergence) to keep the instantiations few. Half types are computed in f32, f64 in f64.
// Semantics follow core/ops_elementwise.cpp (GELU exact with erf, Softplus = x above 20).
#include "core/cuda/cuda_ops.h"
#include "core/cuda/elementwise.cuh"
#include "core/cuda/math.cuh"

namespace ssm::cuda {
namespace {

template <class T>
struct UnaryF {
  using Out = T; using In0 = T; using In1 = uint8_t; using In2 = uint8_t; using Vt = T;
  static constexpr int kIn = 1;
  UnaryOp op;
  __device__ T operator()(T x, uint8_t, uint8_t) const { return from_acc<T>(unary_math(op, to_acc(x))); }
  template <int N>  // the vector kernel: the op switch once, then N elements with the op fixed
  __device__ void apply(T (&r)[N], const T (&x)[N], const uint8_t (&)[N], const uint8_t (&)[N]) const {
    visit_unary(op, [&](auto o) { from_acc_n<T, N>(r, [&](int e) { return unary_fn<decltype(o)::value>(to_acc(x[e])); }); });
  }
};

template <class T>
struct UnaryGradF {
  using Out = T; using In0 = T; using In1 = T; using In2 = uint8_t; using Vt = T;
  static constexpr int kIn = 2;
  UnaryOp op;
  __device__ T operator()(T g, T x, uint8_t) const { return from_acc<T>(unary_grad_math(op, to_acc(g), to_acc(x))); }
  template <int N>
  __device__ void apply(T (&r)[N], const T (&g)[N], const T (&x)[N], const uint8_t (&)[N]) const {
    visit_unary(op, [&](auto o) {
      from_acc_n<T, N>(r, [&](int e) { return unary_grad_fn<decltype(o)::value>(to_acc(g[e]), to_acc(x[e])); });
    });
  }
};

template <class T>
struct AxpbyF {
  using Out = T; using In0 = T; using In1 = T; using In2 = uint8_t; using Vt = T;
  static constexpr int kIn = 2;
  acc_t<T> alpha, beta;
  __device__ T operator()(T a, T b, uint8_t) const { return from_acc<T>(alpha * to_acc(a) + beta * to_acc(b)); }
  template <int N>
  __device__ void apply(T (&r)[N], const T (&a)[N], const T (&b)[N], const uint8_t (&)[N]) const {
    from_acc_n<T, N>(r, [&](int e) { return alpha * to_acc(a[e]) + beta * to_acc(b[e]); });
  }
};

template <class T>
struct WhereF {
  using Out = T; using In0 = uint8_t; using In1 = T; using In2 = T; using Vt = T;
  static constexpr int kIn = 3;
  __device__ T operator()(uint8_t c, T a, T b) const { return c ? a : b; }
};

}  // namespace

Tensor unary(UnaryOp op, const Tensor& x) {
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  SSM_DISPATCH_FLOAT(x.dtype(), "unary", launch_elementwise(UnaryF<scalar_t>{op}, out, {x}, "unary"));
  return out;
}

Tensor unary_backward(UnaryOp op, const Tensor& grad, const Tensor& x) {
  Tensor out = Tensor::empty(broadcast_shapes(grad.shape(), x.shape()), grad.dtype(), grad.device());
  SSM_DISPATCH_FLOAT(grad.dtype(), "unary_backward",
                     launch_elementwise(UnaryGradF<scalar_t>{op}, out, {grad, x}, "unary_backward"));
  return out;
}

void axpby_(Tensor& a, double alpha, const Tensor& b, double beta) {
  SSM_DISPATCH_FLOAT(a.dtype(), "axpby_",
                     launch_elementwise(AxpbyF<scalar_t>{acc_t<scalar_t>(alpha), acc_t<scalar_t>(beta)}, a, {a, b},
                                        "axpby_"));
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  const Shape shape = broadcast_shapes(cond.shape(), broadcast_shapes(a.shape(), b.shape()));
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  SSM_DISPATCH_ALL(a.dtype(), "where", launch_elementwise(WhereF<scalar_t>{}, out, {cond, a, b}, "where"));
  return out;
}

}  // namespace ssm::cuda
