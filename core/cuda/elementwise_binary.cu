// Elementwise ops on CUDA, part 2: binary (numpy broadcasting), binary with a scalar, in-place binary_.
// Floating types are computed in f32 (halves) or f64; integers in i64, wrapping like the CPU; comparisons
// give u8. Semantics follow core/ops_elementwise.cpp: NaN propagates through max/min, a scalar operand is
// first converted to the tensor's dtype (to f32 for the half types).
#include "core/cuda/cuda_ops.h"
#include "core/cuda/elementwise.cuh"
#include "core/cuda/math.cuh"

namespace ssm::cuda {
namespace {

const char* binary_name(BinaryOp op) {
  static const char* names[] = {"add", "sub", "mul", "div", "max", "min", "pow", "eq", "ne", "lt", "le", "gt", "ge"};
  return names[int(op)];
}

template <class T>
struct BinaryF {
  using Out = T; using In0 = T; using In1 = T; using In2 = uint8_t; using Vt = T;
  static constexpr int kIn = 2;
  BinaryOp op;
  __device__ T operator()(T a, T b, uint8_t) const { return from_acc<T>(binary_math(op, to_acc(a), to_acc(b))); }
  template <int N>  // the vector kernel: the op switch once, then N elements with the op fixed
  __device__ void apply(T (&r)[N], const T (&a)[N], const T (&b)[N], const uint8_t (&)[N]) const {
    visit_binary(op, [&](auto o) {
      from_acc_n<T, N>(r, [&](int e) { return binary_fn<decltype(o)::value>(to_acc(a[e]), to_acc(b[e])); });
    });
  }
};

template <class T>
struct CompareF {
  using Out = uint8_t; using In0 = T; using In1 = T; using In2 = uint8_t; using Vt = T;
  static constexpr int kIn = 2;
  BinaryOp op;
  __device__ uint8_t operator()(T a, T b, uint8_t) const { return compare_math(op, to_acc(a), to_acc(b)) ? 1 : 0; }
};

template <class T>
struct BinaryScalarF {
  using Out = T; using In0 = T; using In1 = uint8_t; using In2 = uint8_t; using Vt = T;
  static constexpr int kIn = 1;
  BinaryOp op;
  acc_t<T> s;
  __device__ T operator()(T a, uint8_t, uint8_t) const { return from_acc<T>(binary_math(op, to_acc(a), s)); }
  template <int N>
  __device__ void apply(T (&r)[N], const T (&a)[N], const uint8_t (&)[N], const uint8_t (&)[N]) const {
    visit_binary(op, [&](auto o) { from_acc_n<T, N>(r, [&](int e) { return binary_fn<decltype(o)::value>(to_acc(a[e]), s); }); });
  }
};

template <class T>
struct CompareScalarF {
  using Out = uint8_t; using In0 = T; using In1 = uint8_t; using In2 = uint8_t; using Vt = T;
  static constexpr int kIn = 1;
  BinaryOp op;
  acc_t<T> s;
  __device__ uint8_t operator()(T a, uint8_t, uint8_t) const { return compare_math(op, to_acc(a), s) ? 1 : 0; }
};

void check_binary_dtype(BinaryOp op, DType dt) {
  const bool is_int = dt == DType::i32 || dt == DType::i64 || dt == DType::u8;
  SSM_CHECK_INPUT(!is_int || int_supported(op), binary_name(op), ": not supported for integer dtype ",
                  dtype_name(dt), " (add, sub, mul, max, min only); convert to f32 first");
}

// The scalar operand as the CPU sees it: first converted to the tensor's dtype (f32 for the half types,
// which the CPU computes in f32), then widened to the compute type.
template <class T>
acc_t<T> scalar_as(double s) {
  if constexpr (std::is_same_v<T, bf16> || std::is_same_v<T, f16>) return float(s);
  else return acc_t<T>(T(s));
}

}  // namespace

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  const Shape shape = broadcast_shapes(a.shape(), b.shape());
  const char* name = binary_name(op);
  if (is_comparison(op)) {
    Tensor out = Tensor::empty(shape, DType::u8, a.device());
    SSM_DISPATCH_ALL(a.dtype(), name, launch_elementwise(CompareF<scalar_t>{op}, out, {a, b}, name));
    return out;
  }
  check_binary_dtype(op, a.dtype());
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  SSM_DISPATCH_ALL(a.dtype(), name, launch_elementwise(BinaryF<scalar_t>{op}, out, {a, b}, name));
  return out;
}

Tensor binary_scalar(BinaryOp op, const Tensor& a, double s) {
  const char* name = binary_name(op);
  if (is_comparison(op)) {
    Tensor out = Tensor::empty(a.shape(), DType::u8, a.device());
    SSM_DISPATCH_ALL(a.dtype(), name, launch_elementwise(CompareScalarF<scalar_t>{op, scalar_as<scalar_t>(s)}, out, {a}, name));
    return out;
  }
  check_binary_dtype(op, a.dtype());
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  SSM_DISPATCH_ALL(a.dtype(), name,
                     launch_elementwise(BinaryScalarF<scalar_t>{op, scalar_as<scalar_t>(s)}, out, {a}, name));
  return out;
}

void binary_(BinaryOp op, Tensor& a, const Tensor& b) {
  const char* name = binary_name(op);
  SSM_CHECK_INPUT(!is_comparison(op), name, "_: an in-place comparison would change the dtype of ", a.str());
  check_binary_dtype(op, a.dtype());
  SSM_DISPATCH_ALL(a.dtype(), name, launch_elementwise(BinaryF<scalar_t>{op}, a, {a, b}, name));
}

}  // namespace ssm::cuda
