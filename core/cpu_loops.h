// Internal helpers for the CPU ops: dtype dispatch, scalar conversion, and an N-operand strided loop.
#pragma once
#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <array>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "core/tensor.h"

namespace ssm::cpu {

// Work below this many elements runs on one thread.
constexpr int64_t kParallelGrain = 32768;

inline int num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// ---- scalar conversion between any two element types (halves go through f32) ----
template <typename T>
struct is_half : std::false_type {};
template <>
struct is_half<bf16_t> : std::true_type {};
template <>
struct is_half<f16_t> : std::true_type {};

inline float half_to_float(bf16_t v) { return bf16_to_f32(v); }
inline float half_to_float(f16_t v) { return f16_to_f32(v); }
template <typename H>
inline H float_to_half(float f) {
  if constexpr (std::is_same_v<H, bf16_t>)
    return f32_to_bf16(f);
  else
    return f32_to_f16(f);
}

template <typename D, typename S>
inline D convert(S s) {
  if constexpr (std::is_same_v<D, S>) {
    return s;
  } else if constexpr (is_half<S>::value) {
    return convert<D, float>(half_to_float(s));
  } else if constexpr (is_half<D>::value) {
    return float_to_half<D>(convert<float, S>(s));
  } else {
    return static_cast<D>(s);
  }
}

// ---- dtype dispatch: calls f(T{}) with T the C++ type of dt ----
template <typename F>
decltype(auto) dispatch_all(DType dt, F&& f) {
  switch (dt) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::bf16: return f(bf16_t{});
    case DType::f16: return f(f16_t{});
    case DType::i32: return f(int32_t{});
    case DType::i64: return f(int64_t{});
    case DType::u8: return f(uint8_t{});
  }
  throw_internal("dispatch_all: unknown dtype");
}

// f32 / f64 only (callers convert halves first).
template <typename F>
decltype(auto) dispatch_float(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    default: break;
  }
  throw_input(cat(op, ": expected a floating dtype (f32 or f64 on the CPU), got ", dtype_name(dt)));
}

// Everything but the half types.
template <typename F>
decltype(auto) dispatch_arith(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::i32: return f(int32_t{});
    case DType::i64: return f(int64_t{});
    case DType::u8: return f(uint8_t{});
    default: break;
  }
  throw_input(cat(op, ": unsupported dtype ", dtype_name(dt)));
}

// ---- N-operand strided loop ----
// Iterates over `shape`; operand j sits at element offset sum_d idx[d] * strides[j][d] (relative to its
// own base). Calls body(offs, inner_strides, n) for runs of n elements along the innermost (coalesced)
// dim: operand j's elements are at offs[j] + t * inner_strides[j], t < n. Size-1 dims are dropped and
// adjacent dims that are contiguous for every operand are merged first. Runs in parallel when the total
// is large and `parallel` is set (only when distinct runs never write the same element).
template <size_t N, typename Body>
void nd_loop(const Shape& shape, const std::array<Shape, N>& strides, Body&& body, bool parallel = true) {
  // Coalesce dims.
  Shape sh;
  std::array<Shape, N> st;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 0) return;
    if (shape[d] == 1) continue;
    if (!sh.empty()) {
      bool merge = true;
      for (size_t j = 0; j < N; ++j)
        if (st[j].back() != strides[j][d] * shape[d]) merge = false;
      if (merge) {
        sh.back() *= shape[d];
        for (size_t j = 0; j < N; ++j) st[j].back() = strides[j][d];
        continue;
      }
    }
    sh.push_back(shape[d]);
    for (size_t j = 0; j < N; ++j) st[j].push_back(strides[j][d]);
  }
  if (sh.empty()) {  // a single element
    sh.push_back(1);
    for (size_t j = 0; j < N; ++j) st[j].push_back(0);
  }
  const int nd = int(sh.size());
  const int64_t inner = sh[nd - 1];
  int64_t outer = 1;
  for (int d = 0; d < nd - 1; ++d) outer *= sh[d];
  const int64_t total = outer * inner;
  // Split the inner dim into chunks so that a long 1-D run still spreads over threads.
  const int nt = (parallel && total > kParallelGrain) ? num_threads() : 1;
  int64_t nchunks = 1;
  if (nt > 1 && outer < 4 * nt) nchunks = std::min<int64_t>(inner / 4096 + 1, 4 * nt);
  const int64_t chunk = (inner + nchunks - 1) / nchunks;
  std::array<int64_t, N> inner_st;
  for (size_t j = 0; j < N; ++j) inner_st[j] = st[j][nd - 1];
  const int64_t work = outer * nchunks;

  auto run = [&](int64_t w) {
    const int64_t o = w / nchunks, c = w % nchunks;
    std::array<int64_t, N> offs{};
    int64_t rem = o;
    for (int d = nd - 2; d >= 0; --d) {
      const int64_t i = rem % sh[d];
      rem /= sh[d];
      for (size_t j = 0; j < N; ++j) offs[j] += i * st[j][d];
    }
    const int64_t s = c * chunk, e = std::min(inner, s + chunk);
    if (s >= e) return;
    for (size_t j = 0; j < N; ++j) offs[j] += s * inner_st[j];
    body(offs, inner_st, e - s);
  };
  if (nt > 1) {
#pragma omp parallel for schedule(static)
    for (int64_t w = 0; w < work; ++w) run(w);
  } else {
    for (int64_t w = 0; w < work; ++w) run(w);
  }
}

// Strides of `t` when broadcast to `shape` (t's shape must broadcast to it): size-1 or missing dims get 0.
inline Shape broadcast_strides(const Tensor& t, const Shape& shape) {
  Shape s(shape.size(), 0);
  const int64_t off = int64_t(shape.size()) - t.dim();
  for (int64_t d = 0; d < t.dim(); ++d)
    s[off + d] = (t.shape()[d] == 1 && shape[off + d] != 1) ? 0 : t.strides()[d];
  return s;
}

// True when a tensor of shape `from` broadcasts to shape `to` (numpy rules, `to` unchanged).
inline bool broadcasts_to(const Shape& from, const Shape& to) {
  if (from.size() > to.size()) return false;
  const size_t off = to.size() - from.size();
  for (size_t d = 0; d < from.size(); ++d)
    if (from[d] != 1 && from[d] != to[off + d]) return false;
  return true;
}

// Normalizes a possibly negative dim against ndim; BadInput names the op.
inline int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  const int64_t n = std::max<int64_t>(ndim, 1);
  SSM_CHECK_INPUT(dim >= -n && dim < n, op, ": dim ", dim, " is out of range for a tensor with ", ndim,
                  " dims");
  return dim < 0 ? dim + n : dim;
}

}  // namespace ssm::cpu
