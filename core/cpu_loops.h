// Internal helpers for the CPU ops: dtype dispatch, scalar conversion, and an N-operand strided loop.
#pragma once
#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/tensor.h"

namespace ssm::cpu {

// Work below this many elements runs on one thread.
constexpr int64_t kParallelGrain = 32768;

// Hot f32 loops are compiled twice, for x86-64-v3 (AVX2 + FMA) and for the baseline x86-64 the library is
// built for, and the variant is picked at load time by ISA level (the build passes no -march flag). Not
// "arch=haswell": GCC dispatches that one by CPU model (Intel Haswell), so AMD CPUs got the baseline code.
// flatten inlines the whole call tree (the op dispatch and the per-element lambdas) into each variant.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#define SSM_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default"), flatten))
#else
#define SSM_CPU_CLONES __attribute__((flatten))
#endif
#define SSM_ALWAYS_INLINE inline __attribute__((always_inline))

// ---- branch-free f32 math (vectorizes; the scalar std:: versions do not) ----
// c ? a : b as a bit mask. GCC if-converts a lone float ?: but not two in a row (under -ftrapping-math it
// keeps them as branches, and the loop does not vectorize); integer masks always vectorize.
SSM_ALWAYS_INLINE float select_f32(bool c, float a, float b) {
  const int32_t m = -int32_t(c);
  return std::bit_cast<float>((std::bit_cast<int32_t>(a) & m) | (std::bit_cast<int32_t>(b) & ~m));
}

// exp(x) = 2^n p(r) with n = rint(x / ln2) and r = x - n ln2 (Cody-Waite split, |r| <= ln2 / 2); p is the
// Cephes expf polynomial. Relative error < 1.5 ulp (tests/core/test_fast_math.cpp). x < -87.34 gives 0
// (the true result is a denormal, flushed), x > 88.37 gives +inf.
SSM_ALWAYS_INLINE float exp_f32(float x) {
  const float xc = select_f32(x < -87.33654f, -87.33654f, select_f32(x > 88.37626f, 88.37626f, x));
  const float t = xc * 1.44269504088896341f + 12582912.0f;  // 1.5 * 2^23: n lands in the low mantissa bits
  const float n = t - 12582912.0f;
  float r = n * -0.693359375f + xc;  // ln2 = 0.693359375 - 2.12194440e-4 (both exact enough in f32)
  r = n * 2.12194440e-4f + r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const int32_t ni = std::bit_cast<int32_t>(t) - 0x4B400000;  // n as an integer, in [-126, 127]
  const float y = p * std::bit_cast<float>((ni + 127) << 23);
  return select_f32(x > 88.37626f, std::numeric_limits<float>::infinity(), select_f32(x < -87.33654f, 0.0f, y));
}

// erf(x) for |x| <= 0.921875: x + x q(x^2), q of degree 5 (Chebyshev fit of erf(x)/x - 1; fit error 1.6e-8).
SSM_ALWAYS_INLINE float erf_small_f32(float x) {
  const float s = x * x;
  float q = -6.004081156e-4f;
  q = q * s + 4.996020122e-3f;
  q = q * s - 2.67687567e-2f;
  q = q * s + 1.128188232e-1f;
  q = q * s - 3.76125009e-1f;
  q = q * s + 1.28379151e-1f;
  return q * x + x;
}

// erfc(t) for t >= 0.921875: exp(h(t) - t^2), h = log erfc(t) + t^2 fitted on [0.921875, 3.921875] by a
// degree-8 Chebyshev polynomial in u = (t - 2.421875) * 2/3 (fit error 1.4e-8 in h). Beyond 3.921875,
// where erfc < 6e-9 (below half an ulp of 1), it returns 0.
SSM_ALWAYS_INLINE float erfc_tail_f32(float t) {
  const float tc = select_f32(t > 3.921875f, 3.921875f, t);
  const float u = (tc - 2.421875f) * 0.666666667f;
  float h = 4.279100227e-5f;
  h = h * u - 2.445101507e-4f;
  h = h * u + 9.648776557e-4f;
  h = h * u - 3.479431642e-3f;
  h = h * u + 1.183063185e-2f;
  h = h * u - 3.902008989e-2f;
  h = h * u + 1.32148181e-1f;
  h = h * u - 5.424755073e-1f;
  h = h * u - 1.528914384f;
  return select_f32(t > 3.921875f, 0.0f, exp_f32(h - tc * tc));
}

// erf for f32: max abs error 9e-8 against std::erf in double (tests/core/test_fast_math.cpp asserts <= 2e-7
// on a dense grid over [-8, 8]).
SSM_ALWAYS_INLINE float erf_f32(float x) {
  const float t = std::fabs(x);
  const float big = 1.0f - erfc_tail_f32(t);
  const float small = erf_small_f32(x);
  return select_f32(t <= 0.921875f, small, select_f32(x < 0.0f, -big, big));
}

// Standard normal cdf Phi(x) = (1 + erf(x / sqrt 2)) / 2 = erfc(-x / sqrt 2) / 2 (the erfc form for the
// negative tail keeps its relative accuracy).
SSM_ALWAYS_INLINE float normal_cdf_f32(float x) {
  const float z = x * 0.70710678118654752f;
  const float t = std::fabs(z);
  const float e = 0.5f * erfc_tail_f32(t);
  const float small = 0.5f * erf_small_f32(z) + 0.5f;
  return select_f32(t <= 0.921875f, small, select_f32(z < 0.0f, e, 1.0f - e));
}

SSM_ALWAYS_INLINE float sigmoid_f32(float x) { return 1.0f / (1.0f + exp_f32(-x)); }

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

// ---- [0, n) split into one contiguous chunk per thread ----
// Calls f(begin, end) once per thread (chunk starts rounded to 16 elements, so vector loops stay aligned
// the same way); serial when n <= grain or when already inside a parallel region.
template <typename F>
void parallel_chunks(int64_t n, int64_t grain, F&& f) {
  int nt = 1;
#ifdef _OPENMP
  if (n > grain && !omp_in_parallel()) nt = int(std::min<int64_t>(num_threads(), n / std::max<int64_t>(grain / 2, 1)));
#endif
  if (nt <= 1) {
    if (n > 0) f(int64_t(0), n);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
#ifdef _OPENMP
    const int t = omp_get_thread_num(), T = omp_get_num_threads();
#else
    const int t = 0, T = 1;
#endif
    const int64_t b = t == 0 ? 0 : (n * t / T) / 16 * 16, e = t == T - 1 ? n : (n * (t + 1) / T) / 16 * 16;
    if (e > b) f(b, e);
  }
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
